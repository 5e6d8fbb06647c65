"""The alert center: findings and operators' actions in, queued deliveries out, state kept.

It decides (with `alerts.rules`) which findings open an alert, groups the rest under it, and
queues each action (trigger, acknowledge, resolve) for every sink in the durable outbox, where
the `Dispatcher` picks them up; the deliveries an action queues and the alert's new state commit
together. It keeps each alert's state and each sink's delivery state for the dashboard, in
memory and in the outbox file (so both survive a restart), re-notifies alerts still active,
re-sends them to sinks that forget (Alertmanager), resolves the rules' alerts once their reader
has calmed down, and forgets what is long done. Open alerts are never forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Final

from alerts.alertstate import AlertRecord, SinkState
from alerts.delivery import Dispatcher
from alerts.outbox import Item, Outbox, OutboxError
from alerts.records import Records
from alerts.rules import FloodGate, Rules
from core.findings import Finding, PrincipalKey, Reason, Severity
from core.redact import redact
from core.safetext import safe
from core.sinks import Action, Alert, AlertSink, Outcome, Step, Verdict
from core.snapshot import AlertView
from core.view import ActionRefused

RESOLVED_KEPT: Final = 200
"""Resolved alerts kept in memory (and shown) beside every open one."""
RETENTION_SECONDS: Final = 30 * 86400.0
"""Deliveries done and alerts resolved longer ago than this are forgotten."""
PRUNE_SECONDS: Final = 3600.0
STATEMENT_CHARS: Final = 4000
TICK_SECONDS: Final = 1.0
TABLEWATCH: Final = "tablewatch"
"""The actor of the rules' own actions (auto-resolve)."""

_DONE_STATE: Final = {
    Action.TRIGGER: "sent",
    Action.ACKNOWLEDGE: "acked",
    Action.RESOLVE: "resolved",
}


def wall_us() -> int:
    """Now, in microseconds since the epoch."""
    return time.time_ns() // 1000


def summary_of(severity: Severity, principal: PrincipalKey, reasons: Sequence[Reason]) -> str:
    """One line for a pager: severity, who, which table, the top reason."""
    p = principal
    top = reasons[0].detail if reasons else "paged by an operator"
    return safe(
        f"{severity.label}: {p.user}@{p.client_addr or '?'} ({p.application_name or '-'}) "
        f"reading {p.table}: {top}",
        1000,
    )


def masked(statement: str | None) -> str | None:
    """A statement fit for a page: literals and comments masked, bounded."""
    if statement is None:
        return None
    text = redact(statement)
    return text if len(text) <= STATEMENT_CHARS else text[: STATEMENT_CHARS - 1] + "…"


