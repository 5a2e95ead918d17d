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
    data = read_toml(path)
    text = path.read_text(encoding="utf-8")
    modality = data.get("modality")
    if modality in ("ct", "radiograph"):
        from .xray import protocol_from_config
    elif modality == "mr":
        from .mr import protocol_from_config
    else:
        raise ConfigError(
            f"{path}: modality: must be one of {', '.join(repr(m) for m in _MODALITIES)} "
            f"(got {modality!r})"
        )
    return protocol_from_config(data, source=str(path), text=text)
