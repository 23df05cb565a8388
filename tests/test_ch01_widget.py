"""Browser tests of chapter 1's static KL widget (plain JavaScript, no kernel).

The widget is the ``text/html`` output of a cell of ``notebooks/01_kl_divergence.ipynb``. The first
test takes that very output from the committed notebook, puts it in a bare page and drives it in
headless Chromium; the second drives it inside the built book page (``make book`` first). Both check
the widget's own self-check (its JavaScript against reference values from ``vae_core``), then move
the sliders and compare the KLs it reports with :func:`vae_core.distributions.gaussian_kl`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from browser_support import PageWatch, browser, serve

from vae_core.distributions import gaussian_kl

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_kl_divergence.ipynb"
BUILT_PAGE = ROOT / "_build" / "html" / "notebooks" / "01_kl_divergence.html"
MARKER = 'id="klw"'


def widget_snippet() -> str:
    """The HTML output of the notebook cell that writes the widget."""
    nb = json.loads(NOTEBOOK.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            html = out.get("data", {}).get("text/html")
            if html is not None:
                html = "".join(html) if isinstance(html, list) else html
                if MARKER in html:
                    return html
    raise AssertionError(f"no output containing {MARKER} in {NOTEBOOK}")


def kl_pair(mu1: float, sigma1: float, mu2: float, sigma2: float) -> tuple[float, float]:
    a = (torch.tensor([mu1], dtype=torch.float64), torch.tensor([2 * math.log(sigma1)], dtype=torch.float64))
    b = (torch.tensor([mu2], dtype=torch.float64), torch.tensor([2 * math.log(sigma2)], dtype=torch.float64))
    return gaussian_kl(*a, *b).item(), gaussian_kl(*b, *a).item()


def set_slider(page, param: str, value: float) -> None:
    page.eval_on_selector(
        f'#klw input[data-param="{param}"]',
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
        str(value),
    )


def exercise_widget(page) -> None:
    page.wait_for_function("() => document.getElementById('klw').dataset.selfcheck !== 'pending'")
    root = page.locator("#klw")
    assert root.get_attribute("data-selfcheck") == "ok", root.get_attribute("data-selfcheck-maxdiff")
    assert float(root.get_attribute("data-selfcheck-maxdiff")) < 1e-12
    assert "Self-check passed" in page.inner_text("#klw")

    # The canvas shows both densities: count pixels of p1's blue and p2's orange curve.
    colours = page.evaluate(
        """() => { const c = document.querySelector('#klw canvas');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let blue = 0, orange = 0;
                   for (let i = 0; i < d.length; i += 4) {
                     if (d[i] < 90 && d[i + 1] > 90 && d[i + 1] < 160 && d[i + 2] > 150) blue++;
                     if (d[i] > 200 && d[i + 1] > 90 && d[i + 1] < 160 && d[i + 2] < 90) orange++; }
                   return [blue, orange]; }"""
    )
    assert min(colours) > 200, colours

    # Initial slider values, then three other settings.
    settings = [(0.0, 1.0, 1.0, 1.5), (-2.5, 0.4, 1.3, 2.2), (3.0, 2.75, -1.0, 0.35), (0.7, 0.8, 0.7, 0.8)]
    for i, (mu1, sigma1, mu2, sigma2) in enumerate(settings):
        if i:
            values = {"mu1": mu1, "sigma1": sigma1, "mu2": mu2, "sigma2": sigma2}
            for name, value in values.items():
                set_slider(page, name, value)
        kl12, kl21 = kl_pair(mu1, sigma1, mu2, sigma2)
        assert float(root.get_attribute("data-kl12")) == pytest.approx(kl12, rel=1e-12, abs=1e-12)
        assert float(root.get_attribute("data-kl21")) == pytest.approx(kl21, rel=1e-12, abs=1e-12)
        shown = page.inner_text('#klw [data-role="kl12"]'), page.inner_text('#klw [data-role="kl21"]')
        assert shown == (f"{kl12:.4f}", f"{kl21:.4f}")
    # Equal distributions: both KLs are zero.
    assert float(root.get_attribute("data-kl12")) == 0.0
    assert float(root.get_attribute("data-kl21")) == 0.0


def test_widget_from_the_notebook_output(tmp_path):
    (tmp_path / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
        "<title>KL widget</title></head><body>"
        + widget_snippet()
        + "</body></html>"
    )
    with serve(tmp_path) as base, browser() as b:
        page = b.new_page()
        watch = PageWatch(page)
        page.goto(f"{base}/index.html", wait_until="load")
        exercise_widget(page)
        watch.assert_clean()
        page.close()


def test_widget_in_the_built_book():
    if not BUILT_PAGE.exists():
        pytest.skip(f"{BUILT_PAGE.relative_to(ROOT)} not built: run `make book` first")
    html_root = BUILT_PAGE.parents[1]
    with serve(html_root) as base, browser() as b:
        page = b.new_page()
        watch = PageWatch(page)
        page.goto(f"{base}/notebooks/{BUILT_PAGE.name}", wait_until="networkidle")
        assert page.locator("#klw").count() == 1
        exercise_widget(page)
        watch.assert_clean()
        page.close()
