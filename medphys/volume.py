"""Volumes that know where they are: an array plus its voxel→world affine (RAS+ millimetres).

`Volume` carries image data (attenuation, HU, MR magnitude, ...); `LabeledVolume` carries integer
labels plus the structure table that gives each label its name and material, and optionally the
fractional occupancy of each structure for partial-volume-aware simulation.

Both are immutable PyTrees: the arrays are leaves (so they pass through ``jax.jit``/``jax.vmap`` and
can be differentiated); the affine and the structure table are static. A static affine is what
lets the simulators plan on the host inside a user's ``jax.jit``: the voxel grid is known when a
function is traced, only the values are not. Volumes on one `Grid` stack into a batch for
``jax.vmap``; a different affine is a different trace. Build them with ``Volume.create`` /
``LabeledVolume.create``, which validate their input; the plain constructors do not.

`Grid` (shape + affine, hashable) says where data lives without holding any: the prepared
operators of `medphys.simulators` are planned on one.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._errors import UnknownNameError, unknown_name
from ._types import ArrayLike

__all__ = ["Grid", "LabeledVolume", "MRValues", "Structure", "Volume", "make_affine"]


def make_affine(
    shape: Sequence[int],
    spacing_mm: float | Sequence[float],
    *,
    center_mm: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Axis-aligned voxel→world affine (RAS+ mm) of a grid centred on ``center_mm``.

    Args:
        shape: voxels along x, y, z.
        spacing_mm: voxel size in mm, one value or one per axis.
        center_mm: world position of the grid's centre.

    Returns:
        ``(4, 4)`` float64 array; voxel (i, j, k) has its centre at ``affine @ [i, j, k, 1]``.

    Example:
        >>> make_affine((4, 4, 2), 2.0)[:3, 3]
        array([-3., -3., -1.])
    """
    shape_a = np.asarray(shape, dtype=np.float64)
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), shape_a.shape)
    center = np.asarray(center_mm, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    affine[:3, 3] = center - spacing * (shape_a - 1) / 2
    return affine


def _check_affine(where: str, affine: Any) -> np.ndarray:
    try:
        a = np.asarray(affine, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{where}: `affine` must be a 4x4 array of numbers (got {affine!r})"
        ) from None
    if a.shape != (4, 4):
        raise ValueError(f"{where}: `affine` must have shape (4, 4) (got {a.shape})")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: `affine` must be finite (got {a.tolist()})")
    if not np.allclose(a[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(
            f"{where}: the last row of `affine` must be [0, 0, 0, 1] (got {a[3].tolist()})"
        )
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError(f"{where}: `affine` is singular (zero voxel size along some axis)")
    return a


def _check_data(where: str, name: str, data: Any, ndim: int = 3) -> ArrayLike:
    if not isinstance(data, (np.ndarray, jax.Array)):
        data = np.asarray(data)
    if data.ndim != ndim:
        raise ValueError(
            f"{where}: `{name}` must be {ndim}-D (x, y, z) (got shape {tuple(data.shape)})"
        )
    if min(data.shape) < 1:
        raise ValueError(f"{where}: `{name}` must not be empty (got shape {tuple(data.shape)})")
    return data


def _resolve_affine(
    where: str, shape: Sequence[int], affine: Any, spacing_mm: Any, center_mm: Any
) -> np.ndarray:
    if affine is not None:
        if spacing_mm is not None or center_mm is not None:
            raise ValueError(f"{where}: give either `affine` or `spacing_mm`/`center_mm`, not both")
        return _check_affine(where, affine)
    spacing = np.broadcast_to(np.asarray(1.0 if spacing_mm is None else spacing_mm, float), (3,))
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"{where}: `spacing_mm` must be positive (got {spacing.tolist()})")
    center = np.zeros(3) if center_mm is None else np.asarray(center_mm, float)
    if center.shape != (3,) or not np.all(np.isfinite(center)):
        raise ValueError(f"{where}: `center_mm` must be 3 finite numbers (got {center_mm!r})")
    return make_affine(shape, spacing, center_mm=center)


class _Grid(abc.ABC):
    """Geometry shared by `Grid`, `Volume` and `LabeledVolume` (expects ``self.affine`` and
    ``self.shape``)."""

    affine: Any

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size along each array axis (mm)."""
        return np.linalg.norm(np.asarray(self.affine, dtype=np.float64)[:3, :3], axis=0)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(np.asarray(self.affine, dtype=np.float64)[:3, :3])))

    @property
    def center_mm(self) -> np.ndarray:
        """World position of the grid's centre (mm)."""
        idx = (np.asarray(self.shape, dtype=np.float64) - 1) / 2
        return (np.asarray(self.affine, dtype=np.float64) @ np.append(idx, 1.0))[:3]

    def world_coordinates(self, dtype: Any = jnp.float32) -> Float[Array, "x y z 3"]:
        """World position (mm) of every voxel centre."""
        a = jnp.asarray(np.asarray(self.affine, dtype=np.float64), dtype=dtype)
        idx = jnp.stack(
            jnp.meshgrid(*(jnp.arange(n, dtype=dtype) for n in self.shape), indexing="ij"), axis=-1
        )
        return idx @ a[:3, :3].T + a[None, None, None, :3, 3]

    def bounds_mm(self) -> np.ndarray:
        """World-space bounding box ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` of the voxel edges."""
        a = np.asarray(self.affine, dtype=np.float64)
        corners = np.array(
            [
                [i, j, k, 1.0]
                for i in (-0.5, self.shape[0] - 0.5)
                for j in (-0.5, self.shape[1] - 0.5)
                for k in (-0.5, self.shape[2] - 0.5)
            ]
        )
        world = corners @ a.T
        return np.stack([world[:, :3].min(0), world[:, :3].max(0)])

    @property
    def grid(self) -> Grid:
        """The static `Grid` (shape and affine) this lives on."""
        return Grid(tuple(int(n) for n in self.shape), self.affine)


def _affine_values(where: str, affine: Any) -> tuple[float, ...]:
    """The 16 entries of a concrete affine as Python floats (hashable static metadata)."""
    if isinstance(affine, jax.core.Tracer):
        raise TypeError(
            f"{where}: the affine must be a concrete array, not a traced value: it is static "
            "metadata (the grid is planned on when a function is traced); close over the volume's "
            "affine instead of passing it as an argument of jax.jit or jax.vmap"
        )
    return tuple(float(x) for x in np.asarray(affine, dtype=np.float64).reshape(16))


class Grid(_Grid):
    """Where voxel data lives: a 3-D shape and its voxel→world affine; hashable, holds no data.

    The prepared operators (``medphys.simulators.xray.prepare``, ``...mr.prepare``) are planned
    on a grid once and then applied to arrays of its shape inside ``jax.jit``, ``jax.vmap`` and
    ``jax.grad``. Two grids are equal when their shapes and affines are (bit for bit).

    Attributes:
        shape: voxels along the three array axes.
        affine: ``(4, 4)`` float64 voxel index → RAS+ mm (read-only).
    """

    __slots__ = ("_affine", "_shape")

    def __init__(self, shape: Sequence[int], affine: ArrayLike) -> None:
        a = np.array(affine, dtype=np.float64).reshape(4, 4)
        a.flags.writeable = False
        self._shape = tuple(int(n) for n in shape)
        self._affine = a

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        return self._affine

    @classmethod
    def create(
        cls,
        shape: Sequence[int],
        *,
        affine: ArrayLike | None = None,
        spacing_mm: float | Sequence[float] | None = None,
        center_mm: Sequence[float] | None = None,
    ) -> Grid:
        """Validated constructor.

        Args:
            shape: three positive voxel counts.
            affine, spacing_mm, center_mm: as in `Volume.create`.

        Raises:
            ValueError: a shape that is not three positive integers, or as `Volume.create`.

        Example:
            >>> Grid.create((64, 64, 32), spacing_mm=2.0).center_mm.tolist()
            [0.0, 0.0, 0.0]
        """
        where = "medphys.Grid.create"
        try:
            dims = tuple(int(n) for n in shape)
            ok = len(dims) == 3 and all(n >= 1 and n == m for n, m in zip(dims, shape, strict=True))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{where}: `shape` must be three positive integers (got {shape!r})")
        return cls(dims, _resolve_affine(where, dims, affine, spacing_mm, center_mm))

    def _key(self) -> tuple:
        return (self.shape, self.affine.tobytes())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Grid(shape={self.shape}, spacing_mm={np.round(self.spacing_mm, 4).tolist()})"

    def check(self, where: str, name: str, data: Any, *, trailing: int = 0) -> None:
        """Raises when ``data`` is not an array of this grid's shape (plus ``trailing`` axes
        after it); a trace-time check, no host transfer."""
        shape = tuple(getattr(data, "shape", ()))
        if shape[: len(shape) - trailing] != self.shape or len(shape) != 3 + trailing:
            extra = f" followed by {trailing} more axes" if trailing else ""
            raise ValueError(
                f"{where}: `{name}` must have the prepared grid's shape {self.shape}{extra} "
                f"(got {shape}); map over a batch with jax.vmap"
            )


def register_static_affine(cls: type, data_fields: tuple[str, ...], meta: tuple[str, ...]) -> type:
    """Registers a frozen dataclass with an ``affine`` field as a pytree whose leaves are
    ``data_fields``; the affine (as 16 floats) and ``meta`` are static, so they are concrete
    inside traced functions (`Volume`, `LabeledVolume`, MR tissue maps)."""

    def flatten_with_keys(x: Any) -> tuple:
        children = tuple((jax.tree_util.GetAttrKey(f), getattr(x, f)) for f in data_fields)
        aux = (_affine_values(f"medphys.{cls.__name__}", x.affine), *(getattr(x, m) for m in meta))
        return children, aux

    def flatten(x: Any) -> tuple:
        children, aux = flatten_with_keys(x)
        return tuple(c for _, c in children), aux

    def unflatten(aux: tuple, children: Iterable[Any]) -> Any:
        affine = np.asarray(aux[0], dtype=np.float64).reshape(4, 4)
        kwargs = dict(zip(data_fields, children, strict=True))
        kwargs.update(zip(meta, aux[1:], strict=True))
        return cls(affine=affine, **kwargs)

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


@dataclasses.dataclass(frozen=True)
class Volume(_Grid):
    """An image volume: ``data[x, y, z]`` plus its voxel→world affine.

    Attributes:
        data: voxel values, any numeric dtype (NumPy or JAX array); the only pytree leaf.
        affine: ``(4, 4)`` voxel index → RAS+ mm; static (concrete inside ``jax.jit``).
    """

    data: Float[Array, "x y z"]
    affine: Float[Array, "4 4"]

    @classmethod
    def create(
        cls,
        data: ArrayLike,
        *,
        affine: ArrayLike | None = None,
        spacing_mm: float | Sequence[float] | None = None,
        center_mm: Sequence[float] | None = None,
    ) -> Volume:
        """Validated constructor.

        Args:
            data: 3-D array ``(x, y, z)``; its dtype is kept.
            affine: voxel→world matrix; or give ``spacing_mm`` (default 1) and ``center_mm``
                (default the origin) for an axis-aligned grid.

        Raises:
            ValueError: wrong dimensionality, a singular or non-finite affine, non-positive spacing.

        Example:
            >>> v = Volume.create(np.zeros((8, 8, 4), np.float32), spacing_mm=2.0)
            >>> v.spacing_mm.tolist()
            [2.0, 2.0, 2.0]
        """
        where = "medphys.Volume.create"
        data = _check_data(where, "data", data)
        return cls(
            data=data, affine=_resolve_affine(where, data.shape, affine, spacing_mm, center_mm)
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    def with_data(self, data: ArrayLike) -> Volume:
        """The same grid holding other data of the same shape."""
        if tuple(data.shape) != self.shape:
            raise ValueError(
                f"medphys.Volume.with_data: `data` must have shape {self.shape} (got {tuple(data.shape)})"
            )
        return dataclasses.replace(self, data=data)


@dataclasses.dataclass(frozen=True)
class MRValues:
    """MR properties of one structure that override its material's (static, hashable).

    Test objects with published values (the MR Shepp–Logan phantom of Gach et al. 2008) give
    their structures these values; MR tissue maps use them instead of the material library's.
    They hold at the field strength they were measured or evaluated at (whatever the protocol).

    Attributes:
        pd: proton density relative to water (>= 0).
        t1_s: longitudinal relaxation time (s), > 0.
        t2_s: transverse relaxation time (s), > 0.
        source: where the values come from (free text).
        t2star_s: effective transverse relaxation time (s), in (0, t2_s]; ``None``: unknown, the
            MR simulator then uses T2 (no reversible dephasing).

    References:
        Gach HM, Tanase C, Boada F. 2D & 3D Shepp-Logan phantom standards for MRI. 19th
        International Conference on Systems Engineering, 521-526 (2008).
    """

    pd: float
    t1_s: float
    t2_s: float
    source: str = ""
    t2star_s: float | None = None

    @classmethod
    def create(
        cls,
        pd: float,
        t1_s: float,
        t2_s: float,
        source: str = "",
        *,
        t2star_s: float | None = None,
    ) -> MRValues:
        """Validated constructor.

        Raises:
            TypeError: a value that is not a real number.
            ValueError: a negative PD, a non-positive or non-finite T1/T2/T2*, or T2* > T2.

        Example:
            >>> MRValues.create(0.745, 0.9981, 0.1, "Gach et al. 2008").t1_s
            0.9981
        """
        where = "medphys.volume.MRValues.create"
        values = {"pd": pd, "t1_s": t1_s, "t2_s": t2_s}
        if t2star_s is not None:
            values["t2star_s"] = t2star_s
        out: dict[str, float] = {}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise TypeError(
                    f"{where}: `{name}` must be a real number (got {type(value).__name__})"
                )
            v = float(value)
            low_ok = v >= 0.0 if name == "pd" else v > 0.0
            if not (np.isfinite(v) and low_ok):
                allowed = ">= 0" if name == "pd" else "> 0 (seconds)"
                raise ValueError(f"{where}: `{name}` must be finite and {allowed} (got {v!r})")
            out[name] = v
        if "t2star_s" in out and out["t2star_s"] > out["t2_s"]:
            raise ValueError(
                f"{where}: `t2star_s` must not exceed `t2_s` "
                f"(got t2star_s={out['t2star_s']:g} s, t2_s={out['t2_s']:g} s)"
            )
        return cls(out["pd"], out["t1_s"], out["t2_s"], str(source), t2star_s=out.get("t2star_s"))


@dataclasses.dataclass(frozen=True)
class Structure:
    """One row of a label table: an integer label, a structure name and its material's name.

    Attributes:
        label: the integer label value.
        name: the structure's name.
        material: its material (a name in `medphys.materials`).
        mr: MR values overriding the material's for this structure; ``None``: the material's.
    """

    label: int
    name: str
    material: str
    mr: MRValues | None = None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SparseFractions:
    """Per-structure occupancy stored only where a voxel holds more than one structure.

    Inside a structure most voxels are wholly one structure; only the voxels on a boundary need
    fractions. This keeps those as entries (voxel, structure, fraction) and every other voxel as
    one-hot of ``base``: at 512³ with 43 structures it replaces the dense 23 GB float32 array by
    the boundary entries (9 bytes each) and ``base`` (the voxelizer passes its label array).

    Attributes:
        voxels: ``(n,)`` flat C-order index (x, y, z) of the voxel of each entry; a boundary voxel
            has one entry per structure it contains.
        structure: ``(n,)`` row of the structure table of each entry.
        fraction: ``(n,)`` occupancy of that structure in that voxel, in [0, 1].
        base: ``(x, y, z)`` table row of the structure that fills each voxel without an entry.
        n_structures: number of rows of the structure table (static).
    """

    voxels: Int[Array, " n"]
    structure: Int[Array, " n"]
    fraction: Float[Array, " n"]
    base: Int[Array, "x y z"]
    n_structures: int = dataclasses.field(metadata={"static": True})

    @property
    def shape(self) -> tuple[int, ...]:
        """The dense shape ``(structures, x, y, z)``."""
        return (self.n_structures, *self.base.shape)

    @property
    def dtype(self) -> Any:
        return self.fraction.dtype

    def grouped(
        self, index: Sequence[int], n: int, dtype: Any = jnp.float32
    ) -> Float[Array, "g x y z"]:
        """Dense occupancy of groups of structures (row ``i`` adds to group ``index[i]``).

        Args:
            index: group of each table row (length ``n_structures``), e.g. its material.
            n: number of groups.
            dtype: output dtype.

        Returns:
            ``(n, x, y, z)`` sums of the fractions of each group's structures.
        """
        one_hot = np.zeros((self.n_structures, n), np.float64)
        one_hot[np.arange(self.n_structures), np.asarray(index, dtype=np.int64)] = 1.0
        return self.mixed(one_hot, dtype)

    def mixed(
        self, weights: Any, dtype: Any = jnp.float32, z: tuple[int, int] | None = None
    ) -> Float[Array, "k x y z"]:
        """Weighted sums of the structures' occupancy: ``out[k] = Σ_s weights[s, k] f_s``.

        Args:
            weights: ``(n_structures, k)``.
            dtype: output dtype.
            z: optional ``(first, stop)`` slices along z (a slab; the whole volume by default).

        Returns:
            ``(k, x, y, stop − first)``, built without the dense ``(structures, x, y, z)`` array.
        """
        w = jnp.asarray(weights, dtype=dtype)
        nx, ny, nz = (int(n) for n in self.base.shape)
        z0, z1 = (0, nz) if z is None else (int(z[0]), int(z[1]))
        depth = z1 - z0
        size = nx * ny * depth
        base = jnp.asarray(self.base)[:, :, z0:z1].reshape(-1).astype(jnp.int32)
        out = w.T[:, base]  # (k, size): each voxel's filling structure
        voxels = jnp.asarray(self.voxels)
        zv = voxels % nz
        local = (voxels // nz) * depth + (zv - z0)  # flat index within the slab
        local = jnp.where((zv >= z0) & (zv < z1), local, size)  # others are dropped
        out = out.at[:, local].set(0, mode="drop")
        frac = jnp.asarray(self.fraction, dtype=dtype)
        share = frac[:, None] * w[jnp.asarray(self.structure)]  # (n, k)
        out = out.at[:, local].add(share.T, mode="drop")
        return out.reshape(w.shape[1], nx, ny, depth)

    def dense(self, dtype: Any = None) -> Float[Array, "s x y z"]:
        """The dense ``(structures, x, y, z)`` fractions (``dtype`` default: the entries')."""
        dtype = self.fraction.dtype if dtype is None else dtype
        return self.grouped(tuple(range(self.n_structures)), self.n_structures, dtype)

    def sums(self) -> np.ndarray:
        """Total occupancy of each structure in voxels (float64, on the host)."""
        n = self.n_structures
        base = np.asarray(self.base).reshape(-1)
        mixed = np.unique(np.asarray(self.voxels))
        whole = np.bincount(base, minlength=n) - np.bincount(base[mixed], minlength=n)
        frac = np.asarray(self.fraction, dtype=np.float64)
        return whole + np.bincount(np.asarray(self.structure), weights=frac, minlength=n)


def _check_scale(
    where: str, name: str, value: Any, shape: tuple[int, ...], *, positive: bool = False
) -> ArrayLike:
    """A floating array of ``shape``, finite and >= 0 (> 0 when ``positive``); the values are
    checked only when concrete (inside ``jax.jit`` only the shape and dtype)."""
    d = value if isinstance(value, (np.ndarray, jax.Array)) else np.asarray(value, np.float32)
    what = "the labels' shape" if name == "density_scale" else "shape (2, *labels' shape) ="
    if tuple(d.shape) != tuple(shape):
        raise ValueError(
            f"{where}: `{name}` must have {what} {tuple(shape)} (got {tuple(d.shape)})"
        )
    if not np.issubdtype(np.dtype(d.dtype), np.floating):
        raise TypeError(f"{where}: `{name}` must have a floating dtype (got {d.dtype})")
    if isinstance(d, jax.core.Tracer):
        return d
    host = np.asarray(d)
    bad = not np.all(np.isfinite(host)) or (host.min() <= 0 if positive else host.min() < 0)
    if bad:
        raise ValueError(
            f"{where}: `{name}` must be finite and {'> 0' if positive else '>= 0'} "
            f"(got range [{host.min()}, {host.max()}])"
        )
    return d


def _check_density_scale(where: str, value: Any, shape: tuple[int, ...]) -> ArrayLike:
    return _check_scale(where, "density_scale", value, shape)


def _check_relaxation_scale(where: str, value: Any, shape: tuple[int, ...]) -> ArrayLike:
    return _check_scale(where, "relaxation_scale", value, (2, *shape), positive=True)


@dataclasses.dataclass(frozen=True)
class LabeledVolume(_Grid):
    """Integer labels plus the table that gives each label its name and material.

    Attributes:
        labels: ``(x, y, z)`` integer label of the structure occupying most of each voxel.
        affine: ``(4, 4)`` voxel index → RAS+ mm (static).
        structures: the label table (static); label values are unique.
        fractions: optional ``(structures, x, y, z)`` fractional occupancy of each structure, in the
            order of ``structures``, summing to 1 in each voxel (partial volume): a dense array
            or a `SparseFractions` (boundary voxels only). ``None`` means each voxel is wholly
            its label's structure.
        density_scale: optional ``(x, y, z)`` relative density of each voxel (statistical organ
            texture, `medphys.phantoms.texture_modulation`): CT multiplies every material's
            attenuation by it (line integrals of ``mu × scale``), MR the proton density.
            ``None`` means 1 everywhere (and the simulators run exactly as without it).
        relaxation_scale: optional ``(2, x, y, z)`` relative T1 (row 0) and T2 (row 1) of each
            voxel (`medphys.phantoms.relaxation_modulation`): MR multiplies every compartment's
            T1 and T2 by it (T2* follows T2, see `medphys.simulators.mr.tissue_maps`); CT and
            X-ray ignore it. ``None`` means 1 everywhere.
    """

    labels: Int[Array, "x y z"]
    affine: Float[Array, "4 4"]
    structures: tuple[Structure, ...]
    fractions: Float[Array, "s x y z"] | SparseFractions | None = None
    density_scale: Float[Array, "x y z"] | None = None
    relaxation_scale: Float[Array, "2 x y z"] | None = None

    @classmethod
    def create(
        cls,
        labels: ArrayLike,
        structures: Iterable[Structure | tuple[int, str, str]],
        *,
        affine: ArrayLike | None = None,
        spacing_mm: float | Sequence[float] | None = None,
        center_mm: Sequence[float] | None = None,
        fractions: ArrayLike | SparseFractions | None = None,
        density_scale: ArrayLike | None = None,
        relaxation_scale: ArrayLike | None = None,
    ) -> LabeledVolume:
        """Validated constructor.

        Args:
            labels: 3-D integer array.
            structures: ``Structure`` rows or ``(label, name, material)`` tuples; every label value
                present in ``labels`` needs a row.
            affine, spacing_mm, center_mm: as in `Volume.create`.
            fractions: optional ``(len(structures), x, y, z)`` occupancy in [0, 1], dense or a
                `SparseFractions`.
            density_scale: optional ``(x, y, z)`` relative density (finite, >= 0); see
                `with_density_scale`.
            relaxation_scale: optional ``(2, x, y, z)`` relative T1 and T2 (finite, > 0); see
                `with_relaxation_scale`.

        Raises:
            ValueError: non-integer labels, labels without a row, duplicate labels or names,
                unknown materials, fractions of the wrong shape or outside [0, 1], a density
                scale of the wrong shape, negative or not finite, a relaxation scale of the wrong
                shape, not positive or not finite.
        """
        from . import materials  # late import: materials do not depend on volumes

        where = "medphys.LabeledVolume.create"
        labels = _check_data(where, "labels", labels)
        if not np.issubdtype(np.dtype(labels.dtype), np.integer):
            raise TypeError(f"{where}: `labels` must have an integer dtype (got {labels.dtype})")
        rows = tuple(
            s if isinstance(s, Structure) else Structure(int(s[0]), str(s[1]), str(s[2]))
            for s in structures
        )
        if not rows:
            raise ValueError(f"{where}: `structures` must not be empty")
        seen_labels: set[int] = set()
        seen_names: set[str] = set()
        for s in rows:
            if s.label in seen_labels:
                raise ValueError(f"{where}: label {s.label} appears twice in `structures`")
            if s.name in seen_names:
                raise ValueError(
                    f"{where}: structure name {s.name!r} appears twice in `structures`"
                )
            if s.mr is not None and not isinstance(s.mr, MRValues):
                raise TypeError(
                    f"{where}: structure {s.name!r}: `mr` must be a medphys.volume.MRValues or "
                    f"None (got {type(s.mr).__name__})"
                )
            try:
                materials.get(s.material)
            except UnknownNameError:
                raise unknown_name(
                    f"material (structure {s.name!r})", s.material, materials.names()
                ) from None
            seen_labels.add(s.label)
            seen_names.add(s.name)
        present = {int(v) for v in np.unique(np.asarray(labels))}
        missing = sorted(present - seen_labels)
        if missing:
            raise ValueError(
                f"{where}: label values {missing} occur in `labels` but have no row in `structures` "
                f"(rows exist for {sorted(seen_labels)}); add a (label, name, material) row for each"
            )
        if isinstance(fractions, SparseFractions):
            expected = (len(rows), *labels.shape)
            if fractions.shape != expected:
                raise ValueError(
                    f"{where}: `fractions` (SparseFractions) must have shape {expected} "
                    f"(got {fractions.shape})"
                )
            frac = np.asarray(fractions.fraction)
            if frac.size and (frac.min() < -1e-6 or frac.max() > 1 + 1e-6):
                raise ValueError(
                    f"{where}: `fractions.fraction` must lie in [0, 1] "
                    f"(got range [{frac.min()}, {frac.max()}])"
                )
        elif fractions is not None:
            f = (
                fractions
                if isinstance(fractions, (np.ndarray, jax.Array))
                else np.asarray(fractions)
            )
            expected = (len(rows), *labels.shape)
            if tuple(f.shape) != expected:
                raise ValueError(
                    f"{where}: `fractions` must have shape {expected} (got {tuple(f.shape)})"
                )
            fmin, fmax = float(np.min(np.asarray(f))), float(np.max(np.asarray(f)))
            if fmin < -1e-6 or fmax > 1 + 1e-6:
                raise ValueError(
                    f"{where}: `fractions` must lie in [0, 1] (got range [{fmin}, {fmax}])"
                )
            fractions = f
        if density_scale is not None:
            density_scale = _check_density_scale(where, density_scale, labels.shape)
        if relaxation_scale is not None:
            relaxation_scale = _check_relaxation_scale(where, relaxation_scale, labels.shape)
        return cls(
            labels=labels,
            affine=_resolve_affine(where, labels.shape, affine, spacing_mm, center_mm),
            structures=rows,
            fractions=fractions,
            density_scale=density_scale,
            relaxation_scale=relaxation_scale,
        )

    def with_density_scale(self, density_scale: ArrayLike | None) -> LabeledVolume:
        """The same phantom with a per-voxel relative density (``None``: remove it).

        The simulators multiply it into the physics: CT into every material's attenuation
        (a voxel's line-integral contribution is ``sum_m (mu_m - mu_air) f_m × scale``, still
        linear in the maps, so the projector and its adjoint stay matched); MR into each
        compartment's proton density (T1, T2, T2* unchanged).

        Args:
            density_scale: ``(x, y, z)`` array, finite and >= 0 (e.g.
                ``medphys.phantoms.texture_modulation(key, phantom, labels).data``).

        Raises:
            ValueError: wrong shape, negative or non-finite values.

        Example:
            >>> lv = lv.with_density_scale(np.full(lv.shape, 1.01, np.float32))  # doctest: +SKIP
        """
        where = "medphys.LabeledVolume.with_density_scale"
        if density_scale is not None:
            density_scale = _check_density_scale(where, density_scale, self.shape)
        return dataclasses.replace(self, density_scale=density_scale)

    def with_relaxation_scale(self, relaxation_scale: ArrayLike | None) -> LabeledVolume:
        """The same phantom with a per-voxel relative T1 and T2 (``None``: remove it).

        MR multiplies each compartment's T1 by row 0 and T2 by row 1 (`medphys.simulators.mr.
        tissue_maps`: the maps' ``t1_s``, ``t2_s`` and ``t2star_s`` become ``(c, x, y, z)``);
        CT and X-ray ignore it.

        Args:
            relaxation_scale: ``(2, x, y, z)`` array, finite and > 0 (e.g.
                ``medphys.phantoms.relaxation_modulation(key, phantom, labels)``, or
                `medphys.phantoms.apply_texture`, which sets both scales).

        Raises:
            ValueError: wrong shape, values <= 0 or not finite (checked when concrete).
        """
        where = "medphys.LabeledVolume.with_relaxation_scale"
        if relaxation_scale is not None:
            relaxation_scale = _check_relaxation_scale(where, relaxation_scale, self.shape)
        return dataclasses.replace(self, relaxation_scale=relaxation_scale)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.labels.shape)  # type: ignore[return-value]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.structures)

    def structure(self, name: str) -> Structure:
        """The row of the structure called ``name``."""
        for s in self.structures:
            if s.name == name:
                return s
        raise unknown_name("structure", name, self.names)

    def mask(self, name: str) -> Array:
        """Boolean mask of the voxels labelled ``name``."""
        return jnp.asarray(self.labels) == self.structure(name).label

    def structure_volume_mm3(self, name: str) -> float:
        """Volume of a structure (mm³), from fractions when present, else from labels."""
        if isinstance(self.fractions, SparseFractions):
            i = self.names.index(self.structure(name).name)
            return float(self.fractions.sums()[i]) * self.voxel_volume_mm3
        if self.fractions is not None:
            i = self.names.index(self.structure(name).name)
            total = np.sum(np.asarray(self.fractions[i]), dtype=np.float64)
            return float(total) * self.voxel_volume_mm3
        return float(jnp.sum(self.mask(name))) * self.voxel_volume_mm3

    @property
    def material_names(self) -> tuple[str, ...]:
        """Distinct materials of the table, in order of first appearance."""
        return tuple(dict.fromkeys(s.material for s in self.structures))

    def material_fractions(self, dtype: Any = jnp.float32) -> Float[Array, "m x y z"]:
        """Fraction of each voxel occupied by each material (order of `material_names`).

        Uses ``fractions`` when present (partial volume), else one-hot labels. This is what the
        simulators consume: CT projects each material map once, MR mixes tissue properties.
        """
        n = len(self.material_names)
        return self.material_mix(np.eye(n), dtype)

    def material_mix(
        self, weights: Any, dtype: Any = jnp.float32, z: tuple[int, int] | None = None
    ) -> Float[Array, "k x y z"]:
        """Weighted sums of the material fractions: ``out[k] = Σ_m weights[m, k] f_m``.

        Equal to ``einsum("mk,mxyz->kxyz", weights, material_fractions())`` without building the
        ``(materials, x, y, z)`` array: from the labels, or the boundary entries of sparse
        fractions, one output map at a time in memory (the simulators project attenuation-basis
        maps this way, and stream large grids slab by slab).

        Args:
            weights: ``(len(material_names), k)``.
            dtype: output dtype.
            z: optional ``(first, stop)`` slices along z (default: all).

        Returns:
            ``(k, x, y, stop − first)`` in ``dtype``.

        Raises:
            ValueError: ``weights`` is not ``(materials, k)`` or ``z`` is not within the grid.
        """
        where = "medphys.LabeledVolume.material_mix"
        mats = self.material_names
        w = jnp.asarray(weights, dtype=dtype)
        if w.ndim != 2 or w.shape[0] != len(mats):
            raise ValueError(
                f"{where}: `weights` must be (materials, k) with one row per material of "
                f"{list(mats)} (got shape {tuple(w.shape)})"
            )
        nz = self.shape[2]
        z0, z1 = (0, nz) if z is None else (int(z[0]), int(z[1]))
        if not 0 <= z0 < z1 <= nz:
            raise ValueError(f"{where}: `z` must satisfy 0 <= first < stop <= {nz} (got {z!r})")
        index = np.asarray([mats.index(s.material) for s in self.structures])
        per_structure = w[jnp.asarray(index)]  # (structures, k)
        if isinstance(self.fractions, SparseFractions):
            return self.fractions.mixed(per_structure, dtype, (z0, z1))
        if self.fractions is not None:
            f = jnp.asarray(self.fractions)[..., z0:z1].astype(dtype)
            return jnp.einsum("sk,sxyz->kxyz", per_structure, f)
        labels = np.asarray([s.label for s in self.structures])
        low = int(labels.min())
        lut = jnp.zeros((int(labels.max()) - low + 1, w.shape[1]), dtype)
        lut = lut.at[jnp.asarray(labels - low)].set(per_structure)
        slab = jnp.asarray(self.labels)[..., z0:z1].astype(jnp.int32) - low
        return lut.T[:, slab]


register_static_affine(Volume, ("data",), ())
register_static_affine(
    LabeledVolume,
    ("labels", "fractions", "density_scale", "relaxation_scale"),
    ("structures",),
)
