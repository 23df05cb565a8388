"""Tests for vae_core.checkpoints: atomic writes, safe and verified loading (digest, structure,
versions, finiteness, sizes), mismatched, corrupt, damaged and malicious files, umask, disk full."""

from __future__ import annotations

import errno
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from test_train import H_DIM, KW, X_DIM, make_data, make_model, same_params

from vae_core import checkpoints, train
from vae_core.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from vae_core.models import VAE, ConditionalVAE
from vae_core.train import History, fit

# ---------------------------------------------------------------------------------------------
# Checkpoint files
# ---------------------------------------------------------------------------------------------


def test_checkpoint_contents_load_with_weights_only(tmp_path):
    x, _ = make_data()
    ckpt = tmp_path / "c.pt"
    model = make_model()
    h = fit(model, x, epochs=2, checkpoint_path=ckpt, **KW)
    raw = torch.load(ckpt, weights_only=True)
    assert raw["format"] == train.CHECKPOINT_FORMAT and raw["format_version"] == train.CHECKPOINT_VERSION
    assert raw["model_class"] == "VAE" and raw["model_config"] == model.config()
    assert raw["epoch"] == 2 and raw["global_step"] == 8 and raw["optimizer_state"]["state"]
    assert History.from_dict(raw["history"]) == h
    assert set(raw["rng"]) >= {"generator", "torch_cpu"}
    rebuilt, h2 = train.load_model(ckpt)
    assert same_params(rebuilt, model) and h2 == h


def test_checkpoint_write_is_atomic_when_the_write_crashes(tmp_path, monkeypatch):
    x, _ = make_data()
    ckpt = tmp_path / "c.pt"
    fit(make_model(), x, epochs=1, checkpoint_path=ckpt, **KW)
    before = ckpt.read_bytes()
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # the temp file now holds (part of) the new checkpoint
        f.write(b"half")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="simulated"):
        fit(make_model(), x, epochs=2, checkpoint_path=ckpt, resume=True, **KW)
    monkeypatch.undo()
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temp file left behind
    assert load_checkpoint(ckpt)["epoch"] == 1


def test_architecture_mismatch_names_the_difference(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, make_model(z_dim=2))
    with pytest.raises(CheckpointError, match="checkpoint has z_dim=2 but model has z_dim=20"):
        load_checkpoint(path, VAE(X_DIM, H_DIM, 20))
    with pytest.raises(CheckpointError, match="checkpoint has h_dim=8 but model has h_dim=9"):
        load_checkpoint(path, VAE(X_DIM, 9, 2))
    with pytest.raises(CheckpointError, match="checkpoint is a VAE but model is a ConditionalVAE"):
        load_checkpoint(path, ConditionalVAE(X_DIM, H_DIM, 2, n_classes=3))
    # and the same refusal when fit is asked to resume into another architecture
    x, _ = make_data()
    with pytest.raises(CheckpointError, match="z_dim=2 but model has z_dim=3"):
        fit(make_model(z_dim=3), x, epochs=2, checkpoint_path=path, resume=True, **KW)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage-zip", "truncated",
                                     "foreign-torch-file", "json"])
def test_corrupt_or_foreign_files_give_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "truncated":
        save_checkpoint(path, make_model())
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "foreign-torch-file":
        torch.save({"weights": torch.ones(3)}, path)
    elif content == "json":
        path.write_text(json.dumps({"format": "vae_core.checkpoint"}))
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a (valid|vae_core) checkpoint"):
        load_checkpoint(path, make_model())


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")


