"""Training: ``fit`` — seeded in-memory minibatch training with β warm-up, atomic checkpoints and
exact resume. Checkpoint files live in :mod:`vae_core.checkpoints`, the cache of trained models
(``pretrained``, still reachable here) in :mod:`vae_core.cache`.

Conventions (as everywhere in vae_core): every term is in **nats per example** (summed over pixels
and latent dimensions); a training loss is the **mean over the batch** of the per-example negative
(β-weighted) ELBO, ``-(rec - β·kl)``.

Design, in short:

- The data are moved to the device **once** as a float tensor ``(N, x_dim)``; each epoch draws a seeded
  permutation and batches are index slices of it (no ``DataLoader``, no per-sample Python).
- All randomness comes from ``seed``: one ``torch.Generator`` on the training device drives the
  permutation, the dynamic binarization and the reparameterization noise of the default loss; the
  global torch RNG is *also* seeded (inside ``torch.random.fork_rng``, so the caller's global RNG
  state is untouched by ``fit``) for custom loss functions that draw without a generator.
  Both RNG states are stored in every checkpoint, so a run resumed after epoch e continues bitwise
  as the uninterrupted run would have (tested on CPU; on CUDA as far as cuBLAS is deterministic).
- Checkpoints are written atomically and read with ``torch.load(weights_only=True)`` only, their
  weights verified by a digest (:mod:`vae_core.checkpoints`). A resumption must match what the run
  was made of (settings, data, labels, loss function), and an existing checkpoint is never replaced
  unless asked (``resume`` or ``overwrite``); an unwritable checkpoint path is refused before training.
- No per-step host–device synchronisation on CUDA except a NaN/inf check every
  :data:`CUDA_NAN_CHECK_EVERY` steps; epoch sums of the terms are accumulated on the device.
  The data are validated once, up front; with the default loss the model's per-call input checks
  (NaN/inf, range: a full read of the batch and, on CUDA, a sync each) are skipped inside the loop.

Used by: chapters 4-11 (training every model of the book), benchmarks (``benchmarks/``, issue 7).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    atomic_save,
    check_compatible,
    check_writable,
    load_checkpoint,
    load_model,
    save_checkpoint,
    tensor_digest,
)
from .checks import _trusted_values, check_batch, check_non_negative, check_positive_int
from .data import binarize as _bernoulli  # `binarize` is also fit's argument name
from .data import static_binarize
from .distributions import gaussian_kl, reparameterize
from .objectives import KL_MODES, elbo

BINARIZE_MODES = ("dynamic", "static", None)
CUDA_NAN_CHECK_EVERY = 50
"""On CUDA the loss is checked for NaN/inf every this many steps (and at each epoch end) to avoid a
host sync per step; on CPU it is checked before every optimizer step."""
EVAL_BATCH_SIZE = 1024
"""Examples per forward pass when evaluating the test set at the end of each epoch."""

# Offsets that derive independent seeds from the user's ``seed`` (arbitrary distinct constants).
_SEED_GLOBAL, _SEED_STATIC, _SEED_TEST_NOISE = 0x5EED0001, 0x5EED0002, 0x5EED0004


class LossFn(Protocol):
    """Signature of a training loss for :func:`fit` (the default is :func:`elbo_loss`).

    Called as ``loss_fn(model, x, y, beta=β_eff, generator=g)`` with x: (batch, x_dim) in [0, 1] on the
    training device, y: (batch,) labels or None, β_eff the warmed-up β of this step and g the seeded
    generator to draw noise from. Returns ``(loss, terms)``: a scalar to minimise (mean over the batch)
    and a mapping of per-example terms, each (batch,) in nats (e.g. ``{"elbo", "rec", "kl"}``), whose
    epoch means go into :class:`History`. Wrap other signatures in a small function, e.g. for a
    conditional VAE ``lambda m, x, y, *, beta, generator: elbo_loss(m.given(y), x, beta=beta,
    generator=generator)``; a 0-d term is taken as the batch mean.

    Used by: chapter 8 (conditional VAE, M2).
    """

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None, *, beta: float,
                 generator: torch.Generator | None) -> tuple[Tensor, Mapping[str, Tensor]]: ...


# --------------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------------


@dataclass
class History:
    """What happened in each epoch of :func:`fit` (lists indexed by epoch, 0-based).

    train: per term, its mean over the epoch's training examples in nats per example, accumulated
        while the parameters change (the usual running average). With the default loss the terms
        are ``"loss"`` (−rec + β_eff·kl, the quantity minimised), ``"elbo"``, ``"rec"`` and ``"kl"``.
    test: the same terms on the test set at the end of each epoch (no gradients, a fixed
        binarization and fixed noise, so epochs are comparable); empty when no test set was given.
    beta: β_eff at the last step of each epoch (shows the warm-up schedule).
    seconds: wall-clock seconds of each epoch (training + test evaluation).

    Used by: chapters 4 and 6 (training curves), benchmarks.
    """

    train: dict[str, list[float]] = field(default_factory=dict)
    test: dict[str, list[float]] = field(default_factory=dict)
    beta: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """Number of epochs recorded."""
        return len(self.beta)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of lists of floats (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return {"train": {k: list(v) for k, v in self.train.items()},
                "test": {k: list(v) for k, v in self.test.items()},
                "beta": list(self.beta), "seconds": list(self.seconds)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        return cls(train={k: [float(x) for x in v] for k, v in d.get("train", {}).items()},
                   test={k: [float(x) for x in v] for k, v in d.get("test", {}).items()},
                   beta=[float(x) for x in d.get("beta", [])],
                   seconds=[float(x) for x in d.get("seconds", [])])


# --------------------------------------------------------------------------------------------------
# Small helpers: device, data, warm-up, default loss
# --------------------------------------------------------------------------------------------------


def default_device() -> torch.device:
    """``cuda`` when available, else ``cpu`` (decided at call time, never at import)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def prepare_data(x: Tensor | np.ndarray, x_dim: int | None = None, *, name: str = "x",
                 device: torch.device | str | None = None) -> Tensor:
    """Images to the float batch every model takes: (N, x_dim) float32 in [0, 1] on ``device``.

    x: uint8 (N, 28, 28) / (N, 784) / (N, 1, 28, 28) in 0..255 (divided by 255), or float in [0, 1]
    (kept as is). Raises TypeError/ValueError naming the problem (wrong dtype, shape, x_dim, NaN/inf,
    values outside [0, 1], empty). Moves the data to the device *before* converting (fast on CUDA).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have a batch dimension, e.g. (N, 784) or (N, 28, 28); "
                         f"got shape {tuple(x.shape)}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty (0 examples)")
    x_dim = x_dim if x_dim is not None else int(np.prod(x.shape[1:]))
    if x.dtype == torch.uint8:
        x = x.to(device).reshape(len(x), -1).to(torch.float32).div_(255.0)
        # uint8 / 255 is finite and in [0, 1] by construction: check the shape only (reading the
        # values again costs ~0.3 s for 60,000 images on a CPU, ~4% of an epoch; benchmarks/)
        with _trusted_values():
            return check_batch(x, x_dim, name=name)
    if torch.is_floating_point(x):
        x = x.to(device=device, dtype=torch.float32).reshape(len(x), -1)
        return check_batch(x, x_dim, name=name)
    raise TypeError(f"{name} must be uint8 images (0-255) or floats in [0, 1], got {x.dtype}")


def _prepare_labels(y: Tensor | np.ndarray | None, n: int, name: str, device: torch.device) -> Tensor | None:
    if y is None:
        return None
    y = torch.as_tensor(y)
    if y.dim() != 1 or len(y) != n:
        raise ValueError(f"{name} must have shape ({n},) to match the images, got {tuple(y.shape)}")
    return y.to(device)


def warmup_beta(step: int, beta: float, warmup_steps: float) -> float:
    """β in effect at (0-based) global step ``step`` of a linear KL warm-up over ``warmup_steps`` steps.

    β_eff = β · min(1, (step + 1) / warmup_steps); ``warmup_steps`` ≤ 0 means no warm-up (β_eff = β).
    :func:`fit` uses warmup_steps = warmup_epochs · steps_per_epoch, so the last step of epoch
    ``warmup_epochs`` is the first at full β.
    """
    if warmup_steps <= 0:
        return float(beta)
    return float(beta) * min(1.0, (step + 1) / warmup_steps)


def elbo_loss(model: nn.Module, x: Tensor, y: Tensor | None = None, *, beta: float = 1.0,
              generator: torch.Generator | None = None, kl: str = "analytic", n_samples: int = 1,
              free_bits: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """The default training loss of :func:`fit`: mean over the batch of −(rec − β·kl), in nats.

    With ``free_bits = 0`` this is exactly :func:`vae_core.objectives.loss` (drawing its noise from
    ``generator``). With ``free_bits = λ > 0`` (Kingma et al. 2016, "free bits", per latent dimension)
    the KL part of the loss is Σ_j max(λ, mean_batch KL_j), where KL_j is the analytic KL of dimension j:
    dimensions whose average KL is below λ nats get no gradient pushing them further down, which
    counters posterior collapse. The *reported* terms are always the true ELBO, rec and KL.

    model: a VAE-like model (``encode``/``log_likelihood``). x: (batch, x_dim) in [0, 1].
    y must be None (use a custom ``loss_fn`` for conditional models). Returns
    (scalar loss, {"elbo", "rec", "kl"} each (batch,) in nats).

    Used by: :func:`fit` (default loss), chapter 7 (free bits against posterior collapse).
    """
    if y is not None:
        raise ValueError("the default ELBO loss takes no labels; pass loss_fn=... to fit a "
                         "conditional or semi-supervised model with train_y")
    if free_bits == 0.0:
        terms = elbo(model, x, n_samples=n_samples, kl=kl, generator=generator)
        return -(terms.rec - beta * terms.kl).mean(), terms._asdict()
    if kl != "analytic":
        raise ValueError("free bits need the analytic KL per dimension; use kl='analytic'")
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, n_samples, generator)
    rec = model.log_likelihood(x, z).mean(0)
    kl_dim = gaussian_kl(mu.unsqueeze(-1), logvar.unsqueeze(-1))  # (batch, z_dim)
    kl_term = kl_dim.sum(-1)
    kl_objective = torch.clamp(kl_dim.mean(0), min=free_bits).sum()
    loss = -(rec.mean() - beta * kl_objective)
    return loss, {"elbo": rec - kl_term, "rec": rec, "kl": kl_term}


# --------------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------------


def _derive_seed(seed: int, offset: int) -> int:
    return (int(seed) * 1_000_003 + offset) % (2**63 - 1)


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    state = {"generator": generator.get_state(), "torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Tensor], generator: torch.Generator, device: torch.device) -> None:
    generator.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch_cpu"].cpu())
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"].cpu(), device)


@contextlib.contextmanager
def _private_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global torch RNG for the duration of the block and restore the caller's state after:
    fit's randomness never leaks into (or depends on) the notebook's global RNG stream."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(seed)
        yield


# --------------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------------

# fit settings that must be identical between an interrupted run and its resumption
_RESUME_KEYS = ("batch_size", "lr", "beta", "warmup_epochs", "free_bits", "binarize", "seed", "kl",
                "n_samples", "n_train")


_DIGEST_KEYS = {"train_x_digest": "training data", "test_x_digest": "test data",
                "train_y_digest": "training labels", "test_y_digest": "test labels",
                "loss_fn_identity": "a loss function"}


def _run_digests(train_x: Any, test_x: Any, train_y: Any, test_y: Any,
                 loss_fn: Callable[..., Any] | None) -> dict[str, str | None]:
    from .cache import UnkeyableCallable, callable_identity  # cache imports this module

    try:
        identity = callable_identity(loss_fn)
    except UnkeyableCallable:  # resumption then checks the function's name only
        identity = f"{getattr(loss_fn, '__module__', '?')}.{getattr(loss_fn, '__qualname__', '?')}"
    return {"train_x_digest": tensor_digest(torch.as_tensor(train_x)),
            "test_x_digest": tensor_digest(None if test_x is None else torch.as_tensor(test_x)),
            "train_y_digest": tensor_digest(None if train_y is None else torch.as_tensor(train_y)),
            "test_y_digest": tensor_digest(None if test_y is None else torch.as_tensor(test_y)),
            "loss_fn_identity": identity}


def _validate_hparams(epochs: int, batch_size: int, lr: float, beta: float, warmup_epochs: float,
                      free_bits: float, binarize: str | None, kl: str, n_samples: int) -> None:
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(n_samples, "n_samples")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (0 < lr < math.inf):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    check_non_negative(beta, "beta")
    check_non_negative(warmup_epochs, "warmup_epochs")
    check_non_negative(free_bits, "free_bits")
    if binarize not in BINARIZE_MODES:
        raise ValueError(f"binarize must be one of {BINARIZE_MODES}, got {binarize!r}")
    if kl not in KL_MODES:
        raise ValueError(f"kl must be one of {KL_MODES}, got {kl!r}")


def _accumulate(sums: dict[str, Tensor], terms: Mapping[str, Tensor], n: int) -> None:
    """Add the batch sums of per-example terms into device accumulators (no host sync)."""
    for key, value in terms.items():
        value = value.detach()
        s = value.sum() if value.dim() > 0 else value * n
        sums[key] = s if key not in sums else sums[key] + s


@torch.no_grad()
def _evaluate_terms(model: nn.Module, loss_fn: Callable[..., Any], x: Tensor, y: Tensor | None, beta: float,
                    generator: torch.Generator, seed: int) -> dict[str, float]:
    """Means over x of the loss terms. The noise generator and the global RNG are re-seeded inside a
    private RNG scope: the same noise every epoch, and training draws the same random numbers
    whether or not a test set is evaluated."""
    was_training = model.training
    model.eval()
    generator.manual_seed(seed)
    sums: dict[str, Tensor] = {}
    with _private_global_rng(seed, x.device):
        for start in range(0, len(x), EVAL_BATCH_SIZE):
            xb = x[start:start + EVAL_BATCH_SIZE]
            yb = None if y is None else y[start:start + EVAL_BATCH_SIZE]
            loss, terms = loss_fn(model, xb, yb, beta=beta, generator=generator)
            _accumulate(sums, {"loss": loss.reshape(())}, len(xb))
            _accumulate(sums, terms, len(xb))
    model.train(was_training)
    keys = list(sums)
    values = torch.stack([sums[k] for k in keys]).double().div(len(x)).tolist()
    return dict(zip(keys, values, strict=True))


def fit(
    model: nn.Module,
    train_x: Tensor | np.ndarray,
    test_x: Tensor | np.ndarray | None = None,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    beta: float = 1.0,
    warmup_epochs: float = 0,
    free_bits: float = 0.0,
    binarize: str | None = "dynamic",
    kl: str = "analytic",
    n_samples: int = 1,
    seed: int = 0,
    device: str | torch.device | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    loss_fn: LossFn | None = None,
    train_y: Tensor | np.ndarray | None = None,
    test_y: Tensor | np.ndarray | None = None,
) -> History:
    """Train ``model`` in place with Adam on in-memory minibatches; return the per-epoch :class:`History`.

    Args:
        model: a VAE-like model of :mod:`vae_core.models` (any ``nn.Module`` with a custom ``loss_fn``).
            Its current parameters are the starting point; it is moved to ``device``.
        train_x, test_x: images, uint8 (N, 28, 28) / (N, 784) in 0..255 or float (N, 784) in [0, 1].
        epochs: total number of epochs (with ``resume``, including those already done).
        batch_size: examples per step; the last batch of an epoch may be smaller.
        lr: Adam learning rate.
        beta: weight β of the KL term (1 = the ELBO; see :func:`vae_core.objectives.loss`).
        warmup_epochs: linear KL warm-up length in epochs (may be fractional); β_eff at global step s
            is β · min(1, (s + 1) / (warmup_epochs · steps_per_epoch)), see :func:`warmup_beta`.
        free_bits: λ ≥ 0 nats per latent dimension (default loss only), see :func:`elbo_loss`.
        binarize: "dynamic" — a fresh seeded Bernoulli draw of the training pixels at every batch;
            "static" — one fixed seeded draw of the training set; None — use the grey levels
            (then the Bernoulli "likelihood" is not a likelihood). Unless ``binarize`` is None the
            test set is binarized once with :func:`vae_core.data.static_binarize` (seed
            ``data.TEST_BINARIZATION_SEED``, not ``seed``): the same binary digits as
            :func:`vae_core.data.binary_test_set`, so the test curves and ``evaluate`` agree.
        kl, n_samples: ELBO estimator ("analytic" = L^B, "mc" = L^A) and z samples per example
            (default loss only).
        seed: the one seed of all randomness (permutations, binarization, noise). Same seed, same
            model initialisation and data → bitwise identical parameters on the same machine.
        device: "cpu", "cuda", ... (default: CUDA if available).
        checkpoint_path: if given, a checkpoint is written atomically at the end of every epoch.
        resume: continue from ``checkpoint_path`` if it exists (a missing file starts afresh); the
            fit settings, the training and test data, the labels and the loss function must equal
            the interrupted run's, and ``epochs`` may grow but not shrink. The result equals the
            uninterrupted run's bitwise.
        overwrite: start afresh over an existing ``checkpoint_path``. Without it (and without
            ``resume``) an existing checkpoint is refused, so forgetting ``resume=True`` cannot
            replace a long run's progress with an epoch-1 file.
        progress: show a ``tqdm.auto`` bar over epochs (stderr / a notebook widget).
        loss_fn: custom loss, see :class:`LossFn` (default :func:`elbo_loss`); needed for labels.
        train_y, test_y: (N,) labels passed batch by batch to ``loss_fn`` (conditional VAE, M2).

    Returns:
        :class:`History` with per-epoch means of the loss terms (nats per example) on train and test.

    Raises:
        ValueError/TypeError for bad hyperparameters or data (before any training);
        FloatingPointError naming epoch and step if the loss becomes NaN or inf (the checkpoint of
        the last completed epoch is left intact); :class:`CheckpointError` for an unusable checkpoint.

    Used by: chapters 4-11 (directly or through :func:`pretrained`), benchmarks (issue 7, "B").
    """
    _validate_hparams(epochs, batch_size, lr, beta, warmup_epochs, free_bits, binarize, kl, n_samples)
    seed = check_positive_int(seed, "seed", minimum=0)
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path")
    if resume and overwrite:
        raise ValueError("resume=True and overwrite=True contradict each other; choose one")
    if checkpoint_path is not None:
        checkpoint_path = check_writable(checkpoint_path)  # before any training
        if checkpoint_path.exists() and not (resume or overwrite):
            raise FileExistsError(f"{checkpoint_path} exists: pass resume=True to continue that run, "
                                  "or overwrite=True to start afresh and replace it")
    if train_y is not None and test_x is not None and test_y is None:
        raise ValueError("train_y is given but test_y is not: a model trained with labels is also "
                         "evaluated with them; pass test_y (or no test_x)")
    if loss_fn is not None and (free_bits or kl != "analytic" or n_samples != 1):
        raise ValueError("free_bits, kl and n_samples configure the default loss; with a custom "
                         "loss_fn, handle them inside it")
    device = torch.device(device) if device is not None else default_device()
    x_dim = getattr(model, "x_dim", None)
    train = prepare_data(train_x, x_dim, name="train_x", device=device)
    test = prepare_data(test_x, train.shape[1], name="test_x", device=device) if test_x is not None else None
    ytrain = _prepare_labels(train_y, len(train), "train_y", device)
    ytest = _prepare_labels(test_y, len(test), "test_y", device) if test is not None else None
    default_loss = loss_fn is None
    if loss_fn is None:
        def loss_fn(m: nn.Module, x: Tensor, y: Tensor | None, *, beta: float,
                    generator: torch.Generator | None) -> tuple[Tensor, Mapping[str, Tensor]]:
            return elbo_loss(m, x, y, beta=beta, generator=generator, kl=kl, n_samples=n_samples,
                             free_bits=free_bits)

    n = len(train)
    steps_per_epoch = math.ceil(n / batch_size)
    warmup_steps = warmup_epochs * steps_per_epoch
    settings = {"batch_size": batch_size, "lr": float(lr), "beta": float(beta),
                "warmup_epochs": float(warmup_epochs), "free_bits": float(free_bits),
                "binarize": binarize, "seed": int(seed), "kl": kl, "n_samples": n_samples, "n_train": n}
    if checkpoint_path is not None:  # what the run is made of, so that a resumption can be checked
        settings.update(_run_digests(train_x, test_x, train_y, test_y, None if default_loss else loss_fn))

    model.to(device)
    # Fused Adam: one kernel for every parameter's update instead of a dozen element-wise passes;
    # about 7 % of a CPU epoch of the 784-400-20 model (benchmarks/). Same algorithm, other rounding.
    params = list(model.parameters())
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
    optimizer = torch.optim.Adam(params, lr=lr, fused=fused or None)
    generator = torch.Generator(device=device)
    generator.manual_seed(_derive_seed(seed, 0))
    side = torch.Generator(device=device)  # static / test binarization and test noise (re-seeded)
    if binarize is not None and test is not None:
        test = static_binarize(test)  # the book's one test protocol, whatever the training seed
    if binarize == "static":
        train = _bernoulli(train, side.manual_seed(_derive_seed(seed, _SEED_STATIC)))
    dynamic = binarize == "dynamic"

    history = History()
    start_epoch, global_step = 0, 0
    ckpt = None
    if resume and Path(checkpoint_path).exists():
        ckpt = load_checkpoint(checkpoint_path, map_location=device)  # verified before use
        check_compatible(ckpt, model, source=str(checkpoint_path))
        rng = ckpt.get("rng")
        if type(ckpt.get("global_step")) is not int or not isinstance(rng, dict) or not all(
                isinstance(rng.get(k), Tensor) for k in ("generator", "torch_cpu")):
            raise CheckpointError(f"cannot resume from {checkpoint_path}: it lacks fit's global step or "
                                  "random-number states (it was not written by fit)")
        saved = ckpt.get("fit_settings", {})
        for key in _RESUME_KEYS:
            if saved.get(key) != settings[key]:
                raise CheckpointError(f"cannot resume from {checkpoint_path}: it was trained with "
                                      f"{key}={saved.get(key)!r}, this call has {key}={settings[key]!r}")
        for key, what in _DIGEST_KEYS.items():
            if key in saved and saved[key] != settings[key]:
                raise CheckpointError(f"cannot resume from {checkpoint_path}: this call has other "
                                      f"{what} than the run it holds")
        if int(ckpt["epoch"]) > epochs:
            raise CheckpointError(f"cannot resume from {checkpoint_path}: it has {ckpt['epoch']} "
                                  f"epochs already, more than epochs={epochs}")
        load_checkpoint(checkpoint_path, model, optimizer, map_location=device)
        history = History.from_dict(ckpt["history"])
        start_epoch, global_step = int(ckpt["epoch"]), int(ckpt["global_step"])

    was_training = model.training
    model.train()
    bar = _progress_bar(epochs, start_epoch, progress)
    check_every = 1 if device.type == "cpu" else CUDA_NAN_CHECK_EVERY
    # The data were checked once by prepare_data; the default loss sees only slices (or Bernoulli
    # draws) of them, so the model skips its per-call value checks (a custom loss_fn keeps them).
    trusted = _trusted_values() if default_loss else contextlib.nullcontext()
    try:
        with _private_global_rng(_derive_seed(seed, _SEED_GLOBAL), device), trusted:
            if ckpt is not None:
                _set_rng_state(ckpt["rng"], generator, device)
            for epoch in range(start_epoch, epochs):
                t0 = time.perf_counter()
                perm = torch.randperm(n, generator=generator, device=device)
                sums: dict[str, Tensor] = {}
                step_losses = torch.empty(steps_per_epoch, device=device)
                last_checked = 0
                beta_eff = float(beta)
                for step in range(steps_per_epoch):
                    idx = perm[step * batch_size:(step + 1) * batch_size]
                    xb = train.index_select(0, idx)
                    if dynamic:
                        xb = _bernoulli(xb, generator, validate=False)
                    yb = None if ytrain is None else ytrain.index_select(0, idx)
                    beta_eff = warmup_beta(global_step, beta, warmup_steps)
                    loss, terms = loss_fn(model, xb, yb, beta=beta_eff, generator=generator)
                    step_losses[step] = loss.detach()
                    if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
                        _check_finite(step_losses, last_checked, step + 1, epoch, steps_per_epoch,
                                      checkpoint_path)
                        last_checked = step + 1
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    with torch.no_grad():
                        _accumulate(sums, {"loss": loss.detach()}, len(idx))
                        _accumulate(sums, terms, len(idx))
                    global_step += 1
                keys = list(sums)
                means = torch.stack([sums[k] for k in keys]).double().div(n).tolist()
                for key, value in zip(keys, means, strict=True):
                    history.train.setdefault(key, []).append(value)
                if test is not None:
                    for key, value in _evaluate_terms(model, loss_fn, test, ytest, beta_eff, side,
                                                      _derive_seed(seed, _SEED_TEST_NOISE)).items():
                        history.test.setdefault(key, []).append(value)
                history.beta.append(beta_eff)
                history.seconds.append(time.perf_counter() - t0)
                if checkpoint_path is not None:
                    save_checkpoint(checkpoint_path, model, optimizer, history, epoch=epoch + 1,
                                    extra={"global_step": global_step, "fit_settings": settings,
                                           "rng": _rng_state(generator, device)})
                bar.set_postfix(_postfix(history), refresh=False)
                bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    return history


def _check_finite(step_losses: Tensor, start: int, stop: int, epoch: int, steps_per_epoch: int,
                  checkpoint_path: str | os.PathLike | None) -> None:
    window = step_losses[start:stop]
    finite = torch.isfinite(window)
    if bool(finite.all()):
        return
    bad = start + int((~finite).nonzero()[0, 0])
    value = float(step_losses[bad])
    kept = (f"the checkpoint {checkpoint_path} of the last completed epoch is intact"
            if checkpoint_path is not None else "no checkpoint was being written")
    raise FloatingPointError(
        f"training loss became {value} at epoch {epoch + 1}, step {bad + 1} of {steps_per_epoch} "
        f"(1-based); {kept}. Try a lower lr, check the data, or use warm-up."
    )




def _progress_bar(epochs: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm  # lazy: no notebook/widget machinery at import time

    return tqdm(total=epochs, initial=initial, disable=not enabled, desc="fit", unit="epoch")


def _postfix(history: History) -> dict[str, str]:
    out = {"loss": f"{history.train['loss'][-1]:.2f}"} if "loss" in history.train else {}
    if "elbo" in history.test:
        out["test_elbo"] = f"{history.test['elbo'][-1]:.2f}"
    return out


# The model cache lives in vae_core.cache (it imports this module); its names stay reachable here.
_FROM_CACHE = frozenset({"pretrained", "cache_key", "default_cache_dir", "callable_identity"})


def __getattr__(name: str) -> Any:
    if name in _FROM_CACHE:
        from . import cache

        return getattr(cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "History", "LossFn", "CheckpointError", "fit", "elbo_loss", "warmup_beta", "prepare_data",
    "default_device", "atomic_save", "save_checkpoint", "load_checkpoint", "check_compatible",
    "load_model", "tensor_digest", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION",
]
