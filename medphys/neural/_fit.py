"""Fitting a field to projections: a plain optax loop that resumes, reproduces and reports.

``problem = prepare_fit(projections, geometry, field, config=...)`` checks everything on the host
(shapes, counts, sample budget, the field's box against the rays) and traces the rays once.
``state = problem.init(key, nnx.state(field, nnx.Param))`` and ``state, loss =
problem.step(state)`` are pure (jit the step: ``jax.jit(FitProblem.step)(problem, state)``): the
rays of step ``k`` are drawn from ``fold_in(state.key, k)``, so a run restarted from the
checkpoint of step ``k`` draws exactly what the uninterrupted run drew. `fit` drives the loop with a
progress bar and atomic checkpoints (config digest inside; a checkpoint of another configuration
is refused before any step).

Data terms (`LeastSquares`, `Poisson`) and priors (`tv_loss`, `smoothness_loss`, `motion_loss`) are named
functions a reader can test one by one; the field module itself never sees a ray or a count.

Loss, per step, over a batch ``B`` of rays with rendered line integrals ``p̂``:

- `LeastSquares`: ``mean_B (p̂ − p)²`` for measured line integrals ``p``;
- `Poisson(i0)`: ``mean_B (e^{−p̂} + (y / I₀) p̂)``, the negative Poisson log-likelihood of the
  counts ``y`` (expected ``I₀ e^{−p̂}``) divided by ``I₀``, up to a constant;
- ``+ tv · mean |∇μ| / scale`` and ``+ smoothness · mean |∇μ|² / scale²`` (forward
  differences at the domain's voxel centres): on a random patch of ``patch^d`` of them with
  `AlongRays`, on the whole image with `OnGrid`;
- ``+ motion · motion_loss`` for a time-conditioned field: the squared displacement and its
  squared forward differences (voxels²) at a random instant on a random patch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float

from ..simulators import xray
from ..simulators.geometry import AbstractGeometry
from ..volume import Volume
from ._fields import AbstractField
from ._render import RayTable, check_samples, integrate, trace_rays
from ._state_io import load_state, save_state

__all__ = [
    "AlongRays",
    "FitConfig",
    "FitProblem",
    "FitResult",
    "FitState",
    "LeastSquares",
    "OnGrid",
    "Poisson",
    "fit",
    "motion_loss",
    "prepare_fit",
    "smoothness_loss",
    "squared_gradient",
    "total_variation",
    "tv_loss",
]

_KIND = "neural-field"
_WHERE = "medphys.neural.fit"


@dataclasses.dataclass(frozen=True)
class LeastSquares:
    """Squared error on line integrals (``projections`` are post-log line integrals)."""


@dataclasses.dataclass(frozen=True)
class Poisson:
    """Poisson likelihood of counts (``projections`` are detected counts, unattenuated ``i0``).

    Attributes:
        i0: expected counts per detector pixel without the object.
    """

    i0: float


@dataclasses.dataclass(frozen=True)
class AlongRays:
    """Each step renders a random batch of rays by sampling the field along them: the field is
    trained as a continuous function (any resolution), at ``rays_per_step × n_samples`` field
    evaluations per step.

    Attributes:
        rays_per_step: rays drawn (with replacement) per step.
        n_samples: points per ray; default one per voxel on the longest chord (`min_samples`).
    """

    rays_per_step: int = 2048
    n_samples: int | None = None


@dataclasses.dataclass(frozen=True)
class OnGrid:
    """Each step evaluates the field at the domain's voxel centres and projects that image with
    the medphys projector (`medphys.simulators.xray.prepare`) for every view: a deterministic
    full-batch step at one field evaluation per voxel, the cheaper choice when the domain has
    fewer voxels than a ray batch has samples (2-D slices). The field is then fitted at the
    domain's resolution only."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Everything that shapes a fit's result besides the data, the field and the key.

    Attributes:
        steps: optimiser steps.
        rendering: `AlongRays` (a random batch of rays per step, the field sampled along them)
            or `OnGrid` (the field at the domain's voxel centres, every view projected).
        learning_rate: Adam's peak rate; cosine decay to ``learning_rate · final_fraction``.
        final_fraction: see ``learning_rate``.
        loss: `LeastSquares` or `Poisson`.
        tv: weight of the total-variation prior (0: off).
        smoothness: weight of the squared-gradient prior (0: off).
        motion: weight of the motion prior of a time-conditioned field (`motion_loss`; 0: off).
        patch: voxels per side of the random patch the priors are evaluated on.
        init_steps: steps of regression onto ``init`` (a volume) before the data fit.
        motion_warmup: steps at the start during which a time-conditioned field's deformation
            is held (only its canonical field learns), so that the motion is fitted to an
            anatomy that has formed (0: from the first step).
        checkpoint_every: steps between checkpoints (when `fit` is given a path).
    """

    steps: int = 2000
    rendering: AlongRays | OnGrid = AlongRays()
    learning_rate: float = 1e-2
    final_fraction: float = 0.03
    loss: LeastSquares | Poisson = LeastSquares()
    tv: float = 0.0
    smoothness: float = 0.0
    motion: float = 0.0
    patch: int = 16
    init_steps: int = 300
    checkpoint_every: int = 200
    motion_warmup: int = 0

    def checked(self, where: str = _WHERE) -> FitConfig:
        if not isinstance(self.rendering, AlongRays | OnGrid):
            raise TypeError(
                f"{where}: `config.rendering` must be AlongRays(...) or OnGrid() "
                f"(got {type(self.rendering).__name__})"
            )
        if isinstance(self.rendering, AlongRays):
            v = self.rendering.rays_per_step
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(
                    f"{where}: `config.rendering.rays_per_step` must be an integer >= 1 (got {v!r})"
                )
        for name in ("steps", "patch", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"{where}: `config.{name}` must be an integer >= 1 (got {v!r})")
        for name in ("init_steps", "motion_warmup"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{where}: `config.{name}` must be an integer >= 0 (got {v!r})")
        for name in ("learning_rate", "final_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(
                    f"{where}: `config.{name}` must be a finite number > 0 (got {v!r})"
                )
        for name in ("tv", "smoothness", "motion"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(
                    f"{where}: `config.{name}` must be a finite number >= 0 (got {v!r})"
                )
        if not isinstance(self.loss, LeastSquares | Poisson):
            raise TypeError(
                f"{where}: `config.loss` must be LeastSquares() or Poisson(i0=...) "
                f"(got {type(self.loss).__name__})"
            )
        if isinstance(self.loss, Poisson) and not (
            isinstance(self.loss.i0, int | float)
            and math.isfinite(self.loss.i0)
            and self.loss.i0 > 0
        ):
            raise ValueError(
                f"{where}: `config.loss.i0` must be a finite number > 0 (got {self.loss.i0!r})"
            )
        return self


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FitState:
    """The whole state of a fit: enough to resume it bit for bit.

    Attributes:
        params: the field's trainable parameters (`nnx.Param` state).
        opt_state: Adam's moments and count.
        step: steps done (int32 scalar).
        key: the run's key (every step folds in its index).
    """

    params: Any
    opt_state: Any
    step: Array
    key: Array


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What a fit converged to.

    Attributes:
        field: the trained field.
        state: the final `FitState`.
        losses: ``(steps,)`` loss per step.
        summary: a sentence on the final loss and its change over the last tenth of the steps.
    """

    field: AbstractField
    state: FitState
    losses: np.ndarray
    summary: str


def data_loss(loss: LeastSquares | Poisson, predicted: Array, measured: Array) -> Array:
    """The mean data term over a batch of rays (see the module docstring)."""
    if isinstance(loss, Poisson):
        return jnp.mean(jnp.exp(-predicted) + (measured / loss.i0) * predicted)
    return jnp.mean((predicted - measured) ** 2)


def _patch_points(field: AbstractField, key: Array, patch: int) -> Array:
    """Normalised coordinates of a random ``patch^d`` block of the domain's voxel centres."""
    shape = np.asarray(field.domain.shape[: field.dim])
    p = np.minimum(patch, shape)
    start = jax.random.randint(key, (field.dim,), 0, shape - p + 1)
    axes = [(start[a] + jnp.arange(p[a]) + 0.5) / shape[a] for a in range(field.dim)]
    return jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)


