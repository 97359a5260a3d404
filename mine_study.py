"""The MINE disentangling VAE family: runs, bi-level training, evaluation, ablation table.

Model: ``models.MINEDisentangleVAE`` (docs/mine.md) – the λβ study's conv encoder
and decoder with learned factor queries that cross-attend over the latent slots, a
Gaussian-fit complexity per latent, and ``models.MutualInformationEstimator``: one
MINE (Belghazi et al., ICML 2018; ``mine.py``) per latent part estimating the
redundancy I(z_p; z_rest) (``mine_target`` redundancy), or
``models.FactorMutualInformation``: one MINE per factor estimating I(z; e_k), the
original's target (``mine_target`` factor).

Bi-level training, one round = ``vae_steps`` VAE steps then ``mine_steps``
statistics-network steps:
- VAE step: minimise recon + kl_weight·KL + [redundancy] + [L_sparse] + [L_ent]
  (``losses.mine_vae_loss``) over encoder, factor encoder, attention and decoder,
  with every statistics network T frozen (no gradient into T);
- MINE step: every T maximises its DV bound on fresh codes (encoder frozen), with
  the moving-average gradient correction (eq. 12). T is trained in every variant,
  so ``no_mine`` runs still report the redundancy they did not penalise;
- with ``bilevel`` inner_attention, every VAE step is followed by ``inner_steps`` SGD
  steps on the cross-attention (the original's inner loop; ``inner_attention_steps``).
``steps`` counts VAE steps; after VAE step s with s % vae_steps == 0 come the
round's MINE steps, so the state after any step s is well defined and checkpoints
(every ``checkpoint_interval`` VAE steps) resume bit-for-bit.

Randomness of a run comes only from its seed: initial weights (``torch.manual_seed``),
the VAE's and the MINE steps' data orders (``runs.BatchOrder``, pure functions
of the step), and two checkpointed generators (reparameterisation noise; the
within-batch shuffles that give MINE its marginal samples).

Results tree (``mine_results/``, ``demo_results/mine_results/`` with --demo, or under
``--results-dir``):
    <dataset>/<variant>/seed_<s>/  config.json checkpoint.pt mine_vae_<variant>_seed_<s>.pth
        train_log.csv traversal.gif factor_traversal.gif originals.png reconstructions.png mi_heatmap.png
        samples/step_<k>.png (progress images every sample_interval steps, while training)
        metrics.json (written last: the run's done marker) or failed.json
    results.csv  ablation.csv  ablation.txt  config.json
``results.csv`` starts with the λβ study's columns (``runs.RESULT_COLUMNS``) so the
two families' tables concatenate; the MINE columns follow. The run lifecycle (lock,
resume, failed and done markers, the results table) is ``runs.py``'s, as for the λβ study.
"""
from __future__ import annotations

import functools
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import datasets
import launcher
import metrics
import runs
import visualizations as vis
from config import (
    MINE_RUN_DEFINING,
    MINE_VARIANT_SETTINGS,
    MINE_VARIANTS,
    ConfigError,
    MineConfig,
    add_mine_config_arguments,
    given_settings,
    mine_from_args,
    mine_from_dict,
    mine_variant_config,
    validate_mine,
)
from evaluation import (
    encode,
    encode_images,
    heldout_columns,
    heldout_split,
    metric_indices,
    progress,
    train_window_columns,
)
from losses import MINE_LOSS_KEYS, mine_vae_loss
from mine import estimate_mi
from models import (
    FactorMutualInformation,
    MINEDisentangleVAE,
    MutualInformationEstimator,
    latent_parts,
    num_parameters,
    to_float,
)
from runs import METRICS, RESULT_COLUMNS, BatchOrder, RunFailed, RunSpec, window_means
from utils import atomic_write, read_csv, remove_stale_temporaries, resolve_device, write_csv, write_json, write_text

STAGE = "mine"
ROOT_NAME = "mine_results"
# Per VAE step: the loss terms, then the mean unweighted MINE estimate over parts.
LOG_KEYS = MINE_LOSS_KEYS + ("mine_mi",)
# (use_mine, use_sparse, use_ent) of each ablation variant; the variants that change a
# setting instead (config.MINE_VARIANT_SETTINGS) keep every term, as the full model.
VARIANT_SWITCHES = {"full": (True, True, True), "no_mine": (False, True, True),
                    "no_sparse": (True, False, True), "no_ent": (True, True, False),
                    **{v: (True, True, True) for v in MINE_VARIANT_SETTINGS}}
# The MINE steps read their own data order: BatchOrder seeded with seed + this offset.
MINE_ORDER_OFFSET = 1_000_003
MINE_COLUMNS = ["model", "variant", "kl_weight", "z_diff", "z_diff_train", "z_min_var", "z_min_var_error",
                "irs", "jemmig", "jemmig_raw", "mine_mi_posthoc", "train_window_mine_mi",
                "train_window_redundancy", "train_window_sparse", "train_window_ent", "active_latents",
                "latent_dim", "psnr", "ssim", "recon_eval_split", "recon_eval_images", "progress_images_s"]
COLUMNS = RESULT_COLUMNS + [c for c in MINE_COLUMNS if c not in RESULT_COLUMNS]
ABLATION_METRICS = ("z_diff", "z_min_var", "irs", "jemmig", "mig", "sap", "mine_mi_posthoc",
                    "heldout_recon", "psnr", "ssim", "train_window_sparse", "train_window_ent")


# --- the grid ---------------------------------------------------------------------------
def mine_root(cfg: MineConfig) -> Path:
    """The stage root; the original's preset gets its own, since its settings define other runs."""
    return runs.stage_root(cfg, ROOT_NAME + (f"_{cfg.preset}" if cfg.preset else ""))


def mine_specs(cfg: MineConfig) -> list[RunSpec]:
    """One run per (dataset, variant, seed); β is the KL weight, λ = 0 (no L2 term)."""
    root = mine_root(cfg)
    return [RunSpec(STAGE, d, cfg.kl_weight, 0.0, s, cfg.steps, root / d / v / f"seed_{s}", variant=v)
            for d in cfg.datasets for v in cfg.variants for s in cfg.seeds]


