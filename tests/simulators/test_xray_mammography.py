"""Mammography and breast tomosynthesis: a-Se converter, half-cone geometry, catalog protocols."""

from __future__ import annotations

import numpy as np
import pytest
import xraylib

import medphys.materials as mm
import medphys.simulators as sims
from medphys import LabeledVolume
from medphys._errors import ConfigError
from medphys.simulators import ProjectionGeometry, xray
from medphys.simulators.xray._detector import channel_weights

A_SE_DENSITY = 4.3  # g/cm³, amorphous selenium (Kasap & Rowlands 2002)


def test_a_se_absorption_efficiency_closed_form_and_k_edge():
    d = xray.EnergyIntegratingDetector.create(converter="a-Se", converter_um=200.0)
    for e in (10.0, 15.0, 17.5, 20.0, 28.0, 40.0):
        want = 1.0 - np.exp(-xraylib.CS_Total(34, e) * A_SE_DENSITY * 200e-4)
        assert float(d.efficiency(e)[0]) == pytest.approx(want, rel=2e-3)
    # measured: 0.9999 at 15 keV, 0.984 at 20 keV, 0.810 at 28 keV for 200 µm
    assert float(d.efficiency(20.0)[0]) == pytest.approx(0.984, abs=0.002)
    # the Se K edge (12.66 keV): absorption per µm jumps by the edge ratio
    thin = xray.EnergyIntegratingDetector.create(converter="a-Se", converter_um=1.0)
    below, above = (float(thin.efficiency(e)[0]) for e in (12.55, 12.75))
    assert above > 4.0 * below
    # thicker converters absorb more at every energy
    thick = xray.EnergyIntegratingDetector.create(converter="a-Se", converter_um=250.0)
    e = np.linspace(10.0, 40.0, 31)
    assert np.all(np.asarray(thick.efficiency(e)) > np.asarray(d.efficiency(e)))


def test_default_detector_is_unchanged():
    d = xray.EnergyIntegratingDetector.create(electronic_noise=3.0, blur_fwhm_mm=0.6)
    assert d.absorption is None and d.converter == ""
    e = np.array([20.0, 40.0, 60.0])
    n = np.array([1.0, 2.0, 1.0])
    w1, w2 = channel_weights(d, e, n)
    e0 = np.sum(e * n) / np.sum(n)
    np.testing.assert_array_equal(np.asarray(w1)[:, 0], e / e0)
    np.testing.assert_array_equal(np.asarray(w2)[:, 0], (e / e0) ** 2)


def _slab(thickness_mm=40.0, spacing=2.0):
    """A water slab 40 mm thick resting on the detector (z from 0), 56 × 48 mm, in air."""
    nx, ny, nz = 32, 28, round(thickness_mm / spacing) + 2
    lab = np.zeros((nx, ny, nz), np.int32)
    lab[2:-2, 1:-3, :-2] = 1
    return LabeledVolume.create(
        lab,
        [(0, "air", "air"), (1, "breast", "water")],
        spacing_mm=spacing,
        center_mm=(0.0, ny * spacing / 2, (nz - 1) * spacing / 2 + spacing / 2),
    )


