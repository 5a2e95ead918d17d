"""Parker short-scan weights: the closed-form redundancy identity, every measured line counted
once in a real geometry (lines found from the geometry's own rays), and the accepted scan ranges."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from medphys import Volume
from medphys.simulators.ct import fbp, fdk, parker_weights
from medphys.simulators.ct._parker import _parker_weight as _parker_weight_eager
from medphys.simulators.geometry import ConeBeam, FanBeam, ParallelBeam

_parker_weight = jax.jit(_parker_weight_eager)


@pytest.mark.parametrize("delta_deg", [5.0, 12.0, 30.0])
def test_parker_identity_on_the_redundant_region(delta_deg):
    # w(beta, gamma) + w(beta + pi + 2 gamma, -gamma) = 1 for 0 <= beta <= 2 delta - 2 gamma
    delta = math.radians(delta_deg)
    gamma = np.linspace(-delta, delta, 41)[1:-1]
    frac = np.linspace(0.0, 1.0, 51)
    beta = frac[:, None] * (2 * delta - 2 * gamma)[None, :]
    g = np.broadcast_to(gamma[None, :], beta.shape)
    w = np.asarray(_parker_weight(jnp.asarray(beta), jnp.asarray(g), jnp.asarray(delta)))
    w_conj = np.asarray(
        _parker_weight(jnp.asarray(beta + np.pi + 2 * g), jnp.asarray(-g), jnp.asarray(delta))
    )
    np.testing.assert_allclose(w + w_conj, 1.0, atol=1e-14)
    # between the two transitions the line is measured once: weight 1; outside the scan: 0
    mid = np.linspace(2 * delta - 2 * gamma + 1e-9, np.pi - 2 * gamma - 1e-9, 7)
    one = _parker_weight(jnp.asarray(mid), jnp.asarray(np.broadcast_to(gamma, mid.shape)), delta)
    np.testing.assert_allclose(np.asarray(one), 1.0, atol=1e-15)
    out = _parker_weight(jnp.asarray([-1e-3, np.pi + 2 * delta + 1e-3]), jnp.zeros(2), delta)
    np.testing.assert_array_equal(np.asarray(out), 0.0)
    # the weights are continuous at the transitions (the smooth sin^2 form)
    b1 = 2 * delta - 2 * gamma
    near = _parker_weight(jnp.asarray(b1 - 1e-7), jnp.asarray(gamma), delta)
    np.testing.assert_allclose(np.asarray(near), 1.0, atol=1e-6)


def _line_keys(g):
    """Every ray as a line ``(views, u)``: direction angle mod pi and signed distance, from the
    geometry's own rays (independent of the fan-angle formula used by the weights)."""
    r = jax.vmap(lambda v: g.planar_rays(v, jnp.float64))(jnp.arange(g.n_views))
    o, d = np.asarray(r.origins), np.asarray(r.directions)
    phi = np.arctan2(d[..., 1], d[..., 0])
    p = o[..., 0] * d[..., 1] - o[..., 1] * d[..., 0]
    flip = (phi < 0) | (phi >= np.pi)
    phi = np.where(flip, np.mod(phi + np.pi, 2 * np.pi), phi)
    p = np.where(flip, -p, p)
    return np.round(phi, 7), np.round(p, 5)


