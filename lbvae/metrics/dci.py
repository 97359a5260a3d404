"""DCI disentanglement, completeness and informativeness (Eastwood & Williams, "A Framework
for the Quantitative Evaluation of Disentangled Representations", ICLR 2018)."""
from __future__ import annotations

import numpy as np
import scipy.optimize
import scipy.stats
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier

from lbvae.metrics.common import _THREADS, DCI_FAST_MIN_LEAF, DCI_FAST_TREES, _check_train_test, _mean_over, _varying


def _dci_model(model: str, random_state):
    if model == "gbt":
        return GradientBoostingClassifier(random_state=random_state)
    if model == "fast":
        return ExtraTreesClassifier(n_estimators=DCI_FAST_TREES, min_samples_leaf=DCI_FAST_MIN_LEAF,
                                    n_jobs=_THREADS, random_state=random_state)
    raise ValueError(f'dci model must be "gbt" or "fast", got {model!r}')


def _dci_disentanglement_per_code(importance: np.ndarray) -> np.ndarray:
    return 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])


def _dci_completeness_per_factor(importance: np.ndarray) -> np.ndarray:
    return 1.0 - scipy.stats.entropy(importance + 1e-11, base=importance.shape[0])


def _dci_weighted(per_item: np.ndarray, importance: np.ndarray, axis: int) -> float:
    # disentanglement_lib's weighting: an all-zero importance matrix weighs items equally.
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    return float(np.sum(per_item * importance.sum(axis=axis) / importance.sum()))


def dci(factors, codes, test_factors, test_codes, model="gbt", random_state=0) -> dict:
    """DCI disentanglement, completeness and informativeness (Eastwood & Williams,
    "A Framework for the Quantitative Evaluation of Disentangled Representations",
    ICLR 2018), as disentanglement_lib's ``_compute_dci``.

    One classifier per factor on all latents (train split): the importance matrix
    R[i, j] = |feature importance of latent i for factor j|. Disentanglement: per latent
    1 - entropy_K(R[i, :]), weighted by the latent's share of total importance;
    completeness: per factor 1 - entropy_L(R[:, j]), weighted likewise; informativeness:
    mean classification accuracy over factors, on the train and on the test split
    (higher is better, despite disentanglement_lib's "err"-like name for it).

    ``model="gbt"``: ``GradientBoostingClassifier()`` with scikit-learn defaults (100
    trees of depth 3, learning rate 0.1), impurity importances: the study standard
    and disentanglement_lib's choice. Slow: it fits one tree per class per stage
    (about 100 s for a 40-class factor on 10,000 points, 2 cores).
    ``model="fast"``: ``ExtraTreesClassifier(n_estimators=50, min_samples_leaf=20)``
    impurity importances, a forest as in Eastwood & Williams' own experiments (they
    used random forests) with extremely randomised splits (Geurts et al. 2006): a valid
    importance matrix in a few seconds, but its scores are on another scale (noise
    latents keep 1-2 % importance); compare "fast" only with "fast".

    ``random_state`` (0) seeds the classifier. disentanglement_lib passes none, so its
    DCI changes from run to run (by about 1e-3 on the reference fixtures: the trees'
    random feature order breaks ties between equally good splits).

    Deliberate difference: factors with one class in the train split get no model
    (scikit-learn refuses one class); their importance column is 0 and they are left
    out of all three scores.

    Returns {"dci_disentanglement", "dci_completeness", "dci_informativeness_train",
    "dci_informativeness_test", "importance" (L, K), "disentanglement_per_code" (L,),
    "completeness_per_factor" (K,), "model"}.
    """
    factors, codes, test_factors, test_codes = _check_train_test(factors, codes, test_factors, test_codes)
    _dci_model(model, random_state)              # an unknown model name fails before any fitting
    varying = _varying(factors)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    acc_train, acc_test = np.zeros(factors.shape[1]), np.zeros(factors.shape[1])
    for j in np.flatnonzero(varying):
        clf = _dci_model(model, random_state).fit(codes, factors[:, j])
        importance[:, j] = np.abs(clf.feature_importances_)
        acc_train[j] = np.mean(clf.predict(codes) == factors[:, j])
        acc_test[j] = np.mean(clf.predict(test_codes) == test_factors[:, j])
    used = importance[:, varying]
    per_code = _dci_disentanglement_per_code(used) if used.shape[1] > 1 else np.ones(used.shape[0])
    per_factor = np.zeros(factors.shape[1])
    per_factor[varying] = _dci_completeness_per_factor(used) if used.shape[0] > 1 else 1.0
    return {
        "dci_disentanglement": _dci_weighted(per_code, used, axis=1) if varying.any() else 0.0,
        "dci_completeness": _dci_weighted(per_factor[varying], used, axis=0) if varying.any() else 0.0,
        "dci_informativeness_train": _mean_over(acc_train, varying),
        "dci_informativeness_test": _mean_over(acc_test, varying),
        "importance": importance, "disentanglement_per_code": per_code,
        "completeness_per_factor": per_factor, "model": model,
    }
