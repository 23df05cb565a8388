"""Latent sliders: move z, watch the decoded digit. Two versions of the same picture.

- :func:`live_explorer` — ipywidgets sliders in a running kernel; every move decodes with the torch model
  (``model.mean_image``) and shows the result as a PNG in an ``ipywidgets.Image``.
- :func:`static_explorer_html` — a self-contained HTML snippet for the **static** book: the decoder's
  weights (exported by :func:`export_decoder`) are embedded as base64, and a plain-JavaScript forward pass
  ``h = relu(W1 z + b1); x = sigmoid(W2 h + b2)`` draws the 28×28 image on a ``<canvas>``, upscaled by
  nearest neighbour. No external script, no network, no kernel. ``display(HTML(...))`` in a notebook
  stores it as a ``text/html`` output, which Jupyter Book (myst-nb) writes into the page as raw HTML.

The decoder is the :class:`vae_core.models.VAE` one: ``decoder_hidden`` (Linear z_dim → h_dim, ReLU) then
``to_x`` (Linear h_dim → x_dim), whose sigmoid is ``mean_image`` (Bernoulli logits or Gaussian means).

Weight precision (``export_decoder(dtype="auto")``): weight matrices are stored as float16 when the
pixel error that causes, *measured* against ``model.mean_image`` on a fixed set of probe codes, stays
below ``tol`` (default 0.5/255, so that after rounding to 8-bit canvas pixels the total error stays
within 1/255); otherwise float32. Biases are always float32 (they are small). For the book's
784-400-20 decoder float16 halves the page (≈ 0.86 MB of weights in base64 instead of ≈ 1.7 MB).

Used by: chapter 5 (live and static sliders for the 2-D and 20-D models).
"""

from __future__ import annotations

import base64
import binascii
import html
import math
import numbers
import struct
import time
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import page_js
from .checks import check_positive_int

FORMAT = "vae_core.decoder/1"
DTYPES = ("auto", "float16", "float32")
_NP_DTYPES = {"float16": "<f2", "float32": "<f4"}


# ----------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------
def _decoder_layers(model: torch.nn.Module) -> tuple[torch.nn.Linear, torch.nn.Linear]:
    """The (decoder_hidden, to_x) layers of an unconditional VAE, checked."""
    hidden, to_x = getattr(model, "decoder_hidden", None), getattr(model, "to_x", None)
    if not isinstance(hidden, torch.nn.Linear) or not isinstance(to_x, torch.nn.Linear):
        raise TypeError("the explorer needs a vae_core VAE with Linear layers `decoder_hidden` and `to_x`")
    if hidden.in_features != model.z_dim:
        raise TypeError(
            f"decoder_hidden takes {hidden.in_features} inputs but z_dim={model.z_dim}: only the "
            "unconditional VAE decoder (input z alone) can be exported"
        )
    if to_x.in_features != hidden.out_features or to_x.out_features != model.x_dim:
        raise TypeError("decoder layer shapes do not chain z_dim -> h_dim -> x_dim")
    return hidden, to_x


def _device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _side(x_dim: int) -> int:
    side = math.isqrt(x_dim)
    if side * side != x_dim:
        raise ValueError(f"x_dim={x_dim} is not a square image; the explorer draws square images")
    return side


