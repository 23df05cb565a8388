"""Sphinx extension: keep every page of the book self-contained.

- Drops repeated ``<script>`` entries (sphinx-thebe registers its inline config once per read phase,
  which declares ``const THEBE_JS_URL`` twice and throws in the browser).
- Warns — an error under ``-W`` — when a page would load a script or stylesheet from another host,
  so a CDN dependency cannot slip into the build unnoticed.
- Turns on the repository, issues and launch (Binder, Colab) buttons only when the environment
  variable ``BOOK_REPOSITORY_URL`` names the book's repository (``make book REPO_URL=...``); without
  it the pages carry no link to a repository that may not exist.
"""

from __future__ import annotations

import os
import re

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _is_remote(name: object) -> bool:
    return isinstance(name, str) and name.startswith(("http://", "https://", "//"))


def _check_page(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: object) -> None:
    scripts = context.get("script_files")
    if scripts is not None:
        seen: set[tuple] = set()
        unique = []
        for js in scripts:
            # An inline script may be registered with filename None once and "" once: same script.
            name = getattr(js, "filename", js) or ""
            key = (str(name), tuple(sorted(getattr(js, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                unique.append(js)
        scripts[:] = unique
    for asset in [*(scripts or []), *context.get("css_files", [])]:
        name = getattr(asset, "filename", asset)
        if _is_remote(name):
            logger.warning("page %s would load %s from another host; serve it from _vendor/ instead",
                           pagename, name)


REPOSITORY_ENV = "BOOK_REPOSITORY_URL"
_REPO_URL = re.compile(r"https://[A-Za-z0-9.-]+/[\w.-]+/[\w.-]+/?")


def _repository_buttons(app: Sphinx, config: Config) -> None:
    url = os.environ.get(REPOSITORY_ENV, "").strip()
    if not url:
        return
    if not _REPO_URL.fullmatch(url):
        raise ValueError(f"{REPOSITORY_ENV}={url!r} is not a repository URL like https://host/owner/name")
    options = dict(config.html_theme_options or {})
    options.update(repository_url=url.rstrip("/"), use_repository_button=True, use_issues_button=True)
    launch = dict(options.get("launch_buttons") or {})
    launch.update(binderhub_url="https://mybinder.org", colab_url="https://colab.research.google.com")
    options["launch_buttons"] = launch
    config.html_theme_options = options


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _repository_buttons)
    # Last (priority 990), after the handlers of other extensions that add scripts to the page.
    app.connect("html-page-context", _check_page, priority=990)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
