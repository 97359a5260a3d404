"""The linear study's grid (main_linear.py): the linear β-VAE and λβ-VAE of Vu, Wan & Wei
(2026), solved exactly.

    python main_linear.py            # n ∈ {50, 100}, both solvers, β × λ grid, 50 solutions per cell
    python main_linear.py --demo     # n = 50, a small grid, in about a minute
    python main_linear.py --n 50 --solvers fixed-point --solutions 10 --betas 1 4 --lambdas 0 2

For each n: draw Σ_V, Γ and every solver's initial point (one global seed, the original's
order), solve every (solver, β, λ) cell for all its solutions at once, score each solution
(recon, KL, L2, total, SAP, I_m), then draw the figures from results.csv. Finished cells are
kept as files under cells/ and skipped on a rerun. docs/linear.md explains the model.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from lbvae.linear.report import draw_boxplots, draw_collapse, draw_heatmaps, draw_solvers, summarize, summary_text
from utils import (
    LOCK,
    LockHeld,
    RunLock,
    atomic_write,
    holds_more_than,
    read_csv,
    read_json,
    remove_stale_temporaries,
    write_csv,
    write_json,
    write_text,
)

# The original's settings per n (n = 50 and n = 100); other n take those of the nearer one.
PER_N = {50: {"tol": 1e-6, "fp_iters": 50_000, "adamw_iters": 30_000, "clip_ab": 1.0, "clip_l": 2.0},
         100: {"tol": 1e-5, "fp_iters": 100_000, "adamw_iters": 50_000, "clip_ab": 2.0, "clip_l": 3.0}}
DEFAULTS = {"n": [50, 100], "m": 10, "s": 5, "betas": [1, 4, 8, 16, 32], "lambdas": [0, 2, 4, 6, 8],
            "solvers": ["fixed-point", "adamw"], "solutions": 50, "seed": 42, "sweep_points": 60,
            "sweep_range": [0.25, 64.0]}
# Small enough for about a minute on two idle cores; β = 4 and 16 at λ = 0 still collapse exactly.
# (β = 1 with λ > 0 is its slowest cell: there the loss has no minimiser and the steps shrink slowly.)
DEMO = {"n": [50], "betas": [1, 4, 16], "lambdas": [0, 2], "solutions": 5, "adamw_iters": 1000, "sweep_points": 40}
ADAMW = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
# Settings that change the numbers of some cell: a results directory holds one value of each.
RUN_DEFINING = ("n", "m", "s", "solutions", "seed", "per_n", "adamw", "sweep_points", "sweep_range")


class SettingError(Exception):
    """A bad setting: reported as one line naming it, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):           # argparse's own errors as one line too, no usage block
        raise SettingError(message)


def build_parser() -> Parser:
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", action="store_true", help="small grid under demo_results/ (about a minute)")
    p.add_argument("--n", type=int, nargs="+", help="data dimensions (default 50 100)")
    p.add_argument("--m", type=int, help="latent dimension (default 10)")
    p.add_argument("--s", type=int, help="number of factors (default 5)")
    p.add_argument("--betas", type=float, nargs="+", help="β grid (default 1 4 8 16 32)")
    p.add_argument("--lambdas", type=float, nargs="+", help="λ grid (default 0 2 4 6 8)")
    p.add_argument("--solvers", nargs="+", help="fixed-point and/or adamw (default both)")
    p.add_argument("--solutions", type=int, help="initial points per cell and solver (default 50)")
    p.add_argument("--seed", type=int, help="the global NumPy/torch seed (default 42, the original's)")
    p.add_argument("--tol", type=float, help="fixed-point tolerance (default 1e-6 for n ≤ 50, 1e-5 above)")
    p.add_argument("--fp-iters", type=int, help="fixed-point iteration cap (default 50,000 / 100,000)")
    p.add_argument("--adamw-iters", type=int, help="AdamW iterations (default 30,000 / 50,000)")
    p.add_argument("--clip-ab", type=float, help="gradient-norm clip of [A, B] (default 1.0 / 2.0)")
    p.add_argument("--clip-l", type=float, help="gradient-norm clip of [L_Z, L_W] (default 2.0 / 3.0)")
    p.add_argument("--sweep-points", type=int, help="β values of the collapse figure (default 60; 0: none)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: the cores)")
    p.add_argument("--device", default="cpu", help="where AdamW solves, in float64: cpu or cuda (default cpu)")
    p.add_argument("--cells-per-solve", type=int,
                   help="(β, λ) cells of one n that AdamW solves as one batch (default: 1 on the CPU, where "
                        "per-solution cost grows with the batch; every cell of an n on a GPU)")
    p.add_argument("--results-dir", help="default linear_betavae_results (demo_results/… with --demo)")
    p.add_argument("--collect", action="store_true",
                   help="solve nothing: write the tables and figures of the cells finished so far (a grid "
                        "that is still running or was interrupted); unfinished cells are marked 'not run'")
    return p


