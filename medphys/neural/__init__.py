"""Neural models judged by imaging physics; the physics stays outside the networks.

Neural attenuation fields (sparse-view and 4D CT):

- fields on a grid's box (Flax NNX): `HashGridField` (multiresolution hash encoding + MLP),
  `FourierField` (random Fourier features + MLP), `VoxelField` (the non-neural baseline trained by
  the same code); `DeformingField` (a canonical field through a learned deformation of space
  and time: 4D CT from one ungated sweep; `period_s` for periodic breathing) and
  `GridDeformingField` (the same with coarse control grids and a temporal Fourier basis: a
  respiratory motion model, cheap per sample); `to_volume(field, grid)` samples any grid as a
  `medphys.Volume`;
- rendering: `trace_rays(geometry, domain)` clips any medphys geometry's rays to the box,
  `integrate` samples a fixed budget per chord (stratified), `render(field, geometry)` gives the
  ``(views, u, v)`` array `medphys.simulators.xray.project` gives (DRRs from any pose);
- training: `fit(key, projections, geometry, field, config=FitConfig(...))` with `LeastSquares`
  or `Poisson` data terms, `tv_loss` / `smoothness_loss` priors, initialisation from a volume
  (FDK, CGLS), resumable atomic checkpoints and a progress bar; `prepare_fit` →
  `FitProblem.init` / `FitProblem.step` to drive the loop yourself.

Image encoder (feature space for distribution metrics and memorisation audits):

- `train_encoder(key, patches, *, steps, batch, dim, learning_rate)` trains a small convolutional
  `Encoder` on 2-D or 3-D patches with SimCLR's NT-Xent loss on two augmented views (crop-and-resize,
  flips, intensity jitter, noise), from the key alone (no downloaded weights); `embed(encoder,
  images)` gives ``(n, dim)`` unit-norm features (jitted, in chunks).

Sim-to-real refinement of CT and MR images (physics-guided, unpaired):

- data: `simulate_ct(key, phantom, protocol, cases=, shape=, spacing_mm=)` → `SimulatedCT`
  (HU images, labels, the scans' linearised line integrals and projector); `simulate_mr(...)` →
  `SimulatedMR` (magnitude over each case's `medphys.metrics.mr_reference`, labels, the scans: coil k-space,
  coil maps, sampling mask, noise); `real_patches(key, slices, spacing_mm=, size=, count=)`
  from real images (`medphys.io.load_real_images`; MR volumes normalised by
  `real_mr_slices`); for a 3-D refiner (`RefineConfig(dim=3)`), `real_volume_patches` of
  real volumes (`real_mr_volumes`);
- networks: `Refiner` (residual U-Net, identity at start, 2-D or 3-D, optional label
  conditioning), `PatchDiscriminator` (PatchGAN), `PatchHeads` (PatchNCE projections);
- losses, one function each: `lsgan_discriminator`, `lsgan_generator`, `patch_nce`,
  `self_regularisation`; physics: `measurement_residual` / `measurement_loss` (re-projection
  through the medphys projector onto the scan), `intensity_shift` / `intensity_loss` (per-label
  HU), `relative_intensity_loss` (per-label relative MR intensity), `edge_loss`,
  `texture_loss` (NPS toward the real images'); the MR k-space residual and data consistency
  are `medphys.simulators.mr`'s;
- training: `train_refiner(key, simulated, real, config=RefineConfig(...))` (progress bar,
  resumable digest-checked checkpoints; `RefineConfig.without_physics()` for the control),
  `prepare_refine` → `RefineProblem.init` / `.step`; `refine(refiner, hu)` applies a CT refiner
  slice by slice, `refine_mr(refiner, scan)` an MR one (with the hard data-consistency layer);
  `save_refiner` / `load_refiner` keep a trained refiner (architecture, modality, weights,
  metadata) in one file named by its SHA-256. `medphys.audit.physics_audit` and
  `medphys.audit.mr_physics_audit` judge the result.

Elasticity by the deep energy method (biomechanics that images obey):

- materials: `LinearElastic`, `NeoHookean` (FEBio's compressible form; `.create` checks
  ``E > 0`` and ``-1 < ν < 0.5``), `lame`, the energy densities `linear_energy` and
  `neo_hookean_energy`, and VICTRE's breast moduli `VICTRE_MODULI_KPA`;
- bodies: `ElasticBody.create([(shape, material), ...], spacing_mm=)` (the domain from medphys
  shapes' signed distances, partial-volume quadrature, one material per structure);
- conditions and loads: `Fixed` (Dirichlet planes built into the displacement), `Pressure`,
  `Gravity`, `Plate` (rigid frictionless contact), `Growth` (a structure that grows and pushes
  its host aside: a lesion's mass effect); `band` turns boundary integrals into volume
  integrals; a `Parameter` in place of a value makes one training serve a range of it (a
  parametric surrogate: the network takes the value as an input);
- solving: `solve_elasticity(key, body, constraints=, loads=, config=ElasticConfig(...))` trains a
  `DisplacementNet` and returns an `ElasticSolution` (displacement and its gradient, energy
  history, convergence, ``min det F``; resumable checkpoints);
- phantoms that obey it: `ElasticWarp.create(solution, support=)` is a deformation for
  ``Phantom.warp`` (inverse by fixed point and Newton, ``det F > 0`` checked on a grid), so CT,
  X-ray and MR simulate the deformed anatomy unchanged;
- the breast between paddles: `compress_breast(key, breast_params)` → `BreastCompression`
  (VICTRE's craniocaudal compression of the outer shape; ``.apply(phantom)`` compresses any
  breast with that shape).

Image-quality metrics with stated definitions live in `medphys.metrics`.
"""

