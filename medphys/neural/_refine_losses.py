"""Loss terms of the sim-to-real refiner, one named function each (the networks live in
`medphys.neural._refiner`; the physics here calls the public medphys operators).

Realism:

- `lsgan_discriminator` / `lsgan_generator`: least-squares GAN (Mao et al. 2017), targets 1 for
  real and 0 for refined: ``½ E[(D(real) − 1)²] + ½ E[D(fake)²]`` and ``½ E[(D(fake) − 1)²]``.
- `patch_nce`: CUT's contrastive loss (Park et al. 2020): at ``patches`` random positions of every
  encoder level, the refined image's feature must pick its own input's feature at the same
  position among the other positions' (InfoNCE, temperature τ = 0.07).
- `self_regularisation`: SimGAN's ``E|refined − simulated|`` (Shrivastava et al. 2017), per
  100 HU.

Physics (CT, HU images; the refined image is judged by the measurements that produced its input):

- `measurement_residual`: mean square of ``A μ(HU) − p`` over all rays, with ``μ = μ_water (1 +
  HU/1000)`` (1/mm), ``A`` the medphys projector on the image's grid and ``p`` the scan's
  linearised line integrals (`medphys.simulators.ct.Reconstructor.line_integrals`);
- `measurement_loss`: ``max(0, residual(refined) / residual(simulated) − 1)``: free inside the
  simulator's own residual (the noise the FBP image leaves unexplained), linear above it;
- `intensity_shift` / `intensity_loss`: per-label mean HU change inside each label's interior
  (eroded masks), and the mean of its square per (10 HU)² over labels present;
- `edge_loss`: ``E|∇(refined − simulated)|`` over label-boundary pixels, per 100 HU;
- `relative_intensity_loss`: the MR counterpart of `intensity_loss`, each label's mean change
  relative to its simulated mean (`medphys.neural._refine_data_mr`);
- `texture_loss`: mean squared difference of log₁₀ NPS (`medphys.metrics.nps`, same bins,
  spacing and detrending) between the refined images' soft tissue and a target spectrum (real
  images'), over bins where both are defined.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..metrics import nps

HU_SHIFT_UNIT = 10.0  # intensity_loss is in (10 HU)²
HU_EDGE_UNIT = 100.0
HU_SELF_UNIT = 100.0


def lsgan_discriminator(real_scores: Array, fake_scores: Array) -> Array:
    """``½ E[(D(real) − 1)²] + ½ E[D(fake)²]``."""
    return 0.5 * jnp.mean((real_scores - 1.0) ** 2) + 0.5 * jnp.mean(fake_scores**2)


def lsgan_generator(fake_scores: Array) -> Array:
    """``½ E[(D(fake) − 1)²]``."""
    return 0.5 * jnp.mean((fake_scores - 1.0) ** 2)


def self_regularisation(refined: Array, simulated: Array, *, unit: float = HU_SELF_UNIT) -> Array:
    """``E|refined − simulated|`` per ``unit`` (100 HU for CT)."""
    return jnp.mean(jnp.abs(refined - simulated)) / unit


def patch_nce(
    heads: Any,
    source: list[Array],
    refined: list[Array],
    key: Array,
    *,
    patches: int = 64,
    temperature: float = 0.07,
) -> Array:
    """CUT's PatchNCE loss averaged over encoder levels (module docstring).

    Args:
        heads: `PatchHeads` (``heads(level, features) → unit vectors``).
        source, refined: the encoder's feature maps of the input and of the refined image,
            ``(batch, *spatial, channels)`` per level.
        key: draws the positions (the same for input and output).
    """
    total = jnp.zeros((), jnp.float32)
    for level, (fs, fr) in enumerate(zip(source, refined, strict=True)):
        b, c = fs.shape[0], fs.shape[-1]
        fs = fs.reshape(b, -1, c)
        fr = fr.reshape(b, -1, c)
        n = min(patches, fs.shape[1])
        idx = jax.random.permutation(jax.random.fold_in(key, level), fs.shape[1])[:n]
        k = heads(level, fs[:, idx])
        q = heads(level, fr[:, idx])
        logits = jnp.einsum("bnc,bmc->bnm", q, k) / temperature
        labels = jnp.broadcast_to(jnp.arange(n), (b, n))
        total = total + jnp.mean(
            -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[..., None], -1)
        )
    return total / len(source)


def hu_to_mu(hu: Array, mu_water_per_mm: float) -> Array:
    """Linear attenuation (1/mm) of a CT image in HU, on the calibration's water scale."""
    return mu_water_per_mm * (1.0 + hu / 1000.0)


