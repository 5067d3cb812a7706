"""The command line run inside the test's process (``harness.cli.main``): the exit code, stdout and
stderr a user's shell would see, without paying a fresh interpreter's imports (~5 s) per call.
``tests/test_cli.py`` keeps real subprocesses for the ``python -m harness.cli`` entry itself."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import main

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str, env: dict[str, str] | None = None) -> CliResult:
    """``erosion ARGS`` from the checkout's root, with ``env`` added to the environment; the
    environment, working folder and warning display are restored afterwards, as a process ending would."""
    saved_env, saved_cwd, saved_show = dict(os.environ), Path.cwd(), warnings.showwarning
    os.environ.update(env or {})
    os.chdir(REPO)
    try:
        code = main(list(args))
    except SystemExit as stop:  # argparse's --help and its own usage errors
        code = 0 if stop.code is None else stop.code
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        warnings.showwarning = saved_show
    captured = capsys.readouterr()
    return CliResult(int(code), captured.out, captured.err)
