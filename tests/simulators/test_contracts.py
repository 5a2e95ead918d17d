"""The transform contract of every public simulator operator, from one registry.

Each entry names an operator and builds it on a small grid: a function of arrays (what a user
jits, vmaps and differentiates), example inputs, and, for linear operators, the adjoint. Every
entry is checked for:

- ``jax.jit`` == eager;
- ``jax.vmap`` over a batch of 2 == a Python loop;
- float32 in → float32 out (and float64 → float64);
- no retrace when the compiled function is called again with new data;
- gradients against central finite differences (``jax.test_util.check_grads``, float64), for
  the entries that claim them;
- the dot-product test ``<A x, y> = <x, A^T y>`` for linear pairs.

A new operator joins by one entry in `REGISTRY`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import medphys
from medphys.simulators import ct, mr, xray

GRID = medphys.Grid.create((10, 9, 4), spacing_mm=2.0)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One operator under test.

    Attributes:
        name: what the user calls.
        build: ``build() -> (fn, inputs)``; ``fn(*inputs)`` returns an array or a pytree of
            arrays; the first input is the one batched, cast and differentiated.
        adjoint: for a linear ``fn`` of its first input, ``build() -> fn_adjoint`` (same
            closure), checked by the dot-product test.
        grads: whether ``fn`` claims gradients with respect to its first input.
        keyed: the first input is a `jax.random` key (stochastic operators): the batch is of
            keys, and gradients and casts do not apply to it (the second input is cast).
        slow: run in the slow tier only (an entry of the same operator stays in the default).
    """

    name: str
    build: Callable[[], tuple[Callable[..., Any], tuple[Any, ...]]]
    adjoint: Callable[[], Callable[..., Any]] | None = None
    grads: bool = True
    keyed: bool = False
    slow: bool = False  # heavy to compile: checked in the slow tier (a lighter twin stays)


def _positive(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.1, 1.0, shape)


def _parallel() -> xray.ParallelBeam:
    return xray.ParallelBeam.create(n_views=7, n_u=16, du_mm=1.6)


def _fan() -> xray.FanBeam:
    return xray.FanBeam.create(n_views=9, n_u=20, du_mm=2.0, sod_mm=300.0, sdd_mm=500.0)


def _cone() -> xray.ConeBeam:
    return xray.ConeBeam.create(
        n_views=6, n_u=14, n_v=8, du_mm=2.5, dv_mm=2.5, sod_mm=200.0, sdd_mm=350.0
    )


def _projector(geometry: Callable[[], Any], **kw: Any) -> Callable[[], tuple]:
    def build() -> tuple:
        op = xray.prepare(GRID, geometry(), **kw)
        return op.project, (_positive(GRID.shape, 0),)

    return build


def _projector_adjoint(geometry: Callable[[], Any], **kw: Any) -> Callable[[], Callable]:
    return lambda: xray.prepare(GRID, geometry(), **kw).backproject


MATERIALS = ("air", "water", "cortical_bone")


def _fractions(seed: int) -> np.ndarray:
    f = np.random.default_rng(seed).uniform(0.0, 1.0, (3, *GRID.shape))
    return f / f.sum(axis=0, keepdims=True)


def _scanner(geometry: Callable[[], Any]) -> xray.Scanner:
    protocol = xray.CTProtocol.create(
        geometry=geometry(),
        spectrum=xray.Spectrum.create(kvp=80.0, bin_kev=10.0),
        mas_per_view=1.0,
    )
    return xray.prepare(GRID, protocol, materials=MATERIALS)


def _expected(geometry: Callable[[], Any]) -> Callable[[], tuple]:
    def build() -> tuple:
        op = _scanner(geometry)
        return (lambda f: op.expected(f).projections), (_fractions(1),)

    return build


BASIS_MATERIALS = ("air", "water", "cortical_bone", "adipose", "muscle", "lung")


def _basis_scanner() -> xray.Scanner:
    protocol = xray.CTProtocol.create(
        geometry=_fan(), spectrum=xray.Spectrum.create(kvp=80.0, bin_kev=10.0), mas_per_view=1.0
    )
    op = xray.prepare(GRID, protocol, materials=BASIS_MATERIALS, basis_tolerance=1e-3)
    assert op.basis is not None and op.n_maps < 5
    return op


