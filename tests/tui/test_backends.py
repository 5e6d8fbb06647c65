"""A reader caught in the act: its live backends in the detail and the readers table, and `c`
to cancel the query of or terminate one of them, pressed as an operator would (Pilot) against a
real engine: nothing is sent without the dialog's `c` or `t`, and what the engine answers is one
notification."""

from __future__ import annotations

from dataclasses import replace

from textual.content import Content
from textual.widgets import Static

from core.findings import PrincipalKey
from tablewatch.live import LiveEngine
from tests.tui.hostile import CLEAR, CLICK, MARKUP
from tests.tui.world import COPY, CURSOR, app_for, caught, notices, screen_text, settle
from tui.app import DashboardApp
from tui.modals import BackendModal, HelpScreen
from tui.panes import DetailPane
from tui.readers import ReadersTable

SIZE = (100, 30)
MALLORY = PrincipalKey("mallory", "203.0.113.9", "psql", "crm.client_list")


class Recording:
    """The engine view, with the signals it is asked to send recorded and answered as the
    server would (the real signal is tested against PostgreSQL: tests/integration)."""

    def __init__(self, inner: LiveEngine) -> None:
        self.inner = inner
        self.alerts = inner.alerts
        self.sent: list[tuple[PrincipalKey, int, bool, str]] = []

    @property
    def name(self) -> str:
        return self.inner.name

    async def snapshot(self):  # type: ignore[no-untyped-def]
        return await self.inner.snapshot()

    async def page(self, request):  # type: ignore[no-untyped-def]
        return await self.inner.page(request)

    async def mark_expected(self, principal, note, operator):  # type: ignore[no-untyped-def]
        return await self.inner.mark_expected(principal, note, operator)

    async def snooze(self, principal, seconds, operator):  # type: ignore[no-untyped-def]
        return await self.inner.snooze(principal, seconds, operator)

    async def signal_backend(self, principal, pid, terminate, operator):  # type: ignore[no-untyped-def]
        self.sent.append((principal, pid, terminate, operator))
        return f"terminated backend {pid}" if terminate else f"cancelled the query of backend {pid}"

    async def acknowledge(self, key, note, operator):  # type: ignore[no-untyped-def]
        return await self.inner.acknowledge(key, note, operator)

    async def resolve(self, key, note, operator):  # type: ignore[no-untyped-def]
        return await self.inner.resolve(key, note, operator)


def _flags(app: DashboardApp, principal: PrincipalKey) -> str:
    table = app.query_one(ReadersTable)
    return table.get_cell(str(table.principals.index(principal)), "flags").plain


async def test_the_detail_and_the_table_show_a_reader_in_the_act(view: LiveEngine) -> None:
    app = app_for(caught(view, COPY))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.pause()
        detail = app.query_one(DetailPane).text.plain
        assert (
            "in the database now: pid 4242 COPY active for 2m 03s · 203.0.113.9 psql · "
            "COPY crm.client_list TO STDOUT"
        ) in detail
        assert "c: cancel its query or terminate it (asks first)" in detail
        assert _flags(app, MALLORY) == "▶"
        others = [p for p in app.query_one(ReadersTable).principals if p != MALLORY]
        assert others and all("▶" not in _flags(app, p) for p in others)


async def test_the_flag_fits_80_columns_beside_the_others(view: LiveEngine) -> None:
    await view.mark_expected(MALLORY, "pentest", "alice")
    await view.snooze(MALLORY, 600, "alice")
    app = app_for(caught(view, COPY))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(app)
        await pilot.pause()
        assert _flags(app, MALLORY) == "▶zE"
        row = next(line for line in screen_text(app).splitlines() if "mallory" in line)
        assert "▶zE  mallory" in row and "95% -" in row  # every column still fits


