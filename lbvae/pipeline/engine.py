"""The packed engine: P runs of one architecture trained as one model.

Runs that share a dataset and architecture (other seeds, β, λ) form a pack. Every
parameter gets a leading dimension of size P and one Adam step updates the whole pack.
Each run keeps its own initial weights, data order, noise stream, β and λ, and its
own checkpoint files in the single-run format. A single run is a pack of one: the
λβ-VAE has no other training loop (training.Pack plugs this engine into lbvae/pipeline/loop.py, the
one training loop of every family).

Two ways to run one pack step, with the same arithmetic per run:
- ``split``: each run's slice of the stacked parameters goes through ``BetaVAE``'s own
  forward, one run after the other (``torch.unbind``, whose backward writes the P
  gradients into the stacked gradient in one copy). A run then computes exactly what
  it would compute alone. This is the CPU mode: oneDNN's grouped convolutions are
  slower per run than P plain ones (measured here at batch 64: all eight conv layers
  fwd+bwd 102 ms per run alone, 120 ms per run as one grouped conv of P=5).
- ``vmap``: ``torch.func.vmap`` over ``functional_call``: each convolution becomes one
  grouped convolution and each linear layer one batched matmul for the whole pack, so
  a GPU runs a few large kernels instead of P times as many small ones.

Adam is elementwise, so one Adam over the stacked parameters is P independent Adams,
provided the runs share the step count (its bias correction): a pack's runs are always
at the same step.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.func import functional_call, vmap

from losses import (
    SWEPT_WEIGHT,
    factor_discriminator_loss,
    factor_vae_tc,
    lambda_beta_loss,
    permute_dims,
    regularizer,
)
from models import BetaVAE, FactorDiscriminator

LOSS_KEYS = ("total", "recon", "kl", "l2")
MODES = ("split", "vmap")


def default_mode(device: torch.device) -> str:
    return "vmap" if device.type == "cuda" else "split"


def _stacked_like(tensors: list[torch.Tensor], device) -> torch.Tensor:
    """Stack per-run tensors into a new leaf whose every slice is laid out as the run's
    own tensor would be: 4-d conv weights channels_last (NHWC kernels for oneDNN/cuDNN)."""
    first = tensors[0]
    if first.dim() == 4:
        p, (o, i, h, w) = len(tensors), first.shape
        out = torch.empty((p, o, h, w, i), dtype=first.dtype, device=device).permute(0, 1, 4, 2, 3)
    else:
        out = torch.empty((len(tensors), *first.shape), dtype=first.dtype, device=device)
    for k, t in enumerate(tensors):
        out[k].copy_(t)
    return out


class PackedBetaVAE:
    """P BetaVAEs with stacked parameters (named as BetaVAE's, with a leading run dim)."""

    def __init__(self, states: list[dict[str, torch.Tensor]], channels: int, latent_dim: int,
                 device, mode: str | None = None, precision: str = "fp32", compile: bool = False,
                 objective: str = "beta", weights: dict | None = None, dataset_size: int | None = None,
                 discriminators: list[dict[str, torch.Tensor]] | None = None):
        """``objective`` is a name of ``losses.SWEPT_WEIGHT``: its regulariser replaces β·KL, with
        each run's swept weight (β, c_max, λ_od or γ) where the β objective has β, the other
        ``weights`` shared by the pack, and the training set's size for β-TCVAE's
        minibatch-weighted sampling. ``"beta"`` computes exactly what the λβ-VAE always did
        (``losses.lambda_beta_loss``). ``"factor"`` (FactorVAE) needs each run's
        discriminator state (``discriminators``): stacked as the VAEs are, read (not trained)
        by the VAE's loss, and trained by ``discriminator_backward``."""
        if not states:
            raise ValueError("a pack needs at least one run")
        device = torch.device(device)
        self.mode = mode or default_mode(device)
        if self.mode not in MODES:
            raise ValueError(f"engine mode {self.mode!r}: choose from {', '.join(MODES)}")
        self.channels, self.latent_dim, self.device = channels, latent_dim, device
        if objective not in SWEPT_WEIGHT:
            raise ValueError(f"objective {objective!r}: choose from {', '.join(SWEPT_WEIGHT)}")
        self.objective, self.weights, self.dataset_size = objective, dict(weights or {}), dataset_size
        self.step = 0                        # the optimizer step a forward is for (AnnealedVAE's capacity)
        # The module only lends its forward code; the tensors it runs on are the pack's.
        # functional_call swaps a module's parameters while it runs, so each thread needs its own.
        self._local = threading.local()
        self.names = [n for n, _ in self._base().named_parameters()]
        with torch.no_grad():
            self.params = {n: _stacked_like([s[n] for s in states], device).requires_grad_()
                           for n in self.names}
        self.disc_params, self.codes = {}, None
        if objective == "factor":
            if discriminators is None or len(discriminators) != len(states):
                raise ValueError("objective 'factor' needs one discriminator state per run")
            self._disc_base()                # built here: a module's init cannot run inside vmap
            with torch.no_grad():
                self.disc_params = {n: _stacked_like([s[n] for s in discriminators], device).requires_grad_()
                                    for n in discriminators[0]}
        self.bf16 = precision == "bf16"
        run = vmap(self._run_terms) if self.mode == "vmap" else self._run_terms
        self._run = torch.compile(run, dynamic=False) if compile else run
        # Split mode on a CPU: the runs of a pack are independent, so they run side by side
        # on the cores, each single-threaded, rather than one after the other with every
        # small convolution split across the cores (which scales poorly at batch 64).
        # A run's arithmetic depends on its thread count (the order of the weight-gradient
        # sums), and this choice gives every run of a pack of >= cores the same one.
        self.workers, self.threads = 1, torch.get_num_threads()
        if self.mode == "split" and device.type == "cpu" and not compile:   # dynamo is not thread-safe
            self.workers = min(len(states), torch.get_num_threads())
            self.threads = max(1, torch.get_num_threads() // self.workers)
        self._pool = (ThreadPoolExecutor(self.workers, initializer=torch.set_num_threads, initargs=(self.threads,))
                      if self.workers > 1 else None)

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def _base(self) -> BetaVAE:
        if not hasattr(self._local, "base"):
            self._local.base = BetaVAE(self.channels, self.latent_dim).to("meta")
        return self._local.base

    def _disc_base(self) -> FactorDiscriminator:
        if not hasattr(self._local, "disc"):
            self._local.disc = FactorDiscriminator(self.latent_dim).to("meta")
        return self._local.disc

    def _run_terms(self, params: dict, x: torch.Tensor, eps: torch.Tensor, beta, lam, disc=None):
        """One run's loss terms (LOSS_KEYS order) on its batch x (n, C, H, W) in [0, 1]; with a
        discriminator (FactorVAE) also the codes z it was shown."""
        # A fresh autocast per call: the context object keeps state and runs may share threads.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits, mu, logvar = functional_call(self._base(), params, (x,), {"eps": eps})
        # The loss in fp32 whatever the forward ran in: BCE sums 4096-12288 terms per image.
        logits, mu, logvar = logits.float(), mu.float(), logvar.float()
        if self.objective == "beta":
            terms = lambda_beta_loss(logits, x, mu, logvar, beta, lam)
            return torch.stack([terms[k] for k in LOSS_KEYS])
        z = mu + eps * torch.exp(0.5 * logvar)       # the sample the decoder saw (BetaVAE.forward)
        if disc is not None:
            # FactorVAE (Kim & Mnih 2018): VAE loss + γ·TC, TC by the discriminator's density
            # ratio; its weights are the run's but detached: the VAE's step never trains them.
            terms = lambda_beta_loss(logits, x, mu, logvar, 1.0, lam)
            total = terms["total"] + beta * factor_vae_tc(functional_call(self._disc_base(), disc, (z,)))
            return torch.stack([total, terms["recon"], terms["kl"], terms["l2"]]), z.detach()
        terms = lambda_beta_loss(logits, x, mu, logvar, 0.0, lam)
        reg = regularizer(self.objective, mu, logvar, z, step=self.step, dataset_size=self.dataset_size,
                          **{**self.weights, SWEPT_WEIGHT[self.objective]: beta})
        total = terms["recon"] + reg["total"] + lam * terms["l2"]
        return torch.stack([total, terms["recon"], terms["kl"], terms["l2"]])

    def forward_backward(self, x: torch.Tensor, eps: torch.Tensor, beta: torch.Tensor,
                         lam: torch.Tensor, step: int = 0) -> torch.Tensor:
        """Set every parameter's .grad to the gradient of each run's own total loss and
        return the (P, 4) loss terms; x (P, n, C, H, W), eps (P, n, latent_dim), beta (each
        run's swept weight), lam (P,); ``step`` the optimizer step this is for."""
        self.step = step
        disc = {n: p.detach() for n, p in self.disc_params.items()} or None
        if self.mode == "vmap":
            for p in self.params.values():
                p.grad = None                # backward accumulates; this step's gradient only
            out = self._run(self.params, x, eps, beta, lam, *([disc] if disc else []))
            terms, self.codes = out if disc else (out, None)
            terms[:, 0].sum().backward()     # runs are independent: each slice gets its own gradient
            return terms.detach()
        jobs = [(k, x[k], eps[k], beta[k], lam[k], {n: p[k] for n, p in disc.items()} if disc else None)
                for k in range(len(self))]
        done = list(self._pool.map(self._run_backward, jobs)) if self._pool else [self._run_backward(j) for j in jobs]
        for n, p in self.params.items():
            p.grad = _stacked_like([grads[n] for _, grads, _ in done], self.device)
        self.codes = torch.stack([z for _, _, z in done]) if disc else None
        return torch.stack([terms for terms, _, _ in done])

    def _run_backward(self, job) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """Run k's forward and backward on leaf views of its slice of the pack's weights."""
        k, x, eps, beta, lam, disc = job
        leaves = {n: p[k].detach().requires_grad_() for n, p in self.params.items()}
        out = self._run(leaves, x, eps, beta, lam, *([disc] if disc is not None else []))
        terms, z = out if disc is not None else (out, None)
        terms[0].backward()
        return terms.detach(), {n: leaf.grad for n, leaf in leaves.items()}, z

    def discriminator_backward(self, generators: list[torch.Generator]) -> torch.Tensor:
        """FactorVAE: set each run's discriminator gradient for its cross-entropy on the codes
        of the last ``forward_backward`` against the same codes with every latent permuted
        across the batch (``losses.permute_dims``, drawn from the run's generator), as
        disentanglement_lib does; returns the (P,) losses. Run by run on the CPU, so a run
        computes what it would compute alone."""
        losses, grads = [], []
        for k, g in enumerate(generators):
            z = self.codes[k]
            leaves = {n: p[k].detach().requires_grad_() for n, p in self.disc_params.items()}
            logits = functional_call(self._disc_base(), leaves, (torch.cat([z, permute_dims(z, g)]),))
            loss = factor_discriminator_loss(logits[:len(z)], logits[len(z):])
            loss.backward()
            losses.append(loss.detach())
            grads.append({n: leaf.grad for n, leaf in leaves.items()})
        for n, p in self.disc_params.items():
            p.grad = _stacked_like([gr[n] for gr in grads], self.device)
        return torch.stack(losses)

    def member_discriminator(self, k: int) -> dict[str, torch.Tensor]:
        return {n: p[k].detach().clone() for n, p in self.disc_params.items()}

    # --- one run in, one run out: the single-run formats of checkpoints and weights ---
    def member_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        return {n: p[k].detach().clone(memory_format=torch.contiguous_format) for n, p in self.params.items()}

    def member_model(self, k: int) -> BetaVAE:
        model = BetaVAE(self.channels, self.latent_dim).to(self.device, memory_format=torch.channels_last)
        model.load_state_dict(self.member_state_dict(k))
        return model


def member_optimizer_state(optimizer: torch.optim.Adam, k: int) -> dict:
    """Run k's Adam state as the state_dict of an Adam over one BetaVAE's parameters."""
    saved = optimizer.state_dict()
    state = {i: {"step": s["step"].clone(),
                 "exp_avg": s["exp_avg"][k].clone(memory_format=torch.contiguous_format),
                 "exp_avg_sq": s["exp_avg_sq"][k].clone(memory_format=torch.contiguous_format)}
             for i, s in saved["state"].items()}
    return {"state": state, "param_groups": saved["param_groups"]}


def load_member_optimizer_states(optimizer: torch.optim.Adam, states: list[dict]) -> None:
    """Stack per-run Adam state_dicts (all at the same step) into the pack's Adam."""
    if not states[0]["state"]:
        if any(s["state"] for s in states):
            raise ValueError("runs of one pack must be at the same step")
        return
    steps = {float(s["state"][0]["step"]) for s in states}
    if len(steps) != 1:
        raise ValueError(f"runs of one pack must be at the same Adam step, got {sorted(steps)}")
    params = optimizer.param_groups[0]["params"]
    merged = {}
    for i, p in enumerate(params):
        # Adam keeps its step count on the CPU unless capturable; a checkpoint loaded with
        # map_location=cuda would otherwise force a device sync per parameter per step.
        merged[i] = {"step": states[0]["state"][i]["step"].detach().cpu().clone()}
        for key in ("exp_avg", "exp_avg_sq"):
            merged[i][key] = _stacked_like([s["state"][i][key] for s in states], p.device)
    optimizer.load_state_dict({"state": merged, "param_groups": optimizer.state_dict()["param_groups"]})
