"""MR protocol catalog (``simulators/mr-*.toml``) and config validation."""

from __future__ import annotations

from importlib.resources import files

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import medphys.materials as mm
import medphys.simulators as sims
from medphys._errors import ConfigError
from medphys.simulators import mr
from medphys.volume import LabeledVolume

MR_PROTOCOLS = [n for n in sims.names() if n.startswith("mr-")]


def test_catalog_has_the_required_protocols():
    for name in (
        "mr-t1-se",
        "mr-t2-se",
        "mr-flair",
        "mr-t1-gre",
        "mr-bssfp",
        "mr-t1-se-bloch",
        "mr-cine-bssfp",
    ):
        assert name in MR_PROTOCOLS


def test_bloch_and_cine_catalog_entries():
    bloch = sims.load("mr-t1-se-bloch")
    assert bloch.sequence == mr.BlochSpinEcho.create(te_s=0.015, tr_s=0.5, dwell_s=2e-5)
    assert bloch.field_t == 1.5 and bloch.n_coils == 4 and bloch.snr == 30.0
    cine = sims.load("mr-cine-bssfp")
    assert isinstance(cine, mr.CineProtocol)
    assert cine.protocol.sequence == mr.BSSFP.create(tr_s=0.004, flip_deg=60.0)
    assert cine.n_phases == 20 and cine.views_per_segment == 10
    assert cine.cardiac_period_s is None  # from the phantom's motion model
    assert cine.temporal_resolution_s == pytest.approx(0.04)
    assert cine.heartbeats(192) == 20


def test_t1_se_protocol_values():
    p = sims.load("mr-t1-se")
    assert isinstance(p, mr.MRProtocol) and isinstance(p.sequence, mr.SpinEcho)
    assert p.field_t == 1.5 and p.sequence.tr_s == 0.5 and p.sequence.te_s == 0.015
    assert p.n_coils == 4 and p.nex == 1 and p.snr == 30.0 and "T1" in p.description


def _ir_signal(protocol, material):
    props = mm.get(material).mr(protocol.field_t)
    return float(mr.signal(protocol.sequence, props.pd, props.t1_s, props.t2_s).real)


def test_flair_nulls_csf_and_stir_nulls_fat():
    flair, stir = sims.load("mr-flair"), sims.load("mr-stir")
    # nulled: a few per cent of the tissue signal (the TIs are rounded; library values may move)
    assert abs(_ir_signal(flair, "csf")) < 0.05 * abs(_ir_signal(flair, "brain_white_matter"))
    assert abs(_ir_signal(stir, "adipose")) < 0.05 * abs(_ir_signal(stir, "muscle"))
    # without the inversion CSF would be the brightest tissue of a T2-weighted image
    t2 = sims.load("mr-t2-se")
    assert _ir_signal(t2, "csf") > 2 * _ir_signal(t2, "brain_white_matter")


def test_weightings_order_tissues_as_expected():
    def se(name, material):
        p = sims.load(name)
        props = mm.get(material).mr(p.field_t)
        return float(mr.signal(p.sequence, props.pd, props.t1_s, props.t2_s).real)

    # T1 weighting: fat brighter than white matter, brain far brighter than CSF
    assert se("mr-t1-se", "adipose") > se("mr-t1-se", "brain_white_matter")
    assert se("mr-t1-se", "brain_white_matter") > 1.5 * se("mr-t1-se", "csf")
    # T2 weighting: the reverse
    assert se("mr-t2-se", "csf") > se("mr-t2-se", "brain_grey_matter")
    assert se("mr-t2-se", "brain_grey_matter") > se("mr-t2-se", "brain_white_matter")


TINY = LabeledVolume.create(
    np.pad(np.ones((8, 8, 2), np.int32), ((4, 4), (4, 4), (0, 0)))
    + np.pad(np.ones((4, 4, 2), np.int32), ((6, 6), (6, 6), (0, 0))),
    [(0, "outside", "air"), (1, "body", "muscle"), (2, "core", "brain_white_matter")],
    spacing_mm=(6.0, 6.0, 5.0),
)


def test_every_catalog_protocol_is_valid_for_the_library():
    for name in MR_PROTOCOLS:
        p = sims.load(name)
        if isinstance(p, mr.CineProtocol):
            p = p.protocol
        assert p.snr_reference is None or p.snr_reference in mm.names()
        if isinstance(p.sequence, mr.AbstractBlochSequence):
            continue  # simulated in test_mr_bloch_tier.py
        for material in ("brain_white_matter", "adipose", "csf"):
            props = mm.get(material).mr(p.field_t)
            s = mr.signal(p.sequence, props.pd, props.t1_s, props.t2_s, t2star_s=props.t2star_s)
            assert np.isfinite(complex(s))


