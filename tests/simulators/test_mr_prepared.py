"""The prepared MR operator: `mr.prepare(grid, protocol, compartments=...)` → `MRScanner`.

Its transform contract (jit == eager, vmap over cases == loop, gradients with respect to the
tissue maps, no retrace, dtype kept), its identity with the one-call wrappers, and its errors.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import medphys
from medphys.simulators import mr
from medphys.volume import LabeledVolume, Structure

GRID = medphys.Grid.create((8, 8, 2), spacing_mm=(3.0, 3.5, 5.0), center_mm=(4.0, -2.0, 10.0))
NAMES = ("adipose", "muscle", "csf")

# every key-dependent step: field variation, random mask, noise (SNR on a named compartment)
PROTOCOL = mr.MRProtocol.create(
    mr.GradientEcho.create(te_s=0.005, tr_s=0.1, flip_deg=30.0),
    field_t=1.5,
    coils=mr.LoopCoils.create(3),
    sampling=mr.RandomMask.create(2.0, acs_lines=2),
    snr=15.0,
    snr_reference="muscle",
    field_variation=mr.FieldVariation.create(b0_std_hz=20.0, b1_std=0.05),
)


def _maps(seed: int = 0, dtype=jnp.float32, grid=GRID, names=NAMES) -> mr.TissueMaps:
    """Random partial-volume maps: every voxel is 40-95 % occupied (no zero-signal voxel)."""
    rng = np.random.default_rng(seed)
    c = len(names)
    raw = rng.uniform(0.1, 1.0, (c, *grid.shape))
    fractions = raw / raw.sum(axis=0) * rng.uniform(0.4, 0.95, grid.shape)
    return mr.TissueMaps.create(
        fractions,
        pd=rng.uniform(0.6, 1.0, c),
        t1_s=rng.uniform(0.3, 2.0, c),
        t2_s=rng.uniform(0.04, 0.3, c),
        t2star_s=rng.uniform(0.02, 0.04, c),
        affine=grid.affine,
        names=names,
        dtype=dtype,
    )


def _stack(*trees):
    return jax.tree.map(lambda *x: jnp.stack(x), *trees)


def _op(protocol=PROTOCOL, dtype=jnp.float32) -> mr.MRScanner:
    return mr.prepare(GRID, protocol, compartments=NAMES, dtype=dtype)


def _assert_same_bytes(a: mr.MRResult, b: mr.MRResult) -> None:
    for x, y in (
        (a.kspace, b.kspace),
        (a.image.data, b.image.data),
        (a.mask, b.mask),
        (a.noise_std, b.noise_std),
        (a.coil_maps, b.coil_maps),
        (a.maps.b0_hz, b.maps.b0_hz),
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(a.image.affine, b.image.affine)


# --- the operator is the wrappers -----------------------------------------------------------------


# float32 in the slow tier (about 3 s): the same code path as float64; the contract registry
# keeps the float32 dtype of the MR operators in the default tier
@pytest.mark.parametrize("dtype", [pytest.param(jnp.float32, marks=pytest.mark.slow), jnp.float64])
def test_prepared_operator_equals_acquire_bit_for_bit(dtype):
    maps = _maps(1, dtype)
    key = jax.random.key(3)
    op = mr.prepare(maps.grid, PROTOCOL, compartments=maps.names, dtype=dtype)
    _assert_same_bytes(op.acquire(key, maps), mr.acquire(key, maps, PROTOCOL))
    np.testing.assert_array_equal(np.asarray(op.acquire(key, maps).image.affine), GRID.affine)


def test_prepared_operator_equals_simulate_bit_for_bit():
    labels = np.zeros(GRID.shape, np.int32)
    labels[2:6, 2:7] = 1
    labels[3:5, 3:5] = 2
    rows = [Structure(i, m, m) for i, m in enumerate(NAMES)]
    phantom = LabeledVolume.create(labels, rows, affine=GRID.affine)
    key = jax.random.key(11)
    maps = mr.tissue_maps(phantom, PROTOCOL.field_t)
    op = mr.prepare(phantom.grid, PROTOCOL, compartments=maps.names)
    _assert_same_bytes(op.acquire(key, maps), mr.simulate(key, phantom, PROTOCOL))


def test_reconstruct_is_the_result_image():
    op = _op()
    result = op.acquire(jax.random.key(0), _maps())
    image = op.reconstruct(result.kspace)
    assert image.shape == GRID.shape and image.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(image), np.asarray(result.image.data), rtol=1e-6, atol=1e-7
    )


# --- transform contract ---------------------------------------------------------------------------


@pytest.mark.slow  # about 20 s; the contract registry (test_contracts.py) checks jit == eager for the MR operators in the default tier
def test_jit_equals_eager():
    op, maps, key = _op(), _maps(2), jax.random.key(5)
    jitted = jax.jit(op.acquire)(key, maps)
    with jax.disable_jit():
        eager = op.acquire(key, maps)
    np.testing.assert_array_equal(np.asarray(jitted.mask), np.asarray(eager.mask))
    scale = float(jnp.max(eager.image.data))
    np.testing.assert_allclose(
        np.asarray(jitted.image.data), np.asarray(eager.image.data), atol=2e-6 * scale
    )
    np.testing.assert_allclose(
        np.asarray(jitted.kspace),
        np.asarray(eager.kspace),
        atol=2e-6 * float(jnp.max(jnp.abs(eager.kspace))),
    )
    np.testing.assert_allclose(float(jitted.noise_std), float(eager.noise_std), rtol=1e-5)


@pytest.mark.slow  # twins in the default tier: vmap over maps of the prepared operator
# (test_contracts, mr.MRScanner.acquire) and over keys (test_mr_acquisition::test_vmap_over_keys)
def test_vmap_over_cases_equals_loop():
    op = _op()
    cases = [_maps(10), _maps(11)]
    keys = jax.random.split(jax.random.key(4), 2)
    batched = jax.jit(jax.vmap(op.acquire))(keys, _stack(*cases))
    assert batched.image.data.shape == (2, *GRID.shape)
    assert batched.kspace.shape == (2, 3, *GRID.shape)
    for i, (k, m) in enumerate(zip(keys, cases, strict=True)):
        one = op.acquire(k, m)
        np.testing.assert_array_equal(np.asarray(batched.mask[i]), np.asarray(one.mask))
        scale = float(jnp.max(one.image.data))
        np.testing.assert_allclose(
            np.asarray(batched.image.data[i]), np.asarray(one.image.data), atol=2e-6 * scale
        )
    assert not np.allclose(np.asarray(batched.image.data[0]), np.asarray(batched.image.data[1]))
    # one key for every case: the same noise and mask, different anatomy
    shared = jax.vmap(op.acquire, in_axes=(None, 0))(keys[0], _stack(*cases))
    np.testing.assert_array_equal(np.asarray(shared.mask[0]), np.asarray(shared.mask[1]))


@pytest.mark.slow  # twins in the default tier: check_grads of the prepared operator w.r.t. the
# fractions (test_contracts) and of the signal equations w.r.t. T1, T2 (test_mr_signal)
def test_gradients_with_respect_to_the_tissue_maps():
    # float64, full sampling (a smooth function of the maps), noise at an SNR on a named
    # compartment and a random B0/B1 draw included
    protocol = mr.MRProtocol.create(
        mr.SpinEcho.create(te_s=0.02, tr_s=0.6),
        field_t=1.5,
        coils=mr.LoopCoils.create(2),
        snr=20.0,
        snr_reference="muscle",
        field_variation=mr.FieldVariation.create(b0_std_hz=10.0, b1_std=0.05),
    )
    maps = _maps(3, jnp.float64)
    op = _op(protocol, jnp.float64)
    weights = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, GRID.shape))
    key = jax.random.key(1)

    def loss(pd, t2_s):
        image = op.acquire(key, dataclasses.replace(maps, pd=pd, t2_s=t2_s)).image.data
        return jnp.sum(weights * image**2) / image.size

    check_grads(loss, (maps.pd, maps.t2_s), order=1, modes=("fwd", "rev"))
    g_pd, g_t2 = jax.grad(loss, argnums=(0, 1))(maps.pd, maps.t2_s)
    assert np.all(np.isfinite(np.asarray(g_pd))) and np.all(np.asarray(g_t2) > 0)


def test_no_retrace_on_new_data():
    op = _op()
    jitted = jax.jit(op.acquire)
    a = jitted(jax.random.key(0), _maps(20))
    b = jitted(jax.random.key(1), _maps(21))
    assert jitted._cache_size() == 1
    assert not np.allclose(np.asarray(a.image.data), np.asarray(b.image.data))
    # the operator itself may be an argument: another protocol value of the same structure
    # (another SNR) reuses the compiled program
    apply = jax.jit(lambda op, k, m: op.acquire(k, m).image.data)
    apply(op, jax.random.key(0), _maps(20))
    apply(_op(dataclasses.replace(PROTOCOL, snr=30.0)), jax.random.key(0), _maps(21))
    assert apply._cache_size() == 1


def test_dtype_is_kept():
    r32 = _op().acquire(jax.random.key(0), _maps(0, jnp.float32))
    assert r32.image.data.dtype == jnp.float32 and r32.kspace.dtype == jnp.complex64
    assert r32.noise_std.dtype == jnp.float32 and r32.coil_maps.dtype == jnp.complex64
    assert r32.mask.dtype == jnp.float32 and r32.maps.b1.dtype == jnp.float32
    r64 = _op(dtype=jnp.float64).acquire(jax.random.key(0), _maps(0, jnp.float64))
    assert r64.image.data.dtype == jnp.float64 and r64.kspace.dtype == jnp.complex128
    assert r64.coil_maps.dtype == jnp.complex128
    # maps of another precision than the operator's are acquired in their own
    mixed = _op(dtype=jnp.float64).acquire(jax.random.key(0), _maps(0, jnp.float32))
    assert mixed.image.data.dtype == jnp.float32 and mixed.kspace.dtype == jnp.complex64
    scale = float(jnp.max(r32.image.data))
    np.testing.assert_allclose(
        np.asarray(mixed.image.data), np.asarray(r32.image.data), atol=1e-5 * scale
    )


# --- the Bloch tier: planned on the host, eager only ----------------------------------------------


def test_bloch_operator_runs_eagerly_and_refuses_tracing():
    protocol = mr.MRProtocol.create(
        mr.BlochSpinEcho.create(te_s=0.015, tr_s=0.3), field_t=1.5, snr=30.0
    )
    maps, key = _maps(4), jax.random.key(2)
    op = _op(protocol)
    assert op.bloch is not None and op.bloch.steps.n_adc == 64  # lowered once, for the grid
    _assert_same_bytes(op.acquire(key, maps), mr.acquire(key, maps, protocol))
    message = r"MRScanner\.acquire: the Bloch tier chooses its isochromats on the host"
    with pytest.raises(TypeError, match=message):
        jax.jit(op.acquire)(key, maps)
    with pytest.raises(TypeError, match=message):
        jax.vmap(op.acquire)(jax.random.split(key, 2), _stack(maps, maps))
    with pytest.raises(TypeError, match=message):  # T2 places the isochromats' offsets

        def loss(t2_s):
            return jnp.sum(op.acquire(key, dataclasses.replace(maps, t2_s=t2_s)).image.data)

        jax.grad(loss)(maps.t2_s)


# --- input errors ---------------------------------------------------------------------------------


def test_bad_maps_are_refused_when_traced():
    op = _op()
    key = jax.random.key(0)
    moved = medphys.Grid.create(GRID.shape, spacing_mm=(3.0, 3.5, 5.0), center_mm=(0, 0, 0))
    cases = [
        (_maps(grid=moved), r"`maps` must be on the prepared grid \(shape \(8, 8, 2\), "),
        (
            _maps(grid=medphys.Grid.create((8, 6, 2), affine=GRID.affine)),
            r"`maps` must be on the prepared grid .*got shape \(8, 6, 2\)",
        ),
        (
            _maps(names=("adipose", "muscle")),
            r"`maps` must have 3 compartments, \['adipose', 'muscle', 'csf'\] \(got 2: ",
        ),
        (
            _maps(names=("muscle", "adipose", "csf")),
            r"`maps\.names` must be the prepared compartments .* in that order",
        ),
        (_stack(_maps(0), _maps(1)), r"`maps\.fractions` must have shape .*map over a batch"),
    ]
    for maps, match in cases:
        # jax.eval_shape only traces: the checks run before anything is computed
        with pytest.raises(ValueError, match=r"MRScanner\.acquire: " + match):
            jax.eval_shape(op.acquire, key, maps)
    with pytest.raises(TypeError, match=r"MRScanner\.acquire: `maps` must be a TissueMaps"):
        op.acquire(key, _maps().fractions)
    with pytest.raises(ValueError, match=r"reconstruct: `kspace` must have shape \(3, 8, 8, 2\)"):
        jax.eval_shape(op.reconstruct, jnp.zeros((2, 8, 8, 2), jnp.complex64))


def test_bad_prepare_input():
    where = r"medphys\.simulators\.mr\.prepare: "
    phantom = LabeledVolume.create(np.zeros(GRID.shape, np.int32), [Structure(0, "a", "adipose")])
    with pytest.raises(TypeError, match=where + r"`grid` must be a medphys\.Grid"):
        mr.prepare(phantom, PROTOCOL, compartments=NAMES)
    with pytest.raises(TypeError, match=where + r"`protocol` must be an MRProtocol"):
        mr.prepare(GRID, "mr-t1-se", compartments=NAMES)
    with pytest.raises(TypeError, match=where + r"`compartments` must be a sequence of names"):
        mr.prepare(GRID, PROTOCOL, compartments="muscle")
    with pytest.raises(ValueError, match=where + r"`compartments` must be at least one distinct"):
        mr.prepare(GRID, PROTOCOL, compartments=("muscle", "muscle"))
    with pytest.raises(KeyError, match=r"unknown SNR reference material .*'muscle'"):
        mr.prepare(GRID, PROTOCOL, compartments=("adipose", "csf"))
    with pytest.raises(ValueError, match=where + r"`coil_maps` must hold protocol\.n_coils = 3"):
        mr.prepare(GRID, PROTOCOL, compartments=NAMES, coil_maps=jnp.ones((2, *GRID.shape)))
    with pytest.raises(ValueError, match=where + r"`coil_maps` must be on the phantom's grid"):
        mr.prepare(GRID, PROTOCOL, compartments=NAMES, coil_maps=jnp.ones((3, 8, 8, 3)))
    with pytest.raises(ValueError, match=where + r"`dtype` must be a floating dtype"):
        mr.prepare(GRID, PROTOCOL, compartments=NAMES, dtype=jnp.int32)


def test_the_key_comes_first():
    phantom = LabeledVolume.create(np.zeros(GRID.shape, np.int32), [Structure(0, "a", "adipose")])
    with pytest.raises(TypeError, match=r"simulate: .*the key comes first: simulate\(key, "):
        mr.simulate(phantom, PROTOCOL, jax.random.key(0))
    with pytest.raises(TypeError, match=r"acquire: .*the key comes first: acquire\(key, "):
        mr.acquire(_maps(), PROTOCOL, jax.random.key(0))
