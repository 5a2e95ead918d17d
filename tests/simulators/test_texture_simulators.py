"""Statistical organ texture in the simulators: CT attenuation and MR proton density follow a
phantom's ``density_scale``, MR T1 and T2 its ``relaxation_scale``; without them they run
exactly as before."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import medphys.materials as mm
from medphys import LabeledVolume, Volume, phantoms
from medphys.phantoms import PowerLawTexture, apply_texture, texture_modulation
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


@pytest.mark.slow  # about 5 s; the textured line integrals above keep the CT path in the default
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


# --- relaxation texture (MR) ---------------------------------------------------------------------

# T1-weighted spin echo: short TR against water's T1, short TE against its T2
_T1W = mr.MRProtocol.create(mr.SpinEcho.create(te_s=0.015, tr_s=0.4), field_t=1.5)


def _relaxation_textured(ph, lv, *, t1=0.0, t2=0.0, beta=2.0, seed=4):
    spec = PowerLawTexture.create(beta=beta, amplitude=0.05, t1_amplitude=t1, t2_amplitude=t2)
    return apply_texture(jax.random.key(seed), ph.with_texture("water", spec), lv)


def test_mr_relaxation_texture_raises_the_organ_std_on_t1_weighting(cylinder):
    """PD texture of 5 % alone against the same field also modulating T1 (+20 %) and T2
    (+10 %): on a T1-weighted spin echo (TR 0.4 s, TE 15 ms) the image inside the cylinder
    varies more (signal ∝ PD (1 - exp(-TR/T1)) exp(-TE/T2): for water's long T1 the T1 term
    outweighs the PD one). Measured relative std (edge voxels included): 0.118 and 0.190."""
    ph, lv = cylinder
    inside = np.asarray(lv.mask("water"))
    stds = []
    for t1, t2 in ((0.0, 0.0), (0.2, 0.1)):
        v = _relaxation_textured(ph, lv, t1=t1, t2=t2)
        assert (v.relaxation_scale is None) == (t1 == 0.0)
        image = np.abs(np.asarray(mr.simulate(jax.random.key(0), v, _T1W).image.data))
        stds.append(float(image[inside].std() / image[inside].mean()))
    assert stds[1] > 1.4 * stds[0], stds


def test_mr_t1_map_has_the_requested_relative_std(cylinder):
    """White-noise field (beta = 0, independent voxels): T1 / T1_0 inside the mask has std
    0.12 within 4 standard errors (SE of a std from n normal values: s / sqrt(2 (n - 1)));
    T2 follows its own amplitude, T2* follows T2; outside the mask nothing changes. Measured:
    0.1196 over 2248 voxels (SE 0.0018)."""
    ph, lv = cylinder
    v = _relaxation_textured(ph, lv, t1=0.12, t2=-0.06, beta=0.0)
    plain = mr.tissue_maps(lv, 1.5)
    maps = mr.tissue_maps(v, 1.5)
    c = maps.names.index("water")
    inside = np.asarray(lv.mask("water"))
    assert maps.t1_s.shape == (len(maps.names), *SHAPE) and maps.t1_s.dtype == np.float32
    t1 = np.asarray(maps.t1_s[c])[inside] / float(plain.t1_s[c])
    n = t1.size
    se = 0.12 / np.sqrt(2 * (n - 1))
    assert abs(t1.std(ddof=1) - 0.12) < 4 * se, (t1.std(ddof=1), se, n)
    assert abs(t1.mean() - 1) < 4 * 0.12 / np.sqrt(n)
    # T2 anticorrelated with T1 (same field), and T2* through T2 with 1/T2' held
    t2 = np.asarray(maps.t2_s[c])[inside] / float(plain.t2_s[c])
    np.testing.assert_allclose(t2 - 1, -0.5 * (t1 - 1), rtol=1e-4, atol=1e-6)
    r2p = 1 / float(plain.t2star_s[c]) - 1 / float(plain.t2_s[c])
    expected = 1 / (1 / np.asarray(maps.t2_s[c]) + r2p)
    np.testing.assert_allclose(np.asarray(maps.t2star_s[c]), expected, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(maps.t1_s[c])[~inside], float(plain.t1_s[c]))
    np.testing.assert_array_equal(
        np.asarray(maps.pd), np.asarray(mr.tissue_maps(v.with_relaxation_scale(None), 1.5).pd)
    )


def test_mr_without_relaxation_amplitudes_is_byte_identical(cylinder):
    """A texture without t1/t2 amplitudes: `apply_texture` gives the same k-space and image bytes
    as the density-only path used before (``with_density_scale(texture_modulation(...))``)."""
    ph, lv = cylinder
    textured = ph.with_texture("water", PowerLawTexture.create(beta=2.0, amplitude=0.05))
    key = jax.random.key(4)
    before = lv.with_density_scale(texture_modulation(key, textured, lv).data)
    after = apply_texture(key, textured, lv)
    assert after.relaxation_scale is None
    a = mr.simulate(jax.random.key(0), before, _T1W)
    b = mr.simulate(jax.random.key(0), after, _T1W)
    assert np.asarray(a.kspace).tobytes() == np.asarray(b.kspace).tobytes()
    assert np.asarray(a.image.data).tobytes() == np.asarray(b.image.data).tobytes()
    plain = mr.tissue_maps(lv, 1.5)
    assert plain.t1_s.shape == (len(plain.names),)  # untextured relaxation stays per compartment


def test_relaxation_textured_maps_jit_and_vmap_through_the_prepared_operator(cylinder):
    ph, lv = cylinder
    cases = [
        mr.tissue_maps(_relaxation_textured(ph, lv, t1=0.1, t2=0.05, seed=s), 1.5) for s in (1, 2)
    ]
    op = mr.prepare(cases[0].grid, _T1W, compartments=cases[0].names)
    key = jax.random.key(5)
    eager = op.acquire(key, cases[0])
    jitted = jax.jit(op.acquire)(key, cases[0])
    scale = float(jnp.max(jnp.abs(eager.kspace)))
    np.testing.assert_allclose(
        np.asarray(jitted.kspace), np.asarray(eager.kspace), atol=2e-6 * scale
    )
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *cases)
    keys = jax.random.split(key, 2)
    batched = jax.jit(jax.vmap(op.acquire))(keys, stacked)
    for i, (k, m) in enumerate(zip(keys, cases, strict=True)):
        one = op.acquire(k, m)
        np.testing.assert_allclose(
            np.asarray(batched.kspace[i]), np.asarray(one.kspace), atol=2e-6 * scale
        )
    assert not np.allclose(np.asarray(batched.image.data[0]), np.asarray(batched.image.data[1]))


def test_relaxation_scale_is_validated(cylinder):
    _, lv = cylinder
    with pytest.raises(ValueError, match=r"with_relaxation_scale.*\(2, 40, 40, 2\).*\(40, 40, 2\)"):
        lv.with_relaxation_scale(np.ones(SHAPE, np.float32))
    with pytest.raises(ValueError, match=r"with_relaxation_scale.*finite and > 0.*0\.0"):
        lv.with_relaxation_scale(np.zeros((2, *SHAPE), np.float32))
    with pytest.raises(ValueError, match=r"finite and > 0"):
        lv.with_relaxation_scale(np.full((2, *SHAPE), np.nan, np.float32))
    with pytest.raises(TypeError, match=r"relaxation_scale.*floating"):
        lv.with_relaxation_scale(np.ones((2, *SHAPE), np.int32))
    with pytest.raises(ValueError, match=r"LabeledVolume.create.*relaxation_scale"):
        LabeledVolume.create(
            np.zeros((4, 4, 1), np.int32),
            [(0, "air", "air")],
            relaxation_scale=np.ones((4, 4, 1)),
        )
    with pytest.raises(
        ValueError, match=r"PowerLawTexture.create.*t1_amplitude.*\[-0\.3, 0\.3\].*0\.5"
    ):
        PowerLawTexture.create(beta=2.0, amplitude=0.05, t1_amplitude=0.5)
    with pytest.raises(TypeError, match=r"t2_amplitude.*number"):
        PowerLawTexture.create(beta=2.0, amplitude=0.05, t2_amplitude="high")
    assert lv.with_relaxation_scale(None).relaxation_scale is None
