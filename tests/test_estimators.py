"""Tests of vae_core.estimators against independent oracles.

Oracles: sympy (Gaussian moments of polynomials, exact), scipy quadrature (``integrate.quad``) with
finite differences for the true gradients, the closed forms of the module checked against each other,
Monte-Carlo means and variances with their own standard errors, and autograd of the ordinary
(pathwise) ELBO for the VAE estimators.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate, stats
from torch.distributions import Bernoulli, Normal, kl_divergence

from vae_core import estimators as E
from vae_core.models import VAE
from vae_core.train import elbo_loss, fit

MU, SIGMA = 0.7, 1.3



def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _quadratic(k):
    return lambda x: (x - k) ** 2


def _bump(k):
    return lambda x: torch.exp(-k * x**2)


def _cosine(k):
    return lambda x: torch.cos(k * x)


def _expect_quad(h, mu: float, sigma: float) -> float:
    """E[h(x)], x ~ N(mu, sigma²), by scipy.integrate.quad (h: numpy scalar function)."""
    dens = lambda x: math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))  # noqa: E731
    value, _ = integrate.quad(lambda x: h(x) * dens(x), mu - 14 * sigma, mu + 14 * sigma, limit=2000,
                              epsabs=1e-13, epsrel=1e-11)
    return value


def _fd_grad(h, mu: float, sigma: float, step: float = 1e-4) -> tuple[float, float]:
    """Central finite differences of E[h] in (mu, sigma), each expectation by quadrature."""
    d_mu = (_expect_quad(h, mu + step, sigma) - _expect_quad(h, mu - step, sigma)) / (2 * step)
    d_sigma = (_expect_quad(h, mu, sigma + step) - _expect_quad(h, mu, sigma - step)) / (2 * step)
    return d_mu, d_sigma


# -------------------------------------------------------------------------------- true gradients

@pytest.mark.parametrize(("mu", "sigma", "k"), [(0.7, 1.3, 0.5), (-1.0, 0.4, 2.0), (0.0, 2.0, 3.0)])
def test_true_gradients_match_finite_differences_of_quadrature(mu, sigma, k):
    cases = [
        (E.quadratic_true_grad, lambda x: (x - k) ** 2),
        (E.gaussian_bump_true_grad, lambda x: math.exp(-k * x * x)),
        (E.cosine_true_grad, lambda x: math.cos(k * x)),
    ]
    for closed, h in cases:
        got = closed(mu, sigma, k)
        ref = _fd_grad(h, mu, sigma)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7, err_msg=closed.__name__)


def test_true_gradient_argument_checks():
    with pytest.raises(ValueError, match="sigma"):
        E.quadratic_true_grad(0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="mu"):
        E.cosine_true_grad(float("nan"), 1.0, 1.0)
    with pytest.raises(ValueError, match="k"):
        E.gaussian_bump_true_grad(0.0, 1.0, -1.0)


# --------------------------------------------------------------- closed-form quadratic variances

def _sympy_variances(mu: float, sigma: float, k: float, b: float) -> tuple[float, float, float, float]:
    """Single-sample variances for f = (x − k)², computed exactly from the moments of ε ~ N(0, 1):
    E ε^m = (m − 1)!! for even m, 0 for odd m (polynomial in ε, expanded by sympy)."""
    eps = sp.Symbol("eps")
    mu_, sigma_, k_, b_ = (sp.Rational(str(v)) for v in (mu, sigma, k, b))
    x = mu_ + sigma_ * eps

    def expect(expr):
        poly = sp.Poly(sp.expand(expr), eps)
        return sum(c * (sp.factorial2(m - 1) if m % 2 == 0 else 0)
                   for (m,), c in poly.terms())

    f = (x - k_) ** 2
    fprime = 2 * (x - k_)
    score = ((f - b_) * eps / sigma_, (f - b_) * (eps**2 - 1) / sigma_)
    path = (fprime, fprime * eps)
    out = [expect(e**2) - expect(e) ** 2 for e in (*score, *path)]
    return tuple(float(v) for v in out)


@pytest.mark.parametrize(("mu", "sigma", "k", "b"), [
    (1.0, 1.0, 1.0, 0.0), (0.5, 2.0, 3.0, 0.0), (-1.5, 0.5, 0.25, 2.5), (2.0, 1.5, -1.0, -4.0)])
def test_quadratic_variances_match_sympy_moments(mu, sigma, k, b):
    got = E.quadratic_variances(mu, sigma, k, baseline=b if b else None)
    np.testing.assert_allclose(tuple(got), _sympy_variances(mu, sigma, k, b), rtol=1e-12)


def test_quadratic_variances_book_numbers():
    v = E.quadratic_variances(1.0, 1.0, 1.0)
    assert tuple(v) == (15.0, 74.0, 4.0, 8.0)


def test_quadratic_variances_leave_one_out_matches_monte_carlo():
    n = 60_000
    v = E.quadratic_variances(MU, SIGMA, 2.0, baseline="mean", n=5)
    # many independent groups of 5 draws sharing a leave-one-out baseline
    g = _gen(3)
    rows = torch.cat([E.score_function_grad(_quadratic(2.0), MU, SIGMA, 5, baseline="mean", generator=g)
                      for _ in range(n // 5)])
    var = rows.var(0)
    np.testing.assert_allclose(var.numpy(), [v.score_mu, v.score_sigma], rtol=0.08)


def test_quadratic_variances_argument_checks():
    with pytest.raises(ValueError, match="needs the number of samples"):
        E.quadratic_variances(0.0, 1.0, 1.0, baseline="mean")
    with pytest.raises(ValueError, match="baseline"):
        E.quadratic_variances(0.0, 1.0, 1.0, baseline="median")


# -------------------------------------------------------------------- Monte-Carlo estimators

@pytest.mark.parametrize("make_f, closed", [(_quadratic, E.quadratic_true_grad),
                                            (_bump, E.gaussian_bump_true_grad),
                                            (_cosine, E.cosine_true_grad)])
@pytest.mark.parametrize("estimator", ["score", "pathwise", "score-const", "score-mean"])
def test_estimators_are_unbiased(make_f, closed, estimator):
    k, n = 1.5, 400_000
    f = make_f(k)
    g = _gen(11)
    if estimator == "pathwise":
        samples = E.pathwise_grad(f, MU, SIGMA, n, generator=g)
    elif estimator == "score":
        samples = E.score_function_grad(f, MU, SIGMA, n, generator=g)
    elif estimator == "score-const":
        samples = E.score_function_grad(f, MU, SIGMA, n, baseline=0.8, generator=g)
    else:
        samples = E.score_function_grad(f, MU, SIGMA, n, baseline="mean", generator=g)
    assert samples.shape == (n, 2) and samples.dtype == torch.float64
    stats = E.estimator_stats(samples)
    se = (stats.variance / n).sqrt()
    err = (stats.mean - torch.tensor(closed(MU, SIGMA, k), dtype=torch.float64)).abs()
    assert (err < 5 * se).all(), (err, se)


def test_monte_carlo_variances_match_closed_form_quadratic():
    n = 400_000
    v = E.quadratic_variances(MU, SIGMA, 0.3)
    s = E.estimator_stats(E.score_function_grad(_quadratic(0.3), MU, SIGMA, n, generator=_gen(1))).variance
    p = E.estimator_stats(E.pathwise_grad(_quadratic(0.3), MU, SIGMA, n, generator=_gen(1))).variance
    np.testing.assert_allclose(s.numpy(), [v.score_mu, v.score_sigma], rtol=0.05)
    np.testing.assert_allclose(p.numpy(), [v.pathwise_mu, v.pathwise_sigma], rtol=0.02)


def test_same_seed_same_noise_and_pathwise_values():
    """With one seed both estimators use the same ε; pathwise rows are (f'(x), f'(x) ε) exactly."""
    n, k = 64, 0.5
    eps = torch.randn(n, generator=_gen(5), dtype=torch.float64)
    x = MU + SIGMA * eps
    p = E.pathwise_grad(_quadratic(k), MU, SIGMA, n, generator=_gen(5))
    torch.testing.assert_close(p, torch.stack([2 * (x - k), 2 * (x - k) * eps], 1))
    s = E.score_function_grad(_quadratic(k), MU, SIGMA, n, generator=_gen(5))
    fx = (x - k) ** 2
    torch.testing.assert_close(s, torch.stack([fx * eps / SIGMA, fx * (eps**2 - 1) / SIGMA], 1))


def test_score_function_leave_one_out_baseline_definition():
    n = 7
    eps = torch.randn(n, generator=_gen(2), dtype=torch.float64)
    fx = torch.cos(2 * (MU + SIGMA * eps))
    b = torch.tensor([(fx.sum() - fx[i]) / (n - 1) for i in range(n)], dtype=torch.float64)
    s = E.score_function_grad(_cosine(2.0), MU, SIGMA, n, baseline="mean", generator=_gen(2))
    torch.testing.assert_close(s[:, 0], (fx - b) * eps / SIGMA)


def test_pathwise_of_constant_is_zero_and_score_is_not():
    const = lambda x: torch.zeros_like(x) + 3.0  # noqa: E731  (no dependence on x: gradient 0)
    with pytest.raises(ValueError, match="differentiable"):
        E.pathwise_grad(const, 0.0, 1.0, 10)
    s = E.score_function_grad(const, 0.0, 1.0, 10, generator=_gen(0))
    assert s.abs().sum() > 0  # pure noise with mean 0: why baselines exist
    assert E.score_function_grad(const, 0.0, 1.0, 10, baseline=3.0, generator=_gen(0)).abs().max() == 0


def test_estimator_argument_checks():
    f = _quadratic(1.0)
    with pytest.raises(ValueError, match="sigma"):
        E.score_function_grad(f, 0.0, -1.0, 10)
    with pytest.raises(ValueError, match="n must be"):
        E.pathwise_grad(f, 0.0, 1.0, 0)
    with pytest.raises(ValueError, match="n >= 2"):
        E.score_function_grad(f, 0.0, 1.0, 1, baseline="mean")
    with pytest.raises(ValueError, match="baseline"):
        E.score_function_grad(f, 0.0, 1.0, 4, baseline="median")
    with pytest.raises(ValueError, match="elementwise"):
        E.score_function_grad(lambda x: x.sum(), 0.0, 1.0, 4)
    with pytest.raises(ValueError, match="at least 2"):
        E.estimator_stats(torch.zeros(1, 2))


# ------------------------------------------------------------------------ quadrature variances

@pytest.mark.parametrize("baseline", [None, 1.7, "mean"])
@pytest.mark.parametrize(("mu", "sigma", "k"), [(1.0, 1.0, 1.0), (-0.5, 2.0, 3.0), (2.0, 0.3, -1.0)])
def test_quadrature_variances_match_quadratic_closed_form(mu, sigma, k, baseline):
    n = 6 if baseline == "mean" else None
    got = E.quadrature_variances(_quadratic(k), mu, sigma, baseline=baseline, n=n)
    ref = E.quadratic_variances(mu, sigma, k, baseline=baseline, n=n)
    np.testing.assert_allclose(tuple(got)[2:], tuple(ref), rtol=1e-9)
    np.testing.assert_allclose(got[:2], E.quadratic_true_grad(mu, sigma, k), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("make_f", "closed", "np_f", "np_df"), [
    (_bump, E.gaussian_bump_true_grad, lambda k, x: math.exp(-k * x * x),
     lambda k, x: -2 * k * x * math.exp(-k * x * x)),
    (_cosine, E.cosine_true_grad, lambda k, x: math.cos(k * x), lambda k, x: -k * math.sin(k * x)),
])
@pytest.mark.parametrize("k", [0.3, 2.0, 12.0])
def test_quadrature_variances_match_scipy_quad(make_f, closed, np_f, np_df, k):
    got = E.quadrature_variances(make_f(k), MU, SIGMA, baseline=0.25)
    np.testing.assert_allclose(got[:2], closed(MU, SIGMA, k), rtol=1e-8, atol=1e-12)
    g_mu, g_sigma = got[:2]

    def z(x):
        return (x - MU) / SIGMA

    ref = (
        _expect_quad(lambda x: ((np_f(k, x) - 0.25) * z(x) / SIGMA) ** 2, MU, SIGMA) - g_mu**2,
        _expect_quad(lambda x: ((np_f(k, x) - 0.25) * (z(x) ** 2 - 1) / SIGMA) ** 2, MU, SIGMA) - g_sigma**2,
        _expect_quad(lambda x: np_df(k, x) ** 2, MU, SIGMA) - g_mu**2,
        _expect_quad(lambda x: (np_df(k, x) * z(x)) ** 2, MU, SIGMA) - g_sigma**2,
    )
    np.testing.assert_allclose(tuple(got)[2:], ref, rtol=1e-7, atol=1e-10)


def test_quadrature_variances_match_monte_carlo_cosine_large_k():
    """The case the book highlights: at large k the score function has the lower variance."""
    k, n = 8.0, 400_000
    v = E.quadrature_variances(_cosine(k), 1.0, 1.0)
    s = E.estimator_stats(E.score_function_grad(_cosine(k), 1.0, 1.0, n, generator=_gen(4))).variance
    p = E.estimator_stats(E.pathwise_grad(_cosine(k), 1.0, 1.0, n, generator=_gen(4))).variance
    np.testing.assert_allclose(s.numpy(), [v.score_mu, v.score_sigma], rtol=0.02)
    np.testing.assert_allclose(p.numpy(), [v.pathwise_mu, v.pathwise_sigma], rtol=0.02)
    assert v.score_mu < v.pathwise_mu / 50 and v.score_sigma < v.pathwise_sigma / 20


def test_quadrature_variances_argument_checks():
    f = _quadratic(1.0)
    with pytest.raises(ValueError, match="odd"):
        E.quadrature_variances(f, 0.0, 1.0, n_points=1000)
    with pytest.raises(ValueError, match="needs the number of samples"):
        E.quadrature_variances(f, 0.0, 1.0, baseline="mean")
    with pytest.raises(ValueError, match="finite"):
        E.quadrature_variances(f, 0.0, 1.0, baseline=float("inf"))
    with pytest.raises(ValueError, match="differentiable"):
        E.quadrature_variances(lambda x: torch.zeros_like(x), 0.0, 1.0)


# -------------------------------------------------------------------------- a real VAE encoder

def _tiny_vae(seed: int = 0) -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(seed)
    model = VAE(12, 8, 2)
    x = (torch.rand(6, 12, generator=_gen(seed + 1)) < 0.4).float()
    return model, x


ENCODER_TENSORS = {"encoder_hidden.weight", "encoder_hidden.bias", "to_mu.weight", "to_mu.bias",
                   "to_logvar.weight", "to_logvar.bias"}


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_encoder_gradient_variance_pathwise_matches_autograd(kl):
    """Repeat r of the pathwise estimator is the autograd gradient of the single-sample ELBO
    (batch mean) with the r-th draw of the seeded generator."""
    from vae_core.objectives import elbo

    model, x = _tiny_vae()
    stats = E.encoder_gradient_variance(model, x, "pathwise", n_repeats=3, kl=kl, seed=7)
    assert set(stats) == ENCODER_TENSORS
    g = _gen(7)
    grads = []
    params = dict(model.named_parameters())
    for _ in range(3):
        obj = elbo(model, x, n_samples=1, kl=kl, generator=g).elbo.mean()
        grads.append(dict(zip(ENCODER_TENSORS, torch.autograd.grad(obj, [params[n] for n in ENCODER_TENSORS]),
                              strict=True)))
    for name in ENCODER_TENSORS:
        stack = torch.stack([gr[name] for gr in grads]).double()
        torch.testing.assert_close(stats[name].mean, stack.mean(0))
        torch.testing.assert_close(stats[name].variance, stack.var(0))


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_encoder_estimators_agree_in_mean_and_score_is_noisier(kl):
    model, x = _tiny_vae(3)
    n = 400  # the exact-gradient test below checks each estimator's mean more sharply
    path = E.encoder_gradient_variance(model, x, "pathwise", n_repeats=n, kl=kl, seed=1)
    score = E.encoder_gradient_variance(model, x, "score", n_repeats=n, kl=kl, seed=2)
    for name in ENCODER_TENSORS:
        diff = (path[name].mean - score[name].mean).abs()
        se = (path[name].variance / n + score[name].variance / n).sqrt()
        assert (diff <= 5 * se + 1e-9).all(), name
        assert score[name].mean_variance > path[name].mean_variance, name
    assert path["to_mu.bias"].standard_error.shape == (2,)


def test_encoder_analytic_kl_has_lower_variance_than_mc_kl():
    model, x = _tiny_vae(5)
    a = E.encoder_gradient_variance(model, x, "pathwise", n_repeats=250, kl="analytic", seed=0)
    m = E.encoder_gradient_variance(model, x, "pathwise", n_repeats=250, kl="mc", seed=0)
    assert all(m[name].mean_variance > a[name].mean_variance for name in ENCODER_TENSORS)


def test_encoder_gradient_variance_argument_checks():
    model, x = _tiny_vae()
    with pytest.raises(ValueError, match="pathwise"):
        E.encoder_gradient_variance(model, x, "score", kl="stl")
    with pytest.raises(ValueError, match="estimator"):
        E.encoder_gradient_variance(model, x, "reinforce")
    with pytest.raises(ValueError, match="kl"):
        E.encoder_gradient_variance(model, x, kl="exact")
    with pytest.raises(ValueError, match="n_repeats"):
        E.encoder_gradient_variance(model, x, n_repeats=1)


# ------------------------------------------------------------------ score-function training loss

def _grads(model, loss):
    names = [n for n, _ in model.named_parameters()]
    return dict(zip(names, torch.autograd.grad(loss, list(model.parameters())), strict=True))


def test_score_function_loss_terms_and_decoder_gradient_equal_the_pathwise_loss():
    """Same seed ⇒ same z: the reported ELBO terms and the decoder's gradient are those of elbo_loss
    (the decoder gradient never needs a path through z); only the encoder's gradient differs."""
    model, x = _tiny_vae(1)
    lp, tp = elbo_loss(model, x, beta=0.7, generator=_gen(9))
    ls, ts = E.score_function_elbo_loss(model, x, beta=0.7, generator=_gen(9))
    for key in ("elbo", "rec", "kl"):
        torch.testing.assert_close(ts[key], tp[key].detach())
    gp, gs = _grads(model, lp), _grads(model, ls)
    for name in ("decoder_hidden.weight", "decoder_hidden.bias", "to_x.weight", "to_x.bias"):
        torch.testing.assert_close(gs[name], gp[name])
    assert not torch.allclose(gs["to_mu.bias"], gp["to_mu.bias"])


