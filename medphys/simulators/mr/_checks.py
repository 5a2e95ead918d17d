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
