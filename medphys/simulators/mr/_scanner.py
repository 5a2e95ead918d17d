"""The MR acquisition as a prepared operator: `prepare(grid, protocol, compartments=...)` → `MRScanner`.

Everything that depends only on the grid, the protocol and the compartment names is done once on
the host: the receive coils' sensitivity maps on the grid, the SNR reference compartment, and for
the Bloch tier the sequence lowered for the grid's Cartesian encoding (`plan_bloch`).
`MRScanner.acquire(key, maps)` then maps `TissueMaps` to an `MRResult` and
`MRScanner.reconstruct(kspace)` k-space to a zero-filled root-sum-of-squares image; for the
closed-form tiers both are pure JAX functions: under ``jax.jit``, ``jax.vmap`` over cases on the
grid, and ``jax.grad`` with respect to the maps' arrays.

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
    The isochromats of each slice are chosen on the host from the maps' values (which voxels hold
    which compartment, and each compartment's T2' from T2 and T2*), so this tier runs eagerly:
    traced fractions, T2 or T2* (``jax.jit``, ``jax.vmap``, ``jax.grad`` with respect to them)
    raise a `TypeError`; PD, T1, B0 and B1 may be traced (gradients with respect to them flow
    through `bloch`). The sequence type fixes the tier when the operator is prepared.

Signal-to-noise ratio
    ``snr`` is the mean of the noise-free combined image over the reference compartment (fraction
    weighted; the brightest compartment when no reference is named) divided by the noise standard
    deviation ``σ`` for NEX = 1. ``σ`` is the standard deviation of the real part (and of the
    imaginary part) of every k-space sample of every coil, hence of every coil image (the transform
    is unitary), and the standard deviation of the combined magnitude image wherever the signal is
    well above the noise. Averaging NEX acquisitions divides ``σ`` by ``sqrt(NEX)`` (drawn in one
    step: identical in distribution).

Randomness
    ``key`` splits into three streams, in this order: the B0/B1 field draw, the sampling mask and
    the noise; the same key gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Complex, Float

from ..._errors import unknown_name
from ..._types import PRNGKey
from ...volume import Grid, Volume
from . import _checks as chk
from ._bloch_tier import AbstractBlochSequence, BlochPlan, bloch_kspace, plan_bloch
from ._coils import AbstractCoils
from ._kspace import fft2c, ifft2c, rss
from ._protocol import MRProtocol, MRResult
from ._tissue import FieldParams, TissueMaps, apply_field_params, sample_field_params

__all__ = ["MRScanner", "prepare"]


def _complex(dtype: Any) -> Any:
    return jnp.result_type(dtype, jnp.complex64)


def _describe(grid: Grid) -> str:
    """Shape, spacing and centre: what tells two grids apart in a message."""
    spacing = [round(float(v), 6) for v in grid.spacing_mm]
    center = [round(float(v), 6) for v in grid.center_mm]
    return f"shape {grid.shape}, spacing {spacing} mm, centre {center} mm"


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MRScanner:
    """An MR acquisition of tissue maps on a fixed grid, planned once.

    Build with `medphys.simulators.mr.prepare` (grid, protocol, compartments).

    Attributes:
        protocol: the `MRProtocol` (leaves: the sequence's timings, ``snr``, ``nex``, the field
            variation).
        coil_maps: ``(coils, x, y, z)`` complex receive sensitivities on the grid.
        bloch: the Bloch tier's plan (the lowered sequence), or ``None`` for the closed forms.
        grid: the voxel grid (static).
        compartments: the compartment names the maps must carry, in order (static).
        reference: index of the SNR reference compartment, ``None`` for the brightest (static).
    """

    protocol: MRProtocol
    coil_maps: Complex[Array, "coils x y z"]
    bloch: BlochPlan | None
    grid: Grid = dataclasses.field(metadata={"static": True})
    compartments: tuple[str, ...] = dataclasses.field(metadata={"static": True})
    reference: int | None = dataclasses.field(metadata={"static": True})

    @property
    def fractions_shape(self) -> tuple[int, int, int, int]:
        """``(compartments, x, y, z)``: the shape of the fractions of the maps `acquire` takes."""
        return (len(self.compartments), *self.grid.shape)

    @property
    def kspace_shape(self) -> tuple[int, int, int, int]:
        """``(coils, kx, ky, z)``: the shape of the k-space `acquire` returns."""
        return (self.protocol.n_coils, *self.grid.shape)

    def acquire(self, key: PRNGKey, maps: TissueMaps) -> MRResult:
        """Acquire k-space from tissue maps and reconstruct a magnitude image.

        Args:
            key: ``jax.random`` key (field variation, random mask, noise; first, as everywhere).
            maps: `TissueMaps` on the prepared grid with the prepared compartments (from
                `tissue_maps` or `TissueMaps.create`); float32 or float64. Map over a batch of
                cases (maps stacked on the grid) with ``jax.vmap``.

        Returns:
            `MRResult` in the maps' precision (float32 → complex64 k-space, float32 image).

        Raises:
            TypeError: ``maps`` is not a `TissueMaps`; a Bloch-tier operator given traced
                fractions, T2 or T2*.
            ValueError: maps on another grid, or with other compartments (checked when traced).

        Example:
            >>> op = mr.prepare(maps.grid, protocol, compartments=maps.names)  # doctest: +SKIP
            >>> images = jax.jit(jax.vmap(lambda k, m: op.acquire(k, m).image.data))(keys, batch)
        """
        return self._apply(f"{chk.PREFIX}MRScanner.acquire", key, maps)

    def reconstruct(self, kspace: Complex[Array, "coils kx ky z"]) -> Float[Array, "x y z"]:
        """Zero-filled reconstruction: inverse FFT per coil and slice, root-sum-of-squares.

        Args:
            kspace: ``kspace_shape`` k-space (zeros where not acquired), e.g. ``result.kspace``.

        Returns:
            ``(x, y, z)`` magnitude image (``result.image.data`` for the k-space `acquire` made).

        Raises:
            ValueError: ``kspace`` is not ``kspace_shape`` (checked when traced).
        """
        shape = tuple(getattr(kspace, "shape", ()))
        if shape != self.kspace_shape:
            raise ValueError(
                f"{chk.PREFIX}MRScanner.reconstruct: `kspace` must have shape {self.kspace_shape} "
                f"(coils, kx, ky, z) (got {shape}); map over a batch with jax.vmap"
            )
        return rss(ifft2c(jnp.asarray(kspace)))

    def _apply(self, where: str, key: PRNGKey, maps: TissueMaps) -> MRResult:
        """`acquire`, with errors naming the public call ``where``."""
        self._check_maps(where, maps)
        if self.bloch is None:
            return _acquire(self, key, maps)
        maps, params, key_mask, key_noise = _field_jit(key, maps, self.protocol)
        coil_maps = self.coil_maps.astype(_complex(maps.dtype))
        try:
            kspace = bloch_kspace(self.bloch, maps, coil_maps)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            raise TypeError(
                f"{where}: the Bloch tier chooses its isochromats on the host from the maps' "
                "fractions, T2 and T2*: call it outside jax.jit and jax.vmap, and do not trace "
                "those maps (differentiate `medphys.simulators.mr.bloch` directly for gradients)"
            ) from None
        return _finish_bloch(self, kspace, maps, (key_mask, key_noise), coil_maps, params)

    def _check_maps(self, where: str, maps: Any) -> None:
        """Trace-time checks: the type, the grid and the compartments (static metadata only)."""
        if not isinstance(maps, TissueMaps):
            raise TypeError(f"{where}: `maps` must be a TissueMaps (got {type(maps).__name__})")
        shape = tuple(maps.fractions.shape)
        if len(shape) != 4:
            raise ValueError(
                f"{where}: `maps.fractions` must have shape (compartments, x, y, z) = "
                f"{self.fractions_shape} (got {shape}); map over a batch of cases with jax.vmap"
            )
        if maps.grid != self.grid:
            raise ValueError(
                f"{where}: `maps` must be on the prepared grid ({_describe(self.grid)}) "
                f"(got {_describe(maps.grid)}); prepare an operator for the maps' grid: "
                "mr.prepare(maps.grid, ...)"
            )
        if len(maps.names) != len(self.compartments):
            raise ValueError(
                f"{where}: `maps` must have {len(self.compartments)} compartments, "
                f"{list(self.compartments)} (got {len(maps.names)}: {list(maps.names)}); "
                "prepare with compartments=maps.names"
            )
        if tuple(maps.names) != self.compartments:
            raise ValueError(
                f"{where}: `maps.names` must be the prepared compartments "
                f"{list(self.compartments)}, in that order (got {list(maps.names)}); "
                "prepare with compartments=maps.names"
            )


# --- the acquisition (shared by the tiers) --------------------------------------------------------


def _reference_level(maps: TissueMaps, clean: Array, reference: int | None) -> Array:
    """Fraction-weighted mean of ``clean`` over a compartment (or the brightest compartment)."""
    weight = jnp.sum(maps.fractions, axis=(1, 2, 3))
    total = jnp.sum(maps.fractions * clean[None], axis=(1, 2, 3))
    means = jnp.where(weight > 0, total / jnp.where(weight > 0, weight, 1.0), 0.0)
    return jnp.max(means) if reference is None else means[reference]


def _field(key: PRNGKey, maps: TissueMaps, protocol: MRProtocol):
    """Split the key (field, mask, noise) and apply the random B0/B1 draw, if any."""
    key_field, key_mask, key_noise = jax.random.split(key, 3)
    params = None
    if protocol.field_variation is not None:
        params = sample_field_params(key_field, protocol.field_variation, dtype=maps.dtype)
        maps = apply_field_params(params, maps)
    return maps, params, key_mask, key_noise


def _finish(
    op: MRScanner,
    kspace: Array,
    clean: Callable[[], Array],
    maps: TissueMaps,
    keys: tuple[Array, Array],
    coil_maps: Array,
    params: FieldParams | None,
) -> MRResult:
    """Noise at the protocol's SNR, the sampling mask, zero-filled recon (shared by the tiers)."""
    protocol = op.protocol
    dtype = maps.dtype
    key_mask, key_noise = keys
    mask = protocol.sampling.sample_mask(key_mask, maps.shape[1], dtype=dtype)
    if protocol.snr is None:
        sigma = jnp.zeros((), dtype)
    else:
        level = _reference_level(maps, clean(), op.reference)
        sigma = (level / protocol.snr / jnp.sqrt(jnp.asarray(protocol.nex, dtype))).astype(dtype)
        # a complex normal draw has variance 1/2 per component: scale to σ per component
        noise = jax.random.normal(key_noise, kspace.shape, kspace.dtype)
        kspace = kspace + (sigma * math.sqrt(2.0)) * noise
    kspace = kspace * mask[None, None, :, None]
    image = Volume(data=rss(ifft2c(kspace)), affine=op.grid.affine)
    return MRResult(
        kspace=kspace,
        image=image,
        maps=maps,
        coil_maps=coil_maps,
        mask=mask,
        noise_std=sigma,
        field_params=params,
    )


