"""A hemi-ellipsoidal breast compressed by a rigid frictionless paddle, posed twice: for
scikit-fem (the independent reference) and for `medphys.neural.solve_elasticity`.

`tests/neural/test_breast_fem.py` and `benchmarks/bench_biomech.py` hold the network against the
finite-element solution. Never imported by the package; scikit-fem comes with the test extras.

Problem (VICTRE's setting, one quarter by symmetry)
    - Domain: the octant ``x, y, z >= 0`` of the ellipsoid with semi-axes ``(a, b, c)`` mm: the
      chest wall is ``y = 0``, the nipple at ``+y``, the compression along ``z``; the planes
      ``x = 0`` and ``z = 0`` are symmetry planes.
    - Material: FEBio's compressible neo-Hookean solid,
      ``W = μ/2 (I₁ − 3) − μ ln J + λ/2 (ln J)²``.
    - Conditions: rollers on the three coordinate planes (``u_x = 0`` on ``x = 0``, ``u_y = 0``
      on the chest wall, ``u_z = 0`` on ``z = 0``).
    - Contact: a rigid frictionless plate ``z = plate_mm`` on the curved surface, as the penalty
      ``κ/2 ∫ max(0, z + u_z − plate)² max(n_z, 0) dA`` over the reference surface (the
      projected-area weighting of `medphys.neural.Plate`: the same functional the network
      minimises).

Discretisation
    Isoparametric quadratic tetrahedra (P2 displacement on P2 geometry) on a mesh made from one
    tetrahedron refined ``refinements`` times (8 children per refinement); every node, edge
    midpoints included, is mapped radially from the unit simplex ``x + y + z <= 1`` onto the unit
    octant ball (``p -> p |p|₁ / |p|₂``, which keeps the coordinate planes and never folds), then
    scaled by the semi-axes, so the curved surface is followed to second order. Newton's method with a consistent tangent (the contact's
    active set in the semi-smooth sense) in ``steps`` plate positions from first touch to
    ``plate_mm``; each Newton step backtracks until the total potential energy decreases
    (Armijo), which also keeps ``J > 0`` at every quadrature point.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import scipy.sparse.linalg as spla
import skfem
from skfem.helpers import ddot, det, grad, inv, mul, transpose

__all__ = [
    "FemSolution",
    "network_problem",
    "octant_mesh",
    "relative_l2",
    "solve_breast_compression",
]


@dataclasses.dataclass(frozen=True)
class FemSolution:
    """The FE result: ``vertices`` (n, 3) mm, ``displacement`` (n, 3) mm at those vertices,
    ``vertex_volume`` (n,) mm³ (each tetrahedron's volume split equally among its four corners:
    the weights of a volume-weighted L2 norm), ``dofs``, ``newton_iterations`` and ``seconds``."""

    vertices: np.ndarray
    displacement: np.ndarray
    vertex_volume: np.ndarray
    dofs: int
    newton_iterations: int
    seconds: float
    min_det_f: float


def octant_mesh(semi_axes_mm: tuple[float, float, float], refinements: int) -> skfem.MeshTet2:
    """Quadratic tetrahedra filling the octant ``x, y, z >= 0`` of the ellipsoid
    (8**refinements cells): every node, edge midpoints included, mapped onto it."""
    simplex = skfem.MeshTet(
        np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]),
        np.array([[0], [1], [2], [3]]),
    )
    mesh = skfem.MeshTet2.from_mesh(simplex.refined(refinements) if refinements else simplex)
    p = mesh.doflocs
    l1, l2 = p.sum(axis=0), np.linalg.norm(p, axis=0)
    stretch = np.divide(l1, l2, out=np.ones_like(l1), where=l2 > 0)
    return dataclasses.replace(mesh, doflocs=p * stretch * np.asarray(semi_axes_mm, float)[:, None])


def _kinematics(prev):
    """``F``, ``ln J`` and ``F⁻ᵀ`` at every quadrature point of the interpolated displacement."""
    f = prev.grad + np.eye(3)[:, :, None, None]
    return f, np.log(det(f)), transpose(inv(f))


def solve_breast_compression(
    semi_axes_mm: tuple[float, float, float],
    plate_mm: float,
    *,
    mu_kpa: float,
    lam_kpa: float,
    stiffness_kpa_per_mm: float,
    refinements: int = 3,
    steps: int = 4,
    tolerance: float = 1e-9,
    max_newton: int = 50,
) -> FemSolution:
    """Solve the quarter breast pressed from ``z = c`` down to ``plate_mm`` (see the module)."""
    c = semi_axes_mm[2]
    if not 0 < plate_mm < c:
        raise ValueError(f"plate_mm must lie in (0, {c}) (got {plate_mm})")
    start = time.perf_counter()
    mesh = octant_mesh(semi_axes_mm, refinements)
    element = skfem.ElementVector(skfem.ElementTetP2())
    basis = skfem.Basis(mesh, element, intorder=4)
    curved = mesh.facets_satisfying(
        lambda x: (x[0] > 1e-9) & (x[1] > 1e-9) & (x[2] > 1e-9), boundaries_only=True
    )
    surface = skfem.FacetBasis(mesh, element, facets=curved, intorder=4)
    fixed = np.concatenate(
        [
            basis.get_dofs(lambda x: np.abs(x[0]) < 1e-9).all(["u^1"]),
            basis.get_dofs(lambda x: np.abs(x[1]) < 1e-9).all(["u^2"]),
            basis.get_dofs(lambda x: np.abs(x[2]) < 1e-9).all(["u^3"]),
        ]
    )
    free = np.setdiff1d(np.arange(basis.N), fixed)
    mu, lam, kappa = float(mu_kpa), float(lam_kpa), float(stiffness_kpa_per_mm)

    @skfem.LinearForm
    def internal(v, w):
        return ddot(w["stress"], grad(v))

    @skfem.BilinearForm
    def tangent(u, v, w):
        du, fit = grad(u), w["fit"]
        dp = mu * du + w["c"] * mul(fit, mul(transpose(du), fit)) + lam * ddot(fit, du) * fit
        return ddot(dp, grad(v))

    @skfem.LinearForm
    def contact(v, w):
        depth = np.maximum(w.x[2] + w["prev"][2] - w["plate"], 0.0)
        return kappa * np.maximum(w.n[2], 0.0) * depth * v[2]

    @skfem.BilinearForm
    def contact_tangent(u, v, w):
        active = (w.x[2] + w["prev"][2] - w["plate"] > 0.0).astype(float)
        return kappa * np.maximum(w.n[2], 0.0) * active * u[2] * v[2]

    @skfem.Functional
    def strain_energy(w):
        f = w["prev"].grad + np.eye(3)[:, :, None, None]
        log_j = np.log(det(f))
        return mu / 2 * (ddot(f, f) - 3) - mu * log_j + lam / 2 * log_j**2

    @skfem.Functional
    def contact_energy(w):
        depth = np.maximum(w.x[2] + w["prev"][2] - w["plate"], 0.0)
        return kappa / 2 * np.maximum(w.n[2], 0.0) * depth**2

    def min_det(u: np.ndarray) -> float:
        g = basis.interpolate(u).grad
        return float(det(g + np.eye(3)[:, :, None, None]).min())

    def energy(u: np.ndarray, plate: float) -> float:
        """The total potential energy (inf where an element folds)."""
        if min_det(u) <= 0.0:
            return np.inf
        return strain_energy.assemble(basis, prev=basis.interpolate(u)) + contact_energy.assemble(
            surface, prev=surface.interpolate(u), plate=plate
        )

    u = np.zeros(basis.N)
    iterations = 0
    for plate in np.linspace(c, plate_mm, steps + 1)[1:]:
        for _ in range(max_newton):
            prev, prev_s = basis.interpolate(u), surface.interpolate(u)
            f, log_j, fit = _kinematics(prev)
            stress = mu * (f - fit) + lam * log_j * fit  # first Piola-Kirchhoff
            r = internal.assemble(basis, stress=stress) + contact.assemble(
                surface, prev=prev_s, plate=plate
            )
            k = tangent.assemble(basis, fit=fit, c=mu - lam * log_j) + contact_tangent.assemble(
                surface, prev=prev_s, plate=plate
            )
            du = np.zeros(basis.N)
            du[free] = spla.spsolve(k[free][:, free].tocsc(), -r[free])
            iterations += 1
            # backtracking on the energy (Armijo): no folded element, and no cycling of the
            # contact's active set
            step, e0, slope = 1.0, energy(u, plate), float(r @ du)
            while energy(u + step * du, plate) > e0 + 1e-4 * step * slope:
                step /= 2
                if step < 1e-8:
                    break  # at the energy's floating-point floor: take the tiny step, stop below
            u = u + step * du
            if np.linalg.norm(step * du) <= tolerance * max(np.linalg.norm(u), 1.0):
                break
        else:
            raise RuntimeError(f"Newton did not converge at plate {plate:.3f} mm")
    seconds = time.perf_counter() - start
    nodal = basis.nodal_dofs  # (3, n_vertices): the P2 dofs at the vertices
    displacement = np.stack([u[nodal[i]] for i in range(3)], axis=1)
    n_vertices = int(mesh.t.max()) + 1
    cell_volume = basis.dx.sum(axis=1)
    vertex_volume = np.zeros(n_vertices)
    np.add.at(vertex_volume, mesh.t.ravel(), np.repeat(cell_volume[None, :] / 4, 4, axis=0).ravel())
    return FemSolution(
        vertices=mesh.doflocs[:, :n_vertices].T.copy(),
        displacement=displacement,
        vertex_volume=vertex_volume,
        dofs=int(basis.N),
        newton_iterations=iterations,
        seconds=seconds,
        min_det_f=min_det(u),
    )


def network_problem(
    semi_axes_mm: tuple[float, float, float],
    plate_mm,
    *,
    material,
    stiffness_kpa_per_mm: float,
    spacing_mm: float,
):
    """The same problem for `medphys.neural.solve_elasticity`: ``(body, constraints, loads)``.

    The octant is an `Ellipsoid` cut by three `HalfSpace` planes, the rollers are `Fixed` planes
    built into the network's output, and the paddle is a `Plate` (``plate_mm`` may be a
    `Parameter`, making the network a surrogate over compressed thicknesses)."""
    import jax.numpy as jnp

    from medphys import neural
    from medphys.phantoms import Ellipsoid, HalfSpace, Intersection

    def f(*v: float):
        return jnp.asarray(v, jnp.float32)

    cuts = tuple(HalfSpace(f(*n), jnp.asarray(0.0)) for n in ((-1, 0, 0), (0, -1, 0), (0, 0, -1)))
    shape = Intersection((Ellipsoid(f(0, 0, 0), f(*semi_axes_mm), f(0, 0, 0)), *cuts))
    body = neural.ElasticBody.create([(shape, material)], spacing_mm=spacing_mm)
    constraints = [neural.Fixed.create(k, 0.0, components=(k,)) for k in range(3)]
    plate = neural.Plate.create(
        2, plate_mm, keep="below", stiffness_kpa_per_mm=stiffness_kpa_per_mm
    )
    return body, constraints, [plate]


def relative_l2(fem: FemSolution, displacement: np.ndarray) -> float:
    """Volume-weighted relative L2 distance of a displacement at ``fem.vertices`` from FE's."""
    w = fem.vertex_volume[:, None]
    diff = np.sum(w * (np.asarray(displacement, float) - fem.displacement) ** 2)
    return float(np.sqrt(diff / np.sum(w * fem.displacement**2)))
