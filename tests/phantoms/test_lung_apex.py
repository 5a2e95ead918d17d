"""The lung apices of the adult torsos: domes in the root of the neck, not flat tops.

Anatomy checked (Moore, Dalley and Agur, Clinically Oriented Anatomy, 7th ed., thorax): the apex
(cupola) rises 2-3 cm above the medial third of the clavicle through the thoracic inlet, inside
the first rib, highest posteriorly (the first rib slopes down anteriorly), under soft tissue of the
root of the neck. Everything is measured on a 2 mm voxel grid of the upper chest (voxel centres,
RAS+ mm: +x patient right, +y anterior, +z superior).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage

from medphys import materials, phantoms

SPACING = 2.0
SIDES = (("lung_right", 1.0), ("lung_left", -1.0))
CASES = [(sex, lung, side) for sex in ("male", "female") for lung, side in SIDES]
IDS = [f"{sex}-{lung}" for sex, lung, _ in CASES]


@functools.cache
def _chest(sex: str):
    """Labels and voxel-centre coordinates of the chest, shoulders and neck (x, y, z in mm);
    shared with `test_chest_wall` (one voxelization per sex)."""
    ph = phantoms.load(f"adult-{sex}")
    lv = phantoms.voxelize(
        ph,
        shape=(210, 130, 150),  # 420 x 260 x 300 mm: z from 20 to 320 mm
        spacing_mm=SPACING,
        center_mm=(0.0, -5.0, 170.0),
        supersample=1,
        fractions=phantoms.Fractions.NONE,
    )
    labels = np.asarray(lv.labels)
    affine = np.asarray(lv.affine)
    axes = tuple(affine[i, 3] + affine[i, i] * np.arange(labels.shape[i]) for i in range(3))
    return lv, labels, axes


def _lung(sex: str, lung: str):
    """Lung mask, its voxel indices, the index of its top slice and the top (4 mm) voxels."""
    lv, labels, _ = _chest(sex)
    mask = labels == lv.structure(lung).label
    idx = np.argwhere(mask)
    top = int(idx[:, 2].max())
    assert top < labels.shape[2] - 10, "the grid must reach above the apex"
    return mask, idx, top, idx[idx[:, 2] >= top - 1]


@pytest.mark.parametrize(("sex", "lung", "side"), CASES, ids=IDS)
def test_apex_rises_20_to_30_mm_above_the_medial_third_of_the_clavicle(sex, lung, side):
    lv, labels, (xs, ys, zs) = _chest(sex)
    _, _, top, apex = _lung(sex, lung)
    clavicle = np.argwhere(
        (labels == lv.structure("clavicles").label) & (xs * side > 0)[:, None, None]
    )
    cx = xs[clavicle[:, 0]] * side  # distance from the midline
    medial = cx <= cx.min() + (cx.max() - cx.min()) / 3
    clavicle_top = zs[clavicle[medial, 2]].max()
    assert 20.0 <= zs[top] - clavicle_top <= 30.0, (zs[top], clavicle_top)
    # the apex sits behind the medial third of the clavicle
    ax = xs[apex[:, 0]].mean() * side
    assert cx[medial].min() <= ax <= cx[medial].max()
    assert ys[apex[:, 1]].mean() < ys[clavicle[medial, 1]].min()


@pytest.mark.parametrize(("sex", "lung", "side"), CASES, ids=IDS)
def test_apex_is_a_dome(sex, lung, side):
    _, _, (xs, _, _) = _chest(sex)
    mask, idx, top, apex = _lung(sex, lung)
    # axial cross-section shrinks at every 2 mm step over the top 30 mm
    areas = mask[:, :, top - 15 : top + 1].sum(axis=(0, 1))
    assert np.all(np.diff(areas) < 0), areas
    # the topmost voxels form a small cap (a flat top spreads over ~1/3 of the lung's width) ...
    width = np.ptp(xs[idx[:, 0]])
    assert np.ptp(xs[apex[:, 0]]) <= 0.2 * width
    # ... that sits inside the top 30 mm of the lung, not at one of its edges
    slab = xs[idx[idx[:, 2] >= top - 15, 0]]
    where = (xs[apex[:, 0]].mean() - slab.min()) / np.ptp(slab)
    assert 0.25 <= where <= 0.75, where


@pytest.mark.parametrize(("sex", "lung", "side"), CASES, ids=IDS)
def test_apex_is_posterior(sex, lung, side):
    """The first rib slopes down anteriorly: the top of the lung lies behind its centre."""
    _, _, (_, ys, _) = _chest(sex)
    _, idx, _, apex = _lung(sex, lung)
    assert ys[apex[:, 1]].mean() < ys[idx[:, 1]].mean() - 5.0


@pytest.mark.parametrize(("sex", "lung", "side"), CASES, ids=IDS)
def test_apex_lies_under_soft_tissue_inside_the_body(sex, lung, side):
    lv, labels, _ = _chest(sex)
    mask, idx, top, _ = _lung(sex, lung)
    soft = np.zeros(labels.max() + 1, bool)
    for s in lv.structures:
        if s.label and s.material != "lung":
            soft[s.label] = 0.9 <= materials.get(s.material).density_g_cm3 <= 1.1
    # every lung voxel of the top 30 mm is at least 5 mm inside the body surface
    depth = ndimage.distance_transform_edt(labels != 0, sampling=SPACING)
    upper = idx[idx[:, 2] >= top - 15]
    assert depth[tuple(upper.T)].min() >= 5.0
    # and the 6 mm above the top of every lung column of the apex (top 10 mm) are soft tissue
    columns = np.argwhere(mask[:, :, top - 5 :].any(axis=2))
    for i, j in columns:
        k = np.flatnonzero(mask[i, j]).max()
        assert soft[labels[i, j, k + 1 : k + 4]].all(), (i, j, labels[i, j, k + 1 : k + 4])


@pytest.mark.parametrize(("sex", "lung", "side"), CASES, ids=IDS)
def test_upper_lung_stays_inside_the_rib_cage(sex, lung, side):
    """From 60 mm to 16 mm below the apex, in every axial slice that cuts a rib on this side,
    the lung reaches no farther from the midline than the ribs (the first ribs wrap the apex;
    only the cupola rises above the first rib into the neck)."""
    lv, labels, (xs, _, zs) = _chest(sex)
    mask, _, top, _ = _lung(sex, lung)
    ribs = (labels == lv.structure("ribs").label) & (xs * side > 0)[:, None, None]
    checked = 0
    for k in range(top - 30, top - 7):
        rib_x = np.flatnonzero(ribs[:, :, k].any(axis=1))
        lung_x = np.flatnonzero(mask[:, :, k].any(axis=1))
        if rib_x.size and lung_x.size:
            assert (xs[lung_x] * side).max() <= (xs[rib_x] * side).max(), zs[k]
            checked += 1
    assert checked == 23
