"""A trained displacement as a phantom deformation every simulator sees.

The voxelizer asks a warp for ``backward(x)``: the reference point ``X`` that the deformation
carries to the world point ``x``. The solver gives the forward map ``x = X + u(X)``; its inverse is
found by the fixed-point iteration ``X ← x − u(X)``, which contracts where ``|∇u| < 1`` and is
followed by Newton steps ``X ← X − F(X)⁻¹ (X + u(X) − x)`` that square the error. Outside the
``support`` (e.g. behind a clamped chest wall) nothing moves.

``ElasticWarp.create`` checks, before any phantom is voxelised, that the deformation does not fold
(``det F > 0``) on a grid covering the body and its surroundings, and records the Lipschitz bound
of ``backward`` that the voxelizer's coarse test needs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from ._elasticity import ElasticSolution

__all__ = ["ElasticWarp"]

_WHERE = "medphys.neural.ElasticWarp.create"


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ElasticWarp:
    """Backward map of a trained elastic displacement (world point now → reference point).

    Attributes:
        params: the displacement network's parameters (leaves).
        support: a shape whose inside moves, or ``None`` (everywhere).
        theta: the problem parameters' values (in the solution's order).
        field: ``field(params, X, theta) -> u`` (static).
        iterations: fixed-point iterations before the Newton steps (static).
        newton: Newton steps (static).
        max_stretch: Lipschitz bound of ``backward`` (static; used by the voxelizer).
    """

    params: Any
    support: Any
    theta: Any
    field: Any = dataclasses.field(metadata={"static": True})
    iterations: int = dataclasses.field(metadata={"static": True}, default=12)
    newton: int = dataclasses.field(metadata={"static": True}, default=2)
    max_stretch: float = dataclasses.field(metadata={"static": True}, default=2.0)

    @classmethod
    def create(
        cls,
        solution: ElasticSolution,
        *,
        support: Any = None,
        parameters: dict[str, float] | None = None,
        check_lower_mm: Any = None,
        check_upper_mm: Any = None,
        check_spacing_mm: float = 2.0,
    ) -> ElasticWarp:
        """The warp of a converged, fold-free solution.

        Args:
            solution: a `medphys.neural.ElasticSolution` (it must pass ``.check()``).
            support: a shape (``level < 0`` inside) outside which the displacement is zero, such
                as the half-space in front of a clamped chest wall; ``None`` moves everything.
            parameters: one value per `Parameter` of a parametric solution, by name.
            check_lower_mm, check_upper_mm: the corners of the region where ``det F > 0`` and the
                inverse are checked (default: the body's box, widened by 10 %).
            check_spacing_mm: the check grid's spacing.

        Raises:
            ValueError: the solution did not converge, or the deformation folds (``det F ≤ 0``)
                somewhere on the check grid, or the inverse does not converge there.
        """
        solution.check()
        values = dict(parameters or {})
        names = [p.name for p in solution.parameters]
        if sorted(values) != sorted(names):
            raise ValueError(
                f"{_WHERE}: give exactly the parameters {names} (got {sorted(values)})"
            )
        for p in solution.parameters:
            if not p.low <= float(values[p.name]) <= p.high:
                raise ValueError(
                    f"{_WHERE}: parameter {p.name!r} = {values[p.name]} lies outside its trained "
                    f"range [{p.low}, {p.high}]"
                )
        theta = jnp.asarray([float(values[n]) for n in names], jnp.float32).reshape(len(names))
        warp = cls(
            params=nnx.state(solution.network, nnx.Param),
            support=support,
            theta=theta,
            field=solution.field,
        )
        lower = np.asarray(
            check_lower_mm if check_lower_mm is not None else solution.lower_mm, float
        )
        upper = np.asarray(
            check_upper_mm if check_upper_mm is not None else solution.upper_mm, float
        )
        if check_lower_mm is None:
            pad = 0.1 * (upper - lower)
            lower, upper = lower - pad, upper + pad
        axes = [
            np.arange(lo, hi + 1e-9, check_spacing_mm) for lo, hi in zip(lower, upper, strict=True)
        ]
        grid = jnp.asarray(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3))
        f = np.asarray(_deformation_gradient(warp, grid), np.float64)
        det = np.linalg.det(f)
        if not det.min() > 0:
            worst = np.asarray(grid)[int(np.argmin(det))]
            raise ValueError(
                f"{_WHERE}: the deformation folds (det F = {det.min():.3g} ≤ 0 at "
                f"{np.round(worst, 1).tolist()} mm); the phantom would be torn"
            )
        # the Lipschitz bound of the inverse: the largest singular value of F⁻¹, with a margin
        inv_norm = 1.0 / np.linalg.svd(f, compute_uv=False)[:, -1]
        stretch = float(1.25 * inv_norm.max())
        warp = dataclasses.replace(warp, max_stretch=max(stretch, 1.0))
        moved = _forward(warp, grid)
        back = warp.backward(moved)
        error = float(jnp.max(jnp.abs(back - grid)))
        if not error <= 1e-3 * check_spacing_mm + 1e-4:
            raise ValueError(
                f"{_WHERE}: the inverse map did not converge (largest error {error:.3g} mm on the "
                "check grid); the displacement is too large or too irregular to invert"
            )
        return warp

    def displacement(self, points: Float[Array, "*batch 3"]) -> Float[Array, "*batch 3"]:
        """``u(X)`` (mm) at reference points, zero outside the support."""
        flat = points.reshape(-1, 3)
        u = jax.vmap(lambda p: self.field(self.params, p, self.theta.astype(p.dtype)))(flat)
        if self.support is not None:
            inside = self.support.level(flat) < 0
            u = jnp.where(inside[:, None], u, 0.0)
        return u.reshape(points.shape).astype(points.dtype)

    def backward(self, points: Float[Array, "*batch 3"]) -> Float[Array, "*batch 3"]:
        """The reference point ``X`` with ``X + u(X) = x`` for each world point ``x``."""
        x = points
        ref = x - self.displacement(x)
        for _ in range(self.iterations):
            ref = x - self.displacement(ref)
        for _ in range(self.newton):
            residual = ref + self.displacement(ref) - x
            f = _deformation_gradient(self, ref.reshape(-1, 3)).reshape((*ref.shape, 3))
            ref = ref - jnp.linalg.solve(f, residual[..., None])[..., 0]
        return ref


def _forward(warp: ElasticWarp, points: Array) -> Array:
    return points + warp.displacement(points)


def _deformation_gradient(warp: ElasticWarp, points: Array) -> Array:
    """``F = I + ∇u`` at ``(n, 3)`` reference points."""
    jac = jax.vmap(jax.jacfwd(lambda p: warp.displacement(p[None])[0]))(points)
    return jnp.eye(3, dtype=jac.dtype)[None] + jac
