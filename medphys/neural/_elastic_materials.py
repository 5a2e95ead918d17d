"""Hyperelastic materials for soft tissue: linear elasticity and FEBio's compressible neo-Hookean.

Units: moduli in kPa, lengths in mm (a traction in kPa times a displacement in mm is an energy
per area in µJ/mm²·10⁻³; only ratios matter to the solver). The Lamé constants follow from Young's
modulus ``E`` and Poisson's ratio ``ν``: ``μ = E / (2(1 + ν))``, ``λ = E ν / ((1 + ν)(1 − 2ν))``.

Strain-energy densities (per reference volume), ``F = I + ∇u``, ``J = det F``, ``C = FᵀF``:

- `LinearElastic`: ``W = μ ε:ε + λ/2 (tr ε)²`` with ``ε = (∇u + ∇uᵀ)/2`` (small strain);
- `NeoHookean`: ``W = μ/2 (I₁ − 3) − μ ln J + λ/2 (ln J)²`` with ``I₁ = tr C`` (the form FEBio
  and VICTRE's breast compression use; it reduces to `LinearElastic` for small strains).

Published tissue values (``VICTRE_MODULI_KPA``): the VICTRE trial compresses its breast phantoms
with fat 5 kPa, glandular tissue 15 kPa and masses 20 kPa, all at ν = 0.49 (Badano et al., JAMA Netw
Open 1:e185474, 2018; the FEBio model of its breast-compression step).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = [
    "VICTRE_MODULI_KPA",
    "LinearElastic",
    "NeoHookean",
    "lame",
    "linear_energy",
    "neo_hookean_energy",
]

# Young's moduli (kPa) at ν = 0.49 from VICTRE's breast compression (Badano et al. 2018).
VICTRE_MODULI_KPA = {"fat": 5.0, "glandular": 15.0, "mass": 20.0}
VICTRE_POISSON = 0.49


def _check(where: str, youngs_kpa: Any, poisson: Any) -> tuple[float, float]:
    try:
        e, nu = float(youngs_kpa), float(poisson)
    except (TypeError, ValueError):
        raise TypeError(
            f"{where}: `youngs_kpa` and `poisson` must be numbers (got {youngs_kpa!r}, {poisson!r})"
        ) from None
    if not (math.isfinite(e) and e > 0):
        raise ValueError(f"{where}: `youngs_kpa` must be a positive modulus in kPa (got {e})")
    if not (math.isfinite(nu) and -1.0 < nu < 0.5):
        raise ValueError(
            f"{where}: `poisson` must lie in (-1, 0.5) (got {nu}); 0.5 is the incompressible "
            "limit, where λ is infinite: use 0.49 or 0.499 for nearly incompressible tissue"
        )
    return e, nu


def lame(youngs_kpa: float, poisson: float) -> tuple[float, float]:
    """The Lamé constants ``(μ, λ)`` in kPa from Young's modulus (kPa) and Poisson's ratio."""
    e, nu = _check("medphys.neural.lame", youngs_kpa, poisson)
    return e / (2 * (1 + nu)), e * nu / ((1 + nu) * (1 - 2 * nu))


@dataclasses.dataclass(frozen=True)
class LinearElastic:
    """Small-strain isotropic linear elasticity (use for strains of a few percent at most).

    Attributes:
        youngs_kpa: Young's modulus (kPa), positive.
        poisson: Poisson's ratio in (-1, 0.5).
        density_g_cm3: mass density (for gravity loads), positive.
    """

    youngs_kpa: float
    poisson: float
    density_g_cm3: float = 1.0

    @classmethod
    def create(
        cls, youngs_kpa: float, poisson: float, *, density_g_cm3: float = 1.0
    ) -> LinearElastic:
        """Check the moduli (positive modulus, ν in (-1, 0.5)) and the density."""
        e, nu = _check("medphys.neural.LinearElastic.create", youngs_kpa, poisson)
        return cls(e, nu, _density("medphys.neural.LinearElastic.create", density_g_cm3))

    @property
    def lame(self) -> tuple[float, float]:
        return lame(self.youngs_kpa, self.poisson)


@dataclasses.dataclass(frozen=True)
class NeoHookean:
    """Compressible neo-Hookean solid in FEBio's form (finite strain, large compression).

    Attributes:
        youngs_kpa: small-strain Young's modulus (kPa), positive.
        poisson: small-strain Poisson's ratio in (-1, 0.5).
        density_g_cm3: mass density (for gravity loads), positive.
    """

    youngs_kpa: float
    poisson: float
    density_g_cm3: float = 1.0

    @classmethod
    def create(cls, youngs_kpa: float, poisson: float, *, density_g_cm3: float = 1.0) -> NeoHookean:
        """Check the moduli (positive modulus, ν in (-1, 0.5)) and the density."""
        e, nu = _check("medphys.neural.NeoHookean.create", youngs_kpa, poisson)
        return cls(e, nu, _density("medphys.neural.NeoHookean.create", density_g_cm3))

    @property
    def lame(self) -> tuple[float, float]:
        return lame(self.youngs_kpa, self.poisson)


def _density(where: str, value: Any) -> float:
    try:
        rho = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: `density_g_cm3` must be a number (got {value!r})") from None
    if not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"{where}: `density_g_cm3` must be positive (got {rho})")
    return rho


def linear_energy(
    grad_u: Float[Array, "*batch 3 3"], mu: Float[Array, "*batch"], lam: Float[Array, "*batch"]
) -> Float[Array, "*batch"]:
    """Small-strain energy density ``μ ε:ε + λ/2 (tr ε)²`` (kPa) of displacement gradients."""
    eps = 0.5 * (grad_u + jnp.swapaxes(grad_u, -1, -2))
    trace = jnp.trace(eps, axis1=-2, axis2=-1)
    return mu * jnp.sum(eps * eps, axis=(-2, -1)) + 0.5 * lam * trace * trace


def neo_hookean_energy(
    grad_u: Float[Array, "*batch 3 3"], mu: Float[Array, "*batch"], lam: Float[Array, "*batch"]
) -> Float[Array, "*batch"]:
    """FEBio's compressible neo-Hookean density ``μ/2 (I₁ − 3) − μ ln J + λ/2 (ln J)²`` (kPa).

    ``I₁ − 3`` is computed as ``2 tr ∇u + |∇u|²`` and ``ln J`` from ``det F`` so that small
    strains keep their digits. Where ``J ≤ 0`` (a folded configuration, never a solution) the
    logarithm is taken of a tiny positive floor, so the energy is huge and finite rather than NaN.
    """
    eye = jnp.eye(3, dtype=grad_u.dtype)
    f = eye + grad_u
    i1_minus_3 = 2 * jnp.trace(grad_u, axis1=-2, axis2=-1) + jnp.sum(grad_u * grad_u, axis=(-2, -1))
    j = jnp.linalg.det(f)
    tiny = jnp.asarray(1e-6, grad_u.dtype)
    log_j = jnp.log(jnp.maximum(j, tiny)) - jnp.where(j > tiny, 0.0, (tiny - j) / tiny)
    return 0.5 * mu * i1_minus_3 - mu * log_j + 0.5 * lam * log_j * log_j
