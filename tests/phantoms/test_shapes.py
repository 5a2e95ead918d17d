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
    Cone,
    Difference,
    Ellipsoid,
    HalfSpace,
    Intersection,
    Rods,
    SmoothUnion,
    Spheres,
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
    ph = phantoms.Phantom.create(
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
    "cone": Cone(_a(1.0, -2.0, 0.5), _a(12.0, 4.0), _a(15.0), ROT),
    "spheres": Spheres(
        jnp.asarray([[-10.0, 0.0, 0.0], [8.0, 3.0, 1.0], [0.0, -12.0, 4.0]]), _a(6.0, 4.0, 5.0)
    ),
    "rods": Rods(jnp.asarray([[-9.0, 0.0, 0.0], [7.0, 4.0, 2.0]]), _a(5.0, 3.0), _a(12.0)),
    "clipped": Intersection(
        (
            Ellipsoid(_a(0.0, 0.0, 0.0), _a(20.0, 15.0, 12.0), ROT),
            HalfSpace(_a(0.3, 0.2, 1.0), _a(4.0)),
        )
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
    if hasattr(shape, "volume_mm3") and name not in ("tube", "rods"):
        assert float(big.volume_mm3()) == pytest.approx(1.3**3 * float(shape.volume_mm3()))


def _cone_brute(cone, pts):
    """Distance to a dense sampling of the frustum's surface, and the inside test, in the local
    frame (independent of `Cone.level`)."""
    r = np.asarray(phantoms._shapes._rotation(cone.rotation_rad))
    q = (pts - np.asarray(cone.center_mm)) @ r
    h, (r0, r1) = float(cone.half_length_mm), np.asarray(cone.radii_mm)
    th = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    t = np.linspace(0, 1, 201)[:, None]
    rad = r0 + (r1 - r0) * t
    side = np.stack([rad * np.cos(th), rad * np.sin(th), (-h + 2 * h * t) * np.ones_like(th)], -1)
    rho = np.linspace(0, 1, 81)[:, None]
    caps = [
        np.stack([rr * rho * np.cos(th), rr * rho * np.sin(th), z * np.ones_like(rho * th)], -1)
        for rr, z in ((r0, -h), (r1, h))
    ]
    surf = np.concatenate([side.reshape(-1, 3), *(c.reshape(-1, 3) for c in caps)])
    d = np.array([np.min(np.linalg.norm(surf - p, axis=1)) for p in q])
    rq = np.hypot(q[:, 0], q[:, 1])
    inside = (np.abs(q[:, 2]) <= h) & (rq <= r0 + (r1 - r0) * (q[:, 2] + h) / (2 * h))
    return d, inside


def test_cone_level_is_the_signed_distance():
    cone = SHAPES["cone"]
    pts = np.random.default_rng(3).uniform(-25, 25, size=(150, 3))
    d, inside = _cone_brute(cone, pts)
    level = np.asarray(cone.level(jnp.asarray(pts)))
    np.testing.assert_array_equal(level <= 0, inside)
    # within the sampling's resolution (1 degree at 12 mm: 0.1 mm)
    np.testing.assert_allclose(np.abs(level), d, atol=0.11)
    # pointed cone (r1 = 0) and volume pi L (r0^2 + r0 r1 + r1^2) / 3 against a voxel count
    pointed = Cone(ZERO, _a(8.0, 0.0), _a(10.0), ROT)
    assert float(pointed.volume_mm3()) == pytest.approx(math.pi * 20 * 64 / 3)
    assert _volume(pointed, (-13.5, -13.5, -13.5), (13.5, 13.5, 13.5), 0.3) == pytest.approx(
        math.pi * 20 * 64 / 3, rel=0.01
    )
    assert _volume(cone, (-23, -23, -23), (23, 23, 23), 0.5) == pytest.approx(
        float(cone.volume_mm3()), rel=0.01
    )


def test_half_space_clips_a_ball_into_a_closed_form_cap():
    ball = Ellipsoid(_a(2.0, -1.0, 3.0), _a(10.0, 10.0, 10.0), ZERO)
    n = np.array([1.0, 2.0, -2.0]) / 3.0
    t = 4.0  # plane 4 mm beyond the ball's centre along n; keep n . p <= d
    plane = HalfSpace(jnp.asarray(3.0 * n), jnp.asarray(float(n @ [2.0, -1.0, 3.0]) + t))
    pts = jnp.asarray(np.random.default_rng(4).uniform(-20, 20, size=(500, 3)))
    # exact signed distance (a non-unit normal is normalised)
    np.testing.assert_allclose(plane.level(pts), np.asarray(pts) @ n - float(plane.offset_mm))
    clipped = Intersection((ball, plane))
    cap_h = 10.0 - t
    closed = 4 / 3 * math.pi * 1000 - math.pi * cap_h**2 * (30.0 - cap_h) / 3
    assert _volume(clipped, (-9, -12, -8), (13, 10, 14), 0.25) == pytest.approx(closed, rel=0.005)
    # anisotropic scaling maps the half-space exactly (sign of every mapped point kept)
    factor, about = _a(1.5, 0.7, 1.2), _a(3.0, -2.0, 1.0)
    big = plane.scaled(factor, about)
    mapped = about[None, :] + (pts - about[None, :]) * factor[None, :]
    np.testing.assert_array_equal(
        np.asarray(big.level(mapped)) <= 0, np.asarray(plane.level(pts)) <= 0
    )
    assert float(jnp.linalg.norm(big.normal)) == pytest.approx(1.0)


def test_sphere_and_rod_clusters_match_brute_force():
    pts = np.random.default_rng(5).uniform(-25, 25, size=(4000, 3))
    balls = SHAPES["spheres"]
    c, r = np.asarray(balls.centers_mm), np.asarray(balls.radii_mm)
    dist = np.linalg.norm(pts[:, None, :] - c[None], axis=-1) - r[None]
    level = np.asarray(balls.level(jnp.asarray(pts)))
    np.testing.assert_array_equal(level <= 0, (dist <= 0).any(1))
    np.testing.assert_allclose(level, dist.min(1), atol=1e-9)
    assert _volume(balls, (-17, -18, -6), (15, 10, 10), 0.3) == pytest.approx(
        float(balls.volume_mm3()), rel=0.01
    )
    rods = SHAPES["rods"]
    c, r = np.asarray(rods.centers_mm), np.asarray(rods.radii_mm)
    inside = (np.hypot(pts[:, None, 0] - c[None, :, 0], pts[:, None, 1] - c[None, :, 1]) <= r) & (
        np.abs(pts[:, None, 2] - c[None, :, 2]) <= 12.0
    )
    level = np.asarray(rods.level(jnp.asarray(pts)))
    np.testing.assert_array_equal(level <= 0, inside.any(1))
    # outside a rod's end, the distance to its rim circle (exact capped cylinder)
    p = jnp.asarray([[-9.0 + 5.0 + 3.0, 0.0, 12.0 + 4.0]])
    assert float(rods.level(p)[0]) == pytest.approx(5.0, abs=1e-6)
    assert _volume(rods, (-15, -5, -13), (11, 8, 15), 0.3) == pytest.approx(
        math.pi * (25 + 9) * 24, rel=0.01
    )
    # jit compiles one loop, not one term per ball: the same result under jit
    np.testing.assert_allclose(
        jax.jit(balls.level)(jnp.asarray(pts)), balls.level(jnp.asarray(pts))
    )


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
    "cone": ("center_mm = [0, 0, 0]\nhalf_length_mm = 5", "radii_mm = [0, 0]"),
    "spheres": ("centers_mm = [[0, 0, 0], [5, 0, 0]]", "radius_mm = [1, 2, 3]"),
    "rods": ("centers_mm = [[0, 0, 0]]\nradius_mm = 2", "half_length_mm = 0"),
    "half_space": ("offset_mm = 3", "normal = [0, 0, 0]"),
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


def test_half_space_alone_is_an_unbounded_structure(tmp_path):
    path = tmp_path / "mine.toml"
    head = 'name = "mine"\ndescription = "x"\n\n[[structures]]\nname = "blob"\nmaterial = "liver"\n'
    path.write_text(head + 'shape = { type = "half_space", normal = [0, 0, 1], offset_mm = 3 }\n')
    with pytest.raises(ConfigError, match=r"mine.toml:7: structures\[0\]\.shape: is unbounded"):
        phantoms.load(path)
    # clipping a bounded shape is fine, and so is a half-space among a difference's cuts
    path.write_text(
        head + '[structures.shape]\ntype = "intersection"\nchildren = [\n'
        '  { type = "ellipsoid", center_mm = [0, 0, 0], semi_axes_mm = [5, 5, 5] },\n'
        '  { type = "half_space", normal = [0, 0, 1], offset_mm = 3 },\n]\n'
    )
    shape = phantoms.load(path).shapes[0]
    assert isinstance(shape.children[1], HalfSpace)
    assert float(shape.level(jnp.asarray([0.0, 0.0, 4.0]))) == pytest.approx(1.0)
