"""Pulseq 1.4 reader/writer: shape compression, round trips, the shipped example, parse errors."""

from __future__ import annotations

import math
from importlib.resources import files

import numpy as np
import pytest

from medphys.simulators import mr
from medphys.simulators.mr._pulseq import compress_shape, decompress_shape

EXAMPLE = files("medphys.simulators.mr") / "examples" / "se_16.seq"

FID = """# a hand-written FID: 90° block pulse (100 us), then 8 samples of 1 ms
[VERSION]
major 1
minor 4
revision 1

[DEFINITIONS]
RadiofrequencyRasterTime 1e-06
BlockDurationRaster 1e-05

[BLOCKS]
1 10 1 0 0 0 0 0
2 800 0 0 0 1 1 0

[RF]
1 2500 1 2 0 0 0 0

[TRAP]
1 1000 0 8000 0 0

[ADC]
1 8 1000000 0 0 0

[SHAPES]

shape_id 1
num_samples 100
1
0
0
97

shape_id 2
num_samples 100
0
0
98
"""


def _example_blocks():
    """How ``examples/se_16.seq`` was made (the test below checks it byte for byte)."""
    enc = mr.Cartesian2D.create((16, 16), (200.0, 200.0), dwell_s=2e-5)
    exc = mr.sinc_pulse(90.0, 2e-3, time_bw_product=4.0, raster_s=1e-5)
    return mr.spin_echo(
        te_s=0.02,
        tr_s=0.1,
        encoding=enc,
        excitation=exc,
        slice_thickness_mm=5.0,
        ideal_spoiling=False,
    )


def test_decompress_known_vector_and_compress_round_trip():
    # derivative 1, then 0 x 99, then -1, then 0 x 19: 100 ones, 20 zeros
    w = decompress_shape(np.array([1, 0, 0, 97, -1, 0, 0, 17.0]), 120)
    np.testing.assert_array_equal(w, np.r_[np.ones(100), np.zeros(20)])
    rng = np.random.default_rng(3)
    for _ in range(20):
        runs = rng.integers(1, 6, size=12)
        wave = np.repeat(rng.choice([0.0, 0.25, 0.5, 1.0, 3.0], size=12), runs)
        packed = compress_shape(wave)
        np.testing.assert_allclose(decompress_shape(packed, wave.size), wave, atol=1e-11)
    uncompressed = np.array([0.1, 0.7, 0.2])  # stored as is: as many values as samples
    np.testing.assert_array_equal(decompress_shape(compress_shape(uncompressed), 3), uncompressed)


def test_hand_written_fid_parses_and_simulates(tmp_path):
    path = tmp_path / "fid.seq"
    path.write_text(FID)
    blocks = mr.read_pulseq(path)
    assert len(blocks) == 2
    assert blocks[0].rf.flip_deg() == pytest.approx(90.0)
    assert blocks[1].gz.amplitude_hz_per_mm == pytest.approx(1.0)  # 1000 Hz/m
    t2 = 0.02
    s = np.asarray(mr.bloch(mr.lower(blocks), mr.Spins.create(pd=1.0, t1_s=1.0, t2_s=t2)))
    t = 50e-6 + (np.arange(8) + 0.5) * 1e-3  # from the pulse's centre
    np.testing.assert_allclose(s, np.exp(-t / t2), rtol=1e-6)