def _slider_setup(
    model: torch.nn.Module,
    dims: Sequence[int] | None,
    fixed_z: Tensor | Sequence[float] | None,
    labels: Sequence[str] | None,
    value_range: tuple[float, float],
    step: float,
) -> tuple[list[int], np.ndarray, list[str]]:
    """Validate the slider arguments shared by both explorers -> (dims, z0 float64 (z_dim,), labels)."""
    z_dim = int(model.z_dim)
    if dims is None:
        dims = list(range(z_dim))
    else:
        dims = [check_positive_int(d, "each of dims", minimum=0) for d in dims]
    if not dims:
        raise ValueError("dims is empty: give at least one latent dimension to slide")
    if len(set(dims)) != len(dims) or not all(0 <= d < z_dim for d in dims):
        raise ValueError(f"dims must be distinct latent dimensions in [0, {z_dim}), got {dims}")
    if len(value_range) != 2 or not all(_is_real(v) for v in value_range):
        raise ValueError(f"value_range must be two numbers (low, high), got {value_range!r}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be finite with low < high, got {value_range}")
    if not _is_real(step) or not (step > 0 and math.isfinite(step)):
        raise ValueError(f"step must be a number > 0, got {step!r}")
    if fixed_z is None:
        z0 = np.zeros(z_dim)
    else:
        z0 = np.asarray(torch.as_tensor(fixed_z, dtype=torch.float64).detach().cpu()).reshape(-1)
        if z0.shape != (z_dim,) or not np.isfinite(z0).all():
            raise ValueError(f"fixed_z must be {z_dim} finite numbers, got shape {z0.shape}")
    for d in dims:
        if not lo <= z0[d] <= hi:
            raise ValueError(
                f"fixed_z[{d}]={z0[d]:.3g} is outside value_range {value_range}; widen the range"
            )
    if labels is None:
        labels = [f"z[{d}]" for d in dims]
    labels = [str(s) for s in labels]
    if len(labels) != len(dims):
        raise ValueError(f"labels has {len(labels)} entries for {len(dims)} sliders")
    return dims, z0, labels


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _png_gray(pixels: np.ndarray) -> bytes:
    """Encode an (H, W) uint8 grey image as PNG bytes (stdlib zlib; no filter)."""
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(raw, 6)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def to_uint8(pixels: Tensor | np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 grey levels round(255 v), as drawn by both explorers."""
    return np.clip(np.rint(np.asarray(pixels, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# live explorer (ipywidgets)
# ----------------------------------------------------------------------------------------------
class LiveExplorer:
    """ipywidgets sliders + an ``Image`` showing ``model.mean_image(z)``; see :func:`live_explorer`.

    Attributes:
        sliders: one ``FloatSlider`` per explored dimension (``dims`` order).
        image: the ``ipywidgets.Image`` (PNG, nearest-neighbour upscaled by ``scale``).
        widget: the container to display (displaying this object displays it).
        pixels: (x_dim,) float tensor of the last decoded image, in [0, 1].
        last_update_ms: wall time of the last decode + PNG encode, in milliseconds.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        dims: Sequence[int] | None = None,
        fixed_z: Tensor | Sequence[float] | None = None,
        labels: Sequence[str] | None = None,
        value_range: tuple[float, float] = (-3.0, 3.0),
        step: float = 0.05,
        scale: int = 6,
    ) -> None:
        import ipywidgets as widgets  # imported here: the static explorer does not need it

        self.model = model
        self.side = _side(int(model.x_dim))
        self.scale = int(scale)
        self.dims, z0, names = _slider_setup(model, dims, fixed_z, labels, value_range, step)
        self._z0 = torch.tensor(z0, dtype=torch.float32)
        self.sliders = [
            widgets.FloatSlider(value=float(z0[d]), min=value_range[0], max=value_range[1], step=step,
                                description=name, continuous_update=True, readout_format=".2f")
            for d, name in zip(self.dims, names, strict=True)
        ]
        px = self.side * self.scale
        self.image = widgets.Image(format="png", width=px, height=px)
        self.widget = widgets.HBox([self.image, widgets.VBox(self.sliders)])
        self.pixels: Tensor = torch.empty(0)
        self.last_update_ms = float("nan")
        for s in self.sliders:
            s.observe(self._on_change, names="value")
        self.update()

    @property
    def z(self) -> Tensor:
        """The current latent code: fixed_z with the sliders' values in ``dims``; (z_dim,) float32."""
        z = self._z0.clone()
        for d, s in zip(self.dims, self.sliders, strict=True):
            z[d] = float(s.value)
        return z

    def update(self) -> Tensor:
        """Decode the current z, redraw the image; return the (x_dim,) pixels in [0, 1]."""
        t0 = time.perf_counter()
        with torch.no_grad():
            self.pixels = self.model.mean_image(self.z.to(_device(self.model))).float().cpu()
        img = to_uint8(self.pixels.numpy()).reshape(self.side, self.side)
        img = np.repeat(np.repeat(img, self.scale, axis=0), self.scale, axis=1)
        self.image.value = _png_gray(img)
        self.last_update_ms = (time.perf_counter() - t0) * 1e3
        return self.pixels

    def _on_change(self, change: dict) -> None:
        self.update()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def live_explorer(
    model: torch.nn.Module,
    dims: Sequence[int] | None = None,
    fixed_z: Tensor | Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    value_range: tuple[float, float] = (-3.0, 3.0),
    step: float = 0.05,
    scale: int = 6,
) -> LiveExplorer:
    """Sliders for latent dimensions ``dims`` (default: all) that redraw ``model.mean_image(z)`` live.

    Args:
        model: a VAE (``z_dim``, ``x_dim`` square, ``mean_image``).
        dims: latent dimensions with a slider; the others stay at ``fixed_z`` (default zeros).
        fixed_z: (z_dim,) base code; labels: slider names (default ``z[d]``).
        value_range, step: slider range and step; scale: nearest-neighbour upscale of the 28×28 image.

    Returns a :class:`LiveExplorer`; display it (last expression of a cell). It needs no frontend to be
    built: ``explorer.sliders[0].value = 1.0`` redraws, and ``explorer.update()`` returns the pixels.

    Used by: chapter 5.
    """
    return LiveExplorer(model, dims, fixed_z, labels, value_range, step, scale)


