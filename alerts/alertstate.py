"""One alert's state as the alert center keeps it: the incident, its lifecycle, each sink's
delivery; as JSON in the outbox file, so it survives a restart."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from core.findings import PrincipalKey, Reason, Severity
from core.sinks import Alert
from core.snapshot import AlertView, Delivery


@dataclass(slots=True)
class SinkState:
    """The latest action's fate in one sink."""

    sink: str
    state: str
    detail: str = ""
    item: int = 0
    """The outbox row it is about (0: none)."""


@dataclass(slots=True)
class AlertRecord:
    """An alert and what became of it."""

    alert: Alert
    updated_us: int
    last_finding_us: int
    notified_us: int
    state: str = "active"
    """active | acknowledged | resolved"""
    by: str = ""
    said: str = ""
    """The note given with the last acknowledge or resolve."""
    findings: int = 1
    deliveries: dict[str, SinkState] = field(default_factory=dict)
    resent_us: dict[str, int] = field(default_factory=dict)

    def escalate(self, severity: Severity, reasons: tuple[Reason, ...], summary: str) -> None:
        """The reader got worse: the alert says so (and is sent again)."""
        self.alert = dataclasses.replace(
            self.alert, severity=severity, reasons=reasons, summary=summary
        )

    def current(self) -> Alert:
        """The alert as sinks render it now (with the findings grouped so far)."""
        return dataclasses.replace(self.alert, findings=self.findings)

    def view(self) -> AlertView:
        """As the dashboard shows it."""
        a = self.alert
        return AlertView(
            key=a.key,
            time_us=a.started_us,
            principal=a.principal,
            severity=a.severity,
            summary=a.summary,
            note=a.note,
            operator=a.operator,
            origin=a.origin,
            deliveries=tuple(Delivery(d.sink, d.state, d.detail) for d in self.deliveries.values()),
            state=self.state,
            findings=self.findings,
            suppressed=a.suppressed,
            updated_us=self.updated_us,
            by=self.by,
            said=self.said,
        )

    # JSON ---------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """As kept in the outbox file."""
        a = self.alert
        return {
            "key": a.key,
            "rule": a.rule,
            "origin": a.origin,
            "severity": int(a.severity),
            "principal": a.principal.fields(),
            "summary": a.summary,
            "reasons": [[r.code, int(r.severity), r.score, r.detail] for r in a.reasons],
            "started_us": a.started_us,
            "statement": a.statement,
            "note": a.note,
            "operator": a.operator,
            "suppressed": a.suppressed,
            "host": a.host,
            "updated_us": self.updated_us,
            "last_finding_us": self.last_finding_us,
            "notified_us": self.notified_us,
            "state": self.state,
            "by": self.by,
            "said": self.said,
            "findings": self.findings,
            "deliveries": [[d.sink, d.state, d.detail, d.item] for d in self.deliveries.values()],
            "resent_us": self.resent_us,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertRecord:
        """Back from `to_json` (raises KeyError, TypeError or ValueError on a bad record)."""
        p = data["principal"]
        alert = Alert(
            key=str(data["key"]),
            rule=str(data["rule"]),
            origin=str(data["origin"]),
            severity=Severity(int(data["severity"])),
            principal=PrincipalKey(
                str(p["user"]), str(p["client_addr"]), str(p["application_name"]), str(p["table"])
            ),
            summary=str(data["summary"]),
            reasons=tuple(
                Reason(str(c), Severity(int(s)), int(n), str(d)) for c, s, n, d in data["reasons"]
            ),
            started_us=int(data["started_us"]),
            statement=None if data["statement"] is None else str(data["statement"]),
            note=str(data["note"]),
            operator=str(data["operator"]),
            suppressed=int(data["suppressed"]),
            host=str(data["host"]),
        )
        return cls(
            alert,
            updated_us=int(data["updated_us"]),
            last_finding_us=int(data["last_finding_us"]),
            notified_us=int(data["notified_us"]),
            state=str(data["state"]),
            by=str(data["by"]),
            said=str(data.get("said", "")),
            findings=int(data["findings"]),
            deliveries={
                str(s): SinkState(str(s), str(st), str(d), int(i))
                for s, st, d, i in data["deliveries"]
            },
            resent_us={str(k): int(v) for k, v in data["resent_us"].items()},
        )
