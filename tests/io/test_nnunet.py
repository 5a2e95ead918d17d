"""nnU-Net v2 raw export: layout, dataset.json, one label table by structure name, bad inputs."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medphys import LabeledVolume, Structure, Volume
from medphys.io import (
    export_nnunet,
    label_table,
    load_nifti,
    remap_labels,
    save_nifti,
    write_nnunet,
)
from medphys.volume import make_affine

SHAPE = (8, 6, 4)
AFFINE = make_affine(SHAPE, (2.0, 2.5, 3.0), center_mm=(1.0, -2.0, 30.0))

# Two phantoms that number their structures differently: value 2 is the prostate in the male
# and the uterus in the female; value 3 is the bladder in one and the body in the other.
MALE = (
    Structure(0, "background", "air"),
    Structure(1, "body", "adipose"),
    Structure(2, "prostate", "prostate"),
    Structure(3, "bladder", "urine"),
)
FEMALE = (
    Structure(0, "background", "air"),
    Structure(3, "body", "adipose"),
    Structure(2, "uterus", "muscle"),
    Structure(1, "bladder", "urine"),
)


def _case(structures, seed) -> dict[str, Volume | LabeledVolume]:
    labels = np.zeros(SHAPE, np.uint8)
    body = next(s.label for s in structures if s.name == "body")
    organ = next(s.label for s in structures if s.name in ("prostate", "uterus"))
    bladder = next(s.label for s in structures if s.name == "bladder")
    labels[1:-1, 1:-1, :] = body
    labels[2:4, 2:4, 1:3] = organ
    labels[5, 3, 1:3] = bladder
    rng = np.random.default_rng(seed)
    return {
        "label": LabeledVolume(labels=labels, affine=AFFINE, structures=structures),
        "ct": Volume(data=rng.normal(0, 100, SHAPE).astype(np.float32), affine=AFFINE),
        "mr": Volume(data=rng.uniform(0, 1, SHAPE).astype(np.float32), affine=AFFINE),
    }


def _dataset(root, *, manifest=True) -> dict[str, dict]:
    """A dataset folder in the layout of `medphys generate`, written from values."""
    cases = {"case-0000": _case(MALE, 0), "case-0001": _case(FEMALE, 1)}
    lines = []
    for name, values in cases.items():
        for key, volume in values.items():
            save_nifti(volume, root / "cases" / name / f"{key}.nii.gz")
        (root / "cases" / name / "case.json").write_text("{}")
        entry = {"case": name, "ct": f"cases/{name}/ct.nii.gz", "mr": f"cases/{name}/mr.nii.gz"}
        entry |= {"label": f"cases/{name}/label.nii.gz", "sidecar": f"cases/{name}/case.json"}
        lines.append(json.dumps(entry))
    if manifest:
        (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (root / "dataset.json").write_text(json.dumps({"config_digest": "0123abcd"}))
    return cases


def test_export_writes_the_nnunet_layout_and_dataset_json(tmp_path):
    cases = _dataset(tmp_path / "data")
    folder = export_nnunet(tmp_path / "data", tmp_path / "raw", dataset_id=7, name="Pelvis")
    assert folder == tmp_path / "raw" / "Dataset007_Pelvis"
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        "case-0000_0000.nii.gz",
        "case-0001_0000.nii.gz",
    ]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [
        "case-0000.nii.gz",
        "case-0001.nii.gz",
    ]
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}  # nnU-Net's CT normalisation
    assert meta["labels"] == {"background": 0, "bladder": 1, "body": 2, "prostate": 3, "uterus": 4}
    assert meta["numTraining"] == 2
    assert meta["file_ending"] == ".nii.gz"
    assert meta["medphys"]["source_digest"] == "0123abcd"
    assert meta["medphys"]["label_order"].startswith("background 0, then the other structure names")
    assert meta["medphys"]["cases"] == ["case-0000", "case-0001"]
    assert meta["medphys"]["synthetic"] is True
    image = nib.load(folder / "imagesTr" / "case-0000_0000.nii.gz")
    assert image.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), cases["case-0000"]["ct"].data)
    np.testing.assert_allclose(image.affine, AFFINE, atol=1e-5)
    label = nib.load(folder / "labelsTr" / "case-0000.nii.gz")
    assert label.get_data_dtype() == np.uint8
    np.testing.assert_allclose(label.affine, AFFINE, atol=1e-5)


def test_labels_are_remapped_by_name_so_prostate_and_uterus_differ(tmp_path):
    cases = _dataset(tmp_path / "data")
    folder = export_nnunet(tmp_path / "data", tmp_path / "raw", dataset_id=7, name="Pelvis")
    table = json.loads((folder / "dataset.json").read_text())["labels"]
    for name, structures in (("case-0000", MALE), ("case-0001", FEMALE)):
        before = np.asarray(cases[name]["label"].labels)
        after = load_nifti(folder / "labelsTr" / f"{name}.nii.gz")
        assert isinstance(after, LabeledVolume)
        for s in structures:
            np.testing.assert_array_equal(after.labels == table[s.name], before == s.label)
        assert {s.name: s.label for s in after.structures} == {
            s.name: table[s.name] for s in structures
        }
    male = load_nifti(folder / "labelsTr" / "case-0000.nii.gz").labels
    female = load_nifti(folder / "labelsTr" / "case-0001.nii.gz").labels
    assert set(np.unique(male)) == {0, 1, 2, 3}  # prostate = 3
    assert set(np.unique(female)) == {0, 1, 2, 4}  # uterus = 4


def test_the_source_datasets_table_or_a_given_one_is_used_when_valid(tmp_path):
    _dataset(tmp_path / "data")
    # A dataset-wide table in the source dataset.json (first-seen order) is kept as it is.
    source = {"background": 0, "body": 1, "prostate": 2, "bladder": 3, "uterus": 4}
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"digest": "d1", "labels": source}))
    folder = export_nnunet(tmp_path / "data", tmp_path / "raw", dataset_id=20, name="Src")
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["labels"] == source
    assert meta["medphys"]["source_digest"] == "d1"
    assert "dataset.json" in meta["medphys"]["label_order"]
    female = load_nifti(folder / "labelsTr" / "case-0001.nii.gz")
    assert {s.name: s.label for s in female.structures}["uterus"] == 4
    # One that misses a structure (or has gaps) is not nnU-Net's: the sorted table is used.
    (tmp_path / "data" / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "body": 1, "prostate": 2}})
    )
    folder = export_nnunet(tmp_path / "data", tmp_path / "raw", dataset_id=21, name="Fallback")
    assert json.loads((folder / "dataset.json").read_text())["labels"]["uterus"] == 4
    # A table given by the caller wins, and is checked.
    given = {"background": 0, "uterus": 1, "prostate": 2, "body": 3, "bladder": 4}
    folder = export_nnunet(
        tmp_path / "data", tmp_path / "raw", dataset_id=22, name="Given", labels=given
    )
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["labels"] == given and meta["medphys"]["label_order"] == "given by the caller"
    for bad, match in (
        (
            {"background": 0, "body": 1},
            r"no value for the structures \['bladder', 'prostate', 'uterus'\]",
        ),
        ({**given, "body": 7}, r"values must be 0, 1, 2, \.\.\. without gaps"),
        ({**given, "background": 5}, r"must map 'background' to 0"),
        ({**given, "body": "3"}, r"must map structure names to integers"),
    ):
        with pytest.raises((ValueError, TypeError), match=r"export_nnunet: `labels` .*" + match):
            export_nnunet(
                tmp_path / "data", tmp_path / "raw", dataset_id=23, name="Bad", labels=bad
            )


def test_two_channels_and_a_folder_without_manifest(tmp_path):
    cases = _dataset(tmp_path / "data", manifest=False)
    folder = export_nnunet(
        tmp_path / "data", tmp_path / "raw", dataset_id=8, name="Both", channels=("ct", "mr")
    )
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "MR"}
    assert meta["medphys"]["channels"] == {"0": "ct", "1": "mr"}
    mr = load_nifti(folder / "imagesTr" / "case-0001_0001.nii.gz")
    np.testing.assert_array_equal(mr.data, cases["case-0001"]["mr"].data)


def test_export_is_reproducible_and_overwrite_removes_stale_cases(tmp_path):
    _dataset(tmp_path / "data")
    a = export_nnunet(tmp_path / "data", tmp_path / "a", dataset_id=9, name="Repro")
    b = export_nnunet(tmp_path / "data", tmp_path / "b", dataset_id=9, name="Repro")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    with pytest.raises(ValueError, match=r"export_nnunet: .*Dataset009_Repro.* already exists"):
        export_nnunet(tmp_path / "data", tmp_path / "a", dataset_id=9, name="Repro")
    (a / "imagesTr" / "old-case_0000.nii.gz").write_bytes(b"")
    export_nnunet(tmp_path / "data", tmp_path / "a", dataset_id=9, name="Repro", overwrite=True)
    assert not (a / "imagesTr" / "old-case_0000.nii.gz").exists()
    with pytest.raises(ValueError, match="same dataset id"):
        export_nnunet(tmp_path / "data", tmp_path / "a", dataset_id=9, name="Other")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dataset_id": 0}, ValueError, r"`dataset_id` must be from 1 to 999.*\(got 0\)"),
        ({"dataset_id": 1000}, ValueError, r"`dataset_id` must be from 1 to 999.*\(got 1000\)"),
        ({"dataset_id": True}, TypeError, r"`dataset_id` must be an integer"),
        ({"dataset_id": "5"}, TypeError, r"`dataset_id` must be an integer"),
        ({"name": "my data"}, ValueError, r"`name` must be 1-64 letters.*\(got 'my data'\)"),
        ({"name": ""}, ValueError, r"`name` must be"),
        ({"name": "_x"}, ValueError, r"`name` must be"),
        (
            {"channels": ("pet",)},
            ValueError,
            r"`channels` holds 'pet', which is not an image of this dataset; allowed: \['ct', 'mr'\]",
        ),
        ({"channels": ()}, ValueError, r"`channels` must name at least one"),
        ({"channels": ("ct", "ct")}, ValueError, r"`channels` names a key twice"),
    ],
)
def test_bad_inputs_name_the_call_the_field_and_what_is_allowed(tmp_path, kwargs, error, match):
    _dataset(tmp_path / "data")
    args = {"dataset_id": 3, "name": "Ok", **kwargs}
    with pytest.raises(error, match=r"medphys\.io\.export_nnunet: " + match):
        export_nnunet(tmp_path / "data", tmp_path / "raw", **args)
    assert not (tmp_path / "raw").exists()  # validated before anything is written


def test_missing_dataset_and_label_files_without_a_table(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        export_nnunet(tmp_path / "nowhere", tmp_path / "raw", dataset_id=1, name="X")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"neither manifest\.jsonl nor cases/"):
        export_nnunet(tmp_path / "empty", tmp_path / "raw", dataset_id=1, name="X")
    _dataset(tmp_path / "data")
    foreign = nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE)
    nib.save(foreign, tmp_path / "data" / "cases" / "case-0001" / "label.nii.gz")
    with pytest.raises(ValueError, match="carries no medphys structure table"):
        export_nnunet(tmp_path / "data", tmp_path / "raw", dataset_id=1, name="X")


def test_write_nnunet_from_values_checks_the_grid(tmp_path):
    cases = {"a": _case(MALE, 0), "b": _case(FEMALE, 1)}
    folder = write_nnunet(
        tmp_path, cases, dataset_id=12, name="Mem", channels=("mr",), provenance={"note": "x"}
    )
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "MR"}
    assert meta["medphys"]["note"] == "x"
    assert (folder / "labelsTr" / "b.nii.gz").is_file()
    shifted = dict(cases["b"])
    shifted["ct"] = Volume(data=shifted["ct"].data, affine=AFFINE + np.diag([0, 0, 0.5, 0]))
    with pytest.raises(
        ValueError, match=r"write_nnunet: case 'b': the 'ct' image .* not on the label grid"
    ):
        write_nnunet(tmp_path, {"b": shifted}, dataset_id=13, name="Bad")
    with pytest.raises(ValueError, match=r"case identifier 'a b'"):
        write_nnunet(tmp_path, {"a b": cases["a"]}, dataset_id=14, name="Bad")
    with pytest.raises(TypeError, match=r"needs a medphys\.LabeledVolume under 'label'"):
        write_nnunet(tmp_path, {"a": {"ct": cases["a"]["ct"]}}, dataset_id=15, name="Bad")


def test_label_table_is_sorted_by_name_whatever_the_case_order():
    assert (
        label_table([MALE, FEMALE])
        == label_table([FEMALE, MALE])
        == {
            "background": 0,
            "bladder": 1,
            "body": 2,
            "prostate": 3,
            "uterus": 4,
        }
    )
    # Value 0 is the background whatever its name.
    assert label_table([(Structure(0, "outside", "air"), Structure(4, "liver", "liver"))]) == {
        "background": 0,
        "liver": 1,
    }


def test_remap_labels_keeps_materials_and_refuses_unknown_names():
    case = _case(MALE, 0)["label"]
    table = label_table([MALE, FEMALE])
    out = remap_labels(case, table)
    assert out.labels.dtype == np.uint8
    assert {(s.name, s.material) for s in out.structures} == {(s.name, s.material) for s in MALE}
    with pytest.raises(
        ValueError, match=r"remap_labels: structure 'prostate' \(value 2\) is not in `table`"
    ):
        remap_labels(case, label_table([FEMALE]))
    with pytest.raises(ValueError, match="must map 'background' to 0"):
        remap_labels(case, {"body": 1})
    big = {"background": 0, **{f"s{i:03d}": i for i in range(1, 300)}, "body": 300}
    big |= {"prostate": 301, "bladder": 302}
    assert remap_labels(case, big).labels.dtype == np.uint16
