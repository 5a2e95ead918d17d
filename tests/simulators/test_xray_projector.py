"""Projector pair: closed-form chords, scikit-image's Radon transform, adjoint, gradients, contracts."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from medphys import Volume
from medphys.simulators.geometry import FanBeam, ParallelBeam
from medphys.simulators.xray import _projector, backproject, project

# ---------------------------------------------------------------------------------------------
# helpers


def _ellipse_image(n: int, spacing: float, a: float, b: float, x0: float, y0: float, ss: int = 4):
    """Occupancy of an ellipse on an n×n grid centred on the origin (supersampled ss×ss)."""
    c = (np.arange(n) - (n - 1) / 2) * spacing
    off = ((np.arange(ss) + 0.5) / ss - 0.5) * spacing
    x = (c[:, None] + off[None, :]).reshape(-1)
    inside = ((x[:, None] - x0) / a) ** 2 + ((x[None, :] - y0) / b) ** 2 <= 1.0
    return inside.reshape(n, ss, n, ss).mean(axis=(1, 3))


def _chord(origins, dirs, centre, semi):
    """Chord length of rays through an axis-aligned ellipse/ellipsoid (closed form)."""
    o = (origins - centre) / semi
    d = dirs / semi
    a = np.sum(d * d, axis=-1)
    b = 2 * np.sum(o * d, axis=-1)
    c = np.sum(o * o, axis=-1) - 1
    disc = b * b - 4 * a * c
    return np.where(disc > 0, np.sqrt(np.maximum(disc, 0.0)) / a, 0.0)


def _planar_reference(g, centre, semi):
    ref = []
    for view in range(g.n_views):
        r = g.planar_rays(view, jnp.float64)
        o = np.asarray(r.origins)
        if isinstance(g, ParallelBeam):  # move the origins off the line's middle: chord is the same
            o = o - 1000.0 * np.asarray(r.directions)
        ref.append(_chord(o, np.asarray(r.directions), np.asarray(centre), np.asarray(semi)))
    return np.stack(ref)


ELLIPSE = dict(a=40.0, b=25.0, x0=7.0, y0=-5.0)


def _ellipse_volume():
    img = _ellipse_image(128, 1.0, ELLIPSE["a"], ELLIPSE["b"], ELLIPSE["x0"], ELLIPSE["y0"])
    return Volume.create(img[:, :, None], spacing_mm=1.0)


def _rel_l2(p, ref):
    return float(np.linalg.norm(p - ref) / np.linalg.norm(ref))


# ---------------------------------------------------------------------------------------------
# accuracy


@pytest.mark.parametrize("kind", ["parallel", "fan"])
def test_ellipse_line_integrals_match_closed_form(kind):
    """12 angles × all offsets; a half-voxel shift or a mirrored angle convention fails the bound."""
    vol = _ellipse_volume()
    if kind == "parallel":
        g = ParallelBeam.create(n_views=12, n_u=160, du_mm=1.0, u_offset_mm=0.25)
    else:
        g = FanBeam.create(
            n_views=12, n_u=200, du_mm=1.0, sod_mm=300.0, sdd_mm=600.0, u_offset_mm=0.25
        )
    p = np.asarray(project(vol, g))[:, :, 0]
    centre, semi = (ELLIPSE["x0"], ELLIPSE["y0"]), (ELLIPSE["a"], ELLIPSE["b"])
    err = _rel_l2(p, _planar_reference(g, centre, semi))
    # measured: 0.70 % (parallel), 0.81 % (fan): the 1 mm voxelisation of the boundary
    assert err < 0.012
    # the same comparison against a half-voxel-shifted ellipse, or mirrored angles, fails
    shifted = _rel_l2(p, _planar_reference(g, (centre[0] + 0.5, centre[1] + 0.5), semi))
    mirrored_g = dataclasses.replace(g, angles=-np.asarray(g.angles))
    mirrored = _rel_l2(p, _planar_reference(mirrored_g, centre, semi))
    assert shifted > 2 * err and mirrored > 10 * err


def test_projection_matches_skimage_radon():
    from skimage.data import shepp_logan_phantom
    from skimage.transform import radon, rescale

    img = rescale(shepp_logan_phantom(), 127 / 400, anti_aliasing=True)  # odd size: same centre
    n = img.shape[0]
    # skimage: image[row, col], rotation centre n//2, angle θ integrates along rows at θ=0 with
    # the detector along columns; our data[i, j] has i along x (= col) and j along y (= -row)
    vol = Volume.create(np.flipud(img).T.copy()[:, :, None], spacing_mm=1.0)
    g = ParallelBeam.create(n_views=60, n_u=n, du_mm=1.0)
    ours = np.asarray(project(vol, g))[:, :, 0]
    theirs = radon(img, theta=np.rad2deg(np.asarray(g.angles)), circle=True).T
    # measured: 0.35 % relative L2 (Joseph vs skimage's bilinear rotate-and-sum)
    assert _rel_l2(ours, theirs) < 0.01
    assert np.max(np.abs(ours - theirs)) < 0.05 * np.max(theirs)


def test_oblique_volume_uses_trilinear_path_and_matches_ellipsoid_chords():
    """A rotated affine (third axis not along z) goes through the generic ray marcher."""
    rot = _rotation(0.5, -0.3, 0.4)
    n, sp = 48, 1.5
    affine = np.eye(4)
    affine[:3, :3] = rot * sp
    affine[:3, 3] = -rot @ np.full(3, (n - 1) / 2 * sp)
    centre, semi = np.array([4.0, -3.0, 2.0]), np.array([28.0, 18.0, 15.0])
    idx = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    ss = 3
    sub = np.stack(np.meshgrid(*[(np.arange(ss) + 0.5) / ss - 0.5] * 3, indexing="ij"), -1).reshape(
        -1, 3
    )
    occ = np.zeros(n**3)
    for s in sub:
        w = (idx + s) @ affine[:3, :3].T + affine[:3, 3]
        occ += np.sum(((w - centre) / semi) ** 2, axis=1) <= 1
    vol = Volume.create((occ / len(sub)).reshape(n, n, n), affine=affine)
    g = FanBeam.create(
        n_views=6, n_u=64, du_mm=2.0, sod_mm=250.0, sdd_mm=400.0, n_rows=7, dv_mm=2.5, z_mm=2.0
    )
    plan = _projector._make_plan(vol.shape, vol.affine, g, views_per_batch=None, where="t")
    assert not plan.planar
    p = np.asarray(project(vol, g))
    ref = np.stack(
        [
            _chord(np.asarray(r.origins), np.asarray(r.directions), centre, semi)
            for r in (g.rays(v, jnp.float64) for v in range(6))
        ]
    )
    # measured 2.1 % (1.5 mm voxels, trilinear, half-voxel steps); the planar path on the same
    # ellipsoid voxelised on an aligned grid measures 2.0 %; both halve when the voxels halve
    assert _rel_l2(p, ref) < 0.03


def _rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = (
        math.cos(ax),
        math.sin(ax),
        math.cos(ay),
        math.sin(ay),
        math.cos(az),
        math.sin(az),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_rows_between_slices_interpolate_linearly_in_z():
    rng = np.random.default_rng(0)
    vol = Volume.create(rng.random((16, 12, 5)), spacing_mm=(1.0, 1.2, 2.0))
    g_slices = ParallelBeam.create(n_views=4, n_u=24, du_mm=1.0)
    g_rows = ParallelBeam.create(n_views=4, n_u=24, du_mm=1.0, n_rows=2, dv_mm=1.0, z_mm=-0.5)
    per_slice = np.asarray(project(vol, g_slices))
    rows = np.asarray(project(vol, g_rows))
    # slice centres at z = -4, -2, 0, 2, 4: rows at -1 and 0
    np.testing.assert_allclose(
        rows[..., 0], 0.5 * per_slice[..., 1] + 0.5 * per_slice[..., 2], rtol=1e-12
    )
    np.testing.assert_allclose(rows[..., 1], per_slice[..., 2], rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# adjoint and gradients


def _adjoint_gap(vol, g, dtype):
    rng = np.random.default_rng(1)
    x = vol.with_data(jnp.asarray(rng.standard_normal(vol.shape), dtype))
    ax = project(x, g)
    y = jnp.asarray(rng.standard_normal(ax.shape), dtype)
    aty = backproject(y, g, like=vol).data
    assert ax.dtype == dtype and aty.dtype == dtype
    lhs = float(jnp.vdot(ax.astype(jnp.float64), y.astype(jnp.float64)))
    rhs = float(jnp.vdot(x.data.astype(jnp.float64), aty.astype(jnp.float64)))
    return abs(lhs - rhs) / abs(lhs)


def _adjoint_cases():
    aligned = Volume.create(
        np.zeros((20, 14, 3)), spacing_mm=(1.0, 1.5, 2.0), center_mm=(2.0, -1.0, 0.5)
    )
    affine = np.eye(4)
    affine[:3, :3] = _rotation(0.3, 0.2, 0.1) * 1.5
    affine[:3, 3] = [-6.0, -6.0, -4.0]
    oblique = Volume.create(np.zeros((7, 8, 5)), affine=affine)
    return {
        "parallel": (aligned, ParallelBeam.create(n_views=7, n_u=30, du_mm=1.0, u_offset_mm=0.3)),
        "fan-rows": (
            aligned,
            FanBeam.create(
                n_views=9,
                n_u=40,
                du_mm=1.2,
                sod_mm=100.0,
                sdd_mm=180.0,
                n_rows=4,
                dv_mm=1.3,
                z_mm=0.2,
            ),
        ),
        "oblique": (
            oblique,
            FanBeam.create(
                n_views=3, n_u=12, du_mm=2.0, sod_mm=120.0, sdd_mm=200.0, n_rows=3, dv_mm=2.0
            ),
        ),
    }


@pytest.mark.parametrize("case", ["parallel", "fan-rows", "oblique"])
def test_adjoint_dot_product_float64(case):
    vol, g = _adjoint_cases()[case]
    assert _adjoint_gap(vol, g, jnp.float64) < 1e-10


def test_adjoint_dot_product_float32():
    vol, g = _adjoint_cases()["fan-rows"]
    assert _adjoint_gap(vol, g, jnp.float32) < 1e-4


# the oblique volume in the slow tier (about 7 s): its dot-product test keeps the transpose, which
# is the gradient, exact in the default tier
@pytest.mark.parametrize("case", ["parallel", pytest.param("oblique", marks=pytest.mark.slow)])
def test_check_grads_reverse_mode(case):
    vol, g = _adjoint_cases()[case]
    small = Volume(data=jnp.zeros(vol.shape), affine=vol.affine)
    data = jnp.asarray(np.random.default_rng(2).random(vol.shape))
    check_grads(jax.jit(lambda d: project(small.with_data(d), g)), (data,), order=1, modes=["rev"])
    if case == "parallel":  # backproject's VJP is project (same code for both paths)
        check_grads(
            jax.jit(lambda y: backproject(y, g, like=small).data),
            (project(small.with_data(data), g),),
            order=1,
            modes=["rev"],
        )


def test_grad_of_loss_runs_the_backprojector():
    vol, g = _adjoint_cases()["parallel"]
    data = jnp.asarray(np.random.default_rng(3).random(vol.shape))
    target = project(vol.with_data(data), g)
    loss = lambda d: 0.5 * jnp.sum((project(vol.with_data(d), g) - target) ** 2)
    d0 = jnp.zeros(vol.shape)
    expected = -backproject(target, g, like=vol).data  # A^T (A 0 - b)
    np.testing.assert_allclose(
        np.asarray(jax.grad(loss)(d0)), np.asarray(expected), rtol=1e-12, atol=1e-12
    )


def test_geometry_gradients_are_finite_and_match_finite_differences():
    """Derivatives w.r.t. the detector offset and angles, including edge/grazing configurations."""
    n = 32
    c = np.arange(n) - (n - 1) / 2
    blob = np.exp(-(c[:, None] ** 2 + (c[None, :] - 3) ** 2) / 60.0)[:, :, None]
    vol = Volume.create(blob, spacing_mm=1.0)
    # angle 0 and π/4 (Joseph's axis switch), offset 0.5: rays on voxel edges
    g = ParallelBeam.create(angles_rad=[0.0, math.pi / 4, 1.0], n_u=40, du_mm=1.0, u_offset_mm=0.5)
    w = jnp.asarray(np.random.default_rng(4).random((3, 40, 1)))

    def loss(offset, angles):
        geo = dataclasses.replace(g, u_offset_mm=offset, angles=angles)
        return jnp.sum(w * project(vol, geo))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    off, ang = jnp.asarray(0.5), jnp.asarray(np.asarray(g.angles))
    g_off, g_ang = grad(off, ang)
    assert np.isfinite(float(g_off)) and np.all(np.isfinite(np.asarray(g_ang)))
    # away from kinks, central differences agree
    off2 = jnp.asarray(0.37)
    h = 1e-6
    fd = (loss(off2 + h, ang) - loss(off2 - h, ang)) / (2 * h)
    np.testing.assert_allclose(float(grad(off2, ang)[0]), float(fd), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# transform contracts


def test_jit_equals_eager_vmap_equals_loop_and_dtype_is_kept():
    vol, g = _adjoint_cases()["fan-rows"]
    rng = np.random.default_rng(5)
    batch = jnp.asarray(rng.random((3, *vol.shape)), jnp.float32)
    f = lambda d: project(vol.with_data(d), g)
    eager = f(batch[0])
    assert eager.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(jax.jit(f)(batch[0])), np.asarray(eager), rtol=1e-6, atol=1e-6
    )
    looped = np.stack([np.asarray(f(b)) for b in batch])
    np.testing.assert_allclose(np.asarray(jax.vmap(f)(batch)), looped, rtol=1e-5, atol=1e-5)
    assert project(vol.with_data(batch[0].astype(jnp.float64)), g).dtype == jnp.float64


def test_second_call_with_same_shapes_does_not_retrace():
    vol, g = _adjoint_cases()["parallel"]
    project(vol.with_data(np.ones(vol.shape, np.float32)), g)
    before = _projector._project_jit._cache_size()
    other = dataclasses.replace(g, angles=np.asarray(g.angles) + 0.2)
    moved = Volume.create(
        np.full(vol.shape, 2.0, np.float32), spacing_mm=(1.0, 1.5, 2.0), center_mm=(3, 0, 1)
    )
    project(moved, other)
    assert _projector._project_jit._cache_size() == before


# ---------------------------------------------------------------------------------------------
# boundary checks


def test_source_inside_volume_is_an_error():
    vol = Volume.create(np.zeros((64, 64, 1)), spacing_mm=2.0)
    g = FanBeam.create(n_views=4, n_u=16, du_mm=1.0, sod_mm=60.0, sdd_mm=120.0)
    with pytest.raises(
        ValueError,
        match=r"xray.project: the source path .*`sod_mm`=60 mm.* passes through the volume",
    ):
        project(vol, g)


def test_detector_missing_the_volume_is_an_error():
    vol = Volume.create(np.zeros((16, 16, 2)), spacing_mm=1.0)
    g = ParallelBeam.create(n_views=4, n_u=8, du_mm=1.0, isocenter_mm=(200.0, 0.0))
    with pytest.raises(
        ValueError,
        match=r"xray.project: the detector misses the volume: its rays pass at most 4.0 mm from the rotation axis \(detector u in \[-4.0, 4.0\] mm\) but the volume's nearest point is 192.0 mm away",
    ):
        project(vol, g)
    g_rows = ParallelBeam.create(n_views=4, n_u=32, du_mm=1.0, n_rows=2, z_mm=50.0)
    with pytest.raises(
        ValueError, match=r"the detector rows \(z in \[49.0, 51.0\] mm\) miss the volume"
    ):
        project(vol, g_rows)


def test_backproject_checks_the_projection_shape():
    vol, g = _adjoint_cases()["parallel"]
    with pytest.raises(
        ValueError, match=r"xray.backproject: `projections` must have shape \(7, 30, 3\)"
    ):
        backproject(np.zeros((7, 30, 2)), g, like=vol)
