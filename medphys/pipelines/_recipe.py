"""Case recipes: what one virtual patient is and how it is imaged, as a typed value.

A `CaseRecipe` holds everything `run_case` needs, already loaded and validated: the phantom
families (cases take them in turn), whether each case is a population draw, the voxel grid and the
imaging *arms*. An `Arm` is one named acquisition (a CT protocol and its reconstruction, or an MR
protocol); its outputs are named after it (``"ct"``, ``"ct_low"`` ...). Each arm draws its noise
from the named stream ``"arm/<name>"``, or from the stream of the arm it names in
``noise_stream`` (common random numbers: two arms see the same noise realisation).

Recipes are plain frozen values: they pickle, so an engine can ship one to its workers once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..phantoms import Phantom
from ..simulators import Modality
from ._lesion import LesionSpec
from ._mammo import BreastFamily
from ._window import SINGLE_VIEW, SWEEP, Detector, stationary_axes

_ARM_NAME = re.compile(r"^[a-z][a-z0-9]*$")

#: arms that image the region around a lesion on a stationary detector (`_window`)
PROJECTION = (*SINGLE_VIEW, *SWEEP)


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """The voxel grid a case is voxelized on.

    For a `BreastFamily` recipe only ``spacing_mm`` and ``supersample`` are used: each case's
    grid is the box its arms' rays cross around the lesion. For radiograph and tomosynthesis arms
    the grid is the region the patient's imaged part lies in (the lesion is placed inside it, on
    a survey voxelisation at ``survey_mm``; the detectors stand against its face); each case is
    voxelised at ``min(spacing_mm)`` on the box the arms' rays cross inside it (`layout`).

    Attributes:
        shape: voxels along x (right), y (anterior), z (superior).
        spacing_mm: voxel size (mm) per axis.
        center_mm: world position of the grid centre (RAS+ mm).
        supersample: points per voxel per axis, for partial volume.
        survey_mm: radiograph and tomosynthesis arms: the survey voxel size.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    supersample: int = 2
    survey_mm: float = 4.0

    @property
    def region(self) -> tuple[np.ndarray, np.ndarray]:
        """The grid's world box ``(lo, hi)`` (voxel faces)."""
        c = np.asarray(self.center_mm, np.float64)
        half = 0.5 * np.asarray(self.shape, np.float64) * np.abs(np.asarray(self.spacing_mm))
        return c - half, c + half

    def survey(self) -> dict[str, Any]:
        """``voxelize`` arguments of the region at ``survey_mm``."""
        lo, hi = self.region
        shape = tuple(
            max(1, math.ceil(round((b - a) / self.survey_mm, 3)))
            for a, b in zip(lo, hi, strict=True)
        )
        return {"shape": shape, "spacing_mm": self.survey_mm, "center_mm": tuple(self.center_mm)}


@dataclasses.dataclass(frozen=True)
class Arm:
    """One imaging arm of a case: a protocol, applied to the case's voxelized phantom.

    Attributes:
        name: the arm's name: lower-case letters and digits (``"ct"``, ``"ctlow"``, ``"mr"``);
            outputs are named after it (``name`` for the image, ``name + "raw"`` for projections
            or k-space).
        protocol: a loaded protocol (`medphys.simulators.xray.CTProtocol` with modality ``"ct"``,
            or `medphys.simulators.mr.MRProtocol`).
        noise_stream: the name of the arm whose noise stream this arm shares (common random
            numbers), or ``None`` for its own stream ``"arm/<name>"``.
        keep_raw: keep the raw data (CT projections, MR k-space) in the case result.
        field_px: projection arms (radiograph, tomosynthesis, DM, DBT): the image's size (pixels
            per side) around the lesion.
        pixel_mm: projection arms: the image's pixel (one view: the detector read at this pitch;
            a sweep: the reconstructed plane's pixel); default the protocol's detector pitch.
    """

    name: str
    protocol: Any
    noise_stream: str | None = None
    keep_raw: bool = False
    field_px: int = 64
    pixel_mm: float | None = None

    @property
    def stream_name(self) -> str:
        """The named random stream this arm's acquisition noise is drawn from."""
        return f"arm/{self.noise_stream or self.name}"

    @functools.cached_property
    def modality(self) -> Modality:
        """`Modality.CT`, `MR`, `DM` / `DBT` (mammography, breast tomosynthesis) or `RADIOGRAPH`
        / `TOMOSYNTHESIS` (a stationary detector facing another axis: chest), from the protocol
        (members equal their names: ``arm.modality == Modality.CT``). Computed once per arm:
        telling a stationary detector needs the protocol's poses."""
        return _modality(self.protocol)

    @functools.cached_property
    def detector(self) -> Any:
        """Projection arms: the protocol's stationary detector and sources as host arrays
        (`medphys.pipelines._window.Detector`), read once."""
        return Detector.of(self.protocol.geometry)

    @property
    def image_pixel_mm(self) -> float:
        """Projection arms: the image's pixel (``pixel_mm`` or the detector pitch)."""
        return float(self.pixel_mm or self.protocol.geometry.du_mm)


