"""The local sink: alerts recorded as JSON lines in a file of the state dir.

It stands in for the paging services until their sinks exist, and stays useful after: a record of
every alert on the machine itself, readable with `jq`. The file is created owner-only (0600): an
alert names who read what.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from core.events import IsoFormatter
from core.files import append_record
from core.snapshot import AlertView, Delivery

_ISO = IsoFormatter()


class LocalSink:
    """Appends each alert as one JSON object to `path` (created 0600, with its folder)."""

    def __init__(self, path: Path, name: str = "local") -> None:
        self.path = path
        self._name = name

    @property
    def name(self) -> str:
        """The sink's name."""
        return self._name

    async def send(self, alert: AlertView) -> Delivery:
        """Record the alert; `recorded` with the file's path, or `failed` with the OS error."""
        try:
            await asyncio.to_thread(append_record, self.path, _payload(alert))
        except OSError as exc:
            return Delivery(self._name, "failed", f"{self.path}: {exc.strerror or exc}")
        return Delivery(self._name, "recorded", str(self.path))


def _payload(alert: AlertView) -> dict[str, Any]:
    return {
        "key": alert.key,
        "time": _ISO.format(alert.time_us),
        "origin": alert.origin,
        "operator": alert.operator,
        "severity": alert.severity.label,
        "summary": alert.summary,
        "note": alert.note,
        **alert.principal.fields(),
    }
