"""Physics-informed elasticity by the deep energy method: a network displacement that minimises
the total potential energy of a (multi-material) body under loads and constraints.

``solution = solve_elasticity(key, body, constraints=[...], loads=[...], config=...)`` trains a
`DisplacementNet` so that ``u(x) = g(x) + d(x) ⊙ U·N((x − c)/L)`` (Dirichlet planes built in, see
`medphys.neural.Fixed`) minimises

    Π[u] = Σ_q w_q [ W(∇u(x_q)) − f·u(x_q) + div V(x_q) ]

over the body's quadrature (`medphys.neural.ElasticBody`): ``W`` is the strain-energy density of
the body's law (`linear_energy` or `neo_hookean_energy`), ``f`` the gravity force and ``V`` the
vector field whose flux through the surface is the boundary potential (pressure work and plate
contact penalty; the divergence theorem moves it into the same quadrature). The energy is
normalised by ``μ_min · volume · (U/L)²`` so that its scale is about one whatever the units.

Training is Adam with a cosine-decayed step on one random point per cell, redrawn every step from
``fold_in(key, step)`` (`ElasticBody.sample`): the same key gives the same weights, a run resumed
from a checkpoint equals the uninterrupted one, and the network cannot lower the energy by
aliasing between fixed points (a full-batch L-BFGS on fixed points does: on the Lamé cylinder it
drove the discrete energy to 17× the true minimum). Every ``evaluate_every`` steps the energy is
evaluated on held-out points (four fixed random draws that training never sees, each point with
its own material); the run is `ElasticSolution.converged` when that energy moved
by less than ``tolerance`` over the last tenth of the steps, and `ElasticSolution.check` raises
when it did not or when the deformation folds (``det F ≤ 0``).

There are no elements, hence no element locking; a nearly incompressible body (ν = 0.49, λ/μ = 49)
only makes the energy stiff in volume change. The tests hold the closed forms (Lamé cylinder and
sphere, uniaxial neo-Hookean compression) at ν = 0.3 and 0.49 alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array

from ._checks import positive_int, positive_number
from ._elastic_body import ElasticBody, band
from ._elastic_loads import (
    Fixed,
    Gravity,
    Growth,
    Parameter,
    Plate,
    Pressure,
    dirichlet_lift,
    gravity_force,
    resolve,
)
from ._elastic_materials import linear_energy, neo_hookean_energy
from ._elastic_net import DisplacementNet
from ._state_io import load_extra, load_state, save_state

__all__ = ["ElasticConfig", "ElasticSolution", "ElasticState", "solve_elasticity"]

_WHERE = "medphys.neural.solve_elasticity"
_KIND = "elasticity"


@dataclasses.dataclass(frozen=True)
class ElasticConfig:
    """Network and training settings of `solve_elasticity`.

    Attributes:
        width, depth: the displacement network's hidden width and layers.
        dtype: "float32" (default, also under x64) or "float64".
        steps: Adam steps (cosine-decayed ``learning_rate``), one random point per cell each.
        learning_rate: Adam's initial step size.
        tolerance: converged when the held-out energy changed by less than this, relative, over
            the last tenth of the steps.
        evaluate_every: steps between evaluations of the held-out energy.
        band_mm: the width of the surface band of boundary integrals (default 5 cells: its bump
            is then integrated to about 0.1 %).
        displacement_scale_mm: the network's output scale ``U`` (default from the loads).
        checkpoint_every: steps between checkpoints.
        parameter_batch: parameter draws per step when the problem has `Parameter` values.
        contact_ramp: the fraction of the steps over which plate stiffnesses rise geometrically
            from 1 % to their value (0: no ramp; at most 0.8, so that the last tenth of the steps
            judges convergence on the final problem). A penalty continuation: stiff plates
            (κ ≥ 100 kPa/mm on soft tissue) let the tissue settle before the contact stiffens.
    """

    width: int = 64
    depth: int = 4
    dtype: str = "float32"
    steps: int = 3000
    learning_rate: float = 3e-3
    tolerance: float = 1e-3
    evaluate_every: int = 100
    band_mm: float | None = None
    displacement_scale_mm: float | None = None
    checkpoint_every: int = 500
    parameter_batch: int = 4
    contact_ramp: float = 0.0

    def checked(self) -> ElasticConfig:
        w = "medphys.neural.ElasticConfig"
        positive_int(w, "width", self.width)
        positive_int(w, "depth", self.depth)
        positive_int(w, "steps", self.steps)
        positive_int(w, "evaluate_every", self.evaluate_every)
        positive_int(w, "checkpoint_every", self.checkpoint_every)
        positive_int(w, "parameter_batch", self.parameter_batch)
        positive_number(w, "learning_rate", self.learning_rate)
        positive_number(w, "tolerance", self.tolerance)
        if not (0.0 <= float(self.contact_ramp) <= 0.8):
            raise ValueError(f"{w}: `contact_ramp` must be in [0, 0.8] (got {self.contact_ramp!r})")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"{w}: `dtype` must be 'float32' or 'float64' (got {self.dtype!r})")
        if self.band_mm is not None:
            positive_number(w, "band_mm", self.band_mm)
        if self.displacement_scale_mm is not None:
            positive_number(w, "displacement_scale_mm", self.displacement_scale_mm)
        return self


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ElasticState:
    """Training state: key, step, network parameters and the optimiser's state."""

    key: Array
    step: Array
    params: Any
    opt: Any


