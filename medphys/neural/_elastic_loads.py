"""Boundary conditions and loads of an elastic problem, and the displacement they shape.

Dirichlet conditions live on axis-aligned planes and are built into the displacement, never
penalised: component ``c`` is ``u_c(x) = g_c(x) + D_c(x) N_c(x)``, where ``N`` is the network's
output, ``D_c`` the product of the (scaled) distances to the planes that constrain ``c`` and
``g_c`` the linear interpolation of their prescribed values (Sukumar & Srivastava 2022 use the
same construction with general distance functions). A symmetry plane or a roller is `Fixed` with
the normal component only; a clamp fixes all three.

Loads (their potential, per unit reference volume or area, enters the total potential energy):

- `Pressure`: a follower-free (dead) pressure on the part of the boundary on the zero set of a
  shape's level, ``−∫ t·u dA`` with ``t = −p n``;
- `Gravity`: a body force ``ρ a`` (``ρ`` from each structure's material);
- `Plate`: a rigid, frictionless plate ``x_axis = at_mm`` that the body must stay on one side of,
  by the penalty ``κ/2 ∫ ⟨gap⟩₊² dA`` over the body's surface;
- `Growth`: one structure grows isotropically (a lesion's mass effect): ``F = Fₑ · g I``, the
  strain energy is that of ``Fₑ`` per grown volume, and the tissue around is pushed aside.

Boundary integrals become volume integrals by the divergence theorem (`medphys.neural.band`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = [
    "Fixed",
    "Gravity",
    "Growth",
    "Parameter",
    "Plate",
    "Pressure",
    "dirichlet_lift",
    "resolve",
]

_AXES = (0, 1, 2)


def _number(where: str, name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: `{name}` must be a number (got {value!r})") from None
    if not math.isfinite(out):
        raise ValueError(f"{where}: `{name}` must be finite (got {out})")
    return out


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A load or boundary value that varies over a population: ``Parameter("thickness_mm", 40,
    60)`` in place of a number makes the network take it as an input, trained over the range
    (a parametric surrogate: one training serves every value in ``[low, high]``)."""

    name: str
    low: float
    high: float

    @classmethod
    def create(cls, name: str, low: float, high: float) -> Parameter:
        where = "medphys.neural.Parameter.create"
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"{where}: `name` must be an identifier (got {name!r})")
        lo, hi = _number(where, "low", low), _number(where, "high", high)
        if not lo < hi:
            raise ValueError(f"{where}: `low` must be below `high` (got {lo}, {hi})")
        return cls(name, lo, hi)

    @property
    def largest(self) -> float:
        return max(abs(self.low), abs(self.high))


def _value(where: str, name: str, value: Any) -> float | Parameter:
    return value if isinstance(value, Parameter) else _number(where, name, value)


def resolve(value: float | Parameter, theta: dict[str, Array]) -> Any:
    """A number as it is, a `Parameter` as its value in ``theta``."""
    return theta[value.name] if isinstance(value, Parameter) else value


@dataclasses.dataclass(frozen=True)
class Fixed:
    """Prescribed displacement ``value_mm`` of ``components`` on the plane ``x[axis] = at_mm``.

    ``Fixed(axis=0, at_mm=0.0, components=(0,))`` is a symmetry plane (roller) at ``x = 0``;
    ``Fixed(axis=1, at_mm=0.0)`` clamps the plane ``y = 0``. ``value_mm`` may be a `Parameter`.
    """

    axis: int
    at_mm: float
    components: tuple[int, ...] = (0, 1, 2)
    value_mm: float | Parameter = 0.0

    @classmethod
    def create(
        cls,
        axis: int,
        at_mm: float,
        *,
        components: Sequence[int] = (0, 1, 2),
        value_mm: float | Parameter = 0.0,
    ) -> Fixed:
        where = "medphys.neural.Fixed.create"
        if axis not in _AXES:
            raise ValueError(f"{where}: `axis` must be 0, 1 or 2 (got {axis!r})")
        comps = tuple(components)
        if not comps or any(c not in _AXES for c in comps) or len(set(comps)) != len(comps):
            raise ValueError(
                f"{where}: `components` must be distinct axes among 0, 1, 2 (got {components!r})"
            )
        return cls(axis, _number(where, "at_mm", at_mm), comps, _value(where, "value_mm", value_mm))


