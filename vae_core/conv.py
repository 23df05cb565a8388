"""Convolutional VAEs for square images (the convolutional chapter).

:class:`ConvVAE` has the interface of :class:`vae_core.models.VAE` (``encode``, ``decode``,
``log_likelihood``, ``mean_image``; images travel flattened, ``(batch, channels · side²)``), so
``fit``, ``objectives`` and ``evaluate`` take it unchanged. Grey levels: a discretized logistic per
pixel (:func:`vae_core.distributions.discretized_logistic_log_prob`), reported in bits per dimension
by :func:`vae_core.distributions.bits_per_dim`.

Two more pieces of the convolutional chapter live here: *spatial* latents (``latent_channels``:
z is a c × side/4 × side/4 feature map, the first stage of a latent diffusion model) and
:class:`MLPLogisticVAE`, the MLP baseline with the same 8-bit likelihood (for "MLP vs conv").

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
MIN_LOG_SCALE = -7.0
"""Floor of the logistic's log-scale: s ≥ e⁻⁷ ≈ 0.0009, a quarter of a grey-level bin (1/255)."""


def _logistic_split(out: Tensor, channels: int) -> tuple[Tensor, Tensor]:
    """Decoder output (..., 2·channels, P) -> (mean, log_scale), each (..., channels·P)."""
    mean = out[..., :channels, :].flatten(-2)
    log_scale = out[..., channels:, :].flatten(-2).clamp(min=MIN_LOG_SCALE)
    return mean, log_scale


