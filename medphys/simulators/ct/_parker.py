"""Short scans: which view ranges FBP/FDK accept, and Parker's redundancy weights.

A fan-beam (or circular cone-beam) scan measures every line of the mid-plane at least once as
soon as the views cover ``pi + 2 delta``, ``delta`` the largest fan angle of a detector column.
Over less than a full turn some lines are measured twice and others once; redundancy weights
``w(beta, gamma)`` make every line count once: ``w = 1`` where a line is measured once, and the
two measurements of a twice-measured line add up to 1. FBP then reads
``f = |dtheta| sum_views w Q`` (a full scan is ``w = 1/2`` everywhere, the usual
``(pi / n_views) sum_views Q``). The weights multiply the projections before the ramp filter.

Parker weights (Parker 1982, smooth ``sin^2`` transitions), for ``beta`` the angle travelled
since the scan began and ``gamma`` the fan angle in Parker's sign convention (the two
measurements of a line are ``(beta, gamma)`` and ``(beta + pi + 2 gamma, -gamma)``)::

    w = sin^2(pi/4 · beta / (delta - gamma))                  0 <= beta <= 2 delta - 2 gamma
    w = 1                                                     2 delta - 2 gamma <= beta <= pi - 2 gamma
    w = sin^2(pi/4 · (pi + 2 delta - beta) / (delta + gamma))  pi - 2 gamma <= beta <= pi + 2 delta

These satisfy ``w(beta, gamma) + w(beta + pi + 2 gamma, -gamma) = 1`` for any
``delta >= |gamma|``. Here ``delta`` is taken from the scan itself,
``delta = (B - pi) / 2`` with ``B = n_views · |dtheta|`` the covered range, so a scan longer than
``pi`` + the fan angle (overscan) gets wider, gentler transitions: the generalisation of Wesarg
et al. (2002) to scan ranges between the minimum and a full turn.

Conventions
    Each view stands for the interval of width ``|dtheta|`` around its angle (the rectangle rule
    of the full-scan FBP), so view ``k`` sits at ``beta_k = (k + 1/2) |dtheta|`` and the scan
    covers ``[0, B]``. In `medphys.simulators.geometry`'s convention (the view angle turns the
    source counter-clockwise; ``u`` along ``e_u``) the ray through column ``u`` of view ``theta``
    has fan angle ``gamma = atan(u / sdd)`` (flat detector; ``u / sdd`` curved) and its line is
    measured again at ``(theta + pi - 2 gamma, -gamma)``: Parker's ``gamma`` is ``-gamma`` for
    increasing view angles and ``+gamma`` for decreasing ones. A parallel beam has ``gamma = 0``.

Which scans are accepted (`scan_needs_weights`)
    views uniformly spaced; a full turn (``B = 2 pi``, no weights: the reconstruction is
    unchanged), a parallel-beam half turn (``B = pi``, no weights), or a short scan with
    ``pi + 2 delta_detector <= B < 2 pi`` (Parker weights, applied automatically). A range below
    the minimum has lines that were never measured and is refused, unless the caller supplies
    its own redundancy weights. Irregularly spaced views (a phase-binned, gated subset of a
    sweep) in angular order over at most a turn, with every gap below half a turn, are weighted
    by their angular gaps (`gap_weights`).

Offset detectors (half-fan full scans)
    A detector shifted sideways (``u_offset_mm``) so that it covers one side of the central ray
    further than the other enlarges the field of view of a full turn: lines at fan angles beyond
    the short side's reach ``Delta`` are measured once (on the long side), lines with
    ``|gamma| < Delta`` twice. Wang's weights (2002) make every line count once with a smooth
    ``sin^2`` transition over the overlap, applied before the ramp filter (it also softens the
    truncation of the filtered projections)::

        w = 0                                  s gamma <= -Delta
        w = sin^2(pi/4 · (s gamma + Delta) / Delta)   |gamma| < Delta
        w = 1                                  s gamma >= Delta

    with ``s = ±1`` the side the detector extends to; ``w(gamma) + w(-gamma) = 1``. A parallel
    beam uses the detector coordinate ``u`` in place of ``gamma``. They apply automatically to a
    full turn when the unmirrored part of the detector is wider than ``max(2 pixels, 5%)`` of it
    (a quarter-pixel offset is not an offset detector); a short scan with such a detector is
    refused (Parker's conjugate rays would fall off the detector).

References:
    D. L. Parker, "Optimal short scan convolution reconstruction for fanbeam CT", Med. Phys.
    9(2):254–257, 1982.
    S. Wesarg, M. Ebert, T. Bortfeld, "Parker weights revisited", Med. Phys. 29(3):372–378, 2002.
    G. Wang, "X-ray micro-CT with a displaced detector array", Med. Phys. 29(7):1634–1636,
    2002.
    A. C. Kak and M. Slaney, Principles of Computerized Tomographic Imaging, IEEE Press, 1988,
    §3.4 (fan-beam redundancy).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..geometry import ConeBeam, FanBeam, ParallelBeam

__all__ = ["offset_detector_weights", "parker_weights"]

_FULL_TOL = 1e-3  # relative tolerance on the covered range for a full (half) turn


def fan_angles_rad(geometry: Any, dtype: Any) -> Float[Array, " u"]:
    """Fan angle of each detector column (rad) in the geometry's convention (0: central ray)."""
    u = geometry.u_mm(dtype)
    if isinstance(geometry, ParallelBeam):
        return jnp.zeros_like(u)
    sdd = jnp.asarray(geometry.sdd_mm, dtype)
    if isinstance(geometry, FanBeam) and geometry.curved:
        return u / sdd
    return jnp.arctan(u / sdd)


