"""medphys: differentiable X-ray/CT/MR simulation on XCAT-style digital phantoms, in JAX.

Public surface (see each subpackage's ``__init__`` for its own):

- `Volume`, `LabeledVolume`, `Structure` (with optional `MRValues`), `make_affine` — arrays
  that know where they are;
- `medphys.materials` — tissue library: photon attenuation and MR properties;
- `medphys.phantoms` — digital phantoms and their voxelization;
- `medphys.simulators` — geometries, X-ray/CT and MR simulators, reconstruction;
- `medphys.io` — NIfTI and other formats; `medphys.pipelines` — dataset generation and trials;
- `medphys.observers` — model observers and ROC statistics; `medphys.metrics` — PSNR, SSIM3D
  with stated definitions; `medphys.neural` — neural attenuation fields (imported on demand:
  ``from medphys import neural``).
"""

from . import io as io
from . import materials as materials
from . import metrics as metrics
from . import observers as observers
from . import phantoms as phantoms
from . import pipelines as pipelines
from . import simulators as simulators
from . import viz as viz
from ._errors import ConfigError as ConfigError
from ._errors import UnknownNameError as UnknownNameError
from ._version import __version__ as __version__
from .volume import Grid as Grid
from .volume import LabeledVolume as LabeledVolume
from .volume import MRValues as MRValues
from .volume import SparseFractions as SparseFractions
from .volume import Structure as Structure
from .volume import Volume as Volume
from .volume import make_affine as make_affine
