"""SSIM (Wang et al. 2004) in 2-D, exactly as scikit-image computes it, and SSIM3D over three axes.

scikit-image's ``structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=R)`` filters with `scipy.ndimage.gaussian_filter`
(σ = 1.5, truncate = 3.5: an 11-tap window of radius 5, ``mode="reflect"``) and averages the SSIM
map after cropping 5 pixels from every border. The cropped pixels are exactly those whose window
reaches past the border, so the mean is that of the *valid* correlation with the 11 × 11 window:
the padding mode never enters. Here the window is applied as two 11-tap passes over valid slices.

Float32 inputs: the local (co)variances are computed from images shifted by their own mean
(variances do not change under a shift), which keeps the cancellation in E[x²] − E[x]² small.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import is_concrete
from . import _checks as chk

SIGMA = 1.5
TRUNCATE = 3.5
RADIUS = int(TRUNCATE * SIGMA + 0.5)  # 5, as scipy.ndimage computes it
WINDOW = 2 * RADIUS + 1  # 11
K1 = 0.01
K2 = 0.03
_SLICE_BATCH = 16  # slices per step in ssim3d: bounds the memory to a few slices' worth of maps

_OFFSETS = np.arange(-RADIUS, RADIUS + 1, dtype=np.float64)
_GAUSS = np.exp(-0.5 * (_OFFSETS / SIGMA) ** 2)
_TAPS = tuple(float(t) for t in _GAUSS / _GAUSS.sum())  # as scipy.ndimage._gaussian_kernel1d


def _filter(x: Float[Array, "... n m"]) -> Float[Array, "... n_valid m_valid"]:
    """Valid correlation with the 11 × 11 Gaussian window over the last two axes."""
    n, m = x.shape[-2:]
    rows = sum(w * x[..., k : k + n - 2 * RADIUS, :] for k, w in enumerate(_TAPS))
    return sum(w * rows[..., :, k : k + m - 2 * RADIUS] for k, w in enumerate(_TAPS))


def _ssim_mean(x: Float[Array, "... n m"], y: Float[Array, "... n m"], data_range: Array) -> Array:
    """Mean SSIM over the valid region of each image in the last two axes."""
    cx = jnp.mean(x, axis=(-2, -1), keepdims=True)
    cy = jnp.mean(y, axis=(-2, -1), keepdims=True)
    xc, yc = x - cx, y - cy
    # one filter pass over the five local moments, stacked on a new leading axis
    mx, my, mxx, myy, mxy = _filter(jnp.stack([xc, yc, xc * xc, yc * yc, xc * yc]))
    vx = mxx - mx * mx
    vy = myy - my * my
    vxy = mxy - mx * my
    ux, uy = mx + cx, my + cy
    c1 = jnp.square(K1 * data_range)
    c2 = jnp.square(K2 * data_range)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return jnp.mean(s, axis=(-2, -1))


_ssim_jit = jax.jit(_ssim_mean)


def _check_extent(call: str, shape: tuple[int, ...], what: str) -> None:
    if min(shape) < WINDOW:
        raise ValueError(
            f"{chk.where(call)}: {what} must be at least {WINDOW} × {WINDOW} pixels for the "
            f"{WINDOW} × {WINDOW} SSIM window (got shape {shape})"
        )


def ssim(
    estimate: Float[Array, "n m"],
    reference: Float[Array, "n m"],
    *,
    data_range: float = 1.0,
) -> Float[Array, ""]:
    """Mean structural similarity of two 2-D images (Wang et al. 2004, Gaussian window).

    ``SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))`` with local means,
    variances and covariance weighted by an 11 × 11 Gaussian window of σ = 1.5 pixels (population
    moments), ``C1 = (0.01 R)²``, ``C2 = (0.03 R)²``, ``R = data_range``; the mean is over the
    pixels at least 5 from every border (where the window fits). Equal to scikit-image's
    ``structural_similarity(estimate, reference, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range)``.

    Args:
        estimate: (n, m) the reconstruction, n, m ≥ 11.
        reference: (n, m) the ground truth.
        data_range: R, the dynamic range (default 1.0 for images normalised to [0, 1]).

    Returns:
        () mean SSIM as a JAX scalar in the inputs' floating dtype; 1 for identical images.

    Raises:
        ValueError: shapes differ or are not 2-D, an image smaller than 11 × 11, non-finite values,
            ``data_range <= 0``.

    References:
        Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from error
        visibility to structural similarity", IEEE Trans. Image Process. 13(4):600–612 (2004).
    """
    call = "ssim"
    dr = chk.data_range(call, data_range)
    e, r = chk.pair(call, estimate, reference, ndims=(2,))
    _check_extent(call, tuple(r.shape), "the images")
    return _ssim_jit(e, r, jnp.asarray(dr, e.dtype))


def _axis_mean(e: Array, r: Array, data_range: Array, axis: int) -> Array:
    """Mean SSIM over the slices along `axis` whose reference slice is not all zero."""
    es, rs = jnp.moveaxis(e, axis, 0), jnp.moveaxis(r, axis, 0)
    per_slice = jax.lax.map(
        lambda pair: _ssim_mean(pair[0], pair[1], data_range),
        (es, rs),
        batch_size=min(_SLICE_BATCH, es.shape[0]),
    )
    kept = jnp.any(rs != 0, axis=(1, 2))
    return jnp.sum(jnp.where(kept, per_slice, 0.0)) / jnp.sum(kept)


@jax.jit
def _ssim3d_core(e: Array, r: Array, data_range: Array) -> Array:
    return sum(_axis_mean(e, r, data_range, a) for a in range(3)) / 3


def ssim3d(
    estimate: Float[Array, "x y z"],
    reference: Float[Array, "x y z"],
    *,
    data_range: float = 1.0,
) -> Float[Array, ""]:
    """SSIM3D: the mean over the three axes of the mean 2-D `ssim` over the slices along each axis.

    ``SSIM3D = (1/3) Σ_{a=0,1,2} mean_{s ∈ S_a} ssim(estimate_a[s], reference_a[s])`` where
    ``S_a`` holds the slices along axis ``a`` whose reference slice is not identically zero
    (slices of zero padding or empty field of view are skipped; a slice with any non-zero reference
    value counts, whatever the estimate holds there). Each 2-D SSIM is the one of `ssim`
    (11 × 11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, this `data_range`).

    Args:
        estimate: (x, y, z) the reconstruction, every side ≥ 11.
        reference: (x, y, z) the ground truth.
        data_range: R, the dynamic range (default 1.0 for volumes normalised to [0, 1]).

    Returns:
        () SSIM3D as a JAX scalar in the inputs' floating dtype. Jit-able; under tracing an
        all-zero reference gives NaN instead of the ValueError.

    Raises:
        ValueError: shapes differ or are not 3-D, a side shorter than 11, non-finite values,
            ``data_range <= 0``, a reference that is zero everywhere.
    """
    call = "ssim3d"
    dr = chk.data_range(call, data_range)
    e, r = chk.pair(call, estimate, reference, ndims=(3,))
    _check_extent(call, tuple(r.shape), "every side of the volumes")
    if is_concrete(r) and not bool(jnp.any(r != 0)):
        raise ValueError(
            f"{chk.where(call)}: `reference` is zero everywhere, so every slice is empty and "
            "SSIM3D is undefined"
        )
    return _ssim3d_core(e, r, jnp.asarray(dr, e.dtype))
