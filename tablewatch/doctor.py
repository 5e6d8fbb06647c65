"""`tablewatch doctor`: is everything in place for tablewatch to see every read of the watched
tables? Connectivity and the monitoring role's privileges, pgaudit's set-up for each watched
table, the server log's destination and format, and whether this user can read the log files.
Each problem comes with the exact SQL or setting that fixes it.

Exit status: 0 when nothing is wrong (warnings allowed), 1 when something is, 2 for bad usage.
"""

from __future__ import annotations

import asyncio
import glob
import os
import sys
from dataclasses import dataclass
from typing import Final, TextIO

from collectors.auditsetup import AuditSetup, read_setup
from collectors.logformats import sniff
from collectors.pgstat import DatabaseLink
from core.safetext import safe
from core.settings import Settings
from core.tables import TableName

OK, WARN, FAIL = "ok", "warn", "FAIL"
MARKS: Final = {OK: "✓", WARN: "!", FAIL: "✗"}


@dataclass(frozen=True, slots=True)
class Check:
    """One finding of the doctor: what was checked, how it stands, and the fix."""

    name: str
    status: str
    """ok | warn | FAIL"""
    detail: str
    fix: str = ""


def _ident(name: str) -> str:
    """A role name as SQL (quoted when it must be)."""
    if name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def database_checks(setup: AuditSetup, settings: Settings) -> list[Check]:
    """What the audit set-up says, judged."""
    out: list[Check] = []
    me, role = _ident(setup.login), _ident(setup.audit_role)
    if setup.superuser:
        out.append(
            Check(
                "privileges",
                WARN,
                f"{setup.login} is a superuser: more than needed",
                "use a role with pg_monitor only (deploy/postgresql/monitoring-role.sql)",
            )
        )
    elif not setup.pg_monitor:
        out.append(
            Check(
                "privileges",
                FAIL,
                f"{setup.login} is not a member of pg_monitor: the live sources cannot "
                "read pg_stat_activity, pg_stat_statements or the settings",
                f"GRANT pg_monitor TO {me};",
            )
        )
        return out  # without it the settings are hidden: the other checks would guess
    else:
        out.append(Check("privileges", OK, f"{setup.login} is a member of pg_monitor"))
    if not setup.pgaudit_loaded:
        wanted = ", ".join([*setup.preload, "pgaudit"])
        out.append(
            Check(
                "pgaudit",
                FAIL,
                "pgaudit is not loaded: nothing is audited",
                f"ALTER SYSTEM SET shared_preload_libraries = {_literal(wanted)}; "
                "then restart the server",
            )
        )
        return out + _logging_checks(setup, settings)
    out.append(Check("pgaudit", OK, "loaded (shared_preload_libraries)"))
    if not setup.extension:
        out.append(
            Check(
                "pgaudit extension",
                WARN,
                "CREATE EXTENSION pgaudit was not run in this database (DDL auditing "
                "of the audit set-up needs it)",
                "CREATE EXTENSION pgaudit;",
            )
        )
    configured = setup.settings.get("pgaudit.role", "")
    if configured != setup.audit_role:
        out.append(
            Check(
                "pgaudit.role",
                FAIL,
                f"pgaudit.role is {configured or 'not set'!r}, tablewatch expects "
                f"{setup.audit_role!r} ([detection] audit_role): object audit is off",
                f"ALTER SYSTEM SET pgaudit.role = {_literal(setup.audit_role)}; "
                "SELECT pg_reload_conf();  (or set [detection] audit_role)",
            )
        )
    else:
        out.append(Check("pgaudit.role", OK, f"object audit through {setup.audit_role}"))
    if not setup.audit_role_exists:
        out.append(
            Check(
                "audit role",
                FAIL,
                f"the role {setup.audit_role} does not exist",
                f"CREATE ROLE {role} NOLOGIN;",
            )
        )
    for t in setup.tables:
        name = f"table {t.name}"
        if not t.exists:
            out.append(
                Check(
                    name,
                    FAIL,
                    "no such table in this database",
                    "check [[tables]] name and the database in [database] dsn",
                )
            )
            continue
        if t.audited is False:
            out.append(
                Check(
                    name,
                    FAIL,
                    f"{setup.audit_role} has no SELECT on it: its reads are not audited",
                    f"GRANT SELECT ON {t.name} TO {role};",
                )
            )
        elif t.audited:
            out.append(Check(name, OK, f"every read is audited ({setup.audit_role} has SELECT)"))
        if t.readable_by_me and not setup.superuser:
            out.append(
                Check(
                    name,
                    WARN,
                    f"{setup.login} can read its rows: it needs statistics only",
                    f"REVOKE SELECT ON {t.name} FROM {me};  (and from PUBLIC if granted there)",  # noqa: S608 - shown, never run
                )
            )
    out.extend(_live_source_checks(setup, me))
    if setup.settings.get("pgaudit.log_rows") == "on":
        out.append(
            Check(
                "pgaudit.log_rows",
                WARN,
                "on: COPY ... TO and DECLARE CURSOR reads are then not audited at all",
                "ALTER SYSTEM SET pgaudit.log_rows = off; SELECT pg_reload_conf();  "
                "(or keep it and rely on the live statistics sources)",
            )
        )
    return out + _logging_checks(setup, settings)


