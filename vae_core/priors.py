"""Learned priors: a mixture of Gaussians and the VampPrior (Tomczak & Welling 2018), and a VAE that
uses one instead of N(0, I).

Why learn the prior: the ELBO's KL term, averaged over the data, is I_q(x; z) + KL(q(z) ‖ p(z)),
with q(z) = E_x[q(z|x)] the aggregate posterior (chapter 6). A fixed N(0, I) prior pays the second
term whatever the encoder does; a prior that can take q(z)'s shape stops paying it. The optimal
prior for a given encoder *is* q(z), which the VampPrior approximates directly:

- mixture of Gaussians: p(z) = Σ_k π_k N(z; m_k, diag s_k²), with π = softmax(logits), means,
  log-variances and logits all learned;
- VampPrior: p(z) = (1/K) Σ_k q(z | u_k), the encoder's own posterior at K learned
  *pseudo-inputs* u_k (images in [0, 1], here the sigmoid of free parameters), i.e. q(z) with the
  data replaced by K points the training chooses.

Shapes: z (..., z_dim) -> log p(z) (...), in nats.

Used by: chapter 10 (``notebooks/10_closing_the_gap.ipynb``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_positive_int
from .distributions import gaussian_log_prob
from .extended import ExtendedVAE

PRIORS = ("standard", "mog", "vamp")


def _mixture_log_prob(z: Tensor, log_weights: Tensor, means: Tensor, logvars: Tensor) -> Tensor:
    """log Σ_k exp(log_weights_k) N(z; means_k, e^logvars_k): z (..., d), (K,), (K, d), (K, d) -> (...)."""
    comp = gaussian_log_prob(z.unsqueeze(-2), means, logvars)  # (..., K)
    return torch.logsumexp(comp + log_weights, dim=-1)


def _check_z(z: Tensor, z_dim: int) -> None:
    if not isinstance(z, Tensor) or not torch.is_floating_point(z):
        raise TypeError(f"z must be a float tensor, got {type(z).__name__}")
    if z.dim() < 1 or z.shape[-1] != z_dim:
        raise ValueError(f"z must have shape (..., {z_dim}), got {tuple(z.shape)}")


class MixturePrior(nn.Module):
    """p(z) = Σ_k π_k N(z; m_k, diag e^{v_k}), everything learned.

    Args: z_dim; n_components K; init_spread: the initial means are drawn N(0, init_spread² I)
    (from the global RNG: seed it, or build through :func:`vae_core.cache.pretrained`), the
    log-variances start at 0 and the weights equal.
    Used by: :class:`PriorVAE`, chapter 10.
    """

    def __init__(self, z_dim: int, n_components: int = 10, init_spread: float = 1.0) -> None:
        super().__init__()
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.n_components = check_positive_int(n_components, "n_components")
        self.means = nn.Parameter(init_spread * torch.randn(n_components, z_dim))
        self.logvars = nn.Parameter(torch.zeros(n_components, z_dim))
        self.logits = nn.Parameter(torch.zeros(n_components))

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        """(log π (K,), means (K, d), log-variances (K, d))."""
        return torch.log_softmax(self.logits, -1), self.means, self.logvars

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z), nats: z (..., z_dim) -> (...)."""
        _check_z(z, self.z_dim)
        return _mixture_log_prob(z, *self.components())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws from p(z): (n, z_dim)."""
        return _sample_mixture(n, *self.components(), generator)


class VampPrior(nn.Module):
    """p(z) = (1/K) Σ_k q(z | u_k): the encoder's posterior at K learned pseudo-inputs.

    The pseudo-inputs are u_k = sigmoid(raw_k), images in (0, 1) (so any encoder that checks its
    input range accepts them), started near a blank page (mean intensity about 0.05, as in
    Tomczak & Welling's code) with a little noise from the global RNG. The encoder is *not* owned
    here: :meth:`log_prob` takes the function that maps images to (μ, log σ²), so the prior shares
    the VAE's encoder weights and its gradient trains them too.

    Args: x_dim, z_dim, n_pseudo K. Used by: :class:`PriorVAE`, chapter 10.
    """

    def __init__(self, x_dim: int, z_dim: int, n_pseudo: int = 50) -> None:
        super().__init__()
        self.x_dim = check_positive_int(x_dim, "x_dim")
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.n_pseudo = check_positive_int(n_pseudo, "n_pseudo")
        self.raw = nn.Parameter(math.log(0.05 / 0.95) + 0.5 * torch.randn(n_pseudo, x_dim))

    def pseudo_inputs(self) -> Tensor:
        """The K pseudo-inputs u_k in (0, 1): (K, x_dim)."""
        return torch.sigmoid(self.raw)

    def components(self, encode: Any) -> tuple[Tensor, Tensor, Tensor]:
        """(log π = −log K (K,), means (K, d), log-variances (K, d)) of the mixture q(z|u_k)."""
        mu, logvar = encode(self.pseudo_inputs())
        log_w = torch.full((self.n_pseudo,), -math.log(self.n_pseudo), dtype=mu.dtype, device=mu.device)
        return log_w, mu, logvar

    def log_prob(self, z: Tensor, encode: Any) -> Tensor:
        """log p(z), nats: z (..., z_dim) -> (...). encode: images (K, x_dim) -> (μ, log σ²), (K, d) each."""
        _check_z(z, self.z_dim)
        return _mixture_log_prob(z, *self.components(encode))

    @torch.no_grad()
    def sample(self, n: int, encode: Any, generator: torch.Generator | None = None) -> Tensor:
        """n draws from p(z): (n, z_dim)."""
        return _sample_mixture(n, *self.components(encode), generator)


def _sample_mixture(n: int, log_w: Tensor, means: Tensor, logvars: Tensor,
                    generator: torch.Generator | None) -> Tensor:
    n = check_positive_int(n, "n")
    k = torch.multinomial(log_w.exp(), n, replacement=True, generator=generator)
    eps = torch.randn((n, means.shape[-1]), generator=generator, dtype=means.dtype, device=means.device)
    return means[k] + torch.exp(0.5 * logvars[k]) * eps


class PriorVAE(ExtendedVAE):
    """The MLP VAE of :class:`vae_core.models.VAE` with a learned prior p(z) instead of N(0, I).

    Same encoder q(z|x) = N(μ(x), diag σ²(x)) and Bernoulli decoder; ``log_prior(z)`` is the learned
    prior's log-density, which :mod:`vae_core.bounds` uses in the ELBO and the IWAE bound (the KL
    to a mixture has no closed form, so the ELBO is estimated with its Monte-Carlo KL).

    Args:
        x_dim, h_dim, z_dim: as the VAE.
        prior: "mog" (:class:`MixturePrior`), "vamp" (:class:`VampPrior`) or "standard" (N(0, I),
            the plain VAE: for tests and comparisons).
        n_components: K, the mixture's components or the VampPrior's pseudo-inputs.

    Used by: chapter 10.
    """

    def __init__(self, x_dim: int = 784, h_dim: int = 256, z_dim: int = 2, prior: str = "vamp",
                 n_components: int = 50) -> None:
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        super().__init__(x_dim, h_dim, z_dim)
        self.prior_kind, self.n_components = prior, n_components
        if prior == "mog":
            self.prior = MixturePrior(z_dim, n_components)
        elif prior == "vamp":
            self.prior = VampPrior(x_dim, z_dim, n_components)

    def config(self) -> dict[str, Any]:
        """The constructor arguments (used by checkpoints)."""
        return {"x_dim": self.x_dim, "h_dim": self.h_dim, "z_dim": self.z_dim,
                "prior": self.prior_kind, "n_components": self.n_components}

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z) of the learned prior, nats: z (..., z_dim) -> (...)."""
        if self.prior_kind == "standard":
            _check_z(z, self.z_dim)
            return gaussian_log_prob(z)
        if self.prior_kind == "mog":
            return self.prior.log_prob(z)
        return self.prior.log_prob(z, self.vae.encode)

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws from the prior: (n, z_dim)."""
        if self.prior_kind == "standard":
            p = next(self.parameters())
            return torch.randn((check_positive_int(n, "n"), self.z_dim), generator=generator,
                               dtype=p.dtype, device=p.device)
        if self.prior_kind == "mog":
            return self.prior.sample(n, generator)
        return self.prior.sample(n, self.vae.encode, generator)


__all__ = ["PRIORS", "MixturePrior", "VampPrior", "PriorVAE"]
