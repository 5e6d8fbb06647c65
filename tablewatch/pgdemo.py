"""`tablewatch demo --postgres`: real SQL traffic on a private, throwaway PostgreSQL 15 + pgaudit.

A cluster of our own (tablewatch.pgcluster) with object audit of `crm.client_list` through the
role `auditor`, `pgaudit.log_rows = on` and parameters logged, so the csvlog it writes is exactly
what a production server would write; pg_stat_statements is loaded too, and the monitoring role
`tablewatch` (pg_monitor, pg_signal_backend) lets the database sources poll the server's own
statistics (`settings()`, `dsn`) and the dashboard's `c` cancel a backend. Over asyncpg (extended
protocol, as real drivers speak), all from 127.0.0.1, so the principals differ by user and
application_name:

- crm_app / crm-api: key lookups by random id, a few per second;
- reporting / metabase: `SELECT city, count(*) ... GROUP BY city` now and then;
- analyst / psql: small filtered reads with LIMIT;
- backup / pg_dump: one whole-table read early on (the declared, expected nightly backup; real
  pg_dump's COPY is not audited at all when log_rows is on, see DESIGN.md);
- the exfiltration, as crm_app from a desktop client (DBeaver 23.1): consecutive ids enumerated
  from ENUMERATE_AT, LIMIT/OFFSET pages from WALK_AT, `SELECT *` of the whole table at DUMP_AT
  (seconds after `traffic()` starts, divided by `speed`). The dump pages: critical, bulk_read;
- a slow bulk export the audit log never sees, as bi_export with DataGrip 2024.1, on the
  database host itself (the Unix socket: client `[local]`): at COPY_AT, `COPY crm.client_list
  TO STDOUT` as CSV, read by a client that takes EXPORT_SECONDS over it. With
  `pgaudit.log_rows = on` no audit record is written for a COPY of a table (the query form,
  `COPY (SELECT ...) TO`, runs through the executor and is audited: no gap). pg_stat_activity
  shows it while it runs (a live `copy` reader, ▶, which `c` can cancel), and once it ends the
  database's own statistics (pg_stat_statements: bi_export's rows on the table, none of them
  audited) make it an `audit_gap` (critical) laid at bi_export. A cancel or a terminate from
  the dashboard ends the export only; the other actors go on.

  Why the Unix socket: its buffers are fixed (some 200 kB), so the server is still sending,
  `active` in pg_stat_activity, until the slow client has nearly all of it, as over a slow
  network. Over loopback TCP the kernel buffers megabytes and the server would be done at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from core.settings import (
    DatabaseSettings,
    DetectionSettings,
    ExpectedPrincipal,
    Settings,
    WatchedTable,
)
from core.tables import TableName
from tablewatch.pgcluster import BIN_DIR, PgCluster, available, quote_literal

__all__ = [
    "ATTACKER_APP",
    "COPY_AT",
    "DUMP_AT",
    "ENUMERATE_AT",
    "EXPORT_APP",
    "EXPORT_SECONDS",
    "EXPORT_USER",
    "MONITOR",
    "POLL_SECONDS",
    "WALK_AT",
    "PgDemo",
    "PgDemoUnavailable",
]

ENUMERATE_AT = 8.0
"""Seconds (at speed 1) after `traffic()` starts when the attacker starts enumerating ids."""
WALK_AT = 17.0
"""... when it starts walking the table by LIMIT/OFFSET pages (warning: an enumeration)."""
DUMP_AT = 30.0
"""... when it reads the whole table in one statement (critical)."""
WALK_PAGES = 15
"""Pages of 1% of the table: a walk over 15% is a warning, below the walk's critical 30%."""
ATTACKER_APP = "DBeaver 23.1"
COPY_AT = 40.0
"""... when bi_export starts its slow COPY of the whole table (not audited: an audit gap)."""
EXPORT_SECONDS = 15.0
"""How long the export takes (at speed 1): long enough to be seen live, and cancelled."""
ROW_BYTES = 98
"""About what a row of crm.client_list takes in the export (to pace its reader)."""
EXPORT_USER = "bi_export"
EXPORT_APP = "DataGrip 2024.1"
MONITOR = "tablewatch"
"""The monitoring role of the database sources: pg_monitor, and pg_signal_backend for `c`."""
POLL_SECONDS = {
    "poll_interval": 2.0,
    "statements_interval": 2.0,
    "activity_interval": 1.0,
    "setup_interval": 5.0,
}
"""The database sources' intervals at speed 1 (`[database]` keys): short, for a demo."""

