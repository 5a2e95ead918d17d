"""Linear model observers: train a template on signal-present / signal-absent ROIs, then score.

An observer's decision variable is linear in the image g,

    t(g) = Σₖ wₖ · (⟨fₖ, g⟩ + εₖ),

with features fₖ (the channels of a CHO, or the single pixel template of the other observers),
weights wₖ and optional internal noise εₖ ~ N(0, σₖ²) added to each feature output. Kinds:

- ``"npw"``: non-prewhitening matched filter, template Δs̄ = ḡ₁ − ḡ₀ (difference of class means).
- ``"npwe"``: NPW with an eye filter E(f): template F⁻¹[E² · F(Δs̄)] (the image and the signal are
  both seen through the eye; Burgess 1994). E(f) = (f/f_pk)ⁿ exp(−c (f² − f_pk²)), c = n/(2 f_pk²),
  peak 1 at f_pk, f in cycles/degree; defaults n = 1.3, f_pk = 4 cycles/degree, viewing distance
  500 mm. ``pixel_mm`` is the displayed pixel size; one degree spans 2 D tan(0.5°) mm at distance D.
  The ROI is zero-padded to twice its size before filtering (no wrap-around). 2D ROIs only.
- ``"hotelling"``: Hotelling observer in pixel space, template K⁻¹ Δs̄ with K the pooled sample
  covariance ((n₁−1)K₁ + (n₀−1)K₀)/(n₁+n₀−2). For ROIs of at most `MAX_HOTELLING_PIXELS` pixels.
- ``"cho"``: channelized Hotelling, features = the given channels U (``(n_channels, *roi)``),
  weights S⁻¹ Δv̄ with v = U g the channel outputs and S their pooled covariance.

The pooled covariance has n₁ + n₀ − 2 degrees of freedom; it is invertible only when that is at
least the number of features (pixels or channels), so ``"hotelling"`` and ``"cho"`` need
n₁ + n₀ ≥ features + 2 training images, unless a ridge is asked for: K + λ · mean(diag K) · I.

Internal noise (``internal_noise = α``): channel-domain Gaussian noise with variance α times the
pooled variance of each feature output (for NPW/NPWE/Hotelling, of the decision variable). The CHO
weights are then trained on S + α diag(S) (the covariance the noisy observer sees). Noise draws
are separate from scoring (`sample_internal_noise(key, ...)` then `score(..., internal_noise=)`),
so a score is reproducible from its key.

References:
    H. H. Barrett, K. J. Myers, *Foundations of Image Science*, Wiley (2004), ch. 13–14.
    A. E. Burgess, "Statistically defined backgrounds: performance of a modified nonprewhitening
    observer model", J. Opt. Soc. Am. A 11(4):1237–1242 (1994).
    M. P. Eckstein, C. K. Abbey, F. O. Bochud, "A practical guide to model observers for visual
    detection in synthetic and natural noisy images", in *Handbook of Medical Imaging* vol. 1,
    SPIE (2000).
    Y. Zhang, B. T. Pham, M. P. Eckstein, "Evaluation of internal noise methods for Hotelling
    observer models", Med. Phys. 34(8):3312–3322 (2007).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jaxtyping import Array, Bool, Float

from .._checks import is_concrete
from . import _checks as chk
from ._roc import AUCResult, _delong_core, _dprime_core

OBSERVERS = ("npw", "npwe", "hotelling", "cho")

#: Largest ROI (in pixels) for the pixel-space Hotelling observer; use ``"cho"`` beyond it.
MAX_HOTELLING_PIXELS = 4096


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Observer:
    """A trained linear observer (see the module docstring for the decision variable).

    Attributes:
        features: (n_features, *roi) channels (CHO) or the one pixel template (other kinds).
        weights: (n_features,) weights of the feature outputs.
        noise_std: (n_features,) internal-noise standard deviation per feature output (zeros when
            the observer has none).
        kind: ``"npw"``, ``"npwe"``, ``"hotelling"`` or ``"cho"`` (static).
    """

    features: Float[Array, " features *roi"]
    weights: Float[Array, " features"]
    noise_std: Float[Array, " features"]
    kind: str = dataclasses.field(metadata={"static": True}, default="npw")

    @property
    def roi_shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[1:])

    @property
    def template(self) -> Float[Array, "*roi"]:
        """The equivalent pixel-space template Σₖ wₖ fₖ (what a noiseless score applies)."""
        return jnp.tensordot(self.weights, self.features, axes=1)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Scores and figures of merit of an observer trained and tested by `evaluate`.

    Attributes:
        observer: the trained `Observer`.
        scores: (n_test,) test scores, signal-present cases first.
        truth: (n_test,) True for the signal-present cases.
        dprime: () d′ of the test scores, (μ₁ − μ₀)/sqrt((σ₁² + σ₀²)/2).
        dprime_se: () its delta-method standard error (`dprime_se`).
        auc: `AUCResult` (DeLong) of the test scores.
        mode: ``"split"`` (trained and tested on disjoint images) or ``"resubstitution"`` (tested
            on the training images: optimistically biased for Hotelling and CHO).
        split: the fraction of each class used for training (``None`` for resubstitution).
        n_train, n_test: (signal-present, signal-absent) image counts.
    """

    observer: Observer
    scores: Float[Array, " n"]
    truth: Bool[Array, " n"]
    dprime: Float[Array, ""]
    dprime_se: Float[Array, ""]
    auc: AUCResult
    mode: str
    split: float | None
    n_train: tuple[int, int]
    n_test: tuple[int, int]


