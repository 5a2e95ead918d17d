"""MR acquisition: tissue maps, k-space, coils, sampling masks, noise, and the transform contracts."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import medphys.materials as mm
from medphys.simulators import mr
from medphys.simulators.mr import _coils, _scanner, _tissue
from medphys.volume import LabeledVolume, MRValues, Structure

MATERIALS = ("air", "adipose", "muscle", "brain_white_matter", "csf")


def _phantom(shape=(41, 41, 3), spacing=(4.0, 4.0, 5.0), fractions=False):
    """Concentric ellipses: air, fat ring, muscle ring, white matter, CSF core."""
    x, y = np.meshgrid(*((np.arange(n) - (n - 1) / 2) for n in shape[:2]), indexing="ij")
    r = np.sqrt((x / (0.42 * shape[0])) ** 2 + (y / (0.36 * shape[1])) ** 2)
    plane = np.select([r < 0.3, r < 0.75, r < 0.88, r < 1.0], [4, 3, 2, 1], 0).astype(np.int32)
    labels = np.repeat(plane[:, :, None], shape[2], axis=2)
    rows = [Structure(i, f"s_{m}", m) for i, m in enumerate(MATERIALS)]
    f = None
    if fractions:
        f = np.stack([(labels == i).astype(np.float64) for i in range(len(MATERIALS))])
        # one voxel half fat, half muscle
        f[:, 0, 0, 0] = 0.0
        f[1, 0, 0, 0] = f[2, 0, 0, 0] = 0.5
    return LabeledVolume.create(
        labels, rows, spacing_mm=spacing, center_mm=(5.0, -3.0, 10.0), fractions=f
    )


PHANTOM = _phantom()
SMALL = _phantom(shape=(16, 16, 2))
SE = mr.SpinEcho.create(te_s=0.02, tr_s=0.6)


def _protocol(**kw):
    kw.setdefault("field_t", 1.5)
    return mr.MRProtocol.create(kw.pop("sequence", SE), **kw)


# --- k-space --------------------------------------------------------------------------------------


def test_fft2c_matches_numpy_and_is_unitary():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 7, 3)) + 1j * rng.normal(size=(2, 8, 7, 3))
    ax = (1, 2)
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), axes=ax, norm="ortho"), axes=ax)
    k = np.asarray(mr.fft2c(jnp.asarray(x)))
    np.testing.assert_allclose(k, ref, atol=1e-12)
    np.testing.assert_allclose(np.asarray(mr.ifft2c(jnp.asarray(k))), x, atol=1e-12)
    # Parseval, per slice
    np.testing.assert_allclose(
        np.sum(np.abs(k) ** 2, axis=ax), np.sum(np.abs(x) ** 2, axis=ax), rtol=1e-12
    )
    # a constant slice puts all its energy at the centre index n // 2
    c = np.asarray(mr.fft2c(jnp.ones((8, 7, 1), jnp.complex128)))
    assert abs(c[4, 3, 0] - np.sqrt(56)) < 1e-12
    assert np.abs(c).sum() - np.abs(c[4, 3, 0]) < 1e-12


def test_shifted_object_gives_linear_phase_ramp():
    n = 32
    x, y = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    blob = np.exp(-(x**2 + y**2) / 8.0)[:, :, None].astype(np.complex128)
    dx, dy = 3, -2
    k0 = np.asarray(mr.fft2c(jnp.asarray(blob)))[:, :, 0]
    k1 = np.asarray(mr.fft2c(jnp.asarray(np.roll(blob, (dx, dy), axis=(0, 1)))))[:, :, 0]
    np.testing.assert_allclose(np.abs(k1), np.abs(k0), rtol=1e-10, atol=1e-12)
    phase = np.angle(k1 / k0)
    kx = np.arange(n) - n // 2
    # along kx (ky = 0) the phase is -2π kx dx / n; along ky (kx = 0) -2π ky dy / n
    slope_x = np.polyfit(kx, np.unwrap(phase[:, n // 2]), 1)[0]
    slope_y = np.polyfit(kx, np.unwrap(phase[n // 2, :]), 1)[0]
    np.testing.assert_allclose(slope_x, -2 * np.pi * dx / n, rtol=1e-9)
    np.testing.assert_allclose(slope_y, -2 * np.pi * dy / n, rtol=1e-9)
    ramp = np.exp(-2j * np.pi * (kx[:, None] * dx + kx[None, :] * dy) / n)
    np.testing.assert_allclose(k1, k0 * ramp, atol=1e-12 * np.abs(k0).max())


@pytest.mark.parametrize("n", [16, 15])
def test_centred_symmetric_real_object_has_real_kspace(n):
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(n, n, 2))
    c = n // 2
    # symmetric about voxel n//2 (circularly): f[c + i] = f[c - i]
    idx = (2 * c - np.arange(n)) % n
    sym = a + a[idx][:, idx]
    k = np.asarray(mr.fft2c(jnp.asarray(sym, jnp.float32).astype(jnp.complex64)))
    assert np.abs(k.imag).max() < 1e-5 * np.abs(k).max()
    k_asym = np.asarray(mr.fft2c(jnp.asarray(a, jnp.complex64)))
    assert np.abs(k_asym.imag).max() > 1e-2 * np.abs(k_asym).max()  # the test can fail


# --- coils ----------------------------------------------------------------------------------------


def test_ellipke_matches_scipy():
    m = np.concatenate([np.linspace(0.0, 0.99, 200), 1 - np.logspace(-2, -8, 40)])
    k, e = mr.ellipke(jnp.asarray(m))
    np.testing.assert_allclose(np.asarray(k), scipy.special.ellipk(m), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(e), scipy.special.ellipe(m), rtol=1e-13)


def _biot_savart(points, center, normal, radius, n_seg=4000):
    """Field of a polygonal loop by direct summation of segment contributions (NumPy)."""
    u = np.cross(normal, [0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([1.0, 0, 0])
    u = u / np.linalg.norm(u)
    w = np.cross(normal, u)
    t = 2 * np.pi * (np.arange(n_seg) + 0.5) / n_seg
    mid = center + radius * (np.cos(t)[:, None] * u + np.sin(t)[:, None] * w)
    dl = (2 * np.pi * radius / n_seg) * (-np.sin(t)[:, None] * u + np.cos(t)[:, None] * w)
    r = points[:, None, :] - mid[None]
    return np.sum(np.cross(dl[None], r) / np.linalg.norm(r, axis=-1, keepdims=True) ** 3, axis=1)


def test_loop_field_matches_biot_savart_and_on_axis_formula():
    rng = np.random.default_rng(2)
    center = np.array([10.0, 120.0, -5.0])
    phi = 0.7
    normal = np.array([np.cos(phi), np.sin(phi), 0.0])
    radius = 60.0
    pts = rng.uniform(-90, 90, size=(50, 3))
    ref = _biot_savart(pts, center, normal, radius)
    # the closed form drops mu0 I / (4π) · 4 = mu0 I / π: compare after matching that constant
    field = jax.jit(_coils._loop_field)
    bx, by = field(
        *(jnp.asarray(pts[:, i]) for i in range(3)),
        jnp.asarray(center),
        jnp.asarray(normal),
        radius,
    )
    got = np.stack([np.asarray(bx), np.asarray(by)], axis=1) * 4.0
    np.testing.assert_allclose(got, ref[:, :2], rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    # on the axis: |B| = mu0 I a² / (2 (a² + z²)^{3/2}), along the normal
    z = np.array([0.0, 25.0, 80.0])
    on_axis = center + z[:, None] * normal
    bx, by = field(
        *(jnp.asarray(on_axis[:, i]) for i in range(3)),
        jnp.asarray(center),
        jnp.asarray(normal),
        radius,
    )
    expected = np.pi * radius**2 / (2 * (radius**2 + z**2) ** 1.5)  # mu0 I / π units
    np.testing.assert_allclose(np.asarray(bx), expected * normal[0], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(by), expected * normal[1], rtol=1e-12)


def test_loop_coils_normalised_at_centre_and_brighter_near_coil():
    coils = mr.LoopCoils.create(4)
    # the program simulate uses (shared with the closed-form image test below)
    maps = np.asarray(
        _scanner._sensitivities(coils, PHANTOM.affine, PHANTOM.shape, jnp.dtype(jnp.float64))
    )
    rss = np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    assert PHANTOM.shape == (41, 41, 3)
    assert abs(rss[20, 20, 1] - 1.0) < 1e-12
    anterior = np.abs(maps[0])  # coil 0 sits at +y
    assert anterior[20, 40, 1] > 3 * anterior[20, 0, 1]
    # 4-fold symmetric array: the RSS map is symmetric under x -> -x and y -> -y
    np.testing.assert_allclose(rss, rss[::-1], rtol=1e-10)
    np.testing.assert_allclose(rss, rss[:, ::-1], rtol=1e-10)


def test_uniform_coils_rss_reproduces_single_coil_image():
    maps = mr.tissue_maps(PHANTOM, 1.5)
    key = jax.random.key(0)
    one = mr.acquire(key, maps, _protocol(coils=mr.UniformCoils.create(1))).image.data
    four = mr.acquire(key, maps, _protocol(coils=mr.UniformCoils.create(4))).image.data
    np.testing.assert_allclose(
        np.asarray(four), np.asarray(one), rtol=2e-5, atol=2e-6 * float(one.max())
    )
    # explicit uniform maps through `coil_maps` give the same image
    ones = jnp.full((4, *PHANTOM.shape), 0.5, jnp.complex64)
    given = mr.acquire(key, maps, _protocol(coils=mr.LoopCoils.create(4)), coil_maps=ones)
    np.testing.assert_allclose(
        np.asarray(given.image.data), np.asarray(one), rtol=2e-5, atol=2e-6 * float(one.max())
    )


def test_coil_maps_of_wrong_count_are_rejected():
    ones = jnp.ones((3, *PHANTOM.shape), jnp.complex64)
    with pytest.raises(
        ValueError,
        match=r"simulate: `coil_maps` must hold protocol\.n_coils = 4 "
        r"maps, shape \(4, \*grid\) \(got shape \(3, 41, 41, 3\)\)",
    ):
        mr.simulate(
            jax.random.key(0), PHANTOM, _protocol(coils=mr.LoopCoils.create(4)), coil_maps=ones
        )
    with pytest.raises(ValueError, match=r"`coil_maps` must be on the phantom's grid"):
        mr.simulate(
            jax.random.key(0),
            PHANTOM,
            _protocol(coils=mr.UniformCoils.create(3)),
            coil_maps=jnp.ones((3, 41, 41, 2)),
        )


# --- the image against an independent forward model -----------------------------------------------


def test_noise_free_image_is_closed_form_signal_times_coil_profile():
    protocol = _protocol(coils=mr.LoopCoils.create(4))
    res = mr.simulate(jax.random.key(0), PHANTOM, protocol, dtype=jnp.float64)
    te, tr = 0.02, 0.6
    labels = np.asarray(PHANTOM.labels)
    expected = np.zeros(PHANTOM.shape)
    for i, name in enumerate(MATERIALS):
        p = mm.get(name).mr(1.5)
        s = (
            p.pd
            * (1 - 2 * np.exp(-(tr - te / 2) / p.t1_s) + np.exp(-tr / p.t1_s))
            * np.exp(-te / p.t2_s)
        )
        expected[labels == i] = s
    coil = np.asarray(res.coil_maps)  # checked against Biot-Savart above
    expected = expected * np.sqrt(np.sum(np.abs(coil) ** 2, axis=0))
    np.testing.assert_allclose(np.asarray(res.image.data), expected, rtol=1e-10, atol=1e-12)
    assert res.image.data.dtype == jnp.float64 and res.kspace.dtype == jnp.complex128
    np.testing.assert_array_equal(np.asarray(res.image.affine), PHANTOM.affine)


def test_partial_volume_mixes_signals_not_properties():
    phantom = _phantom(fractions=True)
    maps = mr.tissue_maps(phantom, 1.5, dtype=jnp.float64)
    seq = mr.InversionRecovery.create(ti_s=0.238, te_s=0.03, tr_s=3.0)  # STIR: nulls fat
    res = mr.acquire(jax.random.key(0), maps, _protocol(sequence=seq))
    fat, muscle = mm.get("adipose").mr(1.5), mm.get("muscle").mr(1.5)

    def ir(pd, t1, t2):
        return (
            pd
            * (1 - 2 * np.exp(-0.238 / t1) + 2 * np.exp(-(3.0 - 0.015) / t1) - np.exp(-3.0 / t1))
            * np.exp(-0.03 / t2)
        )

    mixed = 0.5 * ir(fat.pd, fat.t1_s, fat.t2_s) + 0.5 * ir(muscle.pd, muscle.t1_s, muscle.t2_s)
    averaged = ir(
        0.5 * (fat.pd + muscle.pd), 0.5 * (fat.t1_s + muscle.t1_s), 0.5 * (fat.t2_s + muscle.t2_s)
    )
    got = float(res.image.data[0, 0, 0])
    np.testing.assert_allclose(got, abs(mixed), rtol=1e-10)
    assert abs(abs(averaged) - abs(mixed)) > 0.05 * abs(mixed)  # the distinction matters here
    # fraction-weighted property maps for display
    t1_map = np.asarray(maps.voxel_average(maps.t1_s))
    np.testing.assert_allclose(t1_map[0, 0, 0], 0.5 * (fat.t1_s + muscle.t1_s), rtol=1e-12)


def test_tissue_maps_come_from_the_material_library():
    for phantom in (PHANTOM, _phantom(fractions=True)):
        maps = mr.tissue_maps(phantom, 3.0)
        assert maps.names == MATERIALS and maps.dtype == jnp.float32
        for i, name in enumerate(MATERIALS):
            p = mm.get(name).mr(3.0)
            np.testing.assert_allclose(
                [
                    float(maps.pd[i]),
                    float(maps.t1_s[i]),
                    float(maps.t2_s[i]),
                    float(maps.t2star_s[i]),
                ],
                [p.pd, p.t1_s, p.t2_s, p.t2star_s],
                rtol=1e-6,
            )
        np.testing.assert_array_equal(
            np.asarray(maps.fractions), np.asarray(phantom.material_fractions(jnp.float32))
        )
        assert float(jnp.max(jnp.abs(maps.b0_hz))) == 0.0 and float(jnp.min(maps.b1)) == 1.0


def test_per_structure_mr_values_override_the_material():
    """Shepp-Logan-style rows: two structures of one material, one with published values."""
    gach = MRValues.create(0.617, 0.6807, 0.08, "Gach et al. 2008")
    labels = np.zeros((6, 5, 2), np.int32)
    labels[1:5, 1:4] = 1
    labels[2:4, 2, :] = 2
    labels[0, 0, 0] = 3
    rows = [
        Structure(0, "outside", "air"),
        Structure(1, "skull", "water", MRValues.create(0.12, 0.5524, 0.05, "x", t2star_s=0.03)),
        Structure(2, "ventricle", "water", gach),
        Structure(3, "plain", "water"),
    ]
    for fractions in (None, np.stack([(labels == i).astype(float) for i in range(4)])):
        lv = LabeledVolume.create(labels, rows, spacing_mm=2.0, fractions=fractions)
        maps = mr.tissue_maps(lv, 1.5, dtype=jnp.float64)
        assert maps.names == ("air", "skull", "ventricle", "water")
        water = mm.get("water").mr(1.5)
        np.testing.assert_allclose(maps.pd, [mm.get("air").mr(1.5).pd, 0.12, 0.617, water.pd])
        np.testing.assert_allclose(maps.t1_s[1:], [0.5524, 0.6807, water.t1_s])
        np.testing.assert_allclose(maps.t2_s[1:], [0.05, 0.08, water.t2_s])
        # T2* from the values when given, else T2 (no better value)
        np.testing.assert_allclose(maps.t2star_s[1:], [0.03, 0.08, water.t2star_s])
        f = np.asarray(maps.fractions)
        for c, label in enumerate((0, 1, 2, 3)):
            np.testing.assert_array_equal(f[c], labels == label)
        # the voxel maps show the override where the structure is
        t1 = np.asarray(maps.voxel_average(maps.t1_s))
        assert t1[2, 2, 0] == pytest.approx(0.6807) and t1[1, 1, 0] == pytest.approx(0.5524)
        assert t1[0, 0, 0] == pytest.approx(water.t1_s)
    # and the signal follows: a spin echo of the ventricle is the closed form of Gach's values
    protocol = mr.MRProtocol.create(mr.SpinEcho.create(te_s=0.02, tr_s=0.6), field_t=1.5)
    image = np.asarray(mr.simulate(jax.random.key(0), lv, protocol, dtype=jnp.float64).image.data)
    expect = float(mr.signal(protocol.sequence, gach.pd, gach.t1_s, gach.t2_s).real)
    assert expect == pytest.approx(  # the closed form with the refocusing pulse at TE/2
        gach.pd
        * (1 - 2 * np.exp(-(0.6 - 0.01) / gach.t1_s) + np.exp(-0.6 / gach.t1_s))
        * np.exp(-0.02 / gach.t2_s)
    )
    assert image[2, 2, 0] == pytest.approx(expect, rel=1e-6)


def test_structures_sharing_mr_values_share_a_compartment():
    v = MRValues.create(0.9, 1.0, 0.1)
    labels = np.arange(3, dtype=np.int32).reshape(3, 1, 1)
    rows = [
        Structure(0, "a", "water", v),
        Structure(1, "b", "water", v),
        Structure(2, "c", "muscle"),
    ]
    maps = mr.tissue_maps(LabeledVolume.create(labels, rows, spacing_mm=1.0), 3.0)
    assert maps.names == ("a", "muscle")
    np.testing.assert_array_equal(np.asarray(maps.fractions)[:, :, 0, 0], [[1, 1, 0], [0, 0, 1]])


def test_tissue_maps_create_validates():
    f = np.ones((2, 4, 4, 1)) * 0.5
    good = {
        "pd": [1.0, 0.8],
        "t1_s": [1.0, 0.9],
        "t2_s": [0.1, 0.08],
        "t2star_s": [0.05, 0.04],
        "affine": np.eye(4),
    }
    maps = mr.TissueMaps.create(f, **good, names=("a", "b"))
    assert maps.shape == (4, 4, 1) and maps.names == ("a", "b")
    with pytest.raises(ValueError, match=r"TissueMaps\.create: `t1_s` must be positive"):
        mr.TissueMaps.create(f, **{**good, "t1_s": [1.0, -0.9]})
    with pytest.raises(ValueError, match=r"TissueMaps\.create: `fractions` must lie in \[0, 1\]"):
        mr.TissueMaps.create(f * 3, **good)
    with pytest.raises(ValueError, match=r"TissueMaps\.create: `pd` must have shape \(2,\)"):
        mr.TissueMaps.create(f, **{**good, "pd": [1.0, 0.8, 0.7]})


# --- B0 / B1 variation ----------------------------------------------------------------------------


def test_field_params_reproducible_with_the_stated_rms():
    variation = mr.FieldVariation.create(b0_std_hz=40.0, b1_std=0.1)
    maps = mr.TissueMaps.create(
        np.ones((1, 16, 12, 10)),
        pd=[1.0],
        t1_s=[1.0],
        t2_s=[0.1],
        t2star_s=[0.05],
        affine=np.eye(4),
    )
    keys = jax.random.split(jax.random.key(3), 400)

    @jax.jit
    @jax.vmap
    def mean_squares(key):
        out = mr.apply_field_params(mr.sample_field_params(key, variation), maps)
        return jnp.mean(out.b0_hz**2), jnp.mean((out.b1 - 1.0) ** 2)

    b0_ms, b1_ms = mean_squares(keys)
    # E[mean square] = std², 400 draws of 10 terms: ~3.5% standard error
    np.testing.assert_allclose(np.sqrt(float(jnp.mean(b0_ms))), 40.0, rtol=0.1)
    np.testing.assert_allclose(np.sqrt(float(jnp.mean(b1_ms))), 0.1, rtol=0.1)
    np.testing.assert_array_equal(np.asarray(mean_squares(keys)[0]), np.asarray(b0_ms))
    assert float(jnp.std(b0_ms)) > 0  # different keys, different fields
    zero = mr.FieldParams(jnp.zeros(10), jnp.zeros(10))
    same = jax.jit(mr.apply_field_params)(zero, maps)
    np.testing.assert_array_equal(np.asarray(same.b1), np.asarray(maps.b1))
    np.testing.assert_array_equal(np.asarray(same.b0_hz), np.asarray(maps.b0_hz))


def test_protocol_field_variation_is_applied_and_recorded():
    protocol = _protocol(
        sequence=mr.BSSFP.create(tr_s=0.004, flip_deg=60.0),
        field_variation=mr.FieldVariation.create(b0_std_hz=30.0, b1_std=0.1),
    )
    res = mr.simulate(jax.random.key(5), PHANTOM, protocol)
    assert res.field_params is not None
    b1 = np.asarray(res.maps.b1)
    assert b1.std() > 0.01 and abs(b1.mean() - 1.0) < 0.5
    again = mr.apply_field_params(res.field_params, mr.tissue_maps(PHANTOM, 1.5))
    b0 = np.asarray(res.maps.b0_hz)
    np.testing.assert_allclose(np.asarray(again.b0_hz), b0, atol=1e-5 * np.abs(b0).max())


# --- sampling masks -------------------------------------------------------------------------------


def test_equispaced_mask():
    m = np.asarray(mr.EquispacedMask.create(4, acs_lines=8).sample_mask(jax.random.key(0), 64))
    assert m[32] == 1 and m[36] == 1 and m[28] == 1 and m[33] == 1  # centre line and ACS
    # every 4th line through the centre (16 of 64) plus the 6 ACS lines not already on that grid
    assert m[:24].sum() == 6 and m.sum() == 16 + 6


def test_random_masks_have_exact_counts_and_acs():
    for sampling in (
        mr.RandomMask.create(4.0, acs_lines=6),
        mr.VariableDensityMask.create(4.0, acs_lines=6, power=3.0),
    ):
        a = np.asarray(sampling.sample_mask(jax.random.key(1), 64))
        b = np.asarray(sampling.sample_mask(jax.random.key(1), 64))
        c = np.asarray(sampling.sample_mask(jax.random.key(2), 64))
        assert a.sum() == 16 and c.sum() == 16 and np.all(a[29:35] == 1)
        np.testing.assert_array_equal(a, b)
        assert np.any(a != c)


def test_variable_density_favours_the_centre():
    sampling = mr.VariableDensityMask.create(4.0, acs_lines=0, power=2.0)
    keys = jax.random.split(jax.random.key(0), 200)
    density = np.asarray(jax.vmap(lambda k: sampling.sample_mask(k, 64))(keys)).mean(0)
    assert density[24:40].mean() > 2.5 * np.r_[density[:8], density[56:]].mean()
    uniform = mr.RandomMask.create(4.0)
    d_u = np.asarray(jax.vmap(lambda k: uniform.sample_mask(k, 64))(keys)).mean(0)
    assert d_u[24:40].mean() < 1.3 * np.r_[d_u[:8], d_u[56:]].mean()


UNDERSAMPLED = mr.MRProtocol.create(
    SE, field_t=1.5, sampling=mr.EquispacedMask.create(2, acs_lines=4), snr=20.0
)


def test_undersampled_kspace_is_zero_on_skipped_lines():
    res = mr.simulate(jax.random.key(0), PHANTOM, UNDERSAMPLED)
    skipped = np.asarray(res.mask) == 0
    assert skipped.sum() == 18
    assert np.all(np.asarray(res.kspace)[:, :, skipped, :] == 0)
    assert np.all(np.abs(np.asarray(res.kspace)[:, :, ~skipped, :]) > 0)


# --- noise ----------------------------------------------------------------------------------------

NOISE_PHANTOM = _phantom(shape=(64, 64, 4))


def _background_std(nex, key):
    protocol = _protocol(
        coils=mr.LoopCoils.create(4), snr=10.0, nex=nex, snr_reference="brain_white_matter"
    )
    res = mr.simulate(key, NOISE_PHANTOM, protocol)
    air = np.asarray(NOISE_PHANTOM.labels) == 0
    return float(np.asarray(res.image.data)[air].std()), float(res.noise_std), int(air.sum())


def test_noise_std_scales_as_inverse_sqrt_nex():
    s1, sigma1, n_air = _background_std(1, jax.random.key(10))
    s4, sigma4, _ = _background_std(4, jax.random.key(11))
    assert n_air > 8000
    np.testing.assert_allclose(s1 / s4, 2.0, rtol=0.05)
    np.testing.assert_allclose(sigma1 / sigma4, 2.0, rtol=1e-6)


def test_measured_snr_matches_requested():
    """NEMA MS 1 two-acquisition method: σ = std(I1 - I2)/sqrt(2) inside the reference tissue.

    With loop coils the image is shaded; the definition still holds because σ is the same
    everywhere and the reference level is the mean over the tissue.
    """
    protocol = _protocol(coils=mr.LoopCoils.create(4), snr=25.0, snr_reference="brain_white_matter")
    a = mr.simulate(jax.random.key(20), NOISE_PHANTOM, protocol)
    b = mr.simulate(jax.random.key(21), NOISE_PHANTOM, protocol)
    # noise-free combined image: |signal| x RSS of the sensitivities (checked in the closed-form test)
    clean = np.abs(np.asarray(a.maps.signal(protocol.sequence))) * np.asarray(mr.rss(a.coil_maps))
    wm = np.asarray(NOISE_PHANTOM.labels) == MATERIALS.index("brain_white_matter")
    sigma = np.std((np.asarray(a.image.data) - np.asarray(b.image.data))[wm]) / np.sqrt(2)
    snr = clean[wm].mean() / sigma
    np.testing.assert_allclose(snr, 25.0, rtol=0.05)


def test_brightest_material_is_the_default_snr_reference():
    # SNR is defined on the fully sampled image even when lines are skipped
    res = mr.simulate(jax.random.key(0), PHANTOM, UNDERSAMPLED)
    clean = np.asarray(mr.simulate(jax.random.key(0), PHANTOM, _protocol()).image.data)
    labels = np.asarray(PHANTOM.labels)
    brightest = max(clean[labels == i].mean() for i in range(len(MATERIALS)))
    np.testing.assert_allclose(float(res.noise_std), brightest / 20.0, rtol=1e-5)


# --- transform contracts --------------------------------------------------------------------------

# every key-dependent step: field variation, random mask, noise
CONTRACT_PROTOCOL = mr.MRProtocol.create(
    mr.GradientEcho.create(te_s=0.005, tr_s=0.1, flip_deg=30.0),
    field_t=1.5,
    coils=mr.UniformCoils.create(2),
    sampling=mr.RandomMask.create(2.0, acs_lines=4),
    snr=15.0,
    field_variation=mr.FieldVariation.create(b0_std_hz=20.0, b1_std=0.05),
)


def test_same_key_same_output_and_no_retrace():
    a = mr.simulate(jax.random.key(7), SMALL, CONTRACT_PROTOCOL)
    size = _scanner._acquire._cache_size()
    fsize = _tissue._fractions._cache_size()
    b = mr.simulate(jax.random.key(7), SMALL, CONTRACT_PROTOCOL)
    c = mr.simulate(jax.random.key(8), SMALL, CONTRACT_PROTOCOL)
    assert _scanner._acquire._cache_size() == size and _tissue._fractions._cache_size() == fsize
    np.testing.assert_array_equal(np.asarray(a.kspace), np.asarray(b.kspace))
    np.testing.assert_array_equal(np.asarray(a.image.data), np.asarray(b.image.data))
    assert not np.array_equal(np.asarray(a.image.data), np.asarray(c.image.data))
    assert a.image.data.dtype == jnp.float32 and a.kspace.dtype == jnp.complex64
    assert a.coil_maps.dtype == jnp.complex64 and a.maps.b1.dtype == jnp.float32
    assert a.image.shape == SMALL.shape
    np.testing.assert_array_equal(np.asarray(a.image.affine), SMALL.affine)  # exact, float64


@pytest.mark.slow  # default-tier twin: test_mr_prepared::test_jit_equals_eager runs the same
# acquisition (with its key-dependent steps) op by op; the operator equals mr.acquire bit for bit
def test_jit_equals_eager():
    # the deterministic path (signal, coil weighting, encoding, reconstruction) run op by op;
    # the key-dependent steps are covered by the determinism and vmap tests
    maps = mr.tissue_maps(SMALL, 1.5)
    protocol = _protocol(sequence=CONTRACT_PROTOCOL.sequence, coils=mr.UniformCoils.create(2))
    jitted = mr.acquire(jax.random.key(9), maps, protocol)
    with jax.disable_jit():
        eager = mr.acquire(jax.random.key(9), maps, protocol)
    scale = float(jnp.max(eager.image.data))
    np.testing.assert_allclose(
        np.asarray(jitted.image.data), np.asarray(eager.image.data), atol=1e-6 * scale
    )
    np.testing.assert_allclose(
        np.asarray(jitted.kspace),
        np.asarray(eager.kspace),
        atol=1e-6 * float(jnp.max(jnp.abs(eager.kspace))),
    )


def test_inside_a_user_jit_no_tracer_is_kept():
    maps = mr.tissue_maps(SMALL, 1.5)
    protocol = _protocol(coils=mr.LoopCoils.create(3))
    inside = jax.jit(lambda k: mr.acquire(k, maps, protocol).image.data)(jax.random.key(0))
    outside = mr.acquire(jax.random.key(0), maps, protocol).image.data  # reuses no tracer
    np.testing.assert_allclose(
        np.asarray(inside), np.asarray(outside), rtol=1e-5, atol=1e-6 * float(jnp.max(outside))
    )


def test_vmap_over_keys_equals_loop():
    maps = mr.tissue_maps(SMALL, 1.5)
    keys = jax.random.split(jax.random.key(4), 2)
    batched = jax.vmap(lambda k: mr.acquire(k, maps, CONTRACT_PROTOCOL).image.data)(keys)
    looped = [mr.acquire(k, maps, CONTRACT_PROTOCOL).image.data for k in keys]
    scale = float(jnp.max(batched))
    for i in range(2):
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(looped[i]), atol=1e-5 * scale)
    assert not np.allclose(np.asarray(batched[0]), np.asarray(batched[1]))


def test_gradient_through_the_acquisition():
    maps = mr.tissue_maps(SMALL, 1.5, dtype=jnp.float64)
    protocol = _protocol(coils=mr.LoopCoils.create(2))

    def mean_image(te):
        p = dataclasses.replace(protocol, sequence=mr.SpinEcho(te_s=te, tr_s=0.6))
        return jnp.mean(mr.acquire(jax.random.key(0), maps, p).image.data)

    g = jax.grad(mean_image)(0.02)
    fd = (mean_image(0.02 + 1e-6) - mean_image(0.02 - 1e-6)) / 2e-6
    np.testing.assert_allclose(float(g), float(fd), rtol=1e-6)


# --- input errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: _protocol(nex=0), ValueError, r"MRProtocol\.create: `nex` must be >= 1 \(got 0\)"),
        (lambda: _protocol(snr=-3.0), ValueError, r"MRProtocol\.create: `snr` must be positive"),
        (lambda: _protocol(field_t=0.0), ValueError, r"`field_t` must be positive \(tesla\)"),
        (lambda: _protocol(coils=4), TypeError, r"`coils` must be a Coils \(got int\)"),
        (lambda: mr.LoopCoils.create(0), ValueError, r"LoopCoils\.create: `n_coils` must be >= 1"),
        (lambda: mr.EquispacedMask.create(0), ValueError, r"`acceleration` must be >= 1"),
        (lambda: mr.FieldVariation.create(b1_std=0.7), ValueError, r"`b1_std` must be < 0\.5"),
        (
            lambda: mr.simulate(
                jax.random.key(0), PHANTOM, _protocol(snr=10.0, snr_reference="bone")
            ),
            KeyError,
            r"unknown SNR reference material .*'bone'.*Available: adipose, air",
        ),
        (lambda: mr.tissue_maps(PHANTOM, 2.0), ValueError, r"`field_t` must be one of 1\.5, 3\.0"),
        (
            lambda: mr.acquire(jax.random.key(0), PHANTOM, _protocol()),
            TypeError,
            r"acquire: `maps` must be a TissueMaps \(got LabeledVolume\)",
        ),
    ],
)
def test_bad_protocol_input(make, error, match):
    with pytest.raises(error, match=match):
        make()
