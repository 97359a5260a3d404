"""A results directory is a faithful, complete record (issue 15): file modes, exact run
folder names, lock files in odd states, the dSprites pickle, run identity, the aggregate
over every finished run, odd states of a run's files, and one-line messages."""
import csv
import json
import os
import pickle
import shutil
import stat

import numpy as np
import pytest

import config
import datasets
import utils
import utils as _utils
from config import Config, ConfigError, MineConfig, validate, validate_mine
from lbvae.analysis import report as analysis
from lbvae.data import files as data_files
from lbvae.pipeline import runs, study
from test_datasets import DSPRITES_SIZES, write_dsprites
from utils import LockHeld, RunLock


# --- 7: file modes follow the umask -------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert utils.current_umask() == umask
        utils.write_text(tmp_path / "a.txt", "x")
        with utils.atomic_write(tmp_path / "b.pt") as f:
            f.write(b"x")
        lock = RunLock(tmp_path / "lock").acquire()
        lock.release()
        RunLock(tmp_path / "lock2").acquire()
    finally:
        os.umask(old)
    for name in ("a.txt", "b.pt", "lock2"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_full_disk_names_the_file_not_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(utils.shutil, "disk_usage", lambda p: type("U", (), {"free": 0})())
    with pytest.raises(OSError, match="No space left on device") as err:
        with utils.atomic_write(tmp_path / "checkpoint.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0")
    assert err.value.filename == str(tmp_path / "checkpoint.pt")
    assert not list(tmp_path.iterdir())                        # no temporary left


# --- 3: values that print alike never share a folder -----------------------------------------
@pytest.mark.parametrize("value, text", [(4.0, "4"), (4.0000001, "4.0000001"), (0.5, "0.5"), (1e-05, "1e-05"),
                                         (-0.0, "0"), (16, "16"), (0.1 + 0.2, "0.30000000000000004")])
def test_numbers_in_folder_names_are_exact(value, text):
    assert utils.fmt_number(value) == text
    assert float(text) == value


def test_one_value_has_no_std():
    assert utils.mean_std([0.25]) == "0.2500 ± n/a"
    assert utils.mean_std([1.0, 3.0]) == "2.0000 ± 1.4142"


# --- 6: lock files in odd states ------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"garbage", b"\xff\xfe\x00", b"host", b"host 0", b"host -3",
                                     b"host 99999999999999999999", b"a b c"],
                         ids=["empty", "word", "binary", "host only", "pid 0", "negative pid", "huge pid", "three"])
def test_unreadable_lock_goes_stale_after_its_grace(tmp_path, content):
    path = tmp_path / "lock"
    path.write_bytes(content)
    lock = RunLock(path)
    assert lock.is_live()                                       # young: its writer may be mid-write
    with pytest.raises(LockHeld, match="a process that is writing its lock file"):
        lock.acquire()
    old = path.stat().st_mtime - utils.UNREADABLE_LOCK_GRACE_S - 1
    os.utime(path, (old, old))
    assert not lock.is_live()
    lock.acquire()                                              # taken over
    assert path.read_text().split()[1] == str(os.getpid())


def test_a_lock_that_is_a_directory_is_one_line(tmp_path):
    (tmp_path / "lock").mkdir()
    old = (tmp_path / "lock").stat().st_mtime - 60
    os.utime(tmp_path / "lock", (old, old))
    with pytest.raises(LockHeld, match="is stale but cannot be removed.*remove it by hand"):
        RunLock(tmp_path / "lock").acquire()


def test_a_deleted_lock_is_written_again_at_the_heartbeat(tmp_path):
    lock = RunLock(tmp_path / "run" / "lock").acquire()
    assert lock.touch()
    (tmp_path / "run" / "lock").unlink()
    (tmp_path / "run").rmdir()
    assert not lock.touch()
    assert RunLock(tmp_path / "run" / "lock").is_live()


# --- 11: the dSprites metadata pickle cannot run code ---------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_dsprites_pickle_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    write_dsprites(tmp_path, metadata=np.array(_Payload(marker), dtype=object))
    path = tmp_path / data_files.DSPRITES_FILE
    with pytest.raises(datasets.DataError, match="os.system|posix.system") as err:
        datasets.load_dataset("dsprites", "real", tmp_path, factor_sizes=DSPRITES_SIZES)
    assert str(path) in str(err.value) and "download it again" in str(err.value)
    assert not marker.exists()
    # The file is live: what the loader did before (allow_pickle=True) runs it.
    np.load(path, allow_pickle=True)["metadata"]
    assert marker.exists()