def _expected_basis() -> tuple:
    op = _basis_scanner()
    f = np.random.default_rng(4).uniform(0.0, 1.0, (len(BASIS_MATERIALS), *GRID.shape))
    return (lambda f: op.expected(f).projections), (f / f.sum(axis=0, keepdims=True),)


def _expected_of_maps() -> tuple:
    op = _basis_scanner()
    f = np.random.default_rng(5).uniform(0.0, 1.0, (len(BASIS_MATERIALS), *GRID.shape))
    maps = np.einsum("mk,mxyz->kxyz", np.asarray(op.mixing(jnp.float64)), f)
    return (lambda m: op.expected_of_maps(m).projections), (maps,)


def _simulate(geometry: Callable[[], Any]) -> Callable[[], tuple]:
    def build() -> tuple:
        op = _scanner(geometry)
        return (lambda k, f: op.simulate(k, f).projections), (jax.random.key(3), _fractions(2))

    return build


def _fbp() -> tuple:
    g = _fan()
    # FBP needs a full turn: 9 views over 360 degrees
    return (lambda p: ct.fbp(p, g, like=GRID).data), (_positive((9, 20, 4), 4),)


COMPARTMENTS = ("adipose", "muscle", "csf")


def _mr_scanner(sequence: Any, **kw: Any) -> mr.MRScanner:
    protocol = mr.MRProtocol.create(sequence, field_t=1.5, coils=mr.LoopCoils.create(2), **kw)
    return mr.prepare(GRID, protocol, compartments=COMPARTMENTS, dtype=jnp.float64)


def _mr_maps(fractions: Any) -> mr.TissueMaps:
    """Tissue maps of fixed relaxation properties, in the fractions' dtype."""
    f = jnp.asarray(fractions)
    return mr.TissueMaps(
        fractions=f,
        pd=jnp.asarray([0.9, 0.8, 1.0], f.dtype),
        t1_s=jnp.asarray([0.3, 0.9, 4.0], f.dtype),
        t2_s=jnp.asarray([0.08, 0.05, 2.0], f.dtype),
        t2star_s=jnp.asarray([0.04, 0.03, 0.5], f.dtype),
        b0_hz=jnp.zeros(GRID.shape, f.dtype),
        b1=jnp.ones(GRID.shape, f.dtype),
        affine=GRID.affine,
        names=COMPARTMENTS,
    )


def _mr_occupancy(seed: int) -> np.ndarray:
    """Compartment fractions: every voxel 50-90 % occupied (no zero-signal voxel)."""
    f = _positive((3, *GRID.shape), seed)
    return f / f.sum(axis=0) * np.random.default_rng(seed + 1).uniform(0.5, 0.9, GRID.shape)


def _mr_acquire() -> tuple:
    # a fixed key: field draw and noise at an SNR on a named compartment, full sampling
    op = _mr_scanner(
        mr.SpinEcho.create(te_s=0.02, tr_s=0.6),
        snr=20.0,
        snr_reference="muscle",
        field_variation=mr.FieldVariation.create(b0_std_hz=10.0, b1_std=0.05),
    )
    key = jax.random.key(2)
    return (lambda f: op.acquire(key, _mr_maps(f)).image.data), (_mr_occupancy(5),)


def _mr_acquire_keyed() -> tuple:
    op = _mr_scanner(
        mr.GradientEcho.create(te_s=0.005, tr_s=0.1, flip_deg=30.0),
        sampling=mr.RandomMask.create(2.0, acs_lines=2),
        snr=15.0,
        field_variation=mr.FieldVariation.create(b0_std_hz=20.0, b1_std=0.05),
    )
    return (lambda k, f: op.acquire(k, _mr_maps(f)).image.data), (
        jax.random.key(6),
        _mr_occupancy(7),
    )


def _mr_reconstruct() -> tuple:
    op = _mr_scanner(mr.SpinEcho.create(te_s=0.02, tr_s=0.6))
    parts = np.random.default_rng(8).normal(size=(2, 2, *GRID.shape))  # real, imaginary
    return (lambda x: op.reconstruct(jax.lax.complex(x[0], x[1]))), (parts,)


