"""Tests of vae_core.beta_explorer: the precomputed sweep, the snippet, and the page in Chromium.

Unit tests (tiny models): every stored image is round(255 · mean_image) of the right model and input,
decoded independently from base64; the sweep is sorted by β; bad input is refused.

Browser tests (``-m browser``): (1) a page holding only the explorer of tiny models, served on
127.0.0.1: the canvases show exactly the stored grey levels for every β, chosen with the arrow keys; the
red marker sits on the chosen (R, D) point; no external request, no console error; redraw time. (2) The
BUILT chapter 7 page (``make book`` first): its explorer's images are those of the sweep's models —
obtained here with the call chapter 7 makes (``train.pretrained``, so from the model cache) — within
1/255, and its rates and distortions are ``evaluate.test_elbo``'s; the page is at most 2 MB.
"""

from __future__ import annotations

import base64
import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from vae_core import beta_explorer as be
from vae_core.explorer import to_uint8
from vae_core.models import VAE

BETAS = (0.5, 1.0, 2.0, 4.0)
PIXEL = 1.0 / 255.0
REDRAW_LIMIT_MS = 16.0
MAX_PAGE_BYTES = 2_000_000


def tiny_sweep(h_dim: int = 24, z_dim: int = 3):
    models = {}
    for i, b in enumerate(BETAS):
        torch.manual_seed(i)
        models[b] = VAE(784, h_dim, z_dim)
    rd = {b: (30.0 / b, 90.0 + 5 * b) for b in BETAS}
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(5, 784, generator=g) < 0.2).float()
    z = torch.randn(4, z_dim, generator=g)
    return models, rd, x, z


def _u8(b64: str, k: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=np.uint8).reshape(k, 784)


def test_payload_holds_the_models_images() -> None:
    models, rd, x, z = tiny_sweep()
    shuffled = {b: models[b] for b in (2.0, 0.5, 4.0, 1.0)}
    p = be.beta_sweep_payload(shuffled, rd, x, z)
    assert p["betas"] == list(BETAS) and p["rate"] == [rd[b][0] for b in BETAS]
    assert p["distortion"] == [rd[b][1] for b in BETAS] and p["side"] == 28
    np.testing.assert_array_equal(_u8(p["digits"], 5), x.numpy().astype(np.uint8) * 255)
    for i, b in enumerate(BETAS):
        with torch.no_grad():
            rec = models[b].mean_image(models[b].encode(x)[0]).double().numpy()
            smp = models[b].mean_image(z).double().numpy()
        np.testing.assert_array_equal(_u8(p["recon"][i], 5), to_uint8(rec))
        np.testing.assert_array_equal(_u8(p["samples"][i], 4), to_uint8(smp))
        assert np.abs(be.load_images(p, "recon", i) - rec).max() <= PIXEL / 2 + 1e-12
    json.dumps(p)
    assert all(m.training for m in models.values())  # each model's train/eval mode is restored


def test_payload_refuses_bad_input() -> None:
    models, rd, x, z = tiny_sweep()
    cases = [
        (dict(models={1.0: models[1.0]}), "at least two"),
        (dict(models={**models, -1.0: models[1.0]}), "beta values"),
        (dict(rate_distortion={b: rd[b] for b in BETAS[:3]}), "exactly the betas"),
        (dict(rate_distortion={**rd, 1.0: (float("nan"), 1.0)}), "rate_distortion"),
        (dict(models={**models, 4.0: VAE(784, 24, 5)}), "not 784"),
        (dict(digits=x * 2), r"\[0, 1\]"),
        (dict(digits=torch.rand(21, 784)), "digits"),
        (dict(digits=torch.rand(3, 10)), "digits"),
        (dict(z=torch.randn(4, 2)), "z must"),
        (dict(z=torch.full((2, 3), float("inf"))), "non-finite"),
    ]
    for change, match in cases:
        args = dict(models=models, rate_distortion=rd, digits=x, z=z)
        args.update(change)
        with pytest.raises(ValueError, match=match):
            be.beta_sweep_payload(**args)


