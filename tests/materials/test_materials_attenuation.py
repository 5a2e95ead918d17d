"""Photon attenuation of the material library against xraylib and published numbers."""

from __future__ import annotations

import numpy as np
import pytest
import xraylib

import medphys.materials as mm

ENERGIES_KEV = (20.0, 40.0, 60.0, 80.0, 100.0, 150.0)

# Catalog name -> xraylib NIST compound, written here independently of tissues.toml.
NIST_NAMES = {
    "air": "Air, Dry (near sea level)",
    "water": "Water, Liquid",
    "pmma": "Polymethyl Methacralate (Lucite, Perspex)",
    "soft_tissue": "Tissue, Soft (ICRP)",
    "adipose": "Adipose Tissue (ICRP)",
    "blood": "Blood (ICRP)",
    "muscle": "Muscle, Skeletal",
    "brain": "Brain (ICRP)",
    "skin": "Skin (ICRP)",
    "eye_lens": "Eye Lens (ICRP)",
    "cortical_bone": "Bone, Cortical (ICRP)",
    "lung": "Lung (ICRP)",
}

# Entries whose density is not xraylib's: inflated lung, and the in-vivo CT calibration of
# tissues.toml (see tests/materials/test_materials_ct_numbers.py).
DENSITY_OVERRIDES = {"lung": 0.151, "blood": 1.049, "muscle": 1.055}


def _element_sum(material: mm.Material, energy_kev: float) -> float:
    """Σ w_i (μ/ρ)_i with scalar xraylib calls, independent of the library's vectorised path."""
    return sum(w * xraylib.CS_Total(z, energy_kev) for z, w in material.composition)


@pytest.mark.parametrize("name", mm.names())
def test_mass_attenuation_equals_element_by_element_mixture_rule(name):
    material = mm.get(name)
    got = material.mass_attenuation(np.asarray(ENERGIES_KEV))
    expected = np.asarray([_element_sum(material, e) for e in ENERGIES_KEV])
    # Same cross sections, same weights: agreement to rounding (the brief asks for 0.5 %).
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_allclose(
        material.mu(np.asarray(ENERGIES_KEV)), material.density_g_cm3 * expected, rtol=1e-10
    )


@pytest.mark.parametrize("name", sorted(NIST_NAMES))
def test_nist_entries_match_xraylib_compound_calculation(name):
    material = mm.get(name)
    nist = NIST_NAMES[name]
    for e in ENERGIES_KEV:
        expected = xraylib.CS_Total_CP(nist, e)
        assert abs(material.mass_attenuation(e) / expected - 1.0) < 5e-3  # measured < 1e-6
    data = xraylib.GetCompoundDataNISTByName(nist)
    table = dict(zip(data["Elements"], data["massFractions"], strict=True))
    assert {z for z, _ in material.composition} == set(table)
    for z, w in material.composition:
        assert w == pytest.approx(table[z], abs=2e-6)
    if name == "lung":
        assert data["density"] == pytest.approx(1.05)  # compact lung tissue
    if name in DENSITY_OVERRIDES:
        assert material.density_g_cm3 == pytest.approx(DENSITY_OVERRIDES[name])
        assert f"{data['density']:g}" in material.source or name == "lung"
    else:
        assert material.density_g_cm3 == pytest.approx(data["density"])


def test_liver_composition_is_the_icru46_table():
    # ICRU 46 / Woodard & White (1986) liver, per cent by mass (tabulated density 1.06 g/cm³,
    # calibrated to 1.063 g/cm³ in vivo: see test_materials_ct_numbers.py).
    typed = {1: 10.2, 6: 13.9, 7: 3.0, 8: 71.6, 11: 0.2, 15: 0.3, 16: 0.3, 17: 0.2, 19: 0.3}
    liver = mm.get("liver")
    assert dict(liver.composition) == pytest.approx(
        {z: p / 100.0 for z, p in typed.items()}, abs=1e-12
    )
    assert liver.density_g_cm3 == 1.063
    assert "1.06 g/cm³" in liver.source