@pytest.mark.parametrize(("n_samples", "baseline"), [(1, None), (3, "mean")])
def test_score_function_loss_encoder_gradient_is_unbiased(n_samples, baseline):
    """Averaged over many draws, the encoder gradient equals the pathwise one (both unbiased for ∇ −ELBO)."""
    model, x = _tiny_vae(2)
    reps = 400
    gp, gs = [], []
    g1, g2 = _gen(1), _gen(2)
    for _ in range(reps):
        gp.append(_grads(model, elbo_loss(model, x, generator=g1)[0])["to_mu.bias"])
        loss = E.score_function_elbo_loss(model, x, generator=g2, n_samples=n_samples, baseline=baseline)[0]
        gs.append(_grads(model, loss)["to_mu.bias"])
    gp, gs = torch.stack(gp).double(), torch.stack(gs).double()
    se = (gp.var(0) / reps + gs.var(0) / reps).sqrt()
    assert ((gp.mean(0) - gs.mean(0)).abs() < 5 * se).all()


def test_score_function_loss_leave_one_out_lowers_the_variance():
    model, x = _tiny_vae(4)
    g = _gen(0)

    def spread(**kw):
        losses = (E.score_function_elbo_loss(model, x, generator=g, **kw)[0] for _ in range(400))
        return torch.stack([_grads(model, loss)["to_mu.bias"] for loss in losses]).var(0).mean()

    plain4 = spread(n_samples=4)
    rloo4 = spread(n_samples=4, baseline="mean")
    assert rloo4 < plain4 / 2


