"""Phantoms: named structures, each an analytic shape with a material, painted in order.

A `Phantom` is an immutable PyTree: shape parameters are leaves (differentiable), names and
materials are static. Structures are painted in list order, so a later structure overrides an
earlier one where they overlap (body first, organs inside it, small structures last). Everything
not covered is the background material (air).

Definitions live in the ``phantoms/`` catalog as TOML files, validated on load by `load`.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pydantic

from .. import materials
from .._catalog import names as _catalog_names
from .._catalog import resolve
from .._config import Strict, read_toml, validate
from .._errors import UnknownNameError, unknown_name
from ._shapes import Ellipsoid, EllipticCylinder, Shape

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

Vec3 = tuple[float, float, float]
Vec2 = tuple[float, float]


def _positive(values: tuple[float, ...]) -> tuple[float, ...]:
    if any(not np.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"every size must be positive and finite (got {list(values)})")
    return values


class _EllipsoidSpec(Strict):
    type: Literal["ellipsoid"]
    center_mm: Vec3
    semi_axes_mm: Annotated[Vec3, pydantic.AfterValidator(_positive)]
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)


class _CylinderSpec(Strict):
    type: Literal["elliptic_cylinder"]
    center_mm: Vec3
    semi_axes_mm: Annotated[Vec2, pydantic.AfterValidator(_positive)]
    half_length_mm: pydantic.PositiveFloat
    rotation_deg: Vec3 = (0.0, 0.0, 0.0)


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


class _StructureSpec(Strict):
    name: Annotated[str, pydantic.AfterValidator(_snake)]
    material: Annotated[str, pydantic.AfterValidator(_known_material)]
    shape: Annotated[_EllipsoidSpec | _CylinderSpec, pydantic.Field(discriminator="type")]
    #: relative standard deviation of this organ's size across a population (overrides the default)
    size_sd: Annotated[float, pydantic.Field(ge=0.0, le=0.3)] | None = None


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
    source: str = ""


class _PhantomSpec(Strict):
    name: str
    description: str
    background_material: Annotated[str, pydantic.AfterValidator(_known_material)] = "air"
    population: _PopulationSpec = _PopulationSpec()
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


def _shape_from_spec(spec: _EllipsoidSpec | _CylinderSpec) -> Shape:
    rot = jnp.deg2rad(jnp.asarray(spec.rotation_deg, dtype=jnp.float32))
    center = jnp.asarray(spec.center_mm, dtype=jnp.float32)
    if isinstance(spec, _EllipsoidSpec):
        return Ellipsoid(center, jnp.asarray(spec.semi_axes_mm, dtype=jnp.float32), rot)
    return EllipticCylinder(
        center,
        jnp.asarray(spec.semi_axes_mm, dtype=jnp.float32),
        jnp.asarray(spec.half_length_mm, dtype=jnp.float32),
        rot,
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Population:
    """How individuals of a phantom family vary (documented per family in its TOML)."""

    body_scale_sd: tuple[float, float, float] = dataclasses.field(metadata={"static": True})
    organ_size_sd: tuple[float, ...] = dataclasses.field(metadata={"static": True})
    truncate_sd: float = dataclasses.field(metadata={"static": True})
    source: str = dataclasses.field(metadata={"static": True}, default="")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Phantom:
    """A digital phantom: structures painted in order over a background material.

    Attributes:
        name: the family name (``"torso-basic"``).
        structure_names: one name per structure, painting order.
        materials: the material of each structure (names in `medphys.materials`).
        shapes: the shape of each structure (PyTree leaves).
        background_material: material outside every structure.
        population: how individuals vary (used by `medphys.phantoms.sample`).
        description: one line for humans.
        warp: deformation of the reference anatomy at this instant (``None``: at rest).
    """

    name: str = dataclasses.field(metadata={"static": True})
    structure_names: tuple[str, ...] = dataclasses.field(metadata={"static": True})
    materials: tuple[str, ...] = dataclasses.field(metadata={"static": True})
    shapes: tuple[Shape, ...]
    background_material: str = dataclasses.field(metadata={"static": True}, default="air")
    population: Population | None = None
    description: str = dataclasses.field(metadata={"static": True}, default="")
    #: optional deformation (a PyTree with ``backward(points) -> points``, mapping world points at
    #: this instant to the reference anatomy); set by `Phantom.at`, applied by `voxelize`.
    warp: Any = None

    def at(self, **kwargs: Any) -> Phantom:
        """The phantom at one instant of its motion (see `medphys.phantoms.at`)."""
        from ._motion import at

        return at(self, **kwargs)

    def shape_of(self, name: str) -> Shape:
        """The shape of structure ``name``."""
        if name not in self.structure_names:
            raise unknown_name("structure", name, self.structure_names)
        return self.shapes[self.structure_names.index(name)]

    def voxelize(self, **kwargs: Any):
        """Shorthand for ``medphys.phantoms.voxelize(self, **kwargs)``."""
        from ._voxelize import voxelize

        return voxelize(self, **kwargs)


def from_config(data: dict[str, Any], *, source: str, text: str | None = None) -> Phantom:
    """Build a `Phantom` from a parsed definition (a TOML file's content)."""
    spec = validate(_PhantomSpec, data, source=source, text=text)
    pop = spec.population
    organ_sd = tuple(pop.organ_size_sd if s.size_sd is None else s.size_sd for s in spec.structures)
    return Phantom(
        name=spec.name,
        structure_names=tuple(s.name for s in spec.structures),
        materials=tuple(s.material for s in spec.structures),
        shapes=tuple(_shape_from_spec(s.shape) for s in spec.structures),
        background_material=spec.background_material,
        population=Population(tuple(pop.body_scale_sd), organ_sd, pop.truncate_sd, pop.source),
        description=spec.description,
    )


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
