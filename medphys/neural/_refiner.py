"""Networks of the sim-to-real refiner (Flax NNX): a residual convolutional generator, a PatchGAN
discriminator and the projection heads of the contrastive (PatchNCE) loss.

They take and return arrays; every physics term lives in `medphys.neural._refine_losses` and the
training loop in `medphys.neural._refine`. Images are slices (2-D) or patches (3-D),
channel-last ``(batch, *spatial)``, of one modality (``modality``, kept with the weights):

- ``"ct"``: HU. The networks see two views of the value, a wide one (``HU / 1000``) and a
  soft-tissue one (``tanh((HU − 40) / 100)``), where real and simulated textures differ most; the
  generator's residual is in units of 100 HU.
- ``"mr"``: magnitude over the image's reference intensity (`medphys.metrics.mr_reference`: 1
  is about the brightest tissue). The networks see the value and a mid-range view (``tanh((x − 0.5) /
  0.25)``, where grey and white matter differ); the residual is in units of 0.1.

The generator is a small U-Net (Ronneberger et al. 2015) with residual blocks at the bottom (as
CycleGAN's and CUT's ResNet generators, Zhu et al. 2017, Park et al. 2020) whose last layer starts
at zero, so an untrained refiner is the identity and learns a residual in HU (SimGAN, Shrivastava
et al. 2017, keeps refined images close to their input the same way). Optional label
conditioning feeds the one-hot label map as extra input channels.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from ._checks import positive_int

_WHERE = "medphys.neural"
HU_WIDE = 1000.0  # HU per unit of the wide input channel
HU_SOFT_CENTRE = 40.0
HU_SOFT_WIDTH = 100.0
RESIDUAL_HU = 100.0  # HU per unit of the generator's last layer
MR_MID = 0.5
MR_MID_WIDTH = 0.25
MODALITIES = ("ct", "mr")
# image units per unit of the generator's last layer
RESIDUAL_UNIT = {"ct": RESIDUAL_HU, "mr": 0.1}


def hu_channels(hu: Float[Array, "batch ..."]) -> Float[Array, "batch ... 2"]:
    """The two input channels the networks see: ``HU/1000`` and ``tanh((HU − 40)/100)``."""
    x = jnp.asarray(hu, jnp.float32)
    return jnp.stack([x / HU_WIDE, jnp.tanh((x - HU_SOFT_CENTRE) / HU_SOFT_WIDTH)], axis=-1)


def mr_channels(image: Float[Array, "batch ..."]) -> Float[Array, "batch ... 2"]:
    """The two input channels for normalised MR magnitude: ``x`` and ``tanh((x − 0.5)/0.25)``."""
    x = jnp.asarray(image, jnp.float32)
    return jnp.stack([x, jnp.tanh((x - MR_MID) / MR_MID_WIDTH)], axis=-1)


def input_channels(image: Float[Array, "batch ..."], modality: str) -> Float[Array, "batch ... 2"]:
    """The networks' two input channels for ``modality`` (``"ct"`` or ``"mr"``)."""
    return hu_channels(image) if modality == "ct" else mr_channels(image)


def checked_modality(where: str, modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"{where}: `modality` must be one of {MODALITIES} (got {modality!r})")
    return modality


def _groups(width: int) -> int:
    return next(g for g in (8, 4, 2, 1) if width % g == 0)


