"""The λβ-VAE objective (Vu, Wan & Wei 2026): BCE + β·KL + λ·MSE.

Every term is summed over its dimensions (pixels or latents) and averaged over the
batch, as in the original code. λ = 0 is the plain β-VAE of Higgins et al. (2017),
so both stages of the study use this one function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_to_standard_normal(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latents: shape (..., n)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def lambda_beta_loss(logits, x, mu, logvar, beta, lam=0.0) -> dict[str, torch.Tensor]:
    """Loss terms averaged over the batch.

    Shapes: x and logits (..., n, C, H, W), mu and logvar (..., n, latent_dim). Leading
    dimensions are independent runs (a pack of the packed engine): every term is
    reduced over the batch of its own run only, and ``beta``/``lam`` broadcast against
    those leading dimensions (a float, or a tensor with one value per run). One run
    gives 0-d terms.

    recon: Bernoulli negative log-likelihood (BCE on the logits), summed over pixels;
    kl:    KL(q(z|x) || N(0, I)) summed over latents;
    l2:    squared error between sigmoid(logits) and x, summed over pixels;
    total: recon + beta * kl + lam * l2.
    """
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(-3).sum(-1).mean(-1)
    kl = kl_to_standard_normal(mu, logvar).mean(-1)
    # Computed at λ = 0 too: the control runs report the L2 they did not optimise.
    l2 = (torch.sigmoid(logits) - x).pow(2).flatten(-3).sum(-1).mean(-1)
    return {"total": recon + beta * kl + lam * l2, "recon": recon, "kl": kl, "l2": l2}
