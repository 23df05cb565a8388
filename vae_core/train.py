"""Training: ``fit`` — seeded in-memory minibatch training with β warm-up, atomic checkpoints and
exact resume — and ``pretrained``, a deterministic on-disk cache of trained models.

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
- Checkpoints are written atomically (temp file in the same directory, fsync, ``os.replace``) and
  read with ``torch.load(weights_only=True)`` only: a file with code in it is refused, never run.
- No per-step host–device synchronisation on CUDA except a NaN/inf check every
  :data:`CUDA_NAN_CHECK_EVERY` steps; epoch sums of the terms are accumulated on the device.
  The data are validated once, up front; with the default loss the model's per-call input checks
  (NaN/inf, range: a full read of the batch and, on CUDA, a sync each) are skipped inside the loop.

Used by: chapters 4-7 (training every model of the book), benchmarks (``benchmarks/``, issue 7).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import math
import os
import pickle
import pickletools
import re
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from . import __version__
from .checks import _trusted_values, check_batch, check_non_negative, check_positive_int
from .data import binarize as _bernoulli  # `binarize` is also fit's argument name
from .data import static_binarize
from .distributions import gaussian_kl, reparameterize
from .objectives import KL_MODES, elbo

CHECKPOINT_FORMAT = "vae_core.checkpoint"
CHECKPOINT_VERSION = 1
BINARIZE_MODES = ("dynamic", "static", None)
CUDA_NAN_CHECK_EVERY = 50
"""On CUDA the loss is checked for NaN/inf every this many steps (and at each epoch end) to avoid a
host sync per step; on CPU it is checked before every optimizer step."""
EVAL_BATCH_SIZE = 1024
"""Examples per forward pass when evaluating the test set at the end of each epoch."""

# Offsets that derive independent seeds from the user's ``seed`` (arbitrary distinct constants).
_SEED_GLOBAL, _SEED_STATIC, _SEED_TEST_NOISE = 0x5EED0001, 0x5EED0002, 0x5EED0004


class CheckpointError(ValueError):
    """A file is not a usable vae_core checkpoint: corrupt, foreign, unsafe, or another architecture."""


class LossFn(Protocol):
    """Signature of a training loss for :func:`fit` (the default is :func:`elbo_loss`).

    Called as ``loss_fn(model, x, y, beta=β_eff, generator=g)`` with x: (batch, x_dim) in [0, 1] on the
    training device, y: (batch,) labels or None, β_eff the warmed-up β of this step and g the seeded
    generator to draw noise from. Returns ``(loss, terms)``: a scalar to minimise (mean over the batch)
    and a mapping of per-example terms, each (batch,) in nats (e.g. ``{"elbo", "rec", "kl"}``), whose
    epoch means go into :class:`History`. Wrap other signatures in a small function, e.g. for a
    conditional VAE ``lambda m, x, y, *, beta, generator: elbo_loss(m.given(y), x, beta=beta,
    generator=generator)``; a 0-d term is taken as the batch mean.

    Used by: chapter 7 (conditional VAE, M2).
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

    Used by: :func:`fit` (default loss), chapter 6 (free bits against posterior collapse).
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
# Checkpoints
# --------------------------------------------------------------------------------------------------


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    return dict(config()) if callable(config) else None


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically: write a temp file in the same directory, fsync it, then
    ``os.replace`` it onto ``path``. A crash at any point leaves either the old file or the new one,
    never a half-written file, and no temp file behind (best effort on a hard kill)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX); harmless elsewhere
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, history: History | None = None,
                    *, epoch: int = 0, extra: Mapping[str, Any] | None = None) -> None:
    """Write a checkpoint atomically (see :func:`atomic_save`).

    Contents (all tensors / primitive types, loadable with ``weights_only=True``): ``format`` and
    ``format_version``, ``vae_core_version``, ``model_class`` (class name) and ``model_config``
    (``model.config()``), ``model_state`` (state_dict), ``optimizer_state``, ``history``
    (:meth:`History.to_dict`), ``epoch`` (epochs completed) and anything in ``extra`` (fit stores its
    RNG states, global step and settings there).
    """
    ckpt: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "vae_core_version": __version__,
        "model_class": type(model).__name__,
        "model_config": _model_config(model),
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "history": (history or History()).to_dict(),
        "epoch": int(epoch),
    }
    if extra:
        ckpt.update(extra)
    atomic_save(ckpt, path)


_CODE_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"})


