"""The linear study's tables and figures, from its results rows: means over solutions per
cell (summary.csv, summary.txt), boxplots, λ × β heatmaps, the two solvers against each
other, and the collapse sweep against β (docs/linear.md)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from utils import (
    atomic_write,
)

METRICS = ("recon", "kl", "l2", "total", "sap", "i_m")


def usable(row) -> bool:
    """Rows that enter means and figures: converged fixed points and AdamW runs that did not fail."""
    return row["status"] in ("converged", "done")


# ----------------------------------------------------------------------------- tables

def summarize(rows: list[dict]) -> list[dict]:
    """Per (n, solver, β, λ): mean and std over usable solutions, and how many were left out and why."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["n"], r["solver"], r["beta"], r["lambda"]), []).append(r)
    out = []
    for (n, solver, beta, lam), rs in sorted(groups.items()):
        good = [r for r in rs if usable(r)]
        entry = {"n": n, "solver": solver, "beta": beta, "lambda": lam, "solutions": len(rs), "used": len(good),
                 "not_converged": sum(r["status"] == "not converged" for r in rs),
                 "failed": sum(r["status"] == "failed" for r in rs)}
        for key in METRICS:
            values = np.array([r[key] for r in good], dtype=float)
            entry[f"{key}_mean"] = float(values.mean()) if len(values) else None
            entry[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        entry["iterations_mean"] = float(np.mean([r["iterations"] for r in rs]))
        entry["cell_seconds"] = max(float(r["cell_seconds"]) for r in rs)      # one value per cell
        out.append(entry)
    return out


def summary_text(summary: list[dict], unsolved: list[tuple] = ()) -> str:
    """Mean I_m and SAP as λ × β tables per n and solver (and solutions left out). ``unsolved``:
    this command's (n, solver, β, λ) cells without results yet; they widen the tables and are
    counted. Any table cell without results reads 'not run', whichever command's grid it is in."""
    lines, missing = [], {}
    keys = sorted({(e["n"], e["solver"]) for e in summary} | {c[:2] for c in unsolved},
                  key=lambda x: (x[0], x[1] != "fixed-point"))
    for n, solver in keys:
        cells = {(e["lambda"], e["beta"]): e for e in summary if e["n"] == n and e["solver"] == solver}
        grid = list(cells) + [(lam, b) for n_, solver_, b, lam in unsolved if (n_, solver_) == (n, solver)]
        betas = sorted({b for _, b in grid})
        lams = sorted({lam for lam, _ in grid})
        missing[n, solver] = sum((lam, b) not in cells for lam in lams for b in betas)
        for metric, label in (("i_m", "I_m (nats), mean over solutions"), ("sap", "SAP, mean over solutions")):
            lines.append(f"n = {n}, {solver}: {label}; rows λ, columns β")
            lines.append("| λ \\ β | " + " | ".join(f"{b:g}" for b in betas) + " |")
            lines.append("|---" * (len(betas) + 1) + "|")
            for lam in lams:
                vals = []
                for b in betas:
                    e = cells.get((lam, b))
                    v = None if e is None else e[f"{metric}_mean"]
                    if e is None:               # this command's grid or an earlier one's: no results here
                        vals.append("not run")
                    elif v is None:
                        vals.append(f"none usable (0/{e['solutions']})")
                    else:
                        vals.append(f"{v:.3f}" + ("" if e["used"] == e["solutions"]
                                                  else f" ({e['used']}/{e['solutions']})"))
                lines.append(f"| {lam:g} | " + " | ".join(vals) + " |")
            lines.append("")
    for n in sorted({n for n, _ in keys}):
        gaps = solver_gaps(summary, n)
        if not gaps:
            continue
        lines.append(f"n = {n}: AdamW against the fixed point, per cell (means over solutions; ± the standard "
                     "error of the difference of means)")
        lines.append("| β | λ | total: (AdamW − fixed) / abs(fixed) | I_m: AdamW − fixed (nats) |")
        lines.append("|---|---|---|---|")
        for g in gaps:
            note = " (no minimum)" if g["no_minimum"] else ""
            lines.append(f"| {g['beta']:g} | {g['lambda']:g}{note} | {g['total_gap']:+.2e} ± {g['total_gap_se']:.1e} | "
                         f"{g['i_m_diff']:+.3f} ± {g['i_m_diff_se']:.3f} |")
        lines.append("")
    lines.append("Solving time per cell (results.csv's cell_seconds: the wall time of the batch the cell was "
                 "solved in, shared out by its cells, including any time the process was stopped; with w "
                 "workers side by side a grid's wall time is about the sum / w)")
    lines.append("| n | solver | cells | smallest (s) | median (s) | largest (s) | sum (s) | sum (h) |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for n, solver in keys:
        seconds = [e["cell_seconds"] for e in summary
                   if e["n"] == n and e["solver"] == solver and e.get("cell_seconds") is not None]
        if seconds:
            shown = [f"{x:,.0f}" if x >= 10 else f"{x:.2f}" for x in (min(seconds), np.median(seconds),
                                                                     max(seconds), sum(seconds))]
            lines.append(f"| {n} | {solver} | {len(seconds)} | " + " | ".join(shown)
                         + f" | {sum(seconds) / 3600:.2f} |")
    lines.append("")
    for n, solver in keys:
        if missing[n, solver]:
            lines.append(f"not run: {missing[n, solver]} of n = {n}'s {solver} cells have no results yet "
                         "(a run without --collect whose grid holds them solves them).")
    left_out = [e for e in summary if e["used"] < e["solutions"]]
    lines.append("(k/K): only k of K solutions entered the mean; the rest did not converge or failed "
                 "(see results.csv, columns status and failure)." if left_out else
                 f"Every solution{' of the cells run' if any(missing.values()) else ''} entered the means "
                 "(all fixed points converged, no solver failed).")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- figures

def _usable_values(rows, n, solver, beta, lam, key):
    return [r[key] for r in rows if r["n"] == n and r["solver"] == solver and r["beta"] == beta
            and r["lambda"] == lam and usable(r)]


SOLVER_TITLE = {"fixed-point": "fixed point", "adamw": "AdamW"}
METRIC_LABEL = {"recon": "recon, nats (lower is better)", "sap": "SAP (higher is better)",
                "i_m": "I_m, nats (higher is better)", "kl": "KL, nats"}


def draw_boxplots(rows, n, m, s, root: Path) -> Path:
    """λ = 0: recon, SAP and I_m per β (one box per β), a column per solver."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    solvers = [x for x in ("fixed-point", "adamw") if any(r["solver"] == x and r["n"] == n for r in rows)]
    betas = sorted({r["beta"] for r in rows if r["n"] == n})
    # One y-axis per metric row, so the two solvers are read on the same scale.
    fig, axes = plt.subplots(3, len(solvers), figsize=(4.5 * len(solvers), 9), squeeze=False, sharey="row")
    for col, solver in enumerate(solvers):
        left_out = sum(1 for r in rows if r["n"] == n and r["solver"] == solver and r["lambda"] == 0
                       and not usable(r))
        for row, key in enumerate(("recon", "sap", "i_m")):
            ax = axes[row, col]
            data = [_usable_values(rows, n, solver, b, 0.0, key) for b in betas]
            ax.boxplot([d if d else [np.nan] for d in data], showmeans=True,
                       meanprops={"marker": "^", "markerfacecolor": "green", "markeredgecolor": "green"})
            ax.set_xticks(range(1, len(betas) + 1), [f"{b:g}" for b in betas])
            ax.set_ylabel(METRIC_LABEL[key])
            ax.grid(alpha=0.3)
            if row == 0:
                extra = f"\n({left_out} unconverged/failed left out)" if left_out else ""
                ax.set_title(f"{SOLVER_TITLE[solver]}, λ = 0{extra}")
            if row == 2:
                ax.set_xlabel("β")
    fig.suptitle(f"linear β-VAE, n = {n}, m = {m}, s = {s}:\none box per β over solutions "
                 "(line median, triangle mean)", fontsize=10)
    fig.tight_layout()
    path = root / f"boxplots_betavae_n{n}_m{m}_s{s}.png"
    _save(fig, path)
    return path


def draw_heatmaps(summary, n, m, s, root: Path, unsolved=()) -> Path:
    """Rows recon / SAP / I_m, columns solvers; λ × β cells annotated with means over solutions;
    (β=1, λ=0) boxed. The axes span the folder's cells and this command's unsolved ones; a cell
    without results is marked 'not run' (a cell of an earlier command's grid may be one)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    entries = [e for e in summary if e["n"] == n]
    solved = {(e["solver"], e["beta"], e["lambda"]) for e in entries}
    solvers = [x for x in ("fixed-point", "adamw") if any(e["solver"] == x for e in entries)
               or any(c[1] == x for c in unsolved)]
    betas = sorted({e["beta"] for e in entries} | {c[2] for c in unsolved if c[1] in solvers})
    lams = sorted({e["lambda"] for e in entries} | {c[3] for c in unsolved if c[1] in solvers})
    fig, axes = plt.subplots(3, len(solvers), figsize=(4.8 * len(solvers), 9.5), squeeze=False)
    for row, (key, cmap) in enumerate((("recon", "Reds"), ("sap", "Blues"), ("i_m", "Blues"))):
        grids = {}
        for solver in solvers:
            grid = np.full((len(lams), len(betas)), np.nan)
            for e in entries:
                if e["solver"] == solver and e[f"{key}_mean"] is not None:
                    grid[lams.index(e["lambda"]), betas.index(e["beta"])] = e[f"{key}_mean"]
            grids[solver] = grid
        values = np.concatenate([g.ravel() for g in grids.values()])
        values = values[np.isfinite(values)]
        # One scale per metric across solvers; SAP and I_m start at 0 so small noise is not painted as signal.
        vmin = 0.0 if key != "recon" else (values.min() if len(values) else 0)
        vmax = values.max() if len(values) else 1
        if vmax <= vmin:
            vmax = vmin + 1
        for col, solver in enumerate(solvers):
            ax = axes[row, col]
            im = ax.imshow(grids[solver], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            for (i, j), v in np.ndenumerate(grids[solver]):
                if np.isfinite(v):
                    dark = (v - vmin) / (vmax - vmin) > 0.6
                    ax.text(j, i, f"{v:.2f}" if key == "recon" else f"{v:.3f}", ha="center", va="center", fontsize=8,
                            color="white" if dark else "black")
                else:
                    done = (solver, betas[j], lams[i]) in solved
                    ax.text(j, i, "none usable" if done else "not run", ha="center", va="center", fontsize=7,
                            color="0.45")
            if 1.0 in betas and 0.0 in lams:
                ax.add_patch(Rectangle((betas.index(1.0) - 0.5, lams.index(0.0) - 0.5), 1, 1, fill=False,
                                       edgecolor="red", linewidth=2))
            ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
            ax.set_yticks(range(len(lams)), [f"{lam:g}" for lam in lams])
            ax.set_xlabel("β")
            ax.set_ylabel("λ")
            if row == 0:
                ax.set_title(SOLVER_TITLE[solver])
            fig.colorbar(im, ax=ax, label="mean " + METRIC_LABEL[key])
    fig.suptitle(f"linear λβ-VAE, n = {n}, m = {m}, s = {s}: means over solutions\n"
                 "(red box: the β-VAE reference β = 1, λ = 0)", fontsize=10)
    fig.tight_layout()
    path = root / f"heatmap_lambda_betavae_n{n}_m{m}_s{s}.png"
    _save(fig, path)
    return path


def solver_gaps(summary: list[dict], n) -> list[dict]:
    """Per (β, λ) cell of ``n`` solved by both solvers: AdamW's mean total loss relative to the
    fixed point's, (AdamW − fixed point) / |fixed point|, and AdamW's mean I_m minus the fixed
    point's (nats), each with the standard error of the difference of the two means
    (√(s²_AdamW / k_AdamW + s²_fixed / k_fixed), s the std over the k solutions used)."""
    def variance_of_mean(e, key):
        std = e.get(f"{key}_std")
        return 0.0 if std is None else std ** 2 / (e.get("used") or 1)

    cells = {}
    for e in summary:
        if e["n"] == n and e["total_mean"] is not None:
            cells.setdefault((e["beta"], e["lambda"]), {})[e["solver"]] = e
    out = []
    for (beta, lam), v in sorted(cells.items()):
        if not {"fixed-point", "adamw"} <= v.keys():
            continue
        fp, aw = v["fixed-point"], v["adamw"]
        scale = max(abs(fp["total_mean"]), 1e-300)
        out.append({"beta": beta, "lambda": lam, "no_minimum": beta <= 1 and lam > 0,
                    "total_gap": (aw["total_mean"] - fp["total_mean"]) / scale,
                    "total_gap_se": math.sqrt(variance_of_mean(aw, "total") + variance_of_mean(fp, "total")) / scale,
                    "i_m_diff": aw["i_m_mean"] - fp["i_m_mean"],
                    "i_m_diff_se": math.sqrt(variance_of_mean(aw, "i_m") + variance_of_mean(fp, "i_m"))})
    return out


def draw_solvers(summary, n, m, s, root: Path) -> Path | None:
    """Per (β, λ) cell, AdamW against the fixed point, as differences of their means over
    solutions: the total loss relative to the fixed point's ((AdamW − fixed point) / |fixed point|:
    does AdamW reach the theory's optimum?) and I_m in nats (does it find the same information?).
    Zero is agreement; the bars are the standard error of the difference of the two means. The
    total's axis is symlog, so gaps of 1e-5 and of 30 % both show. β = 1 with λ > 0 has no
    minimum: the fixed point stops on its tolerance while AdamW keeps descending, so there AdamW
    may sit below the fixed point."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    gaps = solver_gaps(summary, n)
    if not gaps:
        return None
    betas = sorted({g["beta"] for g in gaps})
    lams = sorted({g["lambda"] for g in gaps})
    colours = dict(zip(lams, plt.cm.viridis(np.linspace(0.0, 0.85, len(lams)))))
    offset = {lam: 0.6 * (i / max(len(lams) - 1, 1) - 0.5) for i, lam in enumerate(lams)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    for ax, key, scale in zip(axes, ("total_gap", "i_m_diff"), (100, 1)):    # the total's gap in percent
        for g in gaps:
            colour = colours[g["lambda"]]
            ax.errorbar(betas.index(g["beta"]) + offset[g["lambda"]], scale * g[key], yerr=scale * g[f"{key}_se"],
                        fmt="s" if g["no_minimum"] else "o", ms=5, capsize=2, color=colour,
                        mfc="none" if g["no_minimum"] else colour, mec="tab:red" if g["no_minimum"] else colour)
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
        ax.set_xlabel("β (one marker per λ, left to right)")
        ax.grid(alpha=0.3, linewidth=0.5)
    axes[0].set_yscale("symlog", linthresh=1e-4)
    axes[0].set_ylabel("total loss: (AdamW − fixed point) / |fixed point|, %\n(symlog: linear within ±1e-4 %)")
    axes[1].set_ylabel("I_m: AdamW − fixed point (nats)")
    for lam in lams:
        axes[0].plot([], [], "o", color=colours[lam], label=f"λ = {lam:g}")
    axes[0].plot([], [], "s", mfc="none", mec="tab:red", color="0.5", label="β = 1, λ > 0: no minimum")
    axes[0].errorbar([], [], yerr=[], fmt="none", color="0.5", capsize=2,
                     label="± standard error of the difference of means")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"linear λβ-VAE, n = {n}, m = {m}, s = {s}: AdamW against the fixed point, per (β, λ) cell "
                 f"(means over solutions; {len(gaps)} cells solved by both; 0 = they agree)", fontsize=10)
    path = root / f"adamw_vs_fixed_point_n{n}_m{m}_s{s}.png"
    _save(fig, path)
    return path


def draw_collapse(sweep, sigma_y, n, m, s, root: Path) -> Path:
    """I_m and KL of the fixed point against β (log axis) for each λ, with the predicted KL and thresholds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lbvae.linear import solver as lv
    lams = sorted({r["lambda"] for r in sweep})
    beta_range = (min(r["beta"] for r in sweep), max(r["beta"] for r in sweep))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(lams)))
    fig, axes = plt.subplots(2, 1, figsize=(7.5, 8), sharex=True)
    for lam, color in zip(lams, colors):
        rs = sorted((r for r in sweep if r["lambda"] == lam), key=lambda r: r["beta"])
        beta = np.array([r["beta"] for r in rs])
        ok = np.array([bool(r["converged"]) for r in rs])
        for ax, key in zip(axes, ("i_m", "kl")):
            y = np.array([r[key] for r in rs])
            ax.plot(beta, y, "-", color=color, lw=1.5, label=f"λ = {lam:g}" if key == "i_m" else None)
            if (~ok).any():
                ax.plot(beta[~ok], y[~ok], "o", mfc="none", color=color)
        above = beta > 1
        pred = np.array([r["predicted_kl"] for r in rs], dtype=float)
        axes[1].plot(beta[above], pred[above], "--", color="black", lw=0.8)
        for t in lv.collapse_thresholds(sigma_y, m, lam):
            if beta_range[0] <= t <= beta_range[1]:
                for ax in axes:
                    ax.axvline(t, color=color, lw=0.8, ls=":")
    # β < 1 (and β = 1 with λ > 0) has no minimiser: the KL there only says where the steps fell
    # below tol, and at hundreds of nats it would flatten everything else; it is left off the scale.
    for ax in axes:
        ax.axvspan(beta_range[0], 1.0, color="0.9", zorder=0)
    finite = [r["kl"] for r in sweep if r["beta"] > 1]
    axes[1].set_ylim(0, 1.15 * max(finite) if finite and max(finite) > 0 else 1)
    largest_kl = max(r["kl"] for r in sweep)
    axes[1].text(beta_range[0] * 1.1, axes[1].get_ylim()[1] * 0.95,
                 f"β ≤ 1: no minimum, KL grows\nwithout bound (here up to\n{largest_kl:.0f} nats, off the scale)",
                 va="top", fontsize=8)
    axes[1].plot([], [], "--", color="black", lw=0.8, label="predicted KL, β > 1")
    axes[1].plot([], [], ":", color="grey", lw=0.8, label="predicted collapse of one latent, β = 1 + 2λd_k")
    if any(not r["converged"] for r in sweep):
        axes[1].plot([], [], "o", mfc="none", color="grey", label="fixed point not converged")
    axes[0].set_ylabel("I_m, nats (higher is better)")
    axes[1].set_ylabel("KL = I(X; Y) at the optimum, nats")
    axes[1].set_xlabel("β (log scale)")
    axes[1].set_xscale("log")
    axes[0].legend(fontsize=8, loc="upper right")
    axes[1].legend(fontsize=8, loc="upper right")
    axes[0].set_ylim(bottom=0)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title(f"fixed point of the linear λβ-VAE, n = {n}, m = {m}, s = {s}, one initial point:\n"
                      "at λ = 0 all information is gone for every β > 1; λ > 0 keeps it up to β = 1 + 2λd_k",
                      fontsize=9)
    fig.tight_layout()
    path = root / f"collapse_vs_beta_n{n}_m{m}_s{s}.png"
    _save(fig, path)
    return path


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


