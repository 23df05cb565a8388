"""Tests of vae_core.linear_gaussian against independent oracles.

Oracles: torch.distributions.MultivariateNormal (marginal, posterior, KL between Gaussians), scipy
quadrature over z for a 1-D latent (evidence and posterior moments from p(x|z) p(z) alone), Bayes'
rule as an identity (log p(x, z) − log p(z|x) = log p(x) for every z), Monte Carlo averages within
their own standard errors, and :mod:`vae_core.objectives` run on the model unchanged.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate
from torch.distributions import MultivariateNormal, kl_divergence

from vae_core.distributions import gaussian_log_prob
from vae_core.linear_gaussian import LinearGaussian
from vae_core.objectives import elbo as mc_elbo
from vae_core.objectives import iwae_bound, log_weights

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model(x_dim=5, z_dim=3, seed=0, noise_std=0.7) -> LinearGaussian:
    return LinearGaussian.random(x_dim, z_dim, noise_std=noise_std, generator=_gen(seed))


def _random_q(batch, z_dim, seed):
    g = _gen(seed)
    mu = torch.randn(batch, z_dim, generator=g, dtype=F64)
    return mu, torch.randn(batch, z_dim, generator=g, dtype=F64)


def _posterior_mvn(model, x):
    mean, cov = model.posterior(x)
    return MultivariateNormal(mean, cov.expand(len(x), -1, -1))


def test_log_marginal_matches_multivariate_normal():
    model = _model()
    _, x = model.sample(7, _gen(1))
    cov = model.weight @ model.weight.T + model.noise_var * torch.eye(5, dtype=F64)
    ref = MultivariateNormal(model.bias, cov)
    torch.testing.assert_close(model.log_marginal(x), ref.log_prob(x), rtol=1e-12, atol=1e-12)


def test_log_marginal_matches_quadrature_over_z():
    model = _model(x_dim=3, z_dim=1, seed=2)
    _, x = model.sample(3, _gen(3))
    for row in x:
        def joint(z, row=row):
            zt = torch.tensor([[z]], dtype=F64)
            return math.exp(model.log_joint(row[None], zt).item())
        value, _ = integrate.quad(joint, -12, 12, epsabs=0, epsrel=1e-12, limit=200)
        assert model.log_marginal(row[None]).item() == pytest.approx(math.log(value), abs=1e-9)


def test_prior_sampling_moment_ratio_matches_quadrature_and_sampling():
    model = _model(x_dim=3, z_dim=1, seed=33)
    _, x = model.sample(2, _gen(34))
    for row in x:
        def lik(z, power, row=row):
            zt = torch.tensor([[z]], dtype=F64)
            prior = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
            return math.exp(power * model.log_likelihood(row[None], zt).item()) * prior
        first = integrate.quad(lik, -12, 12, args=(1,), epsabs=0, epsrel=1e-12, limit=200)[0]
        second = integrate.quad(lik, -12, 12, args=(2,), epsabs=0, epsrel=1e-12, limit=200)[0]
        got = model.prior_sampling_log_moment_ratio(row[None]).item()
        assert got == pytest.approx(math.log(second / first**2), abs=1e-8)
    # And the relative variance it implies, against sampling in 2-D.
    model = _model(x_dim=4, z_dim=2, seed=35, noise_std=1.0)
    _, x = model.sample(1, _gen(36))
    w = model.log_likelihood(x, torch.randn(400_000, 1, 2, generator=_gen(37), dtype=F64)).exp().squeeze(-1)
    measured = (w.var() / w.mean() ** 2).item()
    assert measured == pytest.approx(math.expm1(model.prior_sampling_log_moment_ratio(x).item()), rel=0.05)


def test_posterior_moments_match_quadrature_in_1d():
    model = _model(x_dim=4, z_dim=1, seed=4)
    _, x = model.sample(1, _gen(5))

    def moment(k):
        f = lambda z: z**k * math.exp(model.log_joint(x, torch.tensor([[z]], dtype=F64)).item())  # noqa: E731
        return integrate.quad(f, -12, 12, epsabs=0, epsrel=1e-12, limit=200)[0]

    z0, z1, z2 = moment(0), moment(1), moment(2)
    mean, cov = model.posterior(x)
    assert mean.item() == pytest.approx(z1 / z0, abs=1e-9)
    assert cov.item() == pytest.approx(z2 / z0 - (z1 / z0) ** 2, abs=1e-9)


def test_bayes_rule_holds_for_every_z():
    model = _model(seed=6)
    _, x = model.sample(4, _gen(7))
    z = 3 * torch.randn(10, 4, 3, generator=_gen(8), dtype=F64)     # anywhere, not only near the posterior
    lhs = model.log_joint(x, z) - _posterior_mvn(model, x).log_prob(z)
    torch.testing.assert_close(lhs, model.log_marginal(x).expand(10, -1), rtol=1e-10, atol=1e-10)


def test_elbo_plus_kl_equals_log_evidence_for_arbitrary_q():
    model = _model(x_dim=8, z_dim=4, seed=9)
    _, x = model.sample(16, _gen(10))
    mu_q, logvar_q = _random_q(16, 4, 11)
    total = model.elbo(x, mu_q, logvar_q) + model.kl_to_posterior(x, mu_q, logvar_q)
    torch.testing.assert_close(total, model.log_marginal(x), rtol=1e-12, atol=1e-10)
    assert (model.kl_to_posterior(x, mu_q, logvar_q) > 0).all()


def test_kl_to_posterior_matches_torch_distributions():
    model = _model(seed=12)
    _, x = model.sample(6, _gen(13))
    mu_q, logvar_q = _random_q(6, 3, 14)
    q = MultivariateNormal(mu_q, torch.diag_embed(logvar_q.exp()))
    ref = kl_divergence(q, _posterior_mvn(model, x))
    torch.testing.assert_close(model.kl_to_posterior(x, mu_q, logvar_q), ref, rtol=1e-10, atol=1e-10)


def test_closed_form_elbo_matches_monte_carlo():
    model = _model(seed=15)
    _, x = model.sample(3, _gen(16))
    mu_q, logvar_q = _random_q(3, 3, 17)
    n = 200_000
    z = mu_q + (0.5 * logvar_q).exp() * torch.randn(n, 3, 3, generator=_gen(18), dtype=F64)
    terms = model.log_joint(x, z) - gaussian_log_prob(z, mu_q, logvar_q)       # (n, batch)
    mean, se = terms.mean(0), terms.std(0) / math.sqrt(n)
    assert ((mean - model.elbo(x, mu_q, logvar_q)).abs() < 4 * se).all()
    rec = model.log_likelihood(x, z)
    assert ((rec.mean(0) - model.expected_log_likelihood(x, mu_q, logvar_q)).abs()
            < 4 * rec.std(0) / math.sqrt(n)).all()


def test_objectives_run_on_the_model_and_agree_with_the_closed_form():
    model = _model(seed=19)
    _, x = model.sample(4, _gen(20))
    mu, logvar = model.encode(x)
    exact = model.elbo(x, mu, logvar)
    for kl in ("analytic", "mc"):
        draws = torch.stack([mc_elbo(model, x, n_samples=2000, kl=kl, generator=_gen(21 + i)).elbo
                             for i in range(5)])
        assert (draws.mean(0) - exact).abs().max() < 0.02
    assert log_weights(model, x, 7, generator=_gen(30)).shape == (7, 4)


def test_encode_is_the_mean_field_optimum():
    model = _model(x_dim=6, z_dim=3, seed=22, noise_std=0.4)
    _, x = model.sample(5, _gen(23))
    mu, logvar = model.encode(x)
    params = torch.cat([mu, logvar], -1).clone().requires_grad_(True)
    model.kl_to_posterior(x, params[:, :3], params[:, 3:]).sum().backward()
    assert params.grad.abs().max() < 1e-10                                         # stationary
    best = model.kl_to_posterior(x, mu, logvar)
    g = _gen(24)
    for _ in range(20):                                                            # and a minimum
        d_mu, d_lv = 0.1 * torch.randn(2, 5, 3, generator=g, dtype=F64)
        assert (model.kl_to_posterior(x, mu + d_mu, logvar + d_lv) > best).all()
    # Mean-field variances are never larger than the posterior's marginal variances.
    _, cov = model.posterior(x)
    assert (logvar[0].exp() <= torch.diagonal(cov) + 1e-15).all()


def test_iwae_is_exact_when_the_posterior_is_diagonal():
    # Orthogonal columns of W make WᵀW diagonal, so p(z|x) factorises and encode() is exact: every
    # importance weight equals p(x), and the IWAE bound is log p(x) for any k.
    q_mat, _ = torch.linalg.qr(torch.randn(6, 3, generator=_gen(25), dtype=F64))
    model = LinearGaussian(q_mat * torch.tensor([2.0, 1.0, 0.5], dtype=F64), torch.zeros(6, dtype=F64), 0.3)
    _, x = model.sample(4, _gen(26))
    assert model.kl_to_posterior(x, *model.encode(x)).abs().max() < 1e-12
    for k in (1, 10):
        torch.testing.assert_close(iwae_bound(model, x, k, generator=_gen(27)), model.log_marginal(x),
                                   rtol=1e-10, atol=1e-10)


def test_iwae_bound_increases_with_k_towards_log_evidence():
    model = _model(x_dim=10, z_dim=4, seed=28, noise_std=0.3)
    _, x = model.sample(1, _gen(29))
    xs = x.expand(400, -1)                          # 400 independent estimates of the same x
    means = [iwae_bound(model, xs, k, generator=_gen(30 + k)).mean().item() for k in (1, 10, 100)]
    log_px = model.log_marginal(x).item()
    assert means[0] < means[1] < means[2] < log_px + 1e-3
    assert means[0] == pytest.approx(model.elbo(x, *model.encode(x)).item(), abs=0.05)


def test_sample_has_the_marginal_moments():
    model = _model(x_dim=3, z_dim=2, seed=31)
    _, x = model.sample(200_000, _gen(32))
    torch.testing.assert_close(x.mean(0), model.bias, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), model.marginal_cov(), atol=0.03, rtol=0)


def test_bad_arguments_are_rejected():
    w = torch.ones(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="bias"):
        LinearGaussian(w, torch.zeros(3, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="noise_var"):
        LinearGaussian(w, torch.zeros(4, dtype=F64), 0.0)
    with pytest.raises(ValueError, match="weight"):
        LinearGaussian(torch.ones(4, dtype=F64), torch.zeros(4, dtype=F64), 1.0)
    model = LinearGaussian(w, torch.zeros(4, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="x must have shape"):
        model.log_marginal(torch.zeros(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="last dimension"):
        model.log_likelihood(torch.zeros(2, 4, dtype=F64), torch.zeros(2, 3, dtype=F64))
