"""Report how each chapter reads for a learner: the numbers the house style sets targets for.

Per notebook:

- ``visible``: code lines a reader sees (cells not tagged remove-cell / remove-input / hide-input /
  hide-cell; blank lines not counted);
- ``wide``: visible code lines longer than 88 characters (they scroll sideways at book width);
- ``checks``: visible lines that are asserts or ``glue(`` calls, and their share of ``visible``;
- ``figures``: images the page shows (PNG / SVG / JPEG outputs, ``{figure}`` / ``{image}`` directives);
- ``exercises``: ``{exercise}`` directives; ``implement``: code cells tagged ``implement-it`` (a stub
  the reader completes, followed by a checking cell);
- ``remember``: whether the chapter ends with a "What to remember" section;
- ``machinery``: words about the test machinery in the prose (nbval, Chromium, pytest, ``tests/``...).

Run: ``python scripts/book_metrics.py [notebooks/*.ipynb]`` (a table; ``--json`` for JSON).
Targets (DESIGN, issue 11): wide 0, checks ≤ 3 %, exercises ≥ 3 with implement ≥ 1, figures ≥ 4 in
chapters 1-8 (the book's core), remember, no machinery words. ``tests/test_book_metrics.py``
runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIDDEN_TAGS = {"remove-cell", "remove-input", "hide-input", "hide-cell"}
MAX_WIDTH = 88
CHECK_LINE = re.compile(r"^\s*(assert\b|glue\()")
MACHINERY = re.compile(r"\b(nbval|chromium|headless|pytest|playwright|oracle|CI)\b|tests/|test_\w+\.py",
                       re.IGNORECASE)
FIGURE_MIME = ("image/png", "image/svg+xml", "image/jpeg")
FIGURE_DIRECTIVE = re.compile(r"^\s*(```|:::)\{(figure|image)\}", re.MULTILINE)
EXERCISE = re.compile(r"^\s*(```+|:::+)\{exercise\}", re.MULTILINE)
REMEMBER = re.compile(r"^#+\s*What to remember", re.MULTILINE | re.IGNORECASE)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _machinery_words(markdown: str) -> list[str]:
    # Code spans and fenced code in markdown are code, not prose: a `make test` is allowed there.
    prose = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    prose = re.sub(r"`[^`]*`", "", prose)
    return [m.group(0) for m in MACHINERY.finditer(prose)]


def metrics(path: Path) -> dict:
    """The numbers above for one notebook (a dict of ints, floats, bools and lists)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    visible = wide = checks = figures = exercises = implement = 0
    machinery: list[str] = []
    remember = False
    for cell in nb["cells"]:
        text = _source(cell)
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] == "markdown":
            exercises += len(EXERCISE.findall(text))
            figures += len(FIGURE_DIRECTIVE.findall(text))
            machinery += _machinery_words(text)
            remember = remember or bool(REMEMBER.search(text))
            continue
        if cell["cell_type"] != "code":
            continue
        implement += "implement-it" in tags
        if "remove-output" not in tags and "remove-cell" not in tags:
            for out in cell.get("outputs", []):
                figures += any(m in out.get("data", {}) for m in FIGURE_MIME)
        if tags & HIDDEN_TAGS:
            continue
        for line in text.splitlines():
            if not line.strip():
                continue
            visible += 1
            wide += len(line) > MAX_WIDTH
            checks += bool(CHECK_LINE.match(line))
    return {"notebook": path.name, "visible": visible, "wide": wide, "checks": checks,
            "check_share": checks / visible if visible else 0.0, "figures": figures,
            "exercises": exercises, "implement": implement, "remember": remember,
            "machinery": sorted(set(machinery))}


def problems(m: dict) -> list[str]:
    """What misses the targets, in words (empty when the chapter meets them all)."""
    out = []
    if m["wide"]:
        out.append(f"{m['wide']} visible code lines over {MAX_WIDTH} characters")
    if m["check_share"] > 0.03:
        out.append(f"asserts + glue are {m['check_share']:.0%} of visible code (target ≤ 3 %)")
    if m["exercises"] < 3:
        out.append(f"{m['exercises']} exercises (target ≥ 3)")
    if m["implement"] < 1:
        out.append("no implement-it exercise (a code cell tagged implement-it)")
    chapter = int(m["notebook"][:2]) if m["notebook"][:2].isdigit() else -1
    if 1 <= chapter <= 8 and m["figures"] < 4:
        out.append(f"{m['figures']} figures (target ≥ 4)")
    if not m["remember"]:
        out.append('no "What to remember" section')
    if m["machinery"]:
        out.append(f"test machinery in the prose: {', '.join(m['machinery'])}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    rows = [metrics(p) for p in paths]
    if args.json:
        print(json.dumps([{**r, "problems": problems(r)} for r in rows], indent=1))
        return 0
    print(f"{'notebook':34s} {'visible':>7s} {'wide':>5s} {'checks':>7s} {'figs':>5s} {'exer':>5s} "
          f"{'impl':>5s}  remember")
    for r in rows:
        print(f"{r['notebook']:34s} {r['visible']:7d} {r['wide']:5d} {r['check_share']:6.1%} "
              f"{r['figures']:5d} {r['exercises']:5d} {r['implement']:5d}  "
              f"{'yes' if r['remember'] else 'no'}")
        for p in problems(r):
            print(f"    - {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
