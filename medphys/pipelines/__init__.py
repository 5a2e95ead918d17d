"""Pipelines: case recipes → `run_case(key, recipe)` → engines (local, Ray) → sinks (dataset).

- `CaseRecipe` (phantom families, `GridSpec`, imaging arms, `Arm`) and `run_case`: one virtual
  patient, pure in its key; `CaseResult` names outputs by arm.
- Named random streams: `stream(key, name)`, `case_key(seed, index)`.
- Engines: `LocalEngine` (in process, or a process pool), `RayEngine`; `make_engine`.
- Sinks: `DatasetSink` (files, sidecars, manifest, overview); the dataset job `generate`.
- `cine(key, phantom, protocol, ...)`: an MR frame per cardiac phase of a beating phantom.
- Mammography: `BreastFamily` (compressed breasts of given density classes, one compression per
  class, `prepare_breast_family`) imaged by DM and DBT arms around the lesion (`Arm` with a
  mammography or tomosynthesis protocol).
- Lesion studies: `LesionSpec` (spheres, spiculated masses), `place_lesion`, `extract_roi`;
  trials from one TOML file
  (`load_trial`, `run_trial`: paired cases → ROIs → observer → AUC and paired ΔAUC, a report).
- Refinement as a dataset stage: `load_ct_dataset` (a generated CT dataset with its projections
  → `medphys.neural.SimulatedCT`), `load_mr_dataset` (with its MR scans →
  `medphys.neural.SimulatedMR`), `refine_dataset` (``ct-refined.nii.gz`` + ``refined.json``, or
  ``mr-refined.nii.gz`` + ``refined-mr.json``, with the refiner file's SHA-256 beside each case's
  image), `load_refined`.
"""

from ._case import CaseResult as CaseResult
from ._case import run_case as run_case
from ._cine import CineResult as CineResult
from ._cine import cine as cine
from ._config import GenerateConfig as GenerateConfig
from ._config import default_config_text as default_config_text
from ._config import load_config as load_config
from ._dataset import DatasetSink as DatasetSink
from ._dataset import OutputError as OutputError
from ._engine import AbstractEngine as AbstractEngine
from ._engine import EngineError as EngineError
from ._engine import LocalEngine as LocalEngine
from ._engine import RayEngine as RayEngine
from ._engine import make_engine as make_engine
from ._generate import GenerateJob as GenerateJob
from ._generate import definitions as definitions
from ._generate import generate as generate
from ._lesion import LesionSpec as LesionSpec
from ._lesion import extract_roi as extract_roi
from ._lesion import iodine_for_contrast as iodine_for_contrast
from ._lesion import material_for_contrast as material_for_contrast
from ._lesion import place_lesion as place_lesion
from ._mammo import BreastFamily as BreastFamily
from ._mammo import prepare_breast_family as prepare_breast_family
from ._provenance import Definition as Definition
from ._provenance import changed_inputs as changed_inputs
from ._provenance import job_digest as job_digest
from ._provenance import job_inputs as job_inputs
from ._provenance import versions as versions
from ._recipe import Arm as Arm
from ._recipe import CaseRecipe as CaseRecipe
from ._recipe import GridSpec as GridSpec
from ._refine import DatasetError as DatasetError
from ._refine import load_ct_dataset as load_ct_dataset
from ._refine import load_mr_dataset as load_mr_dataset
from ._refine import load_refined as load_refined
from ._refine import mr_scan as mr_scan
from ._refine import refine_dataset as refine_dataset
from ._streams import case_key as case_key
from ._streams import stream as stream
from ._streams import stream_id as stream_id
from ._trial import TrialConfig as TrialConfig
from ._trial import TrialJob as TrialJob
from ._trial import analyse as analyse
from ._trial import load_trial as load_trial
from ._trial import run_trial as run_trial
