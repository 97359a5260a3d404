"""SAP, the Separated Attribute Predictability score (Kumar, Sattigeri & Balakrishnan,
"Variational Inference of Disentangled Latent Concepts from Unlabeled Observations",
ICLR 2018), in the study's discrete variant and the R² (continuous) one."""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from lbvae.metrics.common import _THREADS, SAP_C, _check_train_test, _mean_over, _varying, check_inputs
from lbvae.metrics.information import _top_two


def _sap_accuracy(x, y, x_test, y_test, C, random_state) -> float:
    # dual="auto" is the default since scikit-learn 1.5 and solves the primal here
    # (N > 1 feature): deterministic, so random_state only matters on the dual path.
    clf = LinearSVC(C=C, class_weight="balanced", dual="auto", random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x[:, None], y)
    return float(np.mean(clf.predict(x_test[:, None]) == y_test))


def sap_discrete(factors, codes, test_factors, test_codes, C=SAP_C, random_state=0) -> dict:
    """SAP score, discrete variant: the λβ study's SAP (Kumar, Sattigeri & Balakrishnan,
    "Variational Inference of Disentangled Latent Concepts from Unlabeled
    Observations", ICLR 2018, Sec. 3).

    For every (latent i, factor j): ``LinearSVC(C=0.01, class_weight="balanced",
    random_state=random_state)`` fitted on latent i alone (raw codes) of the train
    split, accuracy on the test split; per factor the best minus the second best
    accuracy over latents; mean over factors. In [0, 1], higher is better. It
    saturates low on factors with many classes (a linear classifier on one latent
    cannot separate 40 ordered classes), see docs/metrics.md.

    This is also disentanglement_lib's ``_compute_sap(..., continuous_factors=False)``,
    the setting of its unsupervised study's sap_score.gin; disentanglement_lib passes
    no random_state. ``dual="auto"`` (scikit-learn's default since 1.5) picks liblinear's
    primal solver here, which is deterministic. scikit-learn < 1.5 defaulted to the
    randomised dual solver: on the reference fixtures (scikit-learn 1.2.2) its
    accuracies differed by up to 0.002 and the SAP by up to 4e-4.
    Factors with one class in the train split are left out (no classifier can be fitted).

    Returns {"sap_discrete", "sap_discrete_per_factor" (K,), "accuracy" (L, K)}.
    """
    factors, codes, test_factors, test_codes = _check_train_test(factors, codes, test_factors, test_codes)
    varying = _varying(factors)
    pairs = [(i, j) for i in range(codes.shape[1]) for j in np.flatnonzero(varying)]

    def fit(pair):
        i, j = pair
        return _sap_accuracy(codes[:, i], factors[:, j], test_codes[:, i], test_factors[:, j], C, random_state)

    accuracy = np.zeros((codes.shape[1], factors.shape[1]))
    with ThreadPoolExecutor(_THREADS) as pool:      # one-feature fits are independent
        for (i, j), acc in zip(pairs, pool.map(fit, pairs)):
            accuracy[i, j] = acc
    first, second = _top_two(accuracy)
    per_factor = np.where(varying, first - second, 0.0)
    return {"sap_discrete": _mean_over(per_factor, varying), "sap_discrete_per_factor": per_factor,
            "accuracy": accuracy}


def sap_continuous(factors, codes, test_factors=None, test_codes=None) -> dict:
    """SAP score, continuous variant (Kumar et al., ICLR 2018, Sec. 3), as
    disentanglement_lib's ``_compute_sap(..., continuous_factors=True)``.

    For every (latent i, factor j) the R² of a linear fit of the factor class on the
    latent, cov(z_i, f_j)² / (var z_i · var f_j) (``np.cov``, ddof=1), 0 where var z_i
    <= 1e-12; per factor the best minus second best over latents; mean over factors.
    In [0, 1], higher is better. Like disentanglement_lib it uses the train split only:
    ``test_factors``/``test_codes`` are accepted for a call symmetric with
    :func:`sap_discrete`, checked, and not used.

    Deliberate difference: a constant factor (var f_j = 0) is NaN in
    disentanglement_lib; here its scores are 0 and it is left out of the mean.

    Returns {"sap_continuous", "sap_continuous_per_factor" (K,), "r2" (L, K)}.
    """
    if test_factors is not None or test_codes is not None:
        _check_train_test(factors, codes, test_factors, test_codes)
    factors, codes = check_inputs(factors, codes)
    codes = codes.astype(np.float64)             # np.cov's precision, as disentanglement_lib
    n = codes.shape[0]
    if n < 2:
        raise ValueError("sap_continuous needs at least 2 points (it uses variances with ddof=1)")
    y = factors.astype(np.float64)
    zc, yc = codes - codes.mean(axis=0), y - y.mean(axis=0)
    cov = zc.T @ yc / (n - 1)
    var_z, var_y = (zc ** 2).sum(axis=0) / (n - 1), (yc ** 2).sum(axis=0) / (n - 1)
    denom = var_z[:, None] * var_y[None, :]
    usable = (var_z[:, None] > 1e-12) & (var_y[None, :] > 0)
    r2 = np.divide(cov ** 2, denom, out=np.zeros_like(cov), where=usable)
    varying = var_y > 0
    first, second = _top_two(r2)
    per_factor = np.where(varying, first - second, 0.0)
    return {"sap_continuous": _mean_over(per_factor, varying), "sap_continuous_per_factor": per_factor,
            "r2": r2}
