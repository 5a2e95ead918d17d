"""Config validation messages: file, line, key path, value and what is allowed."""

from __future__ import annotations

import pytest

from medphys import ConfigError, UnknownNameError
from medphys._catalog import resolve
from medphys.pipelines import load_config


def test_default_config_is_valid():
    cfg = load_config()
    assert cfg.cases >= 1
    assert cfg.phantom.names == ("adult-male", "adult-female")


def test_overrides_apply_and_are_validated():
    assert load_config(overrides={"cases": 2, "seed": 7}).seed == 7
    with pytest.raises(
        ConfigError, match=r"cases: Input should be greater than or equal to 1 \(got 0\)"
    ):
        load_config(overrides={"cases": 0})


def test_error_names_file_line_key_and_value(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('cases = 2\n\n[phantom]\nname = "torso-basic"\nspacing_mm = [3.0, -1.0, 2.0]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert f"{path}:5: phantom.spacing_mm[1]:" in msg
    assert "greater than 0" in msg and "-1.0" in msg


def test_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text("cases = 2\nsede = 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: sede: unknown key"):
        load_config(path)


def test_toml_syntax_error_names_file(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text("cases = = 2\n")
    with pytest.raises(ConfigError, match=rf"{path}: not valid TOML: .*line 1"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_unknown_catalog_name_lists_alternatives():
    with pytest.raises(UnknownNameError) as info:
        resolve("phantoms", "torso-basik")
    msg = str(info.value)
    assert "unknown phantom 'torso-basik'" in msg
    assert "Did you mean 'torso-basic'" in msg
    assert "Available: " in msg
    with pytest.raises(ConfigError, match="no such protocol file"):
        resolve("simulators", "/nowhere/my-protocol.toml")
