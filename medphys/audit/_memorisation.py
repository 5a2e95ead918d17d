"""Does a generator copy its training images? Nearest-neighbour, DCR and membership tests with controls.

`memorisation_audit(key, training, generated, held_out)` compares the generated images with the
training images and, as the reference of what "not copied" looks like, with held-out real images
of the same distribution. Every statistic is computed in pixel space and, when a ``features``
callable is given, again in that feature space. Every run also audits two controls, so that a
pass means something: a *positive control* (copies of training images with small perturbations:
must fail) and a *negative control* (real held-out images: must pass). The definitions and
default thresholds are listed in `medphys.audit`'s module docstring.

References:
    Yoon, Chung, Kim, Moon, Ye, "Diffusion probabilistic models generalize when they fail to
    memorize", ICML 2023 workshop; Gu, Du, Pang, Li, Lin, Wang, "On memorization in diffusion
    models", 2023 (the ℓ2 nearest-neighbour ratio d₁/d₂ < 1/3 rule).
    Carlini et al., "Extracting training data from diffusion models", USENIX Security 2023.
    Yale et al., "Generation and evaluation of privacy preserving synthetic health data",
    Neurocomputing 2020 (distance to closest record against a held-out set).
    Carlini et al., "Membership inference attacks from first principles", IEEE S&P 2022 (TPR
    at a low FPR).
    Dar, Kucuk, Hamdan, et al., "Investigating data memorization in 3D latent diffusion models
    for medical image synthesis", 2023; "Unconditional latent diffusion models memorize patient
    imaging data", 2024.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jaxtyping import Array, Float

__all__ = ["Criterion", "MemorisationReport", "SpaceResult", "memorisation_audit"]

from ._criterion import Criterion

_WHERE = "medphys.audit.memorisation_audit"

MIN_TRAINING = 20
MIN_GENERATED = 20
MIN_HELD_OUT = 40
MIN_NONMEMBERS_FOR_TPR = 100
COPY_FACTOR = 10.0  # d₁/d₂ below nndr_threshold / 10 is a near-exact copy: it always fails

# named random streams
_SPLIT, _MEMBERS, _CONTROL = 0, 1, 2

SUBJECTS = ("audited", "positive control", "negative control")


@dataclasses.dataclass(frozen=True)
class SpaceResult:
    """The statistics of one generated set (audited or control) in one space.

    Attributes:
        space: ``"pixels"`` or ``"features"``.
        subject: ``"audited"``, ``"positive control"`` or ``"negative control"``.
        ratio: ``(n_generated,)`` nearest-neighbour distance ratio d₁/d₂ to the training set.
        nearest: ``(n_generated,)`` index of each generated image's nearest training image.
        dcr: ``(n_generated,)`` distance to the closest training image (d₁).
        dcr_held_out: ``(n_reference,)`` the same for the held-out reference images.
        flagged: generated images with ``ratio < nndr_threshold``.
        extracted: distinct training images that are the nearest neighbour of a flagged image.
        dcr_threshold: the held-out DCRs' 5th percentile (their ``k``-th smallest,
            ``k = ⌈0.05 n_reference⌉``).
        dcr_close: generated images with DCR below ``dcr_threshold``.
        dcr_close_allowed: the largest count that passes (beta-binomial tail, see `medphys.audit`).
        auc: membership-inference ROC AUC (members: training, non-members: held-out).
        tpr_at_low_fpr: the highest TPR at FPR ≤ 1 %.
        auc_band: the half-width of the passing band around 0.5.
        criteria: the three pass/fail tests.
    """

    space: str
    subject: str
    nndr_threshold: float
    ratio: np.ndarray
    nearest: np.ndarray
    dcr: np.ndarray
    dcr_held_out: np.ndarray
    flagged: int
    extracted: int
    dcr_threshold: float
    dcr_close: int
    dcr_close_allowed: int
    auc: float
    tpr_at_low_fpr: float
    auc_band: float
    n_members: int
    criteria: tuple[Criterion, ...]

    @property
    def n_generated(self) -> int:
        return int(self.ratio.size)

    @property
    def flagged_fraction(self) -> float:
        return self.flagged / self.n_generated

    @property
    def passed(self) -> bool:
        """Every criterion passed."""
        return all(c.passed for c in self.criteria)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the per-image arrays as lists of flagged indices only)."""
        flagged = np.flatnonzero(self.ratio < self.nndr_threshold)
        return {
            "space": self.space,
            "subject": self.subject,
            "n_generated": self.n_generated,
            "n_members": self.n_members,
            "n_non_members": self.n_members,
            "n_reference": int(self.dcr_held_out.size),
            "nndr_min": float(np.min(self.ratio)),
            "nndr_median": float(np.median(self.ratio)),
            "flagged": self.flagged,
            "flagged_fraction": self.flagged_fraction,
            "flagged_indices": [int(i) for i in flagged],
            "flagged_nearest_training": [int(self.nearest[i]) for i in flagged],
            "extracted_training_images": self.extracted,
            "dcr_median_generated": float(np.median(self.dcr)),
            "dcr_median_held_out": float(np.median(self.dcr_held_out)),
            "dcr_held_out_p5": self.dcr_threshold,
            "dcr_close": self.dcr_close,
            "dcr_close_fraction": self.dcr_close / self.n_generated,
            "dcr_close_allowed": self.dcr_close_allowed,
            "mia_auc": self.auc,
            "mia_auc_band": self.auc_band,
            "mia_tpr_at_1pct_fpr": self.tpr_at_low_fpr,
            "criteria": [c.to_dict() for c in self.criteria],
            "passed": self.passed,
        }


