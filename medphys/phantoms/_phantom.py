"""The phantom catalog: TOML definitions, their validation, and `load`.

A definition lists named structures, each an analytic shape with a material, painted in order:
a later structure overrides an earlier one where they overlap (body first, organs inside it, small
structures last); everything not covered is the background material (air). `load` validates a
file (messages name the file, line, key path and value) and builds the `Phantom` value: one
`PhantomStructure` record per structure (see ``_anatomy``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pydantic
import pydantic_core

from .. import materials
from .._catalog import names as _catalog_names
from .._catalog import resolve
from .._config import Strict, format_validation_error, read_toml, validate
from .._errors import ConfigError, UnknownNameError, unknown_name
from ..volume import MRValues
from ._anatomy import Phantom, PhantomStructure, Population
from ._shapes import (
    Box,
    Cone,
    Difference,
    Ellipsoid,
    EllipticCylinder,
    HalfSpace,
    Intersection,
    Rods,
    Shape,
    SmoothUnion,
    Spheres,
    Superquadric,
    Torus,
    Tube,
    Union,
    catmull_rom,
)
from ._texture import (
    MAX_AMPLITUDE,
    MAX_BETA,
    ClusteredLumpyTexture,
    LumpyTexture,
    PowerLawTexture,
    Texture,
)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

Vec3 = tuple[float, float, float]
Vec2 = tuple[float, float]


def _positive(values: tuple[float, ...]) -> tuple[float, ...]:
    if any(not np.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"every size must be positive and finite (got {list(values)})")
    return values


_Exponent = Annotated[float, pydantic.Field(ge=0.1, le=1.0)]
_PositiveVec3 = Annotated[Vec3, pydantic.AfterValidator(_positive)]
_PositiveVec2 = Annotated[Vec2, pydantic.AfterValidator(_positive)]
_MAX_SEGMENTS = 32


class _EllipsoidSpec(Strict):
    type: Literal["ellipsoid"]
    center_mm: Vec3
    semi_axes_mm: _PositiveVec3
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)


class _CylinderSpec(Strict):
    type: Literal["elliptic_cylinder"]
    center_mm: Vec3
    semi_axes_mm: _PositiveVec2
    half_length_mm: pydantic.PositiveFloat
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)


class _BoxSpec(Strict):
    type: Literal["box"]
    center_mm: Vec3
    half_size_mm: _PositiveVec3
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)


class _SuperquadricSpec(Strict):
    type: Literal["superquadric"]
    center_mm: Vec3
    semi_axes_mm: _PositiveVec3
    #: squareness (e1 along local z, e2 in the x-y plane), each in [0.1, 1] (convex shapes whose
    #: level is a lower bound of the distance); 1, 1 = ellipsoid
    exponents: tuple[_Exponent, _Exponent] = (1.0, 1.0)
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)


class _TorusSpec(Strict):
    type: Literal["torus"]
    center_mm: Vec3
    #: semi-axes of the centre-line ellipse in the local x-y plane (equal: a circular torus)
    major_radii_mm: _PositiveVec2
    minor_radius_mm: pydantic.PositiveFloat
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)

    @pydantic.field_validator("minor_radius_mm")
    @classmethod
    def _ring(cls, value: float, info: pydantic.ValidationInfo) -> float:
        major = info.data.get("major_radii_mm")
        if major is not None and value >= min(major):
            raise ValueError(
                f"must be smaller than the smallest of major_radii_mm {list(major)} "
                "(the ring would close its hole)"
            )
        return value


def _radii_for(r: float | list[float], n: int) -> list[float]:
    radii = [float(r)] * n if isinstance(r, float) else list(r)
    if len(radii) != n:
        raise ValueError(
            f"has {len(radii)} values for {n} points_mm (give one radius, or one per point)"
        )
    _positive(tuple(radii))
    return radii


def _radii(spec: _TubeSpec | _SplineTubeSpec) -> list[float]:
    return _radii_for(spec.radius_mm, len(spec.points_mm))


def _check_radius(value: float | list[float], info: pydantic.ValidationInfo) -> float | list[float]:
    points = info.data.get("points_mm")
    if points is not None:
        _radii_for(value, len(points))
    return value


class _TubeSpec(Strict):
    type: Literal["tube"]
    #: centre-line vertices (a polyline), 2 to 17 points
    points_mm: Annotated[list[Vec3], pydantic.Field(min_length=2, max_length=17)]
    #: one radius, or one per vertex (linearly tapered in between)
    radius_mm: pydantic.PositiveFloat | list[float]

    _radius = pydantic.field_validator("radius_mm")(_check_radius)


class _SplineTubeSpec(Strict):
    type: Literal["spline_tube"]
    #: Catmull-Rom control points (the curve passes through each), 2 to 33 points
    points_mm: Annotated[list[Vec3], pydantic.Field(min_length=2, max_length=33)]
    radius_mm: pydantic.PositiveFloat | list[float]
    #: straight segments of the sampled centre line (cost of `level` grows with it)
    segments: Annotated[int, pydantic.Field(ge=1, le=_MAX_SEGMENTS)] = 12

    _radius = pydantic.field_validator("radius_mm")(_check_radius)


def _nonzero(values: tuple[float, ...]) -> tuple[float, ...]:
    if not all(np.isfinite(v) for v in values) or not any(v != 0 for v in values):
        raise ValueError(f"must be a finite, non-zero vector (got {list(values)})")
    return values


class _HalfSpaceSpec(Strict):
    """The half-space ``normal . p <= offset_mm`` (unit normal): a clip plane, only inside an
    intersection (or as a difference's cut); on its own it would fill all space."""

    type: Literal["half_space"]
    #: outward normal (points away from the kept side); normalised on load
    normal: Annotated[Vec3, pydantic.AfterValidator(_nonzero)]
    #: signed distance of the plane from the origin along the unit normal (mm)
    offset_mm: float


def _cone_radii(values: tuple[float, float]) -> tuple[float, float]:
    if any(not np.isfinite(v) or v < 0 for v in values) or max(values) <= 0:
        raise ValueError(f"radii must be >= 0, finite and not both 0 (got {list(values)})")
    return values


class _ConeSpec(Strict):
    type: Literal["cone"]
    center_mm: Vec3
    #: radii at the -z and +z ends of the local axis (one may be 0: a pointed cone)
    radii_mm: Annotated[Vec2, pydantic.AfterValidator(_cone_radii)]
    half_length_mm: pydantic.PositiveFloat
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)


