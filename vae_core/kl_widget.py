"""Chapter 1's two-Gaussians KL widget for the static page: sliders, a plot and both KL divergences,
in plain JavaScript (no kernel, no library, nothing loaded from anywhere).

The page cannot call Python, so the JavaScript computes the closed form
KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) = log(σ₂/σ₁) + (σ₁² + (μ₁ − μ₂)²) / (2σ₂²) − ½ itself. It does not trust
itself: :func:`two_gaussians_html` embeds reference values computed here with
:func:`vae_core.distributions.gaussian_kl`, and when the page loads the script recomputes them and
records the comparison in the widget's ``data-selfcheck`` attribute ("ok" or "mismatch", with
``data-selfcheck-maxdiff``). A browser test drives the widget and compares what it shows with
``gaussian_kl`` at other slider positions.

Used by: chapter 1 (``HTML(kl_widget.two_gaussians_html())``), tests/test_ch01_widget.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from .distributions import gaussian_kl

TEMPLATE = Path(__file__).with_name("assets") / "kl_widget.html"
"""The widget's HTML, CSS and JavaScript, with ``__REFERENCE__`` where the reference values go."""
REFERENCE_POINTS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 1.0, 1.0, 1.5), (-2.0, 0.3, 1.5, 2.5), (3.0, 2.0, -1.0, 0.5), (0.5, 1.0, 0.5, 1.0))
"""(μ₁, σ₁, μ₂, σ₂) at which the page checks its JavaScript against Python."""


def reference_values(points: Sequence[Sequence[float]] = REFERENCE_POINTS) -> list[dict[str, float]]:
    """Both KL divergences, in nats, at each (μ₁, σ₁, μ₂, σ₂) (σ > 0), from ``gaussian_kl`` in float64:
    ``[{"mu1", "sigma1", "mu2", "sigma2", "kl12", "kl21"}, ...]`` (kl12 = KL(p₁‖p₂))."""
    out = []
    for point in points:
        if len(point) != 4:
            raise ValueError(f"each point is (mu1, sigma1, mu2, sigma2), got {point!r}")
        m1, s1, m2, s2 = (float(v) for v in point)
        if not all(math.isfinite(v) for v in (m1, s1, m2, s2)) or s1 <= 0 or s2 <= 0:
            raise ValueError(f"means must be finite and standard deviations > 0, got {point!r}")
        a = (torch.tensor([m1], dtype=torch.float64), torch.tensor([2 * math.log(s1)], dtype=torch.float64))
        b = (torch.tensor([m2], dtype=torch.float64), torch.tensor([2 * math.log(s2)], dtype=torch.float64))
        out.append({"mu1": m1, "sigma1": s1, "mu2": m2, "sigma2": s2,
                    "kl12": gaussian_kl(*a, *b).item(), "kl21": gaussian_kl(*b, *a).item()})
    return out


def two_gaussians_html(points: Sequence[Sequence[float]] = REFERENCE_POINTS) -> str:
    """The widget as one self-contained HTML snippet (a ``<div id="klw">`` with its style and script),
    with the reference values at ``points`` embedded for the page's self-check."""
    reference = json.dumps(reference_values(points))
    if "'" in reference:  # the attribute is single-quoted; numbers never contain one
        raise ValueError("reference values would break out of their HTML attribute")
    return TEMPLATE.read_text(encoding="utf-8").replace("__REFERENCE__", reference)



__all__ = ["REFERENCE_POINTS", "reference_values", "two_gaussians_html"]
