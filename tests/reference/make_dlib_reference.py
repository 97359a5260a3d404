"""Reference numbers from disentanglement_lib 1.5, the oracle for tests/test_metrics.py.

disentanglement_lib is a development oracle only, never a dependency of the repo. Run
this script in a separate virtual environment (pinned to the repo's NumPy, SciPy and
scikit-learn, so identical inputs meet identical solvers):

    python -m venv /tmp/dlib
    /tmp/dlib/bin/pip install disentanglement-lib==1.5 --no-deps
    /tmp/dlib/bin/pip install numpy==2.4.6 scipy==1.17.1 scikit-learn==1.9.1 \
        gin-config==0.4.0 six absl-py
    /tmp/dlib/bin/python tests/reference/make_dlib_reference.py

gin-config 0.4 is the newest that still accepts disentanglement_lib's ``blacklist=``
argument; TensorFlow is not needed: the metric modules only use ``gin.tf`` for
``gin.configurable``, so ``gin.tf`` is aliased to ``gin`` before importing them.

It writes, beside itself:
- ``dlib_inputs.npz``: the fixed inputs (drawn here from ``SEED``; stored because
  NumPy's Generator gives no cross-version stream guarantee);
- ``dlib_reference.json``: disentanglement_lib's outputs on them, how they were
  produced (versions, settings), and the docs/metrics.md protocol values.

The functions ``synthetic_codes`` and ``SYNTHETIC_SIZES`` are pure NumPy and are
imported by the tests too (the sampled metrics' synthetic dataset).
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
NUM_BINS = 20

# --- fixed inputs for the deterministic metrics -----------------------------------------
CASES = {
    # name: (how codes are made, factor sizes, n_train, n_test, also run the slow GBT DCI)
    "entangled": ("entangled", (2, 3, 4, 5), 1500, 750, False),
    "noisy_identity": ("noisy_identity", (3, 6, 10, 8), 2000, 1000, False),
    "dsprites_grid": ("grid", (3, 6, 40, 32, 32), 2000, 1000, False),
    "dci_small": ("entangled", (2, 3, 4, 3), 600, 300, True),
}


def make_case(sizes, n_train, n_test, kind, rng):
    """Factor classes drawn uniformly and codes that mix them (float64)."""
    n = n_train + n_test
    factors = np.stack([rng.integers(0, s, n) for s in sizes], axis=1)
    f = factors.astype(np.float64)
    if kind == "entangled":
        # 6 latents: sparse mixing, different scales, one pure-noise latent.
        mixing = np.array([[1.0, 0.0, 0.0, 0.0, 0.4, 0.0],
                           [0.5, 1.0, 0.0, 0.0, 0.0, 0.0],
                           [0.0, 0.3, 2.0, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 0.2, -1.0, 0.3, 0.0]])
        codes = f @ mixing + rng.normal(0, 0.3, (n, 6))
        codes[:, 5] = rng.normal(0, 1, n)
    elif kind == "noisy_identity":
        # one latent per factor (one rescaled, one flipped), a duplicate, a noise latent.
        codes = np.concatenate([f + rng.normal(0, 0.5, f.shape), f[:, :1] + rng.normal(0, 0.5, (n, 1)),
                                rng.normal(0, 1, (n, 1))], axis=1)
        codes[:, 1] *= 7.0
        codes[:, 2] *= -0.1
    elif kind == "grid":
        # factor classes + N(0, 0.01) noise, and a rotated copy of two latents.
        codes = f + rng.normal(0, 0.01, f.shape)
        angle = 0.3
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        codes = np.concatenate([codes, codes[:, 3:5] @ rot], axis=1)
    else:
        raise ValueError(kind)
    return {"train_factors": factors[:n_train], "train_codes": codes[:n_train],
            "test_factors": factors[n_train:], "test_codes": codes[n_train:]}


def make_inputs(seed=SEED):
    rng = np.random.default_rng(seed)
    return {name: make_case(sizes, n_tr, n_te, kind, rng)
            for name, (kind, sizes, n_tr, n_te, _) in CASES.items()}


# --- the synthetic dataset of the sampled metrics (Z-diff, Z-min Var) ---------------------
SYNTHETIC_SIZES = (4, 5, 6, 3)
_NOISE = (np.sqrt(2.0) - 1.0, np.sqrt(3.0) - 1.0, np.sqrt(5.0) - 2.0)


def synthetic_codes(factors) -> np.ndarray:
    """Deterministic codes (n, 5) of factor classes (n, 4) of SYNTHETIC_SIZES.

    Designed so both sampled scores sit well below 1 and each rule matters: z0 mixes
    f0 and f1; z1 is f1 plus noise; z2 = 0.02·f2 has std < 0.05 and must be pruned by
    the FactorVAE score (else it wins every f2 batch); z3 mixes f3 and f2; z4 is noise.
    The noise is a Weyl sequence of the row-major image index, so an image always has
    the same code.
    """
    factors = np.asarray(factors, dtype=np.int64)
    f = factors.astype(np.float64)
    index = np.ravel_multi_index(tuple(factors.T), SYNTHETIC_SIZES).astype(np.float64) + 1.0
    u = [np.mod(index * c, 1.0) for c in _NOISE]
    return np.stack([f[:, 0] + 0.8 * f[:, 1], f[:, 1] + 0.5 * u[0], 0.02 * f[:, 2],
                     f[:, 3] + 0.3 * f[:, 2] + 0.3 * u[1], u[2]], axis=1)


# --- disentanglement_lib side (only runs in the oracle venv) ------------------------------
def _import_dlib():
    import functools
    import logging
    import types

    import gin
    sys.modules["gin.tf"] = gin          # the metric modules only need gin.configurable
    logging.getLogger().setLevel(logging.ERROR)
    from disentanglement_lib.evaluation.metrics import (
        beta_vae,
        dci,
        factor_vae,
        irs,
        mig,
        modularity_explicitness,
        sap_score,
        utils,
    )
    gin.parse_config(["discretizer.discretizer_fn = @histogram_discretizer",
                      f"discretizer.num_bins = {NUM_BINS}",
                      "prune_dims.threshold = 0.05"])       # factor_vae_metric.gin
    # disentanglement_lib fits GradientBoostingClassifier() with random_state=None, so its
    # DCI changes from run to run (the trees' feature order breaks ties between equally
    # good splits, which are common in small nodes). Binding random_state=0, the
    # default of metrics.dci, is the one change made to it, so both sides run one setting.
    dci.ensemble = types.SimpleNamespace(
        GradientBoostingClassifier=functools.partial(dci.ensemble.GradientBoostingClassifier,
                                                     random_state=SEED))
    return dict(beta_vae=beta_vae, dci=dci, factor_vae=factor_vae, irs=irs, mig=mig,
                modularity_explicitness=modularity_explicitness, sap_score=sap_score, utils=utils)


def _dlib_modularity_explicitness(d, mus_train, ys_train, mus_test, ys_test):
    """The body of compute_modularity_explicitness after its sampling, verbatim."""
    me, utils = d["modularity_explicitness"], d["utils"]
    discretized_mus = utils.make_discretizer(mus_train)
    mutual_information = utils.discrete_mutual_info(discretized_mus, ys_train)
    scores = {"modularity_score": me.modularity(mutual_information)}
    explicitness_score_train = np.zeros([ys_train.shape[0], 1])
    explicitness_score_test = np.zeros([ys_test.shape[0], 1])
    mus_train_norm, mean_mus, stddev_mus = utils.normalize_data(mus_train)
    mus_test_norm, _, _ = utils.normalize_data(mus_test, mean_mus, stddev_mus)
    for i in range(ys_train.shape[0]):
        explicitness_score_train[i], explicitness_score_test[i] = me.explicitness_per_factor(
            mus_train_norm, ys_train[i, :], mus_test_norm, ys_test[i, :])
    scores["explicitness_score_train"] = np.mean(explicitness_score_train)
    scores["explicitness_score_test"] = np.mean(explicitness_score_test)
    return scores


def _dlib_irs(d, mus, ys, diff_quantile=0.99):
    """The body of compute_irs after its sampling, verbatim (plus the IRS parts)."""
    irs = d["irs"]
    ys_discrete = d["utils"].make_discretizer(ys)
    active_mus = irs._drop_constant_dims(mus)
    out = irs.scalable_disentanglement_score(ys_discrete.T, active_mus.T, diff_quantile)
    return {"IRS": out["avg_score"], "disentanglement_scores": out["disentanglement_scores"],
            "IRS_matrix": out["IRS_matrix"]}


def _reference_i_m_jemmig(mi, ys, discretized):
    """I_m and JEMMIG are not in disentanglement_lib: computed here from its MI matrix
    with sklearn's mutual_info_score for every entropy (joint entropies of paired labels,
    not the H(z)+H(f)-I identity metrics.py uses), and scipy's Hungarian solver."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import mutual_info_score
    rows, cols = linear_sum_assignment(-mi)
    h = np.array([mutual_info_score(y, y) for y in ys])
    jem, jem_norm = [], []
    for j, y in enumerate(ys):
        order = np.argsort(mi[:, j])[::-1]
        z = discretized[order[0]]
        pair = np.unique(np.stack([z, y], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
        joint = mutual_info_score(pair, pair)
        raw = joint - mi[order[0], j] + mi[order[1], j]
        jem.append(raw)
        jem_norm.append(1.0 - raw / (h[j] + np.log(NUM_BINS)))
    return {"i_m": float(mi[rows, cols].sum()), "i_m_normalized": float(mi[rows, cols].sum() / h.sum()),
            "matching": sorted((int(c), int(r)) for r, c in zip(rows, cols)),
            "jemmig": float(np.mean(jem)), "jemmig_normalized": float(np.mean(jem_norm)),
            "jemmig_per_factor": jem}


def _deterministic_references(d, inputs):
    out = {}
    utils, sap = d["utils"], d["sap_score"]
    for name, case in inputs.items():
        mus, ys = case["train_codes"].T, case["train_factors"].T
        mus_test, ys_test = case["test_codes"].T, case["test_factors"].T
        discretized = utils.make_discretizer(mus)
        mi = utils.discrete_mutual_info(discretized, ys)
        res = {"mi": mi, "entropy": utils.discrete_entropy(ys),
               "mig": d["mig"]._compute_mig(mus, ys)["discrete_mig"],
               "sap_discrete": sap._compute_sap(mus, ys, mus_test, ys_test, False)["SAP_score"],
               "sap_discrete_matrix": sap.compute_score_matrix(mus, ys, mus_test, ys_test, False),
               "sap_continuous": sap._compute_sap(mus, ys, mus_test, ys_test, True)["SAP_score"],
               "sap_continuous_matrix": sap.compute_score_matrix(mus, ys, mus_test, ys_test, True),
               **_dlib_modularity_explicitness(d, mus, ys, mus_test, ys_test),
               **_dlib_irs(d, mus, ys),
               **_reference_i_m_jemmig(mi, ys, discretized)}
        if CASES[name][4]:
            res["dci"] = d["dci"]._compute_dci(mus, ys, mus_test, ys_test)
            res["dci_importance"] = d["dci"].compute_importance_gbt(mus, ys, mus_test, ys_test)[0]
        out[name] = res
    return out


class _SyntheticData:
    """disentanglement_lib GroundTruthData whose observations are the factor classes."""
    factors_num_values = list(SYNTHETIC_SIZES)
    num_factors = len(SYNTHETIC_SIZES)
    observation_shape = [len(SYNTHETIC_SIZES)]

    def sample_factors(self, num, random_state):
        return np.stack([random_state.randint(s, size=num) for s in SYNTHETIC_SIZES], axis=1)

    def sample_observations_from_factors(self, factors, random_state):
        return factors

    def sample(self, num, random_state):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num, random_state):
        return self.sample(num, random_state)[1]


def _sampled_references(d):
    """β-VAE and FactorVAE scores with disentanglement_lib's study settings, averaged over
    seeds so the test can compare its own sampled estimate against a precise mean."""
    settings = dict(batch_size=64, num_train=10000, num_eval=5000)
    seeds = [0, 1, 2]
    beta, factor = [], []
    for seed in seeds:
        beta.append(d["beta_vae"].compute_beta_vae_sklearn(
            _SyntheticData(), synthetic_codes, np.random.RandomState(seed), **settings))
        factor.append(d["factor_vae"].compute_factor_vae(
            _SyntheticData(), synthetic_codes, np.random.RandomState(seed), num_variance_estimate=10000,
            **settings))
    return {"settings": {**settings, "num_variance_estimate": 10000, "prune_dims.threshold": 0.05,
                         "seeds (np.random.RandomState)": seeds, "factor_sizes": SYNTHETIC_SIZES,
                         "codes": "synthetic_codes() in this script"},
            "beta_vae": beta, "factor_vae": factor}


def _protocol_values(d):
    """docs/metrics.md values: codes = factor classes + N(0, 1e-3) noise, 10,000 points
    drawn with np.random.default_rng(0): per factor rng.integers(0, size, 10000) in
    order, then rng.normal(0, 1e-3, (K, 10000)) (disentanglement_lib's (K, N) layout)."""
    import scipy.stats
    grids = {"dsprites": (3, 6, 40, 32, 32), "shapes3d": (10, 10, 10, 8, 4, 15),
             "mpi3d": (6, 6, 2, 3, 3, 40, 40)}
    out = {}
    for name, sizes in grids.items():
        rng = np.random.default_rng(0)
        ys = np.stack([rng.integers(0, s, 10000) for s in sizes])
        mus = ys + rng.normal(0, 1e-3, ys.shape)
        res = {"mig": d["mig"]._compute_mig(mus, ys)["discrete_mig"]}
        if name == "dsprites":
            sap = d["sap_score"]
            res["sap_continuous"] = sap._compute_sap(mus, ys, None, None, True)["SAP_score"]
            res["sap_discrete_train_eq_test"] = sap._compute_sap(mus, ys, mus, ys, False)["SAP_score"]
            ys_t = np.stack([rng.integers(0, s, 5000) for s in sizes])
            mus_t = ys_t + rng.normal(0, 1e-3, ys_t.shape)
            res["sap_discrete_next_5000_test"] = sap._compute_sap(mus, ys, mus_t, ys_t, False)["SAP_score"]
            rotations = [d["mig"]._compute_mig(
                scipy.stats.special_ortho_group.rvs(len(sizes), random_state=s) @ mus, ys)["discrete_mig"]
                for s in range(20)]
            res["mig_rotated_special_ortho_seeds_0_19"] = rotations
        out[name] = res
    return out


def main():
    import scipy
    import sklearn
    d = _import_dlib()
    inputs = make_inputs()
    np.savez_compressed(HERE / "dlib_inputs.npz",
                        **{f"{name}/{k}": v for name, case in inputs.items() for k, v in case.items()})
    from importlib.metadata import version
    reference = {
        "produced_by": "tests/reference/make_dlib_reference.py (see its docstring to rerun)",
        "versions": {"disentanglement-lib": version("disentanglement-lib"), "numpy": np.__version__,
                     "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
                     "gin-config": version("gin-config"), "python": platform.python_version()},
        "settings": {"num_bins": NUM_BINS, "discretizer": "histogram_discretizer",
                     "sap_discrete": "LinearSVC(C=0.01, class_weight='balanced') defaults (dual='auto')",
                     "dci": "GradientBoostingClassifier() defaults with random_state=0 bound (dlib passes None)",
                     "irs": "diff_quantile=0.99, factors discretised with the histogram discretizer",
                     "i_m, jemmig": "not in disentanglement_lib: from its MI matrix + sklearn + scipy"},
        "inputs": {"file": "dlib_inputs.npz", "seed": SEED,
                   "cases": {k: {"codes": v[0], "factor_sizes": v[1], "n_train": v[2], "n_test": v[3], "dci": v[4]}
                             for k, v in CASES.items()}},
        "deterministic": _deterministic_references(d, inputs),
        "sampled": _sampled_references(d),
        "protocol_values": _protocol_values(d),
    }
    with open(HERE / "dlib_reference.json", "w") as f:
        json.dump(reference, f, indent=1, default=_jsonable)
        f.write("\n")


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(type(obj))


if __name__ == "__main__":
    main()
