"""Using a trained sim-to-real refiner: applying it to CT volumes (`refine`) and to MR scans
(`refine_mr`, with the hard k-space data-consistency layer), and keeping it on disk
(`save_refiner` / `load_refiner`: architecture, modality, weights and the training's meta, with
the file's SHA-256 as the digest refined images record).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from .. import io as _io
from ..metrics import mr_reference
from ._refiner import Refiner


@jax.jit
def _apply(refiner: Refiner, slices: Array, labels: Array | None) -> Array:
    return refiner(slices, labels)


def _checked(where: str, refiner: Any, modality: str) -> Refiner:
    if not isinstance(refiner, Refiner):
        raise TypeError(
            f"{where}: `refiner` must be a medphys.neural.Refiner (got {refiner!r:.80})"
        )
    if refiner.modality != modality:
        other = "refine_mr" if refiner.modality == "mr" else "refine"
        raise ValueError(
            f"{where}: this refiner was built for {refiner.modality.upper()} images, not "
            f"{modality.upper()}; use medphys.neural.{other}"
        )
    return refiner


def _labels(where: str, refiner: Refiner, labels: Any, shape: tuple[int, ...]) -> Array | None:
    if not refiner.n_labels:
        if labels is not None:
            raise ValueError(f"{where}: this refiner is not label-conditioned; drop `labels`")
        return None
    if labels is None:
        raise ValueError(
            f"{where}: this refiner is label-conditioned ({refiner.n_labels} label values); pass "
            "the image's label map as `labels`"
        )
    lab = np.asarray(getattr(labels, "labels", labels))
    if lab.shape != shape or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(
            f"{where}: `labels` must be an integer label map of the image's shape {shape} "
            f"(got {lab.dtype} {lab.shape})"
        )
    if lab.min() < 0 or lab.max() >= refiner.n_labels:
        raise ValueError(
            f"{where}: `labels` holds values {int(lab.min())}…{int(lab.max())}; this refiner "
            f"knows 0…{refiner.n_labels - 1} (the label values of its training data)"
        )
    return jnp.asarray(lab, jnp.int32)


def refine(
    refiner: Refiner, hu: Float[Array, "x y z"], *, labels: Any = None, batch: int = 8
) -> Float[Array, "x y z"]:
    """Refine a CT volume (HU): slice by slice along z with a 2-D refiner (``batch`` slices a
    call), whole with a 3-D one; returns HU on the same grid. A label-conditioned refiner
    (`RefineConfig.label_conditioning`) needs the image's integer label map as ``labels``.

    Raises:
        TypeError: ``refiner`` is not a `Refiner`.
        ValueError: an MR refiner; ``hu`` not 3-D, or sizes (in-plane for 2-D, all three for
            3-D) not multiples of ``refiner.multiple``; labels missing, unexpected, of another
            shape or with values the refiner was not trained on.
    """
    where = "medphys.neural.refine"
    _checked(where, refiner, "ct")
    return _slicewise(where, refiner, hu, labels, batch)


def _slicewise(where: str, refiner: Refiner, image: Any, labels: Any, batch: int) -> Array:
    a = jnp.asarray(image, jnp.float32)
    if a.ndim != 3:
        raise ValueError(f"{where}: the image must be a 3-D (x, y, z) volume (got shape {a.shape})")
    lab = _labels(where, refiner, labels, a.shape)
    axes = a.shape[: refiner.dim if refiner.dim == 3 else 2]
    if any(n % refiner.multiple for n in axes):
        what = "in-plane size" if refiner.dim == 2 else "volume size"
        raise ValueError(f"{where}: {what} {axes} must be a multiple of {refiner.multiple}")
    if refiner.dim == 3:
        return _apply(refiner, a[None], None if lab is None else lab[None])[0]
    slices = jnp.moveaxis(a, -1, 0)
    lab = None if lab is None else jnp.moveaxis(lab, -1, 0)
    out = [
        _apply(refiner, slices[i : i + batch], None if lab is None else lab[i : i + batch])
        for i in range(0, slices.shape[0], batch)
    ]
    return jnp.moveaxis(jnp.concatenate(out, 0), 0, -1)


def refine_mr(
    refiner: Refiner,
    scan: Any,
    *,
    labels: Any = None,
    data_consistency: bool = True,
    batch: int = 8,
) -> Float[Array, "x y z"]:
    """Refine a simulated MR scan's magnitude image (slice by slice along z with a 2-D refiner,
    whole with a 3-D one).

    The image is divided by its reference intensity (`medphys.metrics.mr_reference`, as in
    training), refined,
    brought back to the scan's scale and, with ``data_consistency``, given back the scan's
    acquired k-space lines (`medphys.simulators.mr.data_consistency`); without it, clipped at
    zero (a magnitude), as in training.

    Args:
        refiner: an MR `Refiner` (trained on `SimulatedMR` cases).
        scan: the `medphys.simulators.mr.MRResult` whose ``image`` is refined.
        labels: the image's integer label map, for a label-conditioned refiner.
        data_consistency: apply the hard data-consistency layer (as the training did unless
            its configuration turned it off).
        batch: slices per call.

    Returns:
        the refined magnitude image on the scan's grid and scale.

    Raises:
        TypeError: not a `Refiner`, or ``scan`` not an `MRResult`.
        ValueError: a CT refiner; sizes not multiples of ``refiner.multiple``.
    """
    from ..simulators import mr

    where = "medphys.neural.refine_mr"
    _checked(where, refiner, "mr")
    if not isinstance(scan, mr.MRResult):
        raise TypeError(
            f"{where}: `scan` must be a medphys.simulators.mr.MRResult (got {type(scan).__name__})"
        )
    image = jnp.asarray(scan.image.data, jnp.float32)
    scale = mr_reference(image)
    refined = _slicewise(where, refiner, image / scale, labels, batch) * scale
    if data_consistency:
        return mr.data_consistency(refined, scan)
    return jnp.maximum(refined, 0.0)


REFINER_FORMAT = "medphys-refiner-1"


def _architecture(refiner: Refiner) -> dict[str, Any]:
    return {
        "dim": refiner.dim,
        "width": int(refiner.stem.conv.out_features),
        "depth": refiner.depth,
        "blocks": len(refiner.blocks),
        "labels": refiner.n_labels,
        "modality": refiner.modality,
    }


def save_refiner(path: str | Path, refiner: Refiner, *, meta: dict[str, Any] | None = None) -> str:
    """Write a trained refiner (architecture, weights, ``meta``) to ``path`` atomically.

    ``meta`` (JSON-serialisable) should say what it was trained on (modality, pixel spacing,
    training digest); `load_refiner` returns it. Returns the SHA-256 of the file's bytes, the
    digest that images refined with it record.

    Raises:
        TypeError: ``refiner`` is not a `Refiner`.
    """
    if not isinstance(refiner, Refiner):
        raise TypeError(
            f"medphys.neural.save_refiner: `refiner` must be a Refiner (got {type(refiner).__name__})"
        )
    leaves = jax.tree_util.tree_leaves(nnx.state(refiner, nnx.Param))
    arrays = {f"leaf{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
    info = {"format": REFINER_FORMAT, "architecture": _architecture(refiner), "meta": meta or {}}
    _io.save_checkpoint(path, arrays, info)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_refiner(path: str | Path) -> tuple[Refiner, dict[str, Any], str]:
    """``(refiner, meta, digest)`` from a file written by `save_refiner` (files written before
    refiners had a modality are CT refiners).

    Raises:
        ValueError: not a refiner file, or weights that do not fit its architecture.
    """
    where = "medphys.neural.load_refiner"
    arrays, info = _io.load_checkpoint(path)
    if info.get("format") != REFINER_FORMAT:
        raise ValueError(
            f"{where}: {path} is not a medphys refiner (format {info.get('format')!r}; expected "
            f"{REFINER_FORMAT!r}); a training checkpoint is not a refiner: use the run's refiner.npz"
        )
    shape = nnx.eval_shape(lambda: Refiner(jax.random.key(0), **info["architecture"]))
    graphdef, params = nnx.split(shape, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if len(arrays) != len(leaves) or any(
        arrays.get(f"leaf{i:05d}", np.empty(0)).shape != np.shape(a) for i, a in enumerate(leaves)
    ):
        raise ValueError(f"{where}: the weights in {path} do not fit its architecture")
    loaded = [jnp.asarray(arrays[f"leaf{i:05d}"]) for i in range(len(leaves))]
    refiner = nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, loaded))
    return refiner, info["meta"], hashlib.sha256(Path(path).read_bytes()).hexdigest()
