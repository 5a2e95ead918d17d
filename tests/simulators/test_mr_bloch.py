"""Tier 3 (Bloch isochromats): closed forms, EPG, slice profiles, encoding, gradients, bad input."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from medphys.simulators import mr
from medphys.simulators.mr import lorentzian_quadrature

T1 = np.array([0.6, 0.9, 1.4])  # s: fat/white/grey-matter-like tissue
T2 = np.array([0.06, 0.08, 0.11])
PD = np.array([0.9, 0.7, 0.8])


def _z_grid(n: int, length_mm: float = 1.0) -> np.ndarray:
    return (np.arange(n) + 0.5) / n * length_mm


def _voxel_spins(n_z: int, n_offsets: int, t2prime_s: float, *, b1: float = 1.0):
    """Three tissues, each ``n_z`` positions along z x ``n_offsets`` Lorentzian off-resonances."""
    z = np.repeat(_z_grid(n_z), n_offsets)
    off = np.tile(np.asarray(mr.lorentzian_offsets(n_offsets, t2prime_s)), n_z)
    per = n_z * n_offsets
    pos = np.zeros((3 * per, 3))
    pos[:, 2] = np.tile(z, 3)
    spins = mr.Spins.create(
        pd=np.repeat(PD, per) / per,
        t1_s=np.repeat(T1, per),
        t2_s=np.repeat(T2, per),
        b0_hz=np.tile(off, 3),
        b1=b1,
        position_mm=pos,
    )
    return spins, np.kron(np.eye(3), np.ones(per))  # receive weights: one "coil" per tissue


def test_spin_echo_with_ideal_crushing_equals_tier1():
    te, tr = 0.02, 0.6
    blocks = mr.spin_echo(te_s=te, tr_s=tr, n_reps=2, n_dummy=1, crusher_cycles_per_mm=1.0)
    spins, select = _voxel_spins(16, 8, t2prime_s=0.015)
    s = np.asarray(mr.bloch(mr.lower(blocks), spins, receive=select))[:, -1]
    ref = np.asarray(mr.signal(mr.SpinEcho.create(te_s=te, tr_s=tr), PD, T1, T2))
    np.testing.assert_allclose(s.real, ref.real, rtol=0.01)
    assert np.all(np.abs(s.imag) < 1e-3 * np.abs(ref))
    # the T2' spread (15 ms) alone would have cut the echo by exp(-20/15): it is refocused


@pytest.mark.parametrize("b1", [1.0, 0.85, 0.6])
def test_first_spin_echo_with_crushers_and_b1_error(b1):
    """From equilibrium: S = PD sin(90° b1) sin²(90° b1) exp(-TE/T2) once crushers remove the FIDs."""
    te = 0.02
    blocks = mr.spin_echo(te_s=te, tr_s=0.1, crusher_cycles_per_mm=1.0)
    spins, select = _voxel_spins(16, 1, t2prime_s=1.0, b1=b1)
    s = np.asarray(mr.bloch(mr.lower(blocks), spins, receive=select))[:, 0]
    alpha = math.radians(90.0 * b1)
    ref = PD * math.sin(alpha) * math.sin(alpha) ** 2 * np.exp(-te / T2)
    np.testing.assert_allclose(s.real, ref, rtol=0.005)
    if b1 < 1:  # without crushers the refocusing pulse's FID adds to the echo
        blocks = mr.spin_echo(te_s=te, tr_s=0.1)
        plain = np.asarray(mr.bloch(mr.lower(blocks), spins, receive=select))[:, 0]
        assert np.all(np.abs(plain - ref) > 0.02 * ref)


def test_t2prime_isochromats_decay_and_refocus():
    t2p = 0.01
    n = 512
    spins = mr.Spins.create(pd=1.0 / n, t1_s=1e3, t2_s=1e3, b0_hz=mr.lorentzian_offsets(n, t2p))
    fid = [mr.Block(rf=mr.hard_pulse(90.0, 1e-5)), mr.Block(adc=mr.ADC(20, 1e-3))]
    s = np.asarray(mr.bloch(mr.lower(fid), spins))
    t = 0.5e-5 + (np.arange(20) + 0.5) * 1e-3
    np.testing.assert_allclose(np.abs(s), np.exp(-t / t2p), atol=0.02)
    echo = mr.spin_echo(te_s=0.04, tr_s=0.1, n_reps=1)
    # refocused, up to the far Lorentzian tail (kHz) that the 0.1-ms hard pulses do not cover
    assert abs(complex(mr.bloch(mr.lower(echo), spins)[0])) == pytest.approx(1.0, abs=0.005)


def _decay(offsets, weights, t):
    """Σ_j w_j exp(-i 2π Δf_j t) for an array of times."""
    return np.exp(-2j * np.pi * np.outer(t, np.asarray(offsets))) @ np.asarray(weights)


@pytest.mark.parametrize("n", [8, 16])
@pytest.mark.parametrize("horizon", [0.25, 1.0, 2.0, 3.0])  # in units of T2'
def test_lorentzian_quadrature_follows_the_exponential_over_its_horizon(n, horizon):
    """The Szegő rule against the Lorentzian's characteristic function exp(-|t|/T2')."""
    t2p = 0.03
    f, w = lorentzian_quadrature(n, t2p, horizon_s=horizon * t2p)
    f, w = np.asarray(f), np.asarray(w)
    assert np.all(w > 0) and w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(f, -f[::-1], atol=1e-9)  # symmetric: a real signal
    t = np.linspace(-horizon * t2p, horizon * t2p, 4001)
    s = _decay(f, w, t)
    assert np.max(np.abs(s.imag)) < 1e-12
    exact = np.exp(-np.abs(t) / t2p)
    h = horizon / (n - 1)  # grid step in units of T2'
    # exact on the grid t = k h, k = 0 .. n-1
    grid = np.arange(n) * h * t2p
    np.testing.assert_allclose(_decay(f, w, grid).real, np.exp(-grid / t2p), atol=1e-12)
    # in between within 0.2 h (measured 0.19 h for every n and horizon here): 8 isochromats over
    # 2 T2' err by 0.055 at most, 16 over 3 T2' by 0.038
    err = np.max(np.abs(s.real - exact))
    assert err < 0.2 * h
    if horizon >= 1.0:  # the deterministic quantiles of `lorentzian_offsets`: 5x-10x worse
        q = np.asarray(mr.lorentzian_offsets(n, t2p))
        assert np.max(np.abs(_decay(q, np.full(n, 1.0 / n), t).real - exact)) > 4 * err


def test_lorentzian_quadrature_through_bloch_and_edge_cases():
    """Weights enter as fractions of PD: the Bloch FID of 8 weighted isochromats decays as
    exp(-t/T2') over the horizon (the quantiles: 0.820 instead of 0.787 at t = 0.24 T2')."""
    t2p, n = 0.02, 8
    f, w = lorentzian_quadrature(n, t2p, horizon_s=0.5 * t2p)
    spins = mr.Spins.create(pd=w, t1_s=1e3, t2_s=1e3, b0_hz=f)
    fid = [mr.Block(rf=mr.hard_pulse(90.0, 1e-6)), mr.Block(adc=mr.ADC(10, 1e-3))]
    s = np.asarray(mr.bloch(mr.lower(fid), spins))
    t = 0.5e-6 + (np.arange(10) + 0.5) * 1e-3  # from the pulse's centre
    np.testing.assert_allclose(s.real, np.exp(-t / t2p), atol=0.2 * 0.5 / (n - 1))
    assert abs(float(np.interp(0.24, t / t2p, s.real)) - math.exp(-0.24)) < 0.01
    # one isochromat: on resonance, all of the PD; the default horizon is 3 T2'
    f1, w1 = lorentzian_quadrature(1, t2p)
    assert np.asarray(f1).tolist() == [0.0] and np.asarray(w1).tolist() == [1.0]
    f3, _ = lorentzian_quadrature(3, t2p)
    np.testing.assert_allclose(f3, lorentzian_quadrature(3, t2p, horizon_s=0.06)[0])
    assert lorentzian_quadrature(4, t2p, dtype=jnp.float32)[0].dtype == jnp.float32
    with pytest.raises(ValueError, match=r"lorentzian_quadrature: `horizon_s` must be positive"):
        lorentzian_quadrature(8, t2p, horizon_s=0.0)
    with pytest.raises(ValueError, match=r"lorentzian_quadrature: `n` must be >= 1"):
        lorentzian_quadrature(0, t2p)


@pytest.mark.parametrize("refocus_deg", [180.0, 130.0])
def test_bloch_tse_equals_epg(refocus_deg):
    n_echoes, n_z = 8, 48  # EPG orders up to 2 n_echoes + 2 < n_z: no aliasing of the z grid
    t1, t2 = np.array([0.8, 1.5]), np.array([0.07, 0.3])
    tr = 10.0
    blocks = mr.turbo_spin_echo(
        esp_s=0.012,
        n_echoes=n_echoes,
        tr_s=tr,
        refocus_deg=refocus_deg,
        n_reps=2,
        crusher_cycles_per_mm=1.0,
    )
    pos = np.zeros((2 * n_z, 3))
    pos[:, 2] = np.tile(_z_grid(n_z), 2)
    spins = mr.Spins.create(
        pd=1.0 / n_z, t1_s=np.repeat(t1, n_z), t2_s=np.repeat(t2, n_z), position_mm=pos
    )
    s = np.asarray(mr.bloch(mr.lower(blocks), spins, receive=np.kron(np.eye(2), np.ones(n_z))))
    seq = mr.FastSpinEcho.create(esp_s=0.012, tr_s=tr, n_echoes=n_echoes, refocus_deg=refocus_deg)
    epg = np.asarray(mr.echo_train(seq, 1.0, t1, t2)).T  # (tissues, echoes), steady state
    second = s[:, n_echoes:]
    np.testing.assert_allclose(second.real, epg.real, rtol=0.01)
    np.testing.assert_allclose(second.imag, 0.0, atol=1e-6)
    if refocus_deg < 180:  # stimulated echoes: not a pure exponential, which EPG also says
        ratio = second[:, 1] / second[:, 0]
        assert np.all(np.abs(ratio - np.exp(-0.012 / t2)) > 0.01)


@pytest.mark.parametrize(
    "pulse",
    [
        mr.sinc_pulse(5.0, 2e-3, time_bw_product=6.0, raster_s=1e-5),
        mr.gaussian_pulse(5.0, 2e-3, time_bw_product=3.0, raster_s=1e-5),
    ],
    ids=["sinc", "gaussian"],
)
def test_small_tip_slice_profile_is_fourier_transform_of_pulse(pulse):
    thickness = 5.0
    z = np.linspace(-12.0, 12.0, 241)
    pos = np.zeros((z.size, 3))
    pos[:, 2] = z
    spins = mr.Spins.create(pd=1.0, t1_s=1e3, t2_s=1e3, position_mm=pos)
    _, m = mr.bloch(mr.lower(mr.selective(pulse, thickness)), spins, return_magnetization=True)
    m = np.asarray(m)
    mxy = m[:, 0] + 1j * m[:, 1]
    g = pulse.bandwidth_hz / thickness
    t = (np.arange(pulse.signal_hz.size) + 0.5) * pulse.raster_s - pulse.center_s
    # small-tip approximation (Pauly et al. 1989): M+(z) = i 2π Σ b1(t) e^{i 2π g z t} dt
    ft = (
        2j
        * math.pi
        * pulse.raster_s
        * (np.exp(2j * math.pi * g * z[:, None] * t[None, :]) @ pulse.signal_hz)
    )
    assert np.max(np.abs(mxy - ft)) < 0.01 * np.max(np.abs(ft))
    # the slice is in phase after the rewinder: +y, the excitation's direction
    centre = np.abs(z) < 0.5
    assert np.all(m[centre, 1] > 0.99 * np.abs(mxy[centre]))
    # and its full width at half maximum is the requested thickness (sinc: within 10%)
    profile = np.abs(mxy) / np.abs(mxy).max()
    fwhm = np.ptp(z[profile >= 0.5]) + (z[1] - z[0])
    assert fwhm == pytest.approx(thickness, rel=0.1)


def test_gradient_echo_with_ideal_spoiling_equals_tier1():
    te, tr, flip = 0.005, 0.03, 25.0
    blocks = mr.gradient_echo(te_s=te, tr_s=tr, flip_deg=flip, n_reps=1, n_dummy=200)
    spins = mr.Spins.create(pd=PD, t1_s=T1, t2_s=T2)
    s = np.asarray(mr.bloch(mr.lower(blocks), spins, receive=np.eye(3)))[:, -1]
    ref = np.asarray(
        mr.signal(mr.GradientEcho.create(te_s=te, tr_s=tr, flip_deg=flip), PD, T1, T2, t2star_s=T2)
    )
    np.testing.assert_allclose(s, ref, rtol=0.005)


def test_cartesian_spin_echo_kspace_equals_fft_of_tier1_image():
    n, fov = 8, 80.0
    enc = mr.Cartesian2D.create((n, n), (fov, fov), dwell_s=1e-5)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 3, size=(n, n))
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    pos = np.stack([(i - n // 2) * fov / n, (j - n // 2) * fov / n, 0 * i], -1).reshape(-1, 3)
    spins = mr.Spins.create(
        pd=PD[idx].ravel(), t1_s=T1[idx].ravel(), t2_s=T2[idx].ravel(), position_mm=pos
    )
    te, tr = 0.015, 0.5
    blocks = mr.spin_echo(te_s=te, tr_s=tr, encoding=enc, n_dummy=1)
    k = np.asarray(mr.bloch(mr.lower(blocks), spins)).reshape(n, n).T  # (kx, ky)
    image = np.asarray(mr.signal(mr.SpinEcho.create(te_s=te, tr_s=tr), PD, T1, T2))[idx]
    ref = np.asarray(mr.fft2c(image[:, :, None]))[:, :, 0] * n
    assert np.max(np.abs(k - ref)) < 0.005 * np.max(np.abs(ref))


@pytest.mark.parametrize(
    "time_stepped",
    # the default tier checks the gradients of the event path (what mr.bloch runs); the
    # time-stepped reference's in the slow tier (with test_mr_bloch_events' gradient comparison)
    [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["events", "time-stepped"],
)
def test_gradients_through_bloch_tier(time_stepped):
    seq = mr.lower(
        [
            mr.Block(rf=mr.sinc_pulse(60.0, 1e-3, raster_s=2.5e-4), gz=mr.Trapezoid(2.0, 1e-3)),
            mr.Block(duration_s=3e-3, gz=mr.Trapezoid(-1.0, 1e-3), adc=mr.ADC(3, 1e-3)),
        ]
    )
    pos = jnp.array([[0.0, 0.0, -0.3], [0.0, 0.0, 0.2]])

    @jax.jit
    def f(pd, t1, t2, b0, rf_scale, dt_scale):
        spins = mr.Spins.create(pd=pd, t1_s=t1, t2_s=t2, b0_hz=b0, position_mm=pos)
        s = mr.bloch(
            dataclasses.replace(seq, dt_s=seq.dt_s * dt_scale, rf_hz=seq.rf_hz * rf_scale),
            spins,
            block_steps=2,
            time_stepped=time_stepped,
        )
        return jnp.concatenate([s.real, s.imag])

    args = (
        jnp.array([1.0, 0.7]),
        jnp.array([0.8, 1.1]),
        jnp.array([0.05, 0.09]),
        jnp.array([30.0, -20.0]),
        1.1,  # flip-angle scale
        1.0,
    )
    check_grads(f, args, order=1, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


def test_checkpoint_blocks_do_not_change_the_result_and_jit_is_reused():
    seq = mr.lower(mr.turbo_spin_echo(esp_s=0.01, n_echoes=5, tr_s=0.5, refocus_deg=150.0))
    spins = mr.Spins.create(pd=1.0, t1_s=0.9, t2_s=0.09)
    a = mr.bloch(seq, spins, block_steps=1)
    b = mr.bloch(seq, spins, block_steps=7)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    spins32 = mr.Spins.create(pd=1.0, t1_s=0.9, t2_s=0.09, dtype=jnp.float32)
    seq32 = jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float32) if x.dtype == jnp.float64 else x, seq
    )
    assert mr.bloch(seq32, spins32).dtype == jnp.complex64


def test_bad_input_is_rejected_before_any_work():
    with pytest.raises(ValueError, match=r"spin_echo: `te_s` must be less than `tr_s`"):
        mr.spin_echo(te_s=0.5, tr_s=0.5)
    with pytest.raises(ValueError, match=r"gradient_echo: `flip_deg` must be in \(0, 180\]"):
        mr.gradient_echo(te_s=0.005, tr_s=0.02, flip_deg=190.0)
    with pytest.raises(ValueError, match=r"turbo_spin_echo: `refocus_deg`"):
        mr.turbo_spin_echo(esp_s=0.01, n_echoes=4, tr_s=1.0, refocus_deg=0.0)
    with pytest.raises(ValueError, match=r"Spins.create: `t2_s` must be positive"):
        mr.Spins.create(pd=1.0, t1_s=1.0, t2_s=[0.1, -0.1])
    with pytest.raises(ValueError, match=r"Spins.create: `t1_s` must be a scalar or have 3"):
        mr.Spins.create(pd=1.0, t1_s=[1.0, 2.0], t2_s=0.1, position_mm=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"sinc_pulse: `apodization` must be in \[0, 1\]"):
        mr.sinc_pulse(30.0, 1e-3, apodization=1.5)
    with pytest.raises(ValueError, match=r"lorentzian_offsets: `t2prime_s` must be positive"):
        mr.lorentzian_offsets(8, 0.0)
    seq = mr.lower(mr.spin_echo(te_s=0.01, tr_s=0.1))
    spins = mr.Spins.create(pd=[1.0, 1.0], t1_s=1.0, t2_s=0.1)
    with pytest.raises(ValueError, match=r"bloch: `receive` must have shape \(coils, 2\)"):
        mr.bloch(seq, spins, receive=np.ones((4, 3)))
    with pytest.raises(TypeError, match=r"bloch: `sequence` must be a StepSequence"):
        mr.bloch(mr.spin_echo(te_s=0.01, tr_s=0.1), spins)
    with pytest.raises(ValueError, match=r"spin_echo: the timing leaves no room"):
        mr.spin_echo(te_s=1e-4, tr_s=0.1)
