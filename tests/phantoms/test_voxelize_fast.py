"""The two-pass voxelizer gives the same labels and fractions as brute-force sampling."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from medphys import phantoms
from medphys.phantoms import voxelize
from medphys.volume import make_affine


def _brute(ph, shape, spacing, k, center=(0.0, 0.0, 0.0)):
    """Every shape at every sample point (the definition of the voxelizer's output)."""
    a = jnp.asarray(make_affine(shape, spacing, center_mm=center), jnp.float32)
    off = (jnp.arange(k, dtype=jnp.float32) + 0.5) / k - 0.5
    ids = [(jnp.arange(n, dtype=jnp.float32)[:, None] + off[None, :]).reshape(-1) for n in shape]
    g = jnp.stack(jnp.meshgrid(*ids, indexing="ij"), axis=-1)
    p = g @ a[:3, :3].T + a[None, None, None, :3, 3]
    if ph.warp is not None:
        p = ph.warp.backward(p)
    lab = jnp.zeros(p.shape[:-1], jnp.int32)
    for s, sh in enumerate(ph.shapes):
        lab = jnp.where(sh.level(p) <= 0, s + 1, lab)
    lab = np.asarray(lab).reshape(shape[0], k, shape[1], k, shape[2], k)
    frac = np.stack([(lab == s).mean((1, 3, 5)) for s in range(len(ph.shapes) + 1)])
    prio = np.arange(frac.shape[0])[:, None, None, None] * 1e-6
    return np.argmax(frac + prio, axis=0), frac


# supersample 3 in the slow tier (about 4 s): test_voxelize_columns keeps it in the default tier
@pytest.mark.parametrize(
    ("k", "spacing"), [(1, 12.0), pytest.param(3, 17.0, marks=pytest.mark.slow)]
)
def test_torso_matches_brute_force(k, spacing):
    ph = phantoms.load("torso-basic")
    shape = (30, 21, 25)  # not multiples of the block size
    lv = voxelize(ph, shape=shape, spacing_mm=spacing, supersample=k)
    labels, frac = _brute(ph, shape, spacing, k)
    np.testing.assert_array_equal(np.asarray(lv.labels), labels)
    np.testing.assert_allclose(np.asarray(lv.fractions), frac, atol=1e-6)


def test_warped_phantom_matches_brute_force():
    ph = phantoms.load("torso-basic").at(respiratory_phase=0.5, cardiac_phase=0.4)
    shape = (26, 18, 30)
    lv = voxelize(ph, shape=shape, spacing_mm=13.0, supersample=2)
    labels, frac = _brute(ph, shape, 13.0, 2)
    np.testing.assert_array_equal(np.asarray(lv.labels), labels)
    np.testing.assert_allclose(np.asarray(lv.fractions), frac, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adult-male", "adult-female", "adult-head"])
def test_catalog_shapes_respect_the_distance_contract(name):
    if name not in phantoms.names():
        pytest.skip(f"{name} not in the catalog")
    ph = phantoms.load(name)
    shape = (44, 32, 60)
    lv = voxelize(ph, shape=shape, spacing_mm=(9.0, 9.0, 12.0), supersample=1)
    labels, _ = _brute(ph, shape, (9.0, 9.0, 12.0), 1)
    np.testing.assert_array_equal(np.asarray(lv.labels), labels)


def test_fractions_off_gives_the_same_labels_and_same_bytes_twice():
    ph = phantoms.load("torso-basic")
    kw = {"shape": (30, 24, 30), "spacing_mm": 12.0}
    a = voxelize(ph, fractions=phantoms.Fractions.DENSE, **kw)
    b = voxelize(ph, fractions=phantoms.Fractions.NONE, **kw)
    c = voxelize(ph, fractions=phantoms.Fractions.NONE, **kw)
    assert b.fractions is None
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
    assert np.asarray(b.labels).tobytes() == np.asarray(c.labels).tobytes()


@pytest.mark.slow  # about 15-25 s; the smaller brute-force comparisons stay in the default tier
def test_adult_male_with_csg_and_tubes_matches_brute_force_at_supersample_2():
    # ribs (difference of a union of torus-box intersections), pelvis, spine and bronchi
    # (unions), smooth-union body shells, 13 tubes: every leaf kind of the hierarchy
    ph = phantoms.load("adult-male")
    shape, spacing, center = (22, 17, 29), (17.0, 15.0, 21.0), (0.0, 0.0, -110.0)
    lv = voxelize(ph, shape=shape, spacing_mm=spacing, center_mm=center, supersample=2)
    labels, frac = _brute(ph, shape, spacing, 2, center=center)
    np.testing.assert_array_equal(np.asarray(lv.labels), labels)
    np.testing.assert_allclose(np.asarray(lv.fractions), frac, atol=1e-6)
    assert len(np.unique(labels)) > 25
