"""Iterative CT reconstruction side by side with the ASTRA toolbox's CPU algorithms.

Run (in an environment that also has astra-toolbox; it is never a medphys dependency):

    python benchmarks/bench_ct_iterative.py [--quick]

Scenario: 2-D parallel beam, Shepp–Logan 256² (1 mm pixels), 90 views over π, 368 detector pixels
(sparse-view). Each tool reconstructs from its own forward projection of the phantom (consistent
data in its own conventions) with SIRT (100 iterations) and CGLS (30 iterations); medphys also runs
TV (Chambolle–Pock, 100 iterations), which ASTRA does not offer. ASTRA uses its CPU ``linear``
(Joseph) projector, medphys its Joseph projector in float32 on the CPU. Each tool × algorithm runs
in a fresh interpreter, so the peak memory is its own. Accuracy: RMSE against the phantom.

Cone-beam scenario (``--cone``): SIRT, 20 iterations, 128³ (2 mm voxels), 64 views over 2π,
128² detector at 4 mm (sod 600 mm, sdd 1200 mm), float32. ASTRA's 3-D algorithms need CUDA, so this
compares medphys with itself: the solver's step (each projector call compiled on its own with the
geometry concrete: the voxel-driven gather backprojector; the vector updates eager) against the same
SIRT step compiled as one function with the geometry closed over (still the gather) and with the
geometry as an argument (traced geometry: the exact scatter transpose). All three give the same
iterate (max difference reported).
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


CONE_N, CONE_VIEWS, CONE_ITERS = 128, 64, 20


def _slug(variant: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in variant)


def _run_cone(variant: str, n: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from medphys import Volume
    from medphys.simulators import ct
    from medphys.simulators.geometry import ConeBeam
    from medphys.simulators.xray import backproject, project

    spacing = 256.0 / n
    c = (np.arange(n) - (n - 1) / 2) * spacing
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    img = np.where(x**2 + (y / 0.8) ** 2 + (z / 1.1) ** 2 < 90.0**2, 0.02, 0.0)
    img = (img + np.where((x - 30) ** 2 + y**2 + z**2 < 25.0**2, 0.01, 0.0)).astype(np.float32)
    vol = Volume.create(img, spacing_mm=spacing)
    g = ConeBeam.create(
        n_views=CONE_VIEWS,
        n_u=n,
        n_v=n,
        du_mm=2 * spacing * 2,
        dv_mm=2 * spacing * 2,
        sod_mm=600.0,
        sdd_mm=1200.0,
    )
    b = jax.block_until_ready(project(vol, g))
    holder: dict = {}
    if variant == "solver step (gather)":
        solver = ct.sirt(g, like=vol)

        def fn():
            holder["x"] = solver.run(b, CONE_ITERS).x
            return holder["x"]
    else:
        affine = np.asarray(vol.affine)
        fwd = lambda x, g: project(Volume(data=x, affine=affine), g)
        adj = lambda y, g: backproject(y, g, like=vol).data

        def inv(v):
            return jnp.where(v > 0, 1.0 / jnp.where(v > 0, v, 1.0), 0.0)

        def sirt_step(x, r_w, c_w, g):
            return x + c_w * adj(r_w * (b - fwd(x, g)), g)

        if variant == "jitted step, prepared operator argument (gather)":
            from medphys.simulators import xray

            op = xray.prepare(vol.grid, g)  # planned on the concrete geometry: gather adjoint
            fwd = lambda x, op: op.project(x)
            adj = lambda y, op: op.backproject(y)
            step = jax.jit(sirt_step)
            g = op
        elif variant == "jitted step, geometry argument (scatter)":
            step = jax.jit(sirt_step)
        else:  # the geometry closed over: a compile-time constant
            closed = jax.jit(lambda x, r_w, c_w: sirt_step(x, r_w, c_w, g))
            step = lambda x, r_w, c_w, _: closed(x, r_w, c_w)

        def fn():
            r_w = inv(fwd(jnp.ones(vol.shape, jnp.float32), g))
            c_w = inv(adj(jnp.ones(b.shape, jnp.float32), g))
            x = jnp.zeros(vol.shape, jnp.float32)
            for _ in range(CONE_ITERS):
                x = step(x, r_w, c_w, g)
            holder["x"] = x
            return x

    t = measure(f"medphys, {variant}", f"SIRT {CONE_ITERS} it, cone {n}³", fn, repeats=repeats)
    rec = np.asarray(holder["x"])
    t.note = f"RMSE {np.sqrt(np.mean((rec - img) ** 2)):.5f}"
    np.save(f"/tmp/bench_ct_iterative_cone_{_slug(variant)}.npy", rec)
    return asdict(t)


def _main_cone(quick: bool) -> None:
    rows = []
    variants = (
        "solver step (gather)",
        "jitted step, geometry closed over (gather)",
        "jitted step, geometry argument (scatter)",
        "jitted step, prepared operator argument (gather)",
    )
    for variant in variants:
        extra = ["--quick"] if quick else []
        rows.append(Timing(**run_isolated(__file__, *extra, "--one", "cone", variant)))
    print(json.dumps(machine()))
    print(table(rows, baseline=f"medphys, {variants[0]}"))
    ref = np.load(f"/tmp/bench_ct_iterative_cone_{_slug(variants[0])}.npy")
    for r, v in zip(rows, variants, strict=True):
        other = np.load(f"/tmp/bench_ct_iterative_cone_{_slug(v)}.npy")
        diff = float(np.max(np.abs(other - ref)) / np.max(np.abs(ref)))
        print(f"- {r.tool}: {r.note}, max |x - x_solver| / max |x| = {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="128² instead of 256²")
    parser.add_argument("--cone", action="store_true", help="the cone-beam SIRT scenario")
    parser.add_argument("--one", nargs=2, metavar=("TOOL", "ALGORITHM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = 128 if args.quick else N
    repeats = 2 if args.quick else 3
    if args.one and args.one[0] == "cone":
        print(json.dumps(_run_cone(args.one[1], 64 if args.quick else CONE_N, 1)))
        return
    if args.cone:
        _main_cone(args.quick)
        return
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
