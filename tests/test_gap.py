"""Tests for vae_core.gap against independent references: chapter 6's estimator and quadrature
(vae_core.evaluate) for a plain VAE, Gauss-Hermite moments, Monte-Carlo ELBOs with their standard
errors, an importance-sampled log p(x) with many samples for flow and learned-prior models, and
brute-force sums of Gaussian densities for the aggregate posterior."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vae_core import bounds, evaluate, gap
from vae_core.flows import FlowVAE
from vae_core.models import VAE
from vae_core.priors import PriorVAE


def binary_data(n: int = 12, d: int = 6, seed: int = 1) -> torch.Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


def small_vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(6, 16, 2)


def small_flow(seed: int = 0) -> FlowVAE:
    torch.manual_seed(seed)
    model = FlowVAE(6, 16, 2, flow_hidden=8, flow_layers=4)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.flow.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


def test_iwae_estimate_equals_chapter_6_estimator_for_a_plain_vae():
    model, x = small_vae(), binary_data()
    ours = gap.iwae_estimate(model, x, k=300, batch_size=5, chunk_size=70, seed=3)
    ref = evaluate.iwae_estimate(model, x, k=300, batch_size=5, chunk_size=70, seed=3)
    assert torch.allclose(ours.values, ref.values, atol=1e-4)
    assert torch.allclose(ours.mc_var, ref.mc_var, atol=1e-6)


def test_grid_log_px_equals_chapter_6_quadrature_for_a_plain_vae():
    model, x = small_vae(), binary_data()
    ours = gap.grid_log_px(model, x, box=(-5, 5, -5, 5), h=10 / 200)
    ref = evaluate.grid_log_likelihood(model, x, limit=5.0, n=200)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_hermite_rule_has_the_standard_normal_moments():
    eps, w = gap.hermite_noise(8, torch.float64)
    assert abs(float(w.sum()) - 1) < 1e-12
    e1, e2 = eps[:, 0], eps[:, 1]
    assert abs(float((w * e1**2 * e2**4).sum()) - 3.0) < 1e-10   # E[ε₁²] E[ε₂⁴] = 1 · 3
    assert abs(float((w * e1**6).sum()) - 15.0) < 1e-10
    assert abs(float((w * e1 * e2**3).sum())) < 1e-12


@pytest.mark.parametrize("make", [small_vae, small_flow,
                                  lambda: PriorVAE(6, 16, 2, prior="vamp", n_components=3)])
def test_hermite_elbo_agrees_with_a_monte_carlo_elbo(make):
    torch.manual_seed(0)
    model, x = make(), binary_data()
    quad = gap.hermite_elbo(model, x, n=16)
    with torch.no_grad():
        lw = bounds.log_weights(model, x, 20000, torch.Generator().manual_seed(1)).double()
    mc, se = lw.mean(0), lw.std(0) / math.sqrt(lw.shape[0])
    assert ((quad - mc).abs() < 5 * se + 1e-3).all()


@pytest.mark.parametrize("make", [small_flow, lambda: PriorVAE(6, 16, 2, prior="mog", n_components=3),
                                  lambda: PriorVAE(6, 16, 2, prior="vamp", n_components=3)])
def test_exact_log_px_agrees_with_sampling_from_the_prior(make):
    """log p(x) = log E_p(z)[p(x|z)]: with six pixels the likelihood is broad, so a million draws
    from the prior estimate it to about 1e-3 nats (an estimate that does not involve q at all)."""
    torch.manual_seed(0)
    model, x = make(), binary_data(6)
    exact = gap.exact_gap(model, x, box=(-9, 9, -9, 9), h=0.03)
    with torch.no_grad():
        if hasattr(model, "sample_prior"):
            z = model.sample_prior(10**6, torch.Generator().manual_seed(2))
        else:
            z = torch.randn(10**6, 2, generator=torch.Generator().manual_seed(2))
        ll = torch.cat([model.log_likelihood(x, z[i:i + 10**5, None, :].expand(-1, len(x), -1))
                        for i in range(0, 10**6, 10**5)]).double()
    reference = torch.logsumexp(ll, 0) - math.log(10**6)
    assert ((exact.log_px - reference).abs() < 0.01).all(), (exact.log_px, reference)
    assert (exact.kl_q_p > 0).all()
    assert torch.allclose(exact.kl_q_p, exact.log_px - exact.elbo)


def test_gap_is_zero_when_q_is_the_posterior():
    model = small_vae()
    with torch.no_grad():  # decoder ignores z, encoder outputs N(0, I): q = prior = posterior
        model.decoder_hidden.weight.zero_()
        for layer in (model.to_mu, model.to_logvar):
            layer.weight.zero_()
            layer.bias.zero_()
    x = binary_data()
    exact = gap.exact_gap(model, x, box=(-7, 7, -7, 7), h=0.05)
    assert exact.kl_q_p.abs().max() < 1e-6
    with torch.no_grad():
        assert torch.allclose(exact.log_px, model.log_likelihood(x, torch.zeros(len(x), 2)).double(),
                              atol=1e-5)


def test_posterior_box_holds_every_encoder_mean_with_a_margin():
    model, x = small_vae(), binary_data()
    lo1, hi1, lo2, hi2 = gap.posterior_box(model, x, n_std=3, pad=0.5)
    with torch.no_grad():
        mu, logvar = model.encode(x)
    margin = 3 * (0.5 * logvar).exp().median(0).values + 0.5
    assert lo1 <= float(mu[:, 0].min() - margin[0]) and hi1 >= float(mu[:, 0].max() + margin[0])
    assert lo2 <= float(mu[:, 1].min() - margin[1]) and hi2 >= float(mu[:, 1].max() + margin[1])
    assert all(float(b).is_integer() for b in (lo1, hi1, lo2, hi2))


def test_grid_pictures_are_normalised_densities():
    model, x = small_flow(), binary_data(3)
    box = (-11.0, 11.0, -10.0, 12.0)
    a1, a2, _, area = gap.latent_grid(box, 0.04)
    post = gap.grid_log_posterior(model, x, box, 0.04)
    lq = gap.grid_log_q(model, x, box, 0.04)
    assert post.shape == lq.shape == (3, len(a1), len(a2))
    assert torch.allclose(post.exp().sum((1, 2)) * area, torch.ones(3, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(lq.double().exp().sum((1, 2)) * area, torch.ones(3, dtype=torch.float64),
                          atol=5e-3)


def test_aggregate_density_is_the_mean_of_the_posteriors():
    model, x = small_vae(), binary_data(7)
    z = torch.randn(9, 2)
    ours = gap.aggregate_log_density(model, x, z, batch_size=3)
    with torch.no_grad():
        mu, logvar = model.encode(x)
    dens = sum(Independent(Normal(mu[n].double(), (0.5 * logvar[n]).exp().double()), 1)
               .log_prob(z.double()).exp() for n in range(7)) / 7
    assert torch.allclose(ours, dens.log(), atol=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="box"):
        gap.latent_grid((1, 0, 0, 1))
    with pytest.raises(ValueError, match="z_dim"):
        gap.grid_log_px(VAE(6, 8, 3), binary_data())
