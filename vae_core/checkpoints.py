"""Checkpoint files: written atomically, read safely, verified before use.

A checkpoint is a dict of tensors and plain values saved with ``torch.save`` and read with
``torch.load(weights_only=True)`` only, so a file with code in it is refused and nothing in it runs.
Format version 2 stores ``state_digest``, the sha256 of every tensor of the model state (names,
dtypes, shapes and bytes): a flipped bit anywhere in the weights is detected on load, before the
weights reach a model, and the file is refused with :class:`CheckpointError` naming it.

Used by: :mod:`vae_core.train` (``fit``'s resumable checkpoints), :mod:`vae_core.cache` (the model
cache), chapter 4 and the reproducibility appendix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pickle
import pickletools
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from . import __version__

if TYPE_CHECKING:  # imported lazily at run time: train imports this module
    from .train import History

CHECKPOINT_FORMAT = "vae_core.checkpoint"
CHECKPOINT_VERSION = 2
"""2: adds ``state_digest``. Version 1 files (no digest) are still read."""
MAX_CONFIG_INT = 1 << 20
"""Largest integer a model config may hold (a dimension): refuses absurd sizes before allocating."""


class CheckpointError(ValueError):
    """A file is not a usable vae_core checkpoint: corrupt, foreign, unsafe, or another architecture."""


def state_digest(state: Mapping[str, Any]) -> str:
    """sha256 (hex) of a state dict: each entry's name, dtype, shape and bytes, in name order.

    state: e.g. ``model.state_dict()`` (tensors; other values are hashed by their repr).
    """
    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        h.update(name.encode() + b"\0")
        if isinstance(value, Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def tensor_digest(x: Tensor | np.ndarray | None) -> str | None:
    """sha256 of a tensor's dtype, shape and bytes (≈0.1 s for 60k×784 uint8 on one core); None → None.

    Used by: ``fit`` (what a resumable checkpoint was trained on), the model cache's key.
    """
    if x is None:
        return None
    arr = np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x))
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B") if arr.size else b"")
    return h.hexdigest()


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically: write a temp file in the same directory, fsync it, then
    ``os.replace`` it onto ``path``. A crash at any point leaves either the old file or the new one,
    never a half-written file, and no temp file behind (best effort on a hard kill). The file's mode
    follows the umask, like any file the user creates. A full disk raises ``OSError(ENOSPC)`` saying
    that the previous file is intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _is_disk_full(e):
            raise OSError(errno.ENOSPC, f"disk full while writing {path}; the previous file there (if "
                          "any) is intact") from e
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX); harmless elsewhere
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    # torch's zip writer reports ENOSPC as "RuntimeError: [enforce fail at inline_container.cc ...]"
    return isinstance(e, RuntimeError) and ("No space left" in str(e) or "file write failed" in str(e))


def check_writable(path: str | os.PathLike) -> Path:
    """Make sure a checkpoint can be written at ``path`` *before* long work: its folder exists (or can
    be created), is a folder, and accepts a new file. Returns the path; raises :class:`CheckpointError`
    naming the problem."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CheckpointError(f"cannot write {path}: a file is in the way of its folder") from None
    except PermissionError:
        raise CheckpointError(f"cannot create the folder of {path}: permission denied") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
    except OSError as e:
        raise CheckpointError(f"cannot write into {path.parent}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(tmp)
    return path


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    return dict(config()) if callable(config) else None


def save_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, history: History | None = None,
                    *, epoch: int = 0, extra: Mapping[str, Any] | None = None) -> None:
    """Write a checkpoint atomically (see :func:`atomic_save`).

    Contents (all tensors / primitive types, loadable with ``weights_only=True``): ``format`` and
    ``format_version``, ``vae_core_version``, ``model_class`` (class name) and ``model_config``
    (``model.config()``), ``model_state`` (state_dict) and its ``state_digest``, ``optimizer_state``,
    ``history`` (``History.to_dict()``), ``epoch`` (epochs completed) and anything in ``extra`` (fit
    stores its RNG states, global step, settings and data digests there).
    """
    state = model.state_dict()
    ckpt: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "vae_core_version": __version__,
        "model_class": type(model).__name__,
        "model_config": _model_config(model),
        "model_state": state,
        "state_digest": state_digest(state),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "history": history.to_dict() if history is not None else
        {"train": {}, "test": {}, "beta": [], "seconds": []},
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
            AttributeError, IndexError, TypeError, MemoryError) as e:
        raise CheckpointError(
            f"{path} is not a valid checkpoint: it is corrupt, truncated or not a torch file "
            f"({type(e).__name__})"
        ) from None


