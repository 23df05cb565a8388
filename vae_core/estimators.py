r"""Gradient estimators for ∇_θ E_{p_θ(x)}[f(x)]: the score function vs the pathwise estimator.

The three cases of a gradient of an expectation (chapter 3):

1. **Only f depends on θ** (the distribution does not): ∇_θ E_p[f_θ(x)] = E_p[∇_θ f_θ(x)] — move the
   gradient inside and average; nothing special.
2. **The distribution depends on θ, and we can only evaluate f** (no ∇f: f is a black box, discrete, or
   a simulator): the *score-function* (REINFORCE, likelihood-ratio) estimator, from
   ∇_θ p_θ(x) = p_θ(x) ∇_θ log p_θ(x):

       ∇_θ E_{p_θ}[f(x)] = ∫ f(x) ∇_θ p_θ(x) dx = E_{p_θ}[ f(x) ∇_θ log p_θ(x) ].

   For x ~ N(μ, σ²), writing x = μ + σ ε, the score ∇ log p is
   ∂/∂μ log p = (x − μ)/σ² = ε/σ   and   ∂/∂σ log p = ((x − μ)² − σ²)/σ³ = (ε² − 1)/σ.
   Because E[score] = 0, any b that does not depend on this sample can be subtracted from f
   ("baseline") without bias: E[(f(x) − b) ∇ log p] = E[f(x) ∇ log p].
3. **The distribution depends on θ and x can be written as a differentiable function of θ and
   parameter-free noise** (reparameterization): x = μ + σ ε, ε ~ N(0, 1), so

       ∇_{μ,σ} E[f(x)] = E_ε[ ∇_{μ,σ} f(μ + σ ε) ] = E_ε[ (f'(x), f'(x) ε) ],

   the *pathwise* estimator. It needs f differentiable; it is usually (not always) far less noisy.

Every estimator here returns **per-sample single-sample estimates**, shape (n, 2) with columns
(∂/∂μ, ∂/∂σ), so that their mean and their *single-sample variance* can both be measured;
averaging n of them divides the variance by n. Closed-form true gradients are given for three test
functions, and closed-form single-sample variances for f(x) = (x − k)²; tests check the estimators
against those and against quadrature.

:func:`quadrature_variances` gives the true gradient and both single-sample variances for any
differentiable f by deterministic quadrature (no sampling), the reference the Monte-Carlo numbers are
checked against.

:func:`encoder_gradient_variance` measures the same comparison on the encoder of a real VAE, and
:func:`score_function_elbo_loss` is a training loss for :func:`vae_core.train.fit` whose encoder
gradient is the score-function one (optionally with a leave-one-out baseline), to compare training
curves.

With the same ``generator`` seed, :func:`score_function_grad` and :func:`pathwise_grad` draw the same
ε, so they can be compared sample by sample (common random numbers).

Used by: chapter 3 (``notebooks/03_gradient_estimators.ipynb``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .checks import check_positive_int
from .distributions import gaussian_kl, gaussian_log_prob, reparameterize
from .objectives import KL_MODES, elbo

ESTIMATORS = ("pathwise", "score")


# --------------------------------------------------------------------------------------------------
# Toy problem: x ~ N(mu, sigma^2), gradient of E[f(x)] with respect to (mu, sigma)
# --------------------------------------------------------------------------------------------------

def _check_baseline(baseline: float | str | None, n: int | None) -> float | str | None:
    """Validate a baseline: None, a finite constant, or "mean" (leave-one-out over n ≥ 2 samples).

    Returns None, "mean" or the constant as a float. Shared by the estimator and both variance formulas.
    """
    if baseline is None:
        return None
    if isinstance(baseline, str):
        if baseline != "mean":
            raise ValueError(f"baseline must be None, a float or 'mean', got {baseline!r}")
        if n is None:
            raise ValueError("baseline='mean' needs the number of samples n (>= 2)")
        check_positive_int(n, "n")
        if n < 2:
            raise ValueError(f"baseline='mean' (leave-one-out) needs n >= 2 samples, got n={n}")
        return "mean"
    b = float(baseline)
    if not math.isfinite(b):
        raise ValueError(f"a constant baseline must be finite, got {baseline!r}")
    return b


def _check_gaussian_params(mu: float, sigma: float) -> tuple[float, float]:
    mu, sigma = float(mu), float(sigma)
    if not math.isfinite(mu):
        raise ValueError(f"mu must be a finite number, got {mu!r}")
    if not (sigma > 0.0) or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    return mu, sigma


def _draw_eps(n: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    check_positive_int(n, "n")
    return torch.randn(n, generator=generator, dtype=dtype)


def _evaluate(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    fx = f(x)
    if not isinstance(fx, Tensor) or fx.shape != x.shape:
        got = tuple(fx.shape) if isinstance(fx, Tensor) else type(fx).__name__
        raise ValueError(
            f"f must be vectorised and elementwise: Tensor of shape {tuple(x.shape)} -> Tensor of the "
            f"same shape, got {got}"
        )
    return fx


def score_function_grad(
    f: Callable[[Tensor], Tensor],
    mu: float,
    sigma: float,
    n: int,
    baseline: float | str | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""Score-function (REINFORCE) estimates of ∇_{μ,σ} E_{x~N(μ,σ²)}[f(x)], one per sample.

    Sample i uses x_i = μ + σ ε_i and returns (f(x_i) − b_i) · (ε_i/σ, (ε_i² − 1)/σ): f times the
    score ∇_{μ,σ} log N(x_i; μ, σ²). f is only *evaluated* (no gradient of f is needed or taken).

    Args:
        f: vectorised elementwise function, Tensor (n,) -> Tensor (n,).
        mu, sigma: parameters of the Gaussian (sigma > 0, a standard deviation, not a variance).
        n: number of samples (≥ 1; ≥ 2 for ``baseline="mean"``).
        baseline: what is subtracted from f before multiplying by the score.
            ``None``: b = 0, the plain estimator.
            a float b: a constant. Unbiased for every b (E[score] = 0), but it only lowers the
            variance when b is near the f-values that matter; a far-off b *raises* it.
            ``"mean"``: leave-one-out mean, b_i = (Σ_{j≠i} f(x_j)) / (n − 1). b_i is independent of
            x_i, so E[b_i · score_i] = E[b_i] E[score_i] = 0 and every row stays unbiased; the
            plain batch mean (including f(x_i) itself) would bias it by −g/n.
            The rows are then weakly correlated (covariance g²/(n−1)² per component, g the true
            gradient) instead of independent.
        generator: torch.Generator for reproducible draws (same seed ⇒ same ε as :func:`pathwise_grad`).
        dtype: floating dtype of the draws and the result.

    Returns:
        (n, 2): column 0 estimates ∂/∂μ, column 1 estimates ∂/∂σ, in units of f per unit of μ, σ.
        Their mean is the n-sample estimate; their variance the single-sample variance.
    """
    mu, sigma = _check_gaussian_params(mu, sigma)
    eps = _draw_eps(n, generator, dtype)
    x = mu + sigma * eps
    with torch.no_grad():
        fx = _evaluate(f, x).to(dtype)
    baseline = _check_baseline(baseline, n)
    if baseline is None:
        centred = fx
    elif baseline == "mean":
        centred = fx - (fx.sum() - fx) / (n - 1)
    else:
        centred = fx - baseline
    score = torch.stack([eps / sigma, (eps**2 - 1.0) / sigma], dim=1)  # (n, 2)
    return centred[:, None] * score


