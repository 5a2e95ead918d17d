"""Simulators: geometries, X-ray/CT (`medphys.simulators.xray`, `medphys.simulators.ct`) and MR
(`medphys.simulators.mr`), and the protocol catalog (`load`, `names`)."""

from ._load import load as load
from ._load import names as names
