"""Explicit normalisation to [0, 1]: one linear map, taken from the reference, applied to every array."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Float

from . import _checks as chk


@dataclasses.dataclass(frozen=True)
class Normalisation:
    """The linear map ``x ↦ (x − low) / (high − low)`` that a metric's inputs went through.

    Attributes:
        low: the value mapped to 0, in the reference's units (e.g. cm⁻¹ or mm⁻¹ for μ).
        high: the value mapped to 1, in the same units.
        source: where `low` and `high` came from: ``"reference min/max"``, ``"window"`` (both
            given), ``"window low, reference max"`` or ``"reference min, window high"``.
        clip: whether the mapped values were clipped to [0, 1].
    """

    low: float
    high: float
    source: str
    clip: bool = False

    def apply(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """Map `x` with this normalisation (the same map `normalise` applied)."""
        a = jnp.asarray(x)
        y = (a.astype(jnp.result_type(float, a.dtype)) - self.low) / (self.high - self.low)
        return jnp.clip(y, 0.0, 1.0) if self.clip else y

    def describe(self) -> str:
        """One sentence for a results table, e.g. ``[0, 0.0412] → [0, 1] (reference min/max), not clipped``."""
        clip = "clipped to [0, 1]" if self.clip else "not clipped"
        return f"[{self.low:.6g}, {self.high:.6g}] → [0, 1] ({self.source}), {clip}"


def normalise(
    reference: Float[Array, "..."],
    *others: Float[Array, "..."],
    low: float | None = None,
    high: float | None = None,
    clip: bool = False,
) -> tuple[Any, ...]:
    """Map `reference` and every array in `others` to [0, 1] with one linear map.

    The map is ``x ↦ (x − low) / (high − low)``. `low` and `high` default to the reference's
    minimum and maximum, so the reference spans [0, 1] (to rounding); give both to use a fixed
    attenuation window instead (the same window for every case of a study makes scores comparable
    across cases). The estimates never influence the map: a reconstruction cannot improve its score
    by changing the scale. Values outside [low, high] map outside [0, 1] and count in full in
    the metrics unless ``clip=True``.

    Runs on the host (it reads the reference's range); call it once, outside `jax.jit`.

    Args:
        reference: the ground truth, any shape.
        *others: arrays to map identically (estimates, other methods' reconstructions), any shape.
        low: the value mapped to 0 (default: the reference's minimum).
        high: the value mapped to 1 (default: the reference's maximum).
        clip: clip the mapped arrays to [0, 1] (default False: errors outside the range count).

    Returns:
        ``(reference01, *others01, normalisation)``: the mapped arrays (floating, same shapes) and
        the `Normalisation` that states what was done; put ``normalisation.describe()`` next to
        every score.

    Raises:
        ValueError: non-finite values, ``high <= low`` (e.g. a constant reference), a non-finite
            `low` or `high`.

    Example:
        >>> ref01, est01, norm = normalise(mu_true, mu_estimate)
        >>> psnr(est01, ref01, data_range=1.0), norm.describe()
    """
    call = "normalise"
    ref = chk.image(call, "reference", reference)
    for i, other in enumerate(others):
        chk.image(call, f"others[{i}]", other)
    given = []
    for name, value in (("low", low), ("high", high)):
        if value is not None:
            v = float(value)
            if not math.isfinite(v):
                raise ValueError(f"{chk.where(call)}: `{name}` must be finite (got {v})")
            given.append(name)
    lo = float(low) if low is not None else float(jnp.min(ref))
    hi = float(high) if high is not None else float(jnp.max(ref))
    if not hi > lo:
        raise ValueError(
            f"{chk.where(call)}: the range must satisfy high > low (got low={lo:.6g}, "
            f"high={hi:.6g}); a constant reference has no range: pass `low` and `high` (a window)"
        )
    source = {
        (): "reference min/max",
        ("low", "high"): "window",
        ("low",): "window low, reference max",
        ("high",): "reference min, window high",
    }[tuple(given)]
    norm = Normalisation(low=lo, high=hi, source=source, clip=bool(clip))
    return (norm.apply(ref), *(norm.apply(o) for o in others), norm)
