"""Flow posteriors: a Gaussian encoder followed by conditional affine coupling layers (RealNVP,
Dinh et al. 2017), so that q(z|x) can bend away from an ellipse towards the true posterior.

Why affine coupling rather than planar flows (Rezende & Mohamed 2015) or IAF (Kingma et al. 2016):
a coupling layer is invertible *in closed form* in both directions at the cost of one pass, so the
density q(z|x) can be evaluated at any point z — on a whole grid of the latent plane, which the
exact-gap quadrature of chapter 10 needs — as cheaply as it can be sampled. A planar flow has no
closed-form inverse; an IAF samples in one pass but needs z_dim sequential passes to evaluate the
density of a given z.

One coupling layer splits z into a part ``a`` that passes unchanged and a part ``b`` that is moved:

    b' = b · exp(s(a, c)) + t(a, c),    log |det ∂z'/∂z| = Σ s(a, c),

with s, t a small MLP of ``a`` and a context vector c (the encoder's hidden layer for this x).
s is bounded (``S_MAX · tanh``) so that no layer can scale by more than e^S_MAX, and the last
layer of each MLP starts at zero, so an untrained flow is the identity and q(z|x) starts Gaussian.
Layers alternate which half passes, so after two layers every coordinate has moved.

Shapes: z (..., batch, z_dim) with the context (batch, context_dim), broadcast over leading sample
dimensions; log-determinants (..., batch), in nats.

Used by: chapter 10 (``notebooks/10_closing_the_gap.ipynb``): the flow posterior on the 2-D model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_positive_int
from .distributions import gaussian_log_prob
from .extended import ExtendedVAE

S_MAX = 3.0
"""Bound on the log-scale of one coupling layer: |s| ≤ S_MAX (a factor of at most e³ ≈ 20)."""


class AffineCoupling(nn.Module):
    """One conditional affine coupling layer on z of size ``z_dim`` ≥ 2.

    Args:
        z_dim: latent dimensions (≥ 2: one part must pass through unchanged).
        context_dim: size of the context vector c (0 for an unconditional flow).
        hidden: hidden units of the MLP that gives (s, t).
        parity: 0 moves the second half of the coordinates given the first, 1 the first given the
            second (the halves are ``z[..., :z_dim // 2]`` and ``z[..., z_dim // 2:]``).

    Used by: :class:`CouplingFlow`.
    """

    def __init__(self, z_dim: int, context_dim: int = 0, hidden: int = 64, parity: int = 0) -> None:
        super().__init__()
        z_dim = check_positive_int(z_dim, "z_dim", minimum=2)
        hidden = check_positive_int(hidden, "hidden")
        if context_dim < 0 or int(context_dim) != context_dim:
            raise ValueError(f"context_dim must be an integer >= 0, got {context_dim!r}")
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}")
        self.z_dim, self.context_dim, self.parity = z_dim, int(context_dim), parity
        half = z_dim // 2
        self.n_pass = half if parity == 0 else z_dim - half
        self.n_move = z_dim - self.n_pass
        self.from_pass = nn.Linear(self.n_pass, hidden)
        self.from_context = nn.Linear(self.context_dim, hidden, bias=False) if context_dim else None
        self.to_st = nn.Linear(hidden, 2 * self.n_move)
        nn.init.zeros_(self.to_st.weight)  # starts as the identity map
        nn.init.zeros_(self.to_st.bias)

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        half = self.z_dim // 2
        first, second = z[..., :half], z[..., half:]
        return (first, second) if self.parity == 0 else (second, first)

    def _join(self, passed: Tensor, moved: Tensor) -> Tensor:
        parts = (passed, moved) if self.parity == 0 else (moved, passed)
        return torch.cat(parts, dim=-1)

    def _scale_shift(self, passed: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        pre = self.from_pass(passed)
        if self.from_context is not None:
            if context is None:
                raise ValueError("this coupling layer is conditional: pass a context (batch, context_dim)")
            pre = pre + self.from_context(context)
        raw_s, t = self.to_st(torch.tanh(pre)).chunk(2, dim=-1)
        return S_MAX * torch.tanh(raw_s / S_MAX), t

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z (..., batch, z_dim), context (batch, context_dim) -> (z' same shape, log|det| (..., batch))."""
        passed, moved = self._split(z)
        s, t = self._scale_shift(passed, context)
        return self._join(passed, moved * torch.exp(s) + t), s.sum(-1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The inverse map: z' -> (z, log|det ∂z/∂z'| = −Σ s), shapes as :meth:`forward`."""
        passed, moved = self._split(z)
        s, t = self._scale_shift(passed, context)
        return self._join(passed, (moved - t) * torch.exp(-s)), -s.sum(-1)


class CouplingFlow(nn.Module):
    """A stack of ``n_layers`` :class:`AffineCoupling` layers with alternating parity.

    forward(z0, c) -> (z_K, Σ log|det|); inverse(z_K, c) -> (z0, Σ log|det| of the inverse).
    Shapes as :class:`AffineCoupling`. Used by: :class:`FlowVAE`, chapter 10.
    """

    def __init__(self, z_dim: int, context_dim: int = 0, hidden: int = 64, n_layers: int = 4) -> None:
        super().__init__()
        n_layers = check_positive_int(n_layers, "n_layers")
        self.layers = nn.ModuleList(AffineCoupling(z_dim, context_dim, hidden, parity=i % 2)
                                    for i in range(n_layers))

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for layer in self.layers:
            z, ld = layer(z, context)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z, context)
            log_det = log_det + ld
        return z, log_det


class FlowVAE(ExtendedVAE):
    """The MLP VAE of :class:`vae_core.models.VAE` with a flow on top of its Gaussian encoder.

    q(z|x): z0 ~ N(μ(x), diag σ²(x)), z = f_x(z0) with f_x a :class:`CouplingFlow` whose context is
    the encoder's hidden layer h(x), so
    log q(z|x) = log N(z0; μ, σ²) − log |det ∂f_x/∂z0|. Prior N(0, I), Bernoulli decoder, as the VAE.

    Beyond the VAE interface (``encode`` gives the *base* Gaussian; ``decode``, ``log_likelihood``,
    ``mean_image``) it exposes what :mod:`vae_core.bounds` uses for any posterior:
    ``posterior_from_noise(x, eps) -> (z, log q(z|x))`` and ``log_q(x, z)`` at given points.

    Args: x_dim, h_dim, z_dim (≥ 2) as the VAE; flow_hidden, flow_layers of the coupling flow.
    Used by: chapter 10.
    """

    def __init__(self, x_dim: int = 784, h_dim: int = 256, z_dim: int = 2, flow_hidden: int = 64,
                 flow_layers: int = 4) -> None:
        super().__init__(x_dim, h_dim, z_dim)
        self.flow = CouplingFlow(z_dim, h_dim, flow_hidden, flow_layers)
        self.flow_hidden, self.flow_layers = flow_hidden, flow_layers

    def config(self) -> dict[str, Any]:
        """The constructor arguments (used by checkpoints)."""
        return {"x_dim": self.x_dim, "h_dim": self.h_dim, "z_dim": self.z_dim,
                "flow_hidden": self.flow_hidden, "flow_layers": self.flow_layers}

    def _encode_with_context(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.vae._check_x(x)
        h = torch.relu(self.vae.encoder_hidden(x))
        return self.vae.to_mu(h), self.vae.to_logvar(h), h

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The base Gaussian N(μ, σ²) of q before the flow: x (batch, x_dim) -> (mu, logvar)."""
        return self.vae.encode(x)

    def posterior_from_noise(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """z = f_x(μ + σ ε) and log q(z|x): eps (k, batch, z_dim) standard normal -> ((k, batch, z_dim),
        (k, batch)) in nats. Differentiable (the pathwise estimator)."""
        mu, logvar, h = self._encode_with_context(x)
        z0 = mu + torch.exp(0.5 * logvar) * eps
        z, log_det = self.flow(z0, h)
        return z, gaussian_log_prob(z0, mu, logvar) - log_det

    def log_q(self, x: Tensor, z: Tensor) -> Tensor:
        """log q(z|x) at given points: x (batch, x_dim), z (..., batch, z_dim) -> (..., batch), nats."""
        mu, logvar, h = self._encode_with_context(x)
        z0, log_det_inv = self.flow.inverse(z, h)
        return gaussian_log_prob(z0, mu, logvar) + log_det_inv


__all__ = ["S_MAX", "AffineCoupling", "CouplingFlow", "FlowVAE"]
