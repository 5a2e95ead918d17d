"""Iterative reconstruction: SIRT, CGLS and TV-regularised least squares (Chambolle–Pock).

Each algorithm is a factory returning an `IterativeReconstructor`, a pair of pure functions in the
style of Optax: ``init(projections) -> state`` and ``step(state) -> state``, so users drive, log and
stop the iterations themselves; ``run(projections, n_iter)`` loops for them and ``image(state)``
wraps the current estimate in a `Volume`. States are immutable PyTrees holding the estimate ``x``,
the data ``b``, the iteration count and the data residual ``||A x - b||`` of the current ``x``.

The system matrix ``A`` is `medphys.simulators.xray.project` on the grid of ``like`` and ``A^T`` its
matched adjoint `backproject`, as one prepared operator (``xray.prepare(grid, geometry)``), so the
algorithms solve the discrete problem exactly as posed. A step costs one projection and one
backprojection (each compiled once per grid and geometry layout and shared by all solvers); the
vector updates between them run as plain JAX operations. The operator was planned on the concrete
geometry, so cone-beam and projective geometries get the voxel-driven gather backprojector
(``_joseph3d_gather``) even when a whole step is compiled with the operator as an argument.

- `sirt`: simultaneous iterative reconstruction, ``x += lambda C A^T R (b - A x)`` with ``R`` and
  ``C`` the inverse row and column sums of ``A`` (Gregor & Benson 2008); converges to the
  ``R``-weighted least-squares solution for ``0 < lambda < 2``; optional non-negativity.
- `cgls`: conjugate gradients on the normal equations (Hestenes & Stiefel 1952; Björck 1996):
  the residual ``||A x - b||`` decreases monotonically and, in exact arithmetic, the least-squares
  solution is reached in at most ``rank(A)`` steps.
- `tv`: ``min_x 1/2 ||A x - b||^2 + weight · TV(x)`` (isotropic total variation, forward
  differences in voxel units over the axes longer than one voxel), optionally ``x ≥ 0``, by the
  primal–dual algorithm of Chambolle & Pock (2011) as set up for CT by Sidky, Jørgensen & Pan
  (2012): the gradient is scaled to the norm of ``A`` (estimated by power iteration in ``init``)
  and the step sizes are ``sigma = tau = 0.99 / ||K||``.

References:
    J. Gregor, T. Benson, "Computational analysis and improvement of SIRT", IEEE Trans. Med.
    Imaging 27(7):918–924, 2008.
    Å. Björck, Numerical Methods for Least Squares Problems, SIAM, 1996, §7.4 (CGLS).
    A. Chambolle, T. Pock, "A first-order primal-dual algorithm for convex problems with
    applications to imaging", J. Math. Imaging Vis. 40:120–145, 2011.
    E. Y. Sidky, J. H. Jørgensen, X. Pan, "Convex optimization problem prototyping for image
    reconstruction in computed tomography with the Chambolle–Pock algorithm", Phys. Med. Biol.
    57(10):3065–3091, 2012.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..._checks import number as _number
from ...volume import Grid, Volume
from ..geometry import AbstractGeometry
from ..xray import Projector, prepare

__all__ = [
    "CGLSState",
    "IterativeReconstructor",
    "SIRTState",
    "TVState",
    "cgls",
    "sirt",
    "tv",
]


class IterativeReconstructor(NamedTuple):
    """An iterative algorithm as pure functions (see the module docstring).

    Attributes:
        init: ``init(projections) -> state``; projections ``(views, u, v)``.
        step: ``step(state) -> state``: one iteration (a compiled projection and
            backprojection; it may itself be wrapped in ``jax.jit``).
        image: ``image(state) -> Volume`` on the grid of ``like``.
    """

    init: Callable[[Any], Any]
    step: Callable[[Any], Any]
    image: Callable[[Any], Volume]

    def run(self, projections: Float[Array, "views u v"], n_iter: int) -> Any:
        """``n_iter`` steps from ``init(projections)``; returns the final state.

        Raises:
            ValueError: ``n_iter`` < 0.
        """
        if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
            raise ValueError(
                f"medphys.simulators.ct: `n_iter` must be an integer ≥ 0 (got {n_iter!r})"
            )
        state = self.init(projections)
        for _ in range(int(n_iter)):
            state = self.step(state)
        return state


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SIRTState:
    """SIRT iterate: estimate ``x``, data ``b``, ``residual = b - A x``, iteration count,
    ``||A x - b||``."""

    x: Float[Array, "x y z"]
    b: Float[Array, "views u v"]
    residual: Float[Array, "views u v"]
    iteration: Array
    residual_norm: Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CGLSState:
    """CGLS iterate: ``x``, data ``b``, residual ``r = b - A x``, normal residual ``s = A^T r``,
    search direction ``p``, ``gamma = ||s||^2``, iteration count, ``||r||``."""

    x: Float[Array, "x y z"]
    b: Float[Array, "views u v"]
    r: Float[Array, "views u v"]
    p: Float[Array, "x y z"]
    gamma: Array
    iteration: Array
    residual_norm: Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TVState:
    """Chambolle–Pock iterate: primal ``x`` and its extrapolation ``x_bar`` (with their
    projections ``ax``, ``ax_bar``), duals ``y_data`` (projections) and ``y_grad`` (gradient
    field), data ``b``, operator scale ``nu`` and step size (from ``init``), iteration count,
    ``||A x - b||``."""

    x: Float[Array, "x y z"]
    x_bar: Float[Array, "x y z"]
    ax: Float[Array, "views u v"]
    ax_bar: Float[Array, "views u v"]
    y_data: Float[Array, "views u v"]
    y_grad: Float[Array, "axes x y z"]
    b: Float[Array, "views u v"]
    nu: Array
    step_size: Array
    iteration: Array
    residual_norm: Array


# ----------------------------------------------------------------------------------------------
# shared plumbing


def _setup(where: str, geometry: AbstractGeometry, like: Any) -> Projector:
    """The prepared projector pair of ``geometry`` on ``like``'s grid."""
    if not isinstance(geometry, AbstractGeometry):
        raise TypeError(
            f"{where}: `geometry` must be a medphys.simulators geometry (got {type(geometry).__name__})"
        )
    grid = like if isinstance(like, Grid) else getattr(like, "grid", None)
    if not isinstance(grid, Grid):
        raise TypeError(
            f"{where}: `like` must be a Volume, LabeledVolume or Grid (got {type(like).__name__})"
        )
    return prepare(grid, geometry)


