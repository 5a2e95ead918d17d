"""Scanner geometries, each lowered to rays so that one projector serves them all.

Conventions (world = RAS+ millimetres, see `medphys._types`)
    The gantry turns about an axis parallel to world z (the patient's long axis, +z superior)
    through ``isocenter_mm = (x, y)``. The view angle ``theta`` (radians) turns the source
    counter-clockwise seen from +z (right-handed about +z):

    - beam direction ``d(theta) = (-sin theta, cos theta, 0)`` (source → detector);
    - detector axis ``e_u(theta) = (cos theta, sin theta, 0)``; rows (``v``) run along +z;
    - ``theta = 0``: source at -y (posterior), beam toward +y (anterior), ``u`` along +x (the
      patient's right); ``theta = pi/2``: source at +x, beam toward -x.

    ``(e_u, d, e_z)`` is right-handed. For the parallel beam the detector reading at ``(theta, u)``
    is the Radon transform ``R f(theta, s = u)`` with normal ``(cos theta, sin theta)``.

Detector
    ``n_u`` pixels of pitch ``du_mm`` centred on the central ray, shifted by ``u_offset_mm``:
    pixel ``i`` sits at ``u_i = (i - (n_u - 1) / 2) * du_mm + u_offset_mm``. ``n_rows`` rows of
    pitch ``dv_mm`` are stacked along z around ``z_mm``; each row is an independent 2-D (planar)
    geometry, so rays never leave their row's z plane (no cone angle). ``n_rows=None`` means one
    row per slice of the volume being scanned (`with_rows_for`). Projections have shape
    ``(views, u, v)`` (``v`` = rows).

Counts (``n_u``, ``n_rows``) are static fields; angles, distances, pitches and offsets are leaves,
so ``jax.grad`` reaches them (pose and calibration estimation). Build geometries with ``create``,
which validates; the plain constructors do not. Checks that need the volume (source outside it,
detector covering it) run in the projector and simulator.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import number as _finite

__all__ = [
    "AbstractGeometry",
    "ConeBeam",
    "FanBeam",
    "ParallelBeam",
    "ProjectionGeometry",
    "Rays",
    "z_aligned",
]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rays:
    """A bundle of rays ``origins + t * directions`` for ``t`` in ``[t_min, t_max]``.

    Attributes:
        origins: ``(*batch, 3)`` world points (mm).
        directions: ``(*batch, 3)`` unit vectors.
        t_min, t_max: ``(*batch,)`` span along each ray (mm); ``-inf``/``+inf`` for unbounded
            (parallel-beam) rays, which the projector clips to the volume.
    """

    origins: Float[Array, "*batch 3"]
    directions: Float[Array, "*batch 3"]
    t_min: Float[Array, "*batch"]
    t_max: Float[Array, "*batch"]


def _where(name: str) -> str:
    return f"medphys.simulators.{name}.create"


def _positive(where: str, field: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: `{field}` must be a number (got {value!r})") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(
            f"{where}: `{field}` must be a positive finite length in mm (got {value!r})"
        )
    return v


def _count(where: str, field: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: `{field}` must be an integer ≥ 1 (got {value!r})")
    if value < 1:
        raise ValueError(f"{where}: `{field}` must be ≥ 1 (got {value})")
    return int(value)


def _angles(
    where: str,
    n_views: Any,
    angles_rad: Any,
    start_rad: Any,
    arc_rad: Any,
    default_arc: float,
    max_turns: float = 1.0,
) -> np.ndarray:
    if angles_rad is not None:
        a = np.asarray(angles_rad, dtype=np.float64)
        if a.ndim != 1 or a.size < 1:
            raise ValueError(
                f"{where}: `angles_rad` must be a 1-D array with at least one angle "
                f"(got shape {a.shape})"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{where}: `angles_rad` must be finite")
        if n_views is not None and _count(where, "n_views", n_views) != a.size:
            raise ValueError(
                f"{where}: `n_views` ({n_views}) disagrees with len(angles_rad) ({a.size}); "
                "give one of them"
            )
        return a
    if n_views is None:
        raise ValueError(f"{where}: give `n_views` (≥ 1) or `angles_rad`")
    n = _count(where, "n_views", n_views)
    start = _finite(where, "start_rad", start_rad)
    arc = default_arc if arc_rad is None else _finite(where, "arc_rad", arc_rad)
    if arc <= 0 or arc > max_turns * 2 * math.pi + 1e-9:
        allowed = "(0, 2π]" if max_turns == 1.0 else "> 0"
        raise ValueError(f"{where}: `arc_rad` must be in {allowed} (got {arc_rad!r})")
    return start + arc * np.arange(n, dtype=np.float64) / n


def _rows(where: str, n_rows: Any, dv_mm: Any, z_mm: Any) -> tuple[int | None, float, float]:
    rows = _count(where, "n_rows", n_rows, allow_none=True)
    if rows is None:
        if dv_mm is not None:
            raise ValueError(
                f"{where}: `dv_mm` needs `n_rows` (got n_rows=None, which means one row per "
                f"volume slice, and dv_mm={dv_mm!r})"
            )
        return None, 0.0, 0.0
    dv = 1.0 if dv_mm is None else _positive(where, "dv_mm", dv_mm)
    return rows, dv, _finite(where, "z_mm", z_mm)


def _flag(where: str, field: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: `{field}` must be True or False (got {value!r})")
    return bool(value)


def _isocenter(where: str, isocenter_mm: Any) -> np.ndarray:
    c = np.asarray(isocenter_mm, dtype=np.float64)
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise ValueError(
            f"{where}: `isocenter_mm` must be 2 finite numbers (x, y) (got {isocenter_mm!r})"
        )
    return c


def _scalar(x: float) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def z_aligned(affine: Any) -> bool:
    """Whether a (concrete) voxel→world affine's third axis is the world z axis and its first two
    axes lie in z planes, to 1e-5 of the voxel size (float32 NIfTI round trips stay aligned)."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    tol = 1e-5 * float(np.max(np.abs(a)))
    return bool(np.all(np.abs(a[2, :2]) <= tol) and np.all(np.abs(a[:2, 2]) <= tol))


