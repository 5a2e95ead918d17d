"""The MR side of `medphys refine` and `medphys audit physics`: a generated head dataset that keeps
its MR scans (``save_kspace``), read back as the scans that made it, and a refiner trained toward
the MNI152 template that ships with nilearn, applied as a dataset stage and audited."""

from __future__ import annotations

import hashlib
import json
import shutil

import jax
import numpy as np
import pytest
from nilearn.datasets import MNI152_FILE_PATH

from medphys import io, neural, pipelines
from medphys.cli import main
from medphys.simulators import mr

JOB = """cases = 2
seed = 0
[phantom]
name = "adult-head"
vary = true
shape = [32, 32, 1]
spacing_mm = [6.4, 6.4, 5.0]
center_mm = [0.0, 0.0, 20.0]
supersample = 1
[mr]
protocol = "mr-t1-se-r2"
[output]
montage = false
save_kspace = true
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine-mr")
    (root / "job.toml").write_text(JOB)
    assert main(["generate", "--out", str(root / "ds"), "--config", str(root / "job.toml")]) == 0
    real = root / "real"
    real.mkdir()
    shutil.copy(MNI152_FILE_PATH, real)
    return root / "ds", real


def test_a_dataset_keeps_its_mr_scans_and_reads_them_back(dataset):
    """``kspace-mr.npz`` holds the scan: read back, its k-space equals the saved one, its
    acquired lines are the protocol's (2x with 24 calibration lines); `load_mr_dataset` gives
    `SimulatedMR` cases whose image is the scan's CG-SENSE reconstruction."""
    ds, _ = dataset
    lines = [json.loads(x) for x in (ds / "manifest.jsonl").read_text().splitlines()]
    assert all("kspace-mr" in line for line in lines)
    record = json.loads((ds / "dataset.json").read_text())
    assert record["config"]["output"]["save_kspace"] is True
    with np.load(ds / lines[0]["kspace-mr"]) as f:
        assert set(f.files) == {"kspace", "coil_maps", "mask", "noise_std"}
        kspace, mask = f["kspace"], f["mask"]
    assert kspace.dtype == np.complex64 and kspace.shape == (4, 32, 32, 1)
    assert int(mask.sum()) == 24 + 4  # the calibration band and every other line outside it
    scan = pipelines.mr_scan(ds / lines[0]["mr"], ds / lines[0]["kspace-mr"])
    np.testing.assert_array_equal(scan.kspace, kspace)
    np.testing.assert_array_equal(scan.image.data, io.load_nifti(ds / lines[0]["mr"]).data)
    assert scan.maps is None
    sim, names = pipelines.load_mr_dataset(ds)
    assert names == ["case-0000", "case-0001"] and isinstance(sim, neural.SimulatedMR)
    sense = mr.reconstructed(scan)
    np.testing.assert_allclose(
        np.asarray(sim.image[0]) * float(sim.scale[0]), np.asarray(sense.image.data), rtol=1e-5
    )


def test_mr_refiner_stage_needs_the_scans_before_any_case_runs(dataset, tmp_path, capsys):
    ds, real = dataset
    refiner = neural.Refiner(jax.random.key(0), width=8, depth=2, blocks=1, modality="mr")
    path = tmp_path / "mr-refiner.npz"
    neural.save_refiner(path, refiner, meta={"modality": "MR"})
    job = (ds.parent / "job.toml").read_text().replace("save_kspace = true", "save_kspace = false")
    staged = tmp_path / "job.toml"
    staged.write_text(job + f'[refine]\nrefiner = "{path}"\n')
    assert main(["generate", "--out", str(tmp_path / "ds2"), "--config", str(staged)]) == 2
    assert "save_kspace = true" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists()
    # a CT dataset stage cannot read MR training data
    base = ["refine", "train", "--sim", str(ds), "--real", str(real), "--out", str(tmp_path / "r")]
    assert main(base) == 2
    assert "save_projections = true" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_mr_train_apply_and_audit_write_what_they_say(dataset, tmp_path, capsys):
    ds, real = dataset
    run = tmp_path / "run"
    args = ["refine", "train", "--modality", "mr", "--real", str(real), "--sim", str(ds)]
    args += ["--out", str(run), "--steps", "3", "--patch", "16", "--patches", "16"]
    assert main([*args, "--held-out", "1"]) == 0
    record = json.loads((run / "train.json").read_text())
    digest = hashlib.sha256((run / "refiner.npz").read_bytes()).hexdigest()
    assert record["refiner_sha256"] == digest
    assert record["meta"]["modality"] == "MR" and record["meta"]["data_consistency"] is True
    audit = json.loads((run / "audit.json").read_text())
    assert {c["name"] for c in audit["criteria"]} >= {"kspace_residual", "label_intensity_shift"}

    assert main(["refine", "apply", str(run / "refiner.npz"), "--dataset", str(ds)]) == 0
    for case in sorted((ds / "cases").iterdir()):
        side = json.loads((case / "refined-mr.json").read_text())
        assert side["refiner_sha256"] == digest
        assert side["input_sha256"] == hashlib.sha256((case / "mr.nii.gz").read_bytes()).hexdigest()
        refined = io.load_nifti(case / "mr-refined.nii.gz")
        assert refined.data.shape == (32, 32, 1) and np.all(np.asarray(refined.data) >= 0)
        assert not (case / "ct-refined.nii.gz").exists()

    capsys.readouterr()
    json_path = tmp_path / "a.json"
    args = ["audit", "physics", "--modality", "mr", "--dataset", str(ds), "--real", str(real)]
    code = main([*args, "--json", str(json_path)])
    report = json.loads(json_path.read_text())
    assert code == (0 if report["passed"] else 1)
    assert {c["name"] for c in report["criteria"]} >= {"kspace_residual", "nps_distance_to_real"}
    assert "physics-consistency audit of 2 case(s)" in capsys.readouterr().out
