"""The exports read by the tools they are for: nnU-Net v2's own dataset check, MONAI's loading
chain on manifest entries, SimpleITK's DICOM series reader.

These need the tools themselves (PyTorch, nnunetv2, monai, SimpleITK) and are skipped without them.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medphys import LabeledVolume, Structure, Volume, phantoms
from medphys.io import export_nnunet, save_dicom_series, save_nifti

# MONAI 1.6 warns when it registers its optional GPU DICOM decoder, and about a changed default
# of Orientationd; neither concerns these files.
pytestmark = [
    pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*Orientationd:FutureWarning"),
]

SHAPE = (32, 32, 16)
SPACING = (12.0, 8.0, 20.0)


@pytest.fixture(scope="module")
def torso() -> LabeledVolume:
    """A real voxelized phantom, small."""
    return phantoms.voxelize(
        phantoms.load("torso-basic"),
        shape=SHAPE,
        spacing_mm=SPACING,
        supersample=1,
        fractions=phantoms.Fractions.NONE,
    )


def _renumbered(labels: LabeledVolume) -> LabeledVolume:
    """The same anatomy numbered in reverse structure order (as another phantom family would)."""
    rows = labels.structures
    top = max(s.label for s in rows)
    new = {s.label: (0 if s.label == 0 else top + 1 - s.label) for s in rows}
    lut = np.zeros(top + 1, np.uint8)
    for old, value in new.items():
        lut[old] = value
    return LabeledVolume(
        labels=lut[np.asarray(labels.labels)],
        affine=labels.affine,
        structures=tuple(Structure(new[s.label], s.name, s.material, s.mr) for s in rows),
    )


def _write_dataset(root, torso: LabeledVolume) -> list[dict[str, str]]:
    """Two cases in the layout of `medphys generate`: labels, a CT made by mapping labels to HU
    (plus noise), an MR image, a projections file; manifest.jsonl and dataset.json."""
    hu = np.linspace(-1000.0, 1500.0, max(s.label for s in torso.structures) + 1)
    entries = []
    for index, labels in enumerate((torso, _renumbered(torso))):
        name = f"case-{index:04d}"
        case = root / "cases" / name
        rng = np.random.default_rng(index)
        by_name = {
            s.name: hu[i] for i, s in enumerate(sorted(torso.structures, key=lambda s: s.label))
        }
        values = np.zeros(max(s.label for s in labels.structures) + 1)
        for s in labels.structures:
            values[s.label] = by_name[s.name]
        ct = values[np.asarray(labels.labels)] + rng.normal(0.0, 10.0, SHAPE)
        mr = np.abs(ct + 1000.0) / 2500.0
        save_nifti(labels, case / "label.nii.gz")
        save_nifti(Volume(data=ct.astype(np.float32), affine=labels.affine), case / "ct.nii.gz")
        save_nifti(Volume(data=mr.astype(np.float32), affine=labels.affine), case / "mr.nii.gz")
        np.save(case / "projections.npy", np.zeros((4, 8, 8), np.float32))
        entry = {k: f"cases/{name}/{k}.nii.gz" for k in ("ct", "mr", "label")}
        entries.append({"case": name, **entry, "projections": f"cases/{name}/projections.npy"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    (root / "dataset.json").write_text(json.dumps({"config_digest": "ecosystem"}))
    return entries


# nnU-Net's check starts worker processes by "spawn" (fork + exec): JAX's fork warning does not
# apply to a child that execs at once.
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_nnunet_accepts_the_export(tmp_path, monkeypatch, torso):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(var, str(tmp_path / var))
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    _write_dataset(tmp_path / "data", torso)
    folder = export_nnunet(
        tmp_path / "data",
        tmp_path / "nnUNet_raw",
        dataset_id=501,
        name="Torso",
        channels=("ct", "mr"),
    )
    verify_dataset_integrity(str(folder), num_processes=1)  # raises on any problem

    # The check is not vacuous: a label value outside dataset.json's table is refused.
    bad = nib.load(folder / "labelsTr" / "case-0001.nii.gz")
    data = np.asanyarray(bad.dataobj).copy()
    data[0, 0, 0] = 200
    nib.save(
        nib.Nifti1Image(data, bad.affine, bad.header), folder / "labelsTr" / "case-0001.nii.gz"
    )
    with pytest.raises(RuntimeError, match="unexpected labels"):
        verify_dataset_integrity(str(folder), num_processes=1)


def _monai_chain(keys, pixdim):
    monai = pytest.importorskip("monai")
    t = monai.transforms
    return t.Compose(
        [
            t.LoadImaged(keys=keys),
            t.EnsureChannelFirstd(keys=keys),
            t.Orientationd(keys=keys, axcodes="RAS"),
            t.Spacingd(
                keys=keys,
                pixdim=pixdim,
                mode=["nearest" if k == "label" else "bilinear" for k in keys],
            ),
        ]
    )


def test_monai_loads_manifest_entries(tmp_path, torso):
    entries = _write_dataset(tmp_path, torso)
    keys = ["ct", "mr", "label"]
    chain = _monai_chain(keys, pixdim=(24.0, 16.0, 40.0))
    item = {k: str(tmp_path / v) if k != "case" else v for k, v in entries[1].items()}
    out = chain(item)
    for key in keys:
        assert tuple(out[key].shape) == (1, 16, 16, 8)
        np.testing.assert_allclose(
            np.asarray(out[key].affine)[:3, :3], np.diag([24.0, 16.0, 40.0]), atol=1e-5
        )
    # Labels stay labels (nearest neighbour), and keep the case's own values.
    present = {s.label for s in _renumbered(torso).structures}
    assert set(np.unique(np.asarray(out["label"]))) <= present
    # Keys that are not loaded pass through.
    assert out["case"] == "case-0001"
    assert out["projections"].endswith("projections.npy")
    # Before resampling, MONAI sees medphys's grid: the loaded affine is the NIfTI's.
    loaded = _monai_chain(keys, pixdim=SPACING)(dict(item))
    np.testing.assert_allclose(np.asarray(loaded["ct"].affine), torso.affine, atol=1e-4)
    ct = nib.load(tmp_path / entries[1]["ct"])
    np.testing.assert_allclose(np.asarray(loaded["ct"])[0], np.asanyarray(ct.dataobj), atol=1e-3)


def test_monai_takes_keys_that_extend_an_image_key_for_its_metadata(tmp_path, torso):
    """MONAI's Spacingd updates every key that starts with ``<image key>_`` as that image's
    metadata dict: a manifest key such as ``ct_projections`` (a path) crashes it. Keys that do not
    start with an image key and an underscore (``projections``, ``ct-projections``) are safe."""
    entries = _write_dataset(tmp_path, torso)
    keys = ["ct", "label"]
    chain = _monai_chain(keys, pixdim=(24.0, 16.0, 40.0))
    item = {k: str(tmp_path / v) for k, v in entries[0].items() if k != "case"}
    for safe in ("projections", "projections-ct", "ct-projections", "ctprojections", "sidecar"):
        chain({**item, safe: item["projections"]})
    for clash in ("ct_projections", "label_sidecar"):
        with pytest.raises(RuntimeError) as info:
            chain({**item, clash: item["projections"]})
        cause = info.value
        while cause.__cause__ is not None:
            cause = cause.__cause__
        assert isinstance(cause, AttributeError)
        assert "has no attribute 'update'" in str(cause)


def test_simpleitk_reads_the_dicom_series_at_the_same_place(tmp_path):
    """An independent DICOM reader (ITK/GDCM) finds the same HU and the same world geometry."""
    sitk = pytest.importorskip("SimpleITK")
    pytest.importorskip("pydicom")
    theta = 0.3
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, 1.1, 2.5])
    affine[:3, 3] = [-40.123456, 12.5, 101.75]
    rng = np.random.default_rng(3)
    ct = Volume(data=rng.uniform(-1000, 2000, (10, 9, 5)).astype(np.float32), affine=affine)
    save_dicom_series(ct, tmp_path / "CT", uid_seed="itk")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "CT")))
    image = reader.Execute()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    data = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))  # ITK arrays are (z, y, x)
    itk = nib.as_closest_canonical(
        nib.Nifti1Image(data.astype(np.float32), np.diag([-1, -1, 1, 1]) @ lps)
    )
    ours = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(ct.data), affine))
    np.testing.assert_allclose(itk.affine, ours.affine, rtol=0, atol=1e-4)
    assert np.max(np.abs(np.asarray(itk.dataobj) - np.asarray(ours.dataobj))) <= 0.5 + 1e-3
