"""MR protocols and the acquisition: phantom → tissue maps → coil k-space → magnitude image.

Acquisition model (tier 1)
    Each voxel's steady-state transverse magnetisation (`TissueMaps.signal`) is weighted by each
    coil's sensitivity and encoded slice by slice (2-D multi-slice, axial slices along z, ideal
    rectangular slice profile, no cross-talk): ``kspace_k = fft2c(c_k · m)``, the phantom's grid
    being the acquisition matrix. Encoding is instantaneous (no relaxation or off-resonance during
    the readout, so no blurring or chemical-shift displacement). White complex Gaussian noise,
    independent between coils, is added to every acquired sample; lines not acquired are zero.
    Reconstruction: zero-filled inverse FFT per coil, root-sum-of-squares combination.

Acquisition model (Bloch tier)
    A protocol whose sequence is a Bloch-tier sequence (`BlochSpinEcho`, `BlochGradientEcho`,
    `PulseqSequence`) gets its noise-free k-space from `bloch` on isochromats with the encoding
    gradients (see `medphys.simulators.mr._bloch_tier`): relaxation and off-resonance act during
    the pulses and the readout, T2* through several isochromats per voxel. Fields, coils, mask,
    noise and reconstruction are those of tier 1; ``snr`` refers to the noise-free Bloch image.
    The isochromats are chosen on the host, so this tier runs outside ``jax.jit``.

Signal-to-noise ratio
    ``snr`` is the mean of the noise-free combined image over the reference material (fraction
    weighted; the brightest material when no reference is named) divided by the noise standard
    deviation ``σ`` for NEX = 1. ``σ`` is the standard deviation of the real part (and of the
    imaginary part) of every k-space sample of every coil, hence of every coil image (the transform
    is unitary), and the standard deviation of the combined magnitude image wherever the signal is
    well above the noise. Averaging NEX acquisitions divides ``σ`` by ``sqrt(NEX)`` (drawn in one
    step: identical in distribution).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float

from ..._errors import unknown_name
from ...volume import LabeledVolume, Volume
from . import _checks as chk
from ._bloch_tier import AbstractBlochSequence, bloch_kspace
from ._coils import AbstractCoils, UniformCoils
from ._kspace import fft2c, ifft2c, rss
from ._sampling import AbstractSampling, FullSampling
from ._sequences import AbstractSequence
from ._tissue import (
    FieldParams,
    FieldVariation,
    TissueMaps,
    apply_field_params,
    sample_field_params,
    tissue_maps,
)

__all__ = ["MRProtocol", "MRResult", "acquire", "simulate"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MRProtocol:
    """An MR acquisition: sequence, field strength, receive coils, sampling, noise.

    Attributes:
        sequence: the pulse sequence: tier 1/2 (`SpinEcho`, `GradientEcho`, `InversionRecovery`,
            `BSSFP`, `FastSpinEcho`) or the Bloch tier (`BlochSpinEcho`, `BlochGradientEcho`,
            `PulseqSequence`).
        coils: the receive array (`UniformCoils`, `LoopCoils`).
        sampling: the ky sampling pattern (`FullSampling`, `EquispacedMask`, `RandomMask`,
            `VariableDensityMask`).
        snr: signal-to-noise ratio at NEX = 1 (see the module docstring); ``None``: no noise.
        nex: number of averaged excitations (>= 1).
        field_variation: random smooth B0/B1 variation drawn per case; ``None``: ideal fields.
        field_t: main field (T); selects the tissue properties.
        snr_reference: material whose mean signal defines ``snr``; ``None``: the brightest.
        description: free text (from the catalog file).
    """

    sequence: AbstractSequence | AbstractBlochSequence
    coils: AbstractCoils
    sampling: AbstractSampling
    snr: Float[ArrayLike, ""] | None
    nex: int
    field_variation: FieldVariation | None
    field_t: float = dataclasses.field(metadata={"static": True})
    snr_reference: str | None = dataclasses.field(default=None, metadata={"static": True})
    description: str = dataclasses.field(default="", metadata={"static": True})

    @classmethod
    def create(
        cls,
        sequence: AbstractSequence | AbstractBlochSequence,
        *,
        field_t: float,
        coils: AbstractCoils | None = None,
        sampling: AbstractSampling | None = None,
        snr: float | None = None,
        nex: int = 1,
        snr_reference: str | None = None,
        field_variation: FieldVariation | None = None,
        description: str = "",
    ) -> MRProtocol:
        """Validated constructor.

        Args:
            sequence: the pulse sequence (its type selects the tier).
            field_t: main field (T), > 0; the tissue library tabulates 1.5 and 3.0.
            coils: receive coils; default one uniform (body) coil.
            sampling: ky sampling; default full.
            snr: SNR at NEX = 1, > 0; ``None`` for noise-free data.
            nex: number of averages, an integer >= 1.
            snr_reference: material name defining the SNR; default the brightest material.
            field_variation: random B0/B1 variation; default none.
            description: free text.

        Raises:
            TypeError: an argument of the wrong type.
            ValueError: ``field_t`` or ``snr`` not positive, ``nex < 1``.

        Example:
            >>> from medphys.simulators import mr
            >>> p = mr.MRProtocol.create(mr.SpinEcho.create(te_s=0.015, tr_s=0.5), field_t=1.5,
            ...                          coils=mr.LoopCoils.create(4), snr=30.0)
            >>> p.n_coils
            4
        """
        where = f"{chk.PREFIX}MRProtocol.create"
        if sequence is not None and not isinstance(
            sequence, (AbstractSequence, AbstractBlochSequence)
        ):
            raise TypeError(
                f"{where}: `sequence` must be a tier-1/2 Sequence (SpinEcho, ...) or a Bloch-tier "
                f"sequence (BlochSpinEcho, BlochGradientEcho, PulseqSequence) "
                f"(got {type(sequence).__name__})"
            )
        for name, value, kind in (
            ("coils", coils, AbstractCoils),
            ("sampling", sampling, AbstractSampling),
            ("field_variation", field_variation, FieldVariation),
        ):
            if value is not None and not isinstance(value, kind):
                raise TypeError(
                    f"{where}: `{name}` must be a {kind.__name__.removeprefix('Abstract')}"
                    f" (got {type(value).__name__})"
                )
        if sequence is None:
            raise TypeError(f"{where}: `sequence` is required")
        return cls(
            sequence=sequence,
            coils=UniformCoils(1) if coils is None else coils,
            sampling=FullSampling() if sampling is None else sampling,
            snr=None if snr is None else chk.positive(where, "snr", snr),
            nex=chk.integer(where, "nex", nex, minimum=1),
            field_variation=field_variation,
            field_t=chk.positive(where, "field_t", field_t, " (tesla)"),
            snr_reference=None if snr_reference is None else str(snr_reference),
            description=str(description),
        )

    @property
    def n_coils(self) -> int:
        return self.coils.n_coils


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MRResult:
    """What one simulated MR acquisition produced.

    Attributes:
        kspace: ``(coils, kx, ky, z)`` acquired k-space (complex; zero where not sampled); DC at
            ``[:, nx // 2, ny // 2, :]``.
        image: magnitude (root-sum-of-squares) image on the phantom's grid and affine.
        maps: the tissue maps used (including the B0/B1 fields drawn).
        coil_maps: ``(coils, x, y, z)`` complex receive sensitivities used.
        mask: ``(ky,)`` 1 where a ky line was acquired.
        noise_std: per-component noise standard deviation σ/sqrt(NEX) (0 without noise).
        field_params: the smooth-field coefficients drawn, or ``None``.
    """

    kspace: Complex[Array, "coils kx ky z"]
    image: Volume
    maps: TissueMaps
    coil_maps: Complex[Array, "coils x y z"]
    mask: Float[Array, " ky"]
    noise_std: Float[Array, ""]
    field_params: FieldParams | None


def _reference_level(maps: TissueMaps, clean: Array, reference: int | None) -> Array:
    """Fraction-weighted mean of ``clean`` over a compartment (or the brightest compartment)."""
    weight = jnp.sum(maps.fractions, axis=(1, 2, 3))
    total = jnp.sum(maps.fractions * clean[None], axis=(1, 2, 3))
    means = jnp.where(weight > 0, total / jnp.where(weight > 0, weight, 1.0), 0.0)
    return jnp.max(means) if reference is None else means[reference]


def _field(maps: TissueMaps, protocol: MRProtocol, key: Array):
    """Split the key (field, mask, noise) and apply the random B0/B1 draw, if any."""
    key_field, key_mask, key_noise = jax.random.split(key, 3)
    params = None
    if protocol.field_variation is not None:
        params = sample_field_params(key_field, protocol.field_variation, dtype=maps.dtype)
        maps = apply_field_params(params, maps)
    return maps, params, key_mask, key_noise


def _finish(
    kspace: Array,
    clean: Callable[[], Array],
    maps: TissueMaps,
    protocol: MRProtocol,
    keys: tuple[Array, Array],
    coil_maps: Array,
    reference: int | None,
    params: FieldParams | None,
) -> MRResult:
    """Noise at the protocol's SNR, the sampling mask, zero-filled recon (shared by the tiers)."""
    dtype = maps.dtype
    key_mask, key_noise = keys
    mask = protocol.sampling.sample_mask(key_mask, maps.shape[1], dtype=dtype)
    if protocol.snr is None:
        sigma = jnp.zeros((), dtype)
    else:
        level = _reference_level(maps, clean(), reference)
        sigma = (level / protocol.snr / jnp.sqrt(jnp.asarray(protocol.nex, dtype))).astype(dtype)
        # a complex normal draw has variance 1/2 per component: scale to σ per component
        noise = jax.random.normal(key_noise, kspace.shape, kspace.dtype)
        kspace = kspace + (sigma * math.sqrt(2.0)) * noise
    kspace = kspace * mask[None, None, :, None]
    image = Volume(data=rss(ifft2c(kspace)), affine=maps.affine)
    return MRResult(
        kspace=kspace,
        image=image,
        maps=maps,
        coil_maps=coil_maps,
        mask=mask,
        noise_std=sigma,
        field_params=params,
    )


@functools.partial(jax.jit, static_argnames=("reference",))
def _acquire(
    maps: TissueMaps,
    protocol: MRProtocol,
    key: Array,
    coil_maps: Array | None,
    reference: int | None,
) -> MRResult:
    maps, params, key_mask, key_noise = _field(maps, protocol, key)
    m = maps.signal(protocol.sequence)
    if coil_maps is None:
        coil_maps = protocol.coils.sensitivities(maps.affine, maps.shape, dtype=maps.dtype)
    kspace = fft2c(coil_maps * m[None])
    return _finish(
        kspace,
        lambda: jnp.abs(m) * rss(coil_maps),
        maps,
        protocol,
        (key_mask, key_noise),
        coil_maps,
        reference,
        params,
    )


_field_jit = jax.jit(_field)


@functools.partial(jax.jit, static_argnames=("reference",))
def _finish_bloch(kspace, maps, protocol, keys, coil_maps, reference, params) -> MRResult:
    return _finish(
        kspace, lambda: rss(ifft2c(kspace)), maps, protocol, keys, coil_maps, reference, params
    )


def _acquire_bloch(
    maps: TissueMaps,
    protocol: MRProtocol,
    key: Array,
    coil_maps: Array | None,
    reference: int | None,
) -> MRResult:
    """The Bloch tier: the same fields, coils, noise and recon as `_acquire`, k-space by `bloch`."""
    maps, params, key_mask, key_noise = _field_jit(maps, protocol, key)
    if coil_maps is None:
        coil_maps = _sensitivities(protocol.coils, maps.affine, maps.shape, jnp.dtype(maps.dtype))
    kspace = bloch_kspace(maps, protocol.sequence, coil_maps)
    return _finish_bloch(
        kspace, maps, protocol, (key_mask, key_noise), coil_maps, reference, params
    )


def acquire(
    maps: TissueMaps,
    protocol: MRProtocol,
    key: Array,
    *,
    coil_maps: Complex[ArrayLike, "coils x y z"] | None = None,
) -> MRResult:
    """Acquire k-space and reconstruct a magnitude image from tissue maps.

    Compiled once per grid shape, number of compartments, dtype and protocol structure; later
    calls with the same shapes reuse the compiled program.

    Args:
        maps: tissue maps (from `tissue_maps` or `TissueMaps.create`).
        protocol: the acquisition.
        key: ``jax.random`` key (field variation, random mask, noise).
        coil_maps: ``(n_coils, x, y, z)`` complex sensitivities to use instead of the protocol's
            coil model (e.g. measured maps).

    Returns:
        `MRResult`.

    Raises:
        TypeError: wrong argument types.
        ValueError: ``coil_maps`` whose coil count differs from ``protocol.n_coils`` or whose grid
            differs from the maps'.
        UnknownNameError: ``protocol.snr_reference`` is not a compartment of the maps.
    """
    where = f"{chk.PREFIX}acquire"
    return _checked_acquire(where, maps, protocol, key, coil_maps)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _sensitivities(
    coils: AbstractCoils, affine: Array, shape: tuple[int, ...], dtype: Any
) -> Array:
    return coils.sensitivities(affine, shape, dtype=dtype)


#: Coil maps of the last few concrete grids: a dataset job simulates case after case on one grid.
_COIL_MAPS: dict[tuple[Any, ...], Array] = {}
_COIL_MAPS_SIZE = 4


def _cached_sensitivities(coils: AbstractCoils, affine: Array, shape: tuple[int, ...], dtype: Any):
    """Coil maps of a concrete grid, computed once and reused (never caches a traced value)."""
    a = np.asarray(affine, dtype=np.float64)
    key = (coils, a.tobytes(), shape, dtype)
    hit = _COIL_MAPS.get(key)
    if hit is not None:
        return hit
    out = _sensitivities(coils, jnp.asarray(a, dtype), shape, dtype)
    if not isinstance(out, jax.core.Tracer):  # inside a user's jit the call is staged: keep none
        if len(_COIL_MAPS) >= _COIL_MAPS_SIZE:
            _COIL_MAPS.pop(next(iter(_COIL_MAPS)))
        _COIL_MAPS[key] = out
    return out


def _checked_acquire(where: str, maps: Any, protocol: Any, key: Any, coil_maps: Any) -> MRResult:
    if not isinstance(maps, TissueMaps):
        raise TypeError(f"{where}: `maps` must be a TissueMaps (got {type(maps).__name__})")
    if not isinstance(protocol, MRProtocol):
        raise TypeError(
            f"{where}: `protocol` must be an MRProtocol (got {type(protocol).__name__})"
        )
    if coil_maps is not None:
        shape = tuple(jnp.shape(coil_maps))
        if len(shape) != 4 or shape[0] != protocol.n_coils:
            raise chk.FieldError(
                where,
                "coil_maps",
                f"`coil_maps` must hold protocol.n_coils = {protocol.n_coils} "
                f"maps, shape ({protocol.n_coils}, *grid) (got shape {shape})",
            )
        if shape[1:] != maps.shape:
            raise chk.FieldError(
                where,
                "coil_maps",
                f"`coil_maps` must be on the phantom's grid {maps.shape} (got {shape[1:]})",
            )
        complex_dtype = jnp.result_type(maps.dtype, jnp.complex64)
        coil_maps = jnp.asarray(coil_maps, dtype=complex_dtype)
    elif chk.is_concrete(maps.affine):
        coil_maps = _cached_sensitivities(
            protocol.coils, maps.affine, maps.shape, jnp.dtype(maps.dtype)
        )
    reference = None
    if protocol.snr is not None and protocol.snr_reference is not None:
        if protocol.snr_reference not in maps.names:
            raise unknown_name(
                "SNR reference material (protocol.snr_reference)",
                protocol.snr_reference,
                maps.names,
            )
        reference = maps.names.index(protocol.snr_reference)
    if isinstance(protocol.sequence, AbstractBlochSequence):
        if not (chk.is_concrete(maps.fractions) and chk.is_concrete(maps.affine)):
            raise TypeError(
                f"{where}: the Bloch tier chooses its isochromats on the host: call it outside "
                "jax.jit / jax.vmap (differentiate `bloch` directly for gradients)"
            )
        result = _acquire_bloch(maps, protocol, key, coil_maps, reference)
    else:
        result = _acquire(maps, protocol, key, coil_maps, reference)
    if chk.is_concrete(maps.affine):  # the phantom's own affine, not its float32 image in the jit
        result = dataclasses.replace(result, image=Volume(result.image.data, maps.affine))
    return result


def simulate(
    labeled_volume: LabeledVolume,
    protocol: MRProtocol,
    key: Array,
    *,
    coil_maps: Complex[ArrayLike, "coils x y z"] | None = None,
    dtype: Any = jnp.float32,
) -> MRResult:
    """Simulate an MR acquisition of a phantom: `tissue_maps` then `acquire`.

    The protocol's sequence selects the tier: closed forms / EPG for `SpinEcho`, ...,
    `FastSpinEcho`; Bloch isochromats with full encoding for `BlochSpinEcho`,
    `BlochGradientEcho` and `PulseqSequence` (host-side set-up: call it outside ``jax.jit``).

    Args:
        labeled_volume: the phantom (labels, material table, optional partial-volume fractions).
        protocol: the acquisition (e.g. ``medphys.simulators.load("mr-t1-se")``).
        key: ``jax.random`` key; the same key gives the same result.
        coil_maps: optional ``(n_coils, x, y, z)`` complex sensitivities overriding the protocol's.
        dtype: floating dtype (float32; float64 for reference checks).

    Returns:
        `MRResult`; ``result.image`` is a `medphys.Volume` with the phantom's affine.

    Raises:
        TypeError, ValueError, UnknownNameError: see `tissue_maps` and `acquire`.

    Example:
        >>> protocol = medphys.simulators.load("mr-t1-se")  # doctest: +SKIP
        >>> result = simulate(phantom, protocol, jax.random.key(0))  # doctest: +SKIP
        >>> result.image.data.shape == phantom.shape  # doctest: +SKIP
        True
    """
    where = f"{chk.PREFIX}simulate"
    if not isinstance(protocol, MRProtocol):
        raise TypeError(
            f"{where}: `protocol` must be an MRProtocol (got {type(protocol).__name__})"
        )
    maps = tissue_maps(labeled_volume, protocol.field_t, dtype=dtype)
    return _checked_acquire(where, maps, protocol, key, coil_maps)
