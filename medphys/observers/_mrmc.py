"""Multi-reader multi-case (MRMC) analysis by Obuchowski–Rockette–Hillis, and case-count planning.

Readers are observers that differ in what makes them vary (internal noise, training sets,
channels); tests (modalities, protocols, arms) are what the study compares. ``scores`` has shape
``(tests, readers, cases)``: every reader scores every case under every test. The reader × test
AUCs θᵢⱼ are empirical (Mann–Whitney); their error covariance over cases comes from DeLong's
structural components or from the leave-one-case-out jackknife, and is summarised by the
Obuchowski–Rockette averages

- ``var``: Var(θᵢⱼ) (diagonal),
- ``cov1``: same reader, different tests,
- ``cov2``: different readers, same test,
- ``cov3``: different readers, different tests.

Random readers and random cases (Hillis 2007, 2008): with MS(T), MS(T×R) the test and
test-by-reader mean squares of the θᵢⱼ,

    F = MS(T) / [MS(T×R) + r·max(cov2 − cov3, 0)],
    ddf_H = [MS(T×R) + r·max(cov2 − cov3, 0)]² / {MS(T×R)² / [(t − 1)(r − 1)]},

F ~ F(t − 1, ddf_H) under H₀, and the interval for θᵢ. − θ₀. is
±t_{1−α/2, ddf_H} · sqrt(2/r · [MS(T×R) + r·max(cov2 − cov3, 0)]).
Fixed readers: χ² test with denominator var − cov1 + (r − 1)·max(cov2 − cov3, 0) and normal
intervals (df = ∞). One test's reader-averaged AUC (`orh_single`): variance
(MS(R) + r·max(cov2, 0)) / r, df = (r − 1)·[(MS(R) + r·max(cov2, 0)) / MS(R)]².

Planning (`plan_cases`): for a fixed ratio of signal-absent to signal-present cases, every
case-sampling variance and covariance scales as 1/N (N = total cases): DeLong's
Var = S₁₀/n₁ + S₀₁/n₀, and the OR error terms var, cov1, cov2, cov3 estimated at N₀ become
(N₀/N) × their value at N. The reader-by-test variance σ²_TR = MS(T×R) − (var − cov1 − cov2 + cov3)
(truncated at 0) does not shrink with cases, so with r readers the ΔAUC standard error has a floor
sqrt(2 σ²_TR / r) that more cases cannot pass.

References:
    N. A. Obuchowski, H. E. Rockette, "Hypothesis testing of diagnostic accuracy for multiple
    readers and multiple tests: an ANOVA approach with dependent observations", Commun. Stat.
    Simul. Comput. 24(2):285–308 (1995).
    S. L. Hillis, "A comparison of denominator degrees of freedom methods for multiple observer ROC
    analysis", Stat. Med. 26(3):596–619 (2007).
    S. L. Hillis, K. S. Berbaum, C. E. Metz, "Recent developments in the Dorfman-Berbaum-Metz
    procedure for multireader ROC study analysis", Acad. Radiol. 15(5):647–661 (2008).
    S. L. Hillis, K. S. Berbaum, "Power estimation for the Dorfman-Berbaum-Metz method",
    Acad. Radiol. 11(11):1260–1273 (2004).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.stats
from jaxtyping import Array, Bool, Float

from . import _checks as chk
from ._roc import AUCResult, DeltaAUCResult, _delong_cov_jit, _jackknife_cov_jit

COVARIANCES = ("delong", "jackknife")
READERS = ("random", "fixed")


@dataclasses.dataclass(frozen=True)
class MRMCResult:
    """Obuchowski–Rockette–Hillis analysis of t tests × r readers on the same cases.

    Attributes:
        auc: (t, r) empirical AUC of each reader under each test.
        auc_mean: (t,) reader-averaged AUC of each test.
        delta: (t − 1,) ``auc_mean[k] − auc_mean[0]`` for k = 1 … t − 1.
        se: standard error of each difference in ``delta`` (the same for all pairs).
        lower, upper: (t − 1,) confidence limits of ``delta`` at ``level``.
        df: denominator degrees of freedom (Hillis 2007 ddf_H; ``inf`` for fixed readers or when
            MS(T×R) is 0).
        statistic: F statistic (random readers) or χ²/(t − 1) (fixed readers) of H₀: equal AUCs.
        p_value: its p-value.
        var, cov1, cov2, cov3: Obuchowski–Rockette error variance and covariances.
        ms_t, ms_tr: test and test-by-reader mean squares.
        n_present, n_absent: class sizes.
        level: confidence level.
        readers: ``"random"`` or ``"fixed"``.
        covariance: ``"delong"`` or ``"jackknife"``.
    """

    auc: np.ndarray
    auc_mean: np.ndarray
    delta: np.ndarray
    se: float
    lower: np.ndarray
    upper: np.ndarray
    df: float
    statistic: float
    p_value: float
    var: float
    cov1: float
    cov2: float
    cov3: float
    ms_t: float
    ms_tr: float
    n_present: int
    n_absent: int
    level: float
    readers: str
    covariance: str

    @property
    def n_readers(self) -> int:
        return int(self.auc.shape[1])

    @property
    def n_tests(self) -> int:
        return int(self.auc.shape[0])


@dataclasses.dataclass(frozen=True)
class CasePlan:
    """Numbers of cases that reach a target, with what they are predicted to give.

    Attributes:
        n_present, n_absent: signal-present and signal-absent cases.
        se: predicted standard error of the AUC (or ΔAUC) at those numbers.
        power: predicted power for the given effect (``nan`` when no effect was given).
        n_readers: readers the plan assumes (1 for single-reader pilots).
    """

    n_present: int
    n_absent: int
    se: float
    power: float
    n_readers: int = 1


def orh(
    scores: Float[Array, "tests readers cases"],
    truth: Bool[Array, " cases"],
    *,
    covariance: str = "delong",
    readers: str = "random",
    level: float = 0.95,
) -> MRMCResult:
    """Obuchowski–Rockette–Hillis MRMC analysis of reader-averaged AUC differences.

    Args:
        scores: (t, r, n) scores of r readers under t ≥ 2 tests on the same n cases.
        truth: (n,) True where the signal is present; at least 2 cases per class.
        covariance: ``"delong"`` (structural components) or ``"jackknife"`` (leave one case out)
            for the error covariance of the AUCs.
        readers: ``"random"`` (generalise to the reader population; needs r ≥ 2) or ``"fixed"``
            (these readers only).
        level: two-sided confidence level of the ΔAUC intervals.

    Returns:
        `MRMCResult`: ``delta[k]`` is test k minus test 0.

    Raises:
        ValueError: unknown `covariance` or `readers`, fewer than 2 tests, fewer than 2 readers
            with random readers, non-finite scores, a truth vector that does not fit.

    Example:
        >>> res = orh(scores, truth)   # scores: (2 tests, 5 readers, 200 cases)
        >>> res.delta[0], res.lower[0], res.upper[0], res.df, res.p_value

    References:
        Obuchowski & Rockette (1995); Hillis, Stat. Med. 26:596–619 (2007); Hillis, Berbaum &
        Metz, Acad. Radiol. 15:647–661 (2008).
    """
    call = "orh"
    cov_kind = chk.choice(call, "covariance", covariance, COVARIANCES)
    reader_kind = chk.choice(call, "readers", readers, READERS)
    lv = chk.level(call, level)
    s = chk.scores(call, "scores", scores, ndim=3)
    t, r, n = s.shape
    if t < 2:
        raise ValueError(
            f"{chk.where(call)}: `scores` must hold at least 2 tests along axis 0 (got shape "
            f"{tuple(s.shape)}); for one test use `delong`"
        )
    if reader_kind == "random" and r < 2:
        raise ValueError(
            f"{chk.where(call)}: random-reader analysis needs at least 2 readers along axis 1 "
            f"(got shape {tuple(s.shape)}); use readers='fixed' or `delta_auc` for one reader"
        )
    tr = chk.truth(call, "truth", truth, n, minimum=2)
    flat = s.reshape(t * r, n)
    if cov_kind == "delong":
        auc_, cov, *_ = _delong_cov_jit(flat, tr)
    else:
        auc_, cov = _jackknife_cov_jit(flat, tr)
    n1 = int(np.count_nonzero(np.asarray(tr)))
    return _orh_finish(
        np.asarray(auc_, dtype=float).reshape(t, r),
        np.asarray(cov, dtype=float),
        n1=n1,
        n0=n - n1,
        readers=reader_kind,
        covariance=cov_kind,
        level=lv,
    )


def _or_covariances(cov: np.ndarray, t: int, r: int) -> tuple[float, float, float, float]:
    """Average the (t·r)² covariance into var, cov1, cov2, cov3 (index = test · r + reader)."""
    test = np.repeat(np.arange(t), r)
    reader = np.tile(np.arange(r), t)
    same_t = test[:, None] == test[None, :]
    same_r = reader[:, None] == reader[None, :]

    def avg(mask: np.ndarray) -> float:
        return float(cov[mask].mean()) if mask.any() else 0.0

    return (
        avg(same_t & same_r),
        avg(~same_t & same_r),
        avg(same_t & ~same_r),
        avg(~same_t & ~same_r),
    )


def _quantile(level: float, df: float) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` (the normal's at ``inf``)."""
    if math.isfinite(df):
        return float(scipy.stats.t.ppf(0.5 + level / 2, df))
    return float(scipy.stats.norm.ppf(0.5 + level / 2))


