"""Disentanglement metrics: pure NumPy/scikit-learn functions of factors and codes.

Notation (docs/metrics.md): ``factors`` is an int array (N, K) of ground-truth factor
classes, ``codes`` a float array (N, L) of representations (encoder means). Each
metric follows disentanglement_lib's split (Locatello et al., "Challenging Common
Assumptions in the Unsupervised Learning of Disentangled Representations", ICML 2019):
a pure kernel on arrays, and a sampler only where the metric must draw its own
batches from the data (Z-diff, Z-min Var), which then takes a ``GroundTruthDataset``,
an ``encode`` function (uint8 images (n, C, 64, 64) -> codes (n, L)) and an explicit
``numpy.random.Generator``.

Every function returns a dict holding the score and its parts. On identical inputs
and settings the numbers equal disentanglement_lib 1.5's to 1e-6
(tests/reference/make_dlib_reference.py and tests/test_metrics.py show how that was
checked). Where this module deliberately differs, the docstring says so; the
common case is a factor that takes a single value in the sample: it carries no
information, disentanglement_lib returns NaN or raises for it, and here it is left
out of every mean over factors (per-factor entries that would be undefined are 0).

Names: ``sap_discrete`` is the λβ study's SAP (one LinearSVC per latent and factor,
accuracy on a test split); ``sap_continuous`` is the R² variant. Z-diff is the
β-VAE score and Z-min Var the FactorVAE score (names of Carbonneau et al., arXiv
2012.09276).

No torch, no models, no drawing here: the module imports with NumPy, SciPy and
scikit-learn alone.
"""
from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.optimize
import scipy.stats
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits  # installed with scikit-learn

NUM_BINS = 20                 # equal-width bins per latent for MI (the study and disentanglement_lib)
SAP_C = 0.01                  # LinearSVC regularisation of the SAP classifiers (Kumar et al. 2018)
FACTOR_VAE_MIN_STD = 0.05     # disentanglement_lib's prune_dims.threshold for the FactorVAE score
DCI_FAST_TREES = 50           # ExtraTrees size of dci(model="fast")
DCI_FAST_MIN_LEAF = 20        # leaves of >= 20 points keep noise latents' importance small
_ENCODE_CHUNK = 4096          # images per encode() call in the samplers (bounded memory)
_THREADS = max(1, min(4, os.cpu_count() or 1))   # liblinear fits release the GIL


# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------
# Discretisation, entropy, mutual information
# ----------------------------------------------------------------------------------------
def discretize(codes, num_bins=NUM_BINS) -> np.ndarray:
    """Each latent into ``num_bins`` equal-width bins between its min and max.

    disentanglement_lib's ``_histogram_discretize``:
    ``np.digitize(x, np.histogram(x, num_bins)[1][:-1])``, so bins are numbered
    1..num_bins (the maximum lands in the last bin). A constant latent falls in one
    bin. Returns an int64 array (N, L).

    float32 codes are binned in float32: np.histogram computes the edges in the input's
    precision, as disentanglement_lib (and the study's code) did on float32 encoder
    outputs; casting first would move points lying on an edge. Other inputs are float64.
    """
    codes = _check_codes(codes)
    num_bins = _check_num_bins(num_bins)
    out = np.empty(codes.shape, dtype=np.int64)
    for i, x in enumerate(codes.T):
        out[:, i] = np.digitize(x, np.histogram(x, num_bins)[1][:-1])
    return out


def _labels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels -> (0..n-1 codes, counts), so contingency tables can be built with bincount."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def _entropy(counts: np.ndarray) -> float:
    """Plug-in entropy in nats of a label's counts (= mutual_info_score(x, x) to 1e-12,
    without its classes x classes contingency table)."""
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum()) if counts.size > 1 else 0.0


