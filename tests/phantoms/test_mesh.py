"""Mesh export is watertight with the right volume; imported meshes voxelize to their volume."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from medphys import phantoms
from medphys.phantoms import (
    Ellipsoid,
    Phantom,
    add_mesh_structure,
    export_mesh,
    shape_from_mesh,
    structure_mesh,
)


def _one(shape):
    return Phantom.create(name="t", structure_names=("s",), materials=("water",), shapes=(shape,))


def test_exported_ellipsoid_is_watertight_with_the_right_volume(tmp_path):
    axes = (20.0, 14.0, 9.0)
    ell = Ellipsoid(jnp.asarray([5.0, -3.0, 2.0]), jnp.asarray(axes), jnp.asarray([0.2, 0.0, 0.5]))
    mesh = structure_mesh(_one(ell), "s", spacing_mm=0.7)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * np.prod(axes), rel=0.01)
    np.testing.assert_allclose(mesh.center_mass, [5.0, -3.0, 2.0], atol=0.1)
    for suffix in (".stl", ".ply", ".obj"):
        out = export_mesh(_one(ell), "s", tmp_path / f"s{suffix}", spacing_mm=1.5)
        back = trimesh.load(out, force="mesh")
        assert back.is_watertight, suffix
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "s.obj",
        "s.ply",
        "s.stl",
    ]  # no temp files
    with pytest.raises(ValueError, match="must end in one of"):
        export_mesh(_one(ell), "s", tmp_path / "s.vtk")


def test_catalog_organ_mesh_is_watertight():
    mesh = structure_mesh(phantoms.load("torso-basic"), "liver", spacing_mm=3.0)
    assert mesh.is_watertight and mesh.volume > 0


def test_signed_distance_of_an_imported_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=10.0)
    shape = shape_from_mesh(sphere)
    pts = jnp.asarray([[0.0, 0, 0], [15.0, 0, 0], [0, 0, -4.0], [0, 30.0, 0]], jnp.float32)
    np.testing.assert_allclose(np.asarray(shape.level(pts)), [-10.0, 5.0, -6.0, 20.0], atol=0.05)


@pytest.mark.slow
def test_imported_box_voxelizes_to_its_volume_within_one_percent():
    box = trimesh.creation.box(extents=(20.0, 14.0, 11.0))
    box.apply_transform(trimesh.transformations.rotation_matrix(0.4, [1, 1, 0]))
    ph = add_mesh_structure(
        _one(Ellipsoid(jnp.zeros(3), jnp.full(3, 1.0), jnp.zeros(3))),
        box,
        name="box",
        material="water",
    )
    lv = ph.voxelize(shape=(32, 32, 32), spacing_mm=0.9, supersample=2)
    assert lv.structure_volume_mm3("box") == pytest.approx(box.volume, rel=0.01)


def test_imported_sphere_voxelizes_to_its_volume():
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=9.0)
    ph = add_mesh_structure(
        _one(Ellipsoid(jnp.zeros(3), jnp.full(3, 1.0), jnp.zeros(3))),
        sphere,
        name="ball",
        material="water",
    )
    lv = ph.voxelize(shape=(16, 16, 16), spacing_mm=1.25, supersample=2)
    assert lv.structure_volume_mm3("ball") == pytest.approx(sphere.volume, rel=0.02)


def test_open_mesh_is_refused():
    open_mesh = trimesh.creation.icosphere(subdivisions=1)
    open_mesh.update_faces(np.arange(len(open_mesh.faces)) > 0)
    with pytest.raises(ValueError, match="not watertight"):
        shape_from_mesh(open_mesh)
