"""Statistical organ texture: random fields that modulate a structure's density inside its mask.

Organs painted from one material are uniform, which makes lesion detection unrealistically easy.
A texture gives each structure a stationary random field ``t(r)`` (zero mean, unit standard
deviation) and a relative amplitude ``a``; the structure's density (CT) and proton density (MR)
become ``rho(r) = rho_0 (1 + a t(r))`` inside its mask (`texture_modulation`). Optionally the
same field modulates MR relaxation: ``T1(r) = T1_0 (1 + a_T1 t(r))`` and ``T2(r) = T2_0 (1 +
a_T2 t(r))`` (`relaxation_modulation`; `apply_texture` sets both scales on a `LabeledVolume`).

Three kinds of field, each described by a static, hashable spec:

- `PowerLawTexture`: a Gaussian random field with power spectrum ``P(f) ∝ |f|^(-beta)``
  (``f`` in cycles/mm from the grid spacing), made by filtering white Gaussian noise with
  ``|f|^(-beta/2)`` in the Fourier domain (periodic on the grid), DC removed, then normalised to
  zero mean and unit standard deviation over the grid. ``beta = 0`` is white noise; mammographic
  parenchyma has ``beta ≈ 3`` (Burgess et al. 2001).
- `LumpyTexture`: the lumpy background of Rolland & Barrett (1992): a Poisson number of Gaussian
  lumps ``a exp(-|r - c|² / 2σ²)`` at uniform random centres. `lumpy_background` returns the raw
  field (lump amplitude ``a``); `sample_texture` standardises it with its exact ensemble mean and
  standard deviation, so every kind enters `texture_modulation` on the same footing.
- `ClusteredLumpyTexture`: the clustered lumpy background of Bochud, Abbey & Eckstein (1999):
  Poisson clusters of Poisson numbers of oriented, anisotropic blobs
  (`clustered_lumpy_background`, ``_clustered_lumpy.py`` for the model and its exact moments),
  standardised like the lumpy kind.

Relaxation coupling (every kind): ``t1_amplitude`` and ``t2_amplitude`` (default 0, in
[-0.3, 0.3]) are the relative standard deviations of T1 and T2. The relaxation fields share the
density's ``t(r)``: a positive amplitude makes T1 (T2) longer where the density is higher, a
negative one shorter (anticorrelated). Both 0 (the default) leaves relaxation uniform, and every
output exactly as without the fields.

Both are pure functions of a ``jax.random`` key (first argument) and work under ``jax.jit`` for a
fixed shape and spec. Fields are periodic on the grid (FFT convolution): a lump leaving one face
re-enters on the opposite one, which keeps the field stationary over the whole grid.

References:
    Rolland JP, Barrett HH. Effect of random background inhomogeneity on observer detection
    performance. J Opt Soc Am A 9(5):649-658 (1992).
    Bochud FO, Abbey CK, Eckstein MP. Statistical texture synthesized from experimental data.
    Proc SPIE 3663 (1999); Opt Express 4(1):33-43 (1999) (clustered lumpy backgrounds).
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
from ._clustered_lumpy import clustered_lumpy_background, clustered_moments

__all__ = [
    "MAX_AMPLITUDE",
    "MAX_BETA",
    "MIN_RELAXATION_SCALE",
    "ClusteredLumpyTexture",
    "LumpyTexture",
    "PowerLawTexture",
    "Texture",
    "apply_texture",
    "lumpy_background",
    "power_law_field",
    "relaxation_modulation",
    "sample_texture",
    "structure_key",
    "texture_modulation",
]

#: largest relative standard deviation of a texture's density modulation
MAX_AMPLITUDE = 0.3
#: largest power-law exponent (steeper fields are dominated by the grid's lowest frequency)
MAX_BETA = 4.0
#: smallest relative T1 or T2 a relaxation texture gives (a relaxation time stays positive)
MIN_RELAXATION_SCALE = 0.1


def _check_amplitude(where: str, amplitude: Any) -> float:
    a = number(where, "amplitude", amplitude)
    if not 0.0 <= a <= MAX_AMPLITUDE:
        raise FieldError(
            where, "amplitude", f"`amplitude` must be in [0, {MAX_AMPLITUDE:g}] (got {a})"
        )
    return a


def _check_relaxation(where: str, name: str, value: Any) -> float:
    a = number(where, name, value)
    if not -MAX_AMPLITUDE <= a <= MAX_AMPLITUDE:
        raise FieldError(
            where,
            name,
            f"`{name}` must be in [-{MAX_AMPLITUDE:g}, {MAX_AMPLITUDE:g}] (relative std of the "
            f"relaxation time; negative: anticorrelated with density) (got {a})",
        )
    return a


@dataclasses.dataclass(frozen=True)
class PowerLawTexture:
    """Power-law Gaussian random field texture, ``P(f) ∝ |f|^(-beta)``.

    Attributes:
        beta: spectral exponent in [0, 4] (0: white noise; 3: mammographic parenchyma).
        amplitude: relative standard deviation of the density modulation, in [0, 0.3].
        source: where the values come from (free text).
        t1_amplitude: relative standard deviation of T1 (MR), in [-0.3, 0.3]; 0: uniform.
        t2_amplitude: relative standard deviation of T2 (MR), in [-0.3, 0.3]; 0: uniform.
    """

    beta: float
    amplitude: float
    source: str = ""
    t1_amplitude: float = 0.0
    t2_amplitude: float = 0.0

    kind = "power_law"

    @classmethod
    def create(
        cls,
        *,
        beta: float,
        amplitude: float,
        source: str = "",
        t1_amplitude: float = 0.0,
        t2_amplitude: float = 0.0,
    ) -> PowerLawTexture:
        """Validated constructor.

        Raises:
            ValueError: ``beta`` outside [0, 4], ``amplitude`` outside [0, 0.3], a relaxation
                amplitude outside [-0.3, 0.3].
            TypeError: a value that is not a real number.

        Example:
            >>> PowerLawTexture.create(beta=3.0, amplitude=0.02).beta
            3.0
        """
        where = "medphys.phantoms.PowerLawTexture.create"
        b = number(where, "beta", beta)
        if not 0.0 <= b <= MAX_BETA:
            raise FieldError(where, "beta", f"`beta` must be in [0, {MAX_BETA:g}] (got {b})")
        return cls(
            b,
            _check_amplitude(where, amplitude),
            str(source),
            _check_relaxation(where, "t1_amplitude", t1_amplitude),
            _check_relaxation(where, "t2_amplitude", t2_amplitude),
        )


@dataclasses.dataclass(frozen=True)
class LumpyTexture:
    """Lumpy-background texture (Rolland & Barrett 1992): Poisson-distributed Gaussian lumps.

    Attributes:
        lump_sigma_mm: standard deviation of each Gaussian lump (mm), > 0.
        lumps_per_cm3: mean number of lump centres per cm³ (per cm² for a 2-D grid), > 0.
        amplitude: relative standard deviation of the density modulation, in [0, 0.3].
        source: where the values come from (free text).
        t1_amplitude, t2_amplitude: relative standard deviations of T1 and T2 (MR), in
            [-0.3, 0.3]; 0: uniform.
    """

    lump_sigma_mm: float
    lumps_per_cm3: float
    amplitude: float
    source: str = ""
    t1_amplitude: float = 0.0
    t2_amplitude: float = 0.0

    kind = "lumpy"

    @classmethod
    def create(
        cls,
        *,
        lump_sigma_mm: float,
        lumps_per_cm3: float,
        amplitude: float,
        source: str = "",
        t1_amplitude: float = 0.0,
        t2_amplitude: float = 0.0,
    ) -> LumpyTexture:
        """Validated constructor.

        Raises:
            ValueError: a non-positive size or density, ``amplitude`` outside [0, 0.3], a
                relaxation amplitude outside [-0.3, 0.3].
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
        return cls(
            out["lump_sigma_mm"],
            out["lumps_per_cm3"],
            amp,
            str(source),
            _check_relaxation(where, "t1_amplitude", t1_amplitude),
            _check_relaxation(where, "t2_amplitude", t2_amplitude),
        )


