"""Noise power spectrum (NPS) of 2-D images inside a mask, radially averaged, differentiable.

Definition (IEC 62220-1 / ICRU Report 87 §4, for a region instead of square ROIs): with the noise
image ``n = (x − local_mean(x)) · m`` over a boolean mask ``m``,

    NPS(fx, fy) = Δx Δy / Σm · |DFT₂(n)|²            (units: image units² · mm²)

averaged over the images; by Parseval the sum over all frequency bins times the bin area
``1 / (Nx Δx · Ny Δy)`` equals the mean of ``n²`` over the mask (the noise variance). The radial
profile averages NPS(fx, fy) over annuli of ``|f|`` (cycles/mm) from 0 to the Nyquist frequency
``1 / (2 max(Δx, Δy))`` in `bins` equal bins (annuli with no DFT sample are NaN).

Detrending (``detrend_px``): anatomy is removed by subtracting a normalised Gaussian local mean
taken within the mask, ``local_mean = G_σ ∗ (x·m) / G_σ ∗ m`` (σ in pixels), the usual high-pass
that makes NPS measurable on patient images without a uniform phantom region. It also attenuates
noise below about ``1 / (2π σ Δx)`` cycles/mm, identically for every image measured with the same
settings: compare spectra measured the same way. Within σ of the mask's border the window is
one-sided, so a strong intensity gradient there leaks into the noise: keep masks away from edges. ``detrend_px=None`` subtracts the mask's mean
only (a uniform phantom region), and the spectrum is the textbook one.

The mask should lie inside one tissue (soft tissue away from edges): `soft_tissue_mask` makes it
from a CT image in HU.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _checks as chk


def _gaussian_taps(sigma_px: float) -> np.ndarray:
    radius = max(1, math.ceil(3.0 * sigma_px))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma_px) ** 2)
    return g / g.sum()


def _blur(x: Float[Array, "... n m"], taps: np.ndarray) -> Float[Array, "... n m"]:
    """Separable Gaussian with zero padding over the last two axes."""
    r = (len(taps) - 1) // 2
    pad = [(0, 0)] * (x.ndim - 2)
    xp = jnp.pad(x, [*pad, (r, r), (0, 0)])
    n, m = x.shape[-2:]
    rows = sum(float(w) * xp[..., k : k + n, :] for k, w in enumerate(taps))
    rp = jnp.pad(rows, [*pad, (0, 0), (r, r)])
    return sum(float(w) * rp[..., :, k : k + m] for k, w in enumerate(taps))


def noise_image(
    images: Float[Array, "... n m"], mask: Array, *, detrend_px: float | None = 4.0
) -> Float[Array, "... n m"]:
    """The detrended noise ``(x − local_mean(x)) · mask`` that `nps` transforms (module docstring)."""
    m = jnp.asarray(mask, images.dtype)
    if detrend_px is None:
        count = jnp.maximum(jnp.sum(m, axis=(-2, -1), keepdims=True), 1.0)
        mean = jnp.sum(images * m, axis=(-2, -1), keepdims=True) / count
        return (images - mean) * m
    taps = _gaussian_taps(detrend_px)
    weight = _blur(m, taps)
    local = _blur(images * m, taps) / jnp.where(weight > 1e-6, weight, 1.0)
    return (images - local) * m


def _radial_index(shape: tuple[int, int], spacing: tuple[float, float], bins: int):
    fx = np.fft.fftfreq(shape[0], spacing[0])
    fy = np.fft.fftfreq(shape[1], spacing[1])
    radius = np.hypot(fx[:, None], fy[None, :])
    nyquist = 1.0 / (2.0 * max(spacing))
    edges = np.linspace(0.0, nyquist, bins + 1)
    index = np.clip(np.digitize(radius, edges) - 1, 0, bins)  # bin `bins` = beyond Nyquist
    index[radius > nyquist] = bins
    centres = 0.5 * (edges[:-1] + edges[1:])
    return index, centres


def nps(
    images: Float[Array, "*batch n m"],
    mask: Array,
    *,
    spacing_mm: tuple[float, float] | float,
    detrend_px: float | None = 4.0,
    bins: int = 16,
) -> tuple[np.ndarray, Float[Array, " bins"]]:
    """Radially averaged noise power spectrum of 2-D images inside a mask (module docstring).

    Args:
        images: ``(n, m)`` or ``(batch, n, m)`` images (e.g. HU); the spectrum is their mean.
        mask: boolean ``(n, m)`` or ``(batch, n, m)``: where noise is measured (one tissue).
        spacing_mm: pixel spacing along the two axes (mm).
        detrend_px: σ (pixels) of the Gaussian local mean removed first; None for the mask mean.
        bins: radial frequency bins from 0 to Nyquist.

    Returns:
        ``(frequencies, spectrum)``: bin centres (cycles/mm, NumPy) and the mean NPS in each bin
        (image units² · mm²; NaN where a bin has no frequency sample). Differentiable in
        ``images`` (jit-able with a fixed mask shape).

    Raises:
        ValueError: images not 2-D or 3-D, a mask of another shape, an empty mask, a
            non-positive spacing, detrend_px ≤ 0 or bins < 1.

    References:
        ICRU Report 87 (2012) §4.3; IEC 62220-1-1:2015 (NPS estimation); Dolly et al., Med.
        Phys. 43 (2016) 4537 (NPS inside patient images).
    """
    call = "nps"
    x = chk.image(call, "images", images, ndims=(2, 3))
    m = jnp.asarray(mask)
    if m.shape != x.shape[-m.ndim :] or m.ndim not in (2, 3) or m.ndim > x.ndim:
        raise ValueError(
            f"{chk.where(call)}: `mask` must have the images' shape {tuple(x.shape)} or one "
            f"image's {tuple(x.shape[-2:])} (got {tuple(m.shape)})"
        )
    if m.dtype != bool:
        raise TypeError(f"{chk.where(call)}: `mask` must be boolean (got dtype {m.dtype})")
    sp = (float(spacing_mm),) * 2 if np.isscalar(spacing_mm) else tuple(map(float, spacing_mm))
    if len(sp) != 2 or min(sp) <= 0 or not all(map(math.isfinite, sp)):
        raise ValueError(
            f"{chk.where(call)}: `spacing_mm` must be one or two positive numbers (got {spacing_mm})"
        )
    if detrend_px is not None and not detrend_px > 0:
        raise ValueError(
            f"{chk.where(call)}: `detrend_px` must be > 0 pixels or None (got {detrend_px})"
        )
    if int(bins) < 1:
        raise ValueError(f"{chk.where(call)}: `bins` must be >= 1 (got {bins})")
    if chk.is_concrete(m) and not np.any(np.asarray(m)):
        raise ValueError(f"{chk.where(call)}: `mask` selects no pixel")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    m = jnp.broadcast_to(m, x.shape)
    noise = noise_image(x, m, detrend_px=detrend_px)
    counts = jnp.sum(m.astype(x.dtype), axis=(-2, -1))
    power = jnp.abs(jnp.fft.fft2(noise)) ** 2 * (sp[0] * sp[1])
    power = power / jnp.maximum(counts, 1.0)[..., None, None]
    if power.ndim == 3:
        power = jnp.mean(power, axis=0)
    index, centres = _radial_index(tuple(x.shape[-2:]), sp, int(bins))
    flat = jnp.asarray(index.reshape(-1))
    sums = jax.ops.segment_sum(power.reshape(-1), flat, num_segments=int(bins) + 1)[:-1]
    sizes = np.bincount(index.reshape(-1), minlength=int(bins) + 1)[:-1]
    spectrum = jnp.where(sizes > 0, sums / np.maximum(sizes, 1), jnp.nan)
    return centres, spectrum


def soft_tissue_mask(
    hu: Float[Array, "*batch n m"],
    *,
    low_hu: float = -100.0,
    high_hu: float = 200.0,
    erode_px: int = 3,
) -> np.ndarray:
    """Pixels of a CT image (HU) within ``[low_hu, high_hu]`` whose whole ``(2·erode_px + 1)²``
    neighbourhood is too: soft tissue away from edges, where `nps` measures noise (host, NumPy)."""
    from scipy import ndimage

    a = np.asarray(hu)
    inside = (a >= low_hu) & (a <= high_hu)
    if erode_px <= 0:
        return inside
    size = (1,) * (a.ndim - 2) + (2 * erode_px + 1,) * 2
    return ndimage.minimum_filter(inside.astype(np.uint8), size=size, mode="constant") > 0
