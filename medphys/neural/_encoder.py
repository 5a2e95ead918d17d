"""A small convolutional image encoder that medphys trains itself (SimCLR), for feature-space metrics.

Memorisation audits and distribution metrics (`medphys.audit.memorisation_audit`,
`medphys.metrics.kid`) need a feature space in which two views of one image are close and
different images are not. Inception-v3 features are trained on photographs and ship as
downloaded weights; this encoder is trained from scratch on the user's own patches in seconds,
from a key, with no download.

Architecture (`Encoder`), for 2-D ``(H, W)`` or 3-D ``(H, W, D)`` images: the images are
standardised by the training patches' mean and standard deviation (one number each, stored in
the module), then ``len(channels)`` 3ⁿ convolutions with ReLU (stride 2,
'SAME' padding), a global average, and a two-layer projection head (ReLU between) to
``dim`` numbers, divided by their Euclidean norm. Parameters are float32.

Training (`train_encoder`): each step draws ``batch`` patches without replacement, makes two
random views of each (`augment`) and minimises the NT-Xent loss (`nt_xent`, temperature 0.2)
with Adam and a cosine-decayed rate. Step ``k`` draws from ``fold_in(key, k)``: the same key and
patches give bitwise-equal weights on one backend (CPU).

Augmentations (`augment`, on standardised images, each draw independent per view):

- crop-and-resize: a window of ``1/s`` of each axis, ``s ~ U(1, 1.3)``, at a uniform position,
  resampled (linear) to the full size (this includes sub-pixel and 1-px shifts);
- flips: each spatial axis with probability 1/2;
- intensity: ``a · x + b``, ``a ~ U(0.9, 1.1)``, ``b ~ U(−0.1, 0.1)`` (standardised units);
- additive Gaussian noise of standard deviation ``U(0, 0.05)``.

References:
    Chen, Kornblith, Norouzi, Hinton, "A simple framework for contrastive learning of visual
    representations" (SimCLR), ICML 2020 (NT-Xent, two augmented views, projection head).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float

from ._checks import positive_int, positive_number

__all__ = ["Encoder", "augment", "embed", "nt_xent", "train_encoder"]

_WHERE = "medphys.neural"
_TEMPERATURE = 0.2
_MIN_SIZE = 8
# named random streams of a training step
_BATCH, _VIEW1, _VIEW2 = 0, 1, 2


class Statistic(nnx.Variable):
    """A non-trainable number of the encoder (the training patches' mean and standard deviation)."""


class Encoder(nnx.Module):
    """Convolutional encoder: images ``(n, *spatial)`` → ``(n, dim)`` unit-norm features.

    Args:
        key: initialises the weights.
        ndim: 2 for ``(H, W)`` images, 3 for ``(H, W, D)``.
        dim: output features.
        channels: channels of the convolutions (each stride 2).
        mean, std: the intensity standardisation ``(x − mean) / std`` (the training patches').

    Example:
        >>> enc = Encoder(jax.random.key(0), ndim=2)
        >>> enc(jnp.zeros((4, 32, 32))).shape
        (4, 32)
    """

    def __init__(
        self,
        key: Array,
        *,
        ndim: int = 2,
        dim: int = 32,
        channels: tuple[int, ...] = (16, 32, 64),
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        where = f"{_WHERE}.Encoder"
        if ndim not in (2, 3):
            raise ValueError(f"{where}: `ndim` must be 2 or 3 (got {ndim!r})")
        self.ndim = int(ndim)
        self.dim = positive_int(where, "dim", dim)
        channels = tuple(positive_int(where, "channels", c) for c in channels)
        if not channels:
            raise ValueError(f"{where}: `channels` must name at least one layer (got ())")
        rngs = nnx.Rngs(params=key)
        kernel = (3,) * self.ndim
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, kernel, strides=2, rngs=rngs)
                for a, b in itertools.pairwise((1, *channels))
            ]
        )
        self.head = nnx.Linear(channels[-1], channels[-1], rngs=rngs)
        self.out = nnx.Linear(channels[-1], self.dim, rngs=rngs)
        self.mean = Statistic(jnp.asarray(mean, jnp.float32))
        self.std = Statistic(jnp.asarray(positive_number(where, "std", std), jnp.float32))

    def standardise(self, images: Array) -> Array:
        """``(images − mean) / std`` in float32."""
        return (jnp.asarray(images, jnp.float32) - self.mean[...]) / self.std[...]

    def features(self, z: Float[Array, " n *spatial"]) -> Float[Array, "n dim"]:
        """Unit-norm features of *standardised* images."""
        h = z[..., None]
        for conv in self.convs:
            h = jax.nn.relu(conv(h))
        h = jnp.mean(h, axis=tuple(range(1, 1 + self.ndim)))
        h = self.out(jax.nn.relu(self.head(h)))
        return h / jnp.sqrt(jnp.sum(h * h, axis=-1, keepdims=True) + 1e-12)

    def __call__(self, images: Float[Array, " n *spatial"]) -> Float[Array, "n dim"]:
        """Unit-norm features of images in their own unit (HU, 1/mm, …)."""
        return self.features(self.standardise(images))


