"""Lesion studies and trials: twins differ only by the lesion, a trial reports and resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medphys import ConfigError, phantoms, simulators
from medphys.pipelines import (
    Arm,
    CaseRecipe,
    GridSpec,
    LesionSpec,
    case_key,
    extract_roi,
    load_trial,
    run_case,
    run_trial,
)

SMALL = """
name = "small"
pairs = 6
seed = 1
[phantom]
name = "torso-basic"
shape = [56, 44, 4]
spacing_mm = [7.0, 7.0, 5.0]
center_mm = [0.0, 0.0, -30.0]
[lesion]
organ = "liver"
radius_mm = 6.0
material = "liver+iodine_3mg_ml"
[[arms]]
name = "standard"
protocol = "ct-chest-120kvp"
[[arms]]
name = "low"
protocol = "ct-low-dose"
noise_stream = "standard"
[observer]
kind = "npw"
roi_px = 12
split = 0.5
[analysis]
compare = [["low", "standard"]]
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("trial") / "small.toml"
    path.write_text(SMALL)
    return path


def test_twins_share_patient_location_and_noise(small):
    """Signal present and absent: the same key gives the same patient, lesion place and noise."""
    c = load_trial(small)
    textured = phantoms.load("torso-basic").with_texture(
        "liver", phantoms.PowerLawTexture.create(beta=3.0, amplitude=0.03)
    )
    recipe = CaseRecipe.create(
        textured,
        grid=GridSpec(
            tuple(c.phantom.shape), tuple(c.phantom.spacing_mm), tuple(c.phantom.center_mm), 1
        ),
        arms=[Arm("ct", simulators.load("ct-chest-120kvp"))],
        lesion=LesionSpec.create("liver", radius_mm=6.0, material="liver+iodine_3mg_ml"),
    )
    present = run_case(case_key(1, 0), recipe, index=0, present=True)
    absent = run_case(case_key(1, 0), recipe, index=0, present=False)
    assert present.lesion["center_mm"] == absent.lesion["center_mm"]
    assert present.params == absent.params and present.streams["lesion"] == "lesion"
    # the liver's texture is drawn from the case's "texture" stream: the same in both twins
    # wherever the liver is in both
    liver = absent.labels.structure("liver").label
    both = (np.asarray(present.labels.labels) == liver) & (
        np.asarray(absent.labels.labels) == liver
    )
    scale_p, scale_a = (
        np.asarray(present.labels.density_scale),
        np.asarray(absent.labels.density_scale),
    )
    np.testing.assert_array_equal(scale_p[both], scale_a[both])
    assert 0.01 < np.std(scale_a[both]) < 0.05
    assert "lesion" in present.labels.names and "lesion" not in absent.labels.names
    lesion_mask = np.asarray(present.labels.labels) == present.labels.structure("lesion").label
    assert lesion_mask.sum() >= 1
    centre = np.asarray(present.lesion["center_voxel"])
    assert lesion_mask[tuple(centre)]
    diff = np.abs(np.asarray(present.images["ct"].data) - np.asarray(absent.images["ct"].data))
    ijk = np.indices(diff.shape).reshape(3, -1).T * np.asarray([7.0, 7.0, 5.0])
    far = (np.linalg.norm(ijk - centre * np.asarray([7.0, 7.0, 5.0]), axis=1) > 25.0).reshape(
        diff.shape
    )
    # the same noise draws: far from the lesion the twins agree to a small fraction of the noise
    noise = np.std(
        np.asarray(absent.images["ct"].data)[
            far & (np.asarray(absent.labels.labels) == absent.labels.structure("liver").label)
        ]
    )
    assert np.mean(diff[far]) < 0.1 * noise
    assert diff[tuple(centre)] > 20.0  # HU: the enhancing lesion
    roi = extract_roi(present.images["ct"], centre, 8)
    assert roi.shape == (8, 8) and roi[4, 4] == np.asarray(present.images["ct"].data)[tuple(centre)]
    assert extract_roi(present.images["ct"], centre, 6, plane="3d").shape == (6, 6, 6)


