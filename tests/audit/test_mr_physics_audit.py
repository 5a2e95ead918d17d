"""The MR physics-consistency audit: the simulated images pass, hard data consistency keeps a
smoothed image within the k-space criterion, a brightened image fails the intensity and k-space
criteria, an image whose CSF takes white matter's intensity fails the anatomy criterion."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from mr_rings import rings
from scipy import ndimage

from medphys import audit
from medphys.simulators import mr

PHANTOM = rings((32, 28, 2))
PROTOCOL = mr.MRProtocol.create(
    mr.SpinEcho.create(te_s=0.02, tr_s=0.6),
    field_t=1.5,
    coils=mr.LoopCoils.create(4),
    sampling=mr.EquispacedMask.create(2, acs_lines=6),
    snr=30.0,
)
SCANS = [mr.simulate(jax.random.key(k), PHANTOM, PROTOCOL) for k in (1, 2)]
LABELS = np.stack([np.asarray(PHANTOM.labels)] * 2)
SIM = np.stack([np.asarray(s.image.data) for s in SCANS])


def test_the_simulated_images_pass_and_the_report_reads():
    report = audit.mr_physics_audit(SCANS, LABELS, SIM)
    assert report.passed, report.describe()
    assert report.criterion("kspace_residual").value == pytest.approx(1.0, abs=1e-6)
    assert report.criterion("label_intensity_shift").value == 0.0
    assert report.criterion("dice_retention").value == 1.0
    assert 0 not in report.signal_labels and 3 in report.signal_labels
    d = report.to_dict()
    assert d["passed"] and len(d["criteria"]) == 3 and d["cases"] == 2
    assert "PASS" in report.describe()


def test_data_consistency_keeps_a_smoothed_image_inside_the_kspace_criterion():
    """A smoothed image (σ 0.7 pixel) leaves the acquired k-space; hard data consistency puts
    it back (measured ratios to the simulated images' residual: smoothed 1.46, after data
    consistency 0.83 with the CG-SENSE object phase)."""
    smooth = np.stack([ndimage.gaussian_filter(s, (0.7, 0.7, 0)) for s in SIM])
    before = audit.mr_physics_audit(SCANS, LABELS, smooth).criterion("kspace_residual")
    consistent = np.stack([np.asarray(mr.data_consistency(smooth[i], SCANS[i])) for i in range(2)])
    after = audit.mr_physics_audit(SCANS, LABELS, consistent).criterion("kspace_residual")
    assert not before.passed and after.passed, (before, after)


def test_a_brightened_image_and_a_lost_structure_fail():
    bright = audit.mr_physics_audit(SCANS, LABELS, 1.2 * SIM)
    assert not bright.passed
    assert not bright.criterion("label_intensity_shift").passed
    assert bright.criterion("label_intensity_shift").value == pytest.approx(0.2, rel=1e-6)
    assert not bright.criterion("kspace_residual").passed
    assert bright.criterion("dice_retention").passed  # the anatomy is all there
    # the CSF core takes white matter's mean intensity: the core is segmented as white matter
    wm = SIM[LABELS == 3].mean()
    lost = np.where(LABELS == 4, wm, SIM)
    report = audit.mr_physics_audit(SCANS, LABELS, lost)
    assert not report.criterion("dice_retention").passed, report.describe()


def test_bad_input_is_refused_before_any_work():
    with pytest.raises(TypeError, match=r"`scans\[1\]` must be a medphys.simulators.mr.MRResult"):
        audit.mr_physics_audit([SCANS[0], SIM[1]], LABELS, SIM)
    with pytest.raises(ValueError, match=r"`refined` must have shape \(cases, x, y, z\)"):
        audit.mr_physics_audit(SCANS, LABELS, SIM[:1])
    neg = SIM.copy()
    neg[0, 0, 0, 0] = -1.0
    with pytest.raises(ValueError, match=r"`refined` must be finite, non-negative magnitudes \(1 "):
        audit.mr_physics_audit(SCANS, LABELS, neg)
    with pytest.raises(ValueError, match="`labels` must be integers"):
        audit.mr_physics_audit(SCANS, LABELS.astype(float), SIM)


def test_the_nps_criterion_follows_the_noise_texture_toward_the_real_images():
    """Fully sampled 96 × 84 rings; "real" images: the simulated ones over their reference
    intensity with white noise of 0.04 added. A refined image with 0.03 more noise moves its NPS
    toward them and passes (measured RMS log₁₀ distance 0.261 → 0.236, and likewise for two
    other noise seeds); a smoothed one (σ 1 pixel) moves away and fails (0.708). Patches that
    were not divided by their reference intensity are refused."""
    from medphys import metrics

    big = rings((96, 84, 2))
    protocol = mr.MRProtocol.create(
        mr.SpinEcho.create(te_s=0.02, tr_s=0.6),
        field_t=1.5,
        coils=mr.LoopCoils.create(4),
        snr=30.0,
    )
    scans = [mr.simulate(jax.random.key(k), big, protocol) for k in (1, 2)]
    labels = np.stack([np.asarray(big.labels)] * 2)
    sim = np.stack([np.asarray(s.image.data) for s in scans])
    rng = np.random.default_rng(0)
    scale = np.asarray([metrics.mr_reference(s) for s in sim])[:, None, None, None]
    slices = np.moveaxis(sim / scale, -1, 1).reshape(-1, *sim.shape[1:3])
    real = slices + rng.normal(0, 0.04, slices.shape)
    noisier = np.abs(sim + rng.normal(0, 0.03, sim.shape) * scale)
    smooth = np.stack([ndimage.gaussian_filter(s, (1.0, 1.0, 0)) for s in sim])
    toward = audit.mr_physics_audit(scans, labels, noisier, real=real)
    away = audit.mr_physics_audit(scans, labels, smooth, real=real)
    assert toward.criterion("nps_distance_to_real").passed, toward.describe()
    assert not away.criterion("nps_distance_to_real").passed, away.describe()
    with pytest.raises(ValueError, match="real_mr_slices"):
        audit.mr_physics_audit(scans, labels, sim, real=1000.0 * real)
