"""What the MINE-VAE's mechanism does, measured: the cross-attention's allocation of
latent capacity, and what moves it (docs/mine_evidence.md).

The claim under test (docs/mine.md): cross-attention allocates latent capacity to each
factor by its complexity, and MINE makes the latent parts independent. The numbers:
- the attention map A (K factor queries × L latents, mean over codes) and how far it is
  from uniform: L_ent = H(latent | query) against its maximum log L, and L_sparse =
  H(query | latent) against log K (``attention_uniformity``);
- each ground-truth factor's share of the latent capacity, against its complexity
  c_j = log(classes_j) (``capacity_shares``, ``capacity_correlation``);
- the gradient each loss term sends into the attention (scripts/mine_budget.py).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

import metrics
import visualizations as vis
from lbvae.analysis.evidence import distinguishable
from lbvae.data.ground_truth import FACTORS
from losses import attention_entropy, attention_sparsity
from utils import CHECKOUT, read_csv, read_json, write_text


@torch.no_grad()
def attention_of(model, codes: np.ndarray, device, batch_size: int = 500) -> torch.Tensor:
    """The attention (n, K, L) the model gives the codes (encoder means) ``codes`` (n, L)."""
    model.eval()
    parts = [model.attend(torch.from_numpy(codes[i:i + batch_size]).to(device))[1].float().cpu()
             for i in range(0, len(codes), batch_size)]
    return torch.cat(parts)


def attention_uniformity(attention: torch.Tensor) -> dict:
    """L_ent and L_sparse of per-code attention (n, K, L), their maxima (uniform attention),
    and the fraction of each maximum removed: 0 for uniform, 1 for one-to-one."""
    _, k, n_latents = attention.shape
    ent, sparse = float(attention_entropy(attention)), float(attention_sparsity(attention))
    return {"l_ent": ent, "l_ent_max": math.log(n_latents), "l_sparse": sparse, "l_sparse_max": math.log(k),
            "ent_removed": 1 - ent / math.log(n_latents), "sparse_removed": 1 - sparse / math.log(k)}


def capacity_shares(mi: np.ndarray, complexity: np.ndarray) -> np.ndarray:
    """Each ground-truth factor's share of the latent capacity: latent i's capacity C_i
    (its Gaussian-fit complexity, nats) split over the factors in proportion to its
    mutual information with each (``mi`` (J, L), nats), summed over latents and
    normalised to sum 1 over the J factors. Uniform (1/J) when no latent carries any."""
    mi = np.clip(np.asarray(mi, float), 0, None)
    per_latent = mi.sum(0)
    split = np.divide(mi, per_latent, out=np.zeros_like(mi), where=per_latent > 0)
    capacity = split @ np.clip(np.asarray(complexity, float), 0, None)
    total = capacity.sum()
    return capacity / total if total > 0 else np.full(len(mi), 1 / len(mi))


def factor_complexities(factor_sizes) -> np.ndarray:
    """c_j = log(number of classes of factor j), nats: the entropy of a uniform factor."""
    return np.log(np.asarray(factor_sizes, float))


def capacity_correlation(shares: np.ndarray, complexity: np.ndarray) -> float:
    """Pearson correlation over factors of capacity share against complexity (nan when
    either is constant)."""
    shares, complexity = np.asarray(shares, float), np.asarray(complexity, float)
    if shares.std() == 0 or complexity.std() == 0:
        return math.nan
    return float(np.corrcoef(shares, complexity)[0, 1])


def factor_capacity(model, dataset, codes: np.ndarray, factors: np.ndarray, num_bins: int) -> dict:
    """Capacity shares of the dataset's varying factors, their complexities and the
    correlation; the MI matrix the shares come from and the MIG it gives."""
    varying = [j for j, size in enumerate(dataset.factor_sizes) if size > 1]
    gap = metrics.mig(factors[:, varying], codes, num_bins)
    mi = gap["mi"].T                                                            # (J factors, L latents)
    complexity = model.complexity.complexity().cpu().numpy()
    shares = capacity_shares(mi, complexity)
    c = factor_complexities([dataset.factor_sizes[j] for j in varying])
    return {"factors": [dataset.factor_names[j] for j in varying], "shares": shares, "complexity": c,
            "correlation": capacity_correlation(shares, c), "mi": mi, "mig": gap["mig"],
            "latent_complexity": complexity}


# --- docs/mine_evidence.md, from the evidence preset's runs ----------------------------------
DOCS = CHECKOUT / "docs"
FIGURES = "mine_evidence"            # docs/mine_evidence/: the page's figures
LEFT_UNIFORM = 0.05                  # attention "left uniform": ≥ 5 % of L_ent's maximum (log L) removed
METRICS = (("mig", "MIG"), ("sap", "SAP"), ("z_diff", "Z-diff"), ("z_min_var", "Z-min Var"), ("irs", "IRS"),
           ("jemmig", "JEMMIG (normalised)"), ("heldout_recon", "held-out recon (nats)"))


def run_numbers(row: dict, run_dir: Path) -> dict:
    """One finished run's mechanism numbers, from its row and its metrics.json."""
    saved = read_json(run_dir / "metrics.json")
    names, sizes = FACTORS[row["dataset"]]
    mi = np.asarray(saved["mi"], float).T                                    # (J, L)
    shares = capacity_shares(mi, np.asarray(saved["complexity_nats"], float))
    c = factor_complexities(sizes)
    k, n_latents = np.asarray(saved["mean_attention"]).shape
    return {"seed": row["seed"], "variant": row["variant"], "attention": np.asarray(saved["mean_attention"]),
            "shares": shares, "complexity": c, "factors": names, "r": capacity_correlation(shares, c),
            "ent_removed": 1 - row["train_window_ent"] / math.log(n_latents),
            "sparse_removed": 1 - row["train_window_sparse"] / math.log(k), **row}