class ConvVAE(nn.Module):
    """A convolutional VAE for square images, with the same interface as :class:`VAE`.

    Encoder: two stride-2 4×4 convolutions (side → side/2 → side/4; ``width`` then 2·``width``
    channels, ReLU), flattened, then linear maps to μ and log σ² (``z_dim`` each). Decoder: the
    mirror image — a linear map to 2·``width`` × side/4 × side/4, then two stride-2 4×4 transposed
    convolutions back to side × side. Images travel flattened, ``(batch, channels · side²)``, like
    every model of the book, so ``fit``, ``objectives`` and ``evaluate`` take it unchanged.

    With ``latent_channels = c`` the latent is *spatial*: z is a c × side/4 × side/4 feature map
    (flattened channel-major to ``z_dim = c · (side/4)²``); a 1×1 convolution maps the encoder's
    features to μ and log σ² per position, and a 3×3 convolution maps z back to 2·``width``
    channels before the transposed convolutions. Shapes for side 28, width w, c latent channels:
    (1, 28, 28) → (w, 14, 14) → (2w, 7, 7) → z (c, 7, 7) → (2w, 7, 7) → (w, 14, 14) → (1 or 2, 28, 28).

    Args:
        side: image side in pixels (divisible by 4; 28 for MNIST and Fashion-MNIST).
        channels: image channels (1 for grey levels).
        z_dim: latent dimensions of a vector latent (default 16); with ``latent_channels`` leave it
            None or give c · (side/4)². width: channels of the first convolution.
        latent_channels: None (a vector latent) or c ≥ 1 (a spatial latent, see above).
        likelihood: "bernoulli" (decoder outputs logits; x in [0, 1], binarized for a likelihood) or
            "logistic" (a discretized logistic per pixel for 8-bit grey levels, see
            :func:`vae_core.distributions.discretized_logistic_log_prob`: the decoder outputs a mean
            and a log-scale per pixel; x on the grid k/255).

    Used by: chapter 9 (convolutional VAEs), tests.
    """

    def __init__(self, side: int = 28, channels: int = 1, z_dim: int | None = None, width: int = 32,
                 likelihood: str = "bernoulli", latent_channels: int | None = None) -> None:
        super().__init__()
        side = check_positive_int(side, "side")
        if side % 4:
            raise ValueError(f"side must be divisible by 4 (two stride-2 layers), got {side}")
        channels = check_positive_int(channels, "channels")
        width = check_positive_int(width, "width")
        if latent_channels is not None:
            latent_channels = check_positive_int(latent_channels, "latent_channels")
            spatial = latent_channels * (side // 4) ** 2
            if z_dim is not None and z_dim != spatial:
                raise ValueError(f"z_dim={z_dim} contradicts latent_channels={latent_channels}: a "
                                 f"spatial latent has {latent_channels}·{side // 4}² = {spatial} dimensions")
            z_dim = spatial
        z_dim = check_positive_int(16 if z_dim is None else z_dim, "z_dim")
        if likelihood not in CONV_LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {CONV_LIKELIHOODS}, got {likelihood!r}")
        self.side, self.channels, self.z_dim, self.width = side, channels, z_dim, width
        self.likelihood, self.latent_channels = likelihood, latent_channels
        self.x_dim = channels * side * side
        inner = 2 * width * (side // 4) ** 2
        self.encoder_conv1 = nn.Conv2d(channels, width, 4, stride=2, padding=1)
        self.encoder_conv2 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)
        if latent_channels is None:
            self.to_mu = nn.Linear(inner, z_dim)
            self.to_logvar = nn.Linear(inner, z_dim)
            self.decoder_hidden = nn.Linear(z_dim, inner)
        else:  # per position: 1×1 convolutions to μ, log σ²; a 3×3 convolution back
            self.to_mu = nn.Conv2d(2 * width, latent_channels, 1)
            self.to_logvar = nn.Conv2d(2 * width, latent_channels, 1)
            self.decoder_hidden = nn.Conv2d(latent_channels, 2 * width, 3, padding=1)
        self.decoder_deconv1 = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)
        out_channels = channels if likelihood == "bernoulli" else 2 * channels
        self.decoder_deconv2 = nn.ConvTranspose2d(width, out_channels, 4, stride=2, padding=1)

    def config(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild the architecture (used by checkpoints)."""
        return {"side": self.side, "channels": self.channels, "z_dim": self.z_dim, "width": self.width,
                "likelihood": self.likelihood, "latent_channels": self.latent_channels}

    def _check_x(self, x: Tensor) -> Tensor:
        return check_batch(x, self.x_dim, dtype=self.encoder_conv1.weight.dtype)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, channels · side²) in [0, 1] -> (mu, logvar) of q(z|x), each (batch, z_dim)."""
        self._check_x(x)
        h = x.reshape(len(x), self.channels, self.side, self.side)
        h = torch.relu(self.encoder_conv2(torch.relu(self.encoder_conv1(h))))
        if self.latent_channels is None:
            h = h.flatten(1)
        return self.to_mu(h).flatten(1), self.to_logvar(h).flatten(1)

    def _decoder_output(self, z: Tensor) -> Tensor:
        _check_z(z, self.z_dim, dtype=self.decoder_hidden.weight.dtype)
        lead = z.shape[:-1]
        q = self.side // 4
        z = z.reshape(-1, self.z_dim)
        if self.latent_channels is not None:
            z = z.reshape(-1, self.latent_channels, q, q)
        h = torch.relu(self.decoder_hidden(z))
        h = torch.relu(self.decoder_deconv1(h.reshape(-1, 2 * self.width, q, q)))
        out = self.decoder_deconv2(h)  # (n, out_channels, side, side)
        return out.reshape(*lead, out.shape[1], self.side * self.side)

    def decode(self, z: Tensor) -> Tensor:
        """z: (..., z_dim) -> (..., x_dim): logits (Bernoulli) or, for "logistic", the per-pixel mean
        and log-scale side by side, (..., 2 · x_dim) [means, log-scales]."""
        out = self._decoder_output(z)
        return out.flatten(-2)

    def _logistic_params(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return _logistic_split(self._decoder_output(z), self.channels)  # (..., 2·channels, side²)

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


class MLPLogisticVAE(nn.Module):
    """The MLP VAE of :class:`vae_core.models.VAE` with 8-bit pixels: a discretized logistic decoder.

    x_dim → h_dim → (μ, log σ²) in R^z_dim → h_dim → (mean, log-scale) per pixel, ReLU; p(x|z) is
    :func:`vae_core.distributions.discretized_logistic_log_prob` (mass on the 256 levels k/255,
    summing to 1). The convolutional chapter's baseline for "MLP vs conv" with the same likelihood.

    Args: x_dim (784 for 28 × 28 grey images), h_dim hidden units, z_dim latent dimensions.

    Used by: chapter 9 (MLP vs convolutional at matched parameters and compute), tests.
    """

    def __init__(self, x_dim: int = 784, h_dim: int = 400, z_dim: int = 16) -> None:
        super().__init__()
        self.x_dim = check_positive_int(x_dim, "x_dim")
        self.h_dim = check_positive_int(h_dim, "h_dim")
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.likelihood = "logistic"
        self.encoder_hidden = nn.Linear(x_dim, h_dim)
        self.to_mu = nn.Linear(h_dim, z_dim)
        self.to_logvar = nn.Linear(h_dim, z_dim)
        self.decoder_hidden = nn.Linear(z_dim, h_dim)
        self.to_x = nn.Linear(h_dim, 2 * x_dim)  # [means, log-scales]

    def config(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild the architecture (used by checkpoints)."""
        return {"x_dim": self.x_dim, "h_dim": self.h_dim, "z_dim": self.z_dim}

    def _check_x(self, x: Tensor) -> Tensor:
        return check_batch(x, self.x_dim, dtype=self.encoder_hidden.weight.dtype)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, x_dim) in [0, 1] -> (mu, logvar) of q(z|x), each (batch, z_dim)."""
        self._check_x(x)
        h = torch.relu(self.encoder_hidden(x))
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """z: (..., z_dim) -> (..., 2 · x_dim): per-pixel means, then log-scales."""
        _check_z(z, self.z_dim, dtype=self.decoder_hidden.weight.dtype)
        return self.to_x(torch.relu(self.decoder_hidden(z)))

    def _logistic_params(self, z: Tensor) -> tuple[Tensor, Tensor]:
        out = self.decode(z)
        return _logistic_split(out.reshape(*out.shape[:-1], 2, self.x_dim), 1)

    def mean_image(self, z: Tensor) -> Tensor:
        """The logistic's centre clamped to [0, 1], (..., x_dim)."""
        return self._logistic_params(z)[0].clamp(0.0, 1.0)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) in nats, summed over pixels: x (batch, x_dim) on the grid k/255;
        z (..., batch, z_dim) -> (..., batch)."""
        self._check_x(x)
        _check_pair(x, z)
        mean, log_scale = self._logistic_params(z)
        return discretized_logistic_log_prob(x, mean, log_scale)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One reparameterized pass: returns (decoder output, mu, logvar)."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar
