"""X-ray projector and reconstruction side by side with the tools users pick today.

Run (in an environment that also has the comparison tools; they are never medphys dependencies):

    python benchmarks/bench_xray.py [--quick]

Scenarios, each tool in a fresh interpreter (so its peak memory is its own):

- ``parallel2d``: 2-D parallel beam, 512² image (1 mm pixels), 360 views over π, 736 detector
  pixels. Forward projection and FBP (ram-lak) with medphys, scikit-image (``radon``/``iradon``)
  and the ASTRA toolbox's CPU projector (``linear`` = Joseph) and CPU FBP. Accuracy: relative L2
  error of the forward projection against the analytic Radon transform of the Shepp–Logan ellipses
  (each tool in its own convention: the best of the u-flip / angle-direction / half-pixel variants),
  and of the FBP image against the supersampled phantom inside the reconstruction circle.
- ``cone128``: one cone-beam DRR of a 128³ volume (1 mm voxels) onto a 128² detector (2 mm pixels,
  sdd 1020 mm, sod 850 mm) with medphys (3-D Joseph) and DiffDRR 0.6.1 (Siddon, PyTorch CPU):
  forward, and the gradient of ``sum(DRR^2)`` w.r.t. the volume. Accuracy against the closed-form
  chords of a 3-D ellipsoid phantom along each tool's own rays.
- ``cone-vjp``: medphys alone, float32: forward, backprojection and ``jax.grad`` of ``sum(DRR²)``
  for 128³ → 128² (1 and 8 views) and 256³ → 256² (1 view), with the voxel-driven (gather)
  transpose and with the transposed gathers (scatter-adds) it replaced, back to back.
- ``cone512``: medphys, 512³ volume, 512² detector (1.6 mm pixels, sod 1000 mm, sdd 1500 mm),
  circular cone beam over 360 views: wall time and peak RSS. By default 36 of the 360 views are
  timed (views chunked, so the peak does not grow with the view count) and the time scaled by 10;
  ``--full512`` runs all 360. Run twice, each in its own interpreter: with the slice-major 3-D
  Joseph sweep that ``project`` runs, and with the ray-major kernel it replaced (selected through
  the prepared operator's private plan, for this comparison only).
- ``cone-sweep``: the two 3-D Joseph kernels interleaved in one process (same load): 128³ → 128²
  (the DRR of ``cone128``, 1 view), 256³ → 256² (8 views, the geometry of ``cone512`` at half the
  resolution) and 512³ → 512² (2 views, that of ``cone512``), float32, per-view time.
- ``fdk256``: FDK (ram-lak) of a 256³ volume from 360 cone-beam views onto a 256² detector: the
  projection time, the reconstruction time, peak RSS and the error against the phantom.

Each scenario reports ``os.getloadavg()`` when it ran: on a shared machine compare ratios within
one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _harness import Timing, machine, measure, peak_rss_mb, run_isolated, table

# modified Shepp–Logan (Toft): centre (x, y), semi-axes (a, b), rotation (deg), value
SHEPP_2D = [
    (0.0, 0.0, 0.69, 0.92, 0.0, 1.0),
    (0.0, -0.0184, 0.6624, 0.874, 0.0, -0.8),
    (0.22, 0.0, 0.11, 0.31, -18.0, -0.2),
    (-0.22, 0.0, 0.16, 0.41, 18.0, -0.2),
    (0.0, 0.35, 0.21, 0.25, 0.0, 0.1),
    (0.0, 0.1, 0.046, 0.046, 0.0, 0.1),
    (0.0, -0.1, 0.046, 0.046, 0.0, 0.1),
    (-0.08, -0.605, 0.046, 0.023, 0.0, 0.1),
    (0.0, -0.606, 0.023, 0.023, 0.0, 0.1),
    (0.06, -0.605, 0.023, 0.046, 0.0, 0.1),
]
N2D, VIEWS, NU = 512, 360, 736
SCALE_2D = 240.0  # mm
MU = 0.02  # 1/mm for value 1


def shepp_image(n: int, ss: int = 4) -> np.ndarray:
    """Supersampled phantom on an n×n grid of 1 mm pixels, indexed [x, y]."""
    c = np.arange(n) - (n - 1) / 2
    off = (np.arange(ss) + 0.5) / ss - 0.5
    x = (c[:, None] + off[None, :]).reshape(-1)
    img = np.zeros((n * ss, n * ss))
    for x0, y0, a, b, phi, v in SHEPP_2D:
        p = math.radians(phi)
        dx, dy = x[:, None] - x0 * SCALE_2D, x[None, :] - y0 * SCALE_2D
        u = (dx * math.cos(p) + dy * math.sin(p)) / (a * SCALE_2D)
        w = (-dx * math.sin(p) + dy * math.cos(p)) / (b * SCALE_2D)
        img += v * (u * u + w * w <= 1.0)
    return img.reshape(n, ss, n, ss).mean(axis=(1, 3)) * MU


def radon_analytic(theta: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Line integrals along x·(cos θ, sin θ) = s (theta (views,), s (views, u) or (u,))."""
    s = np.broadcast_to(s, (theta.size, np.shape(s)[-1]))
    out = np.zeros(s.shape)
    for x0, y0, a, b, phi, v in SHEPP_2D:
        a, b, p = a * SCALE_2D, b * SCALE_2D, math.radians(phi)
        t = theta[:, None] - p
        sp = s - (x0 * SCALE_2D * np.cos(theta) + y0 * SCALE_2D * np.sin(theta))[:, None]
        r2 = (a * np.cos(t)) ** 2 + (b * np.sin(t)) ** 2
        out += v * MU * 2 * a * b * np.sqrt(np.maximum(r2 - sp * sp, 0.0)) / r2
    return out


