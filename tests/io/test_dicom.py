"""DICOM series and SEG: round trips through pydicom and highdicom, geometry, synthetic marks."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medphys import LabeledVolume, Structure, Volume
from medphys.io import (
    export_dicom,
    load_dicom_series,
    save_dicom_seg,
    save_dicom_series,
    save_nifti,
)
from medphys.volume import make_affine

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"


def _rotation(axis: int, theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _affine(kind: str, shape=(12, 10, 6)) -> np.ndarray:
    a = make_affine(shape, (1.5, 2.0, 3.0), center_mm=(10.25, -20.5, 33.125))
    if kind == "axial":
        return a
    if kind == "oblique":  # rotated about z then x, with an awkward origin
        out = np.eye(4)
        out[:3, :3] = _rotation(0, 0.2) @ _rotation(2, 0.3) @ a[:3, :3]
        out[:3, 3] = [-101.123456789, 33.3333333333, 7.0]
        return out
    if kind == "flipped":  # LAS: x index runs toward the left
        return a @ np.diag([-1.0, 1.0, 1.0, 1.0]) + np.pad(
            np.array([[0, 0, 0, 1.5 * (shape[0] - 1)]]), ((0, 3), (0, 0))
        )
    if kind == "permuted":  # array axes (A, R, S)
        return a[:, [1, 0, 2, 3]]
    raise AssertionError(kind)


def _hu(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1024.0, 3000.0, shape).astype(np.float32)


def _labels(shape=(12, 10, 6), affine=None) -> LabeledVolume:
    """Background, a body box and two blobs (one lesion-like name)."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    labels = np.zeros(shape, np.uint8)
    labels[2:-2, 2:-2, :] = 3  # body
    labels[(x - 5) ** 2 + (y - 5) ** 2 + (z - 2) ** 2 <= 4] = 7  # liver
    labels[(x - 8) ** 2 + (y - 4) ** 2 + (z - 4) ** 2 <= 1] = 9  # lesion
    rows = (
        Structure(0, "background", "air"),
        Structure(3, "body", "adipose"),
        Structure(7, "liver", "liver"),
        Structure(8, "spleen", "spleen"),  # in the table, not in the volume
        Structure(9, "lesion", "liver"),
    )
    return LabeledVolume(
        labels=labels, affine=_affine("axial", shape) if affine is None else affine, structures=rows
    )


def _canonical(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """nibabel's closest-RAS orientation of a volume (an independent reference)."""
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(volume.data), volume.affine))
    return np.asarray(img.dataobj), img.affine


@pytest.mark.parametrize("kind", ["axial", "oblique", "flipped", "permuted"])
def test_ct_round_trip_hu_and_geometry(tmp_path, kind):
    shape = (12, 10, 6)
    ct = Volume(data=_hu(shape), affine=_affine(kind, shape))
    series = save_dicom_series(ct, tmp_path / "CT", uid_seed="test/ct")
    assert series.rescale_slope == 1.0 and series.rescale_intercept == 0.0
    assert len(series.files) == shape[2]
    back = load_dicom_series(tmp_path / "CT")
    want_data, want_affine = _canonical(ct)
    assert back.data.dtype == np.float32
    assert back.shape == want_data.shape
    np.testing.assert_allclose(back.affine, want_affine, rtol=0, atol=1e-4)
    assert np.max(np.abs(back.data - want_data)) <= 0.5 * series.rescale_slope + 1e-4


def test_axial_geometry_is_lps_as_written_by_hand(tmp_path):
    """An axis-aligned RAS volume: LPS positions, unit orientation, spacing, pixel placement."""
    shape = (12, 10, 6)
    ct = Volume(data=_hu(shape), affine=_affine("axial", shape))
    series = save_dicom_series(ct, tmp_path / "CT", uid_seed="test/ct")
    a = ct.affine
    for k, path in enumerate(series.files):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == CT_IMAGE
        assert int(ds.InstanceNumber) == k + 1
        # The first pixel is the voxel at RAS (x max, y max): LPS (-x, -y, z).
        ras_first = a @ [shape[0] - 1, shape[1] - 1, k, 1]
        np.testing.assert_allclose(
            [float(v) for v in ds.ImagePositionPatient],
            [-ras_first[0], -ras_first[1], ras_first[2]],
            atol=1e-9,
        )
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert [float(v) for v in ds.PixelSpacing] == [2.0, 1.5]  # [between rows, between columns]
        assert float(ds.SliceThickness) == 3.0
        assert (ds.Rows, ds.Columns) == (shape[1], shape[0])
        hu = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
        want = np.asarray(ct.data)[::-1, ::-1, k].T  # rows toward posterior, columns toward left
        assert np.max(np.abs(hu - want)) <= 0.5 + 1e-4


