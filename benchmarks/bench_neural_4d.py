"""4-D cone-beam CT of a breathing phantom: a deforming neural field from one ungated sweep beside
phase-binned FDK, on the same projections.

Run:

    python benchmarks/bench_neural_4d.py [--quick] [--json out.json] [--figure docs/neural-4d.png]

Scenario (one run, the same data and noise for every method):

- the adult-male phantom breathing (`phantoms.at`, respiration only: cardiac phase fixed at
  end-diastole), XCAT's defaults: period 5 s, diaphragm 20 mm, anterior chest wall 12 mm;
- one ungated circular cone-beam sweep, one turn in ``SWEEP_S`` seconds with ``--views`` views,
  each at its own instant. The views fall on a lattice of ``PHASES`` respiratory phases (the
  sweep holds a whole number of cycles and of views per cycle), so the truth behind every view is
  the phantom voxelised at that view's phase, not an approximation of it;
- each phase is voxelised at twice the reconstruction resolution (2.5 mm) and projected there by
  the medphys cone projector (the data never come from the reconstruction grid); μ at 70 keV from
  the phantom's materials; the reference at a phase is the 2×2×2 block mean;
- noise: μ is scaled so that the largest line integral of the sweep is 3, then Poisson counts with
  I₀ = 1e5 per pixel, then ``−ln(max(counts, 1) / I₀)``.

Methods:

- **FDK, all views**: one static image of the whole sweep (motion-averaged; Hann filter);
- **phase-binned FDK**: the sweep split into ``BINS`` respiratory-phase bins; each bin's views (in
  bunches, one per breathing cycle) reconstructed by FDK with angular-gap weights
  (`ct.gap_weights`); the usual 4D-CBCT reconstruction;
- **phase-binned TV**: each bin's views by medphys TV (Chambolle–Pock, ``TV_ITERATIONS``), its
  weight the best of a fixed grid against the truth on two bins (an oracle, as in
  bench_neural_ct.py);
- **static field**: a hash-grid field fitted to all views (motion-averaged, as FDK of all views);
- **4-D field**: `neural.GridDeformingField(period_s=5)`, the same hash grid as its canonical
  volume seen through a periodic respiratory motion model (10×8×8 control grids, two harmonics),
  fitted to all views with their instants: every view informs every phase.

Scores at each bin's centre phase (`medphys.metrics`): the reference and the estimate divided by
the reference's maximum (range [0, 1], `metrics.normalise`), PSNR (data range 1) over the whole
volume, inside the reference's body mask (`metrics.body_mask`) and inside the moving region (voxels
whose reference changes by more than a tenth of its maximum over the cycle), and SSIM3D (mean over the three
axes of the mean 2-D SSIM of the slices, 11×11 Gaussian window σ 1.5, data range 1); the table
gives the mean over the bins. Wall time includes compilation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import machine

PERIOD_S = 5.0
SWEEP_S = 60.0
PHASES = 50  # lattice of respiratory phases: views per cycle must be a multiple of it
BINS = 10
SHAPE = (80, 56, 48)  # reconstruction grid, 5 mm
SPACING_MM = 5.0
CENTER_MM = (0.0, 0.0, 0.0)  # the diaphragm's dome lies near z = 0..20 mm
UP = 2
MAX_LINE_INTEGRAL, I0 = 3.0, 1e5
TV_WEIGHTS = (0.05, 0.2, 0.8)
TV_ITERATIONS = 100


def _mu_at_70kev(lv) -> np.ndarray:
    from medphys import materials

    names = [s.material for s in lv.structures]
    mu = materials.attenuation_table(names, [70.0])[:, 0] / 10.0  # 1/cm → 1/mm
    return np.tensordot(mu, np.asarray(lv.fractions, np.float64), axes=1)


def geometry(views: int):
    from medphys.simulators import ConeBeam

    return ConeBeam.create(
        n_views=views,
        n_u=128,
        n_v=72,
        du_mm=7.0,
        dv_mm=7.0,
        sod_mm=1000.0,
        sdd_mm=1500.0,
        arc_rad=2 * np.pi,
    )


def make_data(views: int, seed: int = 0) -> dict:
    """Noisy post-log projections of the sweep, the view times and phases, and the references at
    every lattice phase (on the reconstruction grid, 1/mm after scaling)."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from medphys import Volume, phantoms
    from medphys.simulators import xray

    cycles = SWEEP_S / PERIOD_S
    per_cycle = views / cycles
    if per_cycle != int(per_cycle) or int(per_cycle) % PHASES:
        raise SystemExit(f"--views must be a multiple of {int(cycles) * PHASES}")
    times = np.arange(views) * (SWEEP_S / views)
    lattice = np.round((times % PERIOD_S) / PERIOD_S * PHASES).astype(int) % PHASES
    g = geometry(views)
    angles = np.asarray(g.angles)
    ph = phantoms.load("adult-male")
    clean = np.zeros((views, g.n_u, g.n_v), np.float64)
    refs = np.zeros((PHASES, *SHAPE), np.float64)
    hi_shape = tuple(UP * n for n in SHAPE)
    for p in range(PHASES):
        lv = phantoms.voxelize(
            phantoms.at(ph, respiratory_phase=p / PHASES, cardiac_phase=0.0),
            shape=hi_shape,
            spacing_mm=SPACING_MM / UP,
            center_mm=CENTER_MM,
        )
        mu = _mu_at_70kev(lv)
        refs[p] = mu.reshape(SHAPE[0], UP, SHAPE[1], UP, SHAPE[2], UP).mean(axis=(1, 3, 5))
        sel = np.flatnonzero(lattice == p)
        sub = dataclasses.replace(g, angles=jnp.asarray(angles[sel]))
        vol = Volume.create(mu.astype(np.float32), affine=lv.affine)
        clean[sel] = np.asarray(xray.project(vol, sub))
    scale = MAX_LINE_INTEGRAL / clean.max()
    counts = np.asarray(jax.random.poisson(jax.random.key(seed), I0 * np.exp(-clean * scale)))
    noisy = -np.log(np.maximum(counts, 1.0) / I0).astype(np.float32)
    return {
        "projections": noisy,
        "geometry": g,
        "times": times,
        "phase": lattice / PHASES,
        "references": (refs * scale).astype(np.float32),
    }


