"""Neural models refined by imaging physics (being written)."""

from ._fields import AbstractField as AbstractField
from ._fields import FourierField as FourierField
from ._fields import HashGridField as HashGridField
from ._fields import VoxelField as VoxelField
from ._fields import to_volume as to_volume
from ._fit import FitConfig as FitConfig
from ._fit import FitProblem as FitProblem
from ._fit import FitResult as FitResult
from ._fit import FitState as FitState
from ._fit import LeastSquares as LeastSquares
from ._fit import Poisson as Poisson
from ._fit import fit as fit
from ._fit import prepare_fit as prepare_fit
from ._fit import smoothness_loss as smoothness_loss
from ._fit import tv_loss as tv_loss
from ._render import RayTable as RayTable
from ._render import integrate as integrate
from ._render import min_samples as min_samples
from ._render import render as render
from ._render import trace_rays as trace_rays
