"""The λβ-VAE objective (Vu, Wan & Wei 2026): BCE + β·KL + λ·MSE; the standard disentangling
objectives' regularisers (``regularizer``); the MINE-VAE's terms.

Every term is summed over its dimensions (pixels or latents) and averaged over the
batch, as in the original code. λ = 0 is the plain β-VAE of Higgins et al. (2017),
so both stages of the study use this one function.
"""
from __future__ import annotations

import math

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
# The standard disentangling objectives (disentanglement_lib's methods/unsupervised/vae.py):
# each adds a regulariser of the encoder's posterior to the reconstruction term.
# =====================================================================================
OBJECTIVES = ("beta", "annealed", "tcvae", "dip_i", "dip_ii")     # FactorVAE has a network: factor_vae_tc
# The weight each objective's grid sweeps, where the β-VAE's grid sweeps β (disentanglement_lib's study).
SWEPT_WEIGHT = {"beta": "beta", "annealed": "c_max", "tcvae": "beta", "dip_i": "lambda_od", "dip_ii": "lambda_od",
                "factor": "gamma"}
LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(z, mu, logvar):
    """log N(z; mu, exp(logvar)) elementwise (broadcasting)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def annealed_capacity(step: int, c_max: float, iteration_threshold: int) -> float:
    """C(step) of the AnnealedVAE (Burgess et al. 2018): rises linearly from 0 at step 0 to
    ``c_max`` nats at ``iteration_threshold`` steps, then stays there."""
    return c_max * min(1.0, step / iteration_threshold)      # c_max may be a run's 0-d tensor


def total_correlation_terms(z, mu, logvar, dataset_size: int) -> dict[str, torch.Tensor]:
    """The decomposition of Chen, Li, Grosse & Duvenaud, "Isolating Sources of Disentanglement in
    Variational Autoencoders" (NeurIPS 2018), estimated on one batch by minibatch-weighted
    sampling (MWS): for the batch's samples z_i ~ q(z|x_i), log q(z_i) ≈ log Σ_j q(z_i|x_j)
    − log(N·M) and log q(z_i,d) likewise per latent d, with N = ``dataset_size`` and M the
    batch size. Batch means, in nats:

        mi     = E[log q(z|x) − log q(z)]          (index-code mutual information)
        tc     = E[log q(z) − Σ_d log q(z_d)]      (total correlation)
        dim_kl = E[Σ_d log q(z_d) − log p(z_d)]    (dimension-wise KL)

    Their sum is E[log q(z|x) − log p(z)], the single-sample estimate of the KL, exactly.
    ``tc`` includes MWS's constant, as Chen et al.'s code does (disentanglement_lib drops
    it). MWS weighs the batch as 1/(N·M) of q(z|x_j), which is the batch's own mean of
    q(z|x_j) divided by N, so the constant shifts ``tc`` by exactly (D − 1)·log N from the
    batch's aggregate-posterior estimate (D latents; ``mi`` by +log N, ``dim_kl`` by
    −D·log N). It is a constant: the gradients, and so training, are disentanglement_lib's.
    Shapes: z, mu, logvar (..., M, D)."""
    log_q_pairs = gaussian_log_density(z.unsqueeze(-2), mu.unsqueeze(-3), logvar.unsqueeze(-3))   # (..., M, M, D)
    log_nm = math.log(dataset_size * z.shape[-2])
    log_qz = torch.logsumexp(log_q_pairs.sum(-1), dim=-1) - log_nm                    # (..., M)
    log_qz_marginals = (torch.logsumexp(log_q_pairs, dim=-2) - log_nm).sum(-1)        # (..., M)
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(-1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(-1)
    return {"mi": (log_qz_x - log_qz).mean(-1), "tc": (log_qz - log_qz_marginals).mean(-1),
            "dim_kl": (log_qz_marginals - log_pz).mean(-1)}


def dip_covariance(mu, logvar, kind: str):
    """The covariance DIP-VAE drives to the identity (Kumar, Sattigeri & Balakrishnan,
    "Variational Inference of Disentangled Latent Concepts from Unlabeled Observations",
    ICLR 2018): of the encoder means over the batch (``"i"``; the 1/M estimate, as
    disentanglement_lib), plus the batch mean of the encoder variances (``"ii"``: the
    covariance of q(z) itself). Shapes (..., M, D) -> (..., D, D)."""
    centred = mu - mu.mean(-2, keepdim=True)
    cov = centred.transpose(-1, -2) @ centred / mu.shape[-2]
    if kind == "ii":
        cov = cov + torch.diag_embed(logvar.exp().mean(-2))
    return cov


def dip_penalty(cov, lambda_od, lambda_d):
    """λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)²: 0 exactly for the identity."""
    diagonal = torch.diagonal(cov, dim1=-2, dim2=-1)
    off = cov - torch.diag_embed(diagonal)
    return lambda_od * off.pow(2).sum((-2, -1)) + lambda_d * (diagonal - 1.0).pow(2).sum(-1)


def regularizer(objective: str, mu, logvar, z, *, step: int = 0, dataset_size: int | None = None,
                beta=1.0, gamma=1000.0, c_max=25.0, iteration_threshold: int = 100_000, lambda_od=1.0,
                lambda_d_factor=None) -> dict[str, torch.Tensor]:
    """What ``objective`` adds to the reconstruction term, as named batch means in nats per
    image; ``"total"`` is the addition. Definitions as disentanglement_lib's
    (methods/unsupervised/vae.py), with KL = ``kl_to_standard_normal`` averaged over the batch:

    - ``beta``: β·KL (Higgins et al., "β-VAE", ICLR 2017);
    - ``annealed``: γ·|KL − C(step)| with ``annealed_capacity`` (Burgess et al.,
      "Understanding disentangling in β-VAE", 2018); also returns ``capacity``;
    - ``tcvae``: KL + (β − 1)·TC (Chen et al. 2018; ``total_correlation_terms``, which needs
      ``dataset_size``); also returns ``mi``, ``tc`` and ``dim_kl``;
    - ``dip_i``, ``dip_ii``: KL + ``dip_penalty`` of ``dip_covariance`` (Kumar et al. 2018),
      λ_d = ``lambda_d_factor``·λ_od (``lambda_d_factor`` defaults to 10 for I and 1 for II,
      disentanglement_lib's values); also returns ``dip``.

    Every objective returns ``kl`` too. Weights may be floats or 0-d tensors (one run of a
    pack). Shapes: mu, logvar, z (..., M, D)."""
    kl = kl_to_standard_normal(mu, logvar).mean(-1)
    if objective == "beta":
        return {"total": beta * kl, "kl": kl}
    if objective == "annealed":
        capacity = annealed_capacity(step, c_max, iteration_threshold)
        return {"total": gamma * (kl - capacity).abs(), "kl": kl, "capacity": capacity + torch.zeros_like(kl)}
    if objective == "tcvae":
        if not dataset_size:
            raise ValueError("regularizer('tcvae') needs dataset_size, the number of training images")
        terms = total_correlation_terms(z, mu, logvar, dataset_size)
        return {"total": kl + (beta - 1.0) * terms["tc"], "kl": kl, **terms}
    if objective in ("dip_i", "dip_ii"):
        kind = objective.removeprefix("dip_")
        factor = lambda_d_factor if lambda_d_factor is not None else (10.0 if kind == "i" else 1.0)
        dip = dip_penalty(dip_covariance(mu, logvar, kind), lambda_od, factor * lambda_od)
        return {"total": kl + dip, "kl": kl, "dip": dip}
    raise ValueError(f"objective {objective!r}: choose from {', '.join(OBJECTIVES)} (FactorVAE: factor_vae_tc)")


def permute_dims(z, generator: torch.Generator | None = None):
    """Each latent of z (M, D) permuted across the batch on its own (Kim & Mnih, "Disentangling
    by Factorising", ICML 2018, Alg. 1): every column keeps its values, the dependence between
    columns is broken, so the result samples the product of q(z)'s marginals."""
    m, d = z.shape
    order = torch.argsort(torch.rand(m, d, generator=generator, device=z.device), dim=0)
    return torch.gather(z, 0, order)


def factor_vae_tc(logits):
    """FactorVAE's total correlation by the density-ratio trick (Kim & Mnih 2018): with a
    discriminator's logits (M, 2) for "from q(z)" (column 0) against "from the product of
    marginals" (column 1), TC ≈ E[logit_0 − logit_1], a batch mean in nats."""
    return (logits[..., 0] - logits[..., 1]).mean(-1)


def factor_discriminator_loss(logits_joint, logits_permuted):
    """The discriminator's cross-entropy: class 0 for codes of q(z), class 1 for permuted
    codes (``permute_dims``), averaged over both halves, as disentanglement_lib."""
    zeros = torch.zeros(logits_joint.shape[0], dtype=torch.long, device=logits_joint.device)
    return 0.5 * (F.cross_entropy(logits_joint, zeros) + F.cross_entropy(logits_permuted, zeros + 1))

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
