"""Reproducible performance measurements of the VAE book (issue 7), each writing a JSON result.

Modules, one benchmark each (``python -m benchmarks NAME``):

- :mod:`benchmarks.throughput` — training samples/s of the seed-style loop (A), ``vae_core.train.fit``
  (B) and the compute-only floor (C), interleaved in one run, against the FLOP roofline (one thread
  per core); :mod:`benchmarks.throughput_1t` the same with one thread;
- :mod:`benchmarks.quality` — A and B reach the same test ELBO (several seeds);
- :mod:`benchmarks.iwae` — IWAE log-likelihood (k = 5000, 1,000 images): time and peak memory for two
  chunk sizes;
- :mod:`benchmarks.book` — each chapter's execution time (optional: minutes);
- :mod:`benchmarks.redraw` — redraw time of the in-page figures in headless Chromium (needs the built
  book).

Shared pieces: :mod:`benchmarks.common` (machine/version record, JSON envelope, timing),
:mod:`benchmarks.loops` (the reference loops A and C), :mod:`benchmarks.report` (the results block of
the appendix page ``book/benchmarks.md``). Results go to ``benchmarks/results/<name>.json``.

``python -m benchmarks`` (or ``make bench``) runs throughput, quality and iwae (≈ 5 minutes on one core
of the 2-core CPU of the committed results) and rewrites the appendix; ``python -m benchmarks --help``
lists the options.
Importing this package does nothing (no torch import, no device picking).
"""

DEFAULT = ("throughput", "throughput_1t", "quality", "iwae")
"""What ``python -m benchmarks`` runs without names (``book`` takes minutes: ask for it)."""
ALL = ("throughput", "throughput_1t", "quality", "iwae", "book", "redraw")