def augment(key: Array, z: Float[Array, "*spatial"]) -> Float[Array, "*spatial"]:
    """One random view of one standardised image (see the module docstring); float32."""
    k_scale, k_shift, k_flip, k_gain, k_bias, k_sigma, k_noise = jax.random.split(key, 7)
    z = jnp.asarray(z, jnp.float32)
    shape = jnp.asarray(z.shape, jnp.float32)
    nd = z.ndim
    s = jax.random.uniform(k_scale, (), jnp.float32, 1.0, 1.3)
    # output pixel o samples the input at (o + ½ − t)/s − ½ (linear interpolation along each
    # axis); t in [N(1 − s), 0] keeps the window inside the image
    t = jax.random.uniform(k_shift, (nd,), jnp.float32) * (shape * (1.0 - s))
    for axis, n in enumerate(z.shape):
        grid = jnp.arange(n, dtype=jnp.float32)
        at = (grid + 0.5 - t[axis]) / s - 0.5
        weights = jnp.maximum(0.0, 1.0 - jnp.abs(at[:, None] - grid[None, :]))
        z = jnp.moveaxis(jnp.tensordot(weights, z, axes=([1], [axis])), 0, axis)
    flips = jax.random.bernoulli(k_flip, 0.5, (nd,))
    for axis in range(nd):
        z = jnp.where(flips[axis], jnp.flip(z, axis), z)
    gain = jax.random.uniform(k_gain, (), jnp.float32, 0.9, 1.1)
    bias = jax.random.uniform(k_bias, (), jnp.float32, -0.1, 0.1)
    sigma = jax.random.uniform(k_sigma, (), jnp.float32, 0.0, 0.05)
    return gain * z + bias + sigma * jax.random.normal(k_noise, z.shape, jnp.float32)


