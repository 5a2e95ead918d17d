"""Errors raised at the boundary for user input."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration file or value that medphys cannot accept.

    The message names the file (when there is one), the key path, the value that arrived and what
    is allowed. The command-line interface prints it without a traceback and exits with status 2.
    """


class UnknownNameError(KeyError, ValueError):
    """A catalog name (material, phantom, protocol, structure) that does not exist.

    The message lists the names that do exist.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def unknown_name(what: str, name: str, available: list[str] | tuple[str, ...]) -> UnknownNameError:
    """Build an `UnknownNameError` listing the alternatives, closest first."""
    import difflib

    close = difflib.get_close_matches(name, list(available), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(sorted(available))
    return UnknownNameError(f"unknown {what} {name!r}.{hint} Available: {listing}.")
