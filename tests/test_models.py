"""Tests of vae_core.models: VAE, ConditionalVAE (and its given(y) view), M2.

Oracles are independent of the code under test: ``torch.distributions`` for every log-density, KL,
entropy and cross-entropy; explicit ``torch.cat([x, one_hot(y)])`` for the conditioning; an explicit
Python loop over classes for M2's unlabelled loss; numerical quadrature over a 1-D latent for
log p(x|y); closed forms (log σ(l) → l as l → −∞) for numerical stability. Tiny models, CPU, seeded.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Independent, Normal, kl_divergence

from vae_core import objectives
from vae_core.models import M2, VAE, ConditionalVAE, LabelConditioned, check_labels

X_DIM, H_DIM, Z_DIM, N_CLASSES, BATCH = 12, 8, 3, 4, 5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binary_batch(n: int = BATCH, d: int = X_DIM, seed: int = 0) -> Tensor:
    return torch.bernoulli(torch.full((n, d), 0.5), generator=gen(seed))


def labels(n: int = BATCH, seed: int = 1) -> Tensor:
    return torch.randint(0, N_CLASSES, (n,), generator=gen(seed))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def make_vae(likelihood: str = "bernoulli") -> VAE:
    return VAE(X_DIM, H_DIM, Z_DIM, likelihood=likelihood)


def make_cvae(likelihood: str = "bernoulli") -> ConditionalVAE:
    return ConditionalVAE(X_DIM, H_DIM, Z_DIM, N_CLASSES, likelihood=likelihood)


def make_m2(alpha: float = 1.0) -> M2:
    return M2(X_DIM, H_DIM, Z_DIM, N_CLASSES, alpha=alpha)


# --- independent re-implementations of the conditioned networks (explicit concatenation) -------


def explicit_encode(model: ConditionalVAE, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    inp = torch.cat([x, F.one_hot(y, model.n_classes).to(x.dtype)], dim=-1)
    h = torch.relu(inp @ model.encoder_hidden.weight.T + model.encoder_hidden.bias)
    return model.to_mu(h), model.to_logvar(h)


def explicit_logits(model: ConditionalVAE, z: Tensor, y: Tensor) -> Tensor:
    one_hot = F.one_hot(y, model.n_classes).to(z.dtype).expand(*z.shape[:-1], model.n_classes)
    h = torch.relu(torch.cat([z, one_hot], -1) @ model.decoder_hidden.weight.T + model.decoder_hidden.bias)
    return model.to_x(h)


# =============================================================================================
# VAE
# =============================================================================================


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_shapes(likelihood: str) -> None:
    model, x = make_vae(likelihood), binary_batch()
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (BATCH, Z_DIM)
    z = torch.randn(7, BATCH, Z_DIM)
    assert model.decode(z).shape == (7, BATCH, X_DIM)
    assert model.log_likelihood(x, z).shape == (7, BATCH)
    images = model.mean_image(z)
    assert images.shape == (7, BATCH, X_DIM) and images.min() >= 0 and images.max() <= 1
    out, mu2, _ = model(x)
    assert out.shape == (BATCH, X_DIM) and torch.equal(mu, mu2)
    rebuilt = VAE(**model.config())
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kwargs, match", [
    ({"z_dim": 0}, "z_dim"),
    ({"z_dim": 2.0}, "z_dim"),
    ({"h_dim": -3}, "h_dim"),
    ({"x_dim": True}, "x_dim"),
    ({"likelihood": "poisson"}, "likelihood"),
])
def test_vae_constructor_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VAE(**{"x_dim": X_DIM, "h_dim": H_DIM, "z_dim": Z_DIM, **kwargs})


BAD_X = [
    ("wrong width", lambda: torch.rand(BATCH, X_DIM + 1), ValueError, r"shape \(batch, 12\)"),
    ("3-D images", lambda: torch.rand(BATCH, 3, 4), ValueError, "flatten"),
    ("uint8", lambda: torch.randint(0, 256, (BATCH, X_DIM), dtype=torch.uint8), TypeError, "float"),
    ("int64", lambda: torch.zeros(BATCH, X_DIM, dtype=torch.int64), TypeError, "float"),
    ("NaN", lambda: torch.full((BATCH, X_DIM), float("nan")), ValueError, "NaN"),
    ("inf", lambda: torch.full((BATCH, X_DIM), float("inf")), ValueError, "inf"),
    ("above 1", lambda: torch.full((BATCH, X_DIM), 1.5), ValueError, r"outside \[0, 1\]"),
    ("uint8 scale", lambda: torch.full((BATCH, X_DIM), 255.0), ValueError, "255"),
    ("not a tensor", lambda: [[0.0] * X_DIM], TypeError, "torch.Tensor"),
]


@pytest.mark.parametrize("what, make_x, error, match", BAD_X, ids=[b[0] for b in BAD_X])
def test_vae_bad_input_clear_error(what: str, make_x, error: type, match: str) -> None:
    model = make_vae()
    with pytest.raises(error, match=match):
        model.encode(make_x())
    with pytest.raises(error, match=match):
        model.log_likelihood(make_x(), torch.zeros(BATCH, Z_DIM))


def test_vae_gaussian_accepts_any_finite_x_but_not_nan() -> None:
    """A Gaussian likelihood is a density on R: values outside [0, 1] are legal, NaN is not."""
    model = make_vae("gaussian")
    x = torch.full((BATCH, X_DIM), 1.5)
    assert torch.isfinite(objectives.elbo(model, x).elbo).all()
    with pytest.raises(ValueError, match="NaN"):
        model.encode(torch.full((BATCH, X_DIM), float("nan")))


def test_vae_bad_z_clear_error() -> None:
    model = make_vae()
    with pytest.raises(ValueError, match="z_dim = 3"):
        model.decode(torch.zeros(BATCH, Z_DIM + 1))
    with pytest.raises(TypeError, match="float"):
        model.decode(torch.zeros(BATCH, Z_DIM, dtype=torch.int64))


def test_vae_bernoulli_log_likelihood_matches_torch_distributions() -> None:
    model, x = make_vae(), binary_batch()
    z = torch.randn(6, BATCH, Z_DIM)
    expected = Independent(Bernoulli(logits=model.decode(z)), 1).log_prob(x)
    torch.testing.assert_close(model.log_likelihood(x, z), expected)


def test_vae_bernoulli_log_likelihood_grey_levels_matches_formula() -> None:
    """For x in (0, 1): Σ x log p + (1 − x) log(1 − p), p = σ(logits), written out in float64."""
    model = make_vae()
    x = torch.rand(BATCH, X_DIM, generator=gen(3))
    z = torch.randn(2, BATCH, Z_DIM)
    p = torch.sigmoid(model.decode(z).double())
    expected = (x.double() * p.log() + (1 - x.double()) * (1 - p).log()).sum(-1)
    torch.testing.assert_close(model.log_likelihood(x, z).double(), expected, rtol=1e-5, atol=1e-4)


def test_vae_gaussian_log_likelihood_matches_torch_distributions() -> None:
    model = make_vae("gaussian")
    with torch.no_grad():
        model.log_sigma2_x.fill_(-1.7)
    x = torch.rand(BATCH, X_DIM, generator=gen(4))
    z = torch.randn(3, BATCH, Z_DIM)
    mean = model.decode(z)
    assert mean.min() > 0 and mean.max() < 1  # means through a sigmoid
    expected = Independent(Normal(mean, math.exp(-1.7 / 2)), 1).log_prob(x)
    torch.testing.assert_close(model.log_likelihood(x, z), expected)


def test_saturated_logits_give_exact_finite_log_likelihood() -> None:
    """log σ(l) = l − log(1 + e^l) → l for l → −∞; computing σ first would give log 0 = −inf."""
    model = make_vae()
    with torch.no_grad():
        model.to_x.weight.zero_()
        model.to_x.bias.fill_(-200.0)
    x = torch.ones(BATCH, X_DIM)
    ll = model.log_likelihood(x, torch.zeros(BATCH, Z_DIM))
    torch.testing.assert_close(ll, torch.full((BATCH,), -200.0 * X_DIM))
    assert torch.isinf(torch.log(torch.sigmoid(torch.tensor(-200.0))))  # the naive way fails


# =============================================================================================
# Numerical stability: extreme log-variances give finite losses and gradients in every model
# =============================================================================================


def _set_logvar(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        model.to_logvar.weight.zero_()
        model.to_logvar.bias.fill_(value)


LOSSES = {
    "vae-bernoulli-analytic": lambda m, x, y: objectives.loss(m, x, kl="analytic")[0],
    "vae-bernoulli-mc": lambda m, x, y: objectives.loss(m, x, kl="mc")[0],
    "vae-gaussian-analytic": lambda m, x, y: objectives.loss(m, x)[0],
    "cvae-given-analytic": lambda m, x, y: objectives.loss(m.given(y), x)[0],
    "cvae-given-mc": lambda m, x, y: objectives.loss(m.given(y), x, kl="mc")[0],
    "m2-loss": lambda m, x, y: m.loss(x, y, x)[0],
}
MAKERS = {
    "vae-bernoulli-analytic": make_vae, "vae-bernoulli-mc": make_vae,
    "vae-gaussian-analytic": lambda: make_vae("gaussian"),
    "cvae-given-analytic": make_cvae, "cvae-given-mc": make_cvae, "m2-loss": make_m2,
}


@pytest.mark.parametrize("logvar", [-50.0, 50.0])
@pytest.mark.parametrize("name", list(LOSSES))
def test_extreme_logvar_gives_finite_loss_and_gradients(name: str, logvar: float) -> None:
    model = MAKERS[name]()
    _set_logvar(model, logvar)
    value = LOSSES[name](model, binary_batch(), labels())
    assert torch.isfinite(value), f"{name}: loss {value} at logvar={logvar}"
    value.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: grad of {pname}"


# =============================================================================================
# Conditional VAE
# =============================================================================================


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_cvae_shapes_and_sample_broadcasting(likelihood: str) -> None:
    model, x, y = make_cvae(likelihood), binary_batch(), labels()
    mu, logvar = model.encode(x, y)
    assert mu.shape == logvar.shape == (BATCH, Z_DIM)
    z = torch.randn(7, BATCH, Z_DIM)  # 7 samples per example, broadcast against y (batch,)
    assert model.decode(z, y).shape == (7, BATCH, X_DIM)
    assert model.log_likelihood(x, z, y).shape == (7, BATCH)
    images = model.mean_image(z, y)
    assert images.shape == (7, BATCH, X_DIM) and images.min() >= 0 and images.max() <= 1
    # each sample slice equals decoding that slice alone
    torch.testing.assert_close(model.decode(z, y)[4], model.decode(z[4], y))
    rebuilt = ConditionalVAE(**model.config())
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}


def test_cvae_label_is_concatenated_one_hot() -> None:
    """encode/decode equal the explicit networks on torch.cat([input, one_hot(y)])."""
    model, x, y = make_cvae(), binary_batch(), labels()
    mu, logvar = model.encode(x, y)
    mu_ref, logvar_ref = explicit_encode(model, x, y)
    torch.testing.assert_close(mu, mu_ref)
    torch.testing.assert_close(logvar, logvar_ref)
    z = torch.randn(3, BATCH, Z_DIM)
    torch.testing.assert_close(model.decode(z, y), explicit_logits(model, z, y))
    expected = Independent(Bernoulli(logits=explicit_logits(model, z, y)), 1).log_prob(x)
    torch.testing.assert_close(model.log_likelihood(x, z, y), expected)


def test_cvae_encode_all_classes_equals_per_class_encode() -> None:
    model, x = make_cvae(), binary_batch()
    mu_all, logvar_all = model.encode_all_classes(x)
    assert mu_all.shape == (N_CLASSES, BATCH, Z_DIM)
    for c in range(N_CLASSES):
        mu_ref, logvar_ref = explicit_encode(model, x, torch.full((BATCH,), c))
        torch.testing.assert_close(mu_all[c], mu_ref)
        torch.testing.assert_close(logvar_all[c], logvar_ref)


def test_cvae_given_view_elbo_equals_direct_computation() -> None:
    """objectives.elbo(cvae.given(y), x) == E_q[log p(x|z,y)] − KL(q(z|x,y) ‖ N(0,I)) assembled with
    torch.distributions from the explicit networks, using the same ε (torch.randn, same seed)."""
    model, x, y = make_cvae(), binary_batch(), labels()
    n_samples, seed = 4, 11
    view = model.given(y)
    terms = objectives.elbo(view, x, n_samples=n_samples, generator=gen(seed))

    mu, logvar = explicit_encode(model, x, y)
    q = Normal(mu, torch.exp(0.5 * logvar))
    eps = torch.randn((n_samples, BATCH, Z_DIM), generator=gen(seed))
    z = mu + q.scale * eps
    rec = Independent(Bernoulli(logits=explicit_logits(model, z, y)), 1).log_prob(x).mean(0)
    kl = kl_divergence(q, Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(terms.rec, rec)
    torch.testing.assert_close(terms.kl, kl)
    torch.testing.assert_close(terms.elbo, rec - kl)

    # the view is a module sharing the CVAE's parameters: gradients land on the CVAE
    assert isinstance(view, LabelConditioned)
    assert {id(p) for p in view.parameters()} == {id(p) for p in model.parameters()}
    (-terms.elbo.sum()).backward()
    assert model.decoder_hidden.weight.grad is not None


def test_cvae_given_view_iwae_k1_equals_log_weight() -> None:
    """iwae_bound(cvae.given(y), x, 1) = log p(x|z,y) + log p(z) − log q(z|x,y) at one z ~ q."""
    model, x, y = make_cvae(), binary_batch(), labels()
    bound = objectives.iwae_bound(model.given(y), x, k=1, generator=gen(5))
    with torch.no_grad():
        mu, logvar = explicit_encode(model, x, y)
        q = Normal(mu, torch.exp(0.5 * logvar))
        z = mu + q.scale * torch.randn((1, BATCH, Z_DIM), generator=gen(5))
        log_w = (Independent(Bernoulli(logits=explicit_logits(model, z, y)), 1).log_prob(x)
                 + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1))
    torch.testing.assert_close(bound, log_w[0])


def test_cvae_given_view_iwae_converges_to_quadrature_log_p_x_given_y() -> None:
    """With a 1-D latent, log p(x|y) = log ∫ N(z; 0, 1) p(x|z, y) dz by quadrature (float64);
    the IWAE bound of the given(y) view at k = 4000 must be just below it."""
    model = ConditionalVAE(x_dim=6, h_dim=5, z_dim=1, n_classes=3).double()
    x = binary_batch(4, 6, seed=8).double()
    y = torch.tensor([0, 1, 2, 1])
    grid = torch.linspace(-10, 10, 4001, dtype=torch.float64)[:, None, None].expand(-1, 4, 1)
    with torch.no_grad():
        log_joint = model.log_likelihood(x, grid, y) + Normal(0.0, 1.0).log_prob(grid[..., 0])
        log_px = torch.logsumexp(log_joint, 0) + math.log(20 / 4000)  # Riemann sum, smooth integrand
    bound = objectives.iwae_bound(model.given(y), x, k=4000, generator=gen(2))
    assert (bound <= log_px + 0.02).all()
    torch.testing.assert_close(bound, log_px, atol=0.05, rtol=0)


def test_changing_y_changes_the_decoded_image_and_only_through_y() -> None:
    model = make_cvae()
    z = torch.randn(BATCH, Z_DIM)
    images = torch.stack([model.mean_image(z, c) for c in range(N_CLASSES)])  # (C, batch, x_dim)
    for a in range(N_CLASSES):
        for b in range(a + 1, N_CLASSES):
            assert (images[a] - images[b]).abs().max() > 1e-3
    torch.testing.assert_close(model.mean_image(z, 2), model.mean_image(z, torch.full((BATCH,), 2)))
    with torch.no_grad():  # remove the label's columns from the decoder: y no longer matters
        model.decoder_hidden.weight[:, Z_DIM:] = 0.0
    torch.testing.assert_close(model.mean_image(z, 0), model.mean_image(z, 3))


BAD_Y = [
    ("float labels", lambda: torch.zeros(BATCH), TypeError, "integer"),
    ("bool labels", lambda: torch.zeros(BATCH, dtype=torch.bool), TypeError, "integer"),
    ("too large", lambda: torch.full((BATCH,), N_CLASSES), ValueError, r"outside \[0, 3\]"),
    ("negative", lambda: torch.tensor([0, 1, -1, 2, 3]), ValueError, r"outside \[0, 3\]"),
    ("too few", lambda: torch.zeros(BATCH - 1, dtype=torch.int64), ValueError,
     "4 labels but the batch has 5"),
    ("2-D", lambda: torch.zeros(BATCH, 1, dtype=torch.int64), ValueError, r"shape \(batch,\)"),
    ("list", lambda: [0] * BATCH, TypeError, "integer tensor"),
    ("bool scalar", lambda: True, TypeError, "integer tensor"),
    ("int out of range", lambda: N_CLASSES, ValueError, "outside"),
]


@pytest.mark.parametrize("what, make_y, error, match", BAD_Y, ids=[b[0] for b in BAD_Y])
def test_cvae_label_validation(what: str, make_y, error: type, match: str) -> None:
    model, x = make_cvae(), binary_batch()
    with pytest.raises(error, match=match):
        model.encode(x, make_y())
    with pytest.raises(error, match=match):
        model.decode(torch.zeros(2, BATCH, Z_DIM), make_y())
    with pytest.raises(error, match=match):
        objectives.elbo(model.given(make_y()), x)


def test_labels_of_other_integer_dtypes_are_accepted() -> None:
    model, x, y = make_cvae(), binary_batch(), labels()
    for dtype in (torch.int32, torch.uint8):
        torch.testing.assert_close(model.encode(x, y.to(dtype)), model.encode(x, y))
    assert check_labels(torch.tensor(2), N_CLASSES, 3).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="batch size"):
        check_labels(2, N_CLASSES)


def test_cvae_constructor_errors() -> None:
    with pytest.raises(ValueError, match="n_classes"):
        ConditionalVAE(X_DIM, H_DIM, Z_DIM, n_classes=1)
    with pytest.raises(ValueError, match="z_dim"):
        ConditionalVAE(X_DIM, H_DIM, 0)
    with pytest.raises(ValueError, match="likelihood"):
        ConditionalVAE(likelihood="mse")
    with pytest.raises(ValueError, match="NaN"):
        make_cvae().encode(torch.full((BATCH, X_DIM), float("nan")), labels())


# =============================================================================================
# M2
# =============================================================================================


def test_m2_labelled_loss_matches_torch_distributions() -> None:
    """−L(x,y) = −E_q log p(x|y,z) − log p(y) + KL(q(z|x,y) ‖ N(0,I)), assembled from the explicit
    networks and torch.distributions with the documented ε = torch.randn((S, batch, z_dim))."""
    model, x, y = make_m2(), binary_batch(), labels()
    n_samples, seed = 3, 21
    got = model.labelled_loss(x, y, n_samples=n_samples, generator=gen(seed))

    mu, logvar = explicit_encode(model, x, y)
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * torch.randn((n_samples, BATCH, Z_DIM), generator=gen(seed))
    rec = Independent(Bernoulli(logits=explicit_logits(model, z, y)), 1).log_prob(x).mean(0)
    log_py = Categorical(probs=torch.full((N_CLASSES,), 1.0 / N_CLASSES)).log_prob(y)
    kl = kl_divergence(q, Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(got, -(rec + log_py - kl))


def test_m2_unlabelled_loss_equals_explicit_loop_over_classes() -> None:
    """−U(x) = Σ_y q(y|x) (−L(x,y)) − H(q(y|x)), the oracle being a Python loop over the classes
    (each labelled_loss call re-seeded, so every class sees the same ε) and Categorical.entropy."""
    model, x = make_m2(), binary_batch()
    n_samples, seed = 2, 9
    got = model.unlabelled_loss(x, n_samples=n_samples, generator=gen(seed))

    q = Categorical(logits=model.classify(x))
    expected = -q.entropy()
    for c in range(N_CLASSES):
        y = torch.full((BATCH,), c)
        expected = expected + q.probs[:, c] * model.labelled_loss(x, y, n_samples, generator=gen(seed))
    torch.testing.assert_close(got, expected)

    # and the gradients of both agree, so training sees the same objective
    grads = torch.autograd.grad(got.sum(), list(model.parameters()))
    grads_ref = torch.autograd.grad(expected.sum(), list(model.parameters()))
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref)


def test_m2_unlabelled_bound_is_tight_in_y_at_the_gibbs_posterior() -> None:
    """For fixed L(x, ·), max over q(y|x) of Σ_y q L + H(q) is log Σ_y exp L(x,y), reached at
    q ∝ exp L (Gibbs). Make the classifier output exactly those logits (weights 0, bias = L) and
    the code's −U must equal −logsumexp_y L; any other q must give a larger loss."""
    model = make_m2()
    x = binary_batch(1)
    with torch.no_grad():
        neg_l = torch.stack([model.labelled_loss(x, c, generator=gen(4)) for c in range(N_CLASSES)])
        model.classifier_hidden.weight.zero_()
        model.to_class_logits.weight.zero_()
        model.to_class_logits.bias.copy_(-neg_l[:, 0])
        at_gibbs = model.unlabelled_loss(x, generator=gen(4))
        torch.testing.assert_close(at_gibbs, -torch.logsumexp(-neg_l[:, 0], 0, keepdim=True))
        model.to_class_logits.bias.zero_()  # uniform q(y|x): strictly worse unless L is flat
        assert model.unlabelled_loss(x, generator=gen(4)) > at_gibbs + 1e-4


