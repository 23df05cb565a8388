"""Tests of vae_core.checks: every accepted and every rejected case, with the message it gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vae_core import checks
from vae_core.checks import check_batch, check_non_negative, check_positive_int

# ------------------------------------------------------------------------------------ check_batch


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_check_batch_accepts_float_batches_in_unit_interval_and_returns_them(dtype):
    x = torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.25, 0.0]], dtype=dtype)
    assert check_batch(x, 3) is x
    one = torch.ones(1, 3, dtype=dtype)
    assert check_batch(one, 3) is one


def test_check_batch_outside_unit_interval_allowed_when_asked():
    x = torch.tensor([[-2.0, 0.5, 7.0]])
    assert check_batch(x, 3, unit_interval=False) is x


def test_check_batch_accepts_tensors_that_require_grad():
    x = torch.full((2, 4), 0.5, requires_grad=True)
    assert check_batch(x, 4) is x


@pytest.mark.parametrize("bad", [[[0.0, 1.0]], np.zeros((1, 2)), 0.5, None])
def test_check_batch_rejects_non_tensors(bad):
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got"):
        check_batch(bad, 2)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_check_batch_rejects_non_float_tensors_and_says_how_to_convert(dtype):
    with pytest.raises(TypeError, match=r"must be a float tensor .*x.float\(\) / 255"):
        check_batch(torch.zeros(2, 3, dtype=dtype), 3)


@pytest.mark.parametrize("shape", [(3,), (2, 4), (2, 2), (1, 2, 3), (2, 3, 1), ()])
def test_check_batch_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match=r"must have shape \(batch, 3\), got .*reshape"):
        check_batch(torch.zeros(shape), 3)


def test_check_batch_rejects_empty_batch():
    for unit_interval in (True, False):
        with pytest.raises(ValueError, match="empty batch"):
            check_batch(torch.zeros(0, 3), 3, unit_interval=unit_interval)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("unit_interval", [True, False])
def test_check_batch_rejects_non_finite_values(value, unit_interval):
    x = torch.full((2, 3), 0.5)
    x[1, 2] = value
    with pytest.raises(ValueError, match="contains NaN or inf"):
        check_batch(x, 3, unit_interval=unit_interval)


@pytest.mark.parametrize("value", [-1e-3, 1.001, 255.0])
def test_check_batch_rejects_values_outside_unit_interval(value):
    x = torch.full((2, 3), 0.5)
    x[0, 1] = value
    with pytest.raises(ValueError, match=r"outside \[0, 1\].*divide uint8 images by 255"):
        check_batch(x, 3)


def test_check_batch_names_the_argument():
    with pytest.raises(ValueError, match="^x_test contains NaN"):
        check_batch(torch.full((1, 2), float("nan")), 2, name="x_test")


def test_trusted_values_skip_only_the_value_checks_and_end_with_the_block():
    bad_values = [torch.full((1, 2), float("nan")), torch.tensor([[2.0, -1.0]])]
    with checks._trusted_values():
        for x in bad_values:  # values are not read (fit validated its data once, up front)...
            assert check_batch(x, 2) is x
        with pytest.raises(TypeError, match="must be a float tensor"):  # ...but type and shape are
            check_batch(torch.zeros(1, 2, dtype=torch.uint8), 2)
        with pytest.raises(ValueError, match=r"must have shape \(batch, 3\)"):
            check_batch(torch.zeros(1, 2), 3)
        with pytest.raises(ValueError, match="empty batch"):
            check_batch(torch.zeros(0, 2), 2)
        with checks._trusted_values():  # nests
            assert check_batch(bad_values[0], 2) is bad_values[0]
        assert check_batch(bad_values[0], 2) is bad_values[0]  # inner exit keeps the outer block
    for x in bad_values:  # checked again after the block
        with pytest.raises(ValueError):
            check_batch(x, 2)
    with pytest.raises(RuntimeError, match="boom"), checks._trusted_values():  # and after an error
        raise RuntimeError("boom")
    with pytest.raises(ValueError, match="NaN"):
        check_batch(bad_values[0], 2)


# ----------------------------------------------------------------------------- check_positive_int

@pytest.mark.parametrize(("value", "minimum"), [(1, 1), (7, 1), (10**9, 1), (0, 0), (2, 2), (-3, -5)])
def test_check_positive_int_accepts(value, minimum):
    assert check_positive_int(value, "k", minimum=minimum) == value


def test_check_positive_int_accepts_numpy_integers_and_returns_a_python_int():
    for value in (np.int64(5), np.int32(5), np.arange(3, 6)[2]):
        out = check_positive_int(value, "k")
        assert out == int(value) and type(out) is int


@pytest.mark.parametrize(
    ("value", "minimum"),
    [(0, 1), (-1, 1), (1, 2), (True, 1), (False, 0), (2.0, 1), (2.5, 1), ("3", 1), (None, 1),
     (np.float64(3.0), 1), (np.int64(0), 1), (torch.tensor(3), 1), (float("nan"), 1)],
)
def test_check_positive_int_rejects(value, minimum):
    with pytest.raises(ValueError, match=rf"^k must be an integer >= {minimum}, got"):
        check_positive_int(value, "k", minimum=minimum)


# ----------------------------------------------------------------------------- check_non_negative

@pytest.mark.parametrize("value", [0, 0.0, -0.0, 1, 2.5, 1e300, np.float32(0.5), torch.tensor(3.0)])
def test_check_non_negative_accepts_and_returns_float(value):
    out = check_non_negative(value, "beta")
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize("value", [-1e-12, -1, float("nan"), float("inf"), float("-inf")])
def test_check_non_negative_rejects_bad_numbers(value):
    with pytest.raises(ValueError, match="^beta must be a finite number >= 0, got"):
        check_non_negative(value, "beta")


@pytest.mark.parametrize("value", [None, "abc", [1.0]])
def test_check_non_negative_rejects_non_numbers(value):
    with pytest.raises(TypeError, match="^beta must be a finite number >= 0, got"):
        check_non_negative(value, "beta")
