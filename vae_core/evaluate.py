"""Evaluation of a trained VAE: test ELBO, importance-weighted log-likelihood (with its between-example
and Monte-Carlo standard errors), active units, KL per dim, and for 1- or 2-D latent spaces the exact
log p(x), ELBO and both KLs between q(z|x) and the posterior by quadrature.

Units: nats per example (log-likelihoods, ELBO, KL), summed over pixels / latent dimensions.
Everything runs under ``torch.no_grad()``, in batches, on the model's device, and is deterministic
given ``seed`` (a private ``torch.Generator``; the global RNG is neither used nor changed).

Inputs ``x`` are images as :func:`vae_core.train.prepare_data` accepts them: uint8 (N, 28, 28) /
(N, 784) (divided by 255) or float (N, x_dim) in [0, 1]. Binarize them first (e.g.
``vae_core.data.static_binarize``) to evaluate a *likelihood*: on grey levels the Bernoulli
"log-likelihood" is not one (chapter 6).

Used by: chapter 6 (ELBO vs IWAE, active units), chapter 7 (posterior collapse, rate and
distortion), chapters 4-5 (test ELBO, most informative dimensions), benchmarks (IWAE k = 5000
time and memory).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

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


LogWeigher = Callable[[Tensor], Callable[[Tensor], Tensor]]
"""Given a batch of examples xb (batch, x_dim): a function from noise ε (chunk, batch, z_dim) to the
importance log-weights log w = log p(xb, z) − log q(z|xb) of the codes z that ε makes, (chunk, batch)."""


def _vae_log_weigher(model: nn.Module) -> LogWeigher:
    """The log-weights of a Gaussian-encoder VAE with a standard normal prior: each batch is encoded
    once, z = μ + σ·ε."""
    def for_batch(xb: Tensor) -> Callable[[Tensor], Tensor]:
        mu, logvar = model.encode(xb)
        std = torch.exp(0.5 * logvar)

        def log_w(eps: Tensor) -> Tensor:
            z = mu + std * eps  # (chunk, batch, z_dim)
            return model.log_likelihood(xb, z) + gaussian_log_prob(z) - gaussian_log_prob(z, mu, logvar)

        return log_w

    return for_batch


def iwae_log_weight_sums(x: Tensor, ks: Sequence[int], weigher: LogWeigher, z_dim: int,
                         dtype: torch.dtype, batch_size: int, chunk_size: int, seed: int
                         ) -> dict[int, tuple[Tensor, Tensor]]:
    """The IWAE loop shared by every model: for each k in ``ks``, logsumexp_i log w_i and
    logsumexp_i 2 log w_i over the first k of the max(ks) weights of each example, (N,) and (N,).

    x (N, x_dim) goes through in batches of ``batch_size``; each batch draws its max(ks) noise vectors
    ε (max(ks), batch, z_dim) at once from one generator seeded with ``seed`` (so the noise does not
    depend on ``chunk_size``) and ``weigher`` turns them into log-weights ``chunk_size`` samples at a
    time. One set of samples serves every k (nested). Used by :func:`iwae_estimates` and
    :func:`vae_core.gap.iwae_estimate` (any posterior and prior)."""
    for k in ks:
        check_positive_int(k, "k")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(chunk_size, "chunk_size")
    k_max = max(ks)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    sums: dict[int, tuple[list[Tensor], list[Tensor]]] = {k: ([], []) for k in ks}
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        log_w_of = weigher(xb)
        eps = torch.randn((k_max, len(xb), z_dim), generator=generator, device=x.device, dtype=dtype)
        log_w = torch.cat([log_w_of(eps[j:j + chunk_size]) for j in range(0, k_max, chunk_size)])
        for k, (s, s_sq) in sums.items():
            s.append(torch.logsumexp(log_w[:k], dim=0))
            s_sq.append(torch.logsumexp(2 * log_w[:k].double(), dim=0))
    return {k: (torch.cat(s), torch.cat(s_sq)) for k, (s, s_sq) in sums.items()}


def _iwae_log_weight_sums(model: nn.Module, x: Tensor, ks: Sequence[int], batch_size: int,
                          chunk_size: int, seed: int) -> dict[int, tuple[Tensor, Tensor]]:
    """:func:`iwae_log_weight_sums` for the book's VAE (``model.encode``, standard normal prior)."""
    dtype = next(model.parameters()).dtype
    return iwae_log_weight_sums(x, ks, _vae_log_weigher(model), model.z_dim, dtype, batch_size,
                                chunk_size, seed)


