"""Refinement as a dataset stage: read a generated dataset with its CT projections into
`medphys.neural.SimulatedCT` (or with its MR scans into `medphys.neural.SimulatedMR`), and write
refined images beside the physics images.

A dataset made by ``medphys generate`` with ``[output] save_projections = true`` holds, per case,
``ct.nii.gz`` (HU), ``label.nii.gz`` and ``projections-ct.npy`` (the scan's post-log line
integrals); ``dataset.json`` holds the CT protocol's definition. `load_ct_dataset` rebuilds the
protocol from that definition (with the job's beam-hardening override), the projector of its
geometry on the case grid and the water calibration, and linearises the projections as the
reconstruction did, so the refiner's physics terms and `medphys.audit.physics_audit` judge each
image by the measurements that produced it.

With ``[output] save_kspace = true`` each case also holds ``kspace-mr.npz`` (the MR scan's coil
k-space, coil maps, sampling mask and noise level); `load_mr_dataset` rebuilds each scan as a
`medphys.simulators.mr.MRResult` around ``mr.nii.gz`` (without tissue maps, which are not kept).

`refine_dataset` writes, for a CT refiner, ``ct-refined.nii.gz`` and ``refined.json``, and for
an MR refiner ``mr-refined.nii.gz`` and ``refined-mr.json`` (the refiner file's SHA-256, its
metadata, the digest of the input image) in each case folder, atomically; a rerun skips cases
already refined by the same refiner file and redoes the others.
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
# per modality: the arm image, its raw data key, the refined image and its sidecar
_FILES = {
    "ct": ("ct", "projections-ct", REFINED_IMAGE, REFINED_SIDECAR),
    "mr": ("mr", "kspace-mr", "mr-refined.nii.gz", "refined-mr.json"),
}
_RAW_OPTION = {"ct": "save_projections", "mr": "save_kspace"}


class DatasetError(ValueError):
    """The folder is not a usable generated dataset (message says why and what to do)."""


def _read_json(path: Path, where: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"{where}: {path} not found; give the folder `medphys generate --out` wrote"
        ) from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: {path} is not valid JSON ({exc})") from None


def _modality(where: str, modality: str) -> str:
    if modality not in _FILES:
        raise ValueError(f"{where}: `modality` must be 'ct' or 'mr' (got {modality!r})")
    return modality


def dataset_cases(
    folder: str | Path, *, where: str, modality: str = "ct", cases: Any = None
) -> list[dict[str, Any]]:
    """The manifest's complete cases with their image, label and raw-data paths (absolute):
    the CT image and projections, or the MR image and scan; only the indices ``cases`` when
    given."""
    arm, raw, _, _ = _FILES[_modality(where, modality)]
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{where}: no dataset folder {root}")
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise DatasetError(f"{where}: {root} has no manifest.jsonl; is it a medphys dataset?")
    lines = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line]
    if not lines:
        raise DatasetError(f"{where}: {manifest} lists no complete case")
    if cases is not None:
        lines = [lines[i] for i in np.asarray(cases, int).reshape(-1)]
    out = []
    for entry in lines:
        if arm not in entry:
            raise DatasetError(
                f"{where}: case {entry.get('case')} has no {arm.upper()} image (no `{arm}` arm)"
            )
        if raw not in entry:
            what = "CT projections" if modality == "ct" else "MR scan (k-space)"
            raise DatasetError(
                f"{where}: case {entry.get('case')} has no {what}; generate the dataset with "
                f"`[output] {_RAW_OPTION[modality]} = true` (the refiner's physics needs it)"
            )
        out.append({k: (root / v if k != "case" else v) for k, v in entry.items()})
    return out


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
    entries = dataset_cases(root, where=where, cases=cases)
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


def mr_scan(image_path: Path, scan_path: Path) -> Any:
    """A case's MR scan from ``mr.nii.gz`` and ``kspace-mr.npz``, as an `MRResult` with no
    tissue maps (``maps`` None)."""
    import jax.numpy as jnp

    from ..simulators import mr

    with np.load(scan_path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("kspace", "coil_maps", "mask", "noise_std")}
    image = load_nifti(image_path)
    return mr.MRResult(
        kspace=jnp.asarray(arrays["kspace"]),
        image=type(image)(data=jnp.asarray(image.data, jnp.float32), affine=image.affine),
        maps=None,
        coil_maps=jnp.asarray(arrays["coil_maps"]),
        mask=jnp.asarray(arrays["mask"]),
        noise_std=jnp.asarray(arrays["noise_std"]),
        field_params=None,
    )


def load_mr_dataset(folder: str | Path, *, cases: Any = None) -> tuple[Any, list[str]]:
    """A generated dataset's MR cases as `medphys.neural.SimulatedMR` (module docstring).

    Args:
        folder: the dataset folder (``medphys generate --out``).
        cases: optional indices into the manifest's cases (all when None).

    Returns:
        ``(simulated, case_names)``.

    Raises:
        DatasetError: not a dataset, no MR scans saved, cases on different grids or with
            unreadable scan files.
    """
    from .. import neural

    where = "medphys.pipelines.load_mr_dataset"
    entries = dataset_cases(folder, where=where, modality="mr", cases=cases)
    scans, labels = [], []
    for entry in entries:
        try:
            scan = mr_scan(entry["mr"], entry["kspace-mr"])
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(
                f"{where}: case {entry['case']}: {entry['kspace-mr'].name} is not a medphys MR "
                f"scan file ({exc})"
            ) from None
        if scans and scan.kspace.shape != scans[0].kspace.shape:
            raise DatasetError(
                f"{where}: case {entry['case']} lies on another grid than the first case; the "
                "refiner trains on one grid"
            )
        scans.append(scan)
        labels.append(np.asarray(load_nifti(entry["label"]).labels))
    return neural.SimulatedMR.create(scans, np.stack(labels)), [e["case"] for e in entries]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refine_dataset(folder: str | Path, refiner_path: str | Path) -> list[Path]:
    """Refine every case's image of the refiner's modality with a saved refiner, writing the
    refined image and its sidecar in the case folder (module docstring); returns the refined
    image paths. An MR refiner refines each case's scan (`medphys.neural.refine_mr`), with the
    data-consistency layer unless its training turned it off; a label-conditioned refiner also
    reads each case's ``label.nii.gz``.

    Raises:
        DatasetError: not a dataset with images of the refiner's modality (MR: and scans).
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
    modality = refiner.modality
    arm, raw, image_name, sidecar_name = _FILES[modality]
    written = []
    for entry in entries:
        if arm not in entry or (modality == "mr" and raw not in entry):
            raise DatasetError(
                f"{where}: case {entry.get('case')} has no {arm.upper()} image"
                + (" and scan (`[output] save_kspace = true`)" if modality == "mr" else "")
                + f" for this {modality.upper()} refiner"
            )
        image_path = root / entry[arm]
        case_dir = image_path.parent
        sidecar = case_dir / sidecar_name
        out = case_dir / image_name
        source = _digest(image_path)
        if sidecar.is_file() and out.is_file():
            previous = _read_json(sidecar, where)
            if previous.get("refiner_sha256") == digest and previous.get("input_sha256") == source:
                written.append(out)
                continue
        sidecar.unlink(missing_ok=True)
        image = load_nifti(image_path)
        labels = load_nifti(root / entry["label"]).labels if refiner.n_labels else None
        if modality == "ct":
            refined = neural.refine(refiner, image.data, labels=labels)
        else:
            scan = mr_scan(image_path, root / entry[raw])
            dc = bool(meta.get("data_consistency", True))
            refined = neural.refine_mr(refiner, scan, labels=labels, data_consistency=dc)
        save_nifti(type(image)(data=np.asarray(refined, np.float32), affine=image.affine), out)
        record = {
            "case": entry["case"],
            "image": image_name,
            "input": image_path.name,
            "input_sha256": source,
            "refiner": str(Path(refiner_path).name),
            "refiner_sha256": digest,
            "refiner_meta": meta,
            "units": "HU" if modality == "ct" else f"magnitude, the scale of {arm}.nii.gz",
        }
        write_text_atomic(sidecar, json.dumps(record, indent=2, sort_keys=True) + "\n")
        written.append(out)
    return written


def load_refined(folder: str | Path, *, modality: str = "ct") -> np.ndarray:
    """``(cases, x, y, z)`` the refined CT (HU) or MR images of a dataset, in manifest order.

    Raises:
        DatasetError: not a dataset with the raw data, or a case without its refined image.
    """
    where = "medphys.pipelines.load_refined"
    arm, _, image_name, _ = _FILES[_modality(where, modality)]
    images = []
    for entry in dataset_cases(folder, where=where, modality=modality):
        path = Path(entry[arm]).parent / image_name
        if not path.is_file():
            raise DatasetError(
                f"{where}: case {entry['case']} has no {image_name}; run `medphys refine "
                "apply` (or `medphys.pipelines.refine_dataset`) first"
            )
        images.append(np.asarray(load_nifti(path).data, np.float32))
    return np.stack(images)
