"""Reading pglast's JSON parse-tree nodes: their types, column names, keys, aggregates.

Small questions about one node or one list of nodes, asked by the statement walk of
`core.sqltree`. Every recursion stops at `MAX_DEPTH`: the tree is untrusted text.
"""

from __future__ import annotations

from typing import Any, Final

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
MAX_DEPTH: Final = 64


def one(node: Any) -> tuple[str, Any]:
    """The type name and body of a `{"Type": {...}}` node (("", {}) for anything else)."""
    if isinstance(node, dict) and len(node) == 1:
        return next(iter(node.items()))
    return "", {}


def uncast(node: Any) -> Any:
    """The node under its casts (`x::int`, `CAST(x AS int)`)."""
    for _ in range(MAX_DEPTH):
        kind, body = one(node)
        if kind != "TypeCast":
            break
        node = body.get("arg")
    return node


def is_value(node: Any) -> bool:
    """Whether a node is a constant or a bind parameter."""
    return one(node)[0] in ("A_Const", "ParamRef")


def last_name(names: list[Any]) -> str | None:
    """The last of a list of String nodes (a column, function or operator name), lowercased."""
    kind, last = one(names[-1]) if names else ("", {})
    return str(last.get("sval", "")).lower() if kind == "String" else None


def column(node: Any) -> str | None:
    """The lowercased column name of a ColumnRef (None for `*` and anything else)."""
    kind, body = one(uncast(node))
    return last_name(body.get("fields", [])) if kind == "ColumnRef" else None


def is_key(name: str | None) -> bool:
    """Whether a column name is a key's (see `ShapeKind`)."""
    return name is not None and (name in _KEY_NAMES or name.endswith(_KEY_SUFFIXES))


def _names(node: Any, into: set[str], depth: int = 0) -> None:
    """Collect the column names referenced anywhere under a node."""
    if depth > MAX_DEPTH:
        return
    if isinstance(node, list):
        for item in node:
            _names(item, into, depth + 1)
    elif isinstance(node, dict):
        name = column(node) if "ColumnRef" in node else None
        if name is not None:
            into.add(name)
        for value in node.values():
            if isinstance(value, dict | list):
                _names(value, into, depth + 1)


class Aggregate:
    """Whether a target list is only reducing aggregates (and the columns grouped by)."""

    def __init__(self, targets: list[Any], group: list[Any] | None) -> None:
        self.grouped: set[str] = set()
        self.cacheable = True
        self.saw = False
        for item in group or []:
            kind, body = one(uncast(item))
            if kind == "A_Const" or kind == "ParamRef":
                # GROUP BY 2 (and GROUP BY $1, the same fingerprint): the kind hangs on a value
                self.cacheable = False
                position = body.get("ival", {}).get("ival", 0) if "ival" in body else 0
                if 0 < position <= len(targets):
                    _names(one(targets[position - 1])[1].get("val"), self.grouped)
            else:
                _names(item, self.grouped)
        self.verdict = not any(is_key(name) for name in self.grouped) and all(
            self._reduced(one(target)[1].get("val"), 0) for target in targets
        )
        self.verdict = self.verdict and self.saw

    def _reduced(self, node: Any, depth: int) -> bool:
        kind, body = one(node)
        if depth > MAX_DEPTH:
            return False
        if kind == "FuncCall":
            if "over" in body:
                return False
            if last_name(body.get("funcname", [])) in _REDUCING:
                self.saw = True
                return True
            return all(self._reduced(arg, depth + 1) for arg in body.get("args", []))
        if kind in ("A_Const", "ParamRef"):
            return True
        if kind == "ColumnRef":
            return column(node) in self.grouped
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
                children.extend(one(when)[1].get(k) for k in ("expr", "result"))
        else:
            return False
        return all(self._reduced(child, depth + 1) for child in children)
