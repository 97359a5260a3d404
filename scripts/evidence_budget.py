"""How MIG, I_m and the active latents of one stand-in evolve with training steps, at two β:
the measurement the evidence preset's budget (config.EVIDENCE_OVERRIDES) was chosen from.

    python scripts/evidence_budget.py                   # dSprites stand-in, β 1 and 16, seeds 0 1
    python scripts/evidence_budget.py --betas 1 32 --milestones 0 500 1000 --out /tmp/budget

Trains the runs as one pack with the study's own training loop (training.train_pack),
stopping at each milestone (a run resumes from its checkpoint, so the segments give the
same weights as one long run) to score it as the study does. Prints one table row per
(β, seed, step) and writes evidence_budget.csv and evidence_learning_curves.png to --out.
The noise floor of MIG and I_m is the same metric with the factors shuffled (true MI 0).
``--from-log LOG`` rebuilds both files from the table a run printed (one stopped early).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import datasets  # noqa: E402
import metrics  # noqa: E402
import visualizations as vis  # noqa: E402
from config import Config, validate  # noqa: E402
from lbvae.pipeline.evaluation import encode, encode_moments, kl_from_moments, latent_columns, metric_indices  # noqa: E402
from lbvae.pipeline.runs import RunSpec  # noqa: E402
from lbvae.pipeline.training import ImageFeed, train_pack  # noqa: E402
from models import BetaVAE  # noqa: E402
from utils import write_csv  # noqa: E402


def score(model, dataset, cfg: Config, seed: int, device) -> dict:
    """The study's metrics of one model, their shuffled-factor floors and the per-latent KL."""
    points = metric_indices(len(dataset), seed, cfg.metric_train_points, cfg.metric_test_points)
    f_train, f_test = dataset.index_to_factors(points["train"]), dataset.index_to_factors(points["test"])
    train_codes, logvar = encode_moments(model, dataset, points["train"], device)
    codes = {"train": train_codes, "test": encode(model, dataset, points["test"], device)}
    s = metrics.study_metrics(f_train, codes["train"], f_test, codes["test"], num_bins=cfg.num_bins, seed=seed)
    shuffled = np.stack([np.random.default_rng(seed).permutation(f) for f in f_train.T], axis=1)
    floor_mig = metrics.mig(shuffled, codes["train"], cfg.num_bins)["mig"]
    floor_im = metrics.i_m(shuffled, codes["train"], cfg.num_bins)["i_m"]
    kl = kl_from_moments(train_codes, logvar)
    return {"mig": s["mig"], "sap": s["sap"], "i_m": s["i_m"], "mig_floor": floor_mig, "i_m_floor": floor_im,
            **latent_columns(kl)}


def learning_curves(rows: list[dict], path: Path, title: str) -> None:
    """MIG, I_m and active latents against steps, one line per β (mean over seeds, range shaded),
    with the shuffled-factor floor dashed."""
    plt = vis.plt
    keys = (("mig", "MIG", "mig_floor"), ("i_m", "I_m (nats)", "i_m_floor"),
            ("active_latents", "active latents (KL > 0.1 nats)", None), ("sap", "SAP (discrete)", None))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 2.9), layout="constrained")
    for beta in sorted({r["beta"] for r in rows}):
        for ax, (key, label, floor) in zip(axes, keys):
            steps = sorted({r["step"] for r in rows if r["beta"] == beta})
            vals = np.array([[r[key] for r in rows if r["beta"] == beta and r["step"] == s] for s in steps])
            line, = ax.plot(steps, vals.mean(1), marker="o", ms=3, label=f"β = {vis.fmt_number(beta)}")
            ax.fill_between(steps, vals.min(1), vals.max(1), alpha=0.2, color=line.get_color())
            if floor:
                fl = [np.mean([r[floor] for r in rows if r["beta"] == beta and r["step"] == s]) for s in steps]
                ax.plot(steps, fl, ls="--", lw=1, color=line.get_color())
            ax.set_xlabel("training steps")
            ax.set_title(label, fontsize=9)
    n = len({r["seed"] for r in rows})
    axes[0].legend(fontsize=7, title=f"mean of {n} seeds, range shaded;\ndashed: shuffled-factor floor",
                   title_fontsize=6)
    fig.suptitle(title, fontsize=9)
    vis._save_figure(fig, path)


