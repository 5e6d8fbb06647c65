"""What the dashboard shows of a snapshot, as Text: reader cells, the tail, finding lines, dialogs.

Pure functions of snapshot values (no widget, no I/O), so the property tests can throw hostile
text at every one of them. Data goes through `tui.text.data` and its siblings, nowhere else.
"""

from __future__ import annotations

import functools

from rich.text import Text

from core.dbside import Backend
from core.events import AccessEvent, EventKind
from core.findings import Finding, PrincipalKey, Reason
from core.snapshot import ReaderView
from tui import text as t

USER_W, ADDR_W, APP_W, WHY_W = 10, 15, 11, 13
"""Column widths of the readers table and the tail: the data is cut to them."""

AGENT_W = 8

READER_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("agent", "agent", AGENT_W),
    ("sev", "sev", 4),
    ("flags", "", 4),
    ("score", "score", 5),
    ("user", "user", USER_W),
    ("client", "client", ADDR_W),
    ("application", "application", APP_W),
    ("rows", "rows/h", 7),
    ("fraction", "%tbl", 4),
    ("why", "top reason", WHY_W),
    ("seen", "seen", 4),
    ("recent", "last hour", 12),
)
"""(key, header, width) of each column: headers are ours, widths bound the cells. Ordered by what
an operator needs first; the reasons' details are in the detail pane. `agent` is shown only in a
fleet's dashboard (attached to several agents)."""
NARROW_COLUMNS = frozenset(
    ("sev", "flags", "user", "client", "application", "rows", "fraction", "why")
)
"""The columns that fit 80 terminal columns (score, last seen and the sparkline are in the
detail pane)."""
FLEET_NARROW_COLUMNS = (NARROW_COLUMNS - {"application"}) | {"agent"}
"""The same in a fleet: the agent instead of the application (in the detail pane)."""


LIVE = "▶"
"""The flag of a reader with a backend in the database now (it can be cancelled: `c`)."""


def flags(reader: ReaderView, alert: str = "") -> Text:
    """`!` when an alert about it is active (`a`: acknowledged), `▶` when it has a backend
    reading the table now, `z` when snoozed, `E` when expected (all four: `!▶zE`)."""
    out = Text(end="")
    if alert:
        out.append(alert, t.ERROR if alert == "!" else t.WAITING)
    if reader.backends:
        out.append(LIVE, t.ERROR)
    if reader.snoozed_until_us is not None:
        out.append("z", t.ACCENT)
    if reader.expected is not None:
        out.append("E", t.OK)
    return out


def reason(item: Reason, limit: int = 140) -> Text:
    """`code: detail`, cut to `limit`."""
    return t.data(f"{item.code}: {item.detail}", limit)


def why(reader: ReaderView) -> Text:
    """The top reason's code, and how many more: `bulk_read +3`."""
    if not reader.reasons:
        return t.label("-", t.DIM)
    more = len(reader.reasons) - 1
    return t.data(reader.reasons[0].code + (f" +{more}" if more else ""), WHY_W)


def reader_cells(reader: ReaderView, now_us: int, alert: str = "") -> tuple[Text, ...]:
    """One row of the readers table, in READER_COLUMNS order (`alert`: its alert mark)."""
    p = reader.principal
    return (
        t.data(p.agent, AGENT_W, t.ACCENT),
        t.severity_word(reader.severity),
        flags(reader, alert),
        t.label(f"{reader.score:>3}"),
        t.data(p.user, USER_W),
        t.data(p.client_addr or "?", ADDR_W),
        t.data(p.application_name or "-", APP_W),
        t.label(t.rows(reader.rows_hour, reader.rows_estimated).rjust(7)),
        t.label(t.percent(reader.fraction_hour).rjust(4)),
        why(reader),
        t.label(t.ago(now_us - reader.last_seen_us).rjust(4)),
        t.sparkline(reader.recent),
    )


def who(p: PrincipalKey, limit: int = 60) -> Text:
    """`user @ address  application → table`, after `agent:` in a fleet."""
    agent = (t.data(p.agent, limit, t.ACCENT).append(":"),) if p.agent else ()
    return t.join(
        (
            *agent,
            t.data(p.user, limit, t.BOLD),
            t.label("@", t.DIM),
            t.data(p.client_addr or "?", limit),
            t.data(p.application_name or "-", limit),
            t.label("→", t.DIM),
            t.data(p.table, limit),
        )
    )


def tail_line(event: AccessEvent, reveal: bool = False) -> Text:
    """One access event of the live tail: time, user, client, app, command, rows, statement."""
    if event.kind is EventKind.DENIED:
        command = t.label("DENIED", t.ERROR)
    else:
        command = t.cell(event.command, 6)
    rows = "-" if event.rows is None else t.count(event.rows)
    line = t.join(
        (
            t.label(t.clock(event.time_us), t.DIM),
            t.cell(event.user, 12, t.BOLD),
            t.cell(event.client_addr or "?", ADDR_W),
            t.cell(event.application_name or "-", 10),
            command,
            t.label(rows.rjust(5)),
            t.statement(event.statement, reveal, 160),
        )
    )
    if event.parameters:
        line.append(" ")
        line.append_text(t.parameters(event.parameters, reveal, 120))
    return line


