"""Runs scripts/book_metrics.py: each chapter meets the learner-first targets (issue 11).

A chapter that has been rewritten for learners carries ``"learner_first": true`` in its notebook
metadata, and from then on every target is enforced for it. A chapter not yet rewritten is reported
as an expected failure, naming what it misses, so the remaining work stays visible.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import book_metrics  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_meets_the_learner_first_targets(path):
    problems = book_metrics.problems(book_metrics.metrics(path))
    rewritten = json.loads(path.read_text())["metadata"].get("learner_first", False)
    if not rewritten:
        pytest.xfail(f"not yet rewritten for learners (issue 11): {'; '.join(problems)}")
    assert problems == []


def _notebook(tmp_path, cells, metadata=None):
    nb = {"cells": cells, "metadata": metadata or {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "03_example.ipynb"
    path.write_text(json.dumps(nb))
    return path


def _code(src, tags=(), outputs=()):
    return {"cell_type": "code", "source": src, "metadata": {"tags": list(tags)}, "outputs": list(outputs),
            "execution_count": None}


def _md(src):
    return {"cell_type": "markdown", "source": src, "metadata": {}}


def test_the_metrics_count_what_a_reader_sees(tmp_path):
    png = {"output_type": "display_data", "data": {"image/png": "iVBO"}}
    cells = [
        _md("# Title\nYou will be able to ...\n```{exercise}\nDo it.\n```\n:::{exercise}\nAgain\n:::"),
        _code("x = 1\n\nassert x == 1\n" + "y = " + "1 + " * 30 + "1\n", outputs=[png]),
        _code("assert 2 > 1\nglue('a', 1)\n" + "z" * 100, tags=["remove-cell"]),
        _code("def kl(mu, logvar):\n    ...  # your code\n", tags=["implement-it"], outputs=[png]),
        _md("The checks run under nbval in headless Chromium, see tests/test_x.py; `make test` is fine."),
        _md("## What to remember\n- one"),
    ]
    m = book_metrics.metrics(_notebook(tmp_path, cells))
    assert (m["visible"], m["wide"], m["checks"]) == (5, 1, 1)
    assert (m["figures"], m["exercises"], m["implement"], m["remember"]) == (2, 2, 1, True)
    assert m["machinery"] == ["Chromium", "headless", "nbval", "test_x.py", "tests/"]
    found = " / ".join(book_metrics.problems(m))
    for expected in ("1 visible code lines over 88", "20%", "2 exercises", "2 figures", "machinery"):
        assert expected in found