def nt_xent(
    z1: Float[Array, "b d"], z2: Float[Array, "b d"], *, temperature: float = _TEMPERATURE
) -> Float[Array, ""]:
    """SimCLR's normalised temperature-scaled cross-entropy over ``2b`` unit-norm features.

    With ``z = [z1; z2]`` and ``s_ij = z_iᵀz_j / τ``, the loss is the mean over the ``2b`` rows of
    ``−log(exp(s_{i,p(i)}) / Σ_{j≠i} exp(s_ij))``, ``p(i)`` the other view of image ``i``.
    Its minimum over ``b`` images is about ``−2/τ + log(1 + (2b − 2) e^{…})``; ``log(2b − 1)``
    for features that carry no information.
    """
    z = jnp.concatenate([z1, z2], axis=0)
    n = z.shape[0]
    sim = (z @ z.T) / temperature
    eye = jnp.eye(n, dtype=bool)
    logits = jnp.where(eye, -jnp.inf, sim)
    partner = (jnp.arange(n) + n // 2) % n
    positive = jnp.take_along_axis(sim, partner[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - positive)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _State:
    params: Any
    opt_state: Any
    step: Array
    key: Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Problem:
    """Standardised patches and the static pieces of a training run (a pytree: the patches are
    an argument of the jitted step, not a constant)."""

    patches: Array
    rest: Any
    learning_rate: Array
    steps: Array
    temperature: Array
    graphdef: Any = dataclasses.field(metadata={"static": True})
    batch: int = dataclasses.field(metadata={"static": True})

    def init(self, key: Array, params: Any) -> _State:
        return _State(params, _ADAM.init(params), jnp.zeros((), jnp.int32), key)

    def rate(self, step: Array) -> Array:
        """Adam's rate at ``step``: cosine decay from `learning_rate` to a tenth of it (optax's
        ``cosine_decay_schedule(learning_rate, steps, alpha=0.1)``)."""
        done = jnp.minimum(step, self.steps) / self.steps
        return self.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + jnp.cos(jnp.pi * done)))

    def loss(self, params: Any, key: Array) -> Array:
        enc = nnx.merge(self.graphdef, params, self.rest)
        n = self.patches.shape[0]
        index = jax.random.permutation(jax.random.fold_in(key, _BATCH), n)[: self.batch]
        z = self.patches[index]
        keys = jnp.concatenate(
            [
                jax.random.split(jax.random.fold_in(key, _VIEW1), self.batch),
                jax.random.split(jax.random.fold_in(key, _VIEW2), self.batch),
            ]
        )
        views = enc.features(jax.vmap(augment)(keys, jnp.concatenate([z, z])))
        return nt_xent(views[: self.batch], views[self.batch :], temperature=self.temperature)

    def step(self, state: _State) -> tuple[_State, Array]:
        key = jax.random.fold_in(state.key, state.step)
        value, grads = jax.value_and_grad(self.loss)(state.params, key)
        updates, opt_state = _ADAM.update(grads, state.opt_state, state.params)
        rate = self.rate(state.step).astype(jnp.float32)
        updates = jax.tree_util.tree_map(lambda u: -rate * u, updates)
        params = optax.apply_updates(state.params, updates)
        return _State(params, opt_state, state.step + 1, state.key), value


# the rate is applied in the step (from array leaves): one compiled step for every
# steps / learning_rate / temperature setting of a given batch and patch shape
_ADAM = optax.scale_by_adam()


_STEP = jax.jit(_Problem.step, donate_argnums=1)


