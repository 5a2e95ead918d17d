"""The voxelizer's column path (phantoms of ellipsoids only): chords along z columns give exactly
the brute-force answer, including samples lying on surfaces and columns grazing them."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from test_voxelize_fast import _brute

from medphys import phantoms
from medphys.phantoms import Ellipsoid, Phantom, voxelize
from medphys.phantoms import _voxelize_columns as columns


def _phantom(shapes) -> Phantom:
    n = len(shapes)
    return Phantom.create(
        name="ellipsoids",
        structure_names=tuple(f"e{i}" for i in range(n)),
        materials=("water",) * n,
        shapes=tuple(shapes),
    )


def _ell(c, r, rot=(0.0, 0.0, 0.0)) -> Ellipsoid:
    f = lambda v: jnp.asarray(v, dtype=jnp.float32)
    return Ellipsoid(f(c), f(r), f(rot))


def _random_phantom(seed: int, n: int = 9) -> Phantom:
    """Rotated ellipsoids of all sizes (sub-voxel to grid-filling), overlapping, some outside."""
    rng = np.random.default_rng(seed)
    shapes = [_ell((0.0, 0.0, 0.0), (40.0, 33.0, 45.0), rng.uniform(-1, 1, 3))]
    for _ in range(n - 1):
        size = 10 ** rng.uniform(-0.3, 1.4, 3)  # 0.5 to 25 mm
        shapes.append(_ell(rng.uniform(-45, 45, 3), size, rng.uniform(-np.pi, np.pi, 3)))
    return _phantom(shapes)


def _calls(monkeypatch) -> list[bool]:
    """Record whether each voxelization was answered by the column path."""
    used: list[bool] = []
    real = columns.sample

    def spy(*args):
        out = real(*args)
        used.append(out is not None)
        return out

    monkeypatch.setattr(columns, "sample", spy)
    return used


@pytest.mark.parametrize(
    ("seed", "k", "spacing"),
    # supersample 2 in the slow tier (about 5 s): the surface test below keeps it in the default
    [(0, 1, 3.1), pytest.param(1, 2, 4.3, marks=pytest.mark.slow), (2, 3, 5.7)],
)
def test_random_ellipsoids_match_brute_force(monkeypatch, seed, k, spacing):
    used = _calls(monkeypatch)
    ph = _random_phantom(seed)
    shape, center = (29, 26, 31), (1.3, -0.7, 2.2)
    lv = voxelize(ph, shape=shape, spacing_mm=spacing, supersample=k, center_mm=center)
    labels, frac = _brute(ph, shape, spacing, k, center=center)
    assert used == [True]
    np.testing.assert_array_equal(np.asarray(lv.labels), labels)
    np.testing.assert_allclose(np.asarray(lv.fractions), frac, atol=1e-6)


def _surface_phantom(h: float) -> Phantom:
    """Spheres and axis-aligned ellipsoids centred on sample points with radii a whole number
    of samples ``h``: whole rings of samples lie on the surface (level exactly 0 or one rounding
    away), and columns along the poles and equators graze it."""
    c0 = -2.0 + h / 2  # a sample position (2 mm voxels of a grid of even size centred on 0)
    return _phantom(
        [
            _ell((c0, c0, c0), (20 * h, 20 * h, 20 * h)),
            _ell((c0 + 4 * h, c0, c0 - 3 * h), (6 * h, 9 * h, 5 * h)),
            _ell((c0 - 8 * h, c0 + 5 * h, c0 + 7 * h), (3 * h, 3 * h, 3 * h)),
            _ell((c0, c0 - 10 * h, c0), (1 * h, 2 * h, 7 * h)),
        ]
    )


# supersample 1 in the slow tier (about 4 s): the random ellipsoids keep it in the default tier
@pytest.mark.parametrize("k", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_samples_on_the_surface_match_brute_force(monkeypatch, k):
    used = _calls(monkeypatch)
    ph = _surface_phantom(2.0 / k)  # sample spacing on a 2 mm grid
    shape = (32, 30, 34)
    lv = voxelize(ph, shape=shape, spacing_mm=2.0, supersample=k)
    labels, frac = _brute(ph, shape, 2.0, k)
    assert used == [True]
    np.testing.assert_array_equal(np.asarray(lv.labels), labels)
    np.testing.assert_allclose(np.asarray(lv.fractions), frac, atol=1e-6)


def test_shepp_logan_equals_the_general_path(monkeypatch):
    """Same labels and sparse fractions as the cell hierarchy, slab by slab (the grid is cut
    into several x slabs here, the last one overlapping)."""
    ph = phantoms.load("shepp-logan-3d")
    monkeypatch.setattr(columns, "_SLAB_SAMPLES", 7 * 40 * 36 * 4)  # slabs of 7 x-columns
    kw = dict(
        shape=(45, 40, 36), spacing_mm=5.3, supersample=2, fractions=phantoms.Fractions.SPARSE
    )
    used = _calls(monkeypatch)
    fast = voxelize(ph, **kw)
    monkeypatch.setattr(columns, "applicable", lambda *a: False)
    slow = voxelize(ph, **kw)
    assert used == [True]
    np.testing.assert_array_equal(np.asarray(fast.labels), np.asarray(slow.labels))
    for name in ("voxels", "structure", "fraction"):
        np.testing.assert_array_equal(
            getattr(fast.fractions, name), getattr(slow.fractions, name), err_msg=name
        )


def test_which_voxelizations_take_the_column_path():
    from medphys.phantoms import _voxelize_leaves as leaves
    from medphys.volume import make_affine

    affine = make_affine((8, 8, 8), 1.0)
    sl = phantoms.load("shepp-logan-3d")
    assert columns.applicable(leaves.groups(sl.shapes), None, affine)
    torso = phantoms.load("torso-basic")
    assert not columns.applicable(leaves.groups(torso.shapes), None, affine)
    moving = torso.at(respiratory_phase=0.5)
    assert not columns.applicable(leaves.groups(sl.shapes), moving.warp, affine)


def test_window_overflow_falls_back(monkeypatch):
    """Windows too small for the uncertain samples: the column path declines and the general
    path answers (the brute-force labels)."""
    monkeypatch.setattr(columns, "_WINDOW", 0)
    used = _calls(monkeypatch)
    ph = _surface_phantom(2.0)
    lv = voxelize(ph, shape=(32, 30, 34), spacing_mm=2.0, supersample=1)
    labels, _ = _brute(ph, (32, 30, 34), 2.0, 1)
    assert used == [False]
    np.testing.assert_array_equal(np.asarray(lv.labels), labels)
