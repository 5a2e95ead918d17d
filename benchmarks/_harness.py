"""Shared timing and memory helpers for the benchmark scripts (never imported by medphys).

Each benchmark reports, per tool: the first call (compile + run for JAX), the steady-state median
of repeated calls, and the peak resident memory of the process while that tool ran.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Timing:
    tool: str
    task: str
    first_s: float
    steady_s: float
    repeats: int
    peak_rss_mb: float
    note: str = ""


def _block(x: Any) -> Any:
    try:
        import jax

        return jax.block_until_ready(x)
    except ImportError:  # pragma: no cover
        return x


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(
    tool: str, task: str, fn: Callable[[], Any], *, repeats: int = 5, note: str = ""
) -> Timing:
    """Time ``fn`` once (first call, includes compilation) and ``repeats`` more times (median)."""
    t0 = time.perf_counter()
    _block(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - t0)
    return Timing(
        tool,
        task,
        first,
        statistics.median(times) if times else first,
        repeats,
        peak_rss_mb(),
        note,
    )


def run_isolated(script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter (so peak memory is its own) and parse its JSON output."""
    out = subprocess.run(
        [sys.executable, script, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_backend"] = jax.default_backend()
        info["devices"] = [str(d) for d in jax.devices()]
    except ImportError:  # pragma: no cover
        pass
    return info


def table(rows: list[Timing], *, baseline: str | None = None) -> str:
    """A Markdown table; with ``baseline``, a ratio column (baseline steady time / this tool's)."""
    base = {r.task: r.steady_s for r in rows if r.tool == baseline}
    head = "| task | tool | first call (s) | steady (s) | peak RSS (MB) |"
    sep = "|---|---|---:|---:|---:|"
    if baseline:
        head += f" speed-up vs {baseline} |"
        sep += "---:|"
    lines = [head, sep]
    for r in rows:
        line = f"| {r.task} | {r.tool} | {r.first_s:.3f} | {r.steady_s:.3f} | {r.peak_rss_mb:.0f} |"
        if baseline:
            ratio = base.get(r.task)
            line += f" {ratio / r.steady_s:.2f}× |" if ratio else " – |"
        lines.append(line)
    return "\n".join(lines)


def dump(rows: list[Timing]) -> str:
    return json.dumps({"machine": machine(), "rows": [asdict(r) for r in rows]}, indent=2)
