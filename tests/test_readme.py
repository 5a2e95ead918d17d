"""The README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    return [
        line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("python")
    ]


def test_readme_has_the_two_fresh_machine_commands():
    commands = _readme_commands()
    assert any("medphys generate" in c and "pip install ." in c for c in commands), commands
    assert any("pytest" in c and '".[test]"' in c for c in commands), commands


def test_ci_runs_exactly_the_readme_test_command():
    test_command = next(c for c in _readme_commands() if "pytest" in c)
    # the part after creating and activating the fresh environment
    tail = test_command.split("&& . .venv/bin/activate && ", 1)[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tail in ci.splitlines(), f"{tail!r} not a line of .ci/run"


@pytest.mark.slow  # a 128 x 128 x 48 phantom through CT and MR, twice: about two minutes
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    """The README's Python blocks run as written, in order (the second continues the first)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    runnable = [b for b in blocks if "run_trial(" not in b]  # the trial block runs in its own test
    assert len(runnable) >= 2
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in runnable:
        exec(compile(block, "README.md", "exec"), scope)
    assert scope["hu"].shape == scope["labels"].shape
    assert scope["grad"].shape == scope["f"].shape
    assert scope["scans"].projections.shape[0] == 2
    assert (tmp_path / "ct.nii.gz").is_file()
    assert scope["fine"].shape == (256, 256, 1) and scope["novel"].shape == (1, 256, 1)
    assert scope["fitted"].losses.shape == (300,) and (tmp_path / "field.npz").is_file()
    assert scope["squeezed"].converged and scope["pressed"].labels.shape == (32, 32, 24)
