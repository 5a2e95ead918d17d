"""`Material` and `MRProperties`: static physics data of one material.

A material is plain, immutable data (not a JAX leaf): density, elemental mass fractions and,
for MR, relative proton density and relaxation times at 1.5 T and 3 T. Photon attenuation is
computed from the composition with xraylib's evaluated cross sections (NumPy, float64); simulators
tabulate it once per energy grid (`attenuation_table`) and then work on arrays.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xraylib
import xraylib_np
from jaxtyping import Float

#: Photon energies accepted by the attenuation methods, keV (diagnostic range).
ENERGY_RANGE_KEV: tuple[float, float] = (1.0, 150.0)

#: Field strengths with tabulated MR properties, tesla.
FIELDS_T: tuple[float, ...] = (1.5, 3.0)

_MAX_Z = 98  # xraylib's cross sections cover Z = 1..98 (lower edge of the tables' range)


def check_energy(where: str, energy_kev: Any) -> np.ndarray:
    """``energy_kev`` as a float64 array after checking it lies in `ENERGY_RANGE_KEV`.

    Raises:
        TypeError: traced (jitted) values or non-numeric input.
        ValueError: a value outside [1, 150] keV or not finite.
    """
    try:
        e = np.asarray(energy_kev, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        if "Tracer" in type(energy_kev).__name__ or "Tracer" in str(exc):
            raise TypeError(
                f"{where}: `energy_kev` must hold concrete values, not traced ones; attenuation comes "
                "from tabulated NumPy data, so tabulate it before `jax.jit` (e.g. with "
                "`medphys.materials.attenuation_table`) and pass the table in"
            ) from None
        raise TypeError(
            f"{where}: `energy_kev` must be a number or an array of numbers in keV "
            f"(got {type(energy_kev).__name__})"
        ) from None
    lo, hi = ENERGY_RANGE_KEV
    bad = ~(np.isfinite(e) & (e >= lo) & (e <= hi))
    if np.any(bad):
        offending = e[bad]
        if offending.size == 1:
            got = f"{offending.item():g}"
        else:
            got = (
                f"{offending.size} values outside, e.g. {offending.flat[0]:g}; range of input "
                f"[{np.nanmin(e):g}, {np.nanmax(e):g}]"
            )
        raise ValueError(
            f"{where}: `energy_kev` must be in [{lo:g}, {hi:g}] keV (got {got}); the library covers "
            "diagnostic photon energies"
        )
    return e


def check_field(where: str, field_t: Any) -> float:
    """``field_t`` as one of `FIELDS_T`, or a ValueError listing the allowed fields."""
    try:
        f = float(field_t)
    except (TypeError, ValueError):
        f = math.nan
    for allowed in FIELDS_T:
        if abs(f - allowed) <= 1e-9:
            return allowed
    listing = ", ".join(repr(a) for a in FIELDS_T)
    raise ValueError(
        f"{where}: `field_t` must be one of {listing} T, the fields with tabulated relaxation data "
        f"(got {field_t!r})"
    )


def mixture_mass_attenuation(
    composition: tuple[tuple[int, float], ...], energy_kev: np.ndarray
) -> np.ndarray:
    """Σ_i w_i (μ/ρ)_i in cm²/g, xraylib ``CS_Total`` (coherent included), any shape of energies."""
    z = np.asarray([zi for zi, _ in composition], dtype=np.int64)
    w = np.asarray([wi for _, wi in composition], dtype=np.float64)
    flat = np.ascontiguousarray(energy_kev.reshape(-1), dtype=np.float64)
    if flat.size == 0:
        return np.zeros(energy_kev.shape, dtype=np.float64)
    per_element = xraylib_np.CS_Total(z, flat)  # (elements, energies)
    return (w @ per_element).reshape(energy_kev.shape)


@dataclasses.dataclass(frozen=True)
class MRProperties:
    """MR properties of a material at one field strength.

    Attributes:
        field_t: the field strength in tesla (1.5 or 3.0).
        pd: proton density relative to water (water = 1), in [0, 1].
        t1_s: longitudinal relaxation time, s.
        t2_s: transverse relaxation time, s.
        t2star_s: effective transverse relaxation time (T2 plus reversible dephasing), s;
            never longer than ``t2_s``.
        source: the literature source of each value.
    """

    field_t: float
    pd: float
    t1_s: float
    t2_s: float
    t2star_s: float
    source: str


@dataclasses.dataclass(frozen=True)
class Material:
    """A material: composition and density (X-ray physics) plus MR properties.

    Static data, hashable and immutable (update with `dataclasses.replace`). Use the catalog
    (`medphys.materials.get`) or `Material.create` for a validated custom material.

    Attributes:
        name: catalog name (lowercase snake_case; contrast mixtures ``"<base>+<agent>_<c>mg_ml"``).
        density_g_cm3: mass density, g/cm³.
        composition: ``(Z, mass fraction)`` pairs sorted by Z, fractions summing to 1.
        source: where composition and density come from.
        description: what the material is.
        mr_properties: `MRProperties` at each tabulated field strength (may be empty for custom
            materials).

    References:
        Mixture rule for photon attenuation: Hubbell JH, Seltzer SM. Tables of X-ray mass
        attenuation coefficients and mass energy-absorption coefficients. NIST IR 5632 (1995).
        Cross sections: Schoonjans T et al. The xraylib library for X-ray-matter interactions.
        Spectrochim Acta B 66:776-784 (2011).
    """

    name: str
    density_g_cm3: float
    composition: tuple[tuple[int, float], ...]
    source: str
    description: str = ""
    mr_properties: tuple[MRProperties, ...] = ()

    @classmethod
    def create(
        cls,
        name: str,
        *,
        density_g_cm3: float,
        composition: Mapping[int | str, float] | Iterable[tuple[int | str, float]],
        source: str,
        description: str = "",
        mr_properties: Iterable[MRProperties] = (),
    ) -> Material:
        """Validated constructor for a custom material.

        Args:
            name: a non-empty name.
            density_g_cm3: mass density, g/cm³ (> 0).
            composition: element (atomic number or symbol) → mass fraction; fractions must be
                non-negative and sum to 1 within 1e-6.
            source: where composition and density come from (non-empty).
            description: free text.
            mr_properties: at most one `MRProperties` per field in `FIELDS_T`.

        Raises:
            ValueError: any value outside what is allowed; the message names it.

        Example:
            >>> Material.create("iodine_solution", density_g_cm3=1.01,
            ...                 composition={"H": 0.1109, "O": 0.8791, "I": 0.01},
            ...                 source="by mass, 10 mg/mL iodine in water")  # doctest: +SKIP
        """
        where = "medphys.materials.Material.create"
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: `name` must be a non-empty string (got {name!r})")
        if not isinstance(source, str) or not source.strip():
            raise ValueError(
                f"{where}: `source` must say where the data come from (got {source!r})"
            )
        density = float(density_g_cm3)
        if not math.isfinite(density) or density <= 0:
            raise ValueError(
                f"{where}: `density_g_cm3` must be a positive number (got {density_g_cm3!r})"
            )
        items = composition.items() if isinstance(composition, Mapping) else composition
        fractions: dict[int, float] = {}
        for element, fraction in items:
            z = atomic_number(where, element)
            f = float(fraction)
            if not math.isfinite(f) or f < 0:
                raise ValueError(
                    f"{where}: mass fraction of {element!r} in `composition` must be >= 0 (got {fraction!r})"
                )
            fractions[z] = fractions.get(z, 0.0) + f
        total = sum(fractions.values())
        if not fractions or abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"{where}: `composition` mass fractions must sum to 1 within 1e-6 (got {total:.8g}); "
                "divide each fraction by the total if the table is in per cent or rounded"
            )
        mr = tuple(mr_properties)
        fields = [check_field(where, m.field_t) for m in mr]
        if len(set(fields)) != len(fields):
            raise ValueError(
                f"{where}: `mr_properties` holds two entries for one field (got {fields})"
            )
        return cls(
            name=name,
            density_g_cm3=density,
            composition=tuple(sorted((z, f) for z, f in fractions.items() if f > 0)),
            source=source,
            description=description,
            mr_properties=tuple(sorted(mr, key=lambda m: m.field_t)),
        )

    def mass_attenuation(self, energy_kev: Any) -> Float[np.ndarray, "*energies"]:
        """Total mass attenuation coefficient μ/ρ, coherent scattering included, cm²/g.

        Args:
            energy_kev: photon energy or array of energies (any shape) in keV, within [1, 150].

        Returns:
            float64 NumPy array of the shape of ``energy_kev`` (a NumPy scalar for scalar input).

        Raises:
            ValueError: an energy outside [1, 150] keV.

        References:
            Σ_i w_i (μ/ρ)_i with xraylib ``CS_Total`` per element (photoelectric + coherent +
            incoherent), which reproduces NIST XCOM within about 1 % in this range.
        """
        e = check_energy(f"medphys.materials.Material.mass_attenuation ({self.name!r})", energy_kev)
        return mixture_mass_attenuation(self.composition, e)[()]

    def mu(self, energy_kev: Any) -> Float[np.ndarray, "*energies"]:
        """Linear attenuation coefficient μ = ρ · μ/ρ in 1/cm (see `mass_attenuation`).

        Example:
            >>> import medphys.materials as mm
            >>> round(float(mm.get("water").mu(60.0)), 4)
            0.2059
        """
        e = check_energy(f"medphys.materials.Material.mu ({self.name!r})", energy_kev)
        return (self.density_g_cm3 * mixture_mass_attenuation(self.composition, e))[()]

    def mr(self, field_t: float) -> MRProperties:
        """MR properties (PD, T1, T2, T2*) at ``field_t`` tesla (1.5 or 3.0).

        Raises:
            ValueError: a field other than 1.5 or 3.0 T, or a material without MR data.
        """
        where = f"medphys.materials.Material.mr ({self.name!r})"
        field = check_field(where, field_t)
        for props in self.mr_properties:
            if abs(props.field_t - field) <= 1e-9:
                return props
        raise ValueError(
            f"{where}: material {self.name!r} has no MR properties at {field:g} T; give them with "
            "`Material.create(..., mr_properties=...)`"
        )


def atomic_number(where: str, element: int | str) -> int:
    """Atomic number from an integer or an element symbol (``"Ca"``), checked against xraylib."""
    if isinstance(element, str):
        try:
            z = int(xraylib.SymbolToAtomicNumber(element.strip()))
        except ValueError:
            z = 0
        if z <= 0:
            raise ValueError(f"{where}: unknown element symbol {element!r}")
        return z
    if isinstance(element, bool) or not isinstance(element, (int, np.integer)):
        raise ValueError(f"{where}: element must be an atomic number or symbol (got {element!r})")
    if not 1 <= int(element) <= _MAX_Z:
        raise ValueError(f"{where}: atomic number must be in [1, {_MAX_Z}] (got {element})")
    return int(element)
