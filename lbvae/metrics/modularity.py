"""Modularity and explicitness (Ridgeway & Mozer, "Learning Deep Disentangled Embeddings
With the F-Statistic Loss", NeurIPS 2018)."""
from __future__ import annotations

import warnings

import numpy as np
import scipy.optimize
import scipy.stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits  # installed with scikit-learn

from lbvae.metrics.common import NUM_BINS, _check_train_test, _mean_over, _varying
from lbvae.metrics.information import _mi_tables, discretize


def _modularity_per_latent(mi: np.ndarray) -> np.ndarray:
    squared = np.square(mi)
    top = squared.max(axis=1)
    numerator = squared.sum(axis=1) - top
    denominator = top * (squared.shape[1] - 1.0)
    delta = np.divide(numerator, denominator, out=np.zeros_like(top), where=denominator > 0)
    return np.where(top == 0.0, 0.0, 1.0 - delta)


def _fit_logistic_regression(x, y) -> LogisticRegression:
    """``LogisticRegression()`` with scikit-learn's defaults (lbfgs, C=1, 100 iterations),
    as disentanglement_lib fits it; it may stop before converging, which is part of
    that definition, so the ConvergenceWarning is silenced here and nowhere else."""
    # Small (N, L) x (L, classes) products: multi-threaded BLAS only adds contention
    # (4x slower on 2 cores, same numbers), so BLAS runs single-threaded for the fit.
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression().fit(x, y)


def _macro_roc_auc(onehot: np.ndarray, scores: np.ndarray) -> float:
    """Macro one-vs-rest ROC-AUC over the columns that have positives and negatives.

    Each column's AUC by the Mann-Whitney rank identity (mid-ranks for ties), which is
    the trapezoidal ROC-AUC of ``sklearn.metrics.roc_auc_score`` exactly, in one sort
    for all columns. disentanglement_lib assumes every class occurs in both splits
    (and raises otherwise); columns without both kinds of point are left out here.
    """
    positives = onehot.sum(axis=0)
    negatives = onehot.shape[0] - positives
    ok = (positives > 0) & (negatives > 0)
    if not ok.any():
        return 0.0
    ranks = scipy.stats.rankdata(scores[:, ok], axis=0)
    pos, neg = positives[ok], negatives[ok]
    auc = ((ranks * onehot[:, ok]).sum(axis=0) - pos * (pos + 1) / 2.0) / (pos * neg)
    return float(np.mean(auc))


def _explicitness(x_train, y_train, x_test, y_test) -> tuple[float, float]:
    """Macro one-vs-rest ROC-AUC of a logistic regression (train, test)."""
    clf = _fit_logistic_regression(x_train, y_train)
    return tuple(_macro_roc_auc((y[:, None] == clf.classes_[None, :]).astype(np.float64), clf.predict_proba(x))
                 for x, y in ((x_train, y_train), (x_test, y_test)))


def modularity_explicitness(factors, codes, test_factors, test_codes, num_bins=NUM_BINS) -> dict:
    """Modularity and explicitness (Ridgeway & Mozer, "Learning Deep Disentangled
    Embeddings With the F-Statistic Loss", NeurIPS 2018), as disentanglement_lib's
    ``compute_modularity_explicitness``.

    Modularity: MI matrix of the train split (``num_bins`` equal-width bins, nats);
    per latent 1 - (sum_j m_ij² - max_j m_ij²) / (max_j m_ij² · (K - 1)), 0 for a
    latent with no information; mean over latents. Explicitness: latents standardised
    with the train mean and std, one ``LogisticRegression()`` (scikit-learn defaults:
    lbfgs, C=1, 100 iterations) per factor on all latents, macro one-vs-rest ROC-AUC on
    the train and on the test split; mean over factors. Both in [0, 1], higher is better.

    Deliberate differences (disentanglement_lib gives NaN or raises): a constant
    latent is standardised with std 1 instead of 0; a factor with one class in the
    train split is left out of the MI columns and of the explicitness mean; classes
    absent from a split are left out of that split's ROC-AUC average.

    Returns {"modularity", "explicitness_train", "explicitness_test",
    "modularity_per_latent" (L,), "explicitness_test_per_factor" (K,), "mi" (L, K)}.
    """
    factors, codes, test_factors, test_codes = _check_train_test(factors, codes, test_factors, test_codes)
    varying = _varying(factors)
    mi = _mi_tables(factors, discretize(codes, num_bins))[0]
    per_latent = _modularity_per_latent(mi[:, varying]) if varying.any() else np.zeros(codes.shape[1])
    codes, test_codes = codes.astype(np.float64), test_codes.astype(np.float64)
    mean, std = codes.mean(axis=0), codes.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z_train, z_test = (codes - mean) / std, (test_codes - mean) / std
    exp_train, exp_test = np.zeros(factors.shape[1]), np.zeros(factors.shape[1])
    for j in np.flatnonzero(varying):
        exp_train[j], exp_test[j] = _explicitness(z_train, factors[:, j], z_test, test_factors[:, j])
    return {"modularity": float(np.mean(per_latent)),
            "explicitness_train": _mean_over(exp_train, varying),
            "explicitness_test": _mean_over(exp_test, varying),
            "modularity_per_latent": per_latent, "explicitness_test_per_factor": exp_test, "mi": mi}
