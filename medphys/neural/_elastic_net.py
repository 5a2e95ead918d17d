"""The displacement network of the elasticity solver (Flax NNX): coordinates in, a vector out.

It knows nothing of materials, loads or boundary conditions: `medphys.neural.solve_elasticity`
scales its inputs, multiplies its output by the distance factors of the Dirichlet planes and adds
the prescribed part. The last layer starts at zero, so training starts from the lift alone
(zero displacement where nothing is prescribed).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

__all__ = ["DisplacementNet"]


class DisplacementNet(nnx.Module):
    """A tanh MLP ``(*batch, inputs) → (*batch, 3)``: smooth, with smooth derivatives (the strain
    energy needs the first derivatives, its gradient the second).

    Args:
        key: initialisation key.
        inputs: input width (3 coordinates, plus any problem parameters).
        width: hidden width.
        depth: hidden layers.
        dtype: parameter dtype (float32 by default, also under x64).
    """

    def __init__(
        self,
        key: Array,
        *,
        inputs: int = 3,
        width: int = 64,
        depth: int = 4,
        dtype: jnp.dtype = jnp.float32,
    ) -> None:
        rngs = nnx.Rngs(params=key)
        sizes = [inputs] + [width] * depth
        self.hidden = nnx.List(
            [
                nnx.Linear(a, b, rngs=rngs, param_dtype=dtype, dtype=dtype)
                for a, b in itertools.pairwise(sizes)
            ]
        )
        self.out = nnx.Linear(
            width,
            3,
            rngs=rngs,
            param_dtype=dtype,
            dtype=dtype,
            kernel_init=nnx.initializers.zeros,
        )

    def __call__(self, x: Float[Array, "*batch inputs"]) -> Float[Array, "*batch 3"]:
        h = x
        for layer in self.hidden:
            h = jax.nn.tanh(layer(h))
        return self.out(h)
