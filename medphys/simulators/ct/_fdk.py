"""Feldkamp–Davis–Kress (FDK) reconstruction for circular cone-beam data on a flat detector.

With the detector scaled to the isocentre (``s = u sod / sdd``, ``w = v sod / sdd``), FDK is the
fan-beam FBP of every tilted fan (Feldkamp et al. 1984; Kak & Slaney §3.6):

1. cosine weighting ``p'(u, v) = p(u, v) sdd / sqrt(sdd^2 + u^2 + v^2)``;
2. row-wise ramp filtering along u (the spatial band-limited ramp of `fbp`, pitch
   ``tau = du sod / sdd``, optional window);
3. distance-weighted voxel-driven backprojection
   ``f(x) = (pi / n_views) sum_views (sod / U)^2 Q(u(x), v(x))`` with ``U = sod + x_d`` the voxel's
   depth from the source along the central ray and ``(u, v) = sdd (x_u, z - z_source) / U``,
   interpolated bilinearly (zero outside the detector).

Short scans (views over at least π + the fan angle, less than 2π; a C-arm sweeps ~200°) get
Parker's redundancy weights of each view and detector column, shared by all rows, before the
cosine weighting and filtering (`_parker`); full turns are not weighted.

Exact in the mid-plane (it is the fan-beam FBP there); off the mid-plane the circular orbit misses
part of the Radon data (Tuy's condition), so slices far from the source plane lose accuracy, the
more so the larger the cone angle.

The backprojection runs over blocks of voxels (``jax.lax.map``) and, inside each block, over views
(``jax.lax.scan``), so memory is bounded by the block size whatever the volume and view count.

References:
    L. A. Feldkamp, L. C. Davis, J. W. Kress, "Practical cone-beam algorithm", J. Opt. Soc. Am. A
    1(6):612–619, 1984.
    A. C. Kak and M. Slaney, Principles of Computerized Tomographic Imaging, IEEE Press, 1988, §3.6.
    D. L. Parker, "Optimal short scan convolution reconstruction for fanbeam CT", Med. Phys.
    9(2):254–257, 1982.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ...volume import Volume
from ..geometry import ConeBeam
from ._fbp import FilterName, _filter_rows, check_filter
from ._parker import redundancy_weighted, scan_needs_weights

__all__ = ["fdk"]

# voxels backprojected together (each carries ~a dozen temporaries per view)
_BLOCK = 1 << 18


def _bilinear(q: Array, cu: Array, cv: Array) -> Array:
    """``q (n_u, n_v)`` at continuous indices, zeros outside (reads from a zero-padded copy)."""
    n_u, n_v = q.shape
    padded = jnp.pad(q, 1).reshape(-1)

    def corners(c: Array, n: int) -> tuple[Array, Array, Array]:
        fl = jnp.floor(c)
        i = fl.astype(jnp.int32) + 1
        lo = jnp.clip(i, 0, n + 1)
        hi = jnp.where(i < 0, 0, jnp.minimum(lo + 1, n + 1))
        return lo, hi, c - fl

    u0, u1, wu = corners(cu, n_u)
    v0, v1, wv = corners(cv, n_v)
    s = n_v + 2
    return (1.0 - wu) * ((1.0 - wv) * padded[u0 * s + v0] + wv * padded[u0 * s + v1]) + wu * (
        (1.0 - wv) * padded[u1 * s + v0] + wv * padded[u1 * s + v1]
    )


@partial(jax.jit, static_argnames=("filter", "shape", "block"))
def _fdk_kernel(
    proj: Array,
    geometry: ConeBeam,
    affine: Array,
    *,
    filter: FilterName,
    shape: tuple[int, int, int],
    block: int,
) -> Array:
    dtype = proj.dtype
    n_views = proj.shape[0]
    sod = jnp.asarray(geometry.sod_mm, dtype)
    sdd = jnp.asarray(geometry.sdd_mm, dtype)
    u = geometry.u_mm(dtype)
    v = geometry.v_mm(dtype)
    pre = sdd / jnp.sqrt(sdd * sdd + u[:, None] ** 2 + v[None, :] ** 2)
    q = _filter_rows(proj * pre[None], jnp.asarray(geometry.du_mm, dtype) * sod / sdd, filter)
    du = jnp.asarray(geometry.du_mm, dtype)
    dv = jnp.asarray(geometry.dv_mm, dtype)
    iso = jnp.asarray(geometry.isocenter_mm, dtype)

    a = jnp.asarray(affine, dtype)
    n_vox = shape[0] * shape[1] * shape[2]
    n_blocks = -(-n_vox // block)

    def one_block(first: Array) -> Array:
        lin = jnp.minimum(first + jnp.arange(block), n_vox - 1)
        k = lin % shape[2]
        j = (lin // shape[2]) % shape[1]
        i = lin // (shape[1] * shape[2])
        idx = jnp.stack([i, j, k], axis=-1).astype(dtype)
        world = idx @ a[:3, :3].T + a[None, :3, 3]
        rel = world[:, :2] - iso[None, :]

        def step(acc: Array, view: Array) -> tuple[Array, None]:
            e_u, d = geometry.frame(view, dtype)
            depth = sod + rel @ d
            mag = sdd / depth
            cu = (mag * (rel @ e_u) - u[0]) / du
            cv = (mag * (world[:, 2] - geometry.source_z_mm(view, dtype)) - v[0]) / dv
            w = (sod / depth) ** 2
            return acc + w * _bilinear(q[view], cu, cv), None

        acc, _ = jax.lax.scan(step, jnp.zeros((block,), dtype), jnp.arange(n_views))
        return acc

    out = jax.lax.map(one_block, jnp.arange(n_blocks) * block)
    return (out.reshape(-1)[:n_vox] * (math.pi / n_views)).reshape(shape)


def fdk(
    projections: Float[Array, "views u v"],
    geometry: ConeBeam,
    *,
    like: Any,
    filter: FilterName = "ram-lak",
    redundancy: Float[Array, "views u"] | None = None,
) -> Volume:
    """FDK reconstruction of circular cone-beam projections onto the grid of ``like``.

    Args:
        projections: ``(views, u, v)`` line integrals (post-log data, dimensionless).
        geometry: the circular (``pitch_mm = 0``) `ConeBeam` that produced them, with views
            uniform over a full turn, or over at least π + the fan angle (a short scan, as on a
            C-arm: Parker weights are applied automatically).
        like: a `Volume` or `LabeledVolume` giving the output grid (shape and affine, any
            orientation).
        filter: ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"`` or ``"hann"``.
        redundancy: optional ``(views, u)`` redundancy weights shared by all rows (see `fbp`);
            default none for a full turn, `offset_detector_weights` for a full turn with a
            displaced detector, `parker_weights` for a short scan.

    Returns:
        `Volume` on ``like``'s grid in projection units per mm (1/mm for post-log data), in the
        projections' dtype.

    Raises:
        TypeError: ``geometry`` is not a `ConeBeam`.
        ValueError: unknown filter, a helical trajectory, views not uniformly spaced or covering
            neither a full turn nor π + the fan angle, a short scan with an offset detector,
            or projections (redundancy weights) whose shape does not match the geometry.

    Example:
        >>> g = ConeBeam.create(n_views=180, n_u=96, n_v=64, du_mm=1.0, dv_mm=1.0,
        ...                     sod_mm=300.0, sdd_mm=500.0)
        >>> vol = Volume.create(np.ones((48, 48, 32), np.float32))
        >>> fdk(project(vol, g), g, like=vol).shape
        (48, 48, 32)
    """
    where = "medphys.simulators.ct.fdk"
    filter = check_filter(where, filter)
    if not isinstance(geometry, ConeBeam):
        raise TypeError(f"{where}: `geometry` must be a ConeBeam (got {type(geometry).__name__})")
    if float(geometry.pitch_mm) != 0.0:
        raise ValueError(
            f"{where}: FDK needs a circular trajectory (got pitch_mm={float(geometry.pitch_mm):g}); "
            "helical data need a helical reconstruction"
        )
    kind = scan_needs_weights(where, geometry, what="FDK", custom=redundancy is not None)
    proj = jnp.asarray(projections)
    if not jnp.issubdtype(proj.dtype, jnp.floating):
        proj = proj.astype(jnp.float32)
    expected = (geometry.n_views, geometry.n_u, geometry.n_v)
    if tuple(proj.shape) != expected:
        raise ValueError(
            f"{where}: `projections` must have shape {expected} (got {tuple(proj.shape)})"
        )
    shape = tuple(int(s) for s in like.shape)
    block = int(min(_BLOCK, shape[0] * shape[1] * shape[2]))
    geo = jax.tree_util.tree_map(jnp.asarray, geometry)
    proj, geo = redundancy_weighted(where, proj, geometry, geo, redundancy, kind)
    data = _fdk_kernel(
        proj,
        geo,
        jnp.asarray(like.affine),
        filter=filter,
        shape=shape,
        block=block,
    )
    return Volume(data=data, affine=like.affine)