@jax.jit
def _acquire(op: MRScanner, key: PRNGKey, maps: TissueMaps) -> MRResult:
    """Tiers 1 and 2: signal equations, coil weighting, encoding, noise, recon."""
    maps, params, key_mask, key_noise = _field(key, maps, op.protocol)
    coil_maps = op.coil_maps.astype(_complex(maps.dtype))
    m = maps.signal(op.protocol.sequence)
    kspace = fft2c(coil_maps * m[None])
    return _finish(
        op,
        kspace,
        lambda: jnp.abs(m) * rss(coil_maps),
        maps,
        (key_mask, key_noise),
        coil_maps,
        params,
    )


_field_jit = jax.jit(_field)


@jax.jit
def _finish_bloch(op, kspace, maps, keys, coil_maps, params) -> MRResult:
    return _finish(op, kspace, lambda: rss(ifft2c(kspace)), maps, keys, coil_maps, params)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _sensitivities(
    coils: AbstractCoils, affine: Array, shape: tuple[int, int, int], dtype: Any
) -> Array:
    return coils.sensitivities(affine, shape, dtype=dtype)


# --- planning -------------------------------------------------------------------------------------


def prepare(
    grid: Grid,
    protocol: MRProtocol,
    *,
    compartments: Sequence[str],
    coil_maps: Complex[ArrayLike, "coils x y z"] | None = None,
    dtype: Any = jnp.float32,
) -> MRScanner:
    """Plan an MR acquisition once on the host; apply it purely inside jit, vmap and grad.

    Args:
        grid: the maps' grid (``maps.grid``, ``labeled_volume.grid`` or
            ``medphys.Grid.create(...)``): the acquisition matrix and field of view.
        protocol: the acquisition (e.g. ``medphys.simulators.load("mr-t1-se")``); its sequence's
            type fixes the tier (closed forms / EPG, or Bloch isochromats).
        compartments: the compartment names of the maps the operator will take, in order:
            ``maps.names`` (``tissue_maps`` names them after the phantom's materials, and after
            the structures that carry their own MR values). The SNR reference is resolved
            against them.
        coil_maps: ``(n_coils, x, y, z)`` complex sensitivities to use instead of the protocol's
            coil model (e.g. measured maps).
        dtype: floating dtype the coil maps (and a Bloch sequence) are computed in; maps of
            another precision are acquired in their own, the coil maps cast to it (prepare in
            float64 for float64 reference work).

    Returns:
        `MRScanner` (``acquire(key, maps)``, ``reconstruct(kspace)``).

    Raises:
        TypeError: a grid that is not a `medphys.Grid`, a protocol that is not an `MRProtocol`,
            ``compartments`` that are not a sequence of names.
        ValueError: no compartments or repeated names, ``coil_maps`` of the wrong shape, a
            Bloch-tier sequence whose ADC samples do not encode the grid.
        UnknownNameError: ``protocol.snr_reference`` is not one of ``compartments``.

    Example:
        >>> maps = mr.tissue_maps(phantom, protocol.field_t)  # doctest: +SKIP
        >>> op = mr.prepare(maps.grid, protocol, compartments=maps.names)  # doctest: +SKIP
        >>> result = jax.jit(op.acquire)(jax.random.key(0), maps)  # doctest: +SKIP
    """
    return _prepare(f"{chk.PREFIX}prepare", grid, protocol, compartments, coil_maps, dtype)


