"""Tests for vae_core.train: fit (learning, seeding, resume, NaN stop, warm-up, binarization, bad input),
checkpoints (atomic writes; mismatched, corrupt and malicious files) and the trained-model cache.

Everything runs on tiny synthetic data (256 noisy copies of 8 binary 16-pixel prototypes) and a
VAE(16, 8, 2), so each fit takes a fraction of a second on a CPU.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vae_core import objectives, train
from vae_core.models import VAE, ConditionalVAE
from vae_core.train import CheckpointError, History, elbo_loss, fit, load_checkpoint

X_DIM, H_DIM, Z_DIM = 16, 8, 2


def make_data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary patterns: 8 random prototypes, each pixel flipped with probability 0.1; with labels."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(8, X_DIM, generator=g) < 0.5).float()
    labels = torch.randint(0, 8, (n,), generator=g)
    flips = (torch.rand(n, X_DIM, generator=g) < 0.1).float()
    return (protos[labels] - flips).abs(), labels


def make_model(seed: int = 0, z_dim: int = Z_DIM) -> VAE:
    torch.manual_seed(seed)
    return VAE(X_DIM, H_DIM, z_dim)


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().cpu().clone() for p in model.parameters()]


def same_params(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(params(a), params(b), strict=True))


KW = {"batch_size": 64, "progress": False, "device": "cpu"}



# ---------------------------------------------------------------------------------------------
# Learning and history
# ---------------------------------------------------------------------------------------------


def test_fit_learns_and_records_consistent_history():
    data, _ = make_data(320)
    x, xt = data[:256], data[256:]
    model = make_model()
    h = fit(model, x, xt, epochs=20, lr=1e-2, **dict(KW, batch_size=16))
    assert h.epochs == 20 and len(h.seconds) == 20 and set(h.train) == {"loss", "elbo", "rec", "kl"}
    assert set(h.test) == set(h.train) and all(len(v) == 20 for v in h.test.values())
    # the loss goes down (untrained: ≈ 16·log 2 ≈ 11.1 nats; the data's entropy is ≈ 7.3 nats)
    assert h.train["loss"][-1] < h.train["loss"][0] - 1.0
    assert h.test["elbo"][-1] > h.test["elbo"][0] + 1.0
    assert h.train["loss"][-1] > 7.0
    for split in (h.train, h.test):
        for e in range(20):  # elbo = rec − kl, and with β = 1 the loss is −elbo
            assert split["elbo"][e] == pytest.approx(split["rec"][e] - split["kl"][e], abs=1e-4)
            assert split["loss"][e] == pytest.approx(-split["elbo"][e], abs=1e-4)
    assert h.beta == [1.0] * 20
    # test terms agree with an independent evaluation of the final model on the same binary data
    assert all(isinstance(v, float) for v in h.train["loss"])


def test_history_round_trips_through_dict_and_json():
    x, _ = make_data()
    h = fit(make_model(), x, x[:32], epochs=2, **KW)
    d = json.loads(json.dumps(h.to_dict()))
    assert History.from_dict(d) == h
    assert History.from_dict(h.to_dict()).to_dict() == h.to_dict()


def test_uint8_images_and_float_images_give_the_same_training():
    x, _ = make_data()
    a, b = make_model(), make_model()
    fit(a, (x * 255).to(torch.uint8).reshape(256, 4, 4), epochs=2, **KW)
    fit(b, x, epochs=2, **KW)
    assert same_params(a, b)


# ---------------------------------------------------------------------------------------------
# Reproducibility and resume
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_parameters_and_other_seed_differs():
    x, _ = make_data()
    a, b, c = make_model(), make_model(), make_model()
    ha = fit(a, x, x[:64], epochs=3, seed=7, **KW)
    hb = fit(b, x, x[:64], epochs=3, seed=7, **KW)
    fit(c, x, x[:64], epochs=3, seed=8, **KW)
    assert same_params(a, b)
    assert ha.train == hb.train and ha.test == hb.test
    assert not same_params(a, c)


def test_fit_leaves_the_global_rng_alone():
    """fit seeds its own RNGs: the notebook's random stream is the same whether fit ran (or was
    skipped by the cache) or not."""
    x, _ = make_data()
    model = make_model()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    fit(model, x, epochs=1, **KW)
    assert torch.equal(torch.get_rng_state(), state)


def global_rng_loss(model, x, y, *, beta, generator):
    """A custom loss that ignores the generator and draws from the global RNG (like model.forward)."""
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    rec = model.log_likelihood(x, z)
    kl = (0.5 * (mu**2 + logvar.exp() - logvar - 1)).sum(-1)
    return -(rec - beta * kl).mean(), {"elbo": rec - kl, "rec": rec, "kl": kl}


@pytest.mark.parametrize("loss_fn", [None, global_rng_loss], ids=["generator-noise", "global-rng-noise"])
def test_evaluating_a_test_set_does_not_change_training(loss_fn):
    x, _ = make_data()
    a, b = make_model(), make_model()
    fit(a, x, epochs=2, loss_fn=loss_fn, **KW)
    h = fit(b, x, x[:100], epochs=2, loss_fn=loss_fn, **KW)
    assert same_params(a, b) and len(h.test["elbo"]) == 2


class Interrupt(Exception):
    pass


class Trap:
    """Raises Interrupt at training step ``at`` while armed (a stand-in for a killed process)."""

    def __init__(self, at: int) -> None:
        self.n, self.at, self.armed = 0, at, True

    def step(self, training: bool) -> None:
        self.n += training
        if self.armed and self.n == self.at:
            raise Interrupt


@pytest.mark.parametrize("loss_fn", [None, global_rng_loss], ids=["generator-noise", "global-rng-noise"])
def test_resume_after_interruption_equals_uninterrupted_run_bitwise(tmp_path, loss_fn):
    x, _ = make_data()
    settings = dict(KW, lr=5e-3, warmup_epochs=1.5, binarize="dynamic", seed=3, loss_fn=loss_fn)
    full = make_model()
    h_full = fit(full, x, x[:64], epochs=4, **settings)

    # The same run killed in the middle of epoch 3 (after 2 checkpoints were written) ...
    ckpt = tmp_path / "run.pt"
    trap = Trap(at=2 * 4 + 2)  # 4 steps per epoch: the 2nd step of epoch 3
    inner = loss_fn or elbo_loss

    def interrupting(model, xb, yb, *, beta, generator):
        trap.step(torch.is_grad_enabled())  # count training steps, not test evaluations
        return inner(model, xb, yb, beta=beta, generator=generator)

    first = make_model()
    with pytest.raises(Interrupt):
        fit(first, x, x[:64], epochs=4, checkpoint_path=ckpt, **dict(settings, loss_fn=interrupting))
    assert load_checkpoint(ckpt)["epoch"] == 2

    # ... and resumed, with the same loss function, in a fresh model object (as a new process).
    trap.armed = False
    resumed = make_model(seed=99)  # different init: everything must come from the checkpoint
    h_res = fit(resumed, x, x[:64], epochs=4, checkpoint_path=ckpt, resume=True,
                **dict(settings, loss_fn=interrupting))
    assert same_params(resumed, full)
    assert h_res.train == h_full.train and h_res.test == h_full.test and h_res.beta == h_full.beta
    assert load_checkpoint(ckpt)["epoch"] == 4


def test_resume_can_extend_training_and_a_finished_run_is_a_no_op(tmp_path):
    x, _ = make_data()
    ckpt = tmp_path / "c.pt"
    a = make_model()
    fit(a, x, epochs=2, checkpoint_path=ckpt, **KW)
    b = make_model()
    fit(b, x, epochs=3, checkpoint_path=ckpt, resume=True, **KW)
    c = make_model()
    fit(c, x, epochs=3, **KW)
    assert same_params(b, c)
    d = make_model(seed=5)
    h = fit(d, x, epochs=3, checkpoint_path=ckpt, resume=True, **KW)  # nothing left to do
    assert same_params(d, c) and h.epochs == 3


def test_resume_refuses_other_settings_and_missing_file_starts_fresh(tmp_path):
    x, _ = make_data()
    ckpt = tmp_path / "c.pt"
    fit(make_model(), x, epochs=1, checkpoint_path=ckpt, **KW)
    with pytest.raises(CheckpointError, match="lr=0.001.*lr=0.01"):
        fit(make_model(), x, epochs=2, lr=1e-2, checkpoint_path=ckpt, resume=True, **KW)
    with pytest.raises(CheckpointError, match="n_train"):
        fit(make_model(), x[:128], epochs=2, checkpoint_path=ckpt, resume=True, **KW)
    fresh, ref = make_model(), make_model()
    fit(fresh, x, epochs=1, checkpoint_path=tmp_path / "new.pt", resume=True, **KW)
    fit(ref, x, epochs=1, **KW)
    assert same_params(fresh, ref)
    with pytest.raises(ValueError, match="checkpoint_path"):
        fit(make_model(), x, epochs=1, resume=True, **KW)


def test_resume_refuses_what_it_cannot_reproduce(tmp_path):
    x, _ = make_data()
    other_x, _ = make_data(seed=1)  # other training data of the same size
    ckpt = tmp_path / "c.pt"
    fit(make_model(), x, x[:64], epochs=3, checkpoint_path=ckpt, **KW)
    before = ckpt.read_bytes()
    cases = [
        ({"train_x": other_x}, "other training data"),
        ({"test_x": x[64:128]}, "other test data"),
        ({"loss_fn": make_scaled_loss(2.0)}, "other a loss function|other loss"),
        ({"epochs": 2}, "3 epochs already, more than epochs=2"),
    ]
    for change, match in cases:
        args = {"train_x": x, "test_x": x[:64], "epochs": 4, **change}
        with pytest.raises(CheckpointError, match=match):
            fit(make_model(), args.pop("train_x"), args.pop("test_x"), checkpoint_path=ckpt, resume=True,
                **args, **KW)
    assert ckpt.read_bytes() == before  # nothing was overwritten
    # the same loss function re-created (same code and values) resumes
    fit(make_model(), x, x[:64], epochs=3, checkpoint_path=tmp_path / "d.pt", loss_fn=make_scaled_loss(1.0),
        **KW)
    fit(make_model(), x, x[:64], epochs=4, checkpoint_path=tmp_path / "d.pt", resume=True,
        loss_fn=make_scaled_loss(1.0), **KW)
    assert load_checkpoint(tmp_path / "d.pt")["epoch"] == 4


def make_scaled_loss(scale: float):
    def scaled(model, xb, yb, *, beta, generator):
        loss, terms = elbo_loss(model, xb, beta=beta, generator=generator)
        return scale * loss, terms
    return scaled


def test_forgetting_resume_does_not_overwrite_progress(tmp_path):
    x, _ = make_data()
    ckpt = tmp_path / "c.pt"
    fit(make_model(), x, epochs=3, checkpoint_path=ckpt, **KW)
    before = ckpt.read_bytes()
    with pytest.raises(FileExistsError, match="resume=True.*overwrite=True"):
        fit(make_model(), x, epochs=1, checkpoint_path=ckpt, **KW)
    assert ckpt.read_bytes() == before
    with pytest.raises(ValueError, match="contradict"):
        fit(make_model(), x, epochs=1, checkpoint_path=ckpt, resume=True, overwrite=True, **KW)
    fit(make_model(), x, epochs=1, checkpoint_path=ckpt, overwrite=True, **KW)
    assert load_checkpoint(ckpt)["epoch"] == 1


def test_numpy_scalars_are_accepted_where_python_numbers_are():
    x, _ = make_data(64)
    a, b = make_model(), make_model()
    kw = {k: v for k, v in KW.items() if k != "batch_size"}
    fit(a, x, epochs=1, lr=np.float32(1e-3), seed=np.int64(2), batch_size=np.int64(32), **kw)
    fit(b, x, epochs=1, lr=float(np.float32(1e-3)), seed=2, **dict(KW, batch_size=32))
    assert same_params(a, b)


def test_labels_for_training_need_labels_for_the_test_set_before_training():
    x, y = make_data()
    model = ConditionalVAE(X_DIM, H_DIM, Z_DIM, n_classes=8)

    def cond_loss(m, xb, yb, *, beta, generator):
        return elbo_loss(m.given(yb), xb, beta=beta, generator=generator)

    with pytest.raises(ValueError, match="test_y"):
        fit(model, x, x[:32], epochs=1, loss_fn=cond_loss, train_y=y, **KW)


# ---------------------------------------------------------------------------------------------
# NaN / inf, warm-up, binarization, losses
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_stops_naming_epoch_and_step_and_keeps_the_checkpoint(tmp_path, bad):
    x, _ = make_data()
    ckpt = tmp_path / "c.pt"
    calls = {"n": 0}

    def poisoned(model, xb, yb, *, beta, generator):
        calls["n"] += torch.is_grad_enabled()
        loss, terms = elbo_loss(model, xb, beta=beta, generator=generator)
        return (loss * bad if calls["n"] == 4 + 3 else loss), terms  # epoch 2, step 3

    model = make_model()
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 3 of 4"):
        fit(model, x, epochs=3, checkpoint_path=ckpt, loss_fn=poisoned, **KW)
    saved = load_checkpoint(ckpt)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model_state"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # stopped before the bad update


def test_poisoned_data_is_rejected_before_training():
    x, _ = make_data()
    x[17, 3] = math.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        fit(make_model(), x, epochs=1, **KW)


def _record_trust(model: VAE) -> list[bool]:
    """Make ``model.encode`` record whether check_batch's value checks are skipped at each call."""
    from vae_core import checks

    seen: list[bool] = []
    encode = model.encode

    def recording_encode(x):
        seen.append(checks._VALUES_TRUSTED.get())
        return encode(x)

    model.encode = recording_encode
    return seen


