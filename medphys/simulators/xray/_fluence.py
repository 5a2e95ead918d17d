"""The detected spectrum of each detector column: the one owner of fluence × detector response ×
bowtie transmission.

Every reading the simulators produce, and every calibration the reconstruction applies (water
μ for HU, the water beam-hardening fit), weighs the tube spectrum the same way:

    w1[u, E, c] = N_E · T_bowtie(E, r_u) · R1_c(E),   w2[u, E, c] = N_E · T_bowtie(E, r_u) · R2_c(E),

``N_E`` the spectrum's photons per mAs per mm² at 1 m, ``T_bowtie = exp(-μ_bowtie(E) t(r_u))`` the
bowtie's transmission at the distance ``r_u`` of column ``u``'s ray from the rotation axis
(`ray_radius_mm`), and ``R1_c``, ``R2_c`` the signal and variance weight of one photon of energy
``E`` in channel ``c`` (``E/E0`` and ``(E/E0)²`` for an energy-integrating detector, ``E0`` the mean
energy of the unattenuated spectrum; the bin response for a photon-counting detector). The
geometry's own factors (mAs, inverse square, pixel area, obliquity) multiply it per pixel in the
simulator (``_simulate``).

`detected_spectrum` is traceable (the simulators call it inside ``jax.jit``);
`detected_spectrum_of` evaluates it on the host in float64 for a protocol (``medphys.simulators.ct``
calibrates with it).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..geometry import ConeBeam, FanBeam
from ._bowtie import Bowtie
from ._detector import Detector, channel_weights
from ._protocol import CTProtocol

__all__ = ["detected_spectrum", "detected_spectrum_of", "ray_radius_mm"]


def ray_radius_mm(geometry: Any, dtype: Any) -> Float[Array, " u"]:
    """Distance of each detector column's ray from the rotation axis (mm); for a `ConeBeam`, of
    the column's in-plane (mid-plane) ray, which all its rows share."""
    u = geometry.u_mm(dtype)
    if isinstance(geometry, FanBeam) and geometry.curved:  # u is arc length at sdd: gamma = u / sdd
        sdd = jnp.asarray(geometry.sdd_mm, dtype)
        return jnp.asarray(geometry.sod_mm, dtype) * jnp.abs(jnp.sin(u / sdd))
    if isinstance(geometry, (FanBeam, ConeBeam)):  # flat detector: sin(atan(u / sdd))
        sdd = jnp.asarray(geometry.sdd_mm, dtype)
        return jnp.asarray(geometry.sod_mm, dtype) * jnp.abs(u) / jnp.sqrt(sdd * sdd + u * u)
    return jnp.abs(u)


def detected_spectrum(
    energies_kev: Array,
    photons: Array,
    detector: Detector | None,
    bowtie: Bowtie | None,
    mu_bowtie_mm: Array | None,
    radius_mm: Float[Array, " u"],
    dtype: Any,
) -> tuple[Float[Array, "u energies channels"], Float[Array, "u energies channels"]]:
    """Signal and variance weights ``(w1, w2)`` per column, energy and channel (module docstring).

    Args:
        energies_kev, photons: the `Spectrum`'s leaves.
        detector: the detector (None: an ideal energy-integrating one).
        bowtie, mu_bowtie_mm: optional bowtie and its μ (1/mm) on the energy grid.
        radius_mm: ``(u,)`` distance of each column's ray from the rotation axis
            (`ray_radius_mm`; zeros for the central ray).
        dtype: computation dtype.
    """
    e = jnp.asarray(energies_kev, dtype)
    n = jnp.asarray(photons, dtype)
    if detector is None:
        e0 = jnp.sum(e * n) / jnp.sum(n)
        r1, r2 = (e / e0)[:, None], ((e / e0) ** 2)[:, None]
    else:
        r1, r2 = channel_weights(detector, e, n)
        r1, r2 = r1.astype(dtype), r2.astype(dtype)
    fluence = jnp.broadcast_to(n[None, :], (radius_mm.shape[0], n.shape[0]))
    if bowtie is not None and mu_bowtie_mm is not None:
        t = bowtie.thickness_mm(jnp.asarray(radius_mm, dtype))
        fluence = fluence * jnp.exp(-t[:, None] * jnp.asarray(mu_bowtie_mm, dtype)[None, :])
    return fluence[:, :, None] * r1[None], fluence[:, :, None] * r2[None]


def detected_spectrum_of(
    protocol: CTProtocol, *, per_column: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`detected_spectrum` of a protocol on the host (float64): every detector column of its
    geometry, or the central ray alone (``per_column=False``: one row).

    Returns:
        ``(w1, w2)`` each ``(columns, energies, channels)``.
    """
    s = protocol.spectrum
    e = np.asarray(s.energies_kev, np.float64)
    dtype = jnp.result_type(float)  # float64 where enabled
    with jax.ensure_compile_time_eval():  # host values, also when called inside a trace
        if per_column and protocol.bowtie is not None:
            radius = ray_radius_mm(protocol.geometry, dtype)
        else:
            radius = jnp.zeros((1,), dtype)
        mu_b = None if protocol.bowtie is None else jnp.asarray(protocol.bowtie.mu_per_mm(e), dtype)
        w1, w2 = detected_spectrum(
            jnp.asarray(e, dtype),
            jnp.asarray(s.photons, dtype),
            protocol.detector,
            protocol.bowtie,
            mu_b,
            radius,
            dtype,
        )
        return np.asarray(w1, np.float64), np.asarray(w2, np.float64)
