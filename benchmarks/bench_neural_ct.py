"""Sparse-view CT: neural attenuation fields beside classical and neural peers, on the same data.

Run (the peers need the ``bench`` extra; see benchmarks/neural_peers.py for what each needs):

    python benchmarks/bench_neural_ct.py --part 2d [--quick] [--json out.json]

2-D scenario (one run, the same data and noise for every method):

- ground truths: Shepp–Logan (scikit-image), an axial slice of the adult-male phantom (μ at
  70 keV from its materials), and a real 512² CT slice shipped in the ``pydicom-data`` wheel
  (``693_UNCR.dcm``, HU → μ = μ_water(70 keV) · (1 + HU/1000), clipped at 0);
- each truth is built at 4× the reconstruction resolution and projected there (the data never
  come from the reconstruction grid: no inverse crime); the reference image is its 4×4 block mean;
- sizes 128² (``--quick``) and 256², parallel beam over π and flat fan beam over 2π, 25 and 50
  views, 1.5 n detector pixels;
- noise: the high-resolution attenuation is scaled so that the largest line integral is 3, then
  Poisson counts with I₀ = 1e5 per pixel, then ``−ln(max(counts, 1) / I₀)``.

Methods: medphys FBP (Hann filter), SIRT (non-negative), CGLS, TV
(Chambolle–Pock, 300 iterations), the medphys fields (hash-grid + MLP with a TV prior, and the
voxel field on the same training code, `OnGrid` rendering, Poisson-free least squares), ASTRA's CPU
FBP/SIRT/CGLS, and Deep Image Prior (deepinv) through the medphys projector. The *tuned* methods
are tuned with the ground truth (an oracle, the same for every method): CGLS's iteration count,
SIRT's iteration count (early stopping regularises it), TV's weight and the fields' TV weight
are each the best of a fixed grid, and the table says which variant won.

Metrics (`medphys.metrics`): the reference and every estimate are divided by the reference's
maximum (reference range [0, 1]; `metrics.normalise`), then PSNR with data range 1 over the whole
image and inside the reference's body mask (`metrics.body_mask`), and SSIM (11×11 Gaussian window,
σ 1.5, data range 1). Wall time includes compilation (each method's first and only run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import machine

UP = 4  # the truth is built and projected at UP × the reconstruction resolution
I0 = 1e5
MAX_LINE_INTEGRAL = 3.0
# field of view (mm) of each truth: the reconstruction grid spans it
FOV_MM = {"shepp-logan": 256.0, "adult-slice": 420.0, "real-ct": 512 * 0.478516}


def _mu_water() -> float:
    from medphys import materials

    return float(materials.attenuation_table(["water"], [70.0])[0, 0]) / 10.0  # 1/cm → 1/mm


def truth_image(name: str, n_hi: int) -> np.ndarray:
    """``(n_hi, n_hi)`` attenuation (1/mm, before scaling) on the truth's FOV square, axis 0 = x."""
    from skimage.transform import resize

    if name == "shepp-logan":
        from skimage.data import shepp_logan_phantom

        img = resize(shepp_logan_phantom(), (n_hi, n_hi), order=1, anti_aliasing=False)
        return (img.T[:, ::-1] * _mu_water()).astype(np.float64)  # rows → y (up), cols → x
    if name == "adult-slice":
        from medphys import materials, phantoms

        fov = FOV_MM[name]
        lv = phantoms.voxelize(
            phantoms.load("adult-male"),
            shape=(n_hi, n_hi, 1),
            spacing_mm=(fov / n_hi, fov / n_hi, 2.0),
            center_mm=(0.0, 0.0, 55.0),  # through the heart (centre z = 55 mm) and both lungs
            supersample=2,
        )
        mu = materials.attenuation_table([s.material for s in lv.structures], [70.0])[:, 0] / 10.0
        return np.tensordot(mu, np.asarray(lv.fractions), axes=1)[:, :, 0].astype(np.float64)
    if name == "real-ct":
        import data_store  # the pydicom-data wheel
        import pydicom

        path = Path(data_store.__file__).parent / "data" / "693_UNCR.dcm"
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        mu = np.clip(_mu_water() * (1.0 + hu / 1000.0), 0.0, None)
        return resize(mu.T[:, ::-1], (n_hi, n_hi), order=1, anti_aliasing=True)
    raise ValueError(name)


