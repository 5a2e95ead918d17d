"""Smoke check of `benchmarks/bench_refiner.py`: its whole path at the ``--tiny`` setting
(3 + 1 cases of 32 × 32 × 2 at 6.4 mm, 60 views, 4 training steps, 64² latency slices, a 32³
volume, a 10-step encoder), about 80 s on the 2-core CPU (mostly the compilation of the two
training steps). The JSON it writes must have every section and finite numbers, and the
unrefined images must pass the physics audit exactly (ratio 1, no shift, retention 1).

Run: ``python benchmarks/test_refiner_smoke.py`` (or ``pytest benchmarks/test_refiner_smoke.py``;
the default suite collects ``tests/`` only). Exits non-zero when a check fails.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARGS = (
    "--tiny",
    "--repeats",
    "2",
    "--slice",
    "64",
    "--volume",
    "32",
    "--encoder-steps",
    "10",
)


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        png = Path(tmp) / "examples.png"
        subprocess.run(
            [
                sys.executable,
                str(HERE / "bench_refiner.py"),
                *ARGS,
                "--json",
                str(out),
                "--png",
                str(png),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.read_text())
        result["_png_bytes"] = png.stat().st_size
    return result


def check(result: dict) -> list[str]:
    failures = []
    if len(result["latency"]) != 6:
        failures.append(f"latency rows: {len(result['latency'])} (expected 6)")
    for r in result["latency"] + result["training"]:
        for k, v in r.items():
            if isinstance(v, float) and not (math.isfinite(v) and v >= 0):
                failures.append(f"{r.get('task', r.get('variant'))}: {k} = {v}")
    if [r["variant"] for r in result["training"]] != ["with physics", "without physics"]:
        failures.append("training rows are not with/without physics")
    m = result["metrics"]
    for name in ("simulated", "refined with physics", "refined without physics"):
        if name not in m or not math.isfinite(m[name]["kid"]) or not m[name]["w1_soft_hu"] >= 0:
            failures.append(f"metrics of {name!r} missing or not finite")
    sim = m["simulated"]["criteria"]
    exact = {"measurement_residual": 1.0, "label_hu_shift": 0.0, "dice_retention": 1.0}
    for k, v in exact.items():
        if abs(sim[k]["value"] - v) > 1e-6:
            failures.append(f"unrefined images: {k} = {sim[k]['value']} (expected {v})")
    if not m["simulated"]["audit_passed"]:
        failures.append("unrefined images fail the physics audit")
    if result["_png_bytes"] < 1000:
        failures.append("no figure written")
    return failures


def test_refiner_benchmark_quick_smoke() -> None:
    failures = check(run())
    assert not failures, failures


if __name__ == "__main__":
    t0 = time.perf_counter()
    problems = check(run())
    for p in problems:
        print("FAIL ", p)
    print(
        f"{'FAIL' if problems else 'PASS'} bench_refiner --tiny in {time.perf_counter() - t0:.0f} s"
    )
    raise SystemExit(1 if problems else 0)