@dataclasses.dataclass(frozen=True)
class MemorisationReport:
    """The audit of one generated set, with its controls, per space.

    Attributes:
        results: every `SpaceResult`, keyed by ``(space, subject)``.
        thresholds: the rules used (JSON-ready).
        sizes: the set sizes, including the held-out split.
        notes: caveats (e.g. too few non-members for the TPR at 1 % FPR to mean much).
        indices: the random draws: ``"negative_control"`` and ``"reference"`` (into
            ``held_out``), ``"members"`` (into ``training``), ``"positive_control"`` (the
            training images copied), ``"non_members"`` (into the reference half).
    """

    results: dict[tuple[str, str], SpaceResult]
    thresholds: dict[str, Any]
    sizes: dict[str, int]
    notes: tuple[str, ...]
    indices: dict[str, np.ndarray]

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(space for space, _ in self.results))

    def result(self, space: str = "pixels", subject: str = "audited") -> SpaceResult:
        """One space's statistics for the audited set or a control."""
        return self.results[(space, subject)]

    def control_problems(self) -> tuple[str, ...]:
        """Why the audit is not valid: controls that did not behave (empty when valid)."""
        out = []
        for space in self.spaces:
            if self.results[(space, "positive control")].passed:
                out.append(f"{space}: the positive control (perturbed training copies) passed")
            if not self.results[(space, "negative control")].passed:
                failed = [
                    c.name
                    for c in self.results[(space, "negative control")].criteria
                    if not c.passed
                ]
                out.append(
                    f"{space}: the negative control (held-out images) failed {', '.join(failed)}"
                )
        return tuple(out)

    @property
    def valid(self) -> bool:
        """Both controls behaved in every space (positive failed, negative passed)."""
        return not self.control_problems()

    @property
    def passed(self) -> bool:
        """The audit is valid and the generated set passed every criterion in every space."""
        return self.valid and all(self.result(s).passed for s in self.spaces)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``json.dumps(report.to_dict())``)."""
        return {
            "passed": self.passed,
            "valid": self.valid,
            "control_problems": list(self.control_problems()),
            "thresholds": dict(self.thresholds),
            "sizes": dict(self.sizes),
            "notes": list(self.notes),
            "indices": {k: [int(i) for i in v] for k, v in self.indices.items()},
            "results": [r.to_dict() for r in self.results.values()],
        }

    def describe(self) -> str:
        """A short table: one row per space and set, then the verdict."""
        verdict = (
            "PASSED"
            if self.passed
            else ("FAILED" if self.valid else "NOT VALID (controls misbehaved)")
        )
        s = self.sizes
        head = (
            f"Memorisation audit: {verdict}\n"
            f"training {s['training']}, generated {s['generated']}, held-out {s['held_out']} "
            f"({s['negative_control']} as negative control, {s['reference']} as reference and "
            f"non-members), members {s['members']}\n"
        )
        cols = (
            f"{'space':9} {'set':17} {'NNDR<thr':>12} {'extr':>5} {'DCR med gen/held':>17} "
            f"{'DCR<p5 (max)':>13} {'MIA AUC (band)':>15} {'TPR@1%':>7}  result"
        )
        rows = [cols]
        for r in self.results.values():
            rows.append(
                f"{r.space:9} {r.subject:17} "
                f"{f'{r.flagged}/{r.n_generated}':>7} {r.flagged_fraction:4.0%} {r.extracted:>5} "
                f"{f'{np.median(r.dcr):.3g}/{np.median(r.dcr_held_out):.3g}':>17} "
                f"{f'{r.dcr_close} ({r.dcr_close_allowed})':>13} "
                f"{f'{r.auc:.3f} (±{r.auc_band:.3f})':>15} {r.tpr_at_low_fpr:7.3f}  "
                f"{'pass' if r.passed else 'FAIL: ' + ', '.join(c.name for c in r.criteria if not c.passed)}"
            )
        t = self.thresholds
        rules = (
            f"rules: NNDR flagged fraction <= {t['max_flagged_fraction']:.0%} (d1/d2 < "
            f"{t['nndr_threshold']:.3g}) or not above the held-out reference's (one-sided "
            f"Fisher p >= {t['nndr_alpha']:g}); DCR count below the held-out 5th percentile within the "
            f"beta-binomial {t['dcr_alpha']:.0%} tail; |AUC - 0.5| <= max({t['auc_tolerance']}, "
            f"{t['auc_z']:.3g} sd of the null AUC)"
        )
        tail = [rules, *(f"not valid: {p}" for p in self.control_problems()), *self.notes]
        return head + "\n".join(rows) + "\n" + "\n".join(tail)


# --------------------------------------------------------------------------------------------
# distances


@functools.partial(jax.jit, static_argnames=("block",))
def _two_nearest_block(q: Array, refs: Array, valid: Array, *, block: int) -> tuple[Array, Array]:
    """Indices of the two nearest rows of ``refs`` for each row of ``q`` (squared Euclidean via
    ``|q|² + |r|² − 2 q·r``), scanning ``refs`` in blocks of ``block`` rows (``valid`` masks the
    padding)."""
    nq = q.shape[0]
    qq = jnp.sum(q * q, axis=1)
    r_blocks = refs.reshape(-1, block, refs.shape[1])
    v_blocks = valid.reshape(-1, block)
    starts = jnp.arange(r_blocks.shape[0], dtype=jnp.int32) * block

    def body(carry: tuple, xs: tuple) -> tuple:
        best_d, best_i = carry
        r, v, start = xs
        d = qq[:, None] + jnp.sum(r * r, axis=1)[None, :] - 2.0 * (q @ r.T)
        d = jnp.where(v[None, :], d, jnp.inf)
        neg, idx = jax.lax.top_k(-d, 2)
        cand_d = jnp.concatenate([best_d, -neg], axis=1)
        cand_i = jnp.concatenate([best_i, idx + start], axis=1)
        neg, pick = jax.lax.top_k(-cand_d, 2)
        return (-neg, jnp.take_along_axis(cand_i, pick, axis=1)), None

    init = (jnp.full((nq, 2), jnp.inf, q.dtype), jnp.zeros((nq, 2), jnp.int32))
    (_, best_i), _ = jax.lax.scan(body, init, (r_blocks, v_blocks, starts))
    return best_i[:, 0], best_i[:, 1]


@jax.jit
def _exact(q: Array, refs: Array, i1: Array, i2: Array) -> tuple[Array, Array]:
    d1 = jnp.sqrt(jnp.sum((q - refs[i1]) ** 2, axis=1))
    d2 = jnp.sqrt(jnp.sum((q - refs[i2]) ** 2, axis=1))
    return d1, d2


def _two_nearest(
    queries: np.ndarray, refs: np.ndarray, block: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(d₁, d₂, index of the nearest)`` of each query row among ``refs`` rows (Euclidean),
    in blocks of ``block`` queries × ``block`` references; the two candidates' distances are
    recomputed from the differences (an exact copy has d₁ = 0 exactly)."""
    nr = refs.shape[0]
    rb = min(block, nr)
    pad = (-nr) % rb
    refs_p = jnp.asarray(np.concatenate([refs, np.zeros((pad, refs.shape[1]), refs.dtype)]))
    valid = jnp.asarray(np.arange(nr + pad) < nr)
    r = jnp.asarray(refs)
    out_d1, out_d2, out_i = [], [], []
    nq = queries.shape[0]
    qb = min(block, nq)
    for start in range(0, nq, qb):
        q = queries[start : start + qb]
        m = q.shape[0]
        if m < qb:
            q = np.concatenate([q, np.zeros((qb - m, q.shape[1]), q.dtype)])
        qj = jnp.asarray(q)
        i1, i2 = _two_nearest_block(qj, refs_p, valid, block=rb)
        d1, d2 = _exact(qj, r, i1, i2)
        d1, d2, i1, i2 = (np.asarray(a)[:m] for a in (d1, d2, i1, i2))
        swap = d2 < d1  # rounding in the expansion can order near-ties wrongly
        out_d1.append(np.where(swap, d2, d1))
        out_d2.append(np.where(swap, d1, d2))
        out_i.append(np.where(swap, i2, i1))
    return np.concatenate(out_d1), np.concatenate(out_d2), np.concatenate(out_i)


