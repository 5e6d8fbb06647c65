"""The pg_stat_statements source against a real PostgreSQL 15: a role's SELECT and COPY on the
watched table come out as that role's statements with their rows, a SECURITY DEFINER function's
read among the others, a superuser's `SET pgaudit.log = 'none'` and a reset of the statistics as
tampering by whoever did them; a missing extension or privilege is a health error with the fix;
a restarted server is down, then back with nothing counted twice; a statement longer than the
texts read is still on its table, and what goes out of it is short; and a poll over 10,000
statements stays fast."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import pytest

from collectors.pgstat import DatabaseLink
from collectors.pgstatements import CREATE_FIX, PRELOAD_FIX, StatementsSource, compare
from collectors.relations import PARSE_CHARS, SHOWN_CHARS
from core.dbside import Observations, StatementReads
from core.findings import Severity
from core.tables import TableName
from tablewatch.pgcluster import PgCluster

MONITOR = "tw_statements"
PRELOADED = {"shared_preload_libraries": "pgaudit,pg_stat_statements"}
SETUP = f"""
CREATE SCHEMA crm;
CREATE TABLE crm.clients AS SELECT g AS id, 'client ' || g AS name FROM generate_series(1, 5000) g;
CREATE ROLE {MONITOR} LOGIN;
GRANT pg_monitor TO {MONITOR};
CREATE ROLE analyst LOGIN;
GRANT USAGE ON SCHEMA crm TO analyst;
GRANT SELECT ON crm.clients TO analyst;
CREATE ROLE intern LOGIN;  -- no privilege on the table: only through the function
CREATE FUNCTION public.all_clients() RETURNS SETOF crm.clients
    LANGUAGE sql STABLE SECURITY DEFINER AS 'SELECT * FROM crm.clients';
GRANT EXECUTE ON FUNCTION public.all_clients() TO intern;
"""
TABLES = [TableName.parse("crm.clients")]


def _source(pg: PgCluster, role: str = MONITOR) -> StatementsSource:
    return StatementsSource(DatabaseLink(pg.dsn(role)), TABLES, interval=0.2)


def _by(found: Observations, user: str, needle: str) -> list[StatementReads]:
    return [s for s in found.statements if s.user == user and needle in s.query]


async def _recover(source: StatementsSource, seconds: float = 20.0) -> Observations:
    """Poll until the source's link is back."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await source.poll()
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


