"""Analytic shapes: closed-form volumes, signs against brute-force geometry, CSG identities,
gradients with respect to the shape parameters, and the TOML schema of every shape type."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from jax.test_util import check_grads

from medphys import ConfigError, phantoms
from medphys.phantoms import (
    Box,
    Difference,
    Ellipsoid,
    Intersection,
    SmoothUnion,
    Superquadric,
    Torus,
    Tube,
    Union,
    catmull_rom,
)


def _a(*v):
    return jnp.asarray(v if len(v) > 1 else v[0], dtype=jnp.float64)


def _grid(lo, hi, step):
    axes = [np.arange(lo[i] + step / 2, hi[i], step) for i in range(3)]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return jnp.asarray(g.reshape(-1, 3)), step**3


def _volume(shape, lo, hi, step):
    """Midpoint-rule volume of ``level <= 0`` on a regular grid (independent of volume_mm3)."""
    pts, dv = _grid(lo, hi, step)
    return float(jnp.sum(shape.level(pts) <= 0)) * dv


ROT = _a(0.3, -0.2, 0.5)
ZERO = _a(0.0, 0.0, 0.0)


def test_torus_volume_is_2_pi_squared_R_r_squared():
    torus = Torus(ZERO, _a(30.0, 30.0), _a(8.0), ZERO)
    closed = 2 * math.pi**2 * 30.0 * 8.0**2
    assert float(torus.volume_mm3()) == pytest.approx(closed, rel=1e-12)
    measured = _volume(torus, (-40, -40, -10), (40, 40, 10), 0.5)
    assert measured == pytest.approx(closed, rel=0.005)


def test_elliptic_torus_volume_follows_pappus():
    # Pappus: tube cross-section times the centre-line length (Ramanujan's perimeter, ~1e-5 here)
    torus = Torus(ZERO, _a(40.0, 25.0), _a(5.0), ROT)
    measured = _volume(torus, (-47, -47, -32), (47, 47, 32), 0.6)
    assert measured == pytest.approx(float(torus.volume_mm3()), rel=0.01)


@pytest.mark.parametrize("e1,e2", [(1.0, 1.0), (0.5, 1.0), (0.3, 0.6), (1.0, 0.2)])
def test_superquadric_volume_matches_beta_functions(e1, e2):
    sq = Superquadric(ZERO, _a(20.0, 14.0, 10.0), _a(e1, e2), ZERO)
    a, b, c = 20.0, 14.0, 10.0
    closed = (
        2
        * a
        * b
        * c
        * e1
        * e2
        * scipy.special.beta(e1 / 2 + 1, e1)
        * scipy.special.beta(e2 / 2, e2 / 2)
    )
    assert float(sq.volume_mm3()) == pytest.approx(closed, rel=1e-10)
    if e1 == e2 == 1.0:
        assert closed == pytest.approx(4 / 3 * math.pi * a * b * c, rel=1e-12)
    measured = _volume(sq, (-21, -15, -11), (21, 15, 11), 0.35)
    assert measured == pytest.approx(closed, rel=0.01)


def test_capsule_and_tapered_tube_volumes():
    capsule = Tube(jnp.asarray([[-20.0, 5.0, 0.0], [25.0, -5.0, 10.0]]), _a(6.0, 6.0))
    length = math.sqrt(45**2 + 10**2 + 10**2)
    closed = math.pi * 36 * length + 4 / 3 * math.pi * 216
    assert float(capsule.volume_mm3()) == pytest.approx(closed, rel=1e-12)
    assert _volume(capsule, (-27, -12, -8), (32, 12, 17), 0.4) == pytest.approx(closed, rel=0.005)
    # a straight tapered segment: a truncated cone between two different spherical caps; the
    # midpoint-rule volume must lie close to the frustum-plus-hemispheres estimate
    cone = Tube(jnp.asarray([[0.0, 0.0, -20.0], [0.0, 0.0, 20.0]]), _a(8.0, 4.0))
    v = _volume(cone, (-9, -9, -29), (9, 9, 25), 0.4)
    assert v == pytest.approx(float(cone.volume_mm3()), rel=0.03)


def test_box_volume_and_exact_distance():
    box = Box(_a(1.0, 2.0, 3.0), _a(10.0, 6.0, 4.0), ROT)
    assert float(box.volume_mm3()) == 8 * 240
    assert _volume(box, (-14, -14, -14), (16, 18, 20), 0.4) == pytest.approx(1920, rel=0.01)
    axis_aligned = Box(ZERO, _a(10.0, 6.0, 4.0), ZERO)
    p = jnp.asarray([[13.0, 0.0, 0.0], [13.0, 10.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(axis_aligned.level(p), [3.0, 5.0, -3.0], atol=1e-9)


def _segment_distance(p, a, b):
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    return np.linalg.norm(p - a - t[:, None] * (b - a), axis=1)


def test_level_sign_matches_brute_force_geometry():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-50, 50, size=(2000, 3))
    # tube along a spline: distance to a densely resampled centre line
    control = np.array([[-40.0, 0, 0], [-10, 20, 5], [15, -10, -5], [40, 5, 10]])
    tube = Tube(catmull_rom(jnp.asarray(control), 12), jnp.full(13, 7.0))
    poly = np.asarray(tube.points_mm)
    dense = np.concatenate([np.linspace(poly[i], poly[i + 1], 50) for i in range(12)])
    brute = np.min(np.linalg.norm(pts[:, None, :] - dense[None], axis=-1), axis=1) - 7.0
    level = np.asarray(tube.level(jnp.asarray(pts)))
    np.testing.assert_allclose(level, brute, atol=0.02)
    # elliptic torus: distance to a densely sampled centre ellipse
    torus = Torus(ZERO, _a(35.0, 22.0), _a(6.0), ZERO)
    t = np.linspace(0, 2 * np.pi, 1500, endpoint=False)
    ring = np.stack([35 * np.cos(t), 22 * np.sin(t), 0 * t], axis=1)
    brute = np.min(np.linalg.norm(pts[:, None, :] - ring[None], axis=-1), axis=1) - 6.0
    level = np.asarray(torus.level(jnp.asarray(pts)))
    far = np.abs(brute) > 1.0
    assert np.array_equal(level[far] <= 0, brute[far] <= 0)
    near = np.abs(brute) < 3.0
    np.testing.assert_allclose(level[near], brute[near], atol=0.5)
    # superquadric: Barr's inside-outside function evaluated directly
    sq = Superquadric(ZERO, _a(40.0, 30.0, 20.0), _a(0.4, 0.7), ZERO)
    x, y, z = np.abs(pts[:, 0] / 40), np.abs(pts[:, 1] / 30), np.abs(pts[:, 2] / 20)
    f = (x ** (2 / 0.7) + y ** (2 / 0.7)) ** (0.7 / 0.4) + z ** (2 / 0.4)
    level = np.asarray(sq.level(jnp.asarray(pts)))
    clear = np.abs(f - 1) > 1e-6
    assert np.array_equal((level <= 0)[clear], (f <= 1)[clear])
    # lower bound of the distance (gauge function argument): never above the true distance
    # measured to a dense surface sampling, for points near the surface
    u, v = np.meshgrid(np.linspace(-np.pi / 2, np.pi / 2, 150), np.linspace(-np.pi, np.pi, 300))

    def spow(w, e):
        return np.sign(w) * np.abs(w) ** e

    surf = np.stack(
        [
            40 * spow(np.cos(u), 0.4) * spow(np.cos(v), 0.7),
            30 * spow(np.cos(u), 0.4) * spow(np.sin(v), 0.7),
            20 * spow(np.sin(u), 0.4),
        ],
        axis=-1,
    ).reshape(-1, 3)
    sel = np.flatnonzero(np.abs(level) < 5)[:100]
    d = np.min(np.linalg.norm(pts[sel][:, None, :] - surf[None], axis=-1), axis=1)
    assert np.all(np.abs(level[sel]) <= d + 0.2)


def _voxel_count(shapes, names):
    ph = phantoms.Phantom(
        name="csg", structure_names=names, materials=("water",) * len(names), shapes=shapes
    )
    return phantoms.voxelize(ph, shape=(28, 28, 28), spacing_mm=2.8, supersample=1)


def test_csg_identities_on_voxels():
    a = Superquadric(_a(-8.0, 0.0, 0.0), _a(25.0, 18.0, 14.0), _a(0.5, 0.8), ROT)
    b = Torus(_a(10.0, 3.0, 0.0), _a(20.0, 15.0), _a(7.0), _a(0.4, 0.1, 0.0))
    labels = {}
    for name, shape in {
        "a": a,
        "b": b,
        "union": Union((a, b)),
        "inter": Intersection((a, b)),
        "diff": Difference(a, (b,)),
    }.items():
        lv = _voxel_count((shape,), (name,))
        labels[name] = np.asarray(lv.labels) == 1
    n = {k: int(v.sum()) for k, v in labels.items()}
    assert n["inter"] > 100 and n["diff"] > 100  # a real overlap
    assert n["union"] == n["a"] + n["b"] - n["inter"]
    assert n["diff"] == n["a"] - n["inter"]
    np.testing.assert_array_equal(labels["union"], labels["a"] | labels["b"])
    np.testing.assert_array_equal(labels["inter"], labels["a"] & labels["b"])
    np.testing.assert_array_equal(labels["diff"], labels["a"] & ~labels["b"])


def test_smooth_union_blends_only_near_the_seam():
    a = Ellipsoid(_a(-12.0, 0.0, 0.0), _a(14.0, 10.0, 10.0), ZERO)
    b = Ellipsoid(_a(12.0, 0.0, 0.0), _a(14.0, 10.0, 10.0), ZERO)
    pts, _dv = _grid((-30, -15, -15), (30, 15, 15), 0.5)
    hard = np.asarray(Union((a, b)).level(pts))
    smooth = np.asarray(SmoothUnion((a, b), _a(6.0)).level(pts))
    assert np.all(smooth <= hard + 1e-12)  # only adds material (a fillet)
    added = (smooth <= 0) & (hard > 0)
    assert added.sum() > 0
    assert np.all(np.abs(pts[added][:, 0]) < 6.0)  # the fillet sits at the seam x = 0
    far = SmoothUnion((a, Ellipsoid(_a(60.0, 0.0, 0.0), _a(5.0, 5.0, 5.0), ZERO)), _a(6.0))
    # shapes further apart than the blend radius: the same solid as the hard union
    np.testing.assert_array_equal(far.level(pts) <= 0, Union(far.children).level(pts) <= 0)


def test_catmull_rom_passes_through_its_control_points():
    control = jnp.asarray([[0.0, 0, 0], [10, 5, 0], [20, -5, 3], [30, 0, 9]])
    curve = catmull_rom(control, 12)  # 4 samples per span: control points at 0, 4, 8, 12
    np.testing.assert_allclose(curve[::4], control, atol=1e-12)
    assert curve.shape == (13, 3)


SHAPES = {
    "box": Box(_a(1.0, 2.0, 3.0), _a(10.0, 6.0, 4.0), ROT),
    "superquadric": Superquadric(_a(1.0, 2.0, 0.0), _a(20.0, 15.0, 10.0), _a(0.6, 0.8), ROT),
    "torus": Torus(_a(0.0, 1.0, 2.0), _a(25.0, 18.0), _a(6.0), ROT),
    "tube": Tube(
        jnp.asarray([[-20.0, 0.0, 0.0], [0.0, 10.0, 5.0], [20.0, 0.0, 10.0]]), _a(5.0, 7.0, 4.0)
    ),
    "smooth_union": SmoothUnion(
        (
            Ellipsoid(_a(-8.0, 0.0, 0.0), _a(12.0, 9.0, 8.0), ROT),
            Box(_a(8.0, 1.0, 0.0), _a(8.0, 7.0, 6.0), ZERO),
        ),
        _a(5.0),
    ),
    "difference": Difference(
        Ellipsoid(_a(0.0, 0.0, 0.0), _a(20.0, 15.0, 12.0), ROT),
        (Torus(_a(5.0, 0.0, 0.0), _a(12.0, 12.0), _a(4.0), ZERO),),
    ),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_level_gradients_with_respect_to_parameters(name):
    shape = SHAPES[name]
    leaves, treedef = jax.tree_util.tree_flatten(shape)
    rng = np.random.default_rng(1)
    # generic points (away from the kinks of max/min/clip): inside, outside and near the surface
    pts = jnp.asarray(rng.uniform(-25, 25, size=(12, 3)))

    @jax.jit
    def f(*params):
        return jax.tree_util.tree_unflatten(treedef, params).level(pts)

    check_grads(f, tuple(leaves), order=1, modes=("rev",), atol=1e-4, rtol=1e-4, eps=1e-4)
    grads = jax.grad(lambda *p: jnp.sum(f(*p)), argnums=tuple(range(len(leaves))))(*leaves)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_scaled_keeps_the_contract(name):
    shape = SHAPES[name]
    factor, about = _a(1.3, 1.3, 1.3), _a(2.0, -1.0, 4.0)
    big = shape.scaled(factor, about)
    # isotropic scaling about a point: level(about + s (p - about)) ~ s * level(p) in sign
    pts = jnp.asarray(np.random.default_rng(2).uniform(-25, 25, size=(2000, 3)))
    inside = np.asarray(shape.level(pts) <= 0)
    inside_big = np.asarray(big.level(about[None, :] + 1.3 * (pts - about[None, :])) <= 0)
    assert np.mean(inside == inside_big) > 0.995
    if hasattr(shape, "volume_mm3") and name != "tube":
        assert float(big.volume_mm3()) == pytest.approx(1.3**3 * float(shape.volume_mm3()))


_ERRORS = {
    "box": ("center_mm = [0, 0, 0]", "half_size_mm = [1, 0, 1]"),
    "superquadric": (
        "center_mm = [0, 0, 0]\nsemi_axes_mm = [5, 5, 5]",
        "exponents = [0.5, 3.0]",
    ),
    "torus": ("center_mm = [0, 0, 0]\nmajor_radii_mm = [10, 8]", "minor_radius_mm = 9"),
    "tube": ("points_mm = [[0, 0, 0], [0, 0, 10]]", "radius_mm = [2, 3, 4]"),
    "spline_tube": ("points_mm = [[0, 0, 0], [0, 0, 10]]\nradius_mm = 2", "segments = 100"),
    "smooth_union": (
        'children = [{ type = "box", center_mm = [0, 0, 0], half_size_mm = [1, 1, 1] },\n'
        '  { type = "box", center_mm = [1, 0, 0], half_size_mm = [1, 1, 1] }]',
        "radius_mm = -1",
    ),
    "union": ("", "children = []"),
    "difference": (
        'base = { type = "box", center_mm = [0, 0, 0], half_size_mm = [1, 1, 1] }',
        "cuts = 3",
    ),
}


@pytest.mark.parametrize("kind", sorted(_ERRORS))
def test_toml_errors_name_file_line_and_key(tmp_path, kind):
    good, bad = _ERRORS[kind]
    key = bad.split(" =")[0]
    path = tmp_path / "mine.toml"
    head = 'name = "mine"\ndescription = "x"\n\n[[structures]]\nname = "blob"\nmaterial = "liver"\n'
    path.write_text(f'{head}[structures.shape]\ntype = "{kind}"\n{good}\n{bad}\n')
    with pytest.raises(ConfigError) as info:
        phantoms.load(path)
    msg = str(info.value)
    line = path.read_text().splitlines().index(bad) + 1
    assert f"{path}:{line}: structures[0].shape.{kind}.{key}" in msg


def test_toml_errors_inside_csg_name_the_full_key_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\ndescription = "x"\n\n[[structures]]\nname = "blob"\nmaterial = "liver"\n'
        "[structures.shape]\n"
        'type = "difference"\nbase = { type = "box", center_mm = [0, 0, 0], half_size_mm = [9, 9, 9] }\n'
        "cuts = [\n"
        '  { type = "union", children = [{ type = "torus", center_mm = [0, 0, 0], '
        "major_radii_mm = [10, 8], minor_radius_mm = 9 }] },\n]\n"
    )
    with pytest.raises(ConfigError) as info:
        phantoms.load(path)
    msg = str(info.value)
    assert "structures[0].shape.difference.cuts[0].union.children[0].torus.minor_radius_mm" in msg
    assert "must be smaller than the smallest of major_radii_mm [10.0, 8.0]" in msg
