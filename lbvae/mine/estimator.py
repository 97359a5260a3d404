"""Mutual Information Neural Estimation (MINE), as a reusable module.

Belghazi, Baratin, Rajeswar, Ozair, Bengio, Courville & Hjelm, "Mutual Information
Neural Estimation", ICML 2018. For random variables X, Z with joint P and product of
marginals Q = P_X ⊗ P_Z, the Donsker–Varadhan (DV) representation gives, for any
statistics network T,

    I(X; Z) >= E_P[T(x, z)] - log E_Q[exp T(x, z)]                      (DV bound)

and MINE maximises the right-hand side over T's parameters θ. On a minibatch, samples
of P are the pairs (x_i, z_i); samples of Q are obtained by shuffling z within the
batch (pairs (x_i, z_π(i))), as in the paper's Algorithm 1.

The minibatch gradient of the log-denominator, ∇ log mean_i e^{T_i} =
mean_i(e^{T_i} ∇T_i) / mean_i e^{T_i}, is biased because the denominator is a
minibatch mean. The paper's correction (§3.2, eq. 12) replaces that denominator by an
exponential moving average (EMA) of E_Q[e^T] over batches. Here the EMA is kept in log
space (no overflow for large T) and :func:`corrected_log_mean_exp` returns a
surrogate whose *value* is the minibatch log-mean-exp, so the printed estimate is the
DV bound, and whose *gradient* is mean(e^{T} ∇T) / EMA, the corrected one.

Public API:
- :class:`StatisticsNetwork` – T(x, z), an MLP on the concatenation.
- :func:`dv_bound`, :func:`log_mean_exp`, :func:`corrected_log_mean_exp`, :func:`shuffle`.
- :class:`MINE` – T plus the EMA; ``forward`` returns the estimate and the loss T minimises.
- :func:`estimate_mi` – train a MINE on paired samples and return the held-out DV estimate.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class StatisticsNetwork(nn.Module):
    """T(x, z): an MLP on [x, z] with ``layers`` hidden ELU layers, scalar output.
    ELU rather than ReLU: T must be smooth in z, since the VAE that uses MINE as a
    penalty differentiates T's output with respect to its codes."""

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 128, layers: int = 2):
        super().__init__()
        dims = [x_dim + z_dim] + [hidden] * layers
        blocks = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(d_in, d_out), nn.ELU()]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, z], dim=1)).squeeze(1)


def log_mean_exp(t: torch.Tensor) -> torch.Tensor:
    """log(mean(exp(t))) computed stably (logsumexp)."""
    return torch.logsumexp(t, dim=0) - math.log(t.shape[0])


def dv_bound(t_joint: torch.Tensor, t_marginal: torch.Tensor) -> torch.Tensor:
    """Donsker–Varadhan lower bound E_P[T] - log E_Q[e^T] from T's values on joint and
    marginal samples (Belghazi et al. 2018, eq. 5 / Theorem 1)."""
    return t_joint.mean() - log_mean_exp(t_marginal)


def corrected_log_mean_exp(t_marginal: torch.Tensor, log_ema: torch.Tensor) -> torch.Tensor:
    """Surrogate of log mean(e^T) with the moving-average gradient of eq. 12.

    value:    log mean_i e^{T_i} (the minibatch DV denominator);
    gradient: mean_i(e^{T_i} ∇T_i) / EMA, where EMA = exp(log_ema) is the moving
              average of mean e^T (d/dθ log m = (dm/dθ) / m, with m replaced by EMA).
    """
    lme = log_mean_exp(t_marginal)
    scale = torch.exp(lme.detach() - log_ema.detach())          # m / EMA
    return lme.detach() + scale * (lme - lme.detach())


