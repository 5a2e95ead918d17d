"""Real patient images for sim-to-real training: DICOM (CT, MR, radiographs) and NIfTI, as Volumes.

`load_real_images` walks a folder (or a list of files and folders) and returns every image it
finds as a `RealImage`, a float32 `Volume` with its modality, units, patient and source files:

- single-frame CT and MR DICOM files are grouped by SeriesInstanceUID and stacked along the slice
  normal, exactly as `medphys.io.load_dicom_series` does (HU from RescaleSlope/RescaleIntercept
  for CT, which must carry them; RAS+ closest-canonical orientation);
- enhanced multi-frame CT and MR files (Enhanced CT/MR Image Storage) become one volume per file,
  each frame placed by its functional groups (per-frame or shared PlanePositionSequence,
  PlaneOrientationSequence, PixelMeasuresSequence, PixelValueTransformationSequence); a file
  whose frames carry no position at all is stacked in frame order along its orientation (axial
  when none is given) with SpacingBetweenSlices or SliceThickness as the step;
- projection radiographs (CR, DX, MG) become 2-D images (one slice, ``nz = 1``);
- NIfTI files (``.nii``, ``.nii.gz``) are read in nibabel's closest-canonical (RAS+) orientation.

Everything that can go wrong is found from the headers before any pixel data is decoded.
Non-image DICOM files (SEG, RTSTRUCT, presentation states, structured reports, any file without
pixel data, modalities other than the five above), NIfTI label maps and non-image files are
skipped.

Patients: the DICOM PatientID (a file without one is its own patient, named after its
StudyInstanceUID); for a NIfTI file its name without ``.nii``/``.nii.gz``, unless a JSON sidecar
of the same name (``case.json`` next to ``case.nii.gz``) gives a ``"PatientID"``.
`split_by_patient` splits a set so that no patient is in two parts.

References:
    DICOM PS3.3 C.7.6.2 (Image Plane), C.7.6.3 (Image Pixel: Photometric Interpretation),
    C.7.6.16 (Multi-frame Functional Groups), C.8.2.1 (CT Image: rescale to HU),
    C.8.9 / C.8.11.7 (CR and DX images: PixelSpacing and ImagerPixelSpacing).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import jax
import numpy as np
from jaxtyping import Float

from .._types import PRNGKey
from ..volume import Volume
from ._dicom import _RAS_TO_LPS, _reorient, _require, _series_geometry
from ._nifti import _read_meta, _suffix_ok, load_nifti

_WHERE = "medphys.io.load_real_images"
_CROSS_SECTIONAL = ("CT", "MR")
_PROJECTION = ("CR", "DX", "MG")
_MODALITIES = (*_CROSS_SECTIONAL, *_PROJECTION, "NIFTI")
_AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # LPS orientation assumed when a file gives none
_NIFTI_INTENT_LABEL = 1002


# --- public values ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RealImage:
    """One real image: a volume (or a 2-D radiograph with ``nz = 1``) and where it came from.

    Attributes:
        volume: float32 `Volume`; its affine maps voxel indices to RAS+ mm (in-plane only for
            radiographs, which carry no patient position).
        modality: ``"CT"``, ``"MR"``, ``"CR"``, ``"DX"``, ``"MG"``, or ``"NIFTI"`` (a NIfTI file
            read without ``modality=``; with it, the modality asked for).
        units: ``"HU"`` for CT, ``"stored"`` otherwise (scanner units: MR after the file's own
            rescale, radiographs as stored, NIfTI as written).
        patient_id: the patient (see the module docstring).
        series_uid: the SeriesInstanceUID (DICOM) or the file path (NIfTI).
        source: the files read, in slice order.
        spacing_mm: voxel size along the volume's x, y, z axes (mm; z is 1 for a radiograph).
    """

    volume: Volume
    modality: str
    units: str
    patient_id: str
    series_uid: str
    source: tuple[str, ...]
    spacing_mm: tuple[float, float, float]

    @property
    def ndim(self) -> int:
        """2 for a single plane (one voxel along some axis: ``nz == 1`` for radiographs and
        axial slices, ``nx == 1`` for one sagittal slice after reorientation), else 3."""
        return 2 if min(self.volume.shape) == 1 else 3


@dataclasses.dataclass(frozen=True)
class RealImageSet:
    """Images of one modality, sorted by patient, series and first source file.

    Attributes:
        images: the images.
        modality: the modality they share.
    """

    images: tuple[RealImage, ...]
    modality: str

    def __len__(self) -> int:
        return len(self.images)

    @property
    def patients(self) -> tuple[str, ...]:
        """The patient ids, sorted, each once."""
        return tuple(sorted({image.patient_id for image in self.images}))

    def slices(
        self, axis: int = 2
    ) -> list[tuple[Float[np.ndarray, "u v"], Float[np.ndarray, "2"], str]]:
        """Every 2-D slice of every image, for training on slices.

        Args:
            axis: the volume axis that 3-D images are sliced across (0, 1 or 2). A 2-D image
                (`RealImage.ndim` 2) gives its one plane, across its single-voxel axis.

        Returns:
            ``(image, spacing_mm, patient_id)`` per slice, in image order: a float32 array
            indexed by the two remaining volume axes in order, and their voxel size (mm, shape
            ``(2,)``).

        Raises:
            ValueError: ``axis`` other than 0, 1, 2.

        Example:
            >>> for image, spacing, patient in images.slices():  # doctest: +SKIP
            ...     pass
        """
        if isinstance(axis, bool) or axis not in (0, 1, 2):
            raise ValueError(
                f"medphys.io.RealImageSet.slices: `axis` must be 0, 1 or 2 (got {axis!r})"
            )
        out = []
        for image in self.images:
            data = np.asarray(image.volume.data, dtype=np.float32)
            across = axis if image.ndim == 3 else int(np.argmin(data.shape))
            spacing = np.delete(np.asarray(image.spacing_mm, dtype=np.float64), across)
            for i in range(data.shape[across]):
                out.append((np.take(data, i, axis=across), spacing.copy(), image.patient_id))
        return out


# --- what the headers say --------------------------------------------------------------------


@dataclasses.dataclass
class _Found:
    """One image to read, as its headers describe it (no pixel data decoded yet)."""

    kind: str  # "slices" (single-frame CT/MR series), "frames" (multi-frame), "radiograph", "nifti"
    modality: str
    patient_id: str
    series_uid: str
    paths: list[Path]
    headers: list[Any]  # pydicom datasets, pixel data deferred (none for NIfTI)
    nz: int


@dataclasses.dataclass
class _Plane:
    """One 2-D plane of a stack (a slice file or one frame of a multi-frame file).

    It answers the attributes `_series_geometry` reads from a pydicom dataset, so single-frame
    series and multi-frame files are placed by the same code as `load_dicom_series`.
    """

    ImagePositionPatient: tuple[float, ...] | None  # None: a frame without a position
    ImageOrientationPatient: tuple[float, ...]
    Rows: int
    Columns: int
    PixelSpacing: tuple[float, float]
    SpacingBetweenSlices: float | None
    path: Path
    frame: int | None
    slope: float
    intercept: float

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)


def _spacing_pair(value: Any) -> tuple[float, float] | None:
    """Two finite positive numbers (DICOM's [row spacing, column spacing]), or None."""
    try:
        pair = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(pair) != 2 or not all(math.isfinite(v) and v > 0 for v in pair):
        return None
    return cast("tuple[float, float]", pair)


def _spacing_override(spacing_mm: Any) -> tuple[float, float] | None:
    if spacing_mm is None:
        return None
    if isinstance(spacing_mm, (int, float)) and not isinstance(spacing_mm, bool):
        pair = _spacing_pair((spacing_mm, spacing_mm))
    elif isinstance(spacing_mm, (str, bytes)):
        pair = None
    else:
        pair = _spacing_pair(spacing_mm)
    if pair is None:
        raise ValueError(
            f"{_WHERE}: `spacing_mm` must be one positive number (square pixels) or a "
            f"(row, column) pair of positive numbers in mm, as DICOM's PixelSpacing "
            f"(got {spacing_mm!r})"
        )
    return pair


def _no_spacing(path: Path, tags: str, values: str) -> ValueError:
    return ValueError(
        f"{_WHERE}: {str(path)!r} has no usable pixel spacing ({values}; {tags} must be two "
        "positive numbers); pass `spacing_mm=` (one number, or (row, column) in mm) to "
        "override it"
    )


def _patient_id(ds: Any) -> str:
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return pid
    return f"unknown-{ds.get('StudyInstanceUID', '') or ds.get('SeriesInstanceUID', '')}"


def _nifti_stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]


