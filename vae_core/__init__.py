"""vae_core: the small, tested library behind every chapter of the VAE book.

One concept per module:

- :mod:`vae_core.data`           datasets as in-memory uint8 tensors, binarization
- :mod:`vae_core.distributions`  Gaussian / Bernoulli log-densities, closed-form and Monte-Carlo KL
- :mod:`vae_core.quadrature`     Gaussian expectations E_{N(μ,σ²)}[f] by quadrature, differentiable
- :mod:`vae_core.models`         MLP VAE, conditional VAE, semi-supervised M2
- :mod:`vae_core.conv`           convolutional VAE (Bernoulli or 8-bit logistic pixels; vector or spatial z)
- :mod:`vae_core.pixels`         densities vs 8-bit pixels: discretized Gaussian, bin-width correction
- :mod:`vae_core.aggregate`      the aggregate posterior's moments and its distance from N(0, I)
- :mod:`vae_core.objectives`     ELBO (estimators L^A and L^B) and the IWAE bound
- :mod:`vae_core.estimators`     score-function vs pathwise gradient estimators
- :mod:`vae_core.train`          ``fit``: seeded in-memory training, exact resume
- :mod:`vae_core.checkpoints`    checkpoint files: atomic writes, safe and digest-verified loading
- :mod:`vae_core.cache`          the cache of trained models (``pretrained``), keyed by what determines them
- :mod:`vae_core.evaluate`       test ELBO, importance-weighted log-likelihood, active units
- :mod:`vae_core.bounds`         the IWAE bound for any posterior and prior: training loss, gradient SNR
- :mod:`vae_core.gap`            the gap measured: IWAE estimate for any model, exact log p(x) and gap in 2-D
- :mod:`vae_core.flows`          flow posteriors: conditional affine coupling layers on the Gaussian encoder
- :mod:`vae_core.priors`         learned priors: mixture of Gaussians and VampPrior
- :mod:`vae_core.viz`            image grids and latent-space pictures
- :mod:`vae_core.explorer`       latent sliders: ipywidgets (live) and self-contained HTML+JS (static)
- :mod:`vae_core.summary`        parameter and FLOP counts from torch's own counters
- :mod:`vae_core.zoo`            the book's shared trained models (784-400-20, 784-256-2), one place
- :mod:`vae_core.linear_gaussian` the linear-Gaussian model: exact evidence, posterior and ELBO (chapter 2)
- :mod:`vae_core.kl_widget`       chapter 1's two-Gaussians KL widget for the static page (plain JavaScript)
- :mod:`vae_core.page_js`         the JavaScript every in-page figure shares (container, base64, ids)
- :mod:`vae_core.estimator_explorer` chapter 3's estimator explorer for the static page, exact variances
- :mod:`vae_core.beta_explorer`   chapter 7's β explorer: the rate–distortion sweep in the static page
- :mod:`vae_core.discrete`        categorical latents: Gumbel-max, Concrete, score function, exact enumeration
- :mod:`vae_core.vq`              VQ-VAE: nearest-code quantiser, codebook usage, a prior over codes

Conventions used everywhere: images are flattened to ``(batch, 784)`` floats in [0, 1]; every
log-likelihood, KL and ELBO is in **nats per example**, summed over pixels / latent dimensions;
a training loss is the *mean over the batch* of the negative (β-weighted) ELBO.

Importing this package has no side effects (no downloads, no device picking, no globals).
"""

__version__ = "0.1.0"
