"""Statements without their customer data: literals and comments masked, for screens and pages.

A statement's shape (which table, which columns, WHERE what) is what an operator needs; its
constants may be the customers' own data (`WHERE email = 'ann@example.com'`). PostgreSQL's own
scanner (through pglast) finds the constants, so quoting tricks cannot smuggle a value past it;
a text the scanner refuses is masked wholesale rather than shown.
"""

from __future__ import annotations

import re
from typing import Final

from pglast.parser import ParseError, scan

_STRINGS: Final = frozenset({"SCONST", "USCONST", "BCONST", "XCONST"})
_NUMBERS: Final = frozenset({"ICONST", "FCONST"})
_COMMENTS: Final = frozenset({"SQL_COMMENT", "C_COMMENT"})
_MAX_SCAN: Final = 1 << 20
"""Longer texts are cut before scanning: nobody reads a megabyte on a dashboard."""
_FALLBACK: Final = re.compile(r"'(?:[^']|'')*'?|\$\w*\$.*?(?:\$\w*\$|$)|\b\d[\d._eE+-]*", re.S)


def redact(statement: str) -> str:
    """The statement with every literal replaced by `?` (`'?'` for strings) and comments by
    `/*…*/`. Bind parameters (`$1`) stay: their values are not in the text.

    >>> redact("SELECT * FROM crm.client_list WHERE email = 'ann@example.com' AND id > 41")
    "SELECT * FROM crm.client_list WHERE email = '?' AND id > ?"
    >>> redact("SELECT name FROM t WHERE id = $1 -- customer 7")
    'SELECT name FROM t WHERE id = $1 /*…*/'
    """
    text = statement[:_MAX_SCAN]
    if "\x00" in text:  # the C scanner would stop at it and leave the rest unmasked
        return _FALLBACK.sub(_mask_fallback, text)
    try:
        tokens = scan(text)  # offsets in characters
    except (ParseError, UnicodeError, ValueError):
        return _FALLBACK.sub(_mask_fallback, text)
    out: list[str] = []
    pos = 0
    for token in tokens:
        name = token.name
        if name in _STRINGS:
            mask = "'?'"
        elif name in _NUMBERS:
            mask = "?"
        elif name in _COMMENTS:
            mask = "/*…*/"
        else:
            continue
        out.append(text[pos : token.start])
        out.append(mask)
        pos = token.end + 1
    out.append(text[pos:])
    return "".join(out)


def _mask_fallback(match: re.Match[str]) -> str:
    return "?" if match.group()[0].isdigit() else "'?'"
