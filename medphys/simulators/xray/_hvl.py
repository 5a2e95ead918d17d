"""Air kerma and half-value layer of a tube spectrum (host-side, float64).

The air kerma of a fluence spectrum ``N_E`` (photons per mm² at 1 m per mAs, `Spectrum.photons`)
is ``K = sum_E N_E E (mu_en/rho)_air(E)``, with the mass energy-absorption coefficient of dry air
(near sea level) of Hubbell & Seltzer (NIST), as SpekPy ships it (``nist_muen_air.dat``,
log–log interpolation). xraylib's ``CS_Energy`` is not used: it departs from the NIST table between
about 15 and 80 keV (air at 20 keV: 0.355 against NIST's 0.5389 cm²/g; xraylib issues #176, #255).
The first half-value layer of an attenuator is the thickness ``t`` with
``K(t) = K(0) / 2``, ``K(t) = sum_E N_E E (mu_en/rho)_air(E) exp(-mu(E) t)`` (narrow beam,
attenuation from ``medphys.materials``), found by bisection to 1e-6 mm.

References:
    J. H. Hubbell, S. M. Seltzer, "Tables of X-Ray Mass Attenuation Coefficients and Mass
    Energy-Absorption Coefficients", NISTIR 5632, 1995 (the data xraylib's ``CS_Energy`` carries).
    G. Poludniowski, A. Omar, R. Bujila, P. Andreo, "Technical Note: SpekPy v2.0 — a software
    toolkit for modeling x-ray tube spectra", Med. Phys. 48(7):3630–3637, 2021 (its data tables).
"""

from __future__ import annotations

import functools

import numpy as np

from ... import materials
from ._spectrum import Spectrum

__all__ = ["air_kerma_ugy", "half_value_layer_mm"]

_KEV_TO_J = 1.602176634e-16


@functools.lru_cache(maxsize=1)
def _air_table() -> object:
    from spekpy.DataTables import MuEnAirData

    return MuEnAirData("nist_muen_air.dat")


def mu_en_air_cm2_g(energies_kev: np.ndarray) -> np.ndarray:
    """(mu_en/rho) of dry air (cm²/g) at ``energies_kev`` (NIST, via SpekPy's table)."""
    e = np.asarray(energies_kev, np.float64)
    return np.asarray(_air_table().get_muen_over_rho_air(e), np.float64)  # type: ignore[attr-defined]


def _check_spectrum(where: str, spectrum: Spectrum) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"{where}: `spectrum` must be a Spectrum (got {type(spectrum).__name__})")
    e = np.asarray(spectrum.energies_kev, np.float64)
    n = np.asarray(spectrum.photons, np.float64)
    return e, n


def air_kerma_ugy(spectrum: Spectrum, *, mas: float = 1.0, distance_mm: float = 1000.0) -> float:
    """Air kerma (µGy, free in air, no backscatter) of ``mas`` mAs at ``distance_mm`` from the focus.

    Args:
        spectrum: the tube spectrum (photons per mAs per mm² at 1 m).
        mas: tube current–time product (mAs, > 0).
        distance_mm: distance from the focal spot (mm, > 0); inverse-square law.

    Raises:
        ValueError: non-positive ``mas`` or ``distance_mm``.
    """
    where = "medphys.simulators.xray.air_kerma_ugy"
    e, n = _check_spectrum(where, spectrum)
    for name, v in (("mas", mas), ("distance_mm", distance_mm)):
        if not (np.isfinite(float(v)) and float(v) > 0):
            raise ValueError(f"{where}: `{name}` must be > 0 (got {v!r})")
    # photons/mm² → /cm² (×100); keV·cm²/g → J/kg = Gy (×1e3 g/kg); Gy → µGy (×1e6)
    per_cm2 = n * 100.0 * float(mas) * (1000.0 / float(distance_mm)) ** 2
    gy = np.sum(per_cm2 * e * _KEV_TO_J * mu_en_air_cm2_g(e)) * 1e3
    return float(gy * 1e6)


def half_value_layer_mm(spectrum: Spectrum, *, material: str = "aluminium") -> float:
    """First half-value layer (mm of ``material``) of the spectrum's air kerma (narrow beam).

    Args:
        spectrum: the tube spectrum; a fine binning (``bin_kev=0.5``) keeps the characteristic
            lines and absorption edges where SpekPy puts them.
        material: the attenuator, a `medphys.materials` name (default ``"aluminium"``).

    Returns:
        the thickness (mm) that halves the air kerma.

    Raises:
        ValueError: an unknown material (the message lists the names).

    Example:
        >>> s = Spectrum.create(kvp=28, anode="Mo", filtration=(("Mo", 0.03),), bin_kev=0.5)
        >>> 0.2 < half_value_layer_mm(s) < 0.4
        True
    """
    where = "medphys.simulators.xray.half_value_layer_mm"
    e, n = _check_spectrum(where, spectrum)
    mu_mm = materials.get(material).mu(e) / 10.0  # 1/cm → 1/mm
    w = n * e * mu_en_air_cm2_g(e)
    k0 = float(np.sum(w))

    def ratio(t: float) -> float:
        return float(np.sum(w * np.exp(-mu_mm * t))) / k0

    lo, hi = 0.0, 1.0
    while ratio(hi) > 0.5:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-6:
        mid = 0.5 * (lo + hi)
        if ratio(mid) > 0.5:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
