"""Internal anatomy of the procedural breast: the fibroglandular hull and its fat lobules, duct
trees with their lobules, Cooper's ligaments, and the glandular-volume budget.

Everything random is drawn once, in the *reference frame* of the fibroglandular hull at scale
``k = 1``; the hull of a given individual is that reference scaled uniformly by ``k`` about the
centre of its base (``HULL_BASE``). Balls stay balls under a uniform scaling, so the fat lobules
keep their closed-form volume; duct calibres and lobule sizes are anatomical (not scaled). `solve`
finds the ``k`` whose glandular volume (hull minus fat lobules, plus the ligaments, ducts and
lobules that lie outside it) is the target fraction of the breast interior.

Host-side code (NumPy, ``jax.random`` for the draws): it runs once per phantom, outside ``jit``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ._shapes import (
    Difference,
    Ellipsoid,
    HalfSpace,
    Intersection,
    Spheres,
    Superquadric,
    Tube,
    catmull_rom,
)
from ._shapes import Union as ShapeUnion

#: largest hull scale: at least 8 % of each inner semi-axis stays subcutaneous fat
K_MAX = 0.92
#: share of the hull (k = 1) the intraglandular fat lobules aim to fill (assumption)
FAT_LOBULE_SHARE = 0.08
#: fat lobules are padded to this many balls (zero radius: empty), so every breast has the same
#: array shapes and the voxelizer compiles its kernels once for all of them
MAX_FAT_LOBULES = 48
#: duct tree: generations below the root branch (2 children each) and points per branch
GENERATIONS = 3
SEGMENTS_PER_BRANCH = 4
#: TDLU (lobule) cluster: balls per cluster, ball radii and cluster radius (mm)
LOBULE_BALLS = 6
LOBULE_RADIUS_MM = (0.5, 1.0)
LOBULE_SPREAD_MM = 1.5
#: duct radius at the root (mm) and child/parent radius ratio range
DUCT_ROOT_RADIUS_MM = 0.5
DUCT_RADIUS_RATIO = (0.65, 0.99)
#: named random streams (fold_in ids): adding a stream changes none of the others
_STREAM_FAT, _STREAM_DUCTS, _STREAM_LIGAMENTS = 1, 2, 3
_BLOCK = 16384  # uniform draws per sampler call
_FIB_POINTS = 2048  # directions per ligament sphere for its volume
#: width of a Cooper's ligament band (mm; assumption)
LIGAMENT_BAND_MM = 10.0


@dataclasses.dataclass(frozen=True)
class Frame:
    """Geometry the internal anatomy is built in (all mm, world RAS+, breast on y >= 0)."""

    inner_semi: tuple[float, float, float]  # (lateral x, superior-inferior z, depth y)
    exponent: float
    retromammary_mm: float
    nipple_y_mm: float  # where the ducts start (just inside the skin)

    @property
    def base(self) -> np.ndarray:
        """Centre of the hull's base on the retromammary plane."""
        return np.array([0.0, self.retromammary_mm, 0.0])

    @property
    def hull_semi(self) -> tuple[float, float, float]:
        """Semi-axes (x, z, depth) of the hull at k = 1: the inner breast from the base plane."""
        w, h, d = self.inner_semi
        return (w, h, d - self.retromammary_mm)


def hemi(center, semi_xzd, exponent: float, plane_y: float):
    """A superquadric dome on the plane ``y = plane_y``, pointing to +y (anterior).

    Local axes (x, y, z) of the `Superquadric` are world (x, -z, y): a rotation of -90 degrees
    about x takes the local z (the north-south axis, exponent ``e1``) to world +y.
    """
    w, h, d = semi_xzd
    sq = Superquadric(
        jnp.asarray(np.asarray(center, dtype=np.float64)),
        jnp.asarray(np.array([w, h, d], dtype=np.float64)),
        jnp.asarray(np.array([exponent, 1.0])),
        jnp.asarray(np.array([-math.pi / 2.0, 0.0, 0.0])),
    )
    return Intersection((sq, chest_side(plane_y)))


def chest_side(plane_y: float) -> HalfSpace:
    """The half-space ``y >= plane_y`` (anterior of a coronal plane)."""
    return HalfSpace(jnp.asarray(np.array([0.0, -1.0, 0.0])), jnp.asarray(np.float64(-plane_y)))


