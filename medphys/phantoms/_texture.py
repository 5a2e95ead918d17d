"""Statistical organ texture: random fields that modulate a structure's density inside its mask.

Organs painted from one material are uniform, which makes lesion detection unrealistically easy.
A texture gives each structure a stationary random field ``t(r)`` (zero mean, unit standard
deviation) and a relative amplitude ``a``; the structure's density (CT) and proton density (MR)
become ``rho(r) = rho_0 (1 + a t(r))`` inside its mask (`texture_modulation`).

Two kinds of field, each described by a static, hashable spec:

- `PowerLawTexture`: a Gaussian random field with power spectrum ``P(f) ∝ |f|^(-beta)``
  (``f`` in cycles/mm from the grid spacing), made by filtering white Gaussian noise with
  ``|f|^(-beta/2)`` in the Fourier domain (periodic on the grid), DC removed, then normalised to
  zero mean and unit standard deviation over the grid. ``beta = 0`` is white noise; mammographic
  parenchyma has ``beta ≈ 3`` (Burgess et al. 2001).
- `LumpyTexture`: the lumpy background of Rolland & Barrett (1992): a Poisson number of Gaussian
  lumps ``a exp(-|r - c|² / 2σ²)`` at uniform random centres. `lumpy_background` returns the raw
  field (lump amplitude ``a``); `sample_texture` standardises it with its exact ensemble mean and
  standard deviation, so every kind enters `texture_modulation` on the same footing.

Both are pure functions of a ``jax.random`` key (first argument) and work under ``jax.jit`` for a
fixed shape and spec. Fields are periodic on the grid (FFT convolution): a lump leaving one face
re-enters on the opposite one, which keeps the field stationary over the whole grid.

References:
    Rolland JP, Barrett HH. Effect of random background inhomogeneity on observer detection
    performance. J Opt Soc Am A 9(5):649-658 (1992).
    Bochud FO, Abbey CK, Eckstein MP. Statistical texture synthesized from experimental data.
    Proc SPIE 3663 (1999) (clustered lumpy backgrounds).
    Burgess AE, Jacobson FL, Judy PF. Human observer detection experiments with mammograms and
    power-law noise. Med Phys 28(4):419-437 (2001).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import FieldError, number

__all__ = [
    "MAX_AMPLITUDE",
    "MAX_BETA",
    "LumpyTexture",
    "PowerLawTexture",
    "Texture",
    "lumpy_background",
    "power_law_field",
    "sample_texture",
    "structure_key",
    "texture_modulation",
]

#: largest relative standard deviation of a texture's density modulation
MAX_AMPLITUDE = 0.3
#: largest power-law exponent (steeper fields are dominated by the grid's lowest frequency)
MAX_BETA = 4.0


def _check_amplitude(where: str, amplitude: Any) -> float:
    a = number(where, "amplitude", amplitude)
    if not 0.0 <= a <= MAX_AMPLITUDE:
        raise FieldError(
            where, "amplitude", f"`amplitude` must be in [0, {MAX_AMPLITUDE:g}] (got {a})"
        )
    return a


@dataclasses.dataclass(frozen=True)
class PowerLawTexture:
    """Power-law Gaussian random field texture, ``P(f) ∝ |f|^(-beta)``.

    Attributes:
        beta: spectral exponent in [0, 4] (0: white noise; 3: mammographic parenchyma).
        amplitude: relative standard deviation of the density modulation, in [0, 0.3].
        source: where the values come from (free text).
    """

    beta: float
    amplitude: float
    source: str = ""

    kind = "power_law"

    @classmethod
    def create(cls, *, beta: float, amplitude: float, source: str = "") -> PowerLawTexture:
        """Validated constructor.

        Raises:
            ValueError: ``beta`` outside [0, 4] or ``amplitude`` outside [0, 0.3].
            TypeError: a value that is not a real number.

        Example:
            >>> PowerLawTexture.create(beta=3.0, amplitude=0.02).beta
            3.0
        """
        where = "medphys.phantoms.PowerLawTexture.create"
        b = number(where, "beta", beta)
        if not 0.0 <= b <= MAX_BETA:
            raise FieldError(where, "beta", f"`beta` must be in [0, {MAX_BETA:g}] (got {b})")
        return cls(b, _check_amplitude(where, amplitude), str(source))


@dataclasses.dataclass(frozen=True)
class LumpyTexture:
    """Lumpy-background texture (Rolland & Barrett 1992): Poisson-distributed Gaussian lumps.

    Attributes:
        lump_sigma_mm: standard deviation of each Gaussian lump (mm), > 0.
        lumps_per_cm3: mean number of lump centres per cm³ (per cm² for a 2-D grid), > 0.
        amplitude: relative standard deviation of the density modulation, in [0, 0.3].
        source: where the values come from (free text).
    """

    lump_sigma_mm: float
    lumps_per_cm3: float
    amplitude: float
    source: str = ""

    kind = "lumpy"

    @classmethod
    def create(
        cls, *, lump_sigma_mm: float, lumps_per_cm3: float, amplitude: float, source: str = ""
    ) -> LumpyTexture:
        """Validated constructor.

        Raises:
            ValueError: a non-positive size or density, ``amplitude`` outside [0, 0.3].
            TypeError: a value that is not a real number.
        """
        where = "medphys.phantoms.LumpyTexture.create"
        out = {}
        for name, value in (("lump_sigma_mm", lump_sigma_mm), ("lumps_per_cm3", lumps_per_cm3)):
            v = number(where, name, value)
            if not (math.isfinite(v) and v > 0.0):
                raise FieldError(where, name, f"`{name}` must be positive (got {v})")
            out[name] = v
        amp = _check_amplitude(where, amplitude)
        return cls(out["lump_sigma_mm"], out["lumps_per_cm3"], amp, str(source))


Texture = PowerLawTexture | LumpyTexture


def _spacing(shape: Sequence[int], spacing_mm: float | Sequence[float]) -> tuple[float, ...]:
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (len(shape),))
    return tuple(float(s) for s in spacing)


def _frequency_magnitude(shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """``|f|`` (cycles/mm) on the ``rfftn`` grid of ``shape``."""
    axes = [np.fft.fftfreq(n, d) for n, d in zip(shape[:-1], spacing[:-1], strict=True)]
    axes.append(np.fft.rfftfreq(shape[-1], spacing[-1]))
    grids = np.meshgrid(*axes, indexing="ij")
    return np.sqrt(sum(g * g for g in grids))


def power_law_field(
    key: Array,
    shape: Sequence[int],
    spacing_mm: float | Sequence[float],
    beta: float | Array,
    *,
    dtype: Any = jnp.float32,
) -> Float[Array, "..."]:
    """A power-law Gaussian random field: ``P(f) ∝ |f|^(-beta)``, zero mean, unit std.

    White Gaussian noise is filtered with ``|f|^(-beta/2)`` (``f`` in cycles/mm from the grid
    spacing, so anisotropic voxels give an isotropic field in millimetres); the DC term is set to
    zero, and the result is normalised to zero mean and unit standard deviation over the grid.
    The field is periodic on the grid.

    Args:
        key: a ``jax.random`` key.
        shape: grid shape, any number of axes (2-D or 3-D in practice).
        spacing_mm: voxel size (mm), one value or one per axis.
        beta: spectral exponent (``P(f) ∝ f^(-beta)``); may be traced.
        dtype: floating dtype of the result.

    Returns:
        The field, ``shape``, ``dtype``.

    Example:
        >>> t = power_law_field(jax.random.key(0), (32, 32, 8), 2.0, 3.0)
        >>> round(float(t.std()), 3)
        1.0
    """
    shape = tuple(int(n) for n in shape)
    spacing = _spacing(shape, spacing_mm)
    f = jnp.asarray(_frequency_magnitude(shape, spacing), dtype=dtype)
    positive = f > 0
    f_safe = jnp.where(positive, f, 1.0)
    gain = jnp.where(positive, f_safe ** (-0.5 * jnp.asarray(beta, dtype)), 0.0)
    noise = jax.random.normal(key, shape, dtype)
    axes = tuple(range(len(shape)))
    field = jnp.fft.irfftn(jnp.fft.rfftn(noise, axes=axes) * gain, s=shape, axes=axes)
    field = field.astype(dtype)
    field = field - jnp.mean(field)
    std = jnp.sqrt(jnp.mean(field * field))
    return field / jnp.where(std > 0, std, 1.0)


def _lump_kernel(shape: tuple[int, ...], spacing: tuple[float, ...], sigma_mm: float) -> np.ndarray:
    """Unit-height Gaussian ``exp(-|r|²/2σ²)`` at the periodic (wrapped) lattice offsets."""
    axes = []
    for n, d in zip(shape, spacing, strict=True):
        i = np.arange(n)
        r = np.minimum(i, n - i) * d
        axes.append(np.exp(-(r * r) / (2.0 * sigma_mm * sigma_mm)))
    kernel = axes[0]
    for a in axes[1:]:
        kernel = np.multiply.outer(kernel, a)
    return kernel


def _lumpy_moments(
    shape: tuple[int, ...], spacing: tuple[float, ...], sigma_mm: float, lumps_per_cm3: float
) -> tuple[float, float, float]:
    """(mean count per voxel, exact ensemble mean, exact ensemble std) of a unit-lump field."""
    voxel_cm3 = float(np.prod(spacing)) / 10.0 ** len(shape)
    per_voxel = lumps_per_cm3 * voxel_cm3
    kernel = _lump_kernel(shape, spacing, sigma_mm)
    mean = per_voxel * float(kernel.sum())
    std = math.sqrt(per_voxel * float((kernel * kernel).sum()))
    return per_voxel, mean, std


def lumpy_background(
    key: Array,
    shape: Sequence[int],
    spacing_mm: float | Sequence[float],
    *,
    lump_sigma_mm: float,
    lumps_per_cm3: float,
    lump_amplitude: float = 1.0,
    dtype: Any = jnp.float32,
) -> Float[Array, "..."]:
    """The lumpy background of Rolland & Barrett (1992): ``b(r) = sum_n a exp(-|r - c_n|²/2σ²)``.

    The number of lumps is Poisson with mean ``lumps_per_cm3 × grid volume``, the centres are
    uniform over the (periodic) grid. Centres are drawn on the voxel lattice: each voxel receives
    a Poisson count with mean ``lumps_per_cm3 × voxel volume`` (the total is then Poisson with the
    right mean and, given it, the centres are uniform over the voxels), and the counts are
    convolved with the lump by FFT. The lumps are exact when ``σ`` is at least a voxel; the
    ensemble mean is ``N̄ a (2πσ²)^(d/2) / V`` and the variance ``(N̄/V) a² (πσ²)^(d/2)``
    (Campbell's theorem), up to lattice sampling.

    Args:
        key: a ``jax.random`` key.
        shape: grid shape (2-D or 3-D).
        spacing_mm: voxel size (mm), one value or one per axis.
        lump_sigma_mm: lump standard deviation (mm).
        lumps_per_cm3: mean number of lumps per cm³ (per cm² on a 2-D grid).
        lump_amplitude: height ``a`` of each lump.
        dtype: floating dtype of the result.

    Returns:
        The field, ``shape``, ``dtype``.

    References:
        Rolland JP, Barrett HH. J Opt Soc Am A 9(5):649-658 (1992).
    """
    shape = tuple(int(n) for n in shape)
    spacing = _spacing(shape, spacing_mm)
    per_voxel, _, _ = _lumpy_moments(shape, spacing, lump_sigma_mm, lumps_per_cm3)
    counts = jax.random.poisson(key, per_voxel, shape).astype(dtype)
    axes = tuple(range(len(shape)))
    kernel = jnp.fft.rfftn(jnp.asarray(_lump_kernel(shape, spacing, lump_sigma_mm), dtype))
    field = jnp.fft.irfftn(jnp.fft.rfftn(counts, axes=axes) * kernel, s=shape, axes=axes)
    return (lump_amplitude * field).astype(dtype)


def sample_texture(
    key: Array,
    spec: Texture,
    shape: Sequence[int],
    spacing_mm: float | Sequence[float],
    *,
    dtype: Any = jnp.float32,
) -> Float[Array, "..."]:
    """One realisation of a texture's standardised field ``t(r)`` (zero mean, unit std).

    A `PowerLawTexture` gives `power_law_field` (normalised over the grid); a `LumpyTexture`
    gives `lumpy_background` standardised with its exact ensemble mean and standard deviation
    (so a realisation's own mean and std fluctuate about 0 and 1, as lump counts do). The
    amplitude is not applied here (see `texture_modulation`).

    Args:
        key: a ``jax.random`` key.
        spec: a `PowerLawTexture` or `LumpyTexture`.
        shape: grid shape (static).
        spacing_mm: voxel size (mm).
        dtype: floating dtype (float32 by default).

    Returns:
        The field, ``shape``, ``dtype``. Works under ``jax.jit`` with ``spec`` and ``shape`` static.

    Raises:
        TypeError: ``spec`` is not a texture spec.
    """
    if isinstance(spec, PowerLawTexture):
        return power_law_field(key, shape, spacing_mm, spec.beta, dtype=dtype)
    if isinstance(spec, LumpyTexture):
        shape = tuple(int(n) for n in shape)
        spacing = _spacing(shape, spacing_mm)
        _, mean, std = _lumpy_moments(shape, spacing, spec.lump_sigma_mm, spec.lumps_per_cm3)
        raw = lumpy_background(
            key,
            shape,
            spacing,
            lump_sigma_mm=spec.lump_sigma_mm,
            lumps_per_cm3=spec.lumps_per_cm3,
            dtype=dtype,
        )
        return ((raw - mean) / std).astype(dtype)
    raise TypeError(
        "medphys.phantoms.sample_texture: `spec` must be a PowerLawTexture or LumpyTexture "
        f"(got {type(spec).__name__})"
    )


def structure_key(key: Array, name: str) -> Array:
    """The key of structure ``name``'s texture: ``fold_in(key, crc32(name) & 0x7FFFFFFF)``.

    A fixed hash of the name (not its position), so adding or reordering structures changes no
    other structure's texture.
    """
    return jax.random.fold_in(key, zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF)


def texture_modulation(key: Array, phantom: Any, labels: Any, *, dtype: Any = jnp.float32) -> Any:
    """Relative density modulation of a voxelized phantom: ``1 + a t(r)`` in each textured mask.

    Every structure of ``phantom`` with a ``texture`` gets its own field, drawn from
    `structure_key` ``(key, name)``; inside the voxels that ``labels`` assigns to it the result is
    ``1 + amplitude × field``, elsewhere 1 (structures without texture, air). The result is
    clipped below at 0 (a density is never negative; with amplitude <= 0.3 this touches only
    draws beyond 3.3 standard deviations). Boundary voxels take the value of their majority
    label. Give it to the simulators with ``labels.with_density_scale(result.data)``: CT
    attenuation and MR proton density are multiplied by it.

    Args:
        key: a ``jax.random`` key (e.g. the case's ``"texture"`` stream).
        phantom: the `Phantom` whose structure records carry the textures.
        labels: its `medphys.LabeledVolume` (from `voxelize`); structures are matched by name.
        dtype: floating dtype of the result.

    Returns:
        `medphys.Volume` of the modulation on the labels' grid (ones if no structure is textured).
    """
    from ..volume import Volume  # late import: the module is shared with config validation

    shape = labels.shape
    spacing = tuple(float(s) for s in labels.spacing_mm)
    present = set(labels.names)
    out = jnp.ones(shape, dtype)
    label_array = jnp.asarray(labels.labels)
    for s in phantom.structures:
        spec = getattr(s, "texture", None)
        if spec is None or s.name not in present or spec.amplitude == 0.0:
            continue
        field = sample_texture(structure_key(key, s.name), spec, shape, spacing, dtype=dtype)
        inside = label_array == labels.structure(s.name).label
        out = jnp.where(inside, 1.0 + jnp.asarray(spec.amplitude, dtype) * field, out)
    out = jnp.maximum(out, 0.0).astype(dtype)
    return Volume(data=out, affine=labels.affine)