def test_default_loss_skips_per_step_value_checks_and_trains_identically(monkeypatch):
    """The data are checked once by prepare_data; inside the loop the model does not re-read every
    batch for NaN/range (benchmarks/: ~5% of a CPU step, 6 host syncs per CUDA step). The training
    is the same with and without the per-step checks, and they come back after fit."""
    from vae_core import checks

    x, _ = make_data()
    fast, checked = make_model(), make_model()
    seen = _record_trust(fast)
    h_fast = fit(fast, x, x[:64], epochs=2, **KW)
    assert seen and all(seen)  # every training and test-evaluation call skipped the value checks
    assert not checks._VALUES_TRUSTED.get()
    with pytest.raises(ValueError, match="NaN"):
        fast.encode(torch.full((1, X_DIM), math.nan))
    monkeypatch.setattr(train, "_trusted_values", contextlib.nullcontext)
    seen = _record_trust(checked)
    h_checked = fit(checked, x, x[:64], epochs=2, **KW)
    assert seen and not any(seen)
    assert same_params(fast, checked) and h_fast.train == h_checked.train and h_fast.test == h_checked.test


def test_prepare_data_reads_uint8_values_once_and_still_checks_shapes_and_floats(monkeypatch):
    """uint8/255 is in [0, 1] by construction, so its values are not checked again (a 60k data set
    costs ~0.3 s per check on a CPU); shapes still are, and float data get the full check."""
    from vae_core import checks

    values_checked = []

    def spy(*args, **kwargs):
        values_checked.append(not checks._VALUES_TRUSTED.get())
        return checks.check_batch(*args, **kwargs)

    monkeypatch.setattr(train, "check_batch", spy)
    images = torch.arange(256, dtype=torch.uint8).reshape(4, 8, 8)
    x = train.prepare_data(images, 64)
    assert values_checked == [False] and x.dtype == torch.float32 and x.shape == (4, 64)
    assert torch.equal(x, images.reshape(4, 64).float() / 255) and x.min() == 0 and x.max() == 1
    assert train.prepare_data(images).shape == (4, 64)  # x_dim inferred
    with pytest.raises(ValueError, match=r"shape \(batch, 16\)"):
        train.prepare_data(images, 16)
    values_checked.clear()
    train.prepare_data(x, 64)
    assert values_checked == [True]
    with pytest.raises(ValueError, match="outside"):
        train.prepare_data(x * 2, 64)
    with pytest.raises(ValueError, match="NaN"):
        train.prepare_data(torch.full((2, 64), math.nan), 64)


