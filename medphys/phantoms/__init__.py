"""Digital phantoms: analytic shapes, the phantom catalog, populations, voxelization."""

from ._phantom import Phantom as Phantom
from ._phantom import Population as Population
from ._phantom import from_config as from_config
from ._phantom import load as load
from ._phantom import names as names
from ._population import PhantomParams as PhantomParams
from ._population import apply as apply
from ._population import sample as sample
from ._population import sample_params as sample_params
from ._shapes import Ellipsoid as Ellipsoid
from ._shapes import EllipticCylinder as EllipticCylinder
from ._voxelize import voxelize as voxelize
