"""Where a step of the linear theory's AdamW solver spends its time, and what the full grid costs.

    python benchmarks/linear_adamw.py                    # n = 50 and 100, batches of 50 and 1,250 solutions
    python benchmarks/linear_adamw.py --profile          # also the top operations of one step (torch.profiler)
    python benchmarks/linear_adamw.py --rounding         # how far rounding moves AdamW where no minimum exists
    python benchmarks/linear_adamw.py --batch-rounding   # how a solution's step depends on its batch's size
    python benchmarks/linear_adamw.py --floor            # the n³ work no closed-form step can avoid, and its grid
    python benchmarks/linear_adamw.py --float32          # what solving in float32 would change, and gain
    python benchmarks/linear_adamw.py --against af24a98~1  # this solver against a commit's: same bits? faster?

Times per step, in one process on one thread (as main_linear.py's workers run), of:
- ``autograd``: the loss through ``linear_vae.losses`` and its gradients by autograd (the
  solver's step before the closed-form gradients);
- ``closed form``: ``linear_vae.loss_and_gradients``;
- ``solver``: a whole step of ``linear_vae.solve_adamw`` (gradients, clipping, best iterate,
  AdamW, projection), from the time of 30 steps.
The repeats are interleaved, so machine load hits both alike; the spread is min–max. The last
lines project the full grid (25 (β, λ) cells × 50 solutions per n, 30,000 / 50,000 steps) from
the solver's per-solution step time, for one and for two worker processes.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lbvae.linear import solver as lv  # noqa: E402
from lbvae.linear.grid import DEFAULTS, PER_N  # noqa: E402


def inputs(n: int, k: int):
    draws = lv.draw_study([n], 10, 5, min(k, 50))[n]
    reps = -(-k // len(draws.adamw["B"]))
    inits = {key: np.concatenate([v] * reps)[:k] for key, v in draws.adamw.items()}
    beta = torch.tensor(np.resize(DEFAULTS["betas"], k), dtype=lv.DTYPE)
    lam = torch.tensor(np.resize(np.repeat(DEFAULTS["lambdas"], 1), k), dtype=lv.DTYPE)
    return draws.problem.sigma_y, inits, beta, lam


def autograd_step(sigma_y, inits, beta, lam):
    a, b, lz, lw = (torch.tensor(inits[key]).requires_grad_(True) for key in ("A", "B", "L_Z", "L_W"))
    n, m = a.shape[-2], a.shape[-1]
    out = lv.losses(a, b, lz @ lz.mT + lv.JITTER * torch.eye(n, dtype=lv.DTYPE),
                    lw @ lw.mT + lv.JITTER * torch.eye(m, dtype=lv.DTYPE), sigma_y, beta, lam)
    out["total"].sum().backward()


def closed_form_step(sigma_y, inits, beta, lam):
    a, b, lz, lw = (torch.tensor(inits[key]) for key in ("A", "B", "L_Z", "L_W"))
    lv.loss_and_gradients(a, b, lz, lw, torch.tensor(sigma_y), beta, lam)


def solver_step(sigma_y, inits, beta, lam, iters=30):
    lv.solve_adamw(sigma_y, beta, lam, inits, iters, 1.0, 2.0)
    return iters


def metric_arrays(sol: dict, problem, beta, lam, keys=("recon", "total", "sap", "i_m")) -> dict:
    """Per metric, one value per solution of ``sol``."""
    rows = lv.solution_metrics(sol, problem, beta, lam)
    return {key: np.array([r[key] for r in rows]) for key in keys}


def timed(fn, *args) -> float:
    start = time.perf_counter()
    steps = fn(*args) or 1
    return (time.perf_counter() - start) / steps


def rounding(n: int = 50, solutions: int = 5, steps: int = 1000) -> None:
    """AdamW's sensitivity to rounding: one cell solved from its initial points and from the same
    points with A scaled by (1 + 1e-15). Where the loss has no minimum (β = 1, λ > 0) the paths
    part; where it has one the loss does not move, but SAP and I_m, which change when the latent
    space is rotated (the loss does not), may."""
    draws = lv.draw_study([n], 10, 5, solutions)[n]
    nudged = {**draws.adamw, "A": draws.adamw["A"] * (1 + 1e-15)}
    for beta, lam in ((1.0, 2.0), (4.0, 2.0), (16.0, 0.0)):
        ours, theirs = (metric_arrays(lv.solve_adamw(draws.problem.sigma_y, beta, lam, inits, steps, 1.0, 2.0),
                                      draws.problem, beta, lam) for inits in (draws.adamw, nudged))
        moved = {key: np.abs(theirs[key] - ours[key]).max() for key in ("sap", "i_m")}
        print(f"n={n} β={beta:g} λ={lam:g}, {solutions} solutions, {steps:,} steps: initial A × (1 + 1e-15) moves "
              f"recon by up to {np.abs(theirs['recon'] / ours['recon'] - 1).max():.1e} (relative), SAP by "
              f"{moved['sap']:.1e} and I_m by {moved['i_m']:.1e}", flush=True)


def batch_rounding(n: int = 100, k: int = 50) -> None:
    """One step of the study's n = 100 problem (the full grid's draws, β = 1, λ = 2) for K = 50
    solutions in one batch against the same solutions in batches of 25, 10, 5 and 1: the largest
    difference of B Σ_Y (the one product torch computes for a whole batch at once) and of the
    loss and gradients, relative to each solution's largest entry."""
    draws = lv.draw_study([n], 10, 5, k)[n]
    sigma_y = torch.tensor(draws.problem.sigma_y)

    def step(sl):
        a, b, lz, lw = (torch.tensor(draws.adamw[key][sl]) for key in ("A", "B", "L_Z", "L_W"))
        size = a.shape[0]
        total, _, grads = lv.loss_and_gradients(a, b, lz, lw, sigma_y, torch.full((size,), 1.0, dtype=lv.DTYPE),
                                                torch.full((size,), 2.0, dtype=lv.DTYPE))
        return [b @ sigma_y, total, *grads]

    whole = step(slice(None))
    for size in (25, 10, 5, 1):
        parts = [torch.cat(x) for x in zip(*(step(slice(i, i + size)) for i in range(0, k, size)))]
        by = (parts[0] - whole[0]).abs().max().item()
        rel = [((x - y).flatten(1).abs().amax(1) / y.flatten(1).abs().amax(1)).max().item() if y.dim() > 1
               else ((x - y).abs() / y.abs()).max().item() for x, y in zip(parts[1:], whole[1:])]
        print(f"n={n}: batches of {size:2d} against one of {k}: B Σ_Y differs by up to {by:.1e} (absolute); "
              "relative step differences " + ", ".join(f"{name} {r:.1e}" for name, r in
                                                       zip(("total", "∂A", "∂B", "∂L_Z", "∂L_W"), rel)))


