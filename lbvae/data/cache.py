"""A one-time copy of a slow image source as a raw uint8 .npy, read row by row.

Some real sources cannot hand out a random batch fast: Shapes3D's HDF5 stores its
images gzip-compressed in chunks of (15000, 4, 4, 1) rows x pixels x channel, so one
image touches 768 chunks of 15,000 images each (a batch of 64 took 9 s); a deflated npz
member (a compressed MPI3D file) can only be streamed from its start; CelebA is JPEGs.
Such a source is copied once, by sequential block reads, to a plain .npy (the NumPy
format, ``numpy.lib.format``: a small header, then the C-order rows), which
``data_files`` then reads with ``os.preadv``: the page cache is shared between processes
(Slurm array jobs on one node) and anonymous memory stays one batch.

Where: next to the source (``<stem>_<key>.npy``), or in a cache folder given by the
``cache_dir`` argument or ``$DISENT_CACHE_DIR`` (``<stem>_<key>.<hash of the source
path>.npy``), for read-only data folders. A valid cache in either place is used.

A cache is trusted only with its record ``<cache>.npy.json``, written after the .npy is
complete and renamed into place: it holds the source's fingerprint (size, mtime, the
settings the rows depend on), the shape, the file size and a sha256 of sample rows
taken from the source while streaming it. Before use, the header, the exact file size,
the fingerprint and the sample rows are checked (a millisecond); a cache that fails is
rebuilt with a one-line message. A build writes ``<cache>.npy.part-<host>-<pid>`` and renames
it only once complete and verified, so an interrupted build never leaves a file that a
later run could take for complete; the source is only ever opened for reading.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

from lbvae.data.ground_truth import DataError

CACHE_DIR_ENV = "DISENT_CACHE_DIR"
RECORD_FORMAT = 1
SAMPLE_ROWS = 64


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds: the rows (N, ...) uint8 of ``source``, as ``blocks()`` yields them in order.

    ``fingerprint`` (JSON-able) changes whenever the rows would: the source file's size and
    mtime, a folder's list of images, settings such as a crop."""
    source: Path
    stem: str
    shape: tuple[int, ...]
    fingerprint: dict
    blocks: Callable[[], Iterator[np.ndarray]] = field(compare=False)
    command: str = ""       # the command that builds it ahead of time, for messages

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def resolve_cache_dir(cache_dir=None) -> Path | None:
    """The cache folder: the argument, else $DISENT_CACHE_DIR, else None (next to the data)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    return None


def locations(spec: CacheSpec, cache_dir=None) -> list[Path]:
    """Where the cache may be, in order of preference; a new one is built at the first."""
    beside = spec.source.parent / f"{spec.stem}.npy"
    folder = resolve_cache_dir(cache_dir)
    if folder is None:
        return [beside]
    # The source's absolute path in the name: one cache folder serves many data folders.
    tag = hashlib.sha256(str(spec.source.resolve()).encode()).hexdigest()[:10]
    return [folder / f"{spec.stem}.{tag}.npy", beside]


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def sample_rows(n: int) -> np.ndarray:
    """The rows whose checksum vouches for a cache: the first, the last, a fixed random sample."""
    rows = np.random.default_rng(0).integers(0, n, size=min(SAMPLE_ROWS, n))
    return np.unique(np.concatenate(([0, n - 1], rows))).astype(np.int64)


def _read_rows(fd: int, offset: int, row_bytes: int, rows: np.ndarray) -> bytes:
    parts = []
    for row in rows.tolist():
        data = os.pread(fd, row_bytes, offset + row * row_bytes)
        if len(data) != row_bytes:
            raise EOFError(f"row {row} is cut short")
        parts.append(data)
    return b"".join(parts)


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    with open(path, "rb") as f:
        version = npy_format.read_magic(f)
        read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        return tuple(shape), dtype, fortran, f.tell()


def problem(path: Path, spec: CacheSpec) -> str | None:
    """Why the cache at ``path`` cannot be used for ``spec`` (None: it can)."""
    if not path.exists():
        return "missing"
    try:
        record = json.loads(record_path(path).read_text())
    except FileNotFoundError:
        return "incomplete (no record of a finished build)"
    except (OSError, ValueError) as err:
        return f"unreadable record ({err})"
    if record.get("fingerprint") != json.loads(json.dumps(spec.fingerprint)):
        return f"stale ({spec.source.name} changed since the cache was built)"
    if record.get("format") != RECORD_FORMAT or record.get("shape") != list(spec.shape):
        return "built for another shape or format"
    try:
        shape, dtype, fortran, offset = _header(path)
        size = path.stat().st_size
        if shape != spec.shape or dtype != np.uint8 or fortran:
            return f"wrong header (shape {shape}, dtype {dtype})"
        if size != offset + spec.nbytes:
            return f"truncated or overlong ({size:,} bytes, expected {offset + spec.nbytes:,})"
        fd = os.open(path, os.O_RDONLY)
        try:
            rows = _read_rows(fd, offset, spec.nbytes // spec.shape[0], sample_rows(spec.shape[0]))
        finally:
            os.close(fd)
    except (OSError, ValueError, EOFError) as err:
        return f"unreadable ({err})"
    if hashlib.sha256(rows).hexdigest() != record.get("sample_sha256"):
        return "corrupt (sample rows differ from the source's)"
    return None


def find(spec: CacheSpec, cache_dir=None) -> tuple[Path, str | None]:
    """(the first usable cache, None), else (where to build one, why the one there is unusable)."""
    places = locations(spec, cache_dir)
    reasons = [problem(p, spec) for p in places]
    for place, reason in zip(places, reasons):
        if reason is None:
            return place, None
    return places[0], reasons[0]


def open_cache(spec: CacheSpec, cache_dir=None) -> tuple[Path, int]:
    """(path, byte offset of row 0) of a valid cache of ``spec``, built first if needed."""
    path, reason = find(spec, cache_dir)
    if reason is not None:
        build(spec, path, reason)
    return path, _header(path)[3]


def describe(spec: CacheSpec, cache_dir=None) -> str:
    """One line for ``python datasets.py info``: where the cache is, how big, whether usable."""
    path, reason = find(spec, cache_dir)
    if reason is None:
        return f"cache: {path} ({path.stat().st_size / 1e9:.2f} GB, valid)"
    where = path.parent if path.parent.exists() else Path(path.anchor)
    free = shutil.disk_usage(where).free
    state = "none" if reason == "missing" else f"{path} is {reason}"
    return (f"cache: {state}; built on first use or by `{spec.command}` at {path} "
            f"({spec.nbytes / 1e9:.2f} GB, {free / 1e9:.1f} GB free there)")


def _cannot_write(path: Path, err: OSError) -> DataError:
    reason = err.strerror or str(err)
    return DataError(f"cannot write the cache {path} ({reason}); point the cache at a writable folder with "
                     f"{CACHE_DIR_ENV}=DIR or --cache-dir DIR (the source is never modified)")


@contextmanager
def _build_lock(path: Path):
    """Only one process builds a cache; others wait, then find it built. The lock file
    goes when the build ends: a process still waiting on it re-checks the cache anyway."""
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{path}: another process is building this cache; waiting for it", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            # Some cluster file systems (Lustre without -o flock) have no flock: build unlocked;
            # concurrent builders then write separate .part files and the last rename wins.
            if err.errno not in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _part_path(path: Path) -> Path:
    """The file a build writes: named by host and process, so that leftovers of killed
    builds can be told from a build in progress, also on a shared file system."""
    return path.with_name(f"{path.name}.part-{socket.gethostname()}-{os.getpid()}")


def _leftovers(path: Path) -> list[Path]:
    """Files of builds on this host whose process is gone (killed): never renamed, never trusted."""
    found, prefix = [], f"{path.name}.part-{socket.gethostname()}-"
    for part in path.parent.glob(path.name + ".part-*"):
        pid = part.name[len(prefix):] if part.name.startswith(prefix) else ""
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            found.append(part)
        except PermissionError:     # alive, someone else's
            pass
    return found


def build(spec: CacheSpec, path: Path, reason: str = "missing") -> None:
    """Stream ``spec.blocks()`` to ``path`` atomically, checked; replaces an unusable cache there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _build_lock(path):
            reason = problem(path, spec)       # another process may have built it meanwhile
            if reason is None:
                return
            if reason != "missing":
                print(f"{path}: {reason}; rebuilding it from {spec.source}", file=sys.stderr)
            for old in [path, record_path(path), *_leftovers(path)]:
                old.unlink(missing_ok=True)
            _write(spec, path)
    except OSError as err:
        raise _cannot_write(path, err) from err


