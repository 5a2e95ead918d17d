"""Tier-1 MR sequences: steady-state signal equations in closed form.

Each sequence is an immutable PyTree dataclass whose timing and flip angles are leaves (so they can
be differentiated and batched with ``jax.vmap``); `signal` evaluates its steady-state transverse
magnetisation at the echo time.

Conventions shared by all sequences
    * The signal is the complex transverse magnetisation at the echo time in units of the proton
      density (PD): ``PD`` multiplied by a dimensionless factor. It is real and positive for an
      on-resonance spin echo or gradient echo; an inversion-recovery signal is real and *signed*
      (phase-sensitive), so mixing compartments inside a voxel adds signed signals.
    * Off-resonance ``b0_hz`` (Hz) makes magnetisation precess as ``exp(-i 2π Δf t)`` (clockwise in the
      rotating frame). A spin echo refocuses it; a gradient echo keeps the phase ``-2π Δf TE``; the
      bSSFP steady state depends on it in amplitude and phase.
    * ``b1`` scales every nominal flip angle (relative transmit field, 1 = nominal).
    * Excitation tips the magnetisation towards +y; the returned signal is rotated by -90° so that
      an on-resonance signal is real and positive.
    * Instantaneous (hard) RF pulses; slice profile, diffusion, flow and magnetisation transfer are
      not modelled.
    * Spoiled sequences (spin echo, inversion recovery, spoiled gradient echo) assume *ideal
      spoiling*: all transverse magnetisation left at the end of each TR is destroyed, so no
      stimulated echo reaches the next readout. With gradient spoiling alone, real spin echoes
      deviate from this by a few per cent in tissue and much more in long-T2 fluid.

References:
    Haacke EM, Brown RW, Thompson MR, Venkatesan R. *Magnetic Resonance Imaging: Physical
    Principles and Sequence Design*. Wiley-Liss, 1999 (spin echo, inversion recovery, spoiled and
    balanced steady states).
    Bernstein MA, King KF, Zhou XJ. *Handbook of MRI Pulse Sequences*. Elsevier Academic Press,
    2004 (spin echo, inversion recovery, RF-spoiled gradient echo, balanced SSFP).
    Ernst RR, Anderson WA. Application of Fourier transform spectroscopy to magnetic resonance.
    Rev Sci Instrum 37:93-102 (1966) (spoiled steady state, Ernst angle).
    Freeman R, Hill HDW. Phase and intensity anomalies in Fourier transform NMR. J Magn Reson
    4:366-383 (1971) (balanced steady state with off-resonance).
    Hargreaves BA, Vasanawala SS, Pauly JM, Nishimura DG. Characterization and reduction of the
    transient response in steady-state MR imaging. Magn Reson Med 46:149-158 (2001).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Complex, Float

from . import _checks as chk

__all__ = [
    "BSSFP",
    "AbstractSequence",
    "GradientEcho",
    "InversionRecovery",
    "SpinEcho",
    "signal",
]

_HALF_PI = 0.5 * math.pi


def _rotate(amplitude: Array, phase_rad: Any) -> Array:
    """``amplitude * exp(-i phase)`` as a complex array of the amplitude's precision."""
    return jax.lax.complex(amplitude * jnp.cos(phase_rad), -amplitude * jnp.sin(phase_rad))


def _real(amplitude: Array) -> Array:
    amplitude = jnp.asarray(amplitude)
    return jax.lax.complex(amplitude, jnp.zeros_like(amplitude))


class AbstractSequence(abc.ABC):
    """A pulse sequence whose steady-state signal has a closed form (tier 1).

    Subclasses are frozen PyTree dataclasses with times in seconds and flip angles in degrees as
    leaves; they implement `magnetization`. Build them with their validating ``create``.
    """

    #: Whether the signal decays with T2* (gradient echoes) rather than T2.
    uses_t2star: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def echo_time_s(self) -> Any:
        """Time from excitation to the centre of k-space (s)."""

    @abc.abstractmethod
    def magnetization(
        self,
        pd: Float[Array, "*shape"],
        t1_s: Float[Array, "*shape"],
        t2_s: Float[Array, "*shape"],
        t2star_s: Float[Array, "*shape"],
        b1: Float[ArrayLike, "*shape"],
        b0_hz: Float[ArrayLike, "*shape"],
    ) -> Complex[Array, "*shape"]:
        """Steady-state transverse magnetisation at the echo time (no input checks; jit-safe).

        Arguments broadcast together; see `signal` for their meaning.
        """


