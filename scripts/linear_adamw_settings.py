"""Which of AdamW's settings decide the I_m it ends with in the linear study.

    python scripts/linear_adamw_settings.py --results-dir linear_betavae_results --n 50 --clip-ab 2 --clip-l 3
    python scripts/linear_adamw_settings.py --results-dir linear_betavae_results --n 50 --iters 50000
    python scripts/linear_adamw_settings.py --results-dir linear_betavae_results --n 50 --init-scale 1.41421356
    python scripts/linear_adamw_settings.py --results-dir linear_betavae_results --n 100 --second-moment matrix
    python scripts/linear_adamw_settings.py --results-dir linear_betavae_results --n 50   # the study's own: 0 change

At n = 100 AdamW's mean I_m lies above the fixed point's, at n = 50 slightly below it, while
both solvers reach the same loss (the loss does not see rotations of the latent space, I_m
does; docs/linear.md, 'Rotations'). The two n differ in AdamW's settings as well as in size:
at n = 100 the study clips the gradient of [A, B] at norm 2 and of [L_Z, L_W] at 3 and runs
50,000 steps; at n = 50 it clips at 1 and 2 and runs 30,000; and A and B start with N(0, 1)
entries at every n, so B's rows and A's columns (length n) are √2 times longer at n = 100.
This script solves chosen (β, λ) cells of a finished main_linear.py results folder again with
some of those settings changed, from the same initial points (the folder's settings and seed draw them), and prints,
per cell, the mean I_m, SAP and total next to the folder's AdamW and fixed-point solutions:
the difference per solution (solution i starts from the same point in every run), as its mean
± standard error over solutions. With no setting changed it reproduces the folder's AdamW
rows bit for bit: the last column, the largest change of any solution's I_m, SAP or total,
reads 0.

--second-moment matrix changes the algorithm instead: AdamW scales each entry's step by that
entry's own running mean square gradient, which a rotation of the latent space does not
commute with; with one mean square per parameter matrix (linear_vae.MatrixAdamW) a rotated
gradient gives the rotated step. A, B ~ N(0, 1) start from a rotation-invariant distribution,
so if AdamW's per-entry scaling is what steers it into high-I_m rotations, the matrix variant's
I_m falls back towards the average over rotations of the optimum (scripts/linear_rotations.py
prints that average).

Each run takes as long as main_linear.py takes for its cells (two n = 50 cells of 50
solutions: about nine minutes on one core); --out keeps the rows as a CSV.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from lbvae.linear import grid as main_linear  # noqa: E402
from lbvae.linear.grid import cell_name  # noqa: E402
from lbvae.linear.report import usable  # noqa: E402
from utils import read_csv, read_json, write_csv  # noqa: E402

METRICS = ("i_m", "sap", "total")


def solve_with(results_dir: Path, n: int, cells, changes: dict, solutions: int | None = None,
               init_scale: float = 1.0, second_moment: str = "entry", progress=None) -> list[dict]:
    """AdamW rows of the given (β, λ) cells, solved from the folder's initial points with the
    folder's settings for ``n`` updated by ``changes`` (keys of main_linear.PER_N's entries),
    for the first ``solutions`` initial points (all by default), A and B multiplied by
    ``init_scale``, with AdamW's second moment per entry or per matrix (``second_moment``,
    linear_vae.MatrixAdamW). One batch: a cell's solutions do not depend on the cells beside them."""
    from lbvae.linear import solver as lv
    cfg = read_json(results_dir / "config.json")
    per_n = {**cfg["per_n"][str(n)], **changes}
    draws = lv.draw_study(cfg["n"], cfg["m"], cfg["s"], cfg["solutions"], cfg["seed"])[n]
    k = cfg["solutions"] if solutions is None else min(solutions, cfg["solutions"])
    inits = {key: value[:k] * (init_scale if key in ("A", "B") else 1.0) for key, value in draws.adamw.items()}
    tasks = [{**main_linear.cell_task(draws, cfg, "adamw", beta, lam), "per_n": per_n, "inits": inits,
              "adamw": {**cfg["adamw"], "second_moment": second_moment}} for beta, lam in cells]
    return [row for _, rows, _ in main_linear.solve_cells(tasks, progress=progress) for row in rows]


def folder_rows(results_dir: Path, n: int, solver: str, beta: float, lam: float) -> dict[int, dict]:
    path = results_dir / "cells" / f"{cell_name(n, solver, beta, lam)}.csv"
    if not path.exists():
        raise SystemExit(f"linear_adamw_settings.py: error: {path} does not exist: the folder has not "
                         f"solved {solver} at n = {n}, β = {beta:g}, λ = {lam:g}")
    return {r["solution"]: r for r in read_csv(path) if usable(r)}