# ----------------------------------------------------------------------------------------------
# export of the decoder
# ----------------------------------------------------------------------------------------------
def _b64(t: Tensor, dtype: str) -> str:
    arr = np.ascontiguousarray(t.detach().cpu().double().numpy().astype(_NP_DTYPES[dtype]))
    return base64.b64encode(arr.tobytes()).decode("ascii")


def _unb64(s: str, dtype: str, shape: Sequence[int]) -> np.ndarray:
    arr = np.frombuffer(base64.b64decode(s), dtype=_NP_DTYPES[dtype])
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"decoded {arr.size} numbers, expected shape {tuple(shape)}")
    return arr.astype(np.float32).reshape(tuple(shape))


def load_decoder(payload: dict) -> dict[str, Tensor]:
    """Decode an :func:`export_decoder` payload back to float32 tensors.

    Returns ``{"decoder_hidden.weight": (h, z), "decoder_hidden.bias": (h,), "to_x.weight": (x, h),
    "to_x.bias": (x,)}`` (the state-dict names of :class:`vae_core.models.VAE`).

    Used by: tests; chapter 5 (to show what the page embeds).
    """
    if payload.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} payload (format={payload.get('format')!r})")
    z, h, x = payload["z_dim"], payload["h_dim"], payload["x_dim"]
    wd, bd = payload["dtype"], payload["bias_dtype"]
    return {
        "decoder_hidden.weight": torch.from_numpy(_unb64(payload["W1"], wd, (h, z))),
        "decoder_hidden.bias": torch.from_numpy(_unb64(payload["b1"], bd, (h,))),
        "to_x.weight": torch.from_numpy(_unb64(payload["W2"], wd, (x, h))),
        "to_x.bias": torch.from_numpy(_unb64(payload["b2"], bd, (x,))),
    }


def check_weight_payload(payload: Any, fmt: str, string_keys: Sequence[str],
                         loader: Any | None) -> None:
    """The checks every embedded-weights payload gets before it is written into a page: it is a dict
    of format ``fmt`` with positive integer ``x_dim``, ``h_dim``, ``z_dim``; the ``string_keys`` are
    base64 strings; and ``loader(payload)`` (if given) decodes them into finite tensors. Raises
    ValueError naming the field.

    Used by: :func:`check_payload`, :func:`vae_core.latent_map.check_encoder_payload`.
    """
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"not a {fmt} payload")
    for key in ("x_dim", "h_dim", "z_dim"):
        value = payload.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 16:
            raise ValueError(f"payload {key} must be a positive integer, got {value!r}")
    for key in string_keys:
        if not isinstance(payload.get(key), str):
            raise ValueError(f"payload {key} must be a base64 string")
    if loader is None:
        return
    try:
        weights = loader(payload)
    except (ValueError, TypeError, binascii.Error) as e:
        raise ValueError(f"payload weights do not decode: {e}") from None
    for name, w in weights.items():
        if not bool(torch.isfinite(w).all()):
            raise ValueError(f"payload {name} holds non-finite values")


