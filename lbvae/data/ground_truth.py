"""The ground-truth state space every dataset shares: factor grids, index <-> classes, sampling.

A factor dataset's image index is the row-major index over its factor grid
(``np.ravel_multi_index(classes, sizes)``), as in the published files (docs/datasets.md).
``GroundTruthDataset`` owns that mapping and the sampling of factor classes, so metrics
and figures need nothing dataset-specific; subclasses (``datasets.FileDataset``,
``datasets.CelebA``, the stand-ins of ``lbvae/data/standins.py``) only read or render images.

NumPy only: metrics and data tests import this without torch.
"""
from __future__ import annotations

import numpy as np

IMAGE_SIZE = 64
DATASET_NAMES = ("dsprites", "shapes3d", "mpi3d", "celeba")
FACTOR_DATASETS = ("dsprites", "shapes3d", "mpi3d")
SOURCES = ("real", "standin")            # the published files, or procedural stand-ins
MPI3D_VARIANTS = ("toy", "realistic", "real")

# Factor names and sizes in the order of the files' row-major index (docs/datasets.md).
FACTORS = {
    "dsprites": (("shape", "scale", "orientation", "posX", "posY"), (3, 6, 40, 32, 32)),
    "shapes3d": (("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
                 (10, 10, 10, 8, 4, 15)),
    "mpi3d": (("object_color", "object_shape", "object_size", "camera_height", "background_color",
               "horizontal_axis", "vertical_axis"), (6, 6, 2, 3, 3, 40, 40)),
}
CHANNELS = {"dsprites": 1, "shapes3d": 3, "mpi3d": 3, "celeba": 3}


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

