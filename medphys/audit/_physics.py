"""Physics-consistency audit of refined CT images: does each refined image still explain the
measurements, intensities and anatomy of the simulation that produced its input?

For simulated cases (`medphys.neural.SimulatedCT`: HU images, labels, linearised line integrals,
projector) and their refined images, each criterion is measured over all cases and passes or
fails against a stated threshold:

- **measurement residual** — ``sqrt(r(refined) / r(simulated))`` per case, with ``r`` the mean
  square of ``A μ(HU) − p`` (`medphys.neural.measurement_residual`): the refined image's RMS
  misfit to the scan's own line integrals relative to the simulator's image. Pass: the largest
  ratio ≤ 1.10.
- **per-label HU shift** — the mean HU change inside each label's interior (labels eroded by one
  pixel in-plane). Soft-tissue labels are those whose simulated interior mean lies within
  −150 … 250 HU (fat to blood with contrast; air, lung and bone are reported but not judged).
  Pass: every soft-tissue label's |shift| ≤ 10 HU.
- **label Dice retention** — each image is segmented by the same rule: Gaussian-smoothed
  (σ = 1 pixel) HU, each body pixel given the label (among the soft-tissue labels) whose simulated
  interior mean is nearest; Dice against the label map per soft-tissue label, averaged.
  Retention = mean Dice(refined) / mean Dice(simulated). Pass: ≥ 0.95.
- **mass change** — total attenuation ``Σ μ(HU)`` over the body (label ≠ 0), refined against
  simulated (the water-equivalent mass in the slices). Pass: |change| ≤ 1 %.
- **noise power spectrum** (when real images are given) — the RMS difference of log₁₀ NPS
  (`medphys.metrics.nps`, soft tissue, detrended by a σ = 3 pixel Gaussian, 12 bins to Nyquist)
  between the images and the real ones, before and after refinement. Pass: it does not grow.

References:
    ICRU Report 87 (2012) (NPS); Dice, Ecology 26 (1945) 297; the CT measurement model of
    `medphys.simulators.ct` (water-linearised line integrals).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..metrics import nps, soft_tissue_mask
from ..neural import SimulatedCT, measurement_residual
from ._criterion import Criterion

_WHERE = "medphys.audit.physics_audit"
SOFT_TISSUE_HU = (-150.0, 250.0)


@dataclasses.dataclass(frozen=True)
class Judged:
    """Criteria judged over a number of cases: what every physics audit report shares."""

    criteria: tuple[Criterion, ...]
    cases: int

    @property
    def passed(self) -> bool:
        """True when every judged criterion passed."""
        return all(c.passed for c in self.criteria)

    def criterion(self, name: str) -> Criterion:
        return next(c for c in self.criteria if c.name == name)

    def describe(self) -> str:
        rows = [
            f"physics-consistency audit of {self.cases} case(s): {'PASS' if self.passed else 'FAIL'}"
        ]
        for c in self.criteria:
            verdict = "pass" if c.passed else "FAIL"
            rows.append(f"  {c.name:<24} {c.value:>10.4g}  {c.rule:<22} {verdict}  {c.detail}")
        return "\n".join(rows)


@dataclasses.dataclass(frozen=True)
class PhysicsReport(Judged):
    """The physics-consistency audit of a set of refined CT images (`physics_audit`)."""

    label_shifts_hu: dict[int, float]
    soft_labels: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "cases": self.cases,
            "soft_labels": list(self.soft_labels),
            "label_shifts_hu": {str(k): v for k, v in self.label_shifts_hu.items()},
            "criteria": [c.to_dict() for c in self.criteria],
        }


def interiors(labels: np.ndarray, values: list[int]) -> dict[int, np.ndarray]:
    from scipy import ndimage

    st = np.zeros((1, 3, 3, 1), bool)
    st[0, :, 1, 0] = st[0, 1, :, 0] = True
    return {v: ndimage.binary_erosion(labels == v, st) for v in values}


def segment(hu: np.ndarray, body: np.ndarray, means: dict[int, float]) -> np.ndarray:
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(hu, sigma=(0, 1, 1, 0))
    keys = np.asarray(list(means))
    centres = np.asarray([means[k] for k in keys])
    nearest = keys[np.argmin(np.abs(smooth[..., None] - centres), axis=-1)]
    return np.where(body, nearest, -1)


def dice(seg: np.ndarray, labels: np.ndarray, values: tuple[int, ...]) -> float:
    scores = []
    for v in values:
        a, b = seg == v, labels == v
        total = a.sum() + b.sum()
        if total:
            scores.append(2.0 * np.sum(a & b) / total)
    return float(np.mean(scores)) if scores else float("nan")


def dice_retention(
    sim: np.ndarray,
    ref: np.ndarray,
    labels: np.ndarray,
    means: dict[int, float],
    minimum: float,
) -> Criterion:
    """Mean Dice of the refined images' nearest-mean segmentation over the simulated images'
    (`segment` with the judged labels' simulated interior ``means``), held to ``minimum``."""
    body = labels != 0
    judged = tuple(means)
    d_sim = dice(segment(sim, body, means), labels, judged)
    d_ref = dice(segment(ref, body, means), labels, judged)
    retention = d_ref / d_sim if d_sim > 0 else float("nan")
    return Criterion(
        "dice_retention",
        retention,
        f">= {minimum:g}",
        bool(retention >= minimum),
        f"mean Dice simulated {d_sim:.4f}, refined {d_ref:.4f}",
    )


def log_nps(images: np.ndarray, mask: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    _, s = nps(jnp.asarray(images), jnp.asarray(mask), spacing_mm=spacing, detrend_px=3.0, bins=12)
    s = np.asarray(s, np.float64)
    return np.where(s > 0, np.log10(np.where(s > 0, s, 1.0)), np.nan)


def physics_audit(
    simulated: Any,
    refined_hu: Any,
    *,
    real: Any = None,
    max_residual_ratio: float = 1.10,
    max_shift_hu: float = 10.0,
    min_dice_retention: float = 0.95,
    max_mass_change: float = 0.01,
) -> PhysicsReport:
    """Audit refined CT images against the physics of their simulation (module docstring).

    Args:
        simulated: `medphys.neural.SimulatedCT` (the refiner's inputs with their scans).
        refined_hu: ``(cases, x, y, z)`` refined images (HU), one per simulated case.
        real: optional ``(n, a, b)`` real CT slices or patches (HU) at the same pixel spacing,
            for the NPS criterion.
        max_residual_ratio, max_shift_hu, min_dice_retention, max_mass_change: thresholds.

    Returns:
        `PhysicsReport` (``.passed``, ``.describe()``, ``.to_dict()``).

    Raises:
        TypeError: ``simulated`` is not a `SimulatedCT`.
        ValueError: refined images of another shape or non-finite; no soft-tissue label.
    """
    if not isinstance(simulated, SimulatedCT):
        raise TypeError(
            f"{_WHERE}: `simulated` must be a medphys.neural.SimulatedCT (got {type(simulated).__name__})"
        )
    sim = np.asarray(simulated.hu, np.float64)
    ref = np.asarray(refined_hu, np.float64)
    if ref.shape != sim.shape:
        raise ValueError(
            f"{_WHERE}: `refined_hu` must have the simulated images' shape {sim.shape} (got {ref.shape})"
        )
    if not np.all(np.isfinite(ref)):
        raise ValueError(
            f"{_WHERE}: `refined_hu` has {int(np.sum(~np.isfinite(ref)))} non-finite values"
        )
    labels = np.asarray(simulated.labels)
    values = [v for v in simulated.label_values if v != 0]
    inner = interiors(labels, values)
    means = {v: float(sim[inner[v]].mean()) for v in values if inner[v].any()}
    soft = tuple(v for v, m in means.items() if SOFT_TISSUE_HU[0] <= m <= SOFT_TISSUE_HU[1])
    if not soft:
        raise ValueError(
            f"{_WHERE}: no label has a simulated interior mean within {SOFT_TISSUE_HU} HU; "
            "nothing to judge intensities on"
        )
    criteria = []

    ratios = []
    for i in range(sim.shape[0]):
        r = measurement_residual(
            jnp.asarray(ref[i], jnp.float32),
            simulated.projections[i],
            simulated.projector,
            simulated.mu_water_per_mm,
        )
        ratios.append(math.sqrt(float(r) / float(simulated.residual[i])))
    worst = max(ratios)
    criteria.append(
        Criterion(
            "measurement_residual",
            worst,
            f"max ratio <= {max_residual_ratio:g}",
            worst <= max_residual_ratio,
            f"RMS misfit ratio per case: {', '.join(f'{r:.3f}' for r in ratios)}",
        )
    )

    shifts = {v: float((ref - sim)[inner[v]].mean()) for v in means}
    worst_shift = max(abs(shifts[v]) for v in soft)
    criteria.append(
        Criterion(
            "label_hu_shift",
            worst_shift,
            f"max |shift| <= {max_shift_hu:g} HU",
            worst_shift <= max_shift_hu,
            "soft-tissue labels " + ", ".join(f"{v}: {shifts[v]:+.2f}" for v in soft),
        )
    )

    criteria.append(
        dice_retention(sim, ref, labels, {v: means[v] for v in soft}, min_dice_retention)
    )

    body = labels != 0
    mu_sim = np.sum((1.0 + sim / 1000.0)[body])
    mu_ref = np.sum((1.0 + ref / 1000.0)[body])
    change = float(mu_ref / mu_sim - 1.0)
    criteria.append(
        Criterion(
            "mass_change",
            change,
            f"|change| <= {max_mass_change:.0%}",
            abs(change) <= max_mass_change,
            "total attenuation over the body",
        )
    )

    if real is not None:
        r = np.asarray(real, np.float64)
        if r.ndim != 3:
            raise ValueError(
                f"{_WHERE}: `real` must be (n, a, b) 2-D images in HU (got shape {r.shape})"
            )
        spacing = simulated.spacing_mm
        target = log_nps(r, soft_tissue_mask(r), spacing)
        slices_sim = np.moveaxis(sim, -1, 1).reshape(-1, *sim.shape[1:3])
        slices_ref = np.moveaxis(ref, -1, 1).reshape(-1, *sim.shape[1:3])
        mask = soft_tissue_mask(slices_sim)
        before = log_nps(slices_sim, mask, spacing)
        after = log_nps(slices_ref, mask, spacing)
        ok = np.isfinite(target) & np.isfinite(before) & np.isfinite(after)
        d_before = float(np.sqrt(np.mean((before[ok] - target[ok]) ** 2)))
        d_after = float(np.sqrt(np.mean((after[ok] - target[ok]) ** 2)))
        criteria.append(
            Criterion(
                "nps_distance_to_real",
                d_after,
                "<= before refinement",
                d_after <= d_before,
                f"RMS log10 NPS difference before {d_before:.3f}, after {d_after:.3f}",
            )
        )
    return PhysicsReport(
        criteria=tuple(criteria),
        label_shifts_hu=shifts,
        soft_labels=soft,
        cases=int(sim.shape[0]),
    )
