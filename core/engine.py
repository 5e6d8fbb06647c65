"""The detection engine: access events in, findings and snapshots out. Pure and synchronous.

Event time is the clock (a replay runs as fast as it can; a live agent is driven by its sources).
Per event the engine does a handful of dict lookups and additions; signals that need habits are
compared against numbers prepared once per principal per hour (`_arm`), and statement shapes come
from a cache, so a million events cost seconds, not minutes.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from core.baselines import (
    LOOKUPS,
    MAX_HOUR_LOOKUPS,
    MAX_HOUR_MULTI,
    MAX_STATEMENT_ROWS,
    MULTI_ROWS,
    Baselines,
    Habit,
)
from core.events import AccessEvent, EventKind
from core.findings import Code, Finding, PrincipalKey, ReaderView, Reason, Severity, Snapshot
from core.readers import Reader, Role
from core.rows import estimate_rows
from core.settings import ExpectedPrincipal, Settings
from core.shapes import Shape, ShapeCache, ShapeKind
from core.signals import (
    Thresholds,
    denied,
    expected_volume,
    first_seen,
    lookup_volume,
    new_address,
    new_principal_volume,
    offset_walk,
    sequential_keys,
    table_fraction,
    tamper,
    unusual_hour,
    unusual_hour_volume,
)
from core.signals import bulk_read as bulk_read_signal
from core.tables import TableName, WatchedTables
from core.tamper import TamperDetector
from core.windows import DAY_US, DENIED, HOUR_US, MINUTE_US, MULTI, ROWS, Window

_NEVER = 1 << 62
READER_IDLE_US = 2 * DAY_US
"""A reader idle this long (nothing active) leaves the live set; its habit stays."""
FORGET_US = 30 * DAY_US
"""A principal unseen this long is forgotten: seen again, it is new."""
_NO_SHAPE = Shape(ShapeKind.OTHER, parsed=False)
_MAX_SESSIONS = 200_000
_MAX_FINDINGS_KEPT = 500
_CONTROL_CLASSES = frozenset({"ROLE", "DDL", "MISC", "MISC_SET"})
"""Audit classes of records that change the set-up rather than read: checked for tampering."""

__all__ = ["Engine", "EngineConfig", "LOOKUPS"]


@dataclass(frozen=True)
class EngineConfig:
    """What the engine is told: the tables, known principals, and how it learns."""

    tables: tuple[TableName, ...]
    expected: tuple[ExpectedPrincipal, ...] = ()
    learning_period_us: int = DAY_US
    quiet_period_us: int = HOUR_US
    audit_role: str = "auditor"
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_settings(
        cls, settings: Settings, tables: Iterable[TableName] | None = None
    ) -> EngineConfig:
        """The engine's configuration from settings (tables from the command line win)."""
        detection = settings.detection
        return cls(
            tables=tuple(tables) if tables is not None else tuple(settings.watched_tables()),
            expected=tuple(settings.expected),
            learning_period_us=int(detection.learning_period.total_seconds() * 1_000_000),
            quiet_period_us=int(detection.quiet_period.total_seconds() * 1_000_000),
            audit_role=detection.audit_role,
        )


