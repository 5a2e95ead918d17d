"""Numerical failure of an observer is reported, not hidden."""

from __future__ import annotations

import pytest


def test_singular_covariance_of_twin_images_is_reported():
    """Signal-present images that are their signal-absent twins plus the signal share one
    background each: 4 pairs cannot train a 5-channel CHO, and the failure is named."""
    import numpy as np

    from medphys import observers

    rng = np.random.default_rng(0)
    absent = rng.normal(size=(4, 16, 16)).astype(np.float32) * 100.0
    signal = np.zeros((16, 16), np.float32)
    signal[7:9, 7:9] = 5.0
    channels = observers.laguerre_gauss((16, 16), n_channels=5, width_px=5.0)
    with pytest.raises(ValueError, match=r"template is not finite: the pooled covariance"):
        observers.evaluate("cho", absent + signal, absent, resubstitution=True, channels=channels)
