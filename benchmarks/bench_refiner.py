"""Physics-guided sim-to-real CT refiner: latency, training cost, and physics / realism metrics
with and without the physics terms, on the same key and data.

Run:

    python benchmarks/bench_refiner.py [--quick | --tiny] [--steps N] [--json out.json]

Baseline: the unrefined simulated images (for the metrics) and the same refiner trained with
``RefineConfig.without_physics()`` (the four physics weights at zero; same key, data, steps).
No external tool does physics-constrained refinement of simulated CT, so there is no peer here.

1. Inference latency of `neural.Refiner` (2-D, identity-initialised; latency does not depend on
   the weights): the `RefineConfig()` architecture (width 16, depth 2, 2 blocks) and a wider one
   (width 32), per 256² slice at batch 1 and batch 8 (time / 8), and per 128³ volume through
   `neural.refine` (128 slices of 128², chunks of 8). First call (compilation) separately from
   the steady state (median of ``--repeats`` calls after it, `block_until_ready`).
2. Training cost: `prepare_refine` → ``problem.init`` → ``jax.jit(RefineProblem.step)``, the loop
   `train_refiner` runs; compilation is timed with ``.lower().compile()``, the steady step is the
   median step time (host sync on the terms every step, as `train_refiner`) × 1000.
3. Data (full run): `neural.simulate_ct` of ``adult-head`` (key 0), 8 training + 4 held-out
   cases of 128 × 128 × 2 at 1.6 × 1.6 × 5 mm (FOV 205 mm, centre z = 20 mm), a 180-view
   full-turn fan-beam version of ``ct-chest-120kvp`` at the same total mAs; 128 real 64²
   patches at 1.6 mm (`neural.real_patches`, key 1) from the real CT slices ``693_UNCR.dcm``
   (``pydicom-data``) and ``CT_small.dcm`` (pydicom). ``--quick``: the slow test's setting
   (4 + 1 cases of 64 × 64 × 2 at 3.2 mm, 120 views, 32² patches); ``--tiny``: the smoke
   setting of `test_refiner_smoke.py`. At 1.6 mm ``CT_small.dcm`` (85 mm field, 53 px) is too
   small for 64² patches, so every refiner patch comes from ``693_UNCR.dcm``; the 32² KID
   patches come from both. Both refiners: `RefineConfig(steps=--steps)` (1,500 full, 200
   ``--quick``; defaults otherwise), key 2.
4. Metrics on the held-out cases: every `audit.physics_audit` criterion (with ``real=``);
   `metrics.intensity_wasserstein` of the soft-tissue pixels (−100 … 200 HU in the simulated
   image) to the real patches' soft-tissue pixels; KID (`metrics.kid`) between 32² patches of
   the images and real 32² patches in the features of a `neural.train_encoder` encoder trained
   here (key 3) on real and simulated-training-case patches.
5. Peak RSS of the process.

Writes ``benchmarks/out/refiner_examples.png`` (simulated / refined with physics / refined
without physics / a real patch, −50 … 120 HU; second row: refined − simulated, ±40 HU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import machine, peak_rss_mb

HERE = Path(__file__).resolve().parent
TARGET_MS = 100.0  # latency target per 256² slice on the 2-core CPU
KID_PATCH = 32


def _load() -> str:
    with open("/proc/loadavg", encoding="utf-8") as fh:
        return " ".join(fh.read().split()[:3])


def _protocol(views: int):
    """``ct-chest-120kvp`` with ``views`` views over 360° at the same total mAs (as the test)."""
    from medphys import simulators
    from medphys.simulators import xray

    return xray.with_views(simulators.load("ct-chest-120kvp"), views)


def _real_slices():
    import data_store  # the pydicom-data wheel
    from pydicom.data import get_testdata_file

    from medphys import io

    files = [Path(data_store.__file__).parent / "data" / "693_UNCR.dcm"]
    files.append(get_testdata_file("CT_small.dcm"))
    images = io.load_real_images(files, modality="CT")
    return [(a, s) for a, s, _ in images.slices()]


def _timed(fn, repeats: int) -> tuple[float, float]:
    """(first call, median of ``repeats`` later calls), seconds, blocked until ready."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


