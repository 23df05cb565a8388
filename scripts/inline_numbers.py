"""Numbers in the prose of a chapter: MyST inline expressions, computed by the notebook's own kernel.

A markdown cell writes a number as ``{eval}`f"{kl:.2f}"` ``: a Python expression over the variables
the cells above it defined. Executing the notebook evaluates each one in the kernel at the cell's
place and stores the result in the cell's metadata (``user_expressions``), the format that
jupyterlab-myst writes when a reader runs the cell and renders when the notebook opens; the book's
Sphinx extension ``book/_ext/inline_numbers.py`` renders the same stored results in the HTML build.

    python scripts/inline_numbers.py execute NB...   # execute in place, outputs and expression results
    python scripts/inline_numbers.py convert NB...   # {glue:text}`name:fmt` -> {eval}`expr`, checked
    python scripts/inline_numbers.py plan NB...      # what convert would do (no execution, no write)

``execute`` is ``jupyter nbconvert --to notebook --execute --inplace`` (same client, timeout and
working directory) plus the expressions; ``make execute`` runs it. ``convert`` is the one-off
migration from myst-nb's glue roles: it reads the expression each name was glued from (the
``glue("name", expr, ...)`` call in a code cell), writes ``{eval}`f"{expr:fmt}"` ``, executes the
notebook, and keeps the change only if every converted expression shows exactly the text
``{glue:text}`` showed. Roles it cannot convert safely (glued in a loop or a function, glued twice,
with a computed name, glued in a cell below the prose, or whose expression has another value where
the prose stands) are listed and left as glue roles, for a hand-written ``{eval}``. It is
idempotent: a notebook without glue roles is left untouched; a rerun converts nothing new.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from ast import literal_eval
from pathlib import Path

import nbformat
from nbclient import NotebookClient

EXPRESSION = re.compile(r"\{eval\}`([^`]+)`")
GLUE_TEXT = re.compile(r"\{glue:text\}`([^`]+)`")
RECORD = "application/papermill.record/text/plain"
TIMEOUT = 900


class ExpressionError(RuntimeError):
    """An inline expression failed in the kernel."""


def expressions(markdown: str) -> list[str]:
    """The inline expressions of a markdown cell, in order of appearance."""
    return EXPRESSION.findall(markdown)


def plain_text(result: dict) -> str:
    """The text a stored result shows (text/plain; a string without its quotes)."""
    if result.get("status") != "ok":
        raise ExpressionError(f"{result.get('ename', 'error')}: {result.get('evalue', '')}")
    text = result["data"]["text/plain"]
    try:
        return str(literal_eval(text))
    except (SyntaxError, ValueError):
        return text


class ExpressionClient(NotebookClient):
    """nbclient's executor that also evaluates each markdown cell's inline expressions, in order.

    The request is the one jupyterlab-myst sends (empty code, ``user_expressions``), but silent and
    without history, so code cells keep the execution counts of a plain execution.
    """

    def __init__(self, nb, strict: bool = True, **kwargs):
        super().__init__(nb, **kwargs)
        self.strict = strict
        self.failures: list[str] = []   # with strict=False: every failed expression, in order

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "markdown":
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        found = expressions(cell.source)
        if not found:
            cell.metadata.pop("user_expressions", None)
            return cell
        request = {str(i): expr for i, expr in enumerate(found)}
        msg_id = self.kc.execute("", silent=True, store_history=False, user_expressions=request)
        reply = await self.async_wait_for_reply(msg_id, cell)
        results = reply["content"]["user_expressions"]
        stored = []
        for i, expr in enumerate(found):
            result = dict(results[str(i)])
            if result.get("status") != "ok":
                failure = (f"cell {cell_index}: {{eval}}`{expr}` failed: "
                           f"{result.get('ename')}: {result.get('evalue')}")
                if self.strict:
                    raise ExpressionError(failure)
                self.failures.append(failure)
                continue
            stored.append({"expression": expr,
                           "result": {"status": "ok", "data": dict(result["data"]),
                                      "metadata": dict(result.get("metadata", {}))}})
        cell.metadata["user_expressions"] = stored
        return cell


def execute(path: Path, strict: bool = True) -> tuple[nbformat.NotebookNode, list[str]]:
    """Execute the notebook at ``path`` in place; returns it and (strict=False) the failed expressions.

    strict: a failed expression raises ExpressionError and the file is left as it was.
    """
    nb = nbformat.read(path, as_version=4)
    client = ExpressionClient(nb, strict=strict, timeout=TIMEOUT,
                              resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    nbformat.write(nb, path)
    return nb, client.failures


def glue_texts(nb: nbformat.NotebookNode) -> dict[str, str]:
    """name -> the text/plain each glued value was stored with (from the code cells' outputs)."""
    out = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None and RECORD in output.get("data", {}):
                out[name] = output["data"][RECORD]
    return out


def myst_nb_text(text_plain: str, spec: str) -> str:
    """What myst-nb's ``{glue:text}`name:spec` `` shows (myst_nb.core.variables.format_plain_text)."""
    try:
        value = literal_eval(text_plain)
    except (SyntaxError, ValueError):
        value = text_plain
    if spec == "":
        return str(value)
    kind = spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, spec)


