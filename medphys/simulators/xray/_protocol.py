"""X-ray protocols (CT and radiography): geometry + spectrum + detector + dose + reconstruction settings, and their TOML form.

A protocol file in the ``simulators/`` catalog (``modality = "ct"`` or ``"radiograph"``) has the
sections ``[geometry]`` (``kind = "parallel"``, ``"fan"``, ``"cone"``, ``"tomosynthesis"`` or
``"mammography"``: DM with one view, DBT with a sweep, see `mammography_geometry`),
``[spectrum]`` (``anode = "W"``, the default, ``"Mo"`` or ``"Rh"``), ``[dose]``, ``[detector]``
(``kind = "energy-integrating"``, the default, optionally with a ``converter`` layer and its
``converter_um``, or ``"photon-counting"`` with ``thresholds_kev``),
optional ``[bowtie]`` and ``[scatter]``, and ``[reconstruction]`` (with an optional
``[reconstruction.scatter_correction]``: ``spr``, ``fwhm_mm``, ``n_iter`` of the kernel scatter
correction applied before the log); `protocol_from_config` validates
it with pydantic and builds a `CTProtocol`.
When ``n_u`` is not given, the detector is sized to cover the reconstruction field of view
``fov_mm`` (a circle of that diameter about the rotation axis).
"""

from __future__ import annotations

import dataclasses
import itertools
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
from ...materials import ENERGY_RANGE_KEV
from .._kinds import Filter, Modality, as_member
from ..geometry import ConeBeam, FanBeam, ParallelBeam, ProjectionGeometry
from ._bowtie import Bowtie
from ._detector import EnergyIntegratingDetector, PhotonCountingDetector
from ._mammography import mammography_geometry
from ._scatter import KernelScatter
from ._scatter_correction import ScatterCorrection
from ._spectrum import ANODE_KVP_RANGE, KVP_RANGE, Spectrum

