"""Mammography trials: a compressed-breast population, and DM and DBT arms imaged around a lesion.

A `BreastFamily` is the virtual population of a mammography trial. Case ``i`` is a breast of
density class ``densities[i % n]`` (`medphys.phantoms.sample_breast_params` with the class's
nominal size: ``size_scale = 1``), its skin and internal anatomy drawn from the case's
``"phantom"`` stream. Each class's outer shape is compressed once, craniocaudally, between
paddles to the class's VICTRE thickness by the elasticity network
(`medphys.neural.compress_breast`); the deformation is sampled on a grid
(`medphys.phantoms.SampledWarp`) and shared by every breast of the class. `prepare_breast_family`
does this before any case (the driver's work: the family is plain arrays, shipped to workers).

DM and DBT arms image only what their region of interest needs (`medphys.pipelines._window`):
the lesion is placed on a coarse survey voxelisation of the compressed breast, each arm lays out
its detector window and its output image around it, and the case is voxelised once on the box
their rays cross between the paddles. The protocols' geometries are moved down so that the
detector surface is the lower paddle, ``z = -thickness / 2`` (the breast lies on the detector;
the chest wall is the detector's edge ``y = 0``, as in `medphys.simulators.xray.
mammography_geometry`).

Differences from VICTRE (Badano et al. 2018), stated: one compression per density class at its
nominal size, with one homogeneous neo-Hookean tissue (fat, 5 kPa); by default the lesion is
placed in the uncompressed anatomy and compressed with it, and ``LesionSpec(follow_warp=False)``
(a trial's ``[lesion] follow_warp = false``) inserts it into the compressed breast with its own
shape, as VICTRE does; ray-traced primary photons with Poisson noise instead of Monte Carlo transport (no
scatter).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from .._types import PRNGKey


@dataclasses.dataclass(frozen=True)
class BreastFamily:
    """A compressed-breast population (build with `prepare_breast_family`).

    Attributes:
        densities: the BI-RADS density classes cases take in turn.
        warps: one `medphys.phantoms.SampledWarp` per density class (the class's compression).
        thickness_mm: the compressed thickness per class.
        lower_mm, upper_mm: per class, a box holding the compressed breast.
        survey_mm: the voxel size of the survey voxelisation the lesion is placed on.
        summaries: per class, the compression's training summary and the sampled warp's
            interpolation error (provenance).
        structure_names: the breasts' structures (`medphys.phantoms.make_breast`'s).
    """

    densities: tuple[str, ...]
    warps: tuple[Any, ...]
    thickness_mm: tuple[float, ...]
    lower_mm: tuple[tuple[float, float, float], ...]
    upper_mm: tuple[tuple[float, float, float], ...]
    survey_mm: float = 1.0
    summaries: tuple[str, ...] = ()
    structure_names: tuple[str, ...] = ()

    name = "breast"

    def slot(self, index: int) -> int:
        """The density class slot of case ``index``."""
        return index % len(self.densities)

    def individual(self, key: PRNGKey, index: int) -> tuple[Any, Any]:
        """Case ``index``'s ``(BreastParams, compressed Phantom)`` from its phantom stream."""
        from .. import phantoms

        k = self.slot(index)
        params = phantoms.sample_breast_params(key, density=self.densities[k], size_scale=1.0)
        phantom = dataclasses.replace(phantoms.make_breast(params), warp=self.warps[k])
        return params, phantom

    def region(self, index: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Case ``index``'s world box: its class's box, between the paddles along z."""
        k = self.slot(index)
        half = self.thickness_mm[k] / 2.0
        lo, hi = self.lower_mm[k], self.upper_mm[k]
        return (lo[0], lo[1], -half), (hi[0], hi[1], half)

    def survey(self, index: int) -> dict[str, Any]:
        """``voxelize`` arguments of case ``index``'s survey grid (its class's box)."""
        k = self.slot(index)
        lo, hi = np.asarray(self.lower_mm[k]), np.asarray(self.upper_mm[k])
        h = self.survey_mm
        shape = tuple(math.ceil((b - a) / h) for a, b in zip(lo, hi, strict=True))
        return {"shape": shape, "spacing_mm": h, "center_mm": tuple((lo + hi) / 2)}


def prepare_breast_family(
    key: PRNGKey,
    densities: tuple[str, ...],
    *,
    spacing_mm: float = 4.0,
    steps: int = 2000,
    width: int = 32,
    depth: int = 3,
    tolerance: float = 1e-3,
    warp_mm: float = 1.0,
    survey_mm: float = 1.0,
    checkpoints: str | Path | None = None,
    progress: bool = True,
) -> BreastFamily:
    """Compress each density class's nominal breast once and sample its deformation.

    Args:
        key: the compressions' key (class ``d`` trains from ``stream(key, "compression/d")``).
        densities: BI-RADS classes, each ``"a"`` to ``"d"``.
        spacing_mm, steps, width, depth, tolerance: the elasticity network's quadrature and
            training (`medphys.neural.ElasticConfig`).
        warp_mm: the node spacing of each class's `SampledWarp`.
        survey_mm: the survey voxel size for lesion placement.
        checkpoints: a folder for the compressions' checkpoints (``compression-<class>.npz``):
            a rerun resumes or reuses them.
        progress: show the trainings' progress bars.

    Raises:
        ValueError: an unknown class, a training that did not converge, a deformation that folds.
    """
    from .. import neural, phantoms
    from ._streams import stream

    warps, thickness, lower, upper, summaries = [], [], [], [], []
    unique = tuple(dict.fromkeys(densities))
    by_class = {}
    for d in unique:
        params = phantoms.sample_breast_params(key, density=d, size_scale=1.0)
        checkpoint = None
        if checkpoints is not None:
            Path(checkpoints).mkdir(parents=True, exist_ok=True)
            checkpoint = Path(checkpoints) / f"compression-{d}.npz"
        config = neural.ElasticConfig(width=width, depth=depth, steps=steps, tolerance=tolerance)
        c = neural.compress_breast(
            stream(key, f"compression/{d}"),
            params,
            spacing_mm=spacing_mm,
            config=config,
            checkpoint=checkpoint,
            progress=progress,
        )
        # sampled without the chest-wall support (the network's displacement continues smoothly
        # behind it), which the sampled warp then applies exactly
        warp = phantoms.SampledWarp.create(
            dataclasses.replace(c.warp, support=None),
            c.lower_mm,
            c.upper_mm,
            warp_mm,
            support=c.warp.support,
        )
        summary = (
            f"class {d}: {c.solution.summary}; sampled every {warp_mm:g} mm, largest "
            f"interpolation error {warp.error_mm:.3f} mm"
        )
        by_class[d] = (warp, c.thickness_mm, c.lower_mm, c.upper_mm, summary)
    for d in densities:
        w, t, lo, hi, s = by_class[d]
        warps.append(w)
        thickness.append(float(t))
        lower.append(tuple(float(v) for v in lo))
        upper.append(tuple(float(v) for v in hi))
        summaries.append(s)
    return BreastFamily(
        tuple(densities),
        tuple(warps),
        tuple(thickness),
        tuple(lower),
        tuple(upper),
        float(survey_mm),
        tuple(summaries),
        phantoms.make_breast(params).structure_names,
    )


__all__ = ["BreastFamily", "prepare_breast_family"]
