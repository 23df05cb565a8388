"""The book's VAE with one part replaced: what :class:`vae_core.flows.FlowVAE` (a flow posterior) and
:class:`vae_core.priors.PriorVAE` (a learned prior) share.

Both keep the plain VAE's encoder, decoder and Bernoulli likelihood, held as ``self.vae``; this base
class builds it and hands those calls to it, so each extension only writes the part it replaces.

Used by: :mod:`vae_core.flows`, :mod:`vae_core.priors` (chapter 10).
"""

from __future__ import annotations

from torch import Tensor, nn

from .models import VAE


class ExtendedVAE(nn.Module):
    """A :class:`vae_core.models.VAE` (``self.vae``) whose encode, decode, mean_image and
    log_likelihood are the extended model's; subclasses add the part they replace.

    Args: x_dim, h_dim, z_dim as the VAE (``likelihood`` is "bernoulli"). The inner VAE is built
    first, so a subclass's own modules draw their initial values after it.
    """

    def __init__(self, x_dim: int, h_dim: int, z_dim: int) -> None:
        super().__init__()
        self.vae = VAE(x_dim, h_dim, z_dim)
        self.x_dim, self.h_dim, self.z_dim, self.likelihood = x_dim, h_dim, z_dim, "bernoulli"

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (batch, x_dim) in [0, 1] -> (mu, logvar) of the VAE's Gaussian, each (batch, z_dim)."""
        return self.vae.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        """z (..., z_dim) -> logits (..., x_dim)."""
        return self.vae.decode(z)

    def mean_image(self, z: Tensor) -> Tensor:
        """E[x|z] in [0, 1], (..., x_dim)."""
        return self.vae.mean_image(z)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) summed over pixels, nats: x (batch, x_dim), z (..., batch, z_dim) -> (..., batch)."""
        return self.vae.log_likelihood(x, z)


__all__ = ["ExtendedVAE"]
