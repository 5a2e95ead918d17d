"""Polychromatic CT acquisition of a labelled phantom: path lengths → detector signal → noise → −log.

Physics
    Each material's occupancy map (``LabeledVolume.material_fractions``) is projected once, giving
    per-material path lengths ``L_m`` (mm) for every detector reading; all maps are projected
    together (one gather serves all materials and slices). The flat field is an air scan, so air
    in the phantom attenuates exactly as in the flat field: the air map is not projected and every
    other material contributes ``mu_m(E) - mu_air(E)`` (``medphys.materials.attenuation_table``,
    1/cm). For an energy-integrating detector the expected signal and its quantum variance are

        S = sum_E N_E (E/E0) exp(-sum_m (mu_m - mu_air)(E) L_m),
        Var = sum_E N_E (E/E0)^2 exp(...),

    with ``E0`` the mean energy of the unattenuated spectrum (signals are in *photon
    equivalents*) and ``N_E`` the photons reaching one pixel per view: the spectrum's photons per
    mAs per mm² at 1 m × mAs per view × (1000 mm / sdd)² × the pixel area, times cos³γ on a flat
    fan-beam detector (inverse square of the longer path and obliquity, γ the fan angle).

Noise
    The energy-weighted sum of Poisson counts (compound Poisson) is drawn as a scaled Poisson
    variable with the exact mean and variance: ``S = (Var/S) · Poisson(S²/Var)`` (Whiting 2002).
    The Poisson draw is exact (inversion) for effective counts below 16 and Gaussian with the same
    mean and variance above, where the two agree to within the skewness ``1/sqrt(N)`` (≤ 0.25).
    Gaussian electronic noise (``detector.electronic_noise`` photon equivalents) is added; the
    flat field is the noise-free expected air scan (as after averaging many air scans). Readings
    below ``MIN_COUNTS`` are clamped before the log.

The deterministic part (`expected_scan`) and the random part (`add_noise`, key first) are separate
functions; `simulate` chains them.

References:
    B. R. Whiting, "Signal statistics in x-ray computed tomography", Proc. SPIE 4682, 2002.
    J. Hsieh, Computed Tomography: Principles, Design, Artifacts, and Recent Advances, 3rd ed.,
    SPIE, 2015, ch. 2 and 7.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ... import materials
from ..._types import PRNGKey
from ...volume import LabeledVolume
from ..geometry import FanBeam, ParallelBeam, _Planar
from ._projector import _planar_forward, check_geometry, planar_plan
from ._protocol import CTProtocol

__all__ = ["MIN_COUNTS", "XrayScan", "add_noise", "expected_scan", "simulate"]

#: Readings (photon equivalents) are clamped to at least this before the log.
MIN_COUNTS = 0.5
#: Effective counts below which the Poisson draw is exact (inversion); Gaussian above.
_POISSON_EXACT_BELOW = 16.0
_POISSON_TERMS = 48
#: Materials treated as the flat-field medium (not projected).
_BACKGROUND = ("air",)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class XrayScan:
    """The result of a CT acquisition.

    Attributes:
        projections: ``(views, u, v)`` post-log line integrals ``-log(counts / flat_counts)``
            (dimensionless; ∫(μ − μ_air) dl for a monoenergetic beam).
        counts: ``(views, u, v)`` detector readings (photon equivalents), noisy after `add_noise`.
        expected_counts: ``(views, u, v)`` noise-free readings.
        expected_variance: ``(views, u, v)`` quantum variance of the readings (photon
            equivalents², electronic noise excluded): statistical weights for iterative methods.
        flat_counts: ``(u, v)`` expected air-scan reading of each pixel.
        geometry: the geometry with its rows resolved against the phantom.
    """

    projections: Float[Array, "views u v"]
    counts: Float[Array, "views u v"]
    expected_counts: Float[Array, "views u v"]
    expected_variance: Float[Array, "views u v"]
    flat_counts: Float[Array, "u v"]
    geometry: ParallelBeam | FanBeam


def detector_weights(
    energies_kev: Array, photons: Array, mas_per_view: Array, geometry: _Planar, dtype: Any
) -> tuple[Array, Array, Array]:
    """Per-energy signal and variance weights at the central pixel, and the pixel gain along u.

    Args:
        energies_kev, photons: the `Spectrum`'s leaves.
        mas_per_view: the protocol's mAs per view.
        geometry: the resolved geometry (pixel size, distances).
        dtype: computation dtype.

    Returns:
        ``(w1, w2, gain)``: ``w1 = N_E E/E0`` and ``w2 = N_E (E/E0)^2`` ``(energies,)`` for the
        central pixel of one view; ``gain (u,)`` the relative photon flux of each pixel.
    """
    e = jnp.asarray(energies_kev, dtype)
    n = jnp.asarray(photons, dtype)
    e0 = jnp.sum(e * n) / jnp.sum(n)
    distance = jnp.asarray(geometry.flux_distance_mm, dtype)
    height = jnp.asarray(geometry.dv_mm, dtype)
    if isinstance(geometry, FanBeam):
        height = height * jnp.asarray(geometry.sdd_mm, dtype) / jnp.asarray(geometry.sod_mm, dtype)
    area = jnp.asarray(geometry.du_mm, dtype) * height
    per_pixel = n * jnp.asarray(mas_per_view, dtype) * (1000.0 / distance) ** 2 * area
    if isinstance(geometry, FanBeam):
        u = geometry.u_mm(dtype)
        sdd = jnp.asarray(geometry.sdd_mm, dtype)
        gain = (sdd / jnp.sqrt(sdd * sdd + u * u)) ** 3
    else:
        gain = jnp.ones((geometry.n_u,), dtype)
    return per_pixel * (e / e0), per_pixel * (e / e0) ** 2, gain


@partial(jax.jit, static_argnames=("plan", "keep"))
def _expected(plan, keep, fractions, affine, geometry, mu_mm, energies, photons, mas_per_view):
    """Expected readings, their variance, the flat field and the post-log projections."""
    dtype = fractions.dtype
    if keep:
        maps = jnp.moveaxis(fractions[jnp.asarray(keep)], 0, -1)
    else:  # nothing but air: a zero map keeps the shapes static
        maps = jnp.zeros((*fractions.shape[1:], 1), dtype)
    w1, w2, gain = detector_weights(energies, photons, mas_per_view, geometry, dtype)
    mu_mm = mu_mm.astype(dtype)

    def epilogue(view: Array, lengths: Array) -> tuple[Array, Array]:
        line = jnp.einsum("uvm,me->uve", lengths, mu_mm)
        t = jnp.exp(-line)
        return (t @ w1) * gain[:, None], (t @ w2) * gain[:, None]

    mean, var = _planar_forward(plan, maps, affine, geometry, epilogue)
    flat = jnp.broadcast_to((jnp.sum(w1) * gain)[:, None], mean.shape[1:])
    projections = -jnp.log(jnp.maximum(mean, MIN_COUNTS) / flat[None])
    return mean, var, flat, projections


def _check_object_covered(
    where: str, labeled_volume: LabeledVolume, fractions: np.ndarray, geometry: _Planar
) -> None:
    """The detector must see the whole object (every non-air voxel) in every view."""
    if fractions.size == 0:
        return
    support = np.any(fractions > 1e-6, axis=0)
    if not support.any():
        return
    a = np.asarray(labeled_volume.affine, dtype=np.float64)
    idx = np.argwhere(support.any(axis=2)).astype(np.float64)
    xy = idx @ a[:2, :2].T + a[:2, 3] - np.asarray(geometry.isocenter_mm, np.float64)
    half_diag = 0.5 * float(np.linalg.norm(a[:2, :2].sum(axis=1)))
    reach = float(np.max(np.hypot(xy[:, 0], xy[:, 1]))) + half_diag
    fov = geometry.fov_radius_mm()
    if reach > fov:
        raise ValueError(
            f"{where}: the detector does not cover the object: every view sees a circle of radius "
            f"{fov:.1f} mm about the rotation axis, but the object reaches {reach:.1f} mm "
            f"(n_u={geometry.n_u}, du_mm={float(geometry.du_mm):g}); increase `n_u` or `du_mm` "
            "(or `fov_mm` in the protocol file)"
        )


def expected_scan(
    labeled_volume: LabeledVolume, protocol: CTProtocol, *, dtype: Any = None
) -> XrayScan:
    """The noise-free acquisition (deterministic part of `simulate`).

    Args:
        labeled_volume: the phantom; its ``fractions`` are used when present (partial volume).
        protocol: the `CTProtocol`.
        dtype: computation dtype; default the fractions' floating dtype, else float32.

    Returns:
        `XrayScan` with ``counts == expected_counts``.

    Raises:
        TypeError: wrong argument types.
        ValueError: the source passes through the phantom, the detector does not cover the
            object, or the phantom's third axis is not the world z axis.
    """
    where = "medphys.simulators.xray.simulate"
    if not isinstance(labeled_volume, LabeledVolume):
        raise TypeError(
            f"{where}: `labeled_volume` must be a LabeledVolume (got {type(labeled_volume).__name__})"
        )
    if not isinstance(protocol, CTProtocol):
        raise TypeError(f"{where}: `protocol` must be a CTProtocol (got {type(protocol).__name__})")
    if dtype is None:
        f = labeled_volume.fractions
        dtype = f.dtype if f is not None and jnp.issubdtype(f.dtype, jnp.floating) else jnp.float32
    geometry = protocol.geometry.with_rows_for(labeled_volume)
    check_geometry(where, labeled_volume, geometry)

    names = labeled_volume.material_names
    keep = [i for i, m in enumerate(names) if m not in _BACKGROUND]
    fractions = labeled_volume.material_fractions(dtype)
    if not isinstance(fractions, jax.core.Tracer):
        _check_object_covered(where, labeled_volume, np.asarray(fractions)[keep], geometry)
    spectrum = protocol.spectrum
    energies = np.asarray(spectrum.energies_kev, np.float64)
    mu_air = materials.attenuation_table(["air"], energies)[0]
    if keep:
        mu = materials.attenuation_table([names[i] for i in keep], energies) - mu_air[None, :]
    else:
        mu = np.zeros((1, energies.size))
    plan = planar_plan(
        labeled_volume.shape,
        labeled_volume.affine,
        protocol.geometry,
        batch=max(len(keep), 1),
        where=where,
    )
    # the plan follows the protocol's geometry: n_rows=None → the rows are the slices
    mean, var, flat, projections = _expected(
        plan,
        tuple(keep),
        fractions,
        jnp.asarray(labeled_volume.affine),
        jax.tree_util.tree_map(jnp.asarray, geometry),
        jnp.asarray(mu / 10.0),  # 1/cm → 1/mm
        jnp.asarray(spectrum.energies_kev),
        jnp.asarray(spectrum.photons),
        jnp.asarray(protocol.mas_per_view),
    )
    return XrayScan(
        projections=projections,
        counts=mean,
        expected_counts=mean,
        expected_variance=var,
        flat_counts=flat,
        geometry=geometry,
    )


def _poisson(key: PRNGKey, lam: Array) -> Array:
    """Poisson draws: exact by inversion below `_POISSON_EXACT_BELOW`, Gaussian above."""
    k_u, k_n = jax.random.split(key)
    small = jnp.minimum(lam, _POISSON_EXACT_BELOW)
    u = jax.random.uniform(k_u, lam.shape, lam.dtype)
    p = jnp.exp(-small)
    cdf = p
    x = jnp.zeros_like(lam)
    for i in range(1, _POISSON_TERMS):  # unrolled: XLA fuses it into one pass over the data
        x = x + (u > cdf).astype(lam.dtype)
        p = p * small / i
        cdf = cdf + p
    gauss = lam + jnp.sqrt(lam) * jax.random.normal(k_n, lam.shape, lam.dtype)
    return jnp.where(lam < _POISSON_EXACT_BELOW, x, jnp.maximum(gauss, 0.0))


@jax.jit
def _noisy(key, mean, var, flat, sigma):
    k_q, k_e = jax.random.split(key)
    dtype = mean.dtype
    tiny = jnp.asarray(jnp.finfo(dtype).tiny, dtype)
    positive = (mean > tiny) & (var > tiny)
    safe_mean = jnp.where(positive, mean, 1.0)
    safe_var = jnp.where(positive, var, 1.0)
    n_eff = jnp.where(positive, safe_mean * safe_mean / safe_var, 0.0)
    scale = safe_var / safe_mean
    counts = scale * _poisson(k_q, n_eff) + jnp.asarray(sigma, dtype) * jax.random.normal(
        k_e, mean.shape, dtype
    )
    projections = -jnp.log(jnp.maximum(counts, MIN_COUNTS) / flat[None])
    return counts, projections


def add_noise(key: PRNGKey, scan: XrayScan, protocol: CTProtocol) -> XrayScan:
    """Quantum (compound Poisson) and electronic noise on an `expected_scan` result.

    Args:
        key: `jax.random` key; the same key gives the same bytes.
        scan: a noise-free scan (its ``expected_counts`` and ``expected_variance`` are used).
        protocol: supplies the detector's electronic noise.

    Returns:
        the scan with noisy ``counts`` and their ``projections``.
    """
    counts, projections = _noisy(
        key,
        scan.expected_counts,
        scan.expected_variance,
        scan.flat_counts,
        jnp.asarray(protocol.detector.electronic_noise),
    )
    return dataclasses.replace(scan, counts=counts, projections=projections)


def simulate(labeled_volume: LabeledVolume, protocol: CTProtocol, key: PRNGKey) -> XrayScan:
    """A noisy polychromatic CT acquisition of a labelled phantom.

    Args:
        labeled_volume: the phantom (labels, material table, optional partial-volume fractions).
        protocol: geometry, spectrum, dose and detector (`CTProtocol`, e.g.
            ``medphys.simulators.load("ct-chest-120kvp")``).
        key: `jax.random` key for the noise.

    Returns:
        `XrayScan`: post-log projections ``(views, u, v)``, noisy and expected counts, flat field
        and the resolved geometry. Float32 unless the phantom's fractions are float64.

    Raises:
        as `expected_scan`.

    Example:
        >>> protocol = medphys.simulators.load("ct-chest-120kvp")
        >>> scan = simulate(phantom, protocol, jax.random.key(0))
        >>> image = medphys.simulators.ct.reconstruct(scan, protocol, like=phantom)
    """
    return add_noise(key, expected_scan(labeled_volume, protocol), protocol)