def _grid(data: dict):
    from medphys import Grid

    return Grid.create(SHAPE, spacing_mm=SPACING_MM, center_mm=CENTER_MM)


def _bins(data: dict) -> list[np.ndarray]:
    """View indices per phase bin, bins centred on phases b / BINS."""
    shifted = (data["phase"] + 0.5 / BINS) % 1.0
    which = np.floor(shifted * BINS).astype(int)
    return [np.flatnonzero(which == b) for b in range(BINS)]


def _reference(data: dict, b: int) -> np.ndarray:
    return data["references"][round(b * PHASES / BINS) % PHASES]


def moving_mask(data: dict) -> np.ndarray:
    """Voxels whose reference changes by more than a tenth of its maximum over the cycle."""
    refs = data["references"]
    return (refs.max(axis=0) - refs.min(axis=0)) > 0.1 * refs.max()


def score(estimate: np.ndarray, reference: np.ndarray, moving: np.ndarray) -> dict:
    from medphys import metrics

    ref01, est01, _ = metrics.normalise(reference, np.asarray(estimate, np.float64))
    mask = np.asarray(metrics.body_mask(ref01))
    return {
        "psnr": float(metrics.psnr(est01, ref01)),
        "psnr_body": float(metrics.psnr(est01, ref01, mask=mask)),
        "psnr_moving": float(metrics.psnr(est01, ref01, mask=moving)),
        "ssim3d": float(metrics.ssim3d(est01, ref01)),
    }


def _like(data: dict):
    from medphys import Volume

    grid = _grid(data)
    return Volume.create(np.zeros(grid.shape, np.float32), affine=grid.affine)


def m_fdk_all(data: dict) -> dict[int, np.ndarray]:
    from medphys.simulators import ct

    img = np.asarray(
        ct.fdk(data["projections"], data["geometry"], like=_like(data), filter="hann").data
    )
    return dict.fromkeys(range(BINS), img)


def _subset(data: dict, views: np.ndarray):
    import dataclasses

    import jax.numpy as jnp

    g = data["geometry"]
    return dataclasses.replace(g, angles=jnp.asarray(np.asarray(g.angles)[views]))


def m_fdk_binned(data: dict) -> dict[int, np.ndarray]:
    from medphys.simulators import ct

    out = {}
    for b, views in enumerate(_bins(data)):
        out[b] = np.asarray(
            ct.fdk(
                data["projections"][views], _subset(data, views), like=_like(data), filter="hann"
            ).data
        )
    return out


