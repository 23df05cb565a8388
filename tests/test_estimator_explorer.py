"""Tests of vae_core.estimator_explorer: the closed forms, the snippet, and the page in Chromium.

Oracles: :func:`vae_core.estimators.quadrature_variances` (Simpson's rule, no closed form) for the
variances; torch autograd on the page's own draws ε for the estimator rows; quadrature again for the
sampling error of a measured variance.

The browser test (``-m browser``) writes a page holding only the explorer to a temporary folder, serves
it on 127.0.0.1 and drives it in headless Chromium. Tolerance of "measured agrees with closed form":
the sample variance s² of n rows with variance V and central fourth moment μ₄ has standard error
sqrt((μ₄ − V²)/n); the test averages R = 8 fresh batches of n = 10⁵ (seeded, so it is deterministic),
whose mean has standard error sqrt((μ₄ − V²)/(nR)), computes μ₄ by quadrature, and accepts
|mean s² − V| ≤ 5 standard errors (two-sided normal tail 6e-7 per comparison). It also checks that this
is a real test: 5 standard errors is below 15 % of V at every setting, so a formula off by 15 % fails.
"""

from __future__ import annotations

import json
import math
import re
import statistics

import numpy as np
import pytest
import torch

from vae_core import estimator_explorer as ee
from vae_core import estimators as est

TORCH_F = {"quadratic": lambda k: (lambda v: (v - k) ** 2),
           "bump": lambda k: (lambda v: torch.exp(-k * v**2)),
           "cosine": lambda k: (lambda v: torch.cos(k * v))}
REDRAW_LIMIT_MS = 16.0


# ---------------------------------------------------------------- closed forms
def _points(n: int = 40, seed: int = 0) -> list[tuple[str, float, float, float]]:
    rng = np.random.default_rng(seed)
    out = list(ee.REFERENCE_POINTS)
    for i in range(n):
        f = ee.FUNCTIONS[i % 3]
        mu, sigma, k = rng.uniform(-3, 3), rng.uniform(0.2, 3), 10 ** rng.uniform(-1, 1.5)
        out.append((f, float(mu), float(sigma), float(k)))
    return out


def test_closed_forms_match_quadrature() -> None:
    for f, mu, sigma, k in _points():
        closed = np.array(ee.closed_form_variances(f, mu, sigma, k))
        quad = np.array(est.quadrature_variances(TORCH_F[f](k), mu, sigma))
        # quadrature is accurate to ~1e-9 relative here; gradients can be ~0, hence the absolute part
        np.testing.assert_allclose(closed, quad, rtol=1e-7, atol=1e-10, err_msg=str((f, mu, sigma, k)))


def test_closed_forms_at_the_chapters_values() -> None:
    # mu = sigma = k = 1: the quadratic's 15, 74, 4, 8 of chapter 3 (derived by hand and by sympy there)
    assert tuple(ee.closed_form_variances("quadratic", 1.0, 1.0, 1.0))[2:] == (15.0, 74.0, 4.0, 8.0)
    # cos kx at large k: the score variances tend to 1/(2 sigma^2) and 1/sigma^2, the pathwise to k^2/2
    v = ee.closed_form_variances("cosine", 1.0, 1.0, 30.0)
    assert v.score_mu == pytest.approx(0.5, rel=1e-6) and v.score_sigma == pytest.approx(1.0, rel=1e-6)
    assert v.pathwise_mu == pytest.approx(450.0, rel=1e-6)


def test_closed_forms_refuse_bad_input() -> None:
    for args, match in [(("sine", 0, 1, 1), "f must be"), (("cosine", 0, 0, 1), "sigma"),
                        (("bump", 0, 1, -1), "k must"), (("cosine", float("nan"), 1, 1), "mu"),
                        (("cosine", 0, 1, True), "k")]:
        with pytest.raises(ValueError, match=match):
            ee.closed_form_variances(*args)


