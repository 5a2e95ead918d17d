"""Polychromatic CT acquisition of a labelled phantom: path lengths → detector signal → noise → −log.

Physics
    Each material's occupancy map (``LabeledVolume.material_fractions``) is projected once, giving
    per-material path lengths ``L_m`` (mm) for every detector reading (times the phantom's
    ``density_scale`` when it has one: a textured voxel holds ``scale`` × the material's
    density, so ``L_m`` becomes the line integral of ``f_m × scale``); all maps are projected
    together (one gather serves all materials and slices). The flat field is an air scan, so air
    in the phantom attenuates exactly as in the flat field: the air map is not projected and every
    other material contributes ``mu_m(E) - mu_air(E)`` (``medphys.materials.attenuation_table``,
    1/cm). For an energy-integrating detector the expected signal and its quantum variance are

        S = sum_E N_E (E/E0) exp(-sum_m (mu_m - mu_air)(E) L_m),
        Var = sum_E N_E (E/E0)^2 exp(...),

    with ``E0`` the mean energy of the unattenuated spectrum (signals are in *photon
    equivalents*) and ``N_E`` the photons reaching one pixel per view: the spectrum's photons per
    mAs per mm² at 1 m × mAs per view × (1000 mm / sdd)² × the pixel area, times cos³γ on a flat
    fan-beam detector (inverse square of the longer path and obliquity, γ the fan angle); a curved
    (equiangular) detector has every pixel at sdd facing the source, so no such factor.

    A `Bowtie` multiplies ``N_E`` of each detector column by ``exp(-mu_bowtie(E) t(u))``; the flat
    field sees it too. On a `ConeBeam` flat panel the thickness is that of the column's in-plane
    fan angle ``gamma = atan(u / sdd)`` (``t(sod |sin gamma|)``), shared by all rows. A
    `PhotonCountingDetector` replaces the weights ``E/E0``, ``(E/E0)^2`` by the bin response
    ``P(bin | E)`` (one channel per bin, see `medphys.simulators.xray`'s ``_detector``). The
    detector blur then smooths the expected signal along ``u``, and a `KernelScatter` adds its
    low-frequency scatter estimate (``_scatter``), both before noise.

Noise
    The energy-weighted sum of Poisson counts (compound Poisson) is drawn as a scaled Poisson
    variable with the exact mean and variance: ``S = (Var/S) · Poisson(S²/Var)`` (Whiting 2002).
    The Poisson draw is exact (inversion) for effective counts below 16 and Gaussian with the same
    mean and variance above, where the two agree to within the skewness ``1/sqrt(N)`` (≤ 0.25).
    Photon-counting bins are independent Poisson variables (variance = mean); their sum gives the
    scan's total counts.
    Gaussian electronic noise (``detector.electronic_noise`` photon equivalents) is added; the
    flat field is the noise-free expected air scan (as after averaging many air scans). Readings
    below ``MIN_COUNTS`` are clamped before the log.

The deterministic part (`Scanner.expected`, `expected_scan`) and the random part (`add_noise`, key
first) are separate functions; `Scanner.simulate` and `simulate` chain them (``_scanner``).

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
from jaxtyping import Array, Float

from ..._types import PRNGKey
from ..geometry import FanBeam, _Planar
from ._bowtie import Bowtie
from ._detector import Detector, PhotonCountingDetector, smooth
from ._fluence import detected_spectrum, ray_radius_mm
from ._projector import _planar_forward
from ._protocol import CTProtocol
from ._scatter import scatter_signal

__all__ = ["MIN_COUNTS", "XrayScan", "add_noise"]

#: Readings (photon equivalents) are clamped to at least this before the log.
MIN_COUNTS = 0.5
#: Effective counts below which the Poisson draw is exact (inversion); Gaussian above.
_POISSON_EXACT_BELOW = 16.0
_POISSON_TERMS = 48


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
        flat_counts: ``(u, v)`` expected air-scan reading of each pixel (``(views, u, v)`` for
            point-source, flat-panel geometries, whose flat field may change from view to view).
        geometry: the geometry with its rows resolved against the phantom.
        bin_counts, bin_expected_counts, bin_expected_variance: ``(bins, views, u, v)`` per
            energy bin of a `PhotonCountingDetector` (None for an energy-integrating one); the
            fields above then hold the totals over the bins.
        bin_flat_counts: ``(bins, u, v)`` air-scan counts per bin (or None).
    """

    projections: Float[Array, "views u v"]
    counts: Float[Array, "views u v"]
    expected_counts: Float[Array, "views u v"]
    expected_variance: Float[Array, "views u v"]
    flat_counts: Float[Array, "*views u v"]
    geometry: Any
    bin_counts: Float[Array, "bins views u v"] | None = None
    bin_expected_counts: Float[Array, "bins views u v"] | None = None
    bin_expected_variance: Float[Array, "bins views u v"] | None = None
    bin_flat_counts: Float[Array, "bins u v"] | None = None

    @property
    def bin_projections(self) -> Float[Array, "bins views u v"] | None:
        """Post-log line integrals per energy bin (photon-counting detectors), else None."""
        if self.bin_counts is None or self.bin_flat_counts is None:
            return None
        floor = jnp.maximum(self.bin_counts, MIN_COUNTS)
        flat = self.bin_flat_counts
        return -jnp.log(floor / (flat if flat.ndim == floor.ndim else flat[:, None]))


