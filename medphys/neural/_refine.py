"""Training the sim-to-real refiner: unpaired, adversarial + contrastive + SimGAN
self-regularisation, with physics terms that keep refined CT or MR images consistent with the
measurements and labels that produced them.

One step (jitted, pure): draw ``batch`` simulated cases and as many real patches per slice (2-D)
or per case (3-D); refine every slice of the cases (``RefineConfig.dim`` 2) or each case's whole
volume (``dim`` 3: 3-D patches); for MR, put the scans' acquired k-space lines back (hard data
consistency, `RefineConfig.data_consistency`) or else clip at zero (magnitudes); crop the refined slices at random to the real
patches' size for the PatchGAN discriminator; the generator loss is

    adversarial · LSGAN(D(crops)) + nce · PatchNCE + self_regularisation · E|refined − sim|/u
    + measurement · max(0, res(refined)/res(sim) − 1) + intensity · E[(shift_label / s)²]
    + edges · E_boundary|∇Δ|/u + texture · E[(log₁₀ NPS_refined − log₁₀ NPS_real)²]

(terms in `medphys.neural._refine_losses`; for CT ``u`` = 100 HU, ``s`` = 10 HU and ``res`` the
projection residual; for MR, images over their reference intensity, ``u`` = 0.1, ``s`` = 5 % of
each label's mean and ``res`` the k-space residual: `medphys.neural._refine_data_mr`). The
discriminator's loss is the LSGAN loss on real patches against the refined crops. Both networks
update from the same step (Adam, β₁ = 0.5, β₂ = 0.999, as CycleGAN and CUT).
`RefineConfig.without_physics()` sets the four physics weights to zero and drops the data
consistency layer: the control the physics-consistency audits must fail.

The modality comes from the data (`SimulatedCT` or `SimulatedMR`), which owns its physics terms;
the networks (`medphys.neural._refiner`) take the modality's input channels.

`prepare_refine` checks the data and builds a `RefineProblem` (a pytree: the data are leaves);
``problem.init(key)`` / ``problem.step(state)`` drive the loop; `train_refiner` runs it with a
progress bar and atomic, digest-checked checkpoints (a checkpoint of another configuration is
refused). The same key and data give the same weights on CPU.
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

from ..metrics import nps
from . import _refine_losses as L
from ._refine_data import SimulatedCT
from ._refine_data_mr import SimulatedMR
from ._refiner import PatchDiscriminator, PatchHeads, Refiner
from ._state_io import load_state, save_state

_WHERE = "medphys.neural.train_refiner"
PHYSICS = ("measurement", "intensity", "edges")
# real patches that cannot be of the simulation's modality (prepare_refine)
MIN_HU_LEVEL = 5.0  # CT patches in HU reach beyond ±this (1st or 99th percentile)
MAX_MR_LEVEL = 10.0  # MR patches over their reference intensity stay below this
TERMS = (
    "discriminator",
    "adversarial",
    "nce",
    "self_regularisation",
    "measurement",
    "intensity",
    "edges",
    "texture",
)
# named random streams of a step (fold_in ids)
_CASES, _REAL, _CROPS, _NCE = 1, 2, 3, 4
_G, _D, _H = 11, 12, 13


@dataclasses.dataclass(frozen=True)
class RefineConfig:
    """Refiner training settings (weights of each term; module docstring).

    Attributes:
        steps: optimiser steps.
        batch: simulated cases per step (all their slices are refined).
        learning_rate: Adam's rate for both networks (constant).
        adversarial, nce, self_regularisation: realism terms' weights.
        measurement, intensity, edges, texture: physics terms' weights.
        label_conditioning: the generator also sees the case's label map (one-hot over label
            values 0 … max; `refine` / `refine_mr` then need the label map too).
        data_consistency: MR only: put the scans' acquired k-space lines back into every refined
            image, in training and in `refine_mr` (CT has no such layer; ignored there).
        nce_patches, temperature: PatchNCE positions per level and τ.
        nps_bins, detrend_px: the NPS of the texture term (`medphys.metrics.nps`).
        dim: 2 (the refiner and discriminator see axial slices; real patches ``(n, n)``) or 3
            (they see the cases' volumes; real patches ``(n, n, n)``, `real_volume_patches`).
        width, depth, blocks: the generator (`Refiner`); disc_width, disc_layers the
            discriminator.
        checkpoint_every: steps between checkpoints.
    """

    steps: int = 1000
    batch: int = 1
    learning_rate: float = 2e-4
    adversarial: float = 1.0
    nce: float = 1.0
    self_regularisation: float = 0.5
    measurement: float = 10.0
    intensity: float = 1.0
    edges: float = 1.0
    texture: float = 1.0
    nce_patches: int = 64
    temperature: float = 0.07
    nps_bins: int = 12
    detrend_px: float = 3.0
    dim: int = 2
    width: int = 16
    depth: int = 2
    blocks: int = 2
    disc_width: int = 16
    disc_layers: int = 3
    checkpoint_every: int = 100
    label_conditioning: bool = False
    data_consistency: bool = True

    def without_physics(self) -> RefineConfig:
        """The same configuration with the four physics weights at zero and no data
        consistency layer."""
        return dataclasses.replace(
            self,
            measurement=0.0,
            intensity=0.0,
            edges=0.0,
            texture=0.0,
            data_consistency=False,
        )

    def checked(self) -> RefineConfig:
        where = "medphys.neural.RefineConfig"
        for name in ("steps", "batch", "nce_patches", "nps_bins", "width", "depth", "disc_width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{where}: `{name}` must be an integer >= 1 (got {v!r})")
        for name in ("blocks", "disc_layers", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{where}: `{name}` must be an integer >= 0 (got {v!r})")
        for name in (*TERMS[1:], "learning_rate", "temperature", "detrend_px"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{where}: `{name}` must be a finite number >= 0 (got {v!r})")
        for name in ("learning_rate", "temperature", "detrend_px"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{where}: `{name}` must be > 0 (got {getattr(self, name)!r})")
        if self.dim not in (2, 3) or isinstance(self.dim, bool):
            raise ValueError(f"{where}: `dim` must be 2 or 3 (got {self.dim!r})")
        for name in ("label_conditioning", "data_consistency"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{where}: `{name}` must be True or False (got {getattr(self, name)!r})"
                )
        return self


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RefineState:
    """Parameters and optimiser states of the generator (with the PatchNCE heads) and the
    discriminator, the step count and the run's key."""

    generator: Any
    discriminator: Any
    g_opt: Any
    d_opt: Any
    step: Array
    key: Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RefineProblem:
    """The data and static configuration of a refiner training (`prepare_refine`)."""

    sim: SimulatedCT | SimulatedMR
    real: Float[Array, "patches n n"]
    target_log_nps: Float[Array, " bins"]
    sim_mask: Array
    graphdefs: Any = dataclasses.field(metadata={"static": True})
    config: RefineConfig = dataclasses.field(metadata={"static": True})
    digest: str = dataclasses.field(metadata={"static": True})

    @property
    def optimizer(self) -> optax.GradientTransformation:
        """Adam (β₁ 0.5, β₂ 0.999) at the configured rate, built from the static config so that
        equal configurations share one compiled step."""
        return optax.adam(self.config.learning_rate, b1=0.5, b2=0.999)

    @property
    def kind(self) -> str:
        """The checkpoint kind: ``refiner-2d-ct`` or ``refiner-2d-mr``."""
        return f"refiner-2d-{self.sim.modality}"

    @property
    def crop(self) -> int:
        return int(self.real.shape[-1])

    def init(self, key: Array) -> RefineState:
        """Fresh networks from ``key`` (streams ``_G``, ``_D``, ``_H``) and their optimisers."""
        g, d = self._modules(key)
        gp = nnx.state(g, nnx.Param)
        dp = nnx.state(d, nnx.Param)
        return RefineState(
            gp, dp, self.optimizer.init(gp), self.optimizer.init(dp), jnp.zeros((), jnp.int32), key
        )

    def _modules(self, key: Array) -> tuple[nnx.Module, nnx.Module]:
        cfg = self.config
        modality = self.sim.modality
        refiner = Refiner(
            jax.random.fold_in(key, _G),
            dim=cfg.dim,
            width=cfg.width,
            depth=cfg.depth,
            blocks=cfg.blocks,
            labels=max(self.sim.label_values) + 1 if cfg.label_conditioning else 0,
            modality=modality,
        )
        heads = PatchHeads(jax.random.fold_in(key, _H), refiner)
        disc = PatchDiscriminator(
            jax.random.fold_in(key, _D),
            dim=cfg.dim,
            width=cfg.disc_width,
            layers=cfg.disc_layers,
            modality=modality,
        )
        return _Generator(refiner, heads), disc

    def generator(self, state: RefineState) -> Any:
        return nnx.merge(self.graphdefs[0], state.generator)

    def refiner(self, state: RefineState) -> Refiner:
        """The trained `Refiner` of ``state``."""
        return self.generator(state).refiner

    def discriminator(self, state: RefineState) -> PatchDiscriminator:
        return nnx.merge(self.graphdefs[1], state.discriminator)

    def _batch(self, key: Array) -> tuple[Array, ...]:
        cfg, sim = self.config, self.sim
        cases = jax.random.randint(jax.random.fold_in(key, _CASES), (cfg.batch,), 0, sim.n_cases)
        per_case = sim.image.shape[-1] if cfg.dim == 2 else 1
        real = self.real[
            jax.random.randint(
                jax.random.fold_in(key, _REAL), (cfg.batch * per_case,), 0, self.real.shape[0]
            )
        ]
        return cases, real

    def losses(self, gp: Any, dp: Any, key: Array) -> tuple[Array, tuple[Array, Array, Array]]:
        """Generator loss and (refined slices, real patches, the term values) for ``key``."""
        cfg, sim = self.config, self.sim
        cases, real = self._batch(key)
        gen = nnx.merge(self.graphdefs[0], gp)
        disc = nnx.merge(self.graphdefs[1], dp)
        image = sim.image[cases]  # (b, x, y, z)
        labels = sim.labels[cases] if cfg.label_conditioning else None
        if cfg.dim == 2:  # the networks see slices (b·z, x, y)
            source = _slices(image)
            labels = None if labels is None else _slices(labels)
            volumes = _volumes(gen.refiner(source, labels), image.shape)
        else:  # the networks see volumes (b, x, y, z)
            source = image
            volumes = gen.refiner(image, labels)
        volumes = sim.finish(volumes, cases, cfg.data_consistency)
        refined = _slices(volumes) if cfg.dim == 2 else volumes
        crops = _crops(refined, self.crop, jax.random.fold_in(key, _CROPS))
        terms = {}
        terms["adversarial"] = L.lsgan_generator(disc(crops))
        if cfg.nce > 0:
            terms["nce"] = L.patch_nce(
                gen.heads,
                gen.refiner.encode(source, labels),
                gen.refiner.encode(refined, labels),
                jax.random.fold_in(key, _NCE),
                patches=cfg.nce_patches,
                temperature=cfg.temperature,
            )
        terms["self_regularisation"] = L.self_regularisation(refined, source, unit=sim.self_unit)
        wanted = frozenset(name for name in PHYSICS if getattr(cfg, name) > 0)
        terms.update(sim.physics_terms(volumes, cases, wanted))
        if cfg.texture > 0:
            terms["texture"] = L.texture_loss(
                _slices(volumes),
                _slices(self.sim_mask[cases]),
                self.target_log_nps,
                spacing_mm=sim.spacing_mm,
                detrend_px=cfg.detrend_px,
            )
        weights = {name: getattr(cfg, name) for name in TERMS[1:]}
        total = sum(weights[k] * v for k, v in terms.items())
        values = jnp.stack(
            [terms.get(k, jnp.zeros((), jnp.float32)).astype(jnp.float32) for k in TERMS[1:]]
        )
        return total, (crops, real, values)

    def step(self, state: RefineState) -> tuple[RefineState, Array]:
        """One simultaneous generator and discriminator update; returns the state and the
        ``(len(TERMS),)`` term values (discriminator loss first)."""
        key = jax.random.fold_in(state.key, state.step)
        (_, (crops, real, values)), g_grads = jax.value_and_grad(self.losses, has_aux=True)(
            state.generator, state.discriminator, key
        )

        def d_loss(dp: Any) -> Array:
            disc = nnx.merge(self.graphdefs[1], dp)
            return L.lsgan_discriminator(disc(real), disc(jax.lax.stop_gradient(crops)))

        d_value, d_grads = jax.value_and_grad(d_loss)(state.discriminator)
        gu, g_opt = self.optimizer.update(g_grads, state.g_opt, state.generator)
        du, d_opt = self.optimizer.update(d_grads, state.d_opt, state.discriminator)
        new = RefineState(
            optax.apply_updates(state.generator, gu),
            optax.apply_updates(state.discriminator, du),
            g_opt,
            d_opt,
            state.step + 1,
            state.key,
        )
        return new, jnp.concatenate([d_value[None].astype(jnp.float32), values])


class _Generator(nnx.Module):
    """The refiner and its PatchNCE heads, trained together."""

    def __init__(self, refiner: Refiner, heads: PatchHeads) -> None:
        self.refiner = refiner
        self.heads = heads


def _slices(volumes: Array) -> Array:
    """``(b, x, y, z)`` → ``(b·z, x, y)``."""
    b, x, y, z = volumes.shape
    return jnp.moveaxis(volumes, -1, 1).reshape(b * z, x, y)


def _volumes(slices: Array, shape: tuple[int, ...]) -> Array:
    b, x, y, z = shape
    return jnp.moveaxis(slices.reshape(b, z, x, y), 1, -1)


def _crops(images: Array, size: int, key: Array) -> Array:
    """One random ``size``-cube (or square) crop of each image ``(n, *spatial)``."""
    n, *spatial = images.shape
    high = jnp.asarray([[s - size + 1 for s in spatial]])
    corners = jax.random.randint(key, (n, len(spatial)), 0, high)
    box = (size,) * len(spatial)
    return jax.vmap(lambda im, c: jax.lax.dynamic_slice(im, tuple(c), box))(images, corners)


def prepare_refine(
    simulated: SimulatedCT | SimulatedMR,
    real: Any,
    *,
    config: RefineConfig = RefineConfig(),
) -> RefineProblem:
    """Check the data and build the training problem (host, before any step).

    Args:
        simulated: `SimulatedCT` cases (HU images, labels, line integrals, projector) or
            `SimulatedMR` cases (normalised magnitude images, labels, scans).
        real: ``(patches, n, n)`` real patches (``(patches, n, n, n)`` for ``config.dim`` 3) in
            the simulation's units (HU for CT, magnitude over the reference intensity for MR:
            `real_mr_slices`, `real_mr_volumes`) at its voxel spacing (`real_patches`,
            `real_volume_patches`); ``n`` is the discriminator's crop size.
        config: `RefineConfig`.

    Raises:
        TypeError: ``simulated`` is neither a `SimulatedCT` nor a `SimulatedMR`.
        ValueError: real patches that are not square patches of the refiner's dimension, larger
            than what it sees, non-finite, too few (< 8), of another modality (CT patches whose
            1st and 99th percentiles both lie within ±5 HU; MR patches above 10 times their
            reference intensity) or with no tissue to measure the target NPS (CT: soft tissue; MR:
            normalised intensity 0.2–1.5); image sizes that are not multiples of
            ``2**depth``.
    """
    cfg = config.checked()
    if not isinstance(simulated, (SimulatedCT, SimulatedMR)):
        raise TypeError(
            f"{_WHERE}: `simulated` must be a medphys.neural.SimulatedCT or SimulatedMR "
            f"(got {type(simulated).__name__})"
        )
    units = "HU" if simulated.modality == "ct" else "MR magnitude over its reference intensity"
    r = np.asarray(real, np.float32)
    seen = simulated.image.shape[1:3] if cfg.dim == 2 else simulated.image.shape[1:]
    what = "2-D patches (patches, n, n)" if cfg.dim == 2 else "3-D patches (patches, n, n, n)"
    if r.ndim != cfg.dim + 1 or len(set(r.shape[1:])) != 1:
        raise ValueError(
            f"{_WHERE}: `real` must be square {what} in {units} for a {cfg.dim}-D refiner "
            f"(RefineConfig.dim; got shape {r.shape})"
        )
    if r.shape[0] < 8:
        raise ValueError(f"{_WHERE}: `real` needs at least 8 patches (got {r.shape[0]})")
    if r.shape[1] > min(seen):
        raise ValueError(
            f"{_WHERE}: real patches ({r.shape[1]} px) must not exceed what the refiner sees "
            f"({'×'.join(map(str, seen))})"
        )
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{_WHERE}: `real` has {int(np.sum(~np.isfinite(r)))} non-finite values")
    lo, hi = (float(v) for v in np.percentile(r, [1, 99]))
    if simulated.modality == "ct" and max(abs(lo), abs(hi)) < MIN_HU_LEVEL:
        raise ValueError(
            f"{_WHERE}: the real patches lie within {lo:.3g} … {hi:.3g} (1st–99th percentile), "
            f"all within ±{MIN_HU_LEVEL:g} of zero: not CT in HU, whose tissue reaches tens to "
            "thousands of HU; are they MR images (normalised), or another modality than the "
            "simulated CT?"
        )
    if simulated.modality == "mr" and hi > MAX_MR_LEVEL:
        raise ValueError(
            f"{_WHERE}: the real patches reach {hi:.4g} (99th percentile), but MR images over "
            f"their reference intensity lie around 0-1.5 (at most {MAX_MR_LEVEL:g} here); "
            "normalise real MR with medphys.neural.real_mr_slices, and do not give CT (HU) "
            "patches to an MR refiner"
        )
    m = 2**cfg.depth
    if any(n % m for n in seen):
        raise ValueError(
            f"{_WHERE}: image size {'×'.join(map(str, seen))} must be a multiple of 2**depth = "
            f"{m}; crop or pad the grid"
        )
    # the texture term measures the NPS on axial slices
    planes = r if cfg.dim == 2 else np.moveaxis(r, -1, 1).reshape(-1, *r.shape[1:3])
    real_mask = simulated.tissue_mask(planes)
    if not real_mask.any():
        what = (
            "soft tissue (−100 to 200 HU, 3 px from edges)"
            if simulated.modality == "ct"
            else "tissue (0.2 to 1.5 of the reference intensity, 3 px from edges; normalise MR "
            "images with medphys.neural.real_mr_slices)"
        )
        raise ValueError(
            f"{_WHERE}: no real patch has {what} to measure the target noise power spectrum"
        )
    _, spectrum = nps(
        jnp.asarray(planes),
        jnp.asarray(real_mask),
        spacing_mm=simulated.spacing_mm,
        detrend_px=cfg.detrend_px,
        bins=cfg.nps_bins,
    )
    target = jnp.log10(jnp.where(spectrum > 0, spectrum, jnp.nan)).astype(jnp.float32)
    sim_mask = simulated.tissue_mask(np.moveaxis(np.asarray(simulated.image), -1, 1))
    sim_mask = np.moveaxis(sim_mask, 1, -1)
    problem = RefineProblem(
        sim=simulated,
        real=jnp.asarray(r),
        target_log_nps=target,
        sim_mask=jnp.asarray(sim_mask),
        graphdefs=None,
        config=cfg,
        digest="",
    )
    g, d = nnx.eval_shape(lambda: problem._modules(jax.random.key(0)))
    graphdefs = (nnx.graphdef(g), nnx.graphdef(d))
    return dataclasses.replace(problem, graphdefs=graphdefs, digest=_digest(cfg, simulated, r))


def _digest(cfg: RefineConfig, sim: SimulatedCT | SimulatedMR, real: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {"config": repr(cfg), "spacing": sim.spacing_mm, "modality": sim.modality},
            sort_keys=True,
        ).encode()
    )
    for a in (*sim.digest_arrays(), real):
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class RefineResult:
    """A trained refiner: ``refiner`` (`Refiner`), ``discriminator``, the final ``state``,
    ``losses`` ``(steps, len(TERMS))`` named by ``terms``, and a ``summary`` line."""

    refiner: Refiner
    discriminator: PatchDiscriminator
    state: RefineState
    losses: np.ndarray
    terms: tuple[str, ...]
    summary: str


