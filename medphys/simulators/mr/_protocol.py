"""MR protocols (`MRProtocol`: sequence, field, coils, sampling, noise) and what an acquisition
returns (`MRResult`)."""

from __future__ import annotations

import dataclasses

import jax
from jaxtyping import Array, ArrayLike, Complex, Float

from ...volume import Volume
from . import _checks as chk
from ._bloch_tier import AbstractBlochSequence
from ._coils import AbstractCoils, UniformCoils
from ._sampling import AbstractSampling, FullSampling
from ._sequences import AbstractSequence
from ._tissue import FieldParams, FieldVariation, TissueMaps

__all__ = ["MRProtocol", "MRResult"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MRProtocol:
    """An MR acquisition: sequence, field strength, receive coils, sampling, noise.

    Attributes:
        sequence: the pulse sequence: tier 1/2 (`SpinEcho`, `GradientEcho`, `InversionRecovery`,
            `BSSFP`, `FastSpinEcho`) or the Bloch tier (`BlochSpinEcho`, `BlochGradientEcho`,
            `PulseqSequence`).
        coils: the receive array (`UniformCoils`, `LoopCoils`).
        sampling: the ky sampling pattern (`FullSampling`, `EquispacedMask`, `RandomMask`,
            `VariableDensityMask`).
        snr: signal-to-noise ratio at NEX = 1 (see the module docstring); ``None``: no noise.
        nex: number of averaged excitations (>= 1).
        field_variation: random smooth B0/B1 variation drawn per case; ``None``: ideal fields.
        field_t: main field (T); selects the tissue properties.
        snr_reference: material whose mean signal defines ``snr``; ``None``: the brightest.
        description: free text (from the catalog file).
    """

    sequence: AbstractSequence | AbstractBlochSequence
    coils: AbstractCoils
    sampling: AbstractSampling
    snr: Float[ArrayLike, ""] | None
    nex: int
    field_variation: FieldVariation | None
    field_t: float = dataclasses.field(metadata={"static": True})
    snr_reference: str | None = dataclasses.field(default=None, metadata={"static": True})
    description: str = dataclasses.field(default="", metadata={"static": True})

    @classmethod
    def create(
        cls,
        sequence: AbstractSequence | AbstractBlochSequence,
        *,
        field_t: float,
        coils: AbstractCoils | None = None,
        sampling: AbstractSampling | None = None,
        snr: float | None = None,
        nex: int = 1,
        snr_reference: str | None = None,
        field_variation: FieldVariation | None = None,
        description: str = "",
    ) -> MRProtocol:
        """Validated constructor.

        Args:
            sequence: the pulse sequence (its type selects the tier).
            field_t: main field (T), > 0; the tissue library tabulates 1.5 and 3.0.
            coils: receive coils; default one uniform (body) coil.
            sampling: ky sampling; default full.
            snr: SNR at NEX = 1, > 0; ``None`` for noise-free data.
            nex: number of averages, an integer >= 1.
            snr_reference: material name defining the SNR; default the brightest material.
            field_variation: random B0/B1 variation; default none.
            description: free text.

        Raises:
            TypeError: an argument of the wrong type.
            ValueError: ``field_t`` or ``snr`` not positive, ``nex < 1``.

        Example:
            >>> from medphys.simulators import mr
            >>> p = mr.MRProtocol.create(mr.SpinEcho.create(te_s=0.015, tr_s=0.5), field_t=1.5,
            ...                          coils=mr.LoopCoils.create(4), snr=30.0)
            >>> p.n_coils
            4
        """
        where = f"{chk.PREFIX}MRProtocol.create"
        if sequence is not None and not isinstance(
            sequence, (AbstractSequence, AbstractBlochSequence)
        ):
            raise TypeError(
                f"{where}: `sequence` must be a tier-1/2 Sequence (SpinEcho, ...) or a Bloch-tier "
                f"sequence (BlochSpinEcho, BlochGradientEcho, PulseqSequence) "
                f"(got {type(sequence).__name__})"
            )
        for name, value, kind in (
            ("coils", coils, AbstractCoils),
            ("sampling", sampling, AbstractSampling),
            ("field_variation", field_variation, FieldVariation),
        ):
            if value is not None and not isinstance(value, kind):
                raise TypeError(
                    f"{where}: `{name}` must be a {kind.__name__.removeprefix('Abstract')}"
                    f" (got {type(value).__name__})"
                )
        if sequence is None:
            raise TypeError(f"{where}: `sequence` is required")
        return cls(
            sequence=sequence,
            coils=UniformCoils(1) if coils is None else coils,
            sampling=FullSampling() if sampling is None else sampling,
            snr=None if snr is None else chk.positive(where, "snr", snr),
            nex=chk.integer(where, "nex", nex, minimum=1),
            field_variation=field_variation,
            field_t=chk.positive(where, "field_t", field_t, " (tesla)"),
            snr_reference=None if snr_reference is None else str(snr_reference),
            description=str(description),
        )

    @property
    def n_coils(self) -> int:
        return self.coils.n_coils


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MRResult:
    """What one simulated MR acquisition produced.

    Attributes:
        kspace: ``(coils, kx, ky, z)`` acquired k-space (complex; zero where not sampled); DC at
            ``[:, nx // 2, ny // 2, :]``.
        image: magnitude (root-sum-of-squares) image on the phantom's grid and affine.
        maps: the tissue maps used (including the B0/B1 fields drawn); ``None`` for a scan read
            back from a dataset (`medphys.pipelines.load_mr_dataset`), which keeps no maps.
        coil_maps: ``(coils, x, y, z)`` complex receive sensitivities used.
        mask: ``(ky,)`` 1 where a ky line was acquired.
        noise_std: per-component noise standard deviation σ/sqrt(NEX) (0 without noise).
        field_params: the smooth-field coefficients drawn, or ``None``.
    """

    kspace: Complex[Array, "coils kx ky z"]
    image: Volume
    maps: TissueMaps | None
    coil_maps: Complex[Array, "coils x y z"]
    mask: Float[Array, " ky"]
    noise_std: Float[Array, ""]
    field_params: FieldParams | None