_MAX_BALLS = 4096


def _per_centre(value: float | list[float], info: pydantic.ValidationInfo) -> float | list[float]:
    if isinstance(value, list):
        centers = info.data.get("centers_mm")
        if centers is not None and len(value) != len(centers):
            raise ValueError(
                f"has {len(value)} values for {len(centers)} centers_mm "
                "(give one radius, or one per centre)"
            )
        _positive(tuple(value))
    return value


class _SpheresSpec(Strict):
    type: Literal["spheres"]
    #: ball centres, 1 to 4096
    centers_mm: Annotated[list[Vec3], pydantic.Field(min_length=1, max_length=_MAX_BALLS)]
    #: one radius, or one per centre
    radius_mm: pydantic.PositiveFloat | list[float]

    _radius = pydantic.field_validator("radius_mm")(_per_centre)


class _RodsSpec(Strict):
    type: Literal["rods"]
    #: rod centres (each rod runs along z), 1 to 4096
    centers_mm: Annotated[list[Vec3], pydantic.Field(min_length=1, max_length=_MAX_BALLS)]
    #: one radius, or one per centre
    radius_mm: pydantic.PositiveFloat | list[float]
    #: half the length of every rod along z
    half_length_mm: pydantic.PositiveFloat

    _radius = pydantic.field_validator("radius_mm")(_per_centre)


class _UnionSpec(Strict):
    type: Literal["union"]
    children: Annotated[list[ShapeSpec], pydantic.Field(min_length=1)]


class _IntersectionSpec(Strict):
    type: Literal["intersection"]
    children: Annotated[list[ShapeSpec], pydantic.Field(min_length=1)]


class _DifferenceSpec(Strict):
    type: Literal["difference"]
    base: ShapeSpec
    cuts: Annotated[list[ShapeSpec], pydantic.Field(min_length=1)]


class _SmoothUnionSpec(Strict):
    type: Literal["smooth_union"]
    children: Annotated[list[ShapeSpec], pydantic.Field(min_length=2)]
    #: blend radius (mm)
    radius_mm: pydantic.PositiveFloat


