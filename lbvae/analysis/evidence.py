"""docs/evidence.md: what the evidence preset measured, written from its results.

    python main_beta.py --preset evidence && python main_lambda.py --preset evidence
    python main_lambda.py --preset evidence --collect      # redraws the figures and rewrites the page

The λ stage's summarize calls ``write_report`` when the preset is "evidence"; it reads the
β stage's results.csv next to the λ stage's rows, copies the figures the page shows into
docs/evidence/ and writes the page. Every number on it is computed here from the rows:
seed means, sample stds (ddof=1) and percent changes against (β = 1, λ = 0), as the paper
reports them. "Appeared" means: the change has the paper's sign and is larger than one
seed std (the larger of the two cells compared), the same rule that greys cells out in
the heatmaps. With three seeds this is a weak test; the page says so.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np

import visualizations as vis
from utils import CHECKOUT, fmt_number, read_csv, write_text

DOCS = CHECKOUT / "docs"
FIGURES = "evidence"                 # docs/evidence/: the figures the page shows
TABLE_METRICS = (("mig", "MIG"), ("sap", "SAP"), ("i_m", "I_m (nats)"), ("active_latents", "active latents"),
                 ("i_xz_upper", "mean KL ≥ I(x;z) (nats)"), ("train_window_nll", "NLL (train BCE)"))

# The paper's numbers named in issue #20: (metric, β, λ, paper's % change against (β=1, λ=0),
# paper's dataset, what it shows). The stand-in is dSprites-like; the MPI3D effects are
# checked on it too, and the table says which dataset the paper's number is from.
PAPER_EFFECTS = (
    ("sap", 32.0, 0.0, -29.6, "dSprites", "SAP falls at large β (collapse)"),
    ("sap", 32.0, 8.0, +3.5, "dSprites", "λ = 8 brings SAP at β = 32 back to the baseline"),
    ("i_m", 32.0, 0.0, -44.0, "MPI3D", "I_m collapses at large β"),
    ("mig", 8.0, 0.0, +3.3, "MPI3D", "reference for the next row, not a claim: MIG at β = 8 without λ"),
    ("mig", 8.0, 8.0, +88.5, "MPI3D", "λ = 8 raises MIG at β = 8 far above λ = 0"),
    ("i_xz_upper", 32.0, 8.0, None, "", "the mechanism: λ = 8 keeps I(x; z) alive at β = 32"),
)
NAMES = {"sap": "SAP", "mig": "MIG", "i_m": "I_m", "i_xz_upper": "mean KL (≥ I(x; z))", "train_window_nll": "NLL"}

# The paper's percent changes against (β = 1, λ = 0), per dataset, metric and (β, λ) cell,
# read off the original's published percent-change figure (the λ × β heatmaps of NLL, SAP,
# MIG and I_m). Only dSprites is transcribed: a stand-in is compared with its own dataset.
_DSPRITES_BETAS = (4.0, 8.0, 16.0, 32.0)
_DSPRITES_LAMBDA8_BETAS = (1.0, 4.0, 8.0, 16.0, 32.0)
PAPER_PERCENT_CHANGE = {"dsprites": {
    **{("sap", b, 0.0): v for b, v in zip(_DSPRITES_BETAS, (28.8, 19.5, -1.1, -29.6))},
    **{("mig", b, 0.0): v for b, v in zip(_DSPRITES_BETAS, (45.9, 92.0, 244.5, 224.5))},
    **{("i_m", b, 0.0): v for b, v in zip(_DSPRITES_BETAS, (18.6, 56.7, 136.0, 117.8))},
    **{("train_window_nll", b, 0.0): v for b, v in zip(_DSPRITES_BETAS, (127.0, 269.0, 499.0, 719.0))},
    **{("sap", b, 8.0): v for b, v in zip(_DSPRITES_LAMBDA8_BETAS, (0.8, 17.2, 13.9, 12.2, 3.5))},
    **{("mig", b, 8.0): v for b, v in zip(_DSPRITES_LAMBDA8_BETAS, (-5.3, 32.0, 72.3, 223.6, 214.4))},
    **{("i_m", b, 8.0): v for b, v in zip(_DSPRITES_LAMBDA8_BETAS, (-2.5, 13.1, 44.6, 136.6, 137.0))},
    **{("train_window_nll", b, 8.0): v for b, v in zip(_DSPRITES_LAMBDA8_BETAS, (-26.0, 42.1, 113.0, 286.4, 444.7))},
}}
PAPER_SOURCE = ("the original's published percent-change figure (λ × β heatmaps of NLL, SAP, MIG and I_m, "
                "% change of the seed mean against (β = 1, λ = 0))")
COMPARED_METRICS = ("train_window_nll", "sap", "mig", "i_m")


def cell_stats(rows: list[dict], dataset: str, key: str, beta: float, lam: float) -> tuple[float, float, int]:
    """(seed mean, sample std (NaN for one seed), n) of a metric in one (β, λ) cell."""
    vals = [r[key] for r in rows if r.get("status") == "done" and r["dataset"] == dataset and r["beta"] == beta
            and r["lambda"] == lam and r.get(key) is not None and math.isfinite(r[key])]
    if not vals:
        return math.nan, math.nan, 0
    return float(np.mean(vals)), vis.sample_std(vals), len(vals)


def pct(value: float, base: float) -> float:
    return 100 * (value - base) / abs(base) if math.isfinite(base) and base != 0 else math.nan


def distinguishable(a: tuple, b: tuple) -> bool:
    """Two cells (mean, std, n) differ by more than one seed std (the larger of the two)."""
    spread = np.nanmax([a[1], b[1]]) if np.isfinite([a[1], b[1]]).any() else math.nan
    return math.isfinite(spread) and abs(a[0] - b[0]) > spread


def _f(v: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"


def _pp(v: float) -> str:
    """A percentage without exponent notation: 0 decimals from 10 % up, 1 below."""
    return "n/a" if not math.isfinite(v) else f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}"


def _p(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:+.1f} %"


def change_table(rows: list[dict], dataset: str, baseline_rows: list[dict] | None = None) -> list[str]:
    """Markdown: per metric and (β, λ) cell the seed mean ± std (n), the % change against
    (β = 1, λ = 0) of ``baseline_rows`` (default: the same rows) with the std as % of the
    baseline, and whether the change exceeds one seed std."""
    baseline_rows = baseline_rows or rows
    cells = sorted({(r["beta"], r["lambda"]) for r in rows if r["dataset"] == dataset and r.get("status") == "done"})
    lines = ["| metric | β | λ | seed mean ± std (n) | % change vs (β=1, λ=0) | seed std, % of baseline "
             "| beyond one seed std? |", "|---|---|---|---|---|---|---|"]
    for key, label in TABLE_METRICS:
        base = cell_stats(baseline_rows, dataset, key, 1.0, 0.0)
        for beta, lam in cells:
            c = cell_stats(rows, dataset, key, beta, lam)
            is_base = (beta, lam) == (1.0, 0.0)
            verdict = "baseline" if is_base else ("yes" if distinguishable(c, base) else "no (noise)")
            std_pct = 100 * c[1] / abs(base[0]) if math.isfinite(c[1]) and base[0] else math.nan
            lines.append(f"| {label} | {fmt_number(beta)} | {fmt_number(lam)} | {_f(c[0])} ± {_f(c[1], 2)} ({c[2]}) "
                         f"| {'—' if is_base else _p(pct(c[0], base[0]))} | {_pp(std_pct)} % | {verdict} |")
    return lines


def paper_table(rows: list[dict], dataset: str) -> tuple[list[str], list[bool]]:
    """Markdown: each effect the paper names, its number and direction, this run's % change
    ± the cell's std (as % of the baseline), and whether it appeared."""
    lines = ["| effect | paper (dataset): % vs (β=1, λ=0) | this run: % vs (β=1, λ=0), ± seed std | "
             "compared with | appeared? | seeds per cell to see the paper's size |", "|---|---|---|---|---|---|"]
    seen = []
    for key, beta, lam, paper, paper_ds, what in PAPER_EFFECTS:
        base = cell_stats(rows, dataset, key, 1.0, 0.0)
        cell = cell_stats(rows, dataset, key, beta, lam)
        # λ > 0: the paper's claim is the repair, so compare with λ = 0 at the same β;
        # λ = 0: the claim is the change with β, so compare with the baseline.
        ref_label, ref = ("(β=1, λ=0)", base) if lam == 0 else (f"(β={fmt_number(beta)}, λ=0)",
                                                                cell_stats(rows, dataset, key, beta, 0.0))
        paper_sign = np.sign(paper) if lam == 0 and paper is not None else 1.0
        measured = cell[0] - ref[0]
        ok = bool(np.isfinite(measured) and np.sign(measured) == paper_sign and distinguishable(cell, ref))
        # An effect the paper shows on another dataset is context, never a test of this one.
        other = bool(paper_ds) and paper_ds.lower() != vis.DATASET_TITLES.get(dataset, dataset).lower()
        reference = what.startswith("reference") or other
        if not reference:
            seen.append(ok)
        spread = 100 * cell[1] / abs(base[0]) if math.isfinite(cell[1]) and base[0] else math.nan
        direction = {1.0: "up", -1.0: "down", 0.0: "flat"}[float(paper_sign)]
        # The paper's difference between the two cells, in this run's units (% of this baseline).
        paper_delta = math.nan
        if paper is not None and math.isfinite(base[0]):
            ref_paper = 0.0 if lam == 0 else next((p for k, b, lm, p, *_ in PAPER_EFFECTS
                                                   if (k, b, lm) == (key, beta, 0.0)), math.nan)
            paper_delta = (paper - ref_paper) / 100 * abs(base[0])
        n_needed = math.nan if reference else seeds_needed(cell[1], ref[1], paper_delta)
        claim = "claimed, no number" if paper is None else f"{paper:+.1f} % ({paper_ds})"
        if other:
            claim += f", another dataset: context, not a test of {vis.DATASET_TITLES.get(dataset, dataset)}"
        lines.append(f"| {what}: {NAMES[key]} at β={fmt_number(beta)}, "
                     f"λ={fmt_number(lam)} | {claim}; {direction} against {ref_label} "
                     f"| {_p(pct(cell[0], base[0]))} ± {_pp(spread)} % (n={cell[2]}) | {ref_label}: "
                     f"{_p(pct(ref[0], base[0]))} | {'—' if reference else '**yes**' if ok else 'no'} "
                     f"| {'n/a' if not math.isfinite(n_needed) else n_needed} |")
    return lines, seen


