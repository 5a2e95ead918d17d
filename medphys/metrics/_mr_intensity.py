"""The reference intensity of an MR magnitude volume and the tissue mask of normalised MR images:
how MR images without an absolute scale are put on one scale (refiners, audits, NPS).

Magnitude images have no absolute scale (scanner gain, coil loading, the file's own rescale).
`mr_reference` is the 99th percentile of the pixels brighter than a tenth of the volume's largest
value, so that 1 is about the brightest tissue once a volume is divided by it; it needs no label
map, so simulated, real and refined images are normalised by one rule. `mr_tissue_mask` is the
MR counterpart of `soft_tissue_mask`: normalised intensities in [0.2, 1.5] whose whole 7 × 7
neighbourhood is too (tissue away from edges and background, where noise texture is measured).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._nps import soft_tissue_mask

REFERENCE_PERCENTILE = 99.0
REFERENCE_FLOOR = 0.1  # pixels above this fraction of the maximum set the reference
TISSUE_BAND = (0.2, 1.5)
TISSUE_ERODE_PX = 3


def mr_reference(image: Any) -> float:
    """The reference intensity of a magnitude volume (module docstring).

    Raises:
        ValueError: a volume with no positive finite value.
    """
    a = np.asarray(getattr(image, "data", image), np.float64)
    a = a[np.isfinite(a)]
    top = float(a.max()) if a.size else 0.0
    if not top > 0:
        raise ValueError(
            f"medphys.metrics.mr_reference: the image has no positive value to normalise by "
            f"(largest {top!r})"
        )
    return float(np.percentile(a[a > REFERENCE_FLOOR * top], REFERENCE_PERCENTILE))


def mr_tissue_mask(images: Any) -> np.ndarray:
    """Pixels of normalised MR images ``(*batch, n, m)`` within [0.2, 1.5] whose whole 7 × 7
    neighbourhood is too (host, NumPy)."""
    lo, hi = TISSUE_BAND
    return soft_tissue_mask(images, low_hu=lo, high_hu=hi, erode_px=TISSUE_ERODE_PX)
