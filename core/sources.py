"""The interface of event sources (implemented in `collectors`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from core.dbside import Observations
from core.events import AccessEvent


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events read together, and the source position just after them.

    A consumer that has fully processed the batch persists `checkpoint` (with its own state, in
    one atomic write) so that a restart resumes exactly after the batch: nothing lost, nothing
    read twice.
    """

    events: list[AccessEvent]
    checkpoint: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """What a source reports about itself, for the dashboard and the metrics."""

    name: str
    state: str
    """ok | waiting | error"""
    detail: str = ""
    last_event_time: datetime | None = None
    bytes_behind: int = 0
    events: int = 0
    records: int = 0
    malformed: int = 0
    forged: int = 0
    lost_bytes: int = 0
    rotations: int = 0
    notes: tuple[str, ...] = field(default=())


class EventSource(Protocol):
    """Something that produces access events (a log tail, a pg_stat poller, the demo workload)."""

    name: str

    def batches(self) -> AsyncIterator[EventBatch]:
        """Batches of events, forever (until cancelled)."""
        ...

    def health(self) -> SourceHealth:
        """The source's current health."""
        ...


@runtime_checkable
class DatabaseSource(Protocol):
    """Something that polls the database itself (pg_stat_* views, the audit set-up)."""

    name: str

    def observations(self) -> AsyncIterator[Observations]:
        """One `Observations` per poll, forever (until cancelled); a failed poll is shown in
        `health` and yields nothing."""
        ...

    def health(self) -> SourceHealth:
        """The source's current health."""
        ...
