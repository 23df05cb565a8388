"""The models of the book: an MLP VAE (Bernoulli or Gaussian decoder).

Conditional VAE and the semi-supervised M2 model live here too (see below). Every model exposes:

- ``encode(x) -> (mu, logvar)``: the parameters of q(z|x), each (batch, z_dim);
- ``decode(z) -> out``: decoder output, logits (Bernoulli) or means (Gaussian), (..., batch, x_dim);
- ``log_likelihood(x, z) -> (..., batch)``: log p(x|z) summed over pixels, in nats.

so that :mod:`vae_core.objectives` can compute the ELBO and IWAE bound of any of them.

Used by: chapters 3-7.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .checks import check_batch, check_positive_int
from .distributions import bernoulli_log_prob, gaussian_log_prob, reparameterize

LIKELIHOODS = ("bernoulli", "gaussian")


class VAE(nn.Module):
    """MLP VAE of Kingma & Welling (2013): x_dim -> h_dim -> (mu, logvar) in R^z_dim -> h_dim -> x_dim.

    Args:
        x_dim: flattened image size (784 for MNIST).
        h_dim: hidden units of the one hidden layer in encoder and decoder.
        z_dim: latent dimensions (≥ 1).
        likelihood: "bernoulli" (decoder outputs logits, log p(x|z) = −BCE summed over pixels) or
            "gaussian" (decoder outputs means in (0, 1) via a sigmoid; a learned scalar
            log-variance ``log_sigma2_x`` shared by all pixels).
    """

    def __init__(self, x_dim: int = 784, h_dim: int = 400, z_dim: int = 20,
                 likelihood: str = "bernoulli") -> None:
        super().__init__()
        check_positive_int(x_dim, "x_dim")
        check_positive_int(h_dim, "h_dim")
        check_positive_int(z_dim, "z_dim")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.x_dim, self.h_dim, self.z_dim, self.likelihood = x_dim, h_dim, z_dim, likelihood
        self.encoder_hidden = nn.Linear(x_dim, h_dim)
        self.to_mu = nn.Linear(h_dim, z_dim)
        self.to_logvar = nn.Linear(h_dim, z_dim)
        self.decoder_hidden = nn.Linear(z_dim, h_dim)
        self.to_x = nn.Linear(h_dim, x_dim)
        if likelihood == "gaussian":
            self.log_sigma2_x = nn.Parameter(torch.tensor(math.log(0.1)))

    def config(self) -> dict:
        """The constructor arguments: enough to rebuild the architecture (used by checkpoints)."""
        return {"x_dim": self.x_dim, "h_dim": self.h_dim, "z_dim": self.z_dim,
                "likelihood": self.likelihood}

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, x_dim) in [0, 1] -> (mu, logvar), each (batch, z_dim)."""
        check_batch(x, self.x_dim)
        h = torch.relu(self.encoder_hidden(x))
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """z: (..., z_dim) -> logits (Bernoulli) or pixel means (Gaussian), (..., x_dim)."""
        if z.shape[-1] != self.z_dim:
            raise ValueError(f"z must have last dimension {self.z_dim}, got shape {tuple(z.shape)}")
        out = self.to_x(torch.relu(self.decoder_hidden(z)))
        return out if self.likelihood == "bernoulli" else torch.sigmoid(out)

    def mean_image(self, z: Tensor) -> Tensor:
        """E[x|z] in [0, 1], (..., x_dim): what pictures of decoded z show."""
        out = self.decode(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) summed over pixels, in nats. x: (batch, x_dim); z: (..., batch, z_dim) -> (..., batch)."""
        out = self.decode(z)
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(x, out)
        return gaussian_log_prob(x, out, self.log_sigma2_x.expand_as(out))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One reparameterized pass: returns (decoder output, mu, logvar)."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar
