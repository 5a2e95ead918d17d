"""Lesion studies: where a lesion goes in a case, and the regions of interest around it.

A `LesionSpec` says what to insert (a sphere of ``radius_mm`` made of ``material``) and where
(``organ``, at least ``margin_mm`` from its boundary, inside the voxel grid). `place_lesion` draws
the centre uniformly among the organ voxels of the case's lesion-free voxelization that are far
enough from every other label and from the grid's edges (a Euclidean distance transform in mm), so
the lesion lies in the organ *as painted* (not in a vessel crossing it) and inside the image.

A signal-present case and its signal-absent twin share the key, so they share the patient, the
lesion's location (the absent case's region of interest is taken at the same place) and every
noise draw; only the lesion differs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from .._types import PRNGKey
from ..volume import LabeledVolume, Volume


@dataclasses.dataclass(frozen=True)
class LesionSpec:
    """A lesion to insert in an organ: a sphere, a spiculated mass, or a cluster of
    microcalcifications.

    Attributes:
        organ: the host structure's name (``"liver"``): it must hold the whole lesion.
        radius_mm: the sphere's (or the spiculated mass's core) radius.
        material: a `medphys.materials` name: a tissue or a contrast mixture such as
            ``"liver+iodine_1mg_ml"`` (an enhancing lesion).
        margin_mm: the least distance from the lesion's reach (radius plus spikes) to the
            boundary of the region ``inside`` and to the grid's edges.
        spicules: the number of spikes (0: a sphere); `medphys.phantoms.SpiculatedLesion`, its
            pattern turned about z by an angle drawn from the lesion's stream.
        spike_mm: the spikes' length beyond the core.
        inside: the structures whose painted union the lesion must lie inside (default: the
            organ alone). A breast: its interior, fat and glandular tissue together.
        centre_in: the structures the centre is drawn among (default: ``inside``). A breast:
            the glandular tissue.
        calcifications: a cluster of this many microcalcifications (0: a solid lesion), each
            a sphere of ``calcification_mm`` scattered in the ball of ``radius_mm``
            (`medphys.phantoms.CalcificationCluster`, drawn from the lesion's stream).
        calcification_mm: each calcification's diameter.
        follow_warp: for a deformed phantom (a compressed breast), ``True`` draws the lesion in
            the undeformed anatomy, so the deformation presses it with the tissue around it;
            ``False`` inserts it into the deformed phantom with its own shape, as VICTRE inserts
            its masses into the compressed breast (`medphys.phantoms.insert_lesion`'s
            ``follow_warp``). Without a deformation both are the same.
    """

    organ: str
    radius_mm: float
    material: str
    margin_mm: float = 3.0
    spicules: int = 0
    spike_mm: float = 0.0
    inside: tuple[str, ...] = ()
    centre_in: tuple[str, ...] = ()
    calcifications: int = 0
    calcification_mm: float = 0.3
    follow_warp: bool = True

    @classmethod
    def create(
        cls,
        organ: str,
        *,
        radius_mm: float,
        material: str,
        margin_mm: float = 3.0,
        spicules: int = 0,
        spike_mm: float = 0.0,
        inside: tuple[str, ...] = (),
        centre_in: tuple[str, ...] = (),
        calcifications: int = 0,
        calcification_mm: float = 0.3,
        follow_warp: bool = True,
    ) -> LesionSpec:
        """Validated constructor.

        Raises:
            ValueError: a non-positive radius, a negative margin, a spike count outside 0-64,
                spikes without a positive length, a calcification count outside 0-64, spikes
                and calcifications together, calcifications not smaller than the cluster.
            UnknownNameError: an unknown material.
        """
        from .. import materials

        where = "medphys.pipelines.LesionSpec.create"
        if not (np.isfinite(radius_mm) and radius_mm > 0):
            raise ValueError(f"{where}: `radius_mm` must be positive (got {radius_mm!r})")
        if not (np.isfinite(margin_mm) and margin_mm >= 0):
            raise ValueError(f"{where}: `margin_mm` must be >= 0 (got {margin_mm!r})")
        if isinstance(spicules, bool) or not isinstance(spicules, int) or not 0 <= spicules <= 64:
            raise ValueError(
                f"{where}: `spicules` must be an integer in [0, 64] (got {spicules!r})"
            )
        if spicules and not (np.isfinite(spike_mm) and spike_mm > 0):
            raise ValueError(
                f"{where}: `spike_mm` must be positive when `spicules` > 0 (got {spike_mm!r})"
            )
        if (
            isinstance(calcifications, bool)
            or not isinstance(calcifications, int)
            or not 0 <= calcifications <= 64
        ):
            raise ValueError(
                f"{where}: `calcifications` must be an integer in [0, 64] (got {calcifications!r})"
            )
        if calcifications and spicules:
            raise ValueError(
                f"{where}: a lesion is a spiculated mass or a calcification cluster, not both "
                f"(got spicules={spicules}, calcifications={calcifications})"
            )
        if calcifications and not (
            np.isfinite(calcification_mm) and 0 < calcification_mm < 2 * radius_mm
        ):
            raise ValueError(
                f"{where}: `calcification_mm` must be positive and below the cluster's diameter "
                f"{2 * radius_mm:g} mm (got {calcification_mm!r})"
            )
        if not isinstance(follow_warp, bool):
            raise TypeError(f"{where}: `follow_warp` must be True or False (got {follow_warp!r})")
        materials.get(material)  # raises UnknownNameError listing the catalog
        return cls(
            str(organ),
            float(radius_mm),
            str(material),
            float(margin_mm),
            int(spicules),
            float(spike_mm) if spicules else 0.0,
            tuple(str(s) for s in inside),
            tuple(str(s) for s in centre_in),
            int(calcifications),
            float(calcification_mm),
            follow_warp,
        )

    @property
    def reach_mm(self) -> float:
        """The lesion's largest radius: the core plus its spikes (a cluster: its ball)."""
        return self.radius_mm + self.spike_mm

    @property
    def region(self) -> tuple[str, ...]:
        """The structures the lesion must lie inside."""
        return self.inside or (self.organ,)

    @property
    def centres(self) -> tuple[str, ...]:
        """The structures its centre is drawn among."""
        return self.centre_in or self.region

    def shape(self, key: PRNGKey) -> Any:
        """The lesion's `medphys.phantoms` shape (spiculated: the twist drawn from ``key``; a
        cluster: the calcifications' places)."""
        from .. import phantoms

        if self.calcifications:
            return phantoms.CalcificationCluster.draw(
                key,
                count=self.calcifications,
                diameter_mm=self.calcification_mm,
                radius_mm=self.radius_mm,
            )
        if not self.spicules:
            return phantoms.SphericalLesion(self.radius_mm)
        twist = float(jax.random.uniform(key, (), jnp.float32, 0.0, 360.0))
        return phantoms.SpiculatedLesion(
            self.radius_mm, spike_mm=self.spike_mm, n_spikes=self.spicules, twist_deg=twist
        )


def iodine_for_contrast(host: str, contrast_hu: float, protocol: Any) -> tuple[str, float]:
    """The iodine mixture of ``host`` that reads ``contrast_hu`` above ``host`` under ``protocol``.

    CT numbers are `medphys.simulators.ct.ct_number` (the protocol's detected spectrum, hardened
    by its water calibration cylinder); the concentration is rounded to 0.01 mg/mL.

    Returns:
        ``(material name, achieved contrast in HU)``.

    Raises:
        ValueError: a contrast that iodine cannot reach (zero or negative: `material_for_contrast`
            gives a hypodense host instead; above what 100 mg/mL gives).
    """
    from .. import materials
    from ..simulators import ct

    where = "medphys.pipelines.iodine_for_contrast"
    if not (np.isfinite(contrast_hu) and contrast_hu > 0):
        raise ValueError(
            f"{where}: a contrast of {contrast_hu!r} HU cannot be reached with iodine at this "
            f"protocol's energy (iodine only adds attenuation); material_for_contrast gives a "
            "darker lesion as the host at a lower density"
        )
    base = ct.ct_number(host, protocol)
    per_mg = (
        ct.ct_number(materials.contrast_mixture("iodine", 1.0, base=host).name, protocol) - base
    )
    concentration = round(contrast_hu / per_mg, 2)
    if concentration > 100.0 or concentration <= 0.0:
        raise ValueError(
            f"{where}: a contrast of {contrast_hu:g} HU needs {contrast_hu / per_mg:.3g} mg/mL of "
            f"iodine in {host!r} ({per_mg:.1f} HU per mg/mL at this protocol's energy); allowed: "
            "0.01 to 100 mg/mL"
        )
    name = materials.contrast_mixture("iodine", concentration, base=host).name
    return name, ct.ct_number(name, protocol) - base


def material_for_contrast(host: str, contrast_hu: float, protocol: Any) -> tuple[str, float]:
    """The lesion material that reads ``contrast_hu`` against ``host`` under ``protocol``.

    Brighter than the host (> 0): iodine in the host (`iodine_for_contrast`). Darker (< 0): the
    host's composition at a lower density (`medphys.materials.density_scaled`, factor to 1e-4),
    found by a secant step on `medphys.simulators.ct.ct_number` (the water-hardened spectrum
    makes CT numbers slightly non-linear in density).

    Returns:
        ``(material name, achieved contrast in HU)``.

    Raises:
        ValueError: a zero or non-finite contrast, or a darker contrast than half the host's
            density gives; iodine's limits for a brighter one.
    """
    from .. import materials
    from ..simulators import ct

    where = "medphys.pipelines.material_for_contrast"
    if not np.isfinite(contrast_hu) or contrast_hu == 0:
        raise ValueError(
            f"{where}: `contrast_hu` must be a finite, non-zero difference from the host "
            f"(got {contrast_hu!r})"
        )
    if contrast_hu > 0:
        return iodine_for_contrast(host, contrast_hu, protocol)
    base = ct.ct_number(host, protocol)
    low = materials.DENSITY_FACTOR_RANGE[0]
    # HU + 1000 is proportional to mu: a first guess, then one secant step through (1, 0)
    f0 = 1.0 + contrast_hu / (base + 1000.0)
    if f0 < low:
        raise ValueError(
            f"{where}: a contrast of {contrast_hu:g} HU below {host!r} ({base:.1f} HU) needs "
            f"{f0:.3f} times its density; allowed: down to {low:g}"
        )
    r0 = ct.ct_number(materials.density_scaled(host, f0).name, protocol) - base
    f1 = f0 - (r0 - contrast_hu) * (f0 - 1.0) / r0 if r0 != 0 else f0
    name = materials.density_scaled(host, min(max(f1, low), 1.0)).name
    return name, ct.ct_number(name, protocol) - base


def place_lesion(key: PRNGKey, labels: LabeledVolume, spec: LesionSpec) -> dict[str, Any]:
    """Draw a lesion centre inside ``spec.organ`` of a voxelized case.

    Args:
        key: the case's ``"lesion"`` stream.
        labels: the case's voxelization without the lesion.
        spec: what is inserted.

    Returns:
        ``{"center_mm": [x, y, z], "center_voxel": [i, j, k], "radius_mm", "material",
        "organ", "candidates"}`` (voxel centres, RAS+ mm).

    Raises:
        ValueError: the organ is not in the case, or no voxel of it is deep enough (the message
            gives the deepest point's depth and what the lesion needs).
    """
    where = "medphys.pipelines.place_lesion"
    missing = [n for n in (*spec.region, *spec.centres) if n not in labels.names]
    if missing:
        raise ValueError(
            f"{where}: structure(s) {missing} are not in this case's structures "
            f"(it has: {', '.join(labels.names)})"
        )
    painted = np.asarray(labels.labels)
    region = np.isin(painted, [labels.structure(n).label for n in spec.region])
    centres = np.isin(painted, [labels.structure(n).label for n in spec.centres])
    spacing = np.abs(np.asarray(labels.spacing_mm, np.float64))
    # distance (mm) from each voxel of the region to the nearest voxel outside it, the grid edge
    # counting as outside
    depth = ndimage.distance_transform_edt(np.pad(region, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    need = spec.reach_mm + spec.margin_mm
    candidates = np.argwhere((depth >= need) & centres)
    if candidates.size == 0:
        names = " + ".join(map(repr, spec.region))
        raise ValueError(
            f"{where}: no point of {' or '.join(map(repr, spec.centres))} lies {need:g} mm (radius, spikes and "
            f"margin_mm) inside {names} and the grid's edges; the deepest lies "
            f"{depth[centres].max(initial=0.0):.1f} mm deep: make the lesion smaller or the "
            "margin narrower, or cover more of the organ"
        )
    pick = int(jax.random.randint(key, (), 0, candidates.shape[0]))
    voxel = candidates[pick]
    centre = np.asarray(labels.affine, np.float64) @ np.append(voxel, 1.0)
    return {
        "organ": spec.organ,
        "radius_mm": spec.radius_mm,
        "material": spec.material,
        "center_mm": [float(v) for v in centre[:3]],
        "center_voxel": [int(v) for v in voxel],
        "candidates": int(candidates.shape[0]),
    }


def extract_roi(
    volume: Volume, center_voxel: Any, size: int, *, plane: str = "axial"
) -> np.ndarray:
    """A square (2D, through the centre voxel) or cubic (``plane="3d"``) region of interest.

    Args:
        volume: the image.
        center_voxel: the ROI's centre voxel index (i, j, k).
        size: the ROI's edge length in voxels (the centre voxel is at ``size // 2``).
        plane: ``"axial"`` (the i-j plane), ``"coronal"`` (i-k), ``"sagittal"`` (j-k) or ``"3d"``.

    Returns:
        ``(size, size)`` or ``(size, size, size)`` float32; voxels outside the image repeat the
        nearest edge voxel.
    """
    where = "medphys.pipelines.extract_roi"
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"{where}: `size` must be an integer >= 2 (got {size!r})")
    axes = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2), "3d": (0, 1, 2)}
    if plane not in axes:
        raise ValueError(f"{where}: `plane` must be one of {sorted(axes)} (got {plane!r})")
    data = np.asarray(volume.data, np.float32)
    centre = np.asarray(center_voxel, np.int64)
    index = []
    for axis in range(3):
        if axis in axes[plane]:
            lo = centre[axis] - size // 2
            index.append(np.clip(np.arange(lo, lo + size), 0, data.shape[axis] - 1))
        else:
            index.append(np.asarray([np.clip(centre[axis], 0, data.shape[axis] - 1)]))
    roi = data[np.ix_(*index)]
    return roi.reshape((size,) * len(axes[plane]))
