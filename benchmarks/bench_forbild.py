"""FORBILD head phantom: the 2D slice at 512² side by side with ODL (``odl.phantom.forbild``), and
the 3D phantom at 128³ and 256³ (no Python tool draws the 3D FORBILD head; ODL's is 2D only).

Run:  PYTHONPATH=/work/bench-p2-libs python benchmarks/bench_forbild.py
      (ODL is optional: put it on PYTHONPATH; a missing tool is reported, not fatal.)

Each timing runs in a fresh interpreter, so the peak resident memory is that tool's own. ODL
evaluates the published table (ellipses, clip lines, densities added) at each pixel centre;
medphys is timed with ``supersample=1`` (the same work: one sample per pixel) and
``supersample=2`` (partial volume, 4 samples per pixel). Both draw the right ear with its air
cells and no resolution pattern (ODL's defaults). After the timings, the script compares the two
512² images pixel by pixel: the share of pixels whose density class (FORBILD's published
densities) is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Timing, machine, measure, run_isolated, table

N2 = 512  # 2D pixels per side over 256 mm (0.5 mm), ODL's [-12.8, 12.8] cm square

# FORBILD density (g/cm3, water composition) of each structure's region
DENSITY = {
    "background": 0.0,
    "skull": 1.8,
    "brain": 1.05,
    "occipital_crest": 1.8,
    "ventricle": 1.045,
    "frontal_sinus": 0.0,
    "eye_right": 1.06,
    "eye_left": 1.06,
    "lesion_hyperdense": 1.0525,
    "lesion_hypodense": 1.0475,
    "bone_plate": 1.8,
    "sinus_septum": 1.8,
    "sinus_floor_right": 1.8,
    "sinus_floor_left": 1.8,
    "orbit_bone_right": 1.8,
    "orbit_bone_left": 1.8,
    "hematoma": 1.055,
    "inner_ear": 1.8,
    "ear_cavities": 0.0,
}


def _medphys_2d(k: int):
    from medphys import phantoms

    ph = phantoms.load("forbild-head-2d")
    return lambda: ph.voxelize(
        shape=(N2, N2, 1), spacing_mm=256.0 / N2, supersample=k, fractions=phantoms.Fractions.NONE
    )


def _odl_2d():
    import odl

    space = odl.uniform_discr([-12.8, -12.8], [12.8, 12.8], [N2, N2], dtype="float32")
    return lambda: odl.phantom.forbild(space, scale="cm")


def one(tool: str, task: str) -> Timing:
    if task == f"forbild-2d-{N2}":
        if tool.startswith("medphys"):
            k = 2 if tool.endswith("ss2") else 1
            return measure(tool, task, _medphys_2d(k), repeats=5, note=f"labels, supersample {k}")
        if tool == "odl":
            return measure(tool, task, _odl_2d(), repeats=3, note="densities, one sample per pixel")
    if task.startswith("forbild-3d-"):
        from medphys import phantoms

        n = int(task.rsplit("-", 1)[1])
        ph = phantoms.load("forbild-head")
        return measure(
            tool,
            task,
            lambda: ph.voxelize(
                shape=(n, n, n),
                spacing_mm=256.0 / n,
                supersample=2,
                fractions=phantoms.Fractions.NONE,
            ),
            repeats=2,
            note=f"{len(ph.shapes)} structures (317 air cells in one), supersample 2",
        )
    raise ValueError(f"unknown tool/task {tool}/{task}")


def agreement() -> str:
    """Pixel-by-pixel density classes of medphys (supersample 1) and ODL at 512²."""
    lv = _medphys_2d(1)()
    table_ = np.array([DENSITY[n] for n in lv.names])
    ours = table_[np.asarray(lv.labels)[..., 0]]
    odl_img = np.asarray(_odl_2d()().data, dtype=np.float64)
    same = np.abs(ours - odl_img) < 1e-4
    return (
        f"medphys vs ODL density classes at {N2}²: {same.mean() * 100:.3f} % of pixels agree "
        f"({int((~same).sum())} differ)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", nargs=2, metavar=("TOOL", "TASK"))
    parser.add_argument("--skip-256", action="store_true")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asdict(one(*args.one))))
        return
    jobs = [
        ("medphys", f"forbild-2d-{N2}"),
        ("medphys-ss2", f"forbild-2d-{N2}"),
        ("odl", f"forbild-2d-{N2}"),
        ("medphys-ss2", "forbild-3d-128"),
        *([] if args.skip_256 else [("medphys-ss2", "forbild-3d-256")]),
    ]
    rows = []
    for tool, task in jobs:
        try:
            rows.append(Timing(**run_isolated(__file__, "--one", tool, task)))
        except Exception as exc:  # a missing optional tool
            print(f"{tool} {task}: not measured ({type(exc).__name__})", file=sys.stderr)
    print(json.dumps({**machine(), "loadavg": os.getloadavg()}))
    print(table(rows, baseline="odl"))
    for r in rows:
        if r.note:
            print(f"- {r.tool} {r.task}: {r.note}")
    try:
        print(agreement())
    except ImportError:
        print("agreement with ODL: not measured (ODL missing)")


if __name__ == "__main__":
    main()
