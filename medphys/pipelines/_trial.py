"""In-silico lesion-detection trials: paired cases → regions of interest → observer → AUC, ΔAUC.

A trial (one TOML file, `TrialConfig`) makes ``pairs`` virtual patients; each is imaged twice by
every arm, once with the lesion (signal present) and once without (signal absent), with the same
key: the same patient, lesion location and noise, only the lesion differs. Around the lesion's
known location each arm's image gives a region of interest (ROI). A model observer (`medphys.
observers`) is trained on the first ``split`` of the pairs and tested on the rest (or on all of
them, ``resubstitution = true``); each arm gets an AUC with its DeLong interval and d′, and each
pair of arms named in ``compare`` a paired ΔAUC (same test cases, DeLong covariance). With
``[observer] readers = R`` (R ≥ 2), R observer readers, each trained on its own random
``reader_fraction`` of the training pairs (and with its own internal noise), score the same test
pairs in every arm, and ΔAUC is the reader-averaged difference by Obuchowski–Rockette–Hillis
with random readers.

Output folder (`run_trial`)::

    DIR/trial.json        resolved config, every input's digest, definitions, versions
    DIR/rois/             one .npz per case (ROIs by arm, lesion record): the resume state
    DIR/results.json      per arm AUC, CI, d′; per comparison ΔAUC, SE, CI, p; the test design
    DIR/results.csv       the same, one row per arm and per comparison
    DIR/roc.png           empirical ROC curves of the test scores
    DIR/rois.png          example signal-present and signal-absent ROIs of each arm
    DIR/report.html       a summary page with the tables and pictures

A killed trial resumes from its ``rois/`` files and ends with the same numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pydantic

from .._config import Strict, read_toml, validate
from .._errors import ConfigError
from ..io import remove_partial_files, write_bytes_atomic, write_text_atomic
from ..simulators import Modality
from ._dataset import OutputError, write_failure
from ._engine import AbstractEngine, LocalEngine
from ._lesion import LesionSpec, extract_roi, material_for_contrast
from ._mammo import BreastFamily, prepare_breast_family
from ._provenance import (
    Definition,
    changed_inputs,
    definition,
    digest_of,
    job_digest,
    job_inputs,
    load_families,
    versions,
)
from ._recipe import PROJECTION, Arm, CaseRecipe, GridSpec, recipe_of, remember_recipe
from ._streams import case_key, stream

PositiveMM = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)]


class _Phantom(Strict):
    name: Annotated[
        list[str],
        pydantic.BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
        pydantic.Field(min_length=1),
    ]
    vary: bool = True
    shape: tuple[
        Annotated[int, pydantic.Field(ge=1)],
        Annotated[int, pydantic.Field(ge=1)],
        Annotated[int, pydantic.Field(ge=1)],
    ]
    spacing_mm: tuple[PositiveMM, PositiveMM, PositiveMM]
    center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    supersample: Annotated[int, pydantic.Field(ge=1, le=8)] = 1
    #: radiograph and tomosynthesis arms: the voxel size (mm) of the survey voxelisation the
    #: lesion is placed on (default 4 mm); the grid is the region the patient lies in
    survey_mm: PositiveMM | None = None


class _Compression(Strict):
    """The elasticity network that compresses each density class once (`compress_breast`)."""

    spacing_mm: PositiveMM = 4.0
    steps: Annotated[int, pydantic.Field(ge=10, le=100_000)] = 2000
    width: Annotated[int, pydantic.Field(ge=4, le=512)] = 32
    depth: Annotated[int, pydantic.Field(ge=1, le=16)] = 3
    tolerance: Annotated[float, pydantic.Field(gt=0.0, lt=1.0)] = 1e-3
    #: node spacing of the sampled deformation shared by a class's breasts
    warp_mm: PositiveMM = 1.0


class _Breast(Strict):
    """A compressed-breast population imaged by DM and DBT arms (`BreastFamily`)."""

    densities: Annotated[list[Literal["a", "b", "c", "d"]], pydantic.Field(min_length=1)]
    #: voxel size (mm) of each case's box around its lesion
    spacing_mm: PositiveMM = 0.2
    supersample: Annotated[int, pydantic.Field(ge=1, le=8)] = 1
    #: voxel size (mm) of the survey voxelisation the lesion is placed on
    survey_mm: PositiveMM = 1.0
    compression: _Compression = _Compression()


class _Lesion(Strict):
    organ: str
    radius_mm: PositiveMM
    #: a `medphys.materials` name: a tissue, or a contrast mixture such as "liver+iodine_1mg_ml"
    material: str | None = None
    #: or the contrast to the host organ in HU at the first CT arm's energy (brighter: iodine in
    #: the host; darker: the host at a lower density)
    contrast_hu: float | None = None
    margin_mm: Annotated[float, pydantic.Field(ge=0.0)] = 3.0
    #: a spiculated mass: the number of spikes (0: a sphere) and their length beyond the core
    spicules: Annotated[int, pydantic.Field(ge=0, le=64)] = 0
    spike_mm: Annotated[float, pydantic.Field(ge=0.0, allow_inf_nan=False)] = 0.0
    #: a microcalcification cluster: this many calcifications (0: a solid lesion) of
    #: `calcification_mm` in the ball of `radius_mm`
    calcifications: Annotated[int, pydantic.Field(ge=0, le=64)] = 0
    calcification_mm: PositiveMM = 0.3
    #: the structures whose union the lesion must lie inside (default: the organ)
    inside: list[str] = pydantic.Field(default_factory=list)
    #: the structures its centre is drawn among (default: `inside`)
    centre_in: list[str] = pydantic.Field(default_factory=list)
    #: a deformed phantom (a compressed breast): true draws the lesion in the undeformed anatomy
    #: and compresses it with the tissue; false inserts it into the compressed breast with its
    #: own shape (as VICTRE does)
    follow_warp: bool = True

    @pydantic.model_validator(mode="after")
    def _one_contrast(self) -> _Lesion:
        if (self.material is None) == (self.contrast_hu is None):
            raise ValueError("give the lesion's `material` or its `contrast_hu`, exactly one")
        return self


class _Arm(Strict):
    name: Annotated[str, pydantic.Field(pattern=r"^[a-z][a-z0-9]*$")]
    protocol: str
    #: the arm whose noise realisation this arm shares (common random numbers)
    noise_stream: str | None = None
    #: projection arms (radiograph, tomosynthesis, DM, DBT): the image's pixel (mm); default
    #: the protocol's detector pitch
    pixel_mm: PositiveMM | None = None


class _Observer(Strict):
    kind: Literal["npw", "npwe", "hotelling", "cho"] = "cho"
    channels: Literal["laguerre-gauss", "gabor"] = "laguerre-gauss"
    n_channels: Annotated[int, pydantic.Field(ge=1, le=64)] = 5
    width_px: PositiveMM = 6.0
    roi_px: Annotated[int, pydantic.Field(ge=4, le=256)] = 24
    plane: Literal["axial", "coronal", "sagittal"] = "axial"
    #: the training fraction of each class (the rest tests); or resubstitution = true
    split: Annotated[float, pydantic.Field(gt=0.0, lt=1.0)] | None = 0.5
    resubstitution: bool = False
    #: channel-domain internal noise (variance as a multiple of each channel's variance)
    internal_noise: Annotated[float, pydantic.Field(ge=0.0)] = 0.0
    #: observer "readers" for an Obuchowski-Rockette-Hillis analysis: reader r trains on its own
    #: random `reader_fraction` of the training pairs (and draws its own internal noise); all
    #: readers score the same test cases
    readers: Annotated[int, pydantic.Field(ge=1, le=64)] = 1
    reader_fraction: Annotated[float, pydantic.Field(gt=0.0, le=1.0)] = 0.8

    @pydantic.model_validator(mode="after")
    def _readers_need_a_split(self) -> _Observer:
        if self.readers > 1 and self.resubstitution:
            raise ValueError(
                f"readers = {self.readers} needs `split` (each reader trains on its own subset "
                "of the training cases and all score the held-out ones), not resubstitution"
            )
        return self


class _Analysis(Strict):
    compare: list[tuple[str, str]] = pydantic.Field(default_factory=list)
    level: Annotated[float, pydantic.Field(gt=0.5, lt=1.0)] = 0.95


class TrialConfig(Strict):
    """A lesion-detection trial: population, lesion, imaging arms, observer, analysis."""

    name: str
    description: str = ""
    pairs: Annotated[int, pydantic.Field(ge=2, le=1_000_000)]
    seed: Annotated[int, pydantic.Field(ge=0, lt=2**32)] = 0
    phantom: _Phantom | None = None
    breast: _Breast | None = None
    lesion: _Lesion
    arms: Annotated[list[_Arm], pydantic.Field(min_length=1)]
    observer: _Observer = _Observer()
    analysis: _Analysis = _Analysis()

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> TrialConfig:
        if (self.phantom is None) == (self.breast is None):
            raise ValueError(
                "give a [phantom] table (phantom families) or a [breast] table (a compressed-"
                "breast population for DM and DBT arms), exactly one"
            )
        names = [a.name for a in self.arms]
        for a, b in self.analysis.compare:
            for arm in (a, b):
                if arm not in names:
                    raise ValueError(
                        f"analysis.compare: {arm!r} is not an arm of this trial (arms: {names}); "
                        "a paired analysis needs two arms imaging the same cases"
                    )
            if a == b:
                raise ValueError(f"analysis.compare: compares arm {a!r} with itself")
        return self

    def digest(self) -> str:
        """A short hash of everything in the config except the number of pairs (and settings
        that change nothing where they are unused: the reader settings of a one-reader observer,
        the calcification size of a solid lesion)."""
        exclude: dict[str, Any] = {"pairs": True}
        if self.observer.readers == 1:
            exclude["observer"] = {"readers": True, "reader_fraction": True}
        if self.lesion.calcifications == 0:
            exclude["lesion"] = {"calcifications": True, "calcification_mm": True}
        if self.phantom is not None and self.phantom.survey_mm is None:
            exclude["phantom"] = {"survey_mm": True}
        return digest_of(self.model_dump(mode="json", exclude=exclude))


def load_trial(path: str | Path, *, overrides: dict[str, Any] | None = None) -> TrialConfig:
    """A trial config from a catalog name (``trials/``) or a TOML path, with overrides.

    Raises:
        ConfigError / UnknownNameError: a missing or invalid file, or an invalid override; the
            message names the file, the key path, the value and what is allowed.
    """
    from .._catalog import resolve

    file = resolve("trials", path)
    data = read_toml(file)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    config = validate(TrialConfig, data, source=str(file), text=file.read_text(encoding="utf-8"))
    obs = config.observer
    if obs.resubstitution and "split" in data.get("observer", {}):
        raise ConfigError(f"{file}: observer: give `split` or `resubstitution = true`, not both")
    return config


@dataclasses.dataclass(frozen=True)
class TrialJob:
    """What a worker needs for any case of a trial (plain data; `recipe` builds the recipe)."""

    config: TrialConfig
    definitions: dict[str, Definition]
    digest: str
    #: a breast trial's prepared `BreastFamily` (the compressions; `prepare_breast_family`)
    family: Any = None

    def arms(self) -> list[Arm]:
        """The imaging arms (protocols loaded; DM and DBT images as large as the ROI)."""
        c = self.config
        return [
            Arm(
                a.name,
                self.definitions[f"protocol/{a.name}"].load(),
                noise_stream=a.noise_stream,
                field_px=c.observer.roi_px,
                pixel_mm=a.pixel_mm,
            )
            for a in c.arms
        ]

    def recipe(self) -> CaseRecipe:
        c = self.config
        arms = self.arms()
        lesion = c.lesion
        if c.breast is not None:
            if self.family is None:
                raise ValueError("medphys trial: a breast trial's family is not prepared")
            families: Any = (self.family,)
            b = c.breast
            grid = GridSpec((1, 1, 1), (b.spacing_mm,) * 3, supersample=b.supersample)
            vary = True
        else:
            families = load_families(self.definitions)
            p = c.phantom
            grid = GridSpec(
                p.shape, p.spacing_mm, p.center_mm, p.supersample, survey_mm=p.survey_mm or 4.0
            )
            vary = p.vary
        material = lesion.material or self.lesion_material(families, arms)[0]
        return CaseRecipe.create(
            families,
            grid=grid,
            arms=arms,
            vary=vary,
            lesion=LesionSpec.create(
                lesion.organ,
                radius_mm=lesion.radius_mm,
                material=material,
                margin_mm=lesion.margin_mm,
                spicules=lesion.spicules,
                spike_mm=lesion.spike_mm,
                inside=tuple(lesion.inside),
                centre_in=tuple(lesion.centre_in),
                calcifications=lesion.calcifications,
                calcification_mm=lesion.calcification_mm,
                follow_warp=lesion.follow_warp,
            ),
        )

    def lesion_material(self, families: Any, arms: Any) -> tuple[str, float]:
        """The material of a lesion given by ``contrast_hu`` at the first CT arm's energy: iodine
        in the host organ's material (brighter) or the host at a lower density (darker); and the
        contrast it reaches (HU)."""
        lesion = self.config.lesion
        ct_arms = [a for a in arms if a.modality == Modality.CT]
        if not ct_arms:
            raise ValueError(
                "medphys trial: lesion.contrast_hu is in HU and needs a CT arm; give "
                "lesion.material for MR-only trials"
            )
        hosts = {
            f.structure(lesion.organ).material
            for f in families
            if lesion.organ in f.structure_names
        }
        if len(hosts) != 1:
            raise ValueError(
                f"medphys trial: lesion.contrast_hu needs one host material; {lesion.organ!r} is "
                f"made of {sorted(hosts)} in this trial's phantoms: give lesion.material"
            )
        return material_for_contrast(hosts.pop(), lesion.contrast_hu, ct_arms[0].protocol)


def _run_item(job: TrialJob, item: tuple[int, bool]) -> dict[str, Any]:
    """A worker's task: case ``index`` with or without its lesion → ROIs by arm + lesion record."""
    from ._case import run_case

    index, present = item
    result = run_case(
        case_key(job.config.seed, index), recipe_of(job), index=index, present=present
    )
    obs = job.config.observer
    centres = result.lesion.get("voxel_by_arm", {})
    rois = {
        arm: extract_roi(
            image, centres.get(arm, result.lesion["center_voxel"]), obs.roi_px, plane=obs.plane
        )
        for arm, image in result.images.items()
    }
    return {"rois": rois, "lesion": result.lesion, "family": result.family, "params": result.params}


