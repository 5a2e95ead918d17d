"""Line integrals of a field along the rays of any medphys geometry.

Every geometry lowers to rays (`AbstractGeometry.rays`); `trace_rays` maps them once, on the host,
into the field's normalised box and clips each to the box (and to the ray's own span), so a ray is
kept as an entry point ``a``, a direction ``b`` in box units per millimetre and a chord length
``L`` (mm). `integrate` then samples ``n`` points per ray on the chord only, stratified:

    ∫ μ ≈ (L / n) Σ_k μ(a + (k + ξ_k) L/n · b),   ξ_k ~ U[0, 1) when training, ξ_k = ½ otherwise,

a midpoint rule at evaluation (error O((L/n)²) for smooth μ) and an unbiased estimate of it when
training. The sample budget is fixed per ray (static shapes) and must give at least one sample per
voxel along the longest chord of the domain that any ray takes (`min_samples`).

`render(field, geometry)` returns the ``(views, u, v)`` array that `medphys.simulators.xray.project`
returns for the same geometry, in the same unit (1/mm × mm).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from ..simulators.geometry import AbstractGeometry
from ..volume import Grid
from ._fields import AbstractField, world_to_unit

__all__ = ["RayTable", "integrate", "min_samples", "render", "trace_rays"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RayTable:
    """Rays clipped to a domain's box, flattened over ``(views, u, v)``.

    Attributes:
        entry: ``(n, 3)`` normalised box coordinates where each ray enters the box.
        direction: ``(n, 3)`` box units per millimetre along the ray.
        length_mm: ``(n,)`` chord length inside the box (0 for rays that miss it).
        time_s: ``(n,)`` acquisition time of each ray's view (s; 0 when not given).
        shape: ``(views, u, v)`` of the projections the rays came from (static).
        domain: the box's grid (static).
    """

    entry: Float[Array, "n 3"]
    direction: Float[Array, "n 3"]
    length_mm: Float[Array, " n"]
    time_s: Float[Array, " n"]
    shape: tuple[int, int, int] = dataclasses.field(metadata={"static": True})
    domain: Grid = dataclasses.field(metadata={"static": True})

    @property
    def n_rays(self) -> int:
        return int(self.length_mm.shape[0])

    def take(self, index: Array) -> RayTable:
        """The rays at ``index`` (any integer array); ``shape`` then no longer applies."""
        return dataclasses.replace(
            self,
            entry=self.entry[index],
            direction=self.direction[index],
            length_mm=self.length_mm[index],
            time_s=self.time_s[index],
        )


def trace_rays(geometry: AbstractGeometry, domain: Grid, *, view_times_s: Any = None) -> RayTable:
    """The rays of every view of ``geometry``, clipped to ``domain``'s box (host, float64).

    Args:
        geometry: any medphys geometry; planar ones with ``n_rows=None`` get one row per slice
            of ``domain``.
        domain: the field's grid.
        view_times_s: optional ``(views,)`` acquisition time of each view (s), finite.

    Returns:
        `RayTable` in float32 with ``n = views · u · v`` rays in C order of ``(views, u, v)``.

    Raises:
        TypeError: ``geometry`` is not a medphys geometry or ``domain`` not a `Grid`.
        ValueError: no ray meets the domain's box; ``view_times_s`` not one finite time per view.
    """
    where = "medphys.neural.trace_rays"
    if not isinstance(geometry, AbstractGeometry):
        raise TypeError(
            f"{where}: `geometry` must be a medphys geometry (ParallelBeam, FanBeam, ConeBeam, "
            f"ProjectionGeometry) (got {type(geometry).__name__})"
        )
    if not isinstance(domain, Grid):
        raise TypeError(f"{where}: `domain` must be a medphys.Grid (got {type(domain).__name__})")
    geometry = geometry.with_rows_for(domain) if geometry.n_rows is None else geometry
    host = jax.tree_util.tree_map(np.asarray, geometry)
    with jax.ensure_compile_time_eval():
        rays = jax.vmap(
            lambda v: host.rays(v, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
        )(jnp.arange(host.n_views))
    o = np.asarray(rays.origins, np.float64).reshape(-1, 3)
    d = np.asarray(rays.directions, np.float64).reshape(-1, 3)
    t_lo = np.asarray(rays.t_min, np.float64).reshape(-1)
    t_hi = np.asarray(rays.t_max, np.float64).reshape(-1)
    shape = tuple(int(n) for n in rays.t_min.shape)
    m, c = world_to_unit(domain)
    a = o @ m.T + c
    b = d @ m.T
    # slab test per axis; an axis the ray runs parallel to keeps all of t or none of it
    inside = (a >= 0) & (a <= 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (0.0 - a) / b, (1.0 - a) / b
    near = np.where(b != 0, np.minimum(t0, t1), np.where(inside, -np.inf, np.inf))
    far = np.where(b != 0, np.maximum(t0, t1), np.where(inside, np.inf, -np.inf))
    enter = np.maximum(np.max(near, axis=-1), t_lo)
    leave = np.minimum(np.min(far, axis=-1), t_hi)
    length = np.maximum(leave - enter, 0.0)
    length = np.where(np.isfinite(length), length, 0.0)
    enter = np.where(length > 0, enter, 0.0)
    if not np.any(length > 0):
        raise ValueError(
            f"{where}: no ray of the geometry meets the field's box {domain!r} (bounds "
            f"{np.round(domain.bounds_mm(), 1).tolist()} mm); check the geometry's isocentre, "
            "detector size and rows against the domain"
        )
    times = np.zeros(host.n_views) if view_times_s is None else np.asarray(view_times_s, np.float64)
    if times.shape != (host.n_views,) or not np.all(np.isfinite(times)):
        raise ValueError(
            f"{where}: `view_times_s` must hold one finite time per view, shape ({host.n_views},) "
            f"(got shape {times.shape})"
        )
    per_ray = np.repeat(times, int(np.prod(shape[1:])))
    return RayTable(
        time_s=jnp.asarray(per_ray, jnp.float32),
        entry=jnp.asarray(a + enter[:, None] * b, jnp.float32),
        direction=jnp.asarray(b, jnp.float32),
        length_mm=jnp.asarray(length, jnp.float32),
        shape=shape,  # type: ignore[arg-type]
        domain=domain,
    )


def min_samples(rays: RayTable) -> int:
    """One sample per voxel along the longest chord any of ``rays`` takes through the domain."""
    step_vox = np.linalg.norm(np.asarray(rays.direction) * np.asarray(rays.domain.shape), axis=-1)
    return max(1, math.ceil(float(np.max(step_vox * np.asarray(rays.length_mm))) - 1e-6))


def integrate(
    field: AbstractField,
    rays: RayTable,
    *,
    n_samples: int,
    key: Array | None = None,
) -> Float[Array, " n"]:
    """Line integrals of ``field`` along ``rays`` with ``n_samples`` points per chord.

    Args:
        field: the attenuation field (1/mm).
        rays: clipped rays (any batch of a `RayTable`).
        n_samples: points per ray (static).
        key: stratified jitter (training); None gives the midpoint rule.

    Returns:
        ``(n,)`` line integrals (dimensionless), in the rays' dtype.
    """
    n = int(n_samples)
    if key is None:
        xi = jnp.full((1, n), 0.5, rays.length_mm.dtype)
    else:
        xi = jax.random.uniform(key, (rays.length_mm.shape[0], n), rays.length_mm.dtype)
    s = (jnp.arange(n, dtype=rays.length_mm.dtype)[None, :] + xi) / n  # (rays, n) in [0, 1)
    t = s * rays.length_mm[:, None]
    pts = rays.entry[:, None, :] + t[..., None] * rays.direction[:, None, :]
    if field.temporal:
        mu = field(pts[..., : field.dim], jnp.broadcast_to(rays.time_s[:, None], t.shape))
    else:
        mu = field(pts[..., : field.dim])
    return jnp.sum(mu, axis=-1) * (rays.length_mm / n)


def render(
    field: AbstractField,
    geometry: AbstractGeometry | RayTable,
    *,
    n_samples: int | None = None,
    view_times_s: Any = None,
    rays_per_chunk: int = 4096,
) -> Float[Array, "views u v"]:
    """Projections of ``field`` for ``geometry`` (midpoint rule), shaped like `xray.project`'s.

    Args:
        field: the attenuation field.
        geometry: any medphys geometry (its rays are traced against ``field.domain``), or a
            `RayTable` already traced.
        n_samples: points per ray; default `min_samples` (one per voxel on the longest chord).
        view_times_s: ``(views,)`` times (s) of the views, for a time-conditioned field.
        rays_per_chunk: rays evaluated at a time (bounds memory).

    Returns:
        ``(views, u, v)`` line integrals (float32).

    Raises:
        ValueError: ``n_samples`` below `min_samples`, or no ray meets the field's box.
    """
    where = "medphys.neural.render"
    if isinstance(geometry, RayTable):
        rays = geometry
    else:
        rays = trace_rays(geometry, field.domain, view_times_s=view_times_s)
    n = check_samples(where, rays, n_samples)
    total = rays.n_rays
    chunk = max(1, min(int(rays_per_chunk), total))
    pad = (-total) % chunk
    padded = jax.tree_util.tree_map(
        lambda x: jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]), rays
    )
    graphdef, state = nnx.split(field)
    return _render_chunks(graphdef, n, chunk, state, padded)[:total].reshape(rays.shape)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _render_chunks(graphdef: Any, n: int, chunk: int, state: Any, table: RayTable) -> Array:
    field = nnx.merge(graphdef, state)
    pieces = jax.tree_util.tree_map(lambda x: x.reshape(-1, chunk, *x.shape[1:]), table)
    return jax.lax.map(lambda r: integrate(field, r, n_samples=n), pieces).reshape(-1)


def check_samples(where: str, rays: RayTable, n_samples: Any) -> int:
    """``n_samples`` (default `min_samples`), refused below one sample per voxel of chord."""
    need = min_samples(rays)
    if n_samples is None:
        return need
    if (
        isinstance(n_samples, bool)
        or not isinstance(n_samples, int | np.integer)
        or n_samples < need
    ):
        raise ValueError(
            f"{where}: `n_samples` must be an integer >= {need}, one sample per voxel along the "
            f"longest chord through the domain {rays.domain!r} (got {n_samples!r})"
        )
    return int(n_samples)
