"""Smoke check of `benchmarks/bench_biomech.py`: its whole path at ``--tiny`` (a 495-dof
reference, a 105-dof FE mesh, 8 mm quadrature, 16 × 2 networks, 50 steps, 5 cases), about 30 s on
the 2-core CPU. The JSON it writes must have every section with finite numbers, and the FE
reference must be finer than the per-case mesh.

Run: ``python benchmarks/test_biomech_smoke.py`` (or ``pytest benchmarks/test_biomech_smoke.py``;
the default suite collects ``tests/`` only). Exits non-zero when a check fails.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "biomech.json"
        subprocess.run(
            [sys.executable, str(HERE / "bench_biomech.py"), "--tiny", "--out", str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.read_text())


def check(result: dict) -> list[str]:
    failures = []
    for section in ("reference", "fe", "single", "parametric", "ratios", "load", "machine"):
        if section not in result:
            failures.append(f"missing section {section!r}")
    if failures:
        return failures
    numbers = [
        *result["reference"]["seconds"],
        *(r[k] for r in result["fe"] for k in ("seconds_per_case", "error")),
        *(result["single"][k] for k in ("train_s", "evaluate_s", "error")),
        result["parametric"]["train_s"],
        result["parametric"]["evaluate_s_per_case"],
        *result["parametric"]["errors"].values(),
        *result["ratios"].values(),
    ]
    for v in numbers:
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            failures.append(f"a number is not finite and non-negative: {v!r}")
    if not all(r["dofs"] < result["reference"]["dofs"] for r in result["fe"]):
        failures.append("a per-case FE mesh is not coarser than the reference")
    return failures


def test_bench_biomech_tiny() -> None:
    failures = check(run())
    assert not failures, failures


if __name__ == "__main__":
    problems = check(run())
    for p in problems:
        print("FAIL:", p)
    sys.exit(1 if problems else 0)
