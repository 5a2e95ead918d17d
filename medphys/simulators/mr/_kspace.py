"""Centred orthonormal 2-D Fourier transforms of axial slices, and coil combination.

Layout: images are ``(..., x, y, z)`` and k-space is ``(..., kx, ky, z)``: each axial slice (fixed
z) is encoded in kx (readout, along x) and ky (phase encoding, along y); 2-D multi-slice. The
k-space centre (DC) sits at index ``n // 2`` and the image centre at voxel ``n // 2``:
``kspace = fftshift(fft2(ifftshift(image)))`` with ``norm="ortho"``, so the transform is unitary
(Parseval holds and white noise keeps its standard deviation between k-space and image).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Complex, Float

__all__ = ["fft2c", "ifft2c", "rss"]

_AXES = (-3, -2)


def fft2c(image: Complex[Array, "*batch x y z"]) -> Complex[Array, "*batch kx ky z"]:
    """Centred orthonormal 2-D DFT of every axial slice (over the x and y axes)."""
    shifted = jnp.fft.ifftshift(image, axes=_AXES)
    return jnp.fft.fftshift(jnp.fft.fft2(shifted, axes=_AXES, norm="ortho"), axes=_AXES)


def ifft2c(kspace: Complex[Array, "*batch kx ky z"]) -> Complex[Array, "*batch x y z"]:
    """Inverse of `fft2c`."""
    shifted = jnp.fft.ifftshift(kspace, axes=_AXES)
    return jnp.fft.fftshift(jnp.fft.ifft2(shifted, axes=_AXES, norm="ortho"), axes=_AXES)


def rss(coil_images: Complex[Array, "coils x y z"]) -> Float[Array, "x y z"]:
    """Root-sum-of-squares coil combination (Roemer et al. 1990): ``sqrt(sum_k |image_k|²)``.

    Its gradient is finite (zero) where every coil image is zero.
    """
    power = jnp.sum(jnp.real(coil_images) ** 2 + jnp.imag(coil_images) ** 2, axis=0)
    positive = power > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, power, 1.0)), 0.0)
