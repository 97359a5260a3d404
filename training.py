"""Train and evaluate runs of the λβ-VAE study; both stages share this code path.

Runs of one dataset train together as a pack (engine.py); a single run is a pack of
one. A run is (stage, dataset, β, λ, seed), and its randomness comes only from its
seed, so it trains the same alone or in any pack:
- the initial weights from ``torch.manual_seed(seed)`` (so all β of one seed start
  from the same weights, as in the original code);
- the data order from one permutation of the training images per epoch, drawn from
  ``default_rng([seed, epoch])``: a pure function of the step, so a resumed run reads
  exactly the batches the uninterrupted run would have read;
- the reparameterisation noise from a ``torch.Generator`` whose state is checkpointed.

Every ``checkpoint_interval`` steps each run's whole state (weights, Adam, noise
generator, step, loss window, log) is written atomically to its own ``checkpoint.pt``;
a rerun continues from it.
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
from ground_truth import GroundTruthDataset
from engine import LOSS_KEYS, PackedBetaVAE, load_member_optimizer_states, make_optimizer, member_optimizer_state
from losses import lambda_beta_loss
from models import BetaVAE, to_float
from utils import atomic_write, fmt_number, write_csv, write_json

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


class ImageSource:
    """A dataset's uint8 images by index, handed out as float batches on the device.

    Images travel as uint8 (4x fewer bytes than float) and become floats on the device.
    With ``resident`` the whole dataset is copied to the device once as uint8 (the
    default on a GPU where it takes at most half the free memory: dSprites 3.0 GB,
    Shapes3D 5.9 GB, MPI3D-real 12.7 GB) and batches are gathered there, so a step
    moves only its indices."""

    def __init__(self, dataset: GroundTruthDataset, device, resident: bool | None = None, chunk: int = 8192):
        self.dataset, self.device = dataset, torch.device(device)
        c = dataset.channels
        if resident is None:
            nbytes = len(dataset) * c * 64 * 64
            resident = self.device.type == "cuda" and nbytes <= 0.5 * torch.cuda.mem_get_info(self.device)[0]
        self.images = None
        if resident:
            self.images = torch.empty((len(dataset), c, 64, 64), dtype=torch.uint8, device=self.device)
            for start in tqdm(range(0, len(dataset), chunk), desc=f"{dataset.name} to {self.device}", leave=False,
                              unit="chunk", dynamic_ncols=True):
                idx = np.arange(start, min(start + chunk, len(dataset)))
                self.images[start:start + len(idx)] = torch.from_numpy(dataset.images(idx))

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        """indices (P, n) -> float32 images (P, n, C, 64, 64) in [0, 1], each run's batch
        channels_last (NHWC), the layout the convolutions are fastest in."""
        p, n = indices.shape
        flat = torch.from_numpy(np.ascontiguousarray(indices).reshape(-1))
        if self.images is not None:
            u8 = self.images.index_select(0, flat.to(self.device, non_blocking=True))
        else:
            # Read in the training thread on purpose: a prefetch thread made CPU steps 3x
            # slower on 2 cores (it competes with torch's OpenMP workers).
            u8 = torch.from_numpy(self.dataset.images(flat.numpy())).to(self.device, non_blocking=True)
        c = u8.shape[1]
        out = torch.empty((p, n, 64, 64, c), dtype=torch.float32, device=self.device).permute(0, 1, 4, 2, 3)
        return out.copy_(u8.view(p, n, c, 64, 64)).div_(255.0)


# --- run state ---------------------------------------------------------------------------
def initial_weights(spec: RunSpec, channels: int, latent_dim: int) -> dict[str, torch.Tensor]:
    """A fresh run's weights: torch.manual_seed(seed) then BetaVAE's init (on the CPU, so
    every device starts from the same numbers), or the β run's final weights (λ stage)."""
    torch.manual_seed(spec.seed)      # the same initial weights for every β of one seed
    model = BetaVAE(channels, latent_dim)
    if spec.init_from is not None:
        load_weights(spec.init_from, model, "cpu")
    return model.state_dict()


