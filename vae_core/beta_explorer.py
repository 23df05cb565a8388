"""Chapter 7's β explorer: pick β among the trained models of the rate–distortion sweep and watch the
reconstructions, the prior samples and the point on the rate–distortion curve change together.

The models live in Python; the page shows what they produce, **precomputed**: for every β the mean
images of the reconstructions (decode the posterior mean μ(x) of a few test digits) and of a few prior
draws z (the same z for every β), stored as 8-bit grey levels. That is ≈ 1.3 × 784 bytes per image of
base64 — for 7 models, 10 digits and 10 draws, ≈ 0.15 MB — where embedding seven 784-256-20 decoders
would take ≈ 3.8 MB even in float16. Moving between the sweep's β values is all a reader can do, so
nothing is lost by precomputing.

The page draws the sweep's (rate, distortion) points, the chosen one highlighted with the line
D + βR = const through it (slope −β: the β-VAE objective is constant along it, and the chosen model
is where such a line last touches the curve), the three image strips and the numbers. Plain
JavaScript, nothing loaded from anywhere; a range slider (arrow keys) chooses β.

Used by: chapter 7 (``HTML(beta_explorer_html(models, rd, digits, z))``).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from . import page_js
from .explorer import _side, to_uint8

FORMAT = "vae_core.beta_sweep/1"
MAX_IMAGES = 20


def _b64(images: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).decode("ascii")


def _images(value: Tensor | np.ndarray, name: str, width: int | None) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).detach().cpu()
    if t.dim() != 2 or len(t) == 0 or len(t) > MAX_IMAGES or (width is not None and t.shape[1] != width):
        raise ValueError(f"{name} must be (k <= {MAX_IMAGES}, {width or 'dim'}), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} holds non-finite values")
    return t


def beta_sweep_payload(models: Mapping[float, torch.nn.Module],
                       rate_distortion: Mapping[float, tuple[float, float]],
                       digits: Tensor | np.ndarray, z: Tensor | np.ndarray) -> dict:
    """What the page shows, computed with the models: a JSON-serialisable dict.

    Args:
        models: β -> trained VAE (same x_dim and z_dim), at least two β > 0.
        rate_distortion: β -> (rate R = KL, distortion D = −E log p(x|z)), nats per digit, for the same β.
        digits: (k, x_dim) test images in [0, 1] to reconstruct (k ≤ 20).
        z: (m, z_dim) prior draws decoded by every model (m ≤ 20).

    Returns ``{"format", "side", "betas" (sorted), "rate", "distortion" (lists in that order),
    "digits" (base64 uint8, k × x_dim), "recon", "samples" (one base64 uint8 string per β:
    round(255 · mean_image(μ(x))) and round(255 · mean_image(z)))}``.

    Used by: :func:`beta_explorer_html`, tests.
    """
    if not isinstance(models, Mapping) or len(models) < 2:
        raise ValueError("models must map at least two beta values to models")
    betas = sorted(float(b) for b in models)
    if not all(math.isfinite(b) and b > 0 for b in betas) or len(set(betas)) != len(betas):
        raise ValueError(f"beta values must be distinct finite numbers > 0, got {betas}")
    if not isinstance(rate_distortion, Mapping) or sorted(float(b) for b in rate_distortion) != betas:
        raise ValueError("rate_distortion must have exactly the betas of models")
    by_beta = {float(b): m for b, m in models.items()}
    rd = {float(b): v for b, v in rate_distortion.items()}
    first = by_beta[betas[0]]
    x_dim, z_dim = int(first.x_dim), int(first.z_dim)
    side = _side(x_dim)
    for b in betas:
        if (int(by_beta[b].x_dim), int(by_beta[b].z_dim)) != (x_dim, z_dim):
            raise ValueError(f"the model for beta={b:g} is not {x_dim}-...-{z_dim} like the others")
        pair = rd[b]
        if len(pair) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
                                     for v in (float(pair[0]), float(pair[1]))):
            raise ValueError(f"rate_distortion[{b:g}] must be two finite numbers >= 0, got {pair!r}")
    x = _images(digits, "digits", x_dim)
    if not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError("digits must hold pixels in [0, 1]")
    zz = _images(z, "z", z_dim)
    recon, samples = [], []
    for b in betas:
        model = by_beta[b]
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        with torch.no_grad():
            mu, _ = model.encode(x.to(device))
            recon.append(_b64(to_uint8(model.mean_image(mu).double().cpu().numpy())))
            samples.append(_b64(to_uint8(model.mean_image(zz.to(device)).double().cpu().numpy())))
        model.train(was_training)
    return {"format": FORMAT, "side": side, "betas": betas,
            "rate": [float(rd[b][0]) for b in betas], "distortion": [float(rd[b][1]) for b in betas],
            "digits": _b64(to_uint8(x.double().numpy())), "n_digits": len(x), "n_samples": len(zz),
            "recon": recon, "samples": samples}


def load_images(payload: dict, key: str, index: int | None = None) -> np.ndarray:
    """The images of a :func:`beta_sweep_payload` as (k, x_dim) floats round(255 v)/255: ``key`` is
    "digits", or "recon" / "samples" with the β ``index`` (position in ``payload["betas"]``).

    Used by: tests, chapter 7 (hidden checks).
    """
    s = payload[key] if key == "digits" else payload[key][index]
    k = payload["n_samples"] if key == "samples" else payload["n_digits"]
    u = np.frombuffer(base64.b64decode(s, validate=True), dtype=np.uint8)
    return u.reshape(k, -1).astype(np.float64) / 255.0


# ----------------------------------------------------------------------------------------------
# the page
# ----------------------------------------------------------------------------------------------
# Hooks for tests, on the container: el.vaeBeta.{index(), set(i), point(i) -> [x, y] canvas px of
# the i-th (R, D) point, strips() -> {digits, recon, samples}: the canvases' grey levels 0-255} and
# the attributes data-ready, data-last-redraw-ms, data-redraws.
_JS = page_js.head_js("P") + page_js.root_js("vae-beta-explorer", "P", "vaeBeta") + page_js.BYTES_JS + r"""
var B = P.betas.length, side = P.side, X = side * side;
var slider = root.querySelector("input[type=range]"), out = root.querySelector("output");
var rd = root.querySelector("canvas.vae-beta-rd"), ctx = rd.getContext("2d"), W = rd.width, H = rd.height;
var strips = {digits: root.querySelector("canvas.vae-beta-digits"),
              recon: root.querySelector("canvas.vae-beta-recon"),
              samples: root.querySelector("canvas.vae-beta-samples")};