def make_case(truth: str, n: int, beam: str, views: int, seed: int = 0) -> dict:
    """The data of one 2-D case: noisy post-log sinogram, geometry, grid and reference image."""
    import jax

    from medphys import Grid, Volume
    from medphys.simulators import FanBeam, ParallelBeam, xray

    n_hi = UP * n
    hi = truth_image(truth, n_hi)
    fov = FOV_MM[truth]
    hi_grid = Grid.create((n_hi, n_hi, 1), spacing_mm=(fov / n_hi, fov / n_hi, fov / n))
    grid = Grid.create((n, n, 1), spacing_mm=fov / n)
    du = fov / n
    if beam == "parallel":
        geometry = ParallelBeam.create(n_views=views, n_u=int(1.5 * n), du_mm=du)
    else:
        geometry = FanBeam.create(
            n_views=views,
            n_u=int(1.5 * n),
            du_mm=2 * du,
            sod_mm=2.5 * fov,
            sdd_mm=5.0 * fov,
            arc_rad=2 * np.pi,
        )
    clean = np.asarray(
        xray.project(
            Volume.create(hi[:, :, None].astype(np.float32), affine=hi_grid.affine), geometry
        )
    )
    scale = MAX_LINE_INTEGRAL / clean.max()
    counts = np.asarray(jax.random.poisson(jax.random.key(seed), I0 * np.exp(-clean * scale)))
    noisy = -np.log(np.maximum(counts, 1.0) / I0).astype(np.float32)
    ref = (hi * scale).reshape(n, UP, n, UP).mean(axis=(1, 3)).astype(np.float32)
    return {
        "sinogram": noisy,
        "counts": counts.astype(np.float32),
        "geometry": geometry,
        "grid": grid,
        "reference": ref,
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
        "ssim": float(metrics.ssim(est01, ref01)),
        "normalisation": norm.describe(),
    }


# ---------------------------------------------------------------------------------------- methods


def _like(case: dict):
    from medphys import Volume

    return Volume.create(np.zeros(case["grid"].shape, np.float32), affine=case["grid"].affine)


def m_fbp(case: dict) -> list[tuple[str, np.ndarray]]:
    from medphys.simulators import ct

    return [
        (
            "FBP (Hann)",
            np.asarray(
                ct.fbp(case["sinogram"], case["geometry"], like=_like(case), filter="hann").data
            ),
        )
    ]


def m_sirt(case: dict) -> list[tuple[str, np.ndarray]]:
    from medphys.simulators import ct

    s = ct.sirt(case["geometry"], like=_like(case))
    state = s.init(case["sinogram"])
    out, done = [], 0
    for k in (25, 50, 100, 200):
        while done < k:
            state = s.step(state)
            done += 1
        out.append((f"SIRT {k}", np.asarray(s.image(state).data)))
    return out


def m_cgls(case: dict) -> list[tuple[str, np.ndarray]]:
    from medphys.simulators import ct

    s = ct.cgls(case["geometry"], like=_like(case))
    state = s.init(case["sinogram"])
    out, done = [], 0
    for k in (5, 10, 20, 40):
        while done < k:
            state = s.step(state)
            done += 1
        out.append((f"CGLS {k}", np.asarray(s.image(state).data)))
    return out


TV_WEIGHTS = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)


def m_tv(case: dict) -> list[tuple[str, np.ndarray]]:
    from medphys.simulators import ct

    out = []
    for w in TV_WEIGHTS:
        s = ct.tv(case["geometry"], like=_like(case), weight=w)
        out.append((f"TV w={w}", np.asarray(s.image(s.run(case["sinogram"], 300)).data)))
    return out


FIELD_TV = (0.003, 0.01, 0.03)
FIELD_STEPS = 800


def _field_fit(case: dict, field, tv: float, lr: float):
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
            log2_table=14,
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


