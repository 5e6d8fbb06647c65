"""`tablewatch demo --postgres` (tablewatch.pgdemo): real SQL on a private PostgreSQL + pgaudit,
whose audit trail the real engine turns into the escalation the demo promises."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.events import EventBuilder, ParseStats
from core.engine import Engine, EngineConfig
from core.findings import Code, PrincipalKey, Severity
from core.tables import WatchedTables
from tablewatch.pgcluster import DEFAULT_SETTINGS
from tablewatch.pgdemo import ATTACKER_APP, WHOLE, PgDemo, PgDemoUnavailable
from tablewatch.replay import feed
from tests.pgcluster import require_postgres

ROWS = 5000
SPEED = 4.0
TABLE = "crm.client_list"
ATTACKER = PrincipalKey("crm_app", "127.0.0.1", ATTACKER_APP, TABLE)
BACKUP = PrincipalKey("backup", "127.0.0.1", "pg_dump", TABLE)
REPORTING = PrincipalKey("reporting", "127.0.0.1", "metabase", TABLE)


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
