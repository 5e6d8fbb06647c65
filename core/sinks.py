"""The interface of alert sinks (implemented in `alerts`)."""

from __future__ import annotations

from typing import Protocol

from core.snapshot import AlertView, Delivery


class AlertSink(Protocol):
    """Somewhere an alert can go: a pager API, a chat webhook, a local file."""

    @property
    def name(self) -> str:
        """The sink's name as settings and the dashboard show it."""
        ...

    async def send(self, alert: AlertView) -> Delivery:
        """Deliver (or queue) the alert; what became of it. Never raises for a delivery
        failure: that is a Delivery in state `failed` with the reason."""
        ...