def _level(shape, points: np.ndarray) -> np.ndarray:
    """``level`` of a `hemi` dome (or of its superquadric) on the host, in NumPy: the same
    arithmetic as `Superquadric.level` with the rotation of `hemi`, and the clip plane."""
    sq, plane = shape.children if isinstance(shape, Intersection) else (shape, None)
    c = np.asarray(sq.center_mm)
    semi = np.asarray(sq.semi_axes_mm)
    e1, e2 = (float(e) for e in np.asarray(sq.exponents))
    d = np.asarray(points, dtype=np.float64) - c
    q = np.stack([d[..., 0], -d[..., 2], d[..., 1]], axis=-1)  # local frame of `hemi`
    u = np.abs(q / semi)
    m = u.max(axis=-1) + 1e-12
    u = u / m[..., None]
    f = (u[..., 0] ** (2.0 / e2) + u[..., 1] ** (2.0 / e2)) ** (e2 / e1) + u[..., 2] ** (2.0 / e1)
    out = (m * f ** (e1 / 2.0) - 1.0) * semi.min()
    if plane is not None:
        n = np.asarray(plane.normal) / np.linalg.norm(np.asarray(plane.normal))
        out = np.maximum(out, np.asarray(points) @ n - float(plane.offset_mm))
    return out


def _balls_level(points: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """``min_i |p - c_i| - r_i`` (inf without balls)."""
    keep = np.asarray(radii) > 0.0  # zero-radius balls pad the arrays: empty
    centers, radii = np.asarray(centers)[keep], np.asarray(radii)[keep]
    if len(radii) == 0:
        return np.full(points.shape[:-1], np.inf)
    d = np.linalg.norm(points[..., None, :] - centers, axis=-1) - radii
    return d.min(axis=-1)


def _uniform(key, shape, lo=0.0, hi=1.0) -> np.ndarray:
    """Uniform draws in [lo, hi): the first entries of a block of a fixed size (one compiled
    sampler whatever the shape)."""
    n = math.prod(shape)
    size = _BLOCK * max(1, math.ceil(n / _BLOCK))
    # float32 draws (widened on the host): the same key gives the same anatomy with and without x64
    block = np.asarray(jax.random.uniform(key, (size,), dtype=jnp.float32), np.float64)
    return lo + (hi - lo) * block[:n].reshape(shape)


def dome_volume_mm3(semi: tuple[float, float, float], exponent: float) -> float:
    """Volume of a `hemi` dome: half the superquadric's ``2 a b c e1 e2 B(e1/2 + 1, e1)
    B(e2/2, e2/2)`` (Jaklic, Leonardis and Solina 2000; ``e2 = 1``), on the host."""

    def beta(x: float, y: float) -> float:
        return math.exp(math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y))

    e1, e2 = exponent, 1.0
    full = 2.0 * math.prod(semi) * e1 * e2 * beta(e1 / 2.0 + 1.0, e1) * beta(e2 / 2.0, e2 / 2.0)
    return full / 2.0


