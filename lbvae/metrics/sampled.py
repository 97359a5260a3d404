"""The metrics that draw their own batches from the data: Z-diff, the β-VAE score (Higgins
et al., "β-VAE", ICLR 2017), and Z-min Var, the FactorVAE score (Kim & Mnih,
"Disentangling by Factorising", ICML 2018). Each takes a GroundTruthDataset, an ``encode``
function and an explicit numpy Generator."""
from __future__ import annotations

import numpy as np

from lbvae.metrics.common import _ENCODE_CHUNK, FACTOR_VAE_MIN_STD, _check_codes
from lbvae.metrics.modularity import _fit_logistic_regression


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
