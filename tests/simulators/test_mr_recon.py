"""SENSE (CG) and partial-Fourier (POCS) reconstruction: error bounds against the true image."""

from __future__ import annotations

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
