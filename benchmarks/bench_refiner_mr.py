"""Physics-guided sim-to-real MR refiner: latency, training cost, and physics / realism metrics
with and without the physics terms and the data-consistency layer, on the same key and data.

Run:

    python benchmarks/bench_refiner_mr.py [--quick] [--steps N] [--json out.json]

Baseline: the unrefined simulated images (for the metrics) and the same refiner trained with
``RefineConfig.without_physics()`` (physics weights at zero, no data-consistency layer; same key,
data and steps). No external tool refines simulated MR under a k-space constraint, so there is no
peer here.

1. Inference latency, per 256² slice: the `RefineConfig()` network for MR (width 16, depth 2, 2
   blocks) at batch 1 and 8, and `neural.refine_mr` on a simulated 256 × 256 × 8 scan of the
   ``mr-t1-se-r2`` protocol (4 coils, 2x), normalisation, network and hard data consistency
   (CG-SENSE object phase, 20 iterations) included. First call and the median of ``--repeats``.
2. Training cost: the `train_refiner` loop (`prepare_refine`, ``problem.init``, the jitted
   ``RefineProblem.step``), compilation apart, steady step × 1000.
3. Data: `neural.simulate_mr` of ``adult-head`` (key 0) with ``mr-t1-se-r2`` (T1 spin echo,
   2x equispaced, 24 calibration lines), 8 training + 4 held-out cases of 128 × 128 × 2 at
   1.6 × 1.6 × 5 mm (centre z = 20 mm); real patches (64², 128 for training, key 1; 128 others
   for the audit and the metrics, key 7) from the axial slices of the MNI152 2009 T1 template
   that the ``nilearn`` wheel ships, divided by its reference intensity. ``--quick``: the slow
   test's setting (4 + 1 cases of 64 × 64 × 2 at 3.2 mm, 8 calibration lines, 32² patches, 200
   steps). Both refiners: `RefineConfig(steps=--steps)` (1,500 full, as the CT benchmark), key 2.
4. Metrics on the held-out cases, images over each case's reference intensity
   (`metrics.mr_reference`): every `audit.mr_physics_audit` criterion (with ``real=``);
   `metrics.intensity_wasserstein` of the pixels above 0.1 to the real patches'; KID
   (`metrics.kid`, subsets of 50) between 32² crops of the images and 32² real crops in the
   features of a `neural.train_encoder` encoder trained here (key 3) on real and
   simulated-training crops.
5. Peak RSS of the process.

The real pool is one template (an average of 152 brains): training and audit patches are
different draws of the same volume, so this measures the physics constraint and the direction
of the statistics, not generalisation to unseen patients.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import machine, peak_rss_mb
from bench_refiner import _timed, train

KID_PATCH = 32


def _protocol(acs_lines: int):
    from medphys import simulators
    from medphys.simulators import mr

    protocol = simulators.load("mr-t1-se-r2")
    return dataclasses.replace(protocol, sampling=mr.EquispacedMask.create(2, acs_lines=acs_lines))


def _mni_slices():
    from nilearn.datasets import MNI152_FILE_PATH

    from medphys import io, neural

    return neural.real_mr_slices(io.load_real_images([MNI152_FILE_PATH], modality="MR"))


def latency(size: int, depth: int, repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from medphys import neural, phantoms
    from medphys.simulators import mr

    base = neural.RefineConfig()
    refiner = neural.Refiner(
        jax.random.key(0), width=base.width, depth=base.depth, blocks=base.blocks, modality="mr"
    )
    rng = np.random.default_rng(0)
    apply = jax.jit(lambda m, x: m(x))
    rows = []
    for batch in (1, 8):
        x = jnp.asarray(rng.uniform(0, 1, (batch, size, size)), jnp.float32)
        timing = _timed(lambda x=x: apply(refiner, x), repeats)
        rows.append(_latency_row(f"network, {size}² slice, batch {batch}", *timing, batch))
    labels = phantoms.voxelize(
        phantoms.load("adult-head"),
        shape=(size, size, depth),
        spacing_mm=(0.9, 0.9, 5.0),
        center_mm=(0.0, 0.0, 20.0),
    )
    scan = mr.simulate(jax.random.key(1), labels, _protocol(24))
    timing = _timed(lambda: neural.refine_mr(refiner, scan), repeats)
    task = f"refine_mr, {size}² × {depth} scan, 4 coils, 2x, data consistency"
    rows.append(_latency_row(task, *timing, depth))
    return rows


def _latency_row(task: str, first: float, steady: float, slices: int) -> dict:
    row = {
        "part": "latency",
        "task": task,
        "first_s": first,
        "steady_s": steady,
        "per_slice_ms": 1e3 * steady / slices,
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _crops(vols: np.ndarray) -> np.ndarray:
    """Nine overlapping 32² crops of every slice of ``(cases, x, y, z)`` images."""
    s = np.moveaxis(np.asarray(vols, np.float32), -1, 1).reshape(-1, *vols.shape[1:3])
    n = s.shape[1]
    starts = np.linspace(n // 8, n - n // 8 - KID_PATCH, 3).astype(int)
    return np.concatenate(
        [s[:, a : a + KID_PATCH, b : b + KID_PATCH] for a in starts for b in starts]
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from medphys import audit, metrics, neural

    if args.quick:
        cases, held, shape, spacing, acs, patch = 4, 1, (64, 64, 2), 3.2, 8, 32
        steps = args.steps or 200
    else:
        cases, held, shape, spacing, acs, patch = 8, 4, (128, 128, 2), 1.6, 24, 64
        steps = args.steps or 1500
    result: dict = {"machine": machine(), "quick": args.quick, "steps": steps}
    result["latency"] = latency(256, 8, args.repeats)

    t0 = time.perf_counter()
    sim = neural.simulate_mr(
        jax.random.key(0),
        "adult-head",
        _protocol(acs),
        cases=cases + held,
        shape=shape,
        spacing_mm=(spacing, spacing, 5.0),
        center_mm=(0.0, 0.0, 20.0),
    )
    slices = _mni_slices()
    real = neural.real_patches(
        jax.random.key(1), slices, spacing_mm=sim.spacing_mm, size=patch, count=128, low=0.1
    )
    audit_real = neural.real_patches(
        jax.random.key(7), slices, spacing_mm=sim.spacing_mm, size=patch, count=128, low=0.1
    )
    result["data_s"] = time.perf_counter() - t0
    train_set, test = sim.take(np.arange(cases)), sim.take(np.arange(cases, cases + held))

    real_crops = audit_real[:, :KID_PATCH, :KID_PATCH]
    t0 = time.perf_counter()
    encoder = neural.train_encoder(
        jax.random.key(3),
        np.concatenate([real[:, :KID_PATCH, :KID_PATCH], _crops(np.asarray(train_set.image))]),
        progress=False,
    )
    result["encoder_s"] = time.perf_counter() - t0
    real_features = neural.embed(encoder, real_crops)
    tissue_real = audit_real[audit_real > 0.1]
    before = np.asarray(test.image)
    tissue = before > 0.1

    def realism(images: np.ndarray) -> dict:
        feats = neural.embed(encoder, _crops(images))
        size = min(50, len(real_crops), feats.shape[0])
        kid, kid_std = metrics.kid(real_features, feats, subset_size=size, key=jax.random.key(0))
        w1 = metrics.intensity_wasserstein(images[tissue], tissue_real)
        return {"kid": float(kid), "kid_std": float(kid_std), "wasserstein": float(w1)}

    scans, labels = test.results(), np.asarray(test.labels)
    scale = np.asarray(test.scale)[:, None, None, None]
    rows = [{"variant": "simulated", **realism(before)}]
    config = neural.RefineConfig(steps=steps)
    training = []
    for label, cfg in (("physics", config), ("no physics", config.without_physics())):
        refiner, row = train(train_set, real, cfg, jax.random.key(2), label)
        training.append(row)
        t0 = time.perf_counter()
        refined = np.stack(
            [
                np.asarray(neural.refine_mr(refiner, s, data_consistency=cfg.data_consistency))
                for s in scans
            ]
        )
        apply_s = time.perf_counter() - t0
        report = audit.mr_physics_audit(scans, labels, refined, real=audit_real)
        rows.append(
            {
                "variant": label,
                "passed": report.passed,
                "criteria": {c.name: [c.value, c.passed, c.detail] for c in report.criteria},
                "apply_s": apply_s,
                **realism(refined / scale),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    result["training"] = training
    result["metrics"] = rows
    result["peak_rss_mb"] = peak_rss_mb()
    print(summarise(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def summarise(result: dict) -> str:
    lines = [f"machine: {result['machine']}", "", "| latency | first s | steady s | ms/slice |"]
    lines.append("|---|---:|---:|---:|")
    for r in result["latency"]:
        lines.append(
            f"| {r['task']} | {r['first_s']:.2f} | {r['steady_s']:.3f} | {r['per_slice_ms']:.1f} |"
        )
    lines += ["", "| training | compile s | step ms | per 1000 steps s |", "|---|---:|---:|---:|"]
    for r in result["training"]:
        lines.append(
            f"| {r['variant']} | {r['compile_s']:.1f} | {1e3 * r['steady_step_s']:.0f} | "
            f"{r['per_1000_steps_s']:.0f} |"
        )
    lines += [
        "",
        "| images | audit | k-space ratio | max shift | Dice ret. | NPS dist. | KID | W1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["metrics"]:
        c = r.get("criteria", {})

        def v(name: str, fmt: str, c=c) -> str:
            return format(c[name][0], fmt) if name in c else "–"

        verdict = "–" if "passed" not in r else ("pass" if r["passed"] else "FAIL")
        lines.append(
            f"| {r['variant']} | {verdict} | {v('kspace_residual', '.3f')} | "
            f"{v('label_intensity_shift', '.1%')} | {v('dice_retention', '.3f')} | "
            f"{v('nps_distance_to_real', '.3f')} | {r['kid']:.4f} ± {r['kid_std']:.4f} | "
            f"{r['wasserstein']:.4f} |"
        )
    lines.append(f"\npeak RSS {result['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
