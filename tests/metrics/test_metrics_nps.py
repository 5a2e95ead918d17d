"""Noise power spectrum: closed forms for white and filtered noise, Parseval, detrending, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from medphys import metrics


def _radial_reference(power2d: np.ndarray, spacing: tuple[float, float], bins: int) -> np.ndarray:
    """Annulus means of a 2-D spectrum, computed independently of medphys."""
    n, m = power2d.shape
    fx = np.fft.fftfreq(n, spacing[0])[:, None]
    fy = np.fft.fftfreq(m, spacing[1])[None, :]
    r = np.sqrt(fx**2 + fy**2)
    nyq = 0.5 / max(spacing)
    out = np.full(bins, np.nan)
    for b in range(bins):
        lo, hi = b * nyq / bins, (b + 1) * nyq / bins
        sel = (r >= lo) & ((r < hi) if b < bins - 1 else (r <= hi))
        if sel.any():
            out[b] = power2d[sel].mean()
    return out


def test_white_noise_is_flat_at_variance_times_pixel_area():
    """White noise of σ = 10 on 0.5 × 0.8 mm pixels: NPS = σ² Δx Δy = 40 HU² mm² in every bin
    (64 images of 64²: measured within 4 %, about 5 standard errors of the bin means)."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 10.0, (64, 64, 64))
    mask = np.ones((64, 64), bool)
    f, s = metrics.nps(x, mask, spacing_mm=(0.5, 0.8), detrend_px=None, bins=8)
    assert f.shape == (8,) and np.isclose(f[-1], (7.5 / 8) * 0.5 / 0.8)
    np.testing.assert_allclose(np.asarray(s), 100.0 * 0.5 * 0.8, rtol=0.04)


def test_filtered_noise_matches_the_transfer_function():
    """Circularly filtered white noise has NPS = σ² Δx Δy |H(f)|²: the radial profile equals an
    independent annulus average of that closed form within 5 %."""
    rng = np.random.default_rng(1)
    n = 64
    kernel = np.zeros((n, n))
    kernel[:3, :3] = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    kernel = np.roll(kernel, (-1, -1), (0, 1)) / 16.0
    h = np.fft.fft2(kernel)
    white = rng.normal(0.0, 5.0, (96, n, n))
    x = np.real(np.fft.ifft2(np.fft.fft2(white) * h))
    spacing = (0.7, 0.7)
    _, s = metrics.nps(x, np.ones((n, n), bool), spacing_mm=spacing, detrend_px=None, bins=10)
    expected = _radial_reference(25.0 * 0.49 * np.abs(h) ** 2, spacing, 10)
    np.testing.assert_allclose(np.asarray(s), expected, rtol=0.05)


def test_parseval_variance_inside_a_mask():
    """The 2-D spectrum integrates to the masked noise variance: summed over all frequency
    samples times the bin area it equals mean(n²) over the mask (to rounding)."""
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 2.0, (40, 48))
    mask = np.zeros((40, 48), bool)
    mask[5:30, 8:40] = True
    from medphys.metrics._nps import noise_image

    noise = np.asarray(noise_image(jnp.asarray(x), jnp.asarray(mask), detrend_px=None))
    power = np.abs(np.fft.fft2(noise)) ** 2 * (0.5 * 0.5) / mask.sum()
    integral = power.sum() / (40 * 0.5 * 48 * 0.5)
    np.testing.assert_allclose(integral, np.mean(noise[mask] ** 2), rtol=1e-10)
    np.testing.assert_allclose(np.mean(noise[mask]), 0.0, atol=1e-12)


def test_detrending_removes_anatomy_and_keeps_high_frequencies():
    """A ±20 HU ramp plus white noise (σ = 4): without detrending the ramp dominates the lowest
    bin (> 100× the white level); with a σ = 3 px local mean removed the upper half of the
    spectrum is the white level within 6 % (measured within 1.2 %)."""
    rng = np.random.default_rng(3)
    n = 64
    ramp = np.linspace(-20, 20, n)[:, None] + np.zeros((1, n))
    x = ramp[None] + rng.normal(0.0, 4.0, (32, n, n))
    mask = np.ones((n, n), bool)
    _, raw = metrics.nps(x, mask, spacing_mm=1.0, detrend_px=None, bins=8)
    _, det = metrics.nps(x, mask, spacing_mm=1.0, detrend_px=3.0, bins=8)
    assert float(raw[0]) > 100 * 16.0
    np.testing.assert_allclose(np.asarray(det)[4:], 16.0, rtol=0.06)


def test_gradients_and_jit():
    """Differentiable in the images (check_grads, float64) and jit-able with a fixed mask."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(0.0, 1.0, (2, 16, 16)))
    mask = jnp.asarray(np.ones((16, 16), bool))

    def total(im):
        return jnp.nansum(metrics.nps(im, mask, spacing_mm=1.0, detrend_px=2.0, bins=4)[1])

    check_grads(jax.jit(total), (x,), order=1, modes=("rev",), eps=1e-4)
    eager = metrics.nps(x, mask, spacing_mm=1.0, bins=4)[1]
    jitted = jax.jit(lambda im: metrics.nps(im, mask, spacing_mm=1.0, bins=4)[1])(x)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-12)


def test_soft_tissue_mask_erodes_inside_the_window():
    hu = np.full((20, 20), -1000.0)
    hu[4:16, 4:16] = 40.0
    m = metrics.soft_tissue_mask(hu, erode_px=2)
    assert m.sum() == 8 * 8 and m[6:14, 6:14].all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mask": np.ones((8, 9), bool)}, "`mask` must have"),
        ({"mask": np.zeros((8, 8), bool)}, "selects no pixel"),
        ({"spacing_mm": (1.0, -1.0)}, "`spacing_mm` must be"),
        ({"detrend_px": 0.0}, "`detrend_px` must be"),
        ({"bins": 0}, "`bins` must be"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"mask": np.ones((8, 8), bool), "spacing_mm": 1.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        metrics.nps(np.zeros((8, 8)), **args)
    with pytest.raises(TypeError, match="boolean"):
        metrics.nps(np.zeros((8, 8)), np.ones((8, 8)), spacing_mm=1.0)
