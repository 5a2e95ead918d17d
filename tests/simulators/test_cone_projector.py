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
from medphys.simulators.geometry import ConeBeam, FanBeam, ParallelBeam, ProjectionGeometry
from medphys.simulators.xray import Joseph, Trilinear, _projector, backproject, project
from medphys.simulators.xray._joseph3d import joseph3d_rays, joseph3d_sweep, pad_volume
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
        # slow tier: the gather on a helix and on a C-arm's matrices (the default keeps the
        # circular cone, the tilted generic geometry and the steep cone driven along x, y and z)
        pytest.param("helical", Joseph(), marks=pytest.mark.slow),
        pytest.param("matrices", Joseph(), marks=pytest.mark.slow),
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


# the steep cone in float32 in the slow tier (about 3 s): float64 keeps it in the default tier
@pytest.mark.parametrize("case", ["cone", pytest.param("steep", marks=pytest.mark.slow)])
def test_adjoint_dot_product_float32(case):
    vol, g = _small_cases()[case]
    assert _adjoint_gap(vol, g, jnp.float32) < 1e-4


@pytest.mark.slow  # about 15-25 s; the dot-product tests stay in the default tier
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


@pytest.mark.slow  # about 9 s; twins in the default tier: check_grads of the cone projector in
# test_contracts and the tilted geometry's float64 dot-product test above
def test_check_grads_volume_and_backprojector():
    vol, g = _small_cases()["tilted"]
    data = jnp.asarray(np.random.default_rng(2).random(vol.shape))
    check_grads(jax.jit(lambda d: project(vol.with_data(d), g)), (data,), order=1, modes=["rev"])
    check_grads(
        jax.jit(lambda y: backproject(y, g, like=vol).data),
        (project(vol.with_data(data), g),),
        order=1,
        modes=["rev"],
    )


@pytest.mark.slow  # twins in the default tier: check_grads of the cone projector (here and in
# test_contracts) and the fan-beam test_grad_of_loss_runs_the_backprojector (test_xray_projector)
def test_grad_of_a_loss_is_minus_the_backprojected_residual():
    vol, g = _small_cases()["cone"]
    data = jnp.asarray(np.random.default_rng(3).random(vol.shape))
    target = project(vol.with_data(data), g)
    loss = lambda d: 0.5 * jnp.sum((project(vol.with_data(d), g) - target) ** 2)
    expected = -backproject(target, g, like=vol).data
    np.testing.assert_allclose(
        np.asarray(jax.grad(loss)(jnp.zeros(vol.shape))), np.asarray(expected), atol=1e-12
    )


@pytest.mark.slow  # twins in the default tier: the 3-D Joseph pose derivative against central
# differences (test_contracts) and the 6-DoF registration notebook (test_registration_notebook)
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


# ----------------------------------------------------------------------------------------------
# The slice-major sweep (`joseph3d_sweep`, what `project` runs) against the ray-major kernel


def _oblique_affine(shape, spacing=(2.0, 2.5, 3.0), angles=(0.5, -0.3, 0.4)) -> np.ndarray:
    """Voxel → world: scaled and rotated, centred on the origin."""
    rx, ry, rz = angles
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rot = (
        np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    )
    affine = np.eye(4)
    affine[:3, :3] = rot * np.asarray(spacing)
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return affine


def _ray_bundle(rng, shape, affine, n: int = 400):
    """Rays of every kind relative to the box ``[-0.5, n - 0.5]`` (index space): through it from
    far sources (cone-like), entering and leaving through side faces, grazing within a voxel of a
    face, missing it, parallel to index axes (direction components exactly zero), with spans that
    start or end inside the volume, and unbounded (parallel-beam) spans."""
    a3, off = affine[:3, :3], affine[:3, 3]
    size = np.asarray(shape, float)
    kind = np.arange(n) % 6
    # targets inside or near the box, sources all around it
    tgt = rng.uniform(-0.2, 1.2, (n, 3)) * size
    src = (size / 2 + rng.normal(0, 1, (n, 3)) * 4 * size.max()) * (kind[:, None] != 1)
    # kind 1: source beside the box, ray nearly along a face (enters or leaves through a side)
    side = rng.integers(0, 3, n)
    src = np.where(kind[:, None] == 1, tgt + rng.normal(0, 1, (n, 3)) * size.max(), src)
    src[kind == 1, side[kind == 1]] = tgt[kind == 1, side[kind == 1]] + rng.uniform(-1, 1)
    # kind 2: aimed away from the box (misses it)
    tgt = np.where(kind[:, None] == 2, src + (src - size / 2), tgt)
    # kind 3: along an index axis, through the box or beside it (zero direction components)
    axis = rng.integers(0, 3, n)
    along = np.where(np.arange(3)[None, :] == axis[:, None], 1.0, 0.0)
    d_idx = tgt - src
    d_idx = np.where(kind[:, None] == 3, along, d_idx)
    src = np.where(kind[:, None] == 3, tgt - 3 * size.max() * along, src)
    world_src = src @ a3.T + off
    world_dir = d_idx @ a3.T
    length = np.linalg.norm(world_dir, axis=-1)
    world_dir /= length[:, None]
    dist = np.linalg.norm(tgt @ a3.T + off - world_src, axis=-1)
    t_min = np.zeros(n)
    t_max = 2.0 * dist
    # kind 4: the span starts and ends inside the volume
    t_min = np.where(kind == 4, rng.uniform(0.5, 1.0, n) * dist, t_min)
    t_max = np.where(kind == 4, rng.uniform(1.0, 1.5, n) * dist, t_max)
    # kind 5: unbounded span (parallel beams)
    t_min = np.where(kind == 5, -np.inf, t_min)
    t_max = np.where(kind == 5, np.inf, t_max)
    return world_src, world_dir, t_min, t_max


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("oblique", [False, True])
def test_sweep_kernel_equals_the_ray_major_kernel(padded, oblique):
    rng = np.random.default_rng(11 + oblique)
    shape = (11, 7, 9)  # no axis a multiple of the sweep's block of slices
    affine = _oblique_affine(shape) if oblique else np.diag([2.0, 2.5, 3.0, 1.0])
    data = jnp.asarray(rng.random(shape))
    a = jnp.asarray(affine)
    ainv, offset = jnp.linalg.inv(a[:3, :3]), a[:3, 3]
    rays = tuple(jnp.asarray(x) for x in _ray_bundle(rng, shape, affine))
    ref = np.asarray(joseph3d_rays(pad_volume(data), shape, ainv, offset, *rays))
    volume = pad_volume(data) if padded else data.reshape(-1)
    out = np.asarray(joseph3d_sweep(volume, shape, ainv, offset, *rays, padded=padded))
    drive = np.argmax(np.abs(np.asarray(rays[1] @ ainv.T)), axis=-1)
    assert set(drive.tolist()) == {0, 1, 2}
    assert 0.2 < np.mean(ref == 0) < 0.6  # rays that miss the box (or whose span does)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12 * np.max(ref))
    # in float32, to rounding
    out32 = joseph3d_sweep(
        volume.astype(jnp.float32),
        shape,
        ainv.astype(jnp.float32),
        offset.astype(jnp.float32),
        *(r.astype(jnp.float32) for r in rays),
        padded=padded,
    )
    assert out32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out32), ref, rtol=2e-5, atol=2e-5 * np.max(ref))