def _count_line(counts: dict) -> str:
    total = sum(counts.values())
    order = ("same", "opposite", "undecided", "no spread (n = 1)")
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    return f"Of {total} cells: " + ", ".join(parts) + "." if total else "No cell of this run has a paper number."


def paper_numbers_table(dataset: str) -> list[str]:
    """Markdown: the paper's percent changes for ``dataset``, λ rows × β columns per metric."""
    paper = PAPER_PERCENT_CHANGE.get(dataset, {})
    if not paper:
        return [f"(The paper's percent changes for {dataset} are not transcribed in this repository.)"]
    betas = sorted({b for _, b, _ in paper})
    lines = ["| metric | λ | " + " | ".join(f"β = {fmt_number(b)}" for b in betas) + " |",
             "|---|---|" + "---|" * len(betas)]
    for key in COMPARED_METRICS:
        for lam in sorted({lm for k, _, lm in paper if k == key}):
            cells = [paper.get((key, b, lam)) for b in betas]
            text = ["baseline" if (b, lam) == (1.0, 0.0) else "—" if v is None else f"{v:+.1f} %"
                    for b, v in zip(betas, cells)]
            lines.append(f"| {NAMES[key]} | {fmt_number(lam)} | " + " | ".join(text) + " |")
    return lines


def agreement(run_pct: float, spread_pct: float, paper_pct: float) -> tuple[str, str]:
    """(sign, size) of this run's change against the paper's, both in % of the baseline.

    sign: "same" or "opposite" when this run's change exceeds its seed spread (one std, the
    larger of the cell's and the baseline's), "undecided" when it does not, "no spread" with
    one seed. size: whether the paper's number lies within this run's change ± that spread."""
    if not math.isfinite(run_pct):
        return "no run", "—"
    if not math.isfinite(spread_pct):
        return "no spread (n = 1)", "—"
    beyond = abs(run_pct) > spread_pct
    sign = ("same" if np.sign(run_pct) == np.sign(paper_pct) else "opposite") if beyond else "undecided"
    inside = abs(run_pct - paper_pct) <= spread_pct
    return sign, "within ± 1 sd" if inside else ("paper larger" if abs(paper_pct) > abs(run_pct) else
                                                 "paper smaller")