def _orh_finish(
    theta: np.ndarray,
    cov: np.ndarray,
    *,
    n1: int,
    n0: int,
    readers: str,
    covariance: str,
    level: float,
) -> MRMCResult:
    t, r = theta.shape
    var, cov1, cov2, cov3 = _or_covariances(cov, t, r)
    mean_t = theta.mean(axis=1)
    mean_r = theta.mean(axis=0)
    grand = theta.mean()
    ms_t = r * float(np.sum((mean_t - grand) ** 2)) / (t - 1)
    resid = theta - mean_t[:, None] - mean_r[None, :] + grand
    ms_tr = float(np.sum(resid**2)) / ((t - 1) * (r - 1)) if r > 1 else 0.0
    delta = mean_t[1:] - mean_t[0]
    shared = max(cov2 - cov3, 0.0)
    if readers == "random":
        den = ms_tr + r * shared
        df = den**2 / (ms_tr**2 / ((t - 1) * (r - 1))) if ms_tr > 0 else math.inf
        stat = ms_t / den if den > 0 else math.inf
        p = (
            float(scipy.stats.f.sf(stat, t - 1, df))
            if math.isfinite(df)
            else float(scipy.stats.chi2.sf(stat * (t - 1), t - 1))
        )
        q = _quantile(level, df)
    else:
        den = max(var - cov1 + (r - 1) * shared, 0.0)
        df = math.inf
        stat = ms_t / den if den > 0 else math.inf
        p = float(scipy.stats.chi2.sf(stat * (t - 1), t - 1))
        q = _quantile(level, math.inf)
    se = math.sqrt(2.0 * den / r)
    return MRMCResult(
        auc=theta,
        auc_mean=mean_t,
        delta=delta,
        se=se,
        lower=delta - q * se,
        upper=delta + q * se,
        df=float(df),
        statistic=float(stat),
        p_value=p,
        var=var,
        cov1=cov1,
        cov2=cov2,
        cov3=cov3,
        ms_t=ms_t,
        ms_tr=ms_tr,
        n_present=n1,
        n_absent=n0,
        level=level,
        readers=readers,
        covariance=covariance,
    )


