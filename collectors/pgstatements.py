"""pg_stat_statements as a live source: which role ran which statement on a watched table, with
how many rows, between two polls, whatever the audit log said (COPY TO and cursors vanish from it
with `pgaudit.log_rows = on`; a SECURITY DEFINER function's reads are not audited at all).

Each poll reads every entry's counters in this database (no texts: `showtext := false`, as
arrays: a poll over 10,000 entries takes some 20 ms, most of it pg_stat_statements itself) and
compares them with the previous poll's. The texts are read at the first poll and then only for
queryids not seen before, each cut to its first PARSE_CHARS characters (a text can be megabytes:
the texts kept take at most that times the entries); a text's parse tree says which watched
tables it names (`collectors.relations`, which reads a cut one as far as it parses) and whether
it changes the audit set-up (`collectors.controlsql`), asked only when its entry grows. What
goes out is cut shorter (SHOWN_CHARS): the engine keeps many of them. The first poll is a
baseline. An entry seen for the first time counts from zero, and so does one whose counters
went down (reset). Besides the statements on watched tables, the 20 others that returned the
most rows go out with `tables=()`: a function that reads the table for its caller names only
itself, and the engine attributes such reads by correlation.

A change of `pg_stat_statements_info.stats_reset` is a reset of everything (critical tampering,
by whoever ran `pg_stat_statements_reset()` when its entry is visible); a growing `dealloc` means
entries were evicted and their counts lost (a note: raise pg_stat_statements.max). The
extension missing, not loaded or unreadable is a health error with the fix, never a crash.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import operator
import re
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from collectors.controlsql import control_statement
from collectors.pgstat import DatabaseLink, polling
from collectors.relations import PARSE_CHARS, WatchedRelations, shown
from core.dbside import Observations, StatementReads, Tampered
from core.events import us_from_utc
from core.findings import Severity
from core.safetext import safe
from core.sources import SourceHealth
from core.tables import TableName

_SQL_DIR: Final = Path(__file__).parent / "sql"
TOP_OTHERS: Final = 20
"""Statements naming no watched table that are handed out each poll, by rows returned."""
PRELOAD_FIX: Final = "shared_preload_libraries = 'pgaudit,pg_stat_statements'"
CREATE_FIX: Final = "CREATE EXTENSION pg_stat_statements;"
ROLES_CACHE: Final = 10_000
RESTART_SLACK_US: Final = 60_000_000
"""A stats_reset this close after the server started is the restart's, not someone's reset."""
_RESET_CALL: Final = "pg_stat_statements_reset()"
"""How controlsql describes a call of it."""


def named_queries(path: Path) -> dict[str, str]:
    """The queries of a .sql file, each after a `-- name: NAME` line (the whole file as ""
    when there is none), without their final semicolon."""
    parts = re.split(r"^-- name: *(\w+) *$", path.read_text(), flags=re.MULTILINE)
    if len(parts) == 1:
        return {"": parts[0].strip().rstrip(";")}
    return {
        name: body.strip().rstrip(";") for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


QUERIES: Final = named_queries(_SQL_DIR / "statements.sql")
TEXTS: Final = named_queries(_SQL_DIR / "statement_texts.sql")[""]

Key = tuple[int, int, bool]
"""(userid, queryid, toplevel): one entry of pg_stat_statements in this database."""


@dataclass(frozen=True, slots=True)
class _Grown:
    key: Key
    calls: int
    rows: int


def preload_fix(preload: str) -> str:
    """The shared_preload_libraries line that adds pg_stat_statements to what is loaded now.

    >>> preload_fix("pgaudit")
    "shared_preload_libraries = 'pgaudit,pg_stat_statements'"
    """
    names = [n.strip().strip('"') for n in preload.split(",") if n.strip()]
    if not names:
        return PRELOAD_FIX
    return f"shared_preload_libraries = '{','.join([*names, 'pg_stat_statements'])}'"


class Counts:
    """One poll's counters, as pg_stat_statements gave them (arrays in its own order), and by
    entry when needed: the entries seldom change between two polls, nor does their order, and
    then comparing the arrays is a tenth of the cost of keying 10,000 entries."""

    __slots__ = ("keys", "calls", "rows", "_by_key")

    def __init__(self, row: Any) -> None:
        self.keys: tuple[list[Any], list[Any], list[Any]] = (
            row["userids"],
            row["queryids"],
            row["toplevels"],
        )
        self.calls: list[int] = row["calls"]
        self.rows: list[int] = row["rows"]
        self._by_key: dict[Key, tuple[int, int]] | None = None

    def by_key(self) -> dict[Key, tuple[int, int]]:
        """(calls, rows) by entry (hidden ones, without a queryid, left out)."""
        if self._by_key is None:
            self._by_key = {
                k: v
                for k, v in zip(
                    zip(*self.keys, strict=True),
                    zip(self.calls, self.rows, strict=True),
                    strict=True,
                )
                if k[1] is not None
            }
        return self._by_key

    def __len__(self) -> int:
        return len(self.by_key())


def compare(
    row: Any, last: Counts | dict[Key, tuple[int, int]]
) -> tuple[Counts, list[_Grown], int]:
    """This poll's counters (from the arrays of the `counts` query), the entries whose calls
    grew since `last` (by how much: from zero for a new entry or one whose counters went down),
    and how many entries are hidden (another role's, without pg_read_all_stats: no queryid).

    The code that runs over every entry every poll: when the entries are those of `last` in
    the same order, the calls arrays are compared in place; else by entry."""
    now = Counts(row)
    userids, queryids, toplevels = now.keys
    hidden = queryids.count(None)
    grown: list[_Grown] = []
    if isinstance(last, Counts) and last.keys == now.keys:
        if now.calls != last.calls:
            was_calls, was_rows = last.calls, last.rows
            moved = map(operator.ne, now.calls, was_calls)  # the loop in C: 10,000 in 0.3 ms
            for i in itertools.compress(range(len(was_calls)), moved):
                if queryids[i] is not None:
                    key = (userids[i], queryids[i], toplevels[i])
                    _grew(grown, key, now.calls[i], now.rows[i], (was_calls[i], was_rows[i]))
        return now, grown, hidden
    get = (last.by_key() if isinstance(last, Counts) else last).get
    counts = now.by_key()
    for key in [k for k, v in counts.items() if get(k) != v]:
        calls, nrows = counts[key]
        _grew(grown, key, calls, nrows, get(key))
    return now, grown, hidden


def _grew(
    grown: list[_Grown], key: Key, calls: int, nrows: int, before: tuple[int, int] | None
) -> None:
    if before is None or calls < before[0] or nrows < before[1]:
        if calls > 0:  # new, or reset: counted from zero
            grown.append(_Grown(key, calls, nrows))
    elif calls > before[0]:
        grown.append(_Grown(key, calls - before[0], nrows - before[1]))


class StatementsSource:
    """Polls pg_stat_statements every `interval` seconds (a `DatabaseSource`)."""

    name = "pg_stat_statements"

    def __init__(
        self,
        link: DatabaseLink,
        tables: Sequence[TableName],
        interval: float = 10.0,
        audit_role: str = "auditor",
    ) -> None:
        self.link = link
        self.watched = WatchedRelations(tables)
        self.interval = interval
        self.audit_role = audit_role
        self.polls = 0
        self.entries = 0
        self.last_poll_seconds = 0.0
        self.problem = ""
        """Why the source is blind though the database answers ("" : it is not)."""
        self.notes: list[str] = []
        self._last: Counts | None = None
        self._texts: dict[int, str] = {}
        self._controls: dict[int, str | None] = {}
        self._roles: dict[int, str] = {}
        self._taken_us = 0
        self._last_ok: datetime | None = None
        self._stats_reset: datetime | None = None
        self._dealloc: int | None = None
        self._server_started: datetime | None = None

    async def poll(self) -> Observations:
        """One poll: what grew since the previous one (nothing the first time: a baseline).

        Raises:
            ConnectionError: the database cannot answer now (see `health`).
        """
        t0 = time.monotonic()
        try:
            return await self._poll()
        finally:
            self.last_poll_seconds = time.monotonic() - t0

    async def _poll(self) -> Observations:
        probe = (await self.link.fetch(QUERIES["probe"]))[0]
        if not self._usable(probe):
            self._last = None  # when it is back, start from a new baseline
            return Observations()
        schema: str = probe["schema"]
        row = (await self.link.fetch(QUERIES["counts"].replace("{schema}", schema), probe["dbid"]))[
            0
        ]
        before = self._stats_reset
        afresh = before is not None and row["stats_reset"] not in (None, before)
        last: Counts | dict[Key, tuple[int, int]] = (
            self._last if self._last is not None and not afresh else {}
        )
        counts, grown, hidden = compare(row, last)
        baseline = self._last is None
        # may fail: nothing of this poll is kept until it is through
        await self._learn(schema, probe["dbid"], grown, everything=baseline)
        tampered = self._info(row, probe, afresh)
        if hidden:
            self.problem = (
                f"{hidden:,} statements of other roles are hidden: "
                f"GRANT pg_monitor TO {probe['login']};"
            )
        self._last = counts
        since, until = self._taken_us, us_from_utc(probe["taken_at"])
        self._taken_us, self._last_ok = until, probe["taken_at"]
        self.polls += 1
        self.entries = len(counts.calls) - hidden
        if baseline:
            return Observations(notes=tuple(self.notes), taken_us=until)
        statements, controls = self._statements(grown, probe, since, until)
        if tampered:
            tampered, controls = self._blame(tampered, controls)
        self._prune(counts)
        return Observations(
            statements=tuple(statements),
            tampered=tuple(tampered + controls),
            notes=tuple(self.notes),
            taken_us=until,
        )

    def _usable(self, probe: Any) -> bool:
        """Whether pg_stat_statements can be read; the fix in `problem` when it cannot (or
        when other roles' statements are hidden)."""
        preload = str(probe["preload"])
        names = {n.strip().strip('"').rsplit("/", 1)[-1] for n in preload.split(",")}
        loaded = "pg_stat_statements" in names if preload else probe["max"] is not None
        self.problem = ""
        if not loaded:
            self.problem = (
                f"pg_stat_statements is not loaded: set {preload_fix(preload)} in "
                f"postgresql.conf, restart the server, then {CREATE_FIX}"
            )
        elif probe["schema"] is None:
            self.problem = (
                f"pg_stat_statements is not created in database {probe['database']}: {CREATE_FIX}"
            )
        elif not probe["read_all_stats"]:
            self.problem = (
                "cannot see other roles' statements (no pg_read_all_stats): "
                f"GRANT pg_monitor TO {probe['login']};"
            )
        return loaded and probe["schema"] is not None

    def _info(self, row: Any, probe: Any, afresh: bool) -> list[Tampered]:
        """A reset of everything (`afresh`: stats_reset moved) as tampering, or as the loss of
        a server that stopped without saving them; evictions as a note."""
        stats_reset: datetime | None = row["stats_reset"]
        dealloc: int | None = row["dealloc"]
        started: datetime = probe["server_started"]
        restarted = self._server_started not in (None, started)
        self._server_started, self._stats_reset = started, stats_reset
        out: list[Tampered] = []
        if afresh and stats_reset is not None:
            at = us_from_utc(stats_reset)
            if restarted and 0 <= at - us_from_utc(started) < RESTART_SLACK_US:
                detail = (
                    f"pg_stat_statements counts were lost when the server restarted at "
                    f"{started:%H:%M:%S} UTC (it was not shut down cleanly)"
                )
                out.append(Tampered(at, Severity.WARNING, detail))
            else:
                detail = (
                    f"pg_stat_statements was reset at {stats_reset:%H:%M:%S} UTC: every "
                    "role's statement counts before it are lost"
                )
                out.append(Tampered(at, Severity.CRITICAL, detail))
        before_dealloc, self._dealloc = self._dealloc, dealloc
        if before_dealloc is not None and dealloc is not None and dealloc > before_dealloc:
            self._note(
                f"pg_stat_statements was full {dealloc - before_dealloc:,} times since the last "
                "poll: its least-run statements were evicted, their counts lost; raise "
                f"pg_stat_statements.max (now {probe['max']})"
            )
        return out

    async def _learn(
        self, schema: str, dbid: int, grown: list[_Grown], everything: bool = False
    ) -> None:
        """Ask the texts not known yet (`everything`: all of them, once, so that later polls
        seldom need to), and the names of new roles among the grown entries."""
        unknown = None if everything else list({g.key[1] for g in grown} - self._texts.keys())
        if unknown is None or unknown:
            sql = TEXTS.replace("{schema}", schema)
            for row in await self.link.fetch(sql, dbid, unknown, PARSE_CHARS):
                self._texts[row["queryid"]] = row["query"] or ""
        strangers = list({g.key[0] for g in grown} - self._roles.keys())
        if strangers:
            rows = await self.link.fetch(QUERIES["roles"], strangers)
            found = {r["oid"]: r["rolname"] for r in rows}
            if len(self._roles) + len(strangers) > ROLES_CACHE:
                self._roles.clear()
            for oid in strangers:  # a dropped role keeps its oid as its name
                self._roles[oid] = found.get(oid, str(oid))

    def _control(self, queryid: int, text: str) -> str | None:
        """The change to the audit set-up a statement is (parsed once per queryid)."""
        try:
            return self._controls[queryid]
        except KeyError:
            said = self._controls[queryid] = control_statement(text, self.audit_role)
            return said

    def _statements(
        self, grown: list[_Grown], probe: Any, since: int, until: int
    ) -> tuple[list[StatementReads], list[Tampered]]:
        """The grown entries on watched tables, the top others (not our own statements), and
        the control statements among them."""
        database: str = probe["database"]
        mine: int = probe["login_oid"]
        watched: list[StatementReads] = []
        others: list[tuple[int, int, StatementReads]] = []
        controls: list[Tampered] = []
        for n, g in enumerate(grown):
            userid, queryid, _ = g.key
            text = self._texts.get(queryid)
            if text is None:  # evicted between the two queries
                continue
            user = self._roles.get(userid, str(userid))
            if said := self._control(queryid, text):
                detail = f"{said} (pg_stat_statements)"
                controls.append(Tampered(until, Severity.CRITICAL, detail, user=user))
            tables = self.watched.named(text, key=queryid)
            text = shown(text)
            self._texts[queryid] = text  # judged (cached by queryid): the shown part is enough
            reads = StatementReads(
                user, database, queryid, text, tables, since, until, g.calls, g.rows
            )
            if tables:
                watched.append(reads)
            elif g.rows > 0 and userid != mine:
                others.append((g.rows, -n, reads))
        top = [r for _, _, r in heapq.nlargest(TOP_OTHERS, others)]
        return watched + top, controls

    @staticmethod
    def _blame(
        tampered: list[Tampered], controls: list[Tampered]
    ) -> tuple[list[Tampered], list[Tampered]]:
        """Fold the entry that called pg_stat_statements_reset() into the reset it caused."""
        callers = [c for c in controls if c.detail.startswith(_RESET_CALL)]
        reset = tampered[0]
        if not callers or reset.severity != Severity.CRITICAL:
            return tampered, controls
        user = callers[0].user
        blamed = Tampered(
            reset.time_us, reset.severity, f"{reset.detail} (by {safe(user, 64)})", user=user
        )
        return [blamed, *tampered[1:]], [c for c in controls if c not in callers]

    def _prune(self, counts: Counts) -> None:
        """Forget the texts of queryids gone from pg_stat_statements, once there are many."""
        if len(self._texts) > 2 * len(counts.calls) + 1_000:
            present = set(counts.keys[1])
            for queryid in [q for q in self._texts if q not in present]:
                del self._texts[queryid]
                self._controls.pop(queryid, None)
                self.watched.forget(queryid)

    def _note(self, text: str) -> None:
        self.notes = [*self.notes[-9:], text]

    async def observations(self) -> AsyncGenerator[Observations, None]:
        """Each poll's observations, every `interval` seconds, until cancelled; a failed poll
        is shown (`health`) and yields nothing."""
        async with contextlib.aclosing(polling(self.poll, self.interval, self.link)) as polls:
            async for found in polls:
                yield found

    def health(self) -> SourceHealth:
        """Down with the reason while the database does not answer; blind with the fix while
        pg_stat_statements cannot be read; else how the polls go."""
        notes = tuple(self.notes)
        if self.link.problem:
            return SourceHealth(self.name, "error", self.link.problem, notes=notes)
        if self.problem:
            return SourceHealth(self.name, "error", self.problem, notes=notes)
        if self.polls == 0:
            return SourceHealth(self.name, "waiting", "connecting", notes=notes)
        detail = (
            f"polled every {self.interval:g} s, last in {self.last_poll_seconds * 1000:.0f} ms, "
            f"{self.entries:,} statements"
        )
        return SourceHealth(self.name, "ok", detail, last_event_time=self._last_ok, notes=notes)
