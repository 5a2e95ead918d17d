"""Sim-to-real refiner: networks, loss terms against direct computations, data checks, training
reproducibility and resume, and (slow) the physics-consistency audit with and without physics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medphys import audit, io, metrics, neural, simulators
from medphys.simulators import xray

data_store = pytest.importorskip("data_store")


def _protocol(views: int):
    """The body CT protocol with ``views`` views over 360° at the same total mAs."""
    return xray.with_views(simulators.load("ct-chest-120kvp"), views)


def _real_slices():
    from pydicom.data import get_testdata_file

    files = [Path(data_store.__file__).parent / "data" / "693_UNCR.dcm"]
    files.append(get_testdata_file("CT_small.dcm"))
    images = io.load_real_images(files, modality="CT")
    return [(a, s) for a, s, _ in images.slices()]


@pytest.fixture(scope="module")
def tiny():
    """Three adult-head cases of 32 × 32 × 1 at 6.4 mm (60 views) and 32 real 16² patches."""
    sim = neural.simulate_ct(
        jax.random.key(0),
        "adult-head",
        _protocol(60),
        cases=3,
        shape=(32, 32, 1),
        spacing_mm=(6.4, 6.4, 5.0),
        center_mm=(0.0, 0.0, 20.0),
    )
    real = neural.real_patches(
        jax.random.key(1), _real_slices(), spacing_mm=sim.spacing_mm, size=16, count=32
    )
    return sim, real


TINY = neural.RefineConfig(
    steps=4,
    width=8,
    depth=2,
    blocks=1,
    disc_width=8,
    disc_layers=2,
    nce_patches=16,
    nps_bins=6,
    checkpoint_every=2,
)


def test_refiner_starts_as_identity_and_keeps_shape_and_dtype():
    hu = jnp.asarray(np.random.default_rng(0).normal(40, 30, (2, 16, 16)), jnp.float32)
    r2 = neural.Refiner(jax.random.key(0), width=8, depth=2, blocks=1)
    out = jax.jit(lambda m, x: m(x))(r2, hu)
    assert out.shape == hu.shape and out.dtype == hu.dtype
    np.testing.assert_array_equal(np.asarray(out), np.asarray(hu))
    assert r2.multiple == 4
    cond = neural.Refiner(jax.random.key(0), width=8, depth=2, blocks=1, labels=3)
    labels = jnp.zeros((2, 16, 16), jnp.int32)
    assert jax.jit(lambda m, x, y: m(x, y))(cond, hu, labels).shape == hu.shape
    with pytest.raises(ValueError, match="label-conditioned"):
        cond(hu)
    with pytest.raises(ValueError, match="`dim` must be 2 or 3"):
        neural.Refiner(jax.random.key(0), dim=1)
    with pytest.raises(ValueError, match="`width` must be an integer >= 1"):
        neural.Refiner(jax.random.key(0), width=0)
    d = neural.PatchDiscriminator(jax.random.key(1), width=8, layers=2)
    assert jax.jit(lambda m, x: m(x))(d, hu).shape == (2, 4, 4)


@pytest.mark.slow
def test_refiner_in_3d_starts_as_identity():
    vol = jnp.asarray(np.random.default_rng(0).normal(40, 30, (1, 8, 8, 8)), jnp.float32)
    r3 = neural.Refiner(jax.random.key(0), dim=3, width=4, depth=1, blocks=1)
    np.testing.assert_array_equal(np.asarray(r3(vol)), np.asarray(vol))
    assert neural.PatchDiscriminator(jax.random.key(1), dim=3, width=4, layers=2)(vol).shape == (
        1,
        2,
        2,
        2,
    )


def test_intensity_shift_and_edges_equal_direct_computation():
    rng = np.random.default_rng(1)
    sim = rng.normal(0, 10, (2, 12, 12))
    ref = sim + rng.normal(3, 1, (2, 12, 12))
    masks = np.stack([rng.random((2, 12, 12)) > 0.5, np.zeros((2, 12, 12), bool)])
    shift, present = neural.intensity_shift(jnp.asarray(ref), jnp.asarray(sim), jnp.asarray(masks))
    np.testing.assert_allclose(float(shift[0]), np.mean((ref - sim)[masks[0]]), rtol=1e-12)
    assert bool(present[0]) and not bool(present[1]) and float(shift[1]) == 0.0
    loss = neural.intensity_loss(jnp.asarray(ref), jnp.asarray(sim), jnp.asarray(masks))
    np.testing.assert_allclose(float(loss), (np.mean((ref - sim)[masks[0]]) / 10) ** 2, rtol=1e-12)
    # a constant offset has no gradient: zero edge loss; a ramp has |slope| per pixel
    edges = jnp.asarray(rng.random((2, 12, 12)) > 0.3)
    assert float(neural.edge_loss(jnp.asarray(sim + 7.0), jnp.asarray(sim), edges)) < 1e-12
    ramp = sim + 5.0 * np.arange(12)[None, :, None]
    slope = np.broadcast_to(np.where(np.arange(12)[:, None] < 11, 5.0, 0.0), (2, 12, 12))
    expected = np.mean(slope[np.asarray(edges)]) / 100
    np.testing.assert_allclose(
        float(neural.edge_loss(jnp.asarray(ramp), jnp.asarray(sim), edges)), expected, rtol=1e-12
    )


def test_measurement_residual_is_zero_for_the_image_that_made_the_data(tiny):
    sim, _ = tiny
    hu = sim.hu[0]
    p = sim.projector.project(neural.hu_to_mu(hu, sim.mu_water_per_mm))
    assert float(neural.measurement_residual(hu, p, sim.projector, sim.mu_water_per_mm)) < 1e-12
    # the scans' own residual is the noise FBP leaves: positive, well below the data's scale
    assert np.all(np.asarray(sim.residual) > 0)
    assert np.all(np.asarray(sim.residual) < 1e-2 * float(jnp.mean(sim.projections**2)))


def test_patch_nce_prefers_matching_positions():
    rng = np.random.default_rng(2)
    refiner = neural.Refiner(jax.random.key(0), width=8, depth=1, blocks=0)
    heads = neural.PatchHeads(jax.random.key(1), refiner)
    x = jnp.asarray(rng.normal(0, 100, (2, 16, 16)), jnp.float32)
    feats = refiner.encode(x)
    same = neural.patch_nce(heads, feats, feats, jax.random.key(3), patches=32)
    shuffled = [jnp.flip(f, axis=1) for f in feats]
    other = neural.patch_nce(heads, feats, shuffled, jax.random.key(3), patches=32)
    assert float(same) < float(other)
    assert float(same) < np.log(32)  # better than chance among 32 positions


def test_real_tiles_are_disjoint_and_patches_of_a_tile_are_that_tile():
    rng = np.random.default_rng(3)
    image = rng.normal(40.0, 10.0, (50, 41))
    image[:, 30:] = -1000.0  # air on one side
    tiles = neural.real_tiles([(image, (1.0, 1.0))], spacing_mm=(1.0, 1.0), size=10)
    expected = [image[x : x + 10, y : y + 10] for x in range(0, 41, 10) for y in (0, 10, 20)]
    np.testing.assert_array_equal(tiles, np.asarray(expected, np.float32))  # y = 30 is air
    half = neural.real_tiles([(image, (0.5, 0.5))], spacing_mm=(1.0, 1.0), size=10)
    assert half.shape == (2, 10, 10)  # 25 × 20 pixels at 1 mm
    one = neural.real_patches(
        jax.random.key(0),
        [(t, (1.0, 1.0)) for t in tiles[:3]],
        spacing_mm=(1.0, 1.0),
        size=10,
        count=6,
    )
    assert all(any(np.array_equal(p, t) for t in tiles[:3]) for p in one)
    with pytest.raises(ValueError, match="no 10×10 tile"):
        neural.real_tiles(
            [(np.full((30, 30), -1000.0), (1.0, 1.0))], spacing_mm=(1.0, 1.0), size=10
        )


def test_simulated_ct_and_patches_reject_bad_input(tiny):
    sim, real = tiny
    with pytest.raises(ValueError, match="`hu` must be"):
        neural.SimulatedCT.create(
            np.zeros((1, 8, 8, 1)),
            np.zeros((1, 8, 8, 1), int),
            sim.projections[:1],
            sim.projector,
            sim.mu_water_per_mm,
        )
    with pytest.raises(ValueError, match="`labels` must be integers"):
        neural.SimulatedCT.create(
            sim.hu,
            np.asarray(sim.labels, float),
            sim.projections,
            sim.projector,
            sim.mu_water_per_mm,
        )
    with pytest.raises(ValueError, match="`projections` must be"):
        neural.SimulatedCT.create(
            sim.hu, sim.labels, sim.projections[:, :-1], sim.projector, sim.mu_water_per_mm
        )
    with pytest.raises(ValueError, match="`mu_water_per_mm` must be > 0"):
        neural.SimulatedCT.create(sim.hu, sim.labels, sim.projections, sim.projector, 0.0)
    with pytest.raises(ValueError, match="`images` is empty"):
        neural.real_patches(jax.random.key(0), [], spacing_mm=(1, 1), size=8, count=2)
    with pytest.raises(ValueError, match="no image has a 64×64 patch"):
        neural.real_patches(
            jax.random.key(0),
            [(np.full((40, 40), 40.0), (1.0, 1.0))],
            spacing_mm=(1.0, 1.0),
            size=64,
            count=2,
        )
    with pytest.raises(ValueError, match="square 2-D patches"):
        neural.prepare_refine(sim, real[:, :, :8], config=TINY)
    with pytest.raises(ValueError, match="at least 8 patches"):
        neural.prepare_refine(sim, real[:4], config=TINY)
    # MR-like patches (values of order 1) are not CT in HU
    with pytest.raises(ValueError, match="are they MR images"):
        neural.prepare_refine(sim, real / 1000.0, config=TINY)
    with pytest.raises(ValueError, match="must not exceed what the refiner sees"):
        neural.prepare_refine(sim, np.zeros((8, 40, 40)), config=TINY)
    with pytest.raises(ValueError, match="multiple of 2\\*\\*depth"):
        neural.prepare_refine(sim, real, config=dataclasses.replace(TINY, depth=6))
    with pytest.raises(ValueError, match="no real patch has soft tissue"):
        neural.prepare_refine(sim, np.full((8, 16, 16), -1000.0), config=TINY)
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1"):
        neural.prepare_refine(sim, real, config=dataclasses.replace(TINY, steps=0))
    with pytest.raises(TypeError, match="SimulatedCT"):
        neural.prepare_refine(sim.hu, real, config=TINY)


def test_training_is_reproducible_and_resumes_after_an_interruption(tiny, tmp_path):
    """The same key gives bitwise-equal weights; a run killed after its step-2 checkpoint and
    rerun equals an uninterrupted run; a checkpoint of another configuration is refused."""
    sim, real = tiny
    a = neural.train_refiner(jax.random.key(5), sim, real, config=TINY, progress=False)
    b = neural.train_refiner(jax.random.key(5), sim, real, config=TINY, progress=False)
    leaves_a = jax.tree_util.tree_leaves(a.state.generator)
    leaves_b = jax.tree_util.tree_leaves(b.state.generator)
    assert all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b, strict=True))
    assert a.losses.shape == (4, len(a.terms)) and np.all(np.isfinite(a.losses))
    assert "after 4 steps" in a.summary

    path = tmp_path / "refiner.npz"

    def kill(step, terms, problem, state):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        neural.train_refiner(
            jax.random.key(5),
            sim,
            real,
            config=TINY,
            checkpoint=path,
            progress=False,
            callback=kill,
        )
    resumed = neural.train_refiner(
        jax.random.key(5), sim, real, config=TINY, checkpoint=path, progress=False
    )
    leaves_r = jax.tree_util.tree_leaves(resumed.state.generator)
    assert all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_r, strict=True))
    np.testing.assert_array_equal(resumed.losses, a.losses)
    with pytest.raises(ValueError, match="belongs to another configuration"):
        neural.train_refiner(
            jax.random.key(5),
            sim,
            real,
            progress=False,
            checkpoint=path,
            config=dataclasses.replace(TINY, texture=0.5),
        )
    refined = neural.refine(a.refiner, sim.hu[0])
    assert refined.shape == sim.hu[0].shape
    with pytest.raises(ValueError, match="multiple of"):
        neural.refine(a.refiner, sim.hu[0][:30])


def test_a_label_conditioned_refiner_needs_the_label_map_to_apply(tiny):
    """A refiner with label channels needs the image's label map, of its shape and within the
    label values it was built for; one without refuses a map."""
    sim, _ = tiny
    labels = np.asarray(sim.labels[0])
    conditioned = neural.Refiner(
        jax.random.key(0), width=8, depth=2, blocks=1, labels=max(sim.label_values) + 1
    )
    refined = neural.refine(conditioned, sim.hu[0], labels=labels)
    assert refined.shape == sim.hu[0].shape
    with pytest.raises(ValueError, match="is label-conditioned"):
        neural.refine(conditioned, sim.hu[0])
    with pytest.raises(ValueError, match="knows 0"):
        neural.refine(conditioned, sim.hu[0], labels=np.full(labels.shape, 99))
    with pytest.raises(ValueError, match="label map of the image's shape"):
        neural.refine(conditioned, sim.hu[0], labels=labels[:8])
    plain = neural.Refiner(jax.random.key(0), width=8, depth=2, blocks=1)
    with pytest.raises(ValueError, match="not label-conditioned"):
        neural.refine(plain, sim.hu[0], labels=labels)


@pytest.mark.slow
def test_label_conditioned_training_uses_the_labels(tiny):
    """``RefineConfig(label_conditioning=True)``: the generator sees one-hot label values 0 …
    max, and after training its output depends on the label map."""
    sim, real = tiny
    cfg = dataclasses.replace(TINY, steps=2, label_conditioning=True, checkpoint_every=0)
    result = neural.train_refiner(jax.random.key(5), sim, real, config=cfg, progress=False)
    assert result.refiner.n_labels == max(sim.label_values) + 1
    labels = np.asarray(sim.labels[0])
    refined = neural.refine(result.refiner, sim.hu[0], labels=labels)
    assert np.all(np.isfinite(np.asarray(refined)))
    other = neural.refine(result.refiner, sim.hu[0], labels=np.zeros_like(labels))
    assert not np.array_equal(np.asarray(other), np.asarray(refined))


@pytest.mark.slow
def test_physics_terms_keep_the_audit_passing_and_their_absence_fails_it():
    """Adult-head CT (4 training cases + 1 held out, 64 × 64 × 2 at 3.2 mm, 120 views) refined
    toward real CT patches for 200 steps (at 3.2 mm only the CQ500 head slice holds a 32-pixel
    patch; CT_small is too small), with and without the physics terms.

    Measured (CPU): with physics the held-out case passes every criterion (residual ratio
    0.99, largest soft-tissue shift 2.4 HU, Dice retention 0.99, mass change −0.06 %) and its
    NPS moves toward the real images' (RMS log₁₀ difference 0.64 → 0.52) as does its soft-tissue
    intensity distribution; without physics it fails them (ratio 2.2, shifts up to 25 HU, Dice
    retention 0.35, mass −1.2 %)."""
    sim = neural.simulate_ct(
        jax.random.key(0),
        "adult-head",
        _protocol(120),
        cases=5,
        shape=(64, 64, 2),
        spacing_mm=(3.2, 3.2, 5.0),
        center_mm=(0.0, 0.0, 20.0),
    )
    real = neural.real_patches(
        jax.random.key(1), _real_slices(), spacing_mm=sim.spacing_mm, size=32, count=128
    )
    train, test = sim.take(np.arange(4)), sim.take(np.arange(4, 5))
    config = neural.RefineConfig(steps=200)
    reports = {}
    for name, cfg in (("physics", config), ("none", config.without_physics())):
        result = neural.train_refiner(jax.random.key(2), train, real, config=cfg, progress=False)
        refined = jnp.stack([neural.refine(result.refiner, h) for h in test.hu])
        reports[name] = (audit.physics_audit(test, refined, real=real), refined)
    good, refined = reports["physics"]
    assert good.passed, good.describe()
    assert good.criterion("nps_distance_to_real").passed
    soft = (np.asarray(test.hu) > -100) & (np.asarray(test.hu) < 200)
    before = metrics.intensity_wasserstein(
        np.asarray(test.hu)[soft], real[(real > -100) & (real < 200)]
    )
    after = metrics.intensity_wasserstein(
        np.asarray(refined)[soft], real[(real > -100) & (real < 200)]
    )
    assert float(after) < float(before)
    bad, _ = reports["none"]
    assert not bad.passed, bad.describe()
    failed = {c.name for c in bad.criteria if c.passed is False}
    assert {"measurement_residual", "label_hu_shift"} <= failed
