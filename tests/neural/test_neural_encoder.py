"""The SimCLR image encoder on real CT patches (pydicom-data and pydicom test files).

Measured on 2 CPU cores (pool of 292 non-overlapping 32×32 body patches; 150 steps of 64):
the NT-Xent loss falls from 3.97 (mean of the first 10 steps; log(127) = 4.84 for features that
carry no information) to 2.73 (last 10); two augmented views of one patch are at mean distance
0.41 in the unit-norm embedding, a view and a different patch's view at 1.23 (a margin of 0.82),
and the two views are nearer each other than to the other patch for 91 % of the patches (the
rest are near-uniform soft-tissue patches that look alike). Training: about 10 s, compilation
included.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from medphys.neural import Encoder, embed, train_encoder
from medphys.neural._encoder import augment, nt_xent

data_store = pytest.importorskip("data_store")

from real_ct import ct_tiles  # noqa: E402  (after the skip: it reads the wheel's files)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    x = ct_tiles()
    return x[np.asarray(jax.random.permutation(jax.random.key(0), len(x)))]


@pytest.fixture(scope="module")
def trained(patches):
    losses: list[float] = []
    enc = train_encoder(
        jax.random.key(1),
        patches,
        steps=150,
        batch=64,
        progress=False,
        callback=lambda step, loss: losses.append(loss),
    )
    return enc, np.asarray(losses)


def test_pool_is_real_ct(patches):
    assert patches.shape[1:] == (32, 32) and len(patches) >= 250
    assert -1100 < patches.min() and patches.max() > 500  # air to bone, in HU


def test_loss_decreases(trained):
    _, losses = trained
    first, last = losses[:10].mean(), losses[-10:].mean()
    print(f"NT-Xent first 10 {first:.3f}, last 10 {last:.3f}")
    assert losses.shape == (150,) and np.all(np.isfinite(losses))
    assert first > 3.5 and last < first - 0.8


def test_views_of_one_patch_are_closer_than_different_patches(trained, patches):
    enc, _ = trained
    graphdef, state = nnx.split(enc)

    @jax.jit
    def view_features(key, images):
        e = nnx.merge(graphdef, state)
        keys = jax.random.split(key, images.shape[0])
        return e.features(jax.vmap(augment)(keys, e.standardise(images)))

    key = jax.random.key(7)
    f1 = np.asarray(view_features(jax.random.fold_in(key, 1), patches))
    f2 = np.asarray(view_features(jax.random.fold_in(key, 2), patches))
    same = np.linalg.norm(f1 - f2, axis=1)
    other = np.linalg.norm(f1 - np.roll(f2, 1, axis=0), axis=1)  # a different patch each
    margin = float(np.mean(other) - np.mean(same))
    won = float(np.mean(same < other))
    print(f"views {same.mean():.3f}, others {other.mean():.3f}, margin {margin:.3f}, won {won:.3f}")
    assert margin > 0.5
    assert won > 0.85


def test_same_key_gives_bitwise_equal_weights(patches):
    a = train_encoder(jax.random.key(5), patches, steps=4, batch=64, progress=False)
    b = train_encoder(jax.random.key(5), patches, steps=4, batch=64, progress=False)
    c = train_encoder(jax.random.key(6), patches, steps=4, batch=64, progress=False)
    la, lb, lc = (jax.tree_util.tree_leaves(nnx.state(e, nnx.Param)) for e in (a, b, c))
    assert all(x.dtype == jnp.float32 for x in la)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))
    assert not all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lc, strict=True)
    )


def test_embed_is_unit_norm_float32_and_chunk_independent(trained, patches):
    enc, _ = trained
    f = embed(enc, patches[:50])
    assert f.shape == (50, 32) and f.dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(np.asarray(f), axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(embed(enc, patches[:50], chunk=7)), f, atol=1e-6)
    np.testing.assert_allclose(np.asarray(enc(patches[:50])), f, atol=1e-6)  # eager == jit


def test_nt_xent_equals_numpy(rng):
    z1 = rng.normal(size=(5, 4))
    z2 = rng.normal(size=(5, 4))
    z1 /= np.linalg.norm(z1, axis=1, keepdims=True)
    z2 /= np.linalg.norm(z2, axis=1, keepdims=True)
    z = np.concatenate([z1, z2])
    tau = 0.3
    total = 0.0
    for i in range(10):
        p = (i + 5) % 10
        den = sum(np.exp(z[i] @ z[j] / tau) for j in range(10) if j != i)
        total += -np.log(np.exp(z[i] @ z[p] / tau) / den)
    np.testing.assert_allclose(float(nt_xent(z1, z2, temperature=tau)), total / 10, rtol=1e-10)


def test_three_dimensional_encoder_embeds(rng):
    x = rng.normal(size=(12, 8, 8, 8)).cumsum(axis=1)
    enc = Encoder(jax.random.key(0), ndim=3, dim=8, channels=(4, 8))
    f = embed(enc, x)
    assert f.shape == (12, 8)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(f), axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_three_dimensional_training(rng):
    """About 12 s on 2 cores (the 3-D convolutions' gradient compiles slowly)."""
    x = rng.normal(size=(12, 8, 8, 8)).cumsum(axis=1)
    enc = train_encoder(jax.random.key(0), x, steps=2, batch=8, dim=8, progress=False)
    assert enc.ndim == 3
    f = embed(enc, x)
    assert f.shape == (12, 8)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(f), axis=1), 1.0, rtol=1e-5)


def test_bad_input_is_refused(rng):
    good = rng.normal(size=(10, 16, 16))
    with pytest.raises(ValueError, match=r"medphys\.neural\.train_encoder: `patches` must be"):
        train_encoder(jax.random.key(0), good[0], progress=False)
    with pytest.raises(ValueError, match="at least `batch` = 64 images"):
        train_encoder(jax.random.key(0), good, progress=False)
    bad = good.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="`patches` must be finite"):
        train_encoder(jax.random.key(0), bad, batch=4, progress=False)
    with pytest.raises(ValueError, match="at least 8 pixels"):
        train_encoder(jax.random.key(0), good[:, :4, :4], batch=4, progress=False)
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1"):
        train_encoder(jax.random.key(0), good, steps=0, batch=4, progress=False)
    with pytest.raises(ValueError, match="constant"):
        train_encoder(jax.random.key(0), np.ones((10, 16, 16)), batch=4, progress=False)
    with pytest.raises(TypeError, match=r"medphys\.neural\.embed: `encoder` must be"):
        embed(object(), good)
    enc = Encoder(jax.random.key(0), ndim=2)
    with pytest.raises(ValueError, match=r"embed: `images` must be \(n, H, W\)"):
        embed(enc, rng.normal(size=(2, 8, 8, 8)))