__all__ = ["CTProtocol", "protocol_from_config", "with_views"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CTProtocol:
    """Everything a CT acquisition and its reconstruction need.

    Attributes:
        geometry: `ParallelBeam` or `FanBeam` (``n_rows=None``: one row per slice of the phantom),
            `ConeBeam` (CBCT, radiographs) or `ProjectionGeometry` (arbitrary poses).
            The detector pixel pitch (``du_mm``, ``dv_mm``) lives in the geometry.
        spectrum: the tube `Spectrum`.
        detector: an `EnergyIntegratingDetector` or a `PhotonCountingDetector`.
        mas_per_view: tube current–time product per view (mAs).
        bowtie: an optional `Bowtie` filter (per detector column extra filtration; parallel,
            fan or cone beam).
        scatter: an optional `KernelScatter` estimate added to the signal.
        scatter_correction: an optional `ScatterCorrection` applied by
            `medphys.simulators.ct.reconstruct` before the log (kernel-based primary estimate).
        filter: the FBP window, a `medphys.simulators.ct.Filter` (static).
        beam_hardening_correction: linearise the projections to water before reconstruction
            (`medphys.simulators.ct.correct_beam_hardening`) (static).
        water_diameter_mm: diameter of the water cylinder that defines 0 HU (static).
        name, description: from the catalog file (static).
        modality: `Modality.CT` or `Modality.RADIOGRAPH` (static).
    """

    geometry: ParallelBeam | FanBeam | ConeBeam | ProjectionGeometry
    spectrum: Spectrum
    detector: EnergyIntegratingDetector | PhotonCountingDetector
    mas_per_view: Float[Array, ""]
    bowtie: Bowtie | None = None
    scatter: KernelScatter | None = None
    scatter_correction: ScatterCorrection | None = None
    filter: Filter = dataclasses.field(default=Filter.HANN, metadata={"static": True})
    beam_hardening_correction: bool = dataclasses.field(default=False, metadata={"static": True})
    water_diameter_mm: float = dataclasses.field(default=200.0, metadata={"static": True})
    name: str = dataclasses.field(default="", metadata={"static": True})
    description: str = dataclasses.field(default="", metadata={"static": True})
    modality: Modality = dataclasses.field(default=Modality.CT, metadata={"static": True})

    @classmethod
    def create(
        cls,
        *,
        geometry: ParallelBeam | FanBeam | ConeBeam | ProjectionGeometry,
        spectrum: Spectrum,
        mas_per_view: float | None = None,
        mas: float | None = None,
        detector: EnergyIntegratingDetector | PhotonCountingDetector | None = None,
        bowtie: Bowtie | None = None,
        scatter: KernelScatter | None = None,
        scatter_correction: ScatterCorrection | None = None,
        filter: Filter | str = Filter.HANN,
        beam_hardening_correction: bool = False,
        water_diameter_mm: float = 200.0,
        name: str = "",
        description: str = "",
        modality: Modality | str = Modality.CT,
    ) -> CTProtocol:
        """Validated constructor.

        Args:
            geometry: the scan geometry.
            spectrum: the tube spectrum.
            mas_per_view: mAs per view; or give ``mas``, the total over all views (per rotation).
            detector: `EnergyIntegratingDetector` (default: no electronic noise, no blur) or
                `PhotonCountingDetector`.
            bowtie: optional `Bowtie` filter (not with a `ProjectionGeometry`).
            scatter: optional `KernelScatter`.
            scatter_correction: optional `ScatterCorrection` applied in reconstruction.
            filter: the FBP window, a `medphys.simulators.ct.Filter` (or its name:
                ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``, ``"hann"``).
            beam_hardening_correction: water linearisation before reconstruction.
            water_diameter_mm: reference water cylinder for the HU calibration (mm).
            modality: `Modality.CT` (reconstructed) or `Modality.RADIOGRAPH` (projections
                only), or their names ``"ct"``, ``"radiograph"``.

        Raises:
            ValueError, TypeError: wrong types, non-positive mAs, unknown filter, a photon-counting
                detector whose lowest threshold is above the spectrum's highest energy.
        """
        where = "medphys.simulators.xray.CTProtocol.create"
        if not isinstance(geometry, (ParallelBeam, FanBeam, ConeBeam, ProjectionGeometry)):
            raise TypeError(
                f"{where}: `geometry` must be a ParallelBeam, FanBeam, ConeBeam or "
                f"ProjectionGeometry (got {type(geometry).__name__})"
            )
        modality = as_member(
            where, "modality", modality, Modality, (Modality.CT, Modality.RADIOGRAPH)
        )
        if bowtie is not None and not isinstance(geometry, (ParallelBeam, FanBeam, ConeBeam)):
            raise ValueError(
                f"{where}: a `bowtie` needs a ParallelBeam, FanBeam or ConeBeam geometry (a "
                f"rotating gantry; got {type(geometry).__name__})"
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
        filter = as_member(where, "filter", filter, Filter)
        diameter = _number(where, "water_diameter_mm", water_diameter_mm)
        if diameter <= 0:
            raise ValueError(
                f"{where}: `water_diameter_mm` must be > 0 (got {water_diameter_mm!r})"
            )
        detector = EnergyIntegratingDetector.create() if detector is None else detector
        if not isinstance(detector, (EnergyIntegratingDetector, PhotonCountingDetector)):
            raise TypeError(
                f"{where}: `detector` must be an EnergyIntegratingDetector or PhotonCountingDetector "
                f"(got {type(detector).__name__})"
            )
        if isinstance(detector, PhotonCountingDetector):
            lowest = float(np.min(detector.thresholds_kev))
            top = float(np.max(spectrum.energies_kev)) + 0.5 * float(spectrum.bin_kev)
            if lowest >= top:
                raise ValueError(
                    f"{where}: the detector's lowest threshold ({lowest:g} keV) is above every "
                    f"photon of the spectrum (up to {top:g} keV): no counts"
                )
        if bowtie is not None and not isinstance(bowtie, Bowtie):
            raise TypeError(
                f"{where}: `bowtie` must be a Bowtie or None (got {type(bowtie).__name__})"
            )
        if scatter is not None and not isinstance(scatter, KernelScatter):
            raise TypeError(
                f"{where}: `scatter` must be a KernelScatter or None (got {type(scatter).__name__})"
            )
        if scatter_correction is not None and not isinstance(scatter_correction, ScatterCorrection):
            raise TypeError(
                f"{where}: `scatter_correction` must be a ScatterCorrection or None "
                f"(got {type(scatter_correction).__name__})"
            )
        if not isinstance(beam_hardening_correction, bool):
            raise TypeError(
                f"{where}: `beam_hardening_correction` must be True or False "
                f"(got {beam_hardening_correction!r})"
            )
        return cls(
            geometry=geometry,
            spectrum=spectrum,
            detector=detector,
            mas_per_view=np.asarray(per_view, np.float64),
            bowtie=bowtie,
            scatter=scatter,
            scatter_correction=scatter_correction,
            filter=filter,
            beam_hardening_correction=beam_hardening_correction,
            water_diameter_mm=diameter,
            name=name,
            description=description,
            modality=modality,
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


def _sdd_beyond_sod(cls: type, sdd: float, info: pydantic.ValidationInfo) -> float:
    """Validator shared by the source–detector geometries: the detector lies beyond the isocentre."""
    sod = info.data.get("sod_mm")
    if sod is not None and sdd <= sod:
        raise ValueError(f"must exceed sod_mm (= {sod:g})")
    return sdd


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

    _detector_beyond_isocentre = pydantic.field_validator("sdd_mm")(_sdd_beyond_sod)


class _ConeConfig(Strict):
    kind: Literal["cone"]
    n_views: Annotated[int, pydantic.Field(ge=1)]
    start_deg: float = 0.0
    arc_deg: Annotated[float, pydantic.Field(gt=0, le=3600)] = 360.0
    sod_mm: Positive
    sdd_mm: Positive
    n_u: Annotated[int, pydantic.Field(ge=1)]
    n_v: Annotated[int, pydantic.Field(ge=1)]
    du_mm: Positive
    dv_mm: Positive
    u_offset_mm: float = 0.0
    v_offset_mm: float = 0.0
    pitch_mm: float = 0.0
    z_mm: float = 0.0

    _detector_beyond_isocentre = pydantic.field_validator("sdd_mm")(_sdd_beyond_sod)


class _TomoConfig(Strict):
    """A tomosynthesis sweep: the source moves on an arc about the isocentre in the y–z plane,
    the detector stays put behind the patient (normal along +y, rows along z)."""

    kind: Literal["tomosynthesis"]
    n_views: Annotated[int, pydantic.Field(ge=2)]
    sweep_deg: Annotated[float, pydantic.Field(gt=0, lt=90)]
    sod_mm: Positive
    sdd_mm: Positive
    n_u: Annotated[int, pydantic.Field(ge=1)]
    n_v: Annotated[int, pydantic.Field(ge=1)]
    du_mm: Positive
    dv_mm: Positive
    z_mm: float = 0.0

    _detector_beyond_isocentre = pydantic.field_validator("sdd_mm")(_sdd_beyond_sod)


class _MammoConfig(Strict):
    """Mammography (one view) or breast tomosynthesis (a sweep): stationary detector under the
    breast, source above the chest-wall edge (`mammography_geometry`)."""

    kind: Literal["mammography"]
    sid_mm: Positive
    n_u: Annotated[int, pydantic.Field(ge=1)]
    n_v: Annotated[int, pydantic.Field(ge=1)]
    du_mm: Positive
    dv_mm: Positive
    n_views: Annotated[int, pydantic.Field(ge=1)] = 1
    arc_deg: Annotated[float, pydantic.Field(ge=0, lt=90)] = 0.0
    pivot_height_mm: Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)] = 0.0
    detector_z_mm: float = 0.0
    chest_wall_y_mm: float = 0.0

    @pydantic.model_validator(mode="after")
    def _sweep(self) -> _MammoConfig:
        if (self.n_views == 1) != (self.arc_deg == 0):
            raise ValueError(
                f"n_views = {self.n_views} with arc_deg = {self.arc_deg:g}: one view has no "
                "sweep (arc_deg = 0), several views need arc_deg > 0"
            )
        if self.pivot_height_mm >= self.sid_mm:
            raise ValueError(
                f"pivot_height_mm = {self.pivot_height_mm:g} must be below sid_mm = {self.sid_mm:g}"
            )
        return self


class _Filter(Strict):
    material: str
    mm: Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]


