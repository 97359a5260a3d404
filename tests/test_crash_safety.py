"""Kill a training process at random moments; the rerun must finish with exactly the
weights and metrics of a run that was never interrupted."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

STEPS = 60
SCRIPT = [sys.executable, str(Path(__file__).with_name("tiny_data.py"))]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent)])}


def _start(run_dir):
    return subprocess.Popen(SCRIPT + [str(run_dir), str(STEPS)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]


def _kill_after_next_checkpoint(proc, checkpoint: Path, delay: float) -> int | None:
    """SIGKILL ``proc`` ``delay`` seconds after a new checkpoint lands (so each trial
    makes progress and dies at a random step); the checkpointed step, or None if the
    process finished first."""
    last = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if checkpoint.exists() and checkpoint.stat().st_mtime_ns != last:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return torch.load(checkpoint, weights_only=True)["step"]
        time.sleep(0.005)
    _finish(proc)
    return None


def _result(run_dir):
    weights = torch.load(next(Path(run_dir).glob("betavae_*.pth")), weights_only=True)
    row = json.loads((Path(run_dir) / "metrics.json").read_text())["row"]
    return weights, {k: v for k, v in row.items() if k != "wall_time_s"}


def test_sigkill_at_random_moments_then_rerun_is_bit_identical(tmp_path):
    _finish(_start(tmp_path / "whole"))
    reference_weights, reference_row = _result(tmp_path / "whole")

    rng = np.random.default_rng(0)
    run_dir = tmp_path / "killed"
    steps_at_kill = []
    for _ in range(3):          # kill the same run again and again, as a preempted sweep would be
        step = _kill_after_next_checkpoint(_start(run_dir), run_dir / "checkpoint.pt", rng.uniform(0, 0.15))
        if step is None:
            break
        steps_at_kill.append(step)
    print(f"SIGKILLed after checkpoints at steps {steps_at_kill} of {STEPS}")
    assert len(steps_at_kill) >= 2, f"the run finished before it could be killed twice: {steps_at_kill}"
    assert not (run_dir / "metrics.json").exists()
    _finish(_start(run_dir))

    weights, row = _result(run_dir)
    assert row == reference_row
    assert weights.keys() == reference_weights.keys()
    for name in weights:
        assert torch.equal(weights[name], reference_weights[name]), name
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    reference = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == reference["step"] == STEPS
    for name, value in reference["optimizer"]["state"].items():
        assert torch.equal(checkpoint["optimizer"]["state"][name]["exp_avg_sq"], value["exp_avg_sq"])
    assert torch.equal(checkpoint["generator"], reference["generator"])