def _mutual_info(a, a_counts, b, b_counts) -> float:
    """I(a; b) in nats from 0-based labels; the arithmetic of
    ``sklearn.metrics.mutual_info_score`` on a bincount contingency table (equal to 1e-12)."""
    n = a.size
    if a_counts.size == 1 or b_counts.size == 1:
        return 0.0
    joint = np.bincount(a * b_counts.size + b, minlength=a_counts.size * b_counts.size)
    joint = joint.reshape(a_counts.size, b_counts.size)
    rows, cols = np.nonzero(joint)
    nij = joint[rows, cols]
    p = nij / n
    outer = a_counts[rows].astype(np.int64) * b_counts[cols].astype(np.int64)
    log_outer = -np.log(outer) + np.log(n) + np.log(n)
    terms = p * (np.log(nij) - np.log(n)) + p * log_outer
    terms = np.where(np.abs(terms) < np.finfo(terms.dtype).eps, 0.0, terms)
    return max(float(terms.sum()), 0.0)


def _mi_tables(factors: np.ndarray, binned: np.ndarray):
    """MI matrix (L, K), factor entropies (K,) and latent entropies (L,), all in nats."""
    f_lab = [_labels(f) for f in factors.T]
    z_lab = [_labels(z) for z in binned.T]
    mi = np.array([[_mutual_info(*f, *z) for f in f_lab] for z in z_lab]).reshape(len(z_lab), len(f_lab))
    h_f = np.array([_entropy(counts) for _, counts in f_lab])
    h_z = np.array([_entropy(counts) for _, counts in z_lab])
    return mi, h_f, h_z


def mutual_info_matrix(factors, codes, num_bins=NUM_BINS) -> np.ndarray:
    """m[i, j] = I(discretised latent i; factor j) in nats, shape (L, K).

    The MI estimator of disentanglement_lib (``discrete_mutual_info``) and of the λβ
    study: latents discretised by :func:`discretize` into ``num_bins`` equal-width
    bins (20 by default), plug-in MI of the empirical joint histogram. Computed from
    a bincount contingency table per pair; equal to
    ``sklearn.metrics.mutual_info_score(factor_j, binned_latent_i)`` to 1e-12.
    """
    factors, codes = check_inputs(factors, codes)
    return _mi_tables(factors, discretize(codes, num_bins))[0]


def shuffled_mi_floor(factors, codes, num_bins=NUM_BINS, seed=0) -> np.ndarray:
    """The histogram estimator's bias floor, shape (L, K): :func:`mutual_info_matrix` with
    each factor column permuted, which breaks every link between factors and latents, so
    the true MI is 0 and what is left is the plug-in estimator's upward bias (about
    (bins_z - 1)(values_f - 1) / 2n nats for n points)."""
    factors, codes = check_inputs(factors, codes)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(f) for f in factors.T], axis=1)
    return _mi_tables(shuffled, discretize(codes, num_bins))[0]


def factor_entropies(factors) -> np.ndarray:
    """H(factor_j) in nats, shape (K,): ``mutual_info_score(f_j, f_j)`` as in disentanglement_lib."""
    factors = _check_factors(factors)
    return np.array([_entropy(np.unique(f, return_counts=True)[1]) for f in factors.T])


def _top_two(matrix: np.ndarray):
    """Per column, (largest, second largest) over rows; with one row the second is 0."""
    ordered = np.sort(matrix, axis=0)
    second = ordered[-2] if matrix.shape[0] > 1 else np.zeros(matrix.shape[1])
    return ordered[-1], second


