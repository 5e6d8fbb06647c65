"""What detection concludes: severities, reasons, findings, and the engine's immutable snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from core.events import IsoFormatter


class Severity(IntEnum):
    """How urgent a reader is. Ordered, so `max()` gives the worst."""

    NONE = 0
    INFO = 1
    """Notable: worth a line in the dashboard, never a page."""
    WARNING = 2
    """A human should look."""
    CRITICAL = 3
    """Page now: most of the table leaving, or the audit trail tampered with."""

    @property
    def label(self) -> str:
        """`info`, `warning`, `critical` (`none` below info)."""
        return self.name.lower()


SCORE_BANDS: dict[Severity, tuple[int, int]] = {
    Severity.NONE: (0, 0),
    Severity.INFO: (10, 39),
    Severity.WARNING: (40, 79),
    Severity.CRITICAL: (80, 100),
}
"""The score range of each severity: a score always agrees with its severity."""


def band_score(severity: Severity, strength: float) -> int:
    """A score inside the severity's band, `strength` (0..1) placing it from bottom to top.

    >>> band_score(Severity.WARNING, 0.0), band_score(Severity.WARNING, 1.0)
    (40, 79)
    >>> band_score(Severity.CRITICAL, 7.5)
    100
    """
    low, high = SCORE_BANDS[severity]
    strength = min(1.0, max(0.0, strength))
    return low + round((high - low) * strength)


class Code:
    """Reason codes: stable identifiers (metrics label `reason`, JSON `code`)."""

    BULK_READ = "bulk_read"
    """One statement read a large fraction of the table (rows, or estimated from its shape)."""
    TABLE_FRACTION = "table_fraction"
    """Reads over a window add up to a large fraction of the table, beyond habit."""
    OFFSET_WALK = "offset_walk"
    """LIMIT/OFFSET pages walking through the table."""
    VOLUME = "volume"
    """Far more statements than the principal's own habit and its peers'."""
    FIRST_SEEN = "first_seen"
    """A principal never seen before."""
    NEW_PRINCIPAL_VOLUME = "new_principal_volume"
    """A principal seen for the first time recently, already pulling many rows."""
    NEW_ADDRESS = "new_address"
    """A known user from a client address never seen for it."""
    UNUSUAL_HOUR = "unusual_hour"
    """Active at an hour of the day this principal never works."""
    SEQUENTIAL_KEYS = "sequential_keys"
    """Key lookups walking consecutive keys: enumeration."""
    DENIED = "denied"
    """Statements refused with permission denied: probing."""
    AUDIT_TAMPER = "audit_tamper"
    """The audit set-up changed: REVOKE from the audit role, pgaudit settings, the extension."""
    AUDIT_GAP = "audit_gap"
    """The table's own statistics count more tuples read than the audit log accounts for."""
    EXPECTED = "expected"
    """Not a signal: says why a bulk read by a known principal was not raised higher."""


@dataclass(frozen=True, slots=True)
class Reason:
    """One signal, with the numbers behind it in `detail` (plain text, may quote raw values)."""

    code: str
    severity: Severity
    score: int
    detail: str

    def contract(self) -> dict[str, str]:
        """As in the JSON contract: `{"code", "detail"}`."""
        return {"code": self.code, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class PrincipalKey:
    """Who reads: (database user, client address without port, application_name), per table."""

    user: str
    client_addr: str
    application_name: str
    table: str
    agent: str = ""
    """Which agent saw it, in a dashboard attached to several (a fleet); "" everywhere else."""

    def fields(self) -> dict[str, str]:
        """`{"user", "client_addr", "application_name", "table"}`, as records name them."""
        return {
            "user": self.user,
            "client_addr": self.client_addr,
            "application_name": self.application_name,
            "table": self.table,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """A principal's severity rose: stamped with the event time of the record that raised it."""

    time_us: int
    severity: Severity
    score: int
    principal: PrincipalKey
    reasons: tuple[Reason, ...]

    def contract(self, iso: IsoFormatter | None = None) -> dict[str, Any]:
        """The finding as `tablewatch replay` prints it (DESIGN.md, CLI contract)."""
        p = self.principal
        return {
            "time": (iso or IsoFormatter()).format(self.time_us),
            "severity": self.severity.label,
            "score": self.score,
            "user": p.user,
            "client_addr": p.client_addr,
            "application_name": p.application_name,
            "table": p.table,
            "reasons": [r.contract() for r in self.reasons],
        }
