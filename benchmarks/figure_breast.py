"""The README's breast picture: a procedural breast compressed between paddles by the elasticity
network, then imaged by digital mammography (DM) and breast tomosynthesis (DBT).

Run:

    python benchmarks/figure_breast.py [--out docs/breast-dm-dbt.png]

Steps (CPU, about 5 minutes):

1. `phantoms.sample_breast_params(key(0), density="b")` and `make_breast`: a class-b breast.
2. `neural.compress_breast`: VICTRE's fat (neo-Hookean, 5 kPa, ν 0.49) pressed by two rigid
   frictionless paddles to the class's compressed thickness (penalty 20 kPa/mm; chest wall a
   roller), 4 mm quadrature, its default training; the compression's warp deforms the phantom.
3. Voxelisation at 0.5 mm; the breast is moved onto the detector (z from 0 up).
4. DM: the W/Rh spectrum, a-Se panel and dose of the catalog's `mammo-wrh-28kvp`, on a 0.2 mm
   panel; DBT: the same beam over 15 views and ±7.5° (`dbt-15views-15deg`'s sweep), 0.4 mm panel,
   reconstructed by `ct.dbt_fbp` on 1 mm planes parallel to the detector.

The figure shows the mid-sagittal labels before and after compression, the DM image and one DBT
plane, each with its scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/breast-dm-dbt.png"))
    parser.add_argument("--spacing", type=float, default=0.5, help="voxel size (mm)")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medphys import neural, phantoms
    from medphys import simulators as sims
    from medphys.simulators import ct, xray

    t0 = time.perf_counter()
    params = phantoms.sample_breast_params(jax.random.key(0), density="b")
    breast = phantoms.make_breast(params)
    compression = neural.compress_breast(jax.random.key(1), params)
    print(compression.solution.summary, flush=True)
    pressed = compression.apply(breast)
    half = compression.thickness_mm / 2

    lo, hi = (np.asarray(b, float) for b in params.bounds_mm())
    h = args.spacing
    extent = np.array([hi[0] - lo[0] + 40.0, hi[1] + 25.0, 2 * half + 4.0])  # room to spread
    shape_vox = tuple(int(np.ceil(e / h)) for e in extent)
    centre = (0.0, extent[1] / 2 - 5.0, 0.0)
    tall = float(hi[2] - lo[2]) + 4.0  # the uncompressed breast, for the mid-sagittal picture
    before = phantoms.voxelize(
        breast, shape=(1, shape_vox[1], int(np.ceil(tall / h))), spacing_mm=h, center_mm=centre
    )
    after = phantoms.voxelize(pressed, shape=shape_vox, spacing_mm=h, center_mm=centre)
    lifted = np.asarray(after.affine).copy()
    lifted[2, 3] += half + 1.0  # the lower paddle on the detector (z = 0)
    on_detector = dataclasses.replace(after, affine=lifted)
    print(f"voxelised {shape_vox} at {h} mm in {time.perf_counter() - t0:.0f} s", flush=True)

    dm_reference = sims.load("mammo-wrh-28kvp")
    field = (extent[0], extent[1])
    dm_geometry = xray.mammography_geometry(
        sid_mm=700.0, n_u=int(field[0] / 0.2), n_v=int(field[1] / 0.2), du_mm=0.2, dv_mm=0.2
    )
    dm = xray.simulate(
        jax.random.key(2),
        on_detector,
        dataclasses.replace(dm_reference, geometry=dm_geometry),
    )
    dbt_reference = sims.load("dbt-15views-15deg")
    dbt_geometry = xray.mammography_geometry(
        sid_mm=700.0,
        n_u=int(field[0] / 0.4),
        n_v=int(field[1] / 0.4),
        du_mm=0.4,
        dv_mm=0.4,
        n_views=15,
        arc_deg=15.0,
    )
    dbt = xray.simulate(
        jax.random.key(3),
        on_detector,
        dataclasses.replace(dbt_reference, geometry=dbt_geometry),
    )
    grid = ct.dbt_grid(dbt_geometry, thickness_mm=2 * half + 2.0, slice_mm=1.0, pixel_mm=0.4)
    planes = np.asarray(ct.dbt_fbp(dbt.projections, dbt_geometry, like=grid).data)
    print(f"imaged in {time.perf_counter() - t0:.0f} s", flush=True)

    fig, ax = plt.subplots(1, 4, figsize=(17, 4.4))
    for a, labels, title in (
        (ax[0], np.asarray(before.labels)[0], "uncompressed (mid-sagittal labels)"),
        (ax[1], np.asarray(after.labels)[shape_vox[0] // 2], f"compressed to {2 * half:.0f} mm"),
    ):
        z_half = labels.shape[1] * h / 2
        a.imshow(
            labels.T,
            origin="lower",
            cmap="tab10",
            vmin=0,
            vmax=9,
            interpolation="nearest",
            extent=(centre[1] - extent[1] / 2, centre[1] + extent[1] / 2, -z_half, z_half),
        )
        a.set_title(title)
        a.set_xlabel("chest wall → nipple (mm)")
        a.set_ylabel("z (mm)")
    image = np.asarray(dm.projections[0])
    ax[2].imshow(image.T, origin="lower", cmap="gray", extent=(0, field[0], 0, field[1]))
    ax[2].set_title("DM, W/Rh 28 kVp (post-log)")
    ax[2].set_xlabel("mm")
    k = planes.shape[2] // 2
    height = float(np.asarray(grid.affine)[2, 3] + k * np.asarray(grid.affine)[2, 2])
    plane = planes[:, :, k]
    low, high = np.percentile(plane, [1, 99])
    ax[3].imshow(
        plane.T,
        origin="lower",
        cmap="gray",
        vmin=low,
        vmax=high,
        extent=(0, field[0], 0, field[1]),
    )
    ax[3].set_title(f"DBT plane z = {height:.1f} mm, 15 views ±7.5°")
    ax[3].set_xlabel("mm")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