def max_fan_angle_rad(geometry: Any) -> float:
    """The largest ``|gamma|`` over the detector's outer pixel edges (rad), from concrete values."""
    if isinstance(geometry, ParallelBeam):
        return 0.0
    n = geometry.n_u
    du, off = float(geometry.du_mm), float(geometry.u_offset_mm)
    edge = max(abs(off - 0.5 * n * du), abs(off + 0.5 * n * du))
    sdd = float(geometry.sdd_mm)
    if isinstance(geometry, FanBeam) and geometry.curved:
        return edge / sdd
    return math.atan(edge / sdd)


def _parker_weight(beta: Array, gamma: Array, delta: Array) -> Array:
    """Parker's weight at scan angle ``beta``, fan angle ``gamma`` (Parker's sign convention) and
    half fan angle ``delta`` (all rad); 0 outside ``[0, pi + 2 delta]``. Needs
    ``|gamma| <= delta``; safe (finite, zero gradient) at ``gamma = ±delta``."""
    dtype = jnp.result_type(beta, gamma, delta)
    tiny = jnp.asarray(jnp.finfo(dtype).tiny, dtype) ** 0.5
    lo = delta - gamma
    hi = delta + gamma
    rise = jnp.sin(0.25 * math.pi * beta / jnp.maximum(lo, tiny)) ** 2
    fall = jnp.sin(0.25 * math.pi * (math.pi + 2 * delta - beta) / jnp.maximum(hi, tiny)) ** 2
    w = jnp.where(beta < 2 * lo, rise, jnp.where(beta > math.pi - 2 * gamma, fall, 1.0))
    inside = (beta >= 0) & (beta <= math.pi + 2 * delta)
    return jnp.where(inside, w, 0.0).astype(dtype)


