"""The interface of alert sinks (implemented in `alerts`) and what passes through it.

An alert is delivered through a durable outbox: when an alert is triggered, acknowledged or
resolved, each sink *renders* the payload for that action at once (redacted, within the service's
limits) and the payload is queued; a delivery task later hands it to the sink's `deliver` and
records the `Verdict`. Rendering is pure and synchronous; only `deliver` does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from core.findings import PrincipalKey, Reason, Severity


class Action(StrEnum):
    """What happens to an alert."""

    TRIGGER = "trigger"
    """Open it (or re-send it while active: the sinks' stable keys keep it one incident)."""
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


class Outcome(StrEnum):
    """What to do with a delivery after one attempt."""

    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One attempt's outcome, why (one line, safe to show), and the server's Retry-After."""

    outcome: Outcome
    detail: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """An incident as the sinks render it.

    Everything here may be sent to a third party: `statement` is already redacted (literals and
    parameters masked), the rest names who read what and why, never a customer value. Text fields
    may still hold raw, attacker-controlled names (user, application_name): sinks bound and
    encode them, never interpret them.
    """

    key: str
    """Stable per (rule, principal, table): `AlertView.key_for`. PagerDuty `dedup_key`,
    Opsgenie `alias`, the Alertmanager `alert_key` label."""
    rule: str
    """`critical` (a rule's name), `operator` or `test`."""
    origin: str
    """rule | operator | test"""
    severity: Severity
    principal: PrincipalKey
    summary: str
    """One line: severity, who, which table, the top reason."""
    reasons: tuple[Reason, ...]
    started_us: int
    """When the alert was opened (wall clock, microseconds since the epoch)."""
    statement: str | None = None
    """The principal's latest statement on the table, redacted (None when none is known)."""
    note: str = ""
    """The operator's words when an operator paged."""
    operator: str = ""
    """Who paged (login name); "" for a rule."""
    findings: int = 1
    """Findings grouped under this alert so far."""
    suppressed: int = 0
    """Findings about this principal held back by flood control before this alert."""
    host: str = ""
    """The machine tablewatch runs on (PagerDuty `source`, Alertmanager `instance`)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One action on an alert: which, when, by whom, with what note."""

    action: Action
    time_us: int
    actor: str
    """The operator's login name, or `tablewatch` for the rules."""
    note: str = ""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `events` deliveries per `seconds` for one bucket of a sink."""

    events: int
    seconds: float


class AlertSink(Protocol):
    """Somewhere an alert can go: a pager API, a chat webhook, a command, a local file."""

    @property
    def name(self) -> str:
        """The sink's name as settings and the dashboard show it (`pagerduty`, `slack`, ...)."""
        ...

    @property
    def limit(self) -> RateLimit | None:
        """The service's documented rate limit per bucket (None: no limit to respect)."""
        ...

    @property
    def resend_seconds(self) -> float | None:
        """Re-send the trigger this often while the alert is active (Alertmanager forgets an
        alert not re-sent within its resolve_timeout); None: never."""
        ...

    def render(self, alert: Alert, step: Step, trigger: bytes | None) -> bytes | None:
        """The payload of one action, within the service's limits (pure, no I/O).

        `trigger` is the payload this sink rendered for the alert's first trigger, if any:
        acknowledge and resolve reuse what it chose (PagerDuty's routing key). None: this sink
        has nothing to send for the action (a chat webhook has no acknowledge)."""
        ...

    def bucket(self, payload: bytes) -> str:
        """The rate-limit bucket of a payload (PagerDuty: its routing key); "" for one bucket."""
        ...

    def aggregate(self, payloads: Sequence[bytes]) -> bytes | None:
        """One payload standing for several triggers held back by the rate limit, listing
        each; None when the sink cannot aggregate (they wait their turn instead)."""
        ...

    async def deliver(self, payload: bytes) -> Verdict:
        """Send one payload. Never raises for a delivery failure: that is a Verdict."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
