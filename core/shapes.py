"""The shape of a SQL statement: how much of a table it reads, from pglast, cached.

The engine asks for the shape of every audited statement, up to a million of them, so a shape is
parsed once and then found again: by the exact text (one dict lookup), else by the pglast
fingerprint, which is the same for texts that differ only in their constants (`id = 42`,
`id = 43`, even `id = $1`). Constants still matter (LIMIT 500, the key 42), so a fingerprint
hit takes them from the text with a small regex lexer, never a second parse. Texts of one
fingerprint can still differ in where their constants sit (`IN (1,2)` / `IN (1,2,3)`, `LIMIT 5
OFFSET 9` / `OFFSET 9 LIMIT 5`), so the lexer also yields the text with comments dropped and
each constant replaced by a marker, its *skeleton*: two texts of one fingerprint and one
skeleton hold their constants at the same token positions. A shape without such values
(`SELECT * FROM t`, `UPDATE ...`) is reused from the fingerprint alone, without lexing.

Measured here on a 170-character join with WHERE and LIMIT: `parse_sql` (Python node objects)
~8k/s; `parse_sql_json` ~120k/s, decoded by msgspec ~40k/s together (json.loads: ~30k/s), so
that is the parse used; `fingerprint` ~110k/s. Through the cache: a text hit 0.06 us, a
fingerprint hit 7 us (19 us when the text's constants are lexed), a miss ~65 us.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Final, NamedTuple

import msgspec
from pglast.parser import fingerprint, parse_sql_json


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


@dataclass(frozen=True, slots=True)
class ShapeStats:
    """How `ShapeCache.shape` answered: `parses` counts full parses, `failures` texts that came
    out unparsed (not SQL, psql variables, empty)."""

    text_hits: int = 0
    fingerprint_hits: int = 0
    parses: int = 0
    failures: int = 0


# ------------------------------------------------------------------------------ values and slots

MAX_TEXT_KEY: Final = 4096
"""Longer texts (and skeletons) are not dict keys: a few huge statements would hold megabytes."""


class _Param(NamedTuple):
    at: int  # 0-based: $1 -> 0


_Value = int | _Param | None  # None: a constant that is no integer (a float, 'abc', TRUE, NULL)

_LIMIT, _OFFSET, _KEY, _ANY = range(4)  # what a slot's value becomes in the Shape


class _Slot(NamedTuple):
    """A constant or parameter whose value goes into the Shape."""

    role: int
    location: int  # byte offset of the node in the text, -1 when it has none
    value: _Value  # as the parser saw it
    lexical: bool  # one token of the text (number, string, $n), not a keyword such as ALL


def _make(
    kind: ShapeKind,
    copy_out: bool,
    cursor: bool,
    select_star: bool,
    in_list: int | None,
    values: list[tuple[int, _Value]],
) -> Shape:
    """A Shape with the fields that come from slot values (the first value of a role wins)."""
    limit = offset = limit_param = offset_param = key_param = key_array = key_literal = None
    for role, value in values:
        if value is None:
            continue
        if isinstance(value, _Param):
            if role == _LIMIT and limit_param is None:
                limit_param = value.at
            elif role == _OFFSET and offset_param is None:
                offset_param = value.at
            elif role == _KEY and key_param is None:
                key_param = value.at
            elif role == _ANY and key_array is None:
                key_array = value.at
        elif role == _LIMIT and limit is None:
            limit = value
        elif role == _OFFSET and offset is None:
            offset = value
        elif role == _KEY and key_literal is None:
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


def _integer(number: str) -> int | None:
    """The integer a numeric literal spells, None for a float.

    >>> [_integer(s) for s in ("42", "-3_000_000_000", "0x1F", "007", "1.5", "1e3")]
    [42, -3000000000, 31, 7, None, None]
    """
    digits = number.replace("_", "")
    body = digits.removeprefix("-")
    if body[:2].lower() in ("0x", "0o", "0b"):
        try:
            return int(digits, 0)
        except ValueError:
            return None
    return int(digits) if body.isascii() and body.isdigit() else None


def _digit_string(content: str) -> int | None:
    return int(content) if content.isascii() and content.isdigit() else None


# ------------------------------------------------------------------------------ the lexer

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
_MARK: Final = "\x00"  # texts holding NUL never get here (the C parser would stop at it)


class _Lexed(NamedTuple):
    skeleton: str
    tokens: list[str]
    starts: list[int]


def _in_identifier(char: str) -> bool:
    return char.isalnum() or char == "_" or char == "$"


def _lex(text: str) -> _Lexed | None:
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
    return _Lexed(_MARK.join(pieces), tokens, starts)


class _Unknown(Exception):
    """A token this lexer cannot value the way the parser would."""


def _token_value(token: str) -> _Value:
    first = token[0]
    if first == "$":
        if token[1:2].isdigit():
            return _Param(int(token[1:]) - 1)
        tag = token[: token.index("$", 1) + 1]
        return _digit_string(token[len(tag) : -len(tag)])
    if first == "'":
        return _digit_string(token[1:-1].replace("''", "'"))
    if first in "Ee":
        if "\\" in token:
            raise _Unknown(token)
        return _digit_string(token[2:-1].replace("''", "'"))
    if first in "Nn":
        return _digit_string(token[2:-1].replace("''", "'"))
    if first in "BbXx":
        return None
    return _integer(token)


@dataclass(frozen=True, slots=True)
class _Recipe:
    """How to rebuild a Shape from another text of the same fingerprint and skeleton."""

    base: Shape
    slots: tuple[tuple[int, int, bool, _Value], ...]  # role, token index (-1: fixed), negate, value

    def shape(self, tokens: list[str]) -> Shape | None:
        pairs: list[tuple[int, _Value]] = []
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
        return _make(base.kind, base.copy_out, base.cursor, base.select_star, base.in_list, pairs)


# ------------------------------------------------------------------------------ the parse tree

_Node = dict[str, Any]
_DECODER: Final = msgspec.json.Decoder()
_WRITES: Final = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
_KEY_NAMES: Final = frozenset({"id", "uuid", "email", "key"})
_KEY_SUFFIXES: Final = ("_id", "_key", "_uuid", "_no", "_number")
# Aggregates that fold many rows into one value; array_agg, string_agg, json_agg... fold the
# rows into one *row*, all the data still there, so they are not on this list.
_REDUCING: Final = frozenset(
    "count sum avg min max bool_and bool_or every bit_and bit_or bit_xor any_value stddev "
    "stddev_pop stddev_samp variance var_pop var_samp corr covar_pop covar_samp regr_avgx "
    "regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy "
    "percentile_cont percentile_disc mode rank dense_rank percent_rank cume_dist".split()
)
_MAX_DEPTH: Final = 64


@dataclass(slots=True)
class _Found:
    """What the walk found in one statement."""

    kind: ShapeKind
    copy_out: bool = False
    cursor: bool = False
    select_star: bool = False
    in_list: int | None = None
    slots: tuple[_Slot, ...] = ()
    positions: bool = False  # values in LIMIT, key or IN positions: a fingerprint is not enough
    cacheable: bool = True  # False: the kind hangs on a constant's value (GROUP BY 1)


def _one(node: Any) -> tuple[str, Any]:
    """The type name and body of a `{"Type": {...}}` node (("", {}) for anything else)."""
    if isinstance(node, dict) and len(node) == 1:
        return next(iter(node.items()))
    return "", {}


def _uncast(node: Any) -> Any:
    for _ in range(_MAX_DEPTH):
        kind, body = _one(node)
        if kind != "TypeCast":
            break
        node = body.get("arg")
    return node


def _is_value(node: Any) -> bool:
    return _one(node)[0] in ("A_Const", "ParamRef")


def _last_name(names: list[Any]) -> str | None:
    """The last of a list of String nodes (a column, function or operator name), lowercased."""
    kind, last = _one(names[-1]) if names else ("", {})
    return str(last.get("sval", "")).lower() if kind == "String" else None


def _column(node: Any) -> str | None:
    """The lowercased column name of a ColumnRef (None for `*` and anything else)."""
    kind, body = _one(_uncast(node))
    return _last_name(body.get("fields", [])) if kind == "ColumnRef" else None


def _is_key(name: str | None) -> bool:
    return name is not None and (name in _KEY_NAMES or name.endswith(_KEY_SUFFIXES))


def _slot(role: int, node: Any) -> _Slot:
    kind, body = _one(node)
    location = body.get("location", -1)
    if kind == "ParamRef":
        return _Slot(role, location, _Param(body.get("number", 0) - 1), location >= 0)
    value: _Value = None
    lexical = location >= 0
    if "ival" in body:
        value = body["ival"].get("ival", 0)
    elif "fval" in body:
        value = _integer(body["fval"].get("fval", ""))
    elif "sval" in body:
        value = _digit_string(body["sval"].get("sval", ""))
    elif "bsval" not in body:
        lexical = False  # TRUE, FALSE, NULL, LIMIT ALL: keywords, kept in the skeleton
    return _Slot(role, location, value, lexical)


def _conjuncts(where: Any) -> list[Any]:
    kind, body = _one(where)
    if kind != "BoolExpr":
        return [where]
    if body.get("boolop") != "AND_EXPR":
        return []
    out: list[Any] = []
    for arg in body.get("args", []):
        out.extend(_conjuncts(arg) if _one(arg)[0] == "BoolExpr" else [arg])
    return out


def _keys(where: Any, found: _Found) -> bool:
    """Note the key equalities of a top-level WHERE in `found`; True when there is one."""
    key = False
    slots = list(found.slots)
    for conjunct in _conjuncts(where):
        kind, expr = _one(conjunct)
        if kind != "A_Expr" or _last_name(expr.get("name", [])) != "=":
            continue
        left, right = _uncast(expr.get("lexpr")), _uncast(expr.get("rexpr"))
        op = expr.get("kind")
        if op == "AEXPR_OP":
            if _is_key(_column(right)) and _is_value(left):
                left, right = right, left
            if _is_key(_column(left)) and _is_value(right):
                slots.append(_slot(_KEY, right))
                key = True
        elif op == "AEXPR_IN" and _is_key(_column(left)):
            items = _one(right)[1].get("items", []) if _one(right)[0] == "List" else []
            if items and all(_is_value(_uncast(item)) for item in items):
                key = True
                found.in_list = found.in_list or len(items)
        elif op == "AEXPR_OP_ANY" and _is_key(_column(left)):
            rkind, rbody = _one(right)
            if rkind == "ParamRef" or rkind == "A_Const":  # ANY($1), ANY('{1,2}'): one fingerprint
                slots.append(_slot(_ANY, right))
                key = True
            elif rkind == "A_ArrayExpr":
                elements = rbody.get("elements", [])
                if elements and all(_is_value(_uncast(e)) for e in elements):
                    key = True
                    found.in_list = found.in_list or len(elements)
    found.positions = found.positions or key
    found.slots = tuple(slots)
    return key


def _names(node: Any, into: set[str], depth: int = 0) -> None:
    """Collect the column names referenced anywhere under a node."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, list):
        for item in node:
            _names(item, into, depth + 1)
    elif isinstance(node, dict):
        name = _column(node) if "ColumnRef" in node else None
        if name is not None:
            into.add(name)
        for value in node.values():
            if isinstance(value, dict | list):
                _names(value, into, depth + 1)


