"""Tests of vae_core.objectives: the ELBO estimators L^A / L^B, the IWAE bound, the training loss.

Oracles: per-sample recomputation with torch.distributions from the same ε; Monte-Carlo standard errors
computed from the samples; log p(x) and the exact ELBO of a model with a 1-D latent computed by
numerical integration over z (composite Gauss-Legendre, cross-checked with scipy's adaptive quad).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats
from torch.distributions import Bernoulli, Normal, kl_divergence

from vae_core.models import VAE
from vae_core.objectives import elbo, iwae_bound, log_weights, loss


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model(x_dim: int = 12, h_dim: int = 16, z_dim: int = 3, likelihood: str = "bernoulli",
           seed: int = 0, decoder_gain: float = 1.0) -> VAE:
    """A random float64 VAE; ``decoder_gain`` scales the output layer so that z matters more."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = VAE(x_dim, h_dim, z_dim, likelihood=likelihood).double()
    with torch.no_grad():
        model.to_x.weight.mul_(decoder_gain)
    return model


def _data(batch: int, x_dim: int, likelihood: str = "bernoulli", seed: int = 1) -> torch.Tensor:
    u = torch.rand(batch, x_dim, generator=_gen(seed), dtype=torch.float64)
    return (u < 0.4).double() if likelihood == "bernoulli" else u


def _oracle_log_lik(model: VAE, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x|z) from torch.distributions, summed over pixels: (..., batch)."""
    out = model.decode(z)
    if model.likelihood == "bernoulli":
        return Bernoulli(logits=out).log_prob(x.expand_as(out)).sum(-1)
    sd = torch.exp(0.5 * model.log_sigma2_x)
    return Normal(out, sd).log_prob(x.expand_as(out)).sum(-1)


def _mean_and_se(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error over dim 0."""
    return values.mean(0), values.std(0) / math.sqrt(values.shape[0])


# ------------------------------------------------------------------------------------ ELBO terms

