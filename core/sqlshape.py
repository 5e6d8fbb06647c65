"""What a statement reads: `ShapeKind`, `Shape`, and the Shape made from the values of its slots.

A *slot* is a constant or bind parameter whose value goes into a Shape (`LIMIT 500`, `id = $1`):
the parse-tree walk (`core.sqltree`) finds slots by node, a recipe of the lexer (`core.sqllex`)
by token, and both end in `make_shape`. Import the public names from `core.shapes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple


class ShapeKind(StrEnum):
    """What a statement reads; `WIDTH` orders them.

    A *key* column is named id, uuid, email or key, or ends in _id, _key, _uuid, _no or _number
    (any case): `region = 'EU'` is a filter, `email = $1` a key lookup.
    """

    KEY_LOOKUP = "key_lookup"
    """The top-level WHERE ANDs a key = constant or $n, key IN (constants) or key = ANY(...)."""
    FILTERED = "filtered"
    """A WHERE without such a key equality (ranges, LIKE, OR at the top)."""
    BULK = "bulk"
    """No WHERE: SELECT ... FROM t, TABLE t, COPY t TO, row-packing aggregates (json_agg...)."""
    AGGREGATE = "aggregate"
    """Only reducing aggregates (count, sum...) in the target list, grouped by no key column."""
    WRITE = "write"
    """INSERT, UPDATE, DELETE, MERGE, COPY FROM."""
    OTHER = "other"
    """Anything else: DDL, SET, GRANT, EXPLAIN, SELECT without FROM, text that is not SQL."""


WIDTH: Final = {
    ShapeKind.BULK: 5,
    ShapeKind.FILTERED: 4,
    ShapeKind.KEY_LOOKUP: 3,
    ShapeKind.AGGREGATE: 2,
    ShapeKind.WRITE: 1,
    ShapeKind.OTHER: 0,
}
"""How much of a table each kind may read: the widest statement of a text gives its shape."""


@dataclass(frozen=True, slots=True)
class Shape:
    """The shape of one statement text (the widest statement in it)."""

    kind: ShapeKind
    copy_out: bool = False
    """COPY ... TO a file, STDOUT or a program."""
    cursor: bool = False
    """DECLARE ... CURSOR FOR a select (the kind is the select's)."""
    select_star: bool = False
    """A `*` or `t.*` in the top-level target list."""
    limit: int | None = None
    """A constant LIMIT or FETCH FIRST n (None for none and for LIMIT ALL)."""
    offset: int | None = None
    limit_param: int | None = None
    """0-based index of the bind parameter used as LIMIT ($2 -> 1)."""
    offset_param: int | None = None
    key_param: int | None = None
    """0-based index of the parameter in the first `key = $n`."""
    key_array_param: int | None = None
    """0-based index of the array parameter in `key = ANY($n)`."""
    key_literal: int | None = None
    """The first integer a key equals (`id = 42`, `id = '42'`)."""
    in_list: int | None = None
    """How many items a top-level `key IN (...)` (or `key = ANY(ARRAY[...])`) lists."""
    parsed: bool = True
    """False when pglast could not parse the text, or it held no statement (kind OTHER)."""

    def describe(self) -> str:
        """Short human text for a finding's reason.

        >>> Shape(ShapeKind.BULK, select_star=True, limit=500, offset=20000).describe()
        'SELECT * without WHERE, LIMIT 500 OFFSET 20000'
        >>> Shape(ShapeKind.BULK, copy_out=True).describe()
        'COPY TO'
        >>> Shape(ShapeKind.KEY_LOOKUP, in_list=3).describe()
        'key lookup of 3 keys'
        >>> Shape(ShapeKind.OTHER, parsed=False).describe()
        'unparsed statement'
        """
        if not self.parsed:
            return "unparsed statement"
        parts = []
        if self.copy_out:
            parts.append("COPY TO")
        if self.cursor:
            parts.append("cursor")
        kind = self.kind
        if kind is ShapeKind.BULK:
            if self.select_star:
                parts.append("SELECT * without WHERE")
            elif not self.copy_out:
                parts.append("read without WHERE")
        elif kind is ShapeKind.KEY_LOOKUP:
            parts.append(f"key lookup of {self.in_list} keys" if self.in_list else "key lookup")
        else:
            parts.append(_KIND_TEXT[kind])
        paging = []
        if self.limit is not None or self.limit_param is not None:
            paging.append(f"LIMIT {_value_text(self.limit, self.limit_param)}")
        if self.offset is not None or self.offset_param is not None:
            paging.append(f"OFFSET {_value_text(self.offset, self.offset_param)}")
        if paging:
            parts.append(" ".join(paging))
        return ", ".join(parts)


_KIND_TEXT: Final = {
    ShapeKind.FILTERED: "filtered read",
    ShapeKind.AGGREGATE: "aggregate",
    ShapeKind.WRITE: "write",
    ShapeKind.OTHER: "other statement",
}
UNPARSED: Final = Shape(ShapeKind.OTHER, parsed=False)


def _value_text(value: int | None, param: int | None) -> str:
    return str(value) if value is not None else f"${(param or 0) + 1}"


# ------------------------------------------------------------------------------ slot values


class Param(NamedTuple):
    """A bind parameter where a value would be (`LIMIT $2`)."""

    at: int  # 0-based: $1 -> 0


Value = int | Param | None  # None: a constant that is no integer (a float, 'abc', TRUE, NULL)

LIMIT, OFFSET, KEY, ANY = range(4)  # what a slot's value becomes in the Shape


def make_shape(
    kind: ShapeKind,
    copy_out: bool,
    cursor: bool,
    select_star: bool,
    in_list: int | None,
    values: list[tuple[int, Value]],
) -> Shape:
    """A Shape with the fields that come from slot values (the first value of a role wins)."""
    limit = offset = limit_param = offset_param = key_param = key_array = key_literal = None
    for role, value in values:
        if value is None:
            continue
        if isinstance(value, Param):
            if role == LIMIT and limit_param is None:
                limit_param = value.at
            elif role == OFFSET and offset_param is None:
                offset_param = value.at
            elif role == KEY and key_param is None:
                key_param = value.at
            elif role == ANY and key_array is None:
                key_array = value.at
        elif role == LIMIT and limit is None:
            limit = value
        elif role == OFFSET and offset is None:
            offset = value
        elif role == KEY and key_literal is None:
            key_literal = value
    return Shape(
        kind,
        copy_out,
        cursor,
        select_star,
        limit,
        offset,
        limit_param,
        offset_param,
        key_param,
        key_array,
        key_literal,
        in_list,
    )


MAX_DIGITS = 30
"""A longer number is not a value a shape uses (no key, limit or offset is that long), and `int`
refuses a decimal of over 4,300 digits: any reader may send one."""


def integer(number: str) -> int | None:
    """The integer a numeric literal spells, None for a float (or one too long to matter).

    >>> [integer(s) for s in ("42", "-3_000_000_000", "0x1F", "007", "1.5", "1e3", "9" * 5000)]
    [42, -3000000000, 31, 7, None, None, None]
    """
    digits = number.replace("_", "")
    body = digits.removeprefix("-")
    if len(body) > MAX_DIGITS:
        return None
    if body[:2].lower() in ("0x", "0o", "0b"):
        try:
            return int(digits, 0)
        except ValueError:
            return None
    return int(digits) if body.isascii() and body.isdigit() else None


def digit_string(content: str) -> int | None:
    """The integer a string constant holds when it is all digits (`'42'`), else None."""
    if len(content) > MAX_DIGITS or not (content.isascii() and content.isdigit()):
        return None
    return int(content)
