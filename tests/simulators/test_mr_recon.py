"""SENSE (CG) and partial-Fourier (POCS) reconstruction: error bounds against the true image."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medphys.simulators import mr

N = 64


def _object() -> np.ndarray:
    x, y = np.meshgrid(np.arange(N) - N // 2, np.arange(N) - N // 2, indexing="ij")
    img = ((x / 26.0) ** 2 + (y / 20.0) ** 2 < 1) * 1.0
    img = img + ((x - 5) ** 2 / 64 + (y + 3) ** 2 / 25 < 1) * 0.5
    img = img + ((x + 8) ** 2 + (y - 6) ** 2 < 16) * 0.3
    return img.astype(complex)[:, :, None]


def _coil_maps(n_coils: int = 8):
    affine = jnp.asarray(np.diag([3.0, 3.0, 3.0, 1.0]))
    return mr.LoopCoils.create(n_coils).sensitivities(affine, (N, N, 1), dtype=jnp.float64)


def _rel(a, b, where=...):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm((a - b)[where]) / np.linalg.norm(b[where])


@pytest.mark.slow  # about 12 s
def test_sense_recovers_a_2x_accelerated_image():
    img = _object()
    maps = _coil_maps()
    mask = mr.EquispacedMask.create(2).sample_mask(None, N, dtype=jnp.float64)
    kspace = mr.fft2c(maps * img[None]) * mask[None, None, :, None]
    recon, residuals = mr.sense(kspace, maps, mask, n_iter=50, return_residuals=True)
    support = np.abs(img) > 0
    # stated bound: relative L2 error below 1% in the object after 50 CG iterations (noise-free)
    assert _rel(recon, img, support) < 0.01
    assert float(residuals[-1]) < float(residuals[0])
    aliased = mr.rss(mr.ifft2c(kspace))
    assert _rel(aliased, np.abs(img), support) > 0.3  # what SENSE removed: the fold-over


@pytest.mark.slow  # about 6 s; test_sense_init_step_by_hand_equals_sense keeps SENSE in the default
def test_sense_with_noise_stays_near_the_noise_level():
    img = _object()
    maps = _coil_maps()
    mask = mr.EquispacedMask.create(2).sample_mask(None, N, dtype=jnp.float64)
    rng = np.random.default_rng(1)
    sigma = 0.01
    noise = sigma * (rng.standard_normal((8, N, N, 1)) + 1j * rng.standard_normal((8, N, N, 1)))
    kspace = (mr.fft2c(maps * img[None]) + noise) * mask[None, None, :, None]
    recon = mr.sense(kspace, maps, mask, n_iter=50, regularization=1e-3)
    support = np.abs(img) > 0
    assert _rel(recon, img, support) < 0.05


def test_partial_fourier_pocs_restores_the_missing_half():
    x, y = np.meshgrid(np.arange(N) - N // 2, np.arange(N) - N // 2, indexing="ij")
    phase = np.exp(1j * (0.02 * x + 0.015 * y + 0.0005 * x * y))[:, :, None]  # smooth B0 phase
    obj = _object() * phase
    mask = mr.PartialFourier.create(0.625).sample_mask(None, N, dtype=jnp.float64)
    assert int(mask.sum()) == 40 and float(mask[N // 2]) == 1.0
    kspace = mr.fft2c(obj[None]) * mask[None, None, :, None]
    zero_filled = mr.ifft2c(kspace)[0]
    recon = mr.pocs(kspace, mask, n_iter=20)[0]
    assert _rel(zero_filled, obj) > 0.08
    assert _rel(recon, obj) < 0.015  # stated bound: 1.5% complex L2 error (measured 0.9%)


def test_bad_input():
    maps = jnp.ones((4, N, N, 1), jnp.complex128)
    kspace = jnp.zeros((4, N, N, 1), jnp.complex128)
    mask = jnp.ones(N)
    with pytest.raises(ValueError, match=r"sense: `coil_maps` must hold one map per coil"):
        mr.sense(kspace, maps[:3], mask)
    with pytest.raises(ValueError, match=r"sense: `mask` must have shape \(ky,\) = \(64,\)"):
        mr.sense(kspace, maps, jnp.ones(N // 2))
    with pytest.raises(ValueError, match=r"sense: `coil_maps` grid"):
        mr.sense(kspace, maps[:, :32], mask)
    with pytest.raises(
        ValueError, match=r"PartialFourier.create: `fraction` must be in \(0.5, 1\]"
    ):
        mr.PartialFourier.create(0.4)
    with pytest.raises(ValueError, match=r"pocs: `mask` has no symmetric band"):
        mr.pocs(kspace, jnp.zeros(N).at[-3:].set(1.0))


def test_sense_init_step_by_hand_equals_sense():
    img = _object()
    maps = _coil_maps()
    mask = mr.EquispacedMask.create(2).sample_mask(None, N, dtype=jnp.float64)
    kspace = mr.fft2c(maps * img[None]) * mask[None, None, :, None]
    n = 12
    want, residuals = mr.sense(kspace, maps, mask, n_iter=n, return_residuals=True)
    solver = mr.sense_solver(maps, mask)
    state = solver.init(kspace)
    assert int(state.iteration) == 0 and float(state.residual) == 1.0
    history = []
    for _ in range(n):
        state = solver.step(state)
        history.append(float(state.residual))
    assert int(state.iteration) == n
    np.testing.assert_allclose(np.asarray(state.x), np.asarray(want), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(history, np.asarray(residuals), rtol=1e-8)
    # `run` is the same loop; the 2x bound of `sense` holds for the hand-driven iterations too
    np.testing.assert_allclose(np.asarray(solver.run(kspace, n).x), np.asarray(state.x))
    support = np.abs(img) > 0
    assert _rel(solver.run(kspace, 50).x, img, support) < 0.01
    # and with regularization (the same λ in both)
    reg = mr.sense(kspace, maps, mask, n_iter=5, regularization=0.1)
    by_hand = mr.sense_solver(maps, mask, regularization=0.1).run(kspace, 5).x
    np.testing.assert_allclose(np.asarray(by_hand), np.asarray(reg), rtol=1e-10, atol=1e-12)


def test_sense_solver_is_a_pytree_loop_users_can_jit_and_stop():
    maps = _coil_maps()
    mask = mr.EquispacedMask.create(2).sample_mask(None, N, dtype=jnp.float64)
    kspace = mr.fft2c(maps * _object()[None]) * mask[None, None, :, None]
    solver = mr.sense_solver(maps, mask)
    state = solver.init(kspace)
    while float(state.residual) > 1e-2 and int(state.iteration) < 100:  # a stopping rule
        state = solver.step(state)
    assert float(state.residual) <= 1e-2 and 0 < int(state.iteration) < 100
    leaves = jax.tree_util.tree_leaves(state)
    assert len(leaves) == 7 and all(isinstance(x, jax.Array) for x in leaves)


def test_sense_solver_bad_input():
    maps = _coil_maps(4)
    mask = np.ones(N)
    with pytest.raises(ValueError, match=r"sense_solver: `mask` must have shape \(ky,\) = \(64,\)"):
        mr.sense_solver(maps, np.ones(N + 1))
    with pytest.raises(ValueError, match=r"sense_solver: `coil_maps` must hold one map per coil"):
        mr.sense_solver(maps[0], mask)
    with pytest.raises(ValueError, match=r"sense_solver: `regularization` must be"):
        mr.sense_solver(maps, mask, regularization=-1.0)
    solver = mr.sense_solver(maps, mask)
    with pytest.raises(ValueError, match=r"SENSESolver.init: `kspace` must have the coil maps'"):
        solver.init(np.zeros((2, N, N, 1), complex))
    with pytest.raises(ValueError, match=r"SENSESolver.run: `n_iter` must be >= 0"):
        solver.run(np.zeros((4, N, N, 1), complex), -1)