# ---------------------------------------------------------------- the snippet
_PAYLOAD = re.compile(r"var P = (\{.*?\});\n")


def test_snippet_is_self_contained_and_deterministic() -> None:
    page = ee.estimator_explorer_html(title="<b>x</b>")
    assert "http" not in page and "src=" not in page and page.count("<script>") == 1
    assert "<noscript>" in page and "<b>x</b>" not in page and "&lt;b&gt;" in page
    payload = json.loads(_PAYLOAD.search(page).group(1))
    assert payload["reference"] == ee.reference_values() and payload["ks"] == list(ee.K_VALUES)
    assert page == ee.estimator_explorer_html(title="<b>x</b>")
    assert page != ee.estimator_explorer_html(title="<b>x</b>", k=3.0)


@pytest.mark.parametrize("kwargs,match", [
    ({"f": "sine"}, "f must"), ({"mu": 4.0}, "mu must be in"), ({"sigma": 0.1}, "sigma"),
    ({"n": 500}, "n must"), ({"seed": -1}, "seed"), ({"element_id": 'a" onclick="x'}, "element_id"),
    ({"k": 0.0}, "k must")])
def test_snippet_refuses_bad_input(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        ee.estimator_explorer_html(**kwargs)


# ---------------------------------------------------------------- in Chromium
def _torch_rows(f: str, mu: float, sigma: float, k: float, eps: np.ndarray) -> np.ndarray:
    """(4, n): score ∂μ, score ∂σ, pathwise ∂μ, pathwise ∂σ, with f' from autograd."""
    e = torch.tensor(eps, dtype=torch.float64)
    x = (mu + sigma * e).requires_grad_(True)
    fx = TORCH_F[f](k)(x)
    (dfx,) = torch.autograd.grad(fx.sum(), x)
    fx = fx.detach()
    return torch.stack([fx * e / sigma, fx * (e**2 - 1) / sigma, dfx, dfx * e]).numpy()


def _fourth_central_moments(f: str, mu: float, sigma: float, k: float) -> tuple[np.ndarray, np.ndarray]:
    """(variance, central 4th moment) of the four rows, by Simpson's rule over ε in [-14, 14]."""
    eps = np.linspace(-14, 14, 280_001)
    h = eps[1] - eps[0]
    w = np.ones_like(eps)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    w *= h / 3 * np.exp(-0.5 * eps**2) / math.sqrt(2 * math.pi)
    rows = _torch_rows(f, mu, sigma, k, eps)
    mean = rows @ w
    centred = rows - mean[:, None]
    return (centred**2) @ w, (centred**4) @ w


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module (playwright's sync API allows one at a time)."""
    from browser_support import browser

    with browser() as b:
        yield b


@pytest.fixture(scope="module")
def explorer_page(tmp_path_factory, chromium):
    from browser_support import PageWatch, serve

    folder = tmp_path_factory.mktemp("estimator_explorer")
    (folder / "index.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width"><link rel="icon" href="data:,"><title>estimators</title></head><body>'
        + ee.estimator_explorer_html(seed=1, element_id="est") + "</body></html>", encoding="utf-8")
    with serve(folder) as base:
        page = chromium.new_page(viewport={"width": 1000, "height": 900})
        watch = PageWatch(page)
        page.goto(f"{base}/index.html", wait_until="load")
        page.wait_for_selector("#est[data-ready='1']", timeout=20_000)
        yield page
        watch.assert_clean()
        page.close()


def _hook(page, expr: str, *args):
    return page.evaluate(f"([a]) => {{ const h = document.getElementById('est').vaeEstimators; "
                         f"return {expr}; }}", [list(args)])


@pytest.mark.browser
def test_page_closed_forms_match_python(explorer_page) -> None:
    page = explorer_page
    assert page.get_attribute("#est", "data-selfcheck") == "ok"
    for f, mu, sigma, k in _points(n=30, seed=1):
        got = _hook(page, "h.closedForm(a[0], a[1], a[2], a[3])", f, mu, sigma, k)
        want = ee.closed_form_variances(f, mu, sigma, k)
        np.testing.assert_allclose(got["grad"] + got["score"] + got["pathwise"],
                                   [want.grad_mu, want.grad_sigma, want.score_mu, want.score_sigma,
                                    want.pathwise_mu, want.pathwise_sigma], rtol=1e-9, atol=1e-12)


@pytest.mark.browser
def test_page_rows_are_the_estimators_on_its_own_draws(explorer_page) -> None:
    page = explorer_page
    for f, k_index in [("quadratic", 12), ("bump", 15), ("cosine", 20)]:
        _hook(page, "(h.set('f', a[0]), h.set('k', a[1]), h.set('mu', -0.7), h.set('sigma', 1.3), "
                    "h.set('n', 4), h.resample(7))", f, k_index)
        state = _hook(page, "h.state()")
        assert (state["f"], state["k"], state["mu"], state["sigma"], state["n"], state["seed"]) == \
            (f, ee.K_VALUES[k_index], -0.7, 1.3, 10_000, 7)
        eps = np.asarray(_hook(page, "h.eps()"))
        # standard normal draws: mean within 5 standard errors (1/100), variance too (sqrt(2)/100)
        assert len(eps) == 10_000 and abs(eps.mean()) < 0.05 and abs(eps.var() - 1) < 5 * math.sqrt(2) / 100
        rows = np.asarray(_hook(page, "h.rows()"))
        np.testing.assert_allclose(rows, _torch_rows(f, -0.7, 1.3, ee.K_VALUES[k_index], eps),
                                   rtol=1e-9, atol=1e-9)
        # the page's statistics are those of its rows
        measured = _hook(page, "h.stats().measured")
        np.testing.assert_allclose([m["variance"] for m in measured], rows.var(axis=1, ddof=1), rtol=1e-9)
        np.testing.assert_allclose([m["mean"] for m in measured], rows.mean(axis=1), rtol=1e-9, atol=1e-12)


SETTINGS = [("quadratic", 1.0, 1.0, 10), ("quadratic", -1.0, 0.5, 10), ("bump", 1.0, 1.0, 10),
            ("bump", 0.3, 0.5, 20), ("cosine", 1.0, 1.0, 10), ("cosine", 1.0, 1.0, 20)]


@pytest.mark.browser
def test_measured_variances_agree_with_closed_forms(explorer_page) -> None:
    page, n, repeats = explorer_page, 100_000, 8
    for f, mu, sigma, k_index in SETTINGS:
        k = ee.K_VALUES[k_index]
        _hook(page, "(h.set('f', a[0]), h.set('mu', a[1]), h.set('sigma', a[2]), h.set('k', a[3]), "
                    "h.set('n', 5))", f, mu, sigma, k_index)
        batches = [_hook(page, "(h.resample(a[0]), h.stats())", 1000 + r) for r in range(repeats)]
        closed = batches[0]["closed"]
        want = ee.closed_form_variances(f, mu, sigma, k)
        np.testing.assert_allclose(closed["score"] + closed["pathwise"],
                                   [want.score_mu, want.score_sigma, want.pathwise_mu, want.pathwise_sigma],
                                   rtol=1e-9)
        variance, mu4 = _fourth_central_moments(f, mu, sigma, k)
        np.testing.assert_allclose(variance, [want.score_mu, want.score_sigma, want.pathwise_mu,
                                              want.pathwise_sigma], rtol=1e-6, atol=1e-12)
        se = np.sqrt((mu4 - variance**2) / (n * repeats))
        measured = np.mean([[m["variance"] for m in b["measured"]] for b in batches], axis=0)
        means = np.mean([[m["mean"] for m in b["measured"]] for b in batches], axis=0)
        grad = np.array([want.grad_mu, want.grad_sigma, want.grad_mu, want.grad_sigma])
        assert np.all(5 * se < 0.15 * variance), f"{f}: the tolerance would be loose: {5 * se / variance}"
        z = (measured - variance) / se
        assert np.all(np.abs(z) < 5), f"{f}, mu={mu}, sigma={sigma}, k={k}: z-scores {z.round(2)}"
        assert np.all(np.abs(means - grad) < 5 * np.sqrt(variance / (n * repeats)) + 1e-12)
        # the "± se" the page prints estimates the same standard error (per batch), roughly
        printed = np.mean([[m["se"] for m in b["measured"]] for b in batches], axis=0)
        ratio = printed / (se * math.sqrt(repeats))
        assert np.all((ratio > 0.5) & (ratio < 1.5)), ratio


@pytest.mark.browser
def test_keyboard_and_redraw_time(explorer_page, record_property) -> None:
    page = explorer_page
    _hook(page, "(h.set('f', 'cosine'), h.set('mu', 1), h.set('n', 3))")
    mu = page.locator("#est input[name=mu]")
    mu.focus()
    before = _hook(page, "h.state()")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    after = _hook(page, "h.state()")
    assert after["mu"] == pytest.approx(before["mu"] + 0.2) and after["seed"] == before["seed"] + 2
    # the radio group: arrow keys move the choice
    page.locator("#est input[type=radio][value=cosine]").focus()
    page.keyboard.press("ArrowLeft")
    assert _hook(page, "h.state().f") == "bump"
    # tab + enter on the button draws new samples
    page.locator("#est input[name=n]").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "vae-est-new"
    seed = _hook(page, "h.state().seed")
    page.keyboard.press("Enter")
    assert _hook(page, "h.state().seed") == seed + 1
    times = {}
    for n_exp in (3, 5):
        _hook(page, "h.set('n', a[0])", n_exp)
        times[n_exp] = page.evaluate(
            """() => { const el = document.getElementById('est'), h = el.vaeEstimators, t = [];
                 for (let i = 0; i < 30; i++) { h.set('mu', -1 + 0.1 * (i % 20));
                   t.push(parseFloat(el.getAttribute('data-last-redraw-ms'))); }
                 return t; }""")
    for n_exp, t in times.items():
        median = statistics.median(t)
        record_property(f"estimator_explorer_redraw_ms_median_n1e{n_exp}", median)
        print(f"estimator explorer redraw, n = 10^{n_exp}: median {median:.2f} ms, max {max(t):.2f} ms")
        assert median < REDRAW_LIMIT_MS



# ---------------------------------------------------------------- the built chapter 3 page
PAGE = "notebooks/03_gradient_estimators.html"


@pytest.mark.browser
def test_chapter_3_page(chromium) -> None:
    from browser_support import HTML_DIR, PageWatch, built_figure, serve

    path, text, figure_id = built_figure(PAGE, "vae-estimator-explorer")
    assert path.stat().st_size <= 2_000_000
    assert json.loads(_PAYLOAD.search(text).group(1))["reference"] == ee.reference_values()
    with serve(HTML_DIR) as base:
        page = chromium.new_page(viewport={"width": 1200, "height": 900})
        watch = PageWatch(page)
        page.goto(f"{base}/{PAGE}", wait_until="load")
        page.wait_for_selector(f"#{figure_id}[data-ready='1']", timeout=20_000)
        assert page.get_attribute(f"#{figure_id}", "data-selfcheck") == "ok"
        # it starts at the quadratic with mu = sigma = k = 1: the chapter's 15, 74, 4 and 8
        got = page.evaluate("(id) => { const h = document.getElementById(id).vaeEstimators; "
                            "return [h.state(), h.stats().closed]; }", figure_id)
        state, closed = got
        assert (state["f"], state["mu"], state["sigma"], state["k"]) == ("quadratic", 1, 1, 1)
        assert closed["score"] + closed["pathwise"] == [15, 74, 4, 8]
        watch.assert_clean()
        page.close()
