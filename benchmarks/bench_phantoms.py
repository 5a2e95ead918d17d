"""Phantom voxelization: the adult torso at 256³ (about 2 mm) and 512³, and a 3-D Shepp–Logan at
128³ side by side with ODL (``odl.phantom.shepp_logan``) and phantominator.

Run:  python benchmarks/bench_phantoms.py [--skip-512] [--skip-previous]
      (ODL and phantominator are optional: install them into a separate environment, or put
      them on PYTHONPATH; a missing tool is reported, not fatal.)

Each measurement runs in a fresh interpreter, one after the other, so the peak resident memory is
that tool's own and every tool sees the same machine load (printed with the table). The torso is
also voxelized with the previous two-pass voxelizer (commit ``9ad9f3e``, read from git at run
time, never part of the package) for a same-machine ratio; ``--skip-previous`` leaves it out
(about two minutes). Shepp–Logan: ODL and phantominator sample each voxel centre once; medphys is
timed with ``supersample=1`` (the same work) and ``supersample=2`` (partial volume: 8 samples per
voxel). A phantom made only of ellipsoids takes the voxelizer's column path (closed-form chords,
the same labels as brute force); the torso takes the cell hierarchy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Timing, machine, measure, run_isolated, table

_PREVIOUS = "9ad9f3e"  # the two-pass voxelizer (4³ blocks at their centres, fine pass per shape)


def _previous_voxelize():
    """The voxelizer of commit ``_PREVIOUS``, loaded beside the current one (benchmark only)."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(
        ["git", "show", f"{_PREVIOUS}:medphys/phantoms/_voxelize.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "_voxelize_previous.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("medphys.phantoms._voxelize_previous", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.voxelize


def one(tool: str, task: str) -> Timing:
    if task.startswith("torso"):
        from medphys import phantoms

        ph = phantoms.load("adult-male")
        n, fractions = {
            "torso-256": (256, False),
            "torso-256-fractions": (256, True),
            "torso-256-sparse": (256, "sparse"),
            "torso-512": (512, False),
            "torso-512-sparse": (512, "sparse"),
        }[task]
        # 256³ over the whole torso (384 × 256 × 589 mm: 1.5 × 1.0 × 2.3 mm voxels); 512³ halves them
        spacing = tuple(v * 256 / n for v in (1.5, 1.0, 2.3))
        kw = {
            "shape": (n, n, n),
            "spacing_mm": spacing,
            "center_mm": (0.0, 0.0, -110.0),
            "supersample": 2,
            "fractions": fractions,
        }
        if tool == "medphys":
            voxelize = phantoms.voxelize
            repeats = 0 if n == 512 else 3 if fractions is False else 1
        elif tool == "medphys-two-pass":
            voxelize = _previous_voxelize()
            repeats = 1
        else:
            raise ValueError(f"unknown tool {tool}")
        note = f"adult-male, {len(ph.shapes)} structures, {n}³ voxels of {spacing} mm, ss 2"
        last = []
        timing = measure(
            tool,
            task,
            lambda: last.append(voxelize(ph, **kw)) or last[-1],
            repeats=repeats,
            note=note,
        )
        f = last[-1].fractions
        if fractions == "sparse":
            held = sum(np.asarray(a).nbytes for a in (f.voxels, f.structure, f.fraction))
            dense = 4 * f.n_structures * n**3
            timing.note += (
                f", sparse fractions: {f.voxels.shape[0]} entries, {held / 2**20:.1f} MB "
                f"(+ labels as base) vs {dense / 2**30:.1f} GB dense"
            )
        elif fractions:
            timing.note += f", dense fractions {np.asarray(f).nbytes / 2**30:.2f} GB"
        return timing
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
                    shape=(n, n, n),
                    spacing_mm=fov / n,
                    supersample=k,
                    fractions=phantoms.Fractions.NONE,
                ),
                repeats=15,
                note=f"labels, supersample {k}",
            )
        if tool == "odl":
            import odl

            space = odl.uniform_discr([-1, -1, -1], [1, 1, 1], [n, n, n], dtype="float32")
            return measure(
                tool, task, lambda: odl.phantom.shepp_logan(space, modified=True), repeats=15
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
    parser.add_argument("--skip-previous", action="store_true")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asdict(one(*args.one))))
        return
    jobs = [
        ("medphys", "shepp-logan-128"),
        ("odl", "shepp-logan-128"),
        ("medphys-ss2", "shepp-logan-128"),
        ("phantominator", "shepp-logan-128"),
        ("medphys", "torso-256"),
        *([] if args.skip_previous else [("medphys-two-pass", "torso-256")]),
        ("medphys", "torso-256-fractions"),
        ("medphys", "torso-256-sparse"),
        *([] if args.skip_512 else [("medphys", "torso-512"), ("medphys", "torso-512-sparse")]),
    ]
    rows, loads = [], []
    for tool, task in jobs:
        loads.append(os.getloadavg()[0])
        try:
            rows.append(Timing(**run_isolated(__file__, "--one", tool, task)))
        except Exception as exc:  # a missing optional tool
            print(f"{tool} {task}: not measured ({type(exc).__name__})", file=sys.stderr)
    print(json.dumps(machine()))
    print(f"load average (1 min) before each job: {[round(x, 1) for x in loads]}")
    print(table(rows, baseline="odl"))
    base = {r.task: r.steady_s for r in rows if r.tool == "medphys-two-pass"}
    for r in rows:
        if r.tool == "medphys" and r.task in base:
            print(
                f"- {r.task}: {base[r.task] / r.steady_s:.1f}× faster than the two-pass voxelizer"
            )
    for r in rows:
        if r.note:
            print(f"- {r.tool} {r.task}: {r.note}")


if __name__ == "__main__":
    main()