ShapeSpec = Annotated[
    _EllipsoidSpec
    | _CylinderSpec
    | _BoxSpec
    | _SuperquadricSpec
    | _TorusSpec
    | _TubeSpec
    | _SplineTubeSpec
    | _ConeSpec
    | _SpheresSpec
    | _RodsSpec
    | _HalfSpaceSpec
    | _UnionSpec
    | _IntersectionSpec
    | _DifferenceSpec
    | _SmoothUnionSpec,
    pydantic.Field(discriminator="type"),
]
for _model in (_UnionSpec, _IntersectionSpec, _DifferenceSpec, _SmoothUnionSpec):
    _model.model_rebuild()


class _MRSpec(Strict):
    """MR properties that override the material's (test objects with published T1/T2 values)."""

    pd: Annotated[float, pydantic.Field(ge=0.0, le=1.5)]
    t1_s: pydantic.PositiveFloat
    t2_s: pydantic.PositiveFloat
    t2star_s: pydantic.PositiveFloat | None = None
    source: str = ""

    @pydantic.field_validator("t2_s")
    @classmethod
    def _t2_below_t1(cls, value: float, info: pydantic.ValidationInfo) -> float:
        t1 = info.data.get("t1_s")
        if t1 is not None and value > t1:
            raise ValueError(f"must not exceed t1_s ({t1})")
        return value

    @pydantic.field_validator("t2star_s")
    @classmethod
    def _t2star_below_t2(cls, value: float | None, info: pydantic.ValidationInfo) -> float | None:
        t2 = info.data.get("t2_s")
        if value is not None and t2 is not None and value > t2:
            raise ValueError(f"must not exceed t2_s ({t2})")
        return value


def _known_material(name: str) -> str:
    try:
        materials.get(name)  # catalog names and parseable mixtures ("blood+iodine_5mg_ml")
    except UnknownNameError:
        raise unknown_name("material", name, materials.names()) from None
    return name


def _snake(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"must be lower_snake_case letters, digits and underscores (got {name!r})")
    return name


_Amplitude = Annotated[float, pydantic.Field(ge=0.0, le=MAX_AMPLITUDE)]
#: relative standard deviation of T1 or T2 (MR); negative: anticorrelated with the density
_Relaxation = Annotated[float, pydantic.Field(ge=-MAX_AMPLITUDE, le=MAX_AMPLITUDE)]
_Positive = Annotated[float, pydantic.Field(gt=0.0, le=100.0)]


class _PowerLawTextureSpec(Strict):
    """``texture = { kind = "power_law", beta = 3.0, amplitude = 0.02 }``: P(f) ∝ f^(-beta)."""

    kind: Literal["power_law"]
    #: spectral exponent of the power spectrum, P(f) ∝ f^(-beta)
    beta: Annotated[float, pydantic.Field(ge=0.0, le=MAX_BETA)]
    #: relative standard deviation of the density (CT) / proton density (MR) modulation
    amplitude: _Amplitude
    source: str = ""
    t1_amplitude: _Relaxation = 0.0
    t2_amplitude: _Relaxation = 0.0


class _LumpyTextureSpec(Strict):
    """``texture = { kind = "lumpy", lump_sigma_mm = 3, lumps_per_cm3 = 2, amplitude = 0.02 }``."""

    kind: Literal["lumpy"]
    lump_sigma_mm: Annotated[float, pydantic.Field(gt=0.0, le=100.0)]
    lumps_per_cm3: Annotated[float, pydantic.Field(gt=0.0, le=1000.0)]
    amplitude: _Amplitude
    source: str = ""
    t1_amplitude: _Relaxation = 0.0
    t2_amplitude: _Relaxation = 0.0


_CLB = ClusteredLumpyTexture(amplitude=0.0)  # the published defaults


class _ClusteredLumpyTextureSpec(Strict):
    """``texture = { kind = "clustered_lumpy", amplitude = 0.05 }`` (Bochud et al. 1999); every
    other key defaults to the published mammographic value (`ClusteredLumpyTexture`)."""

    kind: Literal["clustered_lumpy"]
    amplitude: _Amplitude
    clusters_per_cm3: Annotated[float, pydantic.Field(gt=0.0, le=1.0e4)] = _CLB.clusters_per_cm3
    blobs_per_cluster: Annotated[float, pydantic.Field(gt=0.0, le=1.0e3)] = _CLB.blobs_per_cluster
    cluster_sigma_mm: _Positive = _CLB.cluster_sigma_mm
    blob_lx_mm: _Positive = _CLB.blob_lx_mm
    blob_ly_mm: _Positive = _CLB.blob_ly_mm
    alpha: _Positive = _CLB.alpha
    beta: Annotated[float, pydantic.Field(gt=0.0, le=2.0)] = _CLB.beta
    unit_mm: _Positive = _CLB.unit_mm
    source: str = ""
    t1_amplitude: _Relaxation = 0.0
    t2_amplitude: _Relaxation = 0.0


