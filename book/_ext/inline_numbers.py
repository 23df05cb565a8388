"""Sphinx extension: numbers in the prose of a notebook, as MyST inline expressions.

A markdown cell writes a number as an inline expression, ``{eval}`f"{kl:.2f}"` ``. Executing the
notebook (``make execute``: ``scripts/inline_numbers.py execute``) evaluates each expression in the
kernel where the cell stands and stores the result in the cell's metadata, under
``user_expressions``: the format JupyterLab's jupyterlab-myst writes and renders. This extension
renders the same stored results in the Jupyter Book build, which executes nothing: the ``eval`` role
(myst-nb's needs a live kernel) reads the result from the cell's metadata and shows its text, as
myst-nb's ``{glue:text}`` would (a string without its quotes). A missing or failed result is a
build warning, hence an error under ``-W``.
"""

from __future__ import annotations

import json
from ast import literal_eval
from pathlib import Path

from docutils import nodes
from docutils.utils import unescape

# myst-nb numbers the lines of cell i from (i + 1) * 10000 (myst_nb.core.nb_to_tokens).
_CELL_LINE_BASE = 10000


def plain_text(result: dict) -> str:
    """The text a stored result shows: text/plain, a string without its quotes (as myst-nb and
    jupyterlab-myst both show it). Raises ValueError for a failed or textless result."""
    if result.get("status") != "ok":
        raise ValueError(f"{result.get('ename', 'error')}: {result.get('evalue', '')}")
    text = result.get("data", {}).get("text/plain")
    if text is None:
        raise ValueError("the result has no text/plain")
    try:
        value = literal_eval(text)
    except (SyntaxError, ValueError):
        return text
    return str(value)


def _stored_expressions(env, docname: str) -> list[list[dict]]:
    """Per cell of the notebook being built, its stored inline-expression results (cached per doc)."""
    cache = env.temp_data.setdefault("inline_numbers", {})
    if docname not in cache:
        path = Path(env.doc2path(docname))
        cells = json.loads(path.read_text())["cells"] if path.suffix == ".ipynb" else []
        cache[docname] = [cell.get("metadata", {}).get("user_expressions", []) for cell in cells]
    return cache[docname]


def eval_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{eval}`expression` ``: the result stored for ``expression`` in this markdown cell."""
    document = inliner.document
    env = document.settings.env
    expression = unescape(text)
    line = lineno or 0
    cell = line // _CELL_LINE_BASE - 1
    cells = _stored_expressions(env, env.docname)
    stored = cells[cell] if 0 <= cell < len(cells) else []
    match = next((s for s in stored if s.get("expression") == expression), None)
    try:
        if match is None:
            raise ValueError("no stored result (run `make execute` on this notebook)")
        value = plain_text(match["result"])
    except ValueError as exc:
        msg = document.reporter.warning(f"inline expression {expression!r}: {exc}", line=line)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    return [nodes.inline(value, value, classes=["pasted-text"])], []


def setup(app):
    # After myst_nb (a Jupyter Book extension loads before local ones), replacing its kernel-bound role.
    app.setup_extension("myst_nb")
    app.add_role("eval", eval_role, override=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