@functools.lru_cache(maxsize=1024)
def finding_line(finding: Finding) -> Text:
    """A finding: time, severity, score, who, and its reasons' codes and top detail (findings are
    frozen: each is drawn once, the pane redraws from the cache; never mutate the result)."""
    codes = ", ".join(r.code for r in finding.reasons) or "-"
    top = finding.reasons[0].detail if finding.reasons else ""
    return t.join(
        (
            t.label(t.clock(finding.time_us), t.DIM),
            t.severity_word(finding.severity),
            t.label(f"{finding.score:>3}"),
            who(finding.principal, 40),
            t.data(codes, 80, t.BOLD),
            t.data(top, 160),
        )
    )


def page_body(reader: ReaderView, limit: int = 3) -> Text:
    """What the page confirmation shows: who, severity, score and the top reasons."""
    parts = [
        t.label("Page on-call about this reader?", t.TITLE),
        t.join((t.label("who     ", t.DIM), who(reader.principal, 60))),
        t.join(
            (
                t.label("now     ", t.DIM),
                t.severity_name(reader.severity),
                t.label(f"score {reader.score}"),
            )
        ),
    ]
    for item in reader.reasons[:limit]:
        parts.append(t.join((t.label(" "), t.severity_word(item.severity), reason(item, 140))))
    if not reader.reasons:
        parts.append(t.label("  no reasons: paged on the operator's judgement", t.DIM))
    return t.lines(parts)


def expect_body(reader: ReaderView) -> Text:
    """What the mark-expected confirmation shows."""
    return t.lines(
        (
            t.label("Mark this reader as expected?", t.TITLE),
            t.join((t.label("who ", t.DIM), who(reader.principal, 60))),
            t.label(
                "Its reasons are dropped and what it read so far stops counting; audit\n"
                "tampering is never forgiven. Kept in the operator trail.",
                t.DIM,
            ),
        )
    )


def snooze_body(reader: ReaderView) -> Text:
    """What the snooze chooser shows."""
    parts = [
        t.label("Snooze this reader (still shown and scored, never paged)", t.TITLE),
        t.join((t.label("who ", t.DIM), who(reader.principal, 60))),
    ]
    if reader.snoozed_until_us is not None:
        parts.append(t.label(f"snoozed until {t.clock(reader.snoozed_until_us)} UTC", t.ACCENT))
    parts.append(
        t.label("1  15 minutes    2  1 hour    3  4 hours    4  24 hours\n0  lift    esc  cancel")
    )
    return t.lines(parts)


def backend_since(backend: Backend) -> int:
    """When what the backend is doing began: its query while active, else its transaction
    (a cursor held open), else its session."""
    b = backend
    if b.state == "active" and b.query_start_us is not None:
        return b.query_start_us
    return b.xact_start_us or b.query_start_us or b.backend_start_us


def backend_line(
    backend: Backend, now_us: int, reveal: bool, *, since: bool = False, limit: int = 300
) -> Text:
    """`pid 4242 COPY active for 2m 03s · 10.0.0.5 psql · COPY crm.clients TO STDOUT` (with
    `since`: the clock time it began too); the query redacted unless `reveal`."""
    b = backend
    began = backend_since(b)
    running = f"for {t.elapsed(now_us - began)}" + (f" (since {t.clock(began)})" if since else "")
    query = t.statement(b.query, reveal, limit) if b.query else t.label("<no query text>", t.DIM)
    return t.join(
        (
            t.label(f"pid {b.pid}", t.BOLD),
            t.data(b.kind.upper() or "?", 12, t.BOLD),
            t.data(b.state or "?", 40),
            t.label(running),
            t.label("·", t.DIM),
            t.data(b.client_addr or "[local]", 60),
            t.data(b.application_name or "-", 60),
            t.label("·", t.DIM),
            query,
        )
    )


BACKENDS_LISTED = 4
"""Backends the confirmation lists at once (the window follows the choice): it fits 80x24."""


def backends_body(reader: ReaderView, chosen: int, now_us: int, reveal: bool) -> Text:
    """What the cancel/terminate confirmation shows: who, the keys, then each backend (the
    chosen one marked; the keys come first so that a long list never hides them)."""
    backends = reader.backends
    choose = "↑ ↓  choose the backend · " if len(backends) > 1 else ""
    parts = [
        t.label("Cancel the query of, or terminate, a backend of this reader?", t.TITLE),
        t.join((t.label("who ", t.DIM), who(reader.principal, 60))),
        t.label("c  cancel its query (the session stays)\nt  terminate it (the connection ends)"),
        t.label(f"{choose}esc  leave it alone", t.DIM),
    ]
    first = min(max(0, chosen - BACKENDS_LISTED // 2), max(0, len(backends) - BACKENDS_LISTED))
    if first:
        parts.append(t.label(f"    ↑ {first} more", t.DIM))
    for n, b in enumerate(backends[first : first + BACKENDS_LISTED], first):
        mark = t.label("(•)", t.BOLD) if n == chosen else t.label("( )")
        parts.append(t.join((mark, backend_line(b, now_us, reveal, since=True, limit=120))))
    after = len(backends) - first - BACKENDS_LISTED
    if after > 0:
        parts.append(t.label(f"    ↓ {after} more", t.DIM))
    return t.lines(parts)
