"""The material catalog: names, look-up, compositions, contrast mixtures, validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import medphys
import medphys.materials as mm
from medphys._errors import UnknownNameError

REQUIRED = {
    "air",
    "water",
    "lung",
    "adipose",
    "muscle",
    "blood",
    "heart",
    "liver",
    "spleen",
    "kidney",
    "pancreas",
    "stomach_wall",
    "intestine",
    "brain_grey_matter",
    "brain_white_matter",
    "csf",
    "skin",
    "cartilage",
    "cortical_bone",
    "spongiosa",
    "red_marrow",
    "yellow_marrow",
    "eye_lens",
    "pmma",
    "aluminium",
    "titanium",
    "soft_tissue",
    "thyroid",
}


def test_names_are_sorted_and_cover_the_required_entries():
    names = mm.names()
    assert isinstance(names, tuple) and list(names) == sorted(names)
    assert REQUIRED <= set(names)
    assert {
        "blood+iodine_2mg_ml",
        "blood+iodine_5mg_ml",
        "blood+iodine_10mg_ml",
        "blood+iodine_15mg_ml",
        "blood+iodine_20mg_ml",
        "blood+gadolinium_0.5mg_ml",
        "blood+gadolinium_1mg_ml",
    } <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", mm.names())
def test_every_entry_is_well_formed(name):
    m = mm.get(name)
    assert m.name == name
    assert m.density_g_cm3 > 0
    zs = [z for z, _ in m.composition]
    assert zs == sorted(set(zs)) and all(1 <= z <= 98 for z in zs)
    assert all(w > 0 for _, w in m.composition)
    assert sum(w for _, w in m.composition) == pytest.approx(1.0, abs=1e-6)
    assert m.source and m.description
    hash(m)  # static, hashable data
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.density_g_cm3 = 2.0  # type: ignore[misc]


def test_renormalisation_is_recorded():
    # xraylib's dry air fractions sum to 0.999999; the loader renormalises and says so.
    air = mm.get("air")
    assert "renormalised" in air.source
    assert sum(w for _, w in air.composition) == pytest.approx(1.0, abs=1e-12)


def test_lung_density_choice_is_explicit():
    lung = mm.get("lung")
    assert lung.density_g_cm3 == pytest.approx(0.151)  # full inspiration (-850 HU)
    assert "inflated" in lung.source and "1.05" in lung.source and "0.26" in lung.source


def test_unknown_name_lists_alternatives():
    with pytest.raises(
        UnknownNameError, match=r"unknown material 'livr'\. Did you mean 'liver'"
    ) as info:
        mm.get("livr")
    assert "Available:" in str(info.value) and "cortical_bone" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError):
        mm.get("bone+iodine_5mg_ml")  # unknown base tissue


def test_contrast_mixture_by_mass():
    m = mm.contrast_mixture("iodine", 10.0)
    blood = mm.get("blood")
    assert m.name == "blood+iodine_10mg_ml"
    assert m.density_g_cm3 == pytest.approx(blood.density_g_cm3 + 0.010, abs=1e-15)
    w = dict(m.composition)
    assert w[53] == pytest.approx(0.010 / m.density_g_cm3, rel=1e-12)
    for z, wb in blood.composition:
        assert w[z] == pytest.approx(wb * blood.density_g_cm3 / m.density_g_cm3, rel=1e-12)
    assert "no displaced volume" in m.source
    # The name reads back through get(), to the same material.
    assert mm.get(m.name) == m
    assert mm.get("liver+gadolinium_0.75mg_ml") == mm.contrast_mixture(
        "gadolinium", 0.75, base="liver"
    )
    assert mm.contrast_mixture(mm.IODINE, 10.0) == m


def test_contrast_in_thyroid_adds_to_its_own_iodine():
    thyroid = mm.get("thyroid")
    m = mm.contrast_mixture("iodine", 5.0, base="thyroid")
    expected = (dict(thyroid.composition)[53] * thyroid.density_g_cm3 + 0.005) / m.density_g_cm3
    assert dict(m.composition)[53] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 1000.0])
def test_bad_concentration_is_rejected(bad):
    with pytest.raises(
        ValueError, match=r"contrast_mixture: `concentration_mg_ml` must be in \[0, 500\]"
    ):
        mm.contrast_mixture("iodine", bad)


def test_bad_agent_or_base_is_rejected():
    with pytest.raises(UnknownNameError, match=r"gadolinium.*iodine|iodine.*gadolinium"):
        mm.contrast_mixture("barium", 5.0)
    with pytest.raises(UnknownNameError, match="base tissue"):
        mm.contrast_mixture("iodine", 5.0, base="blod")
    with pytest.raises(ValueError, match="not a contrast mixture"):
        mm.contrast_mixture("iodine", 5.0, base=mm.get("blood+iodine_5mg_ml"))
    with pytest.raises(ValueError, match=r"get\('blood\+iodine_900mg_ml'\)"):
        mm.get("blood+iodine_900mg_ml")


def test_custom_material_create_validates():
    m = mm.Material.create(
        "iodine_solution",
        density_g_cm3=1.01,
        composition={"H": 0.1108, "O": 0.8792, 53: 0.01},
        source="10 mg/mL iodine in water, by mass",
    )
    assert m.composition == ((1, 0.1108), (8, 0.8792), (53, 0.01))
    assert float(m.mu(60.0)) > float(mm.get("water").mu(60.0))
    with pytest.raises(ValueError, match="sum to 1"):
        mm.Material.create(
            "x", density_g_cm3=1.0, composition={"H": 11.2, "O": 88.8}, source="per cent"
        )
    with pytest.raises(ValueError, match="unknown element symbol 'Qq'"):
        mm.Material.create("x", density_g_cm3=1.0, composition={"Qq": 1.0}, source="s")
    with pytest.raises(ValueError, match="`density_g_cm3` must be a positive number"):
        mm.Material.create("x", density_g_cm3=0.0, composition={"H": 1.0}, source="s")
    with pytest.raises(ValueError, match="no MR properties"):
        m.mr(1.5)


def test_labeled_volume_accepts_catalog_materials():
    labels = np.zeros((4, 4, 4), dtype=np.int32)
    labels[1:3, 1:3, 1:3] = 1
    vol = medphys.LabeledVolume.create(
        labels, [(0, "body", "soft_tissue"), (1, "vessel", "blood+iodine_10mg_ml")], spacing_mm=1.0
    )
    table = mm.attenuation_table(vol.material_names, [70.0])
    assert table.shape == (2, 1) and table[1, 0] > table[0, 0]
