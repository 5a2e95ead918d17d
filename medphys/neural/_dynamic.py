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

References:
    Pumarola et al., "D-NeRF: neural radiance fields for dynamic scenes", CVPR 2021 (canonical
    space plus a deformation network).
    Zhang et al., "Dynamic cone-beam CT reconstruction using spatial and temporal implicit neural
    representation learning (STINR)", IEEE TMI 2023.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._checks import positive_int, positive_number
from ._fields import _MLP, AbstractField, Frozen, fourier_features

__all__ = ["DeformingField"]


class DeformingField(AbstractField):
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
        if not isinstance(canonical, AbstractField) or isinstance(canonical, DeformingField):
            raise TypeError(
                f"{where}: `canonical` must be a static medphys.neural field "
                f"(got {type(canonical).__name__})"
            )
        self.canonical = canonical
        self.domain, self.dim, self.scale = canonical.domain, canonical.dim, canonical.scale
        self.duration_s = positive_number(where, "duration_s", duration_s)
        self.max_displacement = positive_number(where, "max_displacement", max_displacement)
        n = positive_int(where, "n_frequencies", n_frequencies)
        su, st = (
            positive_number(where, "sigma_u", sigma_u),
            positive_number(where, "sigma_t", sigma_t),
        )
        self.period_s = None if period_s is None else positive_number(where, "period_s", period_s)
        n_time = 1 if self.period_s is None else 2
        k_b, k_mlp = jax.random.split(key)
        std = jnp.asarray([su] * self.dim + [st] * n_time, jnp.float32)
        self.frequencies = Frozen(
            jax.random.normal(k_b, (n, self.dim + n_time), jnp.float32) * std[None, :]
        )
        self.mlp = _MLP(where, 2 * n, width, layers, k_mlp, n_out=self.dim)
        self.mlp.out.kernel[...] = jnp.zeros_like(self.mlp.out.kernel[...])

    @property
    def temporal(self) -> bool:
        return True

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

    def __call__(
        self, u: Float[Array, "*batch dim"], time_s: Float[Array, "*batch"] | None = None
    ) -> Float[Array, "*batch"]:
        """Attenuation (1/mm) at ``u`` and time ``time_s`` (seconds; None: time 0)."""
        if time_s is None:
            time_s = jnp.zeros(u.shape[:-1], u.dtype)
        return self.canonical(u + self.displacement(u, time_s))
