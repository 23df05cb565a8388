"""The models of the book: an MLP VAE, a conditional VAE and the
semi-supervised M2 model.

Every model exposes the interface that :mod:`vae_core.objectives` needs (for the label-conditioned
models, through the view returned by ``given(y)``):

- ``encode(x) -> (mu, logvar)``: the parameters of q(z|x), each (batch, z_dim);
- ``decode(z) -> out``: decoder output, logits (Bernoulli) or means (Gaussian), (..., batch, x_dim);
- ``log_likelihood(x, z) -> (..., batch)``: log p(x|z) summed over pixels, in nats;
- ``mean_image(z) -> (..., batch, x_dim)``: E[x|z] in [0, 1], what pictures show.

so that the ELBO and IWAE bound of any of them come from the same code. Conventions: images are
flattened floats ``(batch, x_dim)``; labels ``y`` are integer class indices ``(batch,)``; every
log-likelihood, KL and loss is **in nats per example**, summed over pixels and latent dimensions.

Numerical stability: decoders output *logits* and the Bernoulli log-likelihood uses
``binary_cross_entropy_with_logits``; classifiers output logits and use ``log_softmax``; variances
are carried as log-variances and only exponentiated inside formulas that stay finite for
|logvar| ≤ 50 in float32 (tested).

Used by: chapters 3-8 (``VAE``), chapter 8 (``ConditionalVAE``, ``M2``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_batch, check_non_negative, check_positive_int, values_trusted
from .distributions import (
    bernoulli_log_prob,
    gaussian_kl,
    gaussian_log_prob,
    reparameterize,
)

LIKELIHOODS = ("bernoulli", "gaussian")

Labels = Tensor | int


# ---------------------------------------------------------------------------------------------
# Helpers shared by the models
# ---------------------------------------------------------------------------------------------


def _check_likelihood(likelihood: str) -> str:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return likelihood


def _check_z(z: Tensor, z_dim: int, *, min_dim: int = 1, dtype: torch.dtype | None = None) -> Tensor:
    if not isinstance(z, Tensor):
        raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
    if not torch.is_floating_point(z):
        raise TypeError(f"z must be a float tensor, got {z.dtype}")
    if dtype is not None and z.dtype != dtype:
        raise TypeError(f"z is {z.dtype} but the model's parameters are {dtype}; "
                        f"convert it with z.to({dtype})")
    if z.dim() < min_dim or z.shape[-1] != z_dim:
        need = "(..., batch, z_dim)" if min_dim >= 2 else "(..., z_dim)"
        raise ValueError(f"z must have shape {need} with z_dim = {z_dim}, got {tuple(z.shape)}")
    if not values_trusted() and not bool(torch.isfinite(z).all()):
        raise ValueError("z contains NaN or inf values")
    return z


def _check_pair(x: Tensor, z: Tensor) -> None:
    """z (..., batch, z_dim) must have x's batch size (a single z (z_dim,) is shared by every x)."""
    if z.dim() >= 2 and z.shape[-2] != x.shape[0]:
        raise ValueError(f"z has batch size {z.shape[-2]} (shape {tuple(z.shape)}) but x has {x.shape[0]}: "
                         "z must be (..., batch, z_dim) for x (batch, x_dim)")


def _output_log_likelihood(x: Tensor, out: Tensor, likelihood: str,
                           log_sigma2_x: Tensor | None) -> Tensor:
    """log p(x|z) from the decoder output ``out`` (logits or means), summed over pixels, in nats.

    Bernoulli: Σ_i x_i log σ(l_i) + (1 − x_i) log(1 − σ(l_i)) = −BCE-with-logits (stable for any l).
    Gaussian: Σ_i log N(x_i; m_i, σ_x²) with one learned log σ_x² shared by all pixels.
    x: (batch, x_dim); out: (..., batch, x_dim). Returns (..., batch).
    """
    if likelihood == "bernoulli":
        return bernoulli_log_prob(x, out)
    return gaussian_log_prob(x, out, log_sigma2_x.expand_as(out))


