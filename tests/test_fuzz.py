"""Fuzz tests: random shapes, dtypes and values thrown at vae_core's public functions.

Each call must either give a correct-looking result (the right shape, finite numbers) or raise
``ValueError`` / ``TypeError`` / ``CheckpointError`` whose message names the argument at fault —
never a silent NaN, a hang, or another exception type (an ``IndexError`` or a torch-internal
``RuntimeError`` tells the user nothing). Hypothesis draws the inputs; ``derandomize=True`` makes
every run draw the same ones, so CI cannot flake. Tiny models (16 pixels) keep it within a minute.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vae_core import data, evaluate, explorer, objectives, train
from vae_core.checkpoints import CheckpointError
from vae_core.models import VAE

X_DIM, H_DIM, Z_DIM = 16, 8, 2
FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
ALLOWED = (ValueError, TypeError, CheckpointError)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool]
SPECIALS = [0.0, 1.0, 0.5, -1.0, 2.0, float("nan"), float("inf"), -float("inf"), 255.0]


@st.composite
def tensors(draw, rows=None, cols=None):
    """A tensor of random rank (0-3), sizes (0-5, or the given rows/cols), dtype and values."""
    if cols is not None and draw(st.integers(0, 9)) < 6:  # mostly well-shaped: (n, cols)
        shape = [rows if rows is not None else draw(st.sampled_from([1, 2, 3, 5])), cols]
    else:
        rank = draw(st.integers(0, 3))
        shape = [draw(st.sampled_from([0, 1, 2, 3, 5])) for _ in range(rank)]
        if rank >= 1 and rows is not None and draw(st.booleans()):
            shape[0] = rows
    n = int(np.prod(shape)) if shape else 1
    base = draw(st.sampled_from(["unit", "binary", "special", "wide"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if base == "unit":
        values = rng.random(n)
    elif base == "binary":
        values = (rng.random(n) < 0.5).astype(float)
    elif base == "special":
        values = rng.choice(SPECIALS, n)
    else:
        values = rng.normal(0, 100, n)
    dtype = draw(st.sampled_from(DTYPES))
    t = torch.tensor(values, dtype=torch.float64).reshape(shape)
    if not dtype.is_floating_point:
        t = torch.nan_to_num(t, nan=0.0, posinf=1.0, neginf=0.0).clamp(0, 255)
    return t.to(dtype)


def model() -> VAE:
    torch.manual_seed(0)
    return VAE(X_DIM, H_DIM, Z_DIM)


def check(call, names: tuple[str, ...], result_check=None):
    """Run ``call``: a finite, well-formed result, or an allowed error naming one of ``names``."""
    try:
        out = call()
    except ALLOWED as e:
        message = str(e)
        assert any(re.search(rf"\b{re.escape(n)}\b", message) for n in names), \
            f"{type(e).__name__} does not name {names}: {message}"
        return
    for t in out if isinstance(out, tuple) else (out,):
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            assert bool(torch.isfinite(t).all()), f"silent non-finite result: {t}"
    if result_check is not None:
        result_check(out)


@FUZZ
@given(x=tensors(cols=X_DIM))
def test_encode_and_elbo_take_any_tensor(x):
    m = model()
    check(lambda: m.encode(x), ("x",), lambda out: out[0].shape == (len(x), Z_DIM))
    check(lambda: objectives.elbo(m, x, generator=torch.Generator().manual_seed(0)), ("x",))
    check(lambda: objectives.iwae_bound(m, x, k=3, generator=torch.Generator().manual_seed(0)), ("x",))


@FUZZ
@given(z=tensors(cols=Z_DIM))
def test_decode_takes_any_tensor(z):
    m = model()
    check(lambda: m.decode(z), ("z",), lambda out: out.shape[-1] == X_DIM)


@FUZZ
@given(x=tensors(cols=X_DIM), z=tensors(cols=Z_DIM))
def test_log_likelihood_takes_any_pair(x, z):
    m = model()
    check(lambda: m.log_likelihood(x, z), ("x", "z"))


@FUZZ
@given(x=tensors(cols=X_DIM), k=st.sampled_from([0, 1, 2, -1, 1.5, True, np.int64(2)]))
def test_evaluation_functions_take_any_tensor(x, k):
    m = model()
    check(lambda: evaluate.test_elbo(m, x), ("x",))
    check(lambda: evaluate.iwae_log_likelihood(m, x, k=k, batch_size=2), ("x", "k"))
    check(lambda: evaluate.active_units(m, x), ("x",))
    check(lambda: evaluate.kl_per_dim(m, x), ("x",))


@FUZZ
@given(x=tensors(cols=X_DIM))
def test_data_functions_take_any_tensor(x):
    check(lambda: data.binarize(x), ("x", "binarize"))
    check(lambda: data.to_unit_float(x), ("images", "uint8"))


@FUZZ
@given(x=tensors(rows=20, cols=X_DIM),
       kwargs=st.fixed_dictionaries({}, optional={
           "epochs": st.sampled_from([1, 0, 1.5, -2, True]),
           "batch_size": st.sampled_from([4, 0, 2.5]),
           "lr": st.sampled_from([1e-3, 0.0, -1.0, float("nan"), np.float32(1e-3), "0.1"]),
           "beta": st.sampled_from([1.0, -1.0, float("inf")]),
           "seed": st.sampled_from([0, 1.5, -1, np.int64(3)]),
           "binarize": st.sampled_from(["dynamic", None, "maybe"]),
       }))
def test_fit_takes_any_tensor_and_arguments(x, kwargs):
    m = model()
    args = {"epochs": 1, "batch_size": 8, "progress": False, "device": "cpu", **kwargs}
    names = ("train_x", "x", *kwargs)
    check(lambda: train.fit(m, x, **args), names)


@FUZZ
@given(dims=st.one_of(st.none(), st.lists(st.sampled_from([0, 1, 2, -1, 0.5, "1"]), max_size=3)),
       scale=st.sampled_from([1, 0, 2.5, -3, 6]),
       value_range=st.sampled_from([(-3.0, 3.0), (3.0, -3.0), ("a", 1), (0.0, float("inf")), (-1, 1, 2)]),
       step=st.sampled_from([0.05, 0.0, -1.0, float("nan")]))
def test_static_explorer_takes_any_arguments(dims, scale, value_range, step):
    m = VAE(16, 4, 2)
    check(lambda: explorer.static_explorer_html(m, dims=dims, scale=scale, value_range=value_range,
                                                step=step),
          ("dims", "scale", "value_range", "step", "fixed_z"))


def test_the_fuzzer_can_fail():
    # A function that returns NaN silently, or raises an unhelpful error, is caught.
    with pytest.raises(AssertionError, match="silent non-finite"):
        check(lambda: torch.tensor([float("nan")]), ("x",))
    with pytest.raises(AssertionError, match="does not name"):
        check(lambda: (_ for _ in ()).throw(ValueError("something went wrong")), ("x",))
    with pytest.raises(IndexError):
        check(lambda: [][1], ("x",))
