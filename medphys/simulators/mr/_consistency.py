"""Hard k-space data consistency for magnitude images that a model changed (a refiner, a
denoiser), and the k-space residual that measures how far such an image left its scan.

A magnitude image ``r`` (root-sum-of-squares scale, as `MRResult.image`) is lifted back to the
scan's coil k-space through the scan's own coil sensitivities ``S_c`` and object phase ``φ``:

    m = r / sqrt(Σ_c |S_c|²) · exp(iφ),    k_c = F(S_c m)

with ``φ`` the object phase of the scan: the phase of the SENSE-combined zero-filled image
``Σ_c S_c* x_c / Σ_c |S_c|²`` (``x_c`` the inverse FFT of each coil's acquired k-space) when
every line was acquired, and otherwise the phase of the CG-SENSE reconstruction of the acquired
lines (`sense`, `PHASE_ITERATIONS` iterations), since the zero-filled combination of an
undersampled scan is aliased. For a fully sampled, noise-free scan the lift is exact: the scan's
own magnitude image lifts to its measured k-space. `reconstructed` gives an undersampled scan the
CG-SENSE magnitude image on the root-sum-of-squares scale (``|x| sqrt(Σ_c |S_c|²)``), the image
a refiner or a reader should start from. Hard data consistency then
keeps the acquired lines and the image's own values elsewhere,

    k_c ← M y_c + (1 − M) k_c,

the data-consistency layer of unrolled MR networks (Schlemper et al. 2018, with the noise-free
limit λ → ∞), and `data_consistency` returns the root-sum-of-squares image of that k-space.
The phase depends on the scan only: `object_phase` computes it once, and every function here
takes it as ``phase=`` (a training loop that lifts many images of one scan pays the CG-SENSE
iterations once).
`kspace_residual` is ``‖M (k − y)‖ / ‖M y‖`` over all coils and slices, to compare with the
scan's noise floor `noise_residual` (``σ sqrt(2 n) / ‖M y‖``, ``n`` the acquired samples). All
three are pure JAX (jit, vmap, grad in the image).

References:
    J. Schlemper et al., "A deep cascade of convolutional neural networks for dynamic MR image
    reconstruction", IEEE TMI 37(2), 491-503 (2018).
    K. P. Pruessmann et al., "SENSE: sensitivity encoding for fast MRI", MRM 42, 952-962 (1999).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

from ...volume import Volume
from . import _checks as chk
from ._kspace import fft2c, ifft2c, rss
from ._protocol import MRResult
from ._recon import _cg_sense

__all__ = [
    "consistent_kspace",
    "data_consistency",
    "kspace_residual",
    "noise_residual",
    "object_phase",
    "reconstructed",
]

PHASE_ITERATIONS = 20  # CG-SENSE iterations behind an undersampled scan's object phase


def _checked(where: str, image: Any, result: Any) -> Array:
    if not isinstance(result, MRResult):
        raise TypeError(f"{where}: `result` must be an MRResult (got {type(result).__name__})")
    shape = tuple(getattr(image, "shape", ()))
    want = tuple(result.kspace.shape[1:])
    if shape != want:
        raise ValueError(
            f"{where}: `image` must have the scan's image shape (x, y, z) = {want} "
            f"(got {shape}); map over a batch with jax.vmap"
        )
    image = jnp.asarray(getattr(image, "data", image))
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(f"{where}: `image` must be a real magnitude image (got {image.dtype})")
    return image


def _sampled(result: MRResult, dtype: Any) -> Array:
    """The acquired-line mask broadcast over ``(coils, kx, ky, z)``."""
    return jnp.asarray(result.mask, dtype)[None, None, :, None]


def _sense(result: MRResult, dtype: Any, n_iter: int) -> Complex[Array, "x y z"]:
    rdtype = jnp.finfo(dtype).dtype
    x, _ = _cg_sense(
        jnp.asarray(result.kspace, dtype),
        jnp.asarray(result.coil_maps, dtype),
        jnp.asarray(result.mask, rdtype),
        jnp.zeros((), rdtype),
        n_iter,
    )
    return x


def _phase(result: MRResult, dtype: Any) -> Complex[Array, "x y z"]:
    coils = jnp.asarray(result.coil_maps, dtype)
    power = jnp.sum(jnp.abs(coils) ** 2, axis=0)
    safe = jnp.where(power > 0, power, 1.0)
    zero_filled = ifft2c(jnp.asarray(result.kspace, dtype))
    combined = jnp.sum(jnp.conj(coils) * zero_filled, axis=0) / safe
    full = jnp.all(jnp.asarray(result.mask) > 0)
    combined = jnp.where(full, combined, _sense(result, dtype, PHASE_ITERATIONS))
    size = jnp.abs(combined)
    has_phase = size > 0
    return jnp.where(has_phase, combined / jnp.where(has_phase, size, 1.0), 1.0)


def object_phase(result: MRResult) -> Complex[Array, "x y z"]:
    """The scan's object phase ``exp(iφ)`` (module docstring), unit modulus, to pass as
    ``phase=`` to the functions here. Pure JAX (jit, vmap over scans).

    Raises:
        TypeError: ``result`` is not an `MRResult`.
    """
    if not isinstance(result, MRResult):
        raise TypeError(
            f"{chk.PREFIX}object_phase: `result` must be an MRResult (got {type(result).__name__})"
        )
    dtype = jnp.result_type(jnp.asarray(result.kspace).dtype, jnp.complex64)
    return _phase(result, dtype)


def _lift(image: Array, result: MRResult, phase: Any) -> Complex[Array, "coils kx ky z"]:
    """The coil k-space of a magnitude image under the scan's coils and object phase."""
    dtype = jnp.result_type(image.dtype, jnp.complex64)
    coils = jnp.asarray(result.coil_maps, dtype)
    power = jnp.sum(jnp.abs(coils) ** 2, axis=0)
    covered = power > 0
    safe = jnp.where(covered, power, 1.0)
    phase = _phase(result, dtype) if phase is None else jnp.asarray(phase, dtype)
    obj = jnp.where(covered, image / jnp.sqrt(safe), 0.0) * phase
    return fft2c(coils * obj[None])