def _sweep_cases():
    cases = _small_cases()
    kw = dict(n_u=16, n_v=12, du_mm=3.0, dv_mm=3.5, sod_mm=100.0, sdd_mm=180.0)
    # views about 45° (square voxels in x, y): the dominant axis changes from x to y across the
    # detector in every view
    cases["diagonal"] = (
        Volume.create(np.zeros((10, 8, 6)), spacing_mm=(2.5, 2.5, 3.0)),
        ConeBeam.create(n_views=3, **kw, start_rad=np.pi / 4 - 0.05, arc_rad=0.1),
    )
    oblique = Volume.create(np.zeros((9, 7, 6)), affine=_oblique_affine((9, 7, 6)))
    cases["oblique cone"] = (oblique, ConeBeam.create(n_views=4, **kw, start_rad=0.2))
    # a parallel beam on an oblique volume: unbounded spans, rays that miss the box
    cases["oblique parallel"] = (
        oblique,
        ParallelBeam.create(n_views=5, n_u=20, du_mm=2.0, n_rows=6, dv_mm=2.5),
    )
    return cases


@pytest.mark.parametrize(
    "case",
    [
        # the default tier keeps the oblique volume's parallel beam (unbounded spans); the other
        # geometries run in the slow tier (test_sweep_kernel_equals_the_ray_major_kernel covers
        # every kind of ray, driven along x, y and z, on aligned and oblique grids in the
        # default tier)
        pytest.param("cone", marks=pytest.mark.slow),
        pytest.param("helical", marks=pytest.mark.slow),
        pytest.param("matrices", marks=pytest.mark.slow),
        pytest.param("tilted", marks=pytest.mark.slow),
        pytest.param("steep", marks=pytest.mark.slow),
        pytest.param("diagonal", marks=pytest.mark.slow),
        pytest.param("oblique cone", marks=pytest.mark.slow),
        "oblique parallel",
    ],
)
def test_projection_by_the_sweep_equals_the_ray_major_projection(case):
    vol, g = _sweep_cases()[case]
    data = jnp.asarray(np.random.default_rng(4).random(vol.shape))
    affine = jnp.asarray(vol.affine)
    plan = _plan(vol, g)
    assert plan.sweep_rays > 0 and not plan.planar
    ref = np.asarray(_projector._forward(dataclasses.replace(plan, sweep_rays=0), data, affine, g))
    assert np.count_nonzero(ref) > 0.1 * ref.size
    # one bundle per view, cut into small pieces (padding rays, pieces that miss the box), with
    # and without the padded copy of the volume
    for sweep_rays, padded in ((plan.sweep_rays, plan.sweep_padded), (37, False), (37, True)):
        p = dataclasses.replace(plan, sweep_rays=sweep_rays, sweep_padded=padded, views_per_batch=1)
        out = np.asarray(_projector._forward(p, data, affine, g))
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12 * np.max(ref))
    out = np.asarray(project(vol.with_data(data), g))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12 * np.max(ref))


@pytest.mark.parametrize("padded", [False, True])
def test_sweep_and_the_gather_backprojector_are_adjoint(padded):
    """The dot-product test of the sweep with the voxel-driven transpose, rays driven along two
    axes in every view."""
    vol, g = _sweep_cases()["diagonal"]
    affine = jnp.asarray(vol.affine)
    ainv = np.linalg.inv(np.asarray(affine)[:3, :3])
    for view in range(g.n_views):
        dq = np.asarray(g.rays(view, jnp.float64).directions).reshape(-1, 3) @ ainv.T
        assert set(np.argmax(np.abs(dq), axis=-1).tolist()) == {0, 1}
    plan = dataclasses.replace(_plan(vol, g), sweep_padded=padded)
    assert plan.gather is not None
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.random(vol.shape))
    y = jnp.asarray(rng.random((g.n_views, g.n_u, g.n_v)))
    lhs = float(jnp.sum(_projector._forward(plan, x, affine, g) * y))
    rhs = float(jnp.sum(x * _projector._adjoint(plan, y, affine, g)))
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)
