"""Audits of generated images: do they copy their training data, do they still obey the physics?

`physics_audit(simulated, refined_hu)` judges refined CT images against their scans (line
integrals, per-label HU, anatomy, mass, NPS) and `mr_physics_audit(scans, labels, refined)` refined
MR images against theirs (acquired k-space, per-label relaxation-weighted intensity, anatomy);
see their modules' docstrings for the definitions and thresholds.

Generative models trained on patient images can reproduce them (latent diffusion on CT
memorised up to 41.7 % of its training data, Dar et al. 2023-24). `memorisation_audit(key,
training, generated, held_out, *, features=None)` measures this with nearest-neighbour,
distance-to-closest-record and membership-inference statistics, checks itself with a positive and
a negative control in every run, and returns a `MemorisationReport` (``.passed``, ``.valid``,
``.describe()``, ``.to_dict()``).

Definitions (one *space* is pixels, always, and the ``features`` callable's output when given):

- **Distances**: Euclidean, between images standardised by the training set's mean and standard
  deviation (one number each, over all pixels); in the feature space, between features
  standardised by the training features' mean and standard deviation. Computed in JAX in blocks
  of ``block`` × ``block`` rows (no ``n · m · pixels`` array); the two nearest candidates'
  distances are recomputed from the differences, so an exact copy has distance 0.
- **Held-out split**: the held-out images are split at random (from ``key``) into two halves:
  the *negative control* (``⌊h/2⌋`` images audited as if generated) and the *reference* (the
  rest: the DCR reference and the membership non-members).
- **NNDR**: for each generated image, ``d₁ / d₂``, its distances to the nearest and second
  nearest training image (0 when ``d₁ = 0``). *Flagged* (memorised) when ``d₁/d₂ < 1/3``.
- **Extraction** (the ℓ2 ratio rule of Yoon et al. 2023 and Gu et al. 2023): a flagged
  generated image extracts its nearest training image; the report counts the *distinct*
  training images extracted (Carlini et al. 2023 count extracted records, not generations).
- **DCR**: a generated image's distance to the closest training image (``d₁``), against the
  reference images' DCRs: the medians of both, and the count of generated images with a DCR
  below the reference's 5th percentile, defined as its ``k``-th smallest DCR,
  ``k = ⌈0.05 · n_reference⌉`` (expected fraction ``k / (n_reference + 1)`` ≈ 5 % for a
  generator that does not copy).
- **Membership inference**: members are ``n_mia = min(n_reference, n_training)`` training
  images drawn at random, non-members the first ``n_mia`` reference images (balanced); the score
  of an image is minus its distance to the nearest generated image. ROC AUC is the Mann-Whitney
  statistic ``P(s_member > s_non) + ½ P(=)``; TPR at 1 % FPR is the highest TPR of a rule
  ``score ≥ t`` whose FPR is ≤ 1 % (no interpolation between operating points). With fewer than
  100 non-members that is the TPR at zero false positives: it is reported, never judged.

Pass/fail criteria (defaults, all keywords of `memorisation_audit`):

- **NNDR**: the fraction flagged ≤ ``max_flagged_fraction`` = 1 % (below 100 generated images:
  none flagged), *or* not significantly above the flag rate of the held-out reference half
  against the training set: a one-sided Fisher exact test of the two counts, p ≥ ``nndr_alpha``
  = 0.01. Real images have close neighbours of their own (unseen 16 px tiles of one head CT
  slice: 3-7 % flagged), and that rate, not zero, is what a generator that does not copy shows.
  Whatever the rates, one *near-exact copy* (d₁/d₂ < 1/30, a tenth of the flag threshold; an
  exact copy has 0) fails the criterion.
- **DCR**: the count below the reference 5th percentile ≤ the largest count ``c`` with
  ``P(X ≥ c) ≥ dcr_alpha = 0.01`` for ``X ~ BetaBinomial(n_generated, k, n_reference + 1 − k)``,
  the exact null distribution of that count when generated and reference images come from one
  continuous distribution.
- **MIA**: ``|AUC − 0.5| ≤ max(auc_tolerance = 0.1, z · σ₀)``, ``σ₀ = √((m + n + 1) / (12 m n))``
  the null AUC's standard deviation for ``m`` members and ``n`` non-members and ``z`` = 2.576
  (two-sided ``auc_alpha`` = 1 %): the literature's 0.5 ± 0.1, widened when the sets are too
  small for it (± 0.149 at 50 + 50, ± 0.235 at 20 + 20).

A space's audit passes when all three pass. **Controls**, in every run and every space:

- *positive control*: ``len(generated)`` training images drawn at random, each plus Gaussian
  noise of ``control_noise`` = 0.02 training standard deviations, and each shifted by one pixel
  along a random axis with probability ½ (edge pixels repeated). It must fail.
- *negative control*: the held-out half, audited as if generated. It must pass.

If a control does not behave in some space, the audit is **not valid** (``report.valid`` is
False, ``report.passed`` is False, ``describe()`` says why). Minimum sizes (a `ValueError`
before any work otherwise): 20 training images, 20 generated images, 40 held-out images (two
halves of 20); 200 held-out images and 100 training images for ≥ 100 balanced members and
non-members (a meaningful TPR at 1 % FPR). Images: ``(n, H, W)`` or ``(n, H, W, D)``, one shape
for all sets, finite values.

References:
    Dar, Kucuk, Hamdan, et al., "Investigating data memorization in 3D latent diffusion models
    for medical image synthesis", DGM4MICCAI 2023; "Unconditional latent diffusion models
    memorize patient imaging data", 2024.
    Yoon et al., "Diffusion probabilistic models generalize when they fail to memorize", 2023;
    Gu et al., "On memorization in diffusion models", 2023 (the d₁/d₂ < 1/3 rule).
    Carlini et al., "Extracting training data from diffusion models", USENIX Security 2023.
    Yale et al., "Generation and evaluation of privacy preserving synthetic health data",
    Neurocomputing 2020 (DCR against a held-out set).
    Carlini et al., "Membership inference attacks from first principles", IEEE S&P 2022.
    Mann, Whitney, Ann. Math. Statist. 18, 1947 (the AUC's null variance).
"""

from ._criterion import Criterion as Criterion
from ._memorisation import MemorisationReport as MemorisationReport
from ._memorisation import SpaceResult as SpaceResult
from ._memorisation import memorisation_audit as memorisation_audit
from ._physics import PhysicsReport as PhysicsReport
from ._physics import physics_audit as physics_audit
from ._physics_mr import MRPhysicsReport as MRPhysicsReport
from ._physics_mr import mr_physics_audit as mr_physics_audit

__all__ = [
    "Criterion",
    "MemorisationReport",
    "SpaceResult",
    "memorisation_audit",
]