def test_custom_loss_keeps_the_model_checks():
    x, _ = make_data()
    model = make_model()
    seen = _record_trust(model)

    def loss_fn(m, xb, yb, *, beta, generator):
        return elbo_loss(m, xb, beta=beta, generator=generator)

    fit(model, x, epochs=1, loss_fn=loss_fn, **KW)
    assert seen and not any(seen)


def test_warmup_beta_formula():
    assert train.warmup_beta(0, 2.0, 0) == 2.0
    assert [train.warmup_beta(s, 2.0, 4) for s in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert train.warmup_beta(2, 1.0, 2.5) == 1.0 and train.warmup_beta(1, 1.0, 2.5) == pytest.approx(0.8)


def test_fit_applies_the_warmup_per_step():
    x, _ = make_data()
    seen: list[float] = []

    def recording(model, xb, yb, *, beta, generator):
        seen.append(beta)
        return elbo_loss(model, xb, beta=beta, generator=generator)

    beta, warmup_epochs, steps = 0.5, 2, 4
    h = fit(make_model(), x, epochs=3, beta=beta, warmup_epochs=warmup_epochs, loss_fn=recording, **KW)
    total = warmup_epochs * steps
    expected = [beta * min(1.0, (s + 1) / total) for s in range(3 * steps)]
    assert seen == pytest.approx(expected, abs=0)
    assert h.beta == [expected[steps - 1], expected[2 * steps - 1], expected[3 * steps - 1]]
    assert h.beta == [0.25, 0.5, 0.5]


@pytest.mark.parametrize("mode", ["dynamic", "static", None])
def test_binarization_modes(mode):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, X_DIM, generator=g)  # grey levels
    sums: list[float] = []
    values: list[torch.Tensor] = []

    def recording(model, xb, yb, *, beta, generator):
        sums.append(float(xb.sum()))
        values.append(xb.unique())
        return elbo_loss(model, xb, beta=beta, generator=generator)

    fit(make_model(), x, epochs=3, batch_size=64, binarize=mode, loss_fn=recording, progress=False,
        device="cpu")
    if mode is None:
        assert sums == pytest.approx([float(x.sum())] * 3)
    else:
        assert all(set(v.tolist()) <= {0.0, 1.0} for v in values)
        if mode == "static":
            assert len(set(sums)) == 1  # the same binary images every epoch
        else:
            assert len(set(sums)) == 3  # a fresh draw every epoch
        # about as many ones as the grey levels' expectation (±5 standard deviations)
        mean, sd = float(x.sum()), float((x * (1 - x)).sum().sqrt())
        assert all(abs(s - mean) < 5 * sd for s in sums)


