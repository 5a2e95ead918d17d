"""The dataset job at a tiny size: files, contents, manifest, reproducibility, resume, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medphys import LabeledVolume, Volume, make_affine
from medphys.io import load_nifti
from medphys.pipelines import OutputError, generate, load_config

TINY = """
cases = 2
seed = 11
[phantom]
name = "torso-basic"
shape = [36, 26, 6]
spacing_mm = [10.0, 10.0, 50.0]
center_mm = [0.0, 0.0, 0.0]
supersample = 1
[output]
montage = true
save_projections = true
"""


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def dataset(tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    summary = generate(out, load_config(tiny_config))
    return out, summary


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_files_are_present_and_loadable(dataset):
    out, summary = dataset
    assert summary["generated"] == 2 and summary["skipped"] == 0
    expected = make_affine((36, 26, 6), (10.0, 10.0, 50.0))
    for case in ("case-0000", "case-0001"):
        d = out / "cases" / case
        labels = load_nifti(d / "label.nii.gz")
        assert isinstance(labels, LabeledVolume)
        assert labels.shape == (36, 26, 6)
        np.testing.assert_array_equal(labels.affine, expected)
        for name in ("ct.nii.gz", "mr.nii.gz"):
            img = load_nifti(d / name)
            assert isinstance(img, Volume) and img.data.dtype == np.float32
            np.testing.assert_array_equal(img.affine, expected)
            # readers without medphys (nibabel, hence MONAI/ITK) see the same geometry
            np.testing.assert_allclose(nib.load(d / name).affine, expected, atol=1e-4)
        proj = np.load(d / "projections-ct.npy")
        assert proj.dtype == np.float32 and proj.ndim >= 2 and np.isfinite(proj).all()
    assert (out / "overview.png").stat().st_size > 10_000
    assert not list(out.rglob("*.partial")), "temporary files left behind"


def test_images_carry_the_physics(dataset):
    out, _ = dataset
    d = out / "cases" / "case-0000"
    labels = load_nifti(d / "label.nii.gz")
    ct = np.asarray(load_nifti(d / "ct.nii.gz").data)
    mr = np.asarray(load_nifti(d / "mr.nii.gz").data)
    lab = np.asarray(labels.labels)

    def region(name):
        return lab == labels.structure(name).label

    air = region("background")
    # HU calibration: air near -1000, soft tissue near 0..100, fat negative, lung in between
    assert np.median(ct[air]) == pytest.approx(-1000, abs=60)
    assert -200 < np.median(ct[region("liver")]) < 200
    assert np.median(ct[region("lung_right")]) < -400
    assert np.median(ct[region("visceral_fat")]) < np.median(ct[region("muscle")])
    # MR: air dark, tissues bright, T1-weighting makes fat brighter than liver... at least distinct
    assert np.median(mr[air]) < 0.2 * np.median(mr[region("liver")])
    assert (
        abs(np.median(mr[region("visceral_fat")]) - np.median(mr[region("liver")]))
        > 0.05 * mr.max()
    )


def test_manifest_and_sidecars_are_consistent(dataset):
    out, _ = dataset
    lines = [json.loads(s) for s in (out / "manifest.jsonl").read_text().splitlines()]
    assert [e["case"] for e in lines] == ["case-0000", "case-0001"]
    for entry in lines:
        for key in ("ct", "mr", "label"):
            assert not Path(entry[key]).is_absolute()
            assert (out / entry[key]).is_file()
        side = json.loads((out / entry["sidecar"]).read_text())
        assert side["seed"] == 11 and side["case"] == entry["case"]
        assert side["config"]["phantom"]["shape"] == [36, 26, 6]
        assert {"medphys", "jax", "xraylib", "spekpy"} <= set(side["versions"])
        assert side["phantom_params"]["body_scale"]
        # every input that shapes the bytes is recorded: protocol values, streams, digests
        ct = side["protocols"]["ct"]["content"]
        assert ct["spectrum"]["kvp"] == 120 and "mas" in json.dumps(ct["dose"])
        assert side["streams"] == {
            "phantom": "phantom",
            "texture": "texture",
            "ct": "arm/ct",
            "mr": "arm/mr",
        }
        assert side["digest"] == json.loads((out / "dataset.json").read_text())["digest"]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["config"]["cases"] == 2
    assert set(meta["inputs"]) == {
        "config",
        "medphys",
        "phantom/torso-basic",
        "protocol/ct",
        "protocol/mr",
    }
    assert meta["definitions"]["phantom/torso-basic"]["content"]["name"] == "torso-basic"


def test_manifest_keys_are_safe_for_monai(dataset):
    """MONAI reads a key ``<image key>_<anything>`` as that image's metadata: none may exist."""
    out, _ = dataset
    entry = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert {"ct", "mr", "label", "projections-ct", "sidecar"} <= set(entry)
    for key in entry:
        assert not any(key.startswith(other + "_") for other in entry if other != key), key