REGISTRY: tuple[Entry, ...] = (
    Entry(
        "xray.Projector.project (parallel)", _projector(_parallel), _projector_adjoint(_parallel)
    ),
    Entry("xray.Projector.project (fan)", _projector(_fan), _projector_adjoint(_fan)),
    Entry("xray.Projector.project (cone)", _projector(_cone), _projector_adjoint(_cone)),
    Entry(
        "xray.Projector.project (cone, trilinear)",
        _projector(_cone, sampling=xray.Trilinear()),
        _projector_adjoint(_cone, sampling=xray.Trilinear()),
        # the cone entry above stays in the default tier; trilinear sampling there is checked
        # against the closed form and by the dot-product test in test_cone_projector
        slow=True,
    ),
    Entry("xray.Scanner.expected (fan)", _expected(_fan)),
    Entry("xray.Scanner.expected (cone)", _expected(_cone), slow=True),
    Entry("xray.Scanner.expected (fan, attenuation basis)", _expected_basis),
    Entry("xray.Scanner.expected_of_maps (fan, attenuation basis)", _expected_of_maps),
    Entry("xray.Scanner.simulate (fan)", _simulate(_fan), grads=False, keyed=True),
    Entry("ct.fbp (fan)", _fbp),
    Entry("mr.MRScanner.acquire (spin echo, fixed key)", _mr_acquire),
    Entry(
        "mr.MRScanner.acquire (gradient echo, random mask)",
        _mr_acquire_keyed,
        grads=False,
        keyed=True,
        slow=True,
    ),
    Entry("mr.MRScanner.reconstruct", _mr_reconstruct),
)

IDS = [e.name for e in REGISTRY]


def _params(entries: Any) -> list:
    return [pytest.param(e, id=e.name, marks=[pytest.mark.slow] if e.slow else []) for e in entries]


def _cast(inputs: tuple, dtype: Any, keyed: bool) -> tuple:
    i = 1 if keyed else 0
    out = list(inputs)
    out[i] = jnp.asarray(inputs[i], dtype)
    return tuple(out)


def _close(a: Any, b: Any, rtol: float, atol: float = 0.0) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("entry", _params(REGISTRY))
def test_jit_equals_eager_and_dtype_is_kept(entry: Entry) -> None:
    fn, inputs = entry.build()
    for dtype in (jnp.float32, jnp.float64):
        args = _cast(inputs, dtype, entry.keyed)
        eager = fn(*args)
        jitted = jax.jit(fn)(*args)
        for leaf in jax.tree_util.tree_leaves(jitted):
            assert leaf.dtype == dtype, (entry.name, dtype, leaf.dtype)
        scale = max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree_util.tree_leaves(eager))
        rtol = 2e-5 if dtype == jnp.float32 else 1e-12
        _close(jitted, eager, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("entry", _params(REGISTRY))
def test_vmap_equals_loop(entry: Entry) -> None:
    fn, inputs = entry.build()
    if entry.keyed:
        keys = jax.random.split(inputs[0], 2)
        data = jnp.stack([jnp.asarray(inputs[1]), 0.5 * jnp.asarray(inputs[1])])
        batched = jax.vmap(fn)(keys, data)
        loop = [fn(keys[i], data[i], *inputs[2:]) for i in range(2)]
    else:
        data = jnp.stack([jnp.asarray(inputs[0]), jnp.asarray(inputs[0]) ** 2])
        batched = jax.vmap(lambda x: fn(x, *inputs[1:]))(data)
        loop = [fn(data[i], *inputs[1:]) for i in range(2)]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *loop)
    scale = max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree_util.tree_leaves(stacked))
    _close(batched, stacked, rtol=1e-10, atol=1e-10 * scale)


@pytest.mark.parametrize("entry", _params(REGISTRY))
def test_no_retrace_on_new_data(entry: Entry) -> None:
    fn, inputs = entry.build()
    jitted = jax.jit(fn)
    jitted(*inputs)
    i = 1 if entry.keyed else 0
    again = list(inputs)
    again[i] = np.asarray(inputs[i]) * 0.7
    if entry.keyed:
        again[0] = jax.random.key(99)
    jitted(*again)
    assert jitted._cache_size() == 1, entry.name


