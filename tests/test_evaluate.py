"""Tests for vae_core.evaluate against independent references: numerical integration of log p(x) for a
1-D latent model (dense grid and scipy quad), torch.distributions' KL, numpy's variance, and the
objectives module's estimators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vae_core import evaluate
from vae_core.distributions import gaussian_kl
from vae_core.models import VAE
from vae_core.objectives import elbo, iwae_bound

X_DIM = 6



def one_d_model() -> VAE:
    """A VAE(6, 16, 1) whose decoder is sharp enough (weights ×3) that q(z|x) is far from the true
    posterior: its ELBO is > 1 nat below log p(x), so the IWAE tests below have something to close."""
    torch.manual_seed(0)
    model = VAE(X_DIM, 16, 1)
    with torch.no_grad():
        model.decoder_hidden.weight *= 3
        model.to_x.weight *= 3
    return model


def binary_data(n: int = 32, d: int = X_DIM, seed: int = 1) -> torch.Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


def log_px_grid(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """Oracle: log p(x) = log ∫ p(x|z) N(z; 0, 1) dz on a dense grid (Riemann sum, float64)."""
    md = VAE(model.x_dim, model.h_dim, 1).double()
    md.load_state_dict(model.state_dict())
    z = torch.linspace(-12.0, 12.0, 48001, dtype=torch.float64)
    with torch.no_grad():
        log_lik = md.log_likelihood(x.double(), z[:, None, None].expand(-1, len(x), 1))  # (G, N)
    log_prior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_lik + log_prior[:, None], 0) + math.log(float(z[1] - z[0]))


def test_grid_oracle_agrees_with_scipy_quad():
    model = one_d_model()
    x = binary_data(3)
    md = VAE(X_DIM, 16, 1).double()
    md.load_state_dict(model.state_dict())
    for i in range(3):
        def integrand(z, i=i):
            zt = torch.tensor([[z]], dtype=torch.float64)
            with torch.no_grad():
                ll = md.log_likelihood(x[i:i + 1].double(), zt)
            return math.exp(float(ll) - 0.5 * z * z) / math.sqrt(2 * math.pi)
        # the integrand has kinks where a decoder ReLU switches: tell quad where they are
        w, b = md.decoder_hidden.weight.detach()[:, 0], md.decoder_hidden.bias.detach()
        kinks = sorted(float(k) for k in -b / w if abs(k) < 12)
        value, _ = integrate.quad(integrand, -12.0, 12.0, points=kinks, limit=500)  # mass beyond < e^-72
        assert math.log(value) == pytest.approx(float(log_px_grid(model, x[i:i + 1])[0]), abs=1e-6)


def test_iwae_at_large_k_converges_to_log_px_by_numerical_integration():
    model = one_d_model()
    x = binary_data()
    log_px = log_px_grid(model, x)
    gap = log_px - evaluate.test_elbo(model, x, n_samples=2000, reduction="none").elbo.double()
    assert gap.mean() > 1.0  # the ELBO is far from log p(x) ...
    iw = evaluate.iwae_log_likelihood(model, x, k=5000).double()
    assert abs(float((iw - log_px).mean())) < 0.02  # ... and IWAE with k = 5000 closes the gap
    assert float((iw - log_px).abs().max()) < 0.2


def test_iwae_increases_with_k_in_expectation_and_stays_below_log_px():
    model = one_d_model()
    x = binary_data()
    log_px = log_px_grid(model, x)
    means = [float(torch.stack([evaluate.iwae_log_likelihood(model, x, k=k, seed=s) for s in range(10)])
                   .double().mean()) for k in (1, 10, 100, 1000)]
    assert means == sorted(means)
    assert means[-1] <= float(log_px.mean()) + 0.01


def test_iwae_is_above_the_elbo_on_average():
    model = one_d_model()
    x = binary_data(64)
    assert evaluate.iwae_log_likelihood(model, x, k=50).mean() > evaluate.test_elbo(model, x, 100).elbo


def test_iwae_at_k1_is_the_single_sample_mc_elbo():
    """Same seed → same ε: IWAE with k = 1 is exactly the L^A estimate log p(x, z) − log q(z|x)."""
    model = one_d_model()
    x = binary_data()
    iw = evaluate.iwae_log_likelihood(model, x, k=1, batch_size=len(x), seed=3)
    with torch.no_grad():
        mc = elbo(model, x, n_samples=1, kl="mc", generator=torch.Generator().manual_seed(3)).elbo
    assert torch.allclose(iw, mc, atol=1e-5)
    # and in expectation it equals the (analytic-KL) ELBO, within Monte-Carlo error
    many = torch.stack([evaluate.iwae_log_likelihood(model, x, k=1, seed=s) for s in range(400)]).double()
    target = evaluate.test_elbo(model, x, n_samples=4000).elbo.double()
    se = many.mean(1).std() / math.sqrt(400)
    assert abs(float(many.mean() - target)) < 4 * float(se) + 1e-3


def test_iwae_matches_objectives_iwae_bound_with_the_same_noise():
    model = one_d_model()
    x = binary_data()
    ours = evaluate.iwae_log_likelihood(model, x, k=300, batch_size=len(x), chunk_size=300, seed=5)
    theirs = iwae_bound(model, x, k=300, chunk_size=300, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_iwae_is_chunk_size_independent_and_seeded():
    torch.manual_seed(0)
    model = VAE(20, 16, 3)
    x = binary_data(40, 20)
    ref = evaluate.iwae_log_likelihood(model, x, k=700, batch_size=16, chunk_size=700)
    for chunk in (1, 7, 64, 699):
        # same noise for every chunk size; only float rounding of the decoder batches may differ
        assert torch.allclose(evaluate.iwae_log_likelihood(model, x, k=700, batch_size=16, chunk_size=chunk),
                              ref, atol=1e-4, rtol=0)
    assert torch.equal(evaluate.iwae_log_likelihood(model, x, k=700, batch_size=16, chunk_size=64),
                       evaluate.iwae_log_likelihood(model, x, k=700, batch_size=16, chunk_size=64))
    assert not torch.equal(ref, evaluate.iwae_log_likelihood(model, x, k=700, batch_size=16, seed=1))


def test_iwae_with_k_5000_on_a_784_pixel_model_has_bounded_memory():
    torch.manual_seed(0)
    model = VAE(784, 32, 4)
    x = binary_data(4, 784)
    out = evaluate.iwae_log_likelihood(model, x, k=5000, batch_size=2, chunk_size=250)
    assert out.shape == (4,) and torch.isfinite(out).all() and not out.requires_grad


def test_active_units_finds_dimensions_whose_mean_ignores_x():
    torch.manual_seed(0)
    model = VAE(20, 16, 5)
    with torch.no_grad():
        model.to_mu.weight *= 5  # make the live dimensions clearly active
        model.to_mu.weight[[1, 3]] = 0.0  # μ_1 and μ_3 are constants (their biases)
    x = binary_data(500, 20)
    count, activity = evaluate.active_units(model, x)
    assert count == 3
    assert torch.equal(activity[[1, 3]], torch.zeros(2))
    assert (activity[[0, 2, 4]] > 1e-2).all()
    with torch.no_grad():  # oracle: numpy's (population) variance of the posterior means
        mu = model.encode(x)[0].double().numpy()
    np.testing.assert_allclose(activity.numpy(), mu.var(axis=0), rtol=1e-5, atol=1e-9)
    assert evaluate.active_units(model, x, threshold=float(activity.max()) + 1)[0] == 0


def test_kl_per_dim_matches_torch_distributions_and_sums_to_the_kl_term():
    torch.manual_seed(0)
    model = VAE(20, 16, 5)
    x = binary_data(300, 20)
    per_dim = evaluate.kl_per_dim(model, x, batch_size=64)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        oracle = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).mean(0)
        total = gaussian_kl(mu, logvar).mean()
    assert per_dim.shape == (5,) and (per_dim >= 0).all()
    assert torch.allclose(per_dim, oracle, atol=1e-5)
    assert float(per_dim.sum()) == pytest.approx(float(total), rel=1e-5)
    assert float(per_dim.sum()) == pytest.approx(float(evaluate.test_elbo(model, x).kl), rel=1e-5)


def test_test_elbo_terms_reductions_and_estimators():
    torch.manual_seed(0)
    model = VAE(20, 16, 3)
    x = binary_data(200, 20)
    per = evaluate.test_elbo(model, x, reduction="none", batch_size=64)
    mean = evaluate.test_elbo(model, x, batch_size=64)
    assert per.elbo.shape == (200,) and mean.elbo.dim() == 0
    assert torch.allclose(per.elbo, per.rec - per.kl)
    assert torch.allclose(mean.elbo, per.elbo.mean())
    assert torch.equal(evaluate.test_elbo(model, x, seed=4).elbo, evaluate.test_elbo(model, x, seed=4).elbo)
    # L^A and L^B estimate the same ELBO
    a = evaluate.test_elbo(model, x, n_samples=500, kl="analytic").elbo
    b = evaluate.test_elbo(model, x, n_samples=500, kl="mc").elbo
    assert float(a) == pytest.approx(float(b), abs=0.05)
    # uint8 images are accepted (divided by 255), and nothing carries gradients
    u8 = (x * 255).to(torch.uint8)
    assert torch.allclose(evaluate.test_elbo(model, u8).elbo, evaluate.test_elbo(model, x).elbo)
    assert not mean.elbo.requires_grad


def test_evaluation_leaves_the_global_rng_alone():
    model = one_d_model()
    x = binary_data()
    torch.manual_seed(7)
    state = torch.get_rng_state()
    evaluate.iwae_log_likelihood(model, x, k=10)
    evaluate.test_elbo(model, x)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(("call", "match"), [
    (lambda m, x: evaluate.iwae_log_likelihood(m, x, k=0), "k must be"),
    (lambda m, x: evaluate.iwae_log_likelihood(m, x, k=5, chunk_size=0), "chunk_size"),
    (lambda m, x: evaluate.iwae_log_likelihood(m, x, batch_size=0), "batch_size"),
    (lambda m, x: evaluate.test_elbo(m, x, n_samples=0), "n_samples"),
    (lambda m, x: evaluate.test_elbo(m, x, kl="exact"), "kl"),
    (lambda m, x: evaluate.test_elbo(m, x, reduction="sum"), "reduction"),
    (lambda m, x: evaluate.active_units(m, x, threshold=-1.0), "threshold"),
    (lambda m, x: evaluate.active_units(m, x[:1]), "at least 2"),
    (lambda m, x: evaluate.kl_per_dim(m, x[:, :3]), r"shape \(batch, 6\)"),
    (lambda m, x: evaluate.test_elbo(m, x * 3), "outside"),
    (lambda m, x: evaluate.iwae_log_likelihood(m, x * math.nan, k=2), "NaN"),
])
def test_bad_input_gives_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(one_d_model(), binary_data(4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluation_runs_on_the_models_device():
    model = one_d_model().cuda()
    x = binary_data()
    iw = evaluate.iwae_log_likelihood(model, x, k=5000)
    assert iw.is_cuda
    assert abs(float((iw.cpu().double() - log_px_grid(model.cpu(), x)).mean())) < 0.02
    model.cuda()
    assert evaluate.kl_per_dim(model, x).is_cuda and evaluate.active_units(model, x)[1].is_cuda


# ---- grid_log_likelihood: exact log p(x) for 1-D and 2-D latent spaces --------------------------


def test_grid_log_likelihood_1d_matches_the_dense_float64_oracle():
    model = one_d_model()
    x = binary_data(8)
    got = evaluate.grid_log_likelihood(model, x, limit=8.0, n=4000)
    assert torch.allclose(got, log_px_grid(model, x), atol=1e-5)


def test_grid_log_likelihood_2d_is_normalised_over_all_binary_images():
    # p(x) summed over all 2^6 binary images must be 1: an oracle that needs no integral at all
    torch.manual_seed(0)
    model = VAE(X_DIM, 16, 2)
    with torch.no_grad():
        model.decoder_hidden.weight *= 3
        model.to_x.weight *= 3
    all_x = torch.tensor([[(i >> b) & 1 for b in range(X_DIM)] for i in range(2**X_DIM)], dtype=torch.float32)
    log_px = evaluate.grid_log_likelihood(model, all_x, limit=6.0, n=300)
    assert float(torch.logsumexp(log_px, 0).exp()) == pytest.approx(1.0, abs=1e-6)
    finer = evaluate.grid_log_likelihood(model, all_x, limit=6.0, n=600, chunk_size=1000)
    assert torch.allclose(log_px, finer, atol=1e-6)  # converged in n, chunking changes nothing


def test_grid_log_likelihood_2d_reduces_to_the_1d_integral_when_the_decoder_ignores_z2():
    one = one_d_model()
    two = VAE(X_DIM, 16, 2)
    with torch.no_grad():
        for name, p in two.named_parameters():
            if name == "decoder_hidden.weight":
                p.copy_(torch.cat([one.decoder_hidden.weight, torch.zeros(16, 1)], dim=1))
            elif name in dict(one.named_parameters()) and p.shape == dict(one.named_parameters())[name].shape:
                p.copy_(dict(one.named_parameters())[name])
    x = binary_data(8)
    got = evaluate.grid_log_likelihood(two, x, limit=8.0, n=1200)
    assert torch.allclose(got, log_px_grid(one, x), atol=1e-4)


def test_grid_log_likelihood_gaussian_decoder_matches_a_direct_sum():
    torch.manual_seed(2)
    model = VAE(X_DIM, 16, 1, likelihood="gaussian")
    x = torch.rand(5, X_DIM, generator=torch.Generator().manual_seed(3))
    md = VAE(X_DIM, 16, 1, likelihood="gaussian").double()
    md.load_state_dict(model.state_dict())
    z = torch.linspace(-10.0, 10.0, 20001, dtype=torch.float64)
    with torch.no_grad():
        log_lik = md.log_likelihood(x.double(), z[:, None, None].expand(-1, len(x), 1))  # (G, N)
    log_prior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    oracle = torch.logsumexp(log_lik + log_prior[:, None], 0) + math.log(float(z[1] - z[0]))
    got = evaluate.grid_log_likelihood(model, x, limit=8.0, n=2000)
    assert torch.allclose(got, oracle, atol=1e-4)


def test_grid_log_likelihood_refuses_more_than_two_latent_dimensions():
    with pytest.raises(ValueError, match="z_dim 1 or 2"):
        evaluate.grid_log_likelihood(VAE(X_DIM, 8, 3), binary_data(2))
    with pytest.raises(ValueError, match="limit"):
        evaluate.grid_log_likelihood(one_d_model(), binary_data(2), limit=0.0)


# ---- iwae_estimate / mean_with_errors: the two error bars of a test log-likelihood ----------------


def test_iwae_estimate_values_are_iwae_log_likelihood_and_se_between_is_numpy_sem():
    model, x = one_d_model(), binary_data(10)
    est = evaluate.iwae_estimate(model, x, k=40, seed=3)
    assert torch.equal(est.values, evaluate.iwae_log_likelihood(model, x, k=40, seed=3))
    v = est.values.double().numpy()
    assert est.mean == pytest.approx(v.mean(), abs=1e-12)
    assert est.se_between == pytest.approx(v.std(ddof=1) / math.sqrt(len(v)), rel=1e-9)


def test_iwae_estimate_mc_error_matches_the_spread_of_repeated_estimates():
    # oracle: 300 independent estimates of the same digits; their spread is the Monte-Carlo error
    model, x = one_d_model(), binary_data(6)
    runs = [evaluate.iwae_estimate(model, x, k=64, seed=s) for s in range(300)]
    means = torch.tensor([r.mean for r in runs], dtype=torch.float64)
    predicted = float(torch.tensor([r.se_mc for r in runs]).pow(2).mean().sqrt())
    assert float(means.std()) == pytest.approx(predicted, rel=0.15)
    per_digit_spread = torch.stack([r.values.double() for r in runs]).var(0)
    per_digit_predicted = torch.stack([r.mc_var for r in runs]).mean(0)
    assert ((per_digit_spread / per_digit_predicted - 1).abs() < 0.35).all()


def test_iwae_estimate_mc_variance_is_undefined_at_k1_and_zero_for_equal_weights():
    model, x = one_d_model(), binary_data(4)
    assert torch.isnan(evaluate.iwae_estimate(model, x, k=1).mc_var).all()
    est = evaluate.mean_with_errors(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.0, 0.09, 0.16]))
    assert est.mean == pytest.approx(7 / 3)
    assert est.se_mc == pytest.approx(0.5 / 3)
    assert math.isnan(evaluate.mean_with_errors(torch.tensor([1.0, 2.0])).se_mc)
    with pytest.raises(ValueError, match="N >= 2"):
        evaluate.mean_with_errors(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="shape of values"):
        evaluate.mean_with_errors(torch.tensor([1.0, 2.0]), torch.zeros(3))


# ---- grid_posterior: both KLs between q(z|x) and the exact posterior ------------------------------


class LinearGaussian(torch.nn.Module):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s² I), z 2-D: p(x) and p(z|x) are Gaussians in closed form.
    Its encoder q(z|x) = N(A(x − b), diag(e^-1.5, e^-0.5)) is deliberately not the posterior."""

    likelihood = "gaussian"

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x_dim, self.z_dim = 5, 2
        self.W = torch.nn.Parameter(0.15 * torch.randn(5, 2, generator=g, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.full((5,), 0.5, dtype=torch.float64))
        self.log_sigma2_x = torch.nn.Parameter(torch.tensor(math.log(0.02), dtype=torch.float64))
        self.A = torch.nn.Parameter(0.5 * torch.randn(2, 5, generator=g, dtype=torch.float64))

    def decode(self, z):
        return z @ self.W.T + self.b

    def encode(self, x):
        x = x.double()
        return (x - self.b) @ self.A.T, torch.tensor([-1.5, -0.5], dtype=torch.float64).expand(len(x), 2)

    def exact(self, x):
        """(p(x), p(z|x), q(z|x)) as torch.distributions."""
        s2, eye = self.log_sigma2_x.exp(), torch.eye(2, dtype=torch.float64)
        cov = torch.linalg.inv(eye + self.W.T @ self.W / s2)
        post = MultivariateNormal((x.double() - self.b) @ self.W @ cov.T / s2, covariance_matrix=cov)
        marginal = MultivariateNormal(self.b, self.W @ self.W.T + s2 * torch.eye(5, dtype=torch.float64))
        mu, logvar = self.encode(x)
        return marginal, post, MultivariateNormal(mu, covariance_matrix=torch.diag_embed(logvar.exp()))


def test_grid_posterior_matches_the_closed_forms_of_a_linear_gaussian_model():
    model = LinearGaussian()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = (model.decode(torch.randn(6, 2, generator=g, dtype=torch.float64))
             + 0.1 * torch.randn(6, 5, generator=g, dtype=torch.float64)).clamp(0, 1).float()
        marginal, post, q = model.exact(x)
        got = evaluate.grid_posterior(model, x, limit=6.0, n=600, batch_size=4)
    assert torch.allclose(got.log_px, marginal.log_prob(x.double()), atol=1e-6)
    assert torch.allclose(got.kl_q_p, kl_divergence(q, post), atol=1e-6)
    assert torch.allclose(got.kl_p_q, kl_divergence(post, q), atol=1e-6)
    assert torch.allclose(got.elbo, got.log_px - got.kl_q_p)
    assert (got.kl_q_p - got.kl_p_q).abs().min() > 0.1  # the two directions differ here


def test_grid_posterior_agrees_with_grid_log_likelihood_and_the_elbo_of_a_vae():
    torch.manual_seed(0)
    model = VAE(X_DIM, 16, 2)
    with torch.no_grad():
        model.decoder_hidden.weight *= 3
        model.to_x.weight *= 3
    x = binary_data(8)
    got = evaluate.grid_posterior(model, x, limit=6.0, n=300)
    assert torch.allclose(got.log_px, evaluate.grid_log_likelihood(model, x, limit=6.0, n=300))
    mc = torch.stack([evaluate.test_elbo(model, x, n_samples=5000, reduction="none", seed=s).elbo.double()
                      for s in range(8)])  # vs 8 x 5,000 samples, within 4 standard errors
    assert ((got.elbo - mc.mean(0)).abs() < 4 * mc.std(0) / math.sqrt(8) + 1e-3).all()
    assert torch.allclose(got.elbo, evaluate.grid_posterior(model, x, limit=8.0, n=800).elbo, atol=1e-5)
    assert (got.kl_q_p > 0).all() and (got.kl_p_q > 0).all()


@pytest.mark.parametrize("z_dim", [1, 2])
def test_grid_posterior_equals_a_dense_torch_distributions_oracle_for_any_chunk_size(z_dim):
    # grid_posterior gathers log q(z_g|x) from per-axis tables, chunk by chunk; the oracle builds
    # the whole grid at once and scores it with torch.distributions (float64 throughout)
    torch.manual_seed(3)
    model = VAE(X_DIM, 16, z_dim)
    with torch.no_grad():
        model.decoder_hidden.weight *= 3
    x = binary_data(5)
    limit, n = 4.0, 60 if z_dim == 2 else 900
    h = 2 * limit / n
    axis = torch.linspace(-limit + h / 2, limit - h / 2, n, dtype=torch.float64)
    grid = axis[:, None] if z_dim == 1 else torch.cartesian_prod(axis, axis)  # (G, d)
    with torch.no_grad():  # the model's float32 outputs, scored in float64
        mu, logvar = (t.double() for t in model.encode(x))
        logits = model.decode(grid.float()).double()
    log_lik = torch.distributions.Bernoulli(logits=logits[None]).log_prob(x[:, None].double()).sum(-1)
    log_joint = log_lik + Normal(0.0, 1.0).log_prob(grid).sum(-1)  # (N, G)
    log_q = Normal(mu[:, None], (0.5 * logvar[:, None]).exp()).log_prob(grid).sum(-1)  # (N, G)
    log_px = torch.logsumexp(log_joint, -1) + z_dim * math.log(h)
    post = torch.softmax(log_joint, -1)
    kl_p_q = (post * (log_joint - log_px[:, None] - log_q)).sum(-1)
    entropy = Normal(mu, (0.5 * logvar).exp()).entropy().sum(-1)
    elbo_x = (torch.softmax(log_q, -1) * log_joint).sum(-1) + entropy
    for chunk in (7, 64, 100_000):  # chunks that split grid rows, and one chunk for all
        got = evaluate.grid_posterior(model, x, limit=limit, n=n, chunk_size=chunk, batch_size=3)
        assert torch.allclose(got.log_px, log_px, atol=1e-9)
        assert torch.allclose(got.elbo, elbo_x, atol=1e-9)
        assert torch.allclose(got.kl_q_p, log_px - elbo_x, atol=1e-9)
        assert torch.allclose(got.kl_p_q, kl_p_q, atol=1e-9)


def test_iwae_estimates_use_the_first_k_of_one_set_of_samples():
    # oracle: the same noise drawn by hand, scored with torch.distributions, prefix by prefix
    torch.manual_seed(4)
    model = VAE(X_DIM, 16, 2)
    x, ks, seed = binary_data(7), [1, 3, 40, 200], 5
    got = evaluate.iwae_estimates(model, x, ks=ks, batch_size=len(x), seed=seed)
    assert sorted(got) == ks
    with torch.no_grad():
        mu, logvar = model.encode(x)
        eps = torch.randn((200, *mu.shape), generator=torch.Generator().manual_seed(seed))
        std = (0.5 * logvar).exp()
        z = mu + std * eps                                              # (200, 7, 2)
        log_w = (torch.distributions.Bernoulli(logits=model.decode(z)).log_prob(x).sum(-1)
                 + Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(mu, std).log_prob(z).sum(-1))
    for k in ks:
        expected = torch.logsumexp(log_w[:k], 0) - math.log(k)
        assert torch.allclose(got[k].values, expected, atol=1e-4), k
        assert got[k].mean == pytest.approx(expected.double().mean().item(), abs=1e-4)
        if k > 1:  # the delta-method variance from the normalised weights of the first k samples
            w = torch.softmax(log_w[:k].double(), 0)
            mc_var = (k * w.pow(2).sum(0) - 1) / (k - 1)
            assert torch.allclose(got[k].mc_var, mc_var, rtol=1e-3, atol=1e-9), k
    assert torch.isnan(got[1].mc_var).all()
    # the largest k alone is iwae_estimate with the same seed (same draws, same weights)
    alone = evaluate.iwae_estimate(model, x, k=200, batch_size=len(x), seed=seed)
    assert torch.equal(alone.values, got[200].values)
    with pytest.raises(ValueError, match="k"):
        evaluate.iwae_estimates(model, x, ks=[10, 0])
    with pytest.raises(ValueError, match="at least one"):
        evaluate.iwae_estimates(model, x, ks=[])
