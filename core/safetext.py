"""Attacker-controlled text made safe for a terminal or a log line.

User names, application_name, statements and parameters come from whoever connects to the database.
Before they reach a terminal they lose every control character (C0, DEL, C1 such as the 0x9b CSI),
every Unicode format character (bidi controls, zero-width characters, tag characters) and the
invisible look-alikes (variation selectors, Hangul fillers): each is shown escaped (`\\x1b`,
`\\u202e`, `\\U000e0041`), so that `pg_dump` followed by invisible characters never passes for
`pg_dump`. Values are cut to a bound with a visible mark.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "["
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 (tab and newline are handled apart), DEL, C1
    # every format character (Unicode category Cf, Python 3.11): soft hyphen, bidi controls,
    # zero-width characters, word joiners, the BOM, interlinear annotations, tag characters...
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
    # invisible look-alikes that are not Cf: line and paragraph separators, the combining
    # grapheme joiner, Mongolian and other variation selectors, Hangul fillers
    "\u2028\u2029\u034f\u180b-\u180d\u180f\ufe00-\ufe0f\U000e0100-\U000e01ef"
    "\u115f\u1160\u3164\uffa0"
    "]"
)
ELLIPSIS = "…"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe(text: str, limit: int = 200, *, keep_newlines: bool = False) -> str:
    """Escape control characters and cut to `limit` characters (a visible mark when cut).

    >>> safe("a\\x1b[31mred\\x9b")
    'a\\\\x1b[31mred\\\\x9b'
    >>> safe("x" * 10, 5)
    'xxxx…'
    """
    if keep_newlines:
        cleaned = "\n".join(_UNSAFE.sub(_escape, part) for part in text.split("\n"))
    else:
        cleaned = _UNSAFE.sub(_escape, text.replace("\n", "\\n").replace("\t", "\\t"))
    if len(cleaned) > limit:
        return cleaned[: max(limit - 1, 0)] + ELLIPSIS
    return cleaned


def one_line(text: str, limit: int) -> str:
    """`text` with its whitespace runs made single spaces, cut to `limit` characters with an
    ellipsis (for details that quote a statement; escaping is still the renderer's job).

    >>> one_line("SELECT *   FROM t", 12)
    'SELECT * FR…'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + ELLIPSIS
