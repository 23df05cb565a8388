"""The latent map and the drawing pad: a 2-D VAE's encoder and decoder running in the page.

- :func:`export_encoder` — the encoder's weights (``encoder_hidden``, ``to_mu``, ``to_logvar``) as a
  compact, validated payload for a plain-JavaScript forward pass, with its error in μ and log σ²
  *measured* against ``model.encode`` on probe images.
- :func:`latent_map_html` — one self-contained HTML snippet: a scatter of test codes coloured by digit;
  clicking, dragging or the arrow keys set z, which is decoded beside the map; and a 28×28 drawing pad
  whose image is encoded in the page, its posterior mean μ and the 1-σ and 2-σ ellipses of q(z|x) drawn
  on the map and the reconstruction (decode μ) shown beside the pad. No external script, no network.

Encoder precision: the first layer (h_dim × 784) dominates the size. ``dtype`` sets its storage:
"float32", "float16", or "int8" (symmetric, one float32 scale per row). The heads and all biases stay
float32 (they are small). For the book's 784-256-2 encoder, float16 is ≈ 0.53 MB of base64 and int8
≈ 0.27 MB; the error each causes is measured and stored in the payload.

The decoder is :func:`vae_core.explorer.export_decoder`'s payload; to keep a page small the map can
reuse the decoder already embedded in a slider explorer on the same page (``decoder_from``).

Used by: chapter 5 (the latent map and the drawing pad).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import explorer, page_js
from .checks import check_positive_int

FORMAT = "vae_core.encoder/1"
DTYPES = ("auto", "float16", "float32", "int8")
_NP = {"float16": "<f2", "float32": "<f4", "int8": "i1"}
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
"""Digit colours of the map (matplotlib's tab10, as in the chapter's scatter plots)."""


# ----------------------------------------------------------------------------------------------
# export of the encoder
# ----------------------------------------------------------------------------------------------
def _encoder_layers(model: torch.nn.Module) -> tuple[torch.nn.Linear, torch.nn.Linear, torch.nn.Linear]:
    layers = tuple(getattr(model, n, None) for n in ("encoder_hidden", "to_mu", "to_logvar"))
    if not all(isinstance(layer, torch.nn.Linear) for layer in layers):
        raise TypeError("the latent map needs a vae_core VAE with Linear layers `encoder_hidden`, "
                        "`to_mu` and `to_logvar`")
    hidden, to_mu, to_logvar = layers
    if hidden.in_features != model.x_dim:
        raise TypeError(f"encoder_hidden takes {hidden.in_features} inputs but x_dim={model.x_dim}: only "
                        "the unconditional VAE encoder (input x alone) can be exported")
    for head in (to_mu, to_logvar):
        if head.in_features != hidden.out_features or head.out_features != model.z_dim:
            raise TypeError("encoder layer shapes do not chain x_dim -> h_dim -> z_dim")
    return hidden, to_mu, to_logvar


def _b64(arr: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(arr.astype(_NP[dtype])).tobytes()).decode("ascii")


def _unb64(s: str, dtype: str, shape: Sequence[int]) -> np.ndarray:
    arr = np.frombuffer(base64.b64decode(s, validate=True), dtype=_NP[dtype])
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"decoded {arr.size} numbers, expected shape {tuple(shape)}")
    return arr.reshape(tuple(shape))


def _quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: w ≈ q · scale[:, None], q in [-127, 127], scale float32 > 0."""
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale.astype(np.float64)[:, None]), -127, 127).astype(np.int8)
    return q, scale


