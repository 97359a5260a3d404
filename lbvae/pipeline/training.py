"""Training of the λβ-VAE: runs of one dataset trained together as a pack (lbvae/pipeline/engine.py).

A single run is a pack of one; this is the only training loop of the λβ study. A run
(``runs.RunSpec``: stage, dataset, β, λ, seed) draws its randomness only from its seed,
so it trains the same alone or in any pack:
- the initial weights from ``torch.manual_seed(seed)`` (so all β of one seed start
  from the same weights, as in the original code);
- the data order from ``runs.BatchOrder``: one permutation of the training images per
  epoch drawn from ``default_rng([seed, epoch])``, a pure function of the step, so a
  resumed run reads exactly the batches the uninterrupted run would have read;
- the reparameterisation noise from a ``torch.Generator`` whose state is checkpointed.

Every ``checkpoint_interval`` steps each run's whole state (weights, Adam, noise
generator, step, loss window, log) is written atomically to its own ``checkpoint.pt``
in the single-run format (a BetaVAE state_dict and one BetaVAE's Adam state); a rerun
continues from it, in any pack.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from config import Config
from lbvae.data.ground_truth import IMAGE_SIZE, GroundTruthDataset
from lbvae.pipeline.engine import LOSS_KEYS, PackedBetaVAE, load_member_optimizer_states, member_optimizer_state
from lbvae.pipeline.evaluation import heldout_split
from lbvae.pipeline.loop import LossRecord, train_runs
from lbvae.pipeline.runs import BatchOrder, RunFailed, RunSpec, window_means
from models import BetaVAE, FactorDiscriminator
from utils import atomic_write


# --- data ------------------------------------------------------------------------------
class ImageFeed:
    """A dataset's uint8 images by index, handed out as float batches on the device.

    Images travel as uint8 (4x fewer bytes than float) and become floats on the device.
    With ``resident`` the whole dataset is copied to the device once as uint8 (the
    default on a GPU where it takes at most half the free memory: dSprites 3.0 GB,
    Shapes3D 5.9 GB, MPI3D-real 12.7 GB) and batches are gathered there, so a step
    moves only its indices."""

    def __init__(self, dataset: GroundTruthDataset, device, resident: bool | None = None, chunk: int = 8192):
        self.dataset, self.device = dataset, torch.device(device)
        c, s = dataset.channels, IMAGE_SIZE
        if resident is None:
            nbytes = len(dataset) * c * s * s
            resident = self.device.type == "cuda" and nbytes <= 0.5 * torch.cuda.mem_get_info(self.device)[0]
        self.images = None
        if resident:
            self.images = torch.empty((len(dataset), c, s, s), dtype=torch.uint8, device=self.device)
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
        c, s = u8.shape[1], IMAGE_SIZE
        out = torch.empty((p, n, s, s, c), dtype=torch.float32, device=self.device).permute(0, 1, 4, 2, 3)
        return out.copy_(u8.view(p, n, c, s, s)).div_(255.0)


# --- run state ---------------------------------------------------------------------------
def initial_weights(spec: RunSpec, channels: int, latent_dim: int) -> dict[str, torch.Tensor]:
    """A fresh run's weights: torch.manual_seed(seed) then BetaVAE's init (on the CPU, so
    every device starts from the same numbers), or the β run's final weights (λ stage)."""
    torch.manual_seed(spec.seed)      # the same initial weights for every β of one seed
    model = BetaVAE(channels, latent_dim)
    if spec.init_from is not None:
        load_weights(spec.init_from, model, "cpu")
    return model.state_dict()


def discriminator_path(weights_path: Path) -> Path:
    """FactorVAE: the final discriminator beside the run's final weights (<weights>_discriminator.pth),
    which its λ runs continue as they continue the VAE."""
    return weights_path.with_name(weights_path.stem + "_discriminator.pth")


def initial_discriminator(spec: RunSpec, channels: int, latent_dim: int) -> dict[str, torch.Tensor]:
    """A fresh FactorVAE run's discriminator: seeded by the run's seed after the VAE's draws
    (so the VAE starts from the weights every objective's runs of that seed share), or the
    discriminator of the β-stage run a λ run continues (study.check_parents checks it is there)."""
    if spec.init_from is not None:
        return torch.load(discriminator_path(spec.init_from), map_location="cpu", weights_only=True)
    torch.manual_seed(spec.seed)
    BetaVAE(channels, latent_dim)           # the VAE's draws first: the discriminator's come after
    return FactorDiscriminator(latent_dim).state_dict()


