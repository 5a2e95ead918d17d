"""The voxelizer's cell hierarchy: leaves are exact parts of their shapes, margins are true
Lipschitz bounds, and hand-made phantoms that stress them give the brute-force answer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_voxelize_fast import _brute

from medphys import phantoms
from medphys.phantoms import (
    Box,
    Difference,
    Ellipsoid,
    EllipticCylinder,
    Intersection,
    Phantom,
    SmoothUnion,
    Superquadric,
    Torus,
    Tube,
    Union,
    voxelize,
)
from medphys.phantoms import _voxelize_leaves as leaves


def _f(*v):
    return jnp.asarray(v if len(v) > 1 else v[0], dtype=jnp.float32)


ROT = _f(0.3, -0.5, 0.9)
ZERO = _f(0.0, 0.0, 0.0)


def _stress_shapes():
    """Shapes whose margins differ: rotated, pinched (e > 1), elliptic rings, steep tapers, CSG."""
    ring = Intersection(
        (
            Torus(_f(0.0, 4.0, 3.0), _f(30.0, 18.0), _f(5.0), ROT),
            Box(_f(10.0, 0.0, 0.0), _f(25.0, 40.0, 40.0), ZERO),
        )
    )
    taper = Tube(
        _f([[-30.0, -20.0, -10.0], [-25.0, -18.0, -8.0], [5.0, 10.0, 15.0], [20.0, 12.0, 30.0]]),
        _f(2.0, 9.0, 6.0, 1.5),
    )  # the second segment widens 7 mm over 3.6 mm: margin 2.9
    return (
        Superquadric(_f(0.0, 0.0, 0.0), _f(38.0, 30.0, 34.0), _f(0.6, 0.8), ROT),
        Ellipsoid(_f(-8.0, 5.0, 2.0), _f(17.0, 9.0, 12.5), ROT),
        Superquadric(_f(12.0, -6.0, -4.0), _f(14.0, 11.0, 9.0), _f(1.6, 1.3), ROT),  # pinched
        Difference(
            Union((ring, EllipticCylinder(_f(-12.0, -12.0, 8.0), _f(6.0, 4.0), _f(14.0), ROT))),
            (Ellipsoid(_f(0.0, 0.0, 5.0), _f(9.0, 9.0, 9.0), ZERO),),
        ),
        taper,
        SmoothUnion(
            (
                Ellipsoid(_f(15.0, 15.0, -15.0), _f(7.0, 5.0, 6.0), ZERO),
                Box(_f(22.0, 15.0, -15.0), _f(5.0, 4.0, 3.0), ROT),
            ),
            _f(3.0),
        ),
    )


def _phantom(shapes):
    return Phantom.create(
        name="stress",
        structure_names=tuple(f"s{i}" for i in range(len(shapes))),
        materials=("water",) * len(shapes),
        shapes=tuple(shapes),
    )


#: catalog structures built from CSG nodes and tubes
_CSG = ("bronchi", "aorta", "ribs", "costal_cartilage", "pelvis", "spine", "thyroid", "skin")


def _catalog_shapes():
    ph = phantoms.load("adult-male")
    return [s for n, s in zip(ph.structure_names, ph.shapes, strict=True) if n in _CSG]


def test_leaves_are_an_exact_partition_of_the_inside_test():
    key = jax.random.key(0)
    cases = [(s, leaves.split(s)) for s in (*_stress_shapes(), *_catalog_shapes())]
    assert sum(len(parts) for _, parts in cases) > 2 * len(cases)  # unions and tubes were cut
    for shape, parts in cases:
        key, sub = jax.random.split(key)
        centre = jnp.asarray(getattr(shape, "center_mm", jnp.zeros(3)), jnp.float32)
        pts = centre[None, :] + jax.random.normal(sub, (2000, 3), jnp.float32) * 40.0
        whole = np.asarray(shape.level(pts) <= 0)
        any_part = np.any([np.asarray(p.level(pts) <= 0) for p in parts], axis=0)
        np.testing.assert_array_equal(whole, any_part)


def test_proven_margins_bound_the_level_difference_between_nearby_points():
    # margins below the contract value 2 are Lipschitz bounds proven in `_voxelize_leaves`
    key = jax.random.key(1)
    cut = [leaf for s in (*_stress_shapes(), *_catalog_shapes()) for leaf in leaves.split(s)]
    proven = [leaf for leaf in cut if leaves.margin(leaf) != leaves._MARGIN]
    assert len(proven) > 20
    worst = 0.0
    for leaf in proven:
        key, k1, k2 = jax.random.split(key, 3)
        centre = jnp.asarray(getattr(leaf, "center_mm", jnp.zeros(3)), jnp.float64)
        p = centre[None, :] + jax.random.normal(k1, (3000, 3), jnp.float64) * 30.0
        q = p + jax.random.normal(k2, (3000, 3), jnp.float64) * 2.0
        ratio = np.abs(np.asarray(leaf.level(p) - leaf.level(q))) / np.linalg.norm(
            np.asarray(p - q), axis=-1
        )
        bound = leaves.margin(leaf)
        assert np.max(ratio) <= bound * (1 + 1e-3), (type(leaf).__name__, np.max(ratio), bound)
        worst = max(worst, float(np.max(ratio) / bound))
    assert worst > 0.5  # the bounds are not loose by more than a factor of two somewhere


def test_margin_values():
    e = Ellipsoid(ZERO, _f(3.0, 4.0, 5.0), ROT)
    assert leaves.margin(e) == 1.0
    assert leaves.margin(Superquadric(ZERO, _f(3.0, 4.0, 5.0), _f(0.5, 1.0), ROT)) == 1.0
    assert leaves.margin(Superquadric(ZERO, _f(3.0, 4.0, 5.0), _f(1.5, 1.0), ROT)) == 2.0
    assert leaves.margin(Torus(ZERO, _f(9.0, 9.0), _f(2.0), ROT)) == 1.0
    assert leaves.margin(Torus(ZERO, _f(9.0, 6.0), _f(2.0), ROT)) == 2.0
    seg = Tube(_f([[0.0, 0.0, 0.0], [0.0, 0.0, 10.0]]), _f(2.0, 7.0))
    assert leaves.margin(seg) == pytest.approx(1.5)
    assert leaves.margin(Union((e, seg))) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("k", "shape", "spacing"),
    [(2, (29, 23, 26), 2.7), pytest.param(3, (14, 17, 13), 5.9, marks=pytest.mark.slow)],
)
def test_stress_phantom_matches_brute_force(k, shape, spacing):
    ph = _phantom(_stress_shapes())
    center = (1.5, -0.7, 2.2)
    lv = voxelize(ph, shape=shape, spacing_mm=spacing, center_mm=center, supersample=k)
    labels, frac = _brute(ph, shape, spacing, k, center=center)
    np.testing.assert_array_equal(np.asarray(lv.labels), labels)
    np.testing.assert_allclose(np.asarray(lv.fractions), frac, atol=1e-6)
    assert len(np.unique(labels)) == len(ph.shapes) + 1  # every structure is on the grid


def test_supersample_1_and_a_grid_smaller_than_one_coarse_cell():
    ph = _phantom(_stress_shapes()[:2])
    for shape, spacing, k in (((3, 5, 4), 9.0, 2), ((45, 7, 31), 2.2, 1)):
        lv = voxelize(ph, shape=shape, spacing_mm=spacing, supersample=k)
        labels, frac = _brute(ph, shape, spacing, k)
        np.testing.assert_array_equal(np.asarray(lv.labels), labels)
        np.testing.assert_allclose(np.asarray(lv.fractions), frac, atol=1e-6)
