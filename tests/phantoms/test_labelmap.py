"""NIfTI label map + mapping → LabeledVolume usable by the simulators; unmapped labels listed."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medphys._errors import ConfigError
from medphys.phantoms import load_labelmap


@pytest.fixture()
def seg(tmp_path):
    labels = np.zeros((12, 10, 8), np.int16)
    labels[2:6, 2:6, 2:6] = 5  # liver
    labels[7:10, 3:7, 1:4] = 1  # spleen
    labels[0, 0, 0] = 90  # a stray label
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    path = tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), path)
    return path, labels, affine


def test_mapping_dict_gives_structures_materials_and_affine(seg):
    path, labels, affine = seg
    lv = load_labelmap(path, {5: "liver", 1: ("spleen", "spleen"), 90: "soft_tissue"})
    np.testing.assert_array_equal(np.asarray(lv.labels), labels)
    np.testing.assert_allclose(lv.affine, affine)
    assert lv.structure("liver").label == 5 and lv.structure("spleen").material == "spleen"
    assert lv.structure("background").material == "air"
    assert lv.structure_volume_mm3("liver") == pytest.approx(64 * 1.5 * 1.5 * 3.0)
    # what the simulators consume: per-material occupancy sums to one in every voxel
    frac = np.asarray(lv.material_fractions())
    np.testing.assert_allclose(frac.sum(0), 1.0)
    assert frac.shape[0] == len(set(lv.material_names))


def test_unmapped_labels_are_listed(seg):
    path, _, _ = seg
    with pytest.raises(ValueError, match=r"labels \[1, 90\] .* have no material"):
        load_labelmap(path, {5: "liver"})


def test_toml_mapping_and_its_errors(seg, tmp_path):
    path, _, _ = seg
    good = tmp_path / "map.toml"
    good.write_text(
        'background_material = "water"\n[labels]\n1 = "spleen"\n5 = { name = "liver", '
        'material = "liver+iodine_2mg_ml" }\n90 = "soft_tissue"\n'
    )
    lv = load_labelmap(path, good)
    assert lv.structure("background").material == "water"
    assert lv.structure("liver").material == "liver+iodine_2mg_ml"
    bad = tmp_path / "bad.toml"
    bad.write_text('[labels]\n1 = "spleen"\n5 = { name = "liver", colour = "red" }\n')
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_labelmap(path, bad)
    with pytest.raises(KeyError, match="unobtainium"):
        load_labelmap(path, {1: "spleen", 5: "unobtainium", 90: "water"})
