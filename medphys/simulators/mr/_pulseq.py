"""Pulseq 1.4 sequence files: a small reader and writer (no dependency) for the Bloch tier.

`read_pulseq` turns a ``.seq`` file into `Block` values (then `lower` → `bloch`); `write_pulseq`
writes blocks so that a scanner's Pulseq interpreter or other simulators (KomaMRI, MRzero, JEMRIS
via conversion) can run the same sequence. Supported: [VERSION] 1.4.x, [DEFINITIONS] (raster
times), [BLOCKS], [RF] (magnitude and phase shapes on the RF raster, frequency and phase offsets),
[GRADIENTS] (arbitrary shapes on the gradient raster), [TRAP], [ADC] (receiver phase), [SHAPES]
(plain or derivative run-length compressed), [EXTENSIONS]/[SIGNATURE] (ignored). Not supported
(a clear error): explicit time shapes, ADC frequency offsets, other versions.

Units in the file (Pulseq): RF Hz, gradients Hz/m, times in µs (ADC dwell in ns), block durations
in units of ``BlockDurationRaster``. Inside medphys: s, Hz, Hz/mm. An RF sample ``i`` spans
``[i, i+1) · RadiofrequencyRasterTime`` after the pulse's delay; a gradient shape sample spans a
gradient raster interval (its value at the interval's centre, Pulseq's default timing); ADC sample
``i`` is at ``delay + (i + 1/2) dwell``. An RF frequency offset adds the phase ``2π f t`` from the
pulse's start.

References:
    Layton KJ, Kroboth S, Jia F, et al. Pulseq: a rapid and hardware-independent pulse sequence
    prototyping framework. Magn Reson Med 77:1544-1552 (2017).
    Pulseq file format specification, version 1.4 (pulseq.github.io, "specification.pdf").
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _checks as chk
from ._waveforms import ADC, ArbitraryGradient, Block, RFPulse, Trapezoid

__all__ = ["PulseqError", "read_pulseq", "write_pulseq"]

_US = 1e-6
_NS = 1e-9
_DEFAULTS = {
    "AdcRasterTime": 1e-7,
    "BlockDurationRaster": 1e-5,
    "GradientRasterTime": 1e-5,
    "RadiofrequencyRasterTime": 1e-6,
}
_COLUMNS = {  # minimum number of numeric columns per event section (Pulseq 1.4)
    "BLOCKS": 8,
    "RF": 8,
    "GRADIENTS": 5,
    "TRAP": 6,
    "ADC": 6,
}


class PulseqError(ValueError):
    """A ``.seq`` file that does not parse: ``file:line: [SECTION] detail``."""

    def __init__(self, path: str, line: int | None, section: str | None, detail: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        sect = f" [{section}]" if section else ""
        super().__init__(f"{chk.PREFIX}read_pulseq: {where}:{sect} {detail}")
        self.path, self.line, self.section, self.detail = path, line, section, detail


def decompress_shape(values: np.ndarray, num_samples: int) -> np.ndarray:
    """Undo Pulseq's shape compression (run-length code of the first difference).

    A value repeated twice is followed by the number of further repetitions; the result is the
    cumulative sum. A shape stored with exactly ``num_samples`` values is not compressed (1.4).
    """
    data = np.asarray(values, dtype=float)
    if data.size == num_samples:
        return data.copy()
    out = []
    i = 0
    while i < data.size:
        if i + 1 < data.size and data[i] == data[i + 1]:
            if i + 2 >= data.size:
                raise ValueError("a repeated value is not followed by its count")
            count = data[i + 2]
            if count < 0 or count != int(count):
                raise ValueError(f"invalid repeat count {count:g}")
            out.extend([data[i]] * (int(count) + 2))
            i += 3
        else:
            out.append(data[i])
            i += 1
    if len(out) != num_samples:
        raise ValueError(f"decompresses to {len(out)} samples, not num_samples = {num_samples}")
    return np.cumsum(out)


def compress_shape(samples: np.ndarray) -> np.ndarray:
    """Pulseq's compression of a shape (the inverse of `decompress_shape`); returned as is when
    compression does not make it shorter."""
    w = np.asarray(samples, dtype=float)
    d = np.diff(w, prepend=0.0)
    # quantise the derivative so that the cumulative sum reproduces the samples to 1e-12
    d = np.round(d, 12)
    out: list[float] = []
    i = 0
    while i < d.size:
        j = i
        while j + 1 < d.size and d[j + 1] == d[i]:
            j += 1
        run = j - i + 1
        if run >= 2:
            out += [d[i], d[i], float(run - 2)]
        else:
            out.append(d[i])
        i = j + 1
    packed = np.asarray(out)
    return w if packed.size >= w.size else packed


class _Lines:
    """The file's lines grouped by section, with their line numbers."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.sections: dict[str, list[tuple[int, str]]] = {}
        self.header: dict[str, int] = {}
        current = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1].strip().upper()
                if current in self.sections:
                    raise PulseqError(path, number, current, "section appears twice")
                self.sections[current] = []
                self.header[current] = number
                continue
            if current is None:
                raise PulseqError(path, number, None, f"text before the first section: {raw!r}")
            self.sections[current].append((number, line))

    def error(self, line: int | None, section: str | None, detail: str) -> PulseqError:
        return PulseqError(self.path, line, section, detail)

    def numbers(self, section: str) -> dict[int, tuple[int, list[float]]]:
        """Rows of an event table keyed by id: ``{id: (line, values)}``."""
        rows: dict[int, tuple[int, list[float]]] = {}
        need = _COLUMNS[section]
        for number, line in self.sections.get(section, []):
            parts = line.split()
            try:
                values = [float(p) for p in parts]
            except ValueError:
                raise self.error(number, section, f"not a row of numbers: {line!r}") from None
            if len(values) < need:
                raise self.error(
                    number, section, f"expected {need} columns, got {len(values)}: {line!r}"
                )
            ident = values[0]
            if ident != int(ident) or ident < 1:
                raise self.error(number, section, f"invalid id {parts[0]!r}")
            if int(ident) in rows:
                raise self.error(number, section, f"id {int(ident)} defined twice")
            rows[int(ident)] = (number, values)
        return rows


