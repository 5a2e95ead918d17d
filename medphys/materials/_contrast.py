"""Contrast-agent mixtures: a base tissue plus elemental iodine or gadolinium, by concentration.

Model (by mass): ``c`` mg of the contrast element per mL of mixture is added to the base tissue
without displacing volume, so the density becomes ρ = ρ_base + c/1000 g/cm³ and the mass fractions
are ``w_i ρ_base / ρ`` for the base's elements plus ``(c/1000)/ρ`` for the contrast element. The
chelate or carrier molecule (C, H, N, O) is not modelled: at clinical concentrations (≤ 20 mg/mL
iodine, ≤ 1 mg/mL Gd) it changes ρ by under 2 % and hardly changes μ/ρ, whereas the high-Z element
dominates the attenuation. For MR, gadolinium shortens relaxation as
1/T_i = 1/T_i,0 + r_i C (C in mmol/L); T2* uses r2 (extra susceptibility dephasing of
compartmentalised agent is not modelled). Iodine does not change MR properties.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from .._errors import unknown_name
from ._material import Material, MRProperties

#: Largest accepted concentration of the contrast element, mg/mL (undiluted iodinated agents
#: hold about 300-400 mg I/mL; 1 M gadolinium agents about 157 mg Gd/mL).
MAX_CONCENTRATION_MG_ML = 500.0


@dataclasses.dataclass(frozen=True)
class ContrastAgent:
    """A contrast element, with its relaxivities where it is an MR agent.

    Attributes:
        name: ``"iodine"`` or ``"gadolinium"`` (the names used in mixture names).
        z: atomic number of the contrast element.
        molar_mass_g_mol: standard atomic weight, g/mol.
        relaxivity: ``(field_t, r1, r2)`` triples in L mmol⁻¹ s⁻¹, empty for X-ray-only agents.
        relaxivity_source: literature source of the relaxivities.
    """

    name: str
    z: int
    molar_mass_g_mol: float
    relaxivity: tuple[tuple[float, float, float], ...] = ()
    relaxivity_source: str = ""

    def relaxivities(self, field_t: float) -> tuple[float, float] | None:
        """``(r1, r2)`` at ``field_t`` in L mmol⁻¹ s⁻¹, or None for an X-ray-only agent."""
        for field, r1, r2 in self.relaxivity:
            if abs(field - field_t) <= 1e-9:
                return r1, r2
        return None


#: Elemental iodine (iodinated CT contrast), counted as mass of iodine per mL.
IODINE = ContrastAgent(name="iodine", z=53, molar_mass_g_mol=126.904)

#: Elemental gadolinium, counted as mass of Gd per mL; relaxivities of gadoterate (Gd-DOTA).
GADOLINIUM = ContrastAgent(
    name="gadolinium",
    z=64,
    molar_mass_g_mol=157.25,
    relaxivity=((1.5, 3.6, 4.3), (3.0, 3.5, 4.9)),
    relaxivity_source=(
        "Rohrer M, Bauer H, Mintorovitch J, Requardt M, Weinmann HJ. Comparison of magnetic "
        "properties of MRI contrast media solutions at different magnetic field strengths. "
        "Invest Radiol 40:715-724 (2005): gadoterate (Gd-DOTA) in plasma at 37 °C, "
        "r1/r2 = 3.6/4.3 (1.5 T) and 3.5/4.9 (3 T) L mmol⁻¹ s⁻¹; a later human-plasma "
        "measurement gives r1 = 3.3 (1.5 T) and 3.0 (3 T) (Szomolanyi P et al., Invest Radiol "
        "54:559-564 (2019))"
    ),
)

AGENTS: dict[str, ContrastAgent] = {a.name: a for a in (IODINE, GADOLINIUM)}

#: Mixtures listed by `medphys.materials.names()`: (base, agent, mg/mL).
CATALOG_MIXTURES: tuple[tuple[str, str, float], ...] = (
    *(("blood", "iodine", c) for c in (2.0, 5.0, 10.0, 15.0, 20.0)),
    *(("blood", "gadolinium", c) for c in (0.5, 1.0)),
)

_MIXTURE_NAME = re.compile(
    r"^(?P<base>[a-z][a-z0-9_]*)\+(?P<agent>[a-z]+)_(?P<conc>\d+(?:\.\d+)?)mg_ml$"
)


def format_concentration(concentration_mg_ml: float) -> str:
    """Shortest decimal text that reads back as the same float (``10.0`` → ``"10"``)."""
    return np.format_float_positional(float(concentration_mg_ml), trim="-")


def mixture_name(base: str, agent: str, concentration_mg_ml: float) -> str:
    """The catalog name of a mixture: ``"<base>+<agent>_<c>mg_ml"``, e.g. ``"blood+iodine_10mg_ml"``."""
    return f"{base}+{agent}_{format_concentration(concentration_mg_ml)}mg_ml"


def parse_mixture_name(name: str) -> tuple[str, str, float] | None:
    """``(base, agent, mg/mL)`` of a mixture name, or None when ``name`` is not of that form."""
    match = _MIXTURE_NAME.match(name)
    if match is None:
        return None
    return match["base"], match["agent"], float(match["conc"])


def _resolve_agent(where: str, agent: str | ContrastAgent) -> ContrastAgent:
    if isinstance(agent, ContrastAgent):
        return agent
    if isinstance(agent, str) and agent in AGENTS:
        return AGENTS[agent]
    raise unknown_name(f"contrast agent (in {where})", str(agent), tuple(AGENTS))


def _relaxed(props: MRProperties, agent: ContrastAgent, concentration_mg_ml: float) -> MRProperties:
    rates = agent.relaxivities(props.field_t)
    if rates is None:
        return dataclasses.replace(
            props, source=props.source + f" | {agent.name} does not change MR properties"
        )
    r1, r2 = rates
    conc_mmol_l = concentration_mg_ml / agent.molar_mass_g_mol * 1000.0
    return MRProperties(
        field_t=props.field_t,
        pd=props.pd,
        t1_s=1.0 / (1.0 / props.t1_s + r1 * conc_mmol_l),
        t2_s=1.0 / (1.0 / props.t2_s + r2 * conc_mmol_l),
        t2star_s=1.0 / (1.0 / props.t2star_s + r2 * conc_mmol_l),
        source=(
            props.source
            + f" | contrast: {format_concentration(concentration_mg_ml)} mg/mL {agent.name} = "
            f"{conc_mmol_l:.4g} mmol/L, 1/T1 += r1 C, 1/T2 and 1/T2* += r2 C with r1 = {r1:g}, "
            f"r2 = {r2:g} L/(mmol s): {agent.relaxivity_source}"
        ),
    )


def make_mixture(
    where: str, agent: str | ContrastAgent, concentration_mg_ml: float, base: Material
) -> Material:
    """The mixture of ``base`` and ``agent`` (arguments already resolved to objects by the caller)."""
    agent_obj = _resolve_agent(where, agent)
    try:
        c = float(concentration_mg_ml)
    except (TypeError, ValueError):
        c = math.nan
    if not math.isfinite(c) or not 0.0 <= c <= MAX_CONCENTRATION_MG_ML:
        raise ValueError(
            f"{where}: `concentration_mg_ml` must be in [0, {MAX_CONCENTRATION_MG_ML:g}] mg of "
            f"{agent_obj.name} per mL (got {concentration_mg_ml!r})"
        )
    if parse_mixture_name(base.name) is not None:
        raise ValueError(
            f"{where}: `base` must be a tissue, not a contrast mixture (got {base.name!r}); "
            "build mixtures of one agent from the plain tissue"
        )
    added = c / 1000.0  # g/cm³
    density = base.density_g_cm3 + added
    scale = base.density_g_cm3 / density
    fractions = {z: w * scale for z, w in base.composition}
    fractions[agent_obj.z] = fractions.get(agent_obj.z, 0.0) + added / density
    total = sum(fractions.values())
    composition = tuple(sorted((z, w / total) for z, w in fractions.items() if w > 0))
    return Material(
        name=mixture_name(base.name, agent_obj.name, c),
        density_g_cm3=density,
        composition=composition,
        source=(
            f"{format_concentration(c)} mg/mL elemental {agent_obj.name} (Z = {agent_obj.z}) added by "
            f"mass to {base.name!r}, assuming no displaced volume: density = {base.density_g_cm3:g} + "
            f"{added:g} g/cm³, base mass fractions scaled by {scale:.6f}. Base: {base.source}"
        ),
        description=f"{base.description} With {format_concentration(c)} mg/mL {agent_obj.name}.".strip(),
        mr_properties=tuple(_relaxed(p, agent_obj, c) for p in base.mr_properties),
    )