async def test_c_lists_the_backends_and_cancels_the_chosen_one(view: LiveEngine) -> None:
    recording = Recording(caught(view, COPY, CURSOR))
    app = app_for(recording)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("c")
        assert isinstance(app.screen, BackendModal)
        screen = screen_text(app)
        assert "Cancel the query of, or terminate, a backend of this reader?" in screen
        assert "(•) pid 4242 COPY active for 2m 03s (since 10:27:57)" in screen
        assert "( ) pid 4243 CURSOR idle in transaction for 7m 00s (since 10:23:00)" in screen
        assert "c  cancel its query" in screen and "t  terminate it" in screen
        assert recording.sent == []  # a dialog, nothing sent yet
        await pilot.press("down", "down", "up", "down")  # the choice stops at the last one
        assert "(•) pid 4243" in screen_text(app)
        await pilot.press("c")
        await settle(app)
        await pilot.pause()
        assert not isinstance(app.screen, BackendModal)
        assert recording.sent == [(MALLORY, 4243, False, "alice")]
        assert notices(app) == ["cancelled the query of backend 4243"]
        assert "cancelled the query of backend 4243" in screen_text(app)


async def test_t_terminates_and_escape_sends_nothing(view: LiveEngine) -> None:
    recording = Recording(caught(view, COPY))
    app = app_for(recording)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("c", "escape")
        await settle(app)
        assert len(app.screen_stack) == 1 and recording.sent == []
        await pilot.press("c")
        assert "↑ ↓" not in screen_text(app)  # one backend: nothing to choose
        await pilot.press("t")
        await settle(app)
        assert recording.sent == [(MALLORY, 4242, True, "alice")]
        assert notices(app) == ["terminated backend 4242"]


async def test_a_reader_without_a_backend_gets_a_notice_not_a_dialog(view: LiveEngine) -> None:
    recording = Recording(view)
    app = app_for(recording)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("c")
        await pilot.pause()
        assert len(app.screen_stack) == 1
        assert notices(app) == ["mallory has no backend reading crm.client_list now"]
        assert [n.severity for n in app._notifications] == ["warning"]
        assert "in the database now" not in app.query_one(DetailPane).text.plain
        assert recording.sent == []


async def test_the_engines_refusal_is_one_line(view: LiveEngine) -> None:
    app = app_for(caught(view, COPY))  # no [database] in this engine
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("c", "c")
        await settle(app)
        await pilot.pause()
        assert notices(app) == [
            "cancel refused: no [database] dsn is configured: tablewatch cannot reach the "
            "server's backends"
        ]
        assert [n.severity for n in app._notifications] == ["error"]
        assert "cancel refused: no [database] dsn" in screen_text(app)
        assert app.is_running and len(app.screen_stack) == 1


async def test_hostile_backends_are_shown_literally(view: LiveEngine) -> None:
    evil = replace(
        COPY, application_name=CLICK, state=MARKUP, kind=f"copy{CLEAR}", query=f"COPY {MARKUP}"
    )
    app = app_for(caught(view, evil))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("r")  # revealed: the query as it is, still inert
        await pilot.pause()
        detail = app.query_one(DetailPane).text.plain
        assert f"pid 4242 COPY\\x1b[2J {MARKUP} for 2m 03s" in detail
        assert f"203.0.113.9 {CLICK} · COPY {MARKUP}" in detail
        await pilot.press("c")
        body = app.screen.query_one("#body", Static).visual
        assert isinstance(body, Content) and f"COPY {MARKUP}" in body.plain
        assert app.is_running


async def test_the_help_names_the_key(view: LiveEngine) -> None:
    app = app_for(view)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        body = app.screen.query_one("#body", Static).visual
        assert isinstance(body, Content)
        assert "cancel the query of, or terminate, a backend of the selected reader" in body.plain
        assert "▶ in the database now (c)" in body.plain
        await pilot.press("c")  # the dashboard's keys sleep while a dialog is open
        assert isinstance(app.screen, HelpScreen)