def train_refiner(
    key: Array,
    simulated: SimulatedCT | SimulatedMR,
    real: Any,
    *,
    config: RefineConfig = RefineConfig(),
    checkpoint: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[int, np.ndarray, RefineProblem, RefineState], None] | None = None,
) -> RefineResult:
    """Train a 2-D CT or MR refiner from simulated cases toward real patches (module
    docstring).

    Args:
        key: initial weights and every step's draws; the same key and data give the same
            weights.
        simulated: `SimulatedCT` (see `simulate_ct`) or `SimulatedMR` (`simulate_mr`).
        real: ``(patches, n, n)`` real patches in the simulation's units at its spacing
            (`prepare_refine`).
        config: `RefineConfig`.
        checkpoint: a ``.npz`` path, resumed from when it exists (same configuration and data
            only), written atomically every ``config.checkpoint_every`` steps and at the end.
        progress: show a progress bar with the generator's terms.
        callback: ``callback(step, terms, problem, state)`` after each step.

    Returns:
        `RefineResult`.

    Raises:
        TypeError, ValueError: as `prepare_refine`; a checkpoint of another configuration.
    """
    problem = prepare_refine(simulated, real, config=config)
    cfg = problem.config
    state = problem.init(key)
    path = None if checkpoint is None else Path(checkpoint)
    history: list = []
    if path is not None and path.exists():
        state, losses = load_state(
            path, state, digest=problem.digest, kind=problem.kind, where=_WHERE
        )
        history = [list(row) for row in losses.reshape(-1, len(TERMS))]
    step = jax.jit(RefineProblem.step, donate_argnums=1)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("refine"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[terms]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("refine", total=cfg.steps, completed=int(state.step), terms="-")
        while int(state.step) < cfg.steps:
            state, values = step(problem, state)
            row = np.asarray(values, np.float64)
            history.append(list(row))
            done = int(state.step)
            bar.update(
                task, completed=done, terms=f"D {row[0]:.3f} G {row[1]:.3f} meas {row[4]:.3f}"
            )
            if callback is not None:
                callback(done, row, problem, state)
            if (
                path is not None
                and cfg.checkpoint_every
                and (done % cfg.checkpoint_every == 0 or done == cfg.steps)
            ):
                save_state(path, state, history, digest=problem.digest, kind=problem.kind)
    losses = np.asarray(history, np.float64).reshape(-1, len(TERMS))
    return RefineResult(
        refiner=problem.refiner(state),
        discriminator=problem.discriminator(state),
        state=state,
        losses=losses,
        terms=TERMS,
        summary=_summary(losses),
    )


def _summary(losses: np.ndarray) -> str:
    if losses.shape[0] == 0:
        return "no steps taken"
    tail = max(1, losses.shape[0] // 10)
    last = losses[-tail:].mean(axis=0)
    parts = ", ".join(f"{name} {v:.4g}" for name, v in zip(TERMS, last, strict=True))
    return f"after {losses.shape[0]} steps, mean of the last {tail}: {parts}"
