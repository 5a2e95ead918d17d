"""Voxelizer fast path for phantoms made only of ellipsoids (Shepp–Logan): chords along columns.

Along a column of sample points (fixed x and y sample, all z samples) an ellipsoid is inside on
one interval, the chord between the two roots of the quadratic ``|q(s)|² = 1`` in the column's
z index ``s``. Solving it for every (ellipsoid, column) pair and painting intervals costs a few
operations per sample instead of one shape evaluation per (shape, sample), and needs no cell
hierarchy. The answer stays exactly the brute-force one (every shape's float32 ``level <= 0`` at
every sample point, the definition `._voxelize` is held to):

- the roots are computed in float32 around the ellipsoid's centre plane (no cancellation far
  from the grid origin), with a bound ``e`` of their error in sample units that also covers the
  rounding of ``level`` near the surface (the sign of ``level`` can differ from the true side
  only within that distance of the surface);
- a sample farther than ``e`` from both roots is inside exactly when it lies between them;
- the samples within ``e`` of a root (few: most columns have none) are evaluated with
  ``level`` itself, with the same arithmetic as every other path;
- a column that grazes the surface (the discriminant within its error of zero) is evaluated
  with ``level`` on the whole window that can hold its chord.

With several samples per voxel it decides each voxel from the chords of its sub-columns (a
leaf holding all of its samples, or some): only voxels where a leaf above the top holding one
touches without holding get their samples labelled one by one, as in the hierarchy.

When a window would hold more than ``_WINDOW`` samples (grids far finer than the ellipsoid's
float32 resolution) or the evaluated samples are not one interval (rounding noise wider than
a sample), the caller falls back to the general path: exact, slower.
"""

from __future__ import annotations

import functools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._shapes import Ellipsoid, _rotation

_WINDOW = 8  # samples evaluated with `level` around an uncertain root
_EPS = 2.0**-23  # twice float32's unit roundoff
_MAX_LEAVES = 64  # painting unrolls over the leaves
_SLAB_SAMPLES = 1 << 25  # voxels × k² per call (bounds memory)
_BIG = 1 << 30


def applicable(groups, warp, affine: np.ndarray) -> bool:
    """Whether the column path answers this voxelization (ellipsoids only, no warp)."""
    if warp is not None or len(groups) != 1:
        return False
    g = groups[0]
    if not isinstance(g.shapes, Ellipsoid) or g.labels.size > _MAX_LEAVES:
        return False
    lin = np.asarray(affine)[:3, :3]
    return bool(np.all(lin == np.diag(np.diag(lin))))


def _chords(ell, affine, px, py, *, nzk: int, k: int):
    """Roots (sample units, float) and their error bounds for every (leaf, x column, y column).

    Returns ``lo, hi, e, empty`` with shapes (L, cx, cy): the chord is ``(lo, hi)``, a sample
    within ``e`` of a root is uncertain (grazing columns: ``lo = hi`` and ``e`` covers the
    longest chord possible); ``empty`` marks pairs with no sample inside.
    """
    rot = jax.vmap(_rotation)(ell.rotation_rad)  # (L, 3, 3): q_j = sum_i d_i R_ij / a_j
    inv = 1.0 / ell.semi_axes_mm  # (L, 3)
    c = ell.center_mm
    dz = affine[2, 2]
    d0 = px[None, :] - c[:, 0:1]  # (L, cx)
    d1 = py[None, :] - c[:, 1:2]  # (L, cy)
    q0 = [
        (d0[:, :, None] * rot[:, 0, j, None, None] + d1[:, None, :] * rot[:, 1, j, None, None])
        * inv[:, j, None, None]
        for j in range(3)
    ]  # at the ellipsoid's centre plane z = c_z
    md = [dz * rot[:, 2, j] * inv[:, j] for j in range(3)]  # dq/ds, (L,)
    a = (md[0] ** 2 + md[1] ** 2 + md[2] ** 2)[:, None, None]
    b = sum(md[j][:, None, None] * q0[j] for j in range(3))
    q2 = q0[0] ** 2 + q0[1] ** 2 + q0[2] ** 2
    cc = q2 - 1.0
    disc = b * b - a * cc
    # f(t) = |q|² - 1 as evaluated at a sample: rounding of the point (|p| / a_min) and of q
    big = jnp.abs(px)[None, :, None] + jnp.abs(py)[None, None, :]
    big = big + (jnp.abs(c[:, 2]) + jnp.abs(affine[2, 3]) + nzk * jnp.abs(dz))[:, None, None]
    err_f = 8.0 * _EPS * (q2 + 1.0 + big * jnp.max(inv, axis=1)[:, None, None])
    # error of the discriminant (its own rounding) plus that of f, as a change of its constant
    noise = 8.0 * _EPS * (b * b + a * jnp.abs(cc)) + a * err_f
    s_c = (c[:, 2] - affine[2, 3]) / dz  # centre plane, z index units
    root = jnp.sqrt(jnp.maximum(disc, 0.0))
    grazing = disc <= 2.0 * noise
    spread = jnp.where(
        grazing,
        jnp.sqrt(jnp.maximum(disc, 0.0) + 2.0 * noise) / a,  # the longest chord possible
        noise / (a * jnp.maximum(root, 1e-30)),  # twice the first-order root error
    )
    t_mid = -b / a
    t_half = jnp.where(grazing, 0.0, root / a)
    lo_t, hi_t = t_mid - t_half, t_mid + t_half
    rounding = 16.0 * _EPS * (
        jnp.abs(t_mid) + t_half + jnp.sqrt(q2 / a) + jnp.abs(s_c)[:, None, None] + 1.0
        + ((jnp.abs(c[:, 2]) + jnp.abs(affine[2, 3])) / jnp.abs(dz))[:, None, None]
    )  # fmt: skip
    err_t = spread + rounding
    lo = (s_c[:, None, None] + lo_t + 0.5) * k - 0.5
    hi = (s_c[:, None, None] + hi_t + 0.5) * k - 0.5
    e = err_t * k + 1e-4
    empty = disc < -2.0 * noise
    # chords wholly outside the grid need no work
    empty = empty | (hi + e < 0.0) | (lo - e > nzk - 1)
    return lo, hi, e, empty


