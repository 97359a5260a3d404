"""Small shared tools: atomic writes, tidy CSV tables, devices, formatting.

Every file the project writes goes through ``atomic_write``: a temporary file in the
same directory, fsync, then ``os.replace``, so a killed process leaves either the old
file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

# The checkout: utils.py sits at its root, beside data/ and docs/ (lbvae/ modules find them here).
CHECKOUT = Path(__file__).resolve().parent

# atomic_write's temporary files: "." + the target's name + "." + mkstemp's 8 random
# characters + ".tmp". A process killed while writing leaves one behind.
TEMPORARY_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the kernel tells it
    (/proc/self/status, Linux >= 4.7); elsewhere set-and-restore under a lock."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode an ordinary new file gets (open(..., "w")): 0o666 less the umask."""
    return 0o666 & ~current_umask()


def no_space(path, err: BaseException) -> bool:
    """Whether a failed write of ``path`` ran out of disk space. torch.save reports a full
    disk as RuntimeError("... unexpected pos ..."), without errno, so ask the disk too."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(err, RuntimeError):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(Path(path).parent).free < (1 << 20)
    return False


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.
    The file gets the mode the umask gives ordinary files (mkstemp creates it 0600, which
    would hide results from the group on a shared cluster). A full disk is reported as
    OSError(ENOSPC) naming ``path``, whatever the writer raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if no_space(path, err):
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from err
        raise


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete the temporary files that interrupted ``atomic_write`` calls left in
    ``folder`` and its subfolders (recognised by their name alone); returns what was
    deleted. Only call it while no other process can be writing there (a run's folder
    under its lock: everything below it is the run's own)."""
    removed = []
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if TEMPORARY_NAME.match(name) and not os.path.islink(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                removed.append(Path(path))
    return removed


def write_text(path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)


def to_jsonable(obj):
    """NumPy scalars/arrays and tuples -> plain JSON types; non-finite floats -> None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_csv(path, rows: list[dict], columns: list[str] | None = None) -> None:
    """A tidy table: one row per dict; columns in first-seen order unless given."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    write_text(path, buf.getvalue())


def _csv_cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        # Full precision, and no "np.float64(...)": the figures are drawn from this table.
        return repr(float(v))
    return v


def read_csv(path) -> list[dict]:
    """Rows of a CSV written by ``write_csv``; numeric cells become int/float, True/False bool
    (``bool("False")`` would be True), empty ones None."""
    with open(path, newline="") as f:
        return [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _parse_cell(v: str):
    if v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def resolve_device(name: str = "auto"):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return device


def fmt_number(x: float) -> str:
    """β and λ as they appear in directory names and tables: 1, 4, 0.5 (not 1.0), and
    exact: the shortest text that reads back as the same float (repr), so two values
    never share a run folder (4 and 4.0000001 are "4" and "4.0000001", not both "4")."""
    x = float(x) + 0.0                       # -0.0 -> 0.0: one folder for zero
    text = repr(x)
    return text[:-2] if text.endswith(".0") else text


def mean_std(values) -> str:
    """mean ± sample std; one value has no std ("± n/a", not a misleading "± 0.0000")."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if values.size == 0:
        return "n/a"
    if values.size == 1:
        return f"{values[0]:.4f} ± n/a"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


LOCK = "lock"   # the file RunLock keeps in a folder while a process works in it (a run, a linear grid)


class LockHeld(RuntimeError):
    """Another live process holds the lock."""


# A lock file that holds no "host pid" is younger than this only while its creator is
# between creating and writing it; older, its creator was killed in between.
UNREADABLE_LOCK_GRACE_S = 10.0


class RunLock:
    """An exclusive lock file per run, so two invocations never train the same run.

    The file holds the owner's host and pid. A lock left by a dead process on this host
    is stale and taken over; a lock from another host (a shared cluster filesystem) is
    stale once its heartbeat (mtime, refreshed by ``touch``) is older than ``stale_after_s``.
    O_EXCL creation works on local and NFS filesystems, unlike flock on some clusters.
    """

    def __init__(self, path, stale_after_s: float = 3600.0, doing: str = "trained"):
        self.path, self.stale_after_s, self.held = Path(path), stale_after_s, False
        self.doing = doing          # what the holder does to the folder, for the refusal

    def acquire(self) -> RunLock:
        import socket
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)   # less the umask
            except FileExistsError:
                owner = self._owner()
                if owner is None:
                    continue                                  # released between our two calls
                if self._alive(*owner):
                    host, pid, _ = owner
                    who = f"pid {pid} on {host}" if pid >= 0 else "a process that is writing its lock file"
                    raise LockHeld(f"{self.path.parent} is being {self.doing} by {who}") from None
                try:
                    os.unlink(self.path)                      # stale: its owner died
                except FileNotFoundError:
                    pass
                except OSError as err:                        # a directory, a read-only folder
                    raise LockHeld(f"{self.path} is stale but cannot be removed ({err.strerror}); "
                                   f"remove it by hand") from None
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return self
        raise LockHeld(f"could not take the lock {self.path}: another process keeps taking it")

    def is_live(self) -> bool:
        """Whether the lock file exists and belongs to a live trainer."""
        owner = self._owner()
        return owner is not None and self._alive(*owner)

    def _alive(self, host: str, pid: int, mtime: float) -> bool:
        import socket
        import time
        age = time.time() - mtime
        if pid < 0:         # unreadable: only a lock being written right now is alive
            return age < UNREADABLE_LOCK_GRACE_S
        return _pid_alive(pid) if host == socket.gethostname() else age < self.stale_after_s

    def _owner(self):
        """(host, pid, mtime) of the lock file; pid -1 if it is unreadable (a kill between
        creating and writing it); None if there is no lock file."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            host, pid = self.path.read_text().split()
            pid = int(pid)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):       # empty, garbage, binary, a directory
            return "?", -1, mtime
        # pid 0 would signal our own process group (always "alive"); a pid beyond the
        # platform's range cannot be signalled at all: both are garbage, not owners.
        return ("?", -1, mtime) if not 0 < pid < 2 ** 31 else (host, pid, mtime)

    def touch(self) -> bool:
        """Refresh the heartbeat; False if the lock file had vanished (someone deleted
        the run's folder or lock): it is written again, so the run stays ours."""
        if not self.held:
            return True
        try:
            os.utime(self.path)
            return True
        except FileNotFoundError:
            import socket
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(f"{socket.gethostname()} {os.getpid()}")
            return False

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holds_more_than(folder: Path, *names: str) -> bool:
    """Whether ``folder`` holds anything besides the files ``names`` (an unreadable folder counts
    as holding more): a results folder with only its config.json (and lock) holds no results."""
    try:
        return any(entry.name not in names for entry in Path(folder).iterdir())
    except OSError:
        return True