async def test_statements_by_role_with_rows_and_tampering(
    pg_factory: Callable[[dict[str, str]], PgCluster],
) -> None:
    pg = pg_factory(PRELOADED)
    pg.psql(SETUP)
    source = _source(pg)
    assert source.health().state == "waiting"
    # loaded but not created in this database: the fix, no crash
    assert await source.poll() == Observations()
    health = source.health()
    assert health.state == "error" and health.detail.endswith(CREATE_FIX), health.detail

    pg.psql("CREATE EXTENSION pg_stat_statements")
    pg.psql("SELECT count(*) FROM crm.clients", user="analyst")  # before the baseline
    first = await source.poll()
    assert first.statements == () and first.tampered == ()  # a baseline
    assert first.taken_us > 0
    health = source.health()
    assert health.state == "ok" and health.detail.startswith("polled every 0.2 s, last in ")
    assert health.detail.endswith(" statements")

    pg.psql("SELECT * FROM crm.clients", user="analyst", app="report")
    pg.psql("COPY crm.clients TO STDOUT", user="analyst")
    pg.psql("SELECT * FROM all_clients()", user="intern")
    pg.psql("SELECT g FROM generate_series(1, 30) g", user="intern")
    found = await source.poll()
    (select,) = _by(found, "analyst", "SELECT * FROM crm.clients")
    assert (select.tables, select.calls, select.rows) == (("crm.clients",), 1, 5000)
    assert select.database == "postgres" and select.since_us < select.until_us
    (copy,) = _by(found, "analyst", "COPY crm.clients TO STDOUT")
    assert (copy.tables, copy.calls, copy.rows) == (("crm.clients",), 1, 5000)
    (through,) = _by(found, "intern", "all_clients()")
    assert (through.tables, through.calls, through.rows) == ((), 1, 5000)
    assert found.statements.index(through) > found.statements.index(copy)  # watched ones first
    assert not [s for s in found.statements if s.user == MONITOR]  # our own polls are not news
    assert found.tampered == ()

    again = await source.poll()  # nothing counted twice
    assert not _by(again, "analyst", "crm.clients") and not _by(again, "intern", "all_clients")

    pg.psql("SELECT * FROM crm.clients WHERE id <= 10", user="analyst")
    pg.psql("SELECT * FROM crm.clients WHERE id <= 20", user="analyst")  # the same statement
    (twice,) = _by(await source.poll(), "analyst", "WHERE id <= $1")
    assert (twice.calls, twice.rows) == (2, 30)

    # a superuser mutes pgaudit in its session: pgaudit says nothing, pg_stat_statements does
    pg.psql("SET pgaudit.log = 'none'; SELECT * FROM crm.clients")
    found = await source.poll()
    (muted,) = found.tampered
    assert muted.severity == Severity.CRITICAL and muted.user == "postgres"
    assert "SET pgaudit.log = 'none'" in muted.detail
    assert _by(found, "postgres", "SELECT * FROM crm.clients")[0].rows == 5000

    pg.psql("SELECT pg_stat_statements_reset()", app="cover-up")
    found = await source.poll()
    (reset,) = found.tampered  # the reset, and the call that did it folded into it
    assert reset.severity == Severity.CRITICAL and reset.user == "postgres"
    assert reset.detail.startswith("pg_stat_statements was reset at ")
    assert found.taken_us - 10_000_000 < reset.time_us <= found.taken_us
    pg.psql("SELECT * FROM crm.clients", user="analyst")  # counted from zero after the reset
    (after,) = _by(await source.poll(), "analyst", "SELECT * FROM crm.clients")
    assert (after.calls, after.rows) == (1, 5000)
    assert (await source.poll()).tampered == ()  # told once

    # a restart: down with the reason, then back, nothing counted twice (the counts survive)
    pg.psql("SELECT * FROM crm.clients", user="analyst")  # not polled before the restart
    pg.restart()
    with pytest.raises(ConnectionError):
        await source.poll()
    assert source.health().state == "error" and source.health().detail
    back = await _recover(source)
    (late,) = _by(back, "analyst", "SELECT * FROM crm.clients")
    assert (late.calls, late.rows) == (1, 5000)
    assert back.tampered == ()  # a clean restart keeps pg_stat_statements: no reset
    assert source.health().state == "ok"
    assert not _by(await source.poll(), "analyst", "crm.clients")
    await source.link.close()


async def test_missing_pieces_are_health_errors_with_the_fix(
    pg_cluster: PgCluster, pg_factory: Callable[[dict[str, str]], PgCluster]
) -> None:
    # the shared cluster preloads pgaudit only
    source = _source(pg_cluster, "postgres")
    assert await source.poll() == Observations()
    health = source.health()
    assert health.state == "error"
    assert PRELOAD_FIX in health.detail and CREATE_FIX in health.detail, health.detail
    await source.link.close()

    pg = pg_factory({**PRELOADED, "pg_stat_statements.max": "100"})  # the smallest
    pg.psql("CREATE EXTENSION pg_stat_statements; CREATE ROLE nobody LOGIN")
    source = _source(pg, "postgres")
    await source.poll()
    pg.psql("".join(f"SET application_name = 'app {i}';\n" for i in range(300)))
    await source.poll()
    health = source.health()
    assert health.state == "ok"
    (full,) = health.notes
    assert full.startswith("pg_stat_statements was full ") and "(now 100)" in full, full
    await source.link.close()

    source = _source(pg, "nobody")
    await source.poll()
    await source.poll()
    health = source.health()
    assert health.state == "error" and health.detail.endswith("GRANT pg_monitor TO nobody;")
    await source.link.close()


async def test_a_poll_over_10000_statements_is_fast(
    pg_factory: Callable[[dict[str, str]], PgCluster],
) -> None:
    pg = pg_factory({**PRELOADED, "pg_stat_statements.max": "12000"})
    pg.psql(f"CREATE EXTENSION pg_stat_statements; CREATE ROLE {MONITOR} LOGIN")
    pg.psql(f"GRANT pg_monitor TO {MONITOR}")
    # utility statements are told apart by their text in PostgreSQL 15: 10,000 entries
    pg.psql("".join(f"SET application_name = 'app {i}';\n" for i in range(10_000)))
    source = _source(pg)
    await source.poll()
    await source.poll()  # learns the texts of its own first statements
    seconds = []
    for _ in range(5):
        await source.poll()
        seconds.append(source.last_poll_seconds)
    assert source.entries >= 10_000
    # about 25 ms here; the bound leaves room for a loaded machine
    print(f"poll over {source.entries:,} statements: {statistics.median(seconds) * 1000:.0f} ms")
    assert statistics.median(seconds) < 0.1, seconds
    pg.psql("".join(f"SET application_name = 'new {i}';\n" for i in range(100)))
    found = await source.poll()  # 100 new texts, none on a watched table
    assert found.statements == () and source.entries >= 10_100
    await source.link.close()


