"""The CT / radiography acquisition as a prepared operator: `prepare(grid, protocol)` → `Scanner`.

Everything that depends only on the grid, the protocol and the phantom's material list is done once
on the host: the geometry is checked against the grid and its rows resolved, the projector planned
(all materials in one planar pass, or the 3-D Joseph kernel with its gather adjoint), and the
materials' attenuation on the spectrum's energy grid looked up (xraylib, ``medphys.materials``).
`Scanner.expected` (noise-free) and `Scanner.simulate` (key first) then map material fractions to an
`XrayScan` as pure JAX functions: under ``jax.jit``, ``jax.vmap`` over cases on the grid, and
``jax.grad`` with respect to the fractions (the projector's custom derivative runs its adjoint).

`expected_scan(labeled_volume, protocol)` and `simulate(key, labeled_volume, protocol)` prepare a
scanner for the phantom's grid and materials and apply it; they also check, when the phantom's
values are on the host, that the detector sees the whole object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, overload

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ... import materials
from ..._checks import is_concrete
from ..._types import PRNGKey
from ...volume import Grid, LabeledVolume
from ..geometry import AbstractGeometry, _Planar
from ._basis import AttenuationBasis, check_tolerance, fit_basis
from ._operator import Projector, _check_grid, prepare_projector
from ._projector import Joseph, Trilinear, _Plan, planar_plan
from ._protocol import CTProtocol
from ._simulate import (
    XrayScan,
    _expected_projective,
    _planar_finish,
    _planar_readings,
    _scan,
    add_noise,
)

__all__ = ["Scanner", "expected_scan", "prepare", "simulate"]

#: Materials treated as the flat-field medium (not projected).
_BACKGROUND = ("air",)


def _arrays(tree: Any) -> Any:
    return jax.tree_util.tree_map(jnp.asarray, tree)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Scanner:
    """A CT scan or radiograph of material fractions on a fixed grid.

    Build with `medphys.simulators.xray.prepare` (grid, protocol, materials). Attributes:
        protocol: the `CTProtocol`, its geometry's rows resolved against the grid (leaves:
            spectrum, dose, detector, geometry).
        projector: the `Projector` of the protocol's geometry on the grid (`project` /
            `backproject` of one map).
        mu_mm: ``(projected materials, energies)`` attenuation minus air's (1/mm).
        mu_bowtie_mm: the bowtie's attenuation on the energy grid (1/mm), or None.
        basis: the `AttenuationBasis` whose maps are projected instead of one map per material
            (``prepare(..., basis_tolerance=...)``), or None.
        grid: the voxel grid (static).
        materials: the material of each row of ``fractions`` (static).
        projected: the rows that are projected (all but air, the flat-field medium; static).
        plan: the multi-material planar plan (fan and parallel beams), else None (static).
    """

    protocol: CTProtocol
    projector: Projector
    mu_mm: Float[Array, "m energies"]
    mu_bowtie_mm: Float[Array, " energies"] | None
    basis: AttenuationBasis | None
    grid: Grid = dataclasses.field(metadata={"static": True})
    materials: tuple[str, ...] = dataclasses.field(metadata={"static": True})
    projected: tuple[int, ...] = dataclasses.field(metadata={"static": True})
    plan: _Plan | None = dataclasses.field(metadata={"static": True})

    @property
    def fractions_shape(self) -> tuple[int, int, int, int]:
        """``(materials, x, y, z)``: what `expected` and `simulate` take."""
        return (len(self.materials), *self.grid.shape)

    def project(self, data: Float[Array, "x y z"]) -> Float[Array, "views u v"]:
        """Line integrals of one map (`Projector.project` on this scanner's geometry)."""
        return self.projector.project(data)

    def backproject(self, projections: Float[Array, "views u v"]) -> Float[Array, "x y z"]:
        """The exact adjoint of `project`."""
        return self.projector.backproject(projections)

    def expected(self, fractions: Float[Array, "m x y z"]) -> XrayScan:
        """The noise-free acquisition of material fractions.

        Args:
            fractions: ``fractions_shape`` occupancy of each of ``materials`` per voxel (times a
                texture's density scale where there is one), e.g.
                ``labeled_volume.material_fractions()``; float32 or float64 (integers are read
                as float32).

        Returns:
            `XrayScan` with ``counts == expected_counts``, in the fractions' floating dtype.

        Raises:
            ValueError: ``fractions`` is not ``fractions_shape`` (checked when traced).
        """
        shape = tuple(getattr(fractions, "shape", ()))
        if shape != self.fractions_shape:
            raise ValueError(
                "medphys.simulators.xray.Scanner.expected: `fractions` must have shape "
                f"{self.fractions_shape} (one map per material of {list(self.materials)} on the "
                f"grid) (got {shape}); map over cases with jax.vmap"
            )
        f = jnp.asarray(fractions)
        if not jnp.issubdtype(f.dtype, jnp.floating):
            f = f.astype(jnp.float32)
        if not self.projected:  # nothing but air: a zero map keeps the shapes static
            maps = jnp.zeros((1, *self.grid.shape), f.dtype)
        elif self.basis is None:
            maps = f[jnp.asarray(self.projected)]
        else:
            c = self.basis.coefficients.astype(f.dtype)
            maps = jnp.einsum("mk,mxyz->kxyz", c, f[jnp.asarray(self.projected)])
        return self.expected_of_maps(maps)

    @property
    def n_maps(self) -> int:
        """How many maps are projected: one per projected material, or per basis function."""
        if not self.projected:
            return 1
        return len(self.projected) if self.basis is None else self.basis.size

    def mixing(self, dtype: Any = jnp.float32) -> Float[Array, "materials maps"]:
        """``(materials, n_maps)``: map ``k`` is ``Σ_m mixing[m, k] × fraction_m`` (for
        `medphys.LabeledVolume.material_mix`, which builds the maps without every material's)."""
        out = jnp.zeros((len(self.materials), self.n_maps), dtype)
        if not self.projected:
            return out
        rows = jnp.asarray(self.projected)
        if self.basis is None:
            return out.at[rows, jnp.arange(len(self.projected))].set(1)
        return out.at[rows].set(self.basis.coefficients.astype(dtype))

    def expected_of_maps(self, maps: Float[Array, "k x y z"]) -> XrayScan:
        """`expected` given the projected maps themselves, ``(n_maps, x, y, z)`` (see `mixing`)."""
        shape = tuple(getattr(maps, "shape", ()))
        if shape != (self.n_maps, *self.grid.shape):
            raise ValueError(
                "medphys.simulators.xray.Scanner.expected_of_maps: `maps` must have shape "
                f"{(self.n_maps, *self.grid.shape)} (got {shape})"
            )
        if self.plan is not None:
            return self._finish_planar(*self._readings(self.plan, maps))
        # one map at a time: memory of one map's projections per step
        lengths = jnp.moveaxis(jax.lax.map(self.projector.project, maps), 0, -1)
        return self._finish_projective(lengths)

    @property
    def table(self) -> Float[Array, "k energies"]:
        """Attenuation of each projected map's unit (1/mm): the materials' or the basis'."""
        return self.mu_mm if self.basis is None else self.basis.mu_mm

    def _readings(self, plan: _Plan, maps: Array) -> tuple[Array, Array]:
        """Readings and variance ``(views, u, rows, c)`` of maps on ``plan``'s grid or slab."""
        affine = jnp.asarray(self.grid.affine, maps.dtype)
        return _planar_readings(plan, maps, affine, self.protocol, self.table, self.mu_bowtie_mm)

    def _finish_planar(self, mean: Array, var: Array) -> XrayScan:
        p = self.protocol
        mean, var, flat = _planar_finish(mean, var, p, self.mu_bowtie_mm)
        return _scan(mean, var, flat, p.geometry, p)

    def _finish_projective(self, lengths: Array) -> XrayScan:
        p = self.protocol
        mean, var, flat = _expected_projective(lengths, p, self.table, self.mu_bowtie_mm)
        return _scan(mean, var, flat, p.geometry, p)

    def simulate(self, key: PRNGKey, fractions: Float[Array, "m x y z"]) -> XrayScan:
        """A noisy acquisition: `expected`, then quantum and electronic noise from ``key``
        (`add_noise`); the same key gives the same bytes."""
        return add_noise(key, self.expected(fractions), self.protocol)


@overload
def prepare(
    grid: Grid,
    geometry_or_protocol: AbstractGeometry,
    *,
    materials: None = None,
    sampling: Joseph | Trilinear | None = None,
    views_per_batch: int | None = None,
    basis_tolerance: None = None,
) -> Projector: ...


@overload
def prepare(
    grid: Grid,
    geometry_or_protocol: CTProtocol,
    *,
    materials: Sequence[str],
    sampling: Joseph | Trilinear | None = None,
    views_per_batch: int | None = None,
    basis_tolerance: float | None = None,
) -> Scanner: ...


def prepare(
    grid: Grid,
    geometry_or_protocol: AbstractGeometry | CTProtocol,
    *,
    materials: Sequence[str] | None = None,
    sampling: Joseph | Trilinear | None = None,
    views_per_batch: int | None = None,
    basis_tolerance: float | None = None,
) -> Projector | Scanner:
    """Plan an X-ray operator once on the host; apply it purely inside jit, vmap and grad.

    Args:
        grid: where the data lives (``volume.grid`` or ``medphys.Grid.create(...)``).
        geometry_or_protocol: a geometry (`ParallelBeam`, `FanBeam`, `ConeBeam`,
            `ProjectionGeometry`) gives a `Projector`; a `CTProtocol` gives a `Scanner`.
        materials: with a protocol, the material of each row of the fractions the scanner will
            take (``labeled_volume.material_names``); names from `medphys.materials`.
        sampling: `Joseph()` (default) or `Trilinear()` (projector only).
        views_per_batch: views computed together (memory ∝ this); default from a ~64 MB budget.
        basis_tolerance: None (default) projects one map per material; a relative error such as
            ``1e-5`` projects the few maps of the smallest `AttenuationBasis` whose attenuation
            is within that error of every material's at every energy of the spectrum (6 maps
            for 20 body materials at 120 kVp and 1e-5: 3.3x less projection time and memory).

    Returns:
        `Projector` (``project``, ``backproject``, ``with_geometry``) or `Scanner` (``expected``,
        ``simulate``, ``project``, ``backproject``).

    Raises:
        TypeError: a grid that is not a `Grid`, a traced geometry, a protocol without
            ``materials``.
        ValueError: the geometry misses the grid, its source passes through it, rows unresolved
            on an oblique grid, an unknown material.

    Example:
        >>> op = xray.prepare(phantom.grid, protocol, materials=phantom.material_names)
        >>> scans = jax.jit(jax.vmap(op.simulate))(keys, batch_of_fractions)
    """
    where = "medphys.simulators.xray.prepare"
    grid = _check_grid(where, grid)
    if isinstance(geometry_or_protocol, AbstractGeometry):
        if materials is not None or basis_tolerance is not None:
            raise TypeError(
                f"{where}: `materials` and `basis_tolerance` are for a CTProtocol, not a geometry"
            )
        return prepare_projector(
            grid, geometry_or_protocol, sampling=sampling, views_per_batch=views_per_batch
        )
    if not isinstance(geometry_or_protocol, CTProtocol):
        raise TypeError(
            f"{where}: the second argument must be a geometry or a CTProtocol "
            f"(got {type(geometry_or_protocol).__name__})"
        )
    if materials is None:
        raise TypeError(
            f"{where}: a CTProtocol needs `materials`, the material of each row of the fractions "
            "(e.g. materials=labeled_volume.material_names)"
        )
    if isinstance(materials, str) or not all(isinstance(m, str) for m in materials):
        raise TypeError(f"{where}: `materials` must be a sequence of names (got {materials!r})")
    tolerance = check_tolerance(where, basis_tolerance)
    return _prepare_scanner(
        where, grid, geometry_or_protocol, tuple(materials), views_per_batch, tolerance
    )


def _prepare_scanner(
    where: str,
    grid: Grid,
    protocol: CTProtocol,
    names: tuple[str, ...],
    views_per_batch: int | None,
    basis_tolerance: float | None = None,
) -> Scanner:
    if not names:
        raise ValueError(f"{where}: `materials` must name at least one material")
    for name in names:
        materials.get(name)  # raises the unknown-name error with the list
    geometry = protocol.geometry.with_rows_for(grid)
    projector = prepare_projector(grid, geometry, views_per_batch=views_per_batch, where=where)
    keep = tuple(i for i, m in enumerate(names) if m not in _BACKGROUND)
    energies = np.asarray(protocol.spectrum.energies_kev, np.float64)
    mu_air = materials.attenuation_table(["air"], energies)[0]
    if keep:
        mu = materials.attenuation_table([names[i] for i in keep], energies) - mu_air[None, :]
    else:
        mu = np.zeros((1, energies.size))
    mu_mm = mu / 10.0  # 1/cm → 1/mm
    basis = fit_basis(mu_mm, basis_tolerance) if basis_tolerance is not None and keep else None
    n_maps = 1 if not keep else (len(keep) if basis is None else basis.size)
    plan = None
    if isinstance(geometry, _Planar):
        # the plan follows the protocol's geometry: n_rows=None → the rows are the slices
        plan = planar_plan(grid.shape, grid.affine, protocol.geometry, batch=n_maps, where=where)
    bowtie = protocol.bowtie
    return Scanner(
        protocol=_arrays(dataclasses.replace(protocol, geometry=geometry)),
        projector=projector,
        mu_mm=jnp.asarray(mu_mm),
        mu_bowtie_mm=None if bowtie is None else jnp.asarray(bowtie.mu_per_mm(energies)),
        basis=basis,
        grid=grid,
        materials=names,
        projected=keep,
        plan=plan,
    )


def _check_object_covered(where: str, grid: Grid, support: np.ndarray, geometry: _Planar) -> None:
    """The detector must see the whole object in every view; ``support`` is ``(x, y)``: True
    where some slice holds more than a trace of a projected material."""
    if not support.any():
        return
    a = grid.affine
    idx = np.argwhere(support).astype(np.float64)
    xy = idx @ a[:2, :2].T + a[:2, 3] - np.asarray(geometry.isocenter_mm, np.float64)
    half_diag = 0.5 * float(np.linalg.norm(a[:2, :2].sum(axis=1)))
    reach = float(np.max(np.hypot(xy[:, 0], xy[:, 1]))) + half_diag
    fov = geometry.fov_radius_mm()
    if reach > fov:
        raise ValueError(
            f"{where}: the detector does not cover the object: every view sees a circle of radius "
            f"{fov:.1f} mm about the rotation axis, but the object reaches {reach:.1f} mm "
            f"(n_u={geometry.n_u}, du_mm={float(geometry.du_mm):g}); increase `n_u` or `du_mm` "
            "(or `fov_mm` in the protocol file)"
        )


#: Bytes of projected maps built at once when a planar scan streams its slices.
_SLAB_BYTES = 256 * 2**20


def expected_scan(
    labeled_volume: LabeledVolume,
    protocol: CTProtocol,
    *,
    dtype: Any = None,
    basis_tolerance: float | None = None,
) -> XrayScan:
    """The noise-free acquisition of a phantom (the deterministic part of `simulate`).

    Args:
        labeled_volume: the phantom; its ``fractions`` are used when present (partial volume),
            times its ``density_scale`` when it has one (texture).
        protocol: the `CTProtocol`.
        dtype: computation dtype; default the fractions' floating dtype, else float32.
        basis_tolerance: None (default) projects one map per material; a relative error such as
            ``1e-5`` projects an `AttenuationBasis` instead (see `prepare`).

    Returns:
        `XrayScan` with ``counts == expected_counts``.

    Raises:
        TypeError: wrong argument types.
        ValueError: the source passes through the phantom, the detector does not cover the
            object, (fan/parallel beam) the phantom's third axis is not the world z axis, or a
            ``basis_tolerance`` outside (0, 0.1].

    Fan- and parallel-beam geometries use the planar projector (all maps in one pass);
    `ConeBeam` and `ProjectionGeometry` (radiographs, C-arms, tomosynthesis) project each map
    with the 3-D projector, and their flat field is per view. Equivalent to
    ``prepare(lv.grid, protocol, materials=lv.material_names).expected(fractions)``, but memory
    stays near one map (plus the projections) however many materials the phantom has: the maps
    are built from the labels or sparse fractions one at a time (cone beams and radiographs) or
    slab by slab of slices (fan and parallel beams with one detector row per slice). A phantom
    traced by the caller's ``jax.jit`` is computed in one piece instead (the same values).
    """
    where = "medphys.simulators.xray.simulate"
    if not isinstance(labeled_volume, LabeledVolume):
        raise TypeError(
            f"{where}: `labeled_volume` must be a LabeledVolume (got {type(labeled_volume).__name__})"
        )
    if not isinstance(protocol, CTProtocol):
        raise TypeError(f"{where}: `protocol` must be a CTProtocol (got {type(protocol).__name__})")
    tolerance = check_tolerance(where, basis_tolerance)
    if dtype is None:
        f = labeled_volume.fractions
        dtype = f.dtype if f is not None and jnp.issubdtype(f.dtype, jnp.floating) else jnp.float32
    names = labeled_volume.material_names
    scanner = _prepare_scanner(where, labeled_volume.grid, protocol, names, None, tolerance)
    if not is_concrete(*jax.tree_util.tree_leaves(labeled_volume)):
        # the caller's jit holds the phantom: no host checks, no streaming (the same values)
        return _whole(scanner, labeled_volume, dtype)
    geometry = scanner.protocol.geometry
    if isinstance(geometry, _Planar):
        _check_object_covered(where, scanner.grid, _support(labeled_volume, scanner), geometry)
        if scanner.plan.rows_are_slices:
            return _streamed_planar(where, scanner, labeled_volume, dtype)
        return _whole(scanner, labeled_volume, dtype)
    # cone beams and radiographs: one map built, projected and dropped at a time
    mixing = scanner.mixing(dtype)
    lengths = [
        scanner.projector.project(_maps(labeled_volume, mixing[:, k : k + 1], dtype)[0])
        for k in range(scanner.n_maps)
    ]
    return scanner._finish_projective(jnp.stack(lengths, axis=-1))


def _whole(scanner: Scanner, lv: LabeledVolume, dtype: Any) -> XrayScan:
    """The scan of all of ``lv``'s maps at once (memory of every map)."""
    return scanner.expected_of_maps(_maps(lv, scanner.mixing(dtype), dtype))


def _maps(lv: LabeledVolume, mixing: Array, dtype: Any, z: tuple[int, int] | None = None) -> Array:
    """The projected maps (``mixing``'s columns) of ``lv`` or of a slab, times the density
    scale (texture: ``sum_m mu_m f_m × scale`` stays linear in the maps)."""
    maps = lv.material_mix(mixing, dtype, z)
    if lv.density_scale is not None:
        scale = jnp.asarray(lv.density_scale, dtype)
        maps = maps * (scale if z is None else scale[..., z[0] : z[1]])[None]
    return maps


def _slabs(n: int, most: int) -> tuple[int, list[tuple[int, int]]]:
    """Equal slabs of at most ``most`` slices covering ``n`` (the last one may be shorter)."""
    count = -(-n // max(1, most))
    depth = -(-n // count)
    return depth, [(z, min(n, z + depth)) for z in range(0, n, depth)]


def _support(lv: LabeledVolume, scanner: Scanner) -> np.ndarray:
    """``(x, y)``: columns where some slice holds more than 1e-6 of a projected material."""
    weights = np.zeros((len(scanner.materials), 1), np.float32)
    weights[list(scanner.projected)] = 1.0
    nx, ny, nz = scanner.grid.shape
    out = np.zeros((nx, ny), bool)
    _, slabs = _slabs(nz, _SLAB_BYTES // (4 * nx * ny))
    for z in slabs:
        out |= np.asarray(jnp.any(_maps(lv, weights, jnp.float32, z)[0] > 1e-6, axis=-1))
    return out


def _streamed_planar(where: str, scanner: Scanner, lv: LabeledVolume, dtype: Any) -> XrayScan:
    """A planar scan whose rows are the slices, computed slab by slab of slices."""
    nx, ny, nz = scanner.grid.shape
    itemsize = jnp.dtype(dtype).itemsize
    depth, slabs = _slabs(nz, _SLAB_BYTES // (scanner.n_maps * nx * ny * itemsize))
    if len(slabs) == 1:
        return _whole(scanner, lv, dtype)
    plan = planar_plan(
        (nx, ny, depth),
        scanner.grid.affine,
        _one_row_per_slice(scanner),
        batch=scanner.n_maps,
        where=where,
    )
    mixing = scanner.mixing(dtype)
    mean = var = None
    for z0, z1 in slabs:
        maps = _maps(lv, mixing, dtype, (z0, z1))
        if z1 - z0 < depth:  # the last slab: zero slices up to the planned depth
            maps = jnp.pad(maps, ((0, 0), (0, 0), (0, 0), (0, depth - (z1 - z0))))
        m, v = scanner._readings(plan, maps)
        if mean is None:
            mean = np.empty((m.shape[0], m.shape[1], nz, m.shape[3]), m.dtype)
            var = np.empty_like(mean)
        mean[:, :, z0:z1] = np.asarray(m)[:, :, : z1 - z0]
        var[:, :, z0:z1] = np.asarray(v)[:, :, : z1 - z0]
    return scanner._finish_planar(jnp.asarray(mean), jnp.asarray(var))


def _one_row_per_slice(scanner: Scanner) -> _Planar:
    """The protocol's geometry with its rows unresolved (one row per slice of any slab)."""
    return dataclasses.replace(scanner.protocol.geometry, n_rows=None)


def simulate(
    key: PRNGKey,
    labeled_volume: LabeledVolume,
    protocol: CTProtocol,
    *,
    basis_tolerance: float | None = None,
) -> XrayScan:
    """A noisy polychromatic CT scan or radiograph of a labelled phantom.

    Args:
        key: `jax.random` key for the noise (first, as everywhere in medphys).
        labeled_volume: the phantom (labels, material table, optional partial-volume fractions
            and density scale).
        protocol: geometry, spectrum, dose, detector, optional bowtie and scatter (`CTProtocol`,
            e.g. ``medphys.simulators.load("ct-chest-120kvp")`` or ``load("xray-chest-pa")``).
        basis_tolerance: None (one map per material) or the relative error of an
            `AttenuationBasis` (see `prepare`): fewer maps projected, same physics within it.

    Returns:
        `XrayScan`: post-log projections ``(views, u, v)``, noisy and expected counts, flat field
        and the resolved geometry. Float32 unless the phantom's fractions are float64.

    Raises:
        as `expected_scan`.

    The phantom's affine is static, so this runs inside ``jax.jit`` and ``jax.vmap`` (phantoms
    stacked on one grid); in a training loop prepare the `Scanner` once instead.

    Example:
        >>> protocol = medphys.simulators.load("ct-chest-120kvp")
        >>> scan = simulate(jax.random.key(0), phantom, protocol)
        >>> image = medphys.simulators.ct.reconstruct(scan, protocol, like=phantom)
    """
    return add_noise(
        key, expected_scan(labeled_volume, protocol, basis_tolerance=basis_tolerance), protocol
    )
