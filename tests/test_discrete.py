"""Tests of vae_core.discrete against independent references: chi-square for Gumbel-max, the
2-class Concrete density by a change of variables and quadrature, brute-force enumeration for the
exact ELBO, torch.distributions for the KL, and the score-function estimator's mean against the
exact gradient within its standard error."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Categorical, kl_divergence

from vae_core import discrete as D
from vae_core.distributions import bernoulli_log_prob


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gumbel_max_frequencies_match_softmax_chi_square():
    logits = torch.tensor([1.0, -0.5, 0.0, 2.0, -2.0], dtype=torch.float64)
    n = 200_000
    samples = D.gumbel_max_sample(logits.expand(n, -1), gen(0))
    counts = np.bincount(samples.numpy(), minlength=5)
    expected = torch.softmax(logits, 0).numpy() * n
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    # a wrong distribution (uniform) is rejected by the same test
    assert stats.chisquare(counts, np.full(5, n / 5)).pvalue < 1e-10


def test_gumbel_max_batched_rows_are_independent_categoricals():
    logits = torch.tensor([[0.0, 3.0], [3.0, 0.0]], dtype=torch.float64)
    samples = D.gumbel_max_sample(logits.expand(50_000, -1, -1), gen(1))
    p1 = torch.sigmoid(torch.tensor(3.0)).item()
    for row, expected in [(0, p1), (1, 1 - p1)]:
        freq = (samples[:, row] == 1).double().mean().item()
        se = math.sqrt(expected * (1 - expected) / 50_000)
        assert abs(freq - expected) < 5 * se


def _two_class_density(y1, a, tau):
    # Y1 = sigmoid((a + L) / tau) with L standard logistic: change of variables from L
    noise = tau * math.log(y1 / (1 - y1)) - a
    logistic_pdf = math.exp(-noise) / (1 + math.exp(-noise)) ** 2
    return logistic_pdf * tau / (y1 * (1 - y1))


@pytest.mark.parametrize("tau", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("logits", [(0.0, 0.0), (1.5, -0.5)])
def test_concrete_density_two_classes_closed_form_and_integrates_to_one(tau, logits):
    lg = torch.tensor(logits, dtype=torch.float64)
    a = logits[0] - logits[1]
    for y1 in [0.01, 0.2, 0.5, 0.77, 0.99]:
        y = torch.tensor([y1, 1 - y1], dtype=torch.float64)
        got = D.concrete_log_prob(y, lg, tau).exp().item()
        assert got == pytest.approx(_two_class_density(y1, a, tau), rel=1e-9)

    def density_in_logit(u):  # y1 = sigmoid(u), dy1 = y1 (1 - y1) du: no endpoint singularity
        y1, y2 = 1 / (1 + math.exp(-u)), 1 / (1 + math.exp(u))
        y = torch.tensor([y1, y2], dtype=torch.float64)
        return D.concrete_log_prob(y, lg, tau).exp().item() * y1 * y2

    total, _ = integrate.quad(density_in_logit, -300, 300, limit=200, points=[0.0])
    assert total == pytest.approx(1.0, abs=1e-6)


def test_concrete_samples_follow_their_density_ks():
    lg = torch.tensor([0.7, -0.3], dtype=torch.float64)
    tau = 0.6
    y = D.concrete_sample(lg.expand(20_000, -1), tau, gen(3))
    assert torch.allclose(y.sum(-1), torch.ones(20_000, dtype=torch.float64))
    a = 1.0

    def cdf(v):  # P(Y1 <= v) = P(L <= tau logit(v) - a)
        return 1 / (1 + np.exp(-(tau * np.log(v / (1 - v)) - a)))

    assert stats.kstest(y[:, 0].numpy(), cdf).pvalue > 1e-3


def test_concrete_density_three_classes_integrates_to_one():
    lg = torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64)

    def density(y2, y1):
        y = torch.tensor([y1, y2, 1 - y1 - y2], dtype=torch.float64)
        return D.concrete_log_prob(y, lg, 1.5).exp().item()

    total, _ = integrate.dblquad(density, 1e-9, 1 - 1e-9, 1e-9, lambda y1: 1 - y1 - 1e-9,
                                 epsabs=1e-6)
    assert total == pytest.approx(1.0, abs=1e-3)


def test_low_temperature_concrete_is_near_one_hot_gumbel_max():
    lg = torch.randn(1000, 4, generator=gen(4), dtype=torch.float64)
    noise = D.gumbel_noise((1000, 4), gen(5), torch.float64)
    soft = D.concrete_sample(lg, 0.01, noise=noise)
    assert torch.equal(soft.argmax(-1), (lg + noise).argmax(-1))
    assert (soft.max(-1).values > 0.5).all()


def test_straight_through_value_is_hard_gradient_is_soft():
    lg = torch.randn(3, 4, generator=gen(6), dtype=torch.float64).requires_grad_()
    soft = torch.softmax(lg, -1)
    st = D.straight_through(soft)
    # the value is the one-hot sample up to the rounding of hard + soft - soft (one ulp)
    hard = torch.nn.functional.one_hot(soft.argmax(-1), 4).double()
    torch.testing.assert_close(st.detach(), hard, atol=1e-15, rtol=0)
    w = torch.randn(3, 4, dtype=torch.float64)
    (g_st,) = torch.autograd.grad((st * w).sum(), lg)
    (g_soft,) = torch.autograd.grad((torch.softmax(lg, -1) * w).sum(), lg)
    torch.testing.assert_close(g_st, g_soft)


def test_all_configurations_is_every_tuple_once():
    c = D.all_configurations(3, 4)
    assert c.shape == (64, 3)
    assert {tuple(r) for r in c.tolist()} == set(itertools.product(range(4), repeat=3))


def small_model(seed=0):
    torch.manual_seed(seed)
    return D.CategoricalVAE(x_dim=12, h_dim=8, n_latents=2, n_classes=3).double()


def small_x():
    return torch.bernoulli(torch.full((4, 12), 0.4, dtype=torch.float64), generator=gen(9))


def test_exact_reconstruction_and_kl_against_brute_force():
    model, x = small_model(), small_x()
    logits = model.encode(x)
    q = torch.softmax(logits, -1)
    brute = torch.zeros(4, dtype=torch.float64)
    for c in itertools.product(range(3), repeat=2):
        z = torch.nn.functional.one_hot(torch.tensor(c), 3).double()
        log_lik = bernoulli_log_prob(x, model.decode(z.expand(4, -1, -1)))
        brute += q[:, 0, c[0]] * q[:, 1, c[1]] * log_lik
    torch.testing.assert_close(D.exact_reconstruction(logits, model.log_lik_fn(x)), brute)
    uniform = Categorical(probs=torch.full((3,), 1 / 3, dtype=torch.float64))
    kl = kl_divergence(Categorical(logits=logits), uniform).sum(-1)
    torch.testing.assert_close(D.categorical_kl_uniform(logits), kl)


def test_exact_elbo_is_below_log_evidence_and_equals_it_at_the_posterior():
    model, x = small_model(), small_x()
    configs = D.all_configurations(2, 3)
    z = torch.nn.functional.one_hot(configs, 3).double()[:, None].expand(-1, 4, -1, -1)
    log_joint = model.log_lik_fn(x)(z) - 2 * math.log(3)  # (C, B)
    log_px = torch.logsumexp(log_joint, 0)
    with torch.no_grad():
        assert (D.exact_elbo(model, x) <= log_px + 1e-9).all()
    # a factorised q cannot be the posterior in general, but with one latent it can
    one = D.CategoricalVAE(x_dim=12, h_dim=8, n_latents=1, n_classes=3).double()
    z1 = torch.eye(3, dtype=torch.float64)[:, None, None].expand(-1, 4, -1, -1)
    log_joint1 = one.log_lik_fn(x)(z1) - math.log(3)
    posterior_logits = (log_joint1 - torch.logsumexp(log_joint1, 0)).T[:, None, :]
    elbo_at_post = (D.exact_reconstruction(posterior_logits, one.log_lik_fn(x))
                    - D.categorical_kl_uniform(posterior_logits))
    torch.testing.assert_close(elbo_at_post, torch.logsumexp(log_joint1, 0))


def _mean_and_se(grads):
    return grads.mean(0), grads.std(0) / math.sqrt(len(grads))


@pytest.mark.parametrize("baseline", [None, "loo", "learned"])
def test_score_function_is_unbiased_against_enumeration(baseline):
    model, x = small_model(), small_x()
    exact = D.logit_gradients(model, x, "exact", 1)[0]
    grads = D.logit_gradients(model, x, "score", 400, n_samples=50, baseline=baseline, seed=1)
    mean, se = _mean_and_se(grads)
    z = ((mean - exact) / se).abs()
    assert z.max() < 5.0, z.max()  # 24 coordinates: |z| > 5 has probability ~1e-5 if unbiased


def test_concrete_is_biased_and_the_bias_is_measurable():
    model, x = small_model(), small_x()
    with torch.no_grad():  # a decoder that reacts to z makes the relaxation visibly different
        model.decoder[0].weight.mul_(8.0)
    exact = D.logit_gradients(model, x, "exact", 1)[0]
    grads = D.logit_gradients(model, x, "concrete", 400, n_samples=50, temperature=1.0, seed=2)
    mean, se = _mean_and_se(grads)
    assert ((mean - exact) / se).abs().max() > 10


def test_exact_estimator_repeats_the_autograd_gradient_of_exact_elbo():
    model, x = small_model(), small_x()
    logits = model.encode(x).detach().requires_grad_(True)
    value = (D.exact_reconstruction(logits, model.log_lik_fn(x))
             - D.categorical_kl_uniform(logits)).sum()
    (g,) = torch.autograd.grad(value, logits)
    torch.testing.assert_close(D.logit_gradients(model, x, "exact", 2)[1], g)


@pytest.mark.parametrize("estimator", ["score", "concrete", "straight-through"])
def test_loss_trains_with_fit_and_caches_by_class_name(tmp_path, estimator):
    from vae_core.train import pretrained

    x = torch.bernoulli(torch.full((64, 784), 0.3), generator=gen(0))
    loss = functools.partial(D.categorical_elbo_loss, estimator=estimator, temperature=0.5)
    config = {"x_dim": 784, "h_dim": 16, "n_latents": 3, "n_classes": 4}
    m, h = pretrained(config, x, x, model_class="CategoricalVAE", epochs=2, batch_size=32,
                      loss_fn=loss, cache_dir=tmp_path, progress=False)
    assert set(h.test) >= {"elbo", "rec", "kl"} and all(math.isfinite(v) for v in h.test["elbo"])
    m2, h2 = pretrained(config, x, x, model_class="CategoricalVAE", epochs=2, batch_size=32,
                        loss_fn=loss, cache_dir=tmp_path, progress=False)
    assert h2.test == h.test
    for a, b in zip(m.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a.cpu(), b.cpu())


def test_bad_inputs_get_clear_errors():
    lg = torch.zeros(2, 3, 4)
    f = lambda z: z.sum((-1, -2))  # noqa: E731
    with pytest.raises(ValueError, match="temperature"):
        D.concrete_sample(lg, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        D.concrete_sample(lg, float("nan"))
    with pytest.raises(ValueError, match="size >= 2"):
        D.gumbel_max_sample(torch.zeros(5, 1))
    with pytest.raises(ValueError, match="NaN"):
        D.gumbel_max_sample(torch.tensor([0.0, float("nan")]))
    with pytest.raises(TypeError, match="floating"):
        D.gumbel_max_sample(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="estimator"):
        D.reconstruction_surrogate(lg, f, "pathwise")
    with pytest.raises(ValueError, match="n_samples >= 2"):
        D.reconstruction_surrogate(lg, f, "score", baseline="loo")
    with pytest.raises(ValueError, match="baseline"):
        D.reconstruction_surrogate(lg, f, "score", baseline="mean")
    with pytest.raises(ValueError, match=r"shape \(batch,\)"):
        D.reconstruction_surrogate(lg, f, "score", baseline=torch.zeros(3))
    with pytest.raises(ValueError, match="only applies"):
        D.reconstruction_surrogate(lg, f, "concrete", baseline=torch.zeros(2))
    with pytest.raises(ValueError, match="n_latents, n_classes"):
        D.reconstruction_surrogate(torch.zeros(3, 4), f, "score")
    with pytest.raises(ValueError, match="too many"):
        D.all_configurations(20, 10)
    with pytest.raises(ValueError, match="simplex"):
        D.concrete_log_prob(torch.tensor([0.5, 0.6]), torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="n_classes"):
        D.CategoricalVAE(n_classes=1)
    model = D.CategoricalVAE(x_dim=12, h_dim=8, n_latents=2, n_classes=3)
    with pytest.raises(ValueError, match="end in"):
        model.decode(torch.zeros(4, 3, 3))
    with pytest.raises(ValueError, match="labels"):
        D.categorical_elbo_loss(model, torch.zeros(2, 12), torch.zeros(2))
    with pytest.raises(ValueError, match="baseline"):
        D.categorical_elbo_loss(model, torch.zeros(2, 12), baseline="running")


def test_learned_baseline_running_mean_is_a_bias_corrected_ema_updated_after_the_batch():
    torch.manual_seed(0)
    model = D.CategoricalVAE(x_dim=12, h_dim=8, n_latents=2, n_classes=3)
    x = small_x().float()
    assert model.signal_center() == 0.0
    seen, ema = [], 0.0
    for step in range(1, 4):
        before = model.learned_baseline(x).detach()
        _, terms = D.categorical_elbo_loss(model, x, estimator="score", baseline="learned",
                                           generator=gen(step))
        seen.append(terms["rec"].mean().item())
        ema = D.SIGNAL_DECAY * ema + (1 - D.SIGNAL_DECAY) * seen[-1]
        assert model.signal_center() == pytest.approx(ema / (1 - D.SIGNAL_DECAY**step), rel=1e-6)
        # the baseline this batch used was computed before its own samples entered the mean
        assert not torch.allclose(before, model.learned_baseline(x).detach())
    assert model.signal_center() == pytest.approx(
        sum(D.SIGNAL_DECAY ** (3 - i) * v for i, v in enumerate(seen, 1))
        * (1 - D.SIGNAL_DECAY) / (1 - D.SIGNAL_DECAY**3), rel=1e-6)
    model.eval()  # evaluation does not move the running mean
    D.categorical_elbo_loss(model, x, estimator="score", baseline="learned", generator=gen(9))
    assert int(model.signal_updates) == 3