def test_test_set_is_binarized_by_the_books_one_protocol_whatever_the_seed():
    from vae_core import data as vdata
    g = torch.Generator().manual_seed(1)
    x, xt = torch.rand(64, X_DIM, generator=g), torch.rand(40, X_DIM, generator=g)  # grey levels
    for seed in (0, 7):
        seen: list[torch.Tensor] = []

        def recording(model, xb, yb, *, beta, generator, seen=seen):
            if not torch.is_grad_enabled():  # the end-of-epoch test evaluation
                seen.append(xb.clone())
            return elbo_loss(model, xb, beta=beta, generator=generator)

        fit(make_model(), x, xt, epochs=1, batch_size=64, loss_fn=recording, seed=seed,
            progress=False, device="cpu")
        assert torch.equal(torch.cat(seen), vdata.static_binarize(xt, vdata.TEST_BINARIZATION_SEED))


def test_default_loss_is_objectives_loss_with_a_generator():
    x, _ = make_data(32)
    model = make_model()
    ours, terms = elbo_loss(model, x, beta=0.7, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(4)
    theirs, their_terms = objectives.loss(model, x, beta=0.7)
    assert torch.equal(ours, theirs)
    assert all(torch.equal(terms[k], getattr(their_terms, k)) for k in ("elbo", "rec", "kl"))


def test_free_bits_clamps_the_mean_kl_of_each_dimension():
    x, _ = make_data(32)
    model = make_model()
    lam, beta = 0.3, 0.9
    loss, terms = elbo_loss(model, x, beta=beta, free_bits=lam, generator=torch.Generator().manual_seed(1))
    mu, logvar = model.encode(x)
    kl_dim = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))  # oracle, (batch, z_dim)
    g = torch.Generator().manual_seed(1)
    z = mu + (0.5 * logvar).exp() * torch.randn((1, *mu.shape), generator=g)
    rec = model.log_likelihood(x, z).mean(0)
    expected = -rec.mean() + beta * kl_dim.mean(0).clamp(min=lam).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(terms["kl"], kl_dim.sum(-1), atol=1e-5)  # reported KL is the true one
    # a dimension below the floor gets no gradient from the KL term
    big_lam = float(kl_dim.detach().mean(0).max()) + 1.0
    model.zero_grad()
    elbo_loss(model, x, beta=1.0, free_bits=big_lam, generator=torch.Generator().manual_seed(1))[0].backward()
    grad_with_floor = model.to_logvar.weight.grad.clone()
    model.zero_grad()
    (-rec.mean()).backward()
    assert torch.allclose(grad_with_floor, model.to_logvar.weight.grad, atol=1e-6)


