"""Statements without their customer data: literals and comments masked, for screens and pages.

A statement's shape (which table, which columns, WHERE what) is what an operator needs; its
constants may be the customers' own data (`WHERE email = 'ann@example.com'`). PostgreSQL's own
scanner (through pglast) finds the constants, so quoting tricks cannot smuggle a value past it.

A text the scanner refuses (most often one cut in the middle of a literal or a comment before it
got here) goes through a fallback that fails closed: whatever an unterminated opener (`'`,
`E'`, `$tag$`, `"`, `/*`) starts is masked to the end of the text, and a string is masked as far
as either reading of backslashes takes it (`standard_conforming_strings` on or off), so a value
is shown only where both readings agree it is not a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from pglast.parser import ParseError, scan

_STRINGS: Final = frozenset({"SCONST", "USCONST", "BCONST", "XCONST"})
_NUMBERS: Final = frozenset({"ICONST", "FCONST"})
_COMMENTS: Final = frozenset({"SQL_COMMENT", "C_COMMENT"})
_MAX_SCAN: Final = 1 << 20
"""Longer texts are cut before scanning: nobody reads a megabyte on a dashboard."""

STRING_MASK: Final = "'?'"
NUMBER_MASK: Final = "?"
COMMENT_MASK: Final = "/*…*/"
IDENT_MASK: Final = '"?"'

_NOT_AFTER_IDENT: Final = r"(?<![\w$\x80-\U0010ffff])"
"""PostgreSQL's identifier characters: a letter, digit, `$` or `'` after one of them is part of
the identifier (or, for a quote, starts a plain string), never a prefix, a tag or a number."""
_OPENER: Final = re.compile(
    r"(?P<comment>--|/\*)"
    rf"|(?:{_NOT_AFTER_IDENT}(?:(?P<e>[eE])|[bBxXnN]|[uU]&))?(?P<string>')"
    r"|(?:[uU]&)?(?P<ident>\")"
    rf"|{_NOT_AFTER_IDENT}(?P<dollar>\$(?:[A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*)?\$)"
    rf"|{_NOT_AFTER_IDENT}(?P<number>\.?\d(?:[eE][+-]|[\w.])*)"
)
_PLAIN_BODY: Final = re.compile(r"(?:[^']+|'')*'?")
"""A standard string's rest: `''` is a quote; to the end of the text when unterminated."""
_ESCAPED_BODY: Final = re.compile(r"(?:[^'\\]+|\\.?|'')*'?", re.S)
"""The rest of a string where backslash escapes (`\\'`) are read, as in `E'...'`."""
_IDENT_BODY: Final = re.compile(r'(?:[^"]+|"")*(?P<closed>")?')
_NEWLINE: Final = re.compile(r"[\n\r]")
_NESTING: Final = re.compile(r"/\*|\*/")


def redact(statement: str) -> str:
    """The statement with every literal replaced by `?` (`'?'` for strings) and comments by
    `/*…*/`. Bind parameters (`$1`) stay: their values are not in the text.

    >>> redact("SELECT * FROM crm.client_list WHERE email = 'ann@example.com' AND id > 41")
    "SELECT * FROM crm.client_list WHERE email = '?' AND id > ?"
    >>> redact("SELECT name FROM t WHERE id = $1 -- customer 7")
    'SELECT name FROM t WHERE id = $1 /*…*/'
    >>> redact("SELECT id FROM t WHERE note = E'it\\\\'s ann@example.com, cut he")
    "SELECT id FROM t WHERE note = '?'"
    """
    text = statement[:_MAX_SCAN]
    if "\x00" in text:  # the C scanner would stop at it and leave the rest unmasked
        return fallback(text)
    try:
        tokens = scan(text)  # offsets in characters
    except (ParseError, UnicodeError, ValueError):
        return fallback(text)
    out: list[str] = []
    pos = 0
    for token in tokens:
        name = token.name
        if name in _STRINGS:
            literal = text[token.start : token.end + 1]
            if "\\'" in literal and literal[0] not in "eE":
                # with standard_conforming_strings off this string ends elsewhere: the
                # scanner's one reading of it is not enough
                return fallback(text)
            mask = STRING_MASK
        elif name in _NUMBERS:
            mask = NUMBER_MASK
        elif name in _COMMENTS:
            mask = COMMENT_MASK
        else:
            continue
        out.append(text[pos : token.start])
        out.append(mask)
        pos = token.end + 1
    out.append(text[pos:])
    return "".join(out)


def fallback(text: str) -> str:
    """`redact` without PostgreSQL's scanner, for a text it refuses: fails closed.

    >>> fallback("SELECT $a$ann $b$ still ann")
    "SELECT '?'"
    >>> fallback("SELECT id FROM t /* ann@example.com")
    'SELECT id FROM t /*…*/'
    """
    spans = list(_spans(text, backslash_escapes=False))
    if any(mask == STRING_MASK and "\\" in text[start:end] for start, end, mask in spans):
        # the other reading of backslashes may end a string elsewhere: a character is shown
        # only when neither reading puts it in a value
        spans += _spans(text, backslash_escapes=True)
        spans.sort(key=lambda span: (span[0], -span[1]))
    out: list[str] = []
    pos = 0
    for start, end, mask in spans:
        if end <= pos:
            continue  # inside the span just masked
        if start < pos:  # overlaps it: mask on to this span's end
            pos = end
            continue
        out.append(text[pos:start])
        out.append(mask)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _spans(text: str, *, backslash_escapes: bool) -> Iterator[tuple[int, int, str]]:
    """(start, end, mask) of each literal and comment, as PostgreSQL would find them."""
    pos = 0
    while (found := _OPENER.search(text, pos)) is not None:
        start, pos = found.start(), found.end()
        if found["comment"] == "--":
            newline = _NEWLINE.search(text, pos)
            pos = len(text) if newline is None else newline.start()
            yield start, pos, COMMENT_MASK
        elif found["comment"]:
            pos = _comment_end(text, pos)
            yield start, pos, COMMENT_MASK
        elif found["string"]:
            escaped = backslash_escapes or found["e"] is not None
            body = (_ESCAPED_BODY if escaped else _PLAIN_BODY).match(text, pos)
            pos = body.end() if body is not None else len(text)
            yield start, pos, STRING_MASK
        elif found["ident"]:
            body = _IDENT_BODY.match(text, pos)
            if body is None or body["closed"] is None:  # what follows may be anything
                pos = len(text)
                yield start, pos, IDENT_MASK
            else:
                pos = body.end()  # a name, not data: shown
        elif found["dollar"]:
            close = text.find(found["dollar"], pos)  # the same tag only
            pos = len(text) if close < 0 else close + len(found["dollar"])
            yield start, pos, STRING_MASK
        else:
            yield start, pos, NUMBER_MASK


def _comment_end(text: str, pos: int) -> int:
    """Where the block comment opened before `pos` ends: comments nest in PostgreSQL."""
    depth = 1
    for mark in _NESTING.finditer(text, pos):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return mark.end()
    return len(text)
