r"""VQ-VAE: vector quantisation with a straight-through gradient (van den Oord et al. 2017).

The encoder maps x to ``n_positions`` vectors z_e of ``code_dim`` dimensions; each is replaced by
its nearest codebook vector z_q (:func:`nearest_codes`, squared Euclidean distance); the decoder
reads the z_q. The nearest-neighbour step has no gradient, so the encoder gets the decoder's
gradient at z_q copied onto z_e (straight-through: z_e + (z_q − z_e).detach()). The codebook
learns from the codebook loss ‖sg[z_e] − z_q‖², the encoder is pulled towards its codes by the
commitment loss β‖z_e − sg[z_q]‖². Per example (nats and squared distances, summed over positions):

    loss = −log p(x | z_q) + ‖sg[z_e] − z_q‖² + β ‖z_e − sg[z_q]‖².

With a uniform prior over codes the posterior is a point mass and KL = n_positions · log n_codes,
a constant: the ELBO is log p(x | z_q) − n_positions · log n_codes. Samples need a prior over the
codes; :func:`fit_code_prior` fits the simplest, an independent categorical per position.

Used by: chapter 11 (``notebooks/11_discrete_latents.ipynb``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .checks import check_batch, check_positive_int
from .distributions import bernoulli_log_prob

CODEBOOK_INITS = ("normal", "uniform")


def nearest_codes(z_e: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest codebook vector (squared Euclidean distance) for every vector of z_e.

    z_e: (..., code_dim); codebook: (n_codes, code_dim). Returns (...) int64 in [0, n_codes).
    Ties go to the lowest index. Uses ‖z‖² − 2 z·c + ‖c‖² (one matrix product).
    """
    if not isinstance(z_e, Tensor) or not isinstance(codebook, Tensor):
        raise TypeError("z_e and codebook must be torch tensors")
    if codebook.dim() != 2 or len(codebook) == 0:
        raise ValueError(f"codebook must have shape (n_codes >= 1, code_dim), got {tuple(codebook.shape)}")
    if z_e.dim() < 1 or z_e.shape[-1] != codebook.shape[1]:
        raise ValueError(f"z_e must end in code_dim = {codebook.shape[1]}, got {tuple(z_e.shape)}")
    if not torch.isfinite(z_e).all() or not torch.isfinite(codebook).all():
        raise ValueError("z_e and codebook must be finite (no NaN or inf)")
    flat = z_e.reshape(-1, z_e.shape[-1])
    d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.T
         + codebook.pow(2).sum(1)[None])
    return d.argmin(1).reshape(z_e.shape[:-1])


class VQVAE(nn.Module):
    """An MLP VQ-VAE for flattened images with a Bernoulli decoder.

    Encoder: x_dim → h_dim (ReLU) → n_positions · code_dim. Codebook: (n_codes, code_dim), initialised
    by ``init``: "normal" — standard normal entries, on the scale of the encoder's first outputs;
    "uniform" — uniform in ±1/n_codes, as in the original implementation, which here leaves most
    codes far from every encoder output (dead). Decoder: n_positions · code_dim → h_dim (ReLU) →
    x_dim logits. commitment: β of the commitment loss.

    Used by: chapter 11, tests.
    """

    def __init__(self, x_dim: int = 784, h_dim: int = 256, n_positions: int = 16, code_dim: int = 8,
                 n_codes: int = 64, commitment: float = 0.25, init: str = "normal") -> None:
        super().__init__()
        self.x_dim = check_positive_int(x_dim, "x_dim")
        self.h_dim = check_positive_int(h_dim, "h_dim")
        self.n_positions = check_positive_int(n_positions, "n_positions")
        self.code_dim = check_positive_int(code_dim, "code_dim")
        self.n_codes = check_positive_int(n_codes, "n_codes", minimum=2)
        commitment = float(commitment)
        if not (commitment >= 0.0) or not math.isfinite(commitment):
            raise ValueError(f"commitment must be a finite number >= 0, got {commitment!r}")
        self.commitment = commitment
        if init not in CODEBOOK_INITS:
            raise ValueError(f"init must be one of {CODEBOOK_INITS}, got {init!r}")
        self.init = init
        flat = n_positions * code_dim
        self.encoder = nn.Sequential(nn.Linear(x_dim, h_dim), nn.ReLU(), nn.Linear(h_dim, flat))
        codebook = torch.empty(n_codes, code_dim)
        if init == "normal":
            codebook.normal_()
        else:
            codebook.uniform_(-1 / n_codes, 1 / n_codes)
        self.codebook = nn.Parameter(codebook)
        self.decoder = nn.Sequential(nn.Linear(flat, h_dim), nn.ReLU(), nn.Linear(h_dim, x_dim))

    def config(self) -> dict[str, Any]:
        """The constructor arguments (used by checkpoints and the model cache)."""
        return {"x_dim": self.x_dim, "h_dim": self.h_dim, "n_positions": self.n_positions,
                "code_dim": self.code_dim, "n_codes": self.n_codes, "commitment": self.commitment,
                "init": self.init}

    def encode(self, x: Tensor) -> Tensor:
        """x: (batch, x_dim) in [0, 1] → z_e (batch, n_positions, code_dim), before quantisation."""
        x = check_batch(x, self.x_dim, dtype=self.codebook.dtype)
        return self.encoder(x).reshape(len(x), self.n_positions, self.code_dim)

    def quantize(self, x: Tensor) -> Tensor:
        """x → the code index at every position, (batch, n_positions) int64."""
        with torch.no_grad():
            return nearest_codes(self.encode(x), self.codebook)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """indices: (batch, n_positions) code indices → pixel logits (batch, x_dim)."""
        if indices.shape[-1:] != (self.n_positions,):
            raise ValueError(f"indices must end in n_positions = {self.n_positions}, got "
                             f"{tuple(indices.shape)}")
        if indices.min() < 0 or indices.max() >= self.n_codes:
            raise ValueError(f"code indices must lie in [0, {self.n_codes})")
        return self.decoder(self.codebook[indices].flatten(-2))


