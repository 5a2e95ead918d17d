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
from ..._types import PRNGKey
from ...volume import Grid, LabeledVolume
from ..geometry import AbstractGeometry, _Planar
from ._operator import Projector, _check_grid, prepare_projector
from ._projector import Joseph, Trilinear, _Plan, planar_plan
from ._protocol import CTProtocol
from ._simulate import (
    XrayScan,
    _expected,
    _expected_projective,
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
        grid: the voxel grid (static).
        materials: the material of each row of ``fractions`` (static).
        projected: the rows that are projected (all but air, the flat-field medium; static).
        plan: the multi-material planar plan (fan and parallel beams), else None (static).
    """

    protocol: CTProtocol
    projector: Projector
    mu_mm: Float[Array, "m energies"]
    mu_bowtie_mm: Float[Array, " energies"] | None
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
        p = self.protocol
        spectrum, geometry = p.spectrum, p.geometry
        if self.plan is not None:
            mean, var, flat = _expected(
                self.plan,
                self.projected,
                f,
                jnp.asarray(self.grid.affine, f.dtype),
                geometry,
                self.mu_mm,
                spectrum.energies_kev,
                spectrum.photons,
                p.mas_per_view,
                p.detector,
                p.bowtie,
                self.mu_bowtie_mm,
                p.scatter,
            )
            return _scan(mean, var, flat, geometry, p)
        if self.projected:
            maps = f[jnp.asarray(self.projected)]
        else:  # nothing but air: a zero map keeps the shapes static
            maps = jnp.zeros((1, *self.grid.shape), f.dtype)
        # one material at a time: memory of one map's projections per step
        lengths = jnp.moveaxis(jax.lax.map(self.projector.project, maps), 0, -1)
        mean, var, flat = _expected_projective(
            lengths,
            geometry,
            self.mu_mm,
            spectrum.energies_kev,
            spectrum.photons,
            p.mas_per_view,
            p.detector,
            p.scatter,
            p.bowtie,
            self.mu_bowtie_mm,
        )
        return _scan(mean, var, flat, geometry, p)

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
) -> Projector: ...


@overload
def prepare(
    grid: Grid,
    geometry_or_protocol: CTProtocol,
    *,
    materials: Sequence[str],
    sampling: Joseph | Trilinear | None = None,
    views_per_batch: int | None = None,
) -> Scanner: ...


def prepare(
    grid: Grid,
    geometry_or_protocol: AbstractGeometry | CTProtocol,
    *,
    materials: Sequence[str] | None = None,
    sampling: Joseph | Trilinear | None = None,
    views_per_batch: int | None = None,
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
        if materials is not None:
            raise TypeError(f"{where}: `materials` is for a CTProtocol, not a geometry")
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
    return _prepare_scanner(where, grid, geometry_or_protocol, tuple(materials), views_per_batch)


def _prepare_scanner(
    where: str,
    grid: Grid,
    protocol: CTProtocol,
    names: tuple[str, ...],
    views_per_batch: int | None,
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
    plan = None
    if isinstance(geometry, _Planar):
        # the plan follows the protocol's geometry: n_rows=None → the rows are the slices
        plan = planar_plan(
            grid.shape, grid.affine, protocol.geometry, batch=max(len(keep), 1), where=where
        )
    bowtie = protocol.bowtie
    return Scanner(
        protocol=_arrays(dataclasses.replace(protocol, geometry=geometry)),
        projector=projector,
        mu_mm=jnp.asarray(mu / 10.0),  # 1/cm → 1/mm
        mu_bowtie_mm=None if bowtie is None else jnp.asarray(bowtie.mu_per_mm(energies)),
        grid=grid,
        materials=names,
        projected=keep,
        plan=plan,
    )


def _check_object_covered(where: str, grid: Grid, fractions: np.ndarray, geometry: _Planar) -> None:
    """The detector must see the whole object (every non-air voxel) in every view."""
    if fractions.size == 0:
        return
    support = np.any(fractions > 1e-6, axis=0)
    if not support.any():
        return
    a = grid.affine
    idx = np.argwhere(support.any(axis=2)).astype(np.float64)
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


def expected_scan(
    labeled_volume: LabeledVolume, protocol: CTProtocol, *, dtype: Any = None
) -> XrayScan:
    """The noise-free acquisition of a phantom (the deterministic part of `simulate`).

    Args:
        labeled_volume: the phantom; its ``fractions`` are used when present (partial volume),
            times its ``density_scale`` when it has one (texture).
        protocol: the `CTProtocol`.
        dtype: computation dtype; default the fractions' floating dtype, else float32.

    Returns:
        `XrayScan` with ``counts == expected_counts``.

    Raises:
        TypeError: wrong argument types.
        ValueError: the source passes through the phantom, the detector does not cover the
            object, or (fan/parallel beam) the phantom's third axis is not the world z axis.

    Fan- and parallel-beam geometries use the planar projector (all materials in one pass);
    `ConeBeam` and `ProjectionGeometry` (radiographs, C-arms, tomosynthesis) project each
    material's map with the 3-D projector, and their flat field is per view. Equivalent to
    ``prepare(lv.grid, protocol, materials=lv.material_names).expected(fractions)``.
    """
    where = "medphys.simulators.xray.simulate"
    if not isinstance(labeled_volume, LabeledVolume):
        raise TypeError(
            f"{where}: `labeled_volume` must be a LabeledVolume (got {type(labeled_volume).__name__})"
        )
    if not isinstance(protocol, CTProtocol):
        raise TypeError(f"{where}: `protocol` must be a CTProtocol (got {type(protocol).__name__})")
    if dtype is None:
        f = labeled_volume.fractions
        dtype = f.dtype if f is not None and jnp.issubdtype(f.dtype, jnp.floating) else jnp.float32
    names = labeled_volume.material_names
    scanner = _prepare_scanner(where, labeled_volume.grid, protocol, names, None)
    fractions = labeled_volume.material_fractions(dtype)
    if labeled_volume.density_scale is not None:
        # statistical texture: each voxel's attenuation is mu_m × scale, i.e. the material maps
        # are scaled before projection (linear: the projector pair stays matched)
        fractions = fractions * jnp.asarray(labeled_volume.density_scale, dtype)[None]
    geometry = scanner.protocol.geometry
    if isinstance(geometry, _Planar):
        try:
            host = np.asarray(fractions)
        except jax.errors.TracerArrayConversionError:
            host = None  # the caller traces the phantom: its values are not on the host
        if host is not None:
            _check_object_covered(where, scanner.grid, host[list(scanner.projected)], geometry)
    return scanner.expected(fractions)


def simulate(key: PRNGKey, labeled_volume: LabeledVolume, protocol: CTProtocol) -> XrayScan:
    """A noisy polychromatic CT scan or radiograph of a labelled phantom.

    Args:
        key: `jax.random` key for the noise (first, as everywhere in medphys).
        labeled_volume: the phantom (labels, material table, optional partial-volume fractions
            and density scale).
        protocol: geometry, spectrum, dose, detector, optional bowtie and scatter (`CTProtocol`,
            e.g. ``medphys.simulators.load("ct-chest-120kvp")`` or ``load("xray-chest-pa")``).

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
    return add_noise(key, expected_scan(labeled_volume, protocol), protocol)
