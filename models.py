"""The convolutional β-VAE of the λβ-VAE study (Vu, Wan & Wei 2026; the architecture
of Higgins et al. 2017 / Burgess et al. 2018 for 64×64 images).

Parameter names match the original code's state_dicts (``encoder.encoder.0.weight``,
``encoder.fc_mu.bias``, ``decoder.decoder.6.weight``, ...) so its published
checkpoints ``betavae_beta_{β}_seed_{s}.pth`` load with ``load_state_dict`` as they are.
The decoder returns logits; the sigmoid is applied by the loss (BCE with logits is
stable where the original's sigmoid + BCE can overflow) and by ``reconstruct``.
"""
from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """x (n, C, 64, 64) in [0, 1] -> mean and log-variance of q(z|x), each (n, latent_dim)."""

    def __init__(self, channels: int = 1, latent_dim: int = 10):
        super().__init__()
        layers = []
        for c_in, c_out in zip((channels, 32, 32, 64), (32, 32, 64, 64)):   # 64 -> 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        self.fc1 = nn.Linear(64 * 4 * 4, 256)
        self.fc_mu = nn.Linear(256, latent_dim)
        self.fc_logvar = nn.Linear(256, latent_dim)

    def forward(self, x):
        h = torch.relu(self.fc1(self.encoder(x).flatten(1)))
        return self.fc_mu(h), self.fc_logvar(h)


