"""Refinement as a dataset stage: read a generated CT dataset with its projections into
`medphys.neural.SimulatedCT`, and write refined images beside the physics images.

A dataset made by ``medphys generate`` with ``[output] save_projections = true`` holds, per case,
``ct.nii.gz`` (HU), ``label.nii.gz`` and ``projections-ct.npy`` (the scan's post-log line
integrals); ``dataset.json`` holds the CT protocol's definition. `load_ct_dataset` rebuilds the
protocol from that definition (with the job's beam-hardening override), the projector of its
geometry on the case grid and the water calibration, and linearises the projections as the
reconstruction did, so the refiner's physics terms and `medphys.audit.physics_audit` judge each
image by the measurements that produced it.

`refine_dataset` writes ``ct-refined.nii.gz`` and ``refined.json`` (the refiner file's SHA-256,
its metadata, the digest of the input image) in each case folder, atomically; a rerun skips
cases already refined by the same refiner file and redoes the others.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..io import load_nifti, save_nifti, write_text_atomic

REFINED_IMAGE = "ct-refined.nii.gz"
REFINED_SIDECAR = "refined.json"


class DatasetError(ValueError):
    """The folder is not a usable generated CT dataset (message says why and what to do)."""


def _read_json(path: Path, where: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"{where}: {path} not found; give the folder `medphys generate --out` wrote"
        ) from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: {path} is not valid JSON ({exc})") from None


def dataset_cases(folder: str | Path, *, where: str) -> list[dict[str, Any]]:
    """The manifest's complete cases with their CT, label and projection paths (absolute)."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{where}: no dataset folder {root}")
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise DatasetError(f"{where}: {root} has no manifest.jsonl; is it a medphys dataset?")
    lines = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line]
    if not lines:
        raise DatasetError(f"{where}: {manifest} lists no complete case")
    cases = []
    for entry in lines:
        if "ct" not in entry:
            raise DatasetError(f"{where}: case {entry.get('case')} has no CT image (no `ct` arm)")
        if "projections-ct" not in entry:
            raise DatasetError(
                f"{where}: case {entry.get('case')} has no CT projections; generate the dataset "
                "with `[output] save_projections = true` (the refiner's physics needs them)"
            )
        cases.append({k: (root / v if k != "case" else v) for k, v in entry.items()})
    return cases


def _protocol(root: Path, where: str) -> Any:
    from .. import simulators

    record = _read_json(root / "dataset.json", where)
    definition = record.get("definitions", {}).get("protocol/ct")
    if definition is None:
        raise DatasetError(f"{where}: {root / 'dataset.json'} has no CT protocol definition")
    protocol = simulators.from_config(
        definition["content"], source=f"{root / 'dataset.json'}: definitions.protocol/ct"
    )
    override = record.get("config", {}).get("ct", {}).get("beam_hardening_correction")
    if override is not None:
        import dataclasses

        protocol = dataclasses.replace(protocol, beam_hardening_correction=bool(override))
    if protocol.scatter_correction is not None:
        raise DatasetError(
            f"{where}: the dataset's CT protocol applies a scatter correction, which needs the "
            "detector readings; the saved post-log projections cannot be corrected the same way"
        )
    return protocol


def load_ct_dataset(folder: str | Path, *, cases: Any = None) -> tuple[Any, list[str]]:
    """A generated CT dataset as `medphys.neural.SimulatedCT` (see the module docstring).

    Args:
        folder: the dataset folder (``medphys generate --out``).
        cases: optional indices into the manifest's cases (all when None).

    Returns:
        ``(simulated, case_names)``.

    Raises:
        DatasetError: not a dataset, no projections saved, cases on different grids, a protocol
            with scatter correction.
    """
    from .. import neural
    from ..simulators import ct, xray

    where = "medphys.pipelines.load_ct_dataset"
    root = Path(folder)
    entries = dataset_cases(root, where=where)
    if cases is not None:
        entries = [entries[i] for i in np.asarray(cases, int).reshape(-1)]
    protocol = _protocol(root, where)
    hus, labels, projections = [], [], []
    grid = recon = projector = None
    for entry in entries:
        image = load_nifti(entry["ct"])
        label = load_nifti(entry["label"])
        if grid is None:
            grid = image.grid
            recon = ct.prepare(grid, protocol)
            projector = xray.prepare(grid, protocol, materials=("water",)).projector
        elif image.grid != grid:
            raise DatasetError(
                f"{where}: case {entry['case']} lies on another grid than the first case; the "
                "refiner trains on one grid"
            )
        raw = np.load(entry["projections-ct"], allow_pickle=False)
        hus.append(np.asarray(image.data, np.float32))
        labels.append(np.asarray(label.labels))
        projections.append(np.asarray(recon.linearise(raw), np.float32))
    simulated = neural.SimulatedCT.create(
        np.stack(hus), np.stack(labels), np.stack(projections), projector, recon.mu_water / 10.0
    )
    return simulated, [e["case"] for e in entries]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refine_dataset(folder: str | Path, refiner_path: str | Path) -> list[Path]:
    """Refine every case's CT image with a saved refiner, writing ``ct-refined.nii.gz`` and
    ``refined.json`` in the case folder (module docstring); returns the refined image paths.

    Raises:
        DatasetError: not a dataset with CT images.
        ValueError: not a refiner file (`medphys.neural.load_refiner`).
    """
    from .. import neural

    where = "medphys.pipelines.refine_dataset"
    root = Path(folder)
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise DatasetError(f"{where}: {root} has no manifest.jsonl; is it a medphys dataset?")
    entries = [
        json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line
    ]
    refiner, meta, digest = neural.load_refiner(refiner_path)
    written = []
    for entry in entries:
        if "ct" not in entry:
            raise DatasetError(f"{where}: case {entry.get('case')} has no CT image")
        ct_path = root / entry["ct"]
        case_dir = ct_path.parent
        sidecar = case_dir / REFINED_SIDECAR
        out = case_dir / REFINED_IMAGE
        source = _digest(ct_path)
        if sidecar.is_file() and out.is_file():
            previous = _read_json(sidecar, where)
            if previous.get("refiner_sha256") == digest and previous.get("input_sha256") == source:
                written.append(out)
                continue
        sidecar.unlink(missing_ok=True)
        image = load_nifti(ct_path)
        refined = neural.refine(refiner, image.data)
        save_nifti(type(image)(data=np.asarray(refined, np.float32), affine=image.affine), out)
        record = {
            "case": entry["case"],
            "image": REFINED_IMAGE,
            "input": ct_path.name,
            "input_sha256": source,
            "refiner": str(Path(refiner_path).name),
            "refiner_sha256": digest,
            "refiner_meta": meta,
            "units": "HU",
        }
        write_text_atomic(sidecar, json.dumps(record, indent=2, sort_keys=True) + "\n")
        written.append(out)
    return written


def load_refined(folder: str | Path) -> np.ndarray:
    """``(cases, x, y, z)`` the refined CT images of a dataset, in manifest order (HU).

    Raises:
        DatasetError: not a dataset with projections, or a case without ``ct-refined.nii.gz``.
    """
    where = "medphys.pipelines.load_refined"
    images = []
    for entry in dataset_cases(folder, where=where):
        path = Path(entry["ct"]).parent / REFINED_IMAGE
        if not path.is_file():
            raise DatasetError(
                f"{where}: case {entry['case']} has no {REFINED_IMAGE}; run `medphys refine "
                "apply` (or `medphys.pipelines.refine_dataset`) first"
            )
        images.append(np.asarray(load_nifti(path).data, np.float32))
    return np.stack(images)
