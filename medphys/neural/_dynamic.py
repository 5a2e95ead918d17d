"""A time-conditioned attenuation field: a canonical field seen through a learned deformation.

``μ(u, t) = canonical(u + D(u, t))``: the canonical field holds the anatomy once; ``D`` (random
Fourier features of ``(u, t)`` and a small MLP, its last layer zero at the start so that training
starts from the static field) moves it. Every view of an ungated acquisition has its own time
(`medphys.neural.trace_rays(..., view_times_s=...)`), so one sweep over a breathing patient
reconstructs the whole cycle, and `to_volume(field, grid, time_s=t)` gives the anatomy at any
instant.

Spatial frequencies are few and low (breathing moves organs smoothly); temporal frequencies should
reach the number of motion cycles in the acquisition (``sigma_t`` in cycles per ``duration_s``).
With ``period_s`` the motion is periodic instead: time enters as its point on a circle,
``(cos 2πt/T, sin 2πt/T)``, so ``μ(u, t + T) = μ(u, t)`` exactly and every breathing cycle of the
sweep informs the same deformation (the continuous counterpart of phase binning; give the views'
respiratory phase times ``T`` when the breathing is irregular).

Two deformation models: `DeformingField`'s network (any motion, at the cost of an MLP at every
sample) and `GridDeformingField`'s coarse control grids with a temporal Fourier basis,
``D(u, t) = Σ_k φ_k(t) G_k(u)`` (trilinear in ``u``; ``cos``/``sin`` harmonics of the breathing
period in ``t``, so the time-mean displacement is zero and the canonical volume is the
time-averaged anatomy): the respiratory motion models of motion-compensated 4D-CBCT, smooth by
construction, with a few thousand parameters and a few gathers per sample.

References:
    Pumarola et al., "D-NeRF: neural radiance fields for dynamic scenes", CVPR 2021 (canonical
    space plus a deformation network).
    Zhang et al., "Dynamic cone-beam CT reconstruction using spatial and temporal implicit neural
    representation learning (STINR)", IEEE TMI 2023.
    Rit et al., "On-the-fly motion-compensated cone-beam CT using an a priori model of the
    respiratory motion", Med. Phys. 36(6), 2283-2296 (2009).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from ._checks import positive_int, positive_number
from ._fields import _MLP, AbstractField, Frozen, _interpolate, fourier_features

__all__ = ["DeformingField", "GridDeformingField"]


class _Deforming(AbstractField):
    """What both deformation models share: ``canonical(u + D(u, t))``, with ``D`` the
    subclass's ``displacement(u, time_s)``."""

    canonical: AbstractField
    duration_s: float
    period_s: float | None
    max_displacement: float

    def _init_deforming(
        self, where: str, canonical: Any, duration_s: Any, period_s: Any, max_displacement: Any
    ) -> None:
        if not isinstance(canonical, AbstractField) or canonical.temporal:
            raise TypeError(
                f"{where}: `canonical` must be a static medphys.neural field "
                f"(got {type(canonical).__name__})"
            )
        self.canonical = canonical
        self.domain, self.dim, self.scale = canonical.domain, canonical.dim, canonical.scale
        self.duration_s = positive_number(where, "duration_s", duration_s)
        self.max_displacement = positive_number(where, "max_displacement", max_displacement)
        self.period_s = None if period_s is None else positive_number(where, "period_s", period_s)

    @property
    def temporal(self) -> bool:
        return True

    def __call__(
        self, u: Float[Array, "*batch dim"], time_s: Float[Array, "*batch"] | None = None
    ) -> Float[Array, "*batch"]:
        """Attenuation (1/mm) at ``u`` and time ``time_s`` (seconds; None: time 0)."""
        if time_s is None:
            time_s = jnp.zeros(u.shape[:-1], u.dtype)
        return self.canonical(u + self.displacement(u, time_s))


