"""The alert path from settings: sinks, outbox and rules in the state dir, as one `AlertCenter`."""

from __future__ import annotations

import socket
from pathlib import Path

from alerts.center import AlertCenter
from alerts.outbox import OUTBOX_FILE, Outbox, OutboxError
from alerts.registry import SinkConfigError, build_sinks
from alerts.rules import Rules
from core.settings import AlertsSettings

ALERTS_FILE = "alerts.jsonl"
"""The local sink's record of every alert, in the state dir."""


class AlertingError(Exception):
    """The alert path cannot be set up; `str()` is one line (never a secret)."""


def host_name() -> str:
    """This machine's name, as pages name their source."""
    return socket.gethostname() or "localhost"


def alert_center(settings: AlertsSettings, state: Path) -> AlertCenter:
    """Every configured sink (and the local record) over the outbox in `state`.

    Raises:
        AlertingError: a sink is misconfigured, or the outbox cannot be opened.
    """
    host = host_name()
    try:
        sinks = build_sinks(settings, host=host, local=state / ALERTS_FILE)
        outbox = Outbox(state / OUTBOX_FILE)
    except (SinkConfigError, OutboxError) as exc:
        raise AlertingError(str(exc)) from None
    try:
        return AlertCenter(outbox, sinks, Rules.from_settings(settings), host=host)
    except OutboxError as exc:  # the file opened, but its alerts cannot be read
        outbox.close()
        raise AlertingError(str(exc)) from None