@dataclasses.dataclass(frozen=True)
class ReaderMeanResult:
    """The reader-averaged AUC of one test with random readers and random cases.

    Attributes:
        auc: (r,) each reader's empirical AUC.
        auc_mean: their mean.
        se: its standard error, sqrt((MS(R) + r·max(cov2, 0)) / r).
        lower, upper: its confidence limits at ``level`` (t with ``df``).
        df: Hillis' single-test degrees of freedom, (r − 1)·[(MS(R) + r·max(cov2, 0)) / MS(R)]²
            (``inf`` when the readers agree exactly).
        ms_r: the reader mean square Σ (θⱼ − θ̄)² / (r − 1).
        var, cov2: the case-sampling variance of one reader's AUC and the covariance of two
            readers' (DeLong), averaged.
        level: confidence level.
    """

    auc: np.ndarray
    auc_mean: float
    se: float
    lower: float
    upper: float
    df: float
    ms_r: float
    var: float
    cov2: float
    level: float


def orh_single(
    scores: Float[Array, "readers cases"],
    truth: Bool[Array, " cases"],
    *,
    level: float = 0.95,
) -> ReaderMeanResult:
    """The reader-averaged AUC of one test and its interval, readers and cases random.

    Obuchowski & Rockette's variance of the reader mean (their eq. 2.3 for one test) with
    Hillis' estimate of the reader variance: Var(θ̄) = (MS(R) + r·max(cov2, 0)) / r, and a t
    interval with df = (r − 1)·[(MS(R) + r·max(cov2, 0)) / MS(R)]² (Hillis 2007). With readers
    that agree exactly (MS(R) = 0) it is the DeLong interval of their common AUC.

    Args:
        scores: (r, n) scores of r ≥ 2 readers on the same n cases.
        truth: (n,) True where the signal is present; at least 2 cases per class.
        level: two-sided confidence level.

    Raises:
        ValueError: fewer than 2 readers, non-finite scores, a truth vector that does not fit.
    """
    call = "orh_single"
    lv = chk.level(call, level)
    s = chk.scores(call, "scores", scores, ndim=2)
    r, n = s.shape
    if r < 2:
        raise ValueError(
            f"{chk.where(call)}: `scores` must hold at least 2 readers along axis 0 (got shape "
            f"{tuple(s.shape)}); for one reader use `delong`"
        )
    tr = chk.truth(call, "truth", truth, n, minimum=2)
    auc_, cov, *_ = _delong_cov_jit(s, tr)
    theta = np.asarray(auc_, dtype=float)
    cov = np.asarray(cov, dtype=float)
    var, _, cov2, _ = _or_covariances(cov, 1, r)
    mean = float(theta.mean())
    ms_r = float(np.sum((theta - mean) ** 2)) / (r - 1)
    total = ms_r + r * max(cov2, 0.0)
    se = math.sqrt(total / r)
    df = (r - 1) * (total / ms_r) ** 2 if ms_r > 0 else math.inf
    q = _quantile(lv, df)
    return ReaderMeanResult(
        auc=theta,
        auc_mean=mean,
        se=se,
        lower=mean - q * se,
        upper=mean + q * se,
        df=float(df),
        ms_r=ms_r,
        var=var,
        cov2=cov2,
        level=lv,
    )


