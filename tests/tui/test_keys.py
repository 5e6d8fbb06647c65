"""Every key of the dashboard, pressed as an operator would (Pilot), against a real engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import Static, TabbedContent

from core.findings import PrincipalKey, Severity
from tablewatch.live import LiveEngine
from tests.tui.world import (
    BrokenSource,
    alerts_file,
    app_for,
    feed,
    live,
    notices,
    screen_text,
    settle,
)
from tests.unit.enginekit import at, ev
from tui.app import DashboardApp
from tui.modals import ExpectModal, HelpScreen, PageModal, SnoozeModal
from tui.panes import DetailPane, EventsPane, FindingsPane
from tui.readers import ReadersTable

SIZE = (100, 30)
MALLORY = PrincipalKey("mallory", "203.0.113.9", "psql", "crm.client_list")
REPORT = PrincipalKey("report", "10.0.0.5", "metabase", "crm.client_list")


async def pane_text(app: DashboardApp, pilot: Pilot[None], tab: str) -> str:
    """The text of a tab's pane once shown (hidden panes are drawn when their tab is chosen)."""
    app.query_one(TabbedContent).active = tab
    await pilot.pause()
    panes = {"detail": DetailPane, "events": EventsPane, "findings": FindingsPane}
    return app.query_one(panes[tab]).text.plain


def table(app: DashboardApp) -> ReadersTable:
    return app.query_one(ReadersTable)


