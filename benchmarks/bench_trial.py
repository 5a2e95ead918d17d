"""Trial (a) end to end on each engine, a per-stage breakdown, and observer cost per 1,000 ROIs.

Run:  python benchmarks/bench_trial.py [--pairs 100] [--skip-engines]

1. `medphys trial --config ct-liver-lesion-dose` (``pairs`` signal-present/absent pairs, so
   ``2 × pairs`` cases) in a fresh process per engine: in process (1 worker), a pool of 2 worker
   processes, and a local Ray cluster with 2 CPUs. Wall time and the peak resident memory of the
   whole process tree (driver, workers, Ray's own processes), sampled every 0.2 s; the three
   ``results.json`` must be byte-identical.
2. Where one case's time goes (in this process, after a warm-up case): population draw and
   voxelization, lesion placement, lesion insertion and re-voxelization, each arm's CT simulation
   and reconstruction, ROI extraction; and the observer analysis of the whole trial.
3. Observer cost per 1,000 ROIs (500 present + 500 absent, white-noise ROIs with a Gaussian blob):
   CHO with 5 Laguerre–Gauss channels at 64² and 32³, train and score, compile separately.

VICTRE, the reference trial, takes hours of GPU Monte Carlo per case and has no engine to compare
with on this machine; the ratios here are between medphys's own engines.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants (MB), from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_engine(pairs: int, engine: str, workers: int, out: Path) -> dict[str, float | str]:
    cmd = [
        sys.executable, "-m", "medphys.cli", "trial", "--config", "ct-liver-lesion-dose",
        "--out", str(out), "--pairs", str(pairs), "--engine", engine, "--workers", str(workers),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_mb(proc.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    stdout = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stdout}")
    digest = hashlib.sha256((out / "results.json").read_bytes()).hexdigest()[:12]
    return {"wall_s": wall, "peak_mb": peak, "results": digest, "summary": stdout.strip()}


def stages(pairs_for_analysis: int) -> dict[str, float]:
    """Seconds per stage of one case (median over 3 cases after a warm-up), and the analysis."""
    import statistics

    import jax
    import numpy as np

    from medphys import phantoms
    from medphys.pipelines import case_key, extract_roi, load_trial, place_lesion, stream
    from medphys.pipelines._provenance import definition
    from medphys.pipelines._trial import TrialJob, analyse
    from medphys.simulators import ct, xray

    config = load_trial("ct-liver-lesion-dose")
    defs = {f"phantom/{n}": definition("phantom", n) for n in config.phantom.name}
    defs.update({f"protocol/{a.name}": definition("protocol", a.protocol) for a in config.arms})
    recipe = TrialJob(config, defs, "bench").recipe()
    g = recipe.grid

    def voxelize(ph):
        return phantoms.voxelize(
            ph,
            shape=g.shape,
            spacing_mm=g.spacing_mm,
            center_mm=g.center_mm,
            supersample=g.supersample,
        )

    rows: list[dict[str, float]] = []
    with jax.enable_x64(False):
        for index in range(4):
            key = case_key(config.seed, index)
            t: dict[str, float] = {}
            t0 = time.perf_counter()
            base = recipe.family(index)
            person = phantoms.apply(phantoms.sample_params(stream(key, "phantom"), base), base)
            labels = voxelize(person)
            t["population draw + voxelize"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            lesion = place_lesion(stream(key, "lesion"), labels, recipe.lesion)
            t["lesion placement"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            spec = recipe.lesion
            with_lesion = phantoms.insert_lesion(
                person,
                organ=spec.organ,
                shape=phantoms.SphericalLesion(spec.radius_mm),
                material=spec.material,
                center_mm=lesion["center_mm"],
            )
            labels = voxelize(with_lesion)
            t["lesion insertion + voxelize"] = time.perf_counter() - t0
            for arm in recipe.arms:
                t0 = time.perf_counter()
                scan = xray.simulate(stream(key, arm.stream_name), labels, arm.protocol)
                image = ct.reconstruct(scan, arm.protocol, like=labels)
                jax.block_until_ready(image.data)
                t[f"CT arm {arm.name}"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            extract_roi(image, lesion["center_voxel"], config.observer.roi_px)
            t["ROI extraction"] = time.perf_counter() - t0
            rows.append(t)
    out = {name: statistics.median(r[name] for r in rows[1:]) for name in rows[0]}
    out["one case, first (compile)"] = sum(rows[0].values())
    out["one case, steady"] = sum(out[name] for name in rows[0])
    rng = np.random.default_rng(0)
    shape = (config.observer.roi_px, config.observer.roi_px)
    records = {
        (i, present): {
            "rois": {a.name: rng.normal(size=shape).astype(np.float32) for a in recipe.arms}
        }
        for i in range(pairs_for_analysis)
        for present in (True, False)
    }
    analyse(config.model_copy(update={"pairs": pairs_for_analysis}), records)  # compile
    t0 = time.perf_counter()
    analyse(config.model_copy(update={"pairs": pairs_for_analysis}), records)
    out[f"observer analysis ({pairs_for_analysis} pairs, 2 arms)"] = time.perf_counter() - t0
    return out


def observer_cost() -> list[tuple[str, float, float, float]]:
    """(task, first call s, train steady s, score steady s) per 1,000 ROIs."""
    import jax
    import numpy as np

    from medphys import observers

    rows = []
    for shape in ((64, 64), (32, 32, 32)):
        rng = np.random.default_rng(1)
        grid = np.indices(shape, dtype=np.float64)
        r2 = sum((grid[a] - (n - 1) / 2) ** 2 for a, n in enumerate(shape))
        blob = np.exp(-r2 / (2 * 3.0**2)).astype(np.float32)
        sp = (rng.normal(size=(500, *shape)) + 0.5 * blob).astype(np.float32)
        sa = rng.normal(size=(500, *shape)).astype(np.float32)
        channels = observers.laguerre_gauss(shape, n_channels=5, width_px=8.0)
        t0 = time.perf_counter()
        obs = observers.train("cho", sp, sa, channels=channels)
        jax.block_until_ready(observers.score(obs, sa))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(3):
            obs = observers.train("cho", sp, sa, channels=channels)
            jax.block_until_ready(obs.weights)
        train = (time.perf_counter() - t0) / 3
        images = np.concatenate([sp, sa])
        t0 = time.perf_counter()
        for _ in range(3):
            jax.block_until_ready(observers.score(obs, images))
        score = (time.perf_counter() - t0) / 3
        rows.append(("CHO-LG 5 ch " + "×".join(map(str, shape)), first, train, score))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--skip-engines", action="store_true")
    args = parser.parse_args()
    load_start = os.getloadavg()
    print(f"machine: {machine()}")
    print(f"load average at start: {load_start}")
    if not args.skip_engines:
        print(
            f"\n### Trial (a), {args.pairs} pairs ({2 * args.pairs} cases), fresh process per engine\n"
        )
        print(
            "| engine | wall (s) | peak RSS, process tree (MB) | wall vs 1 worker | results.json |"
        )
        print("|---|---:|---:|---:|---|")
        base = None
        digests = set()
        with tempfile.TemporaryDirectory() as tmp:
            for engine, workers in (("local", 1), ("local", 2), ("ray", 2)):
                r = run_engine(args.pairs, engine, workers, Path(tmp) / f"{engine}{workers}")
                base = base or r["wall_s"]
                digests.add(r["results"])
                print(
                    f"| {engine}, {workers} worker{'s' if workers > 1 else ''} | {r['wall_s']:.1f} | "
                    f"{r['peak_mb']:.0f} | {base / r['wall_s']:.2f}× | {r['results']} |",
                    flush=True,
                )
            print(f"\nlast run's summary:\n{r['summary']}")
        print(f"\nidentical results on every engine: {len(digests) == 1}")
    print("\n### One case of trial (a), per stage (s; median of 3 after a warm-up case)\n")
    print("| stage | seconds |")
    print("|---|---:|")
    for name, seconds in stages(args.pairs).items():
        print(f"| {name} | {seconds:.3f} |")
    print("\n### Observer cost per 1,000 ROIs (500 + 500)\n")
    print("| observer | first call (s) | train (s) | score (s) |")
    print("|---|---:|---:|---:|")
    for name, first, train, score in observer_cost():
        print(f"| {name} | {first:.3f} | {train:.4f} | {score:.4f} |")
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
