"""A procedural breast phantom family (uncompressed), in the spirit of the VICTRE breast phantom.

Randomness follows the package's split: `sample_breast_params(key, ...)` draws one individual as
a `BreastParams` of plain numbers (recorded with every case), and `make_breast(params)` builds its
`Phantom` deterministically (the internal anatomy is drawn from the recorded ``anatomy_seed``).

Coordinates (RAS+ millimetres, one breast, origin at the centre of the breast base):

- the chest wall is the coronal plane ``y = 0``; the breast lies in front of it (``y >= 0``,
  anterior) and the pectoralis muscle behind it (``-pectoralis_mm <= y <= 0``);
- the chest-wall-to-nipple axis is ``+y``: the nipple is at ``(0, depth_mm, 0)``;
- ``x`` is lateral (left-right, semi-axis ``semi_width_mm``), ``z`` superior-inferior (semi-axis
  ``semi_height_mm``). A craniocaudal (CC) view compresses along ``z`` (paddles are the planes
  ``z = const``); a mediolateral oblique view compresses along an axis of the ``x``-``z`` plane.
  `BreastParams.outer_shape`, `BreastParams.chest_wall` and `BreastParams.bounds_mm` give a
  compression solver the outer surface (a signed distance), the fixed plane and the extent.

Anatomy (painting order; later structures win): ``pectoralis`` (muscle), ``skin`` (a layer of
``skin_mm`` over the outer surface, open on the chest wall), ``breast_fat`` (subcutaneous and
retromammary fat: the breast interior), ``fibroglandular`` (a superquadric dome on the
retromammary fat with balls of intraglandular fat cut out), ``cooper_ligaments`` (thin spherical
shells from the gland surface through the subcutaneous fat to the skin), ``ducts`` (one
branching tube tree per lobe from the nipple) and ``lobules`` (clusters of small balls, the
terminal duct-lobular units, at the duct ends). The outer surface is a superquadric dome (Barr
1981) whose exponent along the nipple axis (``exponent`` > 1) tapers it toward the nipple.

Glandular fraction: the volume of the glandular-material structures (``fibroglandular``,
``cooper_ligaments``, ``ducts``, ``lobules``) over the breast interior (everything inside the
skin; skin and muscle excluded). `make_breast` scales the fibroglandular dome so that this equals
``glandular_fraction`` (the dome and the fat balls in closed form, the rest by quadrature);
`measure_glandular_fraction` reads it back from a voxelized breast.

References:
    Graff CG. A new, open-source, multi-modality digital breast phantom. Proc SPIE 9783, Medical
    Imaging 2016: Physics of Medical Imaging, 978309 (2016) (the VICTRE phantom generator,
    DIDSR/breastPhantom).
    Badano A, Graff CG, Badal A, et al. Evaluation of digital breast tomosynthesis as replacement
    of full-field digital mammography using an in silico imaging trial. JAMA Netw Open
    1(7):e185474 (2018); its pipeline DIDSR/VICTRE_PIPELINE, Victre/Constants.py
    ``DENSITY_RANGES`` (per class: target fat fraction, breast height, surface coefficients,
    compressed thickness), ``VICTRE_*`` (ligament thickness 0.1 mm, duct root radius 0.5 mm,
    child/parent duct radius 0.65-0.99, TDLU width 0.5-1 mm).
    Shi L, Vedantham S, Karellas A, O'Connell AM. Technical note: Skin thickness measurements
    using high-resolution flat-panel cone-beam dedicated breast CT. Med Phys 40(3):031913 (2013)
    (1.44 +- 0.25 mm, range 0.87-2.34 mm; Huang et al., Med Phys 35:1199-1206, 2008: 1.45 mm).
    Yaffe MJ, Boone JM, Packard N, et al. The myth of the 50-50 breast. Med Phys 36(12):5437-5443
    (2009) (volumetric breast density: mean 19.3 %, 95 % of women below 45 %).
    D'Orsi CJ, Sickles EA, Mendelson EB, Morris EA, et al. ACR BI-RADS Atlas, 5th ed. (2013):
    density categories a-d, about 10 %, 40 %, 40 % and 10 % of women.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import FieldError, integer, positive
from .._types import PRNGKey
from ..volume import LabeledVolume
from . import _breast_anatomy as _anat
from ._anatomy import Phantom, PhantomStructure
from ._shapes import EllipticCylinder, HalfSpace, Intersection

#: Per BI-RADS density class: (description, target glandular fraction, VICTRE compressed
#: thickness in mm, VICTRE breast height in mm, surface coefficients (a1, a2, a3), exponent).
#: From VICTRE's ``DENSITY_RANGES`` (dense, hetero, scattered, fatty): target fat fraction
#: 0.40 / 0.66 / 0.85 / 0.95 (glandular fraction = 1 - fat fraction), compressed thickness
#: 35 / 45 / 55 / 60 mm, breast height 71.7 / 89.7 / 108.4 / 109.9 mm, a1 (top/bottom)
#: 1.0 / 1.2 / 1.4 / 1.4, a2 (left/right) 1.0 / 1.0 / 1.2 / 1.4, a3 (outward) 1.0 / 1.55 / 2.0 /
#: 2.75, eps1 1.2 / 1.2 / 1.2 / 1.1.
DENSITY_CLASSES: dict[str, tuple[str, float, float, float, tuple[float, float, float], float]] = {
    "a": ("almost entirely fatty", 0.05, 60.0, 109.9, (1.4, 1.4, 2.75), 1.1),
    "b": ("scattered areas of fibroglandular density", 0.15, 55.0, 108.4, (1.4, 1.2, 2.0), 1.2),
    "c": ("heterogeneously dense", 0.34, 45.0, 89.7, (1.2, 1.0, 1.55), 1.2),
    "d": ("extremely dense", 0.60, 35.0, 71.7, (1.0, 1.0, 1.0), 1.2),
}
#: BI-RADS 5th edition: approximate share of women per density class
CLASS_SHARES = {"a": 0.10, "b": 0.40, "c": 0.40, "d": 0.10}
#: skin thickness (mm): mean, inter-breast SD and range of Shi et al. 2013 (breast CT)
SKIN_MM = (1.44, 0.25, 0.87, 2.34)
#: size scale of an individual about its class's nominal size (assumption: +-15 %, uniform)
SIZE_SCALE = (0.85, 1.15)
#: retromammary fat and pectoralis thickness (mm): nominal values (assumptions, not measured)
RETROMAMMARY_MM = 4.0
PECTORALIS_MM = 10.0
#: Cooper's ligament thickness (mm): VICTRE's ligament ``thickness``
LIGAMENT_MM = 0.1
#: duct trees (lobes): fewer than the 15-20 lobes anatomy texts describe, for speed (assumption)
N_DUCTS = 8
N_LIGAMENTS = 24  # assumption
GLANDULAR_STRUCTURES = ("fibroglandular", "cooper_ligaments", "ducts", "lobules")
INTERIOR_STRUCTURES = ("breast_fat", *GLANDULAR_STRUCTURES)


@dataclasses.dataclass(frozen=True)
class BreastParams:
    """One individual of the breast family (build with `BreastParams.create`, which validates).

    Attributes:
        density: BI-RADS density class, ``"a"`` (almost entirely fatty) to ``"d"`` (extremely
            dense).
        glandular_fraction: target volume fraction of glandular tissue in the breast interior.
        depth_mm: chest-wall-to-nipple distance of the outer surface (along +y).
        semi_width_mm: lateral (x) semi-axis of the base on the chest wall.
        semi_height_mm: superior-inferior (z) semi-axis of the base on the chest wall.
        exponent: superquadric exponent along the nipple axis (1: ellipsoid; > 1: tapered).
        skin_mm: skin thickness.
        compressed_thickness_mm: the class's compressed thickness (VICTRE), for compression.
        anatomy_seed: seed of the internal anatomy (ducts, lobules, ligaments, fat lobules).
        retromammary_mm: fat between the chest wall and the fibroglandular tissue.
        pectoralis_mm: thickness of the pectoralis muscle behind the chest wall.
        ligament_mm: thickness of Cooper's ligaments.
        n_ducts: duct trees (lobes).
        n_ligaments: Cooper's ligaments.
    """

    density: str
    glandular_fraction: float
    depth_mm: float
    semi_width_mm: float
    semi_height_mm: float
    exponent: float
    skin_mm: float
    compressed_thickness_mm: float
    anatomy_seed: int
    retromammary_mm: float = RETROMAMMARY_MM
    pectoralis_mm: float = PECTORALIS_MM
    ligament_mm: float = LIGAMENT_MM
    n_ducts: int = N_DUCTS
    n_ligaments: int = N_LIGAMENTS

    @classmethod
    def create(cls, **fields: Any) -> BreastParams:
        """Validated parameters (every field by keyword; defaults as in the class).

        Raises:
            ValueError: a density class outside a-d, a non-positive size, a glandular fraction
                outside (0, 0.7], a skin thicker than a quarter of the smallest semi-axis, an
                exponent outside [0.5, 1.9], an unknown field.
            TypeError: a non-number where a number is expected.

        Example:
            >>> p = BreastParams.create(density="b", glandular_fraction=0.15, depth_mm=80.0,
            ...     semi_width_mm=50.0, semi_height_mm=55.0, exponent=1.2, skin_mm=1.44,
            ...     compressed_thickness_mm=55.0, anatomy_seed=7)  # doctest: +SKIP
        """
        return _validated("medphys.phantoms.BreastParams.create", fields)

    def outer_shape(self) -> Intersection:
        """The breast's outer surface as a signed distance (negative inside; open on the chest
        wall, where it is cut by the plane ``y = 0``)."""
        w, h, d = self.semi_width_mm, self.semi_height_mm, self.depth_mm
        return _anat.hemi((0.0, 0.0, 0.0), (w, h, d), self.exponent, 0.0)

    def chest_wall(self) -> HalfSpace:
        """The chest-wall plane ``y = 0`` as a `HalfSpace` whose inside (level <= 0) is the
        breast side ``y >= 0``; its normal ``(0, -1, 0)`` points into the body."""
        return _anat.chest_side(0.0)

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners (x, y, z) of the box around the uncompressed breast and the
        pectoralis (mm)."""
        w, h = self.semi_width_mm, self.semi_height_mm
        lo = np.array([-1.2 * w, -self.pectoralis_mm, -1.2 * h])
        hi = np.array([1.2 * w, self.depth_mm, 1.2 * h])
        return lo, hi

    def nipple_mm(self) -> np.ndarray:
        """The nipple (tip of the outer surface on the +y axis)."""
        return np.array([0.0, self.depth_mm, 0.0])