class _Aggregate:
    """Whether a target list is only reducing aggregates (and the columns grouped by)."""

    def __init__(self, targets: list[Any], group: list[Any] | None) -> None:
        self.grouped: set[str] = set()
        self.cacheable = True
        self.saw = False
        for item in group or []:
            kind, body = _one(_uncast(item))
            if kind == "A_Const" or kind == "ParamRef":
                # GROUP BY 2 (and GROUP BY $1, the same fingerprint): the kind hangs on a value
                self.cacheable = False
                position = body.get("ival", {}).get("ival", 0) if "ival" in body else 0
                if 0 < position <= len(targets):
                    _names(_one(targets[position - 1])[1].get("val"), self.grouped)
            else:
                _names(item, self.grouped)
        self.verdict = not any(_is_key(name) for name in self.grouped) and all(
            self._reduced(_one(target)[1].get("val"), 0) for target in targets
        )
        self.verdict = self.verdict and self.saw

    def _reduced(self, node: Any, depth: int) -> bool:
        kind, body = _one(node)
        if depth > _MAX_DEPTH:
            return False
        if kind == "FuncCall":
            if "over" in body:
                return False
            if _last_name(body.get("funcname", [])) in _REDUCING:
                self.saw = True
                return True
            return all(self._reduced(arg, depth + 1) for arg in body.get("args", []))
        if kind in ("A_Const", "ParamRef"):
            return True
        if kind == "ColumnRef":
            return _column(node) in self.grouped
        children: list[Any]
        if kind == "TypeCast" or kind == "NullTest":
            children = [body.get("arg")]
        elif kind == "A_Expr":
            children = [body[side] for side in ("lexpr", "rexpr") if side in body]
        elif kind in ("CoalesceExpr", "MinMaxExpr", "BoolExpr"):
            children = body.get("args", [])
        elif kind == "CaseExpr":
            children = [body[k] for k in ("arg", "defresult") if k in body]
            for when in body.get("args", []):
                children.extend(_one(when)[1].get(k) for k in ("expr", "result"))
        else:
            return False
        return all(self._reduced(child, depth + 1) for child in children)