def test_default_catalog_protocol_simulates():
    protocol = sims.load("mr-t1-se")  # the dataset default
    res = mr.simulate(jax.random.key(0), TINY, protocol)
    img = np.asarray(res.image.data)
    assert img.shape == TINY.shape and img.dtype == np.float32
    assert np.all(np.isfinite(img)) and img.min() >= 0
    inside = np.asarray(TINY.labels) == 2
    outside = np.asarray(TINY.labels) == 0
    assert img[inside].mean() > 3 * img[outside].mean()  # signal above the noise floor
    assert res.kspace.shape == (protocol.n_coils, *TINY.shape)
    assert res.kspace.dtype == jnp.complex64


def _write(tmp_path, text):
    path = tmp_path / "user-mr.toml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = """modality = "mr"
description = "test"
field_t = 1.5
snr = 20.0
nex = 1

[sequence]
type = "spin_echo"
te_s = 0.015
tr_s = 0.5
"""


def test_user_file_loads(tmp_path):
    p = sims.load(_write(tmp_path, BASE))
    assert p.sequence == mr.SpinEcho.create(te_s=0.015, tr_s=0.5)
    assert p.coils == mr.UniformCoils(1) and p.sampling == mr.FullSampling()
    tse = BASE.replace(
        'type = "spin_echo"\nte_s = 0.015\ntr_s = 0.5',
        'type = "fast_spin_echo"\nesp_s = 0.012\ntr_s = 3.0\nn_echoes = 16\necho = 8\n'
        'refocus_deg = 150.0\n[coils]\ntype = "loops"\nn_coils = 8\narray_radius_mm = 150.0\n'
        '[sampling]\ntype = "variable_density"\nacceleration = 3.0\nacs_lines = 12\n'
        "[field_variation]\nb1_std = 0.1",
    )
    p = sims.load(_write(tmp_path, tse))
    assert p.sequence == mr.FastSpinEcho.create(
        esp_s=0.012, tr_s=3.0, n_echoes=16, echo=8, refocus_deg=150.0
    )
    assert p.coils == mr.LoopCoils.create(8, array_radius_mm=150.0)
    assert p.sampling == mr.VariableDensityMask.create(3.0, acs_lines=12)
    assert p.field_variation == mr.FieldVariation.create(b1_std=0.1)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            ("te_s = 0.015", "te_s = 0.6"),
            r"user-mr\.toml:9: sequence\.te_s: `te_s` must be less than `tr_s` "
            r"\(got te_s=0\.6 s, tr_s=0\.5 s\)",
        ),
        (
            ("te_s = 0.015", "te_s = -0.015"),
            r"user-mr\.toml:9: sequence\.te_s: `te_s` must be positive \(seconds\) \(got -0\.015\)",
        ),
        (("nex = 1", "nex = 0"), r"user-mr\.toml:5: nex: `nex` must be >= 1 \(got 0\)"),
        (("snr = 20.0", "snr = 0.0"), r"user-mr\.toml:4: snr: `snr` must be positive \(got 0\.0\)"),
        (("tr_s = 0.5", "tr_s = 0.5\ntrr = 1"), r"user-mr\.toml:11: .*trr: unknown key"),
        (
            ('"spin_echo"', '"spin-echo"'),
            r"user-mr\.toml:\d+: sequence: .*'spin_echo', 'gradient_echo'",
        ),
        (("field_t = 1.5", 'field_t = "high"'), r"user-mr\.toml:3: field_t: .*valid number"),
    ],
)
def test_bad_file_errors_name_file_line_key_and_range(tmp_path, edit, match):
    with pytest.raises(ConfigError, match=match):
        sims.load(_write(tmp_path, BASE.replace(*edit)))


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (
            '[sequence]\ntype = "gradient_echo"\nte_s = 0.003\ntr_s = 0.01\nflip_deg = 200.0\n',
            r"sequence\.flip_deg: `flip_deg` must be in \(0, 180\] degrees \(got 200\.0\)",
        ),
        (
            '[sequence]\ntype = "fast_spin_echo"\nesp_s = 0.01\ntr_s = 3.0\nn_echoes = 8\n'
            "echo = 9\n",
            r"sequence\.echo: `echo` must be <= `n_echoes` = 8 \(got 9\)",
        ),
        (
            '[sequence]\ntype = "inversion_recovery"\nti_s = 0.6\nte_s = 0.02\ntr_s = 0.5\n',
            r"sequence\.ti_s: `ti_s` must be less than `tr_s`",
        ),
        (
            '[sequence]\ntype = "spin_echo"\nte_s = 0.01\ntr_s = 0.5\n[coils]\ntype = "loops"\n'
            "n_coils = 0\n",
            r"coils\.n_coils: `n_coils` must be >= 1 \(got 0\)",
        ),
        (
            '[sequence]\ntype = "spin_echo"\nte_s = 0.01\ntr_s = 0.5\n[sampling]\ntype = "random"\n'
            "acceleration = 0.5\n",
            r"sampling\.acceleration: `acceleration` must be >= 1",
        ),
    ],
)
def test_bad_tables(table, match):
    data_text = 'modality = "mr"\nfield_t = 3.0\n' + table
    import tomllib

    with pytest.raises(ConfigError, match=r"my\.toml:\d+: " + match):
        mr.protocol_from_config(tomllib.loads(data_text), source="my.toml", text=data_text)


BLOCH = BASE.replace(
    'type = "spin_echo"\nte_s = 0.015\ntr_s = 0.5',
    'type = "bloch_spin_echo"\nte_s = 0.015\ntr_s = 0.5\nisochromats = 4\nn_dummy = 2',
)


def test_bloch_tier_sequences_load(tmp_path):
    p = sims.load(_write(tmp_path, BLOCH))
    assert p.sequence == mr.BlochSpinEcho.create(te_s=0.015, tr_s=0.5, isochromats=4, n_dummy=2)
    gre = BASE.replace(
        'type = "spin_echo"\nte_s = 0.015\ntr_s = 0.5',
        'type = "bloch_gradient_echo"\nte_s = 0.004\ntr_s = 0.02\nflip_deg = 20.0\n'
        "rf_spoil_increment_deg = 117.0",
    )
    p = sims.load(_write(tmp_path, gre))
    assert p.sequence == mr.BlochGradientEcho.create(
        te_s=0.004, tr_s=0.02, flip_deg=20.0, rf_spoil_increment_deg=117.0
    )


def test_pulseq_file_is_resolved_relative_to_the_protocol(tmp_path):
    example = files("medphys.simulators.mr") / "examples" / "se_16.seq"
    (tmp_path / "seqs").mkdir()
    (tmp_path / "seqs" / "se.seq").write_bytes(example.read_bytes())
    text = BASE.replace(
        'type = "spin_echo"\nte_s = 0.015\ntr_s = 0.5',
        'type = "pulseq"\nfile = "seqs/se.seq"\nisochromats = 2',
    )
    p = sims.load(_write(tmp_path, text))
    assert isinstance(p.sequence, mr.PulseqSequence)
    assert p.sequence.path == str((tmp_path / "seqs" / "se.seq").resolve())
    assert p.sequence.isochromats == 2
    assert sum(b.adc is not None for b in p.sequence.sequence_blocks) == 16


@pytest.mark.parametrize(
    ("sequence", "match"),
    [
        (
            'type = "pulseq"\nfile = "missing.seq"',
            r"user-mr\.toml:9: sequence\.file: no such Pulseq file .*missing\.seq",
        ),
        (
            'type = "pulseq"\nfile = "broken.seq"',
            r"user-mr\.toml:9: sequence\.file: .*read_pulseq: .*broken\.seq: \[BLOCKS\] section is missing",
        ),
        (
            'type = "bloch_spin_echo"\nte_s = 0.015\ntr_s = 0.5\nisochromats = 0',
            r"user-mr\.toml:11: sequence\.isochromats: `isochromats` must be >= 1 \(got 0\)",
        ),
        (
            'type = "bloch_spin_echo"\nte_s = 0.6\ntr_s = 0.5',
            r"user-mr\.toml:9: sequence\.te_s: `te_s` must be less than `tr_s`",
        ),
    ],
)
def test_bad_bloch_tier_tables(tmp_path, sequence, match):
    (tmp_path / "broken.seq").write_text("[VERSION]\nmajor 9\n", encoding="utf-8")
    text = BASE.replace('type = "spin_echo"\nte_s = 0.015\ntr_s = 0.5', sequence)
    with pytest.raises(ConfigError, match=match):
        sims.load(_write(tmp_path, text))


CINE = """modality = "mr"
field_t = 1.5

[sequence]
type = "bssfp"
tr_s = 0.004
flip_deg = 60.0

[cine]
n_phases = 30
views_per_segment = 10
cardiac_period_s = 1.0
"""


def test_cine_table_builds_a_cine_protocol_and_checks_the_timing(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"user-mr\.toml:10: cine\.n_phases: 30 frames of 40 ms .* need 1\.2 s, more than "
        r"the cardiac period 1 s",
    ):
        sims.load(_write(tmp_path, CINE))
    p = sims.load(_write(tmp_path, CINE.replace("n_phases = 30", "n_phases = 25")))
    assert isinstance(p, mr.CineProtocol) and p.n_phases == 25 and p.cardiac_period_s == 1.0
    with pytest.raises(ConfigError, match=r"cine\.views_per_segment: `views_per_segment` must"):
        sims.load(_write(tmp_path, CINE.replace("views_per_segment = 10", "views_per_segment = 0")))
