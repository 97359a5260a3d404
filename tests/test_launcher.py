"""The Slurm launcher: submit → run → collect through submitit's local executor, and the
bookkeeping around it (status counts, chunks, what a rerun submits, the λ stage's wait
for β jobs, one-line errors) on fabricated results trees with a stand-in executor."""
import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from config import Config
from lbvae.pipeline import launcher, runs, study
from lbvae.pipeline.runs import FAILED, METRICS

# 2 runs of a few steps on one stand-in dataset; figures off (tested in test_pipeline).
FAST = ["--demo", "--datasets", "dsprites", "--beta", "1", "4", "--seeds", "0", "--steps", "4",
        "--log-interval", "2", "--checkpoint-interval", "2", "--loss-window", "2", "--metric-train-points", "200",
        "--metric-test-points", "100", "--heldout-eval-points", "20", "--device", "cpu", "--no-figures"]


def test_local_executor_submit_run_collect(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))    # submit() extends it
    argv = FAST + ["--results-dir", str(tmp_path), "--launcher", "submitit-local", "--gpus-per-job", "0",
                   "--runs-per-job", "1"]
    root = study.main("beta", argv)
    out = capsys.readouterr().out
    assert "submitted 2 runs as 2 job(s)" in out and "collected 2 of 2 runs" in out, out

    with open(root / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["beta"], r["status"]) for r in table] == [("1.0", "done"), ("4.0", "done")]
    # The local run's columns, then the run-defining settings read from each run's config.json.
    assert list(table[0]) == study.RESULT_COLUMNS + [c for c in runs.setting_columns("beta").values()
                                                     if c not in study.RESULT_COLUMNS]
    assert table[0]["config_steps"] == "4" and table[0]["precision"] == "fp32"
    run = root / "dsprites" / "beta_4" / "seed_0"
    for name in ("config.json", "checkpoint.pt", "betavae_beta_4_seed_0.pth", "train_log.csv", METRICS):
        assert (run / name).exists(), name
    assert not (run / runs.LOCK).exists()
    jobs = launcher.read_registry(root)
    assert [j["runs"] for j in jobs] == [["dsprites/beta_1/seed_0"], ["dsprites/beta_4/seed_0"]]
    for job in jobs:                                          # each job's log in the known folder
        log = Path(job["stdout"])
        assert log.parent == root / "slurm" / "logs" and "1 done, 0 failed" in log.read_text()

    study.main("beta", argv)                                  # a rerun submits nothing
    assert "nothing to submit" in capsys.readouterr().out
    assert len(launcher.read_registry(root)) == 2
    study.main("beta", FAST + ["--results-dir", str(tmp_path), "--status"])
    assert "2 runs: done 2, running 0, failed 0, pending 0" in capsys.readouterr().out


# --- fabricated trees ------------------------------------------------------------------------
def grid(tmp_path, stage="beta", **changes):
    cfg = Config(source="standin", datasets=("dsprites", "shapes3d"), betas=(1.0, 4.0), lambdas=(0.0, 2.0),
                 seeds=(0, 1, 2), results_dir=str(tmp_path), demo=True, figures=False, device="cpu")
    cfg = cfg.replace(**changes)
    specs = study.beta_specs(cfg) if stage == "beta" else study.lambda_specs(cfg)
    return study.launcher_stage(stage, cfg, specs, argv=["--demo"])


def mark(spec, state):
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    if state == "done":
        (spec.run_dir / METRICS).write_text("{}")
    elif state == "failed":
        (spec.run_dir / FAILED).write_text("{}")
    elif state == "running":                                   # held by this live process
        (spec.run_dir / runs.LOCK).write_text(f"{socket.gethostname()} {os.getpid()}")
    elif state == "dead lock":                                 # a killed trainer's lock
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (spec.run_dir / runs.LOCK).write_text(f"{socket.gethostname()} {dead.pid}")
    elif state == "old remote lock":                           # another node, no heartbeat for 2 h
        (spec.run_dir / runs.LOCK).write_text("elsewhere 123")
        os.utime(spec.run_dir / runs.LOCK, (0, os.path.getmtime(spec.run_dir / runs.LOCK) - 7200))
    elif state == "fresh remote lock":
        (spec.run_dir / runs.LOCK).write_text("elsewhere 123")