def best_error(sino: np.ndarray, theta: np.ndarray, s: np.ndarray) -> float:
    """Relative L2 error vs the analytic transform, best over convention variants."""
    best = math.inf
    for sign in (1.0, -1.0):
        for shift in (0.0, 0.5, -0.5):
            ref = radon_analytic(sign * theta, s + shift)
            for cand in (sino, sino[:, ::-1]):
                best = min(best, float(np.linalg.norm(cand - ref) / np.linalg.norm(ref)))
    return best


def fbp_error(img: np.ndarray, truth: np.ndarray) -> float:
    c = np.arange(truth.shape[0]) - (truth.shape[0] - 1) / 2
    inside = c[:, None] ** 2 + c[None, :] ** 2 < (truth.shape[0] / 2 - 2) ** 2
    best = math.inf
    for cand in (img, img.T, img[::-1], img[:, ::-1], img[::-1].T, img[:, ::-1].T, img[::-1, ::-1]):
        best = min(
            best, float(np.linalg.norm((cand - truth)[inside]) / np.linalg.norm(truth[inside]))
        )
    return best


# ----------------------------------------------------------------------------------------------
# parallel 2-D


def parallel_medphys(repeats: int) -> list[dict]:
    import jax.numpy as jnp

    from medphys import Volume
    from medphys.simulators.ct import fbp
    from medphys.simulators.geometry import ParallelBeam
    from medphys.simulators.xray import project

    truth = shepp_image(N2D)
    vol = Volume.create(truth[:, :, None].astype(np.float32), spacing_mm=1.0)
    g = ParallelBeam.create(n_views=VIEWS, n_u=NU, du_mm=1.0)
    fwd = measure("medphys", "2D parallel forward", lambda: project(vol, g), repeats=repeats)
    sino = np.asarray(project(vol, g))[:, :, 0]
    theta = np.asarray(g.angles, np.float64)
    fwd.note = (
        f"error vs analytic {100 * best_error(sino, theta, np.asarray(g.u_mm(jnp.float32))):.2f}%"
    )
    p = project(vol, g)
    rec = measure("medphys", "2D parallel FBP", lambda: fbp(p, g, like=vol).data, repeats=repeats)
    img = np.asarray(fbp(p, g, like=vol).data)[:, :, 0]
    rec.note = f"error vs phantom {100 * fbp_error(img, truth):.2f}%"
    return [fwd.__dict__, rec.__dict__]


