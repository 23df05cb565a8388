"""scripts/inline_numbers.py and book/_ext/inline_numbers.py: numbers in prose as {eval} expressions.

The oracle for a converted number is what myst-nb's ``{glue:text}`` showed (its own
``format_plain_text``); one small notebook is executed for real (a kernel, a few seconds).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest
from myst_nb.core.variables import format_plain_text

ROOT = Path(__file__).resolve().parents[1]


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


inline = load("inline_numbers_script", ROOT / "scripts" / "inline_numbers.py")
ext = load("inline_numbers_ext", ROOT / "book" / "_ext" / "inline_numbers.py")


@pytest.mark.parametrize("text,spec", [("0.123456", ".2f"), ("3", ".1f"), ("'60,000'", ""),
                                       ("12", ""), ("0.5", ".0%"), ("1234567.0", ",.0f"),
                                       ("'N(2.00, 0.60²)'", "s"), ("np.float64(0.5)", "")])
def test_myst_nb_text_is_myst_nbs(text, spec):
    assert inline.myst_nb_text(text, spec) == format_plain_text(text, spec or "")


@pytest.mark.parametrize("source,spec,value", [("kl", ".2f", 0.123456), ("x['a'] / 2", ".1f", 3.0),
                                               ('f"{n:,}"', "", None), ("len(v)", "", None),
                                               ("100 * r", ".0f", 42.4)])
def test_as_expression_formats_like_glue(source, spec, value):
    expr = inline.as_expression(source, spec)
    scope = {"kl": 0.123456, "x": {"a": 6.0}, "n": 60000, "v": [1, 2, 3], "r": 0.424}
    result = eval(expr, scope)
    truth = eval(source, scope)
    assert result == (format(truth, spec) if spec else truth)


def test_plain_text_strips_quotes_and_refuses_errors():
    ok = {"status": "ok", "data": {"text/plain": "'0.53'"}, "metadata": {}}
    assert inline.plain_text(ok) == ext.plain_text(ok) == "0.53"
    assert ext.plain_text({"status": "ok", "data": {"text/plain": "4000"}}) == "4000"
    with pytest.raises(ValueError):
        ext.plain_text({"status": "error", "ename": "NameError", "evalue": "x"})
    with pytest.raises(inline.ExpressionError):
        inline.plain_text({"status": "error", "ename": "NameError", "evalue": "x"})


def test_glue_sources_refuses_loops_duplicates_and_computed_names():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'glue("a", x + 1, display=False)\n'
        'for k in range(2):\n    glue("b", k, display=False)\n'
        'glue("c", 1)\nglue("c", 2)\n'
        'glue(f"d{1}", 3)\n')])
    sources, refused = inline.glue_sources(nb)
    assert sources == {"a": (0, "x + 1")}
    assert set(refused) == {"b", "c"}


def test_glue_sources_unrolls_loops_over_literals():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'for j in range(2):\n    glue(f"m{j}", f"{m[j]:.2f}")\n'
        'for key, value in [("lo", r[0]), ("hi", r[1])]:\n    glue(key, value)\n'
        'for d in (2, 20):\n    exact = d * 2\n    glue(f"s{d}", exact)\n')])
    sources, _ = inline.glue_sources(nb)
    assert sources == {"m0": (0, "f'{m[0]:.2f}'"), "m1": (0, "f'{m[1]:.2f}'"),
                       "lo": (0, "r[0]"), "hi": (0, "r[1]")}    # s2, s20: exact is loop-local


def notebook(tmp_path: Path, code: str, markdown: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from myst_nb import glue\n" + code),
        nbformat.v4.new_markdown_cell(markdown)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_convert_executes_checks_and_is_idempotent(tmp_path):
    path = notebook(tmp_path, 'kl = 0.123456\nglue("kl", kl, display=False)\n'
                              'glue("n", f"{60000:,}", display=False)\n',
                    "KL {glue:text}`kl:.3f` over {glue:text}`n` images.")
    assert inline.convert(path) == []
    nb = nbformat.read(path, as_version=4)
    md = nb.cells[1]
    assert md["source"] == 'KL {eval}`f"{kl:.3f}"` over {eval}`f"{60000:,}"` images.'
    shown = [ext.plain_text(s["result"]) for s in md["metadata"]["user_expressions"]]
    assert shown == ["0.123", "60,000"]
    assert nb.cells[0].execution_count == 1          # silent: no execution count taken
    before = path.read_text()
    assert inline.convert(path) == [] and path.read_text() == before


def test_convert_puts_back_a_role_whose_number_would_change(tmp_path):
    # kl is glued, then reassigned before the prose: the expression would show another number.
    path = notebook(tmp_path, 'kl = 0.5\nglue("kl", kl, display=False)\nkl = 0.7\n'
                              'glue("n", 3, display=False)\n',
                    "KL {glue:text}`kl:.1f` of {glue:text}`n`.")
    problems = inline.convert(path)
    assert len(problems) == 1 and "shows '0.7'" in problems[0] and "showed '0.5'" in problems[0]
    md = nbformat.read(path, as_version=4).cells[1]
    assert md.source == "KL {glue:text}`kl:.1f` of {eval}`3`."
    assert [s["expression"] for s in md.metadata["user_expressions"]] == ["3"]


def test_execute_fails_on_an_expression_error_and_leaves_the_file(tmp_path):
    path = notebook(tmp_path, "x = 1\n", "A {eval}`undefined_name` here.")
    before = path.read_text()
    with pytest.raises(inline.ExpressionError, match="NameError"):
        inline.execute(path)
    assert path.read_text() == before


def test_convert_lists_prose_that_comes_before_its_number(tmp_path):
    path = notebook(tmp_path, "", "Soon: {glue:text}`late:.1f`.")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('late = 2.5\nglue("late", late, display=False)'))
    nbformat.write(nb, path)
    before = path.read_text()
    problems = inline.convert(path)
    assert len(problems) == 1 and "below the prose" in problems[0] and path.read_text() == before


def test_plan_lists_without_executing_or_writing(tmp_path):
    path = notebook(tmp_path, 'glue("a", 1, display=False)\n', "A {glue:text}`a` and {glue:text}`b`.")
    before = path.read_text()
    problems = inline.convert(path, plan=True)
    assert problems == ["nb.ipynb cell 1: {glue:text}`b` left: no glue call with this literal name",
                        "nb.ipynb: 1 roles would be converted (then checked)"]
    assert path.read_text() == before