class DeformingField(_Deforming):
    """``canonical(u + D(u, t))`` with ``D`` an MLP on Fourier features of ``(u, t / duration_s)``.

    Args:
        key: draws the frequencies and initialises the deformation MLP.
        canonical: any static field (its domain, dimension and scale are this field's).
        duration_s: the acquisition's length (s); times are read as ``t / duration_s``.
        max_displacement: bound on ``|D|`` per axis, in box units (``tanh``-limited).
        n_frequencies: Fourier features of ``(u, t)``.
        sigma_u: spatial frequencies' standard deviation (cycles per box width).
        sigma_t: temporal frequencies' standard deviation (cycles per ``duration_s``; with
            ``period_s``, per unit of the time circle's coordinates).
        period_s: the motion's period (s), or None (aperiodic). When given, ``duration_s`` only
            bounds the acquisition.
        width, layers: the deformation MLP.
    """

    def __init__(
        self,
        key: Array,
        canonical: AbstractField,
        *,
        duration_s: float,
        max_displacement: float = 0.1,
        n_frequencies: int = 64,
        sigma_u: float = 1.5,
        sigma_t: float = 8.0,
        period_s: float | None = None,
        width: int = 64,
        layers: int = 2,
    ) -> None:
        where = "medphys.neural.DeformingField"
        self._init_deforming(where, canonical, duration_s, period_s, max_displacement)
        n = positive_int(where, "n_frequencies", n_frequencies)
        su, st = (
            positive_number(where, "sigma_u", sigma_u),
            positive_number(where, "sigma_t", sigma_t),
        )
        n_time = 1 if self.period_s is None else 2
        k_b, k_mlp = jax.random.split(key)
        std = jnp.asarray([su] * self.dim + [st] * n_time, jnp.float32)
        self.frequencies = Frozen(
            jax.random.normal(k_b, (n, self.dim + n_time), jnp.float32) * std[None, :]
        )
        self.mlp = _MLP(where, 2 * n, width, layers, k_mlp, n_out=self.dim)
        self.mlp.out.kernel[...] = jnp.zeros_like(self.mlp.out.kernel[...])

    def displacement(
        self, u: Float[Array, "*batch dim"], time_s: Float[Array, "*batch"]
    ) -> Float[Array, "*batch dim"]:
        """``D(u, t)`` in box units."""
        if self.period_s is None:
            t = (time_s / self.duration_s)[..., None]
        else:
            angle = (2 * jnp.pi / self.period_s) * time_s
            t = jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
        x = jnp.concatenate([u, t.astype(u.dtype)], axis=-1)
        h = fourier_features(x, self.frequencies[...])
        return self.max_displacement * jnp.tanh(self.mlp.vector(h))


class GridDeformingField(_Deforming):
    """``canonical(u + D(u, t))`` with ``D(u, t) = max_displacement · tanh(Σ_k φ_k(t) G_k(u))``:
    coarse control grids ``G_k`` interpolated trilinearly and a temporal Fourier basis ``φ_k``.

    With ``period_s`` the basis is ``cos``/``sin`` of ``2π j t / T`` for ``j = 1 … harmonics``
    (periodic motion; give the views' respiratory phase times ``T`` for irregular breathing);
    without it, ``cos(π j t / duration_s)`` for ``j = 1 … 2·harmonics`` (any slow motion over the
    acquisition). The grids start at zero: training starts from the static field.

    Args:
        canonical: any static field (its domain, dimension and scale are this field's).
        duration_s: the acquisition's length (s).
        period_s: the motion's period (s), or None (aperiodic).
        control_points: control grid size per axis (``dim`` entries, each ≥ 2), spread over the
            box like voxel centres; default 8 per axis.
        harmonics: temporal harmonics (``2·harmonics`` basis functions either way).
        max_displacement: bound on ``|D|`` per axis, in box units (``tanh``-limited).
    """

    def __init__(
        self,
        canonical: AbstractField,
        *,
        duration_s: float,
        period_s: float | None = None,
        control_points: tuple[int, ...] | None = None,
        harmonics: int = 2,
        max_displacement: float = 0.1,
    ) -> None:
        where = "medphys.neural.GridDeformingField"
        self._init_deforming(where, canonical, duration_s, period_s, max_displacement)
        self.harmonics = positive_int(where, "harmonics", harmonics)
        if control_points is None:
            control_points = (8,) * self.dim
        points = tuple(control_points) if isinstance(control_points, tuple | list) else ()
        if len(points) != self.dim or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in points
        ):
            raise ValueError(
                f"{where}: `control_points` must be {self.dim} integers ≥ 2, one per axis of "
                f"the {self.dim}-D domain (got {control_points!r})"
            )
        self.control_points = points
        self.grids = nnx.Param(jnp.zeros((2 * self.harmonics, *points, self.dim), jnp.float32))

    def basis(self, time_s: Float[Array, "*batch"]) -> Float[Array, "*batch k"]:
        """The temporal basis ``φ_k(t)`` (``2·harmonics`` functions)."""
        t = time_s[..., None]
        lift = (1,) * (t.ndim - 1) + (-1,)
        if self.period_s is None:
            j = jnp.arange(1, 2 * self.harmonics + 1, dtype=jnp.float32).reshape(lift)
            return jnp.cos((jnp.pi / self.duration_s) * t * j)
        j = jnp.arange(1, self.harmonics + 1, dtype=jnp.float32).reshape(lift)
        angle = (2 * jnp.pi / self.period_s) * t * j
        return jnp.concatenate([jnp.cos(angle), jnp.sin(angle)], axis=-1)

    def displacement(
        self, u: Float[Array, "*batch dim"], time_s: Float[Array, "*batch"]
    ) -> Float[Array, "*batch dim"]:
        """``D(u, t)`` in box units."""
        grids = self.grids[...]
        k = grids.shape[0]
        # the basis' grids as one grid of k·dim channels, interpolated at once
        stacked = jnp.moveaxis(grids, 0, -2).reshape((*grids.shape[1:-1], k * self.dim))
        g = jax.vmap(lambda c: _interpolate(c, u), in_axes=-1, out_axes=-1)(stacked)
        g = g.reshape((*u.shape[:-1], k, self.dim))
        phi = self.basis(time_s).astype(g.dtype)
        return self.max_displacement * jnp.tanh(jnp.einsum("...k,...kd->...d", phi, g))
