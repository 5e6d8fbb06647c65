"""The command sink with real small programs: stdin, exit statuses, timeouts, missing programs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from alerts.command import Command
from core.settings import CommandSink
from core.sinks import Outcome
from tests.alertkit import make_alert, make_step


def sink(*argv: str, timeout: float = 10.0) -> Command:
    config = CommandSink(argv=list(argv), timeout=timedelta(seconds=timeout))
    return Command(config, host="agent-host")


def python(code: str, *args: str, timeout: float = 10.0) -> Command:
    return sink(sys.executable, "-c", code, *args, timeout=timeout)


async def test_exit_0_is_sent_with_the_document_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    target = python(
        "import sys, pathlib; pathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())",
        str(out),
    )
    payload = target.render(make_alert(), make_step(), None)
    assert payload is not None
    verdict = await target.deliver(payload)
    assert (verdict.outcome, verdict.detail) == (Outcome.SENT, "exit 0")
    assert out.read_bytes() == payload
    assert json.loads(payload)["alert"]["user"] == "alice"


@pytest.mark.parametrize(
    ("code", "outcome", "detail"),
    [
        (
            "import sys; sys.stderr.write('busy\\n'); sys.exit(75)",
            Outcome.RETRY,
            "exit 75 (temporary failure): busy",
        ),
        (
            "import sys; sys.stderr.write('first\\nno route to pager \\x1b[31m\\n\\n')\n"
            "sys.exit(1)",
            Outcome.FAILED,
            "exit 1: no route to pager \\x1b[31m",
        ),
        ("import sys; sys.exit(3)", Outcome.FAILED, "exit 3"),
        (
            "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
            Outcome.FAILED,
            "killed by signal 15",
        ),
    ],
)
async def test_exit_statuses(code: str, outcome: Outcome, detail: str) -> None:
    verdict = await python(code).deliver(b"{}")
    assert (verdict.outcome, verdict.detail) == (outcome, detail)


async def test_a_program_that_ignores_a_large_stdin_is_fine() -> None:
    target = sink("/bin/sh", "-c", "exit 0")
    payload = target.render(make_alert(statement="\U0001f600" * 20_000), make_step(), None)
    assert payload is not None and len(payload) > 64 * 1024  # more than a pipe buffer
    assert (await target.deliver(payload)).outcome is Outcome.SENT


async def test_a_hung_command_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    target = sink("/bin/sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait", timeout=0.5)
    started = time.monotonic()
    verdict = await target.deliver(b"{}")
    assert (verdict.outcome, verdict.detail) == (Outcome.RETRY, "timed out after 0.5s")
    assert time.monotonic() - started < 5
    child = int(pidfile.read_text())
    for _ in range(100):  # poll for up to 5 s: init reaps the orphan in its own time
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child)


async def test_a_background_child_holding_stderr_does_not_hold_the_verdict(tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    code = (
        "import pathlib, subprocess, sys\n"
        "child = subprocess.Popen(['sleep', '30'], start_new_session=True)\n"  # keeps fd 2
        "pathlib.Path(sys.argv[1]).write_text(str(child.pid))\n"
        "sys.stderr.write('queued\\n')"
    )
    started = time.monotonic()
    try:
        verdict = await python(code, str(pidfile), timeout=20).deliver(b"{}")
    finally:
        os.kill(int(pidfile.read_text()), 9)
    assert (verdict.outcome, verdict.detail) == (Outcome.SENT, "exit 0")
    assert time.monotonic() - started < 10


async def test_a_hung_command_that_never_reads_its_input_times_out() -> None:
    target = sink("/bin/sh", "-c", "sleep 60", timeout=0.5)
    payload = target.render(make_alert(statement="\U0001f600" * 20_000), make_step(), None)
    started = time.monotonic()
    verdict = await target.deliver(payload or b"")
    assert (verdict.outcome, verdict.detail) == (Outcome.RETRY, "timed out after 0.5s")
    assert time.monotonic() - started < 5


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped by init counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


async def test_a_missing_or_unrunnable_program_fails_with_one_line(tmp_path: Path) -> None:
    missing = await sink(str(tmp_path / "no-such-notifier"), "x").deliver(b"{}")
    assert missing.outcome is Outcome.FAILED
    assert missing.detail == f"command not found: {tmp_path / 'no-such-notifier'}"
    script = tmp_path / "notify"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o600)
    unrunnable = await sink(str(script)).deliver(b"{}")
    assert unrunnable.outcome is Outcome.FAILED and unrunnable.detail.startswith(
        "command not executable"
    )


async def test_tablewatch_secrets_stay_out_of_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TABLEWATCH_ALERTS__PAGERDUTY__ROUTING_KEY", "sekrit")
    monkeypatch.setenv("NOTIFY_CHANNEL", "ops")
    code = (
        "import os, sys\n"
        "leaked = [k for k in os.environ if k.startswith('TABLEWATCH_')]\n"
        "sys.exit(1 if leaked or os.environ.get('NOTIFY_CHANNEL') != 'ops' else 0)"
    )
    assert (await python(code).deliver(b"{}")).outcome is Outcome.SENT


def test_no_limit_no_aggregate() -> None:
    target = sink("true")
    assert target.name == "command" and target.limit is None and target.resend_seconds is None
    assert target.aggregate([b"{}", b"{}"]) is None and target.bucket(b"{}") == ""
