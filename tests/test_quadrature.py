"""Tests of vae_core.quadrature against independent references.

Oracles: closed-form Gaussian moments (E[u^k] = (k − 1)!! for even k), scipy.integrate.quad (adaptive
Gauss–Kronrod) on chapter 1's own mixture p = 0.3 N(−2, 0.6²) + 0.7 N(2, 0.6²), for the reverse and
forward KL to q = N(μ, σ²) and, by central finite differences of quad, their gradients.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from vae_core.quadrature import gauss_hermite_rule, gaussian_expectation, standard_normal_rule

F64 = torch.float64
W, M, S = (0.3, 0.7), (-2.0, 2.0), 0.6
KINK = (math.log(W[0] / W[1]) * S**2) / (M[1] - M[0])   # where the two components of p are equal
MOMENT_MATCHED = (0.8, math.sqrt(3.72))                  # mean and sd of p
POINTS = [(0.52, 1.72), MOMENT_MATCHED, (2.0, 0.6), (-2.0, 0.6), (0.0, 1.0), (-1.0, 3.0)]


# ----------------------------------------------------------------- scalar references (math only)
def _log_normal(x: float, m: float, s: float) -> float:
    return -0.5 * math.log(2 * math.pi * s * s) - (x - m) ** 2 / (2 * s * s)


def _log_p(x: float) -> float:
    a, b = (math.log(w) + _log_normal(x, m, S) for w, m in zip(W, M, strict=True))
    hi = max(a, b)
    return hi + math.log(math.exp(a - hi) + math.exp(b - hi))


def _quad(f, lo: float, hi: float) -> float:
    pts = [p for p in (KINK, M[0], M[1]) if lo < p < hi]
    value, err = integrate.quad(f, lo, hi, points=pts, epsabs=1e-14, epsrel=1e-13, limit=1000)
    assert err < 1e-10
    return value


def _reverse_quad(mu: float, sigma: float) -> float:      # KL(q || p) = E_q[log q − log p]
    def f(x: float) -> float:
        lq = _log_normal(x, mu, sigma)
        return math.exp(lq) * (lq - _log_p(x))
    return _quad(f, mu - 14 * sigma, mu + 14 * sigma)


def _forward_quad(mu: float, sigma: float) -> float:      # KL(p || q) = E_p[log p − log q]
    def f(x: float) -> float:
        lp = _log_p(x)
        return math.exp(lp) * (lp - _log_normal(x, mu, sigma))
    return _quad(f, -12.0, 12.0)


# ----------------------------------------------------------------- the same KLs by our quadrature
def _log_p_t(x):
    comps = torch.stack([math.log(w) - 0.5 * math.log(2 * math.pi * S * S) - (x - m) ** 2 / (2 * S * S)
                         for w, m in zip(W, M, strict=True)])
    return torch.logsumexp(comps, 0)


def _log_q_t(x, mu, sigma):
    return -0.5 * torch.log(2 * math.pi * sigma**2) - (x - mu) ** 2 / (2 * sigma**2)


def _reverse(mu, sigma, rule=None):
    return gaussian_expectation(lambda x: _log_q_t(x, mu, sigma) - _log_p_t(x), mu, sigma, rule)


def _forward(mu, sigma, rule=None):
    return sum(w * gaussian_expectation(lambda x: _log_p_t(x) - _log_q_t(x, mu, sigma), m, S, rule)
               for w, m in zip(W, M, strict=True))


def _t(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64, requires_grad=True)


# ----------------------------------------------------------------- tests
def test_standard_rule_reproduces_gaussian_moments():
    u, w = standard_normal_rule()
    assert u.shape == w.shape == (2001,) and u.dtype == F64
    for k in range(0, 13):
        exact = 0.0 if k % 2 else float(math.prod(range(k - 1, 0, -2)))   # (k − 1)!!
        assert abs((w * u**k).sum().item() - exact) < 1e-12 * max(1.0, exact)


def test_gauss_hermite_rule_is_exact_for_low_degree_polynomials():
    u, w = gauss_hermite_rule(10)
    for k in range(0, 20):
        exact = 0.0 if k % 2 else float(math.prod(range(k - 1, 0, -2)))
        scale = (w * u.abs() ** k).sum().item()                 # rounding is relative to E|u|^k
        assert abs((w * u**k).sum().item() - exact) < 1e-13 * scale


@pytest.mark.parametrize("rule", [None, gauss_hermite_rule(20)])
def test_expectation_of_polynomial_and_its_gradient(rule):
    mu, sigma = _t(0.7), _t(1.3)
    value = gaussian_expectation(lambda x: x**4, mu, sigma, rule)
    exact = mu**4 + 6 * mu**2 * sigma**2 + 3 * sigma**4          # E[x^4] under N(mu, sigma^2)
    assert abs(value.item() - exact.item()) < 1e-11
    g = torch.autograd.grad(value, (mu, sigma))
    g_exact = torch.autograd.grad(exact, (mu, sigma))
    for a, b in zip(g, g_exact, strict=True):
        assert abs(a.item() - b.item()) < 1e-10


@pytest.mark.parametrize("mu,sigma", POINTS)
def test_reverse_and_forward_kl_match_adaptive_quadrature(mu, sigma):
    assert abs(_reverse(_t(mu), _t(sigma)).item() - _reverse_quad(mu, sigma)) < 1e-10
    assert abs(_forward(_t(mu), _t(sigma)).item() - _forward_quad(mu, sigma)) < 1e-10


def test_book_values_of_chapter_1():
    # The moment-matched q's reverse KL is 1.279 (the 100-node Gauss-Hermite rule said 1.291).
    assert abs(_reverse_quad(*MOMENT_MATCHED) - 1.2793) < 1e-4
    gh = _reverse(_t(MOMENT_MATCHED[0]), _t(MOMENT_MATCHED[1]), gauss_hermite_rule(100)).item()
    assert gh - _reverse_quad(*MOMENT_MATCHED) > 0.01
    # Where the 100-node rule has a stationary point, the true gradient is far from zero.
    mu, log_sigma = _t(0.521), _t(math.log(1.718))
    (gm, gl) = torch.autograd.grad(_reverse(mu, log_sigma.exp()), (mu, log_sigma))
    assert abs(gm.item() + 0.057) < 0.002 and abs(gl.item() - 0.058) < 0.002


@pytest.mark.parametrize("mu,sigma", [(0.52, 1.72), MOMENT_MATCHED, (-1.0, 3.0)])
def test_gradients_match_finite_differences_of_adaptive_quadrature(mu, sigma):
    h = 1e-4
    for kl, ref in ((_reverse, _reverse_quad), (_forward, _forward_quad)):
        m, s = _t(mu), _t(sigma)
        gm, gs = torch.autograd.grad(kl(m, s), (m, s))
        fd_m = (ref(mu + h, sigma) - ref(mu - h, sigma)) / (2 * h)
        fd_s = (ref(mu, sigma + h) - ref(mu, sigma - h)) / (2 * h)
        assert abs(gm.item() - fd_m) < 1e-6 and abs(gs.item() - fd_s) < 1e-6


def test_forward_kl_gradient_vanishes_at_moment_matching():
    m, s = _t(MOMENT_MATCHED[0]), _t(MOMENT_MATCHED[1])
    for g in torch.autograd.grad(_forward(m, s), (m, s)):
        assert abs(g.item()) < 1e-12


def test_default_rule_is_converged_on_the_mixture():
    finer = standard_normal_rule(8001, half_width=12.0)
    for mu, sigma in [(0.3, 4.0), (0.52, 1.72)]:
        a = _reverse(_t(mu), _t(sigma)).item()
        b = _reverse(_t(mu), _t(sigma), finer).item()
        assert abs(a - b) < 1e-12


def test_batched_parameters_broadcast():
    mus = torch.tensor([0.52, 2.0, -1.0], dtype=F64)
    sigmas = torch.tensor([1.72, 0.6, 3.0], dtype=F64)
    def f(x):                                                 # a batched mu is used as mu[..., None]
        return _log_q_t(x, mus[:, None], sigmas[:, None]) - _log_p_t(x)

    batched = gaussian_expectation(f, mus, sigmas)
    one_by_one = torch.stack([_reverse(m, s) for m, s in zip(mus, sigmas, strict=True)])
    assert batched.shape == (3,) and torch.allclose(batched, one_by_one, rtol=0, atol=1e-14)
    assert gaussian_expectation(torch.sin, 0.0, 1.0).shape == ()


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="sigma"):
        gaussian_expectation(torch.sin, 0.0, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="elementwise"):
        gaussian_expectation(lambda x: x.sum(-1), 0.0, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        standard_normal_rule(1)
    with pytest.raises(ValueError, match="half_width"):
        standard_normal_rule(11, half_width=0.0)