def _raw_pickle_imports_code(path: Path) -> bool:
    """Whether a pickle file (plain, or the ``data.pkl`` inside torch's zip format) asks to import or
    call something. Parsed with ``pickletools.genops``, which only reads opcodes and never executes
    them. False when the file is not a pickle at all (garbage, JSON, truncated)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                blob = archive.read(names[0]) if names else b""
        else:
            blob = path.read_bytes()
        return any(op.name in _CODE_OPCODES for op, _, _ in pickletools.genops(blob))
    except Exception:
        return False


def _torch_load_safely(path: Path, map_location: Any) -> Any:
    """torch.load(weights_only=True) with every failure turned into a CheckpointError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4" from foreign pickles
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        message = str(e)
        offending = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", message)
        if offending or _raw_pickle_imports_code(path):
            what = f" ({offending.group(1)})" if offending else ""
            raise CheckpointError(
                f"{path} was refused: it asks to import or call Python code{what}, which a checkpoint "
                "never does. It was read with torch.load(weights_only=True), so nothing in it was "
                "executed; do not load it with weights_only=False unless you trust its source."
            ) from None
        raise CheckpointError(f"{path} is not a valid checkpoint: it is corrupt or not a torch file "
                              "(unreadable pickle)") from None
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, zipfile.BadZipFile,
            AttributeError, IndexError, TypeError) as e:
        raise CheckpointError(
            f"{path} is not a valid checkpoint: it is corrupt, truncated or not a torch file "
            f"({type(e).__name__})"
        ) from None


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` / :func:`fit`, safely.

    Only ``torch.load(path, weights_only=True)`` is used: a pickle with code in it is refused and
    nothing in it runs. If ``model`` is given, its class and ``config()`` must match the checkpoint's
    (the error names the mismatch, e.g. "checkpoint has z_dim=2 but model has z_dim=20") and its
    parameters are loaded; likewise the optimizer state if ``optimizer`` is given.
    Returns the checkpoint dict (``history`` as a plain dict: use :meth:`History.from_dict`).
    Raises FileNotFoundError if the file is missing, :class:`CheckpointError` for a corrupt, foreign,
    unsafe or mismatched file.

    Used by: :func:`fit` (resume), :func:`pretrained`, appendix (reproducibility).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = _torch_load_safely(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a vae_core checkpoint "
                              f"(no format={CHECKPOINT_FORMAT!r} marker)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this vae_core "
                              f"({__version__}) reads versions <= {CHECKPOINT_VERSION}")
    if model is not None:
        check_compatible(ckpt, model, source=str(path))
        try:
            model.load_state_dict(ckpt["model_state"])
        except RuntimeError as e:
            raise CheckpointError(f"{path}: parameters do not fit the model: {e}") from None
    if optimizer is not None:
        if ckpt.get("optimizer_state") is None:
            raise CheckpointError(f"{path} has no optimizer state to resume from")
        optimizer.load_state_dict(ckpt["optimizer_state"])
    return ckpt


def check_compatible(ckpt: Mapping[str, Any], model: nn.Module, source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming the first difference between the checkpoint's
    architecture (class and config) and ``model``'s."""
    cls = type(model).__name__
    if ckpt.get("model_class") != cls:
        raise CheckpointError(f"{source}: checkpoint is a {ckpt.get('model_class')} but model is a {cls}")
    saved, mine = ckpt.get("model_config"), _model_config(model)
    if saved is None or mine is None:
        return  # no config() to compare: load_state_dict will check shapes
    for key in sorted(set(saved) | set(mine)):
        if saved.get(key) != mine.get(key):
            raise CheckpointError(f"{source}: checkpoint has {key}={saved.get(key)!r} but model has "
                                  f"{key}={mine.get(key)!r}")


def load_model(path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
               ) -> tuple[nn.Module, History]:
    """Rebuild a model of :mod:`vae_core.models` from a checkpoint: (model, history).

    The class is looked up by name in :mod:`vae_core.models` only (never imported from the file).
    """
    from . import models

    ckpt = load_checkpoint(path, map_location=map_location)
    cls = getattr(models, str(ckpt.get("model_class")), None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or ckpt.get("model_config") is None:
        raise CheckpointError(f"{path}: cannot rebuild model class {ckpt.get('model_class')!r} "
                              "(not in vae_core.models or no config); build it and pass model=")
    model = cls(**ckpt["model_config"])
    model.load_state_dict(ckpt["model_state"])
    if map_location is not None:
        model.to(map_location)
    return model, History.from_dict(ckpt["history"])


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


def _validate_hparams(epochs: int, batch_size: int, lr: float, beta: float, warmup_epochs: float,
                      free_bits: float, binarize: str | None, kl: str, n_samples: int) -> None:
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(n_samples, "n_samples")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (0 < lr < math.inf):
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
            fit settings must equal the interrupted run's (``epochs`` may grow). The result equals
            the uninterrupted run's bitwise.
        progress: show a ``tqdm.auto`` bar over epochs (stderr / a notebook widget).
        loss_fn: custom loss, see :class:`LossFn` (default :func:`elbo_loss`); needed for labels.
        train_y, test_y: (N,) labels passed batch by batch to ``loss_fn`` (conditional VAE, M2).

    Returns:
        :class:`History` with per-epoch means of the loss terms (nats per example) on train and test.

    Raises:
        ValueError/TypeError for bad hyperparameters or data (before any training);
        FloatingPointError naming epoch and step if the loss becomes NaN or inf (the checkpoint of
        the last completed epoch is left intact); :class:`CheckpointError` for an unusable checkpoint.

    Used by: chapters 4-7 (directly or through :func:`pretrained`), benchmarks (issue 7, "B").
    """
    _validate_hparams(epochs, batch_size, lr, beta, warmup_epochs, free_bits, binarize, kl, n_samples)
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path")
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

    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
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
        ckpt = load_checkpoint(checkpoint_path, model, optimizer, map_location=device)
        saved = ckpt.get("fit_settings", {})
        for key in _RESUME_KEYS:
            if saved.get(key) != settings[key]:
                raise CheckpointError(f"cannot resume from {checkpoint_path}: it was trained with "
                                      f"{key}={saved.get(key)!r}, this call has {key}={settings[key]!r}")
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


_FIT_SIGNATURE = inspect.signature(fit)


def _progress_bar(epochs: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm  # lazy: no notebook/widget machinery at import time

    return tqdm(total=epochs, initial=initial, disable=not enabled, desc="fit", unit="epoch")


def _postfix(history: History) -> dict[str, str]:
    out = {"loss": f"{history.train['loss'][-1]:.2f}"} if "loss" in history.train else {}
    if "elbo" in history.test:
        out["test_elbo"] = f"{history.test['elbo'][-1]:.2f}"
    return out


# --------------------------------------------------------------------------------------------------
# Deterministic cache of trained models
# --------------------------------------------------------------------------------------------------

# fit arguments that do not change the trained parameters, hence not part of the cache key
_NOT_IN_KEY = frozenset({"model", "train_x", "test_x", "train_y", "test_y", "progress", "device",
                         "checkpoint_path", "resume"})
# the modules whose source determines what training produces
_KEY_MODULES = ("data.py", "checks.py", "distributions.py", "models.py", "objectives.py", "train.py")


def default_cache_dir() -> Path:
    """``$VAE_CORE_CACHE`` or ``~/.cache/vae_core`` (read at call time)."""
    return Path(os.environ.get("VAE_CORE_CACHE", Path.home() / ".cache" / "vae_core"))


def tensor_digest(x: Tensor | np.ndarray | None) -> str | None:
    """sha256 of a tensor's dtype, shape and bytes (≈0.1 s for 60k×784 uint8 on one core)."""
    if x is None:
        return None
    arr = np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x))
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def _library_digest() -> str:
    """sha256 of the source of the modules that determine training (any edit invalidates the cache)."""
    here = Path(__file__).parent
    h = hashlib.sha256(__version__.encode())
    for name in _KEY_MODULES:
        p = here / name
        h.update(name.encode() + (p.read_bytes() if p.exists() else b""))
    return h.hexdigest()


def _callable_identity(fn: Callable[..., Any] | None) -> str | None:
    if fn is None:
        return None
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return name
    return f"{name}:{hashlib.sha256(source.encode()).hexdigest()}"


def cache_key(model_class: type[nn.Module], config: Mapping[str, Any], train_x: Any, test_x: Any = None,
              *, data_key: str | None = None, device: torch.device | str | None = None,
              **fit_kwargs: Any) -> tuple[str, dict[str, Any]]:
    """The key of :func:`pretrained`: (hex sha256, the JSON-able description it hashes).

    It hashes: the model class (module + name) and its constructor config; every argument of
    :func:`fit` that changes the result, with defaults filled in (so ``lr=1e-3`` and no ``lr`` are the
    same key; ``progress``, ``checkpoint_path`` are not part of it); the identity of the data — the
    sha256 of the bytes of ``train_x``, ``test_x`` and labels, or ``data_key`` when given (then
    the caller vouches that the key names the data); the source of the vae_core modules that
    determine training (any edit retrains); the torch version; and the device type (CPU and CUDA
    give different bits).
    """
    bound = _FIT_SIGNATURE.bind(None, train_x, test_x, **fit_kwargs)
    bound.apply_defaults()
    fit_args = {k: v for k, v in bound.arguments.items() if k not in _NOT_IN_KEY}
    fit_args["loss_fn"] = _callable_identity(fit_args.get("loss_fn"))
    dev = torch.device(device) if device is not None else default_device()
    if data_key is not None:
        data: Any = {"data_key": str(data_key)}
    else:
        data = {name: tensor_digest(bound.arguments.get(name))
                for name in ("train_x", "test_x", "train_y", "test_y")}
    description = {
        "model_class": f"{model_class.__module__}.{model_class.__qualname__}",
        "config": dict(config),
        "fit": fit_args,
        "data": data,
        "library": _library_digest(),
        "torch": torch.__version__,
        "device": dev.type,
    }
    blob = json.dumps(description, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest(), description


def pretrained(config: Mapping[str, Any], train_x: Tensor | np.ndarray,
               test_x: Tensor | np.ndarray | None = None, *,
               model_class: type[nn.Module] | str = "VAE", data_key: str | None = None,
               cache_dir: str | os.PathLike | None = None, **fit_kwargs: Any) -> tuple[nn.Module, History]:
    """A trained model, from the cache if this exact training was done before, else trained and cached.

    ``model_class(**config)`` is built with its initial parameters drawn from ``seed`` (a fit
    argument, default 0), trained by ``fit(model, train_x, test_x, **fit_kwargs)`` and saved
    atomically to ``cache_dir`` (default :func:`default_cache_dir`) under the :func:`cache_key`.
    The next call with the same key — from any notebook, in any order — loads it instead
    (``weights_only=True``) and returns the same parameters and the same :class:`History`, so plots
    are identical. Nothing is printed either way (the progress bar, on stderr, is drawn complete on a
    cache hit). A corrupt cache file is replaced by retraining (with a warning).

    config: constructor arguments, e.g. ``{"x_dim": 784, "h_dim": 400, "z_dim": 20}``.
    model_class: a class or the name of one in :mod:`vae_core.models`.
    Returns (model on the fit device, history).

    Used by: chapters 4-7 (sharing the 784-400-20 and 784-256-2 models between notebooks).
    """
    if isinstance(model_class, str):
        from . import models

        cls = getattr(models, model_class, None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(f"vae_core.models has no model class {model_class!r}")
        model_class = cls
    if "model" in fit_kwargs:
        raise TypeError("pretrained builds the model itself from config; do not pass model=")
    key, description = cache_key(model_class, config, train_x, test_x, data_key=data_key, **fit_kwargs)
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / f"{model_class.__name__}-{key[:24]}.pt"
    seed = fit_kwargs.get("seed", 0)
    with _private_global_rng(_derive_seed(seed, 0x1A17), torch.device("cpu")):
        model = model_class(**config)
    device = fit_kwargs.get("device")
    device = torch.device(device) if device is not None else default_device()
    if path.exists():
        try:
            ckpt = load_checkpoint(path, model, map_location="cpu")
            if ckpt.get("cache_key") != key:
                raise CheckpointError(f"{path} holds another training (key mismatch)")
        except CheckpointError as e:
            warnings.warn(f"ignoring unusable cached model ({e}); retraining", stacklevel=2)
        else:
            history = History.from_dict(ckpt["history"])
            model.to(device)
            bar = _progress_bar(history.epochs, 0, fit_kwargs.get("progress", True))
            bar.set_postfix(_postfix(history), refresh=False)
            bar.update(history.epochs)
            bar.close()
            return model, history
    history = fit(model, train_x, test_x, **fit_kwargs)
    cpu_state = copy.deepcopy(model).to("cpu")
    save_checkpoint(path, cpu_state, None, history, epoch=history.epochs,
                    extra={"cache_key": key, "cache_description": json.dumps(description, default=repr)})
    return model, history


__all__ = [
    "History", "LossFn", "CheckpointError", "fit", "elbo_loss", "warmup_beta", "prepare_data",
    "default_device", "atomic_save", "save_checkpoint", "load_checkpoint", "check_compatible",
    "load_model", "pretrained", "cache_key", "default_cache_dir", "tensor_digest",
]
