"""Neural models judged by imaging physics; the physics stays outside the networks.

Neural attenuation fields (sparse-view and 4D CT):

- fields on a grid's box (Flax NNX): `HashGridField` (multiresolution hash encoding + MLP),
  `FourierField` (random Fourier features + MLP), `VoxelField` (the non-neural baseline trained by
  the same code); `DeformingField` (a canonical field through a learned deformation of space
  and time: 4D CT from one ungated sweep); `to_volume(field, grid)` samples any grid as a
  `medphys.Volume`;
- rendering: `trace_rays(geometry, domain)` clips any medphys geometry's rays to the box,
  `integrate` samples a fixed budget per chord (stratified), `render(field, geometry)` gives the
  ``(views, u, v)`` array `medphys.simulators.xray.project` gives (DRRs from any pose);
- training: `fit(key, projections, geometry, field, config=FitConfig(...))` with `LeastSquares`
  or `Poisson` data terms, `tv_loss` / `smoothness_loss` priors, initialisation from a volume
  (FDK, CGLS), resumable atomic checkpoints and a progress bar; `prepare_fit` →
  `FitProblem.init` / `FitProblem.step` to drive the loop yourself.

Image-quality metrics with stated definitions live in `medphys.metrics`.
"""

from ._dynamic import DeformingField as DeformingField
from ._fields import AbstractField as AbstractField
from ._fields import FourierField as FourierField
from ._fields import HashGridField as HashGridField
from ._fields import VoxelField as VoxelField
from ._fields import to_volume as to_volume
from ._fit import AlongRays as AlongRays
from ._fit import FitConfig as FitConfig
from ._fit import FitProblem as FitProblem
from ._fit import FitResult as FitResult
from ._fit import FitState as FitState
from ._fit import LeastSquares as LeastSquares
from ._fit import OnGrid as OnGrid
from ._fit import Poisson as Poisson
from ._fit import data_loss as data_loss
from ._fit import fit as fit
from ._fit import motion_loss as motion_loss
from ._fit import prepare_fit as prepare_fit
from ._fit import smoothness_loss as smoothness_loss
from ._fit import squared_gradient as squared_gradient
from ._fit import total_variation as total_variation
from ._fit import tv_loss as tv_loss
from ._render import RayTable as RayTable
from ._render import integrate as integrate
from ._render import min_samples as min_samples
from ._render import render as render
from ._render import trace_rays as trace_rays
