"""The detail of one reader: every reason, its numbers, a timeline and its recent statements."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from core.findings import Finding
from core.snapshot import ReaderView, StatementSeen
from tui import text as t
from tui.lines import backend_line, who

HOUR_US = 3_600_000_000


def detail(
    reader: ReaderView | None, findings: Sequence[Finding], now_us: int, reveal: bool
) -> Text:
    """The detail pane's text for `reader` (or why there is none)."""
    if reader is None:
        return t.label("No reader selected: move the cursor in the readers table.", t.DIM)
    r = reader
    parts: list[Text] = [
        t.join(
            (t.severity_word(r.severity), t.label(f"score {r.score}", t.BOLD), who(r.principal))
        ),
        t.label(
            f"first seen {t.clock(r.first_seen_us)} ({t.ago(now_us - r.first_seen_us)} ago)"
            f" · last seen {t.clock(r.last_seen_us)} ({t.ago(now_us - r.last_seen_us)} ago)"
            f" · statements {r.statements:,} · denied {r.denied:,}"
        ),
        t.label(
            f"rows: last hour {t.rows(r.rows_hour, r.rows_estimated)}"
            f" ({t.percent(r.fraction_hour)} of the table)"
            f" · last day {t.rows(r.rows_day, r.rows_estimated)}"
            + ("  (~ estimated from statement shapes)" if r.rows_estimated else "")
        ),
    ]
    parts += live_backends(r, now_us, reveal)
    if r.expected is not None:
        parts.append(t.join((t.label("expected:", t.OK), t.data(r.expected, 300))))
    if r.snoozed_until_us is not None:
        left = t.ago(r.snoozed_until_us - now_us)
        parts.append(
            t.label(f"snoozed until {t.clock(r.snoozed_until_us)} UTC ({left} left)", t.ACCENT)
        )
    parts.append(t.label("Reasons", t.TITLE))
    for item in r.reasons:
        parts.append(
            t.join(
                (
                    t.label(" "),
                    t.severity_word(item.severity),
                    t.label(f"{item.score:>3}"),
                    t.join((t.data(item.code, 40, t.BOLD), t.data(item.detail, 1000)), ": "),
                )
            )
        )
    if not r.reasons:
        parts.append(t.label("  none", t.DIM))
    parts += timeline(r, findings, now_us)
    parts.append(
        t.label(
            "Recent statements" + (" (revealed: r hides)" if reveal else " (redacted: r reveals)"),
            t.TITLE,
        )
    )
    parts += [statement_line(s, reveal) for s in reversed(r.seen)]
    if not r.seen:
        parts.append(t.label("  none kept", t.DIM))
    return t.lines(parts)


BACKENDS_SHOWN = 5


def live_backends(reader: ReaderView, now_us: int, reveal: bool) -> list[Text]:
    """The reader's backends in the database now, one line each (the first few), and the key
    that cancels or terminates them; nothing when it has none."""
    backends = reader.backends
    if not backends:
        return []
    out = [
        t.join((t.label("in the database now:", t.ACCENT), backend_line(b, now_us, reveal)))
        for b in backends[:BACKENDS_SHOWN]
    ]
    more = len(backends) - BACKENDS_SHOWN
    if more > 0:
        out.append(t.label(f"  … {more} more backends (c lists them all)", t.DIM))
    out.append(t.label("  c: cancel its query or terminate it (asks first)", t.DIM))
    return out


def timeline(reader: ReaderView, findings: Sequence[Finding], now_us: int) -> list[Text]:
    """Rows per 5 minutes over the hour, rows per hour over the day, and the reader's findings."""
    out = [t.label("Timeline (UTC)", t.TITLE)]
    if reader.recent:
        peak = max(reader.recent)
        out.append(
            t.join(
                (
                    t.label("  last hour, 5 min ", t.DIM),
                    t.sparkline(reader.recent),
                    t.label(f" peak {t.count(peak)}", t.DIM),
                )
            )
        )
    hours = reader.hours
    if hours:
        peak = max(hours)
        out.append(
            t.join(
                (
                    t.label(f"  {len(hours)} h, per hour  ", t.DIM),
                    t.sparkline(hours),
                    t.label(f" peak {t.count(peak)}", t.DIM),
                )
            )
        )
        out.append(t.label("                    " + hour_labels(len(hours), now_us), t.DIM))
    mine = [f for f in findings if f.principal == reader.principal]
    for f in reversed(mine[-10:]):
        codes = ", ".join(x.code for x in f.reasons) or "-"
        out.append(
            t.join(
                (
                    t.label(f"  {t.clock(f.time_us)}", t.DIM),
                    t.severity_word(f.severity),
                    t.label(f"{f.score:>3}"),
                    t.data(codes, 120),
                )
            )
        )
    if not mine:
        out.append(t.label("  no findings for this reader", t.DIM))
    return out


def hour_labels(slots: int, now_us: int) -> str:
    """Hour labels under an hourly sparkline whose last slot is the current hour.

    >>> hour_labels(24, 10 * 3_600_000_000)
    '11    17    23    05    '
    """
    current = now_us // HOUR_US % 24
    cells = [" "] * slots
    for i in range(0, slots - 1, 6):
        hour = f"{(current - (slots - 1) + i) % 24:02d}"
        cells[i : i + 2] = list(hour)
    return "".join(cells)


def statement_line(seen: StatementSeen, reveal: bool) -> Text:
    """One recent statement: time, command, rows, the text, the parameters."""
    rows = "rows -" if seen.rows is None else f"rows {t.count(seen.rows)}"
    line = t.join(
        (
            t.label(f"  {t.clock(seen.time_us)}", t.DIM),
            t.data(seen.command, 12, t.BOLD),
            t.label(rows, t.DIM),
            t.statement(seen.statement, reveal, 600),
        )
    )
    if seen.parameters:
        line.append("\n           ")
        line.append_text(t.parameters(seen.parameters, reveal, 400))
    return line
