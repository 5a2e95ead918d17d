"""X-ray / CT acquisition: projector pair, tube spectra, detector, protocols, simulation.

- `prepare(grid, geometry)` → `Projector` (``project`` / ``backproject``: line integrals on a
  fixed `medphys.Grid` along a geometry's rays and the exact adjoint) and `prepare(grid,
  protocol, materials=...)` → `Scanner` (``expected`` / ``simulate(key, fractions)``): planned
  once on the host, pure inside ``jax.jit``, ``jax.vmap`` and ``jax.grad``.
- `project` / `backproject`: the same on a `Volume` (``jax.grad`` through `project` runs
  `backproject`).
- `Spectrum`: tube spectra from SpekPy (W, Mo and Rh anodes: `ANODES`, `ANODE_KVP_RANGE`);
  `half_value_layer_mm` and `air_kerma_ugy` of a spectrum; `mean_glandular_dose_mgy` of a
  mammography exposure (Dance's K·g·c·s with `DanceTables`, `S_FACTORS`); `Bowtie` filters;
  detectors (`EnergyIntegratingDetector`, optionally with a converter layer of `CONVERTERS`,
  e.g. direct-conversion a-Se; `PhotonCountingDetector`; both with blur); `KernelScatter` and
  its correction `ScatterCorrection` (`correct_scatter`: primary from readings); `CTProtocol`.
- `simulate(key, labeled_volume, protocol)` = `expected_scan` (deterministic) + `add_noise`
  (random): a polychromatic, noisy scan of a `LabeledVolume` → `XrayScan`; memory stays near
  one projected map plus the projections (maps built from labels or sparse fractions one at a
  time, or slab by slab of slices); ``basis_tolerance=1e-5`` projects the few maps of an
  `AttenuationBasis` instead of one per material (6 instead of 20 at 120 kVp);
  `detector_pitch_mm(geometry, dtype)` the pixel pitch on the detector (scatter kernels use it);
- `with_views(protocol, n_views)`: the same protocol with n views over its arc at the same total
  mAs (sparse-view scans at equal dose).
- `detected_spectrum` / `detected_spectrum_of(protocol)`: the one owner of each detector column's
  detected spectrum (fluence × detector response × bowtie), used by the simulator and by the
  CT calibration (water μ, beam-hardening correction).
- `drr(ct_volume_hu, geometry, spectrum=...)`: DRRs from a CT in HU (volume or NIfTI path).
- `protocol_from_config`: the ``modality = "ct"`` protocol files of the ``simulators/`` catalog.
- `mammography_geometry`: mammography (one view) and breast tomosynthesis (a sweep over a
  stationary detector), ``[geometry] kind = "mammography"`` in a protocol file.
"""

from ..geometry import ConeBeam as ConeBeam
from ..geometry import FanBeam as FanBeam
from ..geometry import ParallelBeam as ParallelBeam
from ..geometry import ProjectionGeometry as ProjectionGeometry
from ._basis import AttenuationBasis as AttenuationBasis
from ._bowtie import Bowtie as Bowtie
from ._detector import CONVERTERS as CONVERTERS
from ._detector import EnergyIntegratingDetector as EnergyIntegratingDetector
from ._detector import PhotonCountingDetector as PhotonCountingDetector
from ._drr import drr as drr
from ._drr import hu_to_fractions as hu_to_fractions
from ._fluence import detected_spectrum as detected_spectrum
from ._fluence import detected_spectrum_of as detected_spectrum_of
from ._fluence import ray_radius_mm as ray_radius_mm
from ._glandular_dose import S_FACTORS as S_FACTORS
from ._glandular_dose import DanceTables as DanceTables
from ._glandular_dose import mean_glandular_dose_mgy as mean_glandular_dose_mgy
from ._glandular_dose import target_filter_of as target_filter_of
from ._hvl import air_kerma_ugy as air_kerma_ugy
from ._hvl import half_value_layer_mm as half_value_layer_mm
from ._mammography import mammography_geometry as mammography_geometry
from ._operator import Projector as Projector
from ._operator import backproject as backproject
from ._operator import project as project
from ._projector import Joseph as Joseph
from ._projector import Trilinear as Trilinear
from ._protocol import CTProtocol as CTProtocol
from ._protocol import protocol_from_config as protocol_from_config
from ._protocol import with_views as with_views
from ._scanner import Scanner as Scanner
from ._scanner import expected_scan as expected_scan
from ._scanner import prepare as prepare
from ._scanner import simulate as simulate
from ._scatter import KernelScatter as KernelScatter
from ._scatter_correction import ScatterCorrection as ScatterCorrection
from ._scatter_correction import correct_scatter as correct_scatter
from ._simulate import MIN_COUNTS as MIN_COUNTS
from ._simulate import XrayScan as XrayScan
from ._simulate import add_noise as add_noise
from ._simulate import detector_pitch_mm as detector_pitch_mm
from ._spectrum import ANODE_KVP_RANGE as ANODE_KVP_RANGE
from ._spectrum import ANODES as ANODES
from ._spectrum import KVP_RANGE as KVP_RANGE
from ._spectrum import Spectrum as Spectrum
