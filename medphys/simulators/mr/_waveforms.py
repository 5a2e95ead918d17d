"""Typed pulse-sequence events (RF, gradients, ADC) in blocks, and their lowering to time steps.

A sequence is a list of `Block` values, as in Pulseq: each block has a duration and at most one
RF pulse, one gradient per axis and one ADC event, all timed from the block's start. The Bloch
simulator (tier 3) runs on the *lowered* form, `StepSequence`: piecewise-constant fields on
variable-length time steps. Lowering puts a step boundary at every RF and gradient raster edge,
every trapezoid corner and every ADC sample, and nowhere else, so a long delay is one step and the
simulation of a piecewise-constant waveform is exact (rotations and relaxation are exact per step).
Linear gradient ramps are sampled at the midpoint of each gradient-raster interval (exact area).

Units: time s, RF amplitude Hz (``γ B1 / 2π``), gradient amplitude Hz/mm (``γ G / 2π``; 1 mT/m
= 42.577 Hz/mm for protons), gradient area (k) cycles/mm, angles radians unless ``_deg``.
RF along +x (phase 0) tips +z magnetisation towards +y (left-handed precession of protons).

References:
    Layton KJ et al. Pulseq: a rapid and hardware-independent pulse sequence prototyping
    framework. Magn Reson Med 77:1544-1552 (2017).
    Pauly J, Le Roux P, Nishimura D, Macovski A. Parameter relations for the Shinnar-Le Roux
    selective excitation pulse design algorithm. IEEE Trans Med Imaging 10:53-65 (1991)
    (sinc pulses, time-bandwidth product).
    Bernstein MA, King KF, Zhou XJ. *Handbook of MRI Pulse Sequences*. Elsevier, 2004, ch. 2
    (apodised sinc and Gaussian pulses), ch. 4 (trapezoids).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from . import _checks as chk

__all__ = [
    "ADC",
    "GAMMA_HZ_PER_T",
    "ArbitraryGradient",
    "Block",
    "RFPulse",
    "StepPattern",
    "StepSequence",
    "Trapezoid",
    "gaussian_pulse",
    "hard_pulse",
    "lower",
    "sinc_pulse",
]

#: Proton gyromagnetic ratio over 2π (Hz/T), CODATA 2018.
GAMMA_HZ_PER_T = 42.577478518e6

_TIME_DECIMALS = 10  # step boundaries are merged when closer than 0.1 ns


@dataclasses.dataclass(frozen=True)
class RFPulse:
    """An RF pulse: complex amplitude samples (Hz) on a raster, from ``delay_s`` in its block.

    Attributes:
        signal_hz: complex samples ``γ B1(t) / 2π`` (Hz), constant over each raster interval;
            phase 0 is along +x.
        raster_s: sample duration (s).
        delay_s: start time within the block (s).
        center_s: time of the pulse's effective centre from its start (s), for echo timing.
        bandwidth_hz: excitation bandwidth (Hz) for slice selection, when known.
    """

    signal_hz: np.ndarray
    raster_s: float
    delay_s: float = 0.0
    center_s: float = 0.0
    bandwidth_hz: float | None = None

    @property
    def duration_s(self) -> float:
        return len(self.signal_hz) * self.raster_s

    def flip_deg(self) -> float:
        """Nominal flip angle on resonance (small-tip area rule, exact for constant phase)."""
        return float(np.degrees(2 * math.pi * abs(np.sum(self.signal_hz)) * self.raster_s))


def _check_pulse(where: str, flip_deg: Any, duration_s: Any, raster_s: Any) -> tuple[float, ...]:
    flip = chk.flip(where, "flip_deg", flip_deg)
    dur = chk.positive(where, "duration_s", duration_s, " (seconds)")
    raster = chk.positive(where, "raster_s", raster_s, " (seconds)")
    return flip, dur, raster


def _scaled(shape: np.ndarray, flip_deg: float, raster_s: float, phase_deg: float) -> np.ndarray:
    area = float(np.sum(shape)) * raster_s  # cycles per Hz of amplitude
    amp = math.radians(flip_deg) / (2 * math.pi * area)
    return (amp * shape * np.exp(1j * math.radians(phase_deg))).astype(np.complex128)


def hard_pulse(
    flip_deg: float, duration_s: float, *, phase_deg: float = 0.0, delay_s: float = 0.0
) -> RFPulse:
    """A rectangular (non-selective) pulse of one raster interval.

    Example:
        >>> hard_pulse(90.0, 1e-4).signal_hz.real.round(1)
        array([2500.])
    """
    flip, dur, _ = _check_pulse(f"{chk.PREFIX}hard_pulse", flip_deg, duration_s, duration_s)
    return RFPulse(_scaled(np.ones(1), flip, dur, phase_deg), dur, delay_s, 0.5 * dur)


def sinc_pulse(
    flip_deg: float,
    duration_s: float,
    *,
    time_bw_product: float = 4.0,
    apodization: float = 0.5,
    raster_s: float = 1e-6,
    phase_deg: float = 0.0,
    delay_s: float = 0.0,
) -> RFPulse:
    """A Hanning/Hamming-apodised sinc: ``[(1 - a) + a cos(2π t/T)] sinc(TBW t/T)``, |t| <= T/2.

    Its excitation bandwidth is ``time_bw_product / duration_s`` (Hz); with a slice-select
    gradient ``g`` (Hz/mm) the slice thickness is ``bandwidth / g`` (mm).

    Raises:
        ValueError: flip outside (0, 180], non-positive duration, raster or TBW, apodisation
            outside [0, 1].
    """
    where = f"{chk.PREFIX}sinc_pulse"
    flip, dur, raster = _check_pulse(where, flip_deg, duration_s, raster_s)
    tbw = chk.positive(where, "time_bw_product", time_bw_product)
    a = chk.number(where, "apodization", apodization)
    if not 0.0 <= a <= 1.0:
        raise chk.FieldError(where, "apodization", f"`apodization` must be in [0, 1] (got {a})")
    n = max(round(dur / raster), 1)
    t = ((np.arange(n) + 0.5) / n - 0.5) * 1.0  # units of T
    shape = ((1.0 - a) + a * np.cos(2 * math.pi * t)) * np.sinc(tbw * t)
    return RFPulse(
        _scaled(shape, flip, raster, phase_deg),
        raster,
        delay_s,
        0.5 * n * raster,
        tbw / (n * raster),
    )


def gaussian_pulse(
    flip_deg: float,
    duration_s: float,
    *,
    time_bw_product: float = 4.0,
    raster_s: float = 1e-6,
    phase_deg: float = 0.0,
    delay_s: float = 0.0,
) -> RFPulse:
    """A Gaussian pulse ``exp(-(π BW t)² / (4 ln 2))`` truncated to ``duration_s``.

    ``BW = time_bw_product / duration_s`` is the FWHM of its small-tip excitation profile (Hz).
    """
    where = f"{chk.PREFIX}gaussian_pulse"
    flip, dur, raster = _check_pulse(where, flip_deg, duration_s, raster_s)
    tbw = chk.positive(where, "time_bw_product", time_bw_product)
    n = max(round(dur / raster), 1)
    t = ((np.arange(n) + 0.5) / n - 0.5) * dur
    bw = tbw / dur
    shape = np.exp(-((math.pi * bw * t) ** 2) / (4 * math.log(2)))
    return RFPulse(_scaled(shape, flip, raster, phase_deg), raster, delay_s, 0.5 * n * raster, bw)


@dataclasses.dataclass(frozen=True)
class Trapezoid:
    """A trapezoidal gradient lobe (amplitude Hz/mm; ``rise_s = fall_s = 0`` for a box)."""

    amplitude_hz_per_mm: float
    flat_s: float
    rise_s: float = 0.0
    fall_s: float = 0.0
    delay_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.delay_s + self.rise_s + self.flat_s + self.fall_s

    @property
    def area(self) -> float:
        """Gradient area (cycles/mm)."""
        return self.amplitude_hz_per_mm * (self.flat_s + 0.5 * (self.rise_s + self.fall_s))

    def edges(self, raster_s: float) -> np.ndarray:
        d, r, f, fa = self.delay_s, self.rise_s, self.flat_s, self.fall_s
        ramps = [
            d + np.linspace(0.0, r, max(math.ceil(r / raster_s - 1e-9), 1) + 1),
            d + r + f + np.linspace(0.0, fa, max(math.ceil(fa / raster_s - 1e-9), 1) + 1),
        ]
        return np.concatenate(ramps)

    def value(self, t: np.ndarray) -> np.ndarray:
        d, r, f, fa = self.delay_s, self.rise_s, self.flat_s, self.fall_s
        u = t - d
        up = np.clip(u / r, 0.0, 1.0) if r > 0 else (u >= 0).astype(float)
        down = np.clip((r + f + fa - u) / fa, 0.0, 1.0) if fa > 0 else (u < r + f).astype(float)
        inside = (u >= 0) & (u < r + f + fa)
        return self.amplitude_hz_per_mm * np.where(inside, np.minimum(up, down), 0.0)


@dataclasses.dataclass(frozen=True)
class ArbitraryGradient:
    """A gradient waveform (Hz/mm) constant over each raster interval, from ``delay_s``."""

    waveform_hz_per_mm: np.ndarray
    raster_s: float
    delay_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.delay_s + len(self.waveform_hz_per_mm) * self.raster_s

    def edges(self, raster_s: float) -> np.ndarray:
        return self.delay_s + self.raster_s * np.arange(len(self.waveform_hz_per_mm) + 1)

    def value(self, t: np.ndarray) -> np.ndarray:
        i = np.floor((t - self.delay_s) / self.raster_s).astype(int)
        ok = (i >= 0) & (i < len(self.waveform_hz_per_mm))
        w = np.asarray(self.waveform_hz_per_mm, dtype=float)
        return np.where(ok, w[np.clip(i, 0, len(w) - 1)], 0.0)


@dataclasses.dataclass(frozen=True)
class ADC:
    """Readout: ``num_samples`` samples at ``delay_s + (i + 0.5) dwell_s`` (Pulseq's convention).

    ``phase_rad`` is the receiver phase: each sample is multiplied by ``exp(-i phase_rad)``.
    """

    num_samples: int
    dwell_s: float
    delay_s: float = 0.0
    phase_rad: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.delay_s + self.num_samples * self.dwell_s

    def times(self) -> np.ndarray:
        return self.delay_s + (np.arange(self.num_samples) + 0.5) * self.dwell_s


Gradient = Trapezoid | ArbitraryGradient


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of a sequence: events timed from its start (s).

    Attributes:
        duration_s: block length (s); ``None``: the longest event.
        rf: RF pulse or ``None``.
        gx, gy, gz: gradients along world x, y, z or ``None``.
        adc: readout or ``None``.
        spoil: ideal spoiling at the block's end (transverse magnetisation set to zero), the
            model that the tier-1 signal equations assume.
    """

    duration_s: float | None = None
    rf: RFPulse | None = None
    gx: Gradient | None = None
    gy: Gradient | None = None
    gz: Gradient | None = None
    adc: ADC | None = None
    spoil: bool = False

    def length_s(self) -> float:
        """The block's duration: ``duration_s`` or the end of its last event (s)."""
        if self.duration_s is not None:
            return float(self.duration_s)
        ends = [0.0]
        if self.rf is not None:
            ends.append(self.rf.delay_s + self.rf.duration_s)
        ends += [e.duration_s for e in (self.gx, self.gy, self.gz, self.adc) if e is not None]
        return max(ends)


@dataclasses.dataclass(frozen=True, eq=False)
class StepPattern:
    """The static structure of a `StepSequence` (host-side NumPy, compared by content).

    It tells the event-based Bloch integrator which steps carry RF, where ADC samples and
    spoiling fall, and which steps share the same duration and gradient (``step_id``), without
    reading the (possibly traced) leaves. `lower` attaches it; ``dataclasses.replace`` of the
    leaves keeps it, and `bloch` checks it against the leaves at run time (a mismatch gives NaN).

    Attributes:
        rf_on: ``(steps,)`` bool, the step has a non-zero RF field.
        adc_slot: ``(steps,)`` int, as `StepSequence.adc_slot`.
        spoil: ``(steps,)`` bool, spoiling at the end of the step.
        step_id: ``(steps,)`` int, equal for steps with equal duration and gradient.
    """

    rf_on: np.ndarray
    adc_slot: np.ndarray
    spoil: np.ndarray
    step_id: np.ndarray

    @classmethod
    def from_arrays(cls, dt_s: Any, rf_hz: Any, grad_hz_per_mm: Any, adc_slot: Any, spoil: Any):
        """The pattern of concrete step arrays."""
        dt = np.asarray(dt_s, dtype=np.float64)
        g = np.asarray(grad_hz_per_mm, dtype=np.float64).reshape(len(dt), 3)
        rf = np.asarray(rf_hz, dtype=np.float64).reshape(len(dt), 2)
        key = np.concatenate([np.round(dt, 13)[:, None], g], axis=1)  # 0.1 ps
        _, step_id = np.unique(key, axis=0, return_inverse=True)
        return cls(
            rf_on=np.any(rf != 0.0, axis=1),
            adc_slot=np.asarray(adc_slot, dtype=np.int64).copy(),
            spoil=np.asarray(spoil) != 0,
            step_id=np.asarray(step_id, dtype=np.int64).reshape(-1),
        )

    @functools.cached_property
    def _digest(self) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for a in (self.rf_on, self.adc_slot, self.spoil, self.step_id):
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(b"|")
        return h.digest()

    def __hash__(self) -> int:
        return hash(self._digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StepPattern) and self._digest == other._digest


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StepSequence:
    """A sequence lowered to piecewise-constant time steps (the Bloch simulator's input).

    Every field per step is a leaf, so timing, RF and gradients are differentiable.

    Attributes:
        dt_s: step durations (s), >= 0 (0: no-op padding).
        rf_hz: ``(steps, 2)`` RF field (x, y) in Hz.
        grad_hz_per_mm: ``(steps, 3)`` gradient (x, y, z) in Hz/mm.
        adc_slot: index of the ADC sample taken at the end of the step, ``n_adc`` for none.
        adc_phase_rad: receiver phase of that sample (rad).
        spoil: 1 where transverse magnetisation is destroyed at the end of the step.
        n_adc: number of ADC samples (static).
        pattern: the static `StepPattern` (set by `lower`; ``None``: derived by `bloch` from
            concrete leaves, or time stepping when the leaves are traced).
    """

    dt_s: Float[Array, " steps"]
    rf_hz: Float[Array, "steps 2"]
    grad_hz_per_mm: Float[Array, "steps 3"]
    adc_slot: Int[Array, " steps"]
    adc_phase_rad: Float[Array, " steps"]
    spoil: Float[Array, " steps"]
    n_adc: int = dataclasses.field(metadata={"static": True})
    pattern: StepPattern | None = dataclasses.field(default=None, metadata={"static": True})

    @property
    def n_steps(self) -> int:
        return int(self.dt_s.shape[0])

    @property
    def duration_s(self) -> Any:
        return jnp.sum(self.dt_s)


def _block_steps(block: Block, grad_raster_s: float, adc_start: int):
    length = block.length_s()
    cuts = [np.array([0.0, length])]
    rf = block.rf
    if rf is not None:
        cuts.append(rf.delay_s + rf.raster_s * np.arange(len(rf.signal_hz) + 1))
    grads = (block.gx, block.gy, block.gz)
    for g in grads:
        if g is not None:
            cuts.append(g.edges(grad_raster_s))
    adc_times = block.adc.times() if block.adc is not None else np.zeros(0)
    cuts.append(adc_times)
    edges = np.unique(np.round(np.concatenate(cuts), _TIME_DECIMALS))
    edges = edges[(edges >= 0.0) & (edges <= round(length, _TIME_DECIMALS))]
    t0, t1 = edges[:-1], edges[1:]
    mid = 0.5 * (t0 + t1)
    n = len(mid)
    rf_hz = np.zeros((n, 2))
    if rf is not None:
        i = np.floor((mid - rf.delay_s) / rf.raster_s).astype(int)
        ok = (i >= 0) & (i < len(rf.signal_hz))
        s = np.where(ok, rf.signal_hz[np.clip(i, 0, len(rf.signal_hz) - 1)], 0.0)
        rf_hz = np.stack([s.real, s.imag], axis=-1)
    g = np.stack([np.zeros(n) if gi is None else gi.value(mid) for gi in grads], axis=-1)
    slot = np.full(n, -1, dtype=np.int64)
    phase = np.zeros(n)
    if len(adc_times):
        where = np.searchsorted(t1, np.round(adc_times, _TIME_DECIMALS))
        slot[where] = adc_start + np.arange(len(adc_times))
        phase[where] = block.adc.phase_rad
    spoil = np.zeros(n)
    if block.spoil and n:
        spoil[-1] = 1.0
    dt = t1 - t0
    # merge neighbouring steps whose fields are equal (resampled RF, gradient plateaus)
    same = np.all(rf_hz[1:] == rf_hz[:-1], axis=1) & np.all(g[1:] == g[:-1], axis=1)
    keep = np.concatenate([[True], ~same | (slot[:-1] >= 0)])
    starts = np.nonzero(keep)[0]
    ends = np.append(starts[1:], n) - 1
    dt = np.add.reduceat(dt, starts) if n else dt
    return dt, rf_hz[starts], g[starts], slot[ends], phase[ends], spoil[ends], len(adc_times)


def lower(
    blocks: Sequence[Block], *, grad_raster_s: float = 1e-5, dtype: Any = None
) -> StepSequence:
    """Lower blocks to a `StepSequence` (host-side, NumPy; call once, simulate many times).

    Args:
        blocks: the sequence.
        grad_raster_s: raster on which trapezoid ramps are sampled (s).
        dtype: float dtype of the leaves (default: JAX's default float).

    Raises:
        TypeError: an element is not a `Block`.
        ValueError: an ADC sample time falls outside its block.
    """
    where = f"{chk.PREFIX}lower"
    parts = []
    n_adc = 0
    for i, b in enumerate(blocks):
        if not isinstance(b, Block):
            raise TypeError(f"{where}: `blocks[{i}]` must be a Block (got {type(b).__name__})")
        if b.adc is not None and b.adc.times()[-1] > b.length_s() + 1e-9:
            raise chk.FieldError(
                where,
                "blocks",
                f"`blocks[{i}]`: the last ADC sample is at {b.adc.times()[-1]:g} s, after the "
                f"block's duration {b.length_s():g} s",
            )
        part = _block_steps(b, grad_raster_s, n_adc)
        n_adc += part[-1]
        parts.append(part[:-1])
    dt, rf, g, slot, phase, spoil = (np.concatenate(p) for p in zip(*parts, strict=True))
    slot = np.where(slot < 0, n_adc, slot)
    f = jnp.zeros(()).dtype if dtype is None else dtype
    dt_f = np.asarray(dt, np.dtype(f))  # the pattern of the values as stored
    g_f = np.asarray(g, np.dtype(f))
    return StepSequence(
        dt_s=jnp.asarray(dt, f),
        rf_hz=jnp.asarray(rf, f),
        grad_hz_per_mm=jnp.asarray(g, f),
        adc_slot=jnp.asarray(slot, jnp.int32),
        adc_phase_rad=jnp.asarray(phase, f),
        spoil=jnp.asarray(spoil, f),
        n_adc=n_adc,
        pattern=StepPattern.from_arrays(dt_f, rf, g_f, slot, spoil),
    )
