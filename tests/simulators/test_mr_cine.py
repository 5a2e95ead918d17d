"""Cine bSSFP over the phantom's cardiac cycle."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from medphys import phantoms
from medphys.simulators import mr

GRID = {"shape": (24, 22, 4), "spacing_mm": 3.0, "center_mm": (-40.0, 26.0, 44.0)}


@pytest.fixture(scope="module")
def frames():
    protocol = mr.MRProtocol.create(mr.BSSFP.create(tr_s=0.004, flip_deg=60.0), field_t=1.5)
    torso = phantoms.load("torso-basic")
    return torso, protocol, mr.cine(torso, protocol, jax.random.key(0), n_phases=5, **GRID)


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
        torso.at(cardiac_phase=0.4).voxelize(**GRID),
        protocol,
        jax.random.fold_in(jax.random.key(0), 2),
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
        mr.cine(torso, protocol, jax.random.key(0), n_phases=0, **GRID)
    with pytest.raises(TypeError, match=r"cine: `protocol` must be an MRProtocol"):
        mr.cine(torso, "mr-bssfp", jax.random.key(0), n_phases=2, **GRID)
