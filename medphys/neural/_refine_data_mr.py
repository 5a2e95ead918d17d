"""The MR refiner's training data: simulated MR scans with the physics that produced them (coil
k-space, coil maps, sampling mask, noise level), and real MR images, both as magnitude over a
reference intensity (host-side preparation, before any training).

Magnitude images have no absolute scale (scanner gain, coil loading, the file's own rescale), so
the refiner sees every MR volume divided by its *reference intensity*,
`medphys.metrics.mr_reference`: the 99th percentile of the pixels brighter than a tenth of the
volume's largest value (1 is about the brightest tissue). The same rule applies to simulated cases, to real volumes and to images the
refiner is later applied to (`medphys.neural.refine_mr`), and it needs no label map.

The physics terms of an MR case (`SimulatedMR.physics_terms`), the counterparts of the CT ones:

- **measurement**: ``max(0, r(refined) / r₀ − 1)`` with ``r`` the k-space residual
  `medphys.simulators.mr.kspace_residual` (the image lifted through the scan's coils and object
  phase, ``‖M (k − y)‖ / ‖M y‖``) and ``r₀`` the simulated image's own, floored at the scan's
  noise floor `noise_residual` and at 1e-6, as `medphys.audit.mr_physics_audit` judges it;
- **intensity**: the relative change of each signal-bearing label's mean intensity (labels whose
  simulated mean is at least a tenth of the brightest label's), per 5 %, squared, averaged;
- **edges**: ``E|∇(refined − simulated)|`` over label boundaries, per 0.1 of the reference.

`SimulatedMR.finish` applies the hard data-consistency layer (`medphys.simulators.mr.
data_consistency`, Schlemper et al. 2018): the acquired k-space lines are put back into the
refined image, so that only the lines the scan skipped are the refiner's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ..metrics import mr_reference, mr_tissue_mask
from . import _refine_losses as L
from ._refine_data import case_indices, drawn_cases, in_plane, label_geometry

_WHERE = "medphys.neural"
SIGNAL_FRACTION = 0.1  # signal-bearing labels: mean ≥ this fraction of the brightest label's
RESIDUAL_FLOOR = 1e-6
SHIFT_UNIT = 0.05  # the intensity term is in (5 %)²
EDGE_UNIT = 0.1


def _mr_images(where: str, images: Any) -> tuple[Any, ...]:
    for image in images.images:
        if image.modality not in ("MR", "NIFTI"):
            raise ValueError(
                f"{where}: image {image.series_uid} is {image.modality}; the MR refiner takes MR "
                "or NIfTI images"
            )
    return images.images


def real_mr_slices(images: Any, *, axis: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """The slices of real MR volumes, each volume divided by its reference intensity
    (`medphys.metrics.mr_reference`).

    Args:
        images: a `medphys.io.RealImageSet` of MR (or NIfTI) images.
        axis: the volume axis slices are cut across (`RealImageSet.slices`).

    Returns:
        ``(slice, spacing_mm)`` pairs for `real_patches` (use ``low=`` a normalised
        threshold such as 0.1 there).
    """
    out = []
    for image in _mr_images(f"{_WHERE}.real_mr_slices", images):
        ref = mr_reference(image.volume)
        one = dataclasses.replace(images, images=(image,))
        out.extend((a / np.float32(ref), s) for a, s, _ in one.slices(axis))
    return out


def real_mr_volumes(images: Any) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """Real MR volumes, each divided by its reference intensity (`medphys.metrics.mr_reference`),
    with their voxel sizes: the input of `real_volume_patches` for a 3-D MR refiner.

    Args:
        images: a `medphys.io.RealImageSet` of MR (or NIfTI) images.
    """
    out = []
    for image in _mr_images(f"{_WHERE}.real_mr_volumes", images):
        data = np.asarray(image.volume.data, np.float32)
        out.append((data / np.float32(mr_reference(data)), tuple(image.spacing_mm)))
    return out


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SimulatedMR:
    """Simulated MR scans on one grid: normalised magnitude images with the scans behind them.

    Build with `SimulatedMR.create` (or `simulate_mr`). Attributes:
        image: ``(cases, x, y, z)`` magnitude over each case's reference intensity
            (`medphys.metrics.mr_reference`; the refiner's input).
        labels: ``(cases, x, y, z)`` integer label maps.
        scans: the cases' `medphys.simulators.mr.MRResult` stacked along a leading axis.
        phase: ``(cases, x, y, z)`` each scan's object phase (`mr.object_phase`), computed once
            for every lift in training.
        scale: ``(cases,)`` each case's reference intensity (image units of ``scans``).
        interiors: ``(labels, cases, x, y, z)`` each label eroded in-plane.
        boundary: ``(cases, x, y, z)`` pixels with a 4-neighbour of another label.
        residual: ``(cases,)`` each simulated image's own k-space residual, floored at its noise
            floor and 1e-6 (the measurement term's reference).
        signal: ``(labels,)`` signal-bearing labels (the intensity term's).
        spacing_mm, label_values: in-plane spacing and the label of each interior row (static).
    """

    image: Float[Array, "cases x y z"]
    labels: Int[Array, "cases x y z"]
    scans: Any
    phase: Array
    scale: Float[Array, " cases"]
    interiors: Array
    boundary: Array
    residual: Float[Array, " cases"]
    signal: Array
    spacing_mm: tuple[float, float] = dataclasses.field(metadata={"static": True})
    label_values: tuple[int, ...] = dataclasses.field(metadata={"static": True})

    modality: ClassVar[str] = "mr"
    self_unit: ClassVar[float] = EDGE_UNIT

    @property
    def n_cases(self) -> int:
        return int(self.image.shape[0])

    def scan(self, i: int) -> Any:
        """Case ``i``'s `MRResult`."""
        return jax.tree_util.tree_map(lambda a: a[i], self.scans)

    def results(self) -> list[Any]:
        """Every case's `MRResult` (for `medphys.audit.mr_physics_audit`)."""
        return [self.scan(i) for i in range(self.n_cases)]

    def take(self, cases: Any) -> SimulatedMR:
        """The cases at the given indices (a training / held-out split)."""
        idx = case_indices(f"{_WHERE}.SimulatedMR.take", cases, self.n_cases)
        return dataclasses.replace(
            self,
            image=self.image[idx],
            labels=self.labels[idx],
            scans=jax.tree_util.tree_map(lambda a: a[idx], self.scans),
            phase=self.phase[idx],
            scale=self.scale[idx],
            interiors=self.interiors[:, idx],
            boundary=self.boundary[idx],
            residual=self.residual[idx],
        )

    @classmethod
    def create(cls, scans: Any, labels: Any, *, erode_px: int = 1) -> SimulatedMR:
        """Check the scans against the labels and derive the normalisation, interiors,
        boundaries, residual floors and signal-bearing labels.

        An undersampled scan's image is replaced by its CG-SENSE reconstruction
        (`medphys.simulators.mr.reconstructed`): its zero-filled image is aliased, and the
        refiner and the audit start from what a scanner would show.

        Args:
            scans: one `medphys.simulators.mr.MRResult` per case, all on one grid.
            labels: ``(cases, x, y, z)`` integer label maps (0 outside the body).
            erode_px: in-plane erosion of the label interiors (pixels).

        Raises:
            TypeError: a scan that is not an `MRResult`.
            ValueError: no scan; scans of different shapes, grids or coil counts; labels of another
                shape or not integers; an image with no signal; no signal-bearing label.
        """
        from ..simulators import mr

        where = f"{_WHERE}.SimulatedMR.create"
        scans = list(scans)
        if not scans:
            raise ValueError(f"{where}: `scans` is empty")
        for i, s in enumerate(scans):
            if not isinstance(s, mr.MRResult):
                raise TypeError(
                    f"{where}: `scans[{i}]` must be a medphys.simulators.mr.MRResult "
                    f"(got {type(s).__name__})"
                )
            if s.kspace.shape != scans[0].kspace.shape:
                raise ValueError(
                    f"{where}: `scans[{i}]` has k-space {s.kspace.shape}, the first "
                    f"{scans[0].kspace.shape}; every case must share the grid and coils"
                )
            if not np.array_equal(np.asarray(s.image.affine), np.asarray(scans[0].image.affine)):
                raise ValueError(
                    f"{where}: `scans[{i}]` lies on another grid (affine) than the first scan; "
                    "every case must share the grid"
                )
        scans = [mr.reconstructed(s) for s in scans]
        image = np.stack([np.asarray(s.image.data, np.float32) for s in scans])
        lab = np.asarray(labels)
        if lab.shape != image.shape or not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(
                f"{where}: `labels` must be integers of the images' shape {image.shape} "
                f"(got {lab.dtype} {lab.shape})"
            )
        scale = np.asarray([mr_reference(a) for a in image], np.float32)
        values, interiors, boundary = label_geometry(lab, erode_px)
        means = np.asarray([image[m].mean() if m.any() else 0.0 for m in interiors], np.float64)
        signal = (np.asarray(values) != 0) & (means >= SIGNAL_FRACTION * means.max()) & (means > 0)
        if not signal.any():
            raise ValueError(f"{where}: no label carries signal; nothing to keep intensities on")
        phases = [mr.object_phase(s) for s in scans]
        residual = [
            max(
                float(mr.kspace_residual(jnp.asarray(a), s, phase=p)),
                float(mr.noise_residual(s)),
                RESIDUAL_FLOOR,
            )
            for a, s, p in zip(image, scans, phases, strict=True)
        ]
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *scans)
        return cls(
            image=jnp.asarray(image / scale[:, None, None, None]),
            labels=jnp.asarray(lab.astype(np.int32)),
            scans=stacked,
            phase=jnp.stack(phases),
            scale=jnp.asarray(scale),
            interiors=jnp.asarray(interiors),
            boundary=jnp.asarray(boundary),
            residual=jnp.asarray(residual, jnp.float32),
            signal=jnp.asarray(signal),
            spacing_mm=in_plane(scans[0].image),
            label_values=values,
        )

    # --- what the training loop asks of a modality (`medphys.neural.RefineProblem`) ---

    @staticmethod
    def tissue_mask(images: Any) -> np.ndarray:
        return mr_tissue_mask(images)

    def digest_arrays(self) -> tuple[Any, ...]:
        s = self.scans
        return (self.image, self.labels, s.kspace, s.coil_maps, s.mask, s.image.affine)

    def finish(self, volumes: Array, cases: Array, data_consistency: bool) -> Array:
        """The refined normalised volumes as the refiner hands them out: with hard data
        consistency against their cases' scans, or else made non-negative (magnitudes)."""
        from ..simulators import mr

        if not data_consistency:
            return jnp.maximum(volumes, 0.0)
        scans = jax.tree_util.tree_map(lambda a: a[cases], self.scans)

        def one(v: Array, s: Any, p: Array, c: Array) -> Array:
            return mr.data_consistency(v * c, s, phase=p) / c

        return jax.vmap(one)(volumes, scans, self.phase[cases], self.scale[cases])

    def physics_terms(self, volumes: Array, cases: Array, wanted: frozenset[str]) -> dict:
        """The MR physics terms (module docstring) named in ``wanted`` for refined volumes
        ``(batch, x, y, z)`` of the cases ``cases``."""
        from ..simulators import mr

        image = self.image[cases]
        terms = {}
        if "measurement" in wanted:
            scans = jax.tree_util.tree_map(lambda a: a[cases], self.scans)

            def one(v: Array, s: Any, p: Array, c: Array, r0: Array) -> Array:
                return jax.nn.relu(mr.kspace_residual(v * c, s, phase=p) / r0 - 1.0)

            terms["measurement"] = jnp.mean(
                jax.vmap(one)(
                    volumes, scans, self.phase[cases], self.scale[cases], self.residual[cases]
                )
            )
        if "intensity" in wanted:
            terms["intensity"] = L.relative_intensity_loss(
                volumes, image, self.interiors[:, cases], self.signal, unit=SHIFT_UNIT
            )
        if "edges" in wanted:
            terms["edges"] = L.edge_loss(volumes, image, self.boundary[cases], unit=EDGE_UNIT)
        return terms


def simulate_mr(
    key: Array,
    phantom: Any,
    protocol: Any,
    *,
    cases: int,
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> SimulatedMR:
    """Simulate ``cases`` MR scans of population draws of a phantom for refiner training.

    Each case draws a virtual patient (`medphys.phantoms.sample` from the stream ``fold_in(key,
    i)``), voxelises it and simulates the protocol's acquisition (noise, fields and coils from
    the same stream), keeping the scan and the labels.

    Args:
        key: the randomness of the whole set.
        phantom: a phantom family name or a `medphys.phantoms.Phantom`.
        protocol: a `medphys.simulators.mr.MRProtocol` (an undersampled one leaves the refiner
            the lines the scan skipped; a fully sampled one, with data consistency, none).
        cases, shape, spacing_mm, center_mm: how many cases and the grid (``voxelize``'s).
    """
    from ..simulators import mr

    if not isinstance(protocol, mr.MRProtocol):
        raise TypeError(
            f"{_WHERE}.simulate_mr: `protocol` must be a medphys.simulators.mr.MRProtocol "
            f"(got {type(protocol).__name__})"
        )
    scans, labs = [], []
    grid = {"shape": shape, "spacing_mm": spacing_mm, "center_mm": center_mm}
    for _, k, labels in drawn_cases(f"{_WHERE}.simulate_mr", key, phantom, cases, grid):
        scans.append(mr.simulate(jax.random.fold_in(k, 1), labels, protocol))
        labs.append(np.asarray(labels.labels))
    return SimulatedMR.create(scans, np.stack(labs))
