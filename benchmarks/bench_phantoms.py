"""Phantom voxelization: the adult torso at 256³ (2 mm) and 512³ (1 mm), and a 3-D Shepp–Logan at
128³ side by side with ODL (``odl.phantom.shepp_logan``) and phantominator.

Run:  python benchmarks/bench_phantoms.py [--skip-512]
      (ODL and phantominator are optional: install them into a separate environment, or put
      them on PYTHONPATH; a missing tool is reported, not fatal.)

Each measurement runs in a fresh interpreter, so the peak resident memory is that tool's own.
Shepp–Logan: ODL and phantominator sample each voxel centre once; medphys is timed with
``supersample=1`` (the same work) and ``supersample=2`` (partial volume: 8 samples per voxel).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Timing, machine, measure, run_isolated, table


def _torso_name() -> str:
    from medphys import phantoms

    return "adult-male" if "adult-male" in phantoms.names() else "torso-basic"


def one(tool: str, task: str) -> Timing:
    if tool == "medphys" and task.startswith("torso"):
        from medphys import phantoms

        name = _torso_name()
        ph = phantoms.load(name)
        n, fractions = {
            "torso-256": (256, False),
            "torso-256-fractions": (256, True),
            "torso-512": (512, False),
        }[task]
        # 256³ over the whole torso (384 × 256 × 589 mm: 1.5 × 1.0 × 2.3 mm voxels); 512³ halves them
        shape = (n, n, n)
        spacing_v = tuple(v * 256 / n for v in (1.5, 1.0, 2.3))
        center = (0.0, 0.0, -110.0) if name == "adult-male" else (0.0, 0.0, 0.0)
        repeats = 0 if n == 512 or fractions else 2

        def fn():
            return ph.voxelize(
                shape=shape,
                spacing_mm=spacing_v,
                center_mm=center,
                supersample=2,
                fractions=fractions,
            )

        note = (
            f"{name}, {len(ph.shapes)} structures, {shape} voxels of {spacing_v} mm, supersample 2"
        )
        return measure(
            tool, task, fn, repeats=repeats, note=note + (", fractions" if fractions else "")
        )
    if task.startswith("shepp-logan"):
        n = 128
        if tool.startswith("medphys"):
            from medphys import phantoms

            ph = phantoms.load("shepp-logan-3d")
            k = 2 if tool.endswith("ss2") else 1
            half = float(ph.shapes[0].semi_axes_mm.max()) * 1.0
            fov = 2.0 * half / 0.92  # the outer ellipse fills the grid as in ODL's unit cube
            return measure(
                tool,
                task,
                lambda: ph.voxelize(
                    shape=(n, n, n), spacing_mm=fov / n, supersample=k, fractions=False
                ),
                repeats=5,
                note=f"labels, supersample {k}",
            )
        if tool == "odl":
            import odl

            space = odl.uniform_discr([-1, -1, -1], [1, 1, 1], [n, n, n], dtype="float32")
            return measure(
                tool, task, lambda: odl.phantom.shepp_logan(space, modified=True), repeats=5
            )
        if tool == "phantominator":
            from phantominator import shepp_logan

            return measure(
                tool, task, lambda: shepp_logan((n, n, n), MR=False, zlims=(-1, 1)), repeats=5
            )
    raise ValueError(f"unknown tool/task {tool}/{task}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", nargs=2, metavar=("TOOL", "TASK"))
    parser.add_argument("--skip-512", action="store_true")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asdict(one(*args.one))))
        return
    jobs = [
        ("medphys", "torso-256"),
        ("medphys", "torso-256-fractions"),
        *([] if args.skip_512 else [("medphys", "torso-512")]),
        ("medphys", "shepp-logan-128"),
        ("medphys-ss2", "shepp-logan-128"),
        ("odl", "shepp-logan-128"),
        ("phantominator", "shepp-logan-128"),
    ]
    rows = []
    for tool, task in jobs:
        try:
            rows.append(Timing(**run_isolated(__file__, "--one", tool, task)))
        except Exception as exc:  # a missing optional tool
            print(f"{tool} {task}: not measured ({type(exc).__name__})", file=sys.stderr)
    print(json.dumps(machine()))
    print(table(rows, baseline="odl"))
    for r in rows:
        if r.note:
            print(f"- {r.tool} {r.task}: {r.note}")


if __name__ == "__main__":
    main()
