"""The dataset job (`medphys generate`): config → recipe → engine → dataset sink.

`generate` is wiring: it resolves every definition the config names (phantom families, protocols)
and hashes each, builds the `CaseRecipe` (so every name and file is validated before any case
runs), checks the output folder, then maps `run_case` over the cases still to do on an engine and
hands each result to the `DatasetSink` (layout and resume rules: `medphys.pipelines._dataset`).

Case ``i`` uses the key ``fold_in(PRNGKey(seed), i)`` and named streams below it
(`medphys.pipelines.stream`): the bytes of a case depend on the seed, its index and the inputs,
never on the engine, the number of workers or which cases ran before it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from ..io import label_table
from ..simulators import Modality
from ._case import CaseResult, run_case
from ._config import GenerateConfig
from ._dataset import DatasetSink, OutputError
from ._engine import AbstractEngine, LocalEngine
from ._provenance import (
    Definition,
    definition,
    job_digest,
    job_inputs,
    load_families,
    versions,
)
from ._recipe import Arm, CaseRecipe, GridSpec, recipe_of, remember_recipe
from ._streams import case_key


def definitions(config: GenerateConfig) -> dict[str, Definition]:
    """Every definition ``config`` names, resolved and read, by role (no simulation).

    Raises:
        UnknownNameError / ConfigError: an unknown name, or a file that cannot be read.
    """
    out = {f"phantom/{name}": definition("phantom", name) for name in config.phantom.names}
    out["protocol/ct"] = definition("protocol", config.ct.protocol)
    out["protocol/mr"] = definition("protocol", config.mr.protocol)
    return out


@dataclasses.dataclass(frozen=True)
class GenerateJob:
    """What a worker needs to run any case of a job: the config and the definitions' content.

    Plain data (no JAX arrays): it pickles cheaply to worker processes and cluster nodes, which
    need neither the user's files nor the driver's JAX state. `recipe` builds the `CaseRecipe`.
    """

    config: GenerateConfig
    definitions: dict[str, Definition]
    #: the job digest (`job_digest`): names the job in each worker's recipe memo
    digest: str

    def recipe(self) -> CaseRecipe:
        """Load phantoms and protocols from the definitions (validating them) into a recipe."""
        config = self.config
        families = load_families(self.definitions)
        ct = self.definitions["protocol/ct"].load()
        if config.ct.beam_hardening_correction is not None:
            ct = dataclasses.replace(
                ct, beam_hardening_correction=config.ct.beam_hardening_correction
            )
        mr = self.definitions["protocol/mr"].load()
        p = config.phantom
        return CaseRecipe.create(
            families,
            grid=GridSpec(p.shape, p.spacing_mm, p.center_mm, p.supersample),
            arms=(
                Arm("ct", ct, keep_raw=config.output.save_projections),
                Arm("mr", mr, keep_raw=config.output.save_kspace),
            ),
            vary=p.vary,
        )


def _run_job_case(job: GenerateJob, index: int) -> CaseResult:
    """A worker's task: case ``index`` of ``job``."""
    return run_case(case_key(job.config.seed, index), recipe_of(job), index=index)


def _sidecar(job: GenerateJob, recipe: CaseRecipe, result: CaseResult) -> dict[str, Any]:
    """The provenance of one case (the sink adds files, labels, digest)."""
    import jax

    config = job.config
    family = job.definitions[
        f"phantom/{config.phantom.names[result.index % len(config.phantom.names)]}"
    ]
    return {
        "seed": config.seed,
        "key": f"fold_in(PRNGKey({config.seed}), {result.index})",
        "streams": result.streams,
        "phantom": result.family,
        "phantom_definition": {"name": family.name, "path": family.path, "digest": family.digest},
        "phantom_params": result.params,
        "protocols": {
            arm.name: job.definitions[f"protocol/{arm.name}"].record() for arm in recipe.arms
        },
        "beam_hardening_correction": recipe.arm("ct").protocol.beam_hardening_correction,
        "config": config.model_dump(mode="json"),
        "versions": versions(),
        "backend": jax.default_backend(),
    }