def check_payload(payload: Any, model: torch.nn.Module | None = None) -> dict:
    """Validate an :func:`export_decoder` payload before it is written into a page: its format, its
    sizes (and, given ``model``, that they are the model's decoder's), dtypes from the fixed set, and
    every weight decodes to the right number of finite values. Returns the payload; raises
    ValueError naming the field.

    Used by: :func:`static_explorer_html` (a payload passed in), tests.
    """
    check_weight_payload(payload, FORMAT, (), None)  # format and sizes first
    if payload.get("dtype") not in _NP_DTYPES or payload.get("bias_dtype") not in _NP_DTYPES:
        raise ValueError(f"payload dtype and bias_dtype must be one of {sorted(_NP_DTYPES)}, got "
                         f"{payload.get('dtype')!r} and {payload.get('bias_dtype')!r}")
    check_weight_payload(payload, FORMAT, ("W1", "b1", "W2", "b2"), load_decoder)
    if model is not None:
        hidden, to_x = _decoder_layers(model)
        mine = (int(model.x_dim), int(hidden.out_features), int(model.z_dim))
        theirs = (payload["x_dim"], payload["h_dim"], payload["z_dim"])
        if mine != theirs:
            raise ValueError(f"payload was exported from a {theirs[2]}-{theirs[1]}-{theirs[0]} decoder, "
                             f"but the model's is {mine[2]}-{mine[1]}-{mine[0]}")
    return payload


def decoder_forward(payload: dict, z: Tensor | np.ndarray) -> np.ndarray:
    """The forward pass the page runs, in NumPy float64: z (N, z_dim) -> (N, x_dim) pixels in [0, 1].

    ``h = relu(W1 z + b1); x = sigmoid(W2 h + b2)`` with the (possibly float16) exported weights.

    Used by: :func:`export_decoder` (error measurement); tests.
    """
    w = {k: v.double().numpy() for k, v in load_decoder(payload).items()}
    zz = np.atleast_2d(np.asarray(torch.as_tensor(z, dtype=torch.float64).cpu()))
    hidden = np.maximum(zz @ w["decoder_hidden.weight"].T + w["decoder_hidden.bias"], 0.0)
    logits = hidden @ w["to_x.weight"].T + w["to_x.bias"]
    with np.errstate(over="ignore"):  # exp(-logit) = inf gives 0, exactly as in JavaScript
        return 1.0 / (1.0 + np.exp(-logits))


def probe_codes(z_dim: int, n: int = 2048, spread: float = 2.0, seed: int = 0) -> Tensor:
    """Fixed probe codes for the error measurement: (n, z_dim) ~ N(0, spread² I), seeded (no global RNG).

    spread = 2 covers the ±3 slider range well beyond where the prior puts its mass.
    """
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, z_dim, generator=g) * spread


def export_decoder(
    model: torch.nn.Module, dtype: str = "auto", tol: float = 0.5 / 255, probe_z: Tensor | None = None
) -> dict:
    """The decoder's weights as a compact, JSON-serialisable dict for the JavaScript forward pass.

    Args:
        model: a :class:`vae_core.models.VAE` (layers ``decoder_hidden``, ``to_x``).
        dtype: "float16", "float32", or "auto": float16 when its measured pixel error is < ``tol``.
        tol: pixel tolerance for "auto" (default 0.5/255: with 8-bit rounding the canvas stays within 1/255).
        probe_z: (n, z_dim) codes on which the error is measured (default :func:`probe_codes`).

    Returns:
        ``{"format", "x_dim", "h_dim", "z_dim", "likelihood", "dtype" (of W1, W2), "bias_dtype"
        ("float32"), "W1" (h, z), "b1" (h,), "W2" (x, h), "b2" (x,)`` — little-endian base64, row-major —
        ``"max_abs_error"}``: the largest |page pixel − model.mean_image(z)| over the probe codes.

    Raises ValueError if even float32 misses ``tol`` (the model's ``mean_image`` is not this decoder).

    Used by: :func:`static_explorer_html`; chapter 5.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    hidden, to_x = _decoder_layers(model)
    for layer in (hidden, to_x):
        if not all(bool(torch.isfinite(p).all()) for p in layer.parameters()):
            raise ValueError("the decoder has non-finite weights (NaN or inf): nothing to export")
    probe = probe_codes(model.z_dim) if probe_z is None else torch.as_tensor(probe_z, dtype=torch.float32)
    if probe.dim() != 2 or probe.shape[1] != model.z_dim:
        raise ValueError(f"probe_z must be (n, {model.z_dim}), got {tuple(probe.shape)}")
    with torch.no_grad():
        ref = model.mean_image(probe.to(_device(model))).double().cpu().numpy()

    def build(wd: str) -> dict:
        payload = {
            "format": FORMAT, "x_dim": int(model.x_dim), "h_dim": int(hidden.out_features),
            "z_dim": int(model.z_dim), "likelihood": str(getattr(model, "likelihood", "bernoulli")),
            "dtype": wd, "bias_dtype": "float32",
            "W1": _b64(hidden.weight, wd), "b1": _b64(hidden.bias, "float32"),
            "W2": _b64(to_x.weight, wd), "b2": _b64(to_x.bias, "float32"),
        }
        payload["max_abs_error"] = float(np.abs(decoder_forward(payload, probe) - ref).max())
        return payload

    if dtype == "auto":
        half = build("float16")
        if half["max_abs_error"] < tol:
            return half
        dtype = "float32"
    payload = build(dtype)
    if dtype == "float32" and payload["max_abs_error"] >= max(tol, 1e-4):
        raise ValueError(
            f"the exported decoder differs from model.mean_image by {payload['max_abs_error']:.3g} even in "
            "float32: is mean_image sigmoid(to_x(relu(decoder_hidden(z))))?"
        )
    return payload


# ----------------------------------------------------------------------------------------------
# static explorer (HTML + plain JavaScript)
# ----------------------------------------------------------------------------------------------
# The script finds its own container (document.currentScript's parent, else the id), keeps every name
# inside a function scope, and exposes for tests: root.vaeExplorer.{pixels(), z(), sliders(), set(i, v),
# redraw()} and the attributes data-last-redraw-ms / data-redraws / data-ready on the container.
_JS = (page_js.head_js("P") + page_js.root_js("vae-explorer", "P", "vaeExplorer") + page_js.BYTES_JS
       + page_js.HALF_JS + page_js.floats_js("vae-explorer")
       + r"""var Z = P.z_dim, H = P.h_dim, X = P.x_dim, side = P.side, scale = P.scale;