def test_one_label_table_for_the_whole_dataset(dataset):
    out, _ = dataset
    table = json.loads((out / "dataset.json").read_text())["labels"]
    assert table["background"] == 0 and len(set(table.values())) == len(table)
    for case in ("case-0000", "case-0001"):
        labels = load_nifti(out / "cases" / case / "label.nii.gz")
        for s in labels.structures:
            assert table[s.name] == s.label
        assert set(np.unique(np.asarray(labels.labels))) <= set(table.values())


def test_sex_specific_organs_get_distinct_labels():
    from medphys import phantoms
    from medphys.io import label_table

    male, female = phantoms.load("adult-male"), phantoms.load("adult-female")
    table = label_table([male.structure_names, female.structure_names])
    assert "prostate" in male.structure_names and "uterus" in female.structure_names
    assert table["prostate"] != table["uterus"]
    # shared organs keep one value; the table is background 0 then the names, sorted
    assert list(table) == [
        "background",
        *sorted(set(male.structure_names) | set(female.structure_names)),
    ]


@pytest.mark.slow  # the engine and interruption tests compare fresh processes' bytes too
def test_same_seed_same_bytes_across_processes(dataset, tiny_config, tmp_path):
    """A fresh `medphys generate` process reproduces the in-process run byte for byte."""
    out, _ = dataset
    again = tmp_path / "again"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medphys.cli",
            "generate",
            "--out",
            str(again),
            "--config",
            str(tiny_config),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert _digests(again) == _digests(out)


def test_resume_after_interruption(dataset, tiny_config, tmp_path):
    out, _ = dataset
    partial = tmp_path / "partial"

    class Stop(Exception):
        pass

    def stop_after_first(message, done, total):
        if done == 1:
            raise Stop

    with pytest.raises(Stop):
        generate(partial, load_config(tiny_config), progress=stop_after_first)
    assert (partial / "cases" / "case-0000" / "case.json").is_file()
    assert not (partial / "cases" / "case-0001").exists()
    # the manifest already lists exactly the complete case
    assert [
        json.loads(s)["case"] for s in (partial / "manifest.jsonl").read_text().splitlines()
    ] == ["case-0000"]
    # a crash in the middle of case 1 leaves files without a sidecar: they are redone
    (partial / "cases" / "case-0001").mkdir(parents=True)
    (partial / "cases" / "case-0001" / "ct.nii.gz").write_bytes(b"truncated")
    summary = generate(partial, load_config(tiny_config))
    assert summary["skipped"] == 1 and summary["generated"] == 1
    assert _digests(partial) == _digests(out)


def test_more_cases_extend_a_finished_run(dataset, tiny_config, tmp_path):
    out, _ = dataset
    grown = tmp_path / "grown"
    generate(grown, load_config(tiny_config, overrides={"cases": 1}))
    summary = generate(grown, load_config(tiny_config))
    assert summary == {**summary, "generated": 1, "skipped": 1}
    assert (grown / "cases" / "case-0001" / "ct.nii.gz").read_bytes() == (
        out / "cases" / "case-0001" / "ct.nii.gz"
    ).read_bytes()


