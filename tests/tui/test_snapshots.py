"""Named screenshots of the dashboard (pytest-textual-snapshot), clock frozen at 10:30:00 UTC.

Regenerate with `pytest tests/tui/test_snapshots.py --snapshot-update`, then look at the SVGs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from core.events import AccessEvent
from tests.tui.world import (
    COPY,
    CURSOR,
    BrokenSource,
    app_for,
    caught,
    exfiltration,
    feed,
    live,
    normal_traffic,
    settle,
)
from tui.app import DashboardApp

Compare = Callable[..., bool]
SIZE = (100, 30)


def fed(events: Iterable[AccessEvent] = ()) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Feed the events with the app running (the rate counts the last 10 s), then pull."""

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, DashboardApp)
        await settle(app)
        view = app.view
        feed(view, list(events))  # type: ignore[arg-type]
        await app.refresh_snapshot()
        await pilot.pause()

    return run_before


def test_empty(snap_compare: Compare, tmp_path: Path) -> None:
    """Nobody has read the table yet: headers, no readers, 'No readers yet'."""
    app = app_for(live(tmp_path))
    assert snap_compare(app, terminal_size=SIZE, run_before=fed())


def test_normal_traffic(snap_compare: Compare, tmp_path: Path) -> None:
    """The app's key lookups and a report: nothing above `-`, the tail on the Events tab."""
    app = app_for(live(tmp_path))
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(normal_traffic()), press=["v"])


def test_critical_reader_selected(snap_compare: Compare, tmp_path: Path) -> None:
    """mallory read 95% of the table: CRIT first, selected, its detail below."""
    app = app_for(live(tmp_path), legend="an exfiltration starts in ~10 s")
    events = normal_traffic() + exfiltration()
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(events))


def test_page_modal(snap_compare: Compare, tmp_path: Path) -> None:
    """`a` on mallory: who, severity, score, reasons, the severity choice and a note."""
    app = app_for(live(tmp_path))
    events = normal_traffic() + exfiltration()
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(events), press=["a", *"exfil?"])


def test_source_down(snap_compare: Compare, tmp_path: Path) -> None:
    """The audit log cannot be read: the header says ✗ ERROR and why."""
    view = live(tmp_path)
    view.attach(BrokenSource())
    assert snap_compare(app_for(view), terminal_size=SIZE, run_before=fed(normal_traffic()))


def test_small_terminal(snap_compare: Compare, tmp_path: Path) -> None:
    """80x24: readers, the detail tab and every key in the footer still fit."""
    app = app_for(live(tmp_path))
    events = normal_traffic() + exfiltration()
    assert snap_compare(app, terminal_size=(80, 24), run_before=fed(events))


def test_wide_terminal_side_by_side(snap_compare: Compare, tmp_path: Path) -> None:
    """160 columns and more: the readers and the panes side by side, findings shown."""
    app = app_for(live(tmp_path))
    events = normal_traffic() + exfiltration()
    assert snap_compare(app, terminal_size=(170, 30), run_before=fed(events), press=["f"])


def test_alert_acknowledged_small_terminal(
    snap_compare: Compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """80x24, Findings & alerts: mallory paged by alice then acknowledged; the list, the alert
    in full (each sink's state) and the footer's keys."""
    monkeypatch.chdir(tmp_path)  # the local sink's path is shown: the same on every run
    app = app_for(live(Path(".")))

    async def run_before(pilot: Pilot[Any]) -> None:
        await fed(normal_traffic() + exfiltration())(pilot)
        await pilot.press("a", *"DBA on it", "enter")
        await settle(pilot.app)
        await pilot.press("f", "k", *"looking", "enter")
        await settle(pilot.app)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_backend_modal_small_terminal(snap_compare: Compare, tmp_path: Path) -> None:
    """80x24, `c` on mallory caught copying the table: the detail's live backends behind, the
    dialog listing both of hers (the cursor chosen), its keys first."""
    app = app_for(caught(live(tmp_path), COPY, CURSOR))
    events = normal_traffic() + exfiltration()
    assert snap_compare(app, terminal_size=(80, 24), run_before=fed(events), press=["c", "down"])
