"""The Alertmanager sink: alerts posted to Alertmanager's API v2 (`POST <url>/api/v2/alerts`).

Alertmanager knows an alert by its label set (the fingerprint), so the labels are fixed per alert
and the stable `alert_key` is one of them: a re-send, an acknowledge and a resolve all land on the
same alert. A trigger carries no `endsAt`: Alertmanager then resolves the alert by itself after
its `resolve_timeout` unless it is re-sent, hence `resend_seconds`. Alertmanager has no
acknowledge: the alert is re-sent, still firing, with `acknowledged_by`/`acknowledged_note`
annotations. A resolve is the same alert with `endsAt` set.

Label and annotation values are attacker-controlled (user names, application_name, statement
text): they are escaped of control characters, kept valid UTF-8 and bounded, so a hostile value
never makes Alertmanager refuse the alert nor reaches a notification template raw.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.http import HttpSink
from core.safetext import safe
from core.settings import AlertmanagerSink
from core.sinks import Action, Alert, Step, Verdict

__all__ = ["ALERTNAME", "Alertmanager", "rfc3339"]

ALERTNAME = "TablewatchReader"
"""The `alertname` label of every alert (what Alertmanager routes and groups by first)."""
LABEL_CHARS = 200
"""A label value is cut here (labels are indexed and shown in every notification)."""
TEXT_CHARS = 1000
"""An annotation (summary, notes) is cut here..."""
LONG_CHARS = 4000
"""...except the description and the statement."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(time_us: int) -> str:
    """Microseconds since the epoch as an RFC 3339 UTC time, as Alertmanager reads it.

    >>> rfc3339(1_795_942_800_123_456)
    '2026-11-29T09:00:00.123456Z'
    """
    when = _EPOCH + timedelta(microseconds=time_us)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _text(value: str, limit: int, *, keep_newlines: bool = False) -> str:
    """`value` escaped, bounded and valid UTF-8 (a lone surrogate shown as `\\udcxx`)."""
    # Escaping only lengthens, so the first limit+1 characters decide the result: a 2 MB
    # statement costs no more than a short one.
    head = value[: limit + 1].encode("utf-8", "backslashreplace").decode("utf-8")
    return safe(head, limit, keep_newlines=keep_newlines)


def _labels(alert: Alert, host: str) -> dict[str, str]:
    p = alert.principal
    labels = {
        "alertname": ALERTNAME,
        "alert_key": alert.key,
        "rule": alert.rule,
        "severity": alert.severity.label,
        "table": p.table,
        "user": p.user,
        "client_addr": p.client_addr,
        "application_name": p.application_name,
        "instance": alert.host or host,
    }
    # Alertmanager drops empty labels itself; leaving them out keeps what we send equal to what
    # it stores (and its fingerprint).
    return {name: _text(value, LABEL_CHARS) for name, value in labels.items() if value}


def _trigger_labels(trigger: bytes | None) -> dict[str, str] | None:
    """The labels of the trigger payload, when it is one of ours."""
    if trigger is None:
        return None
    try:
        sent = json.loads(trigger)
    except ValueError:
        return None
    if not isinstance(sent, list) or not sent or not isinstance(sent[0], dict):
        return None
    labels = sent[0].get("labels")
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        return None
    return labels


def _annotations(alert: Alert, step: Step) -> dict[str, str]:
    reasons = "\n".join(_text(f"{r.code}: {r.detail}", TEXT_CHARS) for r in alert.reasons)
    notes = {
        "summary": _text(alert.summary, TEXT_CHARS),
        "description": _text(reasons, LONG_CHARS, keep_newlines=True),
        "findings": str(alert.findings),
        "suppressed": str(alert.suppressed),
        "statement": _text(alert.statement or "", LONG_CHARS, keep_newlines=True),
        "note": _text(alert.note, TEXT_CHARS, keep_newlines=True),
        "operator": _text(alert.operator, LABEL_CHARS),
    }
    if step.action is Action.ACKNOWLEDGE:
        notes["acknowledged_by"] = _text(step.actor, LABEL_CHARS)
        notes["acknowledged_note"] = _text(step.note, TEXT_CHARS, keep_newlines=True)
    return {name: value for name, value in notes.items() if value}


class Alertmanager(HttpSink[AlertmanagerSink]):
    """Posts alerts to an Alertmanager (`[alerts.alertmanager]`). No rate limit: Alertmanager
    documents none (it is ours to run). The URL is never shown: it may carry basic-auth
    credentials, masked in every detail."""

    name = "alertmanager"

    def __init__(self, config: AlertmanagerSink, *, host: str) -> None:
        super().__init__(config, host=host)
        self._url = config.url.rstrip("/") + "/api/v2/alerts"
        self.resend_seconds = config.resend.total_seconds()  # active alerts re-posted this often

    def render(self, alert: Alert, step: Step, trigger: bytes | None) -> bytes | None:
        """One postable alert (a JSON array of one) for a trigger, acknowledge or resolve.

        Acknowledge and resolve take their labels from `trigger` when given, so they reach the
        alert Alertmanager holds even if the alert's severity has moved since.
        """
        posted: dict[str, Any] = {
            "labels": _trigger_labels(trigger) or _labels(alert, self.host),
            "annotations": _annotations(alert, step),
            "startsAt": rfc3339(alert.started_us),
        }
        if step.action is Action.RESOLVE:
            # Alertmanager refuses an end before the start (a clock stepped back): end at start.
            posted["endsAt"] = rfc3339(max(step.time_us, alert.started_us))
        return json.dumps([posted], ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    async def deliver(self, payload: bytes) -> Verdict:
        """POST the payload; the answer (or the network error) judged for the outbox."""
        return await self.post(self._url, payload)