def test_score_function_loss_trains_with_fit():
    model, x = _tiny_vae(6)
    data = x.repeat(20, 1)
    before = copy.deepcopy(model)
    hist = fit(model, data, epochs=2, batch_size=40, progress=False, device="cpu", binarize=None,
               loss_fn=lambda m, xb, y, *, beta, generator: E.score_function_elbo_loss(
                   m, xb, y, beta=beta, generator=generator, n_samples=2, baseline="mean"))
    assert set(hist.train) == {"loss", "elbo", "rec", "kl"}
    assert all(math.isfinite(v) for v in hist.train["elbo"])
    assert not torch.equal(before.to_mu.weight, model.to_mu.weight)


def test_score_function_loss_argument_checks():
    model, x = _tiny_vae()
    with pytest.raises(ValueError, match="labels"):
        E.score_function_elbo_loss(model, x, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="n_samples >= 2"):
        E.score_function_elbo_loss(model, x, baseline="mean")
    with pytest.raises(ValueError, match="baseline"):
        E.score_function_elbo_loss(model, x, n_samples=2, baseline=1.0)


# ======================================================================================================
# Further oracle checks: variance of the variance, scipy quadrature for cos(kx), exact encoder gradients
# ======================================================================================================


def _assert_variance_matches(samples: torch.Tensor, expected, n_se: float = 5.0) -> None:
    """Sample variance of each column within ``n_se`` standard errors of ``expected``.

    The standard error of a sample variance s² from n draws is sqrt((m4 − s⁴)/n), m4 the fourth central
    moment (estimated from the same samples) — the tolerance follows from the sample size.
    """
    n = samples.shape[0]
    centred = samples - samples.mean(0)
    s2 = centred.pow(2).mean(0)
    m4 = centred.pow(4).mean(0)
    se = ((m4 - s2**2) / n).sqrt()
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert ((samples.var(0) - expected).abs() < n_se * se).all(), (samples.var(0), expected, se)


