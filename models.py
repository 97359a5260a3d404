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
