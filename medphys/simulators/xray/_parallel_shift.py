"""Fast parallel-beam projector: Joseph's method on a voxel-aligned virtual detector.

For a parallel beam on a volume whose in-plane axes are the world x and y axes, every ray of a
view crosses voxel column ``i`` (the view's dominant index axis) at ``j = j_mid + (i - i_c) T``, the
same slope ``T`` (``|T| ≤ 1``) for all rays. On a *virtual* detector whose rays are one voxel apart
along ``j`` the fractional part of ``j`` is then the same for every ray of a column, so Joseph's
linear interpolation of a whole column becomes one contiguous slice and one multiply-add (no
per-sample gathers), batched over views. The virtual projections are then interpolated linearly to
the real detector pixels. The composition is linear with an exact transpose (slices transpose to
slice updates), and agrees with per-ray Joseph to the discretisation floor (the extra linear
interpolation along u widens the ray footprint by at most ``1 / OVERSAMPLE`` voxel; the virtual
rays are ``OVERSAMPLE`` per voxel).

Used for `ParallelBeam` on axis-aligned volumes with few slices (2-D and thin stacks); thick
stacks keep the per-ray path, whose gathers already move whole z-columns.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array

#: Virtual rays per voxel along the interpolated axis (2: the footprint widens by ≤ half a voxel).
OVERSAMPLE = 2


def shift_layout(shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """Static sizes: rows ``nmax``, virtual rays ``L``, lower pad ``P`` and table width ``W``."""
    n1, n2, _ = shape
    nmax = max(n1, n2)
    n_virtual = nmax + nmax + 6
    pad = nmax + 6
    width = pad + n_virtual + nmax + 8
    return nmax, n_virtual, pad, width


def _table(data: Array, shape: tuple[int, int, int]) -> Array:
    """``(2, nmax, W, zb)``: the volume with columns along j (x-driven views) and its transpose
    (y-driven views), zero-padded."""
    n1, n2 = shape[0], shape[1]
    nmax, _, pad, width = shift_layout(shape)
    zb = data.reshape(n1, n2, -1)

    def place(a: Array) -> Array:
        rows, cols = a.shape[0], a.shape[1]
        return jnp.pad(a, ((0, nmax - rows), (pad, width - pad - cols), (0, 0)))

    return jnp.stack([place(zb), place(jnp.swapaxes(zb, 0, 1))])


def shift_forward(data: Array, affine: Array, geometry: Any, shape: tuple[int, int, int]) -> Array:
    """``data (x, y, z, *batch)`` → ``(views, u, z * batch)`` line integrals (mm)."""
    dtype = data.dtype
    n1, n2, _ = shape
    nmax, n_virtual, pad, _ = shift_layout(shape)
    table = _table(data, shape)
    zb = table.shape[-1]
    a = jnp.asarray(affine, dtype)
    sx, sy, ox, oy = a[0, 0], a[1, 1], a[0, 3], a[1, 3]
    theta = jnp.asarray(geometry.angles, dtype)
    c, s = jnp.cos(theta), jnp.sin(theta)
    iso = jnp.asarray(geometry.isocenter_mm, dtype)
    # dominant index axis of the direction (-s, c): x when |s / sx| >= |c / sy|
    xdrive = jnp.abs(s * sy) >= jnp.abs(c * sx)
    one = jnp.ones((), dtype)
    s_safe = jnp.where(xdrive, s, one)
    c_safe = jnp.where(xdrive, one, c)
    # j(i, u) = A + u B + i T along the driven column i (x-driven; y-driven with roles swapped)
    a_x = (iso[1] - oy + c / s_safe * (iso[0] - ox)) / sy
    b_x = 1.0 / (s_safe * sy)
    t_x = -sx * c / (s_safe * sy)
    a_y = (iso[0] - ox + s / c_safe * (iso[1] - oy)) / sx
    b_y = 1.0 / (c_safe * sx)
    t_y = -sy * s / (c_safe * sx)
    big_a = jnp.where(xdrive, a_x, a_y)
    big_b = jnp.where(xdrive, b_x, b_y)
    slope = jnp.where(xdrive, t_x, t_y)
    step_mm = jnp.where(xdrive, jnp.abs(sx / s_safe), jnp.abs(sy / c_safe))
    n_drive = jnp.where(xdrive, n1, n2).astype(dtype)
    i_c = (n_drive - 1.0) / 2.0
    j0 = -float(nmax // 2 + 3)
    sel = jnp.where(xdrive, 0, 1).astype(jnp.int32)
    flat = table.reshape(2 * nmax, table.shape[2], zb)

    def column(acc: Array, i: Array) -> tuple[Array, None]:
        rows = sel * nmax + i
        zero = jnp.zeros((), jnp.int32)
        out = []
        for q in range(OVERSAMPLE):  # virtual rays q / OVERSAMPLE voxel apart, interleaved
            pos = j0 + q / OVERSAMPLE + (i.astype(dtype) - i_c) * slope
            k = jnp.floor(pos)
            phi = (pos - k)[:, None, None]
            start = k.astype(jnp.int32) + pad

            def take(r: Array, st: Array) -> Array:
                return jax.lax.dynamic_slice(flat, (r, st, zero), (1, n_virtual + 1, zb))[0]

            seg = jax.vmap(take)(rows, start)
            out.append(acc[q] + (1.0 - phi) * seg[:, :-1] + phi * seg[:, 1:])
        return jnp.stack(out), None

    acc0 = jnp.zeros((OVERSAMPLE, theta.shape[0], n_virtual, zb), dtype)
    acc, _ = jax.lax.scan(column, acc0, jnp.arange(nmax, dtype=jnp.int32))
    # (q, views, k, zb) → (views, k * OVERSAMPLE + q, zb)
    virtual = jnp.moveaxis(acc, 0, 2).reshape(theta.shape[0], n_virtual * OVERSAMPLE, zb)
    virtual = virtual * step_mm[:, None, None]
    n_fine = n_virtual * OVERSAMPLE

    # real pixels: continuous virtual index, linear interpolation (zero outside)
    u = geometry.u_mm(dtype)
    kr = (big_a[:, None] + u[None, :] * big_b[:, None] + (i_c * slope)[:, None] - j0) * OVERSAMPLE
    fl = jnp.floor(kr)
    w1 = kr - fl
    k0 = fl.astype(jnp.int32)
    zero = jnp.zeros((), dtype)
    w0 = jnp.where((k0 >= 0) & (k0 < n_fine), 1.0 - w1, zero)
    w1 = jnp.where((k0 >= -1) & (k0 < n_fine - 1), w1, zero)
    k0c = jnp.clip(k0, 0, n_fine - 1)
    k1c = jnp.clip(k0 + 1, 0, n_fine - 1)
    gather = jax.vmap(lambda p, i: p[i])
    return w0[..., None] * gather(virtual, k0c) + w1[..., None] * gather(virtual, k1c)
