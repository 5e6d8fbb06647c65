"""`replay --events` output: access events as JSON lines, in the fields and order of DESIGN.md."""

from __future__ import annotations

from typing import BinaryIO

import msgspec

from core.events import AccessEvent, EventKind, EventLine, IsoFormatter


class EventWriter:
    """Writes audit events as JSON lines (permission-denied events are not audit records)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._encode_lines = msgspec.json.Encoder().encode_lines
        self._iso = IsoFormatter()

    def write(self, events: list[AccessEvent]) -> None:
        # AccessEvent.contract_line, inlined: a replay writes a million of these
        iso, line, audit = self._iso.format, EventLine, EventKind.AUDIT
        lines = [
            line(
                iso(e.time_us),
                e.user,
                e.database,
                e.client_addr,
                e.application_name,
                e.session_id,
                e.audit_type,
                e.statement_id,
                e.substatement_id,
                e.class_,
                e.command,
                e.object_type,
                e.object_name,
                e.statement,
                e.parameters,
                e.rows,
            )
            for e in events
            if e.kind is audit
        ]
        if lines:
            self._out.write(self._encode_lines(lines))
