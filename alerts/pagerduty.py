"""PagerDuty Events API v2: trigger, acknowledge and resolve one incident per alert key.

https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ — a trigger carries the
routing key, `dedup_key` (<= 255 characters: our alert key, hashed when longer) and a `payload`
with `summary` (<= 1024), `source`, `severity`; the whole event is at most 512 KB. Acknowledge and
resolve name the same `dedup_key` under the routing key the trigger went to. PagerDuty accepts
about 120 events a minute per routing key; a burst beyond that is folded into one aggregate event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from alerts.base import reveal
from alerts.http import HttpSink
from alerts.render import Bounds, bounded_key, clip, details, encode, fit, iso, top_reason
from core.findings import Severity
from core.safetext import safe
from core.settings import PagerDutySink
from core.sinks import Action, Alert, RateLimit, Step, Verdict

MAX_EVENT = 512 * 1024
KEY_CHARS = 255
SUMMARY_CHARS = 1024
SEVERITIES = {
    Severity.CRITICAL: "critical",
    Severity.WARNING: "warning",
    Severity.INFO: "info",
    Severity.NONE: "info",
}
_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}


class PagerDuty(HttpSink[PagerDutySink]):
    """The PagerDuty sink, built from `[alerts.pagerduty]`; `host` is the event's `source`."""

    name = "pagerduty"
    limit = RateLimit(120, 60.0)

    def __init__(self, config: PagerDutySink, *, host: str) -> None:
        self._routing_key = reveal(config.routing_key)
        super().__init__(config, host=host, secrets=[self._routing_key])

    def render(self, alert: Alert, step: Step, trigger: bytes | None) -> bytes | None:
        """The Events v2 event; acknowledge and resolve reuse the trigger's routing key and
        dedup key. None without any routing key."""
        first = _parse(trigger) if trigger is not None else {}
        routing_key = str(first.get("routing_key") or self._routing_key)
        if not routing_key:
            return None
        dedup_key = str(first.get("dedup_key") or bounded_key(alert.key, KEY_CHARS))
        if step.action is not Action.TRIGGER:
            return encode(
                {
                    "routing_key": routing_key,
                    "event_action": step.action.value,
                    "dedup_key": dedup_key,
                }
            )

        def build(bounds: Bounds) -> bytes:
            return encode(_trigger(self, alert, step, routing_key, dedup_key, bounds))

        return fit(build, len, MAX_EVENT)

    def bucket(self, payload: bytes) -> str:
        """A hash of the payload's routing key (the key itself is a secret)."""
        key = str(_parse(payload).get("routing_key", ""))
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]

    def aggregate(self, payloads: Sequence[bytes]) -> bytes | None:
        """One trigger standing for `payloads` (triggers under one routing key): an exact count,
        and each {dedup_key, summary, severity} listed as far as 512 KB allows. None when the
        payloads do not share one routing key."""
        events = [_parse(p) for p in payloads]
        keys = {str(e.get("routing_key") or "") for e in events}
        if len(keys) != 1 or "" in keys:
            return None
        entries = [_entry(e) for e in events]
        severity = max((e["severity"] for e in entries), key=lambda s: _RANK.get(s, 0))
        count = len(entries)
        ident = hashlib.sha256("\n".join(sorted(e["dedup_key"] for e in entries)).encode())
        first = events[0].get("payload")
        first = first if isinstance(first, dict) else {}
        listing: dict[str, Any] = {"count": count, "not_listed": count, "alerts": []}
        event = {
            "routing_key": next(iter(keys)),
            "event_action": "trigger",
            "dedup_key": "tw-aggregate-" + ident.hexdigest()[:32],
            "payload": {
                "summary": f"tablewatch: {count} alerts held back by PagerDuty's rate limit "
                f"(worst: {severity}; each listed in the details)",
                "source": clip(str(first.get("source") or self.host or "tablewatch"), 255),
                "severity": severity,
                "component": clip(self.config.component, 255),
                "class": "aggregate",
                "custom_details": listing,
            },
            "client": "tablewatch",
        }
        # the list's JSON is "[" + entries joined by "," + "]": its size is known exactly, and
        # not_listed can only shrink from `count`, so the event never outgrows this budget
        budget = MAX_EVENT - len(encode(event))
        listed = listing["alerts"]
        for entry in entries:
            budget -= len(encode(entry)) + (1 if listed else 0)
            if budget < 0:
                break
            listed.append(entry)
        listing["not_listed"] = count - len(listed)
        return encode(event)

    async def deliver(self, payload: bytes) -> Verdict:
        """POST the event; PagerDuty answers 202 when it takes it."""
        return await self.post(self.config.url, payload)


def _trigger(
    sink: PagerDuty, alert: Alert, step: Step, routing_key: str, dedup_key: str, bounds: Bounds
) -> dict[str, Any]:
    top = top_reason(alert)
    table = alert.principal.table
    summary = safe(alert.summary, SUMMARY_CHARS)
    payload: dict[str, Any] = {
        "summary": summary or f"tablewatch: {alert.severity.label} alert",
        "source": clip(alert.host or sink.host or "tablewatch", 255),
        "severity": SEVERITIES[alert.severity],
        "timestamp": iso(step.time_us),
        "component": clip(sink.config.component, 255),
        "custom_details": details(alert, bounds),
    }
    if table:
        payload["group"] = clip(table, bounds.name)
    if top is not None:
        payload["class"] = clip(top.code, 64)
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": payload,
        "client": "tablewatch",
    }


def _parse(payload: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(payload)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _entry(event: dict[str, Any]) -> dict[str, str]:
    """What the aggregate lists of one held-back trigger."""
    body = event.get("payload")
    body = body if isinstance(body, dict) else {}
    severity = str(body.get("severity", "info"))
    return {
        "dedup_key": clip(str(event.get("dedup_key", "")), KEY_CHARS),
        "summary": clip(str(body.get("summary", "")), 200),
        "severity": severity if severity in _RANK else "info",
    }
