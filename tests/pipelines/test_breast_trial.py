"""Mammography trials: compressed breasts imaged by DM and DBT around a spiculated mass.

The compression here is coarse (8 mm cells, 200 steps, tolerance 0.1) so the tests stay quick; the
trial in ``trials/breast-dm-dbt-mass.toml`` trains each class for 2000 steps on 4 mm cells
(`tests/neural/test_breast_compression.py` checks the compression itself).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from medphys import phantoms, simulators
from medphys._catalog import resolve
from medphys.pipelines import (
    Arm,
    BreastFamily,
    CaseRecipe,
    GridSpec,
    LesionSpec,
    case_key,
    load_trial,
    prepare_breast_family,
    run_case,
    run_trial,
)
from medphys.pipelines._window import layout, placed

INTERIOR = ("breast_fat", "fibroglandular", "cooper_ligaments", "ducts", "lobules")
COARSE = dict(spacing_mm=8.0, steps=200, tolerance=0.1, warp_mm=2.0, progress=False)

SMALL = """
name = "breast-small"
pairs = 4
seed = 2
[breast]
densities = ["d"]
spacing_mm = 0.5
survey_mm = 2.0
[breast.compression]
spacing_mm = 8.0
steps = 200
tolerance = 0.1
warp_mm = 2.0
[lesion]
organ = "breast_fat"
inside = ["breast_fat", "fibroglandular", "cooper_ligaments", "ducts", "lobules"]
centre_in = ["fibroglandular"]
radius_mm = 2.5
spicules = 8
spike_mm = 1.5
material = "breast_mass"
margin_mm = 2.0
[[arms]]
name = "dm"
protocol = "mammo-wrh-28kvp"
pixel_mm = 0.5
[[arms]]
name = "dbt"
protocol = "DBT_FILE"
pixel_mm = 0.5
[observer]
kind = "npw"
roi_px = 20
split = 0.5
[analysis]
compare = [["dm", "dbt"]]
"""


@pytest.fixture(scope="module")
def family():
    with jax.enable_x64(False):
        return prepare_breast_family(jax.random.key(0), ("d",), **COARSE)


def _mass(**kw):
    return LesionSpec.create(
        "breast_fat",
        radius_mm=2.5,
        material="breast_mass",
        spicules=8,
        spike_mm=1.5,
        margin_mm=2.0,
        inside=INTERIOR,
        centre_in=("fibroglandular",),
        **kw,
    )


def _arms(pixel=0.5, field=20):
    return [
        Arm("dm", simulators.load("mammo-wrh-28kvp"), field_px=field, pixel_mm=pixel),
        Arm("dbt", simulators.load("dbt-15views-15deg"), field_px=field, pixel_mm=pixel),
    ]


def _assert_mass(dm: np.ndarray, dbt: np.ndarray) -> None:
    """The twins' difference is the mass. It is denser than the fat and the glandular tissue it
    displaces (1.06 g/cm³ against 0.93 and 1.04), so in DM it only adds attenuation, the most
    where it displaces fat; the DBT plane through it shows the same section (ramp-filtered)."""
    assert dm.max() > 0 and dm.min() > -0.02 * dm.max()
    # the mass lies within the ROI: its edge rows and columns hold little of it
    edge = np.concatenate([dm[0], dm[-1], dm[:, 0], dm[:, -1]])
    assert edge.mean() < 0.25 * dm.max()
    assert np.corrcoef(dm.ravel(), dbt.ravel())[0, 1] > 0.3


@pytest.mark.slow  # about 45 s: a compression and three cases
def test_a_breast_case_shows_its_mass_in_both_images(family):
    """Twins share the breast, the mass's place and the noise: their difference is the mass, in
    the DM window (centred on its projection) and the DBT plane (through its centre)."""
    recipe = CaseRecipe.create(
        family, grid=GridSpec((1, 1, 1), (0.5, 0.5, 0.5)), arms=_arms(), lesion=_mass()
    )
    key = case_key(5, 0)
    present = run_case(key, recipe, index=0, present=True)
    absent = run_case(key, recipe, index=0, present=False)
    assert present.family == "breast-d" and present.params["density"] == "d"
    assert present.lesion["center_mm"] == absent.lesion["center_mm"]
    assert present.lesion["voxel_by_arm"] == {"dm": [10, 10, 0], "dbt": [10, 10, 0]}
    # the compressed breast lies between the paddles (35 mm for class d)
    assert present.lesion["thickness_mm"] == 35.0
    assert "lesion" in present.labels.names and "lesion" not in absent.labels.names
    diff = {}
    for arm in ("dm", "dbt"):
        a = np.asarray(present.images[arm].data)[:, :, 0]
        b = np.asarray(absent.images[arm].data)[:, :, 0]
        assert a.shape == (20, 20) and a.dtype == np.float32
        diff[arm] = a - b
    _assert_mass(diff["dm"], diff["dbt"])
    # the same key gives the same bytes
    again = run_case(key, recipe, index=0, present=True)
    for arm in ("dm", "dbt"):
        np.testing.assert_array_equal(again.images[arm].data, present.images[arm].data)


@pytest.mark.slow  # about 60 s: a compression and two cases
def test_a_mass_inserted_into_the_compressed_breast_keeps_its_shape(family):
    """A 2.5 mm sphere at the same place: drawn in the uncompressed breast it is pressed with the
    tissue (flatter along z, the compression axis, than across); inserted into the compressed
    breast (``follow_warp=False``) it stays a sphere."""
    extents = {}
    for follow in (True, False):
        recipe = CaseRecipe.create(
            family,
            grid=GridSpec((1, 1, 1), (0.25, 0.25, 0.25)),
            arms=_arms(pixel=0.25),
            lesion=LesionSpec.create(
                "breast_fat", radius_mm=2.5, material="breast_mass", margin_mm=2.0,
                inside=INTERIOR, centre_in=("fibroglandular",), follow_warp=follow,
            ),
        )  # fmt: skip
        case = run_case(case_key(5, 0), recipe, index=0, present=True)
        mask = np.asarray(case.labels.labels) == case.labels.names.index("lesion")
        extents[follow] = [0.25 * np.ptp(np.nonzero(mask)[a]) + 0.25 for a in range(3)]
    x, y, z = extents[False]
    assert abs(z - x) <= 0.5 and abs(z - y) <= 0.5 and abs(z - 5.0) <= 0.5, extents
    x, y, z = extents[True]
    assert z < 0.8 * min(x, y), extents


@pytest.mark.slow  # about 60 s: a compression and two cases at 0.1 mm
def test_a_calcification_cluster_shows_its_calcifications_in_both_images(family):
    """Five 0.4 mm calcifications (VICTRE's calcium oxalate, 1.781 g/cm³) in a 2.5 mm ball:
    the twins' DM difference has a bright spot per calcification (connected regions above 30 %
    of the brightest), and the DBT plane through the cluster's centre shows it too."""
    import scipy.ndimage as ndi

    cluster = LesionSpec.create(
        "breast_fat",
        radius_mm=2.5,
        material="calcification",
        calcifications=5,
        calcification_mm=0.4,
        margin_mm=2.0,
        inside=INTERIOR,
        centre_in=("fibroglandular",),
    )
    arms = _arms(pixel=0.1, field=64)
    recipe = CaseRecipe.create(
        family, grid=GridSpec((1, 1, 1), (0.1, 0.1, 0.1)), arms=arms, lesion=cluster
    )
    key = case_key(7, 0)
    present = run_case(key, recipe, index=0, present=True)
    absent = run_case(key, recipe, index=0, present=False)
    diff = {
        arm: np.asarray(present.images[arm].data)[:, :, 0]
        - np.asarray(absent.images[arm].data)[:, :, 0]
        for arm in ("dm", "dbt")
    }
    dm = diff["dm"]
    _, spots = ndi.label(dm > 0.3 * dm.max())
    # measured: 5 spots, peaks 0.134-0.155 (the calcifications do not overlap in this view)
    assert spots == 5
    assert dm.min() > -0.05 * dm.max()  # calcification only adds attenuation
    assert np.corrcoef(dm.ravel(), diff["dbt"].ravel())[0, 1] > 0.2


