"""Sparse partial-volume fractions: the same numbers as the dense ones, for every reader."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from medphys import LabeledVolume, phantoms
from medphys.simulators import xray
from medphys.simulators.geometry import FanBeam
from medphys.simulators.mr import tissue_maps
from medphys.volume import SparseFractions


@pytest.fixture(scope="module")
def torso_pair():
    ph = phantoms.load("torso-basic")
    kw = {"shape": (36, 28, 40), "spacing_mm": 10.0, "supersample": 2}
    return phantoms.voxelize(ph, fractions=phantoms.Fractions.DENSE, **kw), phantoms.voxelize(
        ph, fractions=phantoms.Fractions.SPARSE, **kw
    )


def test_sparse_dense_equals_dense_fractions_exactly(torso_pair):
    dense, sparse = torso_pair
    assert isinstance(sparse.fractions, SparseFractions)
    np.testing.assert_array_equal(np.asarray(sparse.labels), np.asarray(dense.labels))
    f = sparse.fractions
    assert f.shape == dense.fractions.shape
    np.testing.assert_array_equal(np.asarray(f.dense()), np.asarray(dense.fractions))
    # only boundary voxels carry entries: one per (voxel, structure) with a nonzero share
    d = np.asarray(dense.fractions)
    mixed = np.count_nonzero(np.max(d, axis=0) < 1)
    assert 0 < np.unique(np.asarray(f.voxels)).size == mixed
    assert np.asarray(f.voxels).size == np.count_nonzero(d[:, np.max(d, axis=0) < 1])


def test_structure_volumes_and_material_maps_identical(torso_pair):
    dense, sparse = torso_pair
    for name in dense.names:
        assert sparse.structure_volume_mm3(name) == dense.structure_volume_mm3(name)
    np.testing.assert_array_equal(
        np.asarray(sparse.material_fractions()), np.asarray(dense.material_fractions())
    )
    np.testing.assert_array_equal(
        np.asarray(tissue_maps(sparse, 1.5).fractions),
        np.asarray(tissue_maps(dense, 1.5).fractions),
    )


def test_sparse_fractions_through_jit_and_create(torso_pair):
    dense, sparse = torso_pair
    out = jax.jit(lambda lv: lv.fractions.dense())(sparse)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(dense.fractions))
    again = LabeledVolume.create(
        sparse.labels, sparse.structures, affine=sparse.affine, fractions=sparse.fractions
    )
    assert again.structure_volume_mm3("liver") == dense.structure_volume_mm3("liver")
    bad = SparseFractions(
        sparse.fractions.voxels, sparse.fractions.structure, sparse.fractions.fraction,
        sparse.fractions.base, n_structures=3,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"LabeledVolume.create: `fractions` \(SparseFractions\)"):
        LabeledVolume.create(sparse.labels, sparse.structures, affine=sparse.affine, fractions=bad)


@pytest.mark.slow  # about 9 s; in the default tier the material maps above are identical and
# test_attenuation_basis's scan streamed from sparse fractions equals the scan of the dense ones
def test_ct_simulate_identical_with_dense_and_sparse():
    ph = phantoms.load("shepp-logan-2d")
    kw = {"shape": (48, 48, 2), "spacing_mm": 4.2, "supersample": 2}
    dense = phantoms.voxelize(ph, fractions=phantoms.Fractions.DENSE, **kw)
    sparse = phantoms.voxelize(ph, fractions=phantoms.Fractions.SPARSE, **kw)
    prot = xray.CTProtocol.create(
        geometry=FanBeam.create(n_views=24, n_u=200, du_mm=2.0, sod_mm=595.0, sdd_mm=1085.6),
        spectrum=xray.Spectrum.create(kvp=120, anode_angle_deg=7, filtration=(("Al", 2.5),)),
        mas=100.0,
        filter="hann",
        water_diameter_mm=180.0,
    )
    a = xray.simulate(jax.random.key(3), dense, prot)
    b = xray.simulate(jax.random.key(3), sparse, prot)
    pa, pb = np.asarray(a.projections), np.asarray(b.projections)
    assert np.ptp(pa) > 0
    np.testing.assert_array_equal(pa, pb)


def test_fractions_option_is_validated():
    ph = phantoms.load("shepp-logan-2d")
    for wrong in ("dense", True, "sparse"):
        with pytest.raises(
            TypeError, match=r"voxelize: `fractions` must be medphys.phantoms.Fractions.DENSE"
        ):
            phantoms.voxelize(ph, shape=(8, 8, 1), spacing_mm=25.0, fractions=wrong)
