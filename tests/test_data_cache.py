"""The cache of slow real sources (lbvae/data/cache.py): built once from small files in the real
formats, reused, verified, rebuilt when stale, never trusted half-written, and failing in
one line where it cannot be written. The source files are never modified."""
import errno
import hashlib
import os
import re
import socket
import zipfile

import h5py
import numpy as np
import pytest

import datasets
from datasets import DataError, load_dataset
from lbvae.data import cache as data_cache
from lbvae.data import files as data_files
from test_datasets import (
    MPI3D_SIZES,
    SHAPES3D_SIZES,
    hwc_to_chw,
    write_attributes,
    write_jpegs,
    write_mpi3d,
    write_shapes3d,
)

# The published 3dshapes.h5 stores its images gzip-compressed in chunks of (15000, 4, 4, 1);
# the same layout, scaled to the reduced grid (288 images: 19 whole bands and a partial one).
REAL_LIKE_CHUNKS = (15, 4, 4, 1)
CACHE = "3dshapes_images_nchw.npy"


def fingerprint(path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def load_shapes3d(folder, **kwargs):
    return load_dataset("shapes3d", "real", folder, factor_sizes=SHAPES3D_SIZES, **kwargs)


def files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(autouse=True)
def no_cache_dir_from_the_environment(monkeypatch):
    monkeypatch.delenv(data_cache.CACHE_DIR_ENV, raising=False)


def test_chunked_gzip_h5_is_cached_once_and_reads_the_source_bytes(tmp_path, capsys):
    images, _ = write_shapes3d(tmp_path, chunks=REAL_LIKE_CHUNKS)
    source = tmp_path / data_files.SHAPES3D_FILE
    before = fingerprint(source)
    ds = load_shapes3d(tmp_path)
    assert files(tmp_path) == ["3dshapes.h5", CACHE, CACHE + ".json"] and ds.read_from == str(tmp_path / CACHE)
    idx = np.random.default_rng(0).integers(0, len(ds), 200)
    with h5py.File(source, "r") as f:        # h5py itself, not the cache's block reader
        chunks, direct = f["images"].chunks, f["images"][()]
    assert chunks == REAL_LIKE_CHUNKS
    np.testing.assert_array_equal(ds.images(idx), hwc_to_chw(direct[idx]))
    np.testing.assert_array_equal(direct, images)
    assert fingerprint(source) == before
    assert np.load(tmp_path / CACHE, mmap_mode="r").shape == (288, 3, 64, 64)     # a plain .npy, NCHW
    assert "caching 3dshapes.h5" in capsys.readouterr().err                     # the progress bar


def test_a_valid_cache_is_reused_without_reading_the_source(tmp_path, monkeypatch, capsys):
    images, _ = write_shapes3d(tmp_path, chunks=REAL_LIKE_CHUNKS)
    load_shapes3d(tmp_path)
    capsys.readouterr()
    built = (tmp_path / CACHE).stat()
    monkeypatch.setattr(data_files, "_image_blocks", lambda *a, **k: pytest.fail("rebuilt a valid cache"))
    ds = load_shapes3d(tmp_path)
    np.testing.assert_array_equal(ds.images([287, 0, 5]), hwc_to_chw(images[[287, 0, 5]]))
    assert (tmp_path / CACHE).stat().st_ino == built.st_ino and capsys.readouterr().err == ""


def break_cache(folder, how, images):
    """Make the cache unusable in one way; the images the source holds afterwards."""
    path = folder / CACHE
    if how == "source-changed":
        images = np.full_like(images, 7)
        write_shapes3d(folder, chunks=REAL_LIKE_CHUNKS, images=images)
    elif how == "truncated":
        os.truncate(path, path.stat().st_size - 100)
    elif how == "sample-row-changed":
        with open(path, "r+b") as f:
            f.seek(-1, os.SEEK_END)     # the last row is always in the checked sample
            last = f.read(1)
            f.seek(-1, os.SEEK_END)
            f.write(bytes([last[0] ^ 1]))
    elif how == "no-record":
        (folder / (CACHE + ".json")).unlink()
    return images


@pytest.mark.parametrize("how, message", [
    ("source-changed", r"stale \(3dshapes\.h5 changed since the cache was built\)"),
    ("truncated", r"truncated or overlong \(\d[\d,]* bytes, expected [\d,]+\)"),
    ("sample-row-changed", r"corrupt \(sample rows differ"),
    ("no-record", r"incomplete \(no record of a finished build\)"),
])
def test_an_unusable_cache_is_rebuilt_with_one_line(tmp_path, capsys, how, message):
    images, _ = write_shapes3d(tmp_path, chunks=REAL_LIKE_CHUNKS)
    load_shapes3d(tmp_path)
    capsys.readouterr()
    images = break_cache(tmp_path, how, images)
    ds = load_shapes3d(tmp_path)
    lines = [line for line in capsys.readouterr().err.splitlines() if "rebuilding" in line]
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / CACHE}: ") and re.search(message, lines[0])
    np.testing.assert_array_equal(ds.images(np.arange(288)), hwc_to_chw(images))


