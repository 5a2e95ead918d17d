"""Mean glandular dose (MGD) of a mammography exposure by Dance's method (host-side, float64).

The UK, European and IAEA dosimetry protocols compute the MGD of a craniocaudal exposure as

    MGD = K · g · c · s

- ``K``: incident air kerma (no backscatter) at the upper surface of the compressed breast. Unless
  it is given, it is computed from the spectrum with `air_kerma_ugy` at the source-to-surface
  distance (inverse-square law).
- ``g``: incident air kerma → MGD for a breast of 50 % glandularity, a function of the first HVL
  (mm Al, from `half_value_layer_mm` unless given) and the compressed thickness (Dance 1990;
  extended by Dance et al. 2000).
- ``c``: the correction for a glandularity other than 50 % (Dance et al. 2000); ``c = 1`` at 50 %.
- ``s``: the spectrum (target/filter) correction (Dance et al. 2000, 2009), `S_FACTORS`.

g and c are read from a `DanceTables` the caller supplies, interpolated bilinearly (linearly in
HVL, linearly in thickness, and for c linearly in glandularity) inside the grids and never
extrapolated, as the European guidelines use the tables.

Provenance of the numbers (what this module can and cannot vouch for):

- ``S_FACTORS``, Mo/Mo 1.000, Mo/Rh 1.017, Rh/Rh 1.061, Rh/Al 1.044, W/Rh 1.042: the s-factors
  of Dance et al. 2000 (W/Rh again in Dance et al. 2009), as reproduced in the European
  guidelines' dosimetry appendix, as two public reproductions give them (a mammography QA
  application's source and a JavaScript dose module that cites Dance 2000; they agree). The
  table number in the paper was not checked.
  W/Ag (Dance et al. 2009) and the thickness-dependent W/Al factors are not included: no copy was
  found to read them from.
- g (Dance 1990; Dance et al. 2000, the 2–11 cm, 0.30–0.60 mm Al table of the European guidelines
  and IAEA Human Health Series 17) and c (Dance et al. 2000): **not shipped**. No copy of the
  published tables could be checked (the one public reproduction found states its values are
  "approximately after Dance 2000" and disagrees with others), so the caller loads them, from the
  guidelines, into `DanceTables.create`. Nothing here invents them.

References:
    D. R. Dance, "Monte Carlo calculation of conversion factors for the estimation of mean
    glandular breast dose", Phys. Med. Biol. 35:1211–1219, 1990.
    D. R. Dance, C. L. Skinner, K. C. Young, J. R. Beckett, C. J. Kotre, "Additional factors for
    the estimation of mean glandular breast dose using the UK mammography dosimetry protocol",
    Phys. Med. Biol. 45:3225–3240, 2000.
    D. R. Dance, K. C. Young, R. E. van Engen, "Further factors for the estimation of mean
    glandular dose using the United Kingdom, European and IAEA breast dosimetry protocols",
    Phys. Med. Biol. 54:4361–4372, 2009.
    European guidelines for quality assurance in breast cancer screening and diagnosis, 4th ed.,
    European Commission, 2006 (dosimetry appendix); IAEA Human Health Series No. 17, 2011.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jaxtyping import Array, Float

from ..._checks import number as _number
from ._hvl import air_kerma_ugy, half_value_layer_mm
from ._spectrum import Spectrum

__all__ = ["S_FACTORS", "DanceTables", "mean_glandular_dose_mgy", "target_filter_of"]

#: Dance's spectrum factors s by target/filter ("anode/filter"); see the module docstring.
S_FACTORS: dict[str, float] = {
    "Mo/Mo": 1.000,
    "Mo/Rh": 1.017,
    "Rh/Rh": 1.061,
    "Rh/Al": 1.044,
    "W/Rh": 1.042,
}
_FILTER_METALS = ("Mo", "Rh", "Ag", "Al")


def _grid(where: str, name: str, values: object, *, lo: float, hi: float) -> np.ndarray:
    a = np.asarray(values, np.float64)
    if a.ndim != 1 or a.size < 2:
        raise ValueError(f"{where}: `{name}` must be a 1-D grid of ≥ 2 points (got {a.shape})")
    if not (np.all(np.isfinite(a)) and np.all(np.diff(a) > 0)):
        raise ValueError(f"{where}: `{name}` must be finite and strictly increasing (got {a})")
    if a[0] < lo or a[-1] > hi:
        raise ValueError(f"{where}: `{name}` must lie in [{lo:g}, {hi:g}] (got {a[0]:g}…{a[-1]:g})")
    return a


def _positive_table(where: str, name: str, values: object, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(values, np.float64)
    if a.shape != shape:
        raise ValueError(f"{where}: `{name}` must have shape {shape} (got {a.shape})")
    if not (np.all(np.isfinite(a)) and np.all(a > 0)):
        raise ValueError(f"{where}: `{name}` must be finite and > 0")
    return a


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DanceTables:
    """Dance's g (and optionally c) conversion tables on thickness × HVL grids.

    Attributes:
        thickness_mm: ``(thicknesses,)`` compressed breast thicknesses (mm), increasing.
        hvl_mm: ``(hvls,)`` first half-value layers (mm Al), increasing.
        g: ``(thicknesses, hvls)`` incident air kerma → MGD at 50 % glandularity (mGy/mGy).
        glandularity: ``(glandularities,)`` glandular mass fractions of the c table, in [0, 1].
        c: ``(glandularities, thicknesses, hvls)`` glandularity corrections (c = 1 at 0.5).
    """

    thickness_mm: Float[Array, " thicknesses"]
    hvl_mm: Float[Array, " hvls"]
    g: Float[Array, "thicknesses hvls"]
    glandularity: Float[Array, " glandularities"] | None = None
    c: Float[Array, "glandularities thicknesses hvls"] | None = None

    @classmethod
    def create(
        cls,
        *,
        thickness_mm: object,
        hvl_mm: object,
        g: object,
        glandularity: object | None = None,
        c: object | None = None,
    ) -> DanceTables:
        """Validated tables, e.g. the European guidelines' g table (thickness rows, HVL columns).

        Args:
            thickness_mm: breast thicknesses of the rows (mm, in (0, 200]), increasing.
            hvl_mm: HVLs of the columns (mm Al, in (0, 5]), increasing.
            g: ``(len(thickness_mm), len(hvl_mm))`` g-factors (> 0).
            glandularity: glandularities of the c table (fractions in [0, 1], increasing);
                give it together with ``c`` or not at all.
            c: ``(len(glandularity), len(thickness_mm), len(hvl_mm))`` c-factors (> 0) on the
                same thickness and HVL grid as ``g``.

        Raises:
            ValueError: a grid that is not increasing or out of range, a table of the wrong shape
                or with non-positive entries, ``c`` without ``glandularity`` or the reverse.

        Example:
            >>> t = DanceTables.create(thickness_mm=[20, 80], hvl_mm=[0.3, 0.6],
            ...                        g=[[0.4, 0.6], [0.1, 0.2]])
            >>> t.g.shape
            (2, 2)
        """
        where = "medphys.simulators.xray.DanceTables.create"
        t = _grid(where, "thickness_mm", thickness_mm, lo=1e-9, hi=200.0)
        h = _grid(where, "hvl_mm", hvl_mm, lo=1e-9, hi=5.0)
        gt = _positive_table(where, "g", g, (t.size, h.size))
        if (glandularity is None) != (c is None):
            raise ValueError(f"{where}: give `glandularity` and `c` together (or neither)")
        if glandularity is None:
            return cls(thickness_mm=t, hvl_mm=h, g=gt)
        gl = _grid(where, "glandularity", glandularity, lo=0.0, hi=1.0)
        ct = _positive_table(where, "c", c, (gl.size, t.size, h.size))
        return cls(thickness_mm=t, hvl_mm=h, g=gt, glandularity=gl, c=ct)


def _bracket(grid: np.ndarray, x: float) -> tuple[int, float]:
    """Lower index and weight of the upper node for linear interpolation inside ``grid``."""
    i = int(np.clip(np.searchsorted(grid, x, side="right") - 1, 0, grid.size - 2))
    return i, (x - grid[i]) / (grid[i + 1] - grid[i])


def _bilinear(table: np.ndarray, tg: np.ndarray, hg: np.ndarray, t: float, h: float) -> float:
    i, a = _bracket(tg, t)
    j, b = _bracket(hg, h)
    lo = (1 - b) * table[i, j] + b * table[i, j + 1]
    hi = (1 - b) * table[i + 1, j] + b * table[i + 1, j + 1]
    return float((1 - a) * lo + a * hi)


def target_filter_of(spectrum: Spectrum) -> str:
    """The ``"anode/filter"`` name of a spectrum, e.g. ``"Mo/Rh"``, for `S_FACTORS`.

    The filter is the one filtration entry made of a mammography filter metal (Mo, Rh, Ag, Al);
    the tube window (Be) and the compression paddle (PMMA) are not filters in this sense.

    Raises:
        ValueError: no filter metal, or more than one, in ``spectrum.filtration``.
    """
    where = "medphys.simulators.xray.target_filter_of"
    metals = [m for m, mm in spectrum.filtration if m in _FILTER_METALS and mm > 0]
    if len(metals) != 1:
        raise ValueError(
            f"{where}: `spectrum.filtration` must hold exactly one of {', '.join(_FILTER_METALS)} "
            f"to name the target/filter (got {spectrum.filtration!r}); pass `target_filter=` "
            "to mean_glandular_dose_mgy instead"
        )
    return f"{spectrum.anode}/{metals[0]}"


def _in_grid(where: str, name: str, value: float, grid: np.ndarray, unit: str) -> None:
    if not grid[0] <= value <= grid[-1]:
        raise ValueError(
            f"{where}: `{name}` must lie within the tables' range [{grid[0]:g}, {grid[-1]:g}]"
            f"{unit} (got {value:g}); the tables are not extrapolated"
        )


def mean_glandular_dose_mgy(
    spectrum: Spectrum,
    *,
    thickness_mm: float,
    tables: DanceTables,
    glandularity: float = 0.5,
    entrance_air_kerma_mgy: float | None = None,
    mas: float | None = None,
    source_to_surface_mm: float | None = None,
    hvl_mm: float | None = None,
    target_filter: str | None = None,
) -> float:
    """Mean glandular dose (mGy) of one exposure, ``K · g · c · s`` (module docstring).

    Args:
        spectrum: the tube spectrum at the breast (window, filter and paddle in its filtration).
        thickness_mm: compressed breast thickness (mm), inside ``tables.thickness_mm``.
        tables: Dance's g (and c) tables, loaded from the published tables by the caller.
        glandularity: glandular mass fraction in [0, 1]; other than 0.5 it needs ``tables.c``.
        entrance_air_kerma_mgy: the incident air kerma K (mGy, > 0), e.g. measured; otherwise
            give ``mas`` and ``source_to_surface_mm`` and K is computed from the spectrum.
        mas: tube load of the exposure (mAs, > 0).
        source_to_surface_mm: focal spot to upper breast surface (mm, > 0): SID minus the
            detector-to-support gap minus ``thickness_mm``.
        hvl_mm: the first HVL (mm Al, > 0) if measured; otherwise `half_value_layer_mm`.
        target_filter: ``"anode/filter"`` key of `S_FACTORS`; otherwise read from the spectrum.

    Returns:
        the MGD (mGy).

    Raises:
        ValueError: thickness, HVL or glandularity outside the tables (or glandularity outside
            [0, 1], or ≠ 0.5 without a c table), a target/filter without an s-factor, K given
            together with ``mas``/``source_to_surface_mm`` or neither, non-positive values.
        TypeError: ``spectrum`` not a `Spectrum`, ``tables`` not `DanceTables`.

    Example:
        >>> s = Spectrum.create(kvp=28, anode="Mo", filtration=(("Mo", 0.03),), bin_kev=0.5)
        >>> t = DanceTables.create(thickness_mm=[20, 80], hvl_mm=[0.2, 0.6],
        ...                        g=[[0.4, 0.6], [0.1, 0.2]])
        >>> mgd = mean_glandular_dose_mgy(s, thickness_mm=50, tables=t,
        ...                               entrance_air_kerma_mgy=5.0)
    """
    where = "medphys.simulators.xray.mean_glandular_dose_mgy"
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"{where}: `spectrum` must be a Spectrum (got {type(spectrum).__name__})")
    if not isinstance(tables, DanceTables):
        raise TypeError(f"{where}: `tables` must be DanceTables (got {type(tables).__name__})")
    tg, hg = np.asarray(tables.thickness_mm), np.asarray(tables.hvl_mm)
    t = _number(where, "thickness_mm", thickness_mm)
    _in_grid(where, "thickness_mm", t, tg, " mm")
    gl = _number(where, "glandularity", glandularity)
    if not 0.0 <= gl <= 1.0:
        raise ValueError(f"{where}: `glandularity` must be in [0, 1] (got {glandularity!r})")
    if gl != 0.5:
        if tables.c is None or tables.glandularity is None:
            raise ValueError(
                f"{where}: `glandularity`={gl:g} needs a c table "
                "(DanceTables.create(..., glandularity=, c=)); without one only 0.5 is allowed"
            )
        _in_grid(where, "glandularity", gl, np.asarray(tables.glandularity), "")
    combo = target_filter if target_filter is not None else target_filter_of(spectrum)
    if combo not in S_FACTORS:
        raise ValueError(
            f"{where}: no s-factor for target/filter {combo!r}; known: {', '.join(S_FACTORS)}"
        )
    if entrance_air_kerma_mgy is not None:
        if mas is not None or source_to_surface_mm is not None:
            raise ValueError(
                f"{where}: give `entrance_air_kerma_mgy` or (`mas`, `source_to_surface_mm`), "
                "not both"
            )
        k = _number(where, "entrance_air_kerma_mgy", entrance_air_kerma_mgy)
        if k <= 0:
            raise ValueError(f"{where}: `entrance_air_kerma_mgy` must be > 0 (got {k:g})")
    else:
        if mas is None or source_to_surface_mm is None:
            raise ValueError(
                f"{where}: give `entrance_air_kerma_mgy`, or both `mas` and "
                f"`source_to_surface_mm` (got mas={mas!r}, source_to_surface_mm="
                f"{source_to_surface_mm!r})"
            )
        m = _number(where, "mas", mas)
        d = _number(where, "source_to_surface_mm", source_to_surface_mm)
        if m <= 0 or d <= 0:
            raise ValueError(
                f"{where}: `mas` and `source_to_surface_mm` must be > 0 (got {m:g}, {d:g})"
            )
        k = air_kerma_ugy(spectrum, mas=m, distance_mm=d) / 1000.0
    if hvl_mm is not None:
        h = _number(where, "hvl_mm", hvl_mm)
    else:
        h = half_value_layer_mm(spectrum)
    _in_grid(where, "hvl_mm", h, hg, " mm Al")
    g = _bilinear(np.asarray(tables.g), tg, hg, t, h)
    c = 1.0
    if gl != 0.5:
        c = _glandularity_correction(tables, t, h, gl)
    return k * g * c * S_FACTORS[combo]


def _glandularity_correction(tables: DanceTables, t: float, h: float, gl: float) -> float:
    """c at (t, h) for each tabulated glandularity, then linear in glandularity."""
    tg, hg = np.asarray(tables.thickness_mm), np.asarray(tables.hvl_mm)
    gg, ct = np.asarray(tables.glandularity), np.asarray(tables.c)
    per = np.array([_bilinear(ct[k], tg, hg, t, h) for k in range(gg.size)])
    return float(np.interp(gl, gg, per))
