"""The dataset job: phantoms → CT scan + reconstruction, MR image → NIfTI, sidecars, manifest.

Layout of an output folder::

    DIR/
      dataset.json                 the resolved config, its digest, versions
      manifest.jsonl               one JSON line per case: {"case", "ct", "mr", "label", ...}
      overview.png                 a montage of the cases (when enabled)
      cases/case-0000/
        label.nii.gz               uint8 label map (structure table in a header extension)
        ct.nii.gz                  reconstructed CT in HU (float32)
        mr.nii.gz                  MR magnitude image (float32)
        ct_projections.npy         simulated CT projections (optional, float32)
        case.json                  sidecar: config, seed, phantom parameters, versions

Every file is written to a temporary name and renamed. ``case.json`` is written last: a case is
complete when its sidecar exists and records the same config digest, so a rerun skips complete cases
and redoes the rest. Each case draws its randomness from ``fold_in(PRNGKey(seed), case_index)``, so
a case's bytes do not depend on which other cases ran before it.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .. import phantoms
from .._errors import ConfigError
from .._version import __version__
from ..io import save_nifti, write_text_atomic
from ..io._atomic import atomic_path
from ..io._nifti import structure_row
from ..volume import LabeledVolume, Volume
from ._config import GenerateConfig

MODALITIES = ("ct", "mr")
_DEPENDENCIES = ("jax", "jaxlib", "numpy", "scipy", "nibabel", "xraylib", "spekpy", "pydantic")


class OutputError(ValueError):
    """The output folder cannot be used (not writable, or holds another configuration's data)."""


def versions() -> dict[str, str]:
    """medphys's and its physics/numerics dependencies' versions, for provenance."""
    out = {"medphys": __version__, "python": platform.python_version()}
    for name in _DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def check_output_dir(out: Path) -> None:
    """Create ``out`` if needed and prove it is writable, before any work starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".medphys-write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"medphys generate: cannot write to the output folder {str(out)!r} "
            f"({exc.strerror or exc}); choose a folder you can write to with --out"
        ) from None


@dataclass(frozen=True)
class JobInputs:
    """The phantom families and protocols a job uses, loaded and validated once before any case."""

    families: tuple[phantoms.Phantom, ...]
    ct: Any
    mr: Any

    @property
    def phantom(self) -> phantoms.Phantom:
        """The first phantom family."""
        return self.families[0]

    def family(self, index: int) -> phantoms.Phantom:
        """The phantom family of case ``index`` (the families take turns)."""
        return self.families[index % len(self.families)]


def load_inputs(config: GenerateConfig) -> JobInputs:
    """Load (and so validate) every name in ``config``; raises before any simulation."""
    from .. import simulators

    return JobInputs(
        families=tuple(phantoms.load(name) for name in config.phantom.names),
        ct=simulators.load(config.ct.protocol),
        mr=simulators.load(config.mr.protocol),
    )


def case_name(index: int) -> str:
    return f"case-{index:04d}"


def _case_files(config: GenerateConfig) -> dict[str, str]:
    files = {"label": "label.nii.gz", "ct": "ct.nii.gz", "mr": "mr.nii.gz"}
    if config.output.save_projections:
        files["ct_projections"] = "ct_projections.npy"
    return files


def _is_complete(case_dir: Path, config: GenerateConfig) -> bool:
    sidecar = case_dir / "case.json"
    if not sidecar.is_file():
        return False
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if meta.get("config_digest") != config.digest():
        return False
    return all((case_dir / f).is_file() for f in meta.get("files", {}).values())


def _save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def simulate_case(
    key: jax.Array, config: GenerateConfig, inputs: JobInputs, *, index: int = 0
) -> tuple[LabeledVolume, Volume, Volume, np.ndarray, dict[str, Any]]:
    """Case ``index``: phantom → labels, CT (HU), MR image, CT projections, provenance."""
    # The job computes in float32 whatever the caller's `jax_enable_x64` setting, so the same
    # seed gives the same bytes from the command line and from a float64 session.
    with jax.enable_x64(False):
        return _simulate_case(key, config, inputs, index)


def _simulate_case(
    key: jax.Array, config: GenerateConfig, inputs: JobInputs, index: int
) -> tuple[LabeledVolume, Volume, Volume, np.ndarray, dict[str, Any]]:
    from ..simulators import ct as ct_sim
    from ..simulators import mr as mr_sim
    from ..simulators import xray

    k_phantom, k_ct, k_mr = jax.random.split(key, 3)
    base = inputs.family(index)
    if config.phantom.vary:
        params = phantoms.sample_params(k_phantom, base)
        phantom = phantoms.apply(params, base)
    else:
        params = None
        phantom = base
    p = config.phantom
    labels = phantoms.voxelize(
        phantom,
        shape=p.shape,
        spacing_mm=p.spacing_mm,
        center_mm=p.center_mm,
        supersample=p.supersample,
    )
    scan = xray.simulate(labels, inputs.ct, k_ct)
    ct_image = ct_sim.reconstruct(scan, inputs.ct, like=labels)
    mr_result = mr_sim.simulate(labels, inputs.mr, k_mr)
    provenance = {
        "phantom": base.name,
        "phantom_params": None if params is None else params.to_dict(),
    }
    return labels, ct_image, mr_result.image, np.asarray(scan.projections, np.float32), provenance


def generate(
    out: str | Path,
    config: GenerateConfig,
    *,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the dataset job; resume if ``out`` holds a partial run of the same configuration.

    Args:
        out: output folder (created if needed).
        config: the validated job configuration (`load_config`).
        overwrite: allow ``out`` to hold a dataset made with a different configuration; its
            cases are then regenerated.
        progress: called as ``progress(message, done, total)`` after each case.

    Returns:
        a summary: ``{"out", "cases", "generated", "skipped", "manifest", "overview"}``.

    Raises:
        OutputError: ``out`` is not writable, or holds another configuration's dataset and
            ``overwrite`` is false. Raised before any simulation.
        ConfigError / UnknownNameError: unknown phantom or protocol names (before any simulation).
    """
    out = Path(out)
    check_output_dir(out)
    dataset_file = out / "dataset.json"
    if dataset_file.is_file() and not overwrite:
        try:
            previous = json.loads(dataset_file.read_text(encoding="utf-8")).get("config_digest")
        except (OSError, ValueError):
            previous = None
        if previous not in (None, config.digest()):
            raise OutputError(
                f"medphys generate: {str(out)!r} holds a dataset made with a different configuration "
                "(its dataset.json differs); choose a new --out folder, or pass --overwrite to regenerate"
            )
    # Validate every name before any work starts.
    inputs = load_inputs(config)

    write_text_atomic(
        dataset_file,
        json.dumps(
            {
                "config": config.model_dump(mode="json"),
                "config_digest": config.digest(),
                "versions": versions(),
                "backend": jax.default_backend(),
                "layout": "cases/case-NNNN/{label,ct,mr}.nii.gz + case.json; manifest.jsonl",
            },
            indent=2,
        )
        + "\n",
    )
    root = jax.random.PRNGKey(config.seed)
    files = _case_files(config)
    generated, skipped = 0, 0
    for index in range(config.cases):
        name = case_name(index)
        case_dir = out / "cases" / name
        if _is_complete(case_dir, config) and not overwrite:
            skipped += 1
            if progress:
                progress(f"{name} already complete", index + 1, config.cases)
            continue
        case_dir.mkdir(parents=True, exist_ok=True)
        (case_dir / "case.json").unlink(missing_ok=True)
        key = jax.random.fold_in(root, index)
        labels, ct_image, mr_image, projections, provenance = simulate_case(
            key, config, inputs, index=index
        )
        save_nifti(labels, case_dir / files["label"])
        save_nifti(
            ct_image.with_data(np.asarray(ct_image.data, np.float32)), case_dir / files["ct"]
        )
        save_nifti(
            mr_image.with_data(np.asarray(mr_image.data, np.float32)), case_dir / files["mr"]
        )
        if "ct_projections" in files:
            _save_npy(projections, case_dir / files["ct_projections"])
        sidecar = {
            "case": name,
            "index": index,
            "seed": config.seed,
            "key": f"fold_in(PRNGKey({config.seed}), {index})",
            "config": config.model_dump(mode="json"),
            "config_digest": config.digest(),
            "files": files,
            "structures": [structure_row(s) for s in labels.structures],
            "affine": np.asarray(labels.affine).tolist(),
            "versions": versions(),
            "backend": jax.default_backend(),
            **provenance,
        }
        write_text_atomic(case_dir / "case.json", json.dumps(sidecar, indent=2) + "\n")
        generated += 1
        if progress:
            progress(f"{name} written", index + 1, config.cases)

    manifest = write_manifest(out, config)
    overview = write_overview(out, config) if config.output.montage else None
    return {
        "out": str(out),
        "cases": config.cases,
        "generated": generated,
        "skipped": skipped,
        "manifest": str(manifest),
        "overview": None if overview is None else str(overview),
    }


def write_manifest(out: Path, config: GenerateConfig) -> Path:
    """``manifest.jsonl``: one line per complete case, paths relative to ``out``.

    The keys ``ct``, ``mr`` and ``label`` name NIfTI files; MONAI's ``LoadImaged(keys=[...])``
    reads each line as it is (paths relative to the manifest's folder).
    """
    lines = []
    for index in range(config.cases):
        name = case_name(index)
        case_dir = out / "cases" / name
        if not _is_complete(case_dir, config):
            raise OutputError(
                f"medphys generate: case {name} is incomplete; rerun the same command"
            )
        meta = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))
        entry = {"case": name}
        entry.update({k: f"cases/{name}/{v}" for k, v in meta["files"].items()})
        entry["sidecar"] = f"cases/{name}/case.json"
        lines.append(json.dumps(entry))
    path = out / "manifest.jsonl"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def write_overview(out: Path, config: GenerateConfig, *, max_cases: int = 6) -> Path:
    """``overview.png``: label map, CT (axial and coronal) and MR for the first cases."""
    from ..io import load_nifti
    from ..viz import Panel, save_montage

    rows = []
    for index in range(min(config.cases, max_cases)):
        case_dir = out / "cases" / case_name(index)
        labels = load_nifti(case_dir / "label.nii.gz")
        ct_image = load_nifti(case_dir / "ct.nii.gz")
        mr_image = load_nifti(case_dir / "mr.nii.gz")
        name = case_name(index)
        meta = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))
        family = meta.get("phantom") or ""
        rows.append(
            [
                Panel(labels, f"{name} {family}".rstrip()),
                Panel(ct_image, "CT (HU) axial", window=(-1000.0, 400.0)),
                Panel(ct_image, "CT coronal", plane="coronal", window=(-1000.0, 400.0)),
                Panel(mr_image, "MR axial"),
                Panel(mr_image, "MR coronal", plane="coronal"),
            ]
        )
    return save_montage(
        rows,
        out / "overview.png",
        title=f"medphys generate: {', '.join(config.phantom.names)}, seed {config.seed}",
    )


__all__ = ["ConfigError", "GenerateConfig", "OutputError", "generate"]
