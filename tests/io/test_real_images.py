"""Real images in: shipped DICOM files (pydicom, pydicom-data) and NIfTI, read and checked against
pydicom and nibabel directly; patient-level splits; every bad input named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import nibabel as nib
import numpy as np
import pytest

from medphys import LabeledVolume, Structure, Volume
from medphys.io import (
    RealImageSet,
    load_dicom_series,
    load_real_images,
    save_nifti,
    split_by_patient,
)
from medphys.volume import make_affine

pydicom = pytest.importorskip("pydicom")
data_store = pytest.importorskip("data_store")  # the pydicom-data wheel
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

DATA = Path(data_store.__file__).parent / "data"
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
MR_SMALL = Path(get_testdata_file("MR_small.dcm"))


def _copy(folder: Path, *files: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def _edit(src: Path, dst: Path, **tags) -> Path:
    """A copy of ``src`` with tags replaced (None deletes) and a new SOPInstanceUID."""
    ds = pydicom.dcmread(src)
    for name, value in tags.items():
        if value is None:
            delattr(ds, name)
        else:
            setattr(ds, name, value)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
        entropy_srcs=[str(dst)]
    )
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst)
    return dst


def _expected(volume: Volume, planes: list[tuple]) -> np.ndarray:
    """Each voxel's value looked up in the DICOM planes by its world position.

    ``planes``: (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, values[row, col]),
    read with pydicom. Voxel centres go RAS -> LPS, onto the plane at the same height along the
    normal, then to (row, column) through the orientation: nothing of the loader is reused.
    """
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in volume.shape), indexing="ij"), -1)
    a = np.asarray(volume.affine, dtype=np.float64)
    lps = (idx.reshape(-1, 3) @ a[:3, :3].T + a[:3, 3]) * np.array([-1.0, -1.0, 1.0])
    iop = np.asarray(planes[0][1], dtype=np.float64)
    col, row, normal = iop[:3], iop[3:], np.cross(iop[:3], iop[3:])
    heights = np.array([np.dot(np.asarray(p[0], dtype=np.float64), normal) for p in planes])
    which = np.argmin(np.abs((lps @ normal)[:, None] - heights[None, :]), axis=1)
    np.testing.assert_allclose(lps @ normal, heights[which], atol=1e-3)
    offset = lps - np.array([p[0] for p in planes], dtype=np.float64)[which]
    c = offset @ col / float(planes[0][2][1])
    r = offset @ row / float(planes[0][2][0])
    np.testing.assert_allclose(c, np.round(c), atol=1e-3)
    np.testing.assert_allclose(r, np.round(r), atol=1e-3)
    values = np.stack([p[3] for p in planes])
    return values[which, np.round(r).astype(int), np.round(c).astype(int)].reshape(volume.shape)


# --- CT, MR and enhanced multi-frame ------------------------------------------------------------


def test_ct_slice_is_hu_and_has_the_series_geometry(tmp_path):
    folder = _copy(tmp_path / "cq500", DATA / "693_UNCR.dcm")
    images = load_real_images(folder)
    assert isinstance(images, RealImageSet) and images.modality == "CT" and len(images) == 1
    (image,) = images.images
    assert (image.modality, image.units, image.patient_id) == ("CT", "HU", "CQ500-CT-310")
    assert image.source == (str(folder / "693_UNCR.dcm"),)
    assert image.volume.data.dtype == np.float32 and image.volume.shape == (512, 512, 1)
    assert image.ndim == 2 and images.patients == ("CQ500-CT-310",)

    ds = pydicom.dcmread(DATA / "693_UNCR.dcm")
    assert ds.Modality == "CT" and ds.PhotometricInterpretation == "MONOCHROME2"
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    plane = (ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing, hu)
    np.testing.assert_array_equal(image.volume.data, _expected(image.volume, [plane]))
    assert float(image.volume.data.min()) == -3024.0  # stored -2000, intercept -1024

    reference = load_dicom_series(folder)
    np.testing.assert_array_equal(image.volume.affine, reference.affine)
    np.testing.assert_array_equal(image.volume.data, reference.data)
    spacing = float(ds.PixelSpacing[0])
    assert image.spacing_mm == (spacing, spacing, float(ds.SpacingBetweenSlices))


def test_single_frame_slices_are_stacked_along_the_normal(tmp_path):
    """Three copies of CT_small at z -75.7, -70.7, -65.7 written in reverse file order."""
    ds = pydicom.dcmread(CT_SMALL)
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    planes = []
    for k in range(3):
        pixels = ds.pixel_array + 7 * k
        position = [f"{x:.6f}", f"{y:.6f}", f"{z + 5 * k:.6f}"]
        _edit(
            CT_SMALL,
            tmp_path / "series" / f"file-{2 - k}.dcm",
            ImagePositionPatient=position,
            PixelData=pixels.astype(np.int16).tobytes(),
        )
        hu = pixels * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        planes.append((position, ds.ImageOrientationPatient, ds.PixelSpacing, hu))
    images = load_real_images(tmp_path)
    (image,) = images.images
    assert image.volume.shape == (128, 128, 3) and image.ndim == 3
    np.testing.assert_array_equal(image.volume.data, _expected(image.volume, planes))
    assert image.source == tuple(str(tmp_path / "series" / f"file-{2 - k}.dcm") for k in range(3))
    np.testing.assert_allclose(image.spacing_mm, (0.661468, 0.661468, 5.0), atol=1e-6)
    reference = load_dicom_series(tmp_path / "series")
    np.testing.assert_array_equal(image.volume.data, reference.data)
    np.testing.assert_array_equal(image.volume.affine, reference.affine)

    slices = images.slices()
    assert len(slices) == 3 and slices[0][0].shape == (128, 128)
    np.testing.assert_array_equal(slices[1][0], image.volume.data[:, :, 1])
    np.testing.assert_allclose(slices[1][1], [0.661468, 0.661468], atol=1e-6)
    assert slices[0][2] == "1CT1"
    across_x = images.slices(axis=0)
    assert len(across_x) == 128 and across_x[0][0].shape == (128, 3)
    np.testing.assert_allclose(across_x[0][1], [0.661468, 5.0], atol=1e-6)


def test_enhanced_ct_frames_are_placed_by_their_functional_groups():
    path = DATA / "eCT_Supplemental.dcm"
    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = shared.PlaneOrientationSequence[0].ImageOrientationPatient
    spacing = shared.PixelMeasuresSequence[0].PixelSpacing
    pvt = shared.PixelValueTransformationSequence[0]
    hu = ds.pixel_array.astype(np.float64) * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
    positions = [
        f.PlanePositionSequence[0].ImagePositionPatient for f in ds.PerFrameFunctionalGroupsSequence
    ]
    assert int(ds.NumberOfFrames) == 2 and positions[0][2] < positions[1][2]
    planes = [(positions[i], iop, spacing, hu[i]) for i in range(2)]

    (image,) = load_real_images(path).images
    assert (image.modality, image.units, image.patient_id) == ("CT", "HU", "0010")
    assert image.volume.shape == (512, 512, 2) and image.source == (str(path),)
    np.testing.assert_array_equal(image.volume.data, _expected(image.volume, planes))
    assert image.spacing_mm == (0.388672, 0.388672, 10.0)
    # RAS+: z grows superior; the frame at z = -159 mm (LPS) comes first
    np.testing.assert_allclose(image.volume.affine[2, 2:], [10.0, -159.0])


def test_mr_slices_and_a_sagittal_single_slice():
    mr = load_real_images([MR_SMALL, DATA / "MR-SIEMENS-DICOM-WithOverlays.dcm"])
    assert mr.modality == "MR" and mr.patients == ("021234567", "4MR1")
    assert all(im.units == "stored" and im.ndim == 2 for im in mr.images)
    ds = pydicom.dcmread(MR_SMALL)
    assert "RescaleSlope" not in ds  # MR without rescale: stored values
    small = next(im for im in mr.images if im.patient_id == "4MR1")
    plane = (ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing, ds.pixel_array)
    np.testing.assert_array_equal(small.volume.data, _expected(small.volume, [plane]))

    # MR2_UNCR is a near-sagittal slice: after reorientation its single voxel axis is x
    ds = pydicom.dcmread(DATA / "MR2_UNCR.dcm")
    (image,) = load_real_images(DATA / "MR2_UNCR.dcm").images
    assert image.volume.shape == (1, 1024, 1024) and image.ndim == 2
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    plane = (ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing, values)
    np.testing.assert_allclose(image.volume.data, _expected(image.volume, [plane]), rtol=1e-6)
    (one,) = RealImageSet((image,), "MR").slices()
    assert one[0].shape == (1024, 1024)


def test_enhanced_mr_without_geometry_needs_spacing_and_is_stacked_in_frame_order():
    path = DATA / "emri_small.dcm"
    ds = pydicom.dcmread(path)
    assert "PerFrameFunctionalGroupsSequence" not in ds and "PixelSpacing" not in ds
    with pytest.raises(
        ValueError, match=r"emri_small\.dcm' has no usable pixel spacing.*spacing_mm="
    ):
        load_real_images(path)
    (image,) = load_real_images(path, spacing_mm=(1.0, 2.0)).images
    assert image.volume.shape == (64, 64, 10) and image.spacing_mm == (2.0, 1.0, 1.2)
    # no orientation given: axial LPS, so RAS+ reverses columns and rows
    np.testing.assert_array_equal(image.volume.data, ds.pixel_array.transpose(2, 1, 0)[::-1, ::-1])


# --- radiographs --------------------------------------------------------------------------------


def test_monochrome1_radiograph_is_inverted_and_spacing_comes_from_the_tags(tmp_path):
    src = DATA / "RG3_UNCR.dcm"
    ds = pydicom.dcmread(src)
    assert (ds.Modality, ds.PhotometricInterpretation, int(ds.BitsStored)) == (
        "CR",
        "MONOCHROME1",
        10,
    )
    assert "PixelSpacing" not in ds and "ImagerPixelSpacing" not in ds
    (image,) = load_real_images(src, spacing_mm=0.2).images
    assert (image.modality, image.units, image.patient_id) == ("CR", "stored", "11RG3")
    assert image.volume.shape == (1760, 1760, 1) and image.ndim == 2
    np.testing.assert_array_equal(image.volume.data[:, :, 0], 1023.0 - ds.pixel_array.T)
    np.testing.assert_array_equal(image.volume.affine, np.diag([0.2, 0.2, 1.0, 1.0]))

    plain = _edit(
        src,
        tmp_path / "plain.dcm",
        PhotometricInterpretation="MONOCHROME2",
        ImagerPixelSpacing=["0.15", "0.1"],
    )
    (image2,) = load_real_images(plain).images
    np.testing.assert_array_equal(image2.volume.data[:, :, 0], ds.pixel_array.T)
    assert image2.spacing_mm == (0.1, 0.15, 1.0)  # x along columns, y along rows
    (image3,) = load_real_images(plain, spacing_mm=(0.3, 0.4)).images
    assert image3.spacing_mm == (0.4, 0.3, 1.0)


def test_zero_pixel_spacing_is_named_and_spacing_mm_overrides_it(tmp_path):
    src = DATA / "RG1_UNCR.dcm"
    assert [float(v) for v in pydicom.dcmread(src, stop_before_pixels=True).PixelSpacing] == [0, 0]
    with pytest.raises(
        ValueError,
        match=r"RG1_UNCR\.dcm' has no usable pixel spacing \(PixelSpacing=\[0\.000, 0\.000\].*"
        r"pass `spacing_mm=`",
    ):
        load_real_images(src)
    zero = _edit(CT_SMALL, tmp_path / "ct" / "zero.dcm", PixelSpacing=["0", "0"])
    with pytest.raises(ValueError, match=r"zero\.dcm' has no usable pixel spacing"):
        load_real_images(zero)
    (image,) = load_real_images(zero, spacing_mm=0.5).images
    assert image.spacing_mm[:2] == (0.5, 0.5)


# --- NIfTI --------------------------------------------------------------------------------------


def test_nifti_round_trip_in_closest_canonical_orientation(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(6, 5, 4)).astype(np.float32)
    affine = make_affine((6, 5, 4), (1.1, 0.9, 2.5))[:, [1, 0, 2, 3]] @ np.diag([-1.0, 1, 1, 1])
    affine[:3, 3] = [12.3456789, -7.25, 40.0]
    save_nifti(Volume(data=data, affine=affine), tmp_path / "nii" / "case-7.nii.gz")
    save_nifti(Volume(data=data[:, :, :1], affine=affine), tmp_path / "nii" / "b.nii")
    (tmp_path / "nii" / "b.json").write_text(json.dumps({"PatientID": "P-2"}))
    labels = LabeledVolume(
        labels=np.zeros((6, 5, 4), np.uint8), affine=affine, structures=(Structure(0, "bg", "air"),)
    )
    save_nifti(labels, tmp_path / "nii" / "labels.nii.gz")  # a label map: skipped

    images = load_real_images(tmp_path / "nii")
    assert images.modality == "NIFTI" and images.patients == ("P-2", "case-7")
    flat, image = images.images
    assert (image.modality, image.units, image.ndim, flat.ndim) == ("NIFTI", "stored", 3, 2)
    reference = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    np.testing.assert_array_equal(image.volume.data, reference.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(image.volume.affine, reference.affine, rtol=0, atol=1e-12)
    assert image.volume.data.dtype == np.float32 and image.source[0].endswith("case-7.nii.gz")

    as_ct = load_real_images(tmp_path / "nii", modality="CT")
    assert {(im.modality, im.units) for im in as_ct.images} == {("CT", "HU")}


# --- what is skipped, and what is refused ---------------------------------------------------------


def test_non_image_files_are_skipped(tmp_path):
    folder = _copy(tmp_path / "study" / "deep", DATA / "693_UNCR.dcm", DATA / "liver.dcm")
    (tmp_path / "study" / "notes.txt").write_text("not an image")
    _edit(CT_SMALL, tmp_path / "study" / "no-pixels.dcm", PixelData=None)
    assert pydicom.dcmread(DATA / "liver.dcm", stop_before_pixels=True).Modality == "SEG"
    images = load_real_images(tmp_path / "study")
    assert [im.patient_id for im in images.images] == ["CQ500-CT-310"]
    (folder / "693_UNCR.dcm").unlink()
    with pytest.raises(ValueError, match=r"found no image files in '.*study'.*1 DICOM SEG"):
        load_real_images(tmp_path / "study")


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file or folder '.*missing'"):
        load_real_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"found no image files in '.*empty' \(0 file"):
        load_real_images(tmp_path / "empty")
    with pytest.raises(ValueError, match="`modality` must be one of CT, MR"):
        load_real_images(CT_SMALL, modality="XA")
    with pytest.raises(ValueError, match="`spacing_mm` must be one positive number"):
        load_real_images(CT_SMALL, spacing_mm=-1.0)


def test_mixed_modalities_need_a_filter(tmp_path):
    folder = _copy(tmp_path / "mixed", CT_SMALL, MR_SMALL)
    with pytest.raises(ValueError, match=r"several modalities \(CT, MR\); pass `modality=`"):
        load_real_images(folder)
    (mr,) = load_real_images(folder, modality="MR").images
    assert mr.patient_id == "4MR1"
    with pytest.raises(ValueError, match=r"holds no DX images \(found: CT, MR\)"):
        load_real_images(folder, modality="DX")


def test_radiographs_and_volumes_do_not_mix(tmp_path):
    save_nifti(Volume(data=np.zeros((4, 4, 3), np.float32), affine=np.eye(4)), tmp_path / "v.nii")
    with pytest.raises(ValueError, match=r"mixes 2-D projection radiographs .* with 3-D volumes"):
        load_real_images([DATA / "RG3_UNCR.dcm", tmp_path / "v.nii"], modality="CR")


def test_ct_without_rescale_is_refused(tmp_path):
    bare = _edit(CT_SMALL, tmp_path / "bare.dcm", RescaleSlope=None, RescaleIntercept=None)
    with pytest.raises(ValueError, match=r"bare\.dcm' is CT without RescaleSlope/RescaleIntercept"):
        load_real_images(bare)


# --- patient-level splits -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def six_patients(tmp_path_factory) -> RealImageSet:
    """MR_small as six patients; patient P0 has two series."""
    root = tmp_path_factory.mktemp("patients")
    for p in range(6):
        for s in range(2 if p == 0 else 1):
            uid = generate_uid(entropy_srcs=[f"patient-{p}", f"series-{s}"])
            _edit(MR_SMALL, root / f"P{p}" / f"s{s}.dcm", PatientID=f"P{p}", SeriesInstanceUID=uid)
    return load_real_images(root)


def test_split_by_patient_keeps_each_patient_in_one_split(six_patients):
    assert len(six_patients) == 7 and six_patients.patients == tuple(f"P{p}" for p in range(6))
    train, val, test = split_by_patient(jax.random.key(0), six_patients, (0.6, 0.2, 0.2))
    groups = [set(part.patients) for part in (train, val, test)]
    assert [len(g) for g in groups] == [4, 1, 1]
    assert set.union(*groups) == set(six_patients.patients)
    assert sum(len(part) for part in (train, val, test)) == 7
    assert all(part.modality == "MR" for part in (train, val, test))
    again = split_by_patient(jax.random.key(0), six_patients, (0.6, 0.2, 0.2))
    assert [part.patients for part in again] == [part.patients for part in (train, val, test)]
    draws = {split_by_patient(jax.random.key(seed), six_patients)[1].patients for seed in range(8)}
    assert len(draws) > 1
    for part in split_by_patient(jax.random.key(1), six_patients):
        assert {im.patient_id for im in part.images} == set(part.patients)


def test_split_by_patient_refuses_too_few_patients_and_bad_arguments(six_patients):
    two = RealImageSet(six_patients.images[:3], "MR")
    assert two.patients == ("P0", "P1")
    with pytest.raises(ValueError, match=r"3 splits need at least 3 patients.*got 2 patient"):
        split_by_patient(jax.random.key(0), two, (0.5, 0.25, 0.25))
    assert [p.patients for p in split_by_patient(jax.random.key(0), two, (0.9, 0.1))] in (
        [("P0",), ("P1",)],
        [("P1",), ("P0",)],
    )
    with pytest.raises(ValueError, match="`fractions` must be positive numbers summing to 1"):
        split_by_patient(jax.random.key(0), six_patients, (0.5, 0.4))
    with pytest.raises(TypeError, match=r"`key` must be a jax\.random key"):
        split_by_patient(0, six_patients)
    with pytest.raises(TypeError, match="`images` must be a RealImageSet"):
        split_by_patient(jax.random.key(0), list(six_patients.images))