def paper_comparison(rows: list[dict], dataset: str) -> tuple[list[str], dict]:
    """Markdown: every cell of this run where the paper has a number for ``dataset``: the
    paper's % change, this run's ± its seed spread (n), and the agreement by sign and by size.
    Also the counts of each sign verdict, so the page can say how many effects went which way."""
    paper = PAPER_PERCENT_CHANGE.get(dataset, {})
    lines = ["| metric | β | λ | paper: % vs (β=1, λ=0) | this run: % vs (β=1, λ=0) ± 1 sd (n) | sign | size |",
             "|---|---|---|---|---|---|---|"]
    counts: dict[str, int] = {}
    for key in COMPARED_METRICS:
        base = cell_stats(rows, dataset, key, 1.0, 0.0)
        for (k, beta, lam), paper_pct in sorted(paper.items(), key=lambda kv: (kv[0][2], kv[0][1])):
            cell = cell_stats(rows, dataset, key, beta, lam) if k == key else (math.nan, math.nan, 0)
            if k != key or cell[2] == 0:
                continue
            run_pct = pct(cell[0], base[0])
            both = [v for v in (cell[1], base[1]) if math.isfinite(v)]
            spread = 100 * max(both) / abs(base[0]) if len(both) == 2 and base[0] else math.nan
            sign, size = agreement(run_pct, spread, paper_pct)
            counts[sign] = counts.get(sign, 0) + 1
            shown_sign = f"**{sign}**" if sign in ("same", "opposite") else sign
            lines.append(f"| {NAMES[key]} | {fmt_number(beta)} | {fmt_number(lam)} | {paper_pct:+.1f} % "
                         f"| {_p(run_pct)} ± {_pp(spread)} % (n={cell[2]}) | {shown_sign} | {size} |")
    return lines, counts


