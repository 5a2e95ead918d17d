"""Tier-1 MR signal equations against closed forms, Bloch references and known limits."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import medphys.materials as mm
from medphys.simulators import mr

TISSUES_1P5T = ("brain_white_matter", "brain_grey_matter", "csf", "adipose", "muscle", "liver")


def _props(names=TISSUES_1P5T, field_t=1.5):
    rows = [mm.get(n).mr(field_t) for n in names]
    return {k: np.array([getattr(r, k) for r in rows]) for k in ("pd", "t1_s", "t2_s", "t2star_s")}


def _signal(seq, p, **kw):
    return np.asarray(mr.signal(seq, p["pd"], p["t1_s"], p["t2_s"], t2star_s=p["t2star_s"], **kw))


# --- closed forms written out independently in NumPy --------------------------------------------


def test_spin_echo_matches_two_pulse_closed_form_and_textbook_limit():
    p = _props()
    te, tr = 0.015, 0.5
    s = _signal(mr.SpinEcho.create(te_s=te, tr_s=tr), p)
    t1, t2 = p["t1_s"], p["t2_s"]
    full = p["pd"] * (1 - 2 * np.exp(-(tr - te / 2) / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)
    np.testing.assert_allclose(s.real, full, rtol=1e-12)
    np.testing.assert_allclose(s.imag, 0.0, atol=1e-15)
    # the textbook form differs by the TE/2 regrowth term only: tiny for TE << TR
    s_short = _signal(mr.SpinEcho.create(te_s=1e-4, tr_s=tr), p)
    textbook = p["pd"] * (1 - np.exp(-tr / t1)) * np.exp(-1e-4 / t2)
    np.testing.assert_allclose(s_short.real, textbook, rtol=2e-4)


def test_gradient_echo_matches_ernst_equation_with_t2star():
    p = _props()
    te, tr, flip = 0.0046, 0.25, 70.0
    s = _signal(mr.GradientEcho.create(te_s=te, tr_s=tr, flip_deg=flip), p)
    a = np.deg2rad(flip)
    e1 = np.exp(-tr / p["t1_s"])
    ref = p["pd"] * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1) * np.exp(-te / p["t2star_s"])
    np.testing.assert_allclose(s.real, ref, rtol=1e-12)
    np.testing.assert_allclose(s.imag, 0.0, atol=1e-15)


def test_gradient_echo_off_resonance_adds_phase_only():
    p = _props()
    seq = mr.GradientEcho.create(te_s=0.005, tr_s=0.1, flip_deg=20.0)
    df = np.linspace(-80.0, 80.0, len(TISSUES_1P5T))
    s0 = _signal(seq, p)
    s = _signal(seq, p, b0_hz=df)
    np.testing.assert_allclose(np.abs(s), np.abs(s0), rtol=1e-12)
    np.testing.assert_allclose(np.angle(s), -2 * np.pi * df * 0.005, atol=1e-12)


def test_inversion_recovery_matches_closed_form_signed():
    p = _props()
    ti, te, tr = 0.7, 0.02, 4.0
    s = _signal(mr.InversionRecovery.create(ti_s=ti, te_s=te, tr_s=tr), p)
    t1 = p["t1_s"]
    ref = (
        p["pd"]
        * (1 - 2 * np.exp(-ti / t1) + 2 * np.exp(-(tr - te / 2) / t1) - np.exp(-tr / t1))
        * np.exp(-te / p["t2_s"])
    )
    np.testing.assert_allclose(s.real, ref, rtol=1e-12)
    assert np.any(ref < 0) and np.any(ref > 0)  # the comparison covers both signs


def test_bssfp_on_resonance_matches_closed_form():
    p = _props()
    tr, flip = 0.004, 60.0
    s = _signal(mr.BSSFP.create(tr_s=tr, flip_deg=flip), p)
    a = np.deg2rad(flip)
    e1, e2 = np.exp(-tr / p["t1_s"]), np.exp(-tr / p["t2_s"])
    ref = p["pd"] * np.sin(a) * (1 - e1) * np.sqrt(e2) / (1 - (e1 - e2) * np.cos(a) - e1 * e2)
    np.testing.assert_allclose(s.real, ref, rtol=1e-12)
    np.testing.assert_allclose(s.imag, 0.0, atol=1e-15)


# --- independent Bloch references (rotation matrices, NumPy) --------------------------------------


def _rx(angle):
    """Rotation tipping +z towards +y for a positive angle (pulse about x)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, s], [0, -s, c]])