def _fibonacci(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors (Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


@dataclasses.dataclass(frozen=True)
class Draws:
    """The random part of the internal anatomy, in the hull's reference frame (k = 1)."""

    fat_centers: np.ndarray  # (n, 3) world mm at k = 1
    fat_radii: np.ndarray  # (n,)
    branches: tuple[tuple[np.ndarray, float, int], ...]  # (control points k=1, radius, generation)
    roots: np.ndarray  # (trees, 3) root points at k = 1 (the trunks join them to the nipple)
    leaves: np.ndarray  # (m, 3) leaf points at k = 1 (lobule cluster centres)
    lobule_offsets: np.ndarray  # (m, balls, 3) mm, not scaled
    lobule_radii: np.ndarray  # (m, balls) mm
    ligament_dirs: np.ndarray  # (l, 3) unit directions from the hull base centre
    ligament_tilt: np.ndarray  # (l,) orientation of each band about its direction (radians)


def draw(key, frame: Frame, *, n_ducts: int, n_ligaments: int) -> Draws:
    """All random draws of one breast's internal anatomy (deterministic in ``key``)."""
    hull1 = hemi(frame.base, frame.hull_semi, frame.exponent, frame.retromammary_mm)
    fat_c, fat_r = _fat_lobules(jax.random.fold_in(key, _STREAM_FAT), frame, hull1)
    branches, roots, leaves, offsets, radii = _duct_trees(
        jax.random.fold_in(key, _STREAM_DUCTS), frame, hull1, fat_c, fat_r, n_ducts
    )
    kl = jax.random.fold_in(key, _STREAM_LIGAMENTS)
    # directions over the front of the hull (depth component >= 0.2), spread around the axis
    u = _uniform(kl, (n_ligaments, 3))
    cos_t = 0.2 + 0.75 * u[:, 0]
    phi = 2.0 * math.pi * (np.arange(n_ligaments) + u[:, 1]) / n_ligaments
    sin_t = np.sqrt(1.0 - cos_t**2)
    dirs = np.stack([sin_t * np.cos(phi), cos_t, sin_t * np.sin(phi)], axis=-1)
    tilt = math.pi * u[:, 2]
    return Draws(fat_c, fat_r, branches, roots, leaves, offsets, radii, dirs, tilt)


def _fat_lobules(key, frame: Frame, hull1) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping balls of fat inside the hull (k = 1), filling ``FAT_LOBULE_SHARE`` of it."""
    w, h, d = frame.hull_semi
    target = FAT_LOBULE_SHARE * dome_volume_mm3(frame.hull_semi, frame.exponent)
    n_try = 400
    u = _uniform(key, (n_try, 4))
    scale = min(w, h, d)
    radii = scale * (0.12 + 0.10 * u[:, 3])
    centers = frame.base + np.stack([(2 * u[:, 0] - 1) * w, u[:, 1] * d, (2 * u[:, 2] - 1) * h], -1)
    # inside with room to spare: the first-order level of a superquadric with e1 > 1 may
    # underestimate the distance by up to a factor 2 (the voxelizer's contract)
    ok = _level(hull1, centers) <= -2.0 * radii
    kept_c: list[np.ndarray] = []
    kept_r: list[float] = []
    volume = 0.0
    for c, r, good in zip(centers, radii, ok, strict=True):
        if not good or volume >= target:
            continue
        if kept_c and np.any(
            np.linalg.norm(np.asarray(kept_c) - c, axis=-1) < np.asarray(kept_r) + r
        ):
            continue
        kept_c.append(c)
        kept_r.append(float(r))
        volume += 4.0 / 3.0 * math.pi * r**3
        if len(kept_r) == MAX_FAT_LOBULES:
            break
    pad = MAX_FAT_LOBULES - len(kept_r)
    centers_out = np.concatenate([np.asarray(kept_c).reshape(-1, 3), np.tile(frame.base, (pad, 1))])
    return centers_out, np.concatenate([np.asarray(kept_r), np.zeros(pad)])


def _duct_trees(key, frame: Frame, hull1, fat_c, fat_r, n_ducts: int):
    """Branching duct trees in the hull (k = 1): a root per lobe, two children per branch."""
    w, h, d = frame.hull_semi
    semi = np.array([w, d, h])
    branches: list[tuple[np.ndarray, float, int]] = []
    roots, leaves = [], []

    def inside(p: np.ndarray) -> bool:
        lev = float(_level(hull1, p[None])[0])
        return lev <= -0.08 * min(w, h, d) and float(_balls_level(p[None], fat_c, fat_r)[0]) > 2.5

    draws = iter(_uniform(key, (n_ducts * 2 ** (GENERATIONS + 2), 6)))
    for t in range(n_ducts):
        a = next(draws)
        phi = 2.0 * math.pi * (t + 0.5 * a[0]) / n_ducts
        rho = 0.15 + 0.25 * a[1]
        root = frame.base + semi * np.array(
            [rho * math.cos(phi), 0.7 + 0.15 * a[2], rho * math.sin(phi)]
        )
        roots.append(root)
        stack = [(root, np.array([math.cos(phi), -1.0, math.sin(phi)]), DUCT_ROOT_RADIUS_MM, 0)]
        while stack:
            start, heading, radius, gen = stack.pop()
            b = next(draws)
            step = 0.32 * 0.72**gen
            spread = np.array([b[0] - 0.5, 0.0, b[1] - 0.5]) * 0.8
            direction = heading / np.linalg.norm(heading) + spread
            end = start + semi * step * direction / np.linalg.norm(direction)
            for _ in range(4):  # shorten toward the start until the end lies in gland tissue
                if inside(end):
                    break
                end = start + 0.5 * (end - start)
            mid = 0.5 * (start + end) + semi * 0.03 * (b[3:6] - 0.5)
            branches.append((np.stack([start, mid, end]), radius, gen))
            if gen < GENERATIONS:
                ratio = DUCT_RADIUS_RATIO[0] + (DUCT_RADIUS_RATIO[1] - DUCT_RADIUS_RATIO[0]) * b[2]
                new_heading = end - start
                side = np.array([-new_heading[2], 0.0, new_heading[0]])
                side = side / (np.linalg.norm(side) + 1e-12)
                for sign in (1.0, -1.0):
                    stack.append(
                        (
                            end,
                            new_heading / np.linalg.norm(new_heading) + 0.6 * sign * side,
                            radius * ratio,
                            gen + 1,
                        )
                    )
            else:
                leaves.append(end)
    n_leaves = len(leaves)
    kl = jax.random.fold_in(key, 1)
    u = _uniform(kl, (n_leaves, LOBULE_BALLS, 4))
    v = 2.0 * u[..., :3] - 1.0
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)
    offsets = v * (LOBULE_SPREAD_MM * u[..., 3:4])
    lo, hi = LOBULE_RADIUS_MM
    radii = lo + (hi - lo) * _uniform(jax.random.fold_in(kl, 1), (n_leaves, LOBULE_BALLS))
    return (
        tuple(branches),
        np.asarray(roots),
        np.asarray(leaves).reshape(-1, 3),
        offsets.reshape(-1, LOBULE_BALLS, 3),
        radii.reshape(-1, LOBULE_BALLS),
    )


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """The internal shapes at one hull scale ``k`` and their glandular volume outside the hull."""

    k: float
    hull: Intersection
    fibroglandular: Difference
    ligaments: ShapeUnion
    ducts: ShapeUnion
    lobules: Spheres
    glandular_mm3: float  # estimated union volume of all glandular structures


def build(frame: Frame, draws: Draws, k: float, *, inner, ligament_mm: float) -> Anatomy:
    """The internal anatomy at hull scale ``k`` (deterministic), with its glandular volume."""
    base = frame.base
    w, h, d = frame.hull_semi
    hull = hemi(base, (k * w, k * h, k * d), frame.exponent, frame.retromammary_mm)
    fat_c = base + k * (draws.fat_centers - base)
    fat_r = k * draws.fat_radii
    fibro = Difference(hull, (Spheres(jnp.asarray(fat_c), jnp.asarray(fat_r)),))
    v_fibro = dome_volume_mm3((k * w, k * h, k * d), frame.exponent) - k**3 * _ball_volume(
        draws.fat_radii
    )

    def outside_gland(p: np.ndarray) -> np.ndarray:
        return (_level(hull, p) > 0.0) | (_balls_level(p, fat_c, fat_r) <= 0.0)

    # ducts: the trunk joins the nipple to the scaled root; branches are scaled with the hull
    nipple = np.array([0.0, frame.nipple_y_mm, 0.0])
    tubes: list[Tube] = []
    seg_pts, seg_vol = [], []
    for root in draws.roots:
        r_k = base + k * (root - base)
        ctrl = np.stack([nipple, 0.5 * (nipple + r_k), r_k])
        tubes.append(_tube(ctrl, DUCT_ROOT_RADIUS_MM * 1.2, DUCT_ROOT_RADIUS_MM))
    for ctrl, radius, _gen in draws.branches:
        tubes.append(_tube(base + k * (ctrl - base), radius, radius * 0.9))
    for tube in tubes:
        pts = np.asarray(tube.points_mm)
        rad = np.asarray(tube.radii_mm)
        t = np.linspace(0.1, 0.9, 5)[:, None, None]
        seg_pts.append((pts[:-1] + t * (pts[1:] - pts[:-1])).transpose(1, 0, 2))  # (segs, 5, 3)
        lengths = np.linalg.norm(np.diff(pts, axis=0), axis=-1)
        seg_vol.append(math.pi * ((rad[:-1] + rad[1:]) / 2.0) ** 2 * lengths)
    sp = np.concatenate(seg_pts)
    sv = np.concatenate(seg_vol)
    out_frac = outside_gland(sp.reshape(-1, 3)).reshape(sp.shape[:2]).mean(axis=1)
    v_ducts = float(np.sum(sv * out_frac))

    # lobules (TDLUs): clusters of balls at the leaves, anatomical sizes
    leaves = base + k * (draws.leaves - base)
    centers = (leaves[:, None, :] + draws.lobule_offsets).reshape(-1, 3)
    radii = draws.lobule_radii.reshape(-1)
    probe = np.concatenate([np.zeros((1, 3)), 0.7 * np.eye(3), -0.7 * np.eye(3)])  # 7 points
    pts = centers[:, None, :] + radii[:, None, None] * probe[None]
    lob_out = outside_gland(pts.reshape(-1, 3)).reshape(pts.shape[:2]).mean(axis=1)
    v_lobules = float(np.sum(4.0 / 3.0 * math.pi * radii**3 * lob_out))
    lobules = Spheres(jnp.asarray(centers), jnp.asarray(radii))

    # Cooper's ligaments: bands (LIGAMENT_BAND_MM wide) of thin spherical shells centred on the
    # hull surface, reaching through the fat between the hull and the skin
    dirs = draws.ligament_dirs
    semi = np.array([k * w, k * d, k * h])
    probe_pts = base + dirs * semi
    g = _level(hull.children[0], probe_pts) / min(semi) + 1.0  # gauge: homogeneous of degree 1
    surf = base + dirs * semi / g[:, None]
    fat_depth = np.maximum(-_level(inner, surf), 1.0)
    rho = 1.3 * fat_depth
    half_t = ligament_mm / 2.0
    parts = []
    fib = _fibonacci(_FIB_POINTS)
    v_lig = 0.0
    for c, r, v, psi in zip(surf, rho, dirs, draws.ligament_tilt, strict=True):
        a = np.cross(v, [0.0, 0.0, 1.0] if abs(v[2]) < 0.9 else [1.0, 0.0, 0.0])
        a = a / np.linalg.norm(a)
        n = math.cos(psi) * a + math.sin(psi) * np.cross(v, a)
        band = (
            HalfSpace(jnp.asarray(n), jnp.asarray(np.float64(n @ c + LIGAMENT_BAND_MM / 2.0))),
            HalfSpace(jnp.asarray(-n), jnp.asarray(np.float64(-n @ c + LIGAMENT_BAND_MM / 2.0))),
        )
        shell = Difference(
            Ellipsoid(
                jnp.asarray(c), jnp.asarray(np.full(3, r + half_t)), jnp.asarray(np.zeros(3))
            ),
            (
                Ellipsoid(
                    jnp.asarray(c), jnp.asarray(np.full(3, r - half_t)), jnp.asarray(np.zeros(3))
                ),
            ),
        )
        parts.append(Difference(Intersection((shell, inner, *band)), (hull,)))
        on = c + r * fib
        kept = (_level(inner, on) <= 0.0) & (_level(hull, on) > 0.0)
        kept &= np.abs((on - c) @ n) <= LIGAMENT_BAND_MM / 2.0
        v_lig += (
            float(np.mean(kept)) * 4.0 * math.pi * (r * r * ligament_mm + ligament_mm**3 / 12.0)
        )

    return Anatomy(
        k=k,
        hull=hull,
        fibroglandular=fibro,
        ligaments=ShapeUnion(tuple(parts)),
        ducts=ShapeUnion(tuple(tubes)),
        lobules=lobules,
        glandular_mm3=v_fibro + v_lig + v_ducts + v_lobules,
    )


def _ball_volume(radii: np.ndarray) -> float:
    return float(np.sum(4.0 / 3.0 * math.pi * np.asarray(radii) ** 3))


def _tube(control: np.ndarray, r0: float, r1: float) -> Tube:
    pts = catmull_rom(np.asarray(control, dtype=np.float64), SEGMENTS_PER_BRANCH)
    radii = np.linspace(r0, r1, SEGMENTS_PER_BRANCH + 1)
    return Tube(jnp.asarray(pts), jnp.asarray(radii))


class Unreachable(ValueError):
    """The target glandular volume exceeds what the largest hull holds (``largest_mm3``)."""

    def __init__(self, largest_mm3: float) -> None:
        super().__init__(f"at most {largest_mm3:.0f} mm³ of glandular tissue fit")
        self.largest_mm3 = largest_mm3


def solve(frame: Frame, draws: Draws, target_mm3: float, *, inner, ligament_mm: float) -> Anatomy:
    """The anatomy whose glandular volume is ``target_mm3`` (fixed-point iteration on ``k``).

    The hull term ``k^3 (V_hull - V_fat)`` dominates; the ligaments, ducts and lobules outside
    the hull are a small correction that changes slowly with ``k``, so the iteration
    ``k <- ((target - extra(k)) / (V_hull - V_fat))^(1/3)`` settles in a few steps.

    Raises:
        Unreachable: the target needs a hull larger than ``K_MAX`` times the interior.
    """
    core = dome_volume_mm3(frame.hull_semi, frame.exponent) - _ball_volume(draws.fat_radii)
    k = min(K_MAX, (target_mm3 / core) ** (1.0 / 3.0))
    anatomy = build(frame, draws, k, inner=inner, ligament_mm=ligament_mm)
    for _ in range(8):
        extra = anatomy.glandular_mm3 - k**3 * core
        k_new = ((target_mm3 - extra) / core) ** (1.0 / 3.0) if target_mm3 > extra else 0.05
        if k_new > K_MAX:
            largest = build(frame, draws, K_MAX, inner=inner, ligament_mm=ligament_mm)
            raise Unreachable(largest.glandular_mm3)
        if abs(k_new - k) < 1e-5 * k:
            break
        k = k_new
        anatomy = build(frame, draws, k, inner=inner, ligament_mm=ligament_mm)
    return anatomy
