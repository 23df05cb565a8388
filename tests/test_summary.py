"""Tests for vae_core.summary: parameter counts against the closed form of the MLP, and FLOPs (torch's
FlopCounterMode) against the documented cost of a matrix product, 2·in·out per example per Linear."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vae_core.models import VAE, ConditionalVAE
from vae_core.summary import count_parameters, flops_per_example, model_summary
from vae_core.train import elbo_loss


def linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out  # weight + bias


def vae_layers(x: int, h: int, z: int) -> list[tuple[int, int]]:
    """(in, out) of the VAE's Linear layers: encoder x→h, h→z (μ), h→z (log σ²); decoder z→h, h→x."""
    return [(x, h), (h, z), (h, z), (z, h), (h, x)]


@pytest.mark.parametrize(("x", "h", "z"), [(784, 400, 20), (784, 256, 2), (16, 8, 2)])
def test_parameter_count_is_the_closed_form(x, h, z):
    expected = (x * h + h) + 2 * (h * z + z) + (z * h + h) + (h * x + x)
    assert count_parameters(VAE(x, h, z)) == expected
    assert expected == sum(linear_params(i, o) for i, o in vae_layers(x, h, z))
    # the Gaussian decoder adds one learned scalar log-variance
    assert count_parameters(VAE(x, h, z, likelihood="gaussian")) == expected + 1


def test_trainable_only_skips_frozen_parameters():
    model = VAE(16, 8, 2)
    model.to_x.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - linear_params(8, 16)


def test_torch_counts_a_linear_layer_as_two_flops_per_multiply_add():
    """The oracle the next tests rely on, as torch documents it: an (n×in)·(in×out) product costs
    2·n·in·out FLOPs (the bias add is not counted)."""
    layer, n = nn.Linear(30, 7), 5
    with FlopCounterMode(display=False) as counter:
        layer(torch.rand(n, 30))
    assert counter.get_total_flops() == 2 * n * 30 * 7


@pytest.mark.parametrize(("x", "h", "z"), [(784, 400, 20), (784, 256, 2), (16, 8, 2)])
def test_vae_flops_are_the_sum_over_its_linear_layers(x, h, z):
    flops = flops_per_example(VAE(x, h, z))
    forward = sum(2 * i * o for i, o in vae_layers(x, h, z))
    assert flops["forward"] == forward
    # backward: every layer needs ∂W (2·in·out) and ∂input (2·in·out), except the first layer,
    # whose input is the data (no gradient wanted)
    backward = sum(4 * i * o for i, o in vae_layers(x, h, z)) - 2 * x * h
    assert flops["backward"] == backward
    assert flops["forward_backward"] == forward + backward
    assert set(flops["by_operator"]["forward"]) == {"aten.addmm"}


def test_flops_per_example_do_not_depend_on_the_batch_size_and_leave_the_model_alone():
    model = VAE(64, 32, 4)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a = flops_per_example(model, batch_size=3)
    b = flops_per_example(model, batch_size=50)
    assert a["forward"] == b["forward"] and a["forward_backward"] == b["forward_backward"]
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), state)


def test_flops_with_more_latent_samples_grow_in_the_decoder_only():
    x, h, z = 64, 32, 4
    model = VAE(x, h, z)
    one = flops_per_example(model)["forward"]

    def five_samples(m, xb, yb, *, beta, generator):
        return elbo_loss(m, xb, yb, beta=beta, generator=generator, n_samples=5)

    five = flops_per_example(model, loss_fn=five_samples)["forward"]
    assert five - one == 4 * (2 * z * h + 2 * h * x)


def test_flops_of_a_conditional_model_through_a_custom_loss():
    model = ConditionalVAE(64, 32, 4, n_classes=10)
    x = torch.rand(8, 64).bernoulli()
    y = torch.arange(8)

    def cvae_loss(m, xb, yb, *, beta, generator):
        return elbo_loss(m.given(yb), xb, beta=beta, generator=generator)

    flops = flops_per_example(model, loss_fn=cvae_loss, x=x, y=y)
    assert flops["forward"] > 0 and flops["backward"] > flops["forward"]


def test_model_summary_lists_layers_total_and_flops():
    model = VAE(784, 400, 20)
    text = model_summary(model)
    for name in ("encoder_hidden", "to_mu", "to_logvar", "decoder_hidden", "to_x"):
        assert name in text
    assert "784 → 400" in text and f"{count_parameters(model):,}" in text
    forward = sum(2 * i * o for i, o in vae_layers(784, 400, 20))
    assert f"forward {forward / 1e6:.2f} M" in text
    assert "FLOPs" not in model_summary(nn.Sequential(nn.Linear(3, 2)))


def test_flops_need_an_input_size():
    with pytest.raises(ValueError, match="x_dim"):
        flops_per_example(nn.Linear(3, 2))
