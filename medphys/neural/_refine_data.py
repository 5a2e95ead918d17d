"""The refiner's training data: simulated CT cases with the physics that produced them, and real
images brought to the simulation's pixel spacing (host-side preparation, before any training).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ..metrics import soft_tissue_mask
from . import _refine_losses as L

_WHERE = "medphys.neural"


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SimulatedCT:
    """Simulated CT cases on one grid, with the measurements and projector behind each image.

    Build with `SimulatedCT.create` (or `simulate_ct`). Attributes:
        hu: ``(cases, x, y, z)`` reconstructed images (HU), the refiner's input.
        labels: ``(cases, x, y, z)`` integer label maps.
        projections: ``(cases, views, u, v)`` the scans' linearised line integrals
            (`medphys.simulators.ct.Reconstructor.line_integrals`).
        interiors: ``(labels, cases, x, y, z)`` each label eroded in-plane (per-label HU).
        boundary: ``(cases, x, y, z)`` pixels with a 4-neighbour of another label (edges).
        residual: ``(cases,)`` the simulated images' own measurement residual (mean square).
        projector: the `medphys.simulators.xray.Projector` of the scan's geometry on the grid.
        mu_water_per_mm: the HU calibration's water attenuation (1/mm) (static).
        spacing_mm: in-plane pixel spacing (static).
        label_values: the label value of each row of ``interiors`` (static).
    """

    hu: Float[Array, "cases x y z"]
    labels: Int[Array, "cases x y z"]
    projections: Float[Array, "cases views u v"]
    interiors: Array
    boundary: Array
    residual: Float[Array, " cases"]
    projector: Any
    mu_water_per_mm: float = dataclasses.field(metadata={"static": True})
    spacing_mm: tuple[float, float] = dataclasses.field(metadata={"static": True})
    label_values: tuple[int, ...] = dataclasses.field(metadata={"static": True})

    modality: ClassVar[str] = "ct"
    self_unit: ClassVar[float] = L.HU_SELF_UNIT

    @property
    def n_cases(self) -> int:
        return int(self.hu.shape[0])

    def take(self, cases: Any) -> SimulatedCT:
        """The cases at the given indices (a training / held-out split)."""
        idx = case_indices(f"{_WHERE}.SimulatedCT.take", cases, self.n_cases)
        return dataclasses.replace(
            self,
            hu=self.hu[idx],
            labels=self.labels[idx],
            projections=self.projections[idx],
            interiors=self.interiors[:, idx],
            boundary=self.boundary[idx],
            residual=self.residual[idx],
        )

    @classmethod
    def create(
        cls,
        hu: Any,
        labels: Any,
        projections: Any,
        projector: Any,
        mu_water_per_mm: float,
        *,
        erode_px: int = 1,
    ) -> SimulatedCT:
        """Check the arrays against the projector and derive interiors, boundaries and residuals.

        Args:
            hu: ``(cases, x, y, z)`` or one ``(x, y, z)`` image in HU on ``projector.grid``.
            labels: integer label maps of the same shape.
            projections: ``(cases, views, u, v)`` linearised line integrals of each case.
            projector: `medphys.simulators.xray.prepare(grid, geometry)` of the scan.
            mu_water_per_mm: water's μ (1/mm) of the HU calibration (``Reconstructor.mu_water
                / 10``).
            erode_px: in-plane erosion of the label interiors (pixels).

        Raises:
            ValueError: shapes that disagree with each other or with the projector, non-finite
                values, a non-positive μ_water.
        """
        where = f"{_WHERE}.SimulatedCT.create"
        h = np.asarray(hu, np.float32)
        lab = np.asarray(labels)
        p = np.asarray(projections, np.float32)
        grid = projector.grid
        if h.ndim == 3:
            h, lab, p = h[None], lab[None], p[None]
        if h.ndim != 4 or h.shape[1:] != tuple(grid.shape):
            raise ValueError(
                f"{where}: `hu` must be (cases, x, y, z) on the projector's grid {grid.shape} "
                f"(got {h.shape})"
            )
        if lab.shape != h.shape or not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(
                f"{where}: `labels` must be integers of the images' shape {h.shape} "
                f"(got {lab.dtype} {lab.shape})"
            )
        if p.shape != (h.shape[0], *projector.projection_shape):
            raise ValueError(
                f"{where}: `projections` must be (cases, views, u, v) = "
                f"{(h.shape[0], *projector.projection_shape)} (got {p.shape})"
            )
        for name, a in (("hu", h), ("projections", p)):
            if not np.all(np.isfinite(a)):
                raise ValueError(
                    f"{where}: `{name}` has {int(np.sum(~np.isfinite(a)))} non-finite values"
                )
        if not mu_water_per_mm > 0:
            raise ValueError(f"{where}: `mu_water_per_mm` must be > 0 (got {mu_water_per_mm})")
        values, interiors, boundary = label_geometry(lab, erode_px)
        residual = jnp.stack(
            [
                L.measurement_residual(
                    jnp.asarray(h[i]), jnp.asarray(p[i]), projector, float(mu_water_per_mm)
                )
                for i in range(h.shape[0])
            ]
        )
        return cls(
            hu=jnp.asarray(h),
            labels=jnp.asarray(lab.astype(np.int32)),
            projections=jnp.asarray(p),
            interiors=jnp.asarray(interiors),
            boundary=jnp.asarray(boundary),
            residual=residual.astype(jnp.float32),
            projector=projector,
            mu_water_per_mm=float(mu_water_per_mm),
            spacing_mm=in_plane(grid),
            label_values=values,
        )

    # --- what the training loop asks of a modality (`medphys.neural.RefineProblem`) ---

    @property
    def image(self) -> Float[Array, "cases x y z"]:
        """The refiner's input: ``hu``."""
        return self.hu

    @staticmethod
    def tissue_mask(images: Any) -> np.ndarray:
        """Soft tissue away from edges (`medphys.metrics.soft_tissue_mask`): the NPS region."""
        return soft_tissue_mask(images)

    def digest_arrays(self) -> tuple[Any, ...]:
        return (self.hu, self.labels, self.projections, self.projector.grid.affine)

    def finish(self, volumes: Array, cases: Array, data_consistency: bool) -> Array:
        """The refined volumes as they are (CT has no data-consistency layer and HU may be
        negative)."""
        return volumes

    def physics_terms(self, volumes: Array, cases: Array, wanted: frozenset[str]) -> dict:
        """The CT physics terms (`medphys.neural._refine_losses`) named in ``wanted`` for
        refined volumes ``(batch, x, y, z)`` in HU of the cases ``cases``."""
        hu = self.hu[cases]
        terms = {}
        if "measurement" in wanted:
            terms["measurement"] = jnp.mean(
                jax.vmap(
                    lambda r, p, ref: L.measurement_loss(
                        r, p, self.projector, self.mu_water_per_mm, ref
                    )
                )(volumes, self.projections[cases], self.residual[cases])
            )
        if "intensity" in wanted:
            terms["intensity"] = L.intensity_loss(volumes, hu, self.interiors[:, cases])
        if "edges" in wanted:
            terms["edges"] = L.edge_loss(volumes, hu, self.boundary[cases])
        return terms


