"""Attacker-controlled text made safe for a terminal or a log line.

User names, application_name, statements and parameters come from whoever connects to the database.
Before they reach a terminal they lose every control character (C0, DEL, C1 such as the 0x9b CSI,
and the Unicode bidi and zero-width format characters), and are cut to a bound with a visible mark.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)
ELLIPSIS = "…"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


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
