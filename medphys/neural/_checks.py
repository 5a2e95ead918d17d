"""Boundary checks shared by the neural modules: messages name the call, the field, the value and
what is allowed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def positive_int(where: str, name: str, value: Any, low: int = 1) -> int:
    """``value`` as an int, if it is an integer (not a bool) ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{where}: `{name}` must be an integer >= {low} (got {value!r})")
    return int(value)


def positive_number(where: str, name: str, value: Any) -> float:
    """``value`` as a float, if it is a finite number ``> 0``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{where}: `{name}` must be a finite number > 0 (got {value!r})")
    return v
