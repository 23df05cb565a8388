"""The importance-weighted bound for any posterior and any prior, as a training objective, and the
signal-to-noise ratio of its gradient. (Measuring it on test data: :mod:`vae_core.gap`.)

A model is any VAE-like module of vae_core (``encode``, ``log_likelihood``), optionally with

- ``posterior_from_noise(x, eps) -> (z, log q(z|x))`` and ``log_q(x, z)``: a non-Gaussian posterior
  (:class:`vae_core.flows.FlowVAE`); without them q(z|x) = N(μ(x), diag σ²(x)) from ``encode``;
- ``log_prior(z)``: a learned prior (:class:`vae_core.priors.PriorVAE`); without it p(z) = N(0, I).

With k samples z_i ~ q(z|x), the log-weights are log w_i = log p(x|z_i) + log p(z_i) − log q(z_i|x)
and the bound L_k = log (1/k) Σ_i w_i (Burda et al. 2016) is ≤ log p(x) in expectation, equal to the
ELBO at k = 1 and increasing with k. Everything is in nats per example.

Used by: chapter 10 (``notebooks/10_closing_the_gap.ipynb``): IWAE training, flow posteriors, learned
priors, the comparison table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from .checks import check_positive_int
from .distributions import gaussian_log_prob


def posterior_from_noise(model: nn.Module, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """Samples of q(z|x) from standard-normal noise, and their log-density.

    x: (batch, x_dim); eps: (k, batch, z_dim) ~ N(0, I). Returns z (k, batch, z_dim) and
    log q(z|x) (k, batch) in nats; differentiable in the model's parameters (pathwise).
    """
    if hasattr(model, "posterior_from_noise"):
        return model.posterior_from_noise(x, eps)
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    return z, gaussian_log_prob(z, mu, logvar)


def log_q(model: nn.Module, x: Tensor, z: Tensor) -> Tensor:
    """log q(z|x) at given points: x (batch, x_dim), z (..., batch, z_dim) -> (..., batch), nats."""
    if hasattr(model, "log_q"):
        return model.log_q(x, z)
    mu, logvar = model.encode(x)
    return gaussian_log_prob(z, mu, logvar)


def log_prior(model: nn.Module, z: Tensor) -> Tensor:
    """log p(z): the model's learned prior if it has one, else N(0, I). z (..., z_dim) -> (...)."""
    if hasattr(model, "log_prior"):
        return model.log_prior(z)
    return gaussian_log_prob(z)


def log_weights_from_noise(model: nn.Module, x: Tensor, eps: Tensor) -> Tensor:
    """log w = log p(x|z) + log p(z) − log q(z|x) for z from noise eps (k, batch, z_dim): (k, batch)."""
    z, lq = posterior_from_noise(model, x, eps)
    return model.log_likelihood(x, z) + log_prior(model, z) - lq


def log_weights(model: nn.Module, x: Tensor, k: int,
                generator: torch.Generator | None = None) -> Tensor:
    """Importance log-weights of k fresh samples per example: x (batch, x_dim) -> (k, batch), nats.

    The noise is drawn as one (k, batch, z_dim) standard-normal tensor from ``generator``, the same
    draw as :func:`vae_core.objectives.log_weights` makes, so for a plain VAE both agree exactly.
    """
    k = check_positive_int(k, "k")
    z_dim = model.z_dim
    p = next(model.parameters())
    eps = torch.randn((k, len(x), z_dim), generator=generator, device=x.device, dtype=p.dtype)
    return log_weights_from_noise(model, x, eps)


def iwae_loss(model: nn.Module, x: Tensor, y: Tensor | None = None, *, beta: float = 1.0,
              generator: torch.Generator | None = None, k: int = 1) -> tuple[Tensor, dict[str, Tensor]]:
    """Training loss for :func:`vae_core.train.fit`: −mean over the batch of the IWAE bound L_k.

    k = 1 is the ELBO with a Monte-Carlo KL (estimator L^A), the loss for models whose KL has no
    closed form (a flow posterior, a mixture prior). Pass k with ``functools.partial(iwae_loss, k=5)``
    (the model cache keys the partial by its arguments). beta must be 1 (a β-weighted IWAE bound is
    not defined here) and y None. x: (batch, x_dim) in [0, 1].

    Returns (scalar loss, {"iwae": L_k, "elbo": mean_i log w_i (an unbiased ELBO estimate from the
    same samples), "kl": the elbo's −mean_i[log p(z_i) − log q(z_i|x)]}, each (batch,) in nats).
    """
    if y is not None:
        raise ValueError("iwae_loss takes no labels")
    if beta != 1.0:
        raise ValueError(f"iwae_loss needs beta = 1 (no KL weighting or warm-up), got {beta}")
    k = check_positive_int(k, "k")
    p = next(model.parameters())
    eps = torch.randn((k, len(x), model.z_dim), generator=generator, device=x.device, dtype=p.dtype)
    z, lq = posterior_from_noise(model, x, eps)
    rec = model.log_likelihood(x, z)
    kl = lq - log_prior(model, z)
    lw = rec - kl
    bound = torch.logsumexp(lw, 0) - math.log(k)
    return -bound.mean(), {"iwae": bound, "elbo": lw.mean(0), "kl": kl.mean(0)}


def gradient_snr(model: nn.Module, x: Tensor, k: int, groups: Mapping[str, Iterable[nn.Parameter]],
                 n_repeats: int = 100, seed: int = 0) -> dict[str, float]:
    """Signal-to-noise ratio of the gradient of the IWAE bound, per group of parameters.

    The gradient of the mean over x of L_k is computed ``n_repeats`` times with fresh noise; for each
    parameter entry SNR = |mean| / std (ddof 1) over the repeats (Rainforth et al. 2018), and the
    group's value is the median over its entries (leaving out entries whose gradient is zero in
    every repeat, e.g. behind a dead ReLU: they have no signal and no noise).
    x: (batch, x_dim) in [0, 1], a fixed batch.
    groups: e.g. {"encoder": [...], "decoder": [...]}. Returns {group: median SNR}.

    Rainforth et al. show that as k grows the encoder's SNR falls like 1/√k while the decoder's
    rises like √k: a tighter bound gives the inference network a noisier learning signal.
    """
    k = check_positive_int(k, "k")
    n_repeats = check_positive_int(n_repeats, "n_repeats", minimum=2)
    groups = {name: list(ps) for name, ps in groups.items()}
    params = [p for ps in groups.values() for p in ps]
    generator = torch.Generator(device=x.device).manual_seed(seed)
    grads: list[list[Tensor]] = []
    for _ in range(n_repeats):
        loss, _ = iwae_loss(model, x, generator=generator, k=k)
        grads.append([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    out, j = {}, 0
    for name, ps in groups.items():
        g = torch.stack([torch.cat(r[j:j + len(ps)]) for r in grads]).double()  # (R, P)
        j += len(ps)
        live = (g != 0).any(0)  # entries with a zero gradient in every repeat (dead ReLUs) have no SNR
        g = g[:, live]
        snr = g.mean(0).abs() / g.std(0, correction=1).clamp_min(1e-300)
        out[name] = float(snr.quantile(0.5))  # the usual median (the mean of the middle two)
    return out


__all__ = ["posterior_from_noise", "log_q", "log_prior", "log_weights", "log_weights_from_noise",
           "iwae_loss", "gradient_snr"]
