"""Triangle meshes: export any structure as a watertight surface, import a user's mesh as a shape.

Export samples the structure's ``level`` on a grid that encloses it (with an empty margin, so the
isosurface closes), extracts the zero isosurface with VTK's marching cubes (PyVista ``contour``)
and hands it to trimesh, which writes STL, PLY or OBJ (atomically, via `medphys.io.atomic_path`).

Import turns a closed triangle mesh into a `MeshShape` whose ``level`` is the exact signed
distance: the unsigned distance to the nearest triangle, negative where the generalised winding
number (sum of the triangles' solid angles / 4π, van Oosterom & Strackee) exceeds 1/2. Both run in
JAX over chunks of triangles, so cost grows with points × triangles: keep imported meshes to a
few thousand faces (decimate first) for organ-sized structures.

References:
    W. E. Lorensen and H. E. Cline, "Marching cubes", SIGGRAPH 1987.
    A. van Oosterom and J. Strackee, "The solid angle of a plane triangle", IEEE Trans. Biomed.
    Eng. 30(2), 125–126 (1983).
    A. Jacobson et al., "Robust inside-outside segmentation using generalized winding numbers",
    ACM TOG 32(4) (2013).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..io import atomic_path
from ._anatomy import Phantom, PhantomStructure

_FORMATS = (".stl", ".ply", ".obj")
_CHUNK = 256  # triangles per scan step
_POINTS = 2048  # points per chunk (bounds memory to points × triangles-per-step)


def _point_triangle_sq(p: Array, a: Array, b: Array, c: Array) -> Array:
    """Squared distance from points p (n, 3) to triangles (a, b, c) each (t, 3): (n, t)."""
    p = p[:, None, :]
    a, b, c = a[None], b[None], c[None]
    ab, ac, ap = b - a, c - a, p - a
    n = jnp.cross(ab, ac)
    nn = jnp.sum(n * n, axis=-1) + 1e-30
    # barycentric coordinates of the projection
    d00, d01, d11 = (jnp.sum(ab * ab, -1), jnp.sum(ab * ac, -1), jnp.sum(ac * ac, -1))
    d20, d21 = jnp.sum(ap * ab, -1), jnp.sum(ap * ac, -1)
    v = (d11 * d20 - d01 * d21) / nn
    w = (d00 * d21 - d01 * d20) / nn
    inside = (v >= 0) & (w >= 0) & (v + w <= 1)
    plane = jnp.sum(ap * n, -1) ** 2 / nn

    def seg(x, y):
        xy, xp = y - x, p - x
        t = jnp.clip(jnp.sum(xp * xy, -1) / (jnp.sum(xy * xy, -1) + 1e-30), 0.0, 1.0)
        d = xp - t[..., None] * xy
        return jnp.sum(d * d, -1)

    edges = jnp.minimum(jnp.minimum(seg(a, b), seg(b, c)), seg(c, a))
    return jnp.where(inside, plane, edges)


def _solid_angle(p: Array, a: Array, b: Array, c: Array) -> Array:
    """Signed solid angle of triangles seen from points: (n, t) (van Oosterom–Strackee)."""
    ra, rb, rc = a[None] - p[:, None], b[None] - p[:, None], c[None] - p[:, None]
    la, lb, lc = (jnp.sqrt(jnp.sum(r * r, -1) + 1e-30) for r in (ra, rb, rc))
    num = jnp.sum(ra * jnp.cross(rb, rc), -1)
    den = (
        la * lb * lc
        + jnp.sum(ra * rb, -1) * lc
        + jnp.sum(rb * rc, -1) * la
        + jnp.sum(rc * ra, -1) * lb
    )
    return 2.0 * jnp.arctan2(num, den)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MeshShape:
    """A closed triangle mesh as a shape (exact signed distance; build with `shape_from_mesh`).

    Attributes:
        triangles: (chunks, t, 3, 3) vertex coordinates (mm), padded with degenerate triangles.
        center_mm: (3,) centroid of the vertices.
    """

    triangles: Float[Array, "chunks t 3 3"]
    center_mm: Float[Array, "3"]

    def level(self, points: Float[Array, "*batch 3"]) -> Float[Array, "*batch"]:
        flat = points.reshape(-1, 3)
        n = flat.shape[0]
        size = min(_POINTS, n)
        chunks = -(-n // size)
        padded = jnp.concatenate([flat, jnp.zeros((chunks * size - n, 3), flat.dtype)])
        out = jax.lax.map(self._level_flat, padded.reshape(chunks, size, 3))
        return out.reshape(-1)[:n].reshape(points.shape[:-1])

    def _level_flat(self, flat: Float[Array, "n 3"]) -> Float[Array, " n"]:
        def step(carry, tri):
            best, angle = carry
            a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
            best = jnp.minimum(best, jnp.min(_point_triangle_sq(flat, a, b, c), axis=1))
            angle = angle + jnp.sum(_solid_angle(flat, a, b, c), axis=1)
            return (best, angle), None

        init = (jnp.full(flat.shape[0], jnp.inf, flat.dtype), jnp.zeros(flat.shape[0], flat.dtype))
        (best, angle), _ = jax.lax.scan(step, init, self.triangles)
        inside = angle / (4.0 * jnp.pi) > 0.5
        dist = jnp.sqrt(best + 1e-30)
        return jnp.where(inside, -dist, dist)

    def scaled(self, factor: Float[Array, "3"], about: Float[Array, "3"]) -> MeshShape:
        f = jnp.reshape(factor, (1, 1, 1, 3))
        o = jnp.reshape(about, (1, 1, 1, 3))
        return MeshShape(o + (self.triangles - o) * f, about + (self.center_mm - about) * factor)


def shape_from_mesh(mesh: Any) -> MeshShape:
    """A `MeshShape` from a closed ``trimesh.Trimesh`` (or a path trimesh can load).

    Raises:
        ValueError: the mesh is empty or not watertight (no inside to speak of).
    """
    import trimesh

    where = "medphys.phantoms.shape_from_mesh"
    if isinstance(mesh, (str, Path)):
        mesh = trimesh.load(mesh, force="mesh")
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(
            f"{where}: expected a non-empty trimesh.Trimesh (got {type(mesh).__name__})"
        )
    if not mesh.is_watertight:
        raise ValueError(
            f"{where}: the mesh is not watertight ({len(mesh.faces)} faces); close it first "
            "(trimesh: mesh.fill_holes(), or repair it in a mesh editor)"
        )
    tri = np.asarray(mesh.vertices, dtype=np.float32)[np.asarray(mesh.faces)]
    chunk = min(_CHUNK, 1 << int(np.ceil(np.log2(tri.shape[0]))))
    n = -(-tri.shape[0] // chunk) * chunk
    pad = np.repeat(tri[:1, :1, :], 3, axis=1)  # degenerate: zero solid angle, a real vertex
    tri = np.concatenate([tri, np.repeat(pad, n - tri.shape[0], axis=0)])
    return MeshShape(
        jnp.asarray(tri.reshape(-1, chunk, 3, 3)),
        jnp.asarray(np.asarray(mesh.vertices, np.float32).mean(0)),
    )


@jax.jit
def _sample(shape, origin: Array, step: Array, ii: Array, jj: Array, kk: Array) -> Array:
    pts = jnp.stack(jnp.meshgrid(ii, jj, kk, indexing="ij"), axis=-1)
    return shape.level(pts * step[None, None, None, :] + origin[None, None, None, :])


def structure_mesh(
    phantom: Phantom, name: str, *, spacing_mm: float = 1.0, extent_mm: float = 400.0
):
    """The surface of structure ``name`` as a watertight ``trimesh.Trimesh`` (world mm).

    Args:
        phantom: the phantom (its warp, if any, is applied).
        name: structure name.
        spacing_mm: marching-cubes grid step (mm).
        extent_mm: edge of the search cube around the structure's centre.

    Raises:
        UnknownNameError: unknown structure.
        ValueError: the structure is empty at this resolution or reaches the search cube's edge.
    """
    import pyvista as pv
    import trimesh

    where = "medphys.phantoms.structure_mesh"
    shape = phantom.shape_of(name)
    if not spacing_mm > 0:
        raise ValueError(f"{where}: `spacing_mm` must be positive (got {spacing_mm})")
    centre = np.asarray(shape.center_mm, np.float32)

    def level_on(origin, step, n):
        ax = [jnp.arange(m, dtype=jnp.float32) for m in n]
        follows = phantom.warp is not None and name not in phantom.unwarped
        s = _Warped(shape, phantom.warp) if follows else shape
        return np.asarray(_sample(s, jnp.asarray(origin), jnp.asarray(step), *ax))

    # coarse search for the bounding box, then a fine grid with a 3-voxel margin
    coarse = np.float32(max(4.0, 2 * spacing_mm))
    nc = int(extent_mm / coarse) + 1
    origin = centre - coarse * (nc - 1) / 2
    lev = level_on(origin, np.full(3, coarse, np.float32), (nc, nc, nc))
    idx = np.argwhere(lev <= coarse)
    if idx.size == 0:
        raise ValueError(f"{where}: structure {name!r} is empty at {coarse} mm sampling")
    if idx.min() == 0 or idx.max(0).max() == nc - 1:
        raise ValueError(f"{where}: structure {name!r} is larger than `extent_mm`={extent_mm}")
    lo = origin + (idx.min(0) - 1) * coarse - 3 * spacing_mm
    hi = origin + (idx.max(0) + 1) * coarse + 3 * spacing_mm
    n = tuple(int(v) for v in np.ceil((hi - lo) / spacing_mm) + 1)
    step = np.full(3, spacing_mm, np.float32)
    values = level_on(lo.astype(np.float32), step, n)
    grid = pv.ImageData(dimensions=n, spacing=tuple(step.tolist()), origin=tuple(lo.tolist()))
    grid.point_data["level"] = values.ravel(order="F")
    surf = grid.contour([0.0], scalars="level").triangulate().clean()
    faces = np.asarray(surf.faces).reshape(-1, 4)[:, 1:]
    mesh = trimesh.Trimesh(np.asarray(surf.points), faces, process=True)
    trimesh.repair.fix_normals(mesh)
    return mesh


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Warped:
    shape: Any
    warp: Any

    def level(self, points):
        return self.shape.level(self.warp.backward(points))


def export_mesh(phantom: Phantom, name: str, path: str | Path, *, spacing_mm: float = 1.0) -> Path:
    """Write structure ``name`` as a watertight STL, PLY or OBJ file (by suffix, atomically).

    Example:
        >>> export_mesh(load("torso-basic"), "liver", "liver.stl")  # doctest: +SKIP
    """
    path = Path(path)
    if path.suffix.lower() not in _FORMATS:
        raise ValueError(
            f"medphys.phantoms.export_mesh: the file must end in one of {list(_FORMATS)} "
            f"(got {path.name!r})"
        )
    mesh = structure_mesh(phantom, name, spacing_mm=spacing_mm)
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type=path.suffix.lower()[1:])
    return path


def add_mesh_structure(phantom: Phantom, mesh: Any, *, name: str, material: str) -> Phantom:
    """A new phantom with a user's closed mesh (trimesh or file path) as a structure, painted last.

    The mesh is in ``phantom``'s coordinates; for a phantom at an instant of its motion (`at`),
    its vertices are carried back to the reference anatomy (``warp.backward``) so that, voxelized,
    they sit where they were given. The structure has no size variation of its own: under `apply`
    it is scaled with the body like every other structure.

    Raises:
        ValueError: a malformed or taken name, or a mesh that is empty or not watertight.
        UnknownNameError: an unknown material.
    """
    from ._lesions import _NAME, _material

    where = "medphys.phantoms.add_mesh_structure"
    if not isinstance(name, str) or not _NAME.match(name) or name in phantom.structure_names:
        raise ValueError(
            f"{where}: `name` must be a new lower_snake_case name (got {name!r}; taken: "
            f"{', '.join(phantom.structure_names)})"
        )
    if name == "background":
        raise ValueError(f"{where}: `name` 'background' is reserved for the background label")
    material = _material(where, material)
    if phantom.warp is not None:
        import trimesh

        if isinstance(mesh, (str, Path)):
            mesh = trimesh.load(mesh, force="mesh")
        if isinstance(mesh, trimesh.Trimesh):
            vertices = jnp.asarray(np.asarray(mesh.vertices, np.float32))
            mesh = trimesh.Trimesh(
                np.asarray(phantom.warp.backward(vertices)), np.asarray(mesh.faces), process=False
            )
    shape = shape_from_mesh(mesh)
    return phantom.with_structure(PhantomStructure(name, material, shape))
