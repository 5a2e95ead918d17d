"""Statistical organ texture in the simulators: CT attenuation and MR proton density follow a
phantom's ``density_scale``; without one they run exactly as before."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import medphys.materials as mm
from medphys import LabeledVolume, Volume, phantoms
from medphys.phantoms import PowerLawTexture, texture_modulation
from medphys.simulators import ct, mr, xray
from medphys.simulators.geometry import FanBeam

SHAPE, SPACING = (40, 40, 2), (8.0, 8.0, 5.0)


@pytest.fixture(scope="module")
def cylinder():
    ph = phantoms.load("water-cylinder")
    return ph, phantoms.voxelize(ph, shape=SHAPE, spacing_mm=SPACING)


def _textured(ph, lv, amplitude):
    ph = ph.with_texture("water", PowerLawTexture.create(beta=2.0, amplitude=amplitude))
    return lv.with_density_scale(texture_modulation(jax.random.key(4), ph, lv).data)


def _protocol(spectrum):
    return xray.CTProtocol.create(
        geometry=FanBeam.create(n_views=60, n_u=320, du_mm=2.0, sod_mm=595.0, sdd_mm=1085.6),
        spectrum=spectrum,
        mas=100.0,
        filter="hann",
        water_diameter_mm=300.0,
    )


def test_ct_line_integrals_are_those_of_scaled_mu(cylinder):
    ph, lv = cylinder
    tex = _textured(ph, lv, 0.05)
    energy = 70.0
    protocol = _protocol(xray.Spectrum.monoenergetic(energy))
    scan = xray.expected_scan(tex, protocol)
    mu = mm.attenuation_table(["water", "air"], np.array([energy]))[:, 0]  # 1/cm
    water = np.asarray(tex.material_fractions())[tex.material_names.index("water")]
    scaled = Volume(
        data=(water * np.asarray(tex.density_scale)).astype(np.float32), affine=lv.affine
    )
    direct = (mu[0] - mu[1]) / 10.0 * np.asarray(xray.project(scaled, scan.geometry))
    got = np.asarray(scan.projections)
    np.testing.assert_allclose(got, direct, rtol=2e-4, atol=2e-4 * direct.max())
    # and they differ from the untextured phantom's
    plain = np.asarray(xray.expected_scan(lv, protocol).projections)
    assert np.abs(got - plain).max() > 1e-3 * plain.max()


def test_ct_image_shows_the_texture(cylinder):
    ph, lv = cylinder
    protocol = _protocol(
        xray.Spectrum.create(kvp=120, anode_angle_deg=7, filtration=(("Al", 2.5),), bin_kev=10)
    )
    c = (np.arange(40) - 19.5) * 8.0
    inside = (c[:, None] ** 2 + c[None, :] ** 2) < 110.0**2
    images = []
    for amplitude in (0.0, 0.01, 0.03):
        v = lv if amplitude == 0 else _textured(ph, lv, amplitude)
        image = np.asarray(ct.reconstruct(xray.expected_scan(v, protocol), protocol, like=v).data)
        images.append(image[..., 0][inside])
    stds = [float(i.std()) for i in images]
    assert stds[0] < stds[1] < stds[2]
    # the texture's own image (textured − uniform) is linear in the amplitude, ~1000 HU per unit
    # relative density: 3 % gives tens of HU (smoothed by the 8 mm voxels and the Hann filter)
    d1, d3 = (float((i - images[0]).std()) for i in images[1:])
    assert 2.7 < d3 / d1 < 3.3 and d3 > 10.0, (d1, d3)


def test_mr_proton_density_is_scaled_inside_the_mask(cylinder):
    ph, lv = cylinder
    tex = _textured(ph, lv, 0.1)
    plain = mr.tissue_maps(lv, 1.5)
    maps = mr.tissue_maps(tex, 1.5)
    c = maps.names.index("water")
    scale = np.asarray(tex.density_scale)
    assert maps.pd.shape == (len(maps.names), *SHAPE)
    np.testing.assert_allclose(np.asarray(maps.pd[c]), float(plain.pd[c]) * scale, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(maps.t1_s), np.asarray(plain.t1_s))
    np.testing.assert_array_equal(np.asarray(maps.fractions), np.asarray(plain.fractions))
    outside = ~np.asarray(lv.mask("water"))
    np.testing.assert_array_equal(scale[outside], 1.0)
    # the spin-echo image follows PD: relative image modulation = scale inside the cylinder
    protocol = mr.MRProtocol.create(mr.SpinEcho.create(te_s=0.02, tr_s=0.6), field_t=1.5)
    a = np.abs(np.asarray(mr.simulate(jax.random.key(0), lv, protocol).image.data))
    b = np.abs(np.asarray(mr.simulate(jax.random.key(0), tex, protocol).image.data))
    assert np.all(np.isfinite(b)) and not np.allclose(a, b)


def test_density_scale_none_changes_nothing(cylinder):
    _, lv = cylinder
    assert lv.density_scale is None
    again = lv.with_density_scale(None)
    protocol = _protocol(xray.Spectrum.monoenergetic(70.0))
    a = np.asarray(xray.expected_scan(lv, protocol).projections)
    b = np.asarray(xray.expected_scan(again, protocol).projections)
    assert a.tobytes() == b.tobytes()
    ones = lv.with_density_scale(np.ones(SHAPE, np.float32))
    c = np.asarray(xray.expected_scan(ones, protocol).projections)
    np.testing.assert_allclose(c, a, rtol=1e-6, atol=1e-6)


def test_density_scale_is_validated(cylinder):
    _, lv = cylinder
    with pytest.raises(ValueError, match=r"with_density_scale.*shape \(40, 40, 2\).*\(40, 40\)"):
        lv.with_density_scale(np.ones((40, 40), np.float32))
    with pytest.raises(ValueError, match=r"finite and >= 0"):
        lv.with_density_scale(np.full(SHAPE, -1.0, np.float32))
    with pytest.raises(ValueError, match=r"LabeledVolume.create.*density_scale"):
        LabeledVolume.create(
            np.zeros((4, 4, 1), np.int32), [(0, "air", "air")], density_scale=np.ones((4, 4, 2))
        )
    ok = LabeledVolume.create(
        np.zeros((4, 4, 1), np.int32),
        [(0, "air", "air")],
        density_scale=np.ones((4, 4, 1), np.float32),
    )
    leaves = jax.tree_util.tree_leaves(ok)
    assert any(getattr(x, "shape", None) == (4, 4, 1) and x.dtype == np.float32 for x in leaves)