def check_labels(y: Labels, n_classes: int, batch: int | None = None, *,
                 device: torch.device | None = None, name: str = "y") -> Tensor:
    """Check class labels and return them as an int64 tensor of shape (batch,).

    y: integer tensor (batch,) with values in [0, n_classes), or a Python int / 0-d integer tensor
    meaning "this label for every example" (needs ``batch``). ``batch``: the expected length (None
    to skip the check). Raises TypeError (float/bool/non-tensor labels) or ValueError (wrong shape,
    length mismatch, label out of range) naming the problem.

    Used by: :class:`ConditionalVAE`, :class:`M2` (chapter 8).
    """
    if isinstance(y, bool) or not isinstance(y, int | Tensor):
        raise TypeError(f"{name} must be an integer tensor of class labels (or an int), "
                        f"got {type(y).__name__}")
    if isinstance(y, Tensor):
        if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
            raise TypeError(f"{name} must hold integer class labels (e.g. torch.int64), got {y.dtype}; "
                            f"use {name}.long() if they are whole numbers")
        if y.dim() == 0:
            y = int(y.item())
        elif y.dim() != 1:
            raise ValueError(f"{name} must have shape (batch,), got {tuple(y.shape)}")
    if isinstance(y, int):
        if batch is None:
            raise ValueError(f"a single label {name}={y} needs a batch size to expand to")
        y = torch.full((batch,), y, dtype=torch.int64, device=device)
    if batch is not None and len(y) != batch:
        raise ValueError(f"{name} has {len(y)} labels but the batch has {batch} examples")
    if len(y) > 0:
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= n_classes:
            raise ValueError(f"{name} has labels in [{low}, {high}], outside [0, {n_classes - 1}] "
                             f"(n_classes = {n_classes})")
    y = y.long()
    return y if device is None else y.to(device)


def _linear_with_label(layer: nn.Linear, inputs: Tensor, label_rows: Tensor) -> Tensor:
    """``layer(cat([inputs, one_hot(y)], -1))`` without building the concatenation.

    For a one-hot e_y, W [u; e_y] + b = W_u u + b + W[:, d + y]: concatenating a one-hot label adds
    a learned vector per class (column d + y of W, d = inputs' size) to the pre-activation. Computing
    it this way lets ``inputs`` (..., batch, d) broadcast against ``label_rows`` (batch, h) — and
    against (n_classes, 1, h) to score every class at once — with no copies.

    inputs: (..., d); label_rows: columns of W picked per label, broadcastable to (..., h).
    """
    d = inputs.shape[-1]
    return F.linear(inputs, layer.weight[:, :d], layer.bias) + label_rows


def _label_columns(layer: nn.Linear, in_dim: int) -> Tensor:
    """The columns of ``layer.weight`` that multiply the one-hot label, as rows: (n_classes, h)."""
    return layer.weight[:, in_dim:].T


# ---------------------------------------------------------------------------------------------
# VAE
# ---------------------------------------------------------------------------------------------


