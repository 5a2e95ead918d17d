"""Off-screen renders and the `medphys phantom show` command write real pictures."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from medphys.cli import main
from medphys.phantoms import Ellipsoid, EllipticCylinder, Phantom
from medphys.viz import render_labels


def _phantom():
    body = EllipticCylinder(
        jnp.zeros(3), jnp.asarray([40.0, 30.0]), jnp.asarray(45.0), jnp.zeros(3)
    )
    organ = Ellipsoid(jnp.asarray([15.0, 0.0, 0.0]), jnp.asarray([12.0, 10.0, 20.0]), jnp.zeros(3))
    return Phantom(
        name="t",
        structure_names=("body", "organ"),
        materials=("water", "liver"),
        shapes=(body, organ),
    )


def _png(path):
    from matplotlib.image import imread

    return imread(path)


def test_render_shows_the_organ_on_the_viewers_left_in_an_anterior_view(tmp_path):
    lv = _phantom().voxelize(shape=(48, 36, 50), spacing_mm=2.0, fractions=False)
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