#: Bochud, Abbey & Eckstein (1999), Table 2 / the CLB generator's note ("dim=128, Kbar=150,
#: Nbar=20, Lx=5, Ly=2, alpha=2.1, beta=0.5, sigma=12", in pixels), with 0.3 mm pixels (a
#: 128-pixel region of 38.4 mm, as in Zysk's reimplementation): 150 clusters per 38.4² mm².
_CLB_PIXEL_MM = 0.3
_CLB_CLUSTERS_PER_CM2 = 150.0 / (128 * _CLB_PIXEL_MM / 10.0) ** 2  # 10.17 per cm²

#: (name, upper bound) of the positive parameters of a clustered lumpy background
_CLB_LIMITS = (
    ("clusters_per_cm3", 1.0e4),
    ("blobs_per_cluster", 1.0e3),
    ("cluster_sigma_mm", 100.0),
    ("blob_lx_mm", 100.0),
    ("blob_ly_mm", 100.0),
    ("alpha", 100.0),
    ("beta", 2.0),
    ("unit_mm", 100.0),
)


@dataclasses.dataclass(frozen=True)
class ClusteredLumpyTexture:
    """Clustered lumpy background texture (Bochud, Abbey & Eckstein 1999).

    Poisson clusters of Poisson numbers of oriented blobs ``exp(-α r^β / L(r))`` (``L`` the
    radius of the ellipse with half-axes ``blob_lx_mm`` along the cluster's random axis and
    ``blob_ly_mm`` across it), displaced from their cluster centre by Gaussian offsets; see
    ``_clustered_lumpy.py`` for the model, the sampling and the exact moments used to
    standardise it. The defaults are the published 2-D mammographic parameters (Bochud et al.
    1999, Table 2: K̄ = 150 clusters per 128² pixels, N̄ = 20, Lx = 5, Ly = 2 pixels, α = 2.1,
    β = 0.5, σ = 12 pixels) converted with 0.3 mm pixels (assumed: a 128-pixel region of
    38.4 mm, as in Zysk's reimplementation); on 3-D grids ``clusters_per_cm3`` is per cm³ and the
    2-D default is no measured value.

    Attributes:
        amplitude: relative standard deviation of the density modulation, in [0, 0.3].
        clusters_per_cm3: mean number of cluster centres per cm³ (per cm² on a 2-D grid), > 0.
        blobs_per_cluster: mean number of blobs per cluster (Poisson), > 0.
        cluster_sigma_mm: standard deviation, per axis, of a blob's offset from its cluster
            centre (mm), > 0.
        blob_lx_mm: half-axis of the blob's ellipse along its axis (mm), > 0.
        blob_ly_mm: half-axis across it (mm), > 0.
        alpha: profile slope ``α``, > 0.
        beta: profile exponent ``β``, in (0, 2].
        unit_mm: length unit of ``r`` and ``L`` in the profile (the pixel the published
            parameters were fitted on; the profile is not scale-free unless ``β = 1``), > 0.
        source: where the values come from (free text).
        t1_amplitude, t2_amplitude: relative standard deviations of T1 and T2 (MR), in
            [-0.3, 0.3]; 0: uniform.
    """

    amplitude: float
    clusters_per_cm3: float = _CLB_CLUSTERS_PER_CM2
    blobs_per_cluster: float = 20.0
    cluster_sigma_mm: float = 3.6
    blob_lx_mm: float = 1.5
    blob_ly_mm: float = 0.6
    alpha: float = 2.1
    beta: float = 0.5
    unit_mm: float = _CLB_PIXEL_MM
    source: str = ""
    t1_amplitude: float = 0.0
    t2_amplitude: float = 0.0

    kind = "clustered_lumpy"

    @classmethod
    def create(
        cls,
        *,
        amplitude: float,
        clusters_per_cm3: float = _CLB_CLUSTERS_PER_CM2,
        blobs_per_cluster: float = 20.0,
        cluster_sigma_mm: float = 3.6,
        blob_lx_mm: float = 1.5,
        blob_ly_mm: float = 0.6,
        alpha: float = 2.1,
        beta: float = 0.5,
        unit_mm: float = _CLB_PIXEL_MM,
        source: str = "",
        t1_amplitude: float = 0.0,
        t2_amplitude: float = 0.0,
    ) -> ClusteredLumpyTexture:
        """Validated constructor (defaults: the published mammographic parameters).

        Raises:
            ValueError: a count, length, ``alpha`` or ``beta`` not positive or above its bound
                (``beta`` <= 2), ``amplitude`` outside [0, 0.3], a relaxation amplitude outside
                [-0.3, 0.3].
            TypeError: a value that is not a real number, or an unknown keyword.

        Example:
            >>> ClusteredLumpyTexture.create(amplitude=0.05).blobs_per_cluster
            20.0
        """
        where = "medphys.phantoms.ClusteredLumpyTexture.create"
        given = {
            "clusters_per_cm3": clusters_per_cm3,
            "blobs_per_cluster": blobs_per_cluster,
            "cluster_sigma_mm": cluster_sigma_mm,
            "blob_lx_mm": blob_lx_mm,
            "blob_ly_mm": blob_ly_mm,
            "alpha": alpha,
            "beta": beta,
            "unit_mm": unit_mm,
        }
        out = {}
        for name, upper in _CLB_LIMITS:
            v = number(where, name, given[name])
            if not 0.0 < v <= upper:
                raise FieldError(where, name, f"`{name}` must be in (0, {upper:g}] (got {v})")
            out[name] = v
        return cls(
            amplitude=_check_amplitude(where, amplitude),
            **out,
            source=str(source),
            t1_amplitude=_check_relaxation(where, "t1_amplitude", t1_amplitude),
            t2_amplitude=_check_relaxation(where, "t2_amplitude", t2_amplitude),
        )

    @property
    def blob(self) -> tuple[float, float, float, float, float]:
        """``(blob_lx_mm, blob_ly_mm, alpha, beta, unit_mm)``."""
        return (self.blob_lx_mm, self.blob_ly_mm, self.alpha, self.beta, self.unit_mm)


