"""The alert center: findings open, group or are held back; operators acknowledge and resolve;
alerts re-notify, re-send and resolve themselves; state survives a restart. Delivered for real
through the local sink (a file) by the real dispatcher."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.center import AlertCenter
from alerts.local import LocalSink
from alerts.outbox import OUTBOX_FILE, Outbox
from alerts.rules import MINUTE_US, Rules
from core.findings import Finding, PrincipalKey, Reason, Severity
from core.snapshot import AlertView
from core.view import ActionRefused
from tests.alertkit import delivering, drained

T0 = 1_795_000_000 * 1_000_000
"""Wall-clock microseconds (2026-11-18)."""
MALLORY = PrincipalKey("mallory", "10.9.9.9", "psql", "crm.client_list")
BULK = Reason("bulk_read", Severity.CRITICAL, 95, "one statement read 50,000 rows (100%)")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += round(minutes * MINUTE_US)


def finding(p: PrincipalKey = MALLORY, severity: Severity = Severity.CRITICAL) -> Finding:
    return Finding(T0, severity, 95, p, (BULK,))


def reader(i: int, table: str = "crm.client_list") -> PrincipalKey:
    return PrincipalKey(f"user{i}", f"10.1.{i // 250}.{i % 250}", "psql", table)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(tmp_path: Path, clock: Clock, rules: Rules | None = None) -> AlertCenter:
    return AlertCenter(
        Outbox(tmp_path / "state" / OUTBOX_FILE, clock=lambda: clock.now / 1e6),
        [LocalSink(tmp_path / "alerts.jsonl")],
        rules or Rules(),
        host="db1",
        clock=clock,
    )


@pytest.fixture
def center(tmp_path: Path, clock: Clock) -> Iterator[AlertCenter]:
    c = make(tmp_path, clock)
    yield c
    c.outbox.close()


def records(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_critical_finding_pages_once_and_later_ones_are_grouped(
    center: AlertCenter, tmp_path: Path
) -> None:
    center.observe([finding()], statement_of=lambda p: "SELECT * FROM crm.client_list")
    center.observe([finding(), finding()])
    (alert,) = center.views()
    assert alert.origin == "rule" and alert.state == "active" and alert.findings == 3
    assert alert.key == AlertView.key_for("critical", MALLORY)
    async with delivering(center):
        await drained(center)
    (line,) = records(tmp_path)
    assert line["action"] == "trigger" and line["key"] == alert.key
    assert line["statement"] == "SELECT * FROM crm.client_list"
    assert center.view(alert.key).deliveries[0].state == "sent"  # type: ignore[union-attr]
    assert center.grouped == 2


async def test_statements_in_pages_are_redacted(center: AlertCenter, tmp_path: Path) -> None:
    text = "SELECT * FROM crm.client_list WHERE email = 'ann@example.com' OR id = 4711"
    center.observe([finding()], statement_of=lambda p: text)
    async with delivering(center):
        await drained(center)
    (line,) = records(tmp_path)
    assert "ann@example.com" not in json.dumps(line) and "4711" not in json.dumps(line)
    assert line["statement"] == "SELECT * FROM crm.client_list WHERE email = '?' OR id = ?"


def test_below_the_rule_nothing_pages_and_snoozed_readers_never_do(center: AlertCenter) -> None:
    center.observe([finding(severity=Severity.WARNING), finding(severity=Severity.INFO)])
    center.observe([finding()], snoozed=lambda p: p == MALLORY)
    assert center.views() == () and center.snoozed_skips == 1 and center.outbox.depth() == 0


def test_an_escalation_under_a_warning_rule_is_sent_again(tmp_path: Path, clock: Clock) -> None:
    center = make(tmp_path, clock, Rules(page_on=Severity.WARNING))
    center.observe([finding(severity=Severity.WARNING)])
    center.observe([finding(severity=Severity.CRITICAL)])
    (alert,) = center.views()
    assert alert.severity is Severity.CRITICAL and alert.findings == 2
    assert [r.action for r in center.outbox.rows(alert.key)] == ["trigger", "trigger"]


def test_a_flood_of_10000_findings_pages_within_bounds_and_counts_the_rest(
    center: AlertCenter,
) -> None:
    flood = [finding(reader(i % 5_000, f"crm.t{i // 5_000}")) for i in range(10_000)]
    center.observe(flood)
    alerts = center.views()
    assert len(alerts) == 20  # flood_total
    assert center.suppressed == 10_000 - 20
    assert center.outbox.depth() == 20
    assert center.grouped == 0


def test_held_back_findings_ride_on_the_readers_next_page(tmp_path: Path, clock: Clock) -> None:
    rules = Rules(flood_per_principal=1, flood_window_us=60 * MINUTE_US)
    center = make(tmp_path, clock, rules)
    center.observe([finding(MALLORY)])
    other = [PrincipalKey("mallory", "10.9.9.9", "psql", f"crm.t{i}") for i in range(3)]
    center.observe([finding(p) for p in other])  # the same reader on three other tables
    assert len(center.views()) == 1 and center.suppressed == 3
    clock.advance(61)
    center.observe([finding(PrincipalKey("mallory", "10.9.9.9", "psql", "crm.t9"))])
    latest = center.views()[-1]
    assert latest.principal.table == "crm.t9" and latest.suppressed == 3


async def test_quiet_hours_hold_the_rules_pages_but_never_an_operators(
    tmp_path: Path, clock: Clock
) -> None:
    minute = (clock.now // MINUTE_US) % 1440
    center = make(tmp_path, clock, Rules(quiet=(minute, (minute + 120) % 1440)))
    center.observe([finding()])
    (rule_alert,) = center.views()
    assert rule_alert.deliveries[0].detail == "held: quiet hours"
    page = center.page(MALLORY, Severity.CRITICAL, (BULK,), note="now", operator="ann")
    async with delivering(center):
        await drained(center, left=1)
    assert [r["action"] for r in records(tmp_path)] == ["trigger"]
    assert records(tmp_path)[0]["key"] == page.key
    assert center.outbox.next_due() == pytest.approx((clock.now // MINUTE_US + 120) * 60.0, abs=60)


async def test_acknowledge_then_resolve_reach_the_sink_in_order(
    center: AlertCenter, tmp_path: Path
) -> None:
    alert = center.page(MALLORY, Severity.CRITICAL, (BULK,), note="pulling it", operator="ann")
    acked = center.acknowledge(alert.key, "on it", "bob")  # queued behind the trigger
    assert acked.state == "acknowledged" and acked.by == "bob"
    with pytest.raises(ActionRefused, match="already acknowledged by bob"):
        center.acknowledge(alert.key, "", "carol")
    async with delivering(center):
        await drained(center)
        done = center.resolve(alert.key, "revoked", "bob")
        assert done.state == "resolved"
        await drained(center)
    with pytest.raises(ActionRefused, match="already resolved"):
        center.resolve(alert.key, "", "bob")
    with pytest.raises(ActionRefused, match="no such alert"):
        center.acknowledge("tw-nope", "", "bob")
    lines = records(tmp_path)
    assert [(r["action"], r["actor"]) for r in lines] == [
        ("trigger", "ann"),
        ("acknowledge", "bob"),
        ("resolve", "bob"),
    ]
    assert lines[1]["step_note"] == "on it" and lines[0]["note"] == "pulling it"
    assert center.view(alert.key).deliveries[0].state == "resolved"  # type: ignore[union-attr]


async def test_resolved_before_it_was_delivered_nothing_is_sent(
    center: AlertCenter, tmp_path: Path
) -> None:
    alert = center.page(MALLORY, Severity.CRITICAL, (BULK,), note="oops", operator="ann")
    done = center.resolve(alert.key, "wrong reader", "ann")  # the sink is slow, or it is night
    (delivery,) = done.deliveries
    assert delivery.state == "resolved" and "nothing sent" in delivery.detail
    assert [r.state for r in center.outbox.rows(alert.key)] == ["cancelled"]
    async with delivering(center):
        await drained(center)
    assert records(tmp_path) == []  # nobody is paged about something already over


async def test_a_rules_alert_resolves_itself_once_the_reader_calmed_down(
    center: AlertCenter, clock: Clock
) -> None:
    center.observe([finding()])
    async with delivering(center):
        await drained(center)
    clock.advance(61)
    center.tick(reported=lambda p: Severity.CRITICAL)  # quiet, but still critical: stays
    (alert,) = center.views()
    assert alert.state == "active"
    center.tick(reported=lambda p: Severity.WARNING)
    (alert,) = center.views()
    assert alert.state == "resolved" and alert.by == "tablewatch"
    assert [r.action for r in center.outbox.rows(alert.key)] == ["trigger", "resolve"]


def test_an_operators_page_never_resolves_itself(center: AlertCenter, clock: Clock) -> None:
    alert = center.page(MALLORY, Severity.WARNING, (), note="", operator="ann")
    clock.advance(600)
    center.tick()
    assert center.view(alert.key).state == "active"  # type: ignore[union-attr]


def test_an_active_alert_is_renotified_but_not_an_acknowledged_one(
    center: AlertCenter, clock: Clock
) -> None:
    center.observe([finding()])
    (alert,) = center.views()
    clock.advance(4 * 60 + 1)
    center.tick(reported=lambda p: Severity.CRITICAL)
    assert [r.action for r in center.outbox.rows(alert.key)] == ["trigger", "trigger"]
    center.acknowledge(alert.key, "", "ann")
    clock.advance(4 * 60 + 1)
    center.tick(reported=lambda p: Severity.CRITICAL)
    assert [r.action for r in center.outbox.rows(alert.key)] == [
        "trigger",
        "trigger",
        "acknowledge",
    ]


def test_state_and_counts_survive_a_restart(tmp_path: Path, clock: Clock) -> None:
    first = make(tmp_path, clock, Rules(flood_total=1))
    first.observe([finding(), finding(reader(1)), finding(reader(2))])
    key = first.views()[0].key
    first.acknowledge(key, "", "ann")
    first.flush()
    first.outbox.close()
    again = make(tmp_path, clock, Rules(flood_total=1))
    (alert,) = again.views()
    assert alert.key == key and alert.state == "acknowledged" and alert.by == "ann"
    assert again.suppressed == 2
    again.observe([finding()])  # the same incident: grouped, not a second page
    assert again.views()[0].findings == 2 and len(again.views()) == 1
    again.outbox.close()