@dataclasses.dataclass(frozen=True)
class ElasticSolution:
    """A trained displacement field and how it got there.

    Attributes:
        displacement: ``u(points, **values)`` (mm) for ``(*batch, 3)`` world points (mm), with
            one value per `Parameter` by name (none for a problem without parameters).
        gradient: ``∇u(points, **values)`` as ``(*batch, 3, 3)`` (``[i, j] = ∂u_i/∂x_j``).
        losses: the sampled (one random point per cell) normalised energy of every step.
        energies: ``(k, 2)`` rows of ``(step, energy)``: the normalised energy on the held-out
            points, every ``evaluate_every`` steps and at the end.
        converged: True when that energy changed by less than ``tolerance`` over the last tenth.
        min_det_f: the smallest ``det(I + ∇u)`` over the body's quadrature points.
        energy_mj: the total potential energy at the end (mJ; see below).
        summary: one line: energy, its relative change, convergence and ``min det F``.
        state: the final `ElasticState` (resumable).
        network: the trained `DisplacementNet`.
        tolerance: the tolerance it was judged by.
        field: ``field(params, X, theta)``: the displacement (mm) at one reference point ``X``
            for the network parameters ``params`` and the problem parameters ``theta`` (in the
            order of ``parameters``; pure: `medphys.neural.ElasticWarp` uses it).
        parameters: the problem's `Parameter` ranges (sorted by name; empty when none).
        lower_mm, upper_mm: the body's bounding box.
        max_penetration_mm: the deepest any quadrature point lies beyond a `Plate` (0 without
            plates; for a parametric plate, the largest over the range's ends and middle). A
            penalty contact settles at about pressure / stiffness; a training that stalled with
            the tissue through the plate shows here (`check`'s ``max_penetration_mm``).

    ``energy_mj``: kPa × mm³ = 10³ N/m² × 10⁻⁹ m³ = 10⁻⁶ J, so the value in mJ is 10⁻³ × the
    energy in kPa·mm³.
    """

    displacement: Callable[[Array], Array]
    gradient: Callable[[Array], Array]
    losses: np.ndarray
    energies: np.ndarray
    converged: bool
    min_det_f: float
    energy_mj: float
    summary: str
    state: ElasticState
    network: DisplacementNet
    tolerance: float
    field: Callable[[Any, Array, Array], Array]
    lower_mm: np.ndarray
    upper_mm: np.ndarray
    parameters: tuple[Parameter, ...] = ()
    max_penetration_mm: float = 0.0

    def check(self, *, max_penetration_mm: float | None = None) -> ElasticSolution:
        """Raise `ValueError` when training did not converge, the deformation folds, or (given
        ``max_penetration_mm``) the body lies deeper than that beyond a plate."""
        if not self.converged:
            raise ValueError(
                f"{_WHERE}: training did not converge to the relative energy tolerance "
                f"{self.tolerance:g} ({self.summary}); raise `steps` or loosen `tolerance`"
            )
        if not self.min_det_f > 0:
            raise ValueError(
                f"{_WHERE}: the deformation folds tissue (min det F = {self.min_det_f:.3g} ≤ 0 "
                "at a quadrature point); the load is too large for this discretisation"
            )
        if max_penetration_mm is not None and self.max_penetration_mm > max_penetration_mm:
            raise ValueError(
                f"{_WHERE}: the body lies {self.max_penetration_mm:.3g} mm beyond a plate (allowed "
                f"{max_penetration_mm:g} mm): the contact stalled; use ElasticConfig.contact_ramp "
                "or more steps"
            )
        return self