def test_hu_outside_int16_get_a_larger_slope(tmp_path):
    data = np.linspace(-1000.0, 60000.0, 4 * 4 * 3).reshape(4, 4, 3)
    ct = Volume(data=data, affine=np.eye(4))
    series = save_dicom_series(ct, tmp_path / "CT", uid_seed="wide")
    assert (series.rescale_slope, series.rescale_intercept) != (1.0, 0.0)  # fitted to int16
    back = load_dicom_series(tmp_path / "CT")
    np.testing.assert_array_less(np.abs(back.data - data), 0.5 * series.rescale_slope * (1 + 1e-6))


def test_mr_series_shares_study_and_frame_of_reference_with_ct(tmp_path):
    shape = (8, 6, 4)
    affine = _affine("oblique", shape)
    rng = np.random.default_rng(1)
    mr = Volume(data=rng.uniform(0.0, 1.7, shape).astype(np.float32), affine=affine)
    ct = Volume(data=_hu(shape), affine=affine)
    s_ct = save_dicom_series(ct, tmp_path / "CT", uid_seed="d/case-0001")
    s_mr = save_dicom_series(
        mr, tmp_path / "MR", uid_seed="d/case-0001", modality="MR", series_number=2
    )
    ds = pydicom.dcmread(s_mr.files[0])
    assert ds.SOPClassUID == MR_IMAGE and ds.Modality == "MR"
    assert s_mr.study_instance_uid == s_ct.study_instance_uid
    assert s_mr.frame_of_reference_uid == s_ct.frame_of_reference_uid
    assert s_mr.series_instance_uid != s_ct.series_instance_uid
    assert len(set(s_mr.sop_instance_uids) | set(s_ct.sop_instance_uids)) == 2 * shape[2]
    assert 0 < s_mr.rescale_slope < 1e-4 and s_mr.rescale_intercept == 0.0
    back = load_dicom_series(tmp_path / "MR")
    want_data, want_affine = _canonical(mr)
    np.testing.assert_allclose(back.affine, want_affine, rtol=0, atol=1e-4)
    assert np.max(np.abs(back.data - want_data)) <= 0.5 * s_mr.rescale_slope * (1 + 1e-5)


def test_every_file_is_marked_synthetic(tmp_path):
    ct = Volume(data=_hu((4, 4, 2)), affine=np.eye(4))
    series = save_dicom_series(ct, tmp_path / "CT", uid_seed="s", patient_sex="F")
    for path in series.files:
        ds = pydicom.dcmread(path)
        assert ds.SyntheticData == "YES"  # (0008,001C), SOP Common
        assert str(ds.PatientName) == "MEDPHYS^SYNTHETIC"
        assert ds.PatientIdentityRemoved == "YES"
        assert "Synthetic" in ds.DeidentificationMethod
        assert ds.BurnedInAnnotation == "NO"
        assert ds.ImageComments.startswith("SYNTHETIC")
        assert ds.PatientSex == "F"
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_same_input_same_bytes_other_seed_other_uids(tmp_path):
    labels = _labels()
    ct = Volume(data=_hu(labels.shape), affine=labels.affine)
    runs = []
    for run, seed in (("a", "same"), ("b", "same"), ("c", "other")):
        series = save_dicom_series(ct, tmp_path / run / "CT", uid_seed=seed)
        seg = save_dicom_seg(labels, series, tmp_path / run / "seg.dcm", uid_seed=seed)
        runs.append([p.read_bytes() for p in (*series.files, seg)])
    assert runs[0] == runs[1]
    assert all(x != y for x, y in zip(runs[0], runs[2], strict=True))


