"""DICOM Segmentation (SEG) of a label map, referencing an image series, through highdicom.

One binary segment per structure present (the background, value 0, is not a segment); each
segment's label is the structure's name. The label map must lie on the voxels of the referenced
series (e.g. the CT written by `save_dicom_series` from the same case); its axes may be ordered
or reversed differently, the grid may not differ.

References:
    DICOM PS3.3 A.51 (Segmentation IOD), C.8.20 (Segmentation Image Module).
    Herz C, et al. highdicom: a Python library for standardized encoding of image annotations
    and machine learning model outputs in pathology and radiology. J Digit Imaging 35 (2022).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..volume import LabeledVolume
from ._atomic import atomic_path
from ._dicom import (
    _PLACEHOLDER_DATE,
    _PLACEHOLDER_TIME,
    _RAS_TO_LPS,
    DicomSeries,
    _read_datasets,
    _require,
    _select_series,
    _series_geometry,
    _uid,
)

_LESION_WORDS = ("lesion", "tumor", "tumour", "nodule", "mass", "cyst", "calcification")


def _segment_codes(name: str) -> tuple[Any, Any]:
    """Generic SNOMED CT category and type: a lesion-like name → lesion, else tissue."""
    from highdicom.sr.coding import CodedConcept

    if any(word in name.lower() for word in _LESION_WORDS):
        return (
            CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure"),
            CodedConcept("52988006", "SCT", "Lesion"),
        )
    tissue = CodedConcept("85756007", "SCT", "Tissue")
    return tissue, tissue


def _labels_on_series(
    where: str, labels: LabeledVolume, shape: tuple[int, int, int], a_dicom: np.ndarray
) -> np.ndarray:
    """The label array in the series' (column, row, slice) order; the grids must coincide."""
    a_labels = _RAS_TO_LPS @ np.asarray(labels.affine, dtype=np.float64)
    t = np.linalg.inv(a_labels) @ a_dicom  # series index → label index
    perm = np.rint(t[:3, :3])
    offset = np.rint(t[:3, 3])
    ok = (
        np.allclose(t[:3, :3], perm, atol=1e-4)
        and np.allclose(t[:3, 3], offset, atol=1e-3)
        and np.all(np.abs(perm).sum(axis=0) == 1)
        and np.all(np.abs(perm).sum(axis=1) == 1)
    )
    if ok:
        axes = [int(np.argmax(np.abs(perm[:, d]))) for d in range(3)]
        arr = np.transpose(np.asarray(labels.labels), axes)
        for d in range(3):
            p = axes[d]
            sign = perm[p, d]
            n = labels.shape[p]
            ok &= shape[d] == n and offset[p] == (0 if sign > 0 else n - 1)
            if sign < 0:
                arr = np.flip(arr, axis=d)
    if not ok:
        raise ValueError(
            f"{where}: `labels` (shape {labels.shape}) is not on the voxel grid of the source "
            f"series (shape {shape}, voxel→LPS affine {np.round(a_dicom, 4).tolist()}); the "
            "segmentation must use the referenced images' voxels"
        )
    return np.ascontiguousarray(arr)


