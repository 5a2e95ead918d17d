"""CT reconstruction as a prepared operator: `prepare(grid, geometry | protocol)` → `Reconstructor`.

Everything that depends only on the grid and the scan is decided once on the host: the view
angles are checked and the redundancy weights chosen and computed (none for a full turn, Parker's
for a short scan, Wang's plus mirror padding for an offset detector), the kernel (FBP for fan and
parallel beams, FDK for a circular cone) and its static layout fixed, and for a protocol the water
calibration (`water_mu`) and the water beam-hardening fit (`correct_beam_hardening`) evaluated.
`Reconstructor.attenuation(projections)` and `Reconstructor.hounsfield(scan)` are then pure JAX:
they run under ``jax.jit``, ``jax.vmap`` over a batch of scans and ``jax.grad`` (FBP and FDK are
linear in the projections).

`fbp`, `fdk` and `reconstruct` are thin wrappers that prepare and apply.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ...volume import Grid, Volume
from .._kinds import Filter
from ..geometry import ConeBeam, FanBeam, ParallelBeam, z_aligned
from ..xray import CTProtocol, ScatterCorrection, XrayScan
from ._fbp import _fbp_kernel, check_filter
from ._fdk import _BLOCK, _fdk_kernel
from ._hu import bhc_fit, bhc_polynomial, remove_scatter, water_mu
from ._parker import (
    check_redundancy,
    gap_weights,
    offset_detector_weights,
    parker_weights,
    scan_needs_weights,
    weigh,
)

__all__ = ["Reconstructor", "fbp", "fdk", "prepare", "reconstruct"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Reconstructor:
    """Filtered backprojection (FBP or FDK) of one scan layout onto a fixed grid.

    Build with `medphys.simulators.ct.prepare`. Attributes:
        geometry: the geometry the kernel reads (leaves; for an offset detector, widened by the
            mirror padding).
        weights: ``(views, u)`` redundancy weights times ``n_views |dθ| / π``, angular-gap
            weights (irregularly spaced views), or None (full scan).
        bhc: ``(columns, degree)`` water beam-hardening polynomial (× μ_water, 1/mm) and its
            ``(columns,)`` scales, or None.
        scatter_correction: the protocol's kernel scatter correction, or None.
        grid: the output grid (static).
        filter: the ramp filter's window (static).
        cone: FDK (circular cone beam) instead of FBP (static).
        pad: zero columns added before and after ``u`` (offset detector; static).
        rows_are_slices, aligned, alpha, block: the kernel's static layout.
        input_shape: ``(views, u, v)`` of the projections it takes (static).
        mu_water: calibrated μ of water (1/cm) for HU, or None without a protocol (static).
    """

    geometry: Any
    weights: Float[Array, "views u"] | None
    bhc: tuple[Array, Array] | None
    scatter_correction: ScatterCorrection | None
    grid: Grid = dataclasses.field(metadata={"static": True})
    filter: Filter = dataclasses.field(metadata={"static": True})
    cone: bool = dataclasses.field(metadata={"static": True})
    pad: tuple[int, int] = dataclasses.field(metadata={"static": True})
    rows_are_slices: bool = dataclasses.field(metadata={"static": True})
    aligned: bool = dataclasses.field(metadata={"static": True})
    alpha: float | None = dataclasses.field(metadata={"static": True})
    block: int = dataclasses.field(metadata={"static": True})
    input_shape: tuple[int, int, int] = dataclasses.field(metadata={"static": True})
    mu_water: float | None = dataclasses.field(metadata={"static": True})

    def attenuation(self, projections: Float[Array, "views u v"]) -> Float[Array, "x y z"]:
        """FBP / FDK of line integrals: the image in projection units per mm (1/mm for post-log
        data), on the grid, in the projections' floating dtype.

        Raises:
            ValueError: projections of another shape than ``input_shape`` (checked when traced).
        """
        shape = tuple(getattr(projections, "shape", ()))
        if shape != self.input_shape:
            raise ValueError(
                "medphys.simulators.ct.Reconstructor.attenuation: `projections` must have shape "
                f"{self.input_shape} (views, u, v) (got {shape}); map over a batch with jax.vmap"
            )
        p = jnp.asarray(projections)
        if not jnp.issubdtype(p.dtype, jnp.floating):
            p = p.astype(jnp.float32)
        if self.weights is not None:
            p = p * self.weights.astype(p.dtype)[:, :, None]
        if any(self.pad):
            p = jnp.pad(p, ((0, 0), self.pad, (0, 0)))
        affine = jnp.asarray(self.grid.affine)
        if self.cone:
            return _fdk_kernel(
                p,
                self.geometry,
                affine,
                filter=self.filter,
                shape=self.grid.shape,
                block=self.block,
            )
        return _fbp_kernel(
            p,
            self.geometry,
            affine,
            filter=self.filter,
            shape=self.grid.shape,
            rows_are_slices=self.rows_are_slices,
            aligned=self.aligned,
            alpha=self.alpha,
        )

    def line_integrals(self, scan: XrayScan) -> Float[Array, "views u v"]:
        """The projections FBP reconstructs: the scan's post-log data after the protocol's scatter
        correction and water beam-hardening linearisation, ≈ ∫ μ_water-equivalent dl (μ in 1/mm,
        lengths in mm). ``self.attenuation(self.line_integrals(scan))`` is the image in 1/mm
        that `hounsfield` scales to HU; `medphys.simulators.xray.prepare(grid, geometry).project`
        of an image in 1/mm predicts them (the measurement a refined image must still explain).
        """
        if self.scatter_correction is not None:
            scan = remove_scatter(scan, self.scatter_correction)
        return self.linearise(scan.projections)

    def linearise(self, projections: Float[Array, "views u v"]) -> Float[Array, "views u v"]:
        """Post-log projections after the protocol's water beam-hardening linearisation (the
        identity without one); scatter correction, which needs the readings, is not applied
        (`line_integrals` applies both to a scan)."""
        p = jnp.asarray(projections)
        if self.bhc is not None:
            p = bhc_polynomial(p, *self.bhc)
        return p

    def hounsfield(self, scan: XrayScan) -> Float[Array, "x y z"]:
        """A scan's image in HU: scatter correction, water beam-hardening correction, FBP / FDK,
        water calibration, as the protocol says.

        Raises:
            TypeError: the reconstructor was prepared from a geometry (no calibration).
        """
        if self.mu_water is None:
            raise TypeError(
                "medphys.simulators.ct.Reconstructor.hounsfield: prepared from a geometry, without "
                "a water calibration; prepare it from a CTProtocol"
            )
        p = self.line_integrals(scan)
        mu = self.attenuation(p) * jnp.asarray(10.0, p.dtype)  # 1/cm
        return ((mu * (1000.0 / self.mu_water)) - 1000.0).astype(p.dtype)


def _mirror_padding(geometry: Any) -> tuple[tuple[int, int], float]:
    """Zero columns on the short side of an offset detector up to the mirror of its long side,
    and the offset of the widened detector."""
    du = float(geometry.du_mm)
    first = float(geometry.u_offset_mm) - 0.5 * (geometry.n_u - 1) * du
    last = first + (geometry.n_u - 1) * du
    pad = max(0, math.ceil(abs(first + last) / du - 1e-9))
    if first + last >= 0:  # long side at +u: columns below the first
        return (pad, 0), float(geometry.u_offset_mm) - 0.5 * pad * du
    return (0, pad), float(geometry.u_offset_mm) + 0.5 * pad * du


def prepare(
    grid: Grid,
    geometry_or_protocol: ParallelBeam | FanBeam | ConeBeam | CTProtocol,
    *,
    filter: Filter | str | None = None,
    redundancy: Float[Array, "views u"] | None = None,
) -> Reconstructor:
    """Plan FBP (parallel, fan) or FDK (circular cone) once on the host.

    Args:
        grid: the output grid (``volume.grid`` or ``medphys.Grid.create(...)``).
        geometry_or_protocol: the scan geometry, or a `CTProtocol` (its geometry, rows resolved
            against the grid, its filter, water calibration, beam-hardening and scatter
            corrections).
        filter: a `Filter` (or its name: ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``,
            ``"hann"``); default the protocol's, or ``Filter.RAM_LAK`` for a geometry.
        redundancy: optional ``(views, u)`` weights instead of the automatic ones (see `fbp`).

    Returns:
        `Reconstructor` (``attenuation(projections)``; ``hounsfield(scan)`` for a protocol).

    Raises:
        TypeError: a grid that is not a `Grid`, an unsupported geometry, a traced geometry.
        ValueError: as `fbp` / `fdk`: non-uniform views, a span that is neither a full turn nor
            a short scan, a helical cone beam, rows unresolved on an oblique grid, a radiograph
            protocol.

    Example:
        >>> op = ct.prepare(phantom.grid, protocol)
        >>> hu = jax.jit(op.hounsfield)(scan)
    """
    where = "medphys.simulators.ct.prepare"
    if not isinstance(grid, Grid):
        raise TypeError(
            f"{where}: `grid` must be a medphys.Grid (`volume.grid`) (got {type(grid).__name__})"
        )
    protocol = None
    if isinstance(geometry_or_protocol, CTProtocol):
        protocol = geometry_or_protocol
        if protocol.modality != "ct":
            raise ValueError(
                f"{where}: protocol {protocol.name or '(unnamed)'} is a '{protocol.modality}' "
                "protocol; only 'ct' protocols are reconstructed (use the projections as they are)"
            )
        geometry = protocol.geometry.with_rows_for(grid)
        filter = protocol.filter if filter is None else filter
    else:
        geometry = geometry_or_protocol
    return _prepare(where, grid, geometry, filter or Filter.RAM_LAK, redundancy, protocol)


def _prepare(
    where: str,
    grid: Grid,
    geometry: Any,
    filter: Filter | str,
    redundancy: Any,
    protocol: CTProtocol | None,
) -> Reconstructor:
    filter = check_filter(where, filter)
    if not isinstance(geometry, (ParallelBeam, FanBeam, ConeBeam)):
        raise TypeError(
            f"{where}: `geometry` must be a ParallelBeam, FanBeam or circular ConeBeam "
            f"(got {type(geometry).__name__})"
        )
    try:
        host = jax.tree_util.tree_map(np.asarray, geometry)
    except jax.errors.TracerArrayConversionError:
        raise TypeError(
            f"{where}: the geometry must be concrete (it is planned on the host); prepare "
            "outside jax.jit and pass the projections in"
        ) from None
    cone = isinstance(host, ConeBeam)
    what = "FDK" if cone else "FBP"
    if cone and float(host.pitch_mm) != 0.0:
        raise ValueError(
            f"{where}: FDK needs a circular trajectory (got pitch_mm={float(host.pitch_mm):g}); "
            "helical data need a helical reconstruction"
        )
    rows_are_slices = (not cone) and host.n_rows is None
    aligned = z_aligned(grid.affine)
    if rows_are_slices and not aligned:
        raise ValueError(
            f"{where}: the geometry's `n_rows` is None (one row per slice) but the grid is "
            "oblique; give the geometry's rows explicitly"
        )
    rows = host.n_v if cone else (grid.shape[2] if rows_are_slices else host.n_rows)
    input_shape = (host.n_views, host.n_u, rows)
    with jax.ensure_compile_time_eval():  # host planning, also when called inside a trace
        kind = scan_needs_weights(where, host, what=what, custom=redundancy is not None)
        geo = jax.tree_util.tree_map(jnp.asarray, host)
        weights = None
        if redundancy is not None:
            weights = _scaled(check_redundancy(where, redundancy, host), geo)
        elif kind == "parker":
            weights = _scaled(parker_weights(geo), geo)
        elif kind == "offset":
            weights = _scaled(offset_detector_weights(geo), geo)
        elif kind == "gaps":
            weights = gap_weights(host)
        pad = (0, 0)
        if kind == "offset":
            pad, offset = _mirror_padding(host)
            geo = dataclasses.replace(
                geo,
                n_u=host.n_u + sum(pad),
                u_offset_mm=jnp.asarray(offset, jnp.asarray(geo.u_offset_mm).dtype),
            )
        bhc = None
        mu_w = None
        scatter = None
        if protocol is not None:
            mu_w = water_mu(protocol)
            scatter = protocol.scatter_correction
            if protocol.beam_hardening_correction:
                coeffs, scale = _bhc_for(protocol, mu_w)
                bhc = (jnp.asarray(coeffs), jnp.asarray(scale))
    alpha = None
    if isinstance(host, FanBeam) and host.curved:
        alpha = float(host.du_mm) / float(host.sdd_mm)
    n_vox = int(np.prod(grid.shape))
    return Reconstructor(
        geometry=geo,
        weights=weights,
        bhc=bhc,
        scatter_correction=scatter,
        grid=grid,
        filter=filter,
        cone=cone,
        pad=pad,
        rows_are_slices=rows_are_slices,
        aligned=aligned,
        alpha=alpha,
        block=int(min(_BLOCK, n_vox)),
        input_shape=input_shape,
        mu_water=mu_w,
    )


def _scaled(weights: Array, geo: Any) -> Array:
    """Redundancy weights times ``n_views |dθ| / π`` (as `weigh` applies them)."""
    ones = jnp.ones((weights.shape[0], weights.shape[1], 1), weights.dtype)
    return weigh(ones, weights, geo)[:, :, 0]


def _bhc_for(protocol: CTProtocol, mu_water_per_cm: float) -> tuple[np.ndarray, np.ndarray]:
    coeffs, scale = bhc_fit(protocol)
    return coeffs * (mu_water_per_cm / 10.0), scale


def _grid_of(like: Any) -> Grid:
    grid = like if isinstance(like, Grid) else getattr(like, "grid", None)
    if not isinstance(grid, Grid):
        raise TypeError(
            "medphys.simulators.ct: `like` must be a Volume, LabeledVolume or Grid "
            f"(got {type(like).__name__})"
        )
    return grid


def _check_kind(where: str, geometry: Any, kinds: tuple[type, ...]) -> Any:
    if not isinstance(geometry, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{where}: `geometry` must be a {names} (got {type(geometry).__name__})")
    return geometry


def _checked(op: Reconstructor, name: str, projections: Any) -> Any:
    shape = tuple(getattr(projections, "shape", np.shape(projections)))
    if shape != op.input_shape:
        raise ValueError(
            f"medphys.simulators.ct.{name}: `projections` must have shape {op.input_shape} "
            f"(got {shape})"
        )
    return projections


def fbp(
    projections: Float[Array, "views u v"],
    geometry: ParallelBeam | FanBeam,
    *,
    like: Any,
    filter: Filter | str = Filter.RAM_LAK,
    redundancy: Float[Array, "views u"] | None = None,
) -> Volume:
    """Filtered backprojection onto the grid of ``like``.

    Args:
        projections: ``(views, u, v)`` line integrals (e.g. post-log data, dimensionless).
        geometry: the `ParallelBeam` or `FanBeam` that produced them (``n_rows=None``: one row per
            slice of ``like``).
        like: a `Volume` or `LabeledVolume` whose shape and affine define the output grid.
        filter: a `Filter`, or its name: ``"ram-lak"`` (plain ramp), ``"shepp-logan"``,
            ``"cosine"`` or ``"hann"``.
        redundancy: optional ``(views, u)`` redundancy weights (the measurements of each line
            adding up to 1); the image is then ``|dtheta| sum_views w Q``. Default: none for a
            full turn (or a parallel-beam half turn), `offset_detector_weights` for a full
            turn with a displaced detector, `parker_weights` for a short scan (views over at
            least π + the fan angle and less than 2π).

    Returns:
        `Volume` on ``like``'s grid, in projection units per mm (1/mm for post-log data), in the
        projections' dtype. Slices outside the detector rows are 0.

    Raises:
        ValueError: unknown filter, projections or redundancy weights whose shape does not match
            the geometry, views that are not uniformly spaced, or that cover neither a full turn
            (parallel beam: a half turn) nor π + the fan angle (short scan), a short scan with
            an offset detector, or an offset detector that misses the central ray.

    Example:
        >>> g = ParallelBeam.create(n_views=180, n_u=96, du_mm=1.0)
        >>> vol = Volume.create(np.ones((64, 64, 1), np.float32))
        >>> fbp(project(vol, g), g, like=vol, filter="hann").shape
        (64, 64, 1)
    """
    geometry = _check_kind("medphys.simulators.ct.fbp", geometry, (ParallelBeam, FanBeam))
    op = _prepare("medphys.simulators.ct.fbp", _grid_of(like), geometry, filter, redundancy, None)
    return Volume(data=op.attenuation(_checked(op, "fbp", projections)), affine=op.grid.affine)


def fdk(
    projections: Float[Array, "views u v"],
    geometry: ConeBeam,
    *,
    like: Any,
    filter: Filter | str = Filter.RAM_LAK,
    redundancy: Float[Array, "views u"] | None = None,
) -> Volume:
    """FDK reconstruction of circular cone-beam projections onto the grid of ``like``.

    Args:
        projections: ``(views, u, v)`` line integrals (post-log data, dimensionless).
        geometry: the circular (``pitch_mm = 0``) `ConeBeam` that produced them, with views
            uniform over a full turn, or over at least π + the fan angle (a short scan, as on a
            C-arm: Parker weights are applied automatically), or irregularly spaced in angular
            order within a turn with every gap below π (a phase-binned subset of a sweep:
            angular-gap weights, `gap_weights`).
        like: a `Volume` or `LabeledVolume` giving the output grid (shape and affine, any
            orientation).
        filter: a `Filter`, or its name (``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``,
            ``"hann"``).
        redundancy: optional ``(views, u)`` redundancy weights shared by all rows (see `fbp`);
            default none for a full turn, `offset_detector_weights` for a full turn with a
            displaced detector, `parker_weights` for a short scan.

    Returns:
        `Volume` on ``like``'s grid in projection units per mm (1/mm for post-log data), in the
        projections' dtype.

    Raises:
        TypeError: ``geometry`` is not a `ConeBeam`.
        ValueError: unknown filter, a helical trajectory, views not uniformly spaced or covering
            neither a full turn nor π + the fan angle, a short scan with an offset detector,
            or projections (redundancy weights) whose shape does not match the geometry.

    Example:
        >>> g = ConeBeam.create(n_views=180, n_u=96, n_v=64, du_mm=1.0, dv_mm=1.0,
        ...                     sod_mm=300.0, sdd_mm=500.0)
        >>> vol = Volume.create(np.ones((48, 48, 32), np.float32))
        >>> fdk(project(vol, g), g, like=vol).shape
        (48, 48, 32)
    """
    geometry = _check_kind("medphys.simulators.ct.fdk", geometry, (ConeBeam,))
    op = _prepare("medphys.simulators.ct.fdk", _grid_of(like), geometry, filter, redundancy, None)
    return Volume(data=op.attenuation(_checked(op, "fdk", projections)), affine=op.grid.affine)


def reconstruct(scan: XrayScan, protocol: CTProtocol, *, like: Any) -> Volume:
    """FBP (fan/parallel) or FDK (circular cone beam) of a scan, in Hounsfield units, on the grid
    of ``like``.

    Args:
        scan: the `XrayScan` from `medphys.simulators.xray.simulate`.
        protocol: supplies the filter, the water calibration (`water_mu`), the optional kernel
            scatter correction (`remove_scatter`, applied first, to the readings) and whether to
            apply the water beam-hardening correction (`correct_beam_hardening`).
        like: a `Volume` or `LabeledVolume` (usually the phantom) giving shape and affine.

    Returns:
        `Volume` in HU with ``like``'s affine, in the projections' dtype.

    Raises:
        as `fbp`.
    """
    where = "medphys.simulators.ct.reconstruct"
    if not isinstance(scan, XrayScan):
        raise TypeError(f"{where}: `scan` must be an XrayScan (got {type(scan).__name__})")
    if not isinstance(protocol, CTProtocol):
        raise TypeError(f"{where}: `protocol` must be a CTProtocol (got {type(protocol).__name__})")
    if protocol.modality != "ct":
        raise ValueError(
            f"{where}: protocol {protocol.name or '(unnamed)'} is a '{protocol.modality}' protocol; "
            "only 'ct' protocols are reconstructed (use the projections as they are)"
        )
    grid = _grid_of(like)
    # the protocol's geometry (concrete) rather than the scan's copy, which a caller's jit traces
    geometry = protocol.geometry.with_rows_for(grid)
    op = _prepare(where, grid, geometry, protocol.filter, None, protocol)
    _checked(op, "reconstruct", scan.projections)
    return Volume(data=op.hounsfield(scan), affine=grid.affine)
