r"""Discrete latent variables: Gumbel-max and Concrete sampling, a VAE with categorical latents,
and the gradient estimators that train it, checked against the exact gradient by enumeration.

The model (:class:`CategoricalVAE`) has ``n_latents`` independent categorical latents of
``n_classes`` classes each, a uniform prior, an MLP encoder that outputs their logits and an MLP
Bernoulli decoder that reads them as one-hot vectors. Its ELBO is

    L(x) = E_{q(z|x)}[log p(x | z)] − KL(q(z|x) ‖ uniform),

and the KL is a finite sum, exact and differentiable. Only the reconstruction expectation needs an
estimator, because z is discrete and has no pathwise derivative. The estimators here:

- ``"score"`` — the score function (REINFORCE) with a baseline: ``None``, ``"loo"`` (leave-one-out
  mean of the other samples of the same x) or a tensor of per-example values (e.g. the NVIL-style
  learned baseline of :class:`CategoricalVAE`). Unbiased.
- ``"concrete"`` — the Concrete / Gumbel-softmax relaxation (Maddison et al. 2017; Jang et al.
  2017) at a temperature τ > 0: the decoder reads softmax((logits + g)/τ) and the gradient is
  pathwise. Low variance, **biased**: it is the gradient of another objective.
- ``"straight-through"`` — straight-through Gumbel: the decoder reads the hard one-hot sample
  (so the value is the real ELBO's), the backward pass uses the Concrete sample's gradient. Biased.
- ``"exact"`` — every configuration enumerated (n_classes ** n_latents decoder calls per example),
  the exact value and gradient: the reference the others are measured against, on small models.

Conventions as everywhere in vae_core: nats per example, logits ``(batch, n_latents, n_classes)``,
one-hot samples of the same shape.

Used by: chapter 11 (``notebooks/11_discrete_latents.ipynb``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_batch, check_positive_int
from .distributions import bernoulli_log_prob

ESTIMATORS = ("score", "concrete", "straight-through", "exact")
SCORE_BASELINES = (None, "loo")
SIGNAL_DECAY = 0.9
"""Weight of the past in the running mean of the learning signal (the NVIL centring)."""
MAX_CONFIGURATIONS = 1 << 16
"""Largest number of latent configurations :func:`all_configurations` enumerates (65,536)."""

LogLik = Callable[[Tensor], Tensor]
"""A reconstruction log-likelihood: one-hot (or relaxed) z (S, batch, n_latents, n_classes) ->
log p(x | z) (S, batch) in nats."""


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------

def _check_logits(logits: Tensor) -> Tensor:
    if not isinstance(logits, Tensor) or not torch.is_floating_point(logits):
        raise TypeError(f"logits must be a floating torch.Tensor, got {type(logits).__name__}"
                        + (f" of {logits.dtype}" if isinstance(logits, Tensor) else ""))
    if logits.dim() < 1 or logits.shape[-1] < 2:
        raise ValueError(f"logits need a last (class) dimension of size >= 2, got shape "
                         f"{tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise ValueError("logits contain NaN or inf")
    return logits


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (t > 0.0) or not math.isfinite(t):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def _check_latent_logits(logits: Tensor) -> Tensor:
    _check_logits(logits)
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (batch, n_latents, n_classes), got "
                         f"{tuple(logits.shape)}")
    return logits


# --------------------------------------------------------------------------------------------------
# Sampling: Gumbel-max, Concrete, straight-through
# --------------------------------------------------------------------------------------------------

def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Standard Gumbel draws g = −log(−log U), U ~ Uniform(0, 1), of the given shape.

    U is kept inside [tiny, 1 − eps/2] so that g is always finite.
    """
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    tiny = torch.finfo(dtype).tiny
    u = u.clamp(min=tiny, max=1.0 - torch.finfo(dtype).eps / 2)
    return -torch.log(-torch.log(u))


