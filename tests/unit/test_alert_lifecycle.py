"""The alert center over time: what it keeps, forgets, holds at night, and learns again after a
restart; one process per outbox; a delivery loop that never spins and never dies."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from alerts.base import Sink
from alerts.center import RESOLVED_KEPT, RETENTION_SECONDS, AlertCenter
from alerts.delivery import Dispatcher
from alerts.local import LocalSink
from alerts.outbox import OUTBOX_FILE, Outbox, OutboxError
from alerts.rules import MINUTE_US, Rules
from core.findings import Finding, PrincipalKey, Reason, Severity
from core.sinks import Alert, Outcome, Step, Verdict
from tests.alertkit import delivering, drained, until

T0 = 1_795_000_000 * 1_000_000
BULK = Reason("bulk_read", Severity.CRITICAL, 95, "one statement read 50,000 rows (100%)")


def who(i: int) -> PrincipalKey:
    return PrincipalKey(f"user{i}", "10.0.0.9", "psql", "crm.client_list")


def make(tmp_path: Path, clock: list[int], rules: Rules | None = None) -> AlertCenter:
    return AlertCenter(
        Outbox(tmp_path / OUTBOX_FILE, clock=lambda: clock[0] / 1e6),
        [LocalSink(tmp_path / "alerts.jsonl")],
        rules or Rules(),
        host="db1",
        clock=lambda: clock[0],
    )


def lines(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "alerts.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_a_second_process_on_the_same_outbox_is_refused_in_one_line(tmp_path: Path) -> None:
    first = Outbox(tmp_path / OUTBOX_FILE)
    with pytest.raises(OutboxError, match="in use by another tablewatch") as caught:
        Outbox(tmp_path / OUTBOX_FILE)
    assert "\n" not in str(caught.value)
    first.close()
    Outbox(tmp_path / OUTBOX_FILE).close()  # free again once the first one is gone


def test_an_open_alert_is_never_forgotten_however_many_are_resolved_after_it(
    tmp_path: Path,
) -> None:
    clock = [T0]
    center = make(tmp_path, clock)
    first = center.page(who(0), Severity.CRITICAL, (BULK,), note="", operator="ann")
    for i in range(1, RESOLVED_KEPT + 50):
        clock[0] += 1
        key = center.page(who(i), Severity.WARNING, (), note="", operator="ann").key
        center.resolve(key, "", "ann")
    keys = [a.key for a in center.views()]
    assert first.key in keys and len(keys) == RESOLVED_KEPT + 1
    center.acknowledge(first.key, "still here", "bob")
    center.outbox.close()
    again = make(tmp_path, clock)
    assert again.view(first.key).state == "acknowledged"  # type: ignore[union-attr]
    assert len(again.views()) == RESOLVED_KEPT + 1
    again.outbox.close()


async def test_deliveries_finished_before_a_crash_show_as_done_after_the_restart(
    tmp_path: Path,
) -> None:
    clock = [time.time_ns() // 1000]
    center = make(tmp_path, clock)
    key = center.page(who(1), Severity.CRITICAL, (BULK,), note="", operator="ann").key
    dispatcher = asyncio.create_task(center.dispatcher.run())  # no rules tick: no flush
    await drained(center)
    dispatcher.cancel()
    await asyncio.gather(dispatcher, return_exceptions=True)
    center.outbox.close()  # killed: the record on disk still says queued
    again = make(tmp_path, clock)
    (delivery,) = again.view(key).deliveries  # type: ignore[union-attr]
    assert delivery.state == "sent"
    again.outbox.close()


def test_long_done_deliveries_and_resolved_alerts_are_forgotten_open_ones_kept(
    tmp_path: Path,
) -> None:
    clock = [time.time_ns() // 1000]
    center = make(tmp_path, clock)
    open_key = center.page(who(1), Severity.CRITICAL, (BULK,), note="", operator="ann").key
    done_key = center.page(who(2), Severity.CRITICAL, (BULK,), note="", operator="ann").key
    for item in center.outbox.due():
        center.outbox.sent(item)
    center.resolve(done_key, "", "ann")
    (resolve,) = center.outbox.due()
    center.outbox.sent(resolve)
    clock[0] += round((RETENTION_SECONDS + 60) * 1e6)
    center.prune()
    assert center.outbox.rows(done_key) == []
    assert [r.action for r in center.outbox.rows(open_key)] == ["trigger"]  # acks go there
    center.outbox.close()
    again = make(tmp_path, clock)
    assert [a.key for a in again.views()] == [open_key]  # the resolved one is forgotten
    again.outbox.close()


async def test_quiet_hours_hold_renotify_and_an_alert_over_by_morning_pages_nobody(
    tmp_path: Path,
) -> None:
    clock = [T0]
    minute = (T0 // MINUTE_US) % 1440
    quiet = ((minute + 60) % 1440, (minute + 600) % 1440)  # from in an hour, for 9 hours
    center = make(tmp_path, clock, Rules(quiet=quiet, renotify_us=30 * MINUTE_US))
    center.observe([Finding(T0, Severity.CRITICAL, 95, who(1), (BULK,))])
    async with delivering(center):
        await drained(center)
        clock[0] += 90 * MINUTE_US  # now inside quiet hours: the re-notify waits
        center.tick(lambda p: Severity.CRITICAL)
        (alert,) = center.views()
        assert alert.deliveries[0].detail == "held: quiet hours"
        center.observe([Finding(clock[0], Severity.CRITICAL, 95, who(2), (BULK,))])
        clock[0] += 61 * MINUTE_US  # who(2) calmed down during the night
        center.tick(lambda p: Severity.CRITICAL if p == who(1) else Severity.NONE)
        await asyncio.sleep(0.2)
    assert [(x["action"], x["user"]) for x in lines(tmp_path)] == [("trigger", "user1")]
    night = center.views()[-1]
    assert night.state == "resolved" and "nothing sent" in night.deliveries[0].detail
    center.outbox.close()


def test_retry_after_zero_still_backs_off(tmp_path: Path) -> None:
    box = Outbox(tmp_path / OUTBOX_FILE, jitter=lambda: 0.0)
    box.enqueue("webhook", "tw-1", "trigger", b"{}")
    (item,) = box.due()
    assert box.retry(item, "HTTP 503", retry_after=0.0) == 0.5
    box.close()


def test_the_next_due_time_is_the_head_of_each_alerts_queue(tmp_path: Path) -> None:
    now = [1000.0]
    box = Outbox(tmp_path / OUTBOX_FILE, clock=lambda: now[0], jitter=lambda: 0.0)
    box.enqueue("webhook", "tw-1", "trigger", b"{}")
    (item,) = box.due()
    box.retry(item, "HTTP 503", retry_after=120)
    box.enqueue("webhook", "tw-1", "resolve", b"{}")  # due now, but behind its trigger
    assert box.due() == [] and box.next_due() == 1120.0  # not "now": no busy loop
    box.close()


class _Buggy(Sink):
    """A sink whose rate-limit bucket raises: a bug in a sink."""

    name = "buggy"

    def render(self, alert: Alert, step: Step, trigger: bytes | None) -> bytes | None:
        return b"{}"

    @property
    def limit(self) -> object:  # type: ignore[override]
        from core.sinks import RateLimit

        return RateLimit(1, 1.0)

    def bucket(self, payload: bytes) -> str:
        raise KeyError("routing_key")

    async def deliver(self, payload: bytes) -> Verdict:
        return Verdict(Outcome.SENT, "ok")


async def test_a_sinks_bug_is_shown_and_never_stops_the_other_sinks(tmp_path: Path) -> None:
    clock = [time.time_ns() // 1000]
    sinks: Sequence[Sink] = [_Buggy(), LocalSink(tmp_path / "alerts.jsonl")]
    center = AlertCenter(
        Outbox(tmp_path / OUTBOX_FILE), sinks, Rules(), host="db1", clock=lambda: clock[0]
    )
    center.page(who(1), Severity.CRITICAL, (BULK,), note="", operator="ann")
    async with delivering(center, close=True):
        await until(lambda: "buggy" in center.dispatcher.trouble and lines(tmp_path))
        assert "KeyError" in center.health() and "routing_key" in center.health()


async def test_stopping_lets_a_delivery_in_flight_finish(tmp_path: Path) -> None:
    class Slow(LocalSink):
        async def deliver(self, payload: bytes) -> Verdict:
            await asyncio.sleep(0.5)
            return await super().deliver(payload)

    outbox = Outbox(tmp_path / OUTBOX_FILE)
    dispatcher = Dispatcher(outbox, [Slow(tmp_path / "alerts.jsonl")], lambda *_: None)
    outbox.enqueue("local", "tw-1", "trigger", b'{"key": "tw-1"}')
    task = asyncio.create_task(dispatcher.run())
    await until(lambda: dispatcher.in_flight)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [r.state for r in outbox.rows("tw-1")] == ["sent"] and len(lines(tmp_path)) == 1
    outbox.close()
