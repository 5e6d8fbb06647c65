"""Fixtures shared by the CLI tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import core.settings
from tablewatch.cli import main
from tests.unit.cli_run import Run


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory and HOME, no TABLEWATCH_* variables, no system settings file."""
    for name in list(os.environ):
        if name.upper().startswith("TABLEWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(core.settings, "SEARCH_PATH", (Path("settings.toml"),))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tablewatch(capsysbinary: pytest.CaptureFixture[bytes]) -> Any:
    """Call `tablewatch ARGS...` in-process; returns a Run."""

    def run(*argv: str | Path) -> Run:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        out, err = capsysbinary.readouterr()
        return Run(code, out, err.decode())

    return run