Texture = PowerLawTexture | LumpyTexture | ClusteredLumpyTexture


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
    gives `lumpy_background`, a `ClusteredLumpyTexture` `clustered_lumpy_background`, each
    standardised with its exact ensemble mean and standard deviation (so a realisation's own
    mean and std fluctuate about 0 and 1, as blob counts do). The amplitudes are not applied
    here (see `texture_modulation`, `relaxation_modulation`).

    Args:
        key: a ``jax.random`` key.
        spec: a `PowerLawTexture`, `LumpyTexture` or `ClusteredLumpyTexture`.
        shape: grid shape (static); 2-D or 3-D for the clustered kind.
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
    if isinstance(spec, ClusteredLumpyTexture):
        shape = tuple(int(n) for n in shape)
        spacing = _spacing(shape, spacing_mm)
        params = (spec.clusters_per_cm3, spec.blobs_per_cluster, spec.cluster_sigma_mm)
        mean, var, _ = clustered_moments(shape, spacing, *params, spec.blob)
        raw = clustered_lumpy_background(
            key,
            shape,
            spacing,
            clusters_per_cm3=spec.clusters_per_cm3,
            blobs_per_cluster=spec.blobs_per_cluster,
            cluster_sigma_mm=spec.cluster_sigma_mm,
            blob_lx_mm=spec.blob_lx_mm,
            blob_ly_mm=spec.blob_ly_mm,
            alpha=spec.alpha,
            beta=spec.beta,
            unit_mm=spec.unit_mm,
            dtype=dtype,
        )
        return ((raw - mean) / math.sqrt(var)).astype(dtype)
    raise TypeError(
        "medphys.phantoms.sample_texture: `spec` must be a PowerLawTexture, LumpyTexture or "
        f"ClusteredLumpyTexture (got {type(spec).__name__})"
    )


