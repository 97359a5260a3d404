"""How MIG, I_m and the active latents of every objective of the zoo evolve with training
steps on the dSprites stand-in, at the zoo preset's two weights each, with the step cost of
each objective: the measurement the zoo preset's budget (config.ZOO_OVERRIDES) was chosen from.

    python scripts/zoo_budget.py                          # every objective, seeds 0 1, to 1,000 steps
    python scripts/zoo_budget.py --objectives factor --milestones 250 500 --out /tmp/budget

Each objective's runs (its two weights × the seeds) train as one pack with the study's own
training loop, stopping at each milestone to be scored as the study scores a run
(scripts/evidence_budget.py's ``score``: MIG, SAP and I_m with their shuffled-factor floors,
the per-latent KL). Prints one table row per (objective, weight, seed, step), and per
objective its training time per run-step; writes zoo_budget.csv and zoo_learning_curves.png
to --out. Rows are written as they come, so a killed run keeps what it measured.
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
from evidence_budget import score  # noqa: E402  (scripts/ is on the path: this script's folder)

import datasets  # noqa: E402
import visualizations as vis  # noqa: E402
from config import OBJECTIVES, ZOO_WEIGHTS, Config, validate  # noqa: E402
from lbvae.pipeline.runs import RunSpec  # noqa: E402
from lbvae.pipeline.training import ImageFeed, train_pack  # noqa: E402
from utils import fmt_number, write_csv  # noqa: E402

KEYS = (("mig", "MIG", "mig_floor"), ("i_m", "I_m (nats)", "i_m_floor"),
        ("active_latents", "active latents (KL > 0.1 nats)", None), ("i_xz_upper", "mean KL (nats)", None))


def learning_curves(rows: list[dict], path: Path, title: str) -> None:
    """Rows the objectives, columns MIG, I_m, active latents and KL against steps; one line
    per weight (mean over seeds, range shaded), the shuffled-factor floor dashed."""
    plt = vis.plt
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    fig, axes = plt.subplots(len(objectives), len(KEYS), figsize=(3.1 * len(KEYS), 2.3 * len(objectives)),
                             squeeze=False, layout="constrained")
    for i, name in enumerate(objectives):
        ours = [r for r in rows if r["objective"] == name]
        o = OBJECTIVES[name]
        for weight in sorted({r["weight"] for r in ours}):
            steps = sorted({r["step"] for r in ours if r["weight"] == weight})
            for ax, (key, label, floor) in zip(axes[i], KEYS):
                vals = [[r[key] for r in ours if r["weight"] == weight and r["step"] == s] for s in steps]
                mean = [np.mean(v) for v in vals]
                line, = ax.plot(steps, mean, marker="o", ms=3, label=f"{o.symbol} = {fmt_number(weight)}")
                ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals], alpha=0.2,
                                color=line.get_color())
                if floor:
                    fl = [np.mean([r[floor] for r in ours if r["weight"] == weight and r["step"] == s]) for s in steps]
                    ax.plot(steps, fl, ls="--", lw=1, color=line.get_color())
                if i == 0:
                    ax.set_title(label, fontsize=9)
                if i == len(objectives) - 1:
                    ax.set_xlabel("training steps")
        axes[i, 0].set_ylabel(o.title, fontsize=9)
        axes[i, 0].legend(fontsize=6.5)
    fig.suptitle(title + "\nmean of the seeds, range shaded; dashed: the same metric with the factors shuffled",
                 fontsize=9)
    vis._save_figure(fig, path)


COLUMNS = ("objective", "weight", "seed", "step", "mig", "mig_floor", "sap", "i_m", "i_m_floor", "active_latents",
           "i_xz_upper", "train_s_per_run_step", "wall_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objectives", nargs="+", default=list(ZOO_WEIGHTS), choices=list(ZOO_WEIGHTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--milestones", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--metric-train-points", type=int, default=3000)
    parser.add_argument("--threshold-fraction", type=float, default=1 / 3,
                        help="AnnealedVAE's iteration_threshold as a fraction of the last milestone "
                             "(disentanglement_lib: 100,000 of 300,000 steps)")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    dataset = datasets.load_dataset("dsprites", source="standin")
    device = torch.device("cpu")
    feed = ImageFeed(dataset, device)
    threshold = max(1, round(args.threshold_fraction * max(args.milestones)))
    rows, tic = [], time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"dsprites stand-in, batch {args.batch_size}, lr {args.lr:g}, {args.metric_train_points} metric points; "
          f"AnnealedVAE iteration_threshold {threshold}; floor = the metric with the factors shuffled")
    print(f"{'objective':>9} {'weight':>6} {'seed':>4} {'step':>5} {'MIG':>6} {'floor':>6} {'SAP':>6} {'I_m':>6} "
          f"{'floor':>6} {'active':>6} {'ΣKL':>6} {'ms/rstep':>8} {'wall s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.objectives:
            extra = {"iteration_threshold": threshold} if name == "annealed" else {}
            cfg = validate(Config(datasets=("dsprites",), source="standin", objective=name, batch_size=args.batch_size,
                                  lr=args.lr, loss_window=50, log_interval=250, checkpoint_interval=250,
                                  metric_train_points=args.metric_train_points, metric_test_points=1000, **extra))
            grid = [(w, s) for w in ZOO_WEIGHTS[name] for s in args.seeds]
            done = 0
            for step in args.milestones:
                specs = [RunSpec("beta", "dsprites", w, 0.0, s, step, Path(tmp) / f"{name}_{w}_{s}", objective=name)
                         for w, s in grid]
                start = time.perf_counter()
                models = [r.model for r in train_pack(specs, cfg, dataset, device, feed=feed)]
                per_step = (time.perf_counter() - start) / ((step - done) * len(grid))
                done = step
                for (w, s), model in zip(grid, models):
                    row = {"objective": name, "weight": w, "seed": s, "step": step,
                           **score(model, dataset, cfg, s, device), "train_s_per_run_step": per_step,
                           "wall_s": round(time.perf_counter() - tic, 1)}
                    rows.append(row)
                    print(f"{name:>9} {w:6g} {s:4d} {step:5d} {row['mig']:6.3f} {row['mig_floor']:6.3f} "
                          f"{row['sap']:6.3f} {row['i_m']:6.3f} {row['i_m_floor']:6.3f} {row['active_latents']:6d} "
                          f"{row['i_xz_upper']:6.2f} {1000 * per_step:8.1f} {row['wall_s']:7.1f}", flush=True)
                write_csv(args.out / "zoo_budget.csv", rows, list(COLUMNS))
    learning_curves(rows, args.out / "zoo_learning_curves.png",
                    f"dSprites stand-in: batch {args.batch_size}, lr {args.lr:g}, zoo weights")
    print(f"wrote {args.out / 'zoo_budget.csv'} and {args.out / 'zoo_learning_curves.png'}")


if __name__ == "__main__":
    main()
