"""The objectives: the ELBO (Kingma & Welling's estimators L^A and L^B) and the IWAE bound.

Conventions: every term is **per example, in nats**, summed over pixels and latent dimensions.
A training loss is ``-(rec - beta * kl).mean()`` over the batch; see :func:`loss`.

- ``kl="analytic"`` (L^B): ELBO = E_q[log p(x|z)] (Monte Carlo) − KL(q(z|x) ‖ p(z)) (closed form).
- ``kl="mc"`` (L^A): ELBO = E_q[log p(x|z) + log p(z) − log q(z|x)], all by Monte Carlo.

Both are unbiased estimates of the same ELBO. Neither always has the lower variance: L^B removes
the noise of the KL term, but near the true posterior L^A's noise in log p(x|z) + log p(z) and in
−log q(z|x) cancels (at q = p(z|x) it has none), so L^A can be far better there (chapter 2 measures
both); their *gradients* differ again (chapter 3). The IWAE bound
log (1/k) Σ p(x, z_i)/q(z_i|x) is ≥ the ELBO, equals the (MC) ELBO at k = 1 and tends to log p(x).

Used by: chapters 2-11, :mod:`vae_core.train`, :mod:`vae_core.evaluate`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .checks import check_non_negative, check_positive_int
from .distributions import gaussian_kl, gaussian_log_prob, log_mean_exp, reparameterize

KL_MODES = ("analytic", "mc")


class ElboTerms(NamedTuple):
    """Per-example terms, each (batch,), in nats: elbo = rec − kl."""

    elbo: Tensor
    rec: Tensor
    kl: Tensor


def elbo(model: nn.Module, x: Tensor, n_samples: int = 1, kl: str = "analytic",
         generator: torch.Generator | None = None) -> ElboTerms:
    """Monte-Carlo ELBO of ``model`` at each example of x.

    model: exposes ``encode``/``log_likelihood`` (see :mod:`vae_core.models`).
    x: (batch, x_dim) in [0, 1]. n_samples: z samples per example, averaged.
    kl: "analytic" (estimator L^B) or "mc" (estimator L^A; the kl term is then the MC estimate
    mean[log q(z|x) − log p(z)]). Returns :class:`ElboTerms` of shape (batch,) each.
    """
    check_positive_int(n_samples, "n_samples")
    if kl not in KL_MODES:
        raise ValueError(f"kl must be one of {KL_MODES}, got {kl!r}")
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, n_samples, generator)  # (S, batch, z_dim)
    rec = model.log_likelihood(x, z).mean(0)
    if kl == "analytic":
        kl_term = gaussian_kl(mu, logvar)
    else:
        kl_term = (gaussian_log_prob(z, mu, logvar) - gaussian_log_prob(z)).mean(0)
    return ElboTerms(rec - kl_term, rec, kl_term)


def loss(model: nn.Module, x: Tensor, beta: float = 1.0, kl: str = "analytic",
         n_samples: int = 1) -> tuple[Tensor, ElboTerms]:
    """Training loss: mean over the batch of −(rec − β·kl), in nats per example.

    Returns (scalar loss, the detached-free ElboTerms) so callers can log rec and kl.
    β = 1 gives the negative ELBO; β ≠ 1 the β-VAE objective (Higgins et al. 2017).
    """
    check_non_negative(beta, "beta")
    terms = elbo(model, x, n_samples=n_samples, kl=kl)
    return -(terms.rec - beta * terms.kl).mean(), terms


def log_weights(model: nn.Module, x: Tensor, k: int,
                generator: torch.Generator | None = None) -> Tensor:
    """Importance log-weights log p(x, z_i) − log q(z_i|x), z_i ~ q(z|x): shape (k, batch)."""
    check_positive_int(k, "k")
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, k, generator)
    return model.log_likelihood(x, z) + gaussian_log_prob(z) - gaussian_log_prob(z, mu, logvar)


@torch.no_grad()
def iwae_bound(model: nn.Module, x: Tensor, k: int, chunk_size: int = 500,
               generator: torch.Generator | None = None) -> Tensor:
    """IWAE bound (Burda et al. 2015) log (1/k) Σ_i p(x, z_i)/q(z_i|x) per example, in nats.

    The k samples are drawn in chunks of ``chunk_size`` and combined with a running logsumexp, so
    memory is O(chunk_size · batch · x_dim) whatever k is (k = 5000 fits on a CPU).
    x: (batch, x_dim) in [0, 1]. Returns (batch,). No gradients (evaluation only).
    """
    check_positive_int(k, "k")
    check_positive_int(chunk_size, "chunk_size")
    total = None
    done = 0
    while done < k:
        n = min(chunk_size, k - done)
        lse = torch.logsumexp(log_weights(model, x, n, generator), dim=0)
        total = lse if total is None else torch.logaddexp(total, lse)
        done += n
    return total - torch.log(torch.tensor(float(k), dtype=total.dtype, device=total.device))


__all__ = ["ElboTerms", "elbo", "loss", "log_weights", "iwae_bound", "log_mean_exp"]