def glue_sources(nb: nbformat.NotebookNode) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
    """name -> (index of the code cell, source of the expression glued under it); and name -> why it
    cannot be used."""
    sources: dict[str, tuple[int, str]] = {}
    refused: dict[str, str] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue  # IPython magics: no glue calls there in this book
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "glue" and len(node.args) >= 2):
                continue
            found: list[tuple[str, str]] = []
            name_node = node.args[0]
            loop = parents.get(node)
            loop = parents.get(loop) if isinstance(loop, ast.Expr) else None
            enclosing = [up for up in _ancestors(node, parents) if isinstance(up, _SCOPES)]
            if isinstance(name_node, ast.Constant) and isinstance(name_node.value, str):
                if enclosing:
                    refused[name_node.value] = f"glued inside a {type(enclosing[0]).__name__}"
                    continue
                found = [(name_node.value, ast.get_source_segment(cell.source, node.args[1]))]
            elif isinstance(loop, ast.For) and enclosing == [loop]:
                found = _unrolled(loop, node)   # glue(f"{key}_x", ...) in a loop over literals
            for name, source in found:
                if name in sources or name in refused:
                    refused[name] = "glued more than once"
                    sources.pop(name, None)
                else:
                    sources[name] = (index, source)
    return sources, refused


_SCOPES = (ast.For, ast.While, ast.FunctionDef, ast.Lambda, ast.comprehension, ast.ListComp,
           ast.DictComp, ast.GeneratorExp)


def _ancestors(node, parents):
    up = parents.get(node)
    while up is not None:
        yield up
        up = parents.get(up)


class _Substitute(ast.NodeTransformer):
    def __init__(self, binding: dict[str, ast.expr]):
        self.binding = binding

    def visit_Name(self, node):
        return self.binding.get(node.id, node) if isinstance(node.ctx, ast.Load) else node


