"""Test and QA objects: Shepp-Logan (3D, 2D) with MR values, water cylinder, CT QA phantom."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medphys import materials, phantoms

# Gach, Tanase and Boada (2008): T1 = A * B0^C (s), T2 (s), PD per tissue class
GACH = {
    "marrow": (0.533, 0.088, 0.05, 0.12),
    "grey": (0.857, 0.376, 0.10, 0.745),
    "white": (0.583, 0.382, 0.08, 0.617),
    "tumor": (0.926, 0.217, 0.10, 0.95),
}
CLASS = {
    "skull": "marrow",
    "brain": "grey",
    "ellipsoid_e": "white",
    "ellipse_e": "white",
    "ellipsoid_f": "tumor",
    "ellipse_f": "tumor",
}


@pytest.mark.parametrize("name", ["shepp-logan-3d", "shepp-logan-2d"])
def test_shepp_logan_mr_values_follow_gach_2008_at_1p5_t(name):
    ph = phantoms.load(name)
    assert len(ph.structure_names) == 10
    for struct, mr in zip(ph.structure_names, ph.mr, strict=True):
        assert mr is not None, struct
        if struct.startswith("ventricle"):
            assert (mr.t1_s, mr.t2_s, mr.pd) == (4.2, 1.99, 0.98)  # CSF
        if struct in CLASS:
            a, c, t2, pd = GACH[CLASS[struct]]
            assert mr.t1_s == pytest.approx(a * 1.5**c, abs=1e-4)
            assert (mr.t2_s, mr.pd) == (t2, pd)


def test_shepp_logan_3d_region_volumes():
    """Kak-Slaney geometry: the skull shell is |a| - |b| (b inside a); ventricles are inside b."""
    ph = phantoms.load("shepp-logan-3d")
    sp = 2.0
    lv = phantoms.voxelize(ph, shape=(72, 96, 92), spacing_mm=sp, supersample=2)
    vol = np.asarray(lv.fractions).reshape(11, -1).sum(1) * sp**3
    a = 4 / 3 * math.pi * 69 * 92 * 90
    b = 4 / 3 * math.pi * 66.24 * 87.4 * 88
    assert vol[lv.structure("skull").label] == pytest.approx(a - b, rel=0.02)
    c = 4 / 3 * math.pi * 41 * 16 * 21
    assert vol[lv.structure("ventricle_right").label] == pytest.approx(c, rel=0.03)
    present = set(np.unique(np.asarray(lv.labels)).tolist())
    assert all(s.label in present for s in lv.structures)
    # the tilted ventricles: patient right (+x) one is the larger, rotated by 108 degrees
    idx = np.argwhere(np.asarray(lv.labels) == lv.structure("ventricle_right").label)
    assert (np.asarray(lv.affine) @ np.append(idx.mean(0), 1))[0] < 0


def test_shepp_logan_2d_is_one_slice():
    ph = phantoms.load("shepp-logan-2d")
    lv = phantoms.voxelize(ph, shape=(256, 256, 1), spacing_mm=0.8, supersample=2)
    present = set(np.unique(np.asarray(lv.labels)).tolist())
    assert all(s.label in present for s in lv.structures)  # every ellipse, even the 2.3 mm ones
    frac = np.asarray(lv.fractions)
    area = frac[lv.structure("skull").label].sum() * 0.8**2
    assert area == pytest.approx(math.pi * (69 * 92 - 66.24 * 87.4), rel=0.02)  # b inside a


def test_water_cylinder_volume():
    ph = phantoms.load("water-cylinder")
    assert float(ph.shapes[0].volume_mm3()) == pytest.approx(math.pi * 150**2 * 200)
    lv = phantoms.voxelize(ph, shape=(80, 80, 56), spacing_mm=4.0, supersample=2)
    v = np.asarray(lv.fractions)[1].sum() * 64.0
    assert v == pytest.approx(math.pi * 150**2 * 200, rel=0.01)


def test_ct_qa_modules():
    ph = phantoms.load("ct-qa")
    # inserts: the materials span air to aluminium
    inserts = [m for n, m in zip(ph.structure_names, ph.materials, strict=True) if "insert" in n]
    dens = sorted(materials.get(m).density_g_cm3 for m in inserts)
    assert len(inserts) == 8 and dens[0] < 0.01 and dens[-1] > 2.5
    # low contrast: iodine mixtures of water
    lc = [m for n, m in zip(ph.structure_names, ph.materials, strict=True) if "low_contrast" in n]
    assert lc == ["water+iodine_0.5mg_ml", "water+iodine_1mg_ml", "water+iodine_2mg_ml"]
    # line pairs: at 0.1 mm sampling every group shows 4 separate rods along its spoke
    for f in range(1, 7):
        w = 10.0 / (2 * f)
        a = math.radians(90 - 60 * (f - 1))
        r = np.linspace(25, 30 + 8 * w + 5, 2000)
        pts = np.stack([r * math.cos(a), r * math.sin(a), np.zeros_like(r)], axis=1)
        shape = ph.shapes[ph.structure_names.index(f"line_pairs_{f}")]
        inside = np.asarray(shape.level(pts)) <= 0
        rods = np.count_nonzero(np.diff(inside.astype(int)) == 1)
        assert rods == 4, f
        assert np.mean(inside[(r > 30 - w / 2) & (r < 30 + 7.5 * w)]) == pytest.approx(
            0.5, abs=0.02
        )
    lv = phantoms.voxelize(ph, shape=(208, 208, 3), spacing_mm=1.0, center_mm=(0.0, 0.0, 40.0))
    present = set(np.unique(np.asarray(lv.labels)).tolist())
    for s in lv.structures:
        if "insert" in s.name or s.name == "body":
            assert s.label in present, s.name
