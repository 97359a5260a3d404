"""How much of the linear study's I_m its loss decides.

    python scripts/linear_rotations.py                    # n = 100, β 4 8 16 32, λ 2 8, 400 rotations
    python scripts/linear_rotations.py --n 50 --results-dir linear_betavae_results

The prior N(0, I) is isotropic, so rotating a solution's latent space (A Qᵀ, Q B, Q Σ_W Qᵀ)
leaves every loss unchanged while SAP and I_m move (docs/linear.md, 'Rotations'). For each
(β, λ) cell this solves the fixed point from the study's 50 initial points (the same draws
and settings as main_linear.py), then applies random rotations, drawn uniformly (Haar) from
O(m) with a fixed seed, to each solution, and prints the fixed point's I_m beside the I_m of
its rotations: the smallest, median and largest over the rotations, averaged over
solutions. The smallest and largest of a finite sample bound the true extremes from inside.
With --results-dir, AdamW's mean I_m for the cell is printed beside them where that folder
(a main_linear.py results folder with the same settings) has the cell.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import ortho_group  # noqa: E402

import linear_vae as lv  # noqa: E402
from main_linear import DEFAULTS, PER_N  # noqa: E402
from utils import read_csv  # noqa: E402


def adamw_means(results_dir: Path | None, n: int) -> dict:
    """AdamW's mean I_m per (β, λ) from a results folder's summary.csv, where it has the cell."""
    path = results_dir / "summary.csv" if results_dir else None
    if path is None:
        return {}
    if not path.exists():
        sys.exit(f"linear_rotations.py: error: {path} does not exist; give a main_linear.py results folder")
    return {(r["beta"], r["lambda"]): r["i_m_mean"] for r in read_csv(path)
            if r["n"] == n and r["solver"] == "adamw" and r["i_m_mean"] is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, choices=(50, 100))
    parser.add_argument("--betas", type=float, nargs="+", default=[4.0, 8.0, 16.0, 32.0])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[2.0, 8.0])
    parser.add_argument("--rotations", type=int, default=400, help="random rotations per solution")
    parser.add_argument("--results-dir", type=Path, help="main_linear.py results folder with AdamW cells")
    args = parser.parse_args()
    torch.set_num_threads(1)
    m, s, k = DEFAULTS["m"], DEFAULTS["s"], DEFAULTS["solutions"]
    per_n = PER_N[args.n]
    adamw = adamw_means(args.results_dir, args.n)
    draws = lv.draw_study([args.n], m, s, k, DEFAULTS["seed"])[args.n]
    problem = draws.problem
    print(f"n = {args.n}, m = {m}, s = {s}: fixed point from {k} initial points; I_m (nats) of "
          f"{args.rotations} Haar rotations of each solution, same total loss; means over solutions")
    print("| β | λ | fixed point's I_m | rotations: smallest | median | largest | AdamW's I_m "
          "| max relative change of the total |")
    print("|---|---|---|---|---|---|---|---|")
    for beta in args.betas:
        for lam in args.lambdas:
            sol = lv.solve_fixed_point(problem.sigma_y, beta, lam, draws.fixed_point["B"],
                                       draws.fixed_point["sigma_w"], per_n["tol"], per_n["fp_iters"])
            own, stats, drift = [], [], 0.0
            for i in range(k):
                if sol["failure"][i] or not sol["converged"][i]:
                    continue
                A, B, sz, sw = (sol[key][i] for key in ("A", "B", "sigma_z", "sigma_w"))
                rotations = ortho_group.rvs(m, size=args.rotations, random_state=i)
                ims = lv.i_m_over_rotations(B, sw, problem, rotations)
                own.append(lv.i_m(lv.factor_mi(B, sw, problem)[1]))
                stats.append((ims.min(), np.median(ims), ims.max()))
                total = float(lv.losses(A, B, sz, sw, problem.sigma_y, beta, lam)["total"])
                a, b, w = lv.rotate(A, B, sw, rotations[0])       # the loss check, on one rotation each
                moved = float(lv.losses(a, b, sz, w, problem.sigma_y, beta, lam)["total"])
                drift = max(drift, abs(moved - total) / abs(total))
            lo, mid, hi = np.mean(stats, axis=0)
            other = adamw.get((beta, lam))
            print(f"| {beta:g} | {lam:g} | {np.mean(own):.3f} | {lo:.3f} | {mid:.3f} | {hi:.3f} | "
                  f"{'–' if other is None else f'{other:.3f}'} | {drift:.1e} |", flush=True)
    print(f"({len(own)} converged solutions in the last cell; a solution that failed or did not converge is left out)")


if __name__ == "__main__":
    main()