def load_weights(path: Path, model: BetaVAE, device) -> None:
    """Load a plain state_dict (ours or the original code's) onto any device."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state)


def save_weights(model: BetaVAE, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save(model.state_dict(), f)


def checkpoint_step(spec: RunSpec) -> int:
    """The step a run would resume from (0 without a checkpoint), read without loading
    its tensors: the scheduler packs runs that are at the same step."""
    path = spec.run_dir / CHECKPOINT
    if not path.exists():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])


@dataclass
class RunResult:
    """A run that left its pack: trained to its last step, or failed."""
    spec: RunSpec
    step: int
    window: torch.Tensor            # (loss_window, 4) per-step LOSS_KEYS, a ring buffer
    log: list[dict]
    model: BetaVAE | None = None    # None if the run failed
    failure: RunFailed | None = None

    def window_means(self) -> dict[str, float]:
        return window_means(self.window, self.step, LOSS_KEYS)


def window_means(window: torch.Tensor, step: int, keys) -> dict[str, float]:
    """Mean of each column (named by ``keys``) of a per-step ring buffer over the last
    min(step, len(window)) steps: the train-window losses."""
    filled = min(step, len(window))
    if filled == 0:
        return dict.fromkeys(keys, math.nan)
    return dict(zip(keys, window[:filled].double().mean(0).tolist()))


class Pack:
    """The state of P runs at the same step: stacked weights and Adam (engine.py), and
    per run its noise generator, data order, loss ring buffer and log. Each run is saved
    to, and resumed from, its own checkpoint.pt in the single-run format, so a run can
    resume in any pack, or alone."""

    def __init__(self, specs: list[RunSpec], cfg: Config, channels: int, device, train_indices: np.ndarray,
                 mode: str | None = None):
        self.cfg, self.channels, self.device, self.mode = cfg, channels, torch.device(device), mode
        self.train_indices = train_indices
        payloads = [self._payload(spec) for spec in specs]
        steps = {p["step"] for p in payloads}
        if len(steps) != 1:
            raise ValueError("runs of one pack must be at the same step: " +
                             ", ".join(f"{s.name} at {p['step']}" for s, p in zip(specs, payloads)))
        self._build(specs, payloads, steps.pop())
        saved = [p for p in payloads if "rng_torch" in p]
        if saved:
            restore_global_rng_state(saved[0])

    def _payload(self, spec: RunSpec) -> dict:
        """A run's checkpoint, or the state of a fresh run."""
        path = spec.run_dir / CHECKPOINT
        if path.exists():
            return torch.load(path, map_location=self.device, weights_only=True)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(spec.seed)
        return {"model": initial_weights(spec, self.channels, self.cfg.latent_dim), "optimizer": None,
                "generator": generator.get_state(), "step": 0,
                "window": torch.zeros(self.cfg.loss_window, len(LOSS_KEYS)),
                "interval_sum": torch.zeros(len(LOSS_KEYS)), "log": []}

    def _build(self, specs, payloads, step) -> None:
        cfg, device = self.cfg, self.device
        self.specs, self.step = list(specs), step
        self.model = PackedBetaVAE([p["model"] for p in payloads], self.channels, cfg.latent_dim, device,
                                   mode=self.mode, precision=cfg.precision, compile=cfg.compile)
        self.optimizer = make_optimizer(self.model, cfg.lr, cfg.adam_betas, cfg.adam_eps)
        if payloads[0]["optimizer"] is not None:
            load_member_optimizer_states(self.optimizer, [p["optimizer"] for p in payloads])
        self.generators = []
        for p in payloads:
            g = torch.Generator(device=device)
            g.set_state(p["generator"].cpu())
            self.generators.append(g)
        self.window = torch.stack([p["window"] for p in payloads]).to(device)            # (P, W, 4)
        self.interval_sum = torch.stack([p["interval_sum"] for p in payloads]).to(device)  # (P, 4)
        self.logs = [list(p["log"]) for p in payloads]
        self.orders = [BatchOrder(self.train_indices, cfg.batch_size, s.seed) for s in specs]
        self.beta = torch.tensor([s.beta for s in specs], dtype=torch.float32, device=device)
        self.lam = torch.tensor([s.lam for s in specs], dtype=torch.float32, device=device)

    def __len__(self) -> int:
        return len(self.specs)

    def member_payload(self, k: int) -> dict:
        return {
            "model": self.model.member_state_dict(k), "optimizer": member_optimizer_state(self.optimizer, k),
            "generator": self.generators[k].get_state(), "step": self.step,
            "window": self.window[k].clone(), "interval_sum": self.interval_sum[k].clone(), "log": self.logs[k],
            **global_rng_state(),
        }

    def save(self) -> None:
        for k, spec in enumerate(self.specs):
            with atomic_write(spec.run_dir / CHECKPOINT) as f:
                torch.save(self.member_payload(k), f)

    def keep(self, indices: list[int]) -> None:
        """Continue with these runs only (the others failed or finished)."""
        if indices == list(range(len(self))):
            return
        if not indices:
            self.specs, self.logs, self.generators, self.orders = [], [], [], []
            return
        payloads = [self.member_payload(k) for k in indices]
        self._build([self.specs[k] for k in indices], payloads, self.step)

    def result(self, k: int, failure: RunFailed | None = None) -> RunResult:
        return RunResult(self.specs[k], self.step if failure is None else failure.step, self.window[k].clone(),
                         self.logs[k], model=None if failure else self.model.member_model(k), failure=failure)

    # --- one optimizer step of every run -------------------------------------------------
    def train_step(self, source: ImageSource) -> None:
        x = source.batch(np.stack([order(self.step) for order in self.orders]))
        n = x.shape[1]
        eps = torch.stack([torch.randn((n, self.cfg.latent_dim), generator=g, device=self.device)
                           for g in self.generators])
        terms = self.model.forward_backward(x, eps, self.beta, self.lam)          # (P, 4), grads set
        self.optimizer.step()
        # Keep losses on the device: a .item() per step would sync the GPU every step.
        rows = terms.detach().float()
        self.window[:, self.step % self.window.shape[1]] = rows
        self.interval_sum += rows
        self.step += 1

    def failures(self) -> dict[int, RunFailed]:
        """Runs whose losses since the last check or whose weights are NaN/Inf."""
        bad_loss = ~torch.isfinite(self.interval_sum).all(1)
        bad_param = torch.zeros_like(bad_loss)
        for p in self.model.parameters():
            bad_param |= ~torch.isfinite(p.detach()).flatten(1).all(1)
        bad_loss, bad_param = bad_loss.tolist(), bad_param.tolist()     # one sync for the pack
        out = {}
        last = self.logs[0][-1]["step"] if self.logs and self.logs[0] else 0
        w = self.window.shape[1]
        for k in range(len(self)):
            if bad_loss[k]:
                recent = range(max(last, self.step - w), self.step)
                first = next((s for s in recent if not bool(torch.isfinite(self.window[k, s % w]).all())), last)
                out[k] = RunFailed(first + 1, f"non-finite loss at step {first + 1} (checked at step {self.step})")
            elif bad_param[k]:
                names = [n for n, p in self.model.params.items() if not bool(torch.isfinite(p[k]).all())]
                out[k] = RunFailed(self.step, f"non-finite parameters {', '.join(names[:3])} at step {self.step}")
        return out

    def log_interval(self, elapsed: float, steps_done: int) -> None:
        """Append a row of interval-mean losses to every run's log and train_log.csv."""
        n = self.step - (self.logs[0][-1]["step"] if self.logs[0] else 0)
        means = (self.interval_sum / n).tolist()
        self.interval_sum.zero_()
        rate = steps_done * self.cfg.batch_size / max(elapsed, 1e-9)
        for k, spec in enumerate(self.specs):
            self.logs[k].append({"step": self.step, **{f"train_{key}": v for key, v in zip(LOSS_KEYS, means[k])},
                                 "images_per_s_per_run": rate, "pack_size": len(self)})
            write_csv(spec.run_dir / "train_log.csv", self.logs[k])


