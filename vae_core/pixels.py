"""Continuous densities vs 8-bit pixels: the discretized Gaussian and the bin-width correction.

An 8-bit image is a point of a *discrete* set (256 levels per pixel, k/255 on the [0, 1] scale),
so its likelihood is a probability ≤ 1 and −log P ≥ 0. A Gaussian decoder gives a *density*
instead, which can exceed 1 anywhere; its log-density is comparable with a probability only after
multiplying by the volume of a pixel's bin (width 1/255 on this grid): log P(bin) ≈ log p(x) −
D·log 255 (:func:`density_to_pmf_nats`, the midpoint rule), or exactly by integrating the density
over each bin (:func:`discretized_gaussian_log_prob`, end bins reaching to ±∞ so the 256
probabilities sum to 1, as for :func:`vae_core.distributions.discretized_logistic_log_prob`).

Used by: chapter 9 (``notebooks/09_convolutional.ipynb``): comparing the Bernoulli, Gaussian and
discretized-logistic likelihoods.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .distributions import LEVELS

BIN_WIDTH = 1.0 / (LEVELS - 1)
"""Width of one grey-level bin on the [0, 1] scale whose levels are k/255 (k = 0..255)."""


def _log_normal_cdf_difference(b: Tensor, a: Tensor) -> Tensor:
    """log(Φ(b) − Φ(a)) for b > a, stable in both tails: above 0 it uses Φ(b) − Φ(a) = Φ(−a) − Φ(−b)."""
    flip = a > 0
    hi = torch.where(flip, -a, b)
    lo = torch.where(flip, -b, a)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(lo)
    return log_hi + torch.log(-torch.expm1(log_lo - log_hi))


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor | float, log_var: Tensor | float) -> Tensor:
    """log P(x) of 8-bit pixels under a Gaussian integrated over each grey level's bin, in nats.

    Pixel value x = k/255 gets Φ((x + h − m)/σ) − Φ((x − h − m)/σ) with h = 1/510; the bin of 0
    reaches to −∞ and the bin of 1 to +∞, so the 256 probabilities of a pixel sum to exactly 1.
    x: (..., D) on the grid k/255 in [0, 1]; mean, log_var (log σ²): broadcastable to x.
    Returns (...), summed over the last dimension.

    Used by: chapter 9 (the Gaussian decoder's ELBO as a bound on an 8-bit log-likelihood).
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"x must be a float tensor on the grid k/255, got {x.dtype}")
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
    log_var = torch.as_tensor(log_var, dtype=x.dtype, device=x.device)
    x, mean, log_var = torch.broadcast_tensors(x, mean, log_var)
    inv_sigma = torch.exp(-0.5 * log_var)
    half = 0.5 * BIN_WIDTH
    upper = (x + half - mean) * inv_sigma
    lower = (x - half - mean) * inv_sigma
    first = torch.special.log_ndtr(upper)          # bin of 0: (−∞, h]
    last = torch.special.log_ndtr(-lower)          # bin of 1: [1 − h, ∞)
    middle = _log_normal_cdf_difference(upper, lower)
    out = torch.where(x < half, first, torch.where(x > 1 - half, last, middle))
    return out.sum(-1)


def density_to_pmf_nats(log_density: Tensor | float, dims: int) -> Tensor | float:
    """A log-density of D pixels on the [0, 1] scale -> the log-probability of their bins (midpoint
    rule): log p(x) + D · log(1/255). Exact only when the density is flat across each bin; a valid
    bound needs dequantization (train and evaluate on x + uniform noise within the bin).
    log_density: nats per example; dims: D ≥ 1 pixels. Returns nats per example.

    Used by: chapter 9 (the bin-width correction of a Gaussian log-density).
    """
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise ValueError(f"dims must be a positive int, got {dims!r}")
    return log_density + dims * math.log(BIN_WIDTH)
