"""Polychromatic simulation through an attenuation basis, and the memory-lean (streamed) path.

The basis is checked against the attenuation table it reduces (xraylib's, through
`medphys.materials`), and scans through it against the one-map-per-material scan; the streamed
scan (maps built from labels or sparse fractions one at a time, or slab by slab of slices) must
equal the scan of the whole dense fractions.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import medphys.materials as mm
from medphys import phantoms
from medphys.simulators import load, xray
from medphys.simulators.xray import _scanner

BODY = (
    "adipose", "bladder_wall", "blood", "brain_white_matter", "cartilage", "cortical_bone",
    "heart", "intestine", "kidney", "liver", "lung", "muscle", "pancreas", "skin",
    "soft_tissue", "spleen", "spongiosa", "stomach_wall", "thyroid", "water",
)  # fmt: skip


@pytest.fixture(scope="module")
def adult() -> phantoms.Phantom:
    return phantoms.load("adult-male")


@pytest.fixture(scope="module")
def chest() -> xray.CTProtocol:
    return load("ct-chest-120kvp")


@pytest.fixture(scope="module")
def torso(adult):
    """The adult torso on a coarse grid, with sparse partial-volume fractions."""
    return phantoms.voxelize(
        adult, shape=(40, 32, 6), spacing_mm=(13.0, 11.0, 40.0), fractions=phantoms.Fractions.SPARSE
    )


def _cone(protocol: xray.CTProtocol) -> xray.CTProtocol:
    geometry = xray.ConeBeam.create(
        n_views=6, n_u=40, n_v=24, du_mm=8.0, dv_mm=12.0, sod_mm=700.0, sdd_mm=1100.0
    )
    return dataclasses.replace(protocol, geometry=geometry)


def _table(names: tuple[str, ...], protocol: xray.CTProtocol) -> np.ndarray:
    e = np.asarray(protocol.spectrum.energies_kev, np.float64)
    return (mm.attenuation_table(names, e) - mm.attenuation_table(["air"], e)) / 10.0


@pytest.mark.parametrize("tolerance", [1e-3, 1e-5])
def test_basis_reproduces_every_material_within_its_tolerance(chest, tolerance: float) -> None:
    protocol = chest
    grid_names = ("air", *BODY)
    op = xray.prepare(_grid(), protocol, materials=grid_names, basis_tolerance=tolerance)
    basis = op.basis
    assert basis is not None and basis.size < len(BODY)
    mu = _table(BODY, protocol)
    approx = np.asarray(basis.coefficients) @ np.asarray(basis.mu_mm)
    error = np.max(np.abs(approx - mu) / np.abs(mu))
    assert error <= tolerance
    assert error == pytest.approx(basis.max_relative_error, rel=1e-9)
    # measured against 20 materials: 4 functions reach 1.4e-4, 5 reach 1.4e-5, 6 reach 6.7e-6
    assert basis.size == (4 if tolerance == 1e-3 else 6)
    assert op.n_maps == basis.size


def test_basis_that_would_need_every_material_projects_each_material(chest) -> None:
    protocol = chest
    op = xray.prepare(
        _grid(), protocol, materials=("air", "water", "cortical_bone"), basis_tolerance=1e-6
    )
    assert op.basis is None and op.n_maps == 2


def _grid():
    import medphys

    return medphys.Grid.create((24, 20, 6), spacing_mm=(20.0, 16.0, 30.0))


# slow tier (about 13 s and 5 s): the bound's premise (every material's μ within the tolerance)
# is checked above and the scans through a basis below, streamed and traced, in the default tier
@pytest.mark.slow
@pytest.mark.parametrize("geometry", ["fan", "cone"])
def test_scan_through_a_basis_stays_within_its_error_bound(torso, chest, geometry) -> None:
    """A relative error ε on every μ_m(E) moves each energy's exponent by at most ε times it, so
    the post-log projection moves by at most ε × the largest exponent (at the lowest energy)."""
    lv = torso
    protocol = xray.with_views(chest, 6)
    if geometry == "cone":
        protocol = _cone(protocol)
    exact = xray.expected_scan(lv, protocol, dtype=jnp.float64)
    tolerance = 1e-3
    approx = xray.expected_scan(lv, protocol, dtype=jnp.float64, basis_tolerance=tolerance)
    p, q = np.asarray(exact.projections), np.asarray(approx.projections)
    # the largest exponent: the line integral of μ at the lowest energy (where every body
    # material attenuates most) along the longest path
    op = xray.prepare(lv.grid, protocol, materials=lv.material_names)
    mu_low = np.zeros((len(lv.material_names), 1))
    mu_low[list(op.projected), 0] = np.asarray(op.mu_mm)[:, 0]
    assert np.all(np.asarray(op.mu_mm)[:, :1] >= np.asarray(op.mu_mm))
    exponent = float(np.max(np.asarray(op.project(lv.material_mix(mu_low, jnp.float64)[0]))))
    gap = float(np.max(np.abs(q - p)))
    # measured: 1.5e-5 (fan) and 1.1e-5 (cone) against bounds of 7.8e-2 and 7.6e-2
    assert 0 < gap <= tolerance * exponent


@pytest.mark.parametrize("fractions", list(phantoms.Fractions))
def test_streamed_planar_scan_equals_the_scan_of_the_whole_fractions(
    adult, chest, fractions, monkeypatch
) -> None:
    """Slabs of 3 slices over 7 (the last one padded), with a texture's density scale."""
    lv = phantoms.voxelize(
        adult, shape=(40, 32, 7), spacing_mm=(13.0, 11.0, 30.0), fractions=fractions
    )
    scale = np.random.default_rng(0).uniform(0.9, 1.1, lv.shape).astype(np.float32)
    lv = lv.with_density_scale(scale)
    protocol = xray.with_views(chest, 6)
    op = xray.prepare(lv.grid, protocol, materials=lv.material_names)
    f64 = jnp.float64
    whole = op.expected(lv.material_fractions(f64) * jnp.asarray(scale, f64)[None])
    monkeypatch.setattr(_scanner, "_SLAB_BYTES", 3 * 40 * 32 * 8 * op.n_maps)
    streamed = xray.expected_scan(lv, protocol, dtype=f64)
    # the same sums in another order at most (float64)
    np.testing.assert_allclose(
        np.asarray(streamed.expected_counts), np.asarray(whole.expected_counts), rtol=1e-13
    )
    np.testing.assert_array_equal(np.asarray(streamed.flat_counts), np.asarray(whole.flat_counts))