def _paging(select: _Node) -> tuple[list[_Slot], bool]:
    """The LIMIT/OFFSET slots of a select, and whether it has a LIMIT or OFFSET clause."""
    slots = []
    for field, role in (("limitCount", _LIMIT), ("limitOffset", _OFFSET)):
        node = _uncast(select.get(field))
        if _is_value(node):
            slots.append(_slot(role, node))
    return slots, "limitCount" in select or "limitOffset" in select


def _with_paging(found: _Found, select: _Node) -> _Found:
    """`found` with the LIMIT/OFFSET of an enclosing select, when it has one."""
    paging, present = _paging(select)
    if present:
        kept = tuple(s for s in found.slots if s.role not in (_LIMIT, _OFFSET))
        found.slots = tuple(paging) + kept
        found.positions = found.positions or bool(paging)
    return found


def _inner(select: _Node) -> _Node | None:
    """The select a select reads all of, when its FROM is one subquery or one CTE."""
    sources = select.get("fromClause", [])
    if len(sources) != 1:
        return None
    kind, body = _one(sources[0])
    if kind == "RangeSubselect":
        sub_kind, sub = _one(body.get("subquery"))
        return sub if sub_kind == "SelectStmt" else None
    if kind == "RangeVar" and "schemaname" not in body:
        with_clause = select.get("withClause", {})
        if with_clause.get("recursive"):
            return None
        for cte in with_clause.get("ctes", []):
            cte_body = _one(cte)[1]
            if cte_body.get("ctename") == body.get("relname"):
                query_kind, query = _one(cte_body.get("ctequery"))
                return query if query_kind == "SelectStmt" else None
    return None


