"""Every bad input ends in one clear message naming the setting or file, never a traceback."""
import numpy as np
import pytest

from lbvae.data import files as data_files
from lbvae.pipeline import study
from test_datasets import write_dsprites, write_mpi3d, write_shapes3d

GOOD = ["--demo", "--datasets", "dsprites", "--seeds", "0", "--beta", "1", "--steps", "2", "--device", "cpu"]

# (argv for main_beta.py after GOOD, text the message must contain)
CASES = [
    (["--beta", "-1"], "--betas has -1.0"),
    (["--lambda", "-2"], "--lambdas has -2.0"),
    (["--beta", "inf"], "--betas has inf"),
    (["--datasets", "cifar10"], "unknown dataset 'cifar10'"),
    (["--steps", "0"], "--steps is 0"),
    (["--lambda-steps", "-5"], "--lambda-steps is -5"),
    (["--batch-size", "0"], "--batch-size is 0"),
    (["--latent-dim", "0"], "--latent-dim is 0"),
    (["--lr", "0"], "--lr is 0.0"),
    (["--adam-betas", "0.9", "1.5"], "--adam-betas"),
    (["--adam-eps", "0"], "--adam-eps"),
    (["--heldout-fraction", "0.9"], "--heldout-fraction is 0.9"),
    (["--source", "internet"], "--source is 'internet'"),
    (["--device", "tpu"], "--device is 'tpu'"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--seeds", "-1"], "--seeds has -1"),
    (["--seeds", "3", "3"], "--seeds has duplicates"),
    (["--mpi3d-variant", "simulated"], "--mpi3d-variant is 'simulated'"),
    (["--num-bins", "0"], "--num-bins is 0"),
    (["--metric-train-points", "0"], "--metric-train-points is 0"),
    (["--loss-window", "-1"], "--loss-window is -1"),
    (["--checkpoint-interval", "0"], "--checkpoint-interval is 0"),
    (["--steps", "many"], "--steps: invalid int value: 'many'"),
    (["--betta", "4"], "unrecognized arguments: --betta"),
]


@pytest.mark.parametrize("extra, needle", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_setting_is_one_clear_line(extra, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        study.main("beta", GOOD + ["--results-dir", str(tmp_path)] + extra)
    assert exit_.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert needle in message[-1]
    assert len(message) == 1 and "Traceback" not in message[0]


def test_results_directory_with_other_settings_or_corrupt_config(tmp_path, capsys):
    root = tmp_path / "betavae_results"
    root.mkdir()
    (root / "config.json").write_text('{"lr": 0.5, "source": "standin"')
    with pytest.raises(SystemExit):
        study.main("beta", GOOD + ["--results-dir", str(tmp_path)])
    assert "config.json is unreadable" in capsys.readouterr().err
    (root / "config.json").write_text('{"lr": 0.5, "source": "standin"}')
    (root / "dsprites").mkdir()                 # a root that holds runs (not only its config.json)
    with pytest.raises(SystemExit):
        study.main("beta", GOOD + ["--results-dir", str(tmp_path)])
    assert "was made with lr=0.5, not 0.001" in capsys.readouterr().err


# --- bad data files, end to end through main_beta.py --source real ------------------------
# (each loader's key, dtype and shape checks are tested on reduced grids in test_datasets.py;
# at the full grid the length check speaks first)
def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _bad_dsprites_truncated(d):
    write_dsprites(d)
    _truncate(d / data_files.DSPRITES_FILE)


def _bad_dsprites_small_grid(d):
    write_dsprites(d)                   # a reduced grid where the real one is expected


def _bad_shapes3d_small_grid(d):
    write_shapes3d(d)


def _bad_shapes3d_not_hdf5(d):
    (d / data_files.SHAPES3D_FILE).write_bytes(b"this is not an HDF5 file" * 100)


def _bad_mpi3d_small_grid(d):
    write_mpi3d(d)                      # a reduced grid where the real one is expected


def _bad_mpi3d_wrong_shape(d):
    write_mpi3d(d, images=np.zeros((6, 32, 32, 3), np.uint8))


DATA_CASES = [
    ("dsprites", _bad_dsprites_truncated, data_files.DSPRITES_FILE),
    ("dsprites", _bad_dsprites_small_grid, "expected integers of shape (737280, 6)"),
    ("shapes3d", _bad_shapes3d_small_grid, "of shape (480000, 6)"),
    ("shapes3d", _bad_shapes3d_not_hdf5, data_files.SHAPES3D_FILE),
    ("mpi3d", _bad_mpi3d_small_grid, "1036800"),
    ("mpi3d", _bad_mpi3d_wrong_shape, "mpi3d_real.npz"),
]


@pytest.mark.parametrize("name, write, needle", DATA_CASES, ids=[c[1].__name__[5:] for c in DATA_CASES])
def test_bad_data_file_is_one_clear_line(name, write, needle, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write(data)
    with pytest.raises(SystemExit) as exit_:
        study.main("beta", ["--source", "real", "--data-dir", str(data), "--datasets", name, "--seeds", "0",
                            "--beta", "1", "--steps", "2", "--device", "cpu", "--results-dir", str(tmp_path / "r")])
    assert exit_.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("data error:") and needle in message[0], message