def _rz(angle):
    """Clockwise precession by ``angle`` (positive off-resonance)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])


def _bssfp_bloch(alpha, t1, t2, tr, df, n_tr=4000):
    """Alternating ±alpha pulses, free precession, echo at TR/2, iterated to the steady state."""
    m = np.array([0.0, 0.0, 1.0])
    e1, e2 = np.exp(-tr / t1), np.exp(-tr / t2)
    theta = 2 * np.pi * df * tr
    out = 0.0
    for n in range(n_tr):
        m = _rx((-1) ** n * alpha) @ m
        half = _rz(theta / 2) @ m * np.exp(-tr / (2 * t2))
        out = (half[0] + 1j * half[1]) * (-1) ** n * (-1j)  # receiver follows the RF phase
        m = _rz(theta) @ m
        m = np.array([m[0] * e2, m[1] * e2, 1 - (1 - m[2]) * e1])
    return out


def test_bssfp_off_resonance_matches_bloch_simulation():
    t1, t2, tr, flip = 0.9, 0.1, 0.004, 50.0
    df = np.array([0.0, 15.0, 60.0, 110.0, 125.0, 140.0, -70.0, 260.0])
    s = np.asarray(
        mr.signal(mr.BSSFP.create(tr_s=tr, flip_deg=flip), 1.0, t1, t2, b1=1.1, b0_hz=df)
    )
    ref = np.array([_bssfp_bloch(np.deg2rad(flip) * 1.1, t1, t2, tr, f) for f in df])
    np.testing.assert_allclose(s, ref, atol=1e-9 * np.abs(ref).max())
    # banding: the null at 1/(2 TR) = 125 Hz is far below the on-resonance signal
    assert abs(s[4]) < 0.05 * abs(s[0])


def _spin_echo_bloch(t1, t2, te, tr, b1, ti=None, n_iso=8, n_tr=40):
    """Isochromat ensemble with crusher dephasing around the refocusing pulse, ideal spoiling.

    Pulses: [inversion (b1·180°), spoil transverse], excitation b1·90° about x, refocusing b1·180°
    about y; crushers dephase the ensemble uniformly over 2π before and after the refocusing pulse,
    so only the spin echo survives the ensemble average. Ideal spoiling at the end of each TR keeps
    only the ensemble-mean longitudinal magnetisation.
    """
    phases = 2 * np.pi * np.arange(n_iso) / n_iso
    mz = 1.0
    echo = 0.0

    def relax(m, t):
        return np.stack(
            [
                m[:, 0] * np.exp(-t / t2),
                m[:, 1] * np.exp(-t / t2),
                1 - (1 - m[:, 2]) * np.exp(-t / t1),
            ],
            axis=1,
        )

    def ry(angle):
        c, s = np.cos(angle), np.sin(angle)
        return np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])

    for _ in range(n_tr):
        m = np.tile([0.0, 0.0, mz], (n_iso, 1))
        t = 0.0
        if ti is not None:
            m = m @ _rx(b1 * np.pi).T
            m[:, :2] = 0.0  # spoiler after the inversion
            m = relax(m, ti)
            t = ti
        m = m @ _rx(b1 * np.pi / 2).T
        m = relax(m, te / 2)
        m = np.stack([_rz(p) @ v for p, v in zip(phases, m, strict=True)])  # crusher
        m = m @ ry(b1 * np.pi).T
        m = np.stack([_rz(p) @ v for p, v in zip(phases, m, strict=True)])  # crusher
        m = relax(m, te / 2)
        echo = np.mean(m[:, 0] + 1j * m[:, 1])
        m = relax(m, tr - t - te)
        mz = np.mean(m[:, 2])
    return -1j * echo


@pytest.mark.parametrize("b1", [1.0, 0.8, 1.15])
def test_spin_echo_and_inversion_recovery_match_bloch_with_b1(b1):
    t1, t2 = 0.9, 0.08
    se = mr.signal(mr.SpinEcho.create(te_s=0.03, tr_s=0.6), 1.0, t1, t2, b1=b1)
    np.testing.assert_allclose(complex(se), _spin_echo_bloch(t1, t2, 0.03, 0.6, b1), atol=1e-7)
    ir = mr.signal(mr.InversionRecovery.create(ti_s=0.4, te_s=0.03, tr_s=2.0), 1.0, t1, t2, b1=b1)
    np.testing.assert_allclose(
        complex(ir), _spin_echo_bloch(t1, t2, 0.03, 2.0, b1, ti=0.4), atol=1e-7
    )


# --- known limits ---------------------------------------------------------------------------------


def test_long_tr_short_te_gives_proton_density():
    p = _props()
    pd = p["pd"]
    for seq in (
        mr.SpinEcho.create(te_s=1e-9, tr_s=200.0),
        mr.GradientEcho.create(te_s=1e-9, tr_s=200.0, flip_deg=90.0),
    ):
        np.testing.assert_allclose(_signal(seq, p).real, pd, rtol=1e-7)


def test_ernst_angle_maximises_spoiled_gradient_echo():
    flips = np.arange(0.05, 90.0, 0.05)
    for t1 in (0.343, 0.884, 1.124, 4.4):
        tr = 0.02
        seqs = mr.GradientEcho(te_s=0.003, tr_s=tr, flip_deg=jnp.asarray(flips))
        s = np.asarray(mr.signal(seqs, 1.0, t1, 0.05, t2star_s=0.04).real)
        ernst = np.rad2deg(np.arccos(np.exp(-tr / t1)))
        assert abs(flips[np.argmax(s)] - ernst) < 0.5


def test_inversion_recovery_null_at_t1_ln2():
    t1 = 0.884
    seq = mr.InversionRecovery.create(ti_s=t1 * np.log(2.0), te_s=1e-4, tr_s=100.0)
    s = mr.signal(seq, 1.0, t1, 0.07)
    assert abs(complex(s)) < 1e-4
    # and the signal changes sign across the null
    before = mr.signal(dataclasses.replace(seq, ti_s=0.9 * t1 * np.log(2)), 1.0, t1, 0.07)
    after = mr.signal(dataclasses.replace(seq, ti_s=1.1 * t1 * np.log(2)), 1.0, t1, 0.07)
    assert float(before.real) < -0.05 and float(after.real) > 0.05


# --- gradients and transformation contracts -----------------------------------------------------

SEQUENCES = {
    "spin_echo": mr.SpinEcho.create(te_s=0.02, tr_s=0.6),
    "gradient_echo": mr.GradientEcho.create(te_s=0.004, tr_s=0.05, flip_deg=25.0),
    "inversion_recovery": mr.InversionRecovery.create(ti_s=0.5, te_s=0.02, tr_s=2.5),
    "bssfp": mr.BSSFP.create(tr_s=0.005, flip_deg=45.0),
}


@pytest.mark.parametrize("name", SEQUENCES)
def test_check_grads_tissue_and_timing(name):
    seq = SEQUENCES[name]
    t1 = jnp.array([0.9, 1.4, 0.35])
    t2 = jnp.array([0.07, 0.1, 0.06])
    b1 = jnp.array([0.95, 1.0, 1.1])
    b0 = jnp.array([0.0, 12.0, -30.0])

    def f_tissue(t1, t2):
        return mr.signal(seq, 0.8, t1, t2, t2star_s=0.8 * t2, b1=b1, b0_hz=b0)

    # central differences with steps small against the values (T2 ~ 0.06 s, TR ~ 0.005 s)
    check_grads(f_tissue, (t1, t2), order=1, modes=("fwd", "rev"), eps=1e-6, atol=1e-6, rtol=1e-6)

    def f_timing(tr):
        fields = {"tr_s": tr}
        if hasattr(seq, "te_s"):
            fields["te_s"] = 0.3 * tr if name == "inversion_recovery" else seq.te_s * tr / seq.tr_s
        return mr.signal(
            dataclasses.replace(seq, **fields), 0.8, t1, t2, t2star_s=0.8 * t2, b1=b1, b0_hz=b0
        )

    check_grads(
        f_timing,
        (jnp.asarray(seq.tr_s, jnp.float64),),
        order=1,
        modes=("fwd", "rev"),
        eps=1e-8,
        atol=1e-6,
        rtol=1e-6,
    )


def test_grad_with_respect_to_te_matches_closed_form_derivative():
    t1, t2 = 0.9, 0.08

    def s(te):
        return mr.signal(mr.SpinEcho(te_s=te, tr_s=0.5), 1.0, t1, t2).real

    te = 0.03
    g = jax.grad(s)(te)
    # d/dTE of (1 - 2 e^{-(TR-TE/2)/T1} + e^{-TR/T1}) e^{-TE/T2}
    mz = 1 - 2 * np.exp(-(0.5 - te / 2) / t1) + np.exp(-0.5 / t1)
    dmz = -np.exp(-(0.5 - te / 2) / t1) / t1
    ref = (dmz - mz / t2) * np.exp(-te / t2)
    np.testing.assert_allclose(float(g), ref, rtol=1e-10)


@pytest.mark.parametrize("name", SEQUENCES)
def test_jit_equals_eager_and_float32_preserved(name):
    seq = SEQUENCES[name]
    pd = jnp.array([0.7, 0.8], jnp.float32)
    t1 = jnp.array([0.9, 1.2], jnp.float32)
    t2 = jnp.array([0.08, 0.1], jnp.float32)
    b1 = jnp.array([1.0, 0.9], jnp.float32)
    b0 = jnp.array([0.0, 20.0], jnp.float32)
    eager = mr.signal(seq, pd, t1, t2, t2star_s=t2, b1=b1, b0_hz=b0)
    jitted = jax.jit(lambda q: mr.signal(q, pd, t1, t2, t2star_s=t2, b1=b1, b0_hz=b0))(seq)
    assert eager.dtype == jnp.complex64 and jitted.dtype == jnp.complex64
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-6, atol=1e-7)
    s64 = mr.signal(
        seq,
        pd.astype(jnp.float64),
        t1.astype(jnp.float64),
        t2.astype(jnp.float64),
        t2star_s=t2.astype(jnp.float64),
    )
    assert s64.dtype == jnp.complex128


def test_vmap_over_sequences_equals_loop():
    tes = jnp.array([0.01, 0.03, 0.08, 0.12])
    seqs = mr.SpinEcho(te_s=tes, tr_s=jnp.full(4, 2.0))
    t1 = jnp.array([0.9, 1.2, 4.0])
    t2 = jnp.array([0.07, 0.1, 2.0])
    batched = jax.vmap(lambda q: mr.signal(q, 1.0, t1, t2))(seqs)
    looped = jnp.stack(
        [mr.signal(mr.SpinEcho.create(te_s=float(te), tr_s=2.0), 1.0, t1, t2) for te in tes]
    )
    np.testing.assert_allclose(np.asarray(batched), np.asarray(looped), rtol=1e-13)


def test_tier1_throughput_shape_and_finiteness():
    # a million voxels in one call (the benchmark measures speed; here: it runs and is finite)
    n = 1 << 20
    t1 = jnp.linspace(0.2, 4.5, n, dtype=jnp.float32)
    t2 = jnp.linspace(0.02, 2.0, n, dtype=jnp.float32)
    s = jax.jit(lambda a, b: mr.signal(SEQUENCES["bssfp"], 1.0, a, b))(t1, t2)
    assert s.shape == (n,) and bool(jnp.all(jnp.isfinite(s)))


# --- input errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: mr.SpinEcho.create(te_s=0.5, tr_s=0.5),
            r"SpinEcho\.create: `te_s` must be less than `tr_s` \(got te_s=0\.5 s, tr_s=0\.5 s\)",
        ),
        (
            lambda: mr.GradientEcho.create(te_s=0.02, tr_s=0.01, flip_deg=10),
            r"GradientEcho\.create: `te_s` must be less than `tr_s`",
        ),
        (
            lambda: mr.InversionRecovery.create(ti_s=3.0, te_s=0.02, tr_s=2.0),
            r"InversionRecovery\.create: `ti_s` must be less than `tr_s` \(got ti_s=3 s, tr_s=2 s\)",
        ),
        (
            lambda: mr.InversionRecovery.create(ti_s=1.99, te_s=0.02, tr_s=2.0),
            r"`ti_s \+ te_s` must be less than `tr_s`",
        ),
        (
            lambda: mr.SpinEcho.create(te_s=-0.01, tr_s=0.5),
            r"SpinEcho\.create: `te_s` must be positive \(seconds\) \(got -0\.01\)",
        ),
        (
            lambda: mr.GradientEcho.create(te_s=0.002, tr_s=0.01, flip_deg=0.0),
            r"`flip_deg` must be in \(0, 180\] degrees \(got 0\.0\)",
        ),
        (
            lambda: mr.BSSFP.create(tr_s=0.004, flip_deg=181.0),
            r"BSSFP\.create: `flip_deg` must be in \(0, 180\] degrees \(got 181\.0\)",
        ),
        (
            lambda: mr.signal(SEQUENCES["spin_echo"], 1.0, np.array([0.9, 0.0]), 0.1),
            r"signal: `t1_s` must be positive and finite \(seconds\) \(got 0\.0",
        ),
        (
            lambda: mr.signal(SEQUENCES["spin_echo"], 1.0, 0.9, -0.1),
            r"signal: `t2_s` must be positive and finite \(seconds\) \(got -0\.1",
        ),
        (
            lambda: mr.signal(SEQUENCES["gradient_echo"], 1.0, 0.9, 0.1),
            r"signal: `t2star_s` is required by GradientEcho",
        ),
    ],
)
def test_bad_input_raises_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_signal_rejects_non_sequence():
    with pytest.raises(TypeError, match=r"signal: `sequence` must be a SpinEcho"):
        mr.signal("spin_echo", 1.0, 0.9, 0.1)
