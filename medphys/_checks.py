"""Boundary checks shared by the public constructors: messages name the call, the field and the value."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


class FieldError(ValueError):
    """A user value out of range: ``where: detail``, with ``field`` kept for config error paths."""

    def __init__(self, where: str, field: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.field = field
        self.detail = detail


def number(where: str, name: str, value: Any) -> float:
    """A finite real number (a Python or NumPy scalar, or a 0-d array)."""
    if isinstance(value, bool):
        raise TypeError(f"{where}: `{name}` must be a number (got {value!r})")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: `{name}` must be a number (got {value!r})") from None
    if not math.isfinite(out):
        raise FieldError(where, name, f"`{name}` must be finite (got {out})")
    return out


def positive(where: str, name: str, value: Any, unit: str = "") -> float:
    out = number(where, name, value)
    if out <= 0:
        raise FieldError(where, name, f"`{name}` must be positive{unit} (got {out})")
    return out


def non_negative(where: str, name: str, value: Any) -> float:
    out = number(where, name, value)
    if out < 0:
        raise FieldError(where, name, f"`{name}` must be >= 0 (got {out})")
    return out


def integer(where: str, name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: `{name}` must be an integer (got {value!r})")
    if value < minimum:
        raise FieldError(where, name, f"`{name}` must be >= {minimum} (got {value})")
    return int(value)


def is_concrete(*xs: Any) -> bool:
    """True when no argument is being traced (values can be read on the host)."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def positive_array(where: str, name: str, value: Any, unit: str = "") -> None:
    """Raise when a concrete array holds a value <= 0 or a non-finite value (skipped under tracing)."""
    if value is None or not is_concrete(value):
        return
    a = np.asarray(value)
    if a.size == 0:
        return
    bad = ~np.isfinite(a) | (a <= 0)
    if np.any(bad):
        first = a[bad].ravel()[0]
        raise FieldError(
            where,
            name,
            f"`{name}` must be positive and finite{unit} (got {first} in {int(bad.sum())} "
            f"of {a.size} values)",
        )
