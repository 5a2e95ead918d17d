"""Tier-2 extended phase graphs: against tier 1, an independent EPG and a Bloch isochromat model."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from medphys.simulators import mr

T1 = np.array([0.884, 1.124, 4.4, 0.343, 0.856])
T2 = np.array([0.072, 0.095, 2.0, 0.058, 0.027])


def test_single_echo_with_180_refocusing_is_the_tier1_spin_echo():
    b1 = np.array([1.0, 0.9, 1.1, 0.8, 1.2])
    fse = mr.FastSpinEcho.create(esp_s=0.02, tr_s=0.6, n_echoes=1)
    se = mr.SpinEcho.create(te_s=0.02, tr_s=0.6)
    np.testing.assert_allclose(
        np.asarray(mr.signal(fse, 0.8, T1, T2, b1=b1)),
        np.asarray(mr.signal(se, 0.8, T1, T2, b1=b1)),
        rtol=1e-12,
    )


def test_ideal_cpmg_echoes_match_tier1_spin_echoes_within_half_a_percent():
    # TR long against every T1 (CSF 4.4 s): the train's repeated inversions of Mz then no longer
    # change the steady state (at TR = 8 s CSF would differ by 0.49%, all other tissues < 1e-4)
    esp, tr = 0.01, 15.0
    fse = mr.FastSpinEcho.create(esp_s=esp, tr_s=tr, n_echoes=12)
    train = np.asarray(mr.echo_train(fse, 1.0, T1, T2)).real
    for k in range(12):
        se = np.asarray(mr.signal(mr.SpinEcho.create(te_s=(k + 1) * esp, tr_s=tr), 1.0, T1, T2))
        np.testing.assert_allclose(train[k], se.real, rtol=5e-3)


# --- an independent EPG written from Weigel (2015), in NumPy -------------------------------------


def _t_matrix(alpha, phi):
    """Weigel 2015, eq. 15: RF rotation of (F+, F-, Z)."""
    c, s = np.cos(alpha / 2) ** 2, np.sin(alpha / 2) ** 2
    return np.array(
        [
            [c, np.exp(2j * phi) * s, -1j * np.exp(1j * phi) * np.sin(alpha)],
            [np.exp(-2j * phi) * s, c, 1j * np.exp(-1j * phi) * np.sin(alpha)],
            [
                -0.5j * np.exp(-1j * phi) * np.sin(alpha),
                0.5j * np.exp(1j * phi) * np.sin(alpha),
                np.cos(alpha),
            ],
        ]
    )


def _numpy_cpmg(t1, t2, b1, esp, tr, n_echoes, refocus_deg, n_tr=60):
    """Echo train in the steady state, iterating whole repetitions with ideal spoiling."""
    n_states = 2 * n_echoes + 4
    mz = 1.0
    for _ in range(n_tr):
        omega = np.zeros((3, n_states), complex)
        omega[2, 0] = mz
        omega = _t_matrix(b1 * np.pi / 2, np.pi / 2) @ omega
        echoes = []
        for _ in range(n_echoes):
            for half in (0, 1):
                omega[:2] *= np.exp(-esp / 2 / t2)
                omega[2] *= np.exp(-esp / 2 / t1)
                omega[2, 0] += 1 - np.exp(-esp / 2 / t1)
                # dephasing: F+ moves up one order, F- down one, F+_0 = conj(F-_0)
                omega[0] = np.roll(omega[0], 1)
                omega[1] = np.roll(omega[1], -1)
                omega[1, -1] = 0
                omega[0, 0] = np.conj(omega[1, 0])
                if half == 0:
                    omega = _t_matrix(b1 * np.deg2rad(refocus_deg), 0.0) @ omega
            echoes.append(omega[0, 0])
        z_end = omega[2, 0].real
        mz = 1 - (1 - z_end) * np.exp(-(tr - n_echoes * esp) / t1)
    return np.array(echoes)


@pytest.mark.parametrize("b1", [1.0, 0.85])
def test_cpmg_150_degrees_matches_independent_epg(b1):
    esp, tr, n = 0.012, 2.0, 16
    fse = mr.FastSpinEcho.create(esp_s=esp, tr_s=tr, n_echoes=n, refocus_deg=150.0)
    got = np.asarray(mr.echo_train(fse, 1.0, T1, T2, b1=np.full(5, b1)))
    for i in range(len(T1)):
        ref = _numpy_cpmg(T1[i], T2[i], b1, esp, tr, n, 150.0)
        np.testing.assert_allclose(got[:, i], ref, atol=1e-10)
    # the stimulated-echo oscillation is there: echo 2 exceeds echo 1 for the long-T2 tissue
    assert got[1, 2].real > got[0, 2].real


def _isochromat_cpmg(t1, t2, b1, esp, n_echoes, refocus_deg, n_iso=256):
    """First train from equilibrium: isochromats dephased by one crusher turn per half spacing."""
    phases = 2 * np.pi * np.arange(n_iso) / n_iso
    m = np.tile([0.0, 0.0, 1.0], (n_iso, 1))

    def rot(m, alpha, axis):
        c, s = np.cos(alpha), np.sin(alpha)
        out = m.copy()
        if axis == "x":  # tips +z towards -y (the sense of Weigel's operator)
            out[:, 1], out[:, 2] = c * m[:, 1] + s * m[:, 2], -s * m[:, 1] + c * m[:, 2]
        else:  # about y: tips +z towards +x
            out[:, 0], out[:, 2] = c * m[:, 0] + s * m[:, 2], -s * m[:, 0] + c * m[:, 2]
        return out

    def free(m, t):
        c, s = np.cos(phases), np.sin(phases)
        out = np.empty_like(m)
        out[:, 0] = (c * m[:, 0] - s * m[:, 1]) * np.exp(-t / t2)
        out[:, 1] = (s * m[:, 0] + c * m[:, 1]) * np.exp(-t / t2)
        out[:, 2] = 1 - (1 - m[:, 2]) * np.exp(-t / t1)
        return out

    m = rot(m, b1 * np.pi / 2, "y")
    echoes = []
    for _ in range(n_echoes):
        m = free(m, esp / 2)
        m = rot(m, b1 * np.deg2rad(refocus_deg), "x")
        m = free(m, esp / 2)
        echoes.append(np.mean(m[:, 0] + 1j * m[:, 1]))
    return np.array(echoes)


def test_epg_matches_bloch_isochromats_for_a_first_train():
    # a TR long enough that the steady state is the equilibrium (e^{-TR/T1} < 1e-15)
    esp, n = 0.01, 10
    fse = mr.FastSpinEcho.create(esp_s=esp, tr_s=200.0, n_echoes=n, refocus_deg=120.0)
    got = np.asarray(mr.echo_train(fse, 1.0, T1[:2], T2[:2], b1=np.array([1.0, 0.9])))
    for i, b1 in enumerate((1.0, 0.9)):
        ref = _isochromat_cpmg(T1[i], T2[i], b1, esp, n, 120.0)
        np.testing.assert_allclose(got[:, i], ref, atol=1e-9)


# --- imaging path, gradients, errors --------------------------------------------------------------


def test_b1_table_interpolation_matches_direct_evaluation():
    fse = mr.FastSpinEcho.create(esp_s=0.01, tr_s=3.0, n_echoes=16, echo=8, refocus_deg=140.0)
    b1 = jnp.asarray(np.random.default_rng(0).uniform(0.6, 1.4, size=(1, 30, 30, 2)))
    pd, t1, t2 = (jnp.asarray(v)[:, None, None, None] for v in (np.full(5, 0.8), T1, T2))
    signal = jax.jit(lambda pd, t1, t2, b1: mr.signal(fse, pd, t1, t2, b1=b1))
    tabulated = np.asarray(signal(pd, t1, t2, b1))  # 5 compartments x 1800 voxels: tabulated
    full = (5, 30, 30, 2)
    direct = np.asarray(signal(*(jnp.broadcast_to(v, full) for v in (pd, t1, t2, b1))))
    np.testing.assert_allclose(tabulated, direct, atol=1e-5 * np.abs(direct).max())


def test_fast_spin_echo_simulates_on_a_phantom():
    from medphys.volume import LabeledVolume

    labels = np.pad(np.ones((6, 6, 2), np.int32), ((3, 3), (3, 3), (0, 0)))
    phantom = LabeledVolume.create(
        labels, [(0, "air", "air"), (1, "body", "muscle")], spacing_mm=4.0
    )
    seq = mr.FastSpinEcho.create(esp_s=0.012, tr_s=3.0, n_echoes=8, echo=4, refocus_deg=150.0)
    protocol = mr.MRProtocol.create(seq, field_t=3.0)
    res = mr.simulate(jax.random.key(0), phantom, protocol)
    img = np.asarray(res.image.data)
    assert img.dtype == np.float32 and np.all(np.isfinite(img))
    assert img[labels == 1].min() > 0 and img[labels == 0].max() < 1e-6


def test_check_grads_t2_and_refocusing_angle():
    t1 = jnp.array([0.9, 1.2])
    fse = mr.FastSpinEcho.create(esp_s=0.01, tr_s=2.0, n_echoes=4, echo=3, refocus_deg=150.0)

    @jax.jit
    def f(t2, angle):
        return mr.echo_train(dataclasses.replace(fse, refocus_deg=angle), 1.0, t1, t2)

    check_grads(
        f,
        (jnp.array([0.07, 0.1]), jnp.asarray(150.0)),
        order=1,
        modes=("rev",),
        eps=1e-6,
        atol=1e-6,
        rtol=1e-6,
    )


def test_float32_preserved():
    fse = mr.FastSpinEcho.create(esp_s=0.01, tr_s=2.0, n_echoes=4)
    s = mr.echo_train(
        fse, jnp.float32(1.0), jnp.ones(3, jnp.float32), jnp.full(3, 0.1, jnp.float32)
    )
    assert s.dtype == jnp.complex64 and s.shape == (4, 3)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (
            {"esp_s": 0.01, "tr_s": 1.0, "n_echoes": 4, "echo": 5},
            r"`echo` must be <= `n_echoes` = 4",
        ),
        (
            {"esp_s": 0.1, "tr_s": 1.0, "n_echoes": 10},
            r"FastSpinEcho\.create: `tr_s` must exceed the train length",
        ),
        (
            {"esp_s": 0.01, "tr_s": 1.0, "n_echoes": 4, "refocus_deg": 0.0},
            r"`refocus_deg` must be in \(0, 180\] degrees",
        ),
        ({"esp_s": 0.01, "tr_s": 1.0, "n_echoes": 0}, r"`n_echoes` must be >= 1"),
    ],
)
def test_bad_echo_trains(kw, match):
    with pytest.raises(ValueError, match=match):
        mr.FastSpinEcho.create(**kw)
