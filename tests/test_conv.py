"""Tests for vae_core.conv: the convolutional VAE's shapes, its likelihoods against torch and the
256-level normalisation, training and checkpoint round trip, and the model cache finding it."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent

from vae_core import objectives
from vae_core.conv import ConvVAE


def test_conv_vae_shapes_and_interface():
    torch.manual_seed(0)
    model = ConvVAE(side=28, z_dim=4, width=8)
    x = torch.rand(5, 784)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 4)
    assert model.decode(torch.zeros(3, 5, 4)).shape == (3, 5, 784)
    assert model.mean_image(torch.zeros(5, 4)).shape == (5, 784)
    assert model.log_likelihood(x, torch.zeros(2, 5, 4)).shape == (2, 5)
    # the shapes the docstring promises, layer by layer: 28 -> 14 -> 7 -> 14 -> 28
    h = model.encoder_conv1(x.reshape(5, 1, 28, 28))
    assert h.shape == (5, 8, 14, 14) and model.encoder_conv2(h).shape == (5, 16, 7, 7)
    # the ELBO machinery takes it unchanged
    terms = objectives.elbo(model, (x > 0.5).float(), generator=torch.Generator().manual_seed(0))
    assert terms.elbo.shape == (5,) and torch.isfinite(terms.elbo).all()
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvVAE(side=30)
    with pytest.raises(ValueError, match="likelihood"):
        ConvVAE(likelihood="gaussian")


def test_conv_vae_bernoulli_log_likelihood_is_torch_bernoulli_of_its_logits():
    torch.manual_seed(1)
    model = ConvVAE(side=8, channels=2, z_dim=3, width=4)
    x = (torch.rand(4, 128) < 0.5).float()
    z = torch.randn(4, 3)
    expected = Independent(Bernoulli(logits=model.decode(z)), 1).log_prob(x)
    torch.testing.assert_close(model.log_likelihood(x, z), expected)


def test_conv_vae_logistic_log_likelihood_is_normalised_over_the_256_levels():
    torch.manual_seed(2)
    model = ConvVAE(side=4, channels=1, z_dim=2, width=2, likelihood="logistic").double()
    z = torch.randn(1, 2, dtype=torch.float64)
    # every image whose pixels all equal k/255, for each k: per-pixel probabilities sum to 1
    levels = torch.arange(256, dtype=torch.float64)[:, None].expand(256, 16) / 255
    per_pixel = torch.stack([model.log_likelihood(levels[k:k + 1], z) for k in range(256)])
    # log_likelihood sums 16 pixels; check one pixel's normalisation through the distribution itself
    mean, log_scale = model._logistic_params(z)
    from vae_core.distributions import discretized_logistic_log_prob
    one = torch.stack([discretized_logistic_log_prob(levels[k:k + 1, :1], mean[:, :1], log_scale[:, :1])
                       for k in range(256)])
    assert torch.logsumexp(one.flatten(), 0).item() == pytest.approx(0.0, abs=1e-10)
    assert torch.isfinite(per_pixel).all()
    assert model.mean_image(z).min() >= 0 and model.mean_image(z).max() <= 1


def test_conv_vae_trains_and_round_trips_through_a_checkpoint(tmp_path):
    from vae_core import checkpoints, train

    torch.manual_seed(3)
    x = (torch.rand(64, 64) < 0.3).float()
    model = ConvVAE(side=8, z_dim=2, width=4)
    history = train.fit(model, x, x[:16], epochs=2, batch_size=16, progress=False, device="cpu",
                        checkpoint_path=tmp_path / "c.pt")
    assert history.epochs == 2 and math.isfinite(history.test["elbo"][-1])
    rebuilt, _ = checkpoints.load_model(tmp_path / "c.pt")
    assert isinstance(rebuilt, ConvVAE) and rebuilt.config() == model.config()
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(),
                                                  model.state_dict().values(), strict=True))


def test_a_conv_model_is_found_by_name_and_keyed_by_its_module(tmp_path):
    from vae_core import cache
    from vae_core.checkpoints import model_class_named

    assert model_class_named("ConvVAE") is ConvVAE
    assert model_class_named("VAE").__module__ == "vae_core.models"
    assert model_class_named("Tensor") is None and model_class_named("nope") is None
    x = (torch.rand(32, 64, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    _, description = cache.cache_key(ConvVAE, {"side": 8, "z_dim": 2, "width": 4}, x, epochs=1)
    assert "conv.py" in description["model_sources"]
    model, _ = cache.pretrained({"side": 8, "z_dim": 2, "width": 4}, x, model_class="ConvVAE",
                                epochs=1, batch_size=16, progress=False, device="cpu",
                                cache_dir=tmp_path)
    assert isinstance(model, ConvVAE)


# ---------------------------------------------------------------------------------------------
# The ELBO of a tiny model against a hand computation (loops over the kernels, numpy)
# ---------------------------------------------------------------------------------------------

def _conv_by_hand(x, w, b, stride=2, pad=1):
    """x (C, H, W), w (O, C, k, k): out[o, i, j] = b[o] + Σ w[o, c, u, v] x_pad[c, s·i + u, s·j + v]."""
    import numpy as np

    c, h, _ = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    n = (h + 2 * pad - k) // stride + 1
    out = np.zeros((o, n, n))
    for oo in range(o):
        for i in range(n):
            for j in range(n):
                out[oo, i, j] = b[oo] + sum(w[oo, cc, u, v] * xp[cc, stride * i + u, stride * j + v]
                                            for cc in range(c) for u in range(k) for v in range(k))
    return out


def _transposed_conv_by_hand(x, w, b, stride=2, pad=1):
    """x (C, n, n), w (C, O, k, k): each input pixel adds w[c, o] · x[c, i, j] to the k × k patch at
    (s·i, s·j) of a (s·(n−1) + k)-sized canvas, which is then cropped by ``pad`` on each side."""
    import numpy as np

    c, n, _ = x.shape
    _, o, k, _ = w.shape
    full = np.zeros((o, stride * (n - 1) + k, stride * (n - 1) + k))
    for cc in range(c):
        for i in range(n):
            for j in range(n):
                full[:, stride * i:stride * i + k, stride * j:stride * j + k] += w[cc] * x[cc, i, j]
    side = full.shape[1] - 2 * pad
    return full[:, pad:pad + side, pad:pad + side] + b[:, None, None]


@pytest.mark.parametrize("latent_channels", [None, 1])
def test_tiny_conv_vae_elbo_equals_a_hand_computation(latent_channels):
    import numpy as np

    torch.manual_seed(4)
    kwargs = {"z_dim": 2} if latent_channels is None else {"latent_channels": latent_channels}
    model = ConvVAE(side=8, channels=1, width=2, likelihood="bernoulli", **kwargs).double()
    p = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    x = (torch.rand(3, 64, dtype=torch.float64) < 0.4).double()
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    terms = objectives.elbo(model, x, generator=torch.Generator().manual_seed(7))
    eps = torch.randn((1, 3, model.z_dim), generator=torch.Generator().manual_seed(7), dtype=torch.float64)[0]
    for n in range(3):
        image = x[n].numpy().reshape(1, 8, 8)
        h = relu(_conv_by_hand(image, p["encoder_conv1.weight"], p["encoder_conv1.bias"]))
        h = relu(_conv_by_hand(h, p["encoder_conv2.weight"], p["encoder_conv2.bias"]))  # (4, 2, 2)
        if latent_channels is None:
            mu = p["to_mu.weight"] @ h.reshape(-1) + p["to_mu.bias"]
            logvar = p["to_logvar.weight"] @ h.reshape(-1) + p["to_logvar.bias"]
        else:  # 1×1 convolutions: the same linear map at each of the 2 × 2 positions
            mu = (np.einsum("oc,cij->oij", p["to_mu.weight"][:, :, 0, 0], h)
                  + p["to_mu.bias"][:, None, None]).reshape(-1)
            logvar = (np.einsum("oc,cij->oij", p["to_logvar.weight"][:, :, 0, 0], h)
                      + p["to_logvar.bias"][:, None, None]).reshape(-1)
        z = mu + np.exp(0.5 * logvar) * eps[n].numpy()
        if latent_channels is None:
            g = relu(p["decoder_hidden.weight"] @ z + p["decoder_hidden.bias"]).reshape(4, 2, 2)
        else:
            g = relu(_conv_by_hand(z.reshape(1, 2, 2), p["decoder_hidden.weight"], p["decoder_hidden.bias"],
                                   stride=1, pad=1))
        g = relu(_transposed_conv_by_hand(g, p["decoder_deconv1.weight"], p["decoder_deconv1.bias"]))
        logits = _transposed_conv_by_hand(g, p["decoder_deconv2.weight"], p["decoder_deconv2.bias"])
        rec = Independent(Bernoulli(logits=torch.tensor(logits.reshape(-1))), 1).log_prob(x[n]).item()
        kl = torch.distributions.kl_divergence(
            torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar))),
            torch.distributions.Normal(0.0, 1.0)).sum().item()
        assert terms.rec[n].item() == pytest.approx(rec, rel=1e-10, abs=1e-10)
        assert terms.kl[n].item() == pytest.approx(kl, rel=1e-10, abs=1e-10)
        assert terms.elbo[n].item() == pytest.approx(rec - kl, rel=1e-10, abs=1e-10)


# ---------------------------------------------------------------------------------------------
# Spatial latents, the MLP baseline with the same likelihood, bad input
# ---------------------------------------------------------------------------------------------

def test_spatial_latents_have_the_shape_of_a_feature_map():
    torch.manual_seed(5)
    model = ConvVAE(side=28, width=4, latent_channels=3, likelihood="logistic")
    assert model.z_dim == 3 * 7 * 7 and model.config()["latent_channels"] == 3
    x = torch.randint(0, 256, (2, 784)).float() / 255
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 147)
    # position (i, j) of channel c is z[c·49 + 7i + j]; moving one pixel of x moves codes nearby only
    x2 = x.clone()
    x2[:, 0] = 1 - x2[:, 0]  # the top-left pixel
    moved = (model.encode(x2)[0] - mu).abs().reshape(2, 3, 7, 7).amax((0, 1)) > 0
    assert moved[:2, :2].any() and not moved[3:, :].any() and not moved[:, 3:].any()
    assert model.decode(torch.zeros(5, 2, 147)).shape == (5, 2, 2 * 784)
    assert model.log_likelihood(x, torch.zeros(4, 2, 147)).shape == (4, 2)
    rebuilt = ConvVAE(**model.config())
    assert rebuilt.z_dim == 147
    assert ConvVAE(latent_channels=2, z_dim=98, width=4).z_dim == 98


def test_mlp_logistic_vae_is_normalised_and_matches_the_library_likelihood():
    from vae_core.conv import MLPLogisticVAE
    from vae_core.distributions import discretized_logistic_log_prob

    torch.manual_seed(6)
    model = MLPLogisticVAE(x_dim=3, h_dim=5, z_dim=2).double()
    z = torch.randn(1, 2, dtype=torch.float64)
    out = model.decode(z)
    assert out.shape == (1, 6)
    # brute force: all 256³ images of 3 pixels would be many; sum each pixel's 256 levels instead,
    # and check the joint factorises: log p(x) = Σ_i log p(x_i)
    grid = torch.arange(256, dtype=torch.float64) / 255
    for i in range(3):
        x = torch.zeros(256, 3, dtype=torch.float64)
        x[:, i] = grid
        logp = torch.stack([model.log_likelihood(x[k:k + 1], z) for k in range(256)]).flatten()
        rest = discretized_logistic_log_prob(torch.zeros(1, 2, dtype=torch.float64),
                                             out[0, [j for j in range(3) if j != i]],
                                             out[0, [3 + j for j in range(3) if j != i]].clamp(min=-7))
        assert torch.logsumexp(logp - rest, 0).item() == pytest.approx(0.0, abs=1e-10)
    assert MLPLogisticVAE(**model.config()).config() == model.config()
    terms = objectives.elbo(model, torch.rand(4, 3, dtype=torch.float64).mul(255).round().div(255))
    assert torch.isfinite(terms.elbo).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"latent_channels": 0}, "latent_channels"),
    ({"latent_channels": 2, "z_dim": 16}, "contradicts"),
    ({"width": 0}, "width"),
    ({"side": 30}, "divisible by 4"),
    ({"channels": -1}, "channels"),
])
def test_bad_constructor_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvVAE(**kwargs)


def test_bad_inputs_get_clear_errors():
    from vae_core.conv import MLPLogisticVAE

    model = ConvVAE(side=8, z_dim=2, width=2, likelihood="logistic")
    with pytest.raises(ValueError, match="784|64|shape"):
        model.encode(torch.rand(2, 784))
    with pytest.raises(ValueError):
        model.encode(torch.full((2, 64), float("nan")))
    with pytest.raises(ValueError):
        model.log_likelihood(torch.full((2, 64), 2.0), torch.zeros(2, 2))
    with pytest.raises(TypeError):
        model.encode(torch.zeros(2, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="batch"):
        model.log_likelihood(torch.rand(2, 64), torch.zeros(3, 2))
    with pytest.raises(ValueError):
        model.decode(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="h_dim"):
        MLPLogisticVAE(h_dim=0)
