"""The Bloch tier of the MR acquisition: typed sequences simulated on isochromats, full encoding.

A protocol whose sequence is a `BlochSpinEcho`, `BlochGradientEcho` or `PulseqSequence` is
simulated by `bloch` instead of the tier-1 signal equations. Each axial slice of the phantom is a
2-D acquisition with Cartesian encoding of the phantom's own grid (`Cartesian2D` with the grid's
matrix and field of view; one ky line per repetition, kx read out along the grid's first axis),
the layout of `fft2c`, so the k-space continues through the same undersampling, noise and
reconstruction as tier 1. Slices are independent (ideal rectangular slice profile, as tier 1).
What depends on the grid and the sequence only is planned once, when the operator is prepared
(`plan_bloch`: the lowered sequence, its ADC count checked, the T2' horizon); the isochromats are
chosen at each acquisition from the maps' values (`bloch_kspace`, on the host).

Isochromats: one group per voxel and tissue compartment present in it, at the voxel's centre
(positions ``((i - nx//2) dx, (j - ny//2) dy, 0)`` along the grid axes, so the k-space sample of
``k`` is ``Σ m(r) exp(-i 2π k·r)``), with PD weighted by the compartment's fraction, its T1 and
T2, the voxel's B0 and B1, and ``isochromats`` off-resonances and weights standing for a
Lorentzian line of half-width ``1/(2π T2')``, ``1/T2' = 1/T2* - 1/T2``: intra-voxel dephasing
(T2*) during the readout and its refocusing at spin echoes. The rule is `lorentzian_quadrature`
over the sequence's horizon (the longest time from an RF pulse to an ADC sample), so the sum
follows ``exp(-t/T2')`` to about ``0.2 H/((n - 1) T2')`` over that horizon ``H``: 8 isochromats
give 0.791 at ``t = 0.24 T2'`` (exact 0.787; equal-weight quantiles gave 0.820); one isochromat
models no T2' at all. The k-space is ``Σ / sqrt(nx ny)`` (the
unitary `fft2c` scale), so a Bloch image equals the tier-1 image wherever the sequence realises
the tier-1 assumptions (ideal spoiling; relaxation during the readout and the pulses excepted).

Spoiling: `BlochSpinEcho` and `BlochGradientEcho` default to ideal spoiling (transverse
magnetisation destroyed at the end of each repetition: the tier-1 assumption); a Pulseq file has
no ideal spoiling (the format has none) and relies on its own gradients.

References:
    Bloch F. Nuclear induction. Phys Rev 70:460-474 (1946).
    Layton KJ, Kroboth S, Jia F, et al. Pulseq: a rapid and hardware-independent pulse sequence
    prototyping framework. Magn Reson Med 77:1544-1552 (2017).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import math
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex

from ...volume import Grid
from . import _checks as chk
from ._bloch import Spins, bloch, lorentzian_rule
from ._builders import Cartesian2D, gradient_echo, spin_echo
from ._pulseq import read_pulseq
from ._tissue import TissueMaps
from ._waveforms import Block, StepSequence, lower

__all__ = [
    "AbstractBlochSequence",
    "BlochGradientEcho",
    "BlochPlan",
    "BlochSpinEcho",
    "PulseqSequence",
    "bloch_kspace",
    "plan_bloch",
]

#: The floating leaves of a `StepSequence` (``adc_slot`` is an integer index).
_FLOAT_STEP_FIELDS = ("dt_s", "rf_hz", "grad_hz_per_mm", "adc_phase_rad", "spoil")


class AbstractBlochSequence(abc.ABC):
    """A sequence that `simulate` runs through the Bloch tier (frozen, hashable, static).

    Attributes:
        isochromats: off-resonance isochromats per voxel and compartment (T2* dephasing).
        dwell_s: readout dwell time (s) of the Cartesian encoding the sequence is built with.
    """

    isochromats: int
    dwell_s: float

    @abc.abstractmethod
    def blocks(self, encoding: Cartesian2D) -> list[Block]:
        """The sequence's blocks for a 2-D Cartesian encoding of the phantom's grid."""


def _common(where: str, isochromats: Any, dwell_s: Any) -> tuple[int, float]:
    return (
        chk.integer(where, "isochromats", isochromats, minimum=1),
        chk.positive(where, "dwell_s", dwell_s, " (seconds)"),
    )


def _boolean(where: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: `{name}` must be True or False (got {value!r})")
    return bool(value)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class BlochSpinEcho(AbstractBlochSequence):
    """Spin echo (90°x, 180°y, hard pulses) simulated with Bloch isochromats (`spin_echo`).

    Attributes:
        te_s, tr_s: echo and repetition time (s).
        n_dummy: repetitions before the first ky line (1 reaches the steady state of a perfect
            90° with ideal spoiling).
        isochromats: off-resonance isochromats per voxel and compartment.
        dwell_s: readout dwell (s).
        ideal_spoiling: destroy transverse magnetisation at the end of every repetition.
    """

    te_s: float
    tr_s: float
    n_dummy: int = 1
    isochromats: int = 1
    dwell_s: float = 1e-5
    ideal_spoiling: bool = True

    @classmethod
    def create(
        cls,
        *,
        te_s: float,
        tr_s: float,
        n_dummy: int = 1,
        isochromats: int = 1,
        dwell_s: float = 1e-5,
        ideal_spoiling: bool = True,
    ) -> BlochSpinEcho:
        """Validated constructor.

        Raises:
            ValueError: non-positive times, ``te_s >= tr_s``, ``n_dummy < 0``,
                ``isochromats < 1``, timing too short for the pulses.

        Example:
            >>> BlochSpinEcho.create(te_s=0.015, tr_s=0.5).isochromats
            1
        """
        where = f"{chk.PREFIX}BlochSpinEcho.create"
        n_iso, dwell = _common(where, isochromats, dwell_s)
        te, tr = chk.echo_times(where, te_s, tr_s)
        out = cls(
            te_s=te,
            tr_s=tr,
            n_dummy=chk.integer(where, "n_dummy", n_dummy, minimum=0),
            isochromats=n_iso,
            dwell_s=dwell,
            ideal_spoiling=_boolean(where, "ideal_spoiling", ideal_spoiling),
        )
        spin_echo(te_s=te, tr_s=tr)  # the pulses fit the timing (raises a FieldError if not)
        return out

    def blocks(self, encoding: Cartesian2D) -> list[Block]:
        return spin_echo(
            te_s=self.te_s,
            tr_s=self.tr_s,
            n_dummy=self.n_dummy,
            encoding=encoding,
            ideal_spoiling=self.ideal_spoiling,
        )


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class BlochGradientEcho(AbstractBlochSequence):
    """Spoiled gradient echo (FLASH) simulated with Bloch isochromats (`gradient_echo`).

    Attributes:
        te_s, tr_s: echo and repetition time (s).
        flip_deg: flip angle (degrees).
        n_dummy: repetitions before the first ky line (the approach to the steady state goes as
            ``(cos α · exp(-TR/T1))^n``).
        isochromats: off-resonance isochromats per voxel and compartment (T2* decay to the echo).
        dwell_s: readout dwell (s).
        rf_spoil_increment_deg: quadratic RF phase increment (e.g. 117); 0: none.
        ideal_spoiling: destroy transverse magnetisation at the end of every repetition.
    """

    te_s: float
    tr_s: float
    flip_deg: float
    n_dummy: int = 20
    isochromats: int = 1
    dwell_s: float = 1e-5
    rf_spoil_increment_deg: float = 0.0
    ideal_spoiling: bool = True

    @classmethod
    def create(
        cls,
        *,
        te_s: float,
        tr_s: float,
        flip_deg: float,
        n_dummy: int = 20,
        isochromats: int = 1,
        dwell_s: float = 1e-5,
        rf_spoil_increment_deg: float = 0.0,
        ideal_spoiling: bool = True,
    ) -> BlochGradientEcho:
        """Validated constructor.

        Raises:
            ValueError: non-positive times, ``te_s >= tr_s``, flip outside (0, 180],
                ``n_dummy < 0``, ``isochromats < 1``.
        """
        where = f"{chk.PREFIX}BlochGradientEcho.create"
        n_iso, dwell = _common(where, isochromats, dwell_s)
        te, tr = chk.echo_times(where, te_s, tr_s)
        out = cls(
            te_s=te,
            tr_s=tr,
            flip_deg=chk.flip(where, "flip_deg", flip_deg),
            n_dummy=chk.integer(where, "n_dummy", n_dummy, minimum=0),
            isochromats=n_iso,
            dwell_s=dwell,
            rf_spoil_increment_deg=chk.number(
                where, "rf_spoil_increment_deg", rf_spoil_increment_deg
            ),
            ideal_spoiling=_boolean(where, "ideal_spoiling", ideal_spoiling),
        )
        gradient_echo(te_s=te, tr_s=tr, flip_deg=out.flip_deg)  # the timing fits
        return out

    def blocks(self, encoding: Cartesian2D) -> list[Block]:
        return gradient_echo(
            te_s=self.te_s,
            tr_s=self.tr_s,
            flip_deg=self.flip_deg,
            n_dummy=self.n_dummy,
            encoding=encoding,
            rf_spoil_increment_deg=self.rf_spoil_increment_deg,
            ideal_spoiling=self.ideal_spoiling,
        )


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class PulseqSequence(AbstractBlochSequence):
    """A Pulseq ``.seq`` file simulated with Bloch isochromats.

    The file must encode the phantom grid as `Cartesian2D` does: ``nx · ny`` ADC samples in all,
    ``nx`` per ky line, lines in ky order, ``k = ((j - nx//2)/FOVx, (i - ny//2)/FOVy)`` with the
    grid's field of view (write one with `write_pulseq` from a builder). Compared and hashed by
    path, content digest and ``isochromats``.

    Attributes:
        path: the file (absolute).
        digest: SHA-256 of the file's bytes when it was read.
        isochromats: off-resonance isochromats per voxel and compartment.
        dwell_s: unused (the file fixes the readout); kept for the common interface.
        sequence_blocks: the blocks read from the file.
    """

    path: str
    digest: str
    isochromats: int = 1
    dwell_s: float = 1e-5
    sequence_blocks: tuple[Block, ...] = dataclasses.field(default=(), compare=False)

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, isochromats: int = 1) -> PulseqSequence:
        """Read and check a ``.seq`` file (the work happens here, once).

        Raises:
            FileNotFoundError: no such file.
            PulseqError: (a ``ValueError``) the file does not parse; names file, line, section.
            ValueError: ``isochromats < 1``, or a file without ADC samples.
        """
        where = f"{chk.PREFIX}PulseqSequence.create"
        n_iso = chk.integer(where, "isochromats", isochromats, minimum=1)
        p = Path(path).resolve()
        if not p.is_file():
            raise FileNotFoundError(f"{where}: no such Pulseq file {str(p)!r}")
        blocks = tuple(read_pulseq(p))
        if not any(b.adc is not None for b in blocks):
            raise chk.FieldError(where, "path", f"{str(p)!r} has no ADC events: nothing to image")
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        return cls(path=str(p), digest=digest, isochromats=n_iso, sequence_blocks=blocks)

    def blocks(self, encoding: Cartesian2D) -> list[Block]:
        return list(self.sequence_blocks)


def _horizon_s(seq: StepSequence) -> float:
    """The longest time from the start of the last RF step before an ADC sample to the sample
    (s): how long the T2' decay of the isochromats must follow ``exp(-t/T2')``."""
    dt = np.asarray(seq.dt_s, np.float64)
    end = np.cumsum(dt)
    rf_on = seq.pattern.rf_on if seq.pattern is not None else np.any(np.asarray(seq.rf_hz) != 0, 1)
    last_rf_start = np.maximum.accumulate(np.where(rf_on, end - dt, 0.0))
    sampled = np.asarray(seq.adc_slot) < seq.n_adc
    if not np.any(sampled):
        return float(end[-1]) if end.size else 1.0
    return max(float(np.max((end - last_rf_start)[sampled])), 1e-9)


def _t2prime_rules(
    r2prime: np.ndarray, n_iso: int, horizon_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Isochromat offsets (Hz) and weights per distinct ``1/T2'`` (`lorentzian_quadrature` over
    the sequence's horizon), and the index of each entry of ``r2prime`` into them."""
    values, rule = np.unique(r2prime, return_inverse=True)
    offsets = np.zeros((values.size, n_iso))
    weights = np.full((values.size, n_iso), 1.0 / n_iso)
    for k, r2p in enumerate(values):
        if r2p > 0 and n_iso > 1:
            offsets[k], weights[k] = lorentzian_rule(n_iso, 1.0 / r2p, horizon_s)
    return offsets, weights, rule.reshape(r2prime.shape)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BlochPlan:
    """What the Bloch tier fixes once per grid and sequence (`plan_bloch`).

    Attributes:
        steps: the sequence lowered for the grid's Cartesian encoding (leaves: timing, RF,
            gradients; its static `StepPattern` set by `lower`).
        isochromats: off-resonance isochromats per voxel and compartment (static).
        horizon_s: the longest time from an RF pulse to an ADC sample (s; static): the span over
            which the isochromats' T2' rule follows ``exp(-t/T2')``.
        spacing_mm: in-plane voxel size ``(dx, dy)`` of the encoding (mm; static).
    """

    steps: StepSequence
    isochromats: int = dataclasses.field(metadata={"static": True})
    horizon_s: float = dataclasses.field(metadata={"static": True})
    spacing_mm: tuple[float, float] = dataclasses.field(metadata={"static": True})


def encoding_of(grid: Grid, dwell_s: float) -> Cartesian2D:
    """The Cartesian encoding of a grid: its in-plane matrix and field of view (mm)."""
    nx, ny, _ = grid.shape
    dx, dy = (float(s) for s in grid.spacing_mm[:2])
    return Cartesian2D.create((nx, ny), (nx * dx, ny * dy), dwell_s=dwell_s)


def plan_bloch(where: str, grid: Grid, sequence: AbstractBlochSequence, dtype: Any) -> BlochPlan:
    """Lower a Bloch-tier sequence for a grid's encoding, on the host, once.

    Raises:
        ValueError: a sequence whose ADC count is not the grid's ``nx · ny``.
    """
    nx, ny, _ = grid.shape
    enc = encoding_of(grid, sequence.dwell_s)
    with jax.ensure_compile_time_eval():  # host planning, also when a caller is being traced
        steps = lower(sequence.blocks(enc), dtype=dtype)
        horizon_s = _horizon_s(steps)
    if steps.n_adc != nx * ny:
        raise chk.FieldError(
            where,
            "protocol.sequence",
            f"the sequence has {steps.n_adc} ADC samples; the Bloch tier needs one per k-space "
            f"sample of the {nx} x {ny} grid ({nx * ny}), line by line (see Cartesian2D)",
        )
    return BlochPlan(
        steps=steps,
        isochromats=sequence.isochromats,
        horizon_s=horizon_s,
        spacing_mm=(enc.fov_mm[0] / nx, enc.fov_mm[1] / ny),
    )


def bloch_kspace(
    plan: BlochPlan,
    maps: TissueMaps,
    coil_maps: Complex[Array, "coils x y z"],
) -> Complex[Array, "coils kx ky z"]:
    """Noise-free, fully sampled multi-coil k-space of every axial slice, by Bloch simulation.

    Args:
        plan: the lowered sequence (`plan_bloch` on the maps' grid).
        maps: tissue maps whose fractions, T2 and T2* are on the host: the isochromats of each
            slice are chosen from their values (``jax.errors.TracerArrayConversionError`` when
            they are traced).
        coil_maps: ``(coils, x, y, z)`` complex receive sensitivities.

    Returns:
        ``(coils, kx, ky, z)`` k-space in the layout and scale of `fft2c`.
    """
    nx, ny, nz = maps.shape
    dtype = maps.dtype
    seq = plan.steps
    if seq.dt_s.dtype != dtype:  # a plan made for another precision: same steps, cast
        seq = dataclasses.replace(
            seq, **{f: getattr(seq, f).astype(dtype) for f in _FLOAT_STEP_FIELDS}
        )
    dx, dy = plan.spacing_mm
    n_iso = plan.isochromats
    fractions = np.asarray(maps.fractions)
    shape = fractions.shape

    def per_voxel(v: Array) -> Array:
        v = jnp.asarray(v, dtype)
        return jnp.broadcast_to(v if v.ndim == 4 else v[:, None, None, None], shape)

    pd, t1, t2, t2s = (per_voxel(v) for v in (maps.pd, maps.t1_s, maps.t2_s, maps.t2star_s))
    offsets_of, weights_of, rule = _t2prime_rules(
        np.asarray(jnp.maximum(1.0 / t2s - 1.0 / t2, 0.0)), n_iso, plan.horizon_s
    )
    picks = [np.nonzero(fractions[..., z] > 0) for z in range(nz)]
    n_max = max(1, *(len(p[0]) for p in picks))
    n_spins = n_max * n_iso
    slices = []
    for z, (c, i, j) in enumerate(picks):
        n = len(c)
        pad = n_max - n

        def take(a: Array, fill: float, c=c, i=i, j=j, z=z, pad=pad) -> Array:
            v = a[c, i, j, z] if a.ndim == 4 else a[i, j, z]
            v = jnp.concatenate([v, jnp.full((pad,), fill, v.dtype)])
            return jnp.repeat(v, n_iso)

        frac = take(maps.fractions, 0.0)
        r = np.concatenate([rule[c, i, j, z], np.zeros(pad, np.int64)])
        offsets = jnp.asarray(offsets_of[r].reshape(-1), dtype)
        weights_iso = jnp.asarray(weights_of[r].reshape(-1), dtype)
        pos = np.zeros((n_spins, 3))
        pos[: n * n_iso, 0] = np.repeat((i - nx // 2) * dx, n_iso)
        pos[: n * n_iso, 1] = np.repeat((j - ny // 2) * dy, n_iso)
        spins = Spins(
            position_mm=jnp.asarray(pos, dtype),
            pd=frac * take(pd, 0.0) * weights_iso,
            t1_s=take(t1, 1.0),
            t2_s=take(t2, 1.0),
            b0_hz=take(maps.b0_hz, 0.0) + offsets,
            b1=take(maps.b1, 1.0),
        )
        weights = coil_maps[:, i, j, z]
        weights = jnp.concatenate(
            [weights, jnp.zeros((weights.shape[0], pad), weights.dtype)], axis=1
        )
        out = bloch(seq, spins, receive=jnp.repeat(weights, n_iso, axis=1))  # (coils, adc)
        slices.append(jnp.swapaxes(out.reshape(-1, ny, nx), 1, 2))
    return jnp.stack(slices, axis=-1) / math.sqrt(nx * ny)