def test_status_counts_runs_from_the_results_tree(tmp_path, capsys):
    stage = grid(tmp_path)
    s = stage.specs
    for spec, state in zip(s, ["done", "done", "failed", "running", "dead lock", "old remote lock",
                               "fresh remote lock", "done"]):
        mark(spec, state)
    (s[3].run_dir / "checkpoint.pt").write_bytes(b"")          # partly trained: still running or pending
    counts = launcher.print_status(stage)
    assert dict(counts) == {"done": 3, "failed": 1, "running": 2, "pending": 6}
    out = capsys.readouterr().out
    assert "12 runs: done 3, running 2, failed 1, pending 6" in out
    assert f"failed: {s[2].name}" in out


def test_chunks_hold_one_dataset_each_in_grid_order(tmp_path):
    specs = grid(tmp_path).specs                               # 2 datasets × 6 runs
    chunks = launcher.chunk_runs(specs, 4)
    assert [len(c) for c in chunks] == [4, 2, 4, 2]
    assert all(len({s.dataset for s in c}) == 1 for c in chunks)
    assert [s for c in chunks for s in c] == specs
    assert [len(c) for c in launcher.chunk_runs(specs, 100)] == [6, 6]
    assert [len(c) for c in launcher.chunk_runs(specs[:3], 1)] == [1, 1, 1]


class FakeJob:
    def __init__(self, job_id, folder):
        self.job_id = job_id
        self.paths = type("P", (), {"stdout": Path(folder) / f"{job_id}_0_log.out",
                                    "stderr": Path(folder) / f"{job_id}_0_log.err"})()


class FakeExecutor:
    """Records what would be submitted to Slurm; array 500, then job 501, ..."""
    made = []

    def __init__(self, launcher_name, folder, opts, name, dependency=None, collect=False):
        self.folder, self.name, self.dependency, self.collect = folder, name, dependency, collect
        self.chunks, self.fn = None, None
        FakeExecutor.made.append(self)

    def map_array(self, fn, chunks):
        self.fn, self.chunks = fn, list(chunks)
        return [FakeJob(f"500_{i}", self.folder) for i in range(len(self.chunks))]

    def submit(self, fn, *args):
        self.fn = fn
        return FakeJob("501", self.folder)


@pytest.fixture
def fake_slurm(monkeypatch):
    """submit() against a queue the test controls: {job id: (state, reason)}."""
    FakeExecutor.made = []
    queue = {}
    monkeypatch.setattr(launcher, "make_executor", FakeExecutor)
    monkeypatch.setattr(launcher, "check_slurm", lambda partition: None)
    monkeypatch.setattr(launcher, "queue_states", lambda: queue)
    return queue


def test_rerun_submits_only_incomplete_runs(tmp_path, fake_slurm, capsys):
    stage = grid(tmp_path)
    s = stage.specs
    for spec, state in zip(s, ["done", "failed", "running", "dead lock"]):
        mark(spec, state)
    launcher.add_to_registry(stage.root, [
        {"job_id": "40_0", "kind": "train", "launcher": "slurm", "runs": ["dsprites/beta_4/seed_1"],
         "stderr": "40_0_0_log.err"},                                                              # queued
        {"job_id": "41_0", "kind": "train", "launcher": "slurm", "runs": ["dsprites/beta_4/seed_2"],
         "stderr": "41_0_0_log.err"}])                                                             # gone
    fake_slurm["40_0"] = ("PENDING", "Priority")
    fake_slurm["41_0"] = ("FAILED", "NonZeroExitCode")
    launcher.submit(stage, launcher.JobOptions(runs_per_job=3, gpus_per_job=0), launcher="slurm")
    train, collector = FakeExecutor.made
    submitted = [spec for chunk in train.chunks for spec in chunk]
    assert submitted == [s[3], s[5]] + s[6:]                  # not done, failed, running, or queued in 40_0
    assert train.dependency is None and collector.dependency == "afterany:500"
    assert isinstance(train.fn, launcher.TrainChunk)
    out = capsys.readouterr().out
    assert ("not submitted: 1 finished, 1 failed (--retry-failed retrains them), 1 being trained, "
            "1 already queued") in out
    assert "python main_beta.py --demo --status" in out
    jobs = launcher.read_registry(stage.root)
    assert [j["job_id"] for j in jobs] == ["40_0", "41_0", "500_0", "500_1", "500_2", "501"]
    assert jobs[2]["runs"] == ["dsprites/beta_4/seed_0", "dsprites/beta_4/seed_2"]

    launcher.print_status(stage)                               # the job that failed points to its log
    out = capsys.readouterr().out
    assert "job 41_0 failed with 1 run(s) unfinished; log:" in out and "1 pending" in out


