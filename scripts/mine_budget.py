"""How the MINE-VAE's cross-attention moves with training steps, and what keeps it
uniform: the measurement main_mine.py's evidence preset was chosen from.

    python scripts/mine_budget.py                                  # every setting, seeds 0 1
    python scripts/mine_budget.py --settings default both_x10 --seeds 0 --milestones 0 500 2000

Trains MINE-VAE runs (variant full) on the dSprites stand-in (factors of 3 to 40
classes) with the evidence preset's model and optimiser, for each named setting of the
regulariser weights and the attention temperature (``SETTINGS``), stopping at each
milestone to measure (lbvae/mine/evidence.py): L_ent and L_sparse against their uniform
maxima, each factor's share of the latent capacity against its complexity, MIG, and
the gradient each loss term sends into the attention. Appends one row per (setting,
seed, step) to --csv as soon as it is measured (default docs/mine_budget.csv, the
committed table); rows already there are skipped and a run resumes from its
checkpoint under --work, so an interrupted measurement continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import datasets  # noqa: E402
from config import MINE_EVIDENCE_BASE, MINE_EVIDENCE_PRESET, MineConfig, validate_mine  # noqa: E402
from lbvae.mine import evidence as mine_evidence  # noqa: E402
from lbvae.mine import report as mine_report  # noqa: E402
from lbvae.mine import study as mine_study  # noqa: E402
from lbvae.pipeline.evaluation import encode, heldout_split, metric_indices  # noqa: E402
from lbvae.pipeline.loop import train_one  # noqa: E402
from lbvae.pipeline.runs import RunSpec  # noqa: E402
from losses import mine_vae_loss  # noqa: E402
from utils import read_csv, write_csv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The measured settings: the defaults (L_sparse 0.1, L_ent 0.05, temperature 1), each
# regulariser ten times heavier, both, and a sharper softmax.
SETTINGS = {
    "default": {},
    "sparse_x10": dict(attention_reg_weight=1.0),
    "ent_x10": dict(entropy_reg_weight=0.5),
    "both_x10": dict(attention_reg_weight=1.0, entropy_reg_weight=0.5),
    "temp_0.25": dict(attention_temperature=0.25),
    "both_x10_temp_0.25": dict(attention_reg_weight=1.0, entropy_reg_weight=0.5, attention_temperature=0.25),
}
COLUMNS = ["setting", "dataset", "seed", "step", "attention_reg_weight", "entropy_reg_weight",
           "attention_temperature", "l_ent", "l_ent_max", "ent_removed", "l_sparse", "l_sparse_max",
           "sparse_removed", "capacity_correlation", "mig", "active_latents", "grad_recon", "grad_kl",
           "grad_redundancy", "grad_sparse", "grad_ent", "term_recon", "term_kl", "term_redundancy", "term_sparse",
           "term_ent", "factors", "capacity_shares", "factor_complexity", "train_s", "measure_s"]
METRIC_POINTS = 1000


MEASURED = ("attention_reg_weight", "entropy_reg_weight", "attention_temperature")


def base_config(dataset: str) -> MineConfig:
    """The evidence preset's model and optimiser (config.MINE_EVIDENCE_PRESET) on ``dataset``,
    with MineConfig's default weights and temperature: ``SETTINGS`` change those from the
    defaults, not from the values the preset chose."""
    preset = {k: v for k, v in MINE_EVIDENCE_PRESET.items() if k not in MEASURED + ("steps",)}
    return validate_mine(MineConfig(**{**MINE_EVIDENCE_BASE, **preset, "datasets": (dataset,),
                                       "variants": ("full",), "sample_interval": 0, "figures": False,
                                       "device": "cpu"}))


# The parameters that decide the attention weights A (not its values or output).
ATTENTION_SHAPERS = ("attention.query", "attention.key", "attention.slot_direction", "attention.slot_embedding",
                     "factor_encoder")


def attention_gradients(model, estimator, x: torch.Tensor, cfg: MineConfig, seed: int) -> dict:
    """The norm of the gradient each weighted loss term sends into the parameters that
    shape the attention (``ATTENTION_SHAPERS``), on batch ``x``, with noise from its own
    generator: nothing of the run's state changes. Also each term's weighted value."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    model.train()
    out = model.run(x, generator=generator)
    estimator.requires_grad_(False)
    try:
        estimates = mine_study.mine_estimates(estimator, out["z"], out["factors"], torch.Generator().manual_seed(seed),
                                              update_ema=False)
    finally:
        estimator.requires_grad_(True)
    terms = mine_vae_loss(out["logits"], x, out["mu"], out["logvar"], out["attention"], estimates,
                          mine_study.mine_weights(model, estimator), kl_weight=cfg.kl_weight, loss_scale=cfg.loss_scale)
    scale = x.shape[0] if cfg.loss_scale == "batch_sum" else 1
    weighted = {"recon": scale * terms["recon"], "kl": scale * cfg.kl_weight * terms["kl"],
                "redundancy": cfg.disentanglement_weight * terms["redundancy"],
                "sparse": cfg.attention_reg_weight * terms["sparse"], "ent": cfg.entropy_reg_weight * terms["ent"]}
    params = [p for name, p in model.named_parameters() if name.startswith(ATTENTION_SHAPERS)]
    out_row = {}
    for name, term in weighted.items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        out_row[f"grad_{name}"] = math.sqrt(sum(float((g.float() ** 2).sum()) for g in grads if g is not None))
        out_row[f"term_{name}"] = float(term.detach())
    model.zero_grad(set_to_none=True)
    return out_row


