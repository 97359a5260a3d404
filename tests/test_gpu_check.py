"""scripts/gpu_check.py without a GPU: --quick --device cpu runs every step on tiny settings,
and a step that fails is reported as failed while the others still run."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import gpu_check  # noqa: E402


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_report")
    code = gpu_check.main([str(out), "--quick", "--device", "cpu"])
    return out, code


def test_quick_cpu_mode_runs_every_step_and_writes_the_report(quick_report):
    out, code = quick_report
    report = (out / "report.md").read_text()
    names = ["throughput fp32", "throughput bf16", "beta demo", "lambda demo", "cpu reference", "resident data",
             "linear"]
    for name in names:
        assert f"| {name} | passed |" in report, name
        assert (out / "logs" / (name.replace(" ", "_") + ".log")).exists()
    assert code == 0 and f"{len(names)} of {len(names)} steps passed." in report
    # The device run and the CPU reference are the same CPU here: identical rows.
    assert "largest relative difference device vs CPU: train_window_nll 0.0e+00" in report
    assert "runs finished in" in report and "ms per step of" in report
    assert "dsprites: naive " in report and "best engine" in report and "mpi3d (0.0 GiB): " in report


def test_a_failing_step_is_reported_and_the_others_still_run(tmp_path):
    steps = [gpu_check.Step("first", [sys.executable, "-c", "print('fine')"], 30),
             gpu_check.Step("broken", [sys.executable, "-c", "print('on its way'); raise SystemExit('broken')"], 30),
             gpu_check.Step("hangs", [sys.executable, "-c", "import time; time.sleep(30)"], 1),
             gpu_check.Step("last", [sys.executable, "-c", "print('still ran')"], 30)]
    code = gpu_check.main([str(tmp_path), "--quick", "--device", "cpu"], steps=steps)
    report = (tmp_path / "report.md").read_text()
    assert code == 1
    assert "| first | passed |" in report and "| last | passed |" in report and "still ran" in report
    assert "| broken | **failed** |" in report and "exit 1" in report and "on its way" in report
    assert "| hangs | **failed** |" in report and "timed out after 1 s" in report
    assert "2 of 4 steps passed. Failed: broken, hangs." in report


def test_a_missing_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([str(tmp_path / "r"), "--device", "cuda"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["gpu_check: --device cuda, but torch sees no CUDA device (run --quick --device cpu without one)"]
    assert not (tmp_path / "r").exists()
