"""MR `simulate` end to end, Bloch tier vs tier 1, against MRzero's phase graphs; SENSE init/step.

Run (in a benchmark venv with ``mrzerocore==1.2.0`` and ``torch==2.13.0``, medphys installed):

    python benchmarks/bench_mr_simulate_tiers.py [--quick]

Scenarios, each tool in its own interpreter (so peak memory is its own), back to back:
    * a spin echo (TE 15 ms, TR 500 ms) of an n^2 one-slice phantom with full Cartesian encoding:
      MRzero 1.2.0 phase-distribution graph (``compute_graph`` + ``execute_graph``) on the same
      PD/T1/T2 maps vs ``medphys.simulators.mr.simulate`` with the tier-1 `SpinEcho` and with
      the Bloch tier (`BlochSpinEcho`, one isochromat per voxel, one dummy repetition), one
      uniform coil, noise-free; and the catalog protocol ``mr-t1-se-bloch`` (4 loop coils, noise
      at SNR 30) as users run it. medphys times include building the tissue maps from the
      labels, coils, noise and the reconstructed image; MRzero's only the k-space signal;
    * CG-SENSE, 8 coils, 2x equispaced, 128^2: ``sense(n_iter=30)`` (one compiled scan) vs
      ``sense_solver`` driven by hand (30 ``step`` calls from Python).

Times: first call (compilation included for JAX; graph construction included for MRzero) and the
steady-state median. Physics differs by design: tier 1 and the Bloch protocols assume ideal
spoiling, MRzero simulates gradient spoiling.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Timing, machine, measure, run_isolated, table

TE, TR = 0.015, 0.5
MATERIALS = ("air", "brain_white_matter", "brain_grey_matter", "csf")


def _labels(n: int):
    """An analytic head-like slice: background, white and grey ellipses, a CSF core."""
    import numpy as np

    x, y = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    u, v = x / (0.45 * n), y / (0.38 * n)
    r = u**2 + v**2
    core = (x / (0.08 * n)) ** 2 + (y / (0.15 * n)) ** 2 < 1
    return np.select([core, r < 0.6, r < 1], [3, 1, 2], 0).astype(np.int32)[:, :, None]


def _phantom(n: int):
    from medphys.volume import LabeledVolume

    rows = [(i, m, m) for i, m in enumerate(MATERIALS)]
    return LabeledVolume.create(_labels(n), rows, spacing_mm=(3.0, 3.0, 5.0))


def part_mrzero(n: int, repeats: int) -> list[Timing]:
    import MRzeroCore as mr0
    import numpy as np
    import torch

    import medphys.materials as mm

    props = [mm.get(m).mr(1.5) for m in MATERIALS]
    lab = _labels(n)
    pd, t1, t2 = (
        torch.tensor(np.array([getattr(p, k) for p in props])[lab], dtype=torch.float32)
        for k in ("pd", "t1_s", "t2_s")
    )
    t1 = torch.where(pd > 0, t1, 1.0)
    t2 = torch.where(pd > 0, t2, 1.0)
    data = mr0.VoxelGridPhantom(
        pd,
        t1,
        t2,
        torch.full((n, n, 1), 0.05),
        torch.zeros((n, n, 1)),
        torch.zeros((n, n, 1)),
        torch.ones((1, n, n, 1)),
        torch.ones((1, n, n, 1)),
        torch.diag(torch.tensor([3.0, 3.0, 5.0, 1.0])),
    ).build()
    dwell = 1e-5
    seq = mr0.Sequence()
    for k, line in enumerate([0, *range(n)]):  # one dummy repetition first, as BlochSpinEcho
        exc = seq.new_rep(1)
        exc.pulse.usage = mr0.PulseUsage.EXCIT
        exc.pulse.angle = torch.tensor(math.pi / 2)
        exc.pulse.phase = torch.tensor(math.pi / 2)
        exc.event_time[0] = TE / 2
        ref = seq.new_rep(n + 2)
        ref.pulse.usage = mr0.PulseUsage.REFOC
        ref.pulse.angle = torch.tensor(math.pi)
        ref.event_time[0] = TE / 2 - (n // 2 + 0.5) * dwell
        ref.gradm[0, 0] = -n / 2
        ref.gradm[0, 1] = line - n // 2
        ref.event_time[1 : n + 1] = dwell
        ref.gradm[1 : n + 1, 0] = 1.0
        ref.adc_usage[1 : n + 1] = 1 if k > 0 else 0
        ref.event_time[-1] = TR - TE - (n - n // 2) * dwell
        ref.gradm[-1, 0] = 2.0 * n  # spoiler
        ref.gradm[-1, 1] = -(line - n // 2)

    def forward():
        graph = mr0.compute_graph(seq, data, 200, 1e-3)
        return mr0.execute_graph(graph, seq, data, print_progress=False)

    note = f"phase-distribution graph, CPU, {torch.get_num_threads()} threads"
    return [measure("MRzero 1.2.0", f"SE {n}^2", forward, repeats=repeats, note=note)]


def part_medphys(n: int, repeats: int) -> list[Timing]:
    import dataclasses

    import jax

    import medphys.simulators as sims
    from medphys.simulators import mr

    phantom = _phantom(n)
    key = jax.random.key(0)
    tier1 = mr.MRProtocol.create(mr.SpinEcho.create(te_s=TE, tr_s=TR), field_t=1.5)
    bloch = dataclasses.replace(tier1, sequence=mr.BlochSpinEcho.create(te_s=TE, tr_s=TR))
    catalog = sims.load("mr-t1-se-bloch")

    def image(p):
        return lambda: mr.simulate(key, phantom, p).image.data

    note = f"{n * n} isochromats, {n + 1} repetitions"
    return [
        measure("medphys tier 1", f"SE {n}^2", image(tier1), repeats=repeats),
        measure("medphys Bloch", f"SE {n}^2", image(bloch), repeats=repeats, note=note),
        measure(
            "medphys Bloch",
            f"SE {n}^2, mr-t1-se-bloch (4 coils, noise)",
            image(catalog),
            repeats=repeats,
            note=note,
        ),
    ]


def part_sense(repeats: int) -> list[Timing]:
    import jax.numpy as jnp
    import numpy as np

    from medphys.simulators import mr

    n, n_iter = 128, 30
    img = _labels(n).astype(np.complex64)
    maps = mr.LoopCoils.create(8).sensitivities(
        jnp.asarray(np.diag([2.0, 2.0, 2.0, 1.0])), (n, n, 1), dtype=jnp.float32
    )
    mask = mr.EquispacedMask.create(2).sample_mask(None, n, dtype=jnp.float32)
    kspace = mr.fft2c(maps * img[None]) * mask[None, None, :, None]
    solver = mr.sense_solver(maps, mask)
    return [
        measure(
            "medphys sense",
            f"CG-SENSE 128^2 x 8 coils, {n_iter} it",
            lambda: mr.sense(kspace, maps, mask, n_iter=n_iter),
            repeats=repeats,
        ),
        measure(
            "medphys sense_solver",
            f"CG-SENSE 128^2 x 8 coils, {n_iter} it",
            lambda: solver.run(kspace, n_iter).x,
            repeats=repeats,
            note="init + 30 step calls from Python",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32^2 only, fewer repeats")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        if args.part == "mrzero":
            rows = part_mrzero(args.n, args.repeats)
        elif args.part == "medphys":
            rows = part_medphys(args.n, args.repeats)
        else:
            rows = part_sense(args.repeats)
        print(json.dumps([asdict(r) for r in rows]))
        return
    sizes = (32,) if args.quick else (32, 64)
    repeats = 2 if args.quick else 3
    rows: list[Timing] = []
    script = str(Path(__file__).resolve())
    load = [os.getloadavg()]
    for n in sizes:
        for part in ("mrzero", "medphys"):
            out = run_isolated(script, "--part", part, "--n", str(n), "--repeats", str(repeats))
            rows += [Timing(**r) for r in out]
    rows += [Timing(**r) for r in run_isolated(script, "--part", "sense", "--repeats", "3")]
    load.append(os.getloadavg())
    print(json.dumps(machine(), indent=2))
    print(f"load average (1, 5, 15 min) before: {load[0]}, after: {load[1]}")
    print(table(rows, baseline="MRzero 1.2.0"))
    for r in rows:
        if r.note:
            print(f"- {r.tool}, {r.task}: {r.note}")


if __name__ == "__main__":
    main()
