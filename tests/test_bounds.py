"""Tests for vae_core.bounds against independent references: the objectives module's IWAE bound and
ELBO (same noise), the learned-prior and flow models reducing to the plain VAE when they are the
plain VAE, and the gradient signal-to-noise ratio recomputed by hand."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from vae_core import bounds, objectives
from vae_core.flows import FlowVAE
from vae_core.models import VAE
from vae_core.priors import PriorVAE


def binary_data(n: int = 16, d: int = 6, seed: int = 1) -> torch.Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


def small_vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(6, 16, 2)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_iwae_loss_equals_the_objectives_iwae_bound(k):
    model, x = small_vae(), binary_data()
    loss, terms = bounds.iwae_loss(model, x, generator=torch.Generator().manual_seed(7), k=k)
    reference = objectives.iwae_bound(model, x, k, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(terms["iwae"], reference, atol=1e-5)
    assert torch.allclose(loss, -reference.mean(), atol=1e-5)


def test_iwae_loss_at_k1_is_the_monte_carlo_elbo():
    model, x = small_vae(), binary_data()
    _, terms = bounds.iwae_loss(model, x, generator=torch.Generator().manual_seed(3), k=1)
    ref = objectives.elbo(model, x, kl="mc", generator=torch.Generator().manual_seed(3))
    assert torch.allclose(terms["elbo"], ref.elbo, atol=1e-5)
    assert torch.allclose(terms["kl"], ref.kl, atol=1e-5)
    assert torch.allclose(terms["iwae"], terms["elbo"], atol=1e-6)


def test_log_weights_match_objectives_for_a_plain_vae():
    model, x = small_vae(), binary_data()
    lw = bounds.log_weights(model, x, 8, torch.Generator().manual_seed(2))
    ref = objectives.log_weights(model, x, 8, torch.Generator().manual_seed(2))
    assert torch.allclose(lw, ref, atol=1e-5)


def test_standard_prior_and_untrained_flow_give_the_plain_vae_weights():
    vae, x = small_vae(), binary_data()
    for other in (PriorVAE(6, 16, 2, prior="standard"), FlowVAE(6, 16, 2)):
        other.vae.load_state_dict(vae.state_dict())
        lw = bounds.log_weights(other, x, 4, torch.Generator().manual_seed(5))
        ref = objectives.log_weights(vae, x, 4, torch.Generator().manual_seed(5))
        assert torch.allclose(lw, ref, atol=1e-5)


def test_iwae_loss_trains_through_fit_and_is_keyed_by_k():
    from vae_core import cache, train
    x = binary_data(64)
    h = train.fit(small_vae(), x, x, epochs=1, batch_size=32, progress=False,
                  loss_fn=functools.partial(bounds.iwae_loss, k=3))
    assert {"loss", "iwae", "elbo", "kl"} <= set(h.test)
    assert h.test["iwae"][0] >= h.test["elbo"][0] - 1e-6  # L_3 ≥ the mean log-weight
    ids = {cache.callable_identity(functools.partial(bounds.iwae_loss, k=k)) for k in (1, 3, 5)}
    assert len(ids) == 3


def test_iwae_loss_refuses_beta_and_labels():
    model, x = small_vae(), binary_data()
    with pytest.raises(ValueError, match="beta"):
        bounds.iwae_loss(model, x, beta=0.5, k=2)
    with pytest.raises(ValueError, match="labels"):
        bounds.iwae_loss(model, x, torch.zeros(len(x), dtype=torch.long), k=2)


def test_gradient_snr_matches_a_direct_computation():
    model, x = small_vae(), binary_data(4)
    enc = [model.encoder_hidden.weight, model.to_mu.weight]
    dec = [model.to_x.weight]
    snr = bounds.gradient_snr(model, x, 5, {"encoder": enc, "decoder": dec}, n_repeats=20, seed=11)
    g = torch.Generator().manual_seed(11)
    rows = {"encoder": [], "decoder": []}
    for _ in range(20):  # the same draws, by hand
        lw = objectives.log_weights(model, x, 5, g)
        loss = -(torch.logsumexp(lw, 0) - np.log(5)).mean()
        grads = torch.autograd.grad(loss, enc + dec)
        rows["encoder"].append(torch.cat([t.reshape(-1) for t in grads[:2]]).numpy())
        rows["decoder"].append(grads[2].reshape(-1).numpy())
    for name, r in rows.items():
        r = np.array(r, dtype=np.float64)
        r = r[:, (r != 0).any(0)]
        expected = np.median(np.abs(r.mean(0)) / r.std(0, ddof=1))
        assert abs(snr[name] - expected) < 1e-4 * max(1.0, expected)


def test_encoder_snr_falls_and_decoder_snr_rises_with_k():
    """Rainforth et al. (2018): with k samples the encoder's SNR falls like 1/√k, the decoder's rises."""
    torch.manual_seed(0)
    model = VAE(6, 16, 2)
    x = binary_data(8)
    groups = {"encoder": [model.encoder_hidden.weight, model.to_mu.weight, model.to_logvar.weight],
              "decoder": [model.decoder_hidden.weight, model.to_x.weight]}
    low = bounds.gradient_snr(model, x, 1, groups, n_repeats=200)
    high = bounds.gradient_snr(model, x, 400, groups, n_repeats=200)
    assert high["encoder"] < low["encoder"]
    assert high["decoder"] > low["decoder"]