@dataclasses.dataclass(frozen=True)
class Pressure:
    """A pressure ``kpa`` (positive pushes into the body) on the boundary where ``surface``'s
    level is zero (e.g. the cavity of a thick-walled vessel: ``surface`` is the cavity's shape).
    ``kpa`` may be a `Parameter`."""

    kpa: float | Parameter
    surface: Any

    @classmethod
    def create(cls, kpa: float | Parameter, surface: Any) -> Pressure:
        where = "medphys.neural.Pressure.create"
        if not hasattr(surface, "level"):
            raise TypeError(
                f"{where}: `surface` must be a shape with `level` (got {surface!r:.60})"
            )
        return cls(_value(where, "kpa", kpa), surface)


@dataclasses.dataclass(frozen=True)
class Growth:
    """Isotropic growth of the body's structure ``structure`` by the stretch ``stretch``.

    The multiplicative split of growth mechanics (Rodriguez, Hoger & McCulloch 1994):
    ``F = Fₑ F_g`` with ``F_g = g I``, and the strain energy density per reference volume is
    ``g³ W(Fₑ)``. A free structure would become ``g`` times larger; embedded in a host it
    grows less and pushes the host aside (a mass effect), while the host keeps the volume its
    material law allows. ``stretch`` may be a `Parameter` (one training for a range of
    sizes)."""

    structure: str
    stretch: float | Parameter

    @classmethod
    def create(cls, structure: str, stretch: float | Parameter) -> Growth:
        where = "medphys.neural.Growth.create"
        if not isinstance(structure, str) or not structure:
            raise TypeError(f"{where}: `structure` must be a structure's name (got {structure!r})")
        g = _value(where, "stretch", stretch)
        low = g.low if isinstance(g, Parameter) else g
        high = g.high if isinstance(g, Parameter) else g
        if not (0.5 <= low and high <= 2.0):
            raise ValueError(
                f"{where}: `stretch` must lie in 0.5-2 (a linear size change of -50 % to +100 %; "
                f"got {low if low < 0.5 else high})"
            )
        return cls(structure, g)


@dataclasses.dataclass(frozen=True)
class Gravity:
    """A uniform acceleration (m/s²) acting on every structure's mass (``ρ a``)."""

    acceleration_m_s2: tuple[float, float, float] = (0.0, 0.0, -9.81)

    @classmethod
    def create(cls, acceleration_m_s2: Sequence[float] = (0.0, 0.0, -9.81)) -> Gravity:
        where = "medphys.neural.Gravity.create"
        a = tuple(_number(where, "acceleration_m_s2", v) for v in acceleration_m_s2)
        if len(a) != 3:
            raise ValueError(f"{where}: `acceleration_m_s2` must have 3 components (got {len(a)})")
        return cls(a)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Plate:
    """A rigid frictionless plate ``x[axis] = at_mm``; the body stays ``keep`` (below/above) it.

    The contact is a penalty of stiffness ``stiffness_kpa_per_mm`` on the penetration depth,
    ``κ/2 ∫ depth² (m·n) dA`` over the body's surface (``m`` the plate's normal toward the plate,
    ``n`` the surface's outward normal): the traction of a frictionless flat plate acts along
    ``m``, and weighting by the projected area ``(m·n) dA`` needs no surface normal, so the term
    stays smooth across the edges and kinks of the body's signed distance. The contact pressure
    is ``κ · depth``: the residual penetration is about pressure / κ. A plate much stiffer than the
    tissue (κ ≥ 100 kPa/mm on a few kPa) needs `ElasticConfig.contact_ramp` (a penalty
    continuation); without it the training can stall with the body through the plate.
    ``at_mm`` may be a `Parameter` (e.g. the compressed thickness).
    """

    axis: int
    at_mm: float | Parameter
    keep: Literal["below", "above"]
    stiffness_kpa_per_mm: float

    @classmethod
    def create(
        cls,
        axis: int,
        at_mm: float | Parameter,
        *,
        keep: Literal["below", "above"],
        stiffness_kpa_per_mm: float = 100.0,
    ) -> Plate:
        where = "medphys.neural.Plate.create"
        if axis not in _AXES:
            raise ValueError(f"{where}: `axis` must be 0, 1 or 2 (got {axis!r})")
        if keep not in ("below", "above"):
            raise ValueError(f"{where}: `keep` must be 'below' or 'above' (got {keep!r})")
        k = _number(where, "stiffness_kpa_per_mm", stiffness_kpa_per_mm)
        if k <= 0:
            raise ValueError(f"{where}: `stiffness_kpa_per_mm` must be positive (got {k})")
        return cls(axis, _value(where, "at_mm", at_mm), keep, k)

    @property
    def direction(self) -> tuple[float, float, float]:
        """The unit normal ``m`` pointing from the body toward the plate."""
        out = [0.0, 0.0, 0.0]
        out[self.axis] = 1.0 if self.keep == "below" else -1.0
        return (out[0], out[1], out[2])

    def penetration(
        self, deformed: Float[Array, "*batch 3"], theta: dict[str, Array] | None = None
    ) -> Float[Array, "*batch"]:
        """Depth (mm) of deformed points beyond the plate (0 on the allowed side)."""
        side = 1.0 if self.keep == "below" else -1.0
        at = resolve(self.at_mm, theta or {})
        return jnp.maximum(side * (deformed[..., self.axis] - at), 0.0)


