"""Ground-truth datasets: one interface for real files and procedural stand-ins.

Every dataset hands out images as uint8 arrays of shape (n, C, 64, 64) with values
0..255 (dSprites' 0/1 pixels are scaled to 0/255), so every consumer converts with
``x / 255`` the same way. Factor datasets also hand out integer factor classes; the
image index is the row-major index over the factor grid (``np.ravel_multi_index``),
as in the original files (REFERENCE.md §2).

This module knows nothing of models: it stays on NumPy so that metrics and data
tests run without torch.
"""
from __future__ import annotations

import numpy as np

IMAGE_SIZE = 64


class DataError(Exception):
    """A dataset file or setting is wrong; the message names it and says what to do."""


class GroundTruthDataset:
    """Images indexed row-major over a grid of discrete factors of variation.

    Subclasses implement ``_images(indices)`` for sorted, unique, in-range int64
    indices; this base class owns the factor state space (index <-> classes,
    sampling), so metrics and figures need nothing dataset-specific.
    """

    name: str = "dataset"
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    channels: int = 1
    has_factors: bool = True

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    # --- index <-> factor classes -------------------------------------------------
    def index_to_factors(self, indices) -> np.ndarray:
        """Factor classes (n, K) int64 of row-major image indices."""
        indices = self._check_indices(indices)
        return np.stack(np.unravel_index(indices, self.factor_sizes), axis=1).astype(np.int64)

    def factors_to_index(self, factors) -> np.ndarray:
        """Row-major image indices (n,) int64 of factor classes (n, K)."""
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
        return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample_fixed_factor(self, n: int, factor: int, rng: np.random.Generator) -> np.ndarray:
        """n factor-class vectors that share one random value of ``factor``; the
        other factors are drawn uniformly (the batches of the Z-diff / Z-min Var
        metrics, Higgins et al. 2017; Kim & Mnih 2018)."""
        if not 0 <= factor < self.num_factors:
            raise DataError(f"{self.name}: factor index {factor} out of range 0..{self.num_factors - 1}")
        classes = self.sample_factors(n, rng)
        classes[:, factor] = rng.integers(0, self.factor_sizes[factor])
        return classes

    # --- images ----------------------------------------------------------------------
    def images(self, indices) -> np.ndarray:
        """uint8 images (n, C, 64, 64) for any int indices, in the order given."""
        indices = self._check_indices(indices)
        if indices.size == 0:
            return np.zeros((0, self.channels, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        # Readers are fastest (h5py, pread, mmap) on sorted unique rows; restore order after.
        unique, inverse = np.unique(indices, return_inverse=True)
        return self._images(unique)[inverse.reshape(-1)]

    def images_from_factors(self, factors) -> np.ndarray:
        return self.images(self.factors_to_index(factors))

    def factors(self, indices) -> np.ndarray:
        """Integer factor classes (n, K) of the images at ``indices``."""
        if not self.has_factors:
            raise DataError(f"{self.name} has no factor grid: factor metrics do not apply to it")
        return self.index_to_factors(indices)

    def _images(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_indices(self, indices) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise DataError(f"{self.name}: image indices must be integers, got dtype {indices.dtype}")
        indices = indices.astype(np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise DataError(f"{self.name}: image index out of range 0..{len(self) - 1}")
        return indices

    def __repr__(self) -> str:
        grid = ", ".join(f"{n}={s}" for n, s in zip(self.factor_names, self.factor_sizes))
        return f"{type(self).__name__}({self.name}, {len(self)} images, C={self.channels}, {grid})"
