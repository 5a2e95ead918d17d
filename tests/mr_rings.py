"""A small MR test object shared by the MR data-consistency and MR audit tests."""

from __future__ import annotations

import numpy as np

from medphys.volume import LabeledVolume, Structure

MATERIALS = ("air", "adipose", "muscle", "brain_white_matter", "csf")


def rings(shape: tuple[int, int, int]) -> LabeledVolume:
    """Concentric ellipses (air, fat, muscle, white matter, CSF core), 4 × 4 × 5 mm voxels."""
    x, y = np.meshgrid(*((np.arange(n) - (n - 1) / 2) for n in shape[:2]), indexing="ij")
    r = np.sqrt((x / (0.42 * shape[0])) ** 2 + (y / (0.36 * shape[1])) ** 2)
    plane = np.select([r < 0.3, r < 0.75, r < 0.88, r < 1.0], [4, 3, 2, 1], 0).astype(np.int32)
    labels = np.repeat(plane[:, :, None], shape[2], axis=2)
    rows = [Structure(i, f"s_{m}", m) for i, m in enumerate(MATERIALS)]
    return LabeledVolume.create(labels, rows, spacing_mm=(4.0, 4.0, 5.0))
