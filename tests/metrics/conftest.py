"""Fixed inputs for the metric tests: random and smooth images and volumes in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 3.0) -> np.ndarray:
    """Gaussian-filtered noise rescaled to [0, 1]."""
    a = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return (a - a.min()) / (a.max() - a.min())


def _degrade(rng: np.random.Generator, a: np.ndarray, noise: float = 0.05) -> np.ndarray:
    """A blurred, noisy, slightly biased estimate of `a`."""
    return 0.9 * ndi.gaussian_filter(a, 1.0) + 0.03 + noise * rng.standard_normal(a.shape)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture
def smooth():
    return _smooth


@pytest.fixture
def degrade():
    return _degrade
