"""One record per structure: lesions, meshes, populations, motion and voxelization compose."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medphys import phantoms
from medphys.phantoms import (
    Ellipsoid,
    Phantom,
    PhantomParams,
    PhantomStructure,
    SphericalLesion,
    insert_lesion,
)
from medphys.volume import MRValues

trimesh = pytest.importorskip("trimesh")

LESION = (45.0, 12.0, -30.0)  # inside torso-basic's liver, away from the structures over it
MESH = (15.0, 10.0, -20.0)
#: holds the lesion and the mesh in every individual and instant drawn here
GRID = {"shape": (24, 24, 24), "spacing_mm": 2.5, "center_mm": (32.0, 10.0, -28.0)}


@pytest.fixture(scope="module")
def torso():
    return phantoms.load("torso-basic")


@pytest.fixture(scope="module")
def ball():
    """A small closed mesh (12 triangles: the mesh's signed distance costs per triangle)."""
    return trimesh.creation.box(extents=(8.0, 8.0, 8.0)).apply_translation(MESH)


def _labels(ph: Phantom) -> np.ndarray:
    return np.asarray(ph.voxelize(**GRID, fractions=phantoms.Fractions.NONE).labels)


def _leaves_equal(a, b, *, values: bool = False) -> bool:
    """Same tree, same leaves: byte for byte (``values``: equal values, so 0.0 == -0.0)."""
    (la, ta), (lb, tb) = jax.tree_util.tree_flatten(a), jax.tree_util.tree_flatten(b)
    if ta != tb:
        return False
    if values:
        return all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))
    return all(
        np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb, strict=True)
    )


def test_sample_after_insert_lesion_in_the_adult_male():
    male = phantoms.load("adult-male")
    q = insert_lesion(
        male,
        organ="liver",
        shape=SphericalLesion(radius_mm=8.0),
        material="water",
        center_mm=(70, 0, -60),
    )
    person, params = phantoms.sample(jax.random.key(0), q)
    assert len(person.structures) == len(male.structures) + 1
    assert person.structures[-1].host == "liver" and person.structures[-1].size_sd == 0.0
    assert params.organ_scale.shape == (len(q.structures),)
    # the other structures are those of the individual drawn without the lesion
    alone, _ = phantoms.sample(jax.random.key(0), male)
    assert _leaves_equal(person.shapes[:-1], alone.shapes)


def test_phantom_holds_one_record_per_structure(torso):
    assert all(isinstance(s, PhantomStructure) for s in torso.structures)
    assert torso.structure_names == tuple(s.name for s in torso.structures)
    assert torso.materials == tuple(s.material for s in torso.structures)
    assert torso.mr == (None,) * len(torso.structures)
    assert torso.structure("body").size_sd == 0.0 and not any(s.host for s in torso.structures)
    assert torso.structure("liver").size_sd == pytest.approx(0.08)
    # the shapes are the only leaves; the records survive jit and tree maps unchanged
    n_leaves = len(jax.tree_util.tree_leaves(torso.shapes))
    assert len(jax.tree_util.tree_leaves(torso)) == n_leaves
    again = jax.jit(lambda p: p)(torso)
    assert again.structures[3].name == torso.structures[3].name and _leaves_equal(again, torso)
    with pytest.raises(AttributeError):
        torso.shapes = ()  # derived, read-only


def test_lesion_follows_its_host_under_population_variation(torso):
    ph = insert_lesion(
        torso, organ="liver", shape=SphericalLesion(8.0), material="water", center_mm=LESION
    )
    n, i = len(ph.structures), ph.structure_names.index("liver")
    organ = np.ones(n, np.float32)
    organ[i] = 1.2
    body = np.asarray([1.1, 0.9, 1.05], np.float32)
    person = phantoms.apply(PhantomParams(jnp.asarray(body), jnp.asarray(organ)), ph)
    host, lesion = person.shape_of("liver"), person.shape_of("lesion")
    # the same map as the host: x -> c + 1.2 (B x - c), c the host's body-scaled centre
    c = body * np.asarray(torso.shape_of("liver").center_mm)
    expected = c + 1.2 * (body * np.asarray(LESION) - c)
    np.testing.assert_allclose(np.asarray(lesion.center_mm), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(lesion.semi_axes_mm), 8.0 * 1.2 * body, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(host.center_mm), c, rtol=1e-6)


