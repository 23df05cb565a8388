"""Link check of the built book (``make book`` first): no link leads nowhere.

Every ``href`` and ``src`` of every HTML page under ``_build/html``:

- an internal link resolves to a file of the build, and its ``#anchor`` (if any) is an ``id`` in
  that file;
- an external link goes only to a host in :data:`ALLOWED_HOSTS` (paper DOIs, arXiv, the projects the
  book cites or is built with), never to a placeholder repository;
- no repository, issue or launch (Binder, Colab) button appears unless the build was given a
  repository (``make book REPO_URL=...``).

It reads the files rather than driving a browser: the built pages are static, and links are in
their HTML (the theme adds none from JavaScript).
"""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML_DIR", ROOT / "_build" / "html"))  # where `make book` builds

ALLOWED_HOSTS = {
    # papers
    "doi.org", "dx.doi.org", "arxiv.org", "proceedings.neurips.cc", "papers.nips.cc",
    "proceedings.mlr.press", "openreview.net", "jmlr.org", "www.jmlr.org", "yann.lecun.com",
    # the projects the book cites or is built with
    "github.com", "pytorch.org", "docs.pytorch.org", "www.sphinx-doc.org", "sphinx-doc.org",
    "jupyterbook.org", "ebp.jupyterbook.org", "executablebooks.org", "mystmd.org",
    "myst-nb.readthedocs.io", "nbval.readthedocs.io", "docs.scipy.org", "www.sympy.org",
    "ipywidgets.readthedocs.io", "matplotlib.org", "numpy.org", "pypi.org", "www.mathjax.org",
    "creativecommons.org", "udlbook.github.io", "pyro.ai", "d2l.ai", "keras.io",
}
"""Hosts an external link may point to."""

PLACEHOLDERS = ("vae-book/vae-book", "executablebooks/jupyter-book", "example.com", "your-repo")
SKIPPED_SCHEMES = ("mailto:", "javascript:", "data:", "tel:")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.classes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("href", "src") and tag in ("a", "img", "script", "link", "iframe", "source"):
                self.links.append(value.strip())
            elif name in ("id", "name"):
                self.ids.add(value)
            elif name == "class":
                self.classes.append(value)


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


@pytest.fixture(scope="module")
def pages() -> dict[Path, _Links]:
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make book` first")
    return {p: _parse(p) for p in sorted(HTML.rglob("*.html")) if "_static" not in p.parts}


def test_the_book_has_pages(pages):
    assert len(pages) >= 10


def test_internal_links_resolve_to_files_and_anchors(pages):
    cache: dict[Path, set[str]] = {p: links.ids for p, links in pages.items()}
    broken = []
    for page, links in pages.items():
        for link in links.links:
            if not link or link.startswith(SKIPPED_SCHEMES):
                continue
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                continue  # external: next test
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or HTML.resolve() not in target.resolve().parents:
                broken.append(f"{page.relative_to(HTML)}: {link} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                if target not in cache:
                    cache[target] = _parse(target).ids
                if unquote(parts.fragment) not in cache[target]:
                    broken.append(f"{page.relative_to(HTML)}: {link} (no such anchor)")
    assert not broken, "\n".join(broken[:40])


def test_external_links_go_only_to_listed_hosts(pages):
    bad = []
    for page, links in pages.items():
        for link in links.links:
            parts = urlsplit(link)
            if not parts.netloc:
                continue
            host = parts.hostname or ""
            if host not in ALLOWED_HOSTS or any(p in link for p in PLACEHOLDERS):
                bad.append(f"{page.relative_to(HTML)}: {link}")
    assert not bad, "\n".join(sorted(set(bad))[:40])


def test_no_repository_or_launch_button_without_a_repository(pages):
    if os.environ.get("BOOK_REPOSITORY_URL"):
        pytest.skip("built with a repository URL: its buttons are wanted")
    for page, links in pages.items():
        found = [link for link in links.links
                 if any(h in link for h in ("mybinder.org", "colab.research.google.com"))]
        assert not found, f"{page.relative_to(HTML)} links to {found}"
        buttons = [c for c in links.classes if "repository-button" in c or "issues-button" in c]
        assert not buttons, f"{page.relative_to(HTML)} shows {buttons}"


def test_download_buttons_serve_files_that_exist(pages):
    # The theme's download links (.ipynb, .md sources) point into _sources/: each must exist.
    missing = []
    for page, links in pages.items():
        for link in links.links:
            parts = urlsplit(link)
            if parts.netloc or not parts.path.endswith((".ipynb", ".md", ".pdf")):
                continue
            if not (page.parent / unquote(parts.path)).resolve().is_file():
                missing.append(f"{page.relative_to(HTML)}: {link}")
    assert not missing, "\n".join(missing)