# --------------------------------------------------------------------------------------------
# eye filter


def eye_filter(
    frequency_cpd: Float[Array, "*shape"],
    *,
    exponent: float = 1.3,
    peak_cpd: float = 4.0,
) -> Float[Array, "*shape"]:
    """Eye filter E(f) = (f/f_pk)ⁿ exp(−c (f² − f_pk²)), c = n/(2 f_pk²): peak 1 at f_pk.

    Args:
        frequency_cpd: radial frequency in cycles per degree of visual angle (≥ 0).
        exponent: n (1.3 in Burgess 1994 and Eckstein et al.).
        peak_cpd: the peak frequency f_pk in cycles/degree (4).

    Returns:
        E(f), same shape.

    References:
        Burgess, JOSA A 11:1237 (1994); Eckstein, Abbey & Bochud (2000).
    """
    f = jnp.asarray(frequency_cpd)
    c = exponent / (2.0 * peak_cpd * peak_cpd)
    ratio = jnp.maximum(f / peak_cpd, 0.0)
    safe = jnp.where(ratio > 0, ratio, 1.0)
    return jnp.where(ratio > 0, safe**exponent, 0.0) * jnp.exp(-c * (f * f - peak_cpd * peak_cpd))


def _eye_squared(
    padded_shape: tuple[int, ...], pixel_mm: float, distance_mm: float, exponent: float, peak: float
) -> Array:
    mm_per_degree = 2.0 * distance_mm * math.tan(math.radians(0.5))
    freqs = [np.fft.fftfreq(n, d=pixel_mm) * mm_per_degree for n in padded_shape]
    grids = np.meshgrid(*freqs, indexing="ij")
    f = np.sqrt(sum(g * g for g in grids))
    e = eye_filter(jnp.asarray(f), exponent=exponent, peak_cpd=peak)
    return e * e


# --------------------------------------------------------------------------------------------
# training cores


def _pooled(x1: Array, x0: Array) -> tuple[Array, Array]:
    """Mean difference and pooled covariance of row vectors (n₁, f), (n₀, f)."""
    m1, m0 = jnp.mean(x1, axis=0), jnp.mean(x0, axis=0)
    d1, d0 = x1 - m1[None, :], x0 - m0[None, :]
    cov = (d1.T @ d1 + d0.T @ d0) / (x1.shape[0] + x0.shape[0] - 2.0)
    return m1 - m0, cov


def _solve(cov: Array, rhs: Array, ridge: Array) -> Array:
    lam = ridge * jnp.mean(jnp.diag(cov))
    a = cov + lam * jnp.eye(cov.shape[0], dtype=cov.dtype)
    return jax.scipy.linalg.solve(a, rhs, assume_a="pos")