def consistent_kspace(
    image: Float[Array, "x y z"], result: MRResult, *, phase: Any = None
) -> Complex[Array, "coils kx ky z"]:
    """The coil k-space of ``image`` with the scan's acquired lines put back (hard data
    consistency).

    Args:
        image: magnitude image on the scan's grid, on the scale of ``result.image``.
        result: the `MRResult` whose k-space, coil maps and mask are kept.
        phase: the scan's `object_phase`, when computed already.

    Returns:
        ``(coils, kx, ky, z)`` complex k-space, equal to ``result.kspace`` on every acquired line.

    Raises:
        TypeError, ValueError: ``result`` not an `MRResult`; an image of another shape or a
            complex image.
    """
    image = _checked(f"{chk.PREFIX}consistent_kspace", image, result)
    lifted = _lift(image, result, phase)
    m = _sampled(result, lifted.real.dtype)
    return m * jnp.asarray(result.kspace, lifted.dtype) + (1 - m) * lifted


def data_consistency(
    image: Float[Array, "x y z"], result: MRResult, *, phase: Any = None
) -> Float[Array, "x y z"]:
    """``image`` made consistent with the scan's acquired k-space: the root-sum-of-squares image
    of `consistent_kspace`. A fully sampled scan gives back its own image whatever ``image`` is;
    a scan with no line acquired gives back ``image`` (where a coil sees it). ``phase``: the
    scan's `object_phase`, when computed already."""
    return rss(ifft2c(consistent_kspace(image, result, phase=phase)))


def kspace_residual(
    image: Float[Array, "x y z"], result: MRResult, *, phase: Any = None
) -> Float[Array, ""]:
    """``‖M (k − y)‖ / ‖M y‖``: how far ``image``'s coil k-space is from the acquired lines,
    relative to them (0 for the scan's own noise-free, fully sampled image; compare with
    `noise_residual`). ``phase``: the scan's `object_phase`, when computed already."""
    image = _checked(f"{chk.PREFIX}kspace_residual", image, result)
    lifted = _lift(image, result, phase)
    m = _sampled(result, lifted.real.dtype)
    y = jnp.asarray(result.kspace, lifted.dtype)
    return jnp.sqrt(jnp.sum(jnp.abs(m * (lifted - y)) ** 2) / jnp.sum(jnp.abs(m * y) ** 2))


def noise_residual(result: MRResult) -> Float[Array, ""]:
    """The scan's noise floor on the `kspace_residual` scale: ``σ sqrt(2 n) / ‖M y‖`` with ``σ``
    the per-component noise standard deviation and ``n`` the acquired complex samples (what the
    noise-free object's residual is on average)."""
    y = jnp.asarray(result.kspace)
    m = _sampled(result, y.real.dtype)
    n = jnp.sum(m) * y.shape[0] * y.shape[1] * y.shape[3]
    return result.noise_std * jnp.sqrt(2 * n) / jnp.sqrt(jnp.sum(jnp.abs(m * y) ** 2))


def reconstructed(result: MRResult, *, n_iter: int = 30) -> MRResult:
    """``result`` with its ``image`` replaced by the CG-SENSE reconstruction of an undersampled
    scan, as magnitude on the root-sum-of-squares scale (``|x| sqrt(Σ_c |S_c|²)``); a fully
    sampled scan is returned as it is (its root-sum-of-squares image is not aliased). Runs on
    the host (it reads the mask), before any jit.

    Args:
        result: a simulated scan (`MRResult`).
        n_iter: CG-SENSE iterations (`sense`).

    Raises:
        TypeError: ``result`` is not an `MRResult`.
    """
    where = f"{chk.PREFIX}reconstructed"
    if not isinstance(result, MRResult):
        raise TypeError(f"{where}: `result` must be an MRResult (got {type(result).__name__})")
    n_iter = chk.integer(where, "n_iter", n_iter, minimum=1)
    if np.all(np.asarray(result.mask) > 0):
        return result
    dtype = jnp.result_type(result.image.data.dtype, jnp.complex64)
    x = _sense(result, dtype, n_iter)
    power = jnp.sum(jnp.abs(jnp.asarray(result.coil_maps, dtype)) ** 2, axis=0)
    image = (jnp.abs(x) * jnp.sqrt(power)).astype(result.image.data.dtype)
    return dataclasses.replace(result, image=Volume(data=image, affine=result.image.affine))
