"""The dashboard's keys: one table for the bindings (and so the Footer) and the help screen."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from core.findings import Severity
from tui import text as t

_TABS = Binding.Group("tab")

BINDINGS: list[Binding] = [
    Binding("a", "page", "page"),
    Binding("e", "expect", "expect"),
    Binding("s", "snooze", "snooze"),
    Binding("k", "acknowledge", "ack"),
    Binding("x", "resolve", "resolve"),
    Binding("slash", "filter", "find"),
    # cancel/terminate, sort and reveal are in the help only: the footer must fit 80 columns
    # (the detail pane says `c` beside a reader's live backends)
    Binding("c", "backend", "cancel backend", show=False),
    Binding("o", "order", "sort", show=False),
    Binding("p", "pause", "pause"),
    Binding("r", "reveal", "reveal", show=False),
    Binding("question_mark", "help", "help"),
    Binding("q", "quit", "quit"),
    Binding("d", "tab('detail')", "detail", group=_TABS),
    Binding("v", "tab('events')", "events", group=_TABS),
    Binding("f", "tab('findings')", "findings", group=_TABS),
    Binding("escape", "clear_filter", "clear filter", show=False),
]

HELP: tuple[tuple[str, str], ...] = (
    ("↑ ↓ pgup pgdn", "move in the readers table (the detail follows the cursor)"),
    ("a", "page on-call about the selected reader (confirm: severity ↑/↓, note, Enter)"),
    ("e", "mark the selected reader as expected (confirm with a note)"),
    ("s", "snooze the selected reader: 1 15m · 2 1h · 3 4h · 4 24h · 0 lift"),
    ("f", "Findings & alerts: its alerts list (open ones first) takes the cursor ↑ ↓"),
    ("k", "acknowledge the alert in every sink (confirm with a note, Enter)"),
    ("x", "resolve the alert in every sink (confirm with a note, Enter)"),
    (
        "k x: which",
        "on the f tab the alert under the list's cursor; elsewhere the selected"
        " reader's (marked ! or a); the dialog names it",
    ),
    (
        "c",
        "cancel the query of, or terminate, a backend of the selected reader (marked ▶): the"
        " dialog lists them, ↑ ↓ choose, c cancels the query, t terminates, esc sends nothing;"
        " needs pg_signal_backend for the monitoring role",
    ),
    ("enter", "on an alert: select its reader and show its detail"),
    ("/", "filter readers and the tail by user, client, application or table"),
    ("esc", "clear the filter (or cancel a dialog); back to the readers table"),
    ("o", "sort: anomaly → rows → last seen → user (snoozed readers last)"),
    ("p", "pause: keep this snapshot on screen while the engine runs on"),
    ("r", "reveal statement literals and parameters (hidden by default)"),
    ("d v f", "show the Detail / Events / Findings & alerts tab"),
    ("tab", "move the focus (then ↑ ↓ scroll the pane)"),
    ("?", "this help"),
    ("q", "quit"),
)

SEVERITIES: tuple[tuple[Severity, str], ...] = (
    (Severity.CRITICAL, "page now: most of the table leaving, or the audit trail tampered with"),
    (Severity.WARNING, "a human should look"),
    (Severity.INFO, "notable: worth a line, never a page"),
    (Severity.NONE, "nothing unusual"),
)


def help_body(name: str, operator: str, legend: str) -> Text:
    """The help screen's text."""
    parts = [t.label("Keys", t.TITLE)]
    parts += [t.join((t.label(f"  {key:<14}", t.BOLD), t.label(what))) for key, what in HELP]
    parts.append(t.label("Severity (a word, never colour alone)", t.TITLE))
    parts += [
        t.join((t.label("  "), t.severity_word(sev), t.label(f"{sev.label:<9}"), t.label(what)))
        for sev, what in SEVERITIES
    ]
    parts.append(
        t.label(
            "Marks: ! alert active · a alert acknowledged · ▶ in the database now (c)"
            " · z snoozed (listed last) · E expected · ~ rows estimated",
            t.DIM,
        )
    )
    parts.append(
        t.label(
            "Sinks in the alerts list: ✓ reached · … queued (retrying: why below the list)"
            " · ✗ failed (the answer below the list)",
            t.DIM,
        )
    )
    parts.append(
        t.join(
            (
                t.label("Attached to", t.DIM),
                t.data(name, 60),
                t.label("as operator", t.DIM),
                t.data(operator, 40),
            )
        )
    )
    if legend:
        parts.append(t.data(legend, 200, t.ACCENT))
    parts.append(t.label("esc, ? or q closes", t.DIM))
    return t.lines(parts)
