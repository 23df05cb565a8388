"""Measuring the gap for any posterior and prior (the models of :mod:`vae_core.bounds`): the IWAE
log-likelihood estimate with its error bars, and on a 2-D latent space the exact log p(x), ELBO and
gap KL(q(z|x) ‖ p(z|x)) by quadrature, and the aggregate posterior's density.

Units: nats per example. Everything runs without gradients, in batches, on the model's device.

Used by: chapter 10 (``notebooks/10_closing_the_gap.ipynb``): the comparison table, the flow posterior's
exact gap, learned priors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .bounds import log_prior, log_q, log_weights_from_noise
from .checks import check_positive_int
from .evaluate import MeanEstimate, iwae_log_weight_sums, iwae_with_errors
from .train import prepare_data


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def iwae_estimate(model: nn.Module, x: Tensor | np.ndarray, k: int = 5000, batch_size: int = 100,
                  chunk_size: int = 10, seed: int = 0) -> MeanEstimate:
    """L_k per example with its mean and both standard errors, for any model (see module docstring).

    The same procedure and noise as :func:`vae_core.evaluate.iwae_estimate` (for a plain VAE the two
    agree up to float rounding): per batch of examples, ε (k, batch, z_dim) drawn at once from a
    generator seeded with ``seed``, decoded in chunks of ``chunk_size`` samples (why 10: see
    :func:`vae_core.evaluate.iwae_log_likelihood`). x: (N, x_dim) in
    [0, 1] (binary for a likelihood). Returns :class:`vae_core.evaluate.MeanEstimate` (values (N,)).
    """
    k = check_positive_int(k, "k")
    x = prepare_data(x, getattr(model, "x_dim", None), device=_device(model))

    def weigher(xb: Tensor) -> Callable[[Tensor], Tensor]:
        return lambda eps: log_weights_from_noise(model, xb, eps)

    sums = iwae_log_weight_sums(x, [k], weigher, model.z_dim, next(model.parameters()).dtype,
                                batch_size, chunk_size, seed)
    return iwae_with_errors(*sums[k], k)


class ExactGap(NamedTuple):
    """Per-example quantities of a 2-D latent model by quadrature, (N,) float64 each, in nats.

    log_px: log p(x) = log ∫ p(x|z) p(z) dz. elbo: E_q[log p(x, z) − log q(z|x)].
    kl_q_p: KL(q(z|x) ‖ p(z|x)) = log_px − elbo, the ELBO's gap.
    """

    log_px: Tensor
    elbo: Tensor
    kl_q_p: Tensor


Box = tuple[float, float, float, float]
"""A rectangle of the latent plane: (low₁, high₁, low₂, high₂)."""


def _check_box(box: Box) -> Box:
    if len(box) != 4:
        raise ValueError(f"box must be (low1, high1, low2, high2), got {box!r}")
    lo1, hi1, lo2, hi2 = (float(b) for b in box)
    if not all(math.isfinite(b) for b in (lo1, hi1, lo2, hi2)) or not (lo1 < hi1 and lo2 < hi2):
        raise ValueError(f"box must be finite with low < high on both axes, got {box!r}")
    return lo1, hi1, lo2, hi2


def latent_grid(box: Box = (-5.0, 5.0, -5.0, 5.0), h: float = 0.05, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor, float]:
    """The midpoint grid of a rectangle of the latent plane with cells of side about h.

    Each axis [low, high] is cut into n = ceil((high − low)/h) equal cells (side (high − low)/n ≤ h).
    Returns (axis₁ (n₁,), axis₂ (n₂,), points (n₁·n₂, 2), cell area); point g = (axis₁[i], axis₂[j])
    with g = i·n₂ + j (``torch.cartesian_prod`` order).
    """
    lo1, hi1, lo2, hi2 = _check_box(box)
    if not (0 < h < math.inf):
        raise ValueError(f"h must be a finite number > 0, got {h!r}")
    axes = []
    area = 1.0
    for lo, hi in ((lo1, hi1), (lo2, hi2)):
        n = math.ceil((hi - lo) / h - 1e-9)
        step = (hi - lo) / n
        axes.append(torch.linspace(lo + step / 2, hi - step / 2, n, dtype=dtype, device=device))
        area *= step
    return axes[0], axes[1], torch.cartesian_prod(*axes), area


@torch.no_grad()
def posterior_box(model: nn.Module, x: Tensor | np.ndarray, n_std: float = 3.0, pad: float = 1.0) -> Box:
    """A rectangle of the latent plane holding the posteriors of the examples x.

    On each axis: from the lowest encoder mean μ minus n_std typical widths, to the highest plus
    n_std typical widths, widened by ``pad`` and rounded out to whole numbers; the typical width is
    the median of the encoder's σ over x (a few very wide q(z|x), as an IWAE encoder learns, would
    otherwise blow the box up, although the true posterior is narrower than q there). Check a result
    by widening the box. x: (N, x_dim). Returns (low₁, high₁, low₂, high₂).
    """
    x = prepare_data(x, getattr(model, "x_dim", None), device=_device(model))
    mu, logvar = model.encode(x)
    width = n_std * torch.exp(0.5 * logvar).median(0).values + pad
    lo, hi = mu.min(0).values - width, mu.max(0).values + width
    return (math.floor(lo[0]), math.ceil(hi[0]), math.floor(lo[1]), math.ceil(hi[1]))


def hermite_noise(n: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Gauss-Hermite rule for a 2-D standard normal: (points (n², 2), weights (n²,) float64, sum 1).

    E[f(ε)] ≈ Σ_g w_g f(ε_g) for ε ~ N(0, I), exact for polynomials of degree < 2n in each coordinate.
    """
    n = check_positive_int(n, "n")
    t, w = np.polynomial.hermite.hermgauss(n)
    axis = torch.as_tensor(math.sqrt(2.0) * t, dtype=dtype, device=device)
    w1 = torch.as_tensor(w / math.sqrt(math.pi), dtype=torch.float64, device=device)
    return torch.cartesian_prod(axis, axis), torch.outer(w1, w1).reshape(-1)


