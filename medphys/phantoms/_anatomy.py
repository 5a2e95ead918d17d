"""The phantom as a value: one `PhantomStructure` record per structure, painted in order.

A `Phantom` holds one `PhantomStructure` per structure, in painting order, so every operation
that adds a structure (`insert_lesion`, `add_mesh_structure`) adds everything the other
operations need to know about it at once: population sampling (`sample_params` / `apply`), motion
(`at`), MR overrides and voxelization read the same record. ``structure_names``, ``materials``,
``shapes`` and ``mr`` are derived from the records (read-only).

``host`` ties a structure to the one it lies in (a lesion to its organ). Such a structure
follows its host's transforms instead of having its own: under population variation it gets the
host's fat-layer growth, the body scaling and the host's organ scale about the host's centre;
under cardiac motion it is scaled with a host ventricle. The map is the same for both, so a
lesion inside its organ stays inside it in every individual and at every instant.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import jax

from .. import materials
from .._checks import FieldError, number
from .._errors import UnknownNameError, unknown_name
from ..volume import MRValues
from ._shapes import Shape
from ._texture import ClusteredLumpyTexture, LumpyTexture, PowerLawTexture, Texture

_TEXTURES = (PowerLawTexture, LumpyTexture, ClusteredLumpyTexture)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: largest relative standard deviation of a structure's size across a population
MAX_SIZE_SD = 0.3


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PhantomStructure:
    """One structure of a `Phantom` (build with `PhantomStructure.create`, which validates).

    The shape is the only array data (PyTree leaves, differentiable); everything else is static.

    Attributes:
        name: lower_snake_case name, unique in its phantom (its label's name when voxelized).
        material: a `medphys.materials` name (catalog name or mixture).
        shape: the analytic shape (any `medphys.phantoms` shape or `MeshShape`).
        mr: MR values overriding the material's, or ``None`` (use the material's).
        size_sd: relative standard deviation of its size across a population (0: fixed size).
        fat_layer: its outer surface moves with the subcutaneous fat layer (body, skin, fat).
        host: name of the structure it lies in and moves with (lesions), or ``None``: it follows
            its own population and motion parameters.
        texture: statistical texture of its density (`PowerLawTexture`, `LumpyTexture`,
            `ClusteredLumpyTexture`), or ``None``: uniform. Applied by `texture_modulation`
            (density) and `relaxation_modulation` (MR T1/T2), both by `apply_texture`.
    """

    name: str = dataclasses.field(metadata={"static": True})
    material: str = dataclasses.field(metadata={"static": True})
    shape: Shape
    mr: MRValues | None = dataclasses.field(metadata={"static": True}, default=None)
    size_sd: float = dataclasses.field(metadata={"static": True}, default=0.0)
    fat_layer: bool = dataclasses.field(metadata={"static": True}, default=False)
    host: str | None = dataclasses.field(metadata={"static": True}, default=None)
    texture: Texture | None = dataclasses.field(metadata={"static": True}, default=None)

    @classmethod
    def create(
        cls,
        name: str,
        material: str,
        shape: Shape,
        *,
        mr: MRValues | None = None,
        size_sd: float = 0.0,
        fat_layer: bool = False,
        host: str | None = None,
        texture: Texture | None = None,
    ) -> PhantomStructure:
        """A validated structure record.

        Raises:
            ValueError: a malformed or reserved name, ``size_sd`` outside [0, 0.3].
            UnknownNameError: an unknown material (the message lists the catalog).
            TypeError: ``shape`` is not a shape, ``mr`` not `MRValues`, ``fat_layer`` not a bool,
                ``host`` not a name, ``texture`` not a texture spec.

        Example:
            >>> s = PhantomStructure.create("organ", "liver", shape, size_sd=0.05)  # doctest: +SKIP
        """
        return _record(
            "medphys.phantoms.PhantomStructure.create",
            name,
            material,
            shape,
            mr=mr,
            size_sd=size_sd,
            fat_layer=fat_layer,
            host=host,
            texture=texture,
        )


def _record(
    where: str,
    name: str,
    material: str,
    shape: Shape,
    *,
    mr: MRValues | None = None,
    size_sd: float = 0.0,
    fat_layer: bool = False,
    host: str | None = None,
    texture: Texture | None = None,
) -> PhantomStructure:
    """`PhantomStructure.create` for a public call named ``where``."""
    check_name(where, "name", name)
    check_material(material)
    if not all(hasattr(shape, a) for a in ("level", "scaled", "center_mm")):
        raise TypeError(
            f"{where}: `shape` of structure {name!r} must be a medphys.phantoms shape "
            f"(Ellipsoid, Box, ..., MeshShape) (got {type(shape).__name__})"
        )
    if mr is not None and not isinstance(mr, MRValues):
        raise TypeError(
            f"{where}: `mr` of structure {name!r} must be MRValues or None "
            f"(got {type(mr).__name__}); build it with medphys.volume.MRValues.create"
        )
    sd = number(where, "size_sd", size_sd)
    if not 0.0 <= sd <= MAX_SIZE_SD:
        raise FieldError(where, "size_sd", f"`size_sd` must be in [0, {MAX_SIZE_SD}] (got {sd})")
    if not isinstance(fat_layer, bool):
        raise TypeError(f"{where}: `fat_layer` must be True or False (got {fat_layer!r})")
    if host is not None:
        check_name(where, "host", host)
        if host == name:
            raise ValueError(f"{where}: structure {name!r} cannot be its own `host`")
    if texture is not None and not isinstance(texture, _TEXTURES):
        raise TypeError(
            f"{where}: `texture` of structure {name!r} must be a PowerLawTexture, a LumpyTexture, "
            f"a ClusteredLumpyTexture or None (got {type(texture).__name__}); build it with "
            "PowerLawTexture.create"
        )
    return PhantomStructure(name, material, shape, mr, sd, fat_layer, host, texture)


def check_name(where: str, field: str, name: Any) -> str:
    """A lower_snake_case structure name other than the reserved ``background``."""
    if not isinstance(name, str) or not _NAME.match(name) or name == "background":
        raise ValueError(
            f"{where}: `{field}` must be a lower_snake_case name (letters, digits, underscores; "
            f"not 'background') (got {name!r})"
        )
    return name


def check_material(name: Any) -> str:
    """A `medphys.materials` name (catalog name or parseable mixture)."""
    if not isinstance(name, str):
        raise TypeError(f"a material must be a medphys.materials name (got {name!r})")
    try:
        materials.get(name)
    except UnknownNameError:
        raise unknown_name("material", name, materials.names()) from None
    return name


def check_structures(where: str, structures: Sequence[Any]) -> tuple[PhantomStructure, ...]:
    """Records of one phantom: at least one, unique names, each host painted before its guest."""
    out = tuple(structures)
    if not out:
        raise ValueError(f"{where}: a phantom needs at least one structure (got none)")
    seen: set[str] = set()
    for i, s in enumerate(out):
        if not isinstance(s, PhantomStructure):
            raise TypeError(
                f"{where}: `structures[{i}]` must be a PhantomStructure "
                f"(got {type(s).__name__}); build it with PhantomStructure.create"
            )
        if s.name in seen:
            raise ValueError(f"{where}: structure name {s.name!r} is used twice")
        if s.host is not None and s.host not in seen:
            raise ValueError(
                f"{where}: structure {s.name!r} names host {s.host!r}, which is not among the "
                f"structures painted before it ({sorted(seen)})"
            )
        seen.add(s.name)
    return out


def anchors(structures: Sequence[PhantomStructure]) -> tuple[int, ...]:
    """Per structure, the index of the structure whose transforms it follows.

    A structure without a host follows itself; one with a host follows its host's anchor (a
    lesion inside a lesion inside the liver follows the liver).
    """
    index = {s.name: i for i, s in enumerate(structures)}
    out: list[int] = []
    for i, s in enumerate(structures):
        if s.host is None:
            out.append(i)
        elif index.get(s.host, i) < i:
            out.append(out[index[s.host]])
        else:
            raise ValueError(
                f"structure {s.name!r} names host {s.host!r}, which is not painted before it "
                "(build phantoms with Phantom.create, which checks this)"
            )
    return tuple(out)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Population:
    """How individuals of a phantom family vary (documented per family in its TOML).

    Family-wide values only; what varies per structure (``size_sd``, ``fat_layer``) is in each
    `PhantomStructure`.
    """

    body_scale_sd: tuple[float, float, float] = dataclasses.field(metadata={"static": True})
    truncate_sd: float = dataclasses.field(metadata={"static": True})
    source: str = dataclasses.field(metadata={"static": True}, default="")
    #: (mean, sd) of height in cm and of BMI in kg/m^2; ``None``: the family has no such covariate
    height_cm: tuple[float, float] | None = dataclasses.field(
        metadata={"static": True}, default=None
    )
    bmi: tuple[float, float] | None = dataclasses.field(metadata={"static": True}, default=None)
    #: published 5th / 50th / 95th BMI percentiles the BMI draws follow (``None``: ``bmi``'s moments)
    bmi_percentiles: tuple[float, float, float] | None = dataclasses.field(
        metadata={"static": True}, default=None
    )
    fat_mm: float = dataclasses.field(metadata={"static": True}, default=15.0)
    fat_mm_per_bmi: float = dataclasses.field(metadata={"static": True}, default=0.0)
    trunk_semi_axes_mm: tuple[float, float] = dataclasses.field(
        metadata={"static": True}, default=(170.0, 110.0)
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Phantom:
    """A digital phantom: structures painted in order over a background material.

    Build with `load` (the catalog), `Phantom.create` (validated), or derive one with
    `insert_lesion`, `add_mesh_structure`, `apply` / `sample`, `at` and `enhance`.

    Attributes:
        name: the family name (``"torso-basic"``).
        structures: one `PhantomStructure` per structure, painting order (shapes are the leaves).
        background_material: material outside every structure.
        population: how individuals vary (used by `medphys.phantoms.sample`).
        description: one line for humans.
        warp: deformation of the reference anatomy at this instant (``None``: at rest).
        motion: the default motion model of `at` (``None``: `MotionModel.create()`).
        unwarped: names of the structures defined at this instant's coordinates, which the warp
            does not move (a lesion inserted into a deformed phantom with
            ``insert_lesion(..., follow_warp=False)``, as VICTRE inserts its lesions into the
            compressed breast).

    Derived, read-only: ``structure_names``, ``materials``, ``shapes`` and ``mr`` (one entry per
    structure, in painting order).
    """

    name: str = dataclasses.field(metadata={"static": True})
    structures: tuple[PhantomStructure, ...]
    background_material: str = dataclasses.field(metadata={"static": True}, default="air")
    population: Population | None = None
    description: str = dataclasses.field(metadata={"static": True}, default="")
    #: optional deformation (a PyTree with ``backward(points) -> points``, mapping world points at
    #: this instant to the reference anatomy); set by `Phantom.at`, applied by `voxelize`.
    warp: Any = None
    #: the default `MotionModel` of `at` (from the definition's ``[motion]`` table), or ``None``
    #: (`MotionModel.create`'s defaults)
    motion: Any = dataclasses.field(metadata={"static": True}, default=None)
    #: structures kept at this instant's coordinates (the warp does not apply to them)
    unwarped: tuple[str, ...] = dataclasses.field(metadata={"static": True}, default=())

    @classmethod
    def create(
        cls,
        name: str,
        structures: Sequence[PhantomStructure] | None = None,
        *,
        structure_names: Sequence[str] | None = None,
        materials: Sequence[str] | None = None,
        shapes: Sequence[Shape] | None = None,
        mr: Sequence[MRValues | None] | None = None,
        background_material: str = "air",
        population: Population | None = None,
        description: str = "",
        motion: Any = None,
    ) -> Phantom:
        """A validated phantom, from records or from parallel per-structure sequences.

        Args:
            name: the phantom's name.
            structures: `PhantomStructure` records in painting order; or instead:
            structure_names, materials, shapes: one entry per structure (a simple phantom whose
                structures neither vary nor have hosts), with optional ``mr`` (one entry each).
            background_material: material outside every structure.
            population: how individuals vary (``None``: `sample` gives the phantom itself).
            description: one line for humans.
            motion: the default `MotionModel` of `at`.

        Raises:
            ValueError: both or neither forms, sequences of different lengths, no structure, a
                name used twice, a host that is not painted before its guest.
            UnknownNameError: an unknown material.
            TypeError: an entry of the wrong type.

        Example:
            >>> ph = Phantom.create("two", structure_names=("body", "organ"),
            ...                     materials=("water", "liver"), shapes=(body, organ))  # doctest: +SKIP
        """
        where = "medphys.phantoms.Phantom.create"
        if not isinstance(name, str) or not name:
            raise TypeError(f"{where}: `name` must be a non-empty string (got {name!r})")
        parallel = {"structure_names": structure_names, "materials": materials, "shapes": shapes}
        if structures is not None:
            given = [k for k, v in {**parallel, "mr": mr}.items() if v is not None]
            if given:
                raise ValueError(
                    f"{where}: give `structures` or the per-structure sequences, not both "
                    f"(got `structures` and `{given[0]}`)"
                )
        else:
            missing = [k for k, v in parallel.items() if v is None]
            if missing:
                raise ValueError(
                    f"{where}: give `structures` (PhantomStructure records) or all of "
                    f"`structure_names`, `materials` and `shapes` (missing `{missing[0]}`)"
                )
            names_t = tuple(structure_names)
            columns = {"materials": tuple(materials), "shapes": tuple(shapes)}
            if mr is not None:
                columns["mr"] = tuple(mr)
            for key, values in columns.items():
                if len(values) != len(names_t):
                    raise ValueError(
                        f"{where}: `{key}` has {len(values)} entries for {len(names_t)} "
                        "`structure_names` (give one per structure)"
                    )
            mrs = columns.get("mr", (None,) * len(names_t))
            structures = tuple(
                _record(where, n, m, sh, mr=v)
                for n, m, sh, v in zip(
                    names_t, columns["materials"], columns["shapes"], mrs, strict=True
                )
            )
        records = check_structures(where, structures)
        check_material(background_material)
        if population is not None and not isinstance(population, Population):
            raise TypeError(
                f"{where}: `population` must be a Population or None "
                f"(got {type(population).__name__})"
            )
        return cls(
            name=name,
            structures=records,
            background_material=background_material,
            population=population,
            description=str(description),
            motion=motion,
        )

    @property
    def structure_names(self) -> tuple[str, ...]:
        """One name per structure, painting order."""
        return tuple(s.name for s in self.structures)

    @property
    def materials(self) -> tuple[str, ...]:
        """The material of each structure (names in `medphys.materials`)."""
        return tuple(s.material for s in self.structures)

    @property
    def shapes(self) -> tuple[Shape, ...]:
        """The shape of each structure."""
        return tuple(s.shape for s in self.structures)

    @property
    def mr(self) -> tuple[MRValues | None, ...]:
        """Per structure: MR values overriding the material's, or ``None`` (use the material's)."""
        return tuple(s.mr for s in self.structures)

    def structure(self, name: str) -> PhantomStructure:
        """The record of structure ``name``.

        Raises:
            UnknownNameError: no such structure (the message lists the phantom's).
        """
        for s in self.structures:
            if s.name == name:
                return s
        raise unknown_name("structure", name, self.structure_names)

    def shape_of(self, name: str) -> Shape:
        """The shape of structure ``name``."""
        return self.structure(name).shape

    def unwarped_labels(self) -> frozenset[int]:
        """Labels (1-based, painting order) of the structures the warp does not apply to.

        Raises:
            ValueError: a name in ``unwarped`` that is not one of the structures.
        """
        names = self.structure_names
        missing = [n for n in self.unwarped if n not in names]
        if missing:
            raise ValueError(
                f"medphys.phantoms.Phantom: `unwarped` names {missing}, which are not structures "
                f"of {self.name!r} (structures: {list(names)})"
            )
        return frozenset(names.index(n) + 1 for n in self.unwarped)

    def with_shapes(self, shapes: Sequence[Shape]) -> Phantom:
        """The same phantom with new shapes (one per structure, painting order)."""
        shapes = tuple(shapes)
        if len(shapes) != len(self.structures):
            raise ValueError(
                f"medphys.phantoms.Phantom.with_shapes: got {len(shapes)} shapes for "
                f"{len(self.structures)} structures"
            )
        return dataclasses.replace(
            self,
            structures=tuple(
                dataclasses.replace(s, shape=sh)
                for s, sh in zip(self.structures, shapes, strict=True)
            ),
        )

    def with_structure(self, structure: PhantomStructure) -> Phantom:
        """The phantom with one more structure, painted last (its name must be new)."""
        where = "medphys.phantoms.Phantom.with_structure"
        records = check_structures(where, (*self.structures, structure))
        return dataclasses.replace(self, structures=records)

    def with_texture(self, name: str, texture: Texture | None) -> Phantom:
        """The same phantom with structure ``name``'s texture replaced (``None``: uniform).

        Raises:
            UnknownNameError: no such structure.
            TypeError: ``texture`` is not a texture spec.

        Example:
            >>> ph = load("water-cylinder").with_texture(
            ...     "water", PowerLawTexture.create(beta=3.0, amplitude=0.02))  # doctest: +SKIP
        """
        where = "medphys.phantoms.Phantom.with_texture"
        old = self.structure(name)
        if texture is not None and not isinstance(texture, _TEXTURES):
            raise TypeError(
                f"{where}: `texture` must be a PowerLawTexture, a LumpyTexture, a "
                f"ClusteredLumpyTexture or None (got {type(texture).__name__})"
            )
        new = dataclasses.replace(old, texture=texture)
        return dataclasses.replace(
            self, structures=tuple(new if s is old else s for s in self.structures)
        )

    def at(self, **kwargs: Any) -> Phantom:
        """The phantom at one instant of its motion (see `medphys.phantoms.at`)."""
        from ._motion import at

        return at(self, **kwargs)

    def voxelize(self, **kwargs: Any):
        """Shorthand for ``medphys.phantoms.voxelize(self, **kwargs)``."""
        from ._voxelize import voxelize

        return voxelize(self, **kwargs)
