"""Respiratory and cardiac motion: excursion, ejection fraction, invertibility, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medphys import phantoms
from medphys.phantoms import MotionModel, ventricular_volume_ratio


@pytest.fixture(scope="module")
def torso():
    return phantoms.load("torso-basic")


def _liver_dome_z(ph, dz):
    # a column through the liver dome, fine in z: the top of the liver there
    lv = ph.voxelize(
        shape=(8, 8, 200 // int(dz)),
        spacing_mm=(4.0, 4.0, dz),
        center_mm=(55.0, 10.0, 0.0),
        supersample=2,
        fractions=phantoms.Fractions.NONE,
    )
    idx = np.argwhere(np.asarray(lv.mask("liver")))[:, 2].max()
    return float((lv.affine @ np.array([0.0, 0.0, idx, 1.0]))[2])


def test_diaphragm_excursion_is_the_configured_one_within_a_voxel(torso):
    dz = 2.0
    top_ex = _liver_dome_z(torso.at(respiratory_phase=0.0), dz)
    top_in = _liver_dome_z(torso.at(respiratory_phase=0.5), dz)
    assert top_ex - top_in == pytest.approx(20.0, abs=dz)
    model = MotionModel.create(diaphragm_mm=12.0)
    top_in12 = _liver_dome_z(torso.at(respiratory_phase=0.5, model=model), dz)
    assert top_ex - top_in12 == pytest.approx(12.0, abs=dz)


def test_time_maps_to_phases(torso):
    a = torso.at(time_s=12.5)  # 2.5 breaths, 12.5 beats
    b = torso.at(respiratory_phase=0.5, cardiac_phase=0.5)
    np.testing.assert_allclose(a.warp.amplitude, b.warp.amplitude, atol=1e-6)
    np.testing.assert_allclose(
        a.shape_of("lv_blood").semi_axes_mm, b.shape_of("lv_blood").semi_axes_mm
    )
    assert float(a.warp.amplitude) == pytest.approx(1.0)
    assert float(torso.at(time_s=5.0).warp.amplitude) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("ef", [0.6, 0.45])
def test_ejection_fraction_from_voxelized_lv_blood(torso, ef):
    model = MotionModel.create(ejection_fraction=ef)
    kw = {"shape": (40, 36, 44), "spacing_mm": 2.0, "center_mm": (-40.0, 26.0, 44.0)}
    ed = torso.at(cardiac_phase=0.0, model=model).voxelize(**kw).structure_volume_mm3("lv_blood")
    es = torso.at(cardiac_phase=0.4, model=model).voxelize(**kw).structure_volume_mm3("lv_blood")
    assert 1.0 - es / ed == pytest.approx(ef, abs=0.05)
    # the exact curve: EDV at 0, ESV at end-systole, back to EDV
    assert float(ventricular_volume_ratio(model, 0.4)) == pytest.approx(1 - ef, abs=1e-6)
    assert float(ventricular_volume_ratio(model, 0.0)) == pytest.approx(1.0)
    assert float(ventricular_volume_ratio(model, 0.9999)) == pytest.approx(1.0, abs=1e-4)


def test_heart_and_liver_follow_the_diaphragm_spine_stays(torso):
    ex, ins = torso.at(respiratory_phase=0.0), torso.at(respiratory_phase=0.5)
    kw = {"shape": (28, 20, 64), "spacing_mm": (12.0, 12.0, 4.0), "supersample": 2}
    a, b = ex.voxelize(**kw), ins.voxelize(**kw)

    def centroid_z(lv, name):
        f = np.asarray(lv.fractions[lv.names.index(name)])
        z = (
            lv.affine
            @ np.stack(
                [
                    np.zeros(f.shape[2]),
                    np.zeros(f.shape[2]),
                    np.arange(f.shape[2]),
                    np.ones(f.shape[2]),
                ]
            )
        )[2]
        return float((f.sum((0, 1)) * z).sum() / f.sum())

    assert centroid_z(a, "liver") - centroid_z(b, "liver") == pytest.approx(20.0, abs=1.0)
    assert 10.0 < centroid_z(a, "heart") - centroid_z(b, "heart") < 20.5
    assert abs(centroid_z(a, "spine") - centroid_z(b, "spine")) < 0.5
    # liver translated, not squeezed; lungs inflate
    assert b.structure_volume_mm3("liver") == pytest.approx(
        a.structure_volume_mm3("liver"), rel=0.01
    )
    assert b.structure_volume_mm3("lung_right") > 1.1 * a.structure_volume_mm3("lung_right")


@pytest.mark.parametrize("phase", [0.5])
def test_jacobian_positive_everywhere_and_stretch_bound(torso, phase):
    warp = torso.at(respiratory_phase=phase).warp
    axes = [np.linspace(-200, 200, 17), np.linspace(-150, 150, 13), np.linspace(-260, 260, 27)]
    pts = jnp.asarray(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3), jnp.float32)
    jac = jax.vmap(jax.jacfwd(warp.backward))(pts)
    det = np.asarray(jnp.linalg.det(jac))
    assert det.min() > 0.2
    assert np.linalg.norm(np.asarray(jac), ord=2, axis=(1, 2)).max() <= warp.max_stretch
    # the displacement is real: some points move by the full excursion
    disp = np.asarray(jax.vmap(warp.backward)(pts) - pts)
    assert np.abs(disp[:, 2]).max() == pytest.approx(20.0 * float(warp.amplitude), rel=0.01)


def test_warp_gradients_are_finite(torso):
    from jax.test_util import check_grads

    warp = torso.at(respiratory_phase=0.3).warp
    p = jnp.asarray([[30.0, 10.0, 40.0], [-60.0, -20.0, -100.0]], jnp.float32)
    check_grads(lambda q: warp.backward(q), (p,), order=1, modes=("fwd",), atol=0.05, rtol=0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"time_s": -1.0}, "`time_s` must be >= 0"),
        ({"respiratory_phase": 1.0}, r"`respiratory_phase` must be in \[0, 1\)"),
        ({"cardiac_phase": -0.1}, r"`cardiac_phase` must be in \[0, 1\)"),
        ({"time_s": 1.0, "cardiac_phase": 0.2}, "not both"),
        ({"time_s": float("nan")}, "`time_s` must be finite"),
    ],
)
def test_bad_instants(torso, kwargs, match):
    with pytest.raises(ValueError, match=match):
        torso.at(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"respiratory_period_s": -5.0}, "`respiratory_period_s` must be positive"),
        ({"cardiac_period_s": 0.0}, "`cardiac_period_s` must be positive"),
        ({"ejection_fraction": 1.2}, r"`ejection_fraction` must be in \(0, 1\)"),
        ({"end_systole_phase": 0.0}, r"`end_systole_phase` must be in \(0, 1\)"),
        ({"diaphragm_mm": -3.0}, r"`diaphragm_mm` must be in \[0, 60\]"),
    ],
)
def test_bad_model(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MotionModel.create(**kwargs)


def test_unknown_role_and_double_motion(torso):
    from medphys._errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="lv_bloood"):
        torso.at(cardiac_phase=0.2, model=MotionModel.create(ventricles=("lv_bloood",)))
    with pytest.raises(ValueError, match="already at an instant"):
        torso.at(respiratory_phase=0.2).at(respiratory_phase=0.3)


def _torso_with_motion(tmp_path, motion: str):
    """torso-basic with a ``[motion]`` block, written as a user's TOML file."""
    from medphys._catalog import resolve

    text = resolve("phantoms", "torso-basic").read_text(encoding="utf-8")
    i = text.index("[[structures]]")
    path = tmp_path / "torso-moving.toml"
    path.write_text(text[:i] + motion + "\n" + text[i:], encoding="utf-8")
    return path