def nn_ratio(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """``d₁ / d₂``, taken as 0 when ``d₁ = 0`` (an exact copy, even of a duplicated image)."""
    safe = np.where(d2 > 0, d2, 1.0)
    return np.where(d1 == 0, 0.0, d1 / safe)


# --------------------------------------------------------------------------------------------
# statistics


def roc_auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """``P(s_member > s_non) + ½ P(s_member = s_non)`` (the Mann-Whitney AUC, ties counted half)."""
    ranks = scipy.stats.rankdata(np.concatenate([members, non_members]))
    m, n = members.size, non_members.size
    return float((np.sum(ranks[:m]) - m * (m + 1) / 2) / (m * n))


def tpr_at_fpr(members: np.ndarray, non_members: np.ndarray, fpr: float = 0.01) -> float:
    """The highest TPR of a threshold rule ``score ≥ t`` whose FPR does not exceed ``fpr``
    (no interpolation between operating points; ``t = +∞`` gives (0, 0))."""
    thresholds = np.unique(np.concatenate([members, non_members]))
    mem = np.sort(members)
    non = np.sort(non_members)
    tpr = (mem.size - np.searchsorted(mem, thresholds, side="left")) / mem.size
    fp = (non.size - np.searchsorted(non, thresholds, side="left")) / non.size
    ok = fp <= fpr
    return float(np.max(tpr[ok])) if np.any(ok) else 0.0


def _close_allowed(n_generated: int, n_reference: int, k: int, alpha: float) -> int:
    """The largest count ``c`` with ``P(X ≥ c) ≥ alpha`` for ``X ~ BetaBinomial(n, k, N + 1 − k)``:
    the number of generated images below the ``k``-th smallest of ``N`` held-out DCRs when both
    come from one continuous distribution."""
    sf = scipy.stats.betabinom(n_generated, k, n_reference + 1 - k).sf(
        np.arange(n_generated + 1) - 1
    )
    return int(np.max(np.flatnonzero(sf >= alpha)))


@dataclasses.dataclass(frozen=True)
class _Config:
    nndr_threshold: float
    max_flagged_fraction: float
    nndr_alpha: float
    dcr_percentile: float
    dcr_alpha: float
    auc_tolerance: float
    auc_alpha: float
    control_noise: float
    block: int

    @property
    def auc_z(self) -> float:
        return float(scipy.stats.norm.isf(self.auc_alpha / 2))


def _audit_space(
    space: str,
    subject: str,
    generated: np.ndarray,
    training: np.ndarray,
    reference: np.ndarray,
    dcr_reference: np.ndarray,
    members: np.ndarray,
    non_members: np.ndarray,
    cfg: _Config,
) -> SpaceResult:
    d1, d2, nearest = _two_nearest(generated, training, cfg.block)
    ratio = nn_ratio(d1, d2)
    flagged_mask = ratio < cfg.nndr_threshold
    flagged = int(np.sum(flagged_mask))
    extracted = int(np.unique(nearest[flagged_mask]).size)
    n_ref = dcr_reference.size
    k = max(1, math.ceil(cfg.dcr_percentile / 100 * n_ref))
    threshold = float(np.sort(dcr_reference)[k - 1])
    close = int(np.sum(d1 < threshold))
    allowed = _close_allowed(generated.shape[0], n_ref, k, cfg.dcr_alpha)
    s_mem = -_two_nearest(members, generated, cfg.block)[0]
    s_non = -_two_nearest(non_members, generated, cfg.block)[0]
    auc = roc_auc(s_mem, s_non)
    tpr = tpr_at_fpr(s_mem, s_non, 0.01)
    m, n = s_mem.size, s_non.size
    band = max(cfg.auc_tolerance, cfg.auc_z * math.sqrt((m + n + 1) / (12 * m * n)))
    fraction = flagged / generated.shape[0]
    # real unseen images have near neighbours too (flat tissue): the reference half's own flag
    # rate calibrates the rule; a one-sided Fisher exact test asks whether generated images are
    # flagged more often than unseen real ones
    r1, r2, _ = _two_nearest(reference, training, cfg.block)
    flagged_ref = int(np.sum(nn_ratio(r1, r2) < cfg.nndr_threshold))
    n_gen = generated.shape[0]
    copies = int(np.sum(ratio < cfg.nndr_threshold / COPY_FACTOR))
    p_nndr = float(
        scipy.stats.fisher_exact(
            [[flagged, n_gen - flagged], [flagged_ref, reference.shape[0] - flagged_ref]],
            alternative="greater",
        ).pvalue
    )
    criteria = (
        Criterion(
            "NNDR",
            fraction,
            f"fraction flagged (d₁/d₂ < {cfg.nndr_threshold:.6g}) <= {cfg.max_flagged_fraction:g}"
            f", or not above the held-out reference's {flagged_ref}/{reference.shape[0]} "
            f"(Fisher p = {p_nndr:.3g} >= {cfg.nndr_alpha:g}); and no near-exact copy "
            f"(d₁/d₂ < {cfg.nndr_threshold / COPY_FACTOR:.3g}: {copies})",
            (fraction <= cfg.max_flagged_fraction or p_nndr >= cfg.nndr_alpha) and copies == 0,
        ),
        Criterion(
            "DCR",
            close / generated.shape[0],
            f"count below the held-out {cfg.dcr_percentile:g}th percentile DCR <= {allowed} "
            f"(beta-binomial tail {cfg.dcr_alpha:g})",
            close <= allowed,
        ),
        Criterion(
            "MIA",
            auc,
            f"|AUC − 0.5| <= {band:.3f}",
            abs(auc - 0.5) <= band,
        ),
    )
    return SpaceResult(
        space=space,
        subject=subject,
        nndr_threshold=cfg.nndr_threshold,
        ratio=ratio,
        nearest=nearest,
        dcr=d1,
        dcr_held_out=dcr_reference,
        flagged=flagged,
        extracted=extracted,
        dcr_threshold=threshold,
        dcr_close=close,
        dcr_close_allowed=allowed,
        auc=auc,
        tpr_at_low_fpr=tpr,
        auc_band=band,
        n_members=m,
        criteria=criteria,
    )


# --------------------------------------------------------------------------------------------
# input


def _images(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{_WHERE}: `{name}` must hold real numbers (got dtype {arr.dtype})")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(
            f"{_WHERE}: `{name}` must be real (got dtype {arr.dtype}); pass the magnitude"
        )
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"{_WHERE}: `{name}` must be a batch of images (n, H, W) or (n, H, W, D) "
            f"(got shape {arr.shape}); stack single images with np.stack"
        )
    return arr