def test_fit_with_free_bits_runs_and_reports_true_terms():
    x, _ = make_data()
    h = fit(make_model(), x, epochs=2, free_bits=0.5, **KW)
    assert h.train["elbo"][-1] == pytest.approx(h.train["rec"][-1] - h.train["kl"][-1], abs=1e-4)


def test_conditional_model_with_labels_and_scalar_terms():
    x, y = make_data()
    torch.manual_seed(0)
    model = ConditionalVAE(X_DIM, H_DIM, Z_DIM, n_classes=8)

    def cvae_loss(m, xb, yb, *, beta, generator):
        loss, terms = elbo_loss(m.given(yb), xb, beta=beta, generator=generator)
        terms["accuracy_like"] = torch.tensor(0.5)  # a 0-d term is taken as a batch mean
        return loss, terms

    h = fit(model, x, x[:64], epochs=3, lr=1e-2, loss_fn=cvae_loss, train_y=y, test_y=y[:64], **KW)
    assert h.train["loss"][-1] < h.train["loss"][0]
    assert h.train["accuracy_like"] == pytest.approx([0.5] * 3) and "elbo" in h.test
    with pytest.raises(ValueError, match="no labels"):
        fit(make_model(), x, epochs=1, train_y=y, **KW)
    with pytest.raises(ValueError, match="train_y must have shape"):
        fit(model, x, epochs=1, loss_fn=cvae_loss, train_y=y[:10], **KW)


