"""``medphys refine`` and ``medphys audit``: the sim-to-real refiner and its audits on disk.

    medphys refine train --real DIR --sim DATASET --out RUN [--modality ct|mr] [--steps N]
                         [--seed S] [--no-physics] [--label-conditioning]
    medphys refine apply RUN/refiner.npz --dataset DATASET
    medphys audit physics --dataset DATASET [--modality ct|mr] [--real DIR] [--json FILE]
    medphys audit memorisation --training DIR --generated DIR --held-out DIR [--tile 32]

A run folder holds ``checkpoint.npz`` (resumed by a rerun of the same command), ``refiner.npz``
(the trained refiner: what ``refine apply`` and the dataset records name by its SHA-256),
``train.json`` (settings, data provenance, loss summary) and ``audit.json`` (the physics audit of
the held-out cases). The audits exit with status 1 when a criterion fails (or, for the
memorisation audit, when its controls misbehave).

CT needs a dataset generated with ``[output] save_projections = true`` and real CT images; MR a
dataset with ``[output] save_kspace = true`` and real MR images (DICOM MR or NIfTI), each real
volume divided by its reference intensity (`medphys.neural.real_mr_slices`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

refine_app = typer.Typer(
    help="Refine simulated CT or MR toward real images, with physics terms.", no_args_is_help=True
)
audit_app = typer.Typer(help="Audit refined or generated images.", no_args_is_help=True)
_out = Console(highlight=False)


class ImageModality(enum.StrEnum):
    ct = "ct"
    mr = "mr"


_MODALITY = typer.Option("--modality", help="ct (HU, projections) or mr (magnitude, k-space).")


def _user_error(message: str) -> Exception:
    from .cli import UserError

    return UserError(message)


def _real_slices(
    folder: Path, modality: str = "ct"
) -> tuple[list[tuple[Any, Any]], dict[str, Any]]:
    from . import io, neural

    try:
        images = io.load_real_images(folder, modality=modality.upper())
        if modality == "mr":
            slices = neural.real_mr_slices(images)
        else:
            slices = [(a, s) for a, s, _ in images.slices()]
    except (FileNotFoundError, ValueError) as exc:
        raise _user_error(str(exc)) from None
    files = sorted({f for image in images.images for f in image.source})
    return slices, {"folder": str(folder), "patients": list(images.patients), "files": files}


def _load_dataset(dataset: Path, modality: str = "ct") -> tuple[Any, list[str]]:
    from .pipelines import DatasetError, load_ct_dataset, load_mr_dataset

    try:
        if modality == "mr":
            return load_mr_dataset(dataset)
        return load_ct_dataset(dataset)
    except DatasetError as exc:
        raise _user_error(str(exc)) from None


def _low(modality: str) -> float:
    """Real patches are drawn where at least half the pixels are above this (HU or the
    normalised MR intensity): inside the body."""
    return 0.1 if modality == "mr" else -100.0


def _audit(simulated: Any, refined: Any, real: Any) -> Any:
    from . import audit

    if simulated.modality == "mr":
        return audit.mr_physics_audit(simulated.results(), simulated.labels, refined, real=real)
    return audit.physics_audit(simulated, refined, real=real)


@refine_app.command("train")
def refine_train(
    real: Annotated[Path, typer.Option("--real", help="Folder of real images (DICOM or NIfTI).")],
    sim: Annotated[
        Path,
        typer.Option("--sim", help="A medphys generate dataset (save_projections / save_kspace)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder (created; a rerun resumes).")],
    modality: Annotated[ImageModality, _MODALITY] = ImageModality.ct,
    steps: Annotated[int, typer.Option("--steps", help="Training steps.", min=1)] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="The run's key.")] = 0,
    patch: Annotated[int, typer.Option("--patch", help="Real patch side (pixels).", min=8)] = 64,
    patches: Annotated[int, typer.Option("--patches", help="Real patches drawn.", min=8)] = 512,
    held_out: Annotated[
        int, typer.Option("--held-out", help="Last dataset cases kept out for the audit.", min=0)
    ] = 1,
    physics: Annotated[
        bool, typer.Option("--physics/--no-physics", help="Use the physics terms.")
    ] = True,
    label_conditioning: Annotated[
        bool,
        typer.Option(
            "--label-conditioning/--no-label-conditioning",
            help="The generator also sees each case's label map.",
        ),
    ] = False,
) -> None:
    """Train a 2-D CT or MR refiner on a dataset's slices toward patches of real images."""
    import jax

    from . import neural

    modality = ImageModality(modality).value
    simulated, names = _load_dataset(sim, modality)
    n = simulated.n_cases
    if held_out >= n:
        raise _user_error(
            f"medphys refine train: --held-out {held_out} leaves no training case "
            f"(the dataset has {n}); use at most {n - 1}"
        )
    slices, provenance = _real_slices(real, modality)
    key = jax.random.key(seed)
    try:
        real_patches = neural.real_patches(
            jax.random.fold_in(key, 1),
            slices,
            spacing_mm=simulated.spacing_mm,
            size=patch,
            count=patches,
            low=_low(modality),
        )
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    config = neural.RefineConfig(steps=steps, label_conditioning=label_conditioning)
    if not physics:
        config = config.without_physics()
    train = simulated.take(range(n - held_out))
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = neural.train_refiner(
            jax.random.fold_in(key, 2),
            train,
            real_patches,
            config=config,
            checkpoint=out / "checkpoint.npz",
        )
    except (TypeError, ValueError) as exc:
        raise _user_error(str(exc)) from None
    meta = {
        "modality": modality.upper(),
        "units": "HU" if modality == "ct" else "magnitude over the reference intensity",
        "data_consistency": modality == "mr" and config.data_consistency,
        "spacing_mm": list(simulated.spacing_mm),
        "dataset": str(sim),
        "training_cases": names[: n - held_out],
        "physics_terms": physics,
        "label_conditioning": label_conditioning,
        "steps": steps,
        "seed": seed,
    }
    digest = neural.save_refiner(out / "refiner.npz", result.refiner, meta=meta)
    record = {
        "refiner": "refiner.npz",
        "refiner_sha256": digest,
        "config": dataclasses.asdict(config),
        "real": provenance,
        "real_patches": {"size": patch, "count": patches},
        "meta": meta,
        "summary": result.summary,
        "final_terms": dict(zip(result.terms, result.losses[-1].tolist(), strict=True)),
    }
    from .io import write_text_atomic

    write_text_atomic(out / "train.json", json.dumps(record, indent=2) + "\n")
    _out.print(result.summary)
    if held_out:
        test = simulated.take(range(n - held_out, n))
        if modality == "mr":
            refined = jax.numpy.stack(
                [
                    neural.refine_mr(
                        result.refiner,
                        s,
                        labels=lab if label_conditioning else None,
                        data_consistency=config.data_consistency,
                    )
                    for s, lab in zip(test.results(), test.labels, strict=True)
                ]
            )
        else:
            refined = jax.numpy.stack(
                [
                    neural.refine(result.refiner, h, labels=lab if label_conditioning else None)
                    for h, lab in zip(test.hu, test.labels, strict=True)
                ]
            )
        report = _audit(test, refined, real_patches)
        write_text_atomic(out / "audit.json", json.dumps(report.to_dict(), indent=2) + "\n")
        _out.print(report.describe())
    _out.print(f"wrote {out / 'refiner.npz'} (sha256 {digest[:16]}…)")


