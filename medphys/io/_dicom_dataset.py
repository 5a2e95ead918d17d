"""DICOM export of a dataset folder written by ``medphys generate``: CT, MR and SEG per case.

Layout written::

    out_root/<case>/CT/slice-0001.dcm ...   CT Image Storage series (HU)
    out_root/<case>/MR/slice-0001.dcm ...   MR Image Storage series
    out_root/<case>/SEG/labels.dcm          DICOM Segmentation referencing the CT (else the MR)

UIDs derive from the source dataset's digest in ``dataset.json`` (its folder name when it has none) and
the case name, so exporting the same dataset twice gives the same bytes; a case's series share
one StudyInstanceUID and FrameOfReferenceUID.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..volume import LabeledVolume, Volume
from ._dataset import LABEL_KEY, dataset_digest, dataset_meta, image_keys, read_cases
from ._dicom import save_dicom_series
from ._dicom_seg import save_dicom_seg
from ._nifti import load_nifti

_MODALITY = {"ct": "CT", "mr": "MR"}


def export_dicom(
    dataset_dir: str | Path,
    out_root: str | Path,
    *,
    modalities: Sequence[str] = ("ct", "mr"),
    seg: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """Export every case of a dataset folder as DICOM series (and a SEG of its labels).

    Args:
        dataset_dir: the folder written by ``medphys generate --out``.
        out_root: where the case folders are written.
        modalities: image keys to write, from ``"ct"`` and ``"mr"``.
        seg: also write the labels as a DICOM Segmentation referencing the first modality.
        overwrite: replace ``.dcm`` files already in the series folders.

    Returns:
        the case folders written, in case order.

    Raises:
        FileNotFoundError / ValueError: not a dataset folder; a modality that is not one of
            ``ct``/``mr`` or that the dataset lacks; as `save_dicom_series` / `save_dicom_seg`.
    """
    where = "medphys.io.export_dicom"
    cases = read_cases(where, dataset_dir)
    available = [k for k in image_keys(cases) if k in _MODALITY]
    modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    if not modalities:
        raise ValueError(f"{where}: `modalities` must name at least one of {available}")
    for key in modalities:
        if key not in available:
            raise ValueError(
                f"{where}: `modalities` holds {key!r}, which is not a DICOM-exportable image of "
                f"this dataset; allowed: {available}"
            )
    root = dataset_digest(dataset_meta(dataset_dir)) or Path(dataset_dir).resolve().name
    out = []
    for case in cases:
        case_dir = Path(out_root) / case.name
        seed = f"{root}/{case.name}"
        written = []
        for number, key in enumerate(modalities, start=1):
            image = load_nifti(case.files[key])
            if isinstance(image, LabeledVolume) or not isinstance(image, Volume):
                raise ValueError(f"{where}: case {case.name!r}: the {key!r} file is not an image")
            written.append(
                save_dicom_series(
                    image,
                    case_dir / _MODALITY[key],
                    uid_seed=seed,
                    modality=_MODALITY[key],
                    series_number=number,
                    overwrite=overwrite,
                )
            )
        if seg:
            labels = load_nifti(case.files[LABEL_KEY])
            if not isinstance(labels, LabeledVolume):
                raise ValueError(
                    f"{where}: case {case.name!r}: the label file holds no label table"
                )
            save_dicom_seg(labels, written[0], case_dir / "SEG" / "labels.dcm", uid_seed=seed)
        out.append(case_dir)
    return out
