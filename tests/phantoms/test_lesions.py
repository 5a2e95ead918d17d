"""Lesions: own label and mask, volume, fit check; contrast presets."""

from __future__ import annotations

import numpy as np
import pytest

from medphys import materials, phantoms
from medphys.phantoms import (
    ARTERIAL,
    PORTAL_VENOUS,
    ContrastPhase,
    EllipsoidalLesion,
    SphericalLesion,
    SpiculatedLesion,
    enhance,
    insert_lesion,
)

LIVER = (55.0, 10.0, -35.0)


@pytest.fixture(scope="module")
def torso():
    return phantoms.load("torso-basic")


@pytest.mark.parametrize(
    ("lesion", "exact"),
    [
        (SphericalLesion(12.0), 4 / 3 * np.pi * 12.0**3),
        (EllipsoidalLesion((14.0, 9.0, 11.0), (10.0, 20.0, 30.0)), 4 / 3 * np.pi * 14 * 9 * 11),
        (SpiculatedLesion(10.0, spike_mm=6.0, n_spikes=10), None),
    ],
)
def test_lesion_is_its_own_structure_with_the_right_volume(torso, lesion, exact):
    ph = insert_lesion(torso, organ="liver", shape=lesion, material="soft_tissue", center_mm=LIVER)
    assert ph.structure_names[-1] == "lesion"
    assert ph.materials[-1] == "soft_tissue"
    lv = ph.voxelize(shape=(32, 32, 32), spacing_mm=1.5, center_mm=LIVER, supersample=2)
    if exact is None:  # spiculated: quadrature of R(u)^3 over the sphere
        exact = ph.shape_of("lesion").volume_mm3()
        assert exact > 1.2 * 4 / 3 * np.pi * 10.0**3  # the spikes add volume
    assert lv.structure_volume_mm3("lesion") == pytest.approx(exact, rel=0.02)
    mask = np.asarray(lv.mask("lesion"))
    assert mask.any() and np.asarray(lv.labels)[mask].min() == lv.structure("lesion").label
    # the organ lost what the lesion took
    base = torso.voxelize(shape=(32, 32, 32), spacing_mm=1.5, center_mm=LIVER, supersample=2)
    lost = base.structure_volume_mm3("liver") - lv.structure_volume_mm3("liver")
    assert lost == pytest.approx(lv.structure_volume_mm3("lesion"), rel=1e-4)


def test_two_lesions_get_two_names_and_move_with_the_organ(torso):
    ph = insert_lesion(
        torso, organ="liver", shape=SphericalLesion(8.0), material="soft_tissue", center_mm=LIVER
    )
    ph = insert_lesion(
        ph,
        organ="liver",
        shape=SphericalLesion(6.0),
        material="blood",
        center_mm=(80.0, 10.0, -20.0),
    )
    assert ph.structure_names[-2:] == ("lesion", "lesion_2")
    moved = ph.at(respiratory_phase=0.5)
    lv = moved.voxelize(
        shape=(24, 24, 40), spacing_mm=2.0, center_mm=LIVER, fractions=phantoms.Fractions.NONE
    )
    z = np.argwhere(np.asarray(lv.mask("lesion")))[:, 2].mean()
    world_z = float((lv.affine @ np.array([0, 0, z, 1.0]))[2])
    assert world_z == pytest.approx(LIVER[2] - 20.0, abs=1.0)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"center_mm": (130.0, 10.0, -35.0)}, ValueError, "does not fit inside 'liver'"),
        ({"shape": SphericalLesion(-2.0)}, ValueError, "`lesion.radius_mm` must be positive"),
        ({"organ": "livr"}, KeyError, "livr"),
        ({"material": "unobtainium"}, KeyError, "unobtainium"),
        ({"name": "liver"}, ValueError, "already exists"),
        ({"shape": "sphere"}, TypeError, "must be a SphericalLesion"),
    ],
)
def test_bad_lesions(torso, kwargs, err, match):
    args = {
        "organ": "liver",
        "shape": SphericalLesion(10.0),
        "material": "soft_tissue",
        "center_mm": LIVER,
        **kwargs,
    }
    with pytest.raises(err, match=match):
        insert_lesion(torso, **args)


def test_contrast_presets_swap_materials_for_known_mixtures(torso):
    art, pv = enhance(torso, ARTERIAL), enhance(torso, PORTAL_VENOUS)
    i = torso.structure_names.index("liver")
    assert art.materials[i] == "liver+iodine_0.7mg_ml"
    assert pv.materials[i] == "liver+iodine_2mg_ml"
    assert art.materials[torso.structure_names.index("aorta")] == "blood+iodine_10.5mg_ml"
    assert art.materials[torso.structure_names.index("spine")] == "cortical_bone"
    for m in set(art.materials) | set(pv.materials):
        materials.get(m)  # every mixture is a usable material
    # enhancement raises attenuation at 70 keV: liver more in portal-venous than arterial
    mu = {p: materials.get(ph.materials[i]).mu(70.0) for p, ph in (("a", art), ("p", pv))}
    assert float(mu["p"]) > float(mu["a"]) > float(materials.get("liver").mu(70.0))
    with pytest.raises(ValueError, match=r"must be in \[0, 50\]"):
        ContrastPhase.create("x", blood_mg_ml=80.0, organs_mg_ml={})
    with pytest.raises(TypeError, match="must be a ContrastPhase"):
        enhance(torso, "arterial")


