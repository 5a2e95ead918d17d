"""NIfTI-1 reading and writing through nibabel, exact for data, dtype and affine.

NIfTI-1 stores the affine (sform) in float32. To round-trip any float64 affine exactly, medphys also
writes the full-precision affine, and for a `LabeledVolume` its structure table, as JSON in a NIfTI
header extension (code 6, "comment"); other readers (MONAI, ITK, FSL) ignore it and use the sform.
Each structure row is ``[label, name, material]``, followed by a table of MR values
(`medphys.volume.MRValues`) when the structure overrides its material's; files written before
that field existed (three entries per row) load unchanged.
On load the extension's affine is used only if it agrees with the header's to float32 precision, so a
file edited by another tool (which rewrites the sform) is read by its header.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..volume import LabeledVolume, MRValues, Structure, Volume
from ._atomic import atomic_path

_EXT_CODE = 6  # NIFTI_ECODE_COMMENT
_EXT_KEY = "medphys"
_SUPPORTED = (
    np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
    np.float32, np.float64, np.complex64, np.complex128,
)  # fmt: skip


def _suffix_ok(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def save_nifti(volume: Volume | LabeledVolume, path: str | Path) -> Path:
    """Write a volume to NIfTI-1 (``.nii`` or ``.nii.gz``), atomically.

    Args:
        volume: a `Volume` (its data dtype is kept) or a `LabeledVolume` (labels are written with
            their integer dtype and the structure table goes into a header extension; fractions
            are not written).
        path: destination ending in ``.nii`` or ``.nii.gz``.

    Returns:
        the path written.

    Raises:
        ValueError: the path does not end in ``.nii``/``.nii.gz``.
        TypeError: a dtype NIfTI cannot hold (e.g. bool: convert to uint8).
    """
    path = Path(path)
    if not _suffix_ok(path):
        raise ValueError(
            f"medphys.io.save_nifti: `path` must end in .nii or .nii.gz (got {str(path)!r})"
        )
    if isinstance(volume, LabeledVolume):
        data = np.asarray(volume.labels)
    elif isinstance(volume, Volume):
        data = np.asarray(volume.data)
    else:
        raise TypeError(
            f"medphys.io.save_nifti: `volume` must be a medphys.Volume or LabeledVolume "
            f"(got {type(volume).__name__})"
        )
    if data.dtype.type not in _SUPPORTED:
        allowed = ", ".join(np.dtype(t).name for t in _SUPPORTED)
        raise TypeError(
            f"medphys.io.save_nifti: dtype {data.dtype} cannot be stored; use one of {allowed}"
        )
    affine = np.asarray(volume.affine, dtype=np.float64)
    img = nib.Nifti1Image(data, affine, dtype=data.dtype)
    header = img.header
    header.set_xyzt_units(xyz="mm", t="sec")
    img.set_sform(affine, code=1)  # scanner-anatomical
    img.set_qform(affine, code=1)
    meta: dict[str, Any] = {"affine": affine.tolist()}
    if isinstance(volume, LabeledVolume):
        meta["structures"] = [structure_row(s) for s in volume.structures]
        header["intent_code"] = 1002  # NIFTI_INTENT_LABEL
    payload = json.dumps({_EXT_KEY: meta}, separators=(",", ":")).encode()
    header.extensions.append(nib.nifti1.Nifti1Extension(_EXT_CODE, payload))
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = img.to_bytes()
    if path.name.lower().endswith(".gz"):
        # no file name and a zero time stamp in the gzip header: the same volume, the same bytes
        payload = gzip.compress(payload, compresslevel=1, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path


def structure_row(s: Structure) -> list[Any]:
    """``[label, name, material]``, plus ``{pd, t1_s, t2_s, source[, t2star_s]}`` with MR values."""
    row: list[Any] = [int(s.label), s.name, s.material]
    if s.mr is not None:
        mr = {"pd": s.mr.pd, "t1_s": s.mr.t1_s, "t2_s": s.mr.t2_s, "source": s.mr.source}
        if s.mr.t2star_s is not None:
            mr["t2star_s"] = s.mr.t2star_s
        row.append(mr)
    return row


def _structure(path: Path, row: Any) -> Structure:
    """A label-table row from the extension (three entries, or four with MR values)."""
    if not isinstance(row, list) or len(row) not in (3, 4):
        raise ValueError(
            f"medphys.io.load_nifti: {str(path)!r}: a structure row of the medphys extension "
            f"must be [label, name, material] or [label, name, material, mr] (got {row!r})"
        )
    mr = None
    if len(row) == 4 and row[3] is not None:
        v = row[3]
        try:
            mr = MRValues.create(
                v["pd"],
                v["t1_s"],
                v["t2_s"],
                str(v.get("source", "")),
                t2star_s=v.get("t2star_s"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"medphys.io.load_nifti: {str(path)!r}: structure {row[1]!r} has invalid MR "
                f"values {v!r} ({exc})"
            ) from None
    return Structure(int(row[0]), str(row[1]), str(row[2]), mr)


def _read_meta(img: nib.Nifti1Image) -> dict[str, Any]:
    for ext in img.header.extensions:
        if ext.get_code() != _EXT_CODE:
            continue
        try:
            content = json.loads(ext.get_content())
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(content, dict) and isinstance(content.get(_EXT_KEY), dict):
            return content[_EXT_KEY]
    return {}


def load_nifti(path: str | Path) -> Volume | LabeledVolume:
    """Read a NIfTI file written by medphys or any other tool.

    Returns:
        a `LabeledVolume` when the file carries a medphys structure table, else a `Volume` whose
        data keeps the on-disk dtype (scaled files are returned as float, as nibabel scales them).
        4-D files with a single volume are squeezed; 2-D files get z = 1.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a NIfTI file, or more than one volume in a 4-D file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"medphys.io.load_nifti: no such file {str(path)!r}")
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for foreign files
        raise ValueError(
            f"medphys.io.load_nifti: {str(path)!r} is not a readable NIfTI file ({exc})"
        ) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"medphys.io.load_nifti: {str(path)!r} is not a NIfTI file")
    data = np.asanyarray(img.dataobj)
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(
            f"medphys.io.load_nifti: {str(path)!r} has shape {data.shape}; medphys volumes are 3-D"
        )
    affine = np.asarray(img.affine, dtype=np.float64)
    meta = _read_meta(img)
    if "affine" in meta:
        full = np.asarray(meta["affine"], dtype=np.float64)
        if full.shape == (4, 4) and np.allclose(full, affine, rtol=1e-6, atol=1e-5):
            affine = full
    data = np.ascontiguousarray(data)
    if "structures" in meta and np.issubdtype(data.dtype, np.integer):
        rows = tuple(_structure(path, row) for row in meta["structures"])
        return LabeledVolume(labels=data, affine=affine, structures=rows)
    return Volume(data=data, affine=affine)
