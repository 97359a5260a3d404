"""IRS, the Interventional Robustness Score (Suter, Miladinović, Schölkopf & Bauer,
"Robustly Disentangled Causal Mechanisms", ICML 2019)."""
from __future__ import annotations

import numpy as np

from lbvae.metrics.common import NUM_BINS, check_inputs
from lbvae.metrics.information import discretize


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
