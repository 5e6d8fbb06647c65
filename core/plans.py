"""What the engine works out once and then looks up: the watched table an OBJECT_NAME names, with
its size, and the plan of a statement text (its shape and the rows it reads when pgaudit did not
log them).

The engine's hot path reads both caches directly (`Sizes.by_object`, `Plans.by_text`: one dict
`get` per event, and a plain dict's is faster than a dict subclass's); a miss is filled by
`Sizes.resolve` and `Plans.make`.
"""

from __future__ import annotations

from core.rows import estimate_rows
from core.shapes import MAX_TEXT_KEY, Shape, ShapeCache, ShapeKind
from core.tables import TableName, WatchedTables

NO_SHAPE = Shape(ShapeKind.OTHER, parsed=False)
"""The shape of a statement whose text is unknown."""
_MAX_OBJECT_NAMES = 100_000
_MAX_PLANS = 50_000

__all__ = [
    "NO_PLAN",
    "NO_SHAPE",
    "Plan",
    "Plans",
    "Sizes",
    "TableSize",
    "how_measured",
]


class TableSize:
    """A watched table's size: configured or set by a live source, else learned from the rows
    pgaudit logged for whole-table reads."""

    __slots__ = ("name", "known", "learned", "rows", "reads", "rows_read")

    def __init__(self, name: str, known: int | None) -> None:
        self.name = name
        self.known = known
        self.learned = 0
        self.rows: int | None = known or None
        """What the signals use."""
        self.reads = [0, 0, 0, 0]
        """Statements on the table, indexed by the reader's severity at the time (metrics)."""
        self.rows_read = [0, 0, 0, 0]
        """Rows read from it (logged, or estimated), likewise."""

    def learn(self, rows: int) -> None:
        """A whole-table read returned `rows`: the table has at least that many."""
        if rows > self.learned:
            self.learned = rows
            self.rows = self.known or rows


class Sizes:
    """The watched tables' sizes, by table and by OBJECT_NAME as written."""

    __slots__ = ("watched", "by_table", "by_object")

    def __init__(self, watched: WatchedTables, tables: tuple[TableName, ...]) -> None:
        self.watched = watched
        self.by_table: dict[str, TableSize] = {str(t): TableSize(str(t), t.rows) for t in tables}
        """By the table's canonical name."""
        self.by_object: dict[str, TableSize | None] = {}
        """OBJECT_NAME as written -> the watched table it names (None: not watched)."""

    def resolve(self, object_name: str) -> TableSize | None:
        """The size of the watched table `object_name` names, remembered for the next time."""
        try:
            return self.by_object[object_name]
        except KeyError:
            table = self.watched.match(object_name)
            found = self.by_table[str(table)] if table is not None else None
            if len(self.by_object) < _MAX_OBJECT_NAMES:
                self.by_object[object_name] = found
            return found


class Plan:
    """What the engine needs of a statement text, worked out once per text (and table size)."""

    __slots__ = (
        "shape",
        "size",
        "rows",
        "lookup",
        "aggregate",
        "bulk",
        "whole",
        "soft",
        "limited",
        "key_param",
    )

    def __init__(self, shape: Shape, size: int | None, rows: int) -> None:
        self.shape = shape
        self.size = size
        self.rows = rows
        """Estimated rows when pgaudit did not log them; -1: depends on the parameters."""
        kind = shape.kind
        self.lookup = kind is ShapeKind.KEY_LOOKUP
        self.aggregate = kind is ShapeKind.AGGREGATE
        self.bulk = kind is ShapeKind.BULK
        self.whole = self.bulk and shape.limit is None and shape.limit_param is None
        self.limited = shape.limit is not None or shape.limit_param is not None
        self.soft = kind is ShapeKind.FILTERED
        """A filtered read: estimated, its rows are a guess (soft), LIMIT being only a bound;
        unless it is a page of a keyset walk (`Alarms.keyset_page`)."""
        self.key_param = shape.key_param if shape.key_param is not None else -1


NO_PLAN = Plan(NO_SHAPE, None, 1)
"""The plan of a statement whose text is unknown."""


class Plans:
    """The plans of the statement texts seen, each for the table size it was made for."""

    __slots__ = ("shapes", "filtered_estimate", "by_text")

    def __init__(self, shapes: ShapeCache, filtered_estimate: float) -> None:
        self.shapes = shapes
        self.filtered_estimate = filtered_estimate
        self.by_text: dict[str, Plan] = {}

    def make(self, statement: str | None, size: int | None) -> Plan:
        """The plan of `statement` against a table of `size` rows, remembered by its text."""
        shape = self.shapes.shape(statement) if statement else NO_SHAPE
        depends = shape.limit_param is not None or shape.key_array_param is not None
        rows = -1 if depends else estimate_rows(shape, None, size, self.filtered_estimate)
        plan = Plan(shape, size, rows)
        if statement is not None and len(statement) <= MAX_TEXT_KEY:  # 50,000 keys of 1 MB...
            if len(self.by_text) >= _MAX_PLANS:
                self.by_text.clear()
            self.by_text[statement] = plan
        return plan


def how_measured(shape: Shape, estimated: bool, size: int | None, soft: bool = False) -> str:
    """How a bulk read's rows were known, for the reason's detail."""
    if not estimated:
        return "rows logged by pgaudit"
    if soft:
        return (
            f"a guess from its shape ({shape.describe()}: how many rows match is unknown); "
            "pgaudit did not log rows"
        )
    if shape.kind is ShapeKind.BULK and shape.limit is None and not size:
        return f"whole table by its shape ({shape.describe()}); table size unknown"
    return f"estimated from its shape ({shape.describe()}); pgaudit did not log rows"
