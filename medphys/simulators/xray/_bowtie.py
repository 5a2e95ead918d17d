"""Bowtie filter: extra filtration whose thickness grows away from the central ray.

A CT bowtie compensates the shorter paths through the edge of a round patient, so that the detector
sees a flatter signal and the periphery a lower dose. `Bowtie` models it as a path length
``t(r)`` of one material, a function of the ray's distance ``r`` from the rotation axis (for a fan
beam ``r = sod · |sin γ|``, ``γ`` the fan angle; for a parallel beam ``r = |u|``; for a cone beam
the in-plane fan angle of each detector column, ``γ = atan(u / sdd)``, which all rows of that
column share: the filter is a function of ``u`` alone, its extra path at the cone angle ignored):

    t(r) = center_mm + (edge_mm - center_mm) · (1 - sqrt(1 - (r/R)^2))   for r < R,
    t(r) = edge_mm                                                            for r ≥ R,

the profile that evens out the chord ``2 sqrt(R² - r²)`` of a cylinder of radius ``R =
radius_mm`` (shape after Mail et al. 2009's water-matching bowtie). The path lengths are applied
per ray and per energy in the simulator (``exp(-mu_bowtie(E) t(u))``), and the flat field sees the
same filter, as a scanner's air calibration does.

References:
    N. Mail, D. J. Moseley, J. H. Siewerdsen, D. A. Jaffray, "The influence of bowtie filtration on
    cone-beam CT image quality", Med. Phys. 36(1):22–32, 2009.
    J. Hsieh, Computed Tomography, 3rd ed., SPIE, 2015, §3.3 (bowtie filters).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ... import materials
from ..._checks import number as _number

__all__ = ["Bowtie"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Bowtie:
    """A bowtie filter (see the module docstring).

    Attributes:
        center_mm: thickness on the central ray (mm).
        edge_mm: thickness at and beyond ``radius_mm`` (mm).
        radius_mm: radius of the compensated cylinder at the isocentre (mm).
        material: a `medphys.materials` name (static), e.g. ``"aluminium"``, ``"pmma"``.
    """

    center_mm: Float[Array, ""]
    edge_mm: Float[Array, ""]
    radius_mm: Float[Array, ""]
    material: str = dataclasses.field(default="aluminium", metadata={"static": True})

    @classmethod
    def create(
        cls,
        *,
        material: str = "aluminium",
        center_mm: float = 0.0,
        edge_mm: float,
        radius_mm: float = 250.0,
    ) -> Bowtie:
        """Validated constructor.

        Args:
            material: filter material, a `medphys.materials` name.
            center_mm: thickness on the central ray (mm, ≥ 0).
            edge_mm: thickness at the edge (mm, ≥ ``center_mm``).
            radius_mm: compensated radius at the isocentre (mm, > 0).

        Raises:
            ValueError: unknown material, negative thickness, ``edge_mm < center_mm``,
                non-positive radius.

        Example:
            >>> b = Bowtie.create(material="aluminium", center_mm=0.0, edge_mm=20.0, radius_mm=250.0)
        """
        where = "medphys.simulators.xray.Bowtie.create"
        if not isinstance(material, str) or material not in materials.names():
            raise ValueError(
                f"{where}: `material` must be a medphys.materials name such as 'aluminium' or "
                f"'pmma' (got {material!r})"
            )
        center = _number(where, "center_mm", center_mm)
        edge = _number(where, "edge_mm", edge_mm)
        radius = _number(where, "radius_mm", radius_mm)
        if center < 0:
            raise ValueError(f"{where}: `center_mm` must be ≥ 0 mm (got {center_mm!r})")
        if edge < center:
            raise ValueError(
                f"{where}: `edge_mm` must be ≥ `center_mm` (got edge_mm={edge_mm!r}, "
                f"center_mm={center_mm!r})"
            )
        if radius <= 0:
            raise ValueError(f"{where}: `radius_mm` must be > 0 mm (got {radius_mm!r})")
        return cls(
            center_mm=np.asarray(center, np.float64),
            edge_mm=np.asarray(edge, np.float64),
            radius_mm=np.asarray(radius, np.float64),
            material=material,
        )

    def thickness_mm(self, r_mm: Any) -> Array:
        """Filter path length (mm) of a ray passing ``r_mm`` from the rotation axis."""
        r = jnp.abs(jnp.asarray(r_mm))
        dtype = r.dtype
        q = jnp.minimum(r / jnp.asarray(self.radius_mm, dtype), 1.0)
        c, e = jnp.asarray(self.center_mm, dtype), jnp.asarray(self.edge_mm, dtype)
        return c + (e - c) * (1.0 - jnp.sqrt(jnp.maximum(1.0 - q * q, 0.0)))

    def mu_per_mm(self, energies_kev: Any) -> np.ndarray:
        """Linear attenuation of the filter material (1/mm) on an energy grid."""
        return materials.attenuation_table([self.material], energies_kev)[0] / 10.0
