"""The known ways to blind pgaudit, each tried on a real PostgreSQL 15 + pgaudit with
`pgaudit.log_rows = on` while tablewatch watches: the audit log tailed live and the database's own
statistics polled (pg_stat_all_tables, pg_stat_statements, pg_stat_activity, the audit set-up).
Each must end in an audit_gap or audit_tamper finding; the time each took is printed (run with
`-s` to read it).

The story, in order: a COPY TO STDOUT (which log_rows keeps out of the audit log) is an audit gap
named after the role that ran it within two polls of the statistics; a cursor read is seen live
while it runs and is a gap at its end; a SECURITY DEFINER function reading the table is a gap laid
at its caller; a REVOKE from the audit role is tampering, and the read after it a gap; a
superuser's `SET pgaudit.log = 'none'` and `SET log_min_messages = fatal` (no audit line) and an
`ALTER ROLE ... SET pgaudit.log` are tampering, as are pg_stat_statements_reset() and a server
restart, after which every source is back with nothing counted twice. The application's own
audited reads, and an hourly aggregate scanning the whole table, never make a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from collectors.events import EventBuilder
from collectors.pgstat import TableStatsSource
from collectors.tail import LogTail
from core.engine import Engine, EngineConfig
from core.findings import Code, Finding, Severity
from core.settings import load_settings
from core.snapshot import ReaderView
from core.tables import WatchedTables
from tablewatch.dbsources import database_feeds
from tablewatch.live import LiveEngine
from tablewatch.pgcluster import PgCluster

pytestmark = pytest.mark.postgres

TABLE = "crm.clients"
ROWS = 5000
MONITOR = "tw_monitor"
SETUP = f"""
CREATE EXTENSION pg_stat_statements;
CREATE SCHEMA crm;
CREATE TABLE crm.clients (id int PRIMARY KEY, name text, email text);
INSERT INTO crm.clients SELECT g, 'client ' || g, 'c' || g || '@example.com'
  FROM generate_series(1, {ROWS}) g;
ANALYZE crm.clients;
GRANT SELECT ON crm.clients TO auditor;
CREATE ROLE app LOGIN;
CREATE ROLE copier LOGIN;
CREATE ROLE browser LOGIN;
CREATE ROLE caller LOGIN;
CREATE ROLE reader LOGIN;
CREATE ROLE boss LOGIN SUPERUSER;
CREATE ROLE {MONITOR} LOGIN;
GRANT pg_monitor TO {MONITOR};
GRANT USAGE ON SCHEMA crm TO app, copier, browser, reader;
GRANT SELECT ON crm.clients TO app, copier, browser, reader;
CREATE FUNCTION public.export_clients() RETURNS SETOF crm.clients
  LANGUAGE sql SECURITY DEFINER AS 'SELECT * FROM crm.clients';
REVOKE EXECUTE ON FUNCTION public.export_clients() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.export_clients() TO caller;
-- the DBA's own role changes and settings are in the audit log
ALTER ROLE postgres SET pgaudit.log = 'role, ddl, misc, misc_set';
"""
Seen = Finding | ReaderView
"""What a scenario is detected by: a finding, or the reason a reader holds now."""
INTERVALS = {"poll": 1.0, "statements": 0.5, "activity": 0.25, "setup": 0.5}


def _settings(tmp: Path, pg: PgCluster, audit_log: bool = True) -> Path:
    path = tmp / "settings.toml"
    path.write_text(
        f"""
[[tables]]
name = "{TABLE}"

[detection]
learning_period = "0s"
quiet_period = "2s"
audit_role = "auditor"

[database]
dsn = "{pg.dsn(MONITOR)}"
poll_interval = "{INTERVALS["poll"]}s"
statements_interval = "{INTERVALS["statements"]}s"
activity_interval = "{INTERVALS["activity"]}s"
setup_interval = "{INTERVALS["setup"]}s"

[audit_log]
path = "{pg.log_path("csvlog") if audit_log else ""}"
format = "csvlog"
start = "beginning"
poll_interval = "100ms"