def structure_key(key: Array, name: str) -> Array:
    """The key of structure ``name``'s texture: ``fold_in(key, crc32(name) & 0x7FFFFFFF)``.

    A fixed hash of the name (not its position), so adding or reordering structures changes no
    other structure's texture.
    """
    return jax.random.fold_in(key, zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF)


def _textured(phantom: Any, labels: Any, use: Any) -> list[tuple[Any, Texture]]:
    """The (structure, spec) pairs of ``phantom`` present in ``labels`` for which ``use(spec)``."""
    present = set(labels.names)
    out = []
    for s in phantom.structures:
        spec = getattr(s, "texture", None)
        if spec is not None and s.name in present and use(spec):
            out.append((s, spec))
    return out


def _fields(
    key: Array, pairs: list[tuple[Any, Texture]], labels: Any, dtype: Any
) -> dict[str, tuple[Array, Array]]:
    """Per structure name: (mask of its voxels, its standardised field)."""
    shape = labels.shape
    spacing = tuple(float(s) for s in labels.spacing_mm)
    label_array = jnp.asarray(labels.labels)
    out = {}
    for s, spec in pairs:
        field = sample_texture(structure_key(key, s.name), spec, shape, spacing, dtype=dtype)
        out[s.name] = (label_array == labels.structure(s.name).label, field)
    return out


