"""Mammography (DM) and digital breast tomosynthesis (DBT) geometry.

Axis convention (world RAS+ mm, a craniocaudal (CC) view of a patient standing at the unit):

- the breast is compressed along z (superior–inferior): the detector lies in the plane
  ``z = detector_z_mm`` under the breast, its normal +z, the source above it (superior);
- the chest wall is the detector edge ``y = chest_wall_y_mm``; the breast extends anteriorly
  (+y, toward the nipple) over the detector, rows (v) running from the chest wall along +y and
  columns (u) along +x (the patient's left), parallel to the chest wall;
- the half-cone beam: at the central (0°) view the source sits at ``sid_mm`` above the chest-wall
  edge, ``(0, chest_wall_y_mm, detector_z_mm + sid_mm)``, so its perpendicular (central) ray runs
  along the chest wall and the whole field lies anterior to it;
- tomosynthesis: the detector stays put; the source moves on an arc in the x–z plane (parallel to
  the chest wall) about a pivot ``pivot_height_mm`` above the detector surface on the central
  ray, at angles ``linspace(-arc/2, +arc/2, n_views)`` from the vertical (positive toward +x).

`mammography_geometry` returns a `ProjectionGeometry`, so the projector pair, the scanner and the
iterative reconstructions serve it as they serve any projective geometry.

References:
    I. Sechopoulos, "A review of breast tomosynthesis. Part I. The image acquisition process",
    Med. Phys. 40(1):014301, 2013 (acquisition geometries of clinical DBT systems).
"""

from __future__ import annotations

import numpy as np

from ..._checks import number as _number
from ..geometry import ProjectionGeometry

__all__ = ["mammography_geometry"]


def _count(where: str, name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{where}: `{name}` must be an integer ≥ {least} (got {value!r})")
    return int(value)


def mammography_geometry(
    *,
    sid_mm: float,
    n_u: int,
    n_v: int,
    du_mm: float,
    dv_mm: float,
    n_views: int = 1,
    arc_deg: float = 0.0,
    pivot_height_mm: float = 0.0,
    detector_z_mm: float = 0.0,
    chest_wall_y_mm: float = 0.0,
) -> ProjectionGeometry:
    """A DM exposure (``n_views=1``) or a DBT sweep as a `ProjectionGeometry` (module docstring).

    Args:
        sid_mm: source-to-image distance at the central view (mm, > 0), e.g. 650–700.
        n_u, n_v: detector pixels along x (parallel to the chest wall) and y (chest wall →
            nipple), each ≥ 1.
        du_mm, dv_mm: pixel pitches (mm, > 0).
        n_views: source positions (1: a mammogram; ≥ 2: a tomosynthesis sweep).
        arc_deg: total angular range of the sweep (degrees, in [0, 90); 0 for one view).
        pivot_height_mm: height of the sweep's rotation centre above the detector (mm, in
            [0, sid_mm)).
        detector_z_mm: z of the detector surface (mm).
        chest_wall_y_mm: y of the detector's chest-wall edge (mm).

    Returns:
        the stationary-detector geometry, views ordered by angle.

    Raises:
        ValueError: a count below its minimum, a non-positive distance or pitch, a sweep with one
            view or several views without a sweep, a pivot outside [0, sid).

    Example:
        >>> g = mammography_geometry(sid_mm=700, n_u=64, n_v=48, du_mm=0.5, dv_mm=0.5,
        ...                          n_views=15, arc_deg=15)
        >>> g.n_views
        15
    """
    where = "medphys.simulators.xray.mammography_geometry"
    sid = _number(where, "sid_mm", sid_mm)
    if sid <= 0:
        raise ValueError(f"{where}: `sid_mm` must be > 0 (got {sid_mm!r})")
    nu = _count(where, "n_u", n_u, 1)
    nv = _count(where, "n_v", n_v, 1)
    for name, value in (("du_mm", du_mm), ("dv_mm", dv_mm)):
        if _number(where, name, value) <= 0:
            raise ValueError(f"{where}: `{name}` must be > 0 (got {value!r})")
    n = _count(where, "n_views", n_views, 1)
    arc = _number(where, "arc_deg", arc_deg)
    if not 0 <= arc < 90:
        raise ValueError(f"{where}: `arc_deg` must be in [0, 90) degrees (got {arc_deg!r})")
    if n == 1 and arc != 0:
        raise ValueError(
            f"{where}: one view has no sweep: `arc_deg` must be 0 with n_views=1 (got {arc_deg!r})"
        )
    if n > 1 and arc == 0:
        raise ValueError(f"{where}: n_views={n} needs a sweep: `arc_deg` must be > 0 (got 0)")
    pivot = _number(where, "pivot_height_mm", pivot_height_mm)
    if not 0 <= pivot < sid:
        raise ValueError(
            f"{where}: `pivot_height_mm` must be in [0, sid_mm={sid:g}) (got {pivot_height_mm!r})"
        )
    z0 = _number(where, "detector_z_mm", detector_z_mm)
    y0 = _number(where, "chest_wall_y_mm", chest_wall_y_mm)
    phi = np.radians(np.linspace(-arc / 2, arc / 2, n)) if n > 1 else np.zeros(1)
    radius = sid - pivot
    sources = np.stack(
        [radius * np.sin(phi), np.full(n, y0), z0 + pivot + radius * np.cos(phi)], axis=1
    )
    centre = np.array([0.0, y0 + 0.5 * nv * float(dv_mm), z0])
    return ProjectionGeometry.create(
        sources_mm=sources,
        detector_centers_mm=np.broadcast_to(centre, (n, 3)),
        u_axes=np.broadcast_to(np.array([1.0, 0.0, 0.0]), (n, 3)),
        v_axes=np.broadcast_to(np.array([0.0, 1.0, 0.0]), (n, 3)),
        n_u=nu,
        n_v=nv,
        du_mm=du_mm,
        dv_mm=dv_mm,
    )
