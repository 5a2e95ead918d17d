"""NIfTI round trips through nibabel: data, dtype, affine, label tables; atomic writes."""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest

from medphys import LabeledVolume, Structure, Volume
from medphys.io import atomic_path, load_nifti, save_nifti
from medphys.volume import MRValues


def _oblique_affine() -> np.ndarray:
    theta = 0.3
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([0.7123456789, 0.9, 2.5])
    a[:3, 3] = [-101.123456789, 33.3333333333, 7.0]
    return a


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_volume_round_trip_is_exact(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((5, 7, 3)) * 100).astype(dtype)
    v = Volume.create(data, affine=_oblique_affine())
    path = save_nifti(v, tmp_path / f"v{suffix}")
    w = load_nifti(path)
    assert isinstance(w, Volume)
    assert w.data.dtype == dtype
    np.testing.assert_array_equal(w.data, data)
    np.testing.assert_array_equal(w.affine, v.affine)  # float64-exact via the header extension


def test_other_readers_see_the_same_image(tmp_path):
    """nibabel alone (as MONAI/ITK would) reads data, sform/qform and units as written."""
    v = Volume.create(np.arange(24, dtype=np.float32).reshape(2, 3, 4), affine=_oblique_affine())
    save_nifti(v, tmp_path / "v.nii.gz")
    img = nib.load(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), v.data)
    np.testing.assert_allclose(img.affine, v.affine, rtol=0, atol=1e-5)  # float32 header precision
    np.testing.assert_allclose(img.get_qform(), v.affine, atol=1e-4)
    assert int(img.header["sform_code"]) == 1
    assert img.header.get_xyzt_units() == ("mm", "sec")


def test_labeled_volume_round_trip_keeps_structure_table(tmp_path):
    labels = np.array([[[0, 1], [2, 2]]], np.uint8)
    rows = (
        Structure(0, "background", "air"),
        Structure(1, "liver", "liver"),
        Structure(2, "spine", "cortical_bone"),
    )
    lv = LabeledVolume(labels=labels, affine=np.diag([2.0, 2.0, 2.0, 1.0]), structures=rows)
    save_nifti(lv, tmp_path / "label.nii.gz")
    back = load_nifti(tmp_path / "label.nii.gz")
    assert isinstance(back, LabeledVolume)
    assert back.structures == rows
    np.testing.assert_array_equal(back.labels, labels)
    assert back.labels.dtype == np.uint8
    assert int(nib.load(tmp_path / "label.nii.gz").header["intent_code"]) == 1002


def test_label_table_round_trip_keeps_per_structure_mr_values(tmp_path):
    labels = np.array([[[0, 1], [2, 2]]], np.int16)
    rows = (
        Structure(0, "background", "air"),
        Structure(1, "skull", "water", MRValues.create(0.12, 0.5524, 0.05, "Gach et al. 2008")),
        Structure(2, "csf", "water", MRValues.create(0.98, 4.2, 1.99, "fixed", t2star_s=1.5)),
    )
    lv = LabeledVolume(labels=labels, affine=np.diag([2.0, 2.0, 2.0, 1.0]), structures=rows)
    save_nifti(lv, tmp_path / "sl.nii")
    back = load_nifti(tmp_path / "sl.nii")
    assert back.structures == rows  # values, sources and the optional T2* survive exactly
    assert back.structures[2].mr.t2star_s == 1.5 and back.structures[0].mr is None


