"""The alerts of the Findings & alerts tab: a list with a cursor that stays on its alert, the
selected alert's lines (state, findings grouped, each sink's delivery and why), and which alert
an operator's acknowledge or resolve is about.

The texts are pure functions of snapshot values (the property tests throw hostile text at them);
data goes through `tui.text` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from core.findings import Finding, PrincipalKey
from core.snapshot import AlertView, Delivery
from tui import text as t
from tui.lines import finding_line, who

ACTIVE, ACKNOWLEDGED, RESOLVED = "active", "acknowledged", "resolved"
DONE = frozenset({"sent", "acked", "resolved"})
"""A sink's states where the alert's latest action reached it."""
STATE_W, FROM_W, READER_W, FINDINGS_W = 14, 8, 16, 5
ALERT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("opened", "opened", 8),
    ("sev", "sev", 4),
    ("state", "state", STATE_W),
    ("from", "from", FROM_W),
    ("reader", "reader", READER_W),
    ("findings", "finds", FINDINGS_W),
    ("sinks", "sinks", 0),
)
"""(key, header, width) of the list's columns; the sinks take what is left of the width."""
SINKS_MIN, READER_MIN = 8, 10
"""In a narrow pane the reader column gives way, down to READER_MIN, for the sinks'."""
_FIXED = sum(w + 1 for _, _, w in ALERT_COLUMNS)

_ROW_STATES = {ACTIVE: ("ACTIVE", t.ERROR), ACKNOWLEDGED: ("acked", t.WAITING)}
_ROW_STATES[RESOLVED] = ("resolved", t.OK)
_MARKS = {"queued": ("…", t.WAITING), "failed": ("✗", t.ERROR)}
HELD_TEXT = "flood control held"


def open_first(alerts: Sequence[AlertView]) -> list[AlertView]:
    """Open alerts first, then resolved ones; newest first in each (the snapshot lists them
    least recent first)."""
    return sorted(reversed(alerts), key=lambda a: a.state == RESOLVED)  # stable


def for_reader(
    alerts: Sequence[AlertView], principal: PrincipalKey, action: str
) -> AlertView | None:
    """The reader's alert an action is about: to acknowledge, its latest active one; else its
    latest open one; else its latest (so that a refusal can say it was resolved)."""
    mine = [a for a in reversed(alerts) if a.principal == principal]
    if not mine:
        return None
    if action == "acknowledge":
        return max(mine, key=lambda a: (a.state == ACTIVE, a.state != RESOLVED))
    return max(mine, key=lambda a: a.state != RESOLVED)  # max keeps the first (newest) of ties


def marks(alerts: Iterable[AlertView]) -> dict[PrincipalKey, str]:
    """The readers table's alert mark per reader: `!` an alert is active, `a` acknowledged."""
    out: dict[PrincipalKey, str] = {}
    for a in alerts:
        if a.state == ACTIVE:
            out[a.principal] = "!"
        elif a.state == ACKNOWLEDGED:
            out.setdefault(a.principal, "a")
    return out


def undelivered(alerts: Iterable[AlertView]) -> int:
    """Deliveries that failed for good, over the alerts kept."""
    return sum(d.state == "failed" for a in alerts for d in a.deliveries)


# texts ------------------------------------------------------------------------------------------


def state_cell(alert: AlertView) -> Text:
    """The list's state: `ACTIVE`, `acked alice`, `resolved bob`."""
    known = _ROW_STATES.get(alert.state)
    if known is None:
        return t.data(alert.state, STATE_W, t.WAITING)
    word, style = known
    out = t.label(word, style)
    if alert.state != ACTIVE and alert.by:
        out.append(" ")
        out.append_text(t.data(alert.by, STATE_W - len(word) - 1))
    return out


def state_line(alert: AlertView) -> Text:
    """`ACTIVE`, `acknowledged by alice at 10:31:00: on it`, `resolved by bob at 10:40:00`
    (with the note they gave)."""
    if alert.state == ACTIVE:
        return t.label("ACTIVE", t.ERROR)
    known = _ROW_STATES.get(alert.state)
    out = t.data(alert.state, 20, known[1] if known else t.WAITING)
    if alert.by:
        out.append(" by ", t.DIM)
        out.append_text(t.data(alert.by, 60, t.BOLD))
    if alert.updated_us:
        out.append(f" at {t.clock(alert.updated_us)}", t.DIM)
    if alert.said:
        out.append(": ", t.DIM)
        out.append_text(t.data(alert.said, 200))
    return out


def origin(alert: AlertView, limit: int = FROM_W) -> Text:
    """Who opened it: the operator who paged, or `rule` / `test`."""
    if alert.origin == "operator":
        return t.data(alert.operator or "operator", limit)
    return t.data(alert.origin, limit, t.ACCENT)


