"""X-ray detectors: energy-integrating and photon-counting, with a Gaussian detector blur.

A detector maps the photon fluence reaching a pixel, per energy ``E``, to one or more *channels*:

- `EnergyIntegratingDetector` (one channel): the signal is the deposited energy in photon
  equivalents, weight ``E/E0`` per photon (``E0`` the mean energy of the unattenuated spectrum);
  the quantum variance weight is ``(E/E0)^2`` (compound Poisson, Whiting 2002).
- `PhotonCountingDetector` (one channel per energy bin): each photon is counted in the bin that
  holds its *measured* energy, the true energy blurred by a Gaussian of full width at half maximum
  ``energy_resolution_kev`` (0: ideal). The weight of bin ``b = [t_b, t_{b+1})`` (the last bin is
  open above) is ``P(b | E) = Phi((t_{b+1} - E)/s) - Phi((t_b - E)/s)``, ``s = FWHM / 2.355``;
  photons measured below the lowest threshold are not counted. Counts are Poisson: the variance
  weight equals the signal weight. Charge sharing and pile-up are not modelled.

Detector blur (both kinds): the expected signal of each detector row is convolved along ``u`` with a
Gaussian point-spread function of full width at half maximum ``blur_fwhm_mm`` (at the detector),
integrated over the pixel aperture; near the detector's ends the kernel is renormalised, so a flat
field stays flat. The blur acts on the expected signal before noise (the variance is blurred by the
same kernel, which keeps the variance-to-mean ratio; the resulting noise is white, i.e. the noise
correlation that a real scintillator's light spread adds is not modelled).

References:
    B. R. Whiting, "Signal statistics in x-ray computed tomography", Proc. SPIE 4682, 2002.
    K. Taguchi, J. S. Iwanczyk, "Vision 20/20: Single photon counting x-ray detectors in medical
    imaging", Med. Phys. 40(10):100901, 2013.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr
from jaxtyping import Array, Float

from ..._checks import number as _number
from ...materials import ENERGY_RANGE_KEV

__all__ = ["EnergyIntegratingDetector", "PhotonCountingDetector"]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _non_negative(where: str, field: str, value: Any, unit: str) -> float:
    v = _number(where, field, value)
    if v < 0:
        raise ValueError(f"{where}: `{field}` must be ≥ 0 {unit} (got {value!r})")
    return v


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EnergyIntegratingDetector:
    """An energy-integrating detector (every photon absorbed, signal ∝ its energy).

    The signal is reported in *photon equivalents*: deposited energy divided by the mean energy of
    the unattenuated spectrum, so a monoenergetic beam reads in photons.

    Attributes:
        electronic_noise: standard deviation of the additive Gaussian readout noise, in photon
            equivalents per reading.
        blur_fwhm_mm: full width at half maximum of the Gaussian detector blur along ``u`` (mm at
            the detector); 0: none.
    """

    electronic_noise: Float[Array, ""]
    blur_fwhm_mm: Float[Array, ""] = dataclasses.field(default_factory=lambda: np.zeros(()))

    @classmethod
    def create(
        cls, *, electronic_noise: float = 0.0, blur_fwhm_mm: float = 0.0
    ) -> EnergyIntegratingDetector:
        """Validated constructor.

        Raises:
            ValueError: negative or non-finite ``electronic_noise`` or ``blur_fwhm_mm``.
        """
        where = "medphys.simulators.xray.EnergyIntegratingDetector.create"
        noise = _non_negative(where, "electronic_noise", electronic_noise, "photon equivalents")
        blur = _non_negative(where, "blur_fwhm_mm", blur_fwhm_mm, "mm")
        return cls(
            electronic_noise=np.asarray(noise, np.float64),
            blur_fwhm_mm=np.asarray(blur, np.float64),
        )

    @property
    def n_channels(self) -> int:
        return 1


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PhotonCountingDetector:
    """A photon-counting detector with energy thresholds (one channel per energy bin).

    Attributes:
        thresholds_kev: ``(bins,)`` increasing lower edges of the bins (keV); bin ``b`` is
            ``[t_b, t_{b+1})``, the last bin is open above.
        energy_resolution_kev: FWHM of the Gaussian energy response (keV); 0: ideal.
        blur_fwhm_mm: as in `EnergyIntegratingDetector`.
    """

    thresholds_kev: Float[Array, " bins"]
    energy_resolution_kev: Float[Array, ""]
    blur_fwhm_mm: Float[Array, ""]

    @classmethod
    def create(
        cls,
        *,
        thresholds_kev: Sequence[float],
        energy_resolution_kev: float = 0.0,
        blur_fwhm_mm: float = 0.0,
    ) -> PhotonCountingDetector:
        """Validated constructor.

        Args:
            thresholds_kev: strictly increasing energy thresholds (keV) within [1, 150]; ``n``
                thresholds give ``n`` bins.
            energy_resolution_kev: FWHM of the energy response (keV, ≥ 0).
            blur_fwhm_mm: FWHM of the detector blur (mm, ≥ 0).

        Raises:
            ValueError: no thresholds, thresholds out of order or outside the data range, negative
                resolution or blur.

        Example:
            >>> d = PhotonCountingDetector.create(thresholds_kev=(25, 50, 75), energy_resolution_kev=8)
            >>> d.n_channels
            3
        """
        where = "medphys.simulators.xray.PhotonCountingDetector.create"
        try:
            t = np.asarray(thresholds_kev, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{where}: `thresholds_kev` must be a sequence of numbers (got {thresholds_kev!r})"
            ) from None
        if t.ndim != 1 or t.size < 1:
            raise ValueError(
                f"{where}: `thresholds_kev` must be a 1-D sequence of at least one energy (keV) "
                f"(got {thresholds_kev!r})"
            )
        lo, hi = ENERGY_RANGE_KEV
        if not np.all(np.isfinite(t)) or t.min() < lo or t.max() > hi:
            raise ValueError(
                f"{where}: `thresholds_kev` must lie in [{lo:g}, {hi:g}] keV, the materials' data "
                f"range (got {t.tolist()})"
            )
        if np.any(np.diff(t) <= 0):
            raise ValueError(
                f"{where}: `thresholds_kev` must be strictly increasing (got {t.tolist()})"
            )
        res = _non_negative(where, "energy_resolution_kev", energy_resolution_kev, "keV")
        blur = _non_negative(where, "blur_fwhm_mm", blur_fwhm_mm, "mm")
        return cls(
            thresholds_kev=t,
            energy_resolution_kev=np.asarray(res, np.float64),
            blur_fwhm_mm=np.asarray(blur, np.float64),
        )

    @property
    def n_channels(self) -> int:
        return int(np.shape(self.thresholds_kev)[0])

    @property
    def electronic_noise(self) -> Float[Array, ""]:
        """Counting detectors threshold away the readout noise: 0."""
        return np.zeros(())

    def bin_response(self, energies_kev: Any) -> Float[Array, "energies bins"]:
        """``P(bin | E)``: probability that a photon of energy ``E`` is counted in each bin."""
        e = jnp.asarray(energies_kev)
        dtype = e.dtype
        t = jnp.asarray(self.thresholds_kev, dtype)
        s = jnp.asarray(self.energy_resolution_kev, dtype) / _FWHM_PER_SIGMA
        ideal = s <= 0
        safe = jnp.where(ideal, 1.0, s)
        z = (t[None, :] - e[:, None]) / safe
        below = jnp.where(ideal, (e[:, None] < t[None, :]).astype(dtype), ndtr(z))  # P(E' < t_b)
        upper = jnp.concatenate([below[:, 1:], jnp.ones_like(below[:, :1])], axis=1)
        return upper - below


Detector = EnergyIntegratingDetector | PhotonCountingDetector


def channel_weights(
    detector: Detector, energies_kev: Array, photons: Array
) -> tuple[Float[Array, "energies channels"], Float[Array, "energies channels"]]:
    """Signal and variance weight of one photon of each energy in each channel."""
    e = energies_kev
    if isinstance(detector, PhotonCountingDetector):
        r = detector.bin_response(e)
        return r, r
    e0 = jnp.sum(e * photons) / jnp.sum(photons)
    return (e / e0)[:, None], ((e / e0) ** 2)[:, None]


def smooth(x: Array, axis: int, pitch_mm: Array, fwhm_mm: Array) -> Array:
    """Renormalised convolution of ``x`` along ``axis`` with a pixel-integrated Gaussian.

    The kernel covers the whole axis (FFT, zero padding), and the result is divided by the
    convolution of ones, so constants are preserved up to the ends. ``fwhm_mm = 0``: identity.
    """
    n = x.shape[axis]
    dtype = x.dtype
    pitch = jnp.asarray(pitch_mm, dtype)
    sigma = jnp.asarray(fwhm_mm, dtype) / _FWHM_PER_SIGMA
    off = jnp.arange(-(n - 1), n, dtype=dtype) * pitch
    tiny = 1e-6 * pitch
    s = jnp.maximum(sigma, tiny)
    kernel = ndtr((off + pitch / 2) / s) - ndtr((off - pitch / 2) / s)
    size = 1 << math.ceil(math.log2(3 * n - 2))
    xm = jnp.moveaxis(x, axis, -1)
    k_hat = jnp.fft.rfft(kernel, size)

    def conv(v: Array) -> Array:
        spec = jnp.fft.rfft(v, size, axis=-1)
        full = jnp.fft.irfft(spec * k_hat.reshape((1,) * (v.ndim - 1) + (-1,)), size, axis=-1)
        return full[..., n - 1 : 2 * n - 1]

    norm = conv(jnp.ones((n,), dtype))
    out = conv(xm) / norm.reshape((1,) * (xm.ndim - 1) + (n,))
    return jnp.moveaxis(out, -1, axis)
