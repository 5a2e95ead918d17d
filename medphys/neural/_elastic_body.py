"""An elastic body: the domain given by medphys shapes' signed distances, as quadrature points.

``ElasticBody.create([(shape, material), ...], spacing_mm=...)`` covers the union of the shapes
with a regular grid of cells; every cell the body reaches is split into ``subsamples³`` points,
and the cell contributes one quadrature point at the centroid of its inside points, weighted by
its inside volume, with the Lamé constants averaged over the structures that own those points
(later structures are painted over earlier ones, as in `medphys.phantoms.voxelize`). The strain
energy is linear in ``(μ, λ)``, so averaging the constants equals summing each structure's energy
over its share of the cell: partial volume is exact up to the one displacement gradient per cell.

Boundary integrals (tractions, plate contact) are turned into volume integrals over the same points
by the divergence theorem (see `band`): the same quadrature sees the strain energy and the loads,
so a network cannot lower the energy by a spike between separate surface and volume points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._elastic_materials import LinearElastic, NeoHookean

__all__ = ["ElasticBody", "band"]

_WHERE = "medphys.neural.ElasticBody.create"
Material = LinearElastic | NeoHookean


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _UnionLevel:
    """The body's signed distance: the minimum over its structures' levels."""

    shapes: tuple[Any, ...]

    def level(self, points: Array) -> Array:
        out = self.shapes[0].level(points)
        for s in self.shapes[1:]:
            out = jnp.minimum(out, s.level(points))
        return out


@dataclasses.dataclass(frozen=True)
class ElasticBody:
    """Quadrature of a (multi-material) elastic body, built once on the host.

    Attributes:
        points: (n, 3) quadrature points (mm, world coordinates).
        weights: (n,) volumes (mm³); their sum is the body's volume.
        mu: (n,) shear modulus (kPa) at each point.
        lam: (n,) Lamé's first parameter (kPa) at each point.
        density: (n,) mass density (g/cm³).
        owner: (n,) index of the structure owning most of the point's cell.
        centres: (n, 3) the centres of the cells (for jittered quadrature, `sample`).
        structures: the structures' shapes, in painting order.
        moduli: (s, 3) each structure's ``(μ, λ, ρ)``.
        shape: the body's signed distance (union of the structures), for boundary integrals.
        spacing_mm: the cell size.
        lower_mm, upper_mm: the bounding box of the covered cells.
        hyperelastic: True when every structure is `NeoHookean` (all must share one law).
        names: the structures' names.
    """

    points: Float[Array, "n 3"]
    weights: Float[Array, " n"]
    mu: Float[Array, " n"]
    lam: Float[Array, " n"]
    density: Float[Array, " n"]
    owner: Array
    centres: Float[Array, "n 3"]
    structures: tuple[Any, ...]
    moduli: Float[Array, "s 3"]
    shape: Any
    spacing_mm: float
    lower_mm: np.ndarray
    upper_mm: np.ndarray
    hyperelastic: bool
    names: tuple[str, ...]

    @classmethod
    def create(
        cls,
        structures: Sequence[tuple[Any, Material]],
        *,
        spacing_mm: float,
        names: Sequence[str] | None = None,
        subsamples: int = 4,
        bounds_mm: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> ElasticBody:
        """Quadrature points covering the union of ``structures`` (``(shape, material)`` pairs).

        Args:
            structures: shapes with a ``level`` (negative inside, mm) and their materials, painted
                in order (a later structure owns the points it shares with an earlier one).
            spacing_mm: cell size (mm).
            names: one name per structure (default ``structure_0``, ...).
            subsamples: inside test points per cell edge (partial volume).
            bounds_mm: ``(lower, upper)`` corners of the region to cover; by default found by a
                coarse search around the shapes (bounded shapes only).

        Raises:
            ValueError: no structures, mixed material laws, a bad spacing, or an empty body.
        """
        structures = list(structures)
        if not structures:
            raise ValueError(f"{_WHERE}: give at least one (shape, material) structure")
        for i, item in enumerate(structures):
            if not (isinstance(item, tuple) and len(item) == 2 and hasattr(item[0], "level")):
                raise TypeError(
                    f"{_WHERE}: structure {i} must be a (shape, material) pair with a shape that "
                    f"has `level` (got {item!r:.80})"
                )
            if not isinstance(item[1], (LinearElastic, NeoHookean)):
                raise TypeError(
                    f"{_WHERE}: structure {i}'s material must be LinearElastic or NeoHookean "
                    f"(got {type(item[1]).__name__})"
                )
        laws = {type(m) for _, m in structures}
        if len(laws) > 1:
            raise ValueError(
                f"{_WHERE}: all structures must share one material law (got "
                f"{sorted(t.__name__ for t in laws)}); use NeoHookean for every structure"
            )
        if not (isinstance(spacing_mm, (int, float)) and spacing_mm > 0):
            raise ValueError(f"{_WHERE}: `spacing_mm` must be positive (got {spacing_mm!r})")
        if not (isinstance(subsamples, int) and 1 <= subsamples <= 8):
            raise ValueError(
                f"{_WHERE}: `subsamples` must be an integer in 1..8 (got {subsamples!r})"
            )
        names = (
            tuple(names)
            if names is not None
            else tuple(f"structure_{i}" for i in range(len(structures)))
        )
        if len(names) != len(structures):
            raise ValueError(
                f"{_WHERE}: `names` has {len(names)} entries for {len(structures)} structures"
            )
        shapes = tuple(s for s, _ in structures)
        union = _UnionLevel(shapes)
        h = float(spacing_mm)
        lower, upper = (
            _search_bounds(union, h)
            if bounds_mm is None
            else (np.asarray(b, float) for b in bounds_mm)
        )
        lower, upper = np.asarray(lower, float), np.asarray(upper, float)
        if lower.shape != (3,) or upper.shape != (3,) or np.any(upper <= lower):
            raise ValueError(f"{_WHERE}: `bounds_mm` must be two 3-vectors with lower < upper")
        pts, w, frac, centres = _cells(shapes, lower, upper, h, subsamples)
        if w.size == 0:
            raise ValueError(f"{_WHERE}: the body is empty at spacing {h} mm")
        moduli = np.array([m.lame for _, m in structures], float)  # (s, 2)
        dens = np.array([m.density_g_cm3 for _, m in structures], float)
        share = frac / frac.sum(1, keepdims=True)
        return cls(
            points=jnp.asarray(pts),
            weights=jnp.asarray(w),
            mu=jnp.asarray(share @ moduli[:, 0]),
            lam=jnp.asarray(share @ moduli[:, 1]),
            density=jnp.asarray(share @ dens),
            owner=jnp.asarray(np.argmax(frac, 1).astype(np.int32)),
            centres=jnp.asarray(centres),
            structures=shapes,
            moduli=jnp.asarray(np.concatenate([moduli, dens[:, None]], 1)),
            shape=union,
            spacing_mm=h,
            lower_mm=lower,
            upper_mm=upper,
            hyperelastic=laws == {NeoHookean},
            names=names,
        )

    def sample(self, key: Array) -> tuple[Array, Array, Array, Array, Array]:
        """One random point per cell, uniform in the cell: ``(points, weights, μ, λ, ρ)``.

        The weight is the cell's volume where the point falls inside the body and 0 elsewhere,
        and the material is the structure that owns the point: an unbiased estimate of every
        integral over the body, redrawn each step so that no network can fit a pattern between
        fixed points (a fixed point set lets a network lower the energy below the continuum's
        minimum by aliasing, seen on the Lamé cylinder).
        """
        h = self.spacing_mm
        dtype = self.centres.dtype
        jitter = jax.random.uniform(key, self.centres.shape, dtype, -0.5 * h, 0.5 * h)
        x = self.centres + jitter
        last, anywhere = self.owner_at(x)
        props = self.moduli.astype(dtype)[last]
        weights = jnp.where(anywhere, jnp.asarray(h**3, dtype), 0.0)
        return x, weights, props[:, 0], props[:, 1], props[:, 2]

    def owner_at(self, points: Float[Array, "*batch 3"]) -> tuple[Array, Array]:
        """Painter's order at ``points``: the index of the last structure containing each point,
        and whether any structure contains it (where none does, the index is meaningless)."""
        inside = jnp.stack([s.level(points) for s in self.structures], -1) < 0
        last = len(self.structures) - 1 - jnp.argmax(inside[..., ::-1], axis=-1)
        return last, jnp.any(inside, -1)

    @property
    def volume_mm3(self) -> float:
        return float(jnp.sum(self.weights))

    @property
    def centre_mm(self) -> np.ndarray:
        return 0.5 * (self.lower_mm + self.upper_mm)

    @property
    def half_extent_mm(self) -> float:
        return float(0.5 * np.max(self.upper_mm - self.lower_mm))


def _search_bounds(union: _UnionLevel, h: float) -> tuple[np.ndarray, np.ndarray]:
    """A box around the body: 65 samples per axis over growing cubes; a sample within one grid
    step of the surface (levels are distances, never above the true one) marks the body."""
    centres = np.stack(
        [np.asarray(getattr(s, "center_mm", np.zeros(3)), float) for s in union.shapes]
    )
    centre = centres.mean(0)
    n = 65
    for extent in (100.0, 400.0, 1600.0):
        step = 2 * extent / (n - 1)
        ax = centre[:, None] + np.linspace(-extent, extent, n)[None, :]
        grid = np.stack(np.meshgrid(*ax, indexing="ij"), -1)
        inside = np.asarray(_levels(union, jnp.asarray(grid))) <= step
        if not inside.any():
            continue
        idx = np.argwhere(inside)
        if idx.min() > 0 and idx.max(0).max() < n - 1:
            lo = np.array([ax[i][idx[:, i].min()] for i in range(3)]) - step
            hi = np.array([ax[i][idx[:, i].max()] for i in range(3)]) + step
            return lo, hi
    raise ValueError(
        f"{_WHERE}: could not bound the body within ±1600 mm of its shapes' centres "
        "(an unbounded shape such as a HalfSpace must be clipped by a bounded one, or give "
        "`bounds_mm`)"
    )


@jax.jit
def _levels(union: _UnionLevel, points: Array) -> Array:
    return union.level(points)


@jax.jit
def _owner_levels(shapes: tuple[Any, ...], points: Array) -> Array:
    return jnp.stack([s.level(points) for s in shapes], -1)


def _cells(
    shapes: tuple[Any, ...], lower: np.ndarray, upper: np.ndarray, h: float, sub: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell centroids, inside volumes and per-structure inside fractions (host, in z-slabs)."""
    n = np.maximum(np.ceil((upper - lower) / h).astype(int), 1)
    cx, cy, cz = (lower[i] + h * (np.arange(n[i]) + 0.5) for i in range(3))
    off = ((np.arange(sub) + 0.5) / sub - 0.5) * h
    offsets = np.stack(np.meshgrid(off, off, off, indexing="ij"), -1).reshape(-1, 3)
    pts, vol, frac, kept = [], [], [], []
    centres_xy = np.stack(np.meshgrid(cx, cy, indexing="ij"), -1).reshape(-1, 2)
    for z in cz:
        centres = np.concatenate([centres_xy, np.full((len(centres_xy), 1), z)], 1)
        samples = centres[:, None, :] + offsets[None]
        lev = np.asarray(_owner_levels(shapes, jnp.asarray(samples)))  # (cells, sub³, s)
        inside = lev < 0
        anywhere = inside.any(-1)
        count = anywhere.sum(1)
        keep = count > 0
        if not keep.any():
            continue
        # owner of each subsample: the last structure containing it (painter's order)
        last = len(shapes) - 1 - np.argmax(inside[..., ::-1], axis=-1)
        owned = np.zeros(inside.shape, bool)
        np.put_along_axis(owned, last[..., None], anywhere[..., None], axis=-1)
        owned = owned[keep]
        s_in = samples[keep]
        a = anywhere[keep]
        c = count[keep]
        pts.append((s_in * a[..., None]).sum(1) / c[:, None])
        vol.append(c / sub**3 * h**3)
        frac.append(owned.sum(1) / sub**3)
        kept.append(centres[keep])
    if not pts:
        return np.zeros((0, 3)), np.zeros(0), np.zeros((0, len(shapes))), np.zeros((0, 3))
    return (
        np.concatenate(pts),
        np.concatenate(vol),
        np.concatenate(frac).astype(float),
        np.concatenate(kept),
    )


def band(level: Float[Array, "*batch"], width_mm: float) -> Float[Array, "*batch"]:
    """A smooth cut-off ``χ(|s|)``: 1 on the surface ``s = 0``, 0 beyond ``|s| ≥ width_mm``.

    ``χ(t) = 1 − (10t³ − 15t⁴ + 6t⁵)`` with ``t = |s| / width``: C², with ``χ'`` and ``χ''`` zero
    at both ends, so the cell-centred quadrature of ``div V`` keeps its fourth-order accuracy
    inside the band (a C¹ step leaves a second-order error of about ``h²/(2 width²)``, 5 % at three
    cells per band, measured on the Lamé cylinder). A boundary integral over the part
    of the body's surface where ``s = 0`` becomes a volume integral by the divergence theorem:
    ``∫_∂Ω V·n dA = ∫_Ω div V dV`` for ``V = χ(s) ·(…)``, which vanishes on the rest of the
    boundary as long as it lies farther than ``width_mm`` from the zero set of ``s``.
    """
    t = jnp.clip(jnp.abs(level) / width_mm, 0.0, 1.0)
    return 1.0 - t * t * t * (10.0 + t * (-15.0 + 6.0 * t))
