"""The dashboard: who reads the watched tables, most anomalous first, and the operator's actions.

It talks to an engine only through `core.view.EngineView` (see `tui.operator`). A timer pulls a
snapshot into the `snapshot` var every `refresh_seconds` (a steady repaint however bursty the
traffic); the widgets are redrawn from it and from the operator's choices (order, filter,
reveal). Data reaches the widgets only as Text built by `tui.text`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Container
from textual.css.query import NoMatches
from textual.reactive import var
from textual.widgets import DataTable, Footer, Input, TabbedContent, TabPane

from core.events import AccessEvent
from core.view import EngineView
from tui import keys, lines
from tui import text as t
from tui.detail import detail
from tui.header import StatusHeader, header
from tui.modals import HelpScreen
from tui.operator import OperatorApp
from tui.panes import DetailPane, EventsPane, FindingsPane
from tui.readers import ORDERS, ReadersTable, event_matches, ordered, reader_matches, title

TAIL_LINES = 200
"""Access events shown in the tail (the newest matching the filter)."""
_ACTIONS = frozenset(
    {"page", "expect", "snooze", "filter", "order", "pause", "reveal", "tab", "help", "quit"}
)
"""The dashboard's own actions: off while a dialog is open (its keys are the dialog's)."""


class DashboardApp(OperatorApp):
    """The Textual dashboard over an `EngineView`."""

    TITLE = "tablewatch"
    CSS_PATH = "app.tcss"
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
    reveal = var(False)
    """Show statement literals and parameters."""

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
        self.selected = table.show(readers, snap.taken_us, self.selected)
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
            self.query_one(FindingsPane).show(lines.findings_pane(snap.findings, snap.alerts))

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
        """Show one of the bottom tabs."""
        self.query_one(TabbedContent).active = name

    def action_help(self) -> None:
        """The help screen."""
        self.push_screen(HelpScreen(keys.help_body(self.view.name, self.operator, self.legend)))