_HELD_OUT_DRAWS = 4


def _check_items(constraints: Sequence[Any], loads: Sequence[Any]) -> None:
    for c in constraints:
        if not isinstance(c, Fixed):
            raise TypeError(f"{_WHERE}: `constraints` must hold Fixed planes (got {c!r:.60})")
    for item in loads:
        if not isinstance(item, (Pressure, Gravity, Plate, Growth)):
            raise TypeError(
                f"{_WHERE}: `loads` must hold Pressure, Gravity, Plate or Growth (got {item!r:.60})"
            )


def _parameters(constraints, loads) -> tuple[Parameter, ...]:
    """The problem's parameters, sorted by name (one range per name)."""
    found: dict[str, Parameter] = {}
    values = [c.value_mm for c in constraints]
    values += [x.kpa for x in loads if isinstance(x, Pressure)]
    values += [x.at_mm for x in loads if isinstance(x, Plate)]
    values += [x.stretch for x in loads if isinstance(x, Growth)]
    for v in values:
        if isinstance(v, Parameter):
            if v.name in found and found[v.name] != v:
                raise ValueError(
                    f"{_WHERE}: parameter {v.name!r} is given two ranges "
                    f"({found[v.name].low}-{found[v.name].high} and {v.low}-{v.high})"
                )
            found[v.name] = v
    return tuple(found[k] for k in sorted(found))


def _scale(body: ElasticBody, constraints, loads, length: float) -> float:
    """A displacement scale from the loads (mm): the largest of their elastic responses."""
    e_min = float(jnp.min(body.mu)) * 2.0

    def big(v: float | Parameter) -> float:
        return v.largest if isinstance(v, Parameter) else abs(v)

    scales = [big(c.value_mm) for c in constraints]
    for item in loads:
        if isinstance(item, Pressure):
            scales.append(big(item.kpa) * length / e_min)
        elif isinstance(item, Gravity):
            a = float(np.linalg.norm(item.acceleration_m_s2))
            scales.append(1e-3 * float(jnp.max(body.density)) * a * length * length / e_min)
        elif isinstance(item, Growth):
            owned = np.asarray(body.points)[
                np.asarray(body.owner) == body.names.index(item.structure)
            ]
            extent = (
                float(np.max(np.linalg.norm(owned - owned.mean(0), axis=1))) if len(owned) else 0
            )
            g = item.stretch
            change = (
                max(abs(g.low - 1), abs(g.high - 1)) if isinstance(g, Parameter) else abs(g - 1)
            )
            scales.append(change * max(extent, body.spacing_mm))
        else:
            coord = np.asarray(body.points[:, item.axis])
            ats = (
                (item.at_mm.low, item.at_mm.high)
                if isinstance(item.at_mm, Parameter)
                else (item.at_mm,)
            )
            for at in ats:
                beyond = coord - at if item.keep == "below" else at - coord
                scales.append(float(max(beyond.max(), 0.0)))
    s = max(scales, default=0.0)
    return s if s > 0 else 1e-3 * length


