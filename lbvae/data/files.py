"""Where the real dataset files live, how to get them, and how their bytes are read.

Real image arrays are never loaded whole: ``open_images`` returns a row reader, checked
against the expected dtype, shape and row count first: ``os.preadv`` at the array's byte
offset where the rows are stored raw (a plain .npy, an uncompressed npz member, a
contiguous uncompressed HDF5 dataset), a bit-packed copy in memory for binary images in a
compressed npz (dSprites), and otherwise (chunked or compressed HDF5 such as Shapes3D's,
a compressed npz member) ``os.preadv`` from a raw .npy cache built once by
``data_cache``. ``cache_images`` builds that cache ahead of time. File formats:
docs/datasets.md; the .npy format: ``numpy.lib.format``; zip local headers: PKWARE's
APPNOTE.TXT section 4.3.7.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import threading
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

from lbvae.data import cache as data_cache
from lbvae.data.ground_truth import DATASET_NAMES, FACTOR_DATASETS, MPI3D_VARIANTS, DataError
from utils import CHECKOUT

DATA_DIR_ENV = "DISENT_DATA_DIR"


def check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise DataError(f"unknown {what} {value!r}: choose from {', '.join(choices)}")

# =====================================================================================
# Locations and downloads
# =====================================================================================
@dataclass(frozen=True)
class RemoteFile:
    """Where a real dataset file comes from. ``sha256`` is None where no published
    hash is known with certainty: such downloads are checked by size only."""
    filename: str
    url: str
    approx_bytes: int
    sha256: str | None = None


DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
SHAPES3D_FILE = "3dshapes.h5"
CELEBA_DIR = "celeba"   # data/celeba/{img_align_celeba/ or img_align_celeba.zip, list_attr_celeba.txt}
CELEBA_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


def remote_file(name: str, variant: str = "real") -> RemoteFile | None:
    """The download source of a real dataset file; None for CelebA (manual download)."""
    if name == "dsprites":
        return RemoteFile(DSPRITES_FILE, "https://github.com/deepmind/dsprites-dataset/raw/master/"
                          + DSPRITES_FILE, 26_000_000)
    if name == "shapes3d":
        return RemoteFile(SHAPES3D_FILE, "https://storage.googleapis.com/3d-shapes/3dshapes.h5", 255_000_000)
    if name == "mpi3d":
        # The original rr-learning links are dead; this mirror holds the same npz files.
        filename = f"mpi3d_{variant}.npz"
        return RemoteFile(filename, f"https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/{filename}",
                          12_740_198_400)
    return None


def resolve_data_dir(data_dir=None) -> Path:
    """The data directory: the argument, else $DISENT_DATA_DIR, else the checkout's data/."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return CHECKOUT / "data"


def _mpi3d_candidates(root: Path, variant: str) -> list[Path]:
    names = [f"mpi3d_{variant}.npz"] + (["real.npz"] if variant == "real" else [])
    return [root / n for n in names]


def mpi3d_path(root: Path, variant: str) -> Path:
    """The MPI3D npz in use: the first candidate present, else the default name."""
    for path in _mpi3d_candidates(root, variant):
        if path.exists():
            return path
    return _mpi3d_candidates(root, variant)[0]


def image_file(name: str, root: Path, variant: str = "real") -> tuple[Path, str]:
    """(file, key) of the image array of a real factor dataset."""
    return {"dsprites": lambda: (root / DSPRITES_FILE, "imgs"),
            "shapes3d": lambda: (root / SHAPES3D_FILE, "images"),
            "mpi3d": lambda: (mpi3d_path(root, variant), "images")}[name]()


def missing_files(name: str, data_dir=None, variant: str = "real") -> list[str]:
    """The expected paths of the real files of ``name`` that are missing (empty if present)."""
    check_choice("dataset", name, DATASET_NAMES)
    check_choice("MPI3D variant", variant, MPI3D_VARIANTS)
    root = resolve_data_dir(data_dir)
    if name == "celeba":
        folder = root / CELEBA_DIR
        present = (folder / "img_align_celeba").is_dir() or (folder / "img_align_celeba.zip").exists()
        return [] if present else [str(folder / "img_align_celeba.zip")]
    path = image_file(name, root, variant)[0]
    return [] if path.exists() else [str(path)]