def test_lesion_in_a_ventricle_beats_with_it(torso):
    ph = insert_lesion(
        torso,
        organ="lv_blood",
        shape=SphericalLesion(5.0),
        material="soft_tissue",
        center_mm=(-35.0, 26.0, 50.0),
        name="thrombus",
    )
    systole = ph.at(cardiac_phase=0.4)
    ratio = float(systole.shape_of("lv_blood").volume_mm3() / ph.shape_of("lv_blood").volume_mm3())
    lesion_ratio = (float(systole.shape_of("thrombus").semi_axes_mm[0]) / 5.0) ** 3
    assert lesion_ratio == pytest.approx(ratio, rel=1e-5) and ratio < 0.8


def _run(base: Phantom, ops: list[str], seed: int, ball, *, lesions: bool = True) -> Phantom:
    """Apply ``ops`` in order; ``lesions=False`` skips the lesion insertions."""
    ph = base
    key = jax.random.key(seed)
    for step, op in enumerate(ops):
        if op == "sample":
            k = jax.random.fold_in(key, step)
            ph = phantoms.apply(phantoms.sample_params(k, ph), ph)
        elif op == "at":
            ph = ph.at(respiratory_phase=0.2, cardiac_phase=0.3)
        elif op == "mesh":
            ph = phantoms.add_mesh_structure(ph, ball, name="implant", material="pmma")
        elif op == "lesion" and lesions:
            ph = insert_lesion(
                ph, organ="liver", shape=SphericalLesion(8.0), material="water", center_mm=LESION
            )
        elif op == "lesion2" and lesions:  # right after the first: its centre is still LESION
            ph = insert_lesion(
                ph,
                organ="lesion",
                shape=SphericalLesion(3.0),
                material="blood",
                center_mm=LESION,
                name="core",
            )
    return ph


def _names(ph: Phantom, labels: np.ndarray) -> np.ndarray:
    return np.asarray(["background", *ph.structure_names])[labels]


# seed 1 (about 2 s; the operations of seed 0 in another order) and seeds 3-5 in the slow tier
@pytest.mark.parametrize(
    "seed",
    [0, pytest.param(1, marks=pytest.mark.slow), 2]
    + [pytest.param(s, marks=pytest.mark.slow) for s in (3, 4, 5)],
)
def test_operations_compose_in_any_order(torso, ball, seed):
    rng = np.random.default_rng(seed)
    ops = [str(o) for o in rng.permutation(["lesion", "sample", "at", "mesh"])]
    extra = str(rng.choice(["sample", "lesion2"]))
    where = ops.index("lesion") + 1 if extra == "lesion2" else int(rng.integers(0, len(ops) + 1))
    ops.insert(where, extra)
    ph = _run(torso, ops, seed, ball)
    added = {"lesion", "implant"} | ({"core"} if extra == "lesion2" else set())
    assert len(ph.structures) == len(torso.structures) + len(added), ops
    assert set(ph.structure_names) == set(torso.structure_names) | added
    assert (ph.warp is not None) == ("at" in ops)
    lv = ph.voxelize(**GRID, fractions=phantoms.Fractions.NONE)
    labels = np.asarray(lv.labels)
    assert len(lv.structures) == len(ph.structures) + 1
    for name in added:
        assert (labels == lv.structure(name).label).any(), (ops, name)

    # the lesions lie inside their host and change nothing else: the same operations without
    # them give the same labels everywhere else, and the host's label under them
    plain = _run(torso, ops, seed, ball, lesions=False)
    names, ref = _names(ph, labels), _names(plain, _labels(plain))
    under = np.isin(names, sorted(added - {"implant"}))
    np.testing.assert_array_equal(names[~under], ref[~under])
    assert set(np.unique(ref[under])) == {"liver"}, ops
    # a lesion inserted after every sample and instant sits where it was given
    last = ops.index("lesion")
    if not {"sample", "at"} & set(ops[last + 1 :]):
        idx = np.argwhere(labels == lv.structure("lesion").label)
        if extra == "lesion2":  # the core is painted over the lesion's centre
            idx = np.argwhere(under)
        world = (lv.affine @ np.c_[idx, np.ones(len(idx))].T)[:3].mean(axis=1)
        np.testing.assert_allclose(world, LESION, atol=1.0)


