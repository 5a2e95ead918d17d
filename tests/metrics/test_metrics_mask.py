"""body_mask on phantoms whose body is known: couch, specks, lungs open to the airway."""

from __future__ import annotations

import numpy as np
import pytest

from medphys.metrics import BODY_THRESHOLD, body_mask


def torso(shape=(36, 30, 12)) -> tuple[np.ndarray, np.ndarray]:
    """A [0, 1] attenuation volume (x y z) and its body: an elliptic cylinder along z."""
    x, y = np.mgrid[: shape[0], : shape[1]]
    body2d = ((x - 17.5) / 14) ** 2 + ((y - 13.5) / 10) ** 2 < 1
    lung2d = ((x - 11) / 4) ** 2 + ((y - 13.5) / 4) ** 2 < 1
    bone2d = ((x - 24) / 2) ** 2 + ((y - 13.5) / 2) ** 2 < 1
    vol = np.zeros(shape)
    vol[body2d] = 0.5  # water, about half of bone's μ
    vol[lung2d] = 0.05  # lung, below the 0.1 cut
    vol[lung2d[:, :, None] & (np.arange(shape[2]) >= 6)] = 0.0  # airway: air up to the top face
    vol[bone2d] = 1.0
    vol[:, 27:29, :] = 0.6  # couch, apart from the body
    vol[1, 1, 1] = 0.9  # a bright speck in the air
    vol += 0.01 * np.random.default_rng(3).standard_normal(shape)  # background noise, below the cut
    body = np.broadcast_to(body2d[:, :, None], shape)
    return vol, body


def test_body_mask_is_the_body():
    vol, body = torso()
    mask = np.asarray(body_mask(vol))
    assert mask.dtype == bool and mask.shape == vol.shape
    np.testing.assert_array_equal(mask, body)


def test_body_mask_fills_slices_along_axis_only():
    vol, body = torso()
    # the airway opens the lung to the top face (z): 3-D filling alone cannot close it, and 2-D
    # slices along x cut through the lung without enclosing it
    along_x = np.asarray(body_mask(vol, axis=0))
    assert along_x.sum() < body.sum()
    np.testing.assert_array_equal(
        np.asarray(body_mask(np.moveaxis(vol, 2, 0), axis=0)), np.moveaxis(body, 2, 0)
    )


def test_body_mask_threshold_is_a_fraction_of_the_reference_range():
    vol, _ = torso()
    assert BODY_THRESHOLD == 0.1
    scaled = 0.02 * vol - 0.004  # μ in mm⁻¹ with an offset: the same fraction of the range
    np.testing.assert_array_equal(np.asarray(body_mask(scaled)), np.asarray(body_mask(vol)))
    # a cut above water leaves the bone (the brighter speck is a smaller component)
    bone = np.asarray(body_mask(vol, threshold=0.8))
    np.testing.assert_array_equal(bone, vol > 0.95)


def test_body_mask_2d():
    vol, body = torso()
    np.testing.assert_array_equal(np.asarray(body_mask(vol[:, :, 0])), body[:, :, 0])


@pytest.mark.parametrize(
    ("reference", "kwargs", "match"),
    [
        (np.ones((12, 12)), {}, r"body_mask: `reference` is constant \(1\)"),
        (np.ones(12), {}, r"body_mask: `reference` must be 2-D or 3-D \(got shape \(12,\)\)"),
        (
            np.eye(12),
            {"threshold": 0.0},
            r"body_mask: `threshold` must lie strictly between 0 "
            r"and 1 \(got 0.0\)",
        ),
        (
            np.eye(12),
            {"threshold": 1.5},
            r"body_mask: `threshold` must lie strictly between 0 and 1",
        ),
        (
            np.ones((4, 4, 4)),
            {"axis": 3},
            r"body_mask: `axis` must be an integer in \[-3, 2\] "
            r"\(got 3\)",
        ),
        (np.where(np.eye(12) > 0, np.nan, 1.0), {}, r"body_mask: `reference` must be finite"),
    ],
)
def test_body_mask_bad_input(reference, kwargs, match):
    with pytest.raises(ValueError, match=r"medphys\.metrics\." + match):
        body_mask(reference, **kwargs)