def stats(values) -> tuple[float, float, int]:
    """(mean, sample std (nan for one value), n) of the finite values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    return float(np.mean(vals)), vis.sample_std(vals), len(vals)


def _ms(s: tuple, digits: int = 3) -> str:
    mean, std, n = s
    if not n:
        return "n/a"
    return f"{mean:.{digits}g} ± {std:.2g} (n={n})" if math.isfinite(std) else f"{mean:.{digits}g} (n=1)"


def attention_figure(runs: list[dict], path: Path) -> None:
    """Mean attention (queries × latents) of every run: variants in rows, seeds in columns,
    one colour scale from 0 to the largest weight; uniform attention is one flat colour."""
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    top = max(float(r["attention"].max()) for r in runs)
    plt = vis.plt
    fig, axes = plt.subplots(len(variants), len(seeds), figsize=(2.6 * len(seeds), 1.9 * len(variants)),
                             squeeze=False, layout="constrained")
    for r in runs:
        ax = axes[variants.index(r["variant"]), seeds.index(r["seed"])]
        image = ax.imshow(r["attention"], vmin=0, vmax=top, cmap="viridis", aspect="auto")
        ax.set_title(f"{r['variant']} seed {r['seed']}: L_ent −{100 * r['ent_removed']:.0f} %", fontsize=7)
        ax.set_xlabel("latent", fontsize=7)
        ax.set_ylabel("query", fontsize=7)
        ax.tick_params(labelsize=6)
    uniform = 1 / runs[0]["attention"].shape[1]
    fig.colorbar(image, ax=axes, shrink=0.8, label=f"attention weight (uniform: 1/L = {uniform:.2f})")
    vis._save_figure(fig, path)


def capacity_figure(runs: list[dict], path: Path) -> None:
    """Each factor's share of the latent capacity against its complexity log(classes),
    one point per run, a panel per variant; the title gives r over factors (mean ± sd over seeds)."""
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    plt = vis.plt
    fig, axes = plt.subplots(1, len(variants), figsize=(3.2 * len(variants), 2.9), squeeze=False,
                             layout="constrained", sharey=True)
    for ax, v in zip(axes[0], variants):
        group = [r for r in runs if r["variant"] == v]
        for r in group:
            ax.scatter(r["complexity"], r["shares"], s=14, label=f"seed {r['seed']}")
        for name, c, s in zip(group[0]["factors"], group[0]["complexity"], group[0]["shares"]):
            ax.annotate(name, (c, s), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.axhline(1 / len(group[0]["shares"]), ls="--", lw=0.8, color="grey")
        ax.set_title(f"{v}: r = {_ms(stats(r['r'] for r in group), 2)}", fontsize=8)
        ax.set_xlabel("factor complexity log(classes) (nats)", fontsize=7)
    axes[0][0].set_ylabel("share of latent capacity", fontsize=7)
    axes[0][0].legend(fontsize=6, title="dashed: equal shares", title_fontsize=6)
    vis._save_figure(fig, path)


def _verdict(a: tuple, b: tuple, smaller: bool) -> str:
    """Whether a is below (``smaller``) or above b by more than one seed std."""
    if not (a[2] and b[2]):
        return "not measured"
    if not distinguishable(a, b):
        return "no (within one seed std)"
    return "**yes**" if (a[0] < b[0]) == smaller else "no (the opposite)"


def claims_table(runs: list[dict]) -> list[str]:
    def of(variant, key):
        return stats(r[key] for r in runs if r["variant"] == variant)
    full_left = [r["ent_removed"] for r in runs if r["variant"] == "full"]
    left = bool(full_left) and min(full_left) >= LEFT_UNIFORM
    sparse_left = [r["sparse_removed"] for r in runs if r["variant"] == "full"]
    rs = [r["r"] for r in runs if r["variant"] == "full"]
    rows = [
        ("the cross-attention leaves uniform (full)", "L_ent removed per seed: "
         + ", ".join(f"{100 * v:.1f} %" for v in full_left) + f" (threshold {100 * LEFT_UNIFORM:.0f} %)",
         "**yes**" if left else "no"),
        ("L_sparse makes the allocation one-to-one: L_sparse leaves its maximum log K (≥ 5 % removed in "
         "every seed) and ends lower with it (full) than without (no_sparse)",
         "removed per seed: " + ", ".join(f"{100 * v:.1f} %" for v in sparse_left)
         + f"; {_ms(of('full', 'train_window_sparse'), 4)} against {_ms(of('no_sparse', 'train_window_sparse'), 4)} "
         "nats", ("no (it stays at its maximum)" if not sparse_left or min(sparse_left) < LEFT_UNIFORM
                  else _verdict(of("full", "train_window_sparse"), of("no_sparse", "train_window_sparse"),
                                smaller=True))),
        ("capacity follows complexity: r(share, log classes) > 0 over factors, in every seed (full)",
         f"r per seed: {', '.join(f'{v:+.2f}' for v in rs)}; without the mechanism's parts: "
         + ", ".join(f"{v} {_ms(of(v, 'r'), 2)}" for v in ("no_mine", "no_sparse")),
         ("no" if not (rs and all(math.isfinite(v) and v > 0 for v in rs)) else
          "**yes**" if all(distinguishable(of("full", "r"), of(v, "r")) and of("full", "r")[0] > of(v, "r")[0]
                           for v in ("no_mine", "no_sparse")) else
          "yes, but as much without the mechanism: not its doing")),
        ("MINE makes the latent parts independent: post-hoc redundancy lower with it (full) than without (no_mine)",
         f"{_ms(of('full', 'mine_mi_posthoc'))} against {_ms(of('no_mine', 'mine_mi_posthoc'))} nats",
         _verdict(of("full", "mine_mi_posthoc"), of("no_mine", "mine_mi_posthoc"), smaller=True)),
        ("the mechanism disentangles: MIG higher with it (full) than without MINE (no_mine)",
         f"{_ms(of('full', 'mig'))} against {_ms(of('no_mine', 'mig'))}",
         _verdict(of("full", "mig"), of("no_mine", "mig"), smaller=False)),
        ("... and than without L_sparse (no_sparse)", f"{_ms(of('full', 'mig'))} against {_ms(of('no_sparse', 'mig'))}",
         _verdict(of("full", "mig"), of("no_sparse", "mig"), smaller=False)),
    ]
    return ["| claim | this run measured (mean ± seed std) | appeared? |", "|---|---|---|",
            *(f"| {c} | {m} | {a} |" for c, m, a in rows)]


def first_left_uniform(rows: list[dict], setting: str) -> int | None:
    """The first measured step at which every seed of ``setting`` had left uniform
    attention (``LEFT_UNIFORM`` of L_ent's maximum removed), and stayed so at every later
    measured step; None if none."""
    group = [r for r in rows if r["setting"] == setting]
    steps = sorted({r["step"] for r in group})
    ok = {s: all(r["ent_removed"] >= LEFT_UNIFORM for r in group if r["step"] == s) for s in steps}
    return next((s for i, s in enumerate(steps) if all(ok[t] for t in steps[i:])), None)


def budget_table(csv: Path) -> list[str]:
    """The budget measurement's last milestone per setting: how far each setting moved the attention."""
    if not csv.exists():
        return ["(docs/mine_budget.csv is missing: run scripts/mine_budget.py)"]
    rows = read_csv(csv)
    out = ["| setting | L_sparse, L_ent weights, temperature | left uniform in every seed from step | step | "
           "L_ent removed | L_sparse removed | r(share, c) | ‖∇A‖ recon | ‖∇A‖ sparse | ‖∇A‖ ent |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["setting"] for r in rows):
        group = [r for r in rows if r["setting"] == name]
        last = max(r["step"] for r in group)
        at = [r for r in group if r["step"] == last]
        first = at[0]

        def cell(key, fmt="{:.2e}", group=at):
            mean, std, n = stats(r[key] for r in group)
            return fmt.format(mean) + (f" ± {fmt.replace('+', '').format(std)}" if math.isfinite(std) else "")
        left = first_left_uniform(rows, name)
        out.append(f"| {name} | {first['attention_reg_weight']:g}, {first['entropy_reg_weight']:g}, "
                   f"{first['attention_temperature']:g} | {'never' if left is None else left} | {last} | "
                   f"{cell('ent_removed', '{:.3f}')} | "
                   f"{cell('sparse_removed', '{:.3f}')} | {cell('capacity_correlation', '{:+.2f}')} | "
                   f"{cell('grad_recon')} | {cell('grad_sparse')} | {cell('grad_ent')} |")
    return out


def write_report(rows: list[dict], root: Path, cfg, docs: Path = DOCS) -> Path:
    """docs/mine_evidence.md and its figures from the evidence preset's finished runs."""
    done = [r for r in rows if r["status"] == "done"]
    runs = [run_numbers(r, root / r["dataset"] / r["variant"] / f"seed_{r['seed']}") for r in done]
    figures = docs / FIGURES
    figures.mkdir(parents=True, exist_ok=True)
    lines = ["# The MINE-VAE's mechanism, measured", "",
             "*Written by `python main_mine.py --preset evidence` from its runs; `python main_mine.py --preset "
             "evidence --collect` rewrites it. Settings: `config.MINE_EVIDENCE_PRESET`; the budget it was chosen "
             "from: `scripts/mine_budget.py` → `docs/mine_budget.csv` (table at the end).*", ""]
    if not runs:
        write_text(docs / "mine_evidence.md", "\n".join(lines + ["No finished run yet."]) + "\n")
        return docs / "mine_evidence.md"
    attention_figure(runs, figures / "attention.png")
    capacity_figure(runs, figures / "capacity.png")
    wall = sum(r.get("wall_time_s") or 0 for r in done)
    lines += [f"{len(done)} runs ({', '.join(dict.fromkeys(r['variant'] for r in done))} × seeds "
              f"{', '.join(str(s) for s in sorted({r['seed'] for r in done}))}) on the {cfg.source} "
              f"{', '.join(cfg.datasets)}, {cfg.steps} VAE steps each, L_sparse weight {cfg.attention_reg_weight:g}, "
              f"L_ent weight {cfg.entropy_reg_weight:g}, attention temperature {cfg.attention_temperature:g}; "
              f"{wall / 60:.0f} min of training and evaluation in all (sum of the runs' wall times, a timing).", "",
              "## Claims", "",
              "A difference counts when the two variants' seed means differ by more than one seed std (the larger "
              "of the two), the rule of docs/evidence.md; with three seeds this is a weak test.", "",
              *claims_table(runs), "",
              "## The attention maps", "",
              "Mean attention over 1,000 metric codes, queries × latents; L_ent removed = 1 − L_ent / log L, the "
              "fraction of uniform attention's entropy gone (train-window mean).", "",
              f"![attention]({FIGURES}/attention.png)", "",
              "## Capacity against complexity", "",
              "A latent's capacity (its Gaussian-fit complexity, nats) is split over the ground-truth factors in "
              "proportion to its mutual information with each (20-bin histograms, metric points); a factor's share "
              "is the sum over latents. r: Pearson correlation over factors between share and log(classes). "
              "Caveat: the histogram MI estimator's bias grows with a factor's classes, so a positive r is "
              "expected even without the mechanism; compare the variants, not r with 0.", "",
              f"![capacity]({FIGURES}/capacity.png)", "",
              "| variant | seed | " + " | ".join(runs[0]["factors"]) + " | r |",
              "|---|---|" + "---|" * len(runs[0]["factors"]) + "---|",
              "| complexity log(classes) | | " + " | ".join(f"{c:.2f}" for c in runs[0]["complexity"]) + " | |",
              *(f"| {r['variant']} | {r['seed']} | " + " | ".join(f"{s:.2f}" for s in r["shares"])
                + f" | {r['r']:+.2f} |" for r in runs), "",
              "## Redundancy between latent parts and the metrics", "",
              "mine_mi_posthoc: a fresh MINE per part after training, Î(mu_p; mu_rest) in nats (the same "
              "procedure for every variant); train_window_mine_mi: the training critics' estimate on the VAE "
              "batches. Mean ± seed std (n).", "",
              "| variant | " + " | ".join(["post-hoc redundancy", "training critics' estimate", "L_sparse", "L_ent"]
                                         + [label for _, label in METRICS]) + " |",
              "|---|" + "---|" * (4 + len(METRICS))]
    for v in dict.fromkeys(r["variant"] for r in runs):
        group = [r for r in runs if r["variant"] == v]
        keys = ["mine_mi_posthoc", "train_window_mine_mi", "train_window_sparse", "train_window_ent"] + \
            [k for k, _ in METRICS]
        lines.append(f"| {v} | " + " | ".join(_ms(stats(r.get(k) for r in group)) for k in keys) + " |")
    lines += ["", "## The budget", "",
              "What moved the attention of one `full` run, per setting, at the last measured step (mean ± "
              "spread over seeds; ‖∇A‖: the norm of each weighted term's gradient into the parameters that "
              "shape the attention, on one batch). Every row: `docs/mine_budget.csv`.", "",
              *budget_table(docs / "mine_budget.csv"), ""]
    write_text(docs / "mine_evidence.md", "\n".join(lines))
    return docs / "mine_evidence.md"
