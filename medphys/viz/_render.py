"""Off-screen 3-D surface renders of labelled volumes and phantoms (PyVista/VTK)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_path
from ..volume import LabeledVolume

_SKIN = (0.93, 0.78, 0.66)

#: camera directions (from the patient towards the viewer, RAS+) and view-up vectors
_VIEWS = {
    "anterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "posterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "right": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "left": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "superior": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
}


def _spans(mask: np.ndarray, span: np.ndarray) -> bool:
    """Whether ``mask`` spans more than 60 % of the labelled region along x, y and z."""
    hits = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != k))) for k in range(3)]
    extent = np.array([h.max() - h.min() + 1 for h in hits])
    return bool(np.all(extent > 0.6 * span))


def _encloser(labels: np.ndarray, mask: np.ndarray, opaque: np.ndarray) -> int:
    """The drawn structure that encloses ``mask`` (-1 if none).

    ``mask`` is enclosed when at least 90 % of the voxels bordering it belong to opaquely drawn
    structures; the encloser is the most frequent of them.
    """
    from scipy import ndimage

    around = labels[ndimage.binary_dilation(mask) & ~mask]
    drawn = around[opaque[around]]
    if around.size == 0 or drawn.size < 0.9 * around.size:
        return -1
    return int(np.bincount(drawn).argmax())


def render_labels(
    volume: LabeledVolume,
    path: str | Path,
    *,
    view: str = "anterior",
    size: tuple[int, int] = (800, 1000),
    shell_opacity: float = 0.15,
    hide: Sequence[str] = (),
    title: str | None = None,
) -> Path:
    """Render each structure's surface (marching cubes on its mask) and write a PNG, off-screen.

    Enclosing structures (whose mask spans more than 60 % of the labelled region along x, y and z:
    skin, body, muscle and fat layers) are not drawn one by one: their surfaces coincide where
    they touch and would z-fight. One translucent envelope (the outline of all labelled voxels,
    in a skin tone) stands for them, its back faces culled so it needs no depth
    sorting, and the organs show through. Colours follow the slice montages (tab20).

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
    # pad by one voxel so surfaces touching the edge close
    padded = np.pad(labels, 1)
    grid = pv.ImageData(dimensions=padded.shape, spacing=(1.0, 1.0, 1.0), origin=(-1.0, -1.0, -1.0))

    def surface(mask: np.ndarray):
        grid.point_data["m"] = mask.astype(np.float32).ravel(order="F")
        surf = grid.contour([0.5], scalars="m")
        if surf.n_points == 0:
            return None
        surf = surf.smooth(n_iter=30, relaxation_factor=0.1)
        surf.points = surf.points @ affine[:3, :3].T + affine[:3, 3]
        return surf

    foreground = padded > 0
    envelope = False
    present = [
        s
        for s in volume.structures
        if s.label != 0 and s.name not in hide and s.label < counts.size and counts[s.label] > 0
    ]
    shells = {s.label for s in present if _spans(padded == s.label, span)}
    opaque = np.zeros(int(padded.max()) + 1, dtype=bool)
    opaque[[s.label for s in present if s.label not in shells]] = True
    # structures enclosed by a drawn one (hollow-organ contents, marrow, heart chambers) are
    # merged into it: their surfaces would z-fight with its inner wall where the wall is thin
    parents = np.full(opaque.size, -1)
    for s in present:
        if s.label not in shells:
            parents[s.label] = _encloser(padded, padded == s.label, opaque)
    for _ in range(len(present)):  # follow chains (contents in a wall in an organ) to the top
        up = parents >= 0
        nxt = np.where(up, parents[np.maximum(parents, 0)], -1)
        merged = np.where(up & (nxt >= 0), nxt, parents)
        if np.array_equal(merged, parents):
            break
        parents = merged
    for s in volume.structures:
        if s.label == 0 or s.name in hide or s.label >= counts.size or counts[s.label] == 0:
            continue
        mask = padded == s.label
        if s.label in shells:  # an enclosing layer (skin, fat, muscle, body)
            envelope = True
            continue
        if parents[s.label] >= 0:
            continue  # drawn as part of the structure that encloses it
        for child in np.flatnonzero(parents == s.label):
            mask = mask | (padded == child)
        surf = surface(mask)
        if surf is not None:
            plotter.add_mesh(surf, color=tab[(s.label - 1) % len(tab)], smooth_shading=True)
    if envelope:
        # one translucent envelope (the body outline) instead of the coincident surfaces of its
        # layers, which would z-fight
        surf = surface(foreground)
        if surf is not None:
            # front faces only: a closed translucent surface then needs no depth sorting
            surf = surf.compute_normals(auto_orient_normals=True)
            plotter.add_mesh(
                surf,
                color=_SKIN,
                opacity=shell_opacity,
                smooth_shading=True,
                culling="back",
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
    image = plotter.screenshot(None, return_img=True)
    plotter.close()
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        plt.imsave(tmp, image, format="png")
    return path
