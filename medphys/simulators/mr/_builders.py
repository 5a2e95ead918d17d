"""Sequence builders for the Bloch tier: spin echo, turbo spin echo, spoiled gradient echo.

Each builder returns a list of `Block` values (inspect, edit, or write them with `write_pulseq`);
`lower` turns them into the `StepSequence` that `bloch` simulates. Pulses are timed by their
centres: the echo time is measured from the centre of the excitation to the k-space centre.

Spoiling: ``ideal_spoiling=True`` (the default) destroys the transverse magnetisation at the end of
every repetition, which is the assumption of the tier-1 equations; set it to ``False`` and use
crusher/spoiler gradient areas over spins spread in space to model real gradient spoiling
(stimulated echoes then reach later readouts, as on a scanner).

Cartesian encoding (`Cartesian2D`): one ky line per repetition, ``kx`` along world x read out
with a constant gradient; sample ``j`` of line ``i`` has ``k = ((j - nx//2)/FOVx, (i - ny//2)/FOVy)``
(cycles/mm), the layout of `fft2c`: the signal of the whole grid is ``Σ m(r) exp(-i 2π k·r)``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import _checks as chk
from ._waveforms import ADC, Block, RFPulse, Trapezoid, hard_pulse

__all__ = ["Cartesian2D", "gradient_echo", "selective", "spin_echo", "turbo_spin_echo"]

_PULSE_S = 1e-4  # default hard-pulse duration


@dataclasses.dataclass(frozen=True)
class Cartesian2D:
    """2-D Cartesian encoding: matrix ``(nx, ny)``, field of view (mm), readout dwell (s)."""

    matrix: tuple[int, int]
    fov_mm: tuple[float, float]
    dwell_s: float = 1e-5

    @classmethod
    def create(
        cls, matrix: tuple[int, int], fov_mm: tuple[float, float], *, dwell_s: float = 1e-5
    ) -> Cartesian2D:
        """Validated constructor.

        Raises:
            ValueError: matrix entries < 1, non-positive field of view or dwell.
        """
        where = f"{chk.PREFIX}Cartesian2D.create"
        nx, ny = (chk.integer(where, "matrix", int(v), minimum=1) for v in matrix)
        fx, fy = (chk.positive(where, "fov_mm", v, " (mm)") for v in fov_mm)
        return cls((nx, ny), (fx, fy), chk.positive(where, "dwell_s", dwell_s, " (seconds)"))

    def readout_lead_s(self) -> float:
        """Time from the readout's start to the k-space centre sample (s)."""
        return (self.matrix[0] // 2 + 0.5) * self.dwell_s

    def line(self, i: int, *, flip_sign: bool = False) -> tuple[Block, float, float]:
        """Readout block of line ``i`` and the prephaser areas (x, y) that must precede it."""
        nx, ny = self.matrix
        dkx, dky = 1.0 / self.fov_mm[0], 1.0 / self.fov_mm[1]
        gx = dkx / self.dwell_s
        ro = Block(
            gx=Trapezoid(gx, nx * self.dwell_s),
            adc=ADC(nx, self.dwell_s),
            duration_s=nx * self.dwell_s,
        )
        ax = -(nx // 2 + 0.5) * dkx
        ay = (i - ny // 2) * dky
        return ro, ax, ay


def _box(area: float, duration_s: float) -> Trapezoid | None:
    return None if area == 0.0 else Trapezoid(area / duration_s, duration_s)


def _delay(where: str, name: str, value: float) -> float:
    if value <= 0.0:
        raise chk.FieldError(
            where,
            name,
            f"the timing leaves no room for `{name}` (a negative delay of {value:g} s): "
            "lengthen it or shorten the pulses/readout",
        )
    return value


def _echo_blocks(
    where: str,
    *,
    gap_s: float,
    encoding: Cartesian2D | None,
    line: int,
    crusher: float,
    prephase_sign: float,
    acquire: bool,
) -> list[Block]:
    """The delay ending at the echo (with crusher/prephasers) and the readout."""
    if encoding is None:
        gap = _delay(where, "te_s", gap_s)
        adc = ADC(1, 1e-7, gap - 0.5e-7) if acquire else None
        return [Block(duration_s=gap, gz=_box(crusher, gap), adc=adc)]
    ro, ax, ay = encoding.line(line)
    gap = _delay(where, "te_s", gap_s - encoding.readout_lead_s())
    pre = Block(
        duration_s=gap,
        gx=_box(prephase_sign * ax, gap),
        gy=_box(prephase_sign * ay, gap),
        gz=_box(crusher, gap),
    )
    return [pre, ro if acquire else dataclasses.replace(ro, adc=None)]


def _reps(encoding: Cartesian2D | None, n_reps: int, n_dummy: int) -> list[tuple[int, bool]]:
    lines = range(encoding.matrix[1]) if encoding is not None else range(n_reps)
    return [(0, False)] * n_dummy + [(i, True) for i in lines]


def _used(blocks: list[Block]) -> float:
    return sum(b.length_s() for b in blocks)


def spin_echo(
    *,
    te_s: float,
    tr_s: float,
    n_reps: int = 1,
    n_dummy: int = 0,
    encoding: Cartesian2D | None = None,
    excitation: RFPulse | None = None,
    refocusing: RFPulse | None = None,
    crusher_cycles_per_mm: float = 0.0,
    ideal_spoiling: bool = True,
    slice_thickness_mm: float | None = None,
) -> list[Block]:
    """90°x - 180°y spin echo, repeated every ``tr_s``.

    Args:
        te_s, tr_s: echo and repetition time (s), ``te_s < tr_s``.
        n_reps: repetitions with one ADC sample at the echo (without ``encoding``).
        n_dummy: repetitions without ADC first (to reach the steady state).
        encoding: Cartesian encoding (one ky line per repetition; ``n_reps`` is then ignored).
        excitation, refocusing: pulses (default hard 90° about x and 180° about y, 0.1 ms).
        crusher_cycles_per_mm: z-gradient area (cycles/mm) on each side of the refocusing pulse.
        ideal_spoiling: destroy transverse magnetisation at the end of each repetition.
        slice_thickness_mm: excite a slice through z = 0 with `selective` (the excitation must
            then be a `sinc_pulse` or `gaussian_pulse`); ``None``: non-selective.

    Raises:
        ValueError: ``te_s >= tr_s``, non-positive times, or timing that does not fit.
    """
    where = f"{chk.PREFIX}spin_echo"
    te, tr = chk.echo_times(where, te_s, tr_s)
    n_reps = chk.integer(where, "n_reps", n_reps, minimum=1)
    n_dummy = chk.integer(where, "n_dummy", n_dummy, minimum=0)
    exc = excitation or hard_pulse(90.0, _PULSE_S)
    ref = refocusing or hard_pulse(180.0, _PULSE_S, phase_deg=90.0)
    if slice_thickness_mm is None:
        excite = [Block(rf=exc)]
    else:
        excite = selective(exc, slice_thickness_mm)
    tail = _used(excite) - exc.delay_s - exc.center_s  # excitation centre to the end of `excite`
    blocks: list[Block] = []
    for line, acquire in _reps(encoding, n_reps, n_dummy):
        rep = list(excite)
        gap1 = _delay(where, "te_s", 0.5 * te - tail - ref.center_s)
        rep.append(Block(duration_s=gap1, gz=_box(crusher_cycles_per_mm, gap1)))
        rep.append(Block(rf=ref))
        rep += _echo_blocks(
            where,
            gap_s=0.5 * te - (ref.duration_s - ref.center_s),
            encoding=encoding,
            line=line,
            crusher=crusher_cycles_per_mm,
            prephase_sign=1.0,
            acquire=acquire,
        )
        rest = _delay(where, "tr_s", tr - _used(rep))
        rep.append(Block(duration_s=rest, spoil=ideal_spoiling))
        blocks += rep
    return blocks


def turbo_spin_echo(
    *,
    esp_s: float,
    n_echoes: int,
    tr_s: float,
    refocus_deg: float = 180.0,
    n_reps: int = 1,
    crusher_cycles_per_mm: float = 0.0,
    pulse_s: float = 1e-5,
    ideal_spoiling: bool = True,
) -> list[Block]:
    """CPMG echo train: 90°x, then ``n_echoes`` refocusing pulses about y, one ADC sample per echo.

    Crushers of ``crusher_cycles_per_mm`` on z bracket every refocusing pulse (the dephasing unit of
    the EPG model, `FastSpinEcho`).

    Raises:
        ValueError: non-positive times, ``n_echoes < 1``, a train longer than ``tr_s``, refocusing
            flip outside (0, 180].
    """
    where = f"{chk.PREFIX}turbo_spin_echo"
    esp = chk.positive(where, "esp_s", esp_s, " (seconds)")
    tr = chk.positive(where, "tr_s", tr_s, " (seconds)")
    n = chk.integer(where, "n_echoes", n_echoes, minimum=1)
    flip = chk.flip(where, "refocus_deg", refocus_deg)
    if not n * esp < tr:
        raise chk.FieldError(
            where, "tr_s", f"`tr_s` must exceed n_echoes * esp_s = {n * esp:g} s (got {tr:g} s)"
        )
    exc = hard_pulse(90.0, pulse_s)
    ref = hard_pulse(flip, pulse_s, phase_deg=90.0)
    half = 0.5 * esp
    blocks: list[Block] = []
    for _ in range(chk.integer(where, "n_reps", n_reps, minimum=1)):
        rep = [Block(rf=exc)]
        lead = exc.duration_s - exc.center_s
        for _ in range(n):
            gap = _delay(where, "esp_s", half - lead - ref.center_s)
            rep.append(Block(duration_s=gap, gz=_box(crusher_cycles_per_mm, gap)))
            rep.append(Block(rf=ref))
            gap = _delay(where, "esp_s", half - (ref.duration_s - ref.center_s))
            adc = ADC(1, 1e-7, gap - 0.5e-7)
            rep.append(Block(duration_s=gap, gz=_box(crusher_cycles_per_mm, gap), adc=adc))
            lead = 0.0
        rep.append(Block(duration_s=_delay(where, "tr_s", tr - _used(rep)), spoil=ideal_spoiling))
        blocks += rep
    return blocks


def gradient_echo(
    *,
    te_s: float,
    tr_s: float,
    flip_deg: float,
    n_reps: int = 1,
    n_dummy: int = 0,
    encoding: Cartesian2D | None = None,
    excitation: RFPulse | None = None,
    rf_spoil_increment_deg: float = 0.0,
    ideal_spoiling: bool = True,
) -> list[Block]:
    """Spoiled gradient echo (FLASH): excitation about x, echo at ``te_s``, repeated every ``tr_s``.

    ``rf_spoil_increment_deg`` (e.g. 117) adds quadratic RF phase cycling; the receiver follows
    the RF phase.

    Raises:
        ValueError: ``te_s >= tr_s``, non-positive times, flip outside (0, 180].
    """
    where = f"{chk.PREFIX}gradient_echo"
    te, tr = chk.echo_times(where, te_s, tr_s)
    flip = chk.flip(where, "flip_deg", flip_deg)
    inc = chk.number(where, "rf_spoil_increment_deg", rf_spoil_increment_deg)
    base = excitation or hard_pulse(flip, _PULSE_S)
    blocks: list[Block] = []
    for r, (line, acquire) in enumerate(
        _reps(
            encoding,
            chk.integer(where, "n_reps", n_reps, minimum=1),
            chk.integer(where, "n_dummy", n_dummy, minimum=0),
        )
    ):
        phase = math.radians(0.5 * inc * r * (r + 1))
        exc = dataclasses.replace(base, signal_hz=base.signal_hz * np.exp(1j * phase))
        rep = [Block(rf=exc)]
        echo = _echo_blocks(
            where,
            gap_s=te - (exc.duration_s - exc.center_s),
            encoding=encoding,
            line=line,
            crusher=0.0,
            prephase_sign=1.0,
            acquire=acquire,
        )
        echo = [
            dataclasses.replace(b, adc=dataclasses.replace(b.adc, phase_rad=phase))
            if b.adc is not None
            else b
            for b in echo
        ]
        rep += echo
        rep.append(Block(duration_s=_delay(where, "tr_s", tr - _used(rep)), spoil=ideal_spoiling))
        blocks += rep
    return blocks


def selective(pulse: RFPulse, thickness_mm: float, *, rewinder_s: float = 1e-3) -> list[Block]:
    """Slice-selective excitation along z: the pulse under a constant z gradient, then a rewinder.

    The gradient is ``pulse.bandwidth_hz / thickness_mm`` (Hz/mm); the rewinder has the area
    from the pulse's centre to its end, negated, so the slice is in phase after it.

    Raises:
        ValueError: a pulse without a bandwidth (use `sinc_pulse` or `gaussian_pulse`), or a
            non-positive thickness.
    """
    where = f"{chk.PREFIX}selective"
    thick = chk.positive(where, "thickness_mm", thickness_mm, " (mm)")
    if pulse.bandwidth_hz is None:
        raise chk.FieldError(
            where, "pulse", "`pulse` has no bandwidth: use sinc_pulse or gaussian_pulse"
        )
    g = pulse.bandwidth_hz / thick
    rew = chk.positive(where, "rewinder_s", rewinder_s, " (seconds)")
    tail = pulse.duration_s - pulse.center_s
    return [
        Block(rf=pulse, gz=Trapezoid(g, pulse.duration_s, delay_s=pulse.delay_s)),
        Block(duration_s=rew, gz=Trapezoid(-g * tail / rew, rew)),
    ]
