"""FORBILD head phantoms: the 2D slice against the published table, clipped areas in closed
form, the 3D definition's axes and its z = 0 slice against the 2D phantom."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from medphys import phantoms
from medphys.phantoms._shapes import _rotation

# Yu, Noo et al. (2012), Phys. Med. Biol. 57 N237, table 1 (cm): centre x, y, semi-axes a, b,
# rotation (degrees), density added inside, and clip lines (d, psi) keeping the points with
# (cos psi, sin psi) . (p - centre) < d. Right ear and air cells included; no resolution pattern.
Y16B, A16B, B16B = -14.294530834372887, 0.443194085308632, 3.892760834372886
TABLE = [
    (-4.7, 4.3, 1.79989, 1.79989, 0.0, 0.010, []),  # 1 eye
    (4.7, 4.3, 1.79989, 1.79989, 0.0, 0.010, []),  # 2 eye
    (-1.08, -9.0, 0.4, 0.4, 0.0, 0.0025, []),  # 3 lesion
    (1.08, -9.0, 0.4, 0.4, 0.0, -0.0025, []),  # 4 lesion
    (0.0, 0.0, 9.6, 12.0, 0.0, 1.8, []),  # 5 skull
    (0.0, 8.4, 1.8, 3.0, 0.0, -1.05, []),  # 7 sinus
    (1.9, 5.4, 0.41633, 1.17425, -31.07698, 0.75, []),  # 8
    (-1.9, 5.4, 0.41633, 1.17425, 31.07698, 0.75, []),  # 9
    (-4.3, 6.8, 1.8, 0.24, -30.0, 0.75, []),  # 10
    (4.3, 6.8, 1.8, 0.24, 30.0, 0.75, []),  # 11
    (0.0, -3.6, 1.8, 3.6, 0.0, -0.005, []),  # 12 ventricle
    (6.39395, -6.39395, 1.2, 0.42, 58.1, 0.005, []),  # 13 hematoma
    (0.0, 3.6, 2.0, 2.0, 0.0, 0.75, [(1.2, 0), (1.2, 180), (0.27884, 90), (0.27884, 270)]),  # 14
    (0.0, 9.6, 1.8, 3.0, 0.0, 1.8, [(0.60687, 90), (0.60687, 270), (0.2, 0), (0.2, 180)]),  # 15
    (0.0, 0.0, 9.0, 11.4, 0.0, 0.75, [(-2.605, 15), (-2.605, 165), (-10.71177, 90)]),  # 16a
    (0.0, Y16B, A16B, B16B, 0.0, 0.75, [(Y16B + 10.71177, 270)]),  # 16b
    (0.0, 0.0, 9.0, 11.4, 0.0, -0.75, [(8.88740, 0)]),  # 6 brain
    (9.1, 0.0, 4.2, 1.8, 0.0, 0.75, [(-0.21260, 0)]),  # right ear
]


def _cells_2d():
    """The 53 air cells of the right ear (cm): rows 0.2 sqrt(3) apart, cells 0.4 apart."""
    first = {0: 5.6, 1: 5.8, 2: 6.0, 3: 6.6}
    out = []
    for j in range(-3, 4):
        start = 8.8 if j % 2 == 0 else 8.6
        n = round((start - first[abs(j)]) / 0.4) + 1
        out += [(start - 0.4 * i, j * 0.2 * math.sqrt(3.0)) for i in range(n)]
    return out


def _reference_density(x_cm, y_cm):
    """The published phantom: densities of the table's clipped ellipses added up."""
    rows = TABLE + [(cx, cy, 0.15, 0.15, 0.0, -1.8, []) for cx, cy in _cells_2d()]
    f = np.zeros_like(x_cm)
    for cx, cy, a, b, phi, rho, clips in rows:
        dx, dy = x_cm - cx, y_cm - cy
        c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
        u, v = c * dx + s * dy, -s * dx + c * dy
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        for d, psi in clips:
            inside &= math.cos(math.radians(psi)) * dx + math.sin(math.radians(psi)) * dy < d
        f += np.where(inside, rho, 0.0)
    return f


# the density class of each structure's region (the table's sums)
DENSITY = {
    "background": 0.0,
    "skull": 1.8,
    "brain": 1.05,
    "occipital_crest": 1.8,
    "ventricle": 1.045,
    "frontal_sinus": 0.0,
    "eye_right": 1.06,
    "eye_left": 1.06,
    "lesion_hyperdense": 1.0525,
    "lesion_hypodense": 1.0475,
    "bone_plate": 1.8,
    "sinus_septum": 1.8,
    "sinus_floor_right": 1.8,
    "sinus_floor_left": 1.8,
    "orbit_bone_right": 1.8,
    "orbit_bone_left": 1.8,
    "hematoma": 1.055,
    "inner_ear": 1.8,
    "ear_cavities": 0.0,
}