async def test_starts_with_the_most_anomalous_reader_selected(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.pause()
        assert table(app).principals[0] == MALLORY
        assert app.selected == MALLORY
        text = app.query_one(DetailPane).text.plain
        assert "bulk_read" in text and "95% of the table" in text
        screen = screen_text(app)
        assert "CRIT" in screen and "10:30:00 UTC" in screen and "crm.client_list" in screen


async def test_page_confirmed_reaches_the_local_sink(view: LiveEngine, tmp_path: Path) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("a")
        assert isinstance(app.screen, PageModal)
        assert "Page on-call about this reader?" in screen_text(app)
        await pilot.press(*"DBA!")
        await pilot.press("enter")
        await settle(app)
        await pilot.pause()
        assert not isinstance(app.screen, PageModal)
        records = alerts_file(tmp_path)
        assert len(records) == 1
        assert records[0]["action"] == "trigger"
        assert records[0]["note"] == "DBA!"
        assert records[0]["operator"] == records[0]["actor"] == "alice"
        assert records[0]["severity"] == "critical"
        assert records[0]["user"] == "mallory"
        path = tmp_path / "alerts.jsonl"
        pane = await pane_text(app, pilot, "findings")
        assert "CRIT ACTIVE · 1 finding\n  mallory @ 203.0.113.9 psql → crm.client_list" in pane
        assert "\n  paged by alice at 10:30:00 · note: DBA!\n" in pane
        assert f"→ local        sent     {path}" in pane
        assert "Alerts (1) 1 active" in screen_text(app)
        assert f"paged: local sent ({path})" in notices(app)
        assert "paged: local sent" in screen_text(app)


async def test_page_severity_chosen_and_confirmed_with_ctrl_s(
    view: LiveEngine, tmp_path: Path
) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("a", "down", "down", "up")
        assert "(•) warning" in screen_text(app)
        await pilot.press("ctrl+s")
        await settle(app)
        assert [r["severity"] for r in alerts_file(tmp_path)] == ["warning"]
        assert [r["note"] for r in alerts_file(tmp_path)] == [""]


async def test_page_cancelled_records_nothing(view: LiveEngine, tmp_path: Path) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("a", *"oops", "escape")
        await settle(app)
        assert not isinstance(app.screen, PageModal)
        assert alerts_file(tmp_path) == []
        assert (await view.snapshot()).alerts == ()
        await pilot.press("f")
        assert "Alerts: none yet · a pages about the selected reader" in screen_text(app)


async def test_page_refused_is_one_line_never_a_crash(tmp_path: Path) -> None:
    view = live(tmp_path, sinks=False)  # no sink configured: the engine refuses to page
    feed(view, [ev(at(0, 10, 1), "SELECT * FROM crm.client_list", user="mallory", rows=1900)])
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("a", "enter")
        await settle(app)
        await pilot.pause()
        assert app.is_running
        assert "page failed: no alert sink is configured" in screen_text(app)
        assert notices(app) == [
            "page failed: no alert sink is configured: nothing would receive the page"
        ]


async def test_operator_trail_unwritable_refuses_every_action(tmp_path: Path) -> None:
    view = live(tmp_path)
    (tmp_path / "state" / "operator-trail.jsonl").mkdir(parents=True)  # cannot be appended to
    feed(view, [ev(at(0, 10, 1), "SELECT * FROM crm.client_list", user="mallory", rows=1900)])
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("e", "enter")
        await settle(app)
        await pilot.press("s", "2")
        await settle(app)
        await pilot.pause()
        said = notices(app)
        assert len(said) == 2
        assert said[0].startswith("mark expected failed: cannot write the operator trail")
        assert said[1].startswith("snooze failed: cannot write the operator trail")
        assert "mark expected failed" in screen_text(app)
        assert app.is_running


async def test_mark_expected_drops_the_reasons(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        assert app.selected == MALLORY
        await pilot.press("e")
        assert isinstance(app.screen, ExpectModal)
        await pilot.press(*"pentest", "enter")
        await settle(app)
        await pilot.pause()
        reader = app.reader()
        assert reader is not None and reader.principal == MALLORY
        assert reader.expected == "pentest"
        assert reader.reasons == ()
        row = table(app).principals.index(MALLORY)
        assert "E" in table(app).get_cell(str(row), "flags").plain
        text = app.query_one(DetailPane).text.plain
        assert "expected: pentest" in text
        assert "bulk_read" not in text.split("Reasons")[1].split("Timeline")[0]


async def test_mark_expected_with_ctrl_s_and_no_note(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("e", "ctrl+s")
        await settle(app)
        reader = app.reader()
        assert reader is not None and reader.expected == "expected" and reader.reasons == ()
        assert "marked expected: mallory" in notices(app)


async def test_mark_expected_cancelled(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("e", *"no", "escape")
        await settle(app)
        reader = app.reader()
        assert reader is not None and reader.expected is None and reader.reasons


async def test_snooze_one_hour_marks_and_sorts_last_then_lift(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        assert table(app).principals[0] == MALLORY
        await pilot.press("s")
        assert isinstance(app.screen, SnoozeModal)
        assert "2  1 hour" in screen_text(app)
        await pilot.press("2")
        await settle(app)
        await pilot.pause()
        readers = table(app)
        assert readers.principals[-1] == MALLORY
        assert readers.get_cell(str(len(readers.principals) - 1), "flags").plain == "z"
        assert app.selected == MALLORY  # the cursor followed its reader
        assert "snoozed until 11:30:00 UTC (1h left)" in app.query_one(DetailPane).text.plain
        await pilot.press("s", "0")
        await settle(app)
        assert table(app).principals[0] == MALLORY
        assert table(app).get_cell("0", "flags").plain == ""


async def test_snooze_cancelled(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("s", "escape")
        await settle(app)
        assert not isinstance(app.screen, SnoozeModal)
        assert all(r.snoozed_until_us is None for r in (await view.snapshot()).readers)


async def test_filter_narrows_readers_and_tail_escape_clears(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        total = len(table(app).principals)
        await pilot.press("slash", *"MALL")
        await pilot.pause()
        assert table(app).principals == [MALLORY]
        tail = (await pane_text(app, pilot, "events")).splitlines()
        assert len(tail) == 2 and all("mallory" in line for line in tail)
        await pilot.pause()
        assert "Readers (1 of 3) · by anomaly (o) · filter: MALL" in screen_text(app)
        await pilot.press("enter")  # keep the filter, back to the table
        assert app.focused is table(app)
        await pilot.press("escape")
        await pilot.pause()
        assert len(table(app).principals) == total
        assert len((await pane_text(app, pilot, "events")).splitlines()) == 33


async def test_filter_matches_address_and_application(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("slash", *"0.5")
        await pilot.pause()
        assert table(app).principals == [REPORT]
        await pilot.press("escape", "slash", *"TAB")
        await pilot.pause()
        assert table(app).principals == [REPORT]
        await pilot.press("escape", "slash", *"zz")
        await pilot.pause()
        assert table(app).principals == []
        assert "no access events match the filter" in await pane_text(app, pilot, "events")


async def test_order_cycles_and_keeps_the_selection(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("down", "down")
        assert app.selected == REPORT
        seen = []
        for _ in range(4):
            await pilot.press("o")
            await pilot.pause()
            seen.append(screen_text(app).splitlines()[2])
            assert app.selected == REPORT
            assert table(app).principals[table(app).cursor_row] == REPORT
        assert ["by rows" in seen[0], "by last seen" in seen[1], "by user" in seen[2]] == [True] * 3
        assert "by anomaly" in seen[3]
        await pilot.press("o", "o", "o")
        users = [p.user for p in table(app).principals]
        assert users == sorted(users)


async def test_selection_survives_refreshes_with_new_readers(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("down", "down")
        assert app.selected == REPORT
        feed(view, [ev(at(0, 10, 29), "SELECT * FROM crm.client_list", user="zed", rows=1990)])
        await app.refresh_snapshot()
        await pilot.pause()
        assert table(app).principals[0].user == "zed"
        assert app.selected == REPORT


async def test_pause_freezes_the_screen_while_the_engine_runs_on(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        before = list(table(app).principals)
        await pilot.press("p")
        assert "PAUSED" in screen_text(app)
        feed(view, [ev(at(0, 10, 29), "SELECT * FROM crm.client_list", user="eve", rows=1990)])
        await app.refresh_snapshot()
        app._tick()
        await settle(app)
        await pilot.pause()
        assert table(app).principals == before
        assert "eve" not in await pane_text(app, pilot, "events")
        assert any(r.principal.user == "eve" for r in (await view.snapshot()).readers)
        await pilot.press("p")
        await settle(app)
        await pilot.pause()
        assert "PAUSED" not in screen_text(app)
        assert table(app).principals[0].user == "eve"


async def test_reveal_shows_parameters_and_literals(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        hidden = app.query_one(DetailPane).text.plain
        assert "2 parameters hidden" in hidden
        assert "ann@example.com" not in hidden and "'none'" not in hidden
        assert "WHERE region <> '?'" in hidden
        await pilot.press("r")
        await pilot.pause()
        shown = app.query_one(DetailPane).text.plain
        assert "$2=ann@example.com" in shown and "WHERE region <> 'none'" in shown
        assert "ann@example.com" in await pane_text(app, pilot, "events")
        await pilot.press("r")
        await pilot.pause()
        assert "ann@example.com" not in await pane_text(app, pilot, "events")
        assert "ann@example.com" not in await pane_text(app, pilot, "detail")


async def test_tabs_switch_by_key(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        tabs = app.query_one(TabbedContent)
        await pilot.press("v")
        await pilot.pause()
        assert tabs.active == "events"
        assert "10:25:00 mallory      203.0.113.9     psql       SELECT 1,900 SELECT name" in (
            screen_text(app)
        )
        await pilot.press("f")
        await pilot.pause()
        assert tabs.active == "findings"
        assert "Findings (1, newest first)" in screen_text(app)
        await pilot.press("d")
        assert tabs.active == "detail"
        await pilot.press("v", "enter")  # Enter on a reader shows its detail
        assert tabs.active == "detail"


async def test_help_opens_and_closes(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert "Keys" in screen_text(app)
        body = app.screen.query_one("#body", Static).visual
        assert isinstance(body, Content)
        assert "page now" in body.plain and "CRIT" in body.plain
        assert "acknowledge the alert in every sink" in body.plain
        assert "! alert active · a alert acknowledged" in body.plain
        await pilot.press("a")  # the dashboard's keys sleep while a dialog is open
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark", "q")  # q closes the help, it does not quit
        assert not isinstance(app.screen, HelpScreen) and app.is_running


async def test_q_quits(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_actions_without_a_reader_say_so(empty: LiveEngine) -> None:
    app = app_for(empty)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        for key in ("a", "e", "s"):
            await pilot.press(key)
            assert len(app.screen_stack) == 1
        await pilot.pause()
        assert "no reader selected" in screen_text(app)
        assert notices(app) == ["no reader selected: move the cursor to a reader first"] * 3
        assert "No readers yet" in app.query_one(DetailPane).text.plain


async def test_the_timer_pulls_snapshots(tmp_path: Path) -> None:
    view = live(tmp_path)
    app = DashboardApp(view, operator="alice", refresh_seconds=0.05)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        assert table(app).principals == []
        feed(view, [ev(at(0, 10, 1), "SELECT * FROM crm.client_list", user="mallory", rows=1900)])
        for _ in range(100):
            await pilot.pause(0.02)
            if table(app).principals:
                break
        assert [p.user for p in table(app).principals] == ["mallory"]


async def test_a_failing_source_is_shown_down(tmp_path: Path) -> None:
    view = live(tmp_path)
    view.attach(BrokenSource())
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        runner = asyncio.create_task(view.run())
        try:
            await asyncio.sleep(0.05)
            await app.refresh_snapshot()
            await pilot.pause()
            header = screen_text(app).splitlines()[1]
            assert "pgaudit-log ✗ ERROR PermissionError" in header
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


class FailingView:
    """A real EngineView whose engine cannot be reached (an agent that went away)."""

    def __init__(self, inner: LiveEngine) -> None:
        self.inner = inner
        self.alerts = inner.alerts  # delivered by the test app as by `tablewatch dashboard`
        self.down = False

    @property
    def name(self) -> str:
        return "agent http://10.0.0.9:9747"

    async def snapshot(self):  # type: ignore[no-untyped-def]
        if self.down:
            raise ConnectionRefusedError("[Errno 111] Connect call failed ('10.0.0.9', 9747)")
        return await self.inner.snapshot()

    async def page(self, request):  # type: ignore[no-untyped-def]
        raise RuntimeError("unexpected [bold]bug[/] in the agent")

    async def mark_expected(self, principal, note, operator):  # type: ignore[no-untyped-def]
        return await self.inner.mark_expected(principal, note, operator)

    async def snooze(self, principal, seconds, operator):  # type: ignore[no-untyped-def]
        return await self.inner.snooze(principal, seconds, operator)

    async def signal_backend(self, principal, pid, terminate, operator):  # type: ignore[no-untyped-def]
        raise RuntimeError("unexpected [bold]bug[/] in the agent")

    async def acknowledge(self, key, note, operator):  # type: ignore[no-untyped-def]
        raise RuntimeError("unexpected [bold]bug[/] in the agent")

    async def resolve(self, key, note, operator):  # type: ignore[no-untyped-def]
        return await self.inner.resolve(key, note, operator)


async def test_a_view_that_fails_keeps_the_last_snapshot(view: LiveEngine) -> None:
    failing = FailingView(view)
    app = DashboardApp(failing, operator="alice", refresh_seconds=30)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        failing.down = True
        await app.refresh_snapshot()
        await pilot.press("a", "enter")
        await settle(app)
        await pilot.pause()
        screen = screen_text(app)
        assert "✗ view: ConnectionRefusedError" in screen
        assert "page failed: unexpected [bold]bug[/] in the agent" in notices(app)
        assert "unexpected [bold]bug[/]" in screen
        assert table(app).principals[0] == MALLORY
        assert app.is_running


async def test_an_alert_action_that_fails_is_one_line(view: LiveEngine, tmp_path: Path) -> None:
    assert view.alerts is not None
    view.alerts.page(MALLORY, Severity.CRITICAL, (), note="", operator="bob")
    app = app_for(FailingView(view))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("k", "enter")
        await settle(app)
        await pilot.pause()
        assert notices(app) == ["acknowledge failed: unexpected [bold]bug[/] in the agent"]
        assert [n.severity for n in app._notifications] == ["error"]
        assert app.is_running and len(app.screen_stack) == 1
        assert [r["action"] for r in alerts_file(tmp_path)] == ["trigger"]


async def test_severity_of_page_defaults_to_at_least_warning(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("down", "down", "a")  # report: severity none
        modal = app.screen
        assert isinstance(modal, PageModal) and modal.severity is Severity.WARNING


async def test_page_and_cancel_buttons_by_keyboard(view: LiveEngine, tmp_path: Path) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("a", "tab", "tab", "enter")  # note → Page → Cancel
        await settle(app)
        assert not isinstance(app.screen, PageModal)
        assert alerts_file(tmp_path) == []
        await pilot.press("a", "tab", "enter")  # the Page button
        await settle(app)
        assert [r["user"] for r in alerts_file(tmp_path)] == ["mallory"]


async def test_keys_typed_into_the_filter_are_just_text(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("slash", *"apoqsedvfr", "question_mark")
        await pilot.pause()
        assert app.is_running and len(app.screen_stack) == 1
        assert app.needle == "apoqsedvfr?"
        assert (app.paused, app.order, app.reveal) == (False, 0, False)
        assert app.query_one(TabbedContent).active == "detail"
        await pilot.press("escape")  # straight from the input: cleared and closed
        await pilot.pause()
        assert app.needle == "" and app.focused is table(app)
        assert not app.query_one("#filter").has_class("-shown")


class SlowView(FailingView):
    """An engine whose pages take a while to be delivered (a slow pager API)."""

    def __init__(self, inner: LiveEngine) -> None:
        super().__init__(inner)
        self.release = asyncio.Event()
        self.calls = 0

    async def page(self, request):  # type: ignore[no-untyped-def]
        self.calls += 1
        await self.release.wait()
        return await self.inner.page(request)


async def test_a_page_in_flight_is_never_cut_off(view: LiveEngine, tmp_path: Path) -> None:
    slow = SlowView(view)
    app = app_for(slow)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("a", "enter")
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        assert not isinstance(app.screen, PageModal)
        assert "still waiting for the last one: try again in a moment" in notices(app)
        slow.release.set()
        await settle(app)
        assert slow.calls == 1
        assert len(alerts_file(tmp_path)) == 1


async def test_tab_moves_the_focus_and_the_keys_still_work(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app)
        await pilot.press("tab")
        assert app.focused is not table(app)
        await pilot.press("v")
        assert app.query_one(TabbedContent).active == "events"
        await pilot.press("shift+tab")
        assert app.focused is table(app)
