"""Slice montages with matplotlib (off-screen, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_path
from ..volume import LabeledVolume, Volume


@dataclass(frozen=True)
class Panel:
    """One image in a montage: a volume, the plane to cut and how to display it.

    Attributes:
        volume: the volume (labels are shown with a categorical colour map).
        title: text above the panel.
        plane: ``"axial"`` (x–y at the middle z), ``"coronal"`` (x–z) or ``"sagittal"`` (y–z).
        window: (low, high) display range; ``None`` uses the 1st–99th percentiles.
        index: slice index along the cut axis; ``None`` is the middle.
    """

    volume: Volume | LabeledVolume
    title: str
    plane: str = "axial"
    window: tuple[float, float] | None = None
    index: int | None = None


_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}


def _label_colormap(n: int):
    """Background (label 0) black, structures in the cycling tab20 colours."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    tab = colormaps["tab20"].colors
    return ListedColormap([(0.0, 0.0, 0.0)] + [tab[(i - 1) % len(tab)] for i in range(1, n)])


def radiological_slice(volume: Volume | LabeledVolume, plane: str, index: int | None = None):
    """A 2-D slice oriented for display in radiological convention.

    Axial: patient's right on the image's left, anterior up. Coronal and sagittal: superior up.
    Returns the image and its (width, height) extent in mm for a correct aspect ratio.
    """
    if plane not in _AXIS:
        raise ValueError(f"medphys.viz: `plane` must be one of {sorted(_AXIS)} (got {plane!r})")
    arr = np.asarray(volume.labels if isinstance(volume, LabeledVolume) else volume.data)
    axis = _AXIS[plane]
    i = arr.shape[axis] // 2 if index is None else int(index)
    sl = np.take(arr, i, axis=axis)
    sp = volume.spacing_mm
    # RAS+: array axis 0 grows to the patient's right, 1 anterior, 2 superior. Radiological display
    # puts the patient's right (large x) on the viewer's left, anterior (axial) or superior
    # (coronal, sagittal) at the top, and anterior on the left in sagittal views.
    img = sl.T[::-1, ::-1]
    w_axis, h_axis = [a for a in range(3) if a != axis]
    extent = (sl.shape[0] * sp[w_axis], sl.shape[1] * sp[h_axis])
    return img, extent


def save_montage(
    rows: Sequence[Sequence[Panel]], path: str | Path, *, title: str | None = None, dpi: int = 100
) -> Path:
    """Draw a grid of slices and write it as PNG (atomically).

    Args:
        rows: panels, row by row (rows may have different lengths).
        path: destination ``.png``.
        title: figure title.
        dpi: resolution.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_rows = len(rows)
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.6 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            ax = axes[r, c]
            img, (w, h) = radiological_slice(panel.volume, panel.plane, panel.index)
            if isinstance(panel.volume, LabeledVolume):
                n = max(int(max(s.label for s in panel.volume.structures)) + 1, 2)
                ax.imshow(
                    img,
                    cmap=_label_colormap(n),
                    vmin=-0.5,
                    vmax=n - 0.5,
                    interpolation="nearest",
                    extent=(0, w, 0, h),
                )
            else:
                data = img.astype(np.float64)
                lo, hi = panel.window or tuple(np.percentile(data, [1, 99]))
                ax.imshow(data, cmap="gray", vmin=lo, vmax=hi, extent=(0, w, 0, h))
            ax.set_title(panel.title, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
