"""`replay --events` output: access events as JSON lines, in the fields and order of DESIGN.md."""

from __future__ import annotations

from typing import BinaryIO

import msgspec

from core.events import AccessEvent, EventKind, IsoFormatter


class EventWriter:
    """Writes audit events as JSON lines (permission-denied events are not audit records)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._encode_lines = msgspec.json.Encoder().encode_lines
        self._iso = IsoFormatter()

    def write(self, events: list[AccessEvent]) -> None:
        iso, audit = self._iso, EventKind.AUDIT
        lines = [e.contract_line(iso) for e in events if e.kind is audit]
        if lines:
            self._out.write(self._encode_lines(lines))
