"""Sparse-view cone-beam CT in 3-D: neural attenuation fields beside classical methods and mbirjax
MBIR, on the same data.

Run (mbirjax needs its own venv; see benchmarks/neural_peers.py):

    python benchmarks/bench_neural_ct3d.py [--sizes 64,128] [--views 25,50] [--json out.json]

Scenario (one run, the same data and noise for every method):

- ground truths: the 3-D Shepp–Logan head (Kak–Slaney ellipsoids, ``phantoms/shepp-logan-3d``)
  in a 200 mm cube, and the adult-male phantom (``phantoms/adult-male``, end-expiration,
  end-diastole) in a 480 mm cube centred on the diaphragm's dome; μ at 70 keV from each
  structure's material;
- each truth is voxelised at 2× the reconstruction resolution and projected there by the medphys
  cone projector (the data never come from the reconstruction grid: no inverse crime); the
  reference is its 2×2×2 block mean;
- circular cone beam over 360°, 25 or 50 views, source-isocentre 1000 mm, source-detector
  1500 mm, a flat detector of 1.5 n × 1.5 n pixels of 1.5 voxel widths (magnified);
- noise: μ scaled so that the largest line integral is 3, then Poisson counts with I₀ = 1e5 per
  pixel, then ``−ln(max(counts, 1) / I₀)``.

Methods: medphys FDK (Hann), SIRT (non-negative), CGLS, TV (Chambolle–Pock, ``TV_ITERATIONS``),
mbirjax 0.7.3 MBIR (qGGMRF prior with its automatic regularisation, the sharpness tuned), and the
medphys fields (hash grid + MLP with a TV prior; the voxel field on the same training code),
fitted with `OnGrid` rendering (the field sampled on the reconstruction grid and projected by
the medphys cone projector) and least squares. The tuned methods are tuned with the ground truth
(an oracle, the same for every method): SIRT's and CGLS's iteration counts, TV's weight, MBIR's
sharpness and the fields' TV weight are each the best of a fixed grid, and the table says which
variant won.

Metrics (`medphys.metrics`): the reference and every estimate divided by the reference's maximum
(reference range [0, 1], `metrics.normalise`), then PSNR3D with data range 1 over the whole
volume and inside the reference's body mask (`metrics.body_mask`), and SSIM3D (mean over the three
axes of the mean 2-D SSIM of the slices, 11×11 Gaussian window σ 1.5, data range 1,
`metrics.ssim3d`). Wall time per variant, compilation included (MBIR's: its reconstruction call,
compilation included, the worker's interpreter start excluded).
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

UP = 2
I0 = 1e5
MAX_LINE_INTEGRAL = 3.0
SOD_MM, SDD_MM = 1000.0, 1500.0
TRUTHS = {
    # name: (catalog phantom, field of view in mm, centre in mm)
    "shepp-logan-3d": ("shepp-logan-3d", 200.0, (0.0, 0.0, 0.0)),
    "adult-torso": ("adult-male", 480.0, (0.0, 0.0, 0.0)),
}
TV_WEIGHTS = (0.05, 0.2, 0.8)
TV_ITERATIONS = 150
FIELD_TV = (0.01, 0.03)
FIELD_STEPS = 500
MBIR_SHARPNESS = (0.0, 1.0)


def _mu_at_70kev(lv) -> np.ndarray:
    from medphys import materials

    names = [s.material for s in lv.structures]
    mu = materials.attenuation_table(names, [70.0])[:, 0] / 10.0  # 1/cm → 1/mm
    return np.tensordot(mu, np.asarray(lv.fractions, np.float64), axes=1)


def geometry(n: int, views: int, spacing_mm: float):
    from medphys.simulators import ConeBeam

    pixels = round(1.5 * n)
    pitch = 1.5 * spacing_mm * SDD_MM / SOD_MM
    return ConeBeam.create(
        n_views=views,
        n_u=pixels,
        n_v=pixels,
        du_mm=pitch,
        dv_mm=pitch,
        sod_mm=SOD_MM,
        sdd_mm=SDD_MM,
        arc_rad=2 * np.pi,
    )


def make_case(truth: str, n: int, views: int, seed: int = 0) -> dict:
    import jax

    from medphys import Grid, Volume, phantoms
    from medphys.simulators import xray

    name, fov, centre = TRUTHS[truth]
    spacing = fov / n
    ph = phantoms.load(name)
    if name == "adult-male":
        ph = phantoms.at(ph, respiratory_phase=0.0, cardiac_phase=0.0)
    lv = phantoms.voxelize(ph, shape=(UP * n,) * 3, spacing_mm=spacing / UP, center_mm=centre)
    mu = _mu_at_70kev(lv)
    ref = mu.reshape(n, UP, n, UP, n, UP).mean(axis=(1, 3, 5))
    g = geometry(n, views, spacing)
    clean = np.asarray(xray.project(Volume.create(mu.astype(np.float32), affine=lv.affine), g))
    scale = MAX_LINE_INTEGRAL / clean.max()
    counts = np.asarray(jax.random.poisson(jax.random.key(seed), I0 * np.exp(-clean * scale)))
    noisy = -np.log(np.maximum(counts, 1.0) / I0).astype(np.float32)
    grid = Grid.create((n,) * 3, spacing_mm=spacing, center_mm=centre)
    return {
        "sinogram": noisy,
        "geometry": g,
        "grid": grid,
        "reference": (ref * scale).astype(np.float32),
    }


def score(estimate: np.ndarray, reference: np.ndarray) -> dict:
    from medphys import metrics

    ref01, est01, norm = metrics.normalise(
        reference, np.asarray(estimate, np.float64).reshape(reference.shape)
    )
    mask = np.asarray(metrics.body_mask(ref01))
    return {
        "psnr": float(metrics.psnr(est01, ref01)),
        "psnr_body": float(metrics.psnr(est01, ref01, mask=mask)),
        "ssim3d": float(metrics.ssim3d(est01, ref01)),
        "normalisation": norm.describe(),
    }


# ---------------------------------------------------------------------------------------- methods


def _like(case: dict):
    from medphys import Volume

    return Volume.create(np.zeros(case["grid"].shape, np.float32), affine=case["grid"].affine)


def m_fdk(case: dict) -> list[tuple[str, np.ndarray]]:
    from medphys.simulators import ct

    img = ct.fdk(case["sinogram"], case["geometry"], like=_like(case), filter="hann").data
    return [("FDK (Hann)", np.asarray(img))]


def _iterate(solver, sinogram, counts: tuple[int, ...], label: str) -> list:
    state = solver.init(sinogram)
    out, done = [], 0
    for k in counts:
        while done < k:
            state = solver.step(state)
            done += 1
        out.append((f"{label} {k}", np.asarray(solver.image(state).data)))
    return out


def m_sirt(case: dict) -> list[tuple[str, np.ndarray]]:
    from medphys.simulators import ct

    solver = ct.sirt(case["geometry"], like=_like(case))
    return _iterate(solver, case["sinogram"], (25, 50, 100, 200), "SIRT")


def m_cgls(case: dict) -> list[tuple[str, np.ndarray]]:
    from medphys.simulators import ct

    solver = ct.cgls(case["geometry"], like=_like(case))
    return _iterate(solver, case["sinogram"], (5, 10, 20, 40), "CGLS")


def m_tv(case: dict) -> list[tuple[str, np.ndarray]]:
    from medphys.simulators import ct

    out = []
    for w in TV_WEIGHTS:
        s = ct.tv(case["geometry"], like=_like(case), weight=w)
        out.append((f"TV w={w}", np.asarray(s.image(s.run(case["sinogram"], TV_ITERATIONS)).data)))
    return out


def m_mbir(case: dict) -> list[tuple[str, np.ndarray]]:
    import neural_peers as peers

    out = []
    for sharpness in MBIR_SHARPNESS:
        img, _ = peers.mbirjax_mbir(
            case["sinogram"], case["geometry"], case["grid"], sharpness=sharpness
        )
        out.append((f"MBIR (mbirjax) sharpness={sharpness}", img))
    return out


def _field_fit(case: dict, field, tv: float, lr: float) -> np.ndarray:
    import jax

    from medphys import neural

    cfg = neural.FitConfig(steps=FIELD_STEPS, rendering=neural.OnGrid(), learning_rate=lr, tv=tv)
    result = neural.fit(
        jax.random.key(1), case["sinogram"], case["geometry"], field, config=cfg, progress=False
    )
    return np.asarray(neural.to_volume(result.field).data)


def m_hash(case: dict) -> list[tuple[str, np.ndarray]]:
    import jax

    from medphys import neural

    n = case["grid"].shape[0]
    scale = float(case["reference"].max()) / 2
    out = []
    for tv in FIELD_TV:
        field = neural.HashGridField(
            jax.random.key(0),
            case["grid"],
            scale=scale,
            levels=12,
            log2_table=18,
            base=4,
            finest=2 * n,
        )
        out.append((f"hash-grid field tv={tv}", _field_fit(case, field, tv, 1e-2)))
    return out


def m_voxel(case: dict) -> list[tuple[str, np.ndarray]]:
    from medphys import neural

    scale = float(case["reference"].max()) / 2
    return [
        (
            f"voxel field tv={tv}",
            _field_fit(case, neural.VoxelField(case["grid"], scale=scale), tv, 1e-1),
        )
        for tv in FIELD_TV
    ]


METHODS = {
    "fdk": m_fdk,
    "sirt": m_sirt,
    "cgls": m_cgls,
    "tv": m_tv,
    "mbir": m_mbir,
    "hash": m_hash,
    "voxel": m_voxel,
}
# rows whose variants are tuned with the ground truth: the best variant is reported
TUNED = {
    "sirt": "SIRT (best of 25/50/100/200 it.)",
    "cgls": "CGLS (best of 5/10/20/40 it.)",
    "tv": f"TV (best weight, {TV_ITERATIONS} it.)",
    "mbir": "MBIR, mbirjax (best sharpness)",
    "hash": "hash-grid field + TV (best weight)",
    "voxel": "voxel field + TV (best weight)",
}


def run_case(spec: tuple, methods: list[str]) -> list[dict]:
    truth, n, views = spec
    t0 = time.perf_counter()
    case = make_case(truth, n, views)
    print(f"{spec}: data in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    rows = []
    for key in methods:
        t0 = time.perf_counter()
        try:
            variants = METHODS[key](case)
        except Exception as exc:  # a peer that is not installed is reported, not fatal
            rows.append(
                {
                    "case": list(spec),
                    "method": key,
                    "error": f"{type(exc).__name__}: {str(exc)[-400:]}",
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            continue
        wall = time.perf_counter() - t0
        for name, img in variants:
            rows.append(
                {
                    "case": list(spec),
                    "method": key,
                    "variant": name,
                    "wall_s": wall / len(variants),
                    **score(img, case["reference"]),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def summarise(rows: list[dict]) -> str:
    """One line per case × method: the best variant of tuned methods, by PSNR3D."""
    lines = [
        "| case | method | PSNR3D (dB) | PSNR3D body (dB) | SSIM3D | wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    best: dict = {}
    for r in rows:
        if "error" in r:
            continue
        group = r["method"] if r["method"] in TUNED else r["variant"]
        k = (tuple(r["case"]), group)
        if k not in best or r["psnr"] > best[k]["psnr"]:
            best[k] = r
    for (case, group), r in best.items():
        label = TUNED.get(group, group)
        if group in TUNED:
            label += f" [{r['variant']}]"
        lines.append(
            f"| {' '.join(map(str, case))} | {label} | {r['psnr']:.2f} | {r['psnr_body']:.2f} "
            f"| {r['ssim3d']:.4f} | {r['wall_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    global FIELD_TV
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--truths", default=",".join(TRUTHS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--views", default="25,50")
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--field-tv", default=",".join(map(str, FIELD_TV)), help="the fields' TV weights tried"
    )
    args = parser.parse_args()
    FIELD_TV = tuple(float(w) for w in args.field_tv.split(","))
    specs = [
        (t, int(n), int(v))
        for n in args.sizes.split(",")
        for t in args.truths.split(",")
        for v in args.views.split(",")
    ]
    rows: list[dict] = []
    for spec in specs:
        rows += run_case(spec, args.methods.split(","))
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    print(json.dumps(machine()))
    print(summarise(rows))


if __name__ == "__main__":
    main()
