"""Statistical organ texture: power-law and lumpy fields, per-structure keys, TOML validation,
and the relative density modulation of a voxelized phantom."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medphys import ConfigError, phantoms
from medphys.phantoms import (
    LumpyTexture,
    PowerLawTexture,
    lumpy_background,
    power_law_field,
    sample_texture,
    structure_key,
    texture_modulation,
)


def _radial_slope(fields: np.ndarray, spacing: float, band: tuple[float, float]) -> float:
    """Slope of log P(f) vs log f of the radially averaged power spectrum over ``band``
    (cycles/mm), averaged over the leading axis of realisations."""
    shape = fields.shape[1:]
    power = np.mean(np.abs(np.fft.fftn(fields, axes=tuple(range(1, fields.ndim)))) ** 2, axis=0)
    grids = np.meshgrid(*(np.fft.fftfreq(n, spacing) for n in shape), indexing="ij")
    f = np.sqrt(sum(g * g for g in grids)).ravel()
    p = power.ravel()
    edges = np.geomspace(band[0], band[1], 13)
    idx = np.digitize(f, edges)
    fc, pc = [], []
    for b in range(1, len(edges)):
        hit = idx == b
        if hit.any():
            fc.append(f[hit].mean())
            pc.append(p[hit].mean())
    return float(np.polyfit(np.log(fc), np.log(pc), 1)[0])


@pytest.mark.parametrize("beta", [2.0, 3.0])
@pytest.mark.parametrize("shape", [(128, 128), (48, 48, 48)])
def test_power_law_field_recovers_beta(beta, shape):
    spacing = 0.5
    keys = jax.random.split(jax.random.key(7), 8)
    fields = np.stack([np.asarray(power_law_field(k, shape, spacing, beta)) for k in keys])
    nyquist = 0.5 / spacing
    slope = _radial_slope(fields, spacing, (0.05 * nyquist, 0.5 * nyquist))
    assert abs(-slope - beta) <= 0.2, (shape, beta, slope)


def test_power_law_field_is_standardised_float32_and_jittable():
    key = jax.random.key(0)
    t = power_law_field(key, (32, 24, 8), (1.0, 1.0, 2.5), 3.0)
    assert t.dtype == jnp.float32 and t.shape == (32, 24, 8)
    assert abs(float(t.mean())) < 1e-5 and abs(float(t.std()) - 1.0) < 1e-5
    spec = PowerLawTexture.create(beta=3.0, amplitude=0.02)
    jitted = jax.jit(sample_texture, static_argnums=(1, 2, 3))(key, spec, (32, 24, 8), 1.0)
    eager = sample_texture(key, spec, (32, 24, 8), 1.0)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-5)
    # same key, same bytes
    again = sample_texture(key, spec, (32, 24, 8), 1.0)
    assert np.asarray(eager).tobytes() == np.asarray(again).tobytes()


def test_white_noise_limit_has_flat_spectrum():
    keys = jax.random.split(jax.random.key(1), 4)
    fields = np.stack([np.asarray(power_law_field(k, (128, 128), 1.0, 0.0)) for k in keys])
    assert abs(_radial_slope(fields, 1.0, (0.05, 0.4))) < 0.1


def test_structure_keys_are_stable_and_independent():
    key = jax.random.key(3)
    spec = PowerLawTexture.create(beta=2.0, amplitude=0.1)
    a = np.asarray(sample_texture(structure_key(key, "liver"), spec, (64, 64), 1.0))
    b = np.asarray(sample_texture(structure_key(key, "spleen"), spec, (64, 64), 1.0))
    a2 = np.asarray(sample_texture(structure_key(key, "liver"), spec, (64, 64), 1.0))
    assert a.tobytes() == a2.tobytes()
    # independent fields: correlation within a few standard errors of 0 (beta=2 leaves
    # ~hundreds of effective samples on 64x64)
    r = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    assert abs(r) < 0.2
    w1 = np.asarray(
        sample_texture(structure_key(key, "liver"), PowerLawTexture(0.0, 0.1), (64, 64), 1.0)
    )
    w2 = np.asarray(
        sample_texture(structure_key(key, "kidney"), PowerLawTexture(0.0, 0.1), (64, 64), 1.0)
    )
    assert abs(float(np.corrcoef(w1.ravel(), w2.ravel())[0, 1])) < 4 / 64


def test_lumpy_background_mean_and_lump_count_match_closed_form():
    shape, spacing, sigma, density = (64, 64), 1.0, 2.0, 30.0  # lumps per cm^2 on a 2-D grid
    area_cm2 = 6.4 * 6.4
    n_bar = density * area_cm2
    keys = jax.random.split(jax.random.key(5), 32)
    fields = np.stack(
        [
            np.asarray(
                lumpy_background(
                    k,
                    shape,
                    spacing,
                    lump_sigma_mm=sigma,
                    lumps_per_cm3=density,
                    lump_amplitude=1.5,
                )
            )
            for k in keys
        ]
    )
    # mean field = N a (2 pi sigma^2)^(d/2) / V (V in mm^2)
    expected = n_bar * 1.5 * (2 * np.pi * sigma**2) / (64.0 * 64.0)
    means = fields.mean(axis=(1, 2))
    se = means.std(ddof=1) / np.sqrt(len(means))
    assert abs(means.mean() - expected) < 4 * se + 1e-3 * expected
    # the number of lumps is Poisson(N): total "mass" / lump mass, mean and variance N
    counts = fields.sum(axis=(1, 2)) / (1.5 * 2 * np.pi * sigma**2 / spacing**2)
    assert abs(counts.mean() - n_bar) < 4 * np.sqrt(n_bar / len(counts))
    assert 0.4 < counts.var(ddof=1) / n_bar < 1.8
    # variance = (N/V) a^2 (pi sigma^2)^(d/2) (Campbell's theorem)
    var_expected = n_bar / (64.0 * 64.0) * 1.5**2 * np.pi * sigma**2
    assert abs(fields.var(axis=(1, 2)).mean() / var_expected - 1) < 0.1


def test_single_lump_profile_is_gaussian():
    # at a density of ~one lump per grid, a realisation with exactly one lump is its profile
    shape, sigma = (48, 48), 3.0
    for i in range(200):
        b = np.asarray(
            lumpy_background(
                jax.random.key(i), shape, 1.0, lump_sigma_mm=sigma, lumps_per_cm3=1 / 23.04
            )
        )
        mass = b.sum() / (2 * np.pi * sigma**2)
        if abs(mass - 1) < 1e-3:
            break
    else:  # pragma: no cover - P(one lump) = 1/e per draw
        pytest.fail("no single-lump realisation")
    c = np.unravel_index(np.argmax(b), shape)
    d = np.arange(-10, 11)
    profile = b[(c[0] + d) % 48, c[1]]
    np.testing.assert_allclose(profile, np.exp(-(d**2) / (2 * sigma**2)), atol=1e-5)


def test_standardised_lumpy_texture_has_zero_mean_unit_std():
    spec = LumpyTexture.create(lump_sigma_mm=2.0, lumps_per_cm3=40.0, amplitude=0.05)
    keys = jax.random.split(jax.random.key(9), 16)
    t = np.stack([np.asarray(sample_texture(k, spec, (64, 64), 1.0)) for k in keys])
    assert t.dtype == np.float32
    assert abs(t.mean()) < 0.1 and abs(t.std() - 1) < 0.1


def _two_organs():
    ph = phantoms.Phantom.create(
        "two",
        structure_names=("body", "liver", "spleen"),
        materials=("water", "liver", "spleen"),
        shapes=(
            phantoms.Ellipsoid(jnp.zeros(3), jnp.array([60.0, 60.0, 60.0]), jnp.zeros(3)),
            phantoms.Ellipsoid(jnp.array([-20.0, 0, 0]), jnp.array([15.0, 25, 25]), jnp.zeros(3)),
            phantoms.Ellipsoid(jnp.array([25.0, 0, 0]), jnp.array([12.0, 20, 20]), jnp.zeros(3)),
        ),
    )
    return ph.with_texture("liver", PowerLawTexture.create(beta=3.0, amplitude=0.1))


def test_texture_modulation_inside_masks_only_and_stable_under_added_structures():
    ph = _two_organs()
    lv = phantoms.voxelize(ph, shape=(32, 32, 8), spacing_mm=4.0)
    key = jax.random.key(11)
    m = texture_modulation(key, ph, lv)
    data = np.asarray(m.data)
    liver = np.asarray(lv.mask("liver"))
    assert m.shape == lv.shape and data.dtype == np.float32
    np.testing.assert_array_equal(data[~liver], 1.0)
    assert 0.05 < data[liver].std() < 0.2
    # texturing the spleen too leaves the liver's field unchanged
    ph2 = ph.with_texture("spleen", PowerLawTexture.create(beta=2.0, amplitude=0.05))
    d2 = np.asarray(texture_modulation(key, ph2, lv).data)
    assert d2[liver].tobytes() == data[liver].tobytes()
    assert np.asarray(lv.mask("spleen")).sum() and d2[np.asarray(lv.mask("spleen"))].std() > 0.01
    # jit-able
    jitted = jax.jit(lambda k: texture_modulation(k, ph, lv).data)(key)
    np.testing.assert_allclose(np.asarray(jitted), data, atol=1e-6)


def test_catalog_adult_phantoms_carry_textures():
    for name in ("adult-male", "adult-female"):
        ph = phantoms.load(name)
        for organ in ("liver", "spleen", "kidney_left", "kidney_right", "muscle"):
            t = ph.structure(organ).texture
            assert isinstance(t, PowerLawTexture) and 0 < t.amplitude <= 0.3 and t.source


_CYL = """
name = "tex"
description = "a textured cylinder"

