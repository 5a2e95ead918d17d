"""PSNR and projection PSNR against scikit-image and hand-computed values; bad-input messages."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from medphys.metrics import body_mask, projection_psnr, psnr


@pytest.mark.parametrize("shape", [(37, 29), (17, 12, 15)])
@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_psnr_matches_skimage(rng, smooth, degrade, shape, kind):
    ref = rng.random(shape) if kind == "random" else smooth(rng, shape)
    est = degrade(rng, ref)
    expected = peak_signal_noise_ratio(ref, est, data_range=1.0)
    got = psnr(est, ref)
    assert got.shape == () and got.dtype == jnp.float64
    np.testing.assert_allclose(float(got), expected, rtol=1e-12)
    # another data range scales the peak only
    expected2 = peak_signal_noise_ratio(ref, est, data_range=2.5)
    np.testing.assert_allclose(float(psnr(est, ref, data_range=2.5)), expected2, rtol=1e-12)


def test_psnr_float32_and_jit(rng, smooth, degrade):
    ref = smooth(rng, (16, 20, 12)).astype(np.float32)
    est = degrade(rng, ref).astype(np.float32)
    got = psnr(est, ref)
    assert got.dtype == jnp.float32
    expected = peak_signal_noise_ratio(ref.astype(float), est.astype(float), data_range=1.0)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    jitted = jax.jit(lambda e, r: psnr(e, r))(est, ref)
    np.testing.assert_allclose(float(jitted), float(got), rtol=1e-6)


def test_masked_psnr_is_hand_computed_value(rng):
    ref = rng.random((12, 10, 8))
    est = ref + 0.1 * rng.standard_normal(ref.shape)
    mask = np.zeros(ref.shape, bool)
    mask[2:9, 3:7, 1:6] = True
    mse = np.sum((est - ref)[mask] ** 2) / mask.sum()
    np.testing.assert_allclose(
        float(psnr(est, ref, mask=mask)), 10 * np.log10(1.0 / mse), rtol=1e-12
    )
    # errors outside the mask do not count
    est_out = est.copy()
    est_out[~mask] += 5.0
    np.testing.assert_allclose(
        float(psnr(est_out, ref, mask=mask)), float(psnr(est, ref, mask=mask)), rtol=1e-12
    )
    assert float(psnr(est_out, ref)) < float(psnr(est, ref, mask=mask)) - 10


def test_psnr_in_body_mask_excludes_air(rng):
    ref = np.zeros((24, 24))
    yy, xx = np.mgrid[:24, :24]
    ref[(yy - 12) ** 2 + (xx - 12) ** 2 < 64] = 0.6
    est = ref + 0.02 * rng.standard_normal(ref.shape)
    mask = body_mask(ref)
    mse = np.mean((est - ref)[np.asarray(mask)] ** 2)
    np.testing.assert_allclose(float(psnr(est, ref, mask=mask)), -10 * np.log10(mse), rtol=1e-12)


def test_identical_arrays_give_inf(rng):
    ref = rng.random((11, 13))
    assert float(psnr(ref, ref)) == np.inf
    mask = np.zeros(ref.shape, bool)
    mask[0, 0] = True
    est = ref + 1.0
    est[0, 0] = ref[0, 0]
    assert float(psnr(est, ref, mask=mask)) == np.inf


def test_projection_psnr_range_is_reference_max_minus_min(rng):
    ref = 3.0 + 4.0 * rng.random((5, 16, 12))  # line integrals, not in [0, 1]
    est = ref + 0.05 * rng.standard_normal(ref.shape)
    ptp = ref.max() - ref.min()
    np.testing.assert_allclose(
        float(projection_psnr(est, ref)),
        peak_signal_noise_ratio(ref, est, data_range=ptp),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        float(projection_psnr(est, ref, data_range=10.0)),
        peak_signal_noise_ratio(ref, est, data_range=10.0),
        rtol=1e-12,
    )
    # one MSE over all views, not a mean of per-view PSNRs
    per_view = np.mean(
        [peak_signal_noise_ratio(r, e, data_range=ptp) for r, e in zip(ref, est, strict=True)]
    )
    assert abs(float(projection_psnr(est, ref)) - per_view) > 1e-6


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"estimate": np.zeros((4, 5))},
            ValueError,
            r"psnr: `estimate` and `reference` must "
            r"have the same shape \(got \(4, 5\) and \(4, 4\)\)",
        ),
        (
            {"data_range": 0.0},
            ValueError,
            r"psnr: `data_range` must be a positive finite number "
            r"\(got 0.0\)",
        ),
        ({"data_range": -1}, ValueError, r"`data_range` must be a positive finite number \(got -1"),
        ({"data_range": float("inf")}, ValueError, r"`data_range` must be a positive finite"),
        ({"data_range": "1"}, TypeError, r"`data_range` must be a number"),
        (
            {"mask": np.ones((4, 5), bool)},
            ValueError,
            r"psnr: `mask` must have the shape of "
            r"`reference` \(4, 4\) \(got \(4, 5\)\)",
        ),
        (
            {"mask": np.ones((4, 4), int)},
            TypeError,
            r"psnr: `mask` must be a boolean array "
            r"\(got dtype int",
        ),
        (
            {"mask": np.zeros((4, 4), bool)},
            ValueError,
            r"psnr: `mask` must select at least one "
            r"voxel",
        ),
        (
            {"estimate": np.full((4, 4), np.nan)},
            ValueError,
            r"psnr: `estimate` must be finite; "
            r"16 of 16 values are not \(first at index \(0, 0\): nan\)",
        ),
        (
            {"reference": np.where(np.eye(4) > 0, np.inf, 0.0)},
            ValueError,
            r"psnr: `reference` must be finite; 4 of",
        ),
        ({"estimate": np.ones((4, 4), complex)}, TypeError, r"`estimate` must hold real numbers"),
        (
            {"estimate": np.zeros((0,)), "reference": np.zeros((0,))},
            ValueError,
            r"`estimate` must not be empty",
        ),
    ],
)
def test_psnr_bad_input(kwargs, error, match):
    args = {"estimate": np.zeros((4, 4)), "reference": np.eye(4)} | kwargs
    est, ref = args.pop("estimate"), args.pop("reference")
    with pytest.raises(error, match=match):
        psnr(est, ref, **args)


def test_projection_psnr_bad_input():
    ref = np.ones((2, 4, 4))
    with pytest.raises(
        ValueError,
        match=r"medphys\.metrics\.projection_psnr: the reference "
        r"projections are constant",
    ):
        projection_psnr(ref + 1, ref)
    with pytest.raises(
        ValueError,
        match=r"projection_psnr: `estimate_projections` and "
        r"`reference_projections` must have the same shape",
    ):
        projection_psnr(np.ones((3, 4, 4)), ref)
    with pytest.raises(ValueError, match=r"projection_psnr: `data_range` must be a positive"):
        projection_psnr(ref, ref, data_range=0)