def test_m2_loss_is_labelled_plus_unlabelled_plus_alpha_cross_entropy() -> None:
    model, x_lab, y_lab = make_m2(), binary_batch(), labels()
    x_unlab = binary_batch(7, seed=5)
    model.alpha = 0.0
    loss0, terms = model.loss(x_lab, y_lab, x_unlab, generator=gen(1))
    g = gen(1)  # same draws, in the documented order: labelled batch first, then unlabelled
    expected0 = (model.labelled_loss(x_lab, y_lab, generator=g).mean()
                 + model.unlabelled_loss(x_unlab, generator=g).mean())
    torch.testing.assert_close(loss0, expected0)
    model.alpha = 2.5
    loss_a, terms_a = model.loss(x_lab, y_lab, x_unlab, generator=gen(1))
    ce = -Categorical(logits=model.classify(x_lab)).log_prob(y_lab).mean()
    torch.testing.assert_close((loss_a - loss0) / 2.5, ce)
    torch.testing.assert_close(terms_a["classification"], ce.detach())
    torch.testing.assert_close(terms_a["labelled"] + terms_a["unlabelled"], loss0.detach())
    acc = (model.classify(x_lab).argmax(-1) == y_lab).float().mean()
    torch.testing.assert_close(terms_a["accuracy"], acc)
    assert not terms_a["labelled"].requires_grad


