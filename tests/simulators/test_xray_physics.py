"""Realistic X-ray physics: bowtie, photon-counting bins, detector blur, kernel scatter, water
beam-hardening correction, and their validation."""

from __future__ import annotations

import math
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import norm

import medphys.materials as mm
from medphys import ConfigError, LabeledVolume
from medphys.simulators import ct, xray
from medphys.simulators.geometry import FanBeam, ParallelBeam
from medphys.simulators.xray._detector import smooth

N, SPACING, RADIUS = 96, 3.5, 150.0  # a 300 mm water cylinder on a 336 mm grid


def _cylinder(radius=RADIUS, n=N, spacing=SPACING, material="water"):
    c = (np.arange(n) - (n - 1) / 2) * spacing
    ss = 4
    off = ((np.arange(ss) + 0.5) / ss - 0.5) * spacing
    x = (c[:, None] + off[None, :]).reshape(-1)
    f = ((x[:, None] ** 2 + x[None, :] ** 2) <= radius**2).reshape(n, ss, n, ss).mean(axis=(1, 3))
    f = f[:, :, None].astype(np.float32)
    lv = LabeledVolume.create(
        (f > 0.5).astype(np.int32),
        [(0, "air", "air"), (1, "body", material)],
        spacing_mm=spacing,
        fractions=np.stack([1 - f, f]),
    )
    return lv, np.hypot(c[:, None], c[None, :])


@pytest.fixture(scope="module")
def spectrum_120():
    return xray.Spectrum.create(
        kvp=120, anode_angle_deg=7, filtration=(("Al", 2.5), ("Cu", 0.1)), bin_kev=4
    )


@pytest.fixture(scope="module")
def water_300():
    return _cylinder()


def _fan(n_u=300, du=2.5, n_views=240):
    return FanBeam.create(
        n_views=n_views, n_u=n_u, du_mm=du, sod_mm=595.0, sdd_mm=1085.6, u_offset_mm=du / 4
    )


def _protocol(spectrum, **kwargs):
    kwargs.setdefault("geometry", _fan())
    kwargs.setdefault("mas", 100.0)
    kwargs.setdefault("filter", "hann")
    kwargs.setdefault("water_diameter_mm", 300.0)
    return xray.CTProtocol.create(spectrum=spectrum, **kwargs)


def _regions(hu, r):
    return hu[r < 30].mean(), hu[(r > 110) & (r < 130)].mean(), hu[(r > 158) & (r < 165)].mean()


# ---------------------------------------------------------------------------------------------
# water beam-hardening correction


@pytest.mark.slow  # about 5 s; test_water_correction_is_exact_for_water_paths keeps it in the default
@pytest.mark.parametrize("with_bowtie", [False, True])
def test_water_correction_removes_cupping_in_a_30cm_cylinder(water_300, spectrum_120, with_bowtie):
    lv, r = water_300
    bowtie = xray.Bowtie.create(edge_mm=20.0, radius_mm=200.0) if with_bowtie else None
    images = {}
    for bhc in (False, True):
        prot = _protocol(spectrum_120, bowtie=bowtie, beam_hardening_correction=bhc)
        scan = xray.expected_scan(lv, prot)
        images[bhc] = _regions(np.asarray(ct.reconstruct(scan, prot, like=lv).data[:, :, 0]), r)
    (c0, ring0, air0), (c1, ring1, air1) = images[False], images[True]
    # measured without bowtie: cupping (ring - centre) 22.0 HU → 0.19 HU (99 % less); with the
    # 20 mm aluminium bowtie the uncorrected image is offset (centre +13 HU), corrected 0.2 HU
    if not with_bowtie:
        assert ring0 - c0 > 15.0  # visible cupping
    assert abs(ring1 - c1) <= 0.2 * abs(ring0 - c0)
    assert abs(c1) < 3.0 and abs(ring1) < 3.0
    assert air1 == pytest.approx(-1000.0, abs=5.0) and air0 == pytest.approx(-1000.0, abs=5.0)


