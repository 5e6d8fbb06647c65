"""The operator's confirmations: page, mark expected, snooze, acknowledge and resolve an alert,
cancel or terminate a backend. Escape always cancels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static
from textual.widgets.button import ButtonVariant

from core.findings import Severity
from core.snapshot import AlertView, ReaderView
from tui import lines
from tui import text as t
from tui.alertlist import action_body

SNOOZES = {"1": 15 * 60, "2": 3600, "3": 4 * 3600, "4": 24 * 3600, "0": 0}
"""Snooze keys and their durations in seconds (0 lifts the snooze)."""
CHOICES = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
_R = TypeVar("_R")

MODAL_CSS = """
{name} {{ align: center middle; background: $background 60%; }}
{name} > Vertical, {name} > VerticalScroll {{
    width: 90%; max-width: 96; height: auto; max-height: 90%;
    border: thick {colour}; background: $surface; padding: 0 1;
}}
{name} Static {{ width: 1fr; height: auto; }}
{name} #body {{ max-height: 12; }}
{name} #severity {{ margin: 1 0 0 0; }}
{name} .buttons {{ height: 1; }}
{name} .buttons Static {{ width: 1fr; }}
{name} Button {{ margin: 0 0 0 2; width: auto; min-width: 8; }}
"""


@dataclass(frozen=True, slots=True)
class PageChoice:
    """What the operator confirmed in the page dialog."""

    severity: Severity
    note: str


def default_severity(reader: ReaderView) -> Severity:
    """The page's severity to start with: the reader's, at least warning."""
    return max(reader.severity, Severity.WARNING)


class _NoteModal(ModalScreen[_R]):
    """A confirmation with a note: Enter, ctrl+s or the confirm button confirms, Escape or the
    other button cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "confirm", "Confirm")]

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def result(self, note: str) -> _R:
        """What the dialog answers when confirmed with `note`."""
        raise NotImplementedError

    @on(Input.Submitted)
    def action_confirm(self) -> None:
        """Confirm with the note typed."""
        self.dismiss(self.result(self.query_one(Input).value))

    def action_cancel(self) -> None:
        """Close without doing anything."""
        self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.action_cancel()


