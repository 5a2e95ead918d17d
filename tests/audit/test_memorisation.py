"""The memorisation audit on real CT patches, and its statistics against direct numpy.

Data: non-overlapping 32×32 tiles (at least half body, > −500 HU; not constant) of the real CT
slices 693_UNCR (pydicom-data), eCT_Supplemental (2 frames) and CT_small (pydicom): 292 tiles,
shuffled with key 0 and split i.i.d. into 130 training, 100 held-out and 62 generated images.
Measured (audit key 1, pixel space):

- i.i.d. generated images: 0/62 flagged (NNDR < 1/3), 9 below the held-out 5th-percentile DCR
  (12 allowed), membership AUC 0.505: passes; the negative control (AUC 0.510) passes and the
  positive control (27/62 flagged, AUC 0.666) fails, so the audit is valid;
- one exact training copy planted among them: its ratio is 0, it is flagged (1/62 > 1 %) and
  the audit fails on NNDR only;
- a memorising generator (all 130 training images + Gaussian noise of 0.02 training standard
  deviations): 94/130 flagged, 130/130 closer than the held-out 5th-percentile DCR, membership
  AUC 1.000 and TPR at 1 % FPR 1.0: fails every criterion.
"""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest
import scipy.stats

from medphys.audit import MemorisationReport, memorisation_audit

data_store = pytest.importorskip("data_store")

from real_ct import ct_tiles  # noqa: E402  (after the skip: it reads the wheel's files)


@pytest.fixture(scope="module")
def sets() -> dict[str, np.ndarray]:
    x = ct_tiles()
    x = x[np.asarray(jax.random.permutation(jax.random.key(0), len(x)))]
    return {"training": x[:130], "held_out": x[130:230], "generated": x[230:]}


@pytest.fixture(scope="module")
def iid_report(sets) -> MemorisationReport:
    return memorisation_audit(
        jax.random.key(1), sets["training"], sets["generated"], sets["held_out"]
    )


def test_iid_generated_images_pass_and_controls_behave(iid_report, sets):
    r = iid_report
    print(r.describe())
    assert len(sets["training"]) == 130 and len(sets["generated"]) == 62
    audited = r.result("pixels")
    assert r.valid and r.passed
    assert audited.flagged == 0
    assert abs(audited.auc - 0.5) <= 0.1
    assert abs(r.result("pixels", "negative control").auc - 0.5) <= 0.1
    assert r.result("pixels", "negative control").passed
    assert not r.result("pixels", "positive control").passed
    assert r.result("pixels", "positive control").flagged_fraction > 0.3
    assert "PASSED" in r.describe()
    d = json.loads(json.dumps(r.to_dict()))
    assert d["passed"] is True and d["valid"] is True
    assert {c["name"] for c in d["results"][0]["criteria"]} == {"NNDR", "DCR", "MIA"}


def test_planted_exact_copy_is_flagged(sets):
    generated = sets["generated"].copy()
    generated[3] = sets["training"][7]
    r = memorisation_audit(jax.random.key(1), sets["training"], generated, sets["held_out"])
    audited = r.result("pixels")
    assert audited.ratio[3] == 0.0 and audited.nearest[3] == 7 and audited.dcr[3] == 0.0
    assert audited.flagged == 1 and audited.extracted == 1
    assert r.valid and not r.passed
    assert [c.name for c in audited.criteria if not c.passed] == ["NNDR"]
    assert r.to_dict()["results"][0]["flagged_nearest_training"] == [7]


def test_memorising_generator_fails_with_high_membership_auc(sets):
    train = sets["training"]
    noise = np.random.default_rng(0).standard_normal(train.shape)
    copies = train + 0.02 * train.std() * noise
    r = memorisation_audit(jax.random.key(1), train, copies, sets["held_out"])
    audited = r.result("pixels")
    print(r.describe())
    assert audited.auc > 0.9
    assert r.valid and not r.passed
    assert not any(c.passed for c in audited.criteria)
    assert audited.dcr_close == len(train)
    assert "FAILED" in r.describe()


def _direct(train, gen, held, report, space_subject=("pixels", "audited")):
    """Every statistic by brute force: full distance matrices, explicit pair loops."""
    mean, std = train.mean(), train.std()

    def z(a):
        return ((a - mean) / std).reshape(len(a), -1)

    def dist(a, b):
        return np.sqrt(((z(a)[:, None, :] - z(b)[None, :, :]) ** 2).sum(-1))

    idx = report.indices
    ref = held[idx["reference"]]
    d = np.sort(dist(gen, train), axis=1)
    ratio = d[:, 0] / d[:, 1]
    dcr_ref = dist(ref, train).min(axis=1)
    k = math.ceil(0.05 * len(ref))
    p5 = np.sort(dcr_ref)[k - 1]
    members = train[idx["members"]]
    non = ref[idx["non_members"]]
    s_mem = -dist(members, gen).min(axis=1)
    s_non = -dist(non, gen).min(axis=1)
    auc = np.mean([(a > b) + 0.5 * (a == b) for a in s_mem for b in s_non])
    tpr = 0.0
    for t in np.concatenate([s_mem, s_non]):
        if np.mean(s_non >= t) <= 0.01:
            tpr = max(tpr, np.mean(s_mem >= t))
    return ratio, d[:, 0], dcr_ref, p5, auc, tpr


