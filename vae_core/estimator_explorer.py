r"""Chapter 3's estimator explorer: both gradient estimators of ∇_{μ,σ} E_{x~N(μ,σ²)}[f(x)], sampled
in the page, beside their closed-form variances.

The reader picks f among the chapter's three test functions (with its knob k), μ, σ and the number
of samples n. The page draws n fresh standard-normal ε (its own seeded generator: mulberry32 uniforms and
Marsaglia's polar method), forms the single-sample rows of both estimators for x = μ + σε,

    score function  f(x) · (ε/σ, (ε² − 1)/σ)        pathwise  f'(x) · (1, ε),

draws their histograms and prints the measured mean and variance (± its standard error) beside the
true gradient and the **closed-form** single-sample variances of :func:`closed_form_variances`. No
library, no network, no kernel.

Closed forms. Every variance is E[row²] − g², g the true gradient, with x = μ + σε, ε ~ N(0, 1):

- f = (x − k)²: :func:`vae_core.estimators.quadratic_variances` (a = μ − k; e.g. pathwise ∂μ: 4σ²).
- f = e^{−kx²}: f² = e^{−2kx²} and f'² = 4k²x²e^{−2kx²}, so each E[row²] is E[p(ε) e^{−c x²}] with
  c = 2k and p a polynomial of degree ≤ 4. Completing the square,
  E[p(ε) e^{−c x²}] = D^{−1/2} e^{−cμ²/D} · E_{ε ~ N(m, 1/D)}[p(ε)], D = 1 + 2cσ², m = −2cμσ/D,
  and the moments of N(m, v) are 1, m, m² + v, m³ + 3mv, m⁴ + 6m²v + 3v².
- f = cos kx: f² = (1 + cos 2kx)/2 and f'² = k²(1 − cos 2kx)/2, and with ω = 2k, t = ωσ,
  E[ε^j e^{iωx}] = e^{iωμ} i^j He_j(t) e^{−t²/2} (He_j the probabilists' Hermite polynomials:
  derivatives of the characteristic function e^{−t²/2}), so E[p(ε) cos ωx] = e^{−t²/2}
  Re(e^{iωμ} Σ_j p_j i^j He_j(t)).

The page computes the same formulas in JavaScript and checks itself at :data:`REFERENCE_POINTS` against
the values computed here (``data-selfcheck``); the tests check these against quadrature
(:func:`vae_core.estimators.quadrature_variances`).

Used by: chapter 3 (``HTML(estimator_explorer_html())``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

from . import estimators as est
from . import page_js

FUNCTIONS = ("quadratic", "bump", "cosine")
"""The test functions: (x − k)², e^{−kx²}, cos kx."""
LABELS = {"quadratic": "(x − k)²", "bump": "e^(−k x²)", "cosine": "cos(k x)"}
K_VALUES = tuple(float(f"{v:.3g}") for v in np.logspace(-1, 1.5, 26))
"""The k slider's stops: 0.1 to 31.6, evenly spaced in log k (the range of the chapter's figure)."""
MU_RANGE, SIGMA_RANGE, STEP = (-3.0, 3.0), (0.2, 3.0), 0.1
N_EXPONENTS = (1, 2, 3, 4, 5)
"""Number of samples: 10^1 ... 10^5."""
REFERENCE_POINTS: tuple[tuple[str, float, float, float], ...] = (
    ("quadratic", 1.0, 1.0, 1.0), ("quadratic", -0.7, 2.3, 3.16),
    ("bump", 1.0, 1.0, 1.0), ("bump", 0.3, 0.5, 10.0), ("bump", -2.0, 2.7, 0.1),
    ("cosine", 1.0, 1.0, 1.0), ("cosine", 0.5, 1.5, 5.62), ("cosine", -1.3, 0.2, 31.6))
"""(f, μ, σ, k) at which the page checks its closed forms against Python."""

_MOMENTS = (1.0, 0.0, 1.0, 0.0, 3.0)          # E ε^j, j = 0..4
_EPS2 = (0.0, 0.0, 1.0)                      # ε²
_SCORE_SIGMA2 = (1.0, 0.0, -2.0, 0.0, 1.0)   # (ε² − 1)²


def _bump_expect(p: Sequence[float], c: float, mu: float, sigma: float) -> float:
    """E[p(ε) exp(−c x²)], x = μ + σε, p given by its coefficients (degree ≤ 4)."""
    d = 1.0 + 2.0 * c * sigma**2
    m, v = -2.0 * c * mu * sigma / d, 1.0 / d
    moments = (1.0, m, m * m + v, m**3 + 3 * m * v, m**4 + 6 * m * m * v + 3 * v * v)
    return math.exp(-c * mu**2 / d) / math.sqrt(d) * sum(a * b for a, b in zip(p, moments, strict=False))


def _cos_expect(p: Sequence[float], w: float, mu: float, sigma: float) -> float:
    """E[p(ε) cos(ω x)], x = μ + σε (degree ≤ 4), from E[ε^j e^{iωx}] = e^{iωμ} i^j He_j(t) e^{−t²/2}."""
    t = w * sigma
    hermite = (1.0, t, t * t - 1, t**3 - 3 * t, t**4 - 6 * t * t + 3)
    total = sum(c * (1j**j) * h for j, (c, h) in enumerate(zip(p, hermite, strict=False)))
    return float((complex(math.cos(w * mu), math.sin(w * mu)) * total).real * math.exp(-t * t / 2))


def _check(f: str, mu: float, sigma: float, k: float) -> tuple[float, float, float]:
    if f not in FUNCTIONS:
        raise ValueError(f"f must be one of {FUNCTIONS}, got {f!r}")
    values = []
    for name, v in (("mu", mu), ("sigma", sigma), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
        values.append(float(v))
    if values[1] <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if f == "bump" and values[2] < 0:
        raise ValueError(f"k must be >= 0 for exp(-k x^2), got {k!r}")
    return values[0], values[1], values[2]


def closed_form_variances(f: str, mu: float, sigma: float, k: float) -> est.EstimatorVariances:
    r"""True gradient and single-sample variances of both estimators, in closed form.

    Args:
        f: "quadratic" ((x − k)²), "bump" (e^{−kx²}, k ≥ 0) or "cosine" (cos kx).
        mu, sigma: the Gaussian N(μ, σ²), σ > 0; k: the function's knob.

    Returns :class:`vae_core.estimators.EstimatorVariances` (grad_mu, grad_sigma, score_mu,
    score_sigma, pathwise_mu, pathwise_sigma): the same fields as
    :func:`vae_core.estimators.quadrature_variances`, here from the formulas of the module docstring
    (float64; no quadrature, no sampling).

    Used by: :func:`estimator_explorer_html` (reference values), chapter 3, tests.
    """
    mu, sigma, k = _check(f, mu, sigma, k)
    s2 = sigma * sigma
    if f == "quadratic":
        g = est.quadratic_true_grad(mu, sigma, k)
        v = est.quadratic_variances(mu, sigma, k)
        return est.EstimatorVariances(*g, *v)
    if f == "bump":
        g = est.gaussian_bump_true_grad(mu, sigma, k)
        c, q = 2.0 * k, 4.0 * k * k
        second = (_bump_expect(_EPS2, c, mu, sigma) / s2, _bump_expect(_SCORE_SIGMA2, c, mu, sigma) / s2,
                  q * _bump_expect((mu * mu, 2 * mu * sigma, s2), c, mu, sigma),
                  q * _bump_expect((0.0, 0.0, mu * mu, 2 * mu * sigma, s2), c, mu, sigma))
    else:
        g = est.cosine_true_grad(mu, sigma, k)
        w = 2.0 * k
        second = ((1 + _cos_expect(_EPS2, w, mu, sigma)) / (2 * s2),
                  (2 + _cos_expect(_SCORE_SIGMA2, w, mu, sigma)) / (2 * s2),
                  k * k * (1 - _cos_expect((1.0,), w, mu, sigma)) / 2,
                  k * k * (1 - _cos_expect(_EPS2, w, mu, sigma)) / 2)
    gm, gs = g
    return est.EstimatorVariances(gm, gs, second[0] - gm**2, second[1] - gs**2, second[2] - gm**2,
                                  second[3] - gs**2)


def reference_values(points: Sequence[tuple[str, float, float, float]] = REFERENCE_POINTS) -> list[dict]:
    """[{"f", "mu", "sigma", "k", "grad": [∂μ, ∂σ], "score": [var ∂μ, var ∂σ], "pathwise": [...]}, ...]
    from :func:`closed_form_variances`, for the page's self-check."""
    out = []
    for point in points:
        if len(point) != 4:
            raise ValueError(f"each reference point is (f, mu, sigma, k), got {point!r}")
        f, mu, sigma, k = point
        v = closed_form_variances(f, mu, sigma, k)
        out.append({"f": f, "mu": float(mu), "sigma": float(sigma), "k": float(k),
                    "grad": [v.grad_mu, v.grad_sigma], "score": [v.score_mu, v.score_sigma],
                    "pathwise": [v.pathwise_mu, v.pathwise_sigma]})
    return out


