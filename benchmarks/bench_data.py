"""Benchmarks of the data layer.

1. Stand-in rendering throughput, images/s on ONE core (pinned, single-threaded BLAS),
   through the public ``images()`` path with random batches of 64.
2. MPI3D-real memory: writes a FULL-SIZE file in the real format (1,036,800 x 64x64x3
   uint8 zeros, 12.7 GB, npz member stored uncompressed) to a temporary directory,
   streaming, then in a fresh process opens it with ``load_dataset("mpi3d", "real")`` and
   draws 1,000 random batches of 64. Reports peak anonymous memory (RssAnon, sampled by a
   thread: the memory that matters) and ru_maxrss (which would also count pages of a
   mapped file; docs/datasets.md), once with the file in the page cache and once cold.
3. With --dsprites: load time and memory of a full-size dSprites npz whose ``imgs`` member
   is compressed like the published one (images drawn by the stand-in).

    python benchmarks/bench_data.py [--batches 1000] [--keep] [--tmp /tmp] [--dsprites]
"""
from __future__ import annotations

import os

# One core, one thread: set before numpy loads its BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import numpy.lib.format as npy_format  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import datasets  # noqa: E402
from lbvae.data import files as data_files  # noqa: E402
from lbvae.data import ground_truth  # noqa: E402

MPI3D_SHAPE = (1_036_800, 64, 64, 3)


# --- memory measurement ---------------------------------------------------------------
def status_kib(field: str) -> int:
    """A memory field of /proc/self/status (RssAnon, VmHWM, ...) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_anon_kib() -> int:
    return status_kib("RssAnon")


def peaks(sampler: PeakAnon) -> dict:
    # ru_maxrss survives exec, so a child's figure is at least its parent's RSS at spawn
    # time; VmHWM is this process image's own peak RSS. Both count mapped file pages.
    return {"peak_anon_mib": sampler.stop() / 1024, "vm_hwm_mib": status_kib("VmHWM") / 1024,
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


class PeakAnon(threading.Thread):
    """Samples RssAnon every millisecond; the kernel keeps no peak of it (VmHWM is total RSS)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._done = rss_anon_kib(), threading.Event()

    def run(self):
        while not self._done.wait(0.001):
            self.peak = max(self.peak, rss_anon_kib())

    def stop(self) -> int:
        self._done.set()
        self.join()
        return max(self.peak, rss_anon_kib())


# --- writing full-size files in the real formats, streaming ---------------------------
def write_npz_member(zf: zipfile.ZipFile, key: str, shape, blocks) -> None:
    """Write one array member to an open npz as numpy does (force_zip64), block by block."""
    with zf.open(key + ".npy", "w", force_zip64=True) as member:
        npy_format.write_array_header_1_0(member, {"descr": npy_format.dtype_to_descr(np.dtype(np.uint8)),
                                                   "fortran_order": False, "shape": tuple(shape)})
        for block in blocks:
            member.write(memoryview(np.ascontiguousarray(block)).cast("B"))


def write_mpi3d_zeros(path: Path) -> None:
    rows_per_block = 4096
    zeros = np.zeros((rows_per_block,) + MPI3D_SHAPE[1:], np.uint8)
    blocks = (zeros[:min(rows_per_block, MPI3D_SHAPE[0] - start)]
              for start in range(0, MPI3D_SHAPE[0], rows_per_block))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        write_npz_member(zf, "images", MPI3D_SHAPE, blocks)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# --- the measurements -------------------------------------------------------------------
def measure(name: str, data_dir: str, batches: int) -> dict:
    """Run in a fresh process: open the real ``name`` file, draw random batches of 64."""
    baseline = rss_anon_kib()
    sampler = PeakAnon()
    sampler.start()
    tic = time.perf_counter()
    ds = datasets.load_dataset(name, "real", data_dir)
    opened = time.perf_counter()
    rng = np.random.default_rng(0)
    checksum = 0
    for _ in range(batches):
        checksum += int(ds.images(rng.integers(0, len(ds), 64))[:, :, 0, 0].sum())
    done = time.perf_counter()
    return {"open_s": opened - tic, "batches_s": done - opened, "baseline_anon_mib": baseline / 1024,
            **peaks(sampler), "checksum": checksum}


