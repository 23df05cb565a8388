"""Shared pytest fixtures (kept minimal)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """Run every test with one intra-op thread, restoring the previous setting afterwards.

    The unit tests use tiny tensors, where extra threads add only synchronisation overhead; on a busy
    CPU that overhead can make a test many times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
