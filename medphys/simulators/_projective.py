"""Geometries whose rays leave the z planes: one point source and a flat detector per view.

`ConeBeam` (circular or helical trajectory) and `ProjectionGeometry` (arbitrary per-view poses,
projection matrices). Conventions as in `medphys.simulators.geometry`, which re-exports both.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import number as _finite
from .geometry import (
    AbstractGeometry,
    Rays,
    _angles,
    _count,
    _isocenter,
    _positive,
    _scalar,
    _where,
)

__all__ = ["ConeBeam", "ProjectionGeometry"]


# ----------------------------------------------------------------------------------------------
# 3-D geometries: rays leave the z planes (cone angle), one source point per view


def _unit(v: Array) -> Array:
    return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True))


def _pixel_offsets(n: int, pitch: Any, offset: Any, dtype: Any) -> Array:
    i = jnp.arange(n, dtype=dtype) - (n - 1) / 2
    return i * jnp.asarray(pitch, dtype) + jnp.asarray(offset, dtype)


class _Projective(AbstractGeometry):
    """Shared code of the geometries with a point source and a flat 2-D detector per view."""

    n_u: int
    n_v: int
    du_mm: Any
    dv_mm: Any

    @property
    def n_rows(self) -> int:
        return self.n_v

    def with_rows_for(self, like: Any) -> _Projective:
        return self

    @abc.abstractmethod
    def pose(self, view: int | Array, dtype: Any = jnp.float32) -> tuple[Array, ...]:
        """``(source, detector_centre, e_u, e_v)`` of one view, each ``(3,)`` (mm, unit)."""
        ...

    def rays(self, view: int | Array, dtype: Any = jnp.float32) -> Rays:
        """Rays from the source to every pixel centre of one view, batch ``(n_u, n_v)``."""
        src, centre, e_u, e_v = self.pose(view, dtype)
        u = _pixel_offsets(self.n_u, self.du_mm, 0.0, dtype)
        v = _pixel_offsets(self.n_v, self.dv_mm, 0.0, dtype)
        pix = (
            centre[None, None, :]
            + u[:, None, None] * e_u[None, None, :]
            + v[None, :, None] * e_v[None, None, :]
        )
        delta = pix - src[None, None, :]
        length = jnp.sqrt(jnp.sum(delta * delta, axis=-1))
        shape = (self.n_u, self.n_v)
        return Rays(
            jnp.broadcast_to(src[None, None, :], (*shape, 3)),
            delta / length[..., None],
            jnp.zeros(shape, dtype),
            length,
        )

    def poses(self) -> tuple[np.ndarray, ...]:
        """All views' ``(sources, detector_centres, e_u, e_v)`` as ``(views, 3)`` host arrays
        (needs concrete leaves)."""
        with jax.ensure_compile_time_eval():
            dtype = jnp.result_type(float)
            out = jax.vmap(lambda v: self.pose(v, dtype))(jnp.arange(self.n_views))
            return tuple(np.asarray(x, dtype=np.float64) for x in out)

    def projection_matrices(self) -> np.ndarray:
        """``(views, 3, 4)`` matrices mapping homogeneous world points (mm) to homogeneous
        detector indices ``(i, j, 1)`` (``i`` along u, ``j`` along v, pixel centres at integers).
        """
        src, centre, e_u, e_v = self.poses()
        du, dv = float(self.du_mm), float(self.dv_mm)
        out = np.empty((src.shape[0], 3, 4))
        for k in range(src.shape[0]):
            n = np.cross(e_u[k], e_v[k])
            n = n / np.linalg.norm(n)
            dist = float(np.dot(centre[k] - src[k], n))  # source–detector distance along n
            if dist < 0:
                n, dist = -n, -dist
            rot = np.stack([e_u[k], e_v[k], n])
            # detector index of the principal point (foot of the perpendicular from the source)
            off = centre[k] - src[k] - dist * n
            cu = (self.n_u - 1) / 2 - float(np.dot(off, e_u[k])) / du
            cv = (self.n_v - 1) / 2 - float(np.dot(off, e_v[k])) / dv
            k_mat = np.array([[dist / du, 0.0, cu], [0.0, dist / dv, cv], [0.0, 0.0, 1.0]])
            m = k_mat @ rot
            out[k] = np.concatenate([m, -(m @ src[k])[:, None]], axis=1)
        return out

    @property
    def detector_shape(self) -> tuple[int, int]:  # type: ignore[override]
        """``(n_u, n_v)``."""
        return (self.n_u, self.n_v)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ConeBeam(_Projective):
    """Cone beam on a flat detector, circular or helical source trajectory.

    The conventions of `FanBeam` hold in every z plane: at view angle ``theta`` the source sits at
    ``isocenter - sod * d(theta) + z_source * e_z`` and the detector centre at
    ``source + sdd * d(theta) + u_offset * e_u + v_offset * e_z``, with detector axes ``e_u`` (in
    plane) and ``e_v = e_z`` (rows, superior). The source's z is
    ``z_mm + pitch_mm * (theta - theta_0) / (2 pi)`` (``theta_0`` the first view's angle): a
    circular scan for ``pitch_mm = 0``, a helix advancing ``pitch_mm`` per turn otherwise.
    ``du_mm`` and ``dv_mm`` are pixel pitches on the detector (not scaled to the isocentre).
    Projections have shape ``(views, u, v)``.

    Attributes:
        angles: ``(views,)`` view angles (rad).
        sod_mm, sdd_mm: source–isocentre and source–detector distances (mm).
        du_mm, dv_mm: pixel pitches (mm).
        u_offset_mm, v_offset_mm: detector shifts along u and v (mm).
        pitch_mm: table feed per turn (mm); 0 for a circular trajectory.
        z_mm: source z at the first view (mm).
        isocenter_mm: ``(2,)`` x, y of the rotation axis (mm).
        n_u, n_v: detector pixels (static).
    """

    angles: Float[Array, " views"]
    sod_mm: Float[Array, ""]
    sdd_mm: Float[Array, ""]
    du_mm: Float[Array, ""]
    dv_mm: Float[Array, ""]
    u_offset_mm: Float[Array, ""]
    v_offset_mm: Float[Array, ""]
    pitch_mm: Float[Array, ""]
    z_mm: Float[Array, ""]
    isocenter_mm: Float[Array, " 2"]
    n_u: int = dataclasses.field(metadata={"static": True})
    n_v: int = dataclasses.field(metadata={"static": True})

    @classmethod
    def create(
        cls,
        *,
        n_u: int,
        n_v: int,
        du_mm: float,
        dv_mm: float,
        sod_mm: float,
        sdd_mm: float,
        n_views: int | None = None,
        angles_rad: Any = None,
        start_rad: float = 0.0,
        arc_rad: float = 2 * math.pi,
        pitch_mm: float = 0.0,
        z_mm: float = 0.0,
        u_offset_mm: float = 0.0,
        v_offset_mm: float = 0.0,
        isocenter_mm: tuple[float, float] = (0.0, 0.0),
    ) -> ConeBeam:
        """Validated constructor.

        Args:
            n_u, n_v: detector pixels along u (in plane) and v (along z), each ≥ 1.
            du_mm, dv_mm: pixel pitches on the detector (mm, > 0).
            sod_mm: source–isocentre distance (mm, > 0).
            sdd_mm: source–detector distance (mm, > ``sod_mm``).
            n_views: views spread uniformly over ``arc_rad`` (default 2π; several turns allowed
                for a helix) from ``start_rad``; or give ``angles_rad``.
            pitch_mm: table feed per turn (mm, ≥ 0); > 0 makes the trajectory helical.
            z_mm: z of the source at the first view (mm).
            u_offset_mm, v_offset_mm: detector shifts (mm).
            isocenter_mm: x, y of the rotation axis (mm).

        Raises:
            ValueError, TypeError: a count below 1, a non-positive pitch or distance,
                ``sdd_mm <= sod_mm``, a negative ``pitch_mm``, angles that are not a finite 1-D
                array.

        Example:
            >>> g = ConeBeam.create(n_views=360, n_u=256, n_v=192, du_mm=1.0, dv_mm=1.0,
            ...                     sod_mm=750.0, sdd_mm=1200.0)
            >>> g.rays(0).origins.shape
            (256, 192, 3)
        """
        where = _where("ConeBeam")
        sod = _positive(where, "sod_mm", sod_mm)
        sdd = _positive(where, "sdd_mm", sdd_mm)
        if sdd <= sod:
            raise ValueError(
                f"{where}: `sdd_mm` must exceed `sod_mm` (got sdd_mm={sdd_mm!r}, sod_mm={sod_mm!r}); "
                "the detector is beyond the isocentre"
            )
        pitch = _finite(where, "pitch_mm", pitch_mm)
        if pitch < 0:
            raise ValueError(f"{where}: `pitch_mm` must be ≥ 0 (got {pitch_mm!r})")
        # a helix may run several turns; a circular scan covers at most one
        turns = math.inf if pitch > 0 else 1.0
        angles = _angles(where, n_views, angles_rad, start_rad, arc_rad, 2 * math.pi, turns)
        return cls(
            angles=angles,
            sod_mm=_scalar(sod),
            sdd_mm=_scalar(sdd),
            du_mm=_scalar(_positive(where, "du_mm", du_mm)),
            dv_mm=_scalar(_positive(where, "dv_mm", dv_mm)),
            u_offset_mm=_scalar(_finite(where, "u_offset_mm", u_offset_mm)),
            v_offset_mm=_scalar(_finite(where, "v_offset_mm", v_offset_mm)),
            pitch_mm=_scalar(pitch),
            z_mm=_scalar(_finite(where, "z_mm", z_mm)),
            isocenter_mm=_isocenter(where, isocenter_mm),
            n_u=_count(where, "n_u", n_u),
            n_v=_count(where, "n_v", n_v),
        )

    @property
    def helical(self) -> bool:
        """Whether the trajectory advances along z (needs a concrete ``pitch_mm``)."""
        return float(self.pitch_mm) != 0.0

    def frame(self, view: int | Array, dtype: Any = jnp.float32) -> tuple[Array, Array]:
        """In-plane unit vectors ``(e_u, d)`` of one view, each ``(2,)``."""
        theta = jnp.asarray(self.angles, dtype)[view]
        c, s = jnp.cos(theta), jnp.sin(theta)
        return jnp.stack([c, s]), jnp.stack([-s, c])

    def source_z_mm(self, view: int | Array, dtype: Any = jnp.float32) -> Array:
        """z of the source at one view (mm)."""
        a = jnp.asarray(self.angles, dtype)
        turns = (a[view] - a[0]) / (2 * math.pi)
        return jnp.asarray(self.z_mm, dtype) + jnp.asarray(self.pitch_mm, dtype) * turns

    def pose(self, view: int | Array, dtype: Any = jnp.float32) -> tuple[Array, ...]:
        e_u2, d2 = self.frame(view, dtype)
        zero = jnp.zeros((1,), dtype)
        e_u = jnp.concatenate([e_u2, zero])
        d = jnp.concatenate([d2, zero])
        e_v = jnp.asarray([0.0, 0.0, 1.0], dtype)
        iso = jnp.concatenate([jnp.asarray(self.isocenter_mm, dtype), zero])
        src = iso - jnp.asarray(self.sod_mm, dtype) * d + self.source_z_mm(view, dtype) * e_v
        centre = (
            src
            + jnp.asarray(self.sdd_mm, dtype) * d
            + jnp.asarray(self.u_offset_mm, dtype) * e_u
            + jnp.asarray(self.v_offset_mm, dtype) * e_v
        )
        return src, centre, e_u, e_v

    def u_mm(self, dtype: Any = jnp.float32) -> Float[Array, " u"]:
        """Detector pixel centres along u relative to the central ray (mm)."""
        return _pixel_offsets(self.n_u, self.du_mm, self.u_offset_mm, dtype)

    def v_mm(self, dtype: Any = jnp.float32) -> Float[Array, " v"]:
        """Detector pixel centres along v relative to the central ray (mm)."""
        return _pixel_offsets(self.n_v, self.dv_mm, self.v_offset_mm, dtype)

    def fov_radius_mm(self) -> float:
        """Radius (mm) about the rotation axis that every view's central row covers."""
        half = 0.5 * self.n_u * float(self.du_mm)
        off = float(self.u_offset_mm)
        w = min(half - off, half + off)
        sdd, sod = float(self.sdd_mm), float(self.sod_mm)
        return sod * w / math.hypot(sdd, w) if w > 0 else 0.0

    def as_projection_geometry(self) -> ProjectionGeometry:
        """The same views as a `ProjectionGeometry` (differentiable in this geometry's leaves)."""
        src, centre, e_u, e_v = jax.vmap(lambda v: self.pose(v, jnp.result_type(float)))(
            jnp.arange(self.n_views)
        )
        return ProjectionGeometry(
            sources_mm=src,
            detector_centers_mm=centre,
            u_axes=e_u,
            v_axes=e_v,
            du_mm=self.du_mm,
            dv_mm=self.dv_mm,
            n_u=self.n_u,
            n_v=self.n_v,
        )


def _vectors(where: str, field: str, value: Any, n: int | None) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3 or a.shape[0] < 1 or (n is not None and a.shape[0] != n):
        want = "(views, 3) with views ≥ 1" if n is None else f"({n}, 3)"
        raise ValueError(f"{where}: `{field}` must have shape {want} (got {a.shape})")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: `{field}` must be finite")
    return a


def _rotation(rotvec: Array) -> Array:
    """Rodrigues' formula, differentiable at the zero rotation (series for small angles)."""
    theta2 = jnp.sum(rotvec * rotvec)
    small = theta2 < 1e-8
    safe2 = jnp.where(small, 1.0, theta2)
    theta = jnp.sqrt(safe2)
    a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(theta) / theta)
    b = jnp.where(small, 0.5 - theta2 / 24.0, (1.0 - jnp.cos(theta)) / safe2)
    x, y, z = rotvec[0], rotvec[1], rotvec[2]
    zero = jnp.zeros_like(x)
    k = jnp.stack([jnp.stack([zero, -z, y]), jnp.stack([z, zero, -x]), jnp.stack([-y, x, zero])])
    return jnp.eye(3, dtype=rotvec.dtype) + a * k + b * (k @ k)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProjectionGeometry(_Projective):
    """Arbitrary per-view poses of a point source and a flat detector (C-arms, tomosynthesis).

    View ``k``'s pixel ``(i, j)`` sits at
    ``detector_centers_mm[k] + (i - (n_u - 1) / 2) du_mm u_axes[k] + (j - (n_v - 1) / 2) dv_mm
    v_axes[k]``; its ray runs from ``sources_mm[k]`` to that point. All poses are leaves, so
    ``jax.grad`` reaches them (2D/3D registration, see `transformed`).

    Attributes:
        sources_mm: ``(views, 3)`` source positions (world mm).
        detector_centers_mm: ``(views, 3)`` detector centres (world mm).
        u_axes, v_axes: ``(views, 3)`` unit detector axes (orthogonal).
        du_mm, dv_mm: pixel pitches (mm).
        n_u, n_v: detector pixels (static).
    """

    sources_mm: Float[Array, "views 3"]
    detector_centers_mm: Float[Array, "views 3"]
    u_axes: Float[Array, "views 3"]
    v_axes: Float[Array, "views 3"]
    du_mm: Float[Array, ""]
    dv_mm: Float[Array, ""]
    n_u: int = dataclasses.field(metadata={"static": True})
    n_v: int = dataclasses.field(metadata={"static": True})

    @property
    def n_views(self) -> int:
        return int(self.sources_mm.shape[0])

    @classmethod
    def create(
        cls,
        *,
        sources_mm: Any,
        detector_centers_mm: Any,
        u_axes: Any,
        v_axes: Any,
        n_u: int,
        n_v: int,
        du_mm: float,
        dv_mm: float,
    ) -> ProjectionGeometry:
        """Validated constructor.

        Args:
            sources_mm: ``(views, 3)`` source positions (mm).
            detector_centers_mm: ``(views, 3)`` detector centres (mm).
            u_axes, v_axes: ``(views, 3)`` detector axes; normalised here, must be orthogonal.
            n_u, n_v: detector pixels (≥ 1).
            du_mm, dv_mm: pixel pitches (mm, > 0).

        Raises:
            ValueError, TypeError: wrong shapes, no views, non-finite values, zero or
                non-orthogonal axes, a source lying in its detector's plane.
        """
        where = _where("ProjectionGeometry")
        src = _vectors(where, "sources_mm", sources_mm, None)
        n = src.shape[0]
        centre = _vectors(where, "detector_centers_mm", detector_centers_mm, n)
        axes = []
        for field, value in (("u_axes", u_axes), ("v_axes", v_axes)):
            a = _vectors(where, field, value, n)
            norm = np.linalg.norm(a, axis=1)
            if np.any(norm < 1e-12):
                raise ValueError(f"{where}: `{field}` must be non-zero vectors")
            axes.append(a / norm[:, None])
        e_u, e_v = axes
        cos = np.abs(np.sum(e_u * e_v, axis=1))
        if np.any(cos > 1e-6):
            k = int(np.argmax(cos))
            raise ValueError(
                f"{where}: `u_axes` and `v_axes` must be orthogonal (view {k}: |cos| = "
                f"{cos[k]:.3g})"
            )
        normal = np.cross(e_u, e_v)
        dist = np.abs(np.sum((centre - src) * normal, axis=1))
        if np.any(dist < 1e-6):
            k = int(np.argmin(dist))
            raise ValueError(
                f"{where}: view {k}'s source lies in its detector's plane (distance "
                f"{dist[k]:.3g} mm); move `sources_mm` or `detector_centers_mm`"
            )
        return cls(
            sources_mm=src,
            detector_centers_mm=centre,
            u_axes=e_u,
            v_axes=e_v,
            du_mm=_scalar(_positive(where, "du_mm", du_mm)),
            dv_mm=_scalar(_positive(where, "dv_mm", dv_mm)),
            n_u=_count(where, "n_u", n_u),
            n_v=_count(where, "n_v", n_v),
        )

    @classmethod
    def from_projection_matrices(
        cls,
        matrices: Any,
        *,
        n_u: int,
        n_v: int,
        du_mm: float,
        dv_mm: float | None = None,
    ) -> ProjectionGeometry:
        """Poses from ``(views, 3, 4)`` projection matrices (e.g. a calibrated C-arm).

        Each matrix maps homogeneous world points (mm) to homogeneous detector indices
        ``(i, j, 1)``: ``i`` along u (the projections' second axis), ``j`` along v, pixel centres at
        integers. The source is the matrix's null vector; the detector lies at distance
        ``f_u du_mm`` from it, ``f_u`` the focal length in pixels from an RQ decomposition.

        Args:
            matrices: ``(views, 3, 4)`` (a single ``(3, 4)`` is one view).
            n_u, n_v: detector pixels.
            du_mm: pixel pitch along u (mm); fixes the scale (the matrices are projective).
            dv_mm: pitch along v (default: from the matrix's aspect ratio, ``du f_u / f_v``).

        Raises:
            ValueError: wrong shape, a singular matrix, a skewed (non-rectangular) detector, or a
                ``dv_mm`` that disagrees with the matrix's aspect ratio.
        """
        import scipy.linalg

        where = "medphys.simulators.ProjectionGeometry.from_projection_matrices"
        p = np.asarray(matrices, dtype=np.float64)
        if p.ndim == 2:
            p = p[None]
        if p.ndim != 3 or p.shape[1:] != (3, 4) or p.shape[0] < 1 or not np.all(np.isfinite(p)):
            raise ValueError(
                f"{where}: `matrices` must be finite with shape (views, 3, 4), views ≥ 1 "
                f"(got {p.shape})"
            )
        du = _positive(where, "du_mm", du_mm)
        nu, nv = _count(where, "n_u", n_u), _count(where, "n_v", n_v)
        srcs, centres, eus, evs = [], [], [], []
        dv_out = None if dv_mm is None else _positive(where, "dv_mm", dv_mm)
        for k in range(p.shape[0]):
            m = p[k, :, :3]
            if not abs(np.linalg.det(m)) > 1e-12 * np.max(np.abs(m)) ** 3:
                raise ValueError(f"{where}: matrix {k} is singular (a source at infinity)")
            kk, r = scipy.linalg.rq(m)
            signs = np.sign(np.diag(kk))
            kk, r = kk * signs[None, :], signs[:, None] * r
            kk = kk / kk[2, 2]
            if abs(kk[0, 1]) > 1e-6 * abs(kk[0, 0]):
                raise ValueError(
                    f"{where}: matrix {k} has a skewed detector (K[0,1]={kk[0, 1]:.3g})"
                )
            src = -np.linalg.solve(m, p[k, :, 3])
            dist = kk[0, 0] * du
            dv = dist / kk[1, 1]
            if dv_out is None:
                dv_out = dv
            elif abs(dv - dv_out) > 1e-6 * dv_out:
                raise ValueError(
                    f"{where}: `dv_mm` ({dv_out:g}) disagrees with matrix {k}'s aspect ratio "
                    f"(f_u/f_v gives dv_mm={dv:g})"
                )
            # the principal axis points from the source toward the scene (positive depth)
            e_u, e_v, n = r[0], r[1], r[2]
            if np.linalg.det(p[k, :, :3]) * np.linalg.det(r) < 0:
                n = -n
            cu, cv = kk[0, 2], kk[1, 2]
            centre = (
                src + dist * n + ((nu - 1) / 2 - cu) * du * e_u + ((nv - 1) / 2 - cv) * dv * e_v
            )
            srcs.append(src)
            centres.append(centre)
            eus.append(e_u)
            evs.append(e_v)
        return cls.create(
            sources_mm=np.stack(srcs),
            detector_centers_mm=np.stack(centres),
            u_axes=np.stack(eus),
            v_axes=np.stack(evs),
            n_u=nu,
            n_v=nv,
            du_mm=du,
            dv_mm=dv_out,
        )

    def pose(self, view: int | Array, dtype: Any = jnp.float32) -> tuple[Array, ...]:
        return (
            jnp.asarray(self.sources_mm, dtype)[view],
            jnp.asarray(self.detector_centers_mm, dtype)[view],
            _unit(jnp.asarray(self.u_axes, dtype)[view]),
            _unit(jnp.asarray(self.v_axes, dtype)[view]),
        )

    def transformed(
        self, rotation_rad: Float[Array, " 3"], translation_mm: Float[Array, " 3"]
    ) -> ProjectionGeometry:
        """All views moved by a rigid transform ``x -> R x + t`` (a 6-DoF pose).

        ``R`` is the rotation by the vector ``rotation_rad`` (axis × angle, about the world
        origin). Differentiable in both, for 2D/3D registration: moving the imaging system by
        ``(R, t)`` is moving the patient by the inverse transform.
        """
        rot = _rotation(jnp.asarray(rotation_rad))
        t = jnp.asarray(translation_mm, rot.dtype)
        return dataclasses.replace(
            self,
            sources_mm=jnp.asarray(self.sources_mm, rot.dtype) @ rot.T + t[None, :],
            detector_centers_mm=jnp.asarray(self.detector_centers_mm, rot.dtype) @ rot.T
            + t[None, :],
            u_axes=jnp.asarray(self.u_axes, rot.dtype) @ rot.T,
            v_axes=jnp.asarray(self.v_axes, rot.dtype) @ rot.T,
        )