def test_trial_reports_and_resumes_to_the_same_numbers(small, tmp_path):
    out = tmp_path / "report"
    results = run_trial(out, load_trial(small))
    for name in ("trial.json", "results.json", "results.csv", "roc.png", "rois.png", "report.html"):
        assert (out / name).stat().st_size > 100, name
    assert results["generated"] == 12 and len(list((out / "rois").glob("*.npz"))) == 12
    std, low = results["arms"]["standard"], results["arms"]["low"]
    assert std["n_test"] == [3, 3] and results["observer"]["mode"] == "split"
    assert 0.5 <= std["auc"] <= 1.0 and std["auc_ci"][0] <= std["auc"] <= std["auc_ci"][1]
    (cmp,) = results["comparisons"]
    assert cmp["arms"] == ["low", "standard"]
    assert cmp["delta_auc"] == pytest.approx(std["auc"] - low["auc"])
    html = (out / "report.html").read_text()
    assert "ΔAUC" in html and "roc.png" in html
    before = (out / "results.json").read_bytes()

    # killed part-way: some cases lost (and a write that never finished); the rerun redoes them
    for path in sorted((out / "rois").glob("case-000[24]-*.npz")):
        path.unlink()
    (out / "rois" / ".case-0005-present.npz.0123456789ab.partial").write_bytes(b"")
    (out / "results.json").unlink()
    again = run_trial(out, load_trial(small))
    assert again["generated"] == 4
    assert (out / "results.json").read_bytes() == before
    assert not list(out.rglob("*.partial"))
    # another seed is another trial: refused before any case, naming what changed
    from medphys.pipelines import OutputError

    with pytest.raises(OutputError, match=r"different inputs \(changed: config\)"):
        run_trial(out, load_trial(small, overrides={"seed": 2}))


def test_trial_bad_input_is_refused_before_any_case(small, tmp_path):
    text = Path(small).read_text()

    def write(body: str) -> Path:
        path = tmp_path / "bad.toml"
        path.write_text(body)
        return path

    with pytest.raises(ConfigError, match=r"observer.kind"):
        load_trial(write(text.replace('kind = "npw"', 'kind = "human"')))
    with pytest.raises(ConfigError, match=r"'ultra' is not an arm of this trial"):
        load_trial(write(text.replace('[["low", "standard"]]', '[["ultra", "standard"]]')))
    with pytest.raises(ConfigError, match=r"give `split` or `resubstitution = true`, not both"):
        load_trial(write(text.replace("split = 0.5", "split = 0.5\nresubstitution = true")))
    out = tmp_path / "out"
    cho = text.replace('kind = "npw"', 'kind = "cho"\nn_channels = 8')
    with pytest.raises(ValueError, match=r"needs at least 10 training pairs .* 6 pairs give 3"):
        run_trial(out, load_trial(write(cho)))
    huge = text.replace("radius_mm = 6.0", "radius_mm = 60.0").replace(
        "[56, 44, 4]", "[56, 44, 30]"
    )
    with pytest.raises(
        ValueError, match=r"phantom 'torso-basic': .* no point of 'liver' lies 63 mm"
    ):
        run_trial(out, load_trial(write(huge)))
    thin = text.replace("[56, 44, 4]", "[56, 44, 2]")
    with pytest.raises(ValueError, match=r"grid is too thin along axis z"):
        run_trial(out, load_trial(write(thin)))
    with pytest.raises(Exception, match=r"unknown material|liver\+unobtainium"):
        run_trial(
            out, load_trial(write(text.replace("liver+iodine_3mg_ml", "liver+unobtainium_3mg_ml")))
        )
    assert not (out / "rois").exists() or not list((out / "rois").iterdir())


