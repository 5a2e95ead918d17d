"""Digitally reconstructed radiographs (DRRs) from a CT volume in Hounsfield units.

HU → attenuation (bilinear water/bone decomposition)
    A CT's HU scale holds at the scanner's effective energy ``E_ct`` (``ct_effective_kev``, about
    70 keV for a 120 kVp body scan). Each voxel is decomposed into water and cortical bone (ICRU 46
    via `medphys.materials`) with volume fractions that reproduce its μ at ``E_ct``:

    - ``HU ≤ 0`` (air–water line): water fraction ``f_w = 1 + HU/1000`` (clipped at 0), no bone;
    - ``HU > 0`` (water–bone line): bone fraction ``f_b = HU / HU_bone``, ``f_w = 1 - f_b``, with
      ``HU_bone = 1000 (mu_bone(E_ct) / mu_water(E_ct) - 1)``; beyond ``HU_bone`` the line is
      extrapolated (``f_w < 0``), which keeps μ(E_ct) exact.

    This is the two-segment (bilinear) model used to scale CT numbers to other energies, e.g. for
    PET/SPECT attenuation correction (Kinahan et al. 1998) and DRR generation; air is treated as
    vacuum (the flat field is an air scan). The two fraction maps are projected once each (the
    projector's exact adjoint makes the DRR differentiable in the volume and in the pose) and
    combined per energy:

        p = -log( sum_E w_E exp(-mu_w(E) L_w - mu_b(E) L_b) / sum_E w_E ),

    with ``w_E = N_E E`` for a `Spectrum` seen by an energy-integrating detector, or
    ``p = mu_w(E) L_w + mu_b(E) L_b`` at a single ``energy_kev``.

References:
    P. E. Kinahan, D. W. Townsend, T. Beyer, D. Sashin, "Attenuation correction for a combined 3D
    PET/CT scanner", Med. Phys. 25(10):2046–2053, 1998.
    ICRU Report 46, "Photon, electron, proton and neutron interaction data for body tissues", 1992.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ... import materials
from ..._checks import number as _number
from ...volume import Volume
from ..geometry import AbstractGeometry
from ._operator import project
from ._spectrum import Spectrum

__all__ = ["drr", "hu_to_fractions"]

_BONE = "cortical_bone"


def _mu_mm(energies: np.ndarray) -> np.ndarray:
    """``(2, E)`` μ of water and cortical bone (1/mm)."""
    return materials.attenuation_table(["water", _BONE], energies) / 10.0


def hu_to_fractions(
    hu: Any, ct_effective_kev: float = 70.0
) -> tuple[Float[Array, "x y z"], Float[Array, "x y z"]]:
    """Water and bone volume fractions of HU values (see the module docstring).

    Args:
        hu: array of Hounsfield units.
        ct_effective_kev: energy at which the HU scale holds (keV, in [1, 150]).

    Returns:
        ``(f_water, f_bone)``, arrays like ``hu`` (floating).
    """
    where = "medphys.simulators.xray.hu_to_fractions"
    e = _check_energy(where, "ct_effective_kev", ct_effective_kev)
    mu_w, mu_b = _mu_mm(np.asarray([e]))[:, 0]
    hu_bone = 1000.0 * (mu_b / mu_w - 1.0)
    h = jnp.asarray(hu)
    if not jnp.issubdtype(h.dtype, jnp.floating):
        h = h.astype(jnp.float32)
    bone = jnp.maximum(h, 0.0) / jnp.asarray(hu_bone, h.dtype)
    water = jnp.where(h > 0, 1.0 - bone, jnp.maximum(1.0 + h / 1000.0, 0.0))
    return water, bone


def _check_energy(where: str, name: str, value: Any) -> float:
    e = _number(where, name, value)
    lo, hi = materials.ENERGY_RANGE_KEV
    if not lo <= e <= hi:
        raise ValueError(
            f"{where}: `{name}` must be in [{lo:g}, {hi:g}] keV, the materials' data range "
            f"(got {value!r})"
        )
    return e


def drr(
    ct_volume_hu: Volume | str | Path,
    geometry: AbstractGeometry,
    *,
    spectrum: Spectrum | None = None,
    energy_kev: float | None = None,
    ct_effective_kev: float = 70.0,
    views_per_batch: int | None = None,
) -> Float[Array, "views u v"]:
    """A DRR (post-log line integrals) of a CT volume in HU.

    Args:
        ct_volume_hu: `Volume` of Hounsfield units, or the path of a NIfTI file holding one
            (loaded with `medphys.io.load_nifti`; its affine places it in the world).
        geometry: any geometry (`ConeBeam`, `ProjectionGeometry` for radiographs and C-arm poses,
            `ParallelBeam`, `FanBeam`).
        spectrum: polychromatic DRR for this tube spectrum (energy-integrating detector).
        energy_kev: monoenergetic DRR at this energy; default (neither given) ``ct_effective_kev``.
        ct_effective_kev: energy at which the CT's HU scale holds (keV).
        views_per_batch: as in `project`.

    Returns:
        ``(views, u, v)`` dimensionless line integrals ``-log(I / I_air)``; ``exp(-p)`` is the
        transmitted fraction. Differentiable in the volume and the geometry's pose leaves.

    Raises:
        ValueError, TypeError: both ``spectrum`` and ``energy_kev`` given, an energy outside
            [1, 150] keV, a non-3-D volume, or as `project`.

    Example:
        >>> g = ConeBeam.create(n_views=1, n_u=256, n_v=256, du_mm=1.6, dv_mm=1.6,
        ...                     sod_mm=1000.0, sdd_mm=1500.0)
        >>> p = drr("ct.nii.gz", g, spectrum=Spectrum.create(kvp=110, filtration=(("Al", 3.0),)))
        >>> radiograph = jnp.exp(-p)
    """
    where = "medphys.simulators.xray.drr"
    if isinstance(ct_volume_hu, (str, Path)):
        from ...io import load_nifti

        ct_volume_hu = load_nifti(ct_volume_hu)
    if not isinstance(ct_volume_hu, Volume):
        raise TypeError(
            f"{where}: `ct_volume_hu` must be a medphys.Volume of HU or a NIfTI path "
            f"(got {type(ct_volume_hu).__name__})"
        )
    if spectrum is not None and energy_kev is not None:
        raise ValueError(f"{where}: give `spectrum` or `energy_kev`, not both")
    if spectrum is not None and not isinstance(spectrum, Spectrum):
        raise TypeError(f"{where}: `spectrum` must be a Spectrum (got {type(spectrum).__name__})")
    e_ct = _check_energy(where, "ct_effective_kev", ct_effective_kev)
    if energy_kev is not None:
        energies = np.asarray([_check_energy(where, "energy_kev", energy_kev)])
        weights = None
    elif spectrum is not None:
        energies = np.asarray(spectrum.energies_kev, np.float64)
        weights = np.asarray(spectrum.photons, np.float64) * energies
    else:
        energies, weights = np.asarray([e_ct]), None
    water, bone = hu_to_fractions(ct_volume_hu.data, e_ct)
    affine = ct_volume_hu.affine
    l_w = project(Volume(data=water, affine=affine), geometry, views_per_batch=views_per_batch)
    l_b = project(Volume(data=bone, affine=affine), geometry, views_per_batch=views_per_batch)
    dtype = l_w.dtype
    mu = jnp.asarray(_mu_mm(energies), dtype)  # (2, E)
    if weights is None:
        return l_w * mu[0, 0] + l_b * mu[1, 0]
    w = jnp.asarray(weights / weights.sum(), dtype)
    line = l_w[..., None] * mu[0][None, None, None, :] + l_b[..., None] * mu[1][None, None, None, :]
    # log-sum-exp about the smallest exponent: stable for thick paths
    low = jnp.min(line, axis=-1, keepdims=True)
    total = jnp.sum(w[None, None, None, :] * jnp.exp(low - line), axis=-1)
    return low[..., 0] - jnp.log(total)
