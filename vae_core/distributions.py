"""Log-densities and KL divergences of the distributions a VAE is built from.

Everything is written out by hand because the formulas are what the book teaches; each is tested
against ``torch.distributions`` (and sympy / quadrature) in ``tests/test_distributions.py``.

Shapes: parameters and samples broadcast together; the *last* dimension is the event dimension
(latent dims or pixels) and is summed over, so results have the batch shape. Units: nats.

Used by: every chapter through :mod:`vae_core.objectives`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def _as_tensor(value: Tensor | float, like: Tensor) -> Tensor:
    return value if isinstance(value, Tensor) else torch.full_like(like, float(value))


def gaussian_log_prob(z: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension.

    z, mu, logvar: broadcastable, (..., d). Returns (...), in nats.
    """
    mu = _as_tensor(mu, z)
    logvar = _as_tensor(logvar, z)
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def gaussian_kl(
    mu_q: Tensor,
    logvar_q: Tensor,
    mu_p: Tensor | float = 0.0,
    logvar_p: Tensor | float = 0.0,
) -> Tensor:
    """Closed-form KL( N(mu_q, diag e^logvar_q) || N(mu_p, diag e^logvar_p) ), summed over the last dim.

    Per dimension: ½ [ logvar_p − logvar_q + (e^logvar_q + (mu_q − mu_p)²) / e^logvar_p − 1 ].
    With the defaults the prior is N(0, I) and this is the VAE's ½ Σ (μ² + σ² − log σ² − 1).
    Computed in log space (``exp(logvar_q - logvar_p)``) so extreme log-variances do not overflow.
    mu_q, logvar_q: (..., d). Returns (...), in nats, ≥ 0.
    """
    mu_p = _as_tensor(mu_p, mu_q)
    logvar_p = _as_tensor(logvar_p, mu_q)
    per_dim = 0.5 * (
        logvar_p
        - logvar_q
        + torch.exp(logvar_q - logvar_p)
        + (mu_q - mu_p) ** 2 * torch.exp(-logvar_p)
        - 1.0
    )
    return per_dim.sum(-1)


