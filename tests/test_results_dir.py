"""A results directory is a faithful, complete record (issue 15): file modes, exact run
folder names, lock files in odd states, the dSprites pickle, run identity, the aggregate
over every finished run, odd states of a run's files, and one-line messages."""
import os
import pickle
import stat

import numpy as np
import pytest

import data_files
import datasets
import utils
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
