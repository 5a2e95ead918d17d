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
    (``w_E = N_E E``, energy integrating) and ``mu = mu_water(E) - mu_air(E)`` (the flat field is
    an air scan). It is evaluated with 64-point Gauss–Legendre quadrature; for a monoenergetic beam
    it is μ(E) exactly. With this calibration the centre of that cylinder reads 0 HU; beam
    hardening makes other sizes and positions read differently (cupping; a correction comes later).

References:
    A. C. Kak and M. Slaney, Principles of Computerized Tomographic Imaging, 1988, §4.1 (beam
    hardening). J. Hsieh, Computed Tomography, 3rd ed., 2015, §5.2 (calibration).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from ... import materials
from ...volume import Volume
from ..xray._protocol import CTProtocol
from ..xray._simulate import XrayScan
from ._fbp import fbp

__all__ = ["reconstruct", "to_hu", "water_mu"]


@functools.lru_cache(maxsize=256)
def _water_mu_cached(
    energies: tuple[float, ...], photons: tuple[float, ...], radius_cm: float
) -> float:
    e = np.asarray(energies)
    w = np.asarray(photons) * e
    table = materials.attenuation_table(["water", "air"], e)
    mu = table[0] - table[1]
    x, wq = np.polynomial.legendre.leggauss(64)
    phi = (x + 1) * (math.pi / 4)  # [0, π/2]
    length = 2 * radius_cm * np.cos(phi)
    t = np.exp(-np.outer(length, mu)) * w[None, :]
    mu_bar = (t @ mu) / np.sum(t, axis=1)
    return float((2 / math.pi) * (math.pi / 4) * np.sum(wq * mu_bar))


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
    photons = tuple(float(v) for v in np.asarray(s.photons, np.float64))
    return _water_mu_cached(energies, photons, d / 20.0)


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


def reconstruct(scan: XrayScan, protocol: CTProtocol, *, like: Any) -> Volume:
    """FBP of a scan, calibrated to Hounsfield units, on the grid of ``like``.

    Args:
        scan: the `XrayScan` from `medphys.simulators.xray.simulate`.
        protocol: supplies the filter and the water calibration (`water_mu`).
        like: a `Volume` or `LabeledVolume` (usually the phantom) giving shape and affine.

    Returns:
        `Volume` in HU with ``like``'s affine, in the projections' dtype.

    Raises:
        as `fbp`.
    """
    if not isinstance(scan, XrayScan):
        raise TypeError(
            f"medphys.simulators.ct.reconstruct: `scan` must be an XrayScan (got {type(scan).__name__})"
        )
    mu = fbp(scan.projections, scan.geometry, like=like, filter=protocol.filter)  # 1/mm
    return to_hu(mu.with_data(mu.data * jnp.asarray(10.0, mu.data.dtype)), water_mu(protocol))
