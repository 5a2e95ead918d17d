"""Digital breast tomosynthesis (DBT) reconstruction: planes parallel to a stationary detector.

`dbt_grid` lays out the reconstruction volume: slices parallel to the detector (the breast's
compression axis is the grid's third axis, ``z``), ``slice_mm`` apart from the detector surface up
to the compressed thickness, with the detector's pixel pitch in plane. Any of the solvers of
`medphys.simulators.ct` then runs on it: `dbt_fbp` below, or the iterative `sirt` / `cgls` / `tv`
with the same geometry (``sirt(geometry, like=dbt_grid(...))``: SART-like simultaneous updates).

Filtered backprojection (Mertelmeier et al. 2006): each projection row is filtered along ``u``,
the direction of the tube's motion, by

    H(f_u, f_v) = R(f_u) · A(f_u / (a f_N)) · S(f_u / f_s) · A(f_v / (a_v f_N)),

``R`` the band-limited spatial-domain ramp (Kak & Slaney eq. 3.61; `ramp_response`), ``A`` a Hann
window (spectral apodisation) reaching zero at ``apodisation`` × Nyquist along u (``a``) and at
``apodisation_v`` × Nyquist along v (``a_v``), and ``S`` the slice-thickness filter, a Hann
low-pass along u whose cut-off ``f_s = 1 / (2 T tan(arc / 2))`` (cycles/mm in the object) limits
the frequencies an object ``T = slice_thickness_mm`` out of plane would smear across the sweep;
then backprojected with the projector's exact adjoint (`medphys.simulators.xray.backproject`),
normalised by the backprojection of ones (each voxel averages the views that see it) and scaled as
a parallel-beam FBP over the arc: ``f = dθ · n_views · BP(Q) / BP(1)`` with ``Q`` the filtered
projections per mm in the object plane (pitch ``du / M``, ``M`` the magnification at mid-height).
Limited-angle data: in-plane detail of the focal plane is reconstructed, low frequencies and the
through-plane (z) resolution are not; values are not quantitative attenuation.

References:
    T. Mertelmeier, J. Orman, W. Haerer, M. K. Dudam, "Optimizing filtered backprojection
    reconstruction for a breast tomosynthesis prototype device", Proc. SPIE 6142:61420F, 2006.
    A. C. Kak, M. Slaney, Principles of Computerized Tomographic Imaging, IEEE Press, 1988, ch. 3.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..._checks import number as _number
from ...volume import Grid, Volume
from ..geometry import ProjectionGeometry
from ..xray import prepare
from ._fbp import ramp_response

__all__ = ["dbt_fbp", "dbt_grid"]


def _detector_frame(where: str, geometry: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Detector centre, source positions, sweep arc (rad) and the in-plane frame check."""
    if not isinstance(geometry, ProjectionGeometry):
        raise TypeError(
            f"{where}: `geometry` must be a ProjectionGeometry with a stationary detector "
            f"(medphys.simulators.xray.mammography_geometry) (got {type(geometry).__name__})"
        )
    src, centre, e_u, e_v = geometry.poses()
    if not (
        np.allclose(centre, centre[0]) and np.allclose(e_u, e_u[0]) and np.allclose(e_v, e_v[0])
    ):
        raise ValueError(f"{where}: the detector must be stationary (the same pose in every view)")
    if not (
        np.allclose(e_u[0], [1, 0, 0], atol=1e-9) and np.allclose(e_v[0], [0, 1, 0], atol=1e-9)
    ):
        raise ValueError(
            f"{where}: the detector's u and v axes must be world +x and +y (got u={e_u[0]}, "
            f"v={e_v[0]}); build the geometry with mammography_geometry"
        )
    d = src - centre[0]
    angles = np.arctan2(d[:, 0], d[:, 2])
    return centre[0], src, e_u[0], float(angles.max() - angles.min())


def dbt_grid(
    geometry: ProjectionGeometry,
    *,
    thickness_mm: float,
    slice_mm: float = 1.0,
    pixel_mm: float | None = None,
) -> Grid:
    """The reconstruction grid of a DBT (or DM) geometry: planes parallel to the detector.

    Args:
        geometry: a stationary-detector geometry (`medphys.simulators.xray.mammography_geometry`).
        thickness_mm: compressed breast thickness (mm, > 0): slices cover ``[0, thickness]``
            above the detector surface.
        slice_mm: slice spacing (mm, > 0), e.g. 1.
        pixel_mm: in-plane voxel size (mm, > 0); default the detector's pitch ``du_mm``.

    Returns:
        a `medphys.Grid` ``(x, y, slices)`` covering the detector's field; slice ``k`` is centred
        at ``(k + 1/2) slice_mm`` above the detector.

    Raises:
        TypeError, ValueError: not a stationary-detector geometry, non-positive sizes.
    """
    where = "medphys.simulators.ct.dbt_grid"
    centre, _, _, _ = _detector_frame(where, geometry)
    t = _number(where, "thickness_mm", thickness_mm)
    dz = _number(where, "slice_mm", slice_mm)
    px = float(geometry.du_mm) if pixel_mm is None else _number(where, "pixel_mm", pixel_mm)
    for name, v in (("thickness_mm", t), ("slice_mm", dz), ("pixel_mm", px)):
        if v <= 0:
            raise ValueError(f"{where}: `{name}` must be > 0 (got {v!r})")
    width_u = geometry.n_u * float(geometry.du_mm)
    width_v = geometry.n_v * float(geometry.dv_mm)
    nx = max(1, round(width_u / px))
    ny = max(1, round(width_v / px))
    nz = max(1, math.ceil(t / dz - 1e-9))
    affine = np.diag([px, px, dz, 1.0])
    affine[:3, 3] = [
        centre[0] - width_u / 2 + px / 2,
        centre[1] - width_v / 2 + px / 2,
        centre[2] + dz / 2,
    ]
    return Grid.create((nx, ny, nz), affine=affine)