async def test_a_long_statement_is_attributed_and_handed_out_short(
    pg_factory: Callable[[dict[str, str]], PgCluster],
) -> None:
    pg = pg_factory(PRELOADED)
    pg.psql(SETUP + "CREATE EXTENSION pg_stat_statements;")
    source = _source(pg)
    await source.poll()
    # normalized ($1, ..., $12000): some 83 KB, kept by pg_stat_statements, cut by our SQL
    longer = f"SELECT * FROM crm.clients WHERE id IN ({', '.join(map(str, range(1, 12_001)))})"
    # some 7 KB: parsed whole, handed out cut
    middling = f"SELECT id FROM crm.clients WHERE id IN ({', '.join(map(str, range(1, 1_001)))})"
    pg.psql(f"{longer};\n{middling};", user="analyst")
    found = await source.poll()
    (whole,) = _by(found, "analyst", "SELECT * FROM crm.clients WHERE id IN ($1, $2, $3")
    assert (whole.tables, whole.calls, whole.rows) == (("crm.clients",), 1, 5000)
    (parsed,) = _by(found, "analyst", "SELECT id FROM crm.clients WHERE id IN ($1, $2, $3")
    assert (parsed.tables, parsed.calls, parsed.rows) == (("crm.clients",), 1, 1000)
    for reads in (whole, parsed):
        assert len(reads.query) == SHOWN_CHARS and reads.query.endswith("…")
    # what is kept is bounded too: once judged, only the part shown
    assert len(source._texts[whole.queryid]) == SHOWN_CHARS
    assert max(len(t) for t in source._texts.values()) <= PARSE_CHARS
    await source.link.close()


def test_compare_counts_a_new_or_reset_entry_from_zero() -> None:
    """Without a server: the deltas between two polls' arrays."""

    def arrays(*entries: tuple[int, int | None, int, int]) -> dict[str, list[object]]:
        return {
            "userids": [10 for _ in entries],
            "queryids": [e[1] for e in entries],
            "toplevels": [True for _ in entries],
            "calls": [e[2] for e in entries],
            "rows": [e[3] for e in entries],
        }

    last, grown, hidden = compare(arrays((10, 1, 5, 50), (10, 2, 3, 30), (10, 3, 1, 1)), {})
    assert len(last) == 3 and hidden == 0
    assert sorted((g.key[1], g.calls, g.rows) for g in grown) == [(1, 5, 50), (2, 3, 30), (3, 1, 1)]
    now = arrays((10, 1, 7, 70), (10, 2, 1, 10), (10, 3, 1, 1), (10, 4, 2, 0), (10, None, 9, 9))
    counts, grown, hidden = compare(now, last)
    assert hidden == 1 and len(counts) == 4
    assert sorted((g.key[1], g.calls, g.rows) for g in grown) == [
        (1, 2, 20),  # grew
        (2, 1, 10),  # went down: reset, counted from zero
        (4, 2, 0),  # new
    ]
    # the same entries in the same order (the usual poll): compared in place, same answers
    again = arrays((10, 1, 9, 90), (10, 2, 0, 0), (10, 3, 1, 1), (10, 4, 2, 0), (10, None, 12, 9))
    counts, grown, hidden = compare(again, counts)
    assert hidden == 1 and len(counts) == 4
    assert sorted((g.key[1], g.calls, g.rows) for g in grown) == [(1, 2, 20)]
    reset = arrays((10, 1, 1, 5), (10, 2, 0, 0), (10, 3, 1, 1), (10, 4, 3, 7), (10, None, 13, 9))
    counts, grown, hidden = compare(reset, counts)
    assert sorted((g.key[1], g.calls, g.rows) for g in grown) == [(1, 1, 5), (4, 1, 7)]
