"""Voxelizer support: shapes cut into leaves, Lipschitz margins, leaves grouped for batching.

A structure is inside at a point when its shape's ``level`` is ``<= 0``. Several shapes are
unions in disguise, and a union is inside where *any* part is inside: ``min`` is exact in
floating point, so painting every part with the structure's label gives exactly the labels of
the whole. The voxelizer therefore cuts

- `Union` into its children,
- `Difference` whose base splits into ``Difference(part, cuts)`` per part
  (``max(min_i a_i, -c) <= 0`` exactly when some ``max(a_i, -c) <= 0``),
- `Tube` into its segments (two-vertex tubes: the same arithmetic as inside the loop of
  `Tube.level`),

so that each small part is evaluated only near its own surface.

Each leaf carries a *margin* ``L`` with ``|level(p)| <= L · distance(p, surface)``, so
``|level(c)| > L · h`` proves that no point within ``h`` of ``c`` changes side. An
``L``-Lipschitz level satisfies it (it vanishes on the surface); proven Lipschitz bounds:

- ellipsoids ``(|q/a| - 1) · min(a)``, elliptic cylinders, boxes, half-spaces, meshes: 1;
- superquadrics with both exponents ``<= 1``: 1 (convex, containing the ball of radius
  ``min(a, b, c)``, so the gauge is ``1/min``-Lipschitz); other exponents: 2;
- circular tori: 1 (exact distance); elliptic tori: 2 (first-order distance);
- a tube segment: ``1 + |r1 - r0| / |p1 - p0|`` (distance to the segment, 1-Lipschitz, minus a
  radius interpolated along the clipped segment parameter);
- `Union`, `Intersection`, `Difference` (min/max keep both the Lipschitz bound and the distance
  ratio) and `SmoothUnion` (its gradient is a convex combination of the children's): the
  largest margin of the children;
- any other shape: ``_MARGIN = 2``, the contract shapes are held to (tested against brute force
  on the catalog phantoms).

Leaves with the same PyTree structure and leaf shapes are stacked into one group and evaluated
together under `jax.vmap` (one compilation per group, not per structure).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._shapes import (
    Box,
    Difference,
    Ellipsoid,
    EllipticCylinder,
    Intersection,
    SmoothUnion,
    Superquadric,
    Torus,
    Tube,
    Union,
)

_MARGIN = 2.0  # the contract for shapes without a proven bound: |level| <= 2 · distance
#: shapes whose ``level`` is 1-Lipschitz whatever their parameters (looked up by class name, so
#: optional shape modules need not be imported here)
_ONE_LIPSCHITZ = (
    "Ellipsoid",
    "EllipticCylinder",
    "Box",
    "MeshShape",
    "HalfSpace",
    "Cone",
    "Spheres",
    "Rods",
)


def split(shape: Any) -> list[Any]:
    """Cut a shape into parts whose union (any part inside) is exactly the shape."""
    if isinstance(shape, Union):
        return [leaf for child in shape.children for leaf in split(child)]
    if isinstance(shape, Difference):
        parts = split(shape.base)
        if len(parts) > 1:
            return [Difference(part, shape.cuts) for part in parts]
        return [shape]
    if isinstance(shape, Tube) and shape.points_mm.shape[0] > 2:
        # sliced on the host: exact copies of the vertices, no per-slice compilation
        pts, radii = np.asarray(shape.points_mm), np.asarray(shape.radii_mm)
        return [Tube(pts[i : i + 2], radii[i : i + 2]) for i in range(pts.shape[0] - 1)]
    return [shape]


def margin(shape: Any) -> float:
    """A bound of the Lipschitz constant of ``shape.level`` (see the module docstring)."""
    if isinstance(shape, (Ellipsoid, EllipticCylinder, Box)):
        return 1.0
    if type(shape).__name__ in _ONE_LIPSCHITZ:
        return 1.0
    if isinstance(shape, Superquadric):
        e = np.asarray(shape.exponents, dtype=np.float64)
        return 1.0 if bool(np.all((e > 0) & (e <= 1.0))) else _MARGIN
    if isinstance(shape, Torus):
        radii = np.asarray(shape.major_radii_mm, dtype=np.float64)
        return 1.0 if radii[0] == radii[1] else _MARGIN
    if isinstance(shape, Tube):
        pts = np.asarray(shape.points_mm, dtype=np.float64)
        radii = np.asarray(shape.radii_mm, dtype=np.float64)
        length = np.linalg.norm(np.diff(pts, axis=0), axis=-1)
        slope = np.abs(np.diff(radii)) / np.maximum(length, 1e-12)
        slope = np.where(length > 1e-6, slope, 0.0)  # a point segment: t = 0, constant radius
        return 1.0 + float(np.max(slope, initial=0.0))
    if isinstance(shape, (Union, Intersection, SmoothUnion)):
        return max(margin(c) for c in shape.children)
    if isinstance(shape, Difference):
        return max(margin(shape.base), *(margin(c) for c in shape.cuts))
    return _MARGIN


@dataclasses.dataclass(frozen=True)
class Group:
    """Leaves of one PyTree structure, stacked along a new leading axis.

    Attributes:
        shapes: the stacked shape PyTree (each array leaf has a leading ``members`` axis).
        labels: (members,) structure label (1-based painting priority) of each member.
        margins: (members,) Lipschitz margin of each member.
        follows: (members,) whether the phantom's warp applies to the member (``False`` for
            the structures a phantom keeps at its instant's coordinates, ``Phantom.unwarped``).
    """

    shapes: Any
    labels: np.ndarray
    margins: np.ndarray
    follows: np.ndarray


def groups(shapes: tuple[Any, ...], unwarped: frozenset[int] = frozenset()) -> list[Group]:
    """Split every structure's shape into leaves and group the leaves by PyTree structure;
    ``unwarped`` holds the labels (1-based) of the structures the warp does not apply to."""
    by_key: dict[Any, list[tuple[int, Any]]] = {}
    for s, shape in enumerate(shapes, start=1):
        for leaf in split(shape):
            flat, treedef = jax.tree_util.tree_flatten(leaf)
            key = (treedef, tuple((np.shape(x), str(jnp.result_type(x))) for x in flat))
            by_key.setdefault(key, []).append((s, leaf))
    out = []
    for members in by_key.values():
        leaves = [leaf for _, leaf in members]
        stacked = jax.tree_util.tree_map(
            lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])), *leaves
        )
        out.append(
            Group(
                shapes=stacked,
                labels=np.asarray([s for s, _ in members], dtype=np.int32),
                margins=np.asarray([margin(leaf) for leaf in leaves], dtype=np.float32),
                follows=np.asarray([s not in unwarped for s, _ in members], dtype=bool),
            )
        )
    return out