def _finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if np.any(bad):
        first = int(np.argwhere(bad)[0][0])
        raise ValueError(
            f"{_WHERE}: `{name}` must be finite; {int(bad.sum())} of {arr.size} values are not "
            f"(first in image {first}). Remove or repair those images: a distance to them means "
            "nothing"
        )


def _number(name: str, value: Any, low: float, high: float, *, closed_low: bool = False) -> float:
    """A number in ``(low, high)`` (``[low, high)`` with ``closed_low``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    inside = (low <= v if closed_low else low < v) and v < high
    if isinstance(value, bool) or not inside:
        bracket = "[" if closed_low else "("
        raise ValueError(
            f"{_WHERE}: `{name}` must be a number in {bracket}{low:g}, {high:g}) (got {value!r})"
        )
    return v


def _feature_rows(name: str, value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(
            f"{_WHERE}: `features` must map {n} images to an (n, d) array (got shape "
            f"{arr.shape} for `{name}`); e.g. features=lambda x: medphys.neural.embed(encoder, x)"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{_WHERE}: `features` returned non-finite values for `{name}`")
    return arr


def _perturbed_copies(
    key: Array, training: np.ndarray, n: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` randomly chosen training images (without replacement when ``n`` ≤ the set), each
    plus Gaussian noise of standard deviation ``noise`` (the training set's unit), and half of
    them (probability ½ each) shifted by one pixel along a random axis (edge pixels repeated)."""
    k_pick, k_noise, k_shift, k_axis, k_sign = (jax.random.fold_in(key, i) for i in range(5))
    pick = np.asarray(
        jax.random.choice(k_pick, training.shape[0], (n,), replace=n > training.shape[0])
    )
    out = training[pick].astype(np.float64)
    out = out + noise * np.asarray(jax.random.normal(k_noise, out.shape))
    shift = np.asarray(jax.random.bernoulli(k_shift, 0.5, (n,)))
    axis = np.asarray(jax.random.randint(k_axis, (n,), 0, out.ndim - 1)) + 1
    sign = np.asarray(jax.random.bernoulli(k_sign, 0.5, (n,)))
    for i in np.flatnonzero(shift):
        a = int(axis[i]) - 1
        img = out[i]
        if sign[i]:
            moved = np.concatenate(
                [img.take([0], axis=a), img.take(np.arange(img.shape[a] - 1), axis=a)], axis=a
            )
        else:
            moved = np.concatenate(
                [img.take(np.arange(1, img.shape[a]), axis=a), img.take([-1], axis=a)], axis=a
            )
        out[i] = moved
    return out, pick