def load_encoder(payload: dict) -> dict[str, Tensor]:
    """Decode an :func:`export_encoder` payload to float32 tensors under the state-dict names
    ``encoder_hidden.weight`` (h, x), ``encoder_hidden.bias`` (h,), ``to_mu.weight`` (z, h),
    ``to_mu.bias`` (z,), ``to_logvar.weight`` (z, h), ``to_logvar.bias`` (z,).

    int8 weights are dequantized as float32(q · scale), the number the page computes.

    Used by: :func:`encoder_forward`, tests, chapter 5.
    """
    x, h, z, wd = payload["x_dim"], payload["h_dim"], payload["z_dim"], payload["dtype"]
    if wd == "int8":
        q = _unb64(payload["W1"], "int8", (h, x)).astype(np.float64)
        scale = _unb64(payload["W1_scale"], "float32", (h,)).astype(np.float64)
        w1 = (q * scale[:, None]).astype(np.float32)
    else:
        w1 = _unb64(payload["W1"], wd, (h, x)).astype(np.float32)
    out = {"encoder_hidden.weight": w1,
           "encoder_hidden.bias": _unb64(payload["b1"], "float32", (h,)),
           "to_mu.weight": _unb64(payload["Wmu"], "float32", (z, h)),
           "to_mu.bias": _unb64(payload["bmu"], "float32", (z,)),
           "to_logvar.weight": _unb64(payload["Wlv"], "float32", (z, h)),
           "to_logvar.bias": _unb64(payload["blv"], "float32", (z,))}
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in out.items()}


def check_encoder_payload(payload: Any, model: torch.nn.Module | None = None) -> dict:
    """Validate an :func:`export_encoder` payload before it goes into a page: format, sizes (the
    model's, given ``model``), dtype from the fixed set, every weight decodes to the right number of
    finite values. Returns the payload; raises ValueError naming the field.

    Used by: :func:`latent_map_html`, tests.
    """
    explorer.check_weight_payload(payload, FORMAT, (), None)  # format and sizes first
    if payload.get("dtype") not in _NP:
        raise ValueError(f"payload dtype must be one of {sorted(_NP)}, got {payload.get('dtype')!r}")
    keys = ["W1", "b1", "Wmu", "bmu", "Wlv", "blv"] + (["W1_scale"] if payload["dtype"] == "int8" else [])
    explorer.check_weight_payload(payload, FORMAT, keys, load_encoder)
    if model is not None:
        hidden, _, _ = _encoder_layers(model)
        mine = (int(model.x_dim), int(hidden.out_features), int(model.z_dim))
        theirs = (payload["x_dim"], payload["h_dim"], payload["z_dim"])
        if mine != theirs:
            raise ValueError(f"payload was exported from a {theirs[0]}-{theirs[1]}-{theirs[2]} encoder, "
                             f"but the model's is {mine[0]}-{mine[1]}-{mine[2]}")
    return payload