def _positive(name, value, allow_zero=False):
    bad = not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        raise SettingError(f"{name} is {value:g}: it must be {'≥ 0' if allow_zero else '> 0'} and finite")


def settings_from_args(argv=None) -> dict:
    """The resolved settings: defaults, then --demo, then every flag given; checked."""
    args = build_parser().parse_args(argv)
    cfg = dict(DEFAULTS)
    if args.demo:
        cfg.update({k: v for k, v in DEMO.items() if k in DEFAULTS})
    for key in ("n", "m", "s", "betas", "lambdas", "solvers", "solutions", "seed", "sweep_points"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    for n in cfg["n"]:
        _positive("--n", n)
    for key in ("m", "s", "solutions"):
        _positive(f"--{key}", cfg[key])
    _positive("--sweep-points", cfg["sweep_points"], allow_zero=True)
    _positive("--workers", args.workers)
    for key in ("n", "betas", "lambdas", "solvers"):
        if len(set(cfg[key])) != len(cfg[key]):
            raise SettingError(f"--{key} has duplicates: {' '.join(str(x) for x in cfg[key])}")
    for name in ("m", "s"):
        too_big = [n for n in cfg["n"] if cfg[name] > n]
        if too_big:
            raise SettingError(f"--{name} is {cfg[name]}, larger than --n {too_big[0]}")
    for b in cfg["betas"]:
        _positive("--betas", b)
    for lam in cfg["lambdas"]:
        _positive("--lambdas", lam, allow_zero=True)
    unknown = [x for x in cfg["solvers"] if x not in ("fixed-point", "adamw")]
    if unknown:
        raise SettingError(f"--solvers has '{unknown[0]}': choose from fixed-point, adamw")
    overrides = {"tol": args.tol, "fp_iters": args.fp_iters, "clip_ab": args.clip_ab, "clip_l": args.clip_l,
                 "adamw_iters": args.adamw_iters if args.adamw_iters is not None
                 else (DEMO["adamw_iters"] if args.demo else None)}
    for key, value in overrides.items():
        if value is not None:
            _positive("--" + key.replace("_", "-"), value)
    cfg["per_n"] = {}
    for n in cfg["n"]:
        base = PER_N[50] if n <= 75 else PER_N[100]
        cfg["per_n"][str(n)] = {k: (overrides[k] if overrides[k] is not None else v) for k, v in base.items()}
    cfg["adamw"] = {k: list(v) if isinstance(v, tuple) else v for k, v in ADAMW.items()}
    cfg["betas"] = [float(b) for b in cfg["betas"]]
    cfg["lambdas"] = [float(x) for x in cfg["lambdas"]]
    cfg["workers"] = args.workers
    cfg["collect"] = args.collect
    cfg["device"] = args.device
    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise SettingError(f"--device {args.device}: no CUDA device is visible to torch; use --device cpu")
        cfg["workers"] = 1                 # one process feeds the GPU
    elif args.device != "cpu":
        raise SettingError(f"--device is {args.device!r}: choose cpu or cuda")
    if args.cells_per_solve is not None:
        _positive("--cells-per-solve", args.cells_per_solve)
    cfg["cells_per_solve"] = args.cells_per_solve or (
        len(cfg["betas"]) * len(cfg["lambdas"]) if args.device.startswith("cuda") else 1)
    cfg["results_dir"] = args.results_dir or ("demo_results/linear_betavae_results" if args.demo
                                              else "linear_betavae_results")
    return cfg


def check_results_dir(root: Path, cfg: dict) -> None:
    """A results directory belongs to one set of run-defining settings; refuse to mix."""
    path = root / "config.json"
    mine = {k: cfg[k] for k in RUN_DEFINING}
    if path.exists():
        try:
            saved = read_json(path)
        except ValueError:
            raise SettingError(f"{path} is unreadable; delete it or use another --results-dir") from None
        for key in RUN_DEFINING:
            ours = json.loads(json.dumps(mine[key]))          # tuples -> lists, as saved
            if saved.get(key) == ours:
                continue
            if holds_more_than(root, "config.json", LOCK):
                raise SettingError(f"{root} was made with {key}={_show(saved.get(key))}, not {_show(ours)}; "
                                   "use another --results-dir or delete it")
            # Only the settings file is there: nothing computed is lost by rebinding the folder.
            print(f"{root} held no cells, only a config.json made with {key}={_show(saved.get(key))}; "
                  "it now records this command's settings")
            write_json(path, mine)
            return
    else:
        write_json(path, mine)


def _show(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# ----------------------------------------------------------------------------- cells

def cell_name(n, solver, beta, lam) -> str:
    return f"n{n}_{solver}_beta{beta:g}_lambda{lam:g}"


def cell_task(draws, cfg: dict, solver: str, beta: float, lam: float) -> dict:
    """One (n, solver, β, λ) cell as ``solve_cells`` takes it: the problem and the solver's
    initial points from ``draws`` (one n's, linear_vae.draw_study), the settings from ``cfg``."""
    return {"problem": draws.problem, "m": cfg["m"], "solver": solver, "beta": beta, "lambda": lam,
            "per_n": cfg["per_n"][str(draws.problem.n)], "adamw": cfg["adamw"], "device": cfg.get("device", "cpu"),
            "inits": draws.fixed_point if solver == "fixed-point" else draws.adamw}


def partial_path(folder: Path, batch: list[dict]) -> Path:
    """Where an AdamW batch of cells (tasks) keeps its partial state: named after its first cell."""
    first = batch[0]
    name = cell_name(first["problem"].n, first["solver"], first["beta"], first["lambda"])
    return folder / (name + (f"+{len(batch) - 1}" if len(batch) > 1 else "") + ".pt")


def _fingerprint(*arrays, settings) -> str:
    """A digest of everything an AdamW batch's steps depend on: a partial state is resumed only
    by the same batch of the same problem (another --cells-per-solve makes other batches)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=list).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _read_partial(path: Path) -> dict | None:
    """A batch's saved state, or None where there is none or it is unreadable (atomic writes make
    that unlikely; the batch then starts over and overwrites it)."""
    import torch
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


def solve_cells(tasks: list[dict], slot: int | None = None, progress=None,
                partial: Path | None = None) -> list[tuple[str, list[dict], float]]:
    """Solve (n, solver, β, λ) cells of one n and solver as one batch of solutions (β and λ are
    per solution, and every solution is independent of the others in its batch); return each
    cell's name, results rows and seconds (the batch's solving time, shared out by solutions).
    AdamW reports its steps done to ``progress``, or, in a worker, into slot ``slot`` of the
    array the pool shares (``_worker_setup``). With a ``partial`` folder, an AdamW batch saves
    its state there at most every ``PARTIAL_SECONDS`` and resumes from a state saved by an
    interrupted run of the same batch, bit for bit; the caller deletes it once the cells are
    written."""
    from lbvae.linear import solver as lv
    if progress is None and slot is not None and _STEPS_DONE is not None:
        def progress(step):
            _STEPS_DONE[slot] = step
    start = time.time()
    first = tasks[0]
    problem, per_n, solver, k = first["problem"], first["per_n"], first["solver"], len(first["inits"]["B"])
    inits = {key: np.concatenate([t["inits"][key] for t in tasks]) for key in first["inits"]}
    beta = np.repeat([t["beta"] for t in tasks], k)
    lam = np.repeat([t["lambda"] for t in tasks], k)
    solved_before = 0.0
    if solver == "fixed-point":
        sol = lv.solve_fixed_point(problem.sigma_y, beta, lam, inits["B"], inits["sigma_w"],
                                   per_n["tol"], per_n["fp_iters"])
    else:
        resume = save = None
        if partial is not None:
            path = partial_path(partial, tasks)
            fingerprint = _fingerprint(problem.sigma_y, beta, lam, *(inits[key] for key in sorted(inits)),
                                       settings=[per_n, first["adamw"], first.get("device", "cpu")])
            resume = _read_partial(path)
            if resume is not None and resume.get("fingerprint") != fingerprint:
                resume = None                   # another batch's or problem's: overwritten at the next save
            solved_before = resume["seconds"] if resume else 0.0
            last_save = time.time()

            def save(step, state):
                nonlocal last_save
                orphaned = _PARENT is not None and os.getppid() != _PARENT
                if time.time() - last_save < PARTIAL_SECONDS and not orphaned:
                    return
                import torch
                with atomic_write(path, "wb") as f:
                    torch.save({**state(), "fingerprint": fingerprint,
                                "seconds": solved_before + time.time() - start}, f)
                last_save = time.time()
                if orphaned:
                    _stop_orphan()
        sol = lv.solve_adamw(problem.sigma_y, beta, lam, inits, per_n["adamw_iters"], per_n["clip_ab"],
                             per_n["clip_l"], device=first.get("device", "cpu"), progress=progress,
                             resume=resume, save=save, **first["adamw"])
    seconds = (solved_before + time.time() - start) / len(tasks)
    metrics = lv.solution_metrics(sol, problem, beta, lam)
    out = []
    for c, task in enumerate(tasks):
        rows = []
        for i in range(k):
            j = c * k + i
            failed = sol["failure"][j]
            if solver == "fixed-point":
                status = "failed" if failed else ("converged" if sol["converged"][j] else "not converged")
            else:
                status = "failed" if failed else "done"
            rows.append({"n": problem.n, "m": task["m"], "s": problem.s, "solver": solver, "beta": task["beta"],
                         "lambda": task["lambda"], "solution": i, **metrics[j], "iterations": int(sol["iterations"][j]),
                         "best_iteration": int(sol["best_iteration"][j]) if "best_iteration" in sol else None,
                         "converged": bool(sol["converged"][j]) if solver == "fixed-point" else None,
                         "status": status, "failure": failed, "cell_seconds": round(seconds, 3)})
        out.append((cell_name(problem.n, solver, task["beta"], task["lambda"]), rows, seconds))
    return out


PARTIAL_SECONDS = 120  # an interrupted AdamW batch loses at most this much solving (a save: ~0.1 s)
_STEPS_DONE = None     # in a worker: the pool's shared array of AdamW steps done, one slot per batch
_PARENT = None         # in a worker: the main process's pid


def _stop_orphan():
    """A worker whose main process was killed (a kill of its pid alone leaves the pool's workers
    running) has nobody to write its cells: it saves its batch (above) and exits, rather than
    solve on for an hour."""
    os._exit(1)


def _worker_setup(steps_done=None):
    """Every matrix here is at most 100 × 100: more threads per process only contend (on 2 busy
    cores, two threads made the β sweep 25× slower); the processes are the parallelism. A
    worker also keeps the shared array its batches report their steps into, and the main
    process's pid, to notice when it is gone (``_stop_orphan``)."""
    global _STEPS_DONE, _PARENT
    import torch
    torch.set_num_threads(1)
    _STEPS_DONE = steps_done
    _PARENT = os.getppid() if steps_done is not None else None