def test_motion_from_the_phantom_toml_drives_at(tmp_path, torso):
    path = _torso_with_motion(
        tmp_path,
        "[motion.respiration]\nrespiratory_period_s = 4.0\ndiaphragm_mm = 30.0\n\n"
        "[motion.cardiac]\nejection_fraction = 0.5\n",
    )
    ph = phantoms.load(path)
    assert ph.motion == MotionModel.create(
        respiratory_period_s=4.0, diaphragm_mm=30.0, ejection_fraction=0.5
    )
    dz = 2.0
    top_ex = _liver_dome_z(ph.at(time_s=0.0), dz)
    top_in = _liver_dome_z(ph.at(time_s=2.0), dz)  # half of the 4 s breath: end-inspiration
    assert top_ex - top_in == pytest.approx(30.0, abs=dz)
    # an explicit model still overrides the phantom's own
    top_12 = _liver_dome_z(ph.at(time_s=2.0, model=MotionModel.create(diaphragm_mm=12.0)), dz)
    assert top_ex - top_12 == pytest.approx(12.0, abs=dz)
    # the cardiac table too: ventricles at end-systole hold 1 - EF of their volume
    ed = ph.shape_of("lv_blood").volume_mm3()
    es = ph.at(cardiac_phase=0.4).shape_of("lv_blood").volume_mm3()
    assert float(es / ed) == pytest.approx(0.5, rel=1e-5)
    assert torso.motion is None  # no [motion] table: MotionModel.create()'s defaults


@pytest.mark.parametrize("name", ["adult-male", "adult-female"])
def test_adult_phantoms_carry_the_xcat_defaults(name):
    ph = phantoms.load(name)
    assert ph.motion == MotionModel.create()
    assert (ph.motion.respiratory_period_s, ph.motion.diaphragm_mm, ph.motion.chest_ap_mm) == (
        5.0,
        20.0,
        12.0,
    )
    assert (ph.motion.cardiac_period_s, ph.motion.end_systole_phase) == (1.0, 0.4)


@pytest.mark.parametrize(
    ("motion", "bad", "key", "match"),
    [
        ("[motion.respiration]\n", "diaphragm_mm = 80", "motion.respiration.diaphragm_mm", "60"),
        ("[motion.cardiac]\n", "ejection_fraction = 1.2", "motion.cardiac.ejection_fraction", "1"),
        ("[motion.cardiac]\n", "cardiac_period_s = 0", "motion.cardiac.cardiac_period_s", "0"),
        ("[motion.respiration]\n", "diaphram_mm = 20", "motion.respiration.diaphram_mm", "unknown"),
        (
            "[motion.respiration]\n",
            'lungs = ["lung_left", "lung_rigth"]',
            "motion.respiration.lungs[1]",
            "Did you mean 'lung_right'",
        ),
    ],
)
def test_bad_motion_tables_name_file_line_and_key(tmp_path, motion, bad, key, match):
    from medphys import ConfigError

    path = _torso_with_motion(tmp_path, f"{motion}{bad}\n")
    with pytest.raises(ConfigError) as info:
        phantoms.load(path)
    line = path.read_text().splitlines().index(bad) + 1
    msg = str(info.value)
    assert f"{path}:{line}: {key}" in msg
    assert match in msg
