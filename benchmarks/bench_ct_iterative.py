"""Iterative CT reconstruction side by side with the ASTRA toolbox's CPU algorithms.

Run (in an environment that also has astra-toolbox; it is never a medphys dependency):

    python benchmarks/bench_ct_iterative.py [--quick]

Scenario: 2-D parallel beam, Shepp–Logan 256² (1 mm pixels), 90 views over π, 368 detector pixels
(sparse-view). Each tool reconstructs from its own forward projection of the phantom (consistent
data in its own conventions) with SIRT (100 iterations) and CGLS (30 iterations); medphys also runs
TV (Chambolle–Pock, 100 iterations), which ASTRA does not offer. ASTRA uses its CPU ``linear``
(Joseph) projector, medphys its Joseph projector in float32 on the CPU. Each tool × algorithm runs
in a fresh interpreter, so the peak memory is its own. Accuracy: RMSE against the phantom.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import Timing, machine, measure, run_isolated, table

N, VIEWS, N_DET = 256, 90, 368
ITERS = {"SIRT": 100, "CGLS": 30, "TV": 100}


def _phantom(n: int) -> np.ndarray:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return resize(shepp_logan_phantom(), (n, n), anti_aliasing=True).astype(np.float32)


def _run_medphys(algorithm: str, n: int, repeats: int) -> dict:
    import jax

    from medphys import Volume
    from medphys.simulators import ct
    from medphys.simulators.geometry import ParallelBeam
    from medphys.simulators.xray import project

    img = _phantom(n)
    vol = Volume.create(img[:, :, None], spacing_mm=1.0)
    g = ParallelBeam.create(n_views=VIEWS, n_u=int(N_DET * n / N), du_mm=1.0)
    b = jax.block_until_ready(project(vol, g))
    make = {
        "SIRT": lambda: ct.sirt(g, like=vol, nonnegative=False),
        "CGLS": lambda: ct.cgls(g, like=vol),
        "TV": lambda: ct.tv(g, like=vol, weight=0.03),
    }[algorithm]
    solver = make()
    holder = {}

    def fn():
        holder["state"] = solver.run(b, ITERS[algorithm])
        return holder["state"].x

    t = measure("medphys", f"{algorithm} {ITERS[algorithm]} it, {n}²", fn, repeats=repeats)
    rec = np.asarray(holder["state"].x)[:, :, 0]
    t.note = f"RMSE {np.sqrt(np.mean((rec - img) ** 2)):.4f}"
    return asdict(t)


def _run_astra(algorithm: str, n: int, repeats: int) -> dict:
    import astra

    img = _phantom(n)
    n_det = int(N_DET * n / N)
    angles = np.linspace(0, np.pi, VIEWS, endpoint=False)
    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, n_det, angles)
    proj_id = astra.create_projector("linear", proj_geom, vol_geom)
    sino_id, _ = astra.create_sino(img, proj_id)
    holder = {}

    def fn():
        rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
        cfg = astra.astra_dict(algorithm)
        cfg["ProjectorId"] = proj_id
        cfg["ProjectionDataId"] = sino_id
        cfg["ReconstructionDataId"] = rec_id
        alg = astra.algorithm.create(cfg)
        astra.algorithm.run(alg, ITERS[algorithm])
        holder["rec"] = astra.data2d.get(rec_id)
        astra.algorithm.delete(alg)
        astra.data2d.delete(rec_id)
        return holder["rec"]

    t = measure("astra (CPU)", f"{algorithm} {ITERS[algorithm]} it, {n}²", fn, repeats=repeats)
    t.note = f"RMSE {np.sqrt(np.mean((holder['rec'] - img) ** 2)):.4f}"
    return asdict(t)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="128² instead of 256²")
    parser.add_argument("--one", nargs=2, metavar=("TOOL", "ALGORITHM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = 128 if args.quick else N
    repeats = 2 if args.quick else 3
    if args.one:
        tool, algorithm = args.one
        run = _run_medphys if tool == "medphys" else _run_astra
        print(json.dumps(run(algorithm, n, repeats)))
        return
    rows = []
    for algorithm in ("SIRT", "CGLS", "TV"):
        tools = ("astra", "medphys") if algorithm != "TV" else ("medphys",)
        for tool in tools:
            extra = ["--quick"] if args.quick else []
            try:
                rows.append(Timing(**run_isolated(__file__, *extra, "--one", tool, algorithm)))
            except Exception as exc:  # a missing comparison tool must not hide the others
                print(f"# {tool} {algorithm} failed: {exc}", file=sys.stderr)
    print(json.dumps(machine()))
    print(table(rows, baseline="astra (CPU)"))
    for r in rows:
        print(f"- {r.tool}, {r.task}: {r.note}")


if __name__ == "__main__":
    main()
