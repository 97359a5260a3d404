"""The λ stage's analysis, drawn from the rows of results.csv: percent change against
(β = 1, λ = 0), the NLL-MIG trade-off front, two scalarisations for picking a (β, λ),
training curves and one report page per stage.

Everything here works on the list-of-dict rows ``utils.read_csv`` gives back, so it
draws any finished or partial grid, the demo, and the original's imported results
alike. The numbers are pure functions (tested against hand-computed values); the
drawing functions only lay them out. Every file is written atomically.

"Best" always means: NLL lower (it is the train-window BCE, the paper's "NLL"), MIG,
SAP and I_m higher. Percent-change maps are red where a change is bad for that metric.
"""
from __future__ import annotations

import html
import math
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import visualizations as vis
from lbvae.analysis.tradeoff import (  # noqa: F401  (re-exported: the numbers of the trade-off figures)
    SCALARISATIONS,
    TCHEBYCHEFF_RHO,
    best_cells,
    pareto_mask,
    tchebycheff,
    utopia_distances,
    weighted_sum,
)
from utils import fmt_number, mean_std, read_csv, write_text

plt = vis.plt                       # matplotlib with the Agg backend, as visualizations set it up
NLL, MIG = "train_window_nll", "mig"
HIGHER_IS_BETTER = vis.HIGHER_IS_BETTER
SHORT = {"train_window_nll": "NLL", "sap": "SAP", "mig": "MIG", "i_m": "I_m"}
STATIC_WEIGHTS = (0.1, 0.5, 0.9)    # reconstruction weights of the static trade-off figure
SLIDER_WEIGHTS = tuple(range(101))  # w in percent, one slider step each
REPORT_METRICS = ("train_window_nll", "train_window_kl", "heldout_recon", "heldout_neg_elbo", "mig", "sap", "i_m")


# --- panels: one per dataset, and per origin where imported rows sit beside local ones ---
def panel_key(row: dict) -> str:
    origin = row.get("origin")
    return row["dataset"] if origin in (None, "", "local") else f"{row['dataset']}_{origin}"


def panel_title(key: str) -> str:
    dataset, _, origin = key.partition("_")
    title = vis.DATASET_TITLES.get(dataset, dataset)
    return f"{title} ({origin})" if origin else title


def keyed_rows(rows: list[dict]) -> list[dict]:
    """Finished rows with ``dataset`` replaced by the panel key, so that seed means never
    mix the original's runs with local ones of the same dataset. Idempotent: the keyed
    rows carry no origin any more."""
    return [{**r, "dataset": panel_key(r), "origin": None} for r in rows if r.get("status") == "done"]


def _panels(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["dataset"] for r in rows))


# --- percent change -----------------------------------------------------------------------
def percent_change_grid(rows: list[dict], dataset: str, key: str):
    """(lambdas, betas, grid[λ, β] of 100·(mean(β, λ) − mean(1, 0)) / |mean(1, 0)|, baseline).

    Means are over seeds; the baseline is the λ-stage (β = 1, λ = 0) cell, as in the
    paper's headline numbers (another objective: its reference weight, config.OBJECTIVES).
    The whole grid is NaN when the baseline is missing or 0."""
    lambdas, betas, grid = vis.seed_mean_grid(rows, dataset, key)
    ref = vis.objective_of(rows).baseline
    base = grid[lambdas.index(0.0), betas.index(ref)] if ref in betas and 0.0 in lambdas else math.nan
    if not math.isfinite(base) or base == 0:
        return lambdas, betas, np.full_like(grid, np.nan), base
    return lambdas, betas, 100 * (grid - base) / abs(base), base


def reference_cell(objective) -> str:
    """The baseline cell as tables and figures name it: (β=1, λ=0), (C_max=100, λ=0), ..."""
    return f"({objective.symbol}={fmt_number(objective.baseline)}, λ=0)"


def no_baseline(objective) -> str:
    flag = "--beta" if objective.title == "β-VAE" else "--sweep"
    return (f"no finished {reference_cell(objective)} run: train it ({flag} {fmt_number(objective.baseline)} "
            f"--lambda 0) to get percent changes")


def baseline_column(objective) -> str:
    """percent_change.csv's baseline column: baseline_beta1_lambda0, baseline_c_max100_lambda0, ..."""
    return f"baseline_{objective.weight}{fmt_number(objective.baseline)}_lambda0"


