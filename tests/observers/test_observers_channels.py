"""Channel matrices: closed-form values, orthonormality, layout, bad names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special

from medphys import observers as obs


def test_lg_2d_matches_closed_form_and_is_orthonormal():
    a, n = 10.0, 64
    u = np.asarray(obs.laguerre_gauss((n, n), n_channels=6, width_px=a))
    assert u.shape == (6, n, n)
    c = (n - 1) / 2
    x, y = np.meshgrid(np.arange(n) - c, np.arange(n) - c, indexing="ij")
    r2 = x**2 + y**2
    for p in range(6):
        ref = (
            math.sqrt(2)
            / a
            * np.exp(-math.pi * r2 / a**2)
            * scipy.special.eval_laguerre(p, 2 * math.pi * r2 / a**2)
        )
        np.testing.assert_allclose(u[p], ref, rtol=1e-10, atol=1e-14)
    gram = u.reshape(6, -1) @ u.reshape(6, -1).T  # pixel area 1: a Riemann sum of ∫ u_p u_q
    np.testing.assert_allclose(gram, np.eye(6), atol=2e-3)


def test_lg_3d_is_orthonormal_and_p0_is_a_product_of_gaussians():
    a, n = 6.0, 32
    u = np.asarray(obs.laguerre_gauss((n, n, n), n_channels=4, width_px=a))
    assert u.shape == (4, n, n, n)
    gram = u.reshape(4, -1) @ u.reshape(4, -1).T
    np.testing.assert_allclose(gram, np.eye(4), atol=2e-3)
    g = (2**0.25 / math.sqrt(a)) * np.exp(-math.pi * (np.arange(n) - (n - 1) / 2) ** 2 / a**2)
    np.testing.assert_allclose(u[0], np.einsum("i,j,k->ijk", g, g, g), rtol=1e-10, atol=1e-14)
    # generalised Laguerre L_p^(1/2) for p = 2 at the centre voxel's radius
    c = (n - 1) / 2
    x = 2 * math.pi * 3 * (0.5**2) / a**2
    norm = math.sqrt(math.sqrt(2 * math.pi) * 2 / math.gamma(3.5)) / a**1.5
    ref = norm * math.exp(-x / 2) * scipy.special.eval_genlaguerre(2, 0.5, x)
    np.testing.assert_allclose(u[2, int(c), int(c), int(c)], ref, rtol=1e-10)


def test_lg_center_can_be_moved():
    u = np.asarray(obs.laguerre_gauss((15, 15), n_channels=1, width_px=4.0, center=(3, 5)))
    assert np.unravel_index(np.argmax(u[0]), u[0].shape) == (3, 5)


def test_gabor_layout_norm_and_frequency():
    u = np.asarray(obs.gabor((64, 64)))
    assert u.shape == (4 * 4 * 2, 64, 64)
    np.testing.assert_allclose(np.linalg.norm(u.reshape(32, -1), axis=1), 1.0, rtol=1e-10)
    # channel (f = 3/16, θ = 0, β = 0) is index 3·8 + 0·2 + 0 = 24: its spectrum peaks at f_c on x
    spec = np.abs(np.fft.fft(u[24, :, 32]))
    f = np.fft.fftfreq(64)
    assert abs(abs(f[np.argmax(spec)]) - 3 / 16) <= 1 / 64
    # θ = π/2 (index 24 + 2·2 = 28) oscillates along y, constant-phase along x at the centre row
    spec_y = np.abs(np.fft.fft(u[28, 32, :]))
    assert abs(abs(f[np.argmax(spec_y)]) - 3 / 16) <= 1 / 64
    custom = obs.gabor((32, 32), frequencies=(0.1,), n_orientations=3, phases=(0.0,))
    assert custom.shape == (3, 32, 32)


def test_slice_channels_places_2d_channels_on_slices():
    u2 = obs.laguerre_gauss((16, 12), n_channels=3, width_px=4.0)
    u3 = np.asarray(obs.slice_channels(u2, (16, 12, 9), axis=2, slices=(2, 4)))
    assert u3.shape == (6, 16, 12, 9)
    np.testing.assert_array_equal(u3[0, :, :, 2], u2[0])
    np.testing.assert_array_equal(u3[4, :, :, 4], u2[1])
    assert np.count_nonzero(u3[:3, :, :, 4]) == 0 and np.count_nonzero(u3[3:, :, :, 2]) == 0
    default = np.asarray(obs.slice_channels(u2, (16, 9, 12), axis=1))
    np.testing.assert_array_equal(default[1, :, 4, :], u2[1])
    # a single-slice CHO on a volume scores the central slice exactly as the 2D CHO does
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(5, 16, 12, 9))
    o3 = obs.Observer(u3, np.ones(6), np.zeros(6), "cho")
    o2 = obs.Observer(np.asarray(u2), np.ones(3), np.zeros(3), "cho")
    np.testing.assert_allclose(
        obs.score(o3, vol), obs.score(o2, vol[..., 2]) + obs.score(o2, vol[..., 4]), rtol=1e-12
    )


def test_make_channels_by_name_and_bad_inputs():
    np.testing.assert_array_equal(
        obs.make_channels("laguerre-gauss", (16, 16), n_channels=2, width_px=5.0),
        obs.laguerre_gauss((16, 16), n_channels=2, width_px=5.0),
    )
    with pytest.raises(
        ValueError, match=r"make_channels: unknown `name` 'laguerre'.*'laguerre-gauss'"
    ):
        obs.make_channels("laguerre", (16, 16), n_channels=2, width_px=5.0)
    with pytest.raises(
        ValueError, match=r"laguerre_gauss: `width_px` must be finite and > 0 \(got -1.0\)"
    ):
        obs.laguerre_gauss((16, 16), n_channels=2, width_px=-1.0)
    with pytest.raises(ValueError, match=r"laguerre_gauss: `roi_shape` must be a 2D or 3D shape"):
        obs.laguerre_gauss((16,), n_channels=2, width_px=5.0)
    with pytest.raises(ValueError, match=r"gabor: `roi_shape` must be a 2D shape"):
        obs.gabor((8, 8, 8))
    with pytest.raises(
        ValueError, match=r"gabor: `frequencies` must be cycles/pixel in \(0, 0.5\)"
    ):
        obs.gabor((8, 8), frequencies=(0.7,))
    with pytest.raises(
        ValueError, match=r"slice_channels: `channels` have in-plane shape \(16, 12\)"
    ):
        obs.slice_channels(obs.laguerre_gauss((16, 12), n_channels=1, width_px=3.0), (16, 16, 4))
    with pytest.raises(ValueError, match=r"slice_channels: `slices` must be indices in \[0, 4\)"):
        obs.slice_channels(
            obs.laguerre_gauss((16, 12), n_channels=1, width_px=3.0), (16, 12, 4), slices=(4,)
        )