_FLOATS = (
    "glandular_fraction",
    "depth_mm",
    "semi_width_mm",
    "semi_height_mm",
    "exponent",
    "skin_mm",
    "compressed_thickness_mm",
    "retromammary_mm",
    "pectoralis_mm",
    "ligament_mm",
)


def _validated(where: str, fields: dict[str, Any]) -> BreastParams:
    known = {f.name for f in dataclasses.fields(BreastParams)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown field `{unknown[0]}` (allowed: {', '.join(sorted(known))})"
        )
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(BreastParams)
        if f.default is not dataclasses.MISSING
    }
    missing = sorted(known - set(fields) - set(defaults))
    if missing:
        raise ValueError(
            f"{where}: missing field `{missing[0]}` (give every field without a default)"
        )
    v = {**defaults, **fields}
    density = v["density"]
    if density not in DENSITY_CLASSES:
        raise FieldError(
            where,
            "density",
            f"`density` must be a BI-RADS class 'a', 'b', 'c' or 'd' (got {density!r})",
        )
    out: dict[str, Any] = {"density": density}
    for name in _FLOATS:
        out[name] = positive(where, name, v[name])
    for name in ("n_ducts", "n_ligaments"):
        out[name] = integer(where, name, v[name], minimum=1)
    seed = v["anatomy_seed"]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise FieldError(
            where, "anatomy_seed", f"`anatomy_seed` must be an integer in [0, 2**32) (got {seed!r})"
        )
    out["anatomy_seed"] = int(seed)
    if out["glandular_fraction"] > 0.7:
        raise FieldError(
            where,
            "glandular_fraction",
            f"`glandular_fraction` must be in (0, 0.7] (got {out['glandular_fraction']})",
        )
    if not 0.5 <= out["exponent"] <= 1.9:
        raise FieldError(
            where, "exponent", f"`exponent` must be in [0.5, 1.9] (got {out['exponent']})"
        )
    smallest = min(out["depth_mm"], out["semi_width_mm"], out["semi_height_mm"])
    if out["skin_mm"] > smallest / 4.0 or out["retromammary_mm"] > smallest / 4.0:
        field = "skin_mm" if out["skin_mm"] > smallest / 4.0 else "retromammary_mm"
        raise FieldError(
            where,
            field,
            f"`{field}` must be at most a quarter of the smallest semi-axis ({smallest / 4.0:g} mm) "
            f"(got {out[field]})",
        )
    return BreastParams(**out)


