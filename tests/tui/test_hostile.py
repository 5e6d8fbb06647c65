"""Hostile text through every pane, dialog and renderer: shown literally, never obeyed."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual.content import Content
from textual.widgets import Static

from core.dbside import Backend
from core.events import AccessEvent, EventKind
from core.findings import Finding, PrincipalKey, Reason, Severity
from core.snapshot import (
    AlertView,
    Delivery,
    ReaderView,
    Snapshot,
    StatementSeen,
    TableView,
)
from core.sources import SourceHealth
from tests.tui.hostile import (
    BIDI,
    CLEAR,
    CLICK,
    CSI_C1,
    DCS,
    FRAGMENTS,
    LINK,
    MARKUP,
    OSC8,
    OSC52,
    UNSAFE,
    assert_inert,
)
from tests.tui.world import FIXED_US, alerts_file, app_for, feed, live, screen_text, settle
from tests.unit.enginekit import at, ev
from tui import alertlist, keys, lines
from tui import text as t
from tui.alertlist import AlertsTable
from tui.detail import detail
from tui.header import header
from tui.operator import outcome
from tui.panes import DetailPane, EventsPane, FindingsPane
from tui.readers import ReadersTable, title

STATEMENT = (
    f"SELECT * FROM crm.client_list /* {MARKUP} {LINK} [/x] [ */ WHERE note = '{CLEAR}'"
    f" OR note = '{OSC52}{OSC8}{DCS}{CSI_C1}\x00{BIDI}'"
)
PARAMS = ("[/x]", OSC8, f"\x00{BIDI}{CSI_C1}", MARKUP)
HUGE = "SELECT * FROM crm.client_list WHERE x IN (" + "'a', " * 200_000 + "'z')"
LONG_NAME = "u" * 4999 + "!"


def hostile_events() -> list[AccessEvent]:
    return [
        ev(
            at(0, 10, 20),
            STATEMENT,
            user=MARKUP,
            addr=LINK,
            app=CLICK,
            params=PARAMS,
            rows=1950,
            session="h1",
        ),
        ev(at(0, 10, 21), HUGE, user=LONG_NAME, addr="[", app="[/x]" * 1250, session="h2"),
        ev(at(0, 10, 22), f"SELECT 1 FROM crm.client_list -- {OSC52}", user=OSC8, app=DCS, rows=1),
    ]


async def test_hostile_text_is_shown_literally_everywhere(tmp_path: Path) -> None:
    view = live(tmp_path)
    started = time.monotonic()
    feed(view, hostile_events())
    app = app_for(view, legend=f"legend {MARKUP} {CLEAR}")
    app.operator = f"op{CLICK}"
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settle(app)
        await pilot.pause()
        screens = [screen_text(app)]
        table = app.query_one(ReadersTable)
        assert table.principals[0].user == MARKUP  # 97% of the table: critical, first
        shown = app.query_one(DetailPane).text.plain
        assert MARKUP in shown and CLICK in shown and LINK in shown
        assert "2 parameters hidden" not in shown and "4 parameters hidden" in shown
        await pilot.press("r")
        revealed = app.query_one(DetailPane).text.plain
        assert "\\x1b[2J" in revealed and "\\x9b31m" in revealed and "\\u202e" in revealed
        assert "$4=[bold red]PAGE ME[/]" in revealed
        for key in ("v", "f", "d", "down", "o", "question_mark", "escape"):
            await pilot.press(key)
            await pilot.pause()
            screens.append(screen_text(app))
        tail = app.query_one(EventsPane).text
        assert "\\x1b]8;;http://evil.example/" in tail.plain
        assert len(tail.plain) < 3000  # the 1 MB statement is cut, never laid out
        assert all(len(line) < 400 for line in tail.plain.splitlines())
        await pilot.press("o", "o", "o", "up", "up", "up")  # back on the first reader
        for key in ("e", "s"):
            await pilot.press(key)
            await pilot.pause()
            screens.append(screen_text(app))
            await pilot.press("escape")
        await pilot.press("a", *"[/x]", "[")
        await pilot.pause()
        screens.append(screen_text(app))
        await pilot.press("enter")
        await settle(app)
        await pilot.press("f")
        await pilot.pause()
        screens.append(screen_text(app))
        alerts = app.query_one(FindingsPane).text.plain
        assert "note: [/x][" in alerts and "local        sent" in alerts
        assert "paged by op" + CLICK in alerts
        await pilot.press("k", *"[b]ack")  # an operator's note is data too
        await pilot.pause()
        screens.append(screen_text(app))
        await pilot.press("enter")
        await settle(app)
        await pilot.pause()
        screens.append(screen_text(app))
        alerts = app.query_one(FindingsPane).text.plain
        assert "acknowledged by op" + CLICK in alerts
        assert [a["note"] for a in alerts_file(tmp_path)] == ["[/x][", "[/x]["]
        assert alerts_file(tmp_path)[1]["step_note"] == "[b]ack"
        for y in range(app.query_one(AlertsTable).row_count):
            for cell in app.query_one(AlertsTable).get_row_at(y):
                assert_inert(cell)
        # a click where the would-be action sits is a click on ink
        await pilot.press("d")
        await pilot.pause()
        text = screen_text(app)
        for y, line in enumerate(text.splitlines()):
            x = line.find("@click")
            if x >= 0:
                await pilot.click(offset=(x + 1, y))
        await pilot.pause()
        assert app.is_running
        screens.append(screen_text(app))
    assert app.return_code in (None, 0)
    for screen in screens:
        assert UNSAFE.search(screen.replace("\n", "")) is None
    joined = "\n".join(screens)
    assert "[bold red]PAGE ME[/]" in joined and "psql[@click=app.quit] ack[/]" in joined
    assert "legend [bold red]PAGE ME[/] \\x1b[2J" in joined
    assert time.monotonic() - started < 20


async def test_every_widget_holds_text_not_markup(tmp_path: Path) -> None:
    """The Statics and the table's cells are Content/Text built by tui.text, whatever the data."""
    view = live(tmp_path)
    feed(view, hostile_events())
    app = app_for(view)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app)
        await pilot.pause()
        for static in app.query(Static):
            visual = static.visual
            assert isinstance(visual, Content)
            assert UNSAFE.search(visual.plain.replace("\n", "")) is None
        table = app.query_one(ReadersTable)
        for y in range(table.row_count):
            for cell in table.get_row_at(y):
                assert_inert(cell)


