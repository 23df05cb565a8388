"""Pictures of a VAE: image grids, reconstructions, the latent space, interpolations, traversals.

Each picture is split in two:

- a **pure computation** that returns tensors (``grid_image``, ``reconstruct``, ``encode_means``,
  ``normal_quantiles``, ``code_quantiles``, ``manifold_z``, ``interpolate``, ``interpolation_images``,
  ``traversal``), tested against oracles;
- a **plotting function** that draws those tensors and returns a :class:`matplotlib.figure.Figure`
  (``image_grid``, ``reconstruction_pairs``, ``latent_scatter``, ``manifold_grid``,
  ``interpolation_strip``, ``traversal_grid``).

Figures are built with :class:`matplotlib.figure.Figure`, not ``pyplot``: nothing is registered in
pyplot's global figure list and nothing is shown at import or call time. In a notebook, make the figure
the cell's last expression (or ``display(fig)``) to show it once; pass ``ax=`` to draw into an axes of
your own (e.g. from ``plt.subplots``), in which case that axes' figure is returned.

Images are ``(N, 784)`` (or ``(N, 28, 28)``, ``(N, 1, 28, 28)``) float tensors in [0, 1] or uint8;
they are drawn in grey levels with 0 black and 1 white (MNIST ink is white).

All model calls run under ``torch.no_grad()`` on the model's own device; returned tensors are on the CPU.

Used by: chapter 4 (grids, reconstructions, samples), chapter 5 (latent scatter, manifold grid,
interpolation, traversals), chapters 7-8 (grids).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.utils import make_grid

from .checks import check_positive_int

INTERPOLATION_METHODS = ("linear", "slerp")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free module)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _as_float_images(images: Tensor | np.ndarray, name: str = "images") -> Tensor:
    """Any accepted image batch -> (N, 1, side, side) float32 CPU tensor in [0, 1].

    Accepts (N, D) with D a perfect square, (N, side, side), (N, 1, side, side), or a single image
    (D,) / (side, side); float in [0, 1] or uint8 (divided by 255).
    """
    x = torch.as_tensor(images).detach().cpu()
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif torch.is_floating_point(x):
        x = x.float()
        if x.numel() and not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf values")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"{name} has values in [{x.min().item():.3g}, {x.max().item():.3g}], outside [0, 1]; "
                "pass pixel intensities in [0, 1] or uint8 images"
            )
    else:
        raise TypeError(f"{name} must be float in [0, 1] or uint8, got {x.dtype}")
    single_square = x.dim() == 2 and x.shape[0] == x.shape[1] and math.isqrt(x.shape[1]) ** 2 != x.shape[1]
    if x.dim() == 1 or single_square:
        x = x.unsqueeze(0)  # a single image: (D,) or (side, side)
    if x.dim() == 2:
        n, d = x.shape
        side = math.isqrt(d)
        if side * side != d:
            raise ValueError(f"{name} of shape {tuple(x.shape)}: {d} pixels is not a square image")
        x = x.reshape(n, 1, side, side)
    elif x.dim() == 3:
        x = x.unsqueeze(1)
    elif x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(
            f"{name} must be (N, 784), (N, 28, 28) or (N, 1, 28, 28) grey images, got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return x


def _as_batch(x: Tensor | np.ndarray, x_dim: int, name: str = "x") -> Tensor:
    """Images -> (N, x_dim) float32 in [0, 1] (uint8 divided by 255)."""
    imgs = _as_float_images(x, name)
    flat = imgs.reshape(len(imgs), -1)
    if flat.shape[1] != x_dim:
        raise ValueError(f"{name} has {flat.shape[1]} pixels per image, the model expects {x_dim}")
    return flat


def _latent_vector(z: Tensor | np.ndarray | Sequence[float], z_dim: int | None, name: str) -> Tensor:
    """z -> float32 (d,) CPU tensor; a (1, d) batch of one is accepted."""
    t = torch.as_tensor(z, dtype=torch.float32).detach().cpu()
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 1:
        raise ValueError(f"{name} must be a latent vector of shape (d,), got {tuple(t.shape)}")
    if z_dim is not None and t.shape[0] != z_dim:
        raise ValueError(f"{name} has {t.shape[0]} dimensions, the model has z_dim={z_dim}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return t


def _check_dims(dims: Sequence[int], z_dim: int, count: int | None = None) -> tuple[int, ...]:
    dims = tuple(int(d) for d in dims)
    if count is not None and len(dims) != count:
        raise ValueError(f"dims must name {count} latent dimensions, got {dims}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"dims must be distinct, got {dims}")
    for d in dims:
        if not 0 <= d < z_dim:
            raise ValueError(f"latent dimension {d} out of range for z_dim={z_dim}")
    return dims


def _decode_images(model: torch.nn.Module, z: Tensor) -> Tensor:
    """z: (N, z_dim) -> model.mean_image(z): (N, x_dim) in [0, 1] on the CPU."""
    with torch.no_grad():
        return model.mean_image(z.to(_device(model))).float().cpu()


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


# ----------------------------------------------------------------------------------------------
# image grids
# ----------------------------------------------------------------------------------------------
def grid_image(
    images: Tensor | np.ndarray, nrow: int = 8, padding: int = 2, pad_value: float = 0.5
) -> Tensor:
    """Tile images with ``torchvision.utils.make_grid``.

    Args:
        images: (N, 784), (N, 28, 28) or (N, 1, 28, 28); float in [0, 1] or uint8.
        nrow: images per row.
        padding: pixels between tiles; pad_value: their grey level (0.5 separates white-on-black digits).

    Returns:
        (H, W) float tensor in [0, 1]: channel 0 of ``make_grid`` (which repeats grey to 3 channels).

    Used by: chapters 4-8 through :func:`image_grid`.
    """
    x = _as_float_images(images)
    nrow = check_positive_int(nrow, "nrow")
    padding = check_positive_int(padding, "padding", minimum=0)
    return make_grid(x, nrow=nrow, padding=padding, pad_value=float(pad_value))[0]


def image_grid(
    images: Tensor | np.ndarray,
    nrow: int = 8,
    ax: Axes | None = None,
    title: str | None = None,
    padding: int = 2,
    pad_value: float = 0.5,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Draw a grid of grey images (0 black, 1 white) with no ticks; return the figure.

    Args:
        images: (N, 784), (N, 28, 28) or (N, 1, 28, 28); float in [0, 1] or uint8.
        nrow: images per row; ax: draw here instead of a new figure; title: axes title.

    Used by: chapter 4 (data, samples), chapter 5, chapters 7-8.
    """
    grid = grid_image(images, nrow=nrow, padding=padding, pad_value=pad_value)
    if figsize is None:
        h, w = grid.shape
        scale = min(8.0 / w, 8.0 / h) * 1.0
        figsize = (max(w * scale, 1.5), max(h * scale, 1.0) + (0.3 if title else 0.0))
    fig, ax = _new_axes(ax, figsize)
    ax.imshow(grid.numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------------------------
# reconstructions
# ----------------------------------------------------------------------------------------------
def reconstruct(model: torch.nn.Module, x: Tensor | np.ndarray) -> Tensor:
    """Deterministic reconstruction: the mean image of the posterior mean, E[x | z = mu(x)].

    x: (N, 784) in [0, 1] (or uint8 / (N, 28, 28)) -> (N, 784) in [0, 1], on the CPU.

    Used by: chapter 4 (reconstruction pairs).
    """
    xb = _as_batch(x, model.x_dim)
    with torch.no_grad():
        mu, _ = model.encode(xb.to(_device(model)))
        return model.mean_image(mu).float().cpu()


def reconstruction_pairs(
    model: torch.nn.Module,
    x: Tensor | np.ndarray,
    n: int = 8,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Originals (top row) above their reconstructions ``mean_image(mu(x))`` (bottom row).

    x: (N, 784) in [0, 1] or uint8; the first ``n`` images are shown.

    Used by: chapter 4.
    """
    xb = _as_batch(x, model.x_dim)[:n]
    n = len(xb)
    rec = reconstruct(model, xb)
    fig = image_grid(torch.cat([xb, rec]), nrow=n, ax=ax, title=title)
    axes = ax if ax is not None else fig.axes[0]
    side = math.isqrt(model.x_dim)
    axes.set_yticks([2 + side / 2, 2 * 2 + side * 1.5], ["original", "reconstruction"])
    return fig


# ----------------------------------------------------------------------------------------------
# latent space
# ----------------------------------------------------------------------------------------------
def encode_means(
    model: torch.nn.Module, x: Tensor | np.ndarray, dims: Sequence[int] | None = None, batch_size: int = 1000
) -> Tensor:
    """Posterior means mu(x), in batches: x (N, 784) -> (N, z_dim), or (N, len(dims)) for chosen dims.

    Used by: chapter 5 (latent scatter).
    """
    xb = _as_batch(x, model.x_dim)
    out = []
    with torch.no_grad():
        for i in range(0, len(xb), batch_size):
            mu, _ = model.encode(xb[i : i + batch_size].to(_device(model)))
            out.append(mu.float().cpu())
    mu = torch.cat(out)
    if dims is not None:
        mu = mu[:, list(_check_dims(dims, mu.shape[1]))]
    return mu


def latent_scatter(
    model: torch.nn.Module,
    x: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | Sequence[int] | None,
    ax: Axes | None = None,
    dims: Sequence[int] = (0, 1),
    title: str | None = None,
    s: float = 4.0,
    alpha: float = 0.7,
) -> Figure:
    """Scatter of the posterior means mu(x)[dims] coloured by digit label, with a legend.

    Args:
        x: (N, 784) in [0, 1] or uint8; labels: (N,) integer classes (None: one colour).
        dims: the two latent dimensions on the x and y axes (any two for z_dim > 2).

    The points form one ``PathCollection`` whose offsets are the encoded means, in the order of x.

    Used by: chapter 5.
    """
    if model.z_dim < 2:
        raise ValueError(f"latent_scatter needs z_dim >= 2, the model has z_dim={model.z_dim}")
    dims = _check_dims(dims, model.z_dim, count=2)
    mu = encode_means(model, x, dims=dims).numpy()
    fig, ax = _new_axes(ax, (6.0, 5.0))
    if labels is None:
        ax.scatter(mu[:, 0], mu[:, 1], s=s, alpha=alpha)
    else:
        lab = np.asarray(torch.as_tensor(labels).cpu()).astype(int).reshape(-1)
        if len(lab) != len(mu):
            raise ValueError(f"labels has {len(lab)} entries for {len(mu)} images")
        classes = np.unique(lab)
        vmax = max(int(classes.max()), 9)
        sc = ax.scatter(mu[:, 0], mu[:, 1], c=lab, cmap="tab10", vmin=-0.5, vmax=vmax + 0.5, s=s, alpha=alpha)
        handles, names = sc.legend_elements(num=list(classes))
        ax.legend(handles, [str(int(c)) for c in classes], title="digit", loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlabel(f"z[{dims[0]}] (posterior mean)")
    ax.set_ylabel(f"z[{dims[1]}] (posterior mean)")
    ax.set_title(title if title is not None else "Encoded inputs: posterior means")
    return fig


def normal_quantiles(n: int, lo: float = 0.05, hi: float = 0.95) -> Tensor:
    """(n,) standard-normal quantiles Φ⁻¹(linspace(lo, hi, n)) via ``torch.distributions.Normal.icdf``.

    Equal steps in probability, not in z: each grid cell covers the same prior mass, so the grid spends
    its cells where the prior (and, roughly, the aggregate posterior) puts the codes the decoder was
    trained on, instead of in the tails. ``lo`` > 0 and ``hi`` < 1 because Φ⁻¹(0) = -∞ and Φ⁻¹(1) = +∞.

    Used by: chapter 5 (manifold grid).
    """
    if not 0.0 < lo < hi < 1.0:
        raise ValueError(f"need 0 < lo < hi < 1, got lo={lo}, hi={hi}")
    p = torch.linspace(lo, hi, int(n), dtype=torch.float64)
    return torch.distributions.Normal(0.0, 1.0).icdf(p).float()


def code_quantiles(codes: Tensor | np.ndarray, n: int, lo: float = 0.005, hi: float = 0.995) -> Tensor:
    """(n, k) empirical quantiles of each column of ``codes`` (N, k) at probabilities linspace(lo, hi, n).

    The counterpart of :func:`normal_quantiles` for the codes themselves: column j holds n coordinates
    along latent dimension j with the same fraction of the codes, (hi - lo) / (n - 1), between
    neighbours, so a manifold grid built on them (``manifold_z(..., coords=...)``) covers where the
    encoder actually puts the data instead of where the prior says it should. Quantiles interpolate
    linearly between order statistics (``torch.quantile``'s default, as ``numpy.quantile``'s).
    0 <= lo < hi <= 1 (0 and 1 give the smallest and largest code).

    Used by: chapter 5 (manifold grid on the codes' quantiles).
    """
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"need 0 <= lo < hi <= 1, got lo={lo}, hi={hi}")
    c = torch.as_tensor(codes).detach().cpu().to(torch.float64)
    if c.dim() != 2 or len(c) == 0:
        raise ValueError(f"codes must be a non-empty (N, k) tensor, got shape {tuple(c.shape)}")
    if not torch.isfinite(c).all():
        raise ValueError("codes contains NaN or inf values")
    p = torch.linspace(lo, hi, int(n), dtype=torch.float64)
    return torch.quantile(c, p, dim=0).float()


def _grid_coords(n: int, lo: float, hi: float, coords: Tensor | np.ndarray | None) -> Tensor:
    """(n, 2) coordinates of a manifold grid along its two axes: the given ones, or normal quantiles."""
    if coords is None:
        return normal_quantiles(n, lo, hi).unsqueeze(1).expand(-1, 2)
    c = torch.as_tensor(coords, dtype=torch.float32).detach().cpu()
    if c.shape != (n, 2):
        raise ValueError(f"coords must have shape (n, 2) = ({n}, 2), got {tuple(c.shape)}")
    if not torch.isfinite(c).all():
        raise ValueError("coords contains NaN or inf values")
    if not bool((c[1:] > c[:-1]).all()):
        raise ValueError("coords must increase strictly along each axis")
    return c


def manifold_z(
    n: int = 20,
    dims: Sequence[int] = (0, 1),
    z_dim: int = 2,
    base: Tensor | Sequence[float] | None = None,
    lo: float = 0.05,
    hi: float = 0.95,
    coords: Tensor | np.ndarray | None = None,
) -> Tensor:
    """Latent codes of a manifold grid: (n, n, z_dim).

    Cell [i, j] (row i from the top, column j from the left) has z[dims[0]] = q[j, 0] and
    z[dims[1]] = q[n - 1 - i, 1]: the horizontal axis grows to the right and the vertical axis grows
    upwards, as in a plot. q is ``coords`` (n, 2), strictly increasing in each column (e.g. from
    :func:`code_quantiles`), or by default :func:`normal_quantiles` (n, lo, hi) on both axes (lo and hi
    are then unused). Other dimensions are taken from ``base`` (default: zeros, the prior mean).

    Used by: chapters 5, 8.
    """
    dims = _check_dims(dims, z_dim, count=2)
    q = _grid_coords(n, lo, hi, coords)
    z0 = torch.zeros(z_dim) if base is None else _latent_vector(base, z_dim, "base")
    z = z0.expand(n, n, z_dim).clone()
    z[:, :, dims[0]] = q[:, 0].view(1, n)
    z[:, :, dims[1]] = q[:, 1].flip(0).view(n, 1)
    return z


def manifold_grid(
    model: torch.nn.Module,
    n: int = 20,
    dims: Sequence[int] = (0, 1),
    base: Tensor | Sequence[float] | None = None,
    lo: float = 0.05,
    hi: float = 0.95,
    ax: Axes | None = None,
    title: str | None = None,
    coords: Tensor | np.ndarray | None = None,
) -> Figure:
    """Decode an n×n grid of latent codes (see :func:`manifold_z`): on inverse-normal-CDF spacing by
    default, or on the given ``coords`` (n, 2), e.g. the codes' own quantiles (:func:`code_quantiles`).

    Tick labels give the z values of a few rows/columns.

    Used by: chapter 5.
    """
    z = manifold_z(n, dims, model.z_dim, base, lo, hi, coords=coords)
    imgs = _decode_images(model, z.reshape(n * n, model.z_dim))
    default_title = f"Decoded z on Φ⁻¹({lo}..{hi}) spacing" if coords is None else "Decoded z on a grid"
    fig = image_grid(imgs, nrow=n, ax=ax, padding=0, figsize=(7.0, 7.0),
                     title=title if title is not None else default_title)
    axes = ax if ax is not None else fig.axes[0]
    side = math.isqrt(model.x_dim)
    q = _grid_coords(n, lo, hi, coords).numpy()
    idx = sorted({0, n // 2, n - 1})
    axes.set_xticks([side * (j + 0.5) for j in idx], [f"{q[j, 0]:.2f}" for j in idx])
    axes.set_yticks([side * (i + 0.5) for i in idx], [f"{q[n - 1 - i, 1]:.2f}" for i in idx])
    axes.set_xlabel(f"z[{dims[0]}]")
    axes.set_ylabel(f"z[{dims[1]}]")
    return fig


# ----------------------------------------------------------------------------------------------
# interpolation and traversal
# ----------------------------------------------------------------------------------------------
def interpolate(
    z0: Tensor | Sequence[float], z1: Tensor | Sequence[float], steps: int = 10, method: str = "linear"
) -> Tensor:
    """Path from z0 to z1 (both (d,)), endpoints included: (steps, d).

    - ``"linear"``: (1 - t) z0 + t z1.
    - ``"slerp"`` (Shoemake 1985; White 2016 for generative models):
      sin((1 - t) Ω)/sin Ω · z0 + sin(t Ω)/sin Ω · z1 with Ω the angle between z0 and z1. For vectors of
      equal norm the path stays on that sphere with equal angle steps. In high dimension prior samples
      concentrate near the sphere of radius √d; the linear midpoint of two of them has norm ≈ √(d/2), a
      region the prior (and so the decoder) rarely sees, while the spherical path stays typical.
      Parallel vectors (or a zero vector) fall back to linear; opposite vectors raise (no unique path).

    Computed in float64, returned as float32. t = linspace(0, 1, steps).

    Used by: chapter 5.
    """
    if method not in INTERPOLATION_METHODS:
        raise ValueError(f"method must be one of {INTERPOLATION_METHODS}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    a = _latent_vector(z0, None, "z0").double()
    b = _latent_vector(z1, None, "z1").double()
    if a.shape != b.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64).unsqueeze(1)
    linear = (1 - t) * a + t * b
    if method == "linear":
        return linear.float()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return linear.float()
    cos = torch.clamp(a @ b / (na * nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    if sin < 1e-7:
        if cos > 0:
            return linear.float()
        raise ValueError("z0 and z1 point in opposite directions: the spherical path is not unique")
    path = (torch.sin((1 - t) * omega) / sin) * a + (torch.sin(t * omega) / sin) * b
    return path.float()


def interpolation_images(
    model: torch.nn.Module, x0: Tensor | np.ndarray, x1: Tensor | np.ndarray, steps: int = 10,
    method: str = "linear",
) -> Tensor:
    """Decode the path between the posterior means of two images: (steps, 784) in [0, 1].

    x0, x1: one image each ((784,), (1, 784), (28, 28); float in [0, 1] or uint8).

    Used by: chapter 5.
    """
    mu = encode_means(model, torch.cat([_as_batch(x0, model.x_dim, "x0"), _as_batch(x1, model.x_dim, "x1")]))
    if len(mu) != 2:
        raise ValueError("x0 and x1 must be one image each")
    return _decode_images(model, interpolate(mu[0], mu[1], steps, method))


def interpolation_strip(
    model: torch.nn.Module,
    x0: Tensor | np.ndarray,
    x1: Tensor | np.ndarray,
    steps: int = 10,
    method: str | Sequence[str] = "linear",
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """One row per method: original x0, the decoded interpolation (steps images), original x1.

    ``method`` is "linear", "slerp" or a list of them (e.g. ``("linear", "slerp")`` to compare).

    Used by: chapter 5.
    """
    methods = [method] if isinstance(method, str) else list(method)
    a, b = _as_batch(x0, model.x_dim, "x0"), _as_batch(x1, model.x_dim, "x1")
    rows = [torch.cat([a, interpolation_images(model, a, b, steps, m), b]) for m in methods]
    fig = image_grid(torch.cat(rows), nrow=steps + 2, ax=ax,
                     title=title if title is not None else "original, decoded path, original")
    axes = ax if ax is not None else fig.axes[0]
    side = math.isqrt(model.x_dim)
    axes.set_yticks([2 + (side + 2) * r + side / 2 for r in range(len(methods))], methods)
    return fig


def traversal(
    model: torch.nn.Module, z: Tensor | Sequence[float], dim: int, values: Tensor | Sequence[float]
) -> Tensor:
    """Vary one latent dimension: decode z with z[dim] set to each of ``values``.

    z: (z_dim,) base code; values: (V,) -> (V, 784) mean images in [0, 1].

    Used by: chapter 5 (traversals of the most informative dimensions of the 20-D model).
    """
    base = _latent_vector(z, model.z_dim, "z")
    (dim,) = _check_dims([dim], model.z_dim)
    v = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    zs = base.expand(len(v), -1).clone()
    zs[:, dim] = v
    return _decode_images(model, zs)


def traversal_grid(
    model: torch.nn.Module,
    z: Tensor | Sequence[float],
    dims: Sequence[int],
    values: Tensor | Sequence[float],
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """One row per latent dimension in ``dims``: :func:`traversal` over ``values``; return the figure.

    Used by: chapter 5.
    """
    dims = _check_dims(dims, model.z_dim)
    v = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    imgs = torch.cat([traversal(model, z, d, v) for d in dims])
    fig = image_grid(imgs, nrow=len(v), ax=ax,
                     title=title if title is not None else "Latent traversals")
    axes = ax if ax is not None else fig.axes[0]
    side = math.isqrt(model.x_dim)
    axes.set_yticks([2 + (side + 2) * r + side / 2 for r in range(len(dims))], [f"z[{d}]" for d in dims])
    idx = sorted({0, len(v) // 2, len(v) - 1})
    axes.set_xticks([2 + (side + 2) * j + side / 2 for j in idx], [f"{v[j].item():.2g}" for j in idx])
    return fig
