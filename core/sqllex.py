"""The lexer: a text's constants and skeleton without a parse, and recipes that use them.

Texts of one fingerprint differ only in their constants; with the same *skeleton* (the text
without comments, each constant replaced by `MARK`) they hold them at the same token positions.
A `Recipe`, made once from a parsed text, then rebuilds the Shape of another such text from its
tokens alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, NamedTuple

from core.sqlshape import Param, Shape, Value, digit_string, integer, make_shape
from core.sqltree import Analysis

# Comments, quoted identifiers and constants; everything else stays in the skeleton. The pattern
# starts with one character class, so `re` skips to candidates in C (~2.7 us for a 170-character
# statement, against ~6 us for the same branches tried at every position); each branch then
# checks the character it started on by look-behind. Numbers, `$1` and `$tag$` must not start
# inside an identifier (`t1`, `a$1`). String prefixes (E'', B'', X'', N'', U&'') are taken in
# Python: as branches they would make every E, N, X... of the text a candidate.
_TOKEN: Final = re.compile(
    r"""([-/"'$.0-9](?:
      (?<=-)-[^\r\n]*
    | (?<=/)\*.*?\*/
    | (?<=")(?:[^"]|"")*"
    | (?<=')(?:[^']|'')*'
    | (?<=\$)(?<![\w$]\$)(?:\d+|((?:[^\W\d]\w*)?)\$.*?\$\2\$)
    | (?<=\d)(?<![\w$.]\d)(?:(?<=0)[xXoObB]\w+|[\d_]*(?:\.[\d_]*)?(?:[eE][-+]?\d+)?)
    | (?<=\.)(?<![\w$.]\.)\d[\d_]*(?:[eE][-+]?\d+)?
    ))""",
    re.VERBOSE | re.DOTALL,
)
_PREFIXES: Final = frozenset("EeBbXxNn")
MARK: Final = "\x00"  # texts holding NUL never get here (the C parser would stop at it)


class Lexed(NamedTuple):
    """A text as the lexer sees it: its skeleton, constant tokens and their offsets."""

    skeleton: str
    tokens: list[str]
    starts: list[int]


def _in_identifier(char: str) -> bool:
    return char.isalnum() or char == "_" or char == "$"


def lex(text: str) -> Lexed | None:
    """The skeleton and constant tokens of a text; None when it is beyond this lexer (nested
    comments, strings continued on the next line, U&'' strings, E'' strings with escapes),
    which then costs a parse."""
    parts = _TOKEN.split(text)  # text, token, dollar tag, text, token, dollar tag, ..., text
    pieces = [parts[0]]
    tokens: list[str] = []
    starts: list[int] = []
    pos = len(parts[0])
    string_gap = False  # only blanks and comments since the last string constant
    for i in range(1, len(parts), 3):
        token, after = parts[i], parts[i + 2]
        first = token[0]
        start = pos
        pos += len(token) + len(after)
        if first == "-" or first == "/":
            if first == "/" and "/*" in token[2:]:
                return None
            pieces[-1] += " " + after
            string_gap = string_gap and not after.strip()
            continue
        if first == '"':
            pieces[-1] += token + after
            string_gap = False
            continue
        if first == "'":
            if string_gap:
                return None
            before = pieces[-1]
            prefix = before[-1:]
            if prefix in _PREFIXES and not (len(before) > 1 and _in_identifier(before[-2])):
                if prefix in "Ee" and "\\" in token:
                    return None
                token = prefix + token
                pieces[-1] = before[:-1]
                start -= 1
            elif prefix == "&" and before[-2:-1] in ("U", "u"):
                return None  # U&'...' (UESCAPE '!'): rare enough to parse
            string_gap = not after.strip()
        else:
            string_gap = False
        tokens.append(token)
        starts.append(start)
        pieces.append(after)
    return Lexed(MARK.join(pieces), tokens, starts)


class _Unknown(Exception):
    """A token this lexer cannot value the way the parser would."""


def _token_value(token: str) -> Value:
    first = token[0]
    if first == "$":
        if token[1:2].isdigit():
            number = token[1:]
            if not (number.isascii() and number.isdigit() and len(number) <= 10):
                raise _Unknown(token)
            return Param(int(number) - 1)
        tag = token[: token.index("$", 1) + 1]
        return digit_string(token[len(tag) : -len(tag)])
    if first == "'":
        return digit_string(token[1:-1].replace("''", "'"))
    if first in "Ee":
        if "\\" in token:
            raise _Unknown(token)
        return digit_string(token[2:-1].replace("''", "'"))
    if first in "Nn":
        return digit_string(token[2:-1].replace("''", "'"))
    if first in "BbXx":
        return None
    return integer(token)


# ------------------------------------------------------------------------------ recipes


@dataclass(frozen=True, slots=True)
class Recipe:
    """How to rebuild a Shape from another text of the same fingerprint and skeleton."""

    base: Shape
    slots: tuple[tuple[int, int, bool, Value], ...]  # role, token index (-1: fixed), negate, value

    def shape(self, tokens: list[str]) -> Shape | None:
        """The Shape of a text with these tokens; None when one cannot be valued."""
        pairs: list[tuple[int, Value]] = []
        try:
            for role, index, negate, fixed in self.slots:
                if index < 0:
                    pairs.append((role, fixed))
                    continue
                value = _token_value(tokens[index])
                if negate and isinstance(value, int):
                    value = -value
                pairs.append((role, value))
        except _Unknown:
            return None
        base = self.base
        return make_shape(
            base.kind, base.copy_out, base.cursor, base.select_star, base.in_list, pairs
        )


def make_recipe(text: str, analysis: Analysis, lexed: Lexed) -> Recipe | None:
    """The recipe for texts like this one, None when the lexer does not agree with the parser."""
    encoded = None if text.isascii() else text.encode()
    index_of = {start: i for i, start in enumerate(lexed.starts)}
    slots: list[tuple[int, int, bool, Value]] = []
    for slot in analysis.found.slots:
        if not slot.lexical:
            slots.append((slot.role, -1, False, slot.value))
            continue
        at = slot.location
        if encoded is not None:
            at = len(encoded[:at].decode(errors="ignore"))
        index, negate = index_of.get(at), False
        if index is None and text[at : at + 1] == "-":
            index = next((i for i, s in enumerate(lexed.starts) if s > at), None)
            if index is None or not (text[at + 1 : lexed.starts[index]] or " ").isspace():
                return None
            negate = True
        if index is None:
            return None
        try:
            value = _token_value(lexed.tokens[index])
        except _Unknown:
            return None
        if negate and isinstance(value, int):
            value = -value
        if value != slot.value:
            return None
        slots.append((slot.role, index, negate, None))
    return Recipe(analysis.shape, tuple(slots))
