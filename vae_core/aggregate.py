"""The aggregate posterior q(z) = (1/N) Σ_n q(z | x_n): its moments, and how far it is from N(0, I).

The ELBO's KL term pulls each q(z | x) towards the prior; with a small β nothing pulls, and the
codes of the data set can sit anywhere. Two summaries: the mean and covariance of the mixture
(:func:`aggregate_moments`) and the KL from the Gaussian with those moments to the prior
(:func:`gaussian_fit_kl`) — zero exactly when the first two moments are the prior's.

Used by: chapter 9 (``notebooks/09_convolutional.ipynb``): the small-β autoencoder of latent diffusion:
codes far from N(0, I).
"""

from __future__ import annotations

import torch
from torch import Tensor


def aggregate_moments(mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and covariance (D, D) of the mixture (1/N) Σ_n N(mu_n, diag exp(logvar_n)).

    mu, logvar: (N, D) encoder outputs for N examples. By the law of total covariance the
    covariance is Cov_n(mu_n) (population, ddof 0) + diag(mean_n exp(logvar_n)).
    Computed in float64.

    Used by: chapter 9 (codes of the β = 1 and the small-β convolutional VAEs).
    """
    if mu.shape != logvar.shape or mu.dim() != 2 or len(mu) < 1:
        raise ValueError(f"mu and logvar must both be (N, D) with N >= 1, got {tuple(mu.shape)} "
                         f"and {tuple(logvar.shape)}")
    mu, var = mu.detach().double(), logvar.detach().double().exp()
    if not (torch.isfinite(mu).all() and torch.isfinite(var).all()):
        raise ValueError("mu and logvar must be finite")
    mean = mu.mean(0)
    centred = mu - mean
    cov = centred.T @ centred / len(mu) + torch.diag(var.mean(0))
    return mean, cov


def gaussian_fit_kl(mean: Tensor, cov: Tensor) -> Tensor:
    """KL( N(mean, cov) ‖ N(0, I) ) in nats: ½ (tr cov + ‖mean‖² − D − log det cov).

    mean: (D,); cov: (D, D) symmetric positive definite (e.g. from :func:`aggregate_moments`).
    Returns a 0-d float64 tensor. Raises ValueError when cov is not positive definite.

    Used by: chapter 9 (how far the aggregate posterior is from the prior, per dimension).
    """
    mean, cov = torch.as_tensor(mean).double(), torch.as_tensor(cov).double()
    if mean.dim() != 1 or cov.shape != (len(mean), len(mean)):
        raise ValueError(f"mean must be (D,) and cov (D, D), got {tuple(mean.shape)} and {tuple(cov.shape)}")
    chol, info = torch.linalg.cholesky_ex(cov)
    if info.item() != 0:
        raise ValueError("cov is not positive definite")
    log_det = 2 * torch.log(torch.diagonal(chol)).sum()
    return 0.5 * (torch.trace(cov) + mean @ mean - len(mean) - log_det)