def floor(ns, batches, repeats: int) -> None:
    """The arithmetic no closed-form AdamW step of this parametrisation avoids, timed alone.

    Σ_Z = L_Z L_Zᵀ + εI is one n × n product; its Cholesky factor is needed for log det Σ_Z; and
    ∂/∂L_Z = (Σ_Z⁻¹ − Σ_Z⁻¹ E Σ_Z⁻¹) L_Z needs Σ_Z⁻¹ applied to two n × n matrices (L_Z, and the
    result of E on it; E itself is low rank plus 0.05·I, so E times a matrix is cheap). Two ways
    to apply Σ_Z⁻¹ twice: form it (Cholesky inverse) and multiply twice, or four triangular
    solves. The floor is one product + one Cholesky + the cheaper of the two; everything else a
    step does (the n × m products, AdamW, clipping, projection) is on top. It is a floor for the
    batched operations torch has: it offers no batched triangular or symmetric product, which
    would do L_Z L_Zᵀ and Σ_Z⁻¹ L_Z in about half the multiplications (the clipping needs the
    whole gradient of L_Z, upper triangle included, so no product can be skipped). Per
    solution, one thread, median of ``repeats``; projected over the study's 25 cells × 50 solutions."""
    torch.set_num_threads(1)
    cells = len(DEFAULTS["betas"]) * len(DEFAULTS["lambdas"]) * DEFAULTS["solutions"]
    for dtype in (torch.float64, torch.float32):
        total = 0.0
        for n in ns:
            best = math.inf
            for k in batches:
                gen = torch.Generator().manual_seed(0)
                x = torch.randn(k, n, n, dtype=dtype, generator=gen)
                y = torch.randn(k, n, n, dtype=dtype, generator=gen)
                spd = x @ x.mT + n * torch.eye(n, dtype=dtype)
                chol = torch.linalg.cholesky(spd)
                out = torch.empty_like(x)
                ops = {"product": partial(torch.matmul, x, y, out=out),
                       "cholesky": partial(torch.linalg.cholesky_ex, spd),
                       "inverse": partial(torch.cholesky_inverse, chol),
                       "triangular solve": partial(torch.linalg.solve_triangular, chol, y, upper=False)}
                per = {}
                for name, fn in ops.items():
                    fn()
                    times = []
                    for _ in range(repeats):
                        start = time.perf_counter()
                        for _ in range(10):
                            fn()
                        times.append((time.perf_counter() - start) / 10 / k)
                    per[name] = statistics.median(times)
                step = per["product"] + per["cholesky"] + min(per["inverse"] + 2 * per["product"],
                                                             4 * per["triangular solve"])
                print(f"{str(dtype).split('.')[1]} n={n:3d} K={k:3d}: " + ", ".join(
                    f"{name} {1e3 * t:.3f}" for name, t in per.items()) + f" ms per matrix; floor {1e3 * step:.3f} ms "
                    "per solution-step", flush=True)
                best = min(best, step)
            iters = PER_N[50 if n <= 75 else 100]["adamw_iters"]
            total += cells * iters * best
            print(f"  n={n}: {cells} solutions × {iters:,} steps at the floor: {cells * iters * best / 3600:.2f} h "
                  "on one core")
        print(f"  {str(dtype).split('.')[1]}, n = {' and '.join(map(str, ns))} at the floor: {total / 3600:.2f} h on "
              f"one core, {total / 7200:.2f} h on two (the goal for both n: 1.5 h on two)")