def _select(select: _Node, depth: int = 0) -> _Found:
    if depth > _MAX_DEPTH:
        return _Found(ShapeKind.OTHER, cacheable=False)
    if select.get("op", "SETOP_NONE") != "SETOP_NONE":
        arms = [_select(select.get(arm, {}), depth + 1) for arm in ("larg", "rarg")]
        found = arms[0] if WIDTH[arms[0].kind] >= WIDTH[arms[1].kind] else arms[1]
        found.select_star = arms[0].select_star or arms[1].select_star
        found.positions = arms[0].positions or arms[1].positions
        found.cacheable = arms[0].cacheable and arms[1].cacheable
        return _with_paging(found, select)
    if "valuesLists" in select or "fromClause" not in select:
        return _Found(ShapeKind.OTHER)
    targets = select.get("targetList", [])
    star = any(_is_star(t) for t in targets)
    paging, _ = _paging(select)
    aggregate = _Aggregate(targets, select.get("groupClause"))
    found = _Found(
        ShapeKind.OTHER,
        select_star=star,
        slots=tuple(paging),
        positions=bool(paging),
        cacheable=aggregate.cacheable,
    )
    where = select.get("whereClause")
    key = where is not None and _keys(where, found)
    if aggregate.verdict:
        found.kind = ShapeKind.AGGREGATE
    elif where is None:
        found.kind = ShapeKind.BULK
        inner = _inner(select)
        if inner is not None:
            deeper = _select(inner, depth + 1)
            deeper.select_star = star
            deeper.cacheable = deeper.cacheable and found.cacheable
            return _with_paging(deeper, select)
    else:
        found.kind = ShapeKind.KEY_LOOKUP if key else ShapeKind.FILTERED
    return found


