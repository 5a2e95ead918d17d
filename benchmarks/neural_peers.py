"""Peer reconstructions for the sparse-view CT benchmark, on medphys's data, geometry and grid.

Every adapter takes exactly what medphys produced — line integrals (dimensionless, post-log), a
medphys geometry and a `medphys.Grid` — and returns an image on that grid, in its array
orientation (axis 0 = the grid's first index, world x; axis 1 = world y), in 1/mm. Never
imported by the package; `benchmarks/bench_neural_ct.py` calls these, and
`benchmarks/test_neural_peers_smoke.py` checks every mapping numerically.

Peers
    - ASTRA toolbox 2.5 (CPU, 2-D): `astra_fbp`, `astra_sirt`, `astra_cgls`.
    - deepinv 0.5 Deep Image Prior (torch, CPU): `deepinv_dip`, the physics being medphys's own
      projector (so that every method sees the identical forward model).
    - mbirjax 0.7 (JAX, 3-D cone beam MBIR): `mbirjax_mbir`.

Where the peers live
    - ``astra-toolbox`` and ``deepinv`` are installed in the project venv (``/work/main/.venv``);
      neither changes torch (2.13.0+cpu) or jax there.
    - deepinv 0.5 imports ``torchvision`` at import time (``deepinv/__init__.py``: "early
      loading", and ``from torchvision.transforms import ...`` in transforms/utils/datasets), and
      PyPI's torchvision wheel does not load with the pinned CPU torch (``operator
      torchvision::nms does not exist``). Nothing the Deep Image Prior uses (``ConvDecoder``,
      ``DeepImagePrior``, ``LinearPhysics``) calls torchvision, so `_import_deepinv` puts
      placeholder ``torchvision`` modules in front of the import system *for that import only*
      (names resolve to inert placeholders that raise if called) and removes them afterwards. No
      package is patched on disk and the real torchvision stays installed for whoever needs it.
    - mbirjax 0.7.3 requires ``jax != 0.10.2`` (the project venv has 0.10.2), so it lives in a
      separate venv, ``/work/bench-venv`` (``pip install -e "/work/main[bench]" mbirjax==0.7.3``,
      which resolves jax 0.10.1). `mbirjax_mbir` runs in-process when ``import mbirjax`` works
      and otherwise in that venv's interpreter (``MEDPHYS_MBIRJAX_PYTHON`` overrides the path),
      exchanging arrays through a temporary ``.npz``.

Conventions mapped (medphys: ``medphys.simulators.geometry``)
    medphys's view angle ``theta`` gives the beam direction ``d = (-sin, cos)`` and detector axis
    ``e_u = (cos, sin)``; pixel ``i`` sits at ``u_i = (i - (n_u - 1)/2) du + u_offset``. ASTRA's
    2-D images are ``(rows, cols)`` with columns along +x and row 0 at the *largest* y (checked:
    a single pixel at row 0 projects to the detector bin at +y), and its world frame is the same
    right-handed x-y frame. The adapters put ASTRA's origin at medphys's isocentre, lay the grid
    out in world orientation (`_Plane`), and describe each view by its vectors (``parallel_vec``:
    ray ``d``, detector centre ``u_offset e_u``, pixel step ``du e_u``; ``fanflat_vec``: source
    ``-sod d``, detector centre ``(sdd - sod) d + u_offset e_u``, pixel step ``du e_u``). Where
    ASTRA's CPU code needs the angle form (FBP, the ``strip_fanflat`` projector), medphys's
    ``theta`` is ASTRA's angle unchanged: ASTRA's ``parallel`` view ``theta`` has ray
    ``(sin, -cos) = -d`` and pixel step ``du (cos, sin)``; its ``fanflat`` view has the source at
    ``sod (sin, -cos)`` and the detector centre at ``(sdd - sod) (-sin, cos)``. All lengths are in
    mm, so ASTRA's line integrals and images carry medphys's units with no rescaling.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = [
    "astra_cgls",
    "astra_fbp",
    "astra_forward",
    "astra_sirt",
]


# ---------------------------------------------------------------------------------------------
# medphys grid and geometry → ASTRA 2-D


@dataclasses.dataclass(frozen=True)
class _Plane:
    """A one-slice axis-aligned grid laid out the way ASTRA stores images.

    ``flip_x``/``flip_y``: the grid's first/second index runs toward -x/-y. Extents are relative
    to the isocentre (ASTRA's rotation centre is its origin).
    """

    nx: int
    ny: int
    flip_x: bool
    flip_y: bool
    extent: tuple[float, float, float, float]  # min_x, max_x, min_y, max_y (mm, from isocentre)

    def to_astra(self, image: np.ndarray) -> np.ndarray:
        """``(nx, ny)`` grid image → ``(ny, nx)`` ASTRA image (row 0 at the largest y)."""
        a = np.asarray(image, dtype=np.float32).T
        if not self.flip_y:
            a = a[::-1]
        if self.flip_x:
            a = a[:, ::-1]
        return np.ascontiguousarray(a)

    def from_astra(self, a: np.ndarray) -> np.ndarray:
        """Inverse of `to_astra`."""
        a = np.asarray(a, dtype=np.float32)
        if self.flip_x:
            a = a[:, ::-1]
        if not self.flip_y:
            a = a[::-1]
        return np.ascontiguousarray(a.T)

    def vol_geom(self) -> dict:
        import astra

        return astra.create_vol_geom(self.ny, self.nx, *self.extent)


def _plane(where: str, grid: Any, geometry: Any) -> _Plane:
    shape = tuple(int(n) for n in grid.shape)
    if len(shape) != 3 or shape[2] != 1:
        raise ValueError(
            f"{where}: `grid` must be one slice, shape (nx, ny, 1) (got {shape}); the ASTRA "
            "adapters are 2-D"
        )
    a = np.asarray(grid.affine, dtype=np.float64)
    off = a[:2, :2] - np.diag(np.diag(a[:2, :2]))
    if np.any(np.abs(off) > 1e-9 * np.max(np.abs(a[:2, :2]))) or np.any(np.abs(a[:2, 2]) > 0):
        raise ValueError(
            f"{where}: `grid.affine` must be axis-aligned in x and y (got {a[:2, :3].tolist()}); "
            "resample onto an axis-aligned grid"
        )
    sx, sy = float(a[0, 0]), float(a[1, 1])
    if not math.isclose(abs(sx), abs(sy), rel_tol=1e-6):
        raise ValueError(
            f"{where}: ASTRA's CPU projectors need square pixels (got spacing {abs(sx)} × "
            f"{abs(sy)} mm)"
        )
    nx, ny = shape[0], shape[1]
    iso = np.asarray(geometry.isocenter_mm, dtype=np.float64)
    xs = a[0, 3] + sx * np.array([-0.5, nx - 0.5])
    ys = a[1, 3] + sy * np.array([-0.5, ny - 0.5])
    extent = (
        float(xs.min() - iso[0]),
        float(xs.max() - iso[0]),
        float(ys.min() - iso[1]),
        float(ys.max() - iso[1]),
    )
    return _Plane(nx, ny, sx < 0, sy < 0, extent)


def _kind(where: str, geometry: Any) -> str:
    from medphys.simulators import FanBeam, ParallelBeam

    if isinstance(geometry, ParallelBeam):
        return "parallel"
    if isinstance(geometry, FanBeam):
        if geometry.curved:
            raise ValueError(
                f"{where}: ASTRA's 2-D CPU fan beam is flat-detector only (got curved=True)"
            )
        return "fan"
    raise TypeError(
        f"{where}: `geometry` must be a medphys ParallelBeam or FanBeam (got "
        f"{type(geometry).__name__})"
    )


def _frames(geometry: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(geometry.angles, dtype=np.float64)
    c, s = np.cos(t), np.sin(t)
    return np.stack([c, s], -1), np.stack([-s, c], -1)  # e_u, d


def proj_geom(geometry: Any, *, vec: bool = True, where: str = "neural_peers") -> dict:
    """ASTRA 2-D projection geometry of a medphys `ParallelBeam` / flat `FanBeam`, in mm,
    origin at the isocentre.

    ``vec=True`` (default): ``parallel_vec`` / ``fanflat_vec``, exact for any angles and detector
    offset. ``vec=False``: the angle form (``parallel`` / ``fanflat``) that ASTRA's CPU FBP and
    ``strip_fanflat`` need; it cannot shift the detector, so ``u_offset_mm`` must be 0.
    """
    import astra

    kind = _kind(where, geometry)
    n_u = int(geometry.n_u)
    du = float(geometry.du_mm)
    u_off = float(geometry.u_offset_mm)
    angles = np.asarray(geometry.angles, dtype=np.float64)
    if not vec:
        if u_off != 0.0:
            raise ValueError(
                f"{where}: this ASTRA CPU path (FBP / strip_fanflat) has no detector shift; "
                f"`u_offset_mm` must be 0 (got {u_off})"
            )
        if kind == "parallel":
            return astra.create_proj_geom("parallel", du, n_u, angles)
        sod, sdd = float(geometry.sod_mm), float(geometry.sdd_mm)
        return astra.create_proj_geom("fanflat", du, n_u, angles, sod, sdd - sod)
    e_u, d = _frames(geometry)
    vectors = np.zeros((angles.size, 6))
    if kind == "parallel":
        vectors[:, 0:2] = d
        vectors[:, 2:4] = u_off * e_u
    else:
        sod, sdd = float(geometry.sod_mm), float(geometry.sdd_mm)
        vectors[:, 0:2] = -sod * d
        vectors[:, 2:4] = (sdd - sod) * d + u_off * e_u
    vectors[:, 4:6] = du * e_u
    return astra.create_proj_geom(
        f"{'parallel' if kind == 'parallel' else 'fanflat'}_vec", n_u, vectors
    )


def _default_projector(kind: str) -> str:
    return "linear" if kind == "parallel" else "line_fanflat"


def _projector(where: str, kind: str, projector: str | None) -> tuple[str, bool]:
    """Projector name and whether it needs the vector geometry form."""
    allowed = {
        "parallel": ("line", "linear", "strip"),
        "fan": ("line_fanflat", "strip_fanflat"),
    }[kind]
    p = _default_projector(kind) if projector is None else projector
    if p not in allowed:
        raise ValueError(
            f"{where}: `projector` for a {kind} beam must be one of {allowed} (got {p!r})"
        )
    return p, p != "strip_fanflat"


def _sinogram(where: str, sinogram: Any, geometry: Any) -> np.ndarray:
    s = np.asarray(sinogram, dtype=np.float32)
    if s.ndim == 3 and s.shape[2] == 1:
        s = s[..., 0]
    want = (int(np.asarray(geometry.angles).shape[0]), int(geometry.n_u))
    if s.shape != want:
        raise ValueError(
            f"{where}: `sinogram` must have shape (views, n_u) = {want} or (views, n_u, 1) "
            f"(got {np.shape(sinogram)})"
        )
    return np.ascontiguousarray(s)


def astra_forward(
    image: Any, geometry: Any, grid: Any, *, projector: str | None = None
) -> np.ndarray:
    """ASTRA's CPU forward projection of a ``(nx, ny)`` grid image (1/mm) → ``(views, n_u)``
    line integrals, with the geometry mapping of the reconstructions (used to verify it).

    Verified (smoke script): an off-centre rotated ellipse + square + disc on a 64² grid of
    0.75 mm with a flipped y axis, isocentre at (1.5, -1) mm, detector offsets 0.35 / 0.9 mm;
    relative L2 difference from medphys's Joseph projector: parallel (60 views) ``linear``
    0.44 %, ``strip`` 0.63 %, ``line`` 1.8 %; flat fan (72 views over 2π from 0.3 rad, sod 150,
    sdd 260 mm) ``line_fanflat`` 1.6 %, ``strip_fanflat`` (angle form, no offset) 0.87 %.
    """
    import astra

    where = "neural_peers.astra_forward"
    kind = _kind(where, geometry)
    plane = _plane(where, grid, geometry)
    p, vec = _projector(where, kind, projector)
    vg = plane.vol_geom()
    pg = proj_geom(geometry, vec=vec, where=where)
    pid = astra.create_projector(p, pg, vg)
    try:
        sid, sino = astra.create_sino(
            plane.to_astra(np.asarray(image).reshape(plane.nx, plane.ny)), pid
        )
        astra.data2d.delete(sid)
    finally:
        astra.projector.delete(pid)
    return np.asarray(sino, dtype=np.float32)


def _run(
    where: str,
    algorithm: str,
    sinogram: Any,
    geometry: Any,
    grid: Any,
    *,
    iterations: int,
    projector: str | None,
    vec: bool | None = None,
    options: dict | None = None,
) -> np.ndarray:
    import astra

    kind = _kind(where, geometry)
    plane = _plane(where, grid, geometry)
    p, needs_vec = _projector(where, kind, projector)
    use_vec = needs_vec if vec is None else (vec and needs_vec)
    s = _sinogram(where, sinogram, geometry)
    vg = plane.vol_geom()
    pg = proj_geom(geometry, vec=use_vec, where=where)
    pid = astra.create_projector(p, pg, vg)
    sid = astra.data2d.create("-sino", pg, s)
    rid = astra.data2d.create("-vol", vg, 0.0)
    cfg = astra.astra_dict(algorithm)
    cfg["ProjectorId"] = pid
    cfg["ProjectionDataId"] = sid
    cfg["ReconstructionDataId"] = rid
    if options:
        cfg["option"] = dict(options)
    aid = astra.algorithm.create(cfg)
    try:
        astra.algorithm.run(aid, iterations)
        rec = astra.data2d.get(rid)
    finally:
        astra.algorithm.delete(aid)
        astra.data2d.delete([sid, rid])
        astra.projector.delete(pid)
    return plane.from_astra(rec)


def astra_fbp(
    sinogram: Any,
    geometry: Any,
    grid: Any,
    *,
    filter: str = "ram-lak",
    projector: str | None = None,
) -> np.ndarray:
    """ASTRA's CPU filtered backprojection (parallel beam only) onto medphys's grid.

    Args:
        sinogram: ``(views, n_u)`` or ``(views, n_u, 1)`` line integrals from medphys.
        geometry: medphys `ParallelBeam` with ``u_offset_mm = 0`` (ASTRA's CPU FBP takes only the
            angle form ``parallel``, which has no detector shift; isocentre offsets are fine).
        grid: `medphys.Grid` of shape ``(nx, ny, 1)``, axis-aligned, square pixels.
        filter: ASTRA's ``FilterType`` (``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``,
            ``"hann"``, ...).
        projector: ``"linear"`` (default), ``"line"`` or ``"strip"``.

    Returns:
        ``(nx, ny)`` float32 image in 1/mm on ``grid``.

    Raises:
        NotImplementedError: a fan beam — ASTRA 2.5's CPU FBP answers "FBP currently only
            supports parallel projection geometries" (fan-beam FBP is ``FBP_CUDA`` only).
        ValueError: a detector offset, a non-axis-aligned or multi-slice grid.

    Mapping: angle form ``parallel`` with ASTRA angle = medphys ``theta`` and detector width
    ``du_mm``, volume extents in mm about the isocentre; no rescaling (ASTRA weights the views
    by the angular range itself: a full turn of views gives the same amplitude as a half turn).
    Verified (smoke script, 64² grid of 0.75 mm with a flipped y axis and an off-origin
    isocentre, 180 views, Ram-Lak): correlation with medphys's `ct.fbp` 0.9997 (half turn) and
    0.9996 (full turn), least-squares amplitude ratio 0.997 and 0.998.
    """
    where = "neural_peers.astra_fbp"
    if _kind(where, geometry) != "parallel":
        raise NotImplementedError(
            f"{where}: ASTRA 2.5's CPU FBP supports parallel geometries only ('FBP currently only "
            "supports parallel projection geometries'); fan-beam FBP needs FBP_CUDA"
        )
    return _run(
        where,
        "FBP",
        sinogram,
        geometry,
        grid,
        iterations=1,
        projector=projector,
        vec=False,
        options={"FilterType": filter},
    )


def astra_sirt(
    sinogram: Any,
    geometry: Any,
    grid: Any,
    *,
    iterations: int = 100,
    projector: str | None = None,
    min_constraint: float | None = None,
) -> np.ndarray:
    """ASTRA's CPU SIRT onto medphys's grid, from zero.

    Args:
        sinogram: ``(views, n_u)`` or ``(views, n_u, 1)`` line integrals from medphys.
        geometry: medphys `ParallelBeam` or flat `FanBeam` (any angles, detector offset and
            isocentre: vector geometries ``parallel_vec`` / ``fanflat_vec``).
        grid: `medphys.Grid` ``(nx, ny, 1)``, axis-aligned, square pixels.
        iterations: SIRT iterations.
        projector: parallel ``"linear"`` (default, Joseph-type like medphys), ``"line"``,
            ``"strip"``; fan ``"line_fanflat"`` (default) or ``"strip_fanflat"`` (angle form, no
            detector offset).
        min_constraint: e.g. 0.0 for non-negativity (ASTRA's ``MinConstraint``); None: off.

    Returns:
        ``(nx, ny)`` float32 image in 1/mm on ``grid``.

    Verified (smoke script, geometries of `astra_forward`): SIRT 50 iterations from medphys's
    sinogram correlates 0.979 with the phantom (parallel and fan alike).
    """
    opts = {} if min_constraint is None else {"MinConstraint": float(min_constraint)}
    return _run(
        "neural_peers.astra_sirt",
        "SIRT",
        sinogram,
        geometry,
        grid,
        iterations=iterations,
        projector=projector,
        options=opts,
    )


def astra_cgls(
    sinogram: Any, geometry: Any, grid: Any, *, iterations: int = 30, projector: str | None = None
) -> np.ndarray:
    """ASTRA's CPU CGLS onto medphys's grid, from zero. Arguments as `astra_sirt`.

    Returns:
        ``(nx, ny)`` float32 image in 1/mm on ``grid``.

    Verified (smoke script): CGLS 15 iterations correlates 0.994 (parallel) / 0.992 (fan) with
    the phantom.
    """
    return _run(
        "neural_peers.astra_cgls",
        "CGLS",
        sinogram,
        geometry,
        grid,
        iterations=iterations,
        projector=projector,
    )