Z_SUM = 1.959964 + 0.841621        # two-sided 5 % test with 80 % power: z_0.975 + z_0.8


def seeds_needed(std_a: float, std_b: float, delta: float) -> float:
    """Seeds per cell for a two-sample test (5 %, power 80 %) to detect a difference
    ``delta`` between two cells with these seed stds (normal approximation)."""
    if not (math.isfinite(std_a) and math.isfinite(std_b) and math.isfinite(delta)) or delta == 0:
        return math.nan
    return math.ceil(Z_SUM ** 2 * (std_a ** 2 + std_b ** 2) / delta ** 2)


def stage_wall_time(root: Path) -> float:
    """Seconds from the first run's config.json to the last run's metrics.json (file times)."""
    starts = [p.stat().st_mtime for p in root.rglob("config.json") if p.parent != root]
    ends = [p.stat().st_mtime for p in root.rglob("metrics.json")]
    return max(ends) - min(starts) if starts and ends else math.nan


def _copy(src: Path, dst_dir: Path, name: str) -> str | None:
    if not src.exists():
        return None
    dst_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst_dir / name)
    return f"{FIGURES}/{name}"


def _budget_table(docs: Path) -> list[str]:
    path = docs / "evidence_budget.csv"
    if not path.exists():
        return ["(docs/evidence_budget.csv is missing: run `python scripts/evidence_budget.py`.)"]
    rows = read_csv(path)
    lines = ["| β | step | MIG (floor) | SAP | I_m nats (floor) | active latents | mean KL (nats) |",
             "|---|---|---|---|---|---|---|"]
    for beta in sorted({r["beta"] for r in rows}):
        for step in sorted({r["step"] for r in rows}):
            cell = [r for r in rows if r["beta"] == beta and r["step"] == step]
            if not cell:
                continue

            def ms(key, cell=cell):
                v = [r[key] for r in cell]
                return f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"
            lines.append(f"| {fmt_number(beta)} | {step} | {ms('mig')} ({np.mean([r['mig_floor'] for r in cell]):.3f}) "
                         f"| {ms('sap')} | {ms('i_m')} ({np.mean([r['i_m_floor'] for r in cell]):.3f}) "
                         f"| {ms('active_latents')} | {ms('i_xz_upper')} |")
    seeds = len({r["seed"] for r in rows})
    lines.append(f"\nmean ± std over {seeds} seeds; floor: the same metric with the factors shuffled (true MI 0).")
    return lines


