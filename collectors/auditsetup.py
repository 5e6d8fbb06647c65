"""The database's audit set-up, read over asyncpg with the monitoring role's privileges: is
pgaudit loaded, how is it configured, does the audit role still have SELECT on each watched
table, where does the server log go. `tablewatch doctor` checks it; a change of it is tampering.

The query is in `collectors/sql/audit_setup.sql`; it needs nothing beyond `pg_monitor` (never
SELECT on a watched table).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
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

    @property
    def pgaudit_loaded(self) -> bool:
        """pgaudit is in shared_preload_libraries (its settings exist only then)."""
        return "pgaudit" in self.preload or "pgaudit.log" in self.settings


async def read_setup(
    link: DatabaseLink, tables: Sequence[TableName], audit_role: str
) -> AuditSetup:
    """The audit set-up, in one query.

    Raises:
        ConnectionError: the database cannot answer (the reason, one line).
    """
    row = (await link.fetch(SQL, *table_args(tables), audit_role))[0]  # one row, always
    settings: dict[str, Any] = json.loads(row["settings"])
    return AuditSetup(
        login=row["login"],
        server_version=row["server_version"],
        superuser=bool(row["superuser"]),
        pg_monitor=bool(row["pg_monitor"]),
        preload=tuple(
            name.strip().strip('"') for name in row["preload"].split(",") if name.strip()
        ),
        extension=bool(row["extension"]),
        settings={str(k): str(v) for k, v in settings.items()},
        audit_role=audit_role,
        audit_role_exists=bool(row["audit_role_exists"]),
        tables=tuple(
            TableSetup(t["name"], bool(t["exists"]), t["audited"], t["readable_by_me"])
            for t in json.loads(row["tables"])
        ),
    )