def how_to_get(name: str, variant: str = "real", data_dir=None) -> str:
    """One line: the download command and where to put the file by hand."""
    check_choice("dataset", name, DATASET_NAMES)
    root = resolve_data_dir(data_dir)
    if name == "celeba":
        return (f"download img_align_celeba.zip and list_attr_celeba.txt by hand from {CELEBA_PAGE} "
                f"and put them in {root / CELEBA_DIR}/ (the zip may also be unpacked there)")
    return f"run `{_command('download', name, variant, data_dir)}`, or {_by_hand(name, variant, data_dir)}"


def _by_hand(name: str, variant: str, data_dir) -> str:
    remote = remote_file(name, variant)
    return f"download {remote.url} by hand to {resolve_data_dir(data_dir) / remote.filename}"


def _command(verb: str, name: str, variant: str, data_dir) -> str:
    flags = f" --variant {variant}" if name == "mpi3d" and variant != "real" else ""
    flags += f" --data-dir {data_dir}" if data_dir is not None else ""
    return f"python datasets.py {verb} {name}{flags}"


def download(name: str, data_dir=None, variant: str = "real") -> Path:
    """Fetch the real file of ``name`` into the data directory (atomic: tmp + rename)."""
    check_choice("dataset", name, DATASET_NAMES)
    check_choice("MPI3D variant", variant, MPI3D_VARIANTS)
    remote = remote_file(name, variant)
    if remote is None:
        raise DataError(f"{name} has no automatic download: {how_to_get(name, variant, data_dir)}")
    dest = resolve_data_dir(data_dir) / remote.filename
    if dest.exists():
        print(f"{dest} is already there")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if free < remote.approx_bytes:
        raise DataError(f"{dest.parent} has {free / 1e9:.1f} GB free, {remote.filename} needs about "
                        f"{remote.approx_bytes / 1e9:.1f} GB")
    return fetch(remote.url, dest, remote.sha256, manual=_by_hand(name, variant, data_dir))


def fetch(url: str, dest: Path, sha256: str | None = None, manual: str = "") -> Path:
    """Stream ``url`` to ``dest`` with a progress bar, via ``dest.part`` and an atomic rename.
    Any failure is one DataError line that says how to get the file by hand."""
    from tqdm import tqdm

    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            expected = int(response.headers.get("Content-Length") or 0) or None
            got = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=dest.name) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        if expected is not None and got != expected:
            raise DataError(f"download of {url} stopped at {got} of {expected} bytes")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DataError(f"{url}: sha256 {digest.hexdigest()} differs from the expected {sha256}")
        os.replace(tmp, dest)
    except (OSError, ValueError, DataError) as err:  # URLError is an OSError
        reason = getattr(err, "reason", None) or err
        raise DataError(f"could not download {url} ({reason}); {manual or f'put the file at {dest}'}") from err
    finally:
        tmp.unlink(missing_ok=True)     # after a failure or an interruption; gone after the rename
    if sha256 is None:
        print(f"{dest}: {got} bytes (checksum not verified: no published sha256 known)")
    return dest


# =====================================================================================
# Reading rows of image arrays from files (never the whole array)
# =====================================================================================
def _runs(indices: np.ndarray):
    """(position in the batch, first index, length) of each run of consecutive indices."""
    starts = np.concatenate(([0], np.flatnonzero(np.diff(indices) != 1) + 1))
    lengths = np.diff(np.append(starts, len(indices)))
    return zip(starts.tolist(), indices[starts].tolist(), lengths.tolist())


class LazyHandle:
    """Opens a file handle on first use in each process, drops it when pickled
    (datasets travel to worker processes), and is safe to use from threads."""

    def __init__(self):
        self._handle, self._pid, self._lock = None, None, threading.Lock()

    def _handle_open(self):
        with self._lock:
            if self._handle is None or self._pid != os.getpid():
                self._handle, self._pid = self._open(), os.getpid()
            return self._handle

    def _close(self, handle) -> None:
        handle.close()

    def __del__(self):
        # Only this process's own handle: a forked child must not close its parent's.
        if getattr(self, "_handle", None) is not None and self._pid == os.getpid():
            try:
                self._close(self._handle)
            except Exception:   # closing at interpreter exit may find modules gone
                pass

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_handle=None, _pid=None, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.Lock())


