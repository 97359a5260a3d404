"""Diverged runs are marked failed without stopping the sweep; two processes never
train the same run; stale locks from dead processes are taken over."""
import dataclasses
import socket
import subprocess
import sys
import time

import torch

from config import Config
from lbvae.pipeline import engine, family, runs, study
from test_crash_safety import ENV, SCRIPT
from tiny_data import TINY, Squares, tiny_spec


def test_nan_marks_the_run_failed_and_the_sweep_goes_on(tmp_path, monkeypatch):
    cfg = Config(**TINY, datasets=("dsprites",), pack_size=2, results_dir=str(tmp_path / "out"))
    # Both runs train in one pack; only the β=4 run diverges, at its steps 8-10.
    specs = [tiny_spec(tmp_path / "diverges", 20, seed=1),
             dataclasses.replace(tiny_spec(tmp_path / "fine", 20, seed=2), beta=5.0)]
    monkeypatch.setattr(family.datasets, "load_dataset", lambda *a, **k: Squares())
    real_loss, calls = engine.lambda_beta_loss, {"n": 0}

    def loss_that_diverges_in_the_first_run(logits, x, mu, logvar, beta, lam):
        terms = real_loss(logits, x, mu, logvar, beta, lam)
        if float(beta) == 4.0:
            calls["n"] += 1
            if 8 <= calls["n"] <= 10:         # its steps 8-10; the pack checks at step 10
                terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(engine, "lambda_beta_loss", loss_that_diverges_in_the_first_run)
    rows = study.run_grid(specs, cfg)
    assert [r["status"] for r in rows] == ["failed", "done"]
    assert rows[0]["steps"] == 8 and "non-finite loss at step 8" in rows[0]["reason"]
    saved = torch.load(tmp_path / "diverges" / runs.CHECKPOINT, weights_only=True)
    assert saved["step"] == 5                  # the last checkpoint before the divergence
    assert all(torch.isfinite(v).all() for v in saved["model"].values())

    study.summarize(rows, specs, cfg, "beta")
    assert "failed" in (tmp_path / "out" / "betavae_results" / "results.csv").read_text()
    assert "1 failed run(s)" in (tmp_path / "out" / "betavae_results" / "summary.txt").read_text()

    assert len(rows) == 2 and rows[1]["pack_size"] == 2      # the healthy run went on in its pack
    monkeypatch.setattr(engine, "lambda_beta_loss", real_loss)
    assert [r["status"] for r in study.run_grid(specs, cfg)] == ["failed", "done"]   # not retried
    assert [r["status"] for r in study.run_grid(specs, cfg, retry_failed=True)] == ["done", "done"]
    assert not (tmp_path / "diverges" / runs.FAILED).exists()


def test_second_process_skips_a_run_that_is_being_trained(tmp_path):
    first = subprocess.Popen(SCRIPT + [str(tmp_path), "400"], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / runs.LOCK).exists():
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
        time.sleep(0.01)
    second = subprocess.run(SCRIPT + [str(tmp_path), "400"], env=ENV, capture_output=True, text=True,
                            timeout=120)
    still_training = first.poll() is None
    first.kill()
    first.wait()
    assert second.returncode == 0 and "skipped" in second.stdout, second.stderr[-2000:]
    assert "is being trained by pid" in second.stdout + second.stderr
    assert still_training


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / runs.LOCK).write_text(f"{socket.gethostname()} {dead.pid}")
    row, = study.run_pack([tiny_spec(tmp_path, 5)], Config(**TINY), Squares(), torch.device("cpu"))
    assert row["status"] == "done" and not (tmp_path / runs.LOCK).exists()


def test_claiming_a_run_removes_its_interrupted_writes_in_every_subfolder(tmp_path):
    spec = tiny_spec(tmp_path / "run", 4)
    leftovers = [spec.run_dir / ".checkpoint.pt.abcd1234.tmp", spec.run_dir / "samples" / ".step_5.png.x1y2z3w4.tmp"]
    kept = [spec.run_dir / "notes.txt", spec.run_dir / "samples" / "step_4.png", spec.run_dir / "checkpoint.tmp"]
    for path in leftovers + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    with runs.Claim([spec]):
        pass
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in kept)       # only names an atomic write gives its temporaries
