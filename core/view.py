"""The one interface the dashboard talks to (DESIGN.md: `EngineView`), and what operators ask.

An in-process engine (tablewatch.live) implements it now; an agent reached over HTTP will later.
Every method is a coroutine so that both fit: the dashboard never blocks its event loop on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core.findings import PrincipalKey, Reason, Severity
from core.snapshot import AlertView, Snapshot


class ActionRefused(Exception):
    """An operator action that could not be carried out; `str()` is one line to show."""


@dataclass(frozen=True, slots=True)
class PageRequest:
    """An operator asking to page someone about a reader."""

    principal: PrincipalKey
    severity: Severity
    note: str
    """The operator's words (may be empty)."""
    operator: str
    """Who asked: the operator's login name."""
    reasons: tuple[Reason, ...] = ()
    """The reasons the reader was showing when the operator decided."""


class EngineView(Protocol):
    """A running engine as a dashboard sees it: snapshots to show, actions to take."""

    @property
    def name(self) -> str:
        """What the dashboard is attached to (shown in its header)."""
        ...

    async def snapshot(self) -> Snapshot:
        """The latest snapshot (cheap: called once per refresh)."""
        ...

    async def page(self, request: PageRequest) -> AlertView:
        """Send a page through the alert path; the alert as it stands once queued or recorded.

        Raises:
            ActionRefused: the alert could not even be queued.
        """
        ...

    async def mark_expected(self, principal: PrincipalKey, note: str, operator: str) -> None:
        """Declare the principal's reading known (like an `[[expected]]` entry in settings)."""
        ...

    async def snooze(self, principal: PrincipalKey, seconds: int, operator: str) -> None:
        """Keep the reader from paging for `seconds` (0 lifts a snooze); it is still shown."""
        ...

    async def signal_backend(
        self, principal: PrincipalKey, pid: int, terminate: bool, operator: str
    ) -> str:
        """Cancel the query of (or, with `terminate`, end) a backend of the reader, as
        pg_cancel_backend / pg_terminate_backend; one line saying what was done.

        Raises:
            ActionRefused: no such backend of that reader now, no database configured, or the
                monitoring role lacks the privilege (the message says what to grant).
        """
        ...

    async def acknowledge(self, key: str, note: str, operator: str) -> AlertView:
        """Acknowledge an alert in every sink that got it; the alert as it stands then.

        Raises:
            ActionRefused: no such alert, or it is already resolved.
        """
        ...

    async def resolve(self, key: str, note: str, operator: str) -> AlertView:
        """Resolve an alert in every sink that got it; the alert as it stands then.

        Raises:
            ActionRefused: no such alert, or it is already resolved.
        """
        ...
