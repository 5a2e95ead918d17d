"""Voxel-driven transpose of the 3-D Joseph projector for point-source geometries (gather, no
scatter): the backprojector that `jax.grad` through a cone-beam `project` runs.

Derivation. In the forward (`_joseph3d`), the ray from the source ``S`` to pixel ``(i, j)`` runs
in voxel-index space along ``g_ij = A⁻¹ (P_ij - S)`` (``A`` the affine's 3×3 part, ``P_ij`` the
pixel centre), which is affine in the pixel indices: ``g_ij = g_0 + i g_u + j g_v``. With the
dominant axis ``a`` of that ray (largest ``|g_a|``; ``b, c`` the two others), the sample on slice
``m`` of axis ``a`` lies at ``s = (m - q0_a) / g_a`` along ``S → P_ij`` (``q0 = A⁻¹ (S - o)`` the
source in index coordinates) and reads voxel ``v`` (with ``v_a = m``) with weight

    w_ij(v) = |dq_a|⁻¹ · Λ(q0_b + s g_b - v_b) · Λ(q0_c + s g_c - v_c) · [0 ≤ s ≤ 1],

``Λ(x) = max(0, 1 - |x|)`` (bilinear interpolation written as a product of tents) and ``|dq_a|⁻¹``
the ray length per slice in mm. The transpose is therefore, for every voxel ``v`` and every
dominant axis ``a``,

    (Aᵀ y)(v) = Σ_a Σ_ij [drive_ij = a] · y_ij · w_ij(v),

a sum over the pixels whose rays cross slice ``v_a`` within one voxel of ``v`` in ``b`` and ``c``.
Those pixels lie around the projection ``(p_u, p_v)`` of the voxel centre, within the projection
of the 2×2-voxel square ``v ± e_b ± e_c``; a static bound ``h_u, h_v`` (pixels) on that footprint,
computed once per geometry from the volume's box (see `footprint_bounds`), gives ``K_u × K_v``
candidate pixels per voxel. The per-pixel factor ``[drive = a] y |dq_a|⁻¹`` is computed with the
forward's own arithmetic, so ties between axes fall the same way; the crossing offsets are the
forward's to rounding. This is the exact adjoint (dot-product test to 1e-12 in float64).

It is *not* bilinear interpolation of the detector at the projected voxel centre: ``Λ`` acts in
voxel units on slice ``v_a``, which is a tent in detector pixels of half-width (voxel pitch ×
magnification / pixel pitch), sheared by the obliquity of the slice. The two agree only when the
magnified voxel equals one pixel and the slice faces the detector. The exact version costs
``K_u × K_v`` candidates per voxel: 2 × 2 for a 128³ → 128² DRR (1 mm voxels, 2 mm pixels,
magnification ≤ 1.34), 3 × 4 for 256³ → 256² at 1 mm pixels.

Scope. Used for `ConeBeam` (circular, helical) and `ProjectionGeometry` with concrete leaves,
Joseph sampling, and a volume box that lies wholly in front of every view's source plane (then
the footprint bound is finite). Otherwise `_projector` keeps the transposed gathers (scatter-adds,
exact for every geometry): with a traced geometry or affine (under an outer ``jit`` that takes
them as arguments: the bound needs concrete values), a source plane that cuts the box (the
footprint is unbounded), or more than ``_MAX_CANDIDATES`` candidates per voxel. Trilinear
sampling also keeps the scatter: its gather would be exact too but needs each candidate ray's
sample phase (its samples start at the ray's box entry), which is not written yet.

References:
    P. M. Joseph, "An improved algorithm for reprojecting rays through pixel images", IEEE Trans.
    Med. Imaging 1(3):192–196, 1982.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

# candidate pixels × voxels evaluated at once (~4M: bounded temporaries per slab)
_CHUNK_ELEMENTS = 1 << 22
# more candidates than this per voxel on some axis (a voxel close to a source): the unrolled
# kernel would grow too large; use the scatter transpose
_MAX_CANDIDATES = 64
# pixels added to the footprint bound: covers float32 rounding of the projected voxel centre
_MARGIN_PX = 0.01


def _host_projection(shape: tuple[int, int, int], affine: Any, geometry: Any) -> np.ndarray:
    """``(views, 3, 4)``: homogeneous voxel index ``(q, 1)`` → homogeneous pixel index."""
    p = geometry.projection_matrices()
    t = np.asarray(affine, dtype=np.float64)
    return p @ t


def footprint_bounds(
    shape: tuple[int, int, int], affine: Any, geometry: Any
) -> tuple[tuple[float, float, int, int], ...] | None:
    """Per dominant axis ``a``: ``(h_u, h_v, K_u, K_v)``, a bound on how far (pixels) a voxel's
    footprint on slice ``a`` reaches from its projected centre, and the candidate counts; None when
    the gather does not apply (part of the box at or behind a source plane, or too many candidates).

    For the linear-fractional map ``u = N(q) / W(q)`` (``W`` the depth), ``∂u/∂q_k = (N_k - u W_k)
    / W``; over the box ``[-1, n]³`` (every footprint square lies inside it) ``u`` stays between its
    values at the box corners, so ``|∂u/∂q_k| ≤ max(|N_k - u_lo W_k|, |N_k - u_hi W_k|) / W_min``
    and the square ``v ± e_b ± e_c`` reaches at most ``Σ_{k=b,c} sup|∂u/∂q_k|`` from the centre.
    """
    h = _host_projection(shape, affine, geometry)
    lo = -1.0
    corners = np.array(
        [[x, y, z, 1.0] for x in (lo, shape[0]) for y in (lo, shape[1]) for z in (lo, shape[2])]
    )
    hom = np.einsum("vrk,ck->vcr", h, corners)  # (views, 8, 3)
    w = hom[..., 2]
    if not np.all(np.isfinite(hom)) or np.any(w <= 0):
        return None
    w_min = w.min(axis=1)
    out = []
    for a in range(3):
        reach = []
        for row in (0, 1):
            coord = hom[..., row] / w
            c_lo, c_hi = coord.min(axis=1), coord.max(axis=1)
            total = np.zeros(h.shape[0])
            for k in ((a + 1) % 3, (a + 2) % 3):
                nk, wk = h[:, row, k], h[:, 2, k]
                total += np.maximum(np.abs(nk - c_lo * wk), np.abs(nk - c_hi * wk)) / w_min
            # on a 1/8-pixel grid, so that nearby geometries share a plan (no recompilation)
            reach.append(math.ceil(8.0 * (float(total.max()) + _MARGIN_PX)) / 8.0)
        # the pixels with a non-zero weight lie in the open interval (p - h, p + h), which holds at
        # most ceil(2 h) integers, the first being floor(p - h) + 1
        k_u, k_v = (math.ceil(2.0 * r) for r in reach)
        if k_u * k_v > _MAX_CANDIDATES:
            return None
        out.append((reach[0], reach[1], k_u, k_v))
    return tuple(out)


def _slab(shape: tuple[int, int, int], bounds: tuple) -> int:
    per_voxel = max(k_u * k_v for _, _, k_u, k_v in bounds)
    return int(max(1, min(shape[0], _CHUNK_ELEMENTS // (per_voxel * shape[1] * shape[2]))))


def _view_terms(geometry: Any, view: Array, a3: Array, offset: Array, ainv: Array) -> tuple:
    """Per view: voxel-index → homogeneous pixel-index map ``(mq, m0)``, the source ``q0`` and the
    ray vectors ``g_ij = g0 + i gu + j gv``, all in voxel-index coordinates."""
    dtype = a3.dtype
    src, centre, e_u, e_v = geometry.pose(view, dtype)
    du = jnp.asarray(geometry.du_mm, dtype)
    dv = jnp.asarray(geometry.dv_mm, dtype)
    n = jnp.cross(e_u, e_v)
    n = n / jnp.sqrt(jnp.sum(n * n))
    dist = jnp.dot(centre - src, n)
    n = jnp.where(dist < 0, -n, n)
    dist = jnp.abs(dist)
    off = centre - src - dist * n
    cu = (geometry.n_u - 1) / 2 - jnp.dot(off, e_u) / du
    cv = (geometry.n_v - 1) / 2 - jnp.dot(off, e_v) / dv
    rows = jnp.stack([dist / du * e_u + cu * n, dist / dv * e_v + cv * n, n])
    mq = rows @ a3
    m0 = rows @ (offset - src)
    q0 = ainv @ (src - offset)
    gu = du * (ainv @ e_u)
    gv = dv * (ainv @ e_v)
    g0 = ainv @ (centre - src) - (geometry.n_u - 1) / 2 * gu - (geometry.n_v - 1) / 2 * gv
    return mq, m0, q0, g0, gu, gv


def _weighted(proj: Array, geometry: Any, view: Array, ainv: Array) -> tuple[Array, Array]:
    """``y |dq_a|⁻¹`` and the dominant axis of every pixel's ray, with `joseph3d_rays`' arithmetic."""
    r = geometry.rays(view, proj.dtype)
    dq = r.directions.reshape(-1, 3) @ ainv.T
    drive = jnp.argmax(jnp.abs(dq), axis=-1)
    dqa = jnp.take_along_axis(dq, drive[:, None], axis=-1)[:, 0]
    inv = 1.0 / dqa
    return proj[view].reshape(-1) * jnp.abs(inv), drive


def _gather_axis(
    a: int,
    bound: tuple[float, float, int, int],
    q: tuple[Array, Array, Array],
    ya: Array,
    terms: tuple,
    n_u: int,
    n_v: int,
) -> Array:
    """Contribution of the rays driven along axis ``a`` to the voxels at index coordinates ``q``
    (three arrays broadcasting to the slab's shape)."""
    dtype = ya.dtype
    h_u, h_v, k_u, k_v = bound
    mq, m0, q0, g0, gu, gv = terms
    b, c = (a + 1) % 3, (a + 2) % 3
    hom = [mq[r, 0] * q[0] + mq[r, 1] * q[1] + mq[r, 2] * q[2] + m0[r] for r in range(3)]
    # the box is in front of the source (hom[2] > 0); clipping keeps far voxels off the detector
    pu = jnp.clip(hom[0] / hom[2], -h_u - 2.0, n_u + h_u + 1.0)
    pv = jnp.clip(hom[1] / hom[2], -h_v - 2.0, n_v + h_v + 1.0)
    i0 = jnp.floor(pu - h_u).astype(jnp.int32) + 1
    j0 = jnp.floor(pv - h_v).astype(jnp.int32) + 1
    rel = [q[k] - q0[k] for k in range(3)]
    zero = jnp.zeros((), dtype)
    one = jnp.ones((), dtype)
    total = None
    # unrolled over the K_u × K_v candidates: one fused loop over the slab
    for ki in range(k_u):
        i = i0 + ki
        fi = i.astype(dtype)
        # ``ya`` is zero-padded by one pixel: clipped indices land on the border
        row = jnp.clip(i + 1, 0, n_u + 1) * (n_v + 2)
        for kj in range(k_v):
            j = j0 + kj
            fj = j.astype(dtype)
            ga = g0[a] + fi * gu[a] + fj * gv[a]
            s = rel[a] / jnp.where(ga == 0, one, ga)
            db = s * (g0[b] + fi * gu[b] + fj * gv[b]) - rel[b]
            dc = s * (g0[c] + fi * gu[c] + fj * gv[c]) - rel[c]
            w = jnp.maximum(zero, 1.0 - jnp.abs(db)) * jnp.maximum(zero, 1.0 - jnp.abs(dc))
            w = jnp.where((s >= 0) & (s <= 1), w, zero)
            term = w * ya[row + jnp.clip(j + 1, 0, n_v + 1)]
            total = term if total is None else total + term
    return total


def joseph3d_backproject(
    proj: Float[Array, "views u v"],
    shape: tuple[int, int, int],
    affine: Float[Array, "4 4"],
    geometry: Any,
    bounds: tuple,
) -> Float[Array, "x y z"]:
    """The transpose of `joseph3d_rays` over all views of ``geometry`` (see the module docstring).

    Views run in a scan whose carry is the volume; per view, voxels are processed in slabs along
    the first axis (bounded temporaries, updated in place), and a ``lax.cond`` skips the dominant
    axes along which no ray of the view is driven.
    """
    dtype = proj.dtype
    n_u, n_v = geometry.n_u, geometry.n_v
    a = jnp.asarray(affine, dtype)
    a3, offset = a[:3, :3], a[:3, 3]
    ainv = jnp.linalg.inv(a3)
    n_views = geometry.n_views

    def per_view(view: Array) -> tuple:
        yw, drive = _weighted(proj, geometry, view, ainv)
        padded = []
        for ax in range(3):
            ya = jnp.where(drive == ax, yw, jnp.zeros((), dtype)).reshape(n_u, n_v)
            padded.append(jnp.pad(ya, 1).reshape(-1))
        present = [jnp.any(drive == ax) for ax in range(3)]
        return padded, present, _view_terms(geometry, view, a3, offset, ainv)

    sx = _slab(shape, bounds)
    n_slabs = -(-shape[0] // sx)
    y_idx = jnp.arange(shape[1], dtype=dtype)[None, :, None]
    z_idx = jnp.arange(shape[2], dtype=dtype)[None, None, :]
    full = (sx, shape[1], shape[2])

    def view_step(vol: Array, view: Array) -> tuple[Array, None]:
        tables, present, terms = per_view(view)

        def slab(k: int | Array, vol: Array) -> Array:
            first = k * sx
            q = ((first + jnp.arange(sx)).astype(dtype)[:, None, None], y_idx, z_idx)
            acc = jax.lax.dynamic_slice_in_dim(vol, first, sx, axis=0)
            for ax in range(3):
                acc = acc + jax.lax.cond(
                    present[ax],
                    lambda ax=ax: jnp.broadcast_to(
                        _gather_axis(ax, bounds[ax], q, tables[ax], terms, n_u, n_v), full
                    ),
                    lambda: jnp.zeros(full, dtype),
                )
            return jax.lax.dynamic_update_slice_in_dim(vol, acc, first, axis=0)

        return jax.lax.fori_loop(0, n_slabs, slab, vol), None

    vol = jnp.zeros((n_slabs * sx, shape[1], shape[2]), dtype)
    vol, _ = jax.lax.scan(view_step, vol, jnp.arange(n_views))
    return vol[: shape[0]]