def save_dicom_seg(
    labels: LabeledVolume,
    source: DicomSeries | str | Path,
    path: str | Path,
    *,
    uid_seed: str,
    series_number: int = 100,
) -> Path:
    """Write a label map as a DICOM Segmentation (binary, highdicom) referencing an image series.

    One segment per structure present in ``labels`` other than the background (value 0), in
    order of value; each segment's label is the structure's name, its codes are generic
    SNOMED CT ones (category and type "Tissue", or "Morphologically Abnormal Structure" /
    "Lesion" for names such as ``lesion``, ``tumor``, ``nodule``), and its algorithm is medphys's
    voxelization (type AUTOMATIC, family DCM "Phantom"). Empty frames are omitted.

    Args:
        labels: the label map, on the same voxel grid as the source series (e.g. the CT written
            from the same case).
        source: the referenced series: a `DicomSeries` or its folder.
        path: the SEG file to write.
        uid_seed: text the SEG's UIDs derive from.
        series_number: the SEG's SeriesNumber.

    Returns:
        the path written.

    Raises:
        ValueError: labels off the series' grid, no structure but background.
    """
    where = "medphys.io.save_dicom_seg"
    hd = _require(where, "highdicom")
    if not isinstance(labels, LabeledVolume):
        raise TypeError(
            f"{where}: `labels` must be a medphys.LabeledVolume (got {type(labels).__name__})"
        )
    if not isinstance(uid_seed, str) or not uid_seed:
        raise ValueError(f"{where}: `uid_seed` must be a non-empty string (got {uid_seed!r})")
    folder = source.folder if isinstance(source, DicomSeries) else Path(source)
    series_uid = source.series_instance_uid if isinstance(source, DicomSeries) else None
    datasets = _select_series(where, folder, _read_datasets(where, folder, pixels=True), series_uid)
    datasets, a_dicom = _series_geometry(where, folder, datasets)
    shape = (int(datasets[0].Columns), int(datasets[0].Rows), len(datasets))
    arr = _labels_on_series(where, labels, shape, a_dicom)
    present = {int(v) for v in np.unique(arr)}
    rows = [
        s
        for s in sorted(labels.structures, key=lambda s: s.label)
        if s.label != 0 and s.label in present
    ]
    if not rows:
        raise ValueError(f"{where}: `labels` holds no structure but the background (value 0)")
    lut = np.zeros(max(s.label for s in labels.structures) + 1, dtype=np.uint16)
    for number, s in enumerate(rows, start=1):
        lut[s.label] = number
    segments = lut[arr]  # (column, row, slice) → segment numbers
    frames = np.ascontiguousarray(np.transpose(segments, (2, 1, 0)))  # (slice, row, column)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medphys voxelize",
        family=hd.sr.CodedConcept("113681", "DCM", "Phantom"),
        version=__version__,
        source="medphys",
    )
    descriptions = []
    for number, s in enumerate(rows, start=1):
        category, kind = _segment_codes(s.name)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=s.name[:64],
                segmented_property_category=category,
                segmented_property_type=kind,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_uid=_uid(uid_seed, "segment", s.name),
                tracking_id=s.name[:64],
            )
        )
    seg_series = _uid(uid_seed, "seg-series", str(series_number))
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=seg_series,
        series_number=series_number,
        sop_instance_uid=_uid(seg_series, "instance", "1"),
        instance_number=1,
        manufacturer="medphys",
        manufacturer_model_name="medphys simulator",
        software_versions=__version__,
        device_serial_number="0",
        content_description="Ground-truth labels of a medphys digital phantom (synthetic)",
        content_label="MEDPHYS_LABELS",
        series_description="SYNTHETIC labels",
    )
    seg.SyntheticData = "YES"
    # highdicom stamps the time and random UIDs; replace them so the same input gives the same bytes.
    dimension_uids = {
        str(item.DimensionOrganizationUID): _uid(seg_series, "dimension-organization", str(i))
        for i, item in enumerate(seg.get("DimensionOrganizationSequence", []))
    }
    for keyword in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in seg.get(keyword, []):
            if "DimensionOrganizationUID" in item:
                uid = str(item.DimensionOrganizationUID)
                item.DimensionOrganizationUID = dimension_uids.get(uid, uid)
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = _PLACEHOLDER_DATE + _PLACEHOLDER_TIME
    for keyword in ("ContentDate", "SeriesDate", "StudyDate", "InstanceCreationDate"):
        if keyword in seg:
            setattr(seg, keyword, _PLACEHOLDER_DATE)
    for keyword in ("ContentTime", "SeriesTime", "StudyTime", "InstanceCreationTime"):
        if keyword in seg:
            setattr(seg, keyword, _PLACEHOLDER_TIME)
    seg.file_meta.ImplementationClassUID = _uid("implementation")
    seg.file_meta.ImplementationVersionName = f"MEDPHYS_{__version__}"[:16]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return path
