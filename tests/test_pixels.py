"""Tests for vae_core.pixels: the discretized Gaussian against torch.distributions.Normal and
brute-force sums over the 256 levels, and the bin-width correction against quadrature."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from vae_core.pixels import BIN_WIDTH, density_to_pmf_nats, discretized_gaussian_log_prob

GRID = torch.arange(256, dtype=torch.float64) / 255


@pytest.mark.parametrize("mean, log_var", [(0.3, -4.0), (0.0, -12.0), (1.0, -2.0), (7.0, -9.0),
                                           (-5.0, -14.0), (0.5, 3.0), (0.71, -20.0)])
def test_discretized_gaussian_sums_to_one_over_the_256_levels(mean, log_var):
    logp = discretized_gaussian_log_prob(GRID[:, None], mean, log_var)
    assert logp.shape == (256,) and torch.isfinite(logp).all()
    assert torch.logsumexp(logp, 0).item() == pytest.approx(0.0, abs=1e-12)


def test_discretized_gaussian_equals_cdf_differences_of_torch_normal():
    # σ = 0.2: every edge within 3σ, where torch's erf-based CDF differences keep their precision
    # (the far tails, where they cancel to 0, are checked against mpmath below)
    mean, sigma = torch.tensor(0.42, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)
    edges = torch.cat([torch.tensor([-math.inf]), (GRID[:-1] + GRID[1:]) / 2, torch.tensor([math.inf])])
    cdf = Normal(mean, sigma).cdf(edges.double())
    expected = torch.log(cdf[1:] - cdf[:-1])
    got = discretized_gaussian_log_prob(GRID[:, None], mean, 2 * sigma.log())
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_discretized_gaussian_is_stable_in_the_far_tails():
    import mpmath

    mpmath.mp.dps = 40
    # a pixel 40 standard deviations above the mean: torch's Normal cdf difference underflows to 0
    x, m, s = GRID[200], 0.1, 0.02
    a, b = (float(x) - 1 / 510 - m) / s, (float(x) + 1 / 510 - m) / s
    exact = float(mpmath.log((mpmath.erfc(a / mpmath.sqrt(2)) - mpmath.erfc(b / mpmath.sqrt(2))) / 2))
    got = discretized_gaussian_log_prob(x.reshape(1, 1), m, 2 * math.log(s)).item()
    assert got == pytest.approx(exact, rel=1e-9)
    grad_mean = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    discretized_gaussian_log_prob(GRID[:, None], grad_mean, -9.0).sum().backward()
    assert torch.isfinite(grad_mean.grad)


def test_density_to_pmf_is_the_midpoint_rule_for_a_smooth_density():
    from scipy.integrate import quad

    mean, sigma = 0.5, 0.2  # smooth on the scale of a bin: midpoint rule and the integral agree
    x = GRID[100:101]
    density = Normal(torch.tensor(mean, dtype=torch.float64), sigma).log_prob(x).sum()
    def pdf(t: float) -> float:
        return math.exp(-0.5 * ((t - mean) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

    integral, _ = quad(pdf, float(x) - BIN_WIDTH / 2, float(x) + BIN_WIDTH / 2, epsabs=0, epsrel=1e-13)
    # the midpoint rule's relative error is about (bin / σ)² / 24 ≈ 2e-5 here
    assert density_to_pmf_nats(density, 1).item() == pytest.approx(math.log(integral), abs=1e-4)
    assert discretized_gaussian_log_prob(x[None], mean, 2 * math.log(sigma)).item() == pytest.approx(
        math.log(integral), rel=1e-9)
    assert density_to_pmf_nats(0.0, 784) == pytest.approx(-784 * math.log(255))


def test_bad_inputs():
    with pytest.raises(ValueError, match="dims"):
        density_to_pmf_nats(1.0, 0)
    with pytest.raises(TypeError, match="float"):
        discretized_gaussian_log_prob(torch.zeros(2, 3, dtype=torch.uint8), 0.0, 0.0)
