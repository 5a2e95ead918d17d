"""Volumes: validation at the boundary, affine conventions, PyTree behaviour."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import medphys
from medphys import LabeledVolume, Structure, Volume, make_affine


def test_make_affine_centres_grid_and_maps_voxel_centres():
    a = make_affine((10, 20, 5), (1.5, 0.5, 3.0), center_mm=(10.0, -4.0, 2.0))
    # the middle of the index range maps to the requested centre
    mid = a @ np.array([4.5, 9.5, 2.0, 1.0])
    np.testing.assert_allclose(mid[:3], [10.0, -4.0, 2.0])
    # one step along each index moves by the spacing along the RAS axes
    np.testing.assert_allclose(a[:3, :3], np.diag([1.5, 0.5, 3.0]))


def test_volume_properties():
    v = Volume.create(
        np.zeros((4, 6, 2), np.int16), spacing_mm=(1.0, 2.0, 3.0), center_mm=(5, 5, 5)
    )
    assert v.shape == (4, 6, 2)
    assert v.dtype == np.int16
    np.testing.assert_allclose(v.spacing_mm, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(v.center_mm, [5.0, 5.0, 5.0])
    assert v.voxel_volume_mm3 == pytest.approx(6.0)
    np.testing.assert_allclose(v.bounds_mm(), [[3.0, -1.0, 2.0], [7.0, 11.0, 8.0]])
    world = np.asarray(v.world_coordinates(jnp.float64))
    np.testing.assert_allclose(world[1, 2, 1], (v.affine @ [1, 2, 1, 1])[:3])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data": np.zeros((3, 3))}, "must be 3-D"),
        ({"data": np.zeros((3, 3, 3)), "spacing_mm": 0.0}, "`spacing_mm` must be positive"),
        ({"data": np.zeros((3, 3, 3)), "affine": np.zeros((4, 4))}, "last row"),
        ({"data": np.zeros((3, 3, 3)), "affine": np.diag([1.0, 0.0, 1.0, 1.0])}, "singular"),
        ({"data": np.zeros((3, 3, 3)), "affine": np.eye(3)}, r"shape \(4, 4\)"),
        ({"data": np.zeros((3, 3, 3)), "affine": np.eye(4), "spacing_mm": 1.0}, "not both"),
    ],
)
def test_volume_create_rejects_bad_input(kwargs, match):
    data = kwargs.pop("data")
    with pytest.raises(ValueError, match=match) as info:
        Volume.create(data, **kwargs)
    assert "medphys.Volume.create" in str(info.value)


def test_volume_is_a_pytree_through_jit():
    v = Volume.create(np.ones((2, 3, 4), np.float32), spacing_mm=2.0)
    doubled = jax.jit(lambda vol: vol.with_data(vol.data * 2))(v)
    assert isinstance(doubled, Volume)
    np.testing.assert_array_equal(np.asarray(doubled.data), 2 * np.ones((2, 3, 4)))
    np.testing.assert_allclose(np.asarray(doubled.affine), v.affine)


def test_labeled_volume_material_fractions_one_hot_and_partial():
    labels = np.array([0, 1, 2, 2], np.uint8).reshape(4, 1, 1)
    lv = LabeledVolume(
        labels=labels,
        affine=np.eye(4),
        structures=(
            Structure(0, "background", "air"),
            Structure(1, "a", "water"),
            Structure(2, "b", "water"),
        ),
    )
    assert lv.material_names == ("air", "water")
    f = np.asarray(lv.material_fractions(jnp.float64))
    np.testing.assert_array_equal(f[:, :, 0, 0], [[1, 0, 0, 0], [0, 1, 1, 1]])
    partial = np.array([[0.5, 0, 0, 0], [0.25, 1, 0, 0], [0.25, 0, 1, 1]]).reshape(3, 4, 1, 1)
    lv2 = LabeledVolume(
        labels=labels, affine=np.eye(4), structures=lv.structures, fractions=partial
    )
    f2 = np.asarray(lv2.material_fractions(jnp.float64))
    np.testing.assert_allclose(f2[:, :, 0, 0], [[0.5, 0, 0, 0], [0.5, 1, 1, 1]])
    np.testing.assert_allclose(f2.sum(0), 1.0)
    assert lv2.structure_volume_mm3("a") == pytest.approx(1.25)


def test_labeled_volume_create_validates_table():
    labels = np.array([0, 1, 3], np.int16).reshape(3, 1, 1)
    rows = [(0, "background", "air"), (1, "liver", "liver")]
    with pytest.raises(ValueError, match=r"label values \[3\] occur"):
        LabeledVolume.create(labels, rows)
    with pytest.raises(medphys.UnknownNameError, match="unknown material"):
        LabeledVolume.create(labels[:2], [(0, "background", "air"), (1, "liver", "liverr")])
    with pytest.raises(TypeError, match="integer dtype"):
        LabeledVolume.create(labels.astype(np.float32), rows)
    with pytest.raises(ValueError, match="appears twice"):
        LabeledVolume.create(labels[:2], [(0, "a", "air"), (0, "b", "air")])
    lv = LabeledVolume.create(labels[:2], rows, spacing_mm=2.0)
    assert lv.structure("liver").material == "liver"
    with pytest.raises(medphys.UnknownNameError, match="Available: background, liver"):
        lv.structure("lung")


def test_mr_values_validate_and_ride_on_structures():
    v = medphys.volume.MRValues.create(0.745, 0.9981, 0.1, "Gach et al. 2008")
    assert (v.pd, v.t1_s, v.t2_s, v.source, v.t2star_s) == (
        0.745,
        0.9981,
        0.1,
        "Gach et al. 2008",
        None,
    )
    assert hash(Structure(1, "a", "water", v)) == hash(Structure(1, "a", "water", v))
    assert Structure(1, "a", "water") == Structure(1, "a", "water", None)
    lv = LabeledVolume.create(np.zeros((2, 2, 1), np.int32), [Structure(0, "a", "water", v)])
    assert lv.structure("a").mr == v
    assert jax.tree_util.tree_leaves(lv) == [lv.labels]  # static table and affine
    for kwargs, match in (
        ({"pd": -0.1}, r"MRValues.create: `pd` must be finite and >= 0 \(got -0.1\)"),
        ({"t1_s": 0.0}, r"`t1_s` must be finite and > 0 \(seconds\) \(got 0.0\)"),
        ({"t2_s": float("nan")}, r"`t2_s` must be finite"),
        (
            {"t2star_s": 0.2},
            r"`t2star_s` must not exceed `t2_s` \(got t2star_s=0.2 s, t2_s=0.1 s\)",
        ),
    ):
        args = {"pd": 0.5, "t1_s": 1.0, "t2_s": 0.1} | kwargs
        t2star = args.pop("t2star_s", None)
        with pytest.raises(ValueError, match=match):
            medphys.volume.MRValues.create(**args, t2star_s=t2star)
    with pytest.raises(TypeError, match=r"`t1_s` must be a real number \(got str\)"):
        medphys.volume.MRValues.create(0.5, "1.0", 0.1)
    with pytest.raises(TypeError, match=r"structure 'a': `mr` must be a medphys.volume.MRValues"):
        LabeledVolume.create(np.zeros((2, 2, 1), np.int32), [Structure(0, "a", "water", (1, 2, 3))])