class RawRows(LazyHandle):
    """Rows of a C-order uint8 array stored raw in a file at a byte offset (a plain .npy
    such as a cache, an uncompressed npz member, a contiguous HDF5 dataset), read with
    ``os.preadv`` straight into the batch (the page cache is shared between processes):
    nothing is mapped or cached, so memory stays one batch whatever the file size."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...]):
        super().__init__()
        self.path, self.offset, self.shape = path, offset, tuple(shape)
        self.row_bytes = int(np.prod(shape[1:]))
        size, needed = path.stat().st_size, offset + shape[0] * self.row_bytes
        if size < needed:
            raise DataError(f"{path}: file is truncated ({size} bytes, the array needs {needed}); "
                            f"download it again")

    def _open(self):
        return os.open(self.path, os.O_RDONLY)

    def _close(self, fd) -> None:
        os.close(fd)

    def read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices),) + self.shape[1:], np.uint8)
        buffer, fd, rb = memoryview(out.reshape(-1)), self._handle_open(), self.row_bytes
        for pos, first, count in _runs(indices):
            view, at = buffer[pos * rb:(pos + count) * rb], self.offset + first * rb
            while len(view):
                got = os.preadv(fd, [view], at)
                if got == 0:
                    raise DataError(f"{self.path}: file ends inside row {first}: truncated")
                view, at = view[got:], at + got
        return out


class _PackedBinaryRows:
    """A binary (0/1) image array held in memory as bits: 8x smaller than uint8.
    For compressed npz members, which cannot be read row by row (dSprites)."""

    def __init__(self, path: Path, key: str, shape: tuple[int, ...]):
        self.shape = tuple(shape)
        row_bytes = int(np.prod(shape[1:]))
        self.packed = np.empty((shape[0], row_bytes // 8), np.uint8)
        start = 0
        for block in _image_blocks(path, key, shape):
            if block.max(initial=0) > 1:
                raise DataError(f"{path}: key {key!r} holds values above 1; expected binary 0/1 images")
            self.packed[start:start + len(block)] = np.packbits(block.reshape(len(block), -1), axis=1)
            start += len(block)

    def read(self, indices: np.ndarray) -> np.ndarray:
        return np.unpackbits(self.packed[indices], axis=1).reshape((len(indices),) + self.shape[1:])


def _read_npy_header(f) -> tuple[np.dtype, tuple[int, ...], bool]:
    version = npy_format.read_magic(f)
    reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    shape, fortran, dtype = reader(f)
    return dtype, shape, fortran


def corrupt(path: Path, kind: str, err: Exception) -> DataError:
    """One line for a file that cannot be read, with the fix for the actual cause: a
    permission, a directory, a .npy under another name, else truncation or corruption."""
    path = Path(path)
    if isinstance(err, PermissionError):
        return DataError(f"{path}: permission denied; make it readable (chmod a+r {path}) or copy it elsewhere")
    if path.is_dir():
        return DataError(f"{path}: is a directory, expected the {kind} file; put the file itself there")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError:
        magic = b""
    if magic == b"\x93NUMPY" and kind != "npy":
        return DataError(f"{path}: is a single .npy array, not a {kind} file; keep the original {kind} file "
                         f"(a converted copy is looked for under its own *_<key>.npy name)")
    return DataError(f"{path}: not a readable {kind} file ({type(err).__name__}: {err}); "
                     f"it is truncated or corrupt, download it again")


def missing_key(path: Path, key: str, found) -> DataError:
    return DataError(f"{path}: has no key {key!r} (found: {', '.join(sorted(found)) or 'nothing'})")


def _image_header(path: Path, key: str):
    """(dtype, shape, fortran order, byte offset of the raw data or None) of the image
    array ``key`` in an .npz, .npy or .h5 file, without reading the data."""
    try:
        if path.suffix == ".npy":
            with open(path, "rb") as f:
                return (*_read_npy_header(f), f.tell())
        if path.suffix == ".h5":
            with open_h5(path) as f:
                if key not in f:
                    raise missing_key(path, key, f.keys())
                dataset = f[key]
                if not hasattr(dataset, "dtype"):
                    raise DataError(f"{path}: key {key!r} is an HDF5 group, expected an array")
                # Contiguous and unfiltered: the C-order rows lie raw at one offset (None
                # until written), readable in place like a .npy.
                raw = dataset.chunks is None and dataset.compression is None and not dataset.external
                return dataset.dtype, dataset.shape, False, dataset.id.get_offset() if raw else None
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(key + ".npy")
            except KeyError:
                raise missing_key(path, key, [n.removesuffix(".npy") for n in zf.namelist()]) from None
            with zf.open(info) as member:
                dtype, shape, fortran = _read_npy_header(member)
                header_bytes = member.tell()
            if info.compress_type != zipfile.ZIP_STORED:
                return dtype, shape, fortran, None
            # The member's data start after its local file header: 30 bytes + name + extra field.
            with open(path, "rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)
            if local[:4] != b"PK\x03\x04":
                raise DataError(f"{path}: zip entry {info.filename} has no local header: corrupt file")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            return dtype, shape, fortran, info.header_offset + 30 + name_len + extra_len + header_bytes
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error, struct.error) as err:
        raise corrupt(path, path.suffix.lstrip(".") or "data", err) from err


def _image_blocks(path: Path, key: str, shape: tuple[int, ...], block_bytes: int = 8 << 20):
    """Stream the image array ``key`` in blocks of rows (decompressing as it goes). A block
    is valid until the next one is asked for (HDF5 blocks share one buffer)."""
    row_bytes = int(np.prod(shape[1:]))
    rows_per_block = max(1, block_bytes // row_bytes)
    try:
        if path.suffix == ".h5":
            with open_h5(path) as f:
                dataset = f[key]
                if dataset.chunks:
                    # Whole bands of chunks along the rows: each chunk is decompressed once
                    # (Shapes3D's chunks span 15,000 rows: 184 MB blocks).
                    band = dataset.chunks[0]
                    rows_per_block = -(-rows_per_block // band) * band
                buffer = np.empty((min(rows_per_block, shape[0]),) + tuple(shape[1:]), np.uint8)
                for start in range(0, shape[0], rows_per_block):
                    count = min(rows_per_block, shape[0] - start)
                    dataset.read_direct(buffer, np.s_[start:start + count], np.s_[:count])
                    yield buffer[:count]
            return
        with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as member:
            _read_npy_header(member)
            for start in range(0, shape[0], rows_per_block):
                count = min(rows_per_block, shape[0] - start)
                raw = member.read(count * row_bytes)
                if len(raw) != count * row_bytes:
                    raise DataError(f"{path}: key {key!r} ends at row {start + len(raw) // row_bytes} "
                                    f"of {shape[0]}: truncated")
                yield np.frombuffer(raw, np.uint8).reshape((count,) + tuple(shape[1:]))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error, RuntimeError) as err:
        raise corrupt(path, path.suffix.lstrip("."), err) from err


def open_h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise corrupt(path, "HDF5", err) from err


def require(path: Path, name: str, variant: str, data_dir) -> None:
    if not path.exists():
        raise DataError(f"{path} is missing: {how_to_get(name, variant, data_dir)}")


def open_images(path: Path, key: str, sizes: tuple[int, ...], row_shape: tuple[int, ...], *,
                 name: str, variant: str, data_dir, binary: bool = False, cache_dir=None):
    """A row reader for the image array ``key`` of ``path``: in place where its rows are
    stored raw, as bits in memory for binary images, else from a raw .npy cache, which is
    built first (once) when there is no valid one (``data_cache``)."""
    require(path, name, variant, data_dir)
    dtype, shape, fortran, offset = _image_header(path, key)
    expected = int(np.prod(sizes))
    if dtype != np.uint8:
        raise DataError(f"{path}: key {key!r} has dtype {dtype}, expected uint8")
    if tuple(shape[1:]) != row_shape or len(shape) != len(row_shape) + 1:
        raise DataError(f"{path}: key {key!r} has shape {tuple(shape)}, expected (N, "
                        f"{', '.join(map(str, row_shape))}) images")
    if shape[0] != expected:
        raise DataError(f"{path}: key {key!r} holds {shape[0]} images, but the factor sizes "
                        f"{tuple(sizes)} multiply to {expected}")
    if fortran:
        raise DataError(f"{path}: key {key!r} is stored in Fortran order; expected C order")
    if offset is not None:
        return RawRows(path, offset, shape)
    if binary:
        return _PackedBinaryRows(path, key, shape)
    spec = image_cache_spec(path, key, shape, name, variant, data_dir)
    cache, offset = data_cache.open_cache(spec, cache_dir)
    return RawRows(cache, offset, spec.shape)


def image_cache_spec(path: Path, key: str, shape: tuple[int, ...], name: str, variant: str,
                     data_dir) -> data_cache.CacheSpec:
    """The cache of the image array ``key`` of ``path`` (N, H, W, C), stored (N, C, H, W): the
    layout batches are handed out in, so a read is one gather, no transposing copy (that
    copy cost more than the reads). Valid while the file keeps its size and mtime."""
    stat = path.stat()
    chw = (shape[0], shape[3], shape[1], shape[2])
    return data_cache.CacheSpec(
        source=path, stem=f"{path.stem}_{key}_nchw", shape=chw,
        fingerprint={"file": path.name, "key": key, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        blocks=lambda: (block.transpose(0, 3, 1, 2) for block in _image_blocks(path, key, shape)),
        command=_command("cache", name, variant, data_dir))


def cache_images(name: str, data_dir=None, variant: str = "real", cache_dir=None) -> Path:
    """Build the cache of a real factor dataset's images ahead of time (``python datasets.py
    cache NAME``) and return it; return the source itself where its rows are read in place
    or held in memory (a stored npz member, a contiguous HDF5 dataset, dSprites' bits)."""
    check_choice("dataset", name, FACTOR_DATASETS)
    check_choice("MPI3D variant", variant, MPI3D_VARIANTS)
    path, key = image_file(name, resolve_data_dir(data_dir), variant)
    require(path, name, variant, data_dir)
    dtype, shape, fortran, offset = _image_header(path, key)
    if dtype != np.uint8 or fortran:
        raise DataError(f"{path}: key {key!r} has dtype {dtype}{' in Fortran order' if fortran else ''}, "
                        f"expected C-order uint8")
    if offset is not None:
        print(f"{path}: key {key!r} is stored raw and is read in place; no cache needed")
        return path
    if name == "dsprites":
        print(f"{path}: binary images are held in memory as bits ({np.prod(shape) / 8e9:.2f} GB); no cache needed")
        return path
    spec = image_cache_spec(path, key, tuple(shape), name, variant, data_dir)
    return data_cache.open_cache(spec, cache_dir)[0]


# =====================================================================================
# Pickled metadata, read without running code
# =====================================================================================
# What a pickle of plain data with NumPy arrays refers to (Python 2 and 3, NumPy 1 and 2):
# arrays are rebuilt from their bytes, never by calling arbitrary objects.
_PLAIN_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),          # how protocol 2 writes bytes from Python 3: str -> bytes only
}