@pytest.fixture(scope="module")
def slice_2d():
    ph = phantoms.load("forbild-head-2d")
    return ph, phantoms.voxelize(ph, shape=(256, 256, 1), spacing_mm=1.0, supersample=2)


def test_2d_slice_matches_the_published_table(slice_2d):
    ph, lv = slice_2d
    assert set(DENSITY) == {"background", *ph.structure_names}
    affine = np.asarray(lv.affine)
    # the voxelizer's 2 x 2 sample points per pixel (supersample 2; the slice is z = 0)
    sub = (np.arange(512) + 0.5) / 2 - 0.5
    gx, gy = np.meshgrid(sub, sub, indexing="ij")
    ref = _reference_density(
        (affine[0, 0] * gx + affine[0, 3]) / 10.0, (affine[1, 1] * gy + affine[1, 3]) / 10.0
    )
    # every sample of the sum is one of the published density classes
    classes = np.array(sorted(set(DENSITY.values())))
    which = np.abs(ref[..., None] - classes).argmin(-1)
    assert np.abs(ref - classes[which]).max() < 1e-9
    votes = np.stack(
        [(which == c).reshape(256, 2, 256, 2).sum((1, 3)) for c in range(len(classes))]
    )
    table = np.array([DENSITY[n] for n in lv.names])
    ours = np.abs(table[np.asarray(lv.labels)[..., 0]][None] - classes[:, None, None]).argmin(0)
    # a pixel agrees when our class has the most votes (ties: any of the tied classes)
    agree = np.mean(np.take_along_axis(votes, ours[None], 0)[0] == votes.max(0))
    assert agree > 0.995, agree
    exact = np.mean(votes.max(0) == 4)  # pixels without an edge
    assert exact > 0.95
    world = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1).reshape(-1, 2)
    world = world * np.diag(affine)[:2] + affine[:2, 3]
    # every structure is present, even the 3 mm air cells and the 8 mm lesions
    present = set(np.unique(np.asarray(lv.labels)).tolist())
    assert all(s.label in present for s in lv.structures)
    # the low-contrast lesions sit where the table puts them (their centroids, within 0.5 mm)
    for name, x_mm in (("lesion_hyperdense", -10.8), ("lesion_hypodense", 10.8)):
        pts = world[np.asarray(lv.labels).reshape(-1) == lv.structure(name).label]
        np.testing.assert_allclose(pts.mean(0), [x_mm, -90.0], atol=0.5)


def _ellipse_left_of(a, b, t):
    """Area of the part u <= t of the ellipse (u/a)^2 + (v/b)^2 <= 1."""
    s = t / a
    return a * b * (math.pi / 2 + math.asin(s) + s * math.sqrt(1 - s * s))


def _crest_area_mm2():
    """Objects 16a + 16b: the brain ellipse inside the V below y = -10.71177 cm, plus the top of
    ellipse 16b above it (integrated over y from the half-widths)."""
    c15 = math.cos(math.radians(15))

    def width_a(y):  # half-width of 16a at height y (cm)
        v = (-2.605 - y * math.sin(math.radians(15))) / c15
        e = 9.0 * math.sqrt(max(0.0, 1 - (y / 11.4) ** 2))
        return 2 * max(0.0, min(v, e))

    def width_b(y):
        return 2 * A16B * math.sqrt(max(0.0, 1 - ((y - Y16B) / B16B) ** 2))

    lower = quad(width_a, -11.4, -10.71177, limit=200)[0]
    upper = quad(width_b, -10.71177, Y16B + B16B, limit=200)[0]
    return 100.0 * (lower + upper)


def test_clipped_shapes_have_their_closed_form_areas(slice_2d):
    ph, _lv = slice_2d
    expected = {  # name: (closed-form area in mm^2, bounding box x0, x1, y0, y1 in mm)
        # ellipse 90 x 114 mm left of x = 88.874 mm
        "brain": (_ellipse_left_of(90.0, 114.0, 88.874), (-91, 91, -115, 115)),
        # ellipse 42 x 18 mm around x = 91 mm, left of x = 88.874 mm
        "inner_ear": (_ellipse_left_of(42.0, 18.0, 88.874 - 91.0), (48, 90, -19, 19)),
        # rectangles (the circle / ellipse does not reach the clip lines' corners)
        "bone_plate": (24.0 * 2 * 2.7884, (-13, 13, 32, 40)),
        "sinus_septum": (4.0 * 2 * 6.0687, (-3, 3, 89, 103)),
        "occipital_crest": (_crest_area_mm2(), (-10, 10, -115, -103)),
    }
    for name, (area, (x0, x1, y0, y1)) in expected.items():
        h = 0.1 if name == "brain" else 0.02  # mm: grid of the area measurement at z = 0
        gx, gy = np.meshgrid(np.arange(x0 + h / 2, x1, h), np.arange(y0 + h / 2, y1, h))
        pts = jnp.asarray(np.stack([gx, gy, np.zeros_like(gx)], -1).reshape(-1, 3))
        measured = float(jnp.sum(jax.jit(ph.shape_of(name).level)(pts) <= 0)) * h * h
        tol = 0.001 if area > 1000 else 0.005
        assert measured == pytest.approx(area, rel=tol), name


