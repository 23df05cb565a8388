"""Tests of vae_core.vq: the quantiser against brute-force nearest neighbours, the straight-through
and codebook gradients against their formulas, codebook usage and the fitted code prior against
direct counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from vae_core import vq
from vae_core.distributions import bernoulli_log_prob


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(7, 3), (5, 4, 3), (3,)])
def test_nearest_codes_match_brute_force(shape):
    codebook = torch.randn(11, 3, generator=gen(0), dtype=torch.float64)
    z = torch.randn(*shape, generator=gen(1), dtype=torch.float64) * 2
    got = vq.nearest_codes(z, codebook)
    assert got.shape == shape[:-1]
    flat = z.reshape(-1, 3)
    for i, v in enumerate(flat):
        dists = [float(((v - c) ** 2).sum()) for c in codebook]
        assert got.reshape(-1)[i].item() == int(np.argmin(dists))
    assert torch.equal(got.reshape(-1), torch.cdist(flat, codebook).argmin(1))


def test_nearest_codes_ties_go_to_lowest_index_and_exact_hits():
    codebook = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert vq.nearest_codes(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64),
                            codebook).tolist() == [0, 2]


def model_and_x():
    torch.manual_seed(0)
    m = vq.VQVAE(x_dim=10, h_dim=6, n_positions=3, code_dim=2, n_codes=5).double()
    x = torch.bernoulli(torch.full((4, 10), 0.5, dtype=torch.float64), generator=gen(2))
    return m, x


def test_straight_through_and_codebook_gradients():
    m, x = model_and_x()
    z_e = m.encode(x)
    idx = vq.nearest_codes(z_e, m.codebook)
    z_q = m.codebook[idx].detach().requires_grad_(True)
    # the decoder's gradient at z_q is what the encoder output receives (plus the commitment pull)
    rec = bernoulli_log_prob(x, m.decoder(z_q.flatten(-2)))
    (g_dec,) = torch.autograd.grad(-rec.mean(), z_q)
    expected_ze = g_dec + m.commitment * 2 * (z_e.detach() - z_q.detach()) / len(x)
    z_e_leaf = z_e.detach().requires_grad_(True)
    m2 = m
    m2.encode = lambda _x: z_e_leaf  # feed the same z_e as a leaf
    loss, terms = vq.vq_loss(m2, x)
    loss.backward()
    torch.testing.assert_close(z_e_leaf.grad, expected_ze)
    # codebook: only the codebook loss, 2 (z_q - z_e) summed over the vectors assigned to each code
    expected_cb = torch.zeros_like(m.codebook)
    expected_cb.index_add_(0, idx.reshape(-1), (2 * (z_q - z_e).detach() / len(x)).reshape(-1, 2))
    torch.testing.assert_close(m.codebook.grad, expected_cb)
    torch.testing.assert_close(terms["elbo"], terms["rec"] - 3 * math.log(5))
    torch.testing.assert_close(terms["codebook"], terms["commitment"])


def test_codebook_usage_perplexity_and_dead_codes():
    uniform = vq.codebook_usage(torch.arange(8).repeat(10), 8)
    assert uniform.perplexity == pytest.approx(8.0) and uniform.dead == 0
    single = vq.codebook_usage(torch.full((20,), 3), 8)
    assert single.perplexity == pytest.approx(1.0) and single.dead == 7
    half = vq.codebook_usage(torch.tensor([[0, 1], [0, 1]]), 4)
    assert half.perplexity == pytest.approx(2.0) and half.dead == 2
    assert half.counts.tolist() == [2, 2, 0, 0]


def test_code_prior_counts_and_sampling_chi_square():
    idx = torch.tensor([[0, 2], [0, 1], [1, 1], [0, 1]])
    lp = vq.fit_code_prior(idx, 3, smoothing=1.0)
    expected = torch.tensor([[4, 2, 1], [1, 4, 2]], dtype=torch.float64) / 7
    torch.testing.assert_close(lp.exp(), expected)
    draws = vq.sample_codes(lp, 30_000, gen(0))
    assert draws.shape == (30_000, 2)
    for j in range(2):
        counts = np.bincount(draws[:, j].numpy(), minlength=3)
        assert stats.chisquare(counts, expected[j].numpy() * 30_000).pvalue > 1e-3


def test_vqvae_trains_and_decodes_codes():
    from vae_core.train import fit

    torch.manual_seed(0)
    m = vq.VQVAE(h_dim=32, n_positions=4, code_dim=3, n_codes=8)
    x = torch.bernoulli(torch.full((64, 784), 0.3), generator=gen(0))
    h = fit(m, x, x, epochs=3, batch_size=32, loss_fn=vq.vq_loss, progress=False)
    assert h.test["loss"][-1] < h.test["loss"][0]
    idx = m.quantize(x)
    assert idx.shape == (64, 4)
    assert m.decode_indices(idx).shape == (64, 784)


def test_bad_inputs_get_clear_errors():
    cb = torch.randn(4, 3)
    with pytest.raises(ValueError, match="code_dim"):
        vq.nearest_codes(torch.zeros(2, 2), cb)
    with pytest.raises(ValueError, match="codebook must have shape"):
        vq.nearest_codes(torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        vq.nearest_codes(torch.tensor([[float("nan"), 0, 0]]), cb)
    with pytest.raises(ValueError, match="commitment"):
        vq.VQVAE(commitment=-1)
    with pytest.raises(ValueError, match="init"):
        vq.VQVAE(init="kmeans")
    m = vq.VQVAE(h_dim=8, n_positions=2, code_dim=2, n_codes=4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        m.decode_indices(torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="n_positions"):
        m.decode_indices(torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="labels"):
        vq.vq_loss(m, torch.zeros(2, 784), torch.zeros(2))
    with pytest.raises(ValueError, match="integers"):
        vq.codebook_usage(torch.tensor([0, 5]), 4)
    with pytest.raises(ValueError, match="smoothing"):
        vq.fit_code_prior(torch.zeros(3, 2, dtype=torch.long), 4, smoothing=0.0)
