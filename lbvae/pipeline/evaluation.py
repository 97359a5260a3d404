"""Evaluating a trained model, torch side: which images it is scored on, its codes,
its held-out NLL and the shared columns of a results row. ``metrics.py`` then does the
arithmetic on NumPy arrays.

Which images (docs/study.md):
- ``heldout_split``: a fixed fraction of the dataset that no run trains on (0 in the
  original code, which trains on every image), so a held-out NLL means something;
- ``metric_indices``: per seed, 5 distinct images for the figures, then the metric
  points (10,000 "train" + 5,000 "test" in the study), drawn as the original drew them.

``evaluate`` is the λβ-VAE's evaluation (MIG, SAP, I_m on the metric points; Vu, Wan &
Wei 2026); ``factor_scores``, ``reconstruction_columns`` and ``posthoc_redundancy`` score any
family's model beyond it (the MINE-VAE's row: mine_report.evaluate).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

import metrics
from lbvae.data.ground_truth import GroundTruthDataset
from lbvae.mine.estimator import estimate_mi
from losses import kl_per_dimension, lambda_beta_loss
from models import BetaVAE, to_float

HELDOUT_SEED = 20260209        # fixed for every run, so held-out NLLs compare across seeds
MEAN_IMAGE_POINTS = 2000       # training images averaged into the mean-image baseline


def heldout_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) image indices; the held-out images are never trained on."""
    if fraction == 0:
        return np.arange(n, dtype=np.int64), np.empty(0, np.int64)
    held = np.zeros(n, bool)
    held[np.random.default_rng(HELDOUT_SEED).choice(n, int(round(n * fraction)), replace=False)] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def metric_indices(n: int, seed: int, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """The study's draws from ``default_rng(seed)``: 5 distinct images (one from each
    fifth of the dataset) first, then n_train + n_test metric points without replacement."""
    rng = np.random.default_rng(seed)
    distinct = np.array([rng.integers(k * n // 5, (k + 1) * n // 5) for k in range(5)], dtype=np.int64)
    points = rng.choice(n, size=min(n, n_train + n_test), replace=False).astype(np.int64)
    return {"distinct": distinct, "train": points[:n_train], "test": points[n_train:]}


def _batch(images_uint8: np.ndarray, device) -> torch.Tensor:
    x = to_float(torch.from_numpy(images_uint8).to(device))
    return x.contiguous(memory_format=torch.channels_last)


def _moments(model, batches, device) -> tuple[np.ndarray, np.ndarray]:
    """Encoder means and log-variances (each (n, latent_dim), float32 NumPy) of uint8 batches."""
    model.eval()
    mus, logvars = [], []
    for images in batches:
        mu, logvar = model.encoder(_batch(images, device))
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    if not mus:
        empty = np.zeros((0, model.latent_dim), np.float32)
        return empty, empty
    return torch.cat(mus).numpy(), torch.cat(logvars).numpy()


@torch.no_grad()
def encode_image_moments(model, images_uint8: np.ndarray, device, batch_size: int = 128):
    """``encode_moments`` of uint8 images (n, C, 64, 64) already in memory."""
    return _moments(model, (images_uint8[i:i + batch_size] for i in range(0, len(images_uint8), batch_size)), device)


@torch.no_grad()
def encode_moments(model, dataset: GroundTruthDataset, indices: np.ndarray, device,
                   batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Encoder means and log-variances (each (n, latent_dim), float32) of the images at
    ``indices``, read one batch at a time: one pass gives the codes the metrics read and
    the per-latent KL."""
    return _moments(model, (dataset.images(indices[i:i + batch_size]) for i in range(0, len(indices), batch_size)),
                    device)


def encode_images(model, images_uint8: np.ndarray, device, batch_size: int = 128) -> np.ndarray:
    """Encoder means (n, latent_dim) of uint8 images (n, C, 64, 64), as float32 NumPy:
    the codes every metric reads. float32 as in the original code: histogram bin edges
    are computed in the codes' precision, and float64 would move the points on an edge."""
    return encode_image_moments(model, images_uint8, device, batch_size)[0]


def encode(model, dataset: GroundTruthDataset, indices: np.ndarray, device, batch_size: int = 128) -> np.ndarray:
    """Encoder means of the dataset's images at ``indices``, read one batch at a time."""
    return encode_moments(model, dataset, indices, device, batch_size)[0]


ACTIVE_KL_NATS = 0.1            # a latent is active when its mean KL to N(0, 1) exceeds this


def kl_from_moments(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Mean over images of each latent's KL(N(mu, e^logvar) || N(0, 1)), nats, shape (latent_dim,).

    A latent the encoder ignores sits at the prior (mu = 0, logvar = 0) for every image and
    has KL 0; the sum over latents is the mean total KL, an upper bound on I(x; z) (Hoffman
    & Johnson 2016: mean KL = I(x; z) + KL(q(z) || p(z)))."""
    mu = torch.from_numpy(np.asarray(mu, np.float64))
    if len(mu) == 0:
        return np.zeros(mu.shape[1])
    return kl_per_dimension(mu, torch.from_numpy(np.asarray(logvar, np.float64))).numpy().mean(0)


def kl_per_latent(model, images_uint8: np.ndarray, device, batch_size: int = 128) -> np.ndarray:
    """``kl_from_moments`` of the encoder's outputs on uint8 images (n, C, 64, 64)."""
    return kl_from_moments(*encode_image_moments(model, images_uint8, device, batch_size))


def latent_columns(kl: np.ndarray) -> dict:
    """The per-latent columns of a results row from ``kl_per_latent``."""
    return {"active_latents": int((kl > ACTIVE_KL_NATS).sum()), "i_xz_upper": float(kl.sum())}


@torch.no_grad()
def heldout_nll(model, dataset: GroundTruthDataset, indices: np.ndarray, device, seed: int,
                mean_image: torch.Tensor, batch_size: int = 128) -> dict[str, float]:
    """On images never trained on, in nats per image: the negative ELBO (β = 1) with one
    reparameterised sample (noise from a generator seeded with ``seed``), its two terms,
    and the BCE of ``mean_image`` (the per-pixel training mean: a model ignoring its input)."""
    keys = ("heldout_neg_elbo", "heldout_recon", "heldout_kl", "heldout_mean_image_nll")
    if len(indices) == 0:
        return dict.fromkeys(keys, math.nan)
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    mean_logits = torch.logit(mean_image.clamp(1e-4, 1 - 1e-4))
    recon = kl = baseline = 0.0
    for start in range(0, len(indices), batch_size):
        x = _batch(dataset.images(indices[start:start + batch_size]), device)
        logits, mu, logvar = model(x, generator=generator)
        terms = lambda_beta_loss(logits, x, mu, logvar, beta=1.0)
        recon += terms["recon"].item() * len(x)
        kl += terms["kl"].item() * len(x)
        baseline += F.binary_cross_entropy_with_logits(mean_logits.expand_as(x), x, reduction="sum").item()
    n = len(indices)
    return dict(zip(keys, ((recon + kl) / n, recon / n, kl / n, baseline / n)))


def heldout_columns(model, dataset: GroundTruthDataset, points: dict, cfg, seed: int, device) -> dict:
    """The held-out columns of a results row: held-out images that are not metric points
    (at most ``cfg.heldout_eval_points``), scored by ``heldout_nll``."""
    _, held = heldout_split(len(dataset), cfg.heldout_fraction)
    held = np.setdiff1d(held, np.concatenate([points["train"], points["test"]]))[:cfg.heldout_eval_points]
    mean_image = to_float(torch.from_numpy(dataset.images(points["train"][:MEAN_IMAGE_POINTS])).to(device)).mean(0)
    return {**heldout_nll(model, dataset, held, device, seed, mean_image=mean_image), "heldout_images": len(held)}


def train_window_columns(window: dict) -> dict:
    """The train-window columns of a results row; the paper's "NLL" is the mean training
    BCE over the last loss_window steps (not held out)."""
    return {"train_window_nll": window.get("recon"), "train_window_kl": window.get("kl"),
            "train_window_l2": window.get("l2"), "train_window_total": window.get("total")}


def definitions(cfg, steps: int, heldout_images: int) -> dict:
    """What the shared numbers of a row are, stored in metrics.json next to them."""
    return {
        "train_window_nll": f"mean training BCE (nats/image, summed over pixels) over the last "
                            f"{min(cfg.loss_window, steps)} steps; a train-window loss, not held out",
        "heldout_mean_image_nll": f"BCE of the same held-out images under the per-pixel mean of "
                                  f"{MEAN_IMAGE_POINTS:,} training images (a model that ignores its input)",
        "heldout_neg_elbo": f"negative ELBO (β=1, one sample) in nats/image on {heldout_images} images "
                            f"never trained on (heldout_fraction={cfg.heldout_fraction})",
        "i_m": "max-weight one-to-one factor-latent matching of MI, nats (unnormalised)",
        "i_m_normalized": "i_m divided by the sum of factor entropies",
        "mi_floor": "the mi matrix with each factor shuffled (true MI 0): the histogram estimator's bias",
        "kl_per_latent": "mean KL(q(z_d|x) || N(0,1)) per latent d, nats, over the metric train points",
        "active_latents": f"latents whose kl_per_latent exceeds {ACTIVE_KL_NATS} nats",
        "i_xz_upper": "sum of kl_per_latent: the mean KL, an upper bound on I(x; z) in nats",
    }


def reconstruction_points(dataset, cfg) -> tuple[np.ndarray, str]:
    """(image indices, which split) that PSNR and SSIM are computed on: CelebA's official
    test partition when its list_eval_partition.txt is present, else the held-out split
    (images no run trains on); at most ``heldout_eval_points`` of them, in order."""
    if getattr(dataset, "partition", None) is not None:
        return dataset.split("test")[:cfg.heldout_eval_points], "official test partition"
    return heldout_split(len(dataset), cfg.heldout_fraction)[1][:cfg.heldout_eval_points], "held-out split"


@torch.no_grad()
def reconstruction_columns(model, dataset, cfg, device) -> dict:
    """PSNR and SSIM (``metrics.reconstruction_quality``) of the reconstructions from the
    encoder means (``model.reconstruct``), per image and then averaged."""
    points, split = reconstruction_points(dataset, cfg)
    model.eval()
    originals, recons = [], []
    for start in range(0, len(points), 256):
        x = to_float(torch.from_numpy(dataset.images(points[start:start + 256])).to(device))
        originals.append(x.cpu().numpy())
        recons.append(model.reconstruct(x).float().cpu().numpy())
    if not originals:
        return {"psnr": math.nan, "ssim": math.nan, "recon_eval_split": split, "recon_eval_images": 0}
    quality = metrics.reconstruction_quality(np.concatenate(originals), np.concatenate(recons))
    return {"psnr": quality["psnr"], "ssim": quality["ssim"], "recon_eval_split": split,
            "recon_eval_images": len(points)}


def reconstruction_definitions(quality: dict) -> dict:
    """What ``reconstruction_columns``' columns are, for metrics.json."""
    return {
        "psnr": f"mean over {quality['recon_eval_images']} images of the {quality['recon_eval_split']} of "
                "10·log10(1/MSE) in dB, the MSE between the image and its reconstruction (sigmoid of the "
                "decoded encoder mean) over pixels and channels in [0, 1] (scikit-image "
                "peak_signal_noise_ratio); +inf for identical images",
        "ssim": "mean over the same images of SSIM (Wang et al. 2004; scikit-image structural_similarity: "
                "7×7 uniform window, K1 0.01, K2 0.03, data_range 1, channels averaged); 1 for identical images",
        "recon_eval_split": "which images PSNR and SSIM use: CelebA's official test partition when "
                            "list_eval_partition.txt is present, else the held-out split",
    }


def factor_scores(model, dataset: GroundTruthDataset, points: dict, codes: np.ndarray, cfg, seed: int,
                  device) -> tuple[dict, dict]:
    """Every factor metric of a model, beyond the study's three: (row columns, metrics.json
    extras). MIG, SAP, I_m (``metrics.study_metrics``), JEMMIG and IRS on the codes of the
    metric points (``codes``: their train part), and the sampled β-VAE (Z-diff) and
    FactorVAE (Z-min Var) scores, which encode the images they draw."""
    test_codes = encode(model, dataset, points["test"], device)
    train_f, test_f = dataset.index_to_factors(points["train"]), dataset.index_to_factors(points["test"])
    study = metrics.study_metrics(train_f, codes, test_f, test_codes, num_bins=cfg.num_bins, seed=seed)
    jem = metrics.jemmig(train_f, codes, num_bins=cfg.num_bins)
    irs = metrics.irs(train_f, codes, num_bins=cfg.num_bins)
    # The sampled metrics encode the images they draw; batches of 256 as before.
    encoder = functools.partial(encode_images, model, device=device, batch_size=256)
    zd = metrics.z_diff(dataset, encoder, np.random.default_rng([seed, 1]), cfg.sampled_metric_batch,
                        cfg.sampled_metric_train, cfg.sampled_metric_eval)
    zm = metrics.z_min_var(dataset, encoder, np.random.default_rng([seed, 2]), cfg.sampled_metric_batch,
                           cfg.sampled_metric_train, cfg.sampled_metric_eval,
                           num_variance_estimate=cfg.metric_train_points)
    scores = {"mig": study["mig"], "sap": study["sap"], "i_m": study["i_m"],
              "i_m_normalized": study["i_m_normalized"], "jemmig": jem["jemmig_normalized"],
              "jemmig_raw": jem["jemmig"], "irs": irs["irs"], "z_diff": zd["z_diff_eval_accuracy"],
              "z_diff_train": zd["z_diff_train_accuracy"], "z_min_var": zm["z_min_var_eval_accuracy"],
              "z_min_var_error": 1.0 - zm["z_min_var_eval_accuracy"]}
    extra = {"mi": study["mi"], "factor_names": dataset.factor_names,
             "metric_settings": {**study["settings"], "z_diff": zd["settings"], "z_min_var": zm["settings"],
                                 "z_min_var_active_latents": zm["num_active_dims"],
                                 "irs_diff_quantile": 0.99, "jemmig_num_bins": cfg.num_bins}}
    return scores, extra


def factor_definitions(cfg) -> dict:
    """What ``factor_scores``' columns are, for metrics.json."""
    return {
        "mig": f"MIG (Chen et al. 2018), {cfg.num_bins} equal-width bins, metric train points",
        "sap": "discrete SAP (LinearSVC per latent and factor), fit on train, scored on test points",
        "z_diff": f"β-VAE score (Higgins et al. 2017): LogisticRegression accuracy on {cfg.sampled_metric_eval} "
                  f"eval points after {cfg.sampled_metric_train} train points of {cfg.sampled_metric_batch} pairs; "
                  "higher is better",
        "z_min_var": f"FactorVAE score (Kim & Mnih 2018): majority-vote accuracy on {cfg.sampled_metric_eval} "
                     f"eval points of {cfg.sampled_metric_batch} images; higher is better "
                     "(the review's rescaled direction)",
        "z_min_var_error": "1 − z_min_var: the lower-is-better direction of the 3DShapes table an earlier "
                           "(since removed) README of the MINE-VAE repository showed",
        "irs": "IRS (Suter et al. 2019), diff_quantile 0.99, metric train points; higher is better",
        "jemmig": "normalised JEMMIG (Do & Tran 2020), 1 − JEMMIG/(H(f)+log bins); higher is better",
        "jemmig_raw": "raw JEMMIG in nats; lower is better",
    }


def posthoc_redundancy(codes: np.ndarray, parts, steps: int, hidden: int, seed: int) -> list[float]:
    """A fresh MINE (Belghazi et al. 2018) per latent part ``p`` (index tensors), trained
    after training on the final codes (encoder means of the metric points): Î(mu_p;
    mu_rest) in nats, ``steps`` Adam steps of a ``hidden``-unit critic. A model trained
    against a critic of its own (the MINE-VAE) is scored by the same procedure as one
    that was not, so the numbers compare."""
    out = []
    for k, p in enumerate(parts):
        rest = np.setdiff1d(np.arange(codes.shape[1]), p.numpy())
        out.append(estimate_mi(codes[:, p.numpy()], codes[:, rest], steps=steps, hidden=hidden, lr=1e-3,
                               seed=seed * 1000 + k)["mi"])
    return out


class progress:
    """A progress bar over the named parts of an evaluation (minutes with the study's
    10,000 metric points), showing the part under way."""

    def __init__(self, spec, parts: tuple[str, ...]):
        from tqdm import tqdm
        self.parts = parts
        self.bar = tqdm(total=len(parts), desc=f"evaluating {spec.name}", position=1, leave=False, unit="part",
                        dynamic_ncols=True)
        self.bar.set_postfix_str(parts[0])

    def next(self) -> None:
        self.bar.update()
        if self.bar.n < len(self.parts):
            self.bar.set_postfix_str(self.parts[self.bar.n])
        else:
            self.bar.close()


def evaluate(spec, cfg, dataset: GroundTruthDataset, model: BetaVAE, window: dict, steps: int, device,
             wall_time_s: float) -> dict:
    """The λβ-VAE's scores: the contents of its metrics.json (``row`` is its results-table
    row). MIG, SAP and I_m (metrics.study_metrics) on the codes of the seed's metric points."""
    bar = progress(spec, ("codes", "MIG, SAP, I_m", "held-out NLL"))
    points = metric_indices(len(dataset), spec.seed, cfg.metric_train_points, cfg.metric_test_points)
    codes, logvar = encode_moments(model, dataset, points["train"], device)
    codes = {"train": codes, "test": encode(model, dataset, points["test"], device)}
    kl = kl_from_moments(codes["train"], logvar)       # on the images whose codes I_m and MIG read
    bar.next()
    train_factors = dataset.index_to_factors(points["train"])
    scores = metrics.study_metrics(train_factors, codes["train"],
                                   dataset.index_to_factors(points["test"]), codes["test"],
                                   num_bins=cfg.num_bins, seed=spec.seed)
    floor = metrics.shuffled_mi_floor(train_factors, codes["train"], num_bins=cfg.num_bins, seed=spec.seed)
    bar.next()
    heldout = heldout_columns(model, dataset, points, cfg, spec.seed, device)
    bar.next()
    row = {
        "stage": spec.stage, "dataset": spec.dataset, "source": cfg.source, "beta": spec.beta,
        "lambda": spec.lam, "seed": spec.seed, "steps": steps, "status": "done",
        **train_window_columns(window), **heldout,
        "mig": scores["mig"], "sap": scores["sap"], "i_m": scores["i_m"],
        "i_m_normalized": scores["i_m_normalized"], **latent_columns(kl), "wall_time_s": wall_time_s,
    }
    return {"row": row, "mi": scores["mi"], "mi_floor": floor, "kl_per_latent": kl.tolist(),
            "factor_names": dataset.factor_names,
            "metric_settings": scores["settings"],
            "definitions": definitions(cfg, steps, heldout["heldout_images"])}