[[structures]]
name = "water"
material = "water"
shape = {{ type = "elliptic_cylinder", center_mm = [0, 0, 0], semi_axes_mm = [50, 50], half_length_mm = 20 }}
texture = {texture}
"""


@pytest.mark.parametrize(
    ("texture", "match"),
    [
        (
            '{ kind = "power_law", beta = 5.0, amplitude = 0.02 }',
            r"structures\[0\]\.texture.*beta.*less than or equal to 4.*5\.0",
        ),
        (
            '{ kind = "power_law", beta = 3.0, amplitude = 0.5 }',
            r"texture.*amplitude.*less than or equal to 0\.3.*0\.5",
        ),
        ('{ kind = "power_law", beta = -1, amplitude = 0.1 }', r"beta.*greater than or equal to 0"),
        ('{ kind = "fractal", beta = 3.0, amplitude = 0.1 }', r"structures\[0\]\.texture"),
        (
            '{ kind = "power_law", beta = 3.0, amplitude = 0.1, sigma = 2 }',
            r"texture.*sigma.*unknown key",
        ),
        (
            '{ kind = "lumpy", lump_sigma_mm = 0, lumps_per_cm3 = 1, amplitude = 0.1 }',
            r"lump_sigma_mm.*greater than 0",
        ),
    ],
)
def test_bad_texture_in_toml_is_a_clear_config_error(tmp_path, texture, match):
    path = tmp_path / "tex.toml"
    path.write_text(_CYL.format(texture=texture))
    with pytest.raises(ConfigError, match=match) as info:
        phantoms.load(path)
    assert str(path) in str(info.value)


def test_good_texture_in_toml_loads():
    import tomllib

    from medphys.phantoms import from_config

    data = tomllib.loads(
        _CYL.format(
            texture='{ kind = "lumpy", lump_sigma_mm = 3, lumps_per_cm3 = 2, amplitude = 0.02 }'
        )
    )
    t = from_config(data, source="x").structure("water").texture
    assert t == LumpyTexture(3.0, 2.0, 0.02, "")


def test_bad_texture_in_code_raises():
    with pytest.raises(ValueError, match=r"PowerLawTexture.create.*beta.*\[0, 4\].*4\.5"):
        PowerLawTexture.create(beta=4.5, amplitude=0.1)
    with pytest.raises(ValueError, match=r"amplitude.*\[0, 0\.3\]"):
        LumpyTexture.create(lump_sigma_mm=1.0, lumps_per_cm3=1.0, amplitude=0.4)
    ph = phantoms.load("water-cylinder")
    with pytest.raises(TypeError, match="with_texture"):
        ph.with_texture("water", {"kind": "power_law"})
    with pytest.raises(TypeError, match="PowerLawTexture"):
        sample_texture(jax.random.key(0), "power_law", (8, 8), 1.0)
    assert dataclasses.replace(ph.structure("water")).texture is None