# ----------------------------------------------------------------------------- collapse sweep

def collapse_sweep(draws, cfg, n, lambdas) -> list[dict]:
    """The fixed point on a fine log grid of β for each λ, from the first solution's initial point.

    One solve per λ, so a λ's rows are the same whichever other λ's are swept with it (a
    batched product may round differently for another batch) and a later run can add λ's."""
    from lbvae.linear import solver as lv
    problem, per_n, m = draws.problem, cfg["per_n"][str(n)], cfg["m"]
    grid = np.geomspace(*cfg["sweep_range"], cfg["sweep_points"])
    k = len(grid)
    b0 = np.repeat(draws.fixed_point["B"][:1], k, axis=0)
    w0 = np.repeat(draws.fixed_point["sigma_w"][:1], k, axis=0)
    rows = []
    for lam in lambdas:
        sol = lv.solve_fixed_point(problem.sigma_y, grid, lam, b0, w0, per_n["tol"], per_n["fp_iters"])
        for i, metrics in enumerate(lv.solution_metrics(sol, problem, grid, np.full(k, lam))):
            predicted = lv.predicted_information(problem.sigma_y, m, grid[i], lam).sum()
            rows.append({"n": n, "beta": float(grid[i]), "lambda": float(lam), "kl": metrics["kl"],
                         "i_m": metrics["i_m"], "sap": metrics["sap"], "predicted_kl": predicted,
                         "iterations": int(sol["iterations"][i]), "converged": bool(sol["converged"][i]),
                         "failure": sol["failure"][i]})
    return sorted(rows, key=lambda r: (r["beta"], r["lambda"]))


