"""The Bloch tier through `simulate`: spin echo and gradient echo against tier 1, Pulseq files."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import medphys.simulators as sims
from medphys.simulators import mr
from medphys.volume import LabeledVolume, MRValues

N = 16
TE, TR = 0.015, 0.5


def _phantom() -> LabeledVolume:
    x, y = np.meshgrid(np.arange(N) - N / 2 + 0.5, np.arange(N) - N / 2 + 0.5, indexing="ij")
    labels = np.zeros((N, N, 2), np.int32)
    labels[(x / 6.5) ** 2 + (y / 5.5) ** 2 < 1] = 1
    labels[((x - 1.5) / 3.0) ** 2 + (y / 2.5) ** 2 < 1] = 2
    labels[..., 1] = np.where(labels[..., 1] == 2, 1, labels[..., 1])  # slices differ
    return LabeledVolume.create(
        labels,
        [(0, "outside", "air"), (1, "body", "muscle"), (2, "core", "brain_white_matter")],
        spacing_mm=(5.0, 6.0, 5.0),
    )


PHANTOM = _phantom()
TISSUE = np.asarray(PHANTOM.labels) > 0
COILS = mr.LoopCoils.create(4)


def _rel_in_tissue(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)[TISSUE] / np.abs(b)[TISSUE]))


DWELL = 2e-5  # keeps every block on the 10 µs Pulseq raster for this matrix


@pytest.fixture(scope="module")
def spin_echoes():
    """Tier 1 and Bloch tier, same protocol otherwise (4 loop coils, noise at SNR 30, same key)."""
    tier1 = mr.MRProtocol.create(
        mr.SpinEcho.create(te_s=TE, tr_s=TR), field_t=1.5, coils=COILS, snr=30.0
    )
    bloch = dataclasses.replace(
        tier1, sequence=mr.BlochSpinEcho.create(te_s=TE, tr_s=TR, dwell_s=DWELL)
    )
    key = jax.random.key(3)
    return tuple(mr.simulate(key, PHANTOM, p, dtype=jnp.float64) for p in (tier1, bloch))


def test_bloch_spin_echo_image_equals_the_tier1_image(spin_echoes):
    t1, bl = spin_echoes
    # the same key draws the same noise and the noise levels agree, so the noisy images differ
    # by the noise-free difference: relaxation during the 0.1 ms pulses and the 0.32 ms readout
    # (measured 2e-4 without noise); the issue asks for 1-2 %
    assert float(bl.noise_std) == pytest.approx(float(t1.noise_std), rel=0.005)
    assert float(bl.noise_std) > 0
    assert _rel_in_tissue(bl.image.data, t1.image.data) < 0.01
    assert bl.image.data.shape == PHANTOM.shape
    np.testing.assert_array_equal(bl.image.affine, PHANTOM.affine)
    # k-space in the same layout and phase (not only the magnitude image)
    k1, kb = np.asarray(t1.kspace), np.asarray(bl.kspace)
    assert np.linalg.norm(kb - k1) < 0.005 * np.linalg.norm(k1)
    assert bl.kspace.shape == (4, N, N, 2)
    np.testing.assert_array_equal(np.asarray(bl.coil_maps), np.asarray(t1.coil_maps))
    # outside the body: noise only (no ghost, no shift): as dark as tier 1 there
    outside = ~TISSUE
    assert float(np.mean(np.asarray(bl.image.data)[outside])) == pytest.approx(
        float(np.mean(np.asarray(t1.image.data)[outside])), rel=0.02
    )


@pytest.mark.slow  # about 5 s; in the default tier test_mr_bloch's isochromats decay with T2' and
# the Bloch spin echo above runs the tier through a protocol
def test_gradient_echo_with_isochromats_decays_with_t2star():
    """8 isochromats per voxel (Szegő rule over the sequence's horizon) give the T2* decay of
    the tier-1 spoiled GRE, exp(-TE/T2*), with no correction for the finite set."""
    te, tr, flip, n_iso = 0.008, 0.05, 30.0, 8
    # T2* from per-structure MR values: T2' = 1/(1/20 ms - 1/50 ms) = 33 ms
    rows = tuple(
        dataclasses.replace(s, mr=MRValues.create(0.8, 0.6, 0.05, "test", t2star_s=0.02))
        if s.name == "core"
        else s
        for s in PHANTOM.structures
    )
    grid = dataclasses.replace(PHANTOM, structures=rows)
    tier1 = mr.MRProtocol.create(
        mr.GradientEcho.create(te_s=te, tr_s=tr, flip_deg=flip), field_t=1.5, coils=COILS
    )
    seq = mr.BlochGradientEcho.create(
        te_s=te, tr_s=tr, flip_deg=flip, n_dummy=30, isochromats=n_iso, dwell_s=DWELL
    )
    got = mr.simulate(jax.random.key(0), grid, dataclasses.replace(tier1, sequence=seq))
    got = np.asarray(got.image.data)
    ref = mr.simulate(jax.random.key(0), grid, tier1).image.data  # exp(-TE/T2*) exactly
    # measured 6.3e-3, within the rule's bound 0.2 h/T2' = 0.7 % for the 8.2 ms horizon (the
    # quantiles of `lorentzian_offsets` gave 3.5e-2: 0.820 instead of exp(-0.24) = 0.787)
    assert _rel_in_tissue(got, ref) < 0.01
    # the T2* decay is what the isochromats add: the core is exp(-0.24) = 0.787 of its T2-only
    # signal (21 % darker)
    maps = mr.tissue_maps(grid, 1.5, dtype=jnp.float64)
    no_spread = mr.acquire(jax.random.key(0), dataclasses.replace(maps, t2star_s=maps.t2_s), tier1)
    ratio = got / np.asarray(no_spread.image.data)
    t2prime = 1.0 / (1.0 / 0.02 - 1.0 / 0.05)
    assert np.median(ratio[np.asarray(grid.labels) == 2]) == pytest.approx(
        np.exp(-te / t2prime), rel=0.01
    )


def test_pulseq_protocol_reads_a_written_sequence(tmp_path):
    dwell = DWELL
    fov = (N * 5.0, N * 6.0)
    enc = mr.Cartesian2D.create((N, N), fov, dwell_s=dwell)
    mr.write_pulseq(mr.spin_echo(te_s=TE, tr_s=TR, n_dummy=1, encoding=enc), tmp_path / "se.seq")
    (tmp_path / "se.toml").write_text(
        'modality = "mr"\nfield_t = 1.5\n[sequence]\ntype = "pulseq"\nfile = "se.seq"\n'
        '[coils]\ntype = "loops"\nn_coils = 4\n',
        encoding="utf-8",
    )
    protocol = sims.load(tmp_path / "se.toml")
    assert isinstance(protocol.sequence, mr.PulseqSequence)
    key = jax.random.key(0)
    got = mr.simulate(key, PHANTOM, protocol, dtype=jnp.float64).image.data
    # the file drops ideal spoiling (Pulseq has none): the same sequence without it, built here
    same = dataclasses.replace(
        protocol,
        sequence=mr.BlochSpinEcho.create(te_s=TE, tr_s=TR, dwell_s=dwell, ideal_spoiling=False),
    )
    want = mr.simulate(key, PHANTOM, same, dtype=jnp.float64).image.data
    assert _rel_in_tissue(got, want) < 1e-3
    # and tier 1: T2 << TR leaves no transverse magnetisation to spoil (exp(-0.5/0.07) < 0.1 %)
    tier1 = dataclasses.replace(protocol, sequence=mr.SpinEcho.create(te_s=TE, tr_s=TR))
    ref = mr.simulate(key, PHANTOM, tier1, dtype=jnp.float64).image.data
    assert _rel_in_tissue(got, ref) < 0.02


def test_bloch_tier_bad_input(tmp_path):
    example = tmp_path / "se16.seq"
    enc = mr.Cartesian2D.create((8, 8), (40.0, 48.0), dwell_s=2e-5)
    mr.write_pulseq(mr.spin_echo(te_s=TE, tr_s=TR, encoding=enc), example)
    wrong = mr.MRProtocol.create(mr.PulseqSequence.create(example), field_t=1.5)
    with pytest.raises(
        ValueError, match=r"simulate: .*64 ADC samples; the Bloch tier needs one per k-space "
    ):
        mr.simulate(jax.random.key(0), PHANTOM, wrong)
    with pytest.raises(ValueError, match=r"BlochSpinEcho.create: `te_s` must be less than"):
        mr.BlochSpinEcho.create(te_s=0.6, tr_s=0.5)
    with pytest.raises(ValueError, match=r"BlochGradientEcho.create: `flip_deg` must be in"):
        mr.BlochGradientEcho.create(te_s=0.004, tr_s=0.02, flip_deg=190.0)
    with pytest.raises(ValueError, match=r"`isochromats` must be >= 1"):
        mr.BlochSpinEcho.create(te_s=TE, tr_s=TR, isochromats=0)
    with pytest.raises(FileNotFoundError, match=r"PulseqSequence.create: no such Pulseq file"):
        mr.PulseqSequence.create(tmp_path / "nope.seq")
    with pytest.raises(TypeError, match=r"MRProtocol.create: `sequence` must be a tier-1/2"):
        mr.MRProtocol.create("spin_echo", field_t=1.5)
    protocol = mr.MRProtocol.create(mr.BlochSpinEcho.create(te_s=TE, tr_s=TR), field_t=1.5)
    maps = mr.tissue_maps(PHANTOM, 1.5)
    with pytest.raises(TypeError, match=r"acquire: the Bloch tier chooses its isochromats"):
        jax.jit(lambda m: mr.acquire(jax.random.key(0), m, protocol).image.data)(maps)


def test_bloch_sequences_are_static_and_hashable():
    a = mr.BlochSpinEcho.create(te_s=TE, tr_s=TR)
    assert a == mr.BlochSpinEcho.create(te_s=TE, tr_s=TR) and hash(a) == hash(
        mr.BlochSpinEcho.create(te_s=TE, tr_s=TR)
    )
    assert jax.tree_util.tree_leaves(a) == []  # static: passes through jit as structure


@pytest.mark.slow  # default-tier twins: test_bloch_spin_echo_image_equals_the_tier1_image runs
# the same protocol (test_mr_config checks the catalog entry equals it field by field)
def test_catalog_bloch_protocol_matches_its_tier1_twin():
    """mr-t1-se-bloch is mr-t1-se through the Bloch tier: same noise, same image within 1 %."""
    bloch, tier1 = sims.load("mr-t1-se-bloch"), sims.load("mr-t1-se")
    assert isinstance(bloch.sequence, mr.BlochSpinEcho)
    assert (bloch.sequence.te_s, bloch.sequence.tr_s) == (tier1.sequence.te_s, tier1.sequence.tr_s)
    assert (bloch.coils, bloch.snr, bloch.field_t) == (tier1.coils, tier1.snr, tier1.field_t)
    key = jax.random.key(7)
    a, b = (mr.simulate(key, PHANTOM, p, dtype=jnp.float64) for p in (bloch, tier1))
    assert _rel_in_tissue(a.image.data, b.image.data) < 0.01
