"""One MR acquisition in one call: phantom → tissue maps → coil k-space → magnitude image.

`acquire(key, maps, protocol)` and `simulate(key, labeled_volume, protocol)` prepare an
`MRScanner` for the maps' grid and compartments (`prepare`) and apply it; the acquisition model is
described in `medphys.simulators.mr._scanner`. The grid and the compartment names are static, so
both run inside ``jax.jit`` and ``jax.vmap`` (cases stacked on one grid) for the closed-form tiers;
in a loop over many cases, or a training loop, prepare the operator once instead: the coil maps
are then computed once.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import ArrayLike, Complex

from ..._types import PRNGKey
from ...volume import LabeledVolume
from . import _checks as chk
from ._protocol import MRProtocol, MRResult
from ._scanner import _prepare
from ._tissue import TissueMaps, tissue_maps

__all__ = ["acquire", "simulate"]


def acquire(
    key: PRNGKey,
    maps: TissueMaps,
    protocol: MRProtocol,
    *,
    coil_maps: Complex[ArrayLike, "coils x y z"] | None = None,
) -> MRResult:
    """Acquire k-space and reconstruct a magnitude image from tissue maps.

    Equivalent to ``prepare(maps.grid, protocol, compartments=maps.names, coil_maps=coil_maps,
    dtype=maps.dtype).acquire(key, maps)`` (the same bytes). Compiled once per grid, compartment
    list, dtype and protocol structure.

    Args:
        key: ``jax.random`` key (field variation, random mask, noise).
        maps: tissue maps (from `tissue_maps` or `TissueMaps.create`).
        protocol: the acquisition.
        coil_maps: ``(n_coils, x, y, z)`` complex sensitivities to use instead of the protocol's
            coil model (e.g. measured maps).

    Returns:
        `MRResult`.

    Raises:
        TypeError: wrong argument types; a Bloch-tier protocol given traced maps.
        ValueError: ``coil_maps`` whose coil count differs from ``protocol.n_coils`` or whose grid
            differs from the maps'.
        UnknownNameError: ``protocol.snr_reference`` is not a compartment of the maps.

    Example:
        >>> maps = mr.tissue_maps(phantom, 1.5)  # doctest: +SKIP
        >>> result = mr.acquire(jax.random.key(0), maps, protocol)  # doctest: +SKIP
    """
    where = f"{chk.PREFIX}acquire"
    if not isinstance(maps, TissueMaps):
        raise TypeError(
            f"{where}: `maps` must be a TissueMaps (got {type(maps).__name__}); the key comes "
            "first: acquire(key, maps, protocol)"
        )
    op = _prepare(where, maps.grid, protocol, maps.names, coil_maps, maps.dtype)
    return op._apply(where, key, maps)


def simulate(
    key: PRNGKey,
    labeled_volume: LabeledVolume,
    protocol: MRProtocol,
    *,
    coil_maps: Complex[ArrayLike, "coils x y z"] | None = None,
    dtype: Any = jnp.float32,
) -> MRResult:
    """Simulate an MR acquisition of a phantom: `tissue_maps` then `acquire`.

    The protocol's sequence selects the tier: closed forms / EPG for `SpinEcho`, ...,
    `FastSpinEcho`; Bloch isochromats with full encoding for `BlochSpinEcho`,
    `BlochGradientEcho` and `PulseqSequence` (isochromats chosen on the host: call it outside
    ``jax.jit``).

    Args:
        key: ``jax.random`` key; the same key gives the same result (first, as everywhere).
        labeled_volume: the phantom (labels, material table, optional partial-volume fractions).
        protocol: the acquisition (e.g. ``medphys.simulators.load("mr-t1-se")``).
        coil_maps: optional ``(n_coils, x, y, z)`` complex sensitivities overriding the protocol's.
        dtype: floating dtype (float32; float64 for reference checks).

    Returns:
        `MRResult`; ``result.image`` is a `medphys.Volume` with the phantom's affine.

    Raises:
        TypeError, ValueError, UnknownNameError: see `tissue_maps` and `acquire`.

    Example:
        >>> protocol = medphys.simulators.load("mr-t1-se")  # doctest: +SKIP
        >>> result = simulate(jax.random.key(0), phantom, protocol)  # doctest: +SKIP
        >>> result.image.data.shape == phantom.shape  # doctest: +SKIP
        True
    """
    where = f"{chk.PREFIX}simulate"
    if not isinstance(labeled_volume, LabeledVolume):
        raise TypeError(
            f"{where}: `labeled_volume` must be a medphys.LabeledVolume "
            f"(got {type(labeled_volume).__name__}); the key comes first: "
            "simulate(key, labeled_volume, protocol)"
        )
    if not isinstance(protocol, MRProtocol):
        raise TypeError(
            f"{where}: `protocol` must be an MRProtocol (got {type(protocol).__name__})"
        )
    maps = tissue_maps(labeled_volume, protocol.field_t, dtype=dtype)
    op = _prepare(where, maps.grid, protocol, maps.names, coil_maps, maps.dtype)
    return op._apply(where, key, maps)