def generate(
    out: str | Path,
    config: GenerateConfig,
    *,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    engine: AbstractEngine | None = None,
) -> dict[str, Any]:
    """Run the dataset job; resume if ``out`` holds a partial run of the same inputs.

    Args:
        out: output folder (created if needed).
        config: the validated job configuration (`load_config`).
        overwrite: start over in a folder that holds a dataset made from other inputs (its
            cases are deleted, never mixed with new ones).
        progress: called as ``progress(message, done, total)`` after each case.
        engine: where cases run (default: `LocalEngine()`, in this process). The bytes do not
            depend on it.

    Returns:
        a summary: ``{"out", "cases", "generated", "skipped", "manifest", "overview", "engine"}``.

    Raises:
        OutputError: ``out`` is not writable, holds a dataset made from other inputs (the message
            names them) and ``overwrite`` is false, or a write fails part-way (complete cases are
            kept). Raised before any simulation except for failed writes.
        ConfigError / UnknownNameError: unknown names or invalid definitions, before any case.
    """
    out = Path(out)
    defs = definitions(config)
    inputs = job_inputs(config.digest(), defs)
    job = GenerateJob(config, defs, job_digest(inputs))
    families_names = [
        d.content.get("name", role) for role, d in defs.items() if role.startswith("phantom/")
    ]
    # Validate everything (and learn the structure names) before the folder is touched.
    recipe = job.recipe()
    refiner = _check_refiner(config, recipe)
    sink = DatasetSink(
        out,
        digest=job.digest,
        inputs=inputs,
        record={
            "config": config.model_dump(mode="json"),
            "definitions": {role: d.record() for role, d in defs.items()},
            "versions": versions(),
        },
        labels=label_table([f.structure_names for f in recipe.families]),
        files=_files(recipe),
        overview=config.output.montage,
        title=f"medphys generate: {', '.join(families_names)}, seed {config.seed}",
    )
    sink.check(overwrite=overwrite)
    pending = sink.start(config.cases, overwrite=overwrite)
    skipped = config.cases - len(pending)
    done = skipped
    if progress and skipped:
        progress(f"{skipped} case(s) already complete", done, config.cases)
    engine = engine or LocalEngine()
    remember_recipe(job, recipe)  # the in-process engine reuses the driver's recipe
    with contextlib.closing(engine.map(_run_job_case, job, pending)) as results:
        for _, result in results:
            sink.write(result, _sidecar(job, recipe, result))
            done += 1
            if progress:
                progress(f"{result.family} case {result.index} written", done, config.cases)
    arms = [(a.name, a.modality) for a in recipe.arms]
    summary = {
        "out": str(out),
        "cases": config.cases,
        "generated": len(pending),
        "skipped": skipped,
        **sink.finish(config.cases, arms),
        "engine": engine.describe(),
    }
    if refiner is not None:
        from ._refine import refine_dataset

        summary["refined"] = len(refine_dataset(out, refiner))
    return summary


def _check_refiner(config: GenerateConfig, recipe: CaseRecipe) -> Path | None:
    """The refiner stage's file, checked before any case runs: a refiner file, and an arm of
    its modality (an MR refiner also needs the scans: ``save_kspace``)."""
    if config.refine.refiner is None:
        return None
    path = Path(config.refine.refiner)
    if not path.is_file():
        raise ConfigError(
            f"refine.refiner: no refiner file {path} (medphys refine train writes one)"
        )
    from ..neural import load_refiner

    try:
        refiner, _, _ = load_refiner(path)
    except ValueError as exc:
        raise ConfigError(f"refine.refiner: {exc}") from None
    wanted = Modality.CT if refiner.modality == "ct" else Modality.MR
    if not any(a.modality == wanted for a in recipe.arms):
        raise ConfigError(f"refine.refiner: the job has no {wanted.name} arm to refine")
    if wanted == Modality.MR and not config.output.save_kspace:
        raise ConfigError(
            f"refine.refiner: {path} is an MR refiner; it refines each case's scan, so set "
            "`[output] save_kspace = true`"
        )
    return path


def _files(recipe: CaseRecipe) -> dict[str, str]:
    files = {"label": "label.nii.gz"}
    for arm in recipe.arms:
        files[arm.name] = f"{arm.name}.nii.gz"
        if arm.keep_raw and arm.modality == Modality.CT:
            files[f"projections-{arm.name}"] = f"projections-{arm.name}.npy"
        if arm.keep_raw and arm.modality == Modality.MR:
            files[f"kspace-{arm.name}"] = f"kspace-{arm.name}.npz"
    return files


__all__ = ["GenerateJob", "OutputError", "definitions", "generate"]
