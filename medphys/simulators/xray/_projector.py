"""Ray-driven projector and its matched adjoint (backprojector).

Four kernels share one interface:

Planar (Joseph's method, z as a batch axis)
    For `ParallelBeam` and `FanBeam` (rays in z planes) on a volume whose third axis is the world z
    axis. Every ray is followed through the in-plane grid one voxel column at a time along its
    dominant index axis, interpolating linearly along the other axis (Joseph 1982); all z slices
    (and any extra batch, e.g. materials) are gathered at once as contiguous vectors. The slice
    sinograms are then interpolated linearly along z to the detector rows (exact trilinear
    sampling for rays that lie in z planes); when the rows are the slices this step is skipped.

Parallel beam, thin axis-aligned volumes (``_parallel_shift``)
    2-D and thin stacks (≤ 8 slices × batch) under a `ParallelBeam`: Joseph's method on a virtual
    detector with two rays per voxel, whose column interpolation is one contiguous slice per view
    (no per-sample gathers), then linear interpolation to the detector pixels.

Cone beam and arbitrary poses (3-D Joseph, ``_joseph3d``; the default for non-planar geometries)
    One sample per slice of each ray's dominant index axis, bilinear across it.

Generic (trilinear, fixed step; ``sampling=Trilinear()``)
    For any geometry that lowers to `Rays`: samples every
    ``t`` step of at most half a voxel along every index axis, trilinear interpolation with zeros
    outside the volume, clipped to the volume's box.

All are linear in the volume. The backprojector is their exact transpose, so
``<A x, y> = <x, A^T y>`` to rounding. For 3-D Joseph on point-source geometries (`ConeBeam`,
`ProjectionGeometry`) it is voxel-driven (``_joseph3d_gather``): every voxel gathers the weights
of the pixels whose rays cross its slice within one voxel, at about the cost of the forward; its
footprint bound is computed on the host when the operator is prepared (``_operator``). Elsewhere
it is the same gathers transposed into scatter-adds or slice updates by `jax.linear_transpose`,
also exact: for the planar kernels, for trilinear sampling (a gather would also be exact, but
needs each candidate ray's sample phase, which starts at its box entry; not written yet), for a
pose moved inside a trace (`Projector.with_geometry`: the bound was computed for the prepared
pose), and when a source plane cuts the volume's box (the footprint is unbounded there).
`project` and `backproject` carry `jax.custom_vjp` rules that call each other, so ``jax.grad``
through `project` runs the backprojector. Geometry leaves (angles, offsets, distances, poses) are
differentiable too: for 3-D Joseph by a kernel of its own (``joseph3d_ray_grads``: four
single-output passes over the samples, about 4× the forward on CPU, where differentiating the
forward's multi-output loop costs about 15×), elsewhere by `jax.vjp` of the forward.

Work is chunked over views (``jax.lax.map`` over chunks of ``views_per_batch`` views, whose rays
form one bundle; the generic path also chunks rays) so memory stays bounded, and all shapes are
static: fixed sample counts with masks, no data-dependent shapes.

References:
    P. M. Joseph, "An improved algorithm for reprojecting rays through pixel images", IEEE Trans.
    Med. Imaging 1(3):192–196, 1982.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..geometry import AbstractGeometry, ParallelBeam, _Planar, _Projective, z_aligned
from ._joseph3d import (
    joseph3d_ray_grads,
    joseph3d_rays,
    joseph3d_samples,
    joseph3d_sweep,
    pad_volume,
    sweep_layout,
)
from ._joseph3d_gather import footprint_bounds, joseph3d_backproject
from ._parallel_shift import shift_forward

__all__ = ["Joseph", "Trilinear"]

# Elements (rays × samples × batch) gathered at once per chunk of views: ~64 MB of float32.
_CHUNK_ELEMENTS = 1 << 24
# Parallel beams on volumes with at most this many slices × batch use the virtual-detector path.
_SHIFT_MAX_SLICES = 8


@dataclasses.dataclass(frozen=True)
class Joseph:
    """Exact-path sampling (the default): one sample per voxel slice along each ray's dominant
    axis, linear (planar) or bilinear (3-D) interpolation across it (Joseph 1982)."""


@dataclasses.dataclass(frozen=True)
class Trilinear:
    """Trilinear sampling every half voxel (of the ray's dominant axis) between the volume's
    faces; zeros outside."""


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Static description of one projection problem (hashable: a jit cache key)."""

    planar: bool
    shape: tuple[int, int, int]
    batch: int  # extra trailing batch (materials) after z, planar only
    rows_are_slices: bool
    views_per_batch: int
    rays_per_batch: int
    trilinear: bool = False  # generic path: trilinear half-voxel marching instead of 3-D Joseph
    shift: bool = False  # parallel beam on an axis-aligned thin volume: `_parallel_shift`
    # 3-D Joseph on a point-source geometry: footprint bounds of the voxel-driven transpose
    gather: tuple | None = None
    # 3-D Joseph: rays per piece of the slice-major sweep (`joseph3d_sweep`; views_per_batch views
    # form a bundle of pieces); 0 runs the ray-major `joseph3d_rays` in chunks of rays_per_batch
    sweep_rays: int = 0
    sweep_padded: bool = False  # the sweep reads a zero-padded copy of the volume


def _make_plan(
    shape: tuple[int, int, int],
    affine: Any,
    geometry: AbstractGeometry,
    *,
    batch: int = 1,
    views_per_batch: int | None,
    where: str,
    sampling: Any = None,
    concrete: bool = True,
) -> _Plan:
    """The static plan; the affine is concrete, the geometry too unless ``concrete`` is False
    (a traced pose: no gather adjoint, whose footprint bound needs the pose's values)."""
    if sampling is None:
        sampling = Joseph()
    if not isinstance(sampling, (Joseph, Trilinear)):
        raise TypeError(
            f"{where}: `sampling` must be medphys.simulators.xray.Joseph() or Trilinear() "
            f"(got {sampling!r})"
        )
    trilinear = isinstance(sampling, Trilinear)
    planar = bool(geometry.planar) and z_aligned(affine) and not trilinear
    rows_are_slices = geometry.n_rows is None
    if rows_are_slices and not planar:
        raise ValueError(
            f"{where}: the geometry's `n_rows` is None (one row per slice), which needs a volume "
            "whose third axis is the world z axis; give `n_rows`, `dv_mm` and `z_mm`"
        )
    n_u = geometry.n_u
    sweep = not planar and not trilinear
    if planar:
        # the scan carries (views_per_batch, n_u, z * batch) sums; ~1M elements is a good size
        per_view = n_u * shape[2] * batch * 8
        rays_per_batch = n_u
    else:
        n_rows = geometry.n_rows or 1
        per_ray = 8 * _generic_samples(shape) if trilinear else 6 * joseph3d_samples(tuple(shape))
        # the ray-major kernels' chunks (also those of the 3-D Joseph pose derivative)
        rays_per_batch = int(max(1, min(n_u * n_rows, _CHUNK_ELEMENTS // per_ray)))
        per_view = per_ray * n_u * n_rows
    if views_per_batch is None and sweep:
        views_per_batch = sweep_layout(tuple(shape), geometry.n_views, n_u * n_rows)[0]
    elif views_per_batch is None:
        views_per_batch = int(
            max(1, min(geometry.n_views, 16, _CHUNK_ELEMENTS // max(per_view, 1)))
        )
    elif (
        isinstance(views_per_batch, bool)
        or not isinstance(views_per_batch, int)
        or views_per_batch < 1
    ):
        raise ValueError(
            f"{where}: `views_per_batch` must be an integer ≥ 1 (got {views_per_batch!r})"
        )
    shift = (
        planar
        and isinstance(geometry, ParallelBeam)
        and shape[2] * batch <= _SHIFT_MAX_SLICES
        and _in_plane_diagonal(affine)
    )
    gather = None
    projective = isinstance(geometry, _Projective)
    if concrete and not planar and not trilinear and batch == 1 and projective:
        gather = footprint_bounds(tuple(int(n) for n in shape), affine, geometry)
    sweep_rays, sweep_padded = 0, False
    if sweep:
        _, sweep_rays, sweep_padded = sweep_layout(
            tuple(shape), geometry.n_views, n_u * n_rows, views_per_batch=views_per_batch
        )
    return _Plan(
        planar,
        tuple(int(n) for n in shape),
        int(batch),
        rows_are_slices,
        int(views_per_batch),
        int(rays_per_batch),
        trilinear,
        bool(shift),
        gather,
        int(sweep_rays),
        bool(sweep_padded),
    )


def _in_plane_diagonal(affine: Any) -> bool:
    a = np.asarray(affine, dtype=np.float64)[:2, :2]
    return bool(abs(a[0, 1]) <= 1e-9 * abs(a[0, 0]) and abs(a[1, 0]) <= 1e-9 * abs(a[1, 1]))


def _generic_samples(shape: tuple[int, int, int]) -> int:
    # at most half an index unit along the dominant axis over the box [-1, n] of that axis
    return 2 * (max(shape) + 1) + 2


# ----------------------------------------------------------------------------------------------
# Planar kernel (Joseph)


def _inplane(affine: Array, dtype: Any) -> tuple[Array, Array]:
    a = jnp.asarray(affine, dtype)
    return jnp.linalg.inv(a[:2, :2]), a[:2, 3]


def _joseph_weights(
    n1: int,
    n2: int,
    minv: Array,
    offset: Array,
    origins: Array,
    directions: Array,
    t_min: Array,
    t_max: Array,
) -> tuple[Array, Array, Array, Array]:
    """Gather indices (flat over n1*n2) and weights of Joseph's method for a bundle of rays.

    Returns ``idx0, idx1, w0, w1`` each ``(rays, steps)``; weights include the step length (mm).
    """
    dtype = origins.dtype
    q0 = (origins - offset[None, :]) @ minv.T
    dq = directions @ minv.T
    drive_i = jnp.abs(dq[:, 0]) >= jnp.abs(dq[:, 1])
    qa0 = jnp.where(drive_i, q0[:, 0], q0[:, 1])
    qb0 = jnp.where(drive_i, q0[:, 1], q0[:, 0])
    dqa = jnp.where(drive_i, dq[:, 0], dq[:, 1])
    dqb = jnp.where(drive_i, dq[:, 1], dq[:, 0])
    na = jnp.where(drive_i, n1, n2)
    nb = jnp.where(drive_i, n2, n1)
    stride_a = jnp.where(drive_i, n2, 1)
    stride_b = jnp.where(drive_i, 1, n2)
    steps = max(n1, n2)
    m = jnp.arange(steps, dtype=dtype)
    # dqa is the larger component of a non-zero vector: never zero
    t = (m[None, :] - qa0[:, None]) / dqa[:, None]
    s = qb0[:, None] + t * dqb[:, None]
    j0f = jnp.floor(s)
    w1 = s - j0f
    w0 = 1.0 - w1
    j0 = j0f.astype(jnp.int32)
    mi = jnp.arange(steps, dtype=jnp.int32)[None, :]
    ok = (mi < na[:, None]) & (t >= t_min[:, None]) & (t <= t_max[:, None])
    nb_ = nb[:, None]
    ok0 = ok & (j0 >= 0) & (j0 < nb_)
    ok1 = ok & (j0 >= -1) & (j0 < nb_ - 1)
    base = jnp.minimum(mi, na[:, None] - 1) * stride_a[:, None]
    idx0 = base + jnp.clip(j0, 0, nb_ - 1) * stride_b[:, None]
    idx1 = base + jnp.clip(j0 + 1, 0, nb_ - 1) * stride_b[:, None]
    step = (1.0 / jnp.abs(dqa))[:, None]
    zero = jnp.zeros((), dtype)
    return idx0, idx1, jnp.where(ok0, w0 * step, zero), jnp.where(ok1, w1 * step, zero)


def _z_weights(n_z: int, affine: Array, row_z: Array) -> Array:
    """``(rows, slices)`` linear-interpolation weights from slices to rows (zero outside)."""
    a = jnp.asarray(affine, row_z.dtype)
    k = (row_z - a[2, 3]) / a[2, 2]
    return jnp.maximum(0.0, 1.0 - jnp.abs(k[:, None] - jnp.arange(n_z, dtype=row_z.dtype)[None, :]))


def _planar_forward(
    plan: _Plan, data: Array, affine: Array, geometry: _Planar, epilogue: Any = None
) -> Any:
    """``data (x, y, z, *batch)`` → ``(views, u, rows, *batch)``.

    ``epilogue(view, sums)``, when given, maps each view's ``(u, rows, *batch)`` line integrals to
    what is kept (the simulator turns path lengths into detector signal without storing them).
    """
    dtype = data.dtype
    n1, n2, nz = plan.shape
    batch_shape = tuple(data.shape[3:])
    flat = data.reshape(n1 * n2, -1)
    minv, offset = _inplane(affine, dtype)
    wz = None if plan.rows_are_slices else _z_weights(nz, affine, geometry.row_z_mm(dtype))

    n_views, n_u = geometry.n_views, geometry.n_u
    k = plan.views_per_batch
    n_chunks = -(-n_views // k)

    def chunk(first: Array) -> Any:
        # k views at once, their rays flattened into one bundle: plain (unbatched) gathers
        views = jnp.minimum(first + jnp.arange(k), n_views - 1)
        r = jax.vmap(lambda v: geometry.planar_rays(v, dtype))(views)
        i0, i1, w0, w1 = _joseph_weights(
            n1,
            n2,
            minv,
            offset,
            r.origins.reshape(k * n_u, 2),
            r.directions.reshape(k * n_u, 2),
            r.t_min.reshape(-1),
            r.t_max.reshape(-1),
        )

        # one scan step per voxel column: the gathers stay small and the (rays, steps, batch)
        # tensor is never materialised
        def step(acc: Array, s: tuple[Array, ...]) -> tuple[Array, None]:
            a0, a1, b0, b1 = s
            return acc + b0[:, None] * flat[a0] + b1[:, None] * flat[a1], None

        acc = jnp.zeros((k * n_u, flat.shape[1]), dtype)
        acc, _ = jax.lax.scan(step, acc, (i0.T, i1.T, w0.T, w1.T))
        sums = acc.reshape(k, n_u, nz, *batch_shape)
        if wz is not None:
            sums = jnp.einsum("kuz...,rz->kur...", sums, wz)
        return sums if epilogue is None else jax.vmap(epilogue)(views, sums)

    out = jax.lax.map(chunk, jnp.arange(n_chunks) * k)
    return jax.tree_util.tree_map(lambda x: x.reshape(n_chunks * k, *x.shape[2:])[:n_views], out)


# ----------------------------------------------------------------------------------------------
# Generic kernel (trilinear, fixed step)


def _box_span(q0: Array, dq: Array, shape: tuple[int, int, int]) -> tuple[Array, Array]:
    """Entry/exit ``t`` of rays in the index box ``[-1, n]`` per axis (slab method)."""
    dtype = q0.dtype
    hi = jnp.asarray(shape, dtype).reshape((1,) * (q0.ndim - 1) + (3,))
    tiny = jnp.asarray(1e-12 if dtype == jnp.float64 else 1e-7, dtype)
    moving = jnp.abs(dq) > tiny
    safe = jnp.where(moving, dq, 1.0)
    ta = (-1.0 - q0) / safe
    tb = (hi - q0) / safe
    inside = (q0 > -1.0) & (q0 < hi)
    big = jnp.asarray(jnp.inf, dtype)
    lo_t = jnp.where(moving, jnp.minimum(ta, tb), jnp.where(inside, -big, big))
    hi_t = jnp.where(moving, jnp.maximum(ta, tb), jnp.where(inside, big, -big))
    return jnp.max(lo_t, axis=-1), jnp.min(hi_t, axis=-1)


def _trilinear_rays(
    flat: Array,
    shape: tuple[int, int, int],
    ainv: Array,
    offset: Array,
    origins: Array,
    directions: Array,
    t_min: Array,
    t_max: Array,
) -> Array:
    """Line integrals of ``flat`` (x*y*z,) along a bundle of rays ``(R, 3)`` → ``(R,)``."""
    dtype = flat.dtype
    q0 = (origins - offset[None, :]) @ ainv.T
    dq = directions @ ainv.T
    t0, t1 = _box_span(q0, dq, shape)
    t0 = jnp.maximum(t0, t_min)
    t1 = jnp.minimum(t1, t_max)
    step = 0.5 / jnp.max(jnp.abs(dq), axis=-1)
    n_s = _generic_samples(shape)
    k = jnp.arange(n_s, dtype=dtype) + 0.5
    start = jnp.where(jnp.isfinite(t0), t0, 0.0)
    t = start[:, None] + k[None, :] * step[:, None]
    valid = t < t1[:, None]
    q = q0[:, None, :] + t[..., None] * dq[:, None, :]
    fl = jnp.floor(q)
    frac = q - fl
    base = fl.astype(jnp.int32)
    n = jnp.asarray(shape, jnp.int32)[None, None, :]
    total = jnp.zeros(t.shape, dtype)
    for corner in range(8):
        bits = jnp.asarray([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1], jnp.int32)
        bits = bits[None, None, :]
        idx = base + bits
        w = jnp.prod(jnp.where(bits == 1, frac, 1.0 - frac), axis=-1)
        ok = valid & jnp.all((idx >= 0) & (idx < n), axis=-1)
        idx = jnp.clip(idx, 0, n - 1)
        lin = (idx[..., 0] * shape[1] + idx[..., 1]) * shape[2] + idx[..., 2]
        total = total + jnp.where(ok, w, 0.0) * flat[lin]
    return jnp.sum(total, axis=-1) * step


def _generic_forward(plan: _Plan, data: Array, affine: Array, geometry: AbstractGeometry) -> Array:
    dtype = data.dtype
    a = jnp.asarray(affine, dtype)
    ainv = jnp.linalg.inv(a[:3, :3])
    offset = a[:3, 3]
    n_u, n_rows = geometry.n_u, geometry.n_rows
    if plan.sweep_rays:
        # 3-D Joseph by the slice-major sweep: the rays of views_per_batch views form one bundle
        # (a loop over bundles, not a vmap, so that the kernel's lax.cond skips stay branches),
        # cut into pieces of sweep_rays consecutive rays (strips of detector columns)
        volume = pad_volume(data) if plan.sweep_padded else data.reshape(-1)
        k, c = plan.views_per_batch, plan.sweep_rays
        n_rays = k * n_u * n_rows
        n_pieces = -(-n_rays // c)

        def pieces(x: Array, fill: float | None = None) -> Array:
            x = x.reshape(n_rays, -1)
            # padding rays repeat the last ray (its dominant axis) with an empty span (1 > 0)
            pad = jnp.broadcast_to(x[-1:], (n_pieces * c - n_rays, x.shape[1]))
            if fill is not None:
                pad = jnp.full_like(pad, fill)
            return jnp.concatenate([x, pad]).reshape(n_pieces, c, -1)

        def bundle(first: Array) -> Array:
            views = jnp.minimum(first + jnp.arange(k), geometry.n_views - 1)
            r = jax.vmap(lambda v: geometry.rays(v, dtype))(views)
            rays = (
                pieces(r.origins),
                pieces(r.directions),
                pieces(r.t_min, 1.0)[..., 0],
                pieces(r.t_max, 0.0)[..., 0],
            )
            out = jax.lax.map(
                lambda b: joseph3d_sweep(
                    volume, plan.shape, ainv, offset, *b, padded=plan.sweep_padded
                ),
                rays,
            )
            return out.reshape(-1)[:n_rays].reshape(k, n_u, n_rows)

        n_bundles = -(-geometry.n_views // k)
        out = jax.lax.map(bundle, jnp.arange(n_bundles) * k)
        return out.reshape(n_bundles * k, n_u, n_rows)[: geometry.n_views]
    if plan.trilinear:
        flat = data.reshape(-1)
        kernel = _trilinear_rays
    else:
        flat = pad_volume(data)
        kernel = joseph3d_rays

    n_rays = n_u * n_rows
    c = plan.rays_per_batch
    n_chunks = -(-n_rays // c)

    def one_view(view: Array) -> Array:
        r = geometry.rays(view, dtype)

        def chunked(x: Array, fill: float) -> Array:
            x = x.reshape(n_rays, -1)
            pad = jnp.full((n_chunks * c - n_rays, x.shape[1]), fill, dtype)
            return jnp.concatenate([x, pad]).reshape(n_chunks, c, -1)

        # padding rays have an empty span (t_min = 1 > t_max = 0) and a valid direction
        bundle = (
            chunked(r.origins, 0.0),
            chunked(r.directions, 1.0 / math.sqrt(3.0)),
            chunked(r.t_min, 1.0)[..., 0],
            chunked(r.t_max, 0.0)[..., 0],
        )
        out = jax.lax.map(lambda b: kernel(flat, plan.shape, ainv, offset, *b), bundle)
        return out.reshape(-1)[:n_rays].reshape(n_u, n_rows)

    return jax.lax.map(one_view, jnp.arange(geometry.n_views), batch_size=plan.views_per_batch)


def _generic_pose_vjp(
    plan: _Plan, data: Array, affine: Array, geometry: AbstractGeometry, g: Array, out: Array
) -> Any:
    """The cotangent of the geometry for the cotangent ``g (views, u, v)`` of a 3-D Joseph
    projection: per view, the rays' origin and direction sensitivities (`joseph3d_ray_grads`,
    chunked like the forward) pulled back through ``geometry.rays``, summed over views."""
    dtype = data.dtype
    a = jnp.asarray(affine, dtype)
    ainv = jnp.linalg.inv(a[:3, :3])
    offset = a[:3, 3]
    flat = pad_volume(data)
    n_u, n_rows = geometry.n_u, geometry.n_rows
    n_rays = n_u * n_rows
    c = plan.rays_per_batch
    n_chunks = -(-n_rays // c)

    def chunked(x: Array, fill: float) -> Array:
        x = x.reshape(n_rays, -1)
        pad = jnp.full((n_chunks * c - n_rays, x.shape[1]), fill, dtype)
        return jnp.concatenate([x, pad]).reshape(n_chunks, c, -1)

    def one_view(total: Any, args: tuple[Array, Array, Array]) -> tuple[Any, None]:
        view, g_view, out_view = args
        r, pull = jax.vjp(lambda geo: geo.rays(view, dtype), geometry)
        bundle = (
            chunked(r.origins, 0.0),
            chunked(r.directions, 1.0 / math.sqrt(3.0)),
            chunked(r.t_min, 1.0)[..., 0],
            chunked(r.t_max, 0.0)[..., 0],
            chunked(g_view, 0.0)[..., 0],
            chunked(out_view, 0.0)[..., 0],
        )
        d_o, d_d = jax.lax.map(
            lambda bb: joseph3d_ray_grads(flat, plan.shape, ainv, offset, *bb), bundle
        )
        d_o = d_o.reshape(-1, 3)[:n_rays].reshape(r.origins.shape)
        d_d = d_d.reshape(-1, 3)[:n_rays].reshape(r.directions.shape)
        (d_geo,) = pull(
            dataclasses.replace(
                r,
                origins=d_o,
                directions=d_d,
                t_min=jnp.zeros_like(r.t_min),
                t_max=jnp.zeros_like(r.t_max),
            )
        )
        return jax.tree_util.tree_map(jnp.add, total, d_geo), None

    zeros = jax.tree_util.tree_map(jnp.zeros_like, geometry)
    total, _ = jax.lax.scan(one_view, zeros, (jnp.arange(geometry.n_views), g, out))
    return total


# ----------------------------------------------------------------------------------------------
# Operator pair with custom VJPs


def _shift_forward(plan: _Plan, data: Array, affine: Array, geometry: ParallelBeam) -> Array:
    dtype = data.dtype
    nz = plan.shape[2]
    batch_shape = tuple(data.shape[3:])
    sums = shift_forward(data, affine, geometry, plan.shape)
    sums = sums.reshape(sums.shape[0], sums.shape[1], nz, *batch_shape)
    if plan.rows_are_slices:
        return sums
    wz = _z_weights(nz, affine, geometry.row_z_mm(dtype))
    return jnp.einsum("kuz...,rz->kur...", sums, wz)


def _forward(plan: _Plan, data: Array, affine: Array, geometry: AbstractGeometry) -> Array:
    if plan.shift:
        return _shift_forward(plan, data, affine, geometry)
    if plan.planar:
        return _planar_forward(plan, data, affine, geometry)
    return _generic_forward(plan, data, affine, geometry)


def _adjoint(plan: _Plan, proj: Array, affine: Array, geometry: AbstractGeometry) -> Array:
    if plan.gather is not None:
        return joseph3d_backproject(proj, plan.shape, affine, geometry, plan.gather)
    shape = (*plan.shape, plan.batch) if plan.batch > 1 else plan.shape
    spec = jax.ShapeDtypeStruct(shape, proj.dtype)
    (out,) = jax.linear_transpose(lambda x: _forward(plan, x, affine, geometry), spec)(proj)
    return out


def _joseph3d(plan: _Plan) -> bool:
    """Whether the forward is the generic 3-D Joseph kernel."""
    return not (plan.planar or plan.trilinear or plan.shift)


def _is_primal(x: Any) -> bool:
    return isinstance(x, jax.custom_derivatives.CustomVJPPrimal)


def _unwrap(tree: Any) -> tuple[Any, tuple[()] | None]:
    """Values of a (symbolic-zeros) primal pytree, and a leafless marker of whether any leaf is
    differentiated (``()``) or none is (None)."""
    leaves = jax.tree_util.tree_leaves(tree, is_leaf=_is_primal)
    value = jax.tree_util.tree_map(lambda p: p.value, tree, is_leaf=_is_primal)
    return value, (() if any(p.perturbed for p in leaves) else None)


def _pair_bwd(plan, res, g, transpose, apply):
    """Shared backward rule: ``transpose`` for the linear input, ``jax.vjp`` for affine/geometry."""
    x, affine, geometry, need_x, need_affine, need_geometry, out = res
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
        return None, None, None
    d_x = None if need_x is None else transpose(plan, g, affine, geometry)
    d_affine = d_geometry = None
    if need_affine is None and need_geometry is not None and apply is _forward and _joseph3d(plan):
        # a pose derivative of the 3-D Joseph projection: one pass over the samples
        return d_x, None, _generic_pose_vjp(plan, x, affine, geometry, g, out)
    if need_affine is not None or need_geometry is not None:
        _, pull = jax.vjp(lambda a, geo: apply(plan, x, a, geo), affine, geometry)
        d_affine, d_geometry = pull(g)
    return (
        d_x,
        None if need_affine is None else d_affine,
        None if need_geometry is None else d_geometry,
    )


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _project_op(plan, data, affine, geometry):
    return _forward(plan, data, affine, geometry)


def _project_fwd(plan, data, affine, geometry):
    (data, m_data), (affine, m_affine), (geometry, m_geo) = map(_unwrap, (data, affine, geometry))
    out = _forward(plan, data, affine, geometry)
    return out, (data, affine, geometry, m_data, m_affine, m_geo, out)


def _project_bwd(plan, res, g):
    return _pair_bwd(plan, res, g, _adjoint, _forward)


_project_op.defvjp(_project_fwd, _project_bwd, symbolic_zeros=True)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _backproject_op(plan, proj, affine, geometry):
    return _adjoint(plan, proj, affine, geometry)


def _backproject_fwd(plan, proj, affine, geometry):
    (proj, m_proj), (affine, m_affine), (geometry, m_geo) = map(_unwrap, (proj, affine, geometry))
    out = _adjoint(plan, proj, affine, geometry)
    return out, (proj, affine, geometry, m_proj, m_affine, m_geo, out)


def _backproject_bwd(plan, res, g):
    return _pair_bwd(plan, res, g, _forward, _adjoint)


_backproject_op.defvjp(_backproject_fwd, _backproject_bwd, symbolic_zeros=True)

_project_jit = jax.jit(_project_op, static_argnums=(0,))
_backproject_jit = jax.jit(_backproject_op, static_argnums=(0,))


# ----------------------------------------------------------------------------------------------
# Boundary checks and public functions


def _as_arrays(tree: Any) -> Any:
    return jax.tree_util.tree_map(jnp.asarray, tree)


def _check_projective(where: str, box: np.ndarray, geometry: _Projective) -> None:
    """Source outside the volume's box in every view; the box seen by some view's detector."""
    src, centre, e_u, e_v = geometry.poses()
    lo, hi = box[0], box[1]
    inside = np.all((src > lo[None, :]) & (src < hi[None, :]), axis=1)
    if np.any(inside):
        k = int(np.argmax(inside))
        raise ValueError(
            f"{where}: the source of view {k} (at {np.round(src[k], 1).tolist()} mm) lies inside "
            f"the volume (box {np.round(lo, 1).tolist()} to {np.round(hi, 1).tolist()} mm); "
            "increase `sod_mm` or move the source"
        )
    corners = np.array([[x, y, z] for x in box[:, 0] for y in box[:, 1] for z in box[:, 2]])
    normal = np.cross(e_u, e_v)
    half_u = 0.5 * geometry.n_u * float(geometry.du_mm)
    half_v = 0.5 * geometry.n_v * float(geometry.dv_mm)
    for k in range(src.shape[0]):
        n = normal[k] * np.sign(np.dot(centre[k] - src[k], normal[k]))
        dist = float(np.dot(centre[k] - src[k], n))
        rel = corners - src[k]
        depth = rel @ n
        if np.any(depth <= 0):  # part of the box behind the source: assume it is seen
            return
        hit = src[k] + rel * (dist / depth)[:, None] - centre[k]
        u, v = hit @ e_u[k], hit @ e_v[k]
        if u.max() >= -half_u and u.min() <= half_u and v.max() >= -half_v and v.min() <= half_v:
            return
    raise ValueError(
        f"{where}: the detector misses the volume in every view (the volume's box, projected "
        "from the source, falls outside the detector); check the poses, `isocenter_mm`, `z_mm` "
        "and the detector size"
    )


def check_geometry(where: str, volume: Any, geometry: AbstractGeometry) -> None:
    """Checks that need both the grid (a `Grid`, `Volume` or `LabeledVolume`) and the geometry,
    on concrete values (operators are prepared on the host)."""
    if not isinstance(geometry, AbstractGeometry):
        raise TypeError(
            f"{where}: `geometry` must be a ParallelBeam, FanBeam, ConeBeam or ProjectionGeometry from "
            f"medphys.simulators.geometry (got {type(geometry).__name__})"
        )
    if isinstance(geometry, _Projective):
        _check_projective(where, np.asarray(volume.bounds_mm(), dtype=np.float64), geometry)
        return
    if not isinstance(geometry, _Planar):
        return
    box = np.asarray(volume.bounds_mm(), dtype=np.float64)
    iso = np.asarray(geometry.isocenter_mm, dtype=np.float64)
    corners = np.array([[x, y] for x in box[:, 0] for y in box[:, 1]]) - iso
    reach = float(np.max(np.hypot(corners[:, 0], corners[:, 1])))
    sod = getattr(geometry, "sod_mm", None)
    if sod is not None and float(sod) <= reach:
        raise ValueError(
            f"{where}: the source path (radius `sod_mm`={float(sod):g} mm about the isocentre) "
            f"passes through the volume, whose farthest corner is {reach:.1f} mm from the rotation "
            "axis; increase `sod_mm` or scan a smaller volume"
        )
    # every ray passes within `widest` of the rotation axis (the outermost pixel's ray); a volume
    # whose nearest point is farther than that is met by no ray in any view
    near = float(
        np.hypot(
            max(box[0, 0] - iso[0], 0.0, iso[0] - box[1, 0]),
            max(box[0, 1] - iso[1], 0.0, iso[1] - box[1, 1]),
        )
    )
    lo, hi = geometry._edges_mm()
    widest = max(abs(lo), abs(hi))
    if sod is not None and getattr(geometry, "curved", False):
        widest = float(sod) * math.sin(min(widest / float(geometry.sdd_mm), math.pi / 2))
    elif sod is not None:
        widest = float(sod) * widest / float(np.hypot(float(geometry.sdd_mm), widest))
    if near > widest:
        raise ValueError(
            f"{where}: the detector misses the volume: its rays pass at most {widest:.1f} mm from "
            f"the rotation axis (detector u in [{lo:.1f}, {hi:.1f}] mm) but the volume's nearest "
            f"point is {near:.1f} mm away; enlarge `n_u`/`du_mm` or move `isocenter_mm`"
        )
    if geometry.n_rows is not None:
        half = 0.5 * float(geometry.dv_mm)
        z = (np.arange(geometry.n_rows) - (geometry.n_rows - 1) / 2) * 2 * half + float(
            geometry.z_mm
        )
        if z.max() + half < box[0, 2] or z.min() - half > box[1, 2]:
            raise ValueError(
                f"{where}: the detector rows (z in [{z.min() - half:.1f}, {z.max() + half:.1f}] mm) "
                f"miss the volume (z in [{box[0, 2]:.1f}, {box[1, 2]:.1f}] mm); set `z_mm`"
            )


def planar_plan(
    shape: tuple[int, int, int], affine: Any, geometry: _Planar, *, batch: int, where: str
) -> _Plan:
    """The plan for projecting ``batch`` co-registered maps at once (used by the simulator)."""
    plan = _make_plan(shape, affine, geometry, batch=batch, views_per_batch=None, where=where)
    if not plan.planar:
        raise ValueError(
            f"{where}: the volume's third axis must be the world z axis (oblique volumes are not "
            "supported by the simulator yet); resample the volume"
        )
    return plan
