"""Hard k-space data consistency of magnitude images against their MR scan: the lift is exact on
a fully sampled scan, acquired lines are kept bit for bit, unacquired ones come from the image,
the residual sits at the noise floor for the scan's own object, gradients pass check_grads."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from mr_rings import rings

from medphys.simulators import mr

PHANTOM = rings((24, 20, 2))
SE = mr.SpinEcho.create(te_s=0.02, tr_s=0.6)


def _scan(**kw) -> mr.MRResult:
    protocol = mr.MRProtocol.create(SE, field_t=1.5, coils=mr.LoopCoils.create(4), **kw)
    return mr.simulate(jax.random.key(3), PHANTOM, protocol)


FULL = _scan()
UNDER = _scan(sampling=mr.EquispacedMask.create(2, acs_lines=4))


def test_a_fully_sampled_scan_lifts_to_its_own_kspace_and_keeps_its_image():
    image = FULL.image.data
    assert float(mr.kspace_residual(image, FULL)) < 1e-5
    np.testing.assert_allclose(
        np.asarray(mr.consistent_kspace(image, FULL)), np.asarray(FULL.kspace), atol=1e-5
    )
    # every line acquired: whatever the image, the scan's own image comes back
    other = image * 0.5 + 0.1 * jnp.max(image)
    np.testing.assert_allclose(
        np.asarray(mr.data_consistency(other, FULL)), np.asarray(image), atol=1e-5
    )
    assert float(mr.kspace_residual(other, FULL)) > 0.3


def test_acquired_lines_are_kept_and_the_rest_comes_from_the_image():
    image = UNDER.image.data
    brighter = 1.2 * image
    k = np.asarray(mr.consistent_kspace(brighter, UNDER))
    lines = np.asarray(UNDER.mask) > 0
    assert 0 < lines.sum() < lines.size
    np.testing.assert_array_equal(k[:, :, lines, :], np.asarray(UNDER.kspace)[:, :, lines, :])
    # no line acquired: the image comes back where a coil sees it
    none = dataclasses.replace(UNDER, mask=jnp.zeros_like(UNDER.mask))
    np.testing.assert_allclose(
        np.asarray(mr.data_consistency(brighter, none)), np.asarray(brighter), rtol=1e-4, atol=1e-6
    )


def test_the_residual_of_the_noise_free_object_sits_at_the_noise_floor():
    """The same scan with and without noise (same key): the noise-free image's residual against
    the noisy k-space is the noise floor within 10 % (measured: 0.324 against a floor of 0.335,
    ratio 0.97)."""
    clean = _scan()
    noisy = _scan(snr=20.0)
    floor = float(mr.noise_residual(noisy))
    assert floor > 0 and float(mr.noise_residual(clean)) == 0.0
    ratio = float(mr.kspace_residual(clean.image.data, noisy)) / floor
    assert 0.9 < ratio < 1.1, ratio


def test_an_undersampled_scan_is_explained_by_its_sense_image_not_its_aliased_one():
    """Noise-free 2x undersampled scan: its CG-SENSE magnitude image (`reconstructed`) lifts
    through the CG-SENSE object phase onto the acquired lines (measured residual 4.4e-4); the
    aliased zero-filled image does not (0.25). A fully sampled scan is returned unchanged; the
    object phase computed once lifts as the one computed inside."""
    assert float(UNDER.noise_std) == 0.0
    sense = mr.reconstructed(UNDER)
    assert sense.image.data.shape == UNDER.image.data.shape
    np.testing.assert_array_equal(sense.kspace, UNDER.kspace)
    assert float(mr.kspace_residual(sense.image.data, UNDER)) < 2e-3
    assert float(mr.kspace_residual(UNDER.image.data, UNDER)) > 0.1
    assert mr.reconstructed(FULL) is FULL
    with pytest.raises(TypeError, match="MRResult"):
        mr.reconstructed(UNDER.image)
    # the phase computed once (jitted) gives the same lift as the phase computed inside
    phase = jax.jit(mr.object_phase)(UNDER)
    np.testing.assert_allclose(np.abs(np.asarray(phase)), 1.0, rtol=1e-5)
    image = sense.image.data
    np.testing.assert_allclose(
        np.asarray(mr.data_consistency(image, UNDER, phase=phase)),
        np.asarray(mr.data_consistency(image, UNDER)),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(TypeError, match="MRResult"):
        mr.object_phase(UNDER.image)


def test_jit_vmap_and_gradients_in_the_image():
    image = jnp.asarray(UNDER.image.data, jnp.float64)
    f = jax.jit(lambda im: mr.kspace_residual(im, UNDER))
    np.testing.assert_allclose(float(f(image)), float(mr.kspace_residual(image, UNDER)), 1e-6)
    batch = jnp.stack([image, 1.1 * image])
    out = jax.vmap(lambda im: mr.data_consistency(im, UNDER))(batch)
    np.testing.assert_allclose(
        np.asarray(out[1]), np.asarray(mr.data_consistency(1.1 * image, UNDER)), rtol=1e-6
    )
    # away from zero (the magnitude's kink): a positive image; the phase computed once
    positive = image + 0.05 * jnp.max(image)
    phase = mr.object_phase(UNDER)
    check_grads(
        jax.jit(lambda im: jnp.sum(mr.data_consistency(im, UNDER, phase=phase) ** 2)),
        (positive,),
        order=1,
        modes=("rev",),
        eps=1e-6,
        atol=1e-4,
        rtol=1e-4,
    )
    residual = jax.jit(lambda im: mr.kspace_residual(im, UNDER, phase=phase))
    check_grads(residual, (positive,), order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-5)


def test_bad_input_names_the_argument():
    with pytest.raises(
        ValueError, match=r"`image` must have the scan's image shape .* \(24, 20, 2\)"
    ):
        mr.data_consistency(jnp.zeros((24, 20)), UNDER)
    with pytest.raises(TypeError, match="`result` must be an MRResult"):
        mr.kspace_residual(jnp.zeros((24, 20, 2)), UNDER.kspace)
    with pytest.raises(TypeError, match="`image` must be a real magnitude image"):
        mr.consistent_kspace(jnp.zeros((24, 20, 2), jnp.complex64), UNDER)