def m_tv_binned(data: dict) -> dict[int, np.ndarray]:
    """TV per bin; the weight the best of ``TV_WEIGHTS`` on the end-expiration and
    end-inspiration bins (mean PSNR against the truth: an oracle), then every bin with it."""
    from medphys.simulators import ct

    bins = _bins(data)

    def run(b: int, weight: float) -> np.ndarray:
        solver = ct.tv(_subset(data, bins[b]), like=_like(data), weight=weight)
        state = solver.run(data["projections"][bins[b]], n_iter=TV_ITERATIONS)
        return np.asarray(solver.image(state).data)

    probe = (0, BINS // 2)
    tried = {w: [run(b, w) for b in probe] for w in TV_WEIGHTS}
    best = max(
        TV_WEIGHTS,
        key=lambda w: np.mean(
            [
                score(img, _reference(data, b), moving_mask(data))["psnr"]
                for img, b in zip(tried[w], probe, strict=True)
            ]
        ),
    )
    print(f"phase-binned TV: weight {best} (of {TV_WEIGHTS})", flush=True)
    return {b: tried[best][probe.index(b)] if b in probe else run(b, best) for b in range(BINS)}


def _hash(key, data: dict):
    from medphys import neural

    return neural.HashGridField(
        key,
        _grid(data),
        scale=float(data["references"].max()) / 2,
        levels=10,
        log2_table=17,
        base=4,
        finest=2 * max(SHAPE),
    )


def _fit_config(steps: int):
    from medphys import neural

    return neural.FitConfig(
        steps=steps, rendering=neural.AlongRays(rays_per_step=2048), learning_rate=1e-2, tv=1e-3
    )


def m_static_field(data: dict, steps: int) -> dict[int, np.ndarray]:
    import jax

    from medphys import neural

    result = neural.fit(
        jax.random.key(1), data["projections"], data["geometry"], _hash(jax.random.key(0), data),
        config=_fit_config(steps), progress=True,
    )  # fmt: skip
    img = np.asarray(neural.to_volume(result.field, _grid(data)).data)
    return dict.fromkeys(range(BINS), img)


def m_4d_field(data: dict, steps: int) -> dict[int, np.ndarray]:
    import dataclasses

    import jax

    from medphys import neural

    field = neural.GridDeformingField(
        _hash(jax.random.key(0), data),
        duration_s=SWEEP_S,
        period_s=PERIOD_S,
        control_points=(10, 8, 8),
        harmonics=2,
        max_displacement=0.15,
    )
    # the motion is held for the first half while the anatomy forms (FitConfig.motion_warmup)
    config = dataclasses.replace(_fit_config(steps), motion_warmup=steps // 2)
    result = neural.fit(
        jax.random.key(1), data["projections"], data["geometry"], field,
        config=config, view_times_s=data["times"], progress=True,
    )  # fmt: skip
    grid = _grid(data)
    return {
        b: np.asarray(neural.to_volume(result.field, grid, time_s=b / BINS * PERIOD_S).data)
        for b in range(BINS)
    }


def m_4d_from_tv(data: dict, steps: int, tv: dict[int, np.ndarray], canonical: str) -> dict:
    """The 4-D field started from the phase-binned TV images' mean (the motion-averaged anatomy):
    a hash grid regressed onto it, or a voxel grid set to it."""
    import jax

    from medphys import Volume, neural

    grid = _grid(data)
    mean = np.mean([tv[b] for b in range(BINS)], axis=0).astype(np.float32)
    init = None
    if canonical == "hash":
        base = _hash(jax.random.key(0), data)
        init = Volume.create(mean, affine=grid.affine)
    else:
        base = neural.VoxelField(grid, scale=float(data["references"].max()) / 2, init=mean)
    field = neural.GridDeformingField(
        base,
        duration_s=SWEEP_S,
        period_s=PERIOD_S,
        control_points=(10, 8, 8),
        harmonics=2,
        max_displacement=0.15,
    )
    config = _fit_config(steps)
    if canonical != "hash":
        import dataclasses

        config = dataclasses.replace(config, learning_rate=2e-3)
    result = neural.fit(
        jax.random.key(1), data["projections"], data["geometry"], field,
        config=config, init=init, view_times_s=data["times"], progress=True,
    )  # fmt: skip
    return {
        b: np.asarray(neural.to_volume(result.field, grid, time_s=b / BINS * PERIOD_S).data)
        for b in range(BINS)
    }


def evaluate(data: dict, name: str, images: dict[int, np.ndarray], wall: float) -> dict:
    moving = moving_mask(data)
    per_bin = [score(images[b], _reference(data, b), moving) for b in range(BINS)]
    row = {"method": name, "wall_s": wall}
    for k in per_bin[0]:
        row[k] = float(np.mean([s[k] for s in per_bin]))
    row["psnr_per_bin"] = [round(s["psnr"], 2) for s in per_bin]
    return row


def figure(data: dict, results: dict[str, dict[int, np.ndarray]], path: str) -> None:
    """Coronal slices through the right dome of the diaphragm at end-expiration and
    end-inspiration: truth and each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = SHAPE[1] // 2
    x = slice(36, 76)  # the right lung above the liver's dome (+x is the patient's right)
    names = ["truth", *results]
    fig, axes = plt.subplots(2, len(names), figsize=(2.2 * len(names), 4.6))
    vmax = float(data["references"].max()) * 0.45
    for row, b in enumerate((0, BINS // 2)):
        for col, name in enumerate(names):
            img = _reference(data, b) if name == "truth" else results[name][b]
            ax = axes[row, col]
            ax.imshow(img[x, y, :].T, origin="lower", cmap="gray", vmin=0, vmax=vmax, aspect=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=8)
        axes[row, 0].set_ylabel("end-expiration" if b == 0 else "end-inspiration", fontsize=8)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--views", type=int, default=600)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="fewer steps, no TV")
    parser.add_argument("--methods", default="fdk_all,fdk_binned,tv_binned,static,4d")
    parser.add_argument("--json", default=None)
    parser.add_argument("--figure", default=None)
    parser.add_argument("--data-cache", default=None, help="an .npz to keep the data in")
    args = parser.parse_args()
    steps = 300 if args.quick else args.steps
    methods = args.methods.split(",")
    if args.quick:
        methods = [m for m in methods if m != "tv_binned"]
    t0 = time.perf_counter()
    cache = Path(args.data_cache) if args.data_cache else None
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            data = {k: z[k] for k in z.files}
        data["geometry"] = geometry(args.views)
    else:
        data = make_data(args.views)
        if cache is not None:
            np.savez(cache, **{k: v for k, v in data.items() if k != "geometry"})
    print(f"data: {time.perf_counter() - t0:.1f} s", flush=True)
    rows, images = [], {}
    runners = {
        "fdk_all": ("FDK, all views", lambda: m_fdk_all(data)),
        "fdk_binned": ("phase-binned FDK", lambda: m_fdk_binned(data)),
        "tv_binned": ("phase-binned TV", lambda: m_tv_binned(data)),
        "static": ("static hash-grid field", lambda: m_static_field(data, steps)),
        "4d": ("4-D field", lambda: m_4d_field(data, steps)),
        "4d_tv_hash": (
            "4-D field from TV",
            lambda: m_4d_from_tv(data, steps, images["phase-binned TV"], "hash"),
        ),
        "4d_tv_voxel": (
            "4-D voxel field from TV",
            lambda: m_4d_from_tv(data, steps, images["phase-binned TV"], "voxel"),
        ),
    }
    tv_cache = cache.with_name(cache.stem + "_tv.npz") if cache is not None else None
    for m in methods:
        label, run = runners[m]
        t0 = time.perf_counter()
        if m == "tv_binned" and tv_cache is not None and tv_cache.exists():
            with np.load(tv_cache) as z:
                out = {b: z[str(b)] for b in range(BINS)}
                wall = float(z["wall_s"])
        else:
            out = run()
            wall = time.perf_counter() - t0
            if m == "tv_binned" and tv_cache is not None:
                np.savez(tv_cache, wall_s=wall, **{str(b): v for b, v in out.items()})
        rows.append(evaluate(data, label, out, wall))
        images[label] = out
        print(json.dumps(rows[-1]), flush=True)
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {"machine": machine(), "views": args.views, "steps": steps, "rows": rows},
                    indent=1,
                )
            )
    print(json.dumps(machine()))
    print("| method | PSNR (dB) | PSNR body (dB) | PSNR moving (dB) | SSIM3D | wall (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['psnr']:.2f} | {r['psnr_body']:.2f} | "
            f"{r['psnr_moving']:.2f} | {r['ssim3d']:.4f} | {r['wall_s']:.0f} |"
        )
    if args.figure:
        figure(data, images, args.figure)


if __name__ == "__main__":
    main()