hostile = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=6).map(
    "".join
)
severities = st.sampled_from(list(Severity))
times = st.integers(min_value=FIXED_US - 10**11, max_value=FIXED_US + 10**10)
params = st.none() | st.lists(hostile, max_size=25).map(tuple)


@st.composite
def principals(draw: st.DrawFn) -> PrincipalKey:
    return PrincipalKey(draw(hostile), draw(hostile), draw(hostile), draw(hostile))


@st.composite
def reasons(draw: st.DrawFn) -> tuple[Reason, ...]:
    n = draw(st.integers(0, 4))
    return tuple(
        Reason(draw(hostile), draw(severities), draw(st.integers(0, 100)), draw(hostile))
        for _ in range(n)
    )


@st.composite
def readers(draw: st.DrawFn) -> ReaderView:
    seen = tuple(
        StatementSeen(draw(times), draw(hostile), draw(st.none() | hostile), draw(params), None)
        for _ in range(draw(st.integers(0, 3)))
    )
    return ReaderView(
        draw(principals()),
        draw(severities),
        draw(st.integers(0, 100)),
        draw(reasons()),
        draw(st.integers(0, 10**9)),
        draw(st.integers(0, 10**6)),
        draw(st.integers(0, 10**12)),
        draw(st.integers(0, 10**12)),
        draw(st.none() | st.floats(0, 1000)),
        draw(st.booleans()),
        draw(times),
        draw(times),
        draw(st.none() | hostile),
        tuple(draw(st.lists(st.integers(0, 10**9), max_size=12))),
        tuple(draw(st.lists(st.integers(0, 10**9), max_size=24))),
        seen,
        draw(st.none() | times),
        tuple(draw(st.lists(backends(), max_size=3))),
    )