@pytest.mark.parametrize("entry", _params(e for e in REGISTRY if e.grads))
def test_gradients_match_finite_differences(entry: Entry) -> None:
    fn, inputs = entry.build()
    x = jnp.asarray(inputs[0], jnp.float64)
    rest = inputs[1:]
    # a scalar of every output, weighted so no cancellation hides an error
    w = None

    def loss(z: Any) -> Any:
        nonlocal w
        out = jax.tree_util.tree_leaves(fn(z, *rest))
        if w is None:
            w = [np.random.default_rng(5).normal(size=o.shape) for o in out]
        return sum(jnp.sum(o * wi) for o, wi in zip(out, w, strict=True))

    loss(x)  # fixes the weights before the loss is traced
    check_grads(jax.jit(loss), (x,), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("entry", _params(e for e in REGISTRY if e.adjoint))
def test_adjoint_pair_passes_the_dot_test(entry: Entry) -> None:
    fn, inputs = entry.build()
    adjoint = entry.adjoint()
    x = jnp.asarray(inputs[0], jnp.float64)
    ax = fn(x)
    y = jnp.asarray(np.random.default_rng(7).normal(size=ax.shape))
    lhs = float(jnp.vdot(ax, y))
    rhs = float(jnp.vdot(x, adjoint(y)))
    assert abs(lhs - rhs) <= 1e-11 * max(abs(lhs), 1.0), (entry.name, lhs, rhs)


def test_registry_covers_every_prepared_operator_method() -> None:
    """Every public method of the prepared operators that maps arrays appears in the registry."""
    names = " ".join(IDS)
    for cls, methods in (
        (xray.Projector, ("project",)),
        (xray.Scanner, ("expected", "expected_of_maps", "simulate")),
        (mr.MRScanner, ("acquire", "reconstruct")),
    ):
        for m in methods:
            assert f"{cls.__name__}.{m}" in names


# ----------------------------------------------------------------------------------------------
# The README's claim through the phantom-level functions: jit, vmap over cases, grad


def _phantoms() -> list[medphys.LabeledVolume]:
    rows = [(0, "air", "air"), (1, "body", "water"), (2, "bone", "cortical_bone")]
    out = []
    for seed in (0, 1):
        labels = np.zeros(GRID.shape, np.int32)
        labels[2:8, 2:7, :] = 1
        labels[4 + seed : 6 + seed, 3:5, :] = 2
        out.append(medphys.LabeledVolume.create(labels, rows, affine=GRID.affine))
    return out


def test_simulate_jits_and_vmaps_over_labeled_volumes() -> None:
    protocol = xray.CTProtocol.create(
        geometry=_fan(), spectrum=xray.Spectrum.create(kvp=80.0, bin_kev=10.0), mas_per_view=1.0
    )
    a, b = _phantoms()
    key = jax.random.key(0)
    eager = xray.simulate(key, a, protocol).projections
    jitted = jax.jit(lambda v: xray.simulate(key, v, protocol).projections)(a)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-5)
    batch = jax.tree_util.tree_map(lambda *x: jnp.stack(x), a, b)
    keys = jax.random.split(key, 2)
    both = jax.vmap(lambda k, v: xray.simulate(k, v, protocol).projections)(keys, batch)
    for i, v in enumerate((a, b)):
        one = xray.simulate(keys[i], v, protocol).projections
        np.testing.assert_allclose(np.asarray(both[i]), np.asarray(one), rtol=1e-5, atol=1e-5)


def test_reconstruct_and_fractions_gradient_through_the_public_functions() -> None:
    protocol = xray.CTProtocol.create(
        geometry=_fan(), spectrum=xray.Spectrum.create(kvp=80.0, bin_kev=10.0), mas_per_view=1.0
    )
    a, _ = _phantoms()
    f0 = a.material_fractions(jnp.float64)

    def loss(f: Any) -> Any:
        lv = dataclasses.replace(a, fractions=f)  # 3 structures, 3 materials: same order
        scan = xray.expected_scan(lv, protocol)
        return jnp.mean(ct.reconstruct(scan, protocol, like=lv).data)

    g = jax.grad(loss)(f0)
    assert g.shape == f0.shape and bool(jnp.all(jnp.isfinite(g)))
    # more bone raises the mean CT number: d loss / d f_bone > 0 inside the body
    assert float(jnp.sum(g[2])) > 0.0
    jitted = jax.jit(loss)(f0)
    np.testing.assert_allclose(float(jitted), float(loss(f0)), rtol=1e-10)