def test_half_cone_geometry_convention():
    g = xray.mammography_geometry(sid_mm=650.0, n_u=40, n_v=30, du_mm=2.0, dv_mm=2.0)
    assert isinstance(g, ProjectionGeometry) and g.n_views == 1
    src, centre, e_u, e_v = g.poses()
    np.testing.assert_allclose(src[0], [0.0, 0.0, 650.0])  # above the chest-wall edge
    np.testing.assert_allclose(centre[0], [0.0, 30.0, 0.0])  # the field lies anterior (+y)
    np.testing.assert_allclose(np.cross(e_u[0], e_v[0]), [0.0, 0.0, 1.0])  # normal toward source
    # the projection matrix's principal point (foot of the central ray) is the chest-wall edge:
    # row index -0.5 (the edge of the first row), centred along u
    p = g.projection_matrices()[0]
    foot = p @ np.array([0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(foot[:2] / foot[2], [19.5, -0.5], atol=1e-9)


def test_dbt_sweep_about_the_pivot():
    g = xray.mammography_geometry(
        sid_mm=700.0, n_u=16, n_v=8, du_mm=1.0, dv_mm=1.0, n_views=15, arc_deg=15.0,
        pivot_height_mm=40.0,
    )  # fmt: skip
    src, centre, _, _ = g.poses()
    pivot = np.array([0.0, 0.0, 40.0])
    r = np.linalg.norm(src - pivot, axis=1)
    np.testing.assert_allclose(r, 660.0)
    angles = np.degrees(np.arctan2(src[:, 0], src[:, 2] - 40.0))
    np.testing.assert_allclose(angles, np.linspace(-7.5, 7.5, 15), atol=1e-12)
    np.testing.assert_allclose(centre, np.broadcast_to(centre[0], centre.shape))  # stationary
    np.testing.assert_allclose(src[:, 1], 0.0)  # the sweep is parallel to the chest wall


def test_slab_line_integrals_and_a_se_flat_field():
    """Monoenergetic 20 keV through a 40 mm water slab: -log = μ 40 mm / cos(ray to normal) on
    every pixel under the slab; the a-Se panel reads η(20 keV) of the ideal flat field (measured
    0.984) with projections unchanged (one energy)."""
    lv = _slab()
    g = xray.mammography_geometry(sid_mm=650.0, n_u=20, n_v=16, du_mm=2.0, dv_mm=2.0)
    spec = xray.Spectrum.monoenergetic(20.0, photons_per_mas_mm2=1.0e5)
    ideal = xray.CTProtocol.create(geometry=g, spectrum=spec, mas=10.0, modality="radiograph")
    se = xray.EnergyIntegratingDetector.create(converter="a-Se", converter_um=200.0)
    a = xray.expected_scan(lv, ideal, dtype=np.float64)
    b = xray.expected_scan(lv, xray.CTProtocol.create(
        geometry=g, spectrum=spec, mas=10.0, detector=se, modality="radiograph"
    ), dtype=np.float64)  # fmt: skip
    eta = float(se.efficiency(20.0)[0])
    np.testing.assert_allclose(
        np.asarray(b.flat_counts), eta * np.asarray(a.flat_counts), rtol=1e-9
    )
    np.testing.assert_allclose(np.asarray(b.projections), np.asarray(a.projections), atol=1e-9)
    mu = float(np.diff(mm.attenuation_table(["air", "water"], [20.0])[:, 0])[0]) / 10.0
    rays = g.rays(0, np.float64)
    cos = np.abs(np.asarray(rays.directions)[..., 2])
    want = mu * 40.0 / cos
    got = np.asarray(a.projections[0])
    inside = (np.abs(np.arange(20) - 9.5)[:, None] < 6) & (np.abs(np.arange(16) - 6)[None, :] < 4)
    np.testing.assert_allclose(got[inside], want[inside], rtol=2e-3)


def test_bad_input():
    with pytest.raises(ValueError, match=r"EnergyIntegratingDetector.create: `converter` must be"):
        xray.EnergyIntegratingDetector.create(converter="Ge", converter_um=100.0)
    with pytest.raises(ValueError, match=r"`converter` 'a-Se' needs `converter_um`"):
        xray.EnergyIntegratingDetector.create(converter="a-Se")
    with pytest.raises(ValueError, match=r"`converter_um` must be > 0"):
        xray.EnergyIntegratingDetector.create(converter="a-Se", converter_um=0.0)
    with pytest.raises(ValueError, match=r"mammography_geometry: one view has no sweep"):
        xray.mammography_geometry(sid_mm=650, n_u=4, n_v=4, du_mm=1, dv_mm=1, arc_deg=15)
    with pytest.raises(ValueError, match=r"n_views=15 needs a sweep"):
        xray.mammography_geometry(sid_mm=650, n_u=4, n_v=4, du_mm=1, dv_mm=1, n_views=15)
    with pytest.raises(ValueError, match=r"`pivot_height_mm` must be in \[0, sid_mm=650\)"):
        xray.mammography_geometry(
            sid_mm=650, n_u=4, n_v=4, du_mm=1, dv_mm=1, n_views=3, arc_deg=10, pivot_height_mm=700
        )
    cfg = sims.load.__globals__["read_toml"](sims.load.__globals__["resolve"](
        "simulators", "dbt-15views-15deg"
    ))  # fmt: skip
    cfg["geometry"]["arc_deg"] = 0.0
    with pytest.raises(ConfigError, match=r"bad.toml.*geometry.*one view has no sweep"):
        sims.from_config(cfg, source="bad.toml")
    cfg["geometry"]["arc_deg"] = 15.0
    cfg["detector"]["converter"] = "Ge"
    with pytest.raises(ConfigError, match=r"bad.toml.*detector.converter"):
        sims.from_config(cfg, source="bad.toml")


@pytest.mark.parametrize(
    "name,anode,n_views,arc,sid,pitch",
    [
        ("mammo-momo-28kvp", "Mo", 1, 0.0, 650.0, 0.085),
        ("mammo-wrh-28kvp", "W", 1, 0.0, 700.0, 0.07),
        ("dbt-15views-15deg", "W", 15, 15.0, 700.0, 0.14),
        ("dbt-25views-50deg", "W", 25, 50.0, 650.0, 0.085),
    ],
)
def test_catalog_protocols(name, anode, n_views, arc, sid, pitch):
    p = sims.load(name)
    assert isinstance(p, xray.CTProtocol) and p.modality == "radiograph" and p.description
    assert p.spectrum.anode == anode and p.detector.converter == "a-Se"
    g = p.geometry
    assert g.n_views == n_views and float(g.du_mm) == pitch
    src, centre, _, _ = g.poses()
    assert np.all(centre[:, 2] == 0.0) and np.all(src[:, 1] == 0.0)
    angles = np.degrees(np.arctan2(src[:, 0], src[:, 2]))
    assert angles.max() - angles.min() == pytest.approx(arc)
    assert float(np.linalg.norm(src[n_views // 2])) == pytest.approx(sid)
