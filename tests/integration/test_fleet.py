"""Dashboards attached to agents: two real `tablewatch run` agents on pgaudit csvlogs, one
dashboard for both (`FleetView` in-process, then the real dashboard in tmux). Each row says which
agent it comes from, actions reach the right agent, an agent restarted mid-way is shown as
disconnected and comes back without restarting the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from core.findings import PrincipalKey, Severity
from core.snapshot import Snapshot
from core.view import ActionRefused, PageRequest
from tablewatch.remote import AgentAddress, FleetView, RemoteView
from tests.agentkit import ROOT, configure, free_port, fresh_sample, next_log, running
from tests.integration.screen import Screen

TABLEWATCH = str(Path(sys.executable).parent / "tablewatch")


def _agent_dir(tmp_path: Path, name: str) -> tuple[Path, int]:
    folder = tmp_path / name
    (folder / "log").mkdir(parents=True)
    (folder / "log" / "postgresql-1.csv").write_bytes(fresh_sample())
    port = free_port()
    return configure(folder, free_port(), api=f"127.0.0.1:{port}"), port


async def _until(view: FleetView, seen: Callable[[Snapshot], bool], what: str) -> Snapshot:
    for _ in range(150):
        snap = await view.snapshot()
        if seen(snap):
            return snap
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {what}: {snap.sources}")


def _link(snap: Snapshot, name: str) -> str:
    return next(h.state for h in snap.sources if h.name == f"agent {name}")


@contextlib.asynccontextmanager
async def _following(view: FleetView) -> AsyncIterator[None]:
    task = asyncio.create_task(view.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_dashboard_for_two_agents(tmp_path: Path) -> None:
    east, east_port = _agent_dir(tmp_path, "east")
    west, west_port = _agent_dir(tmp_path, "west")
    view = FleetView(
        [
            RemoteView(AgentAddress.parse(f"east=http://127.0.0.1:{east_port}")),
            RemoteView(AgentAddress.parse(f"west=http://127.0.0.1:{west_port}")),
        ]
    )
    assert view.name == "2 agents: east, west"
    async with running(east) as a, running(west) as b, _following(view):
        await next_log(a, "started")
        await next_log(b, "started")
        snap = await _until(
            view, lambda s: {r.principal.agent for r in s.readers} == {"east", "west"}, "readers"
        )
        # the same reader on both databases: two rows, each saying where
        alices = [r.principal for r in snap.readers if r.principal.user == "alice"]
        assert sorted(p.agent for p in alices) == ["east", "west"]
        assert all(r.severity is Severity.CRITICAL for r in snap.readers if r.principal in alices)
        assert {h.name for h in snap.sources} >= {
            "agent east", "east: audit_log", "agent west", "west: audit_log"
        }  # fmt: skip
        assert snap.events == 2 * 170

        # an action goes to the agent the row came from, and only there
        west_alice = next(p for p in alices if p.agent == "west")
        alert = await view.page(PageRequest(west_alice, Severity.CRITICAL, "both?", "ann"))
        assert alert.key.startswith("west/tw-") and alert.principal.agent == "west"
        acked = await view.acknowledge(alert.key, "looking", "ann")
        assert acked.state == "acknowledged" and acked.key == alert.key
        east_trail = tmp_path / "east" / "state" / "operator-trail.jsonl"
        west_trail = tmp_path / "west" / "state" / "operator-trail.jsonl"
        assert not east_trail.exists() and len(west_trail.read_text().splitlines()) == 2
        with pytest.raises(ActionRefused, match="no agent named"):
            await view.snooze(PrincipalKey("x", "", "", "crm.client_list", "north"), 60, "ann")
        with pytest.raises(ActionRefused, match="west: 404 no alert"):
            await view.acknowledge(f"west/{'tw-' + '0' * 32}", "", "ann")

        # west restarts mid-way: shown disconnected (its last rows kept), then back on its own
        b.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(b.wait(), 10) == 0
        down = await _until(view, lambda s: _link(s, "west") == "error", "west disconnected")
        detail = next(h.detail for h in down.sources if h.name == "agent west")
        assert detail.startswith("disconnected since") and "reconnecting" in detail
        assert _link(down, "east") == "ok"
        gone = next(h for h in down.sources if h.name == "west: audit_log")
        assert gone.state == "waiting" and "agent not answering" in gone.detail
        assert any(r.principal.agent == "west" for r in down.readers)
        with pytest.raises(ActionRefused, match="agent west unreachable"):
            await view.snooze(west_alice, 60, "ann")
        async with running(west) as again:
            await next_log(again, "started")
            back = await _until(view, lambda s: _link(s, "west") == "ok", "west back")
            assert _link(back, "east") == "ok"
            # the alert acknowledged before the restart is still there, still acknowledged
            assert any(a.key == alert.key and a.state == "acknowledged" for a in back.alerts)


@contextlib.contextmanager
def _agent_process(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TABLEWATCH_")}
    with (config.parent / "agent.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tablewatch.cli", "--config", str(config), "run"],
            cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT)}, stderr=log,
        )  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_the_fleet_dashboard_on_screen(tmp_path: Path) -> None:
    """80x24, as over SSH: both agents' rows with their names, a restart seen and recovered."""
    east, east_port = _agent_dir(tmp_path, "east")
    west, west_port = _agent_dir(tmp_path, "west")
    command = [
        TABLEWATCH, "--config", str(east), "dashboard",
        "--agent", f"east=http://127.0.0.1:{east_port}",
        "--agent", f"west=http://127.0.0.1:{west_port}",
    ]  # fmt: skip
    with _agent_process(east), Screen(command, tmp_path, width=80, height=24) as screen:
        with _agent_process(west) as w:
            rows = screen.wait(
                lambda s: "│east     CRIT" in s and "│west     CRIT" in s, 30, "both agents' rows"
            )
            assert "agent east ✓ ok" in rows and "│agent" in rows
            w.send_signal(signal.SIGTERM)
            w.wait(10)
        screen.wait(lambda s: "agent west ✗ ERROR" in s, 15, "west disconnected")
        assert "│west     CRIT" in screen.text()  # its last rows stay on screen
        t0 = time.monotonic()
        with _agent_process(west):
            screen.wait(lambda s: "agent west ✗" not in s, 20, "west reconnected")
        assert time.monotonic() - t0 < 20
        screen.keys("q")
        screen.wait(lambda s: "EXITED 0" in s, 10, "a clean exit")