def pathwise_grad(
    f: Callable[[Tensor], Tensor],
    mu: float,
    sigma: float,
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""Pathwise (reparameterization) estimates of ∇_{μ,σ} E_{x~N(μ,σ²)}[f(x)], one per sample.

    Sample i writes x_i = μ + σ ε_i and differentiates f(x_i) through that path with autograd:
    (∂f(x_i)/∂μ, ∂f(x_i)/∂σ) = (f'(x_i), f'(x_i) ε_i).

    Args:
        f: vectorised elementwise function built from differentiable torch ops,
            Tensor (n,) -> Tensor (n,); f(x)[i] must depend on x[i] only.
        mu, sigma: parameters of the Gaussian (sigma > 0).
        n: number of samples (≥ 1).
        generator: torch.Generator (same seed ⇒ same ε as :func:`score_function_grad`).
        dtype: floating dtype of the draws and the result.

    Returns:
        (n, 2): column 0 estimates ∂/∂μ, column 1 estimates ∂/∂σ.
    """
    mu, sigma = _check_gaussian_params(mu, sigma)
    eps = _draw_eps(n, generator, dtype)
    # One (mu, sigma) leaf per sample: since f is elementwise, the gradient of the sum with respect to
    # mu_i is exactly the gradient of f(x_i), so one backward pass gives all n single-sample estimates.
    mu_t = torch.full((n,), mu, dtype=dtype, requires_grad=True)
    sigma_t = torch.full((n,), sigma, dtype=dtype, requires_grad=True)
    with torch.enable_grad():
        x = mu_t + sigma_t * eps
        fx = _evaluate(f, x)
        if not fx.requires_grad:
            raise ValueError("f must be differentiable with torch operations for the pathwise estimator")
        d_mu, d_sigma = torch.autograd.grad(fx.sum(), (mu_t, sigma_t), allow_unused=True)
    d_mu = torch.zeros_like(mu_t) if d_mu is None else d_mu
    d_sigma = torch.zeros_like(sigma_t) if d_sigma is None else d_sigma
    return torch.stack([d_mu, d_sigma], dim=1).detach()


class EstimatorStats(NamedTuple):
    """Sample mean and unbiased sample variance of per-sample estimates, over dim 0."""

    mean: Tensor
    variance: Tensor


def estimator_stats(samples: Tensor) -> EstimatorStats:
    """Mean and single-sample variance of estimates ``samples``: (n, ...) -> two tensors of shape (...).

    The variance is the unbiased (n − 1) sample variance; the standard error of the mean is
    sqrt(variance / n).

    Used by: chapter 3.
    """
    if samples.dim() < 1 or samples.shape[0] < 2:
        raise ValueError(f"need at least 2 samples along dim 0, got shape {tuple(samples.shape)}")
    return EstimatorStats(samples.mean(0), samples.var(0, unbiased=True))


# ----------------------------------------- closed forms -------------------------------------------

def quadratic_true_grad(mu: float, sigma: float, k: float) -> tuple[float, float]:
    r"""True gradient of E[(x − k)²], x ~ N(μ, σ²): E = (μ − k)² + σ², so (2(μ − k), 2σ).

    Returns (∂/∂μ, ∂/∂σ). Used by: chapter 3.
    """
    mu, sigma = _check_gaussian_params(mu, sigma)
    return 2.0 * (mu - float(k)), 2.0 * sigma


class QuadraticVariances(NamedTuple):
    """Single-sample variances of the two estimators of ∇_{μ,σ} E[(x − k)²] (units: (f per μ)²)."""

    score_mu: float
    score_sigma: float
    pathwise_mu: float
    pathwise_sigma: float


def quadratic_variances(
    mu: float,
    sigma: float,
    k: float,
    baseline: float | str | None = None,
    n: int | None = None,
) -> QuadraticVariances:
    r"""Closed-form single-sample variances of both estimators for f(x) = (x − k)², x ~ N(μ, σ²).

    Derivation (by hand, from the standard-normal moments E ε^{2m} = 1, 3, 15, 105 for m = 1..4 and
    E ε^{odd} = 0). Write a = μ − k and x − k = a + σ ε, so f = (a + σ ε)²; the true gradient is
    g = (2a, 2σ).

    *Pathwise*: f'(x) = 2(a + σ ε).
      ∂μ: 2(a + σε), variance 4σ².
      ∂σ: f'(x) ε = 2aε + 2σε²; E[(·)²] = 4a² + 12σ², so variance 4a² + 8σ².

    *Score function* with a constant baseline b, c = a² − b, so f − b = c + 2aσε + σ²ε²:
      ∂μ: (f − b) ε/σ = (cε + 2aσε² + σ²ε³)/σ. Squaring, the odd powers vanish:
          E[(·)²] = (c² + 12a²σ² + 15σ⁴ + 6cσ²)/σ², so variance = c²/σ² + 6c + 8a² + 15σ².
      ∂σ: (f − b)(ε² − 1)/σ. (f − b)² has even part c² + (4a² + 2c)σ² ε² + σ⁴ ε⁴, and
          E[ε^{2m}(ε² − 1)²] = 2, 10, 78 for m = 0, 1, 2, so
          E[(·)²] = (2c² + 10(4a² + 2c)σ² + 78σ⁴)/σ², variance = 2c²/σ² + 20c + 40a² + 74σ².
      With no baseline (b = 0, c = a²): Var ∂μ = a⁴/σ² + 14a² + 15σ², Var ∂σ = 2a⁴/σ² + 60a² + 74σ².
      Check at μ = σ = k = 1 (a = 0): score 15 and 74 vs pathwise 4 and 8.
      The best constant baselines are b = a² + 3σ² (for ∂μ) and b = a² + 5σ² (for ∂σ); b = E f = a² + σ²
      gives 8a² + 10σ² and 40a² + 56σ².

    *Leave-one-out mean baseline* (``baseline="mean"``, needs ``n``): b_i is independent of x_i with
    mean m = E f and variance Var f / (n − 1), where Var f = 4a²σ² + 2σ⁴. Expanding (f − m + m − b_i)²
    score², the cross term vanishes (b_i independent of x_i, E[b_i − m] = 0), so the variance is the one
    for b = m plus Var f/(n − 1) · E[score²], with E[score_μ²] = 1/σ² and E[score_σ²] = 2/σ².

    Args:
        mu, sigma, k: the problem (sigma > 0).
        baseline: None, a float, or "mean" (then ``n`` ≥ 2 is required); affects the score function only.
        n: number of samples sharing a leave-one-out baseline.

    Returns:
        :class:`QuadraticVariances` (score_mu, score_sigma, pathwise_mu, pathwise_sigma).

    Used by: chapter 3.
    """
    mu, sigma = _check_gaussian_params(mu, sigma)
    a = mu - float(k)
    s2 = sigma**2
    extra_mu = extra_sigma = 0.0
    baseline = _check_baseline(baseline, n)
    if baseline is None:
        c = a**2
    elif baseline == "mean":
        c = -s2  # b = E f = a² + σ² on average; its spread is accounted for below
        var_f = 4 * a**2 * s2 + 2 * s2**2
        extra_mu = var_f / (n - 1) / s2
        extra_sigma = var_f / (n - 1) * 2.0 / s2
    else:
        c = a**2 - float(baseline)
    score_mu = c**2 / s2 + 6 * c + 8 * a**2 + 15 * s2 + extra_mu
    score_sigma = 2 * c**2 / s2 + 20 * c + 40 * a**2 + 74 * s2 + extra_sigma
    return QuadraticVariances(score_mu, score_sigma, 4 * s2, 4 * a**2 + 8 * s2)


def gaussian_bump_true_grad(mu: float, sigma: float, k: float) -> tuple[float, float]:
    r"""True gradient of E[exp(−k x²)], x ~ N(μ, σ²), k ≥ 0.

    Completing the square, E[exp(−k x²)] = D^{-1/2} exp(−k μ² / D) with D = 1 + 2kσ². Hence
    ∂/∂μ = E · (−2kμ / D) and ∂/∂σ = E · (−2kσ / D + 4k²μ²σ / D²) (using ∂D/∂σ = 4kσ).

    Returns (∂/∂μ, ∂/∂σ). Used by: chapter 3.
    """
    mu, sigma = _check_gaussian_params(mu, sigma)
    k = float(k)
    if not (k >= 0.0) or not math.isfinite(k):
        raise ValueError(f"k must be a finite number >= 0 for exp(-k x^2), got {k!r}")
    d = 1.0 + 2.0 * k * sigma**2
    value = d**-0.5 * math.exp(-k * mu**2 / d)
    return value * (-2.0 * k * mu / d), value * (-2.0 * k * sigma / d + 4.0 * k**2 * mu**2 * sigma / d**2)


def cosine_true_grad(mu: float, sigma: float, k: float) -> tuple[float, float]:
    r"""True gradient of E[cos(k x)], x ~ N(μ, σ²).

    E[cos kx] = Re E[e^{ikx}] = Re e^{ikμ − k²σ²/2} = cos(kμ) e^{−k²σ²/2} (the Gaussian characteristic
    function), so ∂/∂μ = −k sin(kμ) e^{−k²σ²/2} and ∂/∂σ = −k²σ cos(kμ) e^{−k²σ²/2}.
    At large kσ the expectation and its gradient are tiny while the pathwise samples −k sin(kx)·(1, ε)
    have variance ≈ k²/2 (k²/2): the score function, whose samples stay O(1/σ), wins there.

    Returns (∂/∂μ, ∂/∂σ). Used by: chapter 3.
    """
    mu, sigma = _check_gaussian_params(mu, sigma)
    k = float(k)
    damp = math.exp(-0.5 * k**2 * sigma**2)
    return -k * math.sin(k * mu) * damp, -(k**2) * sigma * math.cos(k * mu) * damp


class EstimatorVariances(NamedTuple):
    """True gradient of E_{N(μ,σ²)}[f] and the single-sample variances of both estimators of it.

    grad_mu, grad_sigma: the true ∂/∂μ and ∂/∂σ (units of f per unit of μ, σ);
    score_*, pathwise_*: single-sample variances (squared units). Same field names as
    :class:`QuadraticVariances` for the variances.
    """

    grad_mu: float
    grad_sigma: float
    score_mu: float
    score_sigma: float
    pathwise_mu: float
    pathwise_sigma: float


def quadrature_variances(
    f: Callable[[Tensor], Tensor],
    mu: float,
    sigma: float,
    baseline: float | str | None = None,
    n: int | None = None,
    half_width: float = 12.0,
    n_points: int = 200_001,
) -> EstimatorVariances:
    r"""Exact (to quadrature accuracy) variances of both estimators of ∇_{μ,σ} E_{x~N(μ,σ²)}[f(x)].

    Every quantity is an expectation over ε ~ N(0, 1) of a function of x = μ + σ ε:

    - true gradient g = (E[f'(x)], E[f'(x) ε])  (the pathwise estimator is unbiased);
    - pathwise variances  E[f'(x)²] − g_μ²  and  E[f'(x)² ε²] − g_σ²;
    - score-function variances  E[(f(x) − b)² ε²/σ²] − g_μ²  and  E[(f(x) − b)² (ε² − 1)²/σ²] − g_σ²
      (b = 0 without baseline; the mean of the score is g whatever b is).

    Each expectation ∫ h(ε) φ(ε) dε is computed by composite Simpson's rule on ``n_points`` equally
    spaced points of [−half_width, half_width] (the mass of φ outside ±12 is below 1e-32). f' comes from
    autograd on the grid, so f is given once, as the same torch function the Monte-Carlo estimators
    use. The default grid (spacing 1.2e-4) resolves oscillations such as cos(kx) up to k σ ≈ 1000.

    With ``baseline="mean"`` (leave-one-out mean over ``n`` samples, as :func:`score_function_grad`)
    the score variances are those for b = E f plus Var f / (n − 1) · E[score²], where
    E[score_μ²] = 1/σ² and E[score_σ²] = 2/σ² (derivation in :func:`quadratic_variances`).

    Args:
        f: vectorised elementwise torch function, differentiable (float64 Tensor (m,) -> (m,)).
        mu, sigma: parameters of the Gaussian (sigma > 0).
        baseline: None, a float b, or "mean" (then ``n`` ≥ 2 is required); affects the score function.
        n: samples sharing a leave-one-out baseline.
        half_width, n_points: the ε-grid (n_points odd, ≥ 3).

    Returns:
        :class:`EstimatorVariances`.

    Used by: chapter 3 (variance against k for (x − k)², exp(−k x²), cos(k x)).
    """
    mu, sigma = _check_gaussian_params(mu, sigma)
    check_positive_int(n_points, "n_points", minimum=3)
    if n_points % 2 == 0:
        raise ValueError(f"Simpson's rule needs an odd number of points, got n_points={n_points}")
    if not (half_width > 0) or not math.isfinite(half_width):
        raise ValueError(f"half_width must be a finite number > 0, got {half_width!r}")
    baseline = _check_baseline(baseline, n)

    eps = torch.linspace(-half_width, half_width, n_points, dtype=torch.float64)
    h = 2.0 * half_width / (n_points - 1)
    simpson = torch.ones(n_points, dtype=torch.float64)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    weights = simpson * (h / 3.0) * torch.exp(-0.5 * eps**2) / math.sqrt(2.0 * math.pi)

    def expect(values: Tensor) -> float:
        return float((weights * values).sum())

    x = (mu + sigma * eps).requires_grad_(True)
    with torch.enable_grad():
        fx = _evaluate(f, x)
        if not fx.requires_grad:
            raise ValueError("f must be differentiable with torch operations")
        (fprime,) = torch.autograd.grad(fx.sum(), x)
    fx = fx.detach().to(torch.float64)
    fprime = fprime.detach()
    g_mu, g_sigma = expect(fprime), expect(fprime * eps)
    path_mu = expect(fprime**2) - g_mu**2
    path_sigma = expect(fprime**2 * eps**2) - g_sigma**2

    score_mu2, score_sigma2 = eps**2 / sigma**2, (eps**2 - 1.0) ** 2 / sigma**2
    extra_mu = extra_sigma = 0.0
    if baseline is None:
        b = 0.0
    elif isinstance(baseline, str):
        b = expect(fx)  # E f; the spread of the leave-one-out mean around it is added below
        var_f = expect((fx - b) ** 2)
        extra_mu = var_f / (n - 1) / sigma**2
        extra_sigma = var_f / (n - 1) * 2.0 / sigma**2
    else:
        b = baseline
    centred2 = (fx - b) ** 2
    score_mu = expect(centred2 * score_mu2) - g_mu**2 + extra_mu
    score_sigma = expect(centred2 * score_sigma2) - g_sigma**2 + extra_sigma
    return EstimatorVariances(g_mu, g_sigma, score_mu, score_sigma, path_mu, path_sigma)


# --------------------------------------------------------------------------------------------------
# A real VAE encoder
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GradientStats:
    """Mean and variance over repeats of one parameter tensor's single-sample gradient estimate.

    mean, variance: same shape as the parameter (variance: unbiased, over ``n_repeats``).
    """

    mean: Tensor
    variance: Tensor
    n_repeats: int

    @property
    def standard_error(self) -> Tensor:
        """Standard error of ``mean``, elementwise: sqrt(variance / n_repeats)."""
        return (self.variance / self.n_repeats).sqrt()

    @property
    def mean_variance(self) -> float:
        """Variance averaged over the tensor's elements (one number per tensor, for ratios)."""
        return float(self.variance.mean())


def _encoder_parameters(model: nn.Module, x: Tensor) -> dict[str, nn.Parameter]:
    """The trainable parameters that ``model.encode(x)`` depends on (found by autograd), by name."""
    with torch.enable_grad():
        mu, logvar = model.encode(x)
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(mu.sum() + logvar.sum(), [p for _, p in named], allow_unused=True)
    found = {name: p for (name, p), g in zip(named, grads, strict=True) if g is not None}
    if not found:
        raise ValueError("model.encode(x) depends on no trainable parameter")
    return found


def _single_sample_objective(model: nn.Module, x: Tensor, estimator: str, kl: str,
                             generator: torch.Generator) -> Tensor:
    """A scalar whose gradient w.r.t. the encoder parameters is one single-sample ELBO-gradient estimate."""
    if estimator == "pathwise" and kl == "stl":
        # "sticking the landing": log p(x, z) − log q(z|x) differentiated along the path z(φ, ε)
        # only; log q's own parameters are held fixed (its score term, mean 0, is dropped)
        mu, logvar = model.encode(x)
        z = reparameterize(mu, logvar, 1, generator)  # (1, batch, z_dim), path to phi
        log_q = gaussian_log_prob(z, mu.detach(), logvar.detach())
        return (model.log_likelihood(x, z) + gaussian_log_prob(z) - log_q).mean()
    if estimator == "pathwise":
        return elbo(model, x, n_samples=1, kl=kl, generator=generator).elbo.mean()
    mu, logvar = model.encode(x)
    with torch.no_grad():  # same draw as the pathwise branch, but no gradient path through z
        z = reparameterize(mu, logvar, 1, generator)  # (1, batch, z_dim)
    log_q = gaussian_log_prob(z, mu, logvar)  # (1, batch), depends on phi through mu, logvar
    log_lik = model.log_likelihood(x, z)  # (1, batch), decoder only
    if kl == "analytic":
        reward = log_lik.detach()
        surrogate = reward * log_q - gaussian_kl(mu, logvar)
    else:
        integrand = log_lik + gaussian_log_prob(z) - log_q  # log p(x, z) - log q(z|x); phi only via log_q
        surrogate = integrand.detach() * log_q + integrand
    return surrogate.mean()


def encoder_gradient_variance(
    model: nn.Module,
    x: Tensor,
    estimator: str = "pathwise",
    n_repeats: int = 100,
    kl: str = "analytic",
    seed: int = 0,
) -> dict[str, GradientStats]:
    r"""Mean and variance, over repeats, of a single-sample estimate of ∇_φ ELBO for each encoder tensor.

    What is estimated: the gradient, with respect to the encoder parameters φ (every parameter that
    ``model.encode`` depends on: for :class:`~vae_core.models.VAE` ``encoder_hidden``, ``to_mu``,
    ``to_logvar`` weights and biases), of the **batch-mean ELBO in nats per example**

        J(φ) = (1/B) Σ_b ( E_{q_φ(z|x_b)}[log p(x_b|z)] − KL(q_φ(z|x_b) ‖ N(0, I)) ),

    the same convention as :func:`vae_core.objectives.loss` (J = −loss at β = 1). Each repeat draws
    one z per example (n_samples = 1) and returns one unbiased estimate of ∇_φ J:

    - ``"pathwise"``: z = μ_φ(x) + σ_φ(x) ε and autograd through z — the gradient of
      :func:`~vae_core.objectives.elbo` with ``n_samples=1``. With ``kl="analytic"`` (L^B) the KL
      gradient is exact; with ``kl="mc"`` (L^A) the integrand log p(x,z) − log q_φ(z|x) is
      differentiated both through z and through log q_φ's own parameters.
    - ``"score"``: z is drawn with no gradient path, and the gradient comes from the score
      ∇_φ log q_φ(z|x) (a surrogate ``reward.detach() * log_q``):
        * ``kl="analytic"``: log p(x|z) ∇_φ log q_φ(z|x) − ∇_φ KL(q_φ ‖ p)  (the KL part exact);
        * ``kl="mc"``: with h_φ(z) = log p(x,z) − log q_φ(z|x), ∇_φ E_q[h_φ] = E_q[h_φ ∇_φ log q_φ]
          + E_q[∇_φ h_φ], and ∇_φ h_φ = −∇_φ log q_φ, so one sample gives (h_φ(z) − 1) ∇_φ log q_φ(z|x).
          (The −1 comes from h's own φ-dependence, whose expectation is 0: E_q[∇ log q] = 0.)
      Both have expectation ∇_φ J, the same as the pathwise estimator: the estimators differ only in
      variance. The decoder is not differentiated.

    - ``"pathwise"`` with ``kl="stl"`` ("sticking the landing", Roeder, Wu & Duvenaud 2017): the
      integrand h = log p(x, z) − log q_φ(z|x) is differentiated through z = μ_φ + σ_φ ε only, with
      log q's parameters held fixed. The L^A gradient is this *path derivative* plus the score term
      −∇_φ log q_φ(z|x)|_z, whose expectation is 0, so STL is unbiased too; at q_φ = p(z|x),
      h = log p(x) for every z and STL's variance is exactly 0 (L^A's and L^B's are not).

    Repeats use a ``torch.Generator`` seeded with ``seed``; with the same seed both estimators see the
    same ε. Statistics are accumulated in float64 with Welford's algorithm (memory O(#parameters)).

    Args:
        model: a VAE exposing ``encode``/``log_likelihood`` (see :mod:`vae_core.models`).
        x: (batch, x_dim) in [0, 1].
        estimator: "pathwise" or "score".
        n_repeats: independent single-sample estimates (≥ 2).
        kl: "analytic" (L^B), "mc" (L^A), or "stl" (path derivative of L^A; pathwise only).
        seed: seed of the draws.

    Returns:
        {parameter name: :class:`GradientStats`}; ``stats.mean_variance`` gives one number per tensor,
        so ``score[name].mean_variance / pathwise[name].mean_variance`` is the variance ratio.
        Units: nats per example per unit of parameter (variances: squared).

    Used by: chapter 3.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if kl not in (*KL_MODES, "stl"):
        raise ValueError(f"kl must be one of {(*KL_MODES, 'stl')}, got {kl!r}")
    if kl == "stl" and estimator != "pathwise":
        raise ValueError("kl='stl' (sticking the landing) is a pathwise estimator")
    check_positive_int(n_repeats, "n_repeats", minimum=2)
    params = _encoder_parameters(model, x)
    names, tensors = list(params), list(params.values())
    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    mean = [torch.zeros_like(p, dtype=torch.float64) for p in tensors]
    m2 = [torch.zeros_like(p, dtype=torch.float64) for p in tensors]
    with torch.enable_grad():
        for r in range(1, n_repeats + 1):
            objective = _single_sample_objective(model, x, estimator, kl, generator)
            grads = torch.autograd.grad(objective, tensors, allow_unused=True)
            for i, g in enumerate(grads):
                g = torch.zeros_like(mean[i]) if g is None else g.detach().to(torch.float64)
                delta = g - mean[i]
                mean[i] += delta / r
                m2[i] += delta * (g - mean[i])
    return {
        name: GradientStats(mean[i], m2[i] / (n_repeats - 1), n_repeats) for i, name in enumerate(names)
    }


def score_function_elbo_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None = None,
    *,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
    n_samples: int = 1,
    baseline: str | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""A training loss for :func:`vae_core.train.fit` whose encoder gradient is the score-function one.

    The pathwise loss (:func:`vae_core.train.elbo_loss`) lets gradients flow through
    z = μ_φ(x) + σ_φ(x) ε. Here z is drawn with **no gradient path**, and the encoder learns from the
    surrogate (per example, S = ``n_samples`` draws z_s ~ q_φ(z|x), r_s = log p_θ(x|z_s)):

        (1/S) Σ_s [ log p_θ(x|z_s) + (r_s − b_s)·log q_φ(z_s|x) ] − β · KL(q_φ(z|x) ‖ N(0, I)),

    with r_s and b_s treated as constants. Its gradient is, with respect to
    the decoder θ: (1/S) Σ_s ∇_θ log p_θ(x|z_s) — the same as the pathwise loss (z does not depend on θ);
    the encoder φ: (1/S) Σ_s (r_s − b_s) ∇_φ log q_φ(z_s|x) − β ∇_φ KL, the score-function (REINFORCE)
    estimator of ∇_φ E_q[log p(x|z)] plus the exact gradient of the analytic KL (estimator L^B).
    Both are unbiased, so in expectation this is the gradient of the β-ELBO; only the variance differs.

    Args:
        model: a VAE-like model (``encode``/``log_likelihood``, see :mod:`vae_core.models`).
        x: (batch, x_dim) in [0, 1]. y: must be None.
        beta: weight of the KL term (β_eff from ``fit``'s warm-up).
        generator: source of the noise (``fit`` passes its seeded generator).
        n_samples: S ≥ 1 draws per example (S ≥ 2 for ``baseline="mean"``).
        baseline: None (b = 0, plain REINFORCE) or "mean": the leave-one-out mean
            b_s = Σ_{t≠s} r_t / (S − 1) of the *same example's* other draws (unbiased: b_s does not depend
            on z_s; this is the "RLOO" estimator).

    Returns:
        (scalar loss = −mean over the batch of the surrogate, {"elbo", "rec", "kl"} each (batch,) in
        nats: the ordinary single-/multi-sample ELBO terms, directly comparable with ``elbo_loss``).

    Used by: chapter 3 (training with the score function vs the pathwise estimator).
    """
    if y is not None:
        raise ValueError("score_function_elbo_loss takes no labels")
    check_positive_int(n_samples, "n_samples")
    if baseline not in (None, "mean"):
        raise ValueError(f"baseline must be None or 'mean', got {baseline!r}")
    if baseline == "mean" and n_samples < 2:
        raise ValueError("baseline='mean' (leave-one-out) needs n_samples >= 2")
    mu, logvar = model.encode(x)
    with torch.no_grad():
        z = reparameterize(mu, logvar, n_samples, generator)  # (S, batch, z_dim), no path to phi
    log_q = gaussian_log_prob(z, mu, logvar)  # (S, batch): depends on phi through mu, logvar
    log_lik = model.log_likelihood(x, z)  # (S, batch): depends on theta only
    reward = log_lik.detach()
    if baseline == "mean":
        reward = reward - (reward.sum(0, keepdim=True) - reward) / (n_samples - 1)
    kl = gaussian_kl(mu, logvar)  # (batch,)
    surrogate = (log_lik + reward * log_q).mean(0) - beta * kl
    rec = log_lik.detach().mean(0)
    return -surrogate.mean(), {"elbo": rec - kl.detach(), "rec": rec, "kl": kl.detach()}


__all__ = [
    "ESTIMATORS",
    "EstimatorStats",
    "EstimatorVariances",
    "GradientStats",
    "QuadraticVariances",
    "cosine_true_grad",
    "encoder_gradient_variance",
    "estimator_stats",
    "gaussian_bump_true_grad",
    "pathwise_grad",
    "quadratic_true_grad",
    "quadratic_variances",
    "quadrature_variances",
    "score_function_elbo_loss",
    "score_function_grad",
]
