"""Cine MR: one frame per cardiac phase of a beating phantom (bSSFP cine by default).

Each frame is the phantom at one cardiac phase (`medphys.phantoms.Phantom.at`), voxelized on a
fixed grid and simulated with the protocol (tier 1: the steady-state signal of that instant).
A `CineProtocol` (catalog ``mr-cine-bssfp``) adds the cardiac timing: frames per cycle, views per
segment (the temporal resolution) and the cardiac period (or the phantom motion model's).
This is the ideal retrospectively gated cine: every k-space line of a frame comes from the same
cardiac phase (no view sharing, no temporal blurring, no breathing unless a respiratory phase is
given), with noise drawn independently per frame.

References:
    Carr JC, Simonetti O, Bundy J, Li D, Pereles S, Finn JP. Cine MR angiography of the heart with
    segmented true fast imaging with steady-state precession. Radiology 219:828-834 (2001).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from . import _checks as chk
from ._simulate import MRProtocol, MRResult, simulate

__all__ = ["CineProtocol", "CineResult", "cine"]


@dataclasses.dataclass(frozen=True)
class CineProtocol:
    """A cine acquisition: the per-frame MR protocol plus the cardiac timing.

    Segmented cine: in every heartbeat, each frame acquires ``views_per_segment`` ky lines, one
    per TR, so its acquisition window (temporal resolution) is ``views_per_segment · TR`` and a
    full image takes ``ceil(n_ky / views_per_segment)`` heartbeats. The frames tile the cycle at
    phases ``k / n_phases``; their windows must fit in one heartbeat. The simulation shows the
    heart of each frame frozen at its phase (the centre of its window): no temporal blurring.

    Attributes:
        protocol: the acquisition of each frame (a bSSFP `MRProtocol` for ``mr-cine-bssfp``).
        n_phases: number of frames per cardiac cycle.
        views_per_segment: ky lines per frame and heartbeat; ``None``: not modelled (no check).
        cardiac_period_s: the heartbeat period (s); ``None``: the phantom motion model's.
        description: free text (from the catalog file).
    """

    protocol: MRProtocol
    n_phases: int
    views_per_segment: int | None = None
    cardiac_period_s: float | None = None
    description: str = ""

    @classmethod
    def create(
        cls,
        protocol: MRProtocol,
        *,
        n_phases: int,
        views_per_segment: int | None = None,
        cardiac_period_s: float | None = None,
        description: str = "",
    ) -> CineProtocol:
        """Validated constructor.

        Raises:
            TypeError: ``protocol`` is not an `MRProtocol`.
            ValueError: ``n_phases < 1``, ``views_per_segment < 1``, a non-positive period,
                ``views_per_segment`` with a sequence without a TR, or frames whose windows
                (``n_phases · views_per_segment · TR``) exceed the cardiac period.

        Example:
            >>> from medphys.simulators import mr
            >>> p = mr.MRProtocol.create(mr.BSSFP.create(tr_s=0.004, flip_deg=60.0), field_t=1.5)
            >>> mr.CineProtocol.create(p, n_phases=20, views_per_segment=10).temporal_resolution_s
            0.04
        """
        where = f"{chk.PREFIX}CineProtocol.create"
        if not isinstance(protocol, MRProtocol):
            raise TypeError(
                f"{where}: `protocol` must be an MRProtocol (got {type(protocol).__name__})"
            )
        n = chk.integer(where, "n_phases", n_phases, minimum=1)
        vps = None
        if views_per_segment is not None:
            vps = chk.integer(where, "views_per_segment", views_per_segment, minimum=1)
            if _tr_s(protocol) is None:
                raise chk.FieldError(
                    where,
                    "views_per_segment",
                    f"`views_per_segment` needs a sequence with a repetition time `tr_s` "
                    f"(got {type(protocol.sequence).__name__})",
                )
        period = None
        if cardiac_period_s is not None:
            period = chk.positive(where, "cardiac_period_s", cardiac_period_s, " (seconds)")
        out = cls(protocol, n, vps, period, str(description))
        if period is not None:
            out.check_fits(where, period)
        return out

    @property
    def temporal_resolution_s(self) -> float | None:
        """Acquisition window of one frame, ``views_per_segment · TR`` (s); ``None`` if not
        modelled."""
        tr = _tr_s(self.protocol)
        if self.views_per_segment is None or tr is None:
            return None
        return round(self.views_per_segment * tr, 12)

    def heartbeats(self, n_ky: int) -> int | None:
        """Heartbeats (breath-hold length in beats) to acquire ``n_ky`` lines per frame."""
        if self.views_per_segment is None:
            return None
        return -(-int(n_ky) // self.views_per_segment)

    def check_fits(self, where: str, period_s: float) -> None:
        """Raise if the frames' windows do not fit in one heartbeat of ``period_s``."""
        window = self.temporal_resolution_s
        if window is not None and self.n_phases * window > period_s * (1 + 1e-9):
            raise chk.FieldError(
                where,
                "n_phases",
                f"{self.n_phases} frames of {window * 1e3:g} ms (views_per_segment = "
                f"{self.views_per_segment} x TR) need {self.n_phases * window:g} s, more than "
                f"the cardiac period {period_s:g} s: lower `n_phases` or `views_per_segment`",
            )