def sinks_cell(deliveries: Sequence[Delivery], width: int) -> Text:
    """Each sink and a mark: `local✓ pagerduty… slack✗` (✓ reached, … queued, ✗ failed)."""
    if not deliveries:
        out = t.label("none yet", t.DIM)
    else:
        parts = []
        for d in deliveries:
            known = ("✓", t.OK) if d.state in DONE else _MARKS.get(d.state, ("?", t.WAITING))
            parts.append(t.join((t.data(d.sink, 12), t.label(*known)), ""))
        out = t.join(parts)
    out.truncate(max(1, width), overflow="ellipsis")
    return out


def widths(width: int) -> dict[str, int]:
    """Each column's width in a list `width` cells wide (with its padding and scrollbar).

    >>> widths(80)["sinks"], widths(80)["reader"], widths(68)["sinks"], widths(68)["reader"]
    (15, 16, 8, 11)
    """
    out = {key: w for key, _, w in ALERT_COLUMNS}
    room = width - _FIXED - 3  # 1: the padding, 2: a vertical scrollbar
    if room < SINKS_MIN:
        give = min(SINKS_MIN - room, READER_W - READER_MIN)
        out["reader"] -= give
        room += give
    out["sinks"] = max(SINKS_MIN, room)
    return out


def alert_cells(alert: AlertView, sinks_w: int, reader_w: int = READER_W) -> tuple[Text, ...]:
    """One row of the alerts list, in ALERT_COLUMNS order."""
    p = alert.principal
    cells = (
        t.label(t.clock(alert.time_us), t.DIM),
        t.severity_word(alert.severity),
        state_cell(alert),
        origin(alert),
        t.data(f"{p.agent + ':' if p.agent else ''}{p.user}@{p.client_addr or '?'}", reader_w),
        t.label(t.count(alert.findings).rjust(FINDINGS_W)),
        sinks_cell(alert.deliveries, sinks_w),
    )
    # cut in terminal cells (data() cuts characters; a wide character takes two cells)
    for cell, (key, _, width) in zip(cells, ALERT_COLUMNS, strict=True):
        width = {"sinks": sinks_w, "reader": reader_w}.get(key, width)
        cell.truncate(max(1, width), overflow="ellipsis")
    return cells


def delivery(item: Delivery) -> Text:
    """`sink  state  detail`: a failure and its why in the error style, a queued one with its
    retry."""
    if item.state == "failed":
        style = detail_style = t.ERROR
    else:
        style, detail_style = (t.OK if item.state in DONE else t.WAITING), ""
    parts = [t.cell(item.sink, 12, t.BOLD), t.cell(item.state, 8, style)]
    if item.detail:
        parts.append(t.data(item.detail, 300, detail_style))
    elif item.state == "queued":
        parts.append(t.label("no answer yet", t.DIM))
    return t.join(parts)


def opened(alert: AlertView) -> Text:
    """`paged by alice` or `opened by the rules`, and when."""
    if alert.origin == "operator":
        out = t.join((t.label("paged by", t.DIM), t.data(alert.operator or "?", 60, t.BOLD)))
    elif alert.origin == "rule":
        out = t.label("opened by the rules", t.DIM)
    else:
        out = t.join((t.label("origin", t.DIM), t.data(alert.origin, 60, t.ACCENT)))
    out.append(f" at {t.clock(alert.time_us)}", t.DIM)
    return out


def alert_line(alert: AlertView) -> Text:
    """An alert in full: severity, state and by whom, findings grouped; the reader; who opened it
    and the note; what flood control held back before it; each sink's delivery and its detail."""
    n = alert.findings
    out = t.join(
        (
            t.severity_word(alert.severity),
            state_line(alert),
            t.label(f"· {n:,} finding{'s' if n != 1 else ''}", t.DIM),
        )
    )
    out.append("\n  ")
    out.append_text(who(alert.principal, 60))
    out.append("\n  ")
    out.append_text(opened(alert))
    if alert.note:
        out.append(" · note: ", t.DIM)
        out.append_text(t.data(alert.note, 300))
    if alert.suppressed > 0:
        out.append(
            f"\n  {HELD_TEXT} {alert.suppressed:,} finding"
            f"{'s' if alert.suppressed != 1 else ''} about this reader before it",
            t.WAITING,
        )
    for item in alert.deliveries:
        out.append("\n  → ", t.DIM)
        out.append_text(delivery(item))
    if not alert.deliveries:
        out.append("\n  → no sink has it yet", t.DIM)
    return out


