"""Cine MR protocols: the per-frame MR protocol plus the cardiac timing (bSSFP cine by default).

A `CineProtocol` (catalog ``mr-cine-bssfp``) adds to an `MRProtocol` the frames per cycle, the
views per segment (the temporal resolution) and the cardiac period (or the phantom motion
model's). Running one over a beating phantom is a multi-step job (phantom at each phase →
voxelize → simulate) and lives in `medphys.pipelines.cine`.

References:
    Carr JC, Simonetti O, Bundy J, Li D, Pereles S, Finn JP. Cine MR angiography of the heart with
    segmented true fast imaging with steady-state precession. Radiology 219:828-834 (2001).
"""

from __future__ import annotations

import dataclasses

from . import _checks as chk
from ._protocol import MRProtocol

__all__ = ["CineProtocol"]


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
