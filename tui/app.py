"""The dashboard: who reads the watched tables, most anomalous first, and the operator's actions.

It talks to an engine only through `core.view.EngineView` (see `tui.operator`). A timer pulls a
snapshot into the `snapshot` var every `refresh_seconds` (a steady repaint however bursty the
traffic); the widgets are redrawn from it and from the operator's choices (order, filter,
reveal). Data reaches the widgets only as Text built by `tui.text`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Container
from textual.css.query import NoMatches
from textual.reactive import var
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane

from core.events import AccessEvent
from core.snapshot import AlertView
from core.view import EngineView
from tui import keys, lines
from tui import text as t
from tui.alertlist import AlertsTable, alerts_bar, findings_pane, marks, open_first
from tui.detail import detail
from tui.header import StatusHeader, header
from tui.modals import HelpScreen
from tui.operator import OperatorApp
from tui.panes import DetailPane, EventsPane, FindingsPane
from tui.readers import ORDERS, ReadersTable, event_matches, ordered, reader_matches, title

TAIL_LINES = 200
"""Access events shown in the tail (the newest matching the filter)."""
_ACTIONS = frozenset(
    {
        "page",
        "expect",
        "snooze",
        "acknowledge",
        "resolve",
        "backend",
        "filter",
        "order",
        "pause",
        "reveal",
        "tab",
        "help",
        "quit",
    }
)
"""The dashboard's own actions: off while a dialog is open (its keys are the dialog's)."""


class DashboardApp(OperatorApp):
    """The Textual dashboard over an `EngineView`."""

    TITLE = "tablewatch"
    CSS_PATH = Path(__file__).with_name("app.tcss")
    """Absolute: Textual resolves a relative path next to the module of a subclass."""
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = list(keys.BINDINGS)
    HORIZONTAL_BREAKPOINTS = [
        (0, "-narrow"),
        (160, "-wide"),
    ]

    order = var(0)
    """Index into ORDERS."""
    needle = var("")
    """The filter the operator typed."""

    def __init__(
        self,
        view: EngineView,
        *,
        operator: str,
        refresh_seconds: float = 1.0,
        legend: str = "",
    ) -> None:
        super().__init__(view, operator=operator, refresh_seconds=refresh_seconds)
        self.animation_level = "none"  # slow SSH links: no frames spent on sliding underlines
        self.legend = legend
        self._drawn = False
        self._lines: dict[int, tuple[AccessEvent, Text]] = {}
        """The tail's lines drawn at the last refresh, by event (held, so ids stay theirs)."""
        self._lines_revealed = False
        self.alert_key: str | None = None
        """The alert under the alerts list's cursor, kept across refreshes."""
        self._bar: Text | None = None

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        with Container(id="main"):
            yield ReadersTable(id="readers")
            with TabbedContent(id="panes", initial="detail"):
                with TabPane("Detail", id="detail"):
                    yield DetailPane(id="detail-pane")
                with TabPane("Events", id="events"):
                    yield EventsPane(id="events-pane")
                with TabPane("Findings & alerts", id="findings"):
                    yield Static(Text(end=""), id="alerts-bar", markup=False)
                    yield AlertsTable(id="alerts")
                    yield FindingsPane(id="findings-pane")
        yield Input(
            placeholder="filter: user, client, application or table", id="filter", max_length=200
        )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._drawn = True
        self.query_one(ReadersTable).focus()
        self._show()
        self.start_pulling()

    def watch_snapshot(self) -> None:
        self._show()

    def watch_order(self) -> None:
        self._show()

    def watch_needle(self) -> None:
        self._show()

    def watch_reveal(self) -> None:
        self._show()

    def watch_paused(self) -> None:
        self._show_header()

    def watch_problem(self) -> None:
        self._show_header()

    # drawing ------------------------------------------------------------------------------------

    def _show_header(self) -> None:
        if self._drawn:
            self.query_one(StatusHeader).update(
                header(
                    self.snapshot,
                    name=self.view.name,
                    operator=self.operator,
                    paused=self.paused,
                    legend=self.legend,
                    problem=self.problem,
                )
            )

    def _show(self) -> None:
        if not self._drawn:
            return
        self._show_header()
        snap = self.snapshot
        table = self.query_one(ReadersTable)
        if snap is None:
            table.border_title = title(ORDERS[self.order], self.needle, 0, 0)
            self.query_one(DetailPane).show(t.label("waiting for the first snapshot…", t.DIM))
            return
        order = ORDERS[self.order]
        readers = [r for r in ordered(snap.readers, order) if reader_matches(r, self.needle)]
        total = max(snap.readers_total, len(snap.readers))
        table.border_title = title(order, self.needle, len(readers), total)
        self.selected = table.show(readers, snap.taken_us, self.selected, marks(snap.alerts))
        self._show_pane()

    def _show_pane(self) -> None:
        """Draw the pane on screen (the hidden ones are drawn when their tab is chosen: at 1,000
        events/s, drawing all three each second costs more than the whole readers table)."""
        snap = self.snapshot
        if snap is None:
            return
        active = self.query_one(TabbedContent).active
        if active == "detail":
            self._show_detail()
        elif active == "events":
            tail = [e for e in snap.tail if event_matches(e, self.needle)][-TAIL_LINES:]
            events = self._tail_lines(tail)
            if not events:
                why = "no access events match the filter" if snap.tail else "no access events yet"
                events = [t.label(why, t.DIM)]
            self.query_one(EventsPane).show(t.lines(events))
        elif active == "findings":
            self._show_alerts()

    def _show_alerts(self) -> None:
        """The alerts bar, the list (rows rewritten in place) and the selected alert in full
        above the findings."""
        snap = self.snapshot
        if snap is None:
            return
        bar = alerts_bar(snap.alerts, snap.suppressed, snap.outbox)
        if bar != self._bar:
            self._bar = bar
            self.query_one("#alerts-bar", Static).update(bar)
        listed = self.query_one(AlertsTable)
        self.alert_key = listed.show(open_first(snap.alerts), self.alert_key)
        if not snap.alerts and listed.has_focus:
            self.query_one(ReadersTable).focus()
        self.query_one(FindingsPane).show(findings_pane(snap.findings, listed.alert))

    @on(TabbedContent.TabActivated, "#panes")
    def _tab_shown(self) -> None:
        self._show_pane()

    def _tail_lines(self, events: Sequence[AccessEvent]) -> list[Text]:
        """The tail's lines, each drawn once while it stays in the tail (events are frozen)."""
        memo = self._lines if self._lines_revealed == self.reveal else {}
        drawn: dict[int, tuple[AccessEvent, Text]] = {}
        out = []
        for event in events:
            hit = memo.get(id(event))
            line = hit[1] if hit is not None and hit[0] is event else None
            if line is None:
                line = lines.tail_line(event, self.reveal)
            drawn[id(event)] = (event, line)
            out.append(line)
        self._lines, self._lines_revealed = drawn, self.reveal
        return out

    def _show_detail(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        reader = self.reader()
        if reader is None and not snap.readers:
            content = t.label("No readers yet: nobody has read the watched tables.", t.DIM)
        else:
            content = detail(reader, snap.findings, snap.taken_us, self.reveal)
        self.query_one(DetailPane).show(content)

    @on(DataTable.RowHighlighted, "#readers")
    def _moved(self) -> None:
        try:
            self.selected = self.query_one(ReadersTable).selected
            shown = self.query_one(TabbedContent).active
        except NoMatches:  # a highlight arriving while the app closes
            return
        if shown == "detail":
            self._show_detail()

    @on(DataTable.RowSelected, "#readers")
    def _chosen(self) -> None:
        self.query_one(TabbedContent).active = "detail"

    @on(DataTable.RowHighlighted, "#alerts")
    def _alert_moved(self) -> None:
        try:
            listed = self.query_one(AlertsTable)
        except NoMatches:  # a highlight arriving while the app closes
            return
        self.alert_key = listed.selected
        if self.snapshot is not None:
            self.query_one(FindingsPane).show(findings_pane(self.snapshot.findings, listed.alert))

    @on(DataTable.RowSelected, "#alerts")
    def _alert_chosen(self) -> None:
        """Enter on an alert: its reader, selected in the readers table, and its detail."""
        alert = self.query_one(AlertsTable).alert
        if alert is None:
            return
        readers = self.query_one(ReadersTable)
        if alert.principal not in readers.principals:
            self.notify(
                t.notice(
                    "not in the readers table now (quiet, or filtered out): ", alert.principal.user
                ),
                markup=False,
            )
            return
        readers.move_cursor(row=readers.principals.index(alert.principal), animate=False)
        self.selected = alert.principal
        self.query_one(TabbedContent).active = "detail"
        readers.focus()

    def alert_target(self, action: str) -> AlertView | None:
        """On the Findings & alerts tab, the alert under the list's cursor; elsewhere, the
        selected reader's."""
        if self.query_one(TabbedContent).active == "findings":
            return self.query_one(AlertsTable).alert
        return super().alert_target(action)

    # keys ---------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _ACTIONS and len(self.screen_stack) > 1:
            return False
        return True

    def action_filter(self) -> None:
        """Open the filter input."""
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.focus()

    def action_clear_filter(self) -> None:
        """Clear and close the filter."""
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("-shown")
        self.needle = ""
        self.query_one(ReadersTable).focus()

    @on(Input.Changed, "#filter")
    def _filtered(self, event: Input.Changed) -> None:
        self.needle = event.value

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#filter", Input).remove_class("-shown")
        self.query_one(ReadersTable).focus()

    def action_order(self) -> None:
        """Next sort order."""
        self.order = (self.order + 1) % len(ORDERS)

    def action_pause(self) -> None:
        """Freeze the screen on this snapshot (or resume)."""
        self.paused = not self.paused
        if not self.paused:
            self.pull_now()

    def action_reveal(self) -> None:
        """Show or hide statement literals and parameters."""
        self.reveal = not self.reveal
        self.notify(
            "statement values revealed" if self.reveal else "statement values hidden", markup=False
        )

    def action_tab(self, name: str) -> None:
        """Show one of the bottom tabs (the alerts list takes the focus on its tab, so that
        ↑ ↓ pick an alert; the other tabs give it back to the readers)."""
        self.query_one(TabbedContent).active = name
        listed = self.query_one(AlertsTable)
        if name == "findings":
            self._show_pane()  # now, so that the list has its rows to focus
            if listed.row_count:
                listed.focus()
        elif listed.has_focus:
            self.query_one(ReadersTable).focus()

    def action_help(self) -> None:
        """The help screen."""
        self.push_screen(HelpScreen(keys.help_body(self.view.name, self.operator, self.legend)))
