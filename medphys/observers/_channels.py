"""Channels for channelized observers: Laguerre–Gauss (2D and 3D), Gabor (2D), and 2D channels
applied to slices of a volume.

A channel matrix is an array ``(n_channels, *roi_shape)``; a channel output is the inner product
of one channel with an image (pixel values times channel values, summed). Coordinates are in
pixels (voxels), measured from the channel centre, which defaults to the geometric ROI centre
``(size − 1)/2`` along each axis (between two pixels for an even size; pass ``center`` to put it on
a pixel, e.g. ``size // 2``).

Laguerre–Gauss (LG), 2D, width a (pixels):

    u_p(r) = √2/a · exp(−π r²/a²) · L_p(2π r²/a²),   p = 0, 1, …

with L_p the Laguerre polynomials. These are orthonormal over the plane (∫ u_p u_q d²r = δ_pq),
so on a pixel grid that holds them (a ≲ ROI size / 3) the channel matrix is nearly orthonormal.
They span rotationally symmetric functions and suit rotationally symmetric signals
(Barrett & Myers 2004, §14.2; Gallas & Barrett 2003).

LG, 3D: the radial functions orthonormal with the 3D volume element,

    u_p(r) = [√(2π) p! / Γ(p + 3/2)]^{1/2} a^{−3/2} · exp(−π r²/a²) · L_p^{(1/2)}(2π r²/a²),

with L_p^{(1/2)} the generalised Laguerre polynomials; p = 0 is the product of three 1D Gaussians
of the 2D form. Isotropic voxels are assumed (widths in voxels).

Gabor (2D): G(x, y) = exp(−4 ln2 · ρ²/w_s²) · cos(2π f_c (x cos θ + y sin θ) + β) with ρ the
distance from the centre. The default passbands are one octave wide, centred at
f_c = 3/128, 3/64, 3/32, 3/16 cycles/pixel, with spatial FWHM w_s = 4 ln2 / (π Δf) and
Δf = 2 f_c / 3 (w_s ≈ 56.5, 28.2, 14.1, 7.1 pixels), 4 orientations θ = kπ/4 and 2 phases
β = 0, π/2: 32 channels (Wunderlich & Noo; Abbey & Barrett 2001; Eckstein et al.). Each Gabor
channel is scaled to unit Euclidean norm on the grid.

References:
    H. H. Barrett, K. J. Myers, *Foundations of Image Science*, Wiley (2004), ch. 14.
    B. D. Gallas, H. H. Barrett, "Validating the use of channels to estimate the ideal linear
    observer", J. Opt. Soc. Am. A 20(9):1725–1738 (2003).
    C. K. Abbey, H. H. Barrett, "Human- and model-observer performance in ramp-spectrum noise:
    effects of regularization and object variability", J. Opt. Soc. Am. A 18(3):473–488 (2001).
    A. Wunderlich, F. Noo, "Estimation of channelized Hotelling observer performance with known
    class means or known difference of class means", IEEE Trans. Med. Imaging 28(8):1198–1207
    (2009).
    L. Platiša et al., "Channelized Hotelling observers for the assessment of volumetric imaging
    data sets", J. Opt. Soc. Am. A 28(6):1145–1163 (2011).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _checks as chk

CHANNELS = ("laguerre-gauss", "gabor")

#: Default Gabor passband centres (cycles/pixel), one octave apart.
GABOR_FREQUENCIES = (3 / 128, 3 / 64, 3 / 32, 3 / 16)


def _shape(call: str, roi_shape: Any, dims: tuple[int, ...]) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in roi_shape)
    except TypeError:
        raise TypeError(
            f"{chk.where(call)}: `roi_shape` must be a tuple of sizes (got {roi_shape!r})"
        ) from None
    if len(shape) not in dims or any(s < 1 for s in shape):
        allowed = " or ".join(f"{d}D" for d in dims)
        raise ValueError(
            f"{chk.where(call)}: `roi_shape` must be a {allowed} shape of positive sizes "
            f"(got {roi_shape!r})"
        )
    return shape


def _center(call: str, center: Any, shape: tuple[int, ...]) -> np.ndarray:
    if center is None:
        return (np.asarray(shape, dtype=float) - 1.0) / 2.0
    c = np.asarray(center, dtype=float)
    if c.shape != (len(shape),) or not np.all(np.isfinite(c)):
        raise ValueError(
            f"{chk.where(call)}: `center` must be {len(shape)} finite pixel coordinates "
            f"(got {center!r})"
        )
    return c


def _radius2(shape: tuple[int, ...], center: np.ndarray) -> np.ndarray:
    coords = [np.arange(n) - c for n, c in zip(shape, center, strict=True)]
    axes = np.meshgrid(*coords, indexing="ij")
    return sum(a * a for a in axes)


def _laguerre(p_max: int, alpha: float, x: np.ndarray) -> list[np.ndarray]:
    """L_0^α … L_{p_max}^α at x by the three-term recurrence."""
    out = [np.ones_like(x)]
    if p_max >= 1:
        out.append(1.0 + alpha - x)
    for k in range(1, p_max):
        out.append(((2 * k + 1 + alpha - x) * out[k] - (k + alpha) * out[k - 1]) / (k + 1))
    return out


def laguerre_gauss(
    roi_shape: Sequence[int],
    *,
    n_channels: int,
    width_px: float,
    center: Sequence[float] | None = None,
) -> Float[Array, " channels *roi"]:
    """Laguerre–Gauss channels on a 2D or 3D ROI (orders p = 0 … n_channels − 1).

    Args:
        roi_shape: (nx, ny) or (nx, ny, nz).
        n_channels: number of channels (orders 0 … n_channels − 1).
        width_px: Gaussian width a in pixels (voxels): u_0 ∝ exp(−π r²/a²). Match it to the
            signal: a ≈ 1.5–3 × the signal's radius is common (VICTRE: a = 30 px, 5 channels).
        center: channel centre in pixel coordinates (default: the ROI centre ``(size − 1)/2``).

    Returns:
        (n_channels, *roi_shape) channel matrix, continuous-space normalisation (module docstring).

    Raises:
        ValueError: `roi_shape` not 2D/3D, `n_channels` < 1, `width_px` ≤ 0, a bad `center`.

    Example:
        >>> u = laguerre_gauss((64, 64), n_channels=5, width_px=15.0)
        >>> u.shape
        (5, 64, 64)

    References:
        Barrett & Myers (2004) §14.2.3; Gallas & Barrett, JOSA A 20:1725 (2003); Platiša et al.,
        JOSA A 28:1145 (2011) for volumetric channels.
    """
    call = "laguerre_gauss"
    shape = _shape(call, roi_shape, (2, 3))
    n = chk.positive_int(call, "n_channels", n_channels)
    a = chk.positive_float(call, "width_px", width_px)
    c = _center(call, center, shape)
    x = 2.0 * math.pi * _radius2(shape, c) / (a * a)
    gauss = np.exp(-0.5 * x)
    if len(shape) == 2:
        polys = _laguerre(n - 1, 0.0, x)
        norms = [math.sqrt(2.0) / a] * n
    else:
        polys = _laguerre(n - 1, 0.5, x)
        norms = [
            math.sqrt(math.sqrt(2.0 * math.pi) * math.factorial(p) / math.gamma(p + 1.5)) / a**1.5
            for p in range(n)
        ]
    u = np.stack([k * gauss * poly for k, poly in zip(norms, polys, strict=True)])
    return jnp.asarray(u, dtype=jnp.result_type(float))


def gabor(
    roi_shape: Sequence[int],
    *,
    frequencies: Sequence[float] = GABOR_FREQUENCIES,
    n_orientations: int = 4,
    phases: Sequence[float] = (0.0, math.pi / 2),
    widths_px: Sequence[float] | None = None,
    center: Sequence[float] | None = None,
) -> Float[Array, "channels x y"]:
    """Gabor channels on a 2D ROI: passbands × orientations × phases, each of unit norm.

    Args:
        roi_shape: (nx, ny).
        frequencies: passband centre frequencies f_c in cycles/pixel (each < 0.5).
        n_orientations: orientations θ = kπ/n_orientations, k = 0 … n_orientations − 1.
        phases: phases β in radians.
        widths_px: spatial FWHM w_s of each passband's Gaussian envelope in pixels (default: one
            octave, w_s = 6 ln2 / (π f_c)).
        center: channel centre in pixel coordinates (default: the ROI centre).

    Returns:
        (len(frequencies) · n_orientations · len(phases), nx, ny), ordered frequency-major, then
        orientation, then phase.

    Raises:
        ValueError: a 3D `roi_shape`, a frequency outside (0, 0.5), widths that do not match the
            frequencies.

    References:
        Abbey & Barrett, JOSA A 18:473 (2001); Wunderlich & Noo, IEEE TMI 28:1198 (2009).
    """
    call = "gabor"
    shape = _shape(call, roi_shape, (2,))
    freqs = [float(f) for f in frequencies]
    if not freqs or any(not (0.0 < f < 0.5) for f in freqs):
        raise ValueError(
            f"{chk.where(call)}: `frequencies` must be cycles/pixel in (0, 0.5) "
            f"(got {list(frequencies)})"
        )
    n_or = chk.positive_int(call, "n_orientations", n_orientations)
    ph = [float(b) for b in phases]
    if not ph:
        raise ValueError(f"{chk.where(call)}: `phases` must not be empty")
    if widths_px is None:
        widths = [6.0 * math.log(2.0) / (math.pi * f) for f in freqs]
    else:
        widths = [chk.positive_float(call, "widths_px", w) for w in widths_px]
        if len(widths) != len(freqs):
            raise ValueError(
                f"{chk.where(call)}: `widths_px` must give one width per frequency "
                f"({len(freqs)}) (got {len(widths)})"
            )
    c = _center(call, center, shape)
    x, y = np.meshgrid(*[np.arange(n) - cc for n, cc in zip(shape, c, strict=True)], indexing="ij")
    r2 = x * x + y * y
    out = []
    for f, w in zip(freqs, widths, strict=True):
        env = np.exp(-4.0 * math.log(2.0) * r2 / (w * w))
        for k in range(n_or):
            th = k * math.pi / n_or
            arg = 2.0 * math.pi * f * (x * math.cos(th) + y * math.sin(th))
            for b in ph:
                g = env * np.cos(arg + b)
                out.append(g / np.linalg.norm(g))
    return jnp.asarray(np.stack(out), dtype=jnp.result_type(float))


def slice_channels(
    channels: Float[Array, "channels x y"],
    volume_shape: Sequence[int],
    *,
    axis: int = 2,
    slices: Sequence[int] | None = None,
) -> Float[Array, "features x y z"]:
    """Apply 2D channels to slices of a 3D ROI: each channel on each listed slice separately.

    With one slice (default: the central one) this is the single-slice CHO; with several, the
    channel outputs of every slice are kept as separate features (a multi-slice CHO in the sense
    of Platiša et al. 2011, with the Hotelling step across slices).

    Args:
        channels: (n, a, b) 2D channels; (a, b) must be the volume's shape without `axis`.
        volume_shape: (nx, ny, nz).
        axis: the slice axis (0, 1 or 2).
        slices: slice indices along `axis` (default: ``[size // 2]``).

    Returns:
        (n · len(slices), nx, ny, nz), slice-major: features ``k · n + j`` are channel j on slice k.

    Raises:
        ValueError: shapes that do not fit, an axis or a slice out of range.
    """
    call = "slice_channels"
    shape = _shape(call, volume_shape, (3,))
    ch = np.asarray(channels)
    if ch.ndim != 3:
        raise ValueError(
            f"{chk.where(call)}: `channels` must be 2D channels of shape (n, a, b) "
            f"(got shape {ch.shape})"
        )
    if isinstance(axis, bool) or axis not in (0, 1, 2, -1, -2, -3):
        raise ValueError(f"{chk.where(call)}: `axis` must be 0, 1 or 2 (got {axis!r})")
    ax = axis % 3
    plane = tuple(s for i, s in enumerate(shape) if i != ax)
    if ch.shape[1:] != plane:
        raise ValueError(
            f"{chk.where(call)}: `channels` have in-plane shape {ch.shape[1:]} but slices of a "
            f"{shape} volume along axis {ax} have shape {plane}"
        )
    idx = [shape[ax] // 2] if slices is None else [int(s) for s in slices]
    if not idx or any(not (0 <= s < shape[ax]) for s in idx):
        raise ValueError(
            f"{chk.where(call)}: `slices` must be indices in [0, {shape[ax]}) (got {slices!r})"
        )
    out = np.zeros((ch.shape[0] * len(idx), *shape), dtype=ch.dtype)
    moved = np.moveaxis(out, ax + 1, 1)  # (features, slice, a, b) view
    for k, s in enumerate(idx):
        moved[k * ch.shape[0] : (k + 1) * ch.shape[0], s] = ch
    return jnp.asarray(out)


def make_channels(name: str, roi_shape: Sequence[int], **options: Any) -> Array:
    """Channels by name (for configuration files): ``"laguerre-gauss"`` or ``"gabor"``.

    Args:
        name: ``"laguerre-gauss"`` (2D or 3D, `laguerre_gauss`) or ``"gabor"`` (2D, `gabor`).
        roi_shape: the ROI shape.
        **options: keyword arguments of the named factory.

    Returns:
        (n_channels, *roi_shape).

    Raises:
        ValueError: an unknown name (the message lists the known ones), or the factory's errors.
    """
    kind = chk.choice("make_channels", "name", name, CHANNELS)
    if kind == "laguerre-gauss":
        return laguerre_gauss(roi_shape, **options)
    return gabor(roi_shape, **options)
