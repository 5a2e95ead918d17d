"""Cone-beam and arbitrary-pose projection: closed-form ellipsoid chords, agreement with the
planar path, matched adjoint (voxel-driven gather and scatter transposes), gradients w.r.t. the
volume and a 6-DoF pose."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from medphys import Volume
from medphys.simulators.geometry import ConeBeam, FanBeam, ProjectionGeometry
from medphys.simulators.xray import Joseph, Trilinear, _projector, backproject, project
from medphys.simulators.xray._joseph3d_gather import footprint_bounds as gather_bounds

CENTRE = np.array([5.0, -3.0, 4.0])
SEMI = np.array([40.0, 30.0, 25.0])


def _ellipsoid_volume(n: int, spacing: float, ss: int = 3) -> Volume:
    """Occupancy of the ellipsoid (supersampled ss³) on an n³ grid centred on the origin."""
    c = (np.arange(n) - (n - 1) / 2) * spacing
    off = ((np.arange(ss) + 0.5) / ss - 0.5) * spacing
    occ = np.zeros((n, n, n))
    for ox in off:
        for oy in off:
            for oz in off:
                q = (
                    ((c[:, None, None] + ox - CENTRE[0]) / SEMI[0]) ** 2
                    + ((c[None, :, None] + oy - CENTRE[1]) / SEMI[1]) ** 2
                    + ((c[None, None, :] + oz - CENTRE[2]) / SEMI[2]) ** 2
                )
                occ += q <= 1.0
    return Volume.create(occ / ss**3, spacing_mm=spacing)


def _chords(g) -> np.ndarray:
    out = []
    for view in range(g.n_views):
        r = g.rays(view, jnp.float64)
        o = (np.asarray(r.origins) - CENTRE) / SEMI
        d = np.asarray(r.directions) / SEMI
        a, b = np.sum(d * d, -1), 2 * np.sum(o * d, -1)
        disc = b * b - 4 * a * (np.sum(o * o, -1) - 1)
        out.append(np.sqrt(np.maximum(disc, 0.0)) / a)
    return np.stack(out)


def _rel(p, ref) -> float:
    return float(np.linalg.norm(np.asarray(p) - ref) / np.linalg.norm(ref))


GEOMETRY = dict(n_views=6, n_u=64, n_v=48, du_mm=4.0, dv_mm=4.0, sod_mm=300.0, sdd_mm=500.0)


@pytest.mark.parametrize("sampling", [Joseph(), Trilinear()])
def test_cone_line_integrals_through_an_ellipsoid_converge_to_the_closed_form(sampling):
    g = ConeBeam.create(**GEOMETRY, start_rad=0.3)
    ref = _chords(g)
    coarse = _rel(project(_ellipsoid_volume(32, 4.0), g, sampling=sampling), ref)
    fine = _rel(project(_ellipsoid_volume(64, 2.0), g, sampling=sampling), ref)
    # measured (Joseph / trilinear): 5.8 % / 5.9 % at 4 mm voxels, 3.0 % / 3.1 % at 2 mm: the
    # partial-volume floor of the voxelised ellipsoid, first order in the voxel size
    assert fine < 0.035
    assert 1.6 < coarse / fine < 2.4


def test_central_row_equals_the_planar_fan_projector():
    rng = np.random.default_rng(0)
    vol = Volume.create(rng.random((24, 20, 5)), spacing_mm=(1.5, 1.5, 2.0))
    cone = ConeBeam.create(
        n_views=7, n_u=40, n_v=5, du_mm=1.7, dv_mm=1.0, sod_mm=80.0, sdd_mm=140.0
    )
    fan = FanBeam.create(
        n_views=7, n_u=40, du_mm=1.7, sod_mm=80.0, sdd_mm=140.0, n_rows=1, dv_mm=1.0
    )
    mid = np.asarray(project(vol, cone))[:, :, 2]
    planar = np.asarray(project(vol, fan))[:, :, 0]
    np.testing.assert_allclose(mid, planar, rtol=1e-10, atol=1e-10)


def test_cone_beam_and_its_projection_geometry_agree():
    vol = _ellipsoid_volume(32, 4.0, ss=1)
    g = ConeBeam.create(**GEOMETRY, pitch_mm=20.0, u_offset_mm=3.0)
    pg = g.as_projection_geometry()
    np.testing.assert_allclose(
        np.asarray(project(vol, g)), np.asarray(project(vol, pg)), rtol=1e-10, atol=1e-10
    )


def _tilted_views() -> ProjectionGeometry:
    """A tomosynthesis-like sweep with a tilted detector (no axis is dominant everywhere)."""
    angles = np.linspace(-0.4, 0.4, 4)
    src = np.stack([300.0 * np.sin(angles), -300.0 * np.cos(angles), 40.0 * angles], -1)
    centre = np.tile([0.0, 150.0, 0.0], (4, 1))
    e_u = np.tile([np.cos(0.3), np.sin(0.3), 0.0], (4, 1))
    e_v = np.tile([-np.sin(0.3) * 0.2, np.cos(0.3) * 0.2, 1.0], (4, 1))
    e_v -= np.sum(e_v * e_u, -1, keepdims=True) * e_u
    return ProjectionGeometry.create(
        sources_mm=src,
        detector_centers_mm=centre,
        u_axes=e_u,
        v_axes=e_v,
        n_u=20,
        n_v=16,
        du_mm=3.0,
        dv_mm=3.0,
    )


def _adjoint_gap(vol, g, dtype, sampling=None) -> float:
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.random(vol.shape), dtype)
    ax = project(vol.with_data(x), g, sampling=sampling)
    y = jnp.asarray(rng.random(ax.shape), dtype)
    aty = backproject(y, g, like=vol, sampling=sampling).data
    assert ax.dtype == dtype and aty.dtype == dtype
    lhs = float(jnp.sum(ax.astype(jnp.float64) * y))
    rhs = float(jnp.sum(x.astype(jnp.float64) * aty))
    return abs(lhs - rhs) / abs(lhs)


def _small_cases():
    vol = Volume.create(np.zeros((10, 8, 6)), spacing_mm=(2.0, 2.5, 3.0))
    kw = dict(n_u=16, n_v=12, du_mm=3.0, dv_mm=3.5, sod_mm=100.0, sdd_mm=180.0)
    cone = ConeBeam.create(n_views=5, **kw)
    helical = ConeBeam.create(
        n_views=7, **kw, pitch_mm=12.0, arc_rad=4 * np.pi, z_mm=-6.0, u_offset_mm=2.0
    )
    # a C-arm given by projection matrices: a rotated, shifted cone, through its 3×4 matrices
    carm = (
        ConeBeam.create(n_views=4, **kw, start_rad=0.4, arc_rad=2.0, v_offset_mm=3.0)
        .as_projection_geometry()
        .transformed(jnp.asarray([0.3, -0.2, 0.5]), jnp.asarray([3.0, -2.0, 4.0]))
    )
    matrices = ProjectionGeometry.from_projection_matrices(
        carm.projection_matrices(), n_u=16, n_v=12, du_mm=3.0, dv_mm=3.5
    )
    # a wide cone (53° half-angle along v) over views at 45°: rays driven along x, y and z
    steep = ConeBeam.create(
        n_views=3,
        n_u=16,
        n_v=12,
        du_mm=5.0,
        dv_mm=12.0,
        sod_mm=30.0,
        sdd_mm=50.0,
        start_rad=np.pi / 4,
        arc_rad=np.pi,
    )
    return {
        "cone": (vol, cone),
        "helical": (vol, helical),
        "matrices": (vol, matrices),
        "tilted": (vol, _tilted_views()),
        "steep": (vol, steep),
    }


def _plan(vol, g, sampling=None):
    return _projector._make_plan(
        vol.shape, vol.affine, g, views_per_batch=None, where="test", sampling=sampling
    )


@pytest.mark.parametrize(
    ("case", "sampling"),
    [
        ("cone", Joseph()),
        ("helical", Joseph()),
        ("matrices", Joseph()),
        ("tilted", Joseph()),
        ("steep", Joseph()),
        ("tilted", Trilinear()),
    ],
)
def test_adjoint_dot_product_float64(case, sampling):
    vol, g = _small_cases()[case]
    # Joseph on point-source geometries: the voxel-driven gather; trilinear: scatter-adds
    assert (_plan(vol, g, sampling).gather is not None) == isinstance(sampling, Joseph)
    assert _adjoint_gap(vol, g, jnp.float64, sampling) < 1e-10


@pytest.mark.parametrize("case", ["cone", "steep"])
def test_adjoint_dot_product_float32(case):
    vol, g = _small_cases()[case]
    assert _adjoint_gap(vol, g, jnp.float32) < 1e-4


def test_gather_transpose_equals_the_scatter_transpose_voxel_by_voxel():
    """Both are the transpose of the same gathers: equal to rounding, in every voxel, with rays
    driven along all three axes (the steep cone), so a wrong footprint bound or tent fails."""
    vol, g = _small_cases()["steep"]
    affine = jnp.asarray(vol.affine)
    drive = []
    for view in range(g.n_views):
        dq = np.asarray(g.rays(view, jnp.float64).directions) @ np.linalg.inv(affine[:3, :3]).T
        drive.append(np.argmax(np.abs(dq), axis=-1))
    assert set(np.unique(drive)) == {0, 1, 2}
    plan = _plan(vol, g)
    y = jnp.asarray(np.random.default_rng(7).random((g.n_views, g.n_u, g.n_v)))
    gathered = np.asarray(_projector._adjoint(plan, y, affine, g))
    scattered = np.asarray(
        _projector._adjoint(dataclasses.replace(plan, gather=None), y, affine, g)
    )
    assert np.count_nonzero(scattered) > 0.9 * scattered.size
    np.testing.assert_allclose(gathered, scattered, rtol=1e-12, atol=1e-12 * scattered.max())


def test_gather_footprint_bounds_and_fallback():
    # the 128³ → 128² DRR of the benchmark (1 mm voxels, 2 mm pixels, magnification ≤ 1.34):
    # at most 2 × 2 candidate pixels per voxel for the in-plane axes
    g = ConeBeam.create(
        n_views=1, n_u=128, n_v=128, du_mm=2.0, dv_mm=2.0, sod_mm=850.0, sdd_mm=1020.0
    )
    bounds = gather_bounds((128, 128, 128), Volume.create(np.zeros((1, 1, 1))).affine, g)
    assert max(b[2] for b in bounds[:2]) == 2 and max(b[3] for b in bounds[:2]) == 2
    # a source plane that cuts the volume's box: no finite footprint bound, scatter transpose
    vol = Volume.create(np.zeros((8, 8, 6)), spacing_mm=2.0)
    side = ProjectionGeometry.create(
        sources_mm=[[9.0, 2.0, 0.0]],  # just outside the box, within one voxel of it
        detector_centers_mm=[[-80.0, 2.0, 0.0]],
        u_axes=[[0.0, 1.0, 0.0]],
        v_axes=[[0.0, 0.0, 1.0]],
        n_u=24,
        n_v=10,
        du_mm=4.0,
        dv_mm=4.0,
    )
    assert gather_bounds(vol.shape, vol.affine, side) is None
    assert _plan(vol, side).gather is None
    assert _adjoint_gap(vol, side, jnp.float64) < 1e-10


def test_gather_backprojector_under_jit_and_vmap():
    vol, g = _small_cases()["helical"]
    y = jnp.asarray(np.random.default_rng(8).random((3, g.n_views, g.n_u, g.n_v)))
    bp = lambda p: backproject(p, g, like=vol).data
    eager = np.stack([np.asarray(bp(p)) for p in y])
    np.testing.assert_allclose(np.asarray(jax.vmap(bp)(y)), eager, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.jit(bp)(y[0])), eager[0], rtol=1e-12, atol=1e-12)


def test_check_grads_volume_and_backprojector():
    vol, g = _small_cases()["tilted"]
    data = jnp.asarray(np.random.default_rng(2).random(vol.shape))
    check_grads(lambda d: project(vol.with_data(d), g), (data,), order=1, modes=["rev"])
    check_grads(
        lambda y: backproject(y, g, like=vol).data,
        (project(vol.with_data(data), g),),
        order=1,
        modes=["rev"],
    )


def test_grad_of_a_loss_is_minus_the_backprojected_residual():
    vol, g = _small_cases()["cone"]
    data = jnp.asarray(np.random.default_rng(3).random(vol.shape))
    target = project(vol.with_data(data), g)
    loss = lambda d: 0.5 * jnp.sum((project(vol.with_data(d), g) - target) ** 2)
    expected = -backproject(target, g, like=vol).data
    np.testing.assert_allclose(
        np.asarray(jax.grad(loss)(jnp.zeros(vol.shape))), np.asarray(expected), atol=1e-12
    )


def test_six_dof_pose_gradient_matches_finite_differences():
    """2D/3D registration: d loss / d (rotation vector, translation) of a moved C-arm."""
    n = 16
    c = (np.arange(n) - (n - 1) / 2) * 3.0
    blob = np.exp(
        -((c[:, None, None] - 4.0) ** 2 / 200.0)
        - (c[None, :, None] ** 2 / 120.0)
        - ((c[None, None, :] + 3.0) ** 2 / 150.0)
    )
    vol = Volume.create(blob, spacing_mm=3.0)
    base = ConeBeam.create(
        n_views=2,
        n_u=16,
        n_v=14,
        du_mm=3.0,
        dv_mm=3.0,
        sod_mm=200.0,
        sdd_mm=350.0,
        start_rad=0.2,
        arc_rad=1.5,
    ).as_projection_geometry()
    target = project(
        vol, base.transformed(jnp.asarray([0.02, -0.03, 0.05]), jnp.asarray([2.0, -1.0, 1.5]))
    )

    def loss(pose):
        g = base.transformed(pose[:3], pose[3:])
        return 0.5 * jnp.sum((project(vol, g) - target) ** 2)

    pose = jnp.asarray([0.01, 0.015, -0.02, -1.0, 0.5, 0.7])
    grad = np.asarray(jax.jit(jax.grad(loss))(pose))
    assert np.all(np.isfinite(grad))
    h = 1e-5
    fd = np.array(
        [(float(loss(pose + h * e)) - float(loss(pose - h * e))) / (2 * h) for e in np.eye(6)]
    )
    # Joseph's weights are piecewise linear in the pose: central differences agree to ~1e-4
    np.testing.assert_allclose(grad, fd, rtol=2e-3, atol=1e-3 * np.max(np.abs(fd)))
    check_grads(loss, (pose,), order=1, modes=["rev"], eps=1e-6, atol=1e-4, rtol=1e-4)
    # and a gradient step lowers the loss (registration moves toward the target)
    step = 1e-3 * grad / np.max(np.abs(grad)) * np.array([0.1, 0.1, 0.1, 1, 1, 1])
    assert float(loss(pose - jnp.asarray(step))) < float(loss(pose))


def test_jit_equals_eager_dtype_kept_and_chunking_does_not_change_results():
    vol, g = _small_cases()["cone"]
    x = jnp.asarray(np.random.default_rng(5).random(vol.shape), jnp.float32)
    f = lambda d: project(vol.with_data(d), g)
    eager = f(x)
    assert eager.dtype == jnp.float32 and eager.shape == (5, 16, 12)
    # float32: XLA may fuse the ray arithmetic differently under an outer jit (~100 ulp)
    np.testing.assert_allclose(np.asarray(jax.jit(f)(x)), np.asarray(eager), rtol=3e-5)
    one = project(vol.with_data(x), g, views_per_batch=1)
    np.testing.assert_allclose(np.asarray(one), np.asarray(eager), rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="`sampling` must be"):
        project(vol.with_data(x), g, sampling="joseph")
