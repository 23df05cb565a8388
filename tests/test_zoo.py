"""Tests for vae_core.zoo: the book's models are the documented ones, book_model is exactly
train.pretrained with those arguments (checked against a direct, separately cached call), the cache is
hit on the second call, and training fewer epochs reproduces the first epochs of a longer run.

The end-to-end tests swap in a tiny model (16-8-2) and tiny synthetic data, so they run in seconds.
"""

from __future__ import annotations

import pytest
import torch

from vae_core import data, train, zoo


def test_book_models_are_the_documented_architectures():
    assert zoo.BOOK_MODELS["vae20"] == {"x_dim": 784, "h_dim": 400, "z_dim": 20}
    assert zoo.BOOK_MODELS["vae2"] == {"x_dim": 784, "h_dim": 256, "z_dim": 2}
    kw = zoo.pretrained_kwargs("vae20")
    assert kw["epochs"] == zoo.EPOCHS["mnist-5k"] == 50
    assert kw["model_class"] == "VAE" and kw["seed"] == 0 and kw["batch_size"] == 128
    assert zoo.pretrained_kwargs("vae2", "mnist")["epochs"] == zoo.EPOCHS["mnist"]
    assert zoo.pretrained_kwargs("vae2", epochs=3, beta=2.0)["beta"] == 2.0
    # every dataset with an epoch count is one vae_core.data can load
    assert set(zoo.EPOCHS) == set(data.DATASETS)


def test_bad_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="vae20"):
        zoo.pretrained_kwargs("vae3")
    with pytest.raises(ValueError, match="mnist-5k"):
        zoo.pretrained_kwargs("vae2", "cifar")
    with pytest.raises(TypeError, match="fixed"):
        zoo.pretrained_kwargs("vae2", config={"x_dim": 1})


def test_describe_names_the_architecture():
    d = zoo.describe("vae2")
    assert d["architecture"] == "784-256-2" and d["epochs"] == 50 and d["dataset"] == "mnist-5k"


@pytest.fixture
def tiny(monkeypatch):
    """A 16-8-2 book model 'tiny' and 16-pixel synthetic data under the name 'mnist-5k'."""
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 16, generator=g) < 0.5).to(torch.uint8) * 255
    images = protos[torch.randint(0, 4, (96,), generator=g)]
    labels = torch.zeros(96, dtype=torch.int64)

    def fake_load(name, split="train", **_):
        part = images[:64] if split == "train" else images[64:]
        return data.Dataset(part, labels[:len(part)], f"{name}/{split}")

    monkeypatch.setitem(zoo.BOOK_MODELS, "tiny", {"x_dim": 16, "h_dim": 8, "z_dim": 2})
    monkeypatch.setitem(zoo.EPOCHS, "mnist-5k", 4)
    monkeypatch.setattr(zoo.data, "load", fake_load)
    return images[:64], images[64:]


def _params(model):
    return [p.detach().cpu() for p in model.parameters()]


def test_book_model_is_pretrained_with_the_registered_arguments(tiny, tmp_path):
    train_x, test_x = tiny
    model, history = zoo.book_model("tiny", cache_dir=tmp_path / "a", progress=False, device="cpu")
    # the oracle: a direct pretrained call with the documented arguments, trained in its own cache
    kw = zoo.pretrained_kwargs("tiny")
    config = kw.pop("config")
    direct, direct_history = train.pretrained(config, train_x, test_x, cache_dir=tmp_path / "b",
                                              progress=False, device="cpu", **kw)
    assert all(torch.equal(p, q) for p, q in zip(_params(model), _params(direct), strict=True))
    assert history.to_dict()["test"] == direct_history.to_dict()["test"]
    assert history.epochs == 4
    # second call: loaded from the cache (no new file), identical parameters
    files = sorted((tmp_path / "a").iterdir())
    again, _ = zoo.book_model("tiny", cache_dir=tmp_path / "a", progress=False, device="cpu")
    assert sorted((tmp_path / "a").iterdir()) == files and len(files) == 1
    assert all(torch.equal(p, q) for p, q in zip(_params(model), _params(again), strict=True))


def test_progress_bar_only_when_someone_watches(tiny, tmp_path, monkeypatch):
    seen = []
    real = train.pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs["progress"])
        return real(*args, **kwargs)

    monkeypatch.setattr(zoo.train, "pretrained", spy)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(zoo.sys.stderr, "isatty", lambda: False)  # headless: book build, nbval
    assert zoo.show_progress() is False
    zoo.book_model("tiny", cache_dir=tmp_path, device="cpu")
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/04_training.ipynb")  # a JupyterLab kernel
    assert zoo.show_progress() is True
    zoo.book_model("tiny", cache_dir=tmp_path, device="cpu")
    zoo.book_model("tiny", cache_dir=tmp_path, device="cpu", progress=False)  # explicit wins
    assert seen == [False, True, False]


def test_fewer_epochs_reproduce_the_start_of_the_full_run(tiny, tmp_path):
    _, full = zoo.book_model("tiny", cache_dir=tmp_path, progress=False, device="cpu")
    _, short = zoo.book_model("tiny", epochs=2, cache_dir=tmp_path, progress=False, device="cpu")
    for split in ("train", "test"):
        for term, values in getattr(short, split).items():
            assert values == getattr(full, split)[term][:2], (split, term)


def test_book_model_trains_with_the_book_thread_count_whatever_the_callers(tiny, tmp_path,
                                                                         monkeypatch):
    with zoo.cpu_threads(zoo.BOOK_THREADS):  # the oracle: a caller already at BOOK_THREADS
        reference, _ = zoo.book_model("tiny", cache_dir=tmp_path, progress=False, device="cpu")
    seen = []
    real = zoo.train.pretrained

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(zoo.train, "pretrained", spy)
    with zoo.cpu_threads(zoo.BOOK_THREADS + 1):
        other, _ = zoo.book_model("tiny", cache_dir=tmp_path, progress=False, device="cpu")
        assert torch.get_num_threads() == zoo.BOOK_THREADS + 1    # the caller's count restored
    assert seen == [zoo.BOOK_THREADS]                             # looked up (trained) pinned
    assert len(list(tmp_path.iterdir())) == 1                     # one cache entry for both
    assert all(torch.equal(p, q) for p, q in zip(_params(reference), _params(other), strict=True))


def test_cpu_threads_restores_the_callers_count_even_when_the_block_raises():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with zoo.cpu_threads(before + 1):
            assert torch.get_num_threads() == before + 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
