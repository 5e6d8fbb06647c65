"""The alert center: findings and operators' actions in, queued deliveries out, state kept.

It decides (with `alerts.rules`) which findings open an alert, groups the rest under it, and
queues each action (trigger, acknowledge, resolve) for every sink in the durable outbox, where
the `Dispatcher` picks them up. It keeps each alert's state and each sink's delivery state for the
dashboard, in memory and in the outbox file (so both survive a restart), re-notifies alerts still
active, re-sends them to sinks that forget (Alertmanager), and resolves the rules' alerts once
their reader has calmed down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from alerts.alertstate import AlertRecord
from alerts.delivery import Dispatcher
from alerts.outbox import Item, Outbox, OutboxError
from alerts.rules import FloodGate, Rules
from core.findings import Finding, PrincipalKey, Reason, Severity
from core.redact import redact
from core.safetext import safe
from core.sinks import Action, Alert, AlertSink, Outcome, Step, Verdict
from core.snapshot import AlertView
from core.view import ActionRefused

KEPT: Final = 200
"""Alerts kept in memory (and shown); older ones stay in the outbox file."""
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
        self.sinks = {sink.name: sink for sink in sinks}
        self.rules = rules
        self.host = host
        self.clock = clock
        self.dispatcher = Dispatcher(outbox, list(self.sinks.values()), self._done)
        self._records: dict[str, AlertRecord] = {}
        for text in outbox.alert_records(KEPT):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = AlertRecord.from_json(json.loads(text))
                self._records[record.alert.key] = record
        counters = outbox.counters()
        self.gate = FloodGate(rules, counters.get("suppressed", 0))
        self.snoozed_skips = counters.get("snoozed", 0)
        self.grouped = counters.get("grouped", 0)
        self._dirty: set[str] = set()
        self._changed = asyncio.Event()
        self.problems: dict[str, str] = {}
        """What failed lately, by area (queue, state, read, rules); cleared on success."""

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
            self._open(alert, now, self.rules.quiet_until(now))

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
        return self._open(alert, now, None).view()

    def _open(self, alert: Alert, now: int, due_us: int | None) -> AlertRecord:
        old = self._records.pop(alert.key, None)
        if old is not None and old.state != "resolved":  # a repeated operator page: one incident
            alert = dataclasses.replace(alert, started_us=old.alert.started_us)
        record = AlertRecord(alert, updated_us=now, last_finding_us=now, notified_us=now)
        if old is not None and old.state != "resolved":
            record.findings = old.findings + 1
        self._records[alert.key] = record
        while len(self._records) > KEPT:
            del self._records[next(iter(self._records))]
        self._queue(record, Step(Action.TRIGGER, now, alert.operator or TABLEWATCH), due_us)
        if due_us is not None:
            for delivery in record.deliveries.values():
                delivery.detail = "held: quiet hours"  # shown until the first attempt
        return record

    def _notify(self, record: AlertRecord, now: int) -> None:
        record.notified_us = now
        self._queue(record, Step(Action.TRIGGER, now, TABLEWATCH), None)

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
        self._queue(record, step, None)
        return record.view()

    # queueing -----------------------------------------------------------------------------------

    def _queue(self, record: AlertRecord, step: Step, due_us: int | None) -> None:
        alert = record.current()
        for name, sink in self.sinks.items():
            try:
                trigger = self.outbox.trigger_payload(name, alert.key)
                if step.action is not Action.TRIGGER and trigger is None:
                    continue  # this sink never heard of the alert (added to settings since)
                payload = sink.render(alert, step, trigger)
                if payload is None:
                    record.deliveries[name] = record.delivery(name, _DONE_STATE[step.action], "")
                    continue
                item = self.outbox.enqueue(
                    name,
                    alert.key,
                    step.action,
                    payload,
                    due_at=None if due_us is None else due_us / 1e6,
                )
            except OutboxError as exc:  # shown on the alert and in the health line: the
                self.problems["queue"] = f"cannot queue alerts: {exc}"  # must know, now
                record.deliveries[name] = record.delivery(name, "failed", f"not queued: {exc}")
                continue
            self.problems.pop("queue", None)
            record.deliveries[name] = record.delivery(name, "queued", "", item)
            record.resent_us[name] = step.time_us
        self._save(record)
        self.dispatcher.wake()

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
            state, detail = "queued", f"retry in {delay or 0:.0f}s: {verdict.detail}"
        record.deliveries[item.sink] = record.delivery(item.sink, state, detail, item.id)
        self._dirty.add(item.key)
        self._changed.set()

    def _save(self, record: AlertRecord) -> None:
        self._changed.set()
        try:
            self.outbox.save_alert(record.alert.key, json.dumps(record.to_json()))
        except OutboxError as exc:
            self.problems["state"] = f"cannot keep the alerts' state: {exc}"
            self._dirty.add(record.alert.key)  # tried again at the next flush
        else:
            self.problems.pop("state", None)
            self._dirty.discard(record.alert.key)

    # time ---------------------------------------------------------------------------------------

    def tick(self, reported: Callable[[PrincipalKey], Severity] = lambda _: Severity.NONE) -> None:
        """Auto-resolve, re-notify and re-send as due; persist what changed."""
        try:
            self._tick(reported)
        except OutboxError as exc:  # a full disk: said, and tried again next tick
            self.problems["rules"] = f"alert rules: {exc}"
        else:
            self.problems.pop("rules", None)
        self.flush()

    def _tick(self, reported: Callable[[PrincipalKey], Severity]) -> None:
        now = self.clock()
        rules = self.rules
        for record in list(self._records.values()):
            if record.state == "resolved":
                continue
            alert = record.current()
            if (
                alert.origin == "rule"
                and now - record.last_finding_us >= rules.resolve_after_us
                and not rules.pages(reported(alert.principal))
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

    def flush(self) -> None:
        """Persist the alerts changed since the last flush, and the counters."""
        records = {
            key: json.dumps(self._records[key].to_json())
            for key in self._dirty
            if key in self._records
        }
        counters = {
            "suppressed": self.gate.suppressed,
            "snoozed": self.snoozed_skips,
            "grouped": self.grouped,
        }
        try:
            self.outbox.save_alerts(records, counters)
        except OutboxError as exc:
            self.problems["state"] = f"cannot keep the alerts' state: {exc}"
            return
        self.problems.pop("state", None)
        self._dirty.clear()

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

    async def settle(self, key: str, seconds: float) -> AlertView | None:
        """Wait (up to `seconds`) until no delivery of `key` is still queued for a first
        try; the alert as it stands then."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            record = self._records.get(key)
            if record is None or all(
                d.state != "queued" or d.detail for d in record.deliveries.values()
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
                group.create_task(self.dispatcher.run(), name="alert delivery")
                group.create_task(self._ticking(reported), name="alert rules")
        finally:
            self.flush()

    async def _ticking(self, reported: Callable[[PrincipalKey], Severity]) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.tick(reported)

    def health(self) -> str:
        """What is wrong with the alert path ("" when nothing is): the outbox or a delivery
        loop in trouble."""
        parts = list(self.problems.values())
        parts += [f"{name}: {why}" for name, why in self.dispatcher.trouble.items()]
        return "; ".join(parts)

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