def test_insert_then_at_equals_at_then_insert(torso):
    moved = torso.at(respiratory_phase=0.5, cardiac_phase=0.2)
    # the lesion's place at the instant, and where that is in the reference anatomy
    reference = np.asarray(moved.warp.backward(jnp.asarray(LESION, jnp.float32)), np.float64)
    assert abs(reference[2] - LESION[2]) > 15.0  # the liver moved down at inspiration
    args = {"organ": "liver", "shape": SphericalLesion(8.0), "material": "water"}
    later = insert_lesion(moved, center_mm=LESION, **args)
    earlier = insert_lesion(torso, center_mm=reference, **args).at(
        respiratory_phase=0.5, cardiac_phase=0.2
    )
    assert _leaves_equal(later, earlier)
    a, b = (
        later.voxelize(**GRID, fractions=phantoms.Fractions.NONE),
        earlier.voxelize(**GRID, fractions=phantoms.Fractions.NONE),
    )
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
    assert a.structures == b.structures
    # voxelized, the lesion is centred where it was given at that instant
    idx = np.argwhere(np.asarray(a.mask("lesion")))
    world = (a.affine @ np.c_[idx, np.ones(len(idx))].T)[:3].mean(axis=1)
    np.testing.assert_allclose(world, LESION, atol=1.0)


def test_mesh_at_an_instant_equals_the_mesh_carried_back(torso, ball):
    moved = torso.at(respiratory_phase=0.5)
    later = phantoms.add_mesh_structure(moved, ball, name="implant", material="pmma")
    back = ball.copy()
    back.vertices = np.asarray(moved.warp.backward(jnp.asarray(ball.vertices, jnp.float32)))
    earlier = phantoms.add_mesh_structure(torso, back, name="implant", material="pmma")
    earlier = earlier.at(respiratory_phase=0.5)
    assert _leaves_equal(later, earlier)


