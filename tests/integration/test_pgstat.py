"""The table-statistics source against a real PostgreSQL 15: a `COPY ... TO STDOUT` (which the
audit log misses with `pgaudit.log_rows = on`) shows up as tuples read within a poll or two, a
restarted server is shown down and then back with nothing counted twice, and a table that is not
there is said."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from collectors.pgstat import DatabaseLink, TableStatsSource
from core.dbside import TableReads
from core.tables import TableName
from tablewatch.pgcluster import PgCluster

ROLE = "tw_stats"
SETUP = f"""
CREATE SCHEMA crm;
CREATE TABLE crm.clients AS SELECT g AS id, 'client ' || g AS name FROM generate_series(1, 5000) g;
ANALYZE crm.clients;
CREATE ROLE {ROLE} LOGIN;
GRANT pg_monitor TO {ROLE};
"""


async def _reads(source: TableStatsSource, at_least: int, seconds: float = 15.0) -> int:
    """Tuples read over the polls until at least `at_least` (statistics are flushed by the
    backend when it ends, so a poll or two later)."""
    total = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found: list[TableReads] = await source.poll()
        total += sum(r.tuples for r in found)
        if total >= at_least:
            return total
        await asyncio.sleep(0.2)
    return total


async def test_table_statistics_see_a_copy_out_and_survive_a_restart(
    pg_factory: Callable[[dict[str, str]], PgCluster],
) -> None:
    pg = pg_factory({"pgaudit.log_rows": "on"})
    pg.psql(SETUP)
    tables = [TableName.parse("crm.clients"), TableName.parse("crm.nothing")]
    source = TableStatsSource(DatabaseLink(pg.dsn(ROLE)), tables, interval=0.2)
    assert source.health().state == "waiting"
    assert await source.poll() == []  # the first poll is the baseline
    health = source.health()
    assert health.state == "ok" and "not found: crm.nothing" in health.detail

    pg.psql("COPY crm.clients TO STDOUT", app="exporter")  # not in the audit log at all
    assert await _reads(source, 5000) == 5000

    pg.restart()  # the source's connection breaks
    with pytest.raises(ConnectionError) as broken:
        await source.poll()
    assert str(broken.value)
    assert source.health().state == "error" and source.health().detail == str(broken.value)
    # back, after the link's pause: nothing counted twice, the restart noted
    for _ in range(60):
        try:
            found = await source.poll()
            break
        except ConnectionError:
            await asyncio.sleep(0.25)
    else:
        raise AssertionError(f"never reconnected: {source.health().detail}")
    assert sum(r.tuples for r in found) == 0
    assert source.health().state == "ok"
    assert any(note.startswith("the server restarted at") for note in source.health().notes)
    pg.psql("SELECT count(*) FROM crm.clients WHERE id > 4000")
    assert await _reads(source, 5000) >= 5000  # a count(*) scans the whole table
    await source.link.close()
