"""Audit tampering: changes to the audit set-up that blind pgaudit, recognised in its own records.

pgaudit logs the statements that end it (when the role's `pgaudit.log` covers them): a REVOKE from
the audit role ends object audit of a table silently, a `pgaudit.*` setting changed mutes classes or
sessions, DROP EXTENSION ends everything. Each is critical at its record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pglast import parser
from pglast.parser import ParseError

from core.safetext import one_line
from core.tables import TableName

_PGAUDIT = re.compile(r"\bpgaudit\b", re.IGNORECASE)
_SETTING = re.compile(r"\bpgaudit\.[a-z_]+", re.IGNORECASE)
_EXTENSION = re.compile(r"^\s*(drop|alter)\s+extension\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Tampering:
    """What a record did to the audit trail, and which watched tables it blinds."""

    detail: str
    tables: tuple[TableName, ...]


def _clip(text: str, limit: int = 160) -> str:
    return one_line(text, limit)


class TamperDetector:
    """Recognises tampering in control records (class ROLE, DDL, MISC, MISC_SET)."""

    def __init__(self, tables: Iterable[TableName], audit_role: str = "auditor") -> None:
        self.tables = tuple(tables)
        self.audit_role = audit_role.lower()

    def check(self, command: str, statement: str | None) -> Tampering | None:
        """The tampering a record shows, or None when it is a harmless change."""
        if not statement:
            return None
        if _PGAUDIT.search(statement):
            if _EXTENSION.match(statement):
                verb = statement.split(None, 1)[0].upper()
                what = "pgaudit dropped" if verb == "DROP" else "the pgaudit extension altered"
                return Tampering(f"{what}: {_clip(statement)}", self.tables)
            settings = sorted({m.group(0).lower() for m in _SETTING.finditer(statement)})
            if settings:
                return Tampering(
                    f"audit setting {', '.join(settings)} changed ({command or 'SET'}): "
                    f"{_clip(statement)}",
                    self.tables,
                )
        upper = command.upper()
        if upper == "REVOKE":
            return self._revoke(statement)
        if upper in ("DROP ROLE", "DROP OWNED", "ALTER ROLE", "REASSIGN OWNED"):
            return self._role_change(upper, statement)
        return None

    def _revoke(self, statement: str) -> Tampering | None:
        for stmt in _statements(statement):
            grant = stmt.get("GrantStmt")
            if grant is None or grant.get("is_grant") or grant.get("objtype") != "OBJECT_TABLE":
                continue
            grantees = {
                str(g.get("RoleSpec", {}).get("rolename", "")).lower()
                for g in grant.get("grantees", [])
            }
            if self.audit_role not in grantees:
                continue
            hit = self._tables_of(grant)
            if hit:
                names = ", ".join(str(t) for t in hit)
                return Tampering(
                    f"privilege revoked from the audit role {self.audit_role}: object audit of "
                    f"{names} stops: {_clip(statement)}",
                    hit,
                )
        return None

    def _tables_of(self, grant: dict[str, Any]) -> tuple[TableName, ...]:
        objects = grant.get("objects", [])
        if grant.get("targtype") == "ACL_TARGET_ALL_IN_SCHEMA":
            schemas = {str(o.get("String", {}).get("sval", "")) for o in objects}
            return tuple(t for t in self.tables if t.schema is None or t.schema in schemas)
        hit: list[TableName] = []
        for obj in objects:
            rel = obj.get("RangeVar", {})
            schema, name = rel.get("schemaname"), rel.get("relname")
            for table in self.tables:
                if table.name == name and (schema is None or table.schema in (None, schema)):
                    hit.append(table)
        return tuple(hit)

    def _role_change(self, command: str, statement: str) -> Tampering | None:
        role = re.escape(self.audit_role)
        if not re.search(rf'(?<![\w$"]){role}(?![\w$])|"{role}"', statement, re.IGNORECASE):
            return None
        if command == "ALTER ROLE" and not re.search(r"\brename\b|\bnologin\b", statement, re.I):
            return None
        return Tampering(
            f"the audit role {self.audit_role} changed ({command}): object audit may stop: "
            f"{_clip(statement)}",
            self.tables,
        )


def _statements(text: str) -> list[dict[str, Any]]:
    try:
        tree = json.loads(parser.parse_sql_json(text))
    except (ParseError, ValueError):
        return []
    return [s.get("stmt", {}) for s in tree.get("stmts", [])]
