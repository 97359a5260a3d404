"""Mutual information between discretised latents and factors, and the metrics built on it:
MIG (Chen, Li, Grosse & Duvenaud, "Isolating Sources of Disentanglement in VAEs",
NeurIPS 2018), the study's I_m (Vu, Wan & Wei 2026) and JEMMIG (Do & Tran, "Theory and
Evaluation Metrics for Learning Disentangled Representations", ICLR 2020)."""
from __future__ import annotations

import numpy as np
import scipy.optimize
import scipy.stats

from lbvae.metrics.common import NUM_BINS, _check_codes, _check_factors, _check_num_bins, _mean_over, check_inputs


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
