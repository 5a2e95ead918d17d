"""MR simulation: medphys tiers 1 and 3 against MRzero's phase-distribution graphs (PyTorch, CPU).

Run (in a benchmark venv with ``mrzerocore==1.2.0`` and ``torch==2.13.0``):

    python benchmarks/bench_mr.py [--quick]

Scenarios, each in its own interpreter (so peak memory is its own):
    * spin echo with full Cartesian encoding of a 64^2 and a 128^2 slice (TE 20 ms, TR 500 ms):
      MRzero 1.2.0 phase-distribution graph (``compute_graph`` + ``execute_graph``; its isochromat
      simulator is not used, see ANCHORS.md) vs medphys tier 1 (signal equation + FFT) and
      tier 3 (Bloch, one isochromat per voxel); forward and forward + backward (gradient of the
      summed k-space magnitude with respect to the T2 map);
    * tier-1 throughput (signal equation + encoding FFT) in voxels per second;
    * Bloch throughput in spin-steps per second (65,536 isochromats, a 64^2 gradient-echo
      readout, float32), forward and forward + backward.

Bloch rows: "events" is the default integrator (free intervals in closed form, the coefficients
of a block of events computed together, the readouts of all lines as one matrix product per
readout class), "time-stepped" the reference (``time_stepped=True``). Spin-steps per second are
*equivalent time-stepped* spin-steps: isochromats x raster steps of the lowered sequence (the
reference's work) divided by the measured wall time; the event integrator does fewer, larger
steps, so read them together with the times.

Times: first call (compilation included for JAX; graph construction included for MRzero) and the
steady-state median. The physics differs by design: tier 1 assumes ideal spoiling, tier 3 and
MRzero simulate the sequence (MRzero with gradient spoiling, medphys with ideal spoiling here).
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

TE, TR = 0.02, 0.5


def _maps(n: int):
    """An analytic head-like slice: background, 'white' and 'grey' ellipses, a 'CSF' core."""
    import numpy as np

    x, y = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    u, v = x / (0.45 * n), y / (0.38 * n)
    head = u**2 + v**2 < 1
    inner = u**2 + v**2 < 0.6
    core = (x / (0.08 * n)) ** 2 + (y / (0.15 * n)) ** 2 < 1
    pd = np.where(core, 1.0, np.where(inner, 0.7, np.where(head, 0.8, 0.0)))
    t1 = np.where(core, 4.0, np.where(inner, 0.8, 1.3))
    t2 = np.where(core, 2.0, np.where(inner, 0.08, 0.11))
    return pd.astype(np.float32), t1.astype(np.float32), t2.astype(np.float32)


def part_mrzero(n: int, repeats: int) -> list[Timing]:
    import MRzeroCore as mr0
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    pd, t1, t2 = _maps(n)

    def phantom(requires_grad: bool):
        t2_t = torch.tensor(t2[:, :, None], requires_grad=requires_grad)
        ph = mr0.VoxelGridPhantom(
            torch.tensor(pd[:, :, None]),
            torch.tensor(t1[:, :, None]),
            t2_t,
            torch.full((n, n, 1), 0.05),
            torch.zeros((n, n, 1)),
            torch.zeros((n, n, 1)),
            torch.ones((1, n, n, 1)),
            torch.ones((1, n, n, 1)),
            torch.diag(torch.tensor([3.0, 3.0, 3.0, 1.0])),
        )
        return ph.build(), t2_t

    dwell = 2e-5
    seq = mr0.Sequence()
    for line in range(n):
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
        ref.adc_usage[1 : n + 1] = 1
        ref.event_time[-1] = TR - TE - (n - n // 2) * dwell
        ref.gradm[-1, 0] = 2.0 * n  # spoiler
        ref.gradm[-1, 1] = -(line - n // 2)

    def forward():
        data, _ = phantom(False)
        graph = mr0.compute_graph(seq, data, 200, 1e-3)
        return mr0.execute_graph(graph, seq, data, print_progress=False)

    def forward_backward():
        data, t2_t = phantom(True)
        graph = mr0.compute_graph(seq, data, 200, 1e-3)
        signal = mr0.execute_graph(graph, seq, data, print_progress=False)
        signal.abs().sum().backward()
        return t2_t.grad

    note = "phase-distribution graph, CPU"
    return [
        measure("MRzero 1.2.0", f"SE {n}^2 forward", forward, repeats=repeats, note=note),
        measure("MRzero 1.2.0", f"SE {n}^2 fwd+bwd", forward_backward, repeats=repeats, note=note),
    ]


def part_medphys_se(n: int, repeats: int, bloch: bool) -> list[Timing]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from medphys.simulators import mr

    pd, t1, t2 = (jnp.asarray(a) for a in _maps(n))
    se = mr.SpinEcho.create(te_s=TE, tr_s=TR)

    @jax.jit
    def tier1(t2):
        m = mr.signal(se, pd[:, :, None], t1[:, :, None], t2[:, :, None])
        return mr.fft2c(m)

    grad1 = jax.jit(jax.grad(lambda t2: jnp.sum(jnp.abs(tier1(t2)))))
    rows = [
        measure("medphys tier 1", f"SE {n}^2 forward", lambda: tier1(t2), repeats=repeats),
        measure("medphys tier 1", f"SE {n}^2 fwd+bwd", lambda: grad1(t2), repeats=repeats),
    ]
    if bloch:
        enc = mr.Cartesian2D.create((n, n), (3.0 * n, 3.0 * n), dwell_s=2e-5)
        seq = mr.lower(mr.spin_echo(te_s=TE, tr_s=TR, encoding=enc), dtype=jnp.float32)
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        pos = np.stack([(i - n // 2) * 3.0, (j - n // 2) * 3.0, 0.0 * i], -1).reshape(-1, 3)

        def run(t2, time_stepped=False):
            spins = mr.Spins.create(
                pd=pd.ravel(), t1_s=t1.ravel(), t2_s=t2.ravel(), position_mm=pos, dtype=jnp.float32
            )
            return mr.bloch(seq, spins, time_stepped=time_stepped)

        grad3 = jax.grad(lambda t2: jnp.sum(jnp.abs(run(t2))))
        steps = n * n * seq.n_steps
        note = f"{n * n} isochromats x {seq.n_steps} steps"
        cases = [
            ("medphys Bloch (events)", "forward", lambda: run(t2), repeats),
            ("medphys Bloch (events)", "fwd+bwd", lambda: grad3(t2), repeats),
        ]
        if n <= 64:
            cases.append(("medphys Bloch (time-stepped)", "forward", lambda: run(t2, True), 1))
        for tool, what, fn, reps in cases:
            row = measure(tool, f"SE {n}^2 {what}", fn, repeats=reps, note=note)
            row.note += f"; {steps / row.steady_s:.3g} equivalent spin-steps/s"
            rows.append(row)
    return rows


def part_throughput(repeats: int) -> list[Timing]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from medphys.simulators import mr

    shape = (256, 256, 64)
    rng = np.random.default_rng(0)
    pd = jnp.asarray(rng.uniform(0.5, 1.0, shape), jnp.float32)
    t1 = jnp.asarray(rng.uniform(0.5, 2.0, shape), jnp.float32)
    t2 = jnp.asarray(rng.uniform(0.05, 0.2, shape), jnp.float32)
    se = mr.SpinEcho.create(te_s=TE, tr_s=TR)
    tier1 = jax.jit(lambda pd, t1, t2: mr.fft2c(mr.signal(se, pd, t1, t2)))
    voxels = math.prod(shape)
    row = measure(
        "medphys tier 1", "signal + FFT 256x256x64", lambda: tier1(pd, t1, t2), repeats=repeats
    )
    row.note = f"{voxels / row.steady_s:.3g} voxels/s"
    rows = [row]

    n_spins, n = 65536, 64
    pos = rng.uniform(-96.0, 96.0, (n_spins, 3)).astype(np.float32)
    pos[:, 2] = 0.0
    b0 = rng.normal(0.0, 10.0, n_spins)
    enc = mr.Cartesian2D.create((n, n), (192.0, 192.0), dwell_s=1e-5)
    seq = mr.lower(
        mr.gradient_echo(te_s=0.004, tr_s=0.008, flip_deg=15.0, encoding=enc), dtype=jnp.float32
    )
    t2s = jnp.full((n_spins,), 0.08, jnp.float32)

    def run(t2s, time_stepped=False):
        spins = mr.Spins.create(
            pd=1.0, t1_s=1.0, t2_s=t2s, b0_hz=b0, position_mm=pos, dtype=jnp.float32
        )
        return mr.bloch(seq, spins, time_stepped=time_stepped)

    grad = jax.grad(lambda t2s: jnp.sum(jnp.abs(run(t2s))))
    grad_ts = jax.grad(lambda t2s: jnp.sum(jnp.abs(run(t2s, True))))
    spin_steps = n_spins * seq.n_steps
    task = "Bloch GRE 64^2, 65,536 spins"
    for tool, what, fn, reps in (
        ("medphys Bloch (events)", "forward", lambda: run(t2s), max(1, repeats // 2)),
        ("medphys Bloch (events)", "fwd+bwd", lambda: grad(t2s), max(1, repeats // 2)),
        ("medphys Bloch (time-stepped)", "forward", lambda: run(t2s, True), 1),
        ("medphys Bloch (time-stepped)", "fwd+bwd", lambda: grad_ts(t2s), 1),
    ):
        row = measure(tool, f"{task}, {what}", fn, repeats=reps)
        row.note = f"{spin_steps / row.steady_s:.3g} equivalent spin-steps/s ({seq.n_steps} steps)"
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64^2 only, fewer repeats")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        if args.part == "mrzero":
            rows = part_mrzero(args.n, args.repeats)
        elif args.part == "medphys":
            rows = part_medphys_se(args.n, args.repeats, bloch=True)
        else:
            rows = part_throughput(args.repeats)
        print(json.dumps([asdict(r) for r in rows]))
        return
    sizes = (64,) if args.quick else (64, 128)
    repeats = 2 if args.quick else 3
    rows: list[Timing] = []
    script = str(Path(__file__).resolve())
    for n in sizes:
        for part in ("mrzero", "medphys"):
            out = run_isolated(script, "--part", part, "--n", str(n), "--repeats", str(repeats))
            rows += [Timing(**r) for r in out]
    rows += [Timing(**r) for r in run_isolated(script, "--part", "throughput", "--repeats", "3")]
    info = machine()
    info["loadavg_1_5_15"] = os.getloadavg()
    print(json.dumps(info, indent=2))
    print(table(rows, baseline="MRzero 1.2.0"))
    for r in rows:
        if r.tool == "medphys tier 1":
            r.note = f"steady {1e3 * r.steady_s:.3g} ms" + (f"; {r.note}" if r.note else "")
        if r.note:
            print(f"- {r.tool}, {r.task}: {r.note}")


if __name__ == "__main__":
    main()
