"""SSIM and SSIM3D against scikit-image's structural_similarity with the stated settings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from medphys.metrics import ssim, ssim3d


def skimage_ssim(est: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> float:
    return structural_similarity(
        est,
        ref,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
    )


def skimage_ssim3d(est: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> float:
    """The stated definition, written as a loop: mean over axes of the mean over kept slices."""
    per_axis = []
    for axis in range(3):
        es, rs = np.moveaxis(est, axis, 0), np.moveaxis(ref, axis, 0)
        kept = [
            skimage_ssim(e, r, data_range) for e, r in zip(es, rs, strict=True) if np.any(r != 0)
        ]
        per_axis.append(np.mean(kept))
    return float(np.mean(per_axis))


@pytest.mark.parametrize("shape", [(11, 11), (23, 40)])
@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_ssim_matches_skimage(rng, smooth, degrade, shape, kind):
    ref = rng.random(shape) if kind == "random" else smooth(rng, shape)
    est = degrade(rng, ref)
    got = ssim(est, ref)
    assert got.shape == () and got.dtype == jnp.float64
    np.testing.assert_allclose(float(got), skimage_ssim(est, ref), rtol=0, atol=1e-10)


def test_ssim_data_range_enters_the_constants(rng, smooth, degrade):
    ref = 255.0 * smooth(rng, (23, 40))
    est = degrade(rng, ref, noise=10.0)
    got = float(ssim(est, ref, data_range=255.0))
    np.testing.assert_allclose(got, skimage_ssim(est, ref, 255.0), atol=1e-10)
    # the pitfall of older scikit-image: data range 2 on [0, 1] data inflates SSIM
    ref01, est01 = ref / 255.0, est / 255.0
    assert float(ssim(est01, ref01, data_range=2.0)) > float(ssim(est01, ref01)) + 1e-3


def test_ssim_float32_within_1e6_of_float64_skimage(rng, smooth, degrade):
    ref = smooth(rng, (23, 40))
    est = degrade(rng, ref)
    got = ssim(est.astype(np.float32), ref.astype(np.float32))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), skimage_ssim(est, ref), atol=2e-6)


def test_ssim_identical_is_one_and_symmetric(rng):
    a, b = rng.random((23, 40)), rng.random((23, 40))
    np.testing.assert_allclose(float(ssim(a, a)), 1.0, atol=1e-12)
    np.testing.assert_allclose(float(ssim(a, b)), float(ssim(b, a)), atol=1e-14)


def test_ssim3d_matches_slice_loop_and_skips_empty_reference_slices(rng, smooth, degrade):
    ref = smooth(rng, (14, 16, 13))
    ref[:3] = 0.0  # empty slices along axis 0
    ref[:, :, -2:] = 0.0  # and along axis 2
    est = degrade(rng, ref)  # non-zero where the reference is empty
    expected = skimage_ssim3d(est, ref)
    got = ssim3d(est, ref)
    assert got.shape == () and got.dtype == jnp.float64
    np.testing.assert_allclose(float(got), expected, atol=1e-10)
    # counting the empty slices would change the value
    everything = np.mean(
        [
            np.mean(
                [
                    skimage_ssim(e, r)
                    for e, r in zip(np.moveaxis(est, a, 0), np.moveaxis(ref, a, 0), strict=True)
                ]
            )
            for a in range(3)
        ]
    )
    assert abs(float(got) - everything) > 1e-3


def test_ssim3d_random_volume_and_jit(rng, degrade):
    ref = rng.random((14, 16, 13))
    est = degrade(rng, ref)
    got = ssim3d(est, ref)
    np.testing.assert_allclose(float(got), skimage_ssim3d(est, ref), atol=1e-10)
    jitted = jax.jit(lambda e, r: ssim3d(e, r))(est, ref)
    np.testing.assert_allclose(float(jitted), float(got), atol=1e-14)


@pytest.mark.parametrize(
    ("call", "est", "ref", "kwargs", "error", "match"),
    [
        (
            ssim,
            np.zeros((12, 12)),
            np.zeros((12, 13)),
            {},
            ValueError,
            r"medphys\.metrics\.ssim: `estimate` and `reference` must have the same shape "
            r"\(got \(12, 12\) and \(12, 13\)\)",
        ),
        (
            ssim,
            np.zeros((12, 12, 12)),
            np.zeros((12, 12, 12)),
            {},
            ValueError,
            r"medphys\.metrics\.ssim: `estimate` must be 2-D \(got shape \(12, 12, 12\)\)",
        ),
        (
            ssim,
            np.zeros((10, 12)),
            np.zeros((10, 12)),
            {},
            ValueError,
            r"medphys\.metrics\.ssim: the images must be at least 11 × 11 pixels .*\(got shape "
            r"\(10, 12\)\)",
        ),
        (
            ssim,
            np.zeros((12, 12)),
            np.zeros((12, 12)),
            {"data_range": 0},
            ValueError,
            r"medphys\.metrics\.ssim: `data_range` must be a positive finite number \(got 0.0\)",
        ),
        (
            ssim,
            np.full((12, 12), np.nan),
            np.zeros((12, 12)),
            {},
            ValueError,
            r"medphys\.metrics\.ssim: `estimate` must be finite; 144 of 144",
        ),
        (
            ssim3d,
            np.zeros((12, 12)),
            np.zeros((12, 12)),
            {},
            ValueError,
            r"medphys\.metrics\.ssim3d: `estimate` must be 3-D",
        ),
        (
            ssim3d,
            np.zeros((12, 12, 9)),
            np.ones((12, 12, 9)),
            {},
            ValueError,
            r"medphys\.metrics\.ssim3d: every side of the volumes must be at least 11",
        ),
        (
            ssim3d,
            np.ones((12, 12, 12)),
            np.zeros((12, 12, 12)),
            {},
            ValueError,
            r"medphys\.metrics\.ssim3d: `reference` is zero everywhere",
        ),
        (
            ssim3d,
            np.ones((12, 12, 12)),
            np.ones((12, 12, 12)),
            {"data_range": -2.0},
            ValueError,
            r"medphys\.metrics\.ssim3d: `data_range` must be a positive finite number \(got -2.0\)",
        ),
    ],
)
def test_ssim_bad_input(call, est, ref, kwargs, error, match):
    with pytest.raises(error, match=match):
        call(est, ref, **kwargs)
