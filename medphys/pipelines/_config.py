"""The configuration of the dataset job (`medphys generate`), validated with pydantic."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pydantic

from .._config import Strict, read_toml, validate

PositiveInt = Annotated[int, pydantic.Field(ge=1)]
PositiveMM = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)]


class PhantomSection(Strict):
    #: one phantom family, or several that the cases take in turn (case i: ``name[i % n]``)
    name: Annotated[
        list[str],
        pydantic.BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
        pydantic.Field(min_length=1),
    ] = pydantic.Field(default_factory=lambda: ["adult-male", "adult-female"])
    vary: bool = True
    # the same defaults as the embedded default_generate.toml (a test keeps them equal)
    shape: tuple[PositiveInt, PositiveInt, PositiveInt] = (144, 144, 62)
    spacing_mm: tuple[PositiveMM, PositiveMM, PositiveMM] = (3.5, 3.5, 6.0)
    center_mm: tuple[float, float, float] = (0.0, 0.0, 60.0)
    supersample: Annotated[int, pydantic.Field(ge=1, le=8)] = 2

    @property
    def names(self) -> tuple[str, ...]:
        """The phantom families, in the order the cases take them."""
        return tuple(self.name)


class CTSection(Strict):
    protocol: str = "ct-chest-120kvp"
    #: water beam-hardening correction before reconstruction: ``true``/``false`` override the
    #: protocol's own setting; absent: as the protocol says
    beam_hardening_correction: bool | None = None


class MRSection(Strict):
    protocol: str = "mr-t1-se"


class OutputSection(Strict):
    montage: bool = True
    save_projections: bool = False
    #: the MR scan of each case (coil k-space, coil maps, sampling mask, noise level) as
    #: ``kspace-mr.npz``: what the MR refiner and `medphys.audit.mr_physics_audit` judge by
    save_kspace: bool = False


class RefineSection(Strict):
    #: a trained refiner file (``medphys refine train`` writes RUN/refiner.npz): each case's CT
    #: is refined into ``ct-refined.nii.gz`` with ``refined.json`` naming the file's SHA-256;
    #: the physics outputs do not depend on it (not part of the job digest)
    refiner: str | None = None


class GenerateConfig(Strict):
    """Everything that decides the bytes a `medphys generate` run writes."""

    cases: Annotated[int, pydantic.Field(ge=1, le=1_000_000)] = 4
    seed: Annotated[int, pydantic.Field(ge=0, lt=2**32)] = 0
    phantom: PhantomSection = PhantomSection()
    ct: CTSection = CTSection()
    mr: MRSection = MRSection()
    output: OutputSection = OutputSection()
    refine: RefineSection = RefineSection()

    def digest(self) -> str:
        """A short hash of the settings that decide each case's content.

        Not the case count (a run can be extended), the overview switch nor the refiner stage
        (refined images sit beside the physics images, named by the refiner's digest), and
        ``save_kspace`` only when set (digests of jobs from before it existed stay); the
        definitions the names point at are covered by `medphys.pipelines.job_inputs`.
        """
        output = {"montage"} | (set() if self.output.save_kspace else {"save_kspace"})
        content = self.model_dump(
            mode="json", exclude={"cases": True, "output": output, "refine": True}
        )
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def default_config_text() -> str:
    """The embedded default configuration (TOML text)."""
    return resources.files("medphys.pipelines").joinpath("default_generate.toml").read_text("utf-8")


def load_config(
    path: str | Path | None = None, *, overrides: dict[str, Any] | None = None
) -> GenerateConfig:
    """The job configuration: a TOML file (or the embedded default) plus command-line overrides.

    Raises:
        ConfigError: the file is missing or invalid, or an override is out of range; the message
            names the file, the line, the key path, the value and what is allowed.
    """
    import tomllib

    if path is None:
        text = default_config_text()
        data = tomllib.loads(text)
        source = "<embedded default config>"
    else:
        data = read_toml(path)
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
            source_note = f" (with --{key}={value})"
            if source_note not in source:
                source += source_note
    return validate(GenerateConfig, data, source=source, text=text)
