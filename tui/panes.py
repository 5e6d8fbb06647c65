"""The bottom panes: the selected reader's detail, the live tail, findings and alerts."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static


class TextPane(VerticalScroll):
    """A scrollable pane showing one Text (built by `tui.lines`/`tui.detail`, never a str)."""

    DEFAULT_CSS = """
    TextPane { height: 1fr; padding: 0 1; }
    TextPane > Static { width: 1fr; height: auto; }
    """

    follow = False
    """Stay at the bottom when already there (a tail)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, can_focus=True)
        self._shown: Text | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(end=""), markup=False)

    @property
    def text(self) -> Text:
        """What the pane shows now."""
        return self._shown if self._shown is not None else Text(end="")

    def show(self, content: Text) -> None:
        """Replace the content (nothing happens when it did not change)."""
        if content == self._shown:
            return
        at_end = self.scroll_y >= self.max_scroll_y
        self._shown = content
        self.query_one(Static).update(content)
        if self.follow and at_end:
            self.call_after_refresh(self.scroll_end, animate=False)


class DetailPane(TextPane):
    """The selected reader's detail."""


class EventsPane(TextPane):
    """The live tail of access events, newest at the bottom: one line each, cut at the edge."""

    DEFAULT_CSS = """
    EventsPane > Static { text-wrap: nowrap; text-overflow: ellipsis; }
    """

    follow = True

    def on_show(self) -> None:
        """Shown again (its tab chosen): back to the newest events."""
        self.call_after_refresh(self.scroll_end, animate=False, immediate=True)


class FindingsPane(TextPane):
    """Alerts and findings, newest first."""