def _patch_values(field: AbstractField, key: Array, patch: int) -> Array:
    return field(_patch_points(field, key, patch))


def total_variation(image: Array) -> Array:
    """Mean isotropic total variation of an image (forward differences, last row/column
    excluded so every term has all its differences; ``sqrt(|∇|² + 1e-8)`` keeps it smooth)."""
    axes = [a for a in range(image.ndim) if image.shape[a] > 1]
    core = tuple(slice(0, n - 1) if n > 1 else slice(None) for n in image.shape)
    sq = sum(
        jnp.diff(image, axis=a)[
            tuple(core[b] if b != a else slice(None) for b in range(image.ndim))
        ]
        ** 2
        for a in axes
    )
    return jnp.mean(jnp.sqrt(sq + 1e-8))


def squared_gradient(image: Array) -> Array:
    """Sum over axes of the mean squared forward difference of an image."""
    return sum(
        jnp.mean(jnp.diff(image, axis=a) ** 2) for a in range(image.ndim) if image.shape[a] > 1
    )


def motion_loss(field: Any, key: Array, *, patch: int) -> Array:
    """Motion prior of a time-conditioned field at a random instant on a random patch: the mean
    squared displacement plus the mean squared forward difference of each displacement component
    between neighbouring voxel centres (both in voxels²), so that the deformation stays small and
    smooth unless the data need it."""
    shape = np.asarray(field.domain.shape[: field.dim])
    k_patch, k_time = jax.random.split(key)
    pts = _patch_points(field, k_patch, patch)
    t = jax.random.uniform(k_time, (), pts.dtype, 0.0, field.duration_s)
    d = field.displacement(pts, jnp.full(pts.shape[:-1], t, pts.dtype))
    d = d * jnp.asarray(shape, d.dtype).reshape((1,) * field.dim + (-1,))  # in voxels
    size = jnp.mean(jnp.sum(d**2, axis=-1))
    return size + sum(squared_gradient(d[..., c]) for c in range(field.dim))


