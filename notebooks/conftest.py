"""Strict nbval also checks the numbers in the prose (the inline expressions of markdown cells).

nbval compares every code cell's outputs with the committed ones but skips markdown cells. A markdown
cell's ``{eval}`expr` `` results are committed too (its ``user_expressions`` metadata, written by
``scripts/inline_numbers.py execute``). After each code cell passes, this plugin evaluates the
expressions of the markdown cells that follow it, in the same kernel (as JupyterLab does when the
reader runs them), and fails that cell's test if a result is not exactly the committed one.
"""

from __future__ import annotations

import re

import pytest

EXPRESSION = re.compile(r"\{eval\}`([^`]+)`")


def _markdown_after(item) -> list[dict]:
    """The markdown cells between this code cell and the next one (or the end of the notebook)."""
    cells = item.parent.nb.cells
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    start = code[item.cell_num]
    following = []
    for cell in cells[start + 1:]:
        if cell.cell_type == "code":
            break
        if cell.cell_type == "markdown":
            following.append(cell)
    return following


def _evaluate(kernel, exprs: list[str], timeout: float = 120) -> dict:
    msg_id = kernel.kc.execute("", silent=True, store_history=False,
                               user_expressions={str(i): e for i, e in enumerate(exprs)})
    while True:
        msg = kernel.get_message(stream="shell", timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            break
    kernel.await_idle(msg_id, timeout)
    return msg["content"].get("user_expressions", {})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield  # raises if the cell itself failed
    if type(item).__name__ != "IPyNbCell":
        return result
    for cell in _markdown_after(item):
        exprs = EXPRESSION.findall(cell.source)
        stored = cell.metadata.get("user_expressions", [])
        if not exprs:
            continue
        if [s["expression"] for s in stored] != exprs:
            raise AssertionError(
                f"markdown cell after code cell {item.cell_num}: the stored inline-expression results "
                f"do not match its {{eval}} expressions: run `make execute` on this notebook")
        results = _evaluate(item.parent.kernel, exprs)
        for i, s in enumerate(stored):
            got = results.get(str(i), {})
            want = s["result"]
            if got.get("status") != "ok" or got.get("data") != want.get("data"):
                raise AssertionError(
                    f"markdown cell after code cell {item.cell_num}: {{eval}}`{s['expression']}` "
                    f"gives {got.get('data') or got.get('evalue')!r}, committed {want.get('data')!r}")
    return result
