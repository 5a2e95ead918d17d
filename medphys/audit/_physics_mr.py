"""Physics-consistency audit of refined MR images: does each refined magnitude image still explain
its scan's acquired k-space, keep each tissue's relaxation-weighted intensity and the anatomy?

For simulated MR scans (`medphys.simulators.mr.MRResult`: k-space, coil maps, mask, noise level,
magnitude image), their label maps and the refined images, each criterion is measured over all
cases and passes or fails against a stated threshold:

- **k-space residual** — per case, the refined image's `mr.kspace_residual` (lifted through the
  scan's coils and object phase, ``‖M (k − y)‖ / ‖M y‖``) over the simulated image's own, the
  latter floored at the scan's noise floor (`mr.noise_residual`) and at 1e-6 (the lift's
  float32 round-off: a noise-free, fully sampled scan pins the image, and any change fails).
  Pass: the largest ratio ≤ 1.10.
- **per-label intensity shift** — the relative change of the mean intensity inside each label's
  interior (labels eroded by one pixel in-plane): the relaxation-weighted signal of each tissue.
  Judged on *signal-bearing* labels, those whose simulated interior mean is at least a tenth of
  the brightest label's (air, bone and lung are reported but not judged). Pass: every |shift| ≤
  5 %.
- **label Dice retention** — the CT audit's rule on intensities: each image smoothed
  (σ = 1 pixel), each body pixel given the signal-bearing label whose simulated interior mean is
  nearest; mean Dice against the label map, refined over simulated. Pass: ≥ 0.95.
- **NPS distance to real** (when real patches are given) — the RMS difference of log₁₀ NPS
  (12 bins, 3-pixel detrending) between the refined images and the real ones, against the
  simulated images'; every case divided by its simulated image's reference intensity
  (`medphys.metrics.mr_reference`, the real patches likewise: `medphys.neural.real_mr_slices`),
  measured inside `medphys.metrics.mr_tissue_mask`. Pass: no farther than before refinement.

References:
    the MR measurement model of `medphys.simulators.mr` (multi-coil Cartesian k-space);
    J. Schlemper et al., IEEE TMI 37(2), 491-503 (2018) (hard data consistency).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..metrics import mr_reference, mr_tissue_mask
from ..simulators import mr
from ._criterion import Criterion
from ._physics import Judged, dice_retention, interiors, log_nps

_WHERE = "medphys.audit.mr_physics_audit"
SIGNAL_FRACTION = 0.1
RESIDUAL_FLOOR = 1e-6


@dataclasses.dataclass(frozen=True)
class MRPhysicsReport(Judged):
    """The physics-consistency audit of a set of refined MR images (`mr_physics_audit`)."""

    label_shifts: dict[int, float]
    signal_labels: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "cases": self.cases,
            "signal_labels": list(self.signal_labels),
            "label_shifts": {str(k): v for k, v in self.label_shifts.items()},
            "criteria": [c.to_dict() for c in self.criteria],
        }


def mr_physics_audit(
    scans: Sequence[Any],
    labels: Any,
    refined: Any,
    *,
    real: Any = None,
    max_residual_ratio: float = 1.10,
    max_shift: float = 0.05,
    min_dice_retention: float = 0.95,
) -> MRPhysicsReport:
    """Audit refined MR magnitude images against the physics of their scans (module docstring).

    Args:
        scans: one `medphys.simulators.mr.MRResult` per case (its ``image`` is the simulated
            image the refiner saw).
        labels: ``(cases, x, y, z)`` integer label maps of the cases (0 = outside the body).
        refined: ``(cases, x, y, z)`` refined magnitude images on the scans' scale.
        real: optional ``(n, a, b)`` real 2-D patches over their volumes' reference intensity
            (`medphys.neural.real_patches` of `medphys.neural.real_mr_slices`) for the NPS
            criterion.
        max_residual_ratio, max_shift, min_dice_retention: thresholds.

    Returns:
        `MRPhysicsReport` (``.passed``, ``.describe()``, ``.to_dict()``).

    Raises:
        TypeError: a scan that is not an `MRResult`.
        ValueError: labels or refined images of another shape, non-finite or negative refined
            values, no signal-bearing label; real patches that are not 2-D or hold no tissue
            on the normalised scale.
    """
    scans = list(scans)
    for i, s in enumerate(scans):
        if not isinstance(s, mr.MRResult):
            raise TypeError(
                f"{_WHERE}: `scans[{i}]` must be a medphys.simulators.mr.MRResult "
                f"(got {type(s).__name__})"
            )
    if not scans:
        raise ValueError(f"{_WHERE}: `scans` is empty")
    sim = np.stack([np.asarray(s.image.data, np.float64) for s in scans])
    lab = np.asarray(labels)
    ref = np.asarray(refined, np.float64)
    for name, arr in (("labels", lab), ("refined", ref)):
        if arr.shape != sim.shape:
            raise ValueError(
                f"{_WHERE}: `{name}` must have shape (cases, x, y, z) = {sim.shape} "
                f"(got {arr.shape})"
            )
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{_WHERE}: `labels` must be integers (got {lab.dtype})")
    bad = int(np.sum(~np.isfinite(ref) | (ref < 0)))
    if bad:
        raise ValueError(
            f"{_WHERE}: `refined` must be finite, non-negative magnitudes ({bad} values are not)"
        )
    values = [int(v) for v in np.unique(lab) if v != 0]
    inner = interiors(lab, values)
    means = {v: float(sim[inner[v]].mean()) for v in values if inner[v].any()}
    brightest = max(means.values(), default=0.0)
    signal = tuple(v for v, m in means.items() if m >= SIGNAL_FRACTION * brightest and m > 0)
    if not signal:
        raise ValueError(f"{_WHERE}: no label carries signal; nothing to judge intensities on")

    ratios = []
    for i, scan in enumerate(scans):
        own = float(mr.kspace_residual(jnp.asarray(sim[i], jnp.float32), scan))
        floor = max(own, float(mr.noise_residual(scan)), RESIDUAL_FLOOR)
        ratios.append(float(mr.kspace_residual(jnp.asarray(ref[i], jnp.float32), scan)) / floor)
    worst = max(ratios)
    criteria = [
        Criterion(
            "kspace_residual",
            worst,
            f"max ratio <= {max_residual_ratio:g}",
            worst <= max_residual_ratio,
            f"residual ratio per case: {', '.join(f'{r:.3f}' for r in ratios)}",
        )
    ]

    shifts = {v: float(ref[inner[v]].mean() / means[v] - 1.0) for v in means if means[v] > 0}
    worst_shift = max(abs(shifts[v]) for v in signal)
    criteria.append(
        Criterion(
            "label_intensity_shift",
            worst_shift,
            f"max |shift| <= {max_shift:.0%}",
            worst_shift <= max_shift,
            "signal-bearing labels " + ", ".join(f"{v}: {shifts[v]:+.2%}" for v in signal),
        )
    )

    criteria.append(
        dice_retention(sim, ref, lab, {v: means[v] for v in signal}, min_dice_retention)
    )
    if real is not None:
        criteria.append(_nps_criterion(scans, sim, ref, real))
    return MRPhysicsReport(
        criteria=tuple(criteria), cases=len(scans), label_shifts=shifts, signal_labels=signal
    )


def _nps_criterion(scans: list, sim: np.ndarray, ref: np.ndarray, real: Any) -> Criterion:
    r = np.asarray(real, np.float64)
    if r.ndim != 3:
        raise ValueError(
            f"{_WHERE}: `real` must be (n, a, b) 2-D patches over their reference intensity "
            f"(got shape {r.shape})"
        )
    real_mask = mr_tissue_mask(r)
    if not real_mask.any():
        raise ValueError(
            f"{_WHERE}: no real patch has tissue at 0.2-1.5 of the reference intensity; "
            "normalise real MR images with medphys.neural.real_mr_slices"
        )
    scale = np.asarray([mr_reference(a) for a in sim])[:, None, None, None]
    spacing = tuple(float(v) for v in scans[0].image.spacing_mm[:2])
    slices_sim = np.moveaxis(sim / scale, -1, 1).reshape(-1, *sim.shape[1:3])
    slices_ref = np.moveaxis(ref / scale, -1, 1).reshape(-1, *sim.shape[1:3])
    mask = mr_tissue_mask(slices_sim)
    target = log_nps(r, real_mask, spacing)
    before = log_nps(slices_sim, mask, spacing)
    after = log_nps(slices_ref, mask, spacing)
    ok = np.isfinite(target) & np.isfinite(before) & np.isfinite(after)
    d_before = float(np.sqrt(np.mean((before[ok] - target[ok]) ** 2)))
    d_after = float(np.sqrt(np.mean((after[ok] - target[ok]) ** 2)))
    return Criterion(
        "nps_distance_to_real",
        d_after,
        "<= before refinement",
        d_after <= d_before,
        f"RMS log10 NPS difference before {d_before:.3f}, after {d_after:.3f}",
    )