def parker_weights(
    geometry: FanBeam | ConeBeam | ParallelBeam, *, dtype: Any = None
) -> Float[Array, "views u"]:
    """Parker's short-scan redundancy weights of every (view, detector column).

    Traceable (the geometry's leaves may be traced): the scan range is
    ``B = n_views · |angles[-1] - angles[0]| / (n_views - 1)`` and the half fan angle of the
    weights ``delta = (B - pi) / 2`` (see the module docstring); columns whose fan angle exceeds
    ``delta`` (a scan shorter than ``pi`` + the fan angle) are weighted as if at ``±delta``.
    Rows of a cone-beam detector share the weights of their column.

    Args:
        geometry: a `FanBeam` (flat or curved), circular `ConeBeam` or `ParallelBeam` whose
            ``n_views >= 2`` views are uniformly spaced.
        dtype: floating dtype of the result (default: JAX's default float).

    Returns:
        ``(views, u)`` weights in ``[0, 1]``; the measurements of each line add up to 1.

    Example:
        >>> g = FanBeam.create(n_views=210, arc_rad=math.radians(210), n_u=256, du_mm=1.5,
        ...                    sod_mm=595.0, sdd_mm=1085.6)
        >>> fbp(projections, g, like=vol)  # applies parker_weights(g) itself

    References:
        Parker, Med. Phys. 9:254, 1982; Wesarg et al., Med. Phys. 29:372, 2002.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    a = jnp.asarray(geometry.angles, dtype)
    n = a.shape[0]
    step = (a[n - 1] - a[0]) / max(n - 1, 1)
    d = jnp.abs(step)
    delta = jnp.maximum(0.5 * (n * d - math.pi), 0.0)
    beta = (jnp.arange(n, dtype=dtype) + 0.5) * d
    gamma = jnp.clip(-jnp.sign(step) * fan_angles_rad(geometry, dtype), -delta, delta)
    return _parker_weight(beta[:, None], gamma[None, :], delta)


def _lateral(geometry: Any, dtype: Any) -> Array:
    """The coordinate that mirrors between the two measurements of a line in a full turn: the
    fan angle (rad), or ``u`` (mm) for a parallel beam."""
    if isinstance(geometry, ParallelBeam):
        return geometry.u_mm(dtype)
    return fan_angles_rad(geometry, dtype)


def offset_detector_weights(
    geometry: FanBeam | ConeBeam | ParallelBeam, *, dtype: Any = None
) -> Float[Array, "views u"]:
    """Wang's redundancy weights of a full turn with an offset (displaced) detector.

    Traceable. ``Delta`` is the reach of the detector's short side (its column centre nearest
    to the central ray's mirror); the weights rise from 0 to 1 across ``[-Delta, Delta]`` towards
    the long side (see the module docstring), the same for every view and, on a cone-beam
    detector, every row.

    Args:
        geometry: a `FanBeam`, circular `ConeBeam` or `ParallelBeam` whose detector covers the
            central ray.
        dtype: floating dtype of the result (default: JAX's default float).

    Returns:
        ``(views, u)`` weights in ``[0, 1]`` with ``w(gamma) + w(-gamma) = 1``.

    Example:
        >>> g = FanBeam.create(n_views=720, n_u=300, du_mm=1.0, sod_mm=500.0, sdd_mm=800.0,
        ...                    u_offset_mm=-100.0)  # 50 columns past the centre on one side
        >>> fbp(projections, g, like=vol)  # applies offset_detector_weights(g) itself

    References:
        Wang, Med. Phys. 29:1634, 2002.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    x = _lateral(geometry, dtype)
    lo, hi = jnp.min(x), jnp.max(x)
    side = jnp.where(hi + lo >= 0, 1.0, -1.0).astype(dtype)
    delta = jnp.maximum(jnp.minimum(-lo, hi), jnp.finfo(dtype).tiny ** 0.5)
    y = side * x
    ramp = jnp.sin(0.25 * math.pi * (y + delta) / delta) ** 2
    w = jnp.where(y >= delta, 1.0, jnp.where(y <= -delta, 0.0, ramp)).astype(dtype)
    return jnp.broadcast_to(w[None, :], (geometry.n_views, w.shape[0]))


def _offset_detector(where: str, geometry: Any) -> bool:
    """Whether a concrete geometry's detector is displaced (see the module docstring); refuses
    one that does not cover the central ray."""
    x = np.asarray(_lateral(geometry, jnp.float32), dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    pitch = (hi - lo) / max(x.size - 1, 1)
    unmirrored = abs(hi + lo)
    if unmirrored <= max(2.0 * pitch, 0.05 * (hi - lo + pitch)):
        return False
    if lo >= 0.0 or hi <= 0.0:
        raise ValueError(
            f"{where}: the offset detector must cover the central ray (its columns span "
            f"[{lo:.4g}, {hi:.4g}] {'mm' if isinstance(geometry, ParallelBeam) else 'rad'}); "
            "reduce `u_offset_mm`"
        )
    return True


def angular_step(geometry: Any) -> Array:
    """The signed step between views (traceable)."""
    a = jnp.asarray(geometry.angles)
    n = a.shape[0]
    return (a[n - 1] - a[0]) / max(n - 1, 1)


def scan_needs_weights(where: str, geometry: Any, *, what: str, custom: bool) -> str | None:
    """Validate the view angles of a FBP/FDK scan and say which redundancy weights it needs:
    ``"parker"`` (a short scan), ``"offset"`` (a full turn with a displaced detector) or None.

    Args:
        where: the public call, for messages.
        geometry: the scan geometry.
        what: ``"FBP"`` or ``"FDK"``.
        custom: the caller supplies its own redundancy weights (any uniform range is accepted).

    Traced angles are not checked and count as a full scan.
    """
    if isinstance(geometry.angles, jax.core.Tracer):
        return None
    a = np.asarray(geometry.angles, dtype=np.float64)
    n = a.size
    if n < 2:
        raise ValueError(f"{where}: {what} needs at least 2 views (got {n})")
    steps = np.diff(a)
    step = float(np.mean(steps))
    if step == 0.0 or not np.allclose(steps, step, rtol=1e-3, atol=1e-9):
        _check_irregular(where, geometry, what=what, custom=custom)
        return "gaps"
    span = abs(step) * n
    if abs(span - 2 * math.pi) < _FULL_TOL * 2 * math.pi:
        return "offset" if not custom and _offset_detector(where, geometry) else None
    if isinstance(geometry, ParallelBeam) and abs(span - math.pi) < _FULL_TOL * math.pi:
        return None
    if span > 2 * math.pi:
        raise ValueError(
            f"{where}: the views must cover at most one turn, 2π (got {n} views × "
            f"{abs(step):.4g} rad = {span:.4g} rad)"
        )
    if custom:
        return "custom"
    if _offset_detector(where, geometry):
        raise ValueError(
            f"{where}: a short scan ({math.degrees(span):.1f}°) with an offset detector "
            f"(u_offset_mm={float(geometry.u_offset_mm):g}) leaves lines without their Parker "
            "conjugate; scan a full turn (offset-detector weights apply) or pass your own "
            "`redundancy` weights"
        )
    need = math.pi + 2 * max_fan_angle_rad(geometry)
    if span < need * (1 - 1e-9):
        raise ValueError(
            f"{where}: the views must cover a full turn (2π) or, for a short scan with Parker "
            f"weights, at least π + the fan angle = {need:.4g} rad ({math.degrees(need):.2f}°); "
            f"got {n} views × {abs(step):.4g} rad = {span:.4g} rad ({math.degrees(span):.2f}°). "
            "Widen the arc, narrow the detector, or pass your own `redundancy` weights"
        )
    return "parker"


def _gap_period(geometry: Any, angles: np.ndarray) -> float:
    """The turn irregular views are weighted over: 2π, or π for a parallel beam whose views
    span less than a half turn."""
    if isinstance(geometry, ParallelBeam) and abs(angles[-1] - angles[0]) < math.pi:
        return math.pi
    return 2 * math.pi


def _check_irregular(where: str, geometry: Any, *, what: str, custom: bool) -> None:
    """Refuse irregular view angles that angular-gap weights cannot reconstruct (see
    `gap_weights`): custom redundancy, views out of order or over more than a turn, a gap of
    half a turn or more (a short arc: give uniformly spaced views for Parker weights), an offset
    detector."""
    a = np.asarray(geometry.angles, dtype=np.float64)
    steps = np.diff(a)
    if custom:
        raise ValueError(
            f"{where}: custom `redundancy` weights need uniformly spaced view angles; irregular "
            "views over a turn are weighted by their angular gaps automatically"
        )
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise ValueError(
            f"{where}: {what} of irregularly spaced views needs strictly increasing or "
            "decreasing angles (sort the views by angle)"
        )
    period = _gap_period(geometry, a)
    gaps = _circular_gaps(a, period)
    if gaps is None:
        raise ValueError(
            f"{where}: the views must cover at most one turn, 2π (got angles from "
            f"{a[0]:.4g} to {a[-1]:.4g} rad)"
        )
    if gaps.max() >= math.pi:
        raise ValueError(
            f"{where}: irregularly spaced views are reconstructed over a full turn with "
            f"angular-gap weights and need every gap below half a turn (largest gap "
            f"{math.degrees(gaps.max()):.1f}°); a short scan needs uniformly spaced views "
            "(Parker weights)"
        )
    if _offset_detector(where, geometry):
        raise ValueError(
            f"{where}: irregularly spaced views with an offset detector "
            f"(u_offset_mm={float(geometry.u_offset_mm):g}) are not supported; scan uniformly "
            "spaced views"
        )


def _circular_gaps(angles: np.ndarray, period: float) -> np.ndarray | None:
    """The gaps between consecutive views around the turn, the closing one last, or None when
    the views span a turn or more."""
    d = np.abs(np.diff(angles))
    closing = period - abs(angles[-1] - angles[0])
    if closing <= 0:
        return None
    return np.append(d, closing)


def gap_weights(geometry: Any, *, dtype: Any = jnp.float32) -> Float[Array, "views u"]:
    """Angular-gap weights of irregularly spaced views over a turn, as the backprojector takes
    them (times its ``pi / n_views``): each view stands for half the gap to each neighbour
    (the rectangle rule on irregular angles, as gated or phase-binned reconstructions weight
    their views), ``w_k = n_views (g_(k-1) + g_k) / (2 T)`` with ``T`` the turn (2π; π for a
    parallel beam within a half turn) and the gaps taken around it. They sum to ``n_views`` and
    are 1 for uniformly spaced views over the turn. Rows and columns share their view's weight.

    Args:
        geometry: a concrete geometry whose view angles are strictly monotonic within a turn.
        dtype: floating dtype of the weights.
    """
    a = np.asarray(geometry.angles, dtype=np.float64)
    period = _gap_period(geometry, a)
    gaps = _circular_gaps(a, period)
    if gaps is None:
        raise ValueError("medphys.simulators.ct.gap_weights: the views span a turn or more")
    w = a.size * (gaps + np.roll(gaps, 1)) / (2 * period)
    return jnp.broadcast_to(jnp.asarray(w, dtype)[:, None], (a.size, geometry.n_u))


def check_redundancy(where: str, redundancy: Any, geometry: Any) -> Array:
    """Validate user redundancy weights: ``(views, u)``, finite."""
    w = jnp.asarray(redundancy)
    expected = (geometry.n_views, geometry.n_u)
    if w.ndim != 2 or tuple(w.shape) != expected:
        raise ValueError(
            f"{where}: `redundancy` must have shape (views, u) = {expected} (got {tuple(w.shape)})"
        )
    if not jnp.issubdtype(w.dtype, jnp.floating):
        w = w.astype(jnp.result_type(float))
    if not isinstance(w, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(w))):
        raise ValueError(f"{where}: `redundancy` must be finite")
    return w


def weigh(proj: Array, weights: Array, geometry: Any) -> Array:
    """``proj (views, u, v) · weights (views, u) · n_views |dtheta| / pi``: with this factor the
    backprojector's full-scan normalisation ``pi / n_views`` becomes ``|dtheta|``."""
    dtype = proj.dtype
    n = proj.shape[0]
    scale = n * jnp.abs(angular_step(geometry)).astype(dtype) / math.pi
    return proj * (weights.astype(dtype) * scale)[:, :, None]