def test_catalog_trials_load():
    config = load_trial("ct-liver-lesion-dose")
    assert config.pairs == 100 and [a.name for a in config.arms] == ["standard", "low"]
    assert config.analysis.compare == [("low", "standard")]
    mr = load_trial("mr-liver-lesion-t1-t2")
    assert [a.name for a in mr.arms] == ["t1w", "t2w"] and mr.lesion.material == "spleen"


@pytest.mark.slow
def test_catalog_trial_a_finds_the_dose_effect(tmp_path):
    """Trial (a), 100 pairs: the standard dose beats one fifth of it, the 95% interval above 0."""
    results = run_trial(tmp_path / "a", load_trial("ct-liver-lesion-dose"))
    (cmp,) = results["comparisons"]
    assert cmp["arms"] == ["low", "standard"]
    assert cmp["delta_auc"] > 0 and cmp["ci"][0] > 0, cmp
    assert results["arms"]["standard"]["auc"] > 0.7


@pytest.mark.slow
def test_catalog_trial_c_shows_the_t2_weighted_advantage(tmp_path):
    """Trial (c), 100 pairs: a lesion with longer T1 and T2 than liver is seen better on T2w."""
    results = run_trial(tmp_path / "c", load_trial("mr-liver-lesion-t1-t2"))
    (cmp,) = results["comparisons"]
    assert cmp["arms"] == ["t1w", "t2w"] and cmp["delta_auc"] > 0 and cmp["ci"][0] > 0, cmp


def _definition(kind, name):
    from medphys.pipelines._provenance import definition

    return definition(kind, name)


def test_contrast_in_hu_becomes_iodine_in_the_host(small, tmp_path):
    """lesion.contrast_hu: iodine in the host organ's material, reaching that contrast at the CT
    arm's energy (`ct.ct_number`); contrasts iodine cannot give are refused before any case."""
    from medphys.pipelines import iodine_for_contrast
    from medphys.simulators import ct

    chest = simulators.load("ct-chest-120kvp")
    name, reached = iodine_for_contrast("liver", 15.0, chest)
    assert name.startswith("liver+iodine_") and reached == pytest.approx(15.0, abs=0.3)
    assert ct.ct_number(name, chest) - ct.ct_number("liver", chest) == pytest.approx(reached)
    with pytest.raises(ValueError, match=r"-10.0 HU cannot be reached with iodine"):
        iodine_for_contrast("liver", -10.0, chest)
    # darker than the host: the host at a lower density (factor to 1e-4: within 0.05 HU)
    from medphys.pipelines import material_for_contrast

    name, reached = material_for_contrast("liver", -30.0, chest)
    assert name.startswith("liver@0.97") and reached == pytest.approx(-30.0, abs=0.06)
    assert material_for_contrast("liver", 15.0, chest)[0].startswith("liver+iodine_")
    with pytest.raises(ValueError, match=r"-700 HU below 'liver' .* needs 0.338 times"):
        material_for_contrast("liver", -700.0, chest)
    with pytest.raises(ValueError, match=r"`contrast_hu` must be a finite, non-zero"):
        material_for_contrast("liver", 0.0, chest)
    text = Path(small).read_text().replace('material = "liver+iodine_3mg_ml"', "contrast_hu = 40.0")
    path = tmp_path / "hu.toml"
    path.write_text(text)
    config = load_trial(path)
    from medphys.pipelines import TrialJob

    recipe = TrialJob(
        config,
        {
            "phantom/torso-basic": _definition("phantom", "torso-basic"),
            "protocol/standard": _definition("protocol", "ct-chest-120kvp"),
            "protocol/low": _definition("protocol", "ct-low-dose"),
        },
        "t",
    ).recipe()
    assert recipe.lesion.material.startswith("liver+iodine_")
    reached = ct.ct_number(recipe.lesion.material, chest) - ct.ct_number("liver", chest)
    assert reached == pytest.approx(40.0, abs=0.5)
    with pytest.raises(ConfigError, match=r"`material` or its `contrast_hu`, exactly one"):
        path.write_text(
            text.replace("contrast_hu = 40.0", 'contrast_hu = 40.0\nmaterial = "liver"')
        )
        load_trial(path)


