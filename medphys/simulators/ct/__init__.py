"""CT reconstruction: filtered backprojection (parallel and flat-detector fan beam), water
calibration and Hounsfield units.

- `fbp(projections, geometry, *, like, filter=...)` → `Volume` (1/mm for post-log data);
- `water_mu(protocol)`, `to_hu(mu, mu_water, mu_air=0)`;
- `reconstruct(scan, protocol, *, like)` → `Volume` in HU on the phantom's grid.
"""

from ._fbp import FILTERS as FILTERS
from ._fbp import FilterName as FilterName
from ._fbp import fbp as fbp
from ._fbp import ramp_response as ramp_response
from ._hu import reconstruct as reconstruct
from ._hu import to_hu as to_hu
from ._hu import water_mu as water_mu
