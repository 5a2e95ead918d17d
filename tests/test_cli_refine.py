"""`medphys refine train/apply` and `medphys audit physics` on a generated head-CT dataset and the
real CT slices that ship in the pydicom and pydicom-data wheels."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medphys import io
from medphys.cli import main

data_store = pytest.importorskip("data_store")

JOB = """cases = 2
seed = 0
[phantom]
name = "adult-head"
vary = true
shape = [32, 32, 1]
spacing_mm = [6.4, 6.4, 5.0]
center_mm = [0.0, 0.0, 20.0]
supersample = 1
[ct]
protocol = "ct-chest-120kvp"
[mr]
protocol = "mr-t1-se"
[output]
montage = false
save_projections = true
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine")
    (root / "job.toml").write_text(JOB)
    assert main(["generate", "--out", str(root / "ds"), "--config", str(root / "job.toml")]) == 0
    real = root / "real"
    real.mkdir()
    from pydicom.data import get_testdata_file

    shutil.copy(Path(data_store.__file__).parent / "data" / "693_UNCR.dcm", real)
    shutil.copy(get_testdata_file("CT_small.dcm"), real)
    return root / "ds", real


@pytest.mark.slow
def test_train_apply_and_audit_write_what_they_say(dataset, tmp_path, capsys):
    ds, real = dataset
    run = tmp_path / "run"
    args = ["refine", "train", "--real", str(real), "--sim", str(ds), "--out", str(run)]
    args += ["--steps", "3", "--patch", "16", "--patches", "16", "--held-out", "1"]
    assert main(args) == 0
    assert {p.name for p in run.iterdir()} == {
        "checkpoint.npz",
        "refiner.npz",
        "train.json",
        "audit.json",
    }
    record = json.loads((run / "train.json").read_text())
    digest = hashlib.sha256((run / "refiner.npz").read_bytes()).hexdigest()
    assert record["refiner_sha256"] == digest
    assert record["meta"]["training_cases"] == ["case-0000"]
    assert sorted(Path(f).name for f in record["real"]["files"]) == ["693_UNCR.dcm", "CT_small.dcm"]
    audit = json.loads((run / "audit.json").read_text())
    assert {c["name"] for c in audit["criteria"]} >= {"measurement_residual", "label_hu_shift"}

    assert main(["refine", "apply", str(run / "refiner.npz"), "--dataset", str(ds)]) == 0
    cases = sorted((ds / "cases").iterdir())
    for case in cases:
        side = json.loads((case / "refined.json").read_text())
        assert side["refiner_sha256"] == digest
        assert side["input_sha256"] == hashlib.sha256((case / "ct.nii.gz").read_bytes()).hexdigest()
        refined = io.load_nifti(case / "ct-refined.nii.gz")
        source = io.load_nifti(case / "ct.nii.gz")
        np.testing.assert_array_equal(np.asarray(refined.affine), np.asarray(source.affine))
    stamp = (cases[0] / "ct-refined.nii.gz").stat().st_mtime_ns
    assert main(["refine", "apply", str(run / "refiner.npz"), "--dataset", str(ds)]) == 0
    assert (cases[0] / "ct-refined.nii.gz").stat().st_mtime_ns == stamp  # skipped: same refiner

    # the dataset job runs the refiner as a stage; its digest leaves the physics cases alone
    job = ds.parent / "job.toml"
    staged = tmp_path / "job-refine.toml"
    staged.write_text(job.read_text() + f'[refine]\nrefiner = "{run / "refiner.npz"}"\n')
    for case in cases:
        (case / "refined.json").unlink()
    assert main(["generate", "--out", str(ds), "--config", str(staged)]) == 0
    assert "refined 2 case(s)" in capsys.readouterr().out
    assert all((case / "refined.json").is_file() for case in cases)

    capsys.readouterr()
    code = main(["audit", "physics", "--dataset", str(ds), "--json", str(tmp_path / "a.json")])
    report = json.loads((tmp_path / "a.json").read_text())
    assert code == (0 if report["passed"] else 1)
    assert "physics-consistency audit of 2 case(s)" in capsys.readouterr().out