def write_report(lambda_rows: list[dict], lambda_root: Path, beta_root: Path, cfg, docs: Path = DOCS) -> Path:
    """Write docs/evidence.md (and its figures under docs/evidence/) from both stages' results."""
    beta_rows = read_csv(beta_root / "results.csv") if (beta_root / "results.csv").exists() else []
    lam_rows = [r for r in lambda_rows if r.get("status") == "done"]
    beta_done = [r for r in beta_rows if r.get("status") == "done"]
    datasets = list(dict.fromkeys(r["dataset"] for r in lam_rows + beta_done))
    figs = docs / FIGURES
    shown = {
        "collapse_beta": _copy(beta_root / "collapse_across_datasets.png", figs, "collapse_beta_stage.png"),
        "collapse_lambda": _copy(lambda_root / "collapse_across_datasets.png", figs, "collapse_lambda_stage.png"),
        "heatmaps": _copy(lambda_root / "metric_heatmaps_across_datasets.png", figs, "lambda_heatmaps.png"),
        "boxplots": _copy(beta_root / "metric_boxplots_across_datasets.png", figs, "beta_boxplots.png"),
    }
    ds0 = datasets[0] if datasets else "dsprites"
    betas = sorted({r["beta"] for r in beta_done})
    for b in (betas[:1] + betas[-1:]) if betas else []:
        run = beta_root / ds0 / f"beta_{fmt_number(b)}" / "seed_0"
        shown[f"mi_{b}"] = _copy(run / "mi_heatmap.png", figs, f"mi_heatmap_beta_{fmt_number(b)}.png")
        shown[f"rec_{b}"] = _copy(run / "originals_vs_reconstructions.png", figs,
                                  f"reconstructions_beta_{fmt_number(b)}.png")
    t_beta, t_lambda = stage_wall_time(beta_root), stage_wall_time(lambda_root)
    def grid(rows, key):
        return ", ".join(fmt_number(v) if isinstance(v, float) else str(v) for v in sorted({r[key] for r in rows}))
    settings = (f"datasets {', '.join(datasets)}; β stage: β ∈ {{{grid(beta_done, 'beta')}}}, seeds "
                f"{{{grid(beta_done, 'seed')}}}, {cfg.steps} steps; λ stage: β ∈ {{{grid(lam_rows, 'beta')}}}, "
                f"λ ∈ {{{grid(lam_rows, 'lambda')}}}, {cfg.lambda_steps} further steps (fresh Adam); batch "
                f"{cfg.batch_size}, lr {cfg.lr:g}, {cfg.metric_train_points:,} metric points")
    out = ["# Evidence on a CPU: does mutual information collapse with β, and does λ repair it?", "",
           "Written by `python main_lambda.py --preset evidence` (and rewritten by "
           "`python main_lambda.py --preset evidence --collect`) from `evidence_results/`. "
           "The preset and the reason for each of its settings are in `config.py` (`EVIDENCE_OVERRIDES`).", "",
           f"Settings of this run: {settings}.", "",
           f"Wall time on this machine (2 shared CPU cores; other jobs were running, so these are upper bounds), "
           f"from the first run's start to the last run's finish: β stage {t_beta / 60:.1f} min, "
           f"λ stage {t_lambda / 60:.1f} min.", ""]
    for ds in datasets:
        title = vis.DATASET_TITLES.get(ds, ds)
        beta_ds = [r for r in beta_done if r["dataset"] == ds]
        compared, counts = paper_comparison(lam_rows, ds)
        beta_compared, beta_counts = paper_comparison(beta_ds, ds)
        out += [f"## {title} stand-in against the paper's {title} numbers", "",
                f"The paper's percent changes on {title}, against (β = 1, λ = 0), from {PAPER_SOURCE}:", "",
                *paper_numbers_table(ds), ""]
        if ds in PAPER_PERCENT_CHANGE:
            out += ["Below, every cell this run has where the paper gives a number, with this run's change ± one "
                    "seed std (the larger of the cell's and the baseline's, as % of the baseline). *Sign*: "
                    "**same** or **opposite** when this run's change is larger than that std, *undecided* when it "
                    "is not. *Size*: whether the paper's number lies within this run's change ± 1 sd.", "",
                    "**λ stage** (this run's (β = 1, λ = 0) baseline is its λ stage's, as the paper's):", "",
                    *compared, "", _count_line(counts), ""]
            if beta_ds:
                out += ["**β stage** against the paper's λ = 0 row (the paper's row continues training with "
                        "λ = 0; here the β stage's own runs, against its β = 1):", "", *beta_compared, "",
                        _count_line(beta_counts), ""]
        lines, seen = paper_table(lam_rows, ds)
        n_seen = sum(seen)
        out += [f"### {title} stand-in: the paper's claims as tests", "",
                "The paper's percent changes are against (β = 1, λ = 0); so are this run's (λ stage, seed means). "
                "For a λ = 8 effect the question is the repair, so it is compared with λ = 0 at the same β. "
                "*Appeared* means: the paper's direction, and a difference larger than one seed std (the larger "
                "of the two cells). With 3 seeds that is a weak test; a 'no' says the effect is not "
                "distinguishable from seed noise within this budget, not that it is absent. Rows whose number "
                "comes from another dataset are context only: they are not counted. The last column is "
                "the number of seeds per cell a two-sample test (5 %, power 80 %) would need to see a difference "
                "of the paper's size with this run's seed stds (n/a where the paper gives no number; for the "
                "SAP repair the paper's difference is +3.5 − (−29.6) points of the baseline).", "", *lines, "",
                f"**{n_seen} of {len(seen)} {title} effects appeared.**" + (
                    " The others did not appear within this budget: see the learning curves below for how far "
                    "the metrics had moved from their floor." if n_seen < len(seen) else ""), ""]
        out += [f"### Percent change against (β = 1, λ = 0), λ stage ({title})", "",
                *change_table(lam_rows, ds), ""]
        if beta_ds:
            out += [f"### β stage ({title}): percent change against β = 1 (does disentanglement rise, then fall?)",
                    "", *change_table(beta_ds, ds), ""]
    out += ["## Figures", ""]
    captions = [
        ("collapse_beta", "β stage: active latents, the I(x; z) bound, I_m and MIG against β (seed mean ± std)."),
        ("collapse_lambda", "λ stage: the same, one line per λ (λ = 8 against the λ = 0 control)."),
        ("heatmaps", "λ × β heatmaps: seed mean ± std and n per cell; grey cells are within one seed std of the "
                     "(β=1, λ=0) baseline."),
        ("boxplots", "β stage: metrics over seeds (n under each box)."),
    ]
    what = {"mi": "MI per factor and latent, shuffled-factor floor subtracted",
            "rec": "Originals (left) and reconstructions from the encoder means (right)"}
    captions += [(k, f"{what[k.split('_')[0]]}, β = {fmt_number(float(k.split('_')[1]))}, seed 0.")
                 for k in shown if k.startswith(("mi_", "rec_"))]
    for key, caption in captions:
        if shown.get(key):
            out += [f"![{caption}]({shown[key]})", "", caption, ""]
    budget = read_csv(docs / "evidence_budget.csv") if (docs / "evidence_budget.csv").exists() else []
    reached = max((r["step"] for r in budget), default=0)
    out += ["## Budget: how the metrics evolve with training steps", "",
            f"`python scripts/evidence_budget.py --milestones 0 300 1000 2000 3000` (dSprites stand-in, batch 32, "
            f"lr 1e-3, 5,000 metric points, two seeds per β), measured up to {reached:,} steps; the preset trains "
            f"{cfg.steps:,}. `config.py` says why that budget was chosen: the cheapest measured one at which every "
            f"run had left the mean image and MIG its shuffled-factor floor. Where a metric still rises at the "
            f"last milestone, more steps would move it; where it is flat and the seeds stay apart, more seeds, "
            f"not more steps, are what an effect of that size needs.", "",
            "![learning curves](evidence_learning_curves.png)", "", *_budget_table(docs), ""]
    path = docs / "evidence.md"
    write_text(path, "\n".join(out))
    print(f"wrote {path} ({os.path.getsize(path):,} bytes) and its figures in {figs}/")
    return path
