"""`replay --summary` (and, until the dashboard lands, `demo`): who read the watched tables."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from collectors.events import ParseStats
from core.events import AccessEvent, EventKind, IsoFormatter
from core.tables import TableName
from tablewatch.safetext import safe


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
            f"\n{'reader':<40} {'records':>7} {'rows':>9} {'table':>6} {'denied':>6}"
            "  last seen  commands",
            file=out,
        )
        ranked = sorted(
            self._readers.items(), key=lambda kv: (-kv[1].rows, -kv[1].records, -kv[1].denied)
        )
        for (user, addr, app), r in ranked:
            who = f"{safe(user, 16)}@{safe(addr or '?', 15)} {safe(app or '-', 16)}"
            rows = f"{r.rows:,}" if r.rows_known else "?"
            share = f"{100 * r.rows / size:.0f}%" if size and r.rows_known else ""
            commands = " ".join(f"{safe(c, 12)}:{n}" for c, n in r.commands.most_common(2))
            print(
                f"{who:<40} {r.records:>7,} {rows:>9} {share:>6} {r.denied or '':>6}"
                f"  {iso(r.last_us)[11:19]}   {commands or '-'}",
                file=out,
            )
