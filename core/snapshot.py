"""What consumers see of the engine: an immutable snapshot of the readers, findings, sources and
alerts, and the values it is made of.

Every text field here may hold raw, attacker-controlled values (user names, application_name,
statements, parameters): render them only through a sanitiser (`core.safetext`), never as markup.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from core.dbside import Backend
from core.events import AccessEvent
from core.findings import Finding, PrincipalKey, Reason, Severity
from core.sources import SourceHealth


@dataclass(frozen=True, slots=True)
class StatementSeen:
    """One statement a reader ran on the table, as the audit trail logged it."""

    time_us: int
    command: str
    statement: str | None
    """Exact text (None when pgaudit did not log it); show it redacted unless asked."""
    parameters: tuple[str, ...] | None
    rows: int | None
    """Rows pgaudit logged (None when not logged)."""


@dataclass(frozen=True, slots=True)
class ReaderView:
    """One reader of a watched table, as a snapshot shows it."""

    principal: PrincipalKey
    severity: Severity
    score: int
    reasons: tuple[Reason, ...]
    statements: int
    """Statements on the table since first seen (this run)."""
    denied: int
    rows_hour: int
    """Rows read in the last hour (logged or estimated), key lookups included."""
    rows_day: int
    fraction_hour: float | None
    """rows_hour over the table's size; None when the size is unknown."""
    rows_estimated: bool
    """Some of the rows were estimated from statement shapes (pgaudit did not log them)."""
    first_seen_us: int
    last_seen_us: int
    expected: str | None
    """The expected-principal note when the principal is a known one."""
    recent: tuple[int, ...] = field(default=())
    """Rows per 5-minute slot over the last hour, oldest first (a sparkline)."""
    hours: tuple[int, ...] = field(default=())
    """Rows per hour over the last 24 hours, oldest first (the timeline)."""
    seen: tuple[StatementSeen, ...] = field(default=())
    """Its most recent statements, oldest first (live views only)."""
    snoozed_until_us: int | None = None
    """An operator snoozed it until then: still shown and still scored, never paged."""
    backends: tuple[Backend, ...] = field(default=())
    """Its backends reading the table right now (pg_stat_activity; live views only)."""


@dataclass(frozen=True, slots=True)
class TableView:
    """A watched table and its size when known."""

    name: str
    rows: int | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where an alert went and what became of it."""

    sink: str
    state: str
    """queued | sent | failed | acked | resolved: the latest action's fate in this sink."""
    detail: str = ""
    """Why it failed or waits (the response, the next retry), or where it went."""


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert (paged by an operator or by a rule) and its state in each sink."""

    key: str
    """Stable per (rule, principal, table): ties trigger, acknowledge and resolve together."""
    time_us: int
    principal: PrincipalKey
    severity: Severity
    summary: str
    note: str
    operator: str
    origin: str
    """operator | rule | test"""
    deliveries: tuple[Delivery, ...] = ()
    state: str = "active"
    """active | acknowledged | resolved"""
    findings: int = 1
    """Findings grouped under it (one incident, one page)."""
    suppressed: int = 0
    """Findings about the principal that flood control held back before it."""
    updated_us: int = 0
    """When its state last changed."""
    by: str = ""
    """Who acknowledged or resolved it (an operator, or `tablewatch` when it resolved itself)."""
    said: str = ""
    """The note given with the acknowledgement or the resolution."""

    @staticmethod
    def key_for(rule: str, principal: PrincipalKey) -> str:
        """The stable key of (rule, principal, table): the same incident, the same key.

        >>> AlertView.key_for("operator", PrincipalKey("u", "10.0.0.1", "psql", "crm.t"))[:12]
        'tw-213485fd0'
        """
        p = principal
        raw = "\x00".join((rule, p.user, p.client_addr, p.application_name, p.table))
        return "tw-" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the engine knows at `taken_us`, immutable: consumers never see it change."""

    taken_us: int
    readers: tuple[ReaderView, ...]
    """Most anomalous first."""
    findings: tuple[Finding, ...]
    """The most recent findings, oldest first."""
    events: int
    learning: bool
    """Still inside the learning period: habit signals are recorded, not raised."""
    tables: tuple[TableView, ...] = ()
    sources: tuple[SourceHealth, ...] = ()
    alerts: tuple[AlertView, ...] = ()
    """Most recent last."""
    tail: tuple[AccessEvent, ...] = ()
    """The latest access events about the watched tables, oldest first (live views only)."""
    rate: float = 0.0
    """Events per second lately (live views only)."""
    readers_total: int = 0
    """How many readers are live: `readers` holds the most anomalous of them."""
    suppressed: int = 0
    """Findings flood control kept from paging (each one counted, none silently dropped)."""
    outbox: int = 0
    """Alert deliveries still queued (waiting for a sink, or retrying)."""