def test_statistics_equal_direct_numpy_on_a_small_case():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(25, 6, 5))
    held = rng.normal(size=(44, 6, 5))
    gen = np.concatenate(
        [rng.normal(size=(18, 6, 5)), train[:4] + 0.01 * rng.normal(size=(4, 6, 5))]
    )
    r = memorisation_audit(jax.random.key(4), train, gen, held, block=7)
    a = r.result("pixels")
    ratio, dcr, dcr_ref, p5, auc, tpr = _direct(train, gen, held, r)
    np.testing.assert_allclose(a.ratio, ratio, rtol=1e-10)
    np.testing.assert_allclose(a.dcr, dcr, rtol=1e-10)
    np.testing.assert_allclose(np.sort(a.dcr_held_out), np.sort(dcr_ref), rtol=1e-10)
    assert a.dcr_threshold == pytest.approx(p5, rel=1e-10)
    assert a.dcr_close == int(np.sum(dcr < p5))
    assert a.auc == pytest.approx(auc, abs=1e-12)
    assert a.tpr_at_low_fpr == pytest.approx(tpr, abs=1e-12)
    assert a.flagged == int(np.sum(ratio < 1 / 3)) >= 4
    # the DCR allowance is the beta-binomial 1 % tail
    n_ref = len(r.indices["reference"])
    k = math.ceil(0.05 * n_ref)
    tail = scipy.stats.betabinom(len(gen), k, n_ref + 1 - k)
    c = a.dcr_close_allowed
    assert tail.sf(c - 1) >= 0.01 > tail.sf(c)
    # blocks do not change anything
    r2 = memorisation_audit(jax.random.key(4), train, gen, held, block=256)
    np.testing.assert_array_equal(r2.result("pixels").nearest, a.nearest)
    np.testing.assert_allclose(r2.result("pixels").ratio, a.ratio, rtol=1e-12)


def test_feature_space_audit_runs_beside_pixels(sets):
    """A fixed random projection stands in for an encoder (the trained encoder's audit is the
    slow test below)."""
    w = np.random.default_rng(5).normal(size=(32 * 32, 16))
    r = memorisation_audit(
        jax.random.key(1),
        sets["training"],
        sets["generated"],
        sets["held_out"],
        features=lambda x: np.asarray(x).reshape(len(x), -1) @ w,
    )
    assert r.spaces == ("pixels", "features")
    assert len(r.results) == 6
    assert not r.result("features", "positive control").passed
    json.dumps(r.to_dict())


@pytest.mark.slow
def test_audit_in_the_trained_encoder_space(sets):
    """About 20 s on 2 cores. With an encoder of 100 SimCLR steps on the training patches the
    feature-space audit passes the i.i.d. set (AUC about 0.50), fails a memorising generator
    (AUC about 0.99) and both controls behave."""
    from medphys.neural import embed, train_encoder

    enc = train_encoder(jax.random.key(2), sets["training"], steps=100, batch=64, progress=False)
    feats = lambda x: embed(enc, x)
    r = memorisation_audit(
        jax.random.key(1), sets["training"], sets["generated"], sets["held_out"], features=feats
    )
    assert r.valid and r.passed
    train = sets["training"]
    copies = train + 0.02 * train.std() * np.random.default_rng(0).standard_normal(train.shape)
    r = memorisation_audit(jax.random.key(1), train, copies, sets["held_out"], features=feats)
    assert r.valid and not r.passed and r.result("features").auc > 0.9


def test_a_misbehaving_control_makes_the_audit_not_valid(sets):
    # held-out images from another distribution: the negative control fails its DCR/MIA tests
    held = sets["held_out"] + 400.0
    r = memorisation_audit(jax.random.key(1), sets["training"], sets["generated"], held)
    assert not r.valid and not r.passed
    assert any("negative control" in p for p in r.control_problems())
    assert "NOT VALID" in r.describe()


def test_three_dimensional_images():
    x = np.random.default_rng(1).normal(size=(90, 5, 4, 3))
    r = memorisation_audit(jax.random.key(0), x[:25], x[25:50], x[50:])
    assert r.sizes["negative_control"] == 20 and r.result("pixels").n_generated == 25


def test_bad_input_is_refused_before_any_work(sets):
    tr, ge, ho = sets["training"], sets["generated"], sets["held_out"]
    key = jax.random.key(0)
    with pytest.raises(
        ValueError,
        match=r"medphys\.audit\.memorisation_audit: every set must hold images of one shape",
    ):
        memorisation_audit(key, tr, ge[:, :16, :16], ho)
    with pytest.raises(ValueError, match="`held_out` must hold at least 40 images"):
        memorisation_audit(key, tr, ge, ho[:39])
    with pytest.raises(ValueError, match="`generated` must hold at least 20 images"):
        memorisation_audit(key, tr, ge[:19], ho)
    with pytest.raises(ValueError, match="`training` must hold at least 20"):
        memorisation_audit(key, tr[:5], ge, ho)
    bad = ge.copy()
    bad[4, 0, 0] = np.nan
    with pytest.raises(
        ValueError, match=r"`generated` must be finite; 1 of .* \(first in image 4\)"
    ):
        memorisation_audit(key, tr, bad, ho)
    with pytest.raises(ValueError, match=r"must be a batch of images \(n, H, W\)"):
        memorisation_audit(key, tr[0], ge, ho)
    with pytest.raises(TypeError, match="`features` must be a callable"):
        memorisation_audit(key, tr, ge, ho, features=3)
    with pytest.raises(ValueError, match="`nndr_threshold` must be a number in"):
        memorisation_audit(key, tr, ge, ho, nndr_threshold=1.5)
    with pytest.raises(ValueError, match=r"`features` must map 130 images to an \(n, d\) array"):
        memorisation_audit(key, tr, ge, ho, features=lambda x: np.zeros((3, 2)))
