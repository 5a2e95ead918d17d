"""Prepared operators inside training loops: batching and registration gradients.

Run:

    python benchmarks/bench_prepared.py [--quick]

Scenarios (medphys alone: the question is what the prepared operators cost relative to the
alternatives a user has inside JAX, not against another tool):

- ``vmap8``: 8 cases at 128³ (1 mm voxels) through one prepared cone-beam projector (16 views onto
  a 128² detector, 2 mm pixels): ``jax.jit(jax.vmap(op.project))`` on the stacked batch against a
  Python loop of 8 calls of ``jax.jit(op.project)``. Ratio = loop / vmap (> 1: vmap is faster).
- ``registration``: one DRR of a 128³ CT-like volume onto a 128² detector (a 2D/3D registration
  step): the forward ``op.with_geometry(pose).project(x)`` and the gradient of a sum-of-squares
  loss against a target DRR with respect to the pose (source and detector positions), both
  jitted with the pose as an argument. Ratio = gradient / forward (the issue's target: ≤ 2.5).

Timings: first call (compile + run) and the steady median; ``os.getloadavg()`` with each row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax
import jax.numpy as jnp
import numpy as np
from _harness import machine, measure, table

import medphys
from medphys.simulators import xray


def _load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def _phantom(n: int, seed: int) -> np.ndarray:
    """A soft-tissue ellipsoid with a few dense inserts (1/mm)."""
    rng = np.random.default_rng(seed)
    c = (np.arange(n) - (n - 1) / 2) / (n / 2)
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    vol = np.where((x / 0.8) ** 2 + (y / 0.6) ** 2 + (z / 0.9) ** 2 < 1, 0.02, 0.0)
    for _ in range(4):
        p = rng.uniform(-0.4, 0.4, 3)
        r = rng.uniform(0.08, 0.2)
        vol = np.where((x - p[0]) ** 2 + (y - p[1]) ** 2 + (z - p[2]) ** 2 < r * r, 0.05, vol)
    return vol.astype(np.float32)


def vmap8(repeats: int) -> list:
    n = 128
    grid = medphys.Grid.create((n, n, n), spacing_mm=1.0)
    g = xray.ConeBeam.create(
        n_views=16, n_u=128, n_v=128, du_mm=2.0, dv_mm=2.0, sod_mm=850.0, sdd_mm=1020.0
    )
    op = xray.prepare(grid, g)
    batch = jnp.stack([jnp.asarray(_phantom(n, s)) for s in range(8)])
    one = jax.jit(op.project)
    many = jax.jit(jax.vmap(op.project))
    load = _load()
    rows = [
        measure(
            "loop of 8",
            "8 × 128³ → 16 × 128²",
            lambda: [one(x) for x in batch],
            repeats=repeats,
            note=load,
        ),
        measure("vmap", "8 × 128³ → 16 × 128²", lambda: many(batch), repeats=repeats, note=load),
    ]
    loop = np.stack([np.asarray(one(x)) for x in batch])
    gap = float(np.max(np.abs(np.asarray(many(batch)) - loop)) / np.max(np.abs(loop)))
    rows[-1].note += f"; max rel. difference to the loop {gap:.1e}"
    return rows


def registration(repeats: int) -> list:
    n = 128
    grid = medphys.Grid.create((n, n, n), spacing_mm=1.0)
    pose = xray.ProjectionGeometry.create(
        sources_mm=[[0.0, -850.0, 0.0]],
        detector_centers_mm=[[0.0, 170.0, 0.0]],
        u_axes=[[1.0, 0.0, 0.0]],
        v_axes=[[0.0, 0.0, 1.0]],
        n_u=128,
        n_v=128,
        du_mm=2.0,
        dv_mm=2.0,
    )
    op = xray.prepare(grid, pose)
    x = jnp.asarray(_phantom(n, 0))
    target = op.project(x)
    moved = dataclasses.replace(
        pose,
        sources_mm=pose.sources_mm + jnp.asarray([[3.0, 0.0, -2.0]]),
        detector_centers_mm=pose.detector_centers_mm + jnp.asarray([[3.0, 0.0, -2.0]]),
    )

    def forward(p):
        return op.with_geometry(p).project(x)

    def loss(p):
        return jnp.sum((forward(p) - target) ** 2)

    fwd = jax.jit(forward)
    grad = jax.jit(jax.grad(loss))
    load = _load()
    rows = [
        measure(
            "forward (pose traced)",
            "DRR 128³ → 128²",
            lambda: fwd(moved),
            repeats=repeats,
            note=load,
        ),
        measure(
            "d loss / d pose", "DRR 128³ → 128²", lambda: grad(moved), repeats=repeats, note=load
        ),
    ]
    g = grad(moved)
    rows[-1].note += (
        f"; d/d source x = {float(g.sources_mm[0, 0]):.3g} (finite: "
        f"{bool(np.all(np.isfinite(np.asarray(g.sources_mm))))})"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    print(json.dumps(machine()))
    rows_v = vmap8(repeats)
    print(table(rows_v, baseline="loop of 8"))
    rows_r = registration(repeats)
    print(table(rows_r, baseline="forward (pose traced)"))


if __name__ == "__main__":
    main()