@pytest.mark.parametrize(("mu", "sigma", "k"), [(1.0, 1.0, 1.0), (0.3, 0.7, -1.2)])
@pytest.mark.parametrize("baseline", [None, "E f", 10.0])
def test_quadratic_empirical_variances_within_the_standard_error_of_a_variance(mu, sigma, k, baseline):
    b = (mu - k) ** 2 + sigma**2 if baseline == "E f" else baseline  # E f = (μ − k)² + σ²
    n = 300_000
    v = E.quadratic_variances(mu, sigma, k, baseline=b)
    s = E.score_function_grad(_quadratic(k), mu, sigma, n, baseline=b, generator=_gen(20))
    _assert_variance_matches(s, [v.score_mu, v.score_sigma])
    if baseline is None:
        p = E.pathwise_grad(_quadratic(k), mu, sigma, n, generator=_gen(21))
        _assert_variance_matches(p, [v.pathwise_mu, v.pathwise_sigma])


def test_a_good_baseline_helps_and_a_naive_constant_one_hurts():
    mu = sigma = k = 1.0  # f = (x − 1)², E f = 1
    none = E.quadratic_variances(mu, sigma, k)
    good = E.quadratic_variances(mu, sigma, k, baseline=1.0)  # b = E f
    loo = E.quadratic_variances(mu, sigma, k, baseline="mean", n=100)
    naive = E.quadratic_variances(mu, sigma, k, baseline=10.0)  # "subtract something large" — far off
    # by hand at a = 0, σ = 1: c = −b, Var ∂μ = b² − 6b + 15, Var ∂σ = 2b² − 20b + 74
    assert (none.score_mu, none.score_sigma) == (15.0, 74.0)
    assert (good.score_mu, good.score_sigma) == (10.0, 56.0)
    assert (naive.score_mu, naive.score_sigma) == (55.0, 74.0)
    assert good.score_mu < loo.score_mu < none.score_mu
    assert good.score_sigma < loo.score_sigma < none.score_sigma
    assert naive.score_mu > none.score_mu
    # measured: same noise for all three, so the ordering is not luck of the draw
    n = 200_000
    var = {b: E.score_function_grad(_quadratic(k), mu, sigma, n, baseline=b, generator=_gen(22)).var(0)
           for b in (None, 1.0, 10.0, "mean")}
    assert (var[1.0] < var[None]).all() and (var["mean"] < var[None]).all()
    assert var[10.0][0] > 3 * var[None][0]