@torch.no_grad()
def iwae_log_likelihood(model: nn.Module, x: Tensor | np.ndarray, k: int = 5000, batch_size: int = 100,
                        chunk_size: int = 10, seed: int = 0) -> Tensor:
    """Importance-weighted estimate of log p(x) (the IWAE bound, Burda et al. 2015), per example.

    log p(x) ≈ log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), i = 1..k; a lower bound in
    expectation that increases with k towards log p(x) (k = 1 is the Monte-Carlo ELBO).

    x: (N, x_dim) in [0, 1]. Examples go through in batches of ``batch_size``; for each batch the k
    noise vectors ε (k, batch, z_dim) are drawn at once (small: no pixels) and decoded in chunks of
    ``chunk_size`` samples, so peak memory is O(chunk_size · batch_size · x_dim) whatever k is. The
    noise does not depend on ``chunk_size``: results for different chunk sizes agree up to float
    rounding. The default, 10 samples × 100 examples = 1,000 codes per decoder call, keeps each
    temporary near 3 MB and the peak memory at tens of MB. Larger chunks are no faster on a CPU, and
    with glibc's default malloc, which hands large freed blocks back to the kernel, their tensors are
    page-faulted in again at every chunk: chunks of 500 then took twice as long (the benchmarks page
    measures both; ``make`` sets ``GLIBC_TUNABLES`` so freed memory stays in the process). On a GPU,
    larger chunks (hundreds) keep it busy. Deterministic given ``seed``. Returns (N,) in nats.

    Used by: chapter 6 (the 2-D model, k = 1 … 1000), benchmarks (evaluation speed and memory).
    """
    sums, _ = _iwae_log_weight_sums(model, _prepare(model, x), [k], batch_size, chunk_size, seed)[k]
    return sums - math.log(k)


class MeanEstimate(NamedTuple):
    """A mean over examples with its two standard errors, in the units of ``values`` (nats).

    mean: the mean of ``values``. se_between: the spread between examples, std(values)/√N (ddof 1):
    how much the mean would move on another sample of N examples from the same distribution.
    se_mc: the Monte-Carlo noise of the mean on *these* examples, √(Σ_n mc_var_n)/N: how much it
    would move with other random numbers. values (N,) and mc_var (N,): per example.
    """

    mean: float
    se_between: float
    se_mc: float
    values: Tensor
    mc_var: Tensor


def mean_with_errors(values: Tensor, mc_var: Tensor | None = None) -> MeanEstimate:
    """Mean of per-example values (N,) with its between-example and Monte-Carlo standard errors.

    values: (N,), N ≥ 2, e.g. log-likelihoods in nats. mc_var: (N,) the Monte-Carlo variance of each
    value (the examples' estimates are independent given the data); None → se_mc = nan.
    se_between = std(values, ddof=1)/√N; se_mc = √(Σ mc_var)/N.

    Used by: chapter 6 (the test log-likelihood and its two error bars), :func:`iwae_estimate`.
    """
    values = torch.as_tensor(values).detach()
    if values.dim() != 1 or len(values) < 2:
        raise ValueError(f"values must have shape (N,) with N >= 2, got {tuple(values.shape)}")
    n = len(values)
    v = values.double()
    if mc_var is None:
        mc_var = torch.full_like(v, math.nan)
    mc_var = torch.as_tensor(mc_var).detach().double()
    if mc_var.shape != v.shape:
        raise ValueError(f"mc_var must have the shape of values {tuple(v.shape)}, got {tuple(mc_var.shape)}")
    return MeanEstimate(v.mean().item(), (v.std(correction=1) / math.sqrt(n)).item(),
                        (mc_var.sum().sqrt() / n).item(), values, mc_var)