def test_dm_and_dbt_arms_image_breasts_only_and_need_a_lesion():
    # the recipe checks its arms and lesion before any compression is used
    family = BreastFamily(
        ("d",),
        (None,),
        (35.0,),
        ((0.0,) * 3,),
        ((1.0,) * 3,),
        structure_names=("pectoralis", "skin", *INTERIOR),
    )
    with pytest.raises(ValueError, match="DM and DBT arms image a BreastFamily"):
        CaseRecipe.create(
            phantoms.load("torso-basic"), grid=GridSpec((8, 8, 8), (1.0, 1.0, 1.0)), arms=_arms()
        )
    with pytest.raises(ValueError, match="needs a `lesion`"):
        CaseRecipe.create(family, grid=GridSpec((1, 1, 1), (0.5, 0.5, 0.5)), arms=_arms())
    ct = Arm("ct", simulators.load("ct-chest-120kvp"))
    with pytest.raises(ValueError, match="imaged by DM and DBT arms only"):
        CaseRecipe.create(
            family, grid=GridSpec((1, 1, 1), (0.5, 0.5, 0.5)), arms=[ct], lesion=_mass()
        )
    with pytest.raises(ValueError, match="field_px"):
        CaseRecipe.create(
            family, grid=GridSpec((1, 1, 1), (0.5,) * 3), arms=_arms(field=4), lesion=_mass()
        )
    with pytest.raises(ValueError, match="spike_mm"):
        LesionSpec.create("breast_fat", radius_mm=2.0, material="breast_mass", spicules=4)
    with pytest.raises(ValueError, match="a spiculated mass or a calcification cluster, not both"):
        LesionSpec.create(
            "breast_fat", radius_mm=2.0, material="calcification", spicules=4, spike_mm=1.0,
            calcifications=5,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"`calcification_mm` must be positive and below .* 4 mm"):
        LesionSpec.create(
            "breast_fat", radius_mm=2.0, material="calcification", calcifications=5,
            calcification_mm=4.5,
        )  # fmt: skip
    with pytest.raises(TypeError, match="`follow_warp` must be True or False"):
        LesionSpec.create("breast_fat", radius_mm=2.0, material="breast_mass", follow_warp=0)