def _cosine_oracle(mu: float, sigma: float, k: float) -> dict[str, tuple[float, float]]:
    """True gradient and single-sample variances of both estimators for cos(kx): scipy quadrature over ε."""

    def expect(h):
        value, _ = integrate.quad(lambda e: h(e) * stats.norm.pdf(e), -12, 12, limit=4000,
                                  epsabs=1e-12, epsrel=1e-11)
        return value

    def f(e):
        return math.cos(k * (mu + sigma * e))

    def df(e):
        return -k * math.sin(k * (mu + sigma * e))

    g = (expect(df), expect(lambda e: df(e) * e))
    path = (expect(lambda e: df(e) ** 2) - g[0] ** 2, expect(lambda e: (df(e) * e) ** 2) - g[1] ** 2)
    score = (expect(lambda e: (f(e) * e / sigma) ** 2) - g[0] ** 2,
             expect(lambda e: (f(e) * (e * e - 1) / sigma) ** 2) - g[1] ** 2)
    return {"grad": g, "pathwise": path, "score": score}


@pytest.mark.parametrize(("k", "score_wins"), [(10.0, True), (0.5, False)])
def test_cosine_variances_match_quadrature_and_the_winner_depends_on_k(k, score_wins):
    """f = cos(kx), x ~ N(0.3, 0.5²). Pathwise samples −k sin(kx)(1, ε) have variance ≈ k²/2 at large k;
    score-function samples cos(kx)(ε, ε² − 1)/σ stay O(1/σ²): at k = 10 the score function wins
    (≈ 2, 4 vs 50, 50), at k = 0.5 the pathwise estimator does (oracle: scipy quadrature)."""
    mu, sigma, n = 0.3, 0.5, 300_000
    oracle = _cosine_oracle(mu, sigma, k)
    np.testing.assert_allclose(oracle["grad"], E.cosine_true_grad(mu, sigma, k), rtol=1e-7, atol=1e-10)
    s = E.score_function_grad(_cosine(k), mu, sigma, n, generator=_gen(30))
    p = E.pathwise_grad(_cosine(k), mu, sigma, n, generator=_gen(31))
    _assert_variance_matches(s, oracle["score"])
    _assert_variance_matches(p, oracle["pathwise"])
    for i in range(2):
        assert (oracle["score"][i] < oracle["pathwise"][i]) == score_wins
        assert (s[:, i].var() < p[:, i].var()) == score_wins


