"""Mean glandular dose by Dance's method (K · g · c · s): s-factors, table interpolation, the
incident air kerma by the inverse-square law, and the boundary errors.

The published g and c tables are not shipped (medphys.simulators.xray._glandular_dose says why),
so the interpolation and the K · g · c · s product are checked on tables built here from closed
forms; only the s-factors are published numbers (Dance et al., Phys. Med. Biol. 45:3225, 2000).
"""

from __future__ import annotations

import numpy as np
import pytest

from medphys.simulators import xray

PMMA = "Polymethyl Methacrylate (Lucite Perspex or Plexiglas)"
THICKNESS = np.array([20.0, 30.0, 40.0, 45.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0])
HVL = np.array([0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60])


def _bilinear_g(t, h):
    """A closed form that bilinear interpolation reproduces exactly (not Dance's values)."""
    return 0.05 + 0.6 * h - 0.002 * t + 0.004 * t * h


@pytest.fixture(scope="module")
def tables():
    g = _bilinear_g(THICKNESS[:, None], HVL[None, :])
    gland = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    c = (1.3 - 0.6 * gland)[:, None, None] * np.ones((1, THICKNESS.size, HVL.size))
    return xray.DanceTables.create(thickness_mm=THICKNESS, hvl_mm=HVL, g=g, glandularity=gland, c=c)


@pytest.fixture(scope="module")
def momo():
    return xray.Spectrum.create(
        kvp=28,
        anode="Mo",
        anode_angle_deg=16.0,
        filtration=(("Be", 1.0), ("Mo", 0.03), (PMMA, 3.0)),
        bin_kev=0.5,
    )


def test_s_factors_are_dances():
    assert xray.S_FACTORS == {
        "Mo/Mo": 1.000,
        "Mo/Rh": 1.017,
        "Rh/Rh": 1.061,
        "Rh/Al": 1.044,
        "W/Rh": 1.042,
    }


def test_target_filter_skips_window_and_paddle(momo):
    assert xray.target_filter_of(momo) == "Mo/Mo"
    wrh = xray.Spectrum.create(
        kvp=28, anode="W", filtration=(("Be", 1.0), ("Rh", 0.05), (PMMA, 3.0)), bin_kev=1.0
    )
    assert xray.target_filter_of(wrh) == "W/Rh"


def test_target_filter_refuses_two_filter_metals():
    s = xray.Spectrum.create(kvp=28, anode="Rh", filtration=(("Rh", 0.025), ("Al", 1.0)))
    with pytest.raises(ValueError, match="exactly one of Mo, Rh, Ag, Al"):
        xray.target_filter_of(s)


@pytest.mark.parametrize("t,h", [(20.0, 0.30), (45.0, 0.40), (47.3, 0.371), (110.0, 0.60)])
def test_g_is_bilinear_in_thickness_and_hvl(tables, momo, t, h):
    k = 4.0
    mgd = xray.mean_glandular_dose_mgy(
        momo, thickness_mm=t, tables=tables, entrance_air_kerma_mgy=k, hvl_mm=h
    )
    assert mgd == pytest.approx(k * _bilinear_g(t, h) * 1.000, rel=1e-12)


def test_s_factor_from_the_override(tables, momo):
    kw = dict(thickness_mm=50.0, tables=tables, entrance_air_kerma_mgy=3.0, hvl_mm=0.5)
    base = xray.mean_glandular_dose_mgy(momo, **kw)
    rh = xray.mean_glandular_dose_mgy(momo, target_filter="Rh/Rh", **kw)
    assert rh / base == pytest.approx(1.061, rel=1e-12)


def test_glandularity_correction_is_linear_between_columns(tables, momo):
    kw = dict(thickness_mm=50.0, tables=tables, entrance_air_kerma_mgy=2.0, hvl_mm=0.4)
    half = xray.mean_glandular_dose_mgy(momo, glandularity=0.5, **kw)
    for gl in (0.0, 0.1, 0.33, 1.0):
        mgd = xray.mean_glandular_dose_mgy(momo, glandularity=gl, **kw)
        assert mgd / half == pytest.approx(1.3 - 0.6 * gl, rel=1e-12)