def float32(n: int = 50, solutions: int = 10) -> None:
    """Cells of the study's n = 50 problem solved in float64 and in float32 from the same initial
    points, for the full 30,000 steps; per cell the largest difference of a solution's total
    (relative), SAP and I_m, the cell means to the tables' 3 decimals, and the time ratio."""
    draws = lv.draw_study([n], 10, 5, solutions)[n]
    per_n = PER_N[50 if n <= 75 else 100]
    for beta, lam in ((4.0, 2.0), (16.0, 8.0), (4.0, 0.0), (1.0, 2.0)):
        out, seconds = {}, {}
        for dtype in (torch.float64, torch.float32):
            start = time.perf_counter()
            sol = lv.solve_adamw(draws.problem.sigma_y, beta, lam, draws.adamw, per_n["adamw_iters"],
                                 per_n["clip_ab"], per_n["clip_l"], dtype=dtype)
            seconds[dtype] = time.perf_counter() - start
            out[dtype] = metric_arrays(sol, draws.problem, beta, lam)
            out[dtype]["failed"] = sum(bool(f) for f in sol["failure"])
        a, b = out[torch.float64], out[torch.float32]
        print(f"n={n} β={beta:g} λ={lam:g}, {solutions} solutions × {per_n['adamw_iters']:,} steps: float32 "
              f"{seconds[torch.float64] / seconds[torch.float32]:.2f}x faster; failed {a['failed']} / {b['failed']}; "
              f"largest difference: total {np.max(np.abs(b['total'] / a['total'] - 1)):.1e} (relative), "
              f"SAP {np.max(np.abs(b['sap'] - a['sap'])):.1e}, I_m {np.max(np.abs(b['i_m'] - a['i_m'])):.1e}; "
              f"means float64 / float32: SAP {a['sap'].mean():.3f} / {b['sap'].mean():.3f}, "
              f"I_m {a['i_m'].mean():.3f} / {b['i_m'].mean():.3f}", flush=True)


