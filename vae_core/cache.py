"""The cache of trained models: train once, then every chapter loads the same parameters.

:func:`pretrained` keys a training by everything that determines its result (:func:`cache_key`):
the model class and config, every ``fit`` argument that changes the parameters, the data, the source
of the vae_core modules that determine training, the torch version, the device type and the CPU
thread count. A custom ``loss_fn`` is keyed by what it computes with — its code, the values it
captured, its defaults and the globals it reads — and a function whose captured values cannot be
keyed is refused, with the fix.

A cache entry is a verified checkpoint (:mod:`vae_core.checkpoints`). A damaged entry, or one that
holds another training, is never loaded into the model: it is retrained from the same
initialisation as a clean run, with a warning. A cache that cannot be written (read-only, disk full)
costs the caching, not the trained model.

Used by: chapters 4-11 (through :mod:`vae_core.zoo` and directly), the benchmarks.
"""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import inspect
import json
import os
import types
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import __version__
from .checkpoints import (
    CheckpointError,
    check_compatible,
    load_checkpoint,
    model_class_named,
    save_checkpoint,
    tensor_digest,
)
from .train import History, _derive_seed, _postfix, _private_global_rng, _progress_bar, default_device, fit

# fit arguments that do not change the trained parameters, hence not part of the cache key
_NOT_IN_KEY = frozenset({"model", "train_x", "test_x", "train_y", "test_y", "progress", "device",
                         "checkpoint_path", "resume", "overwrite"})
# the modules whose source determines what training produces
_KEY_MODULES = ("data.py", "checks.py", "distributions.py", "models.py", "objectives.py", "train.py")
_FIT_SIGNATURE = inspect.signature(fit)
# packages whose functions are keyed by name (their code changes with the version or library digest)
_LIBRARIES = frozenset({"vae_core", "torch", "numpy", "math", "functools", "builtins"})


def default_cache_dir() -> Path:
    """``$VAE_CORE_CACHE`` or ``~/.cache/vae_core`` (read at call time). An empty variable is an
    error, not the current folder."""
    value = os.environ.get("VAE_CORE_CACHE")
    if value is None:
        return Path.home() / ".cache" / "vae_core"
    if not value.strip():
        raise ValueError("VAE_CORE_CACHE is set but empty; unset it or name a folder")
    return Path(value)


_HERE = Path(__file__).parent  # the package's folder (a test points it at a copy)


def _library_digest() -> str:
    """sha256 of the source of the modules that determine training (any edit invalidates the cache)."""
    here = _HERE
    h = hashlib.sha256(__version__.encode())
    for name in _KEY_MODULES:
        p = here / name
        h.update(name.encode() + (p.read_bytes() if p.exists() else b""))
    return h.hexdigest()


def _vae_core_imports(name: str) -> set[str]:
    """The vae_core modules (file names) that module ``name`` (a file name) imports, directly."""
    tree = ast.parse((_HERE / name).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0] + ".py")
            else:
                found |= {alias.name + ".py" for alias in node.names}
    return {f for f in found if (_HERE / f).exists()}


def _extra_sources(modules: set[str]) -> dict[str, str]:
    """sha256 of each vae_core module outside the core digest that ``modules`` (dotted names) reach
    through vae_core's own imports (transitively). Empty for models and losses of the core modules,
    so adding a module to the library retrains only the models that use it."""
    here = _HERE
    todo = {m.split(".", 1)[1].split(".")[0] + ".py" for m in modules
            if m.startswith("vae_core.") and m.count(".") >= 1}
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or not (here / name).exists():
            continue
        seen.add(name)
        todo |= _vae_core_imports(name) - seen
    return {name: hashlib.sha256((here / name).read_bytes()).hexdigest()
            for name in sorted(seen - set(_KEY_MODULES) - {"__init__.py"})}


class UnkeyableCallable(TypeError):
    """A loss function the cache cannot tell apart from others: it captures an unkeyable value."""


def _const_key(c: Any) -> Any:
    if isinstance(c, types.CodeType):
        return _code_key(c)
    if isinstance(c, frozenset):  # its repr's order depends on the process's hash seed
        return sorted(repr(_const_key(v)) for v in c)
    if isinstance(c, tuple):
        return [_const_key(v) for v in c]
    return repr(c)


