"""Unenhanced CT numbers of the tissue library at 120 kVp against clinical values (the in-vivo CT
calibration of tissues.toml), from μ(E) at the chest protocol's effective energy.

The effective energy is the one at which μ of water equals the protocol's calibrated μ of water
(`medphys.simulators.ct.water_mu`, the centre of the 300 mm reference cylinder): 69.6 keV for
ct-chest-120kvp. With the protocol's water beam-hardening correction, near-water tissues
reconstruct within about 1.5 HU of these numbers (tests/simulators/test_ct_clinical_fidelity.py
checks them through the full simulation).
"""

from __future__ import annotations

import numpy as np
import pytest
import xraylib

import medphys.materials as mm
from medphys.simulators import ct, load

# Unenhanced CT at 120 kVp; the sources are named in full in tissues.toml.
CLINICAL_RANGES_HU = {
    "liver": (55.0, 65.0),  # Kodama 2007; above the spleen (Park 2011; Piekarski 1980)
    "spleen": (40.0, 50.0),
    "kidney": (30.0, 40.0),  # EJR 2011 (29.6 ± 3.0 HU); texts 30-50 HU
    "blood": (35.0, 45.0),  # non-anaemic aortic blood 39-50 HU (Sci Rep 2022)
    "muscle": (40.0, 60.0),  # psoas 48 ± 5.5 HU (Lawlor 2022)
    "heart": (35.0, 55.0),  # myocardium, close to blood on unenhanced CT
    "adipose": (-120.0, -80.0),
    "lung": (-900.0, -800.0),  # healthy, full inspiration (Robinson 1979; Zach 2012)
    "spongiosa": (150.0, 400.0),
    "cortical_bone": (1000.0, 1900.0),
}


@pytest.fixture(scope="module")
def effective_energy_kev():
    mu_ref = ct.water_mu(load("ct-chest-120kvp"))  # 1/cm, relative to air
    grid = np.linspace(40.0, 120.0, 8001)
    table = mm.attenuation_table(["water", "air"], grid)
    mu_w = table[0] - table[1]  # decreasing in energy
    return float(np.interp(-mu_ref, -mu_w, grid))


def _hu(names, energy_kev):
    table = mm.attenuation_table([*names, "water", "air"], [energy_kev])[:, 0]
    mu_w, mu_air = table[-2], table[-1]
    return {n: 1000.0 * (table[i] - mu_w) / (mu_w - mu_air) for i, n in enumerate(names)}


def test_effective_energy_of_the_chest_protocol(effective_energy_kev):
    assert effective_energy_kev == pytest.approx(69.6, abs=0.5)


def test_unenhanced_ct_numbers_fall_in_clinical_ranges(effective_energy_kev):
    hu = _hu(tuple(CLINICAL_RANGES_HU), effective_energy_kev)
    # measured: liver 56.6, spleen 47.9, kidney 34.9, blood 43.1, muscle 47.7, heart 43.8,
    # adipose -103.9, lung -850.8, spongiosa 297, cortical bone 1458
    bad = {
        n: round(v, 1)
        for n, v in hu.items()
        if not CLINICAL_RANGES_HU[n][0] <= v <= CLINICAL_RANGES_HU[n][1]
    }
    assert not bad, f"outside their clinical ranges: {bad}"
    # a normal liver is 5-12 HU brighter than the spleen; the reverse is how fatty liver is read
    assert 5.0 <= hu["liver"] - hu["spleen"] <= 12.0
    assert hu["lung"] == pytest.approx(-850.0, abs=10.0)


@pytest.mark.parametrize("name", ["liver", "spleen", "kidney", "blood", "muscle", "lung"])
def test_calibrated_densities_name_the_tabulated_value_and_a_clinical_source(name):
    source = mm.get(name).source
    assert "HU" in source and "120 kVp" in source
    assert any(tag in source for tag in ("ICRU", "ICRP", "xraylib")), source
    assert any(str(y) in source for y in range(1975, 2026)), source  # a dated clinical source


def test_calibration_keeps_the_tabulated_composition():
    """Only the density moves: μ/ρ of the calibrated tissues is still the tabulated mixture's."""
    for name in ("blood", "muscle", "lung"):
        nist = {"blood": "Blood (ICRP)", "muscle": "Muscle, Skeletal", "lung": "Lung (ICRP)"}[name]
        for e in (40.0, 70.0, 100.0):
            ratio = mm.get(name).mass_attenuation(e) / xraylib.CS_Total_CP(nist, e)
            assert ratio == pytest.approx(1.0, abs=5e-3)
