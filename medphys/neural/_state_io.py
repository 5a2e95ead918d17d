"""Checkpoints of a training state (a dataclass pytree with a ``key`` and a ``step``): every
leaf as a named array, the loss history, and a digest of the configuration that made it, written
atomically through `medphys.io.save_checkpoint`. Shared by `fit` and `train_refiner`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import io as _io


def save_state(
    path: Path,
    state: Any,
    losses: Any,
    *,
    digest: str,
    kind: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``state`` (its key as raw key data), ``losses``, ``{digest, step, kind}`` and any
    ``extra`` arrays by name (`load_extra` reads them back)."""
    leaves = jax.tree_util.tree_leaves(
        dataclasses.replace(state, key=jax.random.key_data(state.key))
    )
    arrays = {f"leaf{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays["losses"] = np.asarray(losses, np.float64)
    for name, value in (extra or {}).items():
        arrays[f"extra_{name}"] = np.asarray(value)
    _io.save_checkpoint(path, arrays, {"digest": digest, "step": int(state.step), "kind": kind})


def load_state(path: Path, like: Any, *, digest: str, kind: str, where: str) -> tuple[Any, Any]:
    """``(state, losses)`` from ``path``, shaped like ``like``.

    Raises:
        ValueError: a checkpoint of another kind or configuration (digest), or leaves whose
            shapes do not match ``like``'s.
    """
    arrays, meta = _io.load_checkpoint(path)
    if meta.get("kind", kind) != kind or meta.get("digest") != digest:
        raise ValueError(
            f"{where}: the checkpoint {path} belongs to another configuration (model, settings "
            "or data differ); give a new `checkpoint` path or delete it"
        )
    raw = dataclasses.replace(like, key=jax.random.key_data(like.key))
    leaves, treedef = jax.tree_util.tree_flatten(raw)
    names = [f"leaf{i:05d}" for i in range(len(leaves))]
    if any(
        n not in arrays or arrays[n].shape != np.shape(a)
        for n, a in zip(names, leaves, strict=True)
    ):
        raise ValueError(f"{where}: the checkpoint {path} does not match this model's parameters")
    state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[n]) for n in names])
    key = jax.random.wrap_key_data(state.key, impl=jax.random.key_impl(like.key))
    return dataclasses.replace(state, key=key), arrays["losses"]


def load_extra(path: Path, name: str) -> np.ndarray | None:
    """The ``extra`` array ``name`` that `save_state` wrote to ``path``, or ``None``."""
    arrays, _ = _io.load_checkpoint(path)
    return arrays.get(f"extra_{name}")
