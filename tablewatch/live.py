"""An engine fed live by its sources, as the dashboard sees it (`core.view.EngineView`).

The sources run as asyncio tasks and hand their batches to the engine in the same event loop:
detection is synchronous and takes microseconds per event, so it needs no thread. A source that
fails is shown as down with its error and restarted after a pause; its failure never stops the
others. Around the engine this keeps what only a live view needs: the latest access events (the
dashboard's tail), each reader's latest statements, the event rate and the operators' snoozes;
findings go to the alert center (`alerts.center`), which pages and keeps the alerts' states.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from collections import deque
from collections.abc import Callable, Sequence

import msgspec

from alerts.center import AlertCenter, wall_us
from collectors.backends import signal_backend
from collectors.pgstat import DatabaseLink
from collectors.statement_events import statement_events
from core.dbside import Observations
from core.engine import Engine
from core.events import AccessEvent
from core.findings import Finding, PrincipalKey
from core.safetext import ELLIPSIS, safe
from core.snapshot import AlertView, Delivery, ReaderView, Snapshot, StatementSeen
from core.sources import DatabaseSource, EventSource, SourceHealth
from core.view import ActionRefused, PageRequest
from tablewatch.trail import OperatorTrail

TAIL_EVENTS = 500
"""Access events kept for the dashboard's live tail."""
STATEMENTS_PER_READER = 8
STATEMENT_CHARS = 4096
"""Statement texts kept per reader are cut here (the screen shows far less)."""
PARAMETERS_KEPT = 32
PARAMETER_CHARS = 256
"""Each kept statement's parameters are bounded too (the screen shows 400 characters of them)."""
READERS_WITH_STATEMENTS = 20_000
"""Readers whose latest statements are kept (the least recently active are dropped first)."""
PAGE_SETTLE_SECONDS = 2.0
"""An operator's page waits this long for the sinks' first answers before the dialog reports."""
RATE_SECONDS = 10.0
RESTART_SECONDS = 5.0
"""A failed source is restarted after this pause."""
FREEZE_SECONDS = 10.0
"""How often the objects that survived lately are collected and frozen (see _freeze_survivors)."""
REFREEZE_SECONDS = 600.0
"""How often the frozen objects are handed back to the collector for one full collection."""

_Key = tuple[str, str, str, str]


_Source = EventSource | DatabaseSource


class _Feed:
    """One source, its task and what went wrong with it."""

    def __init__(self, source: _Source, make: Callable[[], _Source] | None) -> None:
        self.source = source
        self.make = make
        self.error = ""
        self.failures = 0
        self.polled_us = 0
        """A database source: the server's time of its latest poll."""

    @property
    def polls_database(self) -> bool:
        """A database source (observations), not an audit-event source (batches)."""
        return isinstance(self.source, DatabaseSource)

    def health(self) -> SourceHealth:
        health = self.source.health()
        if self.error:
            return dataclasses.replace(health, state="error", detail=self.error)
        return health


def _bounded_text(text: str | None) -> str | None:
    if text is not None and len(text) > STATEMENT_CHARS:
        return text[: STATEMENT_CHARS - 1] + ELLIPSIS
    return text