@pytest.mark.parametrize("decreasing", [False, True])
def test_parker_weights_count_every_measured_line_once(decreasing):
    # curved detector whose pixel pitch is half the view step: every conjugate ray is a sample
    step = math.pi / 90  # 2°
    n_u, sdd = 21, 600.0
    n_views = 90 + 11  # pi + 2 delta with delta = 5.5 steps > the detector's 5.25 steps
    start = step / 4  # keeps the lines' direction angles away from the wrap at 0 / pi
    angles = start + step * np.arange(n_views)
    if decreasing:
        angles = angles[::-1].copy()
    g = FanBeam.create(
        angles_rad=angles, n_u=n_u, du_mm=sdd * step / 2, sod_mm=300.0, sdd_mm=sdd, curved=True
    )
    w = np.asarray(parker_weights(g, dtype=jnp.float64))
    assert w.shape == (n_views, n_u) and w.min() >= 0.0 and w.max() <= 1.0
    totals: dict[tuple[float, float], float] = {}
    counts: dict[tuple[float, float], int] = {}
    phi, dist = _line_keys(g)
    for k in range(n_views):
        for key, wk in zip(zip(phi[k], dist[k], strict=True), w[k], strict=True):
            totals[key] = totals.get(key, 0.0) + float(wk)
            counts[key] = counts.get(key, 0) + 1
    total = np.array(list(totals.values()))
    twice = np.array(list(counts.values())) == 2
    # measured: every line adds up to 1 within 4e-16; ~20 % of the lines are measured twice
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert 0.1 < twice.mean() < 0.5
    assert max(counts.values()) == 2


def test_full_turns_are_not_weighted_and_user_weights_follow_the_same_scale():
    g = FanBeam.create(n_views=72, n_u=48, du_mm=2.0, sod_mm=200.0, sdd_mm=400.0, n_rows=1)
    like = Volume.create(np.zeros((24, 24, 1)), spacing_mm=2.0)
    rng = np.random.default_rng(0)
    p = rng.standard_normal((72, 48, 1))
    ref = np.asarray(fbp(p, g, like=like).data)
    # a full turn measures every line twice: weight 1/2 each is the same reconstruction
    half = np.full((72, 48), 0.5)
    np.testing.assert_allclose(np.asarray(fbp(p, g, like=like, redundancy=half).data), ref, 1e-12)


def test_short_scan_validation():
    where = r"medphys.simulators.ct.fbp: the views must cover a full turn \(2π\) or"
    g = FanBeam.create(
        n_views=180, arc_rad=math.pi, n_u=64, du_mm=2.0, sod_mm=300.0, sdd_mm=600.0, n_rows=1
    )
    like = Volume.create(np.zeros((8, 8, 1)), spacing_mm=1.0)
    p = np.zeros((180, 64, 1))
    with pytest.raises(ValueError, match=where):
        fbp(p, g, like=like)
    # ... unless the caller brings its own weights
    fbp(p, g, like=like, redundancy=np.ones((180, 64)))
    with pytest.raises(
        ValueError, match=r"`redundancy` must have shape \(views, u\) = \(180, 64\)"
    ):
        fbp(p, g, like=like, redundancy=np.ones((180, 63)))
    with pytest.raises(ValueError, match="`redundancy` must be finite"):
        fbp(p, g, like=like, redundancy=np.full((180, 64), np.nan))
    parallel = ParallelBeam.create(n_views=10, n_u=8, du_mm=1.0, angles_rad=np.arange(10) * 0.7)
    with pytest.raises(ValueError, match="at most one turn"):
        fbp(np.zeros((10, 8, 1)), parallel, like=like)
    cone = ConeBeam.create(
        n_views=20, arc_rad=math.radians(150), n_u=8, n_v=4, du_mm=1.0, dv_mm=1.0, sod_mm=50.0,
        sdd_mm=90.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"ct.fdk: the views must cover .* 3.2\d+ rad"):
        fdk(np.zeros((20, 8, 4)), cone, like=Volume.create(np.zeros((4, 4, 4))))


def test_parker_weights_are_traceable_and_differentiable_in_the_pose():
    def total(sdd):
        g = FanBeam.create(
            n_views=50, arc_rad=math.radians(220), n_u=16, du_mm=4.0, sod_mm=300.0, sdd_mm=600.0
        )
        g = jax.tree_util.tree_map(jnp.asarray, g)
        return jnp.sum(parker_weights(dataclasses.replace(g, sdd_mm=sdd), dtype=jnp.float64))

    check_grads(jax.jit(total), (jnp.asarray(600.0),), order=1, modes=["rev"], eps=1e-3)
