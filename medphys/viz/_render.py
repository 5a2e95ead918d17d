"""Off-screen 3-D surface renders of labelled volumes and phantoms (PyVista/VTK)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io._atomic import atomic_path
from ..volume import LabeledVolume

#: camera directions (from the patient towards the viewer, RAS+) and view-up vectors
_VIEWS = {
    "anterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "posterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "right": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "left": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "superior": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
}


def render_labels(
    volume: LabeledVolume,
    path: str | Path,
    *,
    view: str = "anterior",
    size: tuple[int, int] = (800, 1000),
    shell_opacity: float = 0.12,
    hide: Sequence[str] = (),
    title: str | None = None,
) -> Path:
    """Render each structure's surface (marching cubes on its mask) and write a PNG, off-screen.

    Enclosing structures (whose mask spans more than 60 % of the labelled region along x, y and z:
    skin, body, muscle and fat layers) are drawn translucent, the outermost one only, so the organs
    show through; colours follow the slice montages (tab20).

    Args:
        volume: labelled volume (e.g. ``phantom.voxelize(...)`` at 2–4 mm).
        path: destination ``.png`` (written atomically).
        view: ``"anterior"``, ``"posterior"``, ``"left"``, ``"right"`` or ``"superior"``.
        size: image width and height (pixels).
        shell_opacity: opacity of the large enclosing structures.
        hide: structure names to leave out.
        title: text in the top-left corner.
    """
    import pyvista as pv
    from matplotlib import colormaps

    if view not in _VIEWS:
        raise ValueError(
            f"medphys.viz.render_labels: `view` must be one of {sorted(_VIEWS)} (got {view!r})"
        )
    labels = np.asarray(volume.labels)
    affine = np.asarray(volume.affine, dtype=np.float64)
    counts = np.bincount(labels.ravel().astype(np.int64))
    fg = np.argwhere(labels > 0)
    span = fg.max(0) - fg.min(0) + 1 if fg.size else np.ones(3)
    tab = colormaps["tab20"].colors
    plotter = pv.Plotter(off_screen=True, window_size=list(size))
    plotter.set_background("black")
    first_shell = True
    # pad by one voxel so surfaces touching the edge close
    padded = np.pad(labels, 1)
    grid = pv.ImageData(dimensions=padded.shape, spacing=(1.0, 1.0, 1.0), origin=(-1.0, -1.0, -1.0))
    for s in volume.structures:
        if s.label == 0 or s.name in hide or s.label >= counts.size or counts[s.label] == 0:
            continue
        mask = padded == s.label
        hits = [
            np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != k))) for k in range(3)
        ]
        extent = np.array([h.max() - h.min() + 1 for h in hits])
        shell = bool(np.all(extent > 0.6 * span))
        if shell and not first_shell:
            continue
        first_shell = first_shell and not shell
        grid.point_data["m"] = mask.astype(np.float32).ravel(order="F")
        surf = grid.contour([0.5], scalars="m")
        if surf.n_points == 0:
            continue
        surf = surf.smooth(n_iter=30, relaxation_factor=0.1)
        surf.points = surf.points @ affine[:3, :3].T + affine[:3, 3]
        plotter.add_mesh(
            surf,
            color=tab[(s.label - 1) % len(tab)],
            opacity=shell_opacity if shell else 1.0,
            smooth_shading=True,
        )
    direction, up = _VIEWS[view]
    centre = (affine @ np.append((np.asarray(labels.shape) - 1) / 2, 1.0))[:3]
    plotter.camera.focal_point = tuple(centre)
    plotter.camera.position = tuple(centre + 1500.0 * np.asarray(direction))
    plotter.camera.up = up
    plotter.reset_camera()
    if title:
        plotter.add_text(title, font_size=10, color="white")
    path = Path(path)
    with atomic_path(path) as tmp:
        plotter.screenshot(str(tmp))
    plotter.close()
    return path
