"""`SampledWarp`: a warp sampled on a grid and interpolated trilinearly.

Closed form: for ``backward(x) = x + (a x², 0, 0)`` the trilinear interpolant on nodes ``h`` apart
errs by at most ``h² / 8 · |d''| = a h² / 4`` (the linear interpolant of a parabola between two
nodes misses it by ``a h² / 4`` at the midpoint, exactly).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medphys import phantoms
from medphys._checks import FieldError


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Parabola:
    """backward(x) = x + (a x², 0, 0) (a Lipschitz bound 1 + 2 a |x|max)."""

    a: float = dataclasses.field(metadata={"static": True})
    max_stretch: float = dataclasses.field(metadata={"static": True}, default=2.0)

    def backward(self, points):
        return points + jnp.stack(
            [self.a * points[..., 0] ** 2, 0 * points[..., 1], 0 * points[..., 2]], axis=-1
        )


def test_interpolation_error_is_the_closed_form_at_cell_centres():
    a, h = 0.01, 2.0
    sampled = phantoms.SampledWarp.create(_Parabola(a), (-10, -4, -4), (10, 4, 4), h)
    assert sampled.displacement_mm.shape == (11, 5, 5, 3)
    # the midpoint error of a parabola's chord is exactly a h² / 4
    assert sampled.error_mm == pytest.approx(a * h * h / 4, rel=1e-3)
    # at the nodes the interpolant is exact
    nodes = jnp.asarray([[-10.0, 0.0, 0.0], [4.0, 2.0, -2.0]])
    np.testing.assert_allclose(
        sampled.backward(nodes), _Parabola(a).backward(nodes), rtol=0, atol=1e-5
    )
    # outside the box: the nearest box point's displacement (0.01 · 10² = 1 mm at x = 10)
    far = sampled.backward(jnp.asarray([[30.0, 0.0, 0.0]]))
    np.testing.assert_allclose(far, [[31.0, 0.0, 0.0]], atol=1e-5)
    # the Lipschitz bound covers the true one, 1 + 2 a · 10 = 1.2
    assert sampled.max_stretch >= 1.2


def test_a_sampled_warp_voxelises_like_its_source():
    """A breathing torso (the catalog's respiratory warp) voxelised through its sampled warp:
    the labels agree with the exact warp's on all but a sliver of boundary voxels."""
    base = phantoms.load("torso-basic")
    moving = phantoms.at(base, respiratory_phase=0.5)
    args = dict(shape=(48, 40, 40), spacing_mm=6.0, center_mm=(0.0, 0.0, 0.0), supersample=1)
    lo = np.array([-150.0, -125.0, -125.0])
    sampled = phantoms.SampledWarp.create(moving.warp, lo, -lo, 2.0)
    assert sampled.error_mm < 0.2
    exact = np.asarray(phantoms.voxelize(moving, **args).labels)
    fast = np.asarray(phantoms.voxelize(dataclasses.replace(moving, warp=sampled), **args).labels)
    assert np.mean(exact != fast) < 2e-3
    assert np.any(exact != np.asarray(phantoms.voxelize(base, **args).labels))  # it moved


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(lower_mm=(0, 0), upper_mm=(1, 1, 1), spacing_mm=1.0), "lower_mm"),
        (dict(lower_mm=(0, 0, 0), upper_mm=(1, 0, 1), spacing_mm=1.0), "upper_mm"),
        (dict(lower_mm=(0, 0, 0), upper_mm=(1, 1, 1), spacing_mm=0.0), "spacing_mm"),
        (dict(lower_mm=(0, 0, 0), upper_mm=(1e4, 1e4, 1e4), spacing_mm=1.0), "spacing_mm"),
    ],
)
def test_bad_input_is_refused_before_any_work(kwargs, field):
    with pytest.raises(FieldError, match=field):
        phantoms.SampledWarp.create(_Parabola(0.01), **kwargs)


def test_a_warp_without_backward_is_refused():
    with pytest.raises(FieldError, match="backward"):
        phantoms.SampledWarp.create(object(), (0, 0, 0), (1, 1, 1), 1.0)
