"""Hounsfield units: the water calibration of a protocol, the HU transform, and `reconstruct`.

Water calibration
    A polychromatic scanner has no single μ of water: the beam hardens along each ray. The
    protocol's reference is a water cylinder of diameter ``D = protocol.water_diameter_mm``
    centred on the rotation axis, as in a scanner's water calibration: μ_water is the value an
    ideal (continuous) FBP of its noise-free polychromatic scan gives at its centre. For a radially
    symmetric object the inverse Abel transform gives that value in closed form,

        mu_water = (2/pi) ∫_0^{pi/2} mu_bar(2R cos phi) dphi,    R = D/2,
        mu_bar(L) = sum_E w_E mu(E) e^{-mu(E) L} / sum_E w_E e^{-mu(E) L},

    where ``mu_bar(L)`` is the detector-weighted μ of the beam hardened by ``L`` of water
    (``w_E = N_E E`` for an energy-integrating detector, ``N_E sum_b P(b|E)`` for a photon-counting
    one, times the bowtie's transmission on the central ray) and ``mu = mu_water(E) - mu_air(E)``
    (the flat field is an air scan). It is evaluated with 64-point Gauss–Legendre quadrature; for a
    monoenergetic beam it is μ(E) exactly. With this calibration the centre of that cylinder reads
    0 HU; beam hardening makes other sizes and positions read differently (cupping).

Water beam-hardening correction (linearisation)
    For each detector column (its spectrum differs behind a bowtie) the polychromatic line
    integral of ``L`` mm of water, ``p(L) = -log(sum_E w_E e^{-mu(E) L} / sum_E w_E)``, is
    tabulated for ``L`` in [0, 600] mm and the water-equivalent length is fitted as a polynomial
    without constant term, ``L(p) = sum_{k=1..6} c_k p^k`` (least squares, relative error < 1e-4
    over the table). The corrected projection is ``mu_ref L(p)`` with ``mu_ref`` the protocol's
    calibrated `water_mu`: water then reconstructs to ``mu_ref`` everywhere (no cupping), and 0 HU
    stays 0 HU. Denser materials (bone, iodine) keep a residual (second-order) beam hardening.

References:
    A. C. Kak and M. Slaney, Principles of Computerized Tomographic Imaging, 1988, §4.1 (beam
    hardening). J. Hsieh, Computed Tomography, 3rd ed., 2015, §5.2 (calibration), §7.6.
    G. T. Herman, "Correction for beam hardening in computed tomography", Phys. Med. Biol.
    24(1):81–106, 1979.
    M. Kachelrieß, K. Sourbelle, W. A. Kalender, "Empirical cupping correction: a first-order
    raw data beam hardening correction method for fan-beam CT", Med. Phys. 33(5):1269–1274, 2006.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ... import materials
from ...volume import Volume
from ..xray import (
    MIN_COUNTS,
    CTProtocol,
    ScatterCorrection,
    XrayScan,
    correct_scatter,
    detected_spectrum_of,
    detector_pitch_mm,
)

__all__ = [
    "correct_beam_hardening",
    "ct_number",
    "remove_scatter",
    "to_hu",
    "water_mu",
]

_BHC_MAX_WATER_MM = 600.0
_BHC_DEGREE = 6


def effective_weights(protocol: CTProtocol, *, per_column: bool) -> np.ndarray:
    """Detector-weighted fluence per energy ``(columns, energies)`` (float64, unnormalised):
    `medphys.simulators.xray.detected_spectrum_of` summed over the detector's channels, for the
    central ray only (one row) or every detector column of the protocol's geometry."""
    w1, _ = detected_spectrum_of(protocol, per_column=per_column)
    return np.sum(w1, axis=2)


@functools.lru_cache(maxsize=256)
def _calibrated_mu(
    energies: tuple[float, ...], photons: tuple[float, ...], radius_cm: float, material: str
) -> float:
    """μ of ``material`` (relative to air) at the centre of the water calibration cylinder: the
    Abel integral of the module docstring with the beam hardened by water and weighted by
    ``material``'s μ (for ``"water"``: the calibrated μ_water)."""
    e = np.asarray(energies)
    w = np.asarray(photons) * e
    table = materials.attenuation_table(["water", "air", material], e)
    mu_w = table[0] - table[1]
    mu_m = table[2] - table[1]
    x, wq = np.polynomial.legendre.leggauss(64)
    phi = (x + 1) * (math.pi / 4)  # [0, π/2]
    length = 2 * radius_cm * np.cos(phi)
    t = np.exp(-np.outer(length, mu_w)) * w[None, :]
    mu_bar = (t @ mu_m) / np.sum(t, axis=1)
    return float((2 / math.pi) * (math.pi / 4) * np.sum(wq * mu_bar))