def test_a_trial_can_insert_its_masses_into_the_compressed_breast(tmp_path: Path):
    """``[lesion] follow_warp = false`` reaches the case recipe (VICTRE's insertion), and it is
    part of the config's digest: a run of the other setting is not resumed."""
    text = SMALL.replace("DBT_FILE", "dbt-15views-15deg")
    (tmp_path / "pressed.toml").write_text(text)
    (tmp_path / "kept.toml").write_text(
        text.replace("margin_mm = 2.0\n", "margin_mm = 2.0\nfollow_warp = false\n")
    )
    pressed, kept = load_trial(tmp_path / "pressed.toml"), load_trial(tmp_path / "kept.toml")
    assert pressed.lesion.follow_warp and not kept.lesion.follow_warp
    assert pressed.digest() != kept.digest()


def test_the_arms_are_laid_out_around_the_lesion_with_shapes_that_do_not_move():
    """DM: the window's centre is the lesion centre's projection from the focal spot; DBT: every
    view's rays through the plane's corners land inside its window; the voxel box holds the
    lesion, and its shape (so the compiled kernels) is the same wherever the lesion lies."""
    arms = _arms(pixel=0.2, field=48)
    thickness = 45.0
    region = ((-70.0, 0.0, -thickness / 2), (70.0, 110.0, thickness / 2))
    detectors = {a.name: placed(a.detector, *region, centred=False) for a in arms}
    shapes = set()
    for centre in ((0.0, 20.0, 0.0), (-30.0, 60.0, 12.0), (25.0, 5.0, -15.0), (-65, 105, 20)):
        plans, grid = layout(arms, detectors, centre, region, 0.2)
        dm, dbt = plans["dm"], plans["dbt"]
        src, det, _, _ = dm.geometry.poses()
        # the detector is the lower paddle
        assert det[0][2] == pytest.approx(-thickness / 2)
        t = (det[0][2] - src[0][2]) / (centre[2] - src[0][2])
        foot = src[0][:2] + t * (np.asarray(centre[:2]) - src[0][:2])
        np.testing.assert_allclose(det[0][:2], foot, atol=1e-9)
        assert (dm.geometry.n_u, dm.geometry.n_v, float(dm.geometry.du_mm)) == (48, 48, 0.2)
        # DBT: the plane through the lesion, 48² pixels of 0.2 mm
        assert dbt.output.shape == (48, 48, 1)
        np.testing.assert_allclose(dbt.output.center_mm, centre, atol=1e-9)
        src, det, _, _ = dbt.geometry.poses()
        half_u = dbt.geometry.n_u * float(dbt.geometry.du_mm) / 2
        half_v = dbt.geometry.n_v * float(dbt.geometry.dv_mm) / 2
        for s in src:
            for a in (-4.8, 4.8):
                for b in (-4.8, 4.8):
                    p = np.asarray(centre) + np.array([a, b, 0.0])
                    t = (det[0][2] - s[2]) / (p[2] - s[2])
                    hit = s[:2] + t * (p[:2] - s[:2]) - det[0][:2]
                    assert abs(hit[0]) <= half_u - 4.9 and abs(hit[1]) <= half_v - 4.9
        # the box holds the lesion's neighbourhood between the paddles
        lo = np.asarray(grid["center_mm"]) - np.asarray(grid["shape"]) * 0.1
        hi = np.asarray(grid["center_mm"]) + np.asarray(grid["shape"]) * 0.1
        assert np.all(lo[:2] <= np.asarray(centre[:2]) - 4.8)
        assert np.all(hi[:2] >= np.asarray(centre[:2]) + 4.8)
        assert lo[2] == pytest.approx(-thickness / 2) and hi[2] == pytest.approx(thickness / 2)
        shapes.add((grid["shape"], dbt.geometry.n_u, dbt.geometry.n_v))
    assert len(shapes) == 1, shapes