def test_2d_voxelizer_agrees_with_brute_force_sampling(slice_2d):
    """The new shapes honour the voxelizer's distance contract: its two passes give the labels
    of every shape evaluated at every sample point."""
    ph, lv = slice_2d
    affine = np.asarray(lv.affine)
    sub = (np.arange(512) + 0.5) / 2 - 0.5
    gx, gy, gz = np.meshgrid(sub, sub, [-0.25, 0.25], indexing="ij")
    idx = np.stack([gx, gy, gz], -1)
    pts = jnp.asarray(idx @ affine[:3, :3].T + affine[:3, 3], jnp.float32)

    @jax.jit
    def paint(p):
        lab = jnp.zeros(p.shape[:-1], jnp.int32)
        for s, sh in enumerate(ph.shapes):
            lab = jnp.where(sh.level(p) <= 0, s + 1, lab)
        return lab

    lab = np.asarray(paint(pts)).reshape(256, 2, 256, 2, 2)
    n = len(ph.shapes) + 1
    frac = np.stack([(lab == s).mean((1, 3, 4)) for s in range(n)])
    brute = np.argmax(frac + np.arange(n)[:, None, None] * 1e-6, axis=0)
    np.testing.assert_array_equal(np.asarray(lv.labels)[..., 0], brute)
    np.testing.assert_allclose(np.asarray(lv.fractions)[..., 0], frac, atol=1e-6)


def test_3d_free_axes_are_the_published_ones():
    ph = phantoms.load("forbild-head")
    c15, s15 = math.cos(math.radians(15)), math.sin(math.radians(15))
    c30, s30 = math.cos(math.radians(30)), math.sin(math.radians(30))
    c120 = math.cos(math.radians(120))
    cases = {
        # name: {local axis index: published direction}
        "sinus_floor_left": {
            0: (c15 * c120, math.sin(math.radians(120)), -s15 * c120),
            2: (s15, 0.0, c15),
        },
        "sinus_floor_right": {
            0: (c15 * 0.5, math.sin(math.radians(60)), s15 * 0.5),
            2: (-s15, 0, c15),
        },
        "bone_plate": {1: (0.0, s30, c30), 2: (0.0, -c30, s30)},
        "sinus_septum": {1: (0.0, -s30, c30), 2: (1.0, 0.0, 0.0)},
        "orbit_bone_left": {0: (-c30, s30, 0.0), 2: (0.0, 0.0, 1.0)},
        "hematoma": {0: (math.cos(math.radians(58.1)), math.sin(math.radians(58.1)), 0.0)},
    }
    for name, axes in cases.items():
        r = np.asarray(_rotation(jnp.asarray(ph.shape_of(name).rotation_rad, jnp.float64)))
        for j, direction in axes.items():
            d = np.asarray(direction) / np.linalg.norm(direction)
            np.testing.assert_allclose(r[:, j], d, atol=1e-5, err_msg=f"{name} axis {j}")
    # the crest cones: radius 5 mm at y = -119 mm, 2 mm at y = -104 mm (published r1, r2, l)
    cone = ph.shape_of("occipital_crest").children[0]
    rim = jnp.asarray([[5.0, -119.0, -2.0], [2.0, -104.0, -2.0], [0.0, -111.5, -2.0]])
    np.testing.assert_allclose(np.asarray(cone.level(rim))[:2], 0.0, atol=1e-4)
    assert float(cone.level(rim)[2]) < -3.0
    assert float(cone.volume_mm3()) == pytest.approx(math.pi * 15.0 / 3.0 * (25 + 10 + 4))
    # 317 air cells in 7 layers
    cells = np.asarray(ph.shape_of("ear_cavities").centers_mm)
    _, counts = np.unique(np.round(cells[:, 2], 3), return_counts=True)
    assert sorted(counts.tolist()) == [36, 36, 46, 46, 50, 50, 53]


def test_3d_slice_is_the_2d_phantom(slice_2d):
    """The 2D phantom is the z = 0 slice of the 3D one (Yu et al. 2012): same materials."""
    _ph2, lv2 = slice_2d
    ph3 = phantoms.load("forbild-head")
    lv3 = phantoms.voxelize(ph3, shape=(256, 256, 1), spacing_mm=1.0, supersample=2)
    m2 = np.array(["air", *phantoms.load("forbild-head-2d").materials])[np.asarray(lv2.labels)]
    m3 = np.array(["air", *ph3.materials])[np.asarray(lv3.labels)]
    agree = np.mean(m2 == m3)
    assert agree > 0.995, agree
    assert ph3.mr == (None,) * len(ph3.structure_names)  # no published MR values