@torch.no_grad()
def iwae_estimate(model: nn.Module, x: Tensor | np.ndarray, k: int = 5000, batch_size: int = 100,
                  chunk_size: int = 10, seed: int = 0) -> MeanEstimate:
    """The IWAE log-likelihood of :func:`iwae_log_likelihood`, its mean and both standard errors.

    values: exactly ``iwae_log_likelihood(model, x, k, batch_size, chunk_size, seed)`` (N,) in nats.
    mc_var: the delta-method variance of each log-estimate from its own k weights,
    Var[log ŵ] ≈ s²_w / (k ŵ²) = (k Σ_i w̃_i² − 1)/(k − 1), with ŵ the mean weight, s²_w their sample
    variance and w̃_i = w_i / Σ_j w_j the normalised weights (Σ w̃² = 1/ESS, the inverse effective
    sample size). It needs k ≥ 2 (nan at k = 1) and, like any estimate from the weights themselves,
    cannot see mass that no sample reached: it measures the noise of the estimate, not its bias below
    log p(x). The mean's Monte-Carlo standard error is √(Σ mc_var)/N; the between-example one
    std/√N (see :class:`MeanEstimate`).

    Used by: chapter 6 (an independent run at k = 100, to check the Monte-Carlo error bar).
    """
    sums = _iwae_log_weight_sums(model, _prepare(model, x), [k], batch_size, chunk_size, seed)
    return iwae_with_errors(*sums[k], k)


def iwae_with_errors(sums: Tensor, sums_sq: Tensor, k: int) -> MeanEstimate:
    """:class:`MeanEstimate` of log (1/k) Σ w from the per-example logsumexp of log w and 2 log w."""
    values = sums - math.log(k)
    if k == 1:
        mc_var = torch.full_like(sums, math.nan, dtype=torch.float64)
    else:
        inv_ess = torch.exp(sums_sq - 2 * sums.double())  # Σ w̃², in [1/k, 1]
        mc_var = ((k * inv_ess - 1) / (k - 1)).clamp_min(0.0)
    return mean_with_errors(values, mc_var)


