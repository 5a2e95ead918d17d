"""Rendering a field along medphys geometries: the closed form of a Gaussian's line integrals,
the voxelised projection at the discretisation floor, gradients, and bad input."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from medphys import Grid, neural
from medphys.simulators import ConeBeam, FanBeam, ParallelBeam, ProjectionGeometry, xray


class GaussianField(neural.AbstractField):
    """μ(x) = a · exp(−|x − c|² / 2s²) in world mm (isotropic grids): line integrals in closed form."""

    def __init__(self, domain: Grid, centre_mm, sigma_mm: float, peak: float = 0.02) -> None:
        self.domain, self.dim, self.scale = domain, 2 if domain.shape[2] == 1 else 3, peak
        self.centre = np.asarray(centre_mm, np.float64)
        self.sigma = float(sigma_mm)

    def __call__(self, u):
        lead = (1,) * (u.ndim - 1)
        shape = jnp.asarray(self.domain.shape[: self.dim], u.dtype).reshape(*lead, -1)
        idx = u * shape - 0.5
        a = jnp.asarray(self.domain.affine[: self.dim, : self.dim], u.dtype)
        world = idx @ a.T + jnp.asarray(self.domain.affine[: self.dim, 3], u.dtype).reshape(
            *lead, -1
        )
        c = jnp.asarray(self.centre[: self.dim], u.dtype).reshape(*lead, -1)
        r2 = jnp.sum((world - c) ** 2, axis=-1)
        inside = jnp.all((u >= 0) & (u <= 1), axis=-1)
        return jnp.where(inside, self.scale * jnp.exp(-r2 / (2 * self.sigma**2)), 0.0)

    def line_integrals(self, geometry) -> np.ndarray:
        """Closed form: a·s·√(2π)·exp(−r²/2s²), r the distance from the centre to the ray."""
        geometry = geometry.with_rows_for(self.domain) if geometry.n_rows is None else geometry
        rays = jax.vmap(lambda v: geometry.rays(v, jnp.float64))(jnp.arange(geometry.n_views))
        o, d = np.asarray(rays.origins), np.asarray(rays.directions)
        if self.dim == 2:
            o, d = o[..., :2], d[..., :2] / np.linalg.norm(d[..., :2], axis=-1, keepdims=True)
        w = self.centre[: self.dim] - o
        r2 = np.sum(w**2, -1) - np.sum(w * d, -1) ** 2
        return self.scale * self.sigma * math.sqrt(2 * math.pi) * np.exp(-r2 / (2 * self.sigma**2))


DOMAIN_2D = Grid.create((40, 40, 1), spacing_mm=2.0)
DOMAIN_3D = Grid.create((24, 24, 24), spacing_mm=2.0)
_R = np.array([[np.cos(0.4), -np.sin(0.4), 0.0], [np.sin(0.4), np.cos(0.4), 0.0], [0.0, 0.0, 1.0]])
OBLIQUE_3D = Grid(
    (24, 24, 24),
    np.block(
        [[2.0 * _R, (-2.0 * _R @ np.full(3, 11.5))[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]]
    ),
)


def _geometries():
    cone = ConeBeam.create(
        n_views=6, n_u=40, n_v=40, du_mm=2.5, dv_mm=2.5, sod_mm=200.0, sdd_mm=400.0
    )
    return [
        ("parallel-2d", DOMAIN_2D, ParallelBeam.create(n_views=7, n_u=60, du_mm=1.5)),
        (
            "fan-2d",
            DOMAIN_2D,
            FanBeam.create(n_views=7, n_u=80, du_mm=2.0, sod_mm=150.0, sdd_mm=300.0),
        ),
        ("cone", DOMAIN_3D, cone),
        (
            "helical",
            DOMAIN_3D,
            ConeBeam.create(
                n_views=6,
                n_u=40,
                n_v=12,
                du_mm=2.5,
                dv_mm=2.5,
                sod_mm=200.0,
                sdd_mm=400.0,
                pitch_mm=12.0,
            ),
        ),
        (
            "matrix",
            DOMAIN_3D,
            ProjectionGeometry.from_projection_matrices(
                cone.as_projection_geometry().projection_matrices(), n_u=40, n_v=40, du_mm=2.5
            ),
        ),
        ("cone-oblique-grid", OBLIQUE_3D, cone),
    ]


@pytest.mark.parametrize(
    "name,domain,geometry",
    # the parallel beam in the slow tier (about 4 s): test_neural_fit fits and differentiates
    # renderings of parallel beams in the default tier, and the fan beam here keeps 2-D
    [
        pytest.param(*g, marks=pytest.mark.slow) if g[0] == "parallel-2d" else g
        for g in _geometries()
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_render_equals_closed_form_line_integrals(name, domain, geometry):
    """A Gaussian blob (σ = 4 mm, 2 voxels; 4.7 σ from every face) inside the box: the midpoint rule at the
    minimum budget is exact to 1e-4 of the peak line integral."""
    field = GaussianField(domain, (2.0, -3.0, 1.5), 4.0)
    got = np.asarray(neural.render(field, geometry))
    want = field.line_integrals(geometry)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) < 1e-4 * np.max(want), np.max(np.abs(got - want)) / np.max(
        want
    )


def _grid_like(domain: Grid, factor: int) -> Grid:
    """A grid ``factor`` times finer in x and y over the same box (2-D: one slice)."""
    n = domain.shape[0] * factor
    h = float(domain.spacing_mm[0]) / factor
    c = domain.center_mm
    return Grid.create(
        (n, n, domain.shape[2]), spacing_mm=(h, h, float(domain.spacing_mm[2])), center_mm=c
    )


@pytest.mark.slow  # about 5 s: a convergence study; the closed-form tests above keep render exact
def test_render_matches_voxelised_projection_at_the_discretisation_floor():
    """A hash-grid field (random weights, not smooth at the box edge): `xray.project` of the
    field sampled on ever finer grids converges to `render` (about second order inside, first
    order at the box edge), to below 0.5 % of the largest line integral at 8× the domain's
    resolution."""
    domain = Grid.create((24, 24, 1), spacing_mm=2.0)
    field = neural.HashGridField(jax.random.key(3), domain, levels=6, log2_table=10, base=4)
    geometry = FanBeam.create(n_views=9, n_u=64, du_mm=1.5, sod_mm=150.0, sdd_mm=300.0)
    rendered = np.asarray(neural.render(field, geometry, n_samples=8 * 34))
    errors = []
    for factor in (2, 4, 8):
        fine = _grid_like(domain, factor)
        projected = np.asarray(xray.project(neural.to_volume(field, fine), geometry))
        errors.append(np.max(np.abs(projected - rendered)) / np.max(rendered))
    assert errors[-1] < 5e-3, errors
    assert errors[0] > 2.5 * errors[1] and errors[1] > 2.5 * errors[2], errors


def test_rendering_loss_gradients_pass_check_grads():
    """Gradients of a squared rendering loss with respect to every parameter of a hash-grid and
    a Fourier field, in float64, against finite differences (stratified jitter fixed by a key)."""
    domain = Grid.create((8, 8, 1), spacing_mm=3.0)
    geometry = ParallelBeam.create(n_views=3, n_u=10, du_mm=3.0)
    for field in (
        neural.HashGridField(
            jax.random.key(0), domain, levels=3, log2_table=5, base=2, width=8, layers=1
        ),
        neural.FourierField(jax.random.key(1), domain, n_frequencies=4, width=8, layers=1),
    ):
        rays = neural.trace_rays(geometry, domain)
        rays = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), rays)
        graphdef, params, rest = nnx.split(field, nnx.Param, ...)
        # hash tables start at ±1e-4 and biases at 0, which puts every ReLU at its kink: spread
        # the table to O(1) so that finite differences see a smooth function
        params = jax.tree_util.tree_map_with_path(
            lambda path, x: jnp.asarray(x, jnp.float64) * (1e4 if "table" in str(path) else 1.0),
            params,
        )
        target = jnp.linspace(0.0, 0.5, rays.n_rays)
        key = jax.random.key(7)

        def loss(p, graphdef=graphdef, rest=rest, rays=rays, target=target, k=key):
            f = nnx.merge(graphdef, p, rest)
            return jnp.sum((neural.integrate(f, rays, n_samples=16, key=k) - target) ** 2)

        # jitted: check_grads evaluates the loss many times, each eager call is slow
        check_grads(
            jax.jit(loss), (params,), order=1, modes=("rev",), atol=1e-6, rtol=1e-5, eps=1e-6
        )


def test_bad_input_is_refused_before_any_work():
    domain = Grid.create((16, 16, 1), spacing_mm=2.0)
    field = neural.VoxelField(domain)
    far = ParallelBeam.create(n_views=3, n_u=8, du_mm=1.0, isocenter_mm=(500.0, 0.0))
    with pytest.raises(ValueError, match="no ray of the geometry meets the field's box"):
        neural.render(field, far)
    near = ParallelBeam.create(n_views=3, n_u=24, du_mm=2.0)
    with pytest.raises(ValueError, match=r"`n_samples` must be an integer >= 19"):
        neural.render(field, near, n_samples=10)
    with pytest.raises(TypeError, match=r"`domain` must be a medphys\.Grid"):
        neural.HashGridField(jax.random.key(0), (16, 16, 1))
    with pytest.raises(ValueError, match="`scale` must be a finite number > 0"):
        neural.VoxelField(domain, scale=-1.0)


def test_rays_parallel_to_an_axis_outside_the_box_have_no_chord():
    """A ray running along y at x outside the box meets nothing (the slab test's parallel case);
    one inside runs the box's full length."""
    domain = Grid.create((16, 16, 1), spacing_mm=2.0)
    shifted = ParallelBeam.create(n_views=1, n_u=4, du_mm=20.0, u_offset_mm=0.0)
    rays = neural.trace_rays(shifted, domain)
    lengths = np.asarray(rays.length_mm).reshape(-1)
    np.testing.assert_allclose(lengths, [0.0, 32.0, 32.0, 0.0])
