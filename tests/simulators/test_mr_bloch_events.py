"""Event-based exact integration of the Bloch tier against the time-stepped reference."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from medphys.simulators import mr
from medphys.simulators.mr import _bloch_events


def _spins(n: int, seed: int = 0, *, dtype=None):
    """Spins spread in x, y and z, with off-resonance, a T2' spread and B1 errors."""
    rng = np.random.default_rng(seed)
    pos = np.stack(
        [rng.uniform(-40, 40, n), rng.uniform(-40, 40, n), rng.uniform(-2, 2, n)], axis=-1
    )
    t2p = np.tile(np.asarray(mr.lorentzian_offsets(8, 0.02)), n // 8 + 1)[:n]
    return mr.Spins.create(
        pd=rng.uniform(0.5, 1.0, n),
        t1_s=rng.uniform(0.3, 2.0, n),
        t2_s=rng.uniform(0.03, 0.2, n),
        b0_hz=rng.normal(0.0, 30.0, n) + t2p,
        b1=rng.uniform(0.8, 1.1, n),
        position_mm=pos,
        dtype=dtype,
    )


ENC = mr.Cartesian2D.create((8, 6), (80.0, 60.0), dwell_s=1e-5)
CRUSHED_SE = mr.spin_echo(te_s=0.015, tr_s=0.1, encoding=ENC, n_dummy=1, crusher_cycles_per_mm=0.5)
RAMP_READOUT = mr.Block(  # samples on the ramps: unequal increments
    duration_s=2e-3,
    gx=mr.Trapezoid(0.3, 1e-3, rise_s=2e-4, fall_s=2e-4),
    adc=mr.ADC(7, 2.5e-4, delay_s=1e-4, phase_rad=0.3),
)
SEQUENCES = {
    "spin echo, gradient spoiling": mr.spin_echo(
        te_s=0.015, tr_s=0.05, encoding=ENC, crusher_cycles_per_mm=0.5, ideal_spoiling=False
    ),
    "sinc GRE, RF spoiling": mr.gradient_echo(
        te_s=0.006,
        tr_s=0.02,
        flip_deg=30.0,
        encoding=ENC,
        excitation=mr.sinc_pulse(30.0, 1e-3, raster_s=2e-5),
        rf_spoil_increment_deg=117.0,
    ),
    "TSE 150 deg": mr.turbo_spin_echo(
        esp_s=0.01, n_echoes=4, tr_s=0.2, refocus_deg=150.0, n_reps=2, crusher_cycles_per_mm=1.0
    ),
    "Gaussian slice, ramp sampling": [
        *mr.selective(mr.gaussian_pulse(40.0, 2e-3, raster_s=2e-5), 4.0),
        RAMP_READOUT,
    ],
    # two readout classes per repetition: ramp-sampled, then (after a refocusing pulse) flat
    "two readouts per TR": [
        b
        for line in range(3)
        for b in (
            mr.Block(rf=mr.hard_pulse(40.0, 1e-4, phase_deg=50.0 * line)),
            mr.Block(duration_s=1e-3, gy=mr.Trapezoid(0.1 * line - 0.1, 1e-3)),
            RAMP_READOUT,
            mr.Block(rf=mr.hard_pulse(120.0, 1e-4, phase_deg=90.0)),
            mr.Block(duration_s=1e-3, gx=mr.Trapezoid(-0.2, 1e-3), adc=mr.ADC(5, 1e-4, 4e-4)),
            mr.Block(duration_s=5e-3, gz=mr.Trapezoid(0.5, 5e-3)),
        )
    ],
    # radial spokes: every readout is its own class (more than the shared path takes)
    "radial spokes": [
        b
        for angle in np.linspace(0.0, np.pi, 10, endpoint=False)
        for b in (
            mr.Block(rf=mr.hard_pulse(30.0, 1e-4)),
            mr.Block(
                duration_s=1e-3,
                gx=mr.Trapezoid(0.25 * np.cos(angle), 1e-3),
                gy=mr.Trapezoid(0.25 * np.sin(angle), 1e-3),
                adc=mr.ADC(6, 1e-4, delay_s=2e-4),
            ),
            mr.Block(duration_s=4e-3, spoil=True),
        )
    ],
}


# the slow tier (about 5 s each): the gradient-spoiled spin echo (the crushed spin echo's events
# are checked against time stepping in float32 below) and the TSE (against EPG in test_mr_bloch);
# the default keeps the RF-spoiled sinc GRE, the ramp-sampled slice (also forced through the
# per-event samples), two readout classes per TR and the radial spokes
_SLOW_SEQUENCES = ("spin echo, gradient spoiling", "TSE 150 deg")


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_SEQUENCES else n for n in SEQUENCES],
)
def test_events_equal_time_stepping(name):
    """Same signal (a uniform coil and two complex coils) and final magnetisation, to 1e-12
    (measured <= 3e-15), through the shared readouts and through the per-event ones."""
    seq = mr.lower(SEQUENCES[name])
    spins = _spins(64)
    rng = np.random.default_rng(1)
    coils = np.concatenate(
        [np.ones((1, 64)), rng.normal(size=(2, 64)) + 1j * rng.normal(size=(2, 64))]
    )
    ref, m_ref = mr.bloch(seq, spins, receive=coils, time_stepped=True, return_magnetization=True)
    scale = float(jnp.max(jnp.abs(ref)))
    assert scale > 1e-3
    # the per-event (in-scan) samples: the radial spokes take them; here also a ramp readout
    for force_in_scan in (False, True) if name.startswith("Gaussian") else (False,):
        with pytest.MonkeyPatch.context() as mp:
            if force_in_scan:
                mp.setattr(_bloch_events, "_MAX_CLASSES", 0)
            fast, m_fast = mr.bloch(seq, spins, receive=coils, return_magnetization=True)
        assert fast.shape == ref.shape == (3, seq.n_adc)
        assert float(jnp.max(jnp.abs(fast - ref))) < 1e-12 * scale
        assert float(jnp.max(jnp.abs(m_fast - m_ref))) < 1e-12
    np.testing.assert_allclose(mr.bloch(seq, spins), ref[0], rtol=0, atol=1e-12 * scale)


