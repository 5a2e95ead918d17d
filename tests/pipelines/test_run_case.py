"""Case recipes, named random streams and `run_case`: arms are independent, noise can be shared."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from medphys import phantoms, simulators
from medphys.pipelines import Arm, CaseRecipe, GridSpec, case_key, run_case, stream, stream_id

GRID = GridSpec(shape=(36, 26, 6), spacing_mm=(10.0, 10.0, 50.0), supersample=1)


@pytest.fixture(scope="module")
def protocols():
    return {
        "ct": simulators.load("ct-chest-120kvp"),
        "ctlow": simulators.load("ct-low-dose"),
        "mr": simulators.load("mr-t1-se"),
    }


@pytest.fixture(scope="module")
def family():
    return phantoms.load("torso-basic")


def _recipe(family, protocols, *arms):
    return CaseRecipe.create(family, grid=GRID, arms=arms)


def test_stream_ids_are_fixed_and_names_checked():
    # CRC-32 of the UTF-8 name, 31 bits: a stable id that no code change can shift
    import zlib

    assert stream_id("arm/ct") == zlib.crc32(b"arm/ct") & 0x7FFFFFFF
    key = case_key(3, 5)
    np.testing.assert_array_equal(
        jax.random.key_data(stream(key, "phantom")),
        jax.random.key_data(jax.random.fold_in(key, stream_id("phantom"))),
    )
    assert not np.array_equal(
        jax.random.key_data(stream(key, "phantom")), jax.random.key_data(stream(key, "lesion"))
    )
    with pytest.raises(ValueError, match=r"stream: `name` must be lower-case.*'Phantom'"):
        stream_id("Phantom")


def test_adding_an_arm_changes_no_other_arm(family, protocols):
    """The CT of a case is byte-identical whether or not an MR arm (before or after it) exists."""
    key = case_key(0, 1)
    alone = run_case(key, _recipe(family, protocols, Arm("ct", protocols["ct"])), index=1)
    more = run_case(
        key,
        _recipe(family, protocols, Arm("mr", protocols["mr"]), Arm("ct", protocols["ct"])),
        index=1,
    )
    assert alone.images["ct"].data.tobytes() == more.images["ct"].data.tobytes()
    assert np.array_equal(np.asarray(alone.labels.labels), np.asarray(more.labels.labels))
    assert alone.params == more.params and alone.family == "torso-basic"
    assert more.streams == {
        "phantom": "phantom",
        "texture": "texture",
        "mr": "arm/mr",
        "ct": "arm/ct",
    }
    assert more.images["mr"].data.dtype == np.float32


def test_arms_can_share_a_noise_realisation(family, protocols):
    """Common random numbers: an arm that names another arm's stream sees the same noise."""
    key = case_key(0, 0)
    same = _recipe(
        family,
        protocols,
        Arm("ct", protocols["ct"], keep_raw=True),
        Arm("ctcopy", protocols["ct"], noise_stream="ct", keep_raw=True),
        Arm("ctother", protocols["ct"], keep_raw=True),
    )
    result = run_case(key, same, index=0)
    np.testing.assert_array_equal(result.raw["ct"], result.raw["ctcopy"])
    assert not np.array_equal(result.raw["ct"], result.raw["ctother"])
    assert result.streams["ctcopy"] == "arm/ct"

    # standard vs low dose on one noise realisation: the paired difference is smaller than with
    # independent noise (what common random numbers are for)
    def paired_difference(**share):
        recipe = _recipe(
            family,
            protocols,
            Arm("ct", protocols["ct"]),
            Arm("ctlow", protocols["ctlow"], **share),
        )
        out = run_case(key, recipe, index=0)
        assert out.images["ct"].data.tobytes() == result.images["ct"].data.tobytes()
        return float(np.std(out.images["ctlow"].data - out.images["ct"].data))

    assert paired_difference(noise_stream="ct") < 0.8 * paired_difference()


def test_same_key_same_bytes_and_float32_under_x64(family, protocols):
    recipe = _recipe(family, protocols, Arm("ct", protocols["ct"]))
    assert jax.config.jax_enable_x64  # the test session runs with float64 enabled
    a = run_case(case_key(7, 2), recipe, index=2)
    b = run_case(case_key(7, 2), recipe, index=2)
    assert a.images["ct"].data.dtype == np.float32
    assert a.images["ct"].data.tobytes() == b.images["ct"].data.tobytes()
    c = run_case(case_key(7, 3), recipe, index=3)
    assert a.params != c.params


def test_recipe_bad_input_is_named(family, protocols):
    ct = protocols["ct"]
    with pytest.raises(ValueError, match=r"CaseRecipe.create: arm name 'CT_1' must be lower-case"):
        CaseRecipe.create(family, grid=GRID, arms=[Arm("CT_1", ct)])
    with pytest.raises(ValueError, match=r"arm names must be unique \(repeated: \['ct'\]\)"):
        CaseRecipe.create(family, grid=GRID, arms=[Arm("ct", ct), Arm("ct", ct)])
    with pytest.raises(ValueError, match=r"`noise_stream` 'x' is not an arm of this recipe"):
        CaseRecipe.create(family, grid=GRID, arms=[Arm("ct", ct, noise_stream="x")])
    with pytest.raises(ValueError, match=r"cannot share the noise of arm 'ct' \(ct\)"):
        CaseRecipe.create(
            family, grid=GRID, arms=[Arm("ct", ct), Arm("mr", protocols["mr"], noise_stream="ct")]
        )
    radiograph = simulators.load("xray-chest-pa")
    with pytest.raises(ValueError, match=r"arms image the region around a lesion: .* `lesion`"):
        CaseRecipe.create(family, grid=GRID, arms=[Arm("cxr", radiograph)])
    with pytest.raises(ValueError, match=r"by CT and MR arms .* or by radiograph and tomosynth"):
        CaseRecipe.create(family, grid=GRID, arms=[Arm("ct", ct), Arm("cxr", radiograph)])
    rotating = dataclasses.replace(
        radiograph, geometry=dataclasses.replace(radiograph.geometry, angles=np.arange(4.0))
    )
    with pytest.raises(ValueError, match=r"`protocol` must be a CT protocol .*'radiograph'"):
        CaseRecipe.create(family, grid=GRID, arms=[Arm("cxr", rotating)])
    with pytest.raises(ValueError, match=r"`grid.survey_mm` must be positive mm \(got 0.0\)"):
        CaseRecipe.create(
            family, grid=dataclasses.replace(GRID, survey_mm=0.0), arms=[Arm("ct", ct)]
        )
    with pytest.raises(ValueError, match=r"`arms` must name at least one imaging arm"):
        CaseRecipe.create(family, grid=GRID, arms=[])
    with pytest.raises(ValueError, match=r"`families` must be one or more Phantoms"):
        CaseRecipe.create([], grid=GRID, arms=[Arm("ct", ct)])
    recipe = CaseRecipe.create(family, grid=GRID, arms=[Arm("ct", ct)])
    assert dataclasses.replace(recipe, vary=False).family(5).name == "torso-basic"