def encoder_forward(payload: dict, x: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The forward pass the page runs, in NumPy float64: x (N, x_dim) in [0, 1] -> (mu, logvar), each
    (N, z_dim). ``h = relu(W1 x + b1); mu = Wmu h + bmu; logvar = Wlv h + blv``.

    Used by: :func:`export_encoder` (error measurement), tests.
    """
    w = {k: v.double().numpy() for k, v in load_encoder(payload).items()}
    xx = np.atleast_2d(np.asarray(torch.as_tensor(x, dtype=torch.float64).cpu()))
    h = np.maximum(xx @ w["encoder_hidden.weight"].T + w["encoder_hidden.bias"], 0.0)
    return h @ w["to_mu.weight"].T + w["to_mu.bias"], h @ w["to_logvar.weight"].T + w["to_logvar.bias"]


def probe_images(x_dim: int = 784, n: int = 512, seed: int = 0) -> Tensor:
    """Fixed probe images for the error measurement, (n, x_dim) in [0, 1], seeded: half uniform noise,
    half sparse binary images (15% ink), the two extremes a drawing pad can produce."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n // 2, x_dim, generator=g)
    sparse = (torch.rand(n - n // 2, x_dim, generator=g) < 0.15).float()
    return torch.cat([noise, sparse])


def export_encoder(model: torch.nn.Module, dtype: str = "auto", tol: float = 0.01,
                   probe_x: Tensor | None = None) -> dict:
    """The encoder's weights as a JSON-serialisable dict for the JavaScript forward pass.

    Args:
        model: a :class:`vae_core.models.VAE` (layers ``encoder_hidden``, ``to_mu``, ``to_logvar``).
        dtype: storage of the first layer's weights: "float32", "float16", "int8" (per-row scale), or
            "auto": float16 when its measured error in μ and log σ² is < ``tol``, else float32.
        tol: tolerance of "auto", in latent units (μ) and nats (log σ²).
        probe_x: (n, x_dim) images in [0, 1] on which the error is measured (default
            :func:`probe_images`; the chapter adds test digits).

    Returns ``{"format", "x_dim", "h_dim", "z_dim", "dtype", "W1" (h, x), ["W1_scale" (h,)], "b1",
    "Wmu" (z, h), "bmu", "Wlv" (z, h), "blv"`` — little-endian base64, row-major, all but W1 float32 —
    ``"max_abs_error_mu", "max_abs_error_logvar"}``: the largest |page − model.encode(x)| over the probes.

    Used by: :func:`latent_map_html`; chapter 5.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a number > 0, got {tol!r}")
    hidden, to_mu, to_logvar = _encoder_layers(model)
    for layer in (hidden, to_mu, to_logvar):
        if not all(bool(torch.isfinite(p).all()) for p in layer.parameters()):
            raise ValueError("the encoder has non-finite weights (NaN or inf): nothing to export")
    probe = probe_images(int(model.x_dim)) if probe_x is None else torch.as_tensor(probe_x)
    probe = probe.float()
    if probe.dim() != 2 or probe.shape[1] != model.x_dim or len(probe) == 0:
        raise ValueError(f"probe_x must be (n, {model.x_dim}), got {tuple(probe.shape)}")
    if not bool(((probe >= 0) & (probe <= 1)).all()):
        raise ValueError("probe_x must hold pixels in [0, 1]")
    device = next(model.parameters()).device
    with torch.no_grad():
        ref_mu, ref_lv = (t.double().cpu().numpy() for t in model.encode(probe.to(device)))

    def f32(t: Tensor) -> np.ndarray:
        return t.detach().cpu().float().numpy()

    def build(wd: str) -> dict:
        w1 = f32(hidden.weight).astype(np.float64)
        payload: dict[str, Any] = {"format": FORMAT, "x_dim": int(model.x_dim),
                                   "h_dim": int(hidden.out_features), "z_dim": int(model.z_dim),
                                   "dtype": wd}
        if wd == "int8":
            q, scale = _quantize_int8(w1)
            payload["W1"], payload["W1_scale"] = _b64(q, "int8"), _b64(scale, "float32")
        else:
            payload["W1"] = _b64(w1, wd)
        payload.update(b1=_b64(f32(hidden.bias), "float32"),
                       Wmu=_b64(f32(to_mu.weight), "float32"), bmu=_b64(f32(to_mu.bias), "float32"),
                       Wlv=_b64(f32(to_logvar.weight), "float32"),
                       blv=_b64(f32(to_logvar.bias), "float32"))
        mu, lv = encoder_forward(payload, probe)
        payload["max_abs_error_mu"] = float(np.abs(mu - ref_mu).max())
        payload["max_abs_error_logvar"] = float(np.abs(lv - ref_lv).max())
        return payload

    def error(p: dict) -> float:
        return max(p["max_abs_error_mu"], p["max_abs_error_logvar"])

    if dtype == "auto":
        half = build("float16")
        if error(half) < tol:
            return half
        dtype = "float32"
    payload = build(dtype)
    if dtype == "float32" and error(payload) >= 1e-3:
        raise ValueError(f"the exported encoder differs from model.encode by {error(payload):.3g} even in "
                         "float32: is encode relu(encoder_hidden(x)) -> (to_mu, to_logvar)?")
    return payload


# ----------------------------------------------------------------------------------------------
# the HTML + JavaScript snippet
# ----------------------------------------------------------------------------------------------
# Hooks for tests, on the container: el.vaeMap.{encode(pixels) -> {mu, logvar}, decode(z) -> pixels,
# setZ(z), z(), load(i), drawStroke(points), clear(), padPixels(), posterior(), decoded(), recon(),
# toPage(z) -> [x, y] (CSS px in the map), range} and the attributes data-last-redraw-ms,
# data-redraws, data-ready.
_JS = (page_js.head_js("M") + page_js.root_js("vae-latent-map", "M", "vaeMap")
       + 'var msg = root.querySelector(".vae-map-msg");\n' + page_js.BYTES_JS + page_js.HALF_JS
       + page_js.floats_js("vae-latent-map", int8=True)
       + r"""// The decoder: embedded, or read from the slider explorer on this page that already holds it.
var D = M.decoder;
if (!D) {
  var ex = document.getElementById(M.decoder_from), sc = ex && ex.querySelector("script");
  var found = sc && /var P = (\{.*?\});\n/.exec(sc.textContent);
  D = found ? JSON.parse(found[1]) : null;
  if (!D || D.W2.length !== M.decoder_check[0] || D.W2.slice(0, 64) !== M.decoder_check[1]) {
    msg.textContent = "The latent map could not find its decoder on this page.";
    return;
  }
}
var E = M.encoder, X = E.x_dim, H = E.h_dim, Z = E.z_dim, HD = D.h_dim, side = M.side;
var eW1 = floats(E.W1, E.dtype, H * X, E.dtype === "int8" ? floats(E.W1_scale, "float32", H) : null);
var eb1 = floats(E.b1, "float32", H), eWmu = floats(E.Wmu, "float32", Z * H);
var ebmu = floats(E.bmu, "float32", Z), eWlv = floats(E.Wlv, "float32", Z * H);
var eblv = floats(E.blv, "float32", Z);
var dW1 = floats(D.W1, D.dtype, HD * Z), db1 = floats(D.b1, D.bias_dtype, HD);
var dW2 = floats(D.W2, D.dtype, X * HD), db2 = floats(D.b2, D.bias_dtype, X);
function dense(W, b, x, nOut, nIn, relu) {
  var out = new Float64Array(nOut), j, k, s, o;
  for (j = 0; j < nOut; j++) {
    s = b[j]; o = j * nIn;
    for (k = 0; k < nIn; k++) { s += W[o + k] * x[k]; }
    out[j] = relu && s < 0 ? 0 : s;
  }
  return out;
}
function encode(x) {
  var h = dense(eW1, eb1, x, H, X, true);
  return {mu: Array.from(dense(eWmu, ebmu, h, Z, H, false)),
          logvar: Array.from(dense(eWlv, eblv, h, Z, H, false))};
}
function decode(z) {
  var out = dense(dW2, db2, dense(dW1, db1, z, HD, Z, true), X, HD, false);
  for (var i = 0; i < X; i++) { out[i] = 1 / (1 + Math.exp(-out[i])); }
  return out;
}
// --- state and drawing
var lo = M.range[0], hi = M.range[1], step = M.key_step;
var z = [0, 0], post = null, decoded = null, recon = null, pad = new Float64Array(X);
var map = root.querySelector(".vae-map"), mctx = map.getContext("2d"), S = map.width;
var cDec = root.querySelector(".vae-map-decoded"), cPad = root.querySelector(".vae-map-pad");
var cRec = root.querySelector(".vae-map-recon"), out = root.querySelector(".vae-map-out");
function toPx(v, axis) { return axis === 0 ? (v - lo) / (hi - lo) * S : (hi - v) / (hi - lo) * S; }
var bg = document.createElement("canvas");
bg.width = bg.height = S;
(function drawBackground() {
  var g = bg.getContext("2d"), codes = floats(M.codes, "float16", 2 * M.labels.length), i, t;
  g.fillStyle = "#fff"; g.fillRect(0, 0, S, S);
  g.strokeStyle = "#e4e4e4"; g.lineWidth = 1;
  for (t = Math.ceil(lo); t <= hi; t++) {
    g.beginPath(); g.moveTo(toPx(t, 0), 0); g.lineTo(toPx(t, 0), S); g.stroke();
    g.beginPath(); g.moveTo(0, toPx(t, 1)); g.lineTo(S, toPx(t, 1)); g.stroke();
  }
  g.globalAlpha = 0.75;
  for (i = 0; i < M.labels.length; i++) {
    g.fillStyle = M.colours[+M.labels[i]];
    g.fillRect(toPx(codes[2 * i], 0) - 1.5, toPx(codes[2 * i + 1], 1) - 1.5, 3, 3);
  }
})();
function gray(canvas, px) {
  var c = canvas.getContext("2d"), img = c.createImageData(side, side), d = img.data;
  for (var i = 0; i < X; i++) {
    var v = Math.round(px[i] * 255);
    d[4 * i] = d[4 * i + 1] = d[4 * i + 2] = v; d[4 * i + 3] = 255;
  }
  c.putImageData(img, 0, 0);
}
function drawMap() {
  mctx.drawImage(bg, 0, 0);
  if (post) {
    var cx = toPx(post.mu[0], 0), cy = toPx(post.mu[1], 1), k = S / (hi - lo);
    mctx.strokeStyle = "#000"; mctx.lineWidth = 1.5;
    [1, 2].forEach(function (n) {
      mctx.beginPath();
      mctx.ellipse(cx, cy, n * k * Math.exp(post.logvar[0] / 2), n * k * Math.exp(post.logvar[1] / 2),
                   0, 0, 2 * Math.PI);
      mctx.stroke();
    });
    mctx.fillStyle = "#000"; mctx.fillRect(cx - 3, cy - 3, 6, 6);
  }
  var x = toPx(z[0], 0), y = toPx(z[1], 1);
  mctx.strokeStyle = "#d00"; mctx.lineWidth = 2;
  mctx.beginPath(); mctx.arc(x, y, 6, 0, 2 * Math.PI); mctx.stroke();
  mctx.beginPath(); mctx.moveTo(x - 10, y); mctx.lineTo(x + 10, y);
  mctx.moveTo(x, y - 10); mctx.lineTo(x, y + 10); mctx.stroke();
}
var redraws = 0;
function redraw(encodePad) {
  var t0 = performance.now();
  if (encodePad) {
    post = encode(pad); recon = decode(post.mu); gray(cPad, pad); gray(cRec, recon);
  }
  decoded = decode(z); gray(cDec, decoded); drawMap();
  var txt = "z = (" + z[0].toFixed(2) + ", " + z[1].toFixed(2) + ")";
  if (post) {
    txt += "; drawing: \u03bc = (" + post.mu[0].toFixed(2) + ", " + post.mu[1].toFixed(2) +
           "), \u03c3 = (" + Math.exp(post.logvar[0] / 2).toFixed(2) + ", " +
           Math.exp(post.logvar[1] / 2).toFixed(2) + ")";
  }
  out.textContent = txt;
  redraws += 1;
  root.setAttribute("data-last-redraw-ms", (performance.now() - t0).toFixed(3));
  root.setAttribute("data-redraws", String(redraws));
}
function clamp(v) { return Math.min(hi, Math.max(lo, v)); }
function setZ(v) { z = [clamp(+v[0]), clamp(+v[1])]; redraw(false); }
// --- the map: click or drag to decode, arrow keys to move
function eventZ(ev) {
  var r = map.getBoundingClientRect();
  return [lo + (ev.clientX - r.left) / r.width * (hi - lo), hi - (ev.clientY - r.top) / r.height * (hi - lo)];
}
var dragging = false;
map.addEventListener("pointerdown", function (ev) {
  dragging = true; map.setPointerCapture(ev.pointerId); map.focus(); setZ(eventZ(ev));
  ev.preventDefault();
});
map.addEventListener("pointermove", function (ev) { if (dragging) { setZ(eventZ(ev)); } });
map.addEventListener("pointerup", function () { dragging = false; });
map.addEventListener("pointercancel", function () { dragging = false; });
map.addEventListener("keydown", function (ev) {
  var d = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1]}[ev.key];
  if (!d) { return; }
  var s = ev.shiftKey ? 5 * step : step;
  setZ([z[0] + s * d[0], z[1] + s * d[1]]);
  ev.preventDefault();
});
// --- the pad: a round brush with a soft edge, stamped along each stroke
function stamp(x, y) {
  var r, c, d, v;
  for (r = Math.max(0, Math.floor(y - 3)); r < Math.min(side, y + 3); r++) {
    for (c = Math.max(0, Math.floor(x - 3)); c < Math.min(side, x + 3); c++) {
      d = Math.sqrt((c + 0.5 - x) * (c + 0.5 - x) + (r + 0.5 - y) * (r + 0.5 - y));
      v = Math.min(1, Math.max(0, M.brush - d));
      if (v > pad[r * side + c]) { pad[r * side + c] = v; }
    }
  }
}
function segment(a, b) {
  var n = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) * 4));
  for (var i = 0; i <= n; i++) { stamp(a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n); }
}
function padPoint(ev) {
  var r = cPad.getBoundingClientRect();
  return [(ev.clientX - r.left) / r.width * side, (ev.clientY - r.top) / r.height * side];
}
var last = null;
cPad.addEventListener("pointerdown", function (ev) {
  cPad.setPointerCapture(ev.pointerId); last = padPoint(ev); segment(last, last); redraw(true);
  ev.preventDefault();
});
cPad.addEventListener("pointermove", function (ev) {
  if (!last) { return; }
  var p = padPoint(ev); segment(last, p); last = p; redraw(true);
});
cPad.addEventListener("pointerup", function () { last = null; });
cPad.addEventListener("pointercancel", function () { last = null; });
function clear() { pad = new Float64Array(X); post = null; recon = new Float64Array(X); gray(cPad, pad);
                   gray(cRec, recon); redraw(false); }
