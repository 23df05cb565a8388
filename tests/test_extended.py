"""Tests of vae_core.extended: the base of the VAEs with a flow posterior or a learned prior.

Oracles: the plain :class:`vae_core.models.VAE` with the same parameters (the extension must not
change the parts it keeps), and the global RNG order (the inner VAE first).
"""

from __future__ import annotations

import torch

from vae_core.extended import ExtendedVAE
from vae_core.flows import FlowVAE
from vae_core.models import VAE
from vae_core.priors import PriorVAE


def test_the_kept_parts_are_the_inner_vaes():
    torch.manual_seed(0)
    model = ExtendedVAE(12, 8, 3)
    x = (torch.rand(5, 12) < 0.5).float()
    z = torch.randn(4, 5, 3)
    mu, logvar = model.encode(x)
    mu_vae, logvar_vae = model.vae.encode(x)
    assert torch.equal(mu, mu_vae) and torch.equal(logvar, logvar_vae)
    assert torch.equal(model.decode(z), model.vae.decode(z))
    assert torch.equal(model.mean_image(z), model.vae.mean_image(z))
    assert torch.equal(model.log_likelihood(x, z), model.vae.log_likelihood(x, z))
    assert (model.x_dim, model.h_dim, model.z_dim, model.likelihood) == (12, 8, 3, "bernoulli")
    assert [n for n, _ in model.named_children()] == ["vae"]


def test_the_inner_vae_is_built_first():
    """A flow or prior VAE seeded like a plain VAE starts from that VAE's weights: the extension's
    own modules draw their initial values after it."""
    for make in (lambda: FlowVAE(12, 8, 2), lambda: PriorVAE(12, 8, 2, "mog", 3),
                 lambda: PriorVAE(12, 8, 2, "vamp", 3)):
        torch.manual_seed(1)
        extended = make()
        torch.manual_seed(1)
        plain = VAE(12, 8, 2)
        for (name, p), (_, q) in zip(extended.vae.named_parameters(), plain.named_parameters(), strict=True):
            assert torch.equal(p, q), name
