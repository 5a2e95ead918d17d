"""Projection arms imaged around a lesion: detector windows, reconstructed planes, the voxel box.

An arm whose protocol has a stationary flat detector (a radiograph or tomosynthesis; DM or DBT
for a breast) images only the neighbourhood of a trial's lesion. The lesion is placed on a coarse
survey voxelisation; each arm then lays out its detector window and its output image around it:

- one view (radiograph, DM): the image is a ``field_px``² window of the detector (pitch
  ``pixel_mm``: the panel read binned) centred on the projection of the lesion's centre from the
  focal spot;
- a sweep (tomosynthesis, DBT): one reconstructed plane (`medphys.simulators.ct.dbt_fbp`,
  1 mm slice-thickness filter) through the lesion's centre, parallel to the detector,
  ``field_px``² pixels of ``pixel_mm``, from the detector window that every view's rays through
  that plane reach, widened by ``PAD_MM`` so that the ramp filter sees no edge near the region of
  interest.

The case is voxelised once on the box that every arm's rays cross inside the *slab*: the part of
the patient region between the detector and the far side of the patient (a breast's paddles; a
chest trial's voxel grid along the beam), at the recipe grid's spacing (`layout`). The box's
shape is the same wherever the lesion lies, so cases share their compiled kernels.

Frames: each arm is planned in its `Frame`, a rotation of the world that permutes (and flips) its
axes so that the detector is a plane ``z = const`` below the sources and the tube moves along
``+x``. Mammography's frame is the world's; a posterior–anterior chest tomosynthesis (beam along
+y, tube moving along z) plans in ``x' = z, y' = -x, z' = -y``. The voxel box, the window
geometry and the output image are handed back in world coordinates; the DBT reconstruction runs
in the frame (its filter acts along the tube's motion).

Stated simplifications: windows are cut from the detector's plane wherever the lesion projects
(the panel is assumed to reach them); a protocol's kernel scatter model (the chest protocols':
SPR 0.3, 120 mm kernel) is computed from the window's own primary, its kernel renormalised at
the window's edges, so the scatter level is right where the field around the window resembles
it, and the scatter's shape from farther away is missing; the mammography protocols simulate
the primary beam only.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import jax
import numpy as np

from .._types import PRNGKey
from ..simulators import Modality

#: the margin (mm) of a tomosynthesis detector window around the rays of the reconstructed plane
PAD_MM = 5.0

#: the projected maps are the smallest attenuation basis within this relative error of every
#: material's attenuation at every energy of the spectrum (`medphys.simulators.xray.prepare`)
BASIS_TOLERANCE = 1e-5

#: one-view arms (their image is a detector window) and sweeps (a reconstructed plane)
SINGLE_VIEW = (Modality.DM, Modality.RADIOGRAPH)
SWEEP = (Modality.DBT, Modality.TOMOSYNTHESIS)


@dataclasses.dataclass(frozen=True, eq=False)
class Detector:
    """A stationary flat detector and its sources as host arrays (the layout is NumPy only).

    Attributes:
        sources: ``(views, 3)`` focal spots (mm).
        centre, e_u, e_v: the detector's centre and unit axes (mm, world or frame).
        n_u, n_v, du, dv: its pixels and pitches.
    """

    sources: np.ndarray
    centre: np.ndarray
    e_u: np.ndarray
    e_v: np.ndarray
    n_u: int
    n_v: int
    du: float
    dv: float

    @classmethod
    def of(cls, geometry: Any) -> Detector:
        """A stationary-detector geometry's poses (any point-source flat-detector geometry)."""
        src, centre, e_u, e_v = geometry.poses()
        return cls(
            src,
            centre[0],
            e_u[0],
            e_v[0],
            int(geometry.n_u),
            int(geometry.n_v),
            float(geometry.du_mm),
            float(geometry.dv_mm),
        )

    def moved(self, shift: Any) -> Detector:
        """Sources and detector moved by ``shift`` (mm)."""
        d = np.asarray(shift, np.float64)
        return dataclasses.replace(self, sources=self.sources + d, centre=self.centre + d)

    def turned(self, rotate: Any) -> Detector:
        """Sources, centre and axes mapped by the linear map ``rotate`` (a frame change)."""
        return dataclasses.replace(
            self,
            sources=rotate(self.sources),
            centre=rotate(self.centre),
            e_u=rotate(self.e_u),
            e_v=rotate(self.e_v),
        )

    def geometry(self) -> Any:
        """The `medphys.simulators.geometry.ProjectionGeometry` of these poses."""
        from ..simulators.geometry import ProjectionGeometry

        views = (len(self.sources), 3)
        return ProjectionGeometry.create(
            sources_mm=self.sources,
            detector_centers_mm=np.broadcast_to(self.centre, views),
            u_axes=np.broadcast_to(self.e_u, views),
            v_axes=np.broadcast_to(self.e_v, views),
            n_u=self.n_u,
            n_v=self.n_v,
            du_mm=self.du,
            dv_mm=self.dv,
        )