class VAE(nn.Module):
    """MLP VAE of Kingma & Welling (2013): x_dim -> h_dim -> (mu, logvar) in R^z_dim -> h_dim -> x_dim.

    Generative model p(z) = N(0, I), p(x|z) = Π_i Bernoulli(x_i; σ(logits_i(z))) (or Gaussian);
    inference model q(z|x) = N(mu(x), diag exp(logvar(x))). One ReLU hidden layer each way.

    Args:
        x_dim: flattened image size (784 for MNIST).
        h_dim: hidden units of the one hidden layer in encoder and decoder.
        z_dim: latent dimensions (≥ 1).
        likelihood: "bernoulli" (decoder outputs logits, log p(x|z) = −BCE summed over pixels; x must
            be in [0, 1]) or "gaussian" (decoder outputs means in (0, 1) via a sigmoid; a learned
            scalar log-variance ``log_sigma2_x`` shared by all pixels; x any finite float).

    Used by: chapters 3-8.
    """

    def __init__(self, x_dim: int = 784, h_dim: int = 400, z_dim: int = 20,
                 likelihood: str = "bernoulli") -> None:
        super().__init__()
        x_dim = check_positive_int(x_dim, "x_dim")
        h_dim = check_positive_int(h_dim, "h_dim")
        z_dim = check_positive_int(z_dim, "z_dim")
        _check_likelihood(likelihood)
        self.x_dim, self.h_dim, self.z_dim, self.likelihood = x_dim, h_dim, z_dim, likelihood
        self.encoder_hidden = nn.Linear(x_dim, h_dim)
        self.to_mu = nn.Linear(h_dim, z_dim)
        self.to_logvar = nn.Linear(h_dim, z_dim)
        self.decoder_hidden = nn.Linear(z_dim, h_dim)
        self.to_x = nn.Linear(h_dim, x_dim)
        if likelihood == "gaussian":
            self.log_sigma2_x = nn.Parameter(torch.tensor(math.log(0.1)))

    def config(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild the architecture (used by checkpoints)."""
        return {"x_dim": self.x_dim, "h_dim": self.h_dim, "z_dim": self.z_dim,
                "likelihood": self.likelihood}

    def _check_x(self, x: Tensor) -> Tensor:
        return check_batch(x, self.x_dim, unit_interval=self.likelihood == "bernoulli",
                           dtype=self.encoder_hidden.weight.dtype)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, x_dim) in [0, 1] -> (mu, logvar) of q(z|x), each (batch, z_dim)."""
        self._check_x(x)
        h = torch.relu(self.encoder_hidden(x))
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """z: (..., z_dim) -> logits (Bernoulli) or pixel means in (0, 1) (Gaussian), (..., x_dim)."""
        _check_z(z, self.z_dim, dtype=self.decoder_hidden.weight.dtype)
        out = self.to_x(torch.relu(self.decoder_hidden(z)))
        return out if self.likelihood == "bernoulli" else torch.sigmoid(out)

    def mean_image(self, z: Tensor) -> Tensor:
        """E[x|z] in [0, 1], (..., x_dim): what pictures of decoded z show."""
        out = self.decode(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) summed over pixels, in nats.

        x: (batch, x_dim); z: (..., batch, z_dim) (e.g. (S, batch, z_dim) for S samples per example).
        Returns (..., batch).
        """
        self._check_x(x)
        _check_pair(x, z)
        return _output_log_likelihood(x, self.decode(z), self.likelihood,
                                      getattr(self, "log_sigma2_x", None))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One reparameterized pass: returns (decoder output (batch, x_dim), mu, logvar)."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar


# ---------------------------------------------------------------------------------------------
# Conditional VAE
# ---------------------------------------------------------------------------------------------


class ConditionalVAE(nn.Module):
    """Conditional VAE (Sohn et al. 2015; the "M2 without a classifier"): the label y is an input.

    Generative model p(z) = N(0, I), p(x|z, y) = Bernoulli(σ(logits(z, y))) (or Gaussian);
    inference model q(z|x, y) = N(mu(x, y), diag exp(logvar(x, y))). The one-hot label is
    concatenated to the input of both hidden layers:
    ``[x, onehot(y)] -> h_dim -> (mu, logvar)`` and ``[z, onehot(y)] -> h_dim -> x_dim``.
    Since y is given, z only has to carry the *style* (slant, thickness): decoding the same z with
    different y draws different digits in the same style.

    ELBO(x | y) = E_q(z|x,y)[log p(x|z,y)] − KL(q(z|x,y) ‖ N(0, I)) ≤ log p(x|y). To get it (or the
    IWAE bound) from :mod:`vae_core.objectives`, fix the labels with :meth:`given`:
    ``objectives.elbo(cvae.given(y), x)``.

    Args: as :class:`VAE`, plus n_classes (≥ 2), the number of labels.
    Labels y: int64 tensor (batch,) with values in [0, n_classes), or one int for the whole batch.

    Used by: chapter 8.
    """

    def __init__(self, x_dim: int = 784, h_dim: int = 400, z_dim: int = 20, n_classes: int = 10,
                 likelihood: str = "bernoulli") -> None:
        super().__init__()
        x_dim = check_positive_int(x_dim, "x_dim")
        h_dim = check_positive_int(h_dim, "h_dim")
        z_dim = check_positive_int(z_dim, "z_dim")
        n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
        _check_likelihood(likelihood)
        self.x_dim, self.h_dim, self.z_dim = x_dim, h_dim, z_dim
        self.n_classes, self.likelihood = n_classes, likelihood
        self.encoder_hidden = nn.Linear(x_dim + n_classes, h_dim)  # input [x, onehot(y)]
        self.to_mu = nn.Linear(h_dim, z_dim)
        self.to_logvar = nn.Linear(h_dim, z_dim)
        self.decoder_hidden = nn.Linear(z_dim + n_classes, h_dim)  # input [z, onehot(y)]
        self.to_x = nn.Linear(h_dim, x_dim)
        if likelihood == "gaussian":
            self.log_sigma2_x = nn.Parameter(torch.tensor(math.log(0.1)))

    def config(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild the architecture (used by checkpoints)."""
        return {"x_dim": self.x_dim, "h_dim": self.h_dim, "z_dim": self.z_dim,
                "n_classes": self.n_classes, "likelihood": self.likelihood}

    # -- validation ------------------------------------------------------------------------
    def _check_x(self, x: Tensor) -> Tensor:
        return check_batch(x, self.x_dim, unit_interval=self.likelihood == "bernoulli",
                           dtype=self.encoder_hidden.weight.dtype)

    def _labels(self, y: Labels, batch: int, device: torch.device) -> Tensor:
        return check_labels(y, self.n_classes, batch, device=device)

    # -- networks on already-validated input (label_rows: per-example or per-class vectors) ---
    def _encode_rows(self, x: Tensor, label_rows: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.relu(_linear_with_label(self.encoder_hidden, x, label_rows))
        return self.to_mu(h), self.to_logvar(h)

    def _decode_rows(self, z: Tensor, label_rows: Tensor) -> Tensor:
        out = self.to_x(torch.relu(_linear_with_label(self.decoder_hidden, z, label_rows)))
        return out if self.likelihood == "bernoulli" else torch.sigmoid(out)

    def _encoder_label_rows(self) -> Tensor:
        return _label_columns(self.encoder_hidden, self.x_dim)  # (n_classes, h_dim)

    def _decoder_label_rows(self) -> Tensor:
        return _label_columns(self.decoder_hidden, self.z_dim)  # (n_classes, h_dim)

    def _output_log_likelihood(self, x: Tensor, out: Tensor) -> Tensor:
        return _output_log_likelihood(x, out, self.likelihood, getattr(self, "log_sigma2_x", None))

    # -- public API -------------------------------------------------------------------------
    def encode(self, x: Tensor, y: Labels) -> tuple[Tensor, Tensor]:
        """q(z|x, y): x (batch, x_dim), y (batch,) -> (mu, logvar), each (batch, z_dim)."""
        self._check_x(x)
        y = self._labels(y, len(x), x.device)
        return self._encode_rows(x, self._encoder_label_rows()[y])

    def encode_all_classes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(z|x, y) for every class y at once: x (batch, x_dim) -> (mu, logvar), each
        (n_classes, batch, z_dim); entry [c] equals ``encode(x, c)``.

        The x-part of the first layer is computed once and the per-class vectors are broadcast
        (see :func:`_linear_with_label`), so this costs one first layer, not n_classes.
        """
        self._check_x(x)
        return self._encode_rows(x, self._encoder_label_rows()[:, None, :])

    def decode(self, z: Tensor, y: Labels) -> Tensor:
        """p(x|z, y): z (..., batch, z_dim), y (batch,) -> logits (Bernoulli) or means (Gaussian),
        (..., batch, x_dim). Leading sample dimensions of z (e.g. S samples) broadcast over y."""
        _check_z(z, self.z_dim, min_dim=2, dtype=self.decoder_hidden.weight.dtype)
        y = self._labels(y, z.shape[-2], z.device)
        return self._decode_rows(z, self._decoder_label_rows()[y])

    def mean_image(self, z: Tensor, y: Labels) -> Tensor:
        """E[x|z, y] in [0, 1], (..., batch, x_dim): the image of digit y in the style z."""
        out = self.decode(z, y)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def log_likelihood(self, x: Tensor, z: Tensor, y: Labels) -> Tensor:
        """log p(x|z, y) summed over pixels, in nats.

        x: (batch, x_dim); z: (..., batch, z_dim); y: (batch,). Returns (..., batch).
        """
        self._check_x(x)
        _check_pair(x, z)
        return self._output_log_likelihood(x, self.decode(z, y))

    def given(self, y: Labels) -> LabelConditioned:
        """A view of this model with the labels fixed to y, exposing the plain VAE interface
        ``encode(x)``, ``decode(z)``, ``log_likelihood(x, z)``, ``mean_image(z)`` (parameters shared,
        nothing copied), so ``objectives.elbo(cvae.given(y), x)`` and
        ``objectives.iwae_bound(cvae.given(y), x, k)`` give ELBO(x|y) and the IWAE bound on
        log p(x|y) unchanged. y: (batch,) labels matching x's batch, or one int for any batch.
        """
        return LabelConditioned(self, y)

    def forward(self, x: Tensor, y: Labels) -> tuple[Tensor, Tensor, Tensor]:
        """One reparameterized pass: returns (decoder output (batch, x_dim), mu, logvar)."""
        mu, logvar = self.encode(x, y)
        return self.decode(reparameterize(mu, logvar), y), mu, logvar


class LabelConditioned(nn.Module):
    """``ConditionalVAE.given(y)``: the model with y fixed, behaving like an unconditional VAE.

    encode(x) = model.encode(x, y), decode(z) = model.decode(z, y), log_likelihood(x, z) =
    model.log_likelihood(x, z, y), mean_image(z) = model.mean_image(z, y). The wrapped model is a
    submodule, so ``parameters()``/``to()``/``train()`` reach the shared weights. It is a view for
    computing objectives, not a model to checkpoint: save and train the ConditionalVAE itself.

    Used by: chapter 8 (via :mod:`vae_core.objectives`).
    """

    def __init__(self, model: ConditionalVAE, y: Labels) -> None:
        super().__init__()
        if isinstance(y, Tensor) and y.dim() == 1:
            y = check_labels(y, model.n_classes, len(y))
        else:  # one label for any batch: validate now, expand at use
            y = int(check_labels(y, model.n_classes, 1)[0])
        self.model = model
        self.y = y
        self.x_dim, self.z_dim, self.likelihood = model.x_dim, model.z_dim, model.likelihood

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, x_dim) -> (mu, logvar) of q(z|x, y), each (batch, z_dim)."""
        return self.model.encode(x, self.y)

    def decode(self, z: Tensor) -> Tensor:
        """z: (..., batch, z_dim) -> decoder output of p(x|z, y), (..., batch, x_dim)."""
        return self.model.decode(z, self.y)

    def mean_image(self, z: Tensor) -> Tensor:
        """E[x|z, y] in [0, 1], (..., batch, x_dim)."""
        return self.model.mean_image(z, self.y)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z, y) summed over pixels, in nats: (..., batch)."""
        return self.model.log_likelihood(x, z, self.y)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One reparameterized pass: returns (decoder output, mu, logvar)."""
        return self.model(x, self.y)


# ---------------------------------------------------------------------------------------------
# M2 (Kingma, Rezende, Mohamed & Welling 2014)
# ---------------------------------------------------------------------------------------------


class M2(ConditionalVAE):
    r"""The semi-supervised generative model M2 of Kingma et al. (2014): a conditional VAE whose
    label is a latent variable when it is not observed, plus a classifier q(y|x).

    Generative model: p(y) = Uniform{0..C−1}, p(z) = N(0, I), p(x|y, z) (the CVAE decoder).
    Inference model: q(y, z|x) = q(y|x) q(z|x, y), with q(y|x) = softmax(classifier(x)) and
    q(z|x, y) the CVAE encoder.

    **Sign convention.** L(x, y) and U(x) below are *lower bounds* (to be maximised) and the methods
    return the *losses* −L and −U, in nats per example. (Kingma et al. write −L for the bound.)

    **Labelled bound.** For an observed pair, Jensen with q(z|x, y) gives
        log p(x, y) ≥ E_q(z|x,y)[log p(x|y, z) + log p(y) + log p(z) − log q(z|x, y)]
                    = E_q[log p(x|y, z)] + log p(y) − KL(q(z|x, y) ‖ p(z)) =: L(x, y),
    with log p(y) = −log C and the KL in closed form.

    **Unlabelled bound.** With y unobserved, Jensen with q(y, z|x) = q(y|x) q(z|x, y) gives
        log p(x) ≥ E_q(y|x)[ E_q(z|x,y)[log p(x, y, z) − log q(z|x, y)] − log q(y|x) ]
                 = Σ_y q(y|x) L(x, y) + H(q(y|x)) =: U(x).
    The sum over the C classes is done exactly (no sampling of y), batched over all classes.

    **Classification term.** In U the classifier only learns from unlabelled data, never from the
    labels, so Kingma et al. add α · E_labelled[−log q(y|x)].

    Args:
        x_dim, h_dim, z_dim, n_classes, likelihood: as :class:`ConditionalVAE`. The defaults
            (500 hidden units, 50 latent dimensions) are the sizes Kingma et al. report for M2;
            they use softplus units, we use ReLU like the other models here. The classifier is an
            MLP x_dim -> h_dim (ReLU) -> n_classes logits.
        alpha: weight of the mean labelled cross-entropy in :meth:`loss` (≥ 0). See :meth:`loss`
            for how it relates to the paper's α = 0.1·N and why the default is 0.1.

    Used by: chapter 8.
    """

    def __init__(self, x_dim: int = 784, h_dim: int = 500, z_dim: int = 50, n_classes: int = 10,
                 alpha: float = 0.1, likelihood: str = "bernoulli") -> None:
        super().__init__(x_dim, h_dim, z_dim, n_classes, likelihood)
        self.alpha = check_non_negative(alpha, "alpha")
        self.classifier_hidden = nn.Linear(x_dim, h_dim)
        self.to_class_logits = nn.Linear(h_dim, n_classes)

    def config(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild the architecture (used by checkpoints)."""
        return {**super().config(), "alpha": self.alpha}

    @property
    def log_prior_y(self) -> float:
        """log p(y) = −log C for the uniform label prior, in nats."""
        return -math.log(self.n_classes)

    def classify(self, x: Tensor) -> Tensor:
        """Logits of q(y|x): x (batch, x_dim) -> (batch, n_classes) (softmax gives probabilities)."""
        self._check_x(x)
        return self._classify(x)

    def _classify(self, x: Tensor) -> Tensor:
        return self.to_class_logits(torch.relu(self.classifier_hidden(x)))

    def predict(self, x: Tensor) -> Tensor:
        """Most probable class under q(y|x): x (batch, x_dim) -> int64 labels (batch,)."""
        return self.classify(x).argmax(-1)

    def _noise(self, n_samples: int, batch: int, like: Tensor,
               generator: torch.Generator | None) -> Tensor:
        """ε ~ N(0, I) of shape (n_samples, batch, z_dim), drawn as torch.randn with ``generator``.

        Labelled and unlabelled losses draw ε this way and the unlabelled loss reuses the *same* ε
        for all classes of an example (common random numbers): each L(x, y) stays unbiased, and the
        differences L(x, y) − L(x, y') that drive the classifier's gradient are less noisy.
        """
        check_positive_int(n_samples, "n_samples")
        return torch.randn((n_samples, batch, self.z_dim), generator=generator,
                           device=like.device, dtype=like.dtype)

    def labelled_loss(self, x: Tensor, y: Labels, n_samples: int = 1,
                      generator: torch.Generator | None = None) -> Tensor:
        """−L(x, y) per example, in nats: −E_q(z|x,y)[log p(x|y,z)] − log p(y) + KL(q(z|x,y) ‖ p(z)).

        The expectation is a Monte-Carlo mean over n_samples reparameterized draws
        z = mu + exp(logvar / 2) · ε, ε = torch.randn((n_samples, batch, z_dim), generator=generator);
        the KL is closed form. x: (batch, x_dim) in [0, 1]; y: (batch,) labels. Returns (batch,).
        """
        self._check_x(x)
        y = self._labels(y, len(x), x.device)
        mu, logvar = self._encode_rows(x, self._encoder_label_rows()[y])
        z = mu + torch.exp(0.5 * logvar) * self._noise(n_samples, len(x), mu, generator)
        rec = self._output_log_likelihood(x, self._decode_rows(z, self._decoder_label_rows()[y]))
        return -rec.mean(0) - self.log_prior_y + gaussian_kl(mu, logvar)

    def labelled_loss_all_classes(self, x: Tensor, n_samples: int = 1,
                                  generator: torch.Generator | None = None) -> Tensor:
        """−L(x, y) for every class y at once: x (batch, x_dim) -> (n_classes, batch), in nats.

        Entry [c] is ``labelled_loss(x, c)`` computed with the same ε for every c (one draw of
        shape (n_samples, batch, z_dim)). The batch is effectively expanded C-fold from the first
        hidden layer on: z is (n_samples, C, batch, z_dim) and the decoder runs on all of it.
        """
        self._check_x(x)
        mu, logvar = self._encode_rows(x, self._encoder_label_rows()[:, None, :])  # (C, batch, z)
        eps = self._noise(n_samples, len(x), mu, generator)[:, None]  # (S, 1, batch, z)
        z = mu + torch.exp(0.5 * logvar) * eps  # (S, C, batch, z)
        out = self._decode_rows(z, self._decoder_label_rows()[:, None, :])  # (S, C, batch, x_dim)
        rec = self._output_log_likelihood(x, out).mean(0)  # (C, batch)
        return -rec - self.log_prior_y + gaussian_kl(mu, logvar)

    def unlabelled_loss(self, x: Tensor, n_samples: int = 1,
                        generator: torch.Generator | None = None) -> Tensor:
        """−U(x) per example, in nats: Σ_y q(y|x) (−L(x, y)) − H(q(y|x)).

        The sum over the C classes is exact (vectorised, see :meth:`labelled_loss_all_classes`);
        H(q) = −Σ_y q(y|x) log q(y|x) from ``log_softmax`` (finite for any logits).
        x: (batch, x_dim) in [0, 1]. Returns (batch,). Gradients reach the classifier through
        q(y|x) and the encoder/decoder through each −L(x, y).
        """
        neg_l = self.labelled_loss_all_classes(x, n_samples, generator)  # (C, batch)
        log_q = F.log_softmax(self._classify(x), dim=-1)  # (batch, C)
        q = log_q.exp()
        entropy = -(q * log_q).sum(-1)
        return (q * neg_l.T).sum(-1) - entropy

    def loss(self, x_lab: Tensor, y_lab: Labels, x_unlab: Tensor, n_samples: int = 1,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss = mean −L over the labelled batch + mean −U over the unlabelled batch
        + α · mean cross-entropy −log q(y|x) over the labelled batch, in nats per example.

        **About α.** Kingma et al. (2014, eq. 9) minimise
            J^α = Σ_labelled −L + Σ_unlabelled −U + α · E_labelled[−log q(y|x)],   α = 0.1·N.
        J is a *sum* over the N training examples while the classification term is an
        *expectation* (a mean over the labelled set), so α = 0.1·N makes it weigh as if each of the
        N training examples contributed 0.1 × the mean cross-entropy. Dividing J^α by N, their
        classifier balances 0.1 · mean CE against (N_u/N) · mean(−U). The classifier's parameters
        only appear in those two terms (−L does not involve q(y|x)), so with our means the same
        balance is α = 0.1·N/N_u ≈ 0.1 when, as usual, almost all examples are unlabelled. That is
        the default: the paper's setting, written for per-example means. (J^α and this loss weigh
        the labelled −L differently — here a full mean, there N_l/N of the total — which only
        affects the encoder and decoder.)
        Larger α (1 to 50 are common in re-implementations) pulls q(y|x) towards a classifier of
        the labelled examples alone; α = 0 leaves it to the unlabelled bound and the labelled −L
        (which teaches the decoder what each class looks like). Change it with ``model.alpha``.

        x_lab: (n_lab, x_dim), y_lab: (n_lab,), x_unlab: (n_unlab, x_dim), all pixels in [0, 1].
        Returns (scalar loss, terms) with terms "labelled", "unlabelled", "classification"
        (the three means, detached) and "accuracy" (of q(y|x) on the labelled batch).
        Noise: ε for the labelled batch is drawn first, then for the unlabelled batch (see
        :meth:`labelled_loss`), both from ``generator``.
        """
        self._check_x(x_lab)
        y_lab = self._labels(y_lab, len(x_lab), x_lab.device)
        check_batch(x_unlab, self.x_dim, unit_interval=self.likelihood == "bernoulli", name="x_unlab")
        labelled = self.labelled_loss(x_lab, y_lab, n_samples, generator).mean()
        unlabelled = self.unlabelled_loss(x_unlab, n_samples, generator).mean()
        logits = self._classify(x_lab)
        classification = F.cross_entropy(logits, y_lab)
        total = labelled + unlabelled + self.alpha * classification
        accuracy = (logits.argmax(-1) == y_lab).float().mean()
        terms = {"labelled": labelled.detach(), "unlabelled": unlabelled.detach(),
                 "classification": classification.detach(), "accuracy": accuracy.detach()}
        return total, terms


__all__ = ["LIKELIHOODS", "VAE", "ConditionalVAE", "LabelConditioned", "M2",
           "check_labels"]