function load(i) {
  var u = bytes(M.digits[i]);
  for (var k = 0; k < X; k++) { pad[k] = u[k] / 255; }
  redraw(true);
}
root.querySelector(".vae-map-clear").addEventListener("click", clear);
Array.prototype.forEach.call(root.querySelectorAll(".vae-map-load"), function (b) {
  b.addEventListener("click", function () { load(+b.getAttribute("data-i")); });
});
root.vaeMap = {
  encode: function (px) { return encode(px); },
  decode: function (v) { return Array.from(decode(v)); },
  setZ: setZ, load: load, clear: clear,
  z: function () { return z.slice(); },
  drawStroke: function (pts) {
    for (var i = 0; i < pts.length; i++) { segment(pts[Math.max(0, i - 1)], pts[i]); }
    redraw(true);
  },
  padPixels: function () { return Array.from(pad); },
  posterior: function () { return post && {mu: post.mu.slice(), logvar: post.logvar.slice()}; },
  decoded: function () { return Array.from(decoded); },
  recon: function () { return recon && Array.from(recon); },
  toPage: function (v) {
    var r = map.getBoundingClientRect();
    return [r.left + toPx(v[0], 0) / S * r.width, r.top + toPx(v[1], 1) / S * r.height];
  },
  range: [lo, hi]
};
clear();
msg.textContent = "";
root.setAttribute("data-ready", "1");
})();""")


def _range_from_codes(codes: np.ndarray) -> tuple[float, float]:
    """(low, high) holding the codes' 0.5%...99.5% quantiles along both axes, in half units."""
    q = np.quantile(codes, [0.005, 0.995], axis=0)
    return math.floor(2 * q[0].min()) / 2, math.ceil(2 * q[1].max()) / 2


