"""Cine MR: one frame per cardiac phase of a beating phantom (bSSFP cine by default).

A multi-step job, so it lives here and not in the simulators: each frame is the phantom at one
cardiac phase (`medphys.phantoms.Phantom.at`), voxelized on a fixed grid and simulated with the
MR protocol (tier 1: the steady-state signal of that instant). A `medphys.simulators.mr.
CineProtocol` (catalog ``mr-cine-bssfp``) adds the cardiac timing: frames per cycle, views per
segment (the temporal resolution) and the cardiac period (or the phantom motion model's).
This is the ideal retrospectively gated cine: every k-space line of a frame comes from the same
cardiac phase (no view sharing, no temporal blurring, no breathing unless a respiratory phase is
given); frame ``k`` draws its noise from the named stream ``"frame/<k>"``.

References:
    Carr JC, Simonetti O, Bundy J, Li D, Pereles S, Finn JP. Cine MR angiography of the heart with
    segmented true fast imaging with steady-state precession. Radiology 219:828-834 (2001).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import phantoms
from .._types import PRNGKey
from ..simulators import mr
from ._streams import stream

__all__ = ["CineResult", "cine"]


@dataclasses.dataclass(frozen=True)
class CineResult:
    """Frames of a cine acquisition.

    Attributes:
        frames: one `medphys.simulators.mr.MRResult` per cardiac phase.
        cardiac_phases: the phase of each frame, in [0, 1) (0 = end-diastole).
        temporal_resolution_s: acquisition window of a frame (s), when the protocol models it.
    """

    frames: tuple[mr.MRResult, ...]
    cardiac_phases: tuple[float, ...]
    temporal_resolution_s: float | None = None

    @property
    def images(self) -> Float[Array, "phases x y z"]:
        """The magnitude images stacked along a leading phase axis."""
        return jnp.stack([f.image.data for f in self.frames])


def cine(
    key: PRNGKey,
    phantom: phantoms.Phantom,
    protocol: mr.MRProtocol | mr.CineProtocol,
    *,
    shape: Sequence[int],
    spacing_mm: float | Sequence[float],
    n_phases: int | None = None,
    center_mm: Sequence[float] = (0.0, 0.0, 0.0),
    supersample: int = 2,
    respiratory_phase: float | None = None,
    motion: Any = None,
) -> CineResult:
    """Simulate a cine series: ``n_phases`` frames at cardiac phases ``k / n_phases``.

    Args:
        key: ``jax.random`` key; frame ``k`` uses the stream ``"frame/<k>"`` under it.
        phantom: a reference `medphys.phantoms.Phantom` (with ventricles, e.g. ``torso-basic``).
        protocol: a `CineProtocol` (``medphys.simulators.load("mr-cine-bssfp")``) or the
            `MRProtocol` of each frame, typically a `BSSFP` protocol (``mr-bssfp``).
        shape, spacing_mm, center_mm, supersample: the grid (see `medphys.phantoms.voxelize`).
        n_phases: number of frames (>= 1); default the `CineProtocol`'s (required with an
            `MRProtocol`).
        respiratory_phase: hold breathing at this phase (default end-expiration).
        motion: a `medphys.phantoms.MotionModel`; default the model with the `CineProtocol`'s
            cardiac period when it gives one, else the default parameters.

    Returns:
        `CineResult`.

    Raises:
        TypeError: ``protocol`` is neither an `MRProtocol` nor a `CineProtocol`, or ``phantom``
            is not a `Phantom`.
        ValueError: ``n_phases < 1`` or missing, frames that do not fit in the heartbeat; bad
            grid or motion arguments (from the phantom code).

    Example:
        >>> result = cine(key, phantoms.load("torso-basic"), simulators.load("mr-cine-bssfp"),
        ...               shape=(64, 64, 8), spacing_mm=3.0)  # doctest: +SKIP
    """
    where = "medphys.pipelines.cine"
    cine_protocol = None
    if isinstance(protocol, mr.CineProtocol):
        cine_protocol, protocol = protocol, protocol.protocol
    if not isinstance(protocol, mr.MRProtocol):
        raise TypeError(
            f"{where}: `protocol` must be an MRProtocol or a CineProtocol "
            f"(got {type(protocol).__name__})"
        )
    if n_phases is None:
        if cine_protocol is None:
            raise TypeError(f"{where}: `n_phases` is required with an MRProtocol")
        n_phases = cine_protocol.n_phases
    if isinstance(n_phases, bool) or not isinstance(n_phases, int) or n_phases < 1:
        raise ValueError(f"{where}: `n_phases` must be >= 1 (got {n_phases!r})")
    if not isinstance(phantom, phantoms.Phantom):
        raise TypeError(
            f"{where}: `phantom` must be a medphys.phantoms.Phantom (got {type(phantom).__name__})"
        )
    n = n_phases
    resolution = None
    if cine_protocol is not None:
        if motion is None and cine_protocol.cardiac_period_s is not None:
            motion = phantoms.MotionModel.create(cardiac_period_s=cine_protocol.cardiac_period_s)
        period = float((phantoms.MotionModel() if motion is None else motion).cardiac_period_s)
        dataclasses.replace(cine_protocol, n_phases=n).check_fits(where, period)
        resolution = cine_protocol.temporal_resolution_s
    phases = tuple(k / n for k in range(n))
    kwargs: dict[str, Any] = {} if motion is None else {"model": motion}
    if respiratory_phase is not None:
        kwargs["respiratory_phase"] = respiratory_phase
    frames = []
    for k, phase in enumerate(phases):
        instant = phantom.at(cardiac_phase=phase, **kwargs)
        labels = instant.voxelize(
            shape=shape, spacing_mm=spacing_mm, center_mm=center_mm, supersample=supersample
        )
        frames.append(mr.simulate(stream(key, f"frame/{k}"), labels, protocol))
    return CineResult(frames=tuple(frames), cardiac_phases=phases, temporal_resolution_s=resolution)
