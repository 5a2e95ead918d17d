"""The procedural breast family: anatomy present after voxelizing, glandular fraction per BI-RADS
class against its target, reproducibility, parameter round trip, bad input, materials and an
X-ray projection of the voxelized breast."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import xraylib

import medphys.materials as mm
from medphys import phantoms
from medphys.phantoms import (
    BreastParams,
    make_breast,
    measure_glandular_fraction,
    sample_breast_params,
)
from medphys.phantoms._breast import DENSITY_CLASSES
from medphys.simulators import xray
from medphys.simulators.geometry import ConeBeam

NAMES = (
    "pectoralis",
    "skin",
    "breast_fat",
    "fibroglandular",
    "cooper_ligaments",
    "ducts",
    "lobules",
)
SPACING_MM = 2.0
#: one grid for every class (the kernels compile once): 120 mm, the fatty breast's box
GRID = (60, 60, 60)
#: largest |measured - target| glandular fraction on the 2 mm grid (supersample 2); measured
#: 0.0003 (a), 0.0011 (b), 0.0011 (c), 0.0039 (d) for key 3
VGF_TOLERANCE = 0.01


def _grid(params: BreastParams):
    lo, hi = params.bounds_mm()
    assert np.all(hi - lo <= np.asarray(GRID) * SPACING_MM)
    return {"shape": GRID, "spacing_mm": SPACING_MM, "center_mm": tuple((lo + hi) / 2.0)}


@pytest.fixture(scope="module")
def breasts():
    out = {}
    for density in "abcd":
        params = sample_breast_params(jax.random.key(3), density=density)
        phantom = make_breast(params)
        out[density] = (params, phantom, phantoms.voxelize(phantom, **_grid(params)))
    return out


def test_every_structure_is_present_after_voxelizing(breasts):
    for density, (params, phantom, lv) in breasts.items():
        assert phantom.structure_names == NAMES
        assert lv.names == ("background", *NAMES)
        volumes = {n: lv.structure_volume_mm3(n) for n in NAMES}
        assert all(v > 0.0 for v in volumes.values()), (density, volumes)
        labels = set(np.unique(np.asarray(lv.labels)).tolist())
        for name in ("pectoralis", "skin", "breast_fat", "fibroglandular"):
            assert lv.structure(name).label in labels, (density, name)
        # the skin layer: volume close to the outer surface area times its thickness
        outer = params.outer_shape().children[0]
        inner_mm3 = float(outer.volume_mm3()) / 2.0
        assert volumes["skin"] < 0.2 * inner_mm3


def test_glandular_fraction_matches_the_class_target_and_increases_a_to_d(breasts):
    measured = {}
    for density, (params, _, lv) in breasts.items():
        target = DENSITY_CLASSES[density][1]
        assert params.glandular_fraction == target
        measured[density] = measure_glandular_fraction(lv)
        assert abs(measured[density] - target) <= VGF_TOLERANCE, (density, measured, target)
    assert measured["a"] < measured["b"] < measured["c"] < measured["d"]


def test_same_key_same_phantom_and_another_key_another():
    key = jax.random.key(3)
    p1, p2 = sample_breast_params(key, density="c"), sample_breast_params(key, density="c")
    assert p1 == p2
    leaves1 = jax.tree_util.tree_leaves(make_breast(p1))
    leaves2 = jax.tree_util.tree_leaves(make_breast(p2))
    assert len(leaves1) == len(leaves2)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(leaves1, leaves2, strict=True)
    )
    other = sample_breast_params(jax.random.key(4), density="c")
    assert other != p1
    drawn = {sample_breast_params(jax.random.key(i)).density for i in range(40)}
    assert drawn <= set("abcd") and len(drawn) >= 3


def test_params_round_trip():
    params = sample_breast_params(jax.random.key(5), density="b")
    again = BreastParams.create(**dataclasses.asdict(params))
    assert again == params
    a = jax.tree_util.tree_leaves(make_breast(params))
    b = jax.tree_util.tree_leaves(make_breast(again))
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


def test_outer_surface_chest_wall_and_bounds_for_compression():
    params = sample_breast_params(jax.random.key(6), density="c")
    outer, wall = params.outer_shape(), params.chest_wall()
    nipple = params.nipple_mm()
    assert float(outer.level(np.asarray(nipple))) == pytest.approx(0.0, abs=1e-9)
    assert float(outer.level(np.array([0.0, 1.0, 0.0]))) < 0.0
    assert float(outer.level(np.array([0.0, -1.0, 0.0]))) > 0.0  # cut by the chest wall
    assert float(wall.level(np.array([0.0, 5.0, 0.0]))) == pytest.approx(-5.0)
    lo, hi = params.bounds_mm()
    assert lo[1] == -params.pectoralis_mm and hi[1] == params.depth_mm
    for p in ([params.semi_width_mm, 0.0, 0.0], [0.0, 0.0, -params.semi_height_mm]):
        assert abs(float(outer.level(np.asarray(p)))) < 1e-9


def _message(info) -> str:
    return str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("density", "e", "'a', 'b', 'c' or 'd'"),
        ("depth_mm", -10.0, "positive"),
        ("semi_width_mm", 0.0, "positive"),
        ("glandular_fraction", 0.9, "(0, 0.7]"),
        ("skin_mm", 30.0, "quarter"),
        ("exponent", 3.0, "[0.5, 1.9]"),
    ],
)
def test_bad_params_name_the_call_the_field_and_the_value(field, value, allowed):
    fields = dataclasses.asdict(sample_breast_params(jax.random.key(0), density="b"))
    fields[field] = value
    with pytest.raises(ValueError) as info:
        BreastParams.create(**fields)
    msg = _message(info)
    assert "BreastParams.create" in msg and f"`{field}`" in msg and str(value) in msg
    assert allowed in msg


def test_other_bad_input():
    with pytest.raises(ValueError, match=r"sample_breast_params: `density` .* \(got 'x'\)"):
        sample_breast_params(jax.random.key(0), density="x")
    with pytest.raises(TypeError, match="make_breast: `params` must be a BreastParams"):
        make_breast({"density": "a"})  # type: ignore[arg-type]
    fields = dataclasses.asdict(sample_breast_params(jax.random.key(0), density="a"))
    with pytest.raises(ValueError, match="unknown field `colour`"):
        BreastParams.create(**fields, colour="red")
    with pytest.raises(ValueError, match="`anatomy_seed` must be an integer"):
        BreastParams.create(**{**fields, "anatomy_seed": -1})
    with pytest.raises(TypeError, match="`n_ducts` must be an integer"):
        BreastParams.create(**{**fields, "n_ducts": 2.5})
    # a fatty breast's shape cannot hold 70 % glandular tissue: said before building
    with pytest.raises(
        ValueError, match=r"make_breast: `glandular_fraction` does not fit.*got 0.7"
    ):
        make_breast(
            BreastParams.create(**{**fields, "glandular_fraction": 0.7, "retromammary_mm": 11.0})
        )
    lv = phantoms.voxelize(phantoms.load("water-cylinder"), shape=(8, 8, 8), spacing_mm=40.0)
    with pytest.raises(ValueError, match="no `breast_fat` structure"):
        measure_glandular_fraction(lv)


def _mixture_mass_attenuation(percent: dict[str, float], energy_kev: float) -> float:
    total = sum(percent.values())
    return sum(
        w / total * xraylib.CS_Total(xraylib.SymbolToAtomicNumber(s), energy_kev)
        for s, w in percent.items()
    )


def test_breast_materials_resolve_against_xraylib():
    # Hammerstein et al. 1979 (H, C, N, O), typed here independently of tissues.toml
    gland = {"H": 10.2, "C": 18.4, "N": 3.2, "O": 67.7}
    fat = {"H": 11.2, "C": 61.9, "N": 1.7, "O": 25.1}
    for name, comp, rho in (("glandular", gland, 1.04), ("breast_adipose", fat, 0.93)):
        m = mm.get(name)
        assert m.density_g_cm3 == rho
        for e in (20.0, 30.0, 40.0):
            assert m.mu(e) == pytest.approx(rho * _mixture_mass_attenuation(comp, e), rel=1e-10)
        assert "Hammerstein" in m.source
    mu_g, mu_f = mm.get("glandular").mu(20.0), mm.get("breast_adipose").mu(20.0)
    assert mu_g > 1.3 * mu_f  # the contrast mammography images
    calc = mm.get("calcification")
    parsed = xraylib.CompoundParser("CaC2O4")
    expected = dict(zip(parsed["Elements"], parsed["massFractions"], strict=True))
    for z, w in calc.composition:
        assert w == pytest.approx(expected[z], abs=1e-5)
    assert calc.mu(20.0) > 10.0 * mu_g
    for field in mm.FIELDS_T:  # fibroglandular tissue: long T1; fat: short
        assert mm.get("glandular").mr(field).t1_s > 3.0 * mm.get("breast_adipose").mr(field).t1_s
        assert mm.get("calcification").mr(field).pd == 0.0


def test_voxelized_breast_goes_through_the_xray_simulator(breasts):
    params, _, lv = breasts["c"]
    spec = xray.Spectrum.monoenergetic(20.0, photons_per_mas_mm2=1.0e4)
    geometry = ConeBeam.create(
        n_views=1, n_u=24, n_v=16, du_mm=6.0, dv_mm=6.0, sod_mm=600.0, sdd_mm=660.0
    )
    protocol = xray.CTProtocol.create(
        geometry=geometry, spectrum=spec, mas_per_view=1.0, modality="radiograph"
    )
    scan = xray.expected_scan(lv, protocol)
    proj = np.asarray(scan.projections)
    assert proj.shape == (1, 24, 16) and np.all(np.isfinite(proj))
    # the longest chord through tissue is at most the box diagonal times glandular mu + skin
    assert proj.max() > 1.0
    lo, hi = params.bounds_mm()
    mu_max = mm.get("muscle").mu(20.0) / 10.0  # 1/mm
    assert proj.max() < mu_max * float(np.linalg.norm(hi - lo))