def measurement_residual(
    hu: Float[Array, "x y z"],
    projections: Float[Array, "views u v"],
    projector: Any,
    mu_water_per_mm: float,
) -> Array:
    """Mean square of ``A μ(hu) − projections`` over all rays (module docstring)."""
    predicted = projector.project(hu_to_mu(hu, mu_water_per_mm).astype(projections.dtype))
    return jnp.mean((predicted - projections) ** 2)


def measurement_loss(
    refined: Float[Array, "x y z"],
    projections: Float[Array, "views u v"],
    projector: Any,
    mu_water_per_mm: float,
    reference: Array,
) -> Array:
    """``max(0, residual(refined) / reference − 1)``, ``reference`` the simulated image's."""
    r = measurement_residual(refined, projections, projector, mu_water_per_mm)
    return jax.nn.relu(r / reference - 1.0)


def intensity_shift(
    refined: Float[Array, "*batch x y"],
    simulated: Float[Array, "*batch x y"],
    interiors: Array,
) -> tuple[Array, Array]:
    """Per-label mean HU change inside each label's interior.

    Args:
        interiors: ``(labels, *batch, x, y)`` boolean masks (eroded label maps).

    Returns:
        ``(shift, present)``: ``(labels,)`` mean(refined − simulated) in HU (0 where a label
        has no interior pixel) and whether it has one.
    """
    m = interiors.astype(refined.dtype)
    count = jnp.sum(m, axis=tuple(range(1, m.ndim)))
    diff = jnp.sum(m * (refined - simulated)[None], axis=tuple(range(1, m.ndim)))
    present = count > 0
    return jnp.where(present, diff / jnp.maximum(count, 1.0), 0.0), present


def intensity_loss(refined: Array, simulated: Array, interiors: Array) -> Array:
    """Mean over labels present of (per-label mean HU shift / 10 HU)²."""
    shift, present = intensity_shift(refined, simulated, interiors)
    n = jnp.maximum(jnp.sum(present), 1)
    return jnp.sum(jnp.where(present, (shift / HU_SHIFT_UNIT) ** 2, 0.0)) / n


def relative_intensity_loss(
    refined: Array, simulated: Array, interiors: Array, judged: Array, *, unit: float
) -> Array:
    """Mean over the ``judged`` labels present of (relative per-label mean change / ``unit``)²:
    the per-label mean of ``refined − simulated`` over the label's simulated mean inside its
    interior (MR magnitude: the relaxation-weighted signal of each tissue).

    Args:
        interiors: ``(labels, *batch, x, y)`` boolean masks (eroded label maps).
        judged: ``(labels,)`` the labels the term averages over (signal-bearing ones).
    """
    shift, present = intensity_shift(refined, simulated, interiors)
    level, _ = intensity_shift(simulated, jnp.zeros_like(simulated), interiors)
    use = present & judged & (level > 0)
    relative = shift / jnp.where(use, level, 1.0)
    n = jnp.maximum(jnp.sum(use), 1)
    return jnp.sum(jnp.where(use, (relative / unit) ** 2, 0.0)) / n


def _gradients(x: Array) -> tuple[Array, Array]:
    gx = jnp.diff(x, axis=-2, append=x[..., -1:, :])
    gy = jnp.diff(x, axis=-1, append=x[..., :, -1:])
    return gx, gy


def edge_loss(
    refined: Array, simulated: Array, boundary: Array, *, unit: float = HU_EDGE_UNIT
) -> Array:
    """``E|∇(refined − simulated)|`` (forward differences) over boundary pixels, per ``unit``
    (100 HU for CT)."""
    gx, gy = _gradients(refined - simulated)
    m = boundary.astype(refined.dtype)
    return jnp.sum(m * (jnp.abs(gx) + jnp.abs(gy))) / jnp.maximum(jnp.sum(m), 1.0) / unit


def texture_loss(
    refined: Float[Array, "batch x y"],
    mask: Array,
    target_log_nps: Array,
    *,
    spacing_mm: tuple[float, float],
    detrend_px: float,
) -> Array:
    """Mean squared log₁₀-NPS difference to the target over bins where both are defined."""
    _, spectrum = nps(
        refined, mask, spacing_mm=spacing_mm, detrend_px=detrend_px, bins=target_log_nps.shape[0]
    )
    ok = jnp.isfinite(spectrum) & jnp.isfinite(target_log_nps) & (spectrum > 0)
    log = jnp.log10(jnp.where(ok, spectrum, 1.0))
    diff = jnp.where(ok, log - jnp.where(ok, target_log_nps, 0.0), 0.0)
    return jnp.sum(diff**2) / jnp.maximum(jnp.sum(ok), 1)
