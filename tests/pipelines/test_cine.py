"""Cine bSSFP over the phantom's cardiac cycle."""

from __future__ import annotations

from importlib.resources import files

import jax
import numpy as np
import pytest
from scipy import ndimage

import medphys.simulators as sims
from medphys import phantoms
from medphys.pipelines import cine
from medphys.simulators import mr

GRID = {"shape": (24, 22, 4), "spacing_mm": 3.0, "center_mm": (-40.0, 26.0, 44.0)}


@pytest.fixture(scope="module")
def frames():
    protocol = mr.MRProtocol.create(mr.BSSFP.create(tr_s=0.004, flip_deg=60.0), field_t=1.5)
    torso = phantoms.load("torso-basic")
    return torso, protocol, cine(jax.random.key(0), torso, protocol, n_phases=5, **GRID)


def test_cine_frames_follow_the_cardiac_cycle(frames):
    torso, protocol, result = frames
    assert result.cardiac_phases == (0.0, 0.2, 0.4, 0.6, 0.8)
    assert result.images.shape == (5, *GRID["shape"])
    blood = [
        float(np.sum(np.asarray(f.maps.fractions)[f.maps.names.index("blood")]))
        for f in result.frames
    ]
    assert blood[2] < 0.9 * blood[0]  # end-systole (phase 0.4): the ventricles have emptied
    assert blood[2] == min(blood)
    # frame k is the phantom at phase k/5, simulated with the frame's key
    direct = mr.simulate(
        jax.random.fold_in(jax.random.key(0), 2),
        torso.at(cardiac_phase=0.4).voxelize(**GRID),
        protocol,
    )
    np.testing.assert_allclose(result.images[2], direct.image.data, rtol=1e-6)


def test_cine_image_change_is_the_volume_change_times_the_bssfp_contrast(frames):
    _, protocol, result = frames
    ed, es = result.frames[0], result.frames[2]
    # noise-free, uniform coil, on resonance: every compartment's bSSFP signal is real and
    # positive, so the summed image is sum_c (sum of fractions of c) * S_c
    s = np.asarray(mr.signal(protocol.sequence, ed.maps.pd, ed.maps.t1_s, ed.maps.t2_s).real)
    d_fraction = np.sum(
        np.asarray(ed.maps.fractions) - np.asarray(es.maps.fractions), axis=(1, 2, 3)
    )
    expected = float(d_fraction @ s)
    measured = float(np.sum(ed.image.data) - np.sum(es.image.data))
    assert measured == pytest.approx(expected, rel=1e-3)
    assert expected > 0  # blood is brighter than what replaces it in bSSFP


def test_cine_bad_input(frames):
    torso, protocol, _ = frames
    with pytest.raises(ValueError, match=r"cine: `n_phases` must be >= 1"):
        cine(jax.random.key(0), torso, protocol, n_phases=0, **GRID)
    with pytest.raises(TypeError, match=r"cine: `protocol` must be an MRProtocol"):
        cine(jax.random.key(0), torso, "mr-bssfp", n_phases=2, **GRID)
    with pytest.raises(TypeError, match=r"cine: `n_phases` is required with an MRProtocol"):
        cine(jax.random.key(0), torso, protocol, **GRID)
    # 30 frames of 10 x 4 ms do not fit in the motion model's 1 s heartbeat (checked before work)
    long = mr.CineProtocol.create(protocol, n_phases=30, views_per_segment=10)
    with pytest.raises(ValueError, match=r"cine: 30 frames of 40 ms .* the cardiac period 1 s"):
        cine(jax.random.key(0), torso, long, **GRID)
    slow_heart = phantoms.MotionModel.create(cardiac_period_s=1.5)
    assert cine(jax.random.key(0), torso, long, motion=slow_heart, n_phases=1, **GRID)
    example = files("medphys.simulators.mr") / "examples" / "se_16.seq"
    pulseq = mr.MRProtocol.create(mr.PulseqSequence.create(str(example)), field_t=1.5)
    with pytest.raises(ValueError, match=r"CineProtocol.create: `views_per_segment` needs a "):
        mr.CineProtocol.create(pulseq, n_phases=4, views_per_segment=2)


def test_catalog_cine_protocol_shows_the_phantom_ejection_fraction():
    """mr-cine-bssfp on torso-basic: the bright LV blood area shrinks by the EF (60 %)."""
    protocol = sims.load("mr-cine-bssfp")
    assert isinstance(protocol, mr.CineProtocol)
    torso = phantoms.load("torso-basic")
    grid = {"shape": (20, 18, 24), "spacing_mm": 3.0, "center_mm": (-40.0, 26.0, 44.0)}
    # 5 frames (the catalog's 20, thinned): frame 2 is end-systole (phase 0.4)
    result = cine(jax.random.key(1), torso, protocol, n_phases=5, **grid)
    assert result.images.shape == (5, *grid["shape"])
    assert result.temporal_resolution_s == pytest.approx(0.04)
    # the LV region: the end-diastolic LV blood pool (the ES pool lies inside it), one voxel
    # wider; levels of blood and myocardium measured in the ED image
    ed = torso.voxelize(**grid)
    lv = np.asarray(ed.fractions[ed.names.index("lv_blood")]) > 0
    roi = ndimage.binary_dilation(lv)
    core = ndimage.binary_erosion(lv, iterations=3)
    ring = ndimage.binary_dilation(lv, iterations=3) & ~roi
    myo = ring & (np.asarray(ed.fractions[ed.names.index("heart")]) > 0.99)
    # intensity-normalised images (the loop array's shading divided out)
    images = [np.asarray(f.image.data) / np.asarray(mr.rss(f.coil_maps)) for f in result.frames]
    threshold = 0.5 * (np.median(images[0][core]) + np.median(images[0][myo]))
    area = [int(np.sum(im[roi] > threshold)) for im in images]
    ef = 1.0 - area[2] / area[0]
    model_ef = phantoms.MotionModel().ejection_fraction  # 0.6
    assert abs(ef - model_ef) < 0.05  # measured 0.61
    assert area[2] == min(area) and area[0] == max(area)
