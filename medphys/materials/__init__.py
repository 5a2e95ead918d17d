"""Tissue library: composition and density, photon attenuation μ(E), MR properties (PD, T1, T2, T2*).

- `names()` / `get(name)`: the catalog (tissues from xraylib's NIST compounds and ICRU 46 /
  Woodard & White tables in ``tissues.toml``; MR values with one literature source each in
  ``mr_relaxation.toml``), plus contrast mixtures named ``"<tissue>+<agent>_<c>mg_ml"``.
- `Material`: ``mass_attenuation(energy_kev)`` (cm²/g, coherent included), ``mu(energy_kev)``
  (1/cm) and ``mr(field_t)`` → `MRProperties` at 1.5 or 3.0 T.
- `contrast_mixture(agent, concentration_mg_ml, base=...)`: iodine or gadolinium in a tissue;
  `mixture_name(base, agent, mg_ml)` its catalog name;
- `density_scaled(tissue, factor)`: a tissue at a fraction of its density (hypodense lesions),
  named ``"<tissue>@<factor>"``.
- `attenuation_table(materials, energy_kev)`: μ of many materials on one grid, cached.

Units: keV, g/cm³, cm²/g, 1/cm, tesla, seconds (see `medphys._types`).
"""

from ._contrast import GADOLINIUM as GADOLINIUM
from ._contrast import IODINE as IODINE
from ._contrast import ContrastAgent as ContrastAgent
from ._contrast import mixture_name as mixture_name
from ._library import attenuation_table as attenuation_table
from ._library import contrast_mixture as contrast_mixture
from ._library import density_scaled as density_scaled
from ._library import get as get
from ._library import names as names
from ._material import ENERGY_RANGE_KEV as ENERGY_RANGE_KEV
from ._material import FIELDS_T as FIELDS_T
from ._material import Material as Material
from ._material import MRProperties as MRProperties
from ._scaled import DENSITY_FACTOR_RANGE as DENSITY_FACTOR_RANGE
