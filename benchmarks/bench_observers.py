"""Model-observer and ROC costs per 1,000 ROIs: medphys.observers (JAX) beside the same algebra
in plain NumPy.

Run:

    python benchmarks/bench_observers.py [--repeats 5]

Scenarios (float32, CPU unless a device is present), each on 1,000 ROIs (500 signal-present +
500 signal-absent, white Gaussian noise plus a Gaussian blob):

- ``npw 64²``: train the NPW template, then score the 1,000 ROIs;
- ``hotelling 16²`` and ``hotelling 24²``: pixel-space Hotelling (256 and 576 pixels), train
  (pooled covariance + solve) and score;
- ``cho-lg 64²``: 10 Laguerre–Gauss channels (width 15 px), train and score;
- ``cho-lg 32³``: 10 three-dimensional LG channels (width 8 voxels), train and score;
- ``delong`` and ``bootstrap`` on 1,000 scores (2,000 replicates).

For each: the first call (compile + run, JAX), the steady-state median, and compile ≈ first −
steady. The NumPy baseline does the same algebra (means, covariance, ``np.linalg.solve``,
``tensordot``) with no compilation. All tasks run in one process, so the peak RSS column is the
process's running peak, not each task's own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import Timing, machine, measure, table

N_PER_CLASS = 500


def _rois(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    grids = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    blob = 0.5 * np.exp(-sum(g * g for g in grids) / (2 * 3.0**2))
    sp = rng.standard_normal((N_PER_CLASS, *shape)).astype(np.float32) + blob.astype(np.float32)
    sa = rng.standard_normal((N_PER_CLASS, *shape)).astype(np.float32)
    return sp, sa


def _numpy_train(kind: str, sp: np.ndarray, sa: np.ndarray, u: np.ndarray | None) -> np.ndarray:
    """The same templates in NumPy: returns the pixel-space template."""
    x1 = sp.reshape(sp.shape[0], -1)
    x0 = sa.reshape(sa.shape[0], -1)
    if kind == "npw":
        return (x1.mean(0) - x0.mean(0)).reshape(sp.shape[1:])
    if kind == "cho":
        um = u.reshape(u.shape[0], -1)
        x1, x0 = x1 @ um.T, x0 @ um.T
    d1, d0 = x1 - x1.mean(0), x0 - x0.mean(0)
    cov = (d1.T @ d1 + d0.T @ d0) / (x1.shape[0] + x0.shape[0] - 2)
    w = np.linalg.solve(cov, x1.mean(0) - x0.mean(0))
    if kind == "cho":
        return np.tensordot(w, u, axes=1)
    return w.reshape(sp.shape[1:])


def _numpy_score(template: np.ndarray, images: np.ndarray) -> np.ndarray:
    nd = template.ndim
    return np.tensordot(images, template, axes=(tuple(range(1, nd + 1)), tuple(range(nd))))


def _observer_case(
    obs: Any,
    jnp: Any,
    rng: np.random.Generator,
    name: str,
    kind: str,
    shape: tuple[int, ...],
    lg: dict[str, Any] | None,
    repeats: int,
) -> list[Timing]:
    """Train and score timings of one observer on 1,000 ROIs, medphys and NumPy."""
    sp, sa = _rois(shape, rng)
    images = np.concatenate([sp, sa])
    u = obs.laguerre_gauss(shape, **lg) if lg else None
    spj, saj, imj = jnp.asarray(sp), jnp.asarray(sa), jnp.asarray(images)
    kw = {"channels": u} if u is not None else {}
    un = None if u is None else np.asarray(u)
    trained = obs.train(kind, spj, saj, **kw)
    tn = _numpy_train(kind, sp, sa, un)
    ref = _numpy_score(tn, images)
    err = float(np.max(np.abs(np.asarray(obs.score(trained, imj)) - ref)) / np.max(np.abs(ref)))
    # `trained` was built once above: the first timed call below is already compiled, so time
    # a fresh compilation by clearing the caches first
    jax_clear()
    return [
        measure(
            "medphys",
            f"{name} train",
            lambda: obs.train(kind, spj, saj, **kw),
            repeats=repeats,
            note=f"scores vs numpy: max rel diff {err:.1e}",
        ),
        measure("medphys", f"{name} score", lambda: obs.score(trained, imj), repeats=repeats),
        measure("numpy", f"{name} train", lambda: _numpy_train(kind, sp, sa, un), repeats=repeats),
        measure("numpy", f"{name} score", lambda: _numpy_score(tn, images), repeats=repeats),
    ]


def jax_clear() -> None:
    import jax

    jax.clear_caches()


def run(repeats: int) -> list[Timing]:
    import jax
    import jax.numpy as jnp

    from medphys import observers as obs

    rng = np.random.default_rng(0)
    rows: list[Timing] = []
    cases = [
        ("npw 64²", "npw", (64, 64), None),
        ("hotelling 16²", "hotelling", (16, 16), None),
        ("hotelling 24²", "hotelling", (24, 24), None),
        ("cho-lg 64² (10 ch)", "cho", (64, 64), dict(n_channels=10, width_px=15.0)),
        ("cho-lg 32³ (10 ch)", "cho", (32, 32, 32), dict(n_channels=10, width_px=8.0)),
    ]
    for name, kind, shape, lg in cases:
        rows.extend(_observer_case(obs, jnp, rng, name, kind, shape, lg, repeats))

    scores = jnp.asarray(np.concatenate([rng.normal(1.0, 1.0, 500), rng.normal(0.0, 1.0, 500)]))
    truth = jnp.arange(1000) < 500
    rows.append(
        measure(
            "medphys", "delong 1,000 scores", lambda: obs.delong(scores, truth), repeats=repeats
        )
    )
    key = jax.random.key(0)
    rows.append(
        measure(
            "medphys",
            "bootstrap 1,000 scores × 2,000",
            lambda: obs.bootstrap_auc(key, scores, truth, n_boot=2000),
            repeats=repeats,
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = run(args.repeats)
    load_after = os.getloadavg()
    print(json.dumps(machine()))
    print(table(rows, baseline="numpy"))
    print()
    base = {r.task: r for r in rows if r.tool == "numpy"}
    print(
        "| per 1,000 ROIs | medphys first call (s) | medphys compile ≈ first − steady (s) "
        "| medphys steady (ms) | numpy steady (ms) | numpy / medphys |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if r.tool != "medphys":
            continue
        b = base.get(r.task)
        ratio = f"{b.steady_s / r.steady_s:.2f}×" if b and r.steady_s > 0 else "–"
        numpy_ms = f"{1e3 * b.steady_s:.2f}" if b else "–"
        print(
            f"| {r.task} | {r.first_s:.3f} | {max(r.first_s - r.steady_s, 0.0):.3f} | "
            f"{1e3 * r.steady_s:.2f} | {numpy_ms} | {ratio} |"
        )
    for r in rows:
        if r.note:
            print(f"- {r.tool}, {r.task}: {r.note}")
    print(
        f"\nload average (1, 5, 15 min) before: {tuple(round(x, 2) for x in load_before)}, "
        f"after: {tuple(round(x, 2) for x in load_after)}"
    )


if __name__ == "__main__":
    main()
