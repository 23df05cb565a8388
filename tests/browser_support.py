"""Shared support for browser tests: a local HTTP server and headless Debian Chromium via playwright.

Chromium comes from Debian (``apt-get install chromium``), never from ``playwright install``. The pages
are served on 127.0.0.1 only; :class:`PageWatch` records every request to another host and every
console error, so a test can assert the page is self-contained.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[1]
HTML_DIR = Path(os.environ.get("VAE_BOOK_HTML", ROOT / "_build" / "html"))
"""The built book the page tests read (``VAE_BOOK_HTML`` names one built elsewhere)."""
LOCAL_HOSTS = {"127.0.0.1"}
LOCAL_SCHEMES = {"data", "blob", "about"}


def require_chromium() -> None:
    """Skip the calling test, with the fix, when Debian's chromium is not installed."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium: apt-get install -y chromium")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 on a free port; yields the base URL (no trailing slash)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def browser() -> Iterator[object]:
    """A headless Debian Chromium (playwright Browser), closed afterwards."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class PageWatch:
    """Records, for one playwright page, requests leaving 127.0.0.1 and console / page errors."""

    def __init__(self, page: object) -> None:
        self.external: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._on_request)
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _on_request(self, request: object) -> None:
        url = urlparse(request.url)
        if url.scheme in LOCAL_SCHEMES:
            return
        if url.hostname not in LOCAL_HOSTS:
            self.external.append(request.url)

    def assert_clean(self) -> None:
        assert self.external == [], f"requests to hosts other than 127.0.0.1: {self.external}"
        assert self.errors == [], f"console errors: {self.errors}"


def built_figure(page: str, figure_class: str) -> tuple[Path, str, str]:
    """(path, HTML, element id) of the one in-page figure of class ``figure_class`` in the built
    chapter ``page`` (relative to :data:`HTML_DIR`); skips when the book is not built, or was built
    before the chapter had the figure."""
    path = HTML_DIR / page
    if not path.exists():
        pytest.skip(f"the book is not built ({path} is missing): run `make book` first")
    text = path.read_text(encoding="utf-8")
    ids = re.findall(rf'<div id="({figure_class}-[0-9a-f]+)" class="{figure_class}"', text)
    if not ids:
        pytest.skip(f"{page} was built before it had its {figure_class}: run `make book`")
    assert len(ids) == 1, ids
    return path, text, ids[0]
