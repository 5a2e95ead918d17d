"""MR simulation: tissue maps, steady-state signal equations, coils, k-space, noise.

Tier 1: closed-form steady-state signals (`SpinEcho`, `GradientEcho`, `InversionRecovery`,
`BSSFP`) evaluated per tissue compartment with partial volume and B0/B1 maps. Tier 2: extended
phase graphs for CPMG echo trains (`FastSpinEcho`, `echo_train`). Acquisition: multi-coil Cartesian
2-D multi-slice encoding, undersampling masks, complex Gaussian noise at a stated SNR, and
root-sum-of-squares reconstruction. Everything is a pure JAX function of immutable PyTrees:
jit-compiled, differentiable, batchable with ``jax.vmap``.

Typical use::

    protocol = medphys.simulators.load("mr-t1-se")
    result = medphys.simulators.mr.simulate(phantom, protocol, jax.random.key(0))
    result.image        # medphys.Volume, magnitude image on the phantom's grid
"""

from ._coils import AbstractCoils as AbstractCoils
from ._coils import LoopCoils as LoopCoils
from ._coils import UniformCoils as UniformCoils
from ._coils import ellipke as ellipke
from ._epg import FastSpinEcho as FastSpinEcho
from ._epg import echo_train as echo_train
from ._from_config import protocol_from_config as protocol_from_config
from ._kspace import fft2c as fft2c
from ._kspace import ifft2c as ifft2c
from ._kspace import rss as rss
from ._sampling import AbstractSampling as AbstractSampling
from ._sampling import EquispacedMask as EquispacedMask
from ._sampling import FullSampling as FullSampling
from ._sampling import RandomMask as RandomMask
from ._sampling import VariableDensityMask as VariableDensityMask
from ._sequences import BSSFP as BSSFP
from ._sequences import AbstractSequence as AbstractSequence
from ._sequences import GradientEcho as GradientEcho
from ._sequences import InversionRecovery as InversionRecovery
from ._sequences import SpinEcho as SpinEcho
from ._sequences import signal as signal
from ._simulate import MRProtocol as MRProtocol
from ._simulate import MRResult as MRResult
from ._simulate import acquire as acquire
from ._simulate import simulate as simulate
from ._tissue import FieldParams as FieldParams
from ._tissue import FieldVariation as FieldVariation
from ._tissue import TissueMaps as TissueMaps
from ._tissue import apply_field_params as apply_field_params
from ._tissue import sample_field_params as sample_field_params
from ._tissue import tissue_maps as tissue_maps
