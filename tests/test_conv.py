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
