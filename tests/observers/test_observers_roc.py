"""ROC statistics against independent implementations and by simulation.

- empirical AUC against `scipy.stats.mannwhitneyu` (AUC = U / (n₁ n₀));
- DeLong variance and paired covariance against plain O(n²) numpy loops written from the 1988
  formulas (structural components V₁₀, V₀₁ and their sample covariances);
- the jackknife covariance against explicit leave-one-case-out recomputation;
- AUC = Φ(d′/√2) for Gaussian scores; coverage of the 95 % DeLong interval over 4,000 simulated
  studies (vmap); bootstrap vs DeLong; paired ΔAUC under the null.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from medphys import observers as obs


def _ties(rng, n1, n0, shift=1.0):
    """Scores rounded to one decimal so that ties occur within and across classes."""
    x = np.round(rng.normal(shift, 1.0, n1), 1)
    y = np.round(rng.normal(0.0, 1.0, n0), 1)
    return np.concatenate([x, y]), np.arange(n1 + n0) < n1


def _psi(x, y):
    return 1.0 if x > y else (0.5 if x == y else 0.0)


def _delong_reference(score_sets, truth):
    """DeLong et al. (1988): AUCs and covariance, by explicit loops over all pairs."""
    k = len(score_sets)
    pos = [i for i in range(len(truth)) if truth[i]]
    neg = [j for j in range(len(truth)) if not truth[j]]
    m, n = len(pos), len(neg)
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    for r in range(k):
        s = score_sets[r]
        for a, i in enumerate(pos):
            for b, j in enumerate(neg):
                p = _psi(s[i], s[j])
                v10[r, a] += p / n
                v01[r, b] += p / m
    aucs = v10.mean(axis=1)
    s10 = np.zeros((k, k))
    s01 = np.zeros((k, k))
    for r in range(k):
        for q in range(k):
            s10[r, q] = sum((v10[r, a] - aucs[r]) * (v10[q, a] - aucs[q]) for a in range(m)) / (
                m - 1
            )
            s01[r, q] = sum((v01[r, b] - aucs[r]) * (v01[q, b] - aucs[q]) for b in range(n)) / (
                n - 1
            )
    return aucs, s10 / m + s01 / n, s10, s01


def test_auc_matches_mann_whitney_u():
    rng = np.random.default_rng(0)
    for n1, n0, shift in ((41, 57, 0.8), (5, 4, 2.0)):
        s, t = _ties(rng, n1, n0, shift)
        u = scipy.stats.mannwhitneyu(s[t], s[~t]).statistic
        np.testing.assert_allclose(obs.auc(s, t), u / (n1 * n0), rtol=1e-12)
        # unsorted, interleaved cases give the same value
        perm = rng.permutation(n1 + n0)
        np.testing.assert_allclose(obs.auc(s[perm], t[perm]), u / (n1 * n0), rtol=1e-12)


def test_delong_variance_and_paired_covariance_match_loops():
    rng = np.random.default_rng(1)
    s_a, t = _ties(rng, 41, 57, 0.9)
    s_b = np.round(s_a + rng.normal(0.0, 0.7, s_a.size), 1)
    aucs, cov, s10, s01 = _delong_reference([s_a, s_b], t)
    single = obs.delong(s_a, t)
    np.testing.assert_allclose(single.auc, aucs[0], rtol=1e-12)
    np.testing.assert_allclose(single.variance, cov[0, 0], rtol=1e-10)
    np.testing.assert_allclose(single.s10, s10[0, 0], rtol=1e-10)
    np.testing.assert_allclose(single.s01, s01[0, 0], rtol=1e-10)
    z = scipy.stats.norm.ppf(0.975)
    np.testing.assert_allclose(single.lower, aucs[0] - z * np.sqrt(cov[0, 0]), rtol=1e-10)
    a2, c2 = obs.delong_covariance(np.stack([s_a, s_b]), t)
    np.testing.assert_allclose(a2, aucs, rtol=1e-12)
    np.testing.assert_allclose(c2, cov, rtol=1e-10)
    pair = obs.delta_auc(s_a, t, s_b, t)
    np.testing.assert_allclose(pair.delta, aucs[1] - aucs[0], rtol=1e-12)
    var_ref = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    np.testing.assert_allclose(pair.variance, var_ref, rtol=1e-10)
    p_ref = 2 * scipy.stats.norm.sf(abs(aucs[1] - aucs[0]) / np.sqrt(var_ref))
    np.testing.assert_allclose(pair.p_value, p_ref, rtol=1e-8)


def test_jackknife_covariance_matches_explicit_leave_one_out():
    rng = np.random.default_rng(2)
    s_a, t = _ties(rng, 19, 23, 0.7)
    s_b = s_a + rng.normal(0.0, 1.0, s_a.size)
    scores = np.stack([s_a, s_b])
    n = t.size
    loo = np.array(
        [
            [scipy.stats.mannwhitneyu(sc[keep & t], sc[keep & ~t]).statistic
             / ((keep & t).sum() * (keep & ~t).sum()) for sc in scores]
            for keep in (np.arange(n) != i for i in range(n))
        ]
    )  # fmt: skip
    d = loo - loo.mean(axis=0)
    ref = (n - 1) / n * d.T @ d
    _, cov = obs.jackknife_covariance(scores, t)
    np.testing.assert_allclose(cov, ref, rtol=1e-10)


def test_auc_of_gaussian_scores_is_phi_of_dprime_over_root2():
    rng = np.random.default_rng(3)
    for d in (0.5, 1.5, 2.5):
        n = 5000
        s = np.concatenate([rng.normal(d, 1.0, n), rng.normal(0.0, 1.0, n)])
        t = np.arange(2 * n) < n
        res = obs.delong(s, t)
        truth = float(obs.auc_from_dprime(d))
        np.testing.assert_allclose(truth, scipy.stats.norm.cdf(d / np.sqrt(2)), rtol=1e-12)
        assert abs(float(res.auc) - truth) <= 3 * float(res.se), (d, res.auc, truth)
        np.testing.assert_allclose(obs.dprime_from_auc(truth), d, rtol=1e-10)


def _simulate(seed, n_studies, n1, n0, d):
    """Equal-variance Gaussian scores (NumPy draws: no compilation per shape)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_studies, n1)) + d
    y = rng.standard_normal((n_studies, n0))
    return jnp.asarray(np.concatenate([x, y], axis=1)), jnp.arange(n1 + n0) < n1