def _validate(ckpt: Any, path: Path) -> dict[str, Any]:
    """Every structural check of a loaded checkpoint dict, before any of it is used."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a vae_core checkpoint "
                              f"(no format={CHECKPOINT_FORMAT!r} marker)")
    version = ckpt.get("format_version")
    if type(version) is not int or not 1 <= version <= CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this vae_core "
                              f"({__version__}) reads versions 1 to {CHECKPOINT_VERSION}")
    state = ckpt.get("model_state")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path} has no usable model_state (a dict of named tensors)")
    if version >= 2:
        if ckpt.get("state_digest") != state_digest(state):
            raise CheckpointError(f"{path} is damaged: its weights do not match the digest stored "
                                  "with them (a changed or flipped byte); delete it or retrain")
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path} holds non-finite values (NaN or inf) in {name}")
    config = ckpt.get("model_config")
    if config is not None:
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: model_config is not a dict")
        for key, value in config.items():
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CONFIG_INT:
                raise CheckpointError(f"{path}: model_config {key}={value} is not a plausible size")
    epoch = ckpt.get("epoch", 0)
    if type(epoch) is not int or epoch < 0:
        raise CheckpointError(f"{path}: epoch {epoch!r} is not a count of epochs")
    history = ckpt.setdefault("history", {"train": {}, "test": {}, "beta": [], "seconds": []})
    if not isinstance(history, dict):
        raise CheckpointError(f"{path}: history is not a dict")
    from .train import History  # train imports this module

    try:
        History.from_dict(history)
    except (TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: its history is not lists of numbers ({type(e).__name__})") from None
    return ckpt


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` / ``fit``, safely and verified.

    Only ``torch.load(path, weights_only=True)`` is used: a pickle with code in it is refused and
    nothing in it runs. The file's structure, its format version, the digest of its weights and their
    finiteness are checked before anything is used. If ``model`` is given, its class and
    ``config()`` must match the checkpoint's (the error names the mismatch, e.g. "checkpoint has
    z_dim=2 but model has z_dim=20") and its parameters are loaded; likewise the optimizer state.
    Returns the checkpoint dict (``history`` as a plain dict: use ``History.from_dict``).
    Raises FileNotFoundError if the file is missing, :class:`CheckpointError` for a corrupt, damaged,
    foreign, unsafe or mismatched file.

    Used by: ``vae_core.train.fit`` (resume), ``vae_core.cache.pretrained``, appendix
    (reproducibility).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = _validate(_torch_load_safely(path, map_location), path)
    if model is not None:
        check_compatible(ckpt, model, source=str(path))
        try:
            model.load_state_dict(ckpt["model_state"])
        except RuntimeError as e:
            raise CheckpointError(f"{path}: parameters do not fit the model: {e}") from None
    if optimizer is not None:
        if ckpt.get("optimizer_state") is None:
            raise CheckpointError(f"{path} has no optimizer state to resume from")
        try:
            optimizer.load_state_dict(ckpt["optimizer_state"])
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{path}: optimizer state does not fit ({type(e).__name__})") from None
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


def model_class_named(name: str) -> type[nn.Module] | None:
    """The ``nn.Module`` class called ``name`` defined in one of vae_core's own modules, or None.

    Looks in :mod:`vae_core.models` first, then in every other module of the package (so a chapter's
    module, e.g. :mod:`vae_core.conv`, needs no registration); a class is found only in the module
    that defines it. Nothing outside vae_core is imported.
    """
    import importlib
    import pkgutil

    package = importlib.import_module(__package__)
    names = ["models"] + sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                                if m.name != "models")
    for module_name in names:
        module = importlib.import_module(f"{__package__}.{module_name}")
        cls = getattr(module, str(name), None)
        if isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == module.__name__:
            return cls
    return None


def load_model(path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
               ) -> tuple[nn.Module, History]:
    """Rebuild a model of vae_core from a checkpoint: (model, history).

    The class is looked up by name among vae_core's modules (:func:`model_class_named`; never
    imported from the file); the checkpoint is verified (:func:`load_checkpoint`) before the model
    is built.
    """
    from .train import History

    ckpt = load_checkpoint(path, map_location=map_location)
    cls = model_class_named(str(ckpt.get("model_class")))
    if cls is None or ckpt.get("model_config") is None:
        raise CheckpointError(f"{path}: cannot rebuild model class {ckpt.get('model_class')!r} "
                              "(not a vae_core model or no config); build it and pass model=")
    try:
        model = cls(**ckpt["model_config"])
        model.load_state_dict(ckpt["model_state"])
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its config and weights do not build a {cls.__name__} "
                              f"({type(e).__name__}: {e})") from None
    if map_location is not None:
        model.to(map_location)
    return model, History.from_dict(ckpt["history"])


__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "state_digest", "tensor_digest",
           "atomic_save",
           "check_writable", "save_checkpoint", "load_checkpoint", "check_compatible", "load_model"]