def test_m2_gradients_finite_and_reach_every_part() -> None:
    model = make_m2()
    loss, _ = model.loss(binary_batch(), labels(), binary_batch(8, seed=3))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_m2_api_errors_and_config() -> None:
    with pytest.raises(ValueError, match="alpha"):
        M2(X_DIM, H_DIM, Z_DIM, N_CLASSES, alpha=-1.0)
    model = make_m2(alpha=0.3)
    rebuilt = M2(**model.config())
    assert rebuilt.alpha == 0.3 and rebuilt.config() == model.config()
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}
    x = binary_batch()
    assert model.classify(x).shape == (BATCH, N_CLASSES)
    assert model.predict(x).dtype == torch.int64
    with pytest.raises(ValueError, match="x_unlab"):
        model.loss(x, labels(), torch.full((BATCH, X_DIM), 2.0))
    with pytest.raises(ValueError, match="n_samples"):
        model.unlabelled_loss(x, n_samples=0)
    with pytest.raises(ValueError, match="outside"):
        model.labelled_loss(x, torch.full((BATCH,), N_CLASSES))
    # an M2 is a conditional VAE: its generative half works with the generic objectives
    assert torch.isfinite(objectives.elbo(model.given(labels()), x).elbo).all()


# =============================================================================================
# Learning: a tiny synthetic problem, a few hundred CPU steps
# =============================================================================================


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread, and stay fast when other processes share the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def two_pattern_data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Class 0: pixels 0-7 on with prob 0.9, 8-15 with 0.1; class 1: the reverse. (n, 16) binary."""
    g = gen(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    first_half = (torch.arange(16) < 8).float()
    p = torch.where(y[:, None] == 0, 0.1 + 0.8 * first_half, 0.9 - 0.8 * first_half)
    return torch.bernoulli(p, generator=g), y


def noisy_prototypes(n: int, seed: int, flip: float = 0.2) -> tuple[Tensor, Tensor]:
    """Two random 16-pixel binary prototypes (fixed), each pixel flipped with prob ``flip``."""
    prototypes = torch.bernoulli(torch.full((2, 16), 0.5), generator=gen(123))
    g = gen(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    flips = torch.bernoulli(torch.full((n, 16), flip), generator=g)
    return (prototypes[y] + flips) % 2, y


@pytest.mark.parametrize("label_seed", [1, 5])
def test_m2_with_four_labels_beats_chance_and_the_labels_alone(label_seed: int, one_thread) -> None:
    """Chapter 8's claim in miniature: 4 labels + 256 unlabelled noisy patterns. M2 (200 Adam
    steps) must be well above chance (0.5) and above the same classifier trained on the 4 labels."""
    x_unlab, _ = noisy_prototypes(256, seed=0)
    x_lab, y_lab = noisy_prototypes(4, seed=label_seed)
    x_test, y_test = noisy_prototypes(1000, seed=2)
    assert set(y_lab.tolist()) == {0, 1}

    def train(semi_supervised: bool) -> float:
        torch.manual_seed(0)
        model = M2(x_dim=16, h_dim=16, z_dim=2, n_classes=2)  # default alpha
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        g = gen(3)
        for _ in range(200):
            batch = torch.randint(0, len(x_unlab), (64,), generator=g)
            if semi_supervised:
                loss, _ = model.loss(x_lab, y_lab, x_unlab[batch], generator=g)
            else:
                loss = F.cross_entropy(model.classify(x_lab), y_lab)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return (model.predict(x_test) == y_test).float().mean().item()

    m2_accuracy, labels_only_accuracy = train(True), train(False)
    assert m2_accuracy > 0.8, m2_accuracy
    assert m2_accuracy > labels_only_accuracy, (m2_accuracy, labels_only_accuracy)


def test_cvae_draws_the_requested_pattern(one_thread) -> None:
    """A CVAE trained on the two patterns, decoding prior samples with y = c, draws pattern c."""
    x, y = two_pattern_data(256, seed=0)
    torch.manual_seed(0)
    model = ConditionalVAE(x_dim=16, h_dim=16, z_dim=2, n_classes=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = gen(4)
    for _ in range(200):
        loss, _ = objectives.loss(model.given(y), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        z = torch.randn(100, 2, generator=g)
        for c, (hi, lo) in enumerate([(slice(0, 8), slice(8, 16)), (slice(8, 16), slice(0, 8))]):
            image = model.mean_image(z, c)
            assert (image[:, hi].mean(1) > image[:, lo].mean(1) + 0.5).all()


def test_user_mistakes_get_messages_naming_the_argument():
    torch.manual_seed(0)
    model = VAE(16, 8, 2)
    x = torch.rand(3, 16)
    with pytest.raises(TypeError, match=r"x is torch.float64 but the model's parameters are torch.float32"):
        model.encode(x.double())
    with pytest.raises(TypeError, match=r"z is torch.float64"):
        model.decode(torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="z has batch size 4 .* but x has 3"):
        model.log_likelihood(x, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="z contains NaN"):
        model.decode(torch.tensor([[0.0, float("nan")]]))
    # a single code shared by every image, and S samples per image, are fine
    assert model.log_likelihood(x, torch.zeros(2)).shape == (3,)
    assert model.log_likelihood(x, torch.zeros(5, 3, 2)).shape == (5, 3)