def _tr_s(protocol: MRProtocol) -> float | None:
    tr = getattr(protocol.sequence, "tr_s", None)
    return None if tr is None else float(tr)


@dataclasses.dataclass(frozen=True)
class CineResult:
    """Frames of a cine acquisition.

    Attributes:
        frames: one `MRResult` per cardiac phase.
        cardiac_phases: the phase of each frame, in [0, 1) (0 = end-diastole).
        temporal_resolution_s: acquisition window of a frame (s), when the protocol models it.
    """

    frames: tuple[MRResult, ...]
    cardiac_phases: tuple[float, ...]
    temporal_resolution_s: float | None = None

    @property
    def images(self) -> Float[Array, "phases x y z"]:
        """The magnitude images stacked along a leading phase axis."""
        return jnp.stack([f.image.data for f in self.frames])


def cine(
    phantom: Any,
    protocol: MRProtocol | CineProtocol,
    key: Array,
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
        phantom: a reference `medphys.phantoms.Phantom` (with ventricles, e.g. ``torso-basic``).
        protocol: a `CineProtocol` (``medphys.simulators.load("mr-cine-bssfp")``) or the
            `MRProtocol` of each frame, typically a `BSSFP` protocol (``mr-bssfp``).
        key: ``jax.random`` key; frame ``k`` uses ``jax.random.fold_in(key, k)``.
        shape, spacing_mm, center_mm, supersample: the grid (see `medphys.phantoms.voxelize`).
        n_phases: number of frames (>= 1); default the `CineProtocol`'s (required with an
            `MRProtocol`).
        respiratory_phase: hold breathing at this phase (default end-expiration).
        motion: a `medphys.phantoms.MotionModel`; default the model with the `CineProtocol`'s
            cardiac period when it gives one, else the default parameters.

    Returns:
        `CineResult`.

    Raises:
        TypeError: ``protocol`` is neither an `MRProtocol` nor a `CineProtocol`.
        ValueError: ``n_phases < 1`` or missing, frames that do not fit in the heartbeat; bad
            grid or motion arguments (from the phantom code).
    """
    where = f"{chk.PREFIX}cine"
    cine_protocol = None
    if isinstance(protocol, CineProtocol):
        cine_protocol, protocol = protocol, protocol.protocol
    if not isinstance(protocol, MRProtocol):
        raise TypeError(
            f"{where}: `protocol` must be an MRProtocol or a CineProtocol "
            f"(got {type(protocol).__name__})"
        )
    if n_phases is None:
        if cine_protocol is None:
            raise TypeError(f"{where}: `n_phases` is required with an MRProtocol")
        n_phases = cine_protocol.n_phases
    n = chk.integer(where, "n_phases", n_phases, minimum=1)
    if not hasattr(phantom, "at"):
        raise TypeError(
            f"{where}: `phantom` must be a medphys.phantoms.Phantom (got {type(phantom).__name__})"
        )
    resolution = None
    if cine_protocol is not None:
        from ...phantoms import MotionModel  # late import: phantoms do not need simulators

        if motion is None and cine_protocol.cardiac_period_s is not None:
            motion = MotionModel.create(cardiac_period_s=cine_protocol.cardiac_period_s)
        period = float((MotionModel() if motion is None else motion).cardiac_period_s)
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
        frames.append(simulate(labels, protocol, jax.random.fold_in(key, k)))
    return CineResult(frames=tuple(frames), cardiac_phases=phases, temporal_resolution_s=resolution)
