"""Convolutional VAEs for square images (the convolutional chapter).

:class:`ConvVAE` has the interface of :class:`vae_core.models.VAE` (``encode``, ``decode``,
``log_likelihood``, ``mean_image``; images travel flattened, ``(batch, channels · side²)``), so
``fit``, ``objectives`` and ``evaluate`` take it unchanged. Grey levels: a discretized logistic per
pixel (:func:`vae_core.distributions.discretized_logistic_log_prob`), reported in bits per dimension
by :func:`vae_core.distributions.bits_per_dim`.

This module sits outside the core modules whose source keys every cached model
(:mod:`vae_core.cache`): editing it retrains only the models defined here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_batch, check_positive_int
from .distributions import bernoulli_log_prob, discretized_logistic_log_prob, reparameterize
from .models import _check_pair, _check_z

CONV_LIKELIHOODS = ("bernoulli", "logistic")


class ConvVAE(nn.Module):
    """A convolutional VAE for square images, with the same interface as :class:`VAE`.

    Encoder: two stride-2 4×4 convolutions (side → side/2 → side/4; ``width`` then 2·``width``
    channels, ReLU), flattened, then linear maps to μ and log σ² (``z_dim`` each). Decoder: the
    mirror image — a linear map to 2·``width`` × side/4 × side/4, then two stride-2 4×4 transposed
    convolutions back to side × side. Images travel flattened, ``(batch, channels · side²)``, like
    every model of the book, so ``fit``, ``objectives`` and ``evaluate`` take it unchanged.

    Args:
        side: image side in pixels (divisible by 4; 28 for MNIST and Fashion-MNIST).
        channels: image channels (1 for grey levels).
        z_dim: latent dimensions; width: channels of the first convolution.
        likelihood: "bernoulli" (decoder outputs logits; x in [0, 1], binarized for a likelihood) or
            "logistic" (a discretized logistic per pixel for 8-bit grey levels, see
            :func:`vae_core.distributions.discretized_logistic_log_prob`: the decoder outputs a mean
            and a log-scale per pixel; x on the grid k/255).

    Used by: the convolutional chapter (planned), tests.
    """

    def __init__(self, side: int = 28, channels: int = 1, z_dim: int = 16, width: int = 32,
                 likelihood: str = "bernoulli") -> None:
        super().__init__()
        side = check_positive_int(side, "side")
        if side % 4:
            raise ValueError(f"side must be divisible by 4 (two stride-2 layers), got {side}")
        channels = check_positive_int(channels, "channels")
        z_dim = check_positive_int(z_dim, "z_dim")
        width = check_positive_int(width, "width")
        if likelihood not in CONV_LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {CONV_LIKELIHOODS}, got {likelihood!r}")
        self.side, self.channels, self.z_dim, self.width = side, channels, z_dim, width
        self.likelihood = likelihood
        self.x_dim = channels * side * side
        inner = 2 * width * (side // 4) ** 2
        self.encoder_conv1 = nn.Conv2d(channels, width, 4, stride=2, padding=1)
        self.encoder_conv2 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)
        self.to_mu = nn.Linear(inner, z_dim)
        self.to_logvar = nn.Linear(inner, z_dim)
        self.decoder_hidden = nn.Linear(z_dim, inner)
        self.decoder_deconv1 = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)
        out_channels = channels if likelihood == "bernoulli" else 2 * channels
        self.decoder_deconv2 = nn.ConvTranspose2d(width, out_channels, 4, stride=2, padding=1)

    def config(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild the architecture (used by checkpoints)."""
        return {"side": self.side, "channels": self.channels, "z_dim": self.z_dim, "width": self.width,
                "likelihood": self.likelihood}

    def _check_x(self, x: Tensor) -> Tensor:
        return check_batch(x, self.x_dim, dtype=self.to_mu.weight.dtype)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, channels · side²) in [0, 1] -> (mu, logvar) of q(z|x), each (batch, z_dim)."""
        self._check_x(x)
        h = x.reshape(len(x), self.channels, self.side, self.side)
        h = torch.relu(self.encoder_conv2(torch.relu(self.encoder_conv1(h)))).flatten(1)
        return self.to_mu(h), self.to_logvar(h)

    def _decoder_output(self, z: Tensor) -> Tensor:
        _check_z(z, self.z_dim, dtype=self.decoder_hidden.weight.dtype)
        lead = z.shape[:-1]
        q = self.side // 4
        h = torch.relu(self.decoder_hidden(z.reshape(-1, self.z_dim)))
        h = torch.relu(self.decoder_deconv1(h.reshape(-1, 2 * self.width, q, q)))
        out = self.decoder_deconv2(h)  # (n, out_channels, side, side)
        return out.reshape(*lead, out.shape[1], self.side * self.side)

    def decode(self, z: Tensor) -> Tensor:
        """z: (..., z_dim) -> (..., x_dim): logits (Bernoulli) or, for "logistic", the per-pixel mean
        and log-scale side by side, (..., 2 · x_dim) [means, log-scales]."""
        out = self._decoder_output(z)
        return out.flatten(-2)

    def _logistic_params(self, z: Tensor) -> tuple[Tensor, Tensor]:
        out = self._decoder_output(z)  # (..., 2·channels, side²)
        c = self.channels
        mean = out[..., :c, :].flatten(-2)
        log_scale = out[..., c:, :].flatten(-2).clamp(min=-7.0)  # s ≥ e^-7: a bin is 1/255 ≈ e^-5.5
        return mean, log_scale

    def mean_image(self, z: Tensor) -> Tensor:
        """E[x|z] in [0, 1], (..., x_dim) (for "logistic", the logistic's centre clamped to [0, 1])."""
        if self.likelihood == "bernoulli":
            return torch.sigmoid(self.decode(z))
        return self._logistic_params(z)[0].clamp(0.0, 1.0)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) summed over pixels, in nats: x (batch, x_dim); z (..., batch, z_dim) -> (..., batch)."""
        self._check_x(x)
        _check_pair(x, z)
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(x, self.decode(z))
        mean, log_scale = self._logistic_params(z)
        return discretized_logistic_log_prob(x, mean, log_scale)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One reparameterized pass: returns (decoder output, mu, logvar)."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar
