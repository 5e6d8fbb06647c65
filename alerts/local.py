"""The local sink: every alert action recorded as a JSON line in a file of the state dir.

A record of every alert on the machine itself, readable with `jq`, and the sink that always
works when no paging service is configured. The file is created owner-only (0600): an alert
names who read what. Each line is the alert's details plus the step: `action`, `time`, `actor`
(and the step's note as `step_note`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from alerts.base import Sink
from alerts.render import Bounds, details, encode, iso
from core.files import append_record
from core.safetext import safe
from core.sinks import Alert, Outcome, Step, Verdict

_BOUNDS = Bounds(statement=4_000)
"""A line per action: enough of the statement to recognise it, not megabytes of it."""


class LocalSink(Sink):
    """Appends each action on an alert as one JSON object to `path` (created 0600, with its
    folder 0700). Nothing is held open: each record opens, writes, fsyncs and closes the file."""

    def __init__(self, path: Path, name: str = "local") -> None:
        self.path = path
        self.name = name

    def render(self, alert: Alert, step: Step, trigger: bytes | None) -> bytes | None:
        """The line to append (without its newline)."""
        record = details(alert, _BOUNDS)
        record.update(
            action=step.action.value,
            time=iso(step.time_us),
            actor=safe(step.actor, 256),
            step_note=safe(step.note, 1000),
        )
        return encode(record)

    async def deliver(self, payload: bytes) -> Verdict:
        """Append the record; RETRY with the OS error when the file cannot be written (a full
        disk or a missing mount may come back)."""
        try:
            record = json.loads(payload)
        except ValueError:
            return Verdict(Outcome.FAILED, "not a JSON record")
        if not isinstance(record, dict):
            return Verdict(Outcome.FAILED, "not a JSON object")
        try:
            await asyncio.to_thread(append_record, self.path, record)
        except OSError as exc:
            return Verdict(Outcome.RETRY, safe(f"{self.path}: {exc.strerror or exc}", 300))
        return Verdict(Outcome.SENT, safe(str(self.path), 300))
