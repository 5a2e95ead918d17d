"""Finding the definition catalogs (``phantoms/`` and ``simulators/``) by name or by path.

In a wheel the catalogs live in ``medphys/_catalog/<kind>/``; in a source checkout (editable
install, or tests run from the repository) they are the top-level ``<kind>/`` folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ._errors import ConfigError, unknown_name

Kind = Literal["phantoms", "simulators", "trials"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def catalog_dir(kind: Kind) -> Path:
    """The folder holding the ``kind`` catalog."""
    for candidate in (_PACKAGE_DIR / "_catalog" / kind, _PACKAGE_DIR.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"medphys: the {kind!r} catalog is missing from this installation "
        f"(looked in {_PACKAGE_DIR / '_catalog' / kind} and {_PACKAGE_DIR.parent / kind}); "
        "reinstall medphys"
    )


def names(kind: Kind) -> tuple[str, ...]:
    """Names of the definitions in a catalog (file stems), sorted."""
    return tuple(sorted(p.stem for p in catalog_dir(kind).glob("*.toml")))


def resolve(kind: Kind, name_or_path: str | Path) -> Path:
    """A catalog name (``"adult-male"``) or a path to a user's TOML file → the file's path.

    Raises:
        UnknownNameError: ``name_or_path`` is not a catalog name; the message lists the names.
        ConfigError: ``name_or_path`` looks like a path but no such file exists.
    """
    what = {"phantoms": "phantom", "simulators": "protocol", "trials": "trial"}[kind]
    text = str(name_or_path)
    path = Path(text)
    if path.is_file():
        return path
    if path.suffix == ".toml" or len(path.parts) > 1:
        raise ConfigError(
            f"{text}: no such {what} file (give a catalog name, one of "
            f"{', '.join(names(kind))}, or the path of an existing .toml file)"
        )
    candidate = catalog_dir(kind) / f"{text}.toml"
    if candidate.is_file():
        return candidate
    raise unknown_name(what, text, names(kind))