def detector_weights(
    energies_kev: Array,
    photons: Array,
    mas_per_view: Array,
    geometry: _Planar,
    dtype: Any,
    detector: Detector | None = None,
    bowtie: Bowtie | None = None,
    mu_bowtie_mm: Array | None = None,
) -> tuple[Array, Array]:
    """Per-pixel, per-energy signal and variance weights of each detector channel.

    Args:
        energies_kev, photons: the `Spectrum`'s leaves.
        mas_per_view: the protocol's mAs per view.
        geometry: the resolved geometry (pixel size, distances).
        dtype: computation dtype.
        detector: default an ideal energy-integrating detector.
        bowtie, mu_bowtie_mm: optional bowtie filter and its μ (1/mm) on the energy grid.

    Returns:
        ``(w1, w2)`` each ``(u, energies, channels)``: the expected reading of column ``u`` is
        ``sum_E w1[u, E] exp(-line integral at E)``; ``w2`` likewise gives its quantum variance.
    """
    distance = jnp.asarray(geometry.flux_distance_mm, dtype)
    height = jnp.asarray(geometry.dv_mm, dtype)
    if isinstance(geometry, FanBeam):
        height = height * jnp.asarray(geometry.sdd_mm, dtype) / jnp.asarray(geometry.sod_mm, dtype)
    area = jnp.asarray(geometry.du_mm, dtype) * height
    per_pixel = jnp.asarray(mas_per_view, dtype) * (1000.0 / distance) ** 2 * area
    if isinstance(geometry, FanBeam) and not geometry.curved:
        # flat detector: longer path (inverse square) and oblique incidence, cos^3 of the fan angle
        u = geometry.u_mm(dtype)
        sdd = jnp.asarray(geometry.sdd_mm, dtype)
        gain = (sdd / jnp.sqrt(sdd * sdd + u * u)) ** 3
    else:  # parallel beam, or a curved detector whose pixels all sit at sdd facing the source
        gain = jnp.ones((geometry.n_u,), dtype)
    w1, w2 = detected_spectrum(
        energies_kev,
        photons,
        detector,
        bowtie,
        mu_bowtie_mm,
        ray_radius_mm(geometry, dtype),
        dtype,
    )
    scale = (gain * per_pixel)[:, None, None]
    return scale * w1, scale * w2


def detector_pitch_mm(geometry: _Planar, dtype: Any) -> tuple[Array, Array]:
    """Pixel pitch along u and rows, measured on the detector (mm): ``du_mm``, and ``dv_mm``
    scaled from the isocentre to the detector for a fan beam (whose rows are given at the
    isocentre), as arrays of ``dtype``."""
    dv = jnp.asarray(geometry.dv_mm, dtype)
    if isinstance(geometry, FanBeam):
        dv = dv * jnp.asarray(geometry.sdd_mm, dtype) / jnp.asarray(geometry.sod_mm, dtype)
    return jnp.asarray(geometry.du_mm, dtype), dv


