"""The material catalog: `names`, `get`, `contrast_mixture` and the bulk `attenuation_table`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import Float

from .._errors import unknown_name
from ._contrast import (
    CATALOG_MIXTURES,
    ContrastAgent,
    make_mixture,
    mixture_name,
    parse_mixture_name,
)
from ._data import base_materials
from ._material import Material, check_energy, mixture_mass_attenuation
from ._scaled import make_scaled, parse_scaled_name


@functools.cache
def names() -> tuple[str, ...]:
    """Names of the catalog materials, sorted.

    Tissues and reference media (``"liver"``, ``"water"``, ``"pmma"`` …) plus a few contrast
    mixtures (``"blood+iodine_10mg_ml"``, ``"blood+gadolinium_0.5mg_ml"`` …). `get` also accepts
    any other mixture name of the form ``"<tissue>+<iodine|gadolinium>_<c>mg_ml"``.

    Example:
        >>> import medphys.materials as mm
        >>> "liver" in mm.names()
        True
    """
    listed = [mixture_name(base, agent, c) for base, agent, c in CATALOG_MIXTURES]
    return tuple(sorted([*base_materials(), *listed]))


def get(name: str) -> Material:
    """The catalog material called ``name``.

    Args:
        name: a name of `names`, or a contrast-mixture name
            ``"<tissue>+<agent>_<c>mg_ml"`` (agent ``iodine`` or ``gadolinium``, ``c`` in mg of
            the element per mL, e.g. ``"liver+iodine_7.5mg_ml"``), or a density-scaled tissue
            ``"<tissue>@<factor>"`` (`density_scaled`, e.g. ``"liver@0.97"``).

    Raises:
        UnknownNameError: no such material; the message lists the catalog names.
        ValueError: a mixture name with a concentration out of range.

    Example:
        >>> import medphys.materials as mm
        >>> mm.get("liver").density_g_cm3
        1.063
    """
    return _get(str(name))


@functools.lru_cache(maxsize=256)
def _get(name: str) -> Material:
    tissues = base_materials()
    if name in tissues:
        return tissues[name]
    parsed = parse_mixture_name(name)
    if parsed is not None and parsed[0] in tissues:
        base, agent, concentration = parsed
        return make_mixture(f"medphys.materials.get({name!r})", agent, concentration, tissues[base])
    scaled = parse_scaled_name(name)
    if scaled is not None and scaled[0] in tissues:
        return make_scaled(f"medphys.materials.get({name!r})", tissues[scaled[0]], scaled[1])
    raise unknown_name("material", name, names())


def density_scaled(base: str | Material, factor: float) -> Material:
    """A tissue's composition at ``factor`` times its density (a hypodense or hyperdense region).

    Its μ is ``factor × μ_base`` at every energy; its MR properties are the base's. The name
    ``"<tissue>@<factor>"`` (factor to 4 decimals) resolves through `get` anywhere a material
    name is taken (phantom TOMLs, lesions, trials).

    Args:
        base: a catalog tissue name or a `Material` (not a mixture).
        factor: in [0.5, 1.5].

    Raises:
        ValueError: a factor out of range or a base that is a mixture.
        UnknownNameError: an unknown base name.

    Example:
        >>> import medphys.materials as mm
        >>> round(mm.density_scaled("liver", 0.97).density_g_cm3, 4)
        1.0311
    """
    material = get(base) if isinstance(base, str) else base
    return make_scaled("medphys.materials.density_scaled", material, factor)


def contrast_mixture(
    agent: str | ContrastAgent, concentration_mg_ml: float, *, base: str | Material = "blood"
) -> Material:
    """A tissue with a contrast agent mixed in by mass.

    Args:
        agent: ``"iodine"`` (mass of elemental iodine per mL) or ``"gadolinium"`` (mass of
            elemental Gd per mL), or a `ContrastAgent`.
        concentration_mg_ml: concentration of the element, mg/mL, in [0, 500].
        base: the tissue the agent is mixed into: a catalog name or a `Material`.

    Returns:
        A `Material` named ``"<base>+<agent>_<c>mg_ml"`` (e.g. ``"blood+iodine_10mg_ml"``),
        readable again with `get`. Density ρ = ρ_base + c/1000 g/cm³ (the agent adds mass
        without displacing volume); base mass fractions are scaled by ρ_base/ρ and the element
        gets (c/1000)/ρ. Gadolinium shortens T1, T2 and T2* as 1/T = 1/T_0 + r C with the
        relaxivities of gadoterate in plasma (C in mmol/L = c / 157.25 g/mol × 1000); iodine
        leaves the MR properties unchanged.

    Raises:
        UnknownNameError: unknown agent or base tissue (the message lists the alternatives).
        ValueError: a negative, non-finite or too large concentration, or a base that is
            itself a mixture.

    Example:
        >>> import medphys.materials as mm
        >>> m = mm.contrast_mixture("iodine", 10.0)
        >>> m.name, round(m.density_g_cm3, 3)
        ('blood+iodine_10mg_ml', 1.07)

    References:
        Rohrer M et al., Invest Radiol 40:715-724 (2005) (relaxivities).
    """
    where = "medphys.materials.contrast_mixture"
    if isinstance(base, Material):
        base_material = base
    else:
        tissues = base_materials()
        if base not in tissues:
            raise unknown_name(f"base tissue (in {where})", str(base), tuple(sorted(tissues)))
        base_material = tissues[base]
    return make_mixture(where, agent, concentration_mg_ml, base_material)


def attenuation_table(
    materials: Sequence[str | Material], energy_kev: Any
) -> Float[np.ndarray, "materials energies"]:
    """Linear attenuation μ (1/cm) of several materials on one energy grid, for simulators.

    Each ``(material, grid)`` row is computed once and cached (`functools.lru_cache` on tuples),
    so repeated calls with the same grid cost a dictionary look-up and a stack.

    Args:
        materials: catalog names (see `get`) or `Material` objects, in the order wanted.
        energy_kev: 1-D energy grid, keV, within [1, 150].

    Returns:
        ``(len(materials), len(energy_kev))`` float64 array of μ in 1/cm (a fresh array; the
        cached rows are read-only).

    Raises:
        UnknownNameError: an unknown material name.
        ValueError: an energy outside [1, 150] keV or a grid that is not 1-D.

    Example:
        >>> import medphys.materials as mm
        >>> mm.attenuation_table(["water", "cortical_bone"], [40.0, 80.0]).shape
        (2, 2)
    """
    where = "medphys.materials.attenuation_table"
    energies = check_energy(where, energy_kev)
    if energies.ndim != 1:
        raise ValueError(f"{where}: `energy_kev` must be a 1-D grid (got shape {energies.shape})")
    if isinstance(materials, (str, Material)):
        raise TypeError(
            f"{where}: `materials` must be a sequence of names or Materials (got one {type(materials).__name__})"
        )
    resolved = [m if isinstance(m, Material) else get(m) for m in materials]
    grid = tuple(float(e) for e in energies)
    if not resolved:
        return np.zeros((0, len(grid)), dtype=np.float64)
    return np.stack([_mu_row(m, grid) for m in resolved])


@functools.lru_cache(maxsize=1024)
def _mu_row(material: Material, grid: tuple[float, ...]) -> np.ndarray:
    row = material.density_g_cm3 * mixture_mass_attenuation(
        material.composition, np.asarray(grid, dtype=np.float64)
    )
    row.setflags(write=False)
    return row