def sample_breast_params(
    key: PRNGKey, *, density: str | None = None, size_scale: float | None = None
) -> BreastParams:
    """Draw one individual of the breast family.

    The density class is drawn with the BI-RADS 5th-edition shares (10 / 40 / 40 / 10 %) unless
    given; its target glandular fraction, nominal size and compressed thickness are VICTRE's
    (see `DENSITY_CLASSES`). The size is scaled by a factor uniform in [0.85, 1.15] (an
    assumption), the skin thickness drawn from Shi et al.'s normal (1.44 +- 0.25 mm, truncated to
    their range 0.87-2.34 mm), and a seed for the internal anatomy.

    Nominal size of a class: semi-height = VICTRE breast height / 2; semi-width and depth follow
    VICTRE's surface coefficients, ``semi-height * (a2 / a1)^eps1`` and
    ``semi-height * (a3 / a1)^eps1`` (its surface points are ``(a sin u)^eps1``).

    Args:
        key: a ``jax.random`` key.
        density: ``"a"``, ``"b"``, ``"c"`` or ``"d"``, or ``None`` (drawn).
        size_scale: the size factor, or ``None`` (drawn). ``1.0`` gives the class's nominal
            outer shape: breasts that differ only inside (skin, anatomy) share one compression.

    Returns:
        A validated `BreastParams` (round-trips through ``dataclasses.asdict`` and
        `BreastParams.create`).

    Raises:
        ValueError: a density class other than a-d, a size factor outside [0.5, 2].

    Example:
        >>> p = sample_breast_params(jax.random.key(0), density="c")  # doctest: +SKIP
    """
    where = "medphys.phantoms.sample_breast_params"
    if density is not None and density not in DENSITY_CLASSES:
        raise FieldError(
            where, "density", f"`density` must be 'a', 'b', 'c', 'd' or None (got {density!r})"
        )
    if size_scale is not None and not (
        isinstance(size_scale, (int, float))
        and not isinstance(size_scale, bool)
        and 0.5 <= float(size_scale) <= 2.0
    ):
        raise FieldError(
            where, "size_scale", f"`size_scale` must be in [0.5, 2] or None (got {size_scale!r})"
        )
    k_class, k_size, k_skin, k_seed = (jax.random.fold_in(key, i) for i in range(4))
    if density is None:
        classes = tuple(CLASS_SHARES)
        p = jnp.asarray([CLASS_SHARES[c] for c in classes])
        density = classes[
            int(jax.random.choice(k_class, len(classes), p=jnp.asarray(p, jnp.float32)))
        ]
    _, vgf, thickness, height, (a1, a2, a3), eps1 = DENSITY_CLASSES[density]
    # float32 draws: the same key gives the same breast with and without x64
    scale = float(
        jax.random.uniform(k_size, (), jnp.float32, minval=SIZE_SCALE[0], maxval=SIZE_SCALE[1])
    )
    if size_scale is not None:
        scale = float(size_scale)
    mean, sd, lo, hi = SKIN_MM
    z = float(
        jax.random.truncated_normal(k_skin, (lo - mean) / sd, (hi - mean) / sd, (), jnp.float32)
    )
    semi_h = scale * height / 2.0
    return _validated(
        where,
        {
            "density": density,
            "glandular_fraction": vgf,
            "depth_mm": round(semi_h * (a3 / a1) ** eps1, 6),
            "semi_width_mm": round(semi_h * (a2 / a1) ** eps1, 6),
            "semi_height_mm": round(semi_h, 6),
            "exponent": eps1,
            "skin_mm": round(mean + sd * z, 6),
            "compressed_thickness_mm": thickness,
            "anatomy_seed": int(jax.random.randint(k_seed, (), 0, 2**31 - 1, jnp.int32)),
        },
    )