@refine_app.command("apply")
def refine_apply(
    refiner: Annotated[Path, typer.Argument(help="refiner.npz of a training run.")],
    dataset: Annotated[Path, typer.Option("--dataset", help="A medphys generate dataset.")],
) -> None:
    """Write the refined image and its sidecar (the refiner's SHA-256) beside each case's image
    of the refiner's modality (ct-refined.nii.gz + refined.json, mr-refined.nii.gz +
    refined-mr.json)."""
    from .pipelines import DatasetError, refine_dataset

    if not refiner.is_file():
        raise _user_error(f"medphys refine apply: no refiner file {refiner}")
    try:
        written = refine_dataset(dataset, refiner)
    except (DatasetError, ValueError) as exc:
        raise _user_error(str(exc)) from None
    _out.print(f"refined {len(written)} case(s) in {dataset}")


@audit_app.command("physics")
def audit_physics(
    dataset: Annotated[Path, typer.Option("--dataset", help="A dataset with refined images.")],
    real: Annotated[
        Path | None, typer.Option("--real", help="Real images for the NPS criterion.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    modality: Annotated[ImageModality, _MODALITY] = ImageModality.ct,
) -> None:
    """Judge each case's refined image against its own scan, labels and simulated image."""
    import jax

    from . import neural
    from .io import write_text_atomic
    from .pipelines import DatasetError, load_refined

    modality = ImageModality(modality).value
    simulated, _ = _load_dataset(dataset, modality)
    try:
        refined = load_refined(dataset, modality=modality)
    except DatasetError as exc:
        raise _user_error(str(exc)) from None
    real_patches = None
    message = "no patch size fits the simulated slices"
    if real is not None:
        slices, _ = _real_slices(real, modality)
        for side in (64, 48, 32, 24, 16):  # the largest patch the real images hold
            if side > min(simulated.image.shape[1:3]):
                continue
            try:
                real_patches = neural.real_patches(
                    jax.random.key(0),
                    slices,
                    spacing_mm=simulated.spacing_mm,
                    size=side,
                    count=128,
                    low=_low(modality),
                )
                break
            except ValueError as exc:
                message = str(exc)
        else:
            raise _user_error(f"medphys audit physics: --real: {message}")
    report = _audit(simulated, refined, real_patches)
    _out.print(report.describe())
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.passed:
        raise typer.Exit(1)


def _tiles(folder: Path, option: str, size: int, spacing: tuple[float, float] | None) -> Any:
    import numpy as np

    from . import io, neural

    try:
        images = io.load_real_images(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise _user_error(f"medphys audit memorisation: {option}: {exc}") from None
    slices = [(a, s) for a, s, _ in images.slices()]
    target = spacing or tuple(float(v) for v in slices[0][1])
    try:
        tiles = neural.real_tiles(slices, spacing_mm=target, size=size, low=-np.inf)
    except ValueError as exc:
        raise _user_error(f"medphys audit memorisation: {option}: {exc}") from None
    # constant tiles (padding, air) are identical in every set and would read as copies
    return tiles[np.std(tiles, axis=(1, 2)) > 0], target


@audit_app.command("memorisation")
def audit_memorisation(
    training: Annotated[Path, typer.Option("--training", help="The generator's training images.")],
    generated: Annotated[Path, typer.Option("--generated", help="Images the generator made.")],
    held_out: Annotated[
        Path, typer.Option("--held-out", help="Real images of the same kind it never saw.")
    ],
    tile: Annotated[int, typer.Option("--tile", help="Square tile side (pixels).", min=4)] = 32,
    spacing: Annotated[
        float | None, typer.Option("--spacing", help="Resample to this pixel size (mm).")
    ] = None,
    features: Annotated[
        bool,
        typer.Option("--features/--no-features", help="Also audit in a trained encoder's space."),
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="The audit's key.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Do generated images copy training images? NNDR, DCR and membership inference, with a
    positive and a negative control (folders of DICOM or NIfTI, cut into non-overlapping tiles;
    constant tiles are dropped)."""
    import jax
    import numpy as np

    from . import audit, neural
    from .io import write_text_atomic

    fixed = None if spacing is None else (spacing, spacing)
    train_tiles, target = _tiles(training, "--training", tile, fixed)
    generated_tiles, _ = _tiles(generated, "--generated", tile, target)
    held_tiles, _ = _tiles(held_out, "--held-out", tile, target)
    key = jax.random.key(seed)
    embed = None
    if features:
        pool = np.concatenate([train_tiles, held_tiles])
        encoder = neural.train_encoder(jax.random.fold_in(key, 1), pool, progress=False)

        def embed(x: Any) -> Any:
            return neural.embed(encoder, x)

    try:
        report = audit.memorisation_audit(
            jax.random.fold_in(key, 2), train_tiles, generated_tiles, held_tiles, features=embed
        )
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    _out.print(report.describe())
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.passed:
        raise typer.Exit(1)