# ----------------------------------------------------------------------------------------
# MIG, I_m, JEMMIG (MI based)
# ----------------------------------------------------------------------------------------
def mig(factors, codes, num_bins=NUM_BINS) -> dict:
    """Mutual Information Gap (Chen et al., "Isolating Sources of Disentanglement in
    Variational Autoencoders", NeurIPS 2018), as disentanglement_lib's ``_compute_mig``.

    Per factor j: (largest - second largest MI over latents) / H(factor j); the score
    is the mean over factors. MI and entropy in nats, latents discretised into
    ``num_bins`` equal-width bins (20 in the study), all points given. In [0, 1],
    higher is better.

    Deliberate difference: a factor with H = 0 (one class in the sample) makes
    disentanglement_lib divide 0/0 and return NaN; here its gap is 0 and it is left out
    of the mean (the score of the other factors, as if its column were dropped).
    With a single latent the second largest MI is taken as 0.

    Returns {"mig", "mig_per_factor" (K,), "mi" (L, K), "entropy" (K,)}.
    """
    factors, codes = check_inputs(factors, codes)
    mi, entropy, _ = _mi_tables(factors, discretize(codes, num_bins))
    first, second = _top_two(mi)
    has_info = entropy > 0
    per_factor = np.divide(first - second, entropy, out=np.zeros_like(entropy), where=has_info)
    return {"mig": _mean_over(per_factor, has_info), "mig_per_factor": per_factor,
            "mi": mi, "entropy": entropy}


def i_m(factors, codes, num_bins=NUM_BINS) -> dict:
    """I_m of the λβ study (Vu, Wan & Wei, arXiv 2602.09277, 2026): the largest total
    mutual information of a one-to-one matching between factors and latents.

    Hungarian method (``scipy.optimize.linear_sum_assignment`` on -MI) on the MI
    matrix of :func:`mutual_info_matrix` (``num_bins`` equal-width bins, nats, all
    points given). With L < K only L factors are matched, with L > K only K latents.

    Returns {"i_m": total matched MI in nats (unnormalised, higher is better),
    "i_m_normalized": i_m / sum of factor entropies, in [0, 1] (0 when every factor is
    constant), "matching": [(factor, latent), ...] sorted by factor, "mi" (L, K),
    "entropy" (K,)}.
    """
    factors, codes = check_inputs(factors, codes)
    mi, entropy, _ = _mi_tables(factors, discretize(codes, num_bins))
    latents, matched_factors = scipy.optimize.linear_sum_assignment(-mi)
    total = float(mi[latents, matched_factors].sum())
    h_sum = float(entropy.sum())
    matching = sorted((int(f), int(z)) for z, f in zip(latents, matched_factors))
    return {"i_m": total, "i_m_normalized": total / h_sum if h_sum > 0 else 0.0,
            "matching": matching, "mi": mi, "entropy": entropy}


def jemmig(factors, codes, num_bins=NUM_BINS) -> dict:
    """JEMMIG (Do & Tran, "Theory and Evaluation Metrics for Learning Disentangled
    Representations", ICLR 2020).

    Per factor f, with z* and z° the latents of largest and second largest MI with f:
    JEMMIG(f) = H(z*, f) - I(z*; f) + I(z°; f), where H(z*, f) is the joint entropy of
    the discretised latent and the factor (nats; ``num_bins`` equal-width bins, 20 by
    default; all points given). Normalised: 1 - JEMMIG(f) / (H(f) + log(num_bins)).

    Directions: "jemmig" (raw, nats) is LOWER-is-better (0 for a latent that equals
    the factor and a runner-up with no information about it); "jemmig_normalized" is
    HIGHER-is-better, at most 1. Factors with a single class are left out of both means.

    Returns {"jemmig", "jemmig_normalized", "jemmig_per_factor" (K,),
    "jemmig_normalized_per_factor" (K,), "joint_entropy" (K,), "mi" (L, K), "entropy" (K,)}.
    """
    factors, codes = check_inputs(factors, codes)
    num_bins = _check_num_bins(num_bins)
    mi, h_f, h_z = _mi_tables(factors, discretize(codes, num_bins))
    best = np.argmax(mi, axis=0)
    first, second = _top_two(mi)
    joint = h_z[best] + h_f - first                    # H(z*, f) = H(z*) + H(f) - I(z*; f)
    raw = joint - first + second
    normalized = 1.0 - raw / (h_f + np.log(num_bins))
    varying = h_f > 0
    return {"jemmig": _mean_over(raw, varying), "jemmig_normalized": _mean_over(normalized, varying),
            "jemmig_per_factor": raw, "jemmig_normalized_per_factor": normalized,
            "joint_entropy": joint, "mi": mi, "entropy": h_f}


