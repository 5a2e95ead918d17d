"""Distances between distributions of images: KID on features, Wasserstein-1 on intensities.

Both compare *sets* (a generator's output with real images), not pairs: they say whether two
samples look drawn from one distribution, not whether an image matches its reference.

- `kid`: the unbiased estimate of the squared maximum mean discrepancy (MMD²) between two
  feature sets under the cubic polynomial kernel ``k(x, y) = (xᵀy / d + 1)³`` (Bińkowski et al.
  2018, the "kernel inception distance" when the features come from Inception-v3), averaged
  over random equal-size subsets. Any feature extractor works (e.g. `medphys.neural.embed`);
  values are comparable only between runs with the same extractor, subset size and data.
- `intensity_wasserstein`: the exact 1-D Wasserstein-1 distance between the pooled intensity
  values of two image sets (every pixel of every image, each set weighted uniformly).

References:
    Bińkowski, Sutherland, Arbel, Gretton, "Demystifying MMD GANs", ICLR 2018 (KID: the
    unbiased MMD² with the cubic polynomial kernel, mean over subsets).
    Gretton, Borgwardt, Rasch, Schölkopf, Smola, "A kernel two-sample test", JMLR 13, 2012
    (the unbiased MMD² estimator, Lemma 6).
    Villani, "Optimal transport: old and new", Springer 2009; for 1-D distributions
    ``W₁ = ∫₀¹ |F⁻¹(u) − G⁻¹(u)| du = ∫ |F(x) − G(x)| dx`` (Remark 2.19 of Peyré & Cuturi,
    "Computational optimal transport", 2019).
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _checks as chk

__all__ = ["intensity_wasserstein", "kid", "mmd2_unbiased"]

# subset size of Bińkowski et al. and torchmetrics' default
_SUBSET = 1000


def _count(call: str, name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{chk.where(call)}: `{name}` must be an integer >= {low} (got {value!r})")
    return int(value)


def _poly_kernel(x: Array, y: Array) -> Array:
    """``(x yᵀ / d + 1)³`` for ``x (m, d)``, ``y (n, d)``."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


@jax.jit
def mmd2_unbiased(x: Float[Array, "m d"], y: Float[Array, "n d"]) -> Float[Array, ""]:
    """Unbiased MMD² between samples ``x`` and ``y`` under the cubic polynomial kernel.

    ``Σ_{i≠j} k(xᵢ, xⱼ) / (m(m−1)) + Σ_{i≠j} k(yᵢ, yⱼ) / (n(n−1)) − 2 Σ_{i,j} k(xᵢ, yⱼ) / (mn)``
    with ``k(x, y) = (xᵀy / d + 1)³`` (Gretton et al. 2012, Lemma 6). Needs ``m, n >= 2``; it can
    be negative when the distributions are equal.
    """
    m, n = x.shape[0], y.shape[0]
    kxx = _poly_kernel(x, x)
    kyy = _poly_kernel(y, y)
    kxy = _poly_kernel(x, y)
    sxx = (jnp.sum(kxx) - jnp.trace(kxx)) / (m * (m - 1))
    syy = (jnp.sum(kyy) - jnp.trace(kyy)) / (n * (n - 1))
    return sxx + syy - 2.0 * jnp.sum(kxy) / (m * n)


@functools.partial(jax.jit, static_argnames=("subsets", "size"))
def _kid_scores(key: Array, a: Array, b: Array, *, subsets: int, size: int) -> Array:
    def one(i: Array) -> Array:
        k = jax.random.fold_in(key, i)
        ia = jax.random.permutation(jax.random.fold_in(k, 0), a.shape[0])[:size]
        ib = jax.random.permutation(jax.random.fold_in(k, 1), b.shape[0])[:size]
        return mmd2_unbiased(a[ia], b[ib])

    return jax.lax.map(one, jnp.arange(subsets))


def _features(call: str, name: str, value: Any) -> Array:
    arr = chk.image(call, name, value, ndims=(2,))
    if arr.shape[0] < 2:
        raise ValueError(
            f"{chk.where(call)}: `{name}` must hold at least 2 feature vectors, one per row "
            f"(got shape {tuple(arr.shape)})"
        )
    return arr


