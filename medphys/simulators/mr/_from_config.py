"""MR protocols from catalog TOML files (``simulators/mr-*.toml``), validated with pydantic.

Layout of a file (times in seconds, lengths in millimetres)::

    modality = "mr"
    description = "..."
    field_t = 1.5            # tesla
    snr = 30.0               # optional; omit for noise-free data
    nex = 1
    snr_reference = "..."    # optional material name

    [sequence]               # type = spin_echo | gradient_echo | inversion_recovery | bssfp
                             #        | fast_spin_echo (esp_s, tr_s, n_echoes, echo, refocus_deg)
    type = "spin_echo"       # Bloch tier: bloch_spin_echo (te_s, tr_s, n_dummy, isochromats,
    te_s = 0.015             #   dwell_s, ideal_spoiling) | bloch_gradient_echo (+ flip_deg,
    tr_s = 0.5               #   rf_spoil_increment_deg) | pulseq (file, isochromats): a .seq
                             #   file, relative to this file's folder

    [coils]                  # optional; type = uniform | loops
    type = "loops"
    n_coils = 4

    [sampling]               # optional; type = full | equispaced | random | variable_density
    type = "full"

    [field_variation]        # optional smooth random B0/B1 per case
    b0_std_hz = 20.0
    b1_std = 0.05

    [cine]                   # optional: a CineProtocol (frames over the cardiac cycle)
    n_phases = 20
    views_per_segment = 10   # optional: ky lines per frame and heartbeat (window = this x TR)
    cardiac_period_s = 1.0   # optional: default the phantom motion model's
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic

from ..._config import Strict, _find_line, validate
from ..._errors import ConfigError
from . import _checks as chk
from ._bloch_tier import AbstractBlochSequence, BlochGradientEcho, BlochSpinEcho, PulseqSequence
from ._cine import CineProtocol
from ._coils import AbstractCoils, LoopCoils, UniformCoils
from ._epg import FastSpinEcho
from ._protocol import MRProtocol
from ._sampling import (
    AbstractSampling,
    EquispacedMask,
    FullSampling,
    RandomMask,
    VariableDensityMask,
)
from ._sequences import BSSFP, AbstractSequence, GradientEcho, InversionRecovery, SpinEcho
from ._tissue import FieldVariation

__all__ = ["protocol_from_config"]


class _SpinEcho(Strict):
    type: Literal["spin_echo"]
    te_s: float
    tr_s: float

    def build(self) -> AbstractSequence:
        return SpinEcho.create(te_s=self.te_s, tr_s=self.tr_s)


class _GradientEcho(Strict):
    type: Literal["gradient_echo"]
    te_s: float
    tr_s: float
    flip_deg: float

    def build(self) -> AbstractSequence:
        return GradientEcho.create(te_s=self.te_s, tr_s=self.tr_s, flip_deg=self.flip_deg)


class _InversionRecovery(Strict):
    type: Literal["inversion_recovery"]
    ti_s: float
    te_s: float
    tr_s: float

    def build(self) -> AbstractSequence:
        return InversionRecovery.create(ti_s=self.ti_s, te_s=self.te_s, tr_s=self.tr_s)


class _BSSFP(Strict):
    type: Literal["bssfp"]
    tr_s: float
    flip_deg: float

    def build(self) -> AbstractSequence:
        return BSSFP.create(tr_s=self.tr_s, flip_deg=self.flip_deg)


class _FastSpinEcho(Strict):
    type: Literal["fast_spin_echo"]
    esp_s: float
    tr_s: float
    n_echoes: int
    echo: int = 1
    refocus_deg: float = 180.0

    def build(self) -> AbstractSequence:
        return FastSpinEcho.create(
            esp_s=self.esp_s,
            tr_s=self.tr_s,
            n_echoes=self.n_echoes,
            echo=self.echo,
            refocus_deg=self.refocus_deg,
        )


class _BlochSpinEcho(Strict):
    type: Literal["bloch_spin_echo"]
    te_s: float
    tr_s: float
    n_dummy: int = 1
    isochromats: int = 1
    dwell_s: float = 1e-5
    ideal_spoiling: bool = True

    def build(self) -> AbstractBlochSequence:
        return BlochSpinEcho.create(
            te_s=self.te_s,
            tr_s=self.tr_s,
            n_dummy=self.n_dummy,
            isochromats=self.isochromats,
            dwell_s=self.dwell_s,
            ideal_spoiling=self.ideal_spoiling,
        )


class _BlochGradientEcho(Strict):
    type: Literal["bloch_gradient_echo"]
    te_s: float
    tr_s: float
    flip_deg: float
    n_dummy: int = 20
    isochromats: int = 1
    dwell_s: float = 1e-5
    rf_spoil_increment_deg: float = 0.0
    ideal_spoiling: bool = True

    def build(self) -> AbstractBlochSequence:
        return BlochGradientEcho.create(
            te_s=self.te_s,
            tr_s=self.tr_s,
            flip_deg=self.flip_deg,
            n_dummy=self.n_dummy,
            isochromats=self.isochromats,
            dwell_s=self.dwell_s,
            rf_spoil_increment_deg=self.rf_spoil_increment_deg,
            ideal_spoiling=self.ideal_spoiling,
        )


class _Pulseq(Strict):
    type: Literal["pulseq"]
    file: str
    isochromats: int = 1


def _pulseq_sequence(cfg: _Pulseq, source: str, text: str | None) -> PulseqSequence:
    """Read the ``.seq`` file named in ``[sequence]``, relative to the TOML file's folder."""
    path = Path(cfg.file)
    if not path.is_absolute():
        path = Path(source).parent / path
    line = _find_line(text, ("sequence", "file")) if text is not None else None
    where = source if line is None else f"{source}:{line}"
    if not path.is_file():
        raise ConfigError(
            f"{where}: sequence.file: no such Pulseq file {str(path)!r} "
            f"(got {cfg.file!r}; relative paths start at the protocol file's folder)"
        )
    try:
        return PulseqSequence.create(path, isochromats=cfg.isochromats)
    except chk.FieldError as exc:
        raise ConfigError(f"{where}: sequence.{exc.field}: {exc.detail}") from None
    except ValueError as exc:  # PulseqError: names the .seq file, line and section
        raise ConfigError(f"{where}: sequence.file: {exc}") from None


