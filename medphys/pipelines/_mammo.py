"""Mammography trials: a compressed-breast population, and DM and DBT arms imaged around a lesion.

A `BreastFamily` is the virtual population of a mammography trial. Case ``i`` is a breast of
density class ``densities[i % n]`` (`medphys.phantoms.sample_breast_params` with the class's
nominal size: ``size_scale = 1``), its skin and internal anatomy drawn from the case's
``"phantom"`` stream. Each class's outer shape is compressed once, craniocaudally, between
paddles to the class's VICTRE thickness by the elasticity network
(`medphys.neural.compress_breast`); the deformation is sampled on a grid
(`medphys.phantoms.SampledWarp`) and shared by every breast of the class. `prepare_breast_family`
does this before any case (the driver's work: the family is plain arrays, shipped to workers).

DM and DBT arms image only what their region of interest needs. The lesion is placed on a coarse
survey voxelisation of the compressed breast; each arm then lays out its detector window and its
output image around it:

- DM (a radiograph protocol with a stationary detector and one view): the image is a
  ``field_px``² window of the detector (pitch ``pixel_mm``: the panel read binned) centred on the
  projection of the lesion's centre from the focal spot;
- DBT (the same with a sweep): one reconstructed plane (`medphys.simulators.ct.dbt_fbp`,
  1 mm slice-thickness filter) through the lesion's centre, ``field_px``² pixels of ``pixel_mm``,
  from the detector window that every view's rays through that plane reach, widened by
  ``PAD_MM`` so that the ramp filter sees no edge near the region of interest.

The case is voxelised once on the box that every arm's rays cross between the paddles
(`rays_box`), at the recipe grid's spacing. The protocols' geometries are moved down so that the
detector surface is the lower paddle, ``z = -thickness / 2`` (the breast lies on the detector;
the chest wall is the detector's edge ``y = 0``, as in `medphys.simulators.xray.
mammography_geometry`).

Differences from VICTRE (Badano et al. 2018), stated: one compression per density class at its
nominal size, with one homogeneous neo-Hookean tissue (fat, 5 kPa); the lesion is placed in the
uncompressed anatomy and compressed with it (VICTRE inserts its lesions into the compressed
phantom); ray-traced primary photons with Poisson noise instead of Monte Carlo transport (no
scatter).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .._types import PRNGKey
from ..simulators import Modality

#: the margin (mm) of a DBT detector window around the rays of the reconstructed plane
PAD_MM = 5.0


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


def on_paddle(geometry: Any, thickness_mm: float) -> Any:
    """A stationary-detector geometry moved along z so its detector surface is ``z = -T/2``."""
    _, centre, _, _ = geometry.poses()
    return translated(geometry, (0.0, 0.0, -thickness_mm / 2.0 - float(centre[0][2])))


def window(geometry: Any, centre_xy: Any, n_u: int, n_v: int, pixel_mm: float) -> Any:
    """The stationary detector cut to ``n_u × n_v`` pixels of ``pixel_mm`` centred at the world
    point ``centre_xy`` of its plane (the sources unchanged)."""
    from ..simulators.geometry import ProjectionGeometry

    src, centre, e_u, e_v = geometry.poses()
    c = np.array([centre_xy[0], centre_xy[1], float(centre[0][2])])
    return ProjectionGeometry.create(
        sources_mm=src,
        detector_centers_mm=np.broadcast_to(c, centre.shape),
        u_axes=e_u,
        v_axes=e_v,
        n_u=int(n_u),
        n_v=int(n_v),
        du_mm=float(pixel_mm),
        dv_mm=float(pixel_mm),
    )


def project_point(source: np.ndarray, detector_z: float, point: np.ndarray) -> np.ndarray:
    """Where the ray from ``source`` through ``point`` meets the plane ``z = detector_z`` (x, y)."""
    t = (detector_z - source[2]) / (point[2] - source[2])
    return source[:2] + t * (point[:2] - source[:2])


def rays_box(geometry: Any, z_low: float, z_high: float) -> tuple[np.ndarray, np.ndarray]:
    """The x-y box that every ray from a source to the detector crosses between two heights."""
    src, centre, e_u, e_v = geometry.poses()
    half_u = 0.5 * geometry.n_u * float(geometry.du_mm)
    half_v = 0.5 * geometry.n_v * float(geometry.dv_mm)
    points = []
    for s, c, u, v in zip(src, centre, e_u, e_v, strict=True):
        for a in (-half_u, half_u):
            for b in (-half_v, half_v):
                corner = c + a * u + b * v
                for z in (z_low, z_high):
                    t = (z - s[2]) / (corner[2] - s[2])
                    points.append(s[:2] + t * (corner[:2] - s[:2]))
    pts = np.asarray(points)
    return pts.min(0), pts.max(0)


@dataclasses.dataclass(frozen=True)
class ArmPlan:
    """One DM or DBT arm's layout around a lesion: its detector window and output grid."""

    geometry: Any
    output: Any  # a medphys Grid (DBT plane) or None (DM: the window itself)
    box_lo: np.ndarray
    box_hi: np.ndarray