@pytest.mark.slow  # about 2 s: a coverage study; DeLong's variance equals its loops above
def test_delong_interval_covers_the_true_auc_95_percent():
    """4,000 studies of 60 + 80 cases, d′ = 1.2 (AUC 0.802): coverage within 93–97 %."""
    n_studies, d = 4000, 1.2
    s, t = _simulate(0, n_studies, 60, 80, d)
    res = jax.jit(jax.vmap(lambda sc: obs.delong(sc, t)))(s)
    true_auc = float(obs.auc_from_dprime(d))
    cover = float(jnp.mean((res.lower <= true_auc) & (true_auc <= res.upper)))
    assert 0.93 <= cover <= 0.97, cover
    # the DeLong variance is unbiased for the spread of the AUC across studies (±10 %)
    np.testing.assert_allclose(float(jnp.var(res.auc)), float(jnp.mean(res.variance)), rtol=0.1)


def test_bootstrap_and_delong_agree_on_a_large_study():
    s, t = _simulate(1, 1, 1000, 1000, 1.0)
    dl = obs.delong(s[0], t)
    bs = obs.bootstrap_auc(jax.random.key(2), s[0], t, n_boot=1000)
    assert bs.method == "bootstrap" and dl.method == "delong"
    np.testing.assert_allclose(bs.se, dl.se, rtol=0.1)
    np.testing.assert_allclose(bs.lower, dl.lower, atol=0.2 * float(dl.se))
    np.testing.assert_allclose(bs.upper, dl.upper, atol=0.2 * float(dl.se))
    same = obs.bootstrap_auc(jax.random.key(2), s[0], t, n_boot=1000)
    np.testing.assert_array_equal(same.lower, bs.lower)  # same key, same interval