def global_rng_state() -> dict:
    """The global torch, NumPy and Python RNG states, in types ``torch.load(weights_only=True)``
    accepts. Training draws only from per-run generators; these are checkpointed so that
    user code drawing from the global ones (augmentations, say) resumes too."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"rng_torch": torch.get_rng_state(),
            "rng_numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
            "rng_python": random.getstate()}


def restore_global_rng_state(payload: dict) -> None:
    torch.set_rng_state(payload["rng_torch"].cpu())
    name, keys, pos, has_gauss, gauss = payload["rng_numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(payload["rng_python"])


# --- training ---------------------------------------------------------------------------
def train_pack(specs: list[RunSpec], cfg: Config, dataset: GroundTruthDataset, device,
               source: ImageSource | None = None, heartbeat=lambda: None, mode: str | None = None, position: int = 1,
               on_result=lambda result: None) -> list[RunResult]:
    """Train runs of one dataset together to their last step, each resuming from its own
    checkpoint. All must be at the same step with the same step target. A run whose
    loss or weights turn NaN/Inf leaves the pack as failed at the next check (every log
    and before every checkpoint, so a diverged state is never saved); the others go on.
    ``heartbeat`` is called at every checkpoint (it refreshes the runs' locks);
    ``on_result`` gets each RunResult as its run leaves the pack."""
    targets = {s.steps for s in specs}
    if len(targets) != 1:
        raise ValueError(f"runs of one pack must share their step target, got {sorted(targets)}")
    steps = targets.pop()
    train_idx, _ = heldout_split(len(dataset), cfg.heldout_fraction)
    source = source or ImageSource(dataset, device)
    pack = Pack(specs, cfg, dataset.channels, device, train_idx, mode=mode)
    results = []

    def leave(k_failures: dict[int, RunFailed]):
        for k, failure in k_failures.items():
            results.append(pack.result(k, failure))
            on_result(results[-1])
        pack.keep([k for k in range(len(pack)) if k not in k_failures])

    name = specs[0].name if len(specs) == 1 else f"{specs[0].dataset} pack of {len(specs)}"
    bar = tqdm(total=steps, initial=pack.step, desc=name, position=position, leave=False, unit="step",
               dynamic_ncols=True)
    tic, tic_step = time.perf_counter(), pack.step
    while len(pack) and pack.step < steps:
        pack.train_step(source)
        bar.update()
        at_log = pack.step % cfg.log_interval == 0 or pack.step == steps
        at_checkpoint = pack.step % cfg.checkpoint_interval == 0 or pack.step == steps
        if at_log or at_checkpoint:
            leave(pack.failures())
            if not len(pack):
                break
        if at_log:
            pack.log_interval(time.perf_counter() - tic, pack.step - tic_step)
            tic, tic_step = time.perf_counter(), pack.step
        if at_checkpoint:
            pack.save()
            heartbeat()
    bar.close()
    if len(pack):           # also when resumed at the last step: nothing left to train
        for k in range(len(pack)):
            results.append(pack.result(k))
            on_result(results[-1])
    return results


def train(spec: RunSpec, cfg: Config, dataset: GroundTruthDataset, device, **kwargs) -> RunResult:
    """One run: a pack of one. Raises RunFailed if it diverged."""
    result = train_pack([spec], cfg, dataset, device, **kwargs)[0]
    if result.failure is not None:
        raise result.failure
    return result


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


def evaluate(spec: RunSpec, cfg: Config, dataset: GroundTruthDataset, state: RunResult, device,
             wall_time_s: float) -> dict:
    """Metrics of a trained run: the contents of its metrics.json (``row`` is its
    results-table row). The caller writes the file last, as the run's 'done' marker."""
    model = state.model
    points = metric_indices(len(dataset), spec.seed, cfg.metric_train_points, cfg.metric_test_points)
    codes = {k: encode(model, dataset, points[k], device) for k in ("train", "test")}
    scores = metrics.study_metrics(dataset.index_to_factors(points["train"]), codes["train"],
                                   dataset.index_to_factors(points["test"]), codes["test"],
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