# --------------------------------------------------------------------------------------------
# planning


def plan_cases(
    pilot: AUCResult | DeltaAUCResult | MRMCResult,
    *,
    target_se: float | None = None,
    power: float | None = None,
    effect: float | None = None,
    alpha: float = 0.05,
    ratio: float | None = None,
    n_readers: int | None = None,
) -> CasePlan:
    """Cases needed to reach a target standard error or power, from a pilot study's variances.

    Scaling (see the module docstring): single reader, ``Var = S₁₀/n₁ + S₀₁/n₀`` with the pilot's
    S₁₀, S₀₁ (AUC, or ΔAUC's for a `DeltaAUCResult`) and ``n₀ = ratio · n₁``; MRMC, the OR error
    terms scale as N_pilot / N at the pilot's class ratio and σ²_TR stays fixed.

    Give exactly one of `target_se` and `power`. For `power`, the two-sided level-`alpha` test of
    H₀: Δ = 0 must reach the given power for the difference `effect` (default: the pilot's ΔAUC;
    for an `AUCResult`, `effect` is AUC − AUC₀ and must be given). Single reader: normal
    approximation, SE = |effect| / (z_{1−α/2} + z_power). MRMC (random readers): the noncentral F
    with Hillis's ddf at each N (Hillis & Berbaum 2004), smallest N found by bisection.

    Args:
        pilot: `delong` / `bootstrap_auc` result, `delta_auc` result, or `orh` result.
        target_se: the standard error to reach.
        power: the power to reach, in (0, 1).
        effect: the true difference to detect (power only).
        alpha: two-sided significance level (power only).
        ratio: signal-absent per signal-present case (single reader; default: the pilot's).
        n_readers: readers in the planned MRMC study (default: the pilot's).

    Returns:
        `CasePlan`.

    Raises:
        ValueError: neither or both targets, a target that cannot be reached (an MRMC SE below the
            reader floor, with the floor in the message), a power target without an effect.
    """
    call = "plan_cases"
    if (target_se is None) == (power is None):
        raise ValueError(
            f"{chk.where(call)}: give exactly one of `target_se` and `power` "
            f"(got target_se={target_se}, power={power})"
        )
    if target_se is not None:
        target_se = chk.positive_float(call, "target_se", target_se)
    alpha = chk.level(call, alpha) if power is not None else alpha
    if power is not None:
        power = chk.level(call, power)
        if effect is None:
            if isinstance(pilot, AUCResult):
                raise ValueError(
                    f"{chk.where(call)}: a power target for a single AUC needs `effect` "
                    "(AUC − AUC under H₀, e.g. auc − 0.5)"
                )
            effect = float(pilot.delta if isinstance(pilot, DeltaAUCResult) else pilot.delta[0])
        effect = abs(chk.positive_float(call, "|effect|", abs(float(effect))))
    if isinstance(pilot, MRMCResult):
        if ratio is not None:
            raise ValueError(
                f"{chk.where(call)}: `ratio` applies to single-reader pilots; MRMC plans keep the "
                f"pilot's ratio ({pilot.n_absent}:{pilot.n_present})"
            )
        return _plan_mrmc(pilot, target_se, power, effect, alpha, n_readers)
    if not isinstance(pilot, (AUCResult, DeltaAUCResult)):
        raise TypeError(
            f"{chk.where(call)}: `pilot` must be an AUCResult, DeltaAUCResult or MRMCResult "
            f"(got {type(pilot).__name__})"
        )
    if n_readers is not None:
        raise ValueError(f"{chk.where(call)}: `n_readers` applies to MRMC (orh) pilots only")
    s10, s01 = float(pilot.s10), float(pilot.s01)
    kappa = (
        float(pilot.n_absent) / float(pilot.n_present)
        if ratio is None
        else chk.positive_float(call, "ratio", ratio)
    )
    per_present = s10 + s01 / kappa  # Var = per_present / n₁
    if target_se is None:
        z = scipy.stats.norm.ppf(1 - alpha / 2) + scipy.stats.norm.ppf(power)
        target_se = float(effect or 0.0) / z
    n1 = max(2, math.ceil(per_present / target_se**2))
    n0 = max(2, math.ceil(kappa * n1))
    se = math.sqrt(s10 / n1 + s01 / n0)
    pw = math.nan
    if effect is not None:
        zc = scipy.stats.norm.ppf(1 - alpha / 2)
        pw = float(scipy.stats.norm.sf(zc - effect / se) + scipy.stats.norm.cdf(-zc - effect / se))
    return CasePlan(n1, n0, se, pw)