def _write(spec: CacheSpec, path: Path) -> None:
    from tqdm import tqdm

    header = {"descr": npy_format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": tuple(spec.shape)}
    free = shutil.disk_usage(path.parent).free
    needed = spec.nbytes + 4096                 # rows, header and record
    if free < needed:
        raise DataError(f"cannot build the cache {path}: it needs {needed:,} bytes ({needed / 1e9:.2f} GB) and "
                        f"{path.parent} has {free:,} bytes free; free some space or point the cache elsewhere "
                        f"with {CACHE_DIR_ENV}=DIR or --cache-dir DIR")
    n, row_bytes = spec.shape[0], spec.nbytes // spec.shape[0]
    rows = sample_rows(n)
    sampled = {}
    tmp = _part_path(path)
    try:
        with open(tmp, "xb") as out, tqdm(total=n, unit="img", unit_scale=True, dynamic_ncols=True,
                                          desc=f"caching {spec.source.name} -> {path.name}") as bar:
            npy_format.write_array_header_1_0(out, header)
            offset, start = out.tell(), 0
            for block in spec.blocks():
                block = np.asarray(block)
                if block.dtype != np.uint8 or block.shape[1:] != spec.shape[1:] or start + len(block) > n:
                    raise DataError(f"{spec.source}: a block of rows {start}.. has shape {block.shape} "
                                    f"and dtype {block.dtype}; expected uint8 rows of {spec.shape}")
                block = np.ascontiguousarray(block)
                for row in rows[(rows >= start) & (rows < start + len(block))].tolist():
                    sampled[row] = block[row - start].tobytes()
                _write_all(out, memoryview(block).cast("B"))
                start += len(block)
                bar.update(len(block))
            if start != n:
                raise DataError(f"{spec.source}: yielded {start} rows, expected {n}")
            out.flush()
            os.fsync(out.fileno())
        digest = hashlib.sha256(b"".join(sampled[r] for r in rows.tolist())).hexdigest()
        # Read the sample back from the disk: what a later run will trust.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            written = _read_rows(fd, offset, row_bytes, rows)
        except EOFError as err:
            raise OSError(errno.EIO, f"written file is short: {err}") from err
        finally:
            os.close(fd)
        if hashlib.sha256(written).hexdigest() != digest:
            raise OSError(errno.EIO, "rows read back differ from the rows written")
        os.replace(tmp, path)
        record = {"format": RECORD_FORMAT, "source": str(spec.source), "fingerprint": spec.fingerprint,
                  "shape": list(spec.shape), "dtype": "uint8", "bytes": offset + spec.nbytes,
                  "sample_rows": len(rows), "sample_sha256": digest}
        _write_atomic(record_path(path), json.dumps(record, indent=1).encode())
        _fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)     # after a failure or an interruption; gone after the rename


def _write_all(out, data: memoryview) -> None:
    # One call per block; a separate function so that tests can simulate a full disk.
    out.write(data)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = _part_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