# ----------------------------------------------------------------------------------------------
# the page
# ----------------------------------------------------------------------------------------------
# Hooks for tests, on the container: el.vaeEstimators.{state(), set(name, value) (name: f, mu, sigma,
# k (index into P.ks), n (exponent)), resample(seed), closedForm(f, mu, sigma, k), eps(), rows(),
# stats()} and the attributes data-ready, data-selfcheck(-maxdiff), data-last-redraw-ms, data-redraws.
_JS = (page_js.head_js("P") + page_js.root_js("vae-estimator-explorer", "P", "vaeEstimators") + r"""
// ---- closed forms (the module docstring of vae_core.estimator_explorer derives them)
function dot(p, q) { var s = 0; for (var i = 0; i < p.length; i++) { s += p[i] * q[i]; } return s; }
function bumpE(p, c, mu, sigma) {
  var d = 1 + 2 * c * sigma * sigma, m = -2 * c * mu * sigma / d, v = 1 / d;
  var moments = [1, m, m * m + v, m * m * m + 3 * m * v, m * m * m * m + 6 * m * m * v + 3 * v * v];
  return Math.exp(-c * mu * mu / d) / Math.sqrt(d) * dot(p, moments);
}
function cosE(p, w, mu, sigma) {
  var t = w * sigma, he = [1, t, t * t - 1, t * t * t - 3 * t, t * t * t * t - 6 * t * t + 3];
  var ipow = [[1, 0], [0, 1], [-1, 0], [0, -1]], re = 0, im = 0;
  for (var j = 0; j < p.length; j++) {
    re += p[j] * ipow[j % 4][0] * he[j]; im += p[j] * ipow[j % 4][1] * he[j];
  }
  return Math.exp(-t * t / 2) * (Math.cos(w * mu) * re - Math.sin(w * mu) * im);
}
var EPS2 = [0, 0, 1], SIG2 = [1, 0, -2, 0, 1];
function closedForm(f, mu, sigma, k) {
  var s2 = sigma * sigma, g, e;
  if (f === "quadratic") {
    var a = mu - k, a2 = a * a;
    return {grad: [2 * a, 2 * sigma],
            score: [a2 * a2 / s2 + 14 * a2 + 15 * s2, 2 * a2 * a2 / s2 + 60 * a2 + 74 * s2],
            pathwise: [4 * s2, 4 * a2 + 8 * s2]};
  }
  if (f === "bump") {
    var d = 1 + 2 * k * s2, val = Math.exp(-k * mu * mu / d) / Math.sqrt(d), c = 2 * k, q = 4 * k * k;
    g = [val * (-2 * k * mu / d), val * (-2 * k * sigma / d + 4 * k * k * mu * mu * sigma / (d * d))];
    e = [bumpE(EPS2, c, mu, sigma) / s2, bumpE(SIG2, c, mu, sigma) / s2,
         q * bumpE([mu * mu, 2 * mu * sigma, s2], c, mu, sigma),
         q * bumpE([0, 0, mu * mu, 2 * mu * sigma, s2], c, mu, sigma)];
  } else {
    var damp = Math.exp(-k * k * s2 / 2), w = 2 * k;
    g = [-k * Math.sin(k * mu) * damp, -k * k * sigma * Math.cos(k * mu) * damp];
    e = [(1 + cosE(EPS2, w, mu, sigma)) / (2 * s2), (2 + cosE(SIG2, w, mu, sigma)) / (2 * s2),
         k * k * (1 - cosE([1], w, mu, sigma)) / 2, k * k * (1 - cosE(EPS2, w, mu, sigma)) / 2];
  }
  return {grad: g, score: [e[0] - g[0] * g[0], e[1] - g[1] * g[1]],
          pathwise: [e[2] - g[0] * g[0], e[3] - g[1] * g[1]]};
}
// ---- the self-check against the values vae_core computed in Python
var maxdiff = 0;
P.reference.forEach(function (r) {
  var c = closedForm(r.f, r.mu, r.sigma, r.k);
  ["grad", "score", "pathwise"].forEach(function (key) {
    for (var i = 0; i < 2; i++) {
      maxdiff = Math.max(maxdiff, Math.abs(c[key][i] - r[key][i]) / Math.max(1, Math.abs(r[key][i])));
    }
  });
});
root.setAttribute("data-selfcheck", maxdiff < 1e-9 ? "ok" : "fail");
root.setAttribute("data-selfcheck-maxdiff", String(maxdiff));
// ---- sampling: mulberry32 uniforms, Marsaglia's polar method for normals (buffers reused)
var seed = P.seed === null ? (Math.random() * 4294967296) >>> 0 : P.seed;
var NMAX = P.n_max, epsBuf = new Float64Array(NMAX), rowBuf = [];
for (var r = 0; r < 4; r++) { rowBuf.push(new Float64Array(NMAX)); }
function normals(n, s) {
  var a = s >>> 0, out = epsBuf.subarray(0, n), i = 0, x, y, q, m;
  function uniform() {  // mulberry32, in (0, 1)
    a = (a + 0x6D2B79F5) >>> 0;
    var t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  }
  while (i < n) {
    x = 2 * uniform() - 1; y = 2 * uniform() - 1; q = x * x + y * y;
    if (q >= 1 || q === 0) { continue; }
    m = Math.sqrt(-2 * Math.log(q) / q);
    out[i++] = x * m;
    if (i < n) { out[i++] = y * m; }
  }
  return out;
}
function rowsOf(f, mu, sigma, k, eps) {
  var n = eps.length, rows = rowBuf.map(function (b) { return b.subarray(0, n); });
  var r0 = rows[0], r1 = rows[1], r2 = rows[2], r3 = rows[3];
  for (var i = 0; i < n; i++) {
    var e = eps[i], x = mu + sigma * e, fx, dfx;
    if (f === "quadratic") { fx = (x - k) * (x - k); dfx = 2 * (x - k); }
    else if (f === "bump") { fx = Math.exp(-k * x * x); dfx = -2 * k * x * fx; }
    else { fx = Math.cos(k * x); dfx = -k * Math.sin(k * x); }
    r0[i] = fx * e / sigma; r1[i] = fx * (e * e - 1) / sigma;   // score function
    r2[i] = dfx; r3[i] = dfx * e;                              // pathwise
  }
  return rows;
}
// mean, unbiased variance, and the standard error of that variance, sqrt((m4 - var^2) / n)
function stats(v) {
  var n = v.length, m = 0, s2 = 0, s4 = 0, i, d;
  for (i = 0; i < n; i++) { m += v[i]; }
  m /= n;
  for (i = 0; i < n; i++) { d = (v[i] - m) * (v[i] - m); s2 += d; s4 += d * d; }
  var variance = s2 / (n - 1), m2 = s2 / n, m4 = s4 / n;
  return {mean: m, variance: variance, se: Math.sqrt(Math.max(0, m4 - m2 * m2) / n)};
}
// ---- drawing
var controls = {}, outs = {};
Array.prototype.forEach.call(root.querySelectorAll("input"), function (el) {
  if (el.type === "radio") { controls["f:" + el.value] = el; } else { controls[el.name] = el; }
});
Array.prototype.forEach.call(root.querySelectorAll("output[data-for]"), function (el) {
  outs[el.getAttribute("data-for")] = el;
});
var canvases = root.querySelectorAll("canvas"), table = root.querySelector(".vae-est-table tbody");
var COL = {score: "rgba(255,127,14,0.6)", pathwise: "rgba(31,119,180,0.6)"};
var state = {}, eps = null, rows = null, measured = null, closed = null, redraws = 0;
function fmt(v) {
  var a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) { return v.toExponential(2); }
  return v.toPrecision(4);
}
function readState() {
  var f = P.functions.filter(function (name) { return controls["f:" + name].checked; })[0];
  state = {f: f, mu: parseFloat(controls.mu.value), sigma: parseFloat(controls.sigma.value),
           k: P.ks[parseInt(controls.k.value, 10)], n: Math.pow(10, parseInt(controls.n.value, 10))};
  outs.mu.textContent = state.mu.toFixed(1); outs.sigma.textContent = state.sigma.toFixed(1);
  outs.k.textContent = String(state.k); outs.n.textContent = String(state.n);
}
function histogram(canvas, which) {
  var ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 8, B = 28, T = 18;
  var g = closed.grad[which];
  var half = 4 * Math.sqrt(Math.max(closed.score[which], closed.pathwise[which], 1e-12));
  var lo = g - half, hi = g + half, nb = 60, counts = [], out = [0, 0], top = 1;
  [0, 1].forEach(function (e) {
    var v = rows[e === 0 ? which : 2 + which], c = new Float64Array(nb);
    for (var i = 0; i < v.length; i++) {
      var b = Math.floor((v[i] - lo) / (hi - lo) * nb);
      if (b < 0 || b >= nb) { out[e] += 1; } else { c[b] += 1; }
    }
    counts.push(c);
  });
  counts.forEach(function (c) { for (var b = 0; b < nb; b++) { top = Math.max(top, c[b]); } });
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  var bw = (W - 2 * L) / nb, lt = Math.log(1 + top);
  [["score", 0], ["pathwise", 1]].forEach(function (s) {
    ctx.fillStyle = COL[s[0]];
    for (var b = 0; b < nb; b++) {
      var c = counts[s[1]][b];
      if (c > 0) {
        var h = Math.log(1 + c) / lt * (H - B - T);
        ctx.fillRect(L + b * bw, H - B - h, bw, h);
      }
    }
  });
  var gx = L + (g - lo) / (hi - lo) * (W - 2 * L);
  ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5;
  ctx.beginPath(); ctx.moveTo(gx, T - 4); ctx.lineTo(gx, H - B); ctx.stroke();
  ctx.strokeStyle = "#333"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(L, H - B); ctx.lineTo(W - L, H - B); ctx.stroke();
  ctx.fillStyle = "#333"; ctx.font = "12px sans-serif"; ctx.textAlign = "left";
  ctx.fillText(fmt(lo), L, H - B + 14);
  ctx.textAlign = "right"; ctx.fillText(fmt(hi), W - L, H - B + 14);
  ctx.textAlign = "center";
  var param = which === 0 ? "\u2202\u03bc" : "\u2202\u03c3";
  ctx.fillText(param + " estimates (true " + fmt(g) + ")", W / 2, 13);
  ctx.fillText("outside: score " + out[0] + ", pathwise " + out[1] + "; counts on a log scale", W / 2, H - 4);
}
function redraw(newSeed) {
  var t0 = performance.now();
  readState();
  if (newSeed !== undefined) { seed = newSeed >>> 0; }
  eps = normals(state.n, seed);
  rows = rowsOf(state.f, state.mu, state.sigma, state.k, eps);
  measured = rows.map(stats);
  closed = closedForm(state.f, state.mu, state.sigma, state.k);
  histogram(canvases[0], 0); histogram(canvases[1], 1);
  // table rows: (row of `rows`, closed-form key, parameter 0 = mu / 1 = sigma)
  var names = [[0, "score", 0], [2, "pathwise", 0], [1, "score", 1], [3, "pathwise", 1]];
  var cells = table.querySelectorAll("td");
  names.forEach(function (r, i) {
    var m = measured[r[0]];
    cells[3 * i].textContent = fmt(m.mean);
    cells[3 * i + 1].textContent = fmt(m.variance) + " \u00b1 " + fmt(m.se);
    cells[3 * i + 2].textContent = fmt(closed[r[1]][r[2]]);
  });
  root.querySelector(".vae-est-true").textContent = "true gradient: \u2202\u03bc = " +
    fmt(closed.grad[0]) + ", \u2202\u03c3 = " + fmt(closed.grad[1]) + "; n = " + state.n +
    " samples, seed " + seed;
  redraws += 1;
  root.setAttribute("data-last-redraw-ms", (performance.now() - t0).toFixed(3));
  root.setAttribute("data-redraws", String(redraws));
}
Array.prototype.forEach.call(root.querySelectorAll("input"), function (el) {
  el.addEventListener(el.type === "radio" ? "change" : "input", function () {
    seed = (seed + 1) >>> 0; redraw();
  });
});
root.querySelector(".vae-est-new").addEventListener("click", function () { redraw(seed + 1); });
root.vaeEstimators = {
  state: function () { return Object.assign({seed: seed}, state); },
  set: function (name, value) {
    if (name === "f") { controls["f:" + value].checked = true; }
    else { controls[name].value = String(value); }
    redraw();
  },
  resample: function (s) { redraw(s); },
  closedForm: closedForm,
  eps: function () { return Array.from(eps); },
  rows: function () { return rows.map(function (r) { return Array.from(r); }); },
  stats: function () { return {measured: measured, closed: closed}; }
};
redraw();
root.setAttribute("data-ready", "1");
})();""")


