"""Materials' attenuation reduced to a few basis functions of energy.

Polychromatic simulation needs, per ray, the line integral of every material's occupancy: the
detected signal is ``Σ_E w(E) exp(-Σ_m μ_m(E) L_m)``. Over the energies of one spectrum the
attenuation of body materials spans a space of low dimension (photo-electric absorption and
Compton scattering, plus a K edge or two): with ``μ_m(E) ≈ Σ_k c_mk φ_k(E)`` the exponent is
``Σ_k φ_k(E) Σ_m c_mk L_m``, so projecting the K maps ``Σ_m c_mk f_m`` replaces projecting the M
material maps. On a 120 kVp spectrum 20 body materials need 4 functions for a relative error of
1.4e-4 at every energy, 6 for 6.7e-6 (memory and projection time fall by 5x and 3.3x).

The basis is the leading right singular vectors of the materials' attenuation table with each
row scaled to its largest value (so that weak and strong absorbers count alike); its size is the
smallest that meets the tolerance, measured elementwise and relative to each μ_m(E).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["AttenuationBasis", "fit_basis"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AttenuationBasis:
    """``μ_m(E) ≈ Σ_k coefficients[m, k] · mu_mm[k, E]`` for the projected materials.

    Attributes:
        coefficients: ``(materials, k)``: the weight of each material's occupancy in basis map k.
        mu_mm: ``(k, energies)``: the basis functions on the spectrum's energies (1/mm).
        tolerance: the largest relative error allowed (static).
        max_relative_error: ``max |μ̂ − μ| / |μ|`` over materials and energies (static).
    """

    coefficients: Float[Array, "m k"]
    mu_mm: Float[Array, "k energies"]
    tolerance: float = dataclasses.field(metadata={"static": True})
    max_relative_error: float = dataclasses.field(metadata={"static": True})

    @property
    def size(self) -> int:
        """The number of basis maps projected."""
        return int(self.coefficients.shape[1])


def check_tolerance(where: str, tolerance: object) -> float | None:
    """``None`` (one map per material) or a relative tolerance in (0, 0.1]."""
    if tolerance is None:
        return None
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not math.isfinite(float(tolerance))
        or not 0.0 < float(tolerance) <= 0.1
    ):
        raise ValueError(
            f"{where}: `basis_tolerance` must be None (one map per material) or a relative "
            f"error in (0, 0.1], e.g. 1e-5 (got {tolerance!r})"
        )
    return float(tolerance)


def fit_basis(mu_mm: np.ndarray, tolerance: float) -> AttenuationBasis | None:
    """The smallest basis of ``mu_mm`` (materials × energies, 1/mm) within ``tolerance``.

    Returns None when it would need as many functions as there are materials (projecting each
    material is then exact and no dearer).
    """
    mu = np.asarray(mu_mm, dtype=np.float64)
    n_materials = mu.shape[0]
    scale = np.maximum(np.max(np.abs(mu), axis=1, keepdims=True), 1e-300)
    a = mu / scale
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    floor = np.maximum(np.abs(mu), 1e-300)
    for k in range(1, min(n_materials, vt.shape[0])):
        phi = vt[:k]  # (k, energies), orthonormal rows
        coeff = (a @ phi.T) * scale  # least squares in the scaled rows, back to 1/mm
        error = float(np.max(np.abs(coeff @ phi - mu) / floor))
        if error <= tolerance:
            return AttenuationBasis(
                coefficients=jnp.asarray(coeff),
                mu_mm=jnp.asarray(phi),
                tolerance=tolerance,
                max_relative_error=error,
            )
    return None
