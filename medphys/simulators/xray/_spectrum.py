"""X-ray tube spectra from SpekPy, binned for simulation.

`Spectrum.create` asks SpekPy (Poludniowski et al. 2021) for the fluence of an X-ray tube with a
tungsten (default), molybdenum or rhodium anode (``anode = "W" | "Mo" | "Rh"``) at ``kvp`` with the
given anode angle and added filtration, per mAs at 1 m, on its 0.5 keV grid;
then sums it into bins of ``bin_kev`` keV. Each bin is represented by its fluence-weighted mean
energy, so the spectrum's mean energy is preserved exactly. Bins carrying less than 1e-6 of the
total fluence are dropped, and energies stay within the materials' data range [1, 150] keV.

The result is an immutable PyTree: ``energies_kev`` and ``photons`` are leaves; the tube settings
are static metadata. ``photons[i]`` is the number of photons per mAs per mm² at 1 m from the focal
spot in bin ``i`` (SpekPy reports photons keV⁻¹ cm⁻² mAs⁻¹ at its reference distance ``z = 100``
cm; multiplied by the 0.5 keV bin width, summed into bins and divided by 100 mm²/cm²).

Anodes and tube potentials: SpekPy models tungsten anodes from 10 to 500 kV and its other targets
(Mo and Rh here: the mammography anodes) from 10 to 50 kV (SpekPy 2.x, ``Spek`` constructor
checks); medphys accepts W in [20, 150] kV (the materials' data range) and Mo, Rh in [20, 50] kV
(`ANODE_KVP_RANGE`); the Mo and Rh targets are those SpekPy v2.0 added (Poludniowski et al. 2021).
Mammography combinations are written as anode + filtration, e.g. Mo/Mo:
``anode="Mo", filtration=(("Mo", 0.03),)``; W/Rh: ``anode="W", filtration=(("Rh", 0.05),)``.

References:
    G. Poludniowski, A. Omar, R. Bujila, P. Andreo, "Technical Note: SpekPy v2.0 — a software
    toolkit for modeling x-ray tube spectra", Med. Phys. 48(7):3630–3637, 2021.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
from collections.abc import Sequence

import jax
import numpy as np
from jaxtyping import Array, Float

from ..._checks import number as _number
from ...materials import ENERGY_RANGE_KEV

__all__ = ["ANODES", "ANODE_KVP_RANGE", "KVP_RANGE", "Spectrum"]

#: Tube potentials accepted by `Spectrum.create` for a tungsten anode (kV); the upper bound is the
#: materials' data range.
KVP_RANGE: tuple[float, float] = (20.0, 150.0)
#: Anode targets accepted by `Spectrum.create` (SpekPy target names).
ANODES: tuple[str, ...] = ("W", "Mo", "Rh")
#: Tube potentials (kV) accepted per anode: SpekPy's non-tungsten targets stop at 50 kV.
ANODE_KVP_RANGE: dict[str, tuple[float, float]] = {
    "W": KVP_RANGE,
    "Mo": (20.0, 50.0),
    "Rh": (20.0, 50.0),
}
_FINE_KEV = 0.5


@functools.lru_cache(maxsize=64)
def _spekpy(
    kvp: float,
    anode_angle_deg: float,
    filtration: tuple[tuple[str, float], ...],
    anode: str = "W",
) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres (keV) and photons per bin per mAs per cm² at 100 cm from SpekPy."""
    import spekpy

    with contextlib.redirect_stdout(io.StringIO()):
        if anode == "W":  # SpekPy's default target: the call tungsten spectra always made
            spek = spekpy.Spek(kvp=kvp, th=anode_angle_deg, dk=_FINE_KEV)
        else:
            spek = spekpy.Spek(kvp=kvp, th=anode_angle_deg, dk=_FINE_KEV, targ=anode)
        for material, mm in filtration:
            if mm > 0:
                spek.filter(material, mm)
        k, flu = spek.get_spectrum(flu=True, diff=True)
    return np.asarray(k, np.float64), np.asarray(flu, np.float64) * _FINE_KEV