class PageModal(_NoteModal[PageChoice | None]):
    """Page on-call about a reader: severity (up/down), a note, Enter or ctrl+s to page."""

    DEFAULT_CSS = MODAL_CSS.format(name="PageModal", colour="$error")
    BINDINGS = [
        Binding("ctrl+s", "confirm", "Page"),
        Binding("up", "severity(-1)", "Severity up", show=False),
        Binding("down", "severity(1)", "Severity down", show=False),
    ]

    def __init__(self, reader: ReaderView) -> None:
        super().__init__()
        self.reader = reader
        self.severity = default_severity(reader)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(lines.page_body(self.reader), id="body")
            yield Static(t.choice(CHOICES, self.severity), id="severity")
            yield Input(placeholder="note for on-call (optional)", id="note", max_length=500)
            with Horizontal(classes="buttons"):
                yield Static(t.label("Enter or ctrl+s pages · Esc cancels", t.DIM))
                yield Button("Page", variant="error", id="confirm", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def action_severity(self, step: int) -> None:
        """Move the severity choice (-1: more severe)."""
        i = min(len(CHOICES) - 1, max(0, CHOICES.index(self.severity) + step))
        self.severity = CHOICES[i]
        self.query_one("#severity", Static).update(t.choice(CHOICES, self.severity))

    def result(self, note: str) -> PageChoice | None:
        """Page with the chosen severity and note."""
        return PageChoice(self.severity, note)


class ExpectModal(_NoteModal[str | None]):
    """Mark a reader as expected, with a note: Enter or ctrl+s confirms, Escape cancels."""

    DEFAULT_CSS = MODAL_CSS.format(name="ExpectModal", colour="$success")

    def __init__(self, reader: ReaderView) -> None:
        super().__init__()
        self.reader = reader

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(lines.expect_body(self.reader), id="body")
            yield Input(
                placeholder="why it is expected (e.g. nightly backup)", id="note", max_length=500
            )
            with Horizontal(classes="buttons"):
                yield Static(t.label("Enter or ctrl+s confirms · Esc cancels", t.DIM))
                yield Button("Mark expected", variant="success", id="confirm", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def result(self, note: str) -> str | None:
        """The note."""
        return note


class AlertModal(_NoteModal[str | None]):
    """Acknowledge or resolve an alert in every sink, with a note: Enter or ctrl+s confirms,
    Escape cancels. Answers the note."""

    DEFAULT_CSS = MODAL_CSS.format(name="AlertModal", colour="$warning")
    BUTTONS: ClassVar[dict[str, tuple[str, ButtonVariant]]] = {
        "acknowledge": ("Acknowledge", "warning"),
        "resolve": ("Resolve", "success"),
    }

    def __init__(self, action: str, alert: AlertView) -> None:
        super().__init__()
        self.action = action
        self.alert = alert

    def compose(self) -> ComposeResult:
        label, variant = self.BUTTONS[self.action]
        with Vertical():
            yield Static(action_body(self.action, self.alert), id="body")
            yield Input(
                placeholder="note (optional): what you found or did", id="note", max_length=500
            )
            with Horizontal(classes="buttons"):
                yield Static(t.label(f"Enter or ctrl+s: {label.lower()} · Esc cancels", t.DIM))
                yield Button(label, variant=variant, id="confirm", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def result(self, note: str) -> str | None:
        """The note."""
        return note


class SnoozeModal(ModalScreen[int | None]):
    """Snooze a reader: 1-4 choose 15m/1h/4h/24h, 0 lifts, Escape cancels."""

    DEFAULT_CSS = MODAL_CSS.format(name="SnoozeModal", colour="$accent")
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        *(Binding(key, f"choose({seconds})", show=False) for key, seconds in SNOOZES.items()),
    ]

    def __init__(self, reader: ReaderView) -> None:
        super().__init__()
        self.reader = reader

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(lines.snooze_body(self.reader), id="body")

    def action_choose(self, seconds: int) -> None:
        """Snooze for `seconds` (0 lifts)."""
        self.dismiss(seconds)

    def action_cancel(self) -> None:
        """Close without snoozing."""
        self.dismiss(None)


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """What the operator confirmed in the backend dialog."""

    pid: int
    terminate: bool
    """pg_terminate_backend (the session ends) rather than pg_cancel_backend (its query)."""


class BackendModal(ModalScreen[BackendChoice | None]):
    """Cancel the query of, or terminate, one of a reader's backends: ↑/↓ choose the backend
    (when there are several), `c` cancels its query, `t` terminates it, Escape leaves it alone.
    Pressing `c` or `t` here is the confirmation: nothing is sent before."""

    DEFAULT_CSS = MODAL_CSS.format(name="BackendModal", colour="$error") + (
        "BackendModal #body { max-height: 24; }"
    )
    BINDINGS = [
        Binding("escape", "cancel", "Leave it alone"),
        Binding("c", "signal(False)", "Cancel its query"),
        Binding("t", "signal(True)", "Terminate it"),
        Binding("up", "move(-1)", "Previous backend", show=False),
        Binding("down", "move(1)", "Next backend", show=False),
    ]

    def __init__(self, reader: ReaderView, now_us: int, reveal: bool = False) -> None:
        super().__init__()
        self.reader = reader
        self.now_us = now_us
        self.reveal = reveal
        self.chosen = 0
        """Index into the reader's backends."""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._body(), id="body")

    def _body(self) -> Text:
        return lines.backends_body(self.reader, self.chosen, self.now_us, self.reveal)

    def action_move(self, step: int) -> None:
        """Choose the previous (-1) or next backend."""
        self.chosen = min(len(self.reader.backends) - 1, max(0, self.chosen + step))
        self.query_one("#body", Static).update(self._body())

    def action_signal(self, terminate: bool) -> None:
        """Send it: cancel the chosen backend's query, or terminate it."""
        self.dismiss(BackendChoice(self.reader.backends[self.chosen].pid, terminate))

    def action_cancel(self) -> None:
        """Close without sending anything."""
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key, and what the severities mean."""

    DEFAULT_CSS = MODAL_CSS.format(name="HelpScreen", colour="$primary") + (
        "HelpScreen #body { max-height: 100; }"
    )
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, body: Text) -> None:
        super().__init__()
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(can_focus=True):
            yield Static(self.body, id="body")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.dismiss(None)
