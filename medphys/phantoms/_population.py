"""Virtual populations: draw plausible individuals of a phantom family.

Sampling is split in two (STYLE.md): `sample_params(key, phantom)` draws the parameters of one
individual, `apply(params, phantom)` builds it deterministically. The parameters are recorded with
every generated case, so each case can be rebuilt exactly.

Model (per family, in its TOML ``[population]`` table):

- covariates (families that define them), unless given: height from a normal distribution
  truncated at ``± truncate_sd``; body-mass index from a log-normal distribution (adult BMI is
  right-skewed), truncated at ``± truncate_sd`` in log space and never below 16 kg/m^2 (severe
  thinness, WHO). A family whose TOML gives ``bmi_percentiles = [p5, p50, p95]`` (published
  percentiles: ``adult-male`` and ``adult-female`` cite NHANES 2015-2018) uses the log-normal
  fitted to them; others use the log-normal with the mean and standard deviation of their TOML
  ``bmi = [mean, sd]``.
  The TOML's ``bmi`` mean is also the reference individual's BMI (the catalog's geometry).
  Height scales the body length (z) by ``height / reference height``; BMI sets the subcutaneous
  fat thickness ``fat_mm + fat_mm_per_bmi * (BMI - reference BMI)`` (floored at 20% of the
  reference), applied by moving the outer surface of the ``fat_layer`` structures (skin,
  subcutaneous fat);
- the whole body is then scaled about the origin by ``1 + body_scale_sd * z`` per axis (lateral,
  antero-posterior, length); each structure is scaled about its own centre by
  ``1 + size_sd * z``; every ``z`` is a standard normal truncated at ``± truncate_sd``;
- a structure with a ``host`` (a lesion added by `insert_lesion`) has no variation of its own: it
  moves and scales with its host (the host's transform, about the host's centre), so it stays
  where it was inside the host. A lesion inserted into an individual (after `sample`) keeps
  exactly the size and position it was given.

``size_sd`` and ``fat_layer`` are per structure (`PhantomStructure`); one ``z`` is drawn per
structure in painting order, so adding a structure at the end keeps every earlier draw.

References:
    Fryar CD, Carroll MD, Gu Q, Afful J, Ogden CL. Anthropometric reference data for children and
    adults: United States, 2015-2018. National Center for Health Statistics, Vital Health Stat
    3(46), 2021 (body-mass index of adults aged 20 and over, all race and Hispanic-origin groups:
    selected percentiles).
    WHO Expert Consultation, Lancet 363 (2004) 157-163 (BMI classes; < 16 kg/m^2: severe
    thinness).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import FieldError, number
from .._types import PRNGKey
from ._anatomy import Phantom, anchors
from ._phantom import load

_HEIGHT_CM = (120.0, 220.0)
_WEIGHT_KG = (30.0, 250.0)
_BMI = (14.0, 50.0)
#: lowest BMI a drawn individual gets (kg/m^2): below it is severe thinness (WHO)
BMI_FLOOR = 16.0


@dataclasses.dataclass(frozen=True)
class LogNormalBMI:
    """A log-normal adult BMI distribution: ``ln BMI ~ N(ln median, sigma_log^2)``.

    Attributes:
        median: median BMI (kg/m^2).
        sigma_log: standard deviation of ``ln BMI``.
        percentiles: the published (5th, 50th, 95th) percentiles it was fitted to (kg/m^2).
        source: where the percentiles come from.
    """

    median: float
    sigma_log: float
    percentiles: tuple[float, float, float] = (0.0, 0.0, 0.0)
    source: str = ""

    @classmethod
    def fit(cls, p5: float, p50: float, p95: float, source: str) -> LogNormalBMI:
        """Least-squares fit of ``ln q = mu + sigma z`` to the 5th/50th/95th percentiles."""
        logs = [math.log(p5), math.log(p50), math.log(p95)]
        z95 = 1.6448536269514722
        return cls(
            median=math.exp(sum(logs) / 3.0),
            sigma_log=(logs[2] - logs[0]) / (2.0 * z95),
            percentiles=(p5, p50, p95),
            source=source,
        )

    @classmethod
    def from_moments(cls, mean: float, sd: float, source: str = "") -> LogNormalBMI:
        """The log-normal with this arithmetic mean and standard deviation."""
        var_log = math.log1p((sd / mean) ** 2)
        return cls(math.exp(math.log(mean) - var_log / 2.0), math.sqrt(var_log), source=source)


def bmi_distribution(phantom: Phantom) -> LogNormalBMI | None:
    """The BMI distribution individuals of this family are drawn from (``None``: no BMI model)."""
    pop = phantom.population
    if pop is None or pop.bmi is None:
        return None
    return _bmi_distribution(pop)


def _bmi_distribution(pop) -> LogNormalBMI:
    if pop.bmi_percentiles is not None:  # published percentiles (the TOML cites them)
        return LogNormalBMI.fit(*pop.bmi_percentiles, source=pop.source)
    return LogNormalBMI.from_moments(pop.bmi[0], pop.bmi[1], pop.source)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PhantomParams:
    """One individual.

    Attributes:
        body_scale: (3,) body scale per world axis (height is in the z factor).
        organ_scale: (structures,) size factor per structure (unused for a structure with a
            ``host``: it takes its host's).
        fat_mm: () change of the subcutaneous fat thickness from the reference (mm).
        height_cm: () height of the individual (cm; 0 when the family has no height model).
        bmi: () body-mass index (kg/m^2; 0 when the family has no BMI model).
    """

    body_scale: Float[Array, "3"]
    organ_scale: Float[Array, " structures"]
    fat_mm: Float[Array, ""] | float = 0.0
    height_cm: Float[Array, ""] | float = 0.0
    bmi: Float[Array, ""] | float = 0.0

    def to_dict(self) -> dict[str, list[float] | float]:
        return {
            "body_scale": [float(v) for v in self.body_scale],
            "organ_scale": [float(v) for v in self.organ_scale],
            "fat_mm": float(self.fat_mm),
            "height_cm": float(self.height_cm),
            "bmi": float(self.bmi),
        }


def _covariate(where: str, name: str, value: float | None, bounds: tuple[float, float]) -> float:
    out = number(where, name, value)
    if not bounds[0] <= out <= bounds[1]:
        raise FieldError(where, name, f"`{name}` must be in [{bounds[0]}, {bounds[1]}] (got {out})")
    return out


def sample_params(
    key: PRNGKey,
    phantom: Phantom,
    *,
    height_cm: float | None = None,
    weight_kg: float | None = None,
    bmi: float | None = None,
) -> PhantomParams:
    """Draw one individual's parameters from the family's population model.

    Args:
        key: `jax.random` key; the same key (and covariates) gives the same parameters.
        phantom: the family's reference phantom.
        height_cm: fix the height (cm) instead of drawing it.
        weight_kg: fix the weight (kg); with the height it gives the BMI.
        bmi: fix the body-mass index (kg/m^2) instead of drawing it (not with ``weight_kg``).

    Raises:
        ValueError: a covariate out of range, both ``weight_kg`` and ``bmi``, or a covariate for a
            family without a height/BMI model.
    """
    where = "medphys.phantoms.sample"
    pop = phantom.population
    n = len(phantom.structures)
    given = {"height_cm": height_cm, "weight_kg": weight_kg, "bmi": bmi}
    if weight_kg is not None and bmi is not None:
        raise ValueError(f"{where}: give `weight_kg` or `bmi`, not both")
    if pop is None or pop.height_cm is None or pop.bmi is None:
        named = [k for k, v in given.items() if v is not None]
        if named:
            raise ValueError(
                f"{where}: phantom {phantom.name!r} has no height/BMI model, so `{named[0]}` "
                "cannot be set (families with one: adult-male, adult-female)"
            )
    if pop is None:
        return PhantomParams(jnp.ones(3, jnp.float32), jnp.ones(n, jnp.float32))
    k_body, k_organ = jax.random.split(key)
    t = pop.truncate_sd
    z_body = jax.random.truncated_normal(k_body, -t, t, (3,), dtype=jnp.float32)
    z_organ = jax.random.truncated_normal(k_organ, -t, t, (n,), dtype=jnp.float32)
    body = 1.0 + jnp.asarray(pop.body_scale_sd, jnp.float32) * z_body
    size_sd = tuple(s.size_sd for s in phantom.structures)
    organ = 1.0 + jnp.asarray(size_sd, jnp.float32) * z_organ
    if pop.height_cm is None or pop.bmi is None:
        return PhantomParams(body, organ)
    dist = _bmi_distribution(pop)
    # BMI: log-normal, truncated at +-t in log space and at the floor (height: the same draw as a
    # plain truncated normal, so a key keeps its height)
    lo = -t if dist.sigma_log == 0 else max(-t, math.log(BMI_FLOOR / dist.median) / dist.sigma_log)
    lower = jnp.asarray([-t, min(lo, 0.999 * t)], jnp.float32)
    z_h, z_b = jax.random.truncated_normal(jax.random.fold_in(key, 2), lower, t, (2,), jnp.float32)
    if height_cm is None:
        h = pop.height_cm[0] + pop.height_cm[1] * z_h
    else:
        h = jnp.float32(_covariate(where, "height_cm", height_cm, _HEIGHT_CM))
    if weight_kg is not None:
        w = _covariate(where, "weight_kg", weight_kg, _WEIGHT_KG)
        b = jnp.float32(w / (float(h) / 100.0) ** 2)
        _covariate(where, "bmi (from weight_kg and height_cm)", float(b), _BMI)
    elif bmi is not None:
        b = jnp.float32(_covariate(where, "bmi", bmi, _BMI))
    else:
        b = jnp.maximum(dist.median * jnp.exp(jnp.float32(dist.sigma_log) * z_b), BMI_FLOOR)
    fat = jnp.maximum(pop.fat_mm_per_bmi * (b - pop.bmi[0]), -0.8 * pop.fat_mm)
    body = body * jnp.stack([jnp.float32(1.0), jnp.float32(1.0), h / pop.height_cm[0]])
    return PhantomParams(body, organ, jnp.float32(fat), jnp.float32(h), jnp.float32(b))


def apply(params: PhantomParams, phantom: Phantom) -> Phantom:
    """Build the individual described by ``params`` (deterministic, differentiable).

    Each structure is grown with the fat layer (``fat_layer`` structures), scaled with the body
    about the origin, then scaled by its ``organ_scale`` entry about its own (scaled) centre. A
    structure with a ``host`` (a lesion) follows its host instead: the host's fat-layer growth,
    the body scaling and the host's ``organ_scale`` about the host's centre, so it keeps its place
    and proportion inside the host (its own ``organ_scale`` entry is not used). To give a lesion
    a fixed size and position in an individual, insert it after `apply`/`sample`.

    A phantom at an instant of its motion (`at`) keeps its warp: the warp was fitted to the
    anatomy it was made for; for an individual's own breathing, call `at` after `apply`.

    Raises:
        ValueError: ``params.organ_scale`` does not have one entry per structure (params drawn
            for another phantom, e.g. before `insert_lesion` added a structure).
    """
    structures = phantom.structures
    n = len(structures)
    if jnp.shape(params.organ_scale) != (n,):
        raise ValueError(
            f"medphys.phantoms.apply: `params.organ_scale` has shape "
            f"{tuple(jnp.shape(params.organ_scale))} for phantom {phantom.name!r} with {n} "
            "structures; draw the params from this phantom (sample_params(key, phantom))"
        )
    origin = jnp.zeros(3, jnp.float32)
    pop = phantom.population
    follow = anchors(structures)
    if pop is not None:
        half = jnp.asarray(pop.trunk_semi_axes_mm, jnp.float32)
        grow = jnp.concatenate([1.0 + params.fat_mm / half, jnp.ones(1, jnp.float32)])
    body_scaled = []
    for s, a in zip(structures, follow, strict=True):
        shape = s.shape
        if pop is not None and structures[a].fat_layer:
            shape = shape.scaled(grow, origin)
        body_scaled.append(shape.scaled(params.body_scale, origin))
    shapes = [
        shape.scaled(jnp.full(3, params.organ_scale[a]), body_scaled[a].center_mm)
        for shape, a in zip(body_scaled, follow, strict=True)
    ]
    return phantom.with_shapes(shapes)


def sample(
    key: PRNGKey,
    phantom: str | Path | Phantom,
    *,
    height_cm: float | None = None,
    weight_kg: float | None = None,
    bmi: float | None = None,
) -> tuple[Phantom, PhantomParams]:
    """Draw one individual of a phantom family.

    Args:
        key: `jax.random` key; the same key gives the same individual.
        phantom: a catalog name, a TOML path, or a loaded `Phantom`.
        height_cm, weight_kg, bmi: fix covariates instead of drawing them (families with a
            height/BMI model: ``adult-male``, ``adult-female``).

    Returns:
        the individual and the parameters that made it (record them to rebuild it).

    Example:
        >>> import jax
        >>> person, params = sample(jax.random.key(0), "adult-female", height_cm=170, bmi=30)
    """
    base = phantom if isinstance(phantom, Phantom) else load(phantom)
    params = sample_params(key, base, height_cm=height_cm, weight_kg=weight_kg, bmi=bmi)
    return apply(params, base), params
