"""Tests for vae_core.priors against independent references: brute-force sums over the components
with torch.distributions, the density integrating to 1 on a grid, and sample moments against the
mixture's closed-form mean and covariance."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vae_core.distributions import gaussian_log_prob
from vae_core.models import VAE
from vae_core.priors import MixturePrior, PriorVAE, VampPrior


def brute_force_mixture(z: torch.Tensor, weights: list[float], means: torch.Tensor,
                        stds: torch.Tensor) -> torch.Tensor:
    """log Σ_k π_k N(z; m_k, s_k²) as a plain sum of densities, one component at a time (float64)."""
    total = torch.zeros(z.shape[:-1], dtype=torch.float64)
    for w, m, s in zip(weights, means, stds, strict=True):
        comp = Independent(Normal(m.double(), s.double()), 1)
        total = total + w * comp.log_prob(z.double()).exp()
    return total.log()


def test_mixture_log_prob_matches_brute_force_sum():
    torch.manual_seed(0)
    prior = MixturePrior(3, n_components=4).double()
    with torch.no_grad():
        prior.logvars.copy_(0.5 * torch.randn(4, 3))
        prior.logits.copy_(torch.randn(4))
    z = torch.randn(6, 5, 3, dtype=torch.float64)
    weights = torch.softmax(prior.logits, 0).tolist()
    expected = brute_force_mixture(z, weights, prior.means.detach(), (0.5 * prior.logvars.detach()).exp())
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-10)


def test_vamp_prior_log_prob_matches_brute_force_sum():
    torch.manual_seed(1)
    vae = VAE(6, 8, 2).double()
    prior = VampPrior(6, 2, n_pseudo=5).double()
    z = torch.randn(7, 2, dtype=torch.float64)
    u = prior.pseudo_inputs()
    assert ((u > 0) & (u < 1)).all()
    means, stds = [], []
    for k in range(5):  # encode each pseudo-input on its own
        mu, logvar = vae.encode(u[k:k + 1])
        means.append(mu[0].detach())
        stds.append((0.5 * logvar[0]).exp().detach())
    expected = brute_force_mixture(z, [1 / 5] * 5, torch.stack(means), torch.stack(stds))
    assert torch.allclose(prior.log_prob(z, vae.encode), expected, atol=1e-10)
    # the prior's gradient reaches the encoder and the pseudo-inputs
    prior.log_prob(z, vae.encode).sum().backward()
    assert vae.encoder_hidden.weight.grad.abs().sum() > 0 and prior.raw.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["mog", "vamp"])
def test_learned_prior_density_integrates_to_one(kind):
    torch.manual_seed(2)
    model = PriorVAE(6, 8, 2, prior=kind, n_components=4).double()
    limit, n = 10.0, 500
    h = 2 * limit / n
    axis = torch.linspace(-limit + h / 2, limit - h / 2, n, dtype=torch.float64)
    with torch.no_grad():
        lp = model.log_prior(torch.cartesian_prod(axis, axis))
    assert abs(float(torch.logsumexp(lp, 0).exp()) * h * h - 1) < 1e-4


def test_mixture_samples_have_the_mixture_moments():
    torch.manual_seed(3)
    prior = MixturePrior(2, n_components=3, init_spread=2.0).double()
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
        prior.logvars.copy_(torch.tensor([[0.0, -1.0], [0.5, 0.0], [-0.5, 0.3]]))
    n = 200_000
    s = prior.sample(n, torch.Generator().manual_seed(0))
    log_w, m, v = (t.detach() for t in prior.components())
    w = log_w.exp()
    mean = (w[:, None] * m).sum(0)
    second = (w[:, None] * (v.exp() + m**2)).sum(0)
    var = second - mean**2
    assert torch.allclose(s.mean(0), mean, atol=5 * (var / n).sqrt().max())
    assert torch.allclose(s.var(0), var, rtol=0.02)


def test_standard_prior_is_the_plain_vae():
    torch.manual_seed(4)
    model = PriorVAE(6, 8, 2, prior="standard")
    z = torch.randn(3, 2)
    assert torch.allclose(model.log_prior(z), gaussian_log_prob(z))
    assert torch.allclose(model.log_prior(z), Independent(Normal(0.0, 1.0), 0).log_prob(z).sum(-1))
    assert model.sample_prior(4).shape == (4, 2)
    assert model.config()["prior"] == "standard"


def test_vamp_samples_come_from_the_pseudo_inputs_posteriors():
    torch.manual_seed(5)
    model = PriorVAE(6, 8, 2, prior="vamp", n_components=1)
    s = model.sample_prior(50_000, torch.Generator().manual_seed(1))
    mu, logvar = model.encode(model.prior.pseudo_inputs())
    se = math.sqrt(float(logvar.detach().exp().max()) / 50_000)
    assert torch.allclose(s.mean(0), mu[0].detach(), atol=5 * se)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="prior"):
        PriorVAE(prior="flow")
    with pytest.raises(ValueError, match="shape"):
        MixturePrior(2).log_prob(torch.zeros(3, 4))
