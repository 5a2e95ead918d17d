"""Off-screen renders and the `medphys phantom show` command write real pictures."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from medphys import phantoms
from medphys.cli import main
from medphys.phantoms import Ellipsoid, EllipticCylinder, Phantom
from medphys.viz import render_labels


def _phantom():
    body = EllipticCylinder(
        jnp.zeros(3), jnp.asarray([40.0, 30.0]), jnp.asarray(45.0), jnp.zeros(3)
    )
    organ = Ellipsoid(jnp.asarray([15.0, 0.0, 0.0]), jnp.asarray([12.0, 10.0, 20.0]), jnp.zeros(3))
    return Phantom.create(
        name="t",
        structure_names=("body", "organ"),
        materials=("water", "liver"),
        shapes=(body, organ),
    )


def _png(path):
    from matplotlib.image import imread

    return imread(path)


def test_render_shows_the_organ_on_the_viewers_left_in_an_anterior_view(tmp_path):
    lv = _phantom().voxelize(shape=(48, 36, 50), spacing_mm=2.0, fractions=phantoms.Fractions.NONE)
    out = render_labels(lv, tmp_path / "r.png", size=(200, 200))
    img = _png(out)
    assert img.shape[:2] == (200, 200)
    # the opaque organ (+x, the patient's right) appears on the viewer's left; the body is faint
    bright = img[..., :3].mean(-1) > 0.4
    cols = np.flatnonzero(bright.any(0))
    assert cols.size > 10 and cols.mean() < 90
    gray = img[..., :3].mean(-1)
    assert ((gray > 0.02) & (gray < 0.3)).sum() > 5000  # the translucent body shell, dim
    with pytest.raises(ValueError, match="`view` must be one of"):
        render_labels(lv, tmp_path / "x.png", view="oblique")


@pytest.mark.parametrize("extra", [[], ["--render"], ["--respiratory-phase", "0.5"]])
def test_phantom_show_writes_a_png(tmp_path, extra):
    out = tmp_path / "show.png"
    args = [
        "phantom",
        "show",
        "torso-basic",
        "--out",
        str(out),
        "--spacing-mm",
        "8",
        "--size",
        "48",
        "--slices",
        "48",
        *extra,
    ]
    assert main(args) == 0
    img = _png(out)
    assert img.ndim == 3 and img[..., :3].std() > 0.05  # not a blank picture


def test_phantom_show_bad_phase(tmp_path, capsys):
    args = [
        "phantom",
        "show",
        "torso-basic",
        "--out",
        str(tmp_path / "x.png"),
        "--cardiac-phase",
        "1.5",
    ]
    assert main(args) == 2
    assert "`cardiac_phase` must be in [0, 1)" in capsys.readouterr().err


def test_contents_of_a_thin_walled_organ_are_drawn_as_part_of_the_wall(tmp_path):
    """A 1-voxel wall and its contents share a surface; drawn separately they would z-fight."""
    from matplotlib import colormaps

    from medphys.viz._render import _encloser

    body = EllipticCylinder(
        jnp.zeros(3), jnp.asarray([40.0, 30.0]), jnp.asarray(45.0), jnp.zeros(3)
    )
    wall = Ellipsoid(jnp.zeros(3), jnp.asarray([16.0, 14.0, 24.0]), jnp.zeros(3))
    # a 1.8 mm wall on a 2 mm grid: closed but for a few voxels
    contents = Ellipsoid(jnp.zeros(3), jnp.asarray([14.2, 12.2, 22.2]), jnp.zeros(3))
    ph = Phantom.create(
        name="hollow",
        structure_names=("body", "wall", "contents"),
        materials=("water", "stomach_wall", "water"),
        shapes=(body, wall, contents),
    )
    lv = ph.voxelize(shape=(48, 36, 50), spacing_mm=2.0, fractions=phantoms.Fractions.NONE)
    labels = np.pad(np.asarray(lv.labels), 1)
    opaque = np.array([False, False, True, True])
    assert _encloser(labels, labels == 3, opaque) == 2  # contents sit inside the wall
    assert _encloser(labels, labels == 2, opaque) == -1  # the wall borders the undrawn body
    img = _png(render_labels(lv, tmp_path / "h.png", size=(240, 240)))[..., :3]
    tab = colormaps["tab20"].colors
    lit = img.max(-1) > 0.15

    def share(colour):
        # pixels whose hue matches a structure colour (shading scales brightness, not hue)
        c = np.asarray(colour) / max(colour)
        rgb = img[lit] / img[lit].max(-1, keepdims=True)
        return float(np.mean(np.abs(rgb - c).max(-1) < 0.15))

    assert share(tab[1]) > 0.3  # the wall is seen
    assert share(tab[2]) < 0.005  # its contents never show through (drawn apart: 5%)


def test_phantom_show_fits_the_grid_to_the_whole_phantom():
    from medphys import phantoms
    from medphys.cli import _fit_grid

    ph = phantoms.load("torso-basic")
    shape, centre = _fit_grid(ph, 8.0)
    labels = np.asarray(
        ph.voxelize(
            shape=shape, spacing_mm=8.0, center_mm=centre, fractions=phantoms.Fractions.NONE
        ).labels
    )
    assert labels.any()
    for axis in range(3):  # nothing cut off: the outer faces of the grid are background
        assert not np.take(labels, [0, -1], axis=axis).any(), axis
