"""Tests for vae_core.cache: train once then load identically, the key (data, arguments, loss
functions by what they compute), damaged and foreign entries, unwritable caches."""

from __future__ import annotations

import pytest
from test_train import H_DIM, X_DIM, Z_DIM, make_data, make_model, same_params

from vae_core import train
from vae_core.checkpoints import load_checkpoint
from vae_core.models import VAE

# ---------------------------------------------------------------------------------------------
# The cache of trained models
# ---------------------------------------------------------------------------------------------


def test_pretrained_trains_once_then_loads_identically(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAE_CORE_CACHE", str(tmp_path))
    x, _ = make_data()
    config = {"x_dim": X_DIM, "h_dim": H_DIM, "z_dim": Z_DIM}
    m1, h1 = train.pretrained(config, x, x[:64], epochs=2, progress=False, device="cpu")
    out1 = capsys.readouterr().out
    assert len(list(tmp_path.glob("VAE-*.pt"))) == 1

    def must_not_train(*args, **kwargs):
        raise AssertionError("fit was called on a cache hit")

    monkeypatch.setattr(train, "fit", must_not_train)
    m2, h2 = train.pretrained(config, x, x[:64], epochs=2, lr=1e-3, progress=False, device="cpu")
    assert capsys.readouterr().out == out1 == ""
    assert same_params(m1, m2) and h1 == h2
    # the cached model is what an explicit seeded training gives
    monkeypatch.undo()
    ref = train.pretrained(config, x, x[:64], epochs=2, progress=False, cache_dir=tmp_path / "other",
                           device="cpu")[0]
    assert same_params(ref, m1)


def test_cache_key_covers_what_changes_the_result():
    x, _ = make_data()
    cfg = {"x_dim": X_DIM, "h_dim": H_DIM, "z_dim": Z_DIM}

    def key(config=cfg, data=x, **kw):
        return train.cache_key(VAE, config, data, device="cpu", **{"epochs": 2, **kw})[0]

    base = key()
    # explicit defaults and arguments that do not change the result keep the key
    assert key(lr=1e-3, batch_size=128, progress=False, checkpoint_path="x.pt") == base
    different = [key(epochs=3), key(lr=2e-3), key(seed=1), key(beta=0.5), key(binarize="static"),
                 key(config={**cfg, "z_dim": 3}), key(data=x.flip(0)), key(data=x[:-1]),
                 train.cache_key(VAE, cfg, x, device="cpu", epochs=2, data_key="mnist-5k")[0]]
    assert len({base, *different}) == len(different) + 1


def test_corrupt_cache_file_is_retrained_with_a_warning(tmp_path):
    x, _ = make_data()
    config = {"x_dim": X_DIM, "h_dim": H_DIM, "z_dim": Z_DIM}
    m1, _ = train.pretrained(config, x, epochs=1, progress=False, cache_dir=tmp_path, device="cpu")
    (cached,) = tmp_path.glob("*.pt")
    cached.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="retraining"):
        m2, _ = train.pretrained(config, x, epochs=1, progress=False, cache_dir=tmp_path, device="cpu")
    assert same_params(m1, m2)
    assert load_checkpoint(cached)["epoch"] == 1


def test_pretrained_rejects_unknown_class_and_model_argument(tmp_path):
    x, _ = make_data(16)
    with pytest.raises(ValueError, match="no model class"):
        train.pretrained({}, x, model_class="Nope", epochs=1, cache_dir=tmp_path)
    with pytest.raises(TypeError, match="model="):
        train.pretrained({}, x, model=make_model(), epochs=1, cache_dir=tmp_path)