def test_paired_delta_auc_is_zero_mean_under_the_null():
    """Two arms with the same distribution, correlated through shared case effects."""
    n_studies, n1, n0 = 2000, 50, 50
    rng = np.random.default_rng(3)
    case = rng.standard_normal((n_studies, n1 + n0))
    lift = np.concatenate([np.ones(n1), np.zeros(n0)])[None, :]
    a = case + 0.7 * rng.standard_normal(case.shape) + lift
    b = case + 0.7 * rng.standard_normal(case.shape) + lift
    t = jnp.arange(n1 + n0) < n1
    res = jax.jit(jax.vmap(lambda x, y: obs.delta_auc(x, t, y, t)))(a, b)
    mean, sd = float(jnp.mean(res.delta)), float(jnp.std(res.delta))
    assert abs(mean) <= 3 * sd / np.sqrt(n_studies)
    np.testing.assert_allclose(sd, float(jnp.sqrt(jnp.mean(res.variance))), rtol=0.1)
    reject = float(jnp.mean(res.p_value < 0.05))
    assert 0.03 <= reject <= 0.07, reject
    assert float(jnp.mean(res.covariance[:, 0, 1])) > 0  # the shared cases correlate the arms


def test_jit_equals_eager_for_auc_and_delong():
    rng = np.random.default_rng(4)
    s, t = _ties(rng, 41, 57)  # the shapes of the loop test: eager calls are compiled already
    s, t = jnp.asarray(s), jnp.asarray(t)
    np.testing.assert_allclose(jax.jit(obs.auc)(s, t), obs.auc(s, t), rtol=1e-14)
    eager = obs.delong(s, t)
    jitted = jax.jit(obs.delong)(s, t)
    for f in ("auc", "variance", "lower", "upper"):
        np.testing.assert_allclose(getattr(jitted, f), getattr(eager, f), rtol=1e-12)
    np.testing.assert_allclose(jax.jit(obs.dprime)(s, t), obs.dprime(s, t), rtol=1e-12)


def test_dprime_of_gaussian_scores_and_its_standard_error():
    n_studies, d = 3000, 1.5
    s, t = _simulate(5, n_studies, 100, 120, d)
    ds = jax.vmap(lambda x: obs.dprime(x, t))(s)
    ses = jax.vmap(lambda x: obs.dprime_se(x, t))(s)
    assert abs(float(jnp.mean(ds)) - d) <= 0.02 * d
    np.testing.assert_allclose(float(jnp.std(ds)), float(jnp.mean(ses)), rtol=0.1)


# -------------------------------------------------------------------------------------------
# bad input


def test_bad_roc_inputs():
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    t = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
    with pytest.raises(
        ValueError, match=r"auc: `scores` must be finite; 1 of 6 .*index \(2,\): nan"
    ):
        obs.auc(np.where(np.arange(6) == 2, np.nan, s), t)
    with pytest.raises(ValueError, match=r"delong: `scores` must be finite.*inf"):
        obs.delong(np.where(np.arange(6) == 0, np.inf, s), t)
    with pytest.raises(
        ValueError, match=r"auc: `truth` must be a 1-D vector with one entry per case \(6\)"
    ):
        obs.auc(s, t[:5])
    with pytest.raises(ValueError, match=r"delong: `truth` must mark at least 2 signal-present"):
        obs.delong(s, np.array([0, 0, 0, 0, 0, 1], dtype=bool))
    with pytest.raises(ValueError, match=r"`truth` must hold only 0 and 1 \(got 2\)"):
        obs.auc(s, np.array([0, 2, 1, 1, 0, 1]))
    with pytest.raises(
        ValueError,
        match=r"delta_auc: the two arms must score the same cases: `scores_a` has 6 cases and `scores_b` has 5",
    ):
        obs.delta_auc(s, t, s[:5], t[:5])
    with pytest.raises(
        ValueError,
        match=r"delta_auc: `truth_a` and `truth_b` must be the same case set.*first at index 0",
    ):
        obs.delta_auc(s, t, s, t[::-1])
    with pytest.raises(ValueError, match=r"delta_auc: `scores_b` must be finite"):
        obs.delta_auc(s, t, np.full(6, np.nan), t)
    with pytest.raises(
        ValueError, match=r"delong: `level` must lie strictly between 0 and 1 \(got 95.0\)"
    ):
        obs.delong(s, t, level=95.0)
    with pytest.raises(ValueError, match=r"bootstrap_auc: `n_boot` must be >= 2"):
        obs.bootstrap_auc(jax.random.key(0), s, t, n_boot=1)
