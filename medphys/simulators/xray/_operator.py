"""The projector pair as a prepared operator: plan once on the host, apply purely.

``op = prepare(grid, geometry)`` checks the geometry against the grid, picks the kernel and its
chunking, and (cone beam, projective views) bounds the voxel footprints for the gather adjoint, all
on concrete values. ``op.project(data)`` and ``op.backproject(projections)`` then take plain arrays
of the grid's shape and are pure JAX: they run unchanged under ``jax.jit``, ``jax.vmap`` (a batch of
volumes on one grid) and ``jax.grad``. The operator is a pytree whose only leaves are the
geometry's arrays, so it can be passed into a jitted function and differentiated with respect to
the pose (2D/3D registration); its grid and plan are static.

Poses that change inside a traced function go through `Projector.with_geometry`. The derivative
with respect to the pose differentiates the forward sampling and never runs the adjoint, so
registration keeps the forward's speed; a derivative with respect to the *data* under a moved pose
takes the exact scatter transpose, because the gather adjoint's footprint bound was computed for the
prepared pose (see ``_joseph3d_gather``).

`project` and `backproject` (volumes in, arrays or volumes out) are thin wrappers that prepare an
operator and apply it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ...volume import Grid, Volume
from ..geometry import AbstractGeometry
from ._projector import Joseph, Trilinear, _backproject_jit, _make_plan, _Plan, _project_jit
from ._projector import check_geometry as _check_geometry

__all__ = ["Projector", "backproject", "prepare_projector", "project"]


def _concrete_geometry(where: str, geometry: Any) -> Any:
    """The geometry with its leaves as host arrays; a clear error for traced leaves."""
    try:
        return jax.tree_util.tree_map(np.asarray, geometry)
    except jax.errors.TracerArrayConversionError:
        raise TypeError(
            f"{where}: the geometry must be concrete when an operator is prepared (it is planned "
            "on the host); prepare outside jax.jit and move the pose inside with "
            "`op.with_geometry(geometry)`"
        ) from None


def _check_grid(where: str, grid: Any) -> Grid:
    if not isinstance(grid, Grid):
        raise TypeError(
            f"{where}: `grid` must be a medphys.Grid (`volume.grid`, or "
            f"medphys.Grid.create(shape, spacing_mm=...)) (got {type(grid).__name__})"
        )
    return grid


def prepare_projector(
    grid: Grid,
    geometry: AbstractGeometry,
    *,
    sampling: Joseph | Trilinear | None = None,
    views_per_batch: int | None = None,
    batch: int = 1,
    where: str = "medphys.simulators.xray.prepare",
) -> Projector:
    """`Projector` for ``geometry`` on ``grid`` (see `medphys.simulators.xray.prepare`)."""
    grid = _check_grid(where, grid)
    if not isinstance(geometry, AbstractGeometry):
        _check_geometry(where, grid, geometry)  # raises the TypeError
    host = _concrete_geometry(where, geometry)
    _check_geometry(where, grid, host)
    plan = _make_plan(
        grid.shape,
        grid.affine,
        host,
        batch=batch,
        views_per_batch=views_per_batch,
        where=where,
        sampling=sampling,
    )
    return Projector(grid=grid, plan=plan, geometry=jax.tree_util.tree_map(jnp.asarray, host))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Projector:
    """Line integrals along a geometry's rays on a fixed grid, and the exact adjoint.

    Build with `medphys.simulators.xray.prepare`. Attributes:
        grid: the voxel grid (static).
        plan: the kernel and chunking chosen on the host (static).
        geometry: the geometry (leaves: angles, distances, poses; differentiable).

    Example:
        >>> op = xray.prepare(volume.grid, geometry)
        >>> sino = jax.jit(op.project)(volume.data)
        >>> grads = jax.grad(lambda x: jnp.sum(op.project(x) ** 2))(volume.data)
        >>> batch = jax.vmap(op.project)(stack_of_volumes)   # (cases, views, u, v)
    """

    geometry: AbstractGeometry
    grid: Grid = dataclasses.field(metadata={"static": True})
    plan: _Plan = dataclasses.field(metadata={"static": True})

    @property
    def projection_shape(self) -> tuple[int, int, int]:
        """``(views, u, v)`` of `project`'s output."""
        g = self.geometry
        rows = self.grid.shape[2] if g.n_rows is None else g.n_rows
        return (g.n_views, g.n_u, rows)

    def project(self, data: Float[Array, "x y z"]) -> Float[Array, "views u v"]:
        """Line integrals of ``data`` (volume units × mm) along every ray.

        Args:
            data: values on the grid, shape ``grid.shape``; integer data is read as float32.

        Returns:
            ``(views, u, v)`` in the data's floating dtype.

        Raises:
            ValueError: ``data`` is not of the grid's shape (checked when traced).
        """
        self.grid.check("medphys.simulators.xray.Projector.project", "data", data)
        x = jnp.asarray(data)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        return _project_jit(self.plan, x, jnp.asarray(self.grid.affine, x.dtype), self.geometry)

    def backproject(self, projections: Float[Array, "views u v"]) -> Float[Array, "x y z"]:
        """The exact adjoint of `project`: ``<project(x), y> == <x, backproject(y)>``.

        Args:
            projections: ``projection_shape`` array.

        Returns:
            ``grid.shape`` array in the projections' floating dtype (the matched, unfiltered
            adjoint; for images use ``medphys.simulators.ct``).

        Raises:
            ValueError: ``projections`` has another shape (checked when traced).
        """
        shape = tuple(getattr(projections, "shape", ()))
        if shape != self.projection_shape:
            raise ValueError(
                "medphys.simulators.xray.Projector.backproject: `projections` must have shape "
                f"{self.projection_shape} (views, u, v) (got {shape}); map over a batch with "
                "jax.vmap"
            )
        y = jnp.asarray(projections)
        if not jnp.issubdtype(y.dtype, jnp.floating):
            y = y.astype(jnp.float32)
        return _backproject_jit(self.plan, y, jnp.asarray(self.grid.affine, y.dtype), self.geometry)

    def with_geometry(self, geometry: AbstractGeometry) -> Projector:
        """The same operator along another pose of the same structure (view count, detector size),
        e.g. a pose traced for its gradient. The adjoint becomes the scatter transpose, which is
        exact for any pose; the pose derivative itself never runs the adjoint.

        Raises:
            ValueError: the geometry's type, view count or detector shape differ.
        """
        old, new = self.geometry, geometry
        if type(new) is not type(old) or (new.n_views, new.n_u, new.n_rows) != (
            old.n_views,
            old.n_u,
            old.n_rows,
        ):
            raise ValueError(
                "medphys.simulators.xray.Projector.with_geometry: `geometry` must be a "
                f"{type(old).__name__} with n_views={old.n_views}, n_u={old.n_u}, "
                f"n_rows={old.n_rows} (got {type(new).__name__} with "
                f"n_views={new.n_views}, n_u={new.n_u}, n_rows={new.n_rows})"
            )
        return Projector(
            grid=self.grid, plan=dataclasses.replace(self.plan, gather=None), geometry=new
        )