def test_seg_round_trip_with_highdicom(tmp_path):
    """Segments named after the structures present; each frame matches the CT pixel it labels."""
    labels = _labels(affine=_affine("oblique"))
    # A CT whose HU are the label values: the SEG must agree with it pixel by pixel.
    ct = Volume(data=np.asarray(labels.labels, np.float32), affine=labels.affine)
    series = save_dicom_series(ct, tmp_path / "CT", uid_seed="seg")
    path = save_dicom_seg(labels, series, tmp_path / "SEG" / "labels.dcm", uid_seed="seg")
    seg = hd.seg.segread(path)
    assert seg.SOPClassUID == SEG
    assert seg.SyntheticData == "YES"
    assert seg.FrameOfReferenceUID == series.frame_of_reference_uid
    assert seg.StudyInstanceUID == series.study_instance_uid
    names = [d.SegmentLabel for d in seg.SegmentSequence]
    assert names == ["body", "liver", "lesion"]  # present, not background, in value order
    lesion = seg.get_segment_description(3)
    assert lesion.segmented_property_type.meaning == "Lesion"
    assert seg.get_segment_description(1).segmented_property_type.meaning == "Tissue"
    value = {1: 3, 2: 7, 3: 9}
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(series.sop_instance_uids), combine_segments=True
    )
    got = np.vectorize(lambda n: value.get(int(n), 0))(frames)
    for k, ct_file in enumerate(series.files):
        np.testing.assert_array_equal(got[k], pydicom.dcmread(ct_file).pixel_array)
    # The whole volume in highdicom's own geometry (voxel -> LPS), brought to RAS by nibabel.
    volume = seg.get_volume(combine_segments=True)
    seg_ras = Volume(
        data=np.vectorize(lambda n: value.get(int(n), 0))(volume.array).astype(np.int16),
        affine=np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine,
    )
    got_data, got_affine = _canonical(seg_ras)
    want_data, want_affine = _canonical(
        Volume(data=np.asarray(labels.labels, np.int16), affine=labels.affine)
    )
    np.testing.assert_allclose(got_affine, want_affine, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(got_data, want_data)


def test_seg_accepts_a_folder_and_rejects_labels_off_grid(tmp_path):
    labels = _labels()
    ct = Volume(data=_hu(labels.shape), affine=labels.affine)
    save_dicom_series(ct, tmp_path / "CT", uid_seed="g")
    save_dicom_seg(labels, tmp_path / "CT", tmp_path / "seg.dcm", uid_seed="g")
    moved = np.array(labels.affine)
    moved[0, 3] += 0.75
    with pytest.raises(ValueError, match=r"save_dicom_seg: `labels`.*not on the voxel grid"):
        save_dicom_seg(
            LabeledVolume(labels.labels, moved, labels.structures), tmp_path / "CT",
            tmp_path / "seg2.dcm", uid_seed="g",
        )  # fmt: skip
    empty = LabeledVolume(np.zeros(labels.shape, np.uint8), labels.affine, labels.structures)
    with pytest.raises(ValueError, match="no structure but the background"):
        save_dicom_seg(empty, tmp_path / "CT", tmp_path / "seg3.dcm", uid_seed="g")


def test_loader_picks_a_series_and_skips_other_files(tmp_path):
    ct = Volume(data=_hu((4, 4, 3)), affine=np.eye(4))
    a = save_dicom_series(ct, tmp_path / "mixed" / "a", uid_seed="one")
    b = save_dicom_series(ct.with_data(ct.data + 10), tmp_path / "mixed" / "b", uid_seed="two")
    for series in (a, b):
        for path in series.files:
            path.rename(tmp_path / "mixed" / f"{series.series_instance_uid[-6:]}-{path.name}")
    (tmp_path / "mixed" / "notes.txt").write_text("not DICOM")
    with pytest.raises(ValueError, match=r"load_dicom_series: .* holds 2 image series; pick one"):
        load_dicom_series(tmp_path / "mixed")
    back = load_dicom_series(tmp_path / "mixed", series_uid=b.series_instance_uid)
    assert np.max(np.abs(back.data - (np.asarray(ct.data) + 10))) <= 0.5 + 1e-4


def test_loader_refuses_gaps(tmp_path):
    ct = Volume(data=_hu((4, 4, 5)), affine=np.eye(4))
    series = save_dicom_series(ct, tmp_path / "CT", uid_seed="gap")
    series.files[2].unlink()
    with pytest.raises(ValueError, match="not evenly spaced"):
        load_dicom_series(tmp_path / "CT")
    with pytest.raises(ValueError, match="holds no DICOM image slices"):
        load_dicom_series(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_dicom_series(tmp_path / "nowhere")


def test_bad_inputs_name_the_call_and_the_field(tmp_path):
    ct = Volume(data=_hu((4, 4, 2)), affine=np.eye(4))
    with pytest.raises(
        ValueError,
        match=r"save_dicom_series: `modality` must be one of \['CT', 'MR'\] \(got 'PET'\)",
    ):
        save_dicom_series(ct, tmp_path / "a", uid_seed="s", modality="PET")
    with pytest.raises(ValueError, match="`uid_seed` must be a non-empty string"):
        save_dicom_series(ct, tmp_path / "a", uid_seed="")
    with pytest.raises(ValueError, match="`patient_sex` must be"):
        save_dicom_series(ct, tmp_path / "a", uid_seed="s", patient_sex="X")
    with pytest.raises(ValueError, match="`patient_id` must be text of at most 64 characters"):
        save_dicom_series(ct, tmp_path / "a", uid_seed="s", patient_id="x" * 65)
    with pytest.raises(ValueError, match="NaN or infinite"):
        save_dicom_series(ct.with_data(np.full((4, 4, 2), np.nan)), tmp_path / "a", uid_seed="s")
    with pytest.raises(TypeError, match=r"must be a medphys\.Volume"):
        save_dicom_series(np.zeros((4, 4, 2)), tmp_path / "a", uid_seed="s")
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(ValueError, match="not perpendicular"):
        save_dicom_series(Volume(data=ct.data, affine=sheared), tmp_path / "a", uid_seed="s")
    with pytest.raises(ValueError, match="do not fit in int16"):
        save_dicom_series(ct, tmp_path / "a", uid_seed="s", rescale=(0.01, 0.0))
    save_dicom_series(ct, tmp_path / "b", uid_seed="s")
    with pytest.raises(ValueError, match=r"already holds 2 \.dcm file"):
        save_dicom_series(ct, tmp_path / "b", uid_seed="s")
    save_dicom_series(ct, tmp_path / "b", uid_seed="s", overwrite=True)


def _fake_dataset(root, shape=(6, 5, 3)) -> None:
    """A dataset folder in the layout of `medphys generate`, written from values."""
    labels = _labels(shape=(12, 10, 6))
    lines = []
    for index in range(2):
        name = f"case-{index:04d}"
        case = root / "cases" / name
        save_nifti(labels, case / "label.nii.gz")
        save_nifti(Volume(data=_hu(labels.shape, index), affine=labels.affine), case / "ct.nii.gz")
        mr = np.abs(_hu(labels.shape, 10 + index)) / 3000
        save_nifti(Volume(data=mr, affine=labels.affine), case / "mr.nii.gz")
        lines.append(
            json.dumps(
                {"case": name, **{k: f"cases/{name}/{k}.nii.gz" for k in ("label", "ct", "mr")}}
            )
        )
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (root / "dataset.json").write_text(json.dumps({"config_digest": "abc123"}))


def test_export_dicom_writes_ct_mr_and_seg_per_case(tmp_path):
    _fake_dataset(tmp_path / "data")
    cases = export_dicom(tmp_path / "data", tmp_path / "dicom")
    assert [c.name for c in cases] == ["case-0000", "case-0001"]
    for case in cases:
        ct = load_dicom_series(case / "CT")
        mr = load_dicom_series(case / "MR")
        assert ct.shape == mr.shape == (12, 10, 6)
        seg = hd.seg.segread(case / "SEG" / "labels.dcm")
        assert seg.number_of_segments == 3
        ct0 = pydicom.dcmread(next((case / "CT").glob("*.dcm")))
        mr0 = pydicom.dcmread(next((case / "MR").glob("*.dcm")))
        assert ct0.StudyInstanceUID == mr0.StudyInstanceUID == seg.StudyInstanceUID
    again = export_dicom(tmp_path / "data", tmp_path / "dicom2", modalities=("ct",), seg=False)
    assert (again[0] / "CT" / "slice-0001.dcm").read_bytes() == (
        cases[0] / "CT" / "slice-0001.dcm"
    ).read_bytes()
    with pytest.raises(
        ValueError, match=r"export_dicom: `modalities` holds 'pet'.*allowed: \['ct', 'mr'\]"
    ):
        export_dicom(tmp_path / "data", tmp_path / "dicom3", modalities=("pet",))
