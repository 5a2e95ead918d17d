"""The dataset job end to end: wall time per stage and peak memory, on its embedded default.

Run:  python benchmarks/bench_generate.py [--cases N]

Stages are timed inside one process: the first case includes JAX compilation, later cases are
steady state. Peak memory is the process's peak resident set size. There is no competing tool for
the whole job (XCAT + a CT simulator + an MR simulator would be three licensed/separate programs);
stage-level comparisons live in the other benchmark scripts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax
import numpy as np
from _harness import machine, peak_rss_mb

from medphys import phantoms
from medphys.pipelines import GenerateJob, case_key, definitions, load_config, stream
from medphys.simulators import ct, mr, xray


def stage_times(cases: int) -> list[dict[str, float]]:
    """The job's stages for each case, on the job's own recipe and named random streams."""
    config = load_config()
    recipe = GenerateJob(config, definitions(config), "bench").recipe()
    ct_protocol, mr_protocol = recipe.arm("ct").protocol, recipe.arm("mr").protocol
    g = recipe.grid
    out = []
    for index in range(cases):
        key = case_key(config.seed, index)
        t = {}
        base = recipe.family(index)
        t0 = time.perf_counter()
        labels = phantoms.voxelize(
            phantoms.apply(phantoms.sample_params(stream(key, "phantom"), base), base),
            shape=g.shape,
            spacing_mm=g.spacing_mm,
            center_mm=g.center_mm,
            supersample=g.supersample,
        )
        t["phantom_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scan = xray.simulate(stream(key, "arm/ct"), labels, ct_protocol)
        image = ct.reconstruct(scan, ct_protocol, like=labels)
        jax.block_until_ready(image.data)
        t["ct_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = mr.simulate(stream(key, "arm/mr"), labels, mr_protocol)
        np.asarray(result.image.data)
        t["mr_s"] = time.perf_counter() - t0
        out.append(t)
    return out


def whole_job(cases: int) -> tuple[float, float]:
    """`medphys generate` in a fresh process: wall time (s) and that process's peak RSS (MB)."""
    import resource
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "medphys.cli",
            "generate",
            "--out",
            str(Path(tmp) / "out"),
            "--cases",
            str(cases),
        ]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t0
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=4)
    args = parser.parse_args()
    wall, rss = whole_job(args.cases)
    print(f"machine: {machine()}")
    print(
        f"whole job: `medphys generate --cases {args.cases}` in a fresh process: {wall:.1f} s wall, "
        f"peak RSS {rss:.0f} MB\n"
    )
    times = stage_times(args.cases)
    print("| stage | first case (s, incl. compile) | later cases, median (s) |")
    print("|---|---:|---:|")
    for stage in ("phantom_s", "ct_s", "mr_s"):
        later = [t[stage] for t in times[1:]] or [times[0][stage]]
        print(f"| {stage[:-2]} | {times[0][stage]:.2f} | {statistics.median(later):.2f} |")
    print(f"\nin-process peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
