"""Cancelling and terminating a reader's backend on a real PostgreSQL 15 (collectors.backends):
refused with what to grant while the monitoring role has only pg_monitor, a superuser's backend
left alone, a pid now held by another session left alone, and after `GRANT pg_signal_backend`
the sleeping query cancelled and another session terminated. Then the whole way from an operator:
agent API -> LiveEngine -> the server, through a RemoteView and a FleetView, recorded in the
operator trail."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from collectors.backends import signal_backend
from collectors.pgstat import DatabaseLink
from core.dbside import Backend
from core.findings import PrincipalKey
from core.view import ActionRefused
from tablewatch.api import AgentApi
from tablewatch.live import LiveEngine
from tablewatch.pgcluster import PgCluster, free_port
from tablewatch.remote import AgentAddress, FleetView, RemoteView
from tablewatch.trail import TRAIL_FILE, OperatorTrail
from tablewatch.web import Address, WebServer
from tests.unit.enginekit import TABLE, engine

MONITOR = "tw_monitor"
SETUP = f"""
CREATE SCHEMA crm;
CREATE TABLE crm.client_list AS SELECT g AS id, 'client ' || g AS name
  FROM generate_series(1, 1000) g;
CREATE ROLE {MONITOR} LOGIN;
GRANT pg_monitor TO {MONITOR};
CREATE ROLE alice LOGIN;
GRANT USAGE ON SCHEMA crm TO alice;
GRANT SELECT ON crm.client_list TO alice;
"""
SLEEP = "SELECT pg_sleep(60)"


class Sleeper:
    """A psql session running `SELECT pg_sleep(60)` in the background, and its backend."""

    def __init__(self, proc: asyncio.subprocess.Process, pid: int, started_us: int) -> None:
        self.proc = proc
        self.pid = pid
        self.started_us = started_us

    async def ended(self, seconds: float = 15.0) -> str:
        """What psql said on stderr once it ended (it must end within `seconds`)."""
        _, err = await asyncio.wait_for(self.proc.communicate(), seconds)
        return err.decode()

    def running(self) -> bool:
        return self.proc.returncode is None


async def _sleeper(pg: PgCluster, user: str, app: str) -> Sleeper:
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "PGAPPNAME": app}
    proc = await asyncio.create_subprocess_exec(
        str(pg.bin_dir / "psql"), "-X", "-h", pg.host, "-p", str(pg.port), "-U", user,
        "-d", "postgres", "-c", SLEEP,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        row = pg.psql(
            "SELECT pid, (extract(epoch FROM backend_start) * 1e6)::int8 FROM pg_stat_activity"
            f" WHERE application_name = '{app}' AND state = 'active' AND query = '{SLEEP}'"
        ).strip()
        if row:
            pid, started = row.split("|")
            return Sleeper(proc, int(pid), int(started))
        await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError(f"{app}: the sleeping query never showed in pg_stat_activity")


async def _gone(pg: PgCluster, pid: int) -> bool:
    for _ in range(100):
        if not pg.psql(f"SELECT 1 FROM pg_stat_activity WHERE pid = {pid}").strip():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_cancel_and_terminate_need_pg_signal_backend(
    pg_factory: Callable[[dict[str, str]], PgCluster],
) -> None:
    pg = pg_factory({})
    pg.psql(SETUP)
    link = DatabaseLink(pg.dsn(MONITOR))
    reader = await _sleeper(pg, "alice", "sleeper-1")
    boss = await _sleeper(pg, "postgres", "sleeper-su")
    try:
        # pg_monitor only: refused, naming what to grant; the query sleeps on
        for terminate in (False, True):
            with pytest.raises(ActionRefused) as refused:
                await signal_backend(link, reader.pid, terminate, started_us=reader.started_us)
            assert str(refused.value) == (
                f"the monitoring role {MONITOR} may not signal backend {reader.pid}: "
                f"GRANT pg_signal_backend TO {MONITOR}; (a superuser's backend only a superuser "
                "may signal)"
            )
        with pytest.raises(ActionRefused, match="no client backend has that pid now"):
            await signal_backend(link, 2**31 - 1, False)
        with pytest.raises(ActionRefused, match="is not a backend's process id"):
            await signal_backend(link, 0, False)
        assert reader.running() and link.problem == ""

        pg.psql(f"GRANT pg_signal_backend TO {MONITOR}")
        # a superuser's backend stays out of reach; so does a pid now held by another session
        with pytest.raises(ActionRefused) as refused:
            await signal_backend(link, boss.pid, True)
        assert str(refused.value) == (
            f"backend {boss.pid} is a superuser's (postgres): only a superuser may signal it, "
            f"and the monitoring role {MONITOR} is not one"
        )
        earlier = reader.started_us - 60_000_000
        with pytest.raises(ActionRefused, match="its pid now belongs to another session"):
            await signal_backend(link, reader.pid, True, started_us=earlier)
        await asyncio.sleep(0.3)
        assert reader.running() and boss.running()

        # granted: the sleeping query is cancelled (the session stays), another one terminated
        done = await signal_backend(link, reader.pid, False, started_us=reader.started_us)
        assert done == f"cancelled the query of backend {reader.pid}"
        assert "canceling statement due to user request" in await reader.ended()
        other = await _sleeper(pg, "alice", "sleeper-2")
        assert await signal_backend(link, other.pid, True) == f"terminated backend {other.pid}"
        assert "terminating connection due to administrator command" in await other.ended()
        assert await _gone(pg, other.pid)
        with pytest.raises(ActionRefused, match=f"backend {other.pid} has ended"):
            await signal_backend(link, other.pid, True)
    finally:
        pg.psql(f"SELECT pg_terminate_backend({boss.pid})")
        for s in (reader, boss):
            if s.running():
                s.proc.kill()
            await s.proc.wait()

    nowhere = DatabaseLink(f"postgresql://{MONITOR}@127.0.0.1:{free_port()}/postgres")
    with pytest.raises(ActionRefused) as refused:
        await signal_backend(nowhere, 4242, False)
    assert str(refused.value) == (
        "cannot reach the database to signal backend 4242: cannot connect: connection refused"
    )


def _backend(s: Sleeper, app: str) -> Backend:
    """The sleeper as the activity source would see it reading the watched table."""
    return Backend(
        s.pid, "alice", "postgres", "127.0.0.1", app, "active", "select", (TABLE,), SLEEP,
        s.started_us, s.started_us, s.started_us,
    )  # fmt: skip


@asynccontextmanager
async def _serving(live: LiveEngine) -> AsyncIterator[str]:
    api = AgentApi(live)
    server = WebServer(Address("127.0.0.1", 0), api.routes(), middlewares=api.middlewares(None))
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await api.close()
        await server.stop()


async def test_an_operator_cancels_through_the_agent_api(
    pg_factory: Callable[[dict[str, str]], PgCluster], tmp_path: Path
) -> None:
    pg = pg_factory({})
    pg.psql(SETUP + f"GRANT pg_signal_backend TO {MONITOR};")
    live = LiveEngine(
        engine(), trail=OperatorTrail(tmp_path), database=DatabaseLink(pg.dsn(MONITOR))
    )
    first = await _sleeper(pg, "alice", "sleeper-1")
    second = await _sleeper(pg, "alice", "sleeper-2")
    mine = PrincipalKey("alice", "127.0.0.1", "sleeper-1", TABLE)
    theirs = PrincipalKey("alice", "127.0.0.1", "sleeper-2", TABLE)
    # what the activity source (built elsewhere) hands the engine: each sleeper its reader's
    live.engine._backends = {
        ("alice", "127.0.0.1", "sleeper-1", TABLE): (_backend(first, "sleeper-1"),),
        ("alice", "127.0.0.1", "sleeper-2", TABLE): (_backend(second, "sleeper-2"),),
    }
    try:
        async with _serving(live) as base:
            remote = RemoteView(AgentAddress.parse(f"db1={base}"))
            fleet = FleetView([RemoteView(AgentAddress.parse(f"east={base}"))])
            try:
                # another reader's backend is never signalled, whoever names its pid
                with pytest.raises(ActionRefused) as refused:
                    await remote.signal_backend(mine, second.pid, True, "ann")
                assert str(refused.value) == (
                    f"agent db1: 409 backend {second.pid} is no longer reading {TABLE} for "
                    "alice@127.0.0.1"
                )
                assert first.running() and second.running()
                done = await remote.signal_backend(mine, first.pid, False, "ann")
                assert done == f"cancelled the query of backend {first.pid}"
                assert "canceling statement due to user request" in await first.ended()
                # a fleet routes it to the agent that saw the reader
                tagged = replace(theirs, agent="east")
                done = await fleet.signal_backend(tagged, second.pid, True, "bo")
                assert done == f"terminated backend {second.pid}"
                assert "terminating connection" in await second.ended()
                with pytest.raises(ActionRefused, match="no agent named 'west'"):
                    await fleet.signal_backend(replace(theirs, agent="west"), 1, True, "bo")
            finally:
                await remote.close()
                await fleet.agents["east"].close()
    finally:
        for s in (first, second):
            if s.running():
                s.proc.kill()
            await s.proc.wait()
    trail = [json.loads(line) for line in (tmp_path / TRAIL_FILE).read_text().splitlines()]
    assert [(t["action"], t["operator"], t["application_name"], t["pid"]) for t in trail] == [
        ("cancel", "ann", "sleeper-1", first.pid),
        ("terminate", "bo", "sleeper-2", second.pid),
    ]
    assert trail[0]["outcome"] == f"cancelled the query of backend {first.pid}"
    assert trail[1]["outcome"] == f"terminated backend {second.pid}"
