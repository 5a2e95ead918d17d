"""Real anatomy: a user's NIfTI label map (e.g. an automatic organ segmentation of a CT) plus a
label → material mapping → a `LabeledVolume` the simulators take as it is.

The mapping is a dict ``{label: material}`` or ``{label: (name, material)}``, or a TOML file::

    background_material = "air"        # label 0 (optional; default air)
    [labels]
    1 = { name = "spleen", material = "spleen" }
    5 = "liver"                        # name = material name

Label values are kept as they are in the file (gaps allowed); the affine is the file's (RAS+ mm).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pydantic

from .. import materials
from .._config import Strict, read_toml, validate
from .._errors import UnknownNameError, unknown_name
from ..volume import LabeledVolume, Structure

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class _Entry(Strict):
    name: str
    material: str


class _MappingSpec(Strict):
    background_material: str = "air"
    labels: dict[Annotated[int, pydantic.Field(ge=1)], str | _Entry]


def _rows(where: str, mapping: Mapping[Any, Any], background: str) -> dict[int, Structure]:
    rows: dict[int, Structure] = {}
    for key, value in mapping.items():
        try:
            label = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: mapping key {key!r} is not an integer label") from None
        if label < 0 or label != float(key):
            raise ValueError(f"{where}: mapping key {key!r} must be a non-negative integer")
        if isinstance(value, _Entry):
            name, material = value.name, value.material
        elif isinstance(value, str):
            name, material = value, value
        elif isinstance(value, (tuple, list)) and len(value) == 2:
            name, material = str(value[0]), str(value[1])
        else:
            raise TypeError(
                f"{where}: mapping[{key!r}] must be a material name or a (name, material) pair "
                f"(got {value!r})"
            )
        if "+" in name:  # a contrast mixture used as the name
            name = name.replace("+", "_").replace(".", "p")
        if not _NAME.match(name):
            raise ValueError(f"{where}: mapping[{key!r}]: structure name {name!r} is not valid")
        try:
            materials.get(material)
        except UnknownNameError:
            raise unknown_name(f"material (label {label})", material, materials.names()) from None
        rows[label] = Structure(label, name, material)
    if 0 not in rows:
        try:
            materials.get(background)
        except UnknownNameError:
            raise unknown_name("background material", background, materials.names()) from None
        rows[0] = Structure(0, "background", background)
    return rows


def load_labelmap(
    path: str | Path,
    mapping: Mapping[Any, Any] | str | Path,
    *,
    background_material: str = "air",
) -> LabeledVolume:
    """A `LabeledVolume` from a NIfTI label map and a label → material mapping.

    Args:
        path: ``.nii`` / ``.nii.gz`` file of integer labels (0 = background unless mapped).
        mapping: ``{label: material}``, ``{label: (name, material)}``, or a TOML file path.
        background_material: material of label 0 when the mapping has no entry for it (a TOML
            mapping's own ``background_material`` wins).

    Raises:
        FileNotFoundError: no such file.
        ValueError: non-integer labels, or labels in the file without a mapping (all listed).
        UnknownNameError: a mapped material is not in `medphys.materials`.
        ConfigError: an invalid TOML mapping (file, line and key named).

    Example:
        >>> lv = load_labelmap("ct_seg.nii.gz", {1: "spleen", 2: "kidney", 5: "liver"})  # doctest: +SKIP
    """
    import nibabel as nib

    where = "medphys.phantoms.load_labelmap"
    if isinstance(mapping, (str, Path)):
        mpath = Path(mapping)
        if not mpath.is_file():
            raise FileNotFoundError(f"{where}: no such mapping file {str(mpath)!r}")
        spec = validate(
            _MappingSpec,
            read_toml(mpath),
            source=str(mpath),
            text=mpath.read_text(encoding="utf-8"),
        )
        mapping, background_material = spec.labels, spec.background_material
    elif not isinstance(mapping, Mapping):
        raise TypeError(f"{where}: `mapping` must be a dict or a TOML path (got {mapping!r})")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no such file {str(path)!r}")
    img = nib.load(path)
    raw = np.asanyarray(img.dataobj)
    if raw.ndim == 4 and raw.shape[3] == 1:
        raw = raw[..., 0]
    if raw.ndim != 3:
        raise ValueError(f"{where}: {str(path)!r} has shape {raw.shape}; a 3-D label map is needed")
    if not np.issubdtype(raw.dtype, np.integer):
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise ValueError(f"{where}: {str(path)!r} holds non-integer values; not a label map")
    labels = np.asarray(raw).astype(np.int64)
    rows = _rows(where, mapping, background_material)
    present = np.unique(labels)
    unmapped = [int(v) for v in present if int(v) not in rows]
    if unmapped:
        raise ValueError(
            f"{where}: labels {unmapped} of {path.name!r} have no material in the mapping; add "
            f"them (e.g. {{{unmapped[0]}: 'soft_tissue'}}) — mapped labels: {sorted(rows)}"
        )
    top = int(present.max())
    dtype = np.uint8 if top < 256 else np.int16 if top < 32768 else np.int32
    used = [rows[k] for k in sorted(rows)]
    return LabeledVolume.create(
        labels.astype(dtype), used, affine=np.asarray(img.affine, dtype=np.float64)
    )
