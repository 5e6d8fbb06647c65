"""The database's audit set-up, read over asyncpg with the monitoring role's privileges: is
pgaudit loaded, how is it configured, does the audit role still have SELECT on each watched
table, where does the server log go, which roles or databases override pgaudit's settings, when
did the server start. `tablewatch doctor` checks it; `collectors.setupwatch` reads it every
interval and reports a change that blinds the audit trail as tampering.

The query is in `collectors/sql/audit_setup.sql`; it needs nothing beyond `pg_monitor` (never
SELECT on a watched table).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from collectors.pgstat import DatabaseLink, table_args
from core.tables import TableName

SQL: Final = (Path(__file__).parent / "sql" / "audit_setup.sql").read_text()


@dataclass(frozen=True, slots=True)
class TableSetup:
    """One watched table as the database has it."""

    name: str
    exists: bool
    audited: bool | None
    """The audit role has SELECT on it: pgaudit logs every read (None: no table or no role)."""
    readable_by_me: bool | None
    """The monitoring role itself could read the rows (it should not)."""


@dataclass(frozen=True, slots=True)
class RoleSetting:
    """An `ALTER ROLE ... SET` / `ALTER DATABASE ... SET` of an audit or logging setting that
    reaches this database (pg_db_role_setting): the sessions it covers use it instead of the
    server's value."""

    role: str
    """The role it applies to ("" : every role)."""
    database: str
    """The database it applies to ("" : every database)."""
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class AuditSetup:
    """The facts `tablewatch doctor` judges."""

    login: str
    server_version: str
    superuser: bool
    pg_monitor: bool
    preload: tuple[str, ...]
    """shared_preload_libraries, one name each."""
    extension: bool
    """CREATE EXTENSION pgaudit was run in this database."""
    settings: dict[str, str]
    """pgaudit.* and the logging settings, as pg_settings has them."""
    audit_role: str
    audit_role_exists: bool
    tables: tuple[TableSetup, ...]
    role_settings: tuple[RoleSetting, ...] = ()
    """Per-role and per-database settings of pgaudit.* and the logging settings."""
    overridden: frozenset[str] = field(default_factory=frozenset)
    """Names in `settings` whose value this session took from a per-role or per-database
    setting (`role_settings`), not from the server's configuration."""
    started_at: datetime | None = None
    """pg_postmaster_start_time(): a new value is a restart."""
    taken_at: datetime | None = None
    """The server's clock when it was read."""
    statements: bool = False
    """CREATE EXTENSION pg_stat_statements was run in this database."""
    signal_backend: bool = False
    """The login may cancel and terminate other roles' backends (pg_signal_backend)."""

    @property
    def sees_everything(self) -> bool:
        """The login may read every setting (pg_monitor brings pg_read_all_settings): without
        it shared_preload_libraries and the log's location read as empty."""
        return self.superuser or self.pg_monitor

    @property
    def pgaudit_loaded(self) -> bool:
        """pgaudit is in shared_preload_libraries (its settings exist only then). Without the
        right to read that list, its settings say so (a per-role `pgaudit.*` setting can
        leave a placeholder, so the list is trusted whenever it can be read)."""
        if self.sees_everything:
            return any(_library(name) == "pgaudit" for name in self.preload)
        return "pgaudit.log" in self.settings


async def read_setup(
    link: DatabaseLink, tables: Sequence[TableName], audit_role: str
) -> AuditSetup:
    """The audit set-up, in one query.

    Raises:
        ConnectionError: the database cannot answer (the reason, one line).
    """
    row = (await link.fetch(SQL, *table_args(tables), audit_role))[0]  # one row, always
    settings: dict[str, Any] = json.loads(row["settings"])
    role_settings: list[dict[str, Any]] = json.loads(row["role_settings"])
    return AuditSetup(
        login=row["login"],
        server_version=row["server_version"],
        superuser=bool(row["superuser"]),
        pg_monitor=bool(row["pg_monitor"]),
        preload=tuple(
            name.strip().strip('"') for name in row["preload"].split(",") if name.strip()
        ),
        extension=bool(row["extension"]),
        statements=bool(row["statements"]),
        signal_backend=bool(row["signal_backend"]),
        settings={str(k): str(v) for k, v in settings.items()},
        audit_role=audit_role,
        audit_role_exists=bool(row["audit_role_exists"]),
        tables=tuple(
            TableSetup(t["name"], bool(t["exists"]), t["audited"], t["readable_by_me"])
            for t in json.loads(row["tables"])
        ),
        role_settings=tuple(
            RoleSetting(str(r["role"]), str(r["database"]), str(r["name"]), str(r["value"]))
            for r in role_settings
        ),
        overridden=frozenset(str(name) for name in json.loads(row["overridden"])),
        started_at=row["started_at"],
        taken_at=row["taken_at"],
    )


def _library(entry: str) -> str:
    """A shared_preload_libraries entry as a library name: `$libdir/pgaudit.so` is `pgaudit`.

    >>> _library("$libdir/pgaudit.so"), _library("pgaudit")
    ('pgaudit', 'pgaudit')
    """
    name = entry.rsplit("/", 1)[-1]
    return name[:-3] if name.endswith(".so") else name