def stationary_axes(geometry: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``(e_u, e_v)`` of a stationary detector whose axes are world axes (up to sign), or
    ``None`` (not a point-source flat-detector geometry, a moving detector, oblique axes)."""
    if not hasattr(geometry, "poses") or not hasattr(geometry, "n_u"):
        return None
    _, centre, e_u, e_v = geometry.poses()
    if not (
        np.allclose(centre, centre[0]) and np.allclose(e_u, e_u[0]) and np.allclose(e_v, e_v[0])
    ):
        return None
    for a in (e_u[0], e_v[0]):
        if not np.allclose(np.abs(a), np.eye(3)[int(np.argmax(np.abs(a)))], atol=1e-9):
            return None
    return e_u[0], e_v[0]


@dataclasses.dataclass(frozen=True)
class Frame:
    """A rotation of the world (a signed permutation of its axes) in which an arm's detector is
    the plane ``z = const`` below its sources and its tube moves along ``+x``.

    Attributes:
        rotation: ``(3, 3)``: row ``i`` is the frame's axis ``i`` in world coordinates
            (``p_frame = rotation @ p_world``).
    """

    rotation: np.ndarray

    @classmethod
    def of(cls, detector: Detector) -> Frame:
        """The frame of a stationary detector (world coordinates).

        Raises:
            ValueError: the detector's normal or the tube's motion is not along a world axis.
        """
        src, e_u, e_v = detector.sources, detector.e_u, detector.e_v
        n = np.cross(e_u, e_v)
        n = n / np.linalg.norm(n)
        if np.dot(src.mean(axis=0) - detector.centre, n) < 0:
            n = -n
        motion = e_u
        if len(src) > 1:
            d = src - src.mean(axis=0)
            d = d - np.outer(d @ n, n)
            motion = np.linalg.svd(d, full_matrices=False)[2][0]
        along_u = float(np.dot(motion, e_u))
        motion = motion * (np.sign(along_u) if abs(along_u) > 1e-6 else np.sign(motion @ e_v))
        rotation = np.stack([motion, np.cross(n, motion), n])
        exact = np.round(rotation)
        if not np.allclose(rotation, exact, atol=1e-6):
            raise ValueError(
                "medphys.pipelines: a radiograph or tomosynthesis arm needs a detector facing a "
                "world axis and a tube moving along one (got detector normal "
                f"{np.round(n, 4).tolist()}, tube motion {np.round(motion, 4).tolist()})"
            )
        return cls(exact + 0.0)

    @property
    def normal_axis(self) -> int:
        """The world axis along the detector's normal."""
        return int(np.argmax(np.abs(self.rotation[2])))

    def point(self, p: Any) -> np.ndarray:
        """World point(s) or direction(s) → frame."""
        return np.asarray(p, np.float64) @ self.rotation.T

    def world(self, p: Any) -> np.ndarray:
        """Frame point(s) or direction(s) → world."""
        return np.asarray(p, np.float64) @ self.rotation

    def world_box(self, lo: Any, hi: Any) -> tuple[np.ndarray, np.ndarray]:
        """A frame box's corners → the world box (exact: the frame permutes axes)."""
        a, b = self.world(lo), self.world(hi)
        return np.minimum(a, b), np.maximum(a, b)

    def world_affine(self, affine: Any) -> np.ndarray:
        """A voxel → frame affine → the voxel → world affine."""
        out = np.eye(4)
        out[:3, :] = self.rotation.T @ np.asarray(affine, np.float64)[:3, :]
        return out


def placed(det: Detector, lo: Any, hi: Any, *, centred: bool) -> Detector:
    """A stationary detector moved along its normal so that its surface is the region
    ``[lo, hi]``'s face on the detector's side (the patient against the panel); with ``centred``
    also across, so the detector's centre faces the region's centre."""
    frame = Frame.of(det)
    c = frame.point(det.centre)
    f_lo, f_hi = frame.point(lo), frame.point(hi)
    f_lo, f_hi = np.minimum(f_lo, f_hi), np.maximum(f_lo, f_hi)
    shift = np.zeros(3)
    shift[2] = f_lo[2] - c[2]
    if centred:
        shift[:2] = (f_lo[:2] + f_hi[:2]) / 2 - c[:2]
    return det.moved(frame.world(shift))


def window(detector: Detector, centre_xy: Any, n_u: int, n_v: int, pixel_mm: float) -> Detector:
    """In an arm's frame: the stationary detector cut to ``n_u × n_v`` pixels of ``pixel_mm``
    centred at the point ``centre_xy`` of its plane, u along ``+x`` and v along ``+y`` (the
    sources unchanged)."""
    return dataclasses.replace(
        detector,
        centre=np.array([centre_xy[0], centre_xy[1], float(detector.centre[2])]),
        e_u=np.array([1.0, 0.0, 0.0]),
        e_v=np.array([0.0, 1.0, 0.0]),
        n_u=int(n_u),
        n_v=int(n_v),
        du=float(pixel_mm),
        dv=float(pixel_mm),
    )


def project_point(source: np.ndarray, detector_z: float, point: np.ndarray) -> np.ndarray:
    """Where the ray from ``source`` through ``point`` meets the plane ``z = detector_z`` (x, y)."""
    t = (detector_z - source[2]) / (point[2] - source[2])
    return source[:2] + t * (point[:2] - source[:2])


def rays_box(detector: Detector, z_low: float, z_high: float) -> tuple[np.ndarray, np.ndarray]:
    """The x-y box that every ray from a source to the detector crosses between two heights (in
    the frame)."""
    half_u = 0.5 * detector.n_u * detector.du
    half_v = 0.5 * detector.n_v * detector.dv
    corners = np.array(
        [
            detector.centre + a * detector.e_u + b * detector.e_v
            for a in (-half_u, half_u)
            for b in (-half_v, half_v)
        ]
    )
    points = []
    for s in detector.sources:
        for z in (z_low, z_high):
            t = (z - s[2]) / (corners[:, 2] - s[2])
            points.append(s[:2] + t[:, None] * (corners[:, :2] - s[:2]))
    pts = np.concatenate(points)
    return pts.min(0), pts.max(0)


@dataclasses.dataclass(frozen=True)
class ArmPlan:
    """One projection arm's layout around a lesion.

    Attributes:
        detector: the detector window (world coordinates).
        output: the reconstructed plane's `medphys.Grid` (world), or ``None`` for one view (the
            image is the window itself).
        box_lo, box_hi: the world box its rays cross inside the slab.
        frame: the arm's `Frame`; ``frame_detector`` and ``frame_output`` are the window and the
            plane in it.
        axes: the protocol detector's ``(e_u, e_v)`` (world): the output image's axes.
    """

    detector: Detector
    output: Any
    box_lo: np.ndarray
    box_hi: np.ndarray
    frame: Frame
    frame_detector: Detector
    frame_output: Any
    axes: tuple[np.ndarray, np.ndarray]

    @property
    def geometry(self) -> Any:
        """The window's `ProjectionGeometry` (world)."""
        return self.detector.geometry()


def plan_arm(
    detector: Detector,
    kind: Modality,
    centre_mm: Any,
    slab: tuple[float, float],
    field_px: int,
    pixel_mm: float,
    across: tuple[Any, Any] | None = None,
) -> ArmPlan:
    """Lay out a projection arm around the lesion centre (module docstring).

    Args:
        detector: the arm's stationary detector, placed (`placed`), world coordinates.
        kind: the arm's modality (one view: `SINGLE_VIEW`; a sweep: `SWEEP`).
        centre_mm: the lesion's centre (world).
        slab: the heights ``(low, high)``, in the arm's frame, between which the patient lies.
        field_px, pixel_mm: the output image's size and pixel.
        across: the frame ``(x, y)`` box the lesion centre may take (default: the point
            ``(0, 0)``).

    Every size is the same wherever the lesion lies: a sweep's window is sized for a plane at
    the slab's far side, the farthest a lesion can be from the detector, and at the corners of
    ``across`` (sources at different heights along an arc magnify a plane differently, so its
    feet spread with its distance from the sources' line).
    """
    from ..volume import Grid

    frame = Frame.of(detector)
    axes = (detector.e_u, detector.e_v)
    det = detector.turned(frame.point)
    src = det.sources
    z_d = float(det.centre[2])
    c = frame.point(centre_mm)
    z_lo, z_hi = slab
    if kind in SINGLE_VIEW:
        win = window(det, project_point(src[0], z_d, c), field_px, field_px, pixel_mm)
        lo, hi = rays_box(win, z_lo, z_hi)
        box = frame.world_box([*lo, z_lo], [*hi, z_hi])
        return ArmPlan(win.turned(frame.world), None, *box, frame, win, None, axes)
    half = 0.5 * field_px * pixel_mm
    offsets = np.array([[a, b, 0.0] for a in (-half, half) for b in (-half, half)])

    def feet(point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pts = [project_point(s, z_d, point + o) for s in src for o in offsets]
        return np.min(pts, axis=0) - PAD_MM, np.max(pts, axis=0) + PAD_MM

    reach = [(0.0, 0.0)] if across is None else list(itertools.product(*zip(*across, strict=False)))
    spans = [np.subtract(*feet(np.array([x, y, z_hi]))[::-1]) for x, y in reach]
    top = np.max(spans, axis=0)  # the largest window
    du = det.du
    n_u = math.ceil(top[0] / du - 1e-6)
    n_v = math.ceil(top[1] / du - 1e-6)
    lo_xy, hi_xy = feet(c)
    win = window(det, (lo_xy + hi_xy) / 2, n_u, n_v, du)
    origin = c - np.array([(field_px - 1) / 2 * pixel_mm, (field_px - 1) / 2 * pixel_mm, 0.0])
    affine = np.diag([pixel_mm, pixel_mm, 1.0, 1.0])
    affine[:3, 3] = origin
    plane = Grid((field_px, field_px, 1), affine)
    lo, hi = rays_box(win, z_lo, z_hi)
    box = frame.world_box([*lo, z_lo], [*hi, z_hi])
    output = Grid((field_px, field_px, 1), frame.world_affine(affine))
    return ArmPlan(win.turned(frame.world), output, *box, frame, win, plane, axes)


def layout(
    arms: Any,
    detectors: dict[str, Detector],
    centre_mm: Any,
    region: tuple[Any, Any],
    spacing_mm: float,
) -> tuple[dict[str, ArmPlan], dict[str, Any]]:
    """Each projection arm's plan around the lesion, and the ``voxelize`` arguments of the box
    their rays cross inside the region.

    Args:
        arms: the recipe's arms (all projection arms).
        detectors: per arm name, its placed detector (`placed`).
        centre_mm: the lesion's centre (world).
        region: the world box ``(lo, hi)`` the patient lies in; its extent along the detectors'
            normal is the slab.
        spacing_mm: the voxel size.

    The box's shape is the same for every lesion in the region: the largest union of the arms'
    ray boxes for a lesion at the region's corners, edge and face centres and centre (a bundle of
    rays through an off-axis window slants, so the box grows away from the axis and toward the
    source; its size is largest at an extreme of each coordinate); its centre is the actual
    union's.

    Raises:
        ValueError: arms whose detectors face different world axes.
    """
    lo_r, hi_r = (np.asarray(v, np.float64) for v in region)
    frames = {a.name: Frame.of(detectors[a.name]) for a in arms}
    axes = {f.normal_axis for f in frames.values()}
    if len(axes) != 1:
        raise ValueError(
            "medphys.pipelines: the projection arms of one recipe must face the same world axis "
            f"(detector normals along {sorted('xyz'[i] for i in axes)})"
        )
    axis = axes.pop()

    def slab(frame: Frame) -> tuple[float, float]:
        z = np.sort(frame.point(np.stack([lo_r, hi_r]))[:, 2])
        return float(z[0]), float(z[1])

    def across(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        xy = frame.point(np.stack([lo_r, hi_r]))[:, :2]
        return xy.min(axis=0), xy.max(axis=0)

    def plans_at(point: Any) -> dict[str, ArmPlan]:
        return {
            a.name: plan_arm(
                detectors[a.name],
                a.modality,
                point,
                slab(frames[a.name]),
                a.field_px,
                a.image_pixel_mm,
                across(frames[a.name]),
            )
            for a in arms
        }

    def union(plans: dict[str, ArmPlan]) -> tuple[np.ndarray, np.ndarray]:
        lo = np.min([p.box_lo for p in plans.values()], axis=0)
        hi = np.max([p.box_hi for p in plans.values()], axis=0)
        return lo, hi

    size = np.zeros(3)
    for corner in itertools.product(*zip(lo_r, (lo_r + hi_r) / 2, hi_r, strict=True)):
        lo, hi = union(plans_at(np.asarray(corner)))
        size = np.maximum(size, hi - lo)
    plans = plans_at(centre_mm)
    lo, hi = union(plans)
    # rounded to 1e-3 voxel first: float noise does not change the shape
    shape = [math.ceil(round(float(v) / spacing_mm, 3)) for v in size]
    middle = (lo + hi) / 2
    middle[axis] = (lo_r[axis] + hi_r[axis]) / 2
    grid = {
        "shape": tuple(shape),
        "spacing_mm": spacing_mm,
        "center_mm": tuple(float(v) for v in middle),
    }
    return plans, grid


def _centred(grid: Any, centre: np.ndarray) -> Any:
    """``grid`` moved so that the point ``centre`` is the origin."""
    from ..volume import Grid

    affine = np.asarray(grid.affine, np.float64).copy()
    affine[:3, 3] -= centre
    return Grid(grid.shape, affine)


# Plans of the X-ray scanners per process, by structure (protocol, grid shape and spacing,
# materials): cases differ only by where the lesion is, so each case moves the world to put its
# box at the origin, and the scanner planned for the first case applies to every other through
# its pose (`Projector.with_geometry`), inside one compiled function. A sweep's plane is
# backprojected by a projector prepared for the case's own poses (the gather adjoint: 0.02 s
# against 1.5 s for the scatter transpose of a moved one, 60 views onto 48² pixels).
_SCANNERS: dict[tuple, Any] = {}


def _scanner(protocol: Any, grid: Any, geometry: Any, materials: tuple[str, ...]) -> Any:
    from ..simulators import xray

    key = (protocol.name, protocol.description, grid.shape, grid.affine.tobytes(), materials,
           geometry.n_views, geometry.n_u, geometry.n_v)  # fmt: skip
    if key not in _SCANNERS:
        _SCANNERS[key] = xray.prepare(
            grid,
            dataclasses.replace(protocol, geometry=geometry),
            materials=materials,
            basis_tolerance=BASIS_TOLERANCE,
        )
    return _SCANNERS[key]


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
    """The labels' material fractions in the fixed order ``materials`` (absent ones zero),
    times the labels' density scale (texture) when they have one."""
    import jax.numpy as jnp

    own = labels.material_fractions(jnp.float32)
    rows = [
        own[labels.material_names.index(m)]
        if m in labels.material_names
        else jnp.zeros(labels.shape, jnp.float32)
        for m in materials
    ]
    out = jnp.stack(rows)
    if labels.density_scale is not None:
        out = out * jnp.asarray(labels.density_scale, jnp.float32)[None]
    return out


def image_arm(
    key: PRNGKey, protocol: Any, plan: ArmPlan, labels: Any, materials: tuple[str, ...]
) -> tuple[Any, np.ndarray]:
    """Simulate (and for a sweep reconstruct) one arm: ``(image Volume (n, n, 1), raw
    projections)``.

    ``materials`` fixes the fraction rows (the same for every case of a trial, so the planned
    operators serve them all).
    """

    from ..simulators import ct, xray
    from ..volume import Volume

    box = np.asarray(labels.center_mm, np.float64)
    grid = _centred(labels.grid, box)
    forward = plan.detector.moved(-box).geometry()
    scanner = _scanner(protocol, grid, forward, materials)
    projections = _acquire(scanner, forward, key, _fractions(labels, materials))
    raw = np.asarray(projections, np.float32)
    if plan.output is not None:
        middle = np.asarray(plan.frame_output.center_mm, np.float64)
        plane = _centred(plan.frame_output, middle)
        pose = plan.frame_detector.moved(-middle).geometry()
        image = ct.dbt_fbp(
            projections,
            pose,
            like=plane,
            slice_thickness_mm=1.0,
            projector=xray.prepare(plane, pose),
        )
        data, affine = np.asarray(image.data), plan.output.affine
    else:
        d = plan.frame_detector
        frame_affine = np.diag([d.du, d.du, 1.0, 1.0])
        frame_affine[:3, 3] = d.centre - np.array(
            [(d.n_u - 1) / 2 * d.du, (d.n_v - 1) / 2 * d.du, 0.0]
        )
        data, affine = raw[0][:, :, None], plan.frame.world_affine(frame_affine)
    data, affine = to_detector_axes(data, affine, *plan.axes)
    return Volume(data=data, affine=affine), raw


def to_detector_axes(
    data: np.ndarray, affine: np.ndarray, e_u: np.ndarray, e_v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A ``(n, m, 1)`` plane image with its world affine, its first two axes turned (transposed,
    flipped) to run along the protocol detector's ``e_u`` and ``e_v``: every arm's image of a
    trial shows the patient the same way up, whatever frame it was planned in."""
    a = np.asarray(affine, np.float64)
    cols = a[:3, :2] / np.linalg.norm(a[:3, :2], axis=0)
    order, flips = [], []
    for want in (e_u, e_v):
        dots = cols.T @ np.asarray(want, np.float64)
        k = int(np.argmax(np.abs(dots)))
        order.append(k)
        flips.append(bool(dots[k] < 0))
    if order == [0, 1] and not any(flips):
        return data, a
    out = np.transpose(np.asarray(data), (*order, 2))
    start = np.zeros(4)
    start[3] = 1.0
    new = a.copy()
    for axis, (k, flip) in enumerate(zip(order, flips, strict=True)):
        if flip:
            out = np.flip(out, axis)
            start[k] = data.shape[k] - 1
        new[:3, axis] = (-1.0 if flip else 1.0) * a[:3, k]
    new[:3, 3] = (a @ start)[:3]
    return np.ascontiguousarray(out), new