class _Payload:
    """Unpickling this would run ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_with_code_is_refused_and_not_executed(tmp_path, writer):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    payload = {"format": train.CHECKPOINT_FORMAT, "format_version": 1, "model_state": _Payload(marker)}
    if writer == "pickle":
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    else:
        torch.save(payload, path)
    # sanity: the file really is armed (a plain unpickler would run the command)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path, make_model())
    x, _ = make_data()
    with pytest.raises(CheckpointError, match="refused"):
        fit(make_model(), x, epochs=1, checkpoint_path=path, resume=True, **KW)
    assert not marker.exists()




# ---------------------------------------------------------------------------------------------
# Verified loading: digest, structure, versions, values (issue 13)
# ---------------------------------------------------------------------------------------------


def _flip_one_bit_in_weights(path: Path) -> None:
    """Flip one bit inside the stored bytes of the first weight matrix (torch's zip layout)."""
    import zipfile

    with zipfile.ZipFile(path) as zin:
        items = [(info, zin.read(info.filename)) for info in zin.infolist()]
    tensors = [i for i, (info, _) in enumerate(items) if "/data/" in info.filename]
    k = max(tensors, key=lambda i: len(items[i][1]))  # the largest tensor: a weight matrix
    blob = bytearray(items[k][1])
    blob[len(blob) // 2 + 3] ^= 0x40  # an exponent bit of a float32 in the middle
    items[k] = (items[k][0], bytes(blob))
    with zipfile.ZipFile(path, "w") as zout:
        for info, content in items:
            zout.writestr(info, content)


def test_a_flipped_bit_in_the_weights_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, make_model())
    assert load_checkpoint(path)["state_digest"] == checkpoints.state_digest(make_model().state_dict())
    _flip_one_bit_in_weights(path)
    raw = torch.load(path, weights_only=True)  # torch itself reads the damaged file without a word
    assert not same_state(raw["model_state"], make_model().state_dict())
    with pytest.raises(CheckpointError, match=f"{path}.*damaged"):
        load_checkpoint(path)
    model = make_model(seed=5)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(CheckpointError):
        load_checkpoint(path, model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_state_digest_sees_names_dtypes_shapes_and_every_byte():
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    d = checkpoints.state_digest(state)
    assert d == checkpoints.state_digest({"b": torch.zeros(3), "w": torch.arange(6.0).reshape(2, 3)})
    assert d != checkpoints.state_digest({"w": torch.arange(6.0).reshape(3, 2), "b": torch.zeros(3)})
    assert d != checkpoints.state_digest({"w": torch.arange(6.0).reshape(2, 3).double(), "b": torch.zeros(3)})
    assert d != checkpoints.state_digest({"v": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)})
    nudged = torch.arange(6.0).reshape(2, 3)
    nudged[1, 2] = torch.nextafter(nudged[1, 2], torch.tensor(10.0))  # one ulp
    assert d != checkpoints.state_digest({"w": nudged, "b": torch.zeros(3)})
    scalar = checkpoints.state_digest
    assert scalar({"s": torch.tensor(1.5)}) != scalar({"s": torch.tensor(2.5)})


def _hand_crafted(path: Path, **changes) -> Path:
    save_checkpoint(path, make_model())
    ckpt = torch.load(path, weights_only=True)
    ckpt.update(changes)
    if "model_state" in changes and isinstance(changes["model_state"], dict):
        ckpt["state_digest"] = checkpoints.state_digest(changes["model_state"])
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(("changes", "match"), [
    ({"format_version": 0}, "format version 0"),
    ({"format_version": -5}, "format version -5"),
    ({"format_version": True}, "format version True"),
    ({"format_version": 99}, "format version 99"),
    ({"format_version": "2"}, "format version '2'"),
    ({"model_state": {"layer.weight": torch.full((2, 2), float("nan"))}}, "non-finite"),
    ({"model_state": {"layer.weight": torch.tensor([1.0, float("inf")])}}, "non-finite"),
    ({"model_state": [1, 2]}, "no usable model_state"),
    ({"model_state": {"w": "not a tensor"}}, "no usable model_state"),
    ({"model_config": {"x_dim": 16, "h_dim": 10**12, "z_dim": 2}}, "not a plausible size"),
    ({"model_config": "16-8-2"}, "model_config is not a dict"),
    ({"epoch": -1}, "epoch -1"),
    ({"epoch": 1.5}, "epoch 1.5"),
    ({"history": [1, 2]}, "history is not a dict"),
])
def test_every_unusable_hand_crafted_file_is_a_checkpoint_error(tmp_path, changes, match):
    path = _hand_crafted(tmp_path / "c.pt", **changes)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_a_huge_config_is_refused_before_any_allocation(tmp_path):
    path = _hand_crafted(tmp_path / "c.pt", model_config={"x_dim": 16, "h_dim": 10**12, "z_dim": 2})
    with pytest.raises(CheckpointError, match="plausible"):
        checkpoints.load_model(path)


def test_a_config_that_does_not_build_the_model_is_a_checkpoint_error(tmp_path):
    path = _hand_crafted(tmp_path / "c.pt", model_config={"x_dim": 16, "h_dim": 8, "z_dim": 2, "bogus": 1})
    with pytest.raises(CheckpointError, match="do not build a VAE"):
        checkpoints.load_model(path)


def test_version_1_files_without_a_digest_still_load(tmp_path):
    path = _hand_crafted(tmp_path / "c.pt", format_version=1)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_digest"]
    torch.save(ckpt, path)
    model = make_model(seed=3)
    load_checkpoint(path, model)
    assert same_params(model, make_model())


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "a.pt", make_model())
        os.umask(0o077)
        save_checkpoint(tmp_path / "b.pt", make_model())
    finally:
        os.umask(old)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o600


