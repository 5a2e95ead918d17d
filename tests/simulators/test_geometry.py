"""Geometries: conventions, lowering to rays, validation messages."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medphys import Volume
from medphys.simulators.geometry import FanBeam, ParallelBeam


def test_view_zero_source_posterior_beam_anterior_u_right():
    g = FanBeam.create(n_views=4, n_u=5, du_mm=1.0, sod_mm=500.0, sdd_mm=900.0)
    src = np.asarray(g.source_xy(0, jnp.float64))
    np.testing.assert_allclose(src, [0.0, -500.0], atol=1e-12)
    e_u, d = (np.asarray(v) for v in g.frame(0, jnp.float64))
    np.testing.assert_allclose(d, [0.0, 1.0], atol=1e-12)  # toward anterior
    np.testing.assert_allclose(e_u, [1.0, 0.0], atol=1e-12)  # toward the patient's right (+x)
    # a quarter turn later the source is on the right (+x): counter-clockwise seen from +z
    np.testing.assert_allclose(np.asarray(g.source_xy(1, jnp.float64)), [500.0, 0.0], atol=1e-9)
    # (e_u, d, e_z) is right-handed
    assert np.cross(np.append(e_u, 0.0), np.append(d, 0.0))[2] == pytest.approx(1.0)


def test_default_angles_cover_pi_for_parallel_and_2pi_for_fan():
    p = ParallelBeam.create(n_views=6, n_u=4, du_mm=1.0)
    f = FanBeam.create(n_views=6, n_u=4, du_mm=1.0, sod_mm=100.0, sdd_mm=200.0)
    np.testing.assert_allclose(np.asarray(p.angles), np.arange(6) * math.pi / 6)
    np.testing.assert_allclose(np.asarray(f.angles), np.arange(6) * 2 * math.pi / 6)


def test_fan_rays_run_from_source_to_each_pixel():
    g = FanBeam.create(
        n_views=3,
        n_u=7,
        du_mm=2.0,
        sod_mm=300.0,
        sdd_mm=500.0,
        u_offset_mm=0.5,
        n_rows=2,
        dv_mm=3.0,
        z_mm=10.0,
        isocenter_mm=(5.0, -4.0),
    )
    for view in range(3):
        r = g.rays(view, jnp.float64)
        o, d = np.asarray(r.origins), np.asarray(r.directions)
        t1 = np.asarray(r.t_max)
        assert o.shape == (7, 2, 3)
        np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-12)
        end = o + t1[..., None] * d
        e_u, beam = (np.asarray(v) for v in g.frame(view, jnp.float64))
        centre = np.array([5.0, -4.0]) + (500.0 - 300.0) * beam
        u = (np.arange(7) - 3) * 2.0 + 0.5
        expect_xy = centre[None, :] + u[:, None] * e_u[None, :]
        np.testing.assert_allclose(end[:, 0, :2], expect_xy, atol=1e-9)
        np.testing.assert_allclose(end[0, :, 2], [8.5, 11.5], atol=1e-12)  # rows around z_mm
        np.testing.assert_allclose(np.linalg.norm(o[0, 0, :2] - [5.0, -4.0]), 300.0)
        # detector_u inverts the ray: a point on the ray maps to its pixel
        mid = o + 0.4 * t1[..., None] * d
        uu, _ = g.detector_u(view, jnp.asarray(mid[:, 0, :2]), jnp.float64)
        np.testing.assert_allclose(np.asarray(uu), u, atol=1e-9)


def test_parallel_rays_are_the_radon_lines():
    g = ParallelBeam.create(n_views=5, n_u=9, du_mm=1.5, u_offset_mm=0.25)
    for view in range(5):
        r = g.planar_rays(view, jnp.float64)
        th = float(g.angles[view])
        n = np.array([math.cos(th), math.sin(th)])
        s = np.asarray(r.origins) @ n
        np.testing.assert_allclose(s, (np.arange(9) - 4) * 1.5 + 0.25, atol=1e-12)
        np.testing.assert_allclose(np.asarray(r.directions) @ n, 0.0, atol=1e-12)
        assert np.all(np.isinf(np.asarray(r.t_min))) and np.all(np.isinf(np.asarray(r.t_max)))


def test_rows_follow_the_volume_slices():
    vol = Volume.create(
        np.zeros((4, 4, 5), np.float32), spacing_mm=(1.0, 1.0, 2.5), center_mm=(0, 0, 7)
    )
    g = ParallelBeam.create(n_views=2, n_u=4, du_mm=1.0).with_rows_for(vol)
    assert g.n_rows == 5
    z = np.asarray(g.row_z_mm(jnp.float64))
    expect = np.asarray(vol.affine)[2, 2] * np.arange(5) + np.asarray(vol.affine)[2, 3]
    np.testing.assert_allclose(z, expect)


def test_geometry_is_a_pytree_with_static_counts():
    g = FanBeam.create(n_views=8, n_u=16, du_mm=1.0, sod_mm=400.0, sdd_mm=800.0)
    leaves, treedef = jax.tree_util.tree_flatten(g)
    assert len(leaves) == 8 and all(np.ndim(x) <= 1 for x in leaves)
    g2 = jax.tree_util.tree_unflatten(treedef, leaves)
    assert g2.n_u == 16 and g2.n_views == 8
    moved = dataclasses.replace(g, angles=np.asarray(g.angles) + 0.1)
    assert jax.tree_util.tree_structure(moved) == treedef


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(sod_mm=600.0, sdd_mm=500.0),
            r"FanBeam.create: `sdd_mm` must exceed `sod_mm` \(got sdd_mm=500.0, sod_mm=600.0\)",
        ),
        (dict(sod_mm=600.0, sdd_mm=600.0), r"`sdd_mm` must exceed `sod_mm`"),
        (dict(n_views=0), r"FanBeam.create: `n_views` must be ≥ 1 \(got 0\)"),
        (dict(n_u=0), r"`n_u` must be ≥ 1 \(got 0\)"),
        (dict(du_mm=-1.0), r"`du_mm` must be a positive finite length in mm \(got -1.0\)"),
        (dict(sod_mm=-5.0), r"`sod_mm` must be a positive"),
        (dict(arc_rad=7.0), r"`arc_rad` must be in \(0, 2π\]"),
        (dict(dv_mm=2.0), r"`dv_mm` needs `n_rows`"),
    ],
)
def test_fan_validation_names_call_field_value(kwargs, message):
    base = dict(n_views=10, n_u=8, du_mm=1.0, sod_mm=500.0, sdd_mm=900.0)
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        FanBeam.create(**base)


def test_parallel_validation():
    with pytest.raises(ValueError, match=r"ParallelBeam.create: `n_views` must be ≥ 1 \(got 0\)"):
        ParallelBeam.create(n_views=0, n_u=8, du_mm=1.0)
    with pytest.raises(TypeError, match=r"`n_u` must be an integer"):
        ParallelBeam.create(n_views=3, n_u=8.5, du_mm=1.0)
    with pytest.raises(ValueError, match=r"give `n_views` \(≥ 1\) or `angles_rad`"):
        ParallelBeam.create(n_u=8, du_mm=1.0)
    with pytest.raises(ValueError, match=r"disagrees with len\(angles_rad\)"):
        ParallelBeam.create(n_views=3, angles_rad=[0.0, 1.0], n_u=8, du_mm=1.0)
    with pytest.raises(ValueError, match=r"`angles_rad` must be finite"):
        ParallelBeam.create(angles_rad=[0.0, np.nan], n_u=8, du_mm=1.0)
