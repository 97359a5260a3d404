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

Each metric family lives in its own module of ``lbvae/metrics/`` (disentanglement_lib's
layout: common checks and constants, information (MIG, I_m, JEMMIG), sap, dci,
modularity, irs, sampled (Z-diff, Z-min Var), reconstruction); this face re-exports
their public functions and holds the study's metric set.

No torch, no models, no drawing here: the modules import with NumPy, SciPy and
scikit-learn alone.
"""
from __future__ import annotations

from lbvae.metrics.common import NUM_BINS, SAP_C, _check_num_bins, _check_train_test, check_inputs
from lbvae.metrics.dci import dci
from lbvae.metrics.information import (
    discretize,
    factor_entropies,
    i_m,
    jemmig,
    mig,
    mutual_info_matrix,
    shuffled_mi_floor,
)
from lbvae.metrics.irs import irs
from lbvae.metrics.modularity import modularity_explicitness
from lbvae.metrics.reconstruction import reconstruction_quality
from lbvae.metrics.sampled import z_diff, z_min_var
from lbvae.metrics.sap import sap_continuous, sap_discrete

__all__ = ["NUM_BINS", "SAP_C", "check_inputs", "dci", "discretize", "factor_entropies", "i_m", "irs", "jemmig",
           "mig", "modularity_explicitness", "mutual_info_matrix", "reconstruction_quality", "sap_continuous",
           "sap_discrete", "shuffled_mi_floor", "study_metrics", "z_diff", "z_min_var"]


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