@torch.no_grad()
def iwae_estimates(model: nn.Module, x: Tensor | np.ndarray, ks: Sequence[int], batch_size: int = 100,
                   chunk_size: int = 10, seed: int = 0) -> dict[int, MeanEstimate]:
    """:func:`iwae_estimate` for several k at once, from one set of max(ks) samples per example.

    The estimate for each k uses the *first* k samples of the max(ks) drawn for each example (nested
    samples), so the whole set costs what the largest k alone costs. Each estimate is an unbiased
    draw of its L_k, with the same error bars as :func:`iwae_estimate`; the estimates for different k
    share samples, so the difference between two of them is the effect of the added samples on the
    same draws (its spread between examples is still a valid standard error for a mean over
    independent examples). The noise is not that of ``iwae_estimate(..., k, seed)``: each batch draws
    max(ks) samples. ks: positive ints. Returns {k: MeanEstimate} (values (N,) in nats).

    Used by: chapter 6 (k = 1 … 5000 on the 1,000 test digits).
    """
    ks = sorted(set(ks))
    if not ks:
        raise ValueError("ks must name at least one number of samples")
    sums = _iwae_log_weight_sums(model, _prepare(model, x), ks, batch_size, chunk_size, seed)
    return {k: iwae_with_errors(*sums[k], k) for k in ks}


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

    Used by: chapters 6 (active units) and 7 (posterior collapse).
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

    Used by: chapters 5 (traversals of the top dimensions), 6 and 7 (KL per dimension, free bits).
    """
    check_positive_int(batch_size, "batch_size")
    x = _prepare(model, x)
    mu, logvar = _encode_all(model, x, batch_size)
    return gaussian_kl(mu.unsqueeze(-1), logvar.unsqueeze(-1)).double().mean(0).to(mu.dtype)


def _grid_log_joint(model: nn.Module, x: Tensor | np.ndarray, limit: float, n: int, chunk_size: int):
    """Checks the arguments; returns (x float64, h, the axis (n,), d, an iterator of (the cells' grid
    indices g (G,), z (G, d), log p(x, z) (N, G))). The grid is cartesian_prod(axis, axis) in 2-D."""
    check_positive_int(n, "n")
    check_positive_int(chunk_size, "chunk_size")
    limit = float(limit)
    if not (0 < limit < math.inf):
        raise ValueError(f"limit must be a finite number > 0, got {limit!r}")
    z_dim = getattr(model, "z_dim", None)
    if z_dim not in (1, 2):
        raise ValueError(f"grid_log_likelihood needs a model with z_dim 1 or 2 (an n^d grid), got {z_dim}")
    likelihood = getattr(model, "likelihood", "bernoulli")
    x = _prepare(model, x).double()
    h = 2.0 * limit / n
    axis = torch.linspace(-limit + h / 2, limit - h / 2, n, dtype=torch.float64, device=x.device)
    grid = axis[:, None] if z_dim == 1 else torch.cartesian_prod(axis, axis)  # (n^d, d)
    dtype = next(model.parameters()).dtype
    x_sq = (x * x).sum(-1)

    def chunks():
        for start in range(0, len(grid), chunk_size):
            z = grid[start:start + chunk_size]
            g = torch.arange(start, start + len(z), device=x.device)
            out = model.decode(z.to(dtype)).double()  # (G, x_dim): logits or means
            if likelihood == "bernoulli":
                log_lik = x @ out.T - torch.nn.functional.softplus(out).sum(-1)  # (N, G)
            else:
                log_s2 = model.log_sigma2_x.double()
                sq = x_sq[:, None] - 2 * x @ out.T + (out * out).sum(-1)
                log_lik = -0.5 * (sq / log_s2.exp() + x.shape[1] * (math.log(2 * math.pi) + log_s2))
            log_prior = -0.5 * (z * z).sum(-1) - 0.5 * z_dim * math.log(2 * math.pi)
            yield g, z, log_lik + log_prior

    return x, h, axis, z_dim, chunks()


@torch.no_grad()
def grid_log_likelihood(model: nn.Module, x: Tensor | np.ndarray, limit: float = 5.0, n: int = 400,
                        chunk_size: int = 2048) -> Tensor:
    """log p(x) = log ∫ p(x|z) N(z; 0, I) dz by numerical integration, for a 1- or 2-D latent space.

    The exact marginal likelihood, up to a quadrature error that can be made negligible: the midpoint
    rule on the n^d grid of cell centres z_g over [−limit, limit]^d (spacing h = 2·limit/n),
    log p(x) ≈ logsumexp_g [log p(x|z_g) + log N(z_g; 0, I)] + d·log h. For a smooth integrand the rule
    is very accurate once h is below the width of the posterior p(z|x) (for a Gaussian bump of width σ the
    relative error is about 2·exp(−2π²σ²/h²)); the prior mass outside the box, 1 − (1 − 2Φ(−limit))^d,
    is 6e−7 per dimension at limit = 5. Check convergence by comparing two values of n.

    The decoder runs once per grid point (not per example): with Bernoulli logits l_g, log p(x|z_g) =
    x·l_g − Σ_i softplus(l_g,i) for every x at once is a matrix product (Gaussian means likewise).
    model: a :class:`vae_core.models.VAE`-like model with ``z_dim`` 1 or 2, ``decode`` and ``likelihood``.
    x: (N, x_dim) in [0, 1] (binary for a likelihood). Returns (N,) in nats, float64 accumulation.

    Used by: chapter 6 (the exact gap of the ELBO and IWAE on the 2-D model), appendix
    "misconceptions" (log p(x|z = μ) is not a bound).
    """
    x, h, _, z_dim, chunks = _grid_log_joint(model, x, limit, n, chunk_size)
    total = torch.full((len(x),), -math.inf, dtype=torch.float64, device=x.device)
    for _, _, log_joint in chunks:
        total = torch.logaddexp(total, torch.logsumexp(log_joint, dim=-1))
    return total + z_dim * math.log(h)


class _WeightedMean:
    """Running Σ_g e^{a_g} f_g / Σ_g e^{a_g} over chunks of g, stable for any scale of a: (N,)."""

    def __init__(self, n: int, device: torch.device):
        self.top = torch.full((n,), -math.inf, dtype=torch.float64, device=device)
        self.mass = torch.zeros(n, dtype=torch.float64, device=device)
        self.total = torch.zeros(n, dtype=torch.float64, device=device)

    def add(self, a: Tensor, f: Tensor) -> None:
        top = torch.maximum(self.top, a.max(-1).values)
        scale = torch.exp(self.top - top)
        w = torch.exp(a - top[:, None])
        self.mass = self.mass * scale + w.sum(-1)
        self.total = self.total * scale + (w * f).sum(-1)
        self.top = top

    def log_mass(self) -> Tensor:
        return self.top + self.mass.log()

    def mean(self) -> Tensor:
        return self.total / self.mass


class GridPosterior(NamedTuple):
    """Exact per-example quantities of a 1- or 2-D latent model, by quadrature (nats, (N,) each).

    log_px: log p(x). elbo: E_q[log p(x, z)] + H(q), the ELBO with its expectation integrated.
    kl_q_p: KL(q(z|x) ‖ p(z|x)) = log_px − elbo, the ELBO's gap. kl_p_q: KL(p(z|x) ‖ q(z|x)), the
    divergence that sets the number of samples importance sampling from q needs (≈ exp of it).
    """

    log_px: Tensor
    elbo: Tensor
    kl_q_p: Tensor
    kl_p_q: Tensor


@torch.no_grad()
def grid_posterior(model: nn.Module, x: Tensor | np.ndarray, limit: float = 5.0, n: int = 400,
                   chunk_size: int = 2048, batch_size: int = 1000) -> GridPosterior:
    """log p(x), the exact ELBO and both KLs between q(z|x) and the true posterior, by quadrature.

    On the grid of :func:`grid_log_likelihood` (same ``limit``, ``n``, and the same log p(x)), the
    true posterior p(z_g|x) ∝ p(x, z_g) and the encoder's q(z_g|x) = N(z_g; μ(x), diag σ²(x)) are
    weights on the cell centres; both are normalised over the grid, so
    KL(p(z|x) ‖ q) = Σ_g p_g [log p(x, z_g) − log p(x) − log q(z_g|x)] and
    ELBO = Σ_g q_g log p(x, z_g) + H(q) with the analytic entropy H(q) = Σ_j ½ log(2πe σ_j²);
    KL(q ‖ p(z|x)) = log p(x) − ELBO. Accurate when h = 2·limit/n is well below the widths of both
    p(z|x) and q(z|x) (check with two values of n) and both lie inside the box.

    x: (N, x_dim) in [0, 1] (binary for a likelihood), processed in batches of ``batch_size``.
    Returns :class:`GridPosterior` of (N,) float64 tensors, in nats.

    Used by: chapter 6 (which KL sets the number of importance samples, digit by digit).
    """
    check_positive_int(batch_size, "batch_size")
    x = _prepare(model, x)
    parts = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        mu, logvar = (t.double() for t in model.encode(xb))
        xb, h, axis, z_dim, chunks = _grid_log_joint(model, xb, limit, n, chunk_size)
        under_p = _WeightedMean(len(xb), xb.device)  # weights p(x, z_g): the posterior
        under_q = _WeightedMean(len(xb), xb.device)  # weights q(z_g|x)
        # q is diagonal and the grid a product of n-point axes: log q(z_g|x) is a sum over the d
        # coordinates of per-axis terms, each computed once on the axis (N, n) and gathered per cell
        per_axis = [gaussian_log_prob(axis[:, None, None], mu[:, j:j + 1], logvar[:, j:j + 1]).T
                    for j in range(z_dim)]  # d tables (N, n)
        for g, _, log_joint in chunks:
            cols = (g,) if z_dim == 1 else (g // n, g % n)  # cartesian_prod order: last axis fastest
            log_q = sum(t[:, c] for t, c in zip(per_axis, cols, strict=True))  # (N, G)
            under_p.add(log_joint, log_joint - log_q)
            under_q.add(log_q, log_joint)
        log_px = under_p.log_mass() + z_dim * math.log(h)
        entropy = 0.5 * (math.log(2 * math.pi) + 1 + logvar).sum(-1)
        elbo_x = under_q.mean() + entropy
        parts.append((log_px, elbo_x, log_px - elbo_x, under_p.mean() - log_px))
    return GridPosterior(*(torch.cat(p) for p in zip(*parts, strict=True)))


__all__ = ["test_elbo", "iwae_log_likelihood", "iwae_estimate", "iwae_estimates", "MeanEstimate",
           "mean_with_errors", "active_units", "kl_per_dim", "grid_log_likelihood", "grid_posterior",
           "GridPosterior"]
