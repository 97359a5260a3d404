"""Every path a GPU user takes, measured in one command: a Markdown report and the raw logs.

    python scripts/gpu_check.py gpu_report/                       # on a GPU machine: about 8 minutes
    python scripts/gpu_check.py gpu_report/ --quick --device cpu  # the same steps, tiny, on a CPU (< 1 minute idle)

Steps, each a separate process with its own timeout, so that one failure or hang does not
eat the budget of the others:
1. ``throughput``: ``benchmarks/throughput.py``: the naive loop against packs of 1/8/32/64,
   fp32 and bf16: images/s, peak GPU memory and the projected wall time of the paper's grid;
2. ``beta demo`` and ``lambda demo``: ``main_beta.py --demo`` then ``main_lambda.py --demo`` on
   the device, into a temporary results folder: exit codes and wall times;
3. ``cpu reference``: the β demo's dSprites runs again on the CPU, and the device's rows compared
   with them metric by metric (largest relative difference);
4. ``resident data``: a full-size uint8 array of each dataset's shape on the device, batches
   gathered and converted inside the step, as the engine does: batches/s;
5. ``linear``: ``main_linear.py --device`` on the AdamW grid, every (β, λ) cell of an n in one
   batch, with few steps: seconds per step and the projected full grid.

Before anything runs it checks what it needs (CUDA, free GPU memory, free disk) and says in one
line what is missing. The report (``report.md`` in the folder given) names each step that
failed and why, with its last lines of output; the exit code is 1 if any step failed.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
# Full-size shapes of the three datasets (images, channels); 64 × 64 pixels each.
FULL_SHAPES = {"dsprites": (737_280, 1), "shapes3d": (480_000, 3), "mpi3d": (1_036_800, 3)}
NEED_GPU_GIB = 16          # the largest resident array (MPI3D, 12.7 GB) and a model beside it
NEED_DISK_GIB = 5          # the demos' results folders
METRICS = ("train_window_nll", "heldout_recon", "mig", "sap", "i_m")
# Tiny settings of --quick: every code path, seconds of work.
QUICK_RUN = ["--datasets", "dsprites", "--beta", "1", "4", "--seeds", "0", "--steps", "4", "--lambda", "0", "2",
             "--lambda-steps", "2", "--log-interval", "2", "--checkpoint-interval", "2", "--loss-window", "2",
             "--metric-train-points", "200", "--metric-test-points", "100", "--heldout-eval-points", "50"]
LINEAR_ITERS = 200         # AdamW steps per cell on the GPU: enough to time a step, not to converge
QUICK_LINEAR = ["--n", "6", "--m", "2", "--s", "2", "--betas", "4", "8", "--lambdas", "0", "1", "--solutions", "2",
                "--adamw-iters", "5", "--sweep-points", "0"]


@dataclass
class Step:
    name: str
    command: list[str]
    timeout_s: float
    summary: callable = None            # (step, output) -> one line for the report's table
    status: str = "not run"
    seconds: float = 0.0
    output: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)


def steps_for(args, work: Path) -> list[Step]:
    device, quick = args.device, args.quick
    results, reference = work / "device_results", work / "cpu_results"
    demo_flags = ["--demo", "--device", device, "--results-dir", str(results)] + (QUICK_RUN if quick else [])
    ref_flags = (["--demo", "--device", "cpu", "--results-dir", str(reference)]
                 + (QUICK_RUN if quick else ["--datasets", "dsprites"]))
    throughput = [PY, "benchmarks/throughput.py", "--device", device]
    throughput += (["--datasets", "dsprites", "--packs", "1", "2", "--seconds", "0.2", "--images", "256"] if quick
                   else ["--packs", "1", "8", "32", "64", "--seconds", "5"])
    linear = [PY, "main_linear.py", "--device", device, "--solvers", "adamw", "--workers", "1",
              "--results-dir", str(work / "linear_results")]
    linear += QUICK_LINEAR if quick else ["--n", "50", "100", "--adamw-iters", str(LINEAR_ITERS), "--sweep-points", "0"]
    scale = 0.5 if quick else 1.0             # quick: room for a CPU that other jobs share
    return [
        Step("throughput fp32", throughput, 150 * scale, _throughput),
        Step("throughput bf16", throughput + ["--precision", "bf16"], 120 * scale, _throughput),
        Step("beta demo", [PY, "main_beta.py", *demo_flags], 150 * scale, _finished),
        Step("lambda demo", [PY, "main_lambda.py", *demo_flags], 90 * scale, _finished),
        Step("cpu reference", [PY, "main_beta.py", *ref_flags], 150 * scale,
             lambda step, out: compare_rows(results / "betavae_results", reference / "betavae_results")),
        Step("resident data", [PY, __file__, "--resident", device, "--quick" if quick else "--full"], 60 * scale,
             _resident),
        Step("linear", linear, 120 * scale, lambda step, out: linear_summary(work / "linear_results", args)),
    ]


def _throughput(step: Step, output: str) -> str:
    """Per dataset shape: the naive loop's images/s and the best pack's, with its peak GPU memory."""
    best = {}
    for name, loop, rate, peak in re.findall(r"^(\w+)\s+(naive|engine P=\d+)\s+(\d+)\s+\S+\s+(\S+)\s*$",
                                             output, re.M):
        if loop == "naive":
            best[name] = {"naive": int(rate)}
        elif int(rate) > best[name].get("rate", 0):
            best[name].update(rate=int(rate), pack=loop.split("=")[1], peak=peak)
    if not best:
        raise ValueError("no rate table in its output")
    return "; ".join(f"{name}: naive {b['naive']} img/s, best engine {b.get('rate', 0)} img/s (P={b.get('pack')}, "
                     f"peak GPU {b.get('peak')} MiB)" for name, b in best.items())


def _resident(step: Step, output: str) -> str:
    rates = re.findall(r"^(\w+): .*\(([\d.]+) GiB\): ([\d,]+) batches", output, re.M)
    if len(rates) != len(FULL_SHAPES):
        raise ValueError("not every dataset shape reported a rate")
    return "; ".join(f"{name} ({gib} GiB): {rate} batches/s" for name, gib, rate in rates)


def _finished(step: Step, output: str) -> str:
    """The demo's closing line, without its temporary paths."""
    found = re.search(r"done: (\d+) runs finished \((\d+) in grid\) in (\d+) s", output)
    if not found:
        raise ValueError("no 'done:' line in its output")
    return f"{found[1]} of {found[2]} runs finished in {found[3]} s"


