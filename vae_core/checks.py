"""Input validation shared by the library: bad input gets a clear error, never a silent wrong answer.

Used by: :mod:`vae_core.models`, :mod:`vae_core.objectives`, :mod:`vae_core.train`,
:mod:`vae_core.evaluate`.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import Tensor

_VALUES_TRUSTED: ContextVar[bool] = ContextVar("vae_core_values_trusted", default=False)


@contextlib.contextmanager
def _trusted_values() -> Iterator[None]:
    """Private: inside this block :func:`check_batch` checks type and shape only, and skips the value
    checks (NaN/inf, the [0, 1] range), which read every element and, on a GPU, each wait for the
    device (a host-device synchronisation).

    For a caller that has already checked the values once, such as :func:`vae_core.train.fit`: its
    batches are slices, or Bernoulli draws, of data that ``prepare_data`` checked up front, so checking
    them again at every step only costs time (about 5% of a CPU training step, measured by
    ``benchmarks/``; six host syncs per step on CUDA). Not for user code: an unchecked NaN gives a NaN
    loss instead of a clear error. Nests, and is local to the thread / async task (a ContextVar).
    """
    token = _VALUES_TRUSTED.set(True)
    try:
        yield
    finally:
        _VALUES_TRUSTED.reset(token)


def check_batch(x: Tensor, x_dim: int, *, unit_interval: bool = True, name: str = "x",
                dtype: torch.dtype | None = None) -> Tensor:
    """Check that x is a finite float batch of shape (batch, x_dim), in [0, 1] if ``unit_interval``,
    of ``dtype`` if given (the model's parameter dtype).

    Returns x unchanged. Raises TypeError/ValueError naming what is wrong and how to fix it.
    Inside :func:`_trusted_values` (fit's training loop) only the type and shape are checked.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{name} must be a float tensor (got {x.dtype}); convert uint8 images with "
            "vae_core.data.to_unit_float(x) or x.float() / 255"
        )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} is {x.dtype} but the model's parameters are {dtype}; "
                        f"convert it with {name}.to({dtype})")
    if x.dim() != 2 or x.shape[1] != x_dim:
        raise ValueError(
            f"{name} must have shape (batch, {x_dim}), got {tuple(x.shape)}; "
            f"flatten images with x.reshape(len(x), -1)"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); pass at least one example")
    if _VALUES_TRUSTED.get():
        return x
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    if unit_interval and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} has values in [{x.min().item():.3g}, {x.max().item():.3g}], outside [0, 1]: "
            "a Bernoulli likelihood needs pixel intensities in [0, 1] (divide uint8 images by 255)"
        )
    return x


def values_trusted() -> bool:
    """Whether value checks are switched off (inside ``fit``'s loop, see :func:`_trusted_values`)."""
    return _VALUES_TRUSTED.get()


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Check that ``value`` is an integer ≥ ``minimum`` (e.g. z_dim, k, n_samples); return it as an int.

    Python ints and integer scalars that support ``__index__`` (``numpy.int64``, e.g. from
    ``np.arange``) are accepted; bools, floats (even 3.0) and strings are not.
    """
    if isinstance(value, bool) or not hasattr(type(value), "__index__") or isinstance(value, Tensor):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    as_int = operator.index(value)
    if as_int < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return as_int


def check_non_negative(value: float, name: str) -> float:
    """Check that ``value`` is a finite float ≥ 0 (e.g. β, free bits)."""
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a finite number >= 0, got {value!r}") from err
    if not (value >= 0.0) or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value
