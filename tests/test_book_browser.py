"""Browser tests of the built book (``make book`` first): every page loads self-contained.

For the index and each page of the table of contents, served from 127.0.0.1 and opened in headless
Chromium: zero requests to any other host (MathJax, require.js and widget JS are the book's own
files), zero console errors, and MathJax has typeset the page's math.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from browser_support import PageWatch, browser, serve

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"


def toc_pages() -> list[str]:
    """Every file named in _toc.yml, as its built .html path."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return [f"{f}.html" for f in files]


def has_math(source: Path) -> bool:
    text = source.read_text()
    return "$" in text or "{math}" in text


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make book` first")
    with serve(HTML) as base, browser() as b:
        yield base, b


def test_index_redirects_to_the_intro(site):
    base, b = site
    page = b.new_page()
    watch = PageWatch(page)
    page.goto(f"{base}/index.html", wait_until="load")
    page.wait_for_url("**/book/intro.html")
    watch.assert_clean()
    page.close()


@pytest.mark.parametrize("path", toc_pages())
def test_page_is_self_contained_and_math_renders(site, path):
    base, b = site
    page = b.new_page()
    watch = PageWatch(page)
    page.goto(f"{base}/{path}", wait_until="networkidle")
    assert page.title(), f"{path} has no title"
    source = next((ROOT / path[: -len(".html")]).parent.glob(Path(path).stem + ".*"), None)
    if source is not None and source.suffix in (".md", ".ipynb") and has_math(source):
        # MathJax is loaded from the book's own _static and has finished typesetting.
        mathjax_src = page.evaluate(
            "() => [...document.scripts].map(s => s.src).filter(s => s.includes('mathjax'))"
        )
        assert mathjax_src and all(s.startswith(base) for s in mathjax_src), mathjax_src
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        page.evaluate("() => MathJax.startup.promise")
        rendered = page.evaluate("() => document.querySelectorAll('mjx-container').length")
        assert rendered > 0, f"{path}: math in the source but no MathJax output in the page"
        assert "\\(" not in page.inner_text("main"), f"{path}: untypeset TeX left in the page"
    watch.assert_clean()
    page.close()


@pytest.mark.parametrize("query,chapter", [("ELBO", "02_elbo"),
                                           ("reparameterization", "03_gradient_estimators")])
def test_search_works_offline(site, query, chapter):
    # The theme's search page loads searchindex.js from the book itself and lists matching pages.
    base, b = site
    page = b.new_page()
    watch = PageWatch(page)
    page.goto(f"{base}/search.html?q={query}", wait_until="networkidle")
    page.wait_for_selector("#search-results ul.search li", timeout=15_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a",
                                     "links => links.map(a => a.getAttribute('href'))")
    assert any(chapter in (h or "") for h in hits), (query, hits[:10])
    watch.assert_clean()
    page.close()