def make_breast(params: BreastParams) -> Phantom:
    """Build the breast phantom of ``params`` (deterministic: same params, same phantom).

    Returns:
        A `Phantom` named ``"breast-<density>"`` in air, structures (painting order)
        ``pectoralis``, ``skin``, ``breast_fat``, ``fibroglandular``, ``cooper_ligaments``,
        ``ducts``, ``lobules``. Its glandular fraction (see the module docstring) is
        ``params.glandular_fraction`` to within the quadrature of the small structures
        (measured within 0.01 on a 1 mm grid, `measure_glandular_fraction`).

    Raises:
        TypeError: ``params`` is not a `BreastParams`.
        ValueError: the target glandular fraction does not fit this breast (the dome would come
            closer to the skin than 8 % of the breast's size).

    Example:
        >>> ph = make_breast(sample_breast_params(jax.random.key(0), density="b"))  # doctest: +SKIP
        >>> lv = voxelize(ph, shape=(64, 64, 64), spacing_mm=3.0, center_mm=(0, 40, 0))  # doctest: +SKIP
    """
    where = "medphys.phantoms.make_breast"
    if not isinstance(params, BreastParams):
        raise TypeError(
            f"{where}: `params` must be a BreastParams (got {type(params).__name__}); draw one "
            "with sample_breast_params or build it with BreastParams.create"
        )
    p = params
    s = p.skin_mm
    outer = p.outer_shape()
    inner_semi = (p.semi_width_mm - s, p.semi_height_mm - s, p.depth_mm - s)
    inner = _anat.hemi((0.0, 0.0, 0.0), inner_semi, p.exponent, 0.0)
    frame = _anat.Frame(
        inner_semi=inner_semi,
        exponent=p.exponent,
        retromammary_mm=p.retromammary_mm,
        nipple_y_mm=p.depth_mm - s - 1.0,
    )
    draws = _anat.draw(
        jax.random.key(p.anatomy_seed), frame, n_ducts=p.n_ducts, n_ligaments=p.n_ligaments
    )
    interior_mm3 = _anat.dome_volume_mm3(inner_semi, p.exponent)
    try:
        anatomy = _anat.solve(
            frame,
            draws,
            p.glandular_fraction * interior_mm3,
            inner=inner,
            ligament_mm=p.ligament_mm,
        )
    except _anat.Unreachable as e:
        raise FieldError(
            where,
            "glandular_fraction",
            f"`glandular_fraction` does not fit this breast: its fibroglandular tissue can fill at "
            f"most {e.largest_mm3 / interior_mm3:.3f} of the interior (got "
            f"{p.glandular_fraction}); lower `glandular_fraction` or `retromammary_mm`",
        ) from None
    pect = EllipticCylinder(
        jnp.asarray(np.array([0.0, -p.pectoralis_mm / 2.0, 0.0])),
        jnp.asarray(np.array([1.2 * p.semi_width_mm, 1.2 * p.semi_height_mm])),
        jnp.asarray(np.float64(p.pectoralis_mm / 2.0)),
        jnp.asarray(np.array([math.pi / 2.0, 0.0, 0.0])),
    )
    rows = (
        ("pectoralis", "muscle", pect),
        ("skin", "skin", outer),
        ("breast_fat", "breast_adipose", inner),
        ("fibroglandular", "glandular", anatomy.fibroglandular),
        ("cooper_ligaments", "glandular", anatomy.ligaments),
        ("ducts", "glandular", anatomy.ducts),
        ("lobules", "glandular", anatomy.lobules),
    )
    structures = tuple(PhantomStructure.create(n, m, sh) for n, m, sh in rows)
    return Phantom.create(
        f"breast-{p.density}",
        structures,
        background_material="air",
        description=(
            f"procedural uncompressed breast, BI-RADS {p.density} ({DENSITY_CLASSES[p.density][0]}), "
            f"glandular fraction {p.glandular_fraction:g}; chest wall y = 0, nipple on +y"
        ),
    )


def measure_glandular_fraction(volume: LabeledVolume) -> float:
    """Glandular volume fraction of a voxelized breast: the glandular structures' volume over
    the breast interior's (skin and muscle excluded), from partial-volume fractions when the
    volume has them, else from labels.

    Raises:
        ValueError: the volume has no ``breast_fat`` structure (not a `make_breast` phantom).
    """
    where = "medphys.phantoms.measure_glandular_fraction"
    names = set(volume.names)
    if "breast_fat" not in names:
        raise ValueError(
            f"{where}: `volume` has no `breast_fat` structure (got {sorted(names)}); voxelize a "
            "phantom from make_breast"
        )
    vols = {n: volume.structure_volume_mm3(n) for n in INTERIOR_STRUCTURES if n in names}
    total = sum(vols.values())
    gland = sum(v for n, v in vols.items() if n in GLANDULAR_STRUCTURES)
    return gland / total if total > 0 else math.nan