def _is_star(target: Any) -> bool:
    kind, body = _one(_one(target)[1].get("val"))
    return kind == "ColumnRef" and _one(body.get("fields", [None])[-1])[0] == "A_Star"


def _statement(node: Any, depth: int = 0) -> _Found:
    kind, body = _one(node)
    if kind == "SelectStmt":
        return _select(body, depth)
    if kind in _WRITES:
        return _Found(ShapeKind.WRITE)
    if depth > _MAX_DEPTH:
        return _Found(ShapeKind.OTHER, cacheable=False)
    if kind == "CopyStmt":
        if body.get("is_from"):
            return _Found(ShapeKind.WRITE)
        found = _statement(body["query"], depth + 1) if "query" in body else None
        found = found or _Found(ShapeKind.BULK)
        found.copy_out = True
        return found
    if kind == "DeclareCursorStmt":
        found = _statement(body.get("query"), depth + 1)
        found.cursor = True
        return found
    if kind == "CreateTableAsStmt" and not body.get("into", {}).get("skipData"):
        return _statement(body.get("query"), depth + 1)  # CREATE TABLE x AS SELECT: reads it
    return _Found(ShapeKind.OTHER)


class _Analysis(NamedTuple):
    shape: Shape
    found: _Found


def _analyse(text: str) -> _Analysis | None:
    """The full analysis of a text; None when it holds no statement. Raises on parse errors."""
    tree = _DECODER.decode(parse_sql_json(text))
    best: _Found | None = None
    for raw in tree.get("stmts", []):
        found = _statement(raw.get("stmt"))
        if best is None or WIDTH[found.kind] > WIDTH[best.kind]:
            best = found
    if best is None:
        return None
    values = [(slot.role, slot.value) for slot in best.slots]
    shape = _make(best.kind, best.copy_out, best.cursor, best.select_star, best.in_list, values)
    return _Analysis(shape, best)


def _recipe(text: str, analysis: _Analysis, lexed: _Lexed) -> _Recipe | None:
    """The recipe for texts like this one, None when the lexer does not agree with the parser."""
    encoded = None if text.isascii() else text.encode()
    index_of = {start: i for i, start in enumerate(lexed.starts)}
    slots: list[tuple[int, int, bool, _Value]] = []
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
    return _Recipe(analysis.shape, tuple(slots))


def shape_of(text: str) -> Shape:
    """The shape of a statement text, uncached; never raises.

    >>> shape_of("SELECT * FROM crm.clients LIMIT 500 OFFSET 20000").describe()
    'SELECT * without WHERE, LIMIT 500 OFFSET 20000'
    """
    if _MARK in text:
        return UNPARSED
    try:
        analysis = _analyse(text)
    except Exception:  # parse errors, unencodable text, too deep: all mean "not a shape we know"
        return UNPARSED
    return UNPARSED if analysis is None else analysis.shape


# ------------------------------------------------------------------------------ the cache