# ---------------------------------------------------------------------------------------------
# Bad hyperparameters and data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"epochs": 0}, "epochs"), ({"epochs": 1.5}, "epochs"), ({"batch_size": 0}, "batch_size"),
    ({"lr": 0.0}, "lr"), ({"lr": -1e-3}, "lr"), ({"lr": math.nan}, "lr"), ({"beta": -0.1}, "beta"),
    ({"warmup_epochs": -1}, "warmup_epochs"), ({"free_bits": -0.5}, "free_bits"),
    ({"binarize": "yes"}, "binarize"), ({"kl": "exact"}, "kl"), ({"n_samples": 0}, "n_samples"),
    ({"free_bits": 0.5, "loss_fn": elbo_loss}, "free_bits"),
    ({"seed": 1.5}, "seed"), ({"seed": -1}, "seed"), ({"seed": True}, "seed"), ({"seed": "0"}, "seed"),
])
def test_bad_hyperparameters_are_rejected(kwargs, match):
    x, _ = make_data(16)
    model = make_model()
    before = params(model)
    args = {"epochs": 1, **KW, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit(model, x, **args)
    assert all(torch.equal(p, q) for p, q in zip(before, params(model), strict=True))


@pytest.mark.parametrize(("data", "error", "match"), [
    (torch.rand(10, 15), ValueError, r"shape \(batch, 16\)"),
    (torch.rand(16), ValueError, "batch dimension"),
    (torch.rand(0, 16), ValueError, "empty"),
    (torch.rand(10, 16) * 2, ValueError, "outside"),
    (torch.full((10, 16), math.inf), ValueError, "NaN or inf"),
    (torch.ones(10, 16, dtype=torch.int64), TypeError, "uint8"),
    ([[0.0] * 16], TypeError, "Tensor"),
])
def test_bad_data_is_rejected(data, error, match):
    with pytest.raises(error, match=match):
        fit(make_model(), data, epochs=1, **KW)


def test_bad_test_data_is_rejected():
    x, _ = make_data(16)
    with pytest.raises(ValueError, match="test_x"):
        fit(make_model(), x, torch.rand(4, 3), epochs=1, **KW)


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------


def test_default_device_is_cuda_when_available():
    assert train.default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda_is_seeded_and_resumable(tmp_path):
    x, _ = make_data()
    kw = dict(KW, device="cuda", warmup_epochs=1)
    a, b = make_model(), make_model()
    fit(a, x, x[:64], epochs=3, **kw)
    fit(b, x, x[:64], epochs=3, **kw)
    assert next(a.parameters()).is_cuda and same_params(a, b)
    c = make_model()
    fit(c, x, x[:64], epochs=1, checkpoint_path=tmp_path / "c.pt", **kw)
    d = make_model()
    fit(d, x, x[:64], epochs=3, checkpoint_path=tmp_path / "c.pt", resume=True, **kw)
    assert same_params(a, d)


def test_model_copy_is_untouched_by_fit_of_another():
    x, _ = make_data()
    a = make_model()
    b = copy.deepcopy(a)
    fit(a, x, epochs=1, **KW)
    assert not same_params(a, b)
