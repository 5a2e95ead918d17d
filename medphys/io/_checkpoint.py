"""Training checkpoints: a flat set of named arrays plus JSON metadata in one ``.npz`` file,
written atomically (a killed run leaves the previous checkpoint intact, never half a new one)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import write_bytes_atomic

__all__ = ["load_checkpoint", "save_checkpoint"]

_META = "__medphys_meta__"


def save_checkpoint(path: str | Path, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``arrays`` (name → array) and ``meta`` (JSON-serialisable) to ``path`` atomically.

    Raises:
        ValueError: an array name collides with the metadata entry.
    """
    if _META in arrays:
        raise ValueError(f"medphys.io.save_checkpoint: array name {_META!r} is reserved")
    buf = io.BytesIO()
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[_META] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    np.savez(buf, **payload)  # type: ignore[arg-type]
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` as written by `save_checkpoint`.

    Raises:
        ValueError: ``path`` is not a medphys checkpoint.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"medphys.io.load_checkpoint: {path} is not a readable .npz checkpoint ({exc})"
        ) from None
    if _META not in arrays:
        raise ValueError(
            f"medphys.io.load_checkpoint: {path} has no medphys metadata; not a checkpoint"
        )
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    return arrays, meta
