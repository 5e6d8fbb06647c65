"""The agent (`tablewatch run`) with `[database]` on a real PostgreSQL 15 + pgaudit: its four
database sources are up beside the audit log; the server restarted under it shows them down and
then back, the agent never stops, and nothing is counted twice (every audited SELECT counted
once, no audit gap made by the restart); then a COPY the audit log misses (log_rows on) is an
audit gap on /metrics and in the API's snapshot, laid at its role."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tablewatch.pgcluster import PgCluster
from tests.agentkit import free_port, next_log, running, scrape

pytestmark = pytest.mark.postgres

ROWS = 2000
MONITOR = "tw_agent_monitor"
SETUP = f"""
CREATE EXTENSION pg_stat_statements;
CREATE SCHEMA crm;
CREATE TABLE crm.client_list AS SELECT g AS id, 'client ' || g AS name
  FROM generate_series(1, {ROWS}) g;
ALTER TABLE crm.client_list ADD PRIMARY KEY (id);
ANALYZE crm.client_list;
GRANT SELECT ON crm.client_list TO auditor;
CREATE ROLE app LOGIN;
CREATE ROLE copier LOGIN;
GRANT USAGE ON SCHEMA crm TO app, copier;
GRANT SELECT ON crm.client_list TO app, copier;
CREATE ROLE {MONITOR} LOGIN;
GRANT pg_monitor TO {MONITOR};
"""
SOURCES = {"pg_stat_user_tables", "pg_stat_statements", "pg_stat_activity", "audit_setup"}
READS = "tablewatch_reads_total"


def _configure(tmp: Path, pg: PgCluster, metrics: int, api: int) -> Path:
    config = tmp / "settings.toml"
    config.write_text(
        f"""
[[tables]]
name = "crm.client_list"

[detection]
learning_period = "0s"

[database]
dsn = "{pg.dsn(MONITOR)}"
poll_interval = "500ms"
statements_interval = "500ms"
activity_interval = "250ms"
setup_interval = "500ms"

[audit_log]
path = "{pg.log_path("csvlog")}"
format = "csvlog"
start = "beginning"
poll_interval = "100ms"

[metrics]
listen = "127.0.0.1:{metrics}"

[api]
listen = "127.0.0.1:{api}"

[state]
dir = "{tmp / "state"}"
"""
    )
    return config


async def _states(http: aiohttp.ClientSession, api: int) -> dict[str, str]:
    async with http.get(f"http://127.0.0.1:{api}/api/v1/snapshot") as answer:
        snap: dict[str, Any] = await answer.json()
    return {s["name"]: s["state"] for s in snap["sources"]}


async def _reads(port: int) -> float:
    metrics = await scrape(port)
    return sum(v for k, v in metrics.items() if k.startswith(READS + "{"))


async def _until(check: Callable[[], Any], what: str, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds:.0f} s")


async def test_a_restart_under_the_agent_then_a_copy_the_audit_log_misses(
    pg_factory: Callable[[dict[str, str]], PgCluster], tmp_path: Path
) -> None:
    pg = pg_factory(
        {"shared_preload_libraries": "pgaudit,pg_stat_statements", "pgaudit.log_rows": "on"}
    )
    pg.psql(SETUP)
    metrics, api = free_port(), free_port()
    config = _configure(tmp_path, pg, metrics, api)

    def lookups(first: int) -> str:
        return "".join(
            f"SELECT name FROM crm.client_list WHERE id = {k};\n" for k in range(first, first + 20)
        )

    async with running(config) as agent, aiohttp.ClientSession() as http:
        started = await next_log(agent, "started")
        assert set(started["database"].split(", ")) == SOURCES

        async def all_ok() -> bool:
            states = await _states(http, api)
            return SOURCES <= set(states) and set(states.values()) == {"ok"}

        await _until(all_ok, "every source ok")
        await asyncio.to_thread(pg.psql, lookups(1), user="app", app="crm-web")

        async def twenty() -> bool:
            return await _reads(metrics) == 20

        await _until(twenty, "the 20 audited lookups counted")

        # the server restarts under the agent
        await asyncio.to_thread(pg.restart)
        seen_down: set[str] = set()

        async def back() -> bool:
            states = await _states(http, api)
            seen_down.update(name for name, state in states.items() if state == "error")
            return bool(seen_down) and set(states.values()) == {"ok"}

        await _until(back, "the sources down, then back", 60)
        assert seen_down & SOURCES, seen_down
        assert agent.returncode is None
        await asyncio.to_thread(pg.psql, lookups(21), user="app", app="crm-web")

        async def forty() -> float:
            return await _reads(metrics) == 40

        await _until(forty, "the next 20 lookups counted")
        await asyncio.sleep(2)  # a few polls of the statistics after the restart
        m = await scrape(metrics)
        assert await _reads(metrics) == 40  # nothing counted twice
        assert m["tablewatch_unaudited_tuples_total{table=crm.client_list}"] == 0
        assert m["tablewatch_source_up{source=pg_stat_statements}"] == 1

        # a COPY: not in the audit log with log_rows = on
        await asyncio.to_thread(pg.psql, "COPY crm.client_list TO STDOUT", user="copier")

        async def gap() -> float:
            found = await scrape(metrics)
            return found["tablewatch_unaudited_tuples_total{table=crm.client_list}"]

        assert await _until(gap, "the COPY as an audit gap") == ROWS

        async def copier() -> dict[str, Any] | None:
            async with http.get(f"http://127.0.0.1:{api}/api/v1/snapshot") as answer:
                snap = await answer.json()
            return next((r for r in snap["readers"] if r["user"] == "copier"), None)

        reader = await _until(copier, "the gap laid at copier")
        assert reader["severity"] == "critical"
        assert [r["code"] for r in reader["reasons"]][0] == "audit_gap"

        agent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.wait(), 15) == 0
