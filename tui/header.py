"""The two header lines: clock, paused/learning, what needs an operator about the alerts, watched
tables, rate, and each source's health."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from core.events import us_from_utc
from core.snapshot import Snapshot
from core.sources import SourceHealth
from tui import text as t
from tui.alertlist import ACTIVE, HELD_TEXT, undelivered


def header(
    snapshot: Snapshot | None,
    *,
    name: str,
    operator: str,
    paused: bool = False,
    legend: str = "",
    problem: str = "",
) -> Text:
    """The header's text. The clock is the snapshot's (never the wall clock)."""
    first: list[Text] = []
    if snapshot is None:
        first.append(t.label("--:--:-- UTC", t.BOLD))
    else:
        first.append(t.label(f"{t.clock(snapshot.taken_us)} UTC", t.BOLD))
    if paused:
        first.append(t.label("PAUSED", t.CRITICAL))
    if snapshot is not None:
        if snapshot.learning:
            first.append(t.label("LEARNING", t.WAITING))
        first += alerting(snapshot)
        for table in snapshot.tables[:4]:
            size = "size ?" if table.rows is None else f"{table.rows:,} rows"
            first.append(t.join((t.data(table.name, 40, t.BOLD), t.label(size, t.DIM))))
        if len(snapshot.tables) > 4:
            first.append(t.label(f"+{len(snapshot.tables) - 4} tables", t.DIM))
        first.append(t.label(f"{snapshot.rate:.1f} ev/s"))
    first.append(t.join((t.label("tablewatch", t.BOLD), t.data(name, 40, t.DIM))))
    second: list[Text] = []
    if problem:
        second.append(t.join((t.label("✗ view:", t.ERROR), t.data(problem, 120))))
    if snapshot is not None:
        if snapshot.sources:  # trouble first: at 80 columns the line is cut at the right
            trouble = sorted(snapshot.sources, key=lambda s: _URGENCY.get(s.state, 1))
            well = [s for s in trouble if s.state == "ok"]
            second += [source(s, snapshot.taken_us) for s in trouble if s.state != "ok"]
            if well:  # the first (the audit log) in full, the others that are well counted
                second.append(source(well[0], snapshot.taken_us))
                if len(well) > 1:
                    second.append(t.label(f"+{len(well) - 1} ok", t.OK))
        else:
            second.append(t.label("no sources", t.DIM))
    if legend:
        second.append(t.data(legend, 100, t.ACCENT))
    second.append(t.join((t.label("operator", t.DIM), t.data(operator, 24))))
    return t.lines((t.join(first, " │ "), t.join(second, " │ ")))


_URGENCY = {"error": 0, "waiting": 1, "ok": 2}


def alerting(snapshot: Snapshot) -> list[Text]:
    """What needs an operator about the alerts, urgent first, each only when there is some:
    `1 alert ACTIVE`, `2 deliveries failed`, `flood control held 9,980`, `outbox 12 queued`."""
    out = []
    active = sum(a.state == ACTIVE for a in snapshot.alerts)
    if active:
        out.append(t.label(f"{active:,} alert{'s' if active != 1 else ''} ACTIVE", t.ERROR))
    failed = undelivered(snapshot.alerts)
    if failed:
        out.append(t.label(f"{failed:,} deliver{'ies' if failed != 1 else 'y'} failed", t.ERROR))
    if snapshot.suppressed > 0:
        out.append(t.label(f"{HELD_TEXT} {snapshot.suppressed:,}", t.WAITING))
    if snapshot.outbox > 0:
        out.append(t.label(f"outbox {snapshot.outbox:,} queued", t.WAITING))
    return out


def source(health: SourceHealth, now_us: int) -> Text:
    """`name ✓ ok lag 2s` (or the error's detail)."""
    parts = [t.data(health.name, 24, t.BOLD), t.source_state(health.state)]
    if health.last_event_time is not None:
        lag = now_us - us_from_utc(health.last_event_time)
        parts.append(t.label(f"lag {t.ago(lag)}"))
    elif health.state != "error":
        parts.append(t.label("no events yet", t.DIM))
    if health.state != "ok" and health.detail:
        parts.append(t.data(health.detail, 80))
    return t.join(parts)


class StatusHeader(Static):
    """The header widget (two lines, docked at the top)."""

    DEFAULT_CSS = """
    StatusHeader {
        dock: top;
        height: 2;
        background: $panel;
        color: $text;
    }
    """
