"""Peak signal-to-noise ratio, in the image domain (optionally in a mask) and in the projection domain."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from .._checks import is_concrete
from . import _checks as chk


@jax.jit
def _psnr_core(e: Array, r: Array, data_range: Array) -> Array:
    mse = jnp.mean(jnp.square(e - r))
    return 10.0 * jnp.log10(jnp.square(data_range) / mse)


@jax.jit
def _psnr_masked(e: Array, r: Array, mask: Array, data_range: Array) -> Array:
    sq = jnp.where(mask, jnp.square(e - r), 0.0)
    mse = jnp.sum(sq) / jnp.sum(mask)
    return 10.0 * jnp.log10(jnp.square(data_range) / mse)


def psnr(
    estimate: Float[Array, "*shape"],
    reference: Float[Array, "*shape"],
    *,
    data_range: float = 1.0,
    mask: Bool[Array, "*shape"] | None = None,
) -> Float[Array, ""]:
    """PSNR = 10 log₁₀(data_range² / MSE) in dB, MSE over every voxel or over `mask`.

    ``MSE = Σ_m (estimate − reference)² / Σ_m 1`` with the sums over the voxels where `mask` is
    True (all voxels when `mask` is None). `data_range` is fixed by the caller, never read from the
    data: 1.0 for arrays normalised to [0, 1] by `normalise`.

    Args:
        estimate: the reconstruction, any shape (2-D images, 3-D volumes).
        reference: the ground truth, the shape of `estimate`.
        data_range: the peak value of the normalised scale (default 1.0).
        mask: optional boolean array of the same shape (e.g. `body_mask(reference)`).

    Returns:
        () the PSNR in dB as a JAX scalar in the inputs' floating dtype (``float(...)`` for a
        Python number); +inf when the estimate equals the reference on every selected voxel.
        Jit-able: under tracing only shape and dtype are checked.

    Raises:
        ValueError: shapes differ, non-finite values, ``data_range <= 0``, a mask of another
            shape or with no True voxel.
        TypeError: a mask that is not boolean, non-real inputs.

    Example:
        >>> ref01, est01, norm = normalise(mu_true, mu_estimate)
        >>> float(psnr(est01, ref01, mask=body_mask(ref01)))
    """
    call = "psnr"
    dr = chk.data_range(call, data_range)
    e, r = chk.pair(call, estimate, reference)
    dr_arr = jnp.asarray(dr, e.dtype)
    if mask is None:
        return _psnr_core(e, r, dr_arr)
    m = chk.mask(call, mask, r.shape)
    return _psnr_masked(e, r, m, dr_arr)


@functools.partial(jax.jit, static_argnames="has_range")
def _projection_core(e: Array, r: Array, data_range: Array, has_range: bool) -> Array:
    dr = data_range if has_range else jnp.max(r) - jnp.min(r)
    return _psnr_core(e, r, dr)


def projection_psnr(
    estimate_projections: Float[Array, "views u v"],
    reference_projections: Float[Array, "views u v"],
    *,
    data_range: float | None = None,
) -> Float[Array, ""]:
    """PSNR of projections (line integrals) on held-out views, one MSE over all views and pixels.

    ``PSNR = 10 log₁₀(R² / MSE)`` with ``MSE`` the mean squared difference over every pixel of
    every view together (not a mean of per-view PSNRs), and ``R = max − min`` of the reference
    projections over all views unless `data_range` is given. Projections are compared in their own
    units (no normalisation): re-projections of the estimate through the held-out geometry against
    the measured or simulated projections.

    Args:
        estimate_projections: (views, u, v) re-projected estimate on the held-out views (any
            shape is accepted, e.g. (views, u) for fan beam).
        reference_projections: the reference projections, same shape.
        data_range: the range R; default the reference projections' max − min.

    Returns:
        () the PSNR in dB as a JAX scalar in the inputs' floating dtype; +inf for identical inputs.

    Raises:
        ValueError: shapes differ, non-finite values, ``data_range <= 0``, or constant reference
            projections when `data_range` is omitted.
    """
    call = "projection_psnr"
    e = chk.image(call, "estimate_projections", estimate_projections)
    r = chk.image(call, "reference_projections", reference_projections)
    if e.shape != r.shape:
        raise ValueError(
            f"{chk.where(call)}: `estimate_projections` and `reference_projections` must have the "
            f"same shape (got {tuple(e.shape)} and {tuple(r.shape)}); project the estimate "
            "through the held-out views' geometry first"
        )
    dtype = jnp.result_type(float, e.dtype, r.dtype)
    e, r = jnp.asarray(e, dtype), jnp.asarray(r, dtype)
    if data_range is None:
        if is_concrete(r) and not float(jnp.max(r) - jnp.min(r)) > 0:
            raise ValueError(
                f"{chk.where(call)}: the reference projections are constant (max − min = 0), so "
                "they define no data range; pass `data_range` explicitly"
            )
        return _projection_core(e, r, jnp.zeros((), dtype), has_range=False)
    dr = chk.data_range(call, data_range)
    return _projection_core(e, r, jnp.asarray(dr, dtype), has_range=True)