def shuffle(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of the product of marginals: z permuted within the batch (the x side
    stays in place), so pairs (x_i, z_π(i)) are drawn from P_X ⊗ P_Z."""
    perm = torch.randperm(z.shape[0], generator=generator, device="cpu").to(z.device)
    return z[perm]


class MINE(nn.Module):
    """MINE estimator of I(X; Z) with the bias-corrected (EMA) gradient.

    ``forward(x, z, generator, update_ema)`` returns a dict of 0-d tensors:
    - ``mi``: the DV bound on this batch (value), differentiable w.r.t. T's parameters
      *and* the inputs, with the corrected gradient of the denominator; minimise it to
      reduce I(X; Z) with T held fixed (the VAE's redundancy penalty);
    - ``loss``: -``mi``, what T's optimiser minimises (T maximises the bound).
    ``update_ema=True`` (T's own steps) folds this batch's mean e^T into the moving
    average before it is used, as in the paper's Algorithm 1; a caller that only reads
    T (the VAE step) passes False so that the estimator's state depends on T's steps only.
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 128, ema_rate: float = 0.01, layers: int = 2):
        super().__init__()
        if not 0 < ema_rate <= 1:
            raise ValueError(f"ema_rate must be in (0, 1], got {ema_rate}")
        self.T = StatisticsNetwork(x_dim, z_dim, hidden, layers)
        self.ema_rate = ema_rate
        # log of the moving average of E_Q[e^T]; NaN until the first update.
        self.register_buffer("log_ema", torch.tensor(float("nan")))

    def forward(self, x: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None,
                update_ema: bool = True) -> dict[str, torch.Tensor]:
        t_joint = self.T(x, z)
        t_marginal = self.T(x, shuffle(z, generator))
        lme = log_mean_exp(t_marginal).detach()
        if update_ema:
            with torch.no_grad():
                if torch.isnan(self.log_ema):
                    self.log_ema.copy_(lme)
                else:   # log((1 - a)·EMA + a·m), in log space
                    a = self.ema_rate
                    self.log_ema.copy_(torch.logaddexp(self.log_ema + math.log1p(-a), lme + math.log(a)))
        log_ema = lme if torch.isnan(self.log_ema) else self.log_ema
        mi = t_joint.mean() - corrected_log_mean_exp(t_marginal, log_ema)
        return {"mi": mi, "loss": -mi}

    @torch.no_grad()
    def estimate(self, x: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None,
                 repeats: int = 1) -> float:
        """The plain DV bound on (x, z) with the current T, averaged over ``repeats``
        shuffles; no state changes. Use many samples: log-mean-exp is biased low on few."""
        t_joint = self.T(x, z).mean()
        values = [float(t_joint - log_mean_exp(self.T(x, shuffle(z, generator)))) for _ in range(repeats)]
        return float(np.mean(values))


def estimate_mi(x, z, steps: int = 2000, batch_size: int = 256, lr: float = 1e-3, hidden: int = 64,
                ema_rate: float = 0.01, seed: int = 0, eval_fraction: float = 0.5,
                device="cpu") -> dict:
    """Estimate I(X; Z) in nats from paired samples ``x`` (n, dx) and ``z`` (n, dz).

    A fresh :class:`MINE` is trained with Adam for ``steps`` minibatch steps on the
    first (1 - eval_fraction) of the pairs; the estimate is the DV bound of the final
    T on the held-out pairs (all of them at once, 4 shuffles averaged), so an
    overfitted T cannot inflate it. Fully determined by ``seed``.

    Returns {"mi": held-out DV estimate, "mi_train_last": mean bound over the last 10 %
    of training batches, "settings": {...}}.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32, device=device)
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=device)
    if x.ndim == 1:
        x = x[:, None]
    if z.ndim == 1:
        z = z[:, None]
    if x.shape[0] != z.shape[0] or x.shape[0] < 4:
        raise ValueError(f"x and z need the same number (>= 4) of rows, got {x.shape[0]} and {z.shape[0]}")
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator)
    n_eval = max(2, round(n * eval_fraction))
    train, held = perm[n_eval:], perm[:n_eval]
    torch.manual_seed(seed)
    mine = MINE(x.shape[1], z.shape[1], hidden=hidden, ema_rate=ema_rate).to(device)
    optimizer = torch.optim.Adam(mine.parameters(), lr=lr)
    batch_size = min(batch_size, len(train))
    tail = []
    for step in range(steps):
        idx = train[torch.randint(len(train), (batch_size,), generator=generator)].to(device)
        out = mine(x[idx], z[idx], generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        if step >= steps - max(1, steps // 10):
            tail.append(float(out["mi"].detach()))
    held = held.to(device)
    return {"mi": mine.estimate(x[held], z[held], generator=generator, repeats=4),
            "mi_train_last": float(np.mean(tail)) if tail else math.nan,
            "settings": {"steps": steps, "batch_size": batch_size, "lr": lr, "hidden": hidden,
                         "ema_rate": ema_rate, "seed": seed, "n_train": len(train), "n_eval": n_eval,
                         "estimate": "DV bound of the final T on held-out pairs, 4 shuffles averaged"}}


def correlated_gaussians(n: int, dim: int, rho: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """``dim`` independent pairs (x_k, z_k) of standard normals with correlation ``rho``,
    and their mutual information I(X; Z) = -dim/2 · log(1 - rho²) nats (closed form)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    z = rho * x + math.sqrt(1 - rho ** 2) * rng.standard_normal((n, dim))
    return x.astype(np.float32), z.astype(np.float32), -0.5 * dim * math.log(1 - rho ** 2)
