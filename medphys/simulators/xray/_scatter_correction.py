"""Kernel-based scatter correction: estimate the primary signal from a reading that carries scatter.

Model
    A reading is ``T = P + S(P)``: primary plus a scatter estimate from a kernel model of the
    same family as the simulator's `KernelScatter` (scatter-kernel superposition, Ohnesorge et
    al. 1999): every pixel's pencil beam scatters in proportion to its primary signal weighted by
    the object's opacity along it, spread over the detector by a broad Gaussian kernel ``K``,

        S(P) = spr · K ⊛ (P · (1 - P / P_air)),

    with ``P_air`` the flat field. The correction's kernel (``spr``, ``fwhm_mm``) is a property of
    the reconstruction, calibrated for the system (e.g. from beam-stop measurements), not read
    from the simulator: a mismatch leaves a residual (see the tests for the numbers).

Algorithm (fixed point, Sun & Star-Lack 2010, eq. 9; Star-Lack et al. 2009)
    ``P_0 = T``, ``P_{k+1} = T - S(P_k)``. ``|dS/dP| ≤ spr · max|1 - 2 P / P_air| ≤ spr``, so for
    ``spr < 1`` the map is a contraction: the error shrinks at least by ``spr`` per iteration and
    the iteration recovers ``P`` exactly when the kernel is the simulator's (noise-free). Under
    noise ``T - S`` may fall to zero in dark pixels; the scatter subtracted is limited to
    ``max_fraction`` of ``T`` (Star-Lack et al. 2009 limit it the same way).

References:
    B. Ohnesorge, T. Flohr, K. Klingenbeck-Regn, "Efficient object scatter correction algorithm for
    third and fourth generation CT scanners", Eur. Radiol. 9:563–569, 1999.
    J. Star-Lack, M. Sun, A. Kaestner, et al., "Efficient scatter correction using asymmetric
    kernels", Proc. SPIE 7258, 72581Z, 2009.
    M. Sun, J. M. Star-Lack, "Improved scatter correction using adaptive scatter kernel
    superposition", Phys. Med. Biol. 55(22):6695–6720, 2010.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..._checks import number as _number
from ._scatter import KernelScatter, scatter_signal

__all__ = ["ScatterCorrection", "correct_scatter"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ScatterCorrection:
    """Kernel scatter correction settings (see the module docstring).

    Attributes:
        spr: the correction kernel's scatter-to-primary ratio behind a wide, thick object (≥ 0,
            < 1 for the iteration to converge).
        fwhm_mm: full width at half maximum of the correction kernel at the detector (mm, > 0).
        n_iter: fixed-point iterations (static); the error shrinks at least ``spr``-fold each.
        max_fraction: the largest fraction of a reading removed as scatter (static, in (0, 1)).
    """

    spr: Float[Array, ""]
    fwhm_mm: Float[Array, ""]
    n_iter: int = dataclasses.field(default=10, metadata={"static": True})
    max_fraction: float = dataclasses.field(default=0.9, metadata={"static": True})

    @classmethod
    def create(
        cls, *, spr: float, fwhm_mm: float = 100.0, n_iter: int = 10, max_fraction: float = 0.9
    ) -> ScatterCorrection:
        """Validated constructor.

        Args:
            spr: the kernel's scatter-to-primary ratio, in [0, 1).
            fwhm_mm: the kernel's FWHM at the detector (mm).
            n_iter: fixed-point iterations, an integer ≥ 1.
            max_fraction: cap on the scatter removed, as a fraction of the reading, in (0, 1).

        Raises:
            ValueError, TypeError: values outside those ranges.

        Example:
            >>> c = ScatterCorrection.create(spr=0.5, fwhm_mm=150.0, n_iter=10)
        """
        where = "medphys.simulators.xray.ScatterCorrection.create"
        ratio = _number(where, "spr", spr)
        if not 0 <= ratio < 1:
            raise ValueError(
                f"{where}: `spr` (scatter-to-primary ratio of the correction kernel) must be in "
                f"[0, 1) for the fixed-point iteration to converge (got {spr!r})"
            )
        width = _number(where, "fwhm_mm", fwhm_mm)
        if width <= 0:
            raise ValueError(f"{where}: `fwhm_mm` must be > 0 mm (got {fwhm_mm!r})")
        if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
            raise ValueError(f"{where}: `n_iter` must be an integer ≥ 1 (got {n_iter!r})")
        cap = _number(where, "max_fraction", max_fraction)
        if not 0 < cap < 1:
            raise ValueError(f"{where}: `max_fraction` must be in (0, 1) (got {max_fraction!r})")
        return cls(
            spr=np.asarray(ratio, np.float64),
            fwhm_mm=np.asarray(width, np.float64),
            n_iter=int(n_iter),
            max_fraction=float(cap),
        )

    @classmethod
    def matching(cls, scatter: KernelScatter, *, n_iter: int = 10) -> ScatterCorrection:
        """The correction whose kernel is a given `KernelScatter` model (ideal calibration)."""
        return cls.create(spr=float(scatter.spr), fwhm_mm=float(scatter.fwhm_mm), n_iter=n_iter)


@partial(jax.jit, static_argnames=("n_iter", "max_fraction"))
def _fixed_point(
    total: Array,
    flat: Array,
    spr: Array,
    fwhm: Array,
    du: Array,
    dv: Array,
    *,
    n_iter: int,
    max_fraction: float,
) -> Array:
    model = KernelScatter(spr=spr, fwhm_mm=fwhm)
    flat_c = flat[..., None]
    total_c = total[..., None]
    cap = jnp.asarray(max_fraction, total.dtype) * jnp.maximum(total_c, 0.0)

    def body(_: int, primary: Array) -> Array:
        s = scatter_signal(model, primary, flat_c, du, dv)
        return total_c - jnp.clip(s, 0.0, cap)

    return jax.lax.fori_loop(0, n_iter, body, total_c)[..., 0]


def correct_scatter(
    correction: ScatterCorrection,
    counts: Float[Array, "views u v"],
    flat_counts: Float[Array, "*views u v"],
    du_mm: Any,
    dv_mm: Any,
) -> Float[Array, "views u v"]:
    """The primary readings ``P`` estimated from readings ``T = P + S(P)`` (same units).

    Args:
        correction: the `ScatterCorrection`.
        counts: ``(views, u, v)`` readings (photon equivalents), noisy or expected.
        flat_counts: ``(u, v)`` or ``(views, u, v)`` air-scan readings.
        du_mm, dv_mm: detector pixel pitch along ``u`` and the rows, at the detector (mm).

    Returns:
        the estimated primary readings, same shape and dtype as ``counts``.

    Example:
        >>> primary = correct_scatter(correction, scan.counts, scan.flat_counts, 1.6, 1.6)
    """
    t = jnp.asarray(counts)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.float32)
    dtype = t.dtype
    flat = jnp.asarray(flat_counts, dtype)
    if t.ndim != 3 or flat.shape not in (t.shape, t.shape[1:]):
        raise ValueError(
            "medphys.simulators.xray.correct_scatter: `counts` must be (views, u, v) and "
            f"`flat_counts` (u, v) or (views, u, v) (got {tuple(t.shape)} and {tuple(flat.shape)})"
        )
    return _fixed_point(
        t,
        flat,
        jnp.asarray(correction.spr, dtype),
        jnp.asarray(correction.fwhm_mm, dtype),
        jnp.asarray(du_mm, dtype),
        jnp.asarray(dv_mm, dtype),
        n_iter=correction.n_iter,
        max_fraction=correction.max_fraction,
    )
