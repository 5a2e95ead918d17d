"""Density-scaled tissues: a tissue's composition at a fraction of its density.

A hypodense lesion (a liver metastasis that enhances less than the parenchyma, an oedematous or
necrotic region) attenuates less than its host at every energy; modelled as the host's elemental
composition at ``factor × ρ``, its linear attenuation is exactly ``factor × μ_host(E)`` (the
mixture rule is linear in density). Catalog name ``"<tissue>@<factor>"``, e.g. ``"liver@0.9717"``.
MR properties are the tissue's own: a lower density says nothing about relaxation (give MR
contrast with a gadolinium mixture or another tissue).
"""

from __future__ import annotations

import math
import re

from ._material import Material

#: Density factors accepted: a region at half to one and a half times its tissue's density.
DENSITY_FACTOR_RANGE = (0.5, 1.5)

_NAME = re.compile(r"^(?P<base>[a-z0-9_]+)@(?P<factor>[0-9]+(?:\.[0-9]+)?)$")


def format_factor(factor: float) -> str:
    """Up to 4 decimals, trailing zeros dropped (``0.97`` → ``"0.97"``, ``1`` → ``"1"``)."""
    return f"{float(factor):.4f}".rstrip("0").rstrip(".")


def scaled_name(base: str, factor: float) -> str:
    """The catalog name of ``base`` at ``factor`` times its density: ``"<base>@<factor>"``."""
    return f"{base}@{format_factor(factor)}"


def parse_scaled_name(name: str) -> tuple[str, float] | None:
    """``(base, factor)`` of a density-scaled name, or None when ``name`` is not of that form."""
    m = _NAME.match(name)
    return None if m is None else (m.group("base"), float(m.group("factor")))


def make_scaled(where: str, base: Material, factor: float) -> Material:
    """``base`` at ``factor`` times its density (arguments resolved by the caller)."""
    try:
        f = float(factor)
    except (TypeError, ValueError):
        f = math.nan
    low, high = DENSITY_FACTOR_RANGE
    if not math.isfinite(f) or not low <= f <= high:
        raise ValueError(
            f"{where}: the density factor must be in [{low:g}, {high:g}] (got {factor!r})"
        )
    if "+" in base.name or "@" in base.name:
        raise ValueError(
            f"{where}: `base` must be a tissue, not a mixture or a scaled tissue (got "
            f"{base.name!r})"
        )
    f = float(format_factor(f))  # the factor the name records
    return Material(
        name=scaled_name(base.name, f),
        density_g_cm3=base.density_g_cm3 * f,
        composition=base.composition,
        source=(
            f"{base.name!r} at {format_factor(f)} times its density ({base.density_g_cm3:g} → "
            f"{base.density_g_cm3 * f:.6g} g/cm³), composition unchanged. Base: {base.source}"
        ),
        description=f"{base.description} At {format_factor(f)} × its density.".strip(),
        mr_properties=base.mr_properties,
    )
