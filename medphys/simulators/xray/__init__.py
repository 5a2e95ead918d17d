"""X-ray / CT acquisition: projector pair, tube spectra, detector, protocols, simulation.

- `project` / `backproject`: line integrals through a `Volume` along a geometry's rays and the
  exact adjoint (``jax.grad`` through `project` runs `backproject`).
- `Spectrum`: tube spectra from SpekPy; `Bowtie` filters; detectors (`EnergyIntegratingDetector`,
  `PhotonCountingDetector`, with blur); `KernelScatter` and its correction `ScatterCorrection`
  (`correct_scatter`: primary from readings); `CTProtocol`.
- `simulate` = `expected_scan` (deterministic) + `add_noise` (random): a polychromatic, noisy scan
  of a `LabeledVolume` → `XrayScan`.
- `drr(ct_volume_hu, geometry, spectrum=...)`: DRRs from a CT in HU (volume or NIfTI path).
- `protocol_from_config`: the ``modality = "ct"`` protocol files of the ``simulators/`` catalog.
"""

from ..geometry import ConeBeam as ConeBeam
from ..geometry import FanBeam as FanBeam
from ..geometry import ParallelBeam as ParallelBeam
from ..geometry import ProjectionGeometry as ProjectionGeometry
from ._bowtie import Bowtie as Bowtie
from ._detector import EnergyIntegratingDetector as EnergyIntegratingDetector
from ._detector import PhotonCountingDetector as PhotonCountingDetector
from ._drr import drr as drr
from ._drr import hu_to_fractions as hu_to_fractions
from ._projector import Joseph as Joseph
from ._projector import Trilinear as Trilinear
from ._projector import backproject as backproject
from ._projector import project as project
from ._protocol import CTProtocol as CTProtocol
from ._protocol import protocol_from_config as protocol_from_config
from ._scatter import KernelScatter as KernelScatter
from ._scatter_correction import ScatterCorrection as ScatterCorrection
from ._scatter_correction import correct_scatter as correct_scatter
from ._simulate import MIN_COUNTS as MIN_COUNTS
from ._simulate import XrayScan as XrayScan
from ._simulate import add_noise as add_noise
from ._simulate import expected_scan as expected_scan
from ._simulate import simulate as simulate
from ._spectrum import KVP_RANGE as KVP_RANGE
from ._spectrum import Spectrum as Spectrum