def _digest(lexed: _Lexed) -> str:
    """The skeleton as a dict key: itself when short, else a 128-bit digest of it."""
    skeleton = lexed.skeleton
    if len(skeleton) <= MAX_TEXT_KEY:
        return skeleton
    digest = hashlib.blake2b(skeleton.encode(errors="replace"), digest_size=16).hexdigest()
    return _MARK + _MARK + digest  # no skeleton of valid SQL starts with two constants


class _Via(Enum):
    LEX = "lex"  # the fingerprint's shape needs values from the text: see the variants
    PARSE = "parse"  # the fingerprint does not fix the kind (GROUP BY 2): parse every new text


class ShapeCache:
    """Shapes by text, then by fingerprint, parsing only texts of a new form.

    Each dict is cleared when it reaches its bound rather than kept as an LRU: an LRU would
    reorder on every hit of the hot path, while statement texts are heavy-tailed and the few
    that matter come straight back (and a text-cache clear still finds them by fingerprint).
    """

    __slots__ = (
        "_failures",
        "_fingerprint_hits",
        "_fingerprints",
        "_max_fingerprints",
        "_max_texts",
        "_parses",
        "_text_hits",
        "_texts",
        "_variants",
    )

    def __init__(self, max_texts: int = 50_000, max_fingerprints: int = 20_000) -> None:
        self._max_texts = max_texts
        self._max_fingerprints = max_fingerprints
        self._texts: dict[str, Shape] = {}
        self._fingerprints: dict[str, Shape | _Via] = {}
        self._variants: dict[tuple[str, str], _Recipe] = {}
        self._text_hits = self._fingerprint_hits = self._parses = self._failures = 0

    @property
    def stats(self) -> ShapeStats:
        """Counts so far."""
        return ShapeStats(self._text_hits, self._fingerprint_hits, self._parses, self._failures)

    def shape(self, text: str) -> Shape:
        """The shape of a statement text; never raises (unparsable: `parsed=False`, OTHER)."""
        shape = self._texts.get(text)
        if shape is not None:
            self._text_hits += 1
            return shape
        shape = self._miss(text)
        if len(text) <= MAX_TEXT_KEY:
            if len(self._texts) >= self._max_texts:
                self._texts.clear()
            self._texts[text] = shape
        return shape

    def _miss(self, text: str) -> Shape:
        if _MARK in text:
            self._failures += 1
            return UNPARSED
        try:
            key = fingerprint(text)
        except Exception:  # parse errors, unencodable text, too deep
            self._failures += 1
            return UNPARSED
        entry = self._fingerprints.get(key)
        lexed: _Lexed | None = None
        if isinstance(entry, Shape):
            self._fingerprint_hits += 1
            return entry
        if entry is _Via.LEX:
            lexed = _lex(text)
            recipe = None if lexed is None else self._variants.get((key, _digest(lexed)))
            if lexed is not None and recipe is not None:
                shape = recipe.shape(lexed.tokens)
                if shape is not None:
                    self._fingerprint_hits += 1
                    return shape
        return self._parse(text, key, lexed)

    def _parse(self, text: str, key: str, lexed: _Lexed | None) -> Shape:
        self._parses += 1
        try:
            analysis = _analyse(text)
        except Exception:  # the fingerprint parsed it, so only "too deep" and the like
            analysis = None
        if analysis is None:
            self._failures += 1
            return UNPARSED
        found = analysis.found
        if len(self._fingerprints) >= self._max_fingerprints:
            self._fingerprints.clear()
        if not found.cacheable:
            self._fingerprints[key] = _Via.PARSE
        elif not found.positions:
            self._fingerprints[key] = analysis.shape
        else:
            self._fingerprints[key] = _Via.LEX
            lexed = lexed or _lex(text)
            recipe = None if lexed is None else _recipe(text, analysis, lexed)
            if lexed is not None and recipe is not None:
                if len(self._variants) >= self._max_fingerprints:
                    self._variants.clear()
                self._variants[(key, _digest(lexed))] = recipe
        return analysis.shape