def tv_loss(field: AbstractField, key: Array, *, patch: int) -> Array:
    """`total_variation` of ``field`` (in units of its scale) on a random ``patch^d`` patch of
    the domain's voxel centres."""
    return total_variation(_patch_values(field, key, patch) / field.scale)


def smoothness_loss(field: AbstractField, key: Array, *, patch: int) -> Array:
    """`squared_gradient` of ``field`` (in units of its scale) on a random patch."""
    return squared_gradient(_patch_values(field, key, patch) / field.scale)


# Named random streams of a step (fold_in ids): adding one changes no other stream.
_RAYS, _JITTER, _PRIOR, _INIT = 1, 2, 3, 4
# voxels per step of the regression onto an initial volume
_INIT_POINTS = 4096


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FitProblem:
    """Rays, measurements and configuration of a fit, checked and traced once (`prepare_fit`).

    A pytree (rays, measurements, frozen field variables and the init volume are leaves), so
    ``jax.jit(FitProblem.step)(problem, state)`` takes the data as arguments, not constants.
    """

    rays: RayTable
    measured: Array
    rest: Any
    init_volume: Any
    projector: Any
    centres: Any
    graphdef: Any = dataclasses.field(metadata={"static": True})
    config: FitConfig = dataclasses.field(metadata={"static": True})
    n_samples: int = dataclasses.field(metadata={"static": True})
    digest: str = dataclasses.field(metadata={"static": True})

    @property
    def optimizer(self) -> optax.GradientTransformation:
        """Adam on the configuration's cosine schedule (built from the static config, so equal
        configurations share one compiled step)."""
        return optax.adam(_schedule(self.config), eps=1e-15)

    def field(self, state: FitState) -> AbstractField:
        """The field holding ``state``'s parameters."""
        return nnx.merge(self.graphdef, state.params, self.rest)

    def init(self, key: Array, params: Any) -> FitState:
        """The state before step 0 for a field's initial parameters."""
        return FitState(
            params=params,
            opt_state=self.optimizer.init(params),
            step=jnp.zeros((), jnp.int32),
            key=key,
        )

    def loss(self, params: Any, key: Array) -> Array:
        """The loss of one step's batch (drawn from ``key``)."""
        cfg = self.config
        field = nnx.merge(self.graphdef, params, self.rest)
        if isinstance(cfg.rendering, OnGrid):
            image = field(self.centres).reshape(field.domain.shape)
            total = data_loss(cfg.loss, self.projector.project(image).reshape(-1), self.measured)
            # the priors see the whole image
            flat = image.reshape(field.domain.shape[: field.dim]) / field.scale
            if cfg.tv > 0:
                total = total + cfg.tv * total_variation(flat)
            if cfg.smoothness > 0:
                total = total + cfg.smoothness * squared_gradient(flat)
            return total
        index = jax.random.randint(
            jax.random.fold_in(key, _RAYS), (cfg.rendering.rays_per_step,), 0, self.rays.n_rays
        )
        predicted = integrate(
            field,
            self.rays.take(index),
            n_samples=self.n_samples,
            key=jax.random.fold_in(key, _JITTER),
        )
        total = data_loss(cfg.loss, predicted, self.measured[index])
        prior_key = jax.random.fold_in(key, _PRIOR)
        if cfg.tv > 0:
            total = total + cfg.tv * tv_loss(field, prior_key, patch=cfg.patch)
        if cfg.smoothness > 0:
            total = total + cfg.smoothness * smoothness_loss(field, prior_key, patch=cfg.patch)
        if cfg.motion > 0 and field.temporal:
            total = total + cfg.motion * motion_loss(field, prior_key, patch=cfg.patch)
        return total

    def step(self, state: FitState) -> tuple[FitState, Array]:
        """One optimiser step (jitted by `fit`); returns the new state and the step's loss."""
        key = jax.random.fold_in(state.key, state.step)
        value, grads = jax.value_and_grad(self.loss)(state.params, key)
        if self.config.motion_warmup > 0 and self.field(state).temporal:
            grads = _hold_motion(grads, state.step < self.config.motion_warmup)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return FitState(params, opt_state, state.step + 1, state.key), value


