"""Obuchowski–Rockette–Hillis MRMC analysis and case planning, by simulation and identities.

Simulated readers follow a Roe–Metz-type model: the score of case k by reader j under test i is
(μᵢ + τᵢⱼ + ρⱼ)·Dₖ + Cₖ + (TC)ᵢₖ + (RC)ⱼₖ + Eᵢⱼₖ with independent Gaussian terms, so reader j's AUC
under test i is Φ((μᵢ + τᵢⱼ + ρⱼ)/√(2v)) (v the summed case-level variances) and the
reader-population AUC is Φ(μᵢ/√(2v + σ²_τ + σ²_ρ)): the truth the ORH interval should cover.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from medphys import observers as obs

MU = np.array([1.2, 1.5])
V_C, V_TC, V_RC, V_E = 0.3, 0.2, 0.2, 0.3
S_TAU, S_RHO = 0.05, 0.1


def _population_auc(mu):
    v = V_C + V_TC + V_RC + V_E
    return scipy.stats.norm.cdf(mu / np.sqrt(2 * v + S_TAU + S_RHO))


def _studies(rng, n_studies, r, n1, n0):
    t, n = MU.size, n1 + n0
    d = np.r_[np.ones(n1), np.zeros(n0)]
    sep = MU[None, :, None] + rng.normal(0, math.sqrt(S_TAU), (n_studies, t, r))
    sep = sep + rng.normal(0, math.sqrt(S_RHO), (n_studies, 1, r))
    x = sep[..., None] * d
    x = x + rng.normal(0, math.sqrt(V_C), (n_studies, 1, 1, n))
    x = x + rng.normal(0, math.sqrt(V_TC), (n_studies, t, 1, n))
    x = x + rng.normal(0, math.sqrt(V_RC), (n_studies, 1, r, n))
    x = x + rng.normal(0, math.sqrt(V_E), (n_studies, t, r, n))
    return x, d.astype(bool)


@pytest.mark.slow  # about 2 s: a coverage study; the ORH quantities equal direct formulas below
def test_orh_interval_covers_the_population_delta_and_df_is_sensible():
    """300 studies, 2 tests × 5 readers × (50 + 50) cases: coverage of the 95 % interval."""
    rng = np.random.default_rng(0)
    x, truth = _studies(rng, 300, 5, 50, 50)
    delta = float(np.diff(_population_auc(MU))[0])
    results = [obs.orh(xs, truth) for xs in x]
    cover = np.mean([r.lower[0] <= delta <= r.upper[0] for r in results])
    dfs = np.array([r.df for r in results])
    assert 0.91 <= cover <= 0.985, cover
    assert np.all(dfs >= (2 - 1) * (5 - 1) - 1e-9)  # Hillis's ddf is never below (t−1)(r−1)
    assert 4.0 <= np.median(dfs) <= 60.0, np.median(dfs)
    assert all(r.readers == "random" and r.covariance == "delong" for r in results)
    # the jackknife variant on a subset
    jk = [obs.orh(xs, truth, covariance="jackknife") for xs in x[:100]]
    assert 0.88 <= np.mean([r.lower[0] <= delta <= r.upper[0] for r in jk]) <= 1.0


def test_orh_quantities_match_direct_formulas():
    rng = np.random.default_rng(1)
    x, truth = _studies(rng, 1, 4, 30, 40)
    x = x[0]
    res = obs.orh(x, truth)
    t, r, _ = x.shape
    theta = np.array(
        [[scipy.stats.mannwhitneyu(x[i, j, truth], x[i, j, ~truth]).statistic / 1200 for j in range(r)]
         for i in range(t)]
    )  # fmt: skip
    np.testing.assert_allclose(res.auc, theta, rtol=1e-12)
    _, cov = obs.delong_covariance(x.reshape(t * r, -1), truth)
    cov = np.asarray(cov).reshape(t, r, t, r)
    var = np.mean([cov[i, j, i, j] for i in range(t) for j in range(r)])
    cov1 = np.mean(
        [cov[i, j, k, j] for i in range(t) for k in range(t) if i != k for j in range(r)]
    )
    cov2 = np.mean(
        [cov[i, j, i, m] for i in range(t) for j in range(r) for m in range(r) if j != m]
    )
    cov3 = np.mean([cov[i, j, k, m] for i in range(t) for k in range(t) if i != k
                    for j in range(r) for m in range(r) if j != m])  # fmt: skip
    np.testing.assert_allclose(
        [res.var, res.cov1, res.cov2, res.cov3], [var, cov1, cov2, cov3], rtol=1e-10
    )
    ms_t = r * np.sum((theta.mean(1) - theta.mean()) ** 2) / (t - 1)
    ms_tr = np.sum(
        (theta - theta.mean(1, keepdims=True) - theta.mean(0, keepdims=True) + theta.mean()) ** 2
    ) / ((t - 1) * (r - 1))
    den = ms_tr + r * max(cov2 - cov3, 0.0)
    df = den**2 / (ms_tr**2 / ((t - 1) * (r - 1)))
    np.testing.assert_allclose([res.ms_t, res.ms_tr, res.df], [ms_t, ms_tr, df], rtol=1e-10)
    np.testing.assert_allclose(res.statistic, ms_t / den, rtol=1e-10)
    np.testing.assert_allclose(res.p_value, scipy.stats.f.sf(ms_t / den, t - 1, df), rtol=1e-8)
    half = scipy.stats.t.ppf(0.975, df) * math.sqrt(2 * den / r)
    np.testing.assert_allclose(res.upper - res.lower, 2 * half, rtol=1e-10)


def test_one_fixed_reader_reduces_to_paired_delong():
    rng = np.random.default_rng(2)
    x, truth = _studies(rng, 1, 1, 40, 60)
    res = obs.orh(x[0], truth, readers="fixed")
    pair = obs.delta_auc(x[0, 0, 0], truth, x[0, 1, 0], truth)
    np.testing.assert_allclose(res.delta[0], pair.delta, rtol=1e-12)
    np.testing.assert_allclose(res.se, pair.se, rtol=1e-10)
    np.testing.assert_allclose(res.p_value, pair.p_value, rtol=1e-8)
    assert res.df == math.inf


@pytest.mark.slow
def test_plan_cases_single_reader_reaches_the_target_se_and_power():
    """Plan from a 100 + 100 pilot; the variance scaling and the power are checked by simulation."""
    d = 1.0
    rng = np.random.default_rng(0)
    pilot_s = np.concatenate([rng.standard_normal(100) + d, rng.standard_normal(100)])
    truth = np.arange(200) < 100
    pilot = obs.delong(pilot_s, truth)
    plan = obs.plan_cases(pilot, target_se=0.7 * float(pilot.se), ratio=2.0)
    assert plan.n_absent == math.ceil(2 * plan.n_present)
    assert 120 <= plan.n_present <= 220  # (s10 + s01/2) / se²: about 2 × the variance-per-case
    assert plan.se <= 0.7 * float(pilot.se) * (1 + 1e-9)
    # the planned variance is the pilot-size variance scaled by (s10/n1 + s01/n0): check the
    # scaling by simulating 800 studies at each size (each variance to about 5 %)
    n1, n0 = plan.n_present, plan.n_absent

    def sd_of_auc(m1, m0):
        s = np.concatenate([rng.standard_normal((800, m1)) + d, rng.standard_normal((800, m0))], 1)
        t = jnp.arange(m1 + m0) < m1
        return float(jnp.std(jax.vmap(lambda x: obs.auc(x, t))(jnp.asarray(s))))

    ratio_sim = (sd_of_auc(n1, n0) / sd_of_auc(100, 100)) ** 2
    ratio_pred = plan.se**2 / float(pilot.variance)
    np.testing.assert_allclose(ratio_sim, ratio_pred, rtol=0.2)
    # power for a paired difference: plan, then check the rejection rate by simulation;
    # within-class variance 2 (case + reading noise): d′ = lift / √2
    effect = float(
        obs.auc_from_dprime(1.4 / math.sqrt(2)) - obs.auc_from_dprime(0.8 / math.sqrt(2))
    )

    def arms(n_studies, n_each):
        case = rng.standard_normal((n_studies, 2 * n_each))
        lift = (np.arange(2 * n_each) < n_each).astype(float)[None, :]
        a = case + rng.standard_normal(case.shape) + 0.8 * lift
        b = case + rng.standard_normal(case.shape) + 1.4 * lift
        return a, b, np.arange(2 * n_each) < n_each

    a, b, tr = arms(1, 100)
    plan_p = obs.plan_cases(obs.delta_auc(a[0], tr, b[0], tr), power=0.8, effect=effect)
    assert plan_p.power >= 0.8
    aa, bb, tt = arms(400, plan_p.n_present)
    tt = jnp.asarray(tt)
    res = jax.vmap(lambda x, y: obs.delta_auc(x, tt, y, tt))(jnp.asarray(aa), jnp.asarray(bb))
    assert 0.68 <= float(jnp.mean(res.p_value < 0.05)) <= 0.92  # 400 studies: SE 0.02


def test_plan_cases_mrmc_scales_case_variance_and_keeps_the_reader_floor():
    rng = np.random.default_rng(3)
    x, truth = _studies(rng, 1, 6, 60, 60)
    pilot = obs.orh(x[0], truth)
    a = max(pilot.var - pilot.cov1 - pilot.cov2 + pilot.cov3, 0.0)
    floor = math.sqrt(2 * max(pilot.ms_tr - a, 0.0) / 6)
    target = 0.5 * (floor + pilot.se) if floor < pilot.se else None
    if target is not None and target > floor * 1.01:
        plan = obs.plan_cases(pilot, target_se=target)
        assert plan.se <= target * 1.001 and plan.n_readers == 6
        assert plan.n_present + plan.n_absent > 120
    more = obs.plan_cases(pilot, target_se=pilot.se * 2.0)  # a looser target needs fewer cases
    assert more.n_present + more.n_absent < 120
    with pytest.raises(
        ValueError, match=r"plan_cases: target_se=.* cannot be reached with 6 readers"
    ):
        obs.plan_cases(pilot, target_se=floor * 0.9 if floor > 0 else 1e-9)
    # more readers lower the floor
    plan12 = obs.plan_cases(pilot, target_se=pilot.se, n_readers=12)
    assert plan12.n_present + plan12.n_absent < 120


def test_bad_mrmc_inputs():
    rng = np.random.default_rng(4)
    x, truth = _studies(rng, 1, 3, 10, 10)
    x = x[0]
    with pytest.raises(ValueError, match=r"orh: unknown `covariance` 'delong1988'.*'delong'"):
        obs.orh(x, truth, covariance="delong1988")
    with pytest.raises(ValueError, match=r"orh: unknown `readers` 'mixed'"):
        obs.orh(x, truth, readers="mixed")
    with pytest.raises(ValueError, match=r"orh: `scores` must hold at least 2 tests"):
        obs.orh(x[:1], truth)
    with pytest.raises(ValueError, match=r"orh: random-reader analysis needs at least 2 readers"):
        obs.orh(x[:, :1], truth)
    with pytest.raises(ValueError, match=r"orh: `scores` must have 3 dimension\(s\)"):
        obs.orh(x[0], truth)
    with pytest.raises(
        ValueError, match=r"orh: `truth` must be a 1-D vector with one entry per case \(20\)"
    ):
        obs.orh(x, truth[:19])
    with pytest.raises(ValueError, match=r"orh: `scores` must be finite"):
        obs.orh(np.where(x > 2.0, np.nan, x), truth)
    pilot = obs.orh(x, truth)
    with pytest.raises(
        ValueError, match=r"plan_cases: give exactly one of `target_se` and `power`"
    ):
        obs.plan_cases(pilot)
    with pytest.raises(
        ValueError, match=r"plan_cases: a power target for a single AUC needs `effect`"
    ):
        obs.plan_cases(obs.delong(x[0, 0], truth), power=0.8)


def test_orh_single_interval_covers_the_reader_population_auc():
    """300 studies, 5 readers × (50 + 50) cases, one test: the 95 % interval of the reader mean
    (readers and cases random) covers the reader-population AUC; with identical readers it is
    the DeLong interval of their common AUC."""
    rng = np.random.default_rng(1)
    x, truth = _studies(rng, 300, 5, 50, 50)
    target = float(_population_auc(MU)[0])
    results = [obs.orh_single(xs[0], truth) for xs in x]
    cover = np.mean([r.lower <= target <= r.upper for r in results])
    # measured: 95.7 % (median df 11.4)
    assert 0.91 <= cover <= 0.985, cover
    assert all(r.auc_mean == pytest.approx(float(np.mean(r.auc))) for r in results)
    same = np.repeat(x[0, 0, :1], 3, axis=0)
    one = obs.delong(same[0], truth)
    res = obs.orh_single(same, truth)
    assert math.isinf(res.df) and res.ms_r == 0.0
    assert res.se == pytest.approx(float(one.se), rel=1e-9)
    assert res.lower == pytest.approx(float(one.lower), rel=1e-9)
    with pytest.raises(ValueError, match=r"at least 2 readers"):
        obs.orh_single(x[0, 0, :1], truth)
