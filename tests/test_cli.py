"""The `medphys` command: user errors print one message and exit 2, before any work starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from medphys.cli import main


def test_bad_config_exits_2_without_traceback(tmp_path):
    cfg = tmp_path / "job.toml"
    cfg.write_text("[phantom]\nsupersample = 12\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medphys.cli",
            "generate",
            "--out",
            str(tmp_path / "o"),
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{cfg}:2: phantom.supersample:" in proc.stderr
    assert "less than or equal to 8" in proc.stderr and "12" in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing written


def test_unknown_phantom_lists_catalog(tmp_path, capsys):
    cfg = tmp_path / "job.toml"
    cfg.write_text('[phantom]\nname = "adult-mail"\n')
    assert main(["generate", "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown phantom 'adult-mail'" in err and "torso-basic" in err
    assert not (tmp_path / "o" / "cases").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder_is_reported_first(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["generate", "--out", str(locked / "out")]) == 2
    finally:
        locked.chmod(0o700)
    assert "cannot write to the output folder" in capsys.readouterr().err


def test_output_path_that_is_a_file_is_reported(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["generate", "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the output folder" in err and "--out" in err


def test_bad_option_value_is_a_usage_error(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), "--cases", "many"]) == 2
    err = capsys.readouterr().err
    assert "--cases" in err and "integer" in err


def test_override_out_of_range(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "o"), "--seed", "-1"]) == 2
    assert "seed" in capsys.readouterr().err


def test_version(capsys):
    from medphys import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"medphys {__version__}"


def test_phantom_show_creates_the_folder_or_says_why(tmp_path, capsys):
    target = tmp_path / "new" / "dir" / "torso.png"
    assert main(["phantom", "show", "torso-basic", "--out", str(target), "--spacing-mm", "20"]) == 0
    assert target.stat().st_size > 1000
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["phantom", "show", "torso-basic", "--out", str(blocker / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "cannot create the folder of --out" in err and "Traceback" not in err


def test_engine_options_are_checked_before_any_work(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["generate", "--out", str(out), "--engine", "spark"]) == 2
    assert "--engine must be 'local' or 'ray' (got 'spark')" in capsys.readouterr().err
    assert main(["generate", "--out", str(out), "--workers", "0"]) == 2
    assert "`workers` must be a positive integer (got 0)" in capsys.readouterr().err
    assert not out.exists()


def test_a_signal_inside_a_finaliser_still_stops_the_job(monkeypatch, capsys):
    """SIGTERM landing inside a finaliser (where an exception is swallowed: "Exception ignored
    in ...") is delivered again outside it and stops the job; the run exits 128 + 15."""
    import signal
    import time

    from medphys import cli

    reached = []

    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs inside __del__

    def job(args, standalone_mode):
        item = Finalised()
        del item
        time.sleep(2.0)  # the re-delivered signal interrupts this
        reached.append("end")
        return 0

    monkeypatch.setattr(cli, "app", job)
    assert cli.main([]) == 128 + signal.SIGTERM
    assert not reached
    err = capsys.readouterr().err
    assert "terminated (SIGTERM); complete cases are kept" in err and "Traceback" not in err


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_lost_interruption_still_exits_non_zero(monkeypatch, capsys):
    """Should the handler's exception be lost on its way (raised where it is swallowed), the job
    runs to its end and the run still exits 128 + 15 and says so."""
    import signal

    from medphys import cli

    class Swallowing:
        def __del__(self):
            cli._raise_interrupted(signal.SIGTERM, None)  # raises inside __del__: swallowed

    def job(args, standalone_mode):
        item = Swallowing()
        del item
        return 0

    monkeypatch.setattr(cli, "app", job)
    assert cli.main([]) == 128 + signal.SIGTERM
    assert "terminated (SIGTERM); complete cases are kept" in capsys.readouterr().err
    # the next run starts with a clean record
    monkeypatch.setattr(cli, "app", lambda args, standalone_mode: 0)
    assert cli.main([]) == 0