def test_without_variation_insert_and_sample_commute(torso, ball):
    fixed = dataclasses.replace(torso, population=None)  # vary off: the reference individual
    args = {"organ": "liver", "shape": SphericalLesion(8.0), "material": "water"}
    person, params = phantoms.sample(jax.random.key(3), fixed)
    assert np.all(np.asarray(params.organ_scale) == 1.0)
    a = insert_lesion(person, center_mm=LESION, **args)
    b, _ = phantoms.sample(jax.random.key(3), insert_lesion(fixed, center_mm=LESION, **args))
    assert _leaves_equal(a, b)
    assert _leaves_equal(a, insert_lesion(fixed, center_mm=LESION, **args), values=True)
    np.testing.assert_array_equal(_labels(a), _labels(b))
    # a mesh: the same to rounding (scaling a mesh by 1 about its centre rounds its vertices)
    c = phantoms.add_mesh_structure(person, ball, name="implant", material="pmma")
    d = phantoms.add_mesh_structure(fixed, ball, name="implant", material="pmma")
    d = phantoms.sample(jax.random.key(3), d)[0]
    for x, y in zip(jax.tree_util.tree_leaves(c), jax.tree_util.tree_leaves(d), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(_labels(c), _labels(d))


def test_apply_is_vmappable_and_jittable(torso):
    ph = insert_lesion(
        torso, organ="liver", shape=SphericalLesion(8.0), material="water", center_mm=LESION
    )
    keys = jax.random.split(jax.random.key(1), 3)
    params = jax.vmap(lambda k: phantoms.sample_params(k, ph))(keys)
    people = jax.vmap(phantoms.apply, in_axes=(0, None))(params, ph)
    one = jax.jit(phantoms.apply)(jax.tree_util.tree_map(lambda x: x[1], params), ph)
    np.testing.assert_allclose(
        np.asarray(people.shape_of("lesion").center_mm[1]),
        np.asarray(one.shape_of("lesion").center_mm),
        rtol=1e-6,
    )


def test_enhance_leaves_lesions_alone(torso):
    ph = insert_lesion(
        torso, organ="liver", shape=SphericalLesion(8.0), material="blood", center_mm=LESION
    )
    out = phantoms.enhance(ph, phantoms.PORTAL_VENOUS)
    assert out.structure("lesion").material == "blood"
    assert out.structure("liver").material == "liver+iodine_2mg_ml"
    assert out.structure("lesion").host == "liver"


def test_params_drawn_for_another_phantom_are_refused(torso):
    params = phantoms.sample_params(jax.random.key(0), torso)
    ph = insert_lesion(
        torso, organ="liver", shape=SphericalLesion(8.0), material="water", center_mm=LESION
    )
    with pytest.raises(ValueError, match=r"apply: `params.organ_scale` has shape \(20,\) .* 21"):
        phantoms.apply(params, ph)


_E = Ellipsoid(jnp.zeros(3), jnp.full(3, 10.0), jnp.zeros(3))


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"name": "Liver"}, ValueError, r"PhantomStructure.create: `name` must be a lower_snake"),
        ({"name": "background"}, ValueError, "not 'background'"),
        ({"material": "unobtainium"}, KeyError, "unobtainium"),
        ({"shape": "sphere"}, TypeError, r"`shape` of structure 'organ' must be a medphys"),
        ({"size_sd": 0.5}, ValueError, r"`size_sd` must be in \[0, 0.3\] \(got 0.5\)"),
        ({"size_sd": float("nan")}, ValueError, "`size_sd` must be finite"),
        ({"fat_layer": 1}, TypeError, "`fat_layer` must be True or False"),
        ({"mr": (1.0, 1.0, 0.1)}, TypeError, "`mr` of structure 'organ' must be MRValues"),
        ({"host": "organ"}, ValueError, "cannot be its own `host`"),
    ],
)
def test_bad_structure_records(kwargs, err, match):
    args = {"name": "organ", "material": "liver", "shape": _E, **kwargs}
    with pytest.raises(err, match=match):
        PhantomStructure.create(args.pop("name"), args.pop("material"), args.pop("shape"), **args)


def test_bad_phantoms():
    organ = PhantomStructure.create("organ", "liver", _E, mr=MRValues.create(0.8, 0.8, 0.05))
    lesion = PhantomStructure.create("spot", "water", _E, host="organ")
    assert Phantom.create("ok", [organ, lesion]).mr[0].pd == 0.8
    where = "Phantom.create"
    with pytest.raises(ValueError, match=rf"{where}: structure name 'organ' is used twice"):
        Phantom.create("x", [organ, organ])
    with pytest.raises(ValueError, match=rf"{where}: structure 'spot' names host 'organ'"):
        Phantom.create("x", [lesion, organ])
    with pytest.raises(ValueError, match=r"`materials` has 1 entries for 2 `structure_names`"):
        Phantom.create("x", structure_names=("a", "b"), materials=("water",), shapes=(_E, _E))
    with pytest.raises(ValueError, match=rf"{where}: `name` must be a lower_snake_case name"):
        Phantom.create("x", structure_names=("A",), materials=("water",), shapes=(_E,))
    with pytest.raises(ValueError, match="not both"):
        Phantom.create("x", [organ], structure_names=("a",), materials=("water",), shapes=(_E,))
    with pytest.raises(ValueError, match="missing `shapes`"):
        Phantom.create("x", structure_names=("a",), materials=("water",))
    with pytest.raises(TypeError, match=r"`structures\[0\]` must be a PhantomStructure"):
        Phantom.create("x", [("a", "water", _E)])
    with pytest.raises(ValueError, match="at least one structure"):
        Phantom.create("x", [])
    with pytest.raises(KeyError, match="unknown structure 'livr'"):
        Phantom.create("ok", [organ]).structure("livr")
