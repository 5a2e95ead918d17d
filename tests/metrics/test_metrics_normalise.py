"""normalise: one map from the reference's range (or a window), applied to every array, recorded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medphys.metrics import Normalisation, normalise


def test_reference_range_maps_reference_to_unit_interval(rng):
    mu = 0.01 + 0.03 * rng.random((6, 7, 5))  # μ in mm⁻¹
    est = mu + 0.005 * rng.standard_normal(mu.shape)
    ref01, est01, norm = normalise(mu, est)
    assert norm == Normalisation(low=mu.min(), high=mu.max(), source="reference min/max")
    np.testing.assert_allclose([float(ref01.min()), float(ref01.max())], [0.0, 1.0], atol=1e-15)
    span = mu.max() - mu.min()
    np.testing.assert_allclose(np.asarray(est01), (est - mu.min()) / span, rtol=1e-12)
    assert float(est01.max()) > 1.0  # not clipped: errors beyond the range count
    # the estimate never moves the map
    _, _, norm2 = normalise(mu, 100 * est)
    assert norm2 == norm
    np.testing.assert_allclose(np.asarray(norm.apply(est)), np.asarray(est01), rtol=1e-15)


def test_window_and_clip_are_recorded(rng):
    hu = rng.uniform(-1000, 1500, (5, 5))
    ref01, norm = normalise(hu, low=-1000, high=1000, clip=True)
    assert norm == Normalisation(low=-1000.0, high=1000.0, source="window", clip=True)
    assert float(ref01.min()) > 0.0 and float(ref01.max()) == 1.0  # clipped above the window
    assert norm.describe() == "[-1000, 1000] → [0, 1] (window), clipped to [0, 1]"
    _, norm_low = normalise(hu, low=-1000)
    assert norm_low.source == "window low, reference max" and norm_low.high == hu.max()
    _, norm_high = normalise(hu, high=2000)
    assert norm_high.source == "reference min, window high" and norm_high.low == hu.min()
    with pytest.raises(dataclasses.FrozenInstanceError):
        norm.low = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("reference", "others", "kwargs", "match"),
    [
        (
            np.ones((3, 3)),
            (),
            {},
            r"normalise: the range must satisfy high > low \(got low=1, "
            r"high=1\); a constant reference",
        ),
        (np.eye(3), (), {"low": 2.0, "high": 1.0}, r"normalise: the range must satisfy high > low"),
        (np.eye(3), (), {"high": float("nan")}, r"normalise: `high` must be finite \(got nan\)"),
        (np.eye(3), (np.full((3, 3), np.inf),), {}, r"normalise: `others\[0\]` must be finite"),
    ],
)
def test_normalise_bad_input(reference, others, kwargs, match):
    with pytest.raises(ValueError, match=r"medphys\.metrics\." + match):
        normalise(reference, *others, **kwargs)