@functools.lru_cache(maxsize=128)
def _spekpy_knows(material: str) -> bool:
    """Whether SpekPy filters with ``material`` (asked once per name: building a SpekPy
    spectrum to ask takes about 0.3 s, which every protocol load paid per filter)."""
    import spekpy

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            spekpy.Spek(kvp=60.0, th=12.0).filter(material, 0.01)
    except Exception:
        return False
    return True


def _check_filter_material(where: str, material: str) -> None:
    if not _spekpy_knows(material):
        raise ValueError(
            f"{where}: `filtration` material {material!r} is not known to SpekPy (use its names, "
            "e.g. 'Al', 'Cu', 'Sn', 'Be', 'Ti', 'Water', 'Air')"
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Spectrum:
    """Photon fluence of an X-ray tube per energy bin.

    Attributes:
        energies_kev: ``(energies,)`` bin energies (fluence-weighted mean of each bin, keV).
        photons: ``(energies,)`` photons per mAs per mm² at 1 m, per bin.
        kvp: tube potential (kV), static.
        anode: anode target, ``"W"``, ``"Mo"`` or ``"Rh"`` (static).
        anode_angle_deg: anode angle (degrees), static.
        filtration: ``((material, mm), ...)`` added filtration, static.
        bin_kev: bin width (keV), static.
    """

    energies_kev: Float[Array, " energies"]
    photons: Float[Array, " energies"]
    kvp: float = dataclasses.field(default=0.0, metadata={"static": True})
    anode_angle_deg: float = dataclasses.field(default=0.0, metadata={"static": True})
    filtration: tuple[tuple[str, float], ...] = dataclasses.field(
        default=(), metadata={"static": True}
    )
    bin_kev: float = dataclasses.field(default=0.0, metadata={"static": True})
    anode: str = dataclasses.field(default="W", metadata={"static": True})

    @classmethod
    def create(
        cls,
        *,
        kvp: float,
        anode_angle_deg: float = 12.0,
        filtration: Sequence[tuple[str, float]] = (("Al", 2.5),),
        bin_kev: float = 2.0,
        anode: str = "W",
    ) -> Spectrum:
        """A tube spectrum from SpekPy (tungsten anode unless ``anode`` says otherwise).

        Args:
            kvp: tube potential (kV): in [20, 150] for a tungsten anode, [20, 50] for Mo and Rh.
            anode_angle_deg: anode angle (degrees), in (0, 45].
            filtration: added filters as ``(material, thickness_mm)`` pairs with SpekPy material
                names (``"Al"``, ``"Cu"``, ``"Sn"``, ...); thickness ≥ 0.
            bin_kev: width of the simulation's energy bins (keV), a multiple of 0.5 in [0.5, 20].
            anode: the target, ``"W"`` (default), ``"Mo"`` or ``"Rh"``.

        Returns:
            the binned spectrum (float64 NumPy leaves).

        Raises:
            ValueError: a value out of range (``kvp`` for the anode), an unknown anode or filter
                material.

        Example:
            >>> s = Spectrum.create(kvp=120, filtration=(("Al", 2.5),))
            >>> 50 < s.mean_energy_kev() < 60
            True
            >>> mo = Spectrum.create(kvp=28, anode="Mo", filtration=(("Mo", 0.03),), bin_kev=0.5)
        """
        where = "medphys.simulators.xray.Spectrum.create"
        if not isinstance(anode, str) or anode not in ANODES:
            raise ValueError(
                f"{where}: `anode` must be one of {', '.join(map(repr, ANODES))} (got {anode!r})"
            )
        kv = _number(where, "kvp", kvp)
        lo_kv, hi_kv = ANODE_KVP_RANGE[anode]
        if not lo_kv <= kv <= hi_kv:
            raise ValueError(
                f"{where}: `kvp` must be in [{lo_kv:g}, {hi_kv:g}] for anode {anode!r} "
                f"(got {kvp!r})"
            )
        angle = _number(where, "anode_angle_deg", anode_angle_deg)
        if not 0 < angle <= 45:
            raise ValueError(
                f"{where}: `anode_angle_deg` must be in (0, 45] (got {anode_angle_deg!r})"
            )
        width = _number(where, "bin_kev", bin_kev)
        steps = width / _FINE_KEV
        if not (0.5 <= width <= 20 and abs(steps - round(steps)) < 1e-9):
            raise ValueError(
                f"{where}: `bin_kev` must be a multiple of 0.5 in [0.5, 20] (got {bin_kev!r})"
            )
        filters: list[tuple[str, float]] = []
        for item in filtration:
            if isinstance(item, str) or len(item) != 2:
                raise ValueError(
                    f"{where}: `filtration` items must be (material, mm) pairs (got {item!r})"
                )
            material, mm = item
            if not isinstance(material, str):
                raise TypeError(f"{where}: `filtration` material must be a name (got {material!r})")
            thickness = _number(where, f"filtration[{material!r}]", mm)
            if thickness < 0:
                raise ValueError(
                    f"{where}: `filtration` thickness of {material!r} must be ≥ 0 mm (got {mm!r})"
                )
            _check_filter_material(where, material)
            filters.append((material, thickness))
        k, flu = _spekpy(kv, angle, tuple(filters), anode)
        lo = ENERGY_RANGE_KEV[0]
        keep = k >= lo
        k, flu = k[keep], flu[keep]
        index = np.floor((k - lo) / width).astype(int)
        n_bins = int(index.max()) + 1
        counts = np.bincount(index, weights=flu, minlength=n_bins)
        energy = np.bincount(index, weights=flu * k, minlength=n_bins)
        centres = lo + (np.arange(n_bins) + 0.5) * width
        mean = np.where(counts > 0, energy / np.where(counts > 0, counts, 1.0), centres)
        significant = counts > 1e-6 * counts.sum()
        mean = np.clip(mean[significant], *ENERGY_RANGE_KEV)
        return cls(
            energies_kev=mean,
            photons=counts[significant] / 100.0,  # per cm² → per mm²
            kvp=kv,
            anode_angle_deg=angle,
            filtration=tuple(filters),
            bin_kev=width,
            anode=anode,
        )

    @classmethod
    def monoenergetic(cls, energy_kev: float, photons_per_mas_mm2: float = 1.0e6) -> Spectrum:
        """A single line at ``energy_kev`` (no beam hardening): for tests and idealised studies.

        Raises:
            ValueError: energy outside [1, 150] keV or non-positive fluence.
        """
        where = "medphys.simulators.xray.Spectrum.monoenergetic"
        e = _number(where, "energy_kev", energy_kev)
        if not ENERGY_RANGE_KEV[0] <= e <= ENERGY_RANGE_KEV[1]:
            raise ValueError(
                f"{where}: `energy_kev` must be in [{ENERGY_RANGE_KEV[0]:g}, {ENERGY_RANGE_KEV[1]:g}] "
                f"(got {energy_kev!r})"
            )
        n = _number(where, "photons_per_mas_mm2", photons_per_mas_mm2)
        if n <= 0:
            raise ValueError(
                f"{where}: `photons_per_mas_mm2` must be > 0 (got {photons_per_mas_mm2!r})"
            )
        return cls(
            energies_kev=np.asarray([e]),
            photons=np.asarray([n]),
            kvp=e,
            anode_angle_deg=0.0,
            filtration=(),
            bin_kev=0.0,
        )

    @property
    def n_energies(self) -> int:
        return int(np.shape(self.energies_kev)[0])

    def mean_energy_kev(self) -> float:
        """Fluence-weighted mean energy (keV)."""
        e, n = np.asarray(self.energies_kev, np.float64), np.asarray(self.photons, np.float64)
        return float(np.sum(e * n) / np.sum(n))

    def total_photons(self) -> float:
        """Photons per mAs per mm² at 1 m, all energies."""
        return float(np.sum(np.asarray(self.photons, np.float64)))