[state]
dir = "{tmp / "state"}"
"""
    )
    return path


class Watch:
    """tablewatch's live engine over the cluster: the audit log and the database sources."""

    def __init__(self, pg: PgCluster, tmp: Path, audit_log: bool = True) -> None:
        settings = load_settings(_settings(tmp, pg, audit_log), search=False)
        tables = settings.watched_tables()
        self.pg = pg
        self.engine = Engine(EngineConfig.from_settings(settings, tables))
        self.live = LiveEngine(self.engine, None)
        if audit_log:
            self.live.attach(
                LogTail(
                    settings.audit_log.path,
                    EventBuilder(WatchedTables(tables), control=True),
                    fmt="csvlog",
                    start="beginning",
                    poll_interval=0.1,
                )
            )
        feeds = database_feeds(settings, tables)
        for source, make in feeds.sources:
            self.live.attach(source, make=make)
        self.stats = next(s for s, _ in feeds.sources if isinstance(s, TableStatsSource))
        self.times: dict[str, float] = {}

    async def run(self, sql: str, *, user: str = "postgres", app: str = "psql") -> None:
        await asyncio.to_thread(self.pg.psql, sql, user=user, app=app)

    def findings(self, since_us: int) -> list[Finding]:
        return [f for f in self.engine.snapshot().findings if f.time_us >= since_us - 1_000_000]

    async def detected(
        self,
        scenario: str,
        started: float,
        since_us: int,
        match: Callable[[Seen], bool],
        seconds: float = 30.0,
    ) -> Seen:
        """Wait for a finding, or a reader's reason (a reader already critical raises no new
        finding, its reason is updated), that matches; the time to detect is kept."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readers = [v for v in self.engine.snapshot().readers if v.last_seen_us >= since_us]
            for found in [*self.findings(since_us), *readers]:
                if match(found):
                    self.times[scenario] = time.monotonic() - started
                    return found
            await asyncio.sleep(0.05)
        health = "; ".join(f"{h.name}: {h.state} {h.detail}" for h in self.live.source_health())
        seen = [
            (f.principal.user, f.severity.label, [r.detail for r in f.reasons])
            for f in [*self.findings(since_us), *self.engine.snapshot().readers]
        ]
        raise AssertionError(
            f"{scenario}: nothing detected in {seconds:.0f} s; findings: {seen}; sources: {health}"
        )


def _reason(finding: Seen, code: str) -> str | None:
    return next((r.detail for r in finding.reasons if r.code == code), None)


def _gap_by(user: str) -> Callable[[Seen], bool]:
    return lambda f: f.principal.user == user and _reason(f, Code.AUDIT_GAP) is not None


def _tamper(*words: str) -> Callable[[Seen], bool]:
    return lambda f: all(w in (_reason(f, Code.AUDIT_TAMPER) or "") for w in words)


def _now_us() -> int:
    return time.time_ns() // 1000


@contextlib.asynccontextmanager
async def watching(pg: PgCluster, tmp: Path, audit_log: bool = True) -> AsyncIterator[Watch]:
    watch = Watch(pg, tmp, audit_log)
    task = asyncio.create_task(watch.live.run())
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = {h.name: h.state for h in watch.live.source_health()}
            if set(states.values()) == {"ok"} and watch.stats.polls >= 2:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"sources not ready: {watch.live.source_health()}")
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_each_way_to_blind_pgaudit_is_detected(
    pg_factory: Callable[[dict[str, str]], PgCluster], tmp_path: Path
) -> None:
    pg = pg_factory(
        {
            "shared_preload_libraries": "pgaudit,pg_stat_statements",
            "pgaudit.log_rows": "on",
            "track_activity_query_size": "4096",
        }
    )
    pg.psql(SETUP)
    async with watching(pg, tmp_path) as w:
        # the ordinary traffic first: audited lookups and an aggregate that scans the whole table
        ordinary = _now_us()
        await w.run(
            "SELECT name FROM crm.clients WHERE id = 7;"
            "SELECT name FROM crm.clients WHERE id = 8;"
            "SELECT count(*), max(email) FROM crm.clients;",
            user="app",
            app="crm-web",
        )

        # COPY TO STDOUT: not in the audit log at all with log_rows = on
        since = _now_us()
        started = time.monotonic()
        await w.run(f"COPY {TABLE} TO STDOUT", user="copier", app="exporter")
        polls_before = w.stats.polls
        gap = await w.detected("COPY TO STDOUT", started, since, _gap_by("copier"))
        assert gap.severity is Severity.CRITICAL
        assert w.stats.polls - polls_before <= 3, "named after more than two polls"
        detail = _reason(gap, Code.AUDIT_GAP) or ""
        assert "5,000 read unaudited" in detail, detail
        assert "copier" in detail and "COPY" in detail, detail
        # (a COPY over in milliseconds is rarely caught by pg_stat_activity: no client address)
        # ...and no gap from the application's own reads, the aggregate included
        assert not [f for f in w.findings(ordinary) if f.principal.user == "app" and
                    f.severity >= Severity.WARNING]  # fmt: skip

        # a cursor FETCH loop: seen live from pg_stat_activity while it runs, a gap at its end
        since = _now_us()
        started = time.monotonic()
        fetching = asyncio.create_task(
            w.run(  # the client takes its time between fetches (psql's \! sleep)
                "BEGIN;\nDECLARE c CURSOR FOR SELECT * FROM crm.clients;\n\\! sleep 1.5\n"
                "FETCH 1000 FROM c;\n\\! sleep 1.5\nFETCH 1000 FROM c;\nFETCH 3000 FROM c;\n"
                "\\! sleep 1\nCOMMIT;\n",
                user="browser",
                app="notebook",
            )
        )
        live_reader = None
        while not fetching.done() and live_reader is None:
            for view in (await w.live.snapshot()).readers:
                if view.principal.user == "browser" and view.backends:
                    live_reader = view
            await asyncio.sleep(0.05)
        assert live_reader is not None, "the cursor was never seen live"
        w.times["cursor seen live (pg_stat_activity)"] = time.monotonic() - started
        assert live_reader.backends[0].kind == "cursor"
        assert live_reader.principal.application_name == "notebook"
        await fetching
        await w.detected("cursor FETCH loop", started, since, _gap_by("browser"))

        # a SECURITY DEFINER wrapper: the read inside it is not audited
        since = _now_us()
        started = time.monotonic()
        await w.run("SELECT * FROM public.export_clients()", user="caller", app="report")
        await w.detected("SECURITY DEFINER wrapper", started, since, _gap_by("caller"))

        # REVOKE from the audit role: tampering, then the next read is a gap
        since = _now_us()
        started = time.monotonic()
        await w.run(f"REVOKE SELECT ON {TABLE} FROM auditor", app="dba-revoke")
        tampered = await w.detected("REVOKE from the audit role", started, since,
                                    _tamper("auditor"))  # fmt: skip
        assert tampered.severity is Severity.CRITICAL
        started = time.monotonic()
        await w.run(f"SELECT * FROM {TABLE}", user="reader", app="after-revoke")
        await w.detected("a read after the REVOKE", started, since, _gap_by("reader"))
        await w.run(f"GRANT SELECT ON {TABLE} TO auditor", app="dba-regrant")

        # a superuser mutes its own session: no audit line at all
        for scenario, statement, app in (
            ("SET pgaudit.log = 'none' (superuser)", "SET pgaudit.log = 'none'", "quiet"),
            ("SET log_min_messages = fatal", "SET log_min_messages = fatal", "quieter"),
        ):  # (another application each: one reader holds one reason of a kind at a time)
            since = _now_us()
            started = time.monotonic()
            await w.run(f"{statement}; SELECT pg_sleep(0.6); SELECT 1", user="boss", app=app)
            found = await w.detected(scenario, started, since, _tamper(statement.split()[1]))
            assert found.principal.user == "boss", found
            assert found.severity is Severity.CRITICAL

        since = _now_us()
        started = time.monotonic()
        await w.run("ALTER ROLE reader SET pgaudit.log = 'none'", user="boss", app="dba-role")
        await w.detected(
            "ALTER ROLE ... SET pgaudit.log", started, since, _tamper("reader", "pgaudit.log")
        )

        since = _now_us()
        started = time.monotonic()
        await w.run("SELECT pg_stat_statements_reset()", user="boss", app="dba-reset")
        await w.detected("pg_stat_statements_reset()", started, since,
                         _tamper("pg_stat_statements", "reset"))  # fmt: skip

        # a server restart: every source down, then back; nothing counted twice
        gaps_before = dict(w.engine.gap_tuples)
        since = _now_us()
        started = time.monotonic()
        await asyncio.to_thread(pg.restart)
        down = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = {h.name: h.state for h in w.live.source_health()}
            down = down or "error" in states.values()
            if down and set(states.values()) == {"ok"}:
                break
            await asyncio.sleep(0.1)
        assert down, "no source was ever shown down"
        assert set(states.values()) == {"ok"}, w.live.source_health()
        await w.detected("server restart", started, since, _tamper("restarted"))
        await w.run("SELECT name FROM crm.clients WHERE id = 9", user="app", app="crm-web")
        await asyncio.sleep(4 * INTERVALS["poll"])
        assert w.engine.gap_tuples == gaps_before, "the restart made a gap"

    report = "\n".join(f"  {name:<40} {seconds:6.2f} s" for name, seconds in w.times.items())
    print(f"\ntime to detect (polls: {INTERVALS}):\n{report}")
    assert len(w.times) == 11


async def test_without_pg_monitor_the_sources_say_what_to_grant(
    pg_factory: Callable[[dict[str, str]], PgCluster], tmp_path: Path
) -> None:
    pg = pg_factory({"shared_preload_libraries": "pgaudit,pg_stat_statements"})
    pg.psql(SETUP + f"REVOKE pg_monitor FROM {MONITOR};")
    watch = Watch(pg, tmp_path)
    task = asyncio.create_task(watch.live.run())
    try:
        await watch.run(f"SELECT * FROM {TABLE}", user="app", app="crm-web")
        deadline = time.monotonic() + 20
        said: dict[str, str] = {}
        while time.monotonic() < deadline:
            said = {
                h.name: f"{h.state}: {h.detail} {' '.join(h.notes)}"
                for h in watch.live.source_health()
            }
            if "pg_monitor" in said.get("pg_stat_statements", ""):
                break
            await asyncio.sleep(0.1)
        assert f"GRANT pg_monitor TO {MONITOR}" in said.get("pg_stat_statements", ""), said
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_without_an_audit_log_pg_stat_statements_tells_the_reads(
    pg_factory: Callable[[dict[str, str]], PgCluster], tmp_path: Path
) -> None:
    # a managed database that gives no log file: `[audit_log] path = ""`
    pg = pg_factory({"shared_preload_libraries": "pgaudit,pg_stat_statements"})
    pg.psql(SETUP)
    async with watching(pg, tmp_path, audit_log=False) as w:
        since = _now_us()
        started = time.monotonic()
        lookups = "".join(f"SELECT name FROM crm.clients WHERE id = {k};" for k in range(1, 31))
        await w.run(lookups, user="app", app="crm-web")
        await w.run(f"COPY {TABLE} TO STDOUT", user="copier", app="exporter")

        def bulk_by_copier(f: Seen) -> bool:
            return f.principal.user == "copier" and _reason(f, Code.BULK_READ) is not None

        found = await w.detected("COPY, from pg_stat_statements alone", started, since,
                                 bulk_by_copier)  # fmt: skip
        assert found.severity is Severity.CRITICAL
        assert found.principal.client_addr == ""  # pg_stat_statements knows the role alone
        views = {v.principal.user: v for v in (await w.live.snapshot()).readers}
        assert views["copier"].rows_hour == ROWS
        await asyncio.sleep(3 * INTERVALS["poll"])
        views = {v.principal.user: v for v in (await w.live.snapshot()).readers}
        assert views["app"].statements == 30 and views["app"].rows_hour == 30
        assert w.engine.gap_tuples == {TABLE: 0}  # nothing to judge the statistics against
        assert not [f for f in w.findings(since) if _reason(f, Code.AUDIT_GAP)]
