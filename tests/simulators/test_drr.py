"""DRRs from a CT in HU: the bilinear water/bone decomposition is exact for water/bone/air
phantoms, polychromatic DRRs match Beer–Lambert through a water cylinder, NIfTI input, gradients,
validation."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import medphys.materials as mm
from medphys import Volume
from medphys.io import save_nifti
from medphys.simulators import xray
from medphys.simulators.geometry import ConeBeam, ParallelBeam

E_CT = 70.0
N, SP = 40, 4.0  # 160 mm cube


def _fractions():
    """Water cylinder (r 60 mm, along z) with a cortical-bone rod (r 15 mm), supersampled."""
    c = (np.arange(N) - (N - 1) / 2) * SP
    ss = 4
    off = ((np.arange(ss) + 0.5) / ss - 0.5) * SP
    x = (c[:, None] + off[None, :]).reshape(-1)
    r_body = np.hypot(x[:, None], x[None, :])
    r_rod = np.hypot(x[:, None] - 20.0, x[None, :] + 10.0)
    body = (r_body <= 60.0).reshape(N, ss, N, ss).mean(axis=(1, 3))
    bone = (r_rod <= 15.0).reshape(N, ss, N, ss).mean(axis=(1, 3))
    nz = 12
    return (
        np.repeat((body - bone)[:, :, None], nz, axis=2),
        np.repeat(bone[:, :, None], nz, axis=2),
    )


@pytest.fixture(scope="module")
def ct_hu():
    f_w, f_b = _fractions()
    mu_w, mu_b = mm.attenuation_table(["water", "cortical_bone"], [E_CT])[:, 0]
    hu = 1000.0 * ((f_w * mu_w + f_b * mu_b) / mu_w - 1.0)  # air as vacuum
    vol = Volume.create(hu, spacing_mm=SP)
    return vol, f_w, f_b


def _cone(n_views=2):
    return ConeBeam.create(
        n_views=n_views, n_u=48, n_v=16, du_mm=6.0, dv_mm=6.0, sod_mm=600.0, sdd_mm=1000.0
    )


def test_decomposition_recovers_water_and_bone_fractions(ct_hu):
    vol, f_w, f_b = ct_hu
    w, b = xray.hu_to_fractions(vol.data, E_CT)
    np.testing.assert_allclose(np.asarray(w), f_w, atol=1e-9)
    np.testing.assert_allclose(np.asarray(b), f_b, atol=1e-9)
    assert float(np.max(np.asarray(vol.data))) > 1000.0  # the rod is cortical bone


@pytest.mark.parametrize("energy", [E_CT, 40.0, 120.0])
def test_monoenergetic_drr_equals_the_projection_of_the_true_attenuation(ct_hu, energy):
    vol, f_w, f_b = ct_hu
    g = _cone()
    mu_w, mu_b = mm.attenuation_table(["water", "cortical_bone"], [energy])[:, 0] / 10.0
    truth = xray.project(Volume(data=f_w * mu_w + f_b * mu_b, affine=vol.affine), g)
    p = xray.drr(vol, g, energy_kev=energy)
    assert p.shape == (2, 48, 16)
    np.testing.assert_allclose(np.asarray(p), np.asarray(truth), rtol=1e-9, atol=1e-12)
    assert float(p.max()) > 1.0


def test_polychromatic_drr_matches_beer_lambert_through_water():
    # a water cylinder (r 60 mm) seen by a parallel beam: chord 2 sqrt(R² - s²) per ray
    c = (np.arange(N) - (N - 1) / 2) * SP
    ss = 4
    off = ((np.arange(ss) + 0.5) / ss - 0.5) * SP
    x = (c[:, None] + off[None, :]).reshape(-1)
    f = (np.hypot(x[:, None], x[None, :]) <= 60.0).reshape(N, ss, N, ss).mean(axis=(1, 3))
    hu = 1000.0 * (f[:, :, None] - 1.0)
    vol = Volume.create(np.repeat(hu, 2, axis=2), spacing_mm=SP)
    g = ParallelBeam.create(n_views=4, n_u=64, du_mm=2.0)
    s = xray.Spectrum.create(kvp=100, filtration=(("Al", 3.0),), bin_kev=4)
    p = np.asarray(xray.drr(vol, g, spectrum=s))[0, :, 0]
    u = np.asarray(g.u_mm(jnp.float64))
    chord = 2 * np.sqrt(np.maximum(60.0**2 - u**2, 0.0))
    e, n = np.asarray(s.energies_kev), np.asarray(s.photons)
    mu = mm.attenuation_table(["water"], e)[0] / 10.0
    w = n * e / np.sum(n * e)
    expected = -np.log(np.exp(-np.outer(chord, mu)) @ w)
    inner = np.abs(u) < 50.0
    # measured: 0.3 % (the supersampled disk's discretisation); beam hardening: p/chord falls
    np.testing.assert_allclose(p[inner], expected[inner], rtol=0.01)
    centre = np.argmin(np.abs(u))
    mu_mean = float(np.sum(w * mu))
    assert p[centre] < mu_mean * chord[centre] * 0.95


def test_drr_from_a_nifti_file_is_the_same(ct_hu, tmp_path):
    vol, _, _ = ct_hu
    path = save_nifti(
        Volume.create(np.asarray(vol.data, np.float32), spacing_mm=SP), tmp_path / "ct.nii.gz"
    )
    g = _cone()  # the same layout as above: the compiled projector is reused
    s = xray.Spectrum.create(kvp=110, filtration=(("Al", 3.0),), bin_kev=5)
    from_file = xray.drr(path, g, spectrum=s)
    direct = xray.drr(Volume.create(np.asarray(vol.data, np.float32), spacing_mm=SP), g, spectrum=s)
    np.testing.assert_allclose(np.asarray(from_file), np.asarray(direct), rtol=1e-6)


def test_drr_gradients_in_the_volume():
    rng = np.random.default_rng(0)
    hu = jnp.asarray(rng.uniform(-800.0, 600.0, (6, 6, 4)))
    affine = np.asarray(Volume.create(np.zeros((6, 6, 4)), spacing_mm=5.0).affine)
    g = ParallelBeam.create(n_views=3, n_u=12, du_mm=4.0)
    s = xray.Spectrum.create(kvp=80, bin_kev=10)

    def f(h):
        return xray.drr(Volume(data=h, affine=affine), g, spectrum=s)

    # the water–bone kink at 0 HU is avoided by the draw's distance from it
    hu = jnp.where(jnp.abs(hu) < 50.0, 100.0, hu)
    check_grads(jax.jit(f), (hu,), order=1, modes=("rev",), eps=1e-3, atol=1e-6, rtol=1e-4)


@pytest.mark.slow
def test_drr_gradient_in_the_cone_beam_pose():
    rng = np.random.default_rng(0)
    hu = jnp.asarray(rng.uniform(-800.0, 600.0, (6, 6, 4)))
    affine = np.asarray(Volume.create(np.zeros((6, 6, 4)), spacing_mm=5.0).affine)

    def pose(sod):
        geo = ConeBeam.create(
            n_views=2, n_u=8, n_v=6, du_mm=8.0, dv_mm=8.0, sod_mm=300.0, sdd_mm=500.0
        )
        geo = dataclasses.replace(geo, sod_mm=sod)
        return jnp.sum(xray.drr(Volume(data=hu, affine=affine), geo, energy_kev=60.0))

    grad = float(jax.grad(pose)(jnp.asarray(300.0)))
    fd = float((pose(jnp.asarray(300.5)) - pose(jnp.asarray(299.5))) / 1.0)
    assert math.isfinite(grad) and grad == pytest.approx(fd, rel=0.02, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(energy_kev=200.0), r"xray.drr: `energy_kev` must be in \[1, 150\] keV"),
        (dict(ct_effective_kev=0.5), r"`ct_effective_kev` must be in \[1, 150\] keV"),
        (
            dict(energy_kev=60.0, spectrum="x"),
            r"xray.drr: give `spectrum` or `energy_kev`, not both",
        ),
    ],
)
def test_drr_validation(ct_hu, kwargs, message):
    vol, _, _ = ct_hu
    with pytest.raises(ValueError, match=message):
        xray.drr(vol, _cone(1), **kwargs)
    with pytest.raises(TypeError, match=r"`ct_volume_hu` must be a medphys.Volume of HU"):
        xray.drr(np.zeros((4, 4, 4)), _cone(1))