def parallel_skimage(repeats: int) -> list[dict]:
    from skimage.transform import iradon, radon

    truth = shepp_image(N2D)
    deg = np.arange(VIEWS) * 180.0 / VIEWS
    image = truth.T  # skimage: rows = y
    fwd = measure(
        "scikit-image",
        "2D parallel forward",
        lambda: radon(image, deg, circle=False),
        repeats=max(1, repeats // 2),
    )
    sino = radon(image, deg, circle=False).T
    n_det = sino.shape[1]
    s = np.arange(n_det) - n_det // 2
    fwd.note = f"error vs analytic {100 * best_error(sino, np.deg2rad(deg), s):.2f}%"
    rec = measure(
        "scikit-image",
        "2D parallel FBP",
        lambda: iradon(sino.T, deg, output_size=N2D, filter_name="ramp", circle=False),
        repeats=max(1, repeats // 2),
    )
    img = iradon(sino.T, deg, output_size=N2D, filter_name="ramp", circle=False)
    rec.note = f"error vs phantom {100 * fbp_error(img, truth):.2f}%"
    return [fwd.__dict__, rec.__dict__]


def parallel_astra(repeats: int) -> list[dict]:
    import astra

    truth = shepp_image(N2D)
    image = truth.T.astype(np.float32)  # ASTRA: rows = y
    angles = np.arange(VIEWS) * math.pi / VIEWS
    vol_geom = astra.create_vol_geom(N2D, N2D)
    proj_geom = astra.create_proj_geom("parallel", 1.0, NU, angles)
    proj_id = astra.create_projector("linear", proj_geom, vol_geom)

    def forward():
        sid, sino = astra.create_sino(image, proj_id)
        astra.data2d.delete(sid)
        return sino

    fwd = measure("ASTRA (CPU)", "2D parallel forward", forward, repeats=repeats)
    sino = forward()
    s = np.arange(NU) - (NU - 1) / 2
    fwd.note = f"error vs analytic {100 * best_error(sino, angles, s):.2f}%"

    def reconstruct():
        rec_id = astra.data2d.create("-vol", vol_geom)
        sino_id = astra.data2d.create("-sino", proj_geom, sino)
        cfg = astra.astra_dict("FBP")
        cfg["ReconstructionDataId"] = rec_id
        cfg["ProjectionDataId"] = sino_id
        cfg["ProjectorId"] = proj_id
        cfg["option"] = {"FilterType": "Ram-Lak"}
        alg = astra.algorithm.create(cfg)
        astra.algorithm.run(alg)
        out = astra.data2d.get(rec_id)
        astra.algorithm.delete(alg)
        astra.data2d.delete([rec_id, sino_id])
        return out

    rec = measure("ASTRA (CPU)", "2D parallel FBP", reconstruct, repeats=repeats)
    rec.note = f"error vs phantom {100 * fbp_error(reconstruct(), truth):.2f}%"
    return [fwd.__dict__, rec.__dict__]


# ----------------------------------------------------------------------------------------------
# cone beam 128³ → 128²

N3D = 128
ELLIPSOIDS = [  # centre (voxel units from the volume centre), semi-axes (voxels), value
    ((0.0, 0.0, 0.0), (52.0, 44.0, 56.0), 1.0),
    ((8.0, -6.0, 5.0), (20.0, 14.0, 25.0), 0.5),
    ((-15.0, 10.0, -8.0), (10.0, 12.0, 9.0), -0.6),
]


def cone_phantom(ss: int = 2) -> np.ndarray:
    c = np.arange(N3D) - (N3D - 1) / 2
    off = (np.arange(ss) + 0.5) / ss - 0.5
    out = np.zeros((N3D,) * 3)
    for ox in off:
        for oy in off:
            for oz in off:
                for (x0, y0, z0), (a, b, cc), v in ELLIPSOIDS:
                    q = (
                        ((c[:, None, None] + ox - x0) / a) ** 2
                        + ((c[None, :, None] + oy - y0) / b) ** 2
                        + ((c[None, None, :] + oz - z0) / cc) ** 2
                    )
                    out += v * (q <= 1.0)
    return (out / ss**3 * MU).astype(np.float32)


def cone_chords(origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Line integrals along rays given in voxel-centred coordinates (1 mm voxels)."""
    total = np.zeros(origins.shape[:-1])
    for centre, semi, v in ELLIPSOIDS:
        o = (origins - np.asarray(centre)) / np.asarray(semi)
        d = directions / np.asarray(semi)
        a, b = np.sum(d * d, -1), 2 * np.sum(o * d, -1)
        disc = b * b - 4 * a * (np.sum(o * o, -1) - 1)
        total += v * MU * np.sqrt(np.maximum(disc, 0.0)) / a
    return total


def cone_medphys(repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from medphys import Volume
    from medphys.simulators.geometry import ConeBeam
    from medphys.simulators.xray import project

    vol = Volume.create(cone_phantom(), spacing_mm=1.0)
    g = ConeBeam.create(
        n_views=1, n_u=128, n_v=128, du_mm=2.0, dv_mm=2.0, sod_mm=850.0, sdd_mm=1020.0
    )
    affine = np.asarray(vol.affine)
    loss = jax.jit(jax.grad(lambda d: jnp.sum(project(Volume(data=d, affine=affine), g) ** 2)))
    data = jnp.asarray(vol.data)
    fwd, grad = _interleaved(
        "medphys",
        {
            "cone 128³→128² DRR forward": lambda: project(vol, g),
            "cone 128³→128² DRR gradient": lambda: loss(data),
        },
        max(repeats, 3),
    )
    drr = np.asarray(project(vol, g))[0]
    r = g.rays(0, jnp.float32)
    ref = cone_chords(np.asarray(r.origins, np.float64), np.asarray(r.directions, np.float64))
    fwd.note = (
        f"error vs analytic {100 * np.linalg.norm(drr - ref) / np.linalg.norm(ref):.2f}%; "
        + _load()
    )
    grad.note = f"gradient / forward = {grad.steady_s / fwd.steady_s:.2f}; {_load()}"
    return [fwd.__dict__, grad.__dict__]


def cone_diffdrr(repeats: int) -> list[dict]:
    import torch
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from torchio import ScalarImage

    torch.set_num_threads(max(1, torch.get_num_threads()))
    phantom = cone_phantom()
    subject = read(ScalarImage(tensor=torch.zeros((1, N3D, N3D, N3D)), affine=np.eye(4)))
    drr = DRR(subject, sdd=1020.0, height=128, delx=2.0)
    drr.density = torch.as_tensor(phantom)
    rot = torch.zeros((1, 3))
    trans = torch.tensor([[0.0, 850.0, 0.0]])

    def forward():
        with torch.no_grad():
            return drr(rot, trans, parameterization="euler_angles", convention="ZXY")

    fwd = measure("DiffDRR 0.6.1", "cone 128³→128² DRR forward", forward, repeats=repeats)
    pose_src, pose_tgt = drr.detector(
        __import__("diffdrr.pose", fromlist=["convert"]).convert(
            rot, trans, parameterization="euler_angles", convention="ZXY"
        ),
        None,
    )
    src = drr.affine_inverse(pose_src)[0].detach().numpy().astype(np.float64)
    tgt = drr.affine_inverse(pose_tgt)[0].detach().numpy().astype(np.float64)
    with torch.no_grad():
        flat = drr.render(drr.density, pose_src, pose_tgt).reshape(-1).numpy()
    centre = (N3D - 1) / 2 if drr.renderer.voxel_shift == 0 else N3D / 2 - 0.0
    # voxel index space of DiffDRR: voxel k spans [k, k+1) with voxel_shift 0.5 → centre at k+0.5
    shift = 0.5 if drr.renderer.voxel_shift == 0.5 else 0.0
    o = src - (centre - shift)
    d = tgt - src
    length = np.linalg.norm(d, axis=-1, keepdims=True)
    ref = cone_chords(np.broadcast_to(o, d.shape), d / length)
    err = min(
        float(np.linalg.norm(flat - ref) / np.linalg.norm(ref)),
        float(
            np.linalg.norm(
                flat - cone_chords(np.broadcast_to(src - (N3D - 1) / 2, d.shape), d / length)
            )
            / np.linalg.norm(ref)
        ),
    )
    fwd.note = f"error vs analytic {100 * err:.2f}%"
    density = torch.as_tensor(phantom).requires_grad_(True)

    def gradient():
        drr.density = density
        img = drr(rot, trans, parameterization="euler_angles", convention="ZXY")
        (img**2).sum().backward()
        g = density.grad
        density.grad = None
        return g

    note = fwd.note
    fwd, grad = _interleaved(
        "DiffDRR 0.6.1",
        {"cone 128³→128² DRR forward": forward, "cone 128³→128² DRR gradient": gradient},
        max(repeats, 3),
    )
    fwd.note = f"{note}; {_load()}"
    grad.note = f"gradient / forward = {grad.steady_s / fwd.steady_s:.2f}; {_load()}"
    return [fwd.__dict__, grad.__dict__]


def _load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def _interleaved(tool: str, fns: dict[str, Any], rounds: int) -> list[Timing]:
    """First call of each, then ``rounds`` rounds calling each once in turn; the steady time is
    the minimum over rounds (the least disturbed by other load on a shared machine). Works for
    JAX and PyTorch results alike (``block_until_ready`` passes non-JAX values through)."""
    import jax

    first, best = {}, {}
    for task, fn in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        first[task] = time.perf_counter() - t0
        best[task] = math.inf
    for _ in range(rounds):
        for task, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            best[task] = min(best[task], time.perf_counter() - t0)
    return [
        Timing(tool, task, first[task], best[task], rounds, peak_rss_mb(), "min of rounds")
        for task in fns
    ]


def _vjp_case(n: int, views: int, repeats: int) -> list[Timing]:
    import jax
    import jax.numpy as jnp

    from medphys import Volume
    from medphys.simulators.geometry import ConeBeam
    from medphys.simulators.xray import _projector, backproject, project

    rng = np.random.default_rng(0)
    vol = Volume.create(rng.random((n, n, n), dtype=np.float32), spacing_mm=1.0)
    g = ConeBeam.create(
        n_views=views,
        n_u=n,
        n_v=n,
        du_mm=256.0 / n,
        dv_mm=256.0 / n,
        sod_mm=850.0,
        sdd_mm=1020.0,
        start_rad=0.3,
    )
    affine = np.asarray(vol.affine)
    data = jnp.asarray(vol.data)
    size = f"{n}³→{n}² ×{views}"
    y = project(vol, g)
    # jitted like the gradient, so that the ratio compares kernels, not boundary checks
    fwd = jax.jit(lambda d: project(Volume(data=d, affine=affine), g))
    fns: dict[str, Any] = {f"cone {size} forward": lambda: fwd(data)}
    gather_bounds = _projector.gather_bounds
    for label, bounds in (("gather", gather_bounds), ("scatter", lambda *a: None)):
        # the plan (and so the transpose) is chosen when project/backproject are traced
        _projector.gather_bounds = bounds
        loss = jax.jit(jax.grad(lambda d: jnp.sum(project(Volume(data=d, affine=affine), g) ** 2)))
        bp = jax.jit(lambda p: backproject(p, g, like=vol).data)
        jax.block_until_ready((loss(data), bp(y)))
        fns[f"cone {size} backprojection ({label})"] = lambda bp=bp: bp(y)
        fns[f"cone {size} gradient ({label})"] = lambda loss=loss: loss(data)
    _projector.gather_bounds = gather_bounds
    rows = _interleaved("medphys", fns, max(repeats, 3))
    for r in rows:
        r.note = f"/ forward = {r.steady_s / rows[0].steady_s:.2f}; {_load()}"
    return rows


def cone_vjp_medphys(repeats: int) -> list[dict]:
    """Forward, backprojection and gradient, gather vs scatter transpose (float32, CPU)."""
    rows: list[Timing] = []
    for n, views in ((128, 1), (128, 8), (256, 1)):
        rows += _vjp_case(n, views, repeats)
    return [r.__dict__ for r in rows]


def _kernels(op: Any) -> dict[str, Any]:
    """A prepared cone-beam operator with the slice-major sweep (what ``project`` runs) and with
    the ray-major kernel it replaced (private plan field; same samples, same weights)."""
    plan = dataclasses.replace(op.plan, sweep_rays=0)
    return {"sweep": op, "ray-major": dataclasses.replace(op, plan=plan)}


def cone512_medphys(repeats: int, views: int, kernel: str = "sweep") -> list[dict]:
    """Circular cone beam, 512³ → 512², ``views`` of 360 (the rest extrapolated)."""
    import jax
    import jax.numpy as jnp

    from medphys import Volume
    from medphys.simulators.geometry import ConeBeam
    from medphys.simulators.xray import prepare

    n, total = 512, 360
    # one copy of the volume, on the device (a host array too would add 0.5 GB to the peak)
    data = jnp.full((n, n, n), MU, jnp.float32)
    vol = Volume.create(data, spacing_mm=1.0)
    g = ConeBeam.create(
        n_views=views,
        n_u=512,
        n_v=512,
        du_mm=1.6,
        dv_mm=1.6,
        sod_mm=1000.0,
        sdd_mm=1500.0,
        arc_rad=2 * math.pi * views / total,
    )
    op = _kernels(prepare(vol.grid, g))[kernel]
    fn = jax.jit(op.project)
    t0 = time.perf_counter()
    jax.block_until_ready(fn(data))
    first = time.perf_counter() - t0
    t = measure(
        f"medphys ({kernel})",
        f"cone 512³→512², {views} of {total} views",
        lambda: fn(data),
        repeats=repeats,
    )
    t.first_s = first
    scale = total / views
    size_mb = (n**3 + views * 512 * 512) * 4 / 2**20
    t.note = (
        f"{t.steady_s / views:.3f} s per view; {total} views: "
        + (
            f"{t.steady_s:.0f} s measured"
            if views == total
            else f"{t.steady_s * scale:.0f} s extrapolated ×{scale:g} from {views} views"
        )
        + f"; peak RSS / (volume + projections) = {t.peak_rss_mb / size_mb:.2f}; {_load()}"
    )
    return [t.__dict__]


def cone_sweep_medphys(repeats: int) -> list[dict]:
    """The slice-major sweep against the ray-major kernel, interleaved (float32)."""
    import jax
    import jax.numpy as jnp

    from medphys import Volume
    from medphys.simulators.geometry import ConeBeam
    from medphys.simulators.xray import prepare

    rows: list[Timing] = []
    cases = (
        (128, 1, dict(du_mm=2.0, dv_mm=2.0, sod_mm=850.0, sdd_mm=1020.0)),
        (256, 8, dict(du_mm=3.2, dv_mm=3.2, sod_mm=1000.0, sdd_mm=1500.0, arc_rad=0.14)),
        (512, 2, dict(du_mm=1.6, dv_mm=1.6, sod_mm=1000.0, sdd_mm=1500.0, arc_rad=0.035)),
    )
    for n, views, kw in cases:
        data = np.random.default_rng(0).random((n, n, n), dtype=np.float32) * MU
        vol = Volume.create(data, spacing_mm=512.0 / n if n != 128 else 1.0)
        g = ConeBeam.create(n_views=views, n_u=n, n_v=n, **kw)
        ops = _kernels(prepare(vol.grid, g))
        x = jnp.asarray(data)
        fns = {f"cone {n}³→{n}² ×{views} ({k})": jax.jit(op.project) for k, op in ops.items()}
        first, results = [], []
        for f in fns.values():
            t0 = time.perf_counter()
            results.append(np.asarray(f(x)))
            first.append(time.perf_counter() - t0)
        a, b = results
        err = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
        out = _interleaved("medphys", {k: (lambda f=f, x=x: f(x)) for k, f in fns.items()}, repeats)
        sweep, ray = out
        for r, t in zip(out, first, strict=True):
            r.first_s = t  # compilation and one run
            r.note = f"{r.steady_s / views * 1e3:.1f} ms per view; {_load()}"
        sweep.note += (
            f"; ray-major / sweep = {ray.steady_s / sweep.steady_s:.2f}; max rel. diff {err:.1e}"
        )
        rows += out
    return [r.__dict__ for r in rows]


def fdk256_medphys(repeats: int) -> list[dict]:
    """FDK of 256³ from 360 views (1 mm voxels, 256² detector of 1.6 mm, sod 600, sdd 1000)."""
    import jax.numpy as jnp

    from medphys import Volume
    from medphys.simulators.ct import fdk
    from medphys.simulators.geometry import ConeBeam
    from medphys.simulators.xray import project

    n = 256
    c = np.arange(n) - (n - 1) / 2
    r2 = (c[:, None, None] / 100.0) ** 2 + (c[None, :, None] / 80.0) ** 2
    truth = (MU * ((r2 + (c[None, None, :] / 90.0) ** 2) <= 1.0)).astype(np.float32)
    vol = Volume.create(truth, spacing_mm=1.0)
    g = ConeBeam.create(
        n_views=360, n_u=256, n_v=256, du_mm=1.6, dv_mm=1.6, sod_mm=600.0, sdd_mm=1000.0
    )
    proj_t = measure("medphys", "cone 256³→256² ×360 forward", lambda: project(vol, g), repeats=1)
    proj_t.note = _load()
    p = project(vol, g)
    rec = measure(
        "medphys", "FDK 256³ from 360 views", lambda: fdk(p, g, like=vol).data, repeats=repeats
    )
    img = np.asarray(fdk(p, g, like=vol).data)
    inner = np.abs(c[None, None, :]) < 60  # away from the cone-beam artefacts at the poles
    inner = np.broadcast_to(inner, truth.shape)
    err = float(np.linalg.norm((img - truth)[inner]) / np.linalg.norm(truth[inner]))
    rec.note = f"error vs phantom (|z| < 60 mm) {100 * err:.1f}%; {_load()}"
    del jnp
    return [proj_t.__dict__, rec.__dict__]


CASES = {
    "parallel-medphys": parallel_medphys,
    "parallel-skimage": parallel_skimage,
    "parallel-astra": parallel_astra,
    "cone-medphys": cone_medphys,
    "cone-diffdrr": cone_diffdrr,
    "cone-vjp": cone_vjp_medphys,
    "fdk256": fdk256_medphys,
    "cone-sweep": cone_sweep_medphys,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", default=None)
    parser.add_argument("--views", type=int, default=36)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip 512³ and FDK")
    parser.add_argument("--only", default=None, help="comma-separated cases to run")
    parser.add_argument("--full512", action="store_true", help="all 360 views at 512³")
    parser.add_argument("--kernel", default="sweep", choices=("sweep", "ray-major"))
    args = parser.parse_args()
    if args.case == "cone512":
        print(json.dumps(cone512_medphys(args.repeats, args.views, args.kernel)))
        return
    if args.case is not None:
        print(json.dumps(CASES[args.case](args.repeats)))
        return
    repeats = 2 if args.quick else args.repeats
    cases = [*CASES, "cone512"]
    if args.only:
        cases = args.only.split(",")
    elif args.quick:
        cases = [c for c in cases if c not in ("cone512", "fdk256", "cone-sweep")]
    rows: list[Timing] = []
    for case in cases:
        runs = [["--repeats", str(repeats)]]
        if case == "cone512":
            views = "360" if args.full512 else str(args.views)
            runs = [
                ["--repeats", "1", "--views", views, "--kernel", kernel]
                for kernel in ("sweep", "ray-major")
            ]
        elif case == "fdk256":
            runs = [["--repeats", "1"]]
        elif case == "cone-sweep":
            runs = [["--repeats", "2"]]
        for extra in runs:
            try:
                out = run_isolated(__file__, "--case", case, *extra)
            except Exception as exc:  # a missing comparison tool: report and go on
                print(f"{case}: failed ({type(exc).__name__})", file=sys.stderr)
                continue
            rows.extend(Timing(**r) for r in out)
    print(json.dumps(machine()))
    for base in ("ASTRA (CPU)", "DiffDRR 0.6.1"):
        tasks = {r.task for r in rows if r.tool == base}
        if tasks:
            print(table([r for r in rows if r.task in tasks], baseline=base))
            print()
    own = [r for r in rows if r.note.startswith("/ forward")]
    if own:
        print("| task | first call (s) | steady, min of rounds (s) | / forward | peak RSS (MB) |")
        print("|---|---:|---:|---:|---:|")
        for r in own:
            ratio = r.note.split(";")[0].split("=")[1].strip()
            print(
                f"| {r.task} | {r.first_s:.3f} | {r.steady_s:.3f} | {ratio} | {r.peak_rss_mb:.0f} |"
            )
        print()
    big = [
        r
        for r in rows
        if r.task.startswith(
            ("cone 512", "FDK", "cone 256³→256² ×360", "cone 128³→128² ×1 ", "cone 256³→256² ×8 ")
        )
    ]
    if big:
        print(table(big))
    for r in rows:
        if r.note:
            print(f"- {r.tool}, {r.task}: {r.note}")


if __name__ == "__main__":
    main()
