"""What every metric shares: the estimator constants and the checks of its inputs
(factors (N, K) integer classes, codes (N, L) finite reals), each failing with a
ValueError that names the argument."""
from __future__ import annotations

import os

import numpy as np

NUM_BINS = 20                 # equal-width bins per latent for MI (the study and disentanglement_lib)
SAP_C = 0.01                  # LinearSVC regularisation of the SAP classifiers (Kumar et al. 2018)
FACTOR_VAE_MIN_STD = 0.05     # disentanglement_lib's prune_dims.threshold for the FactorVAE score
DCI_FAST_TREES = 50           # ExtraTrees size of dci(model="fast")
DCI_FAST_MIN_LEAF = 20        # leaves of >= 20 points keep noise latents' importance small
_ENCODE_CHUNK = 4096          # images per encode() call in the samplers (bounded memory)
_THREADS = max(1, min(4, os.cpu_count() or 1))   # liblinear fits release the GIL


def _check_factors(factors, name="factors") -> np.ndarray:
    factors = np.asarray(factors)
    if factors.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, K) of factor classes, got shape {factors.shape}")
    if factors.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer factor classes, got dtype {factors.dtype}; turn "
                         f"factor values into classes first (e.g. np.unique(v, return_inverse=True))")
    if factors.shape[0] == 0 or factors.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {factors.shape}")
    return factors.astype(np.int64, copy=False)


def _check_codes(codes, name="codes") -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, L) of latent codes, got shape {codes.shape}"
                         + ("; use codes.reshape(-1, 1) for a single latent" if codes.ndim == 1 else ""))
    if codes.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers, got dtype {codes.dtype}")
    if codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {codes.shape}")
    if codes.dtype != np.float32:
        # float32 stays float32 so that it is binned in its own precision (see discretize).
        codes = codes.astype(np.float64, copy=False)
    if not np.isfinite(codes).all():
        bad = np.argwhere(~np.isfinite(codes))[0]
        raise ValueError(f"{name} has {int((~np.isfinite(codes)).sum())} NaN/Inf values "
                         f"(first at row {bad[0]}, latent {bad[1]}); metrics need finite codes")
    return codes


def check_inputs(factors, codes, factors_name="factors", codes_name="codes"):
    """Validated (int64 factors (N, K), float64 codes (N, L)); ValueError naming the argument."""
    factors = _check_factors(factors, factors_name)
    codes = _check_codes(codes, codes_name)
    if factors.shape[0] != codes.shape[0]:
        raise ValueError(f"{factors_name} and {codes_name} must have the same number of rows (points), "
                         f"got {factors.shape[0]} and {codes.shape[0]}")
    return factors, codes


def _check_train_test(factors, codes, test_factors, test_codes):
    factors, codes = check_inputs(factors, codes)
    test_factors, test_codes = check_inputs(test_factors, test_codes, "test_factors", "test_codes")
    if test_factors.shape[1] != factors.shape[1]:
        raise ValueError(f"test_factors has {test_factors.shape[1]} factors, factors has {factors.shape[1]}")
    if test_codes.shape[1] != codes.shape[1]:
        raise ValueError(f"test_codes has {test_codes.shape[1]} latents, codes has {codes.shape[1]}")
    return factors, codes, test_factors, test_codes


def _check_num_bins(num_bins) -> int:
    if int(num_bins) != num_bins or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")
    return int(num_bins)


def _varying(factors: np.ndarray) -> np.ndarray:
    """Mask (K,) of factors that take more than one value; only those enter factor means."""
    return (factors != factors[:1]).any(axis=0)


def _mean_over(values: np.ndarray, mask: np.ndarray) -> float:
    return float(np.mean(values[mask])) if mask.any() else 0.0
