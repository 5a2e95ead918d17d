"""Tissue property maps for MR simulation, with partial volume kept per compartment.

A voxel that is half fat and half muscle does not behave like a tissue with the average T1: its
signal is the average of the fat signal and the muscle signal. `TissueMaps` therefore keeps the
relaxation properties *per compartment* (one compartment per material of the phantom) together
with each compartment's fractional occupancy of every voxel; `TissueMaps.signal` evaluates the
signal equation for every compartment and weights the complex signals by the fractions. Voxel-wise
maps of a property (for display or as regression targets) come from `TissueMaps.voxel_average`.

B0 (off-resonance, Hz) and B1 (relative transmit) are voxel maps shared by all compartments.
Smooth random B0/B1 variation is split, as everywhere in medphys, into a random draw of parameters
(`sample_field_params`) and a deterministic application (`apply_field_params`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float

from ...volume import (
    Grid,
    LabeledVolume,
    SparseFractions,
    Structure,
    _check_affine,
    register_static_affine,
)
from . import _checks as chk
from ._sequences import AbstractSequence

__all__ = [
    "FieldParams",
    "FieldVariation",
    "TissueMaps",
    "apply_field_params",
    "sample_field_params",
    "tissue_maps",
]


def _per_compartment(values: Array) -> Array:
    """``(c,)`` → ``(c, 1, 1, 1)``; ``(c, x, y, z)`` unchanged."""
    return values if values.ndim == 4 else values[:, None, None, None]


@dataclasses.dataclass(frozen=True)
class TissueMaps:
    """MR tissue properties on a voxel grid, with partial volume kept per compartment.

    Attributes:
        fractions: ``(c, x, y, z)`` occupancy of each compartment in each voxel, in [0, 1]; a
            voxel's fractions sum to at most 1 (the rest gives no signal).
        pd: proton density of each compartment, ``(c,)``, or ``(c, x, y, z)`` for compartments
            whose properties vary in space (relative units; water ≈ 1).
        t1_s: T1 (s), same shape as ``pd``.
        t2_s: T2 (s), same shape as ``pd``.
        t2star_s: T2* (s), same shape as ``pd``.
        b0_hz: ``(x, y, z)`` off-resonance (Hz); zeros on an ideal scanner.
        b1: ``(x, y, z)`` relative transmit field (flip-angle scale); ones on an ideal scanner.
        affine: ``(4, 4)`` voxel index → RAS+ mm, the phantom's (static: float64 on the host, concrete
            inside ``jax.jit``).
        names: compartment names (static), e.g. the phantom's material names.
    """

    fractions: Float[Array, "c x y z"]
    pd: Float[Array, " c"] | Float[Array, "c x y z"]
    t1_s: Float[Array, " c"] | Float[Array, "c x y z"]
    t2_s: Float[Array, " c"] | Float[Array, "c x y z"]
    t2star_s: Float[Array, " c"] | Float[Array, "c x y z"]
    b0_hz: Float[Array, "x y z"]
    b1: Float[Array, "x y z"]
    affine: Float[Array, "4 4"]
    names: tuple[str, ...]

    @classmethod
    def create(
        cls,
        fractions: Float[ArrayLike, "c x y z"],
        *,
        pd: Float[ArrayLike, " c"],
        t1_s: Float[ArrayLike, " c"],
        t2_s: Float[ArrayLike, " c"],
        t2star_s: Float[ArrayLike, " c"],
        affine: Float[ArrayLike, "4 4"],
        names: Sequence[str] | None = None,
        b0_hz: Float[ArrayLike, "x y z"] | None = None,
        b1: Float[ArrayLike, "x y z"] | None = None,
        dtype: Any = jnp.float32,
    ) -> TissueMaps:
        """Validated constructor (for maps that do not come from a `LabeledVolume`).

        Args:
            fractions: ``(c, x, y, z)`` occupancy in [0, 1].
            pd, t1_s, t2_s, t2star_s: per compartment, ``(c,)`` or ``(c, x, y, z)``.
            affine: voxel→world matrix of the grid.
            names: one name per compartment (default ``"0"``, ``"1"``, ...).
            b0_hz, b1: ``(x, y, z)`` field maps; default 0 Hz and 1.
            dtype: floating dtype of every array.

        Raises:
            ValueError: shapes that disagree, fractions outside [0, 1], negative PD, non-positive
                relaxation times, a wrong number of names, a bad affine.
        """
        where = f"{chk.PREFIX}TissueMaps.create"
        f = jnp.asarray(fractions, dtype=dtype)
        if f.ndim != 4 or min(f.shape) < 1:
            raise ValueError(
                f"{where}: `fractions` must be a non-empty (c, x, y, z) array "
                f"(got shape {tuple(f.shape)})"
            )
        c, shape = f.shape[0], tuple(f.shape[1:])
        fmin, fmax = float(jnp.min(f)), float(jnp.max(f))
        if fmin < -1e-6 or fmax > 1 + 1e-6:
            raise chk.FieldError(
                where, "fractions", f"`fractions` must lie in [0, 1] (got range [{fmin}, {fmax}])"
            )
        props = {}
        for name, value in (("pd", pd), ("t1_s", t1_s), ("t2_s", t2_s), ("t2star_s", t2star_s)):
            v = jnp.asarray(value, dtype=dtype)
            if tuple(v.shape) not in ((c,), (c, *shape)):
                raise ValueError(
                    f"{where}: `{name}` must have shape ({c},) or {(c, *shape)} "
                    f"(got {tuple(v.shape)})"
                )
            if name == "pd":
                if float(jnp.min(v)) < 0:
                    raise chk.FieldError(
                        where, name, f"`pd` must be >= 0 (got {float(jnp.min(v))})"
                    )
            else:
                chk.positive_array(where, name, v, " (seconds)")
            props[name] = v
        fields = {}
        for name, value, default in (("b0_hz", b0_hz, 0.0), ("b1", b1, 1.0)):
            v = jnp.full(shape, default, dtype) if value is None else jnp.asarray(value, dtype)
            if tuple(v.shape) != shape:
                raise ValueError(
                    f"{where}: `{name}` must have shape {shape} (got {tuple(v.shape)})"
                )
            fields[name] = v
        names_t = tuple(str(i) for i in range(c)) if names is None else tuple(names)
        if len(names_t) != c:
            raise ValueError(
                f"{where}: `names` must have {c} entries, one per compartment (got {len(names_t)})"
            )
        a = _check_affine(where, affine)
        return cls(fractions=f, **props, **fields, affine=a, names=names_t)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape ``(x, y, z)``."""
        return tuple(self.fractions.shape[1:])  # type: ignore[return-value]

    @property
    def dtype(self) -> Any:
        return self.fractions.dtype

    @property
    def grid(self) -> Grid:
        """The static `medphys.Grid` (shape and affine) the maps live on."""
        return Grid(self.shape, self.affine)

    def voxel_average(
        self, values: Float[Array, " c"] | Float[Array, "c x y z"]
    ) -> Float[Array, "x y z"]:
        """Fraction-weighted average of a per-compartment property in each voxel.

        For display or as a regression target (``maps.voxel_average(maps.t1_s)`` is a T1 map).
        Not what the signal uses: the signal mixes per-compartment signals (`signal`).
        """
        return jnp.sum(self.fractions * _per_compartment(jnp.asarray(values)), axis=0)

    def signal(self, sequence: AbstractSequence) -> Complex[Array, "x y z"]:
        """Voxel signal: the fraction-weighted sum of each compartment's complex signal.

        Jit-safe (no checks). See `medphys.simulators.mr.signal` for the signal conventions.
        """
        s = sequence.magnetization(
            _per_compartment(self.pd),
            _per_compartment(self.t1_s),
            _per_compartment(self.t2_s),
            _per_compartment(self.t2star_s),
            self.b1[None],
            self.b0_hz[None],
        )
        return jnp.sum(self.fractions * s, axis=0)