def run_measurement(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"measurement {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_standins(seconds: float) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from lbvae.data import standins

    for cached in vars(standins).values():     # time the table builds too (--dsprites built some)
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()
    print("stand-in rendering, one core, random batches of 64 through images():")
    for name in ground_truth.DATASET_NAMES:
        ds = datasets.load_dataset(name)
        rng = np.random.default_rng(0)
        tic = time.perf_counter()
        ds.images(rng.integers(0, len(ds), 64))     # builds the per-process tables
        first = time.perf_counter() - tic
        count, tic = 0, time.perf_counter()
        while time.perf_counter() - tic < seconds:
            ds.images(rng.integers(0, len(ds), 64))
            count += 64
        rate = count / (time.perf_counter() - tic)
        print(f"  {name:9s} {rate:9,.0f} images/s   (first batch, with table build: {first * 1e3:.0f} ms)")


def bench_mpi3d(tmp_root: str, batches: int, keep: bool) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench_mpi3d_", dir=tmp_root))
    path = folder / "mpi3d_real.npz"
    try:
        need = int(np.prod(MPI3D_SHAPE)) + (1 << 20)
        if shutil.disk_usage(folder).free < need:
            print(f"MPI3D: skipped, {folder} has less than {need / 1e9:.1f} GB free")
            return
        tic = time.perf_counter()
        write_mpi3d_zeros(path)
        print(f"MPI3D: wrote {path} ({path.stat().st_size / 1e9:.2f} GB, stored) in {time.perf_counter() - tic:.0f} s")
        for label, cold in (("page cache warm", False), ("page cache cold", True)):
            if cold:
                drop_from_page_cache(path)
            r = run_measurement(["--measure", "mpi3d", str(folder), "--batches", str(batches)])
            print(f"  {label}: open {r['open_s'] * 1e3:.1f} ms; {batches} batches of 64 in {r['batches_s']:.2f} s "
                  f"({batches * 64 / r['batches_s']:,.0f} images/s); peak RssAnon {r['peak_anon_mib']:.0f} MiB "
                  f"(interpreter + numpy alone: {r['baseline_anon_mib']:.0f} MiB); "
                  f"peak RSS: VmHWM {r['vm_hwm_mib']:.0f} MiB, ru_maxrss {r['ru_maxrss_mib']:.0f} MiB")
    finally:
        if keep:
            print(f"  kept {path}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def bench_dsprites(tmp_root: str, keep: bool) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench_dsprites_", dir=tmp_root))
    path = folder / data_files.DSPRITES_FILE
    try:
        ds = datasets.load_dataset("dsprites")
        n, sizes = len(ds), ds.factor_sizes
        classes = np.concatenate([np.zeros((n, 1), np.int64),
                                  np.stack(np.unravel_index(np.arange(n), sizes), axis=1)], axis=1)
        tic = time.perf_counter()
        blocks = (ds.images(np.arange(s, min(s + 8192, n)))[:, 0] // 255 for s in range(0, n, 8192))
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            write_npz_member(zf, "imgs", (n, 64, 64), blocks)
            with zf.open("latents_classes.npy", "w") as member:
                npy_format.write_array(member, classes)
        print(f"dSprites: wrote {path.stat().st_size / 1e6:.0f} MB compressed npz in {time.perf_counter() - tic:.0f} s")
        r = run_measurement(["--measure", "dsprites", str(folder)])
        print(f"  open (decompress + bit-pack) {r['open_s']:.1f} s; 1000 batches of 64 in {r['batches_s']:.2f} s; "
              f"peak RssAnon {r['peak_anon_mib']:.0f} MiB; VmHWM {r['vm_hwm_mib']:.0f} MiB, "
              f"ru_maxrss {r['ru_maxrss_mib']:.0f} MiB")
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0, help="per stand-in")
    parser.add_argument("--tmp", default="/tmp", help="where the full-size files are written")
    parser.add_argument("--keep", action="store_true", help="keep the full-size files")
    parser.add_argument("--skip-mpi3d", action="store_true")
    parser.add_argument("--dsprites", action="store_true", help="also time a full-size compressed dSprites")
    parser.add_argument("--measure", nargs=2, metavar=("NAME", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure, args.batches)))
        return
    # Memory first, while this parent process is small (see peaks()).
    if not args.skip_mpi3d:
        bench_mpi3d(args.tmp, args.batches, args.keep)
    if args.dsprites:
        bench_dsprites(args.tmp, args.keep)
    bench_standins(args.seconds)


if __name__ == "__main__":
    main()