def load_weights(path: Path, model: BetaVAE, device) -> None:
    """Load a plain state_dict (ours or the original code's) onto any device."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state)


def save_weights(model: BetaVAE, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save(model.state_dict(), f)


@dataclass
class RunResult:
    """A run that left its pack: trained to its last step, or failed."""
    spec: RunSpec
    step: int
    window: torch.Tensor            # (loss_window, 4) per-step LOSS_KEYS, a ring buffer
    log: list[dict]
    model: BetaVAE | None = None    # None if the run failed
    failure: RunFailed | None = None
    extra_weights: dict = field(default_factory=dict)   # other final weights, by path (FactorVAE's discriminator)

    def window_means(self) -> dict[str, float]:
        return window_means(self.window, self.step, LOSS_KEYS)


def objective_weights(cfg: Config) -> dict:
    """The fixed weights of the objective (losses.regularizer's names); the swept one is each run's."""
    return {"annealed": {"gamma": cfg.annealed_gamma, "iteration_threshold": cfg.iteration_threshold},
            "dip_i": {"lambda_d_factor": cfg.lambda_d_factor},
            "dip_ii": {"lambda_d_factor": cfg.lambda_d_factor}}.get(cfg.objective, {})


class Pack:
    """The state of P runs at the same step: stacked weights and Adam (lbvae/pipeline/engine.py), and
    per run its noise generator, data order and loss record. Each run is saved to, and
    resumed from, its own checkpoint.pt in the single-run format, so a run can resume in
    any pack, or alone. The λβ family's trainee for ``loop.train_runs``."""

    def __init__(self, specs: list[RunSpec], cfg: Config, channels: int, device, train_indices: np.ndarray,
                 feed: ImageFeed | None = None, mode: str | None = None):
        self.cfg, self.channels, self.device, self.mode = cfg, channels, torch.device(device), mode
        self.factor = cfg.objective == "factor"
        self.train_indices, self.feed = train_indices, feed
        payloads = [self._payload(spec) for spec in specs]
        steps = {p["step"] for p in payloads}
        if len(steps) != 1:
            raise ValueError("runs of one pack must be at the same step: " +
                             ", ".join(f"{s.name} at {p['step']}" for s, p in zip(specs, payloads)))
        self._build(specs, payloads, steps.pop())

    def _payload(self, spec: RunSpec) -> dict:
        """A run's checkpoint, or the state of a fresh run."""
        path = spec.checkpoint_path
        if path.exists():
            return torch.load(path, map_location=self.device, weights_only=True)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(spec.seed)
        factor = ({"discriminator": initial_discriminator(spec, self.channels, self.cfg.latent_dim),
                   "disc_optimizer": None} if self.factor else {})
        return {"model": initial_weights(spec, self.channels, self.cfg.latent_dim), "optimizer": None,
                "generator": generator.get_state(), "step": 0, **factor,
                **LossRecord.fresh(LOSS_KEYS, self.cfg.loss_window, spec.steps)}

    def _build(self, specs, payloads, step) -> None:
        cfg, device = self.cfg, self.device
        self.specs, self.step = list(specs), step
        self.model = PackedBetaVAE([p["model"] for p in payloads], self.channels, cfg.latent_dim, device,
                                   mode=self.mode, precision=cfg.precision, compile=cfg.compile,
                                   objective=cfg.objective, weights=objective_weights(cfg),
                                   dataset_size=len(self.train_indices),
                                   discriminators=[p["discriminator"] for p in payloads] if self.factor else None)
        # A λ run continues its β-stage run, so a schedule in the objective (AnnealedVAE's
        # capacity) goes on from where that run ended instead of starting again at 0.
        self.schedule_offset = cfg.steps if specs[0].stage == "lambda" else 0
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.adam_betas,
                                          eps=cfg.adam_eps)
        if payloads[0]["optimizer"] is not None:
            load_member_optimizer_states(self.optimizer, [p["optimizer"] for p in payloads])
        if self.factor:
            # The discriminator's own Adam (Kim & Mnih 2018: lr 1e-4, betas (0.5, 0.9)).
            self.disc_optimizer = torch.optim.Adam(list(self.model.disc_params.values()), lr=cfg.discriminator_lr,
                                                   betas=cfg.discriminator_adam_betas)
            if payloads[0]["disc_optimizer"] is not None:
                load_member_optimizer_states(self.disc_optimizer, [p["disc_optimizer"] for p in payloads])
        self.generators = []
        for p in payloads:
            g = torch.Generator(device=device)
            g.set_state(p["generator"].cpu())
            self.generators.append(g)
        self.record = LossRecord(LOSS_KEYS, payloads, device)
        self.orders = [BatchOrder(self.train_indices, cfg.batch_size, s.seed) for s in specs]
        self.beta = torch.tensor([s.beta for s in specs], dtype=torch.float32, device=device)
        self.lam = torch.tensor([s.lam for s in specs], dtype=torch.float32, device=device)

    def __len__(self) -> int:
        return len(self.specs)

    def member_payload(self, k: int) -> dict:
        factor = ({"discriminator": self.model.member_discriminator(k),
                   "disc_optimizer": member_optimizer_state(self.disc_optimizer, k)} if self.factor else {})
        return {"model": self.model.member_state_dict(k), "optimizer": member_optimizer_state(self.optimizer, k),
                "generator": self.generators[k].get_state(), "step": self.step, **factor, **self.record.member(k)}

    def save(self) -> None:
        for k, spec in enumerate(self.specs):
            with atomic_write(spec.checkpoint_path) as f:
                torch.save(self.member_payload(k), f)

    def keep(self, indices: list[int]) -> None:
        """Continue with these runs only (the others failed or finished)."""
        if indices == list(range(len(self))):
            return
        if not indices:
            self.specs, self.generators, self.orders = [], [], []
            return
        payloads = [self.member_payload(k) for k in indices]
        self._build([self.specs[k] for k in indices], payloads, self.step)

    def result(self, k: int, failure: RunFailed | None = None) -> RunResult:
        extra = ({discriminator_path(self.specs[k].weights_path): self.model.member_discriminator(k)}
                 if self.factor and failure is None else {})
        return RunResult(self.specs[k], self.step if failure is None else failure.step,
                         self.record.window[k].clone(), self.record.logs[k],
                         model=None if failure else self.model.member_model(k), failure=failure, extra_weights=extra)

    # --- one optimizer step of every run -------------------------------------------------
    def train_step(self, feed: ImageFeed | None = None) -> None:
        x = (feed or self.feed).batch(np.stack([order(self.step) for order in self.orders]))
        n = x.shape[1]
        eps = torch.stack([torch.randn((n, self.cfg.latent_dim), generator=g, device=self.device)
                           for g in self.generators])
        terms = self.model.forward_backward(x, eps, self.beta, self.lam,                # (P, 4), grads set
                                            self.schedule_offset + self.step)
        self.optimizer.step()
        if self.factor:
            # After the VAE's step, on the codes it was shown (disentanglement_lib's order).
            self.model.discriminator_backward(self.generators)
            self.disc_optimizer.step()
        self.record.add(terms, self.step)
        self.step += 1

    def failures(self) -> dict[int, RunFailed]:
        """Runs whose losses since the last check or whose weights are NaN/Inf."""
        out = self.record.nonfinite(self.step)
        bad_param = torch.zeros(len(self), dtype=torch.bool, device=self.device)
        for p in self.model.parameters():
            bad_param |= ~torch.isfinite(p.detach()).flatten(1).all(1)
        for k in (k for k, bad in enumerate(bad_param.tolist()) if bad and k not in out):
            names = [n for n, p in self.model.params.items() if not bool(torch.isfinite(p[k]).all())]
            out[k] = RunFailed(self.step, f"non-finite parameters {', '.join(names[:3])} at step {self.step}")
        return out

    def log_row(self, k: int, rate: float) -> dict:
        return {"images_per_s_per_run": rate, "pack_size": len(self)}