class Engine:
    """Ranks the readers of the watched tables and raises findings when a reader's severity rises.

    Feed it events in time order with `process`; ask it for a `snapshot` at any time; `save` its
    baselines to the state dir and pass them back (`Baselines.load`) on the next start.
    """

    def __init__(self, config: EngineConfig, baselines: Baselines | None = None) -> None:
        self.config = config
        self.t = config.thresholds
        self.baselines = baselines if baselines is not None else Baselines()
        self.watched = WatchedTables(config.tables)
        self.shapes = ShapeCache()
        self._tamper = TamperDetector(config.tables, config.audit_role)
        self._sizes: dict[str, _Size] = {str(t): _Size(str(t), t.rows) for t in config.tables}
        self._tables: dict[str, _Size | None] = {}
        """OBJECT_NAME as written -> the watched table it names (None: not watched)."""
        self._readers: dict[tuple[str, str, str, str], Reader] = {}
        self._roles: dict[tuple[str, str], Role] = {}
        self._sessions: dict[str, tuple[int | None, int | None, str, str | None]] = {}
        """Per session: the last statement (id, substatement id, table, text): to skip the OBJECT
        record repeating a SESSION record, and to know the text behind `<previously logged>`."""
        self._plans: dict[str, _Plan] = {}
        self._findings: deque[Finding] = deque(maxlen=_MAX_FINDINGS_KEPT)
        self._networks = [
            (ipaddress.ip_network(e.client_addr, strict=False) if e.client_addr else None, e)
            for e in config.expected
        ]
        self._pruned_day = -1
        self.events = 0
        self.duplicates = 0
        self.now_us = 0
        self.findings_raised: dict[Severity, int] = dict.fromkeys(Severity, 0)
        for key, habit in self.baselines.habits.items():
            self._remember(key, habit)

    # time and learning --------------------------------------------------------------------------

    def learning(self, now_us: int | None = None) -> bool:
        """Still inside the learning period (event time since the first event ever seen)."""
        start = self.baselines.learning_started_us
        now = self.now_us if now_us is None else now_us
        return start is None or now < start + self.config.learning_period_us

    def table_rows(self, table: str) -> int | None:
        """The table's size: configured (or set by a live source), else learned from bulk reads."""
        size = self._sizes.get(table)
        return size.rows if size is not None else None

    def set_table_rows(self, table: TableName, rows: int) -> None:
        """Tell the engine a table's current size (the live pg_stat source does)."""
        size = self._sizes.get(str(table))
        if size is not None:
            size.known = rows
            size.rows = rows or size.learned or None

    # the hot path -------------------------------------------------------------------------------

    def process(self, events: Iterable[AccessEvent]) -> list[Finding]:
        """Consume events (in time order); return the findings they raised, in time order."""
        batch = events if isinstance(events, list) else list(events)
        if not batch:
            return []
        if self.baselines.learning_started_us is None:
            self.baselines.learning_started_us = batch[0].time_us
        raised: list[Finding] = []
        audit, denied_kind, control = EventKind.AUDIT, EventKind.DENIED, _CONTROL_CLASSES
        latest = self.now_us
        for event in batch:
            kind = event.kind
            if kind is audit and event.class_ not in control:
                finding = self._audit(event)
            elif kind is denied_kind:
                finding = self._denied(event)
            else:
                raised.extend(self._control(event))
                finding = None
            if finding is not None:
                raised.append(finding)
            if event.time_us > latest:
                latest = event.time_us
        self.now_us = latest
        self.events += len(batch)
        if latest // DAY_US != self._pruned_day:
            self._pruned_day = latest // DAY_US
            self.prune(latest)
        return raised

    def prune(self, now_us: int) -> None:
        """Bound memory in a long run (called once per day of event time).

        A reader idle for READER_IDLE_US with nothing active leaves the live set (its habit
        stays); a habit unseen for FORGET_US is forgotten: that principal is new again.
        """
        idle = now_us - READER_IDLE_US
        for key, r in list(self._readers.items()):
            if r.last_us < idle and not r.active:
                r.hand_over()
                del self._readers[key]
        forget = now_us - FORGET_US
        stale = [
            key
            for key, habit in self.baselines.habits.items()
            if habit.last_us < forget and key not in self._readers
        ]
        for key in stale:
            del self.baselines.habits[key]
            role = self._roles.get((key[0], key[3]))
            if role is not None:
                role.habits.pop(f"{key[1]}\x00{key[2]}", None)
                role.addresses = {k.split("\x00", 1)[0] for k in role.habits}

    def _table(self, object_name: str) -> _Size | None:
        try:
            return self._tables[object_name]
        except KeyError:
            table = self.watched.match(object_name)
            found = self._sizes[str(table)] if table is not None else None
            if len(self._tables) < 100_000:
                self._tables[object_name] = found
            return found

    def _audit(self, e: AccessEvent) -> Finding | None:
        table = self._tables.get(e.object_name) or self._table(e.object_name)
        if table is None:
            return None
        name = table.name
        statement = e.statement
        sid = e.session_id
        session = self._sessions.get(sid)
        if session is not None and session[0] == e.statement_id:
            if session[1] == e.substatement_id and session[2] == name:
                self.duplicates += 1  # the SESSION and OBJECT records of one statement
                return None
            if statement is None:
                statement = session[3]  # <previously logged>
        if len(self._sessions) >= _MAX_SESSIONS:
            self._sessions.clear()
        self._sessions[sid] = (e.statement_id, e.substatement_id, name, statement)
        t = e.time_us
        r = self._readers.get((e.user, e.client_addr, e.application_name, name))
        if r is None:
            r = self._reader(e, name, t)
        if t >= r.next_expiry:
            self._expire(r, t)
        size = table.rows
        plan = self._plans.get(statement) if statement is not None else _NO_PLAN
        if plan is None or plan.size != size:
            plan = self._plan(statement, size)
        rows = e.rows
        estimated = rows is None
        if rows is None:
            rows = plan.rows
            if rows < 0:
                rows = estimate_rows(plan.shape, e.parameters, size, self.t.filtered_estimate)
        elif plan.whole and rows > 0 and not table.known:
            table.learn(rows)
            size = table.rows
        lookup = 1 if plan.lookup and rows <= 100 else 0
        # an aggregate scans the table but hands out summary rows, not customers' rows
        multi = 0 if lookup or plan.aggregate else rows
        if t // HOUR_US != r.hour:
            r.hand_over()
            self._arm(r, t, t // HOUR_US)
        r.hour_statements += 1
        r.hour_multi += multi
        r.hour_lookups += lookup
        if rows > r.hour_max_rows:
            r.hour_max_rows = rows
        window = r.window
        window.add(t, rows, multi, lookup, 0)
        if estimated:
            r.estimated = True
        r.statements += 1
        r.last_us = t
        if multi or (not lookup and plan.bulk):
            if r.day is None:
                r.day = Window(DAY_US, HOUR_US)
            r.day.add(t, rows, multi, 0, 0)
            self._multi_row_signals(r, e, plan.shape, rows, size, estimated, t)
        elif lookup:
            lookups = window.totals[3]
            if lookups >= r.alarm_lookups:
                own, peers = r.own_lookups, r.role.base_lookups or None
                self._raise(r, lookup_volume(self.t, lookups, own, peers), t)
            key_param = plan.key_param
            if key_param >= 0:
                params = e.parameters
                if params is not None and key_param < len(params):
                    value = params[key_param]
                    if value.isdigit() and len(value) < 19:
                        self._track_key(r, int(value), t, size)
            elif plan.shape.key_literal is not None:
                self._track_key(r, plan.shape.key_literal, t, size)
        if r.changed:
            return self._settle(r, t)
        return None

    def _plan(self, statement: str | None, size: int | None) -> _Plan:
        shape = self.shapes.shape(statement) if statement else _NO_SHAPE
        depends = shape.limit_param is not None or shape.key_array_param is not None
        rows = -1 if depends else estimate_rows(shape, None, size, self.t.filtered_estimate)
        plan = _Plan(shape, size, rows)
        if statement is not None:
            if len(self._plans) >= 50_000:
                self._plans.clear()
            self._plans[statement] = plan
        return plan

    def _multi_row_signals(
        self,
        r: Reader,
        e: AccessEvent,
        shape: Shape,
        rows: int,
        size: int | None,
        estimated: bool,
        t: int,
    ) -> None:
        th = self.t
        if (size and rows >= th.bulk_info * size) or (
            shape.kind is ShapeKind.BULK and shape.limit is None and not size
        ):
            how = _how(shape, estimated, size)
            reason = bulk_read_signal(th, rows, size, how, r.habitual_rows, r.expected_note)
            self._raise(r, reason, t)
        assert r.day is not None
        hour_rows, day_rows = r.window.totals[MULTI], r.day.totals[MULTI]
        if r.spent_hour or r.spent_day:
            # rows that already raised a finding which has since lapsed: only reads beyond them
            # can raise the window signals again (else the 24 h window re-pages all day)
            r.spent_hour = min(r.spent_hour, hour_rows)
            r.spent_day = min(r.spent_day, day_rows)
            hour_rows -= r.spent_hour
            day_rows -= r.spent_day
        if size:
            if r.expected_note is not None:
                self._raise(r, expected_volume(th, day_rows, size, r.base_day, r.expected_note), t)
            elif hour_rows >= r.alarm_multi or day_rows >= r.alarm_day:
                learning = self.learning(t)
                self._raise(
                    r,
                    table_fraction(
                        th,
                        hour_rows,
                        day_rows,
                        size,
                        r.base_hour,
                        r.base_day,
                        learning,
                        r.estimated,
                    ),
                    t,
                )
        if r.new_since is not None:
            reason = new_principal_volume(th, hour_rows, size, t - r.new_since)
            if reason is not None:
                # once: a newcomer's later volume is judged like anyone's (table_fraction)
                self._raise(r, reason, t)
                r.new_since = None
        if r.unusual_hour is not None:
            self._raise(
                r,
                unusual_hour_volume(th, r.unusual_hour, r.habit.usual_hours(), hour_rows, size),
                t,
            )
        if shape.kind is ShapeKind.BULK:
            self._track_walk(r, shape, e, t, size)

    def _track_key(self, r: Reader, key: int, t: int, size: int | None) -> None:
        """Key lookups walking consecutive keys, however interleaved with other lookups.

        `r.runs` maps the next key a run expects to the run's length: one pop and one store per
        lookup. Random lookups leave runs of one, dropped when the map grows.
        """
        runs = r.runs
        length = runs.pop(key, 0) + 1
        runs[key + 1] = length
        if length > 1:
            first = key - length + 1
            if length == 2:
                r.run_starts[first] = t
            if length >= self.t.sequential_run and length % 10 == 0:
                since = r.run_starts.get(first, t)
                self._raise(r, sequential_keys(self.t, length, first, key, t - since, size), t)
        if len(runs) > 512:
            # keep the real runs (all of them, unless hundreds are interleaved to hide one:
            # then start over)
            kept = {k: v for k, v in runs.items() if v > 1}
            if len(kept) >= 256:
                kept = {}
            starts = r.run_starts
            r.runs = kept
            r.run_starts = {k - v: starts[k - v] for k, v in kept.items() if k - v in starts}

    def _track_walk(
        self, r: Reader, shape: Shape, e: AccessEvent, t: int, size: int | None
    ) -> None:
        limit, offset = shape.limit, shape.offset
        params = e.parameters
        if params is not None:
            if limit is None and shape.limit_param is not None:
                limit = _int_param(params, shape.limit_param)
            if offset is None and shape.offset_param is not None:
                offset = _int_param(params, shape.offset_param)
        if limit is None or offset is None or limit <= 0:
            return
        walk = r.walk
        if walk is not None and offset == walk[1]:
            walk[0] += 1
            walk[1] = offset + limit
        else:
            walk = r.walk = [1, offset + limit, offset, t]  # pages, next offset, start, since
        reason = offset_walk(self.t, walk[0], walk[2], walk[1], limit, t - walk[3], size)
        self._raise(r, reason, t)

    def _denied(self, e: AccessEvent) -> Finding | None:
        table = self._table(e.object_name)
        if table is None:
            return None
        t = e.time_us
        r = self._reader(e, table.name, t)
        if t >= r.next_expiry:
            self._expire(r, t)
        r.window.add(t, 0, 0, 0, 1)
        r.denied += 1
        r.last_us = t
        count = r.window.totals[DENIED]
        self._raise(r, denied(self.t, count, e.command, e.object_name), t)
        return self._settle(r, t)

    def _control(self, e: AccessEvent) -> list[Finding]:
        found = self._tamper.check(e.command, e.statement)
        if found is None:
            return []
        out: list[Finding] = []
        for table in found.tables:
            t = e.time_us
            r = self._reader(e, str(table), t)
            if t >= r.next_expiry:
                self._expire(r, t)
            r.last_us = t
            self._raise(r, tamper(found.detail), t)
            finding = self._settle(r, t)
            if finding is not None:
                out.append(finding)
        return out

    # principals -----------------------------------------------------------------------------------

    def _reader(self, e: AccessEvent, table: str, t: int) -> Reader:
        key = (e.user, e.client_addr, e.application_name, table)
        r = self._readers.get(key)
        if r is not None:
            return r
        habit = self.baselines.habits.get(key)
        fresh = habit is None
        if habit is None:
            habit = self.baselines.habits[key] = Habit(t)
        role = self._role(e.user, table)
        r = self._readers[key] = Reader(
            PrincipalKey(e.user, e.client_addr, e.application_name, table),
            habit,
            role,
            Window(HOUR_US, 5 * MINUTE_US),
            t,
            self._expected(e),
        )
        if fresh and not self.learning(t) and r.expected_note is None:
            r.new_since = t
            if not role.addresses:
                self._raise(r, first_seen(f"first seen: user {e.user!r} never read {table}"), t)
            elif e.client_addr not in role.addresses:
                known = len(role.addresses)
                self._raise(
                    r,
                    new_address(
                        f"user {e.user!r} from a new client address {e.client_addr or '?'} "
                        f"(known from {known} other address{'es' if known > 1 else ''})"
                    ),
                    t,
                )
            else:
                self._raise(
                    r,
                    first_seen(
                        f"first seen: a known user and address with a new application_name "
                        f"{e.application_name!r}"
                    ),
                    t,
                )
        if fresh:
            self._remember(key, habit)
        return r

    def _remember(self, key: tuple[str, str, str, str], habit: Habit) -> None:
        role = self._role(key[0], key[3])
        role.habits[f"{key[1]}\x00{key[2]}"] = habit
        role.addresses.add(key[1])

    def _role(self, user: str, table: str) -> Role:
        role = self._roles.get((user, table))
        if role is None:
            role = self._roles[(user, table)] = Role()
        return role

    def _expected(self, e: AccessEvent) -> str | None:
        for network, rule in self._networks:
            if rule.user is not None and rule.user != e.user:
                continue
            if rule.application_name is not None and rule.application_name != e.application_name:
                continue
            if network is not None:
                try:
                    if ipaddress.ip_address(e.client_addr) not in network:
                        continue
                except ValueError:
                    continue
            return rule.note or "expected"
        return None

    def _arm(self, r: Reader, t: int, hour: int) -> None:
        """Once per principal per hour: the habit numbers that this hour's events compare to."""
        r.hour = hour
        habit = r.habit
        role = r.role
        day = t // DAY_US
        if role.day != day:
            role.refresh(day, t)
        own_hour = habit.past(t, MAX_HOUR_MULTI)
        own_day = habit.past(t, MULTI_ROWS)
        r.own_lookups = habit.past(t, MAX_HOUR_LOOKUPS)
        r.habitual_rows = habit.past(t, MAX_STATEMENT_ROWS)
        r.base_hour = max(own_hour or 0, role.base_hour)
        r.base_day = max(own_day or 0, role.base_day)
        learning = self.learning(t)
        th = self.t
        size = self.table_rows(r.key.table)
        if size:
            beyond = 0 if learning else th.beyond_habit
            r.alarm_multi = int(
                max(
                    (th.learning_hour_critical if learning else th.hour_warning) * size,
                    beyond * r.base_hour,
                )
            )
            r.alarm_day = (
                _NEVER if learning else int(max(th.day_warning * size, beyond * r.base_day))
            )
        else:
            r.alarm_multi = r.alarm_day = _NEVER
        known = r.own_lookups is not None or role.base_lookups > 0
        r.alarm_lookups = (
            _NEVER
            if learning or not known
            else max(
                th.lookups_min, int(th.lookups_beyond * max(r.own_lookups or 0, role.base_lookups))
            )
        )
        if r.new_since is not None and t - r.new_since > th.new_principal_age_us:
            r.new_since = None
        hour_of_day = hour % 24
        r.unusual_hour = None
        if (
            not learning
            and r.expected_note is None
            and habit.past_days(t) >= th.unusual_min_days
            and habit.unusual(hour_of_day)
        ):
            r.unusual_hour = hour_of_day
            self._raise(r, unusual_hour(hour_of_day, habit.usual_hours(), habit.past_days(t)), t)

    # severity -----------------------------------------------------------------------------------

    def _raise(self, r: Reader, reason: Reason | None, t: int) -> None:
        if reason is None:
            return
        until = t + self.config.quiet_period_us
        r.active[reason.code] = (reason, until)
        if until < r.next_expiry:
            r.next_expiry = until
        r.changed = True

    def _expire(self, r: Reader, t: int) -> None:
        held = r.active.get(Code.TABLE_FRACTION)
        if held is not None and held[1] <= t:
            r.window.advance(t)
            r.spent_hour = r.window.totals[MULTI]
            if r.day is not None:
                r.day.advance(t)
                r.spent_day = r.day.totals[MULTI]
        r.active = {code: held for code, held in r.active.items() if held[1] > t}
        r.next_expiry = min((held[1] for held in r.active.values()), default=_NEVER)
        r.reported = max((held[0].severity for held in r.active.values()), default=Severity.NONE)

    def _settle(self, r: Reader, t: int) -> Finding | None:
        if not r.changed:
            return None
        r.changed = False
        severity, score, reasons = r.assess()
        if severity <= r.reported:
            return None
        r.reported = severity
        finding = Finding(t, severity, score, r.key, reasons)
        self._findings.append(finding)
        self.findings_raised[severity] += 1
        return finding

    # snapshot and state -------------------------------------------------------------------------

    def snapshot(self, now_us: int | None = None, limit: int | None = 200) -> Snapshot:
        """The readers, most anomalous first, and recent findings, as of `now_us`."""
        now = self.now_us if now_us is None else now_us
        readers = self._readers.values()
        chosen = (
            heapq.nlargest(limit, readers, key=Reader.rank)
            if limit is not None
            else sorted(readers, key=Reader.rank, reverse=True)
        )
        views: list[ReaderView] = []
        for r in chosen:
            if now >= r.next_expiry:
                self._expire(r, now)
            r.window.advance(now)
            if r.day is not None:
                r.day.advance(now)
            views.append(self._view(r, now))
        views.sort(key=lambda v: (v.severity, v.score, v.last_seen_us), reverse=True)
        return Snapshot(now, tuple(views), tuple(self._findings), self.events, self.learning(now))

    def _view(self, r: Reader, now: int) -> ReaderView:
        severity, score, reasons = r.assess()
        size = self.table_rows(r.key.table)
        rows_hour = r.window.totals[ROWS]
        return ReaderView(
            r.key,
            severity,
            score,
            reasons,
            r.statements,
            r.denied,
            rows_hour,
            r.day.totals[ROWS] if r.day is not None else rows_hour,
            rows_hour / size if size else None,
            r.estimated,
            r.habit.first_us,
            r.last_us,
            r.expected_note,
            r.window.series(ROWS, now, 12),
        )

    def save(self, directory: Path) -> Path:
        """Persist the baselines to `directory` (the state dir), the current hour included."""
        for r in self._readers.values():
            r.hand_over()
        return self.baselines.save(directory)


class _Size:
    """A watched table's size: configured or set by a live source, else learned from the rows
    pgaudit logged for whole-table reads."""

    __slots__ = ("name", "known", "learned", "rows")

    def __init__(self, name: str, known: int | None) -> None:
        self.name = name
        self.known = known
        self.learned = 0
        self.rows: int | None = known or None
        """What the signals use."""

    def learn(self, rows: int) -> None:
        if rows > self.learned:
            self.learned = rows
            self.rows = self.known or rows


class _Plan:
    """What the engine needs of a statement text, worked out once per text (and table size)."""

    __slots__ = ("shape", "size", "rows", "lookup", "aggregate", "bulk", "whole", "key_param")

    def __init__(self, shape: Shape, size: int | None, rows: int) -> None:
        self.shape = shape
        self.size = size
        self.rows = rows
        """Estimated rows when pgaudit did not log them; -1: depends on the parameters."""
        kind = shape.kind
        self.lookup = kind is ShapeKind.KEY_LOOKUP
        self.aggregate = kind is ShapeKind.AGGREGATE
        self.bulk = kind is ShapeKind.BULK
        self.whole = self.bulk and shape.limit is None and shape.limit_param is None
        self.key_param = shape.key_param if shape.key_param is not None else -1


_NO_PLAN = _Plan(_NO_SHAPE, None, 1)


def _int_param(params: tuple[str, ...], index: int) -> int | None:
    if index < len(params):
        value = params[index]
        if value.isdigit():
            return int(value)
    return None


def _how(shape: Shape, estimated: bool, size: int | None) -> str:
    if not estimated:
        return "rows logged by pgaudit"
    if shape.kind is ShapeKind.BULK and shape.limit is None and not size:
        return f"whole table by its shape ({shape.describe()}); table size unknown"
    return f"estimated from its shape ({shape.describe()}); pgaudit did not log rows"