def linear_summary(root: Path, args) -> str:
    """Seconds per AdamW step per n (the batch's time over its steps) and the full grid they project."""
    from lbvae.linear import grid as main_linear
    with open(root / "results.csv") as f:
        rows = list(csv.DictReader(f))
    per_n = {}
    for r in rows:
        cell = (r["n"], r["beta"], r["lambda"])
        per_n.setdefault(r["n"], {})[cell] = float(r["cell_seconds"])
    iters = int(QUICK_LINEAR[QUICK_LINEAR.index("--adamw-iters") + 1]) if args.quick else LINEAR_ITERS
    parts, total = [], 0.0
    for n, cells in sorted(per_n.items(), key=lambda kv: int(kv[0])):
        step = sum(cells.values()) / iters                     # every cell of this n, one step
        full = main_linear.PER_N[50 if int(n) <= 75 else 100]["adamw_iters"]
        grid = step * full * (25 / len(cells))                  # the study's 5 × 5 (β, λ) cells
        total += grid
        parts.append(f"n={n}: {1e3 * step:.1f} ms per step of {len(cells)} cells; full grid {grid / 60:.1f} min")
    return "; ".join(parts) + f"; both: {total / 60:.1f} min"


def compare_rows(device_root: Path, cpu_root: Path) -> str:
    """Largest relative difference per metric between the device's and the CPU's rows of the
    same (dataset, β, seed)."""
    def rows(root):
        with open(root / "results.csv") as f:
            return {(r["dataset"], r["beta"], r["seed"]): r for r in csv.DictReader(f) if r["status"] == "done"}
    dev, cpu = rows(device_root), rows(cpu_root)
    shared = sorted(dev.keys() & cpu.keys())
    if not shared:
        raise ValueError("no run finished on both the device and the CPU")
    worst = {}
    for key in shared:
        for m in METRICS:
            a, b = float(dev[key][m]), float(cpu[key][m])
            worst[m] = max(worst.get(m, 0.0), abs(a - b) / max(abs(b), 1e-12))
    return (f"{len(shared)} runs on both; largest relative difference device vs CPU: "
            + ", ".join(f"{m} {v:.1e}" for m, v in worst.items()))


