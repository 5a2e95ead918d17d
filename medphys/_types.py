"""Conventions shared by the whole package, written once.

Units
    lengths in millimetres (``*_mm``), energies in keV (``energy_kev``), times in seconds (``*_s``),
    magnetic field in tesla (``field_t``), angles in radians unless the name says ``_deg``,
    linear attenuation in 1/cm (``mu``), mass attenuation in cm^2/g, density in g/cm^3.

World coordinates
    RAS+ millimetres (nibabel's convention): +x points to the patient's Right, +y Anterior,
    +z Superior. A patient lying supine on the table has its head at +z.

Volumes
    ``data[i, j, k]`` is the voxel with index (i, j, k); its centre in world millimetres is
    ``affine @ [i, j, k, 1]`` (nibabel's voxel-to-world convention, voxel centres at integers).
    Axis names used in jaxtyping annotations: ``"x y z"`` for volumes, ``"views u v"`` or
    ``"views u"`` for projections, ``"coils kx ky"`` for k-space, ``"*batch rays"`` for rays.

Randomness
    enters only through an explicit ``jax.random`` key, always the first argument.
"""

from __future__ import annotations

from typing import TypeAlias

import jax
import numpy as np

#: An array from either NumPy or JAX (values read by the boundary code).
ArrayLike: TypeAlias = np.ndarray | jax.Array

#: Key type for stochastic functions.
PRNGKey: TypeAlias = jax.Array