@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_elbo_terms_match_direct_per_sample_computation(likelihood, kl):
    model, x = _model(likelihood=likelihood), _data(5, 12, likelihood)
    n = 2000
    terms = elbo(model, x, n_samples=n, kl=kl, generator=_gen(7))
    assert all(t.shape == (5,) for t in terms)
    # recompute from the same ε: reparameterize draws randn((n, batch, z_dim)) from the generator
    with torch.no_grad():
        mu, logvar = model.encode(x)
        sd = torch.exp(0.5 * logvar)
        eps = torch.randn((n, 5, 3), generator=_gen(7), dtype=torch.float64)
        z = mu + sd * eps
        rec = _oracle_log_lik(model, x, z).mean(0)
        if kl == "analytic":
            kl_term = kl_divergence(Normal(mu, sd), Normal(0.0, 1.0)).sum(-1)
        else:
            kl_term = (Normal(mu, sd).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(terms.rec.detach(), rec, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(terms.kl.detach(), kl_term, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(terms.elbo, terms.rec - terms.kl, rtol=0, atol=0)


def test_elbo_gradients_reach_every_parameter():
    model, x = _model(likelihood="gaussian"), _data(4, 12, "gaussian")
    for kl in ("analytic", "mc"):
        model.zero_grad()
        elbo(model, x, kl=kl, generator=_gen(3)).elbo.sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_estimators_LA_and_LB_agree_in_expectation():
    model, x = _model(), _data(4, 12)
    reps = 20_000
    xr = x.repeat(reps, 1)  # row r*4 + b is example b: reps independent single-sample estimates each
    with torch.no_grad():
        la = elbo(model, xr, kl="mc", generator=_gen(11)).elbo.reshape(reps, 4)
        lb = elbo(model, xr, kl="analytic", generator=_gen(11)).elbo.reshape(reps, 4)
        lb_other = elbo(model, xr, kl="analytic", generator=_gen(12)).elbo.reshape(reps, 4)
    # paired (same ε: the reconstruction terms cancel, leaving MC KL − analytic KL)
    diff_mean, diff_se = _mean_and_se(la - lb)
    assert (diff_se > 0).all()
    assert (diff_mean.abs() < 4 * diff_se).all()
    # unpaired (independent draws)
    (ma, sa), (mb, sb) = _mean_and_se(la), _mean_and_se(lb_other)
    assert ((ma - mb).abs() < 4 * torch.sqrt(sa**2 + sb**2)).all()
    # and the analytic KL really does remove variance here (the MC KL adds noise on top of the same rec)
    assert (lb.var(0) < la.var(0)).all()


# ------------------------------------------------------------------------------------------- IWAE

def test_iwae_at_k1_equals_mc_elbo_with_the_same_draws():
    for likelihood in ("bernoulli", "gaussian"):
        model, x = _model(likelihood=likelihood), _data(6, 12, likelihood)
        bound = iwae_bound(model, x, k=1, generator=_gen(5))
        mc = elbo(model, x, n_samples=1, kl="mc", generator=_gen(5)).elbo.detach()
        assert bound.shape == (6,)
        torch.testing.assert_close(bound, mc, rtol=1e-12, atol=1e-10)


def test_iwae_at_k1_has_the_elbo_as_expectation():
    model, x = _model(), _data(3, 12)
    reps = 20_000
    xr = x.repeat(reps, 1)
    with torch.no_grad():
        iw = iwae_bound(model, xr, k=1, generator=_gen(21)).reshape(reps, 3)
        lb = elbo(model, xr, kl="analytic", generator=_gen(22)).elbo.reshape(reps, 3)
    (mi, si), (mb, sb) = _mean_and_se(iw), _mean_and_se(lb)
    assert ((mi - mb).abs() < 4 * torch.sqrt(si**2 + sb**2)).all()


def test_iwae_is_non_decreasing_in_k_in_expectation():
    model, x = _model(decoder_gain=3.0), _data(4, 12)
    reps = 400
    xr = x.repeat(reps, 1)
    means, ses = [], []
    for i, k in enumerate((1, 10, 100)):
        values = iwae_bound(model, xr, k=k, generator=_gen(30 + i)).reshape(reps, 4).mean(1)
        m, s = _mean_and_se(values)
        means.append(m.item())
        ses.append(s.item())
    for j in range(2):
        # strictly larger by more than 4 standard errors of the difference (the bound is far from tight
        # on a random model, so a real increase is visible; a decrease would fail)
        assert means[j + 1] - means[j] > 4 * math.hypot(ses[j], ses[j + 1]), (means, ses)


def test_iwae_chunks_combine_exactly_like_one_logsumexp():
    model, x = _model(), _data(3, 12)
    k, chunk = 250, 100
    got = iwae_bound(model, x, k=k, chunk_size=chunk, generator=_gen(40))
    g = _gen(40)
    with torch.no_grad():
        lw = torch.cat([log_weights(model, x, n, generator=g) for n in (100, 100, 50)])  # same draw order
    assert lw.shape == (k, 3)
    expected = special.logsumexp(lw.numpy(), axis=0) - math.log(k)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    # a chunk at least as large as k is one chunk: identical to the default
    one_chunk = iwae_bound(model, x, k=k, chunk_size=k, generator=_gen(41))
    torch.testing.assert_close(one_chunk, iwae_bound(model, x, k=k, chunk_size=10_000, generator=_gen(41)),
                               rtol=0, atol=0)


def test_iwae_chunked_and_unchunked_have_the_same_distribution():
    model, x = _model(decoder_gain=3.0), _data(2, 12)
    reps = 1000
    xr = x.repeat(reps, 1)
    a = iwae_bound(model, xr, k=50, chunk_size=7, generator=_gen(50)).reshape(reps, 2)
    b = iwae_bound(model, xr, k=50, chunk_size=50, generator=_gen(51)).reshape(reps, 2)
    (ma, sa), (mb, sb) = _mean_and_se(a), _mean_and_se(b)
    assert ((ma - mb).abs() < 4 * torch.sqrt(sa**2 + sb**2)).all()
    # spreads agree too (F-ratio of two variances from 1000 samples: within 25%)
    assert ((a.var(0) / b.var(0) - 1).abs() < 0.25).all()


def test_iwae_bound_has_no_gradient_and_handles_large_k():
    model, x = _model(), _data(2, 12)
    bound = iwae_bound(model, x, k=5000, chunk_size=500, generator=_gen(60))
    assert bound.shape == (2,) and torch.isfinite(bound).all() and not bound.requires_grad


# ----------------------------------------------- 1-D latent: log p(x) and the exact ELBO by quadrature

def _gauss_legendre_nodes(lo: float, hi: float, kinks: np.ndarray, order: int = 32,
                          max_width: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights on [lo, hi], with panel edges at every kink.

    The decoder is a ReLU MLP, so with a 1-D latent log p(x|z) is smooth between the kinks
    z = -b_j / w_j of its hidden layer; each panel is then integrated to near machine precision.
    """
    edges = np.unique(np.concatenate([[lo, hi], kinks[(kinks > lo) & (kinks < hi)]]))
    t, w = np.polynomial.legendre.leggauss(order)
    nodes, weights = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        pieces = np.linspace(a, b, int(np.ceil((b - a) / max_width)) + 1)
        for c, d in zip(pieces[:-1], pieces[1:], strict=True):
            nodes.append(0.5 * (c + d) + 0.5 * (d - c) * t)
            weights.append(0.5 * (d - c) * w)
    return np.concatenate(nodes), np.concatenate(weights)


def _quadrature_oracle(model: VAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per example: log p(x), the exact ELBO and KL(q ‖ p(z|x)), by numerical integration over z (1-D)."""
    with torch.no_grad():
        mu, logvar = model.encode(x)
        w, b = model.decoder_hidden.weight[:, 0].numpy(), model.decoder_hidden.bias.numpy()
    kinks = -b[w != 0] / w[w != 0]

    def log_joint(z: np.ndarray) -> np.ndarray:  # (M,) -> (M, batch)
        zt = torch.from_numpy(z).reshape(-1, 1, 1).expand(-1, len(x), 1)
        with torch.no_grad():
            log_lik = _oracle_log_lik(model, x, zt).numpy()
        return log_lik + stats.norm.logpdf(z)[:, None]

    z, wz = _gauss_legendre_nodes(-15.0, 15.0, kinks)  # prior mass outside: ~1e-50
    log_px = special.logsumexp(log_joint(z) + np.log(wz)[:, None], axis=0)
    exact_elbo, kl_post = np.empty(len(x)), np.empty(len(x))
    for i in range(len(x)):
        m, sd = mu[i, 0].item(), math.exp(0.5 * logvar[i, 0].item())
        z, wz = _gauss_legendre_nodes(m - 15 * sd, m + 15 * sd, kinks)
        log_q = stats.norm.logpdf(z, m, sd)
        lj = log_joint(z)[:, i]
        exact_elbo[i] = np.sum(wz * np.exp(log_q) * (lj - log_q))
        kl_post[i] = np.sum(wz * np.exp(log_q) * (log_q - (lj - log_px[i])))
    return {name: torch.from_numpy(v) for name, v in
            (("log_px", log_px), ("elbo", exact_elbo), ("kl_post", kl_post))}


def test_quadrature_oracle_agrees_with_adaptive_quadrature():
    """The composite rule used as an oracle below, cross-checked once against scipy's adaptive quad."""
    model = _model(x_dim=4, h_dim=8, z_dim=1, seed=3, decoder_gain=3.0)
    x = _data(1, 4, seed=4)

    def joint(z: float) -> float:
        with torch.no_grad():
            ll = _oracle_log_lik(model, x, torch.tensor([[z]], dtype=torch.float64)).item()
        return math.exp(ll) * stats.norm.pdf(z)

    with torch.no_grad():
        w, b = model.decoder_hidden.weight[:, 0].numpy(), model.decoder_hidden.bias.numpy()
    kinks = sorted(k for k in -b / w if -15 < k < 15)
    value, err = integrate.quad(joint, -15, 15, points=kinks, limit=200)
    log_px = _quadrature_oracle(model, x)["log_px"].item()
    assert log_px == pytest.approx(math.log(value), abs=1e-7 + err / value)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_bounds_against_log_marginal_by_quadrature(likelihood):
    model = _model(x_dim=4, h_dim=8, z_dim=1, likelihood=likelihood, seed=3, decoder_gain=3.0)
    x = _data(3, 4, likelihood, seed=4)
    oracle = _quadrature_oracle(model, x)
    log_px, exact_elbo, kl_post = oracle["log_px"], oracle["elbo"], oracle["kl_post"]

    # the identity log p(x) = ELBO + KL(q(z|x) ‖ p(z|x)), every piece by quadrature; the ELBO is below
    torch.testing.assert_close(log_px, exact_elbo + kl_post, rtol=1e-7, atol=1e-7)
    assert (kl_post > 1e-3).all()

    # both ELBO estimators are unbiased for the exact ELBO
    reps = 20_000
    xr = x.repeat(reps, 1)
    with torch.no_grad():
        for kl in ("analytic", "mc"):
            m, se = _mean_and_se(elbo(model, xr, kl=kl, generator=_gen(70)).elbo.reshape(reps, 3))
            assert ((m - exact_elbo).abs() < 4 * se).all(), (kl, m, exact_elbo, se)

        # importance weights are unbiased for p(x): mean(w)/p(x) within 4 standard errors of 1
        k = 20_000
        ratio = torch.exp(log_weights(model, x, k, generator=_gen(71)) - log_px)  # (k, 3), mean 1
        m, se = _mean_and_se(ratio)
        assert ((m - 1).abs() < 4 * se).all(), (m, se)

        # the IWAE bound at large k: below log p(x) only by its bias ≈ Var(w/p)/(2k), up to noise
        # sd ≈ sqrt(Var(w/p)/k); and far above the ELBO
        k = 5000
        bound = iwae_bound(model, x, k=k, generator=_gen(72))
        rel_var = ratio.var(0)
        assert ((bound - (log_px - rel_var / (2 * k))).abs() < 4 * torch.sqrt(rel_var / k) + 1e-3).all()
        assert (bound > exact_elbo + 0.5 * kl_post).all()


# ------------------------------------------------------------------------------------------- loss

@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_loss_is_minus_batch_mean_of_beta_weighted_elbo(likelihood):
    model, x = _model(likelihood=likelihood), _data(5, 12, likelihood)
    for beta in (1.0, 0.25, 0.0):
        with torch.random.fork_rng():
            torch.manual_seed(123)
            value, terms = loss(model, x, beta=beta, kl="analytic", n_samples=3)
        with torch.random.fork_rng():
            torch.manual_seed(123)
            ref = elbo(model, x, n_samples=3, kl="analytic")
        torch.testing.assert_close(terms.rec, ref.rec)
        torch.testing.assert_close(value, -(ref.rec - beta * ref.kl).mean())
        if beta == 1.0:
            torch.testing.assert_close(value, -ref.elbo.mean())
    assert value.dim() == 0 and value.requires_grad


# ------------------------------------------------------------------------------------ bad input

def _bad_model_and_x():
    return _model(), _data(3, 12)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_iwae_and_log_weights_reject_bad_k(k):
    model, x = _bad_model_and_x()
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        iwae_bound(model, x, k=k)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        log_weights(model, x, k)


def test_iwae_accepts_numpy_integer_k():
    model, x = _bad_model_and_x()
    ks = np.array([1, 3])
    a = iwae_bound(model, x, k=ks[1], generator=_gen(80))
    torch.testing.assert_close(a, iwae_bound(model, x, k=3, generator=_gen(80)), rtol=0, atol=0)


def test_iwae_rejects_bad_chunk_size():
    model, x = _bad_model_and_x()
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        iwae_bound(model, x, k=10, chunk_size=0)


@pytest.mark.parametrize("n", [0, -3, 1.0])
def test_elbo_rejects_bad_n_samples(n):
    model, x = _bad_model_and_x()
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        elbo(model, x, n_samples=n)


@pytest.mark.parametrize("mode", ["exact", "MC", None])
def test_elbo_and_loss_reject_unknown_kl_mode(mode):
    model, x = _bad_model_and_x()
    with pytest.raises(ValueError, match="kl must be one of"):
        elbo(model, x, kl=mode)
    with pytest.raises(ValueError, match="kl must be one of"):
        loss(model, x, kl=mode)


@pytest.mark.parametrize("beta", [-0.1, float("nan"), float("inf")])
def test_loss_rejects_bad_beta(beta):
    model, x = _bad_model_and_x()
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        loss(model, x, beta=beta)


def _objectives():
    return {
        "elbo": lambda m, x: elbo(m, x),
        "elbo_mc": lambda m, x: elbo(m, x, kl="mc"),
        "loss": lambda m, x: loss(m, x),
        "iwae": lambda m, x: iwae_bound(m, x, k=5),
        "log_weights": lambda m, x: log_weights(m, x, 5),
    }


@pytest.mark.parametrize("objective", list(_objectives()))
@pytest.mark.parametrize(
    ("make_x", "error", "match"),
    [
        (lambda x: torch.where(x > 0.5, float("nan"), x), ValueError, "NaN or inf"),
        (lambda x: x + float("inf") * (x > 0.5), ValueError, "NaN or inf"),
        (lambda x: x * 1.5 + 0.1, ValueError, r"outside \[0, 1\]"),
        (lambda x: x - 0.5, ValueError, r"outside \[0, 1\]"),
        (lambda x: x[:, :-1], ValueError, r"must have shape \(batch, 12\)"),
        (lambda x: x[0], ValueError, r"must have shape \(batch, 12\)"),
        (lambda x: x[None], ValueError, r"must have shape \(batch, 12\)"),
        (lambda x: (x * 255).to(torch.uint8), TypeError, "float tensor"),
        (lambda x: x.numpy(), TypeError, "must be a torch.Tensor"),
    ],
    ids=["nan", "inf", "above-1", "below-0", "wrong-width", "1-D", "3-D", "uint8", "numpy"],
)
def test_objectives_reject_bad_x_with_clear_errors(objective, make_x, error, match):
    model, x = _bad_model_and_x()
    with pytest.raises(error, match=match):
        _objectives()[objective](model, make_x(x))
