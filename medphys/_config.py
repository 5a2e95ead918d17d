"""Loading and validating TOML definitions (phantoms, protocols, job configs) with pydantic.

Every definition file is validated once, on load, by a pydantic model. A failure becomes a single
`ConfigError` whose message names the file, the key path, the line (when it can be found), the value
that arrived and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from ._errors import ConfigError

M = TypeVar("M", bound=pydantic.BaseModel)


class Strict(pydantic.BaseModel):
    """Base for config models: unknown keys are errors, values are immutable after validation."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning syntax errors into a `ConfigError` that names file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _key_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def _find_line(text: str, loc: Sequence[str | int]) -> int | None:
    """Best-effort line number of the last named key in ``loc`` (TOML keeps no positions)."""
    names = [p for p in loc if isinstance(p, str)]
    if not names:
        return None
    key = re.escape(names[-1])
    pattern = re.compile(
        rf"^[ \t]*(?:{key}[ \t]*=|\[+[ \t]*(?:[\w.\-\"]*\.)?{key}[ \t]*\]+)", re.MULTILINE
    )
    match = pattern.search(text)
    if match is None:
        return None
    return text.count("\n", 0, match.start()) + 1


def _describe(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        return "unknown key (check the spelling; unknown keys are not allowed)"
    if err.get("type") == "missing":
        return "required key is missing"
    if "input" in err and err.get("type") != "missing":
        return f"{msg} (got {err['input']!r})"
    return msg


def format_validation_error(
    exc: pydantic.ValidationError, *, source: str, text: str | None = None
) -> str:
    """One readable message for all errors in ``exc``: ``source:line: key.path: what is wrong``."""
    lines = []
    for err in exc.errors():
        loc = err.get("loc", ())
        where = source
        if text is not None:
            line = _find_line(text, loc)
            if line is not None:
                where = f"{source}:{line}"
        lines.append(f"{where}: {_key_path(loc)}: {_describe(err)}")
    return "\n".join(lines)


def validate(model: type[M], data: Mapping[str, Any], *, source: str, text: str | None = None) -> M:
    """Validate ``data`` with ``model``; raise `ConfigError` naming ``source`` on failure.

    Args:
        model: the pydantic model class.
        data: the raw mapping (from TOML, JSON or keyword arguments).
        source: what to call the input in messages (a file path, or ``"medphys.foo(...)"``).
        text: the file's text, used to find line numbers.
    """
    try:
        return model.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=source, text=text)) from None


def load_model(model: type[M], path: str | Path) -> M:
    """Read a TOML file and validate it with ``model``."""
    path = Path(path)
    data = read_toml(path)
    return validate(model, data, source=str(path), text=path.read_text(encoding="utf-8"))