def percent_change_rows(rows: list[dict]) -> list[dict]:
    """The rows of percent_change.csv: per panel, metric and (β, λ) cell, its seed mean, the
    baseline and the percent change. A cell without a number says why in its ``note``."""
    rows, objective = keyed_rows(rows), vis.objective_of(rows)
    out = []
    for ds in _panels(rows):
        for key, _ in vis.STUDY_METRICS:
            lambdas, betas, grid = vis.seed_mean_grid(rows, ds, key)
            if objective.baseline not in betas or 0.0 not in lambdas:
                # Said, not skipped in silence: the table is empty for a reason.
                out.append({"dataset": ds, "metric": key, "percent_change": math.nan,
                            "note": no_baseline(objective)})
                continue
            _, _, change, base = percent_change_grid(rows, ds, key)
            stats = vis.seed_stats(rows, ds, key)
            verdicts, (_, _, _, std, count) = change_verdicts(*stats, ref=objective.baseline), stats
            note = "" if base and math.isfinite(base) else f"baseline is {base:g}: no percent change"
            for i, lam in enumerate(lambdas):
                for j, beta in enumerate(betas):
                    empty = "" if math.isfinite(change[i, j]) else "no finished run in this cell"
                    out.append({"dataset": ds, "metric": key, "beta": beta, "lambda": lam,
                                "seed_mean": grid[i, j], "seed_std": std[i, j], "n": int(np.nan_to_num(count[i, j])),
                                baseline_column(objective): base, "percent_change": change[i, j],
                                "verdict": verdicts[i, j], "note": note or empty})
    return out


VERDICTS = {"baseline": "", "one seed": "*", "within noise": "~", "beyond noise": "", "": ""}


def change_verdicts(lambdas, betas, mean, std, count, ref: float = 1.0) -> np.ndarray:
    """Per (λ, β) cell of ``vis.seed_stats``, what its change against (β = 1, λ = 0) can say
    with these seeds: "baseline"; "one seed" (the cell or the baseline has n = 1: no spread,
    undecided); "within noise" (within one seed std); "beyond noise"; "" without a finished
    run, or without a baseline. The table and the heatmap colour by the same verdicts.
    ``ref``: the baseline's swept weight (another objective's, config.OBJECTIVES)."""
    out = np.full(mean.shape, "", dtype=object)
    if ref not in betas or 0.0 not in lambdas:
        return out
    base = (lambdas.index(0.0), betas.index(ref))
    single, grey = vis.no_spread(count, base), vis.within_noise(mean, std, base)
    for ij in np.ndindex(mean.shape):
        if np.isfinite(mean[ij]):
            out[ij] = ("baseline" if ij == base else "one seed" if single[ij] else
                       "within noise" if grey[ij] else "beyond noise")
    return out


def percent_change_text(change_rows: list[dict], objective: str = "beta") -> str:
    """The percent-change table as the paper reads it: per dataset and metric, β (the swept
    weight) rows × λ columns."""
    o = vis.OBJECTIVES[objective]
    lines = [f"Percent change of the seed mean against the {reference_cell(o)} cell; n/a where the baseline is 0",
             "or a cell has no finished run (percent_change.csv says which in its note column).",
             "~ within one seed std of the baseline (not distinguishable with these seeds);",
             "* one seed in the cell or the baseline: no spread, so the change is undecided.", ""]
    blocks = defaultdict(list)
    for r in change_rows:
        blocks[(r["dataset"], r["metric"])].append(r)
    for (ds, metric), rows in blocks.items():
        if rows[0].get("note") == no_baseline(o):
            lines += [f"{ds} {metric}: {no_baseline(o)}", ""]
            continue
        lambdas = sorted({r["lambda"] for r in rows})
        lines.append(f"{ds} {metric} (baseline {rows[0][baseline_column(o)]:.4g})")
        corner = o.symbol + " \\ λ"
        lines.append(f"{corner:>8s} " + "".join(f"{fmt_number(v):>9s} " for v in lambdas))
        for beta in sorted({r["beta"] for r in rows}):
            cells = {r["lambda"]: r for r in rows if r["beta"] == beta}
            lines.append(f"{fmt_number(beta):>8s} " + "".join(
                f"{cells[v]['percent_change']:+8.1f}%{VERDICTS[cells[v].get('verdict', '')]:1s}"
                if math.isfinite(cells.get(v, {}).get("percent_change", math.nan)) else f"{'n/a':>10s}"
                for v in lambdas))
        lines.append("")
    return "\n".join(lines)


# --- the NLL-MIG trade-off ----------------------------------------------------------------
def tradeoff_grid(rows: list[dict], dataset: str) -> dict:
    """Seed means and sample standard deviations (ddof=1; NaN for one seed) of the
    train-window NLL and of MIG on the (λ, β) grid of one panel, and the seeds per cell."""
    lambdas, betas, nll, nll_std, n = vis.seed_stats(rows, dataset, NLL)
    _, _, mig, mig_std, _ = vis.seed_stats(rows, dataset, MIG)
    return {"lambdas": lambdas, "betas": betas, "nll": nll, "mig": mig, "nll_std": nll_std, "mig_std": mig_std,
            "n": n}


