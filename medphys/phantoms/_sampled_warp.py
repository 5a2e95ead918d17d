"""A deformation sampled once on a regular grid and interpolated: fast voxelisation of warps.

Some warps are costly to evaluate: the backward map of a trained elastic displacement
(`medphys.neural.ElasticWarp`) runs a network a dozen times per point to invert it. When many
phantoms share one deformation (the breasts of one density class pressed by the same paddles), or
one phantom is voxelised finely, evaluating it at every voxel repeats the same smooth work.
`SampledWarp.create(warp, lower_mm, upper_mm, spacing_mm)` evaluates ``warp.backward`` once on the
nodes of a grid and answers ``backward(x) = x + d(x)``, with ``d`` the trilinear interpolant of
the nodes' displacements ``backward(node) - node``. Points outside the grid's box take the
displacement of the nearest box point. A ``support`` shape keeps everything outside it in place,
evaluated exactly at each point rather than interpolated: a deformation that stops at a plane (a
breast in front of its chest wall) stays sharp there. Sample such a warp without its support
(`medphys.neural.ElasticWarp` with ``support=None``: the displacement continues smoothly past
the plane) and give the support here.

Interpolation error: for a displacement with bounded second derivatives, trilinear interpolation
errs by at most ``h² / 8 · max|∂²d|`` per axis; `SampledWarp.create` measures it at the cell
centres (where it is largest) against the source warp and reports it as ``error_mm``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import FieldError

__all__ = ["SampledWarp"]

_WHERE = "medphys.phantoms.SampledWarp.create"
#: nodes evaluated per batch when sampling the source warp (bounds the memory of costly warps)
_BATCH = 65_536


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SampledWarp:
    """A backward map interpolated from its values on a regular grid.

    Attributes:
        displacement_mm: ``(nx, ny, nz, 3)`` float32: ``backward(node) - node`` at the nodes.
        lower_mm: ``(3,)`` the first node.
        spacing_mm: ``(3,)`` the node spacing.
        support: a shape (``level < 0`` inside) outside which nothing moves, or ``None``.
        max_stretch: Lipschitz bound of ``backward`` (static; used by the voxelizer's coarse
            test).
        error_mm: the largest difference from the source warp measured at the cell centres
            (static; the support not applied).
    """

    displacement_mm: Float[Array, "nx ny nz 3"]
    lower_mm: Float[Array, "3"]
    spacing_mm: Float[Array, "3"]
    support: Any = None
    max_stretch: float = dataclasses.field(metadata={"static": True}, default=2.0)
    error_mm: float = dataclasses.field(metadata={"static": True}, default=0.0)

    @classmethod
    def create(
        cls,
        warp: Any,
        lower_mm: Any,
        upper_mm: Any,
        spacing_mm: float,
        *,
        support: Any = None,
        check: bool = True,
    ) -> SampledWarp:
        """Sample ``warp.backward`` on the grid from ``lower_mm`` to (at least) ``upper_mm``.

        Args:
            warp: any warp with ``backward(points)`` (and ``max_stretch``).
            lower_mm, upper_mm: the box to sample (3 numbers each, ``lower < upper``).
            spacing_mm: node spacing (mm, > 0); the box is widened to a whole number of cells.
            support: a shape outside which nothing moves (applied exactly, after interpolation).
            check: measure the interpolation error at every cell centre (``error_mm``; this
                evaluates the source warp once more per cell).

        Raises:
            FieldError: a box or spacing that is not finite and positive, a box of more than
                64 million nodes, or a warp without ``backward``.
        """
        if not callable(getattr(warp, "backward", None)):
            raise FieldError(
                _WHERE, "warp", f"`warp` must have a backward(points) method (got {warp!r})"
            )
        lo = _vector("lower_mm", lower_mm)
        hi = _vector("upper_mm", upper_mm)
        if not np.all(hi > lo):
            raise FieldError(
                _WHERE,
                "upper_mm",
                f"`upper_mm` {hi.tolist()} must exceed `lower_mm` {lo.tolist()} on every axis",
            )
        h = float(spacing_mm) if isinstance(spacing_mm, (int, float)) else float("nan")
        if not (np.isfinite(h) and h > 0):
            raise FieldError(
                _WHERE, "spacing_mm", f"`spacing_mm` must be a positive number (got {spacing_mm!r})"
            )
        counts = np.ceil((hi - lo) / h - 1e-9).astype(int) + 1
        if int(np.prod(counts)) > 64_000_000:
            raise FieldError(
                _WHERE,
                "spacing_mm",
                f"`spacing_mm` = {h:g} gives {counts.tolist()} nodes (over 64 million); "
                "use a coarser spacing or a smaller box",
            )
        axes = [lo[i] + h * np.arange(counts[i]) for i in range(3)]
        nodes = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        moved = _evaluate(warp, nodes)
        grid = (moved - nodes).reshape((*counts, 3)).astype(np.float32)
        sampled = cls(
            jnp.asarray(grid),
            jnp.asarray(lo, jnp.float32),
            jnp.full(3, h, jnp.float32),
            support,
            max_stretch=max(_stretch(grid, h), float(getattr(warp, "max_stretch", 1.0))),
        )
        if not check:
            return sampled
        centres = (nodes.reshape((*counts, 3))[:-1, :-1, :-1] + h / 2).reshape(-1, 3)
        exact = _evaluate(warp, centres)
        approx = np.asarray(sampled.interpolate(jnp.asarray(centres, jnp.float32)), np.float64)
        error = float(np.max(np.abs(approx - exact))) if centres.size else 0.0
        return dataclasses.replace(sampled, error_mm=error)

    def backward(self, points: Float[Array, "*batch 3"]) -> Float[Array, "*batch 3"]:
        """``x + d(x)``, ``d`` interpolated trilinearly (nearest box point outside the grid);
        ``x`` outside the support."""
        moved = self.interpolate(points)
        if self.support is None:
            return moved
        inside = self.support.level(points.reshape(-1, 3)).reshape(points.shape[:-1]) < 0
        return jnp.where(inside[..., None], moved, points)

    def interpolate(self, points: Float[Array, "*batch 3"]) -> Float[Array, "*batch 3"]:
        """``x + d(x)`` everywhere (the support not applied)."""
        flat = points.reshape(-1, 3)
        index = (flat - self.lower_mm.astype(flat.dtype)[None, :]) / self.spacing_mm.astype(
            flat.dtype
        )[None, :]
        shape = self.displacement_mm.shape[:3]
        coords = [jnp.clip(index[:, i], 0.0, shape[i] - 1.0) for i in range(3)]
        d = jnp.stack(
            [
                jax.scipy.ndimage.map_coordinates(
                    self.displacement_mm[..., c].astype(flat.dtype), coords, order=1
                )
                for c in range(3)
            ],
            axis=-1,
        )
        return (flat + d).reshape(points.shape)


def _vector(name: str, value: Any) -> np.ndarray:
    try:
        v = np.asarray(value, np.float64).reshape(-1)
    except (TypeError, ValueError):
        v = np.full(1, np.nan)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise FieldError(_WHERE, name, f"`{name}` must be 3 finite numbers (got {value!r})")
    return v


def _evaluate(warp: Any, points: np.ndarray) -> np.ndarray:
    """``warp.backward`` at ``(n, 3)`` points, in batches, as float64 NumPy."""
    backward = jax.jit(lambda p: warp.backward(p))
    out = np.empty_like(points)
    for start in range(0, points.shape[0], _BATCH):
        chunk = points[start : start + _BATCH]
        pad = _BATCH - chunk.shape[0] if points.shape[0] > _BATCH else 0
        batch = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
        moved = np.asarray(backward(jnp.asarray(batch, jnp.float32)), np.float64)
        out[start : start + chunk.shape[0]] = moved[: chunk.shape[0]]
    return out


def _stretch(grid: np.ndarray, h: float) -> float:
    """A Lipschitz bound of ``x + d(x)`` for the trilinear interpolant: ``1.25 (1 + ‖g‖_F)``
    with ``g[c, a]`` the largest ``|∂d_c/∂x_a|``, which is the largest node difference along
    ``a`` over ``h`` (the interpolant's slope along an axis is a mean of its edges' slopes)."""
    g = np.zeros((3, 3))
    for axis in range(3):
        if grid.shape[axis] > 1:
            g[:, axis] = np.abs(np.diff(grid, axis=axis)).reshape(-1, 3).max(0) / h
    return 1.25 * (1.0 + float(np.sqrt((g * g).sum())))
