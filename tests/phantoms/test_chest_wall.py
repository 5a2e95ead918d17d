"""The chest wall of the adult torsos: shoulders over the clavicles, muscle over the scapulae,
ribs inside the muscle layer and lungs inside the ribs.

Anatomy checked (Moore, Dalley and Agur, Clinically Oriented Anatomy, 7th ed., thorax and upper
limb): the clavicle lies under skin, subcutaneous fat and platysma, below the soft tissue of the
shoulder (trapezius, deltoid) up to the acromion; the scapula lies on the posterolateral ribs 2-7
under trapezius and infraspinatus; the ribs are joined by the intercostal muscles and covered by
serratus anterior, latissimus dorsi and the back muscles; the lungs lie inside the ribs.
Everything is measured on a 2 mm voxel grid of the chest (voxel centres, RAS+ mm: +x patient
right, +y anterior, +z superior).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from test_lung_apex import _chest as _shared_chest

from medphys import phantoms

SPACING = 2.0
SEXES = ("male", "female")


def _chest(sex: str):
    """The phantom and `test_lung_apex`'s shared 2 mm chest grid (labels, voxel-centre axes)."""
    lv, labels, axes = _shared_chest(sex)
    return phantoms.load(f"adult-{sex}"), lv, labels, axes


def _mask(lv, labels, *names):
    return np.isin(labels, [lv.structure(n).label for n in names])


@pytest.mark.parametrize("sex", SEXES)
def test_shoulders_cover_the_clavicles_with_8_mm_of_soft_tissue(sex):
    _, lv, labels, (xs, _, _) = _chest(sex)
    clavicle = _mask(lv, labels, "clavicles")
    body = labels != 0
    columns = np.argwhere(clavicle.any(axis=2))
    assert np.ptp(xs[columns[:, 0]]) > 250  # both clavicles, sternal to acromial end
    depth = []
    for i, j in columns:
        top = np.flatnonzero(clavicle[i, j]).max()
        above = body[i, j, top + 1 :]
        assert not above.all(), "the grid must reach above the shoulders"
        depth.append(np.argmin(above) * SPACING)  # soft tissue up to the first air voxel
    assert min(depth) >= 8.0, min(depth)


@pytest.mark.parametrize("sex", SEXES)
def test_scapulae_lie_under_muscle_and_fat(sex):
    """Behind every point of each scapula: at least 10 mm of muscle and fat, some of it muscle."""
    _, lv, labels, (xs, _, _) = _chest(sex)
    scapula = _mask(lv, labels, "scapulae")
    muscle = _mask(lv, labels, "muscle")
    cover = _mask(lv, labels, "muscle", "subcutaneous_fat")
    columns = np.argwhere(scapula.any(axis=1))
    assert (xs[columns[:, 0]] > 0).any() and (xs[columns[:, 0]] < 0).any()
    for i, k in columns:
        back = np.flatnonzero(scapula[i, :, k]).min()  # posterior surface of the blade
        assert cover[i, :back, k].sum() * SPACING >= 10.0, (xs[i], k)
        assert muscle[i, :back, k].sum() * SPACING >= 4.0, (xs[i], k)


@pytest.mark.parametrize("sex", SEXES)
def test_ribs_lie_inside_the_muscle_layer(sex):
    """Every rib voxel centre is inside the muscle solid (muscle or deeper), and the lateral
    ribs (6-8) keep a layer of muscle outside them."""
    ph, lv, labels, (xs, ys, zs) = _chest(sex)
    idx = np.argwhere(_mask(lv, labels, "ribs"))
    points = np.stack([xs[idx[:, 0]], ys[idx[:, 1]], zs[idx[:, 2]]], axis=-1)
    level = np.asarray(ph.shape_of("muscle").level(points))
    assert level.max() <= 0.0, points[np.argmax(level)]
    outer = _mask(lv, labels, "skin", "subcutaneous_fat") | (labels == 0)
    depth = ndimage.distance_transform_edt(~outer, sampling=SPACING)
    lateral = (np.abs(points[:, 0]) > 100) & (points[:, 2] < 110) & (np.abs(points[:, 1]) < 40)
    assert lateral.sum() > 100
    assert depth[tuple(idx[lateral].T)].min() >= 4.0


@pytest.mark.parametrize("sex", SEXES)
def test_lungs_lie_inside_the_chest_wall(sex):
    """No lung voxel within 10 mm of the subcutaneous fat (15 mm at the back, z 50-110 mm)."""
    _, lv, labels, (_, ys, zs) = _chest(sex)
    outer = _mask(lv, labels, "skin", "subcutaneous_fat") | (labels == 0)
    depth = ndimage.distance_transform_edt(~outer, sampling=SPACING)
    lungs = _mask(lv, labels, "lung_left", "lung_right")
    assert depth[lungs].min() >= 10.0
    back = lungs & (ys < -40)[None, :, None] & ((zs >= 50) & (zs <= 110))[None, None, :]
    assert back.sum() > 1000
    assert depth[back].min() >= 15.0


@pytest.mark.parametrize("sex", SEXES)
def test_lungs_lie_inside_the_ribs_at_the_back(sex):
    """Outward from each posterior rib (radially from the thoracic axis, in its axial slice,
    2-20 mm out), there is no lung: the posterior lung stays inside the rib cage."""
    _, lv, labels, (xs, ys, zs) = _chest(sex)
    lungs = _mask(lv, labels, "lung_left", "lung_right")
    idx = np.argwhere(_mask(lv, labels, "ribs"))
    x, y, z = xs[idx[:, 0]], ys[idx[:, 1]], zs[idx[:, 2]]
    keep = (y < -40) & (z >= 30) & (z <= 130)
    idx, x, y = idx[keep], x[keep], y[keep]
    assert len(idx) > 1000
    axis_y = -4.0  # centre of the rib rings
    r = np.hypot(x, y - axis_y)
    ux, uy = x / r, (y - axis_y) / r
    outside = np.zeros(len(idx), bool)
    for d in np.arange(2.0, 21.0, 1.0):
        i = np.clip(np.round((x + d * ux - xs[0]) / SPACING).astype(int), 0, len(xs) - 1)
        j = np.clip(np.round((y + d * uy - ys[0]) / SPACING).astype(int), 0, len(ys) - 1)
        outside |= lungs[i, j, idx[:, 2]]
    assert not outside.any(), np.stack([x, y], axis=-1)[outside][:5]