class _ConvNorm(nnx.Module):
    def __init__(self, n_in: int, n_out: int, dim: int, rngs: nnx.Rngs, *, stride: int = 1):
        self.conv = nnx.Conv(n_in, n_out, (3,) * dim, strides=stride, rngs=rngs)
        self.norm = nnx.GroupNorm(n_out, num_groups=_groups(n_out), rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return jax.nn.silu(self.norm(self.conv(x)))


class _ResBlock(nnx.Module):
    def __init__(self, width: int, dim: int, rngs: nnx.Rngs):
        self.a = _ConvNorm(width, width, dim, rngs)
        self.b = nnx.Conv(width, width, (3,) * dim, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return x + self.b(self.a(x))


def _upsample(x: Array, dim: int) -> Array:
    for axis in range(1, dim + 1):
        x = jnp.repeat(x, 2, axis=axis)
    return x


class Refiner(nnx.Module):
    """Residual U-Net generator: ``refined = image + unit · g(image, labels)``, identity at start
    (``unit`` 100 HU for CT, 0.1 of the reference intensity for MR).

    Args:
        key: initialises the weights (the same key gives the same network).
        dim: 2 (slices ``(batch, x, y)``) or 3 (patches ``(batch, x, y, z)``).
        width: channels of the first level (doubled at each of the ``depth`` downsamplings).
        depth: stride-2 downsamplings; input sizes must be multiples of ``2**depth``.
        blocks: residual blocks at the coarsest level.
        labels: number of label classes for conditioning (0: none); the call then takes an
            integer label map beside the image.
        modality: ``"ct"`` (HU) or ``"mr"`` (normalised magnitude); module docstring.

    Raises:
        ValueError: a size or count outside its range.

    Example:
        >>> refiner = neural.Refiner(jax.random.key(0), dim=2)
        >>> refined = refiner(hu_batch)            # (batch, x, y) HU in, HU out
    """

    def __init__(
        self,
        key: Array,
        *,
        dim: int = 2,
        width: int = 32,
        depth: int = 2,
        blocks: int = 3,
        labels: int = 0,
        modality: str = "ct",
    ) -> None:
        where = f"{_WHERE}.Refiner"
        self.modality = checked_modality(where, modality)
        if dim not in (2, 3):
            raise ValueError(f"{where}: `dim` must be 2 or 3 (got {dim!r})")
        positive_int(where, "width", width)
        positive_int(where, "depth", depth)
        positive_int(where, "blocks", blocks, low=0)
        positive_int(where, "labels", labels, low=0)
        rngs = nnx.Rngs(params=key)
        self.dim = dim
        self.depth = depth
        self.n_labels = labels
        widths = [width * 2**k for k in range(depth + 1)]
        self.stem = _ConvNorm(2 + labels, width, dim, rngs)
        self.down = nnx.List(
            [_ConvNorm(a, b, dim, rngs, stride=2) for a, b in itertools.pairwise(widths)]
        )
        self.blocks = nnx.List([_ResBlock(widths[-1], dim, rngs) for _ in range(blocks)])
        self.up = nnx.List(
            [_ConvNorm(b + a, a, dim, rngs) for a, b in reversed(list(itertools.pairwise(widths)))]
        )
        self.head = nnx.Conv(
            width,
            1,
            (1,) * dim,
            kernel_init=nnx.initializers.zeros_init(),
            bias_init=nnx.initializers.zeros_init(),
            rngs=rngs,
        )

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def _input(self, hu: Array, labels: Array | None) -> Array:
        x = input_channels(hu, self.modality)
        if self.n_labels:
            if labels is None:
                raise ValueError(
                    f"{_WHERE}.Refiner: this refiner is label-conditioned ({self.n_labels} "
                    "classes); pass `labels`"
                )
            x = jnp.concatenate([x, jax.nn.one_hot(labels, self.n_labels, dtype=x.dtype)], -1)
        return x

    def encode(self, hu: Array, labels: Array | None = None) -> list[Array]:
        """The encoder's feature maps, finest first (the PatchNCE loss compares them)."""
        h = self.stem(self._input(hu, labels))
        features = [h]
        for layer in self.down:
            h = layer(h)
            features.append(h)
        return features

    def residual(self, hu: Array, labels: Array | None = None) -> Array:
        """The residual ``refined − image`` (HU for CT)."""
        features = self.encode(hu, labels)
        h = features[-1]
        for block in self.blocks:
            h = block(h)
        for layer, skip in zip(self.up, reversed(features[:-1]), strict=True):
            h = layer(jnp.concatenate([_upsample(h, self.dim), skip], axis=-1))
        return RESIDUAL_UNIT[self.modality] * self.head(h)[..., 0]

    def __call__(
        self, hu: Float[Array, "batch ..."], labels: Array | None = None
    ) -> Float[Array, "batch ..."]:
        """The refined image (HU for CT), same shape and dtype as the input."""
        return (jnp.asarray(hu, jnp.float32) + self.residual(hu, labels)).astype(
            jnp.result_type(hu)
        )


class PatchDiscriminator(nnx.Module):
    """PatchGAN discriminator (Isola et al. 2017): a map of real/fake scores, one per receptive
    field of about ``2**(layers + 2)`` pixels, on the modality's two input channels.

    Args:
        key: initialises the weights.
        dim: 2 or 3.
        width: channels of the first layer (doubled per layer, at most 8×).
        layers: stride-2 layers.
        modality: ``"ct"`` or ``"mr"`` (as `Refiner`).
    """

    def __init__(
        self, key: Array, *, dim: int = 2, width: int = 32, layers: int = 3, modality: str = "ct"
    ) -> None:
        where = f"{_WHERE}.PatchDiscriminator"
        self.modality = checked_modality(where, modality)
        if dim not in (2, 3):
            raise ValueError(f"{where}: `dim` must be 2 or 3 (got {dim!r})")
        positive_int(where, "width", width)
        positive_int(where, "layers", layers)
        rngs = nnx.Rngs(params=key)
        sizes = [2] + [width * min(2**k, 8) for k in range(layers)]
        self.convs = nnx.List(
            [nnx.Conv(a, b, (4,) * dim, strides=2, rngs=rngs) for a, b in itertools.pairwise(sizes)]
        )
        self.out = nnx.Conv(sizes[-1], 1, (3,) * dim, rngs=rngs)

    def __call__(self, hu: Float[Array, "batch ..."]) -> Float[Array, "batch ..."]:
        h = input_channels(hu, self.modality)
        for conv in self.convs:
            h = jax.nn.leaky_relu(conv(h), 0.2)
        return self.out(h)[..., 0]


class PatchHeads(nnx.Module):
    """One two-layer MLP per encoder level, mapping features to unit vectors for PatchNCE."""

    def __init__(self, key: Array, refiner: Refiner, *, features: int = 64) -> None:
        rngs = nnx.Rngs(params=key)
        width = refiner.stem.conv.out_features
        sizes = [width * 2**k for k in range(refiner.depth + 1)]
        self.a = nnx.List([nnx.Linear(n, features, rngs=rngs) for n in sizes])
        self.b = nnx.List([nnx.Linear(features, features, rngs=rngs) for _ in sizes])

    def __call__(self, level: int, h: Array) -> Array:
        z = self.b[level](jax.nn.relu(self.a[level](h)))
        return z / jnp.sqrt(jnp.sum(z * z, axis=-1, keepdims=True) + 1e-12)