def _images(where: str, name: str, value: Any, ndims: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{where}: `{name}` must hold real numbers (got dtype {arr.dtype})")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{where}: `{name}` must be real (got dtype {arr.dtype}); pass abs()")
    if arr.ndim not in ndims:
        allowed = " or ".join("(n, H, W)" if d == 3 else "(n, H, W, D)" for d in ndims)
        raise ValueError(f"{where}: `{name}` must be {allowed} (got shape {arr.shape})")
    if arr.shape[0] == 0 or min(arr.shape[1:]) < _MIN_SIZE:
        raise ValueError(
            f"{where}: `{name}` must hold at least one image of at least {_MIN_SIZE} pixels per "
            f"axis (got shape {arr.shape})"
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(
            f"{where}: `{name}` must be finite; {bad} of {arr.size} values are not. Remove or "
            "repair those images first"
        )
    return arr


def train_encoder(
    key: Array,
    patches: Float[Array, " n *spatial"],
    *,
    steps: int = 300,
    batch: int = 64,
    dim: int = 32,
    learning_rate: float = 3e-3,
    channels: tuple[int, ...] = (16, 32, 64),
    temperature: float = _TEMPERATURE,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> Encoder:
    """Train an `Encoder` on image patches with SimCLR (see the module docstring).

    Args:
        key: initialises the weights and draws every batch and augmentation; the same key and
            patches give bitwise-equal weights on one backend.
        patches: ``(n, H, W)`` or ``(n, H, W, D)`` images in their own unit, at least 8 pixels
            per axis and at least ``batch`` of them (a few hundred 32-64 px patches is enough).
        steps: optimiser steps.
        batch: images per step (two views each).
        dim: output features.
        learning_rate: Adam's peak rate (cosine decay to a tenth).
        channels: the convolutions' channels.
        temperature: NT-Xent's τ.
        progress: show a progress bar (stderr) with the running loss.
        callback: ``callback(step, loss)`` after each step (monitoring, loss curves).

    Returns:
        The trained `Encoder` (use `embed` for features).

    Raises:
        ValueError: patches of the wrong rank, too small or too few, non-finite or constant;
            non-positive steps, batch, dim or rates.

    Example:
        >>> enc = train_encoder(jax.random.key(0), patches, steps=300, progress=False)
        >>> feats = embed(enc, patches)  # (n, 32), unit norm

    References:
        Chen et al., "A simple framework for contrastive learning of visual representations",
        ICML 2020.
    """
    where = f"{_WHERE}.train_encoder"
    x = _images(where, "patches", patches, (3, 4))
    steps = positive_int(where, "steps", steps)
    batch = positive_int(where, "batch", batch, low=2)
    if x.shape[0] < batch:
        raise ValueError(
            f"{where}: `patches` must hold at least `batch` = {batch} images (got {x.shape[0]}); "
            "lower `batch` or give more patches"
        )
    learning_rate = positive_number(where, "learning_rate", learning_rate)
    temperature = positive_number(where, "temperature", temperature)
    mean, std = float(np.mean(x, dtype=np.float64)), float(np.std(x, dtype=np.float64))
    if not std > 0:
        raise ValueError(f"{where}: `patches` are constant (all {mean}); nothing to learn")
    k_init, k_run = jax.random.split(key)
    encoder = Encoder(k_init, ndim=x.ndim - 1, dim=dim, channels=channels, mean=mean, std=std)
    graphdef, params, rest = nnx.split(encoder, nnx.Param, ...)
    problem = _Problem(
        patches=encoder.standardise(x),
        rest=rest,
        learning_rate=jnp.asarray(learning_rate, jnp.float32),
        steps=jnp.asarray(steps, jnp.int32),
        temperature=jnp.asarray(temperature, jnp.float32),
        graphdef=graphdef,
        batch=batch,
    )
    state = problem.init(k_run, params)
    step = _STEP
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("encoder"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("encoder", total=steps, loss="-")
        for done in range(1, steps + 1):
            state, value = step(problem, state)
            loss = float(value)
            bar.update(task, completed=done, loss=f"{loss:.4g}")
            if callback is not None:
                callback(done, loss)
    return nnx.merge(graphdef, state.params, rest)


@functools.partial(jax.jit, static_argnums=0)
def _embed_chunk(graphdef: Any, state: Any, images: Array) -> Array:
    return nnx.merge(graphdef, state)(images)


def embed(
    encoder: Encoder, images: Float[Array, " n *spatial"], *, chunk: int = 256
) -> Float[Array, "n dim"]:
    """Unit-norm features of images, in jitted chunks of `chunk` images (one compilation).

    Args:
        encoder: a trained `Encoder`.
        images: ``(n, H, W)`` (2-D encoder) or ``(n, H, W, D)`` (3-D) in the training unit.
        chunk: images per jitted call (memory bound).

    Returns:
        ``(n, encoder.dim)`` float32 features of Euclidean norm 1.

    Raises:
        TypeError: ``encoder`` is not an `Encoder`.
        ValueError: images of the wrong rank, smaller than 8 pixels per axis, or non-finite.

    Example:
        >>> f = embed(encoder, patches)
        >>> features = lambda x: embed(encoder, x)   # for medphys.audit.memorisation_audit
    """
    where = f"{_WHERE}.embed"
    if not isinstance(encoder, Encoder):
        raise TypeError(
            f"{where}: `encoder` must be a medphys.neural.Encoder (from train_encoder) "
            f"(got {type(encoder).__name__})"
        )
    x = _images(where, "images", images, (encoder.ndim + 1,))
    chunk = positive_int(where, "chunk", chunk)
    graphdef, state = nnx.split(encoder)
    n = x.shape[0]
    size = min(chunk, n)
    out = []
    for start in range(0, n, size):
        part = x[start : start + size]
        if part.shape[0] < size:  # pad the last chunk: one compiled shape
            pad = np.repeat(part[-1:], size - part.shape[0], axis=0)
            part = np.concatenate([part, pad], axis=0)
        out.append(_embed_chunk(graphdef, state, jnp.asarray(part, jnp.float32)))
    return jnp.concatenate(out, axis=0)[:n]