def project(
    volume: Volume,
    geometry: AbstractGeometry,
    *,
    views_per_batch: int | None = None,
    sampling: Joseph | Trilinear | None = None,
) -> Float[Array, "views u v"]:
    """Line integrals of a volume along the geometry's rays (``prepare(volume.grid, geometry)
    .project(volume.data)``).

    Args:
        volume: the volume; its affine places the voxels. Values are integrated along each ray in
            world millimetres, so attenuation in 1/mm gives dimensionless line integrals.
        geometry: a `ParallelBeam` or `FanBeam` (``n_rows=None``: one row per slice), a
            `ConeBeam` or a `ProjectionGeometry`.
        views_per_batch: views computed together (memory ∝ this); default from a ~64 MB budget.
        sampling: `Joseph()` (default) or `Trilinear()`.

    Returns:
        ``(views, u, v)`` line integrals (volume units × mm), in the volume's dtype.

    Raises:
        ValueError: the source passes through the volume, the detector misses it, or rows are
            unresolved on an oblique volume.

    Planar geometries on volumes whose third axis is the world z axis use Joseph's method with z as
    a batch axis (fast path); other cases use 3-D Joseph (or trilinear sampling when asked). The
    volume's affine is static, so these choices are made on the host even inside ``jax.jit``.

    ``jax.grad`` through `project` runs `backproject`: voxel-driven (a gather, about the cost of
    the forward) for cone-beam and projective geometries. A geometry traced inside a user's
    ``jax.jit`` or ``jax.grad`` (a pose being optimised) is not checked and is projected like
    `Projector.with_geometry`; prepare the operator once (`medphys.simulators.xray.prepare`) in
    training loops.

    Example:
        >>> vol = Volume.create(np.ones((32, 32, 4), np.float32), spacing_mm=1.0)
        >>> g = ParallelBeam.create(n_views=90, n_u=48, du_mm=1.0)
        >>> project(vol, g).shape
        (90, 48, 4)
    """
    where = "medphys.simulators.xray.project"
    op = _operator_for(where, volume, geometry, views_per_batch, sampling)
    return op.project(volume.data)