def test_score_column_is_f_times_the_autograd_score_of_torch_normal():
    """Independent score: ∇_{μ,σ} log N(x; μ, σ²) by autograd of torch.distributions.Normal.log_prob."""
    n, mu, sigma = 50, -0.4, 1.7
    x = mu + sigma * torch.randn(n, generator=_gen(40), dtype=torch.float64)
    mu_t = torch.tensor(mu, dtype=torch.float64, requires_grad=True)
    sigma_t = torch.tensor(sigma, dtype=torch.float64, requires_grad=True)
    rows = []
    for xi in x:
        rows.append(torch.stack(torch.autograd.grad(Normal(mu_t, sigma_t).log_prob(xi), (mu_t, sigma_t))))
    score = torch.stack(rows)
    fx = torch.sin(x) + x**2
    got = E.score_function_grad(lambda t: torch.sin(t) + t**2, mu, sigma, n, generator=_gen(40))
    torch.testing.assert_close(got, fx[:, None] * score)
    # pathwise of f = x³: (3x², 3x² ε)
    eps = (x - mu) / sigma
    got = E.pathwise_grad(lambda t: t**3, mu, sigma, n, generator=_gen(40))
    torch.testing.assert_close(got, torch.stack([3 * x**2, 3 * x**2 * eps], 1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be an integer >= 1"),
        ({"n": 2.5}, "n must be an integer >= 1"),
        ({"sigma": 0.0}, "sigma must be a finite number > 0"),
        ({"sigma": float("nan")}, "sigma must be a finite number > 0"),
        ({"sigma": float("inf")}, "sigma must be a finite number > 0"),
        ({"mu": float("inf")}, "mu must be a finite number"),
    ],
)
@pytest.mark.parametrize("estimator", [E.score_function_grad, E.pathwise_grad])
def test_bad_toy_arguments_raise_clear_errors(estimator, kwargs, match):
    args = {"mu": 0.0, "sigma": 1.0, "n": 10} | kwargs
    with pytest.raises(ValueError, match=match):
        estimator(_quadratic(1.0), **args)


