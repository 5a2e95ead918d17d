"""Image-quality metrics with exact, stated definitions (neural attenuation field benchmarks).

Published sparse-view CT results (NAF, SAX-NeRF, R²-Gaussian and their successors) report PSNR
over [0, 1]-normalised volumes without a body mask and SSIM3D with inconsistent data ranges, so
their numbers are not comparable. Every medphys metric is defined here once; a result should carry
the `Normalisation` it used (``normalisation.describe()``) and whether a mask was applied.

Definitions:

- **Normalisation** — `normalise(reference, *others, low=None, high=None, clip=False)`:
  ``x ↦ (x − low) / (high − low)`` with `low`, `high` the *reference's* minimum and maximum
  unless given (an attenuation window); the same map for every array, never taken from an
  estimate; not clipped unless ``clip=True``. Returns the mapped arrays and a frozen
  `Normalisation(low, high, source, clip)`.
- **PSNR** — `psnr(estimate, reference, *, data_range=1.0, mask=None)`:
  ``10 log₁₀(data_range² / MSE)`` dB, data range 1 (the normalised scale), MSE over every voxel
  or over the boolean `mask`; +inf when the arrays are equal. 2-D or 3-D (any shape).
- **Body mask** — `body_mask(reference, *, threshold=0.1, axis=-1)`: reference above
  ``min + 0.1 · (max − min)`` (0.1 on a [0, 1] volume, about 15-25 % of water's μ, −850 to
  −750 HU, when the maximum is bone), largest face-connected component, holes filled in 3-D and
  then in each slice along `axis`. Computed from the ground truth only.
- **SSIM** — `ssim(estimate, reference, *, data_range=1.0)`: Wang et al. (2004) on 2-D images,
  11 × 11 Gaussian window, σ = 1.5 pixels (population moments), K1 = 0.01, K2 = 0.03, data range
  1, mean over the pixels at least 5 from every border. Equal (to rounding) to scikit-image's
  ``structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1)``.
- **SSIM3D** — `ssim3d(estimate, reference, *, data_range=1.0)`: the mean over the three axes of
  the mean 2-D SSIM (as above) over the slices along that axis; slices whose reference slice is
  zero everywhere are skipped. (Not scikit-image's 3-D SSIM with an 11³ window.)
- **Projection PSNR** — `projection_psnr(estimate_projections, reference_projections, *,
  data_range=None)`: PSNR of held-out views in their own units, one MSE over all views and
  pixels, data range the reference projections' max − min unless given.
- **KID** — `kid(features_a, features_b, *, subsets=100, subset_size=None, key=None)`: the
  unbiased MMD² (Gretton et al. 2012) under the cubic polynomial kernel
  ``k(x, y) = (xᵀy / d + 1)³`` for ``d``-dimensional features (Bińkowski et al. 2018), over
  `subsets` random subsets of `subset_size` rows of each set (default ``min(1000, n, m)``,
  drawn without replacement from `key`); returns the mean and the population standard
  deviation over subsets, as torchmetrics' ``KernelInceptionDistance``. Features from any
  extractor (`medphys.neural.embed`); compare values only for one extractor and subset size.
- **Intensity Wasserstein** — `intensity_wasserstein(a, b)`: the exact 1-D Wasserstein-1
  distance ``∫₀¹ |F_a⁻¹(u) − F_b⁻¹(u)| du`` between the pooled values of two image sets (every
  pixel of every image, uniform weights), from the sorted samples; in the images' unit. Equal
  to ``scipy.stats.wasserstein_distance(a.ravel(), b.ravel())``.
- **NPS** — `nps(images, mask, *, spacing_mm, detrend_px=4.0, bins=16)`: the noise power
  spectrum ``Δx Δy / Σm · |DFT₂((x − local mean) · m)|²`` (image units² · mm²) averaged over the
  images and over annuli of |f| from 0 to Nyquist; the local mean is a normalised Gaussian
  (σ = `detrend_px` pixels) inside the mask, or the mask's mean when None (ICRU 87). Returns
  ``(frequencies in cycles/mm, spectrum)``; differentiable. `soft_tissue_mask(hu)` gives the
  −100…200 HU pixels 3 pixels away from any other (where CT noise is measured).
- **MR reference intensity** — `mr_reference(image)`: the 99th percentile of the pixels brighter
  than a tenth of the volume's largest value (magnitude images have no absolute scale; divided
  by it, 1 is about the brightest tissue); `mr_tissue_mask(images)` gives the normalised
  0.2…1.5 pixels 3 pixels away from any other (the MR counterpart of `soft_tissue_mask`).

All metrics return JAX scalars in the inputs' floating dtype (``float(...)`` for a Python number);
`psnr`, `ssim`, `ssim3d` and `projection_psnr` are jit-able (value checks then skipped).
`normalise` and `body_mask` run on the host.

Pitfall: scikit-image before 0.20 (and many copied evaluation scripts) took ``data_range = 2``
for float images when `data_range` was omitted (the span of the float dtype range [−1, 1]),
which changes C1 and C2 and inflates SSIM on [0, 1] data; newer versions raise instead. medphys
always uses an explicit data range, 1 by default. Likewise, `peak_signal_noise_ratio` on a float
image without `data_range` uses 1 only when the reference is non-negative.
"""

from ._distribution import intensity_wasserstein as intensity_wasserstein
from ._distribution import kid as kid
from ._mask import BODY_THRESHOLD as BODY_THRESHOLD
from ._mask import body_mask as body_mask
from ._mr_intensity import mr_reference as mr_reference
from ._mr_intensity import mr_tissue_mask as mr_tissue_mask
from ._normalise import Normalisation as Normalisation
from ._normalise import normalise as normalise
from ._nps import nps as nps
from ._nps import soft_tissue_mask as soft_tissue_mask
from ._psnr import projection_psnr as projection_psnr
from ._psnr import psnr as psnr
from ._ssim import ssim as ssim
from ._ssim import ssim3d as ssim3d

__all__ = [
    "BODY_THRESHOLD",
    "Normalisation",
    "body_mask",
    "intensity_wasserstein",
    "kid",
    "mr_reference",
    "mr_tissue_mask",
    "normalise",
    "nps",
    "projection_psnr",
    "psnr",
    "soft_tissue_mask",
    "ssim",
    "ssim3d",
]
