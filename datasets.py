"""Ground-truth datasets: one interface for real files and procedural stand-ins.

Every dataset hands out images as uint8 arrays of shape (n, C, 64, 64) with values
0..255 (dSprites' 0/1 pixels are scaled to 0/255), so every consumer converts with
``x / 255`` the same way. Factor datasets also hand out integer factor classes; the
image index is the row-major index over the factor grid (``np.ravel_multi_index``),
as in the original files (REFERENCE.md §2).

Pick a dataset with ``load_dataset(name, source)``: ``source="real"`` reads the
published files from the data directory, ``source="standin"`` renders procedural
images with exactly the real factor names and sizes (``standins.py``; no downloads, for
demos and tests). Real files are never loaded whole: rows are read on demand
(``os.preadv`` at the array's byte offset inside the file, h5py for HDF5, JPEG decoding
for CelebA); only dSprites, whose npz member is compressed, is held in memory,
bit-packed (377 MB instead of 3 GB as uint8).

Command line: ``python datasets.py {download,convert,info} NAME``.

This module knows nothing of models: it stays on NumPy (h5py and imageio are imported
only where a file needs them) so that metrics and data tests run without torch.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import struct
import sys
import threading
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

IMAGE_SIZE = 64
DATASET_NAMES = ("dsprites", "shapes3d", "mpi3d", "celeba")
FACTOR_DATASETS = ("dsprites", "shapes3d", "mpi3d")
SOURCES = ("standin", "real")
MPI3D_VARIANTS = ("toy", "realistic", "real")
DATA_DIR_ENV = "DISENT_DATA_DIR"

# Factor names and sizes in the order of the files' row-major index (REFERENCE.md §2).
FACTORS = {
    "dsprites": (("shape", "scale", "orientation", "posX", "posY"), (3, 6, 40, 32, 32)),
    "shapes3d": (("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
                 (10, 10, 10, 8, 4, 15)),
    "mpi3d": (("object_color", "object_shape", "object_size", "camera_height", "background_color",
               "horizontal_axis", "vertical_axis"), (6, 6, 2, 3, 3, 40, 40)),
}
CHANNELS = {"dsprites": 1, "shapes3d": 3, "mpi3d": 3, "celeba": 3}
CELEBA_CROP = 148   # center crop before resizing to 64, as in PyTorch-VAE (the MINE repo's base)


class DataError(Exception):
    """A dataset file or setting is wrong; the message names it and says what to do."""


class GroundTruthDataset:
    """Images indexed row-major over a grid of discrete factors of variation.

    Subclasses implement ``_images(indices)`` for sorted, unique, in-range int64
    indices; this base class owns the factor state space (index <-> classes,
    sampling), so metrics and figures need nothing dataset-specific. A dataset
    without a factor grid (CelebA) sets ``has_factors = False`` and ``__len__``.
    """

    name: str = "dataset"
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    channels: int = 1
    has_factors: bool = True
    source: str = ""          # "real" or "standin"
    location: str = ""        # the file it reads, or "procedural"

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    # --- index <-> factor classes -------------------------------------------------
    def index_to_factors(self, indices) -> np.ndarray:
        """Factor classes (n, K) int64 of row-major image indices."""
        self._require_factors()
        indices = self._check_indices(indices)
        return np.stack(np.unravel_index(indices, self.factor_sizes), axis=1).astype(np.int64)

    def factors_to_index(self, factors) -> np.ndarray:
        """Row-major image indices (n,) int64 of factor classes (n, K)."""
        self._require_factors()
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise DataError(
                f"{self.name}: factor classes must have shape (n, {self.num_factors}), got {factors.shape}")
        sizes = np.asarray(self.factor_sizes)
        if (factors < 0).any() or (factors >= sizes).any():
            raise DataError(f"{self.name}: factor classes out of range for sizes {self.factor_sizes}")
        return np.ravel_multi_index(tuple(factors.T), self.factor_sizes).astype(np.int64)

    # --- sampling -------------------------------------------------------------------
    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor-class vectors drawn uniformly and independently per factor."""
        self._require_factors()
        return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample_fixed_factor(self, n: int, factor: int, rng: np.random.Generator) -> np.ndarray:
        """n factor-class vectors that share one random value of ``factor``; the
        other factors are drawn uniformly (the batches of the Z-diff / Z-min Var
        metrics, Higgins et al. 2017; Kim & Mnih 2018)."""
        self._require_factors()
        if not 0 <= factor < self.num_factors:
            raise DataError(f"{self.name}: factor index {factor} out of range 0..{self.num_factors - 1}")
        classes = self.sample_factors(n, rng)
        classes[:, factor] = rng.integers(0, self.factor_sizes[factor])
        return classes

    # --- images ----------------------------------------------------------------------
    def images(self, indices) -> np.ndarray:
        """uint8 images (n, C, 64, 64), C-contiguous, for any int indices, in the order given."""
        indices = self._check_indices(indices)
        if indices.size == 0:
            return np.zeros((0, self.channels, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        # Readers are fastest (h5py, pread, mmap) on sorted unique rows; restore order after.
        unique, inverse = np.unique(indices, return_inverse=True)
        return np.ascontiguousarray(self._images(unique)[inverse.reshape(-1)])

    def images_from_factors(self, factors) -> np.ndarray:
        """uint8 images (n, C, 64, 64) of factor classes (n, K)."""
        return self.images(self.factors_to_index(factors))

    def factors(self, indices) -> np.ndarray:
        """Integer factor classes (n, K) of the images at ``indices``."""
        return self.index_to_factors(indices)

    def _images(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _require_factors(self) -> None:
        if not self.has_factors:
            raise DataError(f"{self.name} has no factor grid: factor metrics do not apply to it")

    def _check_indices(self, indices) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.size == 0:
            return np.zeros(0, np.int64)
        if indices.dtype.kind not in "iu":
            raise DataError(f"{self.name}: image indices must be integers, got dtype {indices.dtype}")
        indices = indices.astype(np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise DataError(f"{self.name}: image index out of range 0..{len(self) - 1}")
        return indices

    def __repr__(self) -> str:
        grid = ", ".join(f"{n}={s}" for n, s in zip(self.factor_names, self.factor_sizes))
        grid = grid or "no factor grid"
        source = f", {self.source}" if self.source else ""
        return f"{type(self).__name__}({self.name}{source}, {len(self)} images, C={self.channels}, {grid})"


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
    """The data directory: the argument, else $DISENT_DATA_DIR, else data/ next to this file."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return Path(__file__).resolve().parent / "data"


def _mpi3d_candidates(root: Path, variant: str) -> list[Path]:
    names = [f"mpi3d_{variant}.npz"] + (["real.npz"] if variant == "real" else [])
    return [root / n for n in names]


def _mpi3d_path(root: Path, variant: str) -> Path:
    """The MPI3D npz in use: the first candidate present (or converted), else the default name."""
    for path in _mpi3d_candidates(root, variant):
        if path.exists() or _converted_path(path, "images").exists():
            return path
    return _mpi3d_candidates(root, variant)[0]


def missing_files(name: str, data_dir=None, variant: str = "real") -> list[str]:
    """The expected paths of the real files of ``name`` that are missing (empty if present)."""
    _check_choice("dataset", name, DATASET_NAMES)
    _check_choice("MPI3D variant", variant, MPI3D_VARIANTS)
    root = resolve_data_dir(data_dir)
    if name == "celeba":
        folder = root / CELEBA_DIR
        present = (folder / "img_align_celeba").is_dir() or (folder / "img_align_celeba.zip").exists()
        return [] if present else [str(folder / "img_align_celeba.zip")]
    if name == "mpi3d":
        path = _mpi3d_path(root, variant)
        return [] if path.exists() or _converted_path(path, "images").exists() else [str(path)]
    path = root / remote_file(name).filename
    return [] if path.exists() else [str(path)]


def how_to_get(name: str, variant: str = "real", data_dir=None) -> str:
    """One line: the download command and where to put the file by hand."""
    _check_choice("dataset", name, DATASET_NAMES)
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
    _check_choice("dataset", name, DATASET_NAMES)
    _check_choice("MPI3D variant", variant, MPI3D_VARIANTS)
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


class _LazyHandle:
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


class _RawRows(_LazyHandle):
    """Rows of a C-order uint8 array stored raw in a file at a byte offset (a plain .npy,
    or an uncompressed npz member), read with ``os.preadv`` straight into the batch:
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


class _H5Rows(_LazyHandle):
    """Rows of an HDF5 dataset; contiguous runs are read as slices (h5py is slow on
    scattered single rows of chunked data)."""

    def __init__(self, path: Path, key: str, shape: tuple[int, ...]):
        super().__init__()
        self.path, self.key, self.shape = path, key, tuple(shape)

    def _open(self):
        return _open_h5(self.path)

    def read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices),) + self.shape[1:], np.uint8)
        dataset = self._handle_open()[self.key]
        try:
            for pos, first, count in _runs(indices):
                dataset.read_direct(out, np.s_[first:first + count], np.s_[pos:pos + count])
        except (OSError, ValueError, RuntimeError) as err:
            raise DataError(f"{self.path}: cannot read key {self.key!r} rows ({err}): corrupt file?") from err
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


def _corrupt(path: Path, kind: str, err: Exception) -> DataError:
    return DataError(f"{path}: not a readable {kind} file ({type(err).__name__}: {err}); "
                     f"it is truncated or corrupt, download it again")


def _missing_key(path: Path, key: str, found) -> DataError:
    return DataError(f"{path}: has no key {key!r} (found: {', '.join(sorted(found)) or 'nothing'})")


def _image_header(path: Path, key: str):
    """(dtype, shape, fortran order, byte offset of the raw data or None) of the image
    array ``key`` in an .npz, .npy or .h5 file, without reading the data."""
    try:
        if path.suffix == ".npy":
            with open(path, "rb") as f:
                return (*_read_npy_header(f), f.tell())
        if path.suffix == ".h5":
            with _open_h5(path) as f:
                if key not in f:
                    raise _missing_key(path, key, f.keys())
                if not hasattr(f[key], "dtype"):
                    raise DataError(f"{path}: key {key!r} is an HDF5 group, expected an array")
                return f[key].dtype, f[key].shape, False, None
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(key + ".npy")
            except KeyError:
                raise _missing_key(path, key, [n.removesuffix(".npy") for n in zf.namelist()]) from None
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
        raise _corrupt(path, path.suffix.lstrip(".") or "data", err) from err


def _image_blocks(path: Path, key: str, shape: tuple[int, ...], block_bytes: int = 8 << 20):
    """Stream the image array ``key`` in blocks of rows (decompressing as it goes)."""
    row_bytes = int(np.prod(shape[1:]))
    rows_per_block = max(1, block_bytes // row_bytes)
    try:
        if path.suffix == ".h5":
            with _open_h5(path) as f:
                for start in range(0, shape[0], rows_per_block):
                    yield f[key][start:start + rows_per_block]
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
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as err:
        raise _corrupt(path, path.suffix.lstrip("."), err) from err


def _open_h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise _corrupt(path, "HDF5", err) from err


def _converted_path(path: Path, key: str) -> Path:
    """The plain .npy that ``python datasets.py convert`` writes next to ``path``."""
    return path.with_name(f"{path.stem}_{key}.npy")


def _require(path: Path, name: str, variant: str, data_dir) -> None:
    if not path.exists():
        raise DataError(f"{path} is missing: {how_to_get(name, variant, data_dir)}")


def _open_images(path: Path, key: str, sizes: tuple[int, ...], row_shape: tuple[int, ...], *,
                 name: str, variant: str, data_dir, binary: bool = False):
    """A row reader for the image array ``key`` of ``path`` (or of its converted .npy)."""
    converted = _converted_path(path, key)
    source = converted if converted.exists() else path
    _require(source, name, variant, data_dir)
    dtype, shape, fortran, offset = _image_header(source, key)
    expected = int(np.prod(sizes))
    if dtype != np.uint8:
        raise DataError(f"{source}: key {key!r} has dtype {dtype}, expected uint8")
    if tuple(shape[1:]) != row_shape or len(shape) != len(row_shape) + 1:
        raise DataError(f"{source}: key {key!r} has shape {tuple(shape)}, expected (N, "
                        f"{', '.join(map(str, row_shape))}) images")
    if shape[0] != expected:
        raise DataError(f"{source}: key {key!r} holds {shape[0]} images, but the factor sizes "
                        f"{tuple(sizes)} multiply to {expected}")
    if fortran:
        raise DataError(f"{source}: key {key!r} is stored in Fortran order; expected C order")
    if offset is not None:
        return _RawRows(source, offset, shape)
    if source.suffix == ".h5":
        return _H5Rows(source, key, shape)
    if binary:
        return _PackedBinaryRows(source, key, shape)
    raise DataError(f"{source}: key {key!r} is stored compressed, so its {shape[0] * np.prod(row_shape) / 1e9:.1f} "
                    f"GB cannot be read row by row; run `{_command('convert', name, variant, data_dir)}` "
                    f"once (it writes a plain {converted.name})")


def _check_classes_match_index(path: Path, key: str, rows: np.ndarray, classes: np.ndarray,
                               sizes: tuple[int, ...]) -> None:
    """The file's factor classes at ``rows`` must be the row-major classes of ``rows``."""
    expected = np.stack(np.unravel_index(rows, sizes), axis=1)
    bad = np.flatnonzero((classes != expected).any(axis=1))
    if bad.size:
        r = int(rows[bad[0]])
        raise DataError(f"{path}: key {key!r} row {r} has factor classes {classes[bad[0]].tolist()}, but "
                        f"row-major order over sizes {tuple(sizes)} puts {expected[bad[0]].tolist()} there; "
                        f"the file is not in the expected factor order")


def _sample_rows(n: int, count: int = 4096) -> np.ndarray:
    """Sorted rows to spot-check a file: the first, the last and a fixed random sample."""
    rows = np.random.default_rng(0).integers(0, n, size=min(count, n))
    return np.unique(np.concatenate(([0, n - 1], rows)))


def _read_npz_array(npz, path: Path, key: str) -> np.ndarray:
    if key not in npz.files:
        raise _missing_key(path, key, npz.files)
    try:
        return npz[key]
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as err:
        raise _corrupt(path, "npz", err) from err


# =====================================================================================
# Real datasets
# =====================================================================================
class FileDataset(GroundTruthDataset):
    """A factor dataset read from its published file, rows on demand."""

    source = "real"

    def __init__(self, name: str, sizes: tuple[int, ...], store, location: Path, binary: bool = False,
                 variant: str | None = None):
        self.name, self.factor_names, self.factor_sizes = name, FACTORS[name][0], tuple(sizes)
        self.channels, self.location, self.variant = CHANNELS[name], str(location), variant
        self._store, self._binary = store, binary

    def _images(self, indices):
        rows = self._store.read(indices)
        if self._binary:
            rows *= 255     # 0/1 -> 0/255, so every dataset converts with x / 255
        return rows[:, None] if rows.ndim == 3 else rows.transpose(0, 3, 1, 2)


def _grid_sizes(name: str, factor_sizes) -> tuple[int, ...]:
    names, default = FACTORS[name]
    if factor_sizes is None:
        return default
    sizes = tuple(int(s) for s in factor_sizes)
    if len(sizes) != len(default) or min(sizes) < 1:
        raise DataError(f"{name}: factor_sizes must be {len(default)} positive sizes for "
                        f"({', '.join(names)}), got {tuple(factor_sizes)}")
    return sizes


def _load_dsprites(root: Path, sizes, variant, data_dir) -> FileDataset:
    path = root / DSPRITES_FILE
    _require(path, "dsprites", variant, data_dir)
    try:
        # The metadata is a Python-2 pickle: it needs allow_pickle and latin1 to load.
        npz = np.load(path, allow_pickle=True, encoding="latin1")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise _corrupt(path, "npz", err) from err
    with npz:
        classes = _read_npz_array(npz, path, "latents_classes")
        metadata = _read_npz_array(npz, path, "metadata")[()] if "metadata" in npz.files else {}
    n = int(np.prod(sizes))
    if classes.dtype.kind not in "iu" or classes.shape != (n, len(sizes) + 1):
        raise DataError(f"{path}: key 'latents_classes' has dtype {classes.dtype} and shape {classes.shape}, "
                        f"expected integers of shape ({n}, {len(sizes) + 1}) (colour + {len(sizes)} factors)")
    meta_sizes = metadata.get("latents_sizes") if isinstance(metadata, dict) else None
    if meta_sizes is not None and tuple(np.asarray(meta_sizes)[1:]) != tuple(sizes):
        raise DataError(f"{path}: metadata latents_sizes {np.asarray(meta_sizes).tolist()} do not match the factor "
                        f"sizes (1,) + {tuple(sizes)}")
    rows = _sample_rows(n)
    _check_classes_match_index(path, "latents_classes", rows, classes[rows, 1:], sizes)   # column 0: colour
    store = _open_images(path, "imgs", sizes, (IMAGE_SIZE, IMAGE_SIZE), name="dsprites", variant=variant,
                         data_dir=data_dir, binary=True)
    if store.read(rows[:256]).max(initial=0) > 1:
        raise DataError(f"{path}: key 'imgs' holds values above 1; expected binary 0/1 images")
    return FileDataset("dsprites", sizes, store, path, binary=True)


def _load_shapes3d(root: Path, sizes, variant, data_dir) -> FileDataset:
    path = root / SHAPES3D_FILE
    _require(path, "shapes3d", variant, data_dir)
    with _open_h5(path) as f:
        if "labels" not in f:
            raise _missing_key(path, "labels", f.keys())
        try:
            labels = f["labels"][()]
        except (OSError, ValueError) as err:
            raise _corrupt(path, "HDF5", err) from err
    n = int(np.prod(sizes))
    if labels.dtype.kind != "f" or labels.shape != (n, len(sizes)):
        raise DataError(f"{path}: key 'labels' has dtype {labels.dtype} and shape {labels.shape}, "
                        f"expected float factor values of shape ({n}, {len(sizes)})")
    # Labels are factor values; a value's class is its rank among the column's values.
    rows = _sample_rows(n)
    classes = np.empty((len(rows), len(sizes)), np.int64)
    for j, (factor, size) in enumerate(zip(FACTORS["shapes3d"][0], sizes)):
        column = np.round(labels[:, j], 6)
        values = np.unique(column)
        if len(values) != size:
            raise DataError(f"{path}: key 'labels' column {j} ({factor}) has {len(values)} distinct "
                            f"values, expected {size}")
        classes[:, j] = np.searchsorted(values, column[rows])
    _check_classes_match_index(path, "labels", rows, classes, sizes)
    store = _open_images(path, "images", sizes, (IMAGE_SIZE, IMAGE_SIZE, 3), name="shapes3d",
                         variant=variant, data_dir=data_dir)
    return FileDataset("shapes3d", sizes, store, path)


def _load_mpi3d(root: Path, sizes, variant, data_dir) -> FileDataset:
    # No labels in the file: the factors are the row-major classes of the index.
    path = _mpi3d_path(root, variant)
    store = _open_images(path, "images", sizes, (IMAGE_SIZE, IMAGE_SIZE, 3), name="mpi3d",
                         variant=variant, data_dir=data_dir)
    return FileDataset("mpi3d", sizes, store, store.path, variant=variant)


class CelebA(GroundTruthDataset):
    """Aligned CelebA (178x218 JPEGs) center-cropped to ``crop`` and area-resized to
    64x64, from ``img_align_celeba/`` or ``img_align_celeba.zip``; the 40 binary
    attributes come from ``list_attr_celeba.txt`` when present. No factor grid."""

    name, channels, has_factors, source = "celeba", 3, False, "real"

    def __init__(self, root: Path, crop: int = CELEBA_CROP, data_dir=None):
        folder, archive = root / "img_align_celeba", root / "img_align_celeba.zip"
        self._crop, self._archive = crop, None
        if folder.is_dir():
            self.location = str(folder)
            self._members = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".jpg")
        elif archive.exists():
            self.location, self._archive = str(archive), _ZipReader(archive)
            try:
                with zipfile.ZipFile(archive) as zf:
                    self._members = sorted(m for m in zf.namelist() if m.lower().endswith(".jpg"))
            except (zipfile.BadZipFile, OSError) as err:
                raise _corrupt(archive, "zip", err) from err
        else:
            raise DataError(f"{archive} is missing: {how_to_get('celeba', data_dir=data_dir)}")
        if not self._members:
            raise DataError(f"{self.location}: holds no .jpg images")
        self.attribute_names, self._attributes = _read_celeba_attributes(
            root / "list_attr_celeba.txt", [Path(m).name for m in self._members])

    def __len__(self) -> int:
        return len(self._members)

    def attributes(self, indices) -> np.ndarray:
        """The 40 binary attributes (n, 40) uint8 0/1 (CelebA's -1/1) of the images."""
        if self._attributes is None:
            raise DataError(f"{self.location}: list_attr_celeba.txt is missing next to it; no attributes")
        return self._attributes[self._check_indices(indices)]

    def _images(self, indices):
        out = np.empty((len(indices), 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        for i, index in enumerate(indices.tolist()):
            member = self._members[index]
            where = f"{self.location}:{member}" if self._archive else str(Path(self.location) / member)
            data = self._archive.read(member) if self._archive else Path(where).read_bytes()
            out[i] = _crop_resize(_decode_jpeg(data, where), self._crop)
        return out


class _ZipReader(_LazyHandle):
    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def _open(self):
        return zipfile.ZipFile(self.path)

    def read(self, member: str) -> bytes:
        try:
            return self._handle_open().read(member)
        except (zipfile.BadZipFile, OSError, zlib.error) as err:
            raise _corrupt(self.path, "zip", err) from err


def _decode_jpeg(data: bytes, where: str) -> np.ndarray:
    import imageio.v3 as iio

    try:
        image = iio.imread(data, plugin="pillow", extension=".jpg")
    except Exception as err:    # imageio's plugins raise many types for a broken JPEG
        raise DataError(f"{where}: cannot decode JPEG ({err})") from err
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


def _crop_resize(image: np.ndarray, crop: int) -> np.ndarray:
    """Center crop to ``crop`` (or the shorter side), then area-average to 64x64: (3, 64, 64)."""
    h, w = image.shape[:2]
    side = min(crop, h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top:top + side, left:left + side].astype(np.float32)
    m = _area_matrix(side, IMAGE_SIZE)
    resized = np.tensordot(np.tensordot(m, square, axes=(1, 0)), m, axes=(1, 1))   # (64, 3, 64)
    resized = resized.transpose(1, 0, 2)
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights: each output pixel averages the source pixels it covers."""
    step = src / dst
    lo = np.arange(dst)[:, None] * step
    j = np.arange(src)[None, :]
    overlap = np.clip(np.minimum(lo + step, j + 1) - np.maximum(lo, j), 0, None)
    return (overlap / step).astype(np.float32)


def _read_celeba_attributes(path: Path, names: list[str]):
    """(attribute names, (n, 40) uint8 0/1 aligned with ``names``), or ((), None) without the file."""
    if not path.exists():
        return (), None
    lines = path.read_text().split("\n")
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and a line of attribute names")
    header = tuple(lines[1].split())
    body = [line for line in lines[2:] if line.strip()]
    expected = f"an image name and {len(header)} values -1/1 per line"
    try:    # numpy's C parser: a second for CelebA's 202,599 lines, not several
        table = np.loadtxt(body, usecols=range(1, len(header) + 1), dtype=np.int8, ndmin=2)
    except ValueError as err:
        raise DataError(f"{path}: expected {expected} ({err})") from err
    bad = np.flatnonzero(~np.isin(table, (-1, 1)).all(axis=1))
    if bad.size or table.shape != (len(body), len(header)):
        raise DataError(f"{path}: expected {expected}, line {bad[0] + 3 if bad.size else '?'} is not")
    row_of = {line.split(maxsplit=1)[0]: i for i, line in enumerate(body)}
    absent = [n for n in names if n not in row_of]
    if absent:
        raise DataError(f"{path}: has no attributes for {absent[0]} (and {len(absent) - 1} more images)")
    return header, ((table[[row_of[n] for n in names]] + 1) // 2).astype(np.uint8)


# =====================================================================================
# Choosing a dataset; command line
# =====================================================================================
_REAL_LOADERS = {"dsprites": _load_dsprites, "shapes3d": _load_shapes3d, "mpi3d": _load_mpi3d}


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise DataError(f"unknown {what} {value!r}: choose from {', '.join(choices)}")


def load_dataset(name: str, source: str = "standin", data_dir=None, *, variant: str = "real",
                 factor_sizes=None) -> GroundTruthDataset:
    """The dataset ``name`` from its real files (``source="real"``, read from
    ``resolve_data_dir(data_dir)``) or its procedural stand-in (``"standin"``).
    ``variant`` picks the MPI3D file (toy, realistic, real); ``factor_sizes``
    declares a reduced grid for small files in the real format (tests)."""
    _check_choice("dataset", name, DATASET_NAMES)
    _check_choice("source", source, SOURCES)
    _check_choice("MPI3D variant", variant, MPI3D_VARIANTS)
    if factor_sizes is not None and (source == "standin" or name == "celeba"):
        raise DataError(f"factor_sizes applies to real files of {', '.join(FACTOR_DATASETS)} only")
    if source == "standin":
        import standins     # here, not at the top: standins imports this module

        return standins.STANDINS[name]()
    root = resolve_data_dir(data_dir)
    if name == "celeba":
        return CelebA(root / CELEBA_DIR, data_dir=data_dir)
    return _REAL_LOADERS[name](root, _grid_sizes(name, factor_sizes), variant, data_dir)


def convert(name: str, data_dir=None, variant: str = "real") -> Path:
    """Stream the image array of a real file to a plain .npy next to it (atomic), which
    the loader then reads row by row: needed for a compressed MPI3D npz, a speed-up
    (a cache) for Shapes3D's chunked HDF5."""
    from tqdm import tqdm

    _check_choice("dataset", name, FACTOR_DATASETS)
    _check_choice("MPI3D variant", variant, MPI3D_VARIANTS)
    root = resolve_data_dir(data_dir)
    path, key = {"dsprites": (root / DSPRITES_FILE, "imgs"), "shapes3d": (root / SHAPES3D_FILE, "images"),
                 "mpi3d": (_mpi3d_path(root, variant), "images")}[name]
    _require(path, name, variant, data_dir)
    dest = _converted_path(path, key)
    dtype, shape, fortran, offset = _image_header(path, key)
    if dtype != np.uint8 or fortran:
        raise DataError(f"{path}: key {key!r} has dtype {dtype}{' in Fortran order' if fortran else ''}, "
                        f"expected C-order uint8")
    if offset is not None:
        print(f"{path}: key {key!r} is stored uncompressed and is read in place; nothing to convert")
        return path
    tmp = dest.with_name(dest.name + ".part")
    try:
        with open(tmp, "wb") as out, tqdm(total=shape[0], unit="img", desc=f"{path.name} -> {dest.name}") as bar:
            npy_format.write_array_header_1_0(
                out, {"descr": npy_format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                      "shape": tuple(shape)})
            for block in _image_blocks(path, key, shape):
                out.write(np.ascontiguousarray(block, np.uint8).data)
                bar.update(len(block))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def describe(dataset: GroundTruthDataset) -> str:
    """A few lines summarising a dataset (for ``python datasets.py info``)."""
    lines = [repr(dataset), f"  location: {dataset.location or '?'}"]
    for factor, size in zip(dataset.factor_names, dataset.factor_sizes):
        lines.append(f"  factor {factor}: {size} classes")
    if getattr(dataset, "attribute_names", ()):
        lines.append(f"  attributes: {', '.join(dataset.attribute_names)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Ground-truth datasets: download, convert, inspect.")
    commands = parser.add_subparsers(dest="command", required=True)
    for verb, help_text in (("download", "fetch the real file into the data directory"),
                            ("convert", "write a plain .npy of a compressed image array, once"),
                            ("info", "print a summary of a dataset")):
        sub = commands.add_parser(verb, help=help_text)
        sub.add_argument("name", choices=DATASET_NAMES if verb != "convert" else FACTOR_DATASETS)
        sub.add_argument("--variant", default="real", choices=MPI3D_VARIANTS, help="MPI3D file")
        sub.add_argument("--data-dir", default=None, help=f"default: ${DATA_DIR_ENV}, else data/")
        if verb == "info":
            sub.add_argument("--source", default="standin", choices=SOURCES)
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print(download(args.name, args.data_dir, args.variant))
        elif args.command == "convert":
            print(convert(args.name, args.data_dir, args.variant))
        else:
            print(describe(load_dataset(args.name, args.source, args.data_dir, variant=args.variant)))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the imported module, not __main__: standins subclasses datasets.GroundTruthDataset
    # and raises datasets.DataError, which a second copy of this module would not catch.
    import datasets

    sys.exit(datasets.main())