def test_plain_metadata_still_loads_and_is_checked(tmp_path):
    write_dsprites(tmp_path)
    assert len(datasets.load_dataset("dsprites", "real", tmp_path, factor_sizes=DSPRITES_SIZES)) == 384
    write_dsprites(tmp_path, metadata=np.array({"latents_sizes": np.array([1, 3, 2, 4, 4, 5])}, dtype=object))
    with pytest.raises(datasets.DataError, match="metadata latents_sizes"):
        datasets.load_dataset("dsprites", "real", tmp_path, factor_sizes=DSPRITES_SIZES)


@pytest.mark.parametrize("obj", [{"a": np.arange(3), "b": (1, 2.5, "x"), "c": [None, True]}, np.float64(2.5),
                                 np.array([[1.5, 2]], np.float32)], ids=["dict", "scalar", "array"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_safe_unpickle_reads_plain_data(obj, protocol):
    out = data_files.safe_unpickle(pickle.dumps(obj, protocol=protocol))
    assert repr(out) == repr(obj)


@pytest.mark.parametrize("obj", [RunLock, print, _Payload("x")], ids=["class", "builtin", "reduce"])
def test_safe_unpickle_refuses_anything_else(obj):
    data = pickle.dumps(obj, protocol=2)
    with pytest.raises(data_files.UnsafePickle, match="not plain data"):
        data_files.safe_unpickle(data)


# =====================================================================================
# End to end through main_beta.py / main_lambda.py: tiny runs of the dSprites stand-in
# =====================================================================================
TINY_FLAGS = ["--demo", "--datasets", "dsprites", "--seeds", "0", "--steps", "4", "--lambda-steps", "2",
              "--lambda", "0", "--log-interval", "2", "--checkpoint-interval", "2", "--loss-window", "2",
              "--metric-train-points", "100", "--metric-test-points", "50", "--heldout-eval-points", "10",
              "--device", "cpu", "--no-figures"]


def beta(tmp_path, *extra, stage="beta"):
    return study.main(stage, TINY_FLAGS + ["--results-dir", str(tmp_path)] + list(extra))


def table(root):
    with open(root / "results.csv") as f:
        return list(csv.DictReader(f))


def one_line_exit(capsys, fn, code=2):
    """The command's last stderr line (progress bars aside: they share stderr), and no traceback."""
    with pytest.raises(SystemExit) as exit_:
        fn()
    err = capsys.readouterr().err
    if isinstance(exit_.value.code, str):              # SystemExit("message"): Python prints it, exit 1
        err, exit_.value.code = exit_.value.code, 1
    lines = [line for line in err.strip().splitlines() if line.strip() and "|" not in line and "\x1b[A" not in line]
    assert exit_.value.code == code, (exit_.value.code, lines)
    assert len(lines) == 1 and "Traceback" not in err, lines
    return lines[0]


def run_dir(tmp_path, b="4", stage="beta"):
    root = tmp_path / ("betavae_results" if stage == "beta" else "lambda_betavae_results")
    return root / "dsprites" / f"beta_{b}" / ("lambda_0/seed_0" if stage == "lambda" else "seed_0")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """β = 1 and 4 trained once (4 steps, one pack); tests copy the tree rather than train again."""
    out = tmp_path_factory.mktemp("made")
    beta(out, "--beta", "1", "4")
    return out


@pytest.fixture
def tree(made, tmp_path):
    shutil.copytree(made, tmp_path, dirs_exist_ok=True)
    return tmp_path


# --- 1: the aggregate holds every finished run under the stage root -------------------------------
def test_a_second_grid_adds_to_the_aggregate(tree, capsys):
    root = beta(tree, "--beta", "8")
    rows = table(root)
    assert [(r["beta"], r["status"]) for r in rows] == [("1.0", "done"), ("4.0", "done"), ("8.0", "done")]
    for r in rows:                                          # the run-defining settings as columns
        assert (r["config_steps"], r["batch_size"], r["lr"], r["num_bins"], r["precision"]) == \
            ("4", "16", "0.001", "20", "fp32")
        assert r["adam_betas"] == "0.9 0.999"
    summary = (root / "summary.txt").read_text()
    assert "β=  1" in summary and "β=  4" in summary and "β=  8" in summary
    assert "2 run(s) outside this command's grid" in capsys.readouterr().out
    (root / "results.csv").unlink()
    beta(tree, "--beta", "1", "--collect")                  # --collect too
    assert len(table(root)) == 3 and "collected 1 of 1 runs" in capsys.readouterr().out


def test_mixed_settings_are_never_pooled(tree, capsys):
    # Runs of another setting in the tree (moved in, or the root's config.json deleted).
    other = run_dir(tree, "4").parent.parent / "beta_7" / "seed_0"
    shutil.copytree(run_dir(tree, "4"), other)
    for name in ("metrics.json", "config.json"):
        saved = json.loads((other / name).read_text())
        if name == "config.json":
            saved["num_bins"] = 10
        else:
            saved["row"]["beta"] = 7.0
        (other / name).write_text(json.dumps(saved))
    root = beta(tree, "--beta", "4", "--collect")
    rows = table(root)
    assert sorted(r["num_bins"] for r in rows) == ["10", "20", "20"]
    summary = (root / "summary.txt").read_text()
    assert "The runs differ in num_bins" in summary and "[num_bins=10]" in summary
    assert "figures show the 2 run(s) with this command's values" in capsys.readouterr().out


# --- 2, 4: a run's identity is every run-defining setting, checked on every reuse ---------------------
@pytest.mark.parametrize("flag, value, stored", [("--steps", "8", "steps=4"), ("--num-bins", "10", "num_bins=20"),
                                                 ("--precision", "bf16", "precision='fp32'"),
                                                 ("--metric-train-points", "80", "metric_train_points=100"),
                                                 ("--lr", "0.01", "lr=0.001"), ("--batch-size", "8", "batch_size=16")])
def test_reusing_a_run_with_other_settings_is_refused(tree, capsys, flag, value, stored):
    line = one_line_exit(capsys, lambda: beta(tree, "--beta", "4", flag, value))
    assert line.startswith(f"config: {tree / 'betavae_results'} was made with {stored}")     # the root speaks first
    assert f"rerun with {flag} " in line and "--results-dir" in line
    # Without the root's config.json the run's own config.json still guards it.
    (tree / "betavae_results" / "config.json").unlink()
    line = one_line_exit(capsys, lambda: beta(tree, "--beta", "4", flag, value))
    assert str(run_dir(tree)) in line and f"was made with {stored}" in line and "reuse it" in line
    assert json.loads((run_dir(tree) / "config.json").read_text())[stored.split("=")[0]] != value


def test_lambda_runs_never_continue_beta_runs_of_other_settings(tree, capsys):
    (tree / "betavae_results" / "config.json").unlink()     # only the β run's own config.json knows
    line = one_line_exit(capsys, lambda: beta(tree, "--beta", "4", "--steps", "8", stage="lambda"))
    assert line.startswith(f"config: {run_dir(tree)} was made with steps=4, not 8; rerun with --steps 4")
    assert not (tree / "lambda_betavae_results").exists()


def test_a_run_recorded_before_a_setting_existed_is_accepted(tree, capsys):
    for path in (run_dir(tree) / "config.json", tree / "betavae_results" / "config.json"):
        saved = json.loads(path.read_text())
        del saved["precision"], saved["num_bins"]
        path.write_text(json.dumps(saved))
    root = beta(tree, "--beta", "4")
    assert "1 already finished or failed, 0 to train" in capsys.readouterr().out
    assert [r["precision"] for r in table(root)] == ["fp32", ""]     # unknown, and shown as unknown


def test_values_that_print_alike_get_their_own_runs(tmp_path):
    # (and item 9: a loss window of 2e9 steps is clamped to the run, not allocated)
    root = beta(tmp_path, "--beta", "4", "4.0000001", "--steps", "2", "--loss-window", "2000000000")
    assert sorted((r["beta"], r["status"]) for r in table(root)) == [("4.0", "done"), ("4.0000001", "done")]
    assert (root / "dsprites" / "beta_4.0000001" / "seed_0" / "metrics.json").exists()


def test_commands_that_train_nothing_write_nothing(tmp_path, capsys):
    beta(tmp_path, "--beta", "4", "--status")
    assert not (tmp_path / "betavae_results").exists()
    with pytest.raises(SystemExit):
        study.main("beta", ["--source", "real", "--data-dir", str(tmp_path), "--datasets", "dsprites",
                            "--results-dir", str(tmp_path)])
    assert not (tmp_path / "betavae_results" / "config.json").exists()


# --- 5: odd states of a run's files ----------------------------------------------------------------
def test_corrupt_checkpoint_fails_its_run_and_the_sweep_goes_on(tree, capsys):
    run = run_dir(tree)
    (run / "metrics.json").unlink()
    (run / "checkpoint.pt").write_bytes(b"garbage")
    root = beta(tree, "--beta", "1", "4")
    out = capsys.readouterr().out
    assert f"{run / 'checkpoint.pt'} is unreadable" in out and "--retry-failed" in out
    assert [(r["beta"], r["status"]) for r in table(root)] == [("1.0", "done"), ("4.0", "failed")]
    assert (run / "checkpoint.pt.corrupt").exists()
    root = beta(tree, "--beta", "1", "4", "--retry-failed")
    assert [r["status"] for r in table(root)] == ["done", "done"]


def test_corrupt_metrics_is_evaluated_again(tree, capsys):
    run = run_dir(tree)
    text = (run / "metrics.json").read_text()
    (run / "metrics.json").write_text(text[:len(text) // 2])
    root = beta(tree, "--beta", "4")
    assert "metrics.json is unreadable" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["row"]["steps"] == 4
    assert [r["status"] for r in table(root)] == ["done", "done"]


def test_garbage_beta_weights_fail_only_their_lambda_runs(tree, capsys):
    (run_dir(tree) / "betavae_beta_4_seed_0.pth").write_bytes(b"not torch")
    root = beta(tree, "--beta", "1", "4", stage="lambda")
    assert [(r["beta"], r["status"]) for r in table(root)] == [("1.0", "done"), ("4.0", "failed")]
    reason = table(root)[1]["reason"]
    assert "betavae_beta_4_seed_0.pth" in reason and "unreadable" in reason and "--retry-failed" in reason


def test_lambda_hint_keeps_the_flags_and_says_the_beta_run_failed(tree, capsys):
    run = run_dir(tree)
    (run / "betavae_beta_4_seed_0.pth").unlink()
    message = str(pytest.raises(SystemExit, beta, tree, "--beta", "4", stage="lambda").value)
    assert f"--results-dir {tree}" in message and "--steps 4" in message and "--betas 4" in message
    assert "--demo" in message and "--batch-size" not in message           # the preset's value
    (run / "metrics.json").unlink()
    _utils.write_json(run / "failed.json", {"reason": "non-finite loss at step 3"})
    message = str(pytest.raises(SystemExit, beta, tree, "--beta", "4", stage="lambda").value)
    assert "that β run failed (non-finite loss at step 3)" in message and "--retry-failed" in message


# --- 8: read-only trees --------------------------------------------------------------------------
def test_read_only_tree_status_collect_out_and_training(tree, capsys, monkeypatch):
    real = _utils.tempfile.mkstemp
    allowed = tree / "elsewhere"

    def read_only(*args, dir=None, **kwargs):            # root ignores chmod: refuse writes here instead
        if not str(dir).startswith(str(allowed)):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(_utils.tempfile, "mkstemp", read_only)
    beta(tree, "--beta", "4", "--status")
    assert "done 1" in capsys.readouterr().out and not (tree / "elsewhere").exists()
    line = one_line_exit(capsys, lambda: beta(tree, "--beta", "4", "--collect"), code=1)
    assert line.startswith("cannot write") and "--collect --out DIR" in line
    beta(tree, "--beta", "4", "--collect", "--out", str(allowed))
    assert [r["beta"] for r in table(allowed)] == ["1.0", "4.0"] and (allowed / "summary.txt").exists()
    line = one_line_exit(capsys, lambda: beta(tree, "--beta", "2"), code=1)
    assert "Permission denied" in line and "writable --results-dir" in line


# --- 9, 10: Ctrl-C ------------------------------------------------------------------------------------
def test_ctrl_c_is_one_line_with_the_step(tmp_path, capsys, monkeypatch):
    from tiny_data import Squares
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: Squares(fail_after_reads=3))
    line = one_line_exit(capsys, lambda: beta(tmp_path, "--beta", "4", "--batch-size", "4"), code=130)
    assert line.startswith("interrupted at step 3 of dsprites β=4 seed=0 (last checkpoint: step 2)")
    assert line.endswith("rerun the same command to resume")
    assert not (run_dir(tmp_path) / "lock").exists()


def test_a_run_folder_deleted_while_training_is_written_again(tmp_path, capsys):
    spec = runs.RunSpec("beta", "squares", 4.0, 0.0, 0, 4, tmp_path / "run")
    with runs.Claim([spec]) as claim:
        claim.write_config(spec, Config(), stage="beta", seed=0)
        shutil.rmtree(tmp_path / "run")
        claim.touch()
        assert json.loads((tmp_path / "run" / "config.json").read_text())["run"]["seed"] == 0
        assert RunLock(tmp_path / "run" / "lock").is_live()
    assert "was deleted while training" in capsys.readouterr().out


# --- 9: settings that passed validation and failed later ------------------------------------------------
BAD = [
    (["--num-bins", "1"], "--num-bins is 1: use 2..metric_train_points", 2),
    (["--num-bins", "100000000"], "--num-bins is 100000000", 2),
    (["--seeds", "99999999999999999999"], "--seeds has 99999999999999999999: seeds must be in 0..4294967295", 2),
    (["--latent-dim", "100000000"], "--latent-dim is 100000000: use at most 4096", 2),
    (["--batch-size", "100000000"], "--batch-size 100000000 is larger than the", 2),
    (["--results-dir", "/dev/null"], "/dev/null is not a directory", 2),
    (["--out", "x"], "--out: only used with --collect", 1),
]


@pytest.mark.parametrize("extra, needle, code", BAD, ids=[" ".join(c[0]) for c in BAD])
def test_bad_setting_that_used_to_fail_late(tmp_path, capsys, extra, needle, code):
    argv = TINY_FLAGS + ["--beta", "4"] + (["--results-dir", str(tmp_path)] if "--results-dir" not in extra else [])
    assert needle in one_line_exit(capsys, lambda: study.main("beta", argv + extra), code=code)


@pytest.mark.parametrize("cls, check, change, needle", [
    (Config, validate, dict(batch_size=16.5), "--batch-size is 16.5 (float): expected int"),
    (Config, validate, dict(checkpoint_interval=2.5), "--checkpoint-interval is 2.5 (float): expected int"),
    (Config, validate, dict(betas=(1.0, "4")), "--betas is (1.0, '4')"),
    (Config, validate, dict(figures=1), "--figures is 1 (int): expected bool"),
    (MineConfig, validate_mine, dict(steps=10.0), "--steps is 10.0 (float): expected int"),
    (MineConfig, validate_mine, dict(mine_parts=2, latent_dim=5000), "--latent-dim is 5000"),
], ids=["batch float", "interval float", "beta str", "figures int", "mine steps float", "mine latents"])
def test_wrong_types_edited_into_config_py_are_named(cls, check, change, needle):
    with pytest.raises(ConfigError, match=None) as err:
        check(cls(**change))
    assert needle in str(err.value)


def test_help_explains_every_setting(capsys):
    import dataclasses

    import config
    for cls in (Config, MineConfig):
        for f in dataclasses.fields(cls):
            assert f.name in config.HELP or f.name == "demo", f.name
    with pytest.raises(SystemExit):
        study.main("beta", ["--help"])
    text = capsys.readouterr().out
    assert "Adam learning rate, in (0, 1)" in text and "fp32, or bf16" in text
    assert "sets source=standin, betas=1.0 4.0 16.0" in " ".join(text.split())


# --- 10: percent change says why a cell has none ---------------------------------------------------
def _row(b, lam, value):
    return {"stage": "lambda", "dataset": "dsprites", "beta": b, "lambda": lam, "seed": 0, "status": "done",
            "mig": value, "sap": value, "i_m": value, "i_m_normalized": value, "train_window_nll": value,
            "heldout_neg_elbo": value, "heldout_recon": value, "heldout_mean_image_nll": value}


def test_percent_change_without_a_baseline_says_so():
    text = analysis.percent_change_text(analysis.percent_change_rows([_row(4.0, 2.0, 0.5)]))
    assert "dsprites mig: no finished (β=1, λ=0) run: train it (--beta 1 --lambda 0)" in text
    assert "nan%" not in text
    change = analysis.percent_change_rows([_row(1.0, 0.0, 0.0), _row(4.0, 0.0, 0.5)])
    assert {r["note"] for r in change if r["metric"] == "mig"} == {"baseline is 0: no percent change"}
    text = analysis.percent_change_text(change)
    assert "n/a" in text and "nan" not in text.lower()


# --- 9, 10: data files in odd states: one line naming the file and the actual cause -----------------------
def _npy_as_npz(d, name):
    with open(d / name, "wb") as f:
        np.save(f, np.zeros((4, 64, 64), np.uint8))


def _directory(d, name):
    (d / name).mkdir()


def _labels_group(d, name):
    import h5py
    with h5py.File(d / name, "w") as f:
        f.create_group("labels")
        f.create_dataset("images", data=np.zeros((2, 64, 64, 3), np.uint8))


DATA = [
    ("dsprites", data_files.DSPRITES_FILE, _npy_as_npz, "is a single .npy array saved under an .npz name"),
    ("mpi3d", "mpi3d_real.npz", _npy_as_npz, "is a single .npy array, not a npz file"),
    ("dsprites", data_files.DSPRITES_FILE, _directory, "is a directory, expected the npz file"),
    ("shapes3d", data_files.SHAPES3D_FILE, _directory, "is a directory, expected the HDF5 file"),
    ("shapes3d", data_files.SHAPES3D_FILE, _labels_group, "key 'labels' is an HDF5 group, expected an array"),
]


@pytest.mark.parametrize("name, filename, write, needle", DATA, ids=[f"{c[0]} {c[2].__name__[1:]}" for c in DATA])
def test_odd_data_file_is_one_clear_line(tmp_path, name, filename, write, needle):
    write(tmp_path, filename)
    with pytest.raises(datasets.DataError) as err:
        datasets.load_dataset(name, "real", tmp_path)
    assert str(tmp_path / filename) in str(err.value) and needle in str(err.value)
    assert "download it again" not in str(err.value) or "saved under" in str(err.value)


def test_unreadable_file_says_permission_not_corrupt(tmp_path):
    error = data_files.corrupt(tmp_path / "x.npz", "npz", PermissionError(13, "Permission denied"))
    assert "permission denied; make it readable" in str(error) and "download" not in str(error)


# --- a stage root that holds only its config.json holds no results ----------------------------
def test_a_root_with_only_its_config_is_taken_over_in_one_line(tmp_path, capsys):
    root = tmp_path / "betavae_results"
    runs.bind_results_dir(Config(batch_size=8), root, config.RUN_DEFINING, write=True)
    runs.bind_results_dir(Config(), root, config.RUN_DEFINING)                  # checks only: silent, unchanged
    assert json.loads((root / runs.CONFIG).read_text())["batch_size"] == 8
    assert capsys.readouterr().out == ""
    runs.bind_results_dir(Config(), root, config.RUN_DEFINING, write=True)
    line, = capsys.readouterr().out.splitlines()
    assert str(root) in line and "held no runs" in line and "batch_size=8" in line
    assert json.loads((root / runs.CONFIG).read_text())["batch_size"] == Config().batch_size


@pytest.mark.parametrize("content", ["dsprites/beta_1/seed_0", "results.csv"])
def test_a_root_that_holds_anything_else_keeps_its_settings(tmp_path, content):
    root = tmp_path / "betavae_results"
    runs.bind_results_dir(Config(batch_size=8), root, config.RUN_DEFINING, write=True)
    (root / content).parent.mkdir(parents=True, exist_ok=True)
    (root / content).mkdir() if "/" in content else (root / content).write_text("")
    with pytest.raises(ConfigError, match="was made with batch_size=8.*--batch-size 8"):
        runs.bind_results_dir(Config(), root, config.RUN_DEFINING, write=True)
    assert json.loads((root / runs.CONFIG).read_text())["batch_size"] == 8