# --- training ---------------------------------------------------------------------------
def train_pack(specs: list[RunSpec], cfg: Config, dataset: GroundTruthDataset, device,
               feed: ImageFeed | None = None, heartbeat=lambda: None, mode: str | None = None,
               position: int = 1) -> Iterator[RunResult]:
    """Train runs of one dataset together to their last step, each resuming from its own
    checkpoint (``loop.train_runs``); yields each run's RunResult as it leaves the pack.
    All must be at the same step with the same step target."""
    targets = {s.steps for s in specs}
    if len(targets) != 1:
        raise ValueError(f"runs of one pack must share their step target, got {sorted(targets)}")
    pack = new_pack(specs, cfg, dataset, device, feed, mode)
    yield from train_runs(pack, targets.pop(), cfg, heartbeat=heartbeat, position=position)


def new_pack(specs: list[RunSpec], cfg: Config, dataset: GroundTruthDataset, device, feed: ImageFeed | None = None,
             mode: str | None = None) -> Pack:
    """The runs as one Pack at their checkpoints, reading the dataset's training images."""
    train_idx, _ = heldout_split(len(dataset), cfg.heldout_fraction)
    return Pack(specs, cfg, dataset.channels, device, train_idx, feed or ImageFeed(dataset, device), mode=mode)


def train(spec: RunSpec, cfg: Config, dataset: GroundTruthDataset, device, **kwargs) -> RunResult:
    """One run: a pack of one. Raises RunFailed if it diverged."""
    result = next(train_pack([spec], cfg, dataset, device, **kwargs))
    if result.failure is not None:
        raise result.failure
    return result