def solve_elasticity(
    key: Array,
    body: ElasticBody,
    *,
    constraints: Sequence[Fixed] = (),
    loads: Sequence[Pressure | Gravity | Plate | Growth] = (),
    config: ElasticConfig = ElasticConfig(),
    checkpoint: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> ElasticSolution:
    """Train a displacement network on ``body`` (see the module docstring).

    Args:
        key: initialisation key (the same key gives the same weights).
        body: the body's quadrature and materials (`ElasticBody.create`).
        constraints: `Fixed` planes (built into the displacement).
        loads: `Pressure`, `Gravity`, `Plate` and `Growth` items.
        config: `ElasticConfig`.
        checkpoint: a ``.npz`` path: resumed from when it exists (same problem only), written
            atomically every ``config.checkpoint_every`` steps and at the end.
        progress: show a progress bar (stderr).
        callback: ``callback(step, sampled_energy)`` after each step (monitoring).

    Returns:
        `ElasticSolution` (call ``.check()`` to require convergence and ``det F > 0``).

    Raises:
        TypeError, ValueError: bad items or settings, before any step.
    """
    if not isinstance(body, ElasticBody):
        raise TypeError(f"{_WHERE}: `body` must be an ElasticBody (got {type(body).__name__})")
    cfg = config.checked()
    constraints, loads = tuple(constraints), tuple(loads)
    _check_items(constraints, loads)
    for item in loads:
        if isinstance(item, Growth) and item.structure not in body.names:
            raise ValueError(
                f"{_WHERE}: Growth.structure {item.structure!r} is not one of the body's "
                f"structures {list(body.names)}"
            )
    dtype = jnp.dtype(cfg.dtype)
    length = body.half_extent_mm
    centre = jnp.asarray(body.centre_mm, dtype)
    lift, distance = dirichlet_lift(constraints, length, _WHERE)
    u_scale = cfg.displacement_scale_mm or _scale(body, constraints, loads, length)
    band_mm = cfg.band_mm or 5.0 * body.spacing_mm
    energy_density = neo_hookean_energy if body.hyperelastic else linear_energy
    pressures = [x for x in loads if isinstance(x, Pressure)]
    plates = [x for x in loads if isinstance(x, Plate)]
    gravity = [x for x in loads if isinstance(x, Gravity)]
    growths = [x for x in loads if isinstance(x, Growth)]
    points = body.points.astype(dtype)
    norm = float(jnp.min(body.mu)) * body.volume_mm3 * (u_scale / length) ** 2

    parameters = _parameters(constraints, loads)
    low = jnp.asarray([p.low for p in parameters], dtype)
    high = jnp.asarray([p.high for p in parameters], dtype)
    net = DisplacementNet(
        key, inputs=3 + len(parameters), width=cfg.width, depth=cfg.depth, dtype=dtype
    )
    graph, params0 = nnx.split(net, nnx.Param)

    def named(theta: Array) -> dict[str, Array]:
        return {p.name: theta[i] for i, p in enumerate(parameters)}

    def displacement(params: Any, x: Array, theta: Array) -> Array:
        scaled = 2 * (theta - low) / (high - low) - 1
        raw = nnx.merge(graph, params)(
            jnp.concatenate([(x - centre) / length, scaled.astype(x.dtype)])
        )
        return lift(x, named(theta)) + distance(x) * (u_scale * raw)

    def flux(params: Any, x: Array, theta: Array, stiffen: Array) -> Array:
        u = displacement(params, x, theta)
        v = jnp.zeros(3, x.dtype)
        for p in pressures:
            v = v + resolve(p.kpa, named(theta)) * band(p.surface.level(x), band_mm) * u
        for plate in plates:
            # the surface's penetration carried into the band along the plate normal m: from x
            # at signed distance φ < 0, x − φ m is on the surface (where φ = 0 it is x itself),
            # so the band integral's flux is κ/2 depth² (m·n) on the surface, and the band
            # spreads it over the cells below instead of a layer as thin as the penetration
            m = jnp.asarray(plate.direction, x.dtype)
            level = body.shape.level(x)
            surface = x - level * m
            reached = surface + displacement(params, surface, theta)
            depth = plate.penetration(reached, named(theta))
            contact = 0.5 * stiffen * plate.stiffness_kpa_per_mm * depth**2
            v = v + band(level, band_mm) * contact * m
        return jnp.concatenate([u, v])

    corners = (
        0.5
        * body.spacing_mm
        * jnp.asarray([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype)
    )

    def stretch_at(x: Array, theta: Array) -> Array:
        """The growth stretch ``g`` at a point: 1 plus each growing structure's ``g − 1`` times
        the share of the cell-sized stencil around the point that the structure owns (painter's
        order, corners outside the body left out). The eigenstrain thus changes over one cell at
        a structure's surface and not at the body's own boundary or symmetry cuts; a point near
        the surface does not jump between the two values."""
        if not growths:
            return jnp.ones((), dtype)
        owner, inside = body.owner_at(x[None, :] + corners)  # the 8 corners
        counted = jnp.maximum(jnp.sum(inside), 1)
        g = jnp.ones((), dtype)
        for item in growths:
            k = body.names.index(item.structure)
            share = jnp.sum(inside & (owner == k)) / counted
            g = g + (jnp.asarray(resolve(item.stretch, named(theta)), dtype) - 1) * share
        return g

    eye = jnp.eye(3, dtype=dtype)

    def energy_at(
        params: Any,
        x: Array,
        w: Array,
        m: Array,
        lm: Array,
        f: Array,
        theta: Array,
        stiffen: Array,
    ) -> Array:
        def per_point(x: Array, m: Array, lm: Array, f: Array) -> Array:
            def both(y: Array) -> tuple[Array, Array]:
                value = flux(params, y, theta, stiffen)
                return value, value

            jac, out = jax.jacfwd(both, has_aux=True)(x)
            u, grad_u, div_v = out[:3], jac[:3], jnp.trace(jac[3:])
            # growth F = Fₑ g: ∇uₑ = Fₑ − I = (∇u − (g − 1) I) / g, energy g³ W(Fₑ)
            g = stretch_at(x, theta)
            elastic = (grad_u - (g - 1) * eye) / g
            return g**3 * energy_density(elastic, m, lm) - jnp.dot(f, u) + div_v

        density = jax.vmap(per_point)(x, m, lm, f)
        return (jnp.sum(w * density) / norm).astype(dtype)

    # the fixed evaluation: the centre of the parameter box and its two extreme corners
    anchors = jnp.stack([low, 0.5 * (low + high), high]) if parameters else jnp.zeros((1, 0), dtype)

    # the held-out energy: fixed random draws of points (never trained on, since training draws
    # from fold_in(key, step)) with each point's own material, as in training; centroids with
    # averaged materials instead misjudge cells cut by an interface, and at coarse spacing their
    # energy can rise while the trained energy falls
    held_out = [
        body.sample(jax.random.fold_in(jax.random.fold_in(key, 2**31 - 1), i))
        for i in range(_HELD_OUT_DRAWS)
    ]

    def energy(params: Any) -> Array:
        """The energy on the held-out draws, averaged over them and the anchor parameters."""
        each = [
            energy_at(
                params,
                x.astype(dtype),
                w.astype(dtype),
                m,
                lm,
                gravity_force(gravity, rho).astype(dtype),
                t,
                jnp.ones((), dtype),
            )
            for x, w, m, lm, rho in held_out
            for t in anchors
        ]
        return sum(each) / len(each)

    def stiffening(step: Array) -> Array:
        """The plates' stiffness factor at ``step``: 1 % → 1 geometrically over the ramp."""
        if cfg.contact_ramp == 0.0:
            return jnp.ones((), dtype)
        done = jnp.minimum(step.astype(dtype) / (cfg.contact_ramp * cfg.steps), 1.0)
        return jnp.asarray(0.01, dtype) ** (1.0 - done)

    def sampled_energy(params: Any, key: Array, stiffen: Array) -> Array:
        """The energy on one random point per cell (`ElasticBody.sample`) for random parameters,
        averaged over ``config.parameter_batch`` draws."""
        draws = cfg.parameter_batch if parameters else 1
        total = jnp.zeros((), dtype)
        for i in range(draws):
            k_points, k_theta = jax.random.split(jax.random.fold_in(key, i))
            x, w, m, lm, rho = body.sample(k_points)
            f = gravity_force(gravity, rho).astype(dtype)
            theta = jax.random.uniform(k_theta, low.shape, dtype, low, high)
            total = total + energy_at(
                params, x.astype(dtype), w.astype(dtype), m, lm, f, theta, stiffen
            )
        return total / draws

    schedule = optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps)
    adam = optax.adam(schedule)

    @jax.jit
    def train_step(state: ElasticState) -> tuple[ElasticState, Array]:
        value, grads = jax.value_and_grad(sampled_energy)(
            state.params, jax.random.fold_in(state.key, state.step), stiffening(state.step)
        )
        updates, opt = adam.update(grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        return dataclasses.replace(state, step=state.step + 1, params=params, opt=opt), value

    fixed_energy = jax.jit(energy)
    state = ElasticState(
        key=key, step=jnp.asarray(0, jnp.int32), params=params0, opt=adam.init(params0)
    )
    digest = _digest(body, constraints, loads, cfg, key)
    path = None if checkpoint is None else Path(checkpoint)
    losses: list[float] = []
    evaluations: list[tuple[int, float]] = []
    if path is not None and path.exists():
        state, history = load_state(path, state, digest=digest, kind=_KIND, where=_WHERE)
        losses = [float(x) for x in history]
        evaluations = _evaluations_from(path, losses, state, fixed_energy)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("elasticity"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("energy {task.fields[energy]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("fit", total=cfg.steps, completed=int(state.step), energy="-")
        while int(state.step) < cfg.steps:
            state, value = train_step(state)
            losses.append(float(value))
            done = int(state.step)
            if done % cfg.evaluate_every == 0 or done == cfg.steps:
                evaluations.append((done, float(fixed_energy(state.params))))
                bar.update(task, energy=f"{evaluations[-1][1]:.6g}")
            bar.update(task, completed=done)
            if callback is not None:
                callback(done, losses[-1])
            if path is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                save_state(
                    path,
                    state,
                    losses,
                    digest=digest,
                    kind=_KIND,
                    extra={"evaluations": np.asarray(evaluations, np.float64).reshape(-1, 2)},
                )
    if not evaluations or evaluations[-1][0] != int(state.step):
        evaluations.append((int(state.step), float(fixed_energy(state.params))))

    params = state.params
    u_fn, grad_fn = _evaluators(displacement, params, parameters, dtype)
    dets = [
        np.linalg.det(
            np.eye(3) + np.asarray(grad_fn(points, **_as_dict(parameters, t)), np.float64)
        )
        for t in np.asarray(anchors)
    ]
    det = np.concatenate(dets)
    penetration = 0.0
    for t in np.asarray(anchors):
        values = _as_dict(parameters, t)
        moved = points + jnp.asarray(u_fn(points, **values), dtype)
        theta = {k: jnp.asarray(v, dtype) for k, v in values.items()}
        for plate in plates:
            penetration = max(penetration, float(jnp.max(plate.penetration(moved, theta))))
    table = np.asarray(evaluations, np.float64)
    converged, change = _converged(table, cfg)
    min_det = float(det.min())
    return ElasticSolution(
        displacement=u_fn,
        gradient=grad_fn,
        losses=np.asarray(losses, np.float64),
        energies=table,
        converged=converged,
        min_det_f=min_det,
        energy_mj=float(table[-1, 1]) * norm * 1e-3,
        summary=_summary(table, change, cfg, converged, min_det, penetration if plates else None),
        state=state,
        network=nnx.merge(graph, params),
        tolerance=cfg.tolerance,
        field=displacement,
        lower_mm=body.lower_mm,
        upper_mm=body.upper_mm,
        parameters=parameters,
        max_penetration_mm=penetration,
    )


def _as_dict(parameters: tuple[Parameter, ...], theta: np.ndarray) -> dict[str, float]:
    return {p.name: float(theta[i]) for i, p in enumerate(parameters)}


def _evaluators(displacement, params, parameters: tuple[Parameter, ...], dtype) -> tuple:
    """``u(points, **values)`` and ``∇u(points, **values)``, jitted, with the parameters by name."""

    def u_one(p: Array, theta: Array) -> Array:
        return displacement(params, p, theta)

    u_jit = jax.jit(
        lambda x, t: jnp.vectorize(lambda p: u_one(p, t), signature="(3)->(3)")(x.astype(dtype))
    )
    g_jit = jax.jit(
        lambda x, t: jnp.vectorize(lambda p: jax.jacfwd(u_one)(p, t), signature="(3)->(3,3)")(
            x.astype(dtype)
        )
    )

    def theta_of(values: dict[str, float]) -> Array:
        names = {p.name for p in parameters}
        if set(values) != names:
            raise ValueError(
                f"medphys.neural.ElasticSolution: give exactly the parameters {sorted(names)} "
                f"(got {sorted(values)})"
            )
        out = []
        for p in parameters:
            v = float(values[p.name])
            if not p.low <= v <= p.high:
                raise ValueError(
                    f"medphys.neural.ElasticSolution: parameter {p.name!r} = {v} lies outside "
                    f"its trained range [{p.low}, {p.high}]"
                )
            out.append(v)
        return jnp.asarray(out, dtype).reshape(len(parameters))

    def u_fn(points: Array, **values: float) -> Array:
        return u_jit(jnp.asarray(points), theta_of(values))

    def grad_fn(points: Array, **values: float) -> Array:
        return g_jit(jnp.asarray(points), theta_of(values))

    return u_fn, grad_fn


def _evaluations_from(path: Path, losses, state: ElasticState, fixed_energy) -> list:
    """After a resume: the held-out energies the checkpoint recorded (the same table the
    uninterrupted run has), or only the current weights' for a checkpoint without them."""
    table = load_extra(path, "evaluations")
    if table is not None and table.size and int(table[-1, 0]) == int(state.step):
        return [(int(s), float(e)) for s, e in table]
    return [(int(state.step), float(fixed_energy(state.params)))] if losses else []


def _converged(table: np.ndarray, cfg: ElasticConfig) -> tuple[bool, float]:
    """Relative change of the held-out energy since the last tenth of the steps began."""
    final_step, final = table[-1]
    earlier = table[table[:, 0] <= final_step - max(1, cfg.steps // 10)]
    if earlier.size == 0 or final == 0 or not np.isfinite(final):
        return False, float("nan")
    change = float((final - earlier[-1, 1]) / abs(final))
    return bool(abs(change) <= cfg.tolerance), change


def _summary(
    table: np.ndarray,
    change: float,
    cfg: ElasticConfig,
    converged: bool,
    min_det: float,
    penetration: float | None = None,
) -> str:
    state = "converged" if converged else "not converged"
    contact = "" if penetration is None else f"; deepest beyond a plate {penetration:.3f} mm"
    return (
        f"energy {table[-1, 1]:.8g} (normalised, held-out points) after {int(table[-1, 0])} "
        f"steps; relative change over the last tenth {change:+.2e}; {state} (tolerance "
        f"{cfg.tolerance:g}); min det F {min_det:.4f}{contact}"
    )


def _digest(body: ElasticBody, constraints, loads, cfg: ElasticConfig, key: Array) -> str:
    h = hashlib.sha256()
    for a in (body.points, body.weights, body.mu, body.lam, body.density):
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    h.update(np.asarray(jax.random.key_data(key)).tobytes())

    def describe(item: Any) -> Any:
        out = {"type": type(item).__name__}
        for f in dataclasses.fields(item):
            v = getattr(item, f.name)
            if hasattr(v, "level"):
                leaves = jax.tree_util.tree_leaves(v)
                out[f.name] = [type(v).__name__] + [np.asarray(x).tolist() for x in leaves]
            else:
                out[f.name] = v
        return out

    text = json.dumps(
        {
            "constraints": [describe(c) for c in constraints],
            "loads": [describe(x) for x in loads],
            "config": dataclasses.asdict(cfg),
            "body": [body.spacing_mm, body.hyperelastic, list(body.names)],
        },
        sort_keys=True,
        default=str,
    )
    h.update(text.encode())
    return h.hexdigest()