def test_folder_of_another_config_is_refused(dataset, tiny_config):
    out, _ = dataset
    other = load_config(tiny_config, overrides={"seed": 12})
    with pytest.raises(
        OutputError,
        match=r"different inputs \(changed: config \(config keys: seed\)\).*--overwrite",
    ):
        generate(out, other)


def test_several_families_take_turns(tmp_path):
    cfg = tmp_path / "two.toml"
    cfg.write_text(
        TINY.replace('name = "torso-basic"', 'name = ["torso-basic", "water-cylinder"]').replace(
            "cases = 2", "cases = 3"
        )
    )
    config = load_config(cfg)
    assert config.phantom.names == ("torso-basic", "water-cylinder")
    generate(tmp_path / "out", config)
    families = []
    for case in ("case-0000", "case-0001", "case-0002"):
        d = tmp_path / "out" / "cases" / case
        meta = json.loads((d / "case.json").read_text())
        names = {row[1] for row in meta["structures"]}
        assert (
            meta["labels"] == json.loads((tmp_path / "out" / "dataset.json").read_text())["labels"]
        )
        families.append(meta["phantom"])
        assert ("liver" in names) == (meta["phantom"] == "torso-basic")
    assert families == ["torso-basic", "water-cylinder", "torso-basic"]


def test_the_default_job_uses_the_adult_phantoms(tmp_path):
    from medphys import ConfigError

    assert load_config().phantom.names == ("adult-male", "adult-female")
    # the Python defaults are the embedded file's: a config that sets only `cases` gets the same job
    from medphys.pipelines import GenerateConfig

    assert GenerateConfig() == load_config()
    assert not load_config().output.save_projections
    cfg = tmp_path / "empty.toml"
    cfg.write_text("[phantom]\nname = []\n")
    with pytest.raises(ConfigError, match=r"empty.toml:2: phantom.name"):
        load_config(cfg)


def test_changed_protocol_or_phantom_definition_is_named_and_never_mixed(tmp_path):
    """Editing a protocol (mAs 100 → 5) or a phantom file refuses the rerun and names the input;
    --overwrite starts over and the new value is in every sidecar."""
    from medphys._catalog import resolve

    protocol = tmp_path / "my-ct.toml"
    protocol.write_text(resolve("simulators", "ct-chest-120kvp").read_text())
    phantom = tmp_path / "my-torso.toml"
    phantom.write_text(resolve("phantoms", "torso-basic").read_text())
    cfg = tmp_path / "job.toml"
    cfg.write_text(
        TINY.replace("cases = 2", "cases = 1")
        .replace('name = "torso-basic"', f'name = "{phantom}"')
        .replace("[output]", f'[ct]\nprotocol = "{protocol}"\n[output]')
    )
    out = tmp_path / "out"
    generate(out, load_config(cfg))
    before = (out / "cases" / "case-0000" / "ct.nii.gz").read_bytes()

    protocol.write_text(protocol.read_text().replace("mas = 100.0", "mas = 5.0"))
    with pytest.raises(OutputError, match=r"changed: protocol/ct\).*--overwrite"):
        generate(out, load_config(cfg))
    # a comment is not a change: the digest covers the parsed definition
    phantom.write_text("# my copy\n" + phantom.read_text())
    with pytest.raises(OutputError, match=r"changed: protocol/ct\)"):
        generate(out, load_config(cfg))
    summary = generate(out, load_config(cfg), overwrite=True)
    assert summary["generated"] == 1
    side = json.loads((out / "cases" / "case-0000" / "case.json").read_text())
    assert side["protocols"]["ct"]["content"]["dose"]["mas"] == 5.0
    assert side["protocols"]["ct"]["path"] == str(protocol)
    after = (out / "cases" / "case-0000" / "ct.nii.gz").read_bytes()
    assert after != before  # 20x fewer photons: other noise

    phantom.write_text(phantom.read_text().replace('name = "liver"', 'name = "liver2"', 1))
    with pytest.raises(OutputError, match=r"changed: phantom/.*my-torso.toml\)"):
        generate(out, load_config(cfg))