TextureSpec = Annotated[
    _PowerLawTextureSpec | _LumpyTextureSpec | _ClusteredLumpyTextureSpec,
    pydantic.Field(discriminator="kind"),
]


def _texture_from_spec(spec: Any) -> Texture | None:
    if spec is None:
        return None
    values = spec.model_dump(exclude={"kind"})
    if isinstance(spec, _PowerLawTextureSpec):
        return PowerLawTexture(**values)
    if isinstance(spec, _LumpyTextureSpec):
        return LumpyTexture(**values)
    return ClusteredLumpyTexture(**values)


class _StructureSpec(Strict):
    name: Annotated[str, pydantic.AfterValidator(_snake)]
    material: Annotated[str, pydantic.AfterValidator(_known_material)]
    shape: ShapeSpec
    #: relative standard deviation of this organ's size across a population (overrides the default)
    size_sd: Annotated[float, pydantic.Field(ge=0.0, le=0.3)] | None = None
    #: the outer surface of this structure moves with the subcutaneous fat layer (body, skin, fat)
    fat_layer: bool = False
    #: MR properties overriding the material's (test objects with published values)
    mr: _MRSpec | None = None
    #: statistical texture of the structure's density (None: uniform)
    texture: TextureSpec | None = None

    @pydantic.field_validator("shape")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if not _is_bounded(value):
            raise ValueError(
                "is unbounded: a half_space only clips other shapes; put it in an intersection "
                "with a bounded shape (or among a difference's cuts)"
            )
        return value


def _is_bounded(spec: Any) -> bool:
    """Whether a validated shape table describes a bounded solid (half-spaces are not)."""
    if isinstance(spec, _HalfSpaceSpec):
        return False
    if isinstance(spec, _IntersectionSpec):
        return any(_is_bounded(c) for c in spec.children)
    if isinstance(spec, _UnionSpec | _SmoothUnionSpec):
        return all(_is_bounded(c) for c in spec.children)
    if isinstance(spec, _DifferenceSpec):
        return _is_bounded(spec.base)
    return True


_Sd = Annotated[float, pydantic.Field(ge=0.0)]


class _PopulationSpec(Strict):
    #: relative standard deviation of the body's size along x (lateral), y (AP), z (length)
    body_scale_sd: tuple[
        Annotated[float, pydantic.Field(ge=0.0, le=0.3)],
        Annotated[float, pydantic.Field(ge=0.0, le=0.3)],
        Annotated[float, pydantic.Field(ge=0.0, le=0.3)],
    ] = (0.0, 0.0, 0.0)
    #: default relative standard deviation of each organ's size
    organ_size_sd: Annotated[float, pydantic.Field(ge=0.0, le=0.3)] = 0.0
    #: draws are truncated at this many standard deviations
    truncate_sd: Annotated[float, pydantic.Field(gt=0.0, le=5.0)] = 2.5
    #: body height (cm): mean (the reference individual) and standard deviation; height scales z
    height_cm: tuple[Annotated[float, pydantic.Field(ge=100.0, le=230.0)], _Sd] | None = None
    #: body-mass index (kg/m^2): mean (the reference individual) and standard deviation
    bmi: tuple[Annotated[float, pydantic.Field(ge=12.0, le=60.0)], _Sd] | None = None
    #: published 5th / 50th / 95th BMI percentiles of the population (kg/m^2): individuals are
    #: drawn from the log-normal fitted to them (else from the log-normal with `bmi`'s moments)
    bmi_percentiles: (
        tuple[
            Annotated[float, pydantic.Field(ge=12.0, le=70.0)],
            Annotated[float, pydantic.Field(ge=12.0, le=70.0)],
            Annotated[float, pydantic.Field(ge=12.0, le=70.0)],
        ]
        | None
    ) = None
    #: subcutaneous fat thickness of the reference individual (mm) and its change per BMI unit
    fat_mm: pydantic.PositiveFloat = 15.0
    fat_mm_per_bmi: Annotated[float, pydantic.Field(ge=0.0, le=10.0)] = 0.0
    #: lateral and antero-posterior half-size of the trunk (mm): fat growth becomes a scale factor
    trunk_semi_axes_mm: _PositiveVec2 = (170.0, 110.0)
    source: str = ""

    @pydantic.model_validator(mode="after")
    def _percentiles_increase(self):
        p = self.bmi_percentiles
        if p is not None and not p[0] < p[1] < p[2]:
            raise ValueError(f"bmi_percentiles must increase (5th < 50th < 95th), got {list(p)}")
        if p is not None and self.bmi is None:
            raise ValueError("bmi_percentiles needs `bmi` (the reference individual's BMI)")
        return self


