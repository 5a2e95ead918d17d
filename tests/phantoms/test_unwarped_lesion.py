"""Lesions inserted into a deformed phantom at the instant's coordinates (``follow_warp=False``).

A closed-form deformation: the instant is the reference anatomy pressed to half its height,
``x = (X, Y, Z / 2)``, so ``backward(x) = (x, y, 2 z)``. A sphere of radius r in the reference
anatomy becomes an oblate ellipsoid (r, r, r/2) of half its volume; a sphere kept at the instant's
coordinates keeps its shape and volume, 4/3 π r³.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medphys import phantoms


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Halve:
    """``backward(x) = (x, y, 2 z)``: the reference pressed to half its height (Lipschitz 2)."""

    max_stretch: float = dataclasses.field(metadata={"static": True}, default=2.0)

    def backward(self, points):
        return points.at[..., 2].multiply(2.0)


R_MM = 6.0
GRID = dict(shape=(40, 40, 40), spacing_mm=1.0, center_mm=(0.0, 0.0, 0.0), supersample=4)


def _pressed_host() -> phantoms.Phantom:
    host = phantoms.Phantom.create(
        "pressed",
        structure_names=("tissue",),
        materials=("adipose",),
        shapes=(phantoms.Ellipsoid(jnp.zeros(3), jnp.asarray([18.0, 18.0, 30.0]), jnp.zeros(3)),),
    )
    return dataclasses.replace(host, warp=_Halve())  # the tissue is 18 × 18 × 15 mm at the instant


def _volume(lv, name: str) -> float:
    label = [s.name for s in lv.structures].index(name)
    return float(np.asarray(lv.fractions)[label].sum())  # 1 mm³ voxels


def test_an_unwarped_lesion_keeps_its_shape_while_a_following_one_is_pressed():
    ph = _pressed_host()
    sphere = phantoms.SphericalLesion(R_MM)
    kept = phantoms.insert_lesion(
        ph, organ="tissue", shape=sphere, material="glandular", center_mm=(0, 0, 0),
        follow_warp=False,
    )  # fmt: skip
    pressed = phantoms.insert_lesion(
        ph, organ="tissue", shape=sphere, material="glandular", center_mm=(0, 0, 0)
    )
    assert kept.unwarped == ("lesion",) and pressed.unwarped == ()
    ball = 4.0 / 3.0 * np.pi * R_MM**3
    lv_kept, lv_pressed = phantoms.voxelize(kept, **GRID), phantoms.voxelize(pressed, **GRID)
    # measured: 904.0 and 454.0 mm³ against 904.8 and 452.4 (partial-volume fractions, 4³ samples)
    assert _volume(lv_kept, "lesion") == pytest.approx(ball, rel=0.01)
    assert _volume(lv_pressed, "lesion") == pytest.approx(ball / 2, rel=0.01)
    # the tissue around it is pressed the same in both: half of 4/3 π 18 · 18 · 30 in all
    # (measured 20,365 mm³ against 20,357.5)
    tissue = 4.0 / 3.0 * np.pi * 18 * 18 * 30 / 2
    for lv in (lv_kept, lv_pressed):
        total = _volume(lv, "tissue") + _volume(lv, "lesion")
        assert total == pytest.approx(tissue, rel=0.01)
    # through the centre the kept sphere spans 2r along z, the pressed one r
    labels = np.asarray(lv_kept.labels)
    column = labels[19:21, 19:21, :] == 2
    assert column.any(axis=(0, 1)).sum() == pytest.approx(2 * R_MM, abs=1)
    column = np.asarray(lv_pressed.labels)[19:21, 19:21, :] == 2
    assert column.any(axis=(0, 1)).sum() == pytest.approx(R_MM, abs=1)


def test_the_organ_must_hold_the_lesion_where_it_is_drawn():
    """A 12 mm sphere fits the reference tissue (30 mm half-height) but not the pressed one
    (15 mm): kept at the instant's coordinates it is refused; following the warp it fits."""
    ph = _pressed_host()
    big = phantoms.SphericalLesion(12.0)
    with pytest.raises(ValueError, match="does not fit inside 'tissue'"):
        phantoms.insert_lesion(
            ph, organ="tissue", shape=big, material="glandular", center_mm=(0, 0, 6),
            follow_warp=False,
        )  # fmt: skip
    phantoms.insert_lesion(ph, organ="tissue", shape=big, material="glandular", center_mm=(0, 0, 6))


def test_bad_flags_and_names_are_refused():
    ph = _pressed_host()
    with pytest.raises(TypeError, match="`follow_warp` must be True or False"):
        phantoms.insert_lesion(
            ph, organ="tissue", shape=phantoms.SphericalLesion(3.0), material="glandular",
            center_mm=(0, 0, 0), follow_warp="no",
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"`unwarped` names \['tumour'\]"):
        phantoms.voxelize(dataclasses.replace(ph, unwarped=("tumour",)), **GRID)
    # without a warp the flag changes nothing
    plain = dataclasses.replace(ph, warp=None)
    out = phantoms.insert_lesion(
        plain, organ="tissue", shape=phantoms.SphericalLesion(3.0), material="glandular",
        center_mm=(0, 0, 0), follow_warp=False,
    )  # fmt: skip
    assert out.unwarped == ()
