"""Engines: in process, a pool of 2 worker processes and a local Ray cluster write the same bytes."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import pytest

from medphys.pipelines import (
    EngineError,
    LocalEngine,
    RayEngine,
    generate,
    load_config,
    make_engine,
)

TINY = """
cases = 2
seed = 5
[phantom]
name = ["torso-basic", "water-cylinder"]
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
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY)
    return load_config(path)


@pytest.fixture(scope="module")
def in_process(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("local1") / "out"
    summary = generate(out, config)
    assert summary["engine"] == {"engine": "local", "workers": 1}
    return _digests(out)


@pytest.mark.slow  # about 15 s; the Ray test below keeps an engine of fresh worker processes that
# writes the in-process bytes in the default tier
def test_process_pool_gives_the_same_bytes(config, in_process, tmp_path):
    with LocalEngine(workers=2) as engine:
        summary = generate(tmp_path / "out", config, engine=engine)
    assert summary["generated"] == 2 and summary["engine"]["workers"] == 2
    assert _digests(tmp_path / "out") == in_process


def test_ray_cluster_gives_the_same_bytes(config, in_process, tmp_path):
    with RayEngine(num_cpus=2) as engine:
        described = engine.describe()
        summary = generate(tmp_path / "out", config, engine=engine)
    assert described["engine"] == "ray" and described["cluster_cpus"] == 2
    assert summary["generated"] == 2
    assert _digests(tmp_path / "out") == in_process


def test_engine_bad_input_fails_fast(monkeypatch):
    with pytest.raises(EngineError, match=r"`workers` must be a positive integer \(got 0\)"):
        LocalEngine(workers=0)
    with pytest.raises(EngineError, match=r"--engine must be 'local' or 'ray' \(got 'spark'\)"):
        make_engine("spark")
    with pytest.raises(EngineError, match=r"--address is for --engine ray"):
        make_engine("local", address="auto")
    start = time.perf_counter()
    with pytest.raises(EngineError, match=r"Ray cluster at '127.0.0.1:1' does not answer"):
        RayEngine(address="127.0.0.1:1")
    assert time.perf_counter() - start < 30  # not Ray's minutes of retries
    with pytest.raises(EngineError, match=r"must be 'auto', 'host:port'"):
        RayEngine(address="nowhere")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(EngineError, match=r'needs Ray: pip install "medphys\[ray\]"'):
        make_engine("ray")
