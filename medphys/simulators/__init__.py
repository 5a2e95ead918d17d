"""Simulators: geometries, X-ray/CT (`medphys.simulators.xray`, `medphys.simulators.ct`) and MR
(`medphys.simulators.mr`), and the protocol catalog (`load`, `names`)."""

from . import ct as ct
from . import mr as mr
from . import xray as xray
from ._load import from_config as from_config
from ._load import load as load
from ._load import names as names
from .geometry import ConeBeam as ConeBeam
from .geometry import FanBeam as FanBeam
from .geometry import ParallelBeam as ParallelBeam
from .geometry import ProjectionGeometry as ProjectionGeometry
