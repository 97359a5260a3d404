"""MINE (Belghazi et al. 2018) on correlated Gaussians, against the closed-form mutual
information: the accuracy table of docs/mine.md.

    python benchmarks/mine_gaussians.py            # 20,000 pairs, batch 256, 2,000 steps
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lbvae.mine.estimator import correlated_gaussians, estimate_mi  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--rhos", type=float, nargs="+", default=[0.5, 0.9])
    args = parser.parse_args()
    torch.set_num_threads(1)        # one summation order on every machine
    print(f"{args.pairs:,} pairs (half train, half held out), batch {args.batch_size}, {args.steps:,} Adam steps, "
          f"estimate = DV bound on the held-out pairs")
    print("| pairs | ρ | estimate (nats) | closed form | error |\n|---|---|---|---|---|")
    for dim in args.dims:
        for rho in args.rhos:
            tic = time.perf_counter()
            x, z, true = correlated_gaussians(args.pairs, dim=dim, rho=rho, seed=1)
            mi = estimate_mi(x, z, steps=args.steps, batch_size=args.batch_size, seed=0)["mi"]
            print(f"| {dim} | {rho:g} | {mi:.4f} | {true:.4f} | {100 * (mi - true) / true:+.1f} % |"
                  f"  ({time.perf_counter() - tic:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