def paired(ours: list[dict], theirs: dict[int, dict], difference) -> tuple[float, float, int]:
    """Mean and standard error over solutions of ``difference(our row, their row)`` for the same
    solution (the same initial point)."""
    diffs = np.array([difference(r, theirs[r["solution"]]) for r in ours if usable(r) and r["solution"] in theirs])
    if len(diffs) == 0:
        return float("nan"), float("nan"), 0
    se = float(diffs.std(ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
    return float(diffs.mean()), se, len(diffs)


def unpaired(ours: list[dict], theirs: dict[int, dict], key: str) -> tuple[float, float]:
    """Difference of the two means, with the standard error of a difference of independent means
    (the fixed point starts from other initial points than AdamW)."""
    a = np.array([r[key] for r in ours if usable(r)])
    b = np.array([r[key] for r in theirs.values()])
    return float(a.mean() - b.mean()), float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


def report(results_dir: Path, n: int, rows: list[dict], changes: dict) -> str:
    what = ", ".join(f"{key} {value:g}" if isinstance(value, float | int) else f"{key} {value}"
                     for key, value in changes.items()) or "none (the study's settings)"
    lines = [f"n = {n}, AdamW with changed settings: {what}. Against the study's AdamW: differences "
             "per solution (same initial point), mean ± s.e. over solutions; against the fixed point "
             "(other initial points): difference of means ± its s.e.",
             "| β | λ | solutions | I_m | I_m − study's AdamW | I_m − fixed point | SAP − study's AdamW "
             "| total / study's AdamW − 1 | largest change of any number (I_m, SAP, total) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for beta, lam in dict.fromkeys((r["beta"], r["lambda"]) for r in rows):
        ours = [r for r in rows if r["beta"] == beta and r["lambda"] == lam]
        study = folder_rows(results_dir, n, "adamw", beta, lam)
        fixed = folder_rows(results_dir, n, "fixed-point", beta, lam)
        d_study, se_study, count = paired(ours, study, lambda a, b: a["i_m"] - b["i_m"])
        d_sap, se_sap, _ = paired(ours, study, lambda a, b: a["sap"] - b["sap"])
        d_total, se_total, _ = paired(ours, study, lambda a, b: a["total"] / b["total"] - 1)
        d_fixed, se_fixed = unpaired(ours, fixed, "i_m")
        moved = max(abs(r[key] - study[r["solution"]][key]) for r in ours if usable(r) and r["solution"] in study
                    for key in METRICS)
        lines.append(f"| {beta:g} | {lam:g} | {count} | {np.mean([r['i_m'] for r in ours if usable(r)]):.3f} "
                     f"| {d_study:+.3f} ± {se_study:.3f} | {d_fixed:+.3f} ± {se_fixed:.3f} "
                     f"| {d_sap:+.3f} ± {se_sap:.3f} | {d_total:+.1e} ± {se_total:.0e} | {moved:.1e} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, required=True,
                        help="a main_linear.py results folder holding the cells' AdamW and fixed-point rows")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--betas", type=float, nargs="+", default=[4.0, 16.0])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[2.0, 8.0])
    parser.add_argument("--iters", type=int, help="AdamW steps (the study: 30,000 at n = 50, 50,000 at n = 100)")
    parser.add_argument("--clip-ab", type=float,
                        help="max gradient norm of [A, B] (the study: 1 at n = 50, 2 at n = 100)")
    parser.add_argument("--clip-l", type=float,
                        help="max gradient norm of [L_Z, L_W] (the study: 2 at n = 50, 3 at n = 100)")
    parser.add_argument("--init-scale", type=float,
                        help="multiply the initial A and B by this (their entries are N(0, 1) at every n, so "
                             "B's rows and A's columns have norm about √n: √2 gives n = 50 those of n = 100)")
    parser.add_argument("--second-moment", choices=("entry", "matrix"), default="entry",
                        help="AdamW's second moment per entry (the study's) or one per parameter matrix, "
                             "which makes its step blind to rotations of the latent space (linear_vae.MatrixAdamW)")
    parser.add_argument("--solutions", type=int, help="only the first this many initial points (default: all)")
    parser.add_argument("--out", type=Path, help="write the solved rows to this CSV")
    args = parser.parse_args(argv)
    if not (args.results_dir / "config.json").exists():
        sys.exit(f"linear_adamw_settings.py: error: {args.results_dir / 'config.json'} does not exist; "
                 "give a main_linear.py results folder")
    for name in ("iters", "clip_ab", "clip_l", "solutions", "init_scale"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            sys.exit(f"linear_adamw_settings.py: error: --{name.replace('_', '-')} is {value:g}; "
                     "give a positive number")
    changes = {key: value for key, value in (("adamw_iters", args.iters), ("clip_ab", args.clip_ab),
                                              ("clip_l", args.clip_l)) if value is not None}
    shown = {**changes, **({"init_scale": args.init_scale} if args.init_scale else {}),
             **({"second_moment": args.second_moment} if args.second_moment != "entry" else {})}
    study = read_json(args.results_dir / "config.json")["per_n"]
    if str(args.n) not in study:
        sys.exit(f"linear_adamw_settings.py: error: {args.results_dir} has no n = {args.n} "
                 f"(it has n = {', '.join(study)})")
    cells = [(beta, lam) for beta in args.betas for lam in args.lambdas]
    for beta, lam in cells:         # before minutes of solving, not after
        folder_rows(args.results_dir, args.n, "adamw", beta, lam)
        folder_rows(args.results_dir, args.n, "fixed-point", beta, lam)
    from tqdm import tqdm
    iters = changes.get("adamw_iters", study[str(args.n)]["adamw_iters"])
    start = time.time()
    with tqdm(total=iters, desc=f"{len(cells)} cell(s), AdamW steps", unit="step") as bar:
        rows = solve_with(args.results_dir, args.n, cells, changes, args.solutions, args.init_scale or 1.0,
                          args.second_moment, progress=lambda step: bar.update(step - bar.n))
    if args.out:
        write_csv(args.out, rows)
    print(report(args.results_dir, args.n, rows, shown))
    print(f"solved in {time.time() - start:.0f} s" + (f"; rows in {args.out}" if args.out else ""))


if __name__ == "__main__":
    main()
