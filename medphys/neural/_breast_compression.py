"""A breast pressed between mammography paddles: the elasticity problem of a `BreastParams`.

`compress_breast(key, params)` poses and solves the craniocaudal compression of the breast's outer
shape as VICTRE does it (Badano et al. 2018; FEBio there): neo-Hookean tissue at ν = 0.49, two
rigid frictionless paddles ``z = ±T/2`` closing to the compressed thickness ``T`` (the density
class's, `BreastParams.compressed_thickness_mm`, unless given), the chest wall a roller (no motion
normal to it: the tissue slides along it), and the breast's two symmetry planes (``x = 0`` and
``z = 0``) holding their normal component (the problem is symmetric about both). The penalty
stiffness and a contact ramp follow `medphys.neural.Plate`'s guidance.

The material is one homogeneous neo-Hookean solid with VICTRE's fat modulus (5 kPa) by default:
the outer shape alone then fixes the deformation, so every breast with this outer shape (the
same density class and size; its skin and internal anatomy free) shares one solve. VICTRE gives
glandular tissue 15 kPa and masses 20 kPa; pass ``youngs_kpa`` to change the one modulus.

The result's ``warp`` deforms any such breast (`BreastCompression.apply`): CT, X-ray, DM and DBT
then image the compressed anatomy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._checks import FieldError
from ._elastic_body import ElasticBody
from ._elastic_loads import Fixed, Plate
from ._elastic_materials import VICTRE_MODULI_KPA, NeoHookean
from ._elastic_warp import ElasticWarp
from ._elasticity import ElasticConfig, ElasticSolution, solve_elasticity

__all__ = ["BreastCompression", "compress_breast"]

_WHERE = "medphys.neural.compress_breast"

#: the training settings of `compress_breast` unless given (the README's figure: the tissue stays
#: within 0.3 mm of 20 kPa/mm paddles, volume within 1 %)
DEFAULT_CONFIG = ElasticConfig(width=32, depth=3, steps=2000)


@dataclasses.dataclass(frozen=True)
class BreastCompression:
    """A solved compression.

    Attributes:
        body: the `ElasticBody` solved on (its quadrature points and weights).
        solution: the trained `ElasticSolution` (converged and fold-free: checked).
        warp: the deformation (`ElasticWarp`, moving only in front of the chest wall).
        thickness_mm: the compressed thickness (the paddles at ``z = ±thickness_mm / 2``).
        lower_mm, upper_mm: a box that holds the compressed breast (the paddles bound z; x and y
            leave room for the tissue the paddles push outward).
    """

    body: ElasticBody
    solution: ElasticSolution
    warp: ElasticWarp
    thickness_mm: float
    lower_mm: np.ndarray
    upper_mm: np.ndarray

    def apply(self, phantom):
        """``phantom`` (a breast with this compression's outer shape) compressed."""
        return dataclasses.replace(phantom, warp=self.warp)


def compress_breast(
    key: Array,
    params,
    *,
    thickness_mm: float | None = None,
    youngs_kpa: float = VICTRE_MODULI_KPA["fat"],
    poisson: float = 0.49,
    spacing_mm: float = 4.0,
    stiffness_kpa_per_mm: float = 20.0,
    config: ElasticConfig = DEFAULT_CONFIG,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    max_penetration_mm: float = 1.0,
) -> BreastCompression:
    """Compress the breast of ``params`` between paddles to ``thickness_mm`` (module docstring).

    Args:
        key: the network's initialisation key.
        params: a `medphys.phantoms.BreastParams` (only its outer shape matters).
        thickness_mm: the compressed thickness (default: the density class's); 10-200 mm and
            below the uncompressed height ``2 · semi_height_mm``.
        youngs_kpa, poisson: the tissue (neo-Hookean).
        spacing_mm: the quadrature cell size.
        stiffness_kpa_per_mm: the paddles' penalty stiffness.
        config: the training settings.
        checkpoint: a ``.npz`` path to resume from and write to (`solve_elasticity`).
        progress: show a progress bar.
        max_penetration_mm: the deepest the tissue may lie beyond a paddle (the penalty
            settles at about pressure / stiffness: 0.3 mm measured for a class-b breast at
            20 kPa/mm); deeper means the contact stalled, and the compression is refused.

    Returns:
        a `BreastCompression`.

    Raises:
        FieldError: a thickness outside 10-200 mm or not below the uncompressed height.
        ValueError: a training that did not converge, a deformation that folds, tissue deeper
            than ``max_penetration_mm`` beyond a paddle.
    """
    from ..phantoms import BreastParams, HalfSpace, Intersection

    if not isinstance(params, BreastParams):
        raise TypeError(f"{_WHERE}: `params` must be a BreastParams (got {type(params).__name__})")
    height = 2.0 * params.semi_height_mm
    t = params.compressed_thickness_mm if thickness_mm is None else thickness_mm
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t):
        raise FieldError(_WHERE, "thickness_mm", f"`thickness_mm` must be a number (got {t!r})")
    t = float(t)
    if not 10.0 <= t <= 200.0 or t >= height:
        raise FieldError(
            _WHERE,
            "thickness_mm",
            f"`thickness_mm` must be in [10, 200] mm and below the uncompressed height "
            f"{height:.1f} mm (got {t:g})",
        )
    chest = HalfSpace(jnp.asarray([0.0, -1.0, 0.0], jnp.float32), jnp.asarray(0.0, jnp.float32))
    shape = Intersection((params.outer_shape(), chest))
    tissue = NeoHookean.create(youngs_kpa, poisson)
    body = ElasticBody.create([(shape, tissue)], spacing_mm=spacing_mm)
    half = t / 2.0
    constraints = [
        Fixed.create(1, 0.0, components=(1,)),  # the chest wall: a roller
        Fixed.create(0, 0.0, components=(0,)),  # symmetry about the mid-sagittal plane
        Fixed.create(2, 0.0, components=(2,)),  # symmetry between the paddles
    ]
    paddles = [
        Plate.create(2, half, keep="below", stiffness_kpa_per_mm=stiffness_kpa_per_mm),
        Plate.create(2, -half, keep="above", stiffness_kpa_per_mm=stiffness_kpa_per_mm),
    ]
    solution = solve_elasticity(
        key,
        body,
        constraints=constraints,
        loads=paddles,
        config=config,
        checkpoint=checkpoint,
        progress=progress,
    ).check(max_penetration_mm=max_penetration_mm)
    # the compressed breast's box: the body's quadrature points moved, widened by two cells
    # (the points lie inside the surface by up to half a cell), z bounded by the paddles
    points = np.asarray(body.points, np.float64)
    moved = points + np.asarray(solution.displacement(jnp.asarray(points, jnp.float32)))
    margin = 2.0 * spacing_mm
    lower = np.array([moved[:, 0].min() - margin, 0.0, -half - 1.0])
    upper = np.array([moved[:, 0].max() + margin, moved[:, 1].max() + margin, half + 1.0])
    warp = ElasticWarp.create(solution, support=chest)
    return BreastCompression(body, solution, warp, t, lower, upper)
