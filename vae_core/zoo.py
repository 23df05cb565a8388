"""The trained models the chapters share, defined in one place: architecture, data and training settings.

Chapter 4 trains them, chapter 5 explores them, and the browser test of chapter 5 rebuilds the decoder
it compares the page against — all through :func:`book_model`, which calls
:func:`vae_core.train.pretrained` with exactly the arguments below. Whoever calls first trains the
model and caches it; every later call (any notebook, any order, a test) loads the same parameters.

- ``"vae20"``: VAE 784-400-20, the main model (the architecture of Kingma & Welling 2014).
- ``"vae2"``: VAE 784-256-2, small enough to draw its whole latent space.

Both: Bernoulli decoder on logits, Adam (lr 1e-3), batches of 128, dynamic binarization, seed 0, and
:data:`EPOCHS` epochs on the chosen data set (50 on the 4,000 training digits of ``mnist-5k``).

Used by: chapters 4-5 (and later chapters that reuse the main model), tests/test_ch05_static_sliders.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from . import data, train

BOOK_MODELS: dict[str, dict[str, Any]] = {
    "vae20": {"x_dim": 784, "h_dim": 400, "z_dim": 20},
    "vae2": {"x_dim": 784, "h_dim": 256, "z_dim": 2},
}
"""Constructor arguments of :class:`vae_core.models.VAE` for each named model."""

FIT_SETTINGS: dict[str, Any] = {"batch_size": 128, "lr": 1e-3, "binarize": "dynamic", "seed": 0}
"""Arguments of :func:`vae_core.train.fit` shared by every book model (besides ``epochs``)."""

BOOK_THREADS = 1
"""CPU threads torch uses while a book model is trained or looked up. One and two threads round matrix
products differently (so the cache keys the thread count): pinning it gives every chapter, test and
machine, whatever its core count or the caller's setting, the same parameters — and keeps two
notebooks run side by side (``make test``) from fighting over the cores."""
EPOCHS: dict[str, int] = {"mnist-5k": 50, "mnist": 10, "fashion-mnist": 10}
"""Training epochs per data set: 50 × 32 steps on mnist-5k; 10 × 469 steps on the 60k sets."""


def pretrained_kwargs(name: str, dataset: str = "mnist-5k", *, epochs: int | None = None,
                      **overrides: Any) -> dict[str, Any]:
    """The keyword arguments :func:`book_model` passes to :func:`vae_core.train.pretrained`, minus the
    data: ``{"config": ..., "model_class": "VAE", "epochs": ..., **FIT_SETTINGS, **overrides}``.

    epochs: default :data:`EPOCHS` [dataset]. Training with fewer epochs reproduces the first epochs
    of the full run exactly (same seed, same batches), which chapter 4 uses to show the model after
    epoch 1, 3, 10. overrides: other ``fit`` arguments (e.g. ``beta``) for variants of a book model.
    Raises ValueError naming the choices for an unknown model or data set.
    """
    if name not in BOOK_MODELS:
        raise ValueError(f"unknown book model {name!r}; choose one of {sorted(BOOK_MODELS)}")
    if dataset not in EPOCHS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(EPOCHS)}")
    if "config" in overrides or "model_class" in overrides:
        raise TypeError("a book model's config and class are fixed; use train.pretrained directly")
    kwargs: dict[str, Any] = {"config": dict(BOOK_MODELS[name]), "model_class": "VAE",
                              "epochs": EPOCHS[dataset] if epochs is None else epochs}
    kwargs.update(FIT_SETTINGS)
    kwargs.update(overrides)
    return kwargs


def show_progress() -> bool:
    """Whether training progress bars are drawn by default: when someone is watching.

    True in a kernel started by a Jupyter server (JupyterLab and Notebook set ``JPY_SESSION_NAME``) and
    in a terminal; False when a notebook is executed headless (``make book``, nbval, nbconvert), where
    a bar would only add a widget (and the widget JavaScript) to the built page.
    """
    return "JPY_SESSION_NAME" in os.environ or sys.stderr.isatty()


def book_model(name: str, dataset: str = "mnist-5k", *, epochs: int | None = None,
               progress: bool | None = None, cache_dir: str | None = None,
               **overrides: Any) -> tuple[nn.Module, train.History]:
    """The trained book model ``name`` on ``dataset``: (model, history), from the cache when present.

    Loads the train and test splits with :func:`vae_core.data.load` and calls
    :func:`vae_core.train.pretrained` with :func:`pretrained_kwargs` (the test split gives the
    per-epoch test curves of the history). progress: draw the epoch bar (tqdm.auto: a widget in
    JupyterLab); default :func:`show_progress`. cache_dir: as in ``pretrained`` (default
    ``$VAE_CORE_CACHE`` or ``~/.cache/vae_core``). Trained and looked up with :data:`BOOK_THREADS`
    CPU threads, whatever the caller's setting (restored on return).
    """
    if progress is None:
        progress = show_progress()
    kwargs = pretrained_kwargs(name, dataset, epochs=epochs, **overrides)
    train_set = data.load(dataset, "train")
    test_set = data.load(dataset, "test")
    config = kwargs.pop("config")
    with cpu_threads(BOOK_THREADS):
        return train.pretrained(config, train_set.images, test_set.images, cache_dir=cache_dir,
                                progress=progress, **kwargs)


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``; the caller's thread count is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def describe(name: str, dataset: str = "mnist-5k", **kwargs: Any) -> Mapping[str, Any]:
    """A short printable summary of a book model's settings, e.g. for a notebook cell."""
    spec = pretrained_kwargs(name, dataset, **kwargs)
    config = spec.pop("config")
    arch = f"{config['x_dim']}-{config['h_dim']}-{config['z_dim']}"
    return {"model": name, "architecture": arch, "dataset": dataset, **spec}


__all__ = ["BOOK_MODELS", "BOOK_THREADS", "FIT_SETTINGS", "EPOCHS", "cpu_threads", "pretrained_kwargs",
           "book_model", "describe", "show_progress"]