def test_bad_input_is_refused_before_training(dataset, tmp_path, capsys):
    ds, real = dataset
    base = ["refine", "train", "--sim", str(ds), "--out", str(tmp_path / "run")]
    assert main([*base, "--real", str(tmp_path / "none")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main([*base, "--real", str(real), "--held-out", "2"]) == 2
    assert "--held-out 2 leaves no training case" in capsys.readouterr().err
    # a dataset without projections
    copy = tmp_path / "copy"
    shutil.copytree(ds, copy)
    lines = [json.loads(x) for x in (copy / "manifest.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("projections-ct")
    (copy / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert (
        main(
            [
                "refine",
                "train",
                "--sim",
                str(copy),
                "--real",
                str(real),
                "--out",
                str(tmp_path / "r2"),
            ]
        )
        == 2
    )
    assert "save_projections = true" in capsys.readouterr().err
    assert main(["refine", "apply", str(tmp_path / "missing.npz"), "--dataset", str(ds)]) == 2
    assert "no refiner file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "r2").exists()
    # the dataset job checks its refiner before any case runs
    job = ds.parent / "job.toml"
    staged = tmp_path / "job.toml"
    staged.write_text(job.read_text() + f'[refine]\nrefiner = "{tmp_path / "none.npz"}"\n')
    assert main(["generate", "--out", str(tmp_path / "ds2"), "--config", str(staged)]) == 2
    assert "refine.refiner: no refiner file" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists()


def _tile_folders(root: Path) -> dict[str, Path]:
    """Non-overlapping 16-pixel tiles of the real head CT slice (native 0.48 mm), split at random
    into training / fresh / held-out, written as NIfTI stacks (one tile per slice); the
    "generated" set of a memorising generator is training tiles plus 1 % noise."""
    import nibabel as nib
    import pydicom

    ds = pydicom.dcmread(Path(data_store.__file__).parent / "data" / "693_UNCR.dcm")
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    tiles = [hu[x : x + 16, y : y + 16] for x in range(0, 512, 16) for y in range(0, 512, 16)]
    tiles = np.asarray([t for t in tiles if np.mean(t > -100) >= 0.5 and t.std() > 0])
    order = np.random.default_rng(0).permutation(len(tiles))
    sets = {
        "training": tiles[order[:100]],
        "fresh": tiles[order[100:180]],
        "held-out": tiles[order[180:]],
    }
    noise = np.random.default_rng(1).normal(0, 0.01 * tiles.std(), sets["training"].shape)
    sets["copies"] = sets["training"] + noise
    folders = {}
    for name, stack in sets.items():
        folders[name] = root / name
        folders[name].mkdir()
        affine = np.diag([0.48, 0.48, 1.0, 1.0])
        nib.save(
            nib.Nifti1Image(np.moveaxis(stack, 0, -1).astype(np.float32), affine),
            folders[name] / f"{name}.nii.gz",
        )
    return folders


def test_memorisation_audit_command_flags_copies_and_passes_held_out(tmp_path, capsys):
    folders = _tile_folders(tmp_path)
    base = ["audit", "memorisation", "--training", str(folders["training"]), "--no-features"]
    base += ["--tile", "16"]
    copied = main(
        [
            *base,
            "--generated",
            str(folders["copies"]),
            "--held-out",
            str(folders["held-out"]),
            "--json",
            str(tmp_path / "m.json"),
        ]
    )
    out = capsys.readouterr().out
    assert copied == 1 and "Memorisation audit: FAILED" in out
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["passed"] is False
    # too few held-out images: refused before any work, naming the minimum
    assert (
        main(
            [
                *base,
                "--generated",
                str(folders["copies"]),
                "--held-out",
                str(folders["copies"]),
                "--tile",
                "17",
            ]
        )
        == 2
    )
    assert "--training: medphys.neural.real_tiles: no 17×17 tile" in capsys.readouterr().err
    # unseen real tiles as the "generated" set pass (the audit's own controls behave)
    fresh = [*base, "--generated", str(folders["fresh"]), "--held-out", str(folders["held-out"])]
    assert main(fresh) == 0
    assert "Memorisation audit: PASSED" in capsys.readouterr().out