def dirichlet_lift(constraints: Sequence[Fixed], length_mm: float, where: str) -> tuple[Any, Any]:
    """``(g, d)``: ``g(x, theta)`` the prescribed part and ``d(x)`` the distance factor.

    ``u(x) = g(x, θ) + d(x) * N(x, θ)`` meets every constraint exactly. Per component, the constraints
    must lie on planes of one axis when any value is non-zero (two planes at most), so that ``g``
    is the linear interpolation between them.
    """
    per: list[list[Fixed]] = [[c for c in constraints if k in c.components] for k in _AXES]

    def nonzero(c: Fixed) -> bool:
        return isinstance(c.value_mm, Parameter) or c.value_mm != 0.0

    for k, cs in enumerate(per):
        if any(nonzero(c) for c in cs):
            axes = {c.axis for c in cs}
            if len(axes) > 1 or len(cs) > 2:
                raise ValueError(
                    f"{where}: component {k} has non-zero prescribed displacements on "
                    f"{len(cs)} planes across axes {sorted(axes)}; non-zero values need one or "
                    "two planes of the same axis"
                )
            if len(cs) == 2 and cs[0].at_mm == cs[1].at_mm:
                raise ValueError(f"{where}: component {k} is prescribed twice on one plane")

    def g(x: Array, theta: dict[str, Array]) -> Array:
        out = []
        for cs in per:
            if not cs or not any(nonzero(c) for c in cs):
                out.append(jnp.zeros((), x.dtype))
            elif len(cs) == 1:
                out.append(jnp.asarray(resolve(cs[0].value_mm, theta), x.dtype))
            else:
                a, b = cs
                va, vb = resolve(a.value_mm, theta), resolve(b.value_mm, theta)
                t = (x[a.axis] - a.at_mm) / (b.at_mm - a.at_mm)
                out.append(jnp.asarray(va + t * (vb - va), x.dtype))
        return jnp.stack(out)

    def d(x: Array) -> Array:
        out = []
        for cs in per:
            factor = jnp.ones((), x.dtype)
            for c in cs:
                factor = factor * (x[c.axis] - c.at_mm) / length_mm
            out.append(factor)
        return jnp.stack(out)

    return g, d


def gravity_force(gravity: Sequence[Gravity], density: Array) -> Array:
    """Body force per volume (kPa/mm) at each point: ``10⁻³ ρ[g/cm³] a[m/s²]``."""
    a = np.zeros(3)
    for item in gravity:
        a = a + np.asarray(item.acceleration_m_s2, float)
    return 1e-3 * density[:, None] * jnp.asarray(a, density.dtype)[None, :]
