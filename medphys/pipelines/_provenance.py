"""Provenance: every input that shapes a job's bytes, resolved, recorded and hashed.

A job's outputs depend on its config *and* on the definitions its names point at (phantom family
TOMLs, protocol TOMLs) and on the medphys version. `job_inputs` hashes each of them separately,
so that a rerun into the same folder can say exactly which input changed; `job_digest` combines
them into the one digest that marks a dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from importlib import metadata
from typing import Any

from .._catalog import resolve
from .._config import read_toml
from .._version import __version__

_DEPENDENCIES = ("jax", "jaxlib", "numpy", "scipy", "nibabel", "xraylib", "spekpy", "pydantic")


def versions() -> dict[str, str]:
    """medphys's and its physics/numerics dependencies' versions, for provenance."""
    out = {"medphys": __version__, "python": platform.python_version()}
    for name in _DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def digest_of(content: Any) -> str:
    """A short SHA-256 of a JSON-able value (keys sorted; 16 hex digits)."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Definition:
    """A catalog definition as a job used it.

    Attributes:
        kind: ``"phantom"`` or ``"protocol"``.
        name: the name or path the config gave.
        path: the file it resolved to.
        content: the parsed TOML (what decides the bytes; comments and layout do not).
        digest: `digest_of(content)`.
    """

    kind: str
    name: str
    path: str
    content: dict[str, Any]
    digest: str

    def record(self) -> dict[str, Any]:
        """The JSON record written to ``dataset.json`` and case sidecars."""
        return {
            "name": self.name,
            "path": self.path,
            "digest": self.digest,
            "content": self.content,
        }

    def load(self) -> Any:
        """The `medphys.phantoms.Phantom` or protocol this definition describes (validated)."""
        if self.kind == "phantom":
            from .. import phantoms

            return phantoms.from_config(self.content, source=self.path)
        from .. import simulators

        return simulators.from_config(self.content, source=self.path)


def load_families(definitions: dict[str, Definition]) -> tuple[Any, ...]:
    """The phantom families among ``definitions`` (roles ``"phantom/..."``), in order."""
    return tuple(d.load() for role, d in definitions.items() if role.startswith("phantom/"))


def definition(kind: str, name: str) -> Definition:
    """Resolve and read a phantom (``kind="phantom"``) or protocol definition.

    Raises:
        UnknownNameError / ConfigError: not a catalog name, or not a readable TOML file.
    """
    path = resolve("phantoms" if kind == "phantom" else "simulators", name)
    content = read_toml(path)
    return Definition(kind, str(name), str(path), content, digest_of(content))


def job_inputs(config_digest: str, definitions: dict[str, Definition]) -> dict[str, str]:
    """The digest of each input of a job: its config, each definition (by role), medphys's version.

    Args:
        config_digest: the digest of the job's own settings.
        definitions: by role (``"phantom/adult-male"``, ``"protocol/ct"``), the definitions used.
    """
    inputs = {"config": config_digest, "medphys": __version__}
    inputs.update({role: d.digest for role, d in definitions.items()})
    return inputs


def job_digest(inputs: dict[str, str]) -> str:
    """One digest over all of a job's inputs (`job_inputs`)."""
    return digest_of(inputs)


def changed_inputs(before: dict[str, str], now: dict[str, str]) -> list[str]:
    """The roles whose digest differs between two `job_inputs` (added or removed ones too)."""
    return sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