@partial(jax.jit, static_argnames=("plan",))
def _planar_readings(plan, maps, affine, protocol, mu_mm, mu_bowtie_mm):
    """Readings and their variance per channel ``(views, u, rows, c)`` of ``maps``
    ``(rows of mu_mm, x, y, z)``, before detector blur and scatter (a function of each row's own
    slices when rows are slices: large volumes go through it slab by slab)."""
    dtype = maps.dtype
    w1, w2 = _planar_weights(protocol, mu_bowtie_mm, dtype)
    mu_mm = mu_mm.astype(dtype)

    def epilogue(view: Array, lengths: Array) -> tuple[Array, Array]:
        line = jnp.einsum("uvm,me->uve", lengths, mu_mm)
        t = jnp.exp(-line)
        return jnp.einsum("uve,uec->uvc", t, w1), jnp.einsum("uve,uec->uvc", t, w2)

    return _planar_forward(plan, jnp.moveaxis(maps, 0, -1), affine, protocol.geometry, epilogue)


def _planar_weights(protocol, mu_bowtie_mm, dtype):
    p = protocol
    return detector_weights(
        p.spectrum.energies_kev,
        p.spectrum.photons,
        p.mas_per_view,
        p.geometry,
        dtype,
        p.detector,
        p.bowtie,
        mu_bowtie_mm,
    )


@jax.jit
def _planar_finish(mean, var, protocol, mu_bowtie_mm):
    """Readings ``(views, u, rows, c)`` → with the flat field, detector blur and scatter."""
    dtype = mean.dtype
    geometry = protocol.geometry
    w1, w2 = _planar_weights(protocol, mu_bowtie_mm, dtype)
    n_rows = mean.shape[2]
    flat = jnp.broadcast_to(jnp.sum(w1, axis=1)[:, None, :], (geometry.n_u, n_rows, w1.shape[2]))
    flat_var = jnp.broadcast_to(
        jnp.sum(w2, axis=1)[:, None, :], (geometry.n_u, n_rows, w2.shape[2])
    )
    du, dv = detector_pitch_mm(geometry, dtype)
    return _blur_and_scatter(mean, var, flat, flat_var, du, dv, protocol.detector, protocol.scatter)


def _blur_and_scatter(mean, var, flat, flat_var, du, dv, detector, scatter):
    """Detector blur along u, then the kernel scatter estimate; ``flat`` is ``(u, v, c)`` or
    ``(views, u, v, c)``."""
    u_axis = 1 if flat.ndim == mean.ndim else 0
    if detector is not None:
        fwhm = jnp.asarray(detector.blur_fwhm_mm, mean.dtype)

        def blur(x: Array, axis: int) -> Array:
            return jax.lax.cond(fwhm > 0, lambda y: smooth(y, axis, du, fwhm), lambda y: y, x)

        mean, var, flat = blur(mean, 1), blur(var, 1), blur(flat, u_axis)
    if scatter is not None:
        s = scatter_signal(scatter, mean, flat, du, dv)
        ratio = flat_var / flat
        mean = mean + s
        var = var + s * (ratio if ratio.ndim == s.ndim else ratio[None])
    return mean, var, flat


def _post_log(mean, flat):
    flat = flat if flat.ndim == mean.ndim else flat[None]
    return -jnp.log(jnp.maximum(mean, MIN_COUNTS) / flat)


def _projective_weights(
    geometry, view, energies, photons, mas_per_view, dtype, detector, bowtie=None, mu_bowtie=None
):
    """``(w1, w2)`` each ``(u, v, E, c)`` for one view of a point-source, flat-panel geometry:
    photons per mAs per mm² at 1 m × mAs × (1000 mm / ray length)² × pixel area × obliquity,
    times the bowtie's transmission of each detector column (`ConeBeam` only; rows share it)."""
    _, _, e_u, e_v = geometry.pose(view, dtype)
    rays = geometry.rays(view, dtype)
    normal = jnp.cross(e_u, e_v)
    normal = normal / jnp.sqrt(jnp.sum(normal * normal))
    cos = jnp.abs(jnp.sum(rays.directions * normal[None, None, :], axis=-1))
    area = jnp.asarray(geometry.du_mm, dtype) * jnp.asarray(geometry.dv_mm, dtype)
    geom = (1000.0 / rays.t_max) ** 2 * area * cos * jnp.asarray(mas_per_view, dtype)  # (u, v)
    # a bowtie (ConeBeam) acts per column, shared by the rows
    radius = jnp.zeros((geometry.n_u,), dtype) if bowtie is None else ray_radius_mm(geometry, dtype)
    w1, w2 = detected_spectrum(energies, photons, detector, bowtie, mu_bowtie, radius, dtype)
    return geom[:, :, None, None] * w1[:, None], geom[:, :, None, None] * w2[:, None]


