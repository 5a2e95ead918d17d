"""Loading the package's data files: ``tissues.toml`` (composition, density) and
``mr_relaxation.toml`` (PD, T1, T2, T2* per field), validated with pydantic on first use.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Annotated

import pydantic
import xraylib

from .._config import Strict, load_model
from .._errors import ConfigError
from ._material import FIELDS_T, Material, MRProperties, atomic_number

DATA_DIR = Path(__file__).resolve().parent
TISSUES_FILE = DATA_DIR / "tissues.toml"
MR_FILE = DATA_DIR / "mr_relaxation.toml"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: Reversible dephasing rate R2' (1/s) per field for the T2* rule of the "r2prime" reference.
R2_PRIME_PER_S: dict[float, float] = {1.5: 1.3, 3.0: 4.7}

Positive = Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)]
Text = Annotated[str, pydantic.Field(min_length=1)]


# --- tissues.toml ----------------------------------------------------------------------------------


class TissueEntry(Strict):
    """One ``[[material]]`` of tissues.toml."""

    name: Text
    description: Text
    nist: str | None = None
    element: str | None = None
    composition_percent: (
        dict[str, Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]] | None
    ) = None
    composition_source: str | None = None
    density_g_cm3: Positive | None = None
    density_source: str | None = None

    @pydantic.field_validator("name")
    @classmethod
    def _snake_case(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be lowercase snake_case (letters, digits, underscores)")
        return v

    @pydantic.field_validator("nist")
    @classmethod
    def _known_nist(cls, v: str | None) -> str | None:
        if v is not None and v not in xraylib.GetCompoundDataNISTList():
            raise ValueError("is not a compound of xraylib.GetCompoundDataNISTList()")
        return v

    @pydantic.field_validator("element")
    @classmethod
    def _known_element(cls, v: str | None) -> str | None:
        if v is not None:
            atomic_number("tissues.toml", v)
        return v

    @pydantic.field_validator("composition_percent")
    @classmethod
    def _known_symbols(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            if not v:
                raise ValueError("must list at least one element")
            for symbol in v:
                atomic_number("tissues.toml", symbol)
        return v

    @pydantic.model_validator(mode="after")
    def _one_way(self) -> TissueEntry:
        ways = [
            k for k in ("nist", "element", "composition_percent") if getattr(self, k) is not None
        ]
        if len(ways) != 1:
            raise ValueError(
                "give exactly one of `nist`, `element`, `composition_percent` "
                f"(got {ways or 'none'})"
            )
        if self.composition_percent is not None:
            if not self.composition_source or self.density_g_cm3 is None or not self.density_source:
                raise ValueError(
                    "a typed `composition_percent` needs `composition_source`, `density_g_cm3` "
                    "and `density_source`"
                )
        elif self.density_g_cm3 is not None and not self.density_source:
            raise ValueError(
                "`density_g_cm3` overriding the xraylib density needs a `density_source`"
            )
        return self


class TissueFile(Strict):
    material: list[TissueEntry]


def _build_material(entry: TissueEntry) -> Material:
    """Composition and density of one entry, renormalised, with its source text."""
    notes: list[str] = []
    if entry.nist is not None:
        data = xraylib.GetCompoundDataNISTByName(entry.nist)
        pairs = [
            (int(z), float(w)) for z, w in zip(data["Elements"], data["massFractions"], strict=True)
        ]
        density = float(data["density"])
        source = f"xraylib NIST compound {entry.nist!r} (composition and density)"
        total = sum(w for _, w in pairs)
        if abs(total - 1.0) > 1e-12:
            notes.append(f"mass fractions renormalised from a tabulated total of {total:.7f}")
    elif entry.element is not None:
        z = atomic_number("tissues.toml", entry.element)
        pairs = [(z, 1.0)]
        density = float(xraylib.ElementDensity(z))
        source = f"pure element {entry.element} (Z = {z}); density from xraylib ElementDensity"
        total = 1.0
    else:
        typed = entry.composition_percent or {}  # set: guaranteed by the model validator
        pairs = [(atomic_number("tissues.toml", s), p / 100.0) for s, p in typed.items()]
        density = float(entry.density_g_cm3)  # type: ignore[arg-type]
        source = f"composition: {entry.composition_source}; density: {entry.density_source}"
        total = sum(w for _, w in pairs)
        if abs(total - 1.0) > 1e-12:
            notes.append(f"typed percentages sum to {100 * total:.2f} %, renormalised to 100 %")
    if entry.density_g_cm3 is not None and entry.composition_percent is None:
        density = float(entry.density_g_cm3)
        source = source.replace("(composition and density)", "(composition)")
        source += f"; density {density:g} g/cm³: {entry.density_source}"
    if total <= 0:
        raise ConfigError(f"{TISSUES_FILE}: material {entry.name!r}: composition sums to 0")
    composition = tuple(sorted((z, w / total) for z, w in pairs if w > 0))
    if notes:
        source += " (" + "; ".join(notes) + ")"
    return Material(
        name=entry.name,
        density_g_cm3=density,
        composition=composition,
        source=source,
        description=entry.description,
    )


# --- mr_relaxation.toml ----------------------------------------------------------------------------


class FieldEntry(Strict):
    """``at_1_5t`` / ``at_3t`` of one tissue."""

    t1_s: Positive
    t2_s: Positive
    t2star_s: Positive | None = None
    source: str | None = None
    t1_source: str | None = None
    t2_source: str | None = None
    t2star_source: str | None = None

    @pydantic.model_validator(mode="after")
    def _sources(self) -> FieldEntry:
        if self.t1_source is None and self.source is None:
            raise ValueError("T1 needs a source: give `source` or `t1_source`")
        if self.t2_source is None and self.source is None:
            raise ValueError("T2 needs a source: give `source` or `t2_source`")
        if self.t2star_s is not None and self.t2star_source is None and self.source is None:
            raise ValueError("`t2star_s` needs `t2star_source` (or `source`)")
        if self.t2_s > self.t1_s:
            raise ValueError(f"T2 ({self.t2_s} s) must not exceed T1 ({self.t1_s} s)")
        if self.t2star_s is not None and self.t2star_s > self.t2_s:
            raise ValueError(f"T2* ({self.t2star_s} s) must not exceed T2 ({self.t2_s} s)")
        return self


class TissueMR(Strict):
    name: Text
    pd: Annotated[float, pydantic.Field(ge=0, le=1, allow_inf_nan=False)]
    pd_source: Text
    proxy: str | None = None
    at_1_5t: FieldEntry | None = None
    at_3t: FieldEntry | None = None

    @pydantic.model_validator(mode="after")
    def _fields_or_proxy(self) -> TissueMR:
        if self.proxy is None and (self.at_1_5t is None or self.at_3t is None):
            raise ValueError("give both `at_1_5t` and `at_3t`, or a `proxy` tissue")
        if self.proxy is not None and (self.at_1_5t is not None or self.at_3t is not None):
            raise ValueError("give either `proxy` or the `at_1_5t` / `at_3t` tables, not both")
        return self


class MRFile(Strict):
    references: dict[str, Text]
    tissue: list[TissueMR]


def _cite(references: dict[str, str], source: str, *, what: str) -> str:
    """Expand ``"key"`` or ``"key: detail"`` or ``"estimate: ... (key)"`` into citation text."""
    key, sep, detail = source.partition(":")
    key = key.strip()
    if key in references:
        return references[key] + (f" [{detail.strip()}]" if sep else "")
    if key == "estimate":
        cited = [k for k in references if re.search(rf"\b{re.escape(k)}\b", detail)]
        return source + "".join(f"; {k} = {references[k]}" for k in cited)
    raise ConfigError(
        f"{MR_FILE}: {what}: source {source!r} names no key of [references] "
        f"(known: {', '.join(sorted(references))}) and is not an 'estimate: ...'"
    )


def _field_properties(
    references: dict[str, str], tissue: TissueMR, entry: FieldEntry, field: float, proxy: str | None
) -> MRProperties:
    what = f"tissue {tissue.name!r} at {field:g} T"
    t1_src = _cite(references, entry.t1_source or entry.source or "", what=what)
    t2_src = _cite(references, entry.t2_source or entry.source or "", what=what)
    if entry.t2star_s is not None:
        t2star = entry.t2star_s
        t2star_src = _cite(references, entry.t2star_source or entry.source or "", what=what)
    else:
        t2star = 1.0 / (1.0 / entry.t2_s + R2_PRIME_PER_S[field])
        t2star_src = _cite(references, "r2prime", what=what)
    prefix = f"proxy, values of {proxy!r}: " if proxy else ""
    source = (
        f"PD: {_cite(references, tissue.pd_source, what=what)} | T1: {prefix}{t1_src} | "
        f"T2: {prefix}{t2_src} | T2*: {prefix}{t2star_src}"
    )
    return MRProperties(
        field_t=field,
        pd=tissue.pd,
        t1_s=entry.t1_s,
        t2_s=entry.t2_s,
        t2star_s=t2star,
        source=source,
    )


def _mr_table(model: MRFile) -> dict[str, tuple[MRProperties, ...]]:
    by_name = {t.name: t for t in model.tissue}
    if len(by_name) != len(model.tissue):
        raise ConfigError(f"{MR_FILE}: a tissue name appears twice")
    out: dict[str, tuple[MRProperties, ...]] = {}
    for tissue in model.tissue:
        source_tissue = tissue
        if tissue.proxy is not None:
            if tissue.proxy not in by_name or by_name[tissue.proxy].proxy is not None:
                raise ConfigError(
                    f"{MR_FILE}: tissue {tissue.name!r}: proxy {tissue.proxy!r} must be a tissue of the "
                    "file with its own at_1_5t / at_3t tables"
                )
            source_tissue = by_name[tissue.proxy]
        entries = {1.5: source_tissue.at_1_5t, 3.0: source_tissue.at_3t}
        props = []
        for field in FIELDS_T:
            entry = entries[field]
            if entry is None:  # excluded by the model validator
                raise ConfigError(
                    f"{MR_FILE}: tissue {source_tissue.name!r} lacks {field:g} T data"
                )
            props.append(_field_properties(model.references, tissue, entry, field, tissue.proxy))
        out[tissue.name] = tuple(props)
    return out


@functools.cache
def base_materials() -> dict[str, Material]:
    """The catalog tissues (no contrast mixtures), each with its MR properties, by name."""
    tissues = load_model(TissueFile, TISSUES_FILE)
    mr = _mr_table(load_model(MRFile, MR_FILE))
    out: dict[str, Material] = {}
    for entry in tissues.material:
        if entry.name in out:
            raise ConfigError(f"{TISSUES_FILE}: material {entry.name!r} appears twice")
        if entry.name not in mr:
            raise ConfigError(
                f"{MR_FILE}: no [[tissue]] entry for material {entry.name!r} of {TISSUES_FILE.name}"
            )
        material = _build_material(entry)
        out[entry.name] = Material(
            name=material.name,
            density_g_cm3=material.density_g_cm3,
            composition=material.composition,
            source=material.source,
            description=material.description,
            mr_properties=mr[entry.name],
        )
    extra = sorted(set(mr) - set(out))
    if extra:
        raise ConfigError(f"{MR_FILE}: tissues {extra} are not materials of {TISSUES_FILE.name}")
    for name, material in out.items():
        total = sum(w for _, w in material.composition)
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ConfigError(f"{TISSUES_FILE}: material {name!r}: mass fractions sum to {total}")
    return out
