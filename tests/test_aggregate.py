"""Tests for vae_core.aggregate: mixture moments against sampling the mixture, and the KL of the
fitted Gaussian against torch.distributions."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from vae_core.aggregate import aggregate_moments, gaussian_fit_kl


def test_moments_match_samples_of_the_mixture():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(50, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 0.3, 2.0]) + 0.5
    logvar = torch.randn(50, 3, generator=g, dtype=torch.float64) - 1
    mean, cov = aggregate_moments(mu, logvar)
    # draw from the mixture: pick a component, then its Gaussian
    n = 400_000
    pick = torch.randint(0, 50, (n,), generator=g)
    z = mu[pick] + (0.5 * logvar[pick]).exp() * torch.randn(n, 3, generator=g, dtype=torch.float64)
    se = z.std(0) / n ** 0.5
    assert ((z.mean(0) - mean).abs() < 5 * se).all()
    sample_cov = torch.cov(z.T)
    assert torch.allclose(sample_cov, cov, atol=5 * 4 * cov.diag().max().item() / n ** 0.5)


def test_fitted_gaussian_kl_is_torch_kl_to_the_standard_normal():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov = a @ a.T + 0.1 * torch.eye(4, dtype=torch.float64)
    mean = torch.randn(4, generator=g, dtype=torch.float64)
    expected = kl_divergence(MultivariateNormal(mean, cov),
                             MultivariateNormal(torch.zeros(4, dtype=torch.float64),
                                                torch.eye(4, dtype=torch.float64)))
    assert gaussian_fit_kl(mean, cov).item() == pytest.approx(expected.item(), rel=1e-12)
    # codes exactly like the prior: zero
    assert gaussian_fit_kl(torch.zeros(3), torch.eye(3)).item() == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="mu and logvar"):
        aggregate_moments(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="finite"):
        aggregate_moments(torch.full((3, 2), float("nan")), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_fit_kl(torch.zeros(2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\(D,\)"):
        gaussian_fit_kl(torch.zeros(2), torch.eye(3))