def test_readout_classes_and_spin_chunks():
    """Readouts that repeat the same steps share one class; chunks of spins add up exactly."""
    plans = {
        k: _bloch_events.make_plan(s.pattern, s.n_adc)
        for k, s in ((k, mr.lower(b)) for k, b in SEQUENCES.items())
    }
    assert len(plans["spin echo, gradient spoiling"].classes) == 1  # all phase encodings
    assert len(plans["sinc GRE, RF spoiling"].classes) == 1  # and all RF phases
    assert plans["two readouts per TR"].class_samples == (7, 5)
    assert len(plans["radial spokes"].classes) == 10 and not plans["radial spokes"].shared
    seq = mr.lower(CRUSHED_SE)
    spins = _spins(512)
    coils = np.random.default_rng(2).normal(size=(2, 512)) + 0j
    whole = mr.bloch(seq, spins, receive=coils)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_bloch_events, "_CHUNK_ELEMENTS", 20_000)
        plan = _bloch_events.make_plan(seq.pattern, seq.n_adc)
        assert _bloch_events.spin_chunks(plan, 512, 2) == 2  # at least 256 spins per chunk
        chunked, m = mr.bloch(seq, spins, receive=coils, return_magnetization=True)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12 * float(jnp.max(jnp.abs(whole))))
    _, m_whole = mr.bloch(seq, spins, return_magnetization=True)
    np.testing.assert_allclose(m, m_whole, atol=1e-13)
    assert m.shape == (512, 3)


def test_phases_in_cycles_are_exact_and_differentiable():
    """cos/sin(2πp) by reduction in cycles: to 1 ulp-ish of the reduced argument, any p."""
    p = np.concatenate([np.linspace(-3.0, 3.0, 2001), [1e5 + 0.125, -7.5, 0.0, 0.25, 1e-9]])
    c, s = _bloch_events.cis_cycles(jnp.asarray(p))
    frac = p - np.round(p)  # exact: the reference's argument is reduced the same way
    np.testing.assert_allclose(c, np.cos(2 * np.pi * frac), rtol=0, atol=4e-16)
    np.testing.assert_allclose(s, np.sin(2 * np.pi * frac), rtol=0, atol=4e-16)
    c32, _ = _bloch_events.cis_cycles(jnp.asarray(p, jnp.float32))
    p32 = np.asarray(jnp.asarray(p, jnp.float32), np.float64)
    np.testing.assert_allclose(c32, np.cos(2 * np.pi * (p32 - np.round(p32))), atol=2e-7)
    check_grads(lambda q: jnp.stack(_bloch_events.cis_cycles(q)), (jnp.asarray(p[:50]),), 1)