class Decoder(nn.Module):
    """z (n, latent_dim) -> Bernoulli logits (n, C, 64, 64)."""

    def __init__(self, channels: int = 1, latent_dim: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(latent_dim, 256)
        self.fc2 = nn.Linear(256, 64 * 4 * 4)
        layers = []
        for c_in, c_out in zip((64, 64, 32, 32), (64, 32, 32, channels)):     # 4 -> 8 -> 16 -> 32 -> 64
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
        self.decoder = nn.Sequential(*layers[:-1])                            # no ReLU after the last

    def forward(self, z):
        h = torch.relu(self.fc2(torch.relu(self.fc1(z))))
        return self.decoder(h.view(-1, 64, 4, 4))


class BetaVAE(nn.Module):
    def __init__(self, channels: int = 1, latent_dim: int = 10):
        super().__init__()
        self.channels, self.latent_dim = channels, latent_dim
        self.encoder = Encoder(channels, latent_dim)
        self.decoder = Decoder(channels, latent_dim)

    def forward(self, x, generator: torch.Generator | None = None, eps: torch.Tensor | None = None):
        """Returns (logits, mu, logvar) with z drawn by the reparameterisation trick.
        ``eps`` (n, latent_dim) is the standard-normal noise if given (the packed
        engine draws it per run outside ``vmap``), else drawn from ``generator``."""
        mu, logvar = self.encoder(x)
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x):
        """Decoded encoder means, as probabilities in [0, 1]."""
        mu, _ = self.encoder(x)
        return torch.sigmoid(self.decoder(mu))


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 images 0..255 -> float32 in [0, 1]; done on the device so transfers stay uint8."""
    return images_uint8.to(torch.float32).div_(255.0)


class FactorDiscriminator(nn.Module):
    """FactorVAE's discriminator (Kim & Mnih, "Disentangling by Factorising", ICML 2018): an MLP
    from a code z (n, latent_dim) to two logits, "from q(z)" and "from the product of its
    marginals" (``losses.permute_dims``); ``losses.factor_vae_tc`` turns them into the total
    correlation. disentanglement_lib's architecture: ``layers`` hidden layers of ``hidden``
    units (6 × 1000) with LeakyReLU(0.2)."""

    def __init__(self, latent_dim: int = 10, hidden: int = 1000, layers: int = 6):
        super().__init__()
        sizes = [latent_dim] + [hidden] * layers
        blocks = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks, nn.Linear(sizes[-1], 2))

    def forward(self, z):
        return self.net(z)


# =====================================================================================
# The MINE disentangling VAE (second model family; docs/mine.md, lbvae/mine/study.py)
# =====================================================================================
# Flow: image -> Encoder -> code z (n, L) -> FactorEncoder -> factor embeddings (n, K, F)
# -> CrossAttention(queries = factor embeddings, keys/values = latent slots of z)
# -> attended latent z~ (n, L) -> Decoder. "The code" that every metric reads is the
# encoder mean mu (n, L), exactly as for the β-VAE: the attention only adds to what the
# decoder sees, so the code's meaning does not depend on the attention path.
class FactorEncoder(nn.Module):
    """Latent code z (n, L) -> factor embeddings (n, K, factor_dim).

    Each embedding is a learned factor query q_k plus an input-dependent shift from a
    small MLP of the code, so the queries can adapt to the image while staying tied to
    one factor slot k each."""

    def __init__(self, latent_dim: int, num_factors: int, factor_dim: int, hidden: int = 256):
        super().__init__()
        self.num_factors, self.factor_dim = num_factors, factor_dim
        self.queries = nn.Parameter(torch.randn(num_factors, factor_dim) * factor_dim ** -0.5)
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_factors * factor_dim))

    def forward(self, z):
        return self.queries + self.net(z).view(-1, self.num_factors, self.factor_dim)


class CrossAttention(nn.Module):
    """Dynamic capacity allocation: factor embeddings attend over latent slots.

    Latent slot i is the token s_i = z_i · w_i + p_i (a learned direction scaled by the
    latent's value, plus a learned slot embedding), so keys and values come from the
    code. Single-head scaled dot-product attention (Vaswani et al. 2017) with the
    softmax over slots: A[k, i] is the share of factor k's unit capacity given to
    latent i (each row sums to 1). The factor outputs o_k = Σ_i A[k, i] v(s_i) are
    mapped back to the latent space and *added* to z (a residual, zero-initialised, so
    the untrained model is exactly the β-VAE and the decoder always sees the code).

    forward(z, factor_embeddings) -> (attended z~ (n, L), attention A (n, K, L)).
    """

    def __init__(self, latent_dim: int, num_factors: int, factor_dim: int, attention_dim: int,
                 temperature: float = 1.0):
        super().__init__()
        self.scale = attention_dim ** -0.5 / temperature
        self.slot_direction = nn.Parameter(torch.randn(latent_dim, attention_dim) * attention_dim ** -0.5)
        self.slot_embedding = nn.Parameter(torch.randn(latent_dim, attention_dim) * attention_dim ** -0.5)
        self.query = nn.Linear(factor_dim, attention_dim)
        self.key = nn.Linear(attention_dim, attention_dim)
        self.value = nn.Linear(attention_dim, attention_dim)
        self.out = nn.Linear(num_factors * attention_dim, latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z, factor_embeddings):
        slots = z[:, :, None] * self.slot_direction + self.slot_embedding          # (n, L, A)
        scores = self.query(factor_embeddings) @ self.key(slots).transpose(1, 2)     # (n, K, L)
        attention = torch.softmax(scores * self.scale, dim=-1)
        factor_out = attention @ self.value(slots)                                   # (n, K, A)
        return z + self.out(factor_out.flatten(1)), attention


class GaussianFitEstimator(nn.Module):
    """Per-latent complexity from a Gaussian fit over a buffer of recent codes.

    Keeps the last ``samples`` sampled codes z and their posterior log-variances. The
    complexity of latent i is the Gaussian-channel estimate of the information it
    carries about the input, in nats:

        c_i = max(0, ½ log Var_fit[z_i] - ½ mean log σ_i²(x))

    h(z_i) is at most the entropy of the Gaussian fitted to z_i's marginal
    (½ log 2πe·Var_fit) and h(z_i | x) = ½ E log 2πe·σ_i²(x), so c_i is an upper bound
    on I(x; z_i), tight when the aggregate posterior is Gaussian. A collapsed latent
    (posterior = prior) has c_i ≈ 0. The buffers are part of the state_dict, so a
    resumed run continues with the same buffer."""

    def __init__(self, latent_dim: int, samples: int = 1000):
        super().__init__()
        self.register_buffer("codes", torch.zeros(samples, latent_dim))
        self.register_buffer("logvars", torch.zeros(samples, latent_dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, z, logvar) -> None:
        """Write a batch of codes into the ring buffer (oldest rows replaced first)."""
        size = self.codes.shape[0]
        z, logvar = z.detach()[-size:], logvar.detach()[-size:]
        rows = (self.count + torch.arange(len(z), device=z.device)) % size
        self.codes[rows] = z.to(self.codes.dtype)
        self.logvars[rows] = logvar.to(self.logvars.dtype)
        self.count += len(z)

    @torch.no_grad()
    def complexity(self) -> torch.Tensor:
        """c (L,) in nats; zeros until two codes have been seen."""
        filled = int(min(int(self.count), self.codes.shape[0]))
        if filled < 2:
            return torch.zeros(self.codes.shape[1], device=self.codes.device)
        var = self.codes[:filled].var(dim=0).clamp_min(1e-12)
        return (0.5 * var.log() - 0.5 * self.logvars[:filled].mean(dim=0)).clamp_min(0.0)

    @torch.no_grad()
    def part_weights(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Adaptive weights of the per-part redundancy terms: each part's total
        complexity divided by the mean over parts (mean weight 1, so the overall scale
        stays ``disentanglement_weight``); all ones while nothing carries information.
        Why: the MINE estimate for a part that carries no information is estimator
        noise, and redundancy matters in proportion to the information that is shared."""
        c = self.complexity()
        per_part = torch.stack([c[p].sum() for p in parts])
        mean = per_part.mean()
        return per_part / mean if mean > 0 else torch.ones_like(per_part)


def latent_parts(latent_dim: int, parts: int) -> list[torch.Tensor]:
    """Contiguous, near-equal groups of latent indices (``np.array_split`` order)."""
    bounds = [round(k * latent_dim / parts) for k in range(parts + 1)]
    return [torch.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


class MutualInformationEstimator(nn.Module):
    """One MINE (Belghazi et al. 2018; ``mine.MINE``) per latent part p, estimating the
    redundancy I(z_p; z_rest) between the part and the other latents.

    Kept apart from the VAE: its statistics networks maximise the DV bound with their
    own optimiser, while the VAE minimises the estimates with T held fixed.
    forward(z, generator, update_ema) -> (P,) DV estimates (corrected gradient)."""

    def __init__(self, latent_dim: int, parts: int, hidden: int = 128, ema_rate: float = 0.01):
        super().__init__()
        from lbvae.mine.estimator import MINE  # here: models.py stays importable without the MINE module's users

        self.parts = latent_parts(latent_dim, parts)
        self.rest = [torch.tensor(sorted(set(range(latent_dim)) - set(p.tolist()))) for p in self.parts]
        self.estimators = nn.ModuleList(MINE(len(p), len(r), hidden, ema_rate) for p, r in zip(self.parts, self.rest))

    def forward(self, z, generator: torch.Generator | None = None, update_ema: bool = True) -> torch.Tensor:
        return torch.stack([m(z[:, p.to(z.device)], z[:, r.to(z.device)], generator, update_ema)["mi"]
                            for m, p, r in zip(self.estimators, self.parts, self.rest)])


class FactorMutualInformation(nn.Module):
    """The original's MINE target: one MINE (Belghazi et al. 2018; ``mine.MINE``) per
    factor k estimating I(z; e_k) between the code and factor k's embedding.

    e_k is a deterministic function of z, so the true I(z; e_k) is not finite for
    continuous codes; the DV bound of a finite critic is, and it grows with how much of
    z the embedding resolves. Minimising it (the VAE's penalty) pushes each embedding to
    depend on less of the code. forward(z, embeddings (n, K, F), generator, update_ema)
    -> (K,) DV estimates (corrected gradient); the code side is shuffled for Q."""

    def __init__(self, latent_dim: int, num_factors: int, factor_dim: int, hidden: int = 128,
                 ema_rate: float = 0.01):
        super().__init__()
        from lbvae.mine.estimator import MINE

        self.estimators = nn.ModuleList(MINE(factor_dim, latent_dim, hidden, ema_rate) for _ in range(num_factors))

    def forward(self, z, embeddings, generator: torch.Generator | None = None, update_ema: bool = True):
        return torch.stack([m(embeddings[:, k], z, generator, update_ema)["mi"]
                            for k, m in enumerate(self.estimators)])


class MINEDisentangleVAE(nn.Module):
    """The MINE disentangling VAE (docs/mine.md): the λβ study's conv Encoder and
    Decoder with a FactorEncoder + CrossAttention between them and a Gaussian-fit
    complexity estimate of the code. The MINE estimators are a separate module
    (``MutualInformationEstimator``) with their own optimiser.

    ``forward`` returns (logits, mu, logvar) like ``BetaVAE``, so held-out ELBO and
    encoding code written for the β-VAE apply unchanged; ``run`` returns everything
    the loss needs. ``encoder(x)[0]`` (the mean mu) is the code the metrics read."""

    def __init__(self, channels: int = 3, latent_dim: int = 128, num_factors: int = 10, factor_dim: int = 32,
                 attention_dim: int = 128, gaussian_fit_samples: int = 1000, attention_temperature: float = 1.0):
        super().__init__()
        self.channels, self.latent_dim = channels, latent_dim
        self.encoder = Encoder(channels, latent_dim)
        self.factor_encoder = FactorEncoder(latent_dim, num_factors, factor_dim)
        self.attention = CrossAttention(latent_dim, num_factors, factor_dim, attention_dim, attention_temperature)
        self.decoder = Decoder(channels, latent_dim)
        self.complexity = GaussianFitEstimator(latent_dim, gaussian_fit_samples)

    def attend(self, z):
        """(attended latent z~, attention weights (n, K, L))."""
        return self.attention(z, self.factor_encoder(z))

    @torch.no_grad()
    def factor_complexity(self) -> torch.Tensor:
        """c (K,) in nats: per factor, Σ_j ½ log(1 + Var[e_kj]) over the embeddings of the
        codes in the complexity buffer (zeros until two codes have been seen).

        This project's reading of the original's per-factor complexity "from the spread
        of that factor's embedding": a Gaussian fit of each embedding coordinate, scored
        as the capacity of a Gaussian channel with unit noise, so it is ≥ 0, 0 for a
        constant embedding, and grows with the spread. Not checked against the original's code."""
        buffer = self.complexity
        filled = int(min(int(buffer.count), buffer.codes.shape[0]))
        if filled < 2:
            return torch.zeros(self.factor_encoder.num_factors, device=buffer.codes.device)
        embeddings = self.factor_encoder(buffer.codes[:filled])              # (m, K, F)
        return 0.5 * torch.log1p(embeddings.var(dim=0)).sum(dim=1)

    @torch.no_grad()
    def factor_weights(self) -> torch.Tensor:
        """Weights of the per-factor MINE terms: factor complexity over its mean over
        factors (mean 1, so ``disentanglement_weight`` keeps its scale); all ones while
        every factor's complexity is 0."""
        c = self.factor_complexity()
        mean = c.mean()
        return c / mean if mean > 0 else torch.ones_like(c)

    def decode(self, z):
        """Bernoulli logits of a code, through the attention path."""
        return self.decoder(self.attend(z)[0])

    def run(self, x, generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> dict:
        mu, logvar = self.encoder(x)
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
        factors = self.factor_encoder(z)
        attended, attention = self.attention(z, factors)
        return {"logits": self.decoder(attended), "mu": mu, "logvar": logvar, "z": z, "attention": attention,
                "factors": factors}

    def forward(self, x, generator: torch.Generator | None = None, eps: torch.Tensor | None = None):
        out = self.run(x, generator, eps)
        return out["logits"], out["mu"], out["logvar"]

    @torch.no_grad()
    def reconstruct(self, x):
        """Decoded encoder means, as probabilities in [0, 1]."""
        return torch.sigmoid(self.decode(self.encoder(x)[0]))
