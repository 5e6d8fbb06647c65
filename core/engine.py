"""The detection engine: access events in, findings and snapshots out. Pure and synchronous.

Event time is the clock (a replay runs as fast as it can; a live agent is driven by its sources).
Per event the engine does a handful of dict lookups and additions; signals that need habits are
compared against levels prepared once per principal per hour (core.alarms), and statement plans
come from a cache (core.plans), so a million events cost seconds, not minutes.

The engine owns the flow: which reader an event belongs to (core.principals), what it counts in
the reader's windows, which alarms it checks, and when a reader's severity rises into a finding.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from core.alarms import Alarms
from core.baselines import LOOKUPS, Baselines, Habit
from core.dbside import Backend, Observations, StatementReads, Tampered
from core.events import AccessEvent, EventKind
from core.findings import Code, Finding, PrincipalKey, Reason, Severity, band_score
from core.gaps import (
    SLACK_US,
    AuditLedger,
    Gap,
    RoleGap,
    Suspect,
    attribute,
    clock_text,
    role_gaps,
)
from core.plans import NO_PLAN, Plan, Plans, Sizes
from core.principals import FORGET_US, READER_IDLE_US, Principals
from core.readers import Reader
from core.rows import estimate_rows
from core.safetext import one_line
from core.settings import ExpectedPrincipal, Settings
from core.shapes import ShapeCache
from core.signals import Thresholds, audit_gap, denied, lookup_volume, tamper
from core.snapshot import ReaderView, Snapshot, TableView
from core.tables import TableName, WatchedTables
from core.tamper import TamperDetector
from core.windows import DAY_US, DENIED, HOUR_US, MINUTE_US, ROWS, Window

_MAX_SESSIONS = 200_000
SESSION_TEXT_CHARS = 4096
"""Texts kept per session up to this long; a longer one is kept as its plan (what a later
`<previously logged>` record of the statement needs)."""
_MAX_FINDINGS_KEPT = 500
_MAX_STATEMENTS_KEPT = 20_000
_MERGED_DETAIL = 600
"""Characters kept of a database-side reason joined with the one its reader held."""
UNKNOWN_USER = "(unknown)"
"""The user of a finding no source could lay at a role's door (a set-up change, an audit gap
nothing attributes)."""
_CONTROL_CLASSES = frozenset({"ROLE", "DDL", "MISC", "MISC_SET"})
"""Audit classes of records that change the set-up rather than read: checked for tampering."""

__all__ = ["FORGET_US", "LOOKUPS", "READER_IDLE_US", "Engine", "EngineConfig"]


@dataclass(frozen=True)
class EngineConfig:
    """What the engine is told: the tables, known principals, and how it learns."""

    tables: tuple[TableName, ...]
    expected: tuple[ExpectedPrincipal, ...] = ()
    learning_period_us: int = DAY_US
    quiet_period_us: int = HOUR_US
    audit_role: str = "auditor"
    audit_gap_us: int = 10 * MINUTE_US
    """How long an audited statement may account for what the table's statistics count."""
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
            audit_gap_us=int(detection.audit_gap_window.total_seconds() * 1_000_000),
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
        self._sizes = Sizes(self.watched, config.tables)
        self._plans = Plans(self.shapes, self.t.filtered_estimate)
        self._size_of = self._sizes.by_object
        self._plan_of = self._plans.by_text
        """The two caches the hot path reads per event, held here: one attribute load less."""
        self._principals = Principals(self.baselines, config.expected)
        self._readers = self._principals.readers
        """The principals' live readers, looked up per event."""
        self._alarms = Alarms(self.t, config.quiet_period_us, self.learning)
        self._sessions: dict[str, tuple[int | None, int | None, str, str | Plan | None]] = {}
        """Per session: the last statement (id, substatement id, table, text): to skip the OBJECT
        record repeating a SESSION record, and to know the text behind `<previously logged>`. A
        text over SESSION_TEXT_CHARS is kept as its plan: sessions are many, texts may be huge."""
        self._findings: deque[Finding] = deque(maxlen=_MAX_FINDINGS_KEPT)
        self._pruned_day = -1
        self.events = 0
        self.duplicates = 0
        self.now_us = 0
        self.audit_now_us = 0
        """The time of the latest audit record taken (`now_us` also moves with the database's
        polls): how far the audit log has surely been read while its tail is behind."""
        self.findings_raised: dict[Severity, int] = dict.fromkeys(Severity, 0)
        self.reasons_raised: dict[tuple[Severity, str], int] = {}
        """Findings by (severity, reason code), each reason of a finding counted."""
        self._backends: dict[tuple[str, str, str, str], tuple[Backend, ...]] = {}
        """The backends reading a watched table now (pg_stat_activity), by principal and table."""
        self._recent: dict[tuple[int, int], tuple[Backend, int]] = {}
        """Backends seen lately, by (pid, start), with when they were last seen: to attribute
        an audit gap to a COPY that ended between two polls of the statistics."""
        self._statements: deque[StatementReads] = deque(maxlen=_MAX_STATEMENTS_KEPT)
        """pg_stat_statements' latest counts per role (to attribute audit gaps)."""
        self._role_rows: dict[str, deque[list[Any]]] = {}
        """Per table, the roles' gaps lately: [user, client, application, time, rows not yet
        matched to a gap of the table's counters]."""
        self._blamed: dict[str, deque[list[Any]]] = {}
        """Per table, its counters' gaps laid at a role lately: [user, time, tuples not yet
        matched to that role's own gap]. Each read is matched once, whichever is judged
        first: never laid twice, never laid at an earlier reader."""
        self._statement_polls: deque[tuple[StatementReads, ...]] = deque(maxlen=1_000)
        """Polls of pg_stat_statements waiting for the audit log to catch up with them, to be
        held against each role's audit records (core.gaps.role_gaps)."""
        self._ledgers: dict[str, AuditLedger] = {}
        """Per watched table, the audited statements as credits against its statistics: kept
        from the first database observation on (a replay, without one, pays nothing for it)."""
        self.gap_tuples: dict[str, int] = {str(t): 0 for t in config.tables}
        """Per watched table: tuples read that the audit log did not account for (metrics)."""

    # time and learning --------------------------------------------------------------------------

    def learning(self, now_us: int | None = None) -> bool:
        """Still inside the learning period (event time since the first event ever seen)."""
        start = self.baselines.learning_started_us
        now = self.now_us if now_us is None else now_us
        return start is None or now < start + self.config.learning_period_us

    def table_rows(self, table: str) -> int | None:
        """The table's size: configured (or set by a live source), else learned from bulk reads."""
        size = self._sizes.by_table.get(table)
        return size.rows if size is not None else None

    def set_table_rows(self, table: TableName, rows: int) -> None:
        """Tell the engine a table's current size (the live pg_stat source does)."""
        size = self._sizes.by_table.get(str(table))
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
        if latest > self.audit_now_us:
            self.audit_now_us = latest
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
        self._principals.prune(now_us)

    def _audit(self, e: AccessEvent) -> Finding | None:
        table = self._size_of.get(e.object_name) or self._sizes.resolve(e.object_name)
        if table is None:
            return None
        name = table.name
        statement = e.statement
        sid = e.session_id
        session = self._sessions.get(sid)
        known: Plan | None = None  # the plan of a long text logged before
        if session is not None and session[0] == e.statement_id:
            if session[1] == e.substatement_id and session[2] == name:
                self.duplicates += 1  # the SESSION and OBJECT records of one statement
                if self._ledgers and e.audit_type == "OBJECT":  # or a self-join: two scans
                    self._ledgers[name].audited(e.time_us, e.user, 0, False, False)
                return None
            if statement is None:  # <previously logged>
                kept = session[3]
                if isinstance(kept, Plan):
                    known = kept
                else:
                    statement = kept
        t = e.time_us
        r = self._readers.get((e.user, e.client_addr, e.application_name, name))
        if r is None:
            r = self._reader(e, name, t)
        alarms = self._alarms
        if t >= r.next_expiry:
            alarms.lapse(r, t)
        size = table.rows
        plan = known or (self._plan_of.get(statement) if statement is not None else NO_PLAN)
        if plan is None or plan.size != size:
            plan = self._plans.make(statement, size)
        if len(self._sessions) >= _MAX_SESSIONS:
            self._sessions.clear()
        long = known is not None or (statement is not None and len(statement) > SESSION_TEXT_CHARS)
        self._sessions[sid] = (e.statement_id, e.substatement_id, name, plan if long else statement)
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
        if self._ledgers:
            self._ledgers[name].audited(t, e.user, rows, lookup == 1, estimated)
        # a guess at a filtered read's size is kept apart: it may point at a slice read at an odd
        # hour or by a newcomer, never page on its own
        soft = 0
        if estimated and plan.soft:
            if not (plan.limited and alarms.keyset_page(r, statement, e.parameters)):
                soft = rows
        # an aggregate scans the table but hands out summary rows, not customers' rows
        multi = 0 if lookup or soft or plan.aggregate else rows
        if t // HOUR_US != r.hour:
            r.hand_over()
            alarms.arm(r, t, t // HOUR_US, size)
        r.hour_statements += 1
        r.hour_multi += multi
        r.hour_lookups += lookup
        if rows > r.hour_max_rows:
            r.hour_max_rows = rows
        window = r.window
        buckets = window.buckets
        if buckets and buckets[-1][0] == t // window.width:
            # Window.add's common case inlined: this runs once per event
            bucket = buckets[-1]
            bucket[1] += rows
            bucket[2] += multi
            bucket[3] += lookup
            bucket[5] += soft
            totals = window.totals
            totals[1] += rows
            totals[2] += multi
            totals[3] += lookup
            totals[5] += soft
        else:
            window.add(t, rows, multi, lookup, 0, soft)
        if estimated:
            r.estimated = True
        reported = r.reported
        table.reads[reported] += 1  # the table's record is at hand: no lookup per event
        table.rows_read[reported] += rows
        r.statements += 1
        r.last_us = t
        if multi or soft or (not lookup and plan.bulk):
            if r.day is None:
                r.day = Window(DAY_US, HOUR_US)
            r.day.add(t, rows, multi, 0, 0, soft)
            alarms.multi_row(r, e, plan.shape, rows, size, estimated, t, soft > 0)
        elif lookup:
            lookups = window.totals[3]
            if lookups >= r.alarm_lookups:
                own, peers = r.own_lookups, r.role.base_lookups or None
                alarms.hold(r, lookup_volume(self.t, lookups, own, peers), t)
            key_param = plan.key_param
            if key_param >= 0:
                params = e.parameters
                if params is not None and key_param < len(params):
                    value = params[key_param]
                    if value.isascii() and value.isdigit() and len(value) < 19:  # int_param
                        alarms.key(r, int(value), t, size)
            elif plan.shape.key_literal is not None:
                alarms.key(r, plan.shape.key_literal, t, size)
        if r.changed:
            return self._settle(r, t)
        return None

    def _denied(self, e: AccessEvent) -> Finding | None:
        table = self._sizes.resolve(e.object_name)
        if table is None:
            return None
        t = e.time_us
        r = self._reader(e, table.name, t)
        if t >= r.next_expiry:
            self._alarms.lapse(r, t)
        r.window.add(t, 0, 0, 0, 1)
        r.denied += 1
        r.last_us = t
        count = r.window.totals[DENIED]
        self._alarms.hold(r, denied(self.t, count, e.command, e.object_name), t)
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
                self._alarms.lapse(r, t)
            r.last_us = t
            self._alarms.hold(r, tamper(found.detail), t)
            finding = self._settle(r, t)
            if finding is not None:
                out.append(finding)
        return out

    # what the database itself says ------------------------------------------------------------

    def observe(
        self, obs: Observations, now_us: int, audit_until_us: int, *, judge: bool = True
    ) -> list[Finding]:
        """Take one poll of a database source (core.dbside): the tables' statistics (judged
        against the audit log once it has been read up to `audit_until_us`; not at all without
        `judge`: there is no audit log to judge them against), the statements per role, the
        backends reading now, changes to the audit set-up. The findings raised, in time order.
        `now_us`: when the database answered."""
        raised: list[Finding] = []
        if now_us > self.now_us:
            self.now_us = now_us  # before anything is held: a late change lapses from now
        if not self._ledgers:
            self._ledgers = {
                str(t): AuditLedger(self.config.audit_gap_us, now_us) for t in self.config.tables
            }
        if obs.statements:
            self._statements.extend(obs.statements)
            if judge:
                self._statement_polls.append(obs.statements)
        if obs.backends is not None:
            raised.extend(self._see_backends(obs.backends, now_us))
        for reads in obs.table_reads:
            ledger = self._ledgers.get(reads.table)
            if ledger is None:
                continue
            if reads.rows:
                self.set_table_rows(TableName.parse(reads.table), reads.rows)
            if judge:
                ledger.observe(reads)
        for tampered in obs.tampered:
            raised.extend(self._tampered(tampered))
        if judge:
            raised.extend(self.judge_gaps(audit_until_us))
        raised.sort(key=lambda f: f.time_us)
        return raised

    def judge_gaps(self, audit_until_us: int) -> list[Finding]:
        """Judge the tables' statistics, and each role's statements, the audit log has caught
        up with (core.gaps). A gap no statistics lay at a role is at most a warning (one
        audited statement may scan the table several times: a correlated subquery); one laid
        at an expected principal (the nightly backup) is noted, never raised."""
        raised: list[Finding] = []
        t = self.t
        thresholds = {name: self._gap_threshold(name) for name in self._ledgers}
        polls = self._statement_polls  # first: a role's own gap explains the table's
        while polls and max(s.until_us for s in polls[0]) + SLACK_US <= audit_until_us:
            statements = polls.popleft()
            for name, ledger in self._ledgers.items():
                for role in role_gaps(name, statements, ledger, thresholds[name]):
                    raised.extend(self._role_gap(role))
        for name, ledger in self._ledgers.items():
            size = self.table_rows(name)
            for gap in ledger.judge(audit_until_us, size, thresholds[name]):
                self.gap_tuples[name] += gap.tuples_unaudited
                suspect = self._explained_by(gap)
                if suspect is None:
                    suspect = attribute(gap, self._statements, self._recent.values(), ledger)
                    if suspect is not None:  # a role gap telling the same read may come later
                        blamed = self._blamed.setdefault(name, deque(maxlen=1_000))
                        blamed.append([suspect.user, gap.until_us, gap.tuples_unaudited])
                reason = audit_gap(t, gap.tuples_unaudited, gap.size, _gap_detail(gap, suspect))
                if reason is None:
                    continue
                if suspect is None and reason.severity > Severity.WARNING:
                    reason = Reason(reason.code, Severity.WARNING, band_score(Severity.WARNING,
                                    1.0), reason.detail)  # fmt: skip
                who = suspect or Suspect(UNKNOWN_USER, "", "", "")
                key = (who.user, who.client_addr, who.application_name, name)
                raised.extend(self._gap_at(key, reason, gap.until_us))
        return raised

    def _explained_by(self, gap: Gap) -> Suspect | None:
        """The role whose own gap (pg_stat_statements' rows, judged already) accounts for at
        least half of the table's: the same read, seen twice (the table's counters move when
        the reader's transaction ends, often later). Its rows are spent on it."""
        explained = self._role_rows.get(gap.table)
        if not explained:
            return None
        oldest = gap.since_us - self.config.audit_gap_us
        while explained and explained[0][3] < oldest:
            explained.popleft()
        for entry in explained:
            user, client, app, _, rows = entry
            if rows > 0 and rows * 2 >= gap.tuples_unaudited:
                entry[4] = max(0, rows - gap.tuples_unaudited)
                return Suspect(user, client, app, f"its own rows, unaudited, are {rows:,}")
        return None

    def _gap_threshold(self, table: str) -> int:
        size, t = self.table_rows(table), self.t
        return max(t.gap_min, int(size * t.gap_warning)) if size else t.gap_unsized

    def _role_gap(self, gap: RoleGap) -> list[Finding]:
        """A role's statements read more of the table than its audit records say."""
        size = self.table_rows(gap.table)
        reason = audit_gap(self.t, gap.rows_unaudited, size, gap.evidence)
        if reason is None:
            return []
        client, app = self._backend_of(gap.user)
        key = (gap.user, client, app, gap.table)
        left = gap.rows_unaudited
        oldest = gap.since_us - self.config.audit_gap_us
        for entry in self._blamed.get(gap.table, ()):  # the table's gap already laid at it
            if entry[0] == gap.user and entry[1] >= oldest and left > 0:
                taken = min(left, entry[2])
                entry[2] -= taken
                left -= taken
        if left > 0:
            explained = self._role_rows.setdefault(gap.table, deque(maxlen=1_000))
            explained.append([gap.user, client, app, gap.until_us, left])
        raised = self._gap_at(key, reason, gap.until_us)
        r = self._readers.get(key)
        if r is not None:  # what it read shows in its rows (exact: pg_stat_statements counted)
            now = max(gap.until_us, self.now_us)
            r.window.add(now, gap.rows_unaudited, 0, 0, 0, 0)
            if r.day is None:
                r.day = Window(DAY_US, HOUR_US)
            r.day.add(now, gap.rows_unaudited, 0, 0, 0, 0)
        return raised

    def _gap_at(self, key: tuple[str, str, str, str], reason: Reason, t: int) -> list[Finding]:
        finding = self._hold_at(key, reason, t)
        return [finding] if finding is not None else []

    def _backend_of(self, user: str) -> tuple[str, str]:
        """The client address and application of the user's latest backend seen, if any."""
        mine = [(seen, b) for b, seen in self._recent.values() if b.user == user]
        if not mine:
            return "", ""
        backend = max(mine, key=lambda sb: sb[0])[1]
        return backend.client_addr or "[local]", backend.application_name

    def gaps_waiting(self) -> int:
        """Windows of statistics waiting for the audit log to catch up (or dropped)."""
        return sum(ledger.waiting for ledger in self._ledgers.values()) + len(self._statement_polls)

    def _see_backends(self, backends: tuple[Backend, ...], now_us: int) -> list[Finding]:
        """The backends reading a watched table now: each its principal's reader (made live, so
        a read the audit log misses is on the screen while it runs)."""
        current: dict[tuple[str, str, str, str], list[Backend]] = {}
        raised: list[Finding] = []
        for b in backends:
            self._recent[(b.pid, b.backend_start_us)] = (b, now_us)
            for table in b.tables:
                if table not in self.gap_tuples:
                    continue
                key = (b.user, b.client_addr or "[local]", b.application_name, table)
                current.setdefault(key, []).append(b)
                r = self._readers.get(key)
                if r is None:
                    r = self._reader(_principal(key, now_us), table, now_us)
                    finding = self._settle(r, now_us)
                    if finding is not None:
                        raised.append(finding)
                r.last_us = max(r.last_us, now_us)
        self._backends = {key: tuple(found) for key, found in current.items()}
        stale = now_us - self.config.audit_gap_us - SLACK_US
        for ident, (_, seen) in list(self._recent.items()):
            if seen < stale:
                del self._recent[ident]
        return raised

    def _tampered(self, change: Tampered) -> list[Finding]:
        """A change to the audit set-up seen on the database side: held on each table it blinds,
        by the role that made it (with its backend's address and application when one was seen),
        or by UNKNOWN_USER."""
        user, client, app = change.user, change.client_addr, change.application_name
        if user and not client and not app:
            client, app = self._backend_of(user)
        reason = tamper(change.detail, change.severity)
        out: list[Finding] = []
        for table in change.tables or tuple(self.gap_tuples):
            if table not in self.gap_tuples:
                continue
            finding = self._hold_at((user or UNKNOWN_USER, client, app, table), reason,
                                    change.time_us)  # fmt: skip
            if finding is not None:
                out.append(finding)
        return out

    def _hold_at(self, key: tuple[str, str, str, str], reason: Reason, t: int) -> Finding | None:
        """Hold a reason found on the database side on the principal's reader of the table:
        stamped `t` (when it happened), held for the quiet period from now at the earliest (a
        restart seen after a long outage, a gap judged late, must not lapse as it is raised)."""
        r = self._reader(_principal(key, t), key[3], t)
        now = max(t, self.now_us)
        if now >= r.next_expiry:
            self._alarms.lapse(r, now)
        r.last_us = max(r.last_us, t)
        if reason.code == Code.AUDIT_GAP and r.expected_note is not None:
            # the nightly backup's COPY, unaudited with log_rows on: noted with its note
            reason = Reason(reason.code, Severity.INFO, band_score(Severity.INFO, 1.0),
                            f"{reason.detail} (expected: {r.expected_note})")  # fmt: skip
        held = r.active.get(reason.code)
        if held is not None and held[0].detail != reason.detail:
            # one reason of a kind per reader: the new one joins what it holds, never weakens it
            # (a restart's warning after a critical REVOKE keeps both in sight, critical)
            old = held[0]
            top = reason if reason.severity >= old.severity else old
            detail = one_line(f"{reason.detail}; before: {old.detail}", _MERGED_DETAIL)
            reason = Reason(reason.code, top.severity, max(reason.score, old.score), detail)
        self._alarms.hold(r, reason, now)
        return self._settle(r, t)

    def _reader(self, e: AccessEvent, table: str, t: int) -> Reader:
        """The event's principal's reader of `table`; a new one may hold a first-seen reason."""
        r = self._readers.get((e.user, e.client_addr, e.application_name, table))
        if r is None:
            r, reason = self._principals.admit(e, table, t, self.learning(t))
            self._alarms.hold(r, reason, t)
        return r

    # severity -----------------------------------------------------------------------------------

    def _settle(self, r: Reader, t: int) -> Finding | None:
        """A finding when the reasons just raised lift the reader's severity above the reported."""
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
        counts = self.reasons_raised
        for reason in reasons:
            counts[(severity, reason.code)] = counts.get((severity, reason.code), 0) + 1
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
                self._alarms.lapse(r, now)
            r.window.advance(now)
            if r.day is not None:
                r.day.advance(now)
            views.append(self._view(r, now))
        views.sort(key=lambda v: (v.severity, v.score, v.last_seen_us), reverse=True)
        tables = tuple(TableView(str(t), self.table_rows(str(t))) for t in self.config.tables)
        return Snapshot(
            now,
            tuple(views),
            tuple(self._findings),
            self.events,
            self.learning(now),
            tables,
            readers_total=len(self._readers),
        )

    def read_counts(self) -> dict[str, tuple[list[int], list[int]]]:
        """Per watched table: statements and rows read, each indexed by the reader's severity
        at the time."""
        return {name: (t.reads, t.rows_read) for name, t in self._sizes.by_table.items()}

    def summary(
        self, now_us: int, skip: Collection[tuple[str, str, str, str]]
    ) -> tuple[dict[str, tuple[int, int]], dict[tuple[str, Severity], int]]:
        """For the metrics, over every live reader: per table, the highest score and the rows
        read in the last hour of the readers not in `skip` (user, client, application, table);
        and the readers per (table, severity). Scores are assessed only where the severity is
        above NONE (few), so this stays cheap with 100,000 readers."""
        folded: dict[str, tuple[int, int]] = {}
        counts: dict[tuple[str, Severity], int] = {}
        for key, r in self._readers.items():
            table = key[3]
            sev = r.reported
            counts[(table, sev)] = counts.get((table, sev), 0) + 1
            if key in skip:
                continue
            r.window.advance(now_us)
            score = r.assess()[1] if sev > Severity.NONE else 0
            top, rows = folded.get(table, (0, 0))
            folded[table] = (max(top, score), rows + r.window.totals[ROWS])
        return folded, counts

    def counters(self) -> dict[str, Any]:
        """The running counts, JSON-able: events, and per watched table the statements and rows
        read by severity. Saved with the source's position, so a restart continues them
        (`restore_counters`) exactly where the position resumes."""
        return {
            "events": self.events,
            "tables": {
                name: {"reads": list(t.reads), "rows_read": list(t.rows_read)}
                for name, t in self._sizes.by_table.items()
            },
        }

    def restore_counters(self, saved: Mapping[str, Any]) -> None:
        """Continue the counts `counters` gave (call before any event). Whatever is malformed or
        foreign is skipped field by field, and tables no longer watched are ignored."""
        events = saved.get("events")
        if _is_count(events):
            self.events = events
        tables = saved.get("tables")
        if not isinstance(tables, Mapping):
            return
        for name, counts in tables.items():
            table = self._sizes.by_table.get(name) if isinstance(name, str) else None
            if table is None or not isinstance(counts, Mapping):
                continue
            for values, into in ((counts.get("reads"), table.reads),
                                 (counts.get("rows_read"), table.rows_read)):  # fmt: skip
                if (
                    isinstance(values, list)
                    and len(values) == len(into)
                    and all(_is_count(v) for v in values)
                ):
                    into[:] = values

    def backends_of(self, principal: PrincipalKey) -> tuple[Backend, ...]:
        """The principal's backends reading the table now, as the latest activity poll saw
        them (() without a database source)."""
        p = principal
        return self._backends.get((p.user, p.client_addr, p.application_name, p.table), ())

    def reported(self, principal: PrincipalKey) -> Severity:
        """The severity last reported for a reader (NONE once it fell back or left)."""
        p = principal
        r = self._readers.get((p.user, p.client_addr, p.application_name, p.table))
        return r.reported if r is not None else Severity.NONE

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
            r.day.series(ROWS, now, 24) if r.day is not None else (),
            backends=self._backends.get(
                (r.key.user, r.key.client_addr, r.key.application_name, r.key.table), ()
            ),
        )

    # operator actions ---------------------------------------------------------------------------

    def mark_expected(self, user: str, client_addr: str, application_name: str, note: str) -> int:
        """An operator declares the principal known (as an `[[expected]]` rule for exactly it).

        Its readers drop the reasons they hold (audit tampering excepted: that is never a habit)
        and what they read so far stops counting towards window findings. Returns how many live
        readers it touched.
        """
        self._principals.mark(user, client_addr, application_name, note)
        touched = 0
        for key, r in self._readers.items():
            if key[0] == user and key[1] == client_addr and key[2] == application_name:
                self._alarms.forgive(r, note, self.now_us)
                if r.hour >= 0:  # levels for the rest of the hour, now with the note
                    self._alarms.arm(r, self.now_us, r.hour, self.table_rows(key[3]))
                touched += 1
        return touched

    def save(self, directory: Path, *, hand_over: bool = True) -> Path:
        """Persist the baselines to `directory` (the state dir), the current hour included.

        `hand_over=False` (a periodic save while running) leaves the live readers as they are and
        saves the current hour from copies of their habits: saving every few minutes must not
        split each hour into pieces, whose busiest-hour figures would understate the habit.
        """
        if hand_over:
            for r in self._readers.values():
                r.hand_over()
            return self.baselines.save(directory)
        habits = dict(self.baselines.habits)
        for key, r in self._readers.items():
            if r.hour_statements:  # as Reader.hand_over, on a copy
                habit = Habit.from_record(r.habit.to_record())
                habit.add_hour(
                    r.hour, r.hour_statements, r.hour_multi, r.hour_lookups, r.hour_max_rows
                )
                habit.last_us = max(habit.last_us, r.last_us)
                habits[key] = habit
        return Baselines(self.baselines.learning_started_us, habits).save(directory)


