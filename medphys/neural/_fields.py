"""Continuous attenuation fields μ(x) on a grid's box: hash-grid, Fourier-feature and voxel.

A field is a Flax NNX module that maps *normalised* coordinates ``u ∈ [0, 1]^d`` of its domain's
box to attenuation (1/mm, the unit of `medphys.simulators.xray.project`'s volumes). The domain is
a `medphys.Grid`: ``u = (index + 0.5) / shape`` in the grid's voxel index space, so ``[0, 1]^d`` is
the box from the first voxel's outer edge to the last one's, on any affine (oblique or not). A grid
with one slice (``shape[2] == 1``) makes a 2-D field of ``(u_x, u_y)``.

Every field outputs ``scale · softplus(raw)``: non-negative, and of the order of ``scale`` (give
about the largest attenuation expected: water is about 0.02 /mm at 60-70 keV, bone twice that)
when the network's raw output is of order one; the networks start at ``0.1 · scale`` everywhere. The fields hold no physics: rendering along rays lives in
`medphys.neural.render`, losses in `medphys.neural.fit`.

References:
    Müller, Evans, Schied, Keller, "Instant neural graphics primitives with a multiresolution
    hash encoding", ACM TOG 41(4), 2022 (the hash encoding, its primes and level growth).
    Tancik et al., "Fourier features let networks learn high frequency functions in low
    dimensional domains", NeurIPS 2020.
    Zha, Zhang, Li, "NAF: neural attenuation fields for sparse-view CBCT reconstruction",
    MICCAI 2022.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from ..volume import Grid, Volume
from ._checks import positive_int, positive_number

__all__ = ["AbstractField", "FourierField", "HashGridField", "VoxelField", "to_volume"]

# Instant-NGP's spatial hash: xor of the corner's integer coordinates times these primes.
_PRIMES = (1, 2654435761, 805459861)


class Frozen(nnx.Variable):
    """A non-trainable array of a field (Fourier frequencies); `fit` trains `nnx.Param` only."""


def _lift(a: Any, ndim: int, dtype: Any = None) -> Array:
    """``a`` with leading unit axes up to ``ndim`` (explicit broadcasting, no rank promotion)."""
    a = jnp.asarray(a, dtype)
    return a.reshape((1,) * (ndim - a.ndim) + a.shape)


def _check_domain(where: str, domain: Any) -> Grid:
    if not isinstance(domain, Grid):
        raise TypeError(
            f"{where}: `domain` must be a medphys.Grid (e.g. `volume.grid` or "
            f"medphys.Grid.create(shape, spacing_mm=...)) (got {type(domain).__name__})"
        )
    return domain


class AbstractField(nnx.Module):
    """What every field provides. Static subclasses define ``raw(u)``, the field before the
    output unit, on normalised coordinates; time-conditioned ones (`DeformingField`) override
    ``__call__``.

    Attributes:
        domain: the grid whose box ``[0, 1]^d`` maps to (static).
        dim: 2 for a one-slice domain, else 3.
        scale: the output unit (1/mm): ``μ = scale · softplus(raw)``.
    """

    domain: Grid
    dim: int
    scale: float

    @property
    def temporal(self) -> bool:
        """Whether the field changes with time (`DeformingField`)."""
        return False

    def __call__(
        self, u: Float[Array, "*batch dim"], time_s: Array | None = None
    ) -> Float[Array, "*batch"]:
        """Attenuation (1/mm) at normalised coordinates ``u`` (outside ``[0, 1]`` it is zero);
        a static field ignores ``time_s``."""
        inside = jnp.all((u >= 0) & (u <= 1), axis=-1)
        return jnp.where(inside, self.scale * jax.nn.softplus(self.raw(u)), 0.0)


def _init_common(field: AbstractField, where: str, domain: Any, scale: Any) -> None:
    field.domain = _check_domain(where, domain)
    field.dim = 2 if field.domain.shape[2] == 1 else 3
    field.scale = positive_number(where, "scale", scale)


class _MLP(nnx.Module):
    """``layers`` hidden ReLU layers of width ``width`` and a linear output of ``n_out``."""

    def __init__(
        self, where: str, n_in: int, width: Any, layers: Any, key: Array, *, n_out: int = 1
    ) -> None:
        width = positive_int(where, "width", width)
        sizes = [n_in] + [width] * positive_int(where, "layers", layers)
        rngs = nnx.Rngs(params=key)
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
        self.out = nnx.Linear(sizes[-1], n_out, rngs=rngs)

    def vector(self, h: Array) -> Array:
        for layer in self.hidden:
            h = jax.nn.relu(layer(h))
        return self.out(h)

    def __call__(self, h: Array) -> Array:
        return self.vector(h)[..., 0]


# Networks start at a tenth of their scale everywhere (most of a CT box is air or soft tissue far
# below the scale's bone-like peak), not at softplus(0) = 0.69 of it.
_START = 0.1


def _start_low(mlp: _MLP) -> None:
    mlp.out.bias[...] = jnp.full_like(mlp.out.bias[...], float(inverse_softplus(_START)))


class HashGridField(AbstractField):
    """Multiresolution hash-grid encoding followed by a small MLP (Instant-NGP, NAF).

    Level ``l`` has ``N_l = floor(base · b^l)`` cells per axis, with ``b`` chosen so that the finest
    level has ``finest`` cells. A level whose ``(N_l + 1)^d`` corners fit in the table is indexed
    densely (one entry per corner, no collisions); finer levels hash the corner with Instant-NGP's
    primes. Features are interpolated (bi/trilinearly) from the cell's corners, concatenated over
    levels and fed to the MLP.

    Args:
        key: initialises the table (uniform in ±1e-4) and the MLP.
        domain: the grid whose box the field covers.
        scale: output unit (1/mm).
        levels, features, log2_table: the encoding (``levels × 2^log2_table × features`` numbers).
        base: cells per axis of the coarsest level.
        finest: cells per axis of the finest level (default: twice the domain's largest axis).
        width, layers: the MLP.
    """

    def __init__(
        self,
        key: Array,
        domain: Grid,
        *,
        scale: float = 0.02,
        levels: int = 12,
        features: int = 2,
        log2_table: int = 17,
        base: int = 8,
        finest: int | None = None,
        width: int = 64,
        layers: int = 2,
    ) -> None:
        where = "medphys.neural.HashGridField"
        _init_common(self, where, domain, scale)
        self.levels = positive_int(where, "levels", levels)
        self.features = positive_int(where, "features", features)
        log2_table = positive_int(where, "log2_table", log2_table, low=4)
        if log2_table > 24:
            raise ValueError(f"{where}: `log2_table` must be <= 24 (got {log2_table})")
        self.table_size = 1 << log2_table
        base = positive_int(where, "base", base, low=2)
        top = 2 * max(self.domain.shape) if finest is None else finest
        top = positive_int(where, "finest", top, low=base)
        growth = math.exp((math.log(top) - math.log(base)) / max(self.levels - 1, 1))
        self.resolutions = tuple(math.floor(base * growth**lvl) for lvl in range(self.levels))
        k_table, k_mlp = jax.random.split(key)
        self.table = nnx.Param(
            jax.random.uniform(
                k_table,
                (self.levels, self.table_size, self.features),
                jnp.float32,
                minval=-1e-4,
                maxval=1e-4,
            )
        )
        self.mlp = _MLP(where, self.levels * self.features, width, layers, k_mlp)
        _start_low(self.mlp)

    def encode(self, u: Float[Array, "*batch dim"]) -> Float[Array, "*batch enc"]:
        """The concatenated per-level interpolated features of the points ``u``.

        All levels and corners are gathered from the flattened table at once (one gather
        forward, one scatter-add backward).
        """
        d, n_lvl, size = self.dim, self.levels, self.table_size
        res = np.asarray(self.resolutions)
        dense = (res + 1.0) ** d <= size  # levels indexed without hashing
        r = u.ndim + 1
        x = jnp.clip(u, 0.0, 1.0)[..., None, :] * _lift(res[:, None], r, u.dtype)  # (*b, L, d)
        cell = jnp.minimum(jnp.floor(x), _lift(res[:, None] - 1, r, u.dtype))
        frac = x - cell
        cell = cell.astype(jnp.uint32)
        offsets = np.array(np.meshgrid(*([[0, 1]] * d), indexing="ij")).reshape(d, -1).T  # (C, d)
        corner = cell[..., None, :] + _lift(offsets, r + 1, jnp.uint32)  # (*b, L, C, d)
        strides = np.stack([(res + 1) ** a for a in range(d)], -1).astype(np.uint32)  # (L, d)
        dense_idx = jnp.sum(corner * _lift(strides[:, None, :], r + 1), axis=-1)
        hashed = corner[..., 0] * jnp.uint32(_PRIMES[0])
        for a in range(1, d):
            hashed = hashed ^ (corner[..., a] * jnp.uint32(_PRIMES[a]))
        idx = jnp.where(_lift(dense[:, None], r), dense_idx, hashed) & jnp.uint32(size - 1)
        idx = idx.astype(jnp.int32) + _lift(np.arange(n_lvl)[:, None] * size, r, jnp.int32)
        w = jnp.prod(
            jnp.where(_lift(offsets, r + 1, bool), frac[..., None, :], 1.0 - frac[..., None, :]),
            axis=-1,
        )  # (*b, L, C)
        feats = self.table[...].reshape(n_lvl * size, self.features)[idx]  # (*b, L, C, F)
        out = jnp.sum(w[..., None] * feats, axis=-2)
        return out.reshape(*out.shape[:-2], n_lvl * self.features)

    def raw(self, u: Float[Array, "*batch dim"]) -> Float[Array, "*batch"]:
        return self.mlp(self.encode(u))


def fourier_features(x: Float[Array, "*batch d"], frequencies: Array) -> Float[Array, "*batch f"]:
    """``[sin 2π x·B, cos 2π x·B]`` for frequencies ``B`` of shape ``(n, d)``: ``(*batch, 2n)``."""
    phase = 2 * jnp.pi * (x @ frequencies.T.astype(x.dtype))
    return jnp.concatenate([jnp.sin(phase), jnp.cos(phase)], axis=-1)


class FourierField(AbstractField):
    """Random Fourier features ``[sin 2πBu, cos 2πBu]`` (``B ~ N(0, sigma²)``) and an MLP.

    Args:
        key: draws the frequencies ``B`` (frozen) and initialises the MLP.
        domain, scale: as `HashGridField`.
        n_frequencies: rows of ``B``.
        sigma: the frequencies' standard deviation (cycles per box width).
        width, layers: the MLP.
    """

    def __init__(
        self,
        key: Array,
        domain: Grid,
        *,
        scale: float = 0.02,
        n_frequencies: int = 128,
        sigma: float = 8.0,
        width: int = 128,
        layers: int = 3,
    ) -> None:
        where = "medphys.neural.FourierField"
        _init_common(self, where, domain, scale)
        n = positive_int(where, "n_frequencies", n_frequencies)
        sigma = positive_number(where, "sigma", sigma)
        k_b, k_mlp = jax.random.split(key)
        self.frequencies = Frozen(sigma * jax.random.normal(k_b, (n, self.dim), jnp.float32))
        self.mlp = _MLP(where, 2 * n, width, layers, k_mlp)
        _start_low(self.mlp)

    def raw(self, u: Float[Array, "*batch dim"]) -> Float[Array, "*batch"]:
        return self.mlp(fourier_features(u, self.frequencies[...]))


class VoxelField(AbstractField):
    """A plain voxel grid on the domain, interpolated (bi/trilinearly, edge values held): the
    non-neural baseline trained by the same code as the networks.

    Args:
        domain, scale: as `HashGridField`.
        init: optional starting attenuation (1/mm) of the domain's shape (e.g. an FDK image);
            values are clipped to ``1e-6 · scale`` from below. Default: ``scale · softplus(0)``.
    """

    def __init__(self, domain: Grid, *, scale: float = 0.02, init: Any = None) -> None:
        where = "medphys.neural.VoxelField"
        _init_common(self, where, domain, scale)
        shape = self.domain.shape[: self.dim]
        if init is None:
            raw = jnp.zeros(shape, jnp.float32)
        else:
            data = jnp.asarray(getattr(init, "data", init), jnp.float32)
            if data.shape[: self.dim] != shape or data.size != math.prod(shape):
                raise ValueError(
                    f"{where}: `init` must have the domain's shape {self.domain.shape} "
                    f"(got {tuple(data.shape)})"
                )
            raw = inverse_softplus(jnp.maximum(data.reshape(shape) / self.scale, 1e-6))
        self.values = nnx.Param(raw)

    def raw(self, u: Float[Array, "*batch dim"]) -> Float[Array, "*batch"]:
        return _interpolate(self.values[...], u)

    def __call__(
        self, u: Float[Array, "*batch dim"], time_s: Array | None = None
    ) -> Float[Array, "*batch"]:
        """Attenuation interpolated from the voxels' ``scale · softplus(values)`` (linear in μ,
        like the projector's sampling), zero outside ``[0, 1]``."""
        inside = jnp.all((u >= 0) & (u <= 1), axis=-1)
        mu = _interpolate(self.scale * jax.nn.softplus(self.values[...]), u)
        return jnp.where(inside, mu, 0.0)


def _interpolate(grid: Array, u: Array) -> Array:
    """Bi/trilinear interpolation of ``grid`` at normalised points ``u`` (voxel centres at
    ``(i + 0.5) / n``; beyond the outer centres the edge value is held)."""
    dim = grid.ndim
    shape = np.asarray(grid.shape)
    r = u.ndim
    x = jnp.clip(u * _lift(shape, r, u.dtype) - 0.5, 0.0, _lift(shape - 1, r, u.dtype))
    cell = jnp.clip(jnp.floor(x), 0, _lift(np.maximum(shape - 2, 0), r, u.dtype))
    f = x - cell
    cell = cell.astype(jnp.int32)
    acc = 0.0
    for off in np.array(np.meshgrid(*([[0, 1]] * dim), indexing="ij")).reshape(dim, -1).T:
        corner = jnp.minimum(cell + _lift(off, r, jnp.int32), _lift(shape - 1, r, jnp.int32))
        w = jnp.prod(jnp.where(_lift(off, r, bool), f, 1.0 - f), axis=-1)
        acc = acc + w * grid[tuple(corner[..., a] for a in range(dim))]
    return acc


def inverse_softplus(y: Array) -> Array:
    """``x`` with ``softplus(x) == y`` for ``y > 0`` (stable for large and small ``y``)."""
    return y + jnp.log(-jnp.expm1(-y))


def world_to_unit(domain: Grid) -> tuple[np.ndarray, np.ndarray]:
    """``(M, c)`` with ``u = M @ x_mm + c``: world millimetres → the domain's normalised box."""
    inv = np.linalg.inv(domain.affine)
    shape = np.asarray(domain.shape, np.float64)
    m = inv[:3, :3] / shape[:, None]
    c = (inv[:3, 3] + 0.5) / shape
    return m, c


@functools.partial(jax.jit, static_argnums=0)
def _evaluate(graphdef: Any, state: Any, pts: Array, time_s: Array) -> Array:
    return nnx.merge(graphdef, state)(pts, jnp.full(pts.shape[:-1], time_s, pts.dtype))


def to_volume(
    field: AbstractField,
    grid: Grid | None = None,
    *,
    time_s: float = 0.0,
    chunk: int = 1 << 16,
) -> Volume:
    """The field sampled at the voxel centres of ``grid`` (default: its domain), as a `Volume`.

    Any grid works (finer, coarser, rotated); voxels outside the field's box read zero.

    Args:
        field: a trained or initial field.
        grid: where to sample (a `medphys.Grid`).
        time_s: the instant (s) of a time-conditioned field; static fields ignore it.
        chunk: points evaluated at a time (bounds memory).

    Returns:
        `Volume` of attenuation (1/mm) on ``grid``.
    """
    grid = field.domain if grid is None else _check_domain("medphys.neural.to_volume", grid)
    m, c = world_to_unit(field.domain)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1)
    world = idx.reshape(-1, 3) @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    u = world @ m.T + c
    u = u[:, : field.dim].astype(np.float32)
    if field.dim == 2:  # a 2-D field is constant across its one slice's thickness
        inside = np.abs(world @ m[2] + c[2] - 0.5) <= 0.5
        u = np.where(inside[:, None], u, -1.0).astype(np.float32)
    graphdef, state = nnx.split(field)
    run = functools.partial(_evaluate, graphdef)
    n = u.shape[0]
    pad = (-n) % chunk if n > chunk else 0
    u = np.concatenate([u, np.full((pad, field.dim), -1.0, np.float32)])
    t = jnp.asarray(float(time_s), jnp.float32)
    pieces = [
        run(state, jnp.asarray(u[i : i + chunk]), t) for i in range(0, u.shape[0], max(chunk, 1))
    ]
    data = jnp.concatenate(pieces)[:n].reshape(grid.shape)
    return Volume(data=data, affine=grid.affine)