DBNAME = "crm"
SETTINGS = {
    "shared_preload_libraries": "pgaudit,pg_stat_statements",
    "pgaudit.log_rows": "on",
    "pgaudit.log_parameter": "on",
}
CITIES = (
    "Amsterdam Berlin Boston Chicago Dublin Lisbon London Lyon Madrid Milan Montreal Oslo Paris "
    "Prague Seattle Sydney Tokyo Toronto Vienna Warsaw"
).split()
FIRST = "Ada Alan Anna Ben Carla David Elena Frank Grace Hugo Ines Jon Karen Leo Maria Nina".split()
LAST = "Smith Jones Garcia Muller Rossi Dubois Silva Novak Tanaka Brown Costa Weber Jensen".split()
SETUP = """
SELECT setseed({seed});
CREATE EXTENSION pg_stat_statements;
CREATE SCHEMA crm;
CREATE TABLE crm.client_list (
  id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, phone text NOT NULL,
  city text NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO crm.client_list
  SELECT g, f || ' ' || l, lower(f) || '.' || lower(l) || g || '@example.com', phone, city,
         created_at
  FROM (SELECT g, {first}[1 + floor(random() * {n_first})::int] AS f,
               {last}[1 + floor(random() * {n_last})::int] AS l,
               '+1-555-' || lpad(floor(random() * 10000000)::int::text, 7, '0') AS phone,
               {cities}[1 + floor(random() * {n_cities})::int] AS city,
               timestamptz '2019-01-01 00:00:00+00' + random() * interval '2000 days' AS created_at
        FROM generate_series(1, {rows}) g
        OFFSET 0) AS fake;  -- OFFSET 0: one random() per column, shared by name and email
ANALYZE crm.client_list;
GRANT SELECT ON crm.client_list TO auditor;
CREATE ROLE crm_app LOGIN;
CREATE ROLE reporting LOGIN;
CREATE ROLE analyst LOGIN;
CREATE ROLE backup LOGIN;
CREATE ROLE bi_export LOGIN;
GRANT USAGE ON SCHEMA crm TO crm_app, reporting, analyst, backup, bi_export;
GRANT SELECT ON crm.client_list TO crm_app, reporting, analyst, backup, bi_export;
CREATE ROLE tablewatch LOGIN;
GRANT pg_monitor, pg_signal_backend TO tablewatch;
"""
LOOKUP = "SELECT id, name, email, phone, city FROM crm.client_list WHERE id = $1"
REPORT = "SELECT city, count(*) FROM crm.client_list GROUP BY city"
FILTERED = (
    "SELECT id, name, email FROM crm.client_list WHERE city = $1 ORDER BY created_at DESC LIMIT 10"
)
WHOLE = "SELECT * FROM crm.client_list"
BY_ID = "SELECT * FROM crm.client_list WHERE id = $1"
PAGE = "SELECT * FROM crm.client_list ORDER BY id LIMIT $1 OFFSET $2"


class PgDemoUnavailable(Exception):
    """The demo cannot run here; the message is one line: what is missing and how to install it."""


