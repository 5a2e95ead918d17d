"""The README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

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
