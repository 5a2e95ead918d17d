"""Clustered lumpy backgrounds (Bochud, Abbey & Eckstein 1999): clusters of oriented blobs.

The field is a Poisson cluster process of blobs,

    b(r) = sum_k sum_{n <= N_k} l_{u_k}(r - c_k - d_kn),

with cluster centres ``c_k`` a Poisson process of intensity ``λ`` (clusters per cm³, per cm² on
a 2-D grid), ``N_k ~ Poisson(N̄)`` blobs per cluster displaced from the centre by isotropic
Gaussian offsets ``d_kn`` (standard deviation ``σ`` per axis), and every blob of cluster ``k``
oriented along the cluster's random axis ``u_k``. The blob profile is the published one,

    l_u(r) = exp(-α |r|^β / L_u(r)),
    L_u(r) = Lx Ly / sqrt(Ly² cos²φ + Lx² sin²φ),   cos φ = u·r/|r|,

``L_u`` being the radius, in the direction of ``r``, of the ellipse with half-axes ``Lx`` along
``u`` and ``Ly`` across it (1/L² = cos²φ/Lx² + sin²φ/Ly²). The form is that of the CLB generator
distributed with the paper's parameters (``CLB.m``, "each cluster has ONE random angle"; a copy
is in the public repository vanandrew/sandbox, ``ImageQuality/CLB.m``); Zysk's later
reimplementation (``CreateLumpyBackground.m``, 2009) writes ``exp(-α (|r|/L)^β)`` instead.
``|r|^β / L`` is not scale-free unless ``β = 1``: the published parameters are in pixels, so
``r`` and ``L`` are measured here in a length unit ``unit_mm`` (the pixel the parameters were
fitted on) and the profile is ``exp(-α (|r|/unit)^β / (L/unit))`` with lengths in mm.

In 3-D (a documented generalisation; the paper is 2-D) the blob is the same profile with
``L_u`` the radius of the prolate spheroid with half-axis ``Lx`` along ``u`` and ``Ly`` across
it (the same formula, ``cos φ = u·r/|r|``), and ``u`` is uniform on the sphere.

Sampling on the periodic grid, exactly and with static shapes. The orientation of a cluster is
drawn from ``M`` fixed axes (2-D: ``φ_m = π m / M``, uniform over [0, π) — the profile has the
ellipse's symmetry, so [0, 2π) and [0, π) give the same blob; 3-D: ``M`` Fibonacci directions on
the half sphere), ``M = 16`` (2-D) or ``32`` (3-D). For each axis ``m``:

1. cluster centres: each voxel gets ``C_m ~ Poisson(λ v / M)`` centres (``v`` the voxel volume
   in cm³ or cm²), i.e. a Poisson process on the voxel lattice;
2. blobs: given the centres, the blobs of a Poisson(N̄)-sized Gaussian cluster form a Poisson
   process of intensity ``N̄ Σ_k g(r - c_k)`` (a Neyman–Scott process with Poisson offspring is
   a Cox process), so each voxel gets ``B_m ~ Poisson(N̄ (C_m ⊛ g)(r))`` blobs, ``g`` the
   Gaussian on the periodic lattice normalised to sum 1;
3. the field gains ``B_m ⊛ l_m`` (FFT convolution, periodic).

Exact moments on the lattice (Campbell's theorem for the Poisson cluster process; with a Poisson
number of offspring ``E[(Σ_n f(d_n))²] = N̄ E[f²] + N̄² E[f]²``):

    E b          = Σ_m p N̄ Σ_j l_m(j),
    Cov b(Δ)     = Σ_m p [ N̄ (l_m ⋆ l_m)(Δ) + N̄² (h_m ⋆ h_m)(Δ) ],   h_m = l_m ⊛ g,
    Var b        = Cov b(0),

with ``p = λ v / M``. The first term is the unclustered (Rolland–Barrett) part, the second the
clustering: it is what a plain lumpy background of the same blob density ``λ N̄`` lacks
(``N̄ → 0`` at fixed ``λ N̄`` removes it).

References:
    Bochud FO, Abbey CK, Eckstein MP. Statistical texture synthesis of mammographic images
    with clustered lumpy backgrounds. Opt Express 4(1):33-43 (1999).
    Bochud FO, Abbey CK, Eckstein MP. Visual signal detection in structured backgrounds. III.
    J Opt Soc Am A 16(7):1678-1691 (1999) (clustered lumpy backgrounds).
    Rolland JP, Barrett HH. J Opt Soc Am A 9(5):649-658 (1992).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["ORIENTATIONS_2D", "ORIENTATIONS_3D", "clustered_lumpy_background"]

#: number of blob orientations (axes over [0, π)) on a 2-D grid
ORIENTATIONS_2D = 16
#: number of blob axes (Fibonacci points on the half sphere) on a 3-D grid
ORIENTATIONS_3D = 32


def _axes(ndim: int) -> np.ndarray:
    """``(M, ndim)`` unit long axes of the blobs."""
    if ndim == 2:
        phi = math.pi * np.arange(ORIENTATIONS_2D) / ORIENTATIONS_2D
        return np.stack([np.cos(phi), np.sin(phi)], axis=1)
    if ndim == 3:
        m = np.arange(ORIENTATIONS_3D)
        z = (m + 0.5) / ORIENTATIONS_3D
        az = m * math.pi * (3.0 - math.sqrt(5.0))  # golden angle
        s = np.sqrt(1.0 - z * z)
        return np.stack([s * np.cos(az), s * np.sin(az), z], axis=1)
    raise ValueError(
        "medphys.phantoms.clustered_lumpy_background: the grid must be 2-D or 3-D "
        f"(got {ndim} axes)"
    )


def _offsets(shape: tuple[int, ...], spacing: tuple[float, ...]) -> list[np.ndarray]:
    """Signed minimum-image offsets (mm) along each axis, shaped to broadcast over the grid."""
    out = []
    for axis, (n, d) in enumerate(zip(shape, spacing, strict=True)):
        o = np.fft.fftfreq(n, 1.0 / n) * d
        out.append(o.reshape([n if i == axis else 1 for i in range(len(shape))]))
    return out


def _blob(xp: Any, offsets: Sequence[Any], axis: Any, params: tuple[float, ...]) -> Any:
    """Blob profile ``exp(-α (r/unit)^β unit/L_u(r))`` at the lattice offsets (numpy or jnp)."""
    lx, ly, alpha, beta, unit = params
    r2 = sum(o * o for o in offsets)
    along = sum(o * a for o, a in zip(offsets, axis, strict=True))
    r = xp.sqrt(r2)
    pos = r2 > 0
    cos2 = xp.where(pos, along * along / xp.where(pos, r2, 1.0), 1.0)
    inv_l = xp.sqrt(cos2 / (lx * lx) + (1.0 - cos2) / (ly * ly))
    return xp.exp(-alpha * (r / unit) ** beta * unit * inv_l)


def _cluster_gaussian(
    shape: tuple[int, ...], spacing: tuple[float, ...], sigma: float
) -> np.ndarray:
    """Isotropic Gaussian of the blob offsets on the periodic lattice, normalised to sum 1."""
    g = np.ones(())
    for o in _offsets(shape, spacing):
        w = np.exp(-(o * o) / (2.0 * sigma * sigma))
        g = g * (w / w.sum())
    return g


def _per_voxel(shape: tuple[int, ...], spacing: tuple[float, ...], per_cm: float) -> float:
    """Mean cluster centres per voxel and per orientation, ``λ v / M``."""
    voxel_cm = float(np.prod(spacing)) / 10.0 ** len(shape)
    return per_cm * voxel_cm / len(_axes(len(shape)))


@functools.lru_cache(maxsize=32)
def clustered_moments(
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    clusters_per_cm3: float,
    blobs_per_cluster: float,
    cluster_sigma_mm: float,
    blob: tuple[float, ...],
) -> tuple[float, float, float]:
    """Exact ``(mean, variance, clustering part of the variance)`` of the raw field on this grid.

    ``blob = (Lx_mm, Ly_mm, alpha, beta, unit_mm)``. See the module docstring for the formulas.
    """
    p = _per_voxel(shape, spacing, clusters_per_cm3)
    n_bar = blobs_per_cluster
    g_hat = np.fft.rfftn(_cluster_gaussian(shape, spacing, cluster_sigma_mm))
    offsets = _offsets(shape, spacing)
    axes = tuple(range(len(shape)))
    mean = poisson = cluster = 0.0
    for axis in _axes(len(shape)):
        lm = _blob(np, offsets, axis, blob)
        h = np.fft.irfftn(np.fft.rfftn(lm) * g_hat, s=shape, axes=axes)
        mean += p * n_bar * float(lm.sum())
        poisson += p * n_bar * float((lm * lm).sum())
        cluster += p * n_bar * n_bar * float((h * h).sum())
    return mean, poisson + cluster, cluster


def clustered_lumpy_background(
    key: Array,
    shape: Sequence[int],
    spacing_mm: float | Sequence[float],
    *,
    clusters_per_cm3: float,
    blobs_per_cluster: float,
    cluster_sigma_mm: float,
    blob_lx_mm: float,
    blob_ly_mm: float,
    alpha: float,
    beta: float,
    unit_mm: float,
    dtype: Any = jnp.float32,
) -> Float[Array, "..."]:
    """One raw clustered lumpy background ``b(r)`` (unit blob height) on a periodic grid.

    See the module docstring for the model, the lattice sampling and its exact moments
    (`clustered_moments`). Blob centres lie on voxel centres, so blobs narrower than a voxel are
    sampled, not integrated. Values are not checked here (`ClusteredLumpyTexture.create` does).

    Args:
        key: a ``jax.random`` key.
        shape: grid shape, 2-D or 3-D (static).
        spacing_mm: voxel size (mm), one value or one per axis.
        clusters_per_cm3: mean number of cluster centres per cm³ (per cm² on a 2-D grid).
        blobs_per_cluster: mean number of blobs per cluster, ``N̄``.
        cluster_sigma_mm: standard deviation (per axis) of a blob's offset from its cluster
            centre (mm).
        blob_lx_mm, blob_ly_mm: half-axes of the blob's ellipse along and across its axis (mm).
        alpha, beta: profile parameters of ``exp(-α r^β / L)``.
        unit_mm: the length unit in which ``r`` and ``L`` enter the profile (mm).
        dtype: floating dtype of the result.

    Returns:
        The field, ``shape``, ``dtype``; works under ``jax.jit`` (all arguments but ``key``
        static).
    """
    shape = tuple(int(n) for n in shape)
    spacing = tuple(
        float(s) for s in np.broadcast_to(np.asarray(spacing_mm, np.float64), (len(shape),))
    )
    axes_dirs = _axes(len(shape))
    p = _per_voxel(shape, spacing, clusters_per_cm3)
    axes = tuple(range(len(shape)))
    g_hat = jnp.asarray(np.fft.rfftn(_cluster_gaussian(shape, spacing, cluster_sigma_mm)))
    offsets = [jnp.asarray(o, dtype) for o in _offsets(shape, spacing)]
    blob = (blob_lx_mm, blob_ly_mm, alpha, beta, unit_mm)

    def one_axis(acc: Array, m_axis: tuple[Array, Array]) -> tuple[Array, None]:
        m, axis = m_axis
        k_centres, k_blobs = jax.random.split(jax.random.fold_in(key, m))
        centres = jax.random.poisson(k_centres, p, shape).astype(dtype)
        rate = jnp.fft.irfftn(jnp.fft.rfftn(centres, axes=axes) * g_hat, s=shape, axes=axes)
        rate = jnp.maximum(blobs_per_cluster * rate, 0.0)  # FFT round-off below 0
        blobs = jax.random.poisson(k_blobs, rate.astype(dtype), shape).astype(dtype)
        kernel = _blob(jnp, offsets, [axis[i] for i in axes], blob).astype(dtype)
        field = jnp.fft.irfftn(
            jnp.fft.rfftn(blobs, axes=axes) * jnp.fft.rfftn(kernel, axes=axes), s=shape, axes=axes
        )
        return acc + field.astype(dtype), None

    steps = (jnp.arange(len(axes_dirs)), jnp.asarray(axes_dirs, dtype))
    out, _ = jax.lax.scan(one_axis, jnp.zeros(shape, dtype), steps)
    return out