def _live_source_checks(setup: AuditSetup, me: str) -> list[Check]:
    """What the live database sources need beyond pg_monitor: pg_stat_statements (who read
    what the audit log missed) and, for the dashboard's cancel/terminate, pg_signal_backend."""
    out: list[Check] = []
    if setup.sees_everything and "pg_stat_statements" not in setup.preload:
        wanted = ",".join([*setup.preload, "pg_stat_statements"])
        out.append(
            Check(
                "pg_stat_statements",
                WARN,
                "not loaded: an audit gap cannot be laid at a role",
                f"ALTER SYSTEM SET shared_preload_libraries = {_literal(wanted)}; then restart "
                "the server and CREATE EXTENSION pg_stat_statements;",
            )
        )
    elif not setup.statements:
        out.append(
            Check(
                "pg_stat_statements",
                WARN,
                "the extension is not created in this database: an audit gap cannot be laid "
                "at a role",
                "CREATE EXTENSION pg_stat_statements;",
            )
        )
    else:
        out.append(Check("pg_stat_statements", OK, "rows and calls per role"))
    if not setup.superuser and not setup.signal_backend:
        out.append(
            Check(
                "pg_signal_backend",
                WARN,
                f"{setup.login} may not cancel or terminate a reader's backend from the "
                "dashboard (optional)",
                f"GRANT pg_signal_backend TO {me};",
            )
        )
    return out


def _logging_checks(setup: AuditSetup, settings: Settings) -> list[Check]:
    out: list[Check] = []
    s = setup.settings
    destinations = [d.strip() for d in s.get("log_destination", "").split(",") if d.strip()]
    fmt = settings.audit_log.format
    if s.get("logging_collector") == "off":
        out.append(
            Check(
                "logging",
                WARN,
                "logging_collector is off: the log goes wherever the "
                "server's stderr goes (csvlog and jsonlog need the collector)",
                "ALTER SYSTEM SET logging_collector = on; then restart the server",
            )
        )
    if fmt in ("csvlog", "jsonlog") and fmt not in destinations:
        wanted = ",".join([*destinations, fmt])
        out.append(
            Check(
                "log_destination",
                FAIL,
                f"{s.get('log_destination', '?')!r} does not include {fmt} ([audit_log] format)",
                f"ALTER SYSTEM SET log_destination = {_literal(wanted)}; SELECT pg_reload_conf();",
            )
        )
    elif fmt == "stderr" and s.get("log_line_prefix") not in (
        None,
        settings.audit_log.log_line_prefix,
    ):
        out.append(
            Check(
                "log_line_prefix",
                FAIL,
                f"the server's is {s['log_line_prefix']!r}, [audit_log] log_line_prefix "
                f"is {settings.audit_log.log_line_prefix!r}",
                f"log_line_prefix = {_literal(s['log_line_prefix'])} in [audit_log]",
            )
        )
    else:
        out.append(Check("log_destination", OK, s.get("log_destination", "?")))
    return out


def _log_dir(setup: AuditSetup | None) -> str:
    if setup is None:
        return ""
    directory = setup.settings.get("log_directory", "")
    data = setup.settings.get("data_directory", "")
    if directory and data and not directory.startswith("/"):
        directory = os.path.join(data, directory)
    return directory