def _data(
    where: str, projections: Any, geometry: AbstractGeometry, shape: tuple[int, ...]
) -> Array:
    b = jnp.asarray(projections)
    if not jnp.issubdtype(b.dtype, jnp.floating):
        b = b.astype(jnp.float32)
    rows = shape[2] if geometry.n_rows is None else geometry.n_rows
    expected = (geometry.n_views, geometry.n_u, rows)
    if tuple(b.shape) != expected:
        raise ValueError(
            f"{where}: `projections` must have shape {expected} (got {tuple(b.shape)})"
        )
    return b


def _norm(v: Array) -> Array:
    return jnp.sqrt(jnp.sum(v * v))


def _safe_inverse(v: Array) -> Array:
    tiny = jnp.asarray(jnp.finfo(v.dtype).tiny, v.dtype)
    ok = v > tiny
    return jnp.where(ok, 1.0 / jnp.where(ok, v, 1.0), 0.0)


def _bool(where: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: `{name}` must be True or False (got {value!r})")
    return value


# ----------------------------------------------------------------------------------------------
# SIRT


def sirt(
    geometry: AbstractGeometry,
    *,
    like: Any,
    relaxation: float = 1.0,
    nonnegative: bool = False,
) -> IterativeReconstructor:
    """SIRT (simultaneous iterative reconstruction technique).

    Args:
        geometry: the scan geometry.
        like: `Volume` or `LabeledVolume` giving the output grid.
        relaxation: ``lambda`` in (0, 2).
        nonnegative: clip the estimate at 0 after every step.

    Returns:
        `IterativeReconstructor` with `SIRTState` states.

    Raises:
        ValueError, TypeError: relaxation outside (0, 2), wrong types, geometry that misses
            the grid.

    Example:
        >>> solver = sirt(geometry, like=volume, nonnegative=True)
        >>> state = solver.init(projections)
        >>> for _ in range(50):
        ...     state = solver.step(state)
        >>> image = solver.image(state)
    """
    where = "medphys.simulators.ct.sirt"
    lam = _number(where, "relaxation", relaxation)
    if not 0 < lam < 2:
        raise ValueError(f"{where}: `relaxation` must be in (0, 2) (got {relaxation!r})")
    clip = _bool(where, "nonnegative", nonnegative)
    op = _setup(where, geometry, like)
    shape = op.grid.shape
    cache: dict[Any, tuple[Array, Array]] = {}

    def init(projections: Any) -> SIRTState:
        b = _data(where, projections, geometry, shape)
        x = jnp.zeros(shape, b.dtype)
        return SIRTState(
            x=x, b=b, residual=b, iteration=jnp.zeros((), jnp.int32), residual_norm=_norm(b)
        )

    def step(state: SIRTState) -> SIRTState:
        dtype = jnp.dtype(state.x.dtype)
        if dtype not in cache:
            cache[dtype] = _sirt_weights(op, jnp.zeros((), dtype))
        return _sirt_step(state, op, cache[dtype], lam, clip=clip)

    return IterativeReconstructor(init, step, lambda s: Volume(data=s.x, affine=op.grid.affine))


def _sirt_weights(op: Projector, dtype_probe: Array) -> tuple[Array, Array]:
    dtype = dtype_probe.dtype
    rows = op.project(jnp.ones(op.grid.shape, dtype))
    cols = op.backproject(jnp.ones(rows.shape, dtype))
    return _safe_inverse(rows), _safe_inverse(cols)


def _sirt_step(
    state: SIRTState, op: Projector, weights: tuple[Array, Array], lam: Any, *, clip: bool
) -> SIRTState:
    inv_rows, inv_cols = weights
    update = inv_cols * op.backproject(inv_rows * state.residual)
    x = state.x + jnp.asarray(lam, state.x.dtype) * update
    if clip:
        x = jnp.maximum(x, 0.0)
    residual = state.b - op.project(x)
    return SIRTState(
        x=x,
        b=state.b,
        residual=residual,
        iteration=state.iteration + 1,
        residual_norm=_norm(residual),
    )


# ----------------------------------------------------------------------------------------------
# CGLS


def cgls(geometry: AbstractGeometry, *, like: Any) -> IterativeReconstructor:
    """CGLS: conjugate gradients for ``min ||A x - b||`` (see the module docstring).

    Args:
        geometry: the scan geometry.
        like: `Volume` or `LabeledVolume` giving the output grid.

    Returns:
        `IterativeReconstructor` with `CGLSState` states (start ``x = 0``).

    Raises:
        TypeError, ValueError: wrong types, geometry that misses the grid.

    Example:
        >>> state = cgls(geometry, like=volume).run(projections, n_iter=20)
    """
    where = "medphys.simulators.ct.cgls"
    op = _setup(where, geometry, like)

    def init(projections: Any) -> CGLSState:
        return _cgls_init(_data(where, projections, geometry, op.grid.shape), op)

    return IterativeReconstructor(
        init,
        lambda s: _cgls_step(s, op),
        lambda s: Volume(data=s.x, affine=op.grid.affine),
    )


def _cgls_init(b: Array, op: Projector) -> CGLSState:
    s = op.backproject(b)
    return CGLSState(
        x=jnp.zeros(op.grid.shape, b.dtype),
        b=b,
        r=b,
        p=s,
        gamma=jnp.sum(s * s),
        iteration=jnp.zeros((), jnp.int32),
        residual_norm=_norm(b),
    )


def _cgls_step(state: CGLSState, op: Projector) -> CGLSState:
    q = op.project(state.p)
    qq = jnp.sum(q * q)
    alpha = state.gamma * _safe_inverse(qq)  # 0 once converged (p = 0)
    x = state.x + alpha * state.p
    r = state.r - alpha * q
    s = op.backproject(r)
    gamma = jnp.sum(s * s)
    beta = gamma * _safe_inverse(state.gamma)
    return CGLSState(
        x=x,
        b=state.b,
        r=r,
        p=s + beta * state.p,
        gamma=gamma,
        iteration=state.iteration + 1,
        residual_norm=_norm(r),
    )


# ----------------------------------------------------------------------------------------------
# TV (Chambolle–Pock)


def _gradient(x: Array, axes: tuple[int, ...]) -> Array:
    """Forward differences with Neumann boundary, stacked ``(len(axes), x, y, z)``."""
    out = []
    for a in axes:
        d = jnp.diff(x, axis=a)
        pad = [(0, 0)] * x.ndim
        pad[a] = (0, 1)
        out.append(jnp.pad(d, pad))
    return jnp.stack(out)


def _gradient_adjoint(g: Array, axes: tuple[int, ...]) -> Array:
    """Exact adjoint of `_gradient` (minus the divergence)."""
    total = jnp.zeros(g.shape[1:], g.dtype)
    for i, a in enumerate(axes):
        gi = g[i]
        n = gi.shape[a]
        head = jax.lax.slice_in_dim(gi, 0, n - 1, axis=a)  # the differences actually used
        pad_lo = [(0, 0)] * gi.ndim
        pad_lo[a] = (1, 0)
        pad_hi = [(0, 0)] * gi.ndim
        pad_hi[a] = (0, 1)
        total = total + jnp.pad(head, pad_lo) - jnp.pad(head, pad_hi)
    return total


def tv(
    geometry: AbstractGeometry,
    *,
    like: Any,
    weight: float,
    nonnegative: bool = True,
    power_iterations: int = 20,
) -> IterativeReconstructor:
    """TV-regularised least squares by Chambolle–Pock (see the module docstring).

    Args:
        geometry: the scan geometry.
        like: `Volume` or `LabeledVolume` giving the output grid.
        weight: TV weight (≥ 0), in projection units × mm per unit of image contrast per voxel
            (the data term is ``1/2 ||A x - b||^2`` with ``A`` in mm).
        nonnegative: constrain ``x ≥ 0``.
        power_iterations: iterations of the power method estimating ``||A||`` in ``init``.

    Returns:
        `IterativeReconstructor` with `TVState` states.

    Raises:
        ValueError, TypeError: negative weight, wrong types, geometry that misses the grid.

    Example:
        >>> solver = tv(geometry, like=volume, weight=0.05)
        >>> image = solver.image(solver.run(projections, n_iter=200))
    """
    where = "medphys.simulators.ct.tv"
    lam = _number(where, "weight", weight)
    if lam < 0:
        raise ValueError(f"{where}: `weight` must be ≥ 0 (got {weight!r})")
    clip = _bool(where, "nonnegative", nonnegative)
    if (
        isinstance(power_iterations, bool)
        or not isinstance(power_iterations, int)
        or power_iterations < 1
    ):
        raise ValueError(
            f"{where}: `power_iterations` must be an integer ≥ 1 (got {power_iterations!r})"
        )
    op = _setup(where, geometry, like)
    n_power = int(power_iterations)

    def init(projections: Any) -> TVState:
        b = _data(where, projections, geometry, op.grid.shape)
        return _tv_init(b, op, n_power=n_power)

    return IterativeReconstructor(
        init,
        lambda s: _tv_step(s, op, lam, clip=clip),
        lambda s: Volume(data=s.x, affine=op.grid.affine),
    )


def _axes(grid: Grid) -> tuple[int, ...]:
    return tuple(a for a in range(3) if grid.shape[a] > 1)


def _tv_init(b: Array, op: Projector, *, n_power: int) -> TVState:
    shape = op.grid.shape
    axes = _axes(op.grid)
    grad_norm = math.sqrt(4.0 * max(len(axes), 1))  # ||∇|| ≤ 2 sqrt(ndim) in voxel units
    dtype = b.dtype

    v = jnp.ones(shape, dtype) / math.sqrt(math.prod(shape))
    for _ in range(n_power):
        w = op.backproject(op.project(v))
        v = w / jnp.maximum(_norm(w), jnp.finfo(dtype).tiny)
    a_norm = _norm(op.project(v)) * 1.01  # slight overestimate: the power method undershoots
    x = jnp.zeros(shape, dtype)
    return TVState(
        x=x,
        x_bar=x,
        ax=jnp.zeros_like(b),
        ax_bar=jnp.zeros_like(b),
        y_data=jnp.zeros_like(b),
        y_grad=jnp.zeros((max(len(axes), 1), *shape), dtype),
        b=b,
        nu=a_norm / grad_norm,
        step_size=0.99 / (math.sqrt(2.0) * a_norm),
        iteration=jnp.zeros((), jnp.int32),
        residual_norm=_norm(b),
    )


def _tv_step(state: TVState, op: Projector, lam: Any, *, clip: bool) -> TVState:
    axes = _axes(op.grid)
    dtype = state.x.dtype
    sigma = tau = state.step_size
    nu = state.nu
    # dual of the data term 1/2 ||z - b||^2
    y_data = (state.y_data + sigma * (state.ax_bar - state.b)) / (1.0 + sigma)
    # dual of (weight / nu) ||.||_{2,1}: projection onto the ball of that radius
    if axes:
        g = state.y_grad + sigma * nu * _gradient(state.x_bar, axes)
        mag = jnp.sqrt(jnp.sum(g * g, axis=0, keepdims=True))
        radius = jnp.asarray(lam, dtype) / nu
        y_grad = g / jnp.maximum(1.0, mag / jnp.maximum(radius, jnp.finfo(dtype).tiny))
        back = op.backproject(y_data) + nu * _gradient_adjoint(y_grad, axes)
    else:
        y_grad = state.y_grad
        back = op.backproject(y_data)
    x = state.x - tau * back
    if clip:
        x = jnp.maximum(x, 0.0)
    ax = op.project(x)
    return dataclasses.replace(
        state,
        x=x,
        x_bar=2.0 * x - state.x,
        ax=ax,
        ax_bar=2.0 * ax - state.ax,
        y_data=y_data,
        y_grad=y_grad,
        iteration=state.iteration + 1,
        residual_norm=_norm(ax - state.b),
    )