def _columns(affine, x0, *, k: int, sx: int, ny: int):
    """Float indices of the slab's sample columns along x and y (as the other paths compute)."""
    off1 = (jnp.arange(k, dtype=jnp.float32) + 0.5) / k - 0.5
    ix = x0 * k + jnp.arange(sx * k, dtype=jnp.int32)
    iy = jnp.arange(ny * k, dtype=jnp.int32)
    fx = (ix // k).astype(jnp.float32) + off1[ix % k]
    fy = (iy // k).astype(jnp.float32) + off1[iy % k]
    return off1, fx, fy


@partial(jax.jit, static_argnames=("k", "sx", "ny", "nz"))
def _roots(ell, affine, x0, *, k: int, sx: int, ny: int, nz: int):
    """Chords of slab ``[x0, x0 + sx)`` and which of their roots have samples within ``e``.

    Returns ``(chords, flag)``: ``chords`` = (lo, hi, e, empty) as `_chords`, ``flag`` (L, cx,
    cy, 2) true where a root's window holds samples to evaluate with ``level``.
    """
    _, fx, fy = _columns(affine, x0, k=k, sx=sx, ny=ny)
    px = fx * affine[0, 0] + affine[0, 3]
    py = fy * affine[1, 1] + affine[1, 3]
    lo, hi, e, empty = _chords(ell, affine, px, py, nzk=nz * k, k=k)
    flag = jnp.stack([(~empty) & (jnp.floor(r + e) >= jnp.ceil(r - e)) for r in (lo, hi)], -1)
    return (lo, hi, e, empty), flag


@partial(jax.jit, static_argnames=("k", "sx", "ny", "nz", "window"))
def _paint(ell, labels, affine, x0, chords, which, *, k: int, sx: int, ny: int, nz: int,
           window: int):  # fmt: skip
    """Sample labels of the slab, voxel by voxel, from its chords and the evaluated windows.

    Args:
        which: flat indices into the (L, cx, cy, 2) roots of the windows to evaluate (padded
            with the number of roots).

    Returns:
        ``(label, pure, ends, bad)``: per voxel of the slab, (sx, ny, nz), its label where
        all its samples agree (``pure``; None when k = 1: always), the integer chord ends
        ``(a, b)`` (L, cx, cy) in sample units (empty: a > b) for `_mixed_rows`, and ``bad``,
        true when a window overflowed or the evaluated samples were not one interval.
    """
    lo, hi, e, empty = chords
    nzk = nz * k
    n_leaves = lo.shape[0]
    n_roots = 2 * lo.size
    off1, fx, fy = _columns(affine, x0, k=k, sx=sx, ny=ny)

    # windows: the integers within e of each root
    start = jnp.stack([jnp.ceil(r - e) for r in (lo, hi)], -1).astype(jnp.int32).reshape(-1)
    stop = jnp.stack([jnp.floor(r + e) for r in (lo, hi)], -1).astype(jnp.int32).reshape(-1)
    # certainly inside: the integers in (lo + e, hi - e)
    in_a = jnp.floor(lo + e).astype(jnp.int32) + 1
    in_b = jnp.ceil(hi - e).astype(jnp.int32) - 1
    in_ok = (~empty) & (in_a <= in_b)

    live = which < n_roots
    wi = jnp.minimum(which, n_roots - 1)
    leaf, rest = wi // (n_roots // n_leaves), wi % (n_roots // n_leaves)
    cxi, rest = rest // (ny * k * 2), rest % (ny * k * 2)
    cyi = rest // 2
    count = jnp.where(live, stop[wi] - start[wi] + 1, 0)
    overflow = jnp.any(count > window)
    u = start[wi][:, None] + jnp.arange(window, dtype=jnp.int32)[None, :]  # (windows, W)
    valid = (u >= 0) & (u < nzk) & (jnp.arange(window)[None, :] < count[:, None])
    uc = jnp.clip(u, 0, nzk - 1)
    fz = (uc // k).astype(jnp.float32) + off1[uc % k]
    # the same arithmetic as the other paths: float index, then the separable affine
    idx = jnp.stack(
        [jnp.broadcast_to(fx[cxi][:, None], u.shape), jnp.broadcast_to(fy[cyi][:, None], u.shape),
         fz],
        axis=-1,
    )  # fmt: skip
    w = [idx[:, :, a, None] * affine[None, None, :3, a] for a in range(3)]
    points = w[0] + w[1] + w[2] + affine[None, None, :3, 3]
    sub = jax.tree_util.tree_map(lambda x: x[leaf], ell)
    level = jax.vmap(lambda shape, p: shape.level(p))(sub, points)
    inside = valid & (level <= 0)
    first = jnp.min(jnp.where(inside, u, _BIG), axis=1, initial=_BIG)
    last = jnp.max(jnp.where(inside, u, -_BIG), axis=1, initial=-_BIG)
    pair = jnp.where(live, wi // 2, n_roots // 2)  # (leaf, column) of each window
    a_w = jnp.full(n_roots // 2 + 1, _BIG, jnp.int32).at[pair].min(first)[:-1]
    b_w = jnp.full(n_roots // 2 + 1, -_BIG, jnp.int32).at[pair].max(last)[:-1]
    a = jnp.minimum(a_w.reshape(lo.shape), jnp.where(in_ok, in_a, _BIG))
    b = jnp.maximum(b_w.reshape(lo.shape), jnp.where(in_ok, in_b, -_BIG))
    a, b = jnp.maximum(a, 0), jnp.minimum(b, nzk - 1)
    # an evaluated sample outside the shape but within [a, b]: not one interval
    a_e, b_e = a[leaf, cxi, cyi], b[leaf, cxi, cyi]
    holes = jnp.any(valid & ~inside & (u >= a_e[:, None]) & (u <= b_e[:, None]))

    bad = overflow | holes
    # computed once: XLA would otherwise fuse the chain above into every voxel's read below
    a, b = jax.lax.optimization_barrier((a, b))
    if k == 1:  # paint every voxel: the largest label whose chord holds it (painting order)
        zs = jnp.arange(nz, dtype=jnp.int32)[None, None, :]
        out = jnp.zeros((sx, ny, nz), jnp.uint8)  # at most _MAX_LEAVES structures
        for j in range(n_leaves):
            hit = (zs >= a[j][:, :, None]) & (zs <= b[j][:, :, None])
            out = jnp.maximum(out, jnp.where(hit, labels[j].astype(jnp.uint8), jnp.uint8(0)))
        return out, None, (a, b), bad

    # k > 1: per voxel, the leaves holding all its samples and those holding some of them
    def over_subcolumns(v, op):  # (L, sx k, ny k) → (L, sx, ny, 1), by slices (XLA CPU)
        v = v.reshape(n_leaves, sx, k, ny, k)
        parts = [v[:, :, i, :, j] for i in range(k) for j in range(k)]
        return functools.reduce(op, parts)[:, :, :, None]

    a_all, b_all = over_subcolumns(a, jnp.maximum), over_subcolumns(b, jnp.minimum)
    a_any, b_any = over_subcolumns(a, jnp.minimum), over_subcolumns(b, jnp.maximum)
    a_all, b_all, a_any, b_any = jax.lax.optimization_barrier((a_all, b_all, a_any, b_any))
    z_lo = (jnp.arange(nz, dtype=jnp.int32) * k)[None, None, :]
    z_hi = z_lo + (k - 1)
    top = jnp.zeros((sx, ny, nz), jnp.uint8)
    for j in range(n_leaves):
        full = (z_lo >= a_all[j]) & (z_hi <= b_all[j])
        top = jnp.maximum(top, jnp.where(full, labels[j].astype(jnp.uint8), jnp.uint8(0)))
    # a separate pass: XLA's CPU backend fuses one loop with two outputs ~200× slower
    top = jax.lax.optimization_barrier(top)
    edge = jnp.zeros((sx, ny, nz), jnp.uint8)
    for j in range(n_leaves):
        full = (z_lo >= a_all[j]) & (z_hi <= b_all[j])
        some = (z_hi >= a_any[j]) & (z_lo <= b_any[j])
        edge = jnp.maximum(edge, jnp.where(some & ~full, labels[j].astype(jnp.uint8), jnp.uint8(0)))
    edge = jax.lax.optimization_barrier(edge)
    # a voxel is one label when no leaf above its top label touches it without holding it
    return top, edge <= top, (a, b), bad


@partial(jax.jit, static_argnames=("k", "ny", "nz"))
def _mixed_rows(chords, labels, voxels, *, k: int, ny: int, nz: int):
    """The k³ sample labels of slab voxels ``voxels`` (flat; out of range: zeros)."""
    a, b = chords
    x, rest = voxels // (ny * nz), voxels % (ny * nz)
    y, z = rest // nz, rest % nz
    o = jnp.arange(k, dtype=jnp.int32)
    ox, oy = (g.reshape(-1) for g in jnp.meshgrid(o, o, indexing="ij"))
    cx = jnp.clip(x[:, None] * k + ox[None, :], 0, a.shape[1] - 1)  # (rows, k²)
    cy = jnp.clip(y[:, None] * k + oy[None, :], 0, a.shape[2] - 1)
    u = (z[:, None] * k + o[None, :])[:, None, :]  # (rows, 1, k)
    out = jnp.zeros((voxels.shape[0], k * k, k), jnp.uint8)
    for j in range(a.shape[0]):
        hit = (u >= a[j][cx, cy][:, :, None]) & (u <= b[j][cx, cy][:, :, None])
        out = jnp.maximum(out, jnp.where(hit, labels[j].astype(jnp.uint8), jnp.uint8(0)))
    live = voxels < a.shape[1] // k * ny * nz
    return jnp.where(live[:, None], out.reshape(-1, k**3), jnp.uint8(0))


def sample(groups, affine: np.ndarray, shape: tuple[int, int, int], k: int):
    """Labels of every voxel whose samples agree, and the samples of the others.

    Returns ``(cover, voxels, fine)`` as the general path does (``cover`` the flat labels,
    ``voxels`` the sorted linear indices of voxels with mixed samples, ``fine`` their samples,
    rows padded to a power of two), or None when the column path cannot answer exactly.
    """
    g = groups[0]
    ell = g.shapes
    labels = jnp.asarray(g.labels)
    aff = jnp.asarray(affine.astype(np.float32))
    nx, ny, nz = shape
    per_x = ny * nz * k * k  # voxels painted, and sub-columns per voxel column
    sx = max(1, min(nx, _SLAB_SAMPLES // per_x))
    covers, voxels, fines = [], [], []
    done = 0  # x columns already labelled
    for x0 in range(0, nx, sx):
        x0 = min(x0, nx - sx)  # a full last slab (one compiled size) overlapping the previous one
        skip = (done - x0) * ny * nz  # voxels of this slab labelled already
        done = x0 + sx
        dims = dict(k=k, sx=sx, ny=ny, nz=nz)
        chords, flag = _roots(ell, aff, np.int32(x0), **dims)
        which = np.flatnonzero(np.asarray(flag)).astype(np.int32)
        pad = 1 << max(6, math.ceil(math.log2(which.size + 1)))
        which = np.pad(which, (0, pad - which.size), constant_values=flag.size)
        first, pure, ends, bad = _paint(ell, labels, aff, np.int32(x0), chords, which, **dims,
                                        window=_WINDOW)  # fmt: skip
        if bool(bad):
            return None
        covers.append(first.reshape(-1)[skip:])  # outside jit: XLA's CPU reshape copies slowly
        if k == 1:
            continue
        mixed = np.flatnonzero(~np.asarray(pure).reshape(-1)[skip:]).astype(np.int32) + skip
        voxels.append(mixed + np.int32(x0 * ny * nz))
        step = max(16, (1 << 22) // (labels.size * k**3))  # rows per call (bounds memory)
        for start in range(0, mixed.size, step):
            part = mixed[start : start + step]
            size = min(step, 1 << max(4, math.ceil(math.log2(part.size))))
            rows = np.pad(part, (0, size - part.size), constant_values=sx * ny * nz)
            fines.append(_mixed_rows(ends, labels, rows, k=k, ny=ny, nz=nz)[: part.size])
    cover = jnp.concatenate(covers)
    if k == 1:
        return cover, np.zeros(0, np.int32), jnp.zeros((16, 1), cover.dtype)
    vox = np.concatenate(voxels)
    pad = 1 << max(4, math.ceil(math.log2(vox.size + 1)))
    fine = jnp.concatenate([*fines, jnp.zeros((pad - vox.size, k**3), cover.dtype)])
    return cover, vox, fine
