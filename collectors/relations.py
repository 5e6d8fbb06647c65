"""The relations a statement text names, from its parse tree, and which of them are watched.

pg_stat_statements and pg_stat_activity give statement texts, not the tables a statement touched;
the parse tree does. Every RangeVar node is a relation named somewhere in the statement: in a
FROM clause, a COPY (its relation or its query), a DECLARE CURSOR, a CREATE TABLE AS, an EXPLAIN,
a CTE, a subquery, a function's argument or a `BEGIN ATOMIC` body, and in each statement of a
multi-statement text. A CTE's name is kept when an unqualified relation has the same name: inside
a non-recursive CTE that name is the real table, and telling the scopes apart is not worth a
missed read (a false match costs a line, a miss costs a breach).

A text that does not parse (cut by track_activity_query_size, or not SQL) names nothing: the
callers fall back on the other sources, never on a guess. The one exception is a text cut at
PARSE_CHARS, as the sources' SQL cuts the texts it reads (a statement can be megabytes, and is
parsed inside the event loop): what parses of its beginning, closed (`cut_tree`), is read, so
that a long statement (a huge IN list, a padded comment) still names the tables it names early.
What goes out of the sources is cut shorter again (`shown`).
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any, Final

from pglast import parser

from core.tables import TableName, WatchedTables

CACHE_SIZE: Final = 50_000
MAX_NODES: Final = 200_000
"""Stop walking a parse tree after this many nodes: the text is untrusted."""
PARSE_CHARS: Final = 65_536
"""A text this long or longer is not parsed whole (a few hundred milliseconds at worst): the
sources' SQL cuts the texts it reads to this length, so a text of it is taken as cut there."""
SHOWN_CHARS: Final = 2_048
"""The longest text the sources hand out (StatementReads.query, Backend.query)."""
CUT_TRIES: Final = 8
"""How many ends of a cut text `cut_tree` tries to parse."""
_OPENS: Final = {"ASCII_40": "ASCII_41", "ASCII_91": "ASCII_93"}
"""The scanner's names of `(` and `[`, and of what closes them."""
_CLOSERS: Final = {"ASCII_41": ")", "ASCII_93": "]"}
_COMMENT_TOKENS: Final = frozenset({"SQL_COMMENT", "C_COMMENT"})
_CLAUSES: Final = frozenset(
    {"WHERE", "GROUP_P", "HAVING", "WINDOW", "ORDER", "LIMIT", "OFFSET", "RETURNING"}
    | {"UNION", "INTERSECT", "EXCEPT"}
)
"""Words before which a statement cut inside a clause (a long CASE, a string) is whole."""

Relation = tuple[str, str]
"""(schema or "", name), as PostgreSQL folds them."""


@functools.lru_cache(maxsize=1)
def parse_tree(text: str) -> list[dict[str, Any]] | None:
    """The statements of `text` as pglast's JSON tree (each `{"SelectStmt": {...}}`), or None
    when it does not parse or is PARSE_CHARS long or longer (never raises: the text is untrusted
    and may be cut anywhere). The last answer is kept: a text's relations and its change to the
    audit set-up are asked one after the other. The tree is shared: never change it."""
    if len(text) >= PARSE_CHARS:  # cut: its last word may be cut in two (`cut_tree`)
        return None
    try:
        return _stmts(parser.parse_sql_json(text))
    except Exception:  # ParseError, a too-deep tree, a NUL byte: all mean "not SQL we can read"
        return None


def _stmts(tree_json: str) -> list[dict[str, Any]] | None:
    tree = json.loads(tree_json)
    if not isinstance(tree, dict):
        return None
    return [s.get("stmt", {}) for s in tree.get("stmts", []) if isinstance(s, dict)]


def _tokens(text: str) -> tuple[list[Any], int]:
    """The tokens of a cut text (comments left out), and how many of them are whole: all but
    the last one, which may be cut in two; of a text cut inside a literal, a quoted name or a
    comment, those before it, all whole. ([], 0) when it does not scan."""
    try:
        tokens = [t for t in parser.scan(text) if t.name not in _COMMENT_TOKENS]
        return tokens, max(len(tokens) - 1, 0)
    except parser.ParseError as error:
        where = error.args[1] if len(error.args) > 1 else None  # where the open literal starts
        if not isinstance(where, int) or not 0 < where < len(text):
            return [], 0
        try:
            tokens = [t for t in parser.scan(text[:where]) if t.name not in _COMMENT_TOKENS]
            return tokens, len(tokens)
        except Exception:
            return [], 0
    except Exception:
        return [], 0


