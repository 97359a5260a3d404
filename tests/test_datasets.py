"""Tests of the data layer: real loaders on small files written here in the real formats
(same keys, dtypes, per-image shapes and factor order, over a reduced factor grid), every
bad-input error, the factor state space, and the procedural stand-ins."""
import hashlib
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest

import datasets
from datasets import DataError, load_dataset
from lbvae.data import files as data_files
from lbvae.data import ground_truth

ROOT = Path(__file__).resolve().parents[1]
DSPRITES_SIZES = (3, 2, 4, 4, 4)
SHAPES3D_SIZES = (2, 3, 2, 2, 4, 3)
MPI3D_SIZES = (2, 3, 2, 3, 1, 4, 2)
# Shapes3D's label values per factor (hues, scale, shape, orientation), as in the real file.
SHAPES3D_VALUES = (np.arange(10) / 10, np.arange(10) / 10, np.arange(10) / 10, np.linspace(0.75, 1.25, 8),
                   np.arange(4.0), np.linspace(-30, 30, 15))


def grid_classes(sizes):
    return np.stack(np.unravel_index(np.arange(np.prod(sizes)), sizes), axis=1)


def write_dsprites(folder, sizes=DSPRITES_SIZES, compressed=True, **replace):
    n = int(np.prod(sizes))
    classes = np.concatenate([np.zeros((n, 1), np.int64), grid_classes(sizes)], axis=1).astype(np.int64)
    arrays = {"imgs": np.random.default_rng(0).integers(0, 2, (n, 64, 64), dtype=np.uint8),
              "latents_classes": classes, "latents_values": classes.astype(np.float64),
              "metadata": np.array({"latents_sizes": np.array((1,) + sizes),
                                    "latents_names": ("color", "shape", "scale", "orientation", "posX", "posY")},
                                   dtype=object)}
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    (np.savez_compressed if compressed else np.savez)(folder / data_files.DSPRITES_FILE, **arrays)
    return arrays


def write_shapes3d(folder, sizes=SHAPES3D_SIZES, labels=None, images=None, chunks=(8, 64, 64, 3)):
    n = int(np.prod(sizes))
    if labels is None:
        classes = grid_classes(sizes)
        labels = np.stack([SHAPES3D_VALUES[j][classes[:, j]] for j in range(6)], axis=1)
        labels = labels + np.random.default_rng(1).normal(0, 1e-9, labels.shape)   # float noise, as in files
    if images is None:
        images = np.random.default_rng(2).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    with h5py.File(folder / data_files.SHAPES3D_FILE, "w") as f:
        # Compressed like the published file; chunks=None: contiguous, uncompressed.
        f.create_dataset("images", data=images, chunks=chunks, compression="gzip" if chunks else None)
        f.create_dataset("labels", data=labels)
    return images, labels


def write_mpi3d(folder, variant="real", sizes=MPI3D_SIZES, compressed=False, filename=None, key="images",
                images=None):
    if images is None:
        n = int(np.prod(sizes))
        images = np.random.default_rng(3).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    path = folder / (filename or f"mpi3d_{variant}.npz")
    (np.savez_compressed if compressed else np.savez)(path, **{key: images})
    return images


def hwc_to_chw(images):
    return images.transpose(0, 3, 1, 2)


# --- real loaders: bytes, factors ------------------------------------------------------
@pytest.mark.parametrize("compressed", [True, False], ids=["compressed-bits-in-memory", "stored-pread"])
def test_dsprites_images_and_factors_equal_the_file(tmp_path, compressed):
    arrays = write_dsprites(tmp_path, compressed=compressed)
    ds = load_dataset("dsprites", "real", tmp_path, factor_sizes=DSPRITES_SIZES)
    idx = np.array([5, 0, 383, 5, 17])
    np.testing.assert_array_equal(ds.images(idx), arrays["imgs"][idx][:, None] * 255)
    np.testing.assert_array_equal(ds.index_to_factors(idx), arrays["latents_classes"][idx, 1:])
    assert (ds.name, ds.channels, ds.factor_sizes, len(ds)) == ("dsprites", 1, DSPRITES_SIZES, 384)


