"""Alerts on the dashboard, driven by the keys against a real engine and alert center: the list
and its cursor, acknowledge (`k`) and resolve (`x`), each sink's state, flood control and the
outbox."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import TabbedContent

from alerts.pagerduty import PagerDuty
from alerts.rules import Rules
from alerts.slack import Slack
from core.findings import PrincipalKey, Severity
from core.settings import PagerDutySink, SlackSink
from core.snapshot import AlertView
from tablewatch.live import LiveEngine
from tests.receivers import PagerDutyReceiver, SlackReceiver
from tests.tui.world import (
    FIXED_US,
    alerts_file,
    app_for,
    exfiltration,
    feed,
    live,
    normal_traffic,
    notices,
    screen_text,
    settle,
)
from tests.unit.enginekit import at, ev
from tui import alertlist
from tui import text as t
from tui.app import DashboardApp
from tui.modals import AlertModal
from tui.panes import FindingsPane
from tui.readers import ReadersTable

SIZE = (100, 30)
MALLORY = PrincipalKey("mallory", "203.0.113.9", "psql", "crm.client_list")


def severities(app: DashboardApp) -> list[str]:
    return [n.severity for n in app._notifications]


def row(app: DashboardApp, y: int = 0) -> list[str]:
    """A row of the alerts list, as plain cells."""
    return [cell.plain.strip() for cell in app.query_one(alertlist.AlertsTable).get_row_at(y)]


def pane(app: DashboardApp) -> Text:
    return app.query_one(FindingsPane).text


def flag(app: DashboardApp, who: PrincipalKey = MALLORY) -> str:
    readers = app.query_one(ReadersTable)
    return readers.get_cell(str(readers.principals.index(who)), "flags").plain


async def page(app: DashboardApp, pilot: Pilot[None], note: str = "DBA") -> None:
    """`a`, a note, Enter: page about the selected reader."""
    await pilot.press("a", *note, "enter")
    await settle(app)
    await pilot.pause()


async def until(app: DashboardApp, pilot: Pilot[None], done: object, seconds: float = 5.0) -> None:
    """Pull snapshots until `done()` holds (the alert delivery runs in the background)."""
    assert callable(done)
    for _ in range(int(seconds / 0.05)):
        await app.refresh_snapshot()
        await pilot.pause()
        if done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not in time")


async def test_page_acknowledge_resolve_with_the_keys(view: LiveEngine, tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await page(app, pilot)
        assert flag(app) == "!"
        assert "1 alert ACTIVE" in screen_text(app).splitlines()[0]
        await pilot.press("f")
        await pilot.pause()
        assert app.focused is app.query_one(alertlist.AlertsTable)
        assert row(app) == ["10:30:00", "CRIT", "ACTIVE", "alice", "mallory@203.0.1…", "1"] + [
            "local✓"
        ]
        await pilot.press("k")
        assert isinstance(app.screen, AlertModal)
        shown = screen_text(app)
        assert "Acknowledge this alert in every sink?" in shown
        assert "mallory @ 203.0.113.9 psql → crm.client_list" in shown
        await pilot.press(*"on it", "enter")
        await settle(app)
        await pilot.pause()
        assert not isinstance(app.screen, AlertModal)
        acked = alerts_file(tmp_path)[-1]
        assert (acked["action"], acked["actor"], acked["step_note"]) == (
            "acknowledge",
            "alice",
            "on it",
        )
        assert acked["user"] == "mallory" and acked["note"] == "DBA"
        assert notices(app)[-1] == f"acknowledged: local acked ({path})"
        assert row(app)[2] == "acked alice" and row(app)[-1] == "local✓"
        text = pane(app).plain
        assert "CRIT acknowledged by alice at 10:30:00: on it · 1 finding\n" in text
        assert "  paged by alice at 10:30:00 · note: DBA\n" in text
        assert f"→ local        acked    {path}" in text
        assert flag(app) == "a"
        assert "ACTIVE" not in screen_text(app).splitlines()[0]

        await pilot.press("x")
        assert isinstance(app.screen, AlertModal)
        assert "Resolve this alert in every sink?" in screen_text(app)
        await pilot.press(*"false alarm", "enter")
        await settle(app)
        await pilot.pause()
        assert [(r["action"], r["step_note"]) for r in alerts_file(tmp_path)] == [
            ("trigger", ""),
            ("acknowledge", "on it"),
            ("resolve", "false alarm"),
        ]
        assert notices(app)[-1] == f"resolved: local resolved ({path})"
        assert row(app)[2] == "resolved alice"
        assert "CRIT resolved by alice at 10:30:00" in pane(app).plain
        assert f"→ local        resolved {path}" in pane(app).plain
        assert flag(app) == ""
        assert "Alerts (1) · ↑↓ k ack x resolve" in screen_text(app)

        for key, action in (("k", "acknowledge"), ("x", "resolve")):
            await pilot.press(key)
            await pilot.pause()
            assert not isinstance(app.screen, AlertModal)
            said = f"cannot {action}: this alert is already resolved by alice at 10:30:00"
            assert notices(app)[-1] == said
        assert "cannot resolve" in screen_text(app)
        assert len(alerts_file(tmp_path)) == 3
        assert app.is_running


async def test_k_elsewhere_is_about_the_selected_readers_alert(
    view: LiveEngine, tmp_path: Path
) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await page(app, pilot)
        assert app.query_one(TabbedContent).active == "detail"
        await pilot.press("k")
        modal = app.screen
        assert isinstance(modal, AlertModal) and modal.alert.principal == MALLORY
        await pilot.press("ctrl+s")  # no note
        await settle(app)
        assert [r["action"] for r in alerts_file(tmp_path)] == ["trigger", "acknowledge"]
        await pilot.press("k")
        await pilot.pause()
        assert notices(app)[-1] == (
            "cannot acknowledge: this alert is already acknowledged by alice at 10:30:00"
        )
        await pilot.press("down", "x")  # a reader without an alert
        await pilot.pause()
        assert not isinstance(app.screen, AlertModal)
        assert notices(app)[-1].startswith("cannot resolve: no alert selected (f: the alerts")
        await pilot.press("up", "x", "enter")  # resolving an acknowledged alert is fine
        await settle(app)
        assert [r["action"] for r in alerts_file(tmp_path)][-1] == "resolve"


async def test_no_alert_at_all_says_so(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("f")
        await pilot.pause()
        assert "Alerts: none yet · a pages about the selected reader" in screen_text(app)
        assert app.focused is app.query_one(ReadersTable)  # nothing to pick in the list
        await pilot.press("k", "x")
        await pilot.pause()
        assert len(app.screen_stack) == 1
        assert [n.split(":")[0] for n in notices(app)] == ["cannot acknowledge", "cannot resolve"]
        assert severities(app) == ["warning", "warning"]


async def test_acknowledge_cancelled_records_nothing(view: LiveEngine, tmp_path: Path) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await page(app, pilot)
        await pilot.press("f", "k", *"oops", "escape")
        await settle(app)
        assert not isinstance(app.screen, AlertModal)
        assert [r["action"] for r in alerts_file(tmp_path)] == ["trigger"]
        assert row(app)[2] == "ACTIVE"
        await pilot.press("x", "tab", "tab", "enter")  # note → Resolve → Cancel
        await settle(app)
        assert [r["action"] for r in alerts_file(tmp_path)] == ["trigger"]


async def test_resolved_meanwhile_is_refused_by_the_engine(
    view: LiveEngine, tmp_path: Path
) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await page(app, pilot)
        await pilot.press("p", "f")  # the screen holds still: it still says ACTIVE
        key = app.query_one(alertlist.AlertsTable).selected
        assert key is not None
        await view.resolve(key, "handled on the phone", "bob")
        await pilot.press("k", "enter")
        await settle(app)
        await pilot.pause()
        assert notices(app)[-1] == "acknowledge refused: already resolved by bob"
        assert severities(app)[-1] == "error"
        assert [(r["action"], r["actor"]) for r in alerts_file(tmp_path)] == [
            ("trigger", "alice"),
            ("resolve", "bob"),
        ]
        assert app.is_running


async def test_enter_on_an_alert_shows_its_reader(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await page(app, pilot)
        await pilot.press("down", "down")  # another reader selected
        assert app.selected != MALLORY
        await pilot.press("f", "enter")
        await pilot.pause()
        assert app.query_one(TabbedContent).active == "detail"
        assert app.selected == MALLORY and app.focused is app.query_one(ReadersTable)


async def test_a_rule_alert_is_listed_with_origin_rule(tmp_path: Path) -> None:
    view = live(tmp_path, rules=Rules())  # critical findings page on their own
    feed(view, normal_traffic() + exfiltration())
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await until(app, pilot, lambda: alerts_file(tmp_path) and flag(app) == "!")
        await pilot.press("f")
        await until(app, pilot, lambda: row(app)[-1] == "local✓")
        assert row(app)[2:4] == ["ACTIVE", "rule"]
        text = pane(app).plain
        assert "CRIT ACTIVE · 1 finding\n" in text
        assert "\n  opened by the rules at 10:30:00\n" in text
        assert "note:" not in text
        assert alerts_file(tmp_path)[0]["origin"] == "rule"
        await pilot.press("k", "enter")
        await settle(app)
        assert [(r["action"], r["actor"]) for r in alerts_file(tmp_path)] == [
            ("trigger", "tablewatch"),
            ("acknowledge", "alice"),
        ]


async def test_flood_control_and_the_outbox_are_shown(tmp_path: Path) -> None:
    view = live(tmp_path, rules=Rules(flood_total=1))  # one new alert per hour, in all
    feed(view, normal_traffic() + exfiltration())
    feed(view, [ev(at(0, 10, 28), "SELECT * FROM crm.client_list", user="eve", rows=1990)])
    snap = await view.snapshot()
    assert snap.suppressed >= 1 and snap.outbox == 1 and len(snap.alerts) == 1
    app = DashboardApp(view, operator="alice", refresh_seconds=30)  # nothing delivers: queued
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.pause()
        header = screen_text(app).splitlines()[0]
        held = f"flood control held {snap.suppressed:,}"
        assert f"1 alert ACTIVE │ {held} │ outbox 1 queued │" in header
        await pilot.press("f")
        await pilot.pause()
        assert f"Alerts (1) 1 active · {held} · outbox 1 queued" in screen_text(app)
        assert row(app)[-1] == "local…"
        assert "→ local        queued   no answer yet" in pane(app).plain
        eve = PrincipalKey("eve", "10.0.0.1", "crm-web", "crm.client_list")
        assert flag(app, eve) == ""  # held back: no alert about eve


@pytest.fixture
async def pagerduty() -> AsyncIterator[PagerDutyReceiver]:
    async with PagerDutyReceiver() as receiver:
        yield receiver


@pytest.fixture
async def slack() -> AsyncIterator[SlackReceiver]:
    async with SlackReceiver() as receiver:
        yield receiver


async def test_each_sinks_state_and_why(
    tmp_path: Path, pagerduty: PagerDutyReceiver, slack: SlackReceiver
) -> None:
    """Real sinks against local receivers: PagerDuty answers 503 (retried after its Retry-After),
    Slack refuses the webhook (failed for good, with the answer), the local sink records."""
    pagerduty.fail(503, times=20, body=b"busy", headers={"Retry-After": "30"})
    slack.fail(403, body=b"invalid_token")
    sinks = [
        PagerDuty(
            PagerDutySink(url=pagerduty.url + "/v2/enqueue", routing_key=SecretStr("R" * 32)),
            host="db-host",
        ),
        Slack(SlackSink(webhook_url=SecretStr(slack.webhook_url)), host="db-host"),
    ]
    view = live(tmp_path, more=sinks)
    feed(view, normal_traffic() + exfiltration())
    path = tmp_path / "alerts.jsonl"
    app = app_for(view)
    try:
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await settle(app)
            await page(app, pilot)
            assert notices(app)[-1] == (
                f"paged: local sent ({path}), pagerduty queued (retry in 30s: HTTP 503: busy),"
                " slack failed: HTTP 403: invalid_token"
            )
            assert severities(app)[-1] == "error"
            header = screen_text(app).splitlines()[0]
            assert "1 alert ACTIVE │ 1 delivery failed │ outbox 1 queued │" in header
            await pilot.press("f")
            await pilot.pause()
            assert row(app)[-1] == "local✓ pagerduty… slack✗"
            text = pane(app)
            assert f"→ local        sent     {path}" in text.plain
            assert "→ pagerduty    queued   retry in 30s: HTTP 503: busy" in text.plain
            assert "→ slack        failed   HTTP 403: invalid_token" in text.plain
            failed = text.plain.index("HTTP 403: invalid_token")
            assert any(
                s.style == t.ERROR and s.start <= failed < s.end for s in text.spans
            )  # the why in the error style, not only the word
            assert not any(
                s.style == t.ERROR and s.start <= text.plain.index("retry in") < s.end
                for s in text.spans
            )
    finally:
        assert view.alerts is not None
        await view.alerts.close()


async def test_at_80x24_the_list_the_dialog_and_the_keys_fit(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(app)
        await page(app, pilot)
        app.clear_notifications()
        screen = screen_text(app).splitlines()
        assert screen[-1].rstrip() == (
            "a page e expect s snooze k ack x resolve / find p pause ? help q quit d v f tab"
        )
        await pilot.press("f")
        await pilot.pause()
        screen = screen_text(app).splitlines()
        assert any(line.startswith(" Alerts (1) 1 active · ↑↓ k ack x resolve") for line in screen)
        assert any(
            line.startswith(" 10:30:00 CRIT ACTIVE         alice    mallory@203.0.1… ")
            and line.rstrip().endswith(" 1 local✓")
            for line in screen
        )
        assert all(len(line) <= 80 for line in screen)
        await pilot.press("k")
        await pilot.pause()
        dialog = screen_text(app)
        for words in ("Acknowledge this alert in every sink?", "→ local", "Acknowledge", "Cancel"):
            assert words in dialog
        await pilot.press("enter")
        await settle(app)
        await pilot.pause()
        assert row(app)[2] == "acked alice"


def test_an_alert_says_what_flood_control_held_before_it() -> None:
    alert = AlertView(
        "k",
        FIXED_US,
        MALLORY,
        Severity.CRITICAL,
        "summary",
        "",
        "",
        "rule",
        findings=4,
        suppressed=9_980,
    )
    text = alertlist.alert_line(alert).plain
    assert "· 4 findings" in text
    assert "flood control held 9,980 findings about this reader before it" in text
    assert "→ no sink has it yet" in text
    assert "held" not in alertlist.alert_line(dataclasses.replace(alert, suppressed=0)).plain


async def test_a_page_request_grouped_under_the_open_alert(view: LiveEngine) -> None:
    """Paging twice about the same reader is one incident: one row, two findings."""
    assert view.alerts is not None
    for note in ("first", "again"):
        view.alerts.page(MALLORY, Severity.CRITICAL, (), note=note, operator="alice")
    app = DashboardApp(view, operator="alice", refresh_seconds=30)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("f")
        await pilot.pause()
        assert app.query_one(alertlist.AlertsTable).row_count == 1
        assert row(app)[5] == "2"
