"""How much of the linear study's I_m its loss decides.

    python scripts/linear_rotations.py                    # n = 100, β 4 8 16 32, λ 2 8, 400 rotations
    python scripts/linear_rotations.py --n 50 --results-dir linear_betavae_results
    python scripts/linear_rotations.py --results-dir linear_betavae_results --inherited   # reads only
    python scripts/linear_rotations.py --results-dir linear_betavae_results --figure rotations_n100.png

The prior N(0, I) is isotropic, so rotating a solution's latent space (A Qᵀ, Q B, Q Σ_W Qᵀ)
leaves every loss unchanged while SAP and I_m move (docs/linear.md, 'Rotations'). For each
(β, λ) cell this solves the fixed point from the study's 50 initial points (the same draws
and settings as main_linear.py), then applies random rotations, drawn uniformly (Haar) from
O(m) with a fixed seed, to each solution, and prints the fixed point's I_m beside the I_m of
its rotations: the smallest, quartiles, largest and mean over the rotations, averaged over
solutions. The mean is the I_m to expect from a solver whose whole solve commutes with
rotations, started from a rotation-invariant distribution: its end points are then rotated
alike in every direction. AdamW's A and B start from such a distribution (N(0, 1) entries),
but neither its per-entry step nor its lower-triangular factor L_W of Σ_W commutes with
rotations (scripts/linear_adamw_settings.py --second-moment matrix removes the first). The
smallest and largest of a finite sample bound the true extremes from inside.
With --results-dir, AdamW's mean I_m for the cell is printed beside them where that folder
(a main_linear.py results folder with the same settings) has the cell. --figure draws the same
per cell: the rotations' range, quartiles and mean, the fixed point's and AdamW's I_m.

--inherited solves nothing: it asks whether a solution's rotation comes from its initial point.
Every cell of a solver starts solution i from the same initial point, so if the initial point
decides the rotation, solution i's I_m ranks alike in every cell. It prints, per solver, the
Pearson correlation over solutions of the per-solution I_m between every pair of the finished
(β, λ) cells asked for (median and range over the pairs).
"""
from __future__ import annotations

import argparse
import sys
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import ortho_group  # noqa: E402

from lbvae.linear import solver as lv  # noqa: E402
from lbvae.linear.grid import DEFAULTS, PER_N, cell_name  # noqa: E402
from utils import read_csv  # noqa: E402

PERCENTILES = (0, 25, 50, 75, 100)


def adamw_means(results_dir: Path | None, n: int) -> dict:
    """AdamW's mean I_m and its standard error per (β, λ) from a results folder's summary.csv,
    where it has the cell."""
    path = results_dir / "summary.csv" if results_dir else None
    if path is None:
        return {}
    if not path.exists():
        sys.exit(f"linear_rotations.py: error: {path} does not exist; give a main_linear.py results folder")
    return {(r["beta"], r["lambda"]): (r["i_m_mean"], (r["i_m_std"] or 0.0) / np.sqrt(r["used"]))
            for r in read_csv(path) if r["n"] == n and r["solver"] == "adamw" and r["i_m_mean"] is not None}


def rotation_cell(draws, per_n: dict, beta: float, lam: float, rotations: int) -> dict:
    """The fixed point's solutions of one cell and the I_m of ``rotations`` Haar rotations of each:
    the fixed point's mean I_m and its standard error, the rotations' 0, 25, 50, 75 and 100th
    percentiles and their mean per solution, averaged over solutions, and the largest relative change of the
    total under a rotation (one per solution)."""
    problem, m = draws.problem, draws.fixed_point["B"].shape[1]
    sol = lv.solve_fixed_point(problem.sigma_y, beta, lam, draws.fixed_point["B"], draws.fixed_point["sigma_w"],
                               per_n["tol"], per_n["fp_iters"])
    own, quantiles, means, drift = [], [], [], 0.0
    for i in range(len(sol["B"])):
        if sol["failure"][i] or not sol["converged"][i]:
            continue
        A, B, sz, sw = (sol[key][i] for key in ("A", "B", "sigma_z", "sigma_w"))
        qs = ortho_group.rvs(m, size=rotations, random_state=i)
        rotated = lv.i_m_over_rotations(B, sw, problem, qs)
        quantiles.append(np.percentile(rotated, PERCENTILES))
        means.append(rotated.mean())
        own.append(lv.i_m(lv.factor_mi(B, sw, problem)[1]))
        total = float(lv.losses(A, B, sz, sw, problem.sigma_y, beta, lam)["total"])
        a, b, w = lv.rotate(A, B, sw, qs[0])       # the loss check, on one rotation each
        moved = float(lv.losses(a, b, sz, w, problem.sigma_y, beta, lam)["total"])
        drift = max(drift, abs(moved - total) / abs(total))
    return {"beta": beta, "lambda": lam, "solutions": len(own), "fixed_point": float(np.mean(own)),
            "fixed_point_se": float(np.std(own, ddof=1) / np.sqrt(len(own))) if len(own) > 1 else 0.0,
            "percentiles": np.mean(quantiles, axis=0), "mean": float(np.mean(means)), "drift": drift}


