"""Tests for vae_core.flows against independent references: the log-determinant against the Jacobian
from torch.autograd.functional.jacobian, the inverse against the forward map, the density of the flow
posterior integrating to 1 on a fine grid, and the untrained flow equal to the Gaussian encoder."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from vae_core.distributions import gaussian_log_prob
from vae_core.flows import S_MAX, AffineCoupling, CouplingFlow, FlowVAE


def randomize(module: torch.nn.Module, scale: float = 0.7, seed: int = 0) -> None:
    """Give every parameter random values (the coupling layers start as the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("z_dim", [2, 3, 5])
@pytest.mark.parametrize("parity", [0, 1])
def test_coupling_log_det_matches_autograd_jacobian(z_dim, parity):
    layer = AffineCoupling(z_dim, context_dim=3, hidden=7, parity=parity).double()
    randomize(layer, scale=1.5)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, z_dim, generator=g, dtype=torch.float64)
    c = torch.randn(4, 3, generator=g, dtype=torch.float64)
    _, log_det = layer(z, c)
    for i in range(4):
        jac = jacobian(lambda v, i=i: layer(v[None], c[i:i + 1])[0][0], z[i])
        assert torch.allclose(log_det[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-10)
        # the inverse's log-determinant is that of the inverse Jacobian
        zp = layer(z[i:i + 1], c[i:i + 1])[0][0]
        jac_inv = jacobian(lambda v, i=i: layer.inverse(v[None], c[i:i + 1])[0][0], zp)
        _, ld_inv = layer.inverse(zp[None], c[i:i + 1])
        assert torch.allclose(ld_inv[0], torch.linalg.slogdet(jac_inv).logabsdet, atol=1e-10)


def test_flow_log_det_matches_autograd_jacobian_and_inverts():
    flow = CouplingFlow(3, context_dim=2, hidden=6, n_layers=4).double()
    randomize(flow, scale=1.2)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(5, 3, generator=g, dtype=torch.float64)
    c = torch.randn(5, 2, generator=g, dtype=torch.float64)
    out, log_det = flow(z, c)
    for i in range(5):
        jac = jacobian(lambda v, i=i: flow(v[None], c[i:i + 1])[0][0], z[i])
        assert torch.allclose(log_det[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-10)
    back, log_det_inv = flow.inverse(out, c)
    assert torch.allclose(back, z, atol=1e-10)
    assert torch.allclose(log_det_inv, -log_det, atol=1e-10)


def test_leading_sample_dimensions_broadcast_over_context():
    flow = CouplingFlow(2, context_dim=3, hidden=5, n_layers=2).double()
    randomize(flow)
    z = torch.randn(7, 4, 2, dtype=torch.float64)
    c = torch.randn(4, 3, dtype=torch.float64)
    out, ld = flow(z, c)
    assert out.shape == (7, 4, 2) and ld.shape == (7, 4)
    for s in range(7):
        o, l1 = flow(z[s], c)
        assert torch.allclose(o, out[s]) and torch.allclose(l1, ld[s])


def test_log_scale_is_bounded():
    layer = AffineCoupling(2, hidden=4).double()
    with torch.no_grad():
        layer.to_st.bias.fill_(1e3)
    _, ld = layer(torch.zeros(3, 2, dtype=torch.float64))
    assert (ld <= S_MAX + 1e-12).all() and (ld > S_MAX - 1e-6).all()


def small_flow_vae(seed: int = 0) -> FlowVAE:
    torch.manual_seed(seed)
    model = FlowVAE(x_dim=6, h_dim=8, z_dim=2, flow_hidden=8, flow_layers=4).double()
    randomize(model.flow, scale=0.8, seed=seed)
    return model


def test_flow_posterior_density_integrates_to_one_on_a_grid():
    model = small_flow_vae()
    x = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1.0]], dtype=torch.float64)
    limit, n = 14.0, 700
    h = 2 * limit / n
    axis = torch.linspace(-limit + h / 2, limit - h / 2, n, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        lq = model.log_q(x, grid[:, None, :].expand(-1, 2, -1))  # (G, 2)
    mass = torch.logsumexp(lq, 0).exp() * h * h
    assert torch.allclose(mass, torch.ones(2, dtype=torch.float64), atol=2e-3), mass


def test_samples_log_density_equals_density_at_the_samples():
    model = small_flow_vae(1)
    x = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1.0]], dtype=torch.float64)
    eps = torch.randn(9, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    z, lq = model.posterior_from_noise(x, eps)
    assert torch.allclose(lq, model.log_q(x, z), atol=1e-10)
    # the flow moved them: not the Gaussian density
    mu, logvar = model.encode(x)
    assert (lq - gaussian_log_prob(z, mu, logvar)).abs().max() > 0.1


def test_untrained_flow_is_the_gaussian_encoder():
    torch.manual_seed(0)
    model = FlowVAE(x_dim=6, h_dim=8, z_dim=2)
    x = torch.tensor([[1, 0, 1, 1, 0, 0.0]])
    eps = torch.randn(5, 1, 2)
    z, lq = model.posterior_from_noise(x, eps)
    mu, logvar = model.encode(x)
    assert torch.allclose(z, mu + torch.exp(0.5 * logvar) * eps)
    assert torch.allclose(lq, gaussian_log_prob(z, mu, logvar))
    assert model.config() == {"x_dim": 6, "h_dim": 8, "z_dim": 2, "flow_hidden": 64, "flow_layers": 4}
    assert math.isfinite(float(model.log_likelihood(x, z).sum().detach()))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="z_dim"):
        AffineCoupling(1)
    with pytest.raises(ValueError, match="parity"):
        AffineCoupling(2, parity=2)
    layer = AffineCoupling(2, context_dim=3)
    with pytest.raises(ValueError, match="context"):
        layer(torch.zeros(1, 2))
