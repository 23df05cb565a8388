"""Tests for vae_core.kl_widget: reference values against torch.distributions, the snippet's safety.

The JavaScript itself is driven in a browser by tests/test_ch01_widget.py.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vae_core import kl_widget


def test_reference_values_match_torch_distributions():
    def normal(mu, sigma):
        return Normal(torch.tensor(mu, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64))

    for ref in kl_widget.reference_values():
        p1, p2 = normal(ref["mu1"], ref["sigma1"]), normal(ref["mu2"], ref["sigma2"])
        assert ref["kl12"] == pytest.approx(kl_divergence(p1, p2).item(), rel=1e-12, abs=1e-14)
        assert ref["kl21"] == pytest.approx(kl_divergence(p2, p1).item(), rel=1e-12, abs=1e-14)
    same = kl_widget.reference_values([(0.5, 1.0, 0.5, 1.0)])[0]
    assert same["kl12"] == same["kl21"] == 0.0


def test_the_snippet_is_self_contained_and_embeds_its_reference():
    html = kl_widget.two_gaussians_html()
    assert html.count('id="klw"') == 1 and "<script" in html
    assert "http" not in html and "src=" not in html  # nothing loaded from anywhere
    embedded = json.loads(re.search(r"data-reference='([^']*)'", html).group(1))
    assert embedded == kl_widget.reference_values()
    assert "__REFERENCE__" not in html


@pytest.mark.parametrize("point", [(0, 0.0, 1, 1), (0, 1, 1, -1), (float("nan"), 1, 0, 1), (0, 1, 0)])
def test_bad_points_are_refused(point):
    with pytest.raises(ValueError, match="point|deviations"):
        kl_widget.reference_values([point])
