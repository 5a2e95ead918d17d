"""Polychromatic CT simulation of the adult torso at 256³ and 512³: time and peak memory.

Run:

    python benchmarks/bench_xray_memory.py [--skip-512]

The phantom is ``adult-male`` voxelized with sparse fractions over the whole torso (the grid of
``bench_phantoms.py``: 384 × 256 × 589 mm, 1.5 × 1.0 × 2.3 mm voxels at 256³, half that at
512³; 20 materials besides air), scanned by ``ct-chest-120kvp`` (fan beam, 360 views, 336
columns, one detector row per slice: 27 energies). Each case runs in its own interpreter, one
after the other, so peak RSS (voxelization included) is that case's own:

- ``dense``: ``xray.prepare(grid, protocol, materials=...).expected(lv.material_fractions())``,
  the whole ``(materials, x, y, z)`` float32 array in memory (what ``expected_scan`` did before
  it streamed; 256³ only: at 512³ the array alone is 10.7 GB);
- ``streamed``: ``xray.expected_scan(lv, protocol)``: one map per material, built slab by slab
  of slices from the labels and boundary entries (exact);
- ``basis``: the same with ``basis_tolerance=1e-5``: 6 attenuation-basis maps instead of 20.

Accuracy: each case writes its post-log projections; the table gives the largest difference of
the streamed scan from the dense one, and of the basis scan from the streamed one, at the same
size (the basis' error bound is 1e-5 × the largest exponent).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine, peak_rss_mb, run_isolated

HERE = Path(__file__).resolve()


def _load() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def run_case(n: int, mode: str, out: str) -> dict:
    import jax.numpy as jnp
    import numpy as np

    from medphys import phantoms, simulators
    from medphys.simulators import xray

    spacing = tuple(v * 256 / n for v in (1.5, 1.0, 2.3))
    t0 = time.perf_counter()
    lv = phantoms.voxelize(
        phantoms.load("adult-male"),
        shape=(n, n, n),
        spacing_mm=spacing,
        center_mm=(0.0, 0.0, -110.0),
        fractions=phantoms.Fractions.SPARSE,
    )
    voxelize_s = time.perf_counter() - t0
    voxelize_rss = peak_rss_mb()
    protocol = simulators.load("ct-chest-120kvp")
    load_before = _load()
    t0 = time.perf_counter()
    if mode == "dense":
        op = xray.prepare(lv.grid, protocol, materials=lv.material_names)
        scan = op.expected(lv.material_fractions(jnp.float32))
    else:
        tolerance = 1e-5 if mode == "basis" else None
        scan = xray.expected_scan(lv, protocol, basis_tolerance=tolerance)
    p = np.asarray(scan.projections)
    seconds = time.perf_counter() - t0
    np.save(out, p)
    tolerance = 1e-5 if mode == "basis" else None
    maps = xray.prepare(
        lv.grid, protocol, materials=lv.material_names, basis_tolerance=tolerance
    ).n_maps
    return {
        "n": n,
        "mode": mode,
        "materials": len(lv.material_names) - 1,
        "maps": maps,
        "voxelize_s": voxelize_s,
        "voxelize_rss_mb": voxelize_rss,
        "simulate_s": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "projections_mb": p.nbytes / 2**20,
        "load": f"{load_before} → {_load()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-512", action="store_true")
    parser.add_argument("--case", nargs=3, metavar=("N", "MODE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        n, mode, out = args.case
        print(json.dumps(run_case(int(n), mode, out)))
        return
    import numpy as np

    cases = [(256, "dense"), (256, "streamed"), (256, "basis")]
    if not args.skip_512:
        cases += [(512, "streamed"), (512, "basis")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, mode in cases:
            out = str(Path(tmp) / f"{n}-{mode}.npy")
            row = run_isolated(str(HERE), "--case", str(n), mode, out)
            # the streamed scan against the dense one; the basis against the streamed one
            ref = {"streamed": f"{n}-dense.npy", "basis": f"{n}-streamed.npy"}.get(mode)
            row["gap"] = None
            if ref and (Path(tmp) / ref).exists():
                gap = np.abs(np.load(out) - np.load(str(Path(tmp) / ref)))
                row["gap"] = float(np.max(gap))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"machine": machine()}))
    print()
    print(
        "| grid | path | maps projected | simulate (s) | peak RSS (MB) | voxelize peak (MB) "
        "| max |Δp| (streamed vs dense, basis vs streamed) | load before → after |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        gap = "–" if r["gap"] is None else f"{r['gap']:.1e}"
        print(
            f"| {r['n']}³ | {r['mode']} | {r['maps']} of {r['materials']} | {r['simulate_s']:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {r['voxelize_rss_mb']:.0f} | {gap} | {r['load']} |"
        )


if __name__ == "__main__":
    main()