def test_shipped_example_is_reproducible_and_equals_the_builder(tmp_path):
    blocks = _example_blocks()
    out = tmp_path / "se_16.seq"
    mr.write_pulseq(blocks, out, name="se_16")
    assert out.read_text() == EXAMPLE.read_text()
    read = mr.read_pulseq(EXAMPLE)
    assert len(read) == len(blocks) == 16 * 7
    n, fov = 16, 200.0
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    pos = np.stack([(i - n // 2) * fov / n, (j - n // 2) * fov / n, 0.0 * i], -1).reshape(-1, 3)
    disc = ((i - n // 2) ** 2 + (j - n // 2) ** 2 < 36).ravel()
    spins = mr.Spins.create(pd=disc * 1.0, t1_s=0.9, t2_s=0.08, position_mm=pos)
    a = np.asarray(mr.bloch(mr.lower(read), spins))
    b = np.asarray(mr.bloch(mr.lower(blocks), spins))
    assert np.max(np.abs(a - b)) < 1e-6 * np.max(np.abs(b))
    image = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(a.reshape(n, n).T))))
    assert image[n // 2, n // 2] > 10 * image[1, 1]  # the disc, not noise


def test_round_trip_of_every_event_kind(tmp_path):
    blocks = [
        mr.Block(
            rf=mr.gaussian_pulse(30.0, 1e-3, raster_s=1e-5, phase_deg=45.0),
            gz=mr.Trapezoid(2.0, 1e-3, rise_s=1e-4, fall_s=1e-4),
        ),
        mr.Block(
            gx=mr.ArbitraryGradient(np.linspace(-1.0, 1.0, 50), 1e-5),
            adc=mr.ADC(10, 5e-5, delay_s=1e-5, phase_rad=0.3),
        ),
        mr.Block(duration_s=1e-3),
    ]
    path = tmp_path / "all.seq"
    mr.write_pulseq(blocks, path)
    read = mr.read_pulseq(path)
    pos = np.array([[1.0, 0.0, 0.3], [-2.0, 0.5, -0.2]])
    spins = mr.Spins.create(pd=1.0, t1_s=0.5, t2_s=0.05, b0_hz=[10.0, -5.0], position_mm=pos)
    a = np.asarray(mr.bloch(mr.lower(read), spins))
    b = np.asarray(mr.bloch(mr.lower(blocks), spins))
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace("[BLOCKS]", "[BLOKS]"), r"fid.seq: \[BLOCKS\] section is missing"),
        (
            lambda s: s.replace("1 1000 0 8000 0 0", "1 1000 0 8O00 0 0"),
            r"fid.seq:19: \[TRAP\] not a row of numbers",
        ),
        (
            lambda s: s.replace("2 800 0 0 0 1 1 0", "2 800 0 0 0 1 4 0"),
            r"fid.seq:13: \[BLOCKS\] block 2 refers to ADC event 4, which is not defined",
        ),
        (lambda s: s.replace("minor 4", "minor 3"), r"fid.seq:3: \[VERSION\] version 1.3"),
        (
            lambda s: s.replace("num_samples 100\n1\n", "num_samples 90\n1\n"),
            r"fid.seq:26: \[SHAPES\] shape 1: decompresses to 100 samples",
        ),
        (
            lambda s: s.replace("1 2500 1 2 0 0 0 0", "1 2500 1 7 0 0 0 0"),
            r"fid.seq:16: \[RF\] refers to shape 7",
        ),
        (
            lambda s: s.replace("2 800 0", "2 700 0"),
            r"fid.seq:13: \[BLOCKS\] block 2 lasts 0.007 s",
        ),
        (lambda s: s.replace("[ADC]\n1 8", "[ADC]\n1 0"), r"fid.seq:22: \[ADC\] needs num >= 1"),
    ],
)
def test_unparsable_files_name_file_line_and_section(tmp_path, edit, message):
    path = tmp_path / "fid.seq"
    path.write_text(edit(FID))
    with pytest.raises(mr.PulseqError, match=message):
        mr.read_pulseq(path)


def test_writer_rejects_unrepresentable_timing(tmp_path):
    blocks = [mr.Block(duration_s=1.5e-5)]
    with pytest.raises(ValueError, match=r"write_pulseq: blocks\[0\] duration = 1.5e-05 s"):
        mr.write_pulseq(blocks, tmp_path / "x.seq")
    assert not math.isnan(blocks[0].length_s())