from ._breast_compression import BreastCompression as BreastCompression
from ._breast_compression import compress_breast as compress_breast
from ._dynamic import DeformingField as DeformingField
from ._dynamic import GridDeformingField as GridDeformingField
from ._elastic_body import ElasticBody as ElasticBody
from ._elastic_body import band as band
from ._elastic_loads import Fixed as Fixed
from ._elastic_loads import Gravity as Gravity
from ._elastic_loads import Growth as Growth
from ._elastic_loads import Parameter as Parameter
from ._elastic_loads import Plate as Plate
from ._elastic_loads import Pressure as Pressure
from ._elastic_materials import VICTRE_MODULI_KPA as VICTRE_MODULI_KPA
from ._elastic_materials import LinearElastic as LinearElastic
from ._elastic_materials import NeoHookean as NeoHookean
from ._elastic_materials import lame as lame
from ._elastic_materials import linear_energy as linear_energy
from ._elastic_materials import neo_hookean_energy as neo_hookean_energy
from ._elastic_net import DisplacementNet as DisplacementNet
from ._elastic_warp import ElasticWarp as ElasticWarp
from ._elasticity import ElasticConfig as ElasticConfig
from ._elasticity import ElasticSolution as ElasticSolution
from ._elasticity import ElasticState as ElasticState
from ._elasticity import solve_elasticity as solve_elasticity
from ._encoder import Encoder as Encoder
from ._encoder import embed as embed
from ._encoder import train_encoder as train_encoder
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
from ._refine import RefineConfig as RefineConfig
from ._refine import RefineProblem as RefineProblem
from ._refine import RefineResult as RefineResult
from ._refine import RefineState as RefineState
from ._refine import prepare_refine as prepare_refine
from ._refine import train_refiner as train_refiner
from ._refine_apply import load_refiner as load_refiner
from ._refine_apply import refine as refine
from ._refine_apply import refine_mr as refine_mr
from ._refine_apply import save_refiner as save_refiner
from ._refine_data import SimulatedCT as SimulatedCT
from ._refine_data import real_patches as real_patches
from ._refine_data import real_tiles as real_tiles
from ._refine_data import real_volume_patches as real_volume_patches
from ._refine_data import simulate_ct as simulate_ct
from ._refine_data_mr import SimulatedMR as SimulatedMR
from ._refine_data_mr import real_mr_slices as real_mr_slices
from ._refine_data_mr import real_mr_volumes as real_mr_volumes
from ._refine_data_mr import simulate_mr as simulate_mr
from ._refine_losses import edge_loss as edge_loss
from ._refine_losses import hu_to_mu as hu_to_mu
from ._refine_losses import intensity_loss as intensity_loss
from ._refine_losses import intensity_shift as intensity_shift
from ._refine_losses import lsgan_discriminator as lsgan_discriminator
from ._refine_losses import lsgan_generator as lsgan_generator
from ._refine_losses import measurement_loss as measurement_loss
from ._refine_losses import measurement_residual as measurement_residual
from ._refine_losses import patch_nce as patch_nce
from ._refine_losses import relative_intensity_loss as relative_intensity_loss
from ._refine_losses import self_regularisation as self_regularisation
from ._refine_losses import texture_loss as texture_loss
from ._refiner import PatchDiscriminator as PatchDiscriminator
from ._refiner import PatchHeads as PatchHeads
from ._refiner import Refiner as Refiner
from ._render import RayTable as RayTable
from ._render import integrate as integrate
from ._render import min_samples as min_samples
from ._render import render as render
from ._render import trace_rays as trace_rays