class AbstractGeometry(abc.ABC):
    """What every geometry provides: view count, detector size, and a lowering to rays.

    Planar geometries (``planar = True``) also provide `planar_rays` and `row_z_mm`: their rays
    lie in z planes, which the projector exploits (all slices at once, z as a batch axis).
    """

    planar: ClassVar[bool] = False
    angles: Any
    n_u: int
    n_rows: int | None

    @property
    def n_views(self) -> int:
        return int(self.angles.shape[0])

    @property
    def detector_shape(self) -> tuple[int, int | None]:
        """``(n_u, n_rows)``; ``n_rows`` is None until resolved against a volume."""
        return (self.n_u, self.n_rows)

    @abc.abstractmethod
    def rays(self, view: int | Array, dtype: Any = jnp.float32) -> Rays:
        """Rays of one view in world space, batch shape ``(n_u, n_rows)``."""
        ...

    @abc.abstractmethod
    def with_rows_for(self, like: Any) -> AbstractGeometry:
        """This geometry with one detector row per slice of ``like`` (when ``n_rows`` is None)."""
        ...


class _Planar(AbstractGeometry):
    """Shared code of the planar (rows stacked along z) geometries."""

    planar: ClassVar[bool] = True
    du_mm: Any
    u_offset_mm: Any
    dv_mm: Any
    z_mm: Any
    isocenter_mm: Any

    def u_mm(self, dtype: Any = jnp.float32) -> Float[Array, " u"]:
        """Detector pixel centres along u (mm)."""
        i = jnp.arange(self.n_u, dtype=dtype) - (self.n_u - 1) / 2
        return i * jnp.asarray(self.du_mm, dtype) + jnp.asarray(self.u_offset_mm, dtype)

    def row_z_mm(self, dtype: Any = jnp.float32) -> Float[Array, " v"]:
        """World z of each detector row (mm)."""
        if self.n_rows is None:
            raise ValueError(
                f"medphys.simulators.{type(self).__name__}: `n_rows` is None (one row per volume "
                "slice); call `with_rows_for(volume)` first"
            )
        r = jnp.arange(self.n_rows, dtype=dtype) - (self.n_rows - 1) / 2
        return r * jnp.asarray(self.dv_mm, dtype) + jnp.asarray(self.z_mm, dtype)

    def _edges_mm(self) -> tuple[float, float]:
        """Outer pixel edges of the detector along u (mm), from concrete values."""
        half = 0.5 * self.n_u * float(self.du_mm)
        off = float(self.u_offset_mm)
        return off - half, off + half

    def _half_width_mm(self) -> float:
        """The smaller of the two detector half-widths about the central ray (mm)."""
        lo, hi = self._edges_mm()
        return min(-lo, hi)

    def frame(self, view: int | Array, dtype: Any = jnp.float32) -> tuple[Array, Array]:
        """In-plane unit vectors ``(e_u, d)`` of one view, each ``(2,)``."""
        theta = jnp.asarray(self.angles, dtype)[view]
        c, s = jnp.cos(theta), jnp.sin(theta)
        return jnp.stack([c, s]), jnp.stack([-s, c])

    @abc.abstractmethod
    def planar_rays(self, view: int | Array, dtype: Any = jnp.float32) -> Rays:
        """The in-plane rays of one view (shared by all rows): batch ``(n_u,)``, 2-D vectors."""
        ...

    @abc.abstractmethod
    def detector_u(
        self, view: int | Array, xy: Float[Array, "*batch 2"], dtype: Any = jnp.float32
    ) -> tuple[Array, Array]:
        """Where the ray through each point meets the detector, for one view.

        Returns:
            ``(u_mm, depth_mm)``: the detector coordinate and the point's distance along the
            central ray from the isocentre, positive toward the detector.
        """
        ...

    def with_rows_for(self, like: Any) -> _Planar:
        """One detector row per slice of ``like`` (a `Volume`/`LabeledVolume` whose z axis is the
        world z axis). Returns ``self`` when ``n_rows`` is already set."""
        if self.n_rows is not None:
            return self
        a = np.asarray(like.affine, dtype=np.float64)
        if not z_aligned(a):
            raise ValueError(
                f"medphys.simulators.{type(self).__name__}: `n_rows` is None (one row per slice) "
                "but the volume's third axis is not the world z axis; give `n_rows`, `dv_mm` "
                "and `z_mm` explicitly"
            )
        nz = int(like.shape[2])
        z_centre = a[2, 2] * (nz - 1) / 2 + a[2, 3]
        return dataclasses.replace(
            self, n_rows=nz, dv_mm=_scalar(abs(a[2, 2])), z_mm=_scalar(z_centre)
        )

    def _iso_like(self, xy: Array, dtype: Any) -> Array:
        return jnp.asarray(self.isocenter_mm, dtype).reshape((1,) * (xy.ndim - 1) + (2,))

    def _lift(self, flat: Rays, dtype: Any) -> Rays:
        """Planar rays (n_u,) → 3-D rays (n_u, n_rows)."""
        z = self.row_z_mm(dtype)
        nu, nv = self.n_u, z.shape[0]
        o = jnp.concatenate(
            [
                jnp.broadcast_to(flat.origins[:, None, :], (nu, nv, 2)),
                jnp.broadcast_to(z[None, :, None], (nu, nv, 1)),
            ],
            axis=-1,
        )
        d = jnp.concatenate(
            [
                jnp.broadcast_to(flat.directions[:, None, :], (nu, nv, 2)),
                jnp.zeros((nu, nv, 1), dtype),
            ],
            axis=-1,
        )
        return Rays(
            o,
            d,
            jnp.broadcast_to(flat.t_min[:, None], (nu, nv)),
            jnp.broadcast_to(flat.t_max[:, None], (nu, nv)),
        )

    def rays(self, view: int | Array, dtype: Any = jnp.float32) -> Rays:
        """Rays of one view in world space, batch ``(n_u, n_rows)``."""
        return self._lift(self.planar_rays(view, dtype), dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ParallelBeam(_Planar):
    """Parallel beam; 2-D (one row) or a stack of rows along z.

    Attributes:
        angles: ``(views,)`` view angles (rad).
        du_mm: detector pixel pitch along u (mm).
        u_offset_mm: detector shift along u (mm), e.g. a quarter pixel.
        dv_mm: row pitch along z (mm); 0 while ``n_rows`` is None.
        z_mm: z of the centre of the row stack (mm).
        isocenter_mm: ``(2,)`` x, y of the rotation axis (mm).
        sdd_mm: nominal source–detector distance (mm), used only for the inverse-square photon
            fluence when simulating counts; the rays themselves are parallel.
        n_u: detector pixels along u (static).
        n_rows: detector rows (static); None: one per slice of the scanned volume.
    """

    angles: Float[Array, " views"]
    du_mm: Float[Array, ""]
    u_offset_mm: Float[Array, ""]
    dv_mm: Float[Array, ""]
    z_mm: Float[Array, ""]
    isocenter_mm: Float[Array, " 2"]
    sdd_mm: Float[Array, ""]
    n_u: int = dataclasses.field(metadata={"static": True})
    n_rows: int | None = dataclasses.field(default=None, metadata={"static": True})

    @classmethod
    def create(
        cls,
        *,
        n_u: int,
        du_mm: float,
        n_views: int | None = None,
        angles_rad: Any = None,
        start_rad: float = 0.0,
        arc_rad: float | None = None,
        u_offset_mm: float = 0.0,
        n_rows: int | None = None,
        dv_mm: float | None = None,
        z_mm: float = 0.0,
        isocenter_mm: tuple[float, float] = (0.0, 0.0),
        sdd_mm: float = 1000.0,
    ) -> ParallelBeam:
        """Validated constructor.

        Args:
            n_u: detector pixels (≥ 1).
            du_mm: pixel pitch (mm, > 0).
            n_views: number of views, spread uniformly over ``arc_rad`` (default π) from
                ``start_rad``; or give ``angles_rad`` explicitly.
            u_offset_mm: detector shift along u (mm).
            n_rows: rows along z; None (default) means one row per slice of the scanned volume.
            dv_mm: row pitch (mm, default 1; only with ``n_rows``).
            z_mm: z of the row stack's centre (mm).
            isocenter_mm: x, y of the rotation axis (mm).
            sdd_mm: nominal source–detector distance for the photon fluence (mm).

        Raises:
            ValueError, TypeError: a count below 1, a non-positive pitch or distance, angles that
                are not a finite 1-D array.

        Example:
            >>> g = ParallelBeam.create(n_views=180, n_u=128, du_mm=1.0)
            >>> g.n_views, g.n_u
            (180, 128)
        """
        where = _where("ParallelBeam")
        angles = _angles(where, n_views, angles_rad, start_rad, arc_rad, math.pi)
        rows, dv, z = _rows(where, n_rows, dv_mm, z_mm)
        return cls(
            angles=angles,
            du_mm=_scalar(_positive(where, "du_mm", du_mm)),
            u_offset_mm=_scalar(_finite(where, "u_offset_mm", u_offset_mm)),
            dv_mm=_scalar(dv),
            z_mm=_scalar(z),
            isocenter_mm=_isocenter(where, isocenter_mm),
            sdd_mm=_scalar(_positive(where, "sdd_mm", sdd_mm)),
            n_u=_count(where, "n_u", n_u),
            n_rows=rows,
        )

    def planar_rays(self, view: int | Array, dtype: Any = jnp.float32) -> Rays:
        e_u, d = self.frame(view, dtype)
        iso = jnp.asarray(self.isocenter_mm, dtype)
        u = self.u_mm(dtype)
        origins = iso[None, :] + u[:, None] * e_u[None, :]
        directions = jnp.broadcast_to(d[None, :], (self.n_u, 2))
        inf = jnp.full((self.n_u,), jnp.inf, dtype)
        return Rays(origins, directions, -inf, inf)

    def detector_u(self, view, xy, dtype=jnp.float32):
        e_u, d = self.frame(view, dtype)
        rel = xy - self._iso_like(xy, dtype)
        return rel @ e_u, rel @ d

    @property
    def flux_distance_mm(self) -> Any:
        """Distance used for the inverse-square photon fluence at the detector (mm)."""
        return self.sdd_mm

    def fov_radius_mm(self) -> float:
        """Radius (mm) about the rotation axis that every view's detector covers."""
        return max(self._half_width_mm(), 0.0)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FanBeam(_Planar):
    """Fan beam on a flat (equispaced) detector; 2-D (one row) or a stack of fans along z.

    Each row is an independent fan in its own z plane (no cone angle). ``du_mm`` is the pixel pitch
    on the detector (magnified by ``sdd/sod`` with respect to the isocentre); ``dv_mm`` is the row
    pitch at the isocentre (the slice thickness). The physical detector row is ``dv_mm * sdd/sod``
    high, which the photon-count model uses.

    Attributes:
        angles: ``(views,)`` view angles (rad).
        sod_mm: source–isocentre distance (mm).
        sdd_mm: source–detector distance (mm), > ``sod_mm``.
        du_mm, u_offset_mm, dv_mm, z_mm, isocenter_mm, n_u, n_rows: as in `ParallelBeam`.
    """

    angles: Float[Array, " views"]
    sod_mm: Float[Array, ""]
    sdd_mm: Float[Array, ""]
    du_mm: Float[Array, ""]
    u_offset_mm: Float[Array, ""]
    dv_mm: Float[Array, ""]
    z_mm: Float[Array, ""]
    isocenter_mm: Float[Array, " 2"]
    n_u: int = dataclasses.field(metadata={"static": True})
    n_rows: int | None = dataclasses.field(default=None, metadata={"static": True})
    curved: bool = dataclasses.field(default=False, metadata={"static": True})

    @classmethod
    def create(
        cls,
        *,
        n_u: int,
        du_mm: float,
        sod_mm: float,
        sdd_mm: float,
        n_views: int | None = None,
        angles_rad: Any = None,
        start_rad: float = 0.0,
        arc_rad: float | None = None,
        u_offset_mm: float = 0.0,
        n_rows: int | None = None,
        dv_mm: float | None = None,
        z_mm: float = 0.0,
        isocenter_mm: tuple[float, float] = (0.0, 0.0),
        curved: bool = False,
    ) -> FanBeam:
        """Validated constructor.

        Args:
            n_u: detector pixels (≥ 1).
            du_mm: pixel pitch on the detector (mm, > 0).
            sod_mm: source–isocentre distance (mm, > 0).
            sdd_mm: source–detector distance (mm, > ``sod_mm``).
            n_views: views spread uniformly over ``arc_rad`` (default 2π) from ``start_rad``; or
                give ``angles_rad``.
            u_offset_mm, n_rows, dv_mm, z_mm, isocenter_mm: as in `ParallelBeam.create`.
            curved: False (default) for a flat detector with equispaced pixels; True for an
                equiangular detector on the arc of radius ``sdd_mm`` about the source (third
                generation CT), where ``du_mm`` and ``u_offset_mm`` are arc lengths at that radius
                (fan angle of a pixel ``gamma = u / sdd_mm``).

        Raises:
            ValueError, TypeError: as `ParallelBeam.create`, and ``sdd_mm <= sod_mm``.

        Example:
            >>> g = FanBeam.create(n_views=360, n_u=256, du_mm=1.5, sod_mm=595.0, sdd_mm=1085.6)
            >>> round(g.fan_angle_rad(), 3)
            0.351
        """
        where = _where("FanBeam")
        sod = _positive(where, "sod_mm", sod_mm)
        sdd = _positive(where, "sdd_mm", sdd_mm)
        if sdd <= sod:
            raise ValueError(
                f"{where}: `sdd_mm` must exceed `sod_mm` (got sdd_mm={sdd_mm!r}, sod_mm={sod_mm!r}); "
                "the detector is beyond the isocentre"
            )
        angles = _angles(where, n_views, angles_rad, start_rad, arc_rad, 2 * math.pi)
        rows, dv, z = _rows(where, n_rows, dv_mm, z_mm)
        return cls(
            angles=angles,
            sod_mm=_scalar(sod),
            sdd_mm=_scalar(sdd),
            du_mm=_scalar(_positive(where, "du_mm", du_mm)),
            u_offset_mm=_scalar(_finite(where, "u_offset_mm", u_offset_mm)),
            dv_mm=_scalar(dv),
            z_mm=_scalar(z),
            isocenter_mm=_isocenter(where, isocenter_mm),
            n_u=_count(where, "n_u", n_u),
            n_rows=rows,
            curved=_flag(where, "curved", curved),
        )

    def source_xy(self, view: int | Array, dtype: Any = jnp.float32) -> Float[Array, " 2"]:
        """In-plane source position of one view (mm)."""
        _, d = self.frame(view, dtype)
        return jnp.asarray(self.isocenter_mm, dtype) - jnp.asarray(self.sod_mm, dtype) * d

    def planar_rays(self, view: int | Array, dtype: Any = jnp.float32) -> Rays:
        e_u, d = self.frame(view, dtype)
        src = self.source_xy(view, dtype)
        sdd = jnp.asarray(self.sdd_mm, dtype)
        u = self.u_mm(dtype)
        if self.curved:
            gamma = u / sdd
            delta = sdd * (
                jnp.cos(gamma)[:, None] * d[None, :] + jnp.sin(gamma)[:, None] * e_u[None, :]
            )
        else:
            delta = sdd * d[None, :] + u[:, None] * e_u[None, :]
        length = jnp.sqrt(jnp.sum(delta * delta, axis=-1))
        return Rays(
            jnp.broadcast_to(src[None, :], (self.n_u, 2)),
            delta / length[:, None],
            jnp.zeros((self.n_u,), dtype),
            length,
        )

    def detector_u(self, view, xy, dtype=jnp.float32):
        e_u, d = self.frame(view, dtype)
        rel = xy - self._iso_like(xy, dtype)
        x_u, x_d = rel @ e_u, rel @ d
        sod, sdd = jnp.asarray(self.sod_mm, dtype), jnp.asarray(self.sdd_mm, dtype)
        if self.curved:
            return sdd * jnp.arctan2(x_u, sod + x_d), x_d
        return sdd * x_u / (sod + x_d), x_d

    @property
    def flux_distance_mm(self) -> Any:
        return self.sdd_mm

    def fan_angle_rad(self) -> float:
        """Full fan angle spanned by the detector's outer pixel edges (rad)."""
        lo, hi = self._edges_mm()
        sdd = float(self.sdd_mm)
        if self.curved:
            return (hi - lo) / sdd
        return math.atan(hi / sdd) - math.atan(lo / sdd)

    def fov_radius_mm(self) -> float:
        """Radius (mm) about the rotation axis that every view's fan covers."""
        w = self._half_width_mm()
        sdd, sod = float(self.sdd_mm), float(self.sod_mm)
        if self.curved:
            return sod * math.sin(min(w / sdd, math.pi / 2)) if w > 0 else 0.0
        return sod * w / math.hypot(sdd, w) if w > 0 else 0.0


# the 3-D geometries live in their own module; re-exported here (defined after the shared helpers)
from ._projective import ConeBeam as ConeBeam  # noqa: E402
from ._projective import ProjectionGeometry as ProjectionGeometry  # noqa: E402
from ._projective import _Projective as _Projective  # noqa: E402
