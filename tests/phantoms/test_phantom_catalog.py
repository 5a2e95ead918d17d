"""The phantom catalog: loading, validation messages, populations, anatomical relations."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from medphys import ConfigError, UnknownNameError, phantoms


@pytest.fixture(scope="module")
def torso_labels():
    return phantoms.voxelize(phantoms.load("torso-basic"), shape=(64, 48, 56), spacing_mm=6.0)


def _centroid(lv, name):
    idx = np.argwhere(np.asarray(lv.labels) == lv.structure(name).label).mean(0)
    return (lv.affine @ np.append(idx, 1.0))[:3]


def test_catalog_lists_and_loads():
    assert "torso-basic" in phantoms.names()
    ph = phantoms.load("torso-basic")
    assert len(ph.structure_names) >= 20
    assert ph.materials[ph.structure_names.index("liver")] == "liver"


def test_every_catalog_phantom_loads():
    names = phantoms.names()
    assert {"forbild-head", "forbild-head-2d", "shepp-logan-2d", "adult-male"} <= set(names)
    for name in names:
        ph = phantoms.load(name)
        assert ph.name == name
        assert len(ph.shapes) == len(ph.structure_names) == len(ph.materials)


def test_anatomical_relations_in_ras(torso_labels):
    """RAS+: +x patient right, +y anterior, +z superior."""
    c = {
        n: _centroid(torso_labels, n)
        for n in (
            "liver",
            "heart",
            "lung_left",
            "lung_right",
            "kidney_left",
            "kidney_right",
            "spine",
            "aorta",
            "spleen",
            "sternum",
        )
    }
    assert c["liver"][0] > c["heart"][0]  # liver right of the heart
    assert c["liver"][2] < c["heart"][2]  # and below it
    assert c["lung_right"][0] > c["heart"][0] > c["lung_left"][0]  # lungs either side of the heart
    assert c["spleen"][0] < 0 < c["liver"][0]  # spleen on the left
    for kidney in ("kidney_left", "kidney_right"):
        assert c[kidney][1] < c["liver"][1]  # kidneys posterior
    assert c["kidney_right"][2] < c["kidney_left"][2]  # right kidney lower
    assert c["spine"][1] < c["aorta"][1]  # spine posterior to the aorta
    assert c["sternum"][1] > c["heart"][1]  # sternum anterior to the heart


def test_every_structure_is_visible(torso_labels):
    present = set(np.unique(np.asarray(torso_labels.labels)).tolist())
    missing = [s.name for s in torso_labels.structures if s.label not in present]
    assert not missing


def test_same_key_same_individual_and_draws_vary():
    ph = phantoms.load("torso-basic")
    a, pa = phantoms.sample(jax.random.key(3), ph)
    b, pb = phantoms.sample(jax.random.key(3), ph)
    c, pc = phantoms.sample(jax.random.key(4), ph)
    assert c.name == ph.name
    np.testing.assert_array_equal(pa.body_scale, pb.body_scale)
    np.testing.assert_array_equal(pa.organ_scale, pb.organ_scale)
    assert not np.allclose(pa.body_scale, pc.body_scale)
    # structures with size_sd = 0 keep their own size; truncation bounds every factor
    body = ph.structure_names.index("body")
    assert float(pa.organ_scale[body]) == 1.0
    bound = 1 + ph.population.truncate_sd * max(s.size_sd for s in ph.structures)
    assert np.all(np.asarray(pc.organ_scale) <= bound + 1e-6)
    la = phantoms.voxelize(a, shape=(32, 24, 28), spacing_mm=12.0)
    lb = phantoms.voxelize(b, shape=(32, 24, 28), spacing_mm=12.0)
    np.testing.assert_array_equal(la.labels, lb.labels)
    np.testing.assert_array_equal(la.fractions, lb.fractions)


def test_population_scales_organ_volume():
    ph = phantoms.load("torso-basic")
    i = ph.structure_names.index("liver")
    scale = np.ones(len(ph.shapes), np.float32)
    scale[i] = 1.1
    big = phantoms.apply(phantoms.PhantomParams(np.ones(3, np.float32), scale), ph)
    ratio = float(big.shapes[i].volume_mm3() / ph.shapes[i].volume_mm3())
    assert ratio == pytest.approx(1.1**3, rel=1e-5)


def test_user_phantom_errors_name_file_line_and_alternatives(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\ndescription = "x"\n\n[[structures]]\nname = "blob"\nmaterial = "livr"\n'
        'shape = { type = "ellipsoid", center_mm = [0, 0, 0], semi_axes_mm = [1, 2, 3] }\n'
    )
    with pytest.raises(ConfigError) as info:
        phantoms.load(path)
    msg = str(info.value)
    assert f"{path}:6: structures[0].material: unknown material 'livr'" in msg
    assert "Did you mean 'liver'" in msg
    path.write_text(
        'name = "mine"\ndescription = "x"\n\n[[structures]]\nname = "blob"\nmaterial = "liver"\n'
        'shape = { type = "ellipsoid", center_mm = [0, 0, 0], semi_axes_mm = [1, -2, 3] }\n'
    )
    with pytest.raises(
        ConfigError,
        match=r"structures\[0\]\.shape\.ellipsoid\.semi_axes_mm: every size must be positive",
    ):
        phantoms.load(path)
    with pytest.raises(UnknownNameError, match=r"Available: .*torso-basic"):
        phantoms.load("adult-mail")
