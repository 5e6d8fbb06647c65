"""The one place where data becomes screen text.

Every value read from the database or its logs (user names, client addresses, application_name,
statements, parameters, reason details, notes, source details) is attacker-controlled. It reaches
a widget only as a `rich.text.Text` built here by `data()`: escaped by `core.safetext.safe`
(no ESC, C0, C1, DEL, bidi or zero-width controls), cut to a bound with a visible `…`, and never
parsed as markup, so `[@click=app.quit]` stays ink. Styles come only from the constants below:
a span's style never comes from the data. The other modules of `tui` compose these Texts; they
never build a Text or a markup string from a value themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from rich.text import Text

from core.events import utc_from_us
from core.findings import Severity
from core.redact import redact
from core.safetext import safe

# Our styles (16-colour names only). Severity is always a word as well: never colour alone.
CRITICAL = "bold white on red"
WARNING = "bold black on yellow"
INFO = "bold cyan"
NONE = "dim"
DIM = "dim"
BOLD = "bold"
TITLE = "bold underline"
OK = "bold green"
WAITING = "bold yellow"
ERROR = "bold red"
ACCENT = "bold magenta"
OWN_STYLES = frozenset(
    {"", CRITICAL, WARNING, INFO, NONE, DIM, BOLD, TITLE, OK, WAITING, ERROR, ACCENT}
)
"""Every style a Text built by `tui` may carry (the property tests check it)."""

_WORDS = {
    Severity.CRITICAL: ("CRIT", CRITICAL),
    Severity.WARNING: ("WARN", WARNING),
    Severity.INFO: ("info", INFO),
    Severity.NONE: ("-", NONE),
}
_STATES = {"ok": ("✓ ok", OK), "waiting": ("… waiting", WAITING), "error": ("✗ ERROR", ERROR)}
_BLOCKS = "▁▂▃▄▅▆▇█"
_SCAN_CHARS = 16_384
"""A statement is cut here before it is redacted: nobody reads more on a dashboard."""


def data(value: object, limit: int = 200, style: str = "") -> Text:
    """A data-derived value as inert text: control characters escaped, cut at `limit`.

    >>> data("[bold]x\\x1b[2J", 40).plain
    '[bold]x\\\\x1b[2J'
    >>> data("y" * 9, 4).plain
    'yyy…'
    """
    raw = value if isinstance(value, str) else str(value)
    return Text(safe(raw[: limit + 1], limit), style=style, end="")


def label(words: str, style: str = "") -> Text:
    """Our own words (a constant or a number we formatted): never data."""
    return Text(words, style=style, end="")


def cell(value: object, width: int, style: str = "") -> Text:
    """A data value in a column `width` cells wide (cut, then padded)."""
    text = data(value, width, style)
    text.align("left", width)
    return text


def join(parts: Iterable[Text], separator: str = " ") -> Text:
    """Texts side by side (the separator is ours)."""
    return Text(separator, end="").join(parts)


def lines(parts: Iterable[Text]) -> Text:
    """Texts one under the other."""
    return Text("\n", end="").join(parts)


def severity_word(severity: Severity) -> Text:
    """`CRIT`, `WARN`, `info` or `-`, readable without colour (and coloured too)."""
    word, style = _WORDS[severity]
    return Text(word.ljust(4), style=style, end="")


def severity_name(severity: Severity) -> Text:
    """`critical`, `warning`, `info`, `none`, in the severity's style."""
    return Text(severity.label, style=_WORDS[severity][1], end="")


def choice(options: Sequence[Severity], chosen: Severity) -> Text:
    """A one-line severity chooser: `severity (↑/↓)  (•) critical  ( ) warning  ( ) info`."""
    out = Text("severity (↑/↓) ", style=BOLD, end="")
    for option in options:
        mark = "(•)" if option == chosen else "( )"
        style = _WORDS[option][1] if option == chosen else ""
        out.append(f" {mark} ")
        out.append(option.label, style)
    return out