@pytest.mark.slow  # about 60-100 s: a compression, eight cases through DM and a 5-view DBT
def test_a_small_breast_trial_reports_and_resumes(tmp_path: Path):
    # the catalog's DBT sweep with 5 views instead of 15 (the same arc): a quicker test
    dbt = (
        resolve("simulators", "dbt-15views-15deg")
        .read_text()
        .replace("n_views = 15", "n_views = 5")
    )
    assert "n_views = 5" in dbt
    (tmp_path / "dbt-5views.toml").write_text(dbt)
    config_file = tmp_path / "small.toml"
    config_file.write_text(SMALL.replace("DBT_FILE", str(tmp_path / "dbt-5views.toml")))
    config = load_trial(config_file)
    out = tmp_path / "run"
    first = run_trial(out, config)
    assert first["generated"] == 8
    for name in ("trial.json", "results.json", "results.csv", "roc.png", "rois.png", "report.html"):
        assert (out / name).is_file(), name
    assert (out / "compression" / "compression-d.npz").is_file()
    record = json.loads((out / "trial.json").read_text())
    assert record["compressions"] and "class d" in record["compressions"][0]
    (comparison,) = first["comparisons"]
    assert comparison["arms"] == ["dm", "dbt"]
    assert -1.0 <= comparison["delta_auc"] <= 1.0
    # a rerun finds every case and the compression on disk: the same numbers, nothing made
    second = run_trial(out, config)
    assert second["generated"] == 0
    assert second["arms"] == first["arms"]
    # every pair's ROIs differ by the mass
    for i in range(4):
        with (
            np.load(out / "rois" / f"case-{i:04d}-present.npz") as a,
            np.load(out / "rois" / f"case-{i:04d}-absent.npz") as b,
        ):
            _assert_mass(a["roi_dm"] - b["roi_dm"], a["roi_dbt"] - b["roi_dbt"])