var W1 = floats(P.W1, P.dtype, H * Z), b1 = floats(P.b1, P.bias_dtype, H);
var W2 = floats(P.W2, P.dtype, X * H), b2 = floats(P.b2, P.bias_dtype, X);
var z = new Float64Array(P.z0), h = new Float64Array(H), px = new Float64Array(X);
var canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
var img = ctx.createImageData(side * scale, side * scale), data = img.data;
var inputs = root.querySelectorAll("input[type=range]"), outs = root.querySelectorAll("output");
var redraws = 0;
function forward() {
  var i, j, k, s, o;
  for (j = 0; j < H; j++) {
    s = b1[j]; o = j * Z;
    for (k = 0; k < Z; k++) { s += W1[o + k] * z[k]; }
    h[j] = s > 0 ? s : 0;
  }
  for (i = 0; i < X; i++) {
    s = b2[i]; o = i * H;
    for (j = 0; j < H; j++) { s += W2[o + j] * h[j]; }
    px[i] = 1 / (1 + Math.exp(-s));
  }
}
function draw() {
  var W = side * scale, r, c, dy, dx, v, p;
  for (r = 0; r < side; r++) {
    for (c = 0; c < side; c++) {
      v = Math.round(px[r * side + c] * 255);
      for (dy = 0; dy < scale; dy++) {
        p = ((r * scale + dy) * W + c * scale) * 4;
        for (dx = 0; dx < scale; dx++, p += 4) {
          data[p] = v; data[p + 1] = v; data[p + 2] = v; data[p + 3] = 255;
        }
      }
    }
  }
  ctx.putImageData(img, 0, 0);
}
function redraw() {
  var t0 = performance.now();
  forward(); draw();
  redraws += 1;
  root.setAttribute("data-last-redraw-ms", (performance.now() - t0).toFixed(3));
  root.setAttribute("data-redraws", String(redraws));
}
function show(i) { outs[i].textContent = z[P.dims[i]].toFixed(2); }
function onInput(i) {
  return function () { z[P.dims[i]] = parseFloat(inputs[i].value); show(i); redraw(); };
}
for (var i = 0; i < inputs.length; i++) { inputs[i].addEventListener("input", onInput(i)); show(i); }
root.vaeExplorer = {
  pixels: function () { return Array.prototype.slice.call(px); },
  z: function () { return Array.prototype.slice.call(z); },
  sliders: function () {
    return Array.prototype.map.call(inputs, function (el) { return parseFloat(el.value); });
  },
  set: function (i, v) {
    inputs[i].value = String(v);
    inputs[i].dispatchEvent(new Event("input", {bubbles: true}));
  },
  redraw: redraw
};
redraw();
root.setAttribute("data-ready", "1");
})();""")


def static_explorer_html(
    model: torch.nn.Module,
    dims: Sequence[int] | None = None,
    fixed_z: Tensor | Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    element_id: str | None = None,
    scale: int = 6,
    value_range: tuple[float, float] = (-3.0, 3.0),
    step: float = 0.05,
    dtype: str = "auto",
    title: str | None = None,
    payload: dict | None = None,
) -> str:
    """A self-contained HTML snippet: canvas + range sliders + inline script decoding with plain JS.

    Args:
        model: a VAE; its decoder is exported with :func:`export_decoder` (``dtype``) unless ``payload``
            (an earlier export of the same model) is given.
        dims: latent dimensions with a slider (default: all); others stay at ``fixed_z`` (default zeros).
        labels: slider names (default ``z[d]``); title: a caption above the sliders.
        element_id: id of the container ``<div>``; default derived from the content (deterministic, so
            re-executed notebooks give identical output; give distinct ids to identical explorers).
        scale: nearest-neighbour upscale of the 28×28 image; value_range, step: slider range and step.

    The first image is decoded from ``fixed_z`` exactly; each slider ``input`` event sets z[dim] to the
    slider's value and redraws. Pixel grey level = round(255 · sigmoid(logit)), 0 black.
    Nothing external: no URL, no ``<script src>``, every JS name inside a function scope, the script
    finds its own container, so several explorers can share a page. For tests the container exposes
    ``el.vaeExplorer.pixels()`` (x_dim floats in [0, 1]), ``.z()``, ``.sliders()``, ``.set(i, value)``
    and the attributes ``data-last-redraw-ms`` (forward pass + draw, ``performance.now()``),
    ``data-redraws`` and ``data-ready``.

    Size: ≈ 1.33 × (bytes of the weights) — for 784-400-20, ≈ 0.86 MB in float16, ≈ 1.7 MB in float32.

    Used by: chapter 5 (``display(HTML(static_explorer_html(model, ...)))``).
    """
    side = _side(int(model.x_dim))
    scale = check_positive_int(scale, "scale")
    dims, z0, names = _slider_setup(model, dims, fixed_z, labels, value_range, step)
    if payload is None:
        probe = probe_codes(model.z_dim)
        box = torch.tensor(z0, dtype=torch.float32).expand(512, -1).clone()
        g = torch.Generator().manual_seed(1)
        lo, hi = float(value_range[0]), float(value_range[1])
        box[:, dims] = lo + (hi - lo) * torch.rand(512, len(dims), generator=g)
        payload = export_decoder(model, dtype=dtype, probe_z=torch.cat([probe, box]))
    else:
        check_payload(payload, model)
    keys = ("x_dim", "h_dim", "z_dim", "dtype", "bias_dtype", "W1", "b1", "W2", "b2")
    js_payload = {k: payload[k] for k in keys}
    js_payload.update(side=side, scale=scale, dims=dims, z0=[float(v) for v in z0])
    if element_id is None:
        element_id = page_js.content_id("vae-explorer", js_payload, names, title)
    js_payload["id"] = str(element_id)
    script = page_js.embed(_JS, js_payload)  # "<" escaped: no "</script>" from a label or id

    px = side * scale
    rows = []
    for d, name in zip(dims, names, strict=True):
        val = float(z0[d])
        rows.append(
            '<label style="display:flex;align-items:center;gap:0.5em;margin:2px 0">'
            f'<span style="min-width:4em;font-family:monospace">{html.escape(name)}</span>'
            f'<input type="range" min="{float(value_range[0])}" max="{float(value_range[1])}" '
            f'step="{float(step)}" '
            f'value="{val:.6g}" '
            f'data-dim="{d}" aria-label="{html.escape(name, quote=True)}" style="flex:1;min-width:8em">'
            f'<output style="min-width:3.5em;font-family:monospace">{val:.2f}</output></label>'
        )
    caption = f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>' if title else ""
    return (
        f'<div id="{html.escape(str(element_id), quote=True)}" class="vae-explorer" '
        f'data-z-dim="{int(model.z_dim)}" data-dims="{",".join(map(str, dims))}" '
        f'data-dtype="{html.escape(payload["dtype"], quote=True)}" '
        'style="display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start;margin:0.5em 0">'
        f'<canvas width="{px}" height="{px}" style="width:{px}px;height:{px}px;background:#000;'
        'border:1px solid #888" role="img" aria-label="decoded image"></canvas>'
        f'<div style="flex:1;min-width:14em;max-width:32em">{caption}{"".join(rows)}'
        '<noscript>The sliders need JavaScript.</noscript></div>'
        f"<script>{script}</script></div>"
    )
