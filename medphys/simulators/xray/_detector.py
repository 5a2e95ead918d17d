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

Converter layer (energy-integrating detectors, optional): a photon of energy ``E`` interacts in a
converter of thickness ``t`` with probability ``eta(E) = 1 - exp(-mu(E) t)`` (``mu`` the total
attenuation from xraylib; `CONVERTERS`: amorphous selenium ``"a-Se"``, the direct-conversion
photoconductor of mammography flat panels, and caesium iodide ``"CsI"``), and an interacting photon
is assumed to deposit all its energy: the signal weight becomes ``eta(E) E/E0`` and the variance
weight ``eta(E) (E/E0)^2`` (binomial thinning keeps the detected photons Poisson). K-fluorescence
escape (Se K edge 12.66 keV) and the Swank factor are not modelled. Without a converter every photon
is absorbed (as before). A direct-conversion a-Se panel has no light spread: leave ``blur_fwhm_mm``
at 0 and its resolution is that of the pixel sampling (its presampled MTF is close to the pixel
aperture's sinc; the projector samples each pixel at its centre, so the aperture itself is not
integrated).

Detector blur (both kinds): the expected signal of each detector row is convolved along ``u`` with a
Gaussian point-spread function of full width at half maximum ``blur_fwhm_mm`` (at the detector),
integrated over the pixel aperture; near the detector's ends the kernel is renormalised, so a flat
field stays flat. The blur acts on the expected signal before noise (the variance is blurred by the
same kernel, which keeps the variance-to-mean ratio; the resulting noise is white, i.e. the noise
correlation that a real scintillator's light spread adds is not modelled).

References:
    B. R. Whiting, "Signal statistics in x-ray computed tomography", Proc. SPIE 4682, 2002.
    S. O. Kasap, J. A. Rowlands, "Direct-conversion flat-panel X-ray image sensors for digital
    radiography", Proc. IEEE 90(4):591–604, 2002 (a-Se photoconductors, density ≈ 4.3 g/cm³).
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

__all__ = ["CONVERTERS", "EnergyIntegratingDetector", "PhotonCountingDetector"]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: Converter layers: name → (xraylib formula, density g/cm³). a-Se: amorphous selenium, density
#: ≈ 4.3 g/cm³ (Kasap & Rowlands 2002; xraylib's elemental 4.5 g/cm³ is crystalline selenium);
#: CsI: caesium iodide, 4.51 g/cm³ (xraylib's NIST compound density).
CONVERTERS: dict[str, tuple[str, float]] = {"a-Se": ("Se", 4.3), "CsI": ("CsI", 4.51)}
#: Energy grid (keV) on which a converter's absorption efficiency is tabulated (0.05 keV steps).
_ETA_GRID_KEV = np.linspace(ENERGY_RANGE_KEV[0], ENERGY_RANGE_KEV[1], 2981)


def absorption_efficiency(converter: str, thickness_um: float, energies_kev: Any) -> np.ndarray:
    """``1 - exp(-mu(E) t)`` of a converter layer (`CONVERTERS`) at ``energies_kev`` (host)."""
    import xraylib

    formula, density = CONVERTERS[converter]
    e = np.atleast_1d(np.asarray(energies_kev, np.float64))
    mu_cm = np.array([xraylib.CS_Total_CP(formula, float(x)) for x in e]) * density
    return -np.expm1(-mu_cm * thickness_um * 1e-4)


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
        absorption_energies_kev, absorption: ``(grid,)`` the converter's absorption efficiency
            tabulated on an energy grid (keV), interpolated linearly; None: every photon absorbed.
        converter: the converter's name in `CONVERTERS` (``""``: none), static.
        converter_um: its thickness (µm), static.
    """

    electronic_noise: Float[Array, ""]
    blur_fwhm_mm: Float[Array, ""] = dataclasses.field(default_factory=lambda: np.zeros(()))
    absorption_energies_kev: Float[Array, " grid"] | None = None
    absorption: Float[Array, " grid"] | None = None
    converter: str = dataclasses.field(default="", metadata={"static": True})
    converter_um: float = dataclasses.field(default=0.0, metadata={"static": True})

    @classmethod
    def create(
        cls,
        *,
        electronic_noise: float = 0.0,
        blur_fwhm_mm: float = 0.0,
        converter: str | None = None,
        converter_um: float | None = None,
    ) -> EnergyIntegratingDetector:
        """Validated constructor.

        Args:
            electronic_noise: readout noise (photon equivalents per reading, ≥ 0).
            blur_fwhm_mm: FWHM of the Gaussian detector blur along u (mm, ≥ 0).
            converter: a converter layer of `CONVERTERS` (``"a-Se"``, ``"CsI"``) whose absorption
                efficiency weighs each energy; None: ideal (every photon absorbed).
            converter_um: the layer's thickness (µm, > 0), with ``converter``.

        Raises:
            ValueError: negative or non-finite ``electronic_noise`` or ``blur_fwhm_mm``, an
                unknown converter, a converter without a positive thickness (or the reverse).

        Example:
            >>> d = EnergyIntegratingDetector.create(converter="a-Se", converter_um=200)
            >>> float(d.efficiency(20.0)[0]) > 0.9
            True
        """
        where = "medphys.simulators.xray.EnergyIntegratingDetector.create"
        noise = _non_negative(where, "electronic_noise", electronic_noise, "photon equivalents")
        blur = _non_negative(where, "blur_fwhm_mm", blur_fwhm_mm, "mm")
        if converter is None:
            if converter_um is not None:
                raise ValueError(
                    f"{where}: `converter_um` needs a `converter` (one of "
                    f"{', '.join(map(repr, CONVERTERS))})"
                )
            return cls(
                electronic_noise=np.asarray(noise, np.float64),
                blur_fwhm_mm=np.asarray(blur, np.float64),
            )
        if not isinstance(converter, str) or converter not in CONVERTERS:
            raise ValueError(
                f"{where}: `converter` must be one of {', '.join(map(repr, CONVERTERS))} "
                f"(got {converter!r})"
            )
        if converter_um is None:
            raise ValueError(f"{where}: `converter` {converter!r} needs `converter_um` (µm, > 0)")
        thickness = _number(where, "converter_um", converter_um)
        if thickness <= 0:
            raise ValueError(f"{where}: `converter_um` must be > 0 µm (got {converter_um!r})")
        return cls(
            electronic_noise=np.asarray(noise, np.float64),
            blur_fwhm_mm=np.asarray(blur, np.float64),
            absorption_energies_kev=_ETA_GRID_KEV.copy(),
            absorption=absorption_efficiency(converter, thickness, _ETA_GRID_KEV),
            converter=converter,
            converter_um=thickness,
        )

    def efficiency(self, energies_kev: Any) -> Float[Array, " energies"]:
        """Fraction of the photons of each energy that the detector absorbs (1 without a
        converter); traceable."""
        e = jnp.atleast_1d(jnp.asarray(energies_kev))
        if self.absorption is None or self.absorption_energies_kev is None:
            return jnp.ones_like(e)
        grid = jnp.asarray(self.absorption_energies_kev, e.dtype)
        return jnp.interp(e, grid, jnp.asarray(self.absorption, e.dtype))

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
    if detector.absorption is None:
        return (e / e0)[:, None], ((e / e0) ** 2)[:, None]
    eta = detector.efficiency(e)
    return (eta * e / e0)[:, None], (eta * (e / e0) ** 2)[:, None]


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
