"""`xray.with_views`: a protocol with fewer or more views over the same arc at the same dose."""

from __future__ import annotations

import numpy as np
import pytest

from medphys import simulators
from medphys.simulators import xray


def test_same_arc_same_total_mas_and_geometry_otherwise_unchanged():
    p = simulators.load("ct-chest-120kvp")
    sparse = xray.with_views(p, 60)
    g, h = p.geometry, sparse.geometry
    assert h.n_views == 60
    np.testing.assert_allclose(np.asarray(h.angles), g.angles[0] + np.arange(60) * 2 * np.pi / 60)
    assert sparse.mas_per_view * 60 == pytest.approx(p.mas_per_view * g.n_views, rel=1e-12)
    for name in ("sod_mm", "sdd_mm", "du_mm", "u_offset_mm", "n_u"):
        assert np.array_equal(np.asarray(getattr(h, name)), np.asarray(getattr(g, name)))
    assert sparse.spectrum is p.spectrum and sparse.filter == p.filter
    # equals the geometry built directly for that many views over 360°
    direct = xray.FanBeam.create(
        n_views=60,
        n_u=int(g.n_u),
        du_mm=float(g.du_mm),
        sod_mm=float(g.sod_mm),
        sdd_mm=float(g.sdd_mm),
        u_offset_mm=float(g.u_offset_mm),
        arc_rad=2 * np.pi,
    )
    np.testing.assert_allclose(np.asarray(h.angles), np.asarray(direct.angles), atol=1e-12)


def test_bad_input():
    p = simulators.load("ct-chest-120kvp")
    with pytest.raises(ValueError, match="`n_views` must be an integer >= 1"):
        xray.with_views(p, 0)
    with pytest.raises(TypeError, match="FanBeam or ParallelBeam"):
        xray.with_views(simulators.load("ct-carm-cbct"), 10)