def _modality(protocol: Any) -> Modality:
    from ..simulators.mr import MRProtocol
    from ..simulators.xray import CTProtocol

    if isinstance(protocol, MRProtocol):
        return Modality.MR
    if isinstance(protocol, CTProtocol) and protocol.modality == Modality.CT:
        return Modality.CT
    if isinstance(protocol, CTProtocol) and protocol.modality == Modality.RADIOGRAPH:
        axes = stationary_axes(protocol.geometry)
        if axes is not None:
            one_view = protocol.geometry.n_views == 1
            if np.allclose(axes[0], [1.0, 0.0, 0.0]) and np.allclose(axes[1], [0.0, 1.0, 0.0]):
                return Modality.DM if one_view else Modality.DBT
            return Modality.RADIOGRAPH if one_view else Modality.TOMOSYNTHESIS
    kind = getattr(protocol, "modality", type(protocol).__name__)
    raise ValueError(
        f"medphys.pipelines.Arm: `protocol` must be a CT protocol (modality 'ct'), an MR "
        f"protocol, or a radiograph on a stationary detector facing a world axis (one view or a "
        f"tomosynthesis sweep: chest PA, mammography, DBT) (got {kind!r} "
        f"{getattr(protocol, 'name', '')!r})"
    )


@dataclasses.dataclass(frozen=True)
class CaseRecipe:
    """How to make and image one virtual patient.

    Attributes:
        families: phantom families (or one `BreastFamily`: a compressed-breast population for
            DM and DBT arms); case ``i`` uses ``families[i % len(families)]``.
        vary: draw each case from its family's population model (``False``: the reference
            individual).
        grid: the voxel grid.
        arms: the imaging arms, in order; names are unique.
        lesion: the lesion of a lesion study (inserted in signal-present cases), or ``None``.
    """

    families: tuple[Phantom | BreastFamily, ...]
    grid: GridSpec
    arms: tuple[Arm, ...]
    vary: bool = True
    lesion: LesionSpec | None = None

    @classmethod
    def create(
        cls,
        families: Phantom | BreastFamily | Sequence[Phantom | BreastFamily],
        *,
        grid: GridSpec,
        arms: Sequence[Arm],
        vary: bool = True,
        lesion: LesionSpec | None = None,
    ) -> CaseRecipe:
        """Validated constructor.

        Raises:
            ValueError: no family, no arm, a bad or repeated arm name, an arm sharing the noise of
                an arm that does not exist or has another modality, an unsupported protocol, or a
                lesion whose organ is missing from a family.
        """
        where = "medphys.pipelines.CaseRecipe.create"
        fams = (families,) if isinstance(families, (Phantom, BreastFamily)) else tuple(families)
        if not fams or not all(isinstance(f, (Phantom, BreastFamily)) for f in fams):
            raise ValueError(
                f"{where}: `families` must be one or more Phantoms, or one BreastFamily (got "
                f"{families!r})"
            )
        breast = any(isinstance(f, BreastFamily) for f in fams)
        if breast and len(fams) != 1:
            raise ValueError(f"{where}: a BreastFamily must be the recipe's only family")
        arms = tuple(arms)
        if not arms:
            raise ValueError(f"{where}: `arms` must name at least one imaging arm (got none)")
        names = [a.name for a in arms]
        for arm in arms:
            if not isinstance(arm.name, str) or not _ARM_NAME.match(arm.name):
                raise ValueError(
                    f"{where}: arm name {arm.name!r} must be lower-case letters and digits, "
                    "starting with a letter (it names files and manifest keys)"
                )
            modality = arm.modality  # validates the protocol
            if (modality in (Modality.DM, Modality.DBT)) != breast:
                raise ValueError(
                    f"{where}: arm {arm.name!r} is {modality.upper()}: "
                    + (
                        "a BreastFamily is imaged by DM and DBT arms only"
                        if breast
                        else "DM and DBT arms image a BreastFamily (compressed breasts)"
                    )
                )
            if (modality in PROJECTION) != (arms[0].modality in PROJECTION):
                raise ValueError(
                    f"{where}: arm {arm.name!r} ({modality}) and arm {arms[0].name!r} "
                    f"({arms[0].modality}): a recipe images by CT and MR arms (the whole grid) or "
                    "by radiograph and tomosynthesis arms (around the lesion), not both"
                )
            if modality in PROJECTION:
                if (
                    isinstance(arm.field_px, bool)
                    or not isinstance(arm.field_px, int)
                    or not (8 <= arm.field_px <= 1024)
                ):
                    raise ValueError(
                        f"{where}: arm {arm.name!r}: `field_px` must be an integer in [8, 1024] "
                        f"(got {arm.field_px!r})"
                    )
                if arm.pixel_mm is not None and not (
                    np.isfinite(arm.pixel_mm) and arm.pixel_mm > 0
                ):
                    raise ValueError(
                        f"{where}: arm {arm.name!r}: `pixel_mm` must be positive (got "
                        f"{arm.pixel_mm!r})"
                    )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{where}: arm names must be unique (repeated: {duplicates})")
        by_name = {a.name: a for a in arms}
        for arm in arms:
            if arm.noise_stream is None:
                continue
            other = by_name.get(arm.noise_stream)
            if other is None:
                raise ValueError(
                    f"{where}: arm {arm.name!r}: `noise_stream` {arm.noise_stream!r} is not an "
                    f"arm of this recipe (arms: {names})"
                )
            if other.modality != arm.modality:
                raise ValueError(
                    f"{where}: arm {arm.name!r} ({arm.modality}) cannot share the noise of arm "
                    f"{other.name!r} ({other.modality}): common random numbers need one modality"
                )
        shape = tuple(int(n) for n in grid.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"{where}: `grid.shape` must be 3 positive sizes (got {grid.shape})")
        survey = grid.survey_mm
        if isinstance(survey, bool) or not (np.isfinite(survey) and survey > 0):
            raise ValueError(f"{where}: `grid.survey_mm` must be positive mm (got {survey!r})")
        if lesion is not None:
            if not isinstance(lesion, LesionSpec):
                raise ValueError(f"{where}: `lesion` must be a LesionSpec (got {lesion!r})")
            need = lesion.reach_mm + lesion.margin_mm
            # a breast case's grid is fitted around its lesion: nothing to check here
            for axis, (n, mm) in enumerate(zip(grid.shape, grid.spacing_mm, strict=True)):
                deepest = ((int(n) + 1) // 2) * abs(float(mm))
                if not breast and deepest < need:
                    raise ValueError(
                        f"{where}: the grid is too thin along axis {'xyz'[axis]} for the lesion: "
                        f"its deepest voxel lies {deepest:g} mm from the edge and the lesion needs "
                        f"{need:g} mm (radius_mm + margin_mm); add voxels along {'xyz'[axis]}"
                    )
            lacking = [
                f.name
                for f in fams
                if not set((lesion.organ, *lesion.region, *lesion.centres))
                <= set(f.structure_names)
            ]
            if lacking:
                named = sorted({lesion.organ, *lesion.region, *lesion.centres})
                raise ValueError(
                    f"{where}: the lesion's structures {named} are not all structures of {lacking}"
                )
        elif arms[0].modality in PROJECTION:
            raise ValueError(
                f"{where}: radiograph, tomosynthesis, DM and DBT arms image the region around a "
                "lesion: the recipe needs a `lesion`"
            )
        return cls(families=fams, grid=grid, arms=arms, vary=bool(vary), lesion=lesion)

    def family(self, index: int) -> Phantom | BreastFamily:
        """The phantom family of case ``index`` (the families take turns)."""
        return self.families[index % len(self.families)]

    def arm(self, name: str) -> Arm:
        """The arm called ``name``."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"no arm {name!r} (arms: {[a.name for a in self.arms]})")


# Each process keeps the recipe of the job it is running (engines ship the job's plain data once;
# a worker builds the recipe on its first case and reuses it).
_RECIPE_MEMO: dict[str, CaseRecipe] = {}


def recipe_of(job: Any) -> CaseRecipe:
    """``job.recipe()``, built once per process per ``job.digest``."""
    recipe = _RECIPE_MEMO.get(job.digest)
    if recipe is None:
        _RECIPE_MEMO.clear()
        recipe = _RECIPE_MEMO[job.digest] = job.recipe()
    return recipe


def remember_recipe(job: Any, recipe: CaseRecipe) -> None:
    """Let an in-process engine reuse a recipe the driver already built."""
    _RECIPE_MEMO.clear()
    _RECIPE_MEMO[job.digest] = recipe