def test_a_full_disk_says_so_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, make_model())
    before = path.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0: "
                           "file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=f"disk full while writing {path}.*intact") as info:
        save_checkpoint(path, make_model(seed=1))
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


@pytest.mark.parametrize("case", ["folder", "under-a-file", "read-only"])
def test_an_unwritable_checkpoint_path_is_refused_before_training(tmp_path, case, monkeypatch):
    if case == "folder":
        path = tmp_path
    elif case == "under-a-file":
        (tmp_path / "f").write_text("x")
        path = tmp_path / "f" / "c.pt"
    else:
        if os.geteuid() == 0:  # root writes anywhere: simulate the refusal of the folder
            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied")
            monkeypatch.setattr(checkpoints.tempfile, "mkstemp", refuse)
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        path = ro / "c.pt"
    x, _ = make_data()
    steps = []

    def counting(model, xb, yb, *, beta, generator):
        steps.append(1)
        return train.elbo_loss(model, xb, beta=beta, generator=generator)

    with pytest.raises(CheckpointError, match="cannot|folder"):
        fit(make_model(), x, epochs=1, checkpoint_path=path, loss_fn=counting, **KW)
    assert steps == []  # refused before the first step


def test_history_of_a_checkpoint_round_trips(tmp_path):
    x, _ = make_data()
    h = fit(make_model(), x, x[:32], epochs=2, checkpoint_path=tmp_path / "c.pt", **KW)
    assert History.from_dict(load_checkpoint(tmp_path / "c.pt")["history"]) == h
    assert json.loads(json.dumps(h.to_dict())) == h.to_dict()


@pytest.mark.parametrize("changes", [{"history": {"train": {"loss": "abc"}}},
                                     {"history": {"beta": 3}}])
def test_a_malformed_history_is_a_checkpoint_error(tmp_path, changes):
    path = _hand_crafted(tmp_path / "c.pt", **changes)
    with pytest.raises(CheckpointError, match="history"):
        load_checkpoint(path)


def test_a_checkpoint_not_written_by_fit_cannot_be_resumed(tmp_path):
    x, _ = make_data()
    path = tmp_path / "c.pt"
    save_checkpoint(path, make_model(), torch.optim.Adam(make_model().parameters()), epoch=1,
                    extra={"fit_settings": {}})
    with pytest.raises(CheckpointError, match="global step or random-number states"):
        fit(make_model(), x, epochs=2, checkpoint_path=path, resume=True, **KW)
