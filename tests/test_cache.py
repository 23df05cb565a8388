"""Tests for vae_core.cache: train once then load identically, the key (data, arguments, loss
functions by what they compute), damaged and foreign entries, unwritable caches."""

from __future__ import annotations

import functools
import os

import pytest
import torch
from test_train import H_DIM, X_DIM, Z_DIM, make_data, make_model, same_params

from vae_core import cache, checkpoints, train
from vae_core.checkpoints import load_checkpoint
from vae_core.models import VAE
from vae_core.zoo import cpu_threads

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

    monkeypatch.setattr(cache, "fit", must_not_train)
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




# ---------------------------------------------------------------------------------------------
# Damaged and foreign entries, keys of loss functions, unwritable caches (issue 13)
# ---------------------------------------------------------------------------------------------

CFG = {"x_dim": X_DIM, "h_dim": H_DIM, "z_dim": Z_DIM}


def test_a_damaged_cache_entry_is_retrained_like_a_clean_run(tmp_path):
    from test_checkpoints import _flip_one_bit_in_weights

    x, _ = make_data()
    clean, _ = train.pretrained(CFG, x, epochs=1, progress=False, cache_dir=tmp_path / "clean", device="cpu")
    train.pretrained(CFG, x, epochs=1, progress=False, cache_dir=tmp_path, device="cpu")
    (entry,) = tmp_path.glob("*.pt")
    _flip_one_bit_in_weights(entry)
    with pytest.warns(UserWarning, match="damaged.*retraining"):
        again, _ = train.pretrained(CFG, x, epochs=1, progress=False, cache_dir=tmp_path, device="cpu")
    assert same_params(again, clean)
    load_checkpoint(entry)  # replaced by a sound file


def test_a_foreign_entry_never_reaches_the_model_and_the_retrained_one_equals_a_clean_run(tmp_path):
    x, _ = make_data()
    clean, _ = train.pretrained(CFG, x, epochs=2, progress=False, cache_dir=tmp_path / "clean", device="cpu")
    train.pretrained(CFG, x, epochs=2, progress=False, cache_dir=tmp_path, device="cpu")
    (entry,) = tmp_path.glob("*.pt")
    # another valid training (other seed, more epochs) put at this key's path
    foreign, _ = train.pretrained(CFG, x, epochs=3, seed=5, progress=False, cache_dir=tmp_path / "f",
                                  device="cpu")
    (foreign_file,) = (tmp_path / "f").glob("*.pt")
    entry.write_bytes(foreign_file.read_bytes())
    with pytest.warns(UserWarning, match="another training"):
        got, history = train.pretrained(CFG, x, epochs=2, progress=False, cache_dir=tmp_path, device="cpu")
    assert same_params(got, clean) and not same_params(got, foreign) and history.epochs == 2
    assert load_checkpoint(entry)["epoch"] == 2  # the entry now holds this training
    again, _ = train.pretrained(CFG, x, epochs=2, progress=False, cache_dir=tmp_path, device="cpu")
    assert same_params(again, clean)


def make_loss(weight: float):
    def loss(model, x, y, *, beta, generator):
        total, terms = train.elbo_loss(model, x, beta=beta, generator=generator)
        return weight * total, terms
    return loss


def test_closures_of_one_factory_with_other_values_get_other_keys_and_models(tmp_path):
    x, _ = make_data()
    ids = [cache.callable_identity(make_loss(w)) for w in (1.0, 0.0, 1.0)]
    assert ids[0] != ids[1] and ids[0] == ids[2]
    a, _ = train.pretrained(CFG, x, epochs=1, loss_fn=make_loss(1.0), progress=False, cache_dir=tmp_path,
                            device="cpu")
    b, _ = train.pretrained(CFG, x, epochs=1, loss_fn=make_loss(0.0), progress=False, cache_dir=tmp_path,
                            device="cpu")
    assert len(list(tmp_path.glob("*.pt"))) == 2 and not same_params(a, b)


def test_two_lambdas_on_one_line_and_defaults_and_globals_are_told_apart():
    f, g = (lambda m, x, y, **k: 1.0), (lambda m, x, y, **k: 2.0)  # noqa: E731
    assert cache.callable_identity(f) != cache.callable_identity(g)

    def with_default(m, x, y, *, beta, generator, scale=1.0):
        return scale

    def with_other_default(m, x, y, *, beta, generator, scale=2.0):
        return scale

    with_other_default.__qualname__ = with_default.__qualname__
    assert cache.callable_identity(with_default) != cache.callable_identity(with_other_default)
    def scaled(scale, model, x, y, *, beta, generator):
        return scale

    ids = [cache.callable_identity(functools.partial(scaled, s)) for s in (1.0, 2.0, 1.0)]
    assert ids[0] != ids[1] and ids[0] == ids[2]
    global SCALE
    SCALE = 1.0
    before = cache.callable_identity(reads_a_global)
    SCALE = 3.0
    assert cache.callable_identity(reads_a_global) != before
    SCALE = 1.0
    assert cache.callable_identity(reads_a_global) == before


SCALE = 1.0