def _ends(text: str) -> list[tuple[int, str]]:
    """Where a cut text may be ended, the latest first, as (offset, what closes the statement
    there): after each of its last few whole tokens (not inside a qualified name: `crm` of a
    cut `crm.cli` is no relation), and before its last clause words (a cut CASE is not closed
    by brackets). CUT_TRIES at most.

    What closes a statement is the brackets left open, and `TO STDOUT` for a `COPY (query)`
    cut inside its query (that form only copies out)."""
    tokens, whole = _tokens(text)
    clauses = [i for i, t in enumerate(tokens[:whole]) if t.name in _CLAUSES][-2:]
    tries = {i + 1 for i in range(max(whole - CUT_TRIES + 2, 0), whole)}
    tries.update(clauses)  # a number of tokens kept: after the last few, before clause words
    tries -= {i for i in tries if i < len(tokens) and tokens[i].name == "ASCII_46"}
    ends: list[tuple[int, str]] = []
    open_: list[str] = []
    first: list[str] = []  # the first two tokens of the statement
    for kept in range(whole + 1):
        if kept in tries:  # what closes the statement here: made only here (it can be long)
            closers = "".join(_CLOSERS[c] for c in reversed(open_))
            copies = open_ and first == ["COPY", "ASCII_40"]
            end = tokens[kept - 1].end + 1 if kept else 0  # `end`: the token's last character
            ends.append((end, closers + " TO STDOUT" if copies else closers))
        if kept == whole:
            break
        name = tokens[kept].name
        if name == "ASCII_59" and not open_:
            first = []
        elif len(first) < 2:
            first.append(name)
        if name in _OPENS:
            open_.append(_OPENS[name])
        elif name in _CLOSERS and open_ and open_[-1] == name:
            open_.pop()
    return sorted({e for e in ends if e[0] > 0}, reverse=True)


def cut_tree(text: str) -> list[dict[str, Any]] | None:
    """The statements of a text cut short, as far as they go: those of the longest of a few of
    its beginnings (`_ends`, CUT_TRIES at most) that parses once closed, or None. A long IN
    list, VALUES or CASE cut anywhere still gives the statement and its relations, as does one
    cut inside a long string or comment. Only the first PARSE_CHARS characters are read.

    >>> cut_tree("SELECT * FROM crm.clients WHERE id IN ($1, $2, $3, $4")[0]["SelectStmt"][
    ...     "fromClause"][0]["RangeVar"]["relname"]
    'clients'
    """
    text = text[:PARSE_CHARS]
    wrong = len(text)  # where the text stops parsing, whatever follows
    for end, closing in _ends(text):
        if end > wrong:
            continue
        try:
            tree_json = parser.parse_sql_json(text[:end] + closing)
        except parser.ParseError as error:
            where = error.args[1] if len(error.args) > 1 else None
            if isinstance(where, int) and where < end:
                wrong = where
            continue
        except Exception:
            return None
        try:
            return _stmts(tree_json)
        except Exception:  # too deep for json: so would the shorter ones be
            return None
    return None


def statements(text: str) -> list[dict[str, Any]] | None:
    """The parse tree of `text` (`parse_tree`), or for a text of PARSE_CHARS characters or more
    (cut there by the sources' SQL, or too long to parse whole) what parses of its beginning
    (`cut_tree`)."""
    return cut_tree(text) if len(text) >= PARSE_CHARS else parse_tree(text)


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` within `limit` characters, with an ellipsis when cut (still raw: not made safe).

    >>> shown("SELECT 1", 5)
    'SELE…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    """The relations a statement text names, as (schema or "", name); () when it does not parse
    (a text cut at PARSE_CHARS: what parses of its beginning, see `statements`).

    >>> relations("COPY (SELECT * FROM crm.clients c JOIN orders o USING (id)) TO STDOUT")
    (('crm', 'clients'), ('', 'orders'))
    >>> relations("SELECT * FROM crm.cli")[0], relations("SELECT * FROM crm.cli WHERE")
    (('crm', 'cli'), ())
    """
    stmts = statements(sql_text)
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
