"""Boundary checks for the observer and ROC functions (skipped for traced values under jit/vmap)."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from .._checks import is_concrete

_PKG = "medphys.observers"


def where(call: str) -> str:
    return f"{_PKG}.{call}"


def level(call: str, value: Any) -> float:
    """A confidence level strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{where(call)}: `level` must be a number in (0, 1) (got {value!r})")
    out = float(value)
    if not (0.0 < out < 1.0):
        raise ValueError(f"{where(call)}: `level` must lie strictly between 0 and 1 (got {out})")
    return out


def scores(call: str, name: str, value: Any, *, ndim: int = 1) -> jax.Array:
    """A floating array of scores with `ndim` dimensions; all values finite when concrete."""
    arr = value if isinstance(value, jax.Array) else np.asarray(value)
    if arr.ndim != ndim:
        raise ValueError(
            f"{where(call)}: `{name}` must have {ndim} dimension(s) (got shape {tuple(arr.shape)})"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{where(call)}: `{name}` must hold real numbers (got dtype {arr.dtype})")
    if is_concrete(arr):
        a = np.asarray(arr)
        bad = ~np.isfinite(a)
        if np.any(bad):
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{where(call)}: `{name}` must be finite; {int(bad.sum())} of {a.size} values are "
                f"not (first at index {idx}: {a[idx]}). Remove or fix those cases before the "
                "analysis"
            )
    return jax.numpy.asarray(arr, dtype=jax.numpy.result_type(float, arr.dtype))


def truth(call: str, name: str, value: Any, n: int, *, minimum: int = 1) -> jax.Array:
    """A 1-D truth vector of length `n` (bool, or integers 0/1), with `minimum` cases per class."""
    arr = value if isinstance(value, jax.Array) else np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"{where(call)}: `{name}` must be a 1-D vector with one entry per case ({n}) "
            f"(got shape {tuple(arr.shape)})"
        )
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(
            f"{where(call)}: `{name}` must be boolean (True = signal present) or integers 0/1 "
            f"(got dtype {arr.dtype})"
        )
    if is_concrete(arr):
        a = np.asarray(arr)
        if arr.dtype != bool and not np.all((a == 0) | (a == 1)):
            bad = a[(a != 0) & (a != 1)][0]
            raise ValueError(f"{where(call)}: `{name}` must hold only 0 and 1 (got {bad})")
        n1 = int(np.count_nonzero(a))
        n0 = a.size - n1
        if min(n1, n0) < minimum:
            raise ValueError(
                f"{where(call)}: `{name}` must mark at least {minimum} signal-present and "
                f"{minimum} signal-absent case(s) (got {n1} present, {n0} absent)"
            )
    return jax.numpy.asarray(arr).astype(bool)


def positive_int(call: str, name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where(call)}: `{name}` must be an integer (got {value!r})")
    if value < minimum:
        raise ValueError(f"{where(call)}: `{name}` must be >= {minimum} (got {value})")
    return int(value)


def positive_float(call: str, name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{where(call)}: `{name}` must be a number (got {value!r})")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where(call)}: `{name}` must be a number (got {value!r})") from None
    ok = math.isfinite(out) and (out >= 0 if allow_zero else out > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{where(call)}: `{name}` must be finite and {bound} (got {out})")
    return out


def choice(call: str, name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        import difflib

        close = (
            difflib.get_close_matches(value, list(allowed), n=2, cutoff=0.5)
            if isinstance(value, str)
            else []
        )
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"{where(call)}: unknown `{name}` {value!r}.{hint} "
            f"Allowed: {', '.join(repr(a) for a in allowed)}"
        )
    return value