def test_streamed_cone_scan_equals_the_scan_of_the_whole_fractions(torso, chest) -> None:
    lv = torso
    protocol = _cone(chest)
    op = xray.prepare(lv.grid, protocol, materials=lv.material_names, basis_tolerance=1e-5)
    whole = op.expected(lv.material_fractions(jnp.float64))
    streamed = xray.expected_scan(lv, protocol, dtype=jnp.float64, basis_tolerance=1e-5)
    a, b = np.asarray(whole.expected_counts), np.asarray(streamed.expected_counts)
    # one map at a time against all maps in one lax.map: the same sums (float64)
    np.testing.assert_allclose(b, a, rtol=1e-13)


def test_scan_traced_by_the_caller_equals_the_streamed_scan(torso, chest) -> None:
    lv = torso
    protocol = xray.with_views(chest, 6)
    eager = xray.expected_scan(lv, protocol, basis_tolerance=1e-5).projections
    traced = jax.jit(lambda v: xray.expected_scan(v, protocol, basis_tolerance=1e-5).projections)
    np.testing.assert_allclose(np.asarray(traced(lv)), np.asarray(eager), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1e-5, 0.5, float("nan"), True, "1e-5"])
def test_bad_basis_tolerance_is_refused_naming_it(chest, bad) -> None:
    protocol = chest
    with pytest.raises(ValueError, match=r"`basis_tolerance` must be None .* \(got "):
        xray.prepare(_grid(), protocol, materials=("air", "water"), basis_tolerance=bad)


def test_basis_tolerance_with_a_geometry_is_refused(chest) -> None:
    with pytest.raises(TypeError, match="`basis_tolerance` are for a CTProtocol"):
        xray.prepare(_grid(), chest.geometry, basis_tolerance=1e-5)


def test_expected_of_maps_refuses_maps_of_the_wrong_count(chest) -> None:
    op = xray.prepare(_grid(), chest, materials=("air", *BODY), basis_tolerance=1e-5)
    assert op.n_maps == 6
    with pytest.raises(ValueError, match=r"`maps` must have shape \(6, 24, 20, 6\)"):
        op.expected_of_maps(jnp.zeros((20, 24, 20, 6)))