def update_sweep(path: Path, draws, cfg, n, solve: bool = True) -> list[dict]:
    """The sweep saved in ``path``, with the λ's of this run that it lacks added (``solve``).

    A run over some of the grid's λ's (``--lambdas 2``) adds to the folder's sweep and never
    drops the λ's an earlier run swept: the folder keeps everything it was asked to compute."""
    sweep = read_csv(path) if path.exists() else []
    for r in sweep:
        r["failure"] = r["failure"] or ""
    have = {r["lambda"] for r in sweep}
    missing = [lam for lam in cfg["lambdas"] if lam not in have]
    if missing and solve:
        sweep = sorted(sweep + collapse_sweep(draws, cfg, n, missing), key=lambda r: (r["beta"], r["lambda"]))
        write_csv(path, sweep)
    return sweep


# ----------------------------------------------------------------------------- main

def run(cfg: dict, quiet: bool = False) -> Path:
    """The whole study for resolved settings; returns the results directory.

    A run that solves holds the folder's lock: a second one on the same folder would solve the
    same cells and overwrite the first's partial saves. Under the lock, what killed writes left
    behind is swept. ``--collect`` takes no lock (it only reads cells and writes whole files),
    so it can tabulate a grid that is still running."""
    root = Path(cfg["results_dir"])
    if cfg.get("collect"):
        if not (root / "cells").is_dir():
            waiting = len(list((root / "partial").glob("*.pt")))
            stopped = f" ({waiting} AdamW batch(es) stopped part way in partial/)" if waiting else ""
            raise SettingError(f"--collect: {root} has no cells/ to collect{stopped}; "
                               "run the command without --collect first")
        return _run(cfg, root, quiet)
    try:
        lock = RunLock(root / LOCK, doing="solved").acquire()
    except LockHeld as err:
        raise SettingError(f"{err}; wait for it to end (--collect tabulates it meanwhile) "
                           "or use another --results-dir") from None
    try:
        remove_stale_temporaries(root)
        return _run(cfg, root, quiet, heartbeat=lock.touch)
    finally:
        lock.release()


