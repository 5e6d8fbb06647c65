"""`tablewatch demo --postgres` (tablewatch.pgdemo): real SQL on a private PostgreSQL + pgaudit,
whose audit trail the real engine turns into the escalation the demo promises; and the slow COPY
the audit log never sees, which the demo's database sources show live (a `copy` backend the
operator can cancel) and then as an audit gap laid at bi_export."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import pytest

from collectors.events import EventBuilder, ParseStats
from core.dbside import Backend
from core.engine import Engine, EngineConfig
from core.findings import Code, Finding, PrincipalKey, Severity
from core.tables import WatchedTables
from tablewatch.dashboard import demo_engine
from tablewatch.dbsources import database_feeds
from tablewatch.live import LiveEngine
from tablewatch.pgcluster import DEFAULT_SETTINGS
from tablewatch.pgdemo import (
    ATTACKER_APP,
    COPY_AT,
    EXPORT_APP,
    EXPORT_SECONDS,
    EXPORT_USER,
    WHOLE,
    PgDemo,
    PgDemoUnavailable,
)
from tablewatch.replay import feed
from tests.pgcluster import require_postgres

ROWS = 5000
SPEED = 4.0
TABLE = "crm.client_list"
ATTACKER = PrincipalKey("crm_app", "127.0.0.1", ATTACKER_APP, TABLE)
BACKUP = PrincipalKey("backup", "127.0.0.1", "pg_dump", TABLE)
REPORTING = PrincipalKey("reporting", "127.0.0.1", "metabase", TABLE)
EXPORTER = PrincipalKey(EXPORT_USER, "[local]", EXPORT_APP, TABLE)
EXPORT_ROWS = 20_000
"""Enough for the export to outlast the Unix socket's buffers most of its time at SPEED."""
DATABASE_SOURCES = {"pg_stat_user_tables", "pg_stat_statements", "pg_stat_activity", "audit_setup"}


@pytest.fixture
def demo() -> Iterator[PgDemo]:
    require_postgres()
    with PgDemo(rows=ROWS, seed=7, speed=SPEED) as started:
        yield started


def _dumped(csvlog: Path) -> bool:
    """The attacker's whole-table read is in the csvlog (with its row count)."""
    text = csvlog.read_text(encoding="utf-8", errors="replace")
    return any(
        len(row) > 22
        and row[22] == ATTACKER_APP
        and row[13].endswith(f",{TABLE},{WHOLE},<none>,{ROWS}")
        for row in csv.reader(io.StringIO(text, newline=""))
    )


@pytest.mark.postgres
async def test_the_exfiltration_pages_and_the_known_readers_do_not(demo: PgDemo) -> None:
    traffic = asyncio.create_task(demo.traffic())
    try:
        deadline = asyncio.get_running_loop().time() + 30 / SPEED + 30
        while not await asyncio.to_thread(_dumped, demo.csvlog):
            assert not traffic.done(), "the traffic stopped by itself"
            assert asyncio.get_running_loop().time() < deadline, "no whole-table read logged"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        assert not traffic.done(), "the normal readers go on after the exfiltration"
    finally:
        traffic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await traffic  # anything but the cancellation fails the test
    assert traffic.cancelled()

    config = EngineConfig(tables=(demo.table,), expected=demo.expected)
    engine = Engine(config)
    builder = EventBuilder(WatchedTables([demo.table]), ParseStats(), control=True)
    findings = feed(engine, demo.csvlog, "csvlog", builder, DEFAULT_SETTINGS["log_line_prefix"])

    attacker = [f for f in findings if f.principal == ATTACKER]
    # the enumeration first (a warning), then the whole table at once
    assert [f.severity for f in attacker] == [Severity.WARNING, Severity.CRITICAL], attacker
    assert attacker[0].reasons[0].code == Code.SEQUENTIAL_KEYS
    bulk = [r for r in attacker[-1].reasons if r.code == Code.BULK_READ]
    assert bulk and bulk[0].severity is Severity.CRITICAL
    assert f"{ROWS:,} rows (100% of the table), rows logged by pgaudit" in bulk[0].detail

    readers = {r.principal: r for r in engine.snapshot(limit=None).readers}
    assert readers[BACKUP].statements == 1 and readers[REPORTING].statements >= 1
    assert readers[BACKUP].expected == "nightly backup"
    for known in (BACKUP, REPORTING):
        assert readers[known].severity <= Severity.WARNING
        assert all(f.severity <= Severity.WARNING for f in findings if f.principal == known)
    assert {f.principal for f in findings if f.severity is Severity.CRITICAL} == {ATTACKER}


@contextlib.asynccontextmanager
async def _watching(
    demo: PgDemo, state: Path
) -> AsyncIterator[tuple[LiveEngine, asyncio.Task[None]]]:
    """The demo's own live engine (as the dashboard wires it: the csvlog and the four database
    sources, the demo's settings with their times divided by its speed) and its traffic, both
    running."""
    settings = demo.settings()
    config = EngineConfig.from_settings(settings)
    live = demo_engine(state, demo.csvlog, config, database_feeds(settings, config.tables))
    engine = asyncio.create_task(live.run())
    traffic = asyncio.create_task(demo.traffic())
    try:
        yield live, traffic
    finally:
        for task in (traffic, engine):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # anything but the cancellation fails the test


