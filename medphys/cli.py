"""The ``medphys`` command.

    medphys generate --out DIR [--config FILE] [--cases N] [--seed S] [--overwrite]
                     [--engine local|ray] [--workers N] [--address ADDR]
    medphys trial --config NAME|FILE --out DIR [--pairs N] [--seed S] [--engine ...]
    medphys export nnunet DIR --out RAW --id N --name NAME | medphys export dicom DIR --out DIR2
    medphys refine train --real DIR --sim DATASET --out RUN | medphys refine apply RUN/refiner.npz
                   --dataset DATASET
    medphys audit physics --dataset DATASET [--real DIR]
    medphys info
    medphys --version
    medphys phantom list | medphys phantom show NAME --out FILE.png
    medphys simulate list

User errors (bad config, unknown names, unwritable folders) print one message and exit with status 2.
Ctrl-C and SIGTERM stop the job, print one line and exit with status 130 (143 for SIGTERM); a rerun
of the same command resumes.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ._cli_refine import audit_app, refine_app
from ._errors import ConfigError, UnknownNameError

app = typer.Typer(
    name="medphys",
    help="Digital phantoms and differentiable X-ray/CT/MR simulation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
phantom_app = typer.Typer(help="Phantoms from the catalog.", no_args_is_help=True)
export_app = typer.Typer(
    help="Convert a generated dataset for other tools (nnU-Net v2, DICOM).", no_args_is_help=True
)
simulate_app = typer.Typer(help="Scanner protocols from the catalog.", no_args_is_help=True)
app.add_typer(phantom_app, name="phantom")
app.add_typer(simulate_app, name="simulate")
app.add_typer(export_app, name="export")
app.add_typer(refine_app, name="refine")
app.add_typer(audit_app, name="audit")

_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


class UserError(Exception):
    """Raised for input problems; printed without a traceback, exit status 2."""


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM, raised where the job is, so temporary files are cleaned up.

    Not a `KeyboardInterrupt`: the command-line framework would turn that into a silent exit code.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _version_callback(value: bool) -> None:
    if value:
        from ._version import __version__

        _out.print(f"medphys {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Digital phantoms and differentiable X-ray/CT/MR simulation."""