def test_fifty_percent_needs_no_c_table(momo):
    t = xray.DanceTables.create(
        thickness_mm=[20, 80], hvl_mm=[0.2, 0.6], g=[[0.4, 0.6], [0.1, 0.2]]
    )
    mgd = xray.mean_glandular_dose_mgy(
        momo, thickness_mm=20, tables=t, entrance_air_kerma_mgy=1.0, hvl_mm=0.6
    )
    assert mgd == pytest.approx(0.6)


def test_kerma_from_the_spectrum_by_inverse_square(tables, momo):
    hvl = xray.half_value_layer_mm(momo)
    k = xray.air_kerma_ugy(momo, mas=60.0, distance_mm=585.0) / 1000.0
    mgd = xray.mean_glandular_dose_mgy(
        momo, thickness_mm=45.0, tables=tables, mas=60.0, source_to_surface_mm=585.0
    )
    assert mgd == pytest.approx(k * _bilinear_g(45.0, hvl), rel=1e-12)
    far = xray.mean_glandular_dose_mgy(
        momo, thickness_mm=45.0, tables=tables, mas=60.0, source_to_surface_mm=1170.0
    )
    assert far / mgd == pytest.approx(0.25, rel=1e-12)


def _call(spectrum, tables, **overrides):
    kw = dict(thickness_mm=50.0, tables=tables, entrance_air_kerma_mgy=2.0, hvl_mm=0.4)
    kw.update(overrides)
    return xray.mean_glandular_dose_mgy(spectrum, **kw)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"thickness_mm": 15.0}, r"`thickness_mm` must lie within .*\[20, 110\] mm \(got 15\)"),
        ({"thickness_mm": 120.0}, r"`thickness_mm` must lie within"),
        ({"hvl_mm": 0.25}, r"`hvl_mm` must lie within .*\[0.3, 0.6\] mm Al \(got 0.25\)"),
        ({"glandularity": 1.2}, r"`glandularity` must be in \[0, 1\] \(got 1.2\)"),
        ({"glandularity": -0.1}, r"`glandularity` must be in \[0, 1\]"),
        ({"target_filter": "W/Al"}, r"no s-factor for target/filter 'W/Al'; known: Mo/Mo"),
        ({"mas": 60.0}, r"not both"),
        ({"entrance_air_kerma_mgy": None}, r"give `entrance_air_kerma_mgy`, or both `mas`"),
        ({"entrance_air_kerma_mgy": 0.0}, r"`entrance_air_kerma_mgy` must be > 0"),
    ],
)
def test_bad_input_names_the_field(tables, momo, overrides, match):
    with pytest.raises(ValueError, match=match):
        _call(momo, tables, **overrides)


def test_glandularity_without_c_table_is_refused(momo):
    t = xray.DanceTables.create(
        thickness_mm=[20, 80], hvl_mm=[0.2, 0.6], g=[[0.4, 0.6], [0.1, 0.2]]
    )
    with pytest.raises(ValueError, match=r"`glandularity`=0.3 needs a c table"):
        _call(momo, t, glandularity=0.3)


def test_wrong_types_are_refused(tables, momo):
    with pytest.raises(TypeError, match="`tables` must be DanceTables"):
        _call(momo, {"g": 1})
    with pytest.raises(TypeError, match="`spectrum` must be a Spectrum"):
        _call("Mo/Mo", tables)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"thickness_mm": [30, 20]}, "`thickness_mm` must be finite and strictly increasing"),
        ({"hvl_mm": [0.3]}, r"`hvl_mm` must be a 1-D grid of ≥ 2 points"),
        ({"g": [[0.4, 0.6]]}, r"`g` must have shape \(2, 2\)"),
        ({"g": [[0.4, 0.0], [0.1, 0.2]]}, "`g` must be finite and > 0"),
        ({"c": np.ones((2, 2, 2))}, "give `glandularity` and `c` together"),
        (
            {"glandularity": [0.0, 1.5], "c": np.ones((2, 2, 2))},
            r"`glandularity` must lie in \[0, 1\]",
        ),
    ],
)
def test_tables_are_validated(kwargs, match):
    base = dict(thickness_mm=[20, 80], hvl_mm=[0.2, 0.6], g=[[0.4, 0.6], [0.1, 0.2]])
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        xray.DanceTables.create(**base)
