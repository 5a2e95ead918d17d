"""The dataset sink: case results → NIfTI files, sidecars, a manifest and an overview, resumably.

Layout of an output folder::

    DIR/
      dataset.json                 job record: config, every input's digest, definitions, label table
      manifest.jsonl               one JSON line per complete case, in case order
      overview.png                 a montage of the first cases (when enabled)
      cases/case-0000/
        label.nii.gz               label map, values from the dataset-wide label table
        <arm>.nii.gz               one image per imaging arm: ct.nii.gz (HU), mr.nii.gz (float32)
        projections-<arm>.npy      simulated CT projections (optional, float32)
        kspace-<arm>.npz           the MR scan (optional): kspace, coil_maps (complex64), mask,
                                   noise_std (float32)
        case.json                  sidecar: streams, phantom draw, definitions, digests, versions

Every file is written under a hidden ``.partial`` name and renamed; ``case.json`` is written last,
so a case is complete when its sidecar exists and records the job digest. The manifest is rewritten
after each case, so a killed run's manifest lists exactly its complete cases. At the next start
leftover ``.partial`` files are removed and complete cases are skipped.

Labels: one table for the whole dataset (``dataset.json["labels"]``, name → value: background 0,
then the structure names of every phantom family, sorted; `medphys.io.label_table`), so a value
means the same structure in every case (a male-only and a female-only organ get different values).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import (
    atomic_path,
    remap_labels,
    remove_partial_files,
    save_nifti,
    structure_row,
    write_text_atomic,
)
from ..simulators import Modality
from ._case import CaseResult
from ._provenance import changed_inputs


class OutputError(ValueError):
    """The output folder cannot be used (not writable, full, or holds another dataset)."""


def case_name(index: int) -> str:
    return f"case-{index:04d}"


def _save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _save_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_failure(out: Path, exc: OSError) -> OutputError:
    reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return OutputError(
        f"medphys: writing to {str(out)!r} failed ({reason}); every complete case is "
        "intact: free space or fix the folder, then rerun the same command to resume"
    )


class DatasetSink:
    """Writes case results into a dataset folder; see the module docstring.

    Args:
        out: the output folder.
        digest: the job digest (`job_digest`): cases recorded with another digest are not reused.
        inputs: the digest of each input (`job_inputs`), so a mismatch can be explained.
        record: the JSON record of the job for ``dataset.json`` (config, definitions, versions).
        labels: the dataset-wide label table (`medphys.io.label_table`).
        files: per output key (``"label"``, arm names, ``"projections-<arm>"``), the file name.
        overview: write ``overview.png`` at the end.
        title: the overview's title.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        digest: str,
        inputs: dict[str, str],
        record: dict[str, Any],
        labels: dict[str, int],
        files: dict[str, str],
        overview: bool = True,
        title: str = "",
    ) -> None:
        self.out = Path(out)
        self.digest = digest
        self.inputs = inputs
        self.record = record
        self.labels = labels
        self.files = files
        self.overview = overview
        self.title = title
        self._complete: set[int] = set()

    # -- before any case runs ------------------------------------------------------------------

    def check(self, *, overwrite: bool = False) -> None:
        """Prove the folder is writable and holds no other dataset (unless ``overwrite``).

        Raises:
            OutputError: the folder is not writable, or holds a dataset made from other inputs;
                the message names the inputs that changed.
        """
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".medphys-write-test-", dir=self.out)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OutputError(
                f"medphys generate: cannot write to the output folder {str(self.out)!r} "
                f"({exc.strerror or exc}); choose a folder you can write to with --out"
            ) from None
        previous = _load_json(self.out / "dataset.json")
        if previous is None or overwrite or previous.get("digest") == self.digest:
            return
        before = previous.get("inputs") or {}
        detail = ", ".join(changed_inputs(before, self.inputs)) if before else "an older layout"
        config_keys = _changed_keys(previous.get("config"), self.record.get("config"))
        if config_keys:
            detail += f" (config keys: {', '.join(config_keys)})"
        raise OutputError(
            f"medphys generate: {str(self.out)!r} holds a dataset made from different inputs "
            f"(changed: {detail}); its cases would not match new ones: choose a new --out "
            "folder, or pass --overwrite to start over there"
        )

    def start(self, n_cases: int, *, overwrite: bool = False) -> list[int]:
        """Clean leftovers, record the job, and return the indices of the cases still to run.

        With ``overwrite``, cases made from other inputs are deleted first (never mixed in).
        """
        try:
            remove_partial_files(self.out)
            if overwrite:
                self._remove_foreign_cases()
            write_text_atomic(
                self.out / "dataset.json", json.dumps(self._dataset_record(), indent=2) + "\n"
            )
            self._complete = {i for i in range(n_cases) if self.is_complete(i)}
            self._write_manifest()
        except OSError as exc:
            raise write_failure(self.out, exc) from None
        return [i for i in range(n_cases) if i not in self._complete]

    def _dataset_record(self) -> dict[str, Any]:
        return {
            **self.record,
            "digest": self.digest,
            "inputs": self.inputs,
            "labels": self.labels,
            "files": self.files,
            "layout": "cases/case-NNNN/{label,<arm>}.nii.gz + case.json; manifest.jsonl",
        }

    def _remove_foreign_cases(self) -> None:
        cases = self.out / "cases"
        if not cases.is_dir():
            return
        for case_dir in cases.glob("case-*"):
            meta = _load_json(case_dir / "case.json")
            if case_dir.is_dir() and (meta is None or meta.get("digest") != self.digest):
                shutil.rmtree(case_dir)

    def is_complete(self, index: int) -> bool:
        """Case ``index`` has its sidecar (written last), this job's digest, and every file."""
        case_dir = self.out / "cases" / case_name(index)
        meta = _load_json(case_dir / "case.json")
        if meta is None or meta.get("digest") != self.digest:
            return False
        return all((case_dir / f).is_file() for f in meta.get("files", {}).values())

    # -- as cases complete ---------------------------------------------------------------------

    def write(self, result: CaseResult, sidecar: dict[str, Any]) -> None:
        """Write one case's files, then its sidecar, then the manifest.

        Raises:
            OutputError: a write failed (disk full, folder became read-only); complete cases
                stay intact and the failed case has no sidecar.
        """
        name = case_name(result.index)
        case_dir = self.out / "cases" / name
        try:
            case_dir.mkdir(parents=True, exist_ok=True)
            (case_dir / "case.json").unlink(missing_ok=True)
            labels = remap_labels(result.labels, self.labels)
            save_nifti(labels, case_dir / self.files["label"])
            for arm, image in result.images.items():
                save_nifti(image, case_dir / self.files[arm])
            for arm, data in result.raw.items():
                if isinstance(data, dict):
                    if f"kspace-{arm}" in self.files:
                        _save_npz(data, case_dir / self.files[f"kspace-{arm}"])
                elif f"projections-{arm}" in self.files:
                    _save_npy(np.asarray(data), case_dir / self.files[f"projections-{arm}"])
            record = {
                "case": name,
                "index": result.index,
                **sidecar,
                "digest": self.digest,
                "files": self.files,
                "labels": self.labels,
                "structures": [structure_row(s) for s in labels.structures],
                "affine": np.asarray(labels.affine).tolist(),
            }
            write_text_atomic(case_dir / "case.json", json.dumps(record, indent=2) + "\n")
            self._complete.add(result.index)
            self._write_manifest()
        except OSError as exc:
            raise write_failure(self.out, exc) from None

    def _write_manifest(self) -> Path:
        """``manifest.jsonl``: one line per complete case, paths relative to the folder.

        Keys: ``case``, ``label``, one per arm image (``ct``, ``mr``), ``projections-<arm>``,
        ``kspace-<arm>`` and ``sidecar``. No key starts with another key followed by ``_`` (MONAI reads such keys as
        metadata of the image key), so ``LoadImaged(keys=["ct", "mr", "label"])`` reads each line
        as it is.
        """
        lines = []
        for index in sorted(self._complete):
            name = case_name(index)
            entry = {"case": name}
            entry.update({k: f"cases/{name}/{v}" for k, v in self.files.items()})
            entry["sidecar"] = f"cases/{name}/case.json"
            lines.append(json.dumps(entry))
        path = self.out / "manifest.jsonl"
        write_text_atomic(path, "".join(line + "\n" for line in lines))
        return path

    def finish(self, n_cases: int, arms: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """The final manifest and overview; every case must be complete.

        Args:
            n_cases: the job's case count.
            arms: ``(name, modality)`` of each imaging arm (for the overview's panels).
        """
        incomplete = [case_name(i) for i in range(n_cases) if i not in self._complete]
        if incomplete:
            raise OutputError(
                f"medphys generate: cases {incomplete[:5]} are incomplete; rerun the same command"
            )
        try:
            manifest = self._write_manifest()
            overview = self._write_overview(n_cases, arms) if self.overview else None
        except OSError as exc:
            raise write_failure(self.out, exc) from None
        return {"manifest": str(manifest), "overview": None if overview is None else str(overview)}

    def _write_overview(
        self, n_cases: int, arms: Sequence[tuple[str, str]], *, max_cases: int = 6
    ) -> Path:
        """``overview.png``: label map, then each arm's image (axial and coronal)."""
        from ..io import load_nifti
        from ..viz import Panel, save_montage

        rows = []
        for index in range(min(n_cases, max_cases)):
            name = case_name(index)
            case_dir = self.out / "cases" / name
            meta = _load_json(case_dir / "case.json") or {}
            row = [
                Panel(
                    load_nifti(case_dir / self.files["label"]),
                    f"{name} {meta.get('phantom', '')}".rstrip(),
                )
            ]
            for arm, modality in arms:
                image = load_nifti(case_dir / self.files[arm])
                if modality == Modality.CT:
                    hu = (-1000.0, 400.0)
                    row.append(Panel(image, f"{arm.upper()} (HU) axial", window=hu))
                    row.append(Panel(image, f"{arm.upper()} coronal", plane="coronal", window=hu))
                else:
                    row.append(Panel(image, f"{arm.upper()} axial"))
                    row.append(Panel(image, f"{arm.upper()} coronal", plane="coronal"))
            rows.append(row)
        return save_montage(rows, self.out / "overview.png", title=self.title)


def _changed_keys(before: Any, now: Any, prefix: str = "") -> list[str]:
    """Dotted key paths whose values differ between two JSON-like dicts (``cases`` ignored)."""
    if not isinstance(before, dict) or not isinstance(now, dict):
        return [prefix] if before != now and prefix else []
    out = []
    for key in sorted(set(before) | set(now)):
        if not prefix and key == "cases":
            continue
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(before.get(key), dict) and isinstance(now.get(key), dict):
            out += _changed_keys(before[key], now[key], path)
        elif before.get(key) != now.get(key):
            out.append(path)
    return out


__all__ = ["DatasetSink", "OutputError", "case_name", "write_failure"]