COLUMNS = ("beta", "seed", "step", "mig", "mig_floor", "sap", "i_m", "i_m_floor", "active_latents", "i_xz_upper",
           "wall_s")


def rows_from_log(path: Path, dataset: str) -> list[dict]:
    """The table rows a run printed (progress-bar debris before a row is dropped)."""
    rows = []
    for line in path.read_text().replace("\r", "\n").splitlines():
        parts = line.replace("\x1b[A", " ").split()
        if len(parts) != len(COLUMNS):
            continue
        try:
            values = [float(p) for p in parts]
        except ValueError:
            continue
        row = dict(zip(COLUMNS, values))
        rows.append({"dataset": dataset, **row, "seed": int(row["seed"]), "step": int(row["step"]),
                     "active_latents": int(row["active_latents"])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="dsprites")
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 16.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--milestones", type=int, nargs="+", default=[0, 250, 500, 1000, 2000, 3000])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--metric-train-points", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--from-log", type=Path, help="rebuild the CSV and figure from a run's printed table")
    args = parser.parse_args()
    if args.from_log:
        rows = rows_from_log(args.from_log, args.dataset)
        write_csv(args.out / "evidence_budget.csv", rows)
        learning_curves(rows, args.out / "evidence_learning_curves.png",
                        f"{args.dataset} stand-in: batch {args.batch_size}, lr {args.lr:g}")
        print(f"{len(rows)} rows from {args.from_log} -> {args.out}")
        return
    cfg = validate(Config(datasets=(args.dataset,), source="standin", batch_size=args.batch_size, lr=args.lr,
                          loss_window=50, log_interval=250, checkpoint_interval=250,
                          metric_train_points=args.metric_train_points, metric_test_points=1000))
    device = torch.device("cpu")
    dataset = datasets.load_dataset(args.dataset, source="standin")
    feed = ImageFeed(dataset, device)
    rows = []
    tic = time.perf_counter()
    print(f"{args.dataset} stand-in, batch {args.batch_size}, lr {args.lr:g}, "
          f"{args.metric_train_points} metric points; floor = same metric with factors shuffled")
    print(f"{'β':>4} {'seed':>4} {'step':>6} {'MIG':>6} {'floor':>6} {'SAP':>6} {'I_m':>6} {'floor':>6} "
          f"{'active':>6} {'ΣKL':>6} {'wall s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        grid = [(b, s) for b in args.betas for s in args.seeds]
        for step in args.milestones:
            specs = [RunSpec("beta", args.dataset, b, 0.0, s, step, Path(tmp) / f"b{b}_s{s}") for b, s in grid]
            if step == 0:
                models = []
                for _b, s in grid:
                    torch.manual_seed(s)          # the study's initial weights of this seed
                    models.append(BetaVAE(dataset.channels, cfg.latent_dim))
            else:
                models = [r.model for r in train_pack(specs, cfg, dataset, device, feed=feed)]
            for (b, s), model in zip(grid, models):
                row = {"dataset": args.dataset, "beta": b, "seed": s, "step": step,
                       **score(model, dataset, cfg, s, device), "wall_s": round(time.perf_counter() - tic, 1)}
                rows.append(row)
                print(f"{b:4g} {s:4d} {step:6d} {row['mig']:6.3f} {row['mig_floor']:6.3f} {row['sap']:6.3f} "
                      f"{row['i_m']:6.3f} {row['i_m_floor']:6.3f} {row['active_latents']:6d} "
                      f"{row['i_xz_upper']:6.2f} {row['wall_s']:7.1f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "evidence_budget.csv", rows)
    learning_curves(rows, args.out / "evidence_learning_curves.png",
                    f"{args.dataset} stand-in: batch {args.batch_size}, lr {args.lr:g}")
    print(f"wrote {args.out / 'evidence_budget.csv'} and {args.out / 'evidence_learning_curves.png'}")


if __name__ == "__main__":
    main()
