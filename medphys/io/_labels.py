"""One label table for a whole dataset, matched by structure name, and remapping cases onto it.

Each medphys case numbers its labels in its own phantom's structure order, so one value can mean
the prostate in a male case and the uterus in a female case. Training tools need one meaning per
value across the dataset. The dataset-wide table is built from structure *names*:

- value 0 is the background: in every case the structure whose value is 0 (medphys calls it
  ``background``), and any structure named ``background``;
- every other name gets 1, 2, ... in sorted order of the names (Python string order), so the
  table does not depend on the order or number of the cases that share the same names.

A table given by the caller (or by a dataset's ``dataset.json``) is used instead when it passes
`check_label_table`: background 0, values 0, 1, 2, ... without gaps (as nnU-Net requires), and
a value for every structure name of the cases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..volume import LabeledVolume, Structure

BACKGROUND = "background"


def _is_background(s: Structure) -> bool:
    return int(s.label) == 0 or s.name == BACKGROUND


def label_table(tables: Iterable[Sequence[Structure | str]]) -> dict[str, int]:
    """The dataset-wide label table: ``{"background": 0, name: 1, ...}`` with names sorted.

    Args:
        tables: the structure table of each case (``LabeledVolume.structures``), or the
            structure names of each phantom family (``Phantom.structure_names``).

    Returns:
        a dict from structure name to its dataset-wide value, in value order.

    Example:
        >>> from medphys.volume import Structure
        >>> male = [Structure(0, "background", "air"), Structure(5, "prostate", "prostate")]
        >>> female = [Structure(0, "background", "air"), Structure(5, "uterus", "muscle")]
        >>> label_table([male, female])
        {'background': 0, 'prostate': 1, 'uterus': 2}
    """
    names: set[str] = set()
    for table in tables:
        for s in table:
            if isinstance(s, str):
                names.add(s)
                continue
            if not isinstance(s, Structure):
                raise TypeError(
                    "medphys.io.label_table: each table must hold medphys.volume.Structure rows "
                    "or structure names "
                    f"(got {type(s).__name__})"
                )
            if not _is_background(s):
                names.add(s.name)
    names.discard(BACKGROUND)
    return {BACKGROUND: 0, **{name: i for i, name in enumerate(sorted(names), start=1)}}


def remap_labels(labels: LabeledVolume, table: Mapping[str, int]) -> LabeledVolume:
    """The same case with its values replaced by the dataset-wide ``table``'s (matched by name).

    Args:
        labels: one case's labels and structure table.
        table: name → value, e.g. from `label_table`; value 0 is the background.

    Returns:
        a `LabeledVolume` on the same grid whose structure rows carry the new values (materials
        and MR values kept; fractions dropped), in uint8 when the largest value fits, else uint16
        or int32.

    Raises:
        ValueError: a structure of ``labels`` whose name is not in ``table``, or a table without
            background 0.
    """
    where = "medphys.io.remap_labels"
    if not isinstance(labels, LabeledVolume):
        raise TypeError(
            f"{where}: `labels` must be a medphys.LabeledVolume (got {type(labels).__name__})"
        )
    if table.get(BACKGROUND) != 0:
        raise ValueError(f"{where}: `table` must map {BACKGROUND!r} to 0 (got {dict(table)!r})")
    old = np.asarray(labels.labels)
    values = [int(s.label) for s in labels.structures]
    if min(values) < 0:
        raise ValueError(f"{where}: label values must be >= 0 (got {min(values)})")
    lut = np.zeros(max(values) + 1, dtype=np.int64)
    rows = []
    for s in labels.structures:
        if _is_background(s):
            new = 0
        elif s.name in table:
            new = int(table[s.name])
        else:
            raise ValueError(
                f"{where}: structure {s.name!r} (value {s.label}) is not in `table`; "
                f"the table holds {sorted(table)}"
            )
        lut[s.label] = new
        rows.append(Structure(new, s.name, s.material, s.mr))
    top = max(table.values())
    dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.int32
    out = lut.astype(dtype)[old]
    # Several background rows (value 0 and a "background" name) collapse into one row.
    unique: dict[int, Structure] = {}
    for row in sorted(rows, key=lambda r: (r.label, r.name != BACKGROUND)):
        unique.setdefault(row.label, row)
    return LabeledVolume(labels=out, affine=labels.affine, structures=tuple(unique.values()))


def check_label_table(
    where: str, table: object, tables: Iterable[Sequence[Structure]]
) -> dict[str, int]:
    """Validate a dataset-wide table against the cases' structure tables.

    Raises:
        TypeError: not a mapping of names to integers.
        ValueError: background not 0, values not 0, 1, 2, ... without gaps or repeated, or a
            structure name of the cases missing.
    """
    if not isinstance(table, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        for k, v in table.items()
    ):
        raise TypeError(f"{where}: `labels` must map structure names to integers (got {table!r})")
    out = {str(k): int(v) for k, v in table.items()}
    if out.get(BACKGROUND) != 0:
        raise ValueError(
            f"{where}: `labels` must map {BACKGROUND!r} to 0 (got {out.get(BACKGROUND)!r})"
        )
    if sorted(out.values()) != list(range(len(out))):
        raise ValueError(
            f"{where}: `labels` values must be 0, 1, 2, ... without gaps or repeats, as nnU-Net "
            f"requires (got {sorted(out.values())})"
        )
    needed = set(label_table(tables)) - set(out)
    if needed:
        raise ValueError(
            f"{where}: `labels` has no value for the structures {sorted(needed)} of the cases; "
            "add them, or pass labels=None for the table built from the cases"
        )
    return dict(sorted(out.items(), key=lambda item: item[1]))