@torch.no_grad()
def grid_log_px(model: nn.Module, x: Tensor | np.ndarray, box: Box | None = None, h: float = 0.05,
                chunk_size: int = 4096) -> Tensor:
    """log p(x) = log ∫ p(x|z) p(z) dz by the midpoint rule on :func:`latent_grid`, for z_dim = 2.

    Any prior (``log_prior`` of :mod:`vae_core.bounds`); box: the rectangle integrated over (default
    :func:`posterior_box` of x). The decoder runs once per grid point for all examples
    (log p(x|z_g) = x·l_g − Σ softplus(l_g)): the cost grows with the box's area, not with N.
    Accurate when h is well below the width of p(z|x) and the box holds the posterior: check with
    a finer h and a wider box. x: (N, x_dim) binary. Returns (N,) float64, nats.
    """
    check_positive_int(chunk_size, "chunk_size")
    if getattr(model, "z_dim", None) != 2:
        raise ValueError(f"needs a model with z_dim = 2, got {getattr(model, 'z_dim', None)}")
    x = prepare_data(x, getattr(model, "x_dim", None), device=_device(model))
    box = posterior_box(model, x) if box is None else box
    dtype = next(model.parameters()).dtype
    _, _, grid, area = latent_grid(box, h, dtype, x.device)
    xd = x.double()
    total = torch.full((len(x),), -math.inf, dtype=torch.float64, device=x.device)
    for start in range(0, len(grid), chunk_size):
        z = grid[start:start + chunk_size]
        logits = model.decode(z).double()
        joint = (xd @ logits.T - torch.nn.functional.softplus(logits).sum(-1)
                 + log_prior(model, z).double())
        total = torch.logaddexp(total, torch.logsumexp(joint, 1))
    return total + math.log(area)