def _principal(key: tuple[str, str, str, str], t: int) -> AccessEvent:
    """An event standing for a principal the database side saw (to admit it as a reader)."""
    return AccessEvent(
        time_us=t,
        kind=EventKind.AUDIT,
        user=key[0],
        database="",
        client_addr=key[1],
        application_name=key[2],
        session_id="",
        audit_type=None,
        statement_id=None,
        substatement_id=None,
        class_="READ",
        command="",
        object_type="TABLE",
        object_name=key[3],
        statement=None,
        parameters=None,
        rows=None,
    )


def _gap_detail(gap: Gap, suspect: Suspect | None) -> str:
    """The audit gap in words, with the numbers a human can check against the database."""
    when = f"{clock_text(gap.since_us)}-{clock_text(gap.until_us)} UTC"
    scans = f"{gap.seq_scans:,} sequential scan(s)" if gap.seq_scans else "index fetches"
    share = f" ({gap.tuples_unaudited / gap.size:.0%} of the table)" if gap.size else ""
    text = (
        f"the table gave out {gap.tuples:,} tuples at {when} ({scans}) but its "
        f"{gap.audited:,} audited statement(s) account for {gap.covered:,}: "
        f"{gap.tuples_unaudited:,} read unaudited{share}"
    )
    if suspect is None:
        return text + "; no statistics name the reader"
    return f"{text}; likely {suspect.user}: {suspect.evidence}"


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
