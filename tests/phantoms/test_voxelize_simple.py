"""Phantoms of simple analytic shapes (Shepp–Logan 3-D): the brute-force answer, and at
supersample 1 the cell hierarchy's finest cells are the sample points themselves (no separate
sample pass)."""

from __future__ import annotations

import numpy as np
import pytest
from test_voxelize_fast import _brute

from medphys import phantoms
from medphys.phantoms import _voxelize


# supersample 2 in the slow tier: the supersampled fractions against brute force stay in the
# default tier in test_voxelize_fast (torso k=3, warped torso k=2, adult male k=2)
@pytest.mark.parametrize("k", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_shepp_logan_3d_matches_brute_force(k):
    ph = phantoms.load("shepp-logan-3d")
    shape = (37, 44, 41)  # not powers of two
    spacing = 2.0 * float(ph.shapes[0].semi_axes_mm.max()) / 0.92 / 40
    lv = _voxelize.voxelize(ph, shape=shape, spacing_mm=spacing, supersample=k)
    labels, frac = _brute(ph, shape, spacing, k)
    np.testing.assert_array_equal(np.asarray(lv.labels), labels)
    np.testing.assert_allclose(np.asarray(lv.fractions), frac, atol=1e-6)
    assert len(np.unique(labels)) >= 9  # the small ellipsoids are partly below the voxel size


def test_supersample_1_needs_no_sample_pass(monkeypatch):
    calls = []
    paint = _voxelize._paint
    monkeypatch.setattr(_voxelize, "_paint", lambda *a: calls.append(1) or paint(*a))
    ph = phantoms.load("torso-basic")  # not only ellipsoids: the cell hierarchy answers
    _voxelize.voxelize(
        ph, shape=(24, 24, 24), spacing_mm=18.0, supersample=1, fractions=phantoms.Fractions.NONE
    )
    assert calls == []
    _voxelize.voxelize(
        ph, shape=(24, 24, 24), spacing_mm=18.0, supersample=2, fractions=phantoms.Fractions.NONE
    )
    assert calls
