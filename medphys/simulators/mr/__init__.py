"""MR simulation: tissue maps, signal equations, EPG, Bloch isochromats, coils, k-space, noise.

Tier 1: closed-form steady-state signals (`SpinEcho`, `GradientEcho`, `InversionRecovery`,
`BSSFP`) evaluated per tissue compartment with partial volume and B0/B1 maps. Tier 2: extended
phase graphs for CPMG echo trains (`FastSpinEcho`, `echo_train`). Tier 3: Bloch simulation of
isochromats (`Spins`, `bloch`) under arbitrary RF and gradient waveforms, written as `Block` values
(`RFPulse`, `Trapezoid`, `ArbitraryGradient`, `ADC`; builders `spin_echo`, `turbo_spin_echo`,
`gradient_echo`, `selective`; Pulseq files via `read_pulseq` / `write_pulseq`) and lowered to time
steps (`lower`); an acquisition runs this tier when the protocol's sequence is a `BlochSpinEcho`,
`BlochGradientEcho` or `PulseqSequence` (isochromats per voxel and tissue, full encoding).
Acquisition: multi-coil Cartesian 2-D multi-slice encoding, undersampling masks
(including `PartialFourier`), complex Gaussian noise at a stated SNR; reconstruction by
root-sum-of-squares, `sense` (CG-SENSE; `sense_solver` for ``init``/``step``) and `pocs`
(partial Fourier); hard k-space data consistency for magnitude images a model changed
(`data_consistency`, `consistent_kspace`) and their distance from the scan (`kspace_residual`
beside the noise floor `noise_residual`); `reconstructed` gives an undersampled scan its
CG-SENSE image, `object_phase` the phase the lift uses; `CineProtocol` (``mr-cine-bssfp``): cardiac timing for cine series, which
`medphys.pipelines.cine` runs over a beating phantom. Structures with their own MR values
(`medphys.volume.MRValues`) override their material's in `tissue_maps`.

The acquisition is a prepared operator: `prepare(grid, protocol, compartments=...)` plans it once
on the host (coil maps on the grid, SNR reference, a Bloch sequence lowered for the grid) and
returns an `MRScanner` whose ``acquire(key, maps)`` and ``reconstruct(kspace)`` are pure JAX
functions of immutable PyTrees: jit-compiled, differentiable with respect to the tissue maps,
batchable over cases with ``jax.vmap`` (the Bloch tier chooses its isochromats on the host and
runs eagerly). `acquire(key, maps, protocol)` and `simulate(key, labeled_volume, protocol)` do
both in one call. Randomness enters through the key, always the first argument.

Typical use::

    protocol = medphys.simulators.load("mr-t1-se")
    result = medphys.simulators.mr.simulate(jax.random.key(0), phantom, protocol)
    result.image        # medphys.Volume, magnitude image on the phantom's grid

    maps = medphys.simulators.mr.tissue_maps(phantom, protocol.field_t)
    op = medphys.simulators.mr.prepare(maps.grid, protocol, compartments=maps.names)
    images = jax.jit(jax.vmap(lambda k, m: op.acquire(k, m).image.data))(keys, stacked_maps)

    bloch = medphys.simulators.load("mr-t1-se-bloch")   # the same through Bloch isochromats

    blocks = medphys.simulators.mr.read_pulseq("my_sequence.seq")
    signal = medphys.simulators.mr.bloch(medphys.simulators.mr.lower(blocks), spins)
"""

from ._bloch import Spins as Spins
from ._bloch import bloch as bloch
from ._bloch import lorentzian_offsets as lorentzian_offsets
from ._bloch import lorentzian_quadrature as lorentzian_quadrature
from ._bloch_tier import AbstractBlochSequence as AbstractBlochSequence
from ._bloch_tier import BlochGradientEcho as BlochGradientEcho
from ._bloch_tier import BlochSpinEcho as BlochSpinEcho
from ._bloch_tier import PulseqSequence as PulseqSequence
from ._builders import Cartesian2D as Cartesian2D
from ._builders import gradient_echo as gradient_echo
from ._builders import selective as selective
from ._builders import spin_echo as spin_echo
from ._builders import turbo_spin_echo as turbo_spin_echo
from ._cine import CineProtocol as CineProtocol
from ._coils import AbstractCoils as AbstractCoils
from ._coils import LoopCoils as LoopCoils
from ._coils import UniformCoils as UniformCoils
from ._coils import ellipke as ellipke
from ._consistency import consistent_kspace as consistent_kspace
from ._consistency import data_consistency as data_consistency
from ._consistency import kspace_residual as kspace_residual
from ._consistency import noise_residual as noise_residual
from ._consistency import object_phase as object_phase
from ._consistency import reconstructed as reconstructed
from ._epg import FastSpinEcho as FastSpinEcho
from ._epg import echo_train as echo_train
from ._from_config import protocol_from_config as protocol_from_config
from ._kspace import fft2c as fft2c
from ._kspace import ifft2c as ifft2c
from ._kspace import rss as rss
from ._protocol import MRProtocol as MRProtocol
from ._protocol import MRResult as MRResult
from ._pulseq import PulseqError as PulseqError
from ._pulseq import read_pulseq as read_pulseq
from ._pulseq import write_pulseq as write_pulseq
from ._recon import PartialFourier as PartialFourier
from ._recon import SENSESolver as SENSESolver
from ._recon import SENSEState as SENSEState
from ._recon import pocs as pocs
from ._recon import sense as sense
from ._recon import sense_solver as sense_solver
from ._sampling import AbstractSampling as AbstractSampling
from ._sampling import EquispacedMask as EquispacedMask
from ._sampling import FullSampling as FullSampling
from ._sampling import RandomMask as RandomMask
from ._sampling import VariableDensityMask as VariableDensityMask
from ._scanner import MRScanner as MRScanner
from ._scanner import prepare as prepare
from ._sequences import BSSFP as BSSFP
from ._sequences import AbstractSequence as AbstractSequence
from ._sequences import GradientEcho as GradientEcho
from ._sequences import InversionRecovery as InversionRecovery
from ._sequences import SpinEcho as SpinEcho
from ._sequences import signal as signal
from ._simulate import acquire as acquire
from ._simulate import simulate as simulate
from ._tissue import FieldParams as FieldParams
from ._tissue import FieldVariation as FieldVariation
from ._tissue import TissueMaps as TissueMaps
from ._tissue import apply_field_params as apply_field_params
from ._tissue import sample_field_params as sample_field_params
from ._tissue import tissue_maps as tissue_maps
from ._waveforms import ADC as ADC
from ._waveforms import GAMMA_HZ_PER_T as GAMMA_HZ_PER_T
from ._waveforms import ArbitraryGradient as ArbitraryGradient
from ._waveforms import Block as Block
from ._waveforms import RFPulse as RFPulse
from ._waveforms import StepSequence as StepSequence
from ._waveforms import Trapezoid as Trapezoid
from ._waveforms import gaussian_pulse as gaussian_pulse
from ._waveforms import hard_pulse as hard_pulse
from ._waveforms import lower as lower
from ._waveforms import sinc_pulse as sinc_pulse