def test_non_torch_f_is_refused_by_the_pathwise_estimator_only():
    def numpy_cos(x):
        return torch.from_numpy(np.cos(x.detach().numpy()))

    assert E.score_function_grad(numpy_cos, 0.0, 1.0, 5, generator=_gen(0)).shape == (5, 2)
    with pytest.raises(ValueError, match="differentiable"):
        E.pathwise_grad(numpy_cos, 0.0, 1.0, 5)
    with pytest.raises(ValueError, match="finite"):
        E.score_function_grad(_quadratic(1.0), 0.0, 1.0, 5, baseline=float("nan"))


# ----------------------------------------- a VAE with a 1-D latent: the exact gradient by quadrature

def _gauss_legendre(lo: float, hi: float, edges: np.ndarray, width: float, order: int = 24):
    """Composite Gauss-Legendre nodes/weights on [lo, hi] with panel edges at ``edges`` (the ReLU kinks)."""
    cuts = np.unique(np.concatenate([[lo, hi], edges[(edges > lo) & (edges < hi)]]))
    t, w = np.polynomial.legendre.leggauss(order)
    nodes, weights = [], []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        pieces = np.linspace(a, b, int(np.ceil((b - a) / width)) + 1)
        for c, d in zip(pieces[:-1], pieces[1:], strict=True):
            nodes.append(0.5 * (c + d) + 0.5 * (d - c) * t)
            weights.append(0.5 * (d - c) * w)
    return torch.from_numpy(np.concatenate(nodes)), torch.from_numpy(np.concatenate(weights))


