"""The audit set-up source against a real PostgreSQL 15 + pgaudit, read by a role with nothing but
pg_monitor: each way of blinding the audit trail (a pgaudit setting changed server-wide or for
one role, log_min_messages above LOG, the audit role's SELECT revoked, the extension dropped,
pgaudit unloaded across a restart) is reported on the next poll with its severity and a detail a
human can check; putting things back is no tampering; a restart is shown down, then reported
once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from typing import cast

import pytest

from collectors.pgstat import DatabaseLink
from collectors.setupwatch import AuditSetupSource
from core.dbside import Observations, Tampered
from core.findings import Severity
from core.tables import TableName
from tablewatch.pgcluster import PgCluster

ROLE = "tw_setup"
SETUP = f"""
CREATE SCHEMA crm;
CREATE TABLE crm.clients (id int, name text);
CREATE TABLE crm.leads (id int, name text);
GRANT SELECT ON crm.clients, crm.leads TO auditor;
CREATE ROLE {ROLE} LOGIN;
GRANT pg_monitor TO {ROLE};
CREATE ROLE mallory LOGIN;
"""
TABLES = [TableName.parse("crm.clients"), TableName.parse("crm.leads")]
CRITICAL, WARNING = Severity.CRITICAL, Severity.WARNING


def _cluster(pg_factory: Callable[[dict[str, str]], PgCluster]) -> PgCluster:
    pg = pg_factory({"pgaudit.log": "read, role"})
    pg.psql(SETUP)
    return pg


def _only(seen: Observations) -> Tampered:
    assert len(seen.tampered) == 1, seen.tampered
    return seen.tampered[0]


async def test_settings_changed_server_wide_or_for_a_role(
    pg_factory: Callable[[dict[str, str]], PgCluster],
) -> None:
    pg = _cluster(pg_factory)
    source = AuditSetupSource(DatabaseLink(pg.dsn(ROLE)), TABLES, "auditor", interval=0.2)
    polls = cast(AsyncGenerator[Observations, None], source.observations())
    try:
        baseline = await anext(polls)
        assert baseline.tampered == () and baseline.notes == () and baseline.taken_us > 0
        health = source.health()
        assert health.state == "ok" and health.detail == (
            "read every 0.2 s: pgaudit loaded, log = 'read, role', role auditor, 2 tables audited"
        )

        pg.set_gucs({"pgaudit.log": "none"})  # waits until new sessions see it
        t = _only(await anext(polls))
        assert (t.severity, t.detail, t.tables, t.user) == (
            CRITICAL,
            "pgaudit.log changed from 'read, role' to 'none'",
            (),
            "",
        )
        assert "log = 'none'" in source.health().detail

        pg.psql("ALTER ROLE mallory SET pgaudit.log = 'none'")
        t = _only(await anext(polls))
        assert t.severity is CRITICAL and t.detail.startswith(
            "pgaudit.log = 'none' set for role mallory (server-wide: 'none')"
        )

        pg.set_gucs(log_min_messages="fatal")
        t = _only(await anext(polls))
        assert t.severity is CRITICAL and t.detail == (
            "log_min_messages raised from 'warning' to 'fatal': LOG messages, the audit "
            "records among them, are no longer written"
        )
        health = source.health()
        assert "BLIND: log_min_messages is 'fatal'" in health.detail

        # put back: no tampering, only notes
        pg.set_gucs({"pgaudit.log": "read, role", "log_min_messages": "warning"})
        pg.psql("ALTER ROLE mallory RESET pgaudit.log")
        back = await anext(polls)
        assert back.tampered == ()
        assert "pgaudit.log for role mallory removed (was 'none')" in back.notes
        assert "log_min_messages changed from 'fatal' to 'warning'" in back.notes
        assert source.health().notes == back.notes  # nothing blind any more
        assert (await anext(polls)).tampered == ()  # said once
    finally:
        await polls.aclose()
    assert source.link._conn is None  # closed when the polls end


async def test_the_audit_role_losing_select_and_the_extension_dropped(
    pg_factory: Callable[[dict[str, str]], PgCluster],
) -> None:
    pg = _cluster(pg_factory)
    pg.psql("CREATE EXTENSION pgaudit")
    source = AuditSetupSource(DatabaseLink(pg.dsn(ROLE)), TABLES, "auditor")
    try:
        assert (await source.poll()).tampered == ()

        pg.psql("REVOKE SELECT ON crm.clients FROM auditor")  # object audit silently ends
        t = _only(await source.poll())
        assert (t.severity, t.tables) == (CRITICAL, ("crm.clients",))
        assert t.detail == "auditor lost SELECT on crm.clients: its reads are no longer audited"
        health = source.health()
        assert health.detail.endswith(
            "1 of 2 tables audited; BLIND: auditor has no SELECT on crm.clients: its reads "
            "are not audited"
        )

        pg.psql("GRANT SELECT ON crm.clients TO auditor")  # restored: not tampering
        back = await source.poll()
        assert back.tampered == ()
        assert back.notes == (
            "auditor has SELECT on crm.clients again: its reads are audited again",
        )

        pg.psql("DROP EXTENSION pgaudit")
        t = _only(await source.poll())
        assert (t.severity, t.tables) == (CRITICAL, ())
        assert t.detail.startswith("the pgaudit extension was dropped from this database")
    finally:
        await source.link.close()


async def _recovered(source: AuditSetupSource, seconds: float = 10.0) -> Observations:
    """The first poll that succeeds again (after the link's pause)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return await source.poll()
        except ConnectionError:
            assert source.health().state == "error"
            await asyncio.sleep(0.2)
    raise AssertionError(f"never reconnected: {source.health().detail}")


async def test_a_restart_is_reported_once_and_pgaudit_unloaded_with_it(
    pg_factory: Callable[[dict[str, str]], PgCluster],
) -> None:
    pg = _cluster(pg_factory)
    source = AuditSetupSource(DatabaseLink(pg.dsn(ROLE)), TABLES, "auditor")
    try:
        assert (await source.poll()).tampered == ()
        assert source.setup is not None
        first_start = source.setup.started_at

        pg.restart()  # the source's connection breaks
        with pytest.raises(ConnectionError) as broken:
            await source.poll()
        health = source.health()
        assert health.state == "error" and health.detail == str(broken.value) != ""

        t = _only(await _recovered(source))
        assert source.setup is not None and source.setup.started_at != first_start
        started = source.setup.started_at
        assert started is not None
        assert t.severity is WARNING and t.detail == (
            f"the server restarted at {started:%H:%M:%S} UTC; settings may have changed "
            "while it was down"
        )
        assert t.time_us == int(started.timestamp() * 1_000_000)
        assert (await source.poll()).tampered == ()  # reported once
        assert source.health().state == "ok"

        # pgaudit taken out of shared_preload_libraries: only a restart makes it so
        pg.set_gucs(shared_preload_libraries="plpgsql")
        assert (await source.poll()).tampered == ()  # pending until the restart
        pg.restart()
        with pytest.raises(ConnectionError):
            await source.poll()
        seen = await _recovered(source)
        assert [(t.severity, t.detail.split(":")[0]) for t in seen.tampered] == [
            (WARNING, "the server restarted at " + f"{source.setup.started_at:%H}"),
            (CRITICAL, "pgaudit is no longer loaded (shared_preload_libraries = 'plpgsql')"),
        ]
        assert seen.tampered[1].tables == ()  # every watched table
        assert "pgaudit NOT loaded" in source.health().detail
        assert "BLIND: pgaudit is not loaded: nothing is audited" in source.health().detail
    finally:
        await source.link.close()