_PAYLOAD = re.compile(r"var P = (\{.*?\});\n")


def test_snippet_is_self_contained_and_deterministic() -> None:
    models, rd, x, z = tiny_sweep()
    page = be.beta_explorer_html(models, rd, x, z, title="<i>t</i>")
    assert "http" not in page and "src=" not in page and page.count("<script>") == 1
    assert "<noscript>" in page and "<i>t</i>" not in page
    js = json.loads(_PAYLOAD.search(page).group(1))
    assert {k: v for k, v in js.items() if k != "id"} == be.beta_sweep_payload(models, rd, x, z)
    assert 'value="1"' in page  # starts at beta = 1 (index 1 of the sweep)
    assert page == be.beta_explorer_html(models, rd, x, z, title="<i>t</i>")
    with pytest.raises(ValueError, match="payload"):
        be.beta_explorer_html(payload={"format": "x"})
    with pytest.raises(ValueError, match="element_id"):
        be.beta_explorer_html(models, rd, x, z, element_id="1 bad")


# ---------------------------------------------------------------- in Chromium
def _drive(page, element_id: str, payload: dict, models=None, x=None, z=None) -> dict[str, list[float]]:
    """Step through every β with the keyboard; check canvases and marker; return redraw times."""
    root = page.locator(f"#{element_id}")
    slider = root.locator("input[type=range]")
    slider.focus()
    page.keyboard.press("Home")
    times = []
    n_d, n_s = payload["n_digits"], payload["n_samples"]

    def hook(expr, *args):
        return page.evaluate(f"([id, a]) => {{ const h = document.getElementById(id).vaeBeta; "
                             f"return {expr}; }}", [element_id, list(args)])

    for i, beta in enumerate(payload["betas"]):
        if i:
            page.keyboard.press("ArrowRight")
        assert hook("h.index()") == i
        times.append(float(root.get_attribute("data-last-redraw-ms")))
        strips = hook("h.strips()")
        # canvases are (side, n * side) strips: back to (n, 784) images
        def images(values, n):
            return np.asarray(values, dtype=np.uint8).reshape(28, n, 28).transpose(1, 0, 2).reshape(n, 784)
        np.testing.assert_array_equal(images(strips["recon"], n_d), _u8(payload["recon"][i], n_d))
        np.testing.assert_array_equal(images(strips["samples"], n_s), _u8(payload["samples"][i], n_s))
        np.testing.assert_array_equal(images(strips["digits"], n_d), _u8(payload["digits"], n_d))
        if models is not None:  # against PyTorch itself, within 1/255
            model = models[beta]
            with torch.no_grad():
                rec = model.mean_image(model.encode(x)[0]).double().numpy()
                smp = model.mean_image(z).double().numpy()
            assert np.abs(images(strips["recon"], n_d) / 255.0 - rec).max() <= PIXEL
            assert np.abs(images(strips["samples"], n_s) / 255.0 - smp).max() <= PIXEL
        # the red marker is on the chosen point, and the readout names beta and the rate
        xy = hook("h.point(a[0])", i)
        rgb = page.evaluate("([id, x, y]) => Array.from(document.getElementById(id).querySelector("
                            "'canvas.vae-beta-rd').getContext('2d').getImageData(x, y, 1, 1).data)",
                            [element_id, int(round(xy[0])), int(round(xy[1]))])
        assert rgb[:3] == [214, 39, 40], f"no red marker at beta={beta}: {rgb}"
        text = root.locator(".vae-beta-text").inner_text()
        assert f"β = {beta:g}" in text and f"rate R = {payload['rate'][i]:.2f}" in text
    page.keyboard.press("ArrowRight")  # already at the end: nothing moves
    assert hook("h.index()") == len(payload["betas"]) - 1
    for _ in range(3):  # more interactions for the redraw time
        for i in range(len(payload["betas"])):
            hook("h.set(a[0])", i)
            times.append(float(root.get_attribute("data-last-redraw-ms")))
    return times