var text = root.querySelector(".vae-beta-text");
var digits = bytes(P.digits), recon = P.recon.map(bytes), samples = P.samples.map(bytes);
var L = 50, R = 36, T = 12, Bm = 36;
var rmax = Math.max.apply(null, P.rate) * 1.08, dmin = Math.min.apply(null, P.distortion);
var dmax = Math.max.apply(null, P.distortion), dpad = 0.06 * (dmax - dmin);
dmin -= dpad; dmax += dpad;
function px(r) { return L + r / rmax * (W - L - R); }
function py(d) { return T + (dmax - d) / (dmax - dmin) * (H - T - Bm); }
function strip(canvas, u, n) {
  var c = canvas.getContext("2d"), img = c.createImageData(n * side, side), d = img.data, i, r, col, v, p;
  for (i = 0; i < n; i++) {
    for (r = 0; r < side; r++) {
      for (col = 0; col < side; col++) {
        v = u[i * X + r * side + col]; p = 4 * (r * n * side + i * side + col);
        d[p] = d[p + 1] = d[p + 2] = v; d[p + 3] = 255;
      }
    }
  }
  c.putImageData(img, 0, 0);
}
function drawCurve(i) {
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  ctx.strokeStyle = "#333"; ctx.lineWidth = 1; ctx.font = "12px sans-serif"; ctx.fillStyle = "#333";
  ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, H - Bm); ctx.lineTo(W - R, H - Bm); ctx.stroke();
  ctx.textAlign = "center";
  ctx.fillText("rate R = KL (nats per digit)", (L + W - R) / 2, H - 4);
  ctx.fillText("0", px(0), H - Bm + 14); ctx.fillText(rmax.toFixed(0), px(rmax), H - Bm + 14);
  ctx.textAlign = "right";
  ctx.fillText(dmax.toFixed(0), L - 4, py(dmax) + 4); ctx.fillText(dmin.toFixed(0), L - 4, py(dmin) + 4);
  ctx.save(); ctx.translate(12, (T + H - Bm) / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
  ctx.fillText("distortion D", 0, 0); ctx.restore();
  // the line D + beta R = const through the chosen point (slope -beta), clipped to the plot
  var beta = P.betas[i], c = P.distortion[i] + beta * P.rate[i];
  ctx.save(); ctx.beginPath(); ctx.rect(L, T, W - L - R, H - T - Bm); ctx.clip();
  ctx.strokeStyle = "#999"; ctx.setLineDash([4, 3]);
  ctx.beginPath(); ctx.moveTo(px(0), py(c)); ctx.lineTo(px(rmax), py(c - beta * rmax)); ctx.stroke();
  ctx.restore();
  ctx.strokeStyle = "#1f77b4"; ctx.lineWidth = 1.5; ctx.beginPath();
  for (var j = 0; j < B; j++) {
    if (j === 0) { ctx.moveTo(px(P.rate[j]), py(P.distortion[j])); }
    else { ctx.lineTo(px(P.rate[j]), py(P.distortion[j])); }
  }
  ctx.stroke();
  ctx.textAlign = "left";
  for (j = 0; j < B; j++) {
    ctx.fillStyle = "#1f77b4"; ctx.beginPath();
    ctx.arc(px(P.rate[j]), py(P.distortion[j]), 3.5, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = "#333"; ctx.fillText("\u03b2=" + P.betas[j], px(P.rate[j]) + 6, py(P.distortion[j]) - 5);
  }
  ctx.fillStyle = "#d62728"; ctx.beginPath();
  ctx.arc(px(P.rate[i]), py(P.distortion[i]), 7, 0, 2 * Math.PI); ctx.fill();
}
var current = -1, redraws = 0;
function show(i) {
  var t0 = performance.now();
  current = i;
  out.textContent = String(P.betas[i]);
  drawCurve(i);
  strip(strips.recon, recon[i], P.n_digits); strip(strips.samples, samples[i], P.n_samples);
  var r = P.rate[i], d = P.distortion[i];
  text.textContent = "\u03b2 = " + P.betas[i] + ": rate R = " + r.toFixed(2) + " nats, distortion D = " +
    d.toFixed(2) + " nats, \u2212ELBO = D + R = " + (d + r).toFixed(2) + " nats, objective D + \u03b2R = " +
    (d + P.betas[i] * r).toFixed(2) + " nats";
  redraws += 1;
  root.setAttribute("data-last-redraw-ms", (performance.now() - t0).toFixed(3));
  root.setAttribute("data-redraws", String(redraws));
}
strip(strips.digits, digits, P.n_digits);
slider.addEventListener("input", function () { show(parseInt(slider.value, 10)); });
function grey(canvas) {
  var d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data, out = [];
  for (var p = 0; p < d.length; p += 4) { out.push(d[p]); }
  return out;
}
root.vaeBeta = {
  index: function () { return current; },
  set: function (i) { slider.value = String(i); slider.dispatchEvent(new Event("input", {bubbles: true})); },
  point: function (i) { return [px(P.rate[i]), py(P.distortion[i])]; },
  strips: function () {
    return {digits: grey(strips.digits), recon: grey(strips.recon), samples: grey(strips.samples)};
  }
};
show(parseInt(slider.value, 10));
root.setAttribute("data-ready", "1");
})();"""


def beta_explorer_html(models: Mapping[float, torch.nn.Module] | None = None,
                       rate_distortion: Mapping[float, tuple[float, float]] | None = None,
                       digits: Tensor | np.ndarray | None = None, z: Tensor | np.ndarray | None = None, *,
                       payload: dict | None = None, start_beta: float = 1.0, element_id: str | None = None,
                       title: str | None = None) -> str:
    """The β explorer as one self-contained HTML snippet (a slider, the R–D canvas, three image strips,
    a ``<noscript>`` message and an inline script).

    Args:
        models, rate_distortion, digits, z: as :func:`beta_sweep_payload` (or give its ``payload``).
        start_beta: the β shown first (the nearest of the sweep's).
        element_id: the container's id (default derived from the content: re-execution is identical).
        title: a caption above the slider.

    Size: the payload's base64 images plus ≈ 6 kB of script and markup.

    Used by: chapter 7.
    """
    if payload is None:
        payload = beta_sweep_payload(models, rate_distortion, digits, z)
    elif payload.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} payload")
    betas = payload["betas"]
    start = int(np.argmin([abs(math.log(b / float(start_beta))) for b in betas])) if start_beta > 0 else 0
    if element_id is None:
        element_id = page_js.content_id("vae-beta-explorer", payload, start, title)
    js = {**payload, "id": page_js.check_id(element_id)}
    script = page_js.embed(_JS, js)
    side, nd, ns = payload["side"], payload["n_digits"], payload["n_samples"]

    def strip(cls: str, n: int, label: str) -> str:
        return (f'<div style="font-size:12px;margin-top:4px">{label}</div>'
                f'<canvas class="{cls}" width="{n * side}" height="{side}" role="img" aria-label="{label}" '
                f'style="width:100%;max-width:{n * 42}px;height:auto;image-rendering:pixelated;'
                'background:#000;display:block"></canvas>')

    caption = f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>' if title else ""
    return (
        f'<div id="{element_id}" class="vae-beta-explorer" style="margin:0.5em 0;max-width:760px;'
        f'font-size:14px">{caption}'
        '<label style="display:flex;align-items:center;gap:0.5em;max-width:28em">'
        '<span style="white-space:nowrap">β (model of the sweep)</span>'
        f'<input type="range" min="0" max="{len(betas) - 1}" step="1" value="{start}" '
        'aria-label="beta: which model of the sweep" style="flex:1;min-width:6em">'
        '<output style="min-width:2.5em;font-family:monospace"></output></label>'
        '<div style="display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start">'
        '<canvas class="vae-beta-rd" width="360" height="250" role="img" '
        'aria-label="rate-distortion curve of the sweep, the chosen beta in red" '
        'style="width:100%;max-width:360px;height:auto;border:1px solid #ccc;background:#fff"></canvas>'
        f'<div style="flex:1;min-width:14em">{strip("vae-beta-digits", nd, "test digits")}'
        f'{strip("vae-beta-recon", nd, "their reconstructions (decode the posterior mean)")}'
        f'{strip("vae-beta-samples", ns, "prior samples (the same z for every β)")}</div></div>'
        '<div class="vae-beta-text" aria-live="polite" style="font-size:13px;margin-top:4px"></div>'
        '<noscript>Choosing β needs JavaScript, which is off: the rate–distortion figure and the '
        'sample grids above show the same models.</noscript>'
        f'<script>{script}</script></div>'
    )


__all__ = ["FORMAT", "beta_explorer_html", "beta_sweep_payload", "load_images"]
