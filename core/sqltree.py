"""The walk of a statement's parse tree: its kind, and the slots whose values go in its Shape.

`analyse` parses with `parse_sql_json` (decoded by msgspec, several times faster than pglast's
node objects) and keeps the widest statement of the text. It also tells the cache of
`core.shapes` whether the fingerprint alone fixes the shape (`Found.positions`,
`Found.cacheable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec
from pglast.parser import parse_sql_json

from core.sqlnodes import MAX_DEPTH, Aggregate, column, is_key, is_value, last_name, one, uncast
from core.sqlshape import (
    ANY,
    KEY,
    LIMIT,
    OFFSET,
    WIDTH,
    Param,
    Shape,
    ShapeKind,
    Value,
    digit_string,
    integer,
    make_shape,
)

_Node = dict[str, Any]
_DECODER: Final = msgspec.json.Decoder()
_WRITES: Final = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})


class Slot(NamedTuple):
    """A constant or parameter whose value goes into the Shape."""

    role: int
    location: int  # byte offset of the node in the text, -1 when it has none
    value: Value  # as the parser saw it
    lexical: bool  # one token of the text (number, string, $n), not a keyword such as ALL


@dataclass(slots=True)
class Found:
    """What the walk found in one statement."""

    kind: ShapeKind
    copy_out: bool = False
    cursor: bool = False
    select_star: bool = False
    in_list: int | None = None
    slots: tuple[Slot, ...] = ()
    positions: bool = False  # values in LIMIT, key or IN positions: a fingerprint is not enough
    cacheable: bool = True  # False: the kind hangs on a constant's value (GROUP BY 1)


def _slot(role: int, node: Any) -> Slot:
    kind, body = one(node)
    location = body.get("location", -1)
    if kind == "ParamRef":
        return Slot(role, location, Param(body.get("number", 0) - 1), location >= 0)
    value: Value = None
    lexical = location >= 0
    if "ival" in body:
        value = body["ival"].get("ival", 0)
    elif "fval" in body:
        value = integer(body["fval"].get("fval", ""))
    elif "sval" in body:
        value = digit_string(body["sval"].get("sval", ""))
    elif "bsval" not in body:
        lexical = False  # TRUE, FALSE, NULL, LIMIT ALL: keywords, kept in the skeleton
    return Slot(role, location, value, lexical)


def _conjuncts(where: Any) -> list[Any]:
    kind, body = one(where)
    if kind != "BoolExpr":
        return [where]
    if body.get("boolop") != "AND_EXPR":
        return []
    out: list[Any] = []
    for arg in body.get("args", []):
        out.extend(_conjuncts(arg) if one(arg)[0] == "BoolExpr" else [arg])
    return out


def _keys(where: Any, found: Found) -> bool:
    """Note the key equalities of a top-level WHERE in `found`; True when there is one."""
    key = False
    slots = list(found.slots)
    for conjunct in _conjuncts(where):
        kind, expr = one(conjunct)
        if kind != "A_Expr" or last_name(expr.get("name", [])) != "=":
            continue
        left, right = uncast(expr.get("lexpr")), uncast(expr.get("rexpr"))
        op = expr.get("kind")
        if op == "AEXPR_OP":
            if is_key(column(right)) and is_value(left):
                left, right = right, left
            if is_key(column(left)) and is_value(right):
                slots.append(_slot(KEY, right))
                key = True
        elif op == "AEXPR_IN" and is_key(column(left)):
            items = one(right)[1].get("items", []) if one(right)[0] == "List" else []
            if items and all(is_value(uncast(item)) for item in items):
                key = True
                found.in_list = found.in_list or len(items)
        elif op == "AEXPR_OP_ANY" and is_key(column(left)):
            rkind, rbody = one(right)
            if rkind == "ParamRef" or rkind == "A_Const":  # ANY($1), ANY('{1,2}'): one fingerprint
                slots.append(_slot(ANY, right))
                key = True
            elif rkind == "A_ArrayExpr":
                elements = rbody.get("elements", [])
                if elements and all(is_value(uncast(e)) for e in elements):
                    key = True
                    found.in_list = found.in_list or len(elements)
    found.positions = found.positions or key
    found.slots = tuple(slots)
    return key


def _paging(select: _Node) -> tuple[list[Slot], bool]:
    """The LIMIT/OFFSET slots of a select, and whether it has a LIMIT or OFFSET clause."""
    slots = []
    for field, role in (("limitCount", LIMIT), ("limitOffset", OFFSET)):
        node = uncast(select.get(field))
        if is_value(node):
            slots.append(_slot(role, node))
    return slots, "limitCount" in select or "limitOffset" in select


def _with_paging(found: Found, select: _Node) -> Found:
    """`found` with the LIMIT/OFFSET of an enclosing select, when it has one."""
    paging, present = _paging(select)
    if present:
        kept = tuple(s for s in found.slots if s.role not in (LIMIT, OFFSET))
        found.slots = tuple(paging) + kept
        found.positions = found.positions or bool(paging)
    return found


def _inner(select: _Node) -> _Node | None:
    """The select a select reads all of, when its FROM is one subquery or one CTE."""
    sources = select.get("fromClause", [])
    if len(sources) != 1:
        return None
    kind, body = one(sources[0])
    if kind == "RangeSubselect":
        sub_kind, sub = one(body.get("subquery"))
        return sub if sub_kind == "SelectStmt" else None
    if kind == "RangeVar" and "schemaname" not in body:
        with_clause = select.get("withClause", {})
        if with_clause.get("recursive"):
            return None
        for cte in with_clause.get("ctes", []):
            cte_body = one(cte)[1]
            if cte_body.get("ctename") == body.get("relname"):
                query_kind, query = one(cte_body.get("ctequery"))
                return query if query_kind == "SelectStmt" else None
    return None


def _select(select: _Node, depth: int = 0) -> Found:
    if depth > MAX_DEPTH:
        return Found(ShapeKind.OTHER, cacheable=False)
    if select.get("op", "SETOP_NONE") != "SETOP_NONE":
        arms = [_select(select.get(arm, {}), depth + 1) for arm in ("larg", "rarg")]
        found = arms[0] if WIDTH[arms[0].kind] >= WIDTH[arms[1].kind] else arms[1]
        found.select_star = arms[0].select_star or arms[1].select_star
        found.positions = arms[0].positions or arms[1].positions
        found.cacheable = arms[0].cacheable and arms[1].cacheable
        return _with_paging(found, select)
    if "valuesLists" in select or "fromClause" not in select:
        return Found(ShapeKind.OTHER)
    targets = select.get("targetList", [])
    star = any(_is_star(t) for t in targets)
    paging, _ = _paging(select)
    aggregate = Aggregate(targets, select.get("groupClause"))
    found = Found(
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
    kind, body = one(one(target)[1].get("val"))
    return kind == "ColumnRef" and one(body.get("fields", [None])[-1])[0] == "A_Star"


def _statement(node: Any, depth: int = 0) -> Found:
    kind, body = one(node)
    if kind == "SelectStmt":
        return _select(body, depth)
    if kind in _WRITES:
        return Found(ShapeKind.WRITE)
    if depth > MAX_DEPTH:
        return Found(ShapeKind.OTHER, cacheable=False)
    if kind == "CopyStmt":
        if body.get("is_from"):
            return Found(ShapeKind.WRITE)
        found = _statement(body["query"], depth + 1) if "query" in body else None
        found = found or Found(ShapeKind.BULK)
        found.copy_out = True
        return found
    if kind == "DeclareCursorStmt":
        found = _statement(body.get("query"), depth + 1)
        found.cursor = True
        return found
    if kind == "CreateTableAsStmt" and not body.get("into", {}).get("skipData"):
        return _statement(body.get("query"), depth + 1)  # CREATE TABLE x AS SELECT: reads it
    return Found(ShapeKind.OTHER)


class Analysis(NamedTuple):
    """The Shape of a text and what the walk found in its widest statement."""

    shape: Shape
    found: Found


def analyse(text: str) -> Analysis | None:
    """The full analysis of a text; None when it holds no statement. Raises on parse errors."""
    tree = _DECODER.decode(parse_sql_json(text))
    best: Found | None = None
    for raw in tree.get("stmts", []):
        found = _statement(raw.get("stmt"))
        if best is None or WIDTH[found.kind] > WIDTH[best.kind]:
            best = found
    if best is None:
        return None
    values = [(slot.role, slot.value) for slot in best.slots]
    shape = make_shape(
        best.kind, best.copy_out, best.cursor, best.select_star, best.in_list, values
    )
    return Analysis(shape, best)
