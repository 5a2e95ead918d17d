"""MR properties of the material library against published ranges and closed forms."""

from __future__ import annotations

import re

import pytest

import medphys.materials as mm

# Published in-vivo ranges at 1.5 T (seconds), spanning the values compiled in the review of
# Bojorquez JZ et al., Magn Reson Imaging 35:69-80 (2017) and the studies it draws on. Written here,
# not read from the package's data file.
T1_RANGES_1_5T = {
    "brain_white_matter": (0.55, 0.90),
    "brain_grey_matter": (0.90, 1.40),
    "csf": (3.0, 5.0),
    "liver": (0.45, 0.70),
    "muscle": (0.85, 1.20),
    "adipose": (0.20, 0.35),
    "blood": (1.30, 1.70),
    "spleen": (0.90, 1.30),
    "kidney": (0.65, 1.30),
}
T2_RANGES_1_5T = {
    "brain_white_matter": (0.060, 0.090),
    "brain_grey_matter": (0.075, 0.110),
    "liver": (0.030, 0.060),
    "muscle": (0.025, 0.050),
    "csf": (1.0, 3.0),
}

# Gadoterate relaxivities, L mmol^-1 s^-1 (Rohrer et al., Invest Radiol 40:715 (2005)), and the
# atomic weight of Gd, g/mol: the closed form 1/T = 1/T0 + r C is recomputed here from these.
GD_R1 = {1.5: 3.6, 3.0: 3.5}
GD_R2 = {1.5: 4.3, 3.0: 4.9}
GD_MOLAR_MASS = 157.25

NO_SIGNAL = {"air", "pmma", "aluminium", "titanium"}


@pytest.mark.parametrize(("name", "bounds"), sorted(T1_RANGES_1_5T.items()))
def test_t1_at_1_5t_inside_published_range(name, bounds):
    lo, hi = bounds
    assert lo <= mm.get(name).mr(1.5).t1_s <= hi


@pytest.mark.parametrize(("name", "bounds"), sorted(T2_RANGES_1_5T.items()))
def test_t2_at_1_5t_inside_published_range(name, bounds):
    lo, hi = bounds
    assert lo <= mm.get(name).mr(1.5).t2_s <= hi


def test_grey_white_csf_contrast_order():
    for field in mm.FIELDS_T:
        wm, gm, csf = (
            mm.get(n).mr(field) for n in ("brain_white_matter", "brain_grey_matter", "csf")
        )
        assert wm.t1_s < gm.t1_s < csf.t1_s
        assert wm.pd < gm.pd < csf.pd


@pytest.mark.parametrize("name", mm.names())
def test_every_material_has_consistent_properties_at_both_fields(name):
    material = mm.get(name)
    props = [material.mr(f) for f in mm.FIELDS_T]
    for p in props:
        assert 0.0 <= p.pd <= 1.0
        assert 0.0 < p.t2star_s <= p.t2_s <= p.t1_s
        for part in ("PD:", "T1:", "T2:", "T2*:"):
            assert part in p.source
        # Each value carries a literature citation (a year), or says it is an estimate / nominal.
        assert re.search(r"\(\d{4}\)|\d{4}\)|estimate|nominal", p.source)
    assert props[0].pd == props[1].pd  # PD does not depend on field
    if name not in NO_SIGNAL:
        assert props[1].t1_s >= props[0].t1_s  # T1 lengthens with field for every soft tissue
    else:
        assert props[0].pd == 0.0


def test_lung_and_cortical_bone_have_short_t2star_and_low_pd():
    lung = mm.get("lung").mr(1.5)
    assert 0.2 <= lung.pd <= 0.3
    assert 0.5e-3 <= lung.t2star_s <= 2.5e-3  # UTE measurements: about 1-2 ms at 1.5 T
    assert mm.get("lung").mr(3.0).t2star_s < lung.t2star_s
    bone = mm.get("cortical_bone").mr(3.0)
    assert bone.pd < 0.2 and bone.t2star_s < 1e-3


@pytest.mark.parametrize("field", [1.5, 3.0])
@pytest.mark.parametrize("c_mg_ml", [0.5, 1.0, 2.5])
def test_gadolinium_shortens_relaxation_as_the_relaxivity_law(field, c_mg_ml):
    base = mm.get("blood").mr(field)
    mixed = mm.contrast_mixture("gadolinium", c_mg_ml).mr(field)
    c_mmol_l = c_mg_ml / GD_MOLAR_MASS * 1000.0
    assert 1.0 / mixed.t1_s - 1.0 / base.t1_s == pytest.approx(GD_R1[field] * c_mmol_l, rel=1e-10)
    assert 1.0 / mixed.t2_s - 1.0 / base.t2_s == pytest.approx(GD_R2[field] * c_mmol_l, rel=1e-10)
    assert mixed.t2star_s <= mixed.t2_s <= mixed.t1_s
    assert mixed.pd == base.pd
    assert "Rohrer" in mixed.source


def test_catalog_gadolinium_entries_follow_the_law():
    for c in (0.5, 1.0):
        mixed = mm.get(f"blood+gadolinium_{c:g}mg_ml").mr(1.5)
        base = mm.get("blood").mr(1.5)
        expected = 1.0 / (1.0 / base.t1_s + GD_R1[1.5] * c / GD_MOLAR_MASS * 1000.0)
        assert mixed.t1_s == pytest.approx(expected, rel=1e-10)


def test_iodine_leaves_mr_properties_unchanged():
    for field in mm.FIELDS_T:
        base = mm.get("liver").mr(field)
        mixed = mm.contrast_mixture("iodine", 15.0, base="liver").mr(field)
        assert (mixed.pd, mixed.t1_s, mixed.t2_s, mixed.t2star_s) == (
            base.pd,
            base.t1_s,
            base.t2_s,
            base.t2star_s,
        )


@pytest.mark.parametrize("field", [7.0, 0.55, "3T", None])
def test_other_fields_are_rejected_listing_the_allowed_ones(field):
    with pytest.raises(ValueError, match=r"Material\.mr.*`field_t` must be one of 1\.5, 3\.0 T"):
        mm.get("liver").mr(field)


def test_field_given_as_int_3_is_accepted():
    assert mm.get("liver").mr(3) == mm.get("liver").mr(3.0)
