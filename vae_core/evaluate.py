"""Evaluation of a trained VAE: test ELBO, importance-weighted log-likelihood, active units, KL per dim.

Units: nats per example (log-likelihoods, ELBO, KL), summed over pixels / latent dimensions.
Everything runs under ``torch.no_grad()``, in batches, on the model's device, and is deterministic
given ``seed`` (a private ``torch.Generator``; the global RNG is neither used nor changed).

Inputs ``x`` are images as :func:`vae_core.train.prepare_data` accepts them: uint8 (N, 28, 28) /
(N, 784) (divided by 255) or float (N, x_dim) in [0, 1]. Binarize them first (e.g.
``vae_core.data.static_binarize``) to evaluate a *likelihood*: on grey levels the Bernoulli
"log-likelihood" is not one (chapter 6).

Used by: chapter 6 (ELBO vs IWAE, active units, posterior collapse), chapters 4-5 (test ELBO,
most informative dimensions), benchmarks (IWAE k = 5000 time and memory).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from .checks import check_non_negative, check_positive_int
from .distributions import gaussian_kl, gaussian_log_prob
from .objectives import KL_MODES, ElboTerms, elbo
from .train import prepare_data


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _prepare(model: nn.Module, x: Tensor | np.ndarray) -> Tensor:
    return prepare_data(x, getattr(model, "x_dim", None), device=_model_device(model))


@torch.no_grad()
def test_elbo(model: nn.Module, x: Tensor | np.ndarray, n_samples: int = 1, batch_size: int = 1000,
              kl: str = "analytic", reduction: str = "mean", seed: int = 0) -> ElboTerms:
    """ELBO, reconstruction log-likelihood and KL of ``model`` on x, in nats per example.

    x: (N, x_dim) in [0, 1] (or uint8 images). n_samples: z samples per example (Monte Carlo over
    the reconstruction term; and the KL too if kl="mc"). reduction: "mean" → :class:`ElboTerms` of 0-d
    tensors (means over the N examples); "none" → each term (N,). Deterministic given ``seed``.

    Used by: chapters 4 (final test ELBO) and 6 (ELBO vs IWAE).
    """
    check_positive_int(n_samples, "n_samples")
    check_positive_int(batch_size, "batch_size")
    if kl not in KL_MODES:
        raise ValueError(f"kl must be one of {KL_MODES}, got {kl!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    x = _prepare(model, x)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    parts = [elbo(model, x[i:i + batch_size], n_samples=n_samples, kl=kl, generator=generator)
             for i in range(0, len(x), batch_size)]
    terms = ElboTerms(*(torch.cat([getattr(p, name) for p in parts]) for name in ElboTerms._fields))
    if reduction == "mean":
        return ElboTerms(*(t.mean() for t in terms))
    return terms


test_elbo.__test__ = False  # type: ignore[attr-defined]  # a library function, not a pytest test


@torch.no_grad()
def iwae_log_likelihood(model: nn.Module, x: Tensor | np.ndarray, k: int = 5000, batch_size: int = 100,
                        chunk_size: int = 500, seed: int = 0) -> Tensor:
    """Importance-weighted estimate of log p(x) (the IWAE bound, Burda et al. 2015), per example.

    log p(x) ≈ log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), i = 1..k; a lower bound in
    expectation that increases with k towards log p(x) (k = 1 is the Monte-Carlo ELBO).

    x: (N, x_dim) in [0, 1]. Examples go through in batches of ``batch_size``; for each batch the k
    noise vectors ε (k, batch, z_dim) are drawn at once (small: no pixels) and decoded in chunks of
    ``chunk_size`` samples, so peak memory is O(chunk_size · batch_size · x_dim) whatever k is. The
    noise does not depend on ``chunk_size``: results for different chunk sizes agree up to float
    rounding. Deterministic given ``seed``. Returns (N,) in nats.

    Used by: chapter 6 (k = 1 … 5000), benchmarks (evaluation speed and memory).
    """
    check_positive_int(k, "k")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(chunk_size, "chunk_size")
    x = _prepare(model, x)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        mu, logvar = model.encode(xb)
        eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        log_w = torch.empty(k, len(xb), device=mu.device, dtype=mu.dtype)
        std = torch.exp(0.5 * logvar)
        for j in range(0, k, chunk_size):
            z = mu + std * eps[j:j + chunk_size]  # (chunk, batch, z_dim)
            log_w[j:j + chunk_size] = (model.log_likelihood(xb, z) + gaussian_log_prob(z)
                                       - gaussian_log_prob(z, mu, logvar))
        out.append(torch.logsumexp(log_w, dim=0) - math.log(k))
    return torch.cat(out)


@torch.no_grad()
def _encode_all(model: nn.Module, x: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    parts = [model.encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def active_units(model: nn.Module, x: Tensor | np.ndarray, threshold: float = 1e-2,
                 batch_size: int = 1000) -> tuple[int, Tensor]:
    """Active latent units (Burda et al. 2015): dimension j is active if Cov_x(E_q[z_j|x]) > threshold.

    The activity of j is the variance over the data of the posterior mean μ_j(x) (population
    variance, divided by N): a unit whose posterior mean does not move with x carries no information.
    x: (N, x_dim) in [0, 1] with N ≥ 2. Returns (number of active units, activity per dim (z_dim,)).

    Used by: chapter 6 (active units, posterior collapse).
    """
    check_non_negative(threshold, "threshold")
    check_positive_int(batch_size, "batch_size")
    x = _prepare(model, x)
    if len(x) < 2:
        raise ValueError("active_units needs at least 2 examples to measure a variance over x")
    mu, _ = _encode_all(model, x, batch_size)
    activity = mu.double().var(dim=0, correction=0).to(mu.dtype)
    return int((activity > threshold).sum()), activity


@torch.no_grad()
def kl_per_dim(model: nn.Module, x: Tensor | np.ndarray, batch_size: int = 1000) -> Tensor:
    """Mean over x of the analytic KL(q(z_j|x) ‖ N(0, 1)) of each latent dimension j, in nats.

    Returns (z_dim,); its sum is the mean KL term of the ELBO (analytic). Dimensions with KL ≈ 0 are
    collapsed onto the prior; sorting by KL gives the most informative dimensions (chapter 5).

    Used by: chapters 5 (traversals of the top dimensions) and 6 (KL per dimension, free bits).
    """
    check_positive_int(batch_size, "batch_size")
    x = _prepare(model, x)
    mu, logvar = _encode_all(model, x, batch_size)
    return gaussian_kl(mu.unsqueeze(-1), logvar.unsqueeze(-1)).double().mean(0).to(mu.dtype)


__all__ = ["test_elbo", "iwae_log_likelihood", "active_units", "kl_per_dim"]