# --- model state ------------------------------------------------------------------------
def build_models(cfg: MineConfig, channels: int, seed: int, device):
    """(VAE, MINE estimators), initialised from ``seed`` (all variants of a seed start
    from the same weights, as all β of a seed do in the λβ study)."""
    torch.manual_seed(seed)
    model = MINEDisentangleVAE(channels, cfg.latent_dim, cfg.num_factors, cfg.factor_dim, cfg.attention_dim,
                               cfg.gaussian_fit_samples)
    if cfg.mine_target == "factor":
        estimator = FactorMutualInformation(cfg.latent_dim, cfg.num_factors, cfg.factor_dim, cfg.mine_hidden_dim,
                                            cfg.mine_ema_rate)
    else:
        estimator = MutualInformationEstimator(cfg.latent_dim, cfg.mine_parts, cfg.mine_hidden_dim,
                                               cfg.mine_ema_rate)
    # NHWC convolutions are 1.5-3x faster on CPU (oneDNN), as for the β-VAE.
    return model.to(device=device, memory_format=torch.channels_last), estimator.to(device)


@dataclass
class MineRunState:
    """Everything a run needs to continue bit-for-bit; saved whole in every checkpoint."""
    model: MINEDisentangleVAE
    estimator: MutualInformationEstimator
    optimizer: torch.optim.Optimizer          # the VAE's
    mine_optimizer: torch.optim.Optimizer     # the statistics networks'
    noise: torch.Generator                    # reparameterisation noise (on the device)
    shuffles: torch.Generator                 # MINE's within-batch permutations (CPU)
    step: int                                 # VAE steps done
    window: torch.Tensor                      # (loss_window, len(LOG_KEYS)) ring buffer
    interval_sum: torch.Tensor                # (len(LOG_KEYS),) since the last log row
    mine_interval: torch.Tensor               # (2,) sum of T-step bounds and their count since the last log
    log: list[dict]
    progress_image_s: float = 0.0             # time spent drawing progress images in this process

    def save(self, path: Path) -> None:
        payload = {
            "model": self.model.state_dict(), "estimator": self.estimator.state_dict(),
            "optimizer": self.optimizer.state_dict(), "mine_optimizer": self.mine_optimizer.state_dict(),
            "noise": self.noise.get_state(), "shuffles": self.shuffles.get_state(), "step": self.step,
            "window": self.window, "interval_sum": self.interval_sum, "mine_interval": self.mine_interval,
            "log": self.log,
        }
        with atomic_write(path) as f:
            torch.save(payload, f)

    def load(self, path: Path, device) -> None:
        payload = torch.load(path, map_location=device, weights_only=True)
        self.model.load_state_dict(payload["model"])
        self.estimator.load_state_dict(payload["estimator"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.mine_optimizer.load_state_dict(payload["mine_optimizer"])
        self.noise.set_state(payload["noise"].cpu())
        self.shuffles.set_state(payload["shuffles"].cpu())
        self.step, self.log = payload["step"], payload["log"]
        for name in ("window", "interval_sum", "mine_interval"):
            setattr(self, name, payload[name].to(getattr(self, name).device))   # its own window length

    def window_means(self) -> dict[str, float]:
        return window_means(self.window, self.step, LOG_KEYS)


def init_state(spec: RunSpec, cfg: MineConfig, channels: int, device) -> MineRunState:
    model, estimator = build_models(cfg, channels, spec.seed, device)
    noise = torch.Generator(device=device).manual_seed(spec.seed)
    shuffles = torch.Generator().manual_seed(spec.seed + MINE_ORDER_OFFSET)
    adam = dict(betas=cfg.adam_betas, eps=cfg.adam_eps)
    return MineRunState(model, estimator,
                        torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **adam),
                        torch.optim.Adam(estimator.parameters(), lr=cfg.mine_lr, **adam), noise, shuffles, 0,
                        # clamped to the run's length: the same means, no 2e9-step allocation
                        torch.zeros(min(cfg.loss_window, spec.steps), len(LOG_KEYS), device=device),
                        torch.zeros(len(LOG_KEYS), device=device), torch.zeros(2, device=device), [])


# --- training ---------------------------------------------------------------------------
def _images(dataset, indices, device) -> torch.Tensor:
    x = torch.from_numpy(dataset.images(indices)).to(device)
    return to_float(x).contiguous(memory_format=torch.channels_last)


def mine_estimates(estimator, z, factors, generator, update_ema: bool) -> torch.Tensor:
    """The MINE estimates the penalty weighs: (P,) I(z_p; z_rest) per latent part for
    ``mine_target`` redundancy, (K,) I(z; e_k) per factor embedding for factor."""
    if isinstance(estimator, FactorMutualInformation):
        return estimator(z, factors, generator=generator, update_ema=update_ema)
    return estimator(z, generator=generator, update_ema=update_ema)


def mine_weights(model: MINEDisentangleVAE, estimator) -> torch.Tensor:
    """The complexity weights of the estimates (mean 1): per part from the latents'
    Gaussian-fit complexity, or per factor from its embedding's spread."""
    if isinstance(estimator, FactorMutualInformation):
        return model.factor_weights()
    return model.complexity.part_weights(estimator.parts)


def loss_settings(cfg: MineConfig, switches) -> dict:
    use_mine, use_sparse, use_ent = switches
    return dict(kl_weight=cfg.kl_weight, disentanglement_weight=cfg.disentanglement_weight,
                attention_reg_weight=cfg.attention_reg_weight, entropy_reg_weight=cfg.entropy_reg_weight,
                use_mine=use_mine, use_sparse=use_sparse, use_ent=use_ent, loss_scale=cfg.loss_scale)


def vae_step(state: MineRunState, x: torch.Tensor, cfg: MineConfig, switches) -> torch.Tensor:
    """One outer (VAE) step with every statistics network frozen; returns the LOG_KEYS row.
    With ``bilevel`` inner_attention, ``inner_steps`` SGD steps on the cross-attention follow."""
    model, estimator = state.model.train(), state.estimator
    out = model.run(x, generator=state.noise)
    estimator.requires_grad_(False)       # T fixed: the VAE moves the codes, not the critic
    try:
        # EMA left alone: only T's own steps update the estimator's state.
        estimates = mine_estimates(estimator, out["z"], out["factors"], state.shuffles, update_ema=False)
    finally:
        estimator.requires_grad_(True)
    weights = mine_weights(model, estimator)
    terms = mine_vae_loss(out["logits"], x, out["mu"], out["logvar"], out["attention"], estimates, weights,
                          **loss_settings(cfg, switches))
    state.optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    state.optimizer.step()
    if cfg.bilevel == "inner_attention":
        inner_attention_steps(model, x, out, estimates.detach(), weights, cfg, switches)
    model.complexity.update(out["z"], out["logvar"])
    return torch.stack([terms[k].detach() for k in MINE_LOSS_KEYS] + [estimates.detach().mean()])


def inner_attention_steps(model: MINEDisentangleVAE, x, out: dict, estimates, weights, cfg: MineConfig,
                          switches) -> None:
    """The original's inner loop (this project's reading): ``inner_steps`` plain SGD steps
    (``inner_lr``, no momentum: no state to checkpoint) on the cross-attention's
    parameters only, each minimising the same loss on the same batch and the same
    sampled codes z, with the encoder and factor embeddings held at the step's values
    and the MINE estimates as constants (they do not depend on the attention).
    Only recon, L_sparse and L_ent then move the attention. With ``grad_clip`` > 0 each
    inner gradient is clipped to that global norm too (as ``clip_grad_norm_`` does);
    without clipping, SGD at 0.01 on the summed-pixel reconstruction diverges within
    a hundred demo steps."""
    params = list(model.attention.parameters())
    z, mu, logvar = out["z"].detach(), out["mu"].detach(), out["logvar"].detach()
    with torch.no_grad():
        factors = model.factor_encoder(z)
    for _ in range(cfg.inner_steps):
        attended, attention = model.attention(z, factors)
        terms = mine_vae_loss(model.decoder(attended), x, mu, logvar, attention, estimates, weights,
                              **loss_settings(cfg, switches))
        grads = torch.autograd.grad(terms["total"], params)
        if cfg.grad_clip > 0:       # as every step of the original is clipped
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            grads = [g * min(1.0, cfg.grad_clip / (float(norm) + 1e-6)) for g in grads]
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(cfg.inner_lr * g)


def mine_step(state: MineRunState, x: torch.Tensor) -> torch.Tensor:
    """One statistics-network step: every T ascends its DV bound on codes of a fresh
    batch (encoder frozen, codes sampled as in training); returns the mean bound."""
    with torch.no_grad():
        mu, logvar = state.model.encoder(x)
        z = mu + torch.randn(mu.shape, generator=state.noise, device=mu.device) * torch.exp(0.5 * logvar)
        factors = state.model.factor_encoder(z) if isinstance(state.estimator, FactorMutualInformation) else None
    bounds = mine_estimates(state.estimator, z, factors, state.shuffles, update_ema=True)
    state.mine_optimizer.zero_grad(set_to_none=True)
    (-bounds.sum()).backward()            # the parts' networks are independent: one sum, one step
    state.mine_optimizer.step()
    return bounds.detach().mean()


def train(spec: RunSpec, cfg: MineConfig, dataset, device, position: int = 1,
          heartbeat=lambda: None) -> MineRunState:
    """Train one run to ``spec.steps`` VAE steps, resuming from its checkpoint if any."""
    state = init_state(spec, cfg, dataset.channels, device)
    checkpoint = spec.checkpoint_path
    if checkpoint.exists():
        state.load(checkpoint, device)
    train_idx, _ = heldout_split(len(dataset), cfg.heldout_fraction)
    vae_order = BatchOrder(train_idx, cfg.batch_size, spec.seed)
    mine_order = BatchOrder(train_idx, cfg.batch_size, spec.seed + MINE_ORDER_OFFSET)
    progress_images = ProgressImages(spec, cfg, dataset, device)
    bar = tqdm(total=spec.steps, initial=state.step, desc=spec.name, position=position, leave=False,
               unit="step", dynamic_ncols=True)
    saved = {"step": state.step}        # the step a rerun resumes from
    try:
        _train_steps(spec, cfg, dataset, device, state, vae_order, mine_order, bar, heartbeat, saved,
                     progress_images)
    except KeyboardInterrupt:           # Ctrl-C: one line, not a traceback
        bar.close()
        raise runs.Interrupted(f"interrupted at step {state.step} of {spec.name} (last checkpoint: step "
                               f"{saved['step']}); rerun the same command to resume") from None
    bar.close()
    state.progress_image_s = progress_images.seconds
    return state


def learning_rate(cfg: MineConfig, step: int, train_images: int) -> float:
    """The VAE's learning rate at ``step``: lr · lr_decay^epoch, where the epoch is the
    one ``BatchOrder`` draws the step's batch from (a pure function of the step)."""
    return cfg.lr * cfg.lr_decay ** (step * cfg.batch_size // train_images)


def _train_steps(spec, cfg, dataset, device, state, vae_order, mine_order, bar, heartbeat, saved,
                 progress_images) -> None:
    checkpoint = spec.checkpoint_path
    tic, tic_step = time.perf_counter(), state.step
    while state.step < spec.steps:
        if cfg.lr_decay != 1:
            for group in state.optimizer.param_groups:
                group["lr"] = learning_rate(cfg, state.step, len(vae_order.train_indices))
        row = vae_step(state, _images(dataset, vae_order(state.step), device), cfg, VARIANT_SWITCHES[spec.variant])
        state.window[state.step % len(state.window)] = row
        state.interval_sum += row
        state.step += 1
        if state.step % cfg.vae_steps == 0:
            first = (state.step // cfg.vae_steps - 1) * cfg.mine_steps     # T steps done before this round
            for t in range(first, first + cfg.mine_steps):
                state.mine_interval += torch.stack([mine_step(state, _images(dataset, mine_order(t), device)),
                                                    torch.ones((), device=device)])
        bar.update()
        progress_images.maybe_write(state.model, state.step)
        if state.step % cfg.log_interval == 0 or state.step == spec.steps:
            _log(state, spec, cfg, tic, tic_step)
            tic, tic_step = time.perf_counter(), state.step
        if state.step % cfg.checkpoint_interval == 0 or state.step == spec.steps:
            _check_finite(state)
            state.save(checkpoint)
            saved["step"] = state.step
            heartbeat()


# --- progress images ----------------------------------------------------------------------
PROGRESS_IMAGES = 12          # images reconstructed in each progress image (one row of originals, one of recons)
PRIOR_SAMPLES = 144           # prior samples per progress image (12 × 12, as the original shows each epoch)
PRIOR_SEED_OFFSET = 2_000_003  # the prior samples' generator: seed + this, apart from training's generators


def progress_steps(cfg: MineConfig, steps: int) -> list[int]:
    """The VAE steps after which a progress image is written: every ``sample_interval``
    up to ``steps`` (none for 0). A pure function of the settings, so a resumed run
    expects the same files."""
    return list(range(cfg.sample_interval, steps + 1, cfg.sample_interval)) if cfg.sample_interval else []


class ProgressImages:
    """``samples/step_<k>.png`` in the run folder after each step of ``progress_steps``:
    12 held-out originals over their reconstructions (encoder means, through the
    attention), then 144 prior samples z ~ N(0, I) decoded through the attention.

    The inputs are fixed for the whole run (the same images and prior draws at every
    step, from their own generator), so images from different steps compare, and
    drawing them touches none of training's random state: a run's numbers are the same
    with and without them. Files are written atomically and never rewritten: after a
    resume, the steps between the last checkpoint and the kill are retrained to the same
    state, and their images already exist."""

    def __init__(self, spec: RunSpec, cfg: MineConfig, dataset, device):
        self.folder, self.seconds = spec.run_dir / "samples", 0.0
        self.steps = set(progress_steps(cfg, spec.steps))
        if not self.steps:
            return
        remove_stale_temporaries(self.folder)        # under the run's lock: a killed write's leftovers
        train, held = heldout_split(len(dataset), cfg.heldout_fraction)
        shown = (held if len(held) >= PROGRESS_IMAGES else train)[:PROGRESS_IMAGES]
        self.images = dataset.images(shown)
        generator = torch.Generator().manual_seed(spec.seed + PRIOR_SEED_OFFSET)
        self.prior = torch.randn(PRIOR_SAMPLES, cfg.latent_dim, generator=generator).to(device)
        self.device = device

    def path(self, step: int) -> Path:
        return self.folder / f"step_{step}.png"

    @torch.no_grad()
    def maybe_write(self, model: MINEDisentangleVAE, step: int) -> None:
        if step not in self.steps or self.path(step).exists():
            return
        tic = time.perf_counter()
        model.eval()
        try:
            recon = model.reconstruct(to_float(torch.from_numpy(self.images).to(self.device)))
            samples = torch.sigmoid(model.decode(self.prior))
        finally:
            model.train()
        tiles = np.concatenate([self.images, vis.to_uint8(recon), vis.to_uint8(samples)])
        vis.save_png(vis.tile(tiles, PROGRESS_IMAGES), self.path(step))
        self.seconds += time.perf_counter() - tic


def _check_finite(state: MineRunState) -> None:
    """Raise RunFailed if a loss since the last log or a parameter is NaN/Inf."""
    if not (bool(torch.isfinite(state.interval_sum).all()) and bool(torch.isfinite(state.mine_interval).all())):
        raise RunFailed(state.step, f"non-finite loss or MINE bound before step {state.step}")
    for module in (state.model, state.estimator):
        bad = [n for n, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise RunFailed(state.step, f"non-finite parameters {', '.join(bad[:3])} at step {state.step}")


def _log(state: MineRunState, spec: RunSpec, cfg: MineConfig, tic: float, tic_step: int) -> None:
    _check_finite(state)
    n = state.step - (state.log[-1]["step"] if state.log else 0)
    means = (state.interval_sum / n).tolist()
    bound_sum, bound_count = state.mine_interval.tolist()
    state.interval_sum.zero_()
    state.mine_interval.zero_()
    elapsed = time.perf_counter() - tic
    state.log.append({"step": state.step, **{f"train_{k}": v for k, v in zip(LOG_KEYS, means)},
                      "mine_step_bound": bound_sum / bound_count if bound_count else math.nan,
                      "images_per_s": (state.step - tic_step) * cfg.batch_size / max(elapsed, 1e-9)})
    write_csv(spec.run_dir / "train_log.csv", state.log)


# --- evaluation -------------------------------------------------------------------------
def posthoc_redundancy(codes: np.ndarray, parts, cfg: MineConfig, seed: int) -> list[float]:
    """A fresh MINE per part, trained after training on the final codes (encoder means
    of the metric points): Î(mu_p; mu_rest) in nats. Unlike the training-time critic,
    which the full model was trained against, this estimate is the same procedure for
    every variant, so it compares them."""
    out = []
    for k, p in enumerate(parts):
        rest = np.setdiff1d(np.arange(codes.shape[1]), p.numpy())
        out.append(estimate_mi(codes[:, p.numpy()], codes[:, rest], steps=cfg.mine_eval_steps,
                               hidden=cfg.mine_hidden_dim, lr=1e-3, seed=seed * 1000 + k)["mi"])
    return out


def reconstruction_points(dataset, cfg: MineConfig) -> tuple[np.ndarray, str]:
    """(image indices, which split) that PSNR and SSIM are computed on: CelebA's official
    test partition when its list_eval_partition.txt is present, else the held-out split
    (images no run trains on); at most ``heldout_eval_points`` of them, in order."""
    if getattr(dataset, "partition", None) is not None:
        return dataset.split("test")[:cfg.heldout_eval_points], "official test partition"
    return heldout_split(len(dataset), cfg.heldout_fraction)[1][:cfg.heldout_eval_points], "held-out split"


@torch.no_grad()
def reconstruction_columns(model: MINEDisentangleVAE, dataset, cfg: MineConfig, device) -> dict:
    """PSNR and SSIM (``metrics.reconstruction_quality``) of the reconstructions from the
    encoder means, decoded through the attention, per image and then averaged."""
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


def evaluate(spec: RunSpec, cfg: MineConfig, dataset, model: MINEDisentangleVAE, device,
             window: dict | None, steps: int | None, wall_time_s: float) -> dict:
    """Metrics of a trained model: the contents of its metrics.json (``row`` is its
    results-table row). The caller writes the file last, as the run's done marker."""
    model.eval()
    bar = progress(spec, ("codes and factor metrics", "post-hoc MINE", "held-out NLL", "PSNR and SSIM"))
    points = metric_indices(len(dataset), spec.seed, cfg.metric_train_points, cfg.metric_test_points)
    codes = encode(model, dataset, points["train"], device)
    parts = latent_parts_of(cfg)
    complexity = model.complexity.complexity().cpu().numpy()
    scores, extra = {}, {}
    if dataset.has_factors:
        test_codes = encode(model, dataset, points["test"], device)
        train_f, test_f = dataset.index_to_factors(points["train"]), dataset.index_to_factors(points["test"])
        study = metrics.study_metrics(train_f, codes, test_f, test_codes, num_bins=cfg.num_bins, seed=spec.seed)
        jem = metrics.jemmig(train_f, codes, num_bins=cfg.num_bins)
        irs = metrics.irs(train_f, codes, num_bins=cfg.num_bins)
        # The sampled metrics encode the images they draw; batches of 256 as before.
        encoder = functools.partial(encode_images, model, device=device, batch_size=256)
        zd = metrics.z_diff(dataset, encoder, np.random.default_rng([spec.seed, 1]), cfg.sampled_metric_batch,
                            cfg.sampled_metric_train, cfg.sampled_metric_eval)
        zm = metrics.z_min_var(dataset, encoder, np.random.default_rng([spec.seed, 2]), cfg.sampled_metric_batch,
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
    bar.next()
    redundancy = posthoc_redundancy(codes, parts, cfg, spec.seed)
    bar.next()
    heldout = heldout_columns(model, dataset, points, cfg, spec.seed, device)
    bar.next()
    quality = reconstruction_columns(model, dataset, cfg, device)
    bar.next()
    with torch.no_grad():
        attention = model.attend(torch.from_numpy(codes[:1000]).to(device))[1].mean(0).cpu().numpy()
    window = window or {}
    row = {
        "stage": STAGE, "dataset": spec.dataset, "source": cfg.source, "beta": cfg.kl_weight, "lambda": 0.0,
        "seed": spec.seed, "steps": steps, "status": "done",
        **train_window_columns(window), **heldout, **scores, "wall_time_s": wall_time_s,
        "model": "mine_vae", "variant": spec.variant, "kl_weight": cfg.kl_weight,
        "mine_mi_posthoc": float(np.mean(redundancy)), "train_window_mine_mi": window.get("mine_mi"),
        "train_window_redundancy": window.get("redundancy"), "train_window_sparse": window.get("sparse"),
        "train_window_ent": window.get("ent"), "active_latents": int((complexity > ACTIVE_NATS).sum()),
        "latent_dim": cfg.latent_dim, **quality,
    }
    return {
        "row": row, **extra, "complexity_nats": complexity, "mine_mi_posthoc_per_part": redundancy,
        "latent_parts": [p.tolist() for p in parts], "mean_attention": attention,
        "definitions": definitions(cfg, steps, heldout["heldout_images"], dataset.has_factors, quality),
    }


ACTIVE_NATS = 0.1    # a latent whose Gaussian-fit complexity exceeds this counts as active


def latent_parts_of(cfg: MineConfig):
    return latent_parts(cfg.latent_dim, cfg.mine_parts)


def definitions(cfg: MineConfig, steps, heldout_images: int, has_factors: bool, quality: dict) -> dict:
    """What every number of a row is, stored in metrics.json next to the numbers."""
    window = min(cfg.loss_window, steps or cfg.loss_window)
    d = {
        "code": "encoder mean mu (n, latent_dim), before the cross-attention: what every metric reads",
        "beta": "kl_weight, the weight of the KL term; lambda = 0: no L2 term",
        "train_window_nll": f"mean training BCE (nats/image, summed over pixels) over the last {window} VAE "
                           "steps; a train-window loss, not held out",
        "train_window_total": "mean total MINE-VAE loss over the same window (only the switched-on terms)",
        "train_window_mine_mi": ("mean over factors of the training critics' DV estimates of I(z; e_k)"
                                 if cfg.mine_target == "factor" else
                                 "mean over parts of the training critics' DV estimates of I(z_p; z_rest)")
                                + " on the VAE batches (nats), same window",
        "train_window_redundancy": "the complexity-weighted MINE term (mine_target=" + cfg.mine_target
                                   + "), same window (in the loss only for variants with MINE)",
        "train_window_sparse": "L_sparse = -(1/K) Σ_ki A_ki log(A_ki / Σ_k' A_k'i): the load-weighted "
                               "entropy of each latent's normalised attention load, H(factor | latent) in "
                               "nats, same window",
        "train_window_ent": "L_ent = mean entropy of each factor's attention over latents (nats), same window",
        "heldout_neg_elbo": f"negative ELBO (β=1, one sample) in nats/image on {heldout_images} images never "
                            f"trained on (heldout_fraction={cfg.heldout_fraction})",
        "mine_mi_posthoc": f"mean over the {cfg.mine_parts} latent parts of a fresh MINE's held-out DV "
                           f"estimate of I(mu_p; mu_rest) on the {cfg.metric_train_points} metric points "
                           f"({cfg.mine_eval_steps} Adam steps); nats",
        "active_latents": f"latents with Gaussian-fit complexity > {ACTIVE_NATS} nats",
        "complexity_nats": "per latent: ½ log Var_fit[z_i] − ½ mean log σ_i²(x) over the last "
                           f"{cfg.gaussian_fit_samples} training codes (≥ 0; upper bound on I(x; z_i))",
        "psnr": f"mean over {quality['recon_eval_images']} images of the {quality['recon_eval_split']} of "
                "10·log10(1/MSE) in dB, the MSE between the image and its reconstruction (sigmoid of the "
                "decoded encoder mean) over pixels and channels in [0, 1] (scikit-image "
                "peak_signal_noise_ratio); +inf for identical images",
        "ssim": "mean over the same images of SSIM (Wang et al. 2004; scikit-image structural_similarity: "
                "7×7 uniform window, K1 0.01, K2 0.03, data_range 1, channels averaged); 1 for identical images",
        "recon_eval_split": "which images PSNR and SSIM use: CelebA's official test partition when "
                            "list_eval_partition.txt is present, else the held-out split",
        "progress_images_s": "seconds this process spent drawing samples/step_<k>.png (not the rest of the run)",
    }
    if has_factors:
        d.update({
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
        })
    return d


# --- figures ----------------------------------------------------------------------------
class TraversalView:
    """The model as ``visualizations`` sees a β-VAE, restricted to chosen latents.

    ``vis.traversal_frames`` encodes a few images, replaces one latent at a time and
    decodes rows ordered image-major (row i·d + j = image i, latent j). This view
    returns only the chosen latents' means and, when decoding, puts the traversed
    values back into each image's full code and decodes through the attention path."""

    def __init__(self, model: MINEDisentangleVAE, latents: list[int]):
        self.model, self.latents, self._base = model, torch.as_tensor(latents), None

    def eval(self):
        self.model.eval()
        return self

    def encoder(self, x):
        mu, logvar = self.model.encoder(x)
        self._base = mu
        return mu[:, self.latents], logvar[:, self.latents]

    def decoder(self, z):
        n, d = self._base.shape[0], len(self.latents)
        if z.shape != (n * d, d):
            raise RuntimeError(f"TraversalView expects ({n * d}, {d}) codes, got {tuple(z.shape)}")
        full = self._base.repeat_interleave(d, dim=0).clone()
        full[:, self.latents] = z
        return self.model.decode(full)

    def reconstruct(self, x):
        return self.model.reconstruct(x)


class FactorTraversalView:
    """Per-factor traversals through the attention, for ``vis.traversal_frames``.

    Factor k's embedding e_k sets only its query, so it moves only factor k's attention
    row (its allocation over latents); the values come from the code. Each factor gets
    one coordinate: e_k's projection on its first principal axis u_k (over the images
    traversed and ``reference`` codes), in standard deviations. Setting coordinate k to
    t moves e_k by (t − t_k)·σ_k·u_k with the code and the other embeddings fixed, and
    the frame shows what the decoder makes of the moved allocation."""

    def __init__(self, model: MINEDisentangleVAE, reference_codes: torch.Tensor):
        self.model, self._base = model, None
        with torch.no_grad():
            e = model.factor_encoder(reference_codes)                      # (m, K, F)
        self.mean = e.mean(0)
        centred = (e - self.mean).transpose(0, 1)                          # (K, m, F)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        self.axis = vh[:, 0]                                               # (K, F)
        self.std = (s[:, 0] / max(e.shape[0] - 1, 1) ** 0.5).clamp_min(1e-6)

    def eval(self):
        self.model.eval()
        return self

    def encoder(self, x):
        mu, logvar = self.model.encoder(x)
        self._base = (mu, self.model.factor_encoder(mu))
        t = ((self._base[1] - self.mean) * self.axis).sum(-1) / self.std   # (n, K)
        return t, torch.zeros_like(t)

    def moved(self, t):
        """(codes, embeddings) of the rows ``traversal_frames`` asks for: each image's code
        and embeddings, with every embedding moved to its coordinate in ``t`` (n·K, K)."""
        mu, e = self._base
        n, k = e.shape[:2]
        if t.shape != (n * k, k):
            raise RuntimeError(f"FactorTraversalView expects ({n * k}, {k}) coordinates, got {tuple(t.shape)}")
        t0 = ((e - self.mean) * self.axis).sum(-1) / self.std               # (n, K)
        shift = (t - t0.repeat_interleave(k, dim=0)) * self.std             # (n·K, K): 0 where not traversed
        return mu.repeat_interleave(k, dim=0), e.repeat_interleave(k, dim=0) + shift[..., None] * self.axis

    def decoder(self, t):
        return self.model.decoder(self.model.attention(*self.moved(t))[0])

    def reconstruct(self, x):
        return self.model.reconstruct(x)


def traversal_latents(model: MINEDisentangleVAE, k: int) -> list[int]:
    """The k latents of highest Gaussian-fit complexity (most informative first)."""
    c = model.complexity.complexity().cpu()
    return torch.argsort(-c, stable=True)[:k].tolist()


def draw_run_figures(spec: RunSpec, cfg: MineConfig, dataset, model, device, out_dir: Path,
                     mi=None) -> None:
    points = metric_indices(len(dataset), spec.seed, cfg.metric_train_points, cfg.metric_test_points)
    vis.save_reconstructions(model, dataset.images(points["test"][:64]), out_dir, device)
    view = TraversalView(model, traversal_latents(model, min(cfg.traversal_latents, cfg.latent_dim)))
    vis.save_traversal_gif(view, dataset.images(points["distinct"]), out_dir / "traversal.gif", device)
    with torch.no_grad():
        reference = model.encoder(to_float(torch.from_numpy(dataset.images(points["train"][:500])).to(device)))[0]
    vis.save_traversal_gif(FactorTraversalView(model, reference), dataset.images(points["distinct"]),
                           out_dir / "factor_traversal.gif", device)
    if mi is not None:
        vis.save_mi_heatmap(np.asarray(mi), dataset.factor_names, out_dir / "mi_heatmap.png",
                            title=f"I(factor; latent), MINE-VAE {spec.name}")


# --- one run, the grid ------------------------------------------------------------------
def run_one(spec: RunSpec, cfg: MineConfig, dataset, device) -> dict | None:
    """Train, evaluate and draw one run; None if another process is training it."""
    with runs.Claim([spec]) as claim:
        if not claim.todo:
            return claim.rows[0] if claim.rows else None
        failed = runs.set_aside_unreadable(spec, functools.partial(torch.load, map_location="cpu", weights_only=True))
        if failed is not None:          # a corrupt checkpoint fails this run only
            return failed
        claim.write_config(spec, cfg, stage=STAGE, dataset=spec.dataset, variant=spec.variant, seed=spec.seed,
                           steps=spec.steps, variant_settings=MINE_VARIANT_SETTINGS.get(spec.variant, {}))
        cfg = mine_variant_config(cfg, spec.variant)      # config.json keeps the grid's settings and the variant
        tic = time.perf_counter()
        try:
            state = train(spec, cfg, dataset, device, heartbeat=claim.touch)
        except RunFailed as err:
            return runs.mark_failed(spec, err.step, str(err), source=cfg.source, model="mine_vae",
                                    variant=spec.variant)
        with atomic_write(spec.weights_path) as f:
            torch.save(state.model.state_dict(), f)
        result = evaluate(spec, cfg, dataset, state.model, device, state.window_means(), state.step,
                          wall_time_s=time.perf_counter() - tic)
        result["row"]["progress_images_s"] = state.progress_image_s
        if cfg.figures:
            draw_run_figures(spec, cfg, dataset, state.model, device, spec.run_dir, result.get("mi"))
        return runs.mark_done(spec, result)


def run_grid(specs: list[RunSpec], cfg: MineConfig, retry_failed: bool = False) -> list[dict]:
    """Train and evaluate every run that is not finished; returns all rows (done, failed)."""
    device = resolve_device(cfg.device)
    runs.check_identity(specs, cfg)         # before anything is reused, resumed or skipped as done
    todo = runs.runs_to_train(specs, retry_failed)
    print(f"{len(specs)} MINE-VAE runs, {len(specs) - len(todo)} already finished or failed, "
          f"{len(todo)} to train on {device}")
    data = {name: datasets.load_dataset(name, source=cfg.source, data_dir=cfg.data_dir, variant=cfg.mpi3d_variant)
            for name in dict.fromkeys(spec.dataset for spec in todo)}
    if todo:        # the stage root is bound to these settings once something trains in it
        runs.bind_results_dir(cfg, mine_root(cfg), MINE_RUN_DEFINING, write=True)
    for name, dataset in data.items():
        runs.check_batch_fits(cfg, name, len(heldout_split(len(dataset), cfg.heldout_fraction)[0]))
        model, estimator = build_models(cfg, dataset.channels, 0, "cpu")
        print(f"{name}: {dataset!r}; MINE-VAE {num_parameters(model):,} parameters, "
              f"{len(estimator.estimators)} statistics networks ({cfg.mine_target}) {num_parameters(estimator):,}")
    with tqdm(total=len(todo), desc="runs", position=0, unit="run", dynamic_ncols=True) as bar:
        for name, dataset in data.items():
            for spec in (s for s in todo if s.dataset == name):
                row = run_one(spec, cfg, dataset, device)
                if row is not None:
                    bar.set_postfix_str(_postfix(row))
                bar.update()
    return [row for row in map(runs.read_row, specs) if row is not None]


def _postfix(row: dict) -> str:
    if row["status"] != "done":
        return f"{row['dataset']} {row['variant']} FAILED"
    if row.get("mig") is None:
        return f"last: recon={row['train_window_nll']:.1f} MINE={row['mine_mi_posthoc']:.3f}"
    return f"last: MIG={row['mig']:.3f} Z-diff={row['z_diff']:.3f} MINE={row['mine_mi_posthoc']:.3f}"


# --- tables -----------------------------------------------------------------------------
def ablation_rows(rows: list[dict]) -> list[dict]:
    """mean and sample std (ddof=1) over seeds per (dataset, variant, metric)."""
    groups = defaultdict(list)
    for r in rows:
        if r["status"] == "done":
            groups[(r["dataset"], r["variant"])].append(r)
    out = []
    for (d, v), group in sorted(groups.items(), key=lambda kv: (kv[0][0], MINE_VARIANTS.index(kv[0][1]))):
        for m in ABLATION_METRICS:
            values = np.array([r[m] for r in group if r.get(m) is not None and math.isfinite(r[m])], float)
            out.append({"dataset": d, "variant": v, "metric": m, "n": int(values.size),
                        "mean": float(values.mean()) if values.size else None,
                        # one seed has no sample std: empty, not a misleading 0
                        "std": float(values.std(ddof=1)) if values.size > 1 else None})
    return out


def ablation_text(rows: list[dict]) -> str:
    """One block per dataset: variants × metrics, mean ± std over seeds."""
    lines = ["MINE-VAE ablation: mean ± std over seeds (sample std, ddof=1); n = seeds.",
             "z_diff, z_min_var (accuracy, higher better), irs, jemmig (normalised), mig, sap: higher is better;",
             "mine_mi_posthoc: fresh-MINE I(mu_p; mu_rest) in nats, mean over parts (lower = less redundant);",
             "heldout_recon: BCE nats/image on held-out images; train_window_sparse/ent: L_sparse, L_ent.", ""]
    for d in dict.fromkeys(r["dataset"] for r in rows):
        present = [m for m in ABLATION_METRICS if any(r["dataset"] == d and r["metric"] == m and r["n"]
                                                      for r in rows)]
        lines.append(f"{d}")
        lines.append(f"  {'variant':10s} {'n':>2s} " + " ".join(f"{m:>18s}" for m in present))
        for v in dict.fromkeys(r["variant"] for r in rows if r["dataset"] == d):
            cells = {r["metric"]: r for r in rows if r["dataset"] == d and r["variant"] == v}
            n = max(c["n"] for c in cells.values())
            lines.append(f"  {v:10s} {n:2d} " + " ".join(f"{_mean_std(cells[m]):>18s}" for m in present))
        lines.append("")
    return "\n".join(lines)


def _mean_std(cell: dict) -> str:
    if not cell["n"]:
        return "n/a"
    if cell["std"] is None:
        return f"{cell['mean']:.4g} ± n/a"
    return f"{cell['mean']:.4g} ± {cell['std']:.2g}"


def summarize(rows: list[dict], specs: list[RunSpec], cfg: MineConfig) -> Path:
    """Rewrite results.csv and the ablation table from all finished runs."""
    root = runs.output_root(mine_root(cfg))
    rows = runs.write_results(root, rows, COLUMNS)
    table = ablation_rows(runs.figure_rows(rows, cfg, STAGE))     # never pools runs of other settings
    write_csv(root / "ablation.csv", table, ["dataset", "variant", "metric", "n", "mean", "std"])
    text = ablation_text(table)
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        text += f"\n{len(failed)} failed run(s):\n" + "".join(
            f"  {r['dataset']} {r['variant']} seed={r['seed']} at step {r['steps']}: {r.get('reason')}\n"
            for r in failed)
    write_text(root / "ablation.txt", text)
    runs.report_missing(rows, specs)
    return root


# --- evaluation of a saved checkpoint -------------------------------------------------------
def eval_only(path: Path, args, ablation: bool, out: Path | None = None) -> Path:
    """Evaluate a saved checkpoint.pt or weights .pth (metrics, traversal) without training.

    Settings: the run's config.json beside the file if there is one (then flags given
    on the command line override it), else the command line; dataset, variant and seed
    from that config.json's "run" entry, else the first of --datasets/--variants/--seeds.
    Output: ``out`` (--out), else ``eval_<file stem>/`` beside the file (metrics.json,
    results.csv, figures); checked writable before the evaluation starts."""
    if not path.is_file():
        raise ConfigError(f"--eval-only: {path} is not a file (give a run's checkpoint.pt or .pth weights)")
    saved_path = path.parent / "config.json"
    run = {}
    base = None
    if saved_path.exists():
        saved = runs.read_saved(saved_path)
        if saved is None:
            raise ConfigError(f"--eval-only: {saved_path} is unreadable; move it aside to evaluate with the "
                              f"command line's settings")
        run = saved.pop("run", {})
        base = mine_from_dict(saved)
    given = given_settings(args, MineConfig)
    if base is None:
        cfg = mine_from_args(args, ablation=ablation)
    else:   # the saved settings as they are (no preset re-applied), then the flags given
        cfg = validate_mine(base.replace(**given))
    # The run's cell (dataset, variant, seed): from its config.json, else from the flags,
    # which then name one cell; a flag that disagrees with the saved run is an error, not ignored.
    cell = {}
    for key, flag in (("dataset", "datasets"), ("variant", "variants"), ("seed", "seeds")):
        values = getattr(cfg, flag)
        if key in run:
            if flag in given and tuple(given[flag]) != (run[key],):
                raise ConfigError(f"--eval-only: {path} is the run {key}={run[key]!r} (its config.json); drop "
                                  f"--{flag} or give --{flag} {run[key]}")
            cell[key] = run[key]
        elif flag in given and len(values) > 1:
            raise ConfigError(f"--eval-only evaluates one run: give one value of --{flag}, not {list(values)}")
        else:
            cell[key] = values[0]
    dataset_name = cell["dataset"]
    cfg = mine_variant_config(cfg, cell["variant"])
    out = Path(out) if out is not None else path.parent / f"eval_{path.stem}"
    runs.require_writable(out)          # before the evaluation, not after it
    spec = RunSpec(STAGE, dataset_name, cfg.kl_weight, 0.0, int(cell["seed"]), cfg.steps,
                   path.parent, variant=cell["variant"])
    device = resolve_device(cfg.device)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:     # torch raises many types for a file that is not a checkpoint
        raise ConfigError(f"--eval-only: cannot read {path} as a torch checkpoint ({err})") from None
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"--eval-only: {path} holds no state_dict")
    dataset = datasets.load_dataset(dataset_name, source=cfg.source, data_dir=cfg.data_dir, variant=cfg.mpi3d_variant)
    model, _ = build_models(cfg, dataset.channels, spec.seed, device)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ConfigError(f"--eval-only: {path} does not fit a MINE-VAE with these settings "
                          f"(latent_dim={cfg.latent_dim}, num_factors={cfg.num_factors}, ...): "
                          f"{first[1].strip() if len(first) > 1 else first[0]}") from None
    window = window_means(payload["window"], payload["step"], LOG_KEYS) if "window" in payload else None
    tic = time.perf_counter()
    result = evaluate(spec, cfg, dataset, model, device, window, payload.get("step"), wall_time_s=0.0)
    result["row"]["wall_time_s"] = time.perf_counter() - tic
    result["evaluated_file"] = str(path)
    if cfg.figures:
        draw_run_figures(spec, cfg, dataset, model, device, out, result.get("mi"))
    write_csv(out / "results.csv", [result["row"]], COLUMNS)
    write_json(out / METRICS, result)
    return out


# --- command line -----------------------------------------------------------------------
def launcher_stage(cfg: MineConfig, specs: list[RunSpec], argv=None, retry_failed: bool = False):
    return launcher.make_stage(STAGE, "main_mine.py", cfg, mine_root(cfg), specs, run_grid, summarize, argv,
                               retry_failed=retry_failed, preflight=functools.partial(runs.preflight, cfg, specs))


@runs.one_line_errors
def main(argv=None, description: str = "") -> Path:
    parser = runs.Parser(description=description)
    parser.add_argument("--ablation", action="store_true",
                        help=f"run every variant ({', '.join(MINE_VARIANTS)}) and write the comparison table")
    parser.add_argument("--eval-only", metavar="CHECKPOINT", type=Path,
                        help="evaluate a saved checkpoint.pt or weights .pth (metrics and traversal), no training")
    parser.add_argument("--retry-failed", action="store_true", help="retrain runs that failed before")
    add_mine_config_arguments(parser)
    launcher.add_launcher_arguments(parser)
    args = parser.parse_args(argv)
    if args.eval_only is not None:
        tic = time.perf_counter()
        try:
            launcher.check_flags(args)
            out = eval_only(args.eval_only, args, args.ablation, out=args.out)
        except (ConfigError, RuntimeError) as err:
            parser.exit(2, f"{err}\n")
        except datasets.DataError as err:
            parser.exit(2, f"data error: {err}\n")
        row = read_csv(out / "results.csv")[0]
        scores = ", ".join(f"{k}={row[k]:.3f}" for k in ("z_diff", "z_min_var", "irs", "jemmig", "mig",
                                                          "mine_mi_posthoc") if row.get(k) is not None)
        print(f"evaluated {args.eval_only} in {time.perf_counter() - tic:.0f} s: {scores or 'no factor metrics'}; "
              f"results in {out}/")
        return out
    try:
        cfg = mine_from_args(args, ablation=args.ablation)
        resolve_device(cfg.device)
        launcher.check_flags(args)
        root = mine_root(cfg)
        runs.bind_results_dir(cfg, root, MINE_RUN_DEFINING)
    except (ConfigError, RuntimeError) as err:
        parser.exit(2, f"{err}\n")
    specs = mine_specs(cfg)
    if launcher.wanted(args):           # --status, --collect, or a cluster trains the grid
        launcher.dispatch(args, launcher_stage(cfg, specs, argv, retry_failed=args.retry_failed))
        return root
    return runs.train_here(specs, cfg, run_grid, summarize, parser, args.retry_failed,
                           outputs="the ablation table (ablation.txt)")


if __name__ == "__main__":
    sys.exit("run main_mine.py")
