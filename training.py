"""Train and evaluate one run of the λβ-VAE study; both stages share this code path.

A run is (stage, dataset, β, λ, seed). Its randomness comes only from its seed:
- the initial weights from ``torch.manual_seed(seed)`` (so all β of one seed start
  from the same weights, as in the original code);
- the data order from one permutation of the training images per epoch, drawn from
  ``default_rng([seed, epoch])``: a pure function of the step, so a resumed run reads
  exactly the batches the uninterrupted run would have read;
- the reparameterisation noise from a ``torch.Generator`` whose state is checkpointed.

Every ``checkpoint_interval`` steps the whole run state (weights, Adam, noise
generator, step, loss window, log) is written atomically to ``checkpoint.pt``; a
rerun continues from it.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import metrics
from config import Config
from datasets import GroundTruthDataset
from losses import lambda_beta_loss
from models import BetaVAE, to_float
from utils import atomic_write, fmt_number, write_csv, write_json

LOSS_KEYS = ("total", "recon", "kl", "l2")
HELDOUT_SEED = 20260209        # fixed for every run, so held-out NLLs compare across seeds
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
FAILED = "failed.json"


class RunFailed(RuntimeError):
    """Training diverged (NaN/Inf); the run is marked failed and the sweep goes on."""

    def __init__(self, step: int, reason: str):
        super().__init__(reason)
        self.step = step


@dataclass(frozen=True)
class RunSpec:
    stage: str                      # "beta" or "lambda"
    dataset: str
    beta: float
    lam: float
    seed: int
    steps: int
    run_dir: Path
    init_from: Path | None = None   # λ stage: the final weights of the β run it continues

    @property
    def name(self) -> str:
        lam = f" λ={fmt_number(self.lam)}" if self.stage == "lambda" else ""
        return f"{self.dataset} β={fmt_number(self.beta)}{lam} seed={self.seed}"

    @property
    def weights_path(self) -> Path:
        """Plain state_dict named as the original code named its checkpoints."""
        b, s = fmt_number(self.beta), self.seed
        if self.stage == "beta":
            return self.run_dir / f"betavae_beta_{b}_seed_{s}.pth"
        return self.run_dir / f"lambda_betavae_beta_{b}_lambda_{fmt_number(self.lam)}_seed_{s}.pth"

    def is_done(self) -> bool:
        return (self.run_dir / METRICS).exists()


# --- data ------------------------------------------------------------------------------
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


class BatchOrder:
    """Image indices of each step's batch: the concatenation of one fresh permutation of
    the training images per epoch (``default_rng([seed, epoch])``), cut into batches."""

    def __init__(self, train_indices: np.ndarray, batch_size: int, seed: int):
        self.train_indices, self.batch_size, self.seed = train_indices, batch_size, seed
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch, self._perm = epoch, self.train_indices[rng.permutation(len(self.train_indices))]
        return self._perm

    def __call__(self, step: int) -> np.ndarray:
        n = len(self.train_indices)
        start, parts, need = step * self.batch_size, [], self.batch_size
        while need:
            epoch, offset = divmod(start, n)
            take = min(need, n - offset)
            parts.append(self._permutation(epoch)[offset:offset + take])
            start, need = start + take, need - take
        return np.concatenate(parts)


def batches(dataset: GroundTruthDataset, order: BatchOrder, start: int, stop: int, device):
    """uint8 batches of steps start..stop-1 on the device, converted to float there.

    Read in the training thread on purpose: a prefetch thread made CPU steps 3x slower
    on 2 cores (it competes with torch's OpenMP workers), and a stand-in batch renders
    in ~2 ms."""
    for step in range(start, stop):
        batch = torch.from_numpy(dataset.images(order(step)))
        yield batch.to(device, non_blocking=device.type == "cuda")


# --- model state ------------------------------------------------------------------------
def new_model(channels: int, cfg: Config, seed: int, device) -> BetaVAE:
    torch.manual_seed(seed)      # the same initial weights for every β of one seed
    model = BetaVAE(channels, cfg.latent_dim)
    # NHWC convolutions are 1.5-3x faster on CPU (oneDNN) and on recent GPUs.
    return model.to(device=device, memory_format=torch.channels_last)


def load_weights(path: Path, model: BetaVAE, device) -> None:
    """Load a plain state_dict (ours or the original code's) onto any device."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state)


def save_weights(model: BetaVAE, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save(model.state_dict(), f)


def make_optimizer(model, cfg: Config) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps)


@dataclass
class RunState:
    """Everything a run needs to continue bit-for-bit; saved whole in every checkpoint."""
    model: BetaVAE
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int
    window: torch.Tensor           # (loss_window, 4) per-step LOSS_KEYS, a ring buffer on the device
    interval_sum: torch.Tensor     # (4,) sums since the last log row
    log: list[dict]

    def save(self, path: Path) -> None:
        payload = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(), "step": self.step,
            "window": self.window, "interval_sum": self.interval_sum, "log": self.log,
            # Training draws only from ``generator`` and the step; the global states are
            # kept so that user code drawing from them (augmentations, say) resumes too.
            "rng_torch": torch.get_rng_state(), "rng_numpy": _numpy_state(),
            "rng_python": random.getstate(),
        }
        with atomic_write(path) as f:
            torch.save(payload, f)

    def load(self, path: Path, device) -> None:
        payload = torch.load(path, map_location=device, weights_only=True)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.generator.set_state(payload["generator"].cpu())
        self.step, self.log = payload["step"], payload["log"]
        self.window.copy_(payload["window"])
        self.interval_sum.copy_(payload["interval_sum"])
        torch.set_rng_state(payload["rng_torch"].cpu())
        name, keys, pos, has_gauss, gauss = payload["rng_numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(payload["rng_python"])

    def window_means(self) -> dict[str, float]:
        """Mean of each loss term over the last min(step, loss_window) steps."""
        filled = min(self.step, len(self.window))
        if filled == 0:
            return {k: math.nan for k in LOSS_KEYS}
        means = self.window[:filled].double().mean(0).tolist()
        return dict(zip(LOSS_KEYS, means))


def _numpy_state():
    """The global NumPy RNG state in types that ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)


def init_state(spec: RunSpec, cfg: Config, channels: int, device) -> RunState:
    model = new_model(channels, cfg, spec.seed, device)
    if spec.init_from is not None:
        load_weights(spec.init_from, model, device)
    generator = torch.Generator(device=device)
    generator.manual_seed(spec.seed)
    window = torch.zeros(cfg.loss_window, len(LOSS_KEYS), device=device)
    return RunState(model, make_optimizer(model, cfg), generator, 0, window,
                    torch.zeros(len(LOSS_KEYS), device=device), [])


# --- training ---------------------------------------------------------------------------
def train(spec: RunSpec, cfg: Config, dataset: GroundTruthDataset, device, position: int = 1,
          heartbeat=lambda: None) -> RunState:
    """Train one run to ``spec.steps``, resuming from its checkpoint if there is one.
    ``heartbeat`` is called at every checkpoint (it refreshes the run's lock)."""
    state = init_state(spec, cfg, dataset.channels, device)
    checkpoint = spec.run_dir / CHECKPOINT
    if checkpoint.exists():
        state.load(checkpoint, device)
    train_idx, _ = heldout_split(len(dataset), cfg.heldout_fraction)
    order = BatchOrder(train_idx, cfg.batch_size, spec.seed)
    model, optimizer = state.model.train(), state.optimizer
    tic, tic_step = time.perf_counter(), state.step

    bar = tqdm(total=spec.steps, initial=state.step, desc=spec.name, position=position,
               leave=False, unit="step", dynamic_ncols=True)
    for batch in batches(dataset, order, state.step, spec.steps, device):
        x = to_float(batch).contiguous(memory_format=torch.channels_last)
        logits, mu, logvar = model(x, generator=state.generator)
        terms = lambda_beta_loss(logits, x, mu, logvar, spec.beta, spec.lam)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()

        # Keep losses on the device: a .item() per step would sync the GPU every step.
        row = torch.stack([terms[k].detach() for k in LOSS_KEYS])
        state.window[state.step % len(state.window)] = row
        state.interval_sum += row
        state.step += 1
        bar.update()

        if state.step % cfg.log_interval == 0 or state.step == spec.steps:
            _log(state, spec, cfg, tic, tic_step)
            tic, tic_step = time.perf_counter(), state.step
        if state.step % cfg.checkpoint_interval == 0 or state.step == spec.steps:
            _check_finite(state)         # a checkpoint is never written from a diverged state
            state.save(checkpoint)
            heartbeat()
    bar.close()
    return state


def _check_finite(state: RunState) -> None:
    """Raise RunFailed if a loss since the last check or a parameter is NaN/Inf."""
    last = state.log[-1]["step"] if state.log else 0
    if not bool(torch.isfinite(state.interval_sum).all()):
        recent = range(max(last, state.step - len(state.window)), state.step)
        first = next((s for s in recent if not bool(torch.isfinite(state.window[s % len(state.window)]).all())),
                     last)
        raise RunFailed(first + 1, f"non-finite loss at step {first + 1} (checked at step {state.step})")
    bad = [n for n, p in state.model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise RunFailed(state.step, f"non-finite parameters {', '.join(bad[:3])} at step {state.step}")


def _log(state: RunState, spec: RunSpec, cfg: Config, tic: float, tic_step: int) -> None:
    """Append a row of interval-mean losses to the run's train_log.csv; stop on NaN/Inf."""
    _check_finite(state)
    n = state.step - (state.log[-1]["step"] if state.log else 0)
    means = (state.interval_sum / n).tolist()
    state.interval_sum.zero_()
    elapsed = time.perf_counter() - tic
    state.log.append({"step": state.step, **{f"train_{k}": v for k, v in zip(LOSS_KEYS, means)},
                      "images_per_s": (state.step - tic_step) * cfg.batch_size / max(elapsed, 1e-9)})
    write_csv(spec.run_dir / "train_log.csv", state.log)


# --- evaluation -------------------------------------------------------------------------
@torch.no_grad()
def encode(model: BetaVAE, dataset: GroundTruthDataset, indices: np.ndarray, device,
           batch_size: int = 128) -> np.ndarray:
    """Encoder means (n, latent_dim) as float32 NumPy, the codes every metric reads.
    float32 as in the original code: histogram bin edges are computed in the codes'
    precision, and float64 would move the points that lie on an edge."""
    model.eval()
    out = []
    for start in range(0, len(indices), batch_size):
        x = to_float(torch.from_numpy(dataset.images(indices[start:start + batch_size])).to(device))
        out.append(model.encoder(x.contiguous(memory_format=torch.channels_last))[0].float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.latent_dim), np.float32)


@torch.no_grad()
def heldout_nll(model: BetaVAE, dataset: GroundTruthDataset, indices: np.ndarray, device, seed: int,
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
        x = to_float(torch.from_numpy(dataset.images(indices[start:start + batch_size])).to(device))
        x = x.contiguous(memory_format=torch.channels_last)
        logits, mu, logvar = model(x, generator=generator)
        terms = lambda_beta_loss(logits, x, mu, logvar, beta=1.0)
        recon += terms["recon"].item() * len(x)
        kl += terms["kl"].item() * len(x)
        baseline += F.binary_cross_entropy_with_logits(mean_logits.expand_as(x), x, reduction="sum").item()
    n = len(indices)
    return dict(zip(keys, ((recon + kl) / n, recon / n, kl / n, baseline / n)))


def evaluate(spec: RunSpec, cfg: Config, dataset: GroundTruthDataset, state: RunState, device,
             wall_time_s: float) -> dict:
    """Metrics of a trained run: the contents of its metrics.json (``row`` is its
    results-table row). The caller writes the file last, as the run's 'done' marker."""
    model = state.model
    points = metric_indices(len(dataset), spec.seed, cfg.metric_train_points, cfg.metric_test_points)
    codes = {k: encode(model, dataset, points[k], device) for k in ("train", "test")}
    scores = metrics.study_metrics(dataset.factors(points["train"]), codes["train"],
                                   dataset.factors(points["test"]), codes["test"],
                                   num_bins=cfg.num_bins, seed=spec.seed)
    _, held = heldout_split(len(dataset), cfg.heldout_fraction)
    held = np.setdiff1d(held, np.concatenate([points["train"], points["test"]]))[:cfg.heldout_eval_points]
    window = state.window_means()
    row = {
        "stage": spec.stage, "dataset": spec.dataset, "source": cfg.source, "beta": spec.beta,
        "lambda": spec.lam, "seed": spec.seed, "steps": state.step, "status": "done",
        # The paper's "NLL": mean training BCE over the last loss_window steps (not held out).
        "train_window_nll": window["recon"], "train_window_kl": window["kl"],
        "train_window_l2": window["l2"], "train_window_total": window["total"],
        **heldout_nll(model, dataset, held, device, spec.seed,
                      mean_image=to_float(torch.from_numpy(dataset.images(points["train"][:2000])).to(device)).mean(0)),
        "heldout_images": len(held),
        "mig": scores["mig"], "sap": scores["sap"], "i_m": scores["i_m"],
        "i_m_normalized": scores["i_m_normalized"], "wall_time_s": wall_time_s,
    }
    return {
        "row": row, "mi": scores["mi"], "factor_names": dataset.factor_names,
        "metric_settings": scores["settings"],
        "definitions": {
            "train_window_nll": f"mean training BCE (nats/image, summed over pixels) over the last "
                                f"{min(cfg.loss_window, state.step)} steps; a train-window loss, not held out",
            "heldout_mean_image_nll": "BCE of the same held-out images under the per-pixel mean of "
                                      "2,000 training images (a model that ignores its input)",
            "heldout_neg_elbo": f"negative ELBO (β=1, one sample) in nats/image on {len(held)} images "
                                f"never trained on (heldout_fraction={cfg.heldout_fraction})",
            "i_m": "max-weight one-to-one factor-latent matching of MI, nats (unnormalised)",
            "i_m_normalized": "i_m divided by the sum of factor entropies",
        },
    }


def mark_failed(spec: RunSpec, step: int, reason: str) -> dict:
    row = {"stage": spec.stage, "dataset": spec.dataset, "beta": spec.beta, "lambda": spec.lam,
           "seed": spec.seed, "steps": step, "status": "failed", "reason": reason}
    write_json(spec.run_dir / FAILED, row)
    return row