def _unrolled(loop: ast.For, call: ast.Call) -> list[tuple[str, str]]:
    """For ``glue(<name>, <value>)`` directly in ``for <vars> in <literal list or range(n)>``: each
    iteration's (name, value source), the loop variables replaced by that iteration's items. Empty
    when the loop is not of that form, or the value uses a name assigned in the loop body."""
    targets = loop.target.elts if isinstance(loop.target, ast.Tuple) else [loop.target]
    if not all(isinstance(t, ast.Name) for t in targets):
        return []
    names = [t.id for t in targets]
    if isinstance(loop.iter, (ast.List, ast.Tuple)):
        items = loop.iter.elts
    elif (isinstance(loop.iter, ast.Call) and isinstance(loop.iter.func, ast.Name)
          and loop.iter.func.id == "range" and len(loop.iter.args) == 1
          and isinstance(loop.iter.args[0], ast.Constant)):
        items = [ast.Constant(k) for k in range(loop.iter.args[0].value)]
    else:
        return []
    assigned = {n.id for stmt in loop.body for n in ast.walk(stmt)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    used = {n.id for n in ast.walk(call.args[1]) if isinstance(n, ast.Name)}
    if used & assigned:
        return []
    out = []
    for item in items:
        parts = item.elts if len(names) > 1 and isinstance(item, ast.Tuple) else [item]
        if len(parts) != len(names):
            return []
        binding = dict(zip(names, parts, strict=True))
        try:
            name = ast.literal_eval(_Substitute(binding).visit(_copy(call.args[0])))
        except ValueError:
            try:   # an f-string name over constant loop items
                tree = ast.fix_missing_locations(
                    ast.Expression(_Substitute(binding).visit(_copy(call.args[0]))))
                name = eval(compile(tree, "<glue name>", "eval"), {"__builtins__": {}})
            except Exception:
                return []
        if not isinstance(name, str):
            return []
        out.append((name, ast.unparse(_Substitute(binding).visit(_copy(call.args[1])))))
    return out


def _copy(node: ast.AST) -> ast.AST:
    return ast.parse(ast.unparse(node), mode="eval").body


def as_expression(source: str, spec: str) -> str:
    """The inline expression that shows ``source`` formatted with ``spec``."""
    source = " ".join(source.split())
    if not spec:
        return source
    quote = '"' if '"' not in source else "'"
    if quote in source or "\\" in source:
        return f'format({source}, "{spec}")'
    return f"f{quote}{{{source}:{spec}}}{quote}"


def _revert(cell, undo: dict[str, str]) -> None:
    """Put the glue roles ``undo`` (expression -> original role) back, with their stored results."""
    for expr, role in undo.items():
        cell.source = cell.source.replace(f"{{eval}}`{expr}`", role)
    kept = [s for s in cell.metadata.get("user_expressions", []) if s["expression"] not in undo]
    if kept:
        cell.metadata["user_expressions"] = kept
    else:
        cell.metadata.pop("user_expressions", None)


def convert(path: Path, plan: bool = False) -> list[str]:
    """Convert the glue roles of one notebook; returns the problems (roles left as they were).

    Converts a role only where the expression is known and computed in a code cell above the prose;
    after executing, any converted number whose text differs from what the glue role showed (or whose
    expression fails) is put back as its glue role. What is left needs a hand-written {eval}.
    """
    nb = nbformat.read(path, as_version=4)
    if not any(GLUE_TEXT.search(c.source) for c in nb.cells if c.cell_type == "markdown"):
        return []
    sources, refused = glue_sources(nb)
    problems: list[str] = []
    converted: dict[tuple[int, str], tuple[str, str, str]] = {}   # (cell, expr) -> (name, spec, role)

    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue

        def replace(match, index=index):
            key = match.group(1)
            name, _, spec = key.partition(":")
            why = ("a role from another document" if "::" in key else refused.get(name)
                   or ("no glue call with this literal name" if name not in sources else None)
                   or (f"glued in cell {sources[name][0]}, below the prose" if sources[name][0] > index
                       else None))
            if why:
                problems.append(f"{path.name} cell {index}: {match.group(0)} left: {why}")
                return match.group(0)
            expr = as_expression(sources[name][1], spec)
            if (index, expr) in converted and converted[(index, expr)][:2] != (name, spec):
                problems.append(f"{path.name} cell {index}: {match.group(0)} left: same expression twice")
                return match.group(0)
            converted[(index, expr)] = (name, spec, match.group(0))
            return f"{{eval}}`{expr}`"

        cell.source = GLUE_TEXT.sub(replace, cell.source)
    if plan:
        return problems + [f"{path.name}: {len(converted)} roles would be converted (then checked)"]
    if not converted:
        return problems
    original = path.read_text()
    nbformat.write(nb, path)
    try:
        executed, failures = execute(path, strict=False)
    except Exception:
        path.write_text(original)
        raise
    glued = glue_texts(executed)
    problems += [f"{path.name} {failure}: left as a glue role" for failure in failures]
    undo: dict[int, dict[str, str]] = {}
    for (index, expr), (name, spec, role) in converted.items():
        stored = {s["expression"]: s["result"]
                  for s in executed.cells[index].metadata.get("user_expressions", [])}
        if expr not in stored:
            undo.setdefault(index, {})[expr] = role   # failed: listed above
            continue
        shown, expected = plain_text(stored[expr]), myst_nb_text(glued[name], spec)
        if shown != expected:
            undo.setdefault(index, {})[expr] = role
            problems.append(f"{path.name} cell {index}: {{eval}}`{expr}` shows {shown!r} where "
                            f"{role} showed {expected!r}: left as the glue role")
    if undo:
        for index, roles in undo.items():
            _revert(executed.cells[index], roles)
        nbformat.write(executed, path)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["execute", "convert", "plan"],
                        help="plan: what convert would do, without executing or writing anything")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = False
    for path in args.notebooks:
        if args.command == "execute":
            execute(path)
            print(f"executed {path}")
        elif args.command == "plan":
            print("\n".join(convert(path, plan=True)))
        else:
            problems = convert(path)
            for problem in problems:
                print(problem, file=sys.stderr)
            failed |= bool(problems)
            print(f"converted {path}" + (" (with problems above)" if problems else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
