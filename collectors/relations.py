"""The relations a statement text names, from its parse tree, and which of them are watched.

pg_stat_statements and pg_stat_activity give statement texts, not the tables a statement touched;
the parse tree does. Every RangeVar node is a relation named somewhere in the statement: in a
FROM clause, a COPY (its relation or its query), a DECLARE CURSOR, a CREATE TABLE AS, an EXPLAIN,
a CTE, a subquery, a function's argument or a `BEGIN ATOMIC` body, and in each statement of a
multi-statement text. A CTE's name is kept when an unqualified relation has the same name: inside
a non-recursive CTE that name is the real table, and telling the scopes apart is not worth a
missed read (a false match costs a line, a miss costs a breach).

A text that does not parse (cut by track_activity_query_size, or not SQL) names nothing: the
callers fall back on the other sources, never on a guess.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any, Final

from pglast import parser

from core.tables import TableName, WatchedTables

CACHE_SIZE: Final = 50_000
MAX_NODES: Final = 200_000
"""Stop walking a parse tree after this many nodes: the text is untrusted."""

Relation = tuple[str, str]
"""(schema or "", name), as PostgreSQL folds them."""


def parse_tree(text: str) -> list[dict[str, Any]] | None:
    """The statements of `text` as pglast's JSON tree (each `{"SelectStmt": {...}}`), or None
    when it does not parse (never raises: the text is untrusted and may be cut anywhere)."""
    try:
        tree = json.loads(parser.parse_sql_json(text))
    except Exception:  # ParseError, a too-deep tree, a NUL byte: all mean "not SQL we can read"
        return None
    if not isinstance(tree, dict):
        return None
    return [s.get("stmt", {}) for s in tree.get("stmts", []) if isinstance(s, dict)]


def tree_relations(node: Any) -> tuple[Relation, ...]:
    """Every RangeVar under `node` (a parse tree or part of one), in order, without repeats."""
    found: dict[Relation, None] = {}
    stack: list[Any] = [node]
    seen = 0
    while stack and seen < MAX_NODES:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            # a RangeVar is wrapped (`{"RangeVar": {...}}`) in lists and bare where a field
            # can only hold one (CopyStmt.relation, InsertStmt.relation, IntoClause.rel)
            name = item.get("relname")
            if isinstance(name, str) and "relpersistence" in item:
                found.setdefault((str(item.get("schemaname") or ""), name), None)
            stack.extend(v for v in reversed(item.values()) if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in reversed(item) if isinstance(v, dict | list))
    return tuple(found)


def relations(sql_text: str) -> tuple[Relation, ...]:
    """The relations a statement text names, as (schema or "", name); () when it does not parse.

    >>> relations("COPY (SELECT * FROM crm.clients c JOIN orders o USING (id)) TO STDOUT")
    (('crm', 'clients'), ('', 'orders'))
    >>> relations("SELECT * FROM crm.cli")[0], relations("SELECT * FROM crm.cli WHERE")
    (('crm', 'cli'), ())
    """
    stmts = parse_tree(sql_text)
    return tree_relations(stmts) if stmts else ()


class WatchedRelations(WatchedTables):
    """Which watched tables a statement text names, cached by the text or a key (a queryid).

    An unqualified relation matches a watched table of that name in any schema: the
    search_path that resolved it is not in the text. The cache keeps the most recently used
    `limit` answers.
    """

    __slots__ = ("limit", "_named", "_lowered")

    def __init__(self, tables: Iterable[TableName], limit: int = CACHE_SIZE) -> None:
        super().__init__(tables)
        self.limit = limit
        self._lowered = tuple({t.name.lower() for t in self.tables})
        self._named: OrderedDict[Hashable, tuple[str, ...]] = OrderedDict()

    def watched(self, found: Iterable[Relation]) -> tuple[str, ...]:
        """The watched tables among relations, as `str(TableName)`, without repeats."""
        hit: dict[str, None] = {}
        for schema, name in found:
            for table in self._by_relname.get(name, ()):
                if not schema or table.schema is None or table.schema == schema:
                    hit.setdefault(str(table), None)
        return tuple(hit)

    def named(self, text: str, key: Hashable | None = None) -> tuple[str, ...]:
        """The watched tables `text` names (() when none or unparsable), remembered under `key`
        (the text itself by default)."""
        key = text if key is None else key
        cached = self._named.get(key)
        if cached is not None:
            self._named.move_to_end(key)
            return cached
        answer = self.watched(relations(text)) if self.mentions(text) else ()
        self.remember(key, answer)
        return answer

    def mentions(self, text: str) -> bool:
        """Whether `text` may name a watched table: it holds one's name, in any case, or a
        name spelt with Unicode escapes (`U&"..."`). Most statements do not, and are not
        parsed."""
        lowered = text.lower()
        return "u&" in lowered or any(name in lowered for name in self._lowered)

    def remember(self, key: Hashable, answer: tuple[str, ...]) -> None:
        """Store an answer found otherwise, dropping the least recently used beyond the limit."""
        self._named[key] = answer
        self._named.move_to_end(key)
        while len(self._named) > self.limit:
            self._named.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        """Drop one answer (its statement is gone)."""
        self._named.pop(key, None)

    @property
    def cached(self) -> int:
        """How many answers are remembered."""
        return len(self._named)