@jax.jit
def _expected_projective(lengths, protocol, mu_mm, mu_bowtie):
    """Per-material path lengths ``(views, u, v, m)`` → readings, variance and flat field per
    channel, each ``(views, u, v, c)``."""
    p = protocol
    geometry, energies, photons, mas_per_view = (
        p.geometry,
        p.spectrum.energies_kev,
        p.spectrum.photons,
        p.mas_per_view,
    )
    detector, scatter, bowtie = p.detector, p.scatter, p.bowtie
    dtype = lengths.dtype

    def one(args):
        view, lv = args
        w1, w2 = _projective_weights(
            geometry, view, energies, photons, mas_per_view, dtype, detector, bowtie, mu_bowtie
        )
        t = jnp.exp(-jnp.einsum("uvm,me->uve", lv, mu_mm.astype(dtype)))
        return (
            jnp.einsum("uve,uvec->uvc", t, w1),
            jnp.einsum("uve,uvec->uvc", t, w2),
            jnp.sum(w1, axis=2),
            jnp.sum(w2, axis=2),
        )

    views = jnp.arange(lengths.shape[0])
    mean, var, flat, flat_var = jax.lax.map(one, (views, lengths))
    du, dv = jnp.asarray(geometry.du_mm, dtype), jnp.asarray(geometry.dv_mm, dtype)
    return _blur_and_scatter(mean, var, flat, flat_var, du, dv, detector, scatter)


def _scan(mean: Array, var: Array, flat: Array, geometry: Any, protocol: CTProtocol) -> XrayScan:
    """Channel arrays → `XrayScan` (totals plus bins for a photon-counting detector)."""
    if isinstance(protocol.detector, PhotonCountingDetector):
        bins = (jnp.moveaxis(mean, -1, 0), jnp.moveaxis(var, -1, 0), jnp.moveaxis(flat, -1, 0))
        total, total_var, total_flat = (jnp.sum(b, axis=0) for b in bins)
        return XrayScan(
            projections=_post_log(total, total_flat),
            counts=total,
            expected_counts=total,
            expected_variance=total_var,
            flat_counts=total_flat,
            geometry=geometry,
            bin_counts=bins[0],
            bin_expected_counts=bins[0],
            bin_expected_variance=bins[1],
            bin_flat_counts=bins[2],
        )
    mean, var, flat = mean[..., 0], var[..., 0], flat[..., 0]
    return XrayScan(
        projections=_post_log(mean, flat),
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
    return counts, _post_log(counts, flat)


@jax.jit
def _noisy_bins(key, mean, flat):
    """Independent Poisson counts per bin ``(bins, views, u, v)`` and their totals."""
    counts = _poisson(key, mean)
    total = jnp.sum(counts, axis=0)
    return counts, total, _post_log(total, jnp.sum(flat, axis=0))


def add_noise(key: PRNGKey, scan: XrayScan, protocol: CTProtocol) -> XrayScan:
    """Quantum (compound Poisson) and electronic noise on an `expected_scan` result.

    Args:
        key: `jax.random` key; the same key gives the same bytes.
        scan: a noise-free scan (its ``expected_counts`` and ``expected_variance`` are used).
        protocol: supplies the detector's electronic noise.

    Returns:
        the scan with noisy ``counts`` and their ``projections`` (and ``bin_counts`` for a
        photon-counting detector: independent Poisson counts per bin, summed for ``counts``).
    """
    if scan.bin_expected_counts is not None and scan.bin_flat_counts is not None:
        bins, total, projections = _noisy_bins(key, scan.bin_expected_counts, scan.bin_flat_counts)
        return dataclasses.replace(scan, counts=total, projections=projections, bin_counts=bins)
    counts, projections = _noisy(
        key,
        scan.expected_counts,
        scan.expected_variance,
        scan.flat_counts,
        jnp.asarray(protocol.detector.electronic_noise),
    )
    return dataclasses.replace(scan, counts=counts, projections=projections)