def test_exports_from_the_command_line(dataset, tmp_path):
    """`medphys export nnunet` and `medphys export dicom` on a generated dataset."""
    import pydicom

    from medphys.cli import main

    out, _ = dataset
    raw = tmp_path / "raw"
    assert (
        main(["export", "nnunet", str(out), "--out", str(raw), "--id", "7", "--name", "Tiny"]) == 0
    )
    folder = raw / "Dataset007_Tiny"
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["channel_names"] == {"0": "CT"}
    assert meta["file_ending"] == ".nii.gz" and meta["labels"]["background"] == 0
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        "case-0000_0000.nii.gz",
        "case-0001_0000.nii.gz",
    ]
    assert len(list((folder / "labelsTr").glob("*.nii.gz"))) == 2
    dicom = tmp_path / "dicom"
    assert main(["export", "dicom", str(out), "--out", str(dicom), "--modalities", "ct"]) == 0
    files = sorted(dicom.rglob("*.dcm"))
    ct = [pydicom.dcmread(f) for f in files if f.parent.name == "CT"]
    assert len(ct) == 2 * 6 and all(ds.SyntheticData == "YES" for ds in ct)
    hu = load_nifti(out / "cases" / "case-0000" / "ct.nii.gz")
    # the DICOM series reads back to the NIfTI's HU (within the int16 rescale step)
    from medphys.io import load_dicom_series

    back = load_dicom_series(dicom / "case-0000" / "CT")
    np.testing.assert_allclose(np.asarray(back.data), np.asarray(hu.data), atol=0.51)
    np.testing.assert_allclose(np.asarray(back.affine), np.asarray(hu.affine), atol=1e-4)
    assert (
        main(
            [
                "export",
                "nnunet",
                str(tmp_path / "nothing"),
                "--out",
                str(raw),
                "--id",
                "8",
                "--name",
                "X",
            ]
        )
        == 2
    )


@pytest.mark.slow  # about 9 s; test_ecosystem's nnU-Net check of `export_nnunet` stays in the default
def test_nnunet_accepts_the_export_of_a_generated_dataset(dataset, tmp_path):
    """nnU-Net v2's own integrity check on `medphys export nnunet` output (integration extra).

    It runs in a fresh interpreter: nnU-Net forks a process pool, and a fork of this process
    (which holds JAX's threads) can deadlock."""
    pytest.importorskip("nnunetv2")
    from medphys.io import export_nnunet

    out, _ = dataset
    folder = export_nnunet(
        out, tmp_path / "nnUNet_raw", dataset_id=9, name="Phantoms", channels=("ct", "mr")
    )
    env = dict(os.environ)
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[var] = str(tmp_path / var)
    code = (
        "import sys\n"
        "from nnunetv2.experiment_planning.verify_dataset_integrity import "
        "verify_dataset_integrity\n"
        "verify_dataset_integrity(sys.argv[1], num_processes=1)\n"  # raises on any problem
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")
@pytest.mark.filterwarnings("ignore:.*Orientationd:FutureWarning")
def test_monai_reads_every_manifest_line_as_written(dataset):
    """MONAI's LoadImaged → EnsureChannelFirstd → Orientationd → Spacingd on the manifest lines."""
    monai = pytest.importorskip("monai")
    from monai import transforms as mt

    out, _ = dataset
    keys = ["ct", "mr", "label"]
    chain = mt.Compose(
        [
            mt.LoadImaged(keys=keys),
            mt.EnsureChannelFirstd(keys=keys),
            mt.Orientationd(keys=keys, axcodes="RAS"),
            mt.Spacingd(
                keys=keys, pixdim=(20.0, 20.0, 50.0), mode=("bilinear", "bilinear", "nearest")
            ),
        ]
    )
    assert monai.__version__
    table = set(json.loads((out / "dataset.json").read_text())["labels"].values())
    for line in (out / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        item = {k: str(out / v) if k != "case" else v for k, v in entry.items()}
        loaded = chain(item)  # every key as written, sidecar and projections included
        assert tuple(loaded["ct"].shape) == (1, 18, 14, 6)  # 36 x 26 x 6 voxels of 10 x 10 x 50 mm
        assert set(np.unique(np.asarray(loaded["label"]))) <= table