def test_shapes3d_images_equal_the_file_and_factors_are_label_ranks(tmp_path):
    images, labels = write_shapes3d(tmp_path)
    ds = load_dataset("shapes3d", "real", tmp_path, factor_sizes=SHAPES3D_SIZES)
    idx = np.array([287, 3, 4, 5, 100, 3])
    np.testing.assert_array_equal(ds.images(idx), hwc_to_chw(images[idx]))
    ranks = np.stack([np.unique(np.round(c, 6), return_inverse=True)[1] for c in labels.T], axis=1)
    np.testing.assert_array_equal(ds.index_to_factors(idx), ranks[idx])


@pytest.mark.parametrize("variant", ground_truth.MPI3D_VARIANTS)
def test_mpi3d_stored_npz_is_read_in_place(tmp_path, variant):
    images = write_mpi3d(tmp_path, variant)
    ds = load_dataset("mpi3d", "real", tmp_path, variant=variant, factor_sizes=MPI3D_SIZES)
    idx = np.array([1, 2, 3, 200, 0, 287, 2])      # a run, scattered rows, a repeat
    np.testing.assert_array_equal(ds.images(idx), hwc_to_chw(images[idx]))
    np.testing.assert_array_equal(ds.index_to_factors(idx), grid_classes(MPI3D_SIZES)[idx])
    assert ds.images(idx).flags.c_contiguous


def test_mpi3d_real_accepts_real_npz(tmp_path):
    images = write_mpi3d(tmp_path, filename="real.npz")
    assert data_files.missing_files("mpi3d", tmp_path) == []
    ds = load_dataset("mpi3d", "real", tmp_path, factor_sizes=MPI3D_SIZES)
    np.testing.assert_array_equal(ds.images([7]), hwc_to_chw(images[[7]]))


def test_mpi3d_compressed_npz_is_read_through_a_cache(tmp_path):
    images = write_mpi3d(tmp_path, "toy", compressed=True)
    ds = load_dataset("mpi3d", "real", tmp_path, variant="toy", factor_sizes=MPI3D_SIZES)
    assert ds.location == str(tmp_path / "mpi3d_toy.npz")
    assert ds.read_from == str(tmp_path / "mpi3d_toy_images_nchw.npy")
    np.testing.assert_array_equal(ds.images(np.arange(len(ds))), hwc_to_chw(images))


def test_real_dataset_pickles_and_reads_after(tmp_path):
    images = write_mpi3d(tmp_path)
    ds = load_dataset("mpi3d", "real", tmp_path, factor_sizes=MPI3D_SIZES)
    ds.images([0])                                  # opens the file handle, which must not travel
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.images([9, 4]), hwc_to_chw(images[[9, 4]]))


BORDER = (20, 240, 20)


