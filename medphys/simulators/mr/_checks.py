"""Boundary checks of the MR constructors (the generic ones live in `medphys._checks`)."""

from __future__ import annotations

from typing import Any

from ..._checks import FieldError as FieldError
from ..._checks import integer as integer
from ..._checks import is_concrete as is_concrete
from ..._checks import non_negative as non_negative
from ..._checks import number as number
from ..._checks import positive as positive
from ..._checks import positive_array as positive_array

PREFIX = "medphys.simulators.mr."


def flip(where: str, name: str, value: Any) -> float:
    out = number(where, name, value)
    if not 0.0 < out <= 180.0:
        raise FieldError(where, name, f"`{name}` must be in (0, 180] degrees (got {out})")
    return out


def echo_times(where: str, te_s: Any, tr_s: Any) -> tuple[float, float]:
    """``(te_s, tr_s)``, both positive (seconds), with the echo inside the repetition."""
    te = positive(where, "te_s", te_s, " (seconds)")
    tr = positive(where, "tr_s", tr_s, " (seconds)")
    if not te < tr:
        raise FieldError(
            where, "te_s", f"`te_s` must be less than `tr_s` (got te_s={te:g} s, tr_s={tr:g} s)"
        )
    return te, tr
