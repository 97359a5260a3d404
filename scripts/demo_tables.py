"""Print the README's demo tables from the demo's results.csv files (run the demos first).

    python main_beta.py --demo && python main_lambda.py --demo
    python scripts/demo_tables.py            # or: --root DIR (default demo_results)
"""
import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

TITLES = {"dsprites": "dSprites", "shapes3d": "Shapes3D", "mpi3d": "MPI3D"}


def seed_means(path: Path, keys) -> dict:
    """{(dataset, β, λ): (number of seeds, {key: mean over seeds})} of the finished runs."""
    groups = defaultdict(list)
    with open(path) as f:
        for row in csv.DictReader(f):
            if row["status"] == "done":
                groups[(row["dataset"], float(row["beta"]), float(row["lambda"]))].append(row)
    return {cell: (len(rows), {k: statistics.mean(float(r[k]) for r in rows) for k in keys})
            for cell, rows in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("demo_results"))
    root = parser.parse_args().root
    keys = ("heldout_recon", "heldout_mean_image_nll", "heldout_kl", "mig", "sap", "i_m")
    beta = seed_means(root / "betavae_results" / "results.csv", keys)
    print("| dataset | β | seeds | held-out recon | mean image | held-out KL | MIG | SAP | I_m (nats) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (d, b, _), (n, m) in sorted(beta.items(), key=lambda kv: (list(TITLES).index(kv[0][0]), kv[0][1])):
        print(f"| {TITLES[d]} | {b:g} | {n} | {m['heldout_recon']:.0f} | {m['heldout_mean_image_nll']:.0f} | "
              f"{m['heldout_kl']:.1f} | {m['mig']:.3f} | {m['sap']:.3f} | {m['i_m']:.2f} |")
    lam = seed_means(root / "lambda_betavae_results" / "results.csv", keys)
    top = max(b for _, b, _ in lam)
    print(f"\nλ stage at β = {top:g}, held-out recon (and held-out KL) for λ = "
          + ", ".join(f"{v:g}" for v in sorted({lv for _, _, lv in lam})) + ":")
    for d in TITLES:
        cells = sorted((lv, m) for (dd, b, lv), (_, m) in lam.items() if dd == d and b == top)
        if cells:
            print(f"  {TITLES[d]}: " + " → ".join(f"{m['heldout_recon']:.0f}" for _, m in cells)
                  + "  (KL " + " → ".join(f"{m['heldout_kl']:.1f}" for _, m in cells) + ")")


if __name__ == "__main__":
    main()