def against(rev: str, ns, repeats: int, steps: int = 300) -> None:
    """This checkout's ``solve_adamw`` against the one of commit ``rev`` (git show), on the study's
    inputs (50 solutions, one of them failing at step 1): whether ``steps`` steps end in the same
    bits, and the ratio of their step times, interleaved in one process so load hits both alike.
    A change to the solver that keeps the bits may join a grid half solved by the old code."""
    import importlib.util
    import subprocess
    import tempfile
    root = Path(__file__).resolve().parent.parent
    source = None
    for where in ("lbvae/linear/solver.py", "linear_vae.py"):      # the solver's path since and before the layout
        try:
            source = subprocess.run(["git", "show", f"{rev}:{where}"], cwd=root, check=True,
                                    capture_output=True, text=True).stdout
            break
        except (subprocess.CalledProcessError, FileNotFoundError) as err:
            failure = err
    if source is None:
        sys.exit(f"--against {rev}: git cannot show the solver (lbvae/linear/solver.py or linear_vae.py) "
                 f"at that commit ({failure})")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "linear_vae_then.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("linear_vae_then", path)
        then = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = then                      # dataclasses look their module up
        spec.loader.exec_module(then)
    for n in ns:
        sigma_y, inits, beta, lam = inputs(n, 50)
        inits = {key: v.copy() for key, v in inits.items()}
        inits["A"][3, 0, 0] = np.nan
        per_n = PER_N[50 if n <= 75 else 100]
        clips = per_n["clip_ab"], per_n["clip_l"]
        old, new = (module.solve_adamw(sigma_y, beta, lam, inits, steps, *clips) for module in (then, lv))
        keys = ("A", "B", "sigma_z", "sigma_w", "best_iteration")
        same = all(np.array_equal(old[key], new[key], equal_nan=True) for key in keys)   # the failed one: NaN
        same &= old["failure"] == new["failure"]
        times = {"then": [], "now": []}
        for r in range(repeats):
            order = (("then", then), ("now", lv)) if r % 2 else (("now", lv), ("then", then))
            for name, module in order:
                start = time.perf_counter()
                module.solve_adamw(sigma_y, beta, lam, inits, 30, *clips)
                times[name].append((time.perf_counter() - start) / 30)
        ratios = [a / b for a, b in zip(times["then"], times["now"])]
        then_ms, now_ms = (1e3 * statistics.median(times[key]) for key in ("then", "now"))
        print(f"n={n:3d} K=50: {steps} steps {'bit-identical' if same else 'DIFFER'}; solver step at {rev} "
              f"{then_ms:.1f} ms, now {now_ms:.1f} ms; "
              f"ratio {statistics.median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f} "
              f"over {repeats} interleaved repeats)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--batch", type=int, nargs="+", default=[50, 1250], help="solutions per solve")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the top operations of one closed-form step")
    parser.add_argument("--batch-rounding", action="store_true",
                        help="only: how one step of a solution depends on the size of its batch (n = 100)")
    parser.add_argument("--float32", action="store_true",
                        help="only: solve four n = 50 cells (10 solutions) in float64 and float32 and compare")
    parser.add_argument("--floor", action="store_true",
                        help="only: time the n³ work every closed-form step needs and project the grid from it")
    parser.add_argument("--rounding-steps", type=int, default=1000, help="AdamW steps of --rounding (default 1,000)")
    parser.add_argument("--against", metavar="REV",
                        help="only: compare this solver with the one at git commit REV (bits and speed)")
    parser.add_argument("--rounding", action="store_true",
                        help="only: perturb initial points by 1e-15 (relative) and report how far solutions move")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores); one thread")
    if args.against:
        return against(args.against, args.n, max(args.repeats, 4))
    if args.rounding:
        return rounding(steps=args.rounding_steps)
    if args.batch_rounding:
        return batch_rounding()
    if args.float32:
        return float32()
    if args.floor:
        # The floor is per solution and a cell's solve has 50; timing each operation on the
        # default 1,250 would take minutes. Say which batches are left out rather than drop them.
        kept = [k for k in args.batch if k <= 50] or [50]
        skipped = [k for k in args.batch if k > 50]
        if skipped:
            print(f"--floor times batches of at most 50 solutions: {', '.join(map(str, skipped))} left out")
        return floor(args.n, kept, args.repeats)
    per_solution = {}
    for n in args.n:
        for k in args.batch:
            data = inputs(n, k)
            times = {"autograd": [], "closed form": [], "solver": []}
            autograd_step(*data), closed_form_step(*data), solver_step(*data, iters=2)   # warm up (imports, caches)
            for _ in range(args.repeats):
                times["autograd"].append(timed(autograd_step, *data))
                times["closed form"].append(timed(closed_form_step, *data))
                times["solver"].append(timed(solver_step, *data))
            med = {key: statistics.median(v) for key, v in times.items()}
            line = "  ".join(f"{key} {1e3 * med[key]:8.1f} ms ({1e3 * min(v):.1f}–{1e3 * max(v):.1f})"
                             for key, v in times.items())
            print(f"n={n:3d} K={k:5d}: {line}  gradients: autograd/closed form = "
                  f"{med['autograd'] / med['closed form']:.2f}x")
            per_solution[n, k] = med["solver"] / k
    best = {n: min(per_solution[n, k] for k in args.batch) for n in args.n}
    cells = len(DEFAULTS["betas"]) * len(DEFAULTS["lambdas"]) * DEFAULTS["solutions"]
    total = sum(cells * PER_N[50 if n <= 75 else 100]["adamw_iters"] * best[n] for n in args.n)
    for n in args.n:
        iters = PER_N[50 if n <= 75 else 100]["adamw_iters"]
        print(f"n={n}: {1e3 * best[n]:.3f} ms per solution-step at the best batch; its {cells} solutions × "
              f"{iters:,} steps: {cells * iters * best[n] / 3600:.1f} h on one core")
    print(f"full AdamW grid (n = {' and '.join(map(str, args.n))}): {total / 3600:.1f} h on one core, "
          f"{total / 7200:.1f} h on two (if both cores are free)")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        for n in args.n:
            data = inputs(n, 50)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(5):
                    closed_form_step(*data)
            print(f"\nclosed-form step, n = {n}, K = 50 (5 steps):")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(5):
                    autograd_step(*data)
            print(f"autograd step, n = {n}, K = 50 (5 steps):")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
