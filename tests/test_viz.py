"""Tests of vae_core.viz: the pure computations against independent oracles, then what the figures draw.

Oracles: scipy.stats.norm.ppf and numpy.quantile (manifold spacing), arccos angles and norms (slerp),
torchvision's make_grid called here directly (image grids), model.encode called here directly (latent
scatter).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import norm  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from vae_core import viz  # noqa: E402
from vae_core.models import VAE  # noqa: E402


@pytest.fixture
def model2() -> VAE:
    torch.manual_seed(0)
    return VAE(784, 32, 2)


@pytest.fixture
def model5() -> VAE:
    torch.manual_seed(1)
    return VAE(784, 32, 5)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- manifold spacing
@pytest.mark.parametrize("n", [2, 7, 20])
def test_normal_quantiles_match_scipy_ppf(n: int) -> None:
    q = viz.normal_quantiles(n)
    expected = norm.ppf(np.linspace(0.05, 0.95, n))
    np.testing.assert_allclose(q.numpy(), expected, atol=1e-5)


def test_normal_quantiles_rejects_infinite_ends() -> None:
    with pytest.raises(ValueError, match="0 < lo < hi < 1"):
        viz.normal_quantiles(5, lo=0.0)
    with pytest.raises(ValueError):
        viz.normal_quantiles(5, lo=0.9, hi=0.1)


def test_manifold_z_layout_and_values() -> None:
    n = 6
    base = torch.tensor([0.0, 0.0, 0.7, -0.3])
    z = viz.manifold_z(n, dims=(1, 3), z_dim=4, base=base)
    assert z.shape == (n, n, 4)
    q = norm.ppf(np.linspace(0.05, 0.95, n))
    # columns: z[1] increases to the right; rows: z[3] decreases downwards (up is positive)
    np.testing.assert_allclose(z[0, :, 1].numpy(), q, atol=1e-5)
    np.testing.assert_allclose(z[:, 0, 3].numpy(), q[::-1], atol=1e-5)
    # the other dimensions stay at the base code
    assert torch.all(z[:, :, 0] == 0) and torch.all(z[:, :, 2] == base[2])
    with pytest.raises(ValueError, match="out of range"):
        viz.manifold_z(3, dims=(0, 4), z_dim=4)
    with pytest.raises(ValueError, match="distinct"):
        viz.manifold_z(3, dims=(1, 1), z_dim=4)


def test_manifold_grid_draws_decoded_codes(model2: VAE) -> None:
    n = 5
    fig = viz.manifold_grid(model2, n=n)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    # oracle: decode the scipy-spaced grid ourselves, in the same row/column layout
    q = torch.tensor(norm.ppf(np.linspace(0.05, 0.95, n)), dtype=torch.float32)
    # cell [i, j] = (q[j], q[n-1-i])
    zz = torch.stack(torch.meshgrid(q.flip(0), q, indexing="ij"), -1)[..., [1, 0]]
    with torch.no_grad():
        imgs = model2.mean_image(zz.reshape(-1, 2))
    expected = make_grid(imgs.reshape(-1, 1, 28, 28), nrow=n, padding=0)[0].numpy()
    np.testing.assert_allclose(drawn, expected, atol=1e-5)


def test_code_quantiles_match_numpy_quantile_and_split_the_codes_evenly() -> None:
    g = torch.Generator().manual_seed(4)
    codes = torch.cat([torch.randn(700, 2, generator=g), 3 + 0.2 * torch.randn(300, 2, generator=g)])
    q = viz.code_quantiles(codes, 11, lo=0.01, hi=0.99)
    assert q.shape == (11, 2)
    p = np.linspace(0.01, 0.99, 11)
    for j in range(2):  # oracle: numpy's quantile (linear interpolation between order statistics)
        np.testing.assert_allclose(q[:, j].numpy(), np.quantile(codes[:, j].double().numpy(), p), atol=1e-5)
        # between neighbouring coordinates lies the same fraction of the codes, 0.98 / 10
        counts = np.histogram(codes[:, j].numpy(), bins=q[:, j].numpy())[0]
        assert np.all(np.abs(counts - 98) <= 2)
    ends = viz.code_quantiles(codes, 3, lo=0.0, hi=1.0)
    torch.testing.assert_close(ends[[0, -1]], torch.stack([codes.min(0).values, codes.max(0).values]))
    with pytest.raises(ValueError, match="lo < hi"):
        viz.code_quantiles(codes, 5, lo=0.6, hi=0.4)
    with pytest.raises(ValueError, match=r"\(N, k\)"):
        viz.code_quantiles(codes[:, 0], 5)


def test_manifold_grid_on_given_coords(model2: VAE) -> None:
    coords = torch.tensor([[-4.0, -1.0], [0.5, 0.0], [2.0, 3.0]])
    z = viz.manifold_z(3, coords=coords)
    # cell [i, j] = (coords[j, 0], coords[n-1-i, 1])
    torch.testing.assert_close(z[0, 0], torch.tensor([-4.0, 3.0]))
    torch.testing.assert_close(z[2, 1], torch.tensor([0.5, -1.0]))
    fig = viz.manifold_grid(model2, n=3, coords=coords)
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    with torch.no_grad():
        imgs = model2.mean_image(z.reshape(-1, 2))
    expected = make_grid(imgs.reshape(-1, 1, 28, 28), nrow=3, padding=0)[0].numpy()
    np.testing.assert_allclose(drawn, expected, atol=1e-5)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["-4.00", "0.50", "2.00"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["3.00", "0.00", "-1.00"]
    with pytest.raises(ValueError, match="shape"):
        viz.manifold_z(4, coords=coords)
    with pytest.raises(ValueError, match="increase"):
        viz.manifold_z(3, coords=coords.flip(0))


# ---------------------------------------------------------------- interpolation
def test_linear_interpolation_endpoints_and_midpoint() -> None:
    z0, z1 = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([-1.0, 4.0, 0.5])
    path = viz.interpolate(z0, z1, steps=5, method="linear")
    assert path.shape == (5, 3)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    torch.testing.assert_close(path[2], (z0 + z1) / 2)
    # equal steps along the segment
    d = (path[1:] - path[:-1]).norm(dim=1)
    torch.testing.assert_close(d, torch.full((4,), (z1 - z0).norm().item() / 4))


def test_slerp_unit_vectors_stay_on_sphere_with_constant_angle_steps() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(20, generator=g, dtype=torch.float64)
    b = torch.randn(20, generator=g, dtype=torch.float64)
    a, b = a / a.norm(), b / b.norm()
    steps = 9
    path = viz.interpolate(a, b, steps=steps, method="slerp").double()
    assert path.shape == (steps, 20)
    torch.testing.assert_close(path[0], a, atol=1e-6, rtol=0)
    torch.testing.assert_close(path[-1], b, atol=1e-6, rtol=0)
    np.testing.assert_allclose(path.norm(dim=1).numpy(), 1.0, atol=1e-6)
    # oracle: angles via arccos of normalised dot products
    unit = path / path.norm(dim=1, keepdim=True)
    step_angles = np.arccos(np.clip((unit[1:] * unit[:-1]).sum(1).numpy(), -1, 1))
    total = np.arccos(float(a @ b))
    np.testing.assert_allclose(step_angles, total / (steps - 1), atol=1e-5)
    # the angle from a grows linearly in t
    from_a = np.arccos(np.clip((unit @ a).numpy(), -1, 1))
    np.testing.assert_allclose(from_a, np.linspace(0, total, steps), atol=1e-5)


def test_slerp_keeps_typical_norm_where_linear_does_not() -> None:
    # two orthogonal codes of norm sqrt(d): linear midpoint has norm sqrt(d/2), slerp keeps sqrt(d)
    d = 16
    a = torch.zeros(d)
    a[0] = d**0.5
    b = torch.zeros(d)
    b[1] = d**0.5
    mid_lin = viz.interpolate(a, b, 3, "linear")[1].norm().item()
    mid_slerp = viz.interpolate(a, b, 3, "slerp")[1].norm().item()
    assert mid_lin == pytest.approx((d / 2) ** 0.5, rel=1e-6)
    assert mid_slerp == pytest.approx(d**0.5, rel=1e-6)


def test_slerp_degenerate_cases() -> None:
    a = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(viz.interpolate(a, 3 * a, 4, "slerp"), viz.interpolate(a, 3 * a, 4, "linear"))
    with pytest.raises(ValueError, match="opposite"):
        viz.interpolate(a, -a, 4, "slerp")
    with pytest.raises(ValueError, match="method"):
        viz.interpolate(a, a, 4, "cubic")
    with pytest.raises(ValueError, match="steps"):
        viz.interpolate(a, a, 1)
    with pytest.raises(ValueError, match="same shape"):
        viz.interpolate(a, torch.zeros(3), 4)


def test_interpolation_images_decode_the_path(model5: VAE) -> None:
    x = _images(2)
    out = viz.interpolation_images(model5, x[0], x[1], steps=4, method="slerp")
    with torch.no_grad():
        mu, _ = model5.encode(x)
        expected = model5.mean_image(viz.interpolate(mu[0], mu[1], 4, "slerp"))
    torch.testing.assert_close(out, expected)
    fig = viz.interpolation_strip(model5, x[0], x[1], steps=4, method=("linear", "slerp"))
    grid = np.asarray(fig.axes[0].images[0].get_array())
    assert grid.shape == (2 + 2 * 30, 2 + 6 * 30)  # 2 rows of 1 + 4 + 1 tiles


# ---------------------------------------------------------------- image grids
@pytest.mark.parametrize("shape", [(6, 784), (6, 28, 28), (6, 1, 28, 28)])
def test_image_grid_pixels_equal_make_grid(shape: tuple[int, ...]) -> None:
    imgs = _images(6).reshape(shape)
    fig = viz.image_grid(imgs, nrow=4, title="six")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "six" and len(ax.images) == 1
    expected = make_grid(_images(6).reshape(6, 1, 28, 28), nrow=4, padding=2, pad_value=0.5)[0].numpy()
    drawn = np.asarray(ax.images[0].get_array())
    assert drawn.shape == (2 + 2 * 30, 2 + 4 * 30)
    np.testing.assert_array_equal(drawn, expected)
    assert ax.images[0].get_clim() == (0.0, 1.0)


def test_image_grid_uint8_and_given_axes() -> None:
    u8 = (torch.arange(2 * 784) % 256).to(torch.uint8).reshape(2, 784)
    fig0 = Figure()
    ax = fig0.add_subplot(1, 2, 2)
    fig = viz.image_grid(u8, nrow=2, ax=ax)
    assert fig is fig0
    expected = make_grid(u8.reshape(2, 1, 28, 28).float() / 255, nrow=2, padding=2, pad_value=0.5)[0]
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), expected.numpy(), atol=1e-7)


def test_image_grid_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="outside"):
        viz.image_grid(torch.full((2, 784), 2.0))
    with pytest.raises(ValueError, match="NaN"):
        viz.image_grid(torch.full((2, 784), float("nan")))
    with pytest.raises(ValueError, match="square"):
        viz.image_grid(torch.rand(2, 783))
    with pytest.raises(TypeError):
        viz.image_grid(torch.ones(2, 784, dtype=torch.int64))


def test_reconstruction_pairs(model2: VAE) -> None:
    x = _images(10)
    rec = viz.reconstruct(model2, x)
    with torch.no_grad():
        expected = model2.mean_image(model2.encode(x)[0])
    torch.testing.assert_close(rec, expected)
    fig = viz.reconstruction_pairs(model2, x, n=3)
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    grid = make_grid(torch.cat([x[:3], expected[:3]]).reshape(6, 1, 28, 28), nrow=3, pad_value=0.5)[0]
    np.testing.assert_allclose(drawn, grid.numpy(), atol=1e-6)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["original", "reconstruction"]


# ---------------------------------------------------------------- latent scatter
def test_latent_scatter_points_are_encoded_means(model2: VAE) -> None:
    x = _images(50)
    labels = torch.arange(50) % 10
    fig = viz.latent_scatter(model2, x, labels)
    ax = fig.axes[0]
    (pc,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    with torch.no_grad():
        mu, _ = model2.encode(x)
    np.testing.assert_allclose(pc.get_offsets(), mu.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(pc.get_array(), labels.numpy())
    legend = ax.get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == [str(i) for i in range(10)]


def test_latent_scatter_chosen_dims_of_higher_dim_model(model5: VAE) -> None:
    x = _images(30)
    fig = viz.latent_scatter(model5, x, None, dims=(3, 1))
    (pc,) = fig.axes[0].collections
    with torch.no_grad():
        mu, _ = model5.encode(x)
    np.testing.assert_allclose(pc.get_offsets(), mu[:, [3, 1]].numpy(), rtol=1e-6, atol=1e-6)
    assert fig.axes[0].get_xlabel().startswith("z[3]")
    with pytest.raises(ValueError, match="labels"):
        viz.latent_scatter(model5, x, torch.zeros(5))
    with pytest.raises(ValueError, match="2 latent"):
        viz.latent_scatter(model5, x, None, dims=(0,))


# ---------------------------------------------------------------- traversal
def test_traversal_sets_one_dimension(model5: VAE) -> None:
    z = torch.tensor([0.1, -0.2, 0.3, 0.4, -0.5])
    values = torch.linspace(-2, 2, 7)
    out = viz.traversal(model5, z, 2, values)
    zs = z.repeat(7, 1)
    zs[:, 2] = values
    with torch.no_grad():
        torch.testing.assert_close(out, model5.mean_image(zs))
    fig = viz.traversal_grid(model5, z, dims=[4, 2], values=values)
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    assert drawn.shape == (2 + 2 * 30, 2 + 7 * 30)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["z[4]", "z[2]"]
    with pytest.raises(ValueError, match="z_dim"):
        viz.traversal(model5, torch.zeros(3), 0, values)


def test_no_pyplot_figures_are_created(model2: VAE) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    viz.image_grid(_images(4))
    viz.manifold_grid(model2, n=3)
    assert plt.get_fignums() == before


@pytest.mark.parametrize(("kwargs", "match"), [({"nrow": 0}, "nrow"), ({"nrow": 2.5}, "nrow"),
                                               ({"padding": -1}, "padding")])
def test_grid_arguments_get_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.grid_image(torch.rand(4, 784), **kwargs)
