"""Time every metric of metrics.py on the study's sample size; prints a table.

    python benchmarks/bench_metrics.py            # all, GBT DCI included (minutes)
    python benchmarks/bench_metrics.py --no-gbt   # skip the slow study-standard DCI

Data: the study's 15,000 points (10,000 train + 5,000 test, docs/study.md) with
dSprites' factor grid (3, 6, 40, 32, 32) and 10 latents: 5 noisy copies of the
factors and 5 noise latents. The sampled metrics (Z-diff, Z-min Var) get a stand-in
dataset whose encode() is free, so their rows time the metric's own work (sampling,
image assembly, classifier), not an encoder; they use the dlib defaults divided by 10.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import metrics  # noqa: E402
from lbvae.data.ground_truth import GroundTruthDataset  # noqa: E402

SIZES = (3, 6, 40, 32, 32)


class IndexImages(GroundTruthDataset):
    """dSprites' grid; each image carries its row-major index in three pixels."""
    name = "bench"
    factor_sizes = SIZES
    factor_names = ("shape", "scale", "orientation", "x", "y")

    def _images(self, indices):
        out = np.zeros((len(indices), 1, 64, 64), np.uint8)
        for k in range(3):
            out[:, 0, 0, k] = (indices >> (8 * k)) & 255
        return out


def encode_index_images(images):
    index = sum(images[:, 0, 0, k].astype(np.int64) << (8 * k) for k in range(3))
    factors = np.stack(np.unravel_index(index, SIZES), axis=1).astype(np.float64)
    noise = np.sin(index[:, None] * np.arange(1, 6))          # deterministic per image
    return np.concatenate([factors + 0.3 * noise, noise], axis=1)


def data(seed=0):
    rng = np.random.default_rng(seed)
    f = np.stack([rng.integers(0, s, 15000) for s in SIZES], axis=1)
    z = np.concatenate([f + rng.normal(0, 0.3, f.shape), rng.normal(size=(15000, 5))], axis=1)
    return f[:10000], z[:10000], f[10000:], z[10000:]


def timed(fn, *args, repeat=1, **kwargs):
    """Best of ``repeat`` wall-clock runs: the machine is shared, the minimum is the cost."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-gbt", action="store_true", help="skip dci(model='gbt') (about 5 minutes)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per fast metric")
    args = parser.parse_args()
    load = os.getloadavg()
    f, z, ft, zt = data()
    rows = []
    fast = [
        ("mig", "20 bins, 10k train", lambda: metrics.mig(f, z), "mig"),
        ("i_m", "20 bins, 10k train", lambda: metrics.i_m(f, z), "i_m_normalized"),
        ("jemmig", "20 bins, 10k train", lambda: metrics.jemmig(f, z), "jemmig_normalized"),
        ("sap_discrete", "LinearSVC C=0.01 balanced, 10k/5k", lambda: metrics.sap_discrete(f, z, ft, zt),
         "sap_discrete"),
        ("sap_continuous", "R², 10k train", lambda: metrics.sap_continuous(f, z), "sap_continuous"),
        ("modularity_explicitness", "20 bins; LogisticRegression, 10k/5k",
         lambda: metrics.modularity_explicitness(f, z, ft, zt), "explicitness_test"),
        ("irs", "q=0.99, 10k train", lambda: metrics.irs(f, z), "irs"),
    ]
    total = 0.0
    for name, settings, fn, key in fast:
        seconds, out = timed(fn, repeat=args.repeat)
        total += seconds
        rows.append((name, settings, seconds, out[key]))
    rows.append(("-- total of the above", "budget 5 s", total, float("nan")))
    seconds, out = timed(metrics.study_metrics, f, z, ft, zt, repeat=args.repeat)
    rows.append(("study_metrics", "MIG + I_m + discrete SAP", seconds, out["mig"]))
    seconds, out = timed(metrics.dci, f, z, ft, zt, model="fast")
    rows.append(("dci", "fast: ExtraTrees(50, min_leaf=20), 10k/5k", seconds, out["dci_disentanglement"]))
    if not args.no_gbt:
        seconds, out = timed(metrics.dci, f, z, ft, zt, model="gbt")
        rows.append(("dci", "gbt: GradientBoosting() defaults, 10k/5k", seconds, out["dci_disentanglement"]))
    data_set = IndexImages()
    seconds, out = timed(metrics.z_diff, data_set, encode_index_images, np.random.default_rng(0),
                         num_train=1000, num_eval=500)
    rows.append(("z_diff", "64 pairs/point, 1000/500 points, free encode", seconds, out["z_diff_eval_accuracy"]))
    seconds, out = timed(metrics.z_min_var, data_set, encode_index_images, np.random.default_rng(0),
                         num_train=1000, num_eval=500, num_variance_estimate=1000)
    rows.append(("z_min_var", "64/point, 1000/500 points, 1000 var, free encode", seconds,
                 out["z_min_var_eval_accuracy"]))

    print(f"load average before/after: {load[0]:.2f} / {os.getloadavg()[0]:.2f} (others' jobs inflate times)")
    print(f"CPU cores: {os.cpu_count()}; best of {args.repeat} runs for the rows above the total; "
          f"data: 10,000 train + 5,000 test points, 10 latents, dSprites grid {SIZES}")
    print(f"{'metric':<26} {'settings':<50} {'seconds':>8} {'score':>7}")
    for name, settings, seconds, score in rows:
        print(f"{name:<26} {settings:<50} {seconds:8.2f} {score:7.3f}")


if __name__ == "__main__":
    main()