def test_water_correction_is_exact_for_water_paths(spectrum_120):
    """p(L) of L mm of water, corrected, is mu_ref L (the linearisation itself)."""
    prot = _protocol(spectrum_120, geometry=_fan(n_u=8))
    e, n = np.asarray(spectrum_120.energies_kev), np.asarray(spectrum_120.photons)
    mu = np.diff(mm.attenuation_table(["air", "water"], e), axis=0)[0] / 10
    length = np.array([1.0, 30.0, 150.0, 320.0, 500.0])
    w = n * e
    p = -np.log(np.exp(-np.outer(length, mu)) @ w / w.sum())
    proj = np.broadcast_to(p[:, None, None], (5, 8, 1)).astype(np.float64)
    out = np.asarray(ct.correct_beam_hardening(proj, prot))[:, 0, 0]
    mu_ref = ct.water_mu(prot) / 10
    np.testing.assert_allclose(out, mu_ref * length, rtol=5e-4)
    assert np.all(np.diff(p / length) < 0)  # the uncorrected data do harden
    with pytest.raises(ValueError, match=r"correct_beam_hardening: `projections` must have shape"):
        ct.correct_beam_hardening(np.zeros((3, 7, 1)), prot)


# ---------------------------------------------------------------------------------------------
# bowtie


def test_bowtie_flat_field_follows_the_profile_and_beer_lambert(spectrum_120):
    lv, _ = _cylinder(radius=20.0, n=16, spacing=4.0)
    g = _fan(n_u=200, du=2.5, n_views=4)
    bow = xray.Bowtie.create(material="aluminium", center_mm=1.0, edge_mm=15.0, radius_mm=150.0)
    plain = xray.expected_scan(lv, _protocol(spectrum_120, geometry=g))
    filtered = xray.expected_scan(lv, _protocol(spectrum_120, geometry=g, bowtie=bow))
    u = np.asarray(g.u_mm(jnp.float64))
    r = 595.0 * np.abs(u) / np.hypot(1085.6, u)
    q = np.minimum(r / 150.0, 1.0)
    t = 1.0 + 14.0 * (1 - np.sqrt(1 - q * q))
    e, n = np.asarray(spectrum_120.energies_kev), np.asarray(spectrum_120.photons)
    mu_al = mm.attenuation_table(["aluminium"], e)[0] / 10
    w = n * e
    expected = np.exp(-np.outer(t, mu_al)) @ w / w.sum()
    ratio = np.asarray(filtered.flat_counts[:, 0] / plain.flat_counts[:, 0])
    np.testing.assert_allclose(ratio, expected, rtol=1e-5)
    assert ratio[100] > 1.5 * ratio[0]  # the edges are filtered much more


# ---------------------------------------------------------------------------------------------
# photon-counting detector


def test_photon_counting_bins_closed_form_and_poisson_noise():
    spec = xray.Spectrum.monoenergetic(60.0, photons_per_mas_mm2=2.0e3)
    det = xray.PhotonCountingDetector.create(
        thresholds_kev=(20.0, 50.0, 65.0), energy_resolution_kev=10.0
    )
    lv, _ = _cylinder(radius=40.0, n=32, spacing=3.0)
    g = ParallelBeam.create(n_views=60, n_u=64, du_mm=2.0)
    prot = _protocol(spec, geometry=g, detector=det, mas=60.0)
    scan = xray.expected_scan(lv, prot)
    assert scan.bin_expected_counts.shape == (3, 60, 64, 1)
    flat_bins = np.asarray(scan.bin_flat_counts[:, 0, 0])
    # P(bin | 60 keV) for a Gaussian response of FWHM 10 keV
    s = 10.0 / (2 * math.sqrt(2 * math.log(2)))
    cdf = ndtr((np.array([20.0, 50.0, 65.0]) - 60.0) / s)
    p_bins = np.append(np.diff(cdf), 1 - cdf[-1])
    n0 = 2.0e3 * 1.0 * 2.0 * 3.0  # photons/mAs/mm² × mAs per view × pixel area (2 × 3 mm²)
    np.testing.assert_allclose(flat_bins, n0 * p_bins, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(scan.expected_counts), np.asarray(scan.bin_expected_counts.sum(0)), rtol=1e-6
    )
    # monoenergetic: every bin sees the same transmission exp(-mu L)
    bp = np.asarray(scan.bin_projections)
    np.testing.assert_allclose(bp[0], bp[1], atol=1e-5)
    noisy = xray.add_noise(jax.random.key(2), scan, prot)
    d = np.asarray(noisy.bin_counts - scan.bin_expected_counts)
    ratio = d.var(axis=(1, 2, 3)) / np.asarray(scan.bin_expected_counts).mean(axis=(1, 2, 3))
    # Poisson counts: variance = mean per bin (here ≈ uniform readings outside the object)
    np.testing.assert_allclose(ratio, 1.0, rtol=0.1)
    np.testing.assert_allclose(
        np.asarray(noisy.counts), np.asarray(noisy.bin_counts.sum(0)), rtol=1e-6
    )
    # a new dose and detector resolution are leaves: no retrace
    from medphys.simulators.xray import _simulate

    jitted = (_simulate._planar_readings, _simulate._planar_finish)
    size = tuple(f._cache_size() for f in jitted)
    det2 = xray.PhotonCountingDetector.create(
        thresholds_kev=(20.0, 45.0, 70.0), energy_resolution_kev=5.0
    )
    xray.expected_scan(lv, _protocol(spec, geometry=g, detector=det2, mas=30.0))
    assert tuple(f._cache_size() for f in jitted) == size