def resident(device_name: str, quick: bool) -> None:
    """A uint8 array of each dataset's full shape on the device (random bytes: the values do not
    matter for speed), then packs of 32 batches of 64 gathered by random index and converted to
    float, as the engine's step does: batches/s and the device memory the array takes."""
    import torch
    device = torch.device(device_name)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    gen = torch.Generator(device=device).manual_seed(0)
    for name, (count, channels) in FULL_SHAPES.items():
        count = 2048 if quick else count
        images = torch.empty((count, channels, 64, 64), dtype=torch.uint8, device=device)
        images.random_(0, 256, generator=gen)
        index = torch.randint(0, count, (32, 64), device=device, generator=gen)
        for _ in range(3):
            images[index].float().div_(255)
        sync()
        start, batches = time.perf_counter(), 0
        while time.perf_counter() - start < (0.2 if quick else 2.0):
            index = torch.randint(0, count, (32, 64), device=device, generator=gen)
            images[index].float().div_(255)
            batches += 32
            sync()
        rate = batches / (time.perf_counter() - start)
        print(f"{name}: {count:,} × {channels} × 64 × 64 uint8 on {device_name} "
              f"({images.numel() / 2 ** 30:.1f} GiB): {rate:,.0f} batches of 64/s gathered and converted", flush=True)
        del images
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print("resident data: every dataset shape fits and gathers")


def preflight(args, out: Path) -> str | None:
    """What is missing for the check, as one line; None when everything is there."""
    free_disk = shutil.disk_usage(out if out.exists() else out.parent).free / 2 ** 30
    if not args.quick and free_disk < NEED_DISK_GIB:
        return f"gpu_check: {free_disk:.1f} GiB free on the disk of {out}; it needs {NEED_DISK_GIB} GiB"
    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            return "gpu_check: --device cuda, but torch sees no CUDA device (run --quick --device cpu without one)"
        free, _ = torch.cuda.mem_get_info()
        if not args.quick and free / 2 ** 30 < NEED_GPU_GIB:
            return f"gpu_check: {free / 2 ** 30:.1f} GiB free on the GPU; the full-size data needs {NEED_GPU_GIB} GiB"
    return None


def run_step(step: Step, logs: Path) -> None:
    start = time.perf_counter()
    log = logs / (step.name.replace(" ", "_") + ".log")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(step.command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=step.timeout_s, env=env)
        step.output, code = done.stdout, done.returncode
        step.status = "passed" if code == 0 else "failed"
        step.note = f"exit {code}"
    except subprocess.TimeoutExpired as err:
        out = err.stdout or b""
        step.output = out.decode(errors="replace") if isinstance(out, bytes) else out
        step.status, step.note = "failed", f"timed out after {step.timeout_s:.0f} s"
    step.seconds = time.perf_counter() - start
    log.write_text(f"$ {' '.join(step.command)}\n{step.output}")
    if step.status == "passed" and step.summary:
        try:
            step.note = step.summary(step, step.output)
        except (OSError, ValueError, KeyError) as err:
            step.status, step.note = "failed", f"ran, but its results could not be read: {err}"


def report(steps: list[Step], args, out: Path, started: float) -> Path:
    import platform
    lines = [f"# GPU check: {'quick, ' if args.quick else ''}device {args.device}", "",
             f"`python scripts/gpu_check.py {out} {'--quick ' if args.quick else ''}--device {args.device}` on "
             f"{platform.node()}, {time.strftime('%Y-%m-%d %H:%M')}; {time.time() - started:.0f} s in all. "
             "Raw output of each step: `logs/`.", "",
             "| step | status | wall s | result |", "|---|---|---|---|"]
    for s in steps:
        note = s.note.replace("|", "\\|")
        lines.append(f"| {s.name} | {'**failed**' if s.status == 'failed' else s.status} | {s.seconds:.1f} | {note} |")
    failed = [s for s in steps if s.status == "failed"]
    lines += ["", f"{len(steps) - len(failed)} of {len(steps)} steps passed."
              + (f" Failed: {', '.join(s.name for s in failed)}." if failed else ""), ""]
    for s in steps:
        tail = [ln for ln in s.output.replace("\r", "\n").splitlines() if ln.strip()][-15:]
        lines += [f"## {s.name}: {s.status}", "", f"`{' '.join(Path(c).name if c == PY else c for c in s.command)}`",
                  "", "```", *tail, "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None, steps: list[Step] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", help="folder for report.md and logs/")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny settings: the script itself, in under a minute")
    parser.add_argument("--resident", metavar="DEVICE", help=argparse.SUPPRESS)     # the resident-data step
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.resident:
        resident(args.resident, quick=not args.full)
        return 0
    if args.out is None:
        parser.error("give the folder for the report, e.g. gpu_report/")
    missing = preflight(args, args.out)
    if missing:
        print(missing)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(exist_ok=True)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        steps = steps if steps is not None else steps_for(args, Path(work))
        for step in steps:
            print(f"{step.name} ...", end=" ", flush=True)
            run_step(step, args.out / "logs")
            print(f"{step.status} in {step.seconds:.0f} s: {step.note}", flush=True)
        path = report(steps, args, args.out, started)
    failed = sum(s.status == "failed" for s in steps)
    print(f"{len(steps) - failed} of {len(steps)} steps passed; report in {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
