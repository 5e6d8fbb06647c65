"""The readers table: ordering, filtering, and a cursor that stays on its reader."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from core.events import AccessEvent
from core.findings import PrincipalKey
from core.snapshot import ReaderView
from tui import text as t
from tui.lines import FLEET_NARROW_COLUMNS, NARROW_COLUMNS, READER_COLUMNS, reader_cells

ORDERS = ("anomaly", "rows", "last seen", "user")
"""The sort orders `o` cycles through."""


def ordered(readers: Sequence[ReaderView], order: str) -> list[ReaderView]:
    """The readers in `order`; snoozed readers always after the others."""
    if order == "rows":
        out = sorted(readers, key=lambda r: (-r.rows_hour, -r.severity, -r.score))
    elif order == "last seen":
        out = sorted(readers, key=lambda r: -r.last_seen_us)
    elif order == "user":
        out = sorted(readers, key=lambda r: _by_name(r.principal))
    else:
        out = sorted(readers, key=lambda r: (-r.severity, -r.score, -r.last_seen_us))
    return sorted(out, key=lambda r: r.snoozed_until_us is not None)  # stable


def _by_name(p: PrincipalKey) -> tuple[str, str, str, str]:
    return (p.user.casefold(), p.client_addr, p.application_name.casefold(), p.table)


def _hit(needle: str, *values: str) -> bool:
    return any(needle in v.casefold() for v in values)


def reader_matches(reader: ReaderView, needle: str) -> bool:
    """The filter: user, client address, application or table contains `needle` (any case)."""
    if not needle:
        return True
    p = reader.principal
    return _hit(needle.casefold(), p.user, p.client_addr, p.application_name, p.table)


def event_matches(event: AccessEvent, needle: str) -> bool:
    """The same filter over an access event of the tail."""
    if not needle:
        return True
    e = event
    return _hit(needle.casefold(), e.user, e.client_addr, e.application_name, e.object_name)


def title(order: str, needle: str, shown: int, total: int) -> Text:
    """The table's border title: count, order and filter."""
    count = f"{shown:,} of {total:,}" if shown != total else f"{total:,}"
    out = t.label(f" Readers ({count}) · by {order} (o) ")
    if needle:
        out.append_text(t.join((t.label("· filter:", t.ACCENT), t.data(needle, 30), t.label(""))))
    return out


class ReadersTable(DataTable[Text]):
    """The readers, one row each; `principals` maps rows back to readers."""

    DEFAULT_CSS = """
    ReadersTable {
        height: auto;
        min-height: 6;
        max-height: 50%;
        border: round $primary-darken-1;
        border-title-align: left;
    }
    ReadersTable:focus { border: round $primary; }
    """

    WIDE = 100
    """From this many terminal columns on, every column; below, the NARROW_COLUMNS."""

    def __init__(self, *, id: str | None = None) -> None:
        # no cell padding: each column is one wider than its data instead, one space between
        # columns rather than two, so that what matters fits 80 terminal columns
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=0)
        self.principals: list[PrincipalKey] = []
        self._cells: list[tuple[Text, ...]] = []
        self._memo: dict[int, tuple[ReaderView, str, tuple[Text, ...]]] = {}
        """The cells of the snapshot on screen, by reader, with its alert mark (the reader is
        held, so ids stay theirs)."""
        self._memo_at = -1
        self._shown: tuple[int, ...] = ()
        """Indexes into READER_COLUMNS of the columns shown."""
        self.fleet = False
        """Readers come from several agents: the agent column is shown."""

    def on_mount(self) -> None:
        self._set_columns(self.app.size.width)

    def on_resize(self) -> None:
        self._set_columns(self.app.size.width)

    def _set_columns(self, width: int) -> None:
        narrow = FLEET_NARROW_COLUMNS if self.fleet else NARROW_COLUMNS
        shown = tuple(
            i
            for i, (key, _, _) in enumerate(READER_COLUMNS)
            if (width >= self.WIDE and (key != "agent" or self.fleet)) or key in narrow
        )
        if shown == self._shown:
            return
        keep = self.selected
        self._shown = shown
        self.clear(columns=True)
        for i in shown:
            key, header, width_ = READER_COLUMNS[i]
            last = i == shown[-1]  # no space after the last column: what matters fits 80 or 100
            self.add_column(t.label(header, t.BOLD), width=width_ + (0 if last else 1), key=key)
        cells, self._cells = self._cells, []
        for n, line in enumerate(cells):
            self.add_row(*(line[i] for i in shown), key=str(n))
        self._cells = cells
        if keep is not None and keep in self.principals:
            self.move_cursor(row=self.principals.index(keep), animate=False)

    @property
    def selected(self) -> PrincipalKey | None:
        """The principal under the cursor (None when the table is empty)."""
        row = self.cursor_row
        if 0 <= row < len(self.principals):
            return self.principals[row]
        return None

    def show(
        self,
        readers: Sequence[ReaderView],
        now_us: int,
        keep: PrincipalKey | None,
        marks: Mapping[PrincipalKey, str] | None = None,
    ) -> PrincipalKey | None:
        """Show `readers` in order with the cursor on `keep` when it is among them; `marks`
        holds the alert mark of the readers with an open alert.

        Returns the principal the cursor ends on.
        """
        principals = [r.principal for r in readers]
        fleet = any(p.agent for p in principals)
        if fleet != self.fleet:
            self.fleet = fleet
            self._set_columns(self.app.size.width)
        marks = marks or {}
        # a re-sort or a filter shows the same snapshot's readers again: their cells are reused
        memo = self._memo if self._memo_at == now_us else {}
        cells = []
        for r in readers:
            mark = marks.get(r.principal, "") if marks else ""
            hit = memo.get(id(r))
            if hit is None or hit[0] is not r or hit[1] != mark:
                hit = memo[id(r)] = (r, mark, reader_cells(r, now_us, mark))
            cells.append(hit[2])
        self._memo, self._memo_at = memo, now_us
        shown = self._shown
        before = len(self._cells)
        # rows are kept and their changed cells rewritten: re-adding rows (at 1,000 events/s the
        # order changes every refresh) would have the table measure every cell again
        for n in range(before - 1, len(cells) - 1, -1):
            self.remove_row(str(n))
        for y in range(min(before, len(cells))):
            old, new = self._cells[y], cells[y]
            for x, i in enumerate(shown):
                if old[i] != new[i]:
                    self.update_cell_at(Coordinate(y, x), new[i])
        for n in range(before, len(cells)):
            self.add_row(*(cells[n][i] for i in shown), key=str(n))
        self.principals, self._cells = principals, cells
        if keep is not None and keep in principals:
            row = principals.index(keep)
            if row != self.cursor_row:
                self.move_cursor(row=row, animate=False)
        return self.selected
