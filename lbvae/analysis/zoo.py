"""docs/zoo.md: what the zoo preset measured, written from its results.

    python main_beta.py --preset zoo && python main_lambda.py --preset zoo
    python main_lambda.py --preset zoo --collect        # rewrites the page from what exists

Per objective (docs/objectives.md): the β stage's KL, active latents, MIG, SAP and I_m at its
reference weight and at its strong one (does the strong weight take information away?), then
what λ = 8 changes against λ = 0 at each weight in the λ stage (does λ·L2 give it back?). Every
number is a seed mean ± sample std (ddof=1) over the runs' own metrics.json; a change is
"beyond noise" when it is larger than one seed std (the larger of the two cells compared), the
rule docs/evidence.md and the heatmaps use. With three seeds this is a weak test.
"""
from __future__ import annotations

import math
from pathlib import Path

from lbvae.analysis.evidence import DOCS, cell_stats, distinguishable, stage_wall_time
from lbvae.objectives import OBJECTIVES
from lbvae.pipeline import runs
from utils import fmt_number, write_text

# (results column, label): what the page compares.
ZOO_METRICS = (("i_xz_upper", "mean KL (nats)"), ("active_latents", "active latents"), ("mig", "MIG"),
               ("sap", "SAP"), ("i_m", "I_m (nats)"), ("train_window_nll", "train-window NLL"))


def _cell(c: tuple) -> str:
    mean, std, n = c
    if not n:
        return "n/a"
    return f"{_g(mean)} ± {_g(std)} ({n})" if math.isfinite(std) else f"{_g(mean)} (1)"


def _g(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def change(a: tuple, b: tuple) -> str:
    """b − a with the verdict: beyond noise (larger than one seed std), within noise, or undecided."""
    if not (a[2] and b[2]):
        return "n/a"
    delta = b[0] - a[0]
    if a[2] < 2 or b[2] < 2:
        return f"{delta:+.3g} (one seed: undecided)"
    return f"{delta:+.3g} " + ("**beyond noise**" if distinguishable(a, b) else "(within noise)")


def objective_section(name: str, beta_rows: list[dict], lambda_rows: list[dict], dataset: str) -> list[str]:
    o = OBJECTIVES[name]
    weights = sorted({r["beta"] for r in beta_rows + lambda_rows if r.get("status") == "done"})
    if not weights:
        return [f"## {o.title}", "", "No finished runs yet.", ""]
    ref = o.baseline if o.baseline in weights else weights[0]
    strong = [w for w in weights if w != ref]
    out = [f"## {o.title} (`--objective {name}`, swept weight {o.symbol})", ""]
    head = "| metric | " + " | ".join(f"{o.symbol} = {fmt_number(w)}" + (" (reference)" if w == ref else "")
                                      for w in weights)
    head += "".join(f" | {o.symbol} = {fmt_number(w)} vs reference" for w in strong) + " |"
    out += ["β stage (λ = 0): seed mean ± std (n)", "", head, "|" + "---|" * (2 + len(weights) + len(strong) - 1)]
    for key, label in ZOO_METRICS:
        cells = {w: cell_stats(beta_rows, dataset, key, w, 0.0) for w in weights}
        out.append(f"| {label} | " + " | ".join(_cell(cells[w]) for w in weights)
                   + "".join(f" | {change(cells[ref], cells[w])}" for w in strong) + " |")
    out += ["", "λ stage: λ = 8 against λ = 0 at the same weight (both continued from the same β-stage runs)", "",
            "| metric | " + " | ".join(f"{o.symbol} = {fmt_number(w)}: λ = 0 → 8" for w in weights) + " |",
            "|---|" + "---|" * len(weights)]
    for key, label in ZOO_METRICS:
        parts = []
        for w in weights:
            a, b = cell_stats(lambda_rows, dataset, key, w, 0.0), cell_stats(lambda_rows, dataset, key, w, 8.0)
            parts.append(f"{_g(a[0])} → {_g(b[0])}: {change(a, b)}")
        out.append(f"| {label} | " + " | ".join(parts) + " |")
    return out + [""]


def write_page(roots: dict[str, tuple[Path, Path]], cfg, docs: Path = DOCS) -> Path:
    """Write docs/zoo.md from each objective's (β-stage root, λ-stage root)."""
    sections, times = [], []
    for name, (beta_root, lambda_root) in roots.items():
        beta_rows, lambda_rows = runs.scan_rows(beta_root), runs.scan_rows(lambda_root)
        sections += objective_section(name, beta_rows, lambda_rows, cfg.datasets[0])
        n_beta = sum(r.get("status") == "done" for r in beta_rows)
        n_lambda = sum(r.get("status") == "done" for r in lambda_rows)
        times.append(f"| {OBJECTIVES[name].title} | {n_beta} | {_minutes(stage_wall_time(beta_root))} | {n_lambda} "
                     f"| {_minutes(stage_wall_time(lambda_root))} |")
    out = ["# The zoo on a CPU: does each objective's strong setting take information away, and does λ give "
           "it back?", "",
           "Written by `python main_lambda.py --preset zoo` (after `python main_beta.py --preset zoo`; "
           "`--collect` rewrites it) from `zoo_results/`. The objectives are described in "
           "[objectives.md](objectives.md); the preset and the reason for each setting are in `config.py` "
           "(`ZOO_OVERRIDES`, `ZOO_WEIGHTS`), its budget in [zoo_budget.csv](zoo_budget.csv) "
           "(`python scripts/zoo_budget.py`).", "",
           f"Settings: the {cfg.datasets[0]} stand-in, seeds {{{', '.join(map(str, cfg.seeds))}}}, {cfg.steps} β-stage "
           f"steps, then λ ∈ {{{', '.join(fmt_number(v) for v in cfg.lambdas)}}} for {cfg.lambda_steps} further steps "
           f"(fresh Adam); batch {cfg.batch_size}, lr {cfg.lr:g}; metrics on {cfg.metric_train_points:,} encoder means "
           f"({cfg.num_bins}-bin histograms; SAP fit on them, scored on {cfg.metric_test_points:,} more). mean KL is "
           f"the KL of the posterior averaged over those images, an upper bound on I(x; z); active latents have "
           f"KL > 0.1 nats; NLL is the train-window BCE.", "",
           "A change is **beyond noise** when it is larger than one seed std, the larger of the two cells' "
           "(sample std, ddof=1); otherwise it is within noise: with these seeds it cannot be told apart from "
           f"none. This is a weak test ({len(cfg.seeds)} seeds), and the stand-in is not the real dSprites.", "",
           "Wall time on this machine (2 shared CPU cores), first run's start to last run's finish:", "",
           "| objective | β-stage runs | β stage | λ-stage runs | λ stage |", "|---|---|---|---|---|", *times, "",
           *sections]
    path = Path(docs) / "zoo.md"
    write_text(path, "\n".join(out).rstrip() + "\n")
    print(f"wrote {path}")
    return path


def _minutes(seconds: float) -> str:
    return "n/a" if not math.isfinite(seconds) else f"{seconds / 60:.1f} min"