def _density(pairs: list, fields: dict, shape: tuple[int, ...], dtype: Any) -> Array:
    out = jnp.ones(shape, dtype)
    for s, spec in pairs:
        inside, field = fields[s.name]
        out = jnp.where(inside, 1.0 + jnp.asarray(spec.amplitude, dtype) * field, out)
    return jnp.maximum(out, 0.0).astype(dtype)


def _relaxation(pairs: list, fields: dict, shape: tuple[int, ...], dtype: Any) -> Array:
    out = jnp.ones((2, *shape), dtype)
    for s, spec in pairs:
        inside, field = fields[s.name]
        amp = jnp.asarray([spec.t1_amplitude, spec.t2_amplitude], dtype)
        scale = 1.0 + amp.reshape((2,) + (1,) * len(shape)) * field[None]
        out = jnp.where(inside[None], scale, out)
    return jnp.maximum(out, MIN_RELAXATION_SCALE).astype(dtype)


def _has_density(spec: Texture) -> bool:
    return spec.amplitude != 0.0


def _has_relaxation(spec: Texture) -> bool:
    return spec.t1_amplitude != 0.0 or spec.t2_amplitude != 0.0


def texture_modulation(key: Array, phantom: Any, labels: Any, *, dtype: Any = jnp.float32) -> Any:
    """Relative density modulation of a voxelized phantom: ``1 + a t(r)`` in each textured mask.

    Every structure of ``phantom`` with a ``texture`` gets its own field, drawn from
    `structure_key` ``(key, name)``; inside the voxels that ``labels`` assigns to it the result is
    ``1 + amplitude × field``, elsewhere 1 (structures without texture, air). The result is
    clipped below at 0 (a density is never negative; with amplitude <= 0.3 this touches only
    draws beyond 3.3 standard deviations). Boundary voxels take the value of their majority
    label. Give it to the simulators with ``labels.with_density_scale(result.data)`` (or use
    `apply_texture`, which also sets the relaxation scale): CT attenuation and MR proton density
    are multiplied by it.

    Args:
        key: a ``jax.random`` key (e.g. the case's ``"texture"`` stream).
        phantom: the `Phantom` whose structure records carry the textures.
        labels: its `medphys.LabeledVolume` (from `voxelize`); structures are matched by name.
        dtype: floating dtype of the result.

    Returns:
        `medphys.Volume` of the modulation on the labels' grid (ones if no structure is textured).
    """
    from ..volume import Volume  # late import: the module is shared with config validation

    pairs = _textured(phantom, labels, _has_density)
    out = _density(pairs, _fields(key, pairs, labels, dtype), labels.shape, dtype)
    return Volume(data=out, affine=labels.affine)


