"""Cartesian k-space sampling patterns along the phase-encoding direction (ky).

Readout (kx) is always fully sampled; a pattern keeps or drops whole ky lines, the same lines in
every slice and coil. Each pattern draws its mask from a key (`sample_mask`); the deterministic
patterns ignore the key. Counts are static (they depend only on the pattern and the number of
lines), so masks have no data-dependent shapes.

References:
    Lustig M, Donoho D, Pauly JM. Sparse MRI: the application of compressed sensing for rapid MR
    imaging. Magn Reson Med 58:1182-1195 (2007) (variable-density random undersampling).
    Zbontar J et al. fastMRI: an open dataset and benchmarks for accelerated MRI.
    arXiv:1811.08839 (2018) (random and equispaced masks with a fully sampled centre).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _checks as chk

__all__ = [
    "AbstractSampling",
    "EquispacedMask",
    "FullSampling",
    "RandomMask",
    "VariableDensityMask",
]


class AbstractSampling(abc.ABC):
    """Which ky lines are acquired."""

    @abc.abstractmethod
    def sample_mask(
        self, key: Array, n_ky: int, *, dtype: Any = jnp.float32
    ) -> Float[Array, " ky"]:
        """1 for each acquired ky line, 0 otherwise (line ``n_ky // 2`` is k-space centre)."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FullSampling(AbstractSampling):
    """Every ky line (no acceleration)."""

    def sample_mask(self, key, n_ky, *, dtype=jnp.float32):
        return jnp.ones((n_ky,), dtype)


def _check_acceleration(where: str, acceleration: Any, acs_lines: Any) -> tuple[float, int]:
    r = chk.number(where, "acceleration", acceleration)
    if r < 1:
        raise chk.FieldError(where, "acceleration", f"`acceleration` must be >= 1 (got {r})")
    return r, chk.integer(where, "acs_lines", acs_lines, minimum=0)


def _acs(n_ky: int, acs_lines: int) -> np.ndarray:
    """Boolean mask of the central block of ``acs_lines`` lines around ``n_ky // 2``."""
    acs = min(acs_lines, n_ky)
    start = n_ky // 2 - acs // 2
    out = np.zeros(n_ky, dtype=bool)
    out[start : start + acs] = True
    return out


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EquispacedMask(AbstractSampling):
    """Every ``acceleration``-th line through the centre, plus a fully sampled centre (ACS).

    Attributes:
        acceleration: integer line spacing R.
        acs_lines: number of central auto-calibration lines.
    """

    acceleration: int = dataclasses.field(metadata={"static": True})
    acs_lines: int = dataclasses.field(default=0, metadata={"static": True})

    @classmethod
    def create(cls, acceleration: int, *, acs_lines: int = 0) -> EquispacedMask:
        """Validated constructor.

        Raises:
            ValueError: ``acceleration < 1`` (or not an integer), ``acs_lines < 0``.
        """
        where = f"{chk.PREFIX}EquispacedMask.create"
        r = chk.integer(where, "acceleration", acceleration, minimum=1)
        return cls(acceleration=r, acs_lines=chk.integer(where, "acs_lines", acs_lines, minimum=0))

    def sample_mask(self, key, n_ky, *, dtype=jnp.float32):
        lines = (np.arange(n_ky) - n_ky // 2) % self.acceleration == 0
        return jnp.asarray(lines | _acs(n_ky, self.acs_lines), dtype)


def _random_lines(
    key: Array, n_ky: int, acceleration: float, acs_lines: int, weights: np.ndarray, dtype: Any
) -> Array:
    """ACS block plus random non-ACS lines (drawn without replacement with probability ∝ weights),
    ``round(n_ky / acceleration)`` lines in all (at least the ACS block)."""
    acs = _acs(n_ky, acs_lines)
    total = max(round(n_ky / acceleration), int(acs.sum()))
    extra = total - int(acs.sum())
    base = jnp.asarray(acs, dtype)
    if extra == 0:
        return base
    p = np.where(acs, 0.0, weights)
    picked = jax.random.choice(key, n_ky, (extra,), replace=False, p=jnp.asarray(p / p.sum()))
    return base.at[picked].set(1.0)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RandomMask(AbstractSampling):
    """Uniformly random ky lines plus a fully sampled centre, ``round(n_ky / acceleration)`` in all.

    Attributes:
        acceleration: reduction factor R >= 1 (need not be an integer).
        acs_lines: number of central auto-calibration lines.
    """

    acceleration: float = dataclasses.field(metadata={"static": True})
    acs_lines: int = dataclasses.field(default=0, metadata={"static": True})

    @classmethod
    def create(cls, acceleration: float, *, acs_lines: int = 0) -> RandomMask:
        """Validated constructor.

        Raises:
            ValueError: ``acceleration < 1`` or ``acs_lines < 0``.
        """
        r, acs = _check_acceleration(f"{chk.PREFIX}RandomMask.create", acceleration, acs_lines)
        return cls(acceleration=r, acs_lines=acs)

    def sample_mask(self, key, n_ky, *, dtype=jnp.float32):
        return _random_lines(key, n_ky, self.acceleration, self.acs_lines, np.ones(n_ky), dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VariableDensityMask(AbstractSampling):
    """Random ky lines denser near the centre, plus a fully sampled centre.

    Line ``ky`` is drawn with probability proportional to ``(1 - |ky - n/2| / (n/2))**power``
    (polynomial variable density, Lustig et al. 2007), ``round(n_ky / acceleration)`` lines in all.

    Attributes:
        acceleration: reduction factor R >= 1.
        acs_lines: number of central auto-calibration lines.
        power: decay exponent of the sampling density (> 0).
    """

    acceleration: float = dataclasses.field(metadata={"static": True})
    acs_lines: int = dataclasses.field(default=0, metadata={"static": True})
    power: float = dataclasses.field(default=2.0, metadata={"static": True})

    @classmethod
    def create(
        cls, acceleration: float, *, acs_lines: int = 0, power: float = 2.0
    ) -> VariableDensityMask:
        """Validated constructor.

        Raises:
            ValueError: ``acceleration < 1``, ``acs_lines < 0`` or ``power <= 0``.
        """
        where = f"{chk.PREFIX}VariableDensityMask.create"
        r, acs = _check_acceleration(where, acceleration, acs_lines)
        return cls(acceleration=r, acs_lines=acs, power=chk.positive(where, "power", power))

    def sample_mask(self, key, n_ky, *, dtype=jnp.float32):
        distance = np.abs(np.arange(n_ky) - n_ky // 2) / max(n_ky / 2, 1.0)
        weights = np.clip(1.0 - distance, 1e-3, None) ** self.power
        return _random_lines(key, n_ky, self.acceleration, self.acs_lines, weights, dtype)
