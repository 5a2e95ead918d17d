"""``medphys.simulators.load``: protocols from the ``simulators/`` catalog or a user's TOML file.

Each protocol file names its ``modality`` at the top level; the modality's package validates the rest:
``"ct"`` and ``"radiograph"`` → `medphys.simulators.xray`, ``"mr"`` → `medphys.simulators.mr`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._catalog import names as _names
from .._catalog import resolve
from .._config import read_toml
from .._errors import ConfigError

_MODALITIES = ("ct", "radiograph", "mr")


def names() -> tuple[str, ...]:
    """Names of the protocols in the catalog."""
    return _names("simulators")


def load(name_or_path: str | Path) -> Any:
    """Load a protocol by catalog name (``"ct-chest-120kvp"``) or from a TOML file.

    Returns:
        a `medphys.simulators.xray.CTProtocol`-like or `medphys.simulators.mr.MRProtocol`-like
        value, depending on the file's ``modality``.

    Raises:
        UnknownNameError: not a catalog name (the message lists them).
        ConfigError: the file is invalid (names file, line, key path, value and what is allowed).
    """
    path = resolve("simulators", name_or_path)
    return from_config(read_toml(path), source=str(path), text=path.read_text(encoding="utf-8"))


def from_config(data: dict[str, Any], *, source: str, text: str | None = None) -> Any:
    """A protocol from a parsed definition (a TOML file's content), as `load` builds it.

    Args:
        data: the parsed TOML.
        source: where it came from, for error messages (a path or a name).
        text: the file's text, if any (lets error messages give line numbers).

    Raises:
        ConfigError: the definition is invalid (names source, key path, value, what is allowed).
    """
    modality = data.get("modality")
    if modality in ("ct", "radiograph"):
        from .xray import protocol_from_config
    elif modality == "mr":
        from .mr import protocol_from_config
    else:
        raise ConfigError(
            f"{source}: modality: must be one of {', '.join(repr(m) for m in _MODALITIES)} "
            f"(got {modality!r})"
        )
    return protocol_from_config(data, source=source, text=text)
