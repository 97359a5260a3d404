"""A tiny ground-truth dataset for training tests, and a script that trains one run on it
(the kill-and-resume test runs it in a subprocess and SIGKILLs it)."""
import sys

import numpy as np

from lbvae.data.ground_truth import GroundTruthDataset


class Squares(GroundTruthDataset):
    """A 4×4×3 grid of white squares (x, y, size): small enough to train in seconds."""
    name = "squares"
    factor_names = ("x", "y", "size")
    factor_sizes = (4, 4, 3)
    channels = 1

    def __init__(self, fail_after_reads: int | None = None):
        self.reads, self.fail_after_reads = 0, fail_after_reads

    def _images(self, indices):
        self.reads += 1
        if self.fail_after_reads is not None and self.reads > self.fail_after_reads:
            raise KeyboardInterrupt("simulated kill")
        out = np.zeros((len(indices), 1, 64, 64), np.uint8)
        for i, (x, y, s) in enumerate(self.index_to_factors(indices)):
            out[i, 0, 16 * y:16 * y + 6 + 4 * s, 16 * x:16 * x + 6 + 4 * s] = 255
        return out


TINY = dict(batch_size=8, loss_window=10, log_interval=5, checkpoint_interval=5, heldout_fraction=0.1,
            metric_train_points=30, metric_test_points=10, figures=False, device="cpu")


def tiny_spec(run_dir, steps: int, seed: int = 7):
    from pathlib import Path

    from lbvae.pipeline.runs import RunSpec
    return RunSpec("beta", "squares", 4.0, 0.0, seed=seed, steps=steps, run_dir=Path(run_dir))


def run_tiny(run_dir: str, steps: int) -> None:
    """What a sweep does for one run (lock, train with resume, save, evaluate)."""
    import torch

    from config import Config
    from lbvae.pipeline import study
    torch.set_num_threads(1)
    rows = study.run_pack([tiny_spec(run_dir, steps)], Config(**TINY), Squares(), torch.device("cpu"))
    print(rows[0]["status"] if rows else "skipped")


if __name__ == "__main__":
    run_tiny(sys.argv[1], int(sys.argv[2]))