def reads_a_global(model, x, y, *, beta, generator):
    return SCALE


def test_a_loss_that_captures_what_cannot_be_keyed_is_refused_with_the_fix(tmp_path):
    net = torch.nn.Linear(2, 2)

    def captures_a_model(model, x, y, *, beta, generator):
        return net(x)

    x, _ = make_data()
    with pytest.raises(cache.UnkeyableCallable, match="captured variable 'net'.*data_key"):
        train.pretrained(CFG, x, epochs=1, loss_fn=captures_a_model, progress=False, cache_dir=tmp_path)
    assert issubclass(cache.UnkeyableCallable, TypeError)


def test_keys_do_not_depend_on_the_process_hash_seed(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.path[:0] = {paths!r}; from vae_core import cache\n"
            "def f(m, x, y, *, beta, generator):\n    return x in ('a', 'b', 'c', 'd') and beta\n"
            "print(cache.callable_identity(f))")
    paths = [p for p in sys.path if p]
    outs = {subprocess.run([sys.executable, "-c", code.format(paths=paths)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": str(s)}, check=True).stdout for s in (1, 2)}
    assert len(outs) == 1 and len(outs.pop().strip()) == 64


def test_an_unwritable_cache_still_returns_the_trained_model(tmp_path, monkeypatch):
    x, _ = make_data()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoints.tempfile, "mkstemp", refuse)
    with pytest.warns(UserWarning, match="could not be cached"):
        model, history = train.pretrained(CFG, x, epochs=1, progress=False, cache_dir=tmp_path, device="cpu")
    assert history.epochs == 1 and isinstance(model, VAE)
    monkeypatch.undo()
    clean, _ = train.pretrained(CFG, x, epochs=1, progress=False, cache_dir=tmp_path / "c", device="cpu")
    assert same_params(model, clean)


def test_an_empty_cache_variable_is_an_error_not_the_current_folder(monkeypatch):
    monkeypatch.setenv("VAE_CORE_CACHE", "")
    with pytest.raises(ValueError, match="VAE_CORE_CACHE is set but empty"):
        cache.default_cache_dir()
    monkeypatch.delenv("VAE_CORE_CACHE")
    assert cache.default_cache_dir().name == "vae_core"


def test_models_and_losses_of_modules_outside_the_core_are_keyed_by_their_source(tmp_path, monkeypatch):
    """A model class or loss function from a vae_core module outside the core digest is keyed by
    that module's source and what it imports; editing it changes only those keys."""
    import shutil

    pkg = tmp_path / "vae_core"
    shutil.copytree(cache._HERE, pkg, ignore=shutil.ignore_patterns("__pycache__", "assets"))
    (pkg / "helper_mod.py").write_text("SCALE = 1.0\n")
    (pkg / "new_mod.py").write_text("from .helper_mod import SCALE\nfrom .checks import check_batch\n")
    monkeypatch.setattr(cache, "_HERE", pkg)
    x, _ = make_data()
    cfg = {"x_dim": X_DIM, "h_dim": H_DIM, "z_dim": Z_DIM}
    NewVAE = type("NewVAE", (VAE,), {"__module__": "vae_core.new_mod"})

    def new_loss(model, xb):
        return model.loss(xb)

    new_loss.__module__ = "vae_core.new_mod"

    def loss_using_it(model, xb):
        return new_loss(model, xb)

    def keys():
        return (train.cache_key(NewVAE, cfg, x, device="cpu", epochs=2)[0],
                train.cache_key(VAE, cfg, x, device="cpu", epochs=2)[0],
                train.cache_key(VAE, cfg, x, device="cpu", epochs=2, loss_fn=loss_using_it)[0])

    k_new, k_core, k_loss = keys()
    assert train.cache_key(NewVAE, cfg, x, device="cpu", epochs=2)[1]["model_sources"].keys() == {
        "helper_mod.py", "new_mod.py"}
    assert "model_sources" not in train.cache_key(VAE, cfg, x, device="cpu", epochs=2)[1]
    (pkg / "helper_mod.py").write_text("SCALE = 2.0\n")  # an edit two imports away
    k_new2, k_core2, k_loss2 = keys()
    assert k_new2 != k_new and k_loss2 != k_loss and k_core2 == k_core
    (pkg / "models.py").write_text((pkg / "models.py").read_text() + "\n# edited\n")  # a core module
    assert len({k_new2, k_core2, k_loss2} & set(keys())) == 0


def test_the_cpu_thread_count_is_part_of_the_key():
    """One and two threads round matrix products differently, so they train different weights: a
    model trained by a two-thread process must not be served to a one-thread notebook."""
    x, _ = make_data()
    cfg = {"x_dim": X_DIM, "h_dim": H_DIM, "z_dim": Z_DIM}
    with cpu_threads(1):
        one = train.cache_key(VAE, cfg, x, device="cpu", epochs=2)
    with cpu_threads(2):
        two = train.cache_key(VAE, cfg, x, device="cpu", epochs=2)
    assert one[0] != two[0] and one[1]["cpu_threads"] == 1 and two[1]["cpu_threads"] == 2
