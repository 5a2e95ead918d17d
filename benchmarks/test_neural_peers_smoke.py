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


def run_dip() -> None:
    import torch

    from medphys.simulators import FanBeam

    grid = grid_2d(32)
    img = phantom_2d(grid)
    g = FanBeam.create(
        n_views=30, n_u=64, du_mm=0.9, sod_mm=150.0, sdd_mm=260.0, isocenter_mm=(1.5, -1.0)
    )
    sino = medphys_project(img, grid, g)
    a, a_adj = peers.medphys_torch_operator(grid, g)
    d = float(np.abs(a(torch.from_numpy(img)[None, None]).numpy()[0, 0] - sino).max())
    check("dip operator forward == medphys project", d == 0.0, f"max |diff| {d:.2e}")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, 1, 32, 32), generator=gen)
    y = torch.randn((2, 1, 30, 64), generator=gen)
    lhs, rhs = float((a(x) * y).sum()), float((x * a_adj(y)).sum())
    r = abs(lhs - rhs) / abs(lhs)
    check(
        "dip operator adjoint <Ax,y> = <x,A'y>", r < 1e-5, f"{lhs:.4f} vs {rhs:.4f} (rel {r:.1e})"
    )
    x.requires_grad_(True)
    (0.5 * (a(x) ** 2).sum()).backward()
    gd = float((x.grad - a_adj(a(x.detach()))).abs().max())
    check("dip autograd backward = medphys backproject", gd == 0.0, f"max |diff| {gd:.2e}")
    im, wall = peers.deepinv_dip(sino, g, grid, iterations=100, lr=1e-2, seed=0, channels=32)
    c = corr(im, img)
    check(
        "deepinv DIP fan 32², 30 views, 100 it, 32 channels",
        c > 0.8 and im.shape == (32, 32),
        f"correlation with phantom {c:.4f}, rel L2 {rel(im, img):.3f}, {wall:.1f} s",
    )
    im2, _ = peers.deepinv_dip(sino, g, grid, iterations=3, seed=1, channels=8)
    im3, _ = peers.deepinv_dip(sino, g, grid, iterations=3, seed=1, channels=8)
    check("deepinv DIP same seed → same image", np.array_equal(im2, im3), "bitwise")


def phantom_3d(grid, *, smooth: bool) -> np.ndarray:
    """Off-centre ellipsoid + box (sharp) or two anisotropic Gaussians (smooth), 1/mm."""
    n = grid.shape
    a = np.asarray(grid.affine)
    x = (a[0, 3] + a[0, 0] * np.arange(n[0]))[:, None, None]
    y = (a[1, 3] + a[1, 1] * np.arange(n[1]))[None, :, None]
    z = (a[2, 3] + a[2, 2] * np.arange(n[2]))[None, None, :]
    if smooth:
        v = 0.02 * np.exp(-(((x - 4) / 6) ** 2 + ((y - 1) / 4) ** 2 + ((z - 4) / 7) ** 2))
        v = v + 0.04 * np.exp(-(((x + 6) / 2.5) ** 2 + ((y - 7) / 2.5) ** 2 + ((z + 3) / 3) ** 2))
        return v.astype(np.float32)
    v = np.zeros(n, np.float32)
    v[((x - 4) / 9) ** 2 + ((y - 1) / 6) ** 2 + ((z - 4) / 10) ** 2 <= 1] = 0.02
    v[(np.abs(x + 6) <= 3) & (np.abs(y - 7) <= 3) & (np.abs(z + 3) <= 4)] = 0.05
    return v


def run_mbirjax() -> None:
    import medphys
    from medphys.simulators import ConeBeam, xray

    n = 32
    sp = np.array([1.0, -1.0, 1.25])  # y reversed, anisotropic z, off-centre z
    aff = np.diag([*sp, 1.0])
    aff[:3, 3] = -sp * (n - 1) / 2 + np.array([1.5, -1.0, 2.0])
    grid = medphys.Grid.create((n, n, n), affine=aff)
    g = ConeBeam.create(
        n_views=24,
        n_u=64,
        n_v=56,
        du_mm=1.3,
        dv_mm=1.4,
        sod_mm=120.0,
        sdd_mm=200.0,
        u_offset_mm=0.6,
        v_offset_mm=-0.9,
        z_mm=0.5,
        isocenter_mm=(1.5, -1.0),
        start_rad=0.2,
    )
    u = np.arange(g.n_u)[None, :, None]
    v = np.arange(g.n_v)[None, None, :]
    for smooth, tol in ((True, 0.03), (False, 0.06)):
        vol = phantom_3d(grid, smooth=smooth)
        ref = np.asarray(xray.project(medphys.Volume.create(vol, affine=grid.affine), g))
        t = time.perf_counter()
        mb = peers.mbirjax_forward(vol, g, grid)
        dt = time.perf_counter() - t
        mass = float(mb.sum() / ref.sum())
        shift_u = np.abs(
            (mb * u).sum((1, 2)) / mb.sum((1, 2)) - (ref * u).sum((1, 2)) / ref.sum((1, 2))
        )
        shift_v = np.abs(
            (mb * v).sum((1, 2)) / mb.sum((1, 2)) - (ref * v).sum((1, 2)) / ref.sum((1, 2))
        )
        r = rel(mb, ref)
        check(
            f"mbirjax forward cone 32³ {'smooth' if smooth else 'sharp'} phantom",
            r < tol and abs(mass - 1) < 0.01 and max(shift_u.max(), shift_v.max()) < 0.05,
            f"rel L2 diff vs medphys {r:.4f}, mass ratio {mass:.4f}, max centroid shift "
            f"u {shift_u.max():.3f} / v {shift_v.max():.3f} px ({dt:.1f} s incl. worker start)",
        )
    vol = phantom_3d(grid, smooth=False)
    g = ConeBeam.create(
        n_views=48,
        n_u=64,
        n_v=56,
        du_mm=1.3,
        dv_mm=1.4,
        sod_mm=120.0,
        sdd_mm=200.0,
        u_offset_mm=0.6,
        v_offset_mm=-0.9,
        z_mm=0.5,
        isocenter_mm=(1.5, -1.0),
        start_rad=0.2,
    )
    proj = np.asarray(xray.project(medphys.Volume.create(vol, affine=grid.affine), g))
    rec, wall = peers.mbirjax_mbir(proj, g, grid, max_iterations=4, use_ror_mask=False)
    c = corr(rec[8:24, 8:24, 8:24], vol[8:24, 8:24, 8:24])
    check(
        "mbirjax MBIR cone 32³, 48 views, 4 it",
        c > 0.9 and rec.shape == grid.shape,
        f"correlation with phantom (central 16³) {c:.4f}, rel L2 {rel(rec, vol):.3f}, "
        f"recon {wall:.1f} s",
    )


def main(argv: list[str]) -> int:
    runners = {"astra": run_astra, "dip": run_dip, "mbirjax": run_mbirjax}
    for w in argv or list(runners):
        if w not in runners:
            raise SystemExit(f"unknown part {w!r}; choose from {sorted(runners)}")
        runners[w]()
    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
