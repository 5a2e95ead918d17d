"""Cine MR: one frame per cardiac phase of a beating phantom (bSSFP cine by default).

Each frame is the phantom at one cardiac phase (`medphys.phantoms.Phantom.at`), voxelized on a
fixed grid and simulated with the protocol (tier 1: the steady-state signal of that instant).
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

__all__ = ["CineResult", "cine"]


@dataclasses.dataclass(frozen=True)
class CineResult:
    """Frames of a cine acquisition.

    Attributes:
        frames: one `MRResult` per cardiac phase.
        cardiac_phases: the phase of each frame, in [0, 1) (0 = end-diastole).
    """

    frames: tuple[MRResult, ...]
    cardiac_phases: tuple[float, ...]

    @property
    def images(self) -> Float[Array, "phases x y z"]:
        """The magnitude images stacked along a leading phase axis."""
        return jnp.stack([f.image.data for f in self.frames])


def cine(
    phantom: Any,
    protocol: MRProtocol,
    key: Array,
    *,
    n_phases: int,
    shape: Sequence[int],
    spacing_mm: float | Sequence[float],
    center_mm: Sequence[float] = (0.0, 0.0, 0.0),
    supersample: int = 2,
    respiratory_phase: float | None = None,
    motion: Any = None,
) -> CineResult:
    """Simulate a cine series: ``n_phases`` frames at cardiac phases ``k / n_phases``.

    Args:
        phantom: a reference `medphys.phantoms.Phantom` (with ventricles, e.g. ``torso-basic``).
        protocol: the acquisition, typically a `BSSFP` protocol (``mr-bssfp``).
        key: ``jax.random`` key; frame ``k`` uses ``jax.random.fold_in(key, k)``.
        n_phases: number of frames (>= 1).
        shape, spacing_mm, center_mm, supersample: the grid (see `medphys.phantoms.voxelize`).
        respiratory_phase: hold breathing at this phase (default end-expiration).
        motion: a `medphys.phantoms.MotionModel` (default parameters when ``None``).

    Returns:
        `CineResult`.

    Raises:
        TypeError: ``protocol`` is not an `MRProtocol`.
        ValueError: ``n_phases < 1``; bad grid or motion arguments (from the phantom code).
    """
    where = f"{chk.PREFIX}cine"
    if not isinstance(protocol, MRProtocol):
        raise TypeError(
            f"{where}: `protocol` must be an MRProtocol (got {type(protocol).__name__})"
        )
    n = chk.integer(where, "n_phases", n_phases, minimum=1)
    if not hasattr(phantom, "at"):
        raise TypeError(
            f"{where}: `phantom` must be a medphys.phantoms.Phantom (got {type(phantom).__name__})"
        )
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
    return CineResult(frames=tuple(frames), cardiac_phases=phases)