# ----------------------------------------------------------------------------------------
# SAP, both variants
# ----------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------
# DCI, modularity / explicitness, IRS
# ----------------------------------------------------------------------------------------
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


def irs(factors, codes, diff_quantile=0.99, num_bins=NUM_BINS) -> dict:
    """Interventional Robustness Score (Suter, Miladinović, Schölkopf & Bauer, "Robustly
    Disentangled Causal Mechanisms: Validating Deep Representations for Interventional
    Robustness", ICML 2019), as disentanglement_lib's ``compute_irs``.

    Factors are discretised like latents (``num_bins`` equal-width bins, 20 by
    default; factors with at most ``num_bins`` evenly spaced classes keep them) and
    latents with zero variance are dropped. For latent i and factor j: the mean over
    values of factor j of the ``diff_quantile`` quantile of |z_i - E[z_i | f_j]|,
    divided by max |z_i - E z_i|; IRS matrix = 1 - that. Per latent the best factor's
    value; the score is their average weighted by each latent's max deviation.
    In [0, 1], higher is better; all points given. 0 when no latent varies.

    Deliberate difference: disentanglement_lib's "num_active_dims" is the *sum of the
    active codes' values* (a bug); here it is the number of varying latents.

    Returns {"irs", "irs_per_latent" (active latents,), "irs_per_factor" (K,): the best
    latent's IRS-matrix entry per factor (a diagnostic, not part of the score),
    "irs_matrix" (active latents, K), "active_latents" (indices), "num_active_dims"}.
    """
    factors, codes = check_inputs(factors, codes)
    if not 0.0 <= diff_quantile <= 1.0:
        raise ValueError(f"diff_quantile must be in [0, 1], got {diff_quantile}")
    binned = discretize(factors.astype(np.float64), num_bins)
    codes = codes.astype(np.float64)
    active = np.flatnonzero(codes.var(axis=0) > 0.0)
    if active.size == 0:
        return {"irs": 0.0, "irs_per_latent": np.zeros(0), "irs_per_factor": np.zeros(factors.shape[1]),
                "irs_matrix": np.zeros((0, factors.shape[1])), "active_latents": active, "num_active_dims": 0}
    z = codes[:, active]
    max_deviation = np.max(np.abs(z - z.mean(axis=0)), axis=0)
    deviation = np.zeros((z.shape[1], factors.shape[1]))
    for j, g in enumerate(binned.T):
        values = np.unique(g)
        for v in values:
            group = z[g == v]
            deviation[:, j] += np.percentile(np.abs(group - group.mean(axis=0)), q=diff_quantile * 100, axis=0)
        deviation[:, j] /= values.size
    irs_matrix = 1.0 - deviation / max_deviation[:, None]
    per_latent = irs_matrix.max(axis=1)
    return {"irs": float(np.average(per_latent, weights=max_deviation)), "irs_per_latent": per_latent,
            "irs_per_factor": irs_matrix.max(axis=0), "irs_matrix": irs_matrix,
            "active_latents": active, "num_active_dims": int(active.size)}


# ----------------------------------------------------------------------------------------
# Sampling metrics: Z-diff (β-VAE score) and Z-min Var (FactorVAE score)
# ----------------------------------------------------------------------------------------
def _check_sampling(dataset, rng, **sizes):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    for name, value in sizes.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if sizes.get("batch_size", 2) < 2:
        raise ValueError("batch_size must be at least 2 (variances and pairs need two points)")
    if not getattr(dataset, "has_factors", True) or dataset.num_factors < 1:
        raise ValueError(f"{dataset!r} has no factor grid: Z-diff / Z-min Var do not apply to it")


