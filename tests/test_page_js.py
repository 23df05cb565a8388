"""Tests of vae_core.page_js, the JavaScript the in-page figures share.

The shared pieces must be exactly the text chapter 5's stored outputs carry (so re-executing the chapter
gives the same page): every figure script stored in notebooks/05_latent_space.ipynb is checked to be
assembled from them. Independent decoding of base64 is checked in the figures' own browser tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vae_core import explorer, latent_map, page_js

ROOT = Path(__file__).resolve().parents[1]


def _stored_scripts(notebook: str) -> list[str]:
    nb = json.loads((ROOT / "notebooks" / notebook).read_text(encoding="utf-8"))
    out = []
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html")
            if html:
                out += re.findall(r"<script>(.*?)</script>", "".join(html), flags=re.S)
    return out


def test_the_figure_scripts_are_assembled_from_the_shared_pieces() -> None:
    ex = explorer._JS
    assert ex.startswith(page_js.head_js("P") + page_js.root_js("vae-explorer", "P", "vaeExplorer")
                         + page_js.BYTES_JS + page_js.HALF_JS + page_js.floats_js("vae-explorer"))
    lm = latent_map._JS
    assert lm.startswith(page_js.head_js("M") + page_js.root_js("vae-latent-map", "M", "vaeMap"))
    assert page_js.BYTES_JS + page_js.HALF_JS + page_js.floats_js("vae-latent-map", int8=True) in lm
    for js in (ex, lm):  # each piece once: nothing is duplicated any more
        assert js.count("function bytes(") == js.count("function half(") == js.count("function floats(") == 1


def test_chapter_5_stored_pages_are_what_the_pieces_give() -> None:
    scripts = _stored_scripts("05_latent_space.ipynb")
    kinds = {"vae-explorer": 0, "vae-latent-map": 0}
    for script in scripts:
        tag = "vae-latent-map" if 'contains("vae-latent-map")' in script else "vae-explorer"
        kinds[tag] += 1
        template = explorer._JS if tag == "vae-explorer" else latent_map._JS
        before, after = template.split(page_js.PLACEHOLDER)
        assert script.startswith(before) and script.endswith(after), f"a stored {tag} script differs"
    assert kinds == {"vae-explorer": 2, "vae-latent-map": 1}


def test_embed_escapes_and_refuses_bad_templates() -> None:
    out = page_js.embed("var P = __PAYLOAD__;", {"label": "</script><b>"})
    assert "</script>" not in out and json.loads(out[8:-1]) == {"label": "</script><b>"}
    with pytest.raises(ValueError, match="exactly once"):
        page_js.embed("no placeholder", {})
    with pytest.raises(ValueError, match="exactly once"):
        page_js.embed("__PAYLOAD__ __PAYLOAD__", {})


def test_ids_are_deterministic_and_checked() -> None:
    a = page_js.content_id("vae-x", {"a": 1}, "t")
    assert a == page_js.content_id("vae-x", {"a": 1}, "t") != page_js.content_id("vae-x", {"a": 2}, "t")
    assert re.fullmatch(r"vae-x-[0-9a-f]{12}", a)
    for bad in ['x" onload="1', "1abc", "", None]:
        with pytest.raises(ValueError, match="element_id"):
            page_js.check_id(bad)
    for bad in [("vae x", "P", "h"), ("c", "P;alert(1)", "h"), ("c", "P", "h.x")]:
        with pytest.raises(ValueError, match="not allowed"):
            page_js.root_js(*bad)
    with pytest.raises(ValueError, match="not allowed"):
        page_js.floats_js('x"); alert(1); ("')
