"""``medphys refine`` and ``medphys audit``: the sim-to-real refiner and its audits on disk.

    medphys refine train --real DIR --sim DATASET --out RUN [--steps N] [--seed S] [--no-physics]
    medphys refine apply RUN/refiner.npz --dataset DATASET
    medphys audit physics --dataset DATASET [--real DIR] [--json FILE]
    medphys audit memorisation --training DIR --generated DIR --held-out DIR [--tile 32]

A run folder holds ``checkpoint.npz`` (resumed by a rerun of the same command), ``refiner.npz``
(the trained refiner: what ``refine apply`` and the dataset records name by its SHA-256),
``train.json`` (settings, data provenance, loss summary) and ``audit.json`` (the physics audit of
the held-out cases). The audits exit with status 1 when a criterion fails (or, for the
memorisation audit, when its controls misbehave).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

refine_app = typer.Typer(
    help="Refine simulated CT toward real images, with physics terms.", no_args_is_help=True
)
audit_app = typer.Typer(help="Audit refined or generated images.", no_args_is_help=True)
_out = Console(highlight=False)


def _user_error(message: str) -> Exception:
    from .cli import UserError

    return UserError(message)


def _real_slices(folder: Path) -> tuple[list[tuple[Any, Any]], dict[str, Any]]:
    from . import io

    try:
        images = io.load_real_images(folder, modality="CT")
    except (FileNotFoundError, ValueError) as exc:
        raise _user_error(str(exc)) from None
    slices = [(a, s) for a, s, _ in images.slices()]
    files = sorted({f for image in images.images for f in image.source})
    return slices, {"folder": str(folder), "patients": list(images.patients), "files": files}


def _load_dataset(dataset: Path, cases: Any = None) -> tuple[Any, list[str]]:
    from .pipelines import DatasetError, load_ct_dataset

    try:
        return load_ct_dataset(dataset, cases=cases)
    except DatasetError as exc:
        raise _user_error(str(exc)) from None


@refine_app.command("train")
def refine_train(
    real: Annotated[
        Path, typer.Option("--real", help="Folder of real CT images (DICOM or NIfTI).")
    ],
    sim: Annotated[
        Path, typer.Option("--sim", help="A medphys generate dataset with save_projections.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder (created; a rerun resumes).")],
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
) -> None:
    """Train a 2-D CT refiner on a dataset's slices toward patches of real CT images."""
    import jax

    from . import audit, neural

    simulated, names = _load_dataset(sim)
    n = simulated.n_cases
    if held_out >= n:
        raise _user_error(
            f"medphys refine train: --held-out {held_out} leaves no training case "
            f"(the dataset has {n}); use at most {n - 1}"
        )
    slices, provenance = _real_slices(real)
    key = jax.random.key(seed)
    try:
        real_patches = neural.real_patches(
            jax.random.fold_in(key, 1),
            slices,
            spacing_mm=simulated.spacing_mm,
            size=patch,
            count=patches,
        )
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    config = neural.RefineConfig(steps=steps)
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
        "modality": "CT",
        "units": "HU",
        "spacing_mm": list(simulated.spacing_mm),
        "dataset": str(sim),
        "training_cases": names[: n - held_out],
        "physics_terms": physics,
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
        refined = jax.numpy.stack([neural.refine(result.refiner, h) for h in test.hu])
        report = audit.physics_audit(test, refined, real=real_patches)
        write_text_atomic(out / "audit.json", json.dumps(report.to_dict(), indent=2) + "\n")
        _out.print(report.describe())
    _out.print(f"wrote {out / 'refiner.npz'} (sha256 {digest[:16]}…)")


@refine_app.command("apply")
def refine_apply(
    refiner: Annotated[Path, typer.Argument(help="refiner.npz of a training run.")],
    dataset: Annotated[Path, typer.Option("--dataset", help="A medphys generate dataset.")],
) -> None:
    """Write ct-refined.nii.gz and refined.json (the refiner's SHA-256) beside each case's CT."""
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
        Path | None, typer.Option("--real", help="Real CT images for the NPS criterion.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Judge each case's ct-refined.nii.gz against its own scan, labels and CT image."""
    import jax

    from . import audit, neural
    from .io import write_text_atomic
    from .pipelines import DatasetError, load_refined

    simulated, _ = _load_dataset(dataset)
    try:
        refined = load_refined(dataset)
    except DatasetError as exc:
        raise _user_error(str(exc)) from None
    real_patches = None
    message = "no patch size fits the simulated slices"
    if real is not None:
        slices, _ = _real_slices(real)
        for side in (64, 48, 32, 24, 16):  # the largest patch the real images hold
            if side > min(simulated.hu.shape[1:3]):
                continue
            try:
                real_patches = neural.real_patches(
                    jax.random.key(0), slices, spacing_mm=simulated.spacing_mm, size=side, count=128
                )
                break
            except ValueError as exc:
                message = str(exc)
        else:
            raise _user_error(f"medphys audit physics: --real: {message}")
    report = audit.physics_audit(simulated, refined, real=real_patches)
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
        tiles = neural.real_tiles(slices, spacing_mm=target, size=size, low_hu=-np.inf)
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
