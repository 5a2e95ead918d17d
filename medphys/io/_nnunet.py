"""nnU-Net v2 raw datasets: ``DatasetXXX_Name/{imagesTr,labelsTr,dataset.json}``.

Layout written (nnU-Net v2's "raw" format, read by ``nnUNetv2_plan_and_preprocess``)::

    out_root/Dataset042_Torso/
      dataset.json                 channel_names, labels, numTraining, file_ending, medphys
      imagesTr/<case>_0000.nii.gz  channel 0 (e.g. CT in HU, float32)
      imagesTr/<case>_0001.nii.gz  channel 1 (e.g. MR), one file per channel
      labelsTr/<case>.nii.gz       labels in the dataset-wide table (uint8/uint16)

Labels are renumbered to one table for the whole dataset, matched by structure name
(`medphys.io.label_table`: background 0, then the names sorted), so a value means the same
structure in every case. nnU-Net picks its intensity normalisation from the channel name:
``"CT"`` gets its CT normalisation (clipping to the foreground's percentiles), any other name
z-scoring; medphys names the ``ct`` channel ``"CT"`` and ``mr`` ``"MR"``.

References:
    Isensee F, Jaeger PF, Kohl SAA, Petersen J, Maier-Hein KH. nnU-Net: a self-configuring
    method for deep learning-based biomedical image segmentation. Nat Methods 18, 203-211 (2021).
    nnU-Net v2 documentation, "dataset_format.md".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..volume import LabeledVolume, Volume
from ._atomic import write_text_atomic
from ._dataset import (
    LABEL_KEY,
    dataset_digest,
    dataset_labels,
    dataset_meta,
    image_keys,
    read_cases,
    read_structures,
)
from ._labels import check_label_table, label_table, remap_labels
from ._nifti import load_nifti, save_nifti

FILE_ENDING = ".nii.gz"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_CASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CHANNEL_NAMES = {"ct": "CT", "mr": "MR"}
_SORTED = "background 0, then the other structure names in sorted (Python string) order"
_GIVEN = "given by the caller"
_FROM_DATASET = "the source dataset's table (dataset.json `labels`)"
_GEOMETRY_ATOL_MM = 1e-4


def channel_name(key: str) -> str:
    """The nnU-Net channel name of an image key: ``ct`` → ``"CT"`` (CT normalisation), ``mr`` → ``"MR"``."""
    return _CHANNEL_NAMES.get(key, key.upper())


def _check_id_and_name(where: str, dataset_id: Any, name: Any) -> str:
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, np.integer)):
        raise TypeError(
            f"{where}: `dataset_id` must be an integer from 1 to 999 (got {dataset_id!r})"
        )
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(
            f"{where}: `dataset_id` must be from 1 to 999, nnU-Net's three digits (got {dataset_id})"
        )
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{where}: `name` must be 1-64 letters, digits, '-' or '_', starting with a letter "
            f"or digit (got {name!r}); e.g. 'MedphysTorso'"
        )
    return f"Dataset{int(dataset_id):03d}_{name}"


def _check_channels(where: str, channels: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(channels, str):
        channels = (channels,)
    try:
        out = tuple(channels)
    except TypeError:
        raise TypeError(
            f"{where}: `channels` must be a sequence of image keys (got {channels!r})"
        ) from None
    if not out:
        raise ValueError(
            f"{where}: `channels` must name at least one image key; allowed: {list(allowed)}"
        )
    for key in out:
        if key not in allowed:
            raise ValueError(
                f"{where}: `channels` holds {key!r}, which is not an image of this dataset; "
                f"allowed: {list(allowed)}"
            )
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: `channels` names a key twice (got {list(out)})")
    return out


def _prepare_folder(where: str, out_root: Path, folder_name: str, overwrite: bool) -> Path:
    out_root.mkdir(parents=True, exist_ok=True)
    prefix = folder_name[: len("Dataset000_")]
    others = sorted(
        p.name for p in out_root.iterdir() if p.name.startswith(prefix) and p.name != folder_name
    )
    if others:
        raise ValueError(
            f"{where}: {str(out_root)!r} already holds {others[0]!r} with the same dataset id; "
            "nnU-Net finds datasets by id, so choose another `dataset_id`"
        )
    folder = out_root / folder_name
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise ValueError(
            f"{where}: {str(folder)!r} already exists and is not empty; pass overwrite=True to "
            "replace it, or choose another `dataset_id`/`name`"
        )
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    return folder


def _same_grid(where: str, case: str, key: str, image: Volume, labels: LabeledVolume) -> None:
    if tuple(image.shape) != tuple(labels.shape) or not np.allclose(
        np.asarray(image.affine, np.float64),
        np.asarray(labels.affine, np.float64),
        rtol=0,
        atol=_GEOMETRY_ATOL_MM,
    ):
        raise ValueError(
            f"{where}: case {case!r}: the {key!r} image (shape {tuple(image.shape)}) is not on the "
            f"label grid (shape {tuple(labels.shape)}); nnU-Net needs every channel on the labels' "
            f"voxels (affines must agree within {_GEOMETRY_ATOL_MM} mm)"
        )


def _write_case(
    folder: Path,
    case: str,
    channels: Sequence[str],
    images: Mapping[str, Volume],
    labels: LabeledVolume,
    table: Mapping[str, int],
    where: str,
) -> list[Path]:
    written = []
    for index, key in enumerate(channels):
        image = images[key]
        _same_grid(where, case, key, image, labels)
        data = np.asarray(image.data)
        if not np.issubdtype(data.dtype, np.floating):
            data = data.astype(np.float32)
        path = folder / "imagesTr" / f"{case}_{index:04d}{FILE_ENDING}"
        written.append(save_nifti(Volume(data=data, affine=np.asarray(image.affine)), path))
    remapped = remap_labels(labels, table)
    written.append(save_nifti(remapped, folder / "labelsTr" / f"{case}{FILE_ENDING}"))
    return written


def _write_json(
    folder: Path,
    folder_name: str,
    channels: Sequence[str],
    table: Mapping[str, int],
    cases: Sequence[str],
    provenance: Mapping[str, Any],
    label_order: str,
) -> None:
    dataset = {
        "name": folder_name,
        "description": "Synthetic images simulated by medphys from digital phantoms (no patient data)",
        "channel_names": {str(i): channel_name(key) for i, key in enumerate(channels)},
        "labels": dict(table),
        "numTraining": len(cases),
        "file_ending": FILE_ENDING,
        "medphys": {
            "version": __version__,
            "synthetic": True,
            "channels": {str(i): key for i, key in enumerate(channels)},
            "label_order": label_order,
            "cases": list(cases),
            **provenance,
        },
    }
    write_text_atomic(folder / "dataset.json", json.dumps(dataset, indent=2) + "\n")


def _accepted(where: str, table: Mapping[str, int], tables: list) -> bool:
    try:
        check_label_table(where, table, tables)
    except (TypeError, ValueError):
        return False
    return True


def _remove_stale(folder: Path, written: set[Path]) -> None:
    """After an overwrite: remove case files of an earlier export that this one did not write."""
    for sub in ("imagesTr", "labelsTr"):
        for path in (folder / sub).glob(f"*{FILE_ENDING}"):
            if path not in written:
                path.unlink()


def write_nnunet(
    out_root: str | Path,
    cases: Mapping[str, Mapping[str, Volume | LabeledVolume]],
    *,
    dataset_id: int,
    name: str,
    channels: Sequence[str] = ("ct",),
    labels: Mapping[str, int] | None = None,
    overwrite: bool = False,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write an nnU-Net v2 raw dataset from in-memory volumes.

    Args:
        out_root: the folder that holds nnU-Net datasets (``nnUNet_raw``).
        cases: case identifier → ``{"label": LabeledVolume, "ct": Volume, ...}``; identifiers
            become file names (letters, digits, ``-``, ``_``, ``.``).
        dataset_id: nnU-Net's dataset number, 1 to 999.
        name: the dataset's name (letters, digits, ``-``, ``_``): the folder is
            ``DatasetXXX_<name>``.
        channels: the image keys written as channels ``_0000``, ``_0001``, ... in this order.
        labels: the dataset-wide table (name → value: background 0, then 1, 2, ... without
            gaps, every structure name of the cases); default `label_table` of the cases.
        overwrite: replace an existing, non-empty dataset folder of the same id and name.
        provenance: extra JSON-able fields for the ``medphys`` entry of ``dataset.json``.

    Returns:
        the dataset folder.

    Raises:
        ValueError / TypeError: a dataset id outside 1-999, a name or case identifier with other
            characters, a channel some case lacks, images off the label grid, an existing folder
            without ``overwrite``.
    """
    where = "medphys.io.write_nnunet"
    folder_name = _check_id_and_name(where, dataset_id, name)
    if not isinstance(cases, Mapping) or not cases:
        raise ValueError(f"{where}: `cases` must be a non-empty mapping of case id to volumes")
    for case, values in cases.items():
        if not isinstance(case, str) or not _CASE.match(case):
            raise ValueError(
                f"{where}: case identifier {case!r} must be letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )
        if not isinstance(values, Mapping):
            raise TypeError(
                f"{where}: case {case!r} must map keys to volumes, e.g. "
                f"{{'label': LabeledVolume, 'ct': Volume}} (got {type(values).__name__})"
            )
        if not isinstance(values.get(LABEL_KEY), LabeledVolume):
            raise TypeError(
                f"{where}: case {case!r} needs a medphys.LabeledVolume under {LABEL_KEY!r} "
                f"(got {type(values.get(LABEL_KEY)).__name__})"
            )
    allowed = sorted(
        set.intersection(
            *({k for k, v in values.items() if isinstance(v, Volume)} for values in cases.values())
        )
    )
    channels = _check_channels(where, channels, allowed)
    tables = [values[LABEL_KEY].structures for values in cases.values()]
    if labels is None:
        table, order = label_table(tables), _SORTED
    else:
        table, order = check_label_table(where, labels, tables), _GIVEN
    folder = _prepare_folder(where, Path(out_root), folder_name, overwrite)
    written: set[Path] = set()
    for case, values in cases.items():
        images = {k: values[k] for k in channels}
        written.update(_write_case(folder, case, channels, images, values[LABEL_KEY], table, where))
    _remove_stale(folder, written)
    _write_json(folder, folder_name, channels, table, list(cases), dict(provenance or {}), order)
    return folder


def export_nnunet(
    dataset_dir: str | Path,
    out_root: str | Path,
    *,
    dataset_id: int,
    name: str,
    channels: Sequence[str] = ("ct",),
    labels: Mapping[str, int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Export a dataset folder written by ``medphys generate`` as an nnU-Net v2 raw dataset.

    Cases are read one at a time (memory holds one case). Each case's labels are renumbered,
    matched by structure name (the tables in the label files' headers), to one dataset-wide
    table: ``labels`` when given; else the source ``dataset.json``'s ``labels`` table when it
    is one nnU-Net accepts (background 0, values without gaps) and names every structure of
    the cases; else `label_table` (background 0, then the names sorted). ``dataset.json``
    records under ``medphys`` the source dataset's digest, the source case of each training
    case and which table was used.

    Args:
        dataset_dir: the folder written by ``medphys generate --out``.
        out_root: the folder that holds nnU-Net datasets (``nnUNet_raw``).
        dataset_id: nnU-Net's dataset number, 1 to 999.
        name: the dataset's name (letters, digits, ``-``, ``_``).
        channels: image keys of the dataset (``"ct"``, ``"mr"``) written as channels in order.
        labels: the dataset-wide table (name → value), checked as in `write_nnunet`.
        overwrite: replace an existing, non-empty dataset folder of the same id and name.

    Returns:
        the dataset folder ``out_root/DatasetXXX_<name>``.

    Raises:
        FileNotFoundError: ``dataset_dir`` is not a dataset folder, or a file it names is missing.
        ValueError / TypeError: as `write_nnunet`; label files without a medphys structure table.

    Example:
        >>> export_nnunet("out", "nnUNet_raw", dataset_id=42, name="Torso")  # doctest: +SKIP
        PosixPath('nnUNet_raw/Dataset042_Torso')
    """
    where = "medphys.io.export_nnunet"
    folder_name = _check_id_and_name(where, dataset_id, name)
    cases = read_cases(where, dataset_dir)
    for case in cases:
        if not _CASE.match(case.name):
            raise ValueError(
                f"{where}: case name {case.name!r} cannot be an nnU-Net case identifier "
                "(letters, digits, '-', '_' or '.', starting with a letter or digit)"
            )
    channels = _check_channels(where, channels, image_keys(cases))
    tables = [read_structures(where, c.files[LABEL_KEY]) for c in cases]
    meta = dataset_meta(dataset_dir)
    source_table = dataset_labels(meta)
    if labels is not None:
        table, order = check_label_table(where, labels, tables), _GIVEN
    elif source_table is not None and _accepted(where, source_table, tables):
        table, order = check_label_table(where, source_table, tables), _FROM_DATASET
    else:
        table, order = label_table(tables), _SORTED
    folder = _prepare_folder(where, Path(out_root), folder_name, overwrite)
    written: set[Path] = set()
    for case in cases:
        labels = load_nifti(case.files[LABEL_KEY])
        if not isinstance(labels, LabeledVolume):
            raise ValueError(
                f"{where}: case {case.name!r}: {str(case.files[LABEL_KEY])!r} holds no label table"
            )
        images = {}
        for key in channels:
            image = load_nifti(case.files[key])
            if isinstance(image, LabeledVolume):
                raise ValueError(
                    f"{where}: case {case.name!r}: the {key!r} file is a label map, not an image"
                )
            images[key] = image
        written.update(_write_case(folder, case.name, channels, images, labels, table, where))
    _remove_stale(folder, written)
    provenance = {"source_dataset": Path(dataset_dir).resolve().name}
    digest = dataset_digest(meta)
    if digest is not None:
        provenance["source_digest"] = digest
    _write_json(folder, folder_name, channels, table, [c.name for c in cases], provenance, order)
    return folder