class PgDemo:
    """A private PostgreSQL 15 + pgaudit cluster with crm.client_list and real SQL traffic.

    `start()` (or `with PgDemo() as demo:`) brings the cluster up and fills the table; run
    `traffic()` as a task and cancel it to stop; `stop()` removes the cluster and its logs.

    Args:
        rows: rows in crm.client_list (at least 1000).
        seed: makes the table's contents and the traffic's choices repeatable.
        speed: time runs this many times faster (the exfiltration's schedule and every pause).
        bin_dir: where the PostgreSQL 15 server programs are (Debian's by default).
    """

    def __init__(
        self, *, rows: int = 50_000, seed: int = 0, speed: float = 1.0, bin_dir: Path = BIN_DIR
    ) -> None:
        if rows < 1000:
            raise ValueError(f"rows must be at least 1000, got {rows}")
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.rows, self.seed, self.speed, self.bin_dir = rows, seed, speed, bin_dir
        self.table: TableName = TableName("crm", "client_list", rows)
        self.expected: tuple[ExpectedPrincipal, ...] = (
            ExpectedPrincipal(user="backup", application_name="pg_dump", note="nightly backup"),
        )
        self._running: tuple[PgCluster, Path] | None = None
        """The cluster and its csvlog, once started."""

    # lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the cluster and fill the table (a few seconds); nothing when already started.

        Raises:
            PgDemoUnavailable: PostgreSQL 15 or pgaudit is not installed (or cannot run here).
            RuntimeError: the server did not come up or the set-up failed (with the details).
        """
        if self._running is not None:
            return
        reason = available(self.bin_dir)
        if reason is not None:
            raise PgDemoUnavailable(reason)
        cluster = PgCluster(SETTINGS, bin_dir=self.bin_dir)
        cluster.start()
        try:
            cluster.psql(f"CREATE DATABASE {DBNAME}", app="tablewatch-demo")
            cluster.psql(self._setup_sql(), dbname=DBNAME, app="tablewatch-demo")
            self._running = (cluster, cluster.log_path("csvlog"))
        except BaseException:
            cluster.stop()
            raise

    def stop(self) -> None:
        """Stop the server and remove its directory (logs included); safe to call again."""
        running, self._running = self._running, None
        if running is not None:
            running[0].stop()

    def __enter__(self) -> PgDemo:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def csvlog(self) -> Path:
        """The cluster's csvlog file: the pgaudit trail to tail."""
        return self._started()[1]

    @property
    def dsn(self) -> str:
        """The monitoring role's DSN (MONITOR on the demo's database; no password: trust)."""
        return self.cluster.dsn(MONITOR, DBNAME)

    def settings(self) -> Settings:
        """Settings for the demo: its table and expected backup, habits learned for an hour (no
        one is first-seen), and `[database]` with the monitoring role's DSN and POLL_SECONDS
        divided by `speed` (for `EngineConfig.from_settings` and `database_feeds`).

        Built from these values only: neither a settings file nor TABLEWATCH_* variables reach
        the demo (its sections are validated models; nothing else is read).
        """
        intervals = {key: timedelta(seconds=s / self.speed) for key, s in POLL_SECONDS.items()}
        return Settings.model_construct(
            tables=[WatchedTable(name=str(self.table), rows=self.rows)],
            expected=list(self.expected),
            detection=DetectionSettings(learning_period=timedelta(hours=1)),
            database=DatabaseSettings(dsn=self.dsn, **intervals),
        )

    @property
    def cluster(self) -> PgCluster:
        """The running cluster (its port, `psql()`, `wait_for_log()`)."""
        return self._started()[0]

    def _started(self) -> tuple[PgCluster, Path]:
        if self._running is None:
            raise RuntimeError("PgDemo not started")
        return self._running

    def _setup_sql(self) -> str:
        def array(words: list[str]) -> str:
            return "(ARRAY[" + ", ".join(quote_literal(w) for w in words) + "])"

        return SETUP.format(
            seed=random.Random(self.seed).uniform(-1.0, 1.0),
            rows=self.rows,
            first=array(FIRST),
            n_first=len(FIRST),
            last=array(LAST),
            n_last=len(LAST),
            cities=array(CITIES),
            n_cities=len(CITIES),
        )

    # traffic --------------------------------------------------------------------------------------

    async def traffic(self) -> None:
        """Run the readers and the exfiltration until cancelled (connections closed on the way).

        Raises:
            RuntimeError: not started.
            asyncpg.PostgresError, OSError: the server went away (the first actor's error).
        """
        cluster = self.cluster
        loop = asyncio.get_running_loop()
        clock = _Clock(loop.time(), self.speed)
        actors = [
            self._app(cluster, random.Random(self.seed * 10 + 1), clock),
            self._reporting(cluster, random.Random(self.seed * 10 + 2), clock),
            self._analyst(cluster, random.Random(self.seed * 10 + 3), clock),
            self._backup(cluster, clock),
            self._attacker(cluster, random.Random(self.seed * 10 + 4), clock),
            self._exporter(cluster, clock),
        ]
        try:
            async with asyncio.TaskGroup() as group:
                for actor in actors:
                    group.create_task(actor)
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None

    async def _app(self, pg: PgCluster, rng: random.Random, clock: _Clock) -> None:
        async with _session(pg, "crm_app", "crm-api") as conn:
            while True:
                await conn.fetch(LOOKUP, rng.randint(1, self.rows))
                await clock.sleep(rng.uniform(0.15, 0.5))

    async def _reporting(self, pg: PgCluster, rng: random.Random, clock: _Clock) -> None:
        async with _session(pg, "reporting", "metabase") as conn:
            await clock.sleep(1.0)
            while True:
                await conn.fetch(REPORT)
                await clock.sleep(rng.uniform(8.0, 16.0))

    async def _analyst(self, pg: PgCluster, rng: random.Random, clock: _Clock) -> None:
        # 10 rows every ~14 s: a few % of the table an hour, far from any window signal
        async with _session(pg, "analyst", "psql") as conn:
            await clock.sleep(3.0)
            while True:
                await conn.fetch(FILTERED, rng.choice(CITIES))
                await clock.sleep(rng.uniform(8.0, 20.0))

    async def _backup(self, pg: PgCluster, clock: _Clock) -> None:
        await clock.until(2.0)
        async with _session(pg, "backup", "pg_dump") as conn:
            await conn.fetch(WHOLE)

    async def _attacker(self, pg: PgCluster, rng: random.Random, clock: _Clock) -> None:
        await clock.until(ENUMERATE_AT)
        async with _session(pg, "crm_app", ATTACKER_APP) as conn:
            # consecutive ids: at least a run the engine calls an enumeration (30), at most 1%
            count = min(500, max(40, self.rows // 100))
            first = rng.randint(1, self.rows - count)
            spacing = (WALK_AT - 1.0 - ENUMERATE_AT) / count
            for i in range(count):
                await clock.until(ENUMERATE_AT + i * spacing)
                await conn.fetch(BY_ID, first + i)
            page = self.rows // 100
            for i in range(WALK_PAGES):
                await clock.until(WALK_AT + i * 0.6)
                await conn.fetch(PAGE, page, i * page)
            await clock.until(DUMP_AT)
            await conn.fetch(WHOLE)

    async def _exporter(self, pg: PgCluster, clock: _Clock) -> None:
        await clock.until(COPY_AT)
        rate = self.rows * ROW_BYTES * self.speed / EXPORT_SECONDS

        async def slowly(chunk: bytes) -> None:  # asyncpg reads no more until this returns
            await asyncio.sleep(len(chunk) / rate)

        async with _session(pg, EXPORT_USER, EXPORT_APP, local=True) as conn:
            try:
                await conn.copy_from_table(
                    "client_list", schema_name="crm", output=slowly, format="csv", header=True
                )
            except (
                asyncpg.QueryCanceledError,  # `c` in the dashboard: pg_cancel_backend
                asyncpg.AdminShutdownError,  # `t`: pg_terminate_backend
                asyncpg.ConnectionDoesNotExistError,
            ):
                pass  # the export is over; the other actors go on


class _Clock:
    """The demo's time: seconds since the traffic started, `speed` times faster than real."""

    def __init__(self, start: float, speed: float) -> None:
        self.start, self.speed = start, speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)

    async def until(self, at: float) -> None:
        now = asyncio.get_running_loop().time()
        await asyncio.sleep(max(0.0, self.start + at / self.speed - now))


@contextlib.asynccontextmanager
async def _session(pg: PgCluster, user: str, app: str, local: bool = False) -> AsyncIterator[Any]:
    """An asyncpg connection as `user` with `app` as application_name, over TCP from 127.0.0.1
    (`local`: the Unix socket); closed on the way out, cancellation included (a connection left
    open would warn when collected)."""
    where = (
        {"host": str(pg.socket_dir), "port": pg.port, "user": user, "database": DBNAME}
        if local
        else {"dsn": pg.dsn(user, DBNAME)}
    )
    conn = await asyncpg.connect(**where, server_settings={"application_name": app})
    try:
        yield conn
    finally:
        try:
            await conn.close(timeout=5)
        except Exception:  # the connection is being dropped either way
            conn.terminate()
        except BaseException:
            conn.terminate()
            raise