def log_checks(settings: Settings, setup: AuditSetup | None) -> list[Check]:
    """Can this user find and read the server log, and is it in the configured format?"""
    audit = settings.audit_log
    if not audit.path:  # a managed database without log files: the statistics alone
        return [
            Check(
                "log files",
                WARN,
                '[audit_log] path is "": no audit log; pg_stat_statements tells the reads per '
                "role, and no audit gap can be judged",
                "point path at the server's log files when they can be read",
            )
        ]
    files = sorted(glob.glob(os.path.expanduser(audit.path)), key=_mtime)
    where = _log_dir(setup)
    if not files:
        suffix = {"csvlog": "*.csv", "jsonlog": "*.json"}.get(audit.format, "*.log")
        if where:
            fix = f"the server writes to {where}: path = {_literal(os.path.join(where, suffix))}"
        else:  # the database could not tell
            fix = "point path at the server's log files (on the server: SHOW log_directory;)"
        return [
            Check(
                "log files",
                FAIL,
                f"no file matches [audit_log] path = {audit.path!r}",
                f"{fix} in [audit_log]",
            )
        ]
    newest = files[-1]
    try:
        with open(newest, "rb") as f:
            head = f.read(65536)
    except OSError as exc:
        return [
            Check(
                "log files",
                FAIL,
                f"cannot read {newest}: {exc.strerror}",
                "let this user read the log (Debian: usermod -aG adm <user>, then log in again)",
            )
        ]
    out = [Check("log files", OK, f"{len(files)} file(s), the newest {newest} readable")]
    if not head:
        return out
    found = sniff(head, audit.log_line_prefix)
    if found is None:
        out.append(
            Check(
                "log format",
                FAIL,
                f"{newest} is no PostgreSQL log tablewatch knows",
                "point [audit_log] path at the server's csvlog, jsonlog or stderr log",
            )
        )
    elif audit.format not in ("auto", found):
        out.append(
            Check(
                "log format",
                FAIL,
                f"{newest} is {found}, [audit_log] format is {audit.format}",
                f"format = {_literal(found)} in [audit_log]",
            )
        )
    else:
        out.append(Check("log format", OK, found))
    return out


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


async def diagnose(settings: Settings, tables: list[TableName]) -> tuple[str, list[Check]]:
    """Every check; and a line saying what was examined."""
    db = settings.database
    checks: list[Check] = []
    setup: AuditSetup | None = None
    if not db.dsn:
        checks.append(
            Check(
                "connect",
                FAIL,
                "[database] dsn is not set",
                'dsn = "postgresql://tablewatch@HOST:5432/DATABASE" in [database]',
            )
        )
        return "no database", checks + log_checks(settings, None)
    password = db.password.get_secret_value() if db.password is not None else None
    link = DatabaseLink(
        db.dsn,
        password,
        statement_timeout=db.statement_timeout.total_seconds(),
        application_name="tablewatch doctor",
    )
    try:
        setup = await read_setup(link, tables, settings.detection.audit_role)
    except ConnectionError as exc:
        checks.append(
            Check(
                "connect",
                FAIL,
                str(exc),
                "check [database] dsn, pg_hba.conf for this host and role, and the "
                "password (TABLEWATCH_DATABASE__PASSWORD or ~/.pgpass)",
            )
        )
        return _where(db.dsn), checks + log_checks(settings, None)
    finally:
        await link.close()
    checks.append(Check("connect", OK, f"as {setup.login}, PostgreSQL {setup.server_version}"))
    checks += database_checks(setup, settings)
    return _where(db.dsn), checks + log_checks(settings, setup)


def _where(dsn: str) -> str:
    """The DSN without its password."""
    head, sep, tail = dsn.partition("@")
    if sep and ":" in head.split("//", 1)[-1]:
        scheme, _, user = head.partition("//")
        return f"{scheme}//{user.split(':', 1)[0]}:***@{tail}"
    return dsn


def report(where: str, checks: list[Check], out: TextIO) -> int:
    """Print the checks; the exit status."""
    print(f"tablewatch doctor: {safe(where, 200)}", file=out)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(
            f"  {MARKS[c.status]} {c.status:4} {safe(c.name, 80):{width}}  {safe(c.detail, 300)}",
            file=out,
        )
        if c.fix and c.status != OK:
            print(f"  {'':6} {'':{width}}  fix: {safe(c.fix, 400)}", file=out)
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    print(f"{failed} problem(s), {warned} warning(s)", file=out)
    return 1 if failed else 0


def run_doctor(settings: Settings, tables: list[TableName], out: TextIO = sys.stdout) -> int:
    """`tablewatch doctor`."""
    where, checks = asyncio.run(diagnose(settings, tables))
    return report(where, checks, out)
