"""Changes to the audit set-up, judged without a database: each change that blinds the audit trail
is tampering with the right severity, tables and a detail a human can check; changes back to a
safer state, and settings that do not matter, are not."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from collectors.auditsetup import AuditSetup, RoleSetting, TableSetup
from collectors.pgstat import DatabaseLink
from collectors.setupwatch import (
    AuditSetupSource,
    blind_spots,
    changes,
    compare,
    summary,
)
from core.dbside import Observations
from core.events import us_from_utc
from core.findings import Severity
from core.tables import TableName
from tablewatch.pgcluster import free_port

CRITICAL, WARNING = Severity.CRITICAL, Severity.WARNING
AT = 1_800_000_000_000_000
STARTED = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
SETTINGS = {
    "pgaudit.log": "read, role",
    "pgaudit.role": "auditor",
    "pgaudit.log_catalog": "on",
    "pgaudit.log_client": "off",
    "pgaudit.log_level": "log",
    "pgaudit.log_parameter": "on",
    "pgaudit.log_relation": "on",
    "pgaudit.log_rows": "off",
    "pgaudit.log_statement": "on",
    "pgaudit.log_statement_once": "off",
    "log_min_messages": "warning",
    "log_destination": "csvlog",
    "logging_collector": "on",
    "log_directory": "/var/log/postgresql",
    "log_filename": "postgresql-%a.log",
    "log_line_prefix": "%m [%p] %q%u@%d %r %a ",
    "data_directory": "/var/lib/postgresql/15/main",
}
BASE = AuditSetup(
    login="tw_monitor",
    server_version="15.8",
    superuser=False,
    pg_monitor=True,
    preload=("pgaudit",),
    extension=True,
    settings=SETTINGS,
    audit_role="auditor",
    audit_role_exists=True,
    tables=(
        TableSetup("crm.clients", True, True, False),
        TableSetup("crm.leads", True, True, False),
    ),
    started_at=STARTED,
    taken_at=STARTED.replace(hour=9),
)


def setup(settings: dict[str, str | None] | None = None, **fields: Any) -> AuditSetup:
    """BASE with some settings and fields changed (a setting mapped to None is gone)."""
    merged: dict[str, str | None] = {**SETTINGS, **(settings or {})}
    return dataclasses.replace(
        BASE, settings={k: v for k, v in merged.items() if v is not None}, **fields
    )


def revoked(table: str) -> tuple[TableSetup, ...]:
    return tuple(
        dataclasses.replace(t, audited=False) if t.name == table else t for t in BASE.tables
    )


UNLOADED: dict[str, str | None] = {name: None for name in SETTINGS if name.startswith("pgaudit.")}
MALLORY = RoleSetting("mallory", "", "pgaudit.log", "none")


@pytest.mark.parametrize(
    ("after", "severity", "detail", "tables"),
    [
        pytest.param(
            setup(UNLOADED, preload=("pg_stat_statements",)),
            CRITICAL,
            "pgaudit is no longer loaded (shared_preload_libraries = 'pg_stat_statements'): "
            "nothing is audited",
            (),
            id="pgaudit-unloaded",
        ),
        pytest.param(
            setup(extension=False),
            CRITICAL,
            "the pgaudit extension was dropped from this database (DROP EXTENSION pgaudit): "
            "the DDL records of its event triggers stop",
            (),
            id="extension-dropped",
        ),
        pytest.param(
            setup({"pgaudit.log": "none"}),
            CRITICAL,
            "pgaudit.log changed from 'read, role' to 'none'",
            (),
            id="pgaudit.log",
        ),
        pytest.param(
            setup({"pgaudit.log": "all, -read"}),
            CRITICAL,
            "pgaudit.log changed from 'read, role' to 'all, -read'",
            (),
            id="pgaudit.log-minus-read",
        ),
        pytest.param(
            setup({"pgaudit.role": "nobody"}),
            CRITICAL,
            "pgaudit.role changed from 'auditor' to 'nobody'",
            (),
            id="pgaudit.role",
        ),
        pytest.param(
            setup({"pgaudit.log_rows": "on"}),
            CRITICAL,
            "pgaudit.log_rows changed from 'off' to 'on'",
            (),
            id="pgaudit.log_rows",
        ),
        pytest.param(
            setup({"pgaudit.log_level": "notice"}),
            CRITICAL,
            "pgaudit.log_level changed from 'log' to 'notice'",
            (),
            id="pgaudit.log_level",
        ),
        pytest.param(
            setup({"pgaudit.log_relation": "off"}),
            CRITICAL,
            "pgaudit.log_relation changed from 'on' to 'off'",
            (),
            id="pgaudit.log_relation",
        ),
        pytest.param(
            setup({"pgaudit.log_statement_once": None}),
            CRITICAL,
            "pgaudit.log_statement_once is gone (was 'off')",
            (),
            id="pgaudit-setting-gone",
        ),
        pytest.param(
            setup(audit_role_exists=False, tables=revoked("crm.clients")),
            CRITICAL,
            "the audit role auditor was dropped: object audit of the watched tables stops",
            (),
            id="audit-role-dropped",
        ),
        pytest.param(
            setup(tables=revoked("crm.leads")),
            CRITICAL,
            "auditor lost SELECT on crm.leads: its reads are no longer audited",
            ("crm.leads",),
            id="select-revoked",
        ),
        pytest.param(
            setup(role_settings=(MALLORY,)),
            CRITICAL,
            "pgaudit.log = 'none' set for role mallory (server-wide: 'read, role'): it "
            "overrides the server's value in those sessions",
            (),
            id="role-pgaudit.log",
        ),
        pytest.param(
            setup(role_settings=(RoleSetting("", "crm", "pgaudit.role", "nobody"),)),
            CRITICAL,
            "pgaudit.role = 'nobody' set for every role in database crm",
            (),
            id="database-pgaudit.role",
        ),
        pytest.param(
            setup(role_settings=(RoleSetting("", "", "pgaudit.log", "read, role"),)),
            CRITICAL,  # no more than now, but it pins the value against the server's
            "pgaudit.log = 'read, role' set for every role (ALTER ROLE ALL)",
            (),
            id="role-all-same-value",
        ),
        pytest.param(
            setup(role_settings=(RoleSetting("mallory", "crm", "log_min_messages", "fatal"),)),
            CRITICAL,
            "log_min_messages = 'fatal' set for role mallory in database crm: LOG messages, "
            "the audit records among them, are no longer written for those sessions",
            (),
            id="role-log_min_messages",
        ),
        pytest.param(
            setup(role_settings=(RoleSetting("app", "", "log_min_messages", "error"),)),
            WARNING,  # LOG is still written
            "log_min_messages = 'error' set for role app",
            (),
            id="role-log_min_messages-keeps-log",
        ),
        pytest.param(
            setup({"log_min_messages": "fatal"}),
            CRITICAL,
            "log_min_messages raised from 'warning' to 'fatal': LOG messages, the audit records "
            "among them, are no longer written",
            (),
            id="log_min_messages-fatal",
        ),
        pytest.param(
            setup({"log_min_messages": "panic"}),
            CRITICAL,
            "log_min_messages raised from 'warning' to 'panic'",
            (),
            id="log_min_messages-panic",
        ),
        pytest.param(
            setup({"log_destination": "stderr"}),
            WARNING,
            "log_destination changed from 'csvlog' to 'stderr': the audit records may now be "
            "written elsewhere",
            (),
            id="log_destination",
        ),
        pytest.param(
            setup({"logging_collector": "off"}),
            WARNING,
            "logging_collector changed from 'on' to 'off': the audit records may now be",
            (),
            id="logging_collector",
        ),
        pytest.param(
            setup({"log_directory": "/tmp/elsewhere"}),
            WARNING,
            "log_directory changed from '/var/log/postgresql' to '/tmp/elsewhere'",
            (),
            id="log_directory",
        ),
        pytest.param(
            setup({"log_filename": "hidden.log"}),
            WARNING,
            "log_filename changed from 'postgresql-%a.log' to 'hidden.log'",
            (),
            id="log_filename",
        ),
        pytest.param(
            setup(tables=(BASE.tables[0], TableSetup("crm.leads", False, None, None))),
            WARNING,
            "crm.leads no longer exists (dropped or renamed): its reads cannot be watched",
            ("crm.leads",),
            id="table-gone",
        ),
        pytest.param(
            setup(
                {"log_directory": None, "log_filename": None, "data_directory": None},
                pg_monitor=False,
                preload=(),
            ),
            WARNING,  # the hidden settings are not "gone"
            "tw_monitor is no longer a member of pg_monitor",
            (),
            id="lost-pg_monitor",
        ),
    ],
)
def test_each_blinding_change_is_tampering(
    after: AuditSetup, severity: Severity, detail: str, tables: tuple[str, ...]
) -> None:
    found = changes(BASE, after, AT)
    assert len(found) == 1, found  # one change, said once
    (t,) = found
    assert (t.severity, t.tables, t.time_us, t.user) == (severity, tables, AT, "")
    assert t.detail.startswith(detail), t.detail


def test_a_restart_is_stamped_with_the_new_start_time() -> None:
    again = datetime(2026, 3, 1, 8, 59, 30, 250000, tzinfo=UTC)
    (t,) = changes(BASE, setup(started_at=again), AT)
    assert t.severity is WARNING and t.time_us == us_from_utc(again) and t.tables == ()
    assert t.detail == (
        "the server restarted at 08:59:30 UTC; settings may have changed while it was down"
    )


def test_changes_during_a_restart_come_with_it() -> None:
    again = datetime(2026, 3, 1, 8, 59, 30, tzinfo=UTC)
    after = setup(UNLOADED, preload=(), started_at=again)
    restart, unloaded = changes(BASE, after, AT)
    assert restart.time_us < unloaded.time_us == AT  # in time order
    assert "restarted" in restart.detail and "no longer loaded" in unloaded.detail


def test_several_tables_revoked_are_named_one_by_one() -> None:
    after = setup(tables=tuple(dataclasses.replace(t, audited=False) for t in BASE.tables))
    assert [t.tables for t in changes(BASE, after, AT)] == [("crm.clients",), ("crm.leads",)]


@pytest.mark.parametrize(
    ("before", "after", "note"),
    [
        pytest.param(BASE, BASE, None, id="nothing"),
        pytest.param(setup({"data_directory": "/srv/pg"}), BASE, None, id="unrelated-setting"),
        pytest.param(
            setup({"log_min_messages": "warning"}),
            setup({"log_min_messages": "error"}),
            "log_min_messages changed from 'warning' to 'error'",
            id="log_min_messages-still-below-log",
        ),
        pytest.param(
            setup(tables=revoked("crm.leads")),
            BASE,
            "auditor has SELECT on crm.leads again: its reads are audited again",
            id="grant-restored",
        ),
        pytest.param(
            setup({"pgaudit.log": "none"}),
            BASE,
            "pgaudit.log changed from 'none' to 'read, role' (no less is audited)",
            id="pgaudit.log-restored",
        ),
        pytest.param(
            BASE,
            setup({"pgaudit.log": "all"}),
            "pgaudit.log changed from 'read, role' to 'all' (no less is audited)",
            id="pgaudit.log-widened",
        ),
        pytest.param(
            setup({"pgaudit.log_rows": "on"}),
            BASE,
            "pgaudit.log_rows changed from 'on' to 'off'",
            id="log_rows-off-again",
        ),
        pytest.param(
            setup({"log_min_messages": "fatal"}),
            BASE,
            "log_min_messages changed from 'fatal' to 'warning'",
            id="log_min_messages-lowered",
        ),
        pytest.param(
            setup(role_settings=(MALLORY,)),
            BASE,
            "pgaudit.log for role mallory removed (was 'none')",
            id="role-setting-removed",
        ),
        pytest.param(
            setup(role_settings=(MALLORY,)),
            setup(role_settings=(dataclasses.replace(MALLORY, value="read, write, role"),)),
            "pgaudit.log for role mallory changed from 'none' to 'read, write, role'",
            id="role-setting-widened",
        ),
        pytest.param(
            BASE,
            setup(role_settings=(RoleSetting("app", "", "pgaudit.log", "all"),)),
            "pgaudit.log = 'all' set for role app (server-wide: 'read, role')",
            id="role-audited-more",
        ),
        pytest.param(
            BASE,
            setup({"log_destination": "csvlog,jsonlog"}),
            "log_destination changed from 'csvlog' to 'csvlog,jsonlog'",
            id="log-destination-added",
        ),
        pytest.param(setup(extension=False, audit_role_exists=False), BASE, None, id="recreated"),
        pytest.param(
            setup(UNLOADED, preload=()),
            BASE,
            "pgaudit is loaded again",
            id="pgaudit-loaded-again",
        ),
    ],
)
def test_safer_or_unrelated_changes_are_not_tampering(
    before: AuditSetup, after: AuditSetup, note: str | None
) -> None:
    found = compare(before, after, AT)
    assert found.tampered == ()
    if before is after:
        assert found.notes == ()
    if note is not None:
        assert any(n.startswith(note) for n in found.notes), found.notes


def test_a_session_value_from_a_database_setting_is_reported_once() -> None:
    """pg_settings shows this session's value: after a reconnection it is the database's own
    setting, already reported as such, not a server-wide change."""
    planted = RoleSetting("", "crm", "pgaudit.log_rows", "on")
    reported = setup(role_settings=(planted,))
    assert len(changes(BASE, reported, AT)) == 1
    reconnected = setup(
        {"pgaudit.log_rows": "on"},
        role_settings=(planted,),
        overridden=frozenset({"pgaudit.log_rows"}),
    )
    assert changes(reported, reconnected, AT) == []


def test_details_are_quoted_safe_and_bounded() -> None:
    hostile = RoleSetting('mal"\x1b[2Jory', "", "pgaudit.log", "it's\nnone" + "x" * 1000)
    (t,) = changes(BASE, setup(role_settings=(hostile,)), AT)
    assert "\x1b" not in t.detail and "\n" not in t.detail and len(t.detail) <= 400
    assert 'for role "mal""\\x1b[2Jory"' in t.detail  # as SQL would write it, escaped
    assert "= 'it''s\\nnone" in t.detail and "…" in t.detail


def test_blind_spots_of_a_baseline() -> None:
    assert blind_spots(BASE) == []
    blind = setup(
        {"log_min_messages": "fatal", "pgaudit.log_rows": "on"},
        tables=revoked("crm.leads"),
        role_settings=(MALLORY, RoleSetting("app", "", "pgaudit.log", "all")),
    )
    assert blind_spots(blind) == [
        "pgaudit.log_rows is on: COPY ... TO and cursor reads are not audited",
        "auditor has no SELECT on crm.leads: its reads are not audited",
        "log_min_messages is 'fatal': the audit records (LOG) are not written",
        "pgaudit.log = 'none' for role mallory: audited less",
    ]
    assert blind_spots(setup(UNLOADED, preload=())) == ["pgaudit is not loaded: nothing is audited"]


def test_summary() -> None:
    assert summary(BASE) == "pgaudit loaded, log = 'read, role', role auditor, 2 tables audited"
    assert summary(setup(tables=revoked("crm.leads"))).endswith("1 of 2 tables audited")
    assert summary(setup(UNLOADED, preload=())).startswith("pgaudit NOT loaded")


async def test_health_waiting_ok_blind_and_down() -> None:
    link = DatabaseLink(f"postgresql://tw@127.0.0.1:{free_port()}/crm")
    tables = [TableName.parse("crm.clients"), TableName.parse("crm.leads")]
    source = AuditSetupSource(link, tables, "auditor", interval=10)
    assert (source.name, source.health().state) == ("audit_setup", "waiting")

    source.setup = BASE
    health = source.health()
    assert health.state == "ok" and health.notes == ()
    assert health.detail == (
        "read every 10 s: pgaudit loaded, log = 'read, role', role auditor, 2 tables audited"
    )
    source.setup = setup({"log_min_messages": "fatal"}, tables=revoked("crm.leads"))
    health = source.health()
    assert health.detail.endswith(
        "1 of 2 tables audited; BLIND: auditor has no SELECT on crm.leads: its reads are not "
        "audited (+1 more, see notes)"
    )
    assert len(health.notes) == 2

    with pytest.raises(ConnectionError) as down:
        await source.poll()  # nothing listens there
    health = source.health()
    assert health.state == "error" and health.detail == str(down.value) and health.detail
    assert "\n" not in health.detail

    polls = cast(AsyncGenerator[Observations, None], source.observations())
    # a failed poll yields nothing
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(polls), 0.3)
    await polls.aclose()