def test_agent_addresses() -> None:
    assert AgentAddress.parse("http://10.0.0.5:9747/") == AgentAddress(
        "10.0.0.5:9747", "http://10.0.0.5:9747"
    )
    assert AgentAddress.parse("db-1=https://db1.example:9747").name == "db-1"
    for bad in ("10.0.0.5:9747", "ftp://x:1", "http://u:p@host:1", "http://h:99999", "x="):
        with pytest.raises(ValueError, match="--agent"):
            AgentAddress.parse(bad)
    with pytest.raises(ValueError, match="share a name"):
        FleetView([RemoteView(AgentAddress.parse("http://a:1"))] * 2)


async def test_an_agent_that_is_not_there_is_shown_so(tmp_path: Path) -> None:
    view = RemoteView(AgentAddress.parse(f"http://127.0.0.1:{free_port()}"))
    first = await view.snapshot()
    assert [(h.name, h.state) for h in first.sources][0][1] == "waiting"
    task = asyncio.create_task(view.run())
    try:
        for _ in range(50):
            health = (await view.snapshot()).sources[0]
            if health.state == "error":
                break
            await asyncio.sleep(0.1)
        assert health.state == "error" and "disconnected since" in health.detail
        assert "onnect" in health.detail  # connection refused, in the OS's words
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with pytest.raises(ActionRefused, match="unreachable"):
        await view.resolve("tw-x", "", "ann")
    await view.close()
