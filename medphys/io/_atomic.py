"""Writing files so that a crash never leaves a half-written one: temporary name, then rename."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

#: the suffix of files being written (hidden names: ``.<name>.<random>.partial``)
PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path`` atomically.

    The temporary name is hidden and ends in ``.partial`` (`PARTIAL_SUFFIX`), never in ``path``'s
    own suffixes: a process killed while writing leaves no file that a folder scanner takes for an
    image (``glob("*.nii.gz")``), and `remove_partial_files` cleans such leftovers at the next
    start. Writers must therefore name their format explicitly (not by the file's extension). On
    an exception the temporary file is removed and ``path`` untouched.

    Example:
        >>> with atomic_path("out.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    path = Path(path)
    # A fresh exclusive name (not mkstemp, whose files are 0600): the final file gets the
    # permissions the user's umask gives any new file.
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}"
        try:
            with open(tmp, "xb"):
                break
        except FileExistsError:  # pragma: no cover (48 random bits)
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def remove_partial_files(folder: str | Path) -> int:
    """Delete the temporary files of writes that never finished under ``folder`` (recursively).

    Only hidden files named by `atomic_path` (``.<name>.<12 hex digits>.partial``) are touched.

    Returns:
        the number of files removed.
    """
    removed = 0
    for tmp in Path(folder).rglob(f".*{PARTIAL_SUFFIX}"):
        stem = tmp.name[: -len(PARTIAL_SUFFIX)]
        token = stem.rsplit(".", 1)[-1]
        if tmp.is_file() and len(token) == 12 and all(c in "0123456789abcdef" for c in token):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
    return removed
