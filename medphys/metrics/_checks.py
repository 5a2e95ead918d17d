"""Boundary checks for the metrics: messages name the call, the field, the value and what is allowed.

Value checks (finite, non-empty) run only on concrete arrays; under `jax.jit` / `jax.vmap` only the
shape and dtype checks run, at trace time.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._checks import is_concrete

_PKG = "medphys.metrics"


def where(call: str) -> str:
    return f"{_PKG}.{call}"


def image(call: str, name: str, value: Any, *, ndims: tuple[int, ...] | None = None) -> Any:
    """A non-empty array of real numbers with one of `ndims` dimensions, finite when concrete."""
    arr = value if isinstance(value, jax.Array) else np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{where(call)}: `{name}` must hold real numbers (got dtype {arr.dtype})")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(
            f"{where(call)}: `{name}` must hold real numbers (got dtype {arr.dtype}); "
            "pass the magnitude (abs) of a complex image"
        )
    if ndims is not None and arr.ndim not in ndims:
        allowed = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(
            f"{where(call)}: `{name}` must be {allowed} (got shape {tuple(arr.shape)})"
        )
    if arr.size == 0:
        raise ValueError(
            f"{where(call)}: `{name}` must not be empty (got shape {tuple(arr.shape)})"
        )
    if is_concrete(arr) and not bool(jnp.all(jnp.isfinite(arr))):
        a = np.asarray(arr)
        bad = ~np.isfinite(a)
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{where(call)}: `{name}` must be finite; {int(bad.sum())} of {a.size} values are not "
            f"(first at index {idx}: {a[idx]}). A diverged reconstruction has no score: report "
            "it as failed rather than replacing the values"
        )
    return arr


def pair(
    call: str, estimate: Any, reference: Any, *, ndims: tuple[int, ...] | None = None
) -> tuple[Array, Array]:
    """`estimate` and `reference` checked, of one shape, cast to their common floating dtype."""
    e = image(call, "estimate", estimate, ndims=ndims)
    r = image(call, "reference", reference, ndims=ndims)
    if e.shape != r.shape:
        raise ValueError(
            f"{where(call)}: `estimate` and `reference` must have the same shape (got "
            f"{tuple(e.shape)} and {tuple(r.shape)}); resample or crop the estimate onto the "
            "reference grid first"
        )
    dtype = jnp.result_type(float, e.dtype, r.dtype)
    return jnp.asarray(e, dtype), jnp.asarray(r, dtype)


def data_range(call: str, value: Any) -> float:
    """A positive finite Python number (a static value: not traced)."""
    scalar = isinstance(value, numbers.Real) or (
        isinstance(value, (np.ndarray, jax.Array))
        and value.shape == ()
        and (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating))
    )
    if isinstance(value, bool) or isinstance(value, jax.core.Tracer) or not scalar:
        raise TypeError(
            f"{where(call)}: `data_range` must be a number, fixed before the call (got "
            f"{value!r}); it is part of the metric's definition, not an array to trace"
        )
    out = float(value)
    if not (math.isfinite(out) and out > 0):
        raise ValueError(
            f"{where(call)}: `data_range` must be a positive finite number (got {out}); it is the "
            "dynamic range of the reference: 1.0 for volumes normalised to [0, 1] (see `normalise`)"
        )
    return out


def mask(call: str, value: Any, shape: tuple[int, ...]) -> Array:
    """A boolean array of `shape` with at least one True (when concrete)."""
    arr = value if isinstance(value, jax.Array) else np.asarray(value)
    if arr.dtype != bool:
        raise TypeError(
            f"{where(call)}: `mask` must be a boolean array (got dtype {arr.dtype}); "
            "build it with `body_mask(reference)` or a comparison such as `labels > 0`"
        )
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(
            f"{where(call)}: `mask` must have the shape of `reference` {tuple(shape)} "
            f"(got {tuple(arr.shape)})"
        )
    if is_concrete(arr) and not bool(jnp.any(arr)):
        raise ValueError(
            f"{where(call)}: `mask` must select at least one voxel (got an all-False mask of "
            f"shape {tuple(arr.shape)})"
        )
    return jnp.asarray(arr)