def test_ideal_bins_split_a_spectrum_at_the_thresholds(spectrum_120):
    det = xray.PhotonCountingDetector.create(thresholds_kev=(30.0, 60.0))
    r = np.asarray(det.bin_response(jnp.asarray([25.0, 45.0, 61.0, 100.0])))
    np.testing.assert_array_equal(r, [[0, 0], [1, 0], [0, 1], [0, 1]])


# ---------------------------------------------------------------------------------------------
# detector blur


def test_smooth_is_a_pixel_integrated_gaussian_with_the_stated_fwhm():
    n, pitch, fwhm = 201, 0.5, 3.0
    x = np.zeros((1, n, 1))
    x[0, 100, 0] = 1.0
    y = np.asarray(smooth(jnp.asarray(x), 1, pitch, fwhm))[0, :, 0]
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    off = (np.arange(n) - 100) * pitch
    expected = norm.cdf((off + pitch / 2) / sigma) - norm.cdf((off - pitch / 2) / sigma)
    np.testing.assert_allclose(y, expected, atol=1e-12)
    ones = np.asarray(smooth(jnp.ones((2, n, 3)), 1, pitch, fwhm))
    np.testing.assert_allclose(ones, 1.0, atol=1e-12)  # renormalised at the ends
    ident = np.asarray(smooth(jnp.asarray(x), 1, pitch, 0.0))
    np.testing.assert_allclose(ident, x, atol=1e-12)


@pytest.mark.slow  # about 10 s
def test_detector_blur_smooths_the_expected_signal_before_noise(spectrum_120):
    lv, _ = _cylinder(radius=40.0, n=32, spacing=3.0)
    g = ParallelBeam.create(n_views=8, n_u=80, du_mm=1.5)
    sharp = xray.expected_scan(lv, _protocol(spectrum_120, geometry=g))
    det = xray.EnergyIntegratingDetector.create(blur_fwhm_mm=4.0)
    blurred = xray.expected_scan(lv, _protocol(spectrum_120, geometry=g, detector=det))
    ref = smooth(sharp.expected_counts, 1, 1.5, 4.0)
    np.testing.assert_allclose(np.asarray(blurred.expected_counts), np.asarray(ref), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(blurred.flat_counts), np.asarray(sharp.flat_counts), rtol=1e-5
    )

    def edge(scan):
        return np.abs(np.diff(np.asarray(scan.projections[0, :, 0]))).max()

    assert edge(blurred) < 0.8 * edge(sharp)


# ---------------------------------------------------------------------------------------------
# kernel scatter