def _version(lines: _Lines) -> None:
    rows = dict(
        (line.split()[0].lower(), (n, line)) for n, line in lines.sections.get("VERSION", [])
    )
    if "major" not in rows or "minor" not in rows:
        raise lines.error(
            lines.header.get("VERSION"), "VERSION", "missing `major` and `minor` version numbers"
        )
    major = rows["major"][1].split()[-1]
    minor = rows["minor"][1].split()[-1]
    if (major, minor) != ("1", "4"):
        raise lines.error(
            rows["major"][0], "VERSION", f"version {major}.{minor} is not supported (only 1.4.x)"
        )


def _definitions(lines: _Lines) -> dict[str, float]:
    out = dict(_DEFAULTS)
    for number, line in lines.sections.get("DEFINITIONS", []):
        parts = line.split()
        if parts[0] in _DEFAULTS:
            try:
                out[parts[0]] = float(parts[1])
            except (IndexError, ValueError):
                raise lines.error(
                    number, "DEFINITIONS", f"`{parts[0]}` needs a number: {line!r}"
                ) from None
            if not out[parts[0]] > 0:
                raise lines.error(number, "DEFINITIONS", f"`{parts[0]}` must be positive")
    return out


def _shapes(lines: _Lines) -> dict[int, np.ndarray]:
    shapes: dict[int, np.ndarray] = {}
    rows = lines.sections.get("SHAPES", [])
    i = 0
    while i < len(rows):
        number, line = rows[i]
        parts = line.split()
        if parts[0] != "shape_id" or len(parts) != 2:
            raise lines.error(number, "SHAPES", f"expected `shape_id N`, got {line!r}")
        try:
            ident = int(parts[1])
            n_line, n_text = rows[i + 1]
            n_parts = n_text.split()
            if n_parts[0] != "num_samples":
                raise lines.error(n_line, "SHAPES", f"expected `num_samples N`, got {n_text!r}")
            n = int(n_parts[1])
        except (ValueError, IndexError):
            raise lines.error(number, "SHAPES", f"malformed shape header near {line!r}") from None
        values = []
        j = i + 2
        while j < len(rows) and not rows[j][1].startswith("shape_id"):
            try:
                values.append(float(rows[j][1]))
            except ValueError:
                raise lines.error(rows[j][0], "SHAPES", f"not a number: {rows[j][1]!r}") from None
            j += 1
        try:
            shapes[ident] = decompress_shape(np.asarray(values), n)
        except ValueError as e:
            raise lines.error(number, "SHAPES", f"shape {ident}: {e}") from None
        i = j
    return shapes