def kid(
    features_a: Float[Array, "n d"],
    features_b: Float[Array, "m d"],
    *,
    subsets: int = 100,
    subset_size: int | None = None,
    key: Array | None = None,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Kernel inception distance: mean and standard deviation of the unbiased MMD² over subsets.

    Each of `subsets` subsets draws `subset_size` rows of each set without replacement
    (independently per set and per subset, from ``fold_in(key, i)``) and computes `mmd2_unbiased`
    with ``k(x, y) = (xᵀy / d + 1)³``; the result is the mean over subsets and their population
    standard deviation (``ddof = 0``), as Bińkowski et al. and torchmetrics'
    ``KernelInceptionDistance`` report. When `subset_size` equals both set sizes every subset is
    the whole set: one exact value, standard deviation 0, and no key is needed.

    Args:
        features_a: ``(n, d)`` features of one image set (e.g. real images).
        features_b: ``(m, d)`` features of the other set, same ``d``.
        subsets: number of random subsets.
        subset_size: rows per subset and set; default ``min(1000, n, m)``.
        key: draws the subsets (required unless every subset is the whole of both sets).

    Returns:
        ``(mean, std)`` as JAX scalars in the features' floating dtype (``float(...)`` for
        numbers). KID is about 0 for samples of one distribution (it can be slightly negative).

    Raises:
        ValueError: non-finite or empty features, different ``d``, fewer than 2 rows,
            ``subset_size`` outside ``[2, min(n, m)]``, a missing key.

    Example:
        >>> mean, std = kid(embed(encoder, real), embed(encoder, fake), key=jax.random.key(0))

    References:
        Bińkowski et al., "Demystifying MMD GANs", ICLR 2018.
    """
    call = "kid"
    a = _features(call, "features_a", features_a)
    b = _features(call, "features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{chk.where(call)}: `features_a` and `features_b` must have the same feature "
            f"dimension (got {a.shape[1]} and {b.shape[1]}); embed both sets with one extractor"
        )
    subsets = _count(call, "subsets", subsets, 1)
    most = min(a.shape[0], b.shape[0])
    size = min(_SUBSET, most) if subset_size is None else subset_size
    size = _count(call, "subset_size", size, 2)
    if size > most:
        raise ValueError(
            f"{chk.where(call)}: `subset_size` must not exceed the smaller set "
            f"(got subset_size={size} for sets of {a.shape[0]} and {b.shape[0]}); "
            f"use subset_size={most} or fewer"
        )
    dtype = jnp.result_type(float, a.dtype, b.dtype)
    a, b = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    if size == a.shape[0] == b.shape[0]:
        value = mmd2_unbiased(a, b)
        return value, jnp.zeros_like(value)
    if key is None:
        raise ValueError(
            f"{chk.where(call)}: `key` is required to draw the subsets (subset_size={size} of "
            f"{a.shape[0]} and {b.shape[0]} rows); pass key=jax.random.key(0) or any key"
        )
    scores = _kid_scores(key, a, b, subsets=subsets, size=size)
    return jnp.mean(scores), jnp.std(scores)


def _quantile_grid(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices into the sorted samples and widths of the intervals on which both empirical
    quantile functions are constant (breakpoints ``i/n`` and ``j/m``, exact integer arithmetic
    in units of ``1/(n m)``)."""
    t = np.union1d(np.arange(1, n + 1, dtype=np.int64) * m, np.arange(1, m + 1, dtype=np.int64) * n)
    width = np.diff(t, prepend=0) / (n * m)
    ia = -(-t // m) - 1  # ceil(t/m) - 1: F⁻¹(u) = a_(⌈u n⌉) on (t_{k−1}, t_k]
    ib = -(-t // n) - 1
    return ia, ib, width


@jax.jit
def _w1_sorted(a: Array, b: Array, ia: Array, ib: Array, width: Array) -> Array:
    a, b = jnp.sort(a), jnp.sort(b)
    return jnp.sum(width * jnp.abs(a[ia] - b[ib]))


def intensity_wasserstein(a: Float[Array, "..."], b: Float[Array, "..."]) -> Float[Array, ""]:
    """Wasserstein-1 distance between the intensity distributions of two image sets.

    Every value of ``a`` (all pixels of all its images) is one sample of its distribution, each
    with weight ``1 / a.size``; likewise ``b``. The distance is exact:
    ``W₁ = ∫₀¹ |F_a⁻¹(u) − F_b⁻¹(u)| du`` with the empirical quantile functions, which are
    constant between the breakpoints ``i / a.size`` and ``j / b.size`` (sorted samples, no
    binning). Equal to ``scipy.stats.wasserstein_distance(a.ravel(), b.ravel())``. In the images'
    unit (HU, 1/mm, …).

    Args:
        a: one image set (any shape; every value is a sample), e.g. ``(n, H, W)``.
        b: the other set (any shape, any size).

    Returns:
        A JAX scalar in the inputs' common floating dtype.

    Raises:
        ValueError: empty or non-finite input.

    Example:
        >>> intensity_wasserstein(real_hu, generated_hu)  # HU

    References:
        Peyré, Cuturi, "Computational optimal transport", 2019, Remark 2.19 (1-D closed form).
    """
    call = "intensity_wasserstein"
    x = chk.image(call, "a", a)
    y = chk.image(call, "b", b)
    dtype = jnp.result_type(float, x.dtype, y.dtype)
    x, y = jnp.ravel(jnp.asarray(x, dtype)), jnp.ravel(jnp.asarray(y, dtype))
    ia, ib, width = _quantile_grid(x.size, y.size)
    return _w1_sorted(x, y, jnp.asarray(ia), jnp.asarray(ib), jnp.asarray(width, dtype))
