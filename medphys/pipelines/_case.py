"""`run_case(key, recipe)`: one virtual patient, voxelized and imaged by every arm of a recipe.

A pure function of its key and recipe: the phantom draws from the stream ``"phantom"``, each arm
from ``"arm/<name>"`` (`medphys.pipelines.stream`), so adding an arm or a stage changes no other
output's bytes. The case computes in float32 whatever the caller's ``jax_enable_x64`` setting, so
the same key gives the same bytes from the command line, a notebook or a worker process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from .. import phantoms
from .._types import PRNGKey
from ..simulators import Modality
from ..volume import LabeledVolume, Volume
from ._lesion import place_lesion
from ._mammo import BreastFamily
from ._recipe import PROJECTION, Arm, CaseRecipe
from ._streams import stream
from ._window import image_arm, layout, placed


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """What one case produced, named by arm.

    Attributes:
        index: the case's index in its job.
        family: the phantom family's name.
        labels: the voxelized phantom (labels, structure table, partial-volume fractions).
        images: per arm name, the image on the phantom's grid: CT in HU, MR magnitude (float32);
            projection arms: a ``(field_px, field_px, 1)`` image centred on the lesion (one view:
            the post-log detector window; a sweep: the reconstructed plane through the lesion),
            its axes along the protocol detector's u and v.
        raw: per arm name, the raw data of arms with ``keep_raw``: CT projections (float32);
            for MR the scan as named arrays, ``kspace`` and ``coil_maps`` (complex64), ``mask``
            (float32, per ky line) and ``noise_std`` (float32 scalar).
        params: the population draw as a plain dict (``None`` when the recipe does not vary).
        streams: per stage, the name of the random stream it drew from (``"texture"``: the
            anatomical texture of structures that have one, `medphys.phantoms.texture_modulation`).
        lesion: for a recipe with a lesion, where it is (`place_lesion`'s record) and
            ``"present"``; projection-arm cases (radiograph, tomosynthesis, DM, DBT) add
            ``"voxel_by_arm"`` (the lesion's pixel in each arm's image), breast cases the
            compressed ``"thickness_mm"``; ``None`` without a lesion.
    """

    index: int
    family: str
    labels: LabeledVolume
    images: dict[str, Volume]
    raw: dict[str, np.ndarray | dict[str, np.ndarray]]
    params: dict[str, Any] | None
    streams: dict[str, str]
    lesion: dict[str, Any] | None = None


def run_case(
    key: PRNGKey, recipe: CaseRecipe, *, index: int = 0, present: bool = True
) -> CaseResult:
    """Make and image case ``index`` of ``recipe`` from ``key``.

    Args:
        key: the case's key (a job uses `medphys.pipelines.case_key(seed, index)`).
        recipe: a `CaseRecipe`.
        index: the case's index (chooses the phantom family: ``families[index % n]``).
        present: for a recipe with a lesion, insert it (signal present) or not (signal absent:
            the same patient, lesion location and noise, without the lesion).

    Returns:
        a `CaseResult`; ``images`` and ``raw`` are NumPy-backed (host) values.

    Example:
        >>> result = run_case(case_key(0, 3), recipe, index=3)  # doctest: +SKIP
        >>> result.images["ct"].data.shape == recipe.grid.shape  # doctest: +SKIP
        True
    """
    with jax.enable_x64(False):
        return _run_case(key, recipe, index, bool(present))


def _run_case(key: PRNGKey, recipe: CaseRecipe, index: int, present: bool) -> CaseResult:
    base = recipe.family(index)
    if isinstance(base, BreastFamily):
        return _run_breast_case(key, recipe, base, index, present)
    if recipe.arms[0].modality in PROJECTION:
        return _run_projection_case(key, recipe, base, index, present)
    streams = {"phantom": "phantom"}
    params, phantom = _individual(key, recipe, base)
    g = recipe.grid

    streams["texture"] = "texture"

    def voxelize(ph: phantoms.Phantom) -> LabeledVolume:
        """Voxelize, then modulate each textured structure's density, and its MR relaxation
        when the texture asks (`medphys.phantoms.apply_texture`; stream ``"texture"``: the
        twins of a lesion study share their texture outside the lesion)."""
        lv = phantoms.voxelize(
            ph,
            shape=g.shape,
            spacing_mm=g.spacing_mm,
            center_mm=g.center_mm,
            supersample=g.supersample,
        )
        return phantoms.apply_texture(stream(key, "texture"), ph, lv)

    labels = voxelize(phantom)
    lesion = None
    if recipe.lesion is not None:
        spec = recipe.lesion
        streams["lesion"] = "lesion"
        lesion = {**place_lesion(stream(key, "lesion"), labels, spec), "present": present}
        if present:
            phantom = _with_lesion(key, phantom, spec, lesion["center_mm"])
            labels = voxelize(phantom)
    images: dict[str, Volume] = {}
    raw: dict[str, Any] = {}
    for arm in recipe.arms:
        streams[arm.name] = arm.stream_name
        image, data = _image(stream(key, arm.stream_name), arm, labels)
        images[arm.name] = image.with_data(np.asarray(image.data, np.float32))
        if arm.keep_raw:
            raw[arm.name] = data
    return CaseResult(
        index=index,
        family=base.name,
        labels=labels,
        images=images,
        raw=raw,
        params=None if params is None else params.to_dict(),
        streams=streams,
        lesion=lesion,
    )


def _individual(
    key: PRNGKey, recipe: CaseRecipe, base: phantoms.Phantom
) -> tuple[Any, phantoms.Phantom]:
    """``(population draw or None, phantom)`` of a case: drawn from the ``"phantom"`` stream
    when the recipe varies, else the family's reference individual."""
    if not recipe.vary:
        return None, base
    params = phantoms.sample_params(stream(key, "phantom"), base)
    return params, phantoms.apply(params, base)


def _with_lesion(key: PRNGKey, phantom: phantoms.Phantom, spec, centre_mm) -> phantoms.Phantom:
    """``phantom`` with the lesion of ``spec`` at ``centre_mm`` (its shape's draws from the
    lesion stream)."""
    return phantoms.insert_lesion(
        phantom,
        organ=spec.organ,
        shape=spec.shape(jax.random.fold_in(stream(key, "lesion"), 1)),
        material=spec.material,
        center_mm=centre_mm,
        follow_warp=spec.follow_warp,
    )


def _run_breast_case(
    key: PRNGKey, recipe: CaseRecipe, family: BreastFamily, index: int, present: bool
) -> CaseResult:
    """A compressed breast imaged by DM and DBT arms around its lesion: the detectors lie under
    the lower paddle, the slab is the compressed thickness."""
    params, phantom = family.individual(stream(key, "phantom"), index)
    thickness = family.thickness_mm[family.slot(index)]
    region = family.region(index)
    detectors = {a.name: placed(a.detector, *region, centred=False) for a in recipe.arms}
    result = _run_window_case(
        key, recipe, phantom, family.survey(index), region, detectors, present
    )
    result.lesion["thickness_mm"] = thickness
    return dataclasses.replace(
        result,
        index=index,
        family=f"breast-{params.density}",
        params=dataclasses.asdict(params),
    )


def _run_projection_case(
    key: PRNGKey, recipe: CaseRecipe, base: phantoms.Phantom, index: int, present: bool
) -> CaseResult:
    """A patient of a phantom family imaged by radiograph and tomosynthesis arms around its
    lesion: the recipe grid is the region the patient lies in; each detector stands against its
    face, centred on it (a chest against the panel)."""
    params, phantom = _individual(key, recipe, base)
    region = recipe.grid.region
    detectors = {a.name: placed(a.detector, *region, centred=True) for a in recipe.arms}
    result = _run_window_case(
        key, recipe, phantom, recipe.grid.survey(), region, detectors, present
    )
    return dataclasses.replace(
        result,
        index=index,
        family=base.name,
        params=None if params is None else params.to_dict(),
    )


def _run_window_case(
    key: PRNGKey,
    recipe: CaseRecipe,
    phantom: phantoms.Phantom,
    survey: dict[str, Any],
    region: tuple[Any, Any],
    detectors: dict[str, Any],
    present: bool,
) -> CaseResult:
    """Projection arms around a lesion (`medphys.pipelines._window`): the lesion is placed on a
    survey voxelisation, each arm lays out its window around it, and the case is voxelised once
    on the box their rays cross."""
    spec = recipe.lesion
    assert spec is not None  # CaseRecipe.create requires it
    survey_labels = phantoms.voxelize(phantom, **survey, fractions=phantoms.Fractions.NONE)
    lesion = {**place_lesion(stream(key, "lesion"), survey_labels, spec), "present": present}
    centre = lesion["center_mm"]
    spacing = float(np.min(recipe.grid.spacing_mm))
    plans, grid = layout(recipe.arms, detectors, centre, region, spacing)
    if present:
        phantom = _with_lesion(key, phantom, spec, centre)
    labels = phantoms.voxelize(phantom, **grid, supersample=recipe.grid.supersample)
    streams = {"phantom": "phantom"}
    if any(s.texture is not None for s in phantom.structures):
        streams["texture"] = "texture"
        labels = phantoms.apply_texture(stream(key, "texture"), phantom, labels)
    streams["lesion"] = "lesion"
    # one fraction row per material, the same for every case and twin (the lesion's included)
    materials = tuple(
        dict.fromkeys(
            [phantom.background_material, *(s.material for s in phantom.structures), spec.material]
        )
    )
    images: dict[str, Volume] = {}
    raw: dict[str, Any] = {}
    voxels: dict[str, list[int]] = {}
    for arm in recipe.arms:
        streams[arm.name] = arm.stream_name
        image, data = image_arm(
            stream(key, arm.stream_name), arm.protocol, plans[arm.name], labels, materials
        )
        images[arm.name] = image.with_data(np.asarray(image.data, np.float32))
        voxels[arm.name] = [arm.field_px // 2, arm.field_px // 2, 0]
        if arm.keep_raw:
            raw[arm.name] = data
    lesion["voxel_by_arm"] = voxels
    return CaseResult(
        index=0,
        family="",
        labels=labels,
        images=images,
        raw=raw,
        params=None,
        streams=streams,
        lesion=lesion,
    )


def _image(key: PRNGKey, arm: Arm, labels: LabeledVolume) -> tuple[Volume, Any]:
    """One arm's acquisition and reconstruction: (image, raw data as NumPy; `CaseResult.raw`)."""
    if arm.modality == Modality.CT:
        from ..simulators import ct, xray

        scan = xray.simulate(key, labels, arm.protocol)
        image = ct.reconstruct(scan, arm.protocol, like=labels)
        return image, np.asarray(scan.projections, np.float32)
    from ..simulators import mr

    result = mr.simulate(key, labels, arm.protocol)
    return result.image, {
        "kspace": np.asarray(result.kspace, np.complex64),
        "coil_maps": np.asarray(result.coil_maps, np.complex64),
        "mask": np.asarray(result.mask, np.float32),
        "noise_std": np.asarray(result.noise_std, np.float32),
    }
