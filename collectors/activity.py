"""pg_stat_activity as a live source: who is reading a watched table right now, and how (a COPY
out, a cursor, a plain SELECT), while it happens: the audit log writes a statement when it
ends, and with `pgaudit.log_rows = on` not at all for COPY TO and cursors.

Each poll reads the client backends of this database (not our own). A backend reads a watched
table now when it is running, or idle inside a transaction (a driver may hold a portal open),
and its query text names one (`collectors.relations`), or when its transaction holds a cursor
over one: a cursor is declared once and then read by `FETCH 100 FROM c`, which names no table,
so the DECLARE seen by an earlier poll is remembered per backend and transaction (a WITH HOLD
cursor for the session). A query whose text names no watched table is not reported, even when
it calls a function that reads one (pg_stat_statements attributes those). A statement that
changes the audit set-up (`collectors.controlsql`) is tampering, told once per query (a
session's `SET pgaudit.log = 'none'` stays its last query while it sits idle). Backends that
are gone are forgotten.

The query texts are read cut to their first PARSE_CHARS characters (track_activity_query_size
may be up to 1MB), each distinct one is read once (`_reading`), and a backend's query goes out
cut to SHOWN_CHARS.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from collectors.controlsql import control_statement
from collectors.pgstat import DatabaseLink, polling
from collectors.relations import PARSE_CHARS, WatchedRelations, shown, statements, tree_relations
from core.dbside import Backend, Observations, Tampered
from core.events import us_from_utc
from core.findings import Severity
from core.sources import SourceHealth
from core.tables import TableName

SQL: Final = (Path(__file__).parent / "sql" / "activity.sql").read_text()
CACHE_SIZE: Final = 4_096
"""Query texts whose reading is remembered."""
CACHE_TEXT: Final = 8_192
"""A longer text is remembered by its digest, not kept (PARSE_CHARS each would add up)."""
READING_STATES: Final = frozenset({"active", "idle in transaction", "fastpath function call"})
"""States in which a backend can be reading: an aborted transaction cannot, an idle one is
between statements."""
KINDS: Final = ("copy", "cursor", "select", "function", "other")
"""What a backend does to a table, the most telling first."""
_CURSOR_HOLD: Final = 0x0020  # CURSOR_OPT_HOLD in DeclareCursorStmt.options
_CLOSE_ALL: Final = ""


@dataclass(frozen=True, slots=True)
class _Step:
    """One statement of a query text, as far as reading watched tables goes."""

    kind: str
    tables: tuple[str, ...]
    declares: str | None = None
    hold: bool = False
    fetches: str | None = None
    closes: str | None = None
    """A cursor closed; "" : all of them."""


@dataclass(frozen=True, slots=True)
class _Reading:
    """What a query text does: its statements, and its change to the audit set-up."""

    steps: tuple[_Step, ...]
    control: str | None
    parsed: bool


@dataclass(frozen=True, slots=True)
class _Cursor:
    tables: tuple[str, ...]
    xact_start_us: int | None
    hold: bool


def _one(node: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(node, dict) and len(node) == 1:
        kind, body = next(iter(node.items()))
        if isinstance(body, dict):
            return str(kind), body
    return "", {}


def _select_kind(body: dict[str, Any]) -> str:
    """`function` for a SELECT that reads from functions only (`SELECT * FROM export(...)`,
    `SELECT export((SELECT array_agg(c) FROM crm.clients c))`), else `select`."""
    sources = body.get("fromClause") or []
    if sources:
        return "function" if all(_one(s)[0] == "RangeFunction" for s in sources) else "select"
    targets = [_one(t)[1].get("val") for t in body.get("targetList") or []]
    calls = [t for t in targets if _one(t)[0] == "FuncCall"]
    return "function" if calls and len(calls) == len(targets) else "select"


def _step(stmt: Any, watched: WatchedRelations) -> _Step:
    kind, body = _one(stmt)
    tables = watched.watched(tree_relations(body))
    if kind == "CopyStmt":
        return _Step("other" if body.get("is_from") else "copy", tables)
    if kind == "DeclareCursorStmt":
        hold = bool(int(body.get("options", 0)) & _CURSOR_HOLD)
        return _Step("cursor", tables, declares=str(body.get("portalname", "")), hold=hold)
    if kind == "FetchStmt":
        return _Step("cursor", tables, fetches=str(body.get("portalname", "")))
    if kind == "ClosePortalStmt":
        return _Step("other", tables, closes=str(body.get("portalname", _CLOSE_ALL)))
    if kind == "SelectStmt":
        return _Step(_select_kind(body), tables)
    if kind == "CreateTableAsStmt":
        return _Step("select", tables)
    if kind in ("CallStmt", "DoStmt"):
        return _Step("function", tables)
    return _Step("other", tables)


def read_text(text: str, watched: WatchedRelations, audit_role: str) -> _Reading:
    """What a query text does to the watched tables and to the audit set-up (one cut at
    PARSE_CHARS: as far as it parses, see `collectors.relations.statements`)."""
    control = control_statement(text, audit_role)  # first: the parse is kept for what follows
    stmts = statements(text)
    steps = tuple(_step(s, watched) for s in stmts or ())
    return _Reading(steps, control, stmts is not None)


def _us(when: datetime | None) -> int | None:
    return None if when is None else us_from_utc(when)


class ActivitySource:
    """Polls pg_stat_activity every `interval` seconds (a `DatabaseSource`)."""

    name = "pg_stat_activity"

    def __init__(
        self,
        link: DatabaseLink,
        tables: Sequence[TableName],
        interval: float = 2.0,
        audit_role: str = "auditor",
    ) -> None:
        self.link = link
        self.watched = WatchedRelations(tables)
        self.interval = interval
        self.audit_role = audit_role
        self.polls = 0
        self.last_poll_seconds = 0.0
        self.backends: tuple[Backend, ...] = ()
        self.problem = ""
        """Why the source is partly blind though the database answers ("" : it is not)."""
        self.cut_texts = 0
        """Query texts of this poll cut by track_activity_query_size (unreadable)."""
        self.query_size = 0
        self._readings: OrderedDict[str | bytes, _Reading] = OrderedDict()
        self._cursors: dict[tuple[int, int], dict[str, _Cursor]] = {}
        self._told: dict[tuple[int, int], int | None] = {}
        """The query (its start) of each backend last told as tampering."""
        self._last_ok: datetime | None = None

    async def poll(self) -> Observations:
        """One poll: every backend on a watched table now, and new tampering.

        Raises:
            ConnectionError: the database cannot answer now (see `health`).
        """
        t0 = time.monotonic()
        try:
            rows = await self.link.fetch(SQL, PARSE_CHARS)
            return self._see(rows)
        finally:
            self.last_poll_seconds = time.monotonic() - t0

    def _see(self, rows: list[Any]) -> Observations:
        me = rows[0]  # always one row, the backends' columns NULL when there are none
        self.query_size = int(me["query_size"] or 0)
        self.problem = (
            ""
            if me["read_all_stats"]
            else "cannot see other roles' queries (no pg_read_all_stats): "
            f"GRANT pg_monitor TO {me['login']};"
        )
        present: set[tuple[int, int]] = set()
        backends: list[Backend] = []
        tampered: list[Tampered] = []
        self.cut_texts = 0
        for row in rows:
            if row["pid"] is None:
                continue
            ident = (row["pid"], us_from_utc(row["backend_start"]))
            present.add(ident)
            backend, told = self._backend(row, ident, me["database"])
            if backend is not None:
                backends.append(backend)
            if told is not None:
                tampered.append(told)
        self._forget(present)
        self.backends = tuple(backends)
        self.polls += 1
        self._last_ok = me["taken_at"]
        return Observations(
            backends=self.backends,
            tampered=tuple(tampered),
            taken_us=us_from_utc(me["taken_at"]),
        )

    def _reading(self, text: str) -> _Reading:
        """The reading of a query text, remembered (the same texts come back every poll, and a
        long one takes long to parse)."""
        key: str | bytes = text
        if len(text) > CACHE_TEXT:
            key = hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=16).digest()
        found = self._readings.get(key)
        if found is not None:
            self._readings.move_to_end(key)
            return found
        found = read_text(text, self.watched, self.audit_role)
        self._readings[key] = found
        if len(self._readings) > CACHE_SIZE:
            self._readings.popitem(last=False)
        return found

    def _backend(
        self, row: Any, ident: tuple[int, int], database: str
    ) -> tuple[Backend | None, Tampered | None]:
        """The backend as a reader of watched tables (None: it is not one now), and the
        tampering its query is, when not told before."""
        query: str = row["query"] or ""
        reading = self._reading(query)
        if not reading.parsed and self.query_size and len(query.encode()) >= self.query_size - 1:
            self.cut_texts += 1
        xact_us, query_us = _us(row["xact_start"]), _us(row["query_start"])
        tables, kind = self._tables(ident, reading, xact_us)
        user, addr, app = row["usename"] or "", row["client_addr"] or "", row["application_name"]
        told = None
        if reading.control and self._told.get(ident, -1) != query_us:
            self._told[ident] = query_us
            when = query_us if query_us is not None else us_from_utc(row["backend_start"])
            detail = f"{reading.control} (pg_stat_activity, pid {row['pid']})"
            told = Tampered(
                when,
                Severity.CRITICAL,
                detail,
                user=user,
                client_addr=addr,
                application_name=app or "",
            )
        if not tables or row["state"] not in READING_STATES:
            return None, told
        backend = Backend(
            pid=row["pid"],
            user=user,
            database=database,
            client_addr=addr,
            application_name=app or "",
            state=row["state"],
            kind=kind,
            tables=tables,
            query=shown(query),
            backend_start_us=ident[1],
            xact_start_us=xact_us,
            query_start_us=query_us,
        )
        return backend, told

    def _tables(
        self, ident: tuple[int, int], reading: _Reading, xact_us: int | None
    ) -> tuple[tuple[str, ...], str]:
        """The watched tables a backend reads now and how: what its query names, the cursors
        it fetches from, the cursors its transaction holds."""
        cursors = self._cursors.get(ident, {})
        cursors = {n: c for n, c in cursors.items() if c.hold or c.xact_start_us == xact_us}
        hits: dict[str, None] = {}
        kinds: set[str] = set()
        for step in reading.steps:
            if step.closes is not None:
                if step.closes == _CLOSE_ALL:
                    cursors.clear()
                cursors.pop(step.closes, None)
            fetched = cursors.get(step.fetches) if step.fetches is not None else None
            tables = step.tables + (fetched.tables if fetched else ())
            if step.declares is not None and step.tables and (step.hold or xact_us is not None):
                cursors[step.declares] = _Cursor(step.tables, xact_us, step.hold)
            if tables:
                hits.update(dict.fromkeys(tables))
                kinds.add(step.kind)
        for cursor in cursors.values():
            if not cursor.hold:  # held by this transaction (the others were dropped above)
                hits.update(dict.fromkeys(cursor.tables))
                kinds.add("cursor")
        if cursors:
            self._cursors[ident] = cursors
        else:
            self._cursors.pop(ident, None)
        kind = next((k for k in KINDS if k in kinds), "other")
        return tuple(hits), kind

    def _forget(self, present: set[tuple[int, int]]) -> None:
        """Drop what was remembered about backends that are gone."""
        for remembered in (self._cursors, self._told):
            for ident in [i for i in remembered if i not in present]:
                del remembered[ident]

    async def observations(self) -> AsyncGenerator[Observations, None]:
        """Each poll's observations, every `interval` seconds, until cancelled; a failed poll
        is shown (`health`) and yields nothing."""
        async with contextlib.aclosing(polling(self.poll, self.interval, self.link)) as polls:
            async for found in polls:
                yield found

    def health(self) -> SourceHealth:
        """Down with the reason while the database does not answer; partly blind with the fix
        while other roles' queries are hidden; else how the polls go."""
        notes: tuple[str, ...] = ()
        if self.cut_texts:
            notes = (
                f"{self.cut_texts} query texts cut at track_activity_query_size "
                f"({self.query_size} bytes) could not be read: raise it (needs a restart)",
            )
        if self.link.problem:
            return SourceHealth(self.name, "error", self.link.problem, notes=notes)
        if self.problem:
            return SourceHealth(self.name, "error", self.problem, notes=notes)
        if self.polls == 0:
            return SourceHealth(self.name, "waiting", "connecting", notes=notes)
        count = len(self.backends)
        detail = (
            f"polled every {self.interval:g} s, last in {self.last_poll_seconds * 1000:.0f} ms, "
            f"{count} backend{'' if count == 1 else 's'} on watched tables"
        )
        return SourceHealth(self.name, "ok", detail, last_event_time=self._last_ok, notes=notes)