class UnsafePickle(DataError):
    """A pickle refers to something other than plain containers, numbers, strings and arrays."""


def safe_unpickle(data: bytes):
    """Unpickle ``data`` allowing only plain containers, numbers, strings and NumPy arrays
    (Python 2 pickles too: latin1 strings). Anything else — a class, a function such as
    os.system — raises UnsafePickle before it can be called."""
    import io
    import pickle

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in _PLAIN_GLOBALS:
                raise UnsafePickle(f"it refers to {module}.{name}, which is not plain data")
            if module == "_codecs":
                import codecs
                return codecs.encode
            if name in ("_reconstruct", "scalar"):
                core = getattr(np, "_core", None) or np.core
                return getattr(core.multiarray, name)
            return getattr(np, name)

    try:
        return Restricted(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickle:
        raise
    except Exception as err:       # a truncated or garbled stream raises many types
        raise UnsafePickle(f"it is not a readable pickle ({type(err).__name__}: {err})") from None


def read_npz_pickled(path: Path, key: str):
    """The object array ``key`` of an npz file, unpickled by ``safe_unpickle`` (np.load
    would need allow_pickle=True, which runs whatever a crafted file holds)."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as member:
            dtype, _, _ = _read_npy_header(member)
            payload = member.read()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error, KeyError) as err:
        raise corrupt(path, "npz", err) from err
    if not dtype.hasobject:
        return np.frombuffer(payload, dtype)
    try:
        return safe_unpickle(payload)
    except UnsafePickle as err:
        raise UnsafePickle(f"{path}: key {key!r} was not unpickled: {err}; this is not the published "
                           f"file (it could run code when loaded), download it again") from None


def open_npz(path: Path):
    """np.load of an npz file without pickles; a plain .npy under an .npz name, or any other
    unreadable file, is one DataError line."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise corrupt(path, "npz", err) from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: is a single .npy array saved under an .npz name, not an npz archive of "
                        f"named arrays; download the original file again")
    return npz