class AlertCenter:
    """Alert rules, state and delivery over one outbox and a set of sinks."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Sequence[AlertSink],
        rules: Rules,
        *,
        host: str,
        clock: Callable[[], int] = wall_us,
    ) -> None:
        self.outbox = outbox
        self.records = Records(outbox.store)
        self.sinks = {sink.name: sink for sink in sinks}
        self.rules = rules
        self.host = host
        self.clock = clock
        self.dispatcher = Dispatcher(outbox, list(self.sinks.values()), self._done)
        self._records: dict[str, AlertRecord] = {}
        for text in self.records.load(RESOLVED_KEPT):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = AlertRecord.from_json(json.loads(text))
                self._records[record.alert.key] = record
        self._reconcile()
        counters = self.records.counters()
        self.gate = FloodGate(rules, counters.get("suppressed", 0))
        horizon = clock() - rules.flood_window_us
        for record in sorted(self._records.values(), key=lambda r: r.alert.started_us):
            if record.alert.origin == "rule" and record.alert.started_us > horizon:
                self.gate.remember(record.alert.principal, record.alert.started_us)
        self.snoozed_skips = counters.get("snoozed", 0)
        self.grouped = counters.get("grouped", 0)
        self._saved_counters = self._counters()
        self._dirty: set[str] = set()
        self._changed = asyncio.Event()
        self._swapped = asyncio.Event()
        self._retired: list[AlertSink] = []
        self._pruned = 0.0
        self.problems: dict[str, str] = {}
        """What failed lately, by area (queue, state, read, rules); cleared on success."""

    def _reconcile(self) -> None:
        """Deliveries finished after the last save before a stop: their fate from the outbox."""
        ids = {d.item for r in self._records.values() for d in r.deliveries.values() if d.item}
        states = self.outbox.states(ids)
        for record in self._records.values():
            for name, d in record.deliveries.items():
                found = states.get(d.item)
                if found is None or found[1] in ("queued", "folded"):
                    continue
                action, state, detail = found
                shown = _DONE_STATE[Action(action)] if state == "sent" else state
                record.deliveries[name] = SinkState(name, shown, detail, d.item)

    # the rules ----------------------------------------------------------------------------------

    def observe(
        self,
        findings: Iterable[Finding],
        *,
        statement_of: Callable[[PrincipalKey], str | None] = lambda _: None,
        snoozed: Callable[[PrincipalKey], bool] = lambda _: False,
    ) -> None:
        """Findings from the engine: open, group or hold back alerts per the rules."""
        now = self.clock()
        for finding in findings:
            if not self.rules.pages(finding.severity):
                continue
            p = finding.principal
            if snoozed(p):
                self.snoozed_skips += 1
                continue
            key = AlertView.key_for(self.rules.name, p)
            record = self._records.get(key)
            if record is not None and record.state != "resolved":
                self.grouped += 1
                record.findings += 1
                record.last_finding_us = now
                self._dirty.add(key)
                if finding.severity > record.alert.severity:
                    record.escalate(finding.severity, finding.reasons, summary_of_finding(finding))
                    self._notify(record, now)
                continue
            if not self.gate.admit(p, now):
                continue
            alert = Alert(
                key=key,
                rule=self.rules.name,
                origin="rule",
                severity=finding.severity,
                principal=p,
                summary=summary_of_finding(finding),
                reasons=finding.reasons,
                started_us=now,
                statement=masked(statement_of(p)),
                suppressed=self.gate.release(p),
                host=self.host,
            )
            self._open(alert, now)

    def page(
        self,
        principal: PrincipalKey,
        severity: Severity,
        reasons: Sequence[Reason],
        *,
        note: str,
        operator: str,
        statement: str | None = None,
        origin: str = "operator",
    ) -> AlertView:
        """An operator's page (or a test alert): never held back, never delayed."""
        now = self.clock()
        alert = Alert(
            key=AlertView.key_for(origin, principal),
            rule=origin,
            origin=origin,
            severity=severity,
            principal=principal,
            summary=summary_of(severity, principal, reasons),
            reasons=tuple(reasons),
            started_us=now,
            statement=masked(statement),
            note=note,
            operator=operator,
            host=self.host,
        )
        return self._open(alert, now).view()

    def _open(self, alert: Alert, now: int) -> AlertRecord:
        old = self._records.pop(alert.key, None)
        record = AlertRecord(alert, updated_us=now, last_finding_us=now, notified_us=now)
        if old is not None and old.state != "resolved":  # a repeated operator page: one incident
            record.alert = dataclasses.replace(alert, started_us=old.alert.started_us)
            record.findings = old.findings + 1
        self._records[alert.key] = record
        self._evict()
        self._queue(record, Step(Action.TRIGGER, now, alert.operator or TABLEWATCH))
        return record

    def _evict(self) -> None:
        """Forget the oldest resolved alerts beyond RESOLVED_KEPT (never an open one)."""
        resolved = [r for r in self._records.values() if r.state == "resolved"]
        if len(resolved) > RESOLVED_KEPT:
            resolved.sort(key=lambda r: r.updated_us)
            for record in resolved[: len(resolved) - RESOLVED_KEPT]:
                del self._records[record.alert.key]

    def _notify(self, record: AlertRecord, now: int) -> None:
        record.notified_us = now
        self._queue(record, Step(Action.TRIGGER, now, TABLEWATCH))

    def _held_until(self, record: AlertRecord, step: Step) -> int | None:
        """The end of quiet hours, for a rule's trigger sent during them."""
        if step.action is not Action.TRIGGER or record.alert.origin != "rule":
            return None
        return self.rules.quiet_until(step.time_us)

    # operators' actions -------------------------------------------------------------------------

    def acknowledge(self, key: str, note: str, operator: str) -> AlertView:
        """Acknowledge in every sink that got the alert."""
        record = self._active(key)
        if record.state == "acknowledged":
            raise ActionRefused(f"already acknowledged by {safe(record.by, 60)}")
        return self._act(record, Step(Action.ACKNOWLEDGE, self.clock(), operator, note))

    def resolve(self, key: str, note: str, operator: str) -> AlertView:
        """Resolve in every sink that got the alert."""
        return self._act(self._active(key), Step(Action.RESOLVE, self.clock(), operator, note))

    def _active(self, key: str) -> AlertRecord:
        record = self._records.get(key)
        if record is None:
            raise ActionRefused("no such alert (it may have been resolved long ago)")
        if record.state == "resolved":
            raise ActionRefused(f"already resolved by {safe(record.by, 60)}")
        return record

    def _act(self, record: AlertRecord, step: Step) -> AlertView:
        record.state = "acknowledged" if step.action is Action.ACKNOWLEDGE else "resolved"
        record.by = step.actor
        record.said = step.note
        record.updated_us = step.time_us
        self._queue(record, step)
        if record.state == "resolved":
            self._evict()
        return record.view()

    # queueing -----------------------------------------------------------------------------------

    def _queue(self, record: AlertRecord, step: Step) -> None:
        """Queue the step for every sink and save the record, in one transaction."""
        try:
            with self.outbox.store.atomic():
                for name, sink in self.sinks.items():
                    self._queue_one(record, step, name, sink)
                self.records.save({record.alert.key: self._json(record)}, self._counters())
        except OutboxError as exc:  # shown on the alert and in the health line, now
            self.problems["queue"] = f"cannot queue alerts: {exc}"
            for name in self.sinks:
                record.deliveries[name] = SinkState(name, "failed", f"not queued: {exc}")
            self._dirty.add(record.alert.key)
        else:
            self.problems.pop("queue", None)
            self._dirty.discard(record.alert.key)
        self._changed.set()
        self.dispatcher.wake()

    def _queue_one(self, record: AlertRecord, step: Step, name: str, sink: AlertSink) -> None:
        alert = record.current()
        key = alert.key
        found = self.outbox.trigger(name, key)
        if step.action is not Action.TRIGGER:
            if found is None:
                return  # this sink never heard of the alert (added to settings since)
            if step.action is Action.RESOLVE:  # a trigger not sent yet would page for nothing
                flying = self.dispatcher.in_flight
                self.outbox.cancel(name, key, keep=flying, actions=(Action.TRIGGER,))
                if not self.outbox.reached(name, key) and not self._flying(name, key):
                    self.outbox.cancel(name, key, keep=flying)  # its acknowledge too
                    record.deliveries[name] = SinkState(
                        name, "resolved", "resolved before it was delivered: nothing sent"
                    )
                    return
            if found[1] is not None:  # its trigger went out within an aggregate
                self._settle_aggregate(record, step, name, sink, found[1])
                return
        payload = sink.render(alert, step, found[0] if found else None)
        if payload is None:
            record.deliveries[name] = SinkState(name, _DONE_STATE[step.action], "")
            return
        held = self._held_until(record, step)
        item = self.outbox.enqueue(
            name, key, step.action, payload, due_at=None if held is None else held / 1e6
        )
        detail = "held: quiet hours" if held is not None else ""
        record.deliveries[name] = SinkState(name, "queued", detail, item)
        record.resent_us[name] = step.time_us

    def _flying(self, sink: str, key: str) -> bool:
        """Whether a delivery of `key` to `sink` is being sent right now."""
        flying = self.dispatcher.in_flight
        return any(i in flying for i in self.outbox.queued_ids(sink, key))

    def _settle_aggregate(
        self, record: AlertRecord, step: Step, name: str, sink: AlertSink, aggregate: int
    ) -> None:
        """An alert whose trigger was folded into an aggregate: its acknowledge stays here; once
        every alert of the aggregate is resolved, the aggregate is resolved in the sink."""
        state = _DONE_STATE[step.action]
        record.deliveries[name] = SinkState(name, state, "within an aggregate")
        if step.action is not Action.RESOLVE:
            return
        members = {m.key for m in self.outbox.members(aggregate)}
        if any((r := self._records.get(k)) is not None and r.state != "resolved" for k in members):
            return
        item = self.outbox.item(aggregate)
        if item is None:
            return
        payload = sink.render(record.current(), step, item.payload)
        if payload is not None:
            self.outbox.enqueue(name, item.key, Action.RESOLVE, payload)

    def _done(self, item: Item, verdict: Verdict, delay: float | None) -> None:
        record = self._records.get(item.key)
        if record is None:
            return
        current = record.deliveries.get(item.sink)
        if current is not None and current.item > item.id:
            return  # a later action of this alert is what the dashboard shows now
        if verdict.outcome is Outcome.SENT:
            state, detail = _DONE_STATE[Action(item.action)], verdict.detail
        elif verdict.outcome is Outcome.FAILED:
            state, detail = "failed", verdict.detail
        else:
            wait = f"retry in {delay:.0f}s: " if delay is not None else ""
            state, detail = "queued", f"{wait}{verdict.detail}"
        record.deliveries[item.sink] = SinkState(item.sink, state, detail, item.id)
        self._dirty.add(item.key)
        self._changed.set()

    # time ---------------------------------------------------------------------------------------

    def tick(self, reported: Callable[[PrincipalKey], Severity] = lambda _: Severity.NONE) -> None:
        """Auto-resolve, re-notify and re-send as due; prune; persist what changed."""
        try:
            self._tick(reported)
            if time.monotonic() - self._pruned >= PRUNE_SECONDS or not self._pruned:
                self.prune()
        except OutboxError as exc:  # a full disk: said, and tried again next tick
            self.problems["rules"] = f"alert rules: {exc}"
        else:
            self.problems.pop("rules", None)
        self.gate.sweep(self.clock())
        self.flush()

    def _tick(self, reported: Callable[[PrincipalKey], Severity]) -> None:
        now = self.clock()
        rules = self.rules
        for record in list(self._records.values()):
            if record.state == "resolved":
                continue
            if (
                record.alert.origin == "rule"
                and now - record.last_finding_us >= rules.resolve_after_us
                and not rules.pages(reported(record.alert.principal))
            ):
                self._act(record, Step(Action.RESOLVE, now, TABLEWATCH, "the reader calmed down"))
                continue
            if (
                record.state == "active"
                and rules.renotify_us
                and now - record.notified_us >= rules.renotify_us
            ):
                self._notify(record, now)
                continue
            self._resend(record, now)

    def _resend(self, record: AlertRecord, now: int) -> None:
        """Re-send to the sinks that forget an alert not re-sent (Alertmanager)."""
        alert = record.current()
        for name, sink in self.sinks.items():
            every = sink.resend_seconds
            last = record.resent_us.get(name)
            if every is None or last is None or now - last < every * 1e6:
                continue
            if self.outbox.pending(name, alert.key):
                continue
            step = (  # the acknowledged_* annotations must survive the re-send
                Step(Action.ACKNOWLEDGE, now, record.by, record.said)
                if record.state == "acknowledged"
                else Step(Action.TRIGGER, now, TABLEWATCH)
            )
            payload = sink.render(alert, step, self.outbox.trigger_payload(name, alert.key))
            if payload is not None:
                self.outbox.enqueue(name, alert.key, step.action, payload)
                self.dispatcher.wake(name)
            record.resent_us[name] = now
            self._dirty.add(alert.key)

    def prune(self) -> None:
        """Forget deliveries and resolved alerts older than RETENTION_SECONDS."""
        before = self.outbox.clock() - RETENTION_SECONDS
        open_keys = [k for k, r in self._records.items() if r.state != "resolved"]
        self.outbox.prune(before, open_keys)
        self.records.prune(before)
        self._pruned = time.monotonic()

    def _counters(self) -> dict[str, int]:
        return {
            "suppressed": self.gate.suppressed,
            "snoozed": self.snoozed_skips,
            "grouped": self.grouped,
        }

    @staticmethod
    def _json(record: AlertRecord) -> tuple[str, bool]:
        return json.dumps(record.to_json()), record.state == "resolved"

    def flush(self) -> None:
        """Persist the alerts changed since the last flush, and the counters."""
        counters = self._counters()
        if not self._dirty and counters == self._saved_counters:
            return
        records = {k: self._json(self._records[k]) for k in self._dirty if k in self._records}
        try:
            self.records.save(records, counters)
        except OutboxError as exc:
            self.problems["state"] = f"cannot keep the alerts' state: {exc}"
            return
        self.problems.pop("state", None)
        self._dirty.clear()
        self._saved_counters = counters

    # reading ------------------------------------------------------------------------------------

    def views(self) -> tuple[AlertView, ...]:
        """Every alert kept, least recently opened first."""
        return tuple(
            record.view()
            for record in sorted(self._records.values(), key=lambda r: r.alert.started_us)
        )

    def view(self, key: str) -> AlertView | None:
        """One alert as it stands."""
        record = self._records.get(key)
        return None if record is None else record.view()

    def queued(self) -> int:
        """Deliveries still queued (0, and the problem said, when the outbox cannot be read)."""
        try:
            depth = self.outbox.depth()
        except OutboxError as exc:
            self.problems["read"] = f"cannot read the outbox: {exc}"
            return 0
        self.problems.pop("read", None)
        return depth

    @property
    def suppressed(self) -> int:
        """Findings flood control held back, in total."""
        return self.gate.suppressed

    def health(self) -> str:
        """What is wrong with the alert path ("" when nothing is): the outbox or a delivery
        loop in trouble."""
        parts = list(self.problems.values())
        parts += [f"{name}: {why}" for name, why in self.dispatcher.trouble.items()]
        return "; ".join(parts)

    async def settle(
        self,
        key: str,
        seconds: float,
        *,
        sinks: Collection[str] | None = None,
        retries: bool = False,
    ) -> AlertView | None:
        """Wait (up to `seconds`) until no delivery of `key` (to `sinks`, when given) is still
        queued for a first try, or with `retries` queued at all; the alert as it stands then."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            record = self._records.get(key)
            if record is None or all(
                d.state != "queued" or (d.detail and not retries)
                for d in record.deliveries.values()
                if sinks is None or d.sink in sinks
            ):
                break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
        return self.view(key)

    async def run(
        self, reported: Callable[[PrincipalKey], Severity] = lambda _: Severity.NONE
    ) -> None:
        """Deliver and keep time until cancelled; persists state on the way out."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._delivering(), name="alert delivery")
                group.create_task(self._ticking(reported), name="alert rules")
        finally:
            self.flush()

    async def _delivering(self) -> None:
        """The dispatcher, started again over the new sinks when `reconfigure` changed them."""
        while True:
            self._swapped.clear()
            task = asyncio.create_task(self.dispatcher.run())
            swapped = asyncio.create_task(self._swapped.wait())
            try:
                await asyncio.wait({task, swapped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                swapped.cancel()
                task.cancel()  # the old dispatcher lets its deliveries in flight finish
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                retired, self._retired = self._retired, []
                for sink in retired:
                    with contextlib.suppress(Exception):
                        await sink.close()

    async def reconfigure(self, rules: Rules, sinks: Sequence[AlertSink]) -> list[str]:
        """New settings, live: the rules at once, the sinks from the next delivery (what is
        queued for a sink that is gone stays queued, and goes out if it comes back). The names
        of what changed."""
        changed = []
        if rules != self.rules:
            self.rules = rules
            self.gate.rules = rules
            changed.append("rules")
        old = self.sinks
        if [(s.name, type(s)) for s in sinks] != [(s.name, type(s)) for s in old.values()] or any(
            getattr(s, "config", None) != getattr(old[s.name], "config", None)
            for s in sinks
            if s.name in old
        ):
            self.sinks = {sink.name: sink for sink in sinks}
            self.dispatcher = Dispatcher(self.outbox, list(self.sinks.values()), self._done)
            self._retired.extend(old.values())  # closed once their dispatcher has stopped
            self._swapped.set()
            changed.append("sinks")
        else:
            for sink in sinks:
                with contextlib.suppress(Exception):
                    await sink.close()
        return changed

    async def _ticking(self, reported: Callable[[PrincipalKey], Severity]) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.tick(reported)
            except Exception as exc:  # a bug in the rules must not stop delivery: said
                self.problems["rules"] = safe(f"alert rules: {type(exc).__name__}: {exc}", 300)

    async def close(self) -> None:
        """Persist, close the sinks and the outbox."""
        self.flush()
        for sink in self.sinks.values():
            with contextlib.suppress(Exception):
                await sink.close()
        self.outbox.close()


def summary_of_finding(finding: Finding) -> str:
    """The pager line of a rule's finding."""
    return summary_of(finding.severity, finding.principal, finding.reasons)