def _mrmc_terms(pilot: MRMCResult, r: int, f: float) -> tuple[float, float, float]:
    """(denominator, expected MS(T×R), ddf) at case-scale factor f = N_pilot / N, r readers."""
    t = pilot.n_tests
    a = max(pilot.var - pilot.cov1 - pilot.cov2 + pilot.cov3, 0.0)
    sigma_tr = max(pilot.ms_tr - a, 0.0)
    shared = max(pilot.cov2 - pilot.cov3, 0.0)
    if pilot.readers == "fixed":
        den = f * max(pilot.var - pilot.cov1 + (r - 1) * shared, 0.0)
        return den, 0.0, math.inf
    ms_tr = sigma_tr + f * a
    den = ms_tr + r * f * shared
    df = den**2 / (ms_tr**2 / ((t - 1) * (r - 1))) if ms_tr > 0 else math.inf
    return den, ms_tr, df


def _mrmc_power(pilot: MRMCResult, r: int, f: float, effect: float, alpha: float) -> float:
    den, _, df = _mrmc_terms(pilot, r, f)
    lam = r * effect**2 / (2.0 * den)
    if math.isfinite(df):
        crit = scipy.stats.f.isf(alpha, 1, df)
        return float(scipy.stats.ncf.sf(crit, 1, df, lam))
    crit = scipy.stats.chi2.isf(alpha, 1)
    return float(scipy.stats.ncx2.sf(crit, 1, lam))


