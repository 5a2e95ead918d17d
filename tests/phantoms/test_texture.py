"""Statistical organ texture: power-law, lumpy and clustered lumpy fields, per-structure keys,
TOML validation, and the relative density and relaxation modulation of a voxelized phantom."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medphys import ConfigError, phantoms
from medphys.phantoms import (
    ClusteredLumpyTexture,
    LumpyTexture,
    PowerLawTexture,
    apply_texture,
    clustered_lumpy_background,
    lumpy_background,
    power_law_field,
    relaxation_modulation,
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


# --- clustered lumpy backgrounds ---------------------------------------------------------------

# compact blobs (beta = 1, unit 1 mm: exp(-2.1 r / L), L between 1 and 2 mm) in clusters of
# sigma = 4 mm, on a 64 x 64 grid of 1 mm: the cluster scale is well apart from the blob scale
_CLB = dict(blob_lx_mm=2.0, blob_ly_mm=1.0, alpha=2.1, beta=1.0, unit_mm=1.0, cluster_sigma_mm=4.0)


def _clb_fields(n_bar, per_cm2, n=64, seed=0):
    """``n`` raw realisations (float64) on a 64 x 64 grid of 1 mm."""
    kw = dict(_CLB, clusters_per_cm3=per_cm2, blobs_per_cluster=n_bar, dtype=jnp.float64)
    draw = jax.jit(jax.vmap(lambda k: clustered_lumpy_background(k, (64, 64), 1.0, **kw)))
    return np.asarray(draw(jax.random.split(jax.random.key(seed), n)))


def _moments(n_bar, per_cm2):
    from medphys.phantoms._clustered_lumpy import clustered_moments

    blob = tuple(_CLB[k] for k in ("blob_lx_mm", "blob_ly_mm", "alpha", "beta", "unit_mm"))
    return clustered_moments((64, 64), (1.0, 1.0), per_cm2, n_bar, 4.0, blob)


def test_clustered_lumpy_mean_and_variance_match_campbell():
    """Ensemble mean and variance of the raw field (64 realisations of 64 x 64) against the
    closed forms (Campbell's theorem for the Poisson cluster process), within 4 Monte Carlo
    standard errors; measured: mean 0.312 ± 0.006 vs 0.320, variance 0.1777 ± 0.0036 vs 0.1780."""
    b = _clb_fields(10.0, 1.0)
    mean, var, cluster = _moments(10.0, 1.0)
    means = b.mean(axis=(1, 2))  # realisations are independent: SE from their spread
    se_mean = means.std(ddof=1) / np.sqrt(len(means))
    assert abs(means.mean() - mean) < 4 * se_mean, (means.mean(), mean, se_mean)
    sq = ((b - mean) ** 2).mean(axis=(1, 2))  # E (b - mu)^2 = var, the ensemble mean known
    se_var = sq.std(ddof=1) / np.sqrt(len(sq))
    assert abs(sq.mean() - var) < 4 * se_var, (sq.mean(), var, se_var)
    assert 0.1 * var < cluster < var  # the clustering term is a real part of it


def _lag_correlation(b, lag):
    """Autocorrelation at ``lag`` voxels along both axes (periodic), from the ensemble."""
    d = b - b.mean()
    c0 = (d * d).mean()
    c = 0.5 * ((d * np.roll(d, lag, axis=1)).mean() + (d * np.roll(d, lag, axis=2)).mean())
    return c / c0


@pytest.mark.slow  # about 7 s; the Campbell moments test keeps clustered backgrounds in the default
def test_clustered_lumpy_is_clustered_where_a_plain_lumpy_background_is_not():
    """At the same mean blob density (10 blobs per cm², blobs as above), the field of clusters
    (N̄ = 10 blobs each, sigma = 4 mm) stays correlated at the cluster scale (lag 6 mm, three
    blob lengths) where Poisson-scattered blobs (N̄ = 0.01 per cluster, 1000 clusters per cm²:
    the unclustered limit) are not. Measured correlation at 6 mm: 0.155 against 0.005; the
    closed-form clustering share of the variance: 26 % against 0.04 % (measured variances 0.187
    and 0.133)."""
    clustered = _clb_fields(10.0, 1.0, n=24, seed=1)
    plain = _clb_fields(0.01, 1000.0, n=24, seed=2)
    r_clustered, r_plain = _lag_correlation(clustered, 6), _lag_correlation(plain, 6)
    assert r_clustered > 0.08 and r_plain < 0.03, (r_clustered, r_plain)
    m_c, v_c, cl_c = _moments(10.0, 1.0)
    m_p, v_p, cl_p = _moments(0.01, 1000.0)
    np.testing.assert_allclose(m_c, m_p, rtol=1e-12)  # same mean blob density
    assert cl_c / v_c > 0.2 and cl_p / v_p < 1e-3
    assert clustered.var() > 1.15 * plain.var()  # clustering adds variance at equal mean


def test_clustered_lumpy_texture_is_jittable_reproducible_and_3d():
    spec = ClusteredLumpyTexture.create(amplitude=0.05, **_CLB)
    key = jax.random.key(3)
    eager = sample_texture(key, spec, (48, 48), 1.0)
    jitted = jax.jit(sample_texture, static_argnums=(1, 2, 3))(key, spec, (48, 48), 1.0)
    assert eager.dtype == jnp.float32 and eager.shape == (48, 48)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-4)
    again = sample_texture(key, spec, (48, 48), 1.0)
    assert np.asarray(again).tobytes() == np.asarray(eager).tobytes()
    # 3-D: blobs oriented on the sphere, standardised the same way
    t3 = np.asarray(sample_texture(key, spec, (24, 24, 12), (1.0, 1.0, 2.0)))
    assert t3.shape == (24, 24, 12) and np.all(np.isfinite(t3)) and t3.std() > 0.2


@pytest.mark.slow  # about 5 s; in the default tier the raw field's mean and variance (which the
# standardisation divides out) match Campbell's theorem, and the texture jits reproducibly
def test_clustered_lumpy_texture_is_standardised_also_at_the_published_defaults():
    spec = ClusteredLumpyTexture.create(amplitude=0.05, **_CLB)
    key = jax.random.key(3)
    keys = jax.random.split(jax.random.key(4), 24)
    t = np.asarray(jax.jit(jax.vmap(lambda k: sample_texture(k, spec, (48, 48), 1.0)))(keys))
    assert abs(t.mean()) < 0.15 and abs(t.std() - 1) < 0.15, (t.mean(), t.std())
    # the published defaults (0.3 mm pixels) on a 2-D grid
    d = np.asarray(sample_texture(key, ClusteredLumpyTexture.create(amplitude=0.05), (64, 64), 0.3))
    assert np.all(np.isfinite(d)) and d.std() > 0.1


def test_clustered_blob_is_the_published_profile():
    """A blob is exp(-alpha r^beta / L), L = Lx along its axis and Ly across it (the radius of
    the ellipse), r and L in units of ``unit_mm``: checked along and across an axis-aligned blob
    and a blob at 45 degrees, on the lattice offsets."""
    from medphys.phantoms._clustered_lumpy import _axes, _blob, _offsets

    lx, ly, alpha, beta, unit = 1.5, 0.6, 2.1, 0.5, 0.3
    offsets = _offsets((64, 64), (0.3, 0.3))

    def profile(r, length):
        return np.exp(-alpha * (r / unit) ** beta / (length / unit))

    i = np.arange(20)
    flat = _blob(np, offsets, _axes(2)[0], (lx, ly, alpha, beta, unit))
    np.testing.assert_allclose(flat[i, 0], profile(i * 0.3, lx), rtol=1e-12)
    np.testing.assert_allclose(flat[0, i], profile(i * 0.3, ly), rtol=1e-12)
    tilted = _blob(np, offsets, _axes(2)[4], (lx, ly, alpha, beta, unit))  # axis at 45 degrees
    r = i * 0.3 * np.sqrt(2)
    np.testing.assert_allclose(tilted[i, i], profile(r, lx), rtol=1e-10)
    np.testing.assert_allclose(tilted[i, -i], profile(r, ly), rtol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"blobs_per_cluster": -2.0},
            r"ClusteredLumpyTexture.create.*blobs_per_cluster.*\(0, 1000\].*-2",
        ),
        ({"clusters_per_cm3": 0.0}, r"clusters_per_cm3.*\(0, 10000\].*0\.0"),
        ({"blob_lx_mm": 0.0}, r"blob_lx_mm.*\(0, 100\].*got 0\.0"),
        ({"cluster_sigma_mm": -1}, r"cluster_sigma_mm.*-1"),
        ({"alpha": 0.0}, r"`alpha` must be in \(0, 100\] \(got 0\.0\)"),
        ({"beta": -0.5}, r"`beta` must be in \(0, 2\] \(got -0\.5\)"),
        ({"amplitude": 0.5}, r"amplitude.*\[0, 0\.3\].*0\.5"),
        ({"t1_amplitude": 0.4}, r"t1_amplitude.*\[-0\.3, 0\.3\].*0\.4"),
    ],
)
def test_bad_clustered_lumpy_texture_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClusteredLumpyTexture.create(**{"amplitude": 0.05, **kwargs})


def test_clustered_lumpy_unknown_field_and_bad_type_raise():
    with pytest.raises(TypeError, match="lump_sigma_mm"):
        ClusteredLumpyTexture.create(amplitude=0.05, lump_sigma_mm=2.0)
    with pytest.raises(TypeError, match=r"ClusteredLumpyTexture.create.*alpha.*number"):
        ClusteredLumpyTexture.create(amplitude=0.05, alpha="steep")
    with pytest.raises(ValueError, match=r"t2_amplitude.*\[-0\.3, 0\.3\]"):
        PowerLawTexture.create(beta=3.0, amplitude=0.1, t2_amplitude=-0.35)


def test_clustered_lumpy_texture_in_toml_round_trips():
    import tomllib

    from medphys.phantoms import from_config

    text = _CYL.format(
        texture='{ kind = "clustered_lumpy", amplitude = 0.04, blobs_per_cluster = 12, '
        'alpha = 1.8, t1_amplitude = 0.05, source = "Bochud 1999" }'
    )
    t = from_config(tomllib.loads(text), source="x").structure("water").texture
    assert t == ClusteredLumpyTexture.create(
        amplitude=0.04, blobs_per_cluster=12, alpha=1.8, t1_amplitude=0.05, source="Bochud 1999"
    )
    assert t.beta == 0.5 and t.unit_mm == 0.3 and hash(t) == hash(dataclasses.replace(t))
    # every field written back gives the same spec
    fields = {f.name: getattr(t, f.name) for f in dataclasses.fields(t)}
    inline = ", ".join(
        f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in fields.items()
    )
    inline = inline.replace("'", '"')
    again = (
        from_config(
            tomllib.loads(_CYL.format(texture=f'{{ kind = "clustered_lumpy", {inline} }}')),
            source="x",
        )
        .structure("water")
        .texture
    )
    assert again == t


@pytest.mark.parametrize(
    ("texture", "match"),
    [
        (
            '{ kind = "clustered_lumpy", amplitude = 0.05, blobs_per_cluster = -3 }',
            r"structures\[0\]\.texture.*blobs_per_cluster.*greater than 0",
        ),
        ('{ kind = "clustered_lumpy", amplitude = 0.05, beta = 0 }', r"beta.*greater than 0"),
        ('{ kind = "clustered_lumpy", amplitude = 0.05, alpha = -1 }', r"alpha.*greater than 0"),
        ('{ kind = "clustered_lumpy", amplitude = 0.05, blob_ly_mm = 0 }', r"blob_ly_mm"),
        (
            '{ kind = "clustered_lumpy", amplitude = 0.05, lumps = 3 }',
            r"texture.*lumps.*unknown key",
        ),
        (
            '{ kind = "power_law", beta = 3.0, amplitude = 0.1, t2_amplitude = 0.5 }',
            r"t2_amplitude.*less than or equal to 0\.3",
        ),
    ],
)
def test_bad_clustered_texture_in_toml_is_a_clear_config_error(tmp_path, texture, match):
    path = tmp_path / "tex.toml"
    path.write_text(_CYL.format(texture=texture))
    with pytest.raises(ConfigError, match=match) as info:
        phantoms.load(path)
    assert str(path) in str(info.value)


# --- relaxation texture --------------------------------------------------------------------------


def test_apply_texture_sets_density_and_relaxation_from_one_field():
    ph = _two_organs().with_texture(
        "liver",
        PowerLawTexture.create(beta=3.0, amplitude=0.1, t1_amplitude=0.08, t2_amplitude=-0.05),
    )
    lv = phantoms.voxelize(ph, shape=(32, 32, 8), spacing_mm=4.0)
    key = jax.random.key(11)
    out = apply_texture(key, ph, lv)
    density = np.asarray(out.density_scale)
    relax = np.asarray(out.relaxation_scale)
    assert relax.shape == (2, 32, 32, 8) and relax.dtype == np.float32
    np.testing.assert_array_equal(density, np.asarray(texture_modulation(key, ph, lv).data))
    np.testing.assert_array_equal(relax, np.asarray(relaxation_modulation(key, ph, lv)))
    liver = np.asarray(lv.mask("liver"))
    np.testing.assert_array_equal(relax[:, ~liver], 1.0)
    t = (density[liver] - 1) / 0.1  # the shared field
    np.testing.assert_allclose(relax[0][liver], 1 + 0.08 * t, rtol=1e-5)
    np.testing.assert_allclose(relax[1][liver], 1 - 0.05 * t, rtol=1e-5)  # anticorrelated
    # no relaxation amplitudes: the density scale alone, the same bytes as before
    plain = _two_organs()
    lv2 = apply_texture(key, plain, lv)
    assert lv2.relaxation_scale is None
    ref = lv.with_density_scale(texture_modulation(key, plain, lv).data)
    assert np.asarray(lv2.density_scale).tobytes() == np.asarray(ref.density_scale).tobytes()
    assert apply_texture(key, phantoms.load("water-cylinder"), lv) is lv  # untextured
    # jit
    jitted = jax.jit(lambda k: apply_texture(k, ph, lv).relaxation_scale)(key)
    np.testing.assert_allclose(np.asarray(jitted), relax, atol=1e-6)