def source_state(state: str) -> Text:
    """A source's state as a mark and a word: `✓ ok`, `… waiting`, `✗ ERROR`."""
    word, style = _STATES.get(state, ("? " + safe(state, 12), WAITING))
    return Text(word, style=style, end="")


def sparkline(values: Sequence[int]) -> Text:
    """Values as unicode blocks, scaled to the largest (zero is the lowest block, dimmed).

    >>> sparkline([0, 1, 4, 8]).plain
    '▁▂▅█'
    """
    top = max(values, default=0)
    out = Text(end="")
    for value in values:
        if value <= 0 or top <= 0:
            out.append("▁", DIM)
        else:
            out.append(_BLOCKS[min(7, max(1, round(value * 7 / top)))])
    return out


def clock(time_us: int) -> str:
    """UTC `HH:MM:SS` of an event time.

    >>> clock(1_764_387_664_994_000)
    '03:41:04'
    """
    return utc_from_us(time_us).strftime("%H:%M:%S")


def ago(delta_us: int) -> str:
    """A duration as the dashboard shows it: `4s`, `3m`, `2h`, `5d`.

    >>> ago(4_200_000), ago(185_000_000), ago(7_300_000_000), ago(-5)
    ('4s', '3m', '2h', '0s')
    """
    seconds = max(0, delta_us // 1_000_000)
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def elapsed(delta_us: int) -> str:
    """How long something has been running, to the second while that matters: `45s`,
    `2m 03s`, `1h 02m`, `3d 04h`.

    >>> elapsed(45_000_000), elapsed(123_000_000), elapsed(3_720_000_000), elapsed(-1)
    ('45s', '2m 03s', '1h 02m', '0s')
    >>> elapsed(273_600_000_000)
    '3d 04h'
    """
    seconds = max(0, delta_us // 1_000_000)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86_400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86_400}d {seconds % 86_400 // 3600:02d}h"


def count(n: int) -> str:
    """A row count, short: `950`, `12.3k`, `4.1M`.

    >>> count(950), count(12_345), count(4_100_000)
    ('950', '12.3k', '4.1M')
    """
    if n < 10_000:
        return f"{n:,}" if n >= 1000 else str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def rows(n: int, estimated: bool) -> str:
    """Rows with a `~` when some were estimated."""
    return ("~" if estimated else "") + count(n)


def percent(fraction: float | None) -> str:
    """A fraction of a table: `95%`, `<1%`, `-` when the size is unknown.

    >>> percent(0.95), percent(0.001), percent(None), percent(0.0)
    ('95%', '<1%', '-', '0%')
    """
    if fraction is None:
        return "-"
    if 0 < fraction < 0.01:
        return "<1%"
    return f"{fraction * 100:.0f}%"


@lru_cache(maxsize=1024)
def _redacted(statement: str) -> str:
    return redact(statement)


def statement(value: str | None, reveal: bool, limit: int = 300) -> Text:
    """A statement: redacted of literals unless `reveal`, sanitised and cut either way."""
    if value is None:
        return label("<not logged>", DIM)
    head = value[:_SCAN_CHARS]
    return data(head if reveal else _redacted(head), limit)


def parameters(values: Sequence[str] | None, reveal: bool, limit: int = 200) -> Text:
    """Bind parameters: `N parameters hidden` unless `reveal`, then each value sanitised."""
    if not values:
        return Text(end="")
    if not reveal:
        n = len(values)
        return label(f"{n} parameter{'s' if n != 1 else ''} hidden", DIM)
    out = label("params:", DIM)
    for i, value in enumerate(values[:20], 1):
        out.append(f" ${i}=", DIM)
        out.append_text(data(value, 60))
    if len(values) > 20:
        out.append(f" … {len(values) - 20} more", DIM)
    out.truncate(limit + 40, overflow="ellipsis")
    return out


def notice(*parts: object) -> str:
    """One line for a notification (`notify(..., markup=False)`): every part sanitised.

    >>> notice("page failed: ", "[b]x\\x1b")
    'page failed: [b]x\\\\x1b'
    """
    return safe("".join((p if isinstance(p, str) else str(p))[:600] for p in parts), 300)