def _run(cfg: dict, root: Path, quiet: bool, heartbeat=lambda: None) -> Path:
    """``heartbeat`` is called with every refresh of the progress (at least every few seconds
    while cells are solved): the lock's, so a run on another host of a shared filesystem never
    sees a live run's lock as stale (utils.RunLock)."""
    from tqdm import tqdm

    from lbvae.linear import solver as lv
    check_results_dir(root, cfg)
    _worker_setup()
    start = time.time()
    m, s = cfg["m"], cfg["s"]
    draws = lv.draw_study(cfg["n"], m, s, cfg["solutions"], cfg["seed"])
    for n, d in draws.items():
        _save_npz(root / f"Sigma_V_n{n}_m{m}_s{s}.npz", Sigma_V=np.diag(d.problem.sigma_v))
        _save_npz(root / f"Gamma_Sigma_Y_n{n}_m{m}_s{s}.npz", Gamma=d.problem.gamma, Sigma_Y=d.problem.sigma_y)

    cells, partials = root / "cells", root / "partial"
    tasks, grid = [], []
    # Fixed-point cells first: they take seconds, so their tables exist long before AdamW's.
    for solver in [x for x in ("fixed-point", "adamw") if x in cfg["solvers"]]:
        for n in cfg["n"]:
            for beta in cfg["betas"]:
                for lam in cfg["lambdas"]:
                    grid.append((n, solver, beta, lam))
                    if (cells / f"{cell_name(n, solver, beta, lam)}.csv").exists():
                        continue
                    tasks.append(cell_task(draws[n], cfg, solver, beta, lam))
    # AdamW cells of one n go in batches of cells_per_solve; each cell is still written on its own.
    batches, open_batch = [], {}
    for t in tasks:
        key = (t["solver"], t["problem"].n)
        size = cfg.get("cells_per_solve", 1) if t["solver"] == "adamw" else 1
        open_batch.setdefault(key, []).append(t)
        if len(open_batch[key]) == size:
            batches.append(open_batch.pop(key))
    batches += open_batch.values()
    total = len(grid)
    unsolved = [(t["problem"].n, t["solver"], t["beta"], t["lambda"]) for t in tasks]
    if cfg.get("collect"):
        batches, tasks = [], []
    # Each save is read once here (19 MB at n = 100), for the first line and the bar's start.
    waiting = {f: (_read_partial(f) or {}).get("step") for f in sorted(partials.glob("*.pt"))}
    if not quiet:
        doing = (f"collecting them, solving none ({len(unsolved)} not run yet)" if cfg.get("collect")
                 else f"solving {len(tasks)} with {cfg['workers']} worker(s)")
        if waiting:
            doing += (f"; {len(waiting)} AdamW batch(es) stopped part way wait in {partials}/: "
                      + ", ".join(f"{f.stem} at step {'? (unreadable: solved anew)' if step is None else f'{step:,}'}"
                                  for f, step in waiting.items())
                      + (" (a run without --collect resumes them)" if cfg.get("collect")
                         else " (each resumes there when this run solves it)"))
        print(f"{total - len(unsolved)} of {total} cells already done in {root}; {doing}", flush=True)
    workers = min(cfg["workers"], max(1, len(batches)))
    # AdamW cells take minutes (half an hour at n = 100): the bar counts their steps as fractions
    # of a cell, so it moves, and its rate and time left hold, between cells.
    iters = [cfg["per_n"][str(b[0]["problem"].n)]["adamw_iters"] if b[0]["solver"] == "adamw" else None
             for b in batches]
    # Steps a batch solved before it was interrupted are not this run's: they start the bar, so
    # that its rate and time left count only what this run solves.
    finished, saved, solved = 0, {}, set()
    for i, batch in enumerate(batches):
        if iters[i]:
            saved[i] = waiting.get(partial_path(partials, batch)) or 0
    with tqdm(total=len(tasks), desc="cells", unit="cell", disable=quiet or not tasks,
              initial=sum(len(batches[i]) * step / iters[i] for i, step in saved.items()),
              bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}{postfix}]") as bar:
        def show(steps_done: dict):
            heartbeat()
            steps = {**saved, **{i: max(step, saved.get(i, 0)) for i, step in steps_done.items()}}
            bar.n = finished + sum(len(batches[i]) * step / iters[i] for i, step in steps.items()
                                   if iters[i] and i not in solved)
            bar.refresh()

        def done(results, i):
            nonlocal finished
            solved.add(i)
            for name, rows, seconds in results:
                write_csv(cells / f"{name}.csv", rows)
                bar.set_postfix_str(f"{name} {seconds:.0f}s", refresh=False)
                finished += 1
            partial_path(partials, batches[i]).unlink(missing_ok=True)
            show({})
        if workers == 1:
            for i, batch in enumerate(batches):
                done(solve_cells(batch, progress=lambda step, i=i: show({i: step}), partial=partials), i)
        else:
            context = get_context("spawn")
            steps_done = context.Array("q", len(batches), lock=False)
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_setup,
                                     initargs=(steps_done,)) as pool:
                pending = {pool.submit(solve_cells, b, i, None, partials): i for i, b in enumerate(batches)}
                while pending:
                    ready, _ = wait(pending, timeout=5.0, return_when=FIRST_COMPLETED)
                    for future in ready:
                        done(future.result(), pending.pop(future))
                    show({i: steps_done[i] for i in pending.values()})

    with contextlib.suppress(OSError):      # only when empty: no interrupted batch waits there
        partials.rmdir()
    rows = [r for f in sorted(cells.glob("*.csv")) for r in read_csv(f)]
    rows.sort(key=lambda r: (r["n"], r["solver"] != "fixed-point", r["beta"], r["lambda"], r["solution"]))
    write_csv(root / "results.csv", rows)
    summary = summarize(rows)
    write_csv(root / "summary.csv", summary)
    unsolved = [c for c in grid if not (cells / f"{cell_name(*c)}.csv").exists()]
    write_text(root / "summary.txt", summary_text(summary, unsolved))

    figures = []
    for n in sorted({r["n"] for r in rows}):
        if any(r["n"] == n and r["lambda"] == 0 for r in rows):
            figures.append(draw_boxplots(rows, n, m, s, root))
        figures.append(draw_heatmaps(summary, n, m, s, root, [c for c in unsolved if c[0] == n]))
        solvers_figure = draw_solvers(summary, n, m, s, root)
        if solvers_figure:
            figures.append(solvers_figure)
    if cfg["sweep_points"]:
        for n in cfg["n"]:
            # --collect solves nothing, fixed points included: it draws what is swept already.
            sweep = update_sweep(root / f"collapse_sweep_n{n}_m{m}_s{s}.csv", draws[n], cfg, n,
                                 solve=not cfg.get("collect"))
            if sweep:
                figures.append(draw_collapse(sweep, draws[n].problem.sigma_y, n, m, s, root))
    if not quiet:
        pending = f" ({len(unsolved)} of {total} cells not run yet: rerun without --collect)" if unsolved else ""
        print(f"done in {time.time() - start:.0f} s: {len(rows)} solutions in {root / 'results.csv'}, "
              f"tables in {root / 'summary.txt'}, {len(figures)} figures in {root}/{pending}")
    return root


def _save_npz(path: Path, **arrays) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def main(argv=None) -> None:
    try:
        cfg = settings_from_args(argv)
        run(cfg)
    except SettingError as e:
        print(f"main_linear.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
