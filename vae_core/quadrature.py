"""Expectations under a Gaussian, E_{x ~ N(μ, σ²)}[f(x)], by deterministic quadrature.

Chapter 1 fits a Gaussian q = N(μ, σ²) to a two-mode mixture p by minimising the reverse KL,
KL(q ‖ p) = E_q[log q(x) − log p(x)], which has no closed form. The expectation is an integral over
one variable, so quadrature computes it to rounding error, and autograd differentiates it with
respect to μ and σ because the nodes move with them: x_i = μ + σ u_i for fixed standard nodes u_i.

Two rules for the standard normal u ~ N(0, 1), both as (nodes, weights) with Σ w_i f(u_i) ≈ E[f(u)]:

- :func:`standard_normal_rule`: equispaced nodes on [−L, L] with weights h φ(u_i) (the trapezoid
  rule). For an integrand that is analytic in a strip |Im u| < a around the real line and decays
  like φ, the error falls like exp(−2π a / h) (Trefethen & Weideman 2014, "The exponentially
  convergent trapezoidal rule"), and the truncation at |u| = L = 10 drops a mass of 1.5e−23. The
  default h = 0.01 resolves features of x down to about 0.01 σ. This is the accurate default.
- :func:`gauss_hermite_rule`: n Gauss–Hermite nodes. Exact for polynomials of degree < 2n, but its
  nodes are about π/√(2n) apart near the centre (0.31 for n = 100), so a feature of f narrower than
  that spacing (times σ, in x) falls between nodes. Chapter 1 shows the consequence: with n = 100 the
  reverse KL to a mixture of two N(·, 0.6²) acquires a spurious local minimum near N(0.52, 1.72²).

Lesson kept in code: a quadrature rule is accurate for *this* integrand only if its node spacing
resolves the integrand's narrowest feature; check it against an adaptive integrator
(``tests/test_quadrature.py`` compares with ``scipy.integrate.quad``), or at least halve the spacing
and see that nothing changes.

Used by: chapter 1 (``notebooks/01_kl_divergence.ipynb``); tested in ``tests/test_quadrature.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .checks import check_positive_int


def standard_normal_rule(n_nodes: int = 2001, half_width: float = 10.0,
                         dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Equispaced (trapezoid) rule for E_{u ~ N(0, 1)}[f(u)].

    Args:
        n_nodes: number of nodes, ≥ 2 (default 2001: spacing h = 0.01 on [−10, 10]).
        half_width: L, the nodes span [−L, L]; the normal mass outside is erfc(L/√2).
        dtype: of the returned tensors (float64 by default, for checks at 1e−10).

    Returns:
        (nodes u, weights w), each (n_nodes,); w_i = h φ(u_i), halved at the two ends, so that
        Σ_i w_i f(u_i) ≈ E[f(u)] (the weights sum to 1 up to the truncated mass).

    Used by: :func:`gaussian_expectation` (its default rule), chapter 1.
    """
    check_positive_int(n_nodes, "n_nodes")
    if n_nodes < 2:
        raise ValueError(f"n_nodes must be at least 2, got {n_nodes}")
    if not (math.isfinite(half_width) and half_width > 0):
        raise ValueError(f"half_width must be a finite number > 0, got {half_width!r}")
    u = torch.linspace(-half_width, half_width, n_nodes, dtype=dtype)
    h = 2 * half_width / (n_nodes - 1)
    w = h * torch.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
    w[0], w[-1] = 0.5 * w[0], 0.5 * w[-1]
    return u, w


def gauss_hermite_rule(n_nodes: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Gauss–Hermite rule for E_{u ~ N(0, 1)}[f(u)], exact for polynomials of degree < 2 n_nodes.

    Returns:
        (nodes u, weights w), each (n_nodes,): numpy's physicists' rule for ∫ e^{−t²} g(t) dt,
        rescaled by u = √2 t and w = w_t / √π.

    Used by: chapter 1, to show what a too-coarse rule does to a reverse-KL landscape.
    """
    check_positive_int(n_nodes, "n_nodes")
    t, w = np.polynomial.hermite.hermgauss(n_nodes)
    return (torch.tensor(t * math.sqrt(2.0), dtype=dtype),
            torch.tensor(w / math.sqrt(math.pi), dtype=dtype))


def gaussian_expectation(f: Callable[[Tensor], Tensor], mu: Tensor | float, sigma: Tensor | float,
                         rule: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """E_{x ~ N(μ, σ²)}[f(x)] = Σ_i w_i f(μ + σ u_i), differentiable in μ, σ and whatever f uses.

    Args:
        f: elementwise function of x; it receives x of shape (*batch, n_nodes) and must return the
            same shape. It may close over μ and σ (e.g. log q(x) in a KL; autograd follows them);
            a batched μ then enters f as ``mu[..., None]``, to line up with the node axis.
        mu: μ, a float or a tensor of shape ``batch`` (any shape that broadcasts with ``sigma``).
        sigma: σ > 0, same conventions as ``mu``.
        rule: (nodes, weights) for N(0, 1), e.g. from :func:`standard_normal_rule` (the default,
            with its default arguments) or :func:`gauss_hermite_rule`.

    Returns:
        A tensor of shape ``batch`` (0-dim for scalar μ, σ), in the units of f.

    Used by: chapter 1 (forward and reverse KL between a Gaussian and a two-mode mixture).
    """
    u, w = standard_normal_rule() if rule is None else rule
    mu_t = torch.as_tensor(mu, dtype=u.dtype)
    sigma_t = torch.as_tensor(sigma, dtype=u.dtype)
    if (sigma_t.detach() <= 0).any():
        raise ValueError("sigma must be > 0")
    x = mu_t[..., None] + sigma_t[..., None] * u          # (*batch, n_nodes)
    values = f(x)
    if values.shape != x.shape:
        raise ValueError(f"f must be elementwise: it mapped shape {tuple(x.shape)} to "
                         f"{tuple(values.shape)}")
    return (values * w).sum(-1)