def test_lambda_stage_waits_for_the_queued_beta_jobs(tmp_path, fake_slurm, capsys):
    beta = grid(tmp_path, datasets=("dsprites",))
    launcher.add_to_registry(beta.root, [
        {"job_id": "77_0", "kind": "train", "launcher": "slurm", "runs": [
            launcher._rel(s.run_dir, beta.root) for s in beta.specs[:3]]},
        {"job_id": "78_0", "kind": "train", "launcher": "slurm", "runs": [
            launcher._rel(s.run_dir, beta.root) for s in beta.specs[3:]]}])
    fake_slurm.update({"77_0": ("RUNNING", "None"), "78_0": ("PENDING", "Resources")})
    lam = grid(tmp_path, "lambda", datasets=("dsprites",))
    launcher.submit(lam, launcher.JobOptions(runs_per_job=4, gpus_per_job=0), launcher="slurm")
    assert FakeExecutor.made[0].dependency == "afterok:77:78"
    assert "waiting for β jobs (afterok:77:78)" in capsys.readouterr().out

    fake_slurm.clear()                                         # the β jobs left without writing the weights
    with pytest.raises(SystemExit) as err:
        launcher.submit(grid(tmp_path / "other", "lambda"), launcher.JobOptions(), launcher="slurm")
    message = str(err.value)
    assert "12 β checkpoint(s) missing and no queued job will write them" in message
    assert "betavae_beta_1_seed_0.pth" in message and "(and 9 more)" in message
    assert "python main_beta.py --demo --launcher slurm" in message


def test_requeue_resubmits_the_same_chunk_and_drops_this_process_locks(tmp_path):
    stage = grid(tmp_path)
    mine, other = stage.specs[:2]
    mark(mine, "running")
    mark(other, "fresh remote lock")
    job = launcher.TrainChunk(stage.run, stage.cfg, runs_per_job=2, cpus=1)
    again = job.checkpoint([mine, other])
    assert again.function is job and again.args == ([mine, other],)
    assert not (mine.run_dir / runs.LOCK).exists() and (other.run_dir / runs.LOCK).exists()


def test_one_line_errors(tmp_path, monkeypatch):
    stage = grid(tmp_path)
    monkeypatch.setattr(launcher, "submitit", None)
    with pytest.raises(SystemExit, match="submitit is not installed: pip install"):
        launcher.submit(stage, launcher.JobOptions())
    with pytest.raises(SystemExit, match="only used with --launcher slurm"):
        study.main("beta", ["--demo", "--results-dir", str(tmp_path), "--partition", "gpu"])

    monkeypatch.setattr(launcher.shutil, "which", lambda tool: None)
    with pytest.raises(SystemExit, match="sbatch not found: .* scripts/slurm_one_node.sh"):
        launcher.check_slurm("gpu")
    monkeypatch.setattr(launcher.shutil, "which", lambda tool: "/usr/bin/" + tool)
    monkeypatch.setattr(launcher.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 0, "debug*\nbig\n", ""))
    with pytest.raises(SystemExit, match="unknown partition 'gpu': this cluster has debug\\*, big"):
        launcher.check_slurm("gpu")
    launcher.check_slurm("big")
    with pytest.raises(SystemExit, match="--runs-per-job is 0: must be >= 1"):
        study.main("beta", ["--demo", "--results-dir", str(tmp_path), "--launcher", "slurm", "--runs-per-job", "0"])


def test_hints_echo_the_grid_flags_without_launcher_flags():
    argv = ["--demo", "--launcher", "slurm", "--partition=gpu", "--runs-per-job", "8", "--beta", "1", "4",
            "--status", "--slurm-arg", "qos=x", "--seeds", "0"]
    assert launcher.config_argv(argv) == ["--demo", "--beta", "1", "4", "--seeds", "0"]


def test_main_mine_plugs_into_the_launcher(tmp_path, capsys):
    from lbvae.mine import study as mine_study
    root = mine_study.main(["--demo", "--results-dir", str(tmp_path), "--status"])
    assert root.is_relative_to(tmp_path)
    assert "runs: done 0, running 0, failed 0, pending" in capsys.readouterr().out