def _exact_encoder_gradient(model: VAE, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """∇_φ of the batch-mean ELBO, (1/B) Σ_b ∫ q_φ(z|x_b) log p(x_b|z) dz − KL(q_φ ‖ N(0, 1)), z ∈ R.

    The integral uses fixed z-nodes (panels split at the decoder's ReLU kinks, where log p(x|z) is not
    smooth), so autograd differentiates only the density q_φ(z_i|x_b): an exact rule for the gradient,
    independent of both estimators. KL from torch.distributions.
    """
    params = dict(model.named_parameters())
    mu, logvar = model.encode(x)
    sd = torch.exp(0.5 * logvar)
    with torch.no_grad():
        w, b = model.decoder_hidden.weight[:, 0], model.decoder_hidden.bias
        kinks = (-b[w != 0] / w[w != 0]).numpy()
        lo, hi = (mu - 14 * sd).min().item(), (mu + 14 * sd).max().item()
    z, wz = _gauss_legendre(lo, hi, kinks, width=0.25 * sd.min().item())
    with torch.no_grad():
        logits = model.decode(z.reshape(-1, 1, 1).expand(-1, len(x), 1))  # decoder θ only
        log_lik = Bernoulli(logits=logits).log_prob(x.expand_as(logits)).sum(-1)  # (M, B)
    q = torch.exp(Normal(mu[:, 0], sd[:, 0]).log_prob(z[:, None]))  # (M, B)
    expected_rec = (wz[:, None] * q * log_lik).sum(0)
    kl = kl_divergence(Normal(mu[:, 0], sd[:, 0]), Normal(0.0, 1.0))
    objective = (expected_rec - kl).mean()
    return dict(zip(names, torch.autograd.grad(objective, [params[n] for n in names]), strict=True))


@pytest.mark.parametrize(("estimator", "kl"), [("pathwise", "analytic"), ("pathwise", "mc"),
                                               ("pathwise", "stl"), ("score", "analytic"),
                                               ("score", "mc")])
def test_encoder_estimators_are_unbiased_for_the_exact_gradient(estimator, kl):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = VAE(4, 8, 1).double()
    x = (torch.rand(3, 4, generator=_gen(1), dtype=torch.float64) < 0.5).double()
    n = 800
    stats_ = E.encoder_gradient_variance(model, x, estimator, n_repeats=n, kl=kl, seed=3)
    exact = _exact_encoder_gradient(model, x, sorted(stats_))
    z_scores = []
    for name, st in stats_.items():
        assert st.mean.shape == exact[name].shape == dict(model.named_parameters())[name].shape
        se = st.standard_error
        moving = se > 0  # elements behind a ReLU that is off for every example get exactly 0
        torch.testing.assert_close(st.mean[~moving], exact[name][~moving].double(), rtol=0, atol=1e-12)
        z_scores.append(((st.mean - exact[name]) / se)[moving])
    z = torch.cat(z_scores)
    assert z.numel() > 20
    assert z.abs().max() < 5, z.abs().max()
    assert z.pow(2).mean() < 2  # ≈ 1 if every element is unbiased and its SE is right


def test_pathwise_encoder_gradient_is_far_less_noisy_on_image_like_data():
    """64 binary pixels, 4 latents: every encoder tensor's score-function variance is > 100× pathwise."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = VAE(64, 32, 4)
    x = (torch.rand(16, 64, generator=_gen(2)) < 0.3).float()
    for kl in ("analytic", "mc"):
        path = E.encoder_gradient_variance(model, x, "pathwise", n_repeats=100, kl=kl, seed=0)
        score = E.encoder_gradient_variance(model, x, "score", n_repeats=100, kl=kl, seed=0)
        ratios = {name: score[name].mean_variance / path[name].mean_variance for name in path}
        assert min(ratios.values()) > 100, (kl, ratios)


def test_encoder_gradient_variance_is_seeded_and_leaves_the_model_alone():
    model, x = _tiny_vae()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    a = E.encoder_gradient_variance(model, x, "score", n_repeats=5, seed=11)
    b = E.encoder_gradient_variance(model, x, "score", n_repeats=5, seed=11)
    c = E.encoder_gradient_variance(model, x, "score", n_repeats=5, seed=12)
    assert all(torch.equal(a[n].mean, b[n].mean) and torch.equal(a[n].variance, b[n].variance) for n in a)
    assert not torch.equal(a["to_mu.bias"].mean, c["to_mu.bias"].mean)
    for n, p in model.named_parameters():
        assert p.grad is None and torch.equal(p, before[n])


def test_encoder_gradient_variance_gaussian_decoder_and_bad_x():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = VAE(6, 8, 2, likelihood="gaussian")
    x = torch.rand(4, 6, generator=_gen(3))
    stats_ = E.encoder_gradient_variance(model, x, "score", n_repeats=3)
    assert set(stats_) == ENCODER_TENSORS  # log_sigma2_x and the decoder are not encoder parameters
    with pytest.raises(ValueError, match="NaN or inf"):
        E.encoder_gradient_variance(model, torch.full((4, 6), float("nan")))
    with pytest.raises(ValueError, match=r"must have shape \(batch, 6\)"):
        E.encoder_gradient_variance(model, torch.rand(4, 5))


# ------------------------------- sticking the landing: zero variance when q is the exact posterior

class _LinearGaussian(torch.nn.Module):
    """p(z) = N(0, I_2), p(x|z) = N(W z + c, s² I_4), W with orthogonal columns, so the exact posterior
    N(A (x − c), Σ) has a diagonal Σ = (I + WᵀW/s²)⁻¹ and A = Σ Wᵀ/s² (conjugate Gaussian algebra).
    The encoder is linear with a free log-variance, so it can equal the posterior exactly."""

    def __init__(self, shift: float = 0.0):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(4, 2, generator=_gen(0), dtype=torch.float64))
        self.w = q * torch.tensor([2.0, 0.7], dtype=torch.float64)
        self.c = torch.tensor([0.3, -0.2, 0.1, 0.5], dtype=torch.float64)
        self.s2 = 0.5
        cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + self.w.T @ self.w / self.s2)
        assert torch.allclose(cov, torch.diag(torch.diag(cov)))
        self.to_mu = torch.nn.Linear(4, 2).double()
        with torch.no_grad():
            self.to_mu.weight.copy_(cov @ self.w.T / self.s2)
            self.to_mu.bias.copy_(-(cov @ self.w.T / self.s2) @ self.c + shift)
        self.logvar = torch.nn.Parameter(torch.log(torch.diag(cov)).clone())

    def encode(self, x):
        return self.to_mu(x), self.logvar.expand(len(x), 2)

    def log_likelihood(self, x, z):
        return Normal(z @ self.w.T + self.c, self.s2**0.5).log_prob(x).sum(-1)


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_sticking_the_landing_has_zero_variance_at_the_exact_posterior(shift):
    model = _LinearGaussian(shift)
    x = torch.randn(5, 4, generator=_gen(1), dtype=torch.float64)
    var = {kl: E.encoder_gradient_variance(model, x, "pathwise", n_repeats=50, kl=kl, seed=2)
           for kl in ("stl", "analytic", "mc")}
    stl = max(st.mean_variance for st in var["stl"].values())
    others = min(min(st.mean_variance for st in var[kl].values()) for kl in ("analytic", "mc"))
    if shift == 0.0:  # q = p(z|x): log p(x, z) − log q(z|x) = log p(x) for every z
        assert stl < 1e-20 and others > 1e-3
        for st in var["stl"].values():  # and the gradient of the ELBO is 0 at its maximum
            assert st.mean.abs().max() < 1e-10
    else:  # q off the posterior: STL is noisy too
        assert stl > 1e-3