_Excursion = Annotated[float, pydantic.Field(ge=0.0, le=60.0)]
_Fraction = Annotated[float, pydantic.Field(gt=0.0, lt=1.0)]


class _RespirationSpec(Strict):
    """``[motion.respiration]``: `MotionModel.create` arguments (omitted ones keep its defaults)."""

    respiratory_period_s: pydantic.PositiveFloat | None = None
    diaphragm_mm: _Excursion | None = None
    chest_ap_mm: _Excursion | None = None
    diaphragm_followers: list[str] | None = None
    lungs: list[str] | None = None
    fixed: list[str] | None = None


class _CardiacSpec(Strict):
    """``[motion.cardiac]``: `MotionModel.create` arguments (omitted ones keep its defaults)."""

    cardiac_period_s: pydantic.PositiveFloat | None = None
    end_systole_phase: _Fraction | None = None
    ejection_fraction: _Fraction | None = None
    ventricles: list[str] | None = None


class _MotionSpec(Strict):
    """``[motion]``: the phantom's default motion model (used by `Phantom.at`)."""

    respiration: _RespirationSpec = _RespirationSpec()
    cardiac: _CardiacSpec = _CardiacSpec()
    #: where the values come from
    source: str = ""


class _PhantomSpec(Strict):
    name: str
    description: str
    background_material: Annotated[str, pydantic.AfterValidator(_known_material)] = "air"
    population: _PopulationSpec = _PopulationSpec()
    #: default respiratory and cardiac motion (``None``: `MotionModel.create`'s defaults)
    motion: _MotionSpec | None = None
    structures: Annotated[list[_StructureSpec], pydantic.Field(min_length=1)]

    @pydantic.model_validator(mode="after")
    def _unique(self) -> _PhantomSpec:
        seen: set[str] = set()
        for s in self.structures:
            if s.name in seen or s.name == "background":
                raise ValueError(
                    f"structure name {s.name!r} is used twice (or is the reserved 'background')"
                )
            seen.add(s.name)
        return self


def _f32(values: Any) -> jax.Array:
    return jnp.asarray(values, dtype=jnp.float32)


def _shape_from_spec(spec: Any) -> Shape:
    """Build the shape PyTree of a validated shape table (recursively for CSG nodes)."""
    if isinstance(spec, _UnionSpec | _IntersectionSpec):
        kind = Union if isinstance(spec, _UnionSpec) else Intersection
        return kind(tuple(_shape_from_spec(c) for c in spec.children))
    if isinstance(spec, _DifferenceSpec):
        return Difference(
            _shape_from_spec(spec.base), tuple(_shape_from_spec(c) for c in spec.cuts)
        )
    if isinstance(spec, _SmoothUnionSpec):
        return SmoothUnion(tuple(_shape_from_spec(c) for c in spec.children), _f32(spec.radius_mm))
    if isinstance(spec, _TubeSpec | _SplineTubeSpec):
        points, radii = np.asarray(spec.points_mm, float), np.asarray(_radii(spec), float)
        if isinstance(spec, _SplineTubeSpec):
            points = catmull_rom(points, spec.segments)
            radii = np.maximum(catmull_rom(radii[:, None], spec.segments)[:, 0], 0.05 * radii.min())
        return Tube(_f32(points), _f32(radii))
    if isinstance(spec, _HalfSpaceSpec):
        normal = np.asarray(spec.normal, float)
        return HalfSpace(_f32(normal / np.linalg.norm(normal)), _f32(spec.offset_mm))
    if isinstance(spec, _SpheresSpec | _RodsSpec):
        centers = np.asarray(spec.centers_mm, float)
        r = spec.radius_mm
        radii = np.full(len(centers), r) if isinstance(r, float) else np.asarray(r, float)
        if isinstance(spec, _RodsSpec):
            return Rods(_f32(centers), _f32(radii), _f32(spec.half_length_mm))
        return Spheres(_f32(centers), _f32(radii))
    center = _f32(spec.center_mm)
    rot = _f32(np.deg2rad(np.asarray(spec.rotation_deg, float)))
    if isinstance(spec, _ConeSpec):
        return Cone(center, _f32(spec.radii_mm), _f32(spec.half_length_mm), rot)
    if isinstance(spec, _EllipsoidSpec):
        return Ellipsoid(center, _f32(spec.semi_axes_mm), rot)
    if isinstance(spec, _CylinderSpec):
        return EllipticCylinder(center, _f32(spec.semi_axes_mm), _f32(spec.half_length_mm), rot)
    if isinstance(spec, _BoxSpec):
        return Box(center, _f32(spec.half_size_mm), rot)
    if isinstance(spec, _SuperquadricSpec):
        return Superquadric(center, _f32(spec.semi_axes_mm), _f32(spec.exponents), rot)
    return Torus(center, _f32(spec.major_radii_mm), _f32(spec.minor_radius_mm), rot)


