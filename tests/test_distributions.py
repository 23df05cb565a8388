"""Tests of vae_core.distributions against independent oracles.

Oracles: torch.distributions (Normal / Independent / kl_divergence / Bernoulli), sympy (the 1-D
Gaussian KL integrated symbolically), scipy quadrature, numpy float64 formulas, and the Monte-Carlo
standard error computed from the samples themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate, stats
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from vae_core import distributions as D
from vae_core.distributions import (
    bernoulli_log_prob,
    gaussian_kl,
    gaussian_log_prob,
    log_mean_exp,
    mc_kl,
    reparameterize,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _diag_normal(mu: torch.Tensor, logvar: torch.Tensor) -> Independent:
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)


def _random_params(seed: int, shape: tuple[int, ...], logvar_scale: float = 2.0, dtype=torch.float64):
    g = _gen(seed)
    mu = 3.0 * torch.randn(shape, generator=g, dtype=dtype)
    logvar = logvar_scale * torch.randn(shape, generator=g, dtype=dtype)
    return mu, logvar


# ------------------------------------------------------------------------------- gaussian_log_prob

def test_gaussian_log_prob_matches_torch_distributions():
    mu, logvar = _random_params(0, (6, 5))
    z = mu + torch.exp(0.5 * logvar) * torch.randn((6, 5), generator=_gen(1), dtype=torch.float64) * 2
    expected = _diag_normal(mu, logvar).log_prob(z)
    got = gaussian_log_prob(z, mu, logvar)
    assert got.shape == (6,)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_gaussian_log_prob_defaults_are_standard_normal():
    z = torch.randn(4, 3, generator=_gen(2), dtype=torch.float64)
    expected = Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(z), expected, rtol=1e-12, atol=1e-12)
    # scalars for mu / logvar broadcast like tensors
    expected = Normal(torch.tensor(0.5, dtype=torch.float64),
                      torch.tensor(math.exp(0.5 * -1.3), dtype=torch.float64)).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(z, 0.5, -1.3), expected, rtol=1e-12, atol=1e-12)


def test_gaussian_log_prob_broadcasts_samples_over_parameters():
    mu, logvar = _random_params(3, (5, 3))
    z = torch.randn(7, 5, 3, generator=_gen(4), dtype=torch.float64)
    got = gaussian_log_prob(z, mu, logvar)
    assert got.shape == (7, 5)
    torch.testing.assert_close(got, _diag_normal(mu, logvar).log_prob(z), rtol=1e-12, atol=1e-12)
    # parameters with a shared last-dim logvar: (3,) broadcasts against (7, 5, 3)
    got = gaussian_log_prob(z, mu, logvar[0])
    expected = _diag_normal(mu, logvar[0].expand(5, 3)).log_prob(z)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_log_prob_extreme_logvar_is_finite_and_correct(dtype):
    logvar = torch.tensor([[-30.0, 30.0, -30.0, 30.0]], dtype=dtype)
    mu = torch.tensor([[0.0, 1.0, 2.0, -3.0]], dtype=dtype)
    z = torch.tensor([[1e-6, 1e5, 2.0 + 1e-3, 7.0]], dtype=dtype)
    got = gaussian_log_prob(z, mu, logvar)
    assert torch.isfinite(got).all()
    expected = _diag_normal(mu.double(), logvar.double()).log_prob(z.double())
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------------------------- gaussian_kl

def test_gaussian_kl_matches_torch_kl_divergence_with_standard_prior():
    mu, logvar = _random_params(5, (8, 4))
    expected = kl_divergence(_diag_normal(mu, logvar), _diag_normal(torch.zeros(4), torch.zeros(4)))
    got = gaussian_kl(mu, logvar)
    assert got.shape == (8,)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_gaussian_kl_matches_torch_kl_divergence_with_non_unit_prior():
    mu_q, logvar_q = _random_params(6, (8, 4))
    mu_p, logvar_p = _random_params(7, (8, 4))
    expected = kl_divergence(_diag_normal(mu_q, logvar_q), _diag_normal(mu_p, logvar_p))
    torch.testing.assert_close(gaussian_kl(mu_q, logvar_q, mu_p, logvar_p), expected, rtol=1e-10, atol=1e-10)
    # scalar prior parameters
    expected = kl_divergence(_diag_normal(mu_q, logvar_q),
                             _diag_normal(torch.full((4,), 0.7, dtype=torch.float64),
                                          torch.full((4,), -0.4, dtype=torch.float64)))
    torch.testing.assert_close(gaussian_kl(mu_q, logvar_q, 0.7, -0.4), expected, rtol=1e-10, atol=1e-10)


def test_gaussian_kl_broadcasts():
    mu_q, logvar_q = _random_params(8, (5, 1, 3))
    mu_p, logvar_p = _random_params(9, (1, 4, 3))
    got = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    assert got.shape == (5, 4)
    q = _diag_normal(mu_q.expand(5, 4, 3), logvar_q.expand(5, 4, 3))
    p = _diag_normal(mu_p.expand(5, 4, 3), logvar_p.expand(5, 4, 3))
    torch.testing.assert_close(got, kl_divergence(q, p), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_kl_extreme_logvars_no_overflow(dtype):
    lv = [-30.0, 30.0]
    logvar_q = torch.tensor([[a for a in lv for _ in lv]], dtype=dtype)  # -30 -30 30 30
    logvar_p = torch.tensor([[b for _ in lv for b in lv]], dtype=dtype)  # -30 30 -30 30
    mu_q = torch.tensor([[0.5, -2.0, 1.0, 3.0]], dtype=dtype)
    mu_p = torch.zeros_like(mu_q)
    got = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    assert torch.isfinite(got).all() and (got >= 0).all()
    expected = kl_divergence(_diag_normal(mu_q.double(), logvar_q.double()),
                             _diag_normal(mu_p.double(), logvar_p.double()))
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-3)
    # against the standard prior each extreme dimension alone
    for value in lv:
        one = gaussian_kl(torch.zeros(1, 1, dtype=dtype), torch.full((1, 1), value, dtype=dtype))
        assert torch.isfinite(one).all()
        assert one.item() == pytest.approx(0.5 * (math.exp(value) - value - 1.0), rel=1e-5)


def test_gaussian_kl_non_negative_zero_on_itself_and_asymmetric():
    mu_q, logvar_q = _random_params(10, (200, 3))
    mu_p, logvar_p = _random_params(11, (200, 3))
    kl_qp = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    kl_pq = gaussian_kl(mu_p, logvar_p, mu_q, logvar_q)
    assert (kl_qp > 0).all() and (kl_pq > 0).all()
    same = gaussian_kl(mu_q, logvar_q, mu_q, logvar_q)
    torch.testing.assert_close(same, torch.zeros(200, dtype=torch.float64))
    # asymmetry, on a case computed by hand: KL(N(0,1) || N(0,4)) = ½(log 4 + 1/4 − 1);
    # KL(N(0,4) || N(0,1)) = ½(−log 4 + 4 − 1)
    zero = torch.zeros(1, 1, dtype=torch.float64)
    log4 = torch.full((1, 1), math.log(4.0), dtype=torch.float64)
    assert gaussian_kl(zero, zero, zero, log4).item() == pytest.approx(0.5 * (math.log(4) + 0.25 - 1))
    assert gaussian_kl(zero, log4, zero, zero).item() == pytest.approx(0.5 * (-math.log(4) + 3))
    assert not torch.allclose(kl_qp, kl_pq)


def test_gaussian_kl_closed_form_equals_symbolic_integral():
    """Integrate p(x) log(p(x)/q(x)) with sympy (1-D), rewrite in log-variances, compare."""
    t = sp.Symbol("t", real=True)  # x = mu1 + s1 t, t ~ N(0, 1)
    mu1, mu2 = sp.symbols("mu1 mu2", real=True)
    s1, s2 = sp.symbols("s1 s2", positive=True)
    x = mu1 + s1 * t
    log_p = -sp.log(s1) - (x - mu1) ** 2 / (2 * s1**2)  # the -½log 2π cancels in the ratio
    log_q = -sp.log(s2) - (x - mu2) ** 2 / (2 * s2**2)
    std_normal = sp.exp(-(t**2) / 2) / sp.sqrt(2 * sp.pi)
    kl_sym = sp.integrate(sp.expand(std_normal * (log_p - log_q)), (t, -sp.oo, sp.oo))

    lv1, lv2 = sp.symbols("lv1 lv2", real=True)
    closed = sp.Rational(1, 2) * (lv2 - lv1 + sp.exp(lv1 - lv2) + (mu1 - mu2) ** 2 * sp.exp(-lv2) - 1)
    diff = kl_sym.subs({s1: sp.exp(lv1 / 2), s2: sp.exp(lv2 / 2)}) - closed
    assert sp.simplify(sp.expand_log(sp.expand(diff), force=True)) == 0

    # and numerically against the library at random points
    f = sp.lambdify((mu1, s1, mu2, s2), kl_sym, "math")
    mu_q, logvar_q = _random_params(12, (6, 1))
    mu_p, logvar_p = _random_params(13, (6, 1))
    got = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    for i in range(6):
        ref = f(mu_q[i, 0].item(), math.exp(0.5 * logvar_q[i, 0].item()),
                mu_p[i, 0].item(), math.exp(0.5 * logvar_p[i, 0].item()))
        assert got[i].item() == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize(
    ("mu_q", "sd_q", "mu_p", "sd_p"),
    [(0.0, 1.0, 0.0, 1.0), (1.5, 0.3, -0.5, 2.0), (-2.0, 3.0, 1.0, 0.5), (0.2, 0.05, 0.0, 1.0)],
)
def test_gaussian_kl_matches_quadrature(mu_q, sd_q, mu_p, sd_p):
    def integrand(x):
        log_ratio = stats.norm.logpdf(x, mu_q, sd_q) - stats.norm.logpdf(x, mu_p, sd_p)
        return stats.norm.pdf(x, mu_q, sd_q) * log_ratio

    ref, err = integrate.quad(integrand, mu_q - 40 * sd_q, mu_q + 40 * sd_q, points=[mu_q], limit=200)
    def t(value):
        return torch.tensor([[value]], dtype=torch.float64)

    got = gaussian_kl(t(mu_q), t(2 * math.log(sd_q)), t(mu_p), t(2 * math.log(sd_p)))
    assert got.item() == pytest.approx(ref, abs=1e-9 + 10 * err)


# ---------------------------------------------------------------------------------- reparameterize

def test_reparameterize_shapes_moments_and_gradient_path():
    mu = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([[0.0, 1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    assert reparameterize(mu, logvar).shape == (1, 3)
    n = 100_000
    z = reparameterize(mu, logvar, n, generator=_gen(14))
    assert z.shape == (n, 1, 3)
    sd = torch.exp(0.5 * logvar.detach())
    se = sd / math.sqrt(n)
    assert ((z.detach().mean(0) - mu.detach()).abs() < 4 * se).all()
    # variance of a Gaussian sample variance: 2 sd^4 / (n - 1)
    assert ((z.detach().var(0) - sd**2).abs() < 4 * sd**2 * math.sqrt(2 / (n - 1))).all()
    # pathwise: dz/dmu = 1, dz/dlogvar = ½ σ ε; with the same generator we know ε
    eps = torch.randn((5, 1, 3), generator=_gen(15), dtype=torch.float64)
    z = reparameterize(mu, logvar, 5, generator=_gen(15))
    torch.testing.assert_close(z, mu + sd * eps)
    g_mu, g_lv = torch.autograd.grad(z.sum(), (mu, logvar))
    torch.testing.assert_close(g_mu, torch.full_like(mu, 5.0))
    torch.testing.assert_close(g_lv, (0.5 * sd * eps).sum(0))


# ------------------------------------------------------------------------------------------- mc_kl

def test_mc_kl_converges_to_closed_form_within_standard_error():
    mu_q, logvar_q = _random_params(16, (1, 3), logvar_scale=0.7)
    mu_p, logvar_p = _random_params(17, (1, 3), logvar_scale=0.7)
    n = 200_000
    # n independent single-sample estimates (one per row) give the standard error
    singles = mc_kl(mu_q.expand(n, 3), logvar_q.expand(n, 3), mu_p, logvar_p, n_samples=1, generator=_gen(18))
    assert singles.shape == (n,)
    truth = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p).item()
    se = singles.std().item() / math.sqrt(n)
    assert se > 0
    assert abs(singles.mean().item() - truth) < 4 * se
    # the n-sample estimate averages the same draws (same generator stream, same count)
    many = mc_kl(mu_q, logvar_q, mu_p, logvar_p, n_samples=n, generator=_gen(18))
    assert many.shape == (1,)
    assert many.item() == pytest.approx(singles.mean().item(), rel=1e-9, abs=1e-12)


def test_mc_kl_standard_prior_default_and_error_shrinks():
    mu_q, logvar_q = _random_params(19, (4, 2), logvar_scale=0.5)
    truth = gaussian_kl(mu_q, logvar_q)
    errors = []
    for n in (100, 10_000):
        reps = torch.stack([mc_kl(mu_q, logvar_q, n_samples=n, generator=_gen(20 + r)) for r in range(30)])
        errors.append((reps - truth).pow(2).mean().sqrt().item())
    # RMS error scales like 1/sqrt(n): 100x more samples, about 10x smaller (allow 5x..20x)
    assert 5 < errors[0] / errors[1] < 20


def test_mc_kl_rejects_bad_n_samples():
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        mc_kl(torch.zeros(1, 2), torch.zeros(1, 2), n_samples=0)


# ------------------------------------------------------------------------------ bernoulli_log_prob

def _bernoulli_oracle(x: np.ndarray, logits: np.ndarray) -> np.ndarray:
    # log sigmoid(l) = -log(1 + e^-l), log(1 - sigmoid(l)) = -log(1 + e^l), float64
    return (-x * np.logaddexp(0.0, -logits) - (1.0 - x) * np.logaddexp(0.0, logits)).sum(-1)


def test_bernoulli_log_prob_matches_torch_and_numpy():
    g = _gen(21)
    logits = 4 * torch.randn(6, 10, generator=g, dtype=torch.float64)
    x = (torch.rand(6, 10, generator=g, dtype=torch.float64) < 0.5).double()
    got = bernoulli_log_prob(x, logits)
    assert got.shape == (6,)
    torch.testing.assert_close(got, Bernoulli(logits=logits).log_prob(x).sum(-1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.numpy(), _bernoulli_oracle(x.numpy(), logits.numpy()), rtol=1e-12)


def test_bernoulli_log_prob_saturated_logits_are_finite():
    # one pixel per row, so each row's sum is one pixel's log-probability
    logits = torch.tensor([[100.0], [100.0], [-100.0], [-100.0]])
    x = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    per_pixel = bernoulli_log_prob(x, logits)
    assert torch.isfinite(per_pixel).all()
    expected = _bernoulli_oracle(x.double().numpy(), logits.double().numpy())
    np.testing.assert_allclose(per_pixel.double().numpy(), expected, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(per_pixel.numpy(), [0.0, -100.0, -100.0, 0.0], atol=1e-4)  # to the nat
    torch.testing.assert_close(per_pixel, Bernoulli(logits=logits).log_prob(x).sum(-1))


def test_bernoulli_log_prob_grey_levels_and_broadcasting():
    g = _gen(22)
    x = torch.rand(3, 5, generator=g, dtype=torch.float64)  # grey levels in (0, 1)
    logits = torch.randn(7, 3, 5, generator=g, dtype=torch.float64)
    got = bernoulli_log_prob(x, logits)
    assert got.shape == (7, 3)
    np.testing.assert_allclose(got.numpy(), _bernoulli_oracle(x.numpy()[None], logits.numpy()), rtol=1e-12)


@pytest.mark.parametrize("d", [784, 6, 17])
def test_bernoulli_log_prob_float32_is_torch_within_rounding(d):
    """In float32 (the grouped logs): torch.distributions.Bernoulli in float64 as the reference, on
    binary and grey x, logits from 0 to ±60, pixel counts that are and are not multiples of
    SOFTPLUS_GROUP, and logits with more leading dimensions than x."""
    g = _gen(d)
    scales = torch.tensor([0.1, 1.0, 5.0, 20.0, 60.0])[torch.arange(7) % 5]
    logits = torch.randn(7, 5, d, generator=g) * scales[:, None, None]
    logits[0, 0, : d // 2] = 0.0
    for x in ((torch.rand(5, d, generator=g) < 0.3).float(), torch.rand(5, d, generator=g)):
        got = bernoulli_log_prob(x, logits).double()
        assert got.shape == (7, 5)
        exact = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits.double(), x.double().expand_as(logits), reduction="none").sum(-1)
        if bool(((x == 0) | (x == 1)).all()):
            dist = Independent(Bernoulli(logits=logits.double()), 1)
            torch.testing.assert_close(exact, dist.log_prob(x.double().expand_as(logits)))
        # float32 rounding of sums of up to 784 terms of size up to 60: relative 1e-6 of their size
        scale = logits.abs().sum(-1).double() + d
        assert ((got - exact).abs() <= 2e-6 * scale + 1e-5).all(), (got - exact).abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("logits_shape, x_shape", [((3, 4, 30), (4, 30)), ((1, 30), (3, 4, 30))])
def test_bernoulli_log_prob_gradients_are_torchs_bit_for_bit(dtype, logits_shape, x_shape):
    """∂/∂logits and ∂/∂x are exactly those of -binary_cross_entropy_with_logits (what training with
    it computes), through broadcasting either way and an upstream gradient that is not all ones."""
    g = _gen(24)
    logits0 = 8 * torch.randn(logits_shape, generator=g, dtype=dtype)
    x0 = torch.rand(x_shape, generator=g, dtype=dtype)
    x0[..., :2, :] = (x0[..., :2, :] < 0.5).to(dtype)  # binary rows and grey rows
    upstream = torch.randn(torch.broadcast_shapes(logits_shape, x_shape)[:-1], generator=g, dtype=dtype)
    grads = []

    def torch_bce(x, logits):
        logits, x = torch.broadcast_tensors(logits, x)
        return -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    for f in (bernoulli_log_prob, torch_bce):
        logits, x = logits0.clone().requires_grad_(), x0.clone().requires_grad_()
        (f(x, logits) * upstream).sum().backward()
        grads.append((logits.grad, x.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])
    # and they are the derivatives: x − σ(l) and l (gradcheck by finite differences, float64)
    if dtype == torch.float64 and logits_shape == (3, 4, 30):
        assert torch.autograd.gradcheck(bernoulli_log_prob, (x0[:2, :5].clone().requires_grad_(),
                                        logits0[:, :2, :5].clone().requires_grad_()))
        assert torch.autograd.gradgradcheck(bernoulli_log_prob, (x0[:2, :5].clone().requires_grad_(),
                                            logits0[:, :2, :5].clone().requires_grad_()))


def test_bernoulli_log_prob_rejects_integer_images():
    with pytest.raises(TypeError, match="floating point"):
        bernoulli_log_prob(torch.ones(2, 3, dtype=torch.uint8), torch.zeros(2, 3))


# ------------------------------------------------------------------------------------ log_mean_exp

def test_log_mean_exp_matches_direct_computation():
    v = torch.randn(50, 4, generator=_gen(23), dtype=torch.float64) * 3
    direct = np.log(np.mean(np.exp(v.numpy()), axis=0))
    np.testing.assert_allclose(log_mean_exp(v).numpy(), direct, rtol=1e-12)
    direct1 = np.log(np.mean(np.exp(v.numpy()), axis=1))
    np.testing.assert_allclose(log_mean_exp(v, dim=1).numpy(), direct1, rtol=1e-12)
    np.testing.assert_allclose(log_mean_exp(v, dim=-1).numpy(), direct1, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("offset", [1000.0, -1000.0, 1e5])
def test_log_mean_exp_is_stable_for_huge_values(dtype, offset):
    # mean(e^c, e^(c + log 3)) = e^c (1 + 3)/2, so log-mean-exp = c + log 2, whatever the size of c
    v = torch.tensor([offset, offset + math.log(3.0)], dtype=dtype)
    got = log_mean_exp(v)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(offset + math.log(2.0), rel=1e-6 if dtype == torch.float32 else 1e-12)
    # shift invariance: lme(v + c) = lme(v) + c
    w = torch.randn(20, generator=_gen(24), dtype=torch.float64)
    shifted = (log_mean_exp(w + offset) - offset).item()
    assert shifted == pytest.approx(log_mean_exp(w).item(), abs=1e-9 * abs(offset))


# ---------------------------------------------------------------------------------------------
# The discretized logistic likelihood of 8-bit pixels
# ---------------------------------------------------------------------------------------------

GRID = torch.arange(256, dtype=torch.float64) / 255


@pytest.mark.parametrize(("mean", "log_scale"), [(0.5, -3.0), (0.0, -5.0), (1.0, -1.0), (-3.0, 0.0),
                                                 (0.3, -9.0), (0.731, 2.0), (5.0, -4.0)])
def test_discretized_logistic_sums_to_one_over_the_256_levels(mean, log_scale):
    logp = D.discretized_logistic_log_prob(GRID[:, None], torch.tensor(mean, dtype=torch.float64),
                                           torch.tensor(log_scale, dtype=torch.float64))
    assert logp.shape == (256,)
    assert torch.logsumexp(logp, 0).item() == pytest.approx(0.0, abs=1e-12)


def test_discretized_logistic_equals_cdf_differences_of_torch_logistic():
    # The logistic as a transformed uniform: CDF(t) = sigmoid((t - mean) / s), from torch.distributions.
    from torch.distributions import TransformedDistribution, Uniform
    from torch.distributions.transforms import AffineTransform, SigmoidTransform

    mean, s = torch.tensor(0.42, dtype=torch.float64), torch.tensor(0.07, dtype=torch.float64)
    logistic = TransformedDistribution(Uniform(torch.tensor(0.0, dtype=torch.float64),
                                               torch.tensor(1.0, dtype=torch.float64)),
                                       [SigmoidTransform().inv, AffineTransform(mean, s)])
    edges = torch.cat([torch.tensor([-torch.inf]), (GRID[:-1] + GRID[1:]) / 2, torch.tensor([torch.inf])])
    cdf = torch.where(torch.isinf(edges), (edges > 0).double(), logistic.cdf(edges.clamp(-1e3, 1e3)))
    expected = torch.log(cdf[1:] - cdf[:-1])
    got = D.discretized_logistic_log_prob(GRID[:, None], mean, s.log())
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_discretized_logistic_is_finite_with_finite_gradients_at_extremes():
    x = GRID[torch.tensor([0, 1, 128, 254, 255])].repeat(4)
    f64 = torch.float64
    mean = torch.tensor([0.0, 1.0, -50.0, 50.0], dtype=f64).repeat_interleave(5).requires_grad_()
    log_scale = torch.tensor([-12.0, -12.0, 3.0, -7.0], dtype=f64).repeat_interleave(5).requires_grad_()
    logp = D.discretized_logistic_log_prob(x[:, None], mean[:, None], log_scale[:, None])
    assert torch.isfinite(logp).all()
    logp.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()
    # a very sharp logistic centred on the pixel puts (almost) all mass on it
    sharp = D.discretized_logistic_log_prob(GRID[[100]][:, None], GRID[[100]], torch.tensor(-12.0))
    assert sharp.item() == pytest.approx(0.0, abs=1e-6)


def test_log_sigmoid_difference_is_stable():
    import mpmath

    mpmath.mp.dps = 50  # 50 digits: sigma(30) - sigma(29) cancels 13 of float64's 16
    pairs = [(1e-3, 0.0), (30.0, 29.0), (-30.0, -31.0), (5.0, -5.0), (200.0, -200.0), (40.0, 39.99)]
    a = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    b = torch.tensor([p[1] for p in pairs], dtype=torch.float64)

    def sig(t):
        return 1 / (1 + mpmath.exp(-t))

    exact = torch.tensor([float(mpmath.log(sig(mpmath.mpf(x)) - sig(mpmath.mpf(y)))) for x, y in pairs],
                         dtype=torch.float64)
    torch.testing.assert_close(D.log_sigmoid_difference(a, b), exact, rtol=1e-12, atol=1e-12)


def test_bits_per_dim():
    assert D.bits_per_dim(784 * math.log(2.0), 784) == pytest.approx(1.0)
