"""Packaging: the catalogs are found, the public surface imports, a CPU install has no CUDA."""

from __future__ import annotations

from importlib import metadata

import jax
import pytest

import medphys
from medphys import materials, phantoms, simulators
from medphys._catalog import catalog_dir


def test_catalogs_are_found_by_name():
    assert (catalog_dir("phantoms") / "torso-basic.toml").is_file()
    assert {"ct-chest-120kvp", "mr-t1-se"} <= set(simulators.names())
    assert "torso-basic" in phantoms.names()
    assert len(materials.names()) >= 25


def test_every_catalog_protocol_loads():
    for name in simulators.names():
        protocol = simulators.load(name)
        assert protocol is not None, name


def test_runtime_requirements_carry_no_cuda():
    requires = metadata.requires("medphys") or []
    runtime = [r for r in requires if "extra ==" not in r]
    assert runtime, "medphys metadata lists no requirements"
    assert not [r for r in runtime if "cuda" in r.lower() or r.lower().startswith("nvidia")]
    gpu = [r for r in requires if "extra == 'gpu'" in r.replace('"', "'")]
    assert gpu and all("cuda" in r for r in gpu)


@pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="a GPU install is expected to carry CUDA"
)
def test_cpu_environment_has_no_cuda_packages():
    cuda = sorted(
        d.metadata["Name"]
        for d in metadata.distributions()
        if (d.metadata["Name"] or "").lower().startswith(("nvidia-", "jax-cuda"))
    )
    assert not cuda, f"a CPU install pulled CUDA packages: {cuda}"


def test_version_is_consistent():
    assert medphys.__version__ == metadata.version("medphys")
