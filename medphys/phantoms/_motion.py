"""4-D phantoms: respiratory and cardiac motion.

`at` returns the phantom at one instant. Two mechanisms, chosen for what each motion is:

* **Respiration is a deformation of space** (`RespiratoryWarp`), applied by `voxelize` to every
  sample point (``warp.backward``: a point at this instant → the reference anatomy at
  end-expiration). At end-inspiration the diaphragm dome (the top of the structures listed in
  ``MotionModel.diaphragm_followers``: liver, stomach, spleen, pancreas, kidneys …) and everything
  below it inside the body cavity sit ``diaphragm_mm`` lower (a rigid shift: organ volumes kept);
  the lungs stretch between their fixed apex and the dome, so the heart, resting on the dome,
  follows with most of the excursion at its apex and less at its base; the displacement fades out
  below the lowest follower; the anterior chest wall above the dome moves forward by
  ``chest_ap_mm`` while the spine stays put. The backward map is
  ``p + a·(D·w(z)·m(x, y) ê_z − E·s(y)·c(z) ê_y)`` with quintic smooth steps ``w, m, s, c`` whose
  widths keep its Jacobian determinant positive (smooth and invertible; tested on a grid with
  ``jax.jacfwd``). ``m`` is 1 inside the body cavity (the lungs' and followers' lateral extent)
  and 0 outside it and around the vertebral column (``MotionModel.fixed``): ribs, spine and
  muscle do not move up and down, and organs shear smoothly against the wall (no sliding
  interface). The chest expansion stretches what lies in front of the spine above the dome
  (lungs, heart: their volumes grow a little).
* **The heartbeat scales the ventricular blood pools** (``MotionModel.ventricles``) about their
  centres, so their volumes follow the volume curve exactly; the myocardium painted underneath
  fills what the chambers give up (wall thickening in systole). The reference shapes are the
  end-diastolic ones.

Parameters: a phantom definition may carry them in a ``[motion]`` table (``[motion.respiration]``,
``[motion.cardiac]``, keys = `MotionModel.create`'s arguments); `load` turns it into
``Phantom.motion``, the model `at` uses unless one is passed. Without a table (or for omitted keys)
the `MotionModel.create` defaults below apply.

Phases: respiratory 0 = end-expiration, 0.5 = end-inspiration, amplitude ``(1 − cos 2πφ)/2``;
cardiac 0 = end-diastole, ``end_systole_phase`` = end-systole, ventricular volume
``V(φ) = EDV·(1 − EF·g(φ))`` with ``g`` a half-cosine rise to 1 at end-systole and a half-cosine
fall back to 0 at the end of the cycle (smooth, zero slope at both turning points).

References:
    W. P. Segars et al., "4D XCAT phantom for multimodality imaging research", Med. Phys. 37(9),
    4902–4915 (2010): default breathing period 5 s, diaphragm motion 2 cm, AP chest expansion
    1.2 cm, heart period 1 s, end-systole at 0.4 of the cycle.
    K. Maceira et al., "Normalized left ventricular systolic and diastolic function by steady
    state free precession cardiovascular magnetic resonance", J. Cardiovasc. Magn. Reson. 8,
    417–426 (2006): LV ejection fraction 67 ± 5 % (60 % is the conventional round value).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import FieldError, number, positive
from .._errors import unknown_name
from ._anatomy import Phantom, anchors

_DEFAULT_FOLLOWERS = (
    "liver",
    "gallbladder",
    "stomach",
    "spleen",
    "pancreas",
    "kidney_left",
    "kidney_right",
)
_DEFAULT_LUNGS = ("lung_left", "lung_right")
_DEFAULT_VENTRICLES = ("lv_blood", "rv_blood")
_DEFAULT_FIXED = ("spine", "spinal_cord", "bone_marrow")


@dataclasses.dataclass(frozen=True)
class MotionModel:
    """Parameters of respiratory and cardiac motion (build with `MotionModel.create`).

    Attributes:
        respiratory_period_s: breathing period (s).
        diaphragm_mm: superior–inferior diaphragm excursion, end-expiration → end-inspiration (mm).
        chest_ap_mm: antero-posterior chest expansion (mm).
        cardiac_period_s: heartbeat period (s).
        end_systole_phase: cardiac phase of end-systole, in (0, 1).
        ejection_fraction: (EDV − ESV) / EDV of the ventricles, in (0, 1).
        diaphragm_followers: structures that move with the diaphragm (those present are used).
        lungs: structures whose apex stays fixed while their base follows the diaphragm.
        ventricles: blood pools that follow the ventricular volume curve.
        fixed: structures around which nothing moves up and down (the vertebral column).
    """

    respiratory_period_s: float = 5.0
    diaphragm_mm: float = 20.0
    chest_ap_mm: float = 12.0
    cardiac_period_s: float = 1.0
    end_systole_phase: float = 0.4
    ejection_fraction: float = 0.6
    diaphragm_followers: tuple[str, ...] = _DEFAULT_FOLLOWERS
    lungs: tuple[str, ...] = _DEFAULT_LUNGS
    ventricles: tuple[str, ...] = _DEFAULT_VENTRICLES
    fixed: tuple[str, ...] = _DEFAULT_FIXED

    @classmethod
    def create(
        cls,
        *,
        respiratory_period_s: float = 5.0,
        diaphragm_mm: float = 20.0,
        chest_ap_mm: float = 12.0,
        cardiac_period_s: float = 1.0,
        end_systole_phase: float = 0.4,
        ejection_fraction: float = 0.6,
        diaphragm_followers: Sequence[str] = _DEFAULT_FOLLOWERS,
        lungs: Sequence[str] = _DEFAULT_LUNGS,
        ventricles: Sequence[str] = _DEFAULT_VENTRICLES,
        fixed: Sequence[str] = _DEFAULT_FIXED,
    ) -> MotionModel:
        """Validated motion parameters (defaults: the XCAT defaults, EF 60 %).

        Raises:
            ValueError: a non-positive period, a negative or implausible (> 60 mm) excursion,
                end-systole or ejection fraction outside (0, 1).

        Example:
            >>> MotionModel.create(diaphragm_mm=15.0).diaphragm_mm
            15.0
        """
        w = "medphys.phantoms.MotionModel.create"
        values = {
            "respiratory_period_s": positive(w, "respiratory_period_s", respiratory_period_s),
            "diaphragm_mm": number(w, "diaphragm_mm", diaphragm_mm),
            "chest_ap_mm": number(w, "chest_ap_mm", chest_ap_mm),
            "cardiac_period_s": positive(w, "cardiac_period_s", cardiac_period_s),
            "end_systole_phase": number(w, "end_systole_phase", end_systole_phase),
            "ejection_fraction": number(w, "ejection_fraction", ejection_fraction),
        }
        for name in ("diaphragm_mm", "chest_ap_mm"):
            if not 0.0 <= values[name] <= 60.0:
                raise FieldError(w, name, f"`{name}` must be in [0, 60] mm (got {values[name]})")
        for name in ("end_systole_phase", "ejection_fraction"):
            if not 0.0 < values[name] < 1.0:
                raise FieldError(w, name, f"`{name}` must be in (0, 1) (got {values[name]})")
        roles = {}
        for name, names in (
            ("diaphragm_followers", diaphragm_followers),
            ("lungs", lungs),
            ("ventricles", ventricles),
            ("fixed", fixed),
        ):
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise TypeError(
                    f"{w}: `{name}` must be a sequence of structure names (got {names!r})"
                )
            roles[name] = tuple(names)
        return cls(**values, **roles)


def _smooth(t: Array) -> Array:
    """Quintic smooth step: 0 for t <= 0, 1 for t >= 1, C² (max slope 15/8)."""
    t = jnp.clip(t, 0.0, 1.0)
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


_MAX_SLOPE = 15.0 / 8.0
_COLUMN_WIDTH = 25.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RespiratoryWarp:
    """Backward map of the breathing motion (world point now → reference point at end-expiration).

    Attributes:
        amplitude: () breathing amplitude, 0 (end-expiration) … 1 (end-inspiration).
        diaphragm_mm: () SI excursion at amplitude 1.
        chest_ap_mm: () AP chest expansion at amplitude 1.
        z_mm: (4,) lung apex, diaphragm dome, lowest follower, end of the fade-out (descending).
        cavity_mm: (5,) body cavity ellipse: centre x, centre y, semi-axis x, semi-axis y,
            fall-off width.
        column_mm: (5,) fixed column (around the spine): centre x, centre y, semi-axes x, y,
            fall-off width; semi-axes 0: none.
        ap_mm: (3,) posterior and anterior y of the chest expansion ramp, and the height of its
            fade-in above the diaphragm dome.
        max_stretch: Lipschitz bound of ``backward`` (used by `voxelize`'s coarse test).
    """

    amplitude: Float[Array, ""]
    diaphragm_mm: Float[Array, ""]
    chest_ap_mm: Float[Array, ""]
    z_mm: Float[Array, "4"]
    cavity_mm: Float[Array, "5"]
    column_mm: Float[Array, "5"]
    ap_mm: Float[Array, "3"]
    max_stretch: float = dataclasses.field(metadata={"static": True}, default=2.0)

    def backward(self, points: Float[Array, "*batch 3"]) -> Float[Array, "*batch 3"]:
        x, y, z = points[..., 0], points[..., 1], points[..., 2]
        apex, dome, low, floor = self.z_mm[0], self.z_mm[1], self.z_mm[2], self.z_mm[3]
        w = _smooth((apex - z) / (apex - dome)) * _smooth((z - floor) / (low - floor))
        cx, cy, ax, ay, width = (self.cavity_mm[i] for i in range(5))
        r = jnp.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + 1e-12)
        m = 1.0 - _smooth((r - 1.0) * jnp.minimum(ax, ay) / width)
        fx, fy, bx, by, fw = (self.column_mm[i] for i in range(5))
        has = bx > 0.0
        bx, by = jnp.where(has, bx, 1.0), jnp.where(has, by, 1.0)
        rf = jnp.sqrt(((x - fx) / bx) ** 2 + ((y - fy) / by) ** 2 + 1e-12)
        m = m * jnp.where(has, _smooth((rf - 1.0) * jnp.minimum(bx, by) / fw), 1.0)
        s = _smooth((y - self.ap_mm[0]) / (self.ap_mm[1] - self.ap_mm[0]))
        c = _smooth((z - dome) / self.ap_mm[2])
        dz = self.amplitude * self.diaphragm_mm * w * m
        dy = -self.amplitude * self.chest_ap_mm * s * c
        return jnp.stack([x, y + dy, z + dz], axis=-1)


def f32(v) -> Array:
    return jnp.asarray(v, dtype=jnp.float32)


@jax.jit
def _inside_grid(shape, origin: Array, step: Array) -> Array:
    n = 96
    i = jnp.arange(n, dtype=jnp.float32)
    g = jnp.stack(jnp.meshgrid(i, i, i, indexing="ij"), axis=-1)
    return shape.level(g * step + origin[None, None, None, :]) <= 0.0


_EXTENTS: dict[tuple, np.ndarray] = {}


def _extent(phantom: Phantom, name: str) -> np.ndarray:
    """Approximate world bounding box [[min], [max]] of a structure (≈ 6 mm sampling, cached)."""
    shape = phantom.shape_of(name)
    leaves, tree = jax.tree_util.tree_flatten(shape)
    key = (str(tree), tuple(np.asarray(leaf).tobytes() for leaf in leaves))
    if key in _EXTENTS:
        return _EXTENTS[key]
    centre = np.asarray(shape.center_mm, dtype=np.float32)
    step, n = np.float32(6.0), 96
    origin = centre - step * (n - 1) / 2
    inside = np.asarray(_inside_grid(shape, jnp.asarray(origin), jnp.asarray(step)))
    idx = np.argwhere(inside)
    if idx.size == 0:
        box = np.stack([centre, centre])
    else:
        box = np.stack([origin + idx.min(0) * step, origin + idx.max(0) * step])
    if len(_EXTENTS) > 256:
        _EXTENTS.clear()
    _EXTENTS[key] = box
    return box


def _roles(model: MotionModel, phantom: Phantom, role: str) -> tuple[str, ...]:
    names = getattr(model, role)
    present = tuple(n for n in names if n in phantom.structure_names)
    default = getattr(MotionModel, role)
    if names != default:  # a user's explicit list: every name must exist
        for n in names:
            if n not in phantom.structure_names:
                raise unknown_name("structure", n, phantom.structure_names)
    return present


def respiratory_warp(
    phantom: Phantom, model: MotionModel, phase: float | Array
) -> RespiratoryWarp | None:
    """The breathing deformation of ``phantom`` at respiratory ``phase`` (None: no lungs/followers)."""
    lungs = _roles(model, phantom, "lungs")
    followers = _roles(model, phantom, "diaphragm_followers")
    if not lungs or not followers:
        return None
    lung_box = np.stack([_extent(phantom, n) for n in lungs])
    foll_box = np.stack([_extent(phantom, n) for n in followers])
    apex = float(lung_box[:, 1, 2].max())
    dome = float(foll_box[:, 1, 2].max())
    low = float(foll_box[:, 0, 2].min())
    ramp = max(3.0 * model.diaphragm_mm, 30.0)
    apex = max(apex, dome + ramp)
    floor = low - ramp
    both = np.concatenate([lung_box, foll_box])
    lo, hi = both[:, 0, :2].min(0), both[:, 1, :2].max(0)
    centre, semi = (lo + hi) / 2, (hi - lo) / 2
    width = max(1.5 * model.diaphragm_mm, 20.0)
    posterior, anterior = float(centre[1]), float(hi[1])
    if anterior - posterior < 2.0 * model.chest_ap_mm:
        anterior = posterior + 2.0 * model.chest_ap_mm
    fixed = _roles(model, phantom, "fixed")
    if fixed:
        fbox = np.stack([_extent(phantom, n) for n in fixed])
        flo, fhi = fbox[:, 0, :2].min(0) - 5.0, fbox[:, 1, :2].max(0) + 5.0
        column = [*((flo + fhi) / 2), *((fhi - flo) / 2), _COLUMN_WIDTH]
    else:
        column = [0.0, 0.0, 0.0, 0.0, _COLUMN_WIDTH]
    fade = 40.0
    # Lipschitz bound of the displacement (|∇v| <= sum of the slopes times the amplitudes)
    along = max(1 / (apex - dome), 1 / ramp)
    across = 1 / width + 1 / _COLUMN_WIDTH
    slope_z = model.diaphragm_mm * _MAX_SLOPE * math.hypot(along, across)
    slope_y = model.chest_ap_mm * _MAX_SLOPE * math.hypot(1 / (anterior - posterior), 1 / fade)
    amp = 0.5 * (1.0 - jnp.cos(2.0 * jnp.pi * jnp.asarray(phase, dtype=jnp.float32)))
    return RespiratoryWarp(
        amplitude=amp,
        diaphragm_mm=f32(model.diaphragm_mm),
        chest_ap_mm=f32(model.chest_ap_mm),
        z_mm=f32([apex, dome, low, floor]),
        cavity_mm=f32([centre[0], centre[1], semi[0], semi[1], width]),
        column_mm=f32(column),
        ap_mm=f32([posterior, anterior, fade]),
        max_stretch=float(1.0 + slope_z + slope_y),
    )


def ventricular_volume_ratio(model: MotionModel, phase: float | Array) -> Array:
    """V(φ) / EDV of the ventricles at cardiac ``phase`` (1 at end-diastole, 1 − EF at end-systole)."""
    p = jnp.asarray(phase, dtype=jnp.float32)
    es = model.end_systole_phase
    rise = 0.5 * (1.0 - jnp.cos(jnp.pi * jnp.clip(p / es, 0.0, 1.0)))
    fall = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip((p - es) / (1.0 - es), 0.0, 1.0)))
    g = jnp.where(p <= es, rise, fall)
    return 1.0 - model.ejection_fraction * g


def _phase(where: str, name: str, value) -> float:
    v = number(where, name, value)
    if not 0.0 <= v < 1.0:
        raise FieldError(where, name, f"`{name}` must be in [0, 1) (got {v})")
    return v


def at(
    phantom: Phantom,
    *,
    time_s: float | None = None,
    respiratory_phase: float | None = None,
    cardiac_phase: float | None = None,
    model: MotionModel | None = None,
) -> Phantom:
    """The phantom at one instant of its breathing and heartbeat.

    Args:
        phantom: the reference phantom (end-expiration, end-diastole), without a warp.
        time_s: time since end-expiration and end-diastole (s, >= 0); sets both phases.
        respiratory_phase: breathing phase in [0, 1) (0 end-expiration, 0.5 end-inspiration).
        cardiac_phase: heartbeat phase in [0, 1) (0 end-diastole).
        model: motion parameters; default: the phantom's own (its definition's ``[motion]``
            table, `Phantom.motion`), else `MotionModel.create()`.

    Returns:
        A `Phantom` with scaled ventricles (and the structures hosted in them) and ``warp`` set;
        voxelize it as any phantom. Structures added to it afterwards (`insert_lesion`,
        `add_mesh_structure`) are given in this instant's coordinates and kept in the reference
        anatomy's (through ``warp.backward``), so they move with the phantom.

    Raises:
        ValueError: negative or non-finite time, phases outside [0, 1), time and phases both
            given, a phantom that already has a warp.
        UnknownNameError: a structure named in an explicit role list is not in the phantom.

    Example:
        >>> ph = load("torso-basic").at(respiratory_phase=0.5)  # doctest: +SKIP
    """
    where = "medphys.phantoms.at"
    if model is None:
        model = phantom.motion if phantom.motion is not None else MotionModel.create()
    if not isinstance(model, MotionModel):
        raise TypeError(f"{where}: `model` must be a MotionModel (got {type(model).__name__})")
    if phantom.warp is not None:
        raise ValueError(
            f"{where}: phantom {phantom.name!r} is already at an instant of its motion; call "
            "`at` on the reference phantom"
        )
    if time_s is not None:
        if respiratory_phase is not None or cardiac_phase is not None:
            raise ValueError(
                f"{where}: give `time_s` or the phases (`respiratory_phase`, `cardiac_phase`), "
                "not both"
            )
        t = number(where, "time_s", time_s)
        if t < 0:
            raise FieldError(where, "time_s", f"`time_s` must be >= 0 (got {t})")
        resp = math.fmod(t / model.respiratory_period_s, 1.0)
        card = math.fmod(t / model.cardiac_period_s, 1.0)
    else:
        resp = (
            0.0
            if respiratory_phase is None
            else _phase(where, "respiratory_phase", respiratory_phase)
        )
        card = 0.0 if cardiac_phase is None else _phase(where, "cardiac_phase", cardiac_phase)

    reference = phantom.shapes
    shapes = list(reference)
    scale = ventricular_volume_ratio(model, card) ** (1.0 / 3.0)
    ventricles = {phantom.structure_names.index(n) for n in _roles(model, phantom, "ventricles")}
    for i, a in enumerate(anchors(phantom.structures)):  # lesions in a ventricle follow it
        if a in ventricles:
            shapes[i] = shapes[i].scaled(jnp.full(3, scale), reference[a].center_mm)
    warp = respiratory_warp(phantom, model, resp)
    return dataclasses.replace(phantom.with_shapes(shapes), warp=warp)