class _UniformCoils(Strict):
    type: Literal["uniform"]
    n_coils: int = 1

    def build(self) -> AbstractCoils:
        return UniformCoils.create(self.n_coils)


class _LoopCoils(Strict):
    type: Literal["loops"]
    n_coils: int
    array_radius_mm: float | None = None
    loop_radius_mm: float | None = None

    def build(self) -> AbstractCoils:
        return LoopCoils.create(
            self.n_coils, array_radius_mm=self.array_radius_mm, loop_radius_mm=self.loop_radius_mm
        )


class _Full(Strict):
    type: Literal["full"]

    def build(self) -> AbstractSampling:
        return FullSampling()


class _Equispaced(Strict):
    type: Literal["equispaced"]
    acceleration: int
    acs_lines: int = 0

    def build(self) -> AbstractSampling:
        return EquispacedMask.create(self.acceleration, acs_lines=self.acs_lines)


class _Random(Strict):
    type: Literal["random"]
    acceleration: float
    acs_lines: int = 0

    def build(self) -> AbstractSampling:
        return RandomMask.create(self.acceleration, acs_lines=self.acs_lines)


class _VariableDensity(Strict):
    type: Literal["variable_density"]
    acceleration: float
    acs_lines: int = 0
    power: float = 2.0

    def build(self) -> AbstractSampling:
        return VariableDensityMask.create(
            self.acceleration, acs_lines=self.acs_lines, power=self.power
        )