def plan_arm(
    protocol: Any,
    kind: Modality,
    centre_mm: Any,
    thickness_mm: float,
    field_px: int,
    pixel_mm: float,
) -> ArmPlan:
    """Lay out a DM (``kind=Modality.DM``) or DBT arm around the lesion centre (module docstring).

    Every size is the same wherever the lesion lies (a central projection scales a plane
    parallel to the detector uniformly, whatever its position): the DBT window is sized for a
    plane at the top paddle, the highest a lesion can be, so cases share their array shapes (and
    their compiled kernels).
    """
    from ..volume import Grid

    g = on_paddle(protocol.geometry, thickness_mm)
    src, centre, _, _ = g.poses()
    z_d = float(centre[0][2])
    c = np.asarray(centre_mm, np.float64)
    half_t = thickness_mm / 2.0
    if kind == Modality.DM:
        xy = project_point(src[0], z_d, c)
        win = window(g, xy, field_px, field_px, pixel_mm)
        lo, hi = rays_box(win, -half_t, half_t)
        return ArmPlan(win, None, lo, hi)
    # DBT: the plane through the lesion, field_px² pixels of pixel_mm; the detector window
    # that every view's rays through that plane reach, widened by PAD_MM
    half = 0.5 * field_px * pixel_mm

    def feet(point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pts = [
            project_point(s, z_d, point + np.array([a, b, 0.0]))
            for s in src
            for a in (-half, half)
            for b in (-half, half)
        ]
        return np.min(pts, axis=0) - PAD_MM, np.max(pts, axis=0) + PAD_MM

    top_lo, top_hi = feet(np.array([0.0, 0.0, half_t]))  # the largest window
    du = float(g.du_mm)
    n_u = math.ceil((top_hi[0] - top_lo[0]) / du - 1e-6)
    n_v = math.ceil((top_hi[1] - top_lo[1]) / du - 1e-6)
    lo_xy, hi_xy = feet(c)
    win = window(g, (lo_xy + hi_xy) / 2, n_u, n_v, du)
    origin = c - np.array([(field_px - 1) / 2 * pixel_mm, (field_px - 1) / 2 * pixel_mm, 0.0])
    affine = np.diag([pixel_mm, pixel_mm, 1.0, 1.0])
    affine[:3, 3] = origin
    plane = Grid((field_px, field_px, 1), affine)
    lo, hi = rays_box(win, -half_t, half_t)
    return ArmPlan(win, plane, lo, hi)


def translated(geometry: Any, shift: Any) -> Any:
    """A `ProjectionGeometry` moved by ``shift`` (mm): sources and detector together."""
    from ..simulators.geometry import ProjectionGeometry

    d = np.asarray(shift, np.float64)
    src, centre, e_u, e_v = geometry.poses()
    return ProjectionGeometry.create(
        sources_mm=src + d,
        detector_centers_mm=centre + d,
        u_axes=e_u,
        v_axes=e_v,
        n_u=geometry.n_u,
        n_v=geometry.n_v,
        du_mm=float(geometry.du_mm),
        dv_mm=float(geometry.dv_mm),
    )


def _centred(grid: Any, centre: np.ndarray) -> Any:
    """``grid`` moved so that the point ``centre`` is the origin."""
    from ..volume import Grid

    affine = np.asarray(grid.affine, np.float64).copy()
    affine[:3, 3] -= centre
    return Grid(grid.shape, affine)


# Plans of the X-ray operators per process, by structure (protocol, grid shape and spacing,
# materials): cases differ only by where the lesion is, so each case moves the world to put its
# box at the origin, and the operators planned for the first case apply to every other through
# their pose (`Projector.with_geometry`), inside one compiled function.
_SCANNERS: dict[tuple, Any] = {}
_PLANES: dict[tuple, Any] = {}


def _scanner(protocol: Any, grid: Any, geometry: Any, materials: tuple[str, ...]) -> Any:
    from ..simulators import xray

    key = (protocol.name, protocol.description, grid.shape, grid.affine.tobytes(), materials,
           geometry.n_views, geometry.n_u, geometry.n_v)  # fmt: skip
    if key not in _SCANNERS:
        _SCANNERS[key] = xray.prepare(
            grid, dataclasses.replace(protocol, geometry=geometry), materials=materials
        )
    return _SCANNERS[key]


def _plane_operator(grid: Any, geometry: Any) -> Any:
    from ..simulators import xray

    key = (grid.shape, grid.affine.tobytes(), geometry.n_views, geometry.n_u, geometry.n_v)
    if key not in _PLANES:
        _PLANES[key] = xray.prepare(grid, geometry)
    return _PLANES[key].with_geometry(geometry)


@jax.jit
def _acquire(scanner: Any, geometry: Any, key: PRNGKey, fractions: Any) -> Any:
    """A scanner planned for one case, moved to another case's pose, simulating its fractions."""
    moved = dataclasses.replace(
        scanner,
        protocol=dataclasses.replace(scanner.protocol, geometry=geometry),
        projector=scanner.projector.with_geometry(geometry),
    )
    return moved.simulate(key, fractions).projections


def _fractions(labels: Any, materials: tuple[str, ...]) -> Any:
    """The labels' material fractions in the fixed order ``materials`` (absent ones zero)."""
    import jax.numpy as jnp

    own = labels.material_fractions(jnp.float32)
    rows = [
        own[labels.material_names.index(m)]
        if m in labels.material_names
        else jnp.zeros(labels.shape, jnp.float32)
        for m in materials
    ]
    return jnp.stack(rows)


def image_arm(
    key: PRNGKey, protocol: Any, plan: ArmPlan, labels: Any, materials: tuple[str, ...]
) -> tuple[Any, np.ndarray]:
    """Simulate (and for DBT reconstruct) one arm: ``(image Volume (n, n, 1), raw projections)``.

    ``materials`` fixes the fraction rows (the same for every case of a trial, so the planned
    operators serve them all).
    """

    from ..simulators import ct
    from ..volume import Volume

    box = np.asarray(labels.center_mm, np.float64)
    grid = _centred(labels.grid, box)
    forward = translated(plan.geometry, -box)
    scanner = _scanner(protocol, grid, forward, materials)
    projections = _acquire(scanner, forward, key, _fractions(labels, materials))
    raw = np.asarray(projections, np.float32)
    if plan.output is not None:
        middle = np.asarray(plan.output.center_mm, np.float64)
        plane = _centred(plan.output, middle)
        pose = translated(plan.geometry, -middle)
        image = ct.dbt_fbp(
            projections,
            pose,
            like=plane,
            slice_thickness_mm=1.0,
            projector=_plane_operator(plane, pose),
        )
        return Volume(data=image.data, affine=plan.output.affine), raw
    g = plan.geometry
    _, centre, _, _ = g.poses()
    pixel = float(g.du_mm)
    affine = np.diag([pixel, pixel, 1.0, 1.0])
    affine[:3, 3] = centre[0] - np.array([(g.n_u - 1) / 2 * pixel, (g.n_v - 1) / 2 * pixel, 0.0])
    return Volume(data=raw[0][:, :, None], affine=affine), raw


def layout(
    arms: Any, centre_mm: Any, thickness_mm: float, spacing_mm: float
) -> tuple[dict[str, ArmPlan], dict[str, Any]]:
    """Each DM and DBT arm's plan around the lesion, and the ``voxelize`` arguments of the box
    their rays cross between the paddles.

    The box's shape is the same for every lesion of a compressed thickness: the largest union
    of the arms' ray boxes for a lesion at the bottom, the middle and the top of the breast
    (their sizes do not depend on x and y); its centre is the actual union's.
    """

    def plans_at(point: Any) -> dict[str, ArmPlan]:
        return {
            a.name: plan_arm(
                a.protocol, a.modality, point, thickness_mm, a.field_px, a.image_pixel_mm
            )
            for a in arms
        }

    def union(plans: dict[str, ArmPlan]) -> tuple[np.ndarray, np.ndarray]:
        lo = np.min([p.box_lo for p in plans.values()], axis=0)
        hi = np.max([p.box_hi for p in plans.values()], axis=0)
        return lo, hi

    half = thickness_mm / 2.0
    size = np.zeros(2)
    for z in (-half, 0.0, half):
        lo, hi = union(plans_at((0.0, 0.0, z)))
        size = np.maximum(size, hi - lo)
    plans = plans_at(centre_mm)
    lo, hi = union(plans)
    # rounded to 1e-3 voxel first: float noise does not change the shape
    n_xy = [math.ceil(round(float(v) / spacing_mm, 3)) for v in size]
    n_z = math.ceil(round(thickness_mm / spacing_mm, 3))
    middle = (lo + hi) / 2
    grid = {
        "shape": (n_xy[0], n_xy[1], n_z),
        "spacing_mm": spacing_mm,
        "center_mm": (float(middle[0]), float(middle[1]), 0.0),
    }
    return plans, grid


__all__ = ["BreastFamily", "prepare_breast_family"]
