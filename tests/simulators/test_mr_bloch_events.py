"""Event-based exact integration of the Bloch tier against the time-stepped reference."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_events_equal_time_stepping(name):
    """Same signal (a uniform coil and two complex coils) and final magnetisation, to 1e-6."""
    seq = mr.lower(SEQUENCES[name])
    spins = _spins(64)
    rng = np.random.default_rng(1)
    coils = np.concatenate(
        [np.ones((1, 64)), rng.normal(size=(2, 64)) + 1j * rng.normal(size=(2, 64))]
    )
    ref, m_ref = mr.bloch(seq, spins, receive=coils, time_stepped=True, return_magnetization=True)
    fast, m_fast = mr.bloch(seq, spins, receive=coils, return_magnetization=True)
    assert fast.shape == ref.shape == (3, seq.n_adc)
    scale = float(jnp.max(jnp.abs(ref)))
    assert scale > 1e-3
    assert float(jnp.max(jnp.abs(fast - ref))) < 1e-6 * scale
    assert float(jnp.max(jnp.abs(m_fast - m_ref))) < 1e-6


def test_events_cut_the_work():
    """A 64-sample readout per repetition is one event: not one step per sample."""
    seq = mr.lower(CRUSHED_SE)
    plan = _bloch_events.make_plan(seq.pattern, seq.n_adc)
    assert plan.n_events == 2 * 7  # (excitation, refocusing) x (1 dummy + 6 lines)
    assert plan.uniform and plan.n_samp == 8 and plan.rf_len == 1
    assert seq.n_steps > 5 * plan.n_events


def test_float32_events_agree_with_float64_reference():
    seq64 = mr.lower(CRUSHED_SE)
    seq32 = mr.lower(CRUSHED_SE, dtype=jnp.float32)
    ref = mr.bloch(seq64, _spins(64), time_stepped=True)
    fast = mr.bloch(seq32, _spins(64, dtype=jnp.float32))
    assert fast.dtype == jnp.complex64
    assert float(jnp.max(jnp.abs(fast - ref))) < 2e-5 * float(jnp.max(jnp.abs(ref)))


def test_stale_pattern_gives_nan_and_traced_hand_built_sequence_is_time_stepped():
    seq = mr.lower(CRUSHED_SE)
    spins = _spins(16)
    ref = mr.bloch(seq, spins, time_stepped=True)
    # RF where the pattern says there is none: reported as NaN, never a silently wrong signal
    stale = dataclasses.replace(seq, rf_hz=seq.rf_hz.at[5, 0].set(100.0))
    assert bool(jnp.all(jnp.isnan(mr.bloch(stale, spins))))

    @jax.jit
    def traced(rf):  # no pattern and traced leaves: the time-stepped path
        return mr.bloch(dataclasses.replace(seq, rf_hz=rf, pattern=None), spins)

    np.testing.assert_allclose(traced(seq.rf_hz), ref, atol=1e-12)
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