def _effective_weights():
    """120 kVp, 12 deg W anode, 2.5 mm Al, behind 20 cm water; energy-integrating weights."""
    spekpy = pytest.importorskip("spekpy")
    spek = spekpy.Spek(kvp=120, th=12)
    spek.filter("Al", 2.5)
    spek.filter("Water, Liquid", 200.0)
    e, fluence = spek.get_spectrum()
    keep = e >= 10.0
    w = (fluence * e)[keep]
    return e[keep], w / w.sum()


# Enhancement (HU over unenhanced tissue) in bolus-tracked multiphasic CT at 120 kVp:
# Goshima et al., AJR 187:W25 (2006), and renal MDCT, PMID 17367973 (kidney cortex/medulla).
_PUBLISHED_HU = [
    ("arterial", "aorta", 300.0, 336.0),
    ("arterial", "spleen", 97.0, 108.0),
    ("arterial", "liver", 15.0, 25.0),
    ("arterial", "kidney_left", 145.0, 217.0),
    ("portal_venous", "aorta", 117.0, 125.0),
    ("portal_venous", "spleen", 73.0, 82.0),
    ("portal_venous", "liver", 59.0, 63.0),
    ("portal_venous", "kidney_left", 145.0, 217.0),
]


@pytest.mark.parametrize(("phase", "organ", "lo", "hi"), _PUBLISHED_HU)
def test_contrast_presets_give_published_enhancement(torso, phase, organ, lo, hi):
    xraylib = pytest.importorskip("xraylib")
    e, w = _effective_weights()
    preset = {"arterial": ARTERIAL, "portal_venous": PORTAL_VENOUS}[phase]
    ph = enhance(torso, preset)
    i = torso.structure_names.index(organ)
    base, mixture = torso.materials[i], ph.materials[i]

    def hu(name):
        mu = np.asarray(materials.get(name).mu(e))
        mu_water = np.asarray(materials.get("water").mu(e))
        return 1000.0 * ((w * mu).sum() / (w * mu_water).sum() - 1.0)

    enhancement = hu(mixture) - hu(base)
    # independent of medphys' mixture rule: iodine added at c mg/mL, mu/rho from xraylib directly
    c_g_cm3 = float(mixture.split("_")[-2].removesuffix("mg")) / 1000.0
    mu_iodine = c_g_cm3 * np.array([xraylib.CS_Total(53, float(x)) for x in e])
    mu_water = np.asarray(materials.get("water").mu(e))
    closed_form = 1000.0 * (w * mu_iodine).sum() / (w * mu_water).sum()
    assert enhancement == pytest.approx(closed_form, rel=0.03)
    # within 15% of the published range
    assert 0.85 * lo <= enhancement <= 1.15 * hi, (phase, organ, enhancement)


def test_a_calcification_cluster_voxelises_into_its_calcifications(torso):
    """Five 0.4 mm calcifications two diameters apart in a 2.5 mm ball: five connected
    components on a 0.15 mm grid, the partial-volume total within 1 % of 5 × 4/3 π r³, the
    same key gives the same cluster, and the union's level is the distance to the nearest."""
    import jax
    import scipy.ndimage as ndi

    cluster = phantoms.CalcificationCluster.draw(
        jax.random.key(3), count=5, diameter_mm=0.4, radius_mm=2.5
    )
    assert cluster == phantoms.CalcificationCluster.draw(
        jax.random.key(3), count=5, diameter_mm=0.4, radius_mm=2.5
    )
    offsets = np.asarray(cluster.offsets_mm)
    assert offsets.shape == (5, 3) and np.all(np.linalg.norm(offsets, axis=1) <= 2.3)
    gaps = np.linalg.norm(offsets[:, None] - offsets[None], axis=-1)[~np.eye(5, dtype=bool)]
    assert gaps.min() >= 0.8
    ph = insert_lesion(
        torso, organ="liver", shape=cluster, material="calcification", center_mm=LIVER
    )
    lv = phantoms.voxelize(
        ph,
        shape=(40, 40, 40),
        spacing_mm=0.15,
        center_mm=LIVER,
        fractions=phantoms.Fractions.SPARSE,
    )
    label = lv.structure("lesion").label
    _, count = ndi.label(np.asarray(lv.labels) == label)
    assert count == 5
    exact = 5 * 4 / 3 * np.pi * 0.2**3
    # measured: 0.1679 mm³ against 0.1676
    assert lv.structure_volume_mm3("lesion") == pytest.approx(exact, rel=0.01)
    shape = ph.structure("lesion").shape
    points = np.random.default_rng(0).uniform(-3.0, 3.0, (200, 3)) + np.asarray(LIVER)
    brute = np.min(
        np.linalg.norm(points[:, None] - (offsets + np.asarray(LIVER))[None], axis=-1) - 0.2, axis=1
    )
    np.testing.assert_allclose(np.asarray(shape.level(points)), brute, atol=1e-4)


def test_bad_calcification_clusters(torso):
    import jax

    with pytest.raises(ValueError, match=r"`count` must be an integer in \[1, 64\] \(got 0\)"):
        phantoms.CalcificationCluster.draw(jax.random.key(0), count=0)
    with pytest.raises(ValueError, match=r"do not fit in a ball of 0.5 mm"):
        phantoms.CalcificationCluster.draw(jax.random.key(0), count=20, radius_mm=0.5)
    far = phantoms.CalcificationCluster(((0.0, 0.0, 0.0), (400.0, 0.0, 0.0)), 0.3)
    with pytest.raises(ValueError, match=r"does not fit inside 'liver'"):
        insert_lesion(torso, organ="liver", shape=far, material="calcification", center_mm=LIVER)