def _water_mu_cached(
    energies: tuple[float, ...], photons: tuple[float, ...], radius_cm: float
) -> float:
    return _calibrated_mu(energies, photons, radius_cm, "water")


def ct_number(material: str, protocol: CTProtocol, *, diameter_mm: float | None = None) -> float:
    """The CT number (HU) of a small region of ``material`` at the centre of the protocol's water
    calibration cylinder: ``1000 (μ_m − μ_water) / μ_water``, both the calibrated (hardened by the
    water, detector-weighted) μ of the module docstring, relative to air.

    This is what an insert of ``material`` reads in a water phantom after the water calibration
    (and what the water beam-hardening correction keeps for soft tissue); large or dense
    regions add their own beam hardening.

    Args:
        material: a `medphys.materials` name (tissues and contrast mixtures).
        protocol: supplies the spectrum, detector, bowtie and ``water_diameter_mm``.
        diameter_mm: override the calibration cylinder's diameter (mm).

    Raises:
        UnknownNameError: an unknown material. ValueError: a non-positive diameter.

    Example:
        >>> ct_number("liver", medphys.simulators.load("ct-chest-120kvp"))  # doctest: +SKIP
        57.6
    """
    mu_water = water_mu(protocol, diameter_mm=diameter_mm)
    d = protocol.water_diameter_mm if diameter_mm is None else float(diameter_mm)
    s = protocol.spectrum
    energies = tuple(float(v) for v in np.asarray(s.energies_kev, np.float64))
    photons = tuple(
        float(v) for v in effective_weights(protocol, per_column=False)[0] / np.asarray(energies)
    )
    mu = _calibrated_mu(energies, photons, d / 20.0, materials.get(material).name)
    return 1000.0 * (mu - mu_water) / mu_water


def water_mu(protocol: CTProtocol, *, diameter_mm: float | None = None) -> float:
    """The protocol's calibrated μ of water relative to air (1/cm); see the module docstring.

    Args:
        protocol: supplies the spectrum and ``water_diameter_mm``.
        diameter_mm: override the reference cylinder's diameter (mm).

    Raises:
        ValueError: non-positive diameter.
    """
    d = protocol.water_diameter_mm if diameter_mm is None else float(diameter_mm)
    if not (math.isfinite(d) and d > 0):
        raise ValueError(
            f"medphys.simulators.ct.water_mu: `diameter_mm` must be > 0 (got {diameter_mm!r})"
        )
    s = protocol.spectrum
    energies = tuple(float(v) for v in np.asarray(s.energies_kev, np.float64))
    e = np.asarray(energies)
    # _water_mu_cached weights by N_E E: pass N_E' = w_E / E for the protocol's detector and bowtie
    photons = tuple(float(v) for v in effective_weights(protocol, per_column=False)[0] / e)
    return _water_mu_cached(energies, photons, d / 20.0)


