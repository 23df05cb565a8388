"""Tests of vae_core.explorer: weight export, the live ipywidgets explorer, and the static HTML+JS one.

Oracles: the model's own state dict and ``model.mean_image`` (computed here, never read from a file),
an independent base64/NumPy decoding of the payload, Pillow for the PNG, and headless Chromium for the
page (``@pytest.mark.browser``; skipped with the fix when Debian's /usr/bin/chromium is missing).
"""

from __future__ import annotations

import base64
import io
import re
import statistics

import numpy as np
import pytest
import torch
from torch import nn

from vae_core import explorer as ex
from vae_core.models import VAE

PIXEL = 1.0 / 255.0


def small_vae(h_dim: int = 64, z_dim: int = 2, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(784, h_dim, z_dim)


def _raw(b64: str, dtype: str) -> np.ndarray:
    """Independent decoding: little-endian float16/float32 from base64."""
    return np.frombuffer(base64.b64decode(b64), dtype={"float16": "<f2", "float32": "<f4"}[dtype]).astype(
        np.float64
    )


# ---------------------------------------------------------------- export
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_export_round_trip_matches_state_dict(dtype: str) -> None:
    model = small_vae(h_dim=48, z_dim=3)
    payload = ex.export_decoder(model, dtype=dtype)
    assert payload["dtype"] == dtype and payload["bias_dtype"] == "float32"
    sd = {k: v.double().numpy() for k, v in model.state_dict().items()}
    for key, name, wd in [("W1", "decoder_hidden.weight", dtype), ("b1", "decoder_hidden.bias", "float32"),
                          ("W2", "to_x.weight", dtype), ("b2", "to_x.bias", "float32")]:
        got = _raw(payload[key], wd).reshape(sd[name].shape)  # row-major, torch's (out, in) layout
        ref = sd[name]
        if wd == "float32":
            np.testing.assert_array_equal(got, ref)
        else:  # round to nearest float16: relative error <= 2^-11, plus the subnormal spacing 2^-24 / 2
            assert np.all(np.abs(got - ref) <= np.abs(ref) * 2.0**-11 + 2.0**-25)
        # load_decoder gives the same numbers as tensors under the state-dict names
        np.testing.assert_array_equal(ex.load_decoder(payload)[name].double().numpy(), got)


def test_export_error_is_measured_against_mean_image() -> None:
    model = small_vae(h_dim=64, z_dim=4)
    probe = torch.randn(300, 4, generator=torch.Generator().manual_seed(5)) * 2
    for dtype in ("float16", "float32"):
        payload = ex.export_decoder(model, dtype=dtype, probe_z=probe)
        dt = {"W1": payload["dtype"], "W2": payload["dtype"], "b1": "float32", "b2": "float32"}
        w = {k: _raw(payload[k], d) for k, d in dt.items()}
        h = np.maximum(probe.double().numpy() @ w["W1"].reshape(64, 4).T + w["b1"], 0)
        page = 1 / (1 + np.exp(-(h @ w["W2"].reshape(784, 64).T + w["b2"])))
        with torch.no_grad():
            ref = model.mean_image(probe).double().numpy()
        assert payload["max_abs_error"] == pytest.approx(np.abs(page - ref).max(), rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(ex.decoder_forward(payload, probe), page, atol=1e-12)
    assert ex.export_decoder(model, dtype="float32", probe_z=probe)["max_abs_error"] < 1e-5


def test_auto_dtype_is_decided_by_measured_error() -> None:
    model = small_vae(h_dim=64, z_dim=2)
    assert ex.export_decoder(model)["dtype"] == "float16"  # tiny random model: float16 error << 0.5/255
    assert ex.export_decoder(model, tol=0.0)["dtype"] == "float32"  # nothing meets tol=0: fall back
    with torch.no_grad():  # large weights, like a long-trained decoder: float16 error grows with logits
        model.to_x.weight.mul_(400.0)
        model.decoder_hidden.weight.mul_(20.0)
    half = ex.export_decoder(model, dtype="float16")
    auto = ex.export_decoder(model)
    assert (auto["dtype"] == "float16") == (half["max_abs_error"] < 0.5 / 255)


def test_export_refuses_other_models_and_bad_args() -> None:
    class NotAVAE(nn.Module):
        z_dim, x_dim = 2, 784

        def __init__(self) -> None:
            super().__init__()
            self.decoder_hidden = nn.Linear(2 + 10, 8)  # conditional: z and a one-hot label
            self.to_x = nn.Linear(8, 784)

    with pytest.raises(TypeError, match="unconditional"):
        ex.export_decoder(NotAVAE())
    with pytest.raises(ValueError, match="dtype"):
        ex.export_decoder(small_vae(), dtype="int8")
    with pytest.raises(ValueError, match="probe_z"):
        ex.export_decoder(small_vae(), probe_z=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="format"):
        ex.load_decoder({"format": "something else"})


# ---------------------------------------------------------------- static HTML (no browser)
def test_html_is_self_contained_and_deterministic() -> None:
    model = small_vae()
    page = ex.static_explorer_html(model, title="2-D model")
    assert not re.search(r"https?://", page, re.IGNORECASE)
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert page.count("<script") == 1 and page.count("<canvas") == 1
    assert page.count('type="range"') == 2
    assert page == ex.static_explorer_html(model, title="2-D model")  # re-executed notebooks: same output
    other = ex.static_explorer_html(model, dims=[1])
    assert re.search(r'id="(vae-explorer-[0-9a-f]+)"', page).group(1) != re.search(
        r'id="(vae-explorer-[0-9a-f]+)"', other).group(1)
    assert 'id="mine"' in ex.static_explorer_html(model, element_id="mine")


def test_html_escapes_labels() -> None:
    page = ex.static_explorer_html(small_vae(), labels=["</script><b>x", 'a"b'])
    assert "</script><b>" not in page.split("<script>")[0] and page.count("</script>") == 1


def test_html_argument_errors() -> None:
    model = small_vae(z_dim=3)
    with pytest.raises(ValueError, match="outside value_range"):
        ex.static_explorer_html(model, fixed_z=[0.0, 5.0, 0.0])
    with pytest.raises(ValueError, match="dims"):
        ex.static_explorer_html(model, dims=[0, 3])
    with pytest.raises(ValueError, match="labels"):
        ex.static_explorer_html(model, labels=["a"])
    with pytest.raises(ValueError, match="fixed_z"):
        ex.static_explorer_html(model, fixed_z=[0.0, 0.0])


def test_book_size_model_page_is_under_2_mb() -> None:
    model = VAE(784, 400, 20)  # the book's 784-400-20 model
    sizes = {}
    for dtype in ("auto", "float32"):
        page = ex.static_explorer_html(model, dims=[0, 1, 2, 3, 4], dtype=dtype)
        sizes[dtype] = len(page.encode("utf-8"))
    assert sizes["float32"] < 2_000_000
    assert sizes["auto"] < 1_000_000  # float16 chosen: about half


# ---------------------------------------------------------------- live explorer
def test_live_explorer_redraws_with_the_torch_model() -> None:
    from PIL import Image

    model = small_vae(h_dim=32, z_dim=5)
    fixed = torch.tensor([0.1, 0.2, -0.3, 0.4, 0.5])
    live = ex.live_explorer(model, dims=[3, 1], fixed_z=fixed, scale=2)
    assert len(live.sliders) == 2 and live.sliders[0].description == "z[3]"
    with torch.no_grad():
        torch.testing.assert_close(live.pixels, model.mean_image(fixed))
    live.sliders[0].value = -1.25  # observe() triggers the redraw, no frontend needed
    z = fixed.clone()
    z[3] = -1.25
    torch.testing.assert_close(live.z, z)
    with torch.no_grad():
        expected = model.mean_image(z)
    torch.testing.assert_close(live.pixels, expected)
    png = np.asarray(Image.open(io.BytesIO(live.image.value)))
    assert png.shape == (56, 56)
    up = np.repeat(np.repeat(np.rint(expected.numpy() * 255).reshape(28, 28), 2, 0), 2, 1)
    assert np.abs(png.astype(int) - up).max() <= 1
    assert live.last_update_ms >= 0
    bundle = live._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


# ---------------------------------------------------------------- browser
# The whole static page: two explorers on one page (unique ids, no shared JS names), one inserted the
# way JupyterLab inserts a trusted text/html output (innerHTML, then each <script> re-created in place).
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>explorer test</title><link rel="icon" href="data:,"></head><body>
<h1>Static explorers</h1>
{a}
<p>text between</p>
{b}
<div id="jupyter-like"></div>
<script>
(function () {{
  var host = document.getElementById("jupyter-like");
  host.innerHTML = {c_json};
  host.querySelectorAll("script").forEach(function (old) {{
    var s = document.createElement("script");
    s.textContent = old.textContent;
    old.parentNode.replaceChild(s, old);
  }});
}})();
</script>
</body></html>
"""


def _canvas_gray(page, element_id: str, scale: int) -> np.ndarray:
    """The canvas as (28*scale, 28*scale) grey levels (R channel), checking R = G = B and alpha = 255.

    The page packs the R bytes into base64 (a JSON list of every RGBA byte is slow to ship on a busy CPU).
    """
    ok, b64 = page.evaluate(
        """([id]) => { const c = document.getElementById(id).querySelector("canvas");
             const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
             let ok = true, s = "";
             for (let i = 0; i < d.length; i += 4) {
               if (d[i] !== d[i + 1] || d[i] !== d[i + 2] || d[i + 3] !== 255) { ok = false; }
               s += String.fromCharCode(d[i]);
             }
             return [ok, btoa(s)]; }""",
        [element_id],
    )
    assert ok, "canvas pixels are not opaque grey"
    gray = np.frombuffer(base64.b64decode(b64), dtype=np.uint8).astype(np.int64)
    return gray.reshape(28 * scale, 28 * scale)


def _check_explorer(page, element_id: str, model: VAE, z: torch.Tensor, payload: dict, scale: int) -> None:
    """JS floats and canvas pixels against torch's mean_image(z) (and the NumPy mirror of the JS)."""
    with torch.no_grad():
        ref = model.mean_image(z).double().numpy()
    js = np.asarray(page.evaluate("([id]) => document.getElementById(id).vaeExplorer.pixels()", [element_id]))
    assert js.shape == (784,)
    js_z = page.evaluate("([id]) => document.getElementById(id).vaeExplorer.z()", [element_id])
    np.testing.assert_allclose(js_z, z.double().numpy(), atol=1e-12)
    assert np.abs(js - ref).max() <= PIXEL
    np.testing.assert_allclose(js, ex.decoder_forward(payload, z.double())[0], atol=1e-6)  # same arithmetic
    gray = _canvas_gray(page, element_id, scale)
    blocks = gray.reshape(28, scale, 28, scale)
    assert np.all(blocks == blocks[:, :1, :, :1])  # nearest-neighbour upscale: constant blocks
    assert np.abs(blocks[:, 0, :, 0].reshape(-1) / 255.0 - ref).max() <= PIXEL


@pytest.mark.browser
def test_static_explorers_in_chromium(record_property) -> None:
    import json
    import tempfile
    from pathlib import Path

    from browser_support import PageWatch, browser, require_chromium, serve

    require_chromium()
    m2 = small_vae(h_dim=64, z_dim=2, seed=0)
    m20 = small_vae(h_dim=400, z_dim=20, seed=1)  # book-sized decoder, for a realistic redraw time
    fixed20 = torch.randn(20, generator=torch.Generator().manual_seed(2)).clamp(-2.5, 2.5)
    p2, p20 = ex.export_decoder(m2), ex.export_decoder(m20)
    html_a = ex.static_explorer_html(m2, element_id="ex-a", scale=4, payload=p2)
    html_b = ex.static_explorer_html(m20, dims=[0, 7, 13], fixed_z=fixed20, element_id="ex-b", scale=5,
                                     payload=p20)
    html_c = ex.static_explorer_html(m2, dims=[1], element_id="ex-c", scale=3, payload=p2)
    with tempfile.TemporaryDirectory() as tmp:
        c_json = json.dumps(html_c).replace("</", "<\\/")  # "</script>" must not end the outer script
        Path(tmp, "index.html").write_text(PAGE.format(a=html_a, b=html_b, c_json=c_json))
        with serve(Path(tmp)) as base, browser() as b:
            page = b.new_page()
            watch = PageWatch(page)
            page.goto(f"{base}/index.html", wait_until="load")
            for eid in ("ex-a", "ex-b", "ex-c"):
                page.wait_for_selector(f"#{eid}[data-ready='1']", timeout=10_000)

            first_ms = float(page.get_attribute("#ex-b", "data-last-redraw-ms"))  # cold: before JIT warm-up
            # initial images: exactly fixed_z
            _check_explorer(page, "ex-a", m2, torch.zeros(2), p2, 4)
            _check_explorer(page, "ex-b", m20, fixed20, p20, 5)
            before = _canvas_gray(page, "ex-a", 4)

            # move sliders as a user would (playwright fills the range input and fires input/change)
            page.locator("#ex-a input[type=range]").nth(1).fill("1.35")
            page.locator("#ex-a input[type=range]").nth(0).fill("-0.8")
            _check_explorer(page, "ex-a", m2, torch.tensor([-0.8, 1.35]), p2, 4)
            assert np.any(_canvas_gray(page, "ex-a", 4) != before)  # the picture changed
            assert page.locator("#ex-a output").nth(1).inner_text() == "1.35"

            page.locator("#ex-b input[type=range]").nth(1).fill("2.1")  # dim 7
            z = fixed20.clone()
            z[7] = 2.1
            _check_explorer(page, "ex-b", m20, z, p20, 5)

            page.locator("#ex-c input[type=range]").nth(0).fill("-2.5")  # the JupyterLab-style insertion
            _check_explorer(page, "ex-c", m2, torch.tensor([0.0, -2.5]), p2, 3)
            # explorers are independent: moving b and c did not redraw a
            assert page.get_attribute("#ex-a", "data-redraws") == "3"

            # redraw time of the 784-400-20 decoder: 40 slider moves (input events), each timed by the page
            times = page.evaluate(
                """() => { const el = document.getElementById("ex-b"), t = [];
                     for (let i = 0; i < 40; i++) {
                       el.vaeExplorer.set(0, (-2 + 0.1 * i).toFixed(2));
                       t.push(parseFloat(el.getAttribute("data-last-redraw-ms")));
                     }
                     return t; }"""
            )
            assert len(times) == 40 and page.get_attribute("#ex-b", "data-redraws") == str(1 + 1 + 40)
            watch.assert_clean()
            page.close()
    median, worst = statistics.median(times), max(times)
    record_property("redraw_ms_median_784_400_20", median)
    record_property("redraw_ms_max_784_400_20", worst)
    record_property("redraw_ms_first_784_400_20", first_ms)
    print(f"static explorer redraw (784-400-20, {p20['dtype']}): median {median:.2f} ms, max {worst:.2f} ms "
          f"over 40 slider moves; first (cold) draw {first_ms:.2f} ms")
    assert median < 100.0  # generous: the target is < 30 ms; the measured value is reported above


# ---------------------------------------------------------------------------------------------
# Hostile payloads and arguments (issue 13): nothing reaches the page unescaped or unchecked
# ---------------------------------------------------------------------------------------------

INJECTION = '"><img src=x onerror=alert(1)>'


@pytest.mark.parametrize(("change", "match"), [
    ({"dtype": INJECTION}, "dtype"),
    ({"bias_dtype": "float64"}, "dtype"),
    ({"format": "other"}, "payload"),
    ({"h_dim": 8}, "decode|8"),
    ({"z_dim": True}, "z_dim"),
    ({"x_dim": "784"}, "x_dim"),
    ({"W1": 5}, "W1"),
    ({"W1": "not base64!!"}, "decode"),
])
def test_a_tampered_payload_is_refused_before_any_html(change, match):
    model = small_vae()
    payload = {**ex.export_decoder(model), **change}
    with pytest.raises(ValueError, match=match):
        ex.static_explorer_html(model, payload=payload)


def test_a_payload_of_another_decoder_is_refused_naming_both():
    payload = ex.export_decoder(small_vae(h_dim=8))
    with pytest.raises(ValueError, match="2-8-784 decoder, but the model's is 2-16-784"):
        ex.static_explorer_html(small_vae(h_dim=16), payload=payload)


def test_a_payload_with_non_finite_weights_is_refused():
    model = small_vae()
    payload = ex.export_decoder(model, dtype="float32")
    w = np.frombuffer(base64.b64decode(payload["b2"]), "<f4").copy()
    w[3] = np.nan
    payload["b2"] = base64.b64encode(w.tobytes()).decode()
    with pytest.raises(ValueError, match="non-finite"):
        ex.static_explorer_html(model, payload=payload)


def test_a_model_with_a_nan_weight_does_not_export():
    model = small_vae()
    with torch.no_grad():
        model.to_x.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        ex.export_decoder(model)


def test_labels_titles_and_ids_cannot_inject_markup_or_script():
    model = small_vae()
    page = ex.static_explorer_html(model, labels=[INJECTION, "</script><script>alert(2)</script>"],
                                   title=INJECTION, element_id=INJECTION)
    from html.parser import HTMLParser

    class Elements(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.attrs = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.attrs += [name for name, _ in attrs]

    parsed = Elements()
    parsed.feed(page)
    assert "img" not in parsed.tags and "onerror" not in parsed.attrs
    assert parsed.tags.count("script") == 1 and page.count("</script>") == 1


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"dims": [0.7]}, "dims"), ({"dims": ["0"]}, "dims"), ({"scale": 2.7}, "scale"),
    ({"scale": 0}, "scale"), ({"value_range": ("-3", "3_0")}, "value_range"),
    ({"value_range": (-3.0,)}, "value_range"), ({"step": "0.1"}, "step"), ({"step": True}, "step"),
])
def test_arguments_that_would_be_truncated_or_written_raw_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ex.static_explorer_html(small_vae(), **kwargs)


def test_numpy_integers_still_work_as_dims_and_scale():
    page = ex.static_explorer_html(small_vae(z_dim=3), dims=[np.int64(2)], scale=np.int64(3))
    assert 'data-dims="2"' in page