def _shape(lines: _Lines, shapes: dict[int, np.ndarray], ident: float, line: int, section: str):
    if int(ident) not in shapes:
        raise lines.error(line, section, f"refers to shape {int(ident)}, which [SHAPES] lacks")
    return shapes[int(ident)]


def read_pulseq(path: str | os.PathLike[str]) -> list[Block]:
    """Read a Pulseq 1.4 ``.seq`` file into blocks (see the module docstring for what is read).

    Args:
        path: the file.

    Returns:
        The blocks, in order; ``lower(read_pulseq(path))`` is ready for `bloch`.

    Raises:
        PulseqError: (a ``ValueError``) the file does not parse; the message names the file, the
            line and the section.
        FileNotFoundError: no such file.

    Example:
        >>> from importlib.resources import files
        >>> blocks = read_pulseq(files("medphys.simulators.mr") / "examples" / "se_16.seq")
        >>> sum(b.adc is not None for b in blocks)
        16
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = _Lines(path, text)
    for required in ("VERSION", "BLOCKS"):
        if required not in lines.sections:
            raise lines.error(None, required, "section is missing")
    _version(lines)
    defs = _definitions(lines)
    shapes = _shapes(lines)
    rf_raster = defs["RadiofrequencyRasterTime"]
    grad_raster = defs["GradientRasterTime"]

    rfs: dict[int, RFPulse] = {}
    for ident, (line, v) in lines.numbers("RF").items():
        amp, mag_id, phase_id, time_id, delay, freq, phase = v[1:8]
        if time_id != 0:
            raise lines.error(line, "RF", "explicit RF time shapes are not supported")
        mag = _shape(lines, shapes, mag_id, line, "RF")
        ph = _shape(lines, shapes, phase_id, line, "RF")
        if mag.size != ph.size:
            raise lines.error(line, "RF", "magnitude and phase shapes differ in length")
        t = np.arange(mag.size) * rf_raster
        total = 2 * math.pi * ph + phase + 2 * math.pi * freq * t
        signal = amp * mag * np.exp(1j * total)
        peaks = np.nonzero(np.abs(mag) >= np.max(np.abs(mag)) * (1 - 1e-9))[0]
        centre = 0.5 * (peaks[0] + peaks[-1] + 1) * rf_raster  # the peak (middle of a plateau)
        rfs[ident] = RFPulse(signal, rf_raster, delay * _US, centre)

    grads: dict[int, Trapezoid | ArbitraryGradient] = {}
    for ident, (line, v) in lines.numbers("GRADIENTS").items():
        amp, shape_id, time_id, delay = v[1:5]
        if time_id != 0:
            raise lines.error(line, "GRADIENTS", "explicit gradient time shapes are not supported")
        w = _shape(lines, shapes, shape_id, line, "GRADIENTS")
        grads[ident] = ArbitraryGradient(amp * w / 1000.0, grad_raster, delay * _US)
    for ident, (line, v) in lines.numbers("TRAP").items():
        if ident in grads:
            raise lines.error(line, "TRAP", f"gradient id {ident} also defined in [GRADIENTS]")
        amp, rise, flat, fall, delay = v[1:6]
        if min(rise, flat, fall, delay) < 0:
            raise lines.error(line, "TRAP", "negative time")
        grads[ident] = Trapezoid(amp / 1000.0, flat * _US, rise * _US, fall * _US, delay * _US)

    adcs: dict[int, ADC] = {}
    for ident, (line, v) in lines.numbers("ADC").items():
        num, dwell, delay, freq, phase = v[1:6]
        if num < 1 or num != int(num) or dwell <= 0:
            raise lines.error(line, "ADC", "needs num >= 1 samples and a positive dwell")
        if freq != 0:
            raise lines.error(line, "ADC", "ADC frequency offsets are not supported")
        adcs[ident] = ADC(int(num), dwell * _NS, delay * _US, phase)

    blocks = []
    block_raster = defs["BlockDurationRaster"]
    for ident, (line, v) in sorted(lines.numbers("BLOCKS").items()):
        dur, rf_id, gx_id, gy_id, gz_id, adc_id = v[1:7]

        def get(table: dict, key: float, what: str, line: int = line, ident: int = ident) -> Any:
            if key == 0:
                return None
            if int(key) not in table:
                raise lines.error(
                    line,
                    "BLOCKS",
                    f"block {ident} refers to {what} {int(key)}, which is not defined",
                )
            return table[int(key)]

        block = Block(
            duration_s=dur * block_raster,
            rf=get(rfs, rf_id, "RF event"),
            gx=get(grads, gx_id, "gradient"),
            gy=get(grads, gy_id, "gradient"),
            gz=get(grads, gz_id, "gradient"),
            adc=get(adcs, adc_id, "ADC event"),
        )
        longest = Block(rf=block.rf, gx=block.gx, gy=block.gy, gz=block.gz, adc=block.adc)
        if longest.length_s() > block.length_s() * (1 + 1e-9) + 1e-12:
            raise lines.error(
                line,
                "BLOCKS",
                f"block {ident} lasts {block.length_s():g} s but its events need "
                f"{longest.length_s():g} s",
            )
        blocks.append(block)
    return blocks


def _units(where: str, value: float, unit: float, what: str) -> int:
    n = round(value / unit)
    if abs(n * unit - value) > 1e-6 * unit + 1e-15:
        raise chk.FieldError(
            where, "blocks", f"{what} = {value:g} s is not a multiple of {unit:g} s"
        )
    return int(n)


def write_pulseq(
    blocks: Sequence[Block],
    path: str | os.PathLike[str],
    *,
    name: str = "medphys",
    rf_raster_s: float = 1e-6,
    grad_raster_s: float = 1e-5,
    block_raster_s: float = 1e-5,
) -> None:
    """Write blocks as a Pulseq 1.4 ``.seq`` file (shapes compressed).

    RF pulses are resampled onto ``rf_raster_s`` (their raster must be a multiple of it);
    arbitrary gradients must be on ``grad_raster_s``. Ideal spoiling (``Block.spoil``) has no
    Pulseq equivalent and is dropped.

    Raises:
        ValueError: a time that is not representable on the rasters (µs for delays and ramps,
            ns for ADC dwell, ``block_raster_s`` for block durations).
    """
    where = f"{chk.PREFIX}write_pulseq"
    shapes: list[np.ndarray] = []
    shape_ids: dict[bytes, int] = {}

    def shape_id(w: np.ndarray) -> int:
        key = np.round(np.asarray(w, float), 12).tobytes()
        if key not in shape_ids:
            shapes.append(np.asarray(w, float))
            shape_ids[key] = len(shapes)
        return shape_ids[key]

    rf_rows, grad_rows, trap_rows, adc_rows, block_rows = [], [], [], [], []
    events: dict[tuple, int] = {}

    counters = {id(rf_rows): 0, id(grad_rows): 0, id(trap_rows): 0, id(adc_rows): 0}
    counters[id(trap_rows)] = counters[id(grad_rows)]

    def event(table: list, key: tuple, row: str) -> int:
        full = (id(table), *key)
        if full not in events:
            # gradients and trapezoids share one id space
            shared = (id(grad_rows), id(trap_rows))
            counter = shared if id(table) in shared else (id(table),)
            ident = max(counters[c] for c in counter) + 1
            for c in counter:
                counters[c] = ident
            table.append(row.format(id=ident))
            events[full] = ident
        return events[full]

    for i, b in enumerate(blocks):
        if not isinstance(b, Block):
            raise TypeError(f"{where}: `blocks[{i}]` must be a Block (got {type(b).__name__})")
        rf_id = 0
        if b.rf is not None:
            rep = _units(where, b.rf.raster_s, rf_raster_s, f"blocks[{i}].rf.raster_s")
            s = np.repeat(np.asarray(b.rf.signal_hz, complex), rep)
            amp = float(np.max(np.abs(s)))
            mag = np.abs(s) / amp
            ph = np.mod(np.angle(s) / (2 * math.pi), 1.0)
            ph = np.where(mag > 0, ph, 0.0)
            m_id, p_id = shape_id(mag), shape_id(ph)
            delay = _units(where, b.rf.delay_s, _US, f"blocks[{i}].rf.delay_s")
            rf_id = event(
                rf_rows, (amp, m_id, p_id, delay), f"{{id}} {amp:.12g} {m_id} {p_id} 0 {delay} 0 0"
            )
        g_ids = []
        for axis, g in zip("xyz", (b.gx, b.gy, b.gz), strict=True):
            if g is None:
                g_ids.append(0)
            elif isinstance(g, Trapezoid):
                t = [
                    _units(where, v, _US, f"blocks[{i}].g{axis}.{n}")
                    for n, v in (
                        ("rise_s", g.rise_s),
                        ("flat_s", g.flat_s),
                        ("fall_s", g.fall_s),
                        ("delay_s", g.delay_s),
                    )
                ]
                a = g.amplitude_hz_per_mm * 1000.0
                g_ids.append(
                    event(trap_rows, (a, *t), f"{{id}} {a:.12g} {t[0]} {t[1]} {t[2]} {t[3]}")
                )
            else:
                _units(where, g.raster_s, grad_raster_s, f"blocks[{i}].g{axis}.raster_s")
                w = np.asarray(g.waveform_hz_per_mm, float) * 1000.0
                amp = float(np.max(np.abs(w))) or 1.0
                s_id = shape_id(w / amp)
                delay = _units(where, g.delay_s, _US, f"blocks[{i}].g{axis}.delay_s")
                g_ids.append(
                    event(grad_rows, (amp, s_id, delay), f"{{id}} {amp:.12g} {s_id} 0 {delay}")
                )
        adc_id = 0
        if b.adc is not None:
            dwell = _units(where, b.adc.dwell_s, _NS, f"blocks[{i}].adc.dwell_s")
            delay = _units(where, b.adc.delay_s, _US, f"blocks[{i}].adc.delay_s")
            key = (b.adc.num_samples, dwell, delay, b.adc.phase_rad)
            adc_id = event(
                adc_rows,
                key,
                f"{{id}} {b.adc.num_samples} {dwell} {delay} 0 {b.adc.phase_rad:.12g}",
            )
        dur = _units(where, b.length_s(), block_raster_s, f"blocks[{i}] duration")
        block_rows.append(f"{i + 1} {dur} {rf_id} {g_ids[0]} {g_ids[1]} {g_ids[2]} {adc_id} 0")

    out = [
        "# Pulseq sequence file",
        f"# written by medphys ({name})",
        "",
        "[VERSION]",
        "major 1",
        "minor 4",
        "revision 1",
        "",
        "[DEFINITIONS]",
        f"AdcRasterTime {_DEFAULTS['AdcRasterTime']:g}",
        f"BlockDurationRaster {block_raster_s:g}",
        f"GradientRasterTime {grad_raster_s:g}",
        f"Name {name}",
        f"RadiofrequencyRasterTime {rf_raster_s:g}",
        "",
        "# NUM DUR RF GX GY GZ ADC EXT",
        "[BLOCKS]",
        *block_rows,
        "",
    ]
    for title, header, rows in (
        (
            "RF",
            "# id amplitude(Hz) mag_id phase_id time_shape_id delay(us) freq(Hz) phase(rad)",
            rf_rows,
        ),
        ("GRADIENTS", "# id amplitude(Hz/m) amp_shape_id time_shape_id delay(us)", grad_rows),
        ("TRAP", "# id amplitude(Hz/m) rise(us) flat(us) fall(us) delay(us)", trap_rows),
        ("ADC", "# id num dwell(ns) delay(us) freq(Hz) phase(rad)", adc_rows),
    ):
        if rows:
            out += [header, f"[{title}]", *rows, ""]
    if shapes:
        out.append("[SHAPES]")
        for k, w in enumerate(shapes, start=1):
            packed = compress_shape(w)
            out += ["", f"shape_id {k}", f"num_samples {w.size}"]
            out += [repr(float(v)) for v in packed]
        out.append("")
    with open(os.fspath(path), "w", encoding="utf-8") as f:
        f.write("\n".join(out))