class _FieldVariation(Strict):
    b0_std_hz: float = 0.0
    b1_std: float = 0.0

    def build(self) -> FieldVariation:
        return FieldVariation.create(b0_std_hz=self.b0_std_hz, b1_std=self.b1_std)


_SequenceConfig = Annotated[
    _SpinEcho
    | _GradientEcho
    | _InversionRecovery
    | _BSSFP
    | _FastSpinEcho
    | _BlochSpinEcho
    | _BlochGradientEcho
    | _Pulseq,
    pydantic.Field(discriminator="type"),
]
_CoilsConfig = Annotated[_UniformCoils | _LoopCoils, pydantic.Field(discriminator="type")]
_SamplingConfig = Annotated[
    _Full | _Equispaced | _Random | _VariableDensity, pydantic.Field(discriminator="type")
]


class _Cine(Strict):
    n_phases: int
    views_per_segment: int | None = None
    cardiac_period_s: float | None = None


class _Protocol(Strict):
    modality: Literal["mr"]
    description: str = ""
    field_t: float
    snr: float | None = None
    nex: int = 1
    snr_reference: str | None = None
    sequence: _SequenceConfig
    coils: _CoilsConfig = _UniformCoils(type="uniform")
    sampling: _SamplingConfig = _Full(type="full")
    field_variation: _FieldVariation | None = None
    cine: _Cine | None = None


def _build(source: str, text: str | None, table: str | None, make: Callable[[], Any]) -> Any:
    """Run a validating constructor; turn its error into a ConfigError naming file, line and key."""
    try:
        return make()
    except chk.FieldError as exc:
        loc = (exc.field,) if table is None else (table, exc.field)
        line = _find_line(text, loc) if text is not None else None
        where = source if line is None else f"{source}:{line}"
        key = exc.field if table is None else f"{table}.{exc.field}"
        raise ConfigError(f"{where}: {key}: {exc.detail}") from None


def protocol_from_config(
    data: Mapping[str, Any], *, source: str, text: str | None = None
) -> MRProtocol | CineProtocol:
    """Build an `MRProtocol` from a parsed catalog file (``medphys.simulators.load`` calls this).

    A file with a ``[cine]`` table gives a `CineProtocol` (run it with `cine`).

    Args:
        data: the file's top-level table (``modality = "mr"``).
        source: the file's path (or another name for messages).
        text: the file's text, to report line numbers.

    Raises:
        ConfigError: unknown or missing keys, wrong types, values out of range (TE >= TR, flip
            outside (0, 180], nex < 1, ...); the message names file, line, key, value and range.
    """
    cfg = validate(_Protocol, data, source=source, text=text)
    if isinstance(cfg.sequence, _Pulseq):
        sequence = _pulseq_sequence(cfg.sequence, source, text)
    else:
        sequence = _build(source, text, "sequence", cfg.sequence.build)
    coils = _build(source, text, "coils", cfg.coils.build)
    sampling = _build(source, text, "sampling", cfg.sampling.build)
    variation = (
        None
        if cfg.field_variation is None
        else _build(source, text, "field_variation", cfg.field_variation.build)
    )
    protocol = _build(
        source,
        text,
        None,
        lambda: MRProtocol.create(
            sequence,
            field_t=cfg.field_t,
            coils=coils,
            sampling=sampling,
            snr=cfg.snr,
            nex=cfg.nex,
            snr_reference=cfg.snr_reference,
            field_variation=variation,
            description=cfg.description,
        ),
    )
    if cfg.cine is None:
        return protocol
    cine = cfg.cine
    return _build(
        source,
        text,
        "cine",
        lambda: CineProtocol.create(
            protocol,
            n_phases=cine.n_phases,
            views_per_segment=cine.views_per_segment,
            cardiac_period_s=cine.cardiac_period_s,
            description=cfg.description,
        ),
    )
