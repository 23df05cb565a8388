"""Redraw time of the in-page figures: runs the browser test ``tests/test_inpage_figures.py`` (which
times every key press's handlers in headless Chromium on the built book) and keeps what it measured.

Needs the built book (``make book``) and Chromium; ``python -m benchmarks redraw`` writes
``benchmarks/results/redraw.json``. The test itself writes the times to ``$VAE_REDRAW_JSON`` (here a
temporary file), so an ordinary ``make test`` leaves the committed results alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import common

NAME = "redraw"


def run(*, threads: int | None = None, quick: bool = False, device: str | None = None) -> dict[str, Any]:
    """Run the browser test and return the envelope it wrote (ValueError if it measured nothing)."""
    with tempfile.TemporaryDirectory(prefix="vae-redraw-") as tmp:
        out = Path(tmp) / "redraw.json"
        env = dict(os.environ, VAE_REDRAW_JSON=str(out))
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "browser",
               "tests/test_inpage_figures.py"]
        proc = subprocess.run(cmd, cwd=common.ROOT, env=env, capture_output=True, text=True)
        if not out.exists():
            raise ValueError("the in-page figure test measured nothing (is the book built, Chromium "
                             f"installed?):\n{proc.stdout[-2000:]}")
        result = json.loads(out.read_text())
    result["quick"] = bool(quick)
    return result


def validate(result: dict[str, Any]) -> None:
    """Raise ValueError if ``result`` is not a well-formed redraw result."""
    common.validate(result, NAME)
    if not result["results"]:
        raise ValueError("no figure was timed")
    for name, r in result["results"].items():
        common.require(r, ("page", "figure", "median", "n"), f"results[{name!r}]")