def _hold_motion(grads: Any, hold: Array) -> Any:
    """Zero the gradients of a time-conditioned field's parameters outside its canonical field
    (the deformation's) while ``hold``."""

    def held(path: tuple, g: Array) -> Array:
        first = getattr(path[0], "key", getattr(path[0], "name", None))
        return g if first == "canonical" else jnp.where(hold, jnp.zeros_like(g), g)

    return jax.tree_util.tree_map_with_path(held, grads)


def _schedule(cfg: FitConfig) -> optax.Schedule:
    return optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps, alpha=cfg.final_fraction)


def prepare_fit(
    projections: Any,
    geometry: AbstractGeometry,
    field: AbstractField,
    *,
    config: FitConfig = FitConfig(),
    init: Volume | None = None,
    view_times_s: Any = None,
) -> FitProblem:
    """Check the inputs and trace the rays of a fit (host, before any training step).

    Args:
        projections: ``(views, u, v)`` line integrals (`LeastSquares`) or counts (`Poisson`).
        geometry: the geometry the projections were taken with.
        field: the field to train (its ``domain`` is the reconstruction box).
        config: `FitConfig`.
        init: optional starting volume on the field's domain (e.g. FDK or CGLS), fitted by
            regression for ``config.init_steps`` steps before the data term.
        view_times_s: ``(views,)`` acquisition times (s), required by a time-conditioned field
            (`DeformingField`, which trains `AlongRays` only).

    Raises:
        TypeError: ``field`` is not a medphys field; ``init`` not a `Volume`.
        ValueError: projections of another shape than the geometry's, non-finite values or
            negative counts, no ray meeting the field's box, a sample budget below one sample
            per voxel of chord, ``init`` on another grid.
    """
    cfg = config.checked()
    if not isinstance(field, AbstractField):
        raise TypeError(
            f"{_WHERE}: `field` must be a medphys.neural field (got {type(field).__name__})"
        )
    if field.temporal and view_times_s is None:
        raise ValueError(
            f"{_WHERE}: a time-conditioned field needs `view_times_s`, the acquisition time of "
            "every view"
        )
    if field.temporal and isinstance(cfg.rendering, OnGrid):
        raise ValueError(
            f"{_WHERE}: a time-conditioned field changes from view to view; use "
            "`rendering=AlongRays(...)`, not OnGrid()"
        )
    rays = trace_rays(geometry, field.domain, view_times_s=view_times_s)
    data = np.asarray(projections)
    if data.shape != rays.shape:
        raise ValueError(
            f"{_WHERE}: `projections` must have the geometry's shape (views, u, v) = {rays.shape} "
            f"(got {data.shape})"
        )
    if not np.all(np.isfinite(data)):
        raise ValueError(
            f"{_WHERE}: `projections` has {int(np.sum(~np.isfinite(data)))} non-finite values"
        )
    if isinstance(cfg.loss, Poisson) and np.any(data < 0):
        raise ValueError(
            f"{_WHERE}: `projections` are counts for a Poisson loss and must be >= 0 "
            f"(got minimum {float(data.min())}); pass line integrals with LeastSquares()"
        )
    if isinstance(cfg.rendering, OnGrid):
        n = 0
        projector = xray.prepare(field.domain, geometry)
        if projector.projection_shape != rays.shape:  # pragma: no cover (one lowering to rays)
            raise ValueError(
                f"{_WHERE}: projector shape {projector.projection_shape} != {rays.shape}"
            )
        idx = np.stack(np.meshgrid(*[np.arange(k) for k in field.domain.shape], indexing="ij"), -1)
        centres = jnp.asarray(
            ((idx + 0.5) / np.asarray(field.domain.shape))[..., : field.dim].reshape(-1, field.dim),
            jnp.float32,
        )
    else:
        n = check_samples(_WHERE, rays, cfg.rendering.n_samples)
        projector = centres = None
    if init is not None:
        if not isinstance(init, Volume):
            raise TypeError(
                f"{_WHERE}: `init` must be a medphys.Volume (got {type(init).__name__})"
            )
        if init.grid != field.domain:
            raise ValueError(
                f"{_WHERE}: `init` must lie on the field's domain {field.domain!r} (got {init.grid!r}); "
                "resample it or build the field on its grid"
            )
    graphdef, params, rest = nnx.split(field, nnx.Param, ...)
    digest = _digest(field, params, cfg, n, data, rays, init)
    return FitProblem(
        rays=rays,
        measured=jnp.asarray(data.reshape(-1), jnp.float32),
        graphdef=graphdef,
        rest=rest,
        config=cfg,
        n_samples=n,
        digest=digest,
        init_volume=None if init is None else jnp.asarray(init.data, jnp.float32),
        projector=projector,
        centres=centres,
    )