def _code_key(code: types.CodeType) -> list[Any]:
    """What a code object computes: bytecode, constants (nested code recursively) and names."""
    consts = [_const_key(c) for c in code.co_consts]
    return [code.co_code.hex(), consts, list(code.co_names), list(code.co_varnames),
            list(code.co_freevars), code.co_argcount, code.co_kwonlyargcount]


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def _value_key(value: Any, where: str, seen: set[int]) -> Any:
    """A JSON-able key of a value a loss function computes with; raises UnkeyableCallable."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, complex)):
        return repr(value)
    if isinstance(value, (np.generic,)):
        return repr(value.item())
    if isinstance(value, (Tensor, np.ndarray)):
        return {"tensor": tensor_digest(value)}
    if isinstance(value, (tuple, list, frozenset, set)):
        items = [_value_key(v, where, seen) for v in value]
        return {type(value).__name__: sorted(map(repr, items)) if isinstance(value, (set, frozenset))
                else items}
    if isinstance(value, dict):
        return {"dict": [[repr(k), _value_key(v, where, seen)] for k, v in sorted(value.items(), key=repr)]}
    if isinstance(value, types.ModuleType):
        return {"module": value.__name__}
    if isinstance(value, (nn.Module, torch.optim.Optimizer, torch.Generator)):
        raise UnkeyableCallable(
            f"cannot key the loss function for the model cache: {where} is a {type(value).__name__} "
            "(its state changes what the function computes). Pass it as a tensor or plain value, or "
            "pass data_key= naming the training yourself"
        )
    if isinstance(value, type):
        extra = _extra_sources({value.__module__})
        return ({"class": f"{value.__module__}.{value.__qualname__}", "sources": extra} if extra
                else {"class": f"{value.__module__}.{value.__qualname__}"})
    if isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType, np.ufunc)):
        return {"builtin": f"{getattr(value, '__module__', None)}.{getattr(value, '__qualname__', value)}"}
    if callable(value) and (isinstance(value, (types.FunctionType, functools.partial, types.MethodType))
                            or type(value).__module__.startswith("torch")):
        return _function_key(value, seen)
    raise UnkeyableCallable(
        f"cannot key the loss function for the model cache: {where} is a {type(value).__name__}, "
        "whose value the cache cannot see. Capture plain values (numbers, strings, tensors, functions), "
        "or pass data_key= naming the training yourself"
    )


def _function_key(fn: Any, seen: set[int]) -> Any:
    if isinstance(fn, functools.partial):
        return {"partial": _function_key(fn.func, seen),
                "args": [_value_key(a, "a partial's argument", seen) for a in fn.args],
                "keywords": _value_key(dict(fn.keywords), "a partial's keyword", seen)}
    if isinstance(fn, types.MethodType):
        return {"method": _function_key(fn.__func__, seen),
                "self": _value_key(fn.__self__, "the bound object of a method", seen)}
    if not isinstance(fn, types.FunctionType):  # torch's own callables (e.g. torch.nn.functional.*)
        return {"callable": f"{type(fn).__module__}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"}
    name = f"{fn.__module__}.{fn.__qualname__}"
    if (fn.__module__ or "").split(".")[0] in _LIBRARIES:
        extra = _extra_sources({fn.__module__ or ""})
        if extra:  # a vae_core module outside the core digest: key its source too
            return {"function": name, "sources": extra}
        return {"function": name}  # its code is the library's: covered by its version / the source digest
    if id(fn) in seen:
        return {"recursive": name}
    seen = seen | {id(fn)}
    code = fn.__code__
    closure = {var: _value_key(cell.cell_contents, f"the captured variable {var!r} of {name}", seen)
               for var, cell in zip(code.co_freevars, fn.__closure__ or (), strict=True)}
    referenced = {}
    for g in sorted(_global_names(code)):
        if g in fn.__globals__:
            referenced[g] = _value_key(fn.__globals__[g], f"the global {g!r} read by {name}", seen)
    return {"function": name, "code": _code_key(code), "closure": closure,
            "defaults": _value_key(fn.__defaults__, f"the defaults of {name}", seen),
            "kwdefaults": _value_key(fn.__kwdefaults__, f"the keyword defaults of {name}", seen),
            "globals": referenced}


def callable_identity(fn: Callable[..., Any] | None) -> str | None:
    """sha256 of what ``fn`` computes with (code, captured values, defaults, globals read); None → None.

    Two closures of one factory with different captured values, or two lambdas on one line, get
    different identities; the same function re-defined with the same code and values gets the same.
    Raises :class:`UnkeyableCallable` (a TypeError) for a function that captures a value the cache
    cannot key (e.g. a model), saying how to fix it.
    """
    if fn is None:
        return None
    if not callable(fn):
        raise TypeError(f"loss_fn must be callable, got {type(fn).__name__}")
    blob = json.dumps(_value_key(fn, "loss_fn", set()) if not isinstance(fn, types.FunctionType)
                      else _function_key(fn, set()), sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_key(model_class: type[nn.Module], config: Mapping[str, Any], train_x: Any, test_x: Any = None,
              *, data_key: str | None = None, device: torch.device | str | None = None,
              **fit_kwargs: Any) -> tuple[str, dict[str, Any]]:
    """The key of :func:`pretrained`: (hex sha256, the JSON-able description it hashes).

    It hashes: the model class (module + name) and its constructor config; every argument of
    ``fit`` that changes the result, with defaults filled in (so ``lr=1e-3`` and no ``lr`` are the
    same key; ``progress``, ``checkpoint_path`` are not part of it) and a custom ``loss_fn`` by
    :func:`callable_identity`; the identity of the data — the sha256 of the bytes of ``train_x``,
    ``test_x`` and labels, or ``data_key`` when given (then the caller vouches that the key names
    the data); the source of the vae_core modules that determine training (any edit retrains); the
    torch version; the device type (CPU and CUDA give different bits) and, on a CPU, torch's thread
    count (one and two threads round matrix products differently: a model trained by a two-thread
    process is not what a one-thread notebook would have trained).
    """
    bound = _FIT_SIGNATURE.bind(None, train_x, test_x, **fit_kwargs)
    bound.apply_defaults()
    fit_args = {k: v for k, v in bound.arguments.items() if k not in _NOT_IN_KEY}
    fit_args["loss_fn"] = callable_identity(fit_args.get("loss_fn"))
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
    if dev.type == "cpu":  # the thread count changes how matrix products round, hence the weights
        description["cpu_threads"] = torch.get_num_threads()
    extra = _extra_sources({model_class.__module__})
    if extra:  # a model defined outside the core modules: its module's source (and what it imports)
        description["model_sources"] = extra
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
    (``weights_only=True``, verified by its digest) and returns the same parameters and the same
    :class:`History`, so plots are identical. Nothing is printed either way (the progress bar, on
    stderr, is drawn complete on a cache hit).

    A damaged cache entry, or one holding another training, is ignored with a warning and the model
    is trained from the same initialisation as a clean run. If the trained model cannot be written
    to the cache (read-only folder, full disk), it is returned anyway, with a warning.

    config: constructor arguments, e.g. ``{"x_dim": 784, "h_dim": 400, "z_dim": 20}``.
    model_class: a class, or the name of one defined in vae_core
        (:func:`~vae_core.checkpoints.model_class_named`).
    Returns (model on the fit device, history).

    Used by: chapters 4-8 (sharing the 784-400-20 and 784-256-2 models between notebooks).
    """
    if isinstance(model_class, str):
        cls = model_class_named(model_class)
        if cls is None:
            raise ValueError(f"vae_core has no model class {model_class!r}")
        model_class = cls
    if "model" in fit_kwargs:
        raise TypeError("pretrained builds the model itself from config; do not pass model=")
    key, description = cache_key(model_class, config, train_x, test_x, data_key=data_key, **fit_kwargs)
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / f"{model_class.__name__}-{key[:24]}.pt"
    seed = fit_kwargs.get("seed", 0)

    def build() -> nn.Module:
        with _private_global_rng(_derive_seed(seed, 0x1A17), torch.device("cpu")):
            return model_class(**config)

    device = fit_kwargs.get("device")
    device = torch.device(device) if device is not None else default_device()
    if path.exists():
        try:
            ckpt = load_checkpoint(path, map_location="cpu")  # verified; the model is not touched
            if ckpt.get("cache_key") != key:
                raise CheckpointError(f"{path} holds another training (key mismatch)")
            cached = build()
            check_compatible(ckpt, cached, source=str(path))
            cached.load_state_dict(ckpt["model_state"])
        except (CheckpointError, RuntimeError) as e:
            warnings.warn(f"ignoring unusable cached model ({e}); retraining", stacklevel=2)
        else:
            history = History.from_dict(ckpt["history"])
            cached.to(device)
            bar = _progress_bar(history.epochs, 0, fit_kwargs.get("progress", True))
            bar.set_postfix(_postfix(history), refresh=False)
            bar.update(history.epochs)
            bar.close()
            return cached, history
    model = build()  # a clean initialisation, also after an unusable cache entry
    history = fit(model, train_x, test_x, **fit_kwargs)
    cpu_state = copy.deepcopy(model).to("cpu")
    try:
        save_checkpoint(path, cpu_state, None, history, epoch=history.epochs,
                        extra={"cache_key": key, "cache_description": json.dumps(description, default=repr)})
    except OSError as e:
        warnings.warn(f"the trained model could not be cached at {path} ({e}); returning it uncached",
                      stacklevel=2)
    return model, history


__all__ = ["pretrained", "cache_key", "callable_identity", "default_cache_dir", "tensor_digest",
           "UnkeyableCallable"]
