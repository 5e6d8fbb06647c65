"""The pg_stat_activity source against a real PostgreSQL 15: a long COPY out and a cursor read
(its FETCH phase too, which names no table) show up as backends on the watched table while they
run, with who, from where and how, and are gone when they end; a session whose last query muted
pgaudit is tampering, told once, with its client's address and application; a query longer than
the parse reads is read as far as it goes, once, and handed out short."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from collectors import activity
from collectors.activity import CACHE_TEXT, ActivitySource, read_text
from collectors.pgstat import DatabaseLink
from collectors.relations import PARSE_CHARS, SHOWN_CHARS, WatchedRelations
from core.dbside import Backend, Observations
from core.findings import Severity
from core.tables import TableName
from tablewatch.pgcluster import PgCluster

MONITOR = "tw_activity"
SETUP = f"""
CREATE SCHEMA crm;
CREATE TABLE crm.clients AS SELECT g AS id, 'client ' || g AS name FROM generate_series(1, 5000) g;
CREATE ROLE {MONITOR} LOGIN;
GRANT pg_monitor TO {MONITOR};
CREATE ROLE nobody LOGIN;
CREATE ROLE exporter LOGIN;
CREATE ROLE analyst LOGIN;
GRANT USAGE ON SCHEMA crm TO exporter, analyst;
GRANT SELECT ON crm.clients TO exporter, analyst;
"""
SLOW_COPY = "COPY (SELECT *, pg_sleep(0.001) FROM crm.clients WHERE id <= 2500) TO STDOUT"


@pytest.fixture
def pg(pg_factory: Callable[[dict[str, str]], PgCluster]) -> PgCluster:
    cluster = pg_factory({"pgaudit.log_rows": "on"})  # COPY TO and cursors not audited at all
    cluster.psql(SETUP)
    return cluster


def _source(pg: PgCluster, role: str = MONITOR) -> ActivitySource:
    return ActivitySource(DatabaseLink(pg.dsn(role)), [TableName.parse("crm.clients")], 0.2)


async def _until(
    source: ActivitySource, check: Callable[[Observations], bool], seconds: float = 10.0
) -> Observations:
    """Poll until `check` holds (the last observations either way)."""
    deadline = time.monotonic() + seconds
    while True:
        found = await source.poll()
        if check(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


def _of(found: Observations, user: str) -> list[Backend]:
    assert found.backends is not None  # this source always looks
    return [b for b in found.backends if b.user == user]


async def _psql(pg: PgCluster, sql: str, user: str, app: str) -> asyncio.subprocess.Process:
    """psql over TCP in the background, its output thrown away."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env |= {"PGAPPNAME": app, "PGCONNECT_TIMEOUT": "10"}
    return await asyncio.create_subprocess_exec(
        str(pg.bin_dir / "psql"),
        *("-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.host, "-p", str(pg.port)),
        *("-U", user, "-d", "postgres", "-c", sql),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
    )


async def test_a_long_copy_out_is_a_backend_while_it_runs(pg: PgCluster) -> None:
    source = _source(pg)
    assert source.health().state == "waiting"
    quiet = await source.poll()
    assert quiet.backends == () and quiet.tampered == ()
    assert source.health().detail.endswith("0 backends on watched tables")

    export = await _psql(pg, SLOW_COPY, "exporter", "nightly-export")
    found = await _until(source, lambda o: bool(_of(o, "exporter")))
    (copy,) = _of(found, "exporter")
    assert (copy.kind, copy.tables, copy.state) == ("copy", ("crm.clients",), "active")
    assert (copy.client_addr, copy.application_name) == ("127.0.0.1", "nightly-export")
    assert copy.query == SLOW_COPY and copy.database == "postgres"
    assert copy.backend_start_us <= (copy.query_start_us or 0) <= found.taken_us
    assert source.health().detail.endswith("1 backend on watched tables")
    assert not [b for b in found.backends or () if b.user == MONITOR]  # never ourselves

    assert await asyncio.wait_for(export.wait(), 15) == 0
    gone = await _until(source, lambda o: not _of(o, "exporter"))
    assert _of(gone, "exporter") == []
    await source.link.close()


async def test_a_cursor_read_stays_a_cursor_through_its_fetches(pg: PgCluster) -> None:
    source = _source(pg)
    # over the Unix socket: no client address
    conn = await asyncpg.connect(
        host=str(pg.socket_dir),
        port=pg.port,
        user="analyst",
        database="postgres",
        server_settings={"application_name": "notebook"},
    )
    try:
        await conn.execute("SELECT * FROM crm.clients WHERE id = 1")
        assert _of(await source.poll(), "analyst") == []  # idle: done reading
        await conn.execute("BEGIN")
        await conn.execute("DECLARE c CURSOR FOR SELECT * FROM crm.clients")
        (declared,) = _of(await source.poll(), "analyst")
        assert (declared.kind, declared.tables) == ("cursor", ("crm.clients",))
        assert (declared.client_addr, declared.application_name) == ("", "notebook")
        assert declared.state == "idle in transaction" and declared.xact_start_us is not None
        for _ in range(3):  # FETCH names no table: the cursor seen declared does
            rows = await conn.fetch("FETCH 100 FROM c")
            assert len(rows) == 100
            (fetching,) = _of(await source.poll(), "analyst")
            assert (fetching.kind, fetching.tables) == ("cursor", ("crm.clients",))
            assert fetching.query == "FETCH 100 FROM c"
            assert fetching.xact_start_us == declared.xact_start_us
            await asyncio.sleep(0.1)
        await conn.execute("SELECT 1")  # still in the transaction that holds the cursor
        (holding,) = _of(await source.poll(), "analyst")
        assert (holding.kind, holding.query) == ("cursor", "SELECT 1")
        await conn.execute("COMMIT")
        assert _of(await source.poll(), "analyst") == []
        # a new transaction: the old cursor is forgotten, a FETCH of a new one is not ours
        await conn.execute("BEGIN; DECLARE d CURSOR FOR SELECT 1")
        await conn.fetch("FETCH 1 FROM d")
        assert _of(await source.poll(), "analyst") == []
        await conn.execute("ROLLBACK")
    finally:
        await conn.close()
    assert _of(await source.poll(), "analyst") == []
    assert source._cursors == {}  # the backend is gone: nothing kept about it
    await source.link.close()


async def test_a_muted_session_is_tampering_told_once(pg: PgCluster) -> None:
    source = _source(pg)
    await source.poll()
    conn = await asyncpg.connect(
        pg.dsn("postgres"), server_settings={"application_name": "maintenance"}
    )
    try:
        await conn.execute("SET pgaudit.log = 'none'")  # left as the session's last query
        found = await _until(source, lambda o: bool(o.tampered))
        (muted,) = found.tampered
        assert muted.severity == Severity.CRITICAL and muted.user == "postgres"
        assert (muted.client_addr, muted.application_name) == ("127.0.0.1", "maintenance")
        assert "SET pgaudit.log = 'none'" in muted.detail
        assert found.backends == ()  # it reads nothing
        assert (await source.poll()).tampered == ()  # the same query: not again
        await conn.execute("SELECT 1")
        await conn.execute("SET pgaudit.log = 'none'")  # a new query: told again
        assert len((await _until(source, lambda o: bool(o.tampered))).tampered) == 1
        await conn.execute("SET application_name = 'pgaudit.log'")
        assert (await source.poll()).tampered == ()
    finally:
        await conn.close()
    await source.link.close()


async def test_observations_come_every_interval_and_a_missing_privilege_is_said(
    pg: PgCluster,
) -> None:
    source = _source(pg)
    started = time.monotonic()
    seen = []
    async with aclosing(source.observations()) as polls:
        async for found in polls:
            seen.append(found)
            if len(seen) == 3:
                break
    assert all(o.backends == () for o in seen)
    assert time.monotonic() - started >= 0.4  # 0.2 s apart
    assert source.link._conn is None  # closed with the generator

    source = _source(pg, "nobody")
    found = await source.poll()
    assert found.backends == ()
    health = source.health()
    assert health.state == "error" and health.detail.endswith("GRANT pg_monitor TO nobody;")
    await source.link.close()


class _Replay:
    """A DatabaseLink stand-in that answers each poll with the next list of rows."""

    def __init__(self, *polls: list[dict[str, object]]) -> None:
        self.polls = list(polls)
        self.problem = ""

    async def fetch(self, sql: str, *args: object) -> list[dict[str, object]]:
        return self.polls.pop(0)

    async def close(self) -> None:
        pass


def _row(pid: int, query: str, state: str = "active", xact: int | None = 100) -> dict[str, object]:
    def at(seconds: int | None) -> datetime | None:
        return None if seconds is None else datetime.fromtimestamp(seconds, UTC)

    return {
        "read_all_stats": True,
        "login": MONITOR,
        "database": "postgres",
        "query_size": 1024,
        "taken_at": at(1000),
        "pid": pid,
        "usename": "analyst",
        "client_addr": None,
        "application_name": "psql",
        "state": state,
        "backend_start": at(10),
        "xact_start": at(xact),
        "query_start": at(900),
        "query": query,
    }


async def test_cursors_with_hold_outlive_their_transaction_and_close_ends_them() -> None:
    """Without a server: what is remembered about cursors, and forgotten."""
    declare = "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM crm.clients"
    link = _Replay(
        [_row(7, declare, "idle in transaction")],
        [_row(7, "FETCH 10 FROM c", xact=200)],  # another transaction: a held cursor
        [_row(7, "FETCH 10 FROM other", xact=300)],
        [_row(7, "CLOSE c", xact=400)],
        [_row(7, "FETCH 10 FROM c", xact=500)],
        [_row(7, "DECLARE d CURSOR FOR SELECT * FROM crm.clients", "idle in transaction")],
        [_row(7, "CLOSE ALL", "idle in transaction")],
        [_row(8, "SELECT 1")],  # 7 is gone
    )
    source = ActivitySource(link, [TableName.parse("crm.clients")])  # type: ignore[arg-type]
    kinds = []
    for _ in range(7):
        found = await source.poll()
        kinds.append([(b.kind, b.tables) for b in found.backends or ()])
    on = ("crm.clients",)
    assert kinds == [
        [("cursor", on)],
        [("cursor", on)],
        [],  # not that cursor
        [],
        [],  # closed
        [("cursor", on)],
        [],
    ]
    await source.poll()
    assert source._cursors == {} and source._told == {}


LONG_IN = ", ".join(str(i) for i in range(1, 20_000))
"""A list that makes a query of some 110 KB: longer than PARSE_CHARS."""


async def test_a_long_query_is_read_cut_and_handed_out_short(
    pg_factory: Callable[[dict[str, str]], PgCluster],
) -> None:
    # the server keeps queries of up to 1MB (the default cuts them at 1kB)
    pg = pg_factory({"track_activity_query_size": "1MB"})
    pg.psql(SETUP)
    source = _source(pg)
    declare = f"DECLARE c CURSOR FOR SELECT * FROM crm.clients WHERE id IN ({LONG_IN})"
    assert len(declare) > PARSE_CHARS
    conn = await asyncpg.connect(pg.dsn("analyst"))
    try:
        await conn.execute("BEGIN")
        await conn.execute(declare)  # the cursor named early, the query cut by our SQL
        (reading,) = _of(await source.poll(), "analyst")
        assert (reading.kind, reading.tables) == ("cursor", ("crm.clients",))
        assert len(reading.query) == SHOWN_CHARS and reading.query.endswith("…")
        assert declare.startswith(reading.query[:-1])
        assert source.cut_texts == 0  # within track_activity_query_size: read as far as it goes
        await conn.execute("ROLLBACK")
    finally:
        await conn.close()
    await source.link.close()


async def test_each_text_is_read_once_however_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a server: a long text seen poll after poll is parsed once, and kept small."""
    read: list[int] = []

    def counted(text: str, watched: WatchedRelations, audit_role: str) -> Any:
        read.append(len(text))
        return read_text(text, watched, audit_role)

    monkeypatch.setattr(activity, "read_text", counted)
    long = f"SELECT * FROM crm.clients WHERE id IN ({LONG_IN})"[:PARSE_CHARS]
    middling = f"SELECT * FROM crm.clients WHERE id IN ({', '.join(map(str, range(3_000)))})"
    assert CACHE_TEXT < len(middling) < PARSE_CHARS
    link = _Replay(*[[_row(7, long), _row(8, middling)] for _ in range(3)])
    source = ActivitySource(link, [TableName.parse("crm.clients")])  # type: ignore[arg-type]
    for _ in range(3):
        found = await source.poll()
        assert [(b.kind, b.tables) for b in found.backends or ()] == [
            ("select", ("crm.clients",)),
            ("select", ("crm.clients",)),
        ]
        assert all(len(b.query) <= SHOWN_CHARS for b in found.backends or ())
    assert read == [len(long), len(middling)]
    assert all(isinstance(k, bytes) and len(k) == 16 for k in source._readings)