def _digest(field, params, cfg, n, data, rays, init) -> str:
    h = hashlib.sha256()
    shapes = jax.tree_util.tree_map(lambda x: (tuple(x.shape), str(x.dtype)), params)
    desc = {
        "field": type(field).__name__,
        "domain": [list(field.domain.shape), field.domain.affine.tolist()],
        "scale": field.scale,
        "params": str(jax.tree_util.tree_leaves(shapes)),
        "settings": _settings(field),
        "config": repr(cfg),
        "n_samples": n,
    }
    h.update(json.dumps(desc, sort_keys=True).encode())
    h.update(np.ascontiguousarray(data, np.float64).tobytes())
    for a in (rays.entry, rays.direction, rays.length_mm, rays.time_s):
        h.update(np.asarray(a).tobytes())
    if init is not None:
        h.update(np.asarray(init.data, np.float32).tobytes())
    return h.hexdigest()


def _settings(field: AbstractField) -> list:
    """The plain settings of every module in the field (durations, periods, bounds, scales):
    what changes its meaning without changing its parameters' shapes."""
    plain = (bool, int, float, str, type(None))
    out = []
    for path, node in nnx.iter_graph(field):
        if isinstance(node, nnx.Module):
            items = sorted(
                (k, repr(v))
                for k, v in vars(node).items()
                if not k.startswith("_")
                and (
                    isinstance(v, plain)
                    or (isinstance(v, tuple) and all(isinstance(e, plain) for e in v))
                )
            )
            out.append(["/".join(map(str, path)), items])
    return out


def _pretrain(problem: FitProblem, params: Any, key: Array) -> Any:
    """Regress the field onto ``problem.init_volume`` at random points of the domain's voxels."""
    vol = problem.init_volume
    shape = np.asarray(vol.shape)
    cfg = problem.config
    opt = optax.adam(cfg.learning_rate, eps=1e-15)

    def loss(p: Any, k: Array, vol: Array, rest: Any) -> Array:
        field = nnx.merge(problem.graphdef, p, rest)
        idx = jax.random.randint(k, (_INIT_POINTS, 3), 0, jnp.asarray(shape)[None, :])
        u = (idx + 0.5) / jnp.asarray(shape, jnp.float32)[None, :]
        target = vol[idx[:, 0], idx[:, 1], idx[:, 2]]
        return jnp.mean((field(u[:, : field.dim]) - target) ** 2) / field.scale**2

    @jax.jit
    def run(p: Any, vol: Array, rest: Any) -> Any:
        def body(i: Array, carry: tuple) -> tuple:
            p, s = carry
            g = jax.grad(loss)(p, jax.random.fold_in(key, i), vol, rest)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        return jax.lax.fori_loop(0, cfg.init_steps, body, (p, opt.init(p)))[0]

    return run(params, problem.init_volume, problem.rest)


