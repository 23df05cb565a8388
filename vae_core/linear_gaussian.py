"""A latent-variable model where everything is known in closed form: the linear-Gaussian model.

Generative story (factor analysis with isotropic noise, a.k.a. probabilistic PCA):

    z ~ N(0, I_d),        x | z ~ N(W z + b, s² I_D),        W: (D, d), b: (D,), s² > 0.

Because everything is Gaussian and linear, the quantities a VAE can only bound or estimate are exact
here, which makes this the model on which chapter 2 *checks* the theory:

- the evidence   p(x) = N(x; b, W Wᵀ + s² I);
- the posterior  p(z|x) = N(m(x), C), with precision Λ = C⁻¹ = I + WᵀW / s² and
  m(x) = C Wᵀ (x − b) / s² (a linear function of x: the ideal "encoder");
- the ELBO of any diagonal Gaussian q(z) = N(μ, diag σ²), in closed form (no Monte Carlo);
- KL(q ‖ p(z|x)), in closed form, so that log p(x) = ELBO(q) + KL(q ‖ p(z|x)) can be checked to
  rounding error.

The object exposes ``encode`` / ``log_likelihood`` like :mod:`vae_core.models`, so
:func:`vae_core.objectives.elbo`, :func:`~vae_core.objectives.log_weights` and
:func:`~vae_core.objectives.iwae_bound` run on it unchanged. Its ``encode`` returns the best
*diagonal* Gaussian (the mean-field optimum of KL(q ‖ p(z|x))): the posterior mean, with variances
1/Λ_jj, which are smaller than the posterior's own marginal variances C_jj whenever the posterior is
correlated (the reverse KL under-disperses; chapter 1).

Shapes: x (batch, D); z (..., batch, d), e.g. (S, batch, d) for S samples per example. Every
log-density, ELBO and KL is in nats per example. Use float64 for checks at 1e-6 and below.

Used by: chapter 2 (``notebooks/02_elbo.ipynb``); tested in ``tests/test_linear_gaussian.py``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import check_positive_int
from .distributions import LOG_2PI, gaussian_kl, gaussian_log_prob


class LinearGaussian:
    """z ~ N(0, I_d), x | z ~ N(W z + b, noise_var · I_D), with every marginal and posterior exact.

    Args:
        weight: W, (x_dim, z_dim).
        bias: b, (x_dim,).
        noise_var: s² > 0, the variance of each coordinate of the observation noise.
    """

    def __init__(self, weight: Tensor, bias: Tensor, noise_var: float) -> None:
        if weight.dim() != 2:
            raise ValueError(f"weight must be a (x_dim, z_dim) matrix, got shape {tuple(weight.shape)}")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        if not (isinstance(noise_var, (int, float)) and math.isfinite(noise_var) and noise_var > 0):
            raise ValueError(f"noise_var must be a finite number > 0, got {noise_var!r}")
        self.weight, self.bias, self.noise_var = weight, bias.to(weight.dtype), float(noise_var)
        self.x_dim, self.z_dim = weight.shape
        eye = torch.eye(self.z_dim, dtype=weight.dtype, device=weight.device)
        self.posterior_precision = eye + weight.T @ weight / self.noise_var      # Λ, (d, d)
        self.posterior_cov = torch.linalg.inv(self.posterior_precision)          # C, (d, d)
        self.posterior_cov = 0.5 * (self.posterior_cov + self.posterior_cov.T)  # exactly symmetric

    @classmethod
    def random(cls, x_dim: int, z_dim: int, noise_std: float = 0.5, weight_scale: float = 1.0,
               generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
               ) -> LinearGaussian:
        """A model with W_ij ~ N(0, weight_scale² / z_dim), b_i ~ N(0, 1) and noise variance noise_std².

        The 1/z_dim scaling keeps the signal variance of each x_i at weight_scale² whatever z_dim is.
        """
        check_positive_int(x_dim, "x_dim")
        check_positive_int(z_dim, "z_dim")
        w = torch.randn(x_dim, z_dim, generator=generator, dtype=dtype) * weight_scale / math.sqrt(z_dim)
        b = torch.randn(x_dim, generator=generator, dtype=dtype)
        return cls(w, b, noise_std**2)

    # ------------------------------------------------------------------ the generative model
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Ancestral sampling: z ~ p(z), then x ~ p(x|z). Returns (z (n, d), x (n, D))."""
        check_positive_int(n, "n")
        opts = {"generator": generator, "dtype": self.weight.dtype, "device": self.weight.device}
        z = torch.randn(n, self.z_dim, **opts)
        x = self.mean_x(z) + math.sqrt(self.noise_var) * torch.randn(n, self.x_dim, **opts)
        return z, x

    def mean_x(self, z: Tensor) -> Tensor:
        """E[x|z] = W z + b: (..., d) -> (..., D)."""
        return z @ self.weight.T + self.bias

    def _check_x(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.x_dim:
            raise ValueError(f"x must have shape (batch, {self.x_dim}), got {tuple(x.shape)}")
        return x

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) = log N(x; W z + b, s² I), summed over the D coordinates.

        x: (batch, D); z: (..., batch, d). Returns (..., batch), in nats.
        """
        self._check_x(x)
        if z.shape[-1] != self.z_dim:
            raise ValueError(f"z must have last dimension {self.z_dim}, got shape {tuple(z.shape)}")
        return gaussian_log_prob(x, self.mean_x(z), math.log(self.noise_var))

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, z) = log p(x|z) + log p(z): (..., batch), in nats."""
        return self.log_likelihood(x, z) + gaussian_log_prob(z)

    # ------------------------------------------------------------------ exact marginal and posterior
    def marginal_cov(self) -> Tensor:
        """Cov[x] = W Wᵀ + s² I, (D, D). (The mean is b.)"""
        eye = torch.eye(self.x_dim, dtype=self.weight.dtype, device=self.weight.device)
        return self.weight @ self.weight.T + self.noise_var * eye

    def _log_normal_x(self, x: Tensor, noise_var: float) -> Tensor:
        """log N(x; b, W Wᵀ + noise_var · I), via a Cholesky factor L of the covariance:
        log det = 2 Σ log L_ii and the Mahalanobis term is ‖L⁻¹(x − b)‖². Returns (batch,)."""
        eye = torch.eye(self.x_dim, dtype=self.weight.dtype, device=self.weight.device)
        chol = torch.linalg.cholesky(self.weight @ self.weight.T + noise_var * eye)
        white = torch.linalg.solve_triangular(chol, (x - self.bias).T, upper=False)   # (D, batch)
        log_det = 2.0 * torch.log(torch.diagonal(chol)).sum()
        return -0.5 * (self.x_dim * LOG_2PI + log_det + (white**2).sum(0))

    def log_marginal(self, x: Tensor) -> Tensor:
        """The exact evidence log p(x) = log N(x; b, W Wᵀ + s² I): (batch,), in nats."""
        return self._log_normal_x(self._check_x(x), self.noise_var)

    def prior_sampling_log_moment_ratio(self, x: Tensor) -> Tensor:
        """log( E_{p(z)}[p(x|z)²] / p(x)² ) = log(1 + relative variance of p(x|z) under the prior).

        This is what makes "naive" Monte Carlo, p(x) ≈ (1/S) Σ_s p(x|z_s) with z_s ~ p(z), fail: its
        relative standard error is sqrt(expm1(ratio) / S). Closed form: a squared Gaussian density is a
        Gaussian with half the variance times a constant, N(x; μ, s² I)² = (4π s²)^(−D/2) N(x; μ, s²/2 I),
        so E_{p(z)}[p(x|z)²] = (4π s²)^(−D/2) N(x; b, W Wᵀ + s²/2 I). Returned in log space, (batch,),
        because the ratio overflows a float for a few dozen dimensions.
        """
        self._check_x(x)
        log_second = (-0.5 * self.x_dim * math.log(4 * math.pi * self.noise_var)
                      + self._log_normal_x(x, self.noise_var / 2))
        return log_second - 2 * self.log_marginal(x)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The exact posterior p(z|x) = N(m(x), C): returns (m (batch, d), C (d, d)).

        C = (I + WᵀW / s²)⁻¹ is the same for every x; m(x) = C Wᵀ (x − b) / s².
        """
        self._check_x(x)
        mean = (x - self.bias) @ self.weight @ self.posterior_cov / self.noise_var
        return mean, self.posterior_cov

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The best diagonal Gaussian q(z|x) = N(μ, diag σ²): argmin over such q of KL(q ‖ p(z|x)).

        μ is the posterior mean m(x) and σ_j² = 1 / Λ_jj (one over the diagonal of the posterior
        precision), which is ≤ C_jj. Returns (mu (batch, d), logvar (batch, d)), like a VAE encoder.
        """
        mean, _ = self.posterior(x)
        logvar = -torch.log(torch.diagonal(self.posterior_precision))
        return mean, logvar.expand_as(mean)

    # ------------------------------------------------------------------ closed-form ELBO and KL
    def expected_log_likelihood(self, x: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
        """E_{q}[log p(x|z)] for q = N(mu_q, diag exp(logvar_q)), in closed form: (batch,), nats.

        E‖x − b − W z‖² = ‖x − b − W μ‖² + Σ_j σ_j² ‖W_{:,j}‖² (the mean of a square is the square of
        the mean plus the variance), so the expectation needs no sampling.
        """
        self._check_x(x)
        resid = ((x - self.mean_x(mu_q)) ** 2).sum(-1)
        spread = (torch.exp(logvar_q) * (self.weight**2).sum(0)).sum(-1)
        return -0.5 * (self.x_dim * (LOG_2PI + math.log(self.noise_var)) + (resid + spread) / self.noise_var)

    def elbo(self, x: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
        """The exact ELBO of q = N(mu_q, diag exp(logvar_q)): E_q[log p(x|z)] − KL(q ‖ p(z)).

        x: (batch, D); mu_q, logvar_q: (batch, d) (or broadcastable). Returns (batch,), in nats.
        """
        return self.expected_log_likelihood(x, mu_q, logvar_q) - gaussian_kl(mu_q, logvar_q)

    def kl_to_posterior(self, x: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
        """KL( N(mu_q, diag exp(logvar_q)) ‖ p(z|x) ) in closed form: (batch,), in nats.

        ½ [ tr(Λ Σ_q) + (m − μ)ᵀ Λ (m − μ) − d − log det Λ − log det Σ_q ], with Λ the posterior
        precision and m(x) the posterior mean.
        """
        mean, _ = self.posterior(x)
        prec = self.posterior_precision
        trace = (torch.diagonal(prec) * torch.exp(logvar_q)).sum(-1)
        diff = mean - mu_q
        maha = ((diff @ prec) * diff).sum(-1)
        log_det_prec = torch.linalg.slogdet(prec)[1]
        return 0.5 * (trace + maha - self.z_dim - log_det_prec - logvar_q.sum(-1))


__all__ = ["LinearGaussian"]
