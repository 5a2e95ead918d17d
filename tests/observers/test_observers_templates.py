"""Observers against closed forms in SKE/BKE Gaussian noise (Barrett & Myers 2004, ch. 13).

Closed forms: Hotelling d′² = sᵀK⁻¹s, NPW d′ = sᵀs/√(sᵀKs), and for any fixed template w,
d′(w) = wᵀs/√(wᵀKw). Monte Carlo d′ is compared with a tolerance of 3 estimated standard errors
(`dprime_se`, delta method). Templates are trained on one set of images and tested on a disjoint
set, so the test d′ is an unbiased estimate of the trained template's exact d′(ŵ); the gap
between d′(ŵ) and the ideal value (the training bias) is bounded separately, exactly.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medphys import observers as obs

N_TRAIN = 8000  # per class
N_TEST = 2500  # per class
TOL_SE = 3.0


def _test_dprime(ske, observer, rng):
    test = np.concatenate([ske.sample(rng, N_TEST, True), ske.sample(rng, N_TEST, False)])
    truth = np.arange(2 * N_TEST) < N_TEST
    t = obs.score(observer, jnp.asarray(test))
    return float(obs.dprime(t, truth)), float(obs.dprime_se(t, truth))


@pytest.mark.parametrize("noise", ["white", "correlated"])
def test_hotelling_and_npw_match_closed_forms(noise, ske_white, ske_correlated):
    ske = ske_white if noise == "white" else ske_correlated
    rng = np.random.default_rng(7 if noise == "white" else 8)
    sp, sa = ske.sample(rng, N_TRAIN, True), ske.sample(rng, N_TRAIN, False)
    for kind, ideal in (("hotelling", ske.hotelling), ("npw", ske.npw)):
        trained = obs.train(kind, jnp.asarray(sp), jnp.asarray(sa))
        exact = ske.dprime_of(trained.template)
        # training error of the template (exact, no Monte Carlo): < 3 % from 16,000 images;
        # Hotelling is the best linear template, the NPW estimate may land on either side
        assert abs(exact - ideal) <= 0.03 * ideal, (kind, exact, ideal)
        if kind == "hotelling":
            assert exact <= ideal * (1 + 1e-9)
        d, se = _test_dprime(ske, trained, rng)
        assert abs(d - exact) <= TOL_SE * se, (kind, d, exact, se)
        assert abs(d - ideal) <= TOL_SE * se + abs(ideal - exact), (kind, d, ideal, se)


@pytest.mark.parametrize("noise", ["white", "correlated"])
def test_known_templates_give_closed_form_dprime(noise, ske_white, ske_correlated):
    """The ideal templates K⁻¹s and s, scored on 2,500 + 2,500 fresh images."""
    ske = ske_white if noise == "white" else ske_correlated
    rng = np.random.default_rng(11)
    ones = jnp.ones((1,))
    for w, ideal in ((np.linalg.solve(ske.cov, ske.signal), ske.hotelling), (ske.signal, ske.npw)):
        known = obs.Observer(jnp.asarray(w.reshape((1, *ske.shape))), ones, 0 * ones, "hotelling")
        d, se = _test_dprime(ske, known, rng)
        assert abs(d - ideal) <= TOL_SE * se, (d, ideal, se)
    if noise == "correlated":
        assert ske.hotelling > 1.5 * ske.npw  # the test separates the two observers


@pytest.mark.slow  # about 3 s: a convergence study; CHO is trained and scored in the tests below
def test_cho_approaches_hotelling_as_lg_channels_are_added(ske_correlated_24):
    """Rotationally symmetric blob in correlated noise, LG width 8 px, 1 … 8 channels.

    Channelized d′² = (UΔs)ᵀ(UKUᵀ)⁻¹(UΔs) analytically for 1 … 8 channels; from samples (2,000 +
    2,000 training, 2,000 + 2,000 test images) for 1, 2, 3, 5 and 8.
    """
    ske = ske_correlated_24
    rng = np.random.default_rng(3)
    sp = jnp.asarray(ske.sample(rng, 2000, True))
    sa = jnp.asarray(ske.sample(rng, 2000, False))
    test = jnp.asarray(np.concatenate([ske.sample(rng, 2000, True), ske.sample(rng, 2000, False)]))
    truth = np.arange(4000) < 2000
    test_flat = np.asarray(test).reshape(4000, -1)
    u_all = obs.laguerre_gauss(ske.shape, n_channels=8, width_px=8.0)
    analytic, sampled = [], []
    for k in range(1, 9):
        u = np.asarray(u_all[:k]).reshape(k, -1)
        v = u @ ske.signal
        analytic.append(float(np.sqrt(v @ np.linalg.solve(u @ ske.cov @ u.T, v))))
        if k not in (1, 2, 3, 5, 8):
            continue
        trained = obs.train("cho", sp, sa, channels=u_all[:k])
        t = test_flat @ np.asarray(trained.template).ravel()  # `score` has its own tests
        d, se = float(obs.dprime(t, truth)), float(obs.dprime_se(t, truth))
        assert abs(d - analytic[-1]) <= TOL_SE * se, (k, d, analytic[-1], se)
        sampled.append((d, se))
    analytic_ = np.array(analytic)
    assert np.all(np.diff(analytic_) >= -1e-9)  # nested channel sets: exactly non-decreasing
    assert analytic_[0] < 0.5 * ske.hotelling
    assert analytic_[-1] >= 0.995 * ske.hotelling
    for (d0, s0), (d1, s1) in itertools.pairwise(sampled):  # monotone-ish
        assert d1 >= d0 - TOL_SE * np.hypot(s0, s1)
    d_last, se_last = sampled[-1]
    assert abs(d_last - ske.hotelling) <= TOL_SE * se_last


def test_cho_internal_noise_follows_its_model(ske_correlated):
    """With α: weights (S + αD)⁻¹Δv, and d′² = Δvᵀ(S + αD)⁻¹Δv for the noisy decision variable."""
    ske = ske_correlated
    rng = np.random.default_rng(5)
    sp = jnp.asarray(ske.sample(rng, 3000, True))
    sa = jnp.asarray(ske.sample(rng, 3000, False))
    u = obs.laguerre_gauss(ske.shape, n_channels=4, width_px=6.0)
    alpha = 1.0
    noisy = obs.train("cho", sp, sa, channels=u, internal_noise=alpha)
    um = np.asarray(u).reshape(4, -1)
    s_ch = um @ ske.cov @ um.T
    v = um @ ske.signal
    s_int = s_ch + alpha * np.diag(np.diag(s_ch))
    expected = np.sqrt(v @ np.linalg.solve(s_int, v))
    test = jnp.asarray(np.concatenate([ske.sample(rng, 2500, True), ske.sample(rng, 2500, False)]))
    truth = np.arange(5000) < 2500
    noise = obs.sample_internal_noise(jax.random.key(0), noisy, (5000,))
    t = obs.score(noisy, test, internal_noise=noise)
    d, se = float(obs.dprime(t, truth)), float(obs.dprime_se(t, truth))
    assert abs(d - expected) <= TOL_SE * se
    assert d < obs.dprime(obs.score(noisy, test), truth) - 3 * se  # noise costs detectability
    np.testing.assert_allclose(noisy.noise_std**2, alpha * np.diag(s_ch), rtol=0.1)


def test_same_key_same_internal_noise_and_jit_equals_eager(ske_correlated):
    ske = ske_correlated
    rng = np.random.default_rng(1)
    sp = jnp.asarray(ske.sample(rng, 200, True))
    sa = jnp.asarray(ske.sample(rng, 200, False))
    u = obs.laguerre_gauss(ske.shape, n_channels=5, width_px=6.0)
    o = obs.train("cho", sp, sa, channels=u, internal_noise=0.5)
    n1 = obs.sample_internal_noise(jax.random.key(42), o, (400,))
    n2 = obs.sample_internal_noise(jax.random.key(42), o, (400,))
    n3 = obs.sample_internal_noise(jax.random.key(43), o, (400,))
    np.testing.assert_array_equal(n1, n2)
    assert not np.allclose(n1, n3)
    images = jnp.concatenate([sp, sa])
    eager = obs.score(o, images, internal_noise=n1)
    jitted = jax.jit(lambda ob, im, nz: obs.score(ob, im, internal_noise=nz))(o, images, n1)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12, atol=1e-12)
    # vmap over images == batch
    one = jax.vmap(lambda im: obs.score(o, im))(images)
    np.testing.assert_allclose(one, obs.score(o, images), rtol=1e-12, atol=1e-12)
    e1 = obs.evaluate(
        "cho", sp, sa, split=0.5, key=jax.random.key(9), channels=u, internal_noise=0.5
    )
    e2 = obs.evaluate(
        "cho", sp, sa, split=0.5, key=jax.random.key(9), channels=u, internal_noise=0.5
    )
    np.testing.assert_array_equal(e1.scores, e2.scores)


@pytest.mark.slow
def test_evaluate_records_split_and_resubstitution(ske_correlated):
    ske = ske_correlated
    rng = np.random.default_rng(2)
    sp = ske.sample(rng, 400, True)  # NumPy inputs are accepted as they are
    sa = ske.sample(rng, 300, False)
    u = obs.laguerre_gauss(ske.shape, n_channels=6, width_px=6.0)
    ev = obs.evaluate("cho", sp, sa, split=0.25, channels=u)
    assert ev.mode == "split" and ev.split == 0.25
    assert ev.n_train == (100, 75) and ev.n_test == (300, 225)
    assert ev.scores.shape == (525,) and int(ev.truth.sum()) == 300
    np.testing.assert_allclose(ev.dprime, obs.dprime(ev.scores, ev.truth))
    np.testing.assert_allclose(ev.auc.auc, obs.auc(ev.scores, ev.truth))
    rs = obs.evaluate("cho", sp, sa, resubstitution=True, channels=u)
    assert rs.mode == "resubstitution" and rs.split is None
    assert rs.n_train == rs.n_test == (400, 300)


def test_npwe_eye_filter_and_template_against_reference(ske_white):
    """E peaks at 1 at f_pk and vanishes at DC; the NPWE template equals F⁻¹[E² F(s)] computed
    independently (numpy, 8× zero padding, explicit degrees per mm)."""
    f = jnp.linspace(0.0, 20.0, 2001)
    e = obs.eye_filter(f)
    assert float(e[0]) == 0.0
    np.testing.assert_allclose(float(f[jnp.argmax(e)]), 4.0, atol=0.011)
    np.testing.assert_allclose(float(jnp.max(e)), 1.0, rtol=1e-6)
    rng = np.random.default_rng(4)
    noise = ske_white.sample(rng, 8, False)
    s = ske_white.signal.reshape(ske_white.shape)
    pixel_mm, dist_mm = 0.2, 500.0
    o = obs.train("npwe", jnp.asarray(noise + s), jnp.asarray(noise), pixel_mm=pixel_mm)
    n = 16 * 8
    mm_per_deg = 2 * dist_mm * np.tan(np.radians(0.5))
    fx = np.fft.fftfreq(n, d=pixel_mm) * mm_per_deg
    fr = np.hypot(fx[:, None], fx[None, :])
    e_ref = (fr / 4.0) ** 1.3 * np.exp(-(1.3 / 32.0) * (fr**2 - 16.0))
    big = np.zeros((n, n))
    big[:16, :16] = s
    ref = np.fft.ifft2(np.fft.fft2(big) * e_ref**2).real[:16, :16]
    np.testing.assert_allclose(o.template, ref, atol=1e-3 * np.abs(ref).max())


# -------------------------------------------------------------------------------------------
# bad input


def test_bad_observer_inputs(ske_white):
    rng = np.random.default_rng(0)
    sp = jnp.asarray(ske_white.sample(rng, 10, True))
    sa = jnp.asarray(ske_white.sample(rng, 10, False))
    u = obs.laguerre_gauss((16, 16), n_channels=20, width_px=5.0)
    with pytest.raises(ValueError, match=r"train: unknown `kind` 'hotteling'.*'hotelling'"):
        obs.train("hotteling", sp, sa)
    with pytest.raises(ValueError, match=r"train: kind='cho' with 20 channels needs at least 22"):
        obs.train("cho", sp, sa, channels=u)
    obs.train("cho", sp, sa, channels=u, ridge=1e-3)  # a ridge is the documented way out
    with pytest.raises(
        ValueError, match=r"train: kind='hotelling' with 256 pixels needs at least 258"
    ):
        obs.train("hotelling", sp, sa)
    with pytest.raises(
        ValueError, match=r"`signal_present` ROIs have shape \(16, 16\).*\(16, 15\)"
    ):
        obs.train("npw", sp, sa[:, :, :15])
    with pytest.raises(
        ValueError, match=r"`channels` must have shape \(n_channels, \*\(16, 16\)\)"
    ):
        obs.train("cho", sp, sa, channels=u[:, :8, :8])
    with pytest.raises(ValueError, match=r"kind='cho' needs `channels`"):
        obs.train("cho", sp, sa)
    with pytest.raises(ValueError, match=r"kind='npwe' needs `pixel_mm`"):
        obs.train("npwe", sp, sa)
    with pytest.raises(ValueError, match=r"limited to ROIs of 4096 pixels"):
        big = jnp.zeros((3, 65, 65))
        obs.train("hotelling", big, big)
    with pytest.raises(ValueError, match=r"non-finite"):
        obs.train("npw", sp.at[0, 0, 0].set(jnp.nan), sa)
    o = obs.train("npw", sp, sa)
    with pytest.raises(
        ValueError, match=r"score: `images` must have shape \(\*batch, \*\(16, 16\)\)"
    ):
        obs.score(o, jnp.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match=r"evaluate: choose how the observer is tested"):
        obs.evaluate("npw", sp, sa)
    with pytest.raises(ValueError, match=r"evaluate: choose how the observer is tested"):
        obs.evaluate("npw", sp, sa, split=0.5, resubstitution=True)
    with pytest.raises(ValueError, match=r"evaluate: `split`.*got 1.5"):
        obs.evaluate("npw", sp, sa, split=1.5)
    with pytest.raises(ValueError, match=r"evaluate: internal_noise=0.5 needs a `key`"):
        obs.evaluate("npw", sp, sa, split=0.5, internal_noise=0.5)
