"""The datasets of the study: one ``load_dataset`` for real files and procedural stand-ins.

Every dataset hands out images as uint8 arrays of shape (n, C, 64, 64) with values
0..255 (dSprites' 0/1 pixels are scaled to 0/255), so every consumer converts with
``x / 255`` the same way. Factor datasets also hand out integer factor classes through
the state space of ``ground_truth.GroundTruthDataset`` (docs/datasets.md).

``load_dataset(name, source)``: ``source="real"`` reads the published files from the
data directory (``lbvae/data/files.py`` finds them and reads their rows on demand; each
loader here checks a file's keys, shapes and factor order before use),
``source="standin"`` renders procedural images with exactly the real factor names and
sizes (``lbvae/data/standins.py``; no downloads, for demos and tests).

Real sources whose rows cannot be read fast (Shapes3D's gzip-chunked HDF5, a compressed
MPI3D npz, CelebA's JPEGs) are copied once to a raw uint8 .npy cache, next to the data or
in ``cache_dir`` / ``$DISENT_CACHE_DIR`` (``lbvae/data/cache.py``); batches are then read from it.

Command line: ``python datasets.py {download,cache,info} NAME``.

This module knows nothing of models: it stays on NumPy (h5py and imageio are imported
only where a file needs them) so that metrics and data tests run without torch.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

from lbvae.data import cache as data_cache
from lbvae.data import files as data_files
from lbvae.data import standins
from lbvae.data.cache import CACHE_DIR_ENV
from lbvae.data.files import (
    CELEBA_DIR,
    DATA_DIR_ENV,
    DSPRITES_FILE,
    SHAPES3D_FILE,
    LazyHandle,
    cache_images,
    check_choice,
    corrupt,
    download,
    how_to_get,
    image_file,
    missing_key,
    mpi3d_path,
    open_h5,
    open_images,
    require,
    resolve_data_dir,
)
from lbvae.data.ground_truth import (
    CHANNELS,
    DATASET_NAMES,
    FACTOR_DATASETS,
    FACTORS,
    IMAGE_SIZE,
    MPI3D_VARIANTS,
    SOURCES,
    DataError,
    GroundTruthDataset,
)

CELEBA_CROP = 148   # center crop before resizing to 64, as in PyTorch-VAE (the MINE repo's base)


# =====================================================================================
# Checks of a real file's factor annotations
# =====================================================================================
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
        raise missing_key(path, key, npz.files)
    try:
        return npz[key]
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as err:
        raise corrupt(path, "npz", err) from err



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
        self.read_from = str(getattr(store, "path", location))     # a cache, or the file itself

    def _images(self, indices):
        rows = self._store.read(indices)
        if self._binary:
            rows *= 255     # 0/1 -> 0/255, so every dataset converts with x / 255
        if rows.ndim == 3:
            return rows[:, None]
        # Published files are (N, H, W, C); caches are stored (N, C, H, W) already.
        return rows if rows.shape[1:] == (self.channels, IMAGE_SIZE, IMAGE_SIZE) else rows.transpose(0, 3, 1, 2)


def _grid_sizes(name: str, factor_sizes) -> tuple[int, ...]:
    names, default = FACTORS[name]
    if factor_sizes is None:
        return default
    sizes = tuple(int(s) for s in factor_sizes)
    if len(sizes) != len(default) or min(sizes) < 1:
        raise DataError(f"{name}: factor_sizes must be {len(default)} positive sizes for "
                        f"({', '.join(names)}), got {tuple(factor_sizes)}")
    return sizes


def _load_dsprites(root: Path, sizes, variant, data_dir, cache_dir) -> FileDataset:
    path = root / DSPRITES_FILE
    require(path, "dsprites", variant, data_dir)
    # Arrays without pickles; the metadata (a Python-2 pickle) through a restricted unpickler.
    with data_files.open_npz(path) as npz:
        classes = _read_npz_array(npz, path, "latents_classes")
        metadata = data_files.read_npz_pickled(path, "metadata")[()] if "metadata" in npz.files else {}
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
    store = open_images(path, "imgs", sizes, (IMAGE_SIZE, IMAGE_SIZE), name="dsprites", variant=variant,
                         data_dir=data_dir, binary=True, cache_dir=cache_dir)
    if store.read(rows[:256]).max(initial=0) > 1:
        raise DataError(f"{path}: key 'imgs' holds values above 1; expected binary 0/1 images")
    return FileDataset("dsprites", sizes, store, path, binary=True)


def _load_shapes3d(root: Path, sizes, variant, data_dir, cache_dir) -> FileDataset:
    path = root / SHAPES3D_FILE
    require(path, "shapes3d", variant, data_dir)
    with open_h5(path) as f:
        if "labels" not in f:
            raise missing_key(path, "labels", f.keys())
        if not hasattr(f["labels"], "dtype"):
            raise DataError(f"{path}: key 'labels' is an HDF5 group, expected an array; download the file again")
        try:
            labels = f["labels"][()]
        except (OSError, ValueError) as err:
            raise corrupt(path, "HDF5", err) from err
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
    store = open_images(path, "images", sizes, (IMAGE_SIZE, IMAGE_SIZE, 3), name="shapes3d",
                         variant=variant, data_dir=data_dir, cache_dir=cache_dir)
    return FileDataset("shapes3d", sizes, store, path)


def _load_mpi3d(root: Path, sizes, variant, data_dir, cache_dir) -> FileDataset:
    # No labels in the file: the factors are the row-major classes of the index.
    path = mpi3d_path(root, variant)
    store = open_images(path, "images", sizes, (IMAGE_SIZE, IMAGE_SIZE, 3), name="mpi3d",
                         variant=variant, data_dir=data_dir, cache_dir=cache_dir)
    return FileDataset("mpi3d", sizes, store, path, variant=variant)


CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2}    # list_eval_partition.txt's codes


class CelebA(GroundTruthDataset):
    """Aligned CelebA (178x218 JPEGs in ``img_align_celeba/`` or ``img_align_celeba.zip``)
    center-cropped to ``crop`` and area-resized to 64x64 once, into a raw uint8 cache
    (N, 3, 64, 64) that batches are read from (``data_cache``); the 40 binary attributes
    from ``list_attr_celeba.txt`` and the official partition from
    ``list_eval_partition.txt`` when present. File layouts: the CelebA page (CELEBA_PAGE),
    folders Img/, Anno/ and Eval/. No factor grid."""

    name, channels, has_factors, source = "celeba", 3, False, "real"

    def __init__(self, root: Path, crop: int = CELEBA_CROP, data_dir=None, cache_dir=None):
        self.jpegs = _CelebAJpegs(root, crop, data_dir)
        self.location = str(self.jpegs.source)
        names = [Path(m).name for m in self.jpegs.members]
        self.attribute_names, self._attributes = _read_celeba_attributes(root / "list_attr_celeba.txt", names)
        self.partition = _read_celeba_partition(root / "list_eval_partition.txt", names)
        path, offset = data_cache.open_cache(self.jpegs.cache_spec(), cache_dir)
        self._rows = data_files.RawRows(path, offset, (len(names), 3, IMAGE_SIZE, IMAGE_SIZE))
        self.read_from = str(path)

    def __len__(self) -> int:
        return len(self.jpegs.members)

    def attributes(self, indices) -> np.ndarray:
        """The 40 binary attributes (n, 40) uint8 0/1 (CelebA's -1/1) of the images."""
        if self._attributes is None:
            raise DataError(f"{self.location}: list_attr_celeba.txt is missing next to it; no attributes")
        return self._attributes[self._check_indices(indices)]

    def split(self, name: str) -> np.ndarray:
        """Image indices of the official ``train``, ``valid`` or ``test`` partition."""
        check_choice("CelebA split", name, tuple(CELEBA_SPLITS))
        if self.partition is None:
            raise DataError(f"{self.location}: list_eval_partition.txt is missing next to it; no official split")
        return np.flatnonzero(self.partition == CELEBA_SPLITS[name])

    def decode(self, indices) -> np.ndarray:
        """The images (n, 3, 64, 64) decoded from the JPEGs themselves, not the cache."""
        return self.jpegs.decode(self._check_indices(indices))

    def _images(self, indices):
        return self._rows.read(indices)


class _CelebAJpegs:
    """CelebA's JPEGs in name order, decoded, cropped and resized: the source of the cache."""

    def __init__(self, root: Path, crop: int, data_dir):
        folder, archive = root / "img_align_celeba", root / "img_align_celeba.zip"
        self.crop, self._archive = crop, None
        if folder.is_dir():
            self.source = folder
            self.members = sorted(p.name for p in os.scandir(folder) if p.name.lower().endswith(".jpg"))
        elif archive.exists():
            self.source, self._archive = archive, _ZipReader(archive)
            try:
                with zipfile.ZipFile(archive) as zf:
                    self.members = sorted(m for m in zf.namelist() if m.lower().endswith(".jpg"))
            except (zipfile.BadZipFile, OSError) as err:
                raise corrupt(archive, "zip", err) from err
        else:
            raise DataError(f"{archive} is missing: {how_to_get('celeba', data_dir=data_dir)}")
        if not self.members:
            raise DataError(f"{self.source}: holds no .jpg images")
        self.command = "python datasets.py cache celeba" + (f" --data-dir {data_dir}" if data_dir else "")

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """uint8 images (n, 3, 64, 64) of the JPEGs at ``indices``."""
        out = np.empty((len(indices), 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        for i, index in enumerate(np.asarray(indices).tolist()):
            member = self.members[index]
            where = f"{self.source}:{member}" if self._archive else str(self.source / member)
            data = self._archive.read(member) if self._archive else Path(where).read_bytes()
            out[i] = _crop_resize(_decode_jpeg(data, where), self.crop)
        return out

    def blocks(self, rows: int = 1024):
        """All images in order, in blocks, decoded by one thread per core."""
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        workers = len(os.sched_getaffinity(0))
        # One BLAS thread each: OpenBLAS's own threads made each small resize 8x slower on a
        # busy 2-core machine. JPEG decoding and the matrix products release the GIL.
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            for start in range(0, len(self.members), rows):
                parts = np.array_split(np.arange(start, min(start + rows, len(self.members))), workers)
                yield np.concatenate(list(pool.map(self.decode, parts)))

    def cache_spec(self) -> data_cache.CacheSpec:
        """Valid while the images (names; the zip's size and mtime, or the folder's mtime) and the crop stay."""
        stat = self.source.stat()
        fingerprint = {"source": self.source.name, "crop": self.crop, "images": len(self.members),
                       "names_sha256": hashlib.sha256("\n".join(self.members).encode()).hexdigest(),
                       "mtime_ns": stat.st_mtime_ns}
        if self._archive:
            fingerprint["bytes"] = stat.st_size
        return data_cache.CacheSpec(
            source=self.source, stem=f"img_align_celeba_crop{self.crop}_nchw",
            shape=(len(self.members), 3, IMAGE_SIZE, IMAGE_SIZE), fingerprint=fingerprint, blocks=self.blocks,
            command=self.command)


class _ZipReader(LazyHandle):
    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def _open(self):
        return zipfile.ZipFile(self.path)

    def read(self, member: str) -> bytes:
        try:
            return self._handle_open().read(member)
        except (zipfile.BadZipFile, OSError, zlib.error) as err:
            raise corrupt(self.path, "zip", err) from err


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
    return header, ((table[_rows_of(path, body, names, "attributes")] + 1) // 2).astype(np.uint8)


def _rows_of(path: Path, body: list[str], names: list[str], what: str) -> list[int]:
    """The line of ``body`` (lines starting with an image name) of each of ``names``."""
    row_of = {line.split(maxsplit=1)[0]: i for i, line in enumerate(body)}
    absent = [n for n in names if n not in row_of]
    if absent:
        raise DataError(f"{path}: has no {what} for {absent[0]} (and {len(absent) - 1} more images)")
    return [row_of[n] for n in names]


def _read_celeba_partition(path: Path, names: list[str]):
    """(n,) uint8 codes 0 train, 1 valid, 2 test aligned with ``names``, or None without the file.
    Format (CelebA's Eval/list_eval_partition.txt): one ``<image name> <code>`` per line."""
    if not path.exists():
        return None
    body = [line for line in path.read_text().split("\n") if line.strip()]
    try:
        codes = np.loadtxt(body, usecols=1, dtype=np.int8, ndmin=1)
    except (ValueError, IndexError) as err:
        raise DataError(f"{path}: expected an image name and a code 0/1/2 per line ({err})") from err
    bad = np.flatnonzero(~np.isin(codes, (0, 1, 2)))
    if bad.size:
        raise DataError(f"{path}: line {bad[0] + 1} has code {codes[bad[0]]}, expected 0 (train), 1 (valid) "
                        f"or 2 (test)")
    return codes[_rows_of(path, body, names, "partition code")].astype(np.uint8)


# =====================================================================================
# Choosing a dataset; command line
# =====================================================================================
_REAL_LOADERS = {"dsprites": _load_dsprites, "shapes3d": _load_shapes3d, "mpi3d": _load_mpi3d}


def load_dataset(name: str, source: str = "standin", data_dir=None, *, variant: str = "real",
                 factor_sizes=None, cache_dir=None) -> GroundTruthDataset:
    """The dataset ``name`` from its real files (``source="real"``, read from
    ``resolve_data_dir(data_dir)``) or its procedural stand-in (``"standin"``).
    ``variant`` picks the MPI3D file (toy, realistic, real); ``factor_sizes``
    declares a reduced grid for small files in the real format (tests). A real source
    that needs a cache gets one built on first use, next to it or in ``cache_dir``
    (default ``$DISENT_CACHE_DIR``; ``lbvae/data/cache.py``)."""
    check_choice("dataset", name, DATASET_NAMES)
    check_choice("source", source, SOURCES)
    check_choice("MPI3D variant", variant, MPI3D_VARIANTS)
    if factor_sizes is not None and (source == "standin" or name == "celeba"):
        raise DataError(f"factor_sizes applies to real files of {', '.join(FACTOR_DATASETS)} only")
    if source == "standin":
        return standins.STANDINS[name]()
    root = resolve_data_dir(data_dir)
    if name == "celeba":
        return CelebA(root / CELEBA_DIR, data_dir=data_dir, cache_dir=cache_dir)
    return _REAL_LOADERS[name](root, _grid_sizes(name, factor_sizes), variant, data_dir, cache_dir)


def cache(name: str, data_dir=None, variant: str = "real", cache_dir=None) -> Path:
    """Build the cache of a real dataset ahead of time (``python datasets.py cache NAME``);
    returns it, or the source where rows are read without one."""
    check_choice("dataset", name, DATASET_NAMES)
    if name == "celeba":
        return Path(CelebA(resolve_data_dir(data_dir) / CELEBA_DIR, data_dir=data_dir, cache_dir=cache_dir).read_from)
    return cache_images(name, data_dir, variant, cache_dir)


def real_file_status(name: str, data_dir=None, variant: str = "real", cache_dir=None) -> str:
    """Lines on the real files of ``name``: present? read in place or through a cache; does
    the cache exist, how big, is it valid. Reads headers only; never builds anything."""
    check_choice("dataset", name, DATASET_NAMES)
    missing = data_files.missing_files(name, data_dir, variant)
    if missing:
        return f"  real file: {missing[0]} is missing: {how_to_get(name, variant, data_dir)}"
    root = resolve_data_dir(data_dir)
    if name == "celeba":
        jpegs = _CelebAJpegs(root / CELEBA_DIR, CELEBA_CROP, data_dir)
        return f"  real files: {jpegs.source} ({len(jpegs.members)} JPEGs)\n  " + data_cache.describe(
            jpegs.cache_spec(), cache_dir)
    path, key = image_file(name, root, variant)
    dtype, shape, _, offset = data_files._image_header(path, key)
    line = f"  real file: {path} ({path.stat().st_size / 1e9:.2f} GB), key {key!r} {dtype} {tuple(shape)}"
    if offset is not None:
        return line + "\n  cache: not needed (rows stored raw, read in place)"
    if name == "dsprites":
        return line + "\n  cache: not needed (binary images held in memory as bits)"
    spec = data_files.image_cache_spec(path, key, tuple(shape), name, variant, data_dir)
    return line + "\n  " + data_cache.describe(spec, cache_dir)





def describe(dataset: GroundTruthDataset) -> str:
    """A few lines summarising a dataset (for ``python datasets.py info``)."""
    lines = [repr(dataset), f"  location: {dataset.location or '?'}"]
    if getattr(dataset, "read_from", dataset.location) != dataset.location:
        lines.append(f"  batches read from: {dataset.read_from}")
    for factor, size in zip(dataset.factor_names, dataset.factor_sizes):
        lines.append(f"  factor {factor}: {size} classes")
    if getattr(dataset, "attribute_names", ()):
        lines.append(f"  attributes: {', '.join(dataset.attribute_names)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Ground-truth datasets: download, cache, inspect.")
    commands = parser.add_subparsers(dest="command", required=True)
    for verb, help_text in (("download", "fetch the real file into the data directory"),
                            ("cache", "build the raw .npy cache of a compressed or slow real source, once"),
                            ("info", "print a summary of a dataset, its real files and their cache")):
        sub = commands.add_parser(verb, help=help_text)
        sub.add_argument("name", choices=DATASET_NAMES)
        sub.add_argument("--variant", default="real", choices=MPI3D_VARIANTS, help="MPI3D file")
        sub.add_argument("--data-dir", default=None, help=f"default: ${DATA_DIR_ENV}, else data/")
        sub.add_argument("--cache-dir", default=None,
                         help=f"where caches are built (default: ${CACHE_DIR_ENV}, else next to the data)")
        if verb == "info":
            sub.add_argument("--source", default="standin", choices=SOURCES,
                             help="which dataset to describe (real: opens it, building its cache if needed)")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print(download(args.name, args.data_dir, args.variant))
        elif args.command == "cache":
            print(cache(args.name, args.data_dir, args.variant, args.cache_dir))
        else:
            print(describe(load_dataset(args.name, args.source, args.data_dir, variant=args.variant,
                                        cache_dir=args.cache_dir)))
            print(real_file_status(args.name, args.data_dir, args.variant, args.cache_dir))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