def fit(
    key: Array,
    projections: Float[Array, "views u v"],
    geometry: AbstractGeometry,
    field: AbstractField,
    *,
    config: FitConfig = FitConfig(),
    init: Volume | None = None,
    view_times_s: Any = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[int, float, FitProblem, FitState], None] | None = None,
) -> FitResult:
    """Train ``field`` so that its renderings match ``projections`` (see the module docstring).

    Args:
        key: the run's randomness (rays per step, stratified jitter, prior patches); the same key
            and inputs give the same field.
        projections: ``(views, u, v)`` line integrals (`LeastSquares`) or counts (`Poisson`).
        geometry: the acquisition geometry.
        field: the field with its initial parameters (its domain is the reconstruction box).
        config: `FitConfig`.
        init: optional volume on ``field.domain`` (FDK, CGLS) regressed before the data fit.
        view_times_s: ``(views,)`` acquisition times (s) for a time-conditioned field.
        checkpoint: a ``.npz`` path: resumed from when it exists (same configuration only),
            written atomically every ``config.checkpoint_every`` steps and at the end.
        progress: show a progress bar (stderr) with the running loss.
        callback: ``callback(step, loss, problem, state)`` after each step (monitoring).

    Returns:
        `FitResult` with the trained field, the final state, the loss history and a summary.

    Raises:
        ValueError, TypeError: as `prepare_fit`, and a checkpoint of another configuration.

    Example:
        >>> field = neural.HashGridField(jax.random.key(0), grid)
        >>> result = neural.fit(jax.random.key(1), sinogram, geometry, field)  # doctest: +SKIP
        >>> volume = neural.to_volume(result.field)                              # doctest: +SKIP
    """
    problem = prepare_fit(
        projections, geometry, field, config=config, init=init, view_times_s=view_times_s
    )
    cfg = problem.config
    path = None if checkpoint is None else Path(checkpoint)
    # a copy: the jitted step donates its state, and the caller keeps its field
    params = jax.tree_util.tree_map(jnp.array, nnx.state(field, nnx.Param))
    state = problem.init(key, params)
    losses: list[float] = []
    if path is not None and path.exists():
        state, history = load_state(path, state, digest=problem.digest, kind=_KIND, where=_WHERE)
        losses = [float(x) for x in history]
    elif problem.init_volume is not None and cfg.init_steps > 0:
        state = problem.init(key, _pretrain(problem, params, jax.random.fold_in(key, _INIT)))
    step = jax.jit(FitProblem.step, donate_argnums=1)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("fit"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("fit", total=cfg.steps, completed=int(state.step), loss="-")
        while int(state.step) < cfg.steps:
            state, value = step(problem, state)
            loss = float(value)
            losses.append(loss)
            done = int(state.step)
            bar.update(task, completed=done, loss=f"{loss:.4g}")
            if callback is not None:
                callback(done, loss, problem, state)
            if path is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                save_state(path, state, losses, digest=problem.digest, kind=_KIND)
    history = np.asarray(losses, np.float64)
    return FitResult(
        field=problem.field(state), state=state, losses=history, summary=_summary(history)
    )


def _summary(losses: np.ndarray) -> str:
    if losses.size == 0:
        return "no steps taken"
    tail = max(1, losses.size // 10)
    last = float(np.mean(losses[-tail:]))
    before = float(np.mean(losses[-2 * tail : -tail])) if losses.size >= 2 * tail else float("nan")
    change = (
        (last - before) / abs(before) if math.isfinite(before) and before != 0 else float("nan")
    )
    return (
        f"loss {last:.4g} (mean of the last {tail} steps) after {losses.size} steps; "
        f"relative change over the last tenth {change:+.2%}"
    )