def test_events_cut_the_work():
    """An 8-sample readout per repetition is one event: not one step per sample; its samples
    are one matrix product over the 6 lines after the scan."""
    seq = mr.lower(CRUSHED_SE)
    plan = _bloch_events.make_plan(seq.pattern, seq.n_adc)
    assert plan.n_events == 2 * 7  # (excitation, refocusing) x (1 dummy + 6 lines)
    assert plan.uniform and plan.n_samp == 8 and plan.rf_len == 1
    assert plan.shared and plan.class_shapes == ((6, 8),)
    assert seq.n_steps > 5 * plan.n_events


def test_float32_events_agree_with_float64_reference():
    seq64 = mr.lower(CRUSHED_SE)
    seq32 = mr.lower(CRUSHED_SE, dtype=jnp.float32)
    ref = mr.bloch(seq64, _spins(64), time_stepped=True)
    fast = mr.bloch(seq32, _spins(64, dtype=jnp.float32))
    assert fast.dtype == jnp.complex64
    assert float(jnp.max(jnp.abs(fast - ref))) < 2e-5 * float(jnp.max(jnp.abs(ref)))


def test_stale_pattern_gives_nan_and_traced_sequence_without_pattern_is_refused():
    seq = mr.lower(CRUSHED_SE)
    spins = _spins(16)
    ref = mr.bloch(seq, spins, time_stepped=True)
    # RF where the pattern says there is none: reported as NaN, never a silently wrong signal
    stale = dataclasses.replace(seq, rf_hz=seq.rf_hz.at[5, 0].set(100.0))
    assert bool(jnp.all(jnp.isnan(mr.bloch(stale, spins))))

    def traced(rf, time_stepped):  # no pattern and traced leaves
        hand_built = dataclasses.replace(seq, rf_hz=rf, pattern=None)
        return mr.bloch(hand_built, spins, time_stepped=time_stepped)

    with pytest.raises(ValueError, match=r"bloch: `sequence.pattern` is None and the sequence's"):
        jax.jit(lambda rf: traced(rf, False))(seq.rf_hz)
    stepped = jax.jit(lambda rf: traced(rf, True))(seq.rf_hz)
    np.testing.assert_allclose(stepped, ref, atol=1e-12)
    with pytest.raises(ValueError, match=r"bloch: `sequence.pattern` describes"):
        mr.bloch(
            dataclasses.replace(seq, pattern=mr.lower(SEQUENCES["TSE 150 deg"]).pattern), spins
        )


@pytest.mark.slow  # the fast path's gradients are also checked in test_mr_bloch (check_grads)
def test_gradients_of_events_equal_time_stepping_on_an_encoded_echo():
    seq = mr.lower(
        mr.spin_echo(te_s=0.01, tr_s=0.03, encoding=mr.Cartesian2D.create((4, 2), (40.0, 20.0)))
    )
    pos = jnp.array([[3.0, -2.0, 0.0], [-7.0, 4.0, 0.0], [11.0, 1.0, 0.0]])

    def f(time_stepped):
        def g(pd, t1, t2, flip_scale):
            spins = mr.Spins.create(pd=pd, t1_s=t1, t2_s=t2, b0_hz=15.0, position_mm=pos)
            s = mr.bloch(
                dataclasses.replace(seq, rf_hz=seq.rf_hz * flip_scale),
                spins,
                time_stepped=time_stepped,
            )
            return jnp.sum(jnp.abs(s) ** 2)

        return g

    args = (
        jnp.array([1.0, 0.8, 0.6]),
        jnp.array([0.8, 1.2, 2.0]),
        jnp.array([0.05, 0.1, 0.3]),
        0.9,
    )
    # the events' gradients (PD, T1, T2 and the flip angle) are those of the reference, whose
    # gradients `test_mr_bloch.test_gradients_through_bloch_tier` checks by finite differences
    ga = jax.grad(f(False), argnums=(0, 1, 2, 3))(*args)
    gb = jax.grad(f(True), argnums=(0, 1, 2, 3))(*args)
    for a, b in zip(ga, gb, strict=True):
        assert float(jnp.max(jnp.abs(b))) > 1e-3
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