def _plan_mrmc(
    pilot: MRMCResult,
    target_se: float | None,
    power: float | None,
    effect: float | None,
    alpha: float,
    n_readers: int | None,
) -> CasePlan:
    call = "plan_cases"
    r = pilot.n_readers if n_readers is None else chk.positive_int(call, "n_readers", n_readers)
    if pilot.readers == "random" and r < 2:
        raise ValueError(f"{chk.where(call)}: random-reader plans need n_readers >= 2 (got {r})")
    n_pilot = pilot.n_present + pilot.n_absent
    frac = pilot.n_present / n_pilot

    def counts(f: float) -> tuple[int, int]:
        total = n_pilot / f
        n1 = max(2, math.ceil(frac * total))
        n0 = max(2, math.ceil((1 - frac) * total))
        return n1, n0

    def se_at(f: float) -> float:
        return math.sqrt(2.0 * _mrmc_terms(pilot, r, f)[0] / r)

    floor = se_at(0.0)
    if target_se is not None:
        if target_se <= floor:
            raise ValueError(
                f"{chk.where(call)}: target_se={target_se:.4g} cannot be reached with {r} readers: "
                f"reader variability alone gives SE {floor:.4g}; add readers or relax the target"
            )
        slope = se_at(1.0) ** 2 - floor**2  # SE² = floor² + f · slope
        f = (target_se**2 - floor**2) / slope if slope > 0 else math.inf
        n1, n0 = counts(min(f, n_pilot / 4.0))
    else:
        power = float(power or 0.0)
        effect = float(effect or 0.0)
        if _mrmc_power(pilot, r, 1e-9, effect, alpha) < power:
            raise ValueError(
                f"{chk.where(call)}: power {power} for effect {effect:.4g} cannot be reached with "
                f"{r} readers however many cases (reader-variability SE floor {floor:.4g}); add "
                "readers"
            )
        lo, hi = 1e-9, n_pilot / 4.0  # f bounds (f large = few cases)
        if _mrmc_power(pilot, r, hi, effect, alpha) >= power:
            lo = hi
        for _ in range(200):
            if hi / lo < 1 + 1e-6:
                break
            mid = math.sqrt(lo * hi)
            if _mrmc_power(pilot, r, mid, effect, alpha) >= power:
                lo = mid
            else:
                hi = mid
        n1, n0 = counts(lo)
    f_plan = n_pilot / (n1 + n0)
    pw = _mrmc_power(pilot, r, f_plan, effect, alpha) if effect is not None else math.nan
    return CasePlan(n1, n0, se_at(f_plan), pw, r)
