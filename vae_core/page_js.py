"""The JavaScript every in-page figure shares, written once: how a snippet finds its own container,
how it decodes base64 weights and images, how its data is embedded, and its deterministic id.

An in-page figure is one self-contained ``<div>`` holding its controls, its canvases, a
``<noscript>`` message and one inline ``<script>`` built as::

    (function () {
    "use strict";
    var P = {...the payload, JSON...};
    <root_js: find the container, or stop if it is already running>
    <bytes / half / floats: decode the embedded base64>
    ...the figure's own code...
    })();

The pieces below are the exact text the figures of chapters 3, 5 and 7 already carry in their stored
outputs: :func:`floats_js` has two variants, the float16/float32 decoder of the slider explorer
(``int8=False``) and the one of the latent map that also reads int8 rows with a per-row scale
(``int8=True``), so re-executing those chapters gives byte-identical pages.

Used by: :mod:`vae_core.explorer`, :mod:`vae_core.latent_map`, :mod:`vae_core.beta_explorer`,
:mod:`vae_core.estimator_explorer` (chapters 3, 5 and 7).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

PLACEHOLDER = "__PAYLOAD__"
"""Where :func:`embed` writes the payload into a script template."""
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
_JS_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_CSS_CLASS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

BYTES_JS = r"""function bytes(b64) {
  var s = atob(b64), u = new Uint8Array(s.length);
  for (var i = 0; i < s.length; i++) { u[i] = s.charCodeAt(i); }
  return u;
}
"""
"""``bytes(b64)``: base64 -> Uint8Array."""

HALF_JS = r"""function half(h) {
  var sgn = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
  if (e === 0) { return sgn * f * 5.960464477539063e-8; }
  if (e === 31) { return f ? NaN : sgn * Infinity; }
  return sgn * (1 + f / 1024) * Math.pow(2, e - 15);
}
"""
"""``half(h)``: the IEEE float16 with bits ``h`` (0 to 65535), as a JavaScript number."""

_FLOATS_16_32 = r"""function floats(b64, dtype, n) {
  var u = bytes(b64), dv = new DataView(u.buffer), out = new Float32Array(n), i;
  var size = dtype === "float16" ? 2 : 4;
  if (u.length !== n * size) { throw new Error("__TAG__: weight size mismatch"); }
  if (size === 2) { for (i = 0; i < n; i++) { out[i] = half(dv.getUint16(2 * i, true)); } }
  else { for (i = 0; i < n; i++) { out[i] = dv.getFloat32(4 * i, true); } }
  return out;
}
"""

_FLOATS_INT8 = (
    "// little-endian base64 -> Float32Array of n numbers; int8 rows are scaled by `scale` (one per row)\n"
    r"""function floats(b64, dtype, n, scale) {
  var u = bytes(b64), dv = new DataView(u.buffer), out = new Float32Array(n), i;
  var size = {float16: 2, float32: 4, int8: 1}[dtype];
  if (u.length !== n * size) { throw new Error("__TAG__: weight size mismatch"); }
  for (i = 0; i < n; i++) {
    if (size === 2) { out[i] = half(dv.getUint16(2 * i, true)); }
    else if (size === 4) { out[i] = dv.getFloat32(4 * i, true); }
    else { out[i] = dv.getInt8(i) * scale[Math.floor(i * scale.length / n)]; }
  }
  return out;
}
""")


def _checked(value: str, pattern: re.Pattern, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{what} {value!r} is not allowed here")
    return value


def head_js(payload_var: str = "P") -> str:
    """The opening of every figure's script: a function scope, strict mode, ``var <payload_var> =
    __PAYLOAD__;`` (filled by :func:`embed`)."""
    _checked(payload_var, _JS_NAME, "JavaScript name")
    return f'(function () {{\n"use strict";\nvar {payload_var} = {PLACEHOLDER};\n'


def root_js(css_class: str, payload_var: str, hook: str) -> str:
    """JavaScript that sets ``root`` to the figure's container and returns early if there is none or
    if the figure already runs there (``root[hook]`` set).

    The container is the script's parent when it has class ``css_class`` (so several copies of a
    figure can share a page), else the element whose id is ``<payload_var>.id``.
    """
    for value, pattern, what in [(css_class, _CSS_CLASS, "CSS class"), (payload_var, _JS_NAME, "name"),
                                 (hook, _JS_NAME, "name")]:
        _checked(value, pattern, what)
    return (
        "var cur = document.currentScript;\n"
        "var root = (cur && cur.parentNode && cur.parentNode.classList &&\n"
        f'            cur.parentNode.classList.contains("{css_class}")) ? cur.parentNode\n'
        f"           : document.getElementById({payload_var}.id);\n"
        f"if (!root || root.{hook}) {{ return; }}\n"
    )


def floats_js(tag: str, int8: bool = False) -> str:
    """``floats(b64, dtype, n[, scale])``: little-endian base64 -> Float32Array of ``n`` numbers,
    float16 or float32 (and, with ``int8=True``, int8 rows times one float32 ``scale`` per row); a
    wrong size throws an Error prefixed with ``tag``. Needs :data:`BYTES_JS` and :data:`HALF_JS`."""
    _checked(tag, _CSS_CLASS, "tag")
    return (_FLOATS_INT8 if int8 else _FLOATS_16_32).replace("__TAG__", tag)


def embed(template: str, payload: Any) -> str:
    """The script ``template`` with its :data:`PLACEHOLDER` replaced by ``payload`` as compact JSON.

    "<" is written as ``\\u003c`` (the same string to JSON), so no label or id in the payload can
    close the ``<script>`` element early.
    """
    if template.count(PLACEHOLDER) != 1:
        raise ValueError(f"the template must hold {PLACEHOLDER} exactly once")
    return template.replace(PLACEHOLDER, json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c"))


def content_id(prefix: str, *parts: Any) -> str:
    """A deterministic element id, ``<prefix>-<12 hex digits>`` of the SHA-1 of ``parts`` as sorted
    JSON: re-executing a notebook gives the same id, and different content a different one."""
    digest = hashlib.sha1(json.dumps(list(parts), sort_keys=True).encode()).hexdigest()
    return check_id(f"{prefix}-{digest[:12]}", "prefix")


def check_id(value: str, name: str = "element_id") -> str:
    """``value`` if it is a safe element id (a letter, then up to 99 letters, digits, '-' or '_');
    else ValueError naming ``name``."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(f"{name} must be a letter then letters, digits, '-' or '_', got {value!r}")
    return value


__all__ = ["BYTES_JS", "HALF_JS", "PLACEHOLDER", "check_id", "content_id", "embed", "floats_js", "head_js",
           "root_js"]