def m_astra(case: dict) -> list[tuple[str, np.ndarray]]:
    import neural_peers as peers

    sino = case["sinogram"][:, :, 0]
    out = []
    if case["geometry"].__class__.__name__ == "ParallelBeam":
        out.append(("ASTRA FBP", peers.astra_fbp(sino, case["geometry"], case["grid"])))
    for k in (50, 200, 800):
        out.append(
            (
                f"ASTRA SIRT {k}",
                peers.astra_sirt(
                    sino, case["geometry"], case["grid"], iterations=k, min_constraint=0.0
                ),
            )
        )
    for k in (10, 20):
        out.append(
            (
                f"ASTRA CGLS {k}",
                peers.astra_cgls(sino, case["geometry"], case["grid"], iterations=k),
            )
        )
    return out


def m_dip(case: dict) -> list[tuple[str, np.ndarray]]:
    import neural_peers as peers

    img = peers.deepinv_dip(
        case["sinogram"][:, :, 0], case["geometry"], case["grid"], iterations=DIP_ITERS
    )
    img = img[0] if isinstance(img, tuple) else img
    return [(f"DIP (deepinv) {DIP_ITERS}", np.asarray(img))]


DIP_ITERS = int(os.environ.get("DIP_ITERS", "1000"))
METHODS = {
    "fbp": m_fbp,
    "sirt": m_sirt,
    "cgls": m_cgls,
    "tv": m_tv,
    "hash": m_hash,
    "voxel": m_voxel,
    "astra": m_astra,
    "dip": m_dip,
}
# rows whose variants are tuned with the ground truth: the best variant is reported
TUNED = {
    "sirt": "SIRT (best of 25/50/100/200 it.)",
    "astra_sirt": "ASTRA SIRT (best of 50/200/800 it.)",
    "cgls": "CGLS (best of 5/10/20/40 it.)",
    "tv": "TV (best weight)",
    "hash": "hash-grid field + TV (best weight)",
    "voxel": "voxel field + TV (best weight)",
    "astra_cgls": "ASTRA CGLS (best of 10/20)",
}


def run_case(spec: tuple, methods: list[str]) -> list[dict]:
    truth, n, beam, views = spec
    case = make_case(truth, n, beam, views)
    rows = []
    for key in methods:
        t0 = time.perf_counter()
        try:
            variants = METHODS[key](case)
        except Exception as exc:  # a peer that is not installed is reported, not fatal
            rows.append(
                {"case": spec, "method": key, "error": f"{type(exc).__name__}: {exc}"[:200]}
            )
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
    """One line per case × method: the best variant of tuned methods, with PSNR/SSIM and time."""
    lines = [
        "| case | method | PSNR (dB) | PSNR body (dB) | SSIM | wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    by = {}
    for r in rows:
        if "error" in r:
            continue
        group = r["method"]
        if group == "astra" and r["variant"].startswith("ASTRA CGLS"):
            group = "astra_cgls"
        elif group == "astra" and r["variant"].startswith("ASTRA SIRT"):
            group = "astra_sirt"
        elif group == "astra":
            group = r["variant"]
        elif group not in TUNED:
            group = r["variant"]
        k = (tuple(r["case"]), group)
        if k not in by or r["psnr"] > by[k]["psnr"]:
            by[k] = r
    for (case, group), r in by.items():
        label = TUNED.get(group, group)
        if group in TUNED:
            label += f" [{r['variant']}]"
        lines.append(
            f"| {' '.join(map(str, case))} | {label} | {r['psnr']:.2f} | {r['psnr_body']:.2f} | {r['ssim']:.4f} | {r['wall_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="2d", choices=["2d"])
    parser.add_argument("--quick", action="store_true", help="128² only")
    parser.add_argument("--truths", default="shepp-logan,adult-slice,real-ct")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--views", default="25,50")
    parser.add_argument("--beams", default="parallel,fan")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    sizes = (128,) if args.quick else (128, 256)
    specs = [
        (t, n, b, int(v))
        for t in args.truths.split(",")
        for n in sizes
        for b in args.beams.split(",")
        for v in args.views.split(",")
    ]
    rows = []
    for spec in specs:
        rows += run_case(spec, args.methods.split(","))
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    print(json.dumps(machine()))
    print(summarise(rows))


if __name__ == "__main__":
    main()