def test_an_interrupted_build_leaves_nothing_to_trust(tmp_path, monkeypatch):
    images, _ = write_shapes3d(tmp_path, chunks=REAL_LIKE_CHUNKS)
    writes = []

    def interrupted(out, data):
        out.write(data[:len(data) // 2])
        out.flush()
        writes.append(os.path.getsize(out.name))
        raise KeyboardInterrupt          # Ctrl-C in the middle of a block

    monkeypatch.setattr(data_cache, "_write_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_shapes3d(tmp_path)
    assert writes[0] > 0 and files(tmp_path) == ["3dshapes.h5"]
    monkeypatch.undo()
    # A build killed outright (SIGKILL) leaves its .part file; the next build removes it.
    dead = tmp_path / f"{CACHE}.part-{socket.gethostname()}-{2 ** 22 + 12345}"
    dead.write_bytes(b"\x93NUMPY half a file")
    ds = load_shapes3d(tmp_path)
    assert files(tmp_path) == ["3dshapes.h5", CACHE, CACHE + ".json"]
    np.testing.assert_array_equal(ds.images(np.arange(288)), hwc_to_chw(images))


def read_only(monkeypatch, folder):
    """Creating files in ``folder`` fails as in a read-only folder (tests may run as root,
    which chmod does not stop)."""
    real_open, real_mkdir = os.open, os.mkdir

    def guarded_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.path.dirname(os.path.abspath(path)) == str(folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: real_mkdir(p, *a, **k))


def test_read_only_data_folder_says_where_and_how_to_point_the_cache_elsewhere(tmp_path, monkeypatch, capsys):
    data, cache_dir = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    images, _ = write_shapes3d(data, chunks=REAL_LIKE_CHUNKS)
    before = fingerprint(data / data_files.SHAPES3D_FILE)
    read_only(monkeypatch, data)
    with pytest.raises(DataError) as err:
        load_shapes3d(data)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"cannot write the cache {data / CACHE} (Permission denied)")
    assert "DISENT_CACHE_DIR=DIR or --cache-dir DIR" in message
    assert files(data) == ["3dshapes.h5"]
    assert datasets.main(["cache", "shapes3d", "--data-dir", str(data)]) == 1      # the CLI: one line too
    assert capsys.readouterr().err.strip().count("\n") == 0
    # Pointed elsewhere: by argument, or by the environment variable.
    ds = load_shapes3d(data, cache_dir=cache_dir)
    [cached] = [p for p in cache_dir.iterdir() if p.suffix == ".npy"]
    assert cached.name.startswith("3dshapes_images_nchw.") and ds.read_from == str(cached)
    np.testing.assert_array_equal(ds.images(np.arange(288)), hwc_to_chw(images))
    monkeypatch.setenv(data_cache.CACHE_DIR_ENV, str(cache_dir))
    assert load_shapes3d(data).read_from == str(cached)
    assert files(data) == ["3dshapes.h5"] and fingerprint(data / data_files.SHAPES3D_FILE) == before


def test_a_cache_built_next_to_read_only_data_is_used(tmp_path, monkeypatch):
    write_shapes3d(tmp_path, chunks=REAL_LIKE_CHUNKS)
    load_shapes3d(tmp_path)        # built by someone who could write there
    read_only(monkeypatch, tmp_path)
    assert load_shapes3d(tmp_path).read_from == str(tmp_path / CACHE)
    assert load_shapes3d(tmp_path, cache_dir=tmp_path / "elsewhere").read_from == str(tmp_path / CACHE)


def test_one_cache_folder_serves_several_data_folders(tmp_path):
    cache_dir = tmp_path / "cache"
    for k in (1, 2):
        (tmp_path / f"d{k}").mkdir()
        write_shapes3d(tmp_path / f"d{k}", chunks=REAL_LIKE_CHUNKS,
                       images=np.full((288, 64, 64, 3), k, np.uint8))
    for _ in range(2):
        for k in (1, 2):
            assert (load_shapes3d(tmp_path / f"d{k}", cache_dir=cache_dir).images([5]) == k).all()
    assert len(list(cache_dir.glob("*.npy"))) == 2


def test_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    write_shapes3d(tmp_path, chunks=REAL_LIKE_CHUNKS)
    usage = data_cache.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(data_cache.shutil, "disk_usage", lambda p: usage._replace(free=1_000_000))
    with pytest.raises(DataError) as err:
        load_shapes3d(tmp_path)
    needed = 288 * 64 * 64 * 3 + 4096
    assert str(err.value) == (
        f"cannot build the cache {tmp_path / CACHE}: it needs {needed:,} bytes (0.00 GB) and {tmp_path} has "
        f"1,000,000 bytes free; free some space or point the cache elsewhere with DISENT_CACHE_DIR=DIR or "
        f"--cache-dir DIR")
    monkeypatch.undo()

    def full(out, data):   # the disk fills up during the build
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(data_cache, "_write_all", full)
    with pytest.raises(DataError, match=rf"^cannot write the cache {tmp_path / CACHE} \(No space left on device\); "
                                        r"point the cache at a writable folder with DISENT_CACHE_DIR=DIR"):
        load_shapes3d(tmp_path)
    assert files(tmp_path) == ["3dshapes.h5"]


def test_contiguous_h5_and_stored_npz_are_read_in_place(tmp_path, capsys):
    images, _ = write_shapes3d(tmp_path, chunks=None)
    write_mpi3d(tmp_path)
    ds = load_shapes3d(tmp_path)
    assert ds.read_from == str(tmp_path / data_files.SHAPES3D_FILE)
    np.testing.assert_array_equal(ds.images([3, 200, 7]), hwc_to_chw(images[[3, 200, 7]]))
    assert datasets.cache("mpi3d", tmp_path) == tmp_path / "mpi3d_real.npz"
    assert "read in place; no cache needed" in capsys.readouterr().out
    assert files(tmp_path) == ["3dshapes.h5", "mpi3d_real.npz"]


def test_compressed_npz_cache_equals_the_source(tmp_path):
    write_mpi3d(tmp_path, compressed=True)
    path = datasets.cache("mpi3d", tmp_path)
    assert path == tmp_path / "mpi3d_real_images_nchw.npy"
    ds = load_dataset("mpi3d", "real", tmp_path, factor_sizes=MPI3D_SIZES)
    idx = np.random.default_rng(1).integers(0, len(ds), 100)
    with zipfile.ZipFile(tmp_path / "mpi3d_real.npz") as zf:      # deflated, as written
        assert zf.getinfo("images.npy").compress_type == zipfile.ZIP_DEFLATED
    np.testing.assert_array_equal(ds.images(idx), hwc_to_chw(np.load(tmp_path / "mpi3d_real.npz")["images"][idx]))


def write_celeba(tmp_path, count=5, partition=True):
    root = tmp_path / "celeba"
    write_jpegs(root / "img_align_celeba", count=count)
    names = [f"{i:06d}.jpg" for i in range(1, count + 1)]
    write_attributes(root / "list_attr_celeba.txt", names, [((-1) ** i, 1) for i in range(count)])
    if partition:
        codes = [0, 0, 1, 2, 0, 1, 2][:count]
        (root / "list_eval_partition.txt").write_text("".join(f"{n} {c}\n" for n, c in zip(names, codes)))
    return root


def test_celeba_cache_matches_the_jpegs_with_attributes_and_partition(tmp_path, capsys):
    root = write_celeba(tmp_path)
    ds = load_dataset("celeba", "real", tmp_path)
    assert ds.read_from == str(root / "img_align_celeba_crop148_nchw.npy")
    idx = np.random.default_rng(0).integers(0, 5, 20)
    np.testing.assert_array_equal(ds.images(idx), ds.decode(idx))
    assert ds.images(idx).std() > 10                                  # not blank
    np.testing.assert_array_equal(ds.split("train"), [0, 1, 4])
    np.testing.assert_array_equal(ds.split("valid"), [2])
    np.testing.assert_array_equal(ds.split("test"), [3])
    np.testing.assert_array_equal(ds.attributes([0, 1]), [[1, 1], [0, 1]])
    # A new image makes the cache stale.
    write_jpegs(root / "img_align_celeba", count=6)
    write_attributes(root / "list_attr_celeba.txt", [f"{i:06d}.jpg" for i in range(1, 7)], [(1, 1)] * 6)
    capsys.readouterr()
    with pytest.raises(DataError, match=r"list_eval_partition\.txt: has no partition code for 000006\.jpg"):
        load_dataset("celeba", "real", tmp_path)
    (root / "list_eval_partition.txt").unlink()
    ds = load_dataset("celeba", "real", tmp_path)
    assert "stale (img_align_celeba changed" in capsys.readouterr().err
    assert len(ds) == 6 and ds.partition is None
    np.testing.assert_array_equal(ds.images(np.arange(6)), ds.decode(np.arange(6)))
    with pytest.raises(DataError, match="list_eval_partition.txt is missing"):
        ds.split("train")


def test_celeba_partition_codes_are_checked(tmp_path):
    root = write_celeba(tmp_path, count=2)
    (root / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 3\n")
    with pytest.raises(DataError, match=r"list_eval_partition\.txt: line 2 has code 3, expected 0 \(train\)"):
        load_dataset("celeba", "real", tmp_path)


def test_cli_cache_and_info(tmp_path, capsys):
    write_shapes3d(tmp_path, chunks=REAL_LIKE_CHUNKS)
    # info reads headers only: it says there is no cache yet, and builds none.
    assert datasets.main(["info", "shapes3d", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"real file: {tmp_path / '3dshapes.h5'}" in out
    assert f"cache: none; built on first use or by `python datasets.py cache shapes3d --data-dir {tmp_path}`" in out
    assert files(tmp_path) == ["3dshapes.h5"]
    assert datasets.main(["cache", "shapes3d", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / CACHE))
    assert datasets.main(["info", "shapes3d", "--data-dir", str(tmp_path)]) == 0
    assert f"cache: {tmp_path / CACHE} (0.00 GB, valid)" in capsys.readouterr().out
    write_celeba(tmp_path)
    assert datasets.main(["cache", "celeba", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "celeba" / "img_align_celeba_crop148_nchw.npy")
    assert datasets.main(["info", "celeba", "--data-dir", str(tmp_path)]) == 0
    assert "(5 JPEGs)" in capsys.readouterr().out


def test_renamed_celeba_image_makes_the_cache_stale(tmp_path, capsys):
    root = write_celeba(tmp_path, partition=False)
    load_dataset("celeba", "real", tmp_path)
    folder = root / "img_align_celeba"
    stat = folder.stat()
    (folder / "000005.jpg").rename(folder / "000009.jpg")
    os.utime(folder, ns=(stat.st_atime_ns, stat.st_mtime_ns))     # same count and folder mtime: names differ
    write_attributes(root / "list_attr_celeba.txt", [f"{i:06d}.jpg" for i in (1, 2, 3, 4, 9)], [(1, 1)] * 5)
    capsys.readouterr()
    load_dataset("celeba", "real", tmp_path)
    assert "stale (img_align_celeba changed" in capsys.readouterr().err


def test_h5_blocks_are_whole_bands_of_chunks(tmp_path):
    """Each gzip chunk is decompressed once: blocks start and end on chunk boundaries."""
    images, _ = write_shapes3d(tmp_path, chunks=REAL_LIKE_CHUNKS)
    blocks = data_files._image_blocks(tmp_path / data_files.SHAPES3D_FILE, "images", images.shape,
                                      block_bytes=20 * 64 * 64 * 3)
    lengths = [len(b) for b in blocks]
    assert lengths == [30] * 9 + [18]


def test_a_file_system_without_flock_still_builds(tmp_path, monkeypatch):
    images, _ = write_shapes3d(tmp_path, chunks=REAL_LIKE_CHUNKS)

    def no_flock(fd, operation):       # Lustre mounted without -o flock
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(data_cache.fcntl, "flock", no_flock)
    ds = load_shapes3d(tmp_path)
    np.testing.assert_array_equal(ds.images([0, 287]), hwc_to_chw(images[[0, 287]]))
