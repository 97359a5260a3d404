"""The λβ-VAE objective (Vu, Wan & Wei 2026): BCE + β·KL + λ·MSE.

Every term is summed over its dimensions (pixels or latents) and averaged over the
batch, as in the original code. λ = 0 is the plain β-VAE of Higgins et al. (2017),
so both stages of the study use this one function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_per_dimension(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, 1)) of each latent dimension, elementwise."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_to_standard_normal(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latents: shape (..., n).
    (Halving before summing gives the same bits: scaling by 2⁻¹ is exact.)"""
    return kl_per_dimension(mu, logvar).sum(dim=-1)


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
# The MINE disentangling VAE (docs/mine.md): reconstruction, KL, the MINE penalty,
# L_sparse and L_ent, each switchable.
# =====================================================================================
MINE_LOSS_KEYS = ("total", "recon", "kl", "l2", "redundancy", "sparse", "ent")
LOSS_SCALES = ("batch_mean", "batch_sum")


def attention_sparsity(weights):
    """L_sparse: the entropy of each latent's normalised attention load, weighted by that load.

    ``weights`` (n, K, L) has rows that sum to 1 (factor k's unit capacity over the L
    latents). Latent i's load is l_i = Σ_k A[k, i]; normalised over the factors that
    share it, p(k | i) = A[k, i] / l_i. The penalty is

        L_sparse = Σ_i (l_i / K) · H(p(· | i)) = -(1/K) Σ_{k,i} A[k, i] log(A[k, i] / l_i),

    mean over the batch: the conditional entropy H(factor | latent) in nats under the
    joint allocation A / K. It is 0 exactly when every latent serves at most one factor
    (each column of A has one nonzero, so at most L of the K·L weights are nonzero: a
    one-to-one allocation is such a minimum) and log K, its maximum, when a latent is
    shared evenly by all factors, which uniform attention is (log 10 = 2.30 at K = 10).
    Together with L_ent = H(latent | factor) (``attention_entropy``) the sum is the
    variation of information between factor and latent, 0 only for one-to-one attention.

    Why not an L2 norm: on rows that sum to 1 the plain L2 of the weights is smallest for
    uniform attention, and so is the L2 of the loads (Σ_i l_i² / K: 0.078 uniform,
    1 one-to-one, 10 all factors on one latent at K = 10, L = 128; ``attention_load_l2``),
    the penalty this repository used before; both push attention towards uniform."""
    load = weights.sum(dim=1, keepdim=True)
    log_share = weights.clamp_min(1e-12).log() - load.clamp_min(1e-12).log()
    return -(weights * log_share).sum(dim=(1, 2)).mean() / weights.shape[1]


def attention_load_l2(weights):
    """The previous L_sparse, Σ_i (Σ_k A[k, i])² / K, mean over the batch; kept to show
    why it was replaced (its minimum, K / L, is uniform attention); not used in training."""
    return weights.sum(dim=1).pow(2).sum(dim=1).mean() / weights.shape[1]


def attention_entropy(attention):
    """L_ent: entropy (nats) of each factor's attention over the latents, mean over
    factors and batch; minimising it concentrates each factor on few latents."""
    return -(attention * attention.clamp_min(1e-12).log()).sum(dim=-1).mean()


def mine_vae_loss(logits, x, mu, logvar, attention, redundancy, part_weights, *, kl_weight: float = 1.0,
                  disentanglement_weight: float = 1.0, attention_reg_weight: float = 0.1,
                  entropy_reg_weight: float = 0.05, use_mine: bool = True, use_sparse: bool = True,
                  use_ent: bool = True, loss_scale: str = "batch_mean") -> dict[str, torch.Tensor]:
    """Loss terms of the MINE-VAE as 0-d tensors; every logged term is a per-image mean.

    recon, kl, l2: as in ``lambda_beta_loss`` (l2 is reported, never optimised here);
    redundancy:    Σ_j w_j Î_j / J, the J MINE estimates (``redundancy`` (J,): one per
                   latent part, I(z_p; z_rest), or one per factor, I(z; e_k)) weighted by
                   the complexity weights w (mean 1);
    sparse, ent:   ``attention_sparsity`` and ``attention_entropy``;
    total:         s·(recon + kl_weight·kl) + [disentanglement_weight·redundancy]
                   + [attention_reg_weight·sparse] + [entropy_reg_weight·ent],
                   a bracketed term only when its switch is on (the ablation variants);
                   s = 1 for ``loss_scale="batch_mean"`` (this repository: every term a
                   per-image mean) and s = n, the batch size, for ``"batch_sum"`` (the
                   original's scale: reconstruction and KL summed over the batch, the
                   regularisers not).
    Every term is computed even when switched off, so each run reports all of them."""
    if loss_scale not in LOSS_SCALES:
        raise ValueError(f"loss_scale must be one of {', '.join(LOSS_SCALES)}, got {loss_scale!r}")
    terms = lambda_beta_loss(logits, x, mu, logvar, beta=kl_weight)
    scale = x.shape[0] if loss_scale == "batch_sum" else 1
    terms["redundancy"] = (part_weights.detach() * redundancy).mean()
    terms["sparse"] = attention_sparsity(attention)
    terms["ent"] = attention_entropy(attention)
    total = scale * terms["total"]
    if use_mine:
        total = total + disentanglement_weight * terms["redundancy"]
    if use_sparse:
        total = total + attention_reg_weight * terms["sparse"]
    if use_ent:
        total = total + entropy_reg_weight * terms["ent"]
    terms["total"] = total
    return terms
