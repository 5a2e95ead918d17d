"""Virtual populations: draw plausible individuals of a phantom family.

Sampling is split in two (STYLE.md): `sample_params(key, phantom)` draws the parameters of one
individual, `apply(params, phantom)` builds it deterministically. The parameters are recorded with
every generated case, so each case can be rebuilt exactly.

Model (per family, in its TOML ``[population]`` table): the whole body is scaled about the origin
by ``1 + body_scale_sd * z`` per axis (lateral, antero-posterior, length); each structure is then
scaled about its own centre by ``1 + size_sd * z``; every ``z`` is a standard normal truncated at
``± truncate_sd``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._types import PRNGKey
from ._phantom import Phantom, load


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PhantomParams:
    """One individual: body scale per world axis and a size factor per structure."""

    body_scale: Float[Array, "3"]
    organ_scale: Float[Array, " structures"]

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "body_scale": [float(v) for v in self.body_scale],
            "organ_scale": [float(v) for v in self.organ_scale],
        }


def sample_params(key: PRNGKey, phantom: Phantom) -> PhantomParams:
    """Draw one individual's parameters from the family's population model."""
    pop = phantom.population
    n = len(phantom.shapes)
    if pop is None:
        return PhantomParams(jnp.ones(3, jnp.float32), jnp.ones(n, jnp.float32))
    k_body, k_organ = jax.random.split(key)
    t = pop.truncate_sd
    z_body = jax.random.truncated_normal(k_body, -t, t, (3,), dtype=jnp.float32)
    z_organ = jax.random.truncated_normal(k_organ, -t, t, (n,), dtype=jnp.float32)
    body = 1.0 + jnp.asarray(pop.body_scale_sd, jnp.float32) * z_body
    organ = 1.0 + jnp.asarray(pop.organ_size_sd, jnp.float32) * z_organ
    return PhantomParams(body, organ)


def apply(params: PhantomParams, phantom: Phantom) -> Phantom:
    """Build the individual described by ``params`` (deterministic, differentiable)."""
    origin = jnp.zeros(3, jnp.float32)
    shapes = []
    for i, shape in enumerate(phantom.shapes):
        body_scaled = shape.scaled(params.body_scale, origin)
        shapes.append(body_scaled.scaled(jnp.full(3, params.organ_scale[i]), body_scaled.center_mm))
    return dataclasses.replace(phantom, shapes=tuple(shapes))


def sample(key: PRNGKey, phantom: str | Path | Phantom) -> tuple[Phantom, PhantomParams]:
    """Draw one individual of a phantom family.

    Args:
        key: `jax.random` key; the same key gives the same individual.
        phantom: a catalog name, a TOML path, or a loaded `Phantom`.

    Returns:
        the individual and the parameters that made it (record them to rebuild it).
    """
    base = phantom if isinstance(phantom, Phantom) else load(phantom)
    params = sample_params(key, base)
    return apply(params, base), params
