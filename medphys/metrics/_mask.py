"""Body mask from the ground truth: threshold, largest connected component, holes filled."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import scipy.ndimage as ndi
from jaxtyping import Array, Bool, Float

from . import _checks as chk

BODY_THRESHOLD = 0.1


def body_mask(
    reference: Float[Array, "*shape"],
    *,
    threshold: float = BODY_THRESHOLD,
    axis: int = -1,
) -> Bool[Array, "*shape"]:
    """The body (patient) in a 2-D or 3-D ground truth, for metrics that ignore the air around it.

    Definition, in this order:

    1. ``reference > min + threshold · (max − min)`` with min, max the reference's own extremes:
       for a [0, 1]-normalised attenuation volume, ``reference > 0.1`` by default;
    2. the largest connected component (face connectivity: 4 in 2-D, 6 in 3-D), which drops the
       couch, detector-edge rings and isolated noise;
    3. holes filled (`scipy.ndimage.binary_fill_holes`) in the whole array, then, for 3-D arrays,
       in every 2-D slice along `axis` (axial slices by default in medphys's RAS ``x y z``
       layout), so that lungs, bowel gas and sinuses that reach the air through the airway in 3-D
       still count as body.

    Why 0.1 of the range: with air at 0 and the maximum at dense bone (μ ≈ 1.5-2.5 × water),
    water sits near 0.4-0.65 and the default cuts at 15-25 % of water's μ (about −850 to −750 HU):
    above air and the noise of a reconstructed background, below fat (≈ −100 HU) and all soft
    tissue. Lung parenchyma (−900 to −500 HU) may fall partly below it; step 3 puts it back.
    Metal or contrast that sets the maximum far above bone pushes the cut up: lower `threshold`
    (or normalise with a fixed window) for such cases.

    Runs on the host with SciPy (not jit-able); compute it once per reference, never from the
    estimate.

    Args:
        reference: 2-D or 3-D ground truth, any units (its own range sets the cut).
        threshold: the cut as a fraction of the reference's range, in (0, 1) (default 0.1).
        axis: the slice axis of the 2-D hole filling in 3-D (default -1).

    Returns:
        a boolean JAX array of the reference's shape, True inside the body.

    Raises:
        ValueError: not 2-D or 3-D, non-finite values, a constant reference, `threshold` outside
            (0, 1), `axis` out of range.
    """
    call = "body_mask"
    ref = np.asarray(chk.image(call, "reference", reference, ndims=(2, 3)))
    t = float(threshold)
    if not (math.isfinite(t) and 0.0 < t < 1.0):
        raise ValueError(
            f"{chk.where(call)}: `threshold` must lie strictly between 0 and 1 (got {t}); it is "
            "a fraction of the reference's range (max − min)"
        )
    if (
        isinstance(axis, bool)
        or not isinstance(axis, (int, np.integer))
        or not (-ref.ndim <= axis < ref.ndim)
    ):
        raise ValueError(
            f"{chk.where(call)}: `axis` must be an integer in [-{ref.ndim}, {ref.ndim - 1}] "
            f"(got {axis!r})"
        )
    lo, hi = float(ref.min()), float(ref.max())
    if not hi > lo:
        raise ValueError(
            f"{chk.where(call)}: `reference` is constant ({lo:.6g}), so it holds no body to mask"
        )
    above = ref > lo + t * (hi - lo)
    labels, n = ndi.label(above)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    body = ndi.binary_fill_holes(labels == int(np.argmax(sizes)))
    if ref.ndim == 3:
        body = np.moveaxis(body, axis, 0).copy()
        for i in range(body.shape[0]):
            body[i] = ndi.binary_fill_holes(body[i])
        body = np.moveaxis(body, 0, axis)
    return jnp.asarray(body)