@torch.no_grad()
def hermite_elbo(model: nn.Module, x: Tensor | np.ndarray, n: int = 16, batch_size: int = 50) -> Tensor:
    """ELBO = E_q[log p(x|z) + log p(z) − log q(z|x)] by Gauss-Hermite quadrature in the noise space.

    Every posterior of :mod:`vae_core.bounds` is z = T_x(ε) with ε ~ N(0, I) (T affine for the
    Gaussian encoder, affine then a flow for :class:`vae_core.flows.FlowVAE`), so the expectation
    is one over a standard normal: Σ_g w_g f(T_x(ε_g)) on the rule of :func:`hermite_noise`. The
    rule follows q's own scale (a fixed grid in z would be too coarse for a narrow q) and needs no
    inverse of the flow. For z_dim = 2. x: (N, x_dim) binary. Returns (N,) float64, nats.
    """
    check_positive_int(batch_size, "batch_size")
    if getattr(model, "z_dim", None) != 2:
        raise ValueError(f"needs a model with z_dim = 2, got {getattr(model, 'z_dim', None)}")
    x = prepare_data(x, getattr(model, "x_dim", None), device=_device(model))
    dtype = next(model.parameters()).dtype
    eps, w = hermite_noise(n, dtype, x.device)
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        lw = log_weights_from_noise(model, xb, eps[:, None, :].expand(-1, len(xb), -1))  # (G, b)
        out.append((w[:, None] * lw.double()).sum(0))
    return torch.cat(out)


@torch.no_grad()
def exact_gap(model: nn.Module, x: Tensor | np.ndarray, box: Box | None = None, h: float = 0.05,
              n_hermite: int = 12) -> ExactGap:
    """log p(x) (:func:`grid_log_px`), the ELBO (:func:`hermite_elbo`) and the gap between them,
    KL(q(z|x) ‖ p(z|x)) = log p(x) − ELBO ≥ 0, for a model with z_dim = 2 and any posterior and
    prior of :mod:`vae_core.bounds`. x: (N, x_dim) binary. Returns :class:`ExactGap`, (N,) each.
    """
    log_px = grid_log_px(model, x, box, h)
    elbo = hermite_elbo(model, x, n_hermite)
    return ExactGap(log_px, elbo, log_px - elbo)


@torch.no_grad()
def grid_log_q(model: nn.Module, x: Tensor, box: Box, h: float = 0.05) -> Tensor:
    """log q(z|x) on :func:`latent_grid` for a few examples: x (N, x_dim) -> (N, n₁, n₂), nats
    (entry [., i, j] at z = (axis₁[i], axis₂[j])). For pictures of the posterior's shape."""
    x = prepare_data(x, getattr(model, "x_dim", None), device=_device(model))
    a1, a2, grid, _ = latent_grid(box, h, next(model.parameters()).dtype, x.device)
    lq = log_q(model, x, grid[:, None, :].expand(-1, len(x), -1))  # (G, N)
    return lq.T.reshape(len(x), len(a1), len(a2))


@torch.no_grad()
def grid_log_posterior(model: nn.Module, x: Tensor, box: Box, h: float = 0.05) -> Tensor:
    """log p(z|x) on :func:`latent_grid` for a few examples, normalised on the grid (a density):
    x (N, x_dim) -> (N, n₁, n₂), nats. For pictures of the true posterior."""
    x = prepare_data(x, getattr(model, "x_dim", None), device=_device(model))
    a1, a2, grid, area = latent_grid(box, h, next(model.parameters()).dtype, x.device)
    joint = (model.log_likelihood(x, grid[:, None, :].expand(-1, len(x), -1))
             + log_prior(model, grid)[:, None]).T.double()
    joint = joint - torch.logsumexp(joint, 1, keepdim=True) - math.log(area)
    return joint.reshape(len(x), len(a1), len(a2))


@torch.no_grad()
def aggregate_log_density(model: nn.Module, x: Tensor | np.ndarray, z: Tensor,
                          batch_size: int = 250) -> Tensor:
    """log q(z) = log (1/N) Σ_n q(z | x_n), the aggregate posterior of the N examples x, at points z.

    z: (G, z_dim) -> (G,) in nats. Used to compare the aggregate posterior with the prior.
    """
    x = prepare_data(x, getattr(model, "x_dim", None), device=_device(model))
    total = torch.full((len(z),), -math.inf, dtype=torch.float64, device=z.device)
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        lq = log_q(model, xb, z[:, None, :].expand(-1, len(xb), -1)).double()  # (G, b)
        total = torch.logaddexp(total, torch.logsumexp(lq, 1))
    return total - math.log(len(x))


__all__ = ["iwae_estimate", "ExactGap", "Box", "latent_grid", "posterior_box", "hermite_noise",
           "grid_log_px", "hermite_elbo", "exact_gap", "grid_log_q", "grid_log_posterior",
           "aggregate_log_density"]
