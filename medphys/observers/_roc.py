"""ROC statistics on observer scores: empirical AUC, DeLong variance and covariance, bootstrap
intervals, paired ΔAUC, and the d′ ↔ AUC conversion.

Conventions: ``scores`` is a 1-D array with one rating per case (higher = more suspicious of a
signal), ``truth`` a boolean vector of the same length (True = signal present). The empirical AUC is
the Mann–Whitney statistic with ties counted one half,

    AUC = 1/(n₁ n₀) Σᵢ Σⱼ ψ(xᵢ, yⱼ),   ψ(x, y) = 1 if x > y, ½ if x = y, 0 otherwise,

over signal-present scores xᵢ and signal-absent scores yⱼ. DeLong's structural components are
V₁₀(xᵢ) = 1/n₀ Σⱼ ψ(xᵢ, yⱼ) and V₀₁(yⱼ) = 1/n₁ Σᵢ ψ(xᵢ, yⱼ); with S₁₀ and S₀₁ their sample
(co)variances, Var(AUC) = S₁₀/n₁ + S₀₁/n₀. Everything is computed with sorts and binary searches
(O(n log n)) and masks, so the functions jit and vmap over studies; the class sizes are data, not
shapes.

References:
    E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, "Comparing the areas under two or more
    correlated receiver operating characteristic curves: a nonparametric approach",
    Biometrics 44(3):837–845 (1988).
    H. H. Barrett, K. J. Myers, *Foundations of Image Science*, Wiley (2004), ch. 13–14.
    B. Efron, R. J. Tibshirani, *An Introduction to the Bootstrap*, Chapman & Hall (1993).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jax.scipy.special import erfc
from jax.scipy.stats import norm
from jaxtyping import Array, Bool, Float

from .._checks import is_concrete
from . import _checks as chk


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AUCResult:
    """An AUC estimate with its variance and a two-sided confidence interval.

    Attributes:
        auc: () empirical (Mann–Whitney) AUC.
        variance: () estimated variance of ``auc`` (DeLong, or the bootstrap variance).
        se: () ``sqrt(variance)``.
        lower, upper: () confidence limits at ``level`` (normal for DeLong, clipped to [0, 1];
            percentile for the bootstrap).
        s10, s01: () DeLong's structural-component variances S₁₀ and S₀₁ (kept for sizing:
            ``variance = s10 / n_present + s01 / n_absent``).
        n_present, n_absent: () class sizes.
        level: confidence level (static).
        method: ``"delong"`` or ``"bootstrap"`` (static).
    """

    auc: Float[Array, ""]
    variance: Float[Array, ""]
    se: Float[Array, ""]
    lower: Float[Array, ""]
    upper: Float[Array, ""]
    s10: Float[Array, ""]
    s01: Float[Array, ""]
    n_present: Array
    n_absent: Array
    level: float = dataclasses.field(metadata={"static": True}, default=0.95)
    method: str = dataclasses.field(metadata={"static": True}, default="delong")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DeltaAUCResult:
    """A paired difference ΔAUC = AUC_b − AUC_a on the same cases, with DeLong's covariance.

    Attributes:
        delta: () ``auc_b − auc_a``.
        variance, se: () Var(Δ) = Var_a + Var_b − 2 Cov_ab (DeLong) and its square root.
        lower, upper: () normal confidence limits at ``level``.
        z: () ``delta / se`` (0 when ``se`` is 0).
        p_value: () two-sided p-value of H₀: Δ = 0 under the normal approximation.
        auc_a, auc_b: () the two AUCs.
        covariance: (2, 2) DeLong covariance of (auc_a, auc_b).
        s10, s01: () structural-component variances of the difference (V₁₀ᵇ − V₁₀ᵃ, V₀₁ᵇ − V₀₁ᵃ),
            so ``variance = s10 / n_present + s01 / n_absent`` (used for sizing).
        n_present, n_absent: () class sizes.
        level: confidence level (static).
    """

    delta: Float[Array, ""]
    variance: Float[Array, ""]
    se: Float[Array, ""]
    lower: Float[Array, ""]
    upper: Float[Array, ""]
    z: Float[Array, ""]
    p_value: Float[Array, ""]
    auc_a: Float[Array, ""]
    auc_b: Float[Array, ""]
    covariance: Float[Array, "2 2"]
    s10: Float[Array, ""]
    s01: Float[Array, ""]
    n_present: Array
    n_absent: Array
    level: float = dataclasses.field(metadata={"static": True}, default=0.95)


# --------------------------------------------------------------------------------------------
# cores (no checks; traced)


def _tie_orders(s: Array, truth: Array) -> tuple[Array, Array]:
    """Two sort orders of the cases by score: ties broken absent-first (A) and present-first (B)."""
    return jnp.lexsort((truth, s)), jnp.lexsort((~truth, s))


def _components(
    scores: Float[Array, "k n"], truth: Bool[Array, " n"]
) -> tuple[Array, Array, Array, Array, Array]:
    """AUCs (k,), V₁₀ and V₀₁ (k, n; meaningful on positives / negatives), n₁, n₀.

    Two sorts per score set, one with tied signal-absent cases first and one with them last;
    running counts along each give, at a signal-present case, the signal-absent cases below it and
    below-or-tied (and conversely), so ties count ½ without any pairwise comparison.
    """
    n = scores.shape[-1]
    dtype = scores.dtype
    w1 = truth.astype(dtype)
    n1 = jnp.sum(w1)
    n0 = n - n1

    def one(s: Array) -> tuple[Array, Array]:
        ord_a, ord_b = _tie_orders(s, truth)
        p_a, p_b = w1[ord_a], w1[ord_b]
        c = jnp.cumsum(jnp.stack([1.0 - p_a, p_a, 1.0 - p_b, p_b]), axis=1)
        neg_leq, pos_lt = c[0], c[1]  # order A: tied absent cases precede, tied present follow
        neg_lt, pos_leq = c[2], c[3]  # order B: the reverse
        rows = jnp.arange(4)[:, None]
        cols = jnp.stack([ord_a, ord_b, ord_a, ord_b])
        vals = jnp.stack([neg_leq, neg_lt, pos_lt, pos_leq])
        v = jnp.zeros((4, n), dtype).at[rows, cols].set(vals)
        v10 = 0.5 * (v[0] + v[1]) / n0
        v01 = 0.5 * ((n1 - v[3]) + (n1 - v[2])) / n1
        return v10, v01

    v10, v01 = jax.vmap(one)(scores)
    auc = jnp.sum(v10 * w1[None, :], axis=-1) / n1
    return auc, v10, v01, n1, n0


def _delong_cov(
    scores: Float[Array, "k n"], truth: Bool[Array, " n"]
) -> tuple[Array, Array, Array, Array, Array, Array]:
    """AUCs, their DeLong covariance (k, k), S₁₀ and S₀₁ (k, k), n₁, n₀."""
    auc, v10, v01, n1, n0 = _components(scores, truth)
    w1 = truth.astype(scores.dtype)[None, :]
    d10 = (v10 - auc[:, None]) * w1
    d01 = (v01 - auc[:, None]) * (1.0 - w1)
    s10 = d10 @ d10.T / (n1 - 1.0)
    s01 = d01 @ d01.T / (n0 - 1.0)
    return auc, s10 / n1 + s01 / n0, s10, s01, n1, n0


def _jackknife_cov(scores: Float[Array, "k n"], truth: Bool[Array, " n"]) -> tuple[Array, Array]:
    """AUCs and their leave-one-case-out jackknife covariance (k, k).

    The leave-one-out AUCs have closed forms: without positive i, (n₁ AUC − V₁₀(xᵢ))/(n₁ − 1);
    without negative j, (n₀ AUC − V₀₁(yⱼ))/(n₀ − 1).
    """
    auc, v10, v01, n1, n0 = _components(scores, truth)
    n = scores.shape[-1]
    loo = jnp.where(
        truth[None, :],
        (n1 * auc[:, None] - v10) / (n1 - 1.0),
        (n0 * auc[:, None] - v01) / (n0 - 1.0),
    )
    d = loo - jnp.mean(loo, axis=-1, keepdims=True)
    return auc, (n - 1.0) / n * (d @ d.T)


_delong_cov_jit = jax.jit(_delong_cov)
_jackknife_cov_jit = jax.jit(_jackknife_cov)


@jax.jit
def _delong_core(scores: Array, truth: Array, z: Array) -> AUCResult:
    auc, cov, s10, s01, n1, n0 = _delong_cov(scores[None, :], truth)
    a, var = auc[0], cov[0, 0]
    se = jnp.sqrt(var)
    lower = jnp.clip(a - z * se, 0.0, 1.0)
    upper = jnp.clip(a + z * se, 0.0, 1.0)
    return AUCResult(a, var, se, lower, upper, s10[0, 0], s01[0, 0], n1, n0)


@jax.jit
def _delta_core(scores: Array, truth: Array, z: Array) -> tuple[Array, ...]:
    auc, cov, s10, s01, n1, n0 = _delong_cov(scores, truth)
    contrast = jnp.array([-1.0, 1.0], dtype=scores.dtype)
    delta = auc[1] - auc[0]
    var = contrast @ cov @ contrast
    se = jnp.sqrt(var)
    zs = jnp.where(se > 0, delta / jnp.where(se > 0, se, 1.0), 0.0)
    p = erfc(jnp.abs(zs) / jnp.sqrt(2.0))
    s10_d = contrast @ s10 @ contrast
    s01_d = contrast @ s01 @ contrast
    lower, upper = delta - z * se, delta + z * se
    return (delta, var, se, lower, upper, zs, p, auc[0], auc[1], cov, s10_d, s01_d, n1, n0)


# --------------------------------------------------------------------------------------------
# public functions


def _pair(call: str, scores: Any, truth: Any, *, minimum: int = 1) -> tuple[Array, Array]:
    s = chk.scores(call, "scores", scores)
    t = chk.truth(call, "truth", truth, s.shape[0], minimum=minimum)
    return s, t


def auc(scores: Float[Array, " n"], truth: Bool[Array, " n"]) -> Float[Array, ""]:
    """Empirical area under the ROC curve (Mann–Whitney U / (n₁ n₀), ties counted ½).

    Args:
        scores: (n,) one score per case; higher means "signal present" is more likely.
        truth: (n,) True (or 1) where the signal is present.

    Returns:
        () the AUC.

    Raises:
        ValueError: non-finite scores, a truth vector of another length or with a class missing.

    Example:
        >>> auc(jnp.array([0.1, 0.4, 0.35, 0.8]), jnp.array([False, False, True, True]))
        Array(0.75, dtype=float32)

    References:
        H. B. Mann, D. R. Whitney, Ann. Math. Statist. 18(1):50–60 (1947); Barrett & Myers (2004)
        §13.2.
    """
    s, t = _pair("auc", scores, truth)
    return _delong_core(s, t, jnp.zeros((), s.dtype)).auc  # shares the DeLong compilation


def delong(
    scores: Float[Array, " n"], truth: Bool[Array, " n"], *, level: float = 0.95
) -> AUCResult:
    """AUC with DeLong's variance and a normal confidence interval (clipped to [0, 1]).

    Args:
        scores: (n,) one score per case.
        truth: (n,) True where the signal is present; at least 2 cases per class.
        level: two-sided confidence level.

    Returns:
        `AUCResult` with ``method="delong"``.

    Raises:
        ValueError: non-finite scores, mismatched truth, fewer than 2 cases in a class, `level`
            outside (0, 1).

    References:
        DeLong, DeLong & Clarke-Pearson, Biometrics 44:837–845 (1988).
    """
    lv = chk.level("delong", level)
    s, t = _pair("delong", scores, truth, minimum=2)
    z = jnp.asarray(scipy.stats.norm.ppf(0.5 + lv / 2), dtype=s.dtype)
    return dataclasses.replace(_delong_core(s, t, z), level=lv)


def delong_covariance(
    scores: Float[Array, "k n"], truth: Bool[Array, " n"]
) -> tuple[Float[Array, " k"], Float[Array, "k k"]]:
    """AUCs of k score sets on the same cases and their DeLong covariance matrix.

    Args:
        scores: (k, n) k readers / modalities scoring the same n cases.
        truth: (n,) True where the signal is present; at least 2 cases per class.

    Returns:
        ``(aucs, covariance)`` of shapes (k,) and (k, k).

    References:
        DeLong et al., Biometrics 44:837–845 (1988), eq. (2)–(4).
    """
    s = chk.scores("delong_covariance", "scores", scores, ndim=2)
    t = chk.truth("delong_covariance", "truth", truth, s.shape[1], minimum=2)
    auc_, cov, *_ = _delong_cov_jit(s, t)
    return auc_, cov


def jackknife_covariance(
    scores: Float[Array, "k n"], truth: Bool[Array, " n"]
) -> tuple[Float[Array, " k"], Float[Array, "k k"]]:
    """AUCs of k score sets on the same cases and their leave-one-case-out jackknife covariance.

    Args:
        scores: (k, n).
        truth: (n,) at least 2 cases per class.

    Returns:
        ``(aucs, covariance)``: (k,), (k, k), covariance ``(n−1)/n Σ (θ₍ᵢ₎ − θ̄)(θ₍ᵢ₎ − θ̄)ᵀ``.

    References:
        S. L. Hillis, K. S. Berbaum, C. E. Metz, "Recent developments in the Dorfman-Berbaum-Metz
        procedure for multireader ROC study analysis", Acad. Radiol. 15:647–661 (2008).
    """
    s = chk.scores("jackknife_covariance", "scores", scores, ndim=2)
    t = chk.truth("jackknife_covariance", "truth", truth, s.shape[1], minimum=2)
    return _jackknife_cov_jit(s, t)


def bootstrap_auc(
    key: Array,
    scores: Float[Array, " n"],
    truth: Bool[Array, " n"],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
) -> AUCResult:
    """AUC with a stratified bootstrap percentile interval.

    Each replicate resamples the signal-present and the signal-absent cases separately, with
    replacement, keeping the class sizes. The variance is the replicates' variance; ``s10`` and
    ``s01`` are DeLong's (for sizing).

    Args:
        key: `jax.random` key.
        scores: (n,) one score per case.
        truth: (n,) at least 2 cases per class.
        n_boot: number of bootstrap replicates.
        level: two-sided confidence level.

    Returns:
        `AUCResult` with ``method="bootstrap"``.

    References:
        Efron & Tibshirani (1993), ch. 13 (percentile interval).
    """
    lv = chk.level("bootstrap_auc", level)
    nb = chk.positive_int("bootstrap_auc", "n_boot", n_boot, minimum=2)
    s, t = _pair("bootstrap_auc", scores, truth, minimum=2)
    z = jnp.asarray(scipy.stats.norm.ppf(0.5 + lv / 2), dtype=s.dtype)
    base = _delong_core(s, t, z)
    reps = _bootstrap_core(key, s, t, nb)
    q = jnp.quantile(reps, jnp.array([(1 - lv) / 2, (1 + lv) / 2], dtype=s.dtype))
    var = jnp.var(reps, ddof=1)
    return dataclasses.replace(
        base, variance=var, se=jnp.sqrt(var), lower=q[0], upper=q[1], level=lv, method="bootstrap"
    )


@functools.partial(jax.jit, static_argnums=3)
def _bootstrap_core(key: Array, scores: Array, truth: Array, n_boot: int) -> Array:
    """Replicate AUCs as weighted Mann–Whitney sums over the once-sorted cases: O(n) each."""
    n = scores.shape[0]
    dtype = scores.dtype
    ord_a, ord_b = _tie_orders(scores, truth)
    p_a, p_b = truth[ord_a], truth[ord_b]
    members = jnp.argsort(~truth, stable=True)  # cases, signal-present first
    n1 = jnp.sum(truth)
    n0 = n - n1
    slot_present = jnp.arange(n) < n1

    def one(k: Array) -> Array:
        u = jax.random.uniform(k, (n,), dtype=dtype)
        i_pos = jnp.minimum(jnp.floor(u * n1).astype(n1.dtype), n1 - 1)
        i_neg = n1 + jnp.minimum(jnp.floor(u * n0).astype(n1.dtype), n0 - 1)
        w = jnp.zeros((n,), dtype).at[members[jnp.where(slot_present, i_pos, i_neg)]].add(1.0)
        w_a, w_b = w[ord_a], w[ord_b]
        c = jnp.cumsum(jnp.stack([jnp.where(p_a, 0.0, w_a), jnp.where(p_b, 0.0, w_b)]), axis=1)
        neg_lt = jnp.zeros((n,), dtype).at[ord_b].set(c[1])[ord_a]
        return jnp.sum(jnp.where(p_a, w_a, 0.0) * (c[0] + neg_lt)) / (2.0 * n1 * n0)

    batch = max(d for d in range(1, 129) if n_boot % d == 0)  # no remainder pass when possible
    return jax.lax.map(one, jax.random.split(key, n_boot), batch_size=batch if batch >= 16 else 128)


def delta_auc(
    scores_a: Float[Array, " n"],
    truth_a: Bool[Array, " n"],
    scores_b: Float[Array, " n"],
    truth_b: Bool[Array, " n"],
    *,
    level: float = 0.95,
) -> DeltaAUCResult:
    """Paired ΔAUC = AUC_b − AUC_a of two arms scored on the same cases (DeLong covariance).

    Args:
        scores_a, scores_b: (n,) scores of arm a and arm b on the same n cases, in the same order.
        truth_a, truth_b: (n,) their truth vectors; they must be identical (same cases).
        level: two-sided confidence level.

    Returns:
        `DeltaAUCResult`.

    Raises:
        ValueError: arms of different lengths, different truth vectors, non-finite scores, fewer
            than 2 cases in a class.

    References:
        DeLong et al., Biometrics 44:837–845 (1988).
    """
    call = "delta_auc"
    lv = chk.level(call, level)
    sa = chk.scores(call, "scores_a", scores_a)
    sb = chk.scores(call, "scores_b", scores_b)
    if sa.shape != sb.shape:
        raise ValueError(
            f"{chk.where(call)}: the two arms must score the same cases: `scores_a` has "
            f"{sa.shape[0]} cases and `scores_b` has {sb.shape[0]}"
        )
    ta = chk.truth(call, "truth_a", truth_a, sa.shape[0], minimum=2)
    tb = chk.truth(call, "truth_b", truth_b, sb.shape[0], minimum=2)
    if is_concrete(truth_a, truth_b):
        differ = np.flatnonzero(np.asarray(ta) != np.asarray(tb))
        if differ.size:
            raise ValueError(
                f"{chk.where(call)}: `truth_a` and `truth_b` must be the same case set in the same "
                f"order; they differ at {differ.size} case(s), first at index {int(differ[0])}"
            )
    z = jnp.asarray(scipy.stats.norm.ppf(0.5 + lv / 2), dtype=sa.dtype)
    out = _delta_core(jnp.stack([sa, sb]), ta, z)
    return DeltaAUCResult(*out, level=lv)


def dprime(scores: Float[Array, " n"], truth: Bool[Array, " n"]) -> Float[Array, ""]:
    """Detectability index (SNR) of the scores: (μ₁ − μ₀) / sqrt((σ₁² + σ₀²) / 2).

    Sample means and unbiased (ddof=1) sample variances of each class.

    Args:
        scores: (n,) scores.
        truth: (n,) at least 2 cases per class.

    Returns:
        () d′.

    References:
        Barrett & Myers (2004), §13.2.6, eq. (13.40).
    """
    s, t = _pair("dprime", scores, truth, minimum=2)
    return _dprime_core(s, t)[0]


def dprime_se(scores: Float[Array, " n"], truth: Bool[Array, " n"]) -> Float[Array, ""]:
    """Delta-method standard error of `dprime` for Gaussian scores.

    With Δ = μ₁ − μ₀ and σ² = (σ₁² + σ₀²)/2: Var(d̂) ≈ (σ₁²/n₁ + σ₀²/n₀)/σ²
    + d′² (σ₁⁴/(n₁−1) + σ₀⁴/(n₀−1)) / (8 σ⁴).

    Args:
        scores: (n,) scores.
        truth: (n,) at least 2 cases per class.

    Returns:
        () the estimated standard error of d′.
    """
    s, t = _pair("dprime_se", scores, truth, minimum=2)
    return _dprime_core(s, t)[1]


@jax.jit
def _dprime_core(scores: Array, truth: Array) -> tuple[Array, Array]:
    w = truth.astype(scores.dtype)
    n1 = jnp.sum(w)
    n0 = jnp.sum(1.0 - w)
    m1 = jnp.sum(w * scores) / n1
    m0 = jnp.sum((1.0 - w) * scores) / n0
    v1 = jnp.sum(w * (scores - m1) ** 2) / (n1 - 1.0)
    v0 = jnp.sum((1.0 - w) * (scores - m0) ** 2) / (n0 - 1.0)
    var = 0.5 * (v1 + v0)
    d = (m1 - m0) / jnp.sqrt(var)
    var_d = (v1 / n1 + v0 / n0) / var + d * d * (v1 * v1 / (n1 - 1.0) + v0 * v0 / (n0 - 1.0)) / (
        8.0 * var * var
    )
    return d, jnp.sqrt(var_d)


def auc_from_dprime(dprime: Float[Array, "*batch"]) -> Float[Array, "*batch"]:
    """AUC = Φ(d′/√2): the area of equal-variance Gaussian scores with detectability d′.

    References:
        Barrett & Myers (2004), eq. (13.83).
    """
    d = jnp.asarray(dprime)
    return norm.cdf(d / jnp.sqrt(jnp.asarray(2.0, dtype=jnp.result_type(d, float))))


def dprime_from_auc(auc: Float[Array, "*batch"]) -> Float[Array, "*batch"]:
    """d′ = √2 Φ⁻¹(AUC), the inverse of `auc_from_dprime`."""
    a = jnp.asarray(auc)
    return jnp.sqrt(jnp.asarray(2.0, dtype=jnp.result_type(a, float))) * norm.ppf(a)
