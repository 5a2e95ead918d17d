"""Simulators: geometries, X-ray/CT (`medphys.simulators.xray`, `medphys.simulators.ct`) and MR
(`medphys.simulators.mr`), the protocol catalog (`load`, `names`), and `Modality` (what a
protocol or an imaging arm makes: CT, radiograph, MR, DM, DBT)."""

from . import ct as ct
from . import mr as mr
from . import xray as xray
from ._kinds import Modality as Modality
from ._load import from_config as from_config
from ._load import load as load
from ._load import names as names
from .geometry import ConeBeam as ConeBeam
from .geometry import FanBeam as FanBeam
from .geometry import ParallelBeam as ParallelBeam
from .geometry import ProjectionGeometry as ProjectionGeometry