def memorisation_audit(
    key: Array,
    training: Float[Array, " n *spatial"],
    generated: Float[Array, " m *spatial"],
    held_out: Float[Array, " h *spatial"],
    *,
    features: Callable[[Any], Any] | None = None,
    nndr_threshold: float = 1 / 3,
    max_flagged_fraction: float = 0.01,
    nndr_alpha: float = 0.01,
    dcr_percentile: float = 5.0,
    dcr_alpha: float = 0.01,
    auc_tolerance: float = 0.1,
    auc_alpha: float = 0.01,
    control_noise: float = 0.02,
    block: int = 256,
) -> MemorisationReport:
    """Audit generated images for copies of training images, with a positive and a negative control.

    See `medphys.audit` for every definition and default threshold. In short, per space (pixels;
    and ``features`` when given): the nearest-neighbour ratio d₁/d₂ of each generated image to the
    training set (flagged and extracted when < 1/3), the distance to the closest training record
    (DCR) against held-out images', and a distance-based membership-inference attack (ROC AUC,
    TPR at 1 % FPR). The held-out set is split in two random halves: one is the negative control
    ("generated" images that are real and unseen), the other the DCR reference and the
    non-members. The positive control is ``len(generated)`` perturbed training copies.

    Args:
        key: draws the held-out split, the members and the positive control.
        training: ``(n, H, W)`` or ``(n, H, W, D)`` the generator's training images (n ≥ 20).
        generated: generated images of the same shape (≥ 20).
        held_out: real images of the training distribution the generator never saw (≥ 40;
            ≥ 200 for the TPR at 1 % FPR to rest on ≥ 100 non-members).
        features: optional callable images → ``(n, d)`` features (e.g.
            ``lambda x: medphys.neural.embed(encoder, x)``): the audit is repeated there.
        nndr_threshold: the d₁/d₂ flag.
        max_flagged_fraction: the largest fraction of flagged images that always passes.
        nndr_alpha: above it, the flagged count passes unless a one-sided Fisher exact test
            finds it larger than the held-out reference's own flag rate at this level.
        dcr_percentile: the held-out DCR percentile (%) generated DCRs are compared with.
        dcr_alpha: the beta-binomial tail probability below which the DCR count fails.
        auc_tolerance: the smallest half-width of the passing AUC band around 0.5.
        auc_alpha: the band widens to the null AUC's two-sided ``1 − auc_alpha`` interval.
        control_noise: the positive control's noise, in training standard deviations.
        block: rows per block of the distance computation (memory ``~ block² + block·pixels``).

    Returns:
        `MemorisationReport` (``.passed``, ``.valid``, ``.describe()``, ``.to_dict()``).

    Raises:
        ValueError: images of different shapes, fewer images than needed, non-finite values, bad
            thresholds (all before any distance is computed); features of the wrong shape.
        TypeError: non-numeric images, a ``features`` that is not callable.

    Example:
        >>> report = memorisation_audit(jax.random.key(0), train, fake, held_out,
        ...                             features=lambda x: embed(encoder, x))
        >>> print(report.describe())
    """
    sets = {"training": training, "generated": generated, "held_out": held_out}
    arrays = {name: _images(name, value) for name, value in sets.items()}
    shapes = {name: a.shape[1:] for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"{_WHERE}: every set must hold images of one shape (got "
            + ", ".join(f"{k} {v}" for k, v in shapes.items())
            + "); crop or resample them to one grid first"
        )
    needed = {"training": MIN_TRAINING, "generated": MIN_GENERATED, "held_out": MIN_HELD_OUT}
    for name, low in needed.items():
        if arrays[name].shape[0] < low:
            why = (
                " (two halves of >= 20: negative control and non-members)"
                if name == "held_out"
                else ""
            )
            raise ValueError(
                f"{_WHERE}: `{name}` must hold at least {low} images{why} (got "
                f"{arrays[name].shape[0]}); the nearest-neighbour, DCR percentile and AUC "
                f"statistics need them (>= {2 * MIN_NONMEMBERS_FOR_TPR} held-out images for the "
                "TPR at 1 % FPR)"
            )
    for name, a in arrays.items():
        _finite(name, a)
    if features is not None and not callable(features):
        raise TypeError(
            f"{_WHERE}: `features` must be a callable images -> (n, d) array or None (got "
            f"{type(features).__name__})"
        )
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise ValueError(f"{_WHERE}: `block` must be an integer >= 1 (got {block!r})")
    cfg = _Config(
        nndr_threshold=_number("nndr_threshold", nndr_threshold, 0.0, 1.0),
        max_flagged_fraction=_number(
            "max_flagged_fraction", max_flagged_fraction, 0.0, 1.0, closed_low=True
        ),
        nndr_alpha=_number("nndr_alpha", nndr_alpha, 0.0, 1.0),
        dcr_percentile=_number("dcr_percentile", dcr_percentile, 0.0, 100.0),
        dcr_alpha=_number("dcr_alpha", dcr_alpha, 0.0, 1.0),
        auc_tolerance=_number("auc_tolerance", auc_tolerance, 0.0, 0.5),
        auc_alpha=_number("auc_alpha", auc_alpha, 0.0, 1.0),
        control_noise=_number("control_noise", control_noise, 0.0, math.inf),
        block=int(block),
    )
    train = arrays["training"].astype(np.float64)
    gen = arrays["generated"].astype(np.float64)
    held = arrays["held_out"].astype(np.float64)
    mean, std = float(np.mean(train)), float(np.std(train))
    if not std > 0:
        raise ValueError(
            f"{_WHERE}: `training` images are constant (all {mean}); distances cannot be "
            "standardised"
        )

    # splits and the positive control
    n_h = held.shape[0]
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, _SPLIT), n_h))
    negative = held[order[: n_h // 2]]
    reference = held[order[n_h // 2 :]]
    n_mia = min(reference.shape[0], train.shape[0])
    members_idx = np.asarray(
        jax.random.permutation(jax.random.fold_in(key, _MEMBERS), train.shape[0])
    )[:n_mia]
    positive, copied = _perturbed_copies(
        jax.random.fold_in(key, _CONTROL), train, gen.shape[0], cfg.control_noise * std
    )
    images = {
        "training": train,
        "audited": gen,
        "positive control": positive,
        "negative control": negative,
        "reference": reference,
    }

    spaces: dict[str, dict[str, np.ndarray]] = {
        "pixels": {k: ((v - mean) / std).reshape(v.shape[0], -1) for k, v in images.items()}
    }
    if features is not None:
        feats = {k: _feature_rows(k, features(v), v.shape[0]) for k, v in images.items()}
        f_mean, f_std = float(np.mean(feats["training"])), float(np.std(feats["training"]))
        f_std = f_std if f_std > 0 else 1.0
        spaces["features"] = {k: (v - f_mean) / f_std for k, v in feats.items()}

    results: dict[tuple[str, str], SpaceResult] = {}
    for space, vec in spaces.items():
        dcr_ref = _two_nearest(vec["reference"], vec["training"], cfg.block)[0]
        members = vec["training"][members_idx]
        non_members = vec["reference"][:n_mia]
        for subject in SUBJECTS:
            results[(space, subject)] = _audit_space(
                space,
                subject,
                vec[subject],
                vec["training"],
                vec["reference"],
                dcr_ref,
                members,
                non_members,
                cfg,
            )
    notes = []
    if n_mia < MIN_NONMEMBERS_FOR_TPR:
        notes.append(
            f"note: {n_mia} non-members (< {MIN_NONMEMBERS_FOR_TPR}): the TPR at 1 % FPR is the "
            "TPR at zero false positives; it is reported, not judged"
        )
    thresholds = {
        "nndr_threshold": cfg.nndr_threshold,
        "max_flagged_fraction": cfg.max_flagged_fraction,
        "nndr_alpha": cfg.nndr_alpha,
        "dcr_percentile": cfg.dcr_percentile,
        "dcr_alpha": cfg.dcr_alpha,
        "auc_tolerance": cfg.auc_tolerance,
        "auc_alpha": cfg.auc_alpha,
        "auc_z": cfg.auc_z,
        "control_noise": cfg.control_noise,
        "standardisation": {"mean": mean, "std": std},
    }
    sizes = {
        "training": int(train.shape[0]),
        "generated": int(gen.shape[0]),
        "held_out": int(n_h),
        "negative_control": int(negative.shape[0]),
        "reference": int(reference.shape[0]),
        "members": int(n_mia),
        "positive_control": int(positive.shape[0]),
    }
    indices = {
        "negative_control": order[: n_h // 2],
        "reference": order[n_h // 2 :],
        "members": members_idx,
        "non_members": np.arange(n_mia),
        "positive_control": copied,
    }
    return MemorisationReport(results, thresholds, sizes, tuple(notes), indices)
