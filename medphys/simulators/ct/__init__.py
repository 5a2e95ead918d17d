"""CT reconstruction: filtered backprojection (parallel and flat-detector fan beam), water
calibration and Hounsfield units.

- `prepare(grid, geometry | protocol)` → `Reconstructor`: FBP / FDK planned once on the host
  (redundancy weights, calibration, beam-hardening fit); ``attenuation(projections)`` and
  ``hounsfield(scan)`` are pure inside ``jax.jit``, ``jax.vmap`` and ``jax.grad``;

- `fbp(projections, geometry, *, like, filter=...)` → `Volume` (1/mm for post-log data); the
  windows are `Filter` members (``Filter.HANN``, or the name ``"hann"``), all in `FILTERS`;
  `fdk(...)` for circular cone beam; both take full turns or short scans (Parker weights,
  `parker_weights(geometry)`), and full turns with an offset detector (Wang's weights,
  `offset_detector_weights(geometry)`), and irregularly spaced views over a turn, as a
  phase-binned (gated) subset of a sweep (angular-gap weights, `gap_weights(geometry)`);
- `water_mu(protocol)`, `to_hu(mu, mu_water, mu_air=0)`, `ct_number(material, protocol)`: the
  HU of a material at the centre of the water calibration;
- `reconstruct(scan, protocol, *, like)` → `Volume` in HU on the phantom's grid;
- `correct_beam_hardening(projections, protocol)`: water linearisation;
- `remove_scatter(scan, correction)`: kernel scatter correction of the readings (the protocol's
  `scatter_correction` is applied by `reconstruct`);
- iterative: `sirt`, `cgls`, `tv` → `IterativeReconstructor` (``init``/``step``/``run``/``image``);
- breast tomosynthesis: `dbt_grid(geometry, thickness_mm=..., slice_mm=...)` (planes parallel to
  the detector) and `dbt_fbp` (ramp + spectral apodisation + slice-thickness filter); the
  iterative solvers run on the same grid.
"""

from .._kinds import Filter as Filter
from ._dbt import dbt_fbp as dbt_fbp
from ._dbt import dbt_grid as dbt_grid
from ._fbp import FILTERS as FILTERS
from ._fbp import ramp_response as ramp_response
from ._hu import correct_beam_hardening as correct_beam_hardening
from ._hu import ct_number as ct_number
from ._hu import remove_scatter as remove_scatter
from ._hu import to_hu as to_hu
from ._hu import water_mu as water_mu
from ._iterative import CGLSState as CGLSState
from ._iterative import IterativeReconstructor as IterativeReconstructor
from ._iterative import SIRTState as SIRTState
from ._iterative import TVState as TVState
from ._iterative import cgls as cgls
from ._iterative import sirt as sirt
from ._iterative import tv as tv
from ._parker import gap_weights as gap_weights
from ._parker import offset_detector_weights as offset_detector_weights
from ._parker import parker_weights as parker_weights
from ._prepared import Reconstructor as Reconstructor
from ._prepared import fbp as fbp
from ._prepared import fdk as fdk
from ._prepared import prepare as prepare
from ._prepared import reconstruct as reconstruct