@st.composite
def backends(draw: st.DrawFn) -> Backend:
    return Backend(
        draw(st.integers(1, 2**31 - 1)),
        draw(hostile),
        draw(hostile),
        draw(hostile),
        draw(hostile),
        draw(hostile | st.sampled_from(["active", "idle in transaction"])),
        draw(hostile),
        tuple(draw(st.lists(hostile, max_size=2))),
        draw(hostile),
        draw(times),
        draw(st.none() | times),
        draw(st.none() | times),
    )


@st.composite
def findings(draw: st.DrawFn) -> Finding:
    return Finding(
        draw(times),
        draw(severities),
        draw(st.integers(0, 100)),
        draw(principals()),
        draw(reasons()),
    )


DELIVERY_STATES = st.sampled_from(["queued", "sent", "failed", "acked", "resolved"])
ALERT_STATES = st.sampled_from(["active", "acknowledged", "resolved"])


@st.composite
def alerts(draw: st.DrawFn) -> AlertView:
    deliveries = tuple(
        Delivery(draw(hostile), draw(hostile | DELIVERY_STATES), draw(hostile))
        for _ in range(draw(st.integers(0, 3)))
    )
    return AlertView(
        draw(hostile),
        draw(times),
        draw(principals()),
        draw(severities),
        draw(hostile),
        draw(hostile),
        draw(hostile),
        draw(hostile | st.sampled_from(["operator", "rule", "test"])),
        deliveries,
        state=draw(hostile | ALERT_STATES),
        findings=draw(st.integers(0, 10**9)),
        suppressed=draw(st.integers(0, 10**9)),
        updated_us=draw(st.just(0) | times),
        by=draw(hostile),
        said=draw(hostile),
    )


@st.composite
def events(draw: st.DrawFn) -> AccessEvent:
    return AccessEvent(
        draw(times),
        draw(st.sampled_from(list(EventKind))),
        draw(hostile),
        draw(hostile),
        draw(hostile),
        draw(hostile),
        draw(hostile),
        draw(st.none() | hostile),
        None,
        None,
        draw(hostile),
        draw(hostile),
        draw(hostile),
        draw(hostile),
        draw(st.none() | hostile),
        draw(params),
        draw(st.none() | st.integers(0, 10**12)),
    )


@st.composite
def sources(draw: st.DrawFn) -> SourceHealth:
    last = draw(st.none() | st.datetimes(timezones=st.just(UTC), min_value=datetime(2000, 1, 1)))
    return SourceHealth(
        draw(hostile),
        draw(hostile | st.sampled_from(["ok", "waiting", "error"])),
        draw(hostile),
        last,
    )


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(value=hostile, limit=st.integers(1, 300), reveal=st.booleans(), values=params)
def test_text_primitives_are_inert(
    value: str, limit: int, reveal: bool, values: tuple[str, ...] | None
) -> None:
    cut = t.data(value, limit)
    assert_inert(cut)
    assert len(cut.plain) <= limit
    assert_inert(t.cell(value, min(limit, 40)))
    assert_inert(t.statement(value, reveal))
    assert_inert(t.parameters(values, reveal))
    assert_inert(t.source_state(value))
    notice = t.notice("page failed: ", value)
    assert UNSAFE.search(notice) is None and len(notice) <= 300
    assert_inert(title("anomaly", value, 1, 2))