def _encode(encode, dataset, factors: np.ndarray) -> np.ndarray:
    """Codes (n, L) of the images of ``factors``, encoded in bounded chunks."""
    out = []
    for start in range(0, len(factors), _ENCODE_CHUNK):
        chunk = factors[start:start + _ENCODE_CHUNK]
        codes = np.asarray(encode(dataset.images_from_factors(chunk)))
        if codes.ndim != 2 or codes.shape[0] != len(chunk):
            raise ValueError(f"encode must return codes of shape (n, L) for n images, "
                             f"got {codes.shape} for n={len(chunk)}")
        out.append(_check_codes(codes, "encode(images)"))
    return np.concatenate(out).astype(np.float64)


def _points_per_chunk(batch_size: int, images_per_point: int) -> int:
    return max(1, _ENCODE_CHUNK // (batch_size * images_per_point))


def _z_diff_points(dataset, encode, rng, batch_size, num_points):
    """disentanglement_lib's beta_vae ``_generate_training_batch``: per point a random
    factor k, ``batch_size`` pairs (f1, f2) drawn uniformly with f2[:, k] = f1[:, k];
    the feature is mean |z(f1) - z(f2)| over the pairs. Returns (features, labels)."""
    features, labels = [], []
    step = _points_per_chunk(batch_size, 2)
    for start in range(0, num_points, step):
        n = min(step, num_points - start)
        k = rng.integers(dataset.num_factors, size=n)
        f1 = dataset.sample_factors(n * batch_size, rng)
        f2 = dataset.sample_factors(n * batch_size, rng)
        rows, cols = np.arange(n * batch_size), np.repeat(k, batch_size)
        f2[rows, cols] = f1[rows, cols]
        diff = np.abs(_encode(encode, dataset, f1) - _encode(encode, dataset, f2))
        features.append(diff.reshape(n, batch_size, -1).mean(axis=1))
        labels.append(k)
    return np.concatenate(features), np.concatenate(labels)


def z_diff(dataset, encode, rng, batch_size=64, num_train=10000, num_eval=5000) -> dict:
    """Z-diff, the β-VAE disentanglement score (Higgins et al., "β-VAE: Learning Basic
    Visual Concepts with a Constrained Variational Framework", ICLR 2017), as
    disentanglement_lib's ``compute_beta_vae_sklearn``.

    Each feature point: a factor k drawn uniformly, ``batch_size`` (64) pairs of
    images whose factor classes are drawn uniformly except that the two images of a
    pair share factor k; the feature is the mean over pairs of |z1 - z2| per latent
    and the label is k. A ``LogisticRegression()`` (scikit-learn defaults, lbfgs, 100
    iterations) is fitted on ``num_train`` (10,000) points; its accuracy on them and on
    ``num_eval`` (5,000) fresh points is reported. Higher is better.

    Cost: every point encodes 2 · batch_size images, so the defaults encode
    1,920,000 images. Smaller ``num_train``/``num_eval`` are fine for a quick look, but
    report them with the score. ``rng`` drives every draw, so a seed fixes the score.
    ``encode`` maps uint8 images (n, C, 64, 64) to codes (n, L); it is called on at most
    4,096 images at a time.

    Returns {"z_diff_train_accuracy", "z_diff_eval_accuracy", "settings"}.
    """
    _check_sampling(dataset, rng, batch_size=batch_size, num_train=num_train, num_eval=num_eval)
    x_train, y_train = _z_diff_points(dataset, encode, rng, batch_size, num_train)
    model = _fit_logistic_regression(x_train, y_train) if np.unique(y_train).size > 1 else None
    x_eval, y_eval = _z_diff_points(dataset, encode, rng, batch_size, num_eval)

    def accuracy(x, y):   # one factor (or one label drawn): the constant classifier
        return float(np.mean((model.predict(x) if model is not None else y_train[0]) == y))

    return {"z_diff_train_accuracy": accuracy(x_train, y_train),
            "z_diff_eval_accuracy": accuracy(x_eval, y_eval),
            "settings": {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval,
                         "classifier": "LogisticRegression() (lbfgs, C=1, max_iter=100)"}}


def _z_min_var_votes(dataset, encode, rng, batch_size, num_points, variance, active):
    """disentanglement_lib's factor_vae ``_generate_training_batch``: per point a random
    factor k and ``batch_size`` images sharing one value of k (others uniform); the
    active latent with the smallest variance (ddof=1) divided by its global variance
    votes for k. Returns votes (K, number of active latents)."""
    votes = np.zeros((dataset.num_factors, active.size), dtype=np.int64)
    step = _points_per_chunk(batch_size, 1)
    for start in range(0, num_points, step):
        n = min(step, num_points - start)
        k = rng.integers(dataset.num_factors, size=n)
        factors = dataset.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
        factors[np.arange(n), :, k] = factors[np.arange(n), 0, k][:, None]
        codes = _encode(encode, dataset, factors.reshape(n * batch_size, -1)).reshape(n, batch_size, -1)
        local = np.var(codes[:, :, active], axis=1, ddof=1) / variance[active]
        np.add.at(votes, (k, np.argmin(local, axis=1)), 1)
    return votes


def z_min_var(dataset, encode, rng, batch_size=64, num_train=10000, num_eval=5000,
              num_variance_estimate=10000) -> dict:
    """Z-min Var, the FactorVAE disentanglement score (Kim & Mnih, "Disentangling by
    Factorising", ICML 2018), as disentanglement_lib's ``compute_factor_vae`` with its
    study settings (factor_vae_metric.gin).

    Global scale: the std (ddof=1) of each latent over ``num_variance_estimate``
    (10,000) uniformly drawn images; latents with std < 0.05 are dropped as collapsed
    (``prune_dims.threshold = 0.05``, on the raw codes). Each point: a factor k drawn
    uniformly, ``batch_size`` (64) images sharing one value of k; the active latent
    with the smallest variance divided by its global variance votes for k. The
    classifier maps each latent to the factor it got most votes for (majority vote)
    on ``num_train`` (10,000) points; accuracy on them and on ``num_eval`` (5,000) fresh
    points. No active latent: accuracies 0.

    Direction: the score here is the vote ACCURACY, higher is better (as in Kim & Mnih,
    disentanglement_lib, and Carbonneau et al.'s rescaled tables). Tables that report
    Z-min Var as lower-is-better (the MINE-VAE repo, docs/mine.md) show an error or
    the raw minimum normalised variance; the error rate is 1 - accuracy. Say which.

    Cost: (num_variance_estimate + batch_size · (num_train + num_eval)) images are
    encoded (970,000 with the defaults); report smaller settings with the score.

    Deliberate difference: disentanglement_lib's "num_active_dims" is the total number
    of latents (len of a mask, a bug); here it is the number of latents kept.

    Returns {"z_min_var_train_accuracy", "z_min_var_eval_accuracy", "num_active_dims",
    "global_std" (L,), "votes" (K, active latents), "settings"}.
    """
    _check_sampling(dataset, rng, batch_size=batch_size, num_train=num_train, num_eval=num_eval,
                    num_variance_estimate=num_variance_estimate)
    if num_variance_estimate < 2:
        raise ValueError("num_variance_estimate must be at least 2")
    settings = {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval,
                "num_variance_estimate": num_variance_estimate, "min_std": FACTOR_VAE_MIN_STD}
    sample = _encode(encode, dataset, dataset.sample_factors(num_variance_estimate, rng))
    variance = np.var(sample, axis=0, ddof=1)
    active = np.flatnonzero(np.sqrt(variance) >= FACTOR_VAE_MIN_STD)
    result = {"num_active_dims": int(active.size), "global_std": np.sqrt(variance), "settings": settings}
    if active.size == 0:
        return {"z_min_var_train_accuracy": 0.0, "z_min_var_eval_accuracy": 0.0,
                "votes": np.zeros((dataset.num_factors, 0), dtype=np.int64), **result}
    train_votes = _z_min_var_votes(dataset, encode, rng, batch_size, num_train, variance, active)
    classifier = np.argmax(train_votes, axis=0)              # latent -> factor
    eval_votes = _z_min_var_votes(dataset, encode, rng, batch_size, num_eval, variance, active)
    columns = np.arange(active.size)
    return {"z_min_var_train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
            "z_min_var_eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
            "votes": train_votes, **result}


# ----------------------------------------------------------------------------------------
# The λβ study's metric set
# ----------------------------------------------------------------------------------------
def study_metrics(train_factors, train_codes, test_factors, test_codes, num_bins=NUM_BINS, seed=0) -> dict:
    """The metrics of the λβ study (Vu, Wan & Wei 2026; docs/study.md) for one run.

    MI matrix, MIG and I_m on the train split only (10,000 points in the study);
    SAP = :func:`sap_discrete` fitted on the train split and scored on the test split
    (5,000), ``LinearSVC(C=0.01, class_weight="balanced", random_state=seed)``.
    ``num_bins`` equal-width bins per latent (20).

    Returns flat floats {"mig", "sap", "i_m" (nats), "i_m_normalized"}, "mi" (L, K) and
    "settings" (the estimator settings, JSON-ready).
    """
    train_factors, train_codes, test_factors, test_codes = _check_train_test(
        train_factors, train_codes, test_factors, test_codes)
    num_bins = _check_num_bins(num_bins)
    mig_result = mig(train_factors, train_codes, num_bins)
    im_result = i_m(train_factors, train_codes, num_bins)
    sap_result = sap_discrete(train_factors, train_codes, test_factors, test_codes, random_state=seed)
    return {
        "mig": mig_result["mig"], "sap": sap_result["sap_discrete"],
        "i_m": im_result["i_m"], "i_m_normalized": im_result["i_m_normalized"],
        "mi": mig_result["mi"],
        "settings": {
            "num_bins": num_bins, "discretisation": "equal-width bins per latent between its min and max",
            "mi_units": "nats", "sap_variant": "discrete",
            "sap_classifier": "sklearn.svm.LinearSVC", "sap_C": SAP_C, "sap_class_weight": "balanced",
            "sap_dual": "auto", "sap_random_state": seed,
            "n_train": int(train_codes.shape[0]), "n_test": int(test_codes.shape[0]),
            "mi_mig_i_m_split": "train", "sap_fit_split": "train", "sap_score_split": "test",
        },
    }


# --- reconstruction quality (no learned weights) ----------------------------------------------
def reconstruction_quality(originals, reconstructions) -> dict:
    """PSNR and SSIM of each image, then their means: scikit-image's implementations.

    ``originals`` and ``reconstructions`` are float arrays (n, C, H, W) in [0, 1].
    PSNR = 10 log10(1 / MSE) in dB, MSE over all pixels and channels of the image
    (``peak_signal_noise_ratio``, data_range 1); infinite for identical images.
    SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) with scikit-image's defaults:
    7×7 uniform window, K1 = 0.01, K2 = 0.03, sample covariances, data_range 1, the
    mean of the SSIM map, channels scored separately and averaged (``structural_similarity``).
    Neither needs downloaded weights (FID and LPIPS do). Returns {"psnr", "ssim" (means),
    "psnr_per_image", "ssim_per_image" (n,)}."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # only the MINE study needs it

    a, b = np.asarray(originals, np.float64), np.asarray(reconstructions, np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"originals and reconstructions need the same (n, C, H, W) shape, got {a.shape} and {b.shape}")
    with np.errstate(divide="ignore"):      # identical images: MSE 0, PSNR +inf
        psnr = np.array([peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in zip(a, b)])
    ssim = np.array([structural_similarity(x, y, data_range=1.0, channel_axis=0) for x, y in zip(a, b)])
    return {"psnr": float(psnr.mean()) if len(psnr) else math.nan,
            "ssim": float(ssim.mean()) if len(ssim) else math.nan,
            "psnr_per_image": psnr, "ssim_per_image": ssim}