def from_config(data: dict[str, Any], *, source: str, text: str | None = None) -> Phantom:
    """Build a `Phantom` from a parsed definition (a TOML file's content)."""
    spec = validate(_PhantomSpec, data, source=source, text=text)
    motion = None if spec.motion is None else _motion_model(spec, source=source, text=text)
    pop = spec.population
    return Phantom(
        name=spec.name,
        structures=tuple(
            PhantomStructure(
                name=s.name,
                material=s.material,
                shape=_shape_from_spec(s.shape),
                mr=None
                if s.mr is None
                else MRValues(s.mr.pd, s.mr.t1_s, s.mr.t2_s, s.mr.source, t2star_s=s.mr.t2star_s),
                size_sd=pop.organ_size_sd if s.size_sd is None else s.size_sd,
                fat_layer=s.fat_layer,
                texture=_texture_from_spec(s.texture),
            )
            for s in spec.structures
        ),
        background_material=spec.background_material,
        population=Population(
            tuple(pop.body_scale_sd),
            pop.truncate_sd,
            pop.source,
            height_cm=pop.height_cm,
            bmi=pop.bmi,
            bmi_percentiles=pop.bmi_percentiles,
            fat_mm=pop.fat_mm,
            fat_mm_per_bmi=pop.fat_mm_per_bmi,
            trunk_semi_axes_mm=tuple(pop.trunk_semi_axes_mm),
        ),
        description=spec.description,
        motion=motion,
    )


def _motion_model(spec: _PhantomSpec, *, source: str, text: str | None) -> Any:
    """The `MotionModel` of a validated ``[motion]`` table; role lists must name structures."""
    from ._motion import MotionModel

    structures = [s.name for s in spec.structures]
    errors = []
    kwargs: dict[str, Any] = {}
    for group in ("respiration", "cardiac"):
        table = getattr(spec.motion, group)
        for key, value in table.model_dump(exclude_none=True).items():
            kwargs[key] = tuple(value) if isinstance(value, list) else value
            if not isinstance(value, list):
                continue
            for i, name in enumerate(value):
                if name not in structures:
                    msg = str(unknown_name("structure", name, structures))
                    errors.append(
                        {
                            "type": "value_error",
                            "loc": ("motion", group, key, i),
                            "input": name,
                            "ctx": {"error": ValueError(msg)},
                        }
                    )
    if errors:
        exc = pydantic_core.ValidationError.from_exception_data("motion", errors)
        raise ConfigError(format_validation_error(exc, source=source, text=text))
    return MotionModel.create(**kwargs)


def names() -> tuple[str, ...]:
    """Names of the phantoms in the catalog."""
    return _catalog_names("phantoms")


def load(name_or_path: str | Path) -> Phantom:
    """Load a phantom by catalog name (``"torso-basic"``) or from a user's TOML file.

    Raises:
        UnknownNameError: not a catalog name; the message lists the catalog.
        ConfigError: the file is invalid; the message names file, line, key path and value.

    Example:
        >>> phantom = load("torso-basic")
        >>> "liver" in phantom.structure_names
        True
    """
    path = resolve("phantoms", name_or_path)
    text = path.read_text(encoding="utf-8")
    return from_config(read_toml(path), source=str(path), text=text)