@pytest.mark.browser
def test_explorer_in_chromium(tmp_path: Path, record_property) -> None:
    from browser_support import PageWatch, browser, serve

    models, rd, x, z = tiny_sweep()
    payload = be.beta_sweep_payload(models, rd, x, z)
    (tmp_path / "index.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>b</title>'
        '</head><body>' + be.beta_explorer_html(payload=payload, element_id="beta") + "</body></html>",
        encoding="utf-8")
    with serve(tmp_path) as base, browser() as b:
        page = b.new_page(viewport={"width": 1000, "height": 900})
        watch = PageWatch(page)
        page.goto(f"{base}/index.html", wait_until="load")
        page.wait_for_selector("#beta[data-ready='1']", timeout=20_000)
        times = _drive(page, "beta", payload, models, x, z)
        watch.assert_clean()
        page.close()
    median = statistics.median(times)
    record_property("beta_explorer_redraw_ms_median", median)
    print(f"beta explorer redraw: median {median:.2f} ms, max {max(times):.2f} ms over {len(times)}")
    assert median < REDRAW_LIMIT_MS


# ---------------------------------------------------------------- the built chapter 7 page
PAGE = "notebooks/07_collapse_and_beta.html"


@pytest.mark.browser
def test_chapter_7_page(record_property) -> None:
    from browser_support import HTML_DIR, PageWatch, browser, built_figure, serve

    from vae_core import data, evaluate, train

    path, text, figure_id = built_figure(PAGE, "vae-beta-explorer")
    size = path.stat().st_size
    print(f"{PAGE}: {size / 1e6:.2f} MB")
    assert size <= MAX_PAGE_BYTES
    payloads = [json.loads(p) for p in _PAYLOAD.findall(text)]
    (payload,) = [p for p in payloads if p.get("format") == be.FORMAT]
    # the sweep's models, as chapter 7 trains them (cached), and their test ELBO terms
    train_set = data.load("mnist-5k", "train")
    x_test, y_test = data.binary_test_set()
    models = {}
    for i, beta in enumerate(payload["betas"]):
        model, _ = train.pretrained({"x_dim": 784, "h_dim": 256, "z_dim": 20}, train_set.images, x_test,
                                    epochs=20, seed=0, progress=False, beta=beta)
        models[beta] = model.cpu().eval()
        terms = evaluate.test_elbo(models[beta], x_test, n_samples=10)
        assert payload["rate"][i] == pytest.approx(terms.kl.item(), rel=1e-5, abs=1e-5)
        assert payload["distortion"][i] == pytest.approx(-terms.rec.item(), rel=1e-5, abs=1e-5)
    digits = be.load_images(payload, "digits")
    # the digits are test digits, one per class in order (binary, so 8-bit storage is exact)
    want = torch.stack([x_test[y_test == k][0] for k in range(10)]).double().numpy()
    np.testing.assert_array_equal(digits, want)
    z = torch.randn(payload["n_samples"], 20, generator=torch.Generator().manual_seed(0))
    with serve(HTML_DIR) as base, browser() as b:
        page = b.new_page(viewport={"width": 1200, "height": 900})
        watch = PageWatch(page)
        page.goto(f"{base}/{PAGE}", wait_until="load")
        page.wait_for_selector(f"#{figure_id}[data-ready='1']", timeout=20_000)
        page.locator(f"#{figure_id}").scroll_into_view_if_needed()
        times = _drive(page, figure_id, payload, models, torch.tensor(digits, dtype=torch.float32), z)
        watch.assert_clean()
        page.close()
    median = statistics.median(times)
    record_property("beta_explorer_ch7_redraw_ms_median", median)
    print(f"chapter 7 beta explorer redraw: median {median:.2f} ms, max {max(times):.2f} ms")
    assert median < REDRAW_LIMIT_MS