def _check_times(where: str, **times: Any) -> dict[str, float]:
    return {name: chk.positive(where, name, value, " (seconds)") for name, value in times.items()}


def _check_less(where: str, name: str, value: float, bound_name: str, bound: float) -> None:
    if not value < bound:
        raise chk.FieldError(
            where,
            name,
            f"`{name}` must be less than `{bound_name}` (got {name}={value:g} s, "
            f"{bound_name}={bound:g} s)",
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SpinEcho(AbstractSequence):
    """90°-180° spin echo, repeated every ``tr_s``, with ideal spoiling between repetitions.

    Signal (exact two-pulse steady state, excitation ``α = 90°·b1``, refocusing ``β = 180°·b1``)::

        Ea = exp(-TE/(2 T1)),  Eb = exp(-(TR - TE/2)/T1)
        Mz = (1 - Eb + Eb cos β (1 - Ea)) / (1 - Eb cos β cos α Ea)
        S  = PD · Mz · sin α · sin²(β/2) · exp(-TE/T2)

    With ideal pulses (``b1 = 1``) this is ``PD (1 - 2 exp(-(TR - TE/2)/T1) + exp(-TR/T1))
    exp(-TE/T2)``, which tends to the textbook ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` for TE ≪ TR
    (the refocusing pulse inverts the longitudinal magnetisation that regrew during TE/2).
    Off-resonance is refocused at the echo: ``b0_hz`` changes neither amplitude nor phase.

    Attributes:
        te_s: echo time (s).
        tr_s: repetition time (s).
    """

    te_s: Float[ArrayLike, ""]
    tr_s: Float[ArrayLike, ""]

    @classmethod
    def create(cls, *, te_s: float, tr_s: float) -> SpinEcho:
        """Validated constructor.

        Raises:
            ValueError: a non-positive time, or ``te_s >= tr_s``.

        Example:
            >>> SpinEcho.create(te_s=0.015, tr_s=0.5)
            SpinEcho(te_s=0.015, tr_s=0.5)
        """
        where = f"{chk.PREFIX}SpinEcho.create"
        t = _check_times(where, te_s=te_s, tr_s=tr_s)
        _check_less(where, "te_s", t["te_s"], "tr_s", t["tr_s"])
        return cls(te_s=t["te_s"], tr_s=t["tr_s"])

    @property
    def echo_time_s(self) -> Any:
        return self.te_s

    def magnetization(self, pd, t1_s, t2_s, t2star_s, b1, b0_hz):
        alpha = b1 * _HALF_PI
        beta = b1 * math.pi
        cos_beta = jnp.cos(beta)
        ea = jnp.exp(-0.5 * self.te_s / t1_s)
        eb = jnp.exp(-(self.tr_s - 0.5 * self.te_s) / t1_s)
        mz = (1.0 - eb + eb * cos_beta * (1.0 - ea)) / (1.0 - eb * cos_beta * jnp.cos(alpha) * ea)
        refocus = jnp.sin(0.5 * beta) ** 2
        return _real(pd * mz * jnp.sin(alpha) * refocus * jnp.exp(-self.te_s / t2_s))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GradientEcho(AbstractSequence):
    """Spoiled gradient echo (FLASH, SPGR, T1-FFE) in its steady state, with ideal spoiling.

    Signal (Ernst & Anderson 1966; effective flip ``α = flip·b1``, ``E1 = exp(-TR/T1)``)::

        S = PD sin α (1 - E1) / (1 - cos α E1) · exp(-TE/T2*) · exp(-i 2π Δf TE)

    The signal is largest at the Ernst angle ``arccos(E1)``. Off-resonance adds the phase
    ``-2π Δf TE``; its intravoxel dephasing is part of T2*.

    Attributes:
        te_s: echo time (s).
        tr_s: repetition time (s).
        flip_deg: nominal flip angle (degrees).
    """

    te_s: Float[ArrayLike, ""]
    tr_s: Float[ArrayLike, ""]
    flip_deg: Float[ArrayLike, ""]

    uses_t2star: ClassVar[bool] = True

    @classmethod
    def create(cls, *, te_s: float, tr_s: float, flip_deg: float) -> GradientEcho:
        """Validated constructor.

        Raises:
            ValueError: a non-positive time, ``te_s >= tr_s``, or ``flip_deg`` outside (0, 180].

        Example:
            >>> GradientEcho.create(te_s=0.0046, tr_s=0.25, flip_deg=70.0).flip_deg
            70.0
        """
        where = f"{chk.PREFIX}GradientEcho.create"
        t = _check_times(where, te_s=te_s, tr_s=tr_s)
        _check_less(where, "te_s", t["te_s"], "tr_s", t["tr_s"])
        return cls(te_s=t["te_s"], tr_s=t["tr_s"], flip_deg=chk.flip(where, "flip_deg", flip_deg))

    @property
    def echo_time_s(self) -> Any:
        return self.te_s

    def magnetization(self, pd, t1_s, t2_s, t2star_s, b1, b0_hz):
        alpha = b1 * jnp.deg2rad(self.flip_deg)
        e1 = jnp.exp(-self.tr_s / t1_s)
        amp = pd * jnp.sin(alpha) * (1.0 - e1) / (1.0 - jnp.cos(alpha) * e1)
        amp = amp * jnp.exp(-self.te_s / t2star_s)
        return _rotate(amp, 2.0 * math.pi * b0_hz * self.te_s)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class InversionRecovery(AbstractSequence):
    """Inversion recovery with a spin-echo readout (IR-SE: FLAIR, STIR), ideal spoiling.

    180° inversion at 0, 90° excitation at ``ti_s``, 180° refocusing at ``ti_s + te_s/2``, echo at
    ``ti_s + te_s``, next inversion at ``tr_s``. With inversion ``γ``, excitation ``α`` and refocusing
    ``β`` (nominal 180°, 90°, 180°, each times ``b1``)::

        Ei = exp(-TI/T1), Ea = exp(-TE/(2 T1)), Eb = exp(-(TR - TI - TE/2)/T1)
        A  = 1 - Eb + Eb cos β (1 - Ea),  B = Eb cos β cos α Ea
        Mz(TI) = (1 - Ei + Ei cos γ A) / (1 - Ei cos γ B)
        S  = PD · Mz(TI) · sin α · sin²(β/2) · exp(-TE/T2)

    With ideal pulses: ``S = PD (1 - 2 exp(-TI/T1) + 2 exp(-(TR - TE/2)/T1) - exp(-TR/T1))
    exp(-TE/T2)``, which for TE ≪ TR is the familiar ``PD (1 - 2 exp(-TI/T1) + exp(-TR/T1))
    exp(-TE/T2)``. The signal is **signed** (phase-sensitive reconstruction): a tissue still
    inverted at TI gives a negative value, and a tissue is nulled at ``TI ≈ T1 ln 2`` when TR ≫ T1.
    Magnitude images (`simulate`) show ``|S|``.

    Attributes:
        ti_s: inversion time (s).
        te_s: echo time (s).
        tr_s: repetition time, inversion to inversion (s).
    """

    ti_s: Float[ArrayLike, ""]
    te_s: Float[ArrayLike, ""]
    tr_s: Float[ArrayLike, ""]

    @classmethod
    def create(cls, *, ti_s: float, te_s: float, tr_s: float) -> InversionRecovery:
        """Validated constructor.

        Raises:
            ValueError: a non-positive time, ``ti_s >= tr_s``, ``te_s >= tr_s`` or
                ``ti_s + te_s >= tr_s`` (the echo must come before the next inversion).

        Example:
            >>> InversionRecovery.create(ti_s=2.5, te_s=0.12, tr_s=9.0).ti_s
            2.5
        """
        where = f"{chk.PREFIX}InversionRecovery.create"
        t = _check_times(where, ti_s=ti_s, te_s=te_s, tr_s=tr_s)
        _check_less(where, "ti_s", t["ti_s"], "tr_s", t["tr_s"])
        _check_less(where, "te_s", t["te_s"], "tr_s", t["tr_s"])
        if not t["ti_s"] + t["te_s"] < t["tr_s"]:
            raise chk.FieldError(
                where,
                "ti_s",
                "`ti_s + te_s` must be less than `tr_s`: the echo must come before "
                f"the next inversion (got ti_s={t['ti_s']:g} s, te_s={t['te_s']:g} s, "
                f"tr_s={t['tr_s']:g} s)",
            )
        return cls(ti_s=t["ti_s"], te_s=t["te_s"], tr_s=t["tr_s"])

    @property
    def echo_time_s(self) -> Any:
        return self.te_s

    def magnetization(self, pd, t1_s, t2_s, t2star_s, b1, b0_hz):
        gamma = b1 * math.pi
        alpha = b1 * _HALF_PI
        beta = b1 * math.pi
        cos_beta, cos_gamma = jnp.cos(beta), jnp.cos(gamma)
        ei = jnp.exp(-self.ti_s / t1_s)
        ea = jnp.exp(-0.5 * self.te_s / t1_s)
        eb = jnp.exp(-(self.tr_s - self.ti_s - 0.5 * self.te_s) / t1_s)
        a = 1.0 - eb + eb * cos_beta * (1.0 - ea)
        b = eb * cos_beta * jnp.cos(alpha) * ea
        mz_ti = (1.0 - ei + ei * cos_gamma * a) / (1.0 - ei * cos_gamma * b)
        refocus = jnp.sin(0.5 * beta) ** 2
        return _real(pd * mz_ti * jnp.sin(alpha) * refocus * jnp.exp(-self.te_s / t2_s))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BSSFP(AbstractSequence):
    """Balanced steady-state free precession (TrueFISP, FIESTA, balanced FFE), TE = TR/2.

    RF phase alternates 0°/180° every TR (so on resonance is the centre of the pass band), all
    gradients are balanced, pulses are instantaneous. With ``α = flip·b1``, ``E1 = exp(-TR/T1)``,
    ``E2 = exp(-TR/T2)``, the off-resonance angle per TR ``θ = 2π Δf TR`` and ``φ = θ + π``
    (Freeman & Hill 1971; Hargreaves et al. 2001)::

        D  = (1 - E1 cos α)(1 - E2 cos φ) - E2 (E1 - cos α)(E2 - cos φ)
        Mx = PD (1 - E1) E2 sin α sin φ / D
        My = PD (1 - E1) sin α (1 - E2 cos φ) / D
        S  = exp(-TR/(2 T2)) · (My - i Mx) · exp(-i θ/2)

    On resonance this is ``PD sin α (1 - E1) sqrt(E2) / (1 - (E1 - E2) cos α - E1 E2)``. Signal
    nulls (banding) fall at ``Δf = ±1/(2 TR)`` and repeat every ``1/TR``. The echo refocuses T2'
    dephasing, so T2 (not T2*) applies.

    Attributes:
        tr_s: repetition time (s); the echo is at TR/2.
        flip_deg: nominal flip angle (degrees).
    """

    tr_s: Float[ArrayLike, ""]
    flip_deg: Float[ArrayLike, ""]

    @classmethod
    def create(cls, *, tr_s: float, flip_deg: float) -> BSSFP:
        """Validated constructor.

        Raises:
            ValueError: a non-positive ``tr_s`` or ``flip_deg`` outside (0, 180].

        Example:
            >>> BSSFP.create(tr_s=0.004, flip_deg=60.0).echo_time_s
            0.002
        """
        where = f"{chk.PREFIX}BSSFP.create"
        t = _check_times(where, tr_s=tr_s)
        return cls(tr_s=t["tr_s"], flip_deg=chk.flip(where, "flip_deg", flip_deg))

    @property
    def echo_time_s(self) -> Any:
        return 0.5 * self.tr_s

    def magnetization(self, pd, t1_s, t2_s, t2star_s, b1, b0_hz):
        alpha = b1 * jnp.deg2rad(self.flip_deg)
        ca, sa = jnp.cos(alpha), jnp.sin(alpha)
        e1 = jnp.exp(-self.tr_s / t1_s)
        e2 = jnp.exp(-self.tr_s / t2_s)
        theta = 2.0 * math.pi * b0_hz * self.tr_s
        # φ = θ + π: cos φ = -cos θ, sin φ = -sin θ
        cphi, sphi = -jnp.cos(theta), -jnp.sin(theta)
        d = (1.0 - e1 * ca) * (1.0 - e2 * cphi) - e2 * (e1 - ca) * (e2 - cphi)
        scale = pd * (1.0 - e1) * sa * jnp.exp(-0.5 * self.tr_s / t2_s) / d
        mx = scale * e2 * sphi
        my = scale * (1.0 - e2 * cphi)
        c, s = jnp.cos(0.5 * theta), jnp.sin(0.5 * theta)
        # (My - i Mx) · (c - i s)
        return jax.lax.complex(my * c - mx * s, -(my * s + mx * c))


def signal(
    sequence: AbstractSequence,
    pd: Float[ArrayLike, "*shape"],
    t1_s: Float[ArrayLike, "*shape"],
    t2_s: Float[ArrayLike, "*shape"],
    *,
    t2star_s: Float[ArrayLike, "*shape"] | None = None,
    b1: Float[ArrayLike, "*shape"] | None = None,
    b0_hz: Float[ArrayLike, "*shape"] | None = None,
) -> Complex[Array, "*shape"]:
    """Steady-state signal of ``sequence`` for tissues with the given properties.

    Elementwise in all tissue arguments (they broadcast together; pass equal shapes or scalars).
    Differentiable with respect to the tissue properties and to the sequence's leaves (``te_s``,
    ``tr_s``, ``ti_s``, ``flip_deg``); batch over sequences with ``jax.vmap``.

    Args:
        sequence: a `SpinEcho`, `GradientEcho`, `InversionRecovery` or `BSSFP`.
        pd: proton density (relative; the signal is in the same unit).
        t1_s: longitudinal relaxation time T1 (s), > 0.
        t2_s: transverse relaxation time T2 (s), > 0.
        t2star_s: effective transverse relaxation time T2* (s), > 0; required by `GradientEcho`.
        b1: relative transmit field (scales every flip angle); default 1.
        b0_hz: off-resonance (Hz); default 0.

    Returns:
        Complex transverse magnetisation at the echo time, complex64 for float32 input (complex128
        for float64). Real and positive on resonance for spin and gradient echoes; real and signed
        for inversion recovery. Take ``.real`` or ``jnp.abs`` before ``jax.grad``.

    Raises:
        TypeError: ``sequence`` is not a sequence.
        ValueError: T1, T2 or T2* not positive (checked when the values are concrete, not under
            ``jax.jit``), or ``t2star_s`` missing for a gradient echo.

    Example:
        >>> se = SpinEcho.create(te_s=0.015, tr_s=0.5)
        >>> s = signal(se, jnp.float32(0.7), jnp.float32(0.9), jnp.float32(0.08))
        >>> round(float(s.real), 3)
        0.242

    References:
        See the module docstring (Haacke et al. 1999; Bernstein et al. 2004).
    """
    where = f"{chk.PREFIX}signal"
    if not isinstance(sequence, AbstractSequence):
        raise TypeError(
            f"{where}: `sequence` must be a SpinEcho, GradientEcho, InversionRecovery or BSSFP "
            f"(got {type(sequence).__name__})"
        )
    if sequence.uses_t2star and t2star_s is None:
        raise chk.FieldError(
            where,
            "t2star_s",
            f"`t2star_s` is required by {type(sequence).__name__} "
            "(a gradient echo decays with T2*)",
        )
    chk.positive_array(where, "t1_s", t1_s, " (seconds)")
    chk.positive_array(where, "t2_s", t2_s, " (seconds)")
    chk.positive_array(where, "t2star_s", t2star_s, " (seconds)")
    pd, t1_s, t2_s = jnp.asarray(pd), jnp.asarray(t1_s), jnp.asarray(t2_s)
    return sequence.magnetization(
        pd,
        t1_s,
        t2_s,
        t2_s if t2star_s is None else jnp.asarray(t2star_s),
        1.0 if b1 is None else jnp.asarray(b1),
        0.0 if b0_hz is None else jnp.asarray(b0_hz),
    )
