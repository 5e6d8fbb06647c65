"""A terminal a person would use: the dashboard in a private tmux server, its screen and its bytes.

`Screen` starts a command in a detached tmux session of a given size on its own socket (never
the user's tmux), reads the screen as text (`capture-pane`) and records every byte the program
wrote to the terminal (`pipe-pane`), so a test can check both what a person sees and that no
foreign control sequence reached the terminal.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import pytest


def require_tmux() -> str:
    """The tmux binary; skips without it (fails under CI, where bootstrap installs it)."""
    found = shutil.which("tmux")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("tmux required under CI (scripts/bootstrap.sh installs it)", pytrace=False)
        pytest.skip("tmux not installed")
    return found


class Screen:
    """`command` running in tmux at `width` x `height`."""

    def __init__(self, command: list[str], folder: Path, *, width: int = 100, height: int = 30):
        self.tmux = require_tmux()
        self.socket = folder / "tmux.sock"
        self.raw = folder / "terminal.raw"
        self.command = command
        self.size = (width, height)

    def _run(self, *args: str) -> str:
        # COLUMNS/LINES (pytest's own, say) would override the terminal's size in the program
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        done = subprocess.run(
            [self.tmux, "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env=env,
        )
        return done.stdout

    def __enter__(self) -> Screen:
        width, height = self.size
        # the shell stays after the program exits, so its last words can be read
        script = shlex.join(self.command) + "; echo; echo EXITED $?; sleep 600"
        env = {"TERM": "xterm-256color", "LANG": "C.UTF-8"}
        self._run(
            "-f", "/dev/null", "new-session", "-d", "-s", "tw", "-x", str(width), "-y",
            str(height), *(f"-e{k}={v}" for k, v in env.items()), script,
        )  # fmt: skip
        self._run("pipe-pane", "-o", "-t", "tw", f"cat >> {shlex.quote(str(self.raw))}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        subprocess.run(
            [self.tmux, "-S", str(self.socket), "kill-server"], capture_output=True, check=False
        )

    def text(self) -> str:
        """The screen as a person sees it (plain text, no attributes)."""
        return self._run("capture-pane", "-p", "-t", "tw")

    def keys(self, *keys: str, literal: bool = False) -> None:
        """Press keys (tmux names: Up, Enter, Escape...; `literal` types text as is)."""
        self._run("send-keys", "-t", "tw", *(["-l"] if literal else []), *keys)

    def wait(self, seen: Callable[[str], bool], timeout: float, what: str) -> str:
        """The screen once `seen(screen)`; fails with the last screen after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.text()
            if seen(screen):
                return screen
            time.sleep(0.25)
        pytest.fail(f"no {what} within {timeout:.0f} s; the screen:\n{screen}", pytrace=False)

    def output(self) -> bytes:
        """Every byte written to the terminal so far."""
        return self.raw.read_bytes() if self.raw.exists() else b""