def write_jpegs(folder, count=3):
    """178x218 JPEGs: a border colour outside the central 148x148 square, whose left and right
    halves have their own colours (checks the center crop and the channel order)."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = [((200, 30, 30), (30, 30, 200)), ((30, 30, 30), (200, 200, 30)), ((90, 90, 90), (250, 250, 250))]
    for i in range(count):
        image = np.empty((218, 178, 3), np.uint8)
        image[:] = BORDER
        image[35:183, 15:89], image[35:183, 89:163] = colours[i % 3]
        iio.imwrite(folder / f"{i + 1:06d}.jpg", image, extension=".jpg", quality=95)
    return colours


def write_attributes(path, names, values, header=("Smiling", "Young")):
    lines = [str(len(names)), " ".join(header)]
    lines += [f"{n} " + " ".join(f"{v:2d}" for v in row) for n, row in zip(names, values)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("packed", ["folder", "zip"])
def test_celeba_from_folder_or_zip(tmp_path, packed):
    root = tmp_path / "celeba"
    colours = write_jpegs(root / "img_align_celeba")
    if packed == "zip":
        with zipfile.ZipFile(root / "img_align_celeba.zip", "w") as zf:
            for p in sorted((root / "img_align_celeba").iterdir()):
                zf.write(p, f"img_align_celeba/{p.name}")
        for p in (root / "img_align_celeba").iterdir():
            p.unlink()
        (root / "img_align_celeba").rmdir()
    names = [f"{i:06d}.jpg" for i in (1, 2, 3)]
    write_attributes(root / "list_attr_celeba.txt", names, [(1, -1), (-1, -1), (1, 1)])
    ds = load_dataset("celeba", "real", tmp_path)
    x = ds.images([2, 0, 1])
    assert x.shape == (3, 3, 64, 64) and x.dtype == np.uint8
    for row, i in zip(x, (2, 0, 1)):
        left, right = colours[i]
        # No border colour inside (the outermost pixels blend with JPEG ringing at the edge).
        for part, colour in ((row[:, 1:-1, 1:31], left), (row[:, 1:-1, 33:-1], right)):
            assert np.abs(part.astype(int) - np.array(colour)[:, None, None]).max() <= 12
    np.testing.assert_array_equal(ds.attributes([0, 1, 2]), [[1, 0], [0, 0], [1, 1]])
    assert ds.attribute_names == ("Smiling", "Young")
    assert (len(ds), ds.has_factors, ds.factor_sizes) == (3, False, ())
    with pytest.raises(DataError, match="factor metrics do not apply"):
        ds.index_to_factors([0])
    with pytest.raises(DataError, match="no factor grid"):
        ds.sample_factors(4, np.random.default_rng(0))


# --- bad input: one clear DataError naming the file and key -----------------------------
@pytest.mark.parametrize("name", ground_truth.DATASET_NAMES)
def test_missing_file_says_how_to_get_it(tmp_path, name):
    missing = data_files.missing_files(name, tmp_path)
    assert len(missing) == 1 and missing[0].startswith(str(tmp_path))
    with pytest.raises(DataError) as err:
        load_dataset(name, "real", tmp_path)
    message = str(err.value)
    assert "\n" not in message and Path(missing[0]).name in message
    assert data_files.how_to_get(name, data_dir=tmp_path) in message
    assert ("python datasets.py download" in message) == (name != "celeba")


def test_wrong_keys_are_named(tmp_path):
    write_mpi3d(tmp_path, key="imgs")
    with pytest.raises(DataError, match=r"mpi3d_real\.npz.*no key 'images' \(found: imgs\)"):
        load_dataset("mpi3d", "real", tmp_path, factor_sizes=MPI3D_SIZES)
    write_dsprites(tmp_path, latents_classes=None)
    with pytest.raises(DataError, match=r"dsprites_ndarray.*npz.*no key 'latents_classes'"):
        load_dataset("dsprites", "real", tmp_path, factor_sizes=DSPRITES_SIZES)
    write_shapes3d(tmp_path)
    with h5py.File(tmp_path / data_files.SHAPES3D_FILE, "a") as f:
        del f["labels"]
    with pytest.raises(DataError, match=r"3dshapes\.h5.*no key 'labels'"):
        load_dataset("shapes3d", "real", tmp_path, factor_sizes=SHAPES3D_SIZES)


@pytest.mark.parametrize("images, pattern", [
    (np.zeros((288, 64, 64, 3), np.float32), r"'images' has dtype float32, expected uint8"),
    (np.zeros((288, 32, 32, 3), np.uint8), r"'images' has shape \(288, 32, 32, 3\), expected \(N, 64, 64, 3\)"),
    (np.zeros((100, 64, 64, 3), np.uint8), r"'images' holds 100 images, but the factor sizes .* multiply to 288"),
], ids=["dtype", "image-shape", "count"])
def test_wrong_image_arrays_are_named(tmp_path, images, pattern):
    write_mpi3d(tmp_path, images=images)
    with pytest.raises(DataError, match=r"mpi3d_real\.npz.*" + pattern):
        load_dataset("mpi3d", "real", tmp_path, factor_sizes=MPI3D_SIZES)


def test_factor_sizes_must_match_the_file(tmp_path):
    write_dsprites(tmp_path)
    with pytest.raises(DataError, match=r"latents_classes.*shape \(384, 6\), expected .*\(192, 6\)"):
        load_dataset("dsprites", "real", tmp_path, factor_sizes=(3, 2, 4, 4, 2))
    with pytest.raises(DataError, match="factor_sizes must be 5 positive sizes"):
        load_dataset("dsprites", "real", tmp_path, factor_sizes=(3, 2, 4))
    write_dsprites(tmp_path, metadata=np.array({"latents_sizes": np.array([1, 3, 6, 40, 32, 32])}, dtype=object))
    with pytest.raises(DataError, match=r"dsprites.*metadata latents_sizes \[1, 3, 6, 40, 32, 32\] do not match"):
        load_dataset("dsprites", "real", tmp_path, factor_sizes=DSPRITES_SIZES)


def test_rows_out_of_factor_order_are_caught(tmp_path):
    arrays = write_dsprites(tmp_path)
    write_dsprites(tmp_path, latents_classes=arrays["latents_classes"][::-1].copy())
    with pytest.raises(DataError, match=r"dsprites.*'latents_classes' row 0 .*not in the expected factor order"):
        load_dataset("dsprites", "real", tmp_path, factor_sizes=DSPRITES_SIZES)
    _, labels = write_shapes3d(tmp_path)
    write_shapes3d(tmp_path, labels=labels[:, [1, 0, 2, 3, 4, 5]])     # floor and wall hues swapped
    with pytest.raises(DataError, match=r"3dshapes\.h5.*'labels' column 0 \(floor_hue\) has 3 distinct values"):
        load_dataset("shapes3d", "real", tmp_path, factor_sizes=SHAPES3D_SIZES)
    write_shapes3d(tmp_path, labels=labels[np.random.default_rng(0).permutation(len(labels))])
    with pytest.raises(DataError, match=r"3dshapes\.h5.*'labels' row \d+ .*not in the expected factor order"):
        load_dataset("shapes3d", "real", tmp_path, factor_sizes=SHAPES3D_SIZES)


def test_dsprites_images_must_be_binary(tmp_path):
    write_dsprites(tmp_path, compressed=False, imgs=np.full((384, 64, 64), 255, np.uint8))
    with pytest.raises(DataError, match=r"dsprites.*'imgs' holds values above 1"):
        load_dataset("dsprites", "real", tmp_path, factor_sizes=DSPRITES_SIZES)


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("name", ["dsprites", "shapes3d", "mpi3d", "celeba"])
def test_truncated_files_are_named(tmp_path, name):
    if name == "dsprites":
        write_dsprites(tmp_path)
        path = tmp_path / data_files.DSPRITES_FILE
    elif name == "shapes3d":
        write_shapes3d(tmp_path)
        path = tmp_path / data_files.SHAPES3D_FILE
    elif name == "mpi3d":
        write_mpi3d(tmp_path)
        path = tmp_path / "mpi3d_real.npz"
    else:
        write_jpegs(tmp_path / "celeba" / "img_align_celeba")
        path = tmp_path / "celeba" / "img_align_celeba.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.write(tmp_path / "celeba" / "img_align_celeba" / "000001.jpg", "img_align_celeba/000001.jpg")
        for p in (tmp_path / "celeba" / "img_align_celeba").iterdir():
            p.unlink()
        (tmp_path / "celeba" / "img_align_celeba").rmdir()
    truncate(path)
    sizes = {"dsprites": DSPRITES_SIZES, "shapes3d": SHAPES3D_SIZES, "mpi3d": MPI3D_SIZES}.get(name)
    with pytest.raises(DataError, match=rf"{path.name}.*truncated or corrupt"):
        load_dataset(name, "real", tmp_path, factor_sizes=sizes)


def test_corrupt_h5_and_jpeg_are_named(tmp_path):
    (tmp_path / data_files.SHAPES3D_FILE).write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(DataError, match=r"3dshapes\.h5: not a readable HDF5 file"):
        load_dataset("shapes3d", "real", tmp_path, factor_sizes=SHAPES3D_SIZES)
    folder = tmp_path / "celeba" / "img_align_celeba"
    write_jpegs(folder, count=2)
    (folder / "000002.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DataError, match=r"000002\.jpg: cannot decode JPEG"):
        load_dataset("celeba", "real", tmp_path)        # while building the cache
    assert [p.name for p in (tmp_path / "celeba").iterdir()] == ["img_align_celeba"]    # no cache left


def test_celeba_attribute_file_must_cover_the_images(tmp_path):
    root = tmp_path / "celeba"
    write_jpegs(root / "img_align_celeba", count=2)
    write_attributes(root / "list_attr_celeba.txt", ["000001.jpg"], [(1, -1)])
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt: has no attributes for 000002\.jpg"):
        load_dataset("celeba", "real", tmp_path)
    write_attributes(root / "list_attr_celeba.txt", ["000001.jpg", "000002.jpg"], [(1, 1), (1, 0)])
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt: expected an image name and 2 values -1/1 per "
                                        r"line, line 4 is not"):
        load_dataset("celeba", "real", tmp_path)
    write_attributes(root / "list_attr_celeba.txt", ["000001.jpg", "000002.jpg"], [(1, 1), (1,)])
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt: expected an image name and 2 values"):
        load_dataset("celeba", "real", tmp_path)


def test_unknown_choices_list_the_valid_ones():
    with pytest.raises(DataError, match="unknown dataset 'mnist': choose from dsprites, shapes3d, mpi3d, celeba"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="unknown source 'web': choose from real, standin"):
        load_dataset("mpi3d", "web")
    with pytest.raises(DataError, match="unknown MPI3D variant 'complex': choose from toy, realistic, real"):
        load_dataset("mpi3d", "real", variant="complex")
    with pytest.raises(DataError, match="factor_sizes applies to real files"):
        load_dataset("mpi3d", "standin", factor_sizes=MPI3D_SIZES)


# --- locations, downloads, command line -------------------------------------------------
def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(data_files.DATA_DIR_ENV, raising=False)
    assert data_files.resolve_data_dir() == ROOT / "data"
    monkeypatch.setenv(data_files.DATA_DIR_ENV, str(tmp_path / "env"))
    assert data_files.resolve_data_dir() == tmp_path / "env"
    assert data_files.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    (tmp_path / "env").mkdir()
    write_mpi3d(tmp_path / "env", filename="real.npz")
    assert data_files.missing_files("mpi3d") == []


def test_fetch_is_atomic_and_fails_in_one_line(tmp_path):
    source = tmp_path / "remote.bin"
    source.write_bytes(b"x" * 3000)
    dest = data_files.fetch(source.as_uri(), tmp_path / "local.bin",
                          sha256=hashlib.sha256(b"x" * 3000).hexdigest())
    assert dest.read_bytes() == b"x" * 3000 and not list(tmp_path.glob("*.part"))
    with pytest.raises(DataError, match="sha256") as err:
        data_files.fetch(source.as_uri(), tmp_path / "other.bin", sha256="0" * 64, manual="put it there")
    assert "put it there" in str(err.value) and not (tmp_path / "other.bin").exists()
    assert not list(tmp_path.glob("*.part"))


def test_cli_download_failure_is_one_line(tmp_path, monkeypatch, capsys):
    dead = data_files.RemoteFile("3dshapes.h5", (tmp_path / "nowhere.h5").as_uri(), 1000)
    monkeypatch.setattr(data_files, "remote_file", lambda name, variant="real": dead)
    assert datasets.main(["download", "shapes3d", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("error: could not download") and str(tmp_path / "3dshapes.h5") in err


def test_cli_celeba_download_is_manual_and_info_prints(tmp_path, capsys):
    assert datasets.main(["download", "celeba", "--data-dir", str(tmp_path)]) == 1
    assert "by hand" in capsys.readouterr().err
    assert datasets.main(["info", "mpi3d"]) == 0
    out = capsys.readouterr().out
    assert "MPI3DStandin" in out and "factor vertical_axis: 40 classes" in out


# --- the factor state space ------------------------------------------------------------
@pytest.mark.parametrize("name", ground_truth.FACTOR_DATASETS)
def test_index_factor_round_trip_and_factor_sampling(name):
    ds = load_dataset(name)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(ds), 500)
    classes = ds.index_to_factors(idx)
    np.testing.assert_array_equal(classes, np.stack(np.unravel_index(idx, ds.factor_sizes), axis=1))
    np.testing.assert_array_equal(ds.factors_to_index(classes), idx)
    batch = ds.sample_factors(256, rng)
    assert (batch >= 0).all() and (batch < np.array(ds.factor_sizes)).all()
    assert all(len(np.unique(batch[:, k])) > 1 for k in range(ds.num_factors))
    np.testing.assert_array_equal(ds.images_from_factors(classes[:3]), ds.images(idx[:3]))


def test_images_keep_order_and_reject_bad_indices():
    ds = load_dataset("dsprites")
    idx = np.array([7, 3, 7, 100_000])
    x = ds.images(idx)
    np.testing.assert_array_equal(x[0], x[2])
    np.testing.assert_array_equal(x[1], ds.images([3])[0])
    assert ds.images([]).shape == (0, 1, 64, 64)
    with pytest.raises(DataError, match="out of range"):
        ds.images([len(ds)])
    with pytest.raises(DataError, match="must be integers"):
        ds.images([0.5])
    with pytest.raises(DataError, match="out of range"):
        ds.factors_to_index([[3, 0, 0, 0, 0]])


# --- stand-ins -------------------------------------------------------------------------
STANDIN_PROBE = """
import hashlib, sys
import numpy as np
sys.modules["torch"] = None          # the data layer must work without torch
import datasets
from lbvae.data import ground_truth
for name in ground_truth.DATASET_NAMES:
    ds = datasets.load_dataset(name)
    print(name, hashlib.sha256(ds.images(np.arange(0, len(ds), len(ds) // 97)).tobytes()).hexdigest())
"""


def test_standins_are_deterministic_across_processes_and_need_no_torch():
    here = {}
    for name in ground_truth.DATASET_NAMES:
        ds = load_dataset(name)
        x = ds.images(np.arange(0, len(ds), len(ds) // 97))
        np.testing.assert_array_equal(x, load_dataset(name).images(np.arange(0, len(ds), len(ds) // 97)))
        here[name] = hashlib.sha256(x.tobytes()).hexdigest()
    out = subprocess.run([sys.executable, "-c", STANDIN_PROBE], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert dict(line.split() for line in out.splitlines()) == here


@pytest.mark.parametrize("name", ground_truth.DATASET_NAMES)
def test_standins_are_cheap_picklable_and_have_the_real_grid(name):
    import time

    tic = time.perf_counter()
    ds = load_dataset(name)
    assert time.perf_counter() - tic < 0.05
    clone = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < 1000
    np.testing.assert_array_equal(clone.images([0, 5]), ds.images([0, 5]))
    assert ds.channels == ground_truth.CHANNELS[name] and ds.source == "standin"
    if name in ground_truth.FACTOR_DATASETS:
        assert (ds.factor_names, ds.factor_sizes) == ground_truth.FACTORS[name]
    else:
        assert not ds.has_factors and ds.attributes([0, 1]).shape == (2, 4)


def changed_pixels(a, b):
    """Pixels where some channel differs by at least 32 of 255 levels, per image pair."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=1) >= 32).sum(axis=(1, 2))


@pytest.mark.parametrize("name", ground_truth.FACTOR_DATASETS)
def test_every_standin_factor_is_visible(name):
    """Changing one factor by one step changes >= 10 pixels: every adjacent pair of values of
    small factors, random adjacent pairs of large ones, at random base points. (Adjacent
    pairs, because a square repeats every 10 of dSprites' 40 orientations.)"""
    ds = load_dataset(name)
    rng = np.random.default_rng(0)
    base = ds.sample_factors(40, rng)
    for factor, size in enumerate(ds.factor_sizes):
        low = np.arange(size - 1) if size <= 10 else rng.choice(size - 1, 8, replace=False)
        a = np.repeat(base, len(low), axis=0)
        a[:, factor] = np.tile(low, len(base))
        b = a.copy()
        b[:, factor] += 1
        changed = changed_pixels(ds.images_from_factors(a), ds.images_from_factors(b))
        worst = a[changed.argmin()]
        assert changed.min() >= 10, f"{ds.factor_names[factor]} nearly invisible at {worst.tolist()}"


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_dsprites_metadata_pickle_cannot_run_code(tmp_path, capsys):
    write_dsprites(tmp_path, metadata=np.array({"latents_sizes": _Payload()}, dtype=object))
    with pytest.raises(DataError, match=r"dsprites.*npz: key 'metadata' was not unpickled: it refers to "
                                        r"builtins\.print, which is not plain data"):
        load_dataset("dsprites", "real", tmp_path, factor_sizes=DSPRITES_SIZES)
    assert "code ran" not in capsys.readouterr().out