def _scan_nifti(path: Path) -> _Found | None:
    """The NIfTI header (None for a label map)."""
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for foreign files
        raise ValueError(f"{_WHERE}: {str(path)!r} is not a readable NIfTI file ({exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"{_WHERE}: {str(path)!r} is not a NIfTI file")
    if int(img.header.get("intent_code", 0)) == _NIFTI_INTENT_LABEL or "structures" in _read_meta(
        img
    ):
        return None
    shape = tuple(int(n) for n in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{_WHERE}: {str(path)!r} has shape {shape}; a real image must be 2-D or 3-D "
            "(split a 4-D series into one file per volume)"
        )
    patient = _nifti_stem(path)
    sidecar = path.with_name(patient + ".json")
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{_WHERE}: sidecar {str(sidecar)!r} is not JSON ({exc})") from None
        if isinstance(meta, dict) and isinstance(meta.get("PatientID"), str) and meta["PatientID"]:
            patient = meta["PatientID"]
    nz = shape[2] if len(shape) == 3 else 1
    return _Found("nifti", "NIFTI", patient, str(path), [path], [], nz)


def _scan(files: list[Path]) -> tuple[list[_Found], collections.Counter[str]]:
    """Reads every header; groups single-frame CT/MR slices by series."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    found: list[_Found] = []
    series: dict[str, _Found] = {}
    skipped: collections.Counter[str] = collections.Counter()
    for path in files:
        if _suffix_ok(path):
            item = _scan_nifti(path)
            if item is None:
                skipped["NIfTI label map"] += 1
            else:
                found.append(item)
            continue
        try:
            ds = pydicom.dcmread(path, defer_size=1024)  # large values (pixels) read on demand
        except InvalidDicomError:
            skipped["not DICOM or NIfTI"] += 1
            continue
        except Exception as exc:  # a DICOM preamble but a broken file
            raise ValueError(f"{_WHERE}: {str(path)!r} is a damaged DICOM file ({exc})") from None
        modality = str(ds.get("Modality", "") or "").upper()
        if "PixelData" not in ds:
            skipped[f"DICOM without pixel data ({modality or 'no Modality'})"] += 1
            continue
        if modality not in _CROSS_SECTIONAL + _PROJECTION:
            skipped[f"DICOM {modality or 'without Modality'}"] += 1
            continue
        pid, uid = _patient_id(ds), str(ds.get("SeriesInstanceUID", "") or "")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if modality in _PROJECTION:
            found.append(_Found("radiograph", modality, pid, uid, [path], [ds], 1))
        elif frames > 1 or "PerFrameFunctionalGroupsSequence" in ds:
            found.append(_Found("frames", modality, pid, uid, [path], [ds], frames))
        else:
            item = series.setdefault(uid, _Found("slices", modality, pid, uid, [], [], 0))
            if item.modality != modality:
                raise ValueError(
                    f"{_WHERE}: series {uid!r} mixes modalities {item.modality} and {modality} "
                    f"({str(item.paths[0])!r}, {str(path)!r})"
                )
            item.paths.append(path)
            item.headers.append(ds)
            item.nz += 1
    return found + list(series.values()), skipped


def _select(found: list[_Found], modality: str | None, places: str) -> list[_Found]:
    kinds = sorted({item.modality for item in found})
    if modality is None:
        if len(kinds) > 1:
            raise ValueError(
                f"{_WHERE}: {places} holds images of several modalities ({', '.join(kinds)}); "
                "pass `modality=` to read one of them (NIfTI files are read with any modality)"
            )
        return found
    chosen = [item for item in found if item.modality in (modality, "NIFTI")]
    if not chosen:
        raise ValueError(
            f"{_WHERE}: {places} holds no {modality} images (found: {', '.join(kinds)})"
        )
    for item in chosen:
        item.modality = modality
    return chosen


def _check_dimensions(found: list[_Found], places: str) -> None:
    flat = [item for item in found if item.kind == "radiograph"]
    deep = [item for item in found if item.nz > 1]
    if flat and deep:
        raise ValueError(
            f"{_WHERE}: {places} mixes 2-D projection radiographs ({str(flat[0].paths[0])!r}, "
            f"{len(flat)} in all) with 3-D volumes ({str(deep[0].paths[0])!r}, {len(deep)} in "
            "all); read them separately (a list of files, or `modality=`)"
        )


# --- checks and geometry from the headers ----------------------------------------------------


def _check_pixels(path: Path, ds: Any) -> None:
    """One sample per pixel, grey scale, a transfer syntax pydicom can decode here."""
    from pydicom.pixels import get_decoder

    photometric = str(ds.get("PhotometricInterpretation", "") or "")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or photometric not in (
        "MONOCHROME1",
        "MONOCHROME2",
    ):
        raise ValueError(
            f"{_WHERE}: {str(path)!r} is not a grey-scale image (PhotometricInterpretation "
            f"{photometric!r}, SamplesPerPixel {ds.get('SamplesPerPixel')}); only MONOCHROME1 "
            "and MONOCHROME2 are read"
        )
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        try:
            available = get_decoder(syntax).is_available
        except NotImplementedError:
            available = False
        if not available:
            raise ValueError(
                f"{_WHERE}: {str(path)!r} is compressed ({syntax.name}) and pydicom has no "
                "decoder for it here: install pylibjpeg with its plugins, or decompress it"
            )


def _rescale(path: Path, modality: str, item: Any, fallback: Any = None) -> tuple[float, float]:
    """RescaleSlope/RescaleIntercept of ``item`` (else ``fallback``); CT must have them."""
    for source in (item, fallback):
        if source is None:
            continue
        slope, intercept = source.get("RescaleSlope"), source.get("RescaleIntercept")
        if slope not in (None, "") and intercept not in (None, ""):
            return float(slope), float(intercept)
    if modality == "CT":
        raise ValueError(
            f"{_WHERE}: {str(path)!r} is CT without RescaleSlope/RescaleIntercept (or a "
            "PixelValueTransformationSequence); its stored values cannot be converted to HU"
        )
    return 1.0, 0.0


def _vector(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


def _slice_planes(item: _Found, override: tuple[float, float] | None) -> list[_Plane]:
    planes = []
    for path, ds in zip(item.paths, item.headers, strict=True):
        _check_pixels(path, ds)
        spacing = override or _spacing_pair(ds.get("PixelSpacing"))
        if spacing is None:
            raise _no_spacing(path, "PixelSpacing", f"PixelSpacing={ds.get('PixelSpacing')!s}")
        position = _vector(ds.get("ImagePositionPatient"), 3)
        orientation = _vector(ds.get("ImageOrientationPatient"), 6)
        if position is None or orientation is None:
            raise ValueError(
                f"{_WHERE}: {str(path)!r} has no usable ImagePositionPatient/"
                "ImageOrientationPatient; a CT/MR slice cannot be placed without them"
            )
        step = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
        planes.append(
            _Plane(
                position,
                orientation,
                int(ds.Rows),
                int(ds.Columns),
                spacing,
                float(step) if step else None,
                path,
                None,
                *_rescale(path, item.modality, ds),
            )
        )
    return planes


def _group(ds: Any, per_frame: Any, name: str) -> Any:
    """The first item of functional group ``name`` for one frame: per-frame, else shared."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    for groups in (per_frame, shared[0] if shared else None):
        if groups is not None and groups.get(name):
            return groups[name].value[0]
    return None


def _frame_planes(item: _Found, override: tuple[float, float] | None) -> list[_Plane]:
    path, ds = item.paths[0], item.headers[0]
    _check_pixels(path, ds)
    per = ds.get("PerFrameFunctionalGroupsSequence") or [None] * item.nz
    if len(per) != item.nz:
        raise ValueError(
            f"{_WHERE}: {str(path)!r} has {item.nz} frames but {len(per)} "
            "PerFrameFunctionalGroupsSequence items"
        )
    planes = []
    for i, groups in enumerate(per):
        measures = _group(ds, groups, "PixelMeasuresSequence") or ds
        spacing = override or _spacing_pair(measures.get("PixelSpacing"))
        if spacing is None:
            values = f"frame {i + 1}: PixelSpacing={measures.get('PixelSpacing')!s}"
            raise _no_spacing(path, "PixelMeasuresSequence/PixelSpacing", values)
        orient = _group(ds, groups, "PlaneOrientationSequence") or ds
        position = _group(ds, groups, "PlanePositionSequence") or ds
        step = next((float(v) for v in _steps(measures) + _steps(ds) if v), None)
        pvt = _group(ds, groups, "PixelValueTransformationSequence")
        plane = _Plane(
            _vector(position.get("ImagePositionPatient"), 3),
            _vector(orient.get("ImageOrientationPatient"), 6) or _AXIAL,
            int(ds.Rows),
            int(ds.Columns),
            spacing,
            step,
            path,
            i,
            *_rescale(path, item.modality, pvt, ds),
        )
        planes.append(plane)
    placed = [plane.ImagePositionPatient is not None for plane in planes]
    if any(placed) and not all(placed):
        raise ValueError(
            f"{_WHERE}: {str(path)!r}: frame {placed.index(False) + 1} has no "
            "PlanePositionSequence while others do; the frames cannot be stacked"
        )
    for i, plane in enumerate(planes if not any(placed) else []):  # frame order along the normal
        if plane.SpacingBetweenSlices is None:
            raise ValueError(
                f"{_WHERE}: {str(path)!r} gives no frame positions (PlanePositionSequence) "
                "and no SpacingBetweenSlices/SliceThickness; the frames cannot be stacked"
            )
        o = plane.ImageOrientationPatient
        normal = np.cross(o[:3], o[3:]) * plane.SpacingBetweenSlices * i
        plane.ImagePositionPatient = tuple(float(v) for v in normal)
    return planes


def _steps(source: Any) -> list[Any]:
    return [source.get("SpacingBetweenSlices"), source.get("SliceThickness")]


@dataclasses.dataclass
class _Plan:
    """Everything needed to read one image once the headers have been checked."""

    found: _Found
    planes: list[_Plane]  # stacks: in slice order
    affine: np.ndarray  # stacks: voxel → LPS; radiographs and NIfTI: unused until read
    invert: float | None  # radiographs in MONOCHROME1: value = invert - stored


def _plan(item: _Found, override: tuple[float, float] | None) -> _Plan:
    if item.kind == "nifti":
        return _Plan(item, [], np.eye(4), None)
    if item.kind == "radiograph":
        path, ds = item.paths[0], item.headers[0]
        _check_pixels(path, ds)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise ValueError(
                f"{_WHERE}: {str(path)!r} is a multi-frame {item.modality} file "
                f"({ds.NumberOfFrames} frames); only single-frame radiographs are read"
            )
        spacing = (
            override
            or _spacing_pair(ds.get("PixelSpacing"))
            or _spacing_pair(ds.get("ImagerPixelSpacing"))
        )
        if spacing is None:
            raise _no_spacing(
                path,
                "PixelSpacing or ImagerPixelSpacing",
                f"PixelSpacing={ds.get('PixelSpacing')!s}, "
                f"ImagerPixelSpacing={ds.get('ImagerPixelSpacing')!s}",
            )
        invert = None
        if ds.PhotometricInterpretation == "MONOCHROME1":
            bits = int(ds.get("BitsStored") or ds.BitsAllocated)
            signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
            lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
            invert = float(lo + hi)
        affine = np.diag([spacing[1], spacing[0], 1.0, 1.0])  # x along columns, y along rows
        return _Plan(item, [], affine, invert)
    planes = (
        _slice_planes(item, override) if item.kind == "slices" else _frame_planes(item, override)
    )
    place = item.paths[0] if item.kind == "frames" else item.paths[0].parent
    ordered, a_lps = _series_geometry(_WHERE, place, cast("list[Any]", planes))
    return _Plan(item, cast("list[_Plane]", ordered), a_lps, None)


# --- pixels ----------------------------------------------------------------------------------


def _pixels(path: Path) -> np.ndarray:
    import pydicom

    return pydicom.dcmread(path).pixel_array


def _read(plan: _Plan) -> RealImage:
    item = plan.found
    if item.kind == "nifti":
        volume = load_nifti(item.paths[0])
        data, affine = _reorient(np.asarray(volume.data, dtype=np.float32), volume.affine)
        sources = [item.paths[0]]
    elif item.kind == "radiograph":
        stored = _pixels(item.paths[0]).astype(np.float64)
        if plan.invert is not None:
            stored = plan.invert - stored
        data, affine = stored.T[:, :, None].astype(np.float32), plan.affine
        sources = [item.paths[0]]
    else:
        cache: dict[Path, np.ndarray] = {}
        columns = []
        for plane in plan.planes:
            if plane.path not in cache:
                cache[plane.path] = _pixels(plane.path)
            pixels = cache[plane.path]
            if plane.frame is not None and pixels.ndim == 3:
                pixels = pixels[plane.frame]
            columns.append((pixels.astype(np.float64) * plane.slope + plane.intercept).T)
        data = np.stack(columns, axis=2).astype(np.float32)
        data, affine = _reorient(data, _RAS_TO_LPS @ plan.affine)  # diag(-1, -1, 1): own inverse
        sources = list(dict.fromkeys(plane.path for plane in plan.planes))
    volume = Volume(data=np.ascontiguousarray(data, dtype=np.float32), affine=affine)
    return RealImage(
        volume=volume,
        modality=item.modality,
        units="HU" if item.modality == "CT" else "stored",
        patient_id=item.patient_id,
        series_uid=item.series_uid,
        source=tuple(str(p) for p in sources),
        spacing_mm=cast("tuple[float, float, float]", tuple(float(s) for s in volume.spacing_mm)),
    )


# --- the public calls ------------------------------------------------------------------------


def _files(source: Any) -> tuple[list[Path], list[Path]]:
    """Every file under ``source`` (sorted, each once) and the paths given."""
    if isinstance(source, (str, Path)):
        given = [Path(source)]
    elif isinstance(source, Sequence):
        given = [Path(s) for s in source]
        if not given:
            raise ValueError(f"{_WHERE}: `source` is an empty list; give a folder or files")
    else:
        raise TypeError(
            f"{_WHERE}: `source` must be a folder, a file, or a list of them "
            f"(got {type(source).__name__})"
        )
    files: dict[Path, None] = {}
    for path in given:
        if path.is_dir():
            files.update((p, None) for p in sorted(path.rglob("*")) if p.is_file())
        elif path.is_file():
            files[path] = None
        else:
            raise FileNotFoundError(f"{_WHERE}: no such file or folder {str(path)!r}")
    unique: dict[Path, Path] = {}
    for path in files:
        unique.setdefault(path.resolve(), path)
    return sorted(unique.values()), given


def load_real_images(
    source: str | Path | Sequence[str | Path],
    *,
    modality: str | None = None,
    spacing_mm: float | Sequence[float] | None = None,
) -> RealImageSet:
    """Read the real images in a folder (searched recursively) or a list of files and folders.

    CT and MR slices are stacked into volumes like `load_dicom_series` (closest-canonical RAS+
    orientation; CT in HU); enhanced multi-frame files are stacked frame by frame; NIfTI files are
    read in closest-canonical orientation. Projection radiographs (CR, DX, MG) become 2-D
    images: ``data[x, y, 0]`` is the pixel in row ``y``, column ``x``, the affine holds the pixel
    spacing only (x along columns, y along rows, 1 mm along z, origin at the first pixel), and
    the values are the stored pixel values, with MONOCHROME1 images inverted over their stored
    range (``lo + hi - stored`` for ``BitsStored``) so that a higher value always means more
    attenuation, as in MONOCHROME2. Files that are not images are skipped (see the module
    docstring). Every check runs on the headers before any pixel data is decoded.

    Args:
        source: a folder, a file, or a list of folders and files.
        modality: read only this modality: ``"CT"``, ``"MR"``, ``"CR"``, ``"DX"``, ``"MG"``
            (NIfTI files are then read too and labelled with it), or ``"NIFTI"`` (NIfTI files
            only). Required when the files hold several modalities.
        spacing_mm: pixel spacing in mm, one number or (row, column) as DICOM's PixelSpacing,
            used for every DICOM image instead of its own PixelSpacing/ImagerPixelSpacing
            (for files whose spacing is missing or zero); NIfTI files keep their affine.

    Returns:
        a `RealImageSet` of float32 `RealImage` values, sorted by patient, series and file.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: no image files; several modalities without ``modality=``; 2-D radiographs
            mixed with 3-D volumes; a DICOM image without usable pixel spacing (and no
            ``spacing_mm``); CT without RescaleSlope/RescaleIntercept; slices that do not form
            one evenly spaced volume; colour or undecodable images; an unknown ``modality``.
        TypeError: ``source`` of another type.

    Example:
        >>> ct = load_real_images("data/cq500", modality="CT")  # doctest: +SKIP
        >>> train, test = split_by_patient(jax.random.key(0), ct)  # doctest: +SKIP
    """
    _require(_WHERE, "pydicom")
    if modality is not None and modality not in _MODALITIES:
        raise ValueError(
            f"{_WHERE}: `modality` must be one of {', '.join(_MODALITIES)} or None "
            f"(got {modality!r})"
        )
    override = _spacing_override(spacing_mm)
    files, given = _files(source)
    places = ", ".join(repr(str(p)) for p in given[:3]) + (
        f" and {len(given) - 3} more" if len(given) > 3 else ""
    )
    found, skipped = _scan(files)
    if not found:
        detail = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "no files"
        raise ValueError(
            f"{_WHERE}: found no image files in {places} ({len(files)} file(s) searched: "
            f"{detail}); real images are CT/MR/CR/DX/MG DICOM or NIfTI (.nii, .nii.gz)"
        )
    found = _select(found, modality, places)
    _check_dimensions(found, places)
    plans = [_plan(item, override) for item in found]
    images = sorted(
        (_read(plan) for plan in plans), key=lambda im: (im.patient_id, im.series_uid, im.source)
    )
    return RealImageSet(images=tuple(images), modality=modality or found[0].modality)


def _counts(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Patients per split: at least one each, the rest by largest remainder."""
    raw = np.asarray(fractions) * n
    counts = np.maximum(1, np.floor(raw).astype(int))
    while counts.sum() > n:
        counts[int(np.argmax(counts))] -= 1
    remainder = raw - counts
    while counts.sum() < n:
        i = int(np.argmax(remainder))
        counts[i] += 1
        remainder[i] -= 1
    return [int(c) for c in counts]


def split_by_patient(
    key: PRNGKey, images: RealImageSet, fractions: Sequence[float] = (0.8, 0.2)
) -> tuple[RealImageSet, ...]:
    """Split a set by patient: a shuffle of the patients drawn from ``key``, cut by ``fractions``.

    No patient has images in two splits; every split gets at least one patient, the others by
    largest remainder of ``fraction * n_patients``. The same key gives the same split.

    Args:
        key: a ``jax.random`` key.
        images: the set to split.
        fractions: the share of patients in each split; positive, summing to 1.

    Returns:
        one `RealImageSet` per fraction, images in their order in ``images``.

    Raises:
        TypeError: ``key`` is not a JAX key, or ``images`` not a `RealImageSet`.
        ValueError: fractions not positive or not summing to 1; fewer patients than splits.

    Example:
        >>> train, val = split_by_patient(jax.random.key(0), images, (0.8, 0.2))  # doctest: +SKIP
    """
    where = "medphys.io.split_by_patient"
    if not isinstance(images, RealImageSet):
        raise TypeError(
            f"{where}: `images` must be a RealImageSet from load_real_images "
            f"(got {type(images).__name__})"
        )
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == np.uint32 and tuple(getattr(key, "shape", ())) == (2,)
    if not (typed or raw):
        raise TypeError(
            f"{where}: `key` must be a jax.random key (jax.random.key(seed)) (got {key!r})"
        )
    try:
        shares = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: `fractions` must be numbers (got {fractions!r})") from None
    if (
        not shares
        or not all(math.isfinite(f) and f > 0 for f in shares)
        or abs(sum(shares) - 1) > 1e-6
    ):
        raise ValueError(
            f"{where}: `fractions` must be positive numbers summing to 1 (got {fractions!r})"
        )
    patients = images.patients
    if len(patients) < len(shares):
        raise ValueError(
            f"{where}: {len(shares)} splits need at least {len(shares)} patients, one each "
            f"(got {len(patients)} patient(s): {', '.join(patients)}); add patients or use "
            "fewer `fractions`"
        )
    order = np.asarray(jax.random.permutation(key, len(patients)))
    shuffled = [patients[int(i)] for i in order]
    out, start = [], 0
    for count in _counts(len(patients), shares):
        chosen = set(shuffled[start : start + count])
        start += count
        out.append(
            RealImageSet(
                images=tuple(im for im in images.images if im.patient_id in chosen),
                modality=images.modality,
            )
        )
    return tuple(out)