@functools.partial(jax.jit, static_argnames=("kind",))
def _train_core(
    kind: str,
    sp: Array,
    sa: Array,
    channels: Array | None,
    eye2: Array | None,
    ridge: Array,
    alpha: Array,
) -> Observer:
    roi = sp.shape[1:]
    n_pix = math.prod(roi)
    x1 = sp.reshape(sp.shape[0], n_pix)
    x0 = sa.reshape(sa.shape[0], n_pix)
    if kind == "cho":
        u = channels.reshape(channels.shape[0], n_pix)
        dv, s = _pooled(x1 @ u.T, x0 @ u.T)
        var = jnp.diag(s)
        w = _solve(s + alpha * jnp.diag(var), dv, ridge)
        return Observer(channels, w, jnp.sqrt(alpha * var), kind)
    if kind == "hotelling":
        ds, k = _pooled(x1, x0)
        template = _solve(k, ds, ridge)
    else:
        ds = jnp.mean(x1, axis=0) - jnp.mean(x0, axis=0)
        template = ds
        if kind == "npwe":
            padded = tuple(2 * n for n in roi)
            big = (
                jnp.zeros(padded, dtype=sp.dtype)
                .at[tuple(slice(0, n) for n in roi)]
                .set(ds.reshape(roi))
            )
            filt = jnp.fft.ifftn(jnp.fft.fftn(big) * eye2).real
            template = filt[tuple(slice(0, n) for n in roi)].reshape(n_pix)
    _, var_t = _pooled((x1 @ template)[:, None], (x0 @ template)[:, None])
    one = jnp.ones((1,), dtype=sp.dtype)
    return Observer(template.reshape((1, *roi)), one, jnp.sqrt(alpha * var_t[0]) * one, kind)


