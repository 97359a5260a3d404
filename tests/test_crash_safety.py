"""Kill a training process at random moments, some of them inside a file write; the
rerun must finish with exactly the files of a run that was never interrupted."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from utils import TEMPORARY_NAME

STEPS = 60
SCRIPT = [sys.executable, str(Path(__file__).with_name("tiny_data.py"))]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent)])}
TIMINGS = ("wall_time_s", "images_per_s_per_run")


def _start(run_dir):
    return subprocess.Popen(SCRIPT + [str(run_dir), str(STEPS)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]


def _kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _started(proc, run_dir: Path) -> float:
    """Wait until ``proc`` holds the run's lock (start-up done); the time then."""
    deadline = time.monotonic() + 120
    while not (run_dir / "lock").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run never started"
        time.sleep(0.001)
    return time.monotonic()


def _kill_inside_the_write_of(proc, run_dir: Path, target: str, nth: int = 1) -> bool:
    """SIGKILL ``proc`` the moment the temporary file of its ``nth`` seen atomic write of a
    file whose name starts with ``target`` shows up in the run's folder; False if it
    finished first."""
    seen = set()
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            names = os.listdir(run_dir)
        except FileNotFoundError:
            names = []
        seen |= {n for n in names if (m := TEMPORARY_NAME.match(n)) and m["target"].startswith(target)}
        if len(seen) >= nth:
            _kill(proc)
            return True
        time.sleep(0.0005)
    _finish(proc)
    return False


def _kill_after(proc, seconds: float) -> bool:
    """SIGKILL ``proc`` after ``seconds``: training, evaluation or writing, any moment;
    False if it finished first."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return True
    _finish(proc)
    return False


def _step(run_dir: Path) -> int | None:
    checkpoint = run_dir / "checkpoint.pt"
    return torch.load(checkpoint, weights_only=True)["step"] if checkpoint.exists() else None


def _result(run_dir):
    weights = torch.load(next(Path(run_dir).glob("betavae_*.pth")), weights_only=True)
    row = json.loads((Path(run_dir) / "metrics.json").read_text())["row"]
    log = [line.split(",") for line in (Path(run_dir) / "train_log.csv").read_text().splitlines()]
    keep = [i for i, column in enumerate(log[0]) if column not in TIMINGS]
    return weights, {k: v for k, v in row.items() if k not in TIMINGS}, [[r[i] for i in keep] for r in log]


def test_sigkill_at_random_moments_and_inside_writes_then_rerun_is_identical(tmp_path):
    proc = _start(tmp_path / "whole")
    started = _started(proc, tmp_path / "whole")
    _finish(proc)
    run_s = time.monotonic() - started                   # training, evaluation and writing
    reference_weights, reference_row, reference_log = _result(tmp_path / "whole")

    rng = np.random.default_rng(0)
    run_dir = tmp_path / "killed"
    # A preempted sweep: the same run killed again and again, inside the writes of each
    # kind of file and at random moments, each rerun resuming where the last one got.
    plan = ["checkpoint.pt", None, "train_log.csv", None, "checkpoint.pt", "betavae_", None, "metrics.json"]
    landed = []
    for target in plan:
        proc = _start(run_dir)
        started = _started(proc, run_dir)
        if target is None:
            seconds = rng.uniform(0, run_s)
            killed = _kill_after(proc, seconds)
            where = f"{time.monotonic() - started:.2f} s after start-up"
        else:
            nth = int(rng.integers(1, 4)) if target in ("checkpoint.pt", "train_log.csv") else 1
            killed = _kill_inside_the_write_of(proc, run_dir, target, nth)
            where = f"inside write {nth} of {target}"
        landed.append(f"{where} (checkpoint at step {_step(run_dir)})" if killed else f"none ({where}): finished")
        if (run_dir / "metrics.json").exists():
            break
    print("SIGKILL landed: " + "; ".join(landed))
    assert sum("inside" in s and "finished" not in s for s in landed) >= 3, landed
    assert sum("after start-up" in s and "finished" not in s for s in landed) >= 2, landed
    _finish(_start(run_dir))       # the rerun that completes the run

    weights, row, log = _result(run_dir)
    assert row == reference_row and log == reference_log
    assert weights.keys() == reference_weights.keys()
    for name in weights:
        assert torch.equal(weights[name], reference_weights[name]), name
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    reference = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == reference["step"] == STEPS
    for name, value in reference["optimizer"]["state"].items():
        assert torch.equal(checkpoint["optimizer"]["state"][name]["exp_avg_sq"], value["exp_avg_sq"])
    assert torch.equal(checkpoint["generator"], reference["generator"])
    # Exactly the files an uninterrupted run leaves: no temporaries, no lock.
    assert sorted(os.listdir(run_dir)) == sorted(os.listdir(tmp_path / "whole"))
