"""Training throughput with one torch thread: :mod:`benchmarks.throughput` (A, B, C interleaved) run
with ``threads=1``, written to ``throughput_1t.json``. Beside the default run (one thread per core) it
shows what a second core buys a small model, and what a notebook gets (the chapters use one thread)."""

from __future__ import annotations

from typing import Any

from . import throughput

NAME = "throughput_1t"


def run(*, threads: int | None = None, **kwargs: Any) -> dict[str, Any]:
    """:func:`benchmarks.throughput.run` with one thread (``threads`` is ignored), without the profile."""
    kwargs.setdefault("profile_dataset", None)
    result = throughput.run(threads=1, **kwargs)
    result["benchmark"] = NAME
    return result


def validate(result: dict[str, Any]) -> None:
    """Raise ValueError if ``result`` is not a well-formed one-thread throughput result."""
    throughput.validate(result, name=NAME)