TABLE_HEADER = ("| β | λ | fixed point's I_m | rotations: smallest | 25th percentile | median | 75th percentile "
                "| largest | mean | AdamW's I_m | AdamW − mean (± AdamW's s.e.) | max relative change of the total |\n"
                + "|---" * 12 + "|")


def table_row(cell: dict, adamw: tuple[float, float] | None) -> str:
    """One cell's line of the table; ``adamw``: AdamW's mean I_m and its standard error, if run."""
    theirs = "– | –" if adamw is None else f"{adamw[0]:.3f} | {adamw[0] - cell['mean']:+.3f} ± {adamw[1]:.3f}"
    return (f"| {cell['beta']:g} | {cell['lambda']:g} | {cell['fixed_point']:.3f} | "
            + " | ".join(f"{q:.3f}" for q in cell["percentiles"])
            + f" | {cell['mean']:.3f} | {theirs} | {cell['drift']:.1e} |")


def draw_rotations(cells: list[dict], adamw: dict, n: int, rotations: int, path: Path) -> Path:
    """Per cell, the I_m the optimum can have (its rotations: 25-75th percentile as a bar, smallest
    to largest as a line, median as a tick; each averaged over solutions) beside the I_m each
    solver ended with (mean ± standard error over solutions)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from utils import atomic_write
    fig, ax = plt.subplots(figsize=(max(7.5, 0.9 * len(cells) + 2), 5.0), layout="constrained")
    for x, c in enumerate(cells):
        lo, q1, mid, q3, hi = c["percentiles"]
        ax.plot([x, x], [lo, hi], color="0.6", linewidth=1, zorder=1)
        ax.bar(x, q3 - q1, bottom=q1, width=0.5, color="0.85", edgecolor="0.5", linewidth=0.6, zorder=1)
        ax.plot([x - 0.25, x + 0.25], [mid, mid], color="0.3", linewidth=1.2, zorder=2)
        ax.plot([x - 0.25, x + 0.25], [c["mean"], c["mean"]], color="0.3", linewidth=1.0, linestyle=":", zorder=2)
        ax.errorbar(x - 0.12, c["fixed_point"], yerr=c["fixed_point_se"], fmt="o", ms=5, capsize=2,
                    color="tab:blue", zorder=3)
        if (c["beta"], c["lambda"]) in adamw:
            mean, se = adamw[c["beta"], c["lambda"]]
            ax.errorbar(x + 0.12, mean, yerr=se, fmt="D", ms=5, capsize=2, color="tab:orange", zorder=3)
        elif adamw:
            ax.text(x, 0.03, "AdamW:\nnot run", ha="center", va="bottom", fontsize=7, color="tab:orange")
    ax.set_xticks(range(len(cells)), [f"β = {c['beta']:g}\nλ = {c['lambda']:g}" for c in cells], fontsize=8)
    ax.set_ylabel("I_m (nats)")
    ax.set_ylim(bottom=0.0)
    ax.grid(axis="y", alpha=0.3, linewidth=0.5)
    handles = [Line2D([], [], color="0.6",
                      label=f"{rotations} rotations of each fixed-point solution: smallest to largest"),
               Patch(facecolor="0.85", edgecolor="0.5",
                     label="the rotations' 25th to 75th percentile, median as a tick"),
               Line2D([], [], color="0.3", linestyle=":", label="the rotations' mean"),
               Line2D([], [], marker="o", color="tab:blue", linestyle="none", label="fixed point (mean ± s.e.)"),
               Line2D([], [], marker="D", color="tab:orange", linestyle="none", label="AdamW (mean ± s.e.)")]
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=2)
    ax.set_title(f"linear λβ-VAE, n = {n}: the I_m of one optimum under rotations of its latent space\n"
                 "(all with the same total loss; percentiles per solution, averaged over solutions), "
                 "and each solver's I_m", fontsize=9)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def initial_point_correlations(results_dir: Path, n: int, cells) -> dict:
    """Per solver: the correlations, over solutions, of per-solution I_m between each pair of the
    given (β, λ) cells that ``results_dir``/cells holds for it."""
    out = {}
    for solver in ("fixed-point", "adamw"):
        i_m = {}
        for beta, lam in cells:
            path = results_dir / "cells" / f"{cell_name(n, solver, beta, lam)}.csv"
            if path.exists():
                rows = sorted(read_csv(path), key=lambda r: r["solution"])
                i_m[beta, lam] = np.array([r["i_m"] if r["status"] in ("converged", "done") else np.nan
                                           for r in rows], dtype=float)
        pairs = []
        for a, b in combinations(sorted(i_m), 2):
            both = ~np.isnan(i_m[a]) & ~np.isnan(i_m[b])
            pairs.append(float(np.corrcoef(i_m[a][both], i_m[b][both])[0, 1]))
        out[solver] = {"cells": sorted(i_m), "correlations": pairs}
    return out


def print_inherited(results_dir: Path, n: int, betas, lambdas) -> None:
    if not (results_dir / "cells").is_dir():
        sys.exit(f"linear_rotations.py: error: {results_dir / 'cells'} does not exist; "
                 "give a main_linear.py results folder")
    found = initial_point_correlations(results_dir, n, [(b, lam) for b in betas for lam in lambdas])
    print(f"n = {n}: Pearson correlation over solutions of per-solution I_m between pairs of cells "
          "(solution i starts from the same initial point in every cell of its solver)")
    for solver, got in found.items():
        c = got["correlations"]
        if not c:
            print(f"- {solver}: fewer than two of the cells asked for are finished")
            continue
        print(f"- {solver}: median {np.median(c):.2f}, range {min(c):.2f} to {max(c):.2f} over {len(c)} pairs "
              f"of {len(got['cells'])} cells ({', '.join(f'β={b:g} λ={lam:g}' for b, lam in got['cells'])})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, choices=(50, 100))
    parser.add_argument("--betas", type=float, nargs="+", default=[4.0, 8.0, 16.0, 32.0])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[2.0, 8.0])
    parser.add_argument("--rotations", type=int, default=400, help="random rotations per solution")
    parser.add_argument("--results-dir", type=Path, help="main_linear.py results folder with AdamW cells")
    parser.add_argument("--figure", type=Path, help="also draw the table as a figure into this PNG file")
    parser.add_argument("--inherited", action="store_true",
                        help="only: correlate per-solution I_m across the folder's cells (needs --results-dir)")
    args = parser.parse_args()
    if args.inherited:
        if args.results_dir is None:
            sys.exit("linear_rotations.py: error: --inherited reads a results folder: give --results-dir")
        return print_inherited(args.results_dir, args.n, args.betas, args.lambdas)
    torch.set_num_threads(1)
    m, s, k = DEFAULTS["m"], DEFAULTS["s"], DEFAULTS["solutions"]
    adamw = adamw_means(args.results_dir, args.n)
    draws = lv.draw_study([args.n], m, s, k, DEFAULTS["seed"])[args.n]
    print(f"n = {args.n}, m = {m}, s = {s}: fixed point from {k} initial points; I_m (nats) of "
          f"{args.rotations} Haar rotations of each solution, same total loss; means over solutions")
    print(TABLE_HEADER)
    cells = []
    for beta in args.betas:
        for lam in args.lambdas:
            c = rotation_cell(draws, PER_N[args.n], beta, lam, args.rotations)
            cells.append(c)
            print(table_row(c, adamw.get((beta, lam))), flush=True)
    print(f"({cells[-1]['solutions']} converged solutions in the last cell; a solution that failed or did not "
          "converge is left out)")
    if args.figure:
        print(f"figure: {draw_rotations(cells, adamw, args.n, args.rotations, args.figure)}")

if __name__ == "__main__":
    main()
