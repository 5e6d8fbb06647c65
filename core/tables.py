"""Watched tables and matching of the relation names pgaudit writes.

pgaudit writes OBJECT_NAME as a qualified name, each part quoted only when PostgreSQL would quote it
(`crm.client_list`, `crm."Client List"`). Settings and the command line accept the same syntax; an
unqualified name matches that relation in any schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def split_qualified_name(text: str) -> tuple[str, ...]:
    """Split a possibly quoted, dot-separated SQL name into its parts, folded as PostgreSQL does.

    >>> split_qualified_name('crm.Client_List')
    ('crm', 'client_list')
    >>> split_qualified_name('crm."Client ""A"".b"')
    ('crm', 'Client "A".b')

    Raises:
        ValueError: the text is not a valid name (empty part, unbalanced quote).
    """
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            j, buf = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise ValueError(f"unbalanced quote in name {text!r}")
                buf.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            part = "".join(buf)
        else:
            k = text.find(".", i)
            end = n if k < 0 else k
            part = text[i:end].strip().lower()
            if '"' in part:
                raise ValueError(f"misplaced quote in name {text!r}")
            i = end
        if not part:
            raise ValueError(f"empty part in name {text!r}")
        parts.append(part)
        if i >= n:
            return tuple(parts)
        if text[i] != ".":
            raise ValueError(f"unexpected {text[i]!r} in name {text!r}")
        i += 1


@dataclass(frozen=True, slots=True)
class TableName:
    """A watched table: schema (None = any schema) and relation name, as PostgreSQL stores them."""

    schema: str | None
    name: str
    rows: int | None = None
    """Row count when known (`--table NAME=ROWS`, settings); live sources ask the server."""

    @classmethod
    def parse(cls, text: str, rows: int | None = None) -> TableName:
        """Parse `schema.table` or `table`.

        Raises:
            ValueError: not a one- or two-part SQL name.
        """
        parts = split_qualified_name(text.strip())
        if len(parts) == 1:
            return cls(None, parts[0], rows)
        if len(parts) == 2:
            return cls(parts[0], parts[1], rows)
        raise ValueError(f"expected schema.table, got {text!r}")

    def __str__(self) -> str:
        name = _quote(self.name)
        return name if self.schema is None else f"{_quote(self.schema)}.{name}"


def _quote(part: str) -> str:
    if (
        part
        and (part[0].isalpha() or part[0] == "_")
        and all(c.islower() or c.isdigit() or c == "_" or c == "$" for c in part)
    ):
        return part
    return '"' + part.replace('"', '""') + '"'


class WatchedTables:
    """Answers "is this OBJECT_NAME one of ours?" fast: each name is resolved once, then cached."""

    __slots__ = ("tables", "_cache", "_by_relname")

    def __init__(self, tables: Iterable[TableName]) -> None:
        self.tables: tuple[TableName, ...] = tuple(tables)
        self._cache: dict[str, TableName | None] = {}
        self._by_relname: dict[str, list[TableName]] = {}
        for table in self.tables:
            self._by_relname.setdefault(table.name, []).append(table)

    def __bool__(self) -> bool:
        return bool(self.tables)

    def match(self, object_name: str) -> TableName | None:
        """The watched table an OBJECT_NAME refers to, or None."""
        try:
            return self._cache[object_name]
        except KeyError:
            pass
        found: TableName | None = None
        if object_name:
            try:
                parts = split_qualified_name(object_name)
            except ValueError:
                parts = ()
            if parts:
                # pgaudit qualifies every relation; an unqualified name is another kind of
                # object (`CREATE SCHEMA client_list`), never a schema-qualified watched table
                schema = parts[0] if len(parts) == 2 else None
                for table in self._by_relname.get(parts[-1], ()):
                    if table.schema is None or table.schema == schema:
                        found = table
                        break
        if len(self._cache) < 100_000:
            self._cache[object_name] = found
        return found

    def match_relname(self, relname: str) -> TableName | None:
        """The watched table with this unqualified name (permission-denied errors omit schemas)."""
        tables = self._by_relname.get(relname)
        return tables[0] if tables else None