class _SpectrumConfig(Strict):
    kvp: Annotated[float, pydantic.Field(ge=KVP_RANGE[0], le=KVP_RANGE[1])]
    anode_angle_deg: Annotated[float, pydantic.Field(gt=0, le=45)] = 12.0
    filtration: tuple[_Filter, ...] = (_Filter(material="Al", mm=2.5),)
    bin_kev: Annotated[float, pydantic.Field(ge=0.5, le=20)] = 2.0
    anode: Literal["W", "Mo", "Rh"] = "W"

    @pydantic.model_validator(mode="after")
    def _kvp_for_anode(self) -> _SpectrumConfig:
        lo, hi = ANODE_KVP_RANGE[self.anode]
        if not lo <= self.kvp <= hi:
            raise ValueError(
                f"kvp = {self.kvp:g} is outside [{lo:g}, {hi:g}] kV, the range for anode = "
                f"{self.anode!r}"
            )
        return self


class _DoseConfig(Strict):
    mas: Positive | None = None
    mas_per_view: Positive | None = None

    @pydantic.model_validator(mode="after")
    def _one(self) -> _DoseConfig:
        if (self.mas is None) == (self.mas_per_view is None):
            raise ValueError("give exactly one of `mas` (per rotation) and `mas_per_view`")
        return self