def vq_loss(model: VQVAE, x: Tensor, y: Tensor | None = None, *, beta: float = 1.0,
            generator: torch.Generator | None = None) -> tuple[Tensor, Mapping[str, Tensor]]:
    """The VQ-VAE training loss for :func:`vae_core.train.fit` (mean over the batch).

    −log p(x | z_q) + ‖sg[z_e] − z_q‖² + commitment · ‖z_e − sg[z_q]‖², the decoder reading
    z_e + (z_q − z_e).detach() (straight-through). ``beta`` and ``generator`` are fit's and unused
    (nothing is sampled; the commitment weight is the model's). Terms (batch,): ``"rec"`` =
    log p(x | z_q) in nats, ``"elbo"`` = rec − n_positions · log n_codes (uniform prior over codes),
    ``"codebook"`` and ``"commitment"`` (the squared distance ‖z_e − z_q‖², unweighted).
    """
    if y is not None:
        raise ValueError("vq_loss takes no labels")
    z_e = model.encode(x)
    idx = nearest_codes(z_e.detach(), model.codebook.detach())
    z_q = model.codebook[idx]
    codebook_term = (z_e.detach() - z_q).pow(2).sum((-1, -2))
    commitment_term = (z_e - z_q.detach()).pow(2).sum((-1, -2))
    z_st = z_e + (z_q - z_e).detach()
    rec = bernoulli_log_prob(x, model.decoder(z_st.flatten(-2)))
    loss = (-rec + codebook_term + model.commitment * commitment_term).mean()
    kl = model.n_positions * math.log(model.n_codes)
    return loss, {"rec": rec.detach(), "elbo": rec.detach() - kl,
                  "codebook": codebook_term.detach(), "commitment": commitment_term.detach()}


class CodebookUsage(NamedTuple):
    """How a set of code indices uses the codebook.

    counts: (n_codes,) how often each code occurs; perplexity: exp(entropy of the code
    frequencies), the effective number of codes in use (1 … n_codes); dead: codes never used.
    """

    counts: Tensor
    perplexity: float
    dead: int


def codebook_usage(indices: Tensor, n_codes: int) -> CodebookUsage:
    """Counts, perplexity and dead codes of ``indices`` (any shape, values in [0, n_codes))."""
    n_codes = check_positive_int(n_codes, "n_codes")
    if indices.numel() == 0:
        raise ValueError("indices is empty")
    if indices.dtype not in (torch.int64, torch.int32) or indices.min() < 0 or indices.max() >= n_codes:
        raise ValueError(f"indices must be integers in [0, {n_codes})")
    counts = torch.bincount(indices.reshape(-1).long(), minlength=n_codes)
    p = counts.double() / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return CodebookUsage(counts, math.exp(entropy), int((counts == 0).sum()))


def fit_code_prior(indices: Tensor, n_codes: int, smoothing: float = 1.0) -> Tensor:
    """An independent categorical prior per position fitted by counting: log-probabilities.

    indices: (N, n_positions) codes of the training images; smoothing: pseudo-count added to every
    code (> 0 keeps unseen codes possible). Returns (n_positions, n_codes) log-probabilities, the
    maximum-likelihood (smoothed) fit of p(c) = Π_j p_j(c_j).
    """
    n_codes = check_positive_int(n_codes, "n_codes")
    if indices.dim() != 2:
        raise ValueError(f"indices must have shape (N, n_positions), got {tuple(indices.shape)}")
    if not smoothing > 0 or not math.isfinite(smoothing):
        raise ValueError(f"smoothing must be a finite number > 0, got {smoothing!r}")
    if indices.min() < 0 or indices.max() >= n_codes:
        raise ValueError(f"indices must lie in [0, {n_codes})")
    counts = torch.stack([torch.bincount(col, minlength=n_codes) for col in indices.long().T]).double()
    counts = counts + smoothing
    return (counts / counts.sum(1, keepdim=True)).log()


def sample_codes(log_prior: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n draws of codes from an independent prior (n_positions, n_codes) → (n, n_positions) int64."""
    n = check_positive_int(n, "n")
    probs = log_prior.exp()
    return torch.multinomial(probs, n, replacement=True, generator=generator).T.contiguous()


__all__ = ["CODEBOOK_INITS", "nearest_codes", "VQVAE", "vq_loss", "CodebookUsage", "codebook_usage",
           "fit_code_prior", "sample_codes"]
