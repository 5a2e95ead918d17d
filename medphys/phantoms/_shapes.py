"""Analytic shapes as implicit functions in JAX.

Each shape is an immutable PyTree (parameters are leaves, hence differentiable) with
``level(points)``: negative inside, positive outside, zero on the surface, in millimetres near the
surface (an exact signed distance for spheres and circular cylinders, a first-order one for
ellipsoids). Voxelization only needs the sign; smooth blending and meshing use the value.

World coordinates are RAS+ millimetres (see `medphys._types`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def _rotation(angles_rad: Float[Array, "3"]) -> Float[Array, "3 3"]:
    """Rotation matrix R = Rz(c) @ Ry(b) @ Rx(a) for angles (a, b, c) about x, y, z."""
    a, b, c = angles_rad[0], angles_rad[1], angles_rad[2]
    ca, sa, cb, sb, cc, sc = jnp.cos(a), jnp.sin(a), jnp.cos(b), jnp.sin(b), jnp.cos(c), jnp.sin(c)
    one, zero = jnp.ones_like(a), jnp.zeros_like(a)
    rx = jnp.stack(
        [jnp.stack([one, zero, zero]), jnp.stack([zero, ca, -sa]), jnp.stack([zero, sa, ca])]
    )
    ry = jnp.stack(
        [jnp.stack([cb, zero, sb]), jnp.stack([zero, one, zero]), jnp.stack([-sb, zero, cb])]
    )
    rz = jnp.stack(
        [jnp.stack([cc, -sc, zero]), jnp.stack([sc, cc, zero]), jnp.stack([zero, zero, one])]
    )
    return rz @ ry @ rx


def _lift(v: Array, points: Array) -> Array:
    """Give a per-axis vector the batch rank of ``points`` (explicit broadcasting)."""
    return jnp.reshape(v, (1,) * (points.ndim - 1) + v.shape)


def _local(
    points: Float[Array, "*batch 3"], center: Array, angles: Array
) -> Float[Array, "*batch 3"]:
    """World points → the shape's local frame (rotation applied as R^T (p - c))."""
    d = points - _lift(center, points)
    r = _rotation(angles)
    # q_j = sum_i d_i R_ij, written out: XLA's CPU dot is slow for a 3-wide contraction
    return jnp.stack(
        [d[..., 0] * r[0, j] + d[..., 1] * r[1, j] + d[..., 2] * r[2, j] for j in range(3)], axis=-1
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Ellipsoid:
    """Solid ellipsoid ``sum(((R^T (p - c)) / r)^2) <= 1``.

    Attributes:
        center_mm: (3,) centre.
        semi_axes_mm: (3,) semi-axes along the local x, y, z axes.
        rotation_rad: (3,) rotation angles about x, y, z (applied x, then y, then z).
    """

    center_mm: Float[Array, "3"]
    semi_axes_mm: Float[Array, "3"]
    rotation_rad: Float[Array, "3"]

    def level(self, points: Float[Array, "*batch 3"]) -> Float[Array, "*batch"]:
        q = _local(points, self.center_mm, self.rotation_rad)
        q = q / _lift(self.semi_axes_mm, q)
        radius = jnp.sqrt(jnp.sum(q * q, axis=-1) + 1e-30)
        return (radius - 1.0) * jnp.min(self.semi_axes_mm)

    def volume_mm3(self) -> Array:
        return 4.0 / 3.0 * jnp.pi * jnp.prod(self.semi_axes_mm)

    def scaled(self, factor: Float[Array, "3"], about: Float[Array, "3"]) -> Ellipsoid:
        """Scale the position about ``about`` and the size by ``factor`` (world axes, mm)."""
        return Ellipsoid(
            about + (self.center_mm - about) * factor, self.semi_axes_mm * factor, self.rotation_rad
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EllipticCylinder:
    """Solid elliptic cylinder, axis along the local z, capped at ``±half_length_mm``.

    Attributes:
        center_mm: (3,) centre.
        semi_axes_mm: (2,) semi-axes of the cross-section (local x, y).
        half_length_mm: () half the length along the local z axis.
        rotation_rad: (3,) rotation angles about x, y, z.
    """

    center_mm: Float[Array, "3"]
    semi_axes_mm: Float[Array, "2"]
    half_length_mm: Float[Array, ""]
    rotation_rad: Float[Array, "3"]

    def level(self, points: Float[Array, "*batch 3"]) -> Float[Array, "*batch"]:
        q = _local(points, self.center_mm, self.rotation_rad)
        xy = q[..., :2] / _lift(self.semi_axes_mm, q)
        radial = (jnp.sqrt(jnp.sum(xy * xy, axis=-1) + 1e-30) - 1.0) * jnp.min(self.semi_axes_mm)
        axial = jnp.abs(q[..., 2]) - self.half_length_mm
        return jnp.maximum(radial, axial)

    def volume_mm3(self) -> Array:
        return jnp.pi * jnp.prod(self.semi_axes_mm) * 2.0 * self.half_length_mm

    def scaled(self, factor: Float[Array, "3"], about: Float[Array, "3"]) -> EllipticCylinder:
        """Scale position and size by ``factor`` (world axes; exact for unrotated cylinders)."""
        return EllipticCylinder(
            about + (self.center_mm - about) * factor,
            self.semi_axes_mm * factor[:2],
            self.half_length_mm * factor[2],
            self.rotation_rad,
        )


Shape = Ellipsoid | EllipticCylinder
