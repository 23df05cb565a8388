"""Tests for vae_core.checkpoints: atomic writes, safe and verified loading (digest, structure,
versions, finiteness, sizes), mismatched, corrupt, damaged and malicious files, umask, disk full."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from test_train import H_DIM, KW, X_DIM, make_data, make_model, same_params

from vae_core import train
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