def relaxation_modulation(
    key: Array, phantom: Any, labels: Any, *, dtype: Any = jnp.float32
) -> Float[Array, "2 x y z"]:
    """Relative T1 and T2 of a voxelized phantom: ``1 + a_T1 t(r)``, ``1 + a_T2 t(r)`` per mask.

    The field ``t(r)`` of each structure is the one `texture_modulation` uses (same key, same
    draw), so density and relaxation vary together (``t1_amplitude``, ``t2_amplitude`` of the
    structure's texture; a negative amplitude anticorrelates). Outside textured masks, and for
    structures whose relaxation amplitudes are 0, the result is 1. It is clipped below at
    `MIN_RELAXATION_SCALE` (0.1): a relaxation time stays positive; with |amplitude| <= 0.3 this
    touches only draws beyond 3 standard deviations.

    Args:
        key: a ``jax.random`` key (the one given to `texture_modulation`).
        phantom: the `Phantom` whose structure records carry the textures.
        labels: its `medphys.LabeledVolume`.
        dtype: floating dtype of the result.

    Returns:
        ``(2, x, y, z)`` array: relative T1 (row 0) and T2 (row 1) of each voxel.
    """
    pairs = _textured(phantom, labels, _has_relaxation)
    return _relaxation(pairs, _fields(key, pairs, labels, dtype), labels.shape, dtype)


def apply_texture(key: Array, phantom: Any, labels: Any, *, dtype: Any = jnp.float32) -> Any:
    """``labels`` with the phantom's textures applied: density scale and, when asked, relaxation.

    Sets ``density_scale`` to `texture_modulation` when any structure has a texture, and
    ``relaxation_scale`` to `relaxation_modulation` when any present structure's texture has a
    non-zero ``t1_amplitude`` or ``t2_amplitude``; each field is drawn once and shared. A phantom
    without textures returns ``labels`` itself; one without relaxation amplitudes gives exactly
    ``labels.with_density_scale(texture_modulation(key, phantom, labels).data)`` (same bytes).

    Args:
        key: a ``jax.random`` key (e.g. the case's ``"texture"`` stream).
        phantom: the `Phantom` whose structure records carry the textures.
        labels: its `medphys.LabeledVolume`.
        dtype: floating dtype of the scales.

    Returns:
        The `medphys.LabeledVolume` with its scales set (jit-safe for a fixed phantom).

    Example:
        >>> lv = apply_texture(jax.random.key(0), ph, voxelize(ph, shape=(64, 64, 8),
        ...                    spacing_mm=2.0))  # doctest: +SKIP
    """
    if not any(getattr(s, "texture", None) is not None for s in phantom.structures):
        return labels
    density = _textured(phantom, labels, _has_density)
    relax = _textured(phantom, labels, _has_relaxation)
    names = {s.name for s, _ in density}
    fields = _fields(key, density + [p for p in relax if p[0].name not in names], labels, dtype)
    out = labels.with_density_scale(_density(density, fields, labels.shape, dtype))
    if relax:
        out = out.with_relaxation_scale(_relaxation(relax, fields, labels.shape, dtype))
    return out
