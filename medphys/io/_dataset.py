"""Reading the layout of a dataset folder written by ``medphys generate`` (for exports).

A dataset folder holds ``manifest.jsonl`` (one JSON object per case: ``{"case": name, key: path,
...}``, paths relative to the folder) and ``cases/<name>/`` with one NIfTI file per image key
(``ct.nii.gz``, ``mr.nii.gz``) and ``label.nii.gz``. Exports read only what they need from it: the
case names, the NIfTI file of each key, and ``dataset.json``'s ``config_digest`` when present. Keys
the manifest adds later (sidecars, projections, provenance) are ignored, and a folder without a
manifest is read from ``cases/*/`` alone.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import nibabel as nib

from ..volume import Structure
from ._nifti import _read_meta, _structure

LABEL_KEY = "label"
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclasses.dataclass(frozen=True)
class CaseFiles:
    """One case of a dataset folder: its name and the NIfTI file of each key (``label``, ``ct``...)."""

    name: str
    files: dict[str, Path]


def _is_nifti(path: str) -> bool:
    return path.lower().endswith(_NIFTI_SUFFIXES)


def read_cases(where: str, dataset_dir: str | Path) -> list[CaseFiles]:
    """The cases of ``dataset_dir`` in manifest order (or sorted by name without a manifest).

    Raises:
        FileNotFoundError: no such folder, or a folder with neither a manifest nor ``cases/``.
        ValueError: a manifest line that is not a JSON object with a ``case`` name, or a case
            without a label file.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{where}: `dataset_dir` {str(root)!r} is not a folder")
    manifest = root / "manifest.jsonl"
    cases: list[CaseFiles] = []
    if manifest.is_file():
        lines = manifest.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise ValueError(
                    f"{where}: {str(manifest)!r} line {number} is not JSON ({exc})"
                ) from None
            if not isinstance(entry, dict) or not isinstance(entry.get("case"), str):
                raise ValueError(
                    f"{where}: {str(manifest)!r} line {number} must be a JSON object with a "
                    f"string `case` (got {line[:80]!r})"
                )
            name = entry["case"]
            files = {
                key: root / value
                for key, value in entry.items()
                if key != "case" and isinstance(value, str) and _is_nifti(value)
            }
            # Files the manifest does not name but the case folder holds (a key renamed later).
            for path in sorted((root / "cases" / name).glob("*.nii*")):
                files.setdefault(_key_of(path), path)
            cases.append(CaseFiles(name, files))
    elif (root / "cases").is_dir():
        for case_dir in sorted(p for p in (root / "cases").iterdir() if p.is_dir()):
            files = {_key_of(p): p for p in sorted(case_dir.glob("*.nii*"))}
            if files:
                cases.append(CaseFiles(case_dir.name, files))
    else:
        raise FileNotFoundError(
            f"{where}: {str(root)!r} holds neither manifest.jsonl nor cases/; give the folder "
            "written by `medphys generate --out`"
        )
    if not cases:
        raise ValueError(f"{where}: {str(root)!r} holds no cases")
    for case in cases:
        if LABEL_KEY not in case.files:
            raise ValueError(
                f"{where}: case {case.name!r} of {str(root)!r} has no label file "
                f"(found keys {sorted(case.files)})"
            )
        for key, path in case.files.items():
            if not path.is_file():
                raise FileNotFoundError(
                    f"{where}: case {case.name!r}: the {key!r} file {str(path)!r} does not exist"
                )
    return cases


def _key_of(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def image_keys(cases: list[CaseFiles]) -> list[str]:
    """The image keys every case has (all NIfTI keys but the label), sorted."""
    common = set(cases[0].files)
    for case in cases[1:]:
        common &= set(case.files)
    return sorted(common - {LABEL_KEY})


def read_structures(where: str, path: Path) -> tuple[Structure, ...]:
    """The structure table in a label file's header extension, without reading its voxels."""
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for foreign files
        raise ValueError(f"{where}: {str(path)!r} is not a readable NIfTI file ({exc})") from None
    meta = _read_meta(img)
    if "structures" not in meta:
        raise ValueError(
            f"{where}: the label file {str(path)!r} carries no medphys structure table, so its "
            "values cannot be matched by structure name; write it with medphys.io.save_nifti"
        )
    return tuple(_structure(path, row) for row in meta["structures"])


def dataset_meta(dataset_dir: str | Path) -> dict[str, Any]:
    """``dataset.json`` of a dataset folder, or ``{}`` when it is missing or unreadable."""
    path = Path(dataset_dir) / "dataset.json"
    try:
        meta: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def dataset_digest(meta: dict[str, Any]) -> str | None:
    """The dataset's digest from its ``dataset.json`` (``digest`` or ``config_digest``), if any."""
    for key in ("digest", "config_digest"):
        if isinstance(meta.get(key), str):
            return meta[key]
    return None


def dataset_labels(meta: dict[str, Any]) -> dict[str, int] | None:
    """The dataset-wide label table (``labels``: name → value) of a ``dataset.json``, if any."""
    table = meta.get("labels")
    if not isinstance(table, dict) or not table:
        return None
    if not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in table.items()
    ):
        return None
    return dict(table)
