"""CT protocols: geometry + spectrum + detector + dose + reconstruction settings, and their TOML form.

A protocol file in the ``simulators/`` catalog (``modality = "ct"``) has the sections
``[geometry]`` (``kind = "parallel"`` or ``"fan"``), ``[spectrum]``, ``[dose]``, ``[detector]`` and
``[reconstruction]``; `protocol_from_config` validates it with pydantic and builds a `CTProtocol`.
When ``n_u`` is not given, the detector is sized to cover the reconstruction field of view
``fov_mm`` (a circle of that diameter about the rotation axis).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import jax
import numpy as np
import pydantic
from jaxtyping import Array, Float

from ..._checks import number as _number
from ..._config import Strict, validate
from ..._errors import ConfigError
from ..geometry import FanBeam, ParallelBeam
from ._spectrum import KVP_RANGE, Spectrum

__all__ = ["CTProtocol", "EnergyIntegratingDetector", "protocol_from_config"]

_FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EnergyIntegratingDetector:
    """An ideal energy-integrating detector (every photon absorbed, signal ∝ its energy).

    The signal is reported in *photon equivalents*: deposited energy divided by the mean energy of
    the unattenuated spectrum, so a monoenergetic beam reads in photons.

    Attributes:
        electronic_noise: standard deviation of the additive Gaussian readout noise, in photon
            equivalents per reading.
    """

    electronic_noise: Float[Array, ""]

    @classmethod
    def create(cls, *, electronic_noise: float = 0.0) -> EnergyIntegratingDetector:
        """Validated constructor.

        Raises:
            ValueError: negative or non-finite ``electronic_noise``.
        """
        where = "medphys.simulators.xray.EnergyIntegratingDetector.create"
        v = _number(where, "electronic_noise", electronic_noise)
        if v < 0:
            raise ValueError(
                f"{where}: `electronic_noise` must be ≥ 0 photon equivalents (got {electronic_noise!r})"
            )
        return cls(electronic_noise=np.asarray(v, np.float64))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CTProtocol:
    """Everything a CT acquisition and its reconstruction need.

    Attributes:
        geometry: `ParallelBeam` or `FanBeam` (``n_rows=None``: one row per slice of the phantom).
            The detector pixel pitch (``du_mm``, ``dv_mm``) lives in the geometry.
        spectrum: the tube `Spectrum`.
        detector: the `EnergyIntegratingDetector`.
        mas_per_view: tube current–time product per view (mAs).
        filter: FBP filter name (static).
        water_diameter_mm: diameter of the water cylinder that defines 0 HU (static).
        name, description: from the catalog file (static).
    """

    geometry: ParallelBeam | FanBeam
    spectrum: Spectrum
    detector: EnergyIntegratingDetector
    mas_per_view: Float[Array, ""]
    filter: str = dataclasses.field(default="hann", metadata={"static": True})
    water_diameter_mm: float = dataclasses.field(default=200.0, metadata={"static": True})
    name: str = dataclasses.field(default="", metadata={"static": True})
    description: str = dataclasses.field(default="", metadata={"static": True})

    @classmethod
    def create(
        cls,
        *,
        geometry: ParallelBeam | FanBeam,
        spectrum: Spectrum,
        mas_per_view: float | None = None,
        mas: float | None = None,
        detector: EnergyIntegratingDetector | None = None,
        filter: str = "hann",
        water_diameter_mm: float = 200.0,
        name: str = "",
        description: str = "",
    ) -> CTProtocol:
        """Validated constructor.

        Args:
            geometry: the scan geometry.
            spectrum: the tube spectrum.
            mas_per_view: mAs per view; or give ``mas``, the total over all views (per rotation).
            detector: default: no electronic noise.
            filter: ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"`` or ``"hann"``.
            water_diameter_mm: reference water cylinder for the HU calibration (mm).

        Raises:
            ValueError, TypeError: wrong types, non-positive mAs, unknown filter.
        """
        where = "medphys.simulators.xray.CTProtocol.create"
        if not isinstance(geometry, (ParallelBeam, FanBeam)):
            raise TypeError(
                f"{where}: `geometry` must be a ParallelBeam or FanBeam (got {type(geometry).__name__})"
            )
        if not isinstance(spectrum, Spectrum):
            raise TypeError(
                f"{where}: `spectrum` must be a Spectrum (got {type(spectrum).__name__})"
            )
        if (mas_per_view is None) == (mas is None):
            raise ValueError(
                f"{where}: give exactly one of `mas_per_view` and `mas` (per rotation)"
            )
        if mas is not None:
            total = _number(where, "mas", mas)
            if total <= 0:
                raise ValueError(f"{where}: `mas` must be > 0 (got {mas!r})")
            per_view = total / geometry.n_views
        else:
            per_view = _number(where, "mas_per_view", mas_per_view)
            if per_view <= 0:
                raise ValueError(f"{where}: `mas_per_view` must be > 0 (got {mas_per_view!r})")
        if filter not in _FILTERS:
            raise ValueError(
                f"{where}: `filter` must be one of {', '.join(map(repr, _FILTERS))} (got {filter!r})"
            )
        diameter = _number(where, "water_diameter_mm", water_diameter_mm)
        if diameter <= 0:
            raise ValueError(
                f"{where}: `water_diameter_mm` must be > 0 (got {water_diameter_mm!r})"
            )
        detector = EnergyIntegratingDetector.create() if detector is None else detector
        return cls(
            geometry=geometry,
            spectrum=spectrum,
            detector=detector,
            mas_per_view=np.asarray(per_view, np.float64),
            filter=filter,
            water_diameter_mm=diameter,
            name=name,
            description=description,
        )

    @property
    def mas(self) -> float:
        """Total mAs over all views."""
        return float(self.mas_per_view) * self.geometry.n_views

    def with_mas(self, mas: float) -> CTProtocol:
        """The same protocol at another total mAs (per rotation)."""
        if not (math.isfinite(float(mas)) and float(mas) > 0):
            raise ValueError(
                f"medphys.simulators.xray.CTProtocol.with_mas: `mas` must be > 0 (got {mas!r})"
            )
        return dataclasses.replace(
            self, mas_per_view=np.asarray(float(mas) / self.geometry.n_views)
        )


# ----------------------------------------------------------------------------------------------
# TOML form

Positive = Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)]


class _GeometryBase(Strict):
    n_views: Annotated[int, pydantic.Field(ge=1)]
    start_deg: float = 0.0
    du_mm: Positive
    n_u: Annotated[int, pydantic.Field(ge=1)] | None = None
    fov_mm: Positive = 500.0
    u_offset_mm: float = 0.0
    n_rows: Annotated[int, pydantic.Field(ge=1)] | None = None
    dv_mm: Positive | None = None
    z_mm: float = 0.0


class _ParallelConfig(_GeometryBase):
    kind: Literal["parallel"]
    arc_deg: Annotated[float, pydantic.Field(gt=0, le=360)] = 180.0
    sdd_mm: Positive = 1000.0


class _FanConfig(_GeometryBase):
    kind: Literal["fan"]
    arc_deg: Annotated[float, pydantic.Field(gt=0, le=360)] = 360.0
    sod_mm: Positive
    sdd_mm: Positive

    @pydantic.field_validator("sod_mm")
    @classmethod
    def _source_outside_fov(cls, sod: float, info: pydantic.ValidationInfo) -> float:
        fov = info.data.get("fov_mm")
        if fov is not None and fov / 2 >= sod:
            raise ValueError(f"must exceed half the field of view (fov_mm = {fov:g})")
        return sod

    @pydantic.field_validator("sdd_mm")
    @classmethod
    def _detector_beyond_isocentre(cls, sdd: float, info: pydantic.ValidationInfo) -> float:
        sod = info.data.get("sod_mm")
        if sod is not None and sdd <= sod:
            raise ValueError(f"must exceed sod_mm (= {sod:g})")
        return sdd


class _Filter(Strict):
    material: str
    mm: Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]


class _SpectrumConfig(Strict):
    kvp: Annotated[float, pydantic.Field(ge=KVP_RANGE[0], le=KVP_RANGE[1])]
    anode_angle_deg: Annotated[float, pydantic.Field(gt=0, le=45)] = 12.0
    filtration: tuple[_Filter, ...] = (_Filter(material="Al", mm=2.5),)
    bin_kev: Annotated[float, pydantic.Field(ge=0.5, le=20)] = 2.0


class _DoseConfig(Strict):
    mas: Positive | None = None
    mas_per_view: Positive | None = None

    @pydantic.model_validator(mode="after")
    def _one(self) -> _DoseConfig:
        if (self.mas is None) == (self.mas_per_view is None):
            raise ValueError("give exactly one of `mas` (per rotation) and `mas_per_view`")
        return self


class _DetectorConfig(Strict):
    electronic_noise: Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)] = 0.0


class _ReconConfig(Strict):
    filter: Literal["ram-lak", "shepp-logan", "cosine", "hann"] = "hann"
    water_diameter_mm: Positive = 200.0


class _CTConfig(Strict):
    modality: Literal["ct"]
    description: str
    geometry: Annotated[_ParallelConfig | _FanConfig, pydantic.Field(discriminator="kind")]
    spectrum: _SpectrumConfig
    dose: _DoseConfig
    detector: _DetectorConfig = _DetectorConfig()
    reconstruction: _ReconConfig = _ReconConfig()


def detector_pixels_for_fov(geometry: _ParallelConfig | _FanConfig) -> int:
    """Detector pixels needed to cover a field of view of diameter ``fov_mm`` about the axis."""
    radius = geometry.fov_mm / 2
    if isinstance(geometry, _FanConfig):
        half = geometry.sdd_mm * radius / math.sqrt(geometry.sod_mm**2 - radius**2)
    else:
        half = radius
    half += abs(geometry.u_offset_mm)
    return max(1, math.ceil(2 * half / geometry.du_mm))


def _geometry(g: _ParallelConfig | _FanConfig) -> ParallelBeam | FanBeam:
    common = dict(
        n_u=g.n_u if g.n_u is not None else detector_pixels_for_fov(g),
        du_mm=g.du_mm,
        n_views=g.n_views,
        start_rad=math.radians(g.start_deg),
        arc_rad=math.radians(g.arc_deg),
        u_offset_mm=g.u_offset_mm,
        n_rows=g.n_rows,
        dv_mm=g.dv_mm,
        z_mm=g.z_mm,
    )
    if isinstance(g, _FanConfig):
        return FanBeam.create(sod_mm=g.sod_mm, sdd_mm=g.sdd_mm, **common)
    return ParallelBeam.create(sdd_mm=g.sdd_mm, **common)


def protocol_from_config(
    data: dict[str, Any], *, source: str, text: str | None = None
) -> CTProtocol:
    """Build a `CTProtocol` from a parsed protocol file (``modality = "ct"``).

    Args:
        data: the TOML content.
        source: the file's path (for messages).
        text: the file's text (for line numbers in messages).

    Raises:
        ConfigError: invalid content; the message names the file, line, key path, value and what
            is allowed.
    """
    if data.get("modality") == "radiograph":
        raise ConfigError(
            f"{source}: modality: 'radiograph' protocols are not supported yet (use 'ct')"
        )
    cfg = validate(_CTConfig, data, source=source, text=text)
    try:
        geometry = _geometry(cfg.geometry)
        s = cfg.spectrum
        spectrum = Spectrum.create(
            kvp=s.kvp,
            anode_angle_deg=s.anode_angle_deg,
            filtration=tuple((f.material, f.mm) for f in s.filtration),
            bin_kev=s.bin_kev,
        )
        return CTProtocol.create(
            geometry=geometry,
            spectrum=spectrum,
            mas=cfg.dose.mas,
            mas_per_view=cfg.dose.mas_per_view,
            detector=EnergyIntegratingDetector.create(
                electronic_noise=cfg.detector.electronic_noise
            ),
            filter=cfg.reconstruction.filter,
            water_diameter_mm=cfg.reconstruction.water_diameter_mm,
            name=Path(source).stem,
            description=cfg.description,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