@pytest.mark.parametrize("spr", [0.1, 0.5])
def test_kernel_scatter_adds_the_stated_scatter_to_primary_ratio(spr):
    spec = xray.Spectrum.monoenergetic(70.0)
    # a water slab wider than the detector: S/P = spr (1 - e^{-p}) where the kernel sees only slab
    n = 64
    f = np.zeros((n, n, 1), np.float32)
    f[:, 16:48, :] = 1.0  # 4 mm voxels: 128 mm of water along y, 256 mm wide along x
    lv = LabeledVolume.create(
        f.astype(np.int32),
        [(0, "air", "air"), (1, "slab", "water")],
        spacing_mm=4.0,
        fractions=np.stack([1 - f, f]),
    )
    g = ParallelBeam.create(n_views=1, n_u=150, du_mm=2.0)  # 300 mm detector
    scat = xray.KernelScatter.create(spr=spr, fwhm_mm=60.0)
    primary = xray.expected_scan(lv, _protocol(spec, geometry=g))
    total = xray.expected_scan(lv, _protocol(spec, geometry=g, scatter=scat))
    p = float(primary.projections[0, 75, 0])
    measured = float(total.expected_counts[0, 75, 0] / primary.expected_counts[0, 75, 0]) - 1
    # measured: 0.1 → 0.09998, 0.5 → 0.4999 (p = 2.4, so spr (1 - e^-p) = 0.909 spr)
    assert measured == pytest.approx(spr * (1 - math.exp(-p)), rel=1e-3)
    np.testing.assert_allclose(np.asarray(total.flat_counts), np.asarray(primary.flat_counts))
    # scatter lowers the apparent line integral: a cupping/streak source downstream
    assert float(total.projections[0, 75, 0]) < p - 0.05
    none = xray.expected_scan(
        lv, _protocol(spec, geometry=g, scatter=xray.KernelScatter.create(spr=0.0))
    )
    np.testing.assert_allclose(
        np.asarray(none.expected_counts), np.asarray(primary.expected_counts), rtol=1e-12
    )


# ---------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: xray.PhotonCountingDetector.create(thresholds_kev=(50.0, 30.0)),
            r"PhotonCountingDetector.create: `thresholds_kev` must be strictly increasing \(got \[50.0, 30.0\]\)",
        ),
        (
            lambda: xray.PhotonCountingDetector.create(thresholds_kev=(20.0, 200.0)),
            r"`thresholds_kev` must lie in \[1, 150\] keV",
        ),
        (
            lambda: xray.PhotonCountingDetector.create(thresholds_kev=()),
            r"`thresholds_kev` must be a 1-D sequence of at least one energy",
        ),
        (
            lambda: xray.PhotonCountingDetector.create(
                thresholds_kev=(20.0,), energy_resolution_kev=-1
            ),
            r"`energy_resolution_kev` must be ≥ 0 keV \(got -1\)",
        ),
        (
            lambda: xray.KernelScatter.create(spr=-0.1),
            r"KernelScatter.create: `spr` \(scatter-to-primary ratio\) must be ≥ 0 \(got -0.1\)",
        ),
        (
            lambda: xray.KernelScatter.create(spr=0.1, fwhm_mm=0),
            r"`fwhm_mm` must be > 0 mm \(got 0\)",
        ),
        (
            lambda: xray.Bowtie.create(edge_mm=5.0, center_mm=8.0),
            r"Bowtie.create: `edge_mm` must be ≥ `center_mm` \(got edge_mm=5.0, center_mm=8.0\)",
        ),
        (
            lambda: xray.Bowtie.create(material="teflon", edge_mm=5.0),
            r"Bowtie.create: `material` must be a medphys.materials name .* \(got 'teflon'\)",
        ),
        (
            lambda: xray.EnergyIntegratingDetector.create(blur_fwhm_mm=-2.0),
            r"`blur_fwhm_mm` must be ≥ 0 mm \(got -2.0\)",
        ),
        (
            lambda: xray.Spectrum.monoenergetic(200.0),
            r"Spectrum.monoenergetic: `energy_kev` must be in \[1, 150\] \(got 200.0\)",
        ),
    ],
)
def test_bad_detector_scatter_bowtie_values_are_clear_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_counting_threshold_above_the_spectrum_is_an_error():
    spec = xray.Spectrum.create(kvp=60)
    det = xray.PhotonCountingDetector.create(thresholds_kev=(90.0,))
    with pytest.raises(ValueError, match=r"lowest threshold \(90 keV\) is above every photon"):
        _protocol(spec, detector=det)


