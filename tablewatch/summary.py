"""`replay --summary` (and, until the dashboard lands, `demo`): who read the watched tables."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from collectors.events import ParseStats
from core.events import AccessEvent, EventKind, IsoFormatter
from core.safetext import ELLIPSIS, safe
from core.tables import TableName


@dataclass
class _Reader:
    records: int = 0
    denied: int = 0
    rows: int = 0
    rows_known: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    first_us: int = 0
    last_us: int = 0


class Readers:
    """Tallies events per principal (user, client address, application_name)."""

    def __init__(self) -> None:
        self._readers: dict[tuple[str, str, str], _Reader] = {}

    def add(self, events: list[AccessEvent]) -> None:
        for e in events:
            key = (e.user, e.client_addr, e.application_name)
            r = self._readers.get(key)
            if r is None:
                r = self._readers[key] = _Reader(first_us=e.time_us)
            r.last_us = e.time_us
            if e.kind is EventKind.DENIED:
                r.denied += 1
                continue
            r.records += 1
            r.commands[e.command] += 1
            if e.rows is not None:
                r.rows += e.rows
                r.rows_known += 1

    def print(self, stats: ParseStats, tables: list[TableName], out: TextIO) -> None:
        """A table of readers, those who took the most rows first. All their text made safe."""
        names = ", ".join(
            f"{t} ({t.rows:,} rows)" if t.rows is not None else str(t) for t in tables
        )
        print(f"{names}: {stats.records:,} log records read", file=out)
        if not self._readers:
            print("nobody read the watched tables", file=out)
            return
        size = tables[0].rows if len(tables) == 1 else None
        iso = IsoFormatter().format
        print(
            f"\n{'reader':<30} {'stmts':>6} {'rows':>8} {'table':>5} {'denied':>6} last     mostly",
            file=out,
        )
        ranked = sorted(
            self._readers.items(), key=lambda kv: (-kv[1].rows, -kv[1].records, -kv[1].denied)
        )
        for (user, addr, app), r in ranked:
            who = f"{safe(user, 12)}@{safe(addr or '?', 15)} {safe(app or '-', 12)}"
            if len(who) > 30:  # the row fits 80 columns
                who = who[:29] + ELLIPSIS
            rows = f"{r.rows:,}" if r.rows_known else "?"
            share = f"{100 * r.rows / size:.0f}%" if size and r.rows_known else ""
            top = r.commands.most_common(1)
            mostly = f"{safe(top[0][0], 6)}:{top[0][1]}" if top else "-"
            print(
                f"{who:<30} {r.records:>6,} {rows:>8} {share:>5} {r.denied or '':>6}"
                f" {iso(r.last_us)[11:19]} {mostly}",
                file=out,
            )
