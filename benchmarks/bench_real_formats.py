"""Real data at training speed: full-size files in the real formats, through the real loaders.

Writes (once; reused when present) a full-size file of each dataset in its published
format under --dir, with cheap content (procedural stand-in images where the content
matters for compression or decoding, zeros where it does not):

  dSprites   dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz  737,280 x 64x64 bits, imgs deflated
  Shapes3D   3dshapes.h5    480,000 x 64x64x3, gzip (level 4) in chunks of (15000, 4, 4, 1)
                            as the published file appears to be stored; labels float64
  MPI3D-real mpi3d_real.npz 1,036,800 x 64x64x3 zeros, npz member stored (12.7 GB)
  CelebA     celeba/img_align_celeba.zip  202,599 178x218 JPEGs (stored), list_attr_celeba.txt
                            (40 attributes), list_eval_partition.txt (official split sizes)

Then, per dataset, in a fresh process: the cache build time (the cache is deleted first,
unless --reuse-cache) and its peak anonymous memory; the open time; random batches of 64
per second through ``images()`` and the peak anonymous memory while drawing them
(RssAnon sampled every ms from /proc/self/status; the kernel keeps no peak of it) next
to VmRSS/VmHWM (which also count the page cache pages of mapped files); and end-to-end
training images/s of the engine (``training.train_pack``, batch 64, --steps steps, CPU)
on the real dataset and on its stand-in, alternating, --repeats times, as a ratio
real / stand-in (goal >= 0.9). Training runs in the same process, so the ratio is
robust to the load of a shared machine; the spread over repeats is printed.

    python benchmarks/bench_real_formats.py [--dir /tmp/disent_bench] [--datasets ...]
        [--batches 2000] [--steps 200] [--repeats 3] [--reuse-cache]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_data import PeakAnon, status_kib  # noqa: E402  (RssAnon sampling, as bench_data measures it)

import datasets  # noqa: E402
from lbvae.data import files as data_files  # noqa: E402
from lbvae.data import ground_truth  # noqa: E402

BATCH = 64
CELEBA_IMAGES = 202_599
CELEBA_SPLIT = (162_770, 19_867, 19_962)        # train, valid, test of list_eval_partition.txt
CELEBA_ATTRIBUTES = 40
MPI3D_SHAPE = (1_036_800, 64, 64, 3)


# --- writing full-size files in the real formats (tmp + rename: a half-written file is never reused) ---
def atomic(path: Path, write) -> None:
    if path.exists():
        print(f"  reusing {path} ({path.stat().st_size / 1e9:.2f} GB)")
        return
    tmp = path.with_name(path.name + ".writing")
    tic = time.perf_counter()
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"  wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - tic:.0f} s")


def npz_member(zf: zipfile.ZipFile, key: str, shape, blocks) -> None:
    """One array member written as numpy writes it (force_zip64), block by block."""
    with zf.open(key + ".npy", "w", force_zip64=True) as member:
        npy_format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
        for block in blocks:
            member.write(memoryview(np.ascontiguousarray(block, np.uint8)).cast("B"))


def grid_classes(sizes, start, stop) -> np.ndarray:
    return np.stack(np.unravel_index(np.arange(start, stop), sizes), axis=1)


def write_dsprites(path: Path) -> None:
    standin = datasets.load_dataset("dsprites")
    n, sizes = len(standin), standin.factor_sizes
    classes = np.concatenate([np.zeros((n, 1), np.int64), grid_classes(sizes, 0, n)], axis=1)
    blocks = (standin.images(np.arange(s, min(s + 8192, n)))[:, 0] // 255 for s in range(0, n, 8192))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        npz_member(zf, "imgs", (n, 64, 64), blocks)
        with zf.open("latents_classes.npy", "w") as member:
            npy_format.write_array(member, classes)


def write_shapes3d(path: Path) -> None:
    import h5py

    standin = datasets.load_dataset("shapes3d")
    n, sizes = len(standin), standin.factor_sizes
    values = (np.arange(10) / 10, np.arange(10) / 10, np.arange(10) / 10, np.linspace(0.75, 1.25, 8),
              np.arange(4.0), np.linspace(-30, 30, 15))
    band = 15_000
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, 64, 64, 3), np.uint8, chunks=(band, 4, 4, 1),
                                  compression="gzip", compression_opts=4)
        labels = f.create_dataset("labels", (n, 6), np.float64)
        for start in range(0, n, band):
            stop = min(start + band, n)
            images[start:stop] = standin.images(np.arange(start, stop)).transpose(0, 2, 3, 1)
            classes = grid_classes(sizes, start, stop)
            labels[start:stop] = np.stack([values[j][classes[:, j]] for j in range(6)], axis=1)


def write_mpi3d(path: Path) -> None:
    rows = 4096
    zeros = np.zeros((rows,) + MPI3D_SHAPE[1:], np.uint8)
    blocks = (zeros[:min(rows, MPI3D_SHAPE[0] - s)] for s in range(0, MPI3D_SHAPE[0], rows))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        npz_member(zf, "images", MPI3D_SHAPE, blocks)


def write_celeba(folder: Path) -> None:
    """JPEGs of 64 stand-in faces upscaled to 178x218 with a little noise, cycled."""
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.jpg" for i in range(1, CELEBA_IMAGES + 1)]
    rng = np.random.default_rng(0)

    def write_zip(tmp: Path) -> None:
        faces = datasets.load_dataset("celeba").images(np.arange(64)).transpose(0, 2, 3, 1)
        jpegs = []
        for face in faces:
            big = np.kron(face, np.ones((4, 3, 1), np.uint8))[:218, :178].astype(np.int16)
            big = np.clip(big + rng.integers(-12, 13, big.shape), 0, 255).astype(np.uint8)
            jpegs.append(iio.imwrite("<bytes>", big, extension=".jpg", quality=90))
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for i, name in enumerate(names):
                zf.writestr(f"img_align_celeba/{name}", jpegs[i % len(jpegs)])

    def write_attributes(tmp: Path) -> None:
        header = " ".join(f"Attribute_{k}" for k in range(CELEBA_ATTRIBUTES))
        table = rng.choice(np.array(["-1", " 1"]), size=(CELEBA_IMAGES, CELEBA_ATTRIBUTES))
        body = "\n".join(f"{n} " + " ".join(row) for n, row in zip(names, table.tolist()))
        tmp.write_text(f"{CELEBA_IMAGES}\n{header}\n{body}\n")

    def write_partition(tmp: Path) -> None:
        codes = np.repeat([0, 1, 2], CELEBA_SPLIT)
        tmp.write_text("".join(f"{n} {c}\n" for n, c in zip(names, codes.tolist())))

    atomic(folder / "img_align_celeba.zip", write_zip)
    atomic(folder / "list_attr_celeba.txt", write_attributes)
    atomic(folder / "list_eval_partition.txt", write_partition)


WRITERS = {"dsprites": lambda d: atomic(d / data_files.DSPRITES_FILE, write_dsprites),
           "shapes3d": lambda d: atomic(d / data_files.SHAPES3D_FILE, write_shapes3d),
           "mpi3d": lambda d: atomic(d / "mpi3d_real.npz", write_mpi3d),
           "celeba": lambda d: write_celeba(d / data_files.CELEBA_DIR)}
SOURCES = {"dsprites": lambda d: d / data_files.DSPRITES_FILE, "shapes3d": lambda d: d / data_files.SHAPES3D_FILE,
           "mpi3d": lambda d: d / "mpi3d_real.npz",
           "celeba": lambda d: d / data_files.CELEBA_DIR / "list_eval_partition.txt"}    # the last one written
SOURCE_BYTES = {"dsprites": 30e6, "shapes3d": 0.4e9, "mpi3d": 12.8e9, "celeba": 1.0e9}
CACHE_BYTES = {"dsprites": 0, "shapes3d": 5.9e9, "mpi3d": 0, "celeba": 2.5e9}


# --- the measurement, in a fresh process per dataset --------------------------------------
def cache_files(name: str, folder: Path) -> list[Path]:
    where = folder / data_files.CELEBA_DIR if name == "celeba" else folder
    stems = {"dsprites": "dsprites_*_imgs", "shapes3d": "3dshapes_images_nchw", "mpi3d": "mpi3d_real_images_nchw",
             "celeba": "img_align_celeba_crop*_nchw"}[name]
    return list(where.glob(stems + ".npy")) + list(where.glob(stems + ".npy.json"))


def measure(name: str, folder: Path, batches: int, steps: int, repeats: int, reuse_cache: bool) -> dict:
    out = {"name": name}
    if not reuse_cache:
        for path in cache_files(name, folder):
            path.unlink()
    sampler, tic = PeakAnon(), time.perf_counter()
    sampler.start()
    cached = datasets.cache(name, folder)
    out.update(build_s=time.perf_counter() - tic, build_anon_mib=sampler.stop() / 1024,
               cache=str(cached) if cached.suffix == ".npy" else None)

    tic = time.perf_counter()
    ds = datasets.load_dataset(name, "real", folder)
    out["open_s"] = time.perf_counter() - tic
    rng = np.random.default_rng(0)
    ds.images(rng.integers(0, len(ds), BATCH))
    out["anon_before_batches_mib"] = status_kib("RssAnon") / 1024
    sampler, tic = PeakAnon(), time.perf_counter()
    sampler.start()
    for _ in range(batches):
        ds.images(rng.integers(0, len(ds), BATCH))
    out.update(batches_per_s=batches / (time.perf_counter() - tic), batches_anon_mib=sampler.stop() / 1024,
               vm_rss_mib=status_kib("VmRSS") / 1024, vm_hwm_mib=status_kib("VmHWM") / 1024)

    import torch

    if steps == 0:      # --steps 0: the data side only
        return {**out, "train_real": [], "train_standin": [], "ratios": []}
    import functools

    from config import Config
    from lbvae.pipeline import training
    from lbvae.pipeline.runs import RunSpec
    from lbvae.pipeline.training import train

    training.tqdm = functools.partial(training.tqdm, disable=True)     # 12 step bars would bury the table

    cfg = Config(batch_size=BATCH, log_interval=steps, checkpoint_interval=steps, device="cpu")
    standin = datasets.load_dataset(name)
    device = torch.device("cpu")

    def images_per_s(dataset, seed: int, n_steps: int) -> float:
        with tempfile.TemporaryDirectory() as run_dir:
            spec = RunSpec("beta", name, 4.0, 0.0, seed=seed, steps=n_steps, run_dir=Path(run_dir))
            tic = time.perf_counter()
            train(spec, cfg, dataset, device, position=0)
            return n_steps * BATCH / (time.perf_counter() - tic)

    images_per_s(standin, 99, 20)       # warm-up: allocator, kernels
    real, stand, ratios = [], [], []
    for r in range(repeats):
        pair = {}
        for which in (("real", "standin") if r % 2 == 0 else ("standin", "real")):
            pair[which] = images_per_s(ds if which == "real" else standin, r, steps)
        real.append(pair["real"])
        stand.append(pair["standin"])
        ratios.append(pair["real"] / pair["standin"])
    out.update(train_real=real, train_standin=stand, ratios=ratios)
    return out


def run_measurement(name: str, folder: Path, args) -> dict:
    command = [sys.executable, __file__, "--measure", name, "--dir", str(folder), "--batches", str(args.batches),
               "--steps", str(args.steps), "--repeats", str(args.repeats)] + (["--reuse-cache"] * args.reuse_cache)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)     # progress bars pass through
    if done.returncode != 0:
        raise SystemExit(f"measurement of {name} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values, digits: int = 0) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/disent_bench", help="where the full-size files are written")
    parser.add_argument("--datasets", nargs="+", default=list(ground_truth.DATASET_NAMES),
                        choices=ground_truth.DATASET_NAMES)
    parser.add_argument("--batches", type=int, default=2000, help="random batches of 64 timed")
    parser.add_argument("--steps", type=int, default=200, help="training steps per timed run (0: no training)")
    parser.add_argument("--repeats", type=int, default=3, help="real/stand-in training pairs")
    parser.add_argument("--reuse-cache", action="store_true", help="keep an existing cache (no build timing)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.dir)
    if args.measure:
        print(json.dumps(measure(args.measure, folder, args.batches, args.steps, args.repeats, args.reuse_cache)))
        return
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.datasets:
        written = SOURCES[name](folder).exists()
        need = SOURCE_BYTES[name] * (not written) + CACHE_BYTES[name]
        free = shutil.disk_usage(folder).free
        if free < need:
            print(f"{name}: skipped, {folder} has {free / 1e9:.1f} GB free, needs about {need / 1e9:.1f} GB")
            continue
        print(f"{name}: files in the real format")
        WRITERS[name](folder)
        results.append(run_measurement(name, folder, args))
        print(f"{name}: {json.dumps(results[-1])}")       # each as it comes: a long run may be cut short
        print(f"  {row(results[-1])}")
    print(f"\nload: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; training "
          f"{args.steps} steps of {BATCH}, {args.repeats} repeats: median (min-max)")
    print("| dataset | cache build | build peak anon | open | batches of 64 /s | peak anon (batches) | VmRSS / VmHWM "
          "| train img/s real | train img/s stand-in | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(row(r))


def row(r: dict) -> str:
    build = f"{r['build_s']:.0f} s" if r["cache"] else "none needed"
    return (f"| {r['name']} | {build} | {r['build_anon_mib']:.0f} MiB | {r['open_s']:.2f} s | "
            f"{r['batches_per_s']:,.0f} | {r['batches_anon_mib']:.0f} MiB | {r['vm_rss_mib']:.0f} / "
            f"{r['vm_hwm_mib']:.0f} MiB | {spread(r['train_real'])} | {spread(r['train_standin'])} | "
            f"{spread(r['ratios'], 2)} |")


if __name__ == "__main__":
    main()
