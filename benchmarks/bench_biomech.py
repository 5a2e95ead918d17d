"""Breast compression per case: the trained parametric elasticity network beside scikit-fem.

Run:

    python benchmarks/bench_biomech.py [--cases 100] [--tiny]

The problem (`breast_compression.py`): VICTRE's fat (FEBio neo-Hookean, 5 kPa, ν 0.49), a
110 × 60 × 80 mm hemi-ellipsoid (one octant by symmetry) pressed by a rigid frictionless paddle
(penalty 20 kPa/mm) to a compressed thickness T.

Measured, in one run on one machine:

1. **Reference**: scikit-fem, isoparametric P2 tetrahedra at ``--reference`` refinements (8⁴ =
   4,096 cells, 19,635 dofs by default), at the ``--check`` thicknesses.
2. **FE per case**: the same solver at coarser meshes (``--fe-levels``): seconds per case and
   the relative L2 displacement error against the reference (volume-weighted, at the vertices).
3. **One case**: a network trained for one thickness (``--steps``): training + evaluation time
   and its error.
4. **Population**: one *parametric* network (the paddle position a `Parameter` over the
   ``--thickness`` range) trained once, then evaluated at ``--cases`` thicknesses drawn
   uniformly: training time, evaluation time per case, and the error at the ``--check``
   thicknesses.

Ratios: FE seconds per case (at the coarsest FE level whose error is at most the network's) over
the network's seconds per case, for one case (training included) and amortised over the
population (one training + ``cases`` evaluations). Errors are relative L2 of the displacement,
``sqrt(Σ w |u − u_ref|² / Σ w |u_ref|²)`` with ``w`` the vertex volumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import machine
from breast_compression import (
    FemSolution,
    network_problem,
    relative_l2,
    solve_breast_compression,
)

SEMI_AXES_MM = (55.0, 60.0, 40.0)
STIFFNESS = 20.0


def _fe(material, thickness: float, level: int) -> FemSolution:
    mu, lam = material.lame
    return solve_breast_compression(
        SEMI_AXES_MM,
        thickness / 2,
        mu_kpa=mu,
        lam_kpa=lam,
        stiffness_kpa_per_mm=STIFFNESS,
        refinements=level,
    )


def _coarse_error(coarse: FemSolution, fine: FemSolution) -> float:
    """Refinement keeps the coarse vertices first: compare there, weighted by coarse volumes."""
    n = len(coarse.vertices)
    if not np.allclose(coarse.vertices, fine.vertices[:n]):
        raise AssertionError("the refined mesh does not keep the coarse vertices first")
    trimmed = FemSolution(
        coarse.vertices,
        fine.displacement[:n],
        coarse.vertex_volume,
        fine.dofs,
        0,
        0.0,
        fine.min_det_f,
    )
    return relative_l2(trimmed, coarse.displacement)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--thickness", type=float, nargs=2, default=(45.0, 65.0))
    parser.add_argument("--check", type=float, nargs="+", default=(45.0, 55.0, 65.0))
    parser.add_argument("--reference", type=int, default=4)
    parser.add_argument("--fe-levels", type=int, nargs="+", default=(2, 3))
    parser.add_argument("--spacing", type=float, default=3.0)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--parametric-steps", type=int, default=8000)
    parser.add_argument("--tiny", action="store_true", help="a smoke run of the whole path")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/biomech.json"))
    args = parser.parse_args()
    if args.tiny:
        args.reference, args.fe_levels, args.spacing = 2, (1,), 8.0
        args.width, args.depth, args.steps, args.parametric_steps = 16, 2, 50, 50
        args.cases, args.check = 5, (50.0, 60.0)

    import jax
    import jax.numpy as jnp

    from medphys import neural

    load_before = os.getloadavg()
    fat = neural.NeoHookean.create(neural.VICTRE_MODULI_KPA["fat"], 0.49)
    rows: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}

    reference = {t: _fe(fat, t, args.reference) for t in args.check}
    rows["reference"] = {
        "refinements": args.reference,
        "dofs": reference[args.check[0]].dofs,
        "seconds": [reference[t].seconds for t in args.check],
        "newton_iterations": [reference[t].newton_iterations for t in args.check],
    }
    print(f"reference: {rows['reference']}", flush=True)

    fe_rows = []
    for level in args.fe_levels:
        runs = {t: _fe(fat, t, level) for t in args.check}
        fe_rows.append(
            {
                "refinements": level,
                "dofs": runs[args.check[0]].dofs,
                "seconds_per_case": float(np.mean([r.seconds for r in runs.values()])),
                "error": max(_coarse_error(runs[t], reference[t]) for t in args.check),
            }
        )
        print(f"fe: {fe_rows[-1]}", flush=True)
    rows["fe"] = fe_rows

    def train(plate, steps: int):
        body, constraints, loads = network_problem(
            SEMI_AXES_MM,
            plate,
            material=fat,
            stiffness_kpa_per_mm=STIFFNESS,
            spacing_mm=args.spacing,
        )
        config = neural.ElasticConfig(width=args.width, depth=args.depth, steps=steps)
        t0 = time.perf_counter()
        sol = neural.solve_elasticity(
            jax.random.key(0), body, constraints=constraints, loads=loads, config=config
        )
        return sol, time.perf_counter() - t0, len(body.points)

    middle = args.check[len(args.check) // 2]
    single, single_s, points = train(middle / 2, args.steps)
    vertices = jnp.asarray(reference[middle].vertices, jnp.float32)
    t0 = time.perf_counter()
    u = np.asarray(single.displacement(vertices))
    rows["single"] = {
        "thickness_mm": middle,
        "points": points,
        "train_s": single_s,
        "evaluate_s": time.perf_counter() - t0,
        "error": relative_l2(reference[middle], u),
        "summary": single.summary,
    }
    print(f"single: {rows['single']}", flush=True)

    low, high = args.thickness
    plate = neural.Parameter.create("plate_mm", low / 2, high / 2)
    surrogate, surrogate_s, _ = train(plate, args.parametric_steps)
    errors = {
        t: relative_l2(
            reference[t],
            np.asarray(
                surrogate.displacement(
                    jnp.asarray(reference[t].vertices, jnp.float32), plate_mm=t / 2
                )
            ),
        )
        for t in args.check
    }
    draws = np.random.default_rng(0).uniform(low, high, args.cases)
    surrogate.displacement(vertices, plate_mm=float(draws[0]) / 2).block_until_ready()  # compile
    t0 = time.perf_counter()
    for t in draws:
        surrogate.displacement(vertices, plate_mm=float(t) / 2).block_until_ready()
    evaluate_s = (time.perf_counter() - t0) / args.cases
    rows["parametric"] = {
        "thickness_mm": [low, high],
        "train_s": surrogate_s,
        "evaluate_s_per_case": evaluate_s,
        "errors": {str(k): v for k, v in errors.items()},
        "summary": surrogate.summary,
    }
    print(f"parametric: {rows['parametric']}", flush=True)

    worst = max(errors.values())
    matched = [r for r in fe_rows if r["error"] <= max(worst, rows["single"]["error"])]
    fe_case = (matched[0] if matched else fe_rows[-1])["seconds_per_case"]
    amortised = (surrogate_s + args.cases * evaluate_s) / args.cases
    rows["ratios"] = {
        "fe_level": (matched[0] if matched else fe_rows[-1])["refinements"],
        "fe_seconds_per_case": fe_case,
        "one_case": fe_case / (single_s + rows["single"]["evaluate_s"]),
        "amortised": fe_case / amortised,
        "amortised_seconds_per_case": amortised,
        "evaluation_only": fe_case / evaluate_s,
    }
    rows["load"] = {"before": load_before, "after": os.getloadavg()}
    print(json.dumps(rows["ratios"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