@contextlib.contextmanager
def _engine_and_progress(
    label: str, total: int, engine: str, workers: int, address: str | None
) -> Iterator[tuple[Any, Callable[[str, int, int], None]]]:
    """The engine a command asked for, and a progress bar on stderr fed by ``report``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .pipelines import make_engine

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_err, transient=False) as bar:
        task = bar.add_task(label, total=total)

        def report(message: str, done: int, total: int) -> None:
            bar.update(task, completed=done, description=message)

        with make_engine(engine, workers=workers, address=address) as runner:
            yield runner, report


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if needed).")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Job config TOML (default: the embedded one).")
    ] = None,
    cases: Annotated[
        int | None, typer.Option("--cases", help="Number of cases (overrides config).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed (overrides config).")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Start over in a folder made from other inputs."),
    ] = False,
    engine: Annotated[
        str, typer.Option("--engine", help="Where cases run: local or ray.")
    ] = "local",
    workers: Annotated[
        int,
        typer.Option("--workers", help="Worker processes (local) or CPUs of a local Ray cluster."),
    ] = 1,
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="Ray cluster to join (auto, ray://host:port; default RAY_ADDRESS)."
        ),
    ] = None,
) -> None:
    """Generate a phantom-based CT + MR dataset (NIfTI, sidecars, manifest, overview PNG)."""
    from .pipelines import generate as run_job
    from .pipelines import load_config

    cfg = load_config(config, overrides={"cases": cases, "seed": seed})
    start = time.perf_counter()
    with _engine_and_progress("generating cases", cfg.cases, engine, workers, address) as (
        runner,
        report,
    ):
        summary = run_job(out, cfg, overwrite=overwrite, progress=report, engine=runner)
    elapsed = time.perf_counter() - start
    _out.print(
        f"{summary['generated']} case(s) generated, {summary['skipped']} already complete, "
        f"in {elapsed:.1f} s → {summary['out']}"
    )
    _out.print(f"manifest: {summary['manifest']}")
    if "refined" in summary:
        _out.print(f"refined {summary['refined']} case(s): ct-refined.nii.gz + refined.json")
    if summary["overview"]:
        _out.print(f"overview: {summary['overview']}")


@app.command()
def trial(
    config: Annotated[
        str, typer.Option("--config", help="Trial TOML: a name from trials/ or a path.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Report folder (created if needed).")],
    pairs: Annotated[
        int | None, typer.Option("--pairs", help="Signal-present/absent pairs (overrides config).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed (overrides config).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start over in a folder made from other inputs.")
    ] = False,
    engine: Annotated[
        str, typer.Option("--engine", help="Where cases run: local or ray.")
    ] = "local",
    workers: Annotated[
        int,
        typer.Option("--workers", help="Worker processes (local) or CPUs of a local Ray cluster."),
    ] = 1,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster to join (default RAY_ADDRESS).")
    ] = None,
) -> None:
    """Run an in-silico lesion-detection trial: ROIs, observer, AUC and ΔAUC, an HTML report."""
    from .pipelines import load_trial, run_trial

    cfg = load_trial(config, overrides={"pairs": pairs, "seed": seed})
    start = time.perf_counter()
    with _engine_and_progress("trial cases", 2 * cfg.pairs, engine, workers, address) as (
        runner,
        report,
    ):
        try:
            results = run_trial(out, cfg, overwrite=overwrite, engine=runner, progress=report)
        except ValueError as exc:
            if type(exc) is not ValueError:
                raise
            raise UserError(str(exc)) from None
    for arm, r in results["arms"].items():
        lo, hi = r["auc_ci"]
        _out.print(f"{arm:12s} AUC {r['auc']:.3f} [{lo:.3f}, {hi:.3f}]  d' {r['dprime']:.2f}")
    for c in results["comparisons"]:
        lo, hi = c["ci"]
        _out.print(
            f"ΔAUC {c['arms'][1]} − {c['arms'][0]}: {c['delta_auc']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        )
    _out.print(f"in {time.perf_counter() - start:.1f} s → {out / 'report.html'}")


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated option (``"ct, mr"``) as names."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _export_errors(call):  # type: ignore[no-untyped-def]
    try:
        return call()
    except (FileNotFoundError, FileExistsError, ValueError, TypeError) as exc:
        raise UserError(str(exc)) from None


@export_app.command("nnunet")
def export_nnunet(
    dataset: Annotated[Path, typer.Argument(help="A folder written by medphys generate.")],
    out: Annotated[Path, typer.Option("--out", help="nnU-Net's raw folder (nnUNet_raw).")],
    dataset_id: Annotated[int, typer.Option("--id", help="nnU-Net dataset number, 1-999.")],
    name: Annotated[str, typer.Option("--name", help="Dataset name (letters, digits, - _).")],
    channels: Annotated[
        str, typer.Option("--channels", help="Image keys as channels, comma-separated: ct,mr.")
    ] = "ct",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace that dataset.")] = False,
) -> None:
    """Write an nnU-Net v2 raw dataset (imagesTr/*_0000.nii.gz, labelsTr, dataset.json)."""
    from .io import export_nnunet as run

    folder = _export_errors(
        lambda: run(
            dataset,
            out,
            dataset_id=dataset_id,
            name=name,
            channels=_names(channels),
            overwrite=overwrite,
        )
    )
    _out.print(f"wrote {folder}")


@export_app.command("dicom")
def export_dicom(
    dataset: Annotated[Path, typer.Argument(help="A folder written by medphys generate.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the DICOM case folders.")],
    modalities: Annotated[
        str, typer.Option("--modalities", help="Images to write, comma-separated: ct,mr.")
    ] = "ct,mr",
    seg: Annotated[
        bool, typer.Option("--seg/--no-seg", help="Also a DICOM-SEG of the labels.")
    ] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace .dcm files.")] = False,
) -> None:
    """Write DICOM CT/MR series per case (synthetic-data marked) and a DICOM-SEG of the labels."""
    from .io import export_dicom as run

    folders = _export_errors(
        lambda: run(
            dataset,
            out,
            modalities=_names(modalities),
            seg=seg,
            overwrite=overwrite,
        )
    )
    _out.print(f"wrote {len(folders)} case folder(s) under {out}")


@app.command()
def info() -> None:
    """Version, JAX backend and devices, and the catalogs."""
    import jax

    from . import materials, phantoms, simulators
    from .pipelines import versions

    for name, version in versions().items():
        _out.print(f"{name:10s} {version}")
    _out.print(f"backend    {jax.default_backend()}")
    _out.print(f"devices    {', '.join(str(d) for d in jax.devices())}")
    _out.print(f"phantoms   {', '.join(phantoms.names())}")
    _out.print(f"protocols  {', '.join(simulators.names())}")
    _out.print(f"materials  {len(materials.names())} ({', '.join(materials.names()[:8])}, ...)")


@phantom_app.command("list")
def phantom_list() -> None:
    """List the phantoms in the catalog."""
    from . import phantoms

    for name in phantoms.names():
        _out.print(f"{name:20s} {phantoms.load(name).description}")


def _fit_grid(phantom, spacing_mm: float) -> tuple[tuple[int, int, int], tuple[float, ...]]:
    """Grid shape and centre that hold the whole phantom (found on a coarse 10 mm grid)."""
    import numpy as np

    from . import phantoms

    coarse_mm, coarse = 10.0, (96, 96, 128)
    lv = phantoms.voxelize(
        phantom, shape=coarse, spacing_mm=coarse_mm, fractions=phantoms.Fractions.NONE
    )
    idx = np.argwhere(np.asarray(lv.labels) > 0)
    if idx.size == 0:
        return (128, 128, 112), (0.0, 0.0, 0.0)
    affine = np.asarray(lv.affine, dtype=np.float64)
    lo = affine[:3, :3] @ (idx.min(0) - 1.0) + affine[:3, 3]
    hi = affine[:3, :3] @ (idx.max(0) + 1.0) + affine[:3, 3]
    n = np.ceil(np.abs(hi - lo) / spacing_mm).astype(int) + 1
    return (int(max(n[0], n[1])), int(max(n[0], n[1])), int(n[2])), tuple((lo + hi) / 2)


@phantom_app.command("show")
def phantom_show(
    name: Annotated[str, typer.Argument(help="Catalog name or TOML path.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")],
    spacing_mm: Annotated[float, typer.Option(help="Voxel size (mm).")] = 3.0,
    size: Annotated[
        int | None, typer.Option(help="Voxels along x and y (default: fit the phantom).")
    ] = None,
    slices: Annotated[
        int | None, typer.Option(help="Voxels along z (default: fit the phantom).")
    ] = None,
    render: Annotated[
        bool, typer.Option("--render", help="A 3-D surface render instead of slices.")
    ] = False,
    view: Annotated[
        str, typer.Option(help="Render view: anterior, posterior, left, right, superior.")
    ] = "anterior",
    respiratory_phase: Annotated[
        float | None, typer.Option(help="Breathing phase in [0, 1) (0.5 end-inspiration).")
    ] = None,
    cardiac_phase: Annotated[
        float | None, typer.Option(help="Heartbeat phase in [0, 1) (0.4 end-systole).")
    ] = None,
) -> None:
    """Voxelize a phantom and write axial, coronal and sagittal slices (or a 3-D render) as PNG."""
    from . import phantoms
    from .viz import Panel, render_labels, save_montage

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"phantom show: cannot create the folder of --out {str(out)!r} ({exc.strerror or exc})"
        ) from None
    if spacing_mm <= 0 or (size is not None and size < 1) or (slices is not None and slices < 1):
        raise UserError(
            f"phantom show: --spacing-mm, --size and --slices must be positive "
            f"(got {spacing_mm}, {size}, {slices})"
        )
    phantom = phantoms.load(name)
    if respiratory_phase is not None or cardiac_phase is not None:
        try:
            phantom = phantom.at(respiratory_phase=respiratory_phase, cardiac_phase=cardiac_phase)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    shape, centre = _fit_grid(phantom, spacing_mm)
    shape = (size or shape[0], size or shape[1], slices or shape[2])
    labels = phantoms.voxelize(
        phantom,
        shape=shape,
        spacing_mm=spacing_mm,
        center_mm=centre,
        fractions=phantoms.Fractions.NONE,
    )
    if render:
        try:
            render_labels(labels, out, view=view, title=phantom.name)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    else:
        panels = [
            Panel(labels, f"{phantom.name} {plane}", plane=plane)
            for plane in ("axial", "coronal", "sagittal")
        ]
        save_montage([panels], out)
    _out.print(f"wrote {out}")


@simulate_app.command("list")
def simulate_list() -> None:
    """List the protocols in the catalog."""
    from . import simulators
    from ._catalog import resolve
    from ._config import read_toml

    for name in simulators.names():
        data = read_toml(resolve("simulators", name))
        _out.print(f"{name:20s} {data.get('modality', '?'):10s} {data.get('description', '')}")


# The signals received during `main`. A signal that lands inside a finaliser or a garbage-
# collection callback (JAX registers one) cannot stop the job from there: an exception raised
# there is swallowed ("Exception ignored in ..."). The handler then delivers the signal again a
# moment later, outside it; and should an exception still be lost, the record makes the run exit
# non-zero.
_received: list[int] = []
_redelivery: list[threading.Timer] = []


def _in_finaliser(frame: Any) -> bool:
    """Whether ``frame`` runs inside a ``__del__`` or a `gc.callbacks` function."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_code in callbacks:
            return True
        frame = frame.f_back
    return False


def _raise_interrupted(signum: int, frame: Any) -> None:
    _received.append(signum)
    if _in_finaliser(frame):
        timer = threading.Timer(0.01, os.kill, (os.getpid(), signum))
        _redelivery.append(timer)
        timer.start()
        return
    raise Interrupted(signum)


def _interrupted(signum: int) -> int:
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    _err.print(
        f"medphys: {what}; complete cases are kept, rerun the same command to resume",
        soft_wrap=True,
    )
    return 128 + signum


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medphys`` console script; returns the exit status."""
    from .pipelines import EngineError, OutputError

    handled = (signal.SIGINT, signal.SIGTERM)
    _received.clear()
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in handled}
    try:
        result = app(args=argv, standalone_mode=False)
        if _received:  # the signal's exception was swallowed on its way: still an interruption
            return _interrupted(_received[0])
    except (ConfigError, UnknownNameError, OutputError, EngineError, UserError) as exc:
        _err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", markup=True, soft_wrap=True)
        return 2
    except (Interrupted, typer.Abort, KeyboardInterrupt) as exc:
        return _interrupted(getattr(exc, "signum", signal.SIGINT))
    except Exception as exc:
        # usage errors of the command-line parser (typer/click): they know how to show themselves
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show(file=sys.stderr)
            return int(exc.exit_code)  # type: ignore[attr-defined]
        raise
    finally:
        for timer in _redelivery:
            timer.cancel()
        _redelivery.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # click returns an int exit code (e.g. from typer.Exit) in non-standalone mode
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