def _images(call: str, name: str, value: Any) -> Array:
    arr = value if isinstance(value, jax.Array) else np.asarray(value)
    if arr.ndim < 2:
        raise ValueError(
            f"{chk.where(call)}: `{name}` must be a stack of ROIs, shape (n_images, *roi_shape) "
            f"(got shape {tuple(arr.shape)})"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{chk.where(call)}: `{name}` must hold real numbers (got {arr.dtype})")
    if is_concrete(arr) and not np.all(np.isfinite(np.asarray(arr))):
        raise ValueError(f"{chk.where(call)}: `{name}` holds non-finite pixel values")
    dtype = jnp.result_type(float, arr.dtype)
    if isinstance(arr, np.ndarray):  # host data stays on the host until the jitted core
        return arr.astype(dtype, copy=False)
    return jnp.asarray(arr, dtype=dtype)


def train(
    kind: str,
    signal_present: Float[Array, " n1 *roi"],
    signal_absent: Float[Array, " n0 *roi"],
    *,
    channels: Float[Array, " channels *roi"] | None = None,
    pixel_mm: float | None = None,
    viewing_distance_mm: float = 500.0,
    eye_exponent: float = 1.3,
    eye_peak_cpd: float = 4.0,
    ridge: float = 0.0,
    internal_noise: float = 0.0,
) -> Observer:
    """Train a linear observer on signal-present and signal-absent ROIs.

    Args:
        kind: ``"npw"``, ``"npwe"``, ``"hotelling"`` or ``"cho"`` (module docstring).
        signal_present: (n₁, *roi) ROIs with the signal.
        signal_absent: (n₀, *roi) ROIs without it; the same ROI shape.
        channels: (n_channels, *roi) channel matrix, for ``"cho"`` only (`laguerre_gauss`,
            `gabor`, `slice_channels`, `make_channels`).
        pixel_mm: displayed pixel size in mm, for ``"npwe"`` only (required there).
        viewing_distance_mm: viewing distance for ``"npwe"`` (500 mm).
        eye_exponent, eye_peak_cpd: eye filter n and f_pk (1.3, 4 cycles/degree), ``"npwe"``.
        ridge: λ ≥ 0 for ``"hotelling"`` / ``"cho"``: the covariance inverted is
            K + λ · mean(diag K) · I (0: the plain pooled covariance, which then needs
            n₁ + n₀ ≥ features + 2).
        internal_noise: α ≥ 0, internal-noise variance as a multiple of each feature output's
            pooled variance.

    Returns:
        `Observer`.

    Raises:
        ValueError: an unknown `kind`; ROI shapes that disagree; `channels` missing for CHO, given
            for another kind, or of another ROI shape; too few training images for the covariance
            (the message says how many are needed); a Hotelling ROI above `MAX_HOTELLING_PIXELS`;
            NPWE without `pixel_mm` or on a 3D ROI; non-finite pixels; fewer than 2 images per
            class.

    Example:
        >>> u = laguerre_gauss((32, 32), n_channels=6, width_px=8.0)
        >>> obs = train("cho", present, absent, channels=u)
        >>> t = score(obs, test_images)

    References:
        Barrett & Myers (2004) §13.2, §14.2; Burgess, JOSA A 11:1237 (1994).
    """
    call = "train"
    kind = chk.choice(call, "kind", kind, OBSERVERS)
    sp = _images(call, "signal_present", signal_present)
    sa = _images(call, "signal_absent", signal_absent)
    if sp.shape[1:] != sa.shape[1:]:
        raise ValueError(
            f"{chk.where(call)}: `signal_present` ROIs have shape {tuple(sp.shape[1:])} but "
            f"`signal_absent` ROIs have shape {tuple(sa.shape[1:])}; they must agree"
        )
    roi = tuple(sp.shape[1:])
    n1, n0 = sp.shape[0], sa.shape[0]
    if min(n1, n0) < 2:
        raise ValueError(
            f"{chk.where(call)}: each class needs at least 2 training images "
            f"(got {n1} signal-present, {n0} signal-absent)"
        )
    ridge = chk.positive_float(call, "ridge", ridge, allow_zero=True)
    alpha = chk.positive_float(call, "internal_noise", internal_noise, allow_zero=True)
    if channels is not None and kind != "cho":
        raise ValueError(f"{chk.where(call)}: `channels` apply to kind='cho' only (got {kind!r})")
    if pixel_mm is not None and kind != "npwe":
        raise ValueError(f"{chk.where(call)}: `pixel_mm` applies to kind='npwe' only")
    u = None
    eye2 = None
    n_features = 1
    if kind == "cho":
        if channels is None:
            raise ValueError(
                f"{chk.where(call)}: kind='cho' needs `channels`, an array (n_channels, *{roi}) "
                "(e.g. laguerre_gauss(roi_shape, n_channels=..., width_px=...))"
            )
        u = jnp.asarray(channels, dtype=sp.dtype)  # (n_channels, *roi)
        if u.ndim != len(roi) + 1 or tuple(u.shape[1:]) != roi:
            raise ValueError(
                f"{chk.where(call)}: `channels` must have shape (n_channels, *{roi}) to match the "
                f"ROIs (got {tuple(u.shape)})"
            )
        n_features = u.shape[0]
    elif kind == "hotelling":
        n_features = math.prod(roi)
        if n_features > MAX_HOTELLING_PIXELS:
            raise ValueError(
                f"{chk.where(call)}: kind='hotelling' works in pixel space and is limited to ROIs "
                f"of {MAX_HOTELLING_PIXELS} pixels (got {roi}: {n_features}); use kind='cho' "
                "with channels for larger ROIs"
            )
    elif kind == "npwe":
        if len(roi) != 2:
            raise ValueError(
                f"{chk.where(call)}: kind='npwe' needs 2D ROIs (got ROI shape {roi}); slice the "
                "volume or use 'npw' / 'cho'"
            )
        if pixel_mm is None:
            raise ValueError(
                f"{chk.where(call)}: kind='npwe' needs `pixel_mm`, the displayed pixel size in mm"
            )
        px = chk.positive_float(call, "pixel_mm", pixel_mm)
        dist = chk.positive_float(call, "viewing_distance_mm", viewing_distance_mm)
        n_exp = chk.positive_float(call, "eye_exponent", eye_exponent)
        peak = chk.positive_float(call, "eye_peak_cpd", eye_peak_cpd)
        eye2 = _eye_squared(tuple(2 * n for n in roi), px, dist, n_exp, peak).astype(sp.dtype)
    if kind in ("cho", "hotelling") and ridge == 0.0 and n1 + n0 - 2 < n_features:
        what = "channels" if kind == "cho" else "pixels"
        raise ValueError(
            f"{chk.where(call)}: kind={kind!r} with {n_features} {what} needs at least "
            f"{n_features + 2} training images in all (n_present + n_absent − 2 >= {n_features} "
            f"for an invertible pooled covariance); got {n1} + {n0} = {n1 + n0}. Add images, use "
            "fewer channels, or pass ridge > 0"
        )
    dt = sp.dtype
    return _train_core(
        kind, sp, sa, u, eye2, jnp.asarray(ridge, dtype=dt), jnp.asarray(alpha, dtype=dt)
    )


# --------------------------------------------------------------------------------------------
# scoring


def sample_internal_noise(
    key: Array, observer: Observer, batch_shape: Sequence[int] | int
) -> Float[Array, "*batch features"]:
    """Draw the observer's internal noise for a batch of images.

    Args:
        key: `jax.random` key; the same key gives the same noise.
        observer: a trained `Observer`.
        batch_shape: the images' batch shape (e.g. ``(n_images,)``).

    Returns:
        (*batch_shape, n_features) Gaussian draws with standard deviation ``observer.noise_std``
        (zeros for an observer without internal noise).
    """
    shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
    std = observer.noise_std
    z = jax.random.normal(key, (*shape, std.shape[0]), dtype=std.dtype)
    return z * std.reshape((1,) * len(shape) + std.shape)


def score(
    observer: Observer,
    images: Float[Array, "*batch *roi"],
    *,
    internal_noise: Float[Array, "*batch features"] | None = None,
) -> Float[Array, "*batch"]:
    """Apply a trained observer: one scalar decision variable per image.

    Args:
        observer: a trained `Observer`.
        images: (*batch, *roi) images whose trailing axes are the observer's ROI shape.
        internal_noise: (*batch, n_features) draws from `sample_internal_noise` (none: noiseless).

    Returns:
        (*batch,) scores.

    Raises:
        ValueError: images whose trailing shape is not the ROI shape; noise of the wrong shape.
    """
    roi = observer.roi_shape
    images = jnp.asarray(images)
    if images.ndim < len(roi) or tuple(images.shape[images.ndim - len(roi) :]) != roi:
        raise ValueError(
            f"{chk.where('score')}: `images` must have shape (*batch, *{roi}) for this "
            f"observer's ROI (got {tuple(images.shape)})"
        )
    batch = tuple(images.shape[: images.ndim - len(roi)])
    if internal_noise is not None and tuple(internal_noise.shape) != (
        *batch,
        observer.features.shape[0],
    ):
        raise ValueError(
            f"{chk.where('score')}: `internal_noise` must have shape "
            f"{(*batch, observer.features.shape[0])} (got {tuple(internal_noise.shape)})"
        )
    return _score_core(observer, images, internal_noise)


@jax.jit
def _score_core(observer: Observer, images: Array, noise: Array | None) -> Array:
    nr = len(observer.roi_shape)
    axes = (tuple(range(images.ndim - nr, images.ndim)), tuple(range(1, nr + 1)))
    out = jnp.tensordot(images, observer.features, axes=axes)
    if noise is not None:
        out = out + noise
    return out @ observer.weights


# --------------------------------------------------------------------------------------------
# evaluate


def evaluate(
    kind: str,
    signal_present: Float[Array, " n1 *roi"],
    signal_absent: Float[Array, " n0 *roi"],
    *,
    split: float | None = None,
    resubstitution: bool = False,
    key: Array | None = None,
    level: float = 0.95,
    **options: Any,
) -> Evaluation:
    """Train and test an observer; report scores, d′ and the AUC with its DeLong interval.

    Exactly one of `split` and ``resubstitution=True``:

    - ``split=f``: the first ⌊f · n⌋ images of each class train the observer and the rest test it
      (in the order given: shuffle beforehand if the order means something);
    - ``resubstitution=True``: train and test on all images (optimistic for Hotelling and CHO,
      whose bias shrinks as images/features grows; unbiased enough for NPW with many images).

    Args:
        kind: observer kind (`train`).
        signal_present, signal_absent: (n₁, *roi), (n₀, *roi).
        split: training fraction of each class, in (0, 1).
        resubstitution: test on the training images.
        key: `jax.random` key for the internal noise (required when ``internal_noise > 0``).
        level: confidence level of the AUC interval.
        **options: keyword arguments of `train` (``channels``, ``pixel_mm``, ``ridge``,
            ``internal_noise``, …).

    Returns:
        `Evaluation` (``mode`` records the choice).

    Raises:
        ValueError: neither or both of `split` / `resubstitution`; a split leaving fewer than 2
            images of a class on either side; internal noise without a key; `train`'s errors.
    """
    call = "evaluate"
    lv = chk.level(call, level)
    if (split is None) == (not resubstitution):
        raise ValueError(
            f"{chk.where(call)}: choose how the observer is tested: split=<training fraction> or "
            f"resubstitution=True, not both and not neither (got split={split!r}, "
            f"resubstitution={resubstitution!r})"
        )
    sp = _images(call, "signal_present", signal_present)
    sa = _images(call, "signal_absent", signal_absent)
    n1, n0 = sp.shape[0], sa.shape[0]
    if split is not None:
        if (
            isinstance(split, bool)
            or not isinstance(split, (int, float, np.floating))
            or not (0.0 < float(split) < 1.0)
        ):
            raise ValueError(
                f"{chk.where(call)}: `split` is the training fraction of each class and must lie "
                f"strictly between 0 and 1 (got {split!r})"
            )
        frac = float(split)
        k1, k0 = math.floor(frac * n1), math.floor(frac * n0)
        if min(k1, k0, n1 - k1, n0 - k0) < 2:
            raise ValueError(
                f"{chk.where(call)}: split={frac} leaves {k1}/{n1 - k1} signal-present and "
                f"{k0}/{n0 - k0} signal-absent images for training/testing; each needs >= 2"
            )
        train_p, test_p, train_a, test_a = sp[:k1], sp[k1:], sa[:k0], sa[k0:]
        mode = "split"
    else:
        frac = None
        train_p, test_p, train_a, test_a = sp, sp, sa, sa
        mode = "resubstitution"
    alpha = options.get("internal_noise", 0.0)
    noisy = isinstance(alpha, (int, float, np.floating)) and not isinstance(alpha, bool)
    if key is None and noisy and alpha > 0:
        raise ValueError(
            f"{chk.where(call)}: internal_noise={alpha} needs a `key` to draw the noise"
        )
    obs = train(kind, train_p, train_a, **options)
    if not bool(np.all(np.isfinite(np.asarray(obs.weights)))):
        raise ValueError(
            f"{chk.where(call)}: the trained {kind!r} template is not finite: the pooled "
            f"covariance of its {obs.features.shape[0]} features is singular on these "
            f"{train_p.shape[0]} + {train_a.shape[0]} training images (signal-present and "
            "signal-absent images that share their backgrounds count as one background each). "
            "Add training images, use fewer channels, or pass ridge > 0"
        )
    z = jnp.asarray(scipy.stats.norm.ppf(0.5 + lv / 2), dtype=sp.dtype)
    scores, truth, d, d_se, a = _test_core(obs, test_p, test_a, key, z)
    return Evaluation(
        obs,
        scores,
        truth,
        d,
        d_se,
        dataclasses.replace(a, level=lv),
        mode,
        frac,
        (int(train_p.shape[0]), int(train_a.shape[0])),
        (int(test_p.shape[0]), int(test_a.shape[0])),
    )


@jax.jit
def _test_core(
    observer: Observer, test_p: Array, test_a: Array, key: Array | None, z: Array
) -> tuple[Array, Array, Array, Array, AUCResult]:
    test = jnp.concatenate([jnp.asarray(test_p), jnp.asarray(test_a)])
    noise = None if key is None else sample_internal_noise(key, observer, (test.shape[0],))
    scores = _score_core(observer, test, noise)
    truth = jnp.arange(test.shape[0]) < test_p.shape[0]
    d, d_se = _dprime_core(scores, truth)
    return scores, truth, d, d_se, _delong_core(scores, truth, z)