def test_water_matches_nist_xcom_total_with_coherent():
    # NIST XCOM / Hubbell & Seltzer (NIST IR 5632) μ/ρ of liquid water, cm²/g.
    xcom = {20.0: 0.8096, 40.0: 0.2683, 60.0: 0.2059, 80.0: 0.1837, 100.0: 0.1707, 150.0: 0.1505}
    water = mm.get("water")
    got = water.mass_attenuation(np.asarray(list(xcom)))
    np.testing.assert_allclose(got, list(xcom.values()), rtol=2e-3)  # measured max 3e-4
    assert float(water.mu(60.0)) == pytest.approx(0.2059, rel=1e-3)


def test_aluminium_matches_nist_table():
    # Hubbell & Seltzer (NIST IR 5632) μ/ρ of aluminium, cm²/g.
    nist = {20.0: 3.441, 40.0: 0.5685, 60.0: 0.2778, 80.0: 0.2018, 100.0: 0.1704, 150.0: 0.1378}
    got = mm.get("aluminium").mass_attenuation(np.asarray(list(nist)))
    np.testing.assert_allclose(got, list(nist.values()), rtol=2e-3)


def test_ordering_and_lung_density_ratio_at_60_kev():
    mu = {
        n: float(mm.get(n).mu(60.0))
        for n in ("cortical_bone", "muscle", "adipose", "lung", "soft_tissue", "air")
    }
    assert mu["cortical_bone"] > mu["muscle"] > mu["adipose"] > mu["lung"] > mu["air"]
    # Lung at full inspiration is about a seventh of soft tissue (0.151 g/cm³ against 1.0 g/cm³).
    assert 0.13 < mu["lung"] / mu["soft_tissue"] < 0.17


def _hu(name: str, energy_kev: float = 70.0) -> float:
    mu_w = float(mm.get("water").mu(energy_kev))
    return 1000.0 * (float(mm.get(name).mu(energy_kev)) - mu_w) / mu_w


def test_ct_numbers_at_70_kev_fall_in_textbook_ranges():
    # Textbook CT numbers of unenhanced tissue at 120 kVp (about 70 keV effective energy).
    ranges = {
        "adipose": (-130.0, -70.0),
        "liver": (40.0, 70.0),
        "blood": (30.0, 65.0),
        "brain_grey_matter": (30.0, 50.0),
        "lung": (-900.0, -650.0),
        "csf": (-5.0, 20.0),
    }
    for name, (lo, hi) in ranges.items():
        assert lo <= _hu(name) <= hi, (name, _hu(name))
    assert _hu("brain_grey_matter") > _hu("brain_white_matter")
    assert _hu("cortical_bone") > 1000.0


def _edge(name: str, lo: float, hi: float) -> float:
    grid = np.arange(lo, hi, 0.005)
    mu = mm.get(name).mu(grid)
    i = int(np.argmax(np.diff(mu)))
    return 0.5 * (grid[i] + grid[i + 1])


def test_iodine_k_edge_appears_at_33_17_kev():
    # I K-edge 33.169 keV (Deslattes et al., Rev Mod Phys 75:35 (2003)).
    assert _edge("blood+iodine_10mg_ml", 32.0, 34.5) == pytest.approx(33.17, abs=0.01)
    mixture, blood = mm.get("blood+iodine_10mg_ml"), mm.get("blood")
    jump = float(mixture.mu(33.2) / mixture.mu(33.1))
    assert jump > 1.4  # 10 mg/mL iodine: photoabsorption jumps by the K-edge ratio (~5.5)
    assert float(blood.mu(33.2) / blood.mu(33.1)) < 1.0  # no edge in blood


def test_gadolinium_k_edge_appears_at_50_24_kev():
    # Gd K-edge 50.239 keV (Deslattes et al. 2003).
    assert _edge("blood+gadolinium_1mg_ml", 49.0, 51.5) == pytest.approx(50.24, abs=0.01)
    mixture = mm.get("blood+gadolinium_1mg_ml")
    assert float(mixture.mu(50.3) / mixture.mu(50.2)) > 1.03


@pytest.mark.parametrize(("agent", "z"), [("iodine", 53), ("gadolinium", 64)])
def test_contrast_adds_linear_attenuation_of_the_element(agent, z):
    # By-mass model without displaced volume: μ = μ_base + (c/1000 g/cm³) (μ/ρ)_element.
    c = 12.5
    mixture = mm.contrast_mixture(agent, c, base="liver")
    liver = mm.get("liver")
    for e in ENERGIES_KEV:
        expected = float(liver.mu(e)) + c / 1000.0 * xraylib.CS_Total(z, e)
        assert float(mixture.mu(e)) == pytest.approx(expected, rel=1e-12)


