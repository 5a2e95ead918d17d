"""Interrupted, killed and failing runs: honest exit codes, no partial file visible, exact resume."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medphys.io import _atomic, load_nifti
from medphys.pipelines import OutputError, generate, load_config

TINY = """
cases = 3
seed = 3
[phantom]
name = "torso-basic"
shape = [36, 26, 6]
spacing_mm = [10.0, 10.0, 50.0]
center_mm = [0.0, 0.0, 0.0]
supersample = 1
[output]
montage = false
save_projections = true
"""


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def reference(config_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    generate(out, load_config(config_path))
    return _digests(out)


def _manifest_cases(out: Path) -> list[str]:
    path = out / "manifest.jsonl"
    return [json.loads(s)["case"] for s in path.read_text().splitlines()] if path.exists() else []


def _complete_cases(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob("cases/*/case.json"))


def _assert_nothing_partial_visible(out: Path) -> None:
    for image in out.rglob("*.nii.gz"):
        load_nifti(image)  # every visible image is whole
    assert not [p for p in out.rglob("*.nii.gz") if "partial" in p.name]
    # the manifest lists only complete cases, and all of them but the one whose commit (sidecar
    # rename, then manifest rename) the interruption split
    listed, complete = _manifest_cases(out), _complete_cases(out)
    assert set(listed) <= set(complete) and len(complete) - len(listed) <= 1


@pytest.mark.slow  # about 15-25 s; the Ctrl-C/SIGTERM test stays in the default tier
def test_interrupted_at_every_write_resumes_to_the_same_bytes(
    config_path, reference, tmp_path, monkeypatch
):
    """Ctrl-C at each of the job's first 10 file writes; each rerun ends byte-identical."""
    config = load_config(config_path)
    real_replace = os.replace
    points = 0
    for stop_at in range(1, 11):
        out = tmp_path / f"run{stop_at}"
        calls = 0

        def replace(src, dst, _stop=stop_at):
            nonlocal calls
            calls += 1
            if calls == _stop:
                raise KeyboardInterrupt  # Ctrl-C just before this file would have appeared
            real_replace(src, dst)

        monkeypatch.setattr(_atomic.os, "replace", replace)
        try:
            generate(out, config)
            finished = True
        except KeyboardInterrupt:
            finished = False
        finally:
            monkeypatch.setattr(_atomic.os, "replace", real_replace)
        assert not finished
        points += 1
        _assert_nothing_partial_visible(out)
        (out / "cases").mkdir(exist_ok=True)
        (out / "cases" / ".ct.nii.gz.0123456789ab.partial").write_bytes(b"")  # a SIGKILL's leftover
        generate(out, config)
        assert _digests(out) == reference, f"resume after interruption at write {stop_at}"
    assert points == 10


def test_disk_full_part_way_keeps_complete_cases(config_path, reference, tmp_path, monkeypatch):
    config = load_config(config_path)
    out = tmp_path / "out"
    real_replace = os.replace
    calls = 0

    def replace(src, dst):
        nonlocal calls
        calls += 1
        if "case-0001" in str(dst) and str(dst).endswith("mr.nii.gz"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(_atomic.os, "replace", replace)
    with pytest.raises(
        OutputError,
        match=r"writing to .* failed \(the disk is full\); every complete case is intact",
    ):
        generate(out, config)
    monkeypatch.setattr(_atomic.os, "replace", real_replace)
    assert _complete_cases(out) == ["case-0000"] == _manifest_cases(out)
    assert not (out / "cases" / "case-0001" / "case.json").exists()
    assert not list(out.rglob("*.partial"))
    generate(out, config)
    assert _digests(out) == reference


def _start(out: Path, config_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medphys.cli",
            "generate",
            "--out",
            str(out),
            "--config",
            str(config_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 300.0) -> None:
    start = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - start < timeout_s
        time.sleep(0.05)


def test_ctrl_c_and_sigterm_exit_non_zero_and_resume(config_path, reference, tmp_path):
    out = tmp_path / "out"
    proc = _start(out, config_path)
    _wait_for(out / "cases" / "case-0000" / "case.json", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; complete cases are kept" in err and "Traceback" not in err
    _assert_nothing_partial_visible(out)

    proc = _start(out, config_path)
    _wait_for(out / "cases" / "case-0001" / "case.json", proc)  # the last case is running
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    _assert_nothing_partial_visible(out)
    assert _complete_cases(out) == ["case-0000", "case-0001"]

    generate(out, load_config(config_path))  # the rerun, in this (already compiled) process
    assert _digests(out) == reference


@pytest.mark.slow
def test_sigkill_at_random_points_resumes_to_the_same_bytes(config_path, reference, tmp_path):
    """Ten SIGKILLs at random moments of fresh runs; each rerun ends byte-identical."""
    rng = random.Random(0)
    for point in range(10):
        out = tmp_path / f"kill{point}"
        proc = _start(out, config_path)
        _wait_for(out / "dataset.json", proc)
        time.sleep(rng.uniform(0.0, 8.0))
        proc.kill()
        proc.communicate()
        for image in out.rglob("*.nii.gz"):
            load_nifti(image)
        proc = _start(out, config_path)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert _digests(out) == reference, f"kill point {point}"