def estimator_explorer_html(f: str = "cosine", mu: float = 1.0, sigma: float = 1.0, k: float = 1.0,
                            n: int = 1000, seed: int | None = None, element_id: str | None = None,
                            title: str | None = None) -> str:
    """The estimator explorer as one self-contained HTML snippet (controls, two histogram canvases, a
    table, a ``<noscript>`` message and an inline script; nothing loaded from anywhere).

    Args:
        f, mu, sigma, k: the initial problem ("quadratic", "bump", "cosine"; μ on the slider's
            0.1 grid in [-3, 3], σ in [0.2, 3], k is moved to the nearest stop of :data:`K_VALUES`).
        n: initial number of samples, a power of ten from 10 to 10^5.
        seed: the first draw's seed (default: a random one, so every reader sees fresh samples; each
            change of a control, and the "new samples" button, moves to the next seed).
        element_id: the container's id (default derived from the content: re-execution is identical).
        title: a caption above the controls.

    Keyboard: the radio buttons (arrow keys), four range sliders (arrow keys) and a button. For tests
    the container exposes ``el.vaeEstimators`` (see the script) and ``data-ready``,
    ``data-selfcheck`` ("ok" when the JavaScript closed forms match :func:`reference_values`),
    ``data-last-redraw-ms`` (sampling + statistics + drawing) and ``data-redraws``.

    Used by: chapter 3.
    """
    mu, sigma, k = _check(f, mu, sigma, k)
    if not (MU_RANGE[0] <= mu <= MU_RANGE[1] and SIGMA_RANGE[0] <= sigma <= SIGMA_RANGE[1]):
        raise ValueError(f"mu must be in {MU_RANGE} and sigma in {SIGMA_RANGE}, got {mu}, {sigma}")
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    if isinstance(n, bool) or n not in [10**e for e in N_EXPONENTS]:
        raise ValueError(f"n must be one of {[10**e for e in N_EXPONENTS]}, got {n!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise ValueError(f"seed must be None or an integer in [0, 2^32), got {seed!r}")
    k_index = int(np.argmin([abs(math.log(v / k)) for v in K_VALUES]))
    payload = {"functions": list(FUNCTIONS), "ks": list(K_VALUES), "seed": seed, "n_max": 10**N_EXPONENTS[-1],
               "reference": reference_values()}
    if element_id is None:
        element_id = page_js.content_id("vae-estimator-explorer", payload, f, mu, sigma, k_index, n, title)
    payload["id"] = page_js.check_id(element_id)
    script = page_js.embed(_JS, payload)

    def slider(name: str, label: str, lo: float, hi: float, step: float, value: float) -> str:
        return (f'<label style="display:flex;align-items:center;gap:0.4em;margin:2px 0">'
                f'<span style="min-width:5.5em">{label}</span>'
                f'<input type="range" name="{name}" min="{lo:g}" max="{hi:g}" step="{step:g}" '
                f'value="{value:g}" '
                f'aria-label="{html.escape(label, quote=True)}" style="flex:1;min-width:6em">'
                f'<output data-for="{name}" style="min-width:3.5em;font-family:monospace"></output></label>')

    radios = "".join(
        f'<label style="white-space:nowrap;margin-right:0.8em"><input type="radio" name="f-{element_id}" '
        f'value="{name}"{" checked" if name == f else ""}> f(x) = {html.escape(LABELS[name])}</label> '
        for name in FUNCTIONS)
    rows = "".join(
        f'<tr><th scope="row" style="text-align:left;font-weight:normal">{est_name}, {param}</th>'
        '<td></td><td></td><td></td></tr>'
        for est_name, param in [("score function", "∂μ"), ("pathwise", "∂μ"), ("score function", "∂σ"),
                                ("pathwise", "∂σ")])
    caption = f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>' if title else ""
    canvas = ('<canvas width="360" height="190" role="img" aria-label="{}" style="width:100%;'
              'max-width:360px;height:auto;border:1px solid #ccc;background:#fff"></canvas>')
    return (
        f'<div id="{element_id}" class="vae-estimator-explorer" data-selfcheck="pending" '
        'style="margin:0.5em 0;max-width:760px;font-size:14px">'
        f'{caption}<fieldset style="border:0;padding:0;margin:0 0 4px 0"><legend style="padding:0">'
        f'function</legend>{radios}</fieldset>'
        '<div style="display:flex;flex-wrap:wrap;column-gap:1.5em">'
        '<div style="flex:1;min-width:15em">'
        + slider("mu", "μ", *MU_RANGE, STEP, mu) + slider("sigma", "σ", *SIGMA_RANGE, STEP, sigma)
        + '</div><div style="flex:1;min-width:15em">'
        + slider("k", "k", 0, len(K_VALUES) - 1, 1, k_index)
        + slider("n", "samples", N_EXPONENTS[0], N_EXPONENTS[-1], 1, int(round(math.log10(n))))
        + '</div></div>'
        '<button type="button" class="vae-est-new" style="margin:4px 0">draw new samples</button>'
        '<div style="display:flex;flex-wrap:wrap;gap:8px;margin-top:4px">'
        + canvas.format("histograms of the d/dmu estimates")
        + canvas.format("histograms of the d/dsigma estimates")
        + '</div><div style="font-size:12px"><span style="color:#ff7f0e">■</span> score function '
        '<span style="color:#1f77b4">■</span> pathwise, black line: the true gradient</div>'
        '<div class="vae-est-true" style="font-size:12px;margin:4px 0"></div>'
        '<table class="vae-est-table" style="font-size:12px;font-variant-numeric:tabular-nums;'
        'border-collapse:collapse;margin:0"><thead><tr><th></th><th>mean</th>'
        '<th>variance, measured</th><th>closed form</th></tr></thead>'
        f'<tbody>{rows}</tbody></table>'
        '<noscript>This explorer draws its samples with JavaScript, which is off: the figures above '
        'show the same comparison.</noscript>'
        f'<script>{script}</script></div>'
    )


__all__ = ["FUNCTIONS", "K_VALUES", "REFERENCE_POINTS", "closed_form_variances", "estimator_explorer_html",
           "reference_values"]