def backproject(
    projections: Float[Array, "views u v"],
    geometry: AbstractGeometry,
    *,
    like: Any,
    views_per_batch: int | None = None,
    sampling: Joseph | Trilinear | None = None,
) -> Volume:
    """The exact adjoint of `project`: ``<project(x), y> == <x, backproject(y)>``.

    Args:
        projections: ``(views, u, v)``, as returned by `project` for this geometry.
        geometry: the geometry used to project.
        like: a `Volume`, `LabeledVolume` or `Grid` giving the output grid (shape and affine).
        views_per_batch, sampling: as in `project`.

    Returns:
        `Volume` on ``like``'s grid, in the projections' dtype. This is the matched (unfiltered)
        adjoint, for gradients and iterative reconstruction; for images use
        `medphys.simulators.ct.fbp`.

    Raises:
        ValueError: ``projections`` has the wrong shape for the geometry, or as in `project`.
    """
    where = "medphys.simulators.xray.backproject"
    op = _operator_for(where, like, geometry, views_per_batch, sampling)
    shape = tuple(getattr(projections, "shape", ()))
    if shape != op.projection_shape:
        raise ValueError(
            f"{where}: `projections` must have shape {op.projection_shape} (got {shape})"
        )
    return Volume(data=op.backproject(projections), affine=op.grid.affine)


def _operator_for(
    where: str, like: Any, geometry: Any, views_per_batch: Any, sampling: Any
) -> Projector:
    """The wrappers' operator: prepared on the host, or moved to a traced pose."""
    if not isinstance(geometry, AbstractGeometry):
        _check_geometry(where, like, geometry)  # raises the TypeError
    grid = like if isinstance(like, Grid) else getattr(like, "grid", None)
    if grid is None:
        raise TypeError(
            f"{where}: expected a Volume, LabeledVolume or Grid (got {type(like).__name__})"
        )
    try:
        host = jax.tree_util.tree_map(np.asarray, geometry)
    except jax.errors.TracerArrayConversionError:
        # a pose traced by the caller: plan on the structure, without host checks of its values
        plan = _make_plan(
            grid.shape,
            grid.affine,
            geometry,
            views_per_batch=views_per_batch,
            where=where,
            sampling=sampling,
            concrete=False,
        )
        return Projector(grid=grid, plan=plan, geometry=geometry)
    return prepare_projector(
        grid, host, sampling=sampling, views_per_batch=views_per_batch, where=where
    )
