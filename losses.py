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


# =====================================================================================
# The MINE disentangling VAE (docs/mine.md): reconstruction, KL, MINE redundancy,
# L_sparse and L_ent, each switchable.
# =====================================================================================
MINE_LOSS_KEYS = ("total", "recon", "kl", "l2", "redundancy", "sparse", "ent")


def attention_sparsity(attention):
    """L_sparse: the L2 penalty on the attention weights, taken on each latent's load.

    ``attention`` (n, K, L) has rows that sum to 1 (each factor's capacity over the
    latents). The load of latent i is Σ_k A[k, i]; L_sparse = Σ_i load_i² / K, mean over
    the batch. Why the load and not Σ A²: on softmax rows the plain L2 norm is smallest
    for *uniform* attention, the opposite of sparse; the L2 of the loads penalises a
    latent shared by several factors (it is K when all factors share one latent and 1
    when each factor has latents of its own), so together with L_ent (peaked rows) it
    favours a one-to-one allocation of factors to latents."""
    load = attention.sum(dim=1)
    return load.pow(2).sum(dim=1).mean() / attention.shape[1]


def attention_entropy(attention):
    """L_ent: entropy (nats) of each factor's attention over the latents, mean over
    factors and batch; minimising it concentrates each factor on few latents."""
    return -(attention * attention.clamp_min(1e-12).log()).sum(dim=-1).mean()


def mine_vae_loss(logits, x, mu, logvar, attention, redundancy, part_weights, *, kl_weight: float = 1.0,
                  disentanglement_weight: float = 1.0, attention_reg_weight: float = 0.1,
                  entropy_reg_weight: float = 0.05, use_mine: bool = True, use_sparse: bool = True,
                  use_ent: bool = True) -> dict[str, torch.Tensor]:
    """Loss terms of the MINE-VAE, averaged over the batch, as 0-d tensors.

    recon, kl, l2: as in ``lambda_beta_loss`` (l2 is reported, never optimised here);
    redundancy:    Σ_p w_p Î(z_p; z_rest) / P, the MINE estimates of the parts
                   (``redundancy`` (P,)) weighted by the Gaussian-fit weights w (mean 1);
    sparse, ent:   ``attention_sparsity`` and ``attention_entropy``;
    total:         recon + kl_weight·kl + [disentanglement_weight·redundancy]
                   + [attention_reg_weight·sparse] + [entropy_reg_weight·ent],
                   a bracketed term only when its switch is on (the ablation variants).
    Every term is computed even when switched off, so each run reports all of them."""
    terms = lambda_beta_loss(logits, x, mu, logvar, beta=kl_weight)
    terms["redundancy"] = (part_weights.detach() * redundancy).mean()
    terms["sparse"] = attention_sparsity(attention)
    terms["ent"] = attention_entropy(attention)
    total = terms["total"]
    if use_mine:
        total = total + disentanglement_weight * terms["redundancy"]
    if use_sparse:
        total = total + attention_reg_weight * terms["sparse"]
    if use_ent:
        total = total + entropy_reg_weight * terms["ent"]
    terms["total"] = total
    return terms