_EXPLORER = re.compile(r'^<div id="([A-Za-z][A-Za-z0-9_-]*)" class="vae-explorer" ')
_EXPLORER_PAYLOAD = re.compile(r"var P = (\{.*?\});\n")


def _explorer_decoder(explorer_html: str, model: torch.nn.Module) -> tuple[str, dict]:
    """(element id, decoder payload) of a :func:`vae_core.explorer.static_explorer_html` snippet,
    checked to hold ``model``'s decoder (its weights up to float16 rounding)."""
    head = _EXPLORER.match(explorer_html) if isinstance(explorer_html, str) else None
    found = _EXPLORER_PAYLOAD.search(explorer_html) if head else None
    if not found:
        raise ValueError("decoder_from must be the HTML of explorer.static_explorer_html")
    payload = json.loads(found.group(1))
    payload["format"] = explorer.FORMAT
    explorer.check_payload(payload, model)
    state = model.state_dict()
    for name, w in explorer.load_decoder(payload).items():
        if not torch.allclose(w, state[name].detach().float().cpu(), rtol=2**-10, atol=2**-24):
            raise ValueError(f"decoder_from holds another model's decoder ({name} differs)")
    return head.group(1), payload


def latent_map_html(
    model: torch.nn.Module,
    codes: Tensor | np.ndarray,
    labels: Tensor | Sequence[int],
    *,
    digits: Tensor | np.ndarray | None = None,
    digit_labels: Sequence[int] | None = None,
    value_range: tuple[float, float] | None = None,
    n_codes: int = 1000,
    encoder_payload: dict | None = None,
    decoder_payload: dict | None = None,
    decoder_from: str | None = None,
    element_id: str | None = None,
    map_px: int = 320,
    pad_px: int = 168,
    key_step: float = 0.1,
    brush: float = 1.8,
    title: str | None = None,
) -> str:
    """A self-contained HTML snippet: the latent map of a 2-D VAE and a drawing pad, in plain JavaScript.

    Args:
        model: a VAE with z_dim = 2 and a square x_dim (e.g. the book's 784-256-2).
        codes: (N, 2) test codes (posterior means); the first ``n_codes`` are drawn (``data.load`` serves
            a fair shuffle, so a prefix is a fair sample). labels: (N,) their digits, 0-9, for colour.
        digits: (k, x_dim) images in [0, 1] offered by "load a test digit" buttons (stored as 8-bit grey,
            ≤ 20); digit_labels: their names on the buttons (default 0, 1, ...).
        value_range: (low, high) of both map axes; default: the codes' 0.5%...99.5% quantiles along both
            axes, rounded out to half units (as chapter 5's sliders).
        encoder_payload: an :func:`export_encoder` payload (default: exported with dtype "auto").
        decoder_payload: a :func:`vae_core.explorer.export_decoder` payload (default: exported).
        decoder_from: the HTML of a :func:`vae_core.explorer.static_explorer_html` slider explorer of
            the same model, shown on the same page: the map then reads the decoder from there instead
            of embedding it a second time (its weights are checked to be the model's).
        element_id: the container's id (default derived from the content, so re-execution is identical).
        map_px, pad_px: sizes of the map and of the pad (CSS px); key_step: arrow-key step in z (shift:
            5×); brush: brush radius in pixels (ink 1 at the centre falling to 0 one pixel further out).

    Pixels are drawn as round(255 v), 0 black, on 28×28 canvases upscaled by CSS. For tests the
    container exposes ``el.vaeMap`` (``encode``, ``decode``, ``setZ``, ``z``, ``load``, ``drawStroke``
    (points in pixel units), ``clear``, ``padPixels``, ``posterior``, ``decoded``, ``recon``,
    ``toPage``, ``range``) and the attributes ``data-last-redraw-ms``, ``data-redraws``, ``data-ready``.

    Used by: chapter 5.
    """
    if int(getattr(model, "z_dim", 0)) != 2:
        raise ValueError("the latent map draws a 2-D latent space: the model needs z_dim = 2")
    side = explorer._side(int(model.x_dim))
    c = np.asarray(torch.as_tensor(codes, dtype=torch.float64).detach().cpu())
    y = np.asarray(torch.as_tensor(labels).detach().cpu())
    if c.ndim != 2 or c.shape[1] != 2 or len(c) == 0 or not np.isfinite(c).all():
        raise ValueError(f"codes must be (N, 2) finite numbers, got shape {c.shape}")
    if y.shape != (len(c),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
        raise ValueError(f"labels must be {len(c)} integer digits 0-9")
    n_codes = check_positive_int(n_codes, "n_codes")
    c, y = c[:n_codes], y[:n_codes]
    if value_range is None:
        value_range = _range_from_codes(c)
    if len(value_range) != 2 or not all(explorer._is_real(v) for v in value_range):
        raise ValueError(f"value_range must be two numbers (low, high), got {value_range!r}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be finite with low < high, got {value_range}")
    for name, value in [("map_px", map_px), ("pad_px", pad_px)]:
        check_positive_int(value, name)
    for name, value in [("key_step", key_step), ("brush", brush)]:
        if not explorer._is_real(value) or not (0 < value < 100):
            raise ValueError(f"{name} must be a number in (0, 100), got {value!r}")
    if digits is None:
        digits_u8 = np.zeros((0, int(model.x_dim)), dtype=np.uint8)
    else:
        d = np.asarray(torch.as_tensor(digits, dtype=torch.float64).detach().cpu())
        if d.ndim != 2 or d.shape[1] != model.x_dim or len(d) > 20 or not ((d >= 0) & (d <= 1)).all():
            raise ValueError(f"digits must be (k <= 20, {model.x_dim}) pixels in [0, 1], got shape {d.shape}")
        digits_u8 = explorer.to_uint8(d)
    names = [str(s) for s in (range(len(digits_u8)) if digit_labels is None else digit_labels)]
    if len(names) != len(digits_u8):
        raise ValueError(f"digit_labels has {len(names)} entries for {len(digits_u8)} digits")
    if encoder_payload is None:
        encoder_payload = export_encoder(model)
    check_encoder_payload(encoder_payload, model)
    shared_id = None
    if decoder_from is not None:
        if decoder_payload is not None:
            raise ValueError("give decoder_payload or decoder_from, not both")
        shared_id, decoder_payload = _explorer_decoder(decoder_from, model)
    elif decoder_payload is None:
        decoder_payload = explorer.export_decoder(model)
    explorer.check_payload(decoder_payload, model)
    dec_keys = ("x_dim", "h_dim", "z_dim", "dtype", "bias_dtype", "W1", "b1", "W2", "b2")
    enc_keys = [k for k in encoder_payload if k in
                ("x_dim", "h_dim", "z_dim", "dtype", "W1", "W1_scale", "b1", "Wmu", "bmu", "Wlv", "blv")]
    js: dict[str, Any] = {
        "side": side, "range": [lo, hi], "key_step": float(key_step), "brush": float(brush),
        "colours": list(COLOURS), "labels": "".join(str(int(v)) for v in y),
        "codes": base64.b64encode(c.astype("<f2").tobytes()).decode("ascii"),
        "digits": [base64.b64encode(row.tobytes()).decode("ascii") for row in digits_u8],
        "encoder": {k: encoder_payload[k] for k in enc_keys},
    }
    if shared_id is None:
        js["decoder"] = {k: decoder_payload[k] for k in dec_keys}
    else:
        js["decoder_from"] = shared_id
        js["decoder_check"] = [len(decoder_payload["W2"]), decoder_payload["W2"][:64]]
    if element_id is None:
        element_id = page_js.content_id("vae-latent-map", js, names, title)
    js["id"] = page_js.check_id(element_id, "element_id")
    script = page_js.embed(_JS, js)  # "<" escaped: no "</script>" from a label

    def canvas(cls: str, px: int, label: str, extra: str = "") -> str:
        return (f'<canvas class="{cls}" width="{side}" height="{side}" role="img" aria-label="{label}" '
                f'style="width:{px}px;height:{px}px;image-rendering:pixelated;background:#000;'
                f'border:1px solid #888;touch-action:none{extra}"></canvas>')

    legend = "".join(
        f'<span style="white-space:nowrap"><span style="display:inline-block;width:0.8em;height:0.8em;'
        f'background:{colour}"></span>&nbsp;{k}</span> ' for k, colour in enumerate(COLOURS))
    buttons = "".join(
        f'<button type="button" class="vae-map-load" data-i="{i}">{html.escape(n)}</button> '
        for i, n in enumerate(names))
    caption = f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>' if title else ""
    small = max(84, map_px // 3)
    return (
        f'<div id="{html.escape(element_id, quote=True)}" class="vae-latent-map" '
        f'data-encoder-dtype="{html.escape(encoder_payload["dtype"], quote=True)}" '
        f'style="margin:0.5em 0">{caption}'
        '<div style="display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start">'
        '<div><div style="font-size:90%">latent map: click, drag, or focus it and use the arrow keys</div>'
        f'<canvas class="vae-map" width="{map_px}" height="{map_px}" tabindex="0" role="application" '
        f'aria-label="latent map from {lo:g} to {hi:g} on both axes; arrow keys move z" '
        f'style="width:{map_px}px;max-width:100%;border:1px solid #888;touch-action:none;cursor:crosshair">'
        f'</canvas><div style="font-size:85%;max-width:{map_px}px">{legend}</div></div>'
        '<div><div style="font-size:90%">decoded z</div>'
        f'{canvas("vae-map-decoded", small, "image decoded from z")}</div>'
        '<div><div style="font-size:90%">draw a digit</div>'
        f'{canvas("vae-map-pad", pad_px, "drawing pad", ";cursor:crosshair")}'
        f'<div><button type="button" class="vae-map-clear">clear</button> load a test digit: {buttons}</div>'
        '</div><div><div style="font-size:90%">its reconstruction</div>'
        f'{canvas("vae-map-recon", small, "reconstruction of the drawing")}</div></div>'
        '<div class="vae-map-out" aria-live="polite" style="font-family:monospace;font-size:90%"></div>'
        '<div class="vae-map-msg" role="status"></div>'
        '<noscript>The latent map and the drawing pad need JavaScript.</noscript>'
        f"<script>{script}</script></div>"
    )