def case_indices(where: str, cases: Any, n: int) -> np.ndarray:
    """``cases`` as a flat integer index array, refused when empty or out of ``range(n)``
    (negative indices count from the end)."""
    idx = np.asarray(cases, np.int64).reshape(-1)
    if idx.size == 0 or idx.min() < -n or idx.max() >= n:
        raise ValueError(f"{where}: `cases` must be indices below {n} (got {idx.tolist()})")
    return idx


def in_plane(grid: Any) -> tuple[float, float]:
    """The in-plane (x, y) voxel size of a grid or volume (`medphys.volume` ``spacing_mm``)."""
    return (float(grid.spacing_mm[0]), float(grid.spacing_mm[1]))


def label_geometry(
    labels: np.ndarray, erode_px: int
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """``(values, interiors, boundary)`` of ``(cases, x, y, z)`` label maps: the label values,
    each label eroded in-plane by ``erode_px`` (4-neighbourhood) as ``(labels, cases, x, y,
    z)``, and the pixels with an in-plane 4-neighbour of another label."""
    from scipy import ndimage

    values = tuple(int(v) for v in np.unique(labels))
    st = np.zeros((1, 3, 3, 1), bool)
    st[0, :, 1, 0] = st[0, 1, :, 0] = True  # in-plane 4-neighbourhood
    interiors = np.stack(
        [
            ndimage.binary_erosion(labels == v, st, iterations=erode_px)
            if erode_px > 0
            else labels == v
            for v in values
        ]
    )
    boundary = np.zeros(labels.shape, bool)
    boundary[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    boundary[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    boundary[:, :, 1:] |= labels[:, :, 1:] != labels[:, :, :-1]
    boundary[:, :, :-1] |= labels[:, :, 1:] != labels[:, :, :-1]
    return values, interiors, boundary


def simulate_ct(
    key: Array,
    phantom: Any,
    protocol: Any,
    *,
    cases: int,
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> SimulatedCT:
    """Simulate ``cases`` CT scans of population draws of a phantom for refiner training.

    Each case draws a virtual patient (`medphys.phantoms.sample` from the stream ``fold_in(key,
    i)``), voxelises it, simulates the protocol's scan (noise from the same stream) and keeps the
    HU image, the labels and the linearised line integrals.

    Args:
        key: the randomness of the whole set.
        phantom: a phantom family name or a `medphys.phantoms.Phantom`.
        protocol: a `medphys.simulators.xray.CTProtocol`.
        cases, shape, spacing_mm, center_mm: how many cases and the grid (``voxelize``'s).
    """
    from ..simulators import ct, xray

    hus, labs, projs = [], [], []
    scanner = recon = None
    grid = {"shape": shape, "spacing_mm": spacing_mm, "center_mm": center_mm}
    for i, k, labels in drawn_cases(f"{_WHERE}.simulate_ct", key, phantom, cases, grid):
        if scanner is None:
            scanner = xray.prepare(labels.grid, protocol, materials=labels.material_names)
            recon = ct.prepare(labels.grid, protocol)
        if labels.material_names != scanner.materials:
            raise ValueError(
                f"{_WHERE}.simulate_ct: case {i} has materials {labels.material_names}, the first "
                f"{scanner.materials}; use a phantom family whose draws share a material table"
            )
        scan = scanner.simulate(jax.random.fold_in(k, 1), labels.material_fractions())
        hus.append(np.asarray(recon.hounsfield(scan)))
        labs.append(np.asarray(labels.labels))
        projs.append(np.asarray(recon.line_integrals(scan)))
    return SimulatedCT.create(
        np.stack(hus), np.stack(labs), np.stack(projs), scanner.projector, recon.mu_water / 10.0
    )


def drawn_cases(where: str, key: Array, phantom: Any, cases: Any, grid: dict) -> Any:
    """``(i, key_i, labels)`` per case: the virtual patient drawn from ``fold_in(key_i, 0)``
    (`medphys.phantoms.sample`) and voxelised on ``grid`` (``voxelize``'s arguments), with
    ``key_i = fold_in(key, i)``; its acquisition draws from ``fold_in(key_i, 1)``."""
    from .. import phantoms

    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 1:
        raise ValueError(f"{where}: `cases` must be an integer >= 1 (got {cases!r})")
    for i in range(cases):
        k = jax.random.fold_in(key, i)
        person, _ = phantoms.sample(jax.random.fold_in(k, 0), phantom)
        yield i, k, phantoms.voxelize(person, **grid)


def _resampled(where: str, images: list, spacing_mm: tuple[float, ...]) -> list[np.ndarray]:
    """Each ``(array, spacing)`` resampled linearly to ``spacing_mm`` (2-D or 3-D, the length
    of ``spacing_mm``)."""
    from scipy import ndimage

    dim = len(spacing_mm)
    if not images:
        raise ValueError(f"{where}: `images` is empty; give at least one real image")
    out = []
    for image, spacing in images:
        a = np.asarray(image, np.float64)
        if a.ndim != dim:
            raise ValueError(f"{where}: images must be {dim}-D (got shape {a.shape})")
        zoom = tuple(float(s) / t for s, t in zip(spacing, spacing_mm, strict=True))
        out.append(ndimage.zoom(a, zoom, order=1) if zoom != (1.0,) * dim else a)
    return out


def _draw_patches(
    where: str,
    key: Array,
    arrays: list[np.ndarray],
    spacing_mm: tuple[float, ...],
    size: int,
    count: int,
    low: float,
    min_tissue: float,
) -> np.ndarray:
    """``count`` cubic (or square) patches of side ``size`` of resampled real arrays, their
    centres drawn uniformly (stream ``key``) among positions whose patch has at least
    ``min_tissue`` of its elements above ``low``."""
    from scipy import ndimage

    usable = []
    r = size // 2
    for b in arrays:
        if min(b.shape) < size:
            continue
        tissue = ndimage.uniform_filter((b > low).astype(np.float64), size, mode="constant")
        valid = np.zeros(b.shape, bool)
        valid[tuple(slice(r, n - (size - r) + 1) for n in b.shape)] = True
        ok = np.argwhere(valid & (tissue >= min_tissue))
        if len(ok):
            usable.append((b.astype(np.float32), ok))
    if not usable:
        side = "×".join([str(size)] * len(spacing_mm))
        raise ValueError(
            f"{where}: no image has a {side} patch at {spacing_mm} mm with {min_tissue:.0%} of "
            f"its {'pixels' if len(spacing_mm) == 2 else 'voxels'} above {low}"
        )
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().astype(np.uint32))
    out = np.empty((count, *(size,) * len(spacing_mm)), np.float32)
    for n in range(count):
        b, ok = usable[rng.integers(len(usable))]
        corner = ok[rng.integers(len(ok))] - r
        out[n] = b[tuple(slice(c, c + size) for c in corner)]
    return out


def real_tiles(
    images: list[tuple[Any, tuple[float, float]]],
    *,
    spacing_mm: tuple[float, float],
    size: int,
    low: float = -100.0,
    min_tissue: float = 0.5,
) -> np.ndarray:
    """Non-overlapping square tiles of real 2-D images resampled (linearly) to ``spacing_mm``,
    keeping those with at least ``min_tissue`` of their pixels above ``low`` (HU for CT, the
    normalised intensity for MR: `real_mr_slices`): disjoint sets of real images for held-out
    splits (memorisation audits), in image then raster order.

    Returns:
        ``(tiles, size, size)`` float32.

    Raises:
        ValueError: no image, or no tile with enough tissue.
    """
    where = f"{_WHERE}.real_tiles"
    out = []
    for b in _resampled(where, images, spacing_mm):
        for x0 in range(0, b.shape[0] - size + 1, size):
            for y0 in range(0, b.shape[1] - size + 1, size):
                tile = b[x0 : x0 + size, y0 : y0 + size]
                if np.mean(tile > low) >= min_tissue:
                    out.append(tile.astype(np.float32))
    if not out:
        raise ValueError(
            f"{where}: no {size}×{size} tile at {spacing_mm} mm has {min_tissue:.0%} of its "
            f"pixels above {low}"
        )
    return np.stack(out)


def real_patches(
    key: Array,
    images: list[tuple[Any, tuple[float, float]]],
    *,
    spacing_mm: tuple[float, float],
    size: int,
    count: int,
    low: float = -100.0,
    min_tissue: float = 0.5,
) -> np.ndarray:
    """Square patches of real 2-D images resampled (linearly) to ``spacing_mm``.

    Patch centres are drawn uniformly (stream ``key``) among positions whose patch has at least
    ``min_tissue`` of its pixels above ``low`` (inside the body; HU for CT, the normalised
    intensity for MR, e.g. 0.1 on `real_mr_slices`).

    Args:
        images: ``(image, (row spacing, column spacing))`` pairs, e.g. from
            `medphys.io.RealImageSet.slices` (axes as the simulation's x, y).
        spacing_mm: the simulation's in-plane spacing.
        size: patch side (pixels).
        count: patches to draw.

    Returns:
        ``(count, size, size)`` float32 patches.

    Raises:
        ValueError: no image, or no image with a position that has enough tissue.
    """
    where = f"{_WHERE}.real_patches"
    arrays = _resampled(where, images, spacing_mm)
    return _draw_patches(where, key, arrays, spacing_mm, size, count, low, min_tissue)


def real_volume_patches(
    key: Array,
    volumes: list[tuple[Any, Any]],
    *,
    spacing_mm: tuple[float, float, float],
    size: int,
    count: int,
    low: float = -100.0,
    min_tissue: float = 0.5,
) -> np.ndarray:
    """Cubic patches of real 3-D volumes resampled (linearly) to ``spacing_mm``: the real images
    of a 3-D refiner (`RefineConfig.dim` 3).

    Patch corners are drawn uniformly (stream ``key``) among positions whose patch has at least
    ``min_tissue`` of its voxels above ``low`` (HU for CT; the normalised intensity for MR, e.g.
    0.1 on `real_mr_volumes`).

    Args:
        volumes: ``(volume, (sx, sy, sz) mm)`` pairs, e.g. ``[(i.volume.data, i.spacing_mm) for
            i in images.images]`` of a `medphys.io.RealImageSet`.
        spacing_mm: the simulation's voxel size.
        size: patch side (voxels); count: patches to draw.

    Returns:
        ``(count, size, size, size)`` float32 patches.

    Raises:
        ValueError: no volume, a volume that is not 3-D, or no position with enough tissue.
    """
    where = f"{_WHERE}.real_volume_patches"
    arrays = _resampled(where, volumes, spacing_mm)
    return _draw_patches(where, key, arrays, spacing_mm, size, count, low, min_tissue)
