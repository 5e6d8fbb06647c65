"""Rows read by a statement when pgaudit did not log them: an estimate from its shape."""

from __future__ import annotations

from core.shapes import Shape, ShapeKind


def estimate_rows(
    shape: Shape, parameters: tuple[str, ...] | None, table_rows: int | None, filtered: float
) -> int:
    """Rows a statement of this shape returns, at most.

    A whole-table shape reads the table (0 when its size is unknown: the bulk signal then speaks
    from the shape alone); LIMIT caps; a filtered statement without LIMIT is assumed to return
    `filtered` of the table; a key lookup returns one row per key; an aggregate a single row.

    >>> from core.shapes import Shape, ShapeKind
    >>> estimate_rows(Shape(ShapeKind.BULK), None, 50_000, 0.05)
    50000
    >>> estimate_rows(Shape(ShapeKind.BULK, limit_param=0), ("500",), 50_000, 0.05)
    500
    >>> estimate_rows(Shape(ShapeKind.FILTERED), None, 50_000, 0.05)
    2500
    >>> estimate_rows(Shape(ShapeKind.KEY_LOOKUP, key_array_param=0), ("{1,2,3}",), None, 0.05)
    3
    """
    kind = shape.kind
    limit = shape.limit
    if limit is None and shape.limit_param is not None and parameters is not None:
        limit = int_param(parameters, shape.limit_param)
    if kind is ShapeKind.KEY_LOOKUP:
        if shape.in_list is not None:
            rows = shape.in_list
        elif shape.key_array_param is not None and parameters is not None:
            rows = _array_length(parameters, shape.key_array_param)
        else:
            rows = 1
    elif kind is ShapeKind.BULK:
        rows = table_rows or 0
    elif kind is ShapeKind.FILTERED:
        rows = int(filtered * table_rows) if table_rows else 0
    elif kind is ShapeKind.AGGREGATE:
        rows = 1
    elif kind is ShapeKind.OTHER and not shape.parsed:
        rows = 1  # unparsable text (psql variables): no basis for more
    else:
        rows = 0
    if limit is not None:
        if kind is ShapeKind.BULK or kind is ShapeKind.FILTERED:
            rows = min(limit, table_rows) if table_rows else limit  # a page is usually full
        else:
            rows = min(rows, limit)
    return rows


def int_param(params: tuple[str, ...], index: int) -> int | None:
    """The parameter at `index` as a non-negative integer (ASCII digits, below 10**18), if it is
    one.

    >>> int_param(("10", "x"), 0), int_param(("10", "x"), 1), int_param(("10",), 3)
    (10, None, None)
    >>> int_param(("²",), 0), int_param(("9" * 40,), 0)
    (None, None)
    """
    if index < len(params):
        value = params[index]
        if value.isascii() and value.isdigit() and len(value) < 19:
            return int(value)
    return None


def _array_length(parameters: tuple[str, ...], index: int) -> int:
    if index >= len(parameters):
        return 1
    value = parameters[index].strip()
    if not value.startswith("{") or value == "{}":
        return 1
    return value.count(",") + 1
