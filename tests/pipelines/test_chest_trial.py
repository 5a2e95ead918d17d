"""Chest trials: a lung nodule on a PA radiograph and on chest tomosynthesis, imaged around it.

The catalog trial (``trials/chest-cxr-dts-nodule.toml``) images two adult phantoms at 2 mm; the
default-tier tests here check the layout (NumPy only), the image orientation and one small case
(the simplified torso at 4 mm, 9 of the sweep's views); the catalog trial itself runs in the
slow tier.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from medphys import phantoms, simulators
from medphys.pipelines import (
    Arm,
    CaseRecipe,
    GridSpec,
    LesionSpec,
    LocalEngine,
    case_key,
    load_trial,
    run_case,
    run_trial,
)
from medphys.pipelines._window import Detector, Frame, layout, placed, to_detector_axes
from medphys.simulators import Modality

# the catalog trial's region: right-left 320 mm, posterior-anterior 296 mm, z -40 ... 252 mm
REGION = ((-160.0, -142.0, -40.0), (160.0, 154.0, 252.0))


def _arms(pixel: float = 2.0, field: int = 24, views: int | None = None) -> list[Arm]:
    pa = simulators.load("xray-chest-pa")
    dts = simulators.load("xray-tomosynthesis")
    if views is not None:  # a sub-sweep over the same arc: a quicker test
        det = Detector.of(dts.geometry)
        keep = np.round(np.linspace(0, len(det.sources) - 1, views)).astype(int)
        dts = dataclasses.replace(
            dts, geometry=dataclasses.replace(det, sources=det.sources[keep]).geometry()
        )
    return [
        Arm("cxr", pa, field_px=field, pixel_mm=pixel),
        Arm("dts", dts, field_px=field, pixel_mm=pixel),
    ]


def test_chest_arms_are_radiograph_and_tomosynthesis_in_their_frames():
    """The PA radiograph and the tomosynthesis sweep (beam along +y, detector in x-z, tube moving
    along z) are RADIOGRAPH and TOMOSYNTHESIS arms; their frames permute the world so that the
    detector is z' = const below the sources and the tube moves along +x'; mammography's frame is
    the world's."""
    cxr, dts = _arms()
    assert (cxr.modality, dts.modality) == (Modality.RADIOGRAPH, Modality.TOMOSYNTHESIS)
    f_cxr = Frame.of(Detector.of(cxr.protocol.geometry))
    f_dts = Frame.of(Detector.of(dts.protocol.geometry))
    np.testing.assert_array_equal(f_cxr.rotation, [[1, 0, 0], [0, 0, 1], [0, -1, 0]])
    np.testing.assert_array_equal(f_dts.rotation, [[0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    for f in (f_cxr, f_dts):
        assert np.linalg.det(f.rotation) == pytest.approx(1.0)  # a rotation, not a mirror
        assert f.normal_axis == 1
    mammo = Frame.of(Detector.of(simulators.load("dbt-15views-15deg").geometry))
    np.testing.assert_array_equal(mammo.rotation, np.eye(3))


def test_chest_arms_are_laid_out_around_the_nodule_with_shapes_that_do_not_move():
    """The detectors stand against the region's anterior face, centred on it; the radiograph's
    window is centred on the nodule's projection from the focal spot; every tomosynthesis view's
    rays through the plane's corners land inside its window; the voxel box spans the region
    along the beam, holds the nodule's neighbourhood and has one shape wherever the nodule lies
    (here at the region's extremes)."""
    arms = _arms(pixel=2.0, field=24)
    detectors = {a.name: placed(a.detector, *REGION, centred=True) for a in arms}
    for det in detectors.values():
        assert det.centre[1] == pytest.approx(154.0)  # against the anterior face
        assert det.centre[0] == pytest.approx(0.0) and det.centre[2] == pytest.approx(106.0)
    shapes = set()
    half = 24.0  # the 48 mm field around the nodule
    for centre in ((60.0, 0.0, 100.0), (150.0, -130.0, -30.0), (-150.0, 150.0, 245.0)):
        plans, grid = layout(arms, detectors, centre, REGION, 2.0)
        cxr, dts = plans["cxr"], plans["dts"]
        src, det, _, _ = cxr.geometry.poses()
        t = (det[0][1] - src[0][1]) / (centre[1] - src[0][1])
        foot = src[0] + t * (np.asarray(centre) - src[0])
        np.testing.assert_allclose(det[0], foot, atol=1e-9)
        assert (cxr.geometry.n_u, cxr.geometry.n_v, float(cxr.geometry.du_mm)) == (24, 24, 2.0)
        assert dts.output.shape == (24, 24, 1)
        np.testing.assert_allclose(dts.output.center_mm, centre, atol=1e-9)
        src, det, e_u, e_v = dts.geometry.poses()
        half_u = dts.geometry.n_u * float(dts.geometry.du_mm) / 2
        half_v = dts.geometry.n_v * float(dts.geometry.dv_mm) / 2
        for s in src:
            for a in (-half, half):
                for b in (-half, half):
                    p = np.asarray(centre) + np.array([a, 0.0, b])
                    t = (det[0][1] - s[1]) / (p[1] - s[1])
                    hit = s + t * (p - s) - det[0]
                    assert abs(hit @ e_u[0]) <= half_u - 4.9 and abs(hit @ e_v[0]) <= half_v - 4.9
        lo = np.asarray(grid["center_mm"]) - np.asarray(grid["shape"]) * 1.0
        hi = np.asarray(grid["center_mm"]) + np.asarray(grid["shape"]) * 1.0
        reach = np.array([half, 0.0, half])
        assert np.all(lo <= np.asarray(centre) - reach)
        assert np.all(hi >= np.asarray(centre) + reach)
        assert lo[1] == pytest.approx(-142.0, abs=1.0) and hi[1] == pytest.approx(154.0, abs=1.0)
        shapes.add((grid["shape"], dts.geometry.n_u, dts.geometry.n_v))
    assert len(shapes) == 1, shapes


def test_images_are_turned_to_the_detector_axes_keeping_every_pixel_in_place():
    """`to_detector_axes` transposes and flips a plane image so its axes run along the
    detector's u and v; every pixel keeps its world position (affine @ index)."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 3, 1))
    # a plane whose index axes run along world z and -x (a tomosynthesis frame's plane)
    affine = np.array(
        [[0.0, -2.0, 0.0, 10.0], [0.0, 0.0, -1.0, 4.0], [2.0, 0.0, 0.0, -6.0], [0, 0, 0, 1]]
    )
    out, new = to_detector_axes(data, affine, np.array([1.0, 0, 0]), np.array([0, 0, 1.0]))
    assert out.shape == (3, 5, 1)
    np.testing.assert_allclose(new[:3, 0], [2.0, 0, 0])
    np.testing.assert_allclose(new[:3, 1], [0, 0, 2.0])
    for i in range(5):
        for j in range(3):
            world = affine @ [i, j, 0, 1]
            k = np.linalg.solve(new, world).round().astype(int)
            assert out[k[0], k[1], 0] == data[i, j, 0]
    same, _same_affine = to_detector_axes(out, new, np.array([1.0, 0, 0]), np.array([0, 0, 1.0]))
    assert same is out  # already along u and v: untouched


def test_one_chest_case_shows_the_nodule_at_the_centre_of_both_images():
    """One torso case at 4 mm, 9 views: the present - absent difference of each arm peaks at the
    image centre (the nodule's known location), is localised there, and the twins share
    everything else; both images have their axes along world x and z."""
    phantom = phantoms.load("torso-basic")
    grid = GridSpec((86, 58, 60), (4.0,) * 3, (0.0, 0.0, 80.0), supersample=1, survey_mm=8.0)
    lesion = LesionSpec.create("lung_right", radius_mm=5.0, material="muscle", margin_mm=4.0)
    recipe = CaseRecipe.create(
        phantom, grid=grid, arms=_arms(pixel=4.0, field=16, views=9), vary=False, lesion=lesion
    )
    key = case_key(3, 0)
    present = run_case(key, recipe, present=True)
    absent = run_case(key, recipe, present=False)
    assert present.lesion["center_mm"] == absent.lesion["center_mm"]
    assert present.lesion["voxel_by_arm"] == {"cxr": [8, 8, 0], "dts": [8, 8, 0]}
    for arm in ("cxr", "dts"):
        a, b = present.images[arm], absent.images[arm]
        assert a.shape == (16, 16, 1)
        np.testing.assert_allclose(np.abs(a.affine[:3, :2]), [[4, 0], [0, 0], [0, 4]], atol=1e-6)
        diff = np.asarray(a.data - b.data)[:, :, 0]
        peak = np.unravel_index(np.argmax(diff), diff.shape)  # more attenuation, higher mu
        assert max(abs(peak[0] - 7.5), abs(peak[1] - 7.5)) <= 1.5, (arm, peak)
        far = np.ones_like(diff, bool)
        far[4:12, 4:12] = False
        assert np.abs(diff[far]).max() < 0.2 * diff.max(), arm
    assert present.streams["cxr"] == "arm/cxr" and present.streams["dts"] == "arm/dts"


def test_catalog_chest_trial_loads_and_refuses_a_cut_plane():
    config = load_trial("chest-cxr-dts-nodule")
    assert [a.name for a in config.arms] == ["cxr", "dts"]
    assert config.analysis.compare == [("cxr", "dts")] and config.phantom.survey_mm == 4.0
    with pytest.raises(ValueError, match=r"observer.plane must be 'axial'"):
        bad = config.model_copy(
            update={"observer": config.observer.model_copy(update={"plane": "coronal"})}
        )
        run_trial("/nonexistent/never-made", bad)


@pytest.mark.slow  # about 4 min on 2 cores: 30 pairs of two adult phantoms
def test_catalog_chest_trial_shows_the_tomosynthesis_advantage(tmp_path):
    """Trial (b), 30 pairs: tomosynthesis shows the nodule better than the radiograph, the 95%
    interval of the paired ΔAUC above 0 (the catalog's 100 pairs: CXR 0.706, DTS 0.993, ΔAUC
    +0.286 [+0.181, +0.392], `benchmarks/RESULTS.md`)."""
    with jax.enable_x64(False):
        config = load_trial("chest-cxr-dts-nodule", overrides={"pairs": 30})
        results = run_trial(tmp_path / "b", config, engine=LocalEngine(workers=2))
    (cmp,) = results["comparisons"]
    assert cmp["arms"] == ["cxr", "dts"] and cmp["delta_auc"] > 0 and cmp["ci"][0] > 0, cmp
