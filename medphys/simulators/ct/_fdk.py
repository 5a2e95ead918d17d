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

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .._kinds import Filter
from ..geometry import ConeBeam
from ._fbp import _filter_rows

__all__: list[str] = []

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
    filter: Filter,
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