@FAST
@given(reader=readers(), found=st.lists(findings(), max_size=3), reveal=st.booleans())
def test_reader_renderers_are_inert(reader: ReaderView, found: list[Finding], reveal: bool) -> None:
    for cell in lines.reader_cells(reader, FIXED_US):
        assert_inert(cell)
    found.append(Finding(FIXED_US, Severity.WARNING, 50, reader.principal, reader.reasons))
    assert_inert(detail(reader, found, FIXED_US, reveal))
    assert_inert(lines.page_body(reader))
    assert_inert(lines.expect_body(reader))
    assert_inert(lines.snooze_body(reader))
    assert_inert(lines.backends_body(reader, len(reader.backends) - 1, FIXED_US, reveal))


@FAST
@given(
    event=events(),
    finding=findings(),
    alert=alerts(),
    reveal=st.booleans(),
)
def test_line_renderers_are_inert(
    event: AccessEvent, finding: Finding, alert: AlertView, reveal: bool
) -> None:
    assert_inert(lines.tail_line(event, reveal))
    assert_inert(lines.finding_line(finding))
    assert_inert(alertlist.alert_line(alert))
    assert_inert(alertlist.findings_pane([finding], alert))
    for action in ("acknowledge", "resolve"):
        assert_inert(alertlist.action_body(action, alert))


@FAST
@given(
    alert=alerts(),
    more=st.lists(alerts(), max_size=3),
    width=st.integers(1, 200),
    counts=st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)),
)
def test_alert_renderers_are_inert(
    alert: AlertView, more: list[AlertView], width: int, counts: tuple[int, int]
) -> None:
    cells = alertlist.alert_cells(alert, width)
    for cell, (_, _, w) in zip(cells, alertlist.ALERT_COLUMNS, strict=True):
        assert_inert(cell)
        assert cell.cell_len <= (w or width)  # a cell never pushes the next one off
    for item in alert.deliveries:
        assert_inert(alertlist.delivery(item))
    for action in ("page", "acknowledge", "resolve"):
        text, _ = outcome(action, alert)
        assert UNSAFE.search(text) is None and len(text) <= 300
    assert_inert(alertlist.alerts_bar([alert, *more], *counts))
    reader = lines.reader_cells(
        ReaderView(alert.principal, alert.severity, 1, (), 1, 0, 1, 1, None, False, 0, 0, None),
        FIXED_US,
        alertlist.marks([alert, *more]).get(alert.principal, ""),
    )
    for cell in reader:
        assert_inert(cell)


@FAST
@given(
    name=hostile,
    operator=hostile,
    legend=hostile,
    problem=hostile,
    tables=st.lists(st.builds(TableView, hostile, st.none() | st.integers(0, 10**9)), max_size=5),
    health=st.lists(sources(), max_size=3),
    paused=st.booleans(),
    shown=st.lists(alerts(), max_size=3),
    held=st.integers(0, 10**9),
    queued=st.integers(0, 10**9),
)
def test_header_and_help_are_inert(
    name: str,
    operator: str,
    legend: str,
    problem: str,
    tables: list[TableView],
    health: list[SourceHealth],
    paused: bool,
    shown: list[AlertView],
    held: int,
    queued: int,
) -> None:
    snap = Snapshot(
        FIXED_US,
        (),
        (),
        0,
        True,
        tuple(tables),
        tuple(health),
        alerts=tuple(shown),
        suppressed=held,
        outbox=queued,
    )
    for snapshot in (snap, None):
        out = header(
            snapshot, name=name, operator=operator, paused=paused, legend=legend, problem=problem
        )
        assert_inert(out)
    assert_inert(keys.help_body(name, operator, legend))


def test_huge_values_are_cut_before_they_are_laid_out() -> None:
    event = hostile_events()[1]
    started = time.monotonic()
    line = lines.tail_line(event, reveal=False)
    assert len(line.plain) < 400
    assert len(lines.tail_line(event, reveal=True).plain) < 400
    assert len(t.data(LONG_NAME, 30).plain) == 30 and t.data(LONG_NAME, 30).plain.endswith("…")
    assert time.monotonic() - started < 2