def _prepare(
    where: str,
    grid: Any,
    protocol: Any,
    compartments: Any,
    coil_maps: Any,
    dtype: Any,
) -> MRScanner:
    """`prepare`, with errors naming the public call ``where``."""
    if not isinstance(grid, Grid):
        raise TypeError(
            f"{where}: `grid` must be a medphys.Grid (`maps.grid`, or "
            f"medphys.Grid.create(shape, spacing_mm=...)) (got {type(grid).__name__})"
        )
    if not isinstance(protocol, MRProtocol):
        raise TypeError(
            f"{where}: `protocol` must be an MRProtocol (got {type(protocol).__name__})"
        )
    if isinstance(compartments, str) or not all(isinstance(c, str) for c in compartments):
        raise TypeError(
            f"{where}: `compartments` must be a sequence of names, e.g. compartments=maps.names "
            f"(got {compartments!r})"
        )
    names = tuple(compartments)
    if not names or len(set(names)) != len(names):
        raise ValueError(
            f"{where}: `compartments` must be at least one distinct name (got {list(names)})"
        )
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{where}: `dtype` must be a floating dtype (got {dtype})")
    if coil_maps is None:
        maps = _sensitivities(protocol.coils, jnp.asarray(grid.affine, dtype), grid.shape, dtype)
    else:
        shape = tuple(jnp.shape(coil_maps))
        if len(shape) != 4 or shape[0] != protocol.n_coils:
            raise chk.FieldError(
                where,
                "coil_maps",
                f"`coil_maps` must hold protocol.n_coils = {protocol.n_coils} "
                f"maps, shape ({protocol.n_coils}, *grid) (got shape {shape})",
            )
        if shape[1:] != grid.shape:
            raise chk.FieldError(
                where,
                "coil_maps",
                f"`coil_maps` must be on the phantom's grid {grid.shape} (got {shape[1:]})",
            )
        maps = jnp.asarray(coil_maps, dtype=_complex(dtype))
    reference = None
    if protocol.snr is not None and protocol.snr_reference is not None:
        if protocol.snr_reference not in names:
            raise unknown_name(
                "SNR reference material (protocol.snr_reference)", protocol.snr_reference, names
            )
        reference = names.index(protocol.snr_reference)
    bloch = None
    if isinstance(protocol.sequence, AbstractBlochSequence):
        bloch = plan_bloch(where, grid, protocol.sequence, dtype)
    return MRScanner(
        protocol=protocol,
        coil_maps=maps,
        bloch=bloch,
        grid=grid,
        compartments=names,
        reference=reference,
    )
