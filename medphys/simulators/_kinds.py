"""Typed options shared by the simulators: `Modality` and the reconstruction `Filter`.

Both are string enums: a member equals its value (``Filter.HANN == "hann"``), so protocol files
and existing code that give the string keep working, and every boundary turns what it receives
into the member (`as_member`) or refuses it, naming the field, the value and the members.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

__all__ = ["Filter", "Modality", "as_member"]


class Modality(enum.StrEnum):
    """What an acquisition makes.

    A protocol's own modality is ``CT`` (reconstructed), ``RADIOGRAPH`` (projections only) or
    ``MR``; an imaging arm (`medphys.pipelines.Arm.modality`) further tells a radiograph taken
    on a stationary detector: in the x-y plane (the breast lying on it) as ``DM`` (mammography,
    one view) or ``DBT`` (breast tomosynthesis, a sweep); facing another world axis as
    ``RADIOGRAPH`` (one view) or ``TOMOSYNTHESIS`` (a sweep; a chest tomosynthesis).
    """

    CT = "ct"
    RADIOGRAPH = "radiograph"
    MR = "mr"
    DM = "dm"
    DBT = "dbt"
    TOMOSYNTHESIS = "tomosynthesis"


class Filter(enum.StrEnum):
    """The window applied to the ramp of filtered backprojection (FBP, FDK, DBT)."""

    RAM_LAK = "ram-lak"
    SHEPP_LOGAN = "shepp-logan"
    COSINE = "cosine"
    HANN = "hann"


E = TypeVar("E", bound=enum.StrEnum)


def as_member(
    where: str, field: str, value: Any, kind: type[E], allowed: tuple[E, ...] | None = None
) -> E:
    """``value`` (a member or its string) as a member of ``kind``, one of ``allowed`` (default
    all); else a ValueError naming the field, the value and the members allowed."""
    members = tuple(kind) if allowed is None else allowed
    try:
        member = kind(value) if isinstance(value, str) else None
    except ValueError:
        member = None
    if member is None or member not in members:
        listing = ", ".join(f"{kind.__name__}.{m.name} ({m.value!r})" for m in members)
        raise ValueError(f"{where}: `{field}` must be one of {listing} (got {value!r})")
    return member