_TOML = """\
modality = "ct"
description = "test"

[geometry]
kind = "fan"
n_views = 90
sod_mm = 500.0
sdd_mm = 1000.0
du_mm = 1.0
fov_mm = 300.0

[spectrum]
kvp = 120.0

[dose]
mas = 50.0

[detector]
{detector}

[bowtie]
material = "aluminium"
edge_mm = {edge}

[scatter]
spr = {spr}

[reconstruction]
beam_hardening_correction = true
"""


def test_protocol_file_with_counting_detector_bowtie_and_scatter():
    text = _TOML.format(
        detector='kind = "photon-counting"\nthresholds_kev = [25.0, 50.0]\nblur_fwhm_mm = 1.0',
        edge=12.0,
        spr=0.1,
    )
    prot = xray.protocol_from_config(tomllib.loads(text), source="x.toml", text=text)
    assert isinstance(prot.detector, xray.PhotonCountingDetector)
    assert prot.detector.n_channels == 2 and float(prot.detector.blur_fwhm_mm) == 1.0
    assert float(prot.bowtie.edge_mm) == 12.0 and float(prot.scatter.spr) == 0.1
    assert prot.beam_hardening_correction


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            dict(detector='kind = "photon-counting"\nthresholds_kev = [50.0, 25.0]'),
            r"x.toml:\d+: detector.thresholds_kev: must be strictly increasing",
        ),
        (
            dict(detector='kind = "photon-counting"\nthresholds_kev = [25.0, 170.0]'),
            r"x.toml:\d+: detector.thresholds_kev\[1\]: Input should be less than or equal to 150",
        ),
        (dict(spr=-0.2), r"x.toml:26: scatter.spr: Input should be greater than or equal to 0"),
        (dict(edge=-1.0), r"x.toml:23: bowtie.edge_mm: Input should be greater than or equal to 0"),
        (
            dict(detector='kind = "photon-counting"'),
            r"x.toml:\d+: detector: .*needs `thresholds_kev`",
        ),
    ],
)
def test_protocol_file_errors_for_the_new_sections(fields, message):
    values = dict(detector="electronic_noise = 1.0", edge=10.0, spr=0.1)
    values.update(fields)
    text = _TOML.format(**values)
    with pytest.raises(ConfigError, match=message):
        xray.protocol_from_config(tomllib.loads(text), source="x.toml", text=text)


def test_curved_fan_detector_has_uniform_flat_field():
    """Every pixel of an equiangular detector sits at sdd facing the source: a flat air scan."""
    import jax.numpy as jnp
    import numpy as np

    from medphys.simulators.geometry import FanBeam
    from medphys.simulators.xray import ray_radius_mm
    from medphys.simulators.xray._simulate import detector_weights

    kwargs = dict(n_u=64, du_mm=8.0, sod_mm=600.0, sdd_mm=1000.0, n_views=4, n_rows=1, dv_mm=1.0)
    curved = FanBeam.create(**kwargs, curved=True)
    flat = FanBeam.create(**kwargs)
    e, n = jnp.asarray([60.0]), jnp.asarray([1.0])
    w_curved, _ = detector_weights(e, n, jnp.asarray(1.0), curved, jnp.float64)
    w_flat, _ = detector_weights(e, n, jnp.asarray(1.0), flat, jnp.float64)
    wc = np.asarray(w_curved)[:, 0, 0]
    np.testing.assert_allclose(wc, wc[0], rtol=1e-12)
    wf = np.asarray(w_flat)[:, 0, 0]
    assert wf[0] < 0.97 * wf[len(wf) // 2]  # the flat detector's edges see fewer photons
    gamma = np.asarray(curved.u_mm(jnp.float64)) / 1000.0
    np.testing.assert_allclose(
        np.asarray(ray_radius_mm(curved, jnp.float64)), 600.0 * np.abs(np.sin(gamma)), rtol=1e-12
    )