def test_iodine_enhancement_per_mg_ml():
    # Rule of thumb: about 25-30 HU per mg/mL of iodine at 120 kVp (~70 keV).
    gain = _hu("blood+iodine_10mg_ml") - _hu("blood")
    assert 20.0 < gain / 10.0 < 35.0


def test_shapes_dtypes_and_scalars():
    water = mm.get("water")
    scalar = water.mu(60.0)
    assert np.ndim(scalar) == 0 and isinstance(scalar, np.floating)
    grid = np.linspace(20.0, 120.0, 6, dtype=np.float32).reshape(2, 3)
    out = water.mass_attenuation(grid)
    assert out.shape == (2, 3) and out.dtype == np.float64
    np.testing.assert_allclose(
        out.reshape(-1), water.mass_attenuation(grid.reshape(-1).astype(np.float64)), rtol=1e-12
    )
    assert water.mu(np.zeros((0,)) + 50.0).shape == (0,)


@pytest.mark.parametrize("bad", [0.5, 200.0, float("nan")])
def test_energy_outside_range_is_rejected(bad):
    with pytest.raises(ValueError, match=r"Material\.mass_attenuation.*\[1, 150\] keV") as info:
        mm.get("water").mass_attenuation(bad)
    assert f"{bad:g}" in str(info.value)
    with pytest.raises(ValueError, match=r"Material\.mu.*\[1, 150\] keV"):
        mm.get("water").mu(np.asarray([60.0, bad]))
    with pytest.raises(ValueError, match=r"attenuation_table.*\[1, 150\] keV"):
        mm.attenuation_table(["water"], [60.0, bad])


def test_attenuation_table_matches_mu_and_is_cached():
    from medphys.materials._library import _mu_row

    names = ["water", "cortical_bone", "blood+iodine_5mg_ml"]
    grid = np.linspace(20.0, 140.0, 7)
    table = mm.attenuation_table(names, grid)
    assert table.shape == (3, 7) and table.dtype == np.float64
    for row, name in zip(table, names, strict=True):
        np.testing.assert_allclose(row, mm.get(name).mu(grid), rtol=1e-12)
    hits = _mu_row.cache_info().hits
    again = mm.attenuation_table(names, grid)
    assert _mu_row.cache_info().hits == hits + 3
    np.testing.assert_array_equal(again, table)
    again[0, 0] = -1.0  # the caller's array is its own; the cache is untouched
    assert mm.attenuation_table(names, grid)[0, 0] == table[0, 0]
    with pytest.raises(ValueError, match="1-D"):
        mm.attenuation_table(names, grid.reshape(7, 1))


def test_traced_energies_get_a_clear_message():
    import jax

    with pytest.raises(TypeError, match="concrete values, not traced ones"):
        jax.jit(lambda e: mm.get("water").mu(e))(60.0)


def test_density_scaled_tissue_attenuates_in_proportion_and_keeps_its_mr():
    """`density_scaled`: the same elements at factor × ρ, so μ = factor × μ_tissue at every
    energy (xraylib's mixture rule is linear in density); the name resolves through `get`."""
    import medphys.materials as mm

    energies = np.linspace(15.0, 150.0, 28)
    liver = mm.get("liver")
    dark = mm.density_scaled("liver", 0.9717)
    assert dark.name == "liver@0.9717" and mm.get("liver@0.9717") == dark
    np.testing.assert_allclose(dark.mu(energies), 0.9717 * liver.mu(energies), rtol=1e-12)
    assert dark.composition == liver.composition and dark.mr_properties == liver.mr_properties
    table = mm.attenuation_table(["liver", "liver@0.9717"], energies)
    np.testing.assert_allclose(table[1], 0.9717 * table[0], rtol=1e-12)
    with pytest.raises(ValueError, match=r"density factor must be in \[0.5, 1.5\] \(got 0.2\)"):
        mm.get("liver@0.2")
    with pytest.raises(ValueError, match=r"`base` must be a tissue, not a mixture"):
        mm.density_scaled("liver+iodine_3mg_ml", 0.9)
    with pytest.raises(Exception, match=r"unknown material 'unobtainium@0.9'"):
        mm.get("unobtainium@0.9")