def measure(run: mine_study.MineRun, dataset, cfg: MineConfig, seed: int, device) -> dict:
    """The mechanism's numbers for the run's current model (lbvae/mine/evidence.py)."""
    points = metric_indices(len(dataset), seed, METRIC_POINTS, 0)["train"]
    codes, factors = encode(run.model, dataset, points, device), dataset.index_to_factors(points)
    uniform = mine_evidence.attention_uniformity(mine_evidence.attention_of(run.model, codes, device))
    capacity = mine_evidence.factor_capacity(run.model, dataset, codes, factors, cfg.num_bins)
    x = mine_study._images(dataset, heldout_split(len(dataset), cfg.heldout_fraction)[0][:64], device)
    grads = attention_gradients(run.model, run.estimator, x, cfg, seed)
    return {**uniform, "capacity_correlation": capacity["correlation"],
            "mig": capacity["mig"],
            "active_latents": int((capacity["latent_complexity"] > mine_report.ACTIVE_NATS).sum()),
            **grads, "factors": " ".join(capacity["factors"]),
            "capacity_shares": json.dumps([round(float(v), 5) for v in capacity["shares"]]),
            "factor_complexity": json.dumps([round(float(v), 5) for v in capacity["complexity"]])}


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--milestones", nargs="+", type=int, default=[0, 250, 500, 1000, 2000])
    parser.add_argument("--dataset", default="dsprites")
    parser.add_argument("--csv", type=Path, default=ROOT / "docs" / "mine_budget.csv")
    parser.add_argument("--work", type=Path, default=Path("mine_budget_runs"),
                        help="the runs' checkpoints (resumed from), one folder per setting and seed")
    args = parser.parse_args(argv)
    base, device = base_config(args.dataset), torch.device("cpu")
    dataset = datasets.load_dataset(args.dataset, source="standin")
    rows = read_csv(args.csv) if args.csv.exists() else []
    for r in rows:      # a row is reused only if it was measured with its setting's values
        if r["setting"] in SETTINGS and any(r[k] != getattr(base.replace(**SETTINGS[r["setting"]]), k)
                                            for k in MEASURED):
            raise SystemExit(f"{args.csv}: the {r['setting']} rows were measured with "
                             + ", ".join(f"{k}={r[k]}" for k in MEASURED) + "; not what SETTINGS says now: "
                             "remove those rows (and their runs under --work) to measure them again")
    done = {(r["setting"], r["dataset"], int(r["seed"]), int(r["step"])) for r in rows}
    for name in args.settings:
        cfg = base.replace(**SETTINGS[name])
        for seed in args.seeds:
            run_dir = args.work / args.dataset / name / f"seed_{seed}"
            for step in sorted(args.milestones):
                if (name, args.dataset, seed, step) in done:
                    continue
                spec = RunSpec("mine", args.dataset, cfg.kl_weight, 0.0, seed, step, run_dir, variant="full")
                run_dir.mkdir(parents=True, exist_ok=True)
                tic = time.perf_counter()
                run = mine_study.MineRun(spec, cfg, dataset, device)
                if step > run.step:
                    train_one(run, step, cfg, position=0)
                elif step < run.step:
                    raise SystemExit(f"{run_dir} is at step {run.step}, past milestone {step}: move it aside "
                                     f"to measure from the start")
                train_s = time.perf_counter() - tic
                tic = time.perf_counter()
                row = {"setting": name, "dataset": args.dataset, "seed": seed, "step": step,
                       **{k: getattr(cfg, k) for k in MEASURED},
                       **measure(run, dataset, cfg, seed, device), "train_s": train_s}
                row["measure_s"] = time.perf_counter() - tic
                rows.append(row)
                write_csv(args.csv, rows, COLUMNS)          # atomically, after every row
                print(f"{name:20s} seed {seed} step {step:5d}: L_ent {row['l_ent']:.3f}/{row['l_ent_max']:.3f} "
                      f"L_sparse {row['l_sparse']:.3f}/{row['l_sparse_max']:.3f} r(share, c) "
                      f"{row['capacity_correlation']:+.2f} MIG {row['mig']:.3f} |grad| recon "
                      f"{row['grad_recon']:.2e} sparse {row['grad_sparse']:.2e} ent {row['grad_ent']:.2e}",
                      flush=True)
    for name in dict.fromkeys(r["setting"] for r in rows):
        left = mine_evidence.first_left_uniform(rows, name)
        print(f"{name:20s} left uniform attention in every seed from step {'never' if left is None else left} "
              f"(≥ {100 * mine_evidence.LEFT_UNIFORM:.0f} % of L_ent's maximum removed)")
    print(f"{len(rows)} rows in {args.csv}")
    return args.csv


if __name__ == "__main__":
    main()