def reparameterize(mu: Tensor, logvar: Tensor, n_samples: int | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """Draw z = mu + sigma * eps, eps ~ N(0, I): the reparameterization trick.

    mu, logvar: (..., d). Returns (..., d), or (n_samples, ..., d) when n_samples is given.
    Gradients flow to mu and logvar (the pathwise estimator).
    """
    shape = mu.shape if n_samples is None else (n_samples, *mu.shape)
    eps = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def mc_kl(
    mu_q: Tensor,
    logvar_q: Tensor,
    mu_p: Tensor | float = 0.0,
    logvar_p: Tensor | float = 0.0,
    n_samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Monte-Carlo KL: mean over n_samples of log q(z) − log p(z), z ~ q (reparameterized).

    Unbiased for :func:`gaussian_kl`. Returns (...) in nats.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    z = reparameterize(mu_q, logvar_q, n_samples, generator)
    return (gaussian_log_prob(z, mu_q, logvar_q) - gaussian_log_prob(z, mu_p, logvar_p)).mean(0)


SOFTPLUS_GROUP = 16
"""Pixels whose factors σ(|l|) ∈ [½, 1) :func:`bernoulli_log_prob` multiplies before taking one log
(their product is at least 2^−16: no underflow, and float32 keeps its relative precision)."""


def _bernoulli_log_prob_value(x: Tensor, logits: Tensor) -> Tensor:
    """Σ_i x_i l_i − softplus(l_i) over the last dimension: logits (..., D), x broadcastable to it."""
    # softplus(l) = max(l, 0) + log(1 + e^{−|l|}) and max(l, 0) = (l + |l|) / 2, so per pixel
    # x·l − softplus(l) = (x − ½)·l − ½|l| − log(1 + e^{−|l|}); the first two terms are exact for
    # binary x (0 or −|l|). 1 / (1 + e^{−|l|}) = σ(|l|) ∈ [½, 1): one log per SOFTPLUS_GROUP pixels,
    # on the product of their σ(|l|) (at least 2^−16: no underflow).
    magnitude = logits.abs()
    linear = (logits * (x - 0.5)).sub_(magnitude, alpha=0.5)
    factors = magnitude.sigmoid_()
    pad = -logits.shape[-1] % SOFTPLUS_GROUP
    if pad:
        factors = F.pad(factors, (0, pad), value=1.0)
    log_factors = factors.unflatten(-1, (-1, SOFTPLUS_GROUP)).prod(-1).log_().sum(-1)
    return linear.sum(-1) + log_factors


class _BernoulliLogProb(torch.autograd.Function):
    """Forward: :func:`_bernoulli_log_prob_value`. Backward: ∂/∂l = x − σ(l) and ∂/∂x = l, computed
    exactly as torch differentiates ``binary_cross_entropy_with_logits`` (so training follows the same
    path bit for bit; tested). x may be smaller than logits (broadcast): it is never expanded to
    their size, and its gradient is summed back to its shape."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, logits: Tensor) -> Tensor:
        ctx.save_for_backward(x, logits)
        return _bernoulli_log_prob_value(x, logits)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor
                 ) -> tuple[Tensor | None, Tensor | None]:
        x, logits = ctx.saved_tensors  # type: ignore[attr-defined]
        grad = grad.unsqueeze(-1)
        needs_x, needs_logits = ctx.needs_input_grad  # type: ignore[attr-defined]
        grad_x = (logits * grad).sum_to_size(x.shape) if needs_x else None
        grad_logits = None
        if needs_logits:  # (σ(l) − x)·(−grad): the operations of torch's BCE-with-logits backward
            residual = torch.sigmoid(logits)
            if torch.is_grad_enabled():  # create_graph: out of place, differentiable again
                grad_logits = (residual - x) * -grad
            else:
                grad_logits = residual.sub_(x).mul_(-grad)
        return grad_x, grad_logits


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """log Bernoulli(x; sigmoid(logits)), summed over the last dimension.

    Per pixel, x·l − softplus(l) with softplus(l) = max(l, 0) + log(1 + e^{−|l|}): no log(0) when
    the sigmoid saturates, the same value as ``-binary_cross_entropy_with_logits`` within float32
    rounding, and its gradient is torch's bit for bit. The element-wise log costs most on a CPU (torch
    takes it pixel by pixel); here it is taken once per :data:`SOFTPLUS_GROUP` pixels, on the product
    of their σ(|l|) = 1 / (1 + e^{−|l|}).
    x: (..., D) in [0, 1], floating point; logits broadcastable to x. Returns (...), in nats.
    For grey-level x in (0, 1) this is the "continuous Bernoulli without its normaliser", not a
    likelihood (chapter 6 explains why).
    """
    if not (x.is_floating_point() and logits.is_floating_point()):
        raise TypeError(f"x and logits must be floating point, got {x.dtype} and {logits.dtype}")
    logits = logits.expand(torch.broadcast_shapes(x.shape, logits.shape))  # a view
    return _BernoulliLogProb.apply(x, logits)


LEVELS = 256
"""Grey levels of an 8-bit pixel: the discretized likelihoods below put mass on k / 255, k = 0..255."""


def log_sigmoid_difference(a: Tensor, b: Tensor) -> Tensor:
    """log(σ(a) − σ(b)) for a > b, stable for any magnitudes (no cancellation, no log 0).

    σ(a) − σ(b) = (eᵃ − eᵇ) / ((1 + eᵃ)(1 + eᵇ)), so the log is b + log(expm1(a − b)) − softplus(a)
    − softplus(b). a, b broadcastable; returns their broadcast shape.
    """
    d = a - b
    log_expm1 = torch.where(d > 20, d + torch.log1p(-torch.exp(-d.clamp(min=20))),
                            torch.log(torch.expm1(d.clamp(max=20))))
    return b + log_expm1 - F.softplus(a) - F.softplus(b)


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor | float) -> Tensor:
    """log P(x) of 8-bit pixels under a discretized logistic, summed over the last dimension, in nats.

    Each pixel value x = k / 255 (k = 0..255) gets the mass the logistic(mean, s = exp(log_scale))
    puts on its bin [x − 1/510, x + 1/510]; the two end bins reach out to −∞ and +∞, so the 256
    probabilities of a pixel sum to exactly 1 (Salimans et al. 2017, one mixture component).

    x: (..., D) in [0, 1] on the grid k / 255 (e.g. ``to_unit_float`` of uint8 images);
    mean: broadcastable to x (any real; the grey level the pixel is centred on);
    log_scale: broadcastable to x (log of the logistic's scale, in units of [0, 1]).
    Returns (...), in nats; ``bits_per_dim`` converts.
    """
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
    log_scale = torch.as_tensor(log_scale, dtype=x.dtype, device=x.device)
    x, mean, log_scale = torch.broadcast_tensors(x, mean, log_scale)
    inv_s = torch.exp(-log_scale)
    half = 0.5 / (LEVELS - 1)
    upper = (x + half - mean) * inv_s
    lower = (x - half - mean) * inv_s
    first = -F.softplus(-upper)                # log σ(upper): the bin of 0 reaches to −∞
    last = -F.softplus(lower)                  # log(1 − σ(lower)): the bin of 1 reaches to +∞
    middle = log_sigmoid_difference(upper, lower)
    edge = 0.5 / (LEVELS - 1)
    out = torch.where(x < edge, first, torch.where(x > 1 - edge, last, middle))
    return out.sum(-1)


def bits_per_dim(nats: Tensor | float, dims: int) -> Tensor | float:
    """Convert a negative log-likelihood in nats per example to bits per dimension: nats / (dims ln 2)."""
    return nats / (dims * math.log(2.0))


def log_mean_exp(values: Tensor, dim: int = 0) -> Tensor:
    """log( mean(exp(values), dim) ), computed stably with logsumexp."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])