def _bounded_parameters(params: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if params is not None and (
        len(params) > PARAMETERS_KEPT or any(len(v) > PARAMETER_CHARS for v in params)
    ):
        return tuple(
            v if len(v) <= PARAMETER_CHARS else v[: PARAMETER_CHARS - 1] + ELLIPSIS
            for v in params[:PARAMETERS_KEPT]
        )
    return params


def _bounded_event(e: AccessEvent) -> AccessEvent:
    """The event as the live tail keeps it: 500 reads of a 1 MB statement must not pin 500 MB."""
    text, params = _bounded_text(e.statement), _bounded_parameters(e.parameters)
    if text is e.statement and params is e.parameters:
        return e
    return msgspec.structs.replace(e, statement=text, parameters=params)


async def _freeze_survivors() -> None:
    """Keep full garbage collections from stalling the screen.

    The engine's state is long-lived and large (hundreds of thousands of objects at 10,000
    principals); each full collection walked all of it, a quarter of a second every few seconds.
    So what is alive is collected once and then, every FREEZE_SECONDS, frozen (`gc.freeze`: out
    of the collector's reach, still freed by reference counting when dropped). Frozen objects
    that later become garbage inside reference cycles (render caches, closed screens) can only go
    at a full collection, so every REFREEZE_SECONDS the freeze is lifted for one: one longer pause
    in ten minutes instead of dozens, and nothing held longer than that. Lifted for good when the
    engine stops.
    """
    rounds = max(1, int(REFREEZE_SECONDS / FREEZE_SECONDS))
    try:
        while True:
            gc.collect()  # everything: at the start, then once every REFREEZE_SECONDS
            for _ in range(rounds):
                gc.freeze()
                await asyncio.sleep(FREEZE_SECONDS)
            gc.unfreeze()
    finally:
        gc.unfreeze()


class LiveEngine:
    """An `EngineView` over an in-process engine fed by event sources."""

    def __init__(
        self,
        engine: Engine,
        alerts: AlertCenter | None = None,
        *,
        trail: OperatorTrail | None = None,
        clock: Callable[[], int] = wall_us,
        name: str = "in-process",
        database: DatabaseLink | None = None,
    ) -> None:
        self.engine = engine
        self.alerts = alerts
        self.trail = trail
        self.database = database
        """The monitoring role's link, to signal backends (None: no [database] dsn). Only its
        settings are used: each signal opens its own short connection (collectors.backends)."""
        self.clock = clock
        self._name = name
        self._feeds: list[_Feed] = []
        self._tail: deque[AccessEvent] = deque(maxlen=TAIL_EVENTS)
        self._seen: dict[_Key, deque[StatementSeen]] = {}
        self._snoozed: dict[_Key, int] = {}
        self._counts: deque[tuple[float, int]] = deque()
        if trail is not None:
            for mark in trail.marks():
                engine.mark_expected(mark.user, mark.client_addr, mark.application_name, mark.note)

    @property
    def name(self) -> str:
        """What the dashboard is attached to."""
        return self._name

    # sources ------------------------------------------------------------------------------------

    def attach(self, source: _Source, make: Callable[[], _Source] | None = None) -> None:
        """Add a source of audit events or a database source (`make` builds a fresh one to
        restart it after a failure)."""
        self._feeds.append(_Feed(source, make))

    async def run(self) -> None:
        """Run every source, and the alert delivery, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for feed in self._feeds:
                group.create_task(self._run(feed), name=f"source {feed.source.name}")
            if self.alerts is not None:
                group.create_task(self._alerting(self.alerts), name="alerts")
            group.create_task(_freeze_survivors(), name="gc freeze")

    async def _alerting(self, center: AlertCenter) -> None:
        """The alert center's delivery and rules; a failure of theirs is shown (the health
        line) and they start again, the sources never stop for it."""
        while True:
            try:
                await center.run(self.engine.reported)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                center.problems["run"] = safe(f"alert delivery: {type(exc).__name__}: {exc}", 300)
                await asyncio.sleep(RESTART_SECONDS)

    async def _run(self, feed: _Feed) -> None:
        while True:
            try:
                source = feed.source
                if isinstance(source, DatabaseSource):
                    async for found in source.observations():
                        feed.error = ""
                        feed.polled_us = found.taken_us
                        self.observe(found)
                else:
                    async for batch in source.batches():
                        feed.error = ""
                        self.feed(batch.events)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a source's failure is shown, never fatal to the others
                feed.failures += 1
                feed.error = safe(f"{type(exc).__name__}: {exc}", 300)
                await asyncio.sleep(RESTART_SECONDS)
                if feed.make is not None:
                    try:
                        feed.source = feed.make()
                    except Exception as again:  # shown; tried again after the next pause
                        feed.error = safe(f"restart failed: {type(again).__name__}: {again}", 300)
                        continue
                    feed.error = ""  # restarted: its own health speaks from now on
            else:
                return

    def feed(self, events: Sequence[AccessEvent]) -> list[Finding]:
        """Events in time order into the engine; the findings they raised."""
        if not events:
            return []
        found = self.engine.process(events if isinstance(events, list) else list(events))
        self._counts.append((time.monotonic(), len(events)))
        self._tail.extend(map(_bounded_event, events[-TAIL_EVENTS:]))  # what the tail keeps
        self._remember_statements(events)
        self._raise(found)
        return found

    def observe(self, found: Observations) -> list[Finding]:
        """One poll of a database source into the engine (audit gaps judged as far as the
        audit log has been read); the findings it raised. Without an audit log, the statements
        pg_stat_statements counted are the access events (`collectors.statement_events`)."""
        audited = any(not feed.polls_database for feed in self._feeds)
        told = [] if audited else self.feed(statement_events(found.statements))  # raised there
        now = found.taken_us or self.clock()
        raised = self.engine.observe(found, now, self._judge_until(now), judge=audited)
        self._raise(raised)
        return told + raised

    def _judge_until(self, now_us: int) -> int:
        """Up to when (the server's clock) the database's counts can be judged against the
        audit log: `now_us` (this poll's time) while every audit source is caught up, else the
        time of the latest audit record taken (never the database's time: a tail behind would
        make every read a gap); and no later than pg_stat_statements' latest poll while it
        answers, so that a gap waits for the counts that name its reader."""
        until = now_us
        for feed in self._feeds:
            if feed.polls_database:
                if feed.source.name == "pg_stat_statements" and feed.health().state == "ok":
                    until = min(until, feed.polled_us)
                continue
            health = feed.health()
            if health.state != "ok" or health.bytes_behind > 0:
                until = min(until, self.engine.audit_now_us)
        return until

    def _raise(self, found: list[Finding]) -> None:
        """Findings to the alert rules."""
        if found and self.alerts is not None:
            try:
                self.alerts.observe(found, statement_of=self.statement_of, snoozed=self.snoozed)
            except Exception as exc:  # the findings stand; that they could not page is shown
                self.alerts.problems["rules"] = safe(
                    f"alert rules: {type(exc).__name__}: {exc}", 300
                )

    def _remember_statements(self, events: Sequence[AccessEvent]) -> None:
        """Keep each reader's latest statements. Per batch, only the last few of each reader
        are kept (a busy app's thousand lookups a second make one deque append each, nothing
        more), and the table's name is worked out once per object name."""
        watched = self.engine.watched
        tables: dict[str, str | None] = {}
        latest: dict[_Key, deque[AccessEvent]] = {}
        for e in events:
            name = e.object_name
            try:
                table = tables[name]
            except KeyError:
                found = watched.match(name) or watched.match_relname(name)
                table = tables[name] = None if found is None else str(found)
            if table is None:
                continue
            key = (e.user, e.client_addr, e.application_name, table)
            mine = latest.get(key)
            if mine is None:
                mine = latest[key] = deque(maxlen=STATEMENTS_PER_READER)
            mine.append(e)
        remembered = self._seen
        for key, mine in latest.items():
            seen = remembered.pop(key, None)
            if seen is None:
                seen = deque(maxlen=STATEMENTS_PER_READER)
                if len(remembered) >= READERS_WITH_STATEMENTS:
                    del remembered[next(iter(remembered))]
            remembered[key] = seen  # most recently active last
            for e in mine:
                text, params = _bounded_text(e.statement), _bounded_parameters(e.parameters)
                seen.append(StatementSeen(e.time_us, e.command, text, params, e.rows))

    def statement_of(self, principal: PrincipalKey) -> str | None:
        """The reader's latest statement on the table (raw: the alert center redacts it)."""
        p = principal
        seen = self._seen.get((p.user, p.client_addr, p.application_name, p.table))
        if not seen:
            return None
        return seen[-1].statement

    def rate(self) -> float:
        """Events per second over the last RATE_SECONDS."""
        now = time.monotonic()
        counts = self._counts
        while counts and counts[0][0] < now - RATE_SECONDS:
            counts.popleft()
        return sum(n for _, n in counts) / RATE_SECONDS

    # EngineView ---------------------------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        """The engine's snapshot at the wall clock, with the live parts added."""
        now = max(self.clock(), self.engine.now_us)
        snap = self.engine.snapshot(now)
        for key, until in list(self._snoozed.items()):
            if until <= now:
                del self._snoozed[key]
        readers = tuple(self._live(view) for view in snap.readers)
        center = self.alerts
        return dataclasses.replace(
            snap,
            readers=readers,
            sources=self._health(),
            alerts=center.views() if center is not None else (),
            tail=tuple(self._tail),
            rate=self.rate(),
            suppressed=center.suppressed if center is not None else 0,
            outbox=center.queued() if center is not None else 0,
        )

    def source_health(self) -> tuple[SourceHealth, ...]:
        """Each source's health."""
        return tuple(feed.health() for feed in self._feeds)

    def _health(self) -> tuple[SourceHealth, ...]:
        """The sources' health, and the alert path's when it is in trouble."""
        health = self.source_health()
        trouble = self.alerts.health() if self.alerts is not None else ""
        if trouble:
            health += (SourceHealth("alerts", "error", safe(trouble, 300)),)
        return health

    def _live(self, view: ReaderView) -> ReaderView:
        p = view.principal
        key = (p.user, p.client_addr, p.application_name, p.table)
        seen = self._seen.get(key)
        snoozed = self._snoozed.get(key)
        if seen is None and snoozed is None:
            return view
        return dataclasses.replace(view, seen=tuple(seen) if seen else (), snoozed_until_us=snoozed)

    async def page(self, request: PageRequest) -> AlertView:
        """Queue the operator's page for every sink; the alert once the sinks first answered
        (or PAGE_SETTLE_SECONDS passed: it is then still queued, and retried)."""
        center = self._center()
        p = request.principal
        alert = center.page(
            p,
            request.severity,
            request.reasons,
            note=request.note,
            operator=request.operator,
            statement=self.statement_of(p),
        )
        trail = self._trail_failure(
            "page",
            request.operator,
            p,
            severity=request.severity.label,
            note=request.note,
            key=alert.key,
        )
        alert = await center.settle(alert.key, PAGE_SETTLE_SECONDS) or alert
        return dataclasses.replace(alert, deliveries=(*alert.deliveries, *trail))

    async def acknowledge(self, key: str, note: str, operator: str) -> AlertView:
        """Acknowledge the alert in every sink that got it."""
        return await self._act("acknowledge", key, note, operator)

    async def resolve(self, key: str, note: str, operator: str) -> AlertView:
        """Resolve the alert in every sink that got it."""
        return await self._act("resolve", key, note, operator)

    async def _act(self, action: str, key: str, note: str, operator: str) -> AlertView:
        center = self._center()
        before = center.view(key)
        alert = (center.acknowledge if action == "acknowledge" else center.resolve)(
            key, note, operator
        )
        assert before is not None  # the center refused an unknown key
        trail = self._trail_failure(action, operator, before.principal, note=note, key=key)
        alert = await center.settle(key, PAGE_SETTLE_SECONDS) or alert
        return dataclasses.replace(alert, deliveries=(*alert.deliveries, *trail))

    def _center(self) -> AlertCenter:
        if self.alerts is None or not self.alerts.sinks:
            raise ActionRefused("no alert sink is configured: nothing would receive the page")
        return self.alerts

    def _trail_failure(
        self, action: str, operator: str, p: PrincipalKey, **details: object
    ) -> tuple[Delivery, ...]:
        """Record the action; during an incident the action matters more than the trail, so a
        trail that cannot be written is reported with the action, never stops it."""
        try:
            self._record(action, operator, p, self.clock(), **details)
        except ActionRefused as exc:
            return (Delivery("operator-trail", "failed", str(exc)),)
        return ()

    async def mark_expected(self, principal: PrincipalKey, note: str, operator: str) -> None:
        """Declare the principal known from now on (kept in the operator trail)."""
        p = principal
        self._record("expected", operator, p, self.clock(), note=note)
        self.engine.mark_expected(p.user, p.client_addr, p.application_name, note or "expected")

    async def snooze(self, principal: PrincipalKey, seconds: int, operator: str) -> None:
        """Keep the reader from paging for `seconds` (0 lifts the snooze)."""
        if seconds < 0:
            raise ActionRefused("a snooze lasts zero seconds or more")
        p = principal
        now = self.clock()
        self._record("snooze", operator, p, now, seconds=seconds)
        key = (p.user, p.client_addr, p.application_name, p.table)
        if seconds:
            self._snoozed[key] = now + seconds * 1_000_000
        else:
            self._snoozed.pop(key, None)

    async def signal_backend(
        self, principal: PrincipalKey, pid: int, terminate: bool, operator: str
    ) -> str:
        """Cancel the query of (or terminate) one of the reader's backends; one line.

        Only a pid the latest activity poll saw reading the table for this very reader is
        signalled (and only while it is still the session that was seen): a dashboard's stale
        row, or a request naming any pid, never reaches another session. An attempt that
        reached the database is recorded in the operator trail with its outcome, refused or
        not; like a page, the action matters more than the trail, so a trail that cannot be
        written is said with the answer rather than stopping the action.
        """
        p = principal
        if self.database is None:
            raise ActionRefused(
                "no [database] dsn is configured: tablewatch cannot reach the server's backends"
            )
        backend = next((b for b in self.engine.backends_of(p) if b.pid == pid), None)
        if backend is None:
            who = f"{p.user}@{p.client_addr}" if p.client_addr else p.user
            raise ActionRefused(
                safe(f"backend {pid} is no longer reading {p.table} for {who}", 300)
            )
        action = "terminate" if terminate else "cancel"
        try:
            done = await signal_backend(
                self.database, pid, terminate, started_us=backend.backend_start_us
            )
        except ActionRefused as exc:
            trail = self._trail_failure(
                action, operator, p, pid=pid, kind=backend.kind, outcome=f"refused: {exc}"
            )
            if trail:
                raise ActionRefused(f"{exc} (and {trail[0].detail})") from None
            raise
        trail = self._trail_failure(action, operator, p, pid=pid, kind=backend.kind, outcome=done)
        return f"{done} (but {trail[0].detail})" if trail else done

    def snoozed(self, principal: PrincipalKey) -> bool:
        """Whether the reader is snoozed now (alert rules skip it)."""
        p = principal
        until = self._snoozed.get((p.user, p.client_addr, p.application_name, p.table))
        return until is not None and until > self.clock()

    def _record(
        self, action: str, operator: str, p: PrincipalKey, now: int, **details: object
    ) -> None:
        if self.trail is None:
            return
        try:
            self.trail.append(action, operator, p, now, **details)
        except OSError as exc:
            raise ActionRefused(
                f"cannot write the operator trail {self.trail.path}: {exc.strerror or exc}"
            ) from None
