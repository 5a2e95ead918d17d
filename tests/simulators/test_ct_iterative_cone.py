"""Iterative reconstruction with cone-beam and projective geometries: the solvers' steps (also when
wrapped in ``jax.jit``) use the voxel-driven gather backprojector (no scatter-add), and their iterates
equal the same algorithms written out with the scatter transpose of a traced geometry to float64
rounding."""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from medphys import Volume
from medphys.simulators import ct
from medphys.simulators.geometry import ConeBeam, ProjectionGeometry
from medphys.simulators.xray import backproject, project

N = 12


def _volume():
    c = (np.arange(N) - (N - 1) / 2) * 2.0
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    data = np.where(x**2 + (y / 0.8) ** 2 + (z / 1.1) ** 2 < 8.0**2, 0.02, 0.0)
    data = data + np.where((x - 2) ** 2 + y**2 + z**2 < 3.0**2, 0.01, 0.0)
    return Volume.create(data, spacing_mm=2.0)


def _cone():
    return ConeBeam.create(
        n_views=16, n_u=20, n_v=18, du_mm=3.0, dv_mm=3.0, sod_mm=150.0, sdd_mm=300.0
    )


def _projective():
    cone = _cone()
    src, centre, e_u, e_v = (np.asarray(a) for a in cone.poses())
    tilt = np.radians(5.0)  # tilt the panel about u: a pose no circular cone beam has
    rot_v = np.cos(tilt) * e_v + np.sin(tilt) * np.cross(e_u, e_v)
    return ProjectionGeometry.create(
        sources_mm=src,
        detector_centers_mm=centre,
        u_axes=e_u,
        v_axes=rot_v,
        n_u=20,
        n_v=18,
        du_mm=3.0,
        dv_mm=3.0,
    )


GEOMETRIES = {"cone": _cone, "projective": _projective}
KINDS = ["cone", pytest.param("projective", marks=pytest.mark.slow)]


def _primitives(jaxpr) -> set[str]:
    """Every primitive of a jaxpr and its sub-jaxprs (jit, scan, cond bodies)."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            names |= _primitives(sub)
    return names


def _scatter_adjoint(vol):
    """`backproject` with the geometry traced, ``(y, geometry) -> A^T y``: the scatter transpose
    (the path a step that takes its geometry as a jit argument would use), compiled once per
    test."""
    return jax.jit(lambda y, g: backproject(y, g, like=vol).data)


@pytest.mark.slow  # about 15-25 s; the iterates test stays in the default tier
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_steps_backproject_by_gather(kind):
    vol = _volume()
    g = GEOMETRIES[kind]()
    b = project(vol, g)
    for make in (
        lambda: ct.sirt(g, like=vol),
        lambda: ct.cgls(g, like=vol),
        lambda: ct.tv(g, like=vol, weight=1e-3, power_iterations=3),
    ):
        solver = make()
        state = solver.step(solver.init(b))  # SIRT computes its weights on the first step
        prims = _primitives(jax.make_jaxpr(solver.step)(state).jaxpr)
        assert "gather" in prims and not any(p.startswith("scatter") for p in prims), prims
    # the control: a traced geometry takes the scatter transpose
    prims = _primitives(jax.make_jaxpr(lambda y, g: backproject(y, g, like=vol).data)(b, g).jaxpr)
    assert any(p.startswith("scatter") for p in prims)


@pytest.mark.parametrize("kind", KINDS)
def test_iterates_equal_the_algorithms_written_out(kind):
    vol = _volume()
    g = GEOMETRIES[kind]()
    b = project(vol, g)
    A = lambda x: project(Volume(data=x, affine=vol.affine), g)
    At = lambda y: backproject(y, g, like=vol).data
    scale = float(jnp.max(jnp.abs(At(b))))
    scatter = _scatter_adjoint(vol)

    # the scatter and gather transposes agree (the gather changes speed, not values)
    np.testing.assert_allclose(
        np.asarray(scatter(b, g)), np.asarray(At(b)), rtol=0, atol=1e-12 * scale
    )

    # SIRT: x += C A^T R (b - A x)
    inv = lambda v: jnp.where(v > 0, 1.0 / jnp.where(v > 0, v, 1.0), 0.0)
    r_w, c_w = inv(A(jnp.ones(vol.shape))), inv(At(jnp.ones(b.shape)))
    x = jnp.zeros(vol.shape)
    solver = ct.sirt(g, like=vol, relaxation=1.5)
    state = solver.init(b)
    for _ in range(4):
        x = x + 1.5 * c_w * scatter(r_w * (b - A(x)), g)
        state = solver.step(state)
    np.testing.assert_allclose(np.asarray(state.x), np.asarray(x), rtol=0, atol=1e-12 * 0.03)
    assert float(state.residual_norm) == pytest.approx(float(jnp.linalg.norm(b - A(x))), rel=1e-10)

    # CGLS (Björck 1996, §7.4)
    x = jnp.zeros(vol.shape)
    r = b
    s = At(r)
    p, gamma = s, jnp.sum(s * s)
    solver = ct.cgls(g, like=vol)
    state = solver.init(b)
    for _ in range(4):
        q = A(p)
        alpha = gamma / jnp.sum(q * q)
        x, r = x + alpha * p, r - alpha * q
        s = At(r)
        gamma, gamma_old = jnp.sum(s * s), gamma
        p = s + gamma / gamma_old * p
        state = solver.step(state)
    np.testing.assert_allclose(np.asarray(state.x), np.asarray(x), rtol=0, atol=1e-11 * 0.03)
    # CGLS on consistent data: the residual falls (the iterate is meaningful, not just equal)
    assert float(state.residual_norm) < 0.2 * float(jnp.linalg.norm(b))

    # TV: a user's ``jax.jit(step)`` keeps the gather and gives the same iterate
    solver = ct.tv(g, like=vol, weight=1e-3, power_iterations=3)
    jitted = jax.jit(solver.step)
    state = ref = solver.init(b)
    for _ in range(3):
        state = jitted(state)
        ref = solver.step(ref)
    np.testing.assert_allclose(np.asarray(state.x), np.asarray(ref.x), rtol=0, atol=1e-12 * 0.03)
    assert float(state.residual_norm) < float(jnp.linalg.norm(b))
