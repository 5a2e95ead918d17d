"""Simulation with point-source, flat-panel geometries (cone beam, tomosynthesis, radiographs):
flat field from the inverse square law and obliquity, Beer–Lambert through the object, noise,
FDK in HU, and the radiograph / C-arm / tomosynthesis catalog protocols."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import medphys.materials as mm
from medphys import LabeledVolume
from medphys.simulators import ct, load, xray
from medphys.simulators.geometry import ConeBeam, ProjectionGeometry

N, SP, R = 32, 4.0, 40.0  # a water cylinder r 40 mm along z, 128 mm cube


def _cylinder(nz=16):
    c = (np.arange(N) - (N - 1) / 2) * SP
    ss = 4
    off = ((np.arange(ss) + 0.5) / ss - 0.5) * SP
    x = (c[:, None] + off[None, :]).reshape(-1)
    f = (np.hypot(x[:, None], x[None, :]) <= R).reshape(N, ss, N, ss).mean(axis=(1, 3))
    f = np.repeat(f[:, :, None], nz, axis=2).astype(np.float64)
    return LabeledVolume.create(
        (f > 0.5).astype(np.int32),
        [(0, "air", "air"), (1, "body", "water")],
        spacing_mm=SP,
        fractions=np.stack([1 - f, f]),
    )


@pytest.fixture(scope="module")
def phantom():
    return _cylinder()


def _cone(n_views=1, n_u=40, n_v=20, **kw):
    return ConeBeam.create(
        n_views=n_views, n_u=n_u, n_v=n_v, du_mm=4.0, dv_mm=4.0, sod_mm=500.0, sdd_mm=800.0, **kw
    )


def test_radiograph_flat_field_and_beer_lambert(phantom):
    spec = xray.Spectrum.monoenergetic(60.0, photons_per_mas_mm2=1.0e4)
    g = _cone()
    prot = xray.CTProtocol.create(
        geometry=g, spectrum=spec, mas_per_view=2.0, modality="radiograph"
    )
    scan = xray.expected_scan(phantom, prot)
    assert scan.projections.shape == (1, 40, 20) and scan.flat_counts.shape == (1, 40, 20)
    # flat field: N mAs (1000/len)² du dv cos θ = N0 (1000/sdd)² cos³θ on a flat panel
    u = (np.arange(40) - 19.5) * 4.0
    v = (np.arange(20) - 9.5) * 4.0
    length = np.sqrt(800.0**2 + u[:, None] ** 2 + v[None, :] ** 2)
    expected_flat = 1.0e4 * 2.0 * (1000.0 / length) ** 2 * 16.0 * (800.0 / length)
    np.testing.assert_allclose(np.asarray(scan.flat_counts[0]), expected_flat, rtol=1e-9)
    # central ray through the cylinder: chord 2R of water (vs air)
    mu = float(np.diff(mm.attenuation_table(["air", "water"], [60.0])[:, 0])[0]) / 10
    p_centre = float(np.asarray(scan.projections[0, 19:21, 9:11]).mean())
    # the 4 central pixels' rays pass within 2.5 mm of the axis: chord within 0.1 %
    assert p_centre == pytest.approx(mu * 2 * R, rel=0.01)
    noisy = xray.simulate(phantom, prot, jax.random.key(0))
    assert noisy.projections.shape == (1, 40, 20)
    assert np.all(np.isfinite(np.asarray(noisy.projections)))


def test_tomosynthesis_views_have_their_own_flat_fields(phantom):
    from medphys.simulators.xray._protocol import tomosynthesis_geometry

    g = tomosynthesis_geometry(
        n_views=5, sweep_deg=40.0, sod_mm=500.0, sdd_mm=800.0, n_u=40, n_v=30, du_mm=4.0, dv_mm=4.0
    )
    assert isinstance(g, ProjectionGeometry)
    spec = xray.Spectrum.monoenergetic(60.0, photons_per_mas_mm2=1.0e4)
    prot = xray.CTProtocol.create(geometry=g, spectrum=spec, mas=5.0, modality="radiograph")
    scan = xray.expected_scan(phantom, prot)
    flat = np.asarray(scan.flat_counts)
    assert flat.shape == (5, 40, 30)
    # each view: N mAs (1000/len)² du dv cos θ from its own source position
    src = np.asarray(g.sources_mm)
    u = (np.arange(40) - 19.5) * 4.0
    v = (np.arange(30) - 14.5) * 4.0  # rows centred on z = 0
    pix = np.stack(np.meshgrid(u, v, indexing="ij"), axis=-1)
    for k in (0, 2, 4):
        d = np.stack(
            [
                pix[..., 0] - src[k, 0],
                np.full(pix.shape[:2], 300.0) - src[k, 1],
                pix[..., 1] - src[k, 2],
            ],
            axis=-1,
        )
        length = np.linalg.norm(d, axis=-1)
        expected = 1.0e4 * 1.0 * (1000.0 / length) ** 2 * 16.0 * (d[..., 1] / length)
        np.testing.assert_allclose(flat[k], expected, rtol=1e-9)
    np.testing.assert_allclose(flat[0], flat[4][:, ::-1], rtol=1e-9)  # symmetric sweep
    with pytest.raises(ValueError, match=r"ct.reconstruct: .* is a 'radiograph' protocol"):
        ct.reconstruct(scan, prot, like=phantom)


@pytest.mark.slow
def test_cone_beam_ct_of_water_reads_zero_hu_after_calibration(phantom):
    spec = xray.Spectrum.create(kvp=100, filtration=(("Al", 3.0), ("Cu", 0.2)), bin_kev=5)
    g = _cone(n_views=120, n_u=48, n_v=24)
    prot = xray.CTProtocol.create(
        geometry=g,
        spectrum=spec,
        mas=50.0,
        filter="hann",
        water_diameter_mm=2 * R,
        beam_hardening_correction=True,
    )
    scan = xray.expected_scan(phantom, prot)
    hu = np.asarray(ct.reconstruct(scan, prot, like=phantom).data)
    c = (np.arange(N) - (N - 1) / 2) * SP
    r = np.hypot(c[:, None], c[None, :])
    mid = hu[:, :, 6:10]
    water = mid[r < 25].mean()
    air = mid[(r > 48) & (r < 58)].mean()
    # measured: water 0.6 HU, air -999 HU (FDK near the mid-plane, noise-free)
    assert abs(water) < 10.0
    assert air == pytest.approx(-1000.0, abs=15.0)


@pytest.mark.parametrize("name", ["xray-chest-pa", "ct-carm-cbct", "xray-tomosynthesis"])
def test_new_catalog_protocols_load(name):
    prot = load(name)
    assert isinstance(prot, xray.CTProtocol) and prot.name == name and prot.description
    expected = {
        "xray-chest-pa": "radiograph",
        "ct-carm-cbct": "ct",
        "xray-tomosynthesis": "radiograph",
    }
    assert prot.modality == expected[name]
    if name == "xray-chest-pa":
        assert isinstance(prot.geometry, ConeBeam) and prot.geometry.n_views == 1
        src, centre, _, _ = prot.geometry.poses()
        assert src[0, 1] < 0 < centre[0, 1]  # PA: source posterior, detector anterior
        assert float(np.linalg.norm(centre[0] - src[0])) == pytest.approx(1800.0)
    elif name == "ct-carm-cbct":
        assert isinstance(prot.geometry, ConeBeam) and prot.geometry.n_views == 360
        assert prot.beam_hardening_correction and float(prot.scatter.spr) == 0.5
    else:
        assert isinstance(prot.geometry, ProjectionGeometry) and prot.geometry.n_views == 60
        src = np.asarray(prot.geometry.sources_mm)
        elevation = np.degrees(np.arctan2(src[:, 2], -src[:, 1]))
        assert elevation[0] == pytest.approx(-15.0) and elevation[-1] == pytest.approx(15.0)


def test_bowtie_needs_a_planar_geometry():
    spec = xray.Spectrum.create(kvp=80)
    with pytest.raises(
        ValueError, match=r"CTProtocol.create: a `bowtie` needs a ParallelBeam or FanBeam"
    ):
        xray.CTProtocol.create(
            geometry=_cone(), spectrum=spec, mas=1.0, bowtie=xray.Bowtie.create(edge_mm=5.0)
        )


def test_scan_dtype_follows_the_phantom(phantom):
    spec = xray.Spectrum.monoenergetic(60.0)
    prot = xray.CTProtocol.create(geometry=_cone(), spectrum=spec, mas=1.0, modality="radiograph")
    scan = xray.expected_scan(phantom, prot)
    assert scan.projections.dtype == jnp.float64