# --- static figures -----------------------------------------------------------------------
def _save(fig, path: Path) -> Path:
    vis._save_figure(fig, path)
    return path


def _annotate(ax, grid: np.ndarray, fmt: str, light_if, black=None, mark=None) -> None:
    """Each cell's number; white on dark cells, black on light ones and on the ``black``
    cells (greyed out or hatched); ``mark`` adds a second line per cell ("n=1")."""
    for (r, c), v in np.ndenumerate(grid):
        text = "NaN" if not np.isfinite(v) else format(v, fmt)
        if mark is not None and mark[r, c]:
            text += f"\n{mark[r, c]}"
        dark = np.isfinite(v) and light_if(v) and not (black is not None and black[r, c])
        ax.text(c, r, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")


def _box(ax, cells, color="black") -> None:
    for r, c in cells:
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=2.5))


def _grid_axes(ax, lambdas, betas, xlabel: bool, ylabel: str, symbol: str = "β") -> None:
    ax.set_xticks(range(len(betas)), [fmt_number(b) for b in betas])
    ax.set_yticks(range(len(lambdas)), [fmt_number(v) for v in lambdas])
    if xlabel:
        ax.set_xlabel(symbol)
    ax.set_ylabel(ylabel)


def _no_data(path: Path, what: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{what}: no finished runs yet", ha="center", va="center")
    return _save(fig, path)


def percent_change_heatmaps(rows: list[dict], path) -> Path:
    """Figure 1: rows NLL, SAP, MIG, I_m; columns the panels; cells the percent change of the
    seed mean against (β = 1, λ = 0), on a diverging map centred on 0 with a symmetric range,
    red where the change is bad for that metric; λ = 0 on top; the baseline cell boxed."""
    objective, ref = vis.objective_of(rows), vis.objective_of(rows).baseline
    rows, path = keyed_rows(rows), Path(path)
    panels = _panels(rows)
    if not panels:
        return _no_data(path, "percent change")
    fig, axes = plt.subplots(len(vis.STUDY_METRICS), len(panels), squeeze=False,
                             figsize=(4.2 * len(panels), 2.9 * len(vis.STUDY_METRICS)), layout="constrained")
    for col, ds in enumerate(panels):
        for row_i, (key, label) in enumerate(vis.STUDY_METRICS):
            ax = axes[row_i, col]
            lambdas, betas, change, base = percent_change_grid(rows, ds, key)
            # RdBu runs red (low) to blue (high): reversed for NLL, where a rise is the bad change.
            cmap = plt.get_cmap("RdBu" if HIGHER_IS_BETTER[key] else "RdBu_r").with_extremes(bad="0.85")
            # Only a change larger than one seed std gets a colour. Cells within it are grey (not
            # distinguishable from the baseline with these seeds); cells where the cell or the
            # baseline has one seed are hatched (no spread: undecided). Neither sets the scale.
            verdicts = change_verdicts(*vis.seed_stats(rows, ds, key), ref=ref)
            single = verdicts == "one seed"
            coloured = np.isfinite(change) & np.isin(verdicts, ("baseline", "beyond noise"))
            limits = vis.colour_limits(np.abs(change), coloured)
            half = limits[1] if limits and limits[1] > 0 else 1.0
            im = ax.imshow(np.ma.masked_array(change, mask=~coloured), cmap=cmap, vmin=-half, vmax=half, aspect="auto")
            vis.hatch_cells(ax, single)
            _annotate(ax, change, ".2f", lambda v, h=half: abs(v) > 0.6 * h, black=~coloured,
                      mark=np.where(single, "n=1", ""))
            if ref in betas and 0.0 in lambdas:
                _box(ax, [(lambdas.index(0.0), betas.index(ref))])
            _grid_axes(ax, lambdas, betas, row_i == len(vis.STUDY_METRICS) - 1, f"{label}\nλ" if col == 0 else "λ",
                       objective.symbol)
            worse = "rise" if not HIGHER_IS_BETTER[key] else "fall"
            decided = bool((coloured & (change != 0)).any())
            fig.colorbar(im, ax=ax, fraction=0.046,
                         label=f"% change of {SHORT[key]}\n(red: {worse}, worse)" if decided
                         else f"{SHORT[key]}: no change decided\n(nothing coloured)")
            why = "" if math.isfinite(base) and base != 0 else (
                f"\nbaseline {reference_cell(objective)} missing" if not math.isfinite(base) else "\nbaseline is 0")
            ax.set_title((panel_title(ds) if row_i == 0 else "") + why, fontsize=9)
    fig.suptitle(f"{vis.lambda_title(objective)}: % change of the seed mean against {reference_cell(objective)} "
                 f"(boxed); rows λ, λ = 0 on top; columns {objective.symbol};\n"
                 "red = worse for that metric; grey = within one seed std of the baseline (not distinguishable);\n"
                 "hatched (n=1) = the cell or the baseline has one seed: no spread, so no colour (undecided)",
                 fontsize=9)
    return _save(fig, path)


def pareto_fronts(rows: list[dict], path) -> Path:
    """Figure 2: per panel, every (β, λ) seed mean of (train-window NLL, MIG) with ±1 sd
    over seeds as error bars, the non-dominated set as a line, the (β = 1, λ = 0)
    baseline marked, and a table of the Pareto-optimal (β, λ). Another objective: its weight."""
    objective = vis.objective_of(rows)
    sym, ref = objective.symbol, objective.baseline
    rows, path = keyed_rows(rows), Path(path)
    panels = _panels(rows)
    if not panels:
        return _no_data(path, "Pareto fronts")
    fig, axes = plt.subplots(len(panels), 2, squeeze=False, figsize=(10, 3.6 * len(panels)),
                             width_ratios=[3, 2], layout="constrained")
    for row_i, ds in enumerate(panels):
        ax, ax_table = axes[row_i]
        g = tradeoff_grid(rows, ds)
        valid = np.isfinite(g["nll"]) & np.isfinite(g["mig"])
        # One seed has no spread: draw no bar rather than a NaN one.
        xerr, yerr = np.nan_to_num(g["nll_std"][valid]), np.nan_to_num(g["mig_std"][valid])
        single = vis.no_spread(g["n"])[valid]
        ax.errorbar(g["nll"][valid], g["mig"][valid], xerr=xerr, yerr=yerr, fmt="none", ecolor="0.75", capsize=2)
        ax.scatter(g["nll"][valid][~single], g["mig"][valid][~single], s=16, color="0.55",
                   label=f"({sym}, λ) seed mean ± 1 sd")
        if single.any():
            ax.scatter(g["nll"][valid][single], g["mig"][valid][single], s=16, facecolor="none", edgecolor="0.4",
                       label=f"({sym}, λ) one seed: no spread")
        front = [tuple(ij) for ij in np.argwhere(pareto_mask(g["nll"], g["mig"]).reshape(g["nll"].shape))]
        front.sort(key=lambda ij: (g["nll"][ij], -g["mig"][ij]))
        if front:
            fx, fy = [g["nll"][ij] for ij in front], [g["mig"][ij] for ij in front]
            ax.plot(fx, fy, "-o", color="#b2182b", markersize=5, linewidth=1.2, label="Pareto front")
            for (i, j), x, y in zip(front, fx, fy):
                ax.annotate(f"{sym}={fmt_number(g['betas'][j])}, λ={fmt_number(g['lambdas'][i])}", (x, y),
                            textcoords="offset points", xytext=(4, 4), fontsize=7, color="#b2182b")
        if ref in g["betas"] and 0.0 in g["lambdas"]:
            ij = (g["lambdas"].index(0.0), g["betas"].index(ref))
            if valid[ij]:
                ax.scatter([g["nll"][ij]], [g["mig"][ij]], marker="D", s=70, facecolor="none",
                           edgecolor="#2166ac", linewidth=1.8, zorder=5, label=reference_cell(objective))
        n = g["n"][valid]
        seeds = f"{int(n.min())}" if n.size and n.min() == n.max() else (
            f"{int(n.min())}–{int(n.max())}" if n.size else "0")
        ax.set_title(f"{panel_title(ds)}: {seeds} seed(s) per point" + (" (no spread)" if seeds == "1" else ""),
                     fontsize=10)
        ax.margins(0.12)                # room for the labels of the front's end points
        ax.set_xlabel("train-window NLL (BCE, nats/image; lower is better)")
        ax.set_ylabel("MIG (higher is better)")
        ax.grid(alpha=0.3, linestyle="--", linewidth=0.5)
        ax.legend(fontsize=7, loc="best")
        ax_table.axis("off")
        if front:
            cells = [[fmt_number(g["betas"][j]), fmt_number(g["lambdas"][i]),
                      _pm(g["nll"][i, j], g["nll_std"][i, j], 2), _pm(g["mig"][i, j], g["mig_std"][i, j], 3)]
                     for i, j in front]
            table = ax_table.table(cellText=cells, colLabels=[sym, "λ", "NLL", "MIG"], loc="upper center",
                                   cellLoc="center")
            table.auto_set_font_size(False)
            table.set_fontsize(7)
            ax_table.set_title(f"Pareto-optimal ({sym}, λ): mean ± sd over seeds", fontsize=9)
    fig.suptitle(f"{vis.lambda_title(objective)} trade-off: train-window NLL (x, lower is better) vs MIG "
                 f"(y, higher is better)")
    return _save(fig, path)


def _pm(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


def tchebycheff_heatmaps(rows: list[dict], path, weights=STATIC_WEIGHTS) -> Path:
    """Figure 3 (static): rows the reconstruction weights w, columns the panels; cells the
    augmented Tchebycheff score of each (β, λ); the best cell(s) boxed; λ = 0 on top."""
    objective = vis.objective_of(rows)
    rows, path = keyed_rows(rows), Path(path)
    panels = _panels(rows)
    if not panels:
        return _no_data(path, "Tchebycheff scores")
    fig, axes = plt.subplots(len(weights), len(panels), squeeze=False,
                             figsize=(4.2 * len(panels), 3.0 * len(weights)), layout="constrained")
    cmap = plt.get_cmap("viridis_r").with_extremes(bad="0.85")
    for col, ds in enumerate(panels):
        g = tradeoff_grid(rows, ds)
        for row_i, w in enumerate(weights):
            ax = axes[row_i, col]
            score = tchebycheff(g["nll"], g["mig"], w)
            # max(w, 1 − w)·1 + ρ bounds the score, so one fixed range compares every w.
            top = max(w, 1 - w) * (1 + TCHEBYCHEFF_RHO)
            im = ax.imshow(np.ma.masked_invalid(score), cmap=cmap, vmin=0, vmax=top, aspect="auto")
            single = vis.no_spread(g["n"])
            vis.hatch_cells(ax, single)
            _annotate(ax, score, ".3f", lambda v, t=top: v < 0.45 * t, mark=np.where(single, "n=1", ""))
            _box(ax, best_cells(score, maximise=False), color="red")
            _grid_axes(ax, g["lambdas"], g["betas"], row_i == len(weights) - 1,
                       f"w = {100 * w:.0f} %\nλ" if col == 0 else "λ", objective.symbol)
            fig.colorbar(im, ax=ax, fraction=0.046, label="augmented Tchebycheff\n(lower is better)")
            if row_i == 0:
                ax.set_title(panel_title(ds))
    sym = objective.symbol
    fig.suptitle(f"{vis.lambda_title(objective)}: best ({sym}, λ) for a reconstruction weight w (red box): "
                 f"augmented Tchebycheff score of (NLL, MIG) normalised per dataset; rows w, λ = 0 on top; "
                 f"columns {sym}\n"
                 "hatched (n=1): the cell's score rests on one seed; its spread, and so its rank, is unknown",
                 fontsize=10)
    return _save(fig, path)


# --- interactive trade-off ----------------------------------------------------------------
def _json_grid(grid: np.ndarray) -> list[list]:
    # Plain lists with null for NaN: Plotly would otherwise store arrays as base64 blobs.
    return [[float(v) if np.isfinite(v) else None for v in row] for row in np.asarray(grid, float)]


def _cell_text(grid: np.ndarray, count: np.ndarray | None = None) -> list[list[str]]:
    """Each score; "(n=1)" under a score that rests on one seed (no spread)."""
    single = vis.no_spread(count) if count is not None else np.zeros(np.shape(grid), bool)
    return [[(f"{v:.3f}" if np.isfinite(v) else "NaN") + ("<br>(n=1)" if one else "") for v, one in zip(row, ones)]
            for row, ones in zip(grid, single)]


def _box_path(cells) -> tuple[list, list]:
    """x, y of closed squares around cells, separated by None (one scatter trace)."""
    xs, ys = [], []
    for r, c in cells:
        xs += [c - 0.5, c + 0.5, c + 0.5, c - 0.5, c - 0.5, None]
        ys += [r - 0.5, r - 0.5, r + 0.5, r + 0.5, r - 0.5, None]
    return xs, ys


def _names(cells, betas, lambdas, sym: str = "β") -> str:
    return " and ".join(f"{sym}={fmt_number(betas[c])}, λ={fmt_number(lambdas[r])}" for r, c in cells) or "none"


def tradeoff_states(rows: list[dict], dataset: str, weights=SLIDER_WEIGHTS) -> dict:
    """Per slider weight (percent) and scalarisation: the score grid and its best cells."""
    g = tradeoff_grid(keyed_rows(rows), dataset)
    states = {}
    for w_pct in weights:
        for name, (score_fn, maximise, _) in SCALARISATIONS.items():
            score = score_fn(g["nll"], g["mig"], w_pct / 100)
            states[(w_pct, name)] = {"score": score, "best": best_cells(score, maximise)}
    return {"grid": g, "states": states}


def tradeoff_figure(rows: list[dict], dataset: str, weights=SLIDER_WEIGHTS, initial: int = 50):
    """Figure 3 (interactive): the score heatmap of one panel with a slider for w and
    buttons to switch scalarisation; the best (β, λ) boxed and named in the legend and title.
    Every slider step carries both scalarisations' grids, so the page needs no computation."""
    import plotly.graph_objects as go
    sym = vis.objective_of(rows).symbol
    data = tradeoff_states(keyed_rows(rows), dataset, weights)
    g, states = data["grid"], data["states"]
    betas, lambdas = g["betas"], g["lambdas"]
    xs, ys = list(range(len(betas))), list(range(len(lambdas)))

    def traces_at(w_pct):
        out = []
        for name, (_, _, label) in SCALARISATIONS.items():
            s = states[(w_pct, name)]
            bx, by = _box_path(s["best"])
            out.append({"z": _json_grid(s["score"]), "text": _cell_text(s["score"], g["n"]), "x": xs, "y": ys,
                        "name": label})
            out.append({"z": None, "text": None, "x": bx, "y": by,
                        "name": f"best by {name}: {_names(s['best'], betas, lambdas, sym)}"})
        return out

    def title_at(w_pct):
        best = "<br>".join(f"best by {name}: {_names(states[(w_pct, name)]['best'], betas, lambdas, sym)}"
                           for name in SCALARISATIONS)
        return f"{panel_title(dataset)}: reconstruction weight w = {w_pct} %<br>{best}"

    fig, start = go.Figure(), traces_at(initial)
    for k, (name, (_, maximise, label)) in enumerate(SCALARISATIONS.items()):
        heat, box = start[2 * k], start[2 * k + 1]
        fig.add_trace(go.Heatmap(
            z=heat["z"], text=heat["text"], x=xs, y=ys, texttemplate="%{text}", name=label,
            colorscale="Viridis", reversescale=not maximise, zmin=0, zmax=1 + (0 if maximise else TCHEBYCHEFF_RHO),
            colorbar={"title": {"text": f"{name}<br>({'higher' if maximise else 'lower'} is better)"}},
            visible=k == 0, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=box["x"], y=box["y"], mode="lines", line={"color": "red", "width": 3},
                                 name=box["name"], visible=k == 0, hoverinfo="skip"))
    steps = []
    for w_pct in weights:
        t = traces_at(w_pct)
        steps.append({"method": "update", "label": str(w_pct),
                      "args": [{key: [tr[key] for tr in t] for key in ("z", "text", "x", "y", "name")},
                               {"title.text": title_at(w_pct)}, list(range(len(t)))]})
    n_traces = 2 * len(SCALARISATIONS)
    buttons = [{"method": "restyle", "label": name,
                "args": [{"visible": [t // 2 == k for t in range(n_traces)]}]}
               for k, name in enumerate(SCALARISATIONS)]
    fig.update_layout(
        # The title at the very top, the scalarisation buttons just above the plot: apart.
        title={"text": title_at(initial), "font": {"size": 13}, "x": 0.02, "xanchor": "left", "y": 0.98,
               "yanchor": "top"},
        xaxis={"tickmode": "array", "tickvals": xs, "ticktext": [fmt_number(b) for b in betas], "title": sym},
        yaxis={"tickmode": "array", "tickvals": ys, "ticktext": [fmt_number(v) for v in lambdas],
               "title": "λ (λ = 0 on top)", "autorange": "reversed"},
        sliders=[{"active": weights.index(initial), "steps": steps, "pad": {"t": 40},
                  "currentvalue": {"prefix": "reconstruction weight w (%): "}}],
        updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons, "x": 0, "y": 1.0,
                      "xanchor": "left", "yanchor": "bottom", "pad": {"b": 12}}],
        legend={"orientation": "h", "y": -0.45}, height=640, width=720, margin={"t": 170})
    return fig


PLOTLY_JS = "plotly.min.js"


def write_plotly_bundle(folder) -> Path:
    """plotly.js, once per folder, for every page in it: pages open offline and stay small
    (the bundle is about 4.9 MB; embedded, each trade-off page and the report carried a copy)."""
    from plotly.offline import get_plotlyjs
    path, bundle = Path(folder) / PLOTLY_JS, get_plotlyjs()
    if not path.exists() or path.stat().st_size != len(bundle.encode()) or path.read_text() != bundle:
        write_text(path, bundle)
    return path


def write_tradeoff_html(fig, path) -> Path:
    """A page that opens offline: it loads plotly.js from the file beside it (written here),
    nothing from the network."""
    write_plotly_bundle(Path(path).parent)
    write_text(path, fig.to_html(include_plotlyjs=PLOTLY_JS, include_mathjax=False, full_html=True))
    return Path(path)


# --- training curves ----------------------------------------------------------------------
LINE_STYLES = ("-", "--", ":", "-.")


def run_dirs_of(specs) -> dict[tuple, Path]:
    """(dataset, β, λ, seed) -> run directory, from the stage's RunSpecs."""
    return {(s.dataset, float(s.beta), float(s.lam), int(s.seed)): Path(s.run_dir) for s in specs}


def _run_dir(run_dirs: dict, row: dict) -> Path | None:
    return run_dirs.get((row["dataset"], float(row["beta"]), float(row["lambda"]), int(row["seed"])))


def training_curves(rows: list[dict], run_dirs: dict, path) -> Path:
    """Figure 4: training BCE (the 'NLL') and KL against step for every run, one column per
    panel, colour by β, line style by λ, from each run's train_log.csv (interval means)."""
    path, sym = Path(path), vis.objective_of(rows).symbol
    done = [r for r in rows if r.get("status") == "done"]
    panels = _panels(keyed_rows(done))
    if not panels:
        return _no_data(path, "training curves")
    betas = sorted({float(r["beta"]) for r in done})
    lambdas = sorted({float(r["lambda"]) for r in done})
    colors = dict(zip(betas, plt.get_cmap("viridis")(np.linspace(0, 0.9, len(betas)))))
    styles = {lam: LINE_STYLES[k % len(LINE_STYLES)] for k, lam in enumerate(lambdas)}
    fig, axes = plt.subplots(2, len(panels), squeeze=False, figsize=(4.2 * len(panels), 6.2), layout="constrained")
    for col, ds in enumerate(panels):
        missing = 0
        for r in done:
            log_path = _run_dir(run_dirs, r)
            log_path = log_path / "train_log.csv" if log_path else None
            if panel_key(r) != ds or log_path is None or not log_path.exists():
                missing += panel_key(r) == ds
                continue
            log = read_csv(log_path)
            steps = [e["step"] for e in log]
            for ax, key in zip(axes[:, col], ("train_recon", "train_kl")):
                ax.plot(steps, [e.get(key) for e in log], color=colors[float(r["beta"])],
                        linestyle=styles[float(r["lambda"])], linewidth=1, alpha=0.85, marker=".", markersize=3)
        axes[0, col].set_title(panel_title(ds) + (f"\n{missing} run(s) without train_log.csv" if missing else ""),
                               fontsize=10)
        axes[0, col].set_ylabel("training BCE ('NLL', nats/image)")
        axes[1, col].set_ylabel("training KL (nats)")
        axes[1, col].set_xlabel("step")
    handles = [plt.Line2D([], [], color=colors[b], label=f"{sym} = {fmt_number(b)}") for b in betas]
    if len(lambdas) > 1 or lambdas != [0.0]:
        handles += [plt.Line2D([], [], color="0.3", linestyle=styles[v], label=f"λ = {fmt_number(v)}")
                    for v in lambdas]
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    fig.suptitle("Training curves: mean loss per log interval, one line per run")
    return _save(fig, path)


# --- the report page ------------------------------------------------------------------------
FIGURE_ORDER = ("metric_boxplots_across_datasets.png", "metric_heatmaps_across_datasets.png",
                "percent_change_heatmaps_across_datasets.png", "pareto_fronts_across_datasets.png",
                "tchebycheff_heatmaps_across_datasets.png", "training_curves.png")


def summary_table(rows: list[dict]) -> list[dict]:
    """Per panel, β (the swept weight) and λ: seeds finished and mean ± sd (ddof=1) of the report's numbers."""
    sym = vis.objective_of(rows).symbol
    groups = defaultdict(list)
    for r in keyed_rows(rows):
        groups[(r["dataset"], r["beta"], r["lambda"])].append(r)
    return [{"dataset": panel_title(ds), sym: fmt_number(b), "λ": fmt_number(lam), "n": len(group),
             **{m: mean_std([r.get(m) for r in group]) for m in REPORT_METRICS}}
            for (ds, b, lam), group in sorted(groups.items())]


def _html_table(rows: list[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _run_links(rows: list[dict], root: Path, run_dirs: dict) -> list[dict]:
    out, sym = [], vis.objective_of(rows).symbol
    for r in rows:
        run_dir = _run_dir(run_dirs, r)
        if r.get("status") != "done" or run_dir is None:
            continue
        links = [f'<a href="{html.escape(os.path.relpath(run_dir / name, root))}">{name}</a>'
                 for name in ("traversal.gif", "reconstructions.png", "originals.png", "mi_heatmap.png")
                 if (run_dir / name).exists()]
        out.append({"run": html.escape(f"{panel_title(panel_key(r))} {sym}={fmt_number(r['beta'])} "
                                       f"λ={fmt_number(r['lambda'])} seed={r['seed']}"),
                    "files": " · ".join(links) or "(none: imported runs carry no figures)"})
    return out


def report_html(rows: list[dict], root, run_dirs: dict, stage_title: str, interactive=()) -> Path:
    """Figure 5: one page per stage, at its root: the seed-mean tables, every figure at the
    stage root, the interactive trade-off figures and links to each run's traversal GIF and
    reconstructions. Every image, link and script is a relative path into the stage's tree
    (plotly.js from the one bundle beside the pages): the tree opens offline, moved or copied
    whole, and the page stays small."""
    root = Path(root)
    parts = [f"<h1>{html.escape(stage_title)}</h1>",
             f"<p>{sum(r.get('status') == 'done' for r in rows)} finished run(s) read from results.csv. "
             "NLL is the train-window BCE (not held out); mean ± sd over seeds (ddof=1).</p>",
             "<h2>Seed means ± sd</h2>", _html_table(summary_table(rows))]
    failed = [r for r in rows if r.get("status") not in (None, "done")]
    if failed:
        parts += ["<h2>Failed runs</h2>", _html_table([
            {"run": html.escape(f"{r['dataset']} {vis.objective_of(rows).symbol}={fmt_number(r['beta'])} "
                                f"λ={fmt_number(r['lambda'])} "
                                f"seed={r['seed']}"), "reason": html.escape(str(r.get("reason")))} for r in failed])]
    pngs = sorted(root.glob("*.png"), key=lambda p: (FIGURE_ORDER.index(p.name) if p.name in FIGURE_ORDER
                                                      else len(FIGURE_ORDER), p.name))
    parts.append("<h2>Figures</h2>")
    for png in pngs:
        name = html.escape(png.name)
        parts.append(f'<figure><img src="{name}" alt="{name}"><figcaption>{name}</figcaption></figure>')
    script = ""
    if interactive:
        write_plotly_bundle(root)
        script = f'<script src="{PLOTLY_JS}" charset="utf-8"></script>'
        parts.append("<h2>Trade-off selection (interactive)</h2>")
        for name, fig in interactive:
            parts.append(f'<p><a href="{html.escape(name)}">{html.escape(name)}</a> (the same, alone)</p>')
            parts.append(fig.to_html(include_plotlyjs=False, include_mathjax=False, full_html=False))
    parts += ["<h2>Runs</h2>", _html_table(_run_links(rows, root, run_dirs))]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}")
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(stage_title)}</title>'
            f"<style>{style}</style>{script}</head><body>{''.join(parts)}</body></html>")
    path = root / "report.html"
    write_text(path, page)
    return path


# --- one call per stage -----------------------------------------------------------------------
def draw(rows: list[dict], root, stage: str, specs, figures: bool = True) -> list[Path]:
    """Every analysis figure of a stage from its results rows, and report.html; the
    percent-change, trade-off and Pareto figures only for the λ stage. Returns the paths."""
    root, tic = Path(root), time.perf_counter()
    run_dirs, written, interactive = run_dirs_of(specs), [], []
    if figures and any(r.get("status") == "done" for r in rows):
        if stage == "lambda":
            written.append(percent_change_heatmaps(rows, root / "percent_change_heatmaps_across_datasets.png"))
            written.append(pareto_fronts(rows, root / "pareto_fronts_across_datasets.png"))
            written.append(tchebycheff_heatmaps(rows, root / "tchebycheff_heatmaps_across_datasets.png"))
            for ds in _panels(keyed_rows(rows)):
                fig = tradeoff_figure(rows, ds)
                written.append(write_tradeoff_html(fig, root / f"tradeoff_{ds}.html"))
                interactive.append((written[-1].name, fig))
        written.append(training_curves(rows, run_dirs, root / "training_curves.png"))
    objective = vis.objective_of(rows)
    if objective.title == "β-VAE":
        title = {"beta": "β-VAE baselines (betavae_results)", "lambda": "λβ-VAE (lambda_betavae_results)"}.get(stage,
                                                                                                           stage)
    else:
        name = f"{objective.root}_results"
        title = (f"{objective.title} ({name})" if stage == "beta"
                 else f"{vis.lambda_title(objective)} (lambda_{name})")
    written.append(report_html(rows, root, run_dirs, title, interactive))
    print(f"analysis: {len(written)} files in {time.perf_counter() - tic:.1f} s ({root})")
    return written