def _hann(f: np.ndarray, cutoff: float) -> np.ndarray:
    return np.where(f < cutoff, 0.5 * (1.0 + np.cos(np.pi * np.minimum(f / cutoff, 1.0))), 0.0)


def dbt_fbp(
    projections: Float[Array, "views u v"],
    geometry: ProjectionGeometry,
    *,
    like: Grid | Volume | Any,
    apodisation: float = 1.0,
    apodisation_v: float = 1.0,
    slice_thickness_mm: float | None = None,
    projector: Any = None,
) -> Volume:
    """DBT filtered backprojection onto planes parallel to the detector (module docstring).

    Args:
        projections: ``(views, u, v)`` post-log line integrals.
        geometry: the stationary-detector geometry of the projections.
        like: the output grid (`dbt_grid`), or a volume on it.
        apodisation: Hann window's cut-off along u as a fraction of Nyquist, in (0, 1].
        apodisation_v: the same along v (perpendicular to the tube motion), in (0, 1].
        slice_thickness_mm: target slice thickness ``T`` (mm, > 0) of the slice-thickness
            filter; None: no such filter.
        projector: a prepared `medphys.simulators.xray.Projector` on ``like``'s grid along
            ``geometry`` to backproject with (default: prepared here). Many reconstructions of
            one structure at different poses share one plan this way: prepare once, then pass
            ``op.with_geometry(geometry)`` for each.

    Returns:
        `Volume` on the grid (relative, linear in the projections; see the module docstring).

    Raises:
        TypeError, ValueError: a geometry that is not a stationary detector, projections of the
            wrong shape, a cut-off outside (0, 1], a non-positive slice thickness.

    Example:
        >>> grid = dbt_grid(geometry, thickness_mm=45.0, slice_mm=1.0)
        >>> volume = dbt_fbp(scan.projections, geometry, like=grid, slice_thickness_mm=1.0)
    """
    where = "medphys.simulators.ct.dbt_fbp"
    centre, src, _, arc = _detector_frame(where, geometry)
    grid = like if isinstance(like, Grid) else getattr(like, "grid", None)
    if not isinstance(grid, Grid):
        raise TypeError(
            f"{where}: `like` must be a Grid (dbt_grid) or a volume (got {type(like).__name__})"
        )
    a_u = _number(where, "apodisation", apodisation)
    a_v = _number(where, "apodisation_v", apodisation_v)
    for name, v in (("apodisation", a_u), ("apodisation_v", a_v)):
        if not 0 < v <= 1:
            raise ValueError(f"{where}: `{name}` must be in (0, 1] of Nyquist (got {v!r})")
    p = jnp.asarray(projections)
    if not jnp.issubdtype(p.dtype, jnp.floating):
        p = p.astype(jnp.float32)
    want = (geometry.n_views, geometry.n_u, geometry.n_v)
    if tuple(p.shape) != want:
        raise ValueError(f"{where}: `projections` must have shape {want} (got {tuple(p.shape)})")
    # magnification at the volume's mid-height: object-plane pitch du / M
    z_mid = float(grid.affine[2, 3] + 0.5 * (grid.shape[2] - 1) * grid.affine[2, 2]) - centre[2]
    sid = float(np.mean(src[:, 2] - centre[2]))
    tau = float(geometry.du_mm) * (sid - z_mid) / sid
    size, ramp = ramp_response(geometry.n_u, "ram-lak")
    f = np.fft.rfftfreq(size)  # cycles per sample
    h_u = ramp * _hann(f, 0.5 * a_u)
    if slice_thickness_mm is not None:
        thick = _number(where, "slice_thickness_mm", slice_thickness_mm)
        if thick <= 0:
            raise ValueError(f"{where}: `slice_thickness_mm` must be > 0 (got {thick!r})")
        if arc > 0:
            f_s = 1.0 / (2.0 * thick * math.tan(arc / 2))  # cycles/mm in the object
            h_u = h_u * _hann(f, f_s * tau)
    size_v = max(64, 1 << math.ceil(math.log2(2 * geometry.n_v)))
    h_v = _hann(np.fft.rfftfreq(size_v), 0.5 * a_v)
    n = geometry.n_views
    d_theta = arc / (n - 1) if n > 1 else math.pi
    q = _filter(p, jnp.asarray(h_u, p.dtype), jnp.asarray(h_v, p.dtype), size, size_v) / tau
    op = prepare(grid, geometry) if projector is None else projector
    if op.grid != grid:
        raise ValueError(f"{where}: `projector` must be prepared on the grid of `like`")
    num = op.backproject(q)
    den = op.backproject(jnp.ones_like(p))
    tiny = jnp.asarray(jnp.finfo(p.dtype).tiny, p.dtype)
    seen = den > tiny * 1e6
    image = jnp.where(seen, num / jnp.where(seen, den, 1.0), 0.0) * (d_theta * n)
    return Volume(data=image, affine=grid.affine)


@partial(jax.jit, static_argnums=(3, 4))
def _filter(p: Array, h_u: Array, h_v: Array, size: int, size_v: int) -> Array:
    n_u, n_v = p.shape[1], p.shape[2]
    spec = jnp.fft.rfft(p, n=size, axis=1) * h_u[None, :, None]
    out = jnp.fft.irfft(spec, n=size, axis=1)[:, :n_u, :]
    spec_v = jnp.fft.rfft(out, n=size_v, axis=2) * h_v[None, None, :]
    return jnp.fft.irfft(spec_v, n=size_v, axis=2)[:, :, :n_v]
