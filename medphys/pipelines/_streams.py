"""Named random streams: every stage of a case draws from its own key, found by name.

A case's key is split by *name*, not by position: ``stream(key, "phantom")`` is
``fold_in(key, id("phantom"))`` where the id is a fixed 31-bit hash of the name (CRC-32). Adding a
stage or an imaging arm creates a new name and leaves the keys of every existing stage, and so the
bytes of their outputs, unchanged. Two arms that name the same noise stream draw the same noise
realisation (common random numbers).

Stream names in use (the case recipe's vocabulary):

- ``"phantom"``: the virtual patient (population draw);
- ``"lesion"``: lesion placement and shape;
- ``"texture"``: anatomical background texture;
- ``"arm/<name>"``: the acquisition noise of imaging arm ``<name>`` (or the arm's
  ``noise_stream`` when it shares one).
"""

from __future__ import annotations

import re
import zlib

import jax

from .._types import PRNGKey

_NAME = re.compile(r"^[a-z0-9][a-z0-9_./-]*$")


def stream_id(name: str) -> int:
    """The fixed integer id of stream ``name`` (CRC-32 of its UTF-8 bytes, 31 bits).

    Raises:
        ValueError: ``name`` is empty or holds characters other than lower-case letters, digits
            and ``_ . / -``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"medphys.pipelines.stream: `name` must be lower-case letters, digits and _ . / - "
            f"(got {name!r})"
        )
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def stream(key: PRNGKey, name: str) -> PRNGKey:
    """The key of stream ``name`` under ``key``: ``jax.random.fold_in(key, stream_id(name))``.

    Example:
        >>> k_phantom = stream(case_key, "phantom")  # doctest: +SKIP
    """
    return jax.random.fold_in(key, stream_id(name))


def case_key(seed: int, index: int) -> PRNGKey:
    """The key of case ``index`` of a job seeded with ``seed``: ``fold_in(jax.random.key(seed), index)``.

    A case's key depends only on the seed and its index, never on which cases ran before it or
    on which worker runs it.
    """
    return jax.random.fold_in(jax.random.key(seed), index)
