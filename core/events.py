"""Access events: one per pgaudit record (or permission-denied error) about a relation."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec


class EventKind(StrEnum):
    """What a log record told us."""

    AUDIT = "audit"
    """A pgaudit record (SESSION or OBJECT) naming a relation."""
    DENIED = "denied"
    """A statement refused with `permission denied` (SQLSTATE 42501): someone probing."""


class AccessEvent(msgspec.Struct, frozen=True, gc=False):
    """One access to a relation, as the audit trail reported it.

    A msgspec Struct rather than a dataclass: a replay builds a million of these a second or two.
    All text fields are raw, attacker-controlled values; render them only through the safe-text
    helpers of the outer rooms.
    """

    time: datetime
    """When PostgreSQL logged the record (timezone-aware)."""
    kind: EventKind
    user: str
    database: str
    client_addr: str
    """Client address without the port; "[local]" for a Unix socket, "" when unknown."""
    application_name: str
    session_id: str
    audit_type: str | None
    """"SESSION" or "OBJECT" for audit records; None for a permission-denied event."""
    statement_id: int | None
    substatement_id: int | None
    class_: str
    """pgaudit class: READ, WRITE, FUNCTION, ROLE, DDL, MISC, MISC_SET."""
    command: str
    object_type: str
    object_name: str
    statement: str | None
    """Exact statement text; None when pgaudit wrote `<not logged>` or `<previously logged>`."""
    parameters: tuple[str, ...] | None
    """Bind parameters; None for `<none>`, `<not logged>`, `<previously logged>`."""
    rows: int | None
    """Rows returned (pgaudit.log_rows); None when not logged."""
    pid: int = 0

    def contract_dict(self) -> dict[str, Any]:
        """The event as `tablewatch replay --events` prints it (DESIGN.md, CLI contract)."""
        return {
            "time": self.time.isoformat(timespec="milliseconds"),
            "user": self.user,
            "database": self.database,
            "client_addr": self.client_addr,
            "application_name": self.application_name,
            "session_id": self.session_id,
            "audit_type": self.audit_type,
            "statement_id": self.statement_id,
            "substatement_id": self.substatement_id,
            "class": self.class_,
            "command": self.command,
            "object_type": self.object_type,
            "object_name": self.object_name,
            "statement": self.statement,
            "parameters": list(self.parameters) if self.parameters is not None else None,
            "rows": self.rows,
        }