@functools.lru_cache(maxsize=64)
def _bhc_fit(
    energies: tuple[float, ...], weights: tuple[tuple[float, ...], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column polynomial ``L(p)`` (mm): coefficients ``(columns, degree)`` in ``p / scale``
    and the scales ``(columns,)``."""
    e = np.asarray(energies)
    w = np.asarray(weights)  # (columns, E)
    table = materials.attenuation_table(["water", "air"], e)
    mu = (table[0] - table[1]) / 10.0  # 1/mm
    length = np.linspace(0.0, _BHC_MAX_WATER_MM, 241)
    t = np.exp(-np.outer(length, mu))  # (L, E)
    p = -np.log((t @ w.T) / np.sum(w, axis=1)[None, :])  # (L, columns)
    scale = p[-1]
    coeffs = np.empty((w.shape[0], _BHC_DEGREE))
    powers = np.arange(1, _BHC_DEGREE + 1)
    for j in range(w.shape[0]):
        x = p[:, j] / scale[j]
        v = x[:, None] ** powers[None, :]
        rel = 1.0 / (length + 1.0)  # relative accuracy, also for thin paths
        coeffs[j] = np.linalg.lstsq(v * rel[:, None], length * rel, rcond=None)[0]
    return coeffs, scale


def correct_beam_hardening(
    projections: Float[Array, "views u v"], protocol: CTProtocol
) -> Float[Array, "views u v"]:
    """Water linearisation of post-log projections (see the module docstring).

    Args:
        projections: ``(views, u, v)`` post-log data of the protocol's detector (dimensionless).
        protocol: supplies the spectrum, detector, bowtie and calibration.

    Returns:
        corrected projections ``mu_ref L_water(p)``, same shape and dtype.

    Raises:
        ValueError: projections whose ``u`` size differs from the protocol's detector.

    Example:
        >>> p_corr = correct_beam_hardening(scan.projections, protocol)
    """
    where = "medphys.simulators.ct.correct_beam_hardening"
    p = jnp.asarray(projections)
    n_u = protocol.geometry.n_u
    if p.ndim != 3 or p.shape[1] != n_u:
        raise ValueError(
            f"{where}: `projections` must have shape (views, {n_u}, rows) for this protocol "
            f"(got {tuple(p.shape)})"
        )
    coeffs, scale = bhc_fit(protocol)
    mu_ref = water_mu(protocol) / 10.0  # 1/mm
    return bhc_polynomial(p, jnp.asarray(coeffs * mu_ref), jnp.asarray(scale))


def bhc_fit(protocol: CTProtocol) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's water linearisation on the host: ``(columns, degree)`` coefficients of
    ``L_water(p)`` (mm) in ``p / scale`` and the ``(columns,)`` scales."""
    s = protocol.spectrum
    energies = tuple(float(v) for v in np.asarray(s.energies_kev, np.float64))
    w = effective_weights(protocol, per_column=True)
    return _bhc_fit(energies, tuple(tuple(float(v) for v in row) for row in w))


def bhc_polynomial(p: Array, coeffs: Array, scale: Array) -> Array:
    """``sum_k c_k (p / scale)^k`` per detector column (Horner, no constant term), in ``p``'s
    dtype; ``coeffs`` already times μ_water."""
    dtype = p.dtype
    c = coeffs.astype(dtype)
    x = p / scale.astype(dtype)[None, :, None]
    out = jnp.zeros_like(x)
    for k in range(c.shape[1] - 1, -1, -1):
        out = (out + c[None, :, k, None]) * x
    return out.astype(dtype)


def to_hu(mu_image: Any, mu_water: float, mu_air: float = 0.0) -> Any:
    """``1000 (mu - mu_water) / (mu_water - mu_air)``, for an array or a `Volume`.

    Args:
        mu_image: attenuation image (array or `Volume`), in the same unit as ``mu_water``.
        mu_water, mu_air: the calibration values (μ_air = 0 when the image is relative to air,
            as reconstructions of air-normalised data are).

    Returns:
        the image in HU, same type and dtype as ``mu_image``.

    Raises:
        ValueError: ``mu_water <= mu_air``.
    """
    if not float(mu_water) > float(mu_air):
        raise ValueError(
            f"medphys.simulators.ct.to_hu: `mu_water` must exceed `mu_air` (got mu_water={mu_water!r}, "
            f"mu_air={mu_air!r})"
        )
    if isinstance(mu_image, Volume):
        return mu_image.with_data(to_hu(jnp.asarray(mu_image.data), mu_water, mu_air))
    x = jnp.asarray(mu_image)
    return ((x - mu_air) * (1000.0 / (mu_water - mu_air)) - 1000.0).astype(x.dtype)


def remove_scatter(scan: XrayScan, correction: ScatterCorrection) -> XrayScan:
    """The scan with its readings replaced by the kernel estimate of the primary signal.

    Args:
        scan: an `XrayScan` (noisy or expected); its ``counts`` and ``flat_counts`` are used.
        correction: the `medphys.simulators.xray.ScatterCorrection` (kernel and iterations).

    Returns:
        the scan with primary ``counts`` and their post-log ``projections`` (for a
        photon-counting detector the totals are corrected; the per-bin fields are kept).

    Raises:
        TypeError: wrong argument types.

    Example:
        >>> primary = remove_scatter(scan, xray.ScatterCorrection.create(spr=0.5, fwhm_mm=150))
    """
    where = "medphys.simulators.ct.remove_scatter"
    if not isinstance(scan, XrayScan):
        raise TypeError(f"{where}: `scan` must be an XrayScan (got {type(scan).__name__})")
    if not isinstance(correction, ScatterCorrection):
        raise TypeError(
            f"{where}: `correction` must be a medphys.simulators.xray.ScatterCorrection "
            f"(got {type(correction).__name__})"
        )
    dtype = jnp.asarray(scan.counts).dtype
    du, dv = detector_pitch_mm(scan.geometry, dtype)
    primary = correct_scatter(correction, scan.counts, scan.flat_counts, du, dv)
    flat = jnp.asarray(scan.flat_counts, dtype)
    flat = flat if flat.ndim == primary.ndim else flat[None]
    projections = -jnp.log(jnp.maximum(primary, MIN_COUNTS) / flat)
    return dataclasses.replace(scan, counts=primary, projections=projections)