def _synthetic_records(pairs: int, amplitudes: dict[str, float], roi: int, seed: int) -> dict:
    """White-noise ROIs (σ 1) with a Gaussian blob of the given peak per arm in the present twin;
    both arms see the same backgrounds (paired cases)."""
    rng = np.random.default_rng(seed)
    c = np.arange(roi) - (roi - 1) / 2
    blob = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * 2.0**2))
    records = {}
    for i in range(pairs):
        for present in (True, False):
            noise = rng.normal(size=(roi, roi))
            records[(i, present)] = {
                "rois": {
                    a: noise + (amp * blob if present else 0.0) for a, amp in amplitudes.items()
                }
            }
    return records, blob


def test_several_readers_are_combined_by_obuchowski_rockette_hillis(small, tmp_path):
    """Three NPW readers, each trained on its own 80 % of the training pairs, score the same test
    pairs in both arms; ΔAUC is the readers' mean difference, near the ideal observer's
    (closed form Φ(d′/√2), d′ = a ‖s‖ for white noise of σ 1), with an ORH interval above 0."""
    import scipy.stats

    from medphys.pipelines import analyse

    text = Path(small).read_text().replace("split = 0.5", "split = 0.5\nreaders = 3")
    path = tmp_path / "readers.toml"
    path.write_text(text.replace("pairs = 6", "pairs = 200"))
    config = load_trial(path)
    assert config.observer.readers == 3
    records, blob = _synthetic_records(200, {"standard": 0.45, "low": 0.3}, 12, seed=4)
    results = analyse(config, records)
    std, low = results["arms"]["standard"], results["arms"]["low"]
    assert (
        len(std["reader_auc"]) == 3 and std["n_test"] == [100, 100] and std["n_train"] == [80, 80]
    )
    assert std["auc"] == pytest.approx(np.mean(std["reader_auc"]))
    assert len(set(std["reader_auc"])) == 3  # the readers differ (their training subsets)
    (cmp,) = results["comparisons"]
    assert cmp["readers"] == 3 and np.isfinite(cmp["df"]) and cmp["df"] > 1
    assert cmp["delta_auc"] == pytest.approx(std["auc"] - low["auc"])
    norm = float(np.linalg.norm(blob))
    ideal = scipy.stats.norm.cdf(0.45 * norm / np.sqrt(2)) - scipy.stats.norm.cdf(
        0.3 * norm / np.sqrt(2)
    )
    # measured with this seed: ΔAUC 0.105 [0.088, 0.121] (df 1718: the readers barely differ)
    # against the ideal observer's 0.096 (the trained templates are noisier than the ideal one:
    # reader AUCs 0.80-0.81 and 0.70-0.71 against 0.87 and 0.77)
    assert cmp["ci"][0] > 0 and abs(cmp["delta_auc"] - ideal) < 0.03
    assert "Obuchowski-Rockette-Hillis" in cmp["definition"]
    # one reader: the reader settings change nothing, nor the digest of existing reports
    other = tmp_path / "other.toml"
    other.write_text(
        Path(small).read_text().replace("split = 0.5", "split = 0.5\nreader_fraction = 0.5")
    )
    assert load_trial(other).digest() == load_trial(small).digest()
    other.write_text(text.replace("readers = 3", "readers = 2").replace("pairs = 6", "pairs = 200"))
    assert load_trial(other).digest() != config.digest()


def test_readers_need_a_split(small, tmp_path):
    text = Path(small).read_text().replace("split = 0.5", "resubstitution = true\nreaders = 2")
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"readers = 2 needs `split`"):
        load_trial(path)