def alerts_bar(alerts: Sequence[AlertView], suppressed: int, outbox: int) -> Text:
    """The line above the list: counts, what flood control held back, the outbox, the keys."""
    if not alerts:
        out = t.label("Alerts: none yet", t.TITLE)
    else:
        active = sum(a.state == ACTIVE for a in alerts)
        out = t.label(f"Alerts ({len(alerts):,})", t.TITLE)
        if active:
            out.append(f" {active:,} active", t.ERROR)
    if suppressed > 0:
        out.append(f" · {HELD_TEXT} {suppressed:,}", t.WAITING)
    if outbox > 0:
        out.append(f" · outbox {outbox:,} queued", t.WAITING)
    if alerts:
        out.append(" · ↑↓ k ack x resolve ⏎ reader", t.DIM)
    else:
        out.append(" · a pages about the selected reader", t.DIM)
    return out


def findings_pane(findings: Sequence[Finding], alert: AlertView | None) -> Text:
    """The selected alert in full, then the findings (newest first)."""
    parts: list[Text] = []
    if alert is not None:
        parts += [alert_line(alert), t.label("")]
    parts.append(t.label(f"Findings ({len(findings):,}, newest first)", t.TITLE))
    parts += [finding_line(f) for f in reversed(findings[-200:])]
    if not findings:
        parts.append(t.label("  none yet", t.DIM))
    return t.lines(parts)


def action_body(action: str, alert: AlertView) -> Text:
    """What the acknowledge or resolve confirmation shows."""
    if action == "acknowledge":
        title = "Acknowledge this alert in every sink?"
        what = "on-call sees someone is on it; it stays open until resolved"
    else:
        title = "Resolve this alert in every sink?"
        what = "the incident is closed; a new critical finding about this reader opens a new one"
    return t.lines((t.label(title, t.TITLE), alert_line(alert), t.label(what, t.DIM)))


# the widget -------------------------------------------------------------------------------------


class AlertsTable(DataTable[Text]):
    """The alerts, one row each (open ones first, newest first); `keys` maps rows to alerts."""

    DEFAULT_CSS = """
    AlertsTable { width: 1fr; height: auto; max-height: 45%; padding: 0 0 0 1; }
    AlertsTable.-empty { display: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=0)
        self.keys: list[str] = []
        self._alerts: list[AlertView] = []
        self._cells: list[tuple[Text, ...]] = []
        self._widths: dict[str, int] = {}
        self.add_class("-empty")

    def on_mount(self) -> None:
        self._set_columns(self.size.width or self.app.size.width)

    def on_resize(self) -> None:
        if self.size.width:
            self._set_columns(self.size.width)

    def _set_columns(self, width: int) -> None:
        shown = widths(width)
        if shown == self._widths:
            return
        keep = self.selected
        self._widths = shown
        self.clear(columns=True)
        for key, header, _ in ALERT_COLUMNS:
            self.add_column(t.label(header, t.BOLD), width=shown[key] + 1, key=key)
        alerts, self._alerts, self._cells, self.keys = self._alerts, [], [], []
        self.show(alerts, keep)

    @property
    def selected(self) -> str | None:
        """The key of the alert under the cursor (None when the list is empty)."""
        row = self.cursor_row
        return self.keys[row] if 0 <= row < len(self.keys) else None

    @property
    def alert(self) -> AlertView | None:
        """The alert under the cursor."""
        row = self.cursor_row
        return self._alerts[row] if 0 <= row < len(self._alerts) else None

    def show(self, alerts: Sequence[AlertView], keep: str | None) -> str | None:
        """Show `alerts` in order, the cursor on the alert `keep` when it is among them; rows are
        kept and only their changed cells rewritten. Returns the key the cursor ends on."""
        # each refresh brings new (equal) values: an alert's cells are drawn again only when it
        # changed
        memo = {a.key: (a, c) for a, c in zip(self._alerts, self._cells, strict=True)}
        cells = []
        for a in alerts:
            hit = memo.get(a.key)
            if hit is None or hit[0] != a:
                hit = (a, alert_cells(a, self._widths["sinks"], self._widths["reader"]))
            cells.append(hit[1])
        before = len(self._cells)
        for n in range(before - 1, len(cells) - 1, -1):
            self.remove_row(str(n))
        for y in range(min(before, len(cells))):
            old, new = self._cells[y], cells[y]
            for x, cell in enumerate(new):
                if old[x] != cell:
                    self.update_cell_at(Coordinate(y, x), cell)
        for n in range(before, len(cells)):
            self.add_row(*cells[n], key=str(n))
        self._alerts, self._cells = list(alerts), cells
        self.keys = [a.key for a in alerts]
        self.set_class(not alerts, "-empty")
        if keep is not None and keep in self.keys:
            row = self.keys.index(keep)
            if row != self.cursor_row:
                self.move_cursor(row=row, animate=False)
        return self.selected