register_static_affine(
    TissueMaps, ("fractions", "pd", "t1_s", "t2_s", "t2star_s", "b0_hz", "b1"), ("names",)
)


@functools.lru_cache(maxsize=64)
def _material_properties(names: tuple[str, ...], field_t: float) -> dict[str, np.ndarray]:
    from ... import materials

    rows = [materials.get(name).mr(field_t) for name in names]
    return {
        "pd": np.array([r.pd for r in rows], dtype=np.float64),
        "t1_s": np.array([r.t1_s for r in rows], dtype=np.float64),
        "t2_s": np.array([r.t2_s for r in rows], dtype=np.float64),
        "t2star_s": np.array([r.t2star_s for r in rows], dtype=np.float64),
    }


def _compartments(structures: tuple[Structure, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """Compartment names and the compartment of each structure.

    One compartment per material for the structures that use their material's values; one per
    distinct (material, MR values) among the structures that override them, named by the first
    such structure (or ``"structure (material)"`` if that name is already a compartment's).
    """
    keys: dict[Any, int] = {}
    names: list[str] = []
    index = []
    for s in structures:
        key = s.material if s.mr is None else (s.material, s.mr)
        if key not in keys:
            name = s.material if s.mr is None else s.name
            if name in names:
                name = f"{s.name} ({s.material})"
            keys[key] = len(names)
            names.append(name)
        index.append(keys[key])
    if len(set(names)) != len(names):  # pathological tables: make every name unique
        names = [f"{n} [{i}]" if names.count(n) > 1 else n for i, n in enumerate(names)]
    return tuple(names), np.asarray(index)


@functools.lru_cache(maxsize=64)
def _compartment_properties(
    structures: tuple[Structure, ...], field_t: float
) -> tuple[tuple[str, ...], np.ndarray, dict[str, np.ndarray]]:
    names, index = _compartments(structures)
    props = {k: np.zeros(len(names)) for k in ("pd", "t1_s", "t2_s", "t2star_s")}
    for s, c in zip(structures, index, strict=True):
        if s.mr is None:
            row = _material_properties((s.material,), field_t)
            for k in props:
                props[k][c] = row[k][0]
        else:
            props["pd"][c] = s.mr.pd
            props["t1_s"][c] = s.mr.t1_s
            props["t2_s"][c] = s.mr.t2_s
            props["t2star_s"][c] = s.mr.t2_s if s.mr.t2star_s is None else s.mr.t2star_s
    return names, index, props


@functools.partial(jax.jit, static_argnames=("dtype",))
def _fractions(labeled_volume: LabeledVolume, dtype: Any) -> Array:
    """``labeled_volume.material_fractions(dtype)``, compiled once per grid and table."""
    return labeled_volume.material_fractions(dtype)


@functools.partial(jax.jit, static_argnames=("index", "n", "dtype"))
def _compartment_fractions(
    labeled_volume: LabeledVolume, index: tuple[int, ...], n: int, dtype: Any
) -> Array:
    """Occupancy of each compartment: structure fractions (or one-hot labels) summed per
    compartment (``index[i]`` is the compartment of structure ``i``)."""
    shape = labeled_volume.shape
    out = jnp.zeros((n, *shape), dtype=dtype)
    if isinstance(labeled_volume.fractions, SparseFractions):
        return labeled_volume.fractions.grouped(index, n, dtype)
    if labeled_volume.fractions is not None:
        return out.at[np.asarray(index)].add(jnp.asarray(labeled_volume.fractions, dtype=dtype))
    labels = jnp.asarray(labeled_volume.labels)
    for s, c in zip(labeled_volume.structures, index, strict=True):
        out = out.at[c].add((labels == s.label).astype(dtype))
    return out


def tissue_maps(
    labeled_volume: LabeledVolume, field_t: float, *, dtype: Any = jnp.float32
) -> TissueMaps:
    """MR tissue maps of a phantom at a field strength, one compartment per material.

    PD, T1, T2 and T2* of each material come from `medphys.materials` (``get(name).mr(field_t)``);
    the occupancy of each voxel from ``labeled_volume.material_fractions()`` (its partial-volume
    fractions when present, else its labels). B0 is zero and B1 one everywhere.

    When the phantom has a ``density_scale`` (statistical organ texture), every compartment's
    proton density is multiplied by it voxel by voxel (``pd`` becomes ``(c, x, y, z)``). When it
    has a ``relaxation_scale`` (``(2, x, y, z)``, `medphys.phantoms.relaxation_modulation`),
    every compartment's T1 is multiplied by row 0 and T2 by row 1, and T2* follows T2 with the
    reversible dephasing rate held: ``1/T2* = 1/(s T2) + (1/T2*_0 - 1/T2_0)`` (``t1_s``, ``t2_s``
    and ``t2star_s`` become ``(c, x, y, z)``). Without it T1, T2 and T2* stay per compartment,
    and the maps are exactly those of an untextured relaxation.

    A structure whose table row carries MR values (``Structure.mr``, a
    `medphys.volume.MRValues`, e.g. the Shepp–Logan ellipses of Gach et al. 2008) uses those
    values instead of its material's, whatever ``field_t``: such structures get their own
    compartment, named after the (first) structure, shared by structures with the same material
    and values. When the values give no T2*, T2* = T2 (no reversible dephasing: the published
    test-object tables list PD, T1 and T2 only).

    Args:
        labeled_volume: the phantom.
        field_t: main field (T), one the tissue library tabulates (1.5 or 3.0).
        dtype: floating dtype of the maps (float32 normally, float64 for reference checks).

    Returns:
        `TissueMaps` on the phantom's grid (same affine), compartments named by material (and by
        structure for MR-value overrides).

    Raises:
        TypeError: ``labeled_volume`` is not a `medphys.LabeledVolume`.
        ValueError: ``field_t`` not positive, or a field strength the tissue library lacks.
    """
    where = f"{chk.PREFIX}tissue_maps"
    if not isinstance(labeled_volume, LabeledVolume):
        raise TypeError(
            f"{where}: `labeled_volume` must be a medphys.LabeledVolume "
            f"(got {type(labeled_volume).__name__})"
        )
    field_t = chk.positive(where, "field_t", field_t, " (tesla)")
    shape = labeled_volume.shape
    structures = labeled_volume.structures
    if all(getattr(s, "mr", None) is None for s in structures):
        names = labeled_volume.material_names
        props = _material_properties(names, field_t)
        fractions = _fractions(labeled_volume, jnp.dtype(dtype))
    else:
        if not labeled_volume.material_names:  # pragma: no cover - a table is never empty
            raise ValueError(f"{where}: the phantom has no structures")
        _material_properties(labeled_volume.material_names, field_t)  # field strength checked
        names, index, props = _compartment_properties(structures, field_t)
        fractions = _compartment_fractions(
            labeled_volume, tuple(int(i) for i in index), len(names), jnp.dtype(dtype)
        )
    arrays = {k: jnp.asarray(v, dtype=dtype) for k, v in props.items()}
    if labeled_volume.density_scale is not None:
        # statistical texture: proton density varies in space, (c,) → (c, x, y, z)
        scale = jnp.asarray(labeled_volume.density_scale, dtype)
        arrays["pd"] = arrays["pd"][:, None, None, None] * scale[None]
    if labeled_volume.relaxation_scale is not None:
        # relaxation texture: T1, T2 (and T2* through T2) vary in space, (c,) → (c, x, y, z)
        rel = jnp.asarray(labeled_volume.relaxation_scale, dtype)
        t1, t2, t2s = (arrays[k][:, None, None, None] for k in ("t1_s", "t2_s", "t2star_s"))
        r2_prime = jnp.maximum(1.0 / t2s - 1.0 / t2, 0.0)  # reversible dephasing rate, held
        arrays["t1_s"] = t1 * rel[0][None]
        arrays["t2_s"] = t2 * rel[1][None]
        arrays["t2star_s"] = 1.0 / (1.0 / arrays["t2_s"] + r2_prime)
    return TissueMaps(
        fractions=fractions,
        **arrays,
        b0_hz=jnp.zeros(shape, dtype),
        b1=jnp.ones(shape, dtype),
        affine=np.asarray(labeled_volume.affine, dtype=np.float64),
        names=names,
    )


# --- smooth B0 / B1 variation ------------------------------------------------------------------

#: Polynomial orders (x, y, z) of the smooth-field basis: Legendre products of total degree <= 2.
_ORDERS = (
    (0, 0, 0),
    (1, 0, 0),
    (0, 1, 0),
    (0, 0, 1),
    (2, 0, 0),
    (0, 2, 0),
    (0, 0, 2),
    (1, 1, 0),
    (1, 0, 1),
    (0, 1, 1),
)
N_FIELD_TERMS = len(_ORDERS)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FieldVariation:
    """How strongly B0 and B1 vary from case to case (smooth, second-order spatial patterns).

    Attributes:
        b0_std_hz: expected RMS of the off-resonance field over the grid (Hz).
        b1_std: expected RMS of the relative B1 deviation from 1 over the grid.
    """

    b0_std_hz: Float[ArrayLike, ""] = 0.0
    b1_std: Float[ArrayLike, ""] = 0.0

    @classmethod
    def create(cls, *, b0_std_hz: float = 0.0, b1_std: float = 0.0) -> FieldVariation:
        """Validated constructor.

        Raises:
            ValueError: a negative value, or ``b1_std >= 0.5`` (flip angles could change sign).
        """
        where = f"{chk.PREFIX}FieldVariation.create"
        b0 = chk.non_negative(where, "b0_std_hz", b0_std_hz)
        b1 = chk.non_negative(where, "b1_std", b1_std)
        if b1 >= 0.5:
            raise chk.FieldError(where, "b1_std", f"`b1_std` must be < 0.5 (got {b1})")
        return cls(b0_std_hz=b0, b1_std=b1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FieldParams:
    """Coefficients of one smooth B0/B1 field draw (record them to reproduce a case).

    Attributes:
        b0_coeffs_hz: ``(10,)`` coefficients (Hz) of the unit-RMS Legendre basis.
        b1_coeffs: ``(10,)`` coefficients of the relative B1 deviation.
    """

    b0_coeffs_hz: Float[Array, " terms"]
    b1_coeffs: Float[Array, " terms"]


def sample_field_params(
    key: Array, variation: FieldVariation, *, dtype: Any = jnp.float32
) -> FieldParams:
    """Draw smooth B0/B1 field coefficients.

    Each coefficient is normal with standard deviation ``std / sqrt(10)``; the basis is orthonormal
    over the grid, so the field's mean square over the grid is ``std**2`` in expectation.

    Args:
        key: a ``jax.random`` key.
        variation: the standard deviations.
        dtype: floating dtype of the coefficients.
    """
    k0, k1 = jax.random.split(key)
    scale = 1.0 / math.sqrt(N_FIELD_TERMS)
    return FieldParams(
        b0_coeffs_hz=variation.b0_std_hz * scale * jax.random.normal(k0, (N_FIELD_TERMS,), dtype),
        b1_coeffs=variation.b1_std * scale * jax.random.normal(k1, (N_FIELD_TERMS,), dtype),
    )


def _legendre(order: int, u: Array) -> Array:
    """Legendre polynomial of degree ``order`` <= 2 scaled to unit RMS over [-1, 1]."""
    if order == 0:
        return jnp.ones_like(u)
    if order == 1:
        return math.sqrt(3.0) * u
    return math.sqrt(5.0) * 0.5 * (3.0 * u * u - 1.0)


def _smooth_field(coeffs: Array, shape: tuple[int, int, int]) -> Array:
    """``sum_j coeffs[j] * basis_j`` on the grid (voxel centres mapped into [-1, 1])."""
    axes = [(jnp.arange(n, dtype=coeffs.dtype) + 0.5) / n * 2.0 - 1.0 for n in shape]
    out = jnp.zeros(shape, coeffs.dtype)
    for j, (ox, oy, oz) in enumerate(_ORDERS):
        px = _legendre(ox, axes[0])[:, None, None]
        py = _legendre(oy, axes[1])[None, :, None]
        pz = _legendre(oz, axes[2])[None, None, :]
        out = out + coeffs[j] * px * py * pz
    return out


def apply_field_params(params: FieldParams, maps: TissueMaps) -> TissueMaps:
    """Add a smooth field draw to the maps: ``b0 += field_b0``, ``b1 *= 1 + field_b1``.

    The basis is the ten products of Legendre polynomials of total degree <= 2 along the grid axes
    (voxel centres mapped into [-1, 1]), each scaled to unit RMS. Deterministic and jit-safe.
    """
    dtype = maps.b1.dtype
    b0 = maps.b0_hz + _smooth_field(jnp.asarray(params.b0_coeffs_hz, dtype), maps.shape)
    b1 = maps.b1 * (1.0 + _smooth_field(jnp.asarray(params.b1_coeffs, dtype), maps.shape))
    return dataclasses.replace(maps, b0_hz=b0, b1=b1)