def test_pose_gradient_through_a_prepared_projector_recovers_a_shift() -> None:
    """2D/3D registration in miniature: the detector offset of a parallel beam that reproduces a
    reference sinogram, found by gradient descent through `Projector.with_geometry`."""
    x = np.zeros(GRID.shape)
    x[3:6, 2:5, :] = 1.0
    x[6:8, 5:7, :] = 0.5
    geometry = _parallel()
    op = xray.prepare(GRID, geometry)
    target = op.project(x)
    base = dataclasses.replace(geometry, u_offset_mm=jnp.asarray(1.2))

    def loss(offset: Any) -> Any:
        moved = op.with_geometry(dataclasses.replace(base, u_offset_mm=offset))
        return jnp.sum((moved.project(x) - target) ** 2)

    grad = jax.jit(jax.grad(loss))
    curvature = jax.jit(jax.grad(jax.grad(loss)))
    offset = jnp.asarray(1.2)
    for _ in range(8):  # Newton steps: the loss is piecewise quadratic in the offset
        offset = offset - grad(offset) / curvature(offset)
    assert abs(float(offset)) < 1e-3, float(offset)


def test_pose_gradient_of_cone_and_projective_views_matches_finite_differences() -> None:
    """The 3-D Joseph pose derivative (its own kernel, ``joseph3d_ray_grads``) against central
    differences, for the source and detector positions and axes of two arbitrary views."""
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.uniform(0.0, 1.0, GRID.shape))
    # off-grid poses: a ray along a row of voxel centres sits on a kink of the interpolant in
    # every sample, where finite differences average the two one-sided derivatives
    geometry = xray.ProjectionGeometry.create(
        sources_mm=[[10.3, -300.0, 5.7], [-300.0, 3.1, -4.3]],
        detector_centers_mm=[[0.4, 200.0, 0.3], [200.0, 0.2, -0.6]],
        u_axes=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        v_axes=[[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],
        n_u=16,
        n_v=12,
        du_mm=2.0,
        dv_mm=2.0,
    )
    op = xray.prepare(GRID, geometry)
    w = jnp.asarray(rng.normal(size=op.projection_shape))
    fields = ("sources_mm", "detector_centers_mm", "u_axes", "v_axes")

    def loss(*leaves: Any) -> Any:
        moved = dataclasses.replace(geometry, **dict(zip(fields, leaves, strict=True)))
        return jnp.vdot(op.with_geometry(moved).project(x), w)

    leaves = tuple(jnp.asarray(getattr(geometry, f), jnp.float64) for f in fields)
    check_grads(jax.jit(loss), leaves, order=1, modes=("rev",), eps=1e-5, atol=1e-4, rtol=1e-4)


def test_bad_input_is_refused_at_trace_time_naming_the_argument() -> None:
    op = xray.prepare(GRID, _cone())
    scanner = _scanner(_fan)
    recon = ct.prepare(GRID, _fan())
    data = jax.ShapeDtypeStruct(GRID.shape, jnp.float32)
    batch = jax.ShapeDtypeStruct((2, *GRID.shape), jnp.float32)
    with pytest.raises(ValueError, match=r"Projector.project: `data` must have the prepared grid"):
        jax.eval_shape(op.project, batch)  # a batch axis where none is allowed
    with pytest.raises(ValueError, match=r"Projector.backproject: `projections` must have shape"):
        jax.eval_shape(op.backproject, data)
    # plain attenuation where the scanner needs one map per material
    with pytest.raises(ValueError, match=r"Scanner.expected: `fractions` must have shape \(3, 10"):
        jax.eval_shape(scanner.expected, data)
    with pytest.raises(ValueError, match=r"Reconstructor.attenuation: `projections` must have"):
        jax.eval_shape(recon.attenuation, data)
    far = xray.ConeBeam.create(
        n_views=2,
        n_u=8,
        n_v=8,
        du_mm=1.0,
        dv_mm=1.0,
        sod_mm=200.0,
        sdd_mm=350.0,
        z_mm=500.0,
    )
    with pytest.raises(ValueError, match=r"xray.prepare: the detector misses the volume"):
        xray.prepare(GRID, far)  # a grid the geometry misses
    with pytest.raises(TypeError, match=r"xray.prepare: a CTProtocol needs `materials`"):
        xray.prepare(GRID, scanner.protocol)
    with pytest.raises(TypeError, match=r"`grid` must be a medphys.Grid"):
        xray.prepare(np.zeros(GRID.shape), _cone())
    with pytest.raises(TypeError, match=r"the geometry must be concrete"):
        jax.jit(lambda g: xray.prepare(GRID, g).project(jnp.zeros(GRID.shape)))(_cone())