# ------------------------------------------------------------------------------------- latency


def latency(widths: tuple[int, ...], size: int, volume: int, repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from medphys import neural

    base = neural.RefineConfig()
    rng = np.random.default_rng(0)
    rows = []
    for width in widths:
        refiner = neural.Refiner(
            jax.random.key(0), dim=2, width=width, depth=base.depth, blocks=base.blocks
        )
        apply = jax.jit(lambda m, x: m(x))
        for batch in (1, 8):
            x = jnp.asarray(rng.normal(40, 30, (batch, size, size)), jnp.float32)
            first, steady = _timed(lambda x=x, r=refiner, f=apply: f(r, x), repeats)
            rows.append(
                {
                    "part": "latency",
                    "width": width,
                    "task": f"{size}² slice, batch {batch}",
                    "first_s": first,
                    "steady_s": steady,
                    "per_slice_ms": 1e3 * steady / batch,
                    "repeats": repeats,
                    "peak_rss_mb": peak_rss_mb(),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        vol = jnp.asarray(rng.normal(40, 30, (volume, volume, volume)), jnp.float32)
        first, steady = _timed(lambda r=refiner, v=vol: neural.refine(r, v), repeats)
        rows.append(
            {
                "part": "latency",
                "width": width,
                "task": f"{volume}³ volume (neural.refine, chunks of 8)",
                "first_s": first,
                "steady_s": steady,
                "per_slice_ms": 1e3 * steady / volume,
                "repeats": repeats,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------------------------ training


def train(train_set, real, cfg, key, label: str) -> tuple[object, dict]:
    """The `train_refiner` loop, with the compilation and every step timed."""
    import jax

    from medphys import neural
    from medphys.neural._refine import TERMS  # the names of the step's term values

    t0 = time.perf_counter()
    problem = neural.prepare_refine(train_set, real, config=cfg)
    state = problem.init(key)
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    step = jax.jit(neural.RefineProblem.step, donate_argnums=1).lower(problem, state).compile()
    compile_s = time.perf_counter() - t0
    times, history = [], []
    for _ in range(cfg.steps):
        t0 = time.perf_counter()
        state, values = step(problem, state)
        history.append(np.asarray(values, np.float64))
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times[1:] if len(times) > 1 else times)
    losses = np.asarray(history)
    tail = losses[-max(1, len(losses) // 10) :].mean(axis=0)
    row = {
        "part": "training",
        "variant": label,
        "steps": cfg.steps,
        "prepare_s": prepare_s,
        "compile_s": compile_s,
        "first_step_s": times[0],
        "steady_step_s": steady,
        "per_1000_steps_s": 1000 * steady,
        "total_s": prepare_s + compile_s + sum(times),
        "final_terms": dict(zip(TERMS, map(float, tail), strict=True)),
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return problem.refiner(state), row


# ------------------------------------------------------------------------------------- metrics


def _slices(vols: np.ndarray) -> np.ndarray:
    """``(cases, x, y, z)`` → ``(cases·z, x, y)``."""
    v = np.asarray(vols, np.float32)
    return np.moveaxis(v, -1, 1).reshape(-1, *v.shape[1:3])


def _patch_corners(sim_slices: np.ndarray, size: int, count: int, seed: int) -> np.ndarray:
    """``count`` (slice, x0, y0) corners of ``size``² windows with ≥ 50 % pixels above −100 HU in
    the simulated slice (the same windows are cut from every version of the images)."""
    from scipy import ndimage

    ok = []
    r = size // 2
    for i, s in enumerate(sim_slices):
        tissue = ndimage.uniform_filter((s > -100).astype(np.float64), size, mode="constant")
        valid = np.zeros(s.shape, bool)
        valid[r : s.shape[0] - (size - r) + 1, r : s.shape[1] - (size - r) + 1] = True
        for cx, cy in np.argwhere(valid & (tissue >= 0.5)):
            ok.append((i, cx - r, cy - r))
    ok = np.asarray(ok)
    rng = np.random.default_rng(seed)
    return ok[rng.integers(len(ok), size=count)]


def _cut(slices: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    return np.stack([slices[i, x : x + size, y : y + size] for i, x, y in corners])


def metrics_table(test, versions: dict, real: np.ndarray, real_kid: list, enc_info: dict) -> dict:
    import jax

    from medphys import audit, metrics, neural

    sim = np.asarray(test.hu)
    soft = (sim > -100) & (sim < 200)
    real_soft = real[(real > -100) & (real < 200)]
    sim_sl = _slices(sim)
    corners = _patch_corners(sim_sl, KID_PATCH, enc_info["kid_patches"], seed=4)
    encoder = enc_info["encoder"]
    real_a, real_b = (np.asarray(neural.embed(encoder, r)) for r in real_kid)
    size = enc_info["kid_subset"]
    kid_key = jax.random.key(5)
    out = {}
    for name, hu in versions.items():
        rep = audit.physics_audit(test, hu, real=real)
        crit = {c.name: {"value": c.value, "passed": bool(c.passed)} for c in rep.criteria}
        crit["nps_distance_to_real"]["detail"] = rep.criterion("nps_distance_to_real").detail
        w1 = float(metrics.intensity_wasserstein(np.asarray(hu)[soft], real_soft))
        feats = np.asarray(neural.embed(encoder, _cut(_slices(hu), corners, KID_PATCH)))
        k_mean, k_std = metrics.kid(real_a, feats, subset_size=size, key=kid_key)
        out[name] = {
            "audit_passed": bool(rep.passed),
            "criteria": crit,
            "label_shifts_hu": {str(k): v for k, v in rep.label_shifts_hu.items()},
            "soft_labels": list(rep.soft_labels),
            "w1_soft_hu": w1,
            "kid": float(k_mean),
            "kid_std": float(k_std),
        }
        print(name, json.dumps(out[name]), file=sys.stderr, flush=True)
    k_mean, k_std = metrics.kid(real_a, real_b, subset_size=size, key=kid_key)
    out["real (second draw)"] = {"kid": float(k_mean), "kid_std": float(k_std)}
    return out


def encoder_for_kid(key, real_pool, train_set, *, steps: int, count: int):
    """SimCLR encoder on real + simulated-training 32² patches (equal numbers)."""
    import jax

    from medphys import neural

    sim_sl = _slices(np.asarray(train_set.hu))
    sim_p = _cut(sim_sl, _patch_corners(sim_sl, KID_PATCH, count, seed=6), KID_PATCH)
    real_p = neural.real_patches(
        jax.random.fold_in(key, 1),
        real_pool,
        spacing_mm=train_set.spacing_mm,
        size=KID_PATCH,
        count=count,
    )
    t0 = time.perf_counter()
    enc = neural.train_encoder(
        jax.random.fold_in(key, 0),
        np.concatenate([real_p, sim_p]),
        steps=steps,
        batch=64,
        progress=False,
    )
    return enc, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------- figure


def figure(path: Path, versions: dict, real: np.ndarray, spacing_mm: float) -> None:
    """Held-out case 0, slice 0 of each version and a real patch, on one mm scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(versions)
    sl = {n: np.asarray(v)[0, :, :, 0] for n, v in versions.items()}
    fov = sl[names[0]].shape[0] * spacing_mm
    side = real.shape[1] * spacing_mm
    fig, ax = plt.subplots(2, 4, figsize=(13, 7))
    grey = {"cmap": "gray", "vmin": -50, "vmax": 120, "origin": "lower"}
    for j, n in enumerate(names):
        ax[0, j].imshow(sl[n].T, extent=(0, fov, 0, fov), **grey)
        ax[0, j].set_title(n, fontsize=10)
        if j:
            im = ax[1, j].imshow(
                (sl[n] - sl[names[0]]).T,
                extent=(0, fov, 0, fov),
                cmap="RdBu_r",
                vmin=-40,
                vmax=40,
                origin="lower",
            )
            ax[1, j].set_title(f"{n.removeprefix('refined ')}: refined − simulated", fontsize=10)
    ax[0, 3].imshow(real[0].T, extent=(0, side, 0, side), **grey)
    ax[0, 3].set_title(f"real patch ({real.shape[1]}², {side:.0f} mm)", fontsize=10)
    ax[1, 3].imshow(real[1].T, extent=(0, side, 0, side), **grey)
    ax[1, 3].set_title("another real patch", fontsize=10)
    for a in ax.ravel():
        a.set_xlim(0, fov)
        a.set_ylim(0, fov)
        a.set_xticks([])
        a.set_yticks([])
    ax[1, 0].axis("off")
    fig.colorbar(im, ax=ax[1, 0], location="left", shrink=0.8, label="difference (HU)")
    fig.suptitle(
        f"held-out case 0, slice 0 ({fov:.0f} mm field); grey −50 … 120 HU; all panels on one "
        "mm scale"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ main


def summarise(result: dict) -> str:
    lines = [
        "| task | width | first call (s) | steady (s) | per slice (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result["latency"]:
        lines.append(
            f"| {r['task']} | {r['width']} | {r['first_s']:.2f} | {r['steady_s']:.4f} | "
            f"{r['per_slice_ms']:.1f} |"
        )
    lines += [
        "",
        "| training | prepare (s) | compile (s) | steady step (s) | per 1,000 steps (s) |",
    ]
    lines.append("|---|---:|---:|---:|---:|")
    for r in result["training"]:
        lines.append(
            f"| {r['variant']} | {r['prepare_s']:.1f} | {r['compile_s']:.1f} | "
            f"{r['steady_step_s']:.3f} | {r['per_1000_steps_s']:.0f} |"
        )
    m = result["metrics"]
    names = [n for n in m if "criteria" in m[n]]
    lines += ["", "| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for c in m[names[0]]["criteria"]:
        cells = [
            f"{m[n]['criteria'][c]['value']:.4g} "
            + ("pass" if m[n]["criteria"][c]["passed"] else "FAIL")
            for n in names
        ]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines.append(
        "| W₁ soft tissue to real (HU) | "
        + " | ".join(f"{m[n]['w1_soft_hu']:.2f}" for n in names)
        + " |"
    )
    lines.append(
        "| KID (×10³) | "
        + " | ".join(f"{1e3 * m[n]['kid']:.2f} ± {1e3 * m[n]['kid_std']:.2f}" for n in names)
        + " |"
    )
    r = m["real (second draw)"]
    lines.append(
        f"\nKID real vs a second real draw (×10³): {1e3 * r['kid']:.2f} ± {1e3 * r['kid_std']:.2f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the slow test's 64² / 3.2 mm setting")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="smoke setting: 32 × 32 × 2 at 6.4 mm, 60 views, 16² real and KID patches",
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps of each refiner")
    parser.add_argument("--cases", default=None, help="training,held-out cases (e.g. 8,4)")
    parser.add_argument("--repeats", type=int, default=10, help="steady-state repeats (latency)")
    parser.add_argument("--slice", type=int, default=256, help="latency slice size")
    parser.add_argument("--volume", type=int, default=128, help="latency volume size")
    parser.add_argument("--encoder-steps", type=int, default=300)
    parser.add_argument("--json", default=None)
    parser.add_argument("--png", default=str(HERE / "out" / "refiner_examples.png"))
    args = parser.parse_args(argv)

    import jax

    from medphys import neural

    load_before = _load()
    t_start = time.perf_counter()
    global KID_PATCH
    if args.tiny:
        n, mm, views, size, cases, steps = 32, 6.4, 60, 16, (3, 1), 4
        KID_PATCH = 16
    elif args.quick:
        n, mm, views, size, cases, steps = 64, 3.2, 120, 32, (4, 1), 200
    else:
        n, mm, views, size, cases, steps = 128, 1.6, 180, 64, (8, 4), 1500
    if args.cases:
        cases = tuple(int(c) for c in args.cases.split(","))
    steps = args.steps or steps
    settings = {
        "phantom": "adult-head",
        "grid": [n, n, 2],
        "spacing_mm": [mm, mm, 5.0],
        "fov_mm": n * mm,
        "views": views,
        "cases_train_heldout": list(cases),
        "real_patch": size,
        "real_patches": 128,
        "kid_patch": KID_PATCH,
        "steps": steps,
        "config": repr(neural.RefineConfig(steps=steps)),
    }
    result: dict = {"machine": machine(), "settings": settings, "load_before": load_before}

    result["latency"] = latency((16, 32), args.slice, args.volume, args.repeats)

    t0 = time.perf_counter()
    sim = neural.simulate_ct(
        jax.random.key(0),
        "adult-head",
        _protocol(views),
        cases=sum(cases),
        shape=(n, n, 2),
        spacing_mm=(mm, mm, 5.0),
        center_mm=(0.0, 0.0, 20.0),
    )
    pool = _real_slices()
    real = neural.real_patches(
        jax.random.key(1), pool, spacing_mm=sim.spacing_mm, size=size, count=128
    )
    settings["simulate_s"] = time.perf_counter() - t0
    train_set = sim.take(np.arange(cases[0]))
    test = sim.take(np.arange(cases[0], sum(cases)))

    cfg = neural.RefineConfig(steps=steps)
    refiners, result["training"] = {}, []
    for label, c in (("with physics", cfg), ("without physics", cfg.without_physics())):
        refiners[label], row = train(train_set, real, c, jax.random.key(2), label)
        result["training"].append(row)

    count = 256
    encoder, enc_s = encoder_for_kid(
        jax.random.key(3), pool, train_set, steps=args.encoder_steps, count=count
    )
    real_kid = [
        neural.real_patches(
            jax.random.key(k), pool, spacing_mm=sim.spacing_mm, size=KID_PATCH, count=count
        )
        for k in (7, 8)
    ]
    settings["encoder"] = {
        "patches": f"{count} real + {count} simulated-training {KID_PATCH}² patches",
        "steps": args.encoder_steps,
        "batch": 64,
        "train_s": enc_s,
    }
    versions = {"simulated": np.asarray(test.hu)}
    for label, r in refiners.items():
        versions[f"refined {label}"] = np.asarray(
            jax.numpy.stack([neural.refine(r, h) for h in test.hu])
        )
    subset = min(100, count)
    result["metrics"] = metrics_table(
        test,
        versions,
        real,
        real_kid,
        {"encoder": encoder, "kid_patches": count, "kid_subset": subset},
    )
    settings["kid"] = f"{count} patches per set, 100 subsets of {subset}"
    if args.png:
        figure(Path(args.png), versions, real, mm)
    result["peak_rss_mb"] = peak_rss_mb()
    result["wall_s"] = time.perf_counter() - t_start
    result["load_after"] = _load()
    lat = [r for r in result["latency"] if r["width"] == 16 and "slice" in r["task"]]
    best = min(r["per_slice_ms"] for r in lat)
    result["target"] = {
        "per_slice_ms_default_batch1": lat[0]["per_slice_ms"],
        "best_per_slice_ms_default": best,
        "met": best <= TARGET_MS,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result["machine"]))
    print(summarise(result))
    print(
        f"\npeak RSS {result['peak_rss_mb']:.0f} MB, wall {result['wall_s']:.0f} s, "
        f"load {load_before} → {result['load_after']}"
    )
    return result


if __name__ == "__main__":
    main()
