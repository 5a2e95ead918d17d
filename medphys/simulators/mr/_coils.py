"""Receive coils: sensitivity maps of ideal (uniform) coils and of circular surface loops.

A loop's receive sensitivity follows from reciprocity (Hoult 2000): it is proportional to the
transverse field the loop would make per unit current, ``c = Bx - i By`` (B0 along world z, the
bore axis). The field of a circular current loop has a closed form in complete elliptic integrals
(Smythe 1950; Simpson et al. 2001), evaluated here with the arithmetic-geometric mean, so the maps
are exact for thin circular loops, smooth inside the body and cheap (no segment sums).

References:
    Hoult DI. The principle of reciprocity in signal strength calculations - a mathematical guide.
    Concepts Magn Reson 12:173-187 (2000).
    Simpson JC, Lane JE, Immer CD, Youngquist RC. Simple analytic expressions for the magnetic
    field of a circular current loop. NASA Technical Memorandum NASA/TM-2013-217919 (2001).
    Roemer PB, Edelstein WA, Hayes CE, Souza SP, Mueller OM. The NMR phased array. Magn Reson Med
    16:192-225 (1990) (loop arrays, root-sum-of-squares combination).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Complex, Float

from . import _checks as chk

__all__ = ["AbstractCoils", "LoopCoils", "UniformCoils", "ellipke"]

_AGM_STEPS = 8  # quadratic convergence: float64 accuracy for m <= 1 - 1e-9


def ellipke(m: Float[Array, "*shape"]) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
    """Complete elliptic integrals of the first and second kind, ``K(m)`` and ``E(m)``, for m in [0, 1).

    Parameter convention as ``scipy.special.ellipk`` (``m = k²``). Arithmetic-geometric mean with a
    fixed number of steps (jit- and grad-safe).
    """
    a = jnp.ones_like(m)
    b = jnp.sqrt(1.0 - m)
    total = 0.5 * m  # sum_n 2^(n-1) c_n^2, with c_0^2 = m
    weight = 0.5
    for _ in range(_AGM_STEPS):
        c = 0.5 * (a - b)
        a, b = 0.5 * (a + b), jnp.sqrt(a * b)
        weight = 2.0 * weight
        total = total + weight * c * c
    k = 0.5 * math.pi / a
    return k, k * (1.0 - total)


def _loop_field(
    x: Array, y: Array, z: Array, center: Array, normal: Array, radius: Any
) -> tuple[Array, Array]:
    """Transverse world field ``(Bx, By)`` of a unit-current circular loop (arbitrary common scale).

    ``x, y, z`` are world coordinates (mm) that broadcast together; ``normal`` is the loop's unit
    axis, which lies in the transverse plane (``normal[2] == 0``) for the arrays built here.
    """
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    h = dx * normal[0] + dy * normal[1] + dz * normal[2]  # height above the loop plane
    rx, ry, rz = dx - h * normal[0], dy - h * normal[1], dz - h * normal[2]
    rho2 = rx * rx + ry * ry + rz * rz
    rho = jnp.sqrt(rho2)
    a2 = radius * radius
    r2 = rho2 + h * h
    alpha2 = a2 + r2 - 2.0 * radius * rho
    beta2 = a2 + r2 + 2.0 * radius * rho
    beta = jnp.sqrt(beta2)
    k, e = ellipke(1.0 - alpha2 / beta2)
    bz = ((a2 - r2) * e + alpha2 * k) / (2.0 * alpha2 * beta)
    # B_rho / rho is finite on the loop axis but computed as 0/0 there: guard both branches
    on_axis = rho < 1e-6 * radius
    safe_rho2 = jnp.where(on_axis, 1.0, rho2)
    brho_over_rho = jnp.where(
        on_axis, 0.0, h * ((a2 + r2) * e - alpha2 * k) / (2.0 * alpha2 * beta * safe_rho2)
    )
    return brho_over_rho * rx + bz * normal[0], brho_over_rho * ry + bz * normal[1]


def _axes_world(
    affine: Array, shape: tuple[int, int, int], dtype: Any
) -> tuple[Array, Array, Array]:
    """World x, y, z (mm) of every voxel centre as three broadcastable ``(x, y, z)`` arrays."""
    a = jnp.asarray(affine, dtype)
    i = jnp.arange(shape[0], dtype=dtype)[:, None, None]
    j = jnp.arange(shape[1], dtype=dtype)[None, :, None]
    k = jnp.arange(shape[2], dtype=dtype)[None, None, :]
    return tuple(a[r, 0] * i + a[r, 1] * j + a[r, 2] * k + a[r, 3] for r in range(3))


def _grid_center(affine: Array, shape: tuple[int, int, int], dtype: Any) -> Array:
    a = jnp.asarray(affine, dtype)
    mid = jnp.asarray([(n - 1) / 2 for n in shape], dtype)
    return a[:3, :3] @ mid + a[:3, 3]


class AbstractCoils(abc.ABC):
    """A receive array: ``n_coils`` complex sensitivity maps on the phantom's grid."""

    n_coils: int

    @abc.abstractmethod
    def sensitivities(
        self, affine: Float[Array, "4 4"], shape: tuple[int, int, int], *, dtype: Any = jnp.float32
    ) -> Complex[Array, "coils x y z"]:
        """Complex receive sensitivity of each coil at each voxel centre (jit-safe)."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class UniformCoils(AbstractCoils):
    """Ideal coils with spatially uniform sensitivity ``exp(2πi k/n)/sqrt(n)`` (k = 0 .. n-1).

    The root-sum-of-squares of the sensitivities is 1, so the combined image is the object's
    magnetisation for any ``n_coils``; ``n_coils = 1`` is an ideal body (volume) coil.
    """

    n_coils: int = dataclasses.field(default=1, metadata={"static": True})

    @classmethod
    def create(cls, n_coils: int = 1) -> UniformCoils:
        """Validated constructor.

        Raises:
            ValueError: ``n_coils < 1``.
        """
        where = f"{chk.PREFIX}UniformCoils.create"
        return cls(n_coils=chk.integer(where, "n_coils", n_coils, minimum=1))

    def sensitivities(self, affine, shape, *, dtype=jnp.float32):
        phase = 2.0 * math.pi * jnp.arange(self.n_coils, dtype=dtype) / self.n_coils
        amp = 1.0 / math.sqrt(self.n_coils)
        c = jax.lax.complex(amp * jnp.cos(phase), amp * jnp.sin(phase))
        return jnp.broadcast_to(c[:, None, None, None], (self.n_coils, *shape))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LoopCoils(AbstractCoils):
    """Circular surface loops evenly spaced on a cylinder around the bore axis.

    Loop ``k`` is centred at azimuth ``90° + 360° k/n`` (the first one anterior, +y) at the height
    of the grid's centre, at ``array_radius_mm`` from the axis through the grid's centre parallel
    to world z, in the plane tangent to the cylinder. Sensitivities are the loops' transverse
    fields ``Bx - i By`` (reciprocity), scaled so that their root-sum-of-squares is 1 at the grid's
    centre: images are brighter near the coils, as on a scanner.

    Attributes:
        n_coils: number of loops.
        array_radius_mm: distance of the loop centres from the axis (mm); ``None``: 0.55 times the
            larger in-plane field of view.
        loop_radius_mm: loop radius (mm); ``None``: ``array_radius_mm * min(π / n_coils, 0.6)``
            (neighbours about touch).
    """

    n_coils: int = dataclasses.field(metadata={"static": True})
    array_radius_mm: float | None = dataclasses.field(default=None, metadata={"static": True})
    loop_radius_mm: float | None = dataclasses.field(default=None, metadata={"static": True})

    @classmethod
    def create(
        cls,
        n_coils: int,
        *,
        array_radius_mm: float | None = None,
        loop_radius_mm: float | None = None,
    ) -> LoopCoils:
        """Validated constructor.

        Raises:
            ValueError: ``n_coils < 1`` or a non-positive radius.

        Example:
            >>> LoopCoils.create(8).n_coils
            8
        """
        where = f"{chk.PREFIX}LoopCoils.create"
        n = chk.integer(where, "n_coils", n_coils, minimum=1)
        ar = (
            None
            if array_radius_mm is None
            else chk.positive(where, "array_radius_mm", array_radius_mm, " (mm)")
        )
        lr = (
            None
            if loop_radius_mm is None
            else chk.positive(where, "loop_radius_mm", loop_radius_mm, " (mm)")
        )
        return cls(n_coils=n, array_radius_mm=ar, loop_radius_mm=lr)

    def geometry(
        self, affine: Float[Array, "4 4"], shape: tuple[int, int, int], *, dtype: Any = jnp.float32
    ) -> tuple[Float[Array, "coils 3"], Float[Array, "coils 3"], Array]:
        """Loop centres (mm), unit normals and radius (mm) for a grid."""
        a = jnp.asarray(affine, dtype)
        center = _grid_center(a, shape, dtype)
        if self.array_radius_mm is None:
            extent = jnp.sqrt(jnp.sum(a[:3, :3] ** 2, axis=0)) * jnp.asarray(shape, dtype)
            array_radius = 0.55 * jnp.maximum(extent[0], extent[1])
        else:
            array_radius = jnp.asarray(self.array_radius_mm, dtype)
        if self.loop_radius_mm is None:
            loop_radius = array_radius * min(math.pi / self.n_coils, 0.6)
        else:
            loop_radius = jnp.asarray(self.loop_radius_mm, dtype)
        phi = 0.5 * math.pi + 2.0 * math.pi * jnp.arange(self.n_coils, dtype=dtype) / self.n_coils
        normals = jnp.stack([jnp.cos(phi), jnp.sin(phi), jnp.zeros_like(phi)], axis=-1)
        centers = center[None, :] + array_radius * normals
        return centers, normals, loop_radius

    def sensitivities(self, affine, shape, *, dtype=jnp.float32):
        centers, normals, radius = self.geometry(affine, shape, dtype=dtype)
        x, y, z = _axes_world(affine, shape, dtype)
        mid = _grid_center(affine, shape, dtype)

        def one(center, normal):
            bx, by = _loop_field(x, y, z, center, normal, radius)
            cx, cy = _loop_field(mid[0], mid[1], mid[2], center, normal, radius)
            return jax.lax.complex(bx, -by), cx * cx + cy * cy

        maps, at_center = jax.vmap(one)(centers, normals)
        return maps / jnp.sqrt(jnp.sum(at_center))
