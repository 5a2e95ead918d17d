"""Cone-beam and arbitrary-pose geometries, curved fan detector: conventions, projection
matrices, validation messages."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from medphys import Volume
from medphys.simulators.geometry import ConeBeam, FanBeam, ProjectionGeometry
from medphys.simulators.xray import project


def _cone(**kw):
    args = dict(n_views=8, n_u=9, n_v=7, du_mm=1.5, dv_mm=1.2, sod_mm=300.0, sdd_mm=500.0)
    args.update(kw)
    return ConeBeam.create(**args)


def test_cone_view_zero_matches_fan_convention_and_rows_run_superior():
    g = _cone(isocenter_mm=(5.0, -4.0), z_mm=10.0)
    src, centre, e_u, e_v = (np.asarray(x) for x in g.pose(0, jnp.float64))
    np.testing.assert_allclose(src, [5.0, -304.0, 10.0], atol=1e-12)  # posterior source
    np.testing.assert_allclose(centre, [5.0, 196.0, 10.0], atol=1e-12)  # detector anterior
    np.testing.assert_allclose(e_u, [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(e_v, [0.0, 0.0, 1.0], atol=1e-12)
    fan = FanBeam.create(n_views=8, n_u=9, du_mm=1.5, sod_mm=300.0, sdd_mm=500.0, n_rows=1)
    for view in range(8):
        np.testing.assert_allclose(
            np.asarray(g.pose(view, jnp.float64)[0][:2]) - [5.0, -4.0],
            np.asarray(fan.source_xy(view, jnp.float64)),
            atol=1e-9,
        )


def test_cone_rays_end_on_pixel_centres_with_offsets():
    g = _cone(u_offset_mm=0.7, v_offset_mm=-0.4)
    r = g.rays(3, jnp.float64)
    o, d, t1 = np.asarray(r.origins), np.asarray(r.directions), np.asarray(r.t_max)
    assert o.shape == (9, 7, 3) and t1.shape == (9, 7)
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-12)
    src, centre, e_u, e_v = (np.asarray(x) for x in g.pose(3, jnp.float64))
    u = (np.arange(9) - 4) * 1.5
    v = (np.arange(7) - 3) * 1.2
    expect = centre + u[:, None, None] * e_u + v[None, :, None] * e_v
    np.testing.assert_allclose(o + t1[..., None] * d, expect, atol=1e-9)
    # the offsets move the detector, not the source
    np.testing.assert_allclose(centre - src, 500.0 * np.cross(e_v, e_u) + 0.7 * e_u - 0.4 * e_v)


def test_helical_source_advances_pitch_per_turn():
    g = _cone(n_views=12, arc_rad=4 * math.pi, pitch_mm=24.0, z_mm=-5.0, angles_rad=None)
    z = np.array([float(g.source_z_mm(k, jnp.float64)) for k in range(12)])
    np.testing.assert_allclose(z, -5.0 + 24.0 * np.arange(12) * (4 * math.pi / 12) / (2 * math.pi))
    assert g.helical and not _cone().helical


def test_projection_matrices_round_trip_and_map_pixels_to_indices():
    g = _cone(u_offset_mm=2.0, v_offset_mm=-1.0, pitch_mm=10.0, isocenter_mm=(3.0, 4.0))
    p = g.as_projection_geometry()
    mats = p.projection_matrices()
    assert mats.shape == (8, 3, 4)
    back = ProjectionGeometry.from_projection_matrices(mats, n_u=9, n_v=7, du_mm=1.5)
    for a, b in zip(p.poses(), back.poses(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-9)
    assert float(back.dv_mm) == pytest.approx(1.2, rel=1e-12)
    # every pixel centre maps to its own (i, j)
    r = g.rays(5, jnp.float64)
    end = np.asarray(r.origins + r.t_max[..., None] * r.directions)
    h = np.concatenate([end, np.ones((9, 7, 1))], axis=-1) @ mats[5].T
    ij = h[..., :2] / h[..., 2:]
    np.testing.assert_allclose(ij[..., 0], np.arange(9)[:, None] * np.ones((1, 7)), atol=1e-9)
    np.testing.assert_allclose(ij[..., 1], np.ones((9, 1)) * np.arange(7)[None, :], atol=1e-9)


def test_single_projection_matrix_is_one_view():
    k = np.array([[1000.0, 0.0, 63.5], [0.0, 1000.0, 39.5], [0.0, 0.0, 1.0]])
    rt = np.concatenate([np.eye(3), [[0.0], [0.0], [800.0]]], axis=1)
    p = ProjectionGeometry.from_projection_matrices(k @ rt, n_u=128, n_v=80, du_mm=0.5)
    src, centre, _e_u, _e_v = p.poses()
    np.testing.assert_allclose(src[0], [0.0, 0.0, -800.0], atol=1e-9)
    np.testing.assert_allclose(centre[0], [0.0, 0.0, -300.0], atol=1e-9)  # 1000 px × 0.5 mm
    assert p.n_views == 1 and float(p.dv_mm) == pytest.approx(0.5)


def test_curved_fan_pixels_lie_on_the_arc_equiangularly():
    g = FanBeam.create(
        n_views=4, n_u=11, du_mm=4.0, sod_mm=300.0, sdd_mm=600.0, curved=True, n_rows=1
    )
    r = g.planar_rays(1, jnp.float64)
    src = np.asarray(g.source_xy(1, jnp.float64))
    end = np.asarray(r.origins + r.t_max[:, None] * r.directions)
    np.testing.assert_allclose(np.linalg.norm(end - src, axis=-1), 600.0, atol=1e-9)
    e_u, d = (np.asarray(x) for x in g.frame(1, jnp.float64))
    dirs = np.asarray(r.directions)
    gamma = np.arctan2(dirs @ e_u, dirs @ d)  # fan angle, positive toward +u
    np.testing.assert_allclose(gamma, (np.arange(11) - 5) * 4.0 / 600.0, atol=1e-12)
    assert g.fan_angle_rad() == pytest.approx(44.0 / 600.0)
    # detector_u inverts the ray: a point on pixel 8's ray maps to u = 3 × 4 mm
    pt = np.asarray(r.origins[8] + 250.0 * r.directions[8])
    u, _ = g.detector_u(1, jnp.asarray(pt[None, :]), jnp.float64)
    assert float(u[0]) == pytest.approx(12.0, abs=1e-9)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(sdd_mm=300.0), "`sdd_mm` must exceed `sod_mm`"),
        (dict(sdd_mm=200.0), "`sdd_mm` must exceed `sod_mm`"),
        (dict(n_views=None), "give `n_views`"),
        (dict(n_views=0), "`n_views` must be ≥ 1"),
        (dict(n_u=0), "`n_u` must be ≥ 1"),
        (dict(n_v=0), "`n_v` must be ≥ 1"),
        (dict(du_mm=0.0), "`du_mm` must be a positive"),
        (dict(dv_mm=-1.0), "`dv_mm` must be a positive"),
        (dict(pitch_mm=-1.0), "`pitch_mm` must be ≥ 0"),
        (dict(angles_rad=[]), "`angles_rad` must be a 1-D array"),
    ],
)
def test_cone_validation_names_the_call_and_field(kw, message):
    with pytest.raises(ValueError, match=message) as info:
        _cone(**kw)
    assert "medphys.simulators.ConeBeam.create" in str(info.value)


def test_projection_geometry_validation():
    ok = dict(
        sources_mm=[[0.0, -500.0, 0.0]],
        detector_centers_mm=[[0.0, 500.0, 0.0]],
        u_axes=[[1.0, 0.0, 0.0]],
        v_axes=[[0.0, 0.0, 1.0]],
        n_u=4,
        n_v=4,
        du_mm=1.0,
        dv_mm=1.0,
    )
    assert ProjectionGeometry.create(**ok).n_views == 1
    bad = [
        (dict(sources_mm=np.zeros((0, 3))), "views ≥ 1"),
        (dict(detector_centers_mm=np.zeros((2, 3))), r"must have shape \(1, 3\)"),
        (dict(v_axes=[[1.0, 1.0, 0.0]]), "must be orthogonal"),
        (dict(u_axes=[[0.0, 0.0, 0.0]]), "non-zero"),
        (dict(detector_centers_mm=[[0.0, -500.0, 0.0]]), "lies in its detector's plane"),
        (dict(du_mm=0.0), "`du_mm` must be a positive"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            ProjectionGeometry.create(**{**ok, **change})
    with pytest.raises(ValueError, match="singular"):
        ProjectionGeometry.from_projection_matrices(np.zeros((3, 4)), n_u=4, n_v=4, du_mm=1.0)
    with pytest.raises(ValueError, match="shape"):
        ProjectionGeometry.from_projection_matrices(np.eye(3), n_u=4, n_v=4, du_mm=1.0)


def test_source_inside_and_detector_missing_the_volume_are_errors_before_work():
    vol = Volume.create(np.ones((40, 40, 40), np.float32), spacing_mm=2.0)  # ±40 mm
    with pytest.raises(ValueError, match="lies inside the volume"):
        project(vol, _cone(sod_mm=30.0, sdd_mm=500.0))
    with pytest.raises(ValueError, match="detector misses the volume"):
        project(vol, _cone(z_mm=400.0))
    far = ProjectionGeometry.create(
        sources_mm=[[500.0, -500.0, 0.0]],
        detector_centers_mm=[[500.0, 500.0, 0.0]],
        u_axes=[[1.0, 0.0, 0.0]],
        v_axes=[[0.0, 0.0, 1.0]],
        n_u=8,
        n_v=8,
        du_mm=1.0,
        dv_mm=1.0,
    )
    with pytest.raises(ValueError, match="detector misses the volume"):
        project(vol, far)
    assert project(vol, _cone()).shape == (8, 9, 7)