async def _exporting(live: LiveEngine, traffic: asyncio.Task[None], speed: float) -> Backend:
    """The export's backend, once the demo's live engine shows it reading the table."""
    deadline = time.monotonic() + COPY_AT / speed + 20
    while time.monotonic() < deadline:
        assert not traffic.done(), "the traffic stopped by itself"
        for view in (await live.snapshot()).readers:
            if view.principal == EXPORTER and view.backends:
                return view.backends[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the export was never seen live: {live.source_health()}")


def _health(live: LiveEngine) -> dict[str, str]:
    return {h.name: f"{h.state}: {h.detail}" for h in live.source_health()}


def _gaps(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if any(r.code == Code.AUDIT_GAP for r in f.reasons)]


async def _export_watched(
    demo: PgDemo, tmp_path: Path
) -> tuple[list[Finding], list[Finding], dict[str, str]]:
    """Run the demo until the export is an audit gap: every finding, the gaps, the health."""
    async with _watching(demo, tmp_path / "state") as (live, traffic):
        backend = await _exporting(live, traffic, SPEED)
        assert backend.kind == "copy", backend
        assert backend.state == "active", backend
        assert backend.query.startswith('COPY "crm"."client_list" TO STDOUT'), backend
        health = _health(live)
        assert {name for name, said in health.items() if said.startswith("ok")} == {
            "audit_log",
            *DATABASE_SOURCES,
        }, health
        # the set-up source says that log_rows keeps COPY out of the audit log
        assert "pgaudit.log_rows is on" in health["audit_setup"], health

        deadline = time.monotonic() + EXPORT_SECONDS / SPEED + 20
        gaps: list[Finding] = []
        while not gaps:
            assert time.monotonic() < deadline, f"no audit gap: {_health(live)}"
            assert not traffic.done(), "the traffic stopped by itself"
            gaps = _gaps(live.engine.snapshot(limit=None).findings)
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        assert not traffic.done(), "the normal readers go on after the export"
        return list(live.engine.snapshot(limit=None).findings), gaps, _health(live)


@pytest.mark.postgres
async def test_the_slow_export_is_seen_live_then_an_audit_gap(tmp_path: Path) -> None:
    require_postgres()
    with PgDemo(rows=EXPORT_ROWS, seed=7, speed=SPEED) as demo:
        findings, gaps, health = await _export_watched(demo, tmp_path)

    assert [f.principal for f in gaps] == [EXPORTER], gaps
    assert gaps[0].severity is Severity.CRITICAL
    detail = next(r.detail for r in gaps[0].reasons if r.code == Code.AUDIT_GAP)
    # the whole table, and who read it (by the table's statistics or the role's own)
    assert f"{EXPORT_ROWS:,} read unaudited" in detail and EXPORT_USER in detail, detail
    # nobody else's reads make a gap, and nothing is taken for tampering
    assert [f.principal for f in _gaps(findings)] == [EXPORTER], _gaps(findings)
    assert not [f for f in findings if any(r.code == Code.AUDIT_TAMPER for r in f.reasons)]
    assert all(health[name].startswith("ok") for name in DATABASE_SOURCES), health


@pytest.mark.postgres
@pytest.mark.parametrize("terminate", [False, True], ids=["cancel", "terminate"])
async def test_an_export_stopped_from_the_dashboard_leaves_the_traffic_running(
    terminate: bool, tmp_path: Path
) -> None:
    require_postgres()
    speed = 8.0  # only the start of the export matters here
    with PgDemo(rows=EXPORT_ROWS, seed=7, speed=speed) as demo:
        async with _watching(demo, tmp_path / "state") as (live, traffic):
            backend = await _exporting(live, traffic, speed)
            said = await live.signal_backend(EXPORTER, backend.pid, terminate, "tester")
            action = "terminated backend" if terminate else "cancelled the query of backend"
            assert said == f"{action} {backend.pid}"
            events = live.engine.events
            await asyncio.sleep(2.0)
            assert not traffic.done(), "the export's end stopped the traffic"
            assert live.engine.events > events, "the other readers went on"
            left = [v for v in (await live.snapshot()).readers if v.principal == EXPORTER]
            assert left and not left[0].backends, "the export is still running"


def test_missing_server_binaries_say_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    demo = PgDemo(bin_dir=bin_dir)
    with pytest.raises(PgDemoUnavailable) as raised:
        demo.start()
    message = str(raised.value)
    assert "\n" not in message
    assert f"PostgreSQL 15 server binaries not found in {bin_dir}" in message
    assert message.endswith("apt-get install postgresql-15 postgresql-15-pgaudit")
    with pytest.raises(RuntimeError, match="not started"):
        demo.csvlog  # noqa: B018 - nothing was started
    demo.stop()  # harmless


def test_missing_pgaudit_says_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "15" / "bin"
    bin_dir.mkdir(parents=True)
    for program in ("initdb", "pg_ctl", "psql"):
        (bin_dir / program).write_text("#!/bin/sh\nexit 1\n")
    with pytest.raises(PgDemoUnavailable) as raised, PgDemo(bin_dir=bin_dir):
        pass
    message = str(raised.value)
    assert message == (
        f"pgaudit not found ({tmp_path / '15' / 'lib' / 'pgaudit.so'}): "
        "apt-get install postgresql-15-pgaudit"
    )
