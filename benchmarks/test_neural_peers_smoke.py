"""Smoke check of `benchmarks/neural_peers.py`: every adapter at a tiny size, with the numbers that
prove its geometry mapping (forward agreement with medphys's projector, feature placement).

Run: ``python benchmarks/test_neural_peers_smoke.py [astra] [dip] [mbirjax]`` (default: all).
A standalone script (not collected by pytest); exits non-zero when a check fails.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import neural_peers as peers

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """Relative L2 difference ||a - b|| / ||b||."""
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def phantom_2d(grid) -> np.ndarray:
    """Off-centre rotated ellipse + a small dense square + a disc (non-symmetric), 1/mm."""
    nx, ny, _ = grid.shape
    a = np.asarray(grid.affine)
    x = a[0, 3] + a[0, 0] * np.arange(nx)[:, None]
    y = a[1, 3] + a[1, 1] * np.arange(ny)[None, :]
    img = np.zeros((nx, ny), np.float32)
    c, s = math.cos(0.5), math.sin(0.5)
    xr, yr = (x - 4.0) * c + (y - 1.0) * s, -(x - 4.0) * s + (y - 1.0) * c
    img[(xr / 16.0) ** 2 + (yr / 9.0) ** 2 <= 1] = 0.02
    img[(np.abs(x + 10.0) <= 3.0) & (np.abs(y - 12.0) <= 3.0)] = 0.05
    img[(x - 8.0) ** 2 + (y + 10.0) ** 2 <= 16.0] += 0.03
    return img


def grid_2d(n: int = 64):
    import medphys

    # flipped y axis and an off-origin centre, so a wrong orientation cannot pass
    aff = np.diag([0.75, -0.75, 1.0, 1.0])
    aff[:3, 3] = [-0.75 * (n - 1) / 2 + 1.0, 0.75 * (n - 1) / 2 - 0.5, 0.0]
    return medphys.Grid.create((n, n, 1), affine=aff)


def medphys_project(img2d: np.ndarray, grid, geometry) -> np.ndarray:
    import medphys
    from medphys.simulators import xray

    vol = medphys.Volume.create(img2d[:, :, None], affine=grid.affine)
    return np.asarray(xray.project(vol, geometry))[..., 0]


def run_astra() -> None:
    import medphys
    from medphys.simulators import FanBeam, ParallelBeam, ct

    grid = grid_2d()
    img = phantom_2d(grid)
    par = ParallelBeam.create(
        n_views=60, n_u=96, du_mm=0.6, u_offset_mm=0.35, isocenter_mm=(1.5, -1.0)
    )
    fan = FanBeam.create(
        n_views=72,
        n_u=128,
        du_mm=0.7,
        sod_mm=150.0,
        sdd_mm=260.0,
        u_offset_mm=0.9,
        isocenter_mm=(1.5, -1.0),
        start_rad=0.3,
    )
    for name, geom, projs in (
        ("parallel", par, ("linear", "line", "strip")),
        ("fan", fan, ("line_fanflat",)),
    ):
        ref = medphys_project(img, grid, geom)
        for p in projs:
            s = peers.astra_forward(img, geom, grid, projector=p)
            r = rel(s, ref)
            check(f"astra forward {name}/{p}", r < 0.02, f"rel L2 diff vs medphys {r:.4f}")
    fan0 = FanBeam.create(
        n_views=72,
        n_u=128,
        du_mm=0.7,
        sod_mm=150.0,
        sdd_mm=260.0,
        isocenter_mm=(1.5, -1.0),
        start_rad=0.3,
    )
    ref = medphys_project(img, grid, fan0)
    r = rel(peers.astra_forward(img, fan0, grid, projector="strip_fanflat"), ref)
    check(
        "astra forward fan/strip_fanflat (angle form)", r < 0.02, f"rel L2 diff vs medphys {r:.4f}"
    )

    # FBP placement and amplitude: parallel half turn and full turn, detector centred
    like = medphys.Volume.create(np.zeros(grid.shape, np.float32), affine=grid.affine)
    for arc in (math.pi, 2 * math.pi):
        g = ParallelBeam.create(
            n_views=180, n_u=128, du_mm=0.6, arc_rad=arc, isocenter_mm=(1.5, -1.0)
        )
        sino = medphys_project(img, grid, g)
        mine = np.asarray(ct.fbp(sino[..., None], g, like=like).data)[..., 0]
        theirs = peers.astra_fbp(sino, g, grid)
        c = corr(theirs, mine)
        amp = float(np.sum(theirs * mine) / np.sum(mine * mine))
        check(
            f"astra FBP parallel arc={arc / math.pi:.0f}π vs medphys fbp",
            c > 0.99 and abs(amp - 1) < 0.03,
            f"correlation {c:.4f}, amplitude ratio {amp:.4f}, rel L2 vs phantom "
            f"{rel(theirs, img):.3f} (medphys {rel(mine, img):.3f})",
        )
    # iterative: same geometry as the forward check (offsets included), few iterations
    for name, geom in (("parallel", par), ("fan", fan)):
        sino = medphys_project(img, grid, geom)
        t = time.perf_counter()
        sirt = peers.astra_sirt(sino, geom, grid, iterations=50)
        cg = peers.astra_cgls(sino, geom, grid, iterations=15)
        dt = time.perf_counter() - t
        cs, cc = corr(sirt, img), corr(cg, img)
        check(
            f"astra SIRT/CGLS {name}",
            cs > 0.9 and cc > 0.9,
            f"correlation with phantom SIRT50 {cs:.4f}, CGLS15 {cc:.4f} ({dt:.2f} s)",
        )


def main(argv: list[str]) -> int:
    runners = {"astra": run_astra}
    for w in argv or list(runners):
        if w not in runners:
            raise SystemExit(f"unknown part {w!r}; choose from {sorted(runners)}")
        runners[w]()
    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