def gumbel_max_sample(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Exact categorical samples by the Gumbel-max trick: argmax_k (logits_k + g_k).

    logits: (..., n_classes), unnormalised log-probabilities. Returns (...) class indices (int64),
    distributed as Categorical(softmax(logits)).
    """
    _check_logits(logits)
    g = gumbel_noise(tuple(logits.shape), generator, logits.dtype, logits.device)
    return torch.argmax(logits + g, dim=-1)


def concrete_sample(logits: Tensor, temperature: float, generator: torch.Generator | None = None,
                    noise: Tensor | None = None) -> Tensor:
    """Concrete (Gumbel-softmax) samples softmax((logits + g) / τ): points inside the simplex.

    logits: (..., n_classes); temperature τ > 0 (τ → 0: one-hot Gumbel-max samples; τ → ∞: the
    centre of the simplex). noise: optional Gumbel draws of the shape of logits (to share them with
    a hard sample); else drawn from ``generator``. Differentiable in logits (the pathwise gradient).
    Returns (..., n_classes), each row positive and summing to 1.
    """
    _check_logits(logits)
    t = _check_temperature(temperature)
    if noise is None:
        noise = gumbel_noise(tuple(logits.shape), generator, logits.dtype, logits.device)
    elif noise.shape != logits.shape:
        raise ValueError(f"noise must have the shape of logits {tuple(logits.shape)}, got "
                         f"{tuple(noise.shape)}")
    return torch.softmax((logits + noise) / t, dim=-1)


def straight_through(soft: Tensor) -> Tensor:
    """The straight-through one-hot: the value of one_hot(argmax soft), the gradient of ``soft``.

    soft: (..., n_classes) relaxed samples. Returns hard + soft − soft.detach().
    """
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach()


def concrete_log_prob(y: Tensor, logits: Tensor, temperature: float) -> Tensor:
    r"""Log-density of the Concrete distribution on the simplex (Maddison et al. 2017, eq. 1).

    p(y) = (n−1)! τ^{n−1} Π_k [ α_k y_k^{−τ−1} / Σ_i α_i y_i^{−τ} ],  α = exp(logits),

    a density with respect to Lebesgue measure on the first n − 1 coordinates (y_n = 1 − Σ others).
    y: (..., n) inside the open simplex; logits: broadcastable to y. Returns (...) in nats.
    """
    _check_logits(logits)
    t = _check_temperature(temperature)
    if not isinstance(y, Tensor) or y.shape[-1] != logits.shape[-1]:
        raise ValueError("y must be a tensor with the class dimension of logits")
    if (y <= 0).any() or not torch.allclose(y.sum(-1), torch.ones((), dtype=y.dtype), atol=1e-5):
        raise ValueError("y must lie inside the simplex (positive, summing to 1)")
    n = y.shape[-1]
    log_y = torch.log(y)
    return (math.lgamma(n) + (n - 1) * math.log(t)
            + (logits - (t + 1) * log_y).sum(-1)
            - n * torch.logsumexp(logits - t * log_y, dim=-1))


# --------------------------------------------------------------------------------------------------
# Enumeration and the exact reconstruction term
# --------------------------------------------------------------------------------------------------

def all_configurations(n_latents: int, n_classes: int) -> Tensor:
    """Every joint configuration of ``n_latents`` categoricals: (n_classes ** n_latents, n_latents) int64.

    Row c is c written in base ``n_classes`` (first latent most significant). Refuses more than
    :data:`MAX_CONFIGURATIONS` rows.
    """
    n_latents = check_positive_int(n_latents, "n_latents")
    n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
    count = n_classes ** n_latents
    if count > MAX_CONFIGURATIONS:
        raise ValueError(f"{n_classes}^{n_latents} = {count} configurations is too many to enumerate "
                         f"(at most {MAX_CONFIGURATIONS}); use a smaller model")
    grids = torch.meshgrid(*[torch.arange(n_classes)] * n_latents, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def exact_reconstruction(logits: Tensor, log_lik: LogLik, chunk: int = 256) -> Tensor:
    """E_{q(z|x)}[log p(x|z)] by summing over every configuration: (batch,) nats, differentiable.

    logits: (batch, n_latents, n_classes) of the factorised q; log_lik: see :data:`LogLik`, called
    on chunks of ``chunk`` configurations. Cost: n_classes ** n_latents decoder calls per example.
    """
    _check_latent_logits(logits)
    _, n_latents, n_classes = logits.shape
    configs = all_configurations(n_latents, n_classes).to(logits.device)  # (C, N)
    log_q = torch.log_softmax(logits, dim=-1)
    total = logits.new_zeros(logits.shape[0])
    for start in range(0, len(configs), chunk):
        c = configs[start:start + chunk]  # (c, N)
        one_hot = F.one_hot(c, n_classes).to(logits.dtype)  # (c, N, K)
        z = one_hot[:, None].expand(-1, logits.shape[0], -1, -1)  # (c, B, N, K)
        log_q_c = (log_q[None] * one_hot[:, None]).sum((-1, -2))  # (c, B)
        total = total + (log_q_c.exp() * log_lik(z)).sum(0)
    return total


def categorical_kl_uniform(logits: Tensor) -> Tensor:
    """KL(q ‖ uniform) summed over latents: Σ_n Σ_k q_nk log q_nk + n_latents log n_classes.

    logits: (batch, n_latents, n_classes). Returns (batch,) nats, ≥ 0, exact and differentiable.
    """
    _check_latent_logits(logits)
    log_q = torch.log_softmax(logits, dim=-1)
    return (log_q.exp() * log_q).sum((-1, -2)) + logits.shape[1] * math.log(logits.shape[2])


# --------------------------------------------------------------------------------------------------
# Surrogates: a scalar per example whose gradient is the estimator's
# --------------------------------------------------------------------------------------------------

def reconstruction_surrogate(logits: Tensor, log_lik: LogLik, estimator: str, *,
                             temperature: float = 1.0, n_samples: int = 1,
                             baseline: str | Tensor | None = None,
                             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    r"""A surrogate of E_q[log p(x|z)] whose gradient is the chosen estimator, and its value.

    Returns ``(surrogate, value)``, both (batch,) nats. ``surrogate.sum().backward()`` puts the
    estimator's gradient (averaged over ``n_samples`` draws per example) on the logits and on the
    decoder parameters; ``value`` is the estimate of E_q[log p(x|z)] that the estimator's forward pass
    computes (an unbiased one for "score" and "straight-through", whose decoder reads hard samples;
    the *relaxed* objective E[log p(x | ỹ)] for "concrete"; the exact sum for "exact").

    - "score": log p(x|z) + (log p(x|z) − b).detach() · log q(z|x) at z ~ q (Gumbel-max), where b is
      0 (``baseline=None``), the leave-one-out mean of the other samples of the same x (``"loo"``,
      needs n_samples ≥ 2) or a tensor (batch,) of values fixed before the draw (a learned
      baseline; it is detached here).
    - "concrete": log p(x | softmax((logits + g)/τ)).
    - "straight-through": log p(x | straight_through(softmax((logits + g)/τ))).
    - "exact": :func:`exact_reconstruction` (``n_samples`` and ``temperature`` unused).

    logits: (batch, n_latents, n_classes); log_lik: see :data:`LogLik`.
    """
    _check_latent_logits(logits)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    n_samples = check_positive_int(n_samples, "n_samples")
    temperature = _check_temperature(temperature)
    if estimator == "exact":
        value = exact_reconstruction(logits, log_lik)
        return value, value
    if isinstance(baseline, Tensor):
        if baseline.shape != logits.shape[:1]:
            raise ValueError(f"a tensor baseline must have shape (batch,) = {tuple(logits.shape[:1])}, "
                             f"got {tuple(baseline.shape)}")
        if estimator != "score":
            raise ValueError("a baseline only applies to the score-function estimator")
    elif baseline not in SCORE_BASELINES:
        raise ValueError(f"baseline must be None, 'loo' or a tensor (batch,), got {baseline!r}")
    elif baseline == "loo" and (estimator != "score" or n_samples < 2):
        raise ValueError("baseline='loo' needs estimator='score' and n_samples >= 2")
    n_classes = logits.shape[-1]
    shape = (n_samples, *logits.shape)
    noise = gumbel_noise(shape, generator, logits.dtype, logits.device)
    if estimator == "score":
        with torch.no_grad():
            hard = F.one_hot(torch.argmax(logits.detach() + noise, -1), n_classes).to(logits.dtype)
        f = log_lik(hard)  # (S, B); the decoder's gradient is pathwise, as in any VAE
        log_q = (torch.log_softmax(logits, -1)[None] * hard).sum((-1, -2))  # (S, B)
        if isinstance(baseline, Tensor):
            b = baseline.detach()[None]
        elif baseline == "loo":
            b = (f.sum(0, keepdim=True) - f) / (n_samples - 1)
        else:
            b = torch.zeros_like(f)
        surrogate = f + (f - b).detach() * log_q
        return surrogate.mean(0), f.mean(0)
    soft = torch.softmax((logits[None] + noise) / temperature, dim=-1)
    z = soft if estimator == "concrete" else straight_through(soft)
    f = log_lik(z)
    return f.mean(0), f.mean(0)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------

class CategoricalVAE(nn.Module):
    """A VAE with ``n_latents`` categorical latents of ``n_classes`` classes each (uniform prior).

    Encoder: x_dim → h_dim (ReLU) → n_latents · n_classes logits. Decoder: the one-hot (or relaxed)
    code, flattened, → h_dim (ReLU) → x_dim Bernoulli logits. Baseline of the score-function
    estimator, as in NVIL (Mnih & Gregor 2014): b(x) = c + b_ψ(x), where c is a running mean of the
    learning signal log p(x|z) over training batches (the buffer ``signal_mean``, an exponential
    moving average with weight :data:`SIGNAL_DECAY`, bias-corrected) and b_ψ a linear map x_dim → 1
    trained to predict the rest, log p(x|z) − c. Unused by the other estimators.

    Used by: chapter 11, tests.
    """

    def __init__(self, x_dim: int = 784, h_dim: int = 200, n_latents: int = 20,
                 n_classes: int = 10) -> None:
        super().__init__()
        self.x_dim = check_positive_int(x_dim, "x_dim")
        self.h_dim = check_positive_int(h_dim, "h_dim")
        self.n_latents = check_positive_int(n_latents, "n_latents")
        self.n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
        code = n_latents * n_classes
        self.encoder = nn.Sequential(nn.Linear(x_dim, h_dim), nn.ReLU(), nn.Linear(h_dim, code))
        self.decoder = nn.Sequential(nn.Linear(code, h_dim), nn.ReLU(), nn.Linear(h_dim, x_dim))
        self.baseline = nn.Linear(x_dim, 1)
        self.register_buffer("signal_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("signal_updates", torch.zeros((), dtype=torch.int64))

    def config(self) -> dict[str, Any]:
        """The constructor arguments (used by checkpoints and the model cache)."""
        return {"x_dim": self.x_dim, "h_dim": self.h_dim, "n_latents": self.n_latents,
                "n_classes": self.n_classes}

    def encode(self, x: Tensor) -> Tensor:
        """x: (batch, x_dim) in [0, 1] → logits (batch, n_latents, n_classes)."""
        x = check_batch(x, self.x_dim, dtype=self.encoder[0].weight.dtype)
        return self.encoder(x).reshape(len(x), self.n_latents, self.n_classes)

    def decode(self, z: Tensor) -> Tensor:
        """z: (..., n_latents, n_classes) one-hot or relaxed → pixel logits (..., x_dim)."""
        if z.shape[-2:] != (self.n_latents, self.n_classes):
            raise ValueError(f"z must end in ({self.n_latents}, {self.n_classes}), got {tuple(z.shape)}")
        return self.decoder(z.flatten(-2))

    def decode_indices(self, indices: Tensor) -> Tensor:
        """indices: (..., n_latents) class of each latent → pixel logits (..., x_dim)."""
        return self.decode(F.one_hot(indices, self.n_classes).to(self.encoder[0].weight.dtype))

    def signal_center(self) -> float:
        """c: the bias-corrected running mean of log p(x|z) over the training batches so far (nats);
        0 before the first update."""
        steps = int(self.signal_updates)
        if steps == 0:
            return 0.0
        return float(self.signal_mean) / (1.0 - SIGNAL_DECAY ** steps)

    def update_signal(self, batch_mean: Tensor) -> None:
        """One step of the running mean: signal_mean ← d · signal_mean + (1 − d) · batch_mean."""
        with torch.no_grad():
            self.signal_mean.mul_(SIGNAL_DECAY).add_((1 - SIGNAL_DECAY) * batch_mean.double())
            self.signal_updates.add_(1)

    def learned_baseline(self, x: Tensor) -> Tensor:
        """b(x) = c + b_ψ(x): (batch,) nats, the NVIL baseline (differentiable in b_ψ only)."""
        return self.signal_center() + self.baseline(x).squeeze(-1)

    def log_lik_fn(self, x: Tensor) -> LogLik:
        """The function z (S, batch, N, K) → log p(x|z) (S, batch) for this batch x."""
        return lambda z: bernoulli_log_prob(x, self.decode(z))


def categorical_elbo_loss(model: CategoricalVAE, x: Tensor, y: Tensor | None = None, *,
                          beta: float = 1.0, generator: torch.Generator | None = None,
                          estimator: str = "score", temperature: float = 1.0, n_samples: int = 1,
                          baseline: str | None = "learned") -> tuple[Tensor, Mapping[str, Tensor]]:
    """A training loss for :func:`vae_core.train.fit`: −(surrogate − β · KL), mean over the batch.

    estimator, temperature, n_samples: as in :func:`reconstruction_surrogate` (bind them with
    ``functools.partial``). baseline (score function only): ``"learned"`` — the model's NVIL
    baseline b(x) = c + b_ψ(x) (:meth:`CategoricalVAE.learned_baseline`): b_ψ is trained alongside by
    minimising (log p(x|z) − b(x))², and in training mode the running mean c is updated after the
    batch (so b never depends on the batch's own samples); ``"loo"``; or None.

    Terms (batch,) in nats: ``"elbo"`` — an unbiased one-sample estimate of the real ELBO, from a
    hard (Gumbel-max) sample, also for "concrete" (whose training objective is the relaxed one;
    that costs one extra decoder pass without gradient); ``"rec"`` and ``"kl"`` (exact).
    """
    if y is not None:
        raise ValueError("categorical_elbo_loss takes no labels")
    if baseline not in (None, "loo", "learned"):
        raise ValueError(f"baseline must be None, 'loo' or 'learned', got {baseline!r}")
    logits = model.encode(x)
    log_lik = model.log_lik_fn(x)
    kl = categorical_kl_uniform(logits)
    b: str | Tensor | None = None
    extra = torch.zeros((), dtype=logits.dtype, device=logits.device)
    if estimator == "score":
        if baseline == "learned":
            b = model.learned_baseline(x)
        else:
            b = baseline
    surrogate, value = reconstruction_surrogate(logits, log_lik, estimator, temperature=temperature,
                                                n_samples=n_samples, baseline=b, generator=generator)
    if isinstance(b, Tensor):
        extra = ((value.detach() - b) ** 2).mean()  # fits the baseline; no gradient to the VAE
        if model.training:
            model.update_signal(value.detach().mean())
    if estimator == "concrete":
        with torch.no_grad():
            hard = F.one_hot(gumbel_max_sample(logits.detach(), generator), model.n_classes)
            rec = log_lik(hard.to(logits.dtype)[None])[0]
    else:
        rec = value.detach()
    loss = -(surrogate - beta * kl).mean() + extra
    return loss, {"elbo": rec - kl.detach(), "rec": rec, "kl": kl.detach()}


def exact_elbo(model: CategoricalVAE, x: Tensor) -> Tensor:
    """The exact ELBO (batch,) in nats by enumeration (small models only), differentiable."""
    logits = model.encode(x)
    return exact_reconstruction(logits, model.log_lik_fn(x)) - categorical_kl_uniform(logits)


def logit_gradients(model: CategoricalVAE, x: Tensor, estimator: str, n_repeats: int, *,
                    temperature: float = 1.0, n_samples: int = 1, baseline: str | None = None,
                    seed: int = 0) -> Tensor:
    """Gradients of the batch's summed ELBO with respect to the encoder's logits, one per repeat.

    Each repeat draws fresh noise (a generator seeded from ``seed``) and returns the estimator's
    gradient of Σ_x ELBO(x) with respect to the logits (batch, n_latents, n_classes). The KL part is
    exact in every estimator; the estimators differ in the reconstruction part. baseline: as in
    :func:`categorical_elbo_loss` ("learned" uses the model's baseline). With ``"exact"`` every repeat
    is the same exact gradient. Returns (n_repeats, batch, n_latents, n_classes), float64.
    """
    n_repeats = check_positive_int(n_repeats, "n_repeats")
    with torch.no_grad():
        logits0 = model.encode(x)
        b: str | Tensor | None = baseline
        if baseline == "learned":
            b = model.learned_baseline(x)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    log_lik = model.log_lik_fn(x)
    out = []
    for _ in range(n_repeats):
        logits = logits0.clone().requires_grad_(True)
        surrogate, _ = reconstruction_surrogate(logits, log_lik, estimator, temperature=temperature,
                                                n_samples=n_samples, baseline=b, generator=generator)
        total = (surrogate - categorical_kl_uniform(logits)).sum()
        out.append(torch.autograd.grad(total, logits)[0].double())
    return torch.stack(out)


__all__ = ["ESTIMATORS", "MAX_CONFIGURATIONS", "SIGNAL_DECAY", "gumbel_noise", "gumbel_max_sample",
           "concrete_sample",
           "straight_through", "concrete_log_prob", "all_configurations", "exact_reconstruction",
           "categorical_kl_uniform", "reconstruction_surrogate", "CategoricalVAE",
           "categorical_elbo_loss", "exact_elbo", "logit_gradients"]