def test_label_table_without_mr_values_still_loads(tmp_path):
    """Files written before the MR column existed: three entries per row."""
    labels = np.array([[[0, 1]]], np.uint8)
    img = nib.Nifti1Image(labels, np.eye(4), dtype=np.uint8)
    meta = {
        "medphys": {
            "affine": np.eye(4).tolist(),
            "structures": [[0, "bg", "air"], [1, "liver", "liver"]],
        }
    }
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, json.dumps(meta).encode()))
    nib.save(img, tmp_path / "old.nii")
    back = load_nifti(tmp_path / "old.nii")
    assert back.structures == (Structure(0, "bg", "air"), Structure(1, "liver", "liver"))
    assert back.structures[1].mr is None
    meta["medphys"]["structures"][1].append({"pd": 0.5, "t1_s": -1.0, "t2_s": 0.05})
    img.header.extensions.clear()
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, json.dumps(meta).encode()))
    nib.save(img, tmp_path / "bad.nii")
    with pytest.raises(ValueError, match=r"structure 'liver' has invalid MR values .*t1_s"):
        load_nifti(tmp_path / "bad.nii")


def test_foreign_file_without_extension_loads_by_header(tmp_path):
    affine = np.diag([1.25, 1.25, 3.0, 1.0])
    nib.save(nib.Nifti1Image(np.ones((3, 3, 2), np.int16), affine), tmp_path / "f.nii.gz")
    v = load_nifti(tmp_path / "f.nii.gz")
    assert isinstance(v, Volume)
    np.testing.assert_array_equal(v.affine, affine)


def test_header_wins_when_another_tool_moved_the_image(tmp_path):
    v = Volume.create(np.zeros((2, 2, 2), np.float32), affine=_oblique_affine())
    save_nifti(v, tmp_path / "v.nii")
    img = nib.load(tmp_path / "v.nii")
    moved = img.affine.copy()
    moved[0, 3] += 10.0
    img.set_sform(moved)
    nib.save(img, tmp_path / "moved.nii")
    np.testing.assert_allclose(load_nifti(tmp_path / "moved.nii").affine, moved, atol=1e-5)


def test_bad_inputs(tmp_path):
    v = Volume.create(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"must end in \.nii or \.nii\.gz"):
        save_nifti(v, tmp_path / "v.png")
    with pytest.raises(TypeError, match="dtype bool cannot be stored"):
        save_nifti(Volume.create(np.zeros((2, 2, 2), bool)), tmp_path / "b.nii")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_nifti(tmp_path / "missing.nii.gz")
    (tmp_path / "junk.nii").write_bytes(b"not a nifti file at all")
    with pytest.raises(ValueError, match="not a readable NIfTI"):
        load_nifti(tmp_path / "junk.nii")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        # hidden, and not an image name: a reader scanning for *.nii.gz never sees a partial file
        assert tmp.name.startswith(".out.nii.gz.") and tmp.name.endswith(".partial")
        assert not list(tmp_path.glob("*.nii.gz")) and not list(tmp_path.glob("*.gz"))
        tmp.write_bytes(b"done")
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_leftover_partial_files_are_removed(tmp_path):
    """What a killed writer leaves (`atomic_path`'s names only) is cleaned; nothing else is."""
    from medphys.io import remove_partial_files

    (tmp_path / "a").mkdir()
    left = [
        tmp_path / ".ct.nii.gz.0123456789ab.partial",
        tmp_path / "a" / ".x.npy.abcdef012345.partial",
    ]
    keep = [
        tmp_path / "notes.partial",
        tmp_path / ".ct.nii.gz.short.partial",
        tmp_path / "ct.nii.gz",
    ]
    for p in left + keep:
        p.write_bytes(b"")
    assert remove_partial_files(tmp_path) == 2
    assert not any(p.exists() for p in left) and all(p.exists() for p in keep)


def test_gzipped_nifti_bytes_do_not_depend_on_time_or_name(tmp_path):
    vol = Volume.create(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    save_nifti(vol, tmp_path / "a.nii.gz")
    time.sleep(1.1)
    save_nifti(vol, tmp_path / "b.nii.gz")
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()
    np.testing.assert_array_equal(nib.load(tmp_path / "b.nii.gz").get_fdata(), vol.data)


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        save_nifti(Volume.create(np.zeros((2, 2, 2), np.float32)), tmp_path / "v.nii.gz")
    finally:
        os.umask(old)
    assert (tmp_path / "v.nii.gz").stat().st_mode & 0o777 == 0o644