NonNegative = Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]
Energy = Annotated[float, pydantic.Field(ge=ENERGY_RANGE_KEV[0], le=ENERGY_RANGE_KEV[1])]


class _DetectorConfig(Strict):
    kind: Literal["energy-integrating", "photon-counting"] = "energy-integrating"
    electronic_noise: NonNegative = 0.0
    blur_fwhm_mm: NonNegative = 0.0
    thresholds_kev: tuple[Energy, ...] | None = None
    energy_resolution_kev: NonNegative = 0.0
    converter: Literal["a-Se", "CsI"] | None = None
    converter_um: Positive | None = None

    @pydantic.field_validator("thresholds_kev")
    @classmethod
    def _increasing(cls, t: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if t is not None:
            if len(t) < 1:
                raise ValueError("give at least one threshold (keV)")
            if any(b <= a for a, b in itertools.pairwise(t)):
                raise ValueError(f"must be strictly increasing (got {list(t)})")
        return t

    @pydantic.model_validator(mode="after")
    def _kind_fields(self) -> _DetectorConfig:
        if self.kind == "photon-counting":
            if self.thresholds_kev is None:
                raise ValueError("kind = 'photon-counting' needs `thresholds_kev`")
            if self.electronic_noise != 0:
                raise ValueError("a photon-counting detector has no `electronic_noise`")
        elif self.thresholds_kev is not None or self.energy_resolution_kev != 0:
            raise ValueError(
                "`thresholds_kev` and `energy_resolution_kev` need kind = 'photon-counting'"
            )
        if self.kind == "photon-counting" and self.converter is not None:
            raise ValueError("`converter` is for kind = 'energy-integrating'")
        if (self.converter is None) != (self.converter_um is None):
            raise ValueError("give `converter` and `converter_um` (µm) together")
        return self


class _BowtieConfig(Strict):
    material: str = "aluminium"
    center_mm: NonNegative = 0.0
    edge_mm: NonNegative
    radius_mm: Positive = 250.0


class _ScatterConfig(Strict):
    spr: NonNegative
    fwhm_mm: Positive = 100.0


class _ScatterCorrectionConfig(Strict):
    spr: Annotated[float, pydantic.Field(ge=0, lt=1)]
    fwhm_mm: Positive = 100.0
    n_iter: Annotated[int, pydantic.Field(ge=1)] = 10


class _ReconConfig(Strict):
    filter: Filter = Filter.HANN
    water_diameter_mm: Positive = 200.0
    beam_hardening_correction: bool = False
    scatter_correction: _ScatterCorrectionConfig | None = None


_AnyGeometry = _ParallelConfig | _FanConfig | _ConeConfig | _TomoConfig | _MammoConfig


class _CTConfig(Strict):
    modality: Literal["ct", "radiograph"]
    description: str
    geometry: Annotated[_AnyGeometry, pydantic.Field(discriminator="kind")]
    spectrum: _SpectrumConfig
    dose: _DoseConfig
    detector: _DetectorConfig = _DetectorConfig()
    bowtie: _BowtieConfig | None = None
    scatter: _ScatterConfig | None = None
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


def tomosynthesis_geometry(
    *,
    n_views: int,
    sweep_deg: float,
    sod_mm: float,
    sdd_mm: float,
    n_u: int,
    n_v: int,
    du_mm: float,
    dv_mm: float,
    z_mm: float = 0.0,
) -> ProjectionGeometry:
    """Linear-detector tomosynthesis: ``n_views`` source positions on an arc of ``sweep_deg``
    about the isocentre ``(0, 0, z_mm)`` in the y–z plane (view ``k`` at elevation
    ``phi_k``, from ``-sweep/2`` to ``+sweep/2``; ``phi = 0``: source posterior at ``-sod`` along
    y), a fixed detector centred at ``(0, sdd - sod, z_mm)`` with ``u`` along +x and ``v`` along +z.
    """
    phi = np.radians(np.linspace(-sweep_deg / 2, sweep_deg / 2, n_views))
    sources = np.stack(
        [np.zeros_like(phi), -sod_mm * np.cos(phi), z_mm + sod_mm * np.sin(phi)], axis=1
    )
    centre = np.broadcast_to(np.array([0.0, sdd_mm - sod_mm, z_mm]), (n_views, 3))
    return ProjectionGeometry.create(
        sources_mm=sources,
        detector_centers_mm=centre,
        u_axes=np.broadcast_to(np.array([1.0, 0.0, 0.0]), (n_views, 3)),
        v_axes=np.broadcast_to(np.array([0.0, 0.0, 1.0]), (n_views, 3)),
        n_u=n_u,
        n_v=n_v,
        du_mm=du_mm,
        dv_mm=dv_mm,
    )


def _geometry(g: _AnyGeometry) -> ParallelBeam | FanBeam | ConeBeam | ProjectionGeometry:
    if isinstance(g, _ConeConfig):
        return ConeBeam.create(
            n_u=g.n_u,
            n_v=g.n_v,
            du_mm=g.du_mm,
            dv_mm=g.dv_mm,
            sod_mm=g.sod_mm,
            sdd_mm=g.sdd_mm,
            n_views=g.n_views,
            start_rad=math.radians(g.start_deg),
            arc_rad=math.radians(g.arc_deg),
            pitch_mm=g.pitch_mm,
            z_mm=g.z_mm,
            u_offset_mm=g.u_offset_mm,
            v_offset_mm=g.v_offset_mm,
        )
    if isinstance(g, _TomoConfig):
        return tomosynthesis_geometry(**g.model_dump(exclude={"kind"}))
    if isinstance(g, _MammoConfig):
        return mammography_geometry(**g.model_dump(exclude={"kind"}))
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


def _detector(d: _DetectorConfig) -> EnergyIntegratingDetector | PhotonCountingDetector:
    if d.kind == "photon-counting":
        return PhotonCountingDetector.create(
            thresholds_kev=d.thresholds_kev or (),
            energy_resolution_kev=d.energy_resolution_kev,
            blur_fwhm_mm=d.blur_fwhm_mm,
        )
    return EnergyIntegratingDetector.create(
        electronic_noise=d.electronic_noise,
        blur_fwhm_mm=d.blur_fwhm_mm,
        converter=d.converter,
        converter_um=d.converter_um,
    )


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
    cfg = validate(_CTConfig, data, source=source, text=text)
    try:
        geometry = _geometry(cfg.geometry)
        s = cfg.spectrum
        spectrum = Spectrum.create(
            kvp=s.kvp,
            anode_angle_deg=s.anode_angle_deg,
            filtration=tuple((f.material, f.mm) for f in s.filtration),
            bin_kev=s.bin_kev,
            anode=s.anode,
        )
        return CTProtocol.create(
            geometry=geometry,
            spectrum=spectrum,
            mas=cfg.dose.mas,
            mas_per_view=cfg.dose.mas_per_view,
            detector=_detector(cfg.detector),
            bowtie=None if cfg.bowtie is None else Bowtie.create(**cfg.bowtie.model_dump()),
            scatter=None
            if cfg.scatter is None
            else KernelScatter.create(**cfg.scatter.model_dump()),
            scatter_correction=None
            if cfg.reconstruction.scatter_correction is None
            else ScatterCorrection.create(**cfg.reconstruction.scatter_correction.model_dump()),
            filter=cfg.reconstruction.filter,
            beam_hardening_correction=cfg.reconstruction.beam_hardening_correction,
            water_diameter_mm=cfg.reconstruction.water_diameter_mm,
            name=Path(source).stem,
            description=cfg.description,
            modality=cfg.modality,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def with_views(protocol: CTProtocol, n_views: int) -> CTProtocol:
    """The protocol with ``n_views`` equally spaced views over the same arc and the same total
    tube current–time product (``mas_per_view`` scaled by old / new views): a sparse-view (or
    denser) scan at the same dose.

    Raises:
        TypeError: a protocol whose geometry is not a circular `FanBeam` or `ParallelBeam`.
        ValueError: ``n_views`` not an integer >= 1.
    """
    where = "medphys.simulators.xray.with_views"
    if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 1:
        raise ValueError(f"{where}: `n_views` must be an integer >= 1 (got {n_views!r})")
    g = protocol.geometry
    if not isinstance(g, FanBeam | ParallelBeam):
        raise TypeError(
            f"{where}: the protocol's geometry must be a FanBeam or ParallelBeam "
            f"(got {type(g).__name__})"
        )
    angles = np.asarray(g.angles, np.float64)
    old = angles.shape[0]
    step = (angles[-1] - angles[0]) / (old - 1) if old > 1 else 2 * math.pi
    new = angles[0] + np.arange(n_views) * (step * old / n_views)
    geometry = dataclasses.replace(g, angles=new.astype(np.asarray(g.angles).dtype))
    return dataclasses.replace(
        protocol, geometry=geometry, mas_per_view=protocol.mas_per_view * old / n_views
    )