def _item_file(out: Path, index: int, present: bool) -> Path:
    return out / "rois" / f"case-{index:04d}-{'present' if present else 'absent'}.npz"


def _save_item(path: Path, digest: str, record: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    meta = {k: v for k, v in record.items() if k != "rois"} | {"digest": digest}
    arrays = {f"roi_{arm}": roi for arm, roi in record["rois"].items()}
    np.savez(buffer, meta=np.asarray(json.dumps(meta, sort_keys=True)), **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def _load_item(path: Path, digest: str) -> dict[str, Any] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            rois = {k[4:]: np.asarray(data[k]) for k in data.files if k.startswith("roi_")}
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("digest") != digest:
        return None
    return {**meta, "rois": rois}


def run_trial(
    out: str | Path,
    config: TrialConfig,
    *,
    overwrite: bool = False,
    engine: AbstractEngine | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run a lesion-detection trial into ``out`` (resuming a partial run of the same inputs).

    Args:
        out: the report folder (created if needed).
        config: the trial (`load_trial`).
        overwrite: start over in a folder holding a trial made from other inputs.
        engine: where cases run (default: in this process); the numbers do not depend on it.
        progress: called as ``progress(message, done, total)`` after each case.

    Returns:
        the results (as written to ``results.json``) plus ``"out"`` and ``"generated"``.

    Raises:
        OutputError: the folder holds another trial (and not ``overwrite``), or is not writable.
        ConfigError / UnknownNameError: unknown names or invalid definitions (before any case).
        ValueError: an observer that cannot be trained on this many cases (before any case).
    """
    out = Path(out)
    names = config.phantom.name if config.phantom is not None else []
    defs = {f"phantom/{n}": definition("phantom", n) for n in names}
    defs.update({f"protocol/{a.name}": definition("protocol", a.protocol) for a in config.arms})
    inputs = job_inputs(config.digest(), defs)
    job = TrialJob(config, defs, job_digest(inputs))
    _check_projection_arms(config, job.arms())  # before the compressions
    if config.breast is None:
        recipe = job.recipe()  # validates every definition before any case
        _check_design(config, recipe)
    out.mkdir(parents=True, exist_ok=True)
    record_file = out / "trial.json"
    if record_file.is_file() and not overwrite:
        previous = json.loads(record_file.read_text(encoding="utf-8"))
        if previous.get("digest") != job.digest:
            changed = changed_inputs(previous.get("inputs", {}), inputs)
            raise OutputError(
                f"medphys trial: {str(out)!r} holds a trial made from different inputs "
                f"(changed: {', '.join(changed)}); choose a new --out folder or pass --overwrite"
            )
    if record_file.is_file():
        previous = json.loads(record_file.read_text(encoding="utf-8"))
        if previous.get("digest") != job.digest:  # overwriting another trial: its compressions go
            shutil.rmtree(out / "compression", ignore_errors=True)
    remove_partial_files(out)
    (out / "rois").mkdir(exist_ok=True)
    if config.breast is not None:
        job = dataclasses.replace(job, family=_prepare_family(out, config, progress))
        recipe = job.recipe()
        _check_design(config, recipe)
    write_text_atomic(
        record_file,
        json.dumps(
            {
                "config": config.model_dump(mode="json"),
                "digest": job.digest,
                "inputs": inputs,
                "definitions": {role: d.record() for role, d in defs.items()},
                "compressions": list(job.family.summaries) if job.family is not None else [],
                "versions": versions(),
            },
            indent=2,
        )
        + "\n",
    )
    items = [(i, present) for i in range(config.pairs) for present in (True, False)]
    records: dict[tuple[int, bool], dict[str, Any]] = {}
    for item in items:
        loaded = _load_item(_item_file(out, *item), job.digest)
        if loaded is not None:
            records[item] = loaded
    pending = [item for item in items if item not in records]
    generated = len(pending)
    done = len(records)
    engine = engine or LocalEngine()
    remember_recipe(job, recipe)
    with contextlib.closing(engine.map(_run_item, job, pending)) as results:
        for item, record in results:
            try:
                _save_item(_item_file(out, *item), job.digest, record)
            except OSError as exc:
                raise write_failure(out, exc) from None
            records[item] = record
            done += 1
            if progress:
                kind = "present" if item[1] else "absent"
                progress(f"case {item[0]} ({kind})", done, len(items))
    results = analyse(config, records)
    write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(out / "results.csv", _csv(results))
    _write_pictures(out, config, records, results)
    write_text_atomic(out / "report.html", _html(config, results))
    return {**results, "out": str(out), "generated": generated}


def _check_design(config: TrialConfig, recipe: CaseRecipe) -> None:
    """Refuse, before any case, a design the observer cannot be trained and tested on, or a
    lesion that finds no place in a family's reference individual."""
    import jax

    from .. import phantoms
    from ._lesion import place_lesion

    obs = config.observer
    n_train = (
        config.pairs if obs.resubstitution else int(np.floor((obs.split or 0.5) * config.pairs))
    )
    n_test = config.pairs if obs.resubstitution else config.pairs - n_train
    if obs.readers > 1:  # each reader trains on its share of the training pairs
        n_train = _reader_pairs(obs, n_train)
    features = obs.n_channels if obs.kind == "cho" else None
    if obs.kind == "hotelling":
        features = obs.roi_px**2
    # the twins of a pair share their background: n training pairs give n - 1 independent
    # backgrounds for the pooled covariance, which must exceed the number of features
    if features is not None and n_train < features + 2:
        raise ValueError(
            f"medphys trial: observer {obs.kind!r} with {features} features needs at least "
            f"{features + 2} training pairs (present and absent twins share one background); "
            f"{config.pairs} pairs give {n_train}"
            + (" per reader" if obs.readers > 1 else "")
            + ": add pairs or use fewer channels"
        )
    if n_test < 2 or n_train < 2:
        raise ValueError(
            f"medphys trial: {config.pairs} pairs leave {n_train} training and {n_test} testing "
            "pairs; each needs >= 2"
        )
    g = recipe.grid
    for family in recipe.families:
        if isinstance(family, BreastFamily):
            for slot in range(len(family.densities)):
                with jax.enable_x64(False):
                    _, phantom = family.individual(jax.random.key(0), slot)
                    labels = phantoms.voxelize(
                        phantom, **family.survey(slot), fractions=phantoms.Fractions.NONE
                    )
                try:
                    place_lesion(jax.random.key(0), labels, recipe.lesion)
                except ValueError as exc:
                    raise ValueError(
                        f"medphys trial: breast class {family.densities[slot]!r}: {exc}"
                    ) from None
            continue
        where = (
            g.survey()  # projection arms place the lesion on the survey voxelisation
            if recipe.arms[0].modality in PROJECTION
            else {"shape": g.shape, "spacing_mm": g.spacing_mm, "center_mm": g.center_mm}
        )
        with jax.enable_x64(False):
            labels = phantoms.voxelize(family, **where, fractions=phantoms.Fractions.NONE)
        try:
            place_lesion(jax.random.key(0), labels, recipe.lesion)
        except ValueError as exc:
            raise ValueError(f"medphys trial: phantom {family.name!r}: {exc}") from None


def _check_projection_arms(config: TrialConfig, arms: list[Arm]) -> None:
    """A breast trial images by DM and DBT arms only; projection arms (radiograph,
    tomosynthesis, DM, DBT) make 2-D images, read by an observer in their plane."""
    for arm in arms:
        if config.breast is not None and arm.modality not in (Modality.DM, Modality.DBT):
            raise ValueError(
                f"medphys trial: arm {arm.name!r} ({arm.modality.upper()}): a [breast] trial is "
                "imaged by mammography and tomosynthesis protocols (geometry kind 'mammography')"
            )
    if any(a.modality in PROJECTION for a in arms) and config.observer.plane != "axial":
        raise ValueError(
            "medphys trial: radiograph and tomosynthesis images are planes parallel to the "
            "detector, read in their own plane: observer.plane must be 'axial' (got "
            f"{config.observer.plane!r})"
        )


def _prepare_family(out: Path, config: TrialConfig, progress: Any) -> BreastFamily:
    """Compress each density class once (resumable: ``out/compression/``)."""
    import jax

    b = config.breast
    assert b is not None
    c = b.compression
    if progress:
        progress(f"compressing the breasts of classes {', '.join(b.densities)}", 0, 1)
    with jax.enable_x64(False):
        return prepare_breast_family(
            stream(jax.random.key(config.seed), "compression"),
            tuple(b.densities),
            spacing_mm=c.spacing_mm,
            steps=c.steps,
            width=c.width,
            depth=c.depth,
            tolerance=c.tolerance,
            warp_mm=c.warp_mm,
            survey_mm=b.survey_mm,
            checkpoints=out / "compression",
            progress=bool(progress),
        )


def analyse(config: TrialConfig, records: dict[tuple[int, bool], dict[str, Any]]) -> dict[str, Any]:
    """Observer scores, AUC (DeLong) and d′ per arm; paired ΔAUC per comparison."""
    from .. import observers

    obs = config.observer
    roi_shape = (obs.roi_px, obs.roi_px)
    options: dict[str, Any] = {}
    if obs.kind == "cho":
        options["channels"] = observers.make_channels(
            obs.channels, roi_shape, **_channel_options(obs)
        )
    if obs.internal_noise > 0:
        options["internal_noise"] = obs.internal_noise
    if obs.readers > 1:
        arms, comparisons = _analyse_readers(config, records, options)
    else:
        arms, comparisons = _analyse_one_reader(config, records, options)
    lesion_record = records[(0, True)].get("lesion") or {}
    return {
        "trial": config.name,
        "pairs": config.pairs,
        "lesion": {
            "organ": config.lesion.organ,
            "radius_mm": config.lesion.radius_mm,
            "material": lesion_record.get("material", config.lesion.material),
            "contrast_hu": config.lesion.contrast_hu,
        },
        "observer": {
            "kind": obs.kind,
            "channels": obs.channels if obs.kind == "cho" else None,
            "n_channels": obs.n_channels if obs.kind == "cho" else None,
            "roi_px": obs.roi_px,
            "plane": obs.plane,
            "mode": "resubstitution" if obs.resubstitution else "split",
            "split": None if obs.resubstitution else obs.split,
            "internal_noise": obs.internal_noise,
            "readers": obs.readers,
            "reader_fraction": obs.reader_fraction if obs.readers > 1 else None,
        },
        "level": config.analysis.level,
        "arms": arms,
        "comparisons": comparisons,
        "metric": (
            "AUC: empirical area under the ROC curve of the observer's test scores (Mann-Whitney, "
            "ties count 1/2), interval by DeLong et al. 1988; d': (mean1 - mean0) / "
            "sqrt((var1 + var0) / 2) of the test scores"
            + (
                "; several readers: an arm's AUC and d' are the readers' means, the AUC's "
                "interval with random readers and cases (Obuchowski-Rockette single test, Hillis "
                "df); dAUC between arms by Obuchowski-Rockette-Hillis with random readers "
                "(Hillis 2007 df)"
                if obs.readers > 1
                else ""
            )
        ),
    }


def _rois(config: TrialConfig, records: dict, arm: str) -> tuple[np.ndarray, np.ndarray]:
    present = np.stack([records[(i, True)]["rois"][arm] for i in range(config.pairs)])
    absent = np.stack([records[(i, False)]["rois"][arm] for i in range(config.pairs)])
    return present, absent


def _analyse_one_reader(
    config: TrialConfig, records: dict, options: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One observer per arm (`observers.evaluate`); paired dAUC by DeLong."""
    from .. import observers

    obs = config.observer
    design = {"resubstitution": True} if obs.resubstitution else {"split": obs.split}
    arms: dict[str, Any] = {}
    evaluations = {}
    for arm in [a.name for a in config.arms]:
        present, absent = _rois(config, records, arm)
        key = None
        if obs.internal_noise > 0:
            import jax

            key = jax.random.fold_in(jax.random.key(config.seed), 0x0B5)
        ev = observers.evaluate(
            obs.kind, present, absent, key=key, level=config.analysis.level, **design, **options
        )
        evaluations[arm] = ev
        arms[arm] = {
            "auc": float(ev.auc.auc),
            "auc_se": float(ev.auc.se),
            "auc_ci": [float(ev.auc.lower), float(ev.auc.upper)],
            "dprime": float(ev.dprime),
            "dprime_se": float(ev.dprime_se),
            "n_train": list(ev.n_train),
            "n_test": list(ev.n_test),
            "scores": [float(v) for v in np.asarray(ev.scores)],
            "truth": [bool(v) for v in np.asarray(ev.truth)],
        }
    comparisons = []
    for a, b in config.analysis.compare:
        ea, eb = evaluations[a], evaluations[b]
        d = observers.delta_auc(
            ea.scores, ea.truth, eb.scores, eb.truth, level=config.analysis.level
        )
        comparisons.append(
            {
                "arms": [a, b],
                "delta_auc": float(d.delta),
                "se": float(d.se),
                "ci": [float(d.lower), float(d.upper)],
                "p": float(d.p_value),
                "definition": f"AUC({b}) - AUC({a}) on the same test cases (DeLong covariance)",
            }
        )
    return arms, comparisons


def _reader_pairs(obs: _Observer, n_train: int) -> int:
    """Training pairs of each reader: its share of the ``n_train`` training pairs."""
    return max(2, round(obs.reader_fraction * n_train))


#: named random stream of the readers' training subsets and internal noise
_READER_STREAM = 0x5EAD


def _analyse_readers(
    config: TrialConfig, records: dict, options: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Several observer readers per arm, each trained on its own random subset of the training
    pairs (the same subsets, and the same internal-noise streams, in every arm: a reader is one
    observer applied to both modalities), all scoring the held-out pairs; dAUC by ORH."""
    import jax

    from .. import observers

    obs = config.observer
    n = config.pairs
    k = int(np.floor(obs.split * n))
    m = _reader_pairs(obs, k)
    if k < 2 or n - k < 2:
        raise ValueError(
            f"observer.split = {obs.split} leaves {k} training and {n - k} test pairs; each "
            "needs >= 2"
        )
    base = jax.random.fold_in(jax.random.key(config.seed), _READER_STREAM)
    subsets = [
        np.sort(np.asarray(jax.random.choice(jax.random.fold_in(base, r), k, (m,), replace=False)))
        for r in range(obs.readers)
    ]
    truth = np.concatenate([np.ones(n - k, bool), np.zeros(n - k, bool)])
    scores: dict[str, np.ndarray] = {}
    arms: dict[str, Any] = {}
    for arm in [a.name for a in config.arms]:
        present, absent = _rois(config, records, arm)
        test = np.concatenate([present[k:], absent[k:]])
        per_reader = []
        for r, idx in enumerate(subsets):
            reader = observers.train(obs.kind, present[idx], absent[idx], **options)
            noise = None
            if obs.internal_noise > 0:
                key = jax.random.fold_in(jax.random.fold_in(base, r), 1)
                noise = observers.sample_internal_noise(key, reader, (test.shape[0],))
            per_reader.append(np.asarray(observers.score(reader, test, internal_noise=noise)))
        s = np.stack(per_reader)
        if not np.all(np.isfinite(s)):
            raise ValueError(
                f"arm {arm!r}: a reader's {obs.kind!r} template is not finite on its "
                f"{m} + {m} training images; raise observer.reader_fraction, use fewer "
                "channels, or add pairs"
            )
        scores[arm] = s
        mean = observers.orh_single(s, truth, level=config.analysis.level)
        dprimes = [float(observers.dprime(row, truth)) for row in s]
        arms[arm] = {
            "auc": mean.auc_mean,
            "auc_se": mean.se,
            "auc_ci": [mean.lower, mean.upper],
            "auc_df": mean.df,
            "dprime": float(np.mean(dprimes)),
            "dprime_se": float(np.std(dprimes, ddof=1)),
            "reader_auc": [float(v) for v in mean.auc],
            "reader_dprime": dprimes,
            "n_train": [m, m],
            "n_test": [n - k, n - k],
            "scores": [float(v) for v in s[0]],
            "truth": [bool(v) for v in truth],
        }
    comparisons = []
    for a, b in config.analysis.compare:
        res = observers.orh(np.stack([scores[a], scores[b]]), truth, level=config.analysis.level)
        comparisons.append(
            {
                "arms": [a, b],
                "delta_auc": float(res.delta[0]),
                "se": float(res.se),
                "ci": [float(res.lower[0]), float(res.upper[0])],
                "p": float(res.p_value),
                "df": float(res.df),
                "readers": obs.readers,
                "definition": (
                    f"reader-averaged AUC({b}) - AUC({a}) on the same test cases, "
                    f"{obs.readers} random readers (Obuchowski-Rockette-Hillis, DeLong covariance)"
                ),
            }
        )
    return arms, comparisons


def _channel_options(obs: _Observer) -> dict[str, Any]:
    if obs.channels == "laguerre-gauss":
        return {"n_channels": obs.n_channels, "width_px": obs.width_px}
    return {}


def _csv(results: dict[str, Any]) -> str:
    rows = ["kind,name,value,se,ci_low,ci_high,dprime,p"]
    for arm, r in results["arms"].items():
        rows.append(
            f"arm,{arm},{r['auc']:.6f},{r['auc_se']:.6f},{r['auc_ci'][0]:.6f},"
            f"{r['auc_ci'][1]:.6f},{r['dprime']:.6f},"
        )
    for c in results["comparisons"]:
        rows.append(
            f"delta_auc,{c['arms'][1]}-{c['arms'][0]},{c['delta_auc']:.6f},{c['se']:.6f},"
            f"{c['ci'][0]:.6f},{c['ci'][1]:.6f},,{c['p']:.6g}"
        )
    return "\n".join(rows) + "\n"


def _roc_points(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    t = truth[order]
    tpr = np.concatenate([[0.0], np.cumsum(t) / max(t.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~t) / max((~t).sum(), 1)])
    return fpr, tpr


def _write_pictures(
    out: Path,
    config: TrialConfig,
    records: dict[tuple[int, bool], dict[str, Any]],
    results: dict[str, Any],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for arm, r in results["arms"].items():
        fpr, tpr = _roc_points(np.asarray(r["scores"]), np.asarray(r["truth"], bool))
        lo, hi = r["auc_ci"]
        ax.step(fpr, tpr, where="post", label=f"{arm}: AUC {r['auc']:.3f} [{lo:.3f}, {hi:.3f}]")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set(
        xlabel="false-positive fraction", ylabel="true-positive fraction", xlim=(0, 1), ylim=(0, 1)
    )
    ax.set_title(f"{config.name}: {results['observer']['kind'].upper()} observer", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save_png(fig, out / "roc.png")

    arms = [a.name for a in config.arms]
    n = min(4, config.pairs)
    fig, axes = plt.subplots(
        len(arms), 2 * n, figsize=(1.3 * 2 * n, 1.45 * len(arms)), squeeze=False
    )
    for row, arm in enumerate(arms):
        # one grey scale per arm, from its signal-absent ROIs: present and absent look alike
        absent = np.stack([records[(i, False)]["rois"][arm] for i in range(n)])
        q = absent.shape[1] // 4
        middle = absent[:, q:-q, q:-q]  # the host organ around the lesion's place
        centre, spread = np.median(middle), 1.4826 * np.median(np.abs(middle - np.median(middle)))
        lo, hi = centre - 4 * spread, centre + 4 * spread
        for col in range(2 * n):
            present = col < n
            roi = records[(col % n, present)]["rois"][arm]
            axes[row, col].imshow(roi.T, cmap="gray", origin="lower", vmin=lo, vmax=hi)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            axes[row, col].set_title(
                f"{arm} {'present' if present else 'absent'} {col % n}", fontsize=6
            )
    fig.tight_layout()
    _save_png(fig, out / "rois.png")


def _save_png(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def _html(config: TrialConfig, results: dict[str, Any]) -> str:
    e = html.escape
    arm_rows = "".join(
        f"<tr><td>{e(arm)}</td><td>{r['auc']:.3f}</td><td>[{r['auc_ci'][0]:.3f}, "
        f"{r['auc_ci'][1]:.3f}]</td><td>{r['dprime']:.2f} ± {r['dprime_se']:.2f}</td>"
        f"<td>{r['n_test'][0]} + {r['n_test'][1]}</td></tr>"
        for arm, r in results["arms"].items()
    )
    cmp_rows = "".join(
        f"<tr><td>{e(c['arms'][1])} − {e(c['arms'][0])}</td><td>{c['delta_auc']:+.3f}</td>"
        f"<td>[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]</td><td>{c['p']:.3g}</td></tr>"
        for c in results["comparisons"]
    )
    obs = results["observer"]
    level = round(100 * results["level"])
    readers = ""
    if obs.get("readers", 1) > 1:
        readers = (
            f"; {obs['readers']} readers, each trained on a random {obs['reader_fraction']:g} of "
            "the training pairs, ΔAUC by Obuchowski–Rockette–Hillis (random readers)"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(config.name)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em}}</style></head>
<body><h1>{e(config.name)}</h1><p>{e(config.description)}</p>
<p>{config.pairs} signal-present / signal-absent pairs (seed {config.seed}); lesion: {e(results["lesion"]["material"])},
radius {config.lesion.radius_mm:g} mm in {e(config.lesion.organ)}; observer: {e(obs["kind"].upper())}
({e(str(obs["channels"]))}, {obs["n_channels"]} channels), {obs["roi_px"]}² {e(obs["plane"])} ROI,
{e(obs["mode"])}{"" if obs["split"] is None else f" (training fraction {obs['split']})"}{readers}.</p>
<h2>Detectability per arm</h2><table><tr><th>arm</th><th>AUC</th><th>{level}% CI ({"ORH, random readers" if readers else "DeLong"})</th>
<th>d′</th><th>test cases (present + absent)</th></tr>{arm_rows}</table>
<h2>Paired comparisons</h2><table><tr><th>ΔAUC</th><th>value</th><th>{level}% CI</th><th>p</th></tr>{cmp_rows}</table>
<p><img src="roc.png" alt="ROC curves"> <img src="rois.png" alt="example ROIs" style="max-width:100%"></p>
<p><small>{e(results["metric"])}. Full provenance: trial.json.</small></p></body></html>
"""


__all__ = ["TrialConfig", "TrialJob", "analyse", "load_trial", "run_trial"]
